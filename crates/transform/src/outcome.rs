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
    /// JSON keys the contract does not map, with how many records had them.
    pub ignored_keys: BTreeMap<String, u64>,
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
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}
