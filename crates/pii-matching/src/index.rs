//! The `PersonIndex` port (find candidate persons for a set of blocking keys in one call) and its
//! in-memory adapter, loaded from a CSV or Parquet person file (the embedded default).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{Array, Date32Array, LargeStringArray, RecordBatch, StringArray};
use async_trait::async_trait;
use chrono::NaiveDate;
use compact_str::CompactString;

use crate::model::{BlockingKey, BlockingKind, Person};

/// A failure of the person index. `kind()` is the stable error kind of alerts and envelopes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// The database rejected the credentials (also after refetching the secret once).
    #[error("database authentication failed ({0})")]
    Auth(String),
    /// The database could not be reached or dropped the connection.
    #[error("database unavailable ({0})")]
    Unavailable(String),
    /// The database role may not do this (SQLSTATE 42501: a missing grant; retrying cannot help).
    #[error("database permission denied ({0})")]
    Denied(String),
    /// A query failed (SQLSTATE and class only, never values).
    #[error("database query failed ({0})")]
    Query(String),
    /// The credentials could not be fetched or read.
    #[error("database secret: {0}")]
    Secret(String),
    /// A person file could not be read.
    #[error("person file: {0}")]
    Load(String),
}

impl IndexError {
    pub fn kind(&self) -> &'static str {
        match self {
            IndexError::Auth(_) => "DbAuthFailed",
            IndexError::Unavailable(_) => "DbUnavailable",
            IndexError::Denied(_) => "DbPermissionDenied",
            IndexError::Query(_) => "DbQueryFailed",
            IndexError::Secret(_) => "DbSecretFailed",
            IndexError::Load(_) => "PersonIndexLoadFailed",
        }
    }

    /// Can a retry help? Bad credentials after a refetch and bad files cannot.
    pub fn transient(&self) -> bool {
        matches!(self, IndexError::Unavailable(_) | IndexError::Query(_) | IndexError::Secret(_))
    }
}

/// Finds the persons that share at least one of `keys` (one call per batch: set-based). A
/// person may come back more than once (found by two keys); callers deduplicate by id.
#[async_trait]
pub trait PersonIndex: Send + Sync {
    async fn candidates(&self, keys: &[BlockingKey]) -> Result<Vec<Person>, IndexError>;
}

#[async_trait]
impl<T: PersonIndex + ?Sized> PersonIndex for Arc<T> {
    async fn candidates(&self, keys: &[BlockingKey]) -> Result<Vec<Person>, IndexError> {
        (**self).candidates(keys).await
    }
}

/// Every person in memory, with one sorted index of (key hash, person) over every blocking key
/// kind: 16 bytes per key instead of a map entry and a list per key (13 kinds of 1,000,000
/// persons fit in ~200 MB). A hash collision can only add a candidate; the matcher attaches a
/// person to a record only when their own keys agree.
#[derive(Debug, Default)]
pub struct MemoryIndex {
    persons: Vec<Person>,
    by_key: Vec<(u64, u32)>,
    by_id: HashMap<i64, u32>,
}

fn key_hash(k: &BlockingKey) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x1dea).hash_one(k)
}

impl MemoryIndex {
    pub fn new(persons: Vec<Person>) -> Self {
        let mut by_key = Vec::with_capacity(persons.len() * BlockingKind::ALL.len());
        let mut by_id = HashMap::with_capacity(persons.len());
        for (i, p) in persons.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            by_id.insert(p.person_id, i);
            for k in BlockingKind::ALL {
                if let Some(key) = BlockingKey::of_person(k, p) {
                    by_key.push((key_hash(&key), i));
                }
            }
        }
        by_key.sort_unstable();
        by_key.shrink_to_fit();
        Self { persons, by_key, by_id }
    }

    pub fn len(&self) -> usize {
        self.persons.len()
    }

    pub fn is_empty(&self) -> bool {
        self.persons.is_empty()
    }

    /// Every person, in load order.
    pub fn persons(&self) -> &[Person] {
        &self.persons
    }

    pub fn person(&self, id: i64) -> Option<&Person> {
        self.by_id.get(&id).map(|&i| &self.persons[i as usize])
    }

    /// Loads `.csv` (header with the person columns) or `.parquet`.
    pub fn load(path: &Path) -> Result<Self, IndexError> {
        let persons = if path.extension().is_some_and(|e| e == "parquet") {
            read_parquet(path)?
        } else {
            read_csv(path)?
        };
        Ok(Self::new(persons.into_iter().map(Person::normalised).collect()))
    }
}

#[async_trait]
impl PersonIndex for MemoryIndex {
    async fn candidates(&self, keys: &[BlockingKey]) -> Result<Vec<Person>, IndexError> {
        let mut idx: Vec<u32> = Vec::new();
        for k in keys {
            let h = key_hash(k);
            let from = self.by_key.partition_point(|e| e.0 < h);
            idx.extend(self.by_key[from..].iter().take_while(|e| e.0 == h).map(|e| e.1));
        }
        idx.sort_unstable();
        idx.dedup();
        Ok(idx.into_iter().map(|i| self.persons[i as usize].clone()).collect())
    }
}

