//! The router's direct S3 invocation (a bucket notifying the Lambda itself), with the real event
//! JSON: routed in a correlation scope, failing as its kind. Its own test binary: it installs the
//! process's log subscriber, and tracing's per-callsite cache would drop its lines if another test
//! thread without a subscriber hit the same callsites first.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use layer::local::LocalObjectStore;
use layer::pipeline::{Deps, WorkMessage};

/// Local adapters with the st_marys contract published.
async fn deps(dir: &Path) -> Deps {
    let d = layer::local::local_deps(dir, LocalObjectStore::new(dir.join("buckets")));
    let toml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/sources/st_marys.toml"),
    )
    .unwrap();
    d.meta.publish_contract("st_marys", "encounter", &toml).await.unwrap();
    d
}

async fn drain(d: &Deps, queue: &str) -> Vec<String> {
    d.queue.receive(queue, 10).await.unwrap().into_iter().map(|m| m.body).collect()
}

/// A log writer the test reads back.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);
impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_direct_s3_invocation_is_routed_in_a_correlation_scope_and_fails_as_its_kind() {
    // the Lambdas' JSON log format, into a buffer, for this test's thread only
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let d = deps(dir.path()).await;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/events/s3-put-direct.json");
    let body = std::fs::read_to_string(path).unwrap();
    ingestion_router::handle_s3(&d, "9e1d-direct-req", &body).await.unwrap();
    let work = drain(&d, "work-delimited").await;
    assert_eq!(work.len(), 1);
    let w: WorkMessage = serde_json::from_str(&work[0]).unwrap();
    assert_eq!(w.key.expose(), "st_marys/2026/11/MARY JONES_1990.csv");

    // every line about the file carries the request id and the file id, never the key
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!lines.is_empty(), "the router logged nothing");
    for l in &lines {
        assert_eq!(l["span"]["request_id"], "9e1d-direct-req", "{l}");
        assert_eq!(l["span"]["file_id"], w.file_id.as_str(), "{l}");
    }
    assert!(!text.contains("MARY") && !text.contains("JONES"), "a log line shows the key: {text}");

    // an object under no published contract: the invocation fails as its kind, the key unnamed
    let other = body.replace("st_marys/", "nowhere/");
    let e = ingestion_router::handle_s3(&d, "9e1d-direct-req", &other).await.unwrap_err();
    let diag = lambda_runtime::Diagnostic::from(&e);
    assert_eq!(diag.error_type, "UnknownSource");
    assert!(diag.error_message.starts_with("UnknownSource: "), "{}", diag.error_message);
    let m = &diag.error_message;
    assert!(!m.contains("MARY") && !m.contains("nowhere"), "the diagnostic names the key: {m}");
}
