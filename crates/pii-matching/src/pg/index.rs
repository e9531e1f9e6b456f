//! The person index in PostgreSQL: the keys of a batch hashed here as the generated key columns
//! of `person` (migrations 0002, 0007, 0008), looked up in one set-based query per chunk, less
//! the wide keys `wide_key` lists (migration 0009).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::NaiveDate;
use compact_str::CompactString;
use futures_util::TryStreamExt;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::Row;

use super::Db;
use crate::index::{Found, IndexError, PersonIndex};
use crate::model::{BlockingKey, BlockingKind, Person};

/// The person index in PostgreSQL: one query per chunk of keys (a UNION ALL of one `= ANY`
/// index scan per key kind over the keys' hashes, computed here by [`key_hash`]), the chunks
/// run concurrently on the pool's connections. Each row names the branch and hash it matched,
/// which maps it back to the asked keys.
pub struct PgIndex {
    db: Arc<Db>,
    /// Keys per query; a batch larger than this runs as several concurrent queries.
    chunk: usize,
    /// Per key column, the most persons a key of `wide_key` holds, read at most every
    /// [`WIDE_COLUMNS_AGE`]: only the branches of columns with a key above the limit take
    /// `wide_key` out (the others would pay for it and find nothing to take out).
    wide_columns: tokio::sync::Mutex<Option<(Instant, HashMap<String, i32>)>>,
}

/// How long [`PgIndex`] trusts its list of columns with wide keys. A column that gained wide
/// keys since costs time until then (its keys are read, then dropped), never a decision.
const WIDE_COLUMNS_AGE: Duration = Duration::from_secs(300);

impl PgIndex {
    /// `chunk`: keys per query (a batch larger than this runs as several concurrent queries).
    pub fn new(db: Arc<Db>, chunk: usize) -> Self {
        Self { db, chunk, wide_columns: tokio::sync::Mutex::new(None) }
    }

    /// The columns holding a key that more than `max` persons hold, by `wide_key`. When the
    /// table cannot be read (a missing grant, a failed query), the last list read (or none)
    /// until the next try: without it the wide keys are read and then dropped by their rows, the
    /// same finds, only slower. A database that cannot be reached or rejects the credentials
    /// fails the call, as the candidate query would.
    async fn columns_wider_than(&self, max: i32) -> Result<Vec<String>, IndexError> {
        let mut cached = self.wide_columns.lock().await;
        let fresh = cached.as_ref().is_some_and(|(at, _)| at.elapsed() < WIDE_COLUMNS_AGE);
        if !fresh {
            let read: Result<Vec<(String, i32)>, IndexError> = self
                .db
                .run(|pool| async move {
                    sqlx::query_as("SELECT key_column, max(persons) FROM wide_key GROUP BY key_column")
                        .fetch_all(&pool)
                        .await
                })
                .await;
            let columns = match read {
                Ok(rows) => rows.into_iter().collect(),
                Err(e @ (IndexError::Auth(_) | IndexError::Unavailable(_) | IndexError::Secret(_))) => {
                    return Err(e)
                }
                Err(e) => {
                    // the error's kind only: the query holds no value of a person
                    tracing::warn!(error = %e, "wide_key unreadable: wide keys are read, then dropped");
                    cached.take().map(|(_, c)| c).unwrap_or_default()
                }
            };
            *cached = Some((Instant::now(), columns));
        }
        let columns = cached.as_ref().map(|(_, c)| c);
        Ok(columns.into_iter().flatten().filter(|(_, &n)| n > max).map(|(c, _)| c.clone()).collect())
    }
}

/// The keys of one query as the hashes of the generated key columns (migrations 0002, 0007, 0008),
/// one array per key kind that has keys. Hashing here, not in SQL, keeps that work off the
/// shared database.
#[derive(Default)]
struct KeyArrays {
    kinds: Vec<(BlockingKind, Vec<i64>)>,
    /// (branch, hash, index of the key in the batch), sorted: a row's branch and hash name the
    /// keys it answers.
    back: Vec<(i16, i64, u32)>,
}

impl KeyArrays {
    /// `keys` are the batch's keys from index `first` on.
    fn of(keys: &[BlockingKey], first: usize) -> Self {
        let mut a: Vec<(BlockingKind, Vec<(i64, u32)>)> = Vec::new();
        for (j, k) in keys.iter().enumerate() {
            let kind = k.kind();
            let e = (key_hash(k), u32::try_from(first + j).unwrap_or(u32::MAX));
            match a.iter_mut().find(|(x, _)| *x == kind) {
                Some((_, v)) => v.push(e),
                None => a.push((kind, vec![e])),
            }
        }
        a.sort_by_key(|(k, _)| column(*k)); // one statement text per set of kinds
        let mut back = Vec::with_capacity(keys.len());
        let mut kinds = Vec::with_capacity(a.len());
        for (b, (kind, v)) in a.into_iter().enumerate() {
            let b = i16::try_from(b).unwrap_or(i16::MAX);
            back.extend(v.iter().map(|&(h, i)| (b, h, i)));
            kinds.push((kind, v.into_iter().map(|(h, _)| h).collect()));
        }
        back.sort_unstable();
        Self { kinds, back }
    }

