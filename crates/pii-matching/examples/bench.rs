//! Matching benchmark against `bench/baseline_match.py` in the same run: loads the
//! person CSV into PostgreSQL (DATABASE URL) and into memory, matches the bad records with both
//! adapters, scores precision / recall per tier and per error kind against the truth file, then
//! runs the Python baseline (its own PostgreSQL 15 with the same settings) and prints both.
//!
//! cargo run --release -p pii-matching --example bench -- --database-url postgres://...
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::Parser;
use pii_matching::pg::{copy_people_csv, Db, PgIndex};
use pii_matching::{Decision, Matcher, MemoryIndex, PersonIndex, Record, Rules, Tier};

/// The same allocator as the Lambda binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "/tmp/benchdata/people_1000000.csv")]
    people: PathBuf,
    #[arg(long, default_value = "/tmp/benchdata/bad_records_10000.csv")]
    bad: PathBuf,
    #[arg(long, default_value = "/tmp/benchdata/bad_records_10000.truth.csv")]
    truth: PathBuf,
    /// A PostgreSQL to load the people into (a fresh database is created on it).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    database_url: String,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Records per `match_batch` call (a Lambda batch = one file's bad rows).
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Keys per query (chunks of one batch run concurrently).
    #[arg(long, default_value_t = 4096)]
    chunk: usize,
    #[arg(long, default_value_t = 4)]
    connections: u32,
    /// Records per concurrent group of a batch (the matcher's default unless set).
    #[arg(long)]
    group: Option<usize>,
    #[arg(long, default_value = "config/matching.toml")]
    rules: PathBuf,
    /// Run bench/baseline_match.py in the same run (skip with --no-baseline).
    #[arg(long, default_value = "bench/baseline_match.py")]
    baseline: PathBuf,
    #[arg(long)]
    no_baseline: bool,
    #[arg(long, default_value = "/tmp/benchvenv/bin/python")]
    python: String,
    #[arg(long, default_value = "/tmp/benchdata/results/match_rust.json")]
    json: PathBuf,
    /// Use (and keep) this database: created and loaded only when it has no people yet.
    /// Without it, a fresh database is loaded and dropped at the end.
    #[arg(long)]
    db: Option<String>,
    /// Skip the in-memory adapter.
    #[arg(long)]
    no_memory: bool,
    /// Write every PostgreSQL decision here (reference, tier, rule, chosen person ids) to diff
    /// two rule files.
    #[arg(long)]
    decisions: Option<PathBuf>,
}

fn read_records(path: &PathBuf) -> Result<Vec<Record>> {
    let mut rd = csv::Reader::from_path(path)?;
    let h = rd.headers()?.clone();
    let c = |n: &str| h.iter().position(|x| x == n);
    let (id, fi, la, dob, sx, ad, ci, zi, ph) = (
        c("record_id").or(c("encounter_id")).context("no record_id")?,
        c("first_name"),
        c("last_name"),
        c("dob"),
        c("sex"),
        c("address"),
        c("city"),
        c("zip"),
        c("phone"),
    );
    let mut out = Vec::new();
    for r in rd.records() {
        let r = r?;
        let g = |i: Option<usize>| {
            i.and_then(|i| r.get(i)).map(str::trim).filter(|s| !s.is_empty()).map(String::from)
        };
        out.push(Record {
            reference: r.get(id).unwrap_or_default().to_string(),
            first_name: g(fi),
            last_name: g(la),
            dob: g(dob).and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()),
            sex: g(sx),
            address: g(ad),
            city: g(ci),
            zip: g(zi),
            phone: g(ph),
        });
    }
    Ok(out)
}

struct Truth {
    person: HashMap<String, Option<i64>>,
    variant: HashMap<String, String>,
}

fn read_truth(path: &PathBuf) -> Result<Truth> {
    let mut rd = csv::Reader::from_path(path)?;
    let mut t = Truth { person: HashMap::new(), variant: HashMap::new() };
    for r in rd.records() {
        let r = r?;
        let id = r.get(0).unwrap_or_default().to_string();
        t.person.insert(id.clone(), r.get(1).and_then(|v| v.parse().ok()));
        t.variant.insert(id, r.get(2).unwrap_or_default().to_string());
    }
    Ok(t)
}

