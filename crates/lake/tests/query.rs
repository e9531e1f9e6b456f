//! `lake query` on the embedded lake: after `lake run samples/ --people ...`, the example queries of
//! docs/ANALYTICS.md (their SQL read from the document) answer with the counts the run's own table
//! printed, for every sample source; the outputs shown in the document are those `lake query`
//! prints (`LAKE_UPDATE_DOCS=1 cargo test -p lake --test query docs_` rewrites them); unknown
//! tables, unknown columns and syntax errors fail with a message naming them; every output format
//! is readable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lake() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lake"));
    c.current_dir(repo()).env("RUST_LOG", "off");
    c
}

/// Per source: the run table's good, bad and matched columns (summed over the source's files).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    good: u64,
    bad: u64,
    matched: u64,
}

struct Run {
    _dir: tempfile::TempDir,
    lake: PathBuf,
    by_source: BTreeMap<String, Counts>,
}

/// One embedded run over the samples for every test of this file.
fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake_dir = dir.path().join("lake");
        let out = lake()
            .args(["run", "samples/", "--people", "config/people.example.csv", "--lake"])
            .arg(&lake_dir)
            .output()
            .expect("lake run");
        assert!(out.status.success(), "lake run failed: {}", String::from_utf8_lossy(&out.stderr));
        let by_source = parse_run_table(&String::from_utf8_lossy(&out.stdout));
        let names: Vec<&String> = by_source.keys().collect();
        assert_eq!(
            names,
            sample_sources().iter().collect::<Vec<_>>(),
            "the run table names every sample source"
        );
        Run { _dir: dir, lake: lake_dir, by_source }
    })
}

/// The sources of samples/ (a folder per source, each with at least one file).
fn sample_sources() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo().join("samples"))
        .expect("samples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_some()))
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    v.sort();
    assert!(v.len() >= 10, "samples/ has a folder per source: {v:?}");
    v
}

fn parse_run_table(stdout: &str) -> BTreeMap<String, Counts> {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with("file_id"));
    let header: Vec<&str> = lines.next().expect("run table header").split_whitespace().collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let (src, good, bad, matched) = (col("source"), col("good"), col("bad"), col("matched"));
    let mut m: BTreeMap<String, Counts> = BTreeMap::new();
    for l in lines.take_while(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = l.split_whitespace().collect();
        // "-": a file without bad rows never reaches matching
        let n = |i: usize| match f[i] {
            "-" => 0,
            v => v.parse::<u64>().unwrap_or_else(|_| panic!("count in {l:?}")),
        };
        let c = m.entry(f[src].to_string()).or_default();
        c.good += n(good);
        c.bad += n(bad);
        c.matched += n(matched);
    }
    m
}

fn query(sql: &str, extra: &[&str]) -> Output {
    lake().arg("query").arg(sql).arg("--lake").arg(&run().lake).args(extra).output().expect("lake query")
}

/// The JSON-lines result of `sql`.
fn rows(sql: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let out = query(sql, &["--format", "json"]);
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| match serde_json::from_str(l).expect("a JSON object per line") {
            serde_json::Value::Object(o) => o,
            other => panic!("not an object: {other}"),
        })
        .collect()
}

/// `source -> column` from a result with those two columns.
fn per_source(sql: &str, column: &str) -> BTreeMap<String, u64> {
    rows(sql)
        .into_iter()
        .map(|r| {
            let s = r["source"].as_str().expect("source").to_string();
            (s, r[column].as_u64().unwrap_or_else(|| panic!("{column} in {r:?}")))
        })
        .collect()
}

/// The example queries of docs/ANALYTICS.md, each a paragraph starting with its title, then a
/// ```sql block, then a ``` block with what `lake query` prints for it on the samples.
const EXAMPLES: [&str; 4] = [
    "Rows per source and day",
    "Bad-row rate per source",
    "Rows completed by matching",
    "Encounters per facility and month",
];

fn analytics_md() -> PathBuf {
    repo().join("docs/ANALYTICS.md")
}

