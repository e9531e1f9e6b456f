//! `lake contract check` and `lake contract validate`.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use contracts::{Catalog, Contract};

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The source contract (TOML).
    pub contract: PathBuf,
    /// The input file.
    pub input: PathBuf,
    /// Output directory (created if missing).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Keep the raw text of malformed records in <stem>.malformed.jsonl (it may hold PHI).
    #[arg(long)]
    pub keep_raw: bool,
    /// Directory of canonical schemas (default: `canonical/` next to the contract's folder).
    #[arg(long)]
    pub canonical: Option<PathBuf>,
    /// Print the summary as one JSON object (with peak memory) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// The catalog for a contract: `--canonical`, else `<contract dir>/../canonical`, else built-in.
pub fn catalog_for(contract: &Path, canonical: Option<&Path>) -> Result<Catalog> {
    if let Some(dir) = canonical {
        return Ok(Catalog::load_dir(dir)?);
    }
    let guess = contract.parent().and_then(Path::parent).map(|p| p.join("canonical"));
    match guess {
        Some(d) if d.is_dir() => Ok(Catalog::load_dir(&d)?),
        _ => Ok(Catalog::builtin()),
    }
}

/// Peak resident memory of this process in KiB (Linux), for benchmark reports.
pub fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    l.split_whitespace().nth(1)?.parse().ok()
}