fn opt(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// ISO dates, and the US forms a county export may carry (`MM/DD/YYYY`, `YYYYMMDD`).
fn date(s: &str) -> Option<NaiveDate> {
    crate::people::parse_date(s)
}

/// The columns of a person file (CSV header or Parquet schema), as in the county's person extract.
pub const PERSON_COLUMNS: [&str; 12] = [
    "person_id",
    "first_name",
    "last_name",
    "middle_initial",
    "dob",
    "sex",
    "ssn",
    "address",
    "city",
    "state",
    "zip",
    "phone",
];

/// Reads a person CSV ([`PERSON_COLUMNS`], found by header name).
pub fn read_csv(path: &Path) -> Result<Vec<Person>, IndexError> {
    let mut rd = csv::Reader::from_path(path).map_err(|e| IndexError::Load(e.to_string()))?;
    let h = rd.headers().map_err(|e| IndexError::Load(e.to_string()))?.clone();
    let col = |n: &str| h.iter().position(|x| x == n);
    let id = col("person_id").ok_or_else(|| IndexError::Load("no person_id column".into()))?;
    let cols: Vec<Option<usize>> = PERSON_COLUMNS[1..].iter().map(|n| col(n)).collect();
    let mut out = Vec::new();
    for (line, rec) in rd.records().enumerate() {
        let rec = rec.map_err(|e| IndexError::Load(format!("record {}: {e}", line + 1)))?;
        let get = |i: usize| cols[i].and_then(|c| rec.get(c)).and_then(opt).map(CompactString::from);
        let person_id = rec
            .get(id)
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| IndexError::Load(format!("record {}: person_id is not a number", line + 1)))?;
        out.push(Person {
            person_id,
            first_name: get(0),
            last_name: get(1),
            middle_initial: get(2),
            dob: get(3).as_deref().and_then(date),
            sex: get(4),
            ssn: get(5),
            address: get(6),
            city: get(7),
            state: get(8),
            zip: get(9),
            phone: get(10),
        });
    }
    Ok(out)
}

/// A string column of a batch by name (Utf8 or LargeUtf8), as optional owned values.
pub fn str_col(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let n = b.num_rows();
    let Some(c) = b.column_by_name(name) else { return vec![None; n] };
    if let Some(a) = c.as_any().downcast_ref::<StringArray>() {
        return (0..n).map(|i| (!a.is_null(i)).then(|| a.value(i).to_string())).collect();
    }
    if let Some(a) = c.as_any().downcast_ref::<LargeStringArray>() {
        return (0..n).map(|i| (!a.is_null(i)).then(|| a.value(i).to_string())).collect();
    }
    vec![None; n]
}

/// A date column by name (Date32, or ISO text).
pub fn date_col(b: &RecordBatch, name: &str) -> Vec<Option<NaiveDate>> {
    let n = b.num_rows();
    let Some(c) = b.column_by_name(name) else { return vec![None; n] };
    if let Some(a) = c.as_any().downcast_ref::<Date32Array>() {
        return (0..n).map(|i| if a.is_null(i) { None } else { a.value_as_date(i) }).collect();
    }
    str_col(b, name).into_iter().map(|v| v.as_deref().and_then(date)).collect()
}

fn read_parquet(path: &Path) -> Result<Vec<Person>, IndexError> {
    let f = std::fs::File::open(path).map_err(|e| IndexError::Load(e.to_string()))?;
    let rd = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .and_then(|b| b.build())
        .map_err(|e| IndexError::Load(e.to_string()))?;
    let mut out = Vec::new();
    for b in rd {
        let b = b.map_err(|e| IndexError::Load(e.to_string()))?;
        let ids: Vec<Option<i64>> = match b.column_by_name("person_id") {
            Some(c) => match c.as_any().downcast_ref::<arrow_array::Int64Array>() {
                Some(a) => (0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i))).collect(),
                None => str_col(&b, "person_id").iter().map(|v| v.as_deref()?.parse().ok()).collect(),
            },
            None => return Err(IndexError::Load("no person_id column".into())),
        };
        let s = |n: &str| -> Vec<Option<CompactString>> {
            str_col(&b, n).into_iter().map(|v| v.map(CompactString::from)).collect()
        };
        let (fi, la, mi, sx, ss, ad, ci, st, zi, ph) = (
            s("first_name"),
            s("last_name"),
            s("middle_initial"),
            s("sex"),
            s("ssn"),
            s("address"),
            s("city"),
            s("state"),
            s("zip"),
            s("phone"),
        );
        let dob = date_col(&b, "dob");
        for i in 0..b.num_rows() {
            let Some(person_id) = ids[i] else {
                return Err(IndexError::Load(format!("row {i}: person_id is null")));
            };
            out.push(Person {
                person_id,
                first_name: fi[i].clone(),
                last_name: la[i].clone(),
                middle_initial: mi[i].clone(),
                dob: dob[i],
                sex: sx[i].clone(),
                ssn: ss[i].clone(),
                address: ad[i].clone(),
                city: ci[i].clone(),
                state: st[i].clone(),
                zip: zi[i].clone(),
                phone: ph[i].clone(),
            });
        }
    }
    Ok(out)
}
