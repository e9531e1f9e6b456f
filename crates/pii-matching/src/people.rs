//! Reading the county's person export for the index, the one reader behind `lake people load`,
//! `lake run --people` and `lake match --people`: CSV or Parquet, from a file or from bytes (an
//! S3 object); columns found through a mapping (`config/people.toml`); every value normalised
//! ([`Person::normalised`]); every row that cannot be loaded reported by its line (CSV) or row
//! (Parquet) number and reason, never by value.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::DataType;
use compact_str::CompactString;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::ChunkReader;
use serde::Deserialize;

use crate::error::IndexError;
pub use crate::model::parse_date;
use crate::model::{Person, PERSON_COLUMNS};

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

    fn export_name<'a>(&'a self, index_column: &'a str) -> &'a str {
        self.columns.get(index_column).map_or(index_column, String::as_str)
    }
}

/// A row that was not loaded: where it is (`line` of a CSV, the header being line 1; `row` of a
/// Parquet file, the first row being 1) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// `line` (CSV) or `row` (Parquet).
    pub unit: &'static str,
    pub line: u64,
    pub reason: String,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.unit, self.line, self.reason)
    }
}

/// The persons of an export, normalised, the rows that cannot be loaded, and the export's
/// columns that no index column is mapped to (read past, reported).
#[derive(Debug, Default)]
pub struct PeopleFile {
    pub persons: Vec<Person>,
    pub rejected: Vec<Rejected>,
    pub unknown_columns: Vec<String>,
}

impl PeopleFile {
    /// An error naming the first rejected rows (line and reason; never a value) when there are any.
    pub fn refuse_rejected(&self, at: &str) -> Result<(), IndexError> {
        if self.rejected.is_empty() {
            return Ok(());
        }
        let first: Vec<String> = self.rejected.iter().take(20).map(Rejected::to_string).collect();
        Err(IndexError::Load(format!(
            "{at}: {} row(s) cannot be loaded: {}{}",
            self.rejected.len(),
            first.join("; "),
            if self.rejected.len() > 20 { "; ..." } else { "" }
        )))
    }
}

/// How far a read is: `done` of `total` (bytes of a CSV, rows of a Parquet file), rows so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadProgress {
    pub done: u64,
    pub total: u64,
    pub rows: u64,
}

/// Reads an export file (CSV, or Parquet by its `.parquet` name or its `PAR1` magic) through
/// `mapping`. A missing export column or a wrong encoding fails the whole file (naming the
/// column, or the line); a bad row (a `person_id` that is not a number or repeats an earlier
/// one, a date that does not parse, bytes that are not UTF-8) is rejected with its number.
pub fn read_export(path: &Path, mapping: &PeopleMapping) -> Result<PeopleFile, IndexError> {
    read_export_with(path, mapping, &mut |_| {})
}

/// [`read_export`], calling `progress` as it goes (every 8,192 CSV rows, every Parquet batch).
pub fn read_export_with(
    path: &Path,
    mapping: &PeopleMapping,
    progress: &mut dyn FnMut(ReadProgress),
) -> Result<PeopleFile, IndexError> {
    let at = path.display().to_string();
    let io = |e: std::io::Error| IndexError::Load(format!("{at}: {e}"));
    let mut f = std::fs::File::open(path).map_err(io)?;
    let total = f.metadata().map_err(io)?.len();
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(io)?;
    let parquet =
        path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")) || magic[..n] == *b"PAR1";
    let f = std::fs::File::open(path).map_err(io)?;
    if parquet {
        read_parquet(&at, f, mapping, progress)
    } else {
        read_csv(&at, std::io::BufReader::with_capacity(1 << 20, f), total, mapping, progress)
    }
}

/// [`read_export_with`] over an export already in memory (an S3 object named `name`).
pub fn read_export_bytes(
    name: &str,
    bytes: bytes::Bytes,
    mapping: &PeopleMapping,
    progress: &mut dyn FnMut(ReadProgress),
) -> Result<PeopleFile, IndexError> {
    if name.to_ascii_lowercase().ends_with(".parquet") || bytes.starts_with(b"PAR1") {
        read_parquet(name, bytes, mapping, progress)
    } else {
        let total = bytes.len() as u64;
        read_csv(name, std::io::Cursor::new(bytes), total, mapping, progress)
    }
}

/// Persons in file order, each id once; later repeats rejected naming the first occurrence.
#[derive(Default)]
struct Collector {
    out: PeopleFile,
    first: HashMap<i64, u64>,
}

