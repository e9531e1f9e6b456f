//! Outputs larger than a part go to S3 as multipart uploads (moto): the Parquet arrives whole and
//! encrypted, reads back with every row; a file that fails mid-write leaves no upload behind; an
//! upload dropped half-way is aborted. Run with `bash scripts/test.sh -p semi-structured-workflow
//! --test multipart_moto` (moto on a free port).
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Context, LambdaEvent};
use layer::ledger::{RunRecord, Status};
use layer::multipart::{S3Sink, PART_BYTES};
use layer::pipeline::Deps;
use layer::ports::{ObjectReader, ObjectSink, ObjectStore, ObjectVersion, ObjectWriter, PortError};
use layer::{FormatFamily, Stage};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const SOURCE_KEY: &str = "st_marys/2026/12/large.csv";

/// A st_marys file of `rows` synthetic records (no defects), and what the transform must count.
fn synthetic(toml: &str, rows: u64) -> (Vec<u8>, synth::Manifest) {
    let catalog = contracts::Catalog::builtin();
    let contract = contracts::Contract::from_toml_str(toml, "st_marys", &catalog).unwrap();
    let schema = catalog.get(&contract.dataset).unwrap().clone();
    let opts = synth::Options {
        rows,
        seed: 11,
        defects: synth::Defects { duplicates: 0.0, missing: 0.0, malformed: 0.0 },
        gzip: false,
        fhir_ndjson: false,
    };
    let mut out = Vec::new();
    let manifest = synth::generate(&contract, &schema, &opts, &mut out, &mut |_| {}).unwrap();
    (out, manifest)
}

