//! `lake query --backend aws` against moto (LAKE_TEST_AWS_ENDPOINT, started by scripts/test.sh).
//! moto does not run SQL: the test queues the result moto answers with, then checks what the CLI
//! sent (query text, workgroup, database, SSE-KMS result configuration), that it polled to the end
//! with a progress line, and that it printed moto's rows typed by their Athena column types.

use std::io::{Read, Write};
use std::process::Command;

fn endpoint() -> Option<String> {
    match std::env::var("LAKE_TEST_AWS_ENDPOINT") {
        Ok(e) => Some(e),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("LAKE_TEST_AWS_ENDPOINT is not set: run the tests with scripts/test.sh")
        }
        Err(_) => None,
    }
}

fn region() -> String {
    std::env::var("AWS_REGION").unwrap_or_else(|_| "us-gov-west-1".into())
}

/// POSTs JSON to moto's API (plain HTTP on 127.0.0.1).
fn moto_post(endpoint: &str, path: &str, body: &str) {
    let hostport = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(hostport).expect("moto");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    assert!(resp.starts_with("HTTP/1.1 20"), "moto-api answered {resp}");
}

fn column(name: &str, ty: &str) -> serde_json::Value {
    serde_json::json!({"Name": name, "Label": name, "Type": ty, "Nullable": "UNKNOWN"})
}

fn cell(v: &str) -> serde_json::Value {
    serde_json::json!({"VarCharValue": v})
}

#[tokio::test]
async fn athena_query_runs_in_the_workgroup_with_encrypted_results() {
    let Some(ep) = endpoint() else {
        eprintln!("LAKE_TEST_AWS_ENDPOINT not set (outside CI): skipped");
        return;
    };
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&ep)
        .region(aws_config::Region::new(region()))
        .load()
        .await;
    let athena = aws_sdk_athena::Client::new(&conf);
    let wg = format!("analysts-{}", std::process::id());
    athena.create_work_group().name(&wg).send().await.expect("create workgroup");

    let results = serde_json::json!({
        "account_id": "123456789012",
        "region": region(),
        "results": [{
            "rows": [
                {"Data": [cell("source"), cell("row_count"), cell("first_day")]},
                {"Data": [cell("county_general"), cell("569"), cell("2026-12-03")]},
                {"Data": [cell("st_marys"), cell("571"), cell("2026-12-04")]},
            ],
            "column_info": [column("source", "varchar"), column("row_count", "bigint"), column("first_day", "date")],
        }],
    });
    moto_post(&ep, "/moto-api/static/athena/query-results", &results.to_string());

    let sql =
        "SELECT source, COUNT(*) AS row_count, MIN(ingest_date) AS first_day FROM encounter GROUP BY source";
    let out = Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(["query", sql, "--backend", "aws", "--workgroup", &wg, "--database", "county_lake_dev"])
        .args(["--athena-output", "s3://results-bucket/results/", "--format", "json"])
        .env("AWS_ENDPOINT_URL", &ep)
        .env("AWS_REGION", region())
        .env("RUST_LOG", "off")
        .output()
        .expect("lake query");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "lake query --backend aws: {stderr}");
    assert!(stderr.contains("SUCCEEDED"), "progress line with the final state: {stderr}");
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(
        rows,
        vec![
            serde_json::json!({"source": "county_general", "row_count": 569, "first_day": "2026-12-03"}),
            serde_json::json!({"source": "st_marys", "row_count": 571, "first_day": "2026-12-04"}),
        ],
        "the header row is dropped and cells are typed"
    );

    // what the CLI sent, as moto recorded it
    let ids = athena.list_query_executions().work_group(&wg).send().await.expect("list");
    let id = ids.query_execution_ids().first().expect("one query in the workgroup").clone();
    let q = athena.get_query_execution().query_execution_id(&id).send().await.expect("get");
    let q = q.query_execution().expect("execution");
    assert_eq!(q.query(), Some(sql));
    assert_eq!(q.work_group(), Some(wg.as_str()));
    assert_eq!(q.query_execution_context().and_then(|c| c.database()), Some("county_lake_dev"));
    let rc = q.result_configuration().expect("result configuration");
    // Athena (and moto) report the result object: the location sent, then `<query id>.csv`
    let loc = rc.output_location().expect("output location");
    assert!(loc.starts_with("s3://results-bucket/results/"), "{loc}");
    assert_eq!(
        rc.encryption_configuration().map(|e| e.encryption_option().clone()),
        Some(aws_sdk_athena::types::EncryptionOption::SseKms)
    );

    // a result longer than Athena's 1,000-row page: every page is read, the header dropped once
    let mut rows = vec![serde_json::json!({"Data": [cell("row_id"), cell("source")]})];
    rows.extend((0..2500).map(|i| serde_json::json!({"Data": [cell(&i.to_string()), cell("st_marys")]})));
    let results = serde_json::json!({
        "account_id": "123456789012",
        "region": region(),
        "results": [{"rows": rows, "column_info": [column("row_id", "bigint"), column("source", "varchar")]}],
    });
    moto_post(&ep, "/moto-api/static/athena/query-results", &results.to_string());
    let out = Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(["query", "SELECT row_id, source FROM encounter", "--backend", "aws", "--workgroup", &wg])
        .args(["--database", "county_lake_dev", "--athena-output", "s3://results-bucket/results/"])
        .args(["--format", "csv"])
        .env("AWS_ENDPOINT_URL", &ep)
        .env("AWS_REGION", region())
        .env("RUST_LOG", "off")
        .output()
        .expect("lake query");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2501, "a header and 2,500 rows from three pages");
    assert_eq!(lines[0], "row_id,source");
    assert_eq!(
        (lines[1], lines[1000], lines[1001], lines[2500]),
        ("0,st_marys", "999,st_marys", "1000,st_marys", "2499,st_marys")
    );
}

#[test]
fn aws_backend_needs_a_workgroup() {
    let out = Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(["query", "SELECT 1", "--backend", "aws"])
        .env_remove("LAKE_ATHENA_WORKGROUP")
        .env_remove("LAKE_GLUE_DATABASE")
        .output()
        .expect("lake query");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--workgroup"));
}