impl Collector {
    fn push(&mut self, unit: &'static str, line: u64, row: Result<Person, String>) {
        match row {
            Ok(p) => match self.first.get(&p.person_id) {
                Some(first) => self.out.rejected.push(Rejected {
                    unit,
                    line,
                    reason: format!("person_id repeats the one on {unit} {first}"),
                }),
                None => {
                    self.first.insert(p.person_id, line);
                    self.out.persons.push(p.normalised());
                }
            },
            Err(reason) => self.out.rejected.push(Rejected { unit, line, reason }),
        }
    }
}

/// Where each index column is among the export's `names`, and the export's unmapped columns.
fn locate(
    at: &str,
    names: &[String],
    mapping: &PeopleMapping,
) -> Result<(Vec<usize>, Vec<String>), IndexError> {
    let mut idx = Vec::with_capacity(PERSON_COLUMNS.len());
    let mut missing = Vec::new();
    for c in PERSON_COLUMNS {
        let name = mapping.export_name(c);
        match names.iter().position(|h| h == name) {
            Some(i) => idx.push(i),
            None if name == c => missing.push(name.to_string()),
            None => missing.push(format!("{name} (for {c})")),
        }
    }
    if !missing.is_empty() {
        return Err(IndexError::Load(format!("{at}: missing column(s) {}", missing.join(", "))));
    }
    let unknown =
        names.iter().enumerate().filter(|(i, _)| !idx.contains(i)).map(|(_, n)| n.clone()).collect();
    Ok((idx, unknown))
}

/// The header's names, or a "wrong encoding" error naming line 1 (a UTF-16 export, bytes that
/// are not UTF-8). A UTF-8 byte order mark is dropped.
fn header_names(at: &str, h: &csv::ByteRecord) -> Result<Vec<String>, IndexError> {
    let wrong = |why: &str| {
        IndexError::Load(format!(
            "{at}: wrong encoding: line 1 (the header) {why}; save the export as UTF-8 (\"CSV UTF-8\")"
        ))
    };
    let first = h.get(0).unwrap_or_default();
    if first.starts_with(&[0xFF, 0xFE]) || first.starts_with(&[0xFE, 0xFF]) {
        return Err(wrong("starts with a UTF-16 byte order mark"));
    }
    if h.iter().any(|f| f.contains(&0)) {
        return Err(wrong("holds NUL bytes (UTF-16 without a byte order mark?)"));
    }
    h.iter()
        .enumerate()
        .map(|(i, f)| {
            let f = if i == 0 { f.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(f) } else { f };
            std::str::from_utf8(f).map(|s| s.trim().to_string()).map_err(|_| wrong("is not UTF-8"))
        })
        .collect()
}

fn read_csv<R: Read>(
    at: &str,
    rd: R,
    total: u64,
    mapping: &PeopleMapping,
    progress: &mut dyn FnMut(ReadProgress),
) -> Result<PeopleFile, IndexError> {
    let mut rd = csv::ReaderBuilder::new().flexible(true).from_reader(rd);
    let header =
        rd.byte_headers().map_err(|e| IndexError::Load(format!("{at}: header: {}", csv_kind(&e))))?;
    let (idx, unknown) = locate(at, &header_names(at, header)?, mapping)?;
    let mut c = Collector::default();
    c.out.unknown_columns = unknown;
    let mut rec = csv::ByteRecord::new();
    let mut rows = 0u64;
    loop {
        match rd.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                return Err(IndexError::Load(format!("{at}: line {line}: unreadable ({})", csv_kind(&e))));
            }
        }
        rows += 1;
        let line = rec.position().map_or(0, |p| p.line());
        if rows.is_multiple_of(8192) {
            progress(ReadProgress { done: rec.position().map_or(0, |p| p.byte()), total, rows });
        }
        c.push("line", line, csv_row(&rec, &idx));
    }
    progress(ReadProgress { done: total, total, rows });
    Ok(c.out)
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

fn csv_row(rec: &csv::ByteRecord, idx: &[usize]) -> Result<Person, String> {
    let mut v: [Option<&str>; 12] = [None; 12];
    for (k, (c, &i)) in PERSON_COLUMNS.iter().zip(idx).enumerate() {
        let raw = rec.get(i).unwrap_or_default();
        let s = std::str::from_utf8(raw).map_err(|_| format!("{c} is not UTF-8 (wrong encoding)"))?;
        v[k] = Some(s);
    }
    row(&v)
}