/// A world with the st_marys contract (as given) published as v1 and `body` uploaded as a file
/// the router has queued.
async fn world_with(toml: &str, body: Vec<u8>) -> (e2e::World, RunRecord) {
    let w = e2e::world().await;
    w.deps.meta.publish_contract("st_marys", "encounter", toml).await.unwrap();
    let v = w.upload(SOURCE_KEY, body, 0).await;
    let mut run = RunRecord::received(&w.ingest_bucket, &SOURCE_KEY.to_string().into(), v.as_deref());
    run.source = Some("st_marys".into());
    run.stage = Stage::Queued;
    w.deps.meta.put_run(&run).await.unwrap();
    (w, run)
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

async fn uploads_in_progress(s3: &aws_sdk_s3::Client, bucket: &str) -> usize {
    s3.list_multipart_uploads().bucket(bucket).send().await.unwrap().uploads().len()
}

async fn object_count(s3: &aws_sdk_s3::Client, bucket: &str) -> usize {
    s3.list_objects_v2().bucket(bucket).send().await.unwrap().contents().len()
}

fn st_marys_toml() -> String {
    std::fs::read_to_string(e2e::root().join("config/sources/st_marys.toml")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parquet_larger_than_a_part_arrives_whole_through_a_multipart_upload() {
    let toml = st_marys_toml();
    let (body, manifest) = synthetic(&toml, 400_000);
    let (w, run) = world_with(&toml, body).await;
    let res = semi_structured_workflow::handle(&w.deps, FormatFamily::Delimited, work_event(&run)).await;
    let done = w.deps.meta.get_run(&run.file_id).await.unwrap();
    assert!(res.batch_item_failures.is_empty(), "{done:#?}");

    let done = w.deps.meta.get_run(&run.file_id).await.unwrap().unwrap();
    assert_eq!(done.status, Status::Done, "{done:#?}");
    assert_eq!(done.counts.good, manifest.expected.good);
    let raw = &w.deps.cfg.raw_bucket;
    let listed = w.s3.list_objects_v2().bucket(raw).send().await.unwrap();
    let [object] = listed.contents() else { panic!("one Parquet expected: {listed:?}") };
    let key = object.key().unwrap();
    let size = object.size().unwrap() as usize;
    assert!(size > PART_BYTES, "the Parquet ({size} bytes) must be larger than one part to test multipart");
    let head = w.s3.head_object().bucket(raw).key(key).send().await.unwrap();
    // an object assembled from N parts has the ETag `"<md5 of the part md5s>-N"`
    let parts = size.div_ceil(PART_BYTES);
    assert!(head.e_tag().unwrap().trim_matches('"').ends_with(&format!("-{parts}")), "{head:?}");
    assert_eq!(head.server_side_encryption().map(|s| s.as_str()), Some("aws:kms"));
    assert_eq!(head.ssekms_key_id(), Some(e2e::KMS_KEY));
    assert_eq!(uploads_in_progress(&w.s3, raw).await, 0);

    // the Parquet reads back with every good row
    let got = w.s3.get_object().bucket(raw).key(key).send().await.unwrap();
    let bytes = got.body.collect().await.unwrap().into_bytes();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap().build().unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows as u64, manifest.expected.good);
}

/// Counts what the transform wrote into each object (to prove parts were uploaded before the
/// failure) and hands everything on.
struct Counting {
    inner: Arc<dyn ObjectStore>,
    written: Arc<AtomicU64>,
}

struct CountingSink {
    inner: ObjectWriter,
    written: Arc<AtomicU64>,
}

impl std::io::Write for CountingSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(data)?;
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[async_trait]
impl ObjectSink for CountingSink {
    fn written(&self) -> u64 {
        self.inner.written()
    }
    fn failure(&self) -> Option<PortError> {
        self.inner.failure()
    }
    async fn commit(self: Box<Self>) -> Result<(), PortError> {
        self.inner.commit().await
    }
    async fn abort(self: Box<Self>) -> Result<(), PortError> {
        self.inner.abort().await
    }
}

#[async_trait]
impl ObjectStore for Counting {
    async fn get(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<Vec<u8>, PortError> {
        self.inner.get(bucket, key, version).await
    }
    async fn open(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<ObjectReader, PortError> {
        self.inner.open(bucket, key, version).await
    }
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, kms: Option<&str>) -> Result<(), PortError> {
        self.inner.put(bucket, key, body, kms).await
    }
    async fn create(&self, bucket: &str, key: &str, kms: Option<&str>) -> Result<ObjectWriter, PortError> {
        let inner = self.inner.create(bucket, key, kms).await?;
        Ok(Box::new(CountingSink { inner, written: self.written.clone() }))
    }
    async fn list_versions(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectVersion>, PortError> {
        self.inner.list_versions(bucket, prefix).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_fails_mid_write_leaves_no_upload_and_no_object() {
    // the contract allows fewer distinct records than the file holds: the transform fails after
    // several row groups (more than two parts) were written
    let toml = format!("{}\n[limits]\nmax_distinct_records = 450000\n", st_marys_toml());
    let (body, _) = synthetic(&toml, 600_000);
    let (w, run) = world_with(&toml, body).await;
    let written = Arc::new(AtomicU64::new(0));
    let counting = Counting { inner: w.deps.store.clone(), written: written.clone() };
    let d = Deps { store: Arc::new(counting), ..w.deps.clone() };
    let res = semi_structured_workflow::handle(&d, FormatFamily::Delimited, work_event(&run)).await;
    assert!(res.batch_item_failures.is_empty(), "a permanent failure goes to the DLQ, not back");

    let failed = d.meta.get_run(&run.file_id).await.unwrap().unwrap();
    assert_eq!(failed.status, Status::Failed, "{failed:#?}");
    assert!(failed.error_message.as_deref().unwrap_or_default().contains("max_distinct_records"));
    let written = written.load(Ordering::Relaxed) as usize;
    assert!(written > 2 * PART_BYTES, "only {written} bytes were written before the failure");
    for bucket in [&w.deps.cfg.raw_bucket, &w.deps.cfg.quarantine_bucket] {
        assert_eq!(uploads_in_progress(&w.s3, bucket).await, 0, "an upload was left in {bucket}");
        assert_eq!(object_count(&w.s3, bucket).await, 0, "an object was left in {bucket}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_dropped_half_way_is_aborted_and_a_small_object_is_one_put() {
    use std::io::Write;
    let w = e2e::world().await;
    let raw = w.deps.cfg.raw_bucket.clone();
    let client = w.s3.clone();
    let (bucket, kms) = (raw.clone(), e2e::KMS_KEY);
    // 12 MiB into 5 MiB parts on the blocking pool, as the transform writes: two parts go up
    let sink = tokio::task::spawn_blocking(move || {
        let mut sink = S3Sink::new(client, &bucket, "half.bin", Some(kms), 5 << 20);
        sink.write_all(&vec![7u8; 12 << 20]).unwrap();
        sink
    });
    let sink = sink.await.unwrap();
    assert_eq!(sink.written(), 12 << 20);
    drop(sink);
    let mut left = usize::MAX;
    for _ in 0..50 {
        left = uploads_in_progress(&w.s3, &raw).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "the dropped upload was not aborted");
    assert_eq!(object_count(&w.s3, &raw).await, 0);

    // under a part: one PutObject, encrypted like the rest
    let mut small = w.deps.store.create(&raw, "small.jsonl", Some(e2e::KMS_KEY)).await.unwrap();
    small.write_all(b"{\"line\": 1}\n").unwrap();
    small.commit().await.unwrap();
    let head = w.s3.head_object().bucket(&raw).key("small.jsonl").send().await.unwrap();
    assert!(!head.e_tag().unwrap().contains('-'), "a single PUT has a plain ETag: {head:?}");
    assert_eq!(head.ssekms_key_id(), Some(e2e::KMS_KEY));
    let got = w.s3.get_object().bucket(&raw).key("small.jsonl").send().await.unwrap();
    assert_eq!(&got.body.collect().await.unwrap().into_bytes()[..], b"{\"line\": 1}\n");
}
