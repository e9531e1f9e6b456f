//! Reading the county's person export for the index: columns found through a mapping
//! (`config/people.toml`), every value normalised ([`Person::normalised`]), and every row that
//! cannot be loaded reported by its line number and reason, never by value.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::NaiveDate;
use compact_str::CompactString;
use serde::Deserialize;

use crate::index::{IndexError, PERSON_COLUMNS};
use crate::model::Person;

/// Index column -> the export's column name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeopleMapping {
    pub columns: BTreeMap<String, String>,
}

impl PeopleMapping {
    /// The export uses the index's own column names.
    pub fn identity() -> Self {
        Self { columns: PERSON_COLUMNS.iter().map(|c| (c.to_string(), c.to_string())).collect() }
    }

    /// Reads a mapping file; every index column must be mapped, nothing else.
    pub fn from_file(path: &Path) -> Result<Self, IndexError> {
        let at = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| IndexError::Load(format!("{at}: {e}")))?;
        let m: Self = toml::from_str(&text).map_err(|e| IndexError::Load(format!("{at}: {e}")))?;
        let unknown: Vec<&str> =
            m.columns.keys().map(String::as_str).filter(|k| !PERSON_COLUMNS.contains(k)).collect();
        let missing: Vec<&str> =
            PERSON_COLUMNS.iter().copied().filter(|c| !m.columns.contains_key(*c)).collect();
        if !unknown.is_empty() || !missing.is_empty() {
            return Err(IndexError::Load(format!(
                "{at}: [columns] must map exactly {}; unknown: [{}], missing: [{}]",
                PERSON_COLUMNS.join(","),
                unknown.join(", "),
                missing.join(", ")
            )));
        }
        Ok(m)
    }
}

/// A row that was not loaded: its line in the file (the header is line 1) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub line: u64,
    pub reason: String,
}

/// The persons of an export, normalised, and the rows that cannot be loaded.
#[derive(Debug, Default)]
pub struct PeopleFile {
    pub persons: Vec<Person>,
    pub rejected: Vec<Rejected>,
}

/// Reads a CSV export through `mapping`. A missing export column fails the whole file (naming
/// the column); a bad row (a `person_id` that is not a number or repeats an earlier one, a date
/// that does not parse, bytes that are not UTF-8) is rejected with its line number.
pub fn read_export(path: &Path, mapping: &PeopleMapping) -> Result<PeopleFile, IndexError> {
    read_export_with(path, mapping, &mut |_| {})
}

/// [`read_export`], calling `progress(bytes read)` every 8,192 rows (a progress bar).
pub fn read_export_with(
    path: &Path,
    mapping: &PeopleMapping,
    progress: &mut dyn FnMut(u64),
) -> Result<PeopleFile, IndexError> {
    let at = path.display();
    let mut rd = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| IndexError::Load(format!("{at}: {e}")))?;
    let header = rd.headers().map_err(|e| IndexError::Load(format!("{at}: header: {e}")))?.clone();
    let mut idx = Vec::with_capacity(PERSON_COLUMNS.len());
    let mut missing = Vec::new();
    for c in PERSON_COLUMNS {
        let name = mapping.columns.get(c).map_or(c, String::as_str);
        match header.iter().position(|h| h.trim().trim_start_matches('\u{feff}') == name) {
            Some(i) => idx.push(i),
            None => missing.push(format!("{name} (for {c})")),
        }
    }
    if !missing.is_empty() {
        return Err(IndexError::Load(format!("{at}: missing column(s) {}", missing.join(", "))));
    }
    let mut out = PeopleFile::default();
    let mut first_line: HashMap<i64, u64> = HashMap::new();
    let mut rec = csv::ByteRecord::new();
    loop {
        match rd.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(IndexError::Load(format!("{at}: unreadable: {e}"))),
        }
        let line = rec.position().map_or(0, |p| p.line());
        if line.is_multiple_of(8192) {
            progress(rec.position().map_or(0, |p| p.byte()));
        }
        match row(&rec, &idx) {
            Ok(p) => match first_line.get(&p.person_id) {
                Some(first) => out
                    .rejected
                    .push(Rejected { line, reason: format!("person_id repeats the one on line {first}") }),
                None => {
                    first_line.insert(p.person_id, line);
                    out.persons.push(p.normalised());
                }
            },
            Err(reason) => out.rejected.push(Rejected { line, reason }),
        }
    }
    Ok(out)
}

/// One row in index column order (`idx`), or why it cannot be loaded (no values).
fn row(rec: &csv::ByteRecord, idx: &[usize]) -> Result<Person, String> {
    let mut v: Vec<Option<&str>> = Vec::with_capacity(idx.len());
    for (c, &i) in PERSON_COLUMNS.iter().zip(idx) {
        let raw = rec.get(i).unwrap_or_default();
        let s = std::str::from_utf8(raw).map_err(|_| format!("{c} is not UTF-8 (wrong encoding?)"))?;
        let s = s.trim();
        v.push((!s.is_empty()).then_some(s));
    }
    let person_id = v[0].and_then(|s| s.parse::<i64>().ok()).ok_or("person_id is not a number")?;
    let dob = match v[4] {
        None => None,
        Some(s) => Some(parse_date(s).ok_or("dob is not a date (YYYY-MM-DD, MM/DD/YYYY or YYYYMMDD)")?),
    };
    let c = |i: usize| v[i].map(CompactString::from);
    Ok(Person {
        person_id,
        first_name: c(1),
        last_name: c(2),
        middle_initial: c(3),
        dob,
        sex: c(5),
        ssn: c(6),
        address: c(7),
        city: c(8),
        state: c(9),
        zip: c(10),
        phone: c(11),
    })
}

/// The date forms a county export carries.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    ["%Y-%m-%d", "%m/%d/%Y", "%Y%m%d"].iter().find_map(|f| NaiveDate::parse_from_str(s, f).ok())
}
