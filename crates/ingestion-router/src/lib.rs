//! `ingestion-router` (`handle_s3_event_ingestion`): the first stage. Takes S3 ObjectCreated
//! notifications (via SQS, or directly), records each object version in the ledger with a
//! conditional put (a duplicate event is a no-op), finds the source from the key prefix and its
//! published contract, and sends a work message to the contract's format-family queue.
//!
//! Boundaries: decides and dispatches only; it never reads the object's content. Logs carry the
//! file id and key hash, never the key.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use contracts::{Catalog, Contract};
use layer::ledger::{now, RunRecord, Status};
use layer::pipeline::{handle_batch, Deps, FileCtx, StageError, WorkMessage};
use layer::s3event::{self, CreatedObject};

pub const FUNCTION: &str = "ingestion-router";

/// Environment variables this Lambda needs (checked at cold start; `scripts/check_template.py`
/// proves `template.yaml` sets each of them on the function).
pub const REQUIRED_ENV: &[&str] = &[
    "LAKE_DATASETS_TABLE",
    "LAKE_RUNS_TABLE",
    "LAKE_QUEUE_DELIMITED",
    "LAKE_QUEUE_JSON",
    "LAKE_DLQ_URL",
    "LAKE_ALERT_TOPIC_ARN",
];

/// The SQS-triggered handler: every message is an S3 notification.
pub async fn handle(deps: &Deps, event: SqsEvent) -> SqsBatchResponse {
    handle_batch(deps, FUNCTION, "ingest", event, route_message).await
}

async fn route_message(deps: &Deps, m: SqsMessage) -> Result<(), StageError> {
    let body = m.body.unwrap_or_default();
    let objects = s3event::parse(&body).map_err(|e| StageError::permanent("NotAnS3Event", e.to_string()))?;
    for o in &objects {
        route_object(deps, o).await?;
    }
    Ok(())
}

/// Routes one created object version.
pub async fn route_object(deps: &Deps, o: &CreatedObject) -> Result<(), StageError> {
    let mut run = RunRecord::received(&o.bucket, &o.key, o.version_id.as_deref());
    let mut ctx = FileCtx {
        file_id: run.file_id.clone(),
        bucket: o.bucket.clone(),
        key_hash: run.key_hash.clone(),
        first_seen: Some(run.received_at.clone()),
        key: layer::Phi::new(o.key.clone()),
        version_id: o.version_id.clone(),
        ..Default::default()
    };
    let fresh = deps
        .meta
        .put_run_if_absent(&run)
        .await
        .map_err(|e| StageError::port("LedgerWriteFailed", e).with_file(&ctx))?;
    if !fresh {
        match deps
            .meta
            .get_run(&run.file_id)
            .await
            .map_err(|e| StageError::port("LedgerReadFailed", e).with_file(&ctx))?
        {
            // seen and dispatched (or finished, or failed and not redriven): a duplicate event
            Some(r) if !(r.status == Status::Received && r.stage == "router") => {
                tracing::info!(file_id = %r.file_id, status = r.status.as_str(), "duplicate event: no-op");
                return Ok(());
            }
            // seen but the work message may not have gone out: carry on (the workflow is idempotent)
            Some(r) => {
                ctx.first_seen = Some(r.received_at.clone());
                run = r;
            }
            None => {}
        }
    }
    tracing::info!(file_id = %run.file_id, key_hash = %run.key_hash, "routing");
    if o.key.ends_with('/') {
        return Err(StageError::permanent("FolderMarker", "the object is a folder marker, not a file")
            .with_file(&ctx));
    }
    if o.size == Some(0) {
        return Err(StageError::permanent("EmptyObject", "the object is empty (0 bytes)").with_file(&ctx));
    }
    let source = match o.key.split_once('/') {
        Some((s, rest)) if !s.is_empty() && !rest.is_empty() => s.to_string(),
        _ => {
            return Err(StageError::permanent("KeyOutsideSource", "the key has no `<source>/` prefix")
                .with_file(&ctx))
        }
    };
    // until a contract vouches for it, the first path segment is just key text (it may be PHI)
    let published = deps
        .meta
        .current_contract(&source)
        .await
        .map_err(|e| StageError::port("MetadataReadFailed", e).with_file(&ctx))?
        .ok_or_else(|| {
            StageError::permanent(
                "UnknownSource",
                format!(
                    "no published contract for the key's first path segment (hash {})",
                    layer::key_hash(&source)
                ),
            )
            .with_file(&ctx)
        })?;
    ctx.source = Some(source.clone());
    ctx.dataset = Some(published.dataset.clone());
    let origin = format!("{source} contract v{}", published.version);
    let contract = Contract::from_toml_str(&published.toml, &origin, &Catalog::builtin())
        .map_err(|e| StageError::permanent("InvalidContract", e.to_string()).with_file(&ctx))?;
    if !contract.keys.iter().any(|p| o.key.starts_with(p.as_str())) {
        return Err(StageError::permanent(
            "KeyOutsideContract",
            format!("the key matches none of {origin}'s key prefixes"),
        )
        .with_file(&ctx));
    }
    let work = WorkMessage {
        file_id: run.file_id.clone(),
        bucket: o.bucket.clone(),
        key: o.key.clone(),
        version_id: o.version_id.clone(),
        source: source.clone(),
        dataset: contract.dataset.clone(),
        contract_version: published.version,
    };
    let body = serde_json::to_string(&work)
        .map_err(|e| StageError::permanent("Internal", e.to_string()).with_file(&ctx))?;
    deps.queue
        .send(deps.cfg.family_queue(contract.format.family().as_str()), &body)
        .await
        .map_err(|e| StageError::port("QueueSendFailed", e).with_file(&ctx))?;
    run.source = Some(source);
    run.dataset = Some(contract.dataset);
    run.contract_version = Some(published.version);
    run.stage = "queued".into();
    run.updated_at = now();
    deps.meta.put_run(&run).await.map_err(|e| StageError::port("LedgerWriteFailed", e).with_file(&ctx))?;
    layer::metrics::emit(FUNCTION, run.source.as_deref(), &[("FilesRouted", 1.0, "Count")]);
    Ok(())
}

/// Direct S3 invocation (compatibility with buckets that notify the Lambda itself): routes every
/// object, failing the invocation on the first error so Lambda's async retries apply.
pub async fn handle_s3(deps: &Deps, body: &str) -> Result<(), StageError> {
    for o in s3event::parse(body).map_err(|e| StageError::permanent("NotAnS3Event", e.to_string()))? {
        route_object(deps, &o).await?;
    }
    Ok(())
}