    /// The batch indexes of the keys a row of `branch` with hash `h` answers.
    fn keys_of(&self, branch: i16, h: i64) -> impl Iterator<Item = u32> + '_ {
        let from = self.back.partition_point(|e| (e.0, e.1) < (branch, h));
        self.back[from..].iter().take_while(move |e| (e.0, e.1) == (branch, h)).map(|e| e.2)
    }
}

/// The generated hash column of `person` that holds a key kind.
pub fn column(kind: BlockingKind) -> &'static str {
    match kind {
        BlockingKind::LastNameDob => "k_last_dob",
        BlockingKind::FirstNameDob => "k_first_dob",
        BlockingKind::Address => "k_address",
        BlockingKind::AddressZip => "k_address_zip",
        BlockingKind::Phone => "k_phone",
        BlockingKind::LastFirstName => "k_last_first",
        BlockingKind::NamesYear => "k_names_year",
        BlockingKind::NamesMonthDay => "k_names_mmdd",
        BlockingKind::LastSoundexDob => "k_last_sdx_dob",
        BlockingKind::FirstSoundexDob => "k_first_sdx_dob",
        BlockingKind::LastSoundexYear => "k_last_sdx_year",
        BlockingKind::ZipHouseStreet => "k_zip_house_street",
        BlockingKind::DobCity => "k_dob_city",
        BlockingKind::PhoneLast7 => "k_phone_last7",
        BlockingKind::NamesZip => "k_names_zip",
        BlockingKind::ZipDob => "k_zip_dob",
        BlockingKind::FirstSoundexMonthDay => "k_first_sdx_mmdd",
        BlockingKind::NamesSoundex => "k_names_sdx",
        BlockingKind::LastNameZip => "k_last_zip",
    }
}

/// The value of a key's generated column in `person` (migration 0002): PostgreSQL's
/// `hashtextextended(text, 0)` of the same text, e.g. `last_name || '|' || (dob - DATE
/// '2000-01-01')::text`. The test `key_hashes_equal_the_generated_columns` checks it against
/// the server on every key kind.
pub fn key_hash(k: &BlockingKey) -> i64 {
    use std::fmt::Write;
    let days = |d: &NaiveDate| (*d - EPOCH_2000).num_days();
    let sdx = |c: &[u8; 4]| c.iter().map(|&b| char::from(b)).collect::<CompactString>();
    let mut text = CompactString::default();
    // writing to a string cannot fail
    let _ = match k {
        BlockingKey::LastNameDob { last_name, dob } => write!(text, "{last_name}|{}", days(dob)),
        BlockingKey::FirstNameDob { first_name, dob } => write!(text, "{first_name}|{}", days(dob)),
        BlockingKey::Address { address } => write!(text, "{address}"),
        BlockingKey::AddressZip { address, zip } => write!(text, "{address}|{zip}"),
        BlockingKey::Phone { phone } => write!(text, "{phone}"),
        BlockingKey::LastFirstName { last_name, first_name } => write!(text, "{last_name}|{first_name}"),
        BlockingKey::NamesYear { low, high, year } => write!(text, "{}|{}|{year}", sdx(low), sdx(high)),
        BlockingKey::NamesMonthDay { low, high, month, day } => {
            write!(text, "{}|{}|{month}-{day}", sdx(low), sdx(high))
        }
        BlockingKey::LastSoundexDob { code, dob } | BlockingKey::FirstSoundexDob { code, dob } => {
            write!(text, "{}|{}", sdx(code), days(dob))
        }
        BlockingKey::LastSoundexYear { code, year } => write!(text, "{}|{year}", sdx(code)),
        BlockingKey::ZipHouseStreet { zip, house, street } => write!(text, "{zip}|{house}|{street}"),
        BlockingKey::DobCity { dob, city } => write!(text, "{city}|{}", days(dob)),
        BlockingKey::PhoneLast7 { digits } => write!(text, "{digits}"),
        BlockingKey::NamesZip { low, high, zip } => write!(text, "{}|{}|{zip}", sdx(low), sdx(high)),
        BlockingKey::ZipDob { zip, dob } => write!(text, "{zip}|{}", days(dob)),
        BlockingKey::FirstSoundexMonthDay { code, month, day } => write!(text, "{}|{month}-{day}", sdx(code)),
        BlockingKey::NamesSoundex { low, high } => write!(text, "{}|{}", sdx(low), sdx(high)),
        BlockingKey::LastNameZip { last_name, zip } => write!(text, "{last_name}|{zip}"),
    };
    pg_hash_bytes_extended(text.as_bytes()) as i64
}

