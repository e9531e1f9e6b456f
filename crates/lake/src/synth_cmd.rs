//! `lake synth CONTRACT --rows N --out FILE`: argument parsing, files and printing only; the
//! generator is the `synth` crate.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use contracts::Contract;

/// Make a realistic test file for a source, with no PHI.
///
/// Writes FILE in the contract's own format and dialect (delimiter, quoting, header; JSON
/// paths; fixed-width spans and record types; HL7 v2 repetitions and batch headers; FHIR
/// version and paths; XML record path; the workbook's sheet and header row; the declared text
/// encoding) with synthetic people, a chosen share of defects, and FILE.manifest.json: the
/// good / bad / malformed / duplicate counts `lake contract check` must report for it. The
/// same contract, seed and options always give the same bytes.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  lake synth config/sources/st_marys.toml --rows 100000 --out /tmp/st_marys.csv \\\n      --defects duplicates=0.02,missing=0.05,malformed=0.01\n  lake contract check config/sources/st_marys.toml /tmp/st_marys.csv --out /tmp/check\n\nDefects: duplicates (exact copies of earlier records), missing (a required field left empty:\na bad row), malformed (a record the format's reader cannot read). Each is the chance that a\nrecord carries it; the manifest has the exact counts written. A workbook has no malformed\nrecords (the manifest says so in `notes`)."
)]
pub struct SynthArgs {
    /// The source contract (TOML).
    pub contract: PathBuf,
    /// Records to write (duplicates and malformed ones included).
    #[arg(long)]
    pub rows: u64,
    /// The file to write; FILE.manifest.json is written beside it.
    #[arg(long, short)]
    pub out: PathBuf,
    /// The seed: the same seed gives the same file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Shares of defective records, e.g. `duplicates=0.02,missing=0.05,malformed=0.01`.
    #[arg(long, default_value = "none")]
    pub defects: synth::Defects,
    /// gzip the file (the pipeline reads gzip by content).
    #[arg(long)]
    pub gzip: bool,
    /// FHIR contracts: NDJSON of resources (references `Type/id`) instead of one Bundle.
    #[arg(long)]
    pub fhir_ndjson: bool,
    /// Directory of canonical schemas (default: `canonical/` next to the contract's folder).
    #[arg(long)]
    pub canonical: Option<PathBuf>,
}

pub fn run(a: SynthArgs) -> Result<ExitCode> {
    let catalog = crate::check::catalog_for(&a.contract, a.canonical.as_deref())?;
    let contract = Contract::load(&a.contract, &catalog)?;
    let schema = catalog.get(&contract.dataset).context("dataset vanished from catalog")?;
    let opts = synth::Options {
        rows: a.rows,
        seed: a.seed,
        defects: a.defects,
        gzip: a.gzip,
        fhir_ndjson: a.fhir_ndjson,
    };
    let file = File::create(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let bar = std::io::stderr().is_terminal() && a.rows >= 10_000;
    let start = Instant::now();
    let mut progress = |done: u64| {
        if bar {
            let pct = done as f64 * 100.0 / a.rows.max(1) as f64;
            let filled = (pct / 5.0) as usize;
            eprint!(
                "\r  [{:<20}] {pct:>3.0}%  {done} / {} records  {:.0}s   ",
                "#".repeat(filled),
                a.rows,
                start.elapsed().as_secs_f64()
            );
        }
    };
    let res = synth::generate(&contract, schema, &opts, &mut w, &mut progress);
    if bar {
        eprint!("\r{:78}\r", "");
    }
    let manifest = match res.and_then(|m| w.flush().map(|()| m).map_err(synth::SynthError::from)) {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&a.out);
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let mpath = synth::Manifest::path_for(&a.out);
    std::fs::write(&mpath, serde_json::to_string_pretty(&manifest)? + "\n")
        .with_context(|| format!("cannot write {}", mpath.display()))?;
    let e = &manifest.expected;
    println!("{}  ({} {}, seed {})", a.out.display(), contract.source, manifest.format, a.seed);
    println!("  records         {:>10}   {} bytes", manifest.rows, manifest.bytes);
    println!("  good            {:>10}", e.good);
    println!("  bad             {:>10}", e.bad);
    for (f, n) in &e.bad_by_field {
        println!("    missing {f:<14} {n:>6}");
    }
    println!("  malformed       {:>10}", e.malformed);
    println!("  duplicates      {:>10}", e.duplicates);
    for n in &manifest.notes {
        println!("  note: {n}");
    }
    println!("  manifest        {}", mpath.display());
    Ok(ExitCode::SUCCESS)
}
