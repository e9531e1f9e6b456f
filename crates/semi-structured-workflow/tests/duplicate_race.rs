//! Two byte-identical files in flight together: the content is claimed right after hashing, so
//! exactly one writes outputs and the other is recorded as its duplicate (`FilesDuplicate`);
//! a FAILED owner's claim is taken over, and an owner that fails after a duplicate was recorded
//! against it still ingests the bytes when redriven. Driven over the local adapters with real
//! SQS event JSON, one handler invocation per file (two Lambda instances).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Context, LambdaEvent};
use layer::faults::{Faults, When};
use layer::ledger::{RunRecord, Status};
use layer::local::{LocalMetadata, LocalNotifier, LocalObjectStore, LocalQueue};
use layer::pipeline::{Deps, PipelineConfig};
use layer::ports::{ObjectReader, ObjectStore, ObjectVersion, ObjectWriter, PortError};
use layer::{FormatFamily, Stage};

const ORIGINAL: (&str, &str) = ("1111aaaa2222bbbb", "st_marys_600.csv");
const RESENT: (&str, &str) = ("3333cccc4444dddd", "resent_friday.csv");
/// The race test's own file ids: the metrics captured are shared by the tests of this binary.
const RACING: [(&str, &str); 2] =
    [("5555eeee6666ffff", "st_marys_600.csv"), ("7777aaaa8888bbbb", "copy.csv")];

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// An object store whose reads wait for each other: both files are being read (and so are in
/// flight) before either is hashed, the overlap two Lambda instances have in production.
struct Together {
    inner: LocalObjectStore,
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

fn store(dir: &Path) -> LocalObjectStore {
    LocalObjectStore::new(dir.join("buckets")).with_bucket("ingest", dir.join("ingest"))
}

/// Local adapters over `dir`: the st_marys contract published as v1, its sample under the names
/// of `files`, and the router's ledger entries for them.
async fn deps(dir: &Path, store: Arc<dyn ObjectStore>, files: [(&str, &str); 2]) -> Deps {
    let sample = std::fs::read(root().join("samples/st_marys/st_marys_600.csv")).unwrap();
    let ingest = dir.join("ingest/st_marys/2026/11");
    std::fs::create_dir_all(&ingest).unwrap();
    let d = Deps {
        store,
        queue: Arc::new(LocalQueue::new(dir.join("queues"))),
        notifier: Arc::new(LocalNotifier::new(dir.join("topics"))),
        meta: Arc::new(LocalMetadata::new(dir.join("meta"))),
        cfg: PipelineConfig {
            queue_delimited: "work-delimited".into(),
            queue_json: "work-json".into(),
            dlq: "dlq".into(),
            alert_topic: "alerts".into(),
            raw_bucket: "raw".into(),
            quarantine_bucket: "quarantine".into(),
            kms_key: None,
            pii_queue: "pii".into(),
        },
    };
    let toml = std::fs::read_to_string(root().join("config/sources/st_marys.toml")).unwrap();
    d.meta.publish_contract("st_marys", "encounter", &toml).await.unwrap();
    for (id, name) in files {
        std::fs::write(ingest.join(name), &sample).unwrap();
        let mut run = RunRecord::received("ingest", &format!("st_marys/2026/11/{name}").into(), None);
        run.file_id = id.into();
        run.source = Some("st_marys".into());
        run.stage = Stage::Queued;
        d.meta.put_run(&run).await.unwrap();
    }
    d
}

/// The work message the router sends for one file, as the SQS event the workflow receives.
fn work_event((id, name): (&str, &str)) -> LambdaEvent<SqsEvent> {
    let body = serde_json::json!({
        "file_id": id, "bucket": "ingest", "key": format!("st_marys/2026/11/{name}"),
        "version_id": null, "source": "st_marys", "dataset": "encounter", "contract_version": 1,
    });
    let ev = serde_json::json!({"Records": [{
        "messageId": format!("m-{id}"), "receiptHandle": format!("r-{id}"), "body": body.to_string(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1764490503000",
                       "SenderId": "AROAROUTER:ingestion-router", "ApproximateFirstReceiveTimestamp": "1764490503010"},
        "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws-us-gov:sqs:us-gov-west-1:123456789012:county-lake-dev-work-delimited",
        "awsRegion": "us-gov-west-1",
    }]});
    LambdaEvent::new(serde_json::from_value(ev).unwrap(), Context::default())
}

fn files_under(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out
}

/// The EMF values of `metric` emitted for `file_id` (the captured lines of every test in this
/// binary are shared: the file id tells them apart).
fn metric(name: &str, file_id: &str) -> Vec<f64> {
    layer::metrics::captured()
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["file_id"] == file_id && v["source"] == "st_marys")
        .filter_map(|v| v[name].as_f64())
        .collect()
}

