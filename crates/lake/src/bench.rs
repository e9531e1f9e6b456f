//! `lake bench`: the transform against the pandas and polars baselines of `bench/` (the project's own pandas and polars re-creations of the original pipeline),
//! interleaved in one run (so all see the same machine), each engine a separate process.
//! Reports wall-clock rows/s, MB/s, peak RSS and the ratios the targets are stated in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Folder of generated data (`gen_data.py --out`).
    #[arg(long, default_value = "/tmp/benchdata")]
    data: PathBuf,
    /// File sizes (data lines) to run.
    #[arg(long, num_args = 1.., default_values_t = [1_000_000u64])]
    sizes: Vec<u64>,
    /// Rounds per size (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Engines: lake, pandas, polars.
    #[arg(long, num_args = 1.., default_values = ["lake", "pandas", "polars"])]
    engines: Vec<String>,
    /// Dialects to run.
    #[arg(long, num_args = 1.., default_values = ["st_marys", "county_general", "valley_clinic"])]
    dialects: Vec<String>,
    /// The baselines' folder.
    #[arg(long, default_value = "bench")]
    bench_dir: PathBuf,
    /// Python with pandas, pyarrow and polars installed.
    #[arg(long, default_value = "/tmp/benchvenv/bin/python")]
    python: PathBuf,
    /// Folder of source contracts.
    #[arg(long, default_value = "config/sources")]
    contracts: PathBuf,
    /// Where outputs go.
    #[arg(long, default_value = "/tmp/benchdata/out")]
    out: PathBuf,
    /// Write all measurements here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn ext(d: &str) -> &'static str {
    match d {
        "county_general" => "psv",
        "valley_clinic" => "jsonl",
        _ => "csv",
    }
}

struct Meas {
    wall: f64,
    rss_kib: f64,
    good: u64,
    bad: u64,
}

fn run_one(a: &BenchArgs, engine: &str, dialect: &str, input: &Path) -> Result<Meas> {
    let outdir = a.out.join(engine);
    let mut cmd = if engine == "lake" {
        let mut c = Command::new(std::env::current_exe()?);
        c.args(["contract", "check", "--json", "--out"]).arg(&outdir);
        c.arg(a.contracts.join(format!("{dialect}.toml"))).arg(input);
        c
    } else {
        let mut c = Command::new(&a.python);
        c.arg(a.bench_dir.join(format!("baseline_{engine}.py")));
        c.args(["--dialect", dialect, "--input"]).arg(input).arg("--outdir").arg(&outdir);
        c
    };
    let t = Instant::now();
    let out = cmd.output().with_context(|| format!("cannot start {engine}"))?;
    let wall = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{engine} failed on {}: {}", input.display(), String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).context("no JSON summary")?;
    let v: Value = serde_json::from_str(line)?;
    let rss = v.get("peak_rss_kib").or_else(|| v.get("maxrss_kb")).and_then(Value::as_f64).unwrap_or(0.0);
    Ok(Meas {
        wall,
        rss_kib: rss,
        good: v["good"].as_u64().unwrap_or(0),
        bad: v["bad"].as_u64().unwrap_or(0),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

pub fn run(a: BenchArgs) -> Result<ExitCode> {
    let mut all: BTreeMap<(u64, String, String), Vec<Meas>> = BTreeMap::new();
    let mut ok = true;
    let mut json = Vec::new();
    for &n in &a.sizes {
        for r in 0..a.runs {
            for d in &a.dialects {
                let input = a.data.join(format!("{d}_{n}.{}", ext(d)));
                let man: Value = serde_json::from_str(
                    &std::fs::read_to_string(a.data.join(format!("{d}_{n}.manifest.json")))
                        .with_context(|| format!("no manifest for {} (run gen_data.py)", input.display()))?,
                )?;
                let mut engines = a.engines.clone();
                if r % 2 == 1 {
                    engines.reverse();
                }
                for e in &engines {
                    let m = run_one(&a, e, d, &input)?;
                    let counts_ok = Some(m.good) == man["expected_good"].as_u64()
                        && Some(m.bad) == man["expected_bad"].as_u64();
                    ok &= counts_ok;
                    eprintln!(
                        "n={n} round={r} {d:15} {e:7} wall={:.2}s rss={:.0}MiB counts_ok={counts_ok}",
                        m.wall,
                        m.rss_kib / 1024.0
                    );
                    json.push(serde_json::json!({"size": n, "round": r, "dialect": d, "engine": e,
                        "wall_s": m.wall, "peak_rss_kib": m.rss_kib, "good": m.good, "bad": m.bad, "counts_ok": counts_ok}));
                    all.entry((n, d.clone(), e.clone())).or_default().push(m);
                }
            }
        }
    }
    println!(
        "\nmachine: {} cores; wall = whole process; medians of {} rounds\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        a.runs
    );
    println!("| rows | dialect | engine | MB | wall s | rows/s | MB/s | peak RSS MiB | vs pandas rows/s | vs polars rows/s | RSS / pandas |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let med = |k: &(u64, String, String)| {
        all.get(k).map(|v| {
            (median(v.iter().map(|m| m.wall).collect()), median(v.iter().map(|m| m.rss_kib).collect()))
        })
    };
    for &n in &a.sizes {
        for d in &a.dialects {
            let mb = std::fs::metadata(a.data.join(format!("{d}_{n}.{}", ext(d))))
                .map(|m| m.len() as f64 / 1e6)
                .unwrap_or(0.0);
            let pandas = med(&(n, d.clone(), "pandas".into()));
            let polars = med(&(n, d.clone(), "polars".into()));
            for e in &a.engines {
                let Some((wall, rss)) = med(&(n, d.clone(), e.clone())) else { continue };
                let vs =
                    |b: Option<(f64, f64)>| b.map_or("-".to_string(), |(w, _)| format!("{:.1}x", w / wall));
                let rss_vs = pandas.map_or("-".to_string(), |(_, r)| format!("{:.0}%", rss * 100.0 / r));
                println!(
                    "| {n} | {d} | {e} | {mb:.1} | {wall:.2} | {:.0} | {:.1} | {:.0} | {} | {} | {} |",
                    n as f64 / wall,
                    mb / wall,
                    rss / 1024.0,
                    vs(pandas),
                    vs(polars),
                    rss_vs
                );
            }
        }
    }
    if a.sizes.len() > 1 {
        println!("\nlake peak RSS growth with file size:");
        for d in &a.dialects {
            let rss: Vec<(u64, f64)> = a
                .sizes
                .iter()
                .filter_map(|&n| med(&(n, d.clone(), "lake".into())).map(|(_, r)| (n, r)))
                .collect();
            if let (Some(first), Some(last)) = (rss.first(), rss.last()) {
                println!(
                    "  {d}: {} rows {:.0} MiB -> {} rows {:.0} MiB ({:.2}x)",
                    first.0,
                    first.1 / 1024.0,
                    last.0,
                    last.1 / 1024.0,
                    last.1 / first.1
                );
            }
        }
    }
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&json)?)?;
    }
    if !ok {
        eprintln!("some engine's counts differ from the generator's manifest");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
