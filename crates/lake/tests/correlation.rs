//! One file can be followed through router, workflow and matcher by its file id: every JSON log
//! line written while a stage handles the file carries `file_id` and the Lambda `request_id` (in
//! the line's `span`), and so does every EMF metric record about it.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);
impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_followed_through_router_workflow_and_matcher_by_its_id() {
    // the Lambdas' own log format (layer::telemetry::init_json), into a buffer
    let logs = Buf::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .init();
    layer::metrics::capture();

    let tmp = tempfile::tempdir().unwrap();
    let incoming = tmp.path().join("incoming/st_marys");
    std::fs::create_dir_all(&incoming).unwrap();
    std::fs::copy(root().join("samples/st_marys/st_marys_600.csv"), incoming.join("st_marys_600.csv"))
        .unwrap();
    let lake = tmp.path().join("lake");
    let (deps, topo) = lake::embedded::local_deps(&lake, Some(&tmp.path().join("incoming")));
    lake::embedded::publish_dir(&deps, &root().join("config/sources")).await.unwrap();
    lake::embedded::notify_all(&deps, &topo).await.unwrap();
    lake::embedded::drain(&deps, &topo).await.unwrap();
    let (m, _) =
        lake::embedded::local_matching(&deps, &lake, &root().join("config/people.example.csv")).unwrap();
    lake::embedded::drain_matching(&m).await.unwrap();
    let runs = lake::embedded::status(&deps).await.unwrap();
    assert_eq!(runs.len(), 1);
    let id = runs[0].file_id.clone();
    assert_eq!(runs[0].stage, layer::Stage::Matched, "the file went through all three stages");

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let about: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["span"]["file_id"] == id.as_str()).collect();
    let functions: BTreeSet<&str> = about.iter().filter_map(|l| l["span"]["function"].as_str()).collect();
    assert_eq!(
        functions,
        BTreeSet::from(["ingestion-router", "pii-matching", "semi-structured-workflow"]),
        "log lines about the file from each stage"
    );
    // each stage's lines carry that invocation's request id, and the three invocations differ
    let requests: BTreeSet<&str> = about.iter().map(|l| l["span"]["request_id"].as_str().unwrap()).collect();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(requests.iter().all(|r| r.starts_with("local-")), "{requests:?}");
    // lines that name the file in their own fields are inside its scope too
    for l in lines.iter().filter(|l| l["fields"]["file_id"] == id.as_str()) {
        assert_eq!(l["span"]["file_id"], id.as_str(), "{l}");
    }

    let metrics: Vec<serde_json::Value> =
        layer::metrics::captured().iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mine: Vec<&serde_json::Value> = metrics.iter().filter(|m| m["file_id"] == id.as_str()).collect();
    assert!(mine.iter().any(|m| m["FilesRouted"] == 1.0), "{mine:?}");
    assert!(mine.iter().any(|m| m["FilesDone"] == 1.0), "{mine:?}");
    assert!(mine.iter().all(|m| m["request_id"].as_str().is_some_and(|r| requests.contains(r))));
}
