//! `lake query --backend aws` against moto (LAKE_TEST_AWS_ENDPOINT, started by scripts/test.sh).
//! moto does not run SQL: each test queues the result moto answers with, then checks what the CLI
//! sent (query text, workgroup, database, and the result configuration decided from the
//! workgroup: none for one that enforces its own, location and SSE-KMS with a key otherwise),
//! that it polled through QUEUED and RUNNING with a progress line, that a FAILED query ends with
//! Athena's reason, that Ctrl-C stops the query in Athena, and that every page of a long result
//! is read. The paging and the FAILED state come from scripts/moto_server.py's patches; the tests
//! check that those are installed.

use std::io::{Read, Write};
use std::process::{Command, Output};

use aws_sdk_athena::types::{
    EncryptionConfiguration, EncryptionOption, ResultConfiguration, WorkGroupConfiguration,
};

/// moto's result queue and state manager are global: one test at a time drives them.
static MOTO: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LAKE_KEY: &str =
    "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/11111111-2222-3333-4444-555555555555";

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

/// Each state of a query execution lasts `polls` GetQueryExecution calls (moto's state manager).
fn polls_per_state(ep: &str, polls: u32) {
    let body = serde_json::json!({
        "model_name": "athena::execution",
        "transition": {"progression": "manual", "times": polls},
    });
    moto_post(ep, "/moto-api/state-manager/set-transition", &body.to_string());
}

/// Back to moto's default: a query is SUCCEEDED at the first poll.
fn polls_reset(ep: &str) {
    let body = serde_json::json!({"model_name": "athena::execution"});
    moto_post(ep, "/moto-api/state-manager/unset-transition", &body.to_string());
}

fn column(name: &str, ty: &str) -> serde_json::Value {
    serde_json::json!({"Name": name, "Label": name, "Type": ty, "Nullable": "UNKNOWN"})
}

fn cell(v: &str) -> serde_json::Value {
    serde_json::json!({"VarCharValue": v})
}

/// Queues the rows (the header row first, as Athena returns it) for the next query moto starts.
fn queue_result(ep: &str, rows: Vec<serde_json::Value>, columns: Vec<serde_json::Value>) {
    let results = serde_json::json!({
        "account_id": "123456789012",
        "region": region(),
        "results": [{"rows": rows, "column_info": columns}],
    });
    moto_post(ep, "/moto-api/static/athena/query-results", &results.to_string());
}

async fn athena(ep: &str) -> aws_sdk_athena::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(ep)
        .region(aws_config::Region::new(region()))
        .load()
        .await;
    aws_sdk_athena::Client::new(&conf)
}

/// A workgroup named after the test and this process.
async fn workgroup(client: &aws_sdk_athena::Client, name: &str, conf: WorkGroupConfiguration) -> String {
    let wg = format!("{name}-{}", std::process::id());
    client.create_work_group().name(&wg).configuration(conf).send().await.expect("create workgroup");
    wg
}

fn kms(key: &str) -> EncryptionConfiguration {
    EncryptionConfiguration::builder()
        .encryption_option(EncryptionOption::SseKms)
        .kms_key(key)
        .build()
        .expect("encryption configuration")
}

/// `lake query SQL --backend aws --workgroup WG --database county_lake_dev EXTRA...`
fn lake_query(ep: &str, sql: &str, wg: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(["query", sql, "--backend", "aws", "--workgroup", wg, "--database", "county_lake_dev"])
        .args(extra)
        .env("AWS_ENDPOINT_URL", ep)
        .env("AWS_REGION", region())
        .env("RUST_LOG", "off")
        .env_remove("LAKE_ATHENA_OUTPUT")
        .env_remove("LAKE_ATHENA_KMS_KEY")
        .output()
        .expect("lake query")
}

/// The executions moto recorded in `wg`, oldest first.
async fn executions(client: &aws_sdk_athena::Client, wg: &str) -> Vec<aws_sdk_athena::types::QueryExecution> {
    let ids = client.list_query_executions().work_group(wg).send().await.expect("list");
    let mut out = Vec::new();
    for id in ids.query_execution_ids() {
        let q = client.get_query_execution().query_execution_id(id).send().await.expect("get");
        out.push(q.query_execution().expect("execution").clone());
    }
    out
}

