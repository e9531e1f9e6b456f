//! The transform engine: one source file in, canonical Parquet out.
//!
//! read (format reader) -> drop exact duplicate records (first wins) -> map / rename / add / drop
//! -> normalise by semantic type -> cast -> split rows missing required fields (with
//! `missing_fields`) -> Parquet (snappy). Malformed records are counted and reported with their
//! line numbers, never silently lost. Hostile input ends in a defined outcome or a clear
//! [`TransformError`], never a panic.
//!
//! Modules, each with one job, lower ones never importing higher ones:
//! - [`run`] (here) decodes the input and dispatches on the contract's format once
//!   (`read::reader_for`); nothing below branches on the format again.
//! - `outcome` (what a caller passes and gets back: [`Options`], [`Outputs`], [`Summary`],
//!   [`Malformed`]) and `error` ([`TransformError`]): plain data.
//! - `decode`: the layer in front of every reader. gzip and zip are recognised by content and
//!   expanded under size and ratio limits (zip entries with `..` or absolute names are refused),
//!   UTF-16 with a BOM and a contract-declared legacy encoding are transcoded to UTF-8.
//! - `jv`: an exact JSON value (numbers keep their text) for arrays, objects and FHIR.
//! - `plan` (a contract compiled against its canonical schema, the row buffer and Arrow
//!   builders) and `normalise` (the per-value rules).
//! - `job`: the [`Job`](job::Job) context a reader gets and the one `Reader` trait.
//! - `read::*`: one module per format. Delimited, JSON lines / array, fixed-width and HL7 v2
//!   implement `stream::RecordFormat` and run through `stream`: the framer (`frame`) cuts the
//!   input into records in file order and `dedupe` drops duplicates (a 128-bit hash per
//!   distinct record), workers normalise chunks in parallel straight into Arrow builders.
//!   Memory does not grow with the file. XML streams on one thread (one record and its
//!   ancestors' small elements held); FHIR bundles (joined by reference) and workbooks
//!   (calamine reads a sheet whole) are held in memory up to the contract's
//!   `max_in_memory_bytes`. These three push rows one at a time into `sink`.
//! - `writer`: every reader ends here; batches are written as good and bad Parquet and
//!   malformed JSON lines, in file order.
//!
//! Why Arrow + parquet rather than polars: the rules are per value (trim, digits, date formats),
//! so a row-at-a-time normaliser writing straight into Arrow builders beats an expression engine
//! that materialises every intermediate column, keeps memory flat, and builds in a fraction of
//! the time. This crate is pure: no AWS, no network, no clock beyond timing the run; callers
//! hand it a reader and writers.

use std::io::Read;
use std::time::Instant;

use contracts::{CanonicalSchema, Contract, Format};

pub mod bulk;
mod decode;
mod dedupe;
mod error;
mod frame;
mod job;
mod jv;
pub mod normalise;
mod outcome;
mod plan;
mod read;
mod sink;
mod stream;
mod writer;

pub use error::TransformError;
pub use outcome::{Malformed, Options, Outputs, Summary, ValueIssue};
pub use plan::arrow_schema;

/// Runs the transform of one file. `file_name` becomes `source_file`.
///
/// The input may be gzip- or zip-compressed and UTF-16 (with a BOM) or in the contract's
/// declared encoding: see the decoding layer. Text formats then stream; a FHIR bundle is read
/// whole (up to `max_in_memory_bytes`).
pub fn run(
    contract: &Contract,
    schema: &CanonicalSchema,
    file_name: &str,
    input: impl Read + Send,
    out: Outputs<'_>,
    opts: &Options,
) -> Result<Summary, TransformError> {
    let t0 = Instant::now();
    let reader = read::reader_for(&contract.format);
    let (input, layers) = decode::open(input, contract, reader.text())?;
    let plan = plan::Plan::new(contract, schema, file_name);
    let mut s = reader.read(job::Job { contract, plan, input, out, opts })?;
    s.compression = layers.compression.map(str::to_string);
    s.encoding = layers.transcoded.map(str::to_string);
    s.seconds = t0.elapsed().as_secs_f64();
    Ok(s)
}

/// One file of a FHIR Bulk Data export: the resource type its manifest gives it and its bytes
/// (gzip and zip recognised by content).
pub struct ExportPart<'a> {
    pub resource_type: String,
    pub input: Box<dyn Read + Send + 'a>,
}

/// Runs the transform of one FHIR Bulk Data export: its parts (in manifest order) joined as one
/// file, held in memory together up to `max_in_memory_bytes`. `file_name` (the manifest's)
/// becomes `source_file`. Malformed records name their part by its index in the manifest.
pub fn run_export(
    contract: &Contract,
    schema: &CanonicalSchema,
    file_name: &str,
    parts: Vec<ExportPart<'_>>,
    out: Outputs<'_>,
    opts: &Options,
) -> Result<Summary, TransformError> {
    let t0 = Instant::now();
    let Format::FhirBundle { version, .. } = &contract.format else {
        return Err(TransformError::Internal("run_export takes a fhir_bundle contract".into()));
    };
    let cap = contract.limits.max_in_memory_bytes;
    let (mut held, mut compression) = (0u64, None);
    let mut texts = Vec::with_capacity(parts.len());
    for p in parts {
        let (input, layers) = decode::open(p.input, contract, true)?;
        let mut text = Vec::new();
        input.take(cap - held + 1).read_to_end(&mut text).map_err(decode::io_error)?;
        held += text.len() as u64;
        if held > cap {
            return Err(TransformError::Encoding(format!(
                "the export is larger than max_in_memory_bytes ({cap} bytes): its files are joined in memory; raise the limit"
            )));
        }
        compression = compression.or(layers.compression);
        texts.push(read::fhir::Part { resource_type: p.resource_type, text });
    }
    let plan = plan::Plan::new(contract, schema, file_name);
    let mut s = read::fhir::export(*version, &plan, &texts, out, opts)?;
    s.compression = compression.map(str::to_string);
    s.seconds = t0.elapsed().as_secs_f64();
    Ok(s)
}
