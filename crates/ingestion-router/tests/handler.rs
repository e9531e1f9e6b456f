//! The router's handler driven with real SQS event JSON (an S3 put notification delivered via
//! SQS, as the ingest queue hands it to Lambda) over the local adapters, without the runtime.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Context, LambdaEvent};
use layer::faults::{Faults, When};
use layer::ledger::Status;
use layer::local::LocalObjectStore;
use layer::pipeline::{Deps, WorkMessage};
use layer::{ErrorKind, Function, Stage};

fn event(name: &str) -> LambdaEvent<SqsEvent> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/events").join(name);
    let ev: SqsEvent = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut ctx = Context::default();
    ctx.request_id = "7f3c2b1a-req".into();
    LambdaEvent::new(ev, ctx)
}

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

#[tokio::test]
async fn an_s3_put_via_sqs_is_recorded_and_sent_to_its_family_queue() {
    let dir = tempfile::tempdir().unwrap();
    let d = deps(dir.path()).await;
    let resp = ingestion_router::handle(&d, event("s3-put-via-sqs.json")).await;
    assert!(resp.batch_item_failures.is_empty());

    let work = drain(&d, "work-delimited").await;
    assert_eq!(work.len(), 1);
    let w: WorkMessage = serde_json::from_str(&work[0]).unwrap();
    // the notification's key is URL-encoded (`+` is a space); the work message carries it decoded
    assert_eq!(w.key.expose(), "st_marys/2026/11/JOHN SMITH_1984.csv");
    assert_eq!((w.source.as_str(), w.dataset.as_str()), ("st_marys", "encounter"));
    assert_eq!(w.version_id.as_deref(), Some("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"));
    let run = d.meta.get_run(&w.file_id).await.unwrap().unwrap();
    assert_eq!((run.status, run.stage), (Status::Received, Stage::Queued));
    assert!(drain(&d, "work-json").await.is_empty());

    // the same event again (S3 delivers at least once): nothing new is sent
    let resp = ingestion_router::handle(&d, event("s3-put-via-sqs.json")).await;
    assert!(resp.batch_item_failures.is_empty());
    assert!(drain(&d, "work-delimited").await.is_empty());
}

#[tokio::test]
async fn a_batch_with_a_poison_message_retries_only_the_throttled_one() {
    let dir = tempfile::tempdir().unwrap();
    let clean = deps(dir.path()).await;
    // the third message's ledger write is throttled (the first message's write goes through)
    let faults = Faults::new();
    faults.inject("meta.put_run_if_absent", 1, 1, When::Before, true);
    let d = layer::faults::wrap(&clean, &faults);
    let resp = ingestion_router::handle(&d, event("batch-with-poison.json")).await;

    let failed: Vec<&str> = resp.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, vec!["c3-throttled"], "only the transient failure goes back to SQS");
    assert_eq!(drain(&clean, "work-delimited").await.len(), 1, "the good message was routed");
    // the poison message (an HTML error page, not an S3 event) is enveloped once, not retried
    let dlq = drain(&clean, "dlq").await;
    assert_eq!(dlq.len(), 1);
    let env: layer::envelope::FailureEnvelope = serde_json::from_str(&dlq[0]).unwrap();
    assert_eq!((env.function, env.error_kind), (Function::IngestionRouter, ErrorKind::NotAnS3Event));
    assert!(!dlq[0].contains("Bad Gateway"), "a non-JSON original is kept as its size and hash only");
}
