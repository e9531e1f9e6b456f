//! The duplicate race through emulated AWS (moto: S3, DynamoDB, SQS): two byte-identical
//! objects read at the same time by two workflow invocations; the content claim is a
//! conditional DynamoDB write, so exactly one writes its Parquet and the other is recorded as
//! its duplicate (`FilesDuplicate`). Then the FAILED-owner takeover runs as a DynamoDB
//! transaction. Needs moto (`bash scripts/test.sh`); fails without it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Context, LambdaEvent};
use layer::ledger::{RunRecord, Status};
use layer::pipeline::Deps;
use layer::ports::{ObjectReader, ObjectStore, ObjectVersion, ObjectWriter, PortError};
use layer::{FormatFamily, Stage};

/// Reads wait for each other: both objects are in flight together.
struct Together {
    inner: Arc<dyn ObjectStore>,
    gate: tokio::sync::Barrier,
}

#[async_trait]
impl ObjectStore for Together {
    async fn get(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<Vec<u8>, PortError> {
        self.inner.get(bucket, key, version).await
    }
    async fn open(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<ObjectReader, PortError> {
        self.gate.wait().await;
        self.inner.open(bucket, key, version).await
    }
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, kms: Option<&str>) -> Result<(), PortError> {
        self.inner.put(bucket, key, body, kms).await
    }
    async fn create(&self, bucket: &str, key: &str, kms: Option<&str>) -> Result<ObjectWriter, PortError> {
        self.inner.create(bucket, key, kms).await
    }
    async fn list_versions(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectVersion>, PortError> {
        self.inner.list_versions(bucket, prefix).await
    }
}

fn work_event(run: &RunRecord) -> LambdaEvent<SqsEvent> {
    let body = serde_json::json!({
        "file_id": run.file_id, "bucket": run.bucket, "key": run.key.expose(),
        "version_id": run.version_id, "source": "st_marys", "dataset": "encounter", "contract_version": 1,
    });
    let ev = serde_json::json!({"Records": [{
        "messageId": format!("m-{}", run.file_id), "receiptHandle": "r", "body": body.to_string(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1764490503000",
                       "SenderId": "AROAROUTER:ingestion-router", "ApproximateFirstReceiveTimestamp": "1764490503010"},
        "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws-us-gov:sqs:us-gov-west-1:123456789012:work-delimited", "awsRegion": "us-gov-west-1",
    }]});
    LambdaEvent::new(serde_json::from_value(ev).unwrap(), Context::default())
}

/// Uploads the st_marys sample under `keys` and writes the router's ledger entry of each.
async fn files(w: &e2e::World, keys: &[&str]) -> Vec<RunRecord> {
    let sample = std::fs::read(e2e::root().join("samples/st_marys/st_marys_600.csv")).unwrap();
    let mut runs = vec![];
    for key in keys {
        let v = w.upload(key, sample.clone(), 0).await;
        let mut run = RunRecord::received(&w.ingest_bucket, &key.to_string().into(), v.as_deref());
        run.source = Some("st_marys".into());
        run.stage = Stage::Queued;
        w.deps.meta.put_run(&run).await.unwrap();
        runs.push(run);
    }
    runs
}

async fn world() -> e2e::World {
    let w = e2e::world().await;
    let toml = std::fs::read_to_string(e2e::root().join("config/sources/st_marys.toml")).unwrap();
    w.deps.meta.publish_contract("st_marys", "encounter", &toml).await.unwrap();
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_identical_objects_in_flight_together_write_one_parquet_through_moto() {
    layer::metrics::capture();
    let w = world().await;
    let runs = files(&w, &["st_marys/2026/11/st_marys_600.csv", "st_marys/2026/11/resent.csv"]).await;
    let together = Together { inner: w.deps.store.clone(), gate: tokio::sync::Barrier::new(2) };
    let d = Deps { store: Arc::new(together), ..w.deps.clone() };
    let (a, b) = tokio::join!(
        semi_structured_workflow::handle(&d, FormatFamily::Delimited, work_event(&runs[0])),
        semi_structured_workflow::handle(&d, FormatFamily::Delimited, work_event(&runs[1])),
    );
    assert!(a.batch_item_failures.is_empty() && b.batch_item_failures.is_empty());

    let mut after = vec![];
    for r in &runs {
        after.push(d.meta.get_run(&r.file_id).await.unwrap().unwrap());
    }
    assert!(after.iter().all(|r| r.status == Status::Done), "{after:#?}");
    let owner: Vec<&RunRecord> = after.iter().filter(|r| r.stage != Stage::Duplicate).collect();
    let dup: Vec<&RunRecord> = after.iter().filter(|r| r.stage == Stage::Duplicate).collect();
    assert_eq!((owner.len(), dup.len()), (1, 1), "{after:#?}");
    assert_eq!(dup[0].duplicate_of.as_deref(), Some(owner[0].file_id.as_str()));
    let listed = w.s3.list_objects_v2().bucket(&w.deps.cfg.raw_bucket).send().await.unwrap();
    assert_eq!(listed.contents().len(), 1, "one Parquet for the one content");
    assert_eq!(w.drain_all(&w.deps.cfg.pii_queue.clone()).await.len(), 1, "one pii pointer");
    let dup_metric: Vec<serde_json::Value> = layer::metrics::captured()
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["file_id"] == dup[0].file_id.as_str())
        .collect();
    assert_eq!(dup_metric.iter().filter_map(|v| v["FilesDuplicate"].as_f64()).collect::<Vec<_>>(), vec![1.0]);
    assert!(dup_metric.iter().all(|v| v.get("FilesDone").is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_owners_claim_is_taken_over_in_one_dynamodb_transaction() {
    let w = world().await;
    let runs = files(&w, &["st_marys/a.csv", "st_marys/b.csv"]).await;
    let sha = "0".repeat(64);
    let meta = &w.deps.meta;
    assert_eq!(meta.claim_content("st_marys", &sha, &runs[0].file_id).await.unwrap(), runs[0].file_id);
    // the owner is in flight: no takeover
    assert!(!meta.take_over_content("st_marys", &sha, &runs[0].file_id, &runs[1].file_id).await.unwrap());
    // the owner FAILED: the claim moves, once
    let mut failed = runs[0].clone();
    failed.status = Status::Failed;
    meta.put_run(&failed).await.unwrap();
    assert!(meta.take_over_content("st_marys", &sha, &runs[0].file_id, &runs[1].file_id).await.unwrap());
    assert_eq!(
        meta.content_owner("st_marys", &sha).await.unwrap().as_deref(),
        Some(runs[1].file_id.as_str())
    );
    assert!(!meta.take_over_content("st_marys", &sha, &runs[0].file_id, "third").await.unwrap());
    assert_eq!(
        meta.content_owner("st_marys", &sha).await.unwrap().as_deref(),
        Some(runs[1].file_id.as_str())
    );
}
