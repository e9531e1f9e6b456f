//! `semi-structured-workflow` (`semi_structured_event_workflow_<family>`): one binary, deployed
//! once per format family. Reads the object named by a work message, runs the transform with the
//! published contract version, writes the canonical Parquet to the raw bucket and the bad and
//! malformed records to quarantine (SSE-KMS, paths derived from the file id so a retry
//! overwrites instead of duplicating), sends a pointer to the bad records to the pii queue, and
//! marks the ledger and the dataset.
//!
//! Boundaries: no AWS types here beyond the layer's ports; the transform stays pure.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use contracts::{Catalog, Contract};
use layer::ledger::{now, Counts, RunRecord, Status};
use layer::pipeline::{handle_batch, Deps, FileCtx, PiiMessage, StageError, WorkMessage};

pub const FUNCTION: &str = "semi-structured-workflow";

/// Environment variables this Lambda needs (checked at cold start; `scripts/check_template.py`
/// proves `template.yaml` sets each of them on both workflow functions).
pub const REQUIRED_ENV: &[&str] = &[
    "LAKE_FORMAT_FAMILY",
    "LAKE_DATASETS_TABLE",
    "LAKE_RUNS_TABLE",
    "LAKE_RAW_BUCKET",
    "LAKE_QUARANTINE_BUCKET",
    "LAKE_KMS_KEY_ID",
    "LAKE_PII_QUEUE_URL",
    "LAKE_DLQ_URL",
    "LAKE_ALERT_TOPIC_ARN",
];

/// The SQS-triggered handler of one format family's queue.
pub async fn handle(deps: &Deps, family: &str, event: SqsEvent) -> SqsBatchResponse {
    let queue = deps.cfg.family_queue(family).to_string();
    handle_batch(deps, FUNCTION, &queue, event, process).await
}

/// Object keys of a file's outputs (no key text: the file id only).
pub fn output_keys(w: &WorkMessage, ingest_date: &str) -> (String, String, String) {
    let part = format!("dataset={}/source={}/ingest_date={}", w.dataset, w.source, ingest_date);
    (
        format!("{part}/{}.parquet", w.file_id),
        format!("bad/{part}/{}.bad.parquet", w.file_id),
        format!("malformed/{part}/{}.malformed.jsonl", w.file_id),
    )
}