const EPOCH_2000: NaiveDate = match NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(d) => d,
    None => panic!("2000-01-01 is a date"),
};

/// PostgreSQL's `hash_bytes_extended(k, len, 0)` (src/common/hashfn.c: Bob Jenkins' lookup3,
/// 64-bit result `b << 32 | c`), which `hashtextextended` applies to a text's bytes under a
/// deterministic collation. Words are read little-endian, as every PostgreSQL on x86 and ARM
/// does; a big-endian server would hash differently (and fail the test above).
fn pg_hash_bytes_extended(mut k: &[u8]) -> u64 {
    const A: usize = 0;
    const B: usize = 1;
    const C: usize = 2;
    // mix(a, b, c): six steps of x -= y; x ^= rot(y, r); y += z, cycling (a c b), (b a c), (c b a)
    fn mix(s: &mut [u32; 3]) {
        for (i, r) in [4, 6, 8, 16, 19, 4].into_iter().enumerate() {
            let (x, y, z) = [(A, C, B), (B, A, C), (C, B, A)][i % 3];
            s[x] = s[x].wrapping_sub(s[y]) ^ s[y].rotate_left(r);
            s[y] = s[y].wrapping_add(s[z]);
        }
    }
    let word = |w: &[u8]| u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
    let init = 0x9e37_79b9_u32.wrapping_add(k.len() as u32).wrapping_add(3_923_095);
    let mut s = [init; 3];
    while k.len() >= 12 {
        for (j, v) in s.iter_mut().enumerate() {
            *v = v.wrapping_add(word(&k[4 * j..4 * j + 4]));
        }
        mix(&mut s);
        k = &k[12..];
    }
    // the last 0..=11 bytes, little-endian into a, b and c's upper three bytes (c's lowest
    // byte stands for the length, added above)
    for (i, &byte) in k.iter().enumerate() {
        let (j, shift) = if i < 8 { (i / 4, 8 * (i % 4)) } else { (C, 8 * (i - 7)) };
        s[j] = s[j].wrapping_add(u32::from(byte) << shift);
    }
    // final(a, b, c): seven steps of x ^= y; x -= rot(y, r), cycling (c b), (a c), (b a)
    for (i, r) in [14, 11, 25, 16, 4, 14, 24].into_iter().enumerate() {
        let (x, y) = [(C, B), (A, C), (B, A)][i % 3];
        s[x] = (s[x] ^ s[y]).wrapping_sub(s[y].rotate_left(r));
    }
    (u64::from(s[B]) << 32) | u64::from(s[C])
}

/// The candidate query for these key kinds: one `UNION ALL` branch per kind, each handing its
/// generated hash column all of its keys at once (one b-tree scan over the sorted hashes), and
/// naming its branch and the hash it matched. A person comes back once per key it holds; on a
/// 64-bit collision (odds of about 1e-9 per batch at a million persons) a person holding none
/// of the keys may come back, a candidate scored on its values like any other.
///
/// The branches of the kinds whose column is in `wide` first take out the hashes `wide_key`
/// (migration 0009) lists as held by more persons than the parameter after the arrays (the
/// rules' limit): one small index scan of that table, and no row of a wide key is read.
/// Also says whether any branch does, i.e. whether the statement takes that parameter.
fn candidates_sql(kinds: impl Iterator<Item = BlockingKind>, wide: &[String]) -> (String, bool) {
    let kinds: Vec<BlockingKind> = kinds.collect();
    let limit = kinds.len() + 1;
    let mut takes_out = false;
    let branches: Vec<String> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let (n, col) = (i + 1, column(*k));
            let wide_here = wide.iter().any(|w| w == col);
            takes_out |= wide_here;
            let hashes = if wide_here {
                format!(
                    "ARRAY(SELECT unnest(${n}::int8[]) EXCEPT SELECT w.hash FROM wide_key w \
                     WHERE w.key_column = '{col}' AND w.persons > ${limit}::int4)"
                )
            } else {
                format!("${n}::int8[]")
            };
            format!(
                "SELECT {i}::int2, q.{col}, q.person_id, q.first_name, q.last_name, q.middle_initial, q.dob, \
                 q.sex, q.ssn, q.address, q.city, q.state, q.zip, q.phone FROM person q WHERE q.{col} = ANY({hashes})"
            )
        })
        .collect();
    (branches.join("\nUNION ALL\n"), takes_out)
}

