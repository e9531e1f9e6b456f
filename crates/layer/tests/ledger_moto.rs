//! The ledger's conditional writes through the DynamoDB adapter (moto) and the embedded one:
//! `put_run_unless_done` never overwrites a DONE run (an export part held by the router while
//! the manifest's join marks it DONE stays DONE), and writes any other. Needs moto
//! (`bash scripts/test.sh -p layer --test ledger_moto`); fails without it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use layer::ledger::{RunRecord, Status};
use layer::ports::Metadata;
use layer::Stage;

async fn a_done_run_is_never_overwritten(meta: Arc<dyn Metadata>, what: &str) {
    let key = "ridgeline_bulk/export-7/Patient.ndjson".to_string().into();
    let mut part = RunRecord::received("ingest", &key, Some("v1"));
    part.stage = Stage::AwaitingManifest;

    // absent: written
    assert!(meta.put_run_unless_done(&part).await.unwrap(), "{what}: absent run written");
    assert_eq!(meta.get_run(&part.file_id).await.unwrap().unwrap().stage, Stage::AwaitingManifest);

    // the join marks it DONE; a late hold of the same part changes nothing
    let mut joined = part.clone();
    joined.status = Status::Done;
    joined.stage = Stage::Joined;
    joined.joined_into = Some("manifest-file".into());
    meta.put_run(&joined).await.unwrap();
    assert!(!meta.put_run_unless_done(&part).await.unwrap(), "{what}: DONE is kept");
    let stored = meta.get_run(&part.file_id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.stage), (Status::Done, Stage::Joined), "{what}");
    assert_eq!(stored.joined_into.as_deref(), Some("manifest-file"), "{what}");

    // any other status is overwritten (a FAILED run being retried)
    let mut failed = part.clone();
    failed.file_id = format!("{}-b", part.file_id);
    failed.status = Status::Failed;
    meta.put_run(&failed).await.unwrap();
    let mut retry = failed.clone();
    retry.status = Status::Received;
    assert!(meta.put_run_unless_done(&retry).await.unwrap(), "{what}: FAILED is overwritten");
    assert_eq!(meta.get_run(&retry.file_id).await.unwrap().unwrap().status, Status::Received, "{what}");
}

#[tokio::test]
async fn put_run_unless_done_keeps_done_runs_in_dynamodb() {
    let w = e2e::world().await;
    a_done_run_is_never_overwritten(w.deps.meta.clone(), "dynamodb").await;
}

#[tokio::test]
async fn put_run_unless_done_keeps_done_runs_in_the_embedded_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let meta: Arc<dyn Metadata> = Arc::new(layer::local::LocalMetadata::new(dir.path().join("meta")));
    a_done_run_is_never_overwritten(meta, "local").await;
}