struct Example {
    sql: String,
    output: String,
    /// Lines of the document holding the output (between its fences).
    output_lines: std::ops::Range<usize>,
}

fn examples(doc: &str) -> Vec<Example> {
    let lines: Vec<&str> = doc.lines().collect();
    let block_after = |from: usize, fence: &str| {
        let open = (from..lines.len()).find(|&i| lines[i] == fence).expect(fence);
        let close = (open + 1..lines.len()).find(|&i| lines[i] == "```").expect("closing fence");
        open + 1..close
    };
    EXAMPLES
        .iter()
        .map(|title| {
            let at = lines.iter().position(|l| l.starts_with(title)).unwrap_or_else(|| panic!("{title}"));
            let sql = block_after(at, "```sql");
            let output_lines = block_after(sql.end + 1, "```");
            Example {
                sql: lines[sql].join("\n"),
                output: lines[output_lines.clone()].join("\n"),
                output_lines,
            }
        })
        .collect()
}

fn example_sql(title: &str) -> String {
    let i = EXAMPLES.iter().position(|t| *t == title).expect("an example title");
    let doc = std::fs::read_to_string(analytics_md()).expect("docs/ANALYTICS.md");
    examples(&doc).swap_remove(i).sql
}

/// Dates masked: `ingest_date` is the day of the run.
fn undated(s: &str) -> String {
    let mut b = s.as_bytes().to_vec();
    let shape = |w: &[u8]| {
        w.iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() })
    };
    let mut i = 0;
    while i + 10 <= b.len() {
        if shape(&b[i..i + 10]) {
            b[i..i + 10].copy_from_slice(b"YYYY-MM-DD");
            i += 10;
        } else {
            i += 1;
        }
    }
    String::from_utf8(b).expect("utf-8")
}

#[test]
fn docs_example_outputs_are_what_lake_query_prints() {
    let path = analytics_md();
    let doc = std::fs::read_to_string(&path).expect("docs/ANALYTICS.md");
    let mut lines: Vec<String> = doc.lines().map(str::to_string).collect();
    let mut stale = Vec::new();
    for (title, ex) in EXAMPLES.iter().zip(examples(&doc)).rev() {
        let out = query(&ex.sql, &[]);
        assert!(out.status.success(), "{title}: {}", String::from_utf8_lossy(&out.stderr));
        let printed = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
        if undated(&printed) != undated(&ex.output) {
            stale.push(format!("{title}:\n{printed}"));
            let _old: Vec<String> =
                lines.splice(ex.output_lines, printed.lines().map(str::to_string)).collect();
        }
    }
    if std::env::var("LAKE_UPDATE_DOCS").is_ok_and(|v| v == "1") {
        if !stale.is_empty() {
            std::fs::write(&path, lines.join("\n") + "\n").expect("write docs/ANALYTICS.md");
        }
        return;
    }
    assert!(
        stale.is_empty(),
        "docs/ANALYTICS.md shows stale outputs; regenerate them with \
         `LAKE_UPDATE_DOCS=1 cargo test -p lake --test query docs_`. Now:\n{}",
        stale.join("\n")
    );
}

#[test]
fn rows_per_source_and_day_are_the_runs_good_rows() {
    let r = run();
    let got = rows(&example_sql("Rows per source and day"));
    let mut sums: BTreeMap<String, u64> = BTreeMap::new();
    for row in &got {
        let day = row["ingest_date"].as_str().expect("ingest_date");
        assert_eq!(undated(day), "YYYY-MM-DD", "ingest_date is a day: {day}");
        *sums.entry(row["source"].as_str().expect("source").into()).or_default() +=
            row["row_count"].as_u64().expect("row_count");
    }
    let want: BTreeMap<String, u64> = r.by_source.iter().map(|(s, c)| (s.clone(), c.good)).collect();
    assert_eq!(sums, want, "every source's good rows");
}