pub fn run_check(a: CheckArgs) -> Result<ExitCode> {
    let catalog = catalog_for(&a.contract, a.canonical.as_deref())?;
    let contract = Contract::load(&a.contract, &catalog)?;
    for w in contract.warnings(&catalog) {
        eprintln!("warning: {w}");
    }
    let schema = catalog.get(&contract.dataset).context("dataset vanished from catalog")?;
    let input = File::open(&a.input).with_context(|| format!("cannot open input {}", a.input.display()))?;
    let name = a.input.file_name().and_then(|n| n.to_str()).unwrap_or("input").to_string();
    let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s).to_string();
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let create = |suffix: &str| -> Result<BufWriter<File>> {
        let p = a.out.join(format!("{stem}{suffix}"));
        Ok(BufWriter::with_capacity(
            1 << 20,
            File::create(&p).with_context(|| format!("cannot create {}", p.display()))?,
        ))
    };
    let (mut good, mut bad, mut malformed) =
        (create(".parquet")?, create(".bad.parquet")?, create(".malformed.jsonl")?);

    let total = a.input.metadata().map(|m| m.len()).unwrap_or(0);
    let mut opts = transform::Options { keep_raw: a.keep_raw, ..Default::default() };
    if let Some(t) = a.threads {
        opts.threads = t;
    }
    if std::io::stderr().is_terminal() && !a.json {
        let last = AtomicU64::new(0);
        let start = Instant::now();
        opts.progress = Some(Box::new(move |read| {
            let ms = start.elapsed().as_millis() as u64;
            if ms - last.load(Ordering::Relaxed) >= 250 {
                last.store(ms, Ordering::Relaxed);
                let pct = if total > 0 { read as f64 * 100.0 / total as f64 } else { 0.0 };
                eprint!("\r  read {:.1} / {:.1} MB ({pct:.0}%)   ", read as f64 / 1e6, total as f64 / 1e6);
            }
        }));
    }
    let outputs = transform::Outputs { good: &mut good, bad: &mut bad, malformed: &mut malformed };
    let res = transform_input(&contract, schema, &name, (&a.input, input), outputs, &opts)?;
    if opts.progress.is_some() {
        eprint!("\r{:60}\r", "");
    }
    let s = match res {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {} [{}] ({})", e, e.kind(), a.input.display());
            return Ok(ExitCode::from(1));
        }
    };
    for w in [&mut good, &mut bad, &mut malformed] {
        w.flush()?;
    }
    if a.json {
        let mut v = serde_json::to_value(&s)?;
        v["peak_rss_kib"] = serde_json::json!(peak_rss_kib());
        v["outputs"] = serde_json::json!(a.out.join(&stem).display().to_string());
        println!("{v}");
    } else {
        println!("{}  ({} -> {})", name, contract.source, contract.dataset);
        println!("  rows read       {:>10}", s.rows_read);
        println!("  duplicates      {:>10}", s.duplicates);
        println!("  malformed       {:>10}   see {stem}.malformed.jsonl", s.malformed);
        println!("  good            {:>10}   {stem}.parquet", s.good);
        println!("  bad             {:>10}   {stem}.bad.parquet", s.bad);
        for (f, n) in &s.bad_by_field {
            println!("    missing {f:<14} {n:>6}");
        }
        if !s.ignored_keys.is_empty() {
            // by position, never by name: a key may hold PHI
            let keys: Vec<String> =
                s.ignored_keys.iter().map(|(pos, n)| format!("at position {pos} ({n})")).collect();
            println!("  ignored keys    {}", keys.join(", "));
        }
        if s.skipped > 0 {
            println!(
                "  skipped         {:>10}   (not rows: other record types, unjoined resources)",
                s.skipped
            );
        }
        for (what, n) in &s.refused_values {
            println!("  refused value   {n:>10}   {what}");
        }
        println!(
            "  seconds         {:>10.2}   ({:.0} rows/s, {:.1} MB/s)",
            s.seconds,
            s.rows_read as f64 / s.seconds.max(1e-9),
            s.bytes as f64 / 1e6 / s.seconds.max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The transform of the input file: a FHIR Bulk Data export's parts when it is the export's
/// manifest (the manifest's resources of types not read counted as skipped).
fn transform_input(
    contract: &Contract,
    schema: &contracts::CanonicalSchema,
    name: &str,
    (path, input): (&Path, File),
    outputs: transform::Outputs<'_>,
    opts: &transform::Options,
) -> Result<Result<transform::Summary, transform::TransformError>> {
    Ok(match export_of(contract, path) {
        Some(parts) => {
            let (parts, not_read) = parts?;
            transform::run_export(contract, schema, name, parts, outputs, opts).map(|mut s| {
                s.skipped += not_read;
                s
            })
        }
        None => transform::run(contract, schema, name, input, outputs, opts),
    })
}

/// For a contract reading FHIR Bulk Data exports and its manifest as the input: the parts the
/// manifest lists for the contract's types, opened from the manifest's folder, and the count of
/// resources of the types not read. `None` for any other input.
fn export_of(
    contract: &Contract,
    input: &Path,
) -> Option<Result<(Vec<transform::ExportPart<'static>>, u64)>> {
    let contracts::Format::FhirBundle { export: Some(e), .. } = &contract.format else { return None };
    if input.file_name().and_then(|n| n.to_str()) != Some(e.manifest.as_str()) {
        return None;
    }
    let open = || -> Result<(Vec<transform::ExportPart<'static>>, u64)> {
        let bytes = std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
        let manifest = transform::bulk::Manifest::parse(&bytes).map_err(|m| anyhow::anyhow!("{m}"))?;
        let (files, not_read) = manifest.parts(&e.types);
        let dir = input.parent().unwrap_or(Path::new("."));
        let mut parts = Vec::new();
        for f in files {
            let p = dir.join(&f.file_name);
            let file = File::open(&p).with_context(|| {
                format!("part {} ({}) of the export is missing: {}", f.index, f.resource_type, p.display())
            })?;
            parts.push(transform::ExportPart { resource_type: f.resource_type, input: Box::new(file) });
        }
        Ok((parts, not_read))
    };
    Some(open())
}

pub fn run_validate(paths: &[PathBuf], canonical: Option<PathBuf>) -> Result<ExitCode> {
    let mut failed = 0;
    for p in paths {
        let catalog = catalog_for(p, canonical.as_deref())?;
        match Contract::load(p, &catalog) {
            Ok(c) => {
                println!(
                    "ok    {} (source {}, dataset {}, format {})",
                    p.display(),
                    c.source,
                    c.dataset,
                    c.format.family()
                );
                for w in c.warnings(&catalog) {
                    println!("      warning: {w}");
                }
            }
            Err(e) => {
                println!("FAIL  {e}");
                failed += 1;
            }
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
