//! Synthetic source files, written from a contract: `lake synth CONTRACT --rows N --out FILE`.
//!
//! A file in the source's own format and dialect (delimited with its delimiter, quoting and
//! header; JSON lines or array at the contract's paths; fixed width at its spans with its record
//! types; HL7 v2 batches with the repetitions the paths select; FHIR bundles of the contract's
//! version; XML at the record path with its ancestors; xlsx workbooks on the named sheet under
//! the header row), in the declared text encoding, optionally gzip-compressed, holding synthetic
//! people (`people`: no PHI) and a chosen share of defects: exact duplicate records, records
//! missing a required field (bad rows) and malformed records. Every file comes with a
//! [`Manifest`] of what the pipeline must count in it (good, bad, malformed, duplicates, bad
//! rows per missing field), computed from what was written, never by running the transform, so
//! a test can hold the transform to it.
//!
//! Deterministic: the same contract, seed and options give the same bytes (`rng` is a fixed
//! SplitMix64, and each record draws from its own stream). Streaming: text formats are written
//! record by record (a workbook is built in memory, as xlsx needs).
//!
//! Modules: `rng` (the generator), `people` (synthetic people and visits), `record` (the columns
//! a contract fills, each record's values and defect), `out` (text encoding, gzip, byte count),
//! `write::*` (one writer per format). Boundaries: depends on `contracts` only among the
//! workspace crates; nothing in the Lambda bundles links it.

use std::collections::BTreeMap;
use std::io::Write;

use contracts::{CanonicalSchema, Contract};
use serde::Serialize;

mod out;
mod people;
mod record;
mod rng;
mod write;

use record::{Columns, Kind};

/// What went wrong making a file.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// The options cannot be honoured (bad defects, too many rows for the format).
    #[error("{0}")]
    Options(String),
    /// The contract cannot be written from (e.g. no field a writer can place).
    #[error("{0}")]
    Contract(String),
    #[error("cannot write the file: {0}")]
    Io(#[from] std::io::Error),
}

/// The share of records of each defect, each in `0..=1` and together at most 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Defects {
    /// Exact copies of an earlier record: dropped by the pipeline, counted as duplicates.
    pub duplicates: f64,
    /// Records with one required field empty or absent: bad rows (`missing_fields`).
    pub missing: f64,
    /// Records the format's reader cannot read: malformed.
    pub malformed: f64,
}

impl std::str::FromStr for Defects {
    type Err = SynthError;

    /// `duplicates=0.02,missing=0.05,malformed=0.01` (any subset, any order; `none` for none).
    fn from_str(s: &str) -> Result<Self, SynthError> {
        let mut d = Defects::default();
        let bad = SynthError::Options;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty() && *p != "none") {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("defect `{part}` is not NAME=SHARE (e.g. missing=0.05)")))?;
            let share: f64 = v
                .trim()
                .parse()
                .ok()
                .filter(|x: &f64| (0.0..=1.0).contains(x))
                .ok_or_else(|| bad(format!("defect `{k}`: `{v}` is not a share between 0 and 1")))?;
            match k.trim() {
                "duplicates" | "duplicate" | "dup" => d.duplicates = share,
                "missing" | "bad" => d.missing = share,
                "malformed" => d.malformed = share,
                other => {
                    return Err(bad(format!(
                        "unknown defect `{other}` (known: duplicates, missing, malformed)"
                    )))
                }
            }
        }
        if d.duplicates + d.missing + d.malformed > 1.0 + 1e-9 {
            return Err(bad("the defect shares add up to more than 1".into()));
        }
        Ok(d)
    }
}

/// How a file is made.
#[derive(Debug, Clone)]
pub struct Options {
    /// Records written, duplicates and malformed ones included.
    pub rows: u64,
    pub seed: u64,
    pub defects: Defects,
    /// gzip the file (the pipeline recognises gzip by content).
    pub gzip: bool,
    /// FHIR: NDJSON of resources (references `Type/id`) instead of one Bundle.
    pub fhir_ndjson: bool,
}

