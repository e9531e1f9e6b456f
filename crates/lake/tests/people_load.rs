//! `lake people load` through the binary against a real PostgreSQL (`LAKE_TEST_DATABASE_URL`) and
//! moto (`LAKE_TEST_AWS_ENDPOINT`), both started by `scripts/test.sh`: Parquet exports through
//! the same mapping and row rejections as CSV, an export read from S3 with `--backend aws`, the
//! `lake_loader` role logging in with IAM database authentication, wrong encodings and unmapped
//! columns; and `lake run --people` reading through the same reader.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use pii_matching::pg::Db;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh database with the migrations (as a deploy leaves it): its URL.
async fn migrated_db() -> String {
    let (db_url, _) = e2e::empty_database().await;
    Db::from_url(&db_url, 1).unwrap().migrate().await.unwrap();
    db_url
}

fn lake(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lake"));
    c.args(args).current_dir(root()).env("RUST_LOG", "warn");
    for v in ["LAKE_DATABASE_URL", "LAKE_DB_SECRET_ARN", "AWS_ENDPOINT_URL", "LAKE_DB_HOST"] {
        c.env_remove(v);
    }
    c.envs(env.iter().copied());
    let o = c.output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

/// `config/people.example.csv` as a Parquet export (every column text, as many exports are),
/// optionally with one row's dob replaced.
fn example_as_parquet(path: &Path, bad_dob_at: Option<usize>) -> usize {
    let text = std::fs::read_to_string(root().join("config/people.example.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(String::from).collect()).collect();
    let dob = header.iter().position(|h| *h == "dob").unwrap();
    let cols: Vec<(&str, ArrayRef)> = header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let v: Vec<Option<String>> = rows
                .iter()
                .enumerate()
                .map(|(r, row)| {
                    if i == dob && Some(r) == bad_dob_at {
                        return Some("sometime in May".to_string());
                    }
                    Some(row[i].clone()).filter(|s| !s.is_empty())
                })
                .collect();
            (*h, Arc::new(StringArray::from(v)) as ArrayRef)
        })
        .collect();
    let b = RecordBatch::try_from_iter(cols).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), b.schema(), None).unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
    rows.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parquet_export_loads_like_the_csv_and_a_bad_row_is_named_by_its_row_number() {
    let db_url = migrated_db().await;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.parquet");
    example_as_parquet(&bad, Some(4));
    let env = [("LAKE_DATABASE_URL", db_url.as_str())];
    let (ok, _, err) = lake(&["people", "load", bad.to_str().unwrap()], &env);
    assert!(!ok, "{err}");
    assert!(err.contains("row 5: dob is not a date") && !err.contains("sometime"), "{err}");
    assert!(err.contains("nothing loaded"), "{err}");

    let good = dir.path().join("people.parquet");
    let n = example_as_parquet(&good, None);
    let (ok, out, err) = lake(&["people", "load", good.to_str().unwrap()], &env);
    assert!(ok && out.contains(&format!("{n} inserted, 0 updated")), "{out}{err}");
    // the CSV of the same persons changes nothing: both went through the same normalisation
    let (ok, out, err) = lake(&["people", "load", "config/people.example.csv"], &env);
    assert!(ok && out.contains(&format!("0 inserted, 0 updated, {n} unchanged")), "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_in_s3_is_loaded_by_the_loader_role_with_an_iam_token() {
    let endpoint = e2e::moto_endpoint();
    let db_url = migrated_db().await;
    let sdk = e2e::moto_sdk().await;
    let s3 = e2e::s3_client(&sdk);
    let bucket = format!("people-{}", e2e::unique());
    e2e::create_bucket(&s3, &bucket, false).await;
    let body = std::fs::read(root().join("config/people.example.csv")).unwrap();
    let rows = body.iter().filter(|b| **b == b'\n').count() - 1;
    s3.put_object().bucket(&bucket).key("exports/persons.csv").body(body.into()).send().await.unwrap();

    let o: sqlx::postgres::PgConnectOptions = db_url.parse().unwrap();
    let (host, port, name) =
        (o.get_host().to_string(), o.get_port().to_string(), o.get_database().unwrap().to_string());
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-gov-west-1"),
        ("LAKE_DB_HOST", host.as_str()),
        ("LAKE_DB_PORT", port.as_str()),
        ("LAKE_DB_NAME", name.as_str()),
        ("LAKE_DB_SSLMODE", "disable"),
    ];
    let src = format!("s3://{bucket}/exports/persons.csv");
    let (ok, _, err) = lake(&["people", "load", &src, "--db-user", "lake_loader"], &env);
    assert!(!ok && err.contains("--backend aws"), "{err}");
    let (ok, out, err) =
        lake(&["people", "load", &src, "--backend", "aws", "--db-user", "lake_loader"], &env);
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("{rows} inserted")), "{out}");
    // a second load changes nothing; a missing object is named
    let (ok, out, _) = lake(&["people", "load", &src, "--backend", "aws", "--db-user", "lake_loader"], &env);
    assert!(ok && out.contains(&format!("{rows} unchanged")), "{out}");
    let gone = format!("s3://{bucket}/exports/nope.csv");
    let (ok, _, err) = lake(&["people", "load", &gone, "--backend", "aws", "--db-user", "lake_loader"], &env);
    assert!(!ok && err.contains("nope.csv"), "{err}");

    let admin = Db::from_url(&db_url, 1).unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM person").fetch_one(&admin.pool()).await.unwrap();
    assert_eq!(n as usize, rows);
}

#[test]
fn a_utf16_export_and_unmapped_columns_are_reported_before_any_database_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("config/people.example.csv")).unwrap();
    let mut utf16 = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        utf16.extend(u.to_le_bytes());
    }
    let p = dir.path().join("utf16.csv");
    std::fs::write(&p, utf16).unwrap();
    // no database given: the file is judged first
    let (ok, _, err) = lake(&["people", "load", p.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("wrong encoding: line 1"), "{err}");

    let mut lines = text.lines();
    let extra = format!(
        "{},favourite_colour\n{}\n",
        lines.next().unwrap(),
        lines.map(|l| format!("{l},blue")).collect::<Vec<_>>().join("\n")
    );
    let p = dir.path().join("extra.csv");
    std::fs::write(&p, extra).unwrap();
    let (ok, _, err) = lake(&["people", "load", p.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("not in the mapping, not loaded: favourite_colour"), "{err}");
    assert!(err.contains("no database given"), "read, then the missing database named: {err}");
}

#[test]
fn lake_run_people_reads_through_the_same_reader_as_people_load() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("config/people.example.csv")).unwrap();
    let first = text.lines().nth(1).unwrap();
    let p = dir.path().join("dup.csv");
    std::fs::write(&p, format!("{text}{first}\n")).unwrap();
    let line = text.lines().count() + 1;
    let lk = dir.path().join("lake");
    let (ok, out, err) =
        lake(&["run", "samples/", "--lake", lk.to_str().unwrap(), "--people", p.to_str().unwrap()], &[]);
    assert!(!ok, "{out}");
    assert!(err.contains(&format!("line {line}: person_id repeats the one on line 2")), "{err}");
    let (ok, _, err) = lake(&["people", "load", p.to_str().unwrap()], &[]);
    assert!(!ok && err.contains(&format!("line {line}: person_id repeats the one on line 2")), "{err}");
}