async fn process(deps: &Deps, m: SqsMessage) -> Result<(), StageError> {
    let body = m.body.unwrap_or_default();
    let w: WorkMessage = serde_json::from_str(&body)
        .map_err(|e| StageError::permanent("BadWorkMessage", format!("{:?}", e.classify())))?;
    let mut ctx = FileCtx {
        file_id: w.file_id.clone(),
        bucket: w.bucket.clone(),
        key_hash: layer::key_hash(&w.key),
        source: Some(w.source.clone()),
        dataset: Some(w.dataset.clone()),
        first_seen: None,
        key: layer::Phi::new(w.key.clone()),
        version_id: w.version_id.clone(),
    };
    let mut run = deps
        .meta
        .get_run(&w.file_id)
        .await
        .map_err(|e| StageError::port("LedgerReadFailed", e).with_file(&ctx))?
        .unwrap_or_else(|| RunRecord::received(&w.bucket, &w.key, w.version_id.as_deref()));
    ctx.first_seen = Some(run.received_at.clone());
    if run.status == Status::Done {
        tracing::info!(file_id = %w.file_id, "already done: no-op");
        return Ok(());
    }
    tracing::info!(file_id = %w.file_id, key_hash = %ctx.key_hash, "transforming");
    let published = deps
        .meta
        .contract_version(&w.source, w.contract_version)
        .await
        .map_err(|e| StageError::port("MetadataReadFailed", e).with_file(&ctx))?
        .ok_or_else(|| {
            StageError::permanent(
                "ContractMissing",
                format!("contract v{} is not published", w.contract_version),
            )
            .with_file(&ctx)
        })?;
    let catalog = Catalog::builtin();
    let contract = Contract::from_toml_str(
        &published.toml,
        &format!("{} contract v{}", w.source, published.version),
        &catalog,
    )
    .map_err(|e| StageError::permanent("InvalidContract", e.to_string()).with_file(&ctx))?;
    let schema = catalog
        .get(&contract.dataset)
        .cloned()
        .ok_or_else(|| StageError::permanent("UnknownDataset", contract.dataset.clone()).with_file(&ctx))?;
    let data = deps
        .store
        .get(&w.bucket, &w.key, w.version_id.as_deref())
        .await
        .map_err(|e| StageError::port("S3GetFailed", e).with_file(&ctx))?;
    let file_name = w.key.rsplit('/').next().unwrap_or("").to_string();

    let (summary, good, bad, malformed) = tokio::task::spawn_blocking(move || {
        let (mut good, mut bad, mut malformed) = (Vec::new(), Vec::new(), Vec::new());
        let opts = transform::Options::default();
        let s = transform::run(
            &contract,
            &schema,
            &file_name,
            std::io::Cursor::new(data),
            transform::Outputs { good: &mut good, bad: &mut bad, malformed: &mut malformed },
            &opts,
        );
        s.map(|s| (s, good, bad, malformed))
    })
    .await
    .map_err(|e| StageError::permanent("Internal", e.to_string()).with_file(&ctx))?
    .map_err(|e| {
        let mut se = StageError::permanent(e.kind(), e.to_string());
        se.transient = e.retryable();
        se.with_file(&ctx)
    })?;

    let (raw_key, bad_key, malformed_key) = output_keys(&w, run.ingest_date());
    let kms = deps.cfg.kms_key.as_deref();
    deps.store
        .put(&deps.cfg.raw_bucket, &raw_key, good, kms)
        .await
        .map_err(|e| StageError::port("S3PutFailed", e).with_file(&ctx))?;
    let mut outputs = vec![format!("{}/{raw_key}", deps.cfg.raw_bucket)];
    if summary.bad > 0 {
        deps.store
            .put(&deps.cfg.quarantine_bucket, &bad_key, bad, kms)
            .await
            .map_err(|e| StageError::port("S3PutFailed", e).with_file(&ctx))?;
        outputs.push(format!("{}/{bad_key}", deps.cfg.quarantine_bucket));
    }
    if summary.malformed > 0 {
        deps.store
            .put(&deps.cfg.quarantine_bucket, &malformed_key, malformed, kms)
            .await
            .map_err(|e| StageError::port("S3PutFailed", e).with_file(&ctx))?;
        outputs.push(format!("{}/{malformed_key}", deps.cfg.quarantine_bucket));
    }
    if summary.bad > 0 {
        let msg = PiiMessage {
            file_id: w.file_id.clone(),
            source: w.source.clone(),
            dataset: w.dataset.clone(),
            bucket: deps.cfg.quarantine_bucket.clone(),
            bad_key: bad_key.clone(),
            bad_rows: summary.bad,
        };
        let body = serde_json::to_string(&msg)
            .map_err(|e| StageError::permanent("Internal", e.to_string()).with_file(&ctx))?;
        deps.queue
            .send(&deps.cfg.pii_queue, &body)
            .await
            .map_err(|e| StageError::port("QueueSendFailed", e).with_file(&ctx))?;
    }
    run.source = Some(w.source.clone());
    run.dataset = Some(w.dataset.clone());
    run.contract_version = Some(w.contract_version);
    run.status = Status::Done;
    run.stage = if summary.bad > 0 { "matching-pending".into() } else { "workflow".into() };
    run.counts = Counts {
        rows_read: summary.rows_read,
        duplicates: summary.duplicates,
        malformed: summary.malformed,
        good: summary.good,
        bad: summary.bad,
    };
    run.seconds = summary.seconds;
    run.outputs = outputs;
    run.error_kind = None;
    run.error_message = None;
    run.updated_at = now();
    deps.meta.put_run(&run).await.map_err(|e| StageError::port("LedgerWriteFailed", e).with_file(&ctx))?;
    if let Err(e) = deps.meta.set_dataset_status(&w.source, "DONE", &w.file_id).await {
        tracing::warn!(error = %e, "dataset status not updated");
    }
    layer::metrics::emit(
        FUNCTION,
        Some(&w.source),
        &[
            ("FilesDone", 1.0, "Count"),
            ("RowsRead", summary.rows_read as f64, "Count"),
            ("RowsGood", summary.good as f64, "Count"),
            ("RowsBad", summary.bad as f64, "Count"),
            ("RowsMalformed", summary.malformed as f64, "Count"),
            ("TransformSeconds", summary.seconds, "Seconds"),
        ],
    );
    tracing::info!(file_id = %w.file_id, good = summary.good, bad = summary.bad, malformed = summary.malformed, "done");
    Ok(())
}