fn json_rows(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[tokio::test]
async fn enforcing_workgroup_decides_the_results_and_the_cli_polls_to_the_end() {
    let ep = e2e::moto_endpoint();
    let _one = MOTO.lock().await;
    let client = athena(&ep).await;
    // as the stack's AthenaWorkGroup: enforced, results to its bucket with the lake key
    let own = ResultConfiguration::builder()
        .output_location("s3://athena-results/results/")
        .encryption_configuration(kms(LAKE_KEY))
        .build();
    let conf = WorkGroupConfiguration::builder()
        .enforce_work_group_configuration(true)
        .result_configuration(own)
        .bytes_scanned_cutoff_per_query(10_737_418_240)
        .build();
    let wg = workgroup(&client, "enforced", conf).await;
    queue_result(
        &ep,
        vec![
            serde_json::json!({"Data": [cell("source"), cell("row_count"), cell("first_day")]}),
            serde_json::json!({"Data": [cell("county_general"), cell("569"), cell("2026-12-03")]}),
            serde_json::json!({"Data": [cell("st_marys"), cell("571"), cell("2026-12-04")]}),
        ],
        vec![column("source", "varchar"), column("row_count", "bigint"), column("first_day", "date")],
    );
    polls_per_state(&ep, 2);

    let sql =
        "SELECT source, COUNT(*) AS row_count, MIN(ingest_date) AS first_day FROM encounter GROUP BY source";
    let out = lake_query(&ep, sql, &wg, &["--athena-output", "s3://elsewhere/x/", "--format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "lake query --backend aws: {stderr}");
    for state in ["QUEUED", "RUNNING", "SUCCEEDED"] {
        assert!(stderr.contains(&format!(": {state} after")), "progress line shows {state}: {stderr}");
    }
    assert!(stderr.contains("enforces its result location"), "the ignored --athena-output is told: {stderr}");
    assert!(!stderr.contains("eprecat"), "no library deprecation notice for the user: {stderr}");
    assert_eq!(
        json_rows(&out),
        vec![
            serde_json::json!({"source": "county_general", "row_count": 569, "first_day": "2026-12-03"}),
            serde_json::json!({"source": "st_marys", "row_count": 571, "first_day": "2026-12-04"}),
        ],
        "the header row is dropped and cells are typed"
    );

    let sent = executions(&client, &wg).await;
    assert_eq!(sent.len(), 1, "one query started");
    let q = &sent[0];
    assert_eq!(q.query(), Some(sql));
    assert_eq!(q.work_group(), Some(wg.as_str()));
    assert_eq!(q.query_execution_context().and_then(|c| c.database()), Some("county_lake_dev"));
    // moto records what the client sent: nothing, the workgroup's configuration applies
    assert_eq!(q.result_configuration(), None, "no client-side result configuration");
    polls_reset(&ep);
}

#[tokio::test]
async fn non_enforcing_workgroup_gets_a_location_and_a_kms_key() {
    let ep = e2e::moto_endpoint();
    let _one = MOTO.lock().await;
    polls_reset(&ep);
    let client = athena(&ep).await;
    let sql = "SELECT COUNT(*) AS n FROM encounter";
    let one_row = || {
        queue_result(
            &ep,
            vec![serde_json::json!({"Data": [cell("n")]}), serde_json::json!({"Data": [cell("7")]})],
            vec![column("n", "bigint")],
        )
    };

    // nothing configured, nothing on the command line: refused before a query starts
    let bare = workgroup(
        &client,
        "bare",
        WorkGroupConfiguration::builder().enforce_work_group_configuration(false).build(),
    )
    .await;
    let out = lake_query(&ep, sql, &bare, &["--athena-output", "s3://results-bucket/results/"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--athena-kms-key") && err.contains(&bare), "the error says what to pass: {err}");
    assert!(executions(&client, &bare).await.is_empty(), "no query was started");

    // the command line's location and key
    one_row();
    let key = "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
    let out = lake_query(
        &ep,
        sql,
        &bare,
        &["--athena-output", "s3://results-bucket/results/", "--athena-kms-key", key, "--format", "csv"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n7\n");
    let sent = executions(&client, &bare).await;
    let rc = sent[0].result_configuration().expect("a client-side result configuration");
    // Athena (and moto) report the result object: the location sent, then `<query id>.csv`
    let loc = rc.output_location().expect("output location");
    assert!(loc.starts_with("s3://results-bucket/results/"), "{loc}");
    assert_eq!(rc.encryption_configuration(), Some(&kms(key)), "SSE-KMS with the key named");

    // the workgroup's own (not enforced) location and key, sent explicitly
    one_row();
    let own = ResultConfiguration::builder()
        .output_location("s3://athena-results/results/")
        .encryption_configuration(kms(LAKE_KEY))
        .build();
    let conf = WorkGroupConfiguration::builder()
        .enforce_work_group_configuration(false)
        .result_configuration(own)
        .build();
    let client_side = workgroup(&client, "client-side", conf).await;
    let out = lake_query(&ep, sql, &client_side, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sent = executions(&client, &client_side).await;
    let rc = sent[0].result_configuration().expect("a client-side result configuration");
    assert!(rc.output_location().is_some_and(|l| l.starts_with("s3://athena-results/results/")), "{rc:?}");
    assert_eq!(rc.encryption_configuration(), Some(&kms(LAKE_KEY)));
}

#[tokio::test]
async fn a_failed_query_ends_with_athenas_reason() {
    let ep = e2e::moto_endpoint();
    let _one = MOTO.lock().await;
    let client = athena(&ep).await;
    let wg = workgroup(
        &client,
        "failing",
        WorkGroupConfiguration::builder().enforce_work_group_configuration(true).build(),
    )
    .await;
    polls_per_state(&ep, 1);
    let reason = "COLUMN_NOT_FOUND: line 1:8: Column 'no_such_column' cannot be resolved";
    let sql = format!("SELECT no_such_column FROM encounter\n-- moto:fail {reason}");
    let out = lake_query(&ep, &sql, &wg, &[]);
    polls_reset(&ep);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(": RUNNING after"), "it was running first: {err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("FAILED: {reason}")), "Athena's reason is shown: {err}");
    assert!(out.stdout.is_empty(), "no result printed");
}

#[tokio::test]
async fn every_page_of_a_long_result_is_read() {
    let ep = e2e::moto_endpoint();
    let _one = MOTO.lock().await;
    polls_reset(&ep);
    let client = athena(&ep).await;
    let wg = workgroup(
        &client,
        "paging",
        WorkGroupConfiguration::builder().enforce_work_group_configuration(true).build(),
    )
    .await;
    let long = || {
        let mut rows = vec![serde_json::json!({"Data": [cell("row_id"), cell("source")]})];
        rows.extend((0..2500).map(|i| serde_json::json!({"Data": [cell(&i.to_string()), cell("st_marys")]})));
        queue_result(&ep, rows, vec![column("row_id", "bigint"), column("source", "varchar")]);
    };

    // the test moto pages as Athena does (else the CLI's loop would be read in one page, untested)
    long();
    let id =
        client.start_query_execution().query_string("SELECT 1").work_group(&wg).send().await.expect("start");
    let id = id.query_execution_id().expect("id");
    let page = client.get_query_results().query_execution_id(id).send().await.expect("results");
    let rows = page.result_set().map(|r| r.rows().len());
    assert_eq!(rows, Some(1000), "moto pages GetQueryResults (scripts/moto_server.py)");
    assert!(page.next_token().is_some(), "a NextToken after the first page");

    long();
    let out = lake_query(&ep, "SELECT row_id, source FROM encounter", &wg, &["--format", "csv"]);
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

#[tokio::test]
async fn interrupting_the_cli_stops_the_query_in_athena() {
    let ep = e2e::moto_endpoint();
    let _one = MOTO.lock().await;
    let client = athena(&ep).await;
    let wg = workgroup(
        &client,
        "interrupted",
        WorkGroupConfiguration::builder().enforce_work_group_configuration(true).build(),
    )
    .await;
    polls_per_state(&ep, 1000); // queued for as long as the test needs
    let mut child = Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(["query", "SELECT COUNT(*) FROM encounter", "--backend", "aws", "--workgroup", &wg])
        .args(["--database", "county_lake_dev"])
        .env("AWS_ENDPOINT_URL", &ep)
        .env("AWS_REGION", region())
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lake query");
    // the progress line is printed once the CLI polls, with its Ctrl-C handler installed
    let mut err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(": QUEUED after") {
        let chunk = rx.recv_timeout(std::time::Duration::from_secs(30)).expect("a progress line");
        seen.extend(chunk);
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    let status = child.wait().expect("lake exits");
    reader.join().expect("reader");
    seen.extend(rx.try_iter().flatten());
    polls_reset(&ep);
    let stderr = String::from_utf8_lossy(&seen);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cancelled (interrupted; StopQueryExecution sent)"), "{stderr}");
    let sent = executions(&client, &wg).await;
    let state = sent[0].status().and_then(|s| s.state()).cloned();
    assert_eq!(state, Some(aws_sdk_athena::types::QueryExecutionState::Cancelled), "stopped in Athena");
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