async fn run_of(d: &Deps, id: &str) -> RunRecord {
    d.meta.get_run(id).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_identical_files_in_flight_together_write_one_set_of_outputs() {
    layer::metrics::capture();
    let dir = tempfile::tempdir().unwrap();
    let together = Arc::new(Together { inner: store(dir.path()), gate: tokio::sync::Barrier::new(2) });
    let d = deps(dir.path(), together, RACING).await;

    let (a, b) = tokio::join!(
        semi_structured_workflow::handle(&d, FormatFamily::Delimited, work_event(RACING[0])),
        semi_structured_workflow::handle(&d, FormatFamily::Delimited, work_event(RACING[1])),
    );
    assert!(a.batch_item_failures.is_empty() && b.batch_item_failures.is_empty());

    let runs = [run_of(&d, RACING[0].0).await, run_of(&d, RACING[1].0).await];
    assert!(runs.iter().all(|r| r.status == Status::Done), "{runs:#?}");
    let owner: Vec<&RunRecord> = runs.iter().filter(|r| r.stage != Stage::Duplicate).collect();
    let dup: Vec<&RunRecord> = runs.iter().filter(|r| r.stage == Stage::Duplicate).collect();
    assert_eq!((owner.len(), dup.len()), (1, 1), "one owner, one duplicate: {runs:#?}");
    let (owner, dup) = (owner[0], dup[0]);
    assert_eq!(dup.duplicate_of.as_deref(), Some(owner.file_id.as_str()));
    assert!(dup.outputs.is_empty() && dup.counts.good == 0, "{dup:#?}");
    assert!(owner.counts.good > 500, "{owner:#?}");

    let raw = files_under(&dir.path().join("buckets/raw"), ".parquet");
    assert_eq!(raw.len(), 1, "exactly one Parquet for the one content: {raw:?}");
    assert!(raw[0].to_string_lossy().contains(&owner.file_id));
    assert_eq!(files_under(&dir.path().join("buckets/quarantine"), ".bad.parquet").len(), 1);
    assert_eq!(d.queue.receive("pii", 10).await.unwrap().len(), 1, "one pii pointer");

    assert_eq!(metric("FilesDuplicate", &dup.file_id), vec![1.0]);
    assert_eq!(metric("FilesDone", &dup.file_id), Vec::<f64>::new());
    assert_eq!(metric("FilesDone", &owner.file_id), vec![1.0]);
    assert_eq!(metric("FilesDuplicate", &owner.file_id), Vec::<f64>::new());
}

/// Processes one work message with the given faults on the ports.
async fn process(d: &Deps, faults: &Arc<Faults>, file: (&str, &str)) {
    let wrapped = layer::faults::wrap(d, faults);
    let resp = semi_structured_workflow::handle(&wrapped, FormatFamily::Delimited, work_event(file)).await;
    assert!(resp.batch_item_failures.is_empty(), "settled, not left for a retry");
}

/// Replays the one failure envelope on the DLQ and processes the work message it sends.
async fn redrive(d: &Deps, file: (&str, &str)) {
    let dlq = d.queue.receive("dlq", 10).await.unwrap();
    assert_eq!(dlq.len(), 1);
    let env: layer::envelope::FailureEnvelope = serde_json::from_str(&dlq[0].body).unwrap();
    assert_eq!(env.file_id, file.0);
    let topo = layer::ops::Topology { ingest_bucket: "ingest".into(), ingest_queue: "ingest".into() };
    layer::ops::replay(d, &topo, &env).await.unwrap();
    d.queue.delete("dlq", &dlq[0].receipt).await.unwrap();
    let work = d.queue.receive("work-delimited", 10).await.unwrap();
    assert_eq!(work.len(), 1);
    assert!(work[0].body.contains(file.0));
    d.queue.delete("work-delimited", &work[0].receipt).await.unwrap();
    process(d, &Faults::new(), file).await;
}

/// A permanent failure writing the Parquet: the file ends FAILED with its envelope on the DLQ.
fn failing_put() -> Arc<Faults> {
    let f = Faults::new();
    f.inject("store.put", 0, 1, When::Before, false);
    f
}

#[tokio::test]
async fn a_failed_owner_is_taken_over_and_becomes_the_duplicate_when_redriven() {
    let dir = tempfile::tempdir().unwrap();
    let d = deps(dir.path(), Arc::new(store(dir.path())), [ORIGINAL, RESENT]).await;
    process(&d, &failing_put(), ORIGINAL).await;
    let failed = run_of(&d, ORIGINAL.0).await;
    assert_eq!(failed.status, Status::Failed, "{failed:#?}");

    // the re-sent copy is not lost as a duplicate of a FAILED file: it takes the content over
    process(&d, &Faults::new(), RESENT).await;
    let resent = run_of(&d, RESENT.0).await;
    assert_eq!((resent.status, resent.stage), (Status::Done, Stage::MatchingPending), "{resent:#?}");
    assert!(resent.counts.good > 500);

    // the original, redriven after the fix, is now the duplicate of the copy
    redrive(&d, ORIGINAL).await;
    let original = run_of(&d, ORIGINAL.0).await;
    assert_eq!((original.status, original.stage), (Status::Done, Stage::Duplicate), "{original:#?}");
    assert_eq!(original.duplicate_of.as_deref(), Some(RESENT.0));
    let raw = files_under(&dir.path().join("buckets/raw"), ".parquet");
    assert_eq!(raw.len(), 1, "{raw:?}");
    assert!(raw[0].to_string_lossy().contains(RESENT.0));
}

#[tokio::test]
async fn an_owner_that_fails_after_its_duplicate_was_recorded_still_ingests_when_redriven() {
    let dir = tempfile::tempdir().unwrap();
    let d = deps(dir.path(), Arc::new(store(dir.path())), [ORIGINAL, RESENT]).await;
    // the original has claimed the bytes and is still writing its outputs ...
    let sha = {
        use sha2::Digest;
        let bytes = std::fs::read(root().join("samples/st_marys/st_marys_600.csv")).unwrap();
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    assert_eq!(d.meta.claim_content("st_marys", &sha, ORIGINAL.0).await.unwrap(), ORIGINAL.0);
    // ... when the copy arrives: it is recorded as the duplicate of the file in flight
    process(&d, &Faults::new(), RESENT).await;
    let resent = run_of(&d, RESENT.0).await;
    assert_eq!((resent.stage, resent.duplicate_of.as_deref()), (Stage::Duplicate, Some(ORIGINAL.0)));
    // the original then fails for good: FAILED, its envelope on the DLQ, its claim kept
    process(&d, &failing_put(), ORIGINAL).await;
    assert_eq!(run_of(&d, ORIGINAL.0).await.status, Status::Failed);
    assert!(files_under(&dir.path().join("buckets/raw"), ".parquet").is_empty());
    // redriven, it runs as the owner again: the bytes are ingested once
    redrive(&d, ORIGINAL).await;
    let original = run_of(&d, ORIGINAL.0).await;
    assert_eq!((original.status, original.stage), (Status::Done, Stage::MatchingPending), "{original:#?}");
    let raw = files_under(&dir.path().join("buckets/raw"), ".parquet");
    assert_eq!(raw.len(), 1, "{raw:?}");
    assert!(raw[0].to_string_lossy().contains(ORIGINAL.0));
}
