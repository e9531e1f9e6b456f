//! Trying rules on a laptop: records from a CSV or Parquet file with canonical column names
//! (normalised as the workflow's transform writes them), the decisions as a
//! CSV (one row per record: record id, tier, rule, chosen person ids, best score), and precision
//! and recall per tier against a truth file (record id, true person id or empty).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::index::IndexError;
use crate::matcher::{Decision, Tier};
use crate::model::parse_date;
use crate::model::Record;

fn load_err(path: &Path, e: impl std::fmt::Display) -> IndexError {
    IndexError::Load(format!("{}: {e}", path.display()))
}

/// The identity columns a record file may carry.
const RECORD_COLUMNS: [&str; 8] =
    ["first_name", "last_name", "dob", "sex", "address", "city", "zip", "phone"];

/// Records from a CSV or Parquet file (by its `.parquet` name): `record_id` (or `encounter_id`)
/// and any of the identity columns `first_name, last_name, dob, sex, address, city, zip, phone`,
/// each value normalised ([`Record::normalised`]).
pub fn read_records(path: &Path) -> Result<Vec<Record>, IndexError> {
    let recs = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")) {
        let bytes = std::fs::read(path).map_err(|e| load_err(path, e))?;
        let b = crate::rows::read_parquet(bytes).map_err(|e| load_err(path, e))?;
        batch_records(&b, None).map_err(|e| load_err(path, e))?
    } else {
        read_csv_records(path)?
    };
    Ok(recs.into_iter().map(Record::normalised).collect())
}

/// The records of a batch with canonical column names: the id from `record_id`, else
/// `encounter_id`, else `id_column` (when given), else the row number.
pub fn batch_records(b: &arrow_array::RecordBatch, id_column: Option<&str>) -> Result<Vec<Record>, String> {
    use crate::rows::{date_col, str_col};
    let has = |n: &str| b.schema().column_with_name(n).is_some();
    let id = ["record_id", "encounter_id"].into_iter().chain(id_column).find(|n| has(n));
    if id.is_none() && id_column.is_none() {
        return Err("no record_id column".into());
    }
    let ids = id.map(|n| str_col(b, n));
    let c: Vec<Vec<Option<String>>> = RECORD_COLUMNS.iter().map(|n| str_col(b, n)).collect();
    let dob = date_col(b, "dob");
    Ok((0..b.num_rows())
        .map(|i| Record {
            reference: ids.as_ref().and_then(|v| v[i].clone()).unwrap_or_else(|| (i + 1).to_string()),
            first_name: c[0][i].clone(),
            last_name: c[1][i].clone(),
            dob: dob[i],
            sex: c[3][i].clone(),
            address: c[4][i].clone(),
            city: c[5][i].clone(),
            zip: c[6][i].clone(),
            phone: c[7][i].clone(),
        })
        .collect())
}

fn read_csv_records(path: &Path) -> Result<Vec<Record>, IndexError> {
    let mut rd = csv::Reader::from_path(path).map_err(|e| load_err(path, e))?;
    let h = rd.headers().map_err(|e| load_err(path, e))?.clone();
    let c = |n: &str| h.iter().position(|x| x == n);
    let id = c("record_id").or(c("encounter_id")).ok_or_else(|| load_err(path, "no record_id column"))?;
    let cols: Vec<Option<usize>> = RECORD_COLUMNS.iter().map(|n| c(n)).collect();
    let mut out = Vec::new();
    for (line, r) in rd.records().enumerate() {
        let r = r.map_err(|e| load_err(path, format!("line {}: {}", line + 2, csv_kind(&e))))?;
        let g = |i: usize| {
            cols[i].and_then(|i| r.get(i)).map(str::trim).filter(|s| !s.is_empty()).map(String::from)
        };
        out.push(Record {
            reference: r.get(id).unwrap_or_default().to_string(),
            first_name: g(0),
            last_name: g(1),
            dob: g(2).as_deref().and_then(parse_date),
            sex: g(3),
            address: g(4),
            city: g(5),
            zip: g(6),
            phone: g(7),
        });
    }
    Ok(out)
}

/// A csv error's class only (its message can quote the offending field).
fn csv_kind(e: &csv::Error) -> &'static str {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not UTF-8",
        csv::ErrorKind::UnequalLengths { .. } => "wrong number of fields",
        csv::ErrorKind::Io(_) => "cannot read",
        _ => "unreadable",
    }
}

/// Record id -> its true person (None: nobody in the index).
pub fn read_truth(path: &Path) -> Result<HashMap<String, Option<i64>>, IndexError> {
    let mut rd = csv::Reader::from_path(path).map_err(|e| load_err(path, e))?;
    let mut t = HashMap::new();
    for r in rd.records() {
        let r = r.map_err(|e| load_err(path, csv_kind(&e)))?;
        t.insert(r.get(0).unwrap_or_default().to_string(), r.get(1).and_then(|v| v.trim().parse().ok()));
    }
    Ok(t)
}

/// Writes one row per decision: record_id, tier, rule, person_ids (space-separated), score.
pub fn write_decisions(path: &Path, ds: &[Decision]) -> Result<(), IndexError> {
    let mut w = csv::Writer::from_path(path).map_err(|e| load_err(path, e))?;
    let err = |e: csv::Error| load_err(path, e);
    w.write_record(["record_id", "tier", "rule", "person_ids", "score"]).map_err(err)?;
    for d in ds {
        let ids: Vec<String> = d.chosen.iter().map(|c| c.person_id.to_string()).collect();
        let score = d.best_score.map(|s| format!("{s:.2}")).unwrap_or_default();
        w.write_record([d.reference.as_str(), d.tier.as_str(), d.rule.as_str(), &ids.join(" "), &score])
            .map_err(err)?;
    }
    w.flush().map_err(|e| load_err(path, e))
}

/// Precision and recall of one tier (or of several together) over (record, person) pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    pub predicted: usize,
    pub true_positives: usize,
    pub true_pairs: usize,
}

impl Quality {
    pub fn precision(&self) -> f64 {
        self.true_positives as f64 / self.predicted.max(1) as f64
    }
    pub fn recall(&self) -> f64 {
        self.true_positives as f64 / self.true_pairs.max(1) as f64
    }
}

/// Quality of the decisions whose tier is in `tiers`, against `truth`.
pub fn quality(ds: &[Decision], truth: &HashMap<String, Option<i64>>, tiers: &[Tier]) -> Quality {
    let truth: HashSet<(&str, i64)> = truth.iter().filter_map(|(r, p)| p.map(|p| (r.as_str(), p))).collect();
    let pred: HashSet<(&str, i64)> = ds
        .iter()
        .filter(|d| tiers.contains(&d.tier))
        .flat_map(|d| d.chosen.iter().map(|c| (d.reference.as_str(), c.person_id)))
        .collect();
    Quality {
        predicted: pred.len(),
        true_positives: pred.intersection(&truth).count(),
        true_pairs: truth.len(),
    }
}
