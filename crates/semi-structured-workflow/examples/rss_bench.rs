//! Peak memory of the workflow handler against the size of a delimited input: a benchmark (a
//! command), not a test. For each adapter and size it runs a child process that writes a
//! synthetic file of that size (no PHI: `synth`, streamed, never held whole), resets the
//! process's peak RSS, runs the real handler on one work message, and reports the peak RSS
//! (`VmHWM`), the counts (checked against the generator's manifest) and the time.
//!
//! ```text
//! cargo run --release -p semi-structured-workflow --example rss_bench -- \
//!     [--gib 1,4] [--adapters local,moto] [--source st_marys] [--dir /tmp]
//! ```
//!
//! `local`: folders under `--dir` (the input file is written there, and removed after).
//! `moto`: needs `LAKE_TEST_AWS_ENDPOINT` (a moto server); the input is uploaded with a
//! streaming multipart upload and every object is deleted after (moto keeps them in memory:
//! its own RSS is not the handler's). Linux only (`/proc/self/status`, `/proc/self/clear_refs`).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Context, LambdaEvent};
use layer::ledger::{RunRecord, Status};
use layer::pipeline::Deps;
use layer::{FormatFamily, Stage};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const KEY_PREFIX: &str = "bench/2026/12";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.into())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("rss_bench [--gib 1,4] [--adapters local,moto] [--source st_marys] [--dir DIR]");
        return Ok(());
    }
    if args.get(1).map(String::as_str) == Some("--one") {
        let (adapter, gib, source, dir) =
            (&args[2], args[3].parse::<f64>()?, &args[4], PathBuf::from(&args[5]));
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let line = rt.block_on(one(adapter, gib, source, &dir))?;
        println!("{line}");
        return Ok(());
    }
    let sizes: Vec<f64> = arg(&args, "--gib", "1,4").split(',').map(str::parse).collect::<Result<_, _>>()?;
    let adapters = arg(&args, "--adapters", "local,moto");
    let (source, dir) = (arg(&args, "--source", "st_marys"), arg(&args, "--dir", "/tmp"));
    println!(
        "| adapter | input GiB | rows | good | wall s | MB/s | peak RSS MiB | dedupe set MiB (computed) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for adapter in adapters.split(',') {
        let mut peaks = vec![];
        for gib in &sizes {
            let out = Command::new(std::env::current_exe()?)
                .args(["--one", adapter, &gib.to_string(), &source, &dir])
                .stderr(std::process::Stdio::inherit())
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let Some(last) = text.lines().last().filter(|_| out.status.success()) else {
                return Err(format!("{adapter} {gib} GiB failed: {}", out.status).into());
            };
            let v: serde_json::Value = serde_json::from_str(last)?;
            let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
            println!(
                "| {adapter} | {gib} | {} | {} | {:.1} | {:.0} | {:.0} | {:.0} |",
                v["rows"],
                v["good"],
                f("wall_s"),
                f("input_bytes") / 1e6 / f("wall_s"),
                f("hwm_mib"),
                f("dedupe_mib")
            );
            peaks.push(f("hwm_mib"));
        }
        if let (Some(first), Some(last)) = (peaks.first(), peaks.last()) {
            println!(
                "| {adapter}: peak RSS growth, largest / smallest input | | | | | | {:.3}x | |",
                last / first
            );
        }
    }
    Ok(())
}

/// The synthetic file's generator options: a realistic share of defects.
fn synth_options(rows: u64) -> synth::Options {
    let defects = synth::Defects { duplicates: 0.01, missing: 0.02, malformed: 0.001 };
    synth::Options { rows, seed: 2026, defects, gzip: false, fhir_ndjson: false }
}

/// Writes `gib` GiB of the source's format into `sink`; returns the manifest.
fn generate(toml: &str, gib: f64, sink: &mut dyn Write) -> Res<synth::Manifest> {
    let catalog = contracts::Catalog::builtin();
    let contract = contracts::Contract::from_toml_str(toml, "bench", &catalog)?;
    let schema = catalog.get(&contract.dataset).ok_or("unknown dataset")?.clone();
    let mut probe = Vec::new();
    let m = synth::generate(&contract, &schema, &synth_options(20_000), &mut probe, &mut |_| {})?;
    let rows = (gib * (1u64 << 30) as f64 / (m.bytes as f64 / 20_000.0)) as u64;
    Ok(synth::generate(&contract, &schema, &synth_options(rows), sink, &mut |_| {})?)
}

