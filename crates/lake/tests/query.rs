//! `lake query` on the embedded lake: after `lake run samples/ --people ...`, the example queries of
//! docs/ANALYTICS.md answer with the counts the run's own table printed; unknown tables, unknown
//! columns and syntax errors fail with a message naming them; every output format is readable.

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
        assert!(by_source.len() >= 8, "the run table names every sample source: {by_source:?}");
        Run { _dir: dir, lake: lake_dir, by_source }
    })
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

const ROWS_PER_SOURCE_AND_DAY: &str = "SELECT source, ingest_date, COUNT(*) AS row_count \
     FROM encounter GROUP BY source, ingest_date ORDER BY source, ingest_date";

#[test]
fn rows_per_source_and_day_are_the_runs_good_rows() {
    let r = run();
    let got = rows(ROWS_PER_SOURCE_AND_DAY);
    let mut sums: BTreeMap<String, u64> = BTreeMap::new();
    for row in &got {
        let day = row["ingest_date"].as_str().expect("ingest_date");
        assert_eq!(day.len(), 10, "ingest_date is YYYY-MM-DD: {day}");
        *sums.entry(row["source"].as_str().expect("source").into()).or_default() +=
            row["row_count"].as_u64().expect("row_count");
    }
    let want: BTreeMap<String, u64> = r.by_source.iter().map(|(s, c)| (s.clone(), c.good)).collect();
    assert_eq!(sums, want);
}

#[test]
fn rows_completed_by_matching_are_the_runs_matched_rows() {
    let r = run();
    let got = per_source(
        r#"SELECT source, COUNT(*) AS completed FROM encounter WHERE "$path" LIKE '%.matched.parquet' GROUP BY source"#,
        "completed",
    );
    let want: BTreeMap<String, u64> =
        r.by_source.iter().filter(|(_, c)| c.matched > 0).map(|(s, c)| (s.clone(), c.matched)).collect();
    assert!(!want.is_empty(), "the samples have matched rows");
    assert_eq!(got, want);
}

const BAD_ROW_RATE: &str = r#"WITH g AS (SELECT source, COUNT(*) AS good FROM encounter
      WHERE "$path" NOT LIKE '%.matched.parquet' GROUP BY source),
    b AS (SELECT source, COUNT(*) AS bad FROM encounter_quarantine GROUP BY source)
SELECT g.source, g.good, COALESCE(b.bad, 0) AS bad,
    ROUND(CAST(COALESCE(b.bad, 0) AS DOUBLE) / (g.good + COALESCE(b.bad, 0)), 4) AS bad_rate
FROM g LEFT JOIN b ON g.source = b.source ORDER BY g.source"#;

#[test]
fn bad_row_rate_per_source_counts_the_quarantine() {
    // the run's `bad` column is what stays bad after matching; the quarantine keeps every bad
    // row of the transform, the completed ones included
    let r = run();
    for row in rows(BAD_ROW_RATE) {
        let s = row["source"].as_str().expect("source");
        let c = r.by_source[s];
        let (good, bad) = (row["good"].as_u64().expect("good"), row["bad"].as_u64().expect("bad"));
        assert_eq!(good, c.good - c.matched, "{s}: transform's good rows");
        assert_eq!(bad, c.bad + c.matched, "{s}: transform's bad rows");
        let rate = row["bad_rate"].as_f64().expect("bad_rate");
        assert!((rate - bad as f64 / (good + bad) as f64).abs() < 1e-4, "{s}: {rate}");
    }
}

const ENCOUNTERS_PER_FACILITY_AND_MONTH: &str = "SELECT facility, encounter_year, encounter_month, \
     COUNT(*) AS encounters FROM (SELECT facility, EXTRACT(YEAR FROM encounter_date) AS encounter_year, \
     EXTRACT(MONTH FROM encounter_date) AS encounter_month FROM encounter) t \
     GROUP BY facility, encounter_year, encounter_month ORDER BY facility, encounter_year, encounter_month";

#[test]
fn encounters_per_facility_and_month_add_up_to_the_table() {
    let got = rows(ENCOUNTERS_PER_FACILITY_AND_MONTH);
    let total: u64 = got.iter().map(|r| r["encounters"].as_u64().expect("encounters")).sum();
    let want: u64 = run().by_source.values().map(|c| c.good).sum();
    assert_eq!(total, want);
    assert!(got.iter().all(|r| (1..=12).contains(&r["encounter_month"].as_u64().unwrap_or(0))));
    assert!(got.len() > 12, "several facilities and months: {}", got.len());
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