/// One chunk's rows as a [`Found`]: each person decoded once, every row a hit.
async fn candidates_query(
    pool: PgPool,
    a: Arc<KeyArrays>,
    max_persons: Option<i32>,
    wide: Arc<[String]>,
) -> Result<Found, sqlx::Error> {
    let mut found = Found::default();
    if a.kinds.is_empty() {
        return Ok(found);
    }
    let (sql, takes_out) = candidates_sql(a.kinds.iter().map(|(k, _)| *k), &wide);
    let mut q = sqlx::query(&sql);
    for (_, hashes) in &a.kinds {
        q = q.bind(hashes);
    }
    // the limit is a parameter only when a branch takes wide keys out
    if let Some(max) = max_persons.filter(|_| takes_out) {
        q = q.bind(max);
    }
    // rows decoded as they arrive (collecting them first copied every row once more)
    let mut rows = q.fetch(&pool);
    let mut seen: HashMap<i64, u32> = HashMap::with_capacity(a.back.len());
    while let Some(r) = rows.try_next().await? {
        let (branch, h, id): (i16, i64, i64) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        let p = match seen.get(&id) {
            Some(&p) => p,
            None => {
                let p = u32::try_from(found.persons.len()).unwrap_or(u32::MAX);
                found.persons.push(person_row(&r, id)?);
                seen.insert(id, p);
                p
            }
        };
        found.hits.extend(a.keys_of(branch, h).map(|k| (k, p)));
    }
    Ok(found)
}

/// A `person` row in the column order of [`candidates_sql`] (values decode as inline strings).
/// The text columns skip sqlx's per-value type check: the statement above fixes their types
/// (text, as migration 0001 declares them), and any byte string that is not UTF-8 still fails.
fn person_row(r: &PgRow, person_id: i64) -> Result<Person, sqlx::Error> {
    let s = |i: usize| r.try_get_unchecked::<Option<CompactString>, _>(i);
    Ok(Person {
        person_id,
        first_name: s(3)?,
        last_name: s(4)?,
        middle_initial: s(5)?,
        dob: r.try_get(6)?,
        sex: s(7)?,
        ssn: s(8)?,
        address: s(9)?,
        city: s(10)?,
        state: s(11)?,
        zip: s(12)?,
        phone: s(13)?,
    })
}

/// The chunks' finds as one: each person once (a person may answer keys of two chunks).
fn merge(parts: Vec<Found>) -> Found {
    let mut parts = parts.into_iter();
    let Some(mut all) = parts.next() else { return Found::default() };
    let mut seen: Option<HashMap<i64, u32>> = None;
    for part in parts {
        let seen = seen.get_or_insert_with(|| {
            all.persons.iter().enumerate().map(|(i, p)| (p.person_id, i as u32)).collect()
        });
        let mut to: Vec<u32> = Vec::with_capacity(part.persons.len());
        for p in part.persons {
            let next = u32::try_from(all.persons.len()).unwrap_or(u32::MAX);
            let i = *seen.entry(p.person_id).or_insert(next);
            if i == next {
                all.persons.push(p);
            }
            to.push(i);
        }
        all.hits.extend(part.hits.into_iter().map(|(k, p)| (k, to[p as usize])));
    }
    all
}

#[async_trait]
impl PersonIndex for PgIndex {
    async fn candidates(
        &self,
        keys: &[BlockingKey],
        max_persons: Option<usize>,
    ) -> Result<Found, IndexError> {
        let step = self.chunk.max(1);
        let limit = max_persons.map(|m| i32::try_from(m).unwrap_or(i32::MAX));
        let wide: Arc<[String]> = match limit {
            Some(max) => self.columns_wider_than(max).await?.into(),
            None => Arc::new([]),
        };
        let chunks: Vec<Arc<KeyArrays>> =
            keys.chunks(step).enumerate().map(|(i, c)| Arc::new(KeyArrays::of(c, i * step))).collect();
        let parts: Vec<Found> = self
            .db
            .run(|pool| {
                let (chunks, wide) = (chunks.clone(), wide.clone());
                async move {
                    let tasks: Vec<_> = chunks
                        .into_iter()
                        .map(|a| tokio::spawn(candidates_query(pool.clone(), a, limit, wide.clone())))
                        .collect();
                    let mut parts = Vec::with_capacity(tasks.len());
                    for t in tasks {
                        parts.push(t.await.map_err(|e| sqlx::Error::Protocol(format!("query task: {e}")))??);
                    }
                    Ok(parts)
                }
            })
            .await?;
        // a key wide_key does not list yet (persons added since its refresh) finds nobody too:
        // a key's rows all come from one chunk, so the merged counts are the key's
        let found = merge(parts);
        Ok(match max_persons {
            Some(max) => found.without_wide(max),
            None => found,
        })
    }
}