/// One adapter, one size, in this process: prepare, reset the peak, run the handler, report.
async fn one(adapter: &str, gib: f64, source: &str, dir: &Path) -> Res<String> {
    let toml = std::fs::read_to_string(root().join(format!("config/sources/{source}.toml")))?;
    let dataset = contracts::Contract::from_toml_str(&toml, source, &contracts::Catalog::builtin())?.dataset;
    let key = format!("{KEY_PREFIX}/{source}_{gib}gib.csv");
    let work = dir.join(format!("rss_bench_{}", std::process::id()));
    let (deps, ingest, manifest, cleanup) = match adapter {
        "local" => local(&work, &toml, gib, &key)?,
        "moto" => moto(&toml, gib, &key).await?,
        other => return Err(format!("unknown adapter {other}: local or moto").into()),
    };
    deps.meta.publish_contract(source, &dataset, &toml).await?;
    let mut run = RunRecord::received(&ingest, &key.clone().into(), None);
    run.source = Some(source.into());
    run.stage = Stage::Queued;
    deps.meta.put_run(&run).await?;

    std::fs::write("/proc/self/clear_refs", "5")?; // the peak starts here: the handler's own
    let rss_start = status_kib("VmRSS")?;
    let started = Instant::now();
    let res =
        semi_structured_workflow::handle(&deps, FormatFamily::Delimited, event(&run, source, &dataset)?)
            .await;
    let wall = started.elapsed().as_secs_f64();
    let hwm = status_kib("VmHWM")?;

    let done = deps.meta.get_run(&run.file_id).await?.ok_or("no ledger entry")?;
    let e = &manifest.expected;
    let counts_ok = done.status == Status::Done
        && (done.counts.good, done.counts.bad, done.counts.malformed) == (e.good, e.bad, e.malformed);
    cleanup.run(&deps).await;
    if !res.batch_item_failures.is_empty() || !counts_ok {
        return Err(format!("the run did not match the manifest: {done:?} vs {e:?}").into());
    }
    let distinct = e.rows_read - e.duplicates - e.malformed;
    Ok(serde_json::json!({
        "adapter": adapter, "gib": gib, "input_bytes": manifest.bytes, "rows": e.rows_read,
        "good": e.good, "bad": e.bad, "malformed": e.malformed, "wall_s": wall,
        "rss_start_mib": rss_start as f64 / 1024.0, "hwm_mib": hwm as f64 / 1024.0,
        "dedupe_mib": dedupe_set_bytes(distinct) as f64 / (1u64 << 20) as f64,
    })
    .to_string())
}

/// What the transform's set of 128-bit record hashes occupies for `n` distinct records
/// (hashbrown: a power-of-two bucket count at most 7/8 full, 16 bytes and a control byte each).
fn dedupe_set_bytes(n: u64) -> u64 {
    let buckets = (n * 8).div_ceil(7).next_power_of_two().max(4);
    buckets * 17
}

fn status_kib(field: &str) -> Res<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with(field)).ok_or("no such field")?;
    Ok(line.split_whitespace().nth(1).ok_or("bad line")?.parse()?)
}

fn event(run: &RunRecord, source: &str, dataset: &str) -> Res<LambdaEvent<SqsEvent>> {
    let body = serde_json::json!({
        "file_id": run.file_id, "bucket": run.bucket, "key": run.key.expose(),
        "version_id": run.version_id, "source": source, "dataset": dataset, "contract_version": 1,
    });
    let ev = serde_json::json!({"Records": [{
        "messageId": "bench-1", "receiptHandle": "r", "body": body.to_string(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1764490503000",
                       "SenderId": "AROAROUTER:ingestion-router", "ApproximateFirstReceiveTimestamp": "1764490503010"},
        "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws-us-gov:sqs:us-gov-west-1:123456789012:work-delimited", "awsRegion": "us-gov-west-1",
    }]});
    Ok(LambdaEvent::new(serde_json::from_value(ev)?, Context::default()))
}

/// What to remove after a run.
enum Cleanup {
    Dir(PathBuf),
    Buckets(aws_sdk_s3::Client, Vec<String>),
}

impl Cleanup {
    /// Removes the folder, or every object version in the buckets (moto holds them in memory).
    async fn run(self, deps: &Deps) {
        match self {
            Cleanup::Dir(d) => {
                let _ = std::fs::remove_dir_all(d);
            }
            Cleanup::Buckets(s3, buckets) => {
                for b in buckets {
                    for v in deps.store.list_versions(&b, "").await.unwrap_or_default() {
                        let del = s3.delete_object().bucket(&b).key(v.key.expose());
                        let _ = del.set_version_id(v.version_id.clone()).send().await;
                    }
                }
            }
        }
    }
}

type Prepared = (Deps, String, synth::Manifest, Cleanup);

/// Local adapters under `work`; the input written to `work/ingest` (streamed to disk).
fn local(work: &Path, toml: &str, gib: f64, key: &str) -> Res<Prepared> {
    let input = work.join("ingest").join(key);
    std::fs::create_dir_all(input.parent().ok_or("no parent")?)?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input)?);
    let manifest = generate(toml, gib, &mut file)?;
    file.flush()?;
    let store =
        layer::local::LocalObjectStore::new(work.join("buckets")).with_bucket("ingest", work.join("ingest"));
    let deps = layer::local::local_deps(work, store);
    Ok((deps, "ingest".into(), manifest, Cleanup::Dir(work.to_path_buf())))
}

/// A fresh pipeline in moto; the input uploaded through the S3 adapter's own multipart sink.
async fn moto(toml: &str, gib: f64, key: &str) -> Res<Prepared> {
    let w = e2e::world().await;
    let mut sink = w.deps.store.create(&w.ingest_bucket, key, None).await?;
    let toml = toml.to_string();
    let (sink, manifest) = tokio::task::spawn_blocking(move || {
        let m = generate(&toml, gib, &mut sink);
        (sink, m)
    })
    .await?;
    let manifest = manifest?;
    sink.commit().await?;
    let buckets =
        vec![w.ingest_bucket.clone(), w.deps.cfg.raw_bucket.clone(), w.deps.cfg.quarantine_bucket.clone()];
    Ok((w.deps.clone(), w.ingest_bucket.clone(), manifest, Cleanup::Buckets(w.s3.clone(), buckets)))
}