fn read_parquet<T: ChunkReader + 'static>(
    at: &str,
    src: T,
    mapping: &PeopleMapping,
    progress: &mut dyn FnMut(ReadProgress),
) -> Result<PeopleFile, IndexError> {
    let err = |e: &dyn std::fmt::Display| IndexError::Load(format!("{at}: not a readable Parquet file: {e}"));
    let b = ParquetRecordBatchReaderBuilder::try_new(src).map_err(|e| err(&e))?;
    let total = u64::try_from(b.metadata().file_metadata().num_rows()).unwrap_or_default();
    let names: Vec<String> = b.schema().fields().iter().map(|f| f.name().clone()).collect();
    let (idx, unknown) = locate(at, &names, mapping)?;
    let mut c = Collector::default();
    c.out.unknown_columns = unknown;
    let mut rows = 0u64;
    for batch in b.with_batch_size(8192).build().map_err(|e| err(&e))? {
        let batch = batch.map_err(|e| err(&e))?;
        let cols = text_columns(at, &batch, &idx)?;
        for i in 0..batch.num_rows() {
            rows += 1;
            let mut v: [Option<&str>; 12] = [None; 12];
            for (k, col) in cols.iter().enumerate() {
                v[k] = (!col.is_null(i)).then(|| col.value(i));
            }
            c.push("row", rows, row(&v));
        }
        progress(ReadProgress { done: rows, total, rows });
    }
    Ok(c.out)
}

/// The mapped columns of a batch as text (numbers as digits, dates as ISO), in index column order.
fn text_columns(at: &str, batch: &RecordBatch, idx: &[usize]) -> Result<Vec<StringArray>, IndexError> {
    PERSON_COLUMNS
        .iter()
        .zip(idx)
        .map(|(c, &i)| {
            let a = arrow_cast::cast(batch.column(i), &DataType::Utf8)
                .map_err(|e| IndexError::Load(format!("{at}: column for {c} cannot be read as text: {e}")))?;
            a.as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .ok_or_else(|| IndexError::Load(format!("{at}: column for {c} cannot be read as text")))
        })
        .collect()
}

/// One row from its values in index column order, or why it cannot be loaded (no values).
fn row(v: &[Option<&str>; 12]) -> Result<Person, String> {
    let v: Vec<Option<&str>> = v.iter().map(|s| s.map(str::trim).filter(|s| !s.is_empty())).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(bytes: &[u8]) -> Result<PeopleFile, IndexError> {
        read_export_bytes(
            "p.csv",
            bytes::Bytes::copy_from_slice(bytes),
            &PeopleMapping::identity(),
            &mut |_| {},
        )
    }

    const HEADER: &str =
        "person_id,first_name,last_name,middle_initial,dob,sex,ssn,address,city,state,zip,phone";

    #[test]
    fn a_utf16_export_is_a_wrong_encoding_naming_line_1() {
        let mut utf16 = vec![0xFF, 0xFE];
        for u in format!("{HEADER}\n1,A,B,,,,,,,,,\n").encode_utf16() {
            utf16.extend(u.to_le_bytes());
        }
        let e = csv(&utf16).unwrap_err().to_string();
        assert!(
            e.contains("wrong encoding: line 1 (the header) starts with a UTF-16 byte order mark"),
            "{e}"
        );
        let latin1 = format!("{HEADER},stra\u{df}e\n").replace('\u{df}', "\u{0}");
        let mut latin1 = latin1.into_bytes();
        let at = latin1.iter().position(|&b| b == 0).unwrap();
        latin1[at] = 0xDF; // ß in Latin-1
        let e = csv(&latin1).unwrap_err().to_string();
        assert!(e.contains("wrong encoding: line 1 (the header) is not UTF-8"), "{e}");
    }

    #[test]
    fn a_utf8_bom_is_dropped_and_unmapped_columns_are_reported() {
        let text = format!("\u{feff}{HEADER},favourite_colour\n7,ann,lee,,1980-01-02,f,,,,,,,blue\n");
        let f = csv(text.as_bytes()).unwrap();
        assert_eq!(f.persons.len(), 1);
        assert_eq!(f.persons[0].first_name.as_deref(), Some("ANN"));
        assert_eq!(f.unknown_columns, ["favourite_colour"]);
    }

    #[test]
    fn a_row_in_another_encoding_is_rejected_by_line_without_its_value() {
        let mut text = format!("{HEADER}\n1,ANN,LEE,,,,,,,,,\n2,").into_bytes();
        text.extend(b"J\xF6RG,LEE,,,,,,,,,\n");
        let f = csv(&text).unwrap();
        assert_eq!(f.persons.len(), 1);
        assert_eq!(f.rejected[0].to_string(), "line 3: first_name is not UTF-8 (wrong encoding)");
    }
}
