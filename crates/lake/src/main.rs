//! `lake`: the command line of the county data lake. Runs the pipeline embedded on a laptop
//! (no services, no credentials), checks and publishes source contracts, benchmarks the
//! transform, and operates the deployed lake.
//!
//! Boundaries: argument parsing, files and printing only; every rule lives in the library crates.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod athena;
mod bench;
mod check;
mod db;
mod matching;
mod query;
mod reaper;
mod review;
mod rules_train;
mod synth_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lake::embedded;
use layer::{AuditVerdict, Backend};

#[derive(Parser)]
#[command(name = "lake", version, about = "County health-data lake: contracts, embedded runs, operations")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Work with source contracts.
    #[command(subcommand)]
    Contract(ContractCmd),
    /// Run the pipeline embedded: DIR/<source>/... is the ingestion bucket; outputs under --lake.
    Run(RunArgs),
    /// Prove no file is lost: every object version in the ingestion bucket is DONE, FAILED with
    /// its envelope in the DLQ, or in flight for less than --max-in-flight seconds. Exits 1 when
    /// anything is at risk.
    Audit {
        /// The folder standing in for the ingestion bucket (embedded lake).
        dir: Option<PathBuf>,
        #[command(flatten)]
        lake: LakeArgs,
        #[arg(long, default_value_t = 900)]
        max_in_flight: i64,
        /// One JSON object per object version instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Sources silent for longer than their contract's `expect_every`. Exits 1 when any is
    /// overdue. With --notify, alerts as the scheduled guard does (once on silence, once on
    /// resumption; the state is kept in the metadata store).
    Freshness {
        #[command(flatten)]
        lake: LakeArgs,
        /// Check as of this time (RFC 3339) instead of now.
        #[arg(long)]
        at: Option<String>,
        #[arg(long)]
        notify: bool,
        /// One JSON object per source instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The run ledger as a table.
    Status {
        #[command(flatten)]
        lake: LakeArgs,
        /// Show object keys (they may carry PHI).
        #[arg(long)]
        show_keys: bool,
    },
    /// Replay DLQ failure envelopes to the stage that failed (after fixing the cause).
    Redrive {
        #[command(flatten)]
        lake: LakeArgs,
        #[arg(long)]
        file_id: Option<String>,
        #[arg(long)]
        source: Option<String>,
        /// Only envelopes of this error kind (e.g. UnknownSource, HeaderMismatch).
        #[arg(long)]
        error_kind: Option<layer::ErrorKind>,
        /// Drive the pipeline after replaying (embedded lake).
        #[arg(long, default_value_t = true)]
        run: bool,
        /// List what would be redriven (count per cause and file ids, per DLQ) and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Benchmark the transform against the Python baselines (pandas, polars) in the same run.
    Bench(bench::BenchArgs),
    /// Proposed person matches: list (masked), show with evidence, accept (completes the row), reject.
    Review(review::ReviewArgs),
    /// The matching database: `lake db migrate` applies the schema and roles (as a deploy does).
    Db(db::DbCmdArgs),
    /// The person index: `lake people load FILE` upserts the county's export (normalised).
    People(db::PeopleArgs),
    /// Try the matching rules: records against a person file (or database), decisions to CSV,
    /// precision and recall per tier with --truth.
    Match(matching::MatchArgs),
    /// The matching rules: `lake rules check FILE`, `lake rules publish FILE` (the version used at
    /// run time), `lake rules train` (weights learnt from the data).
    #[command(subcommand)]
    Rules(matching::RulesCmd),
    /// The WorkSpaces reaper in dry run: `lake reaper plan [--fleet FILE]` prints what it would do.
    #[command(subcommand)]
    Reaper(reaper::ReaperCmd),
    /// SQL over the lake's tables (the catalog's names): `lake query "SELECT ..." [--lake DIR]`,
    /// printed as a table, CSV, JSON lines or written as Parquet (see docs/ANALYTICS.md).
    Query(query::QueryArgs),
    /// A synthetic file in a contract's own format with a manifest of its expected counts.
    Synth(synth_cmd::SynthArgs),
}

#[derive(clap::Args)]
struct LakeArgs {
    /// Folder of the embedded lake (buckets, queues, ledger).
    #[arg(long, default_value = "./lake-data")]
    lake: PathBuf,
    /// `local` (folders, the default) or `aws`: S3/DynamoDB/SQS/SNS named by the LAKE_*
    /// environment variables (LAKE_INGEST_BUCKET, LAKE_INGEST_QUEUE_URL, LAKE_RAW_BUCKET, ...),
    /// honouring AWS_ENDPOINT_URL.
    #[arg(long, default_value = "local")]
    backend: Backend,
}

impl LakeArgs {
    async fn deps(
        &self,
        ingest_dir: Option<&std::path::Path>,
    ) -> anyhow::Result<(layer::pipeline::Deps, embedded::Topology)> {
        if self.backend == Backend::Aws {
            embedded::aws_deps().await
        } else {
            Ok(embedded::local_deps(&self.lake, ingest_dir))
        }
    }
}

#[derive(clap::Args)]
struct RunArgs {
    /// Folder standing in for the ingestion bucket: DIR/<source>/<file>.
    dir: PathBuf,
    #[command(flatten)]
    lake: LakeArgs,
    /// Source contracts published before the run (a changed file becomes a new version).
    #[arg(long, default_value = "config/sources")]
    contracts: PathBuf,
    /// Show object keys in the table (they may carry PHI).
    #[arg(long)]
    show_keys: bool,
    /// Person index to match the bad rows against after the workflow: CSV with the header
    /// person_id,first_name,last_name,middle_initial,dob,sex,ssn,address,city,state,zip,phone
    /// (dob as YYYY-MM-DD), or Parquet with those columns. The pii queue is drained through the
    /// pii-matching handler with the persons in memory: exact matches are completed into raw/
    /// (`*.matched.parquet`), proposals go to the review store under --lake (see `lake review`),
    /// the rest stay in quarantine as `unmatched`. Without it matching is skipped and the pii
    /// queue is left pending (stage matching-pending). Local backend only.
    #[arg(long, value_name = "FILE")]
    people: Option<PathBuf>,
    /// Export column names per index column for --people (as `lake people load --mapping`;
    /// default: the index's own names).
    #[arg(long, value_name = "FILE", requires = "people")]
    people_mapping: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ContractCmd {
    /// Run the transform of one file with a contract and write the canonical outputs.
    ///
    /// Writes DIR/<stem>.parquet (good rows), DIR/<stem>.bad.parquet (rows missing a required
    /// field, with `missing_fields`) and DIR/<stem>.malformed.jsonl (line and reason of each
    /// malformed record; the raw text only with --keep-raw).
    Check(check::CheckArgs),
    /// Validate contracts without data; prints warnings, exits non-zero on the first invalid one.
    Validate {
        /// Contract files (TOML).
        #[arg(required = true)]
        contracts: Vec<PathBuf>,
        /// Directory of canonical schemas (default: `canonical/` next to the contract's folder,
        /// else the built-in schemas).
        #[arg(long)]
        canonical: Option<PathBuf>,
    },
    /// Validate a contract and publish it as the source's new version (embedded lake, or the
    /// datasets table with --backend aws): the Lambdas pick it up with no redeploy.
    Publish {
        contract: PathBuf,
        #[command(flatten)]
        lake: LakeArgs,
    },
}

fn rt(f: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(f)
}

async fn run_embedded(a: RunArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let dir = a.dir.canonicalize().with_context(|| format!("cannot open {}", a.dir.display()))?;
    if a.lake.backend == Backend::Local {
        std::fs::create_dir_all(&a.lake.lake)?;
    }
    let (deps, topo) = a.lake.deps(Some(&dir)).await?;
    // the person file is checked before anything runs: a wrong file changes nothing
    let matching = match &a.people {
        Some(_) if a.lake.backend == Backend::Aws => anyhow::bail!(
            "--people matches in the embedded lake only; with --backend aws the deployed pii-matching \
             function matches the pii queue against PostgreSQL"
        ),
        Some(p) => {
            let mapping = match &a.people_mapping {
                Some(m) => pii_matching::people::PeopleMapping::from_file(m)?,
                None => pii_matching::people::PeopleMapping::identity(),
            };
            let (m, n) = embedded::local_matching_mapped(&deps, &a.lake.lake, p, &mapping)?;
            eprintln!("loaded {n} person(s) from {}", p.display());
            Some(m)
        }
        None => None,
    };
    if a.lake.backend == Backend::Aws {
        let n = embedded::upload_dir(&deps, &topo, &dir).await?;
        eprintln!("uploaded {n} file(s) to the ingestion bucket");
    }
    for (src, v, new) in embedded::publish_dir(&deps, &a.contracts).await? {
        if new {
            eprintln!("published {src} contract v{v}");
        }
    }
    let n = embedded::notify_all(&deps, &topo).await?;
    eprintln!("{n} file(s) found under {}", a.dir.display());
    embedded::drain(&deps, &topo).await?;
    if let Some(m) = &matching {
        embedded::drain_matching(m).await?;
    }
    let runs = embedded::status(&deps).await?;
    let counts = embedded::match_counts(&deps, &runs).await?;
    print!("{}", embedded::table_with(&runs, Some(&counts), a.show_keys));
    let failed = runs.iter().filter(|r| r.status == layer::ledger::Status::Failed).count();
    println!(
        "\nlake: {}  (raw/ quarantine/ under buckets/, DLQ under queues/dlq, alerts under topics/)",
        a.lake.lake.display()
    );
    let pending: Vec<_> = runs.iter().filter(|r| r.stage == layer::Stage::MatchingPending).collect();
    if matching.is_some() {
        let mut t = embedded::MatchCounts::default();
        counts.values().for_each(|c| t += *c);
        println!(
            "matching: {} row(s) matched and completed into raw/ (*.matched.parquet), {} proposed for \
             review (`lake review list --lake {}`), {} unmatched and {} matched but incomplete left in \
             quarantine (reasons in quarantine/matching/)",
            t.matched,
            t.proposed,
            a.lake.lake.display(),
            t.unmatched,
            t.incomplete
        );
    } else {
        println!(
            "matching skipped (no --people FILE): the bad rows of {} file(s) ({} row(s)) are left pending \
             on the pii queue (stage matching-pending); run again with --people FILE to match them",
            pending.len(),
            pending.iter().map(|r| r.counts.bad).sum::<u64>()
        );
    }
    if failed > 0 {
        println!(
            "{failed} file(s) FAILED: see the DLQ envelopes; fix, then `lake redrive --lake {}`",
            a.lake.lake.display()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

async fn audit(
    dir: Option<PathBuf>,
    lake: LakeArgs,
    max_in_flight: i64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let dir = dir.map(|d| d.canonicalize()).transpose()?;
    let (deps, topo) = lake.deps(dir.as_deref()).await?;
    let rows = embedded::audit(&deps, &topo, max_in_flight).await?;
    for r in &rows {
        if json {
            println!("{}", serde_json::to_string(r)?);
        } else {
            println!("{:<16}  {:<11}  {}", r.file_id, r.verdict, r.why);
        }
    }
    let count = |v: AuditVerdict| rows.iter().filter(|r| r.verdict == v).count();
    let at_risk = count(AuditVerdict::AtRisk);
    eprintln!(
        "audit: {} object version(s): {} done, {} failed with envelope, {} in flight, {} AT RISK",
        rows.len(),
        count(AuditVerdict::Done),
        count(AuditVerdict::FailedEnveloped),
        count(AuditVerdict::InFlight),
        at_risk
    );
    Ok(if at_risk == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn freshness(lake: LakeArgs, at: Option<String>, notify: bool, json: bool) -> anyhow::Result<ExitCode> {
    let now = match at {
        Some(t) => chrono::DateTime::parse_from_rfc3339(&t)
            .map_err(|e| anyhow::anyhow!("--at {t}: not an RFC 3339 time ({e})"))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let (deps, _) = lake.deps(None).await?;
    let rows = layer::guard::freshness(&deps, now, notify).await?;
    for r in &rows {
        if json {
            println!("{}", serde_json::to_string(r)?);
        } else {
            println!(
                "{:<16}  every {:<5}  last {:<30}  due by {:<20}  {}{}",
                r.source,
                r.expect_every,
                r.last_received.as_deref().unwrap_or("never"),
                r.due_by,
                if r.overdue { "OVERDUE" } else { "ok" },
                r.change.map(|c| format!("  (alert: {c:?})")).unwrap_or_default()
            );
        }
    }
    let overdue = rows.iter().filter(|r| r.overdue).count();
    eprintln!("freshness: {} source(s) with a cadence, {overdue} overdue", rows.len());
    Ok(if overdue == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn redrive(
    lake: LakeArgs,
    f: embedded::RedriveFilter,
    run: bool,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let (deps, topo) = lake.deps(None).await?;
    let stages = embedded::stage_dlqs(lake.backend, &deps, &topo)?;
    if dry_run {
        for p in layer::ops::redrive_plan(&deps, &stages, &f).await? {
            let causes: Vec<String> = p.by_cause.iter().map(|(c, n)| format!("{c}={n}")).collect();
            println!(
                "{}: {}",
                p.dlq,
                if causes.is_empty() { "nothing to redrive".into() } else { causes.join(" ") }
            );
            for id in &p.file_ids {
                println!("  {id}");
            }
        }
        println!("dry run: nothing changed");
        return Ok(ExitCode::SUCCESS);
    }
    let mut raw_moved = 0;
    for (dlq, n) in layer::ops::redrive_raw(&deps, &stages, &f).await? {
        raw_moved += n;
        if n > 0 {
            println!("{n} raw message(s) moved from {dlq} back to its stage queue");
        }
    }
    let report = embedded::redrive(&deps, &topo, &f).await?;
    for (e, why) in &report.not_replayed {
        eprintln!("not redriven: {} ({}): {why}; its envelope stays in the DLQ", e.file_id, e.error_kind);
    }
    let done = report.replayed;
    for e in &done {
        println!(
            "redriven {} ({}, {}) -> {}",
            e.file_id,
            e.source.as_deref().unwrap_or("-"),
            e.error_kind,
            e.function
        );
    }
    println!("{} envelope(s) replayed", done.len());
    if run && (!done.is_empty() || raw_moved > 0) {
        embedded::drain(&deps, &topo).await?;
        let runs = embedded::status(&deps).await?;
        let ids: Vec<&str> = done.iter().map(|e| e.file_id.as_str()).collect();
        let mine: Vec<_> = runs.into_iter().filter(|r| ids.contains(&r.file_id.as_str())).collect();
        print!("{}", embedded::table(&mine, false));
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    layer::telemetry::init_cli();
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Contract(ContractCmd::Check(a)) => check::run_check(a),
        Cmd::Contract(ContractCmd::Validate { contracts, canonical }) => {
            check::run_validate(&contracts, canonical)
        }
        Cmd::Bench(a) => bench::run(a),
        Cmd::Review(a) => review::run(a),
        Cmd::Db(a) => db::run(a),
        Cmd::People(a) => db::run_people(a),
        Cmd::Match(a) => matching::run(a),
        Cmd::Rules(c) => matching::run_rules(c),
        Cmd::Reaper(c) => reaper::run(c),
        Cmd::Query(a) => query::run(a),
        Cmd::Synth(a) => synth_cmd::run(a),
        Cmd::Contract(ContractCmd::Publish { contract, lake }) => rt(async move {
            let (deps, _) = lake.deps(None).await?;
            let (src, v, new) = embedded::publish(&deps, &contract).await?;
            println!("{} {src} contract v{v}", if new { "published" } else { "unchanged:" });
            Ok(ExitCode::SUCCESS)
        }),
        Cmd::Run(a) => rt(run_embedded(a)),
        Cmd::Audit { dir, lake, max_in_flight, json } => rt(audit(dir, lake, max_in_flight, json)),
        Cmd::Freshness { lake, at, notify, json } => rt(freshness(lake, at, notify, json)),
        Cmd::Status { lake, show_keys } => rt(async move {
            let (deps, _) = lake.deps(None).await?;
            let runs = embedded::status(&deps).await?;
            let counts = embedded::match_counts(&deps, &runs).await?;
            print!("{}", embedded::table_with(&runs, Some(&counts), show_keys));
            Ok(ExitCode::SUCCESS)
        }),
        Cmd::Redrive { lake, file_id, source, error_kind, run, dry_run } => {
            rt(redrive(lake, embedded::RedriveFilter { file_id, source, error_kind }, run, dry_run))
        }
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
