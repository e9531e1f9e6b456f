//! What a caller hands a run (knobs, output writers) and what it gets back (counts, malformed
//! records). Plain data: no reading, no writing.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

/// Knobs of one run.
pub struct Options {
    /// Keep the raw text of malformed records in the malformed output (it may hold PHI).
    pub keep_raw: bool,
    /// Worker threads (default: available cores).
    pub threads: usize,
    /// Bytes of input per chunk handed to a worker.
    pub chunk_bytes: usize,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Called from the reading thread after each block with the bytes read so far.
    pub progress: Option<Box<dyn Fn(u64) + Send + Sync>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            keep_raw: false,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            chunk_bytes: 4 << 20,
            row_group_rows: 128 * 1024,
            progress: None,
        }
    }
}

/// Where a run writes: good rows (Parquet), bad rows (Parquet), malformed records (JSON lines).
pub struct Outputs<'a> {
    pub good: &'a mut (dyn Write + Send),
    pub bad: &'a mut (dyn Write + Send),
    pub malformed: &'a mut (dyn Write + Send),
}

/// What a run did, in counts a person can check.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub bytes: u64,
    /// Records read (data lines or JSON elements; header and blank lines excluded).
    pub rows_read: u64,
    pub duplicates: u64,
    pub malformed: u64,
    pub blank: u64,
    pub good: u64,
    pub bad: u64,
    /// Bad rows per missing required column (a row may miss several).
    pub bad_by_field: BTreeMap<String, u64>,
    /// Records deliberately not read: fixed-width lines of another record type (header,
    /// trailer). Not counted in `rows_read`.
    pub skipped: u64,
    /// What was in front of the data: `gzip` or `zip`, and the encoding transcoded from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Source keys the contract neither maps nor drops, by 1-based position (JSON: the key's
    /// place in its record's object; workbooks: the header column), with how many records had
    /// one there. Never by name: a key may hold PHI.
    pub ignored_keys: BTreeMap<usize, u64>,
    /// Values refused (their cell null): `<column>: <reason>` with how many, e.g.
    /// `charges: not a finite number`. A refused required value also makes its row bad.
    pub refused_values: BTreeMap<String, u64>,
    pub seconds: f64,
}

/// One malformed record: where it was and why (and its text only when asked for).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Malformed {
    /// 1-based line of the record's start (JSON array: absent, see `element`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// 0-based element index in a JSON array.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub element: Option<u64>,
    /// 0-based index of the part in a FHIR Bulk Data export's manifest (`line` is then the
    /// line within that part); never a file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<u32>,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

/// Why a value was refused: its cell is null and the run counts it under its column. Closed:
/// every reason a value can be refused for is here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueIssue {
    /// `inf`, `-Infinity`, `NaN`, `1e400`: a number that is not finite.
    NonFinite,
    /// A JSON boolean where text is expected.
    Boolean,
    /// A JSON object where text or a list item is expected.
    Object,
    /// A JSON array where one value is expected.
    Array,
    /// An array inside a list column's array.
    NestedArray,
    /// A date with only a year and month, or only a year.
    PartialDate,
}

impl ValueIssue {
    pub const ALL: [ValueIssue; 6] = [
        ValueIssue::NonFinite,
        ValueIssue::Boolean,
        ValueIssue::Object,
        ValueIssue::Array,
        ValueIssue::NestedArray,
        ValueIssue::PartialDate,
    ];

    /// The reason as a user reads it (never the value).
    pub fn reason(self) -> &'static str {
        match self {
            ValueIssue::NonFinite => "not a finite number",
            ValueIssue::Boolean => "a boolean (the contract's non_scalar rule is refuse)",
            ValueIssue::Object => "an object (the contract's non_scalar rule is refuse)",
            ValueIssue::Array => {
                "an array where one value is expected (the contract's non_scalar rule is refuse)"
            }
            ValueIssue::NestedArray => "an array inside the list (the contract's non_scalar rule is refuse)",
            ValueIssue::PartialDate => "a partial date (the contract's partial_dates rule is refuse)",
        }
    }

    /// Index in [`ValueIssue::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}
