//! The transform engine: one source file in, canonical Parquet out.
//!
//! read (format reader) -> drop exact duplicate records (first wins) -> map / rename / add / drop
//! -> normalise by semantic type -> cast -> split rows missing required fields (with
//! `missing_fields`) -> Parquet (snappy). Malformed records are counted and reported with their
//! line numbers, never silently lost. Hostile input ends in a defined outcome or a clear
//! [`TransformError`], never a panic.
//!
//! In front of every reader sits a decoding layer (`decode`): gzip and zip are recognised by
//! content and expanded under size and ratio limits (zip entries with `..` or absolute names are
//! refused), UTF-16 with a BOM and a contract-declared legacy encoding are transcoded to UTF-8.
//!
//! Readers: delimited, JSON lines / array, fixed-width and HL7 v2 stream: a framer cuts the
//! input into records in file order and drops duplicates (a 128-bit hash per distinct record),
//! workers normalise chunks in parallel straight into Arrow builders, and a writer appends row
//! groups in file order. Memory does not grow with the file. XML streams on one thread (one
//! record and its ancestors' small elements held). FHIR bundles (joined by reference) and
//! workbooks (calamine reads a sheet whole) are held in memory up to the contract's
//! `max_in_memory_bytes`; they and XML feed the same writer (`sink`).
//!
//! Why Arrow + parquet rather than polars: the rules are per value (trim, digits, date formats),
//! so a row-at-a-time normaliser writing straight into Arrow builders beats an expression engine
//! that materialises every intermediate column, keeps memory flat, and builds in a fraction of
//! the time. This crate is pure: no AWS, no network, no clock beyond timing the run; callers
//! hand it a reader and writers.

mod decode;
mod engine;
mod excel;
mod fhir;
mod frame;
mod hl7;
pub mod normalise;
mod plan;
mod sink;
mod xml;

pub use engine::{run, Malformed, Options, Outputs, Summary};
pub use plan::arrow_schema;

/// Why a file could not be transformed at all (record-level problems are `Malformed`, not errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    #[error("the file is empty")]
    EmptyInput,
    #[error("header mismatch: {0}")]
    Header(String),
    #[error("unsupported content: {0}")]
    Encoding(String),
    #[error("broken file structure: {0}")]
    Structure(String),
    #[error("cannot read the input: {0}")]
    Read(String),
    #[error("cannot write the output: {0}")]
    Write(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl TransformError {
    /// A stable, machine-readable kind (for ledgers, alerts and Lambda error types).
    pub fn kind(&self) -> &'static str {
        match self {
            TransformError::EmptyInput => "EmptyInput",
            TransformError::Header(_) => "HeaderMismatch",
            TransformError::Encoding(_) => "UnsupportedContent",
            TransformError::Structure(_) => "BrokenStructure",
            TransformError::Read(_) => "ReadFailed",
            TransformError::Write(_) => "WriteFailed",
            TransformError::Internal(_) => "Internal",
        }
    }

    /// True when retrying the same input can help (I/O), false when the file itself is the problem.
    pub fn retryable(&self) -> bool {
        matches!(self, TransformError::Read(_) | TransformError::Write(_) | TransformError::Internal(_))
    }
}
