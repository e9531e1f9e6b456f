//! The workflow's handler driven with real SQS event JSON (work messages as the router sends them)
//! over the local adapters, without the runtime: the Parquet written is read back.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Context, LambdaEvent};
use layer::faults::{Faults, When};
use layer::ledger::{RunRecord, Status};
use layer::local::LocalObjectStore;
use layer::pipeline::{Deps, PiiMessage};
use layer::{ErrorKind, FormatFamily, Stage};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn event() -> LambdaEvent<SqsEvent> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/events/work-via-sqs.json");
    let ev: SqsEvent = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    LambdaEvent::new(ev, Context::default())
}

/// Local adapters: the st_marys contract published as v1, its sample file (twice) in `ingest`.
async fn deps(dir: &Path) -> Deps {
    let sample = std::fs::read(root().join("samples/st_marys/st_marys_600.csv")).unwrap();
    let ingest = dir.join("ingest/st_marys/2026/11");
    std::fs::create_dir_all(&ingest).unwrap();
    std::fs::write(ingest.join("st_marys_600.csv"), &sample).unwrap();
    std::fs::write(ingest.join("copy.csv"), &sample).unwrap();
    let store = LocalObjectStore::new(dir.join("buckets")).with_bucket("ingest", dir.join("ingest"));
    let d = layer::local::local_deps(dir, store);
    let toml = std::fs::read_to_string(root().join("config/sources/st_marys.toml")).unwrap();
    d.meta.publish_contract("st_marys", "encounter", &toml).await.unwrap();
    // the router's ledger entries for the two files the work messages name
    for (id, name) in [("5b1e0c9d2f3a4b6c", "st_marys_600.csv"), ("9a8b7c6d5e4f3a2b", "copy.csv")] {
        let mut run = RunRecord::received("ingest", &format!("st_marys/2026/11/{name}").into(), None);
        run.file_id = id.into();
        run.stage = Stage::Queued;
        d.meta.put_run(&run).await.unwrap();
    }
    d
}

#[tokio::test]
async fn work_messages_become_parquet_and_a_poison_message_is_enveloped_once() {
    let dir = tempfile::tempdir().unwrap();
    let clean = deps(dir.path()).await;
    // the third message's object read is throttled once
    let faults = Faults::new();
    faults.inject("store.get", 1, 1, When::Before, true);
    let d = layer::faults::wrap(&clean, &faults);
    let resp = semi_structured_workflow::handle(&d, FormatFamily::Delimited, event()).await;

    let failed: Vec<&str> = resp.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, vec!["w-3-slow-s3"]);

    // the good message: canonical Parquet in raw, bad rows in quarantine, a pointer on the pii queue
    let run = clean.meta.get_run("5b1e0c9d2f3a4b6c").await.unwrap().unwrap();
    assert_eq!((run.status, run.stage), (Status::Done, Stage::MatchingPending));
    let raw = dir.path().join("buckets/raw").join(run.outputs[0].trim_start_matches("raw/"));
    let rows: usize = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&raw).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(rows as u64, run.counts.good);
    assert!(rows > 500, "{rows}");
    let pii = clean.queue.receive("pii", 10).await.unwrap();
    assert_eq!(pii.len(), 1);
    let p: PiiMessage = serde_json::from_str(&pii[0].body).unwrap();
    assert_eq!((p.file_id.as_str(), p.bad_rows), ("5b1e0c9d2f3a4b6c", run.counts.bad));

    // the truncated message is enveloped (permanent), the throttled one is not
    let dlq = clean.queue.receive("dlq", 10).await.unwrap();
    assert_eq!(dlq.len(), 1);
    let env: layer::envelope::FailureEnvelope = serde_json::from_str(&dlq[0].body).unwrap();
    assert_eq!(env.error_kind, ErrorKind::BadWorkMessage);
    assert_eq!(env.source_queue, "work-delimited");
    let waiting = clean.meta.get_run("9a8b7c6d5e4f3a2b").await.unwrap().unwrap();
    assert_eq!((waiting.status, waiting.stage), (Status::Received, Stage::Queued), "left for the retry");
}