/// What the pipeline must report for the file: `transform::run` (and `lake contract check`)
/// agree with `expected` exactly.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    pub source: String,
    pub dataset: String,
    pub format: String,
    pub seed: u64,
    pub defects: Defects,
    /// Records written (duplicates and malformed ones included).
    pub rows: u64,
    pub expected: Expected,
    /// The text encoding written, when not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// Bytes of the file as written.
    pub bytes: u64,
    /// What could not be honoured, in words (e.g. no malformed records in a workbook).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The counts a run over the file must report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Expected {
    pub rows_read: u64,
    pub good: u64,
    pub bad: u64,
    pub malformed: u64,
    pub duplicates: u64,
    /// Lines deliberately not read (fixed-width header and trailer records).
    pub skipped: u64,
    /// Bad rows per missing required column.
    pub bad_by_field: BTreeMap<String, u64>,
}

impl Manifest {
    /// Where the manifest of `file` goes: `FILE.manifest.json`.
    pub fn path_for(file: &std::path::Path) -> std::path::PathBuf {
        let mut name = file.as_os_str().to_owned();
        name.push(".manifest.json");
        name.into()
    }
}

/// Writes a file of `opts.rows` records for `contract` to `sink`; `progress` is called with the
/// records written so far (every few thousand, and at the end).
pub fn generate(
    contract: &Contract,
    schema: &CanonicalSchema,
    opts: &Options,
    sink: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<Manifest, SynthError> {
    let cols = Columns::new(contract, schema)?;
    let mut w = write::writer_for(contract, &cols, opts)?;
    let mut notes = Vec::new();
    let mut defects = opts.defects;
    if defects.malformed > 0.0 && !w.can_malform() {
        notes.push(format!(
            "no malformed records: {} has none a reader could meet (every cell of a workbook reads)",
            contract.format.name()
        ));
        defects.malformed = 0.0;
    }
    if defects.missing > 0.0 && cols.required_fields().is_empty() {
        notes.push("no records missing a field: the contract maps no required column".into());
        defects.missing = 0.0;
    }
    let mut out = out::Out::new(sink, contract.encoding, opts.gzip);
    let plan = record::Plan::new(opts.seed, defects, cols.required_fields().len());
    let mut expected = Expected { skipped: w.skipped(), ..Default::default() };
    w.begin(&mut out)?;
    for i in 0..opts.rows {
        let kind = plan.kind(i);
        let rec = match kind {
            Kind::Duplicate(j) => cols.record(opts.seed, j, plan.kind(j)),
            k => cols.record(opts.seed, i, k),
        };
        w.record(&mut out, &rec, kind)?;
        count(&mut expected, &cols, kind, &plan);
        if i % 4096 == 4095 {
            progress(i + 1);
        }
    }
    w.end(&mut out)?;
    progress(opts.rows);
    let bytes = out.finish()?;
    expected.rows_read = opts.rows;
    Ok(Manifest {
        source: contract.source.clone(),
        dataset: contract.dataset.clone(),
        format: contract.format.name().to_string(),
        seed: opts.seed,
        defects,
        rows: opts.rows,
        expected,
        encoding: contract
            .encoding
            .filter(|e| *e != contracts::TextEncoding::Utf8)
            .map(|e| out::label(e).to_string()),
        compression: opts.gzip.then(|| "gzip".to_string()),
        bytes,
        notes,
    })
}

/// Adds one record of `kind` to the expected counts.
fn count(e: &mut Expected, cols: &Columns, kind: Kind, plan: &record::Plan) {
    match kind {
        Kind::Good => e.good += 1,
        Kind::Missing(c) => {
            e.bad += 1;
            *e.bad_by_field.entry(cols.required_fields()[c].to_string()).or_default() += 1;
        }
        Kind::Malformed => e.malformed += 1,
        Kind::Duplicate(j) => {
            debug_assert!(!matches!(plan.kind(j), Kind::Malformed | Kind::Duplicate(_)));
            e.duplicates += 1;
        }
    }
}