#[test]
fn rows_completed_by_matching_are_the_runs_matched_rows() {
    let r = run();
    let got = per_source(&example_sql("Rows completed by matching"), "completed");
    let want: BTreeMap<String, u64> =
        r.by_source.iter().filter(|(_, c)| c.matched > 0).map(|(s, c)| (s.clone(), c.matched)).collect();
    assert!(!want.is_empty(), "the samples have matched rows");
    assert_eq!(got, want, "every source with completed rows, and only those");
}

#[test]
fn bad_row_rate_per_source_counts_the_quarantine() {
    // the run's `bad` column is what stays bad after matching; the quarantine keeps every bad
    // row of the transform, the completed ones included
    let r = run();
    let mut got: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for row in rows(&example_sql("Bad-row rate per source")) {
        let s = row["source"].as_str().expect("source");
        let (good, bad) = (row["good"].as_u64().expect("good"), row["bad"].as_u64().expect("bad"));
        let rate = row["bad_rate"].as_f64().expect("bad_rate");
        assert!((rate - bad as f64 / (good + bad) as f64).abs() < 1e-4, "{s}: {rate}");
        got.insert(s.to_string(), (good, bad));
    }
    let want: BTreeMap<String, (u64, u64)> =
        r.by_source.iter().map(|(s, c)| (s.clone(), (c.good - c.matched, c.bad + c.matched))).collect();
    assert_eq!(got, want, "every source: the transform's (good, bad) rows");
}

#[test]
fn encounters_per_facility_and_month_add_up_to_the_table() {
    // the document's query shows the busiest months; without its LIMIT it covers every row
    let sql = example_sql("Encounters per facility and month");
    let (all, limit) = sql.rsplit_once("LIMIT").expect("the example has a LIMIT");
    let got = rows(all);
    let total: u64 = got.iter().map(|r| r["encounters"].as_u64().expect("encounters")).sum();
    let want: u64 = run().by_source.values().map(|c| c.good).sum();
    assert_eq!(total, want);
    assert!(got.iter().all(|r| (1..=12).contains(&r["encounter_month"].as_u64().unwrap_or(0))));
    let shown: usize = limit.trim().parse().expect("LIMIT n");
    assert!(got.len() > shown, "more facility-months than the document shows: {}", got.len());
}

fn fails_naming(sql: &str, name: &str) {
    let out = query(sql, &[]);
    assert_eq!(out.status.code(), Some(2), "{sql} must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(name), "{sql}: the error names {name}: {err}");
    assert!(out.stdout.is_empty(), "no result printed");
}

#[test]
fn unknown_table_column_and_syntax_errors_name_the_culprit() {
    fails_naming("SELECT * FROM encounters", "encounters");
    fails_naming("SELECT * FROM encounters", "encounter_quarantine");
    fails_naming("SELECT no_such_column FROM encounter", "no_such_column");
    fails_naming("SELEC source FROM encounter", "SELEC");
}

#[test]
fn csv_and_parquet_outputs_hold_the_same_result() {
    let sql = "SELECT source, COUNT(*) AS n FROM encounter GROUP BY source ORDER BY source";
    let csv = query(sql, &["--format", "csv"]);
    assert!(csv.status.success());
    let text = String::from_utf8_lossy(&csv.stdout);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("source,n"));
    let from_csv: BTreeMap<String, u64> = lines
        .map(|l| {
            let (s, n) = l.split_once(',').expect("two fields");
            (s.to_string(), n.parse().expect("count"))
        })
        .collect();
    let want: BTreeMap<String, u64> = run().by_source.iter().map(|(s, c)| (s.clone(), c.good)).collect();
    assert_eq!(from_csv, want);

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("out.parquet");
    let out = query(sql, &["--format", "parquet", "--out", file.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rd = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&file).expect("written"),
    )
    .expect("parquet")
    .build()
    .expect("reader");
    let n: usize = rd.map(|b| b.expect("batch").num_rows()).sum();
    assert_eq!(n, want.len());

    let no_out = query(sql, &["--format", "parquet"]);
    assert_eq!(no_out.status.code(), Some(2), "parquet needs --out");
}