/// The records as the Lambda gets them: batches of `batch` records (split before timing).
fn batches(recs: &[Record], batch: usize) -> Vec<Arc<[Record]>> {
    recs.chunks(batch.max(1)).map(Arc::from).collect()
}

async fn run_all(
    m: &Arc<Matcher>,
    idx: &dyn PersonIndex,
    batches: &[Arc<[Record]>],
) -> Result<Vec<Decision>> {
    let mut out = Vec::with_capacity(batches.iter().map(|b| b.len()).sum());
    for b in batches {
        out.extend(m.match_batch(idx, b.clone()).await?.0);
    }
    Ok(out)
}

fn score(ds: &[Decision], t: &Truth) -> serde_json::Value {
    let truth: HashSet<(String, i64)> =
        t.person.iter().filter_map(|(r, p)| p.map(|p| (r.clone(), p))).collect();
    let mut out = serde_json::Map::new();
    for (name, tiers) in [("exact", vec![Tier::Exact]), ("exact+proposed", vec![Tier::Exact, Tier::Proposed])]
    {
        let pred: HashSet<(String, i64)> = ds
            .iter()
            .filter(|d| tiers.contains(&d.tier))
            .flat_map(|d| d.chosen.iter().map(|c| (d.reference.clone(), c.person_id)))
            .collect();
        let tp = pred.intersection(&truth).count();
        out.insert(
            name.into(),
            serde_json::json!({"predicted_pairs": pred.len(), "tp": tp, "true_pairs": truth.len(),
                "precision": tp as f64 / pred.len().max(1) as f64, "recall": tp as f64 / truth.len().max(1) as f64}),
        );
    }
    let mut by: BTreeMap<String, BTreeMap<&str, usize>> = BTreeMap::new();
    for d in ds {
        let v = t.variant.get(&d.reference).cloned().unwrap_or_else(|| "?".into());
        let tp = t.person.get(&d.reference).copied().flatten();
        let e = by.entry(v).or_default();
        *e.entry("n").or_default() += 1;
        *e.entry(d.tier.as_str()).or_default() += 1;
        let hit = tp.is_some_and(|p| d.chosen.iter().any(|c| c.person_id == p));
        if hit && d.tier == Tier::Exact {
            *e.entry("exact_right").or_default() += 1;
        }
        if d.tier == Tier::Exact && !hit {
            *e.entry("exact_wrong").or_default() += 1;
        }
        if hit {
            *e.entry("truth_found").or_default() += 1;
        }
        if tp.is_none() && !d.chosen.is_empty() {
            *e.entry("false_candidates").or_default() += 1;
        }
    }
    out.insert("by_variant".into(), serde_json::to_value(by).unwrap());
    serde_json::Value::Object(out)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// CPU seconds (user + system) a process has used so far, from /proc (Linux; 0 elsewhere).
fn proc_cpu(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // the fields after the command name (which may hold spaces) start with the state
    let rest = stat.rsplit_once(") ").map_or("", |x| x.1);
    let f: Vec<f64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

/// CPU seconds of this process, and per backend serving `db` (when the database runs on this
/// machine: the benchmark's own server).
async fn cpu_now(db: &Db) -> (f64, HashMap<i32, f64>) {
    let pids: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'",
    )
    .fetch_all(&db.pool())
    .await
    .unwrap_or_default();
    (proc_cpu("self"), pids.into_iter().map(|p| (p, proc_cpu(&p.to_string()))).collect())
}

/// CPU milliseconds per run: this process, and the backends seen at both samples.
fn cpu_per_run(a: &(f64, HashMap<i32, f64>), b: &(f64, HashMap<i32, f64>), runs: usize) -> (f64, f64) {
    let pg: f64 = b.1.iter().filter_map(|(p, t)| a.1.get(p).map(|t0| t - t0)).sum();
    ((b.0 - a.0) * 1000.0 / runs as f64, pg.max(0.0) * 1000.0 / runs as f64)
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The benchmark's PostgreSQL: a fresh database (or `--db`), migrated and loaded by COPY.
struct PgSetup {
    admin: Db,
    dbname: String,
    db: Arc<Db>,
    people: u64,
    load_s: f64,
}

async fn setup_pg(a: &Args) -> Result<PgSetup> {
    let admin = Db::from_url(&a.database_url, 1)?;
    let dbname = a.db.clone().unwrap_or_else(|| format!("pii_bench_{}", std::process::id()));
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&dbname)
        .fetch_optional(&admin.pool())
        .await?;
    if exists.is_none() {
        sqlx::query(&format!("CREATE DATABASE {dbname}")).execute(&admin.pool()).await?;
    }
    let base = a.database_url.rsplit_once('/').map(|x| x.0).unwrap_or(&a.database_url);
    let db = Arc::new(Db::from_url(&format!("{base}/{dbname}"), a.connections)?);
    db.migrate().await?;
    let t = Instant::now();
    let have: i64 = sqlx::query_scalar("SELECT count(*) FROM person").fetch_one(&db.pool()).await?;
    let people = if have == 0 { copy_people_csv(&db, &a.people).await? } else { have as u64 };
    let load_s = t.elapsed().as_secs_f64();
    println!(
        "PostgreSQL: loaded {people} people (COPY, REINDEX on a fresh load, VACUUM ANALYZE) in {load_s:.1}s"
    );
    Ok(PgSetup { admin, dbname, db, people, load_s })
}

/// The timed PostgreSQL runs.
struct PgRuns {
    times: Vec<f64>,
    median: f64,
    decisions: Vec<Decision>,
    cpu_ms: (f64, f64),
}

async fn bench_pg(a: &Args, m: &Arc<Matcher>, db: &Db, pg: &PgIndex, recs: &[Record]) -> Result<PgRuns> {
    let all = batches(recs, a.batch);
    run_all(m, pg, &batches(&recs[..recs.len().min(2000)], a.batch)).await?; // warm-up, as the baseline
    let mut times = Vec::new();
    let mut decisions = Vec::new();
    let cpu0 = cpu_now(db).await;
    for r in 0..a.runs {
        let t = Instant::now();
        decisions = run_all(m, pg, &all).await?;
        let dt = t.elapsed().as_secs_f64();
        println!(
            "rust+postgres run={r} {} records in {dt:.3}s = {:.0} rec/s (load {})",
            recs.len(),
            recs.len() as f64 / dt,
            load_avg()
        );
        times.push(dt);
    }
    let cpu1 = cpu_now(db).await;
    let (rust_ms, pg_ms) = cpu_per_run(&cpu0, &cpu1, a.runs);
    println!(
        "cpu per run of {} records: matcher {rust_ms:.1} ms, postgres backends {pg_ms:.1} ms (0 when the server is elsewhere)",
        recs.len()
    );
    let median = median(&mut times);
    Ok(PgRuns { times, median, decisions, cpu_ms: (rust_ms, pg_ms) })
}

/// Where the time goes (one batch of everything): candidate query vs scoring.
async fn phases(m: &Matcher, pg: &PgIndex, recs: &[Record]) -> Result<()> {
    let keys: Vec<_> = recs.iter().flat_map(|r| m.keys(r)).collect::<HashSet<_>>().into_iter().collect();
    let t = Instant::now();
    let persons = pg.candidates(&keys, Some(m.rules.blocking.max_candidates)).await?.persons;
    let q = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let _ = m.decide_all(recs, &persons, &m.rules.blocking.passes[0]);
    println!(
        "phases: {} keys -> {} candidates: query {q:.3}s, scoring {:.3}s",
        keys.len(),
        persons.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The in-memory adapter on the same batches: its median and how many decisions equal `pg_dec`.
async fn bench_memory(
    a: &Args,
    m: &Arc<Matcher>,
    recs: &[Record],
    pg_dec: &[Decision],
) -> Result<(f64, usize)> {
    if a.no_memory {
        return Ok((f64::NAN, 0));
    }
    let all = batches(recs, a.batch);
    let t = Instant::now();
    let mem = MemoryIndex::load(&a.people)?;
    let mem_load = t.elapsed().as_secs_f64();
    let mut mtimes = Vec::new();
    let mut mem_dec = Vec::new();
    for _ in 0..a.runs {
        let t = Instant::now();
        mem_dec = run_all(m, &mem, &all).await?;
        mtimes.push(t.elapsed().as_secs_f64());
    }
    let mem_med = median(&mut mtimes);
    let same = pg_dec.iter().zip(&mem_dec).filter(|(x, y)| x == y).count();
    println!(
        "in-memory: loaded {} people in {mem_load:.1}s; {:.0} rec/s; decisions identical to PostgreSQL: {same}/{}",
        mem.len(),
        recs.len() as f64 / mem_med,
        recs.len()
    );
    Ok((mem_med, same))
}

fn write_decisions(path: &PathBuf, ds: &[Decision]) -> Result<()> {
    let mut w = csv::Writer::from_path(path)?;
    w.write_record(["reference", "tier", "rule", "best_score", "chosen"])?;
    for d in ds {
        let ids: Vec<String> = d.chosen.iter().map(|c| c.person_id.to_string()).collect();
        let best = d.best_score.map(|s| format!("{s:.1}")).unwrap_or_default();
        w.write_record([d.reference.as_str(), d.tier.as_str(), d.rule.as_str(), &best, &ids.join(" ")])?;
    }
    w.flush()?;
    Ok(())
}

/// The Python baseline in the same run (its JSON report; Null when skipped or failed).
fn run_baseline(a: &Args) -> Result<serde_json::Value> {
    if a.no_baseline {
        return Ok(serde_json::Value::Null);
    }
    let out = "/tmp/benchdata/results/match_baseline_same_run.json";
    println!("running the baseline ({}) ...", a.baseline.display());
    let st = std::process::Command::new(&a.python)
        .arg(&a.baseline)
        .args(["--people"])
        .arg(&a.people)
        .args(["--bad"])
        .arg(&a.bad)
        .args(["--truth"])
        .arg(&a.truth)
        .args(["--threads", "8", "--rules", "basic", "--runs"])
        .arg(a.runs.to_string())
        .args(["--json", out])
        .status()?;
    if !st.success() {
        return Ok(serde_json::Value::Null);
    }
    Ok(serde_json::from_str(&std::fs::read_to_string(out)?)?)
}

fn pr(v: &serde_json::Value, k: &str) -> String {
    format!(
        "{:.4} / {:.4}",
        v[k]["precision"].as_f64().unwrap_or(0.0),
        v[k]["recall"].as_f64().unwrap_or(0.0)
    )
}

/// The comparison table: records per second and precision / recall per engine.
fn print_table(n: usize, pg_med: f64, mem_med: f64, sc: &serde_json::Value, base: &serde_json::Value) {
    println!("{:<28} {:>10} {:>22} {:>26}", "engine", "rec/s", "exact P / R", "exact+proposed P / R");
    println!(
        "{:<28} {:>10.0} {:>22} {:>26}",
        "rust (postgres)",
        n as f64 / pg_med,
        pr(sc, "exact"),
        pr(sc, "exact+proposed")
    );
    println!("{:<28} {:>10.0} {:>22} {:>26}", "rust (in-memory)", n as f64 / mem_med, "(same decisions)", "");
    if let Some(b) = base.get("basic") {
        let rps = b["records_per_s"].as_f64().unwrap_or(0.0);
        println!(
            "{:<28} {:>10.0} {:>22} {:>26}",
            "baseline basic (8 threads)",
            rps,
            pr(b, "exact"),
            pr(b, "exact+proposed")
        );
        println!("speed-up vs baseline: {:.1}x", (n as f64 / pg_med) / rps.max(1.0));
    }
}

/// Decisions per error kind of the truth file, ours and the baseline's.
fn print_by_variant(sc: &serde_json::Value, base: &serde_json::Value) {
    println!("\nper error kind (rust): n / exact right / exact wrong / proposed / none / truth found / false candidates");
    if let Some(m) = sc["by_variant"].as_object() {
        for (v, c) in m {
            let g = |k: &str| c.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            println!(
                "  {v:<14} {:>5} {:>6} {:>4} {:>6} {:>6} {:>6} ({:.1}%) {:>5}",
                g("n"),
                g("exact_right"),
                g("exact_wrong"),
                g("proposed"),
                g("none"),
                g("truth_found"),
                100.0 * g("truth_found") as f64 / g("n").max(1) as f64,
                g("false_candidates")
            );
        }
    }
    if let Some(m) = base.get("basic").and_then(|b| b["by_variant"].as_object()) {
        println!("per error kind (baseline basic): n / exact / proposed / none / truth in candidates / false candidates");
        for (v, c) in m {
            let g = |k: &str| c.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            println!(
                "  {v:<14} {:>5} {:>6} {:>6} {:>6} {:>6} {:>5}",
                g("n"),
                g("exact"),
                g("proposed"),
                g("none"),
                g("truth_in_candidates"),
                g("false_candidates")
            );
        }
    }
}

fn count_by<'a>(ds: &'a [Decision], key: impl Fn(&'a Decision) -> String) -> BTreeMap<String, usize> {
    ds.iter().fold(BTreeMap::new(), |mut m, d| {
        *m.entry(key(d)).or_default() += 1;
        m
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let rules = Rules::from_file(&a.rules)?;
    let mut matcher = Matcher::new(rules);
    if let Some(g) = a.group {
        matcher.group = g;
    }
    let matcher = Arc::new(matcher);
    let recs = read_records(&a.bad)?;
    let truth = read_truth(&a.truth)?;
    println!("{} records, load average {}", recs.len(), load_avg());

    let s = setup_pg(&a).await?;
    let pg = PgIndex::new(s.db.clone(), a.chunk);
    let runs = bench_pg(&a, &matcher, &s.db, &pg, &recs).await?;
    phases(&matcher, &pg, &recs).await?;
    let (mem_med, same) = bench_memory(&a, &matcher, &recs, &runs.decisions).await?;
    if let Some(path) = &a.decisions {
        write_decisions(path, &runs.decisions)?;
    }
    let pg_dec = &runs.decisions;
    let sc = score(pg_dec, &truth);
    let classes = count_by(pg_dec, |d| d.tier.as_str().to_string());
    let rules_fired = count_by(pg_dec, |d| format!("{}:{}", d.tier.as_str(), d.rule));
    let (rust_ms, pg_ms) = runs.cpu_ms;
    let report = serde_json::json!({
        "records": recs.len(), "runs_s": runs.times, "median_s": runs.median, "records_per_s": recs.len() as f64 / runs.median,
        "memory_records_per_s": recs.len() as f64 / mem_med, "identical_decisions": same,
        "people_load_s": s.load_s, "cpu_ms_per_run": {"matcher": rust_ms, "postgres": pg_ms}, "classes": classes, "rules_fired": rules_fired, "score": sc,
    });
    let base_json = run_baseline(&a)?;
    if a.db.is_none() {
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", s.dbname)).execute(&s.admin.pool()).await.ok();
    }

    println!("\n=== {} bad records vs {} people (load average now {}) ===", recs.len(), s.people, load_avg());
    print_table(recs.len(), runs.median, mem_med, &sc, &base_json);
    print_by_variant(&sc, &base_json);
    println!("rules fired: {}", serde_json::to_string(&report["rules_fired"])?);
    if let Some(p) = a.json.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(
        &a.json,
        serde_json::to_string_pretty(&serde_json::json!({"rust": report, "baseline": base_json}))?,
    )?;
    Ok(())
}
