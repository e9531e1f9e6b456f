//! `ingestion-router` (`handle_s3_event_ingestion`): the first stage. Takes S3 ObjectCreated
//! notifications (via SQS, or directly), records each object version in the ledger with a
//! conditional put (a duplicate event is a no-op), finds the source from the key prefix and its
//! published contract, and sends a work message to the contract's format-family queue.
//!
//! The NDJSON parts of a FHIR Bulk Data export (a contract with `export`) get no work message:
//! they are held in the ledger (RECEIVED, stage `awaiting-manifest`) until the export's manifest,
//! routed like any file, has the workflow join them.
//!
//! Boundaries: decides and dispatches only; it never reads the object's content. Logs carry the
//! file id and key hash, never the key.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsMessage};
use contracts::{Catalog, Contract, Format};
use layer::ledger::{now, PublishedContract, RunRecord, Status};
use layer::pipeline::{handle_batch, Deps, FileCtx, SqsInvocation, StageError, WorkMessage};
use layer::s3event::{self, CreatedObject};
use layer::{ErrorKind, Function, Stage};

pub const FUNCTION: Function = Function::IngestionRouter;

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
pub async fn handle(deps: &Deps, invocation: SqsInvocation) -> SqsBatchResponse {
    handle_batch(deps, FUNCTION, "ingest", invocation, route_message).await
}

async fn route_message(deps: &Deps, m: SqsMessage) -> Result<(), StageError> {
    let body = m.body.unwrap_or_default();
    let objects =
        s3event::parse(&body).map_err(|e| StageError::permanent(ErrorKind::NotAnS3Event, e.to_string()))?;
    for o in &objects {
        route_object(deps, o).await?;
    }
    Ok(())
}

/// Routes one created object version: ledger first (a duplicate event is a no-op), then the
/// checks on the object and its source, then the work message to the contract's family queue.
pub async fn route_object(deps: &Deps, o: &CreatedObject) -> Result<(), StageError> {
    let run = RunRecord::received(&o.bucket, &o.key, o.version_id.as_deref());
    layer::telemetry::set_file_id(&run.file_id);
    let mut ctx = FileCtx {
        file_id: run.file_id.clone(),
        bucket: o.bucket.clone(),
        key_hash: run.key_hash.clone(),
        first_seen: Some(run.received_at.clone()),
        key: o.key.clone(),
        version_id: o.version_id.clone(),
        ..Default::default()
    };
    let Some(mut run) = claim(deps, run, &mut ctx).await? else {
        return Ok(());
    };
    tracing::info!(file_id = %run.file_id, key_hash = %run.key_hash, "routing");
    let source = check_object(o).map_err(|e| e.with_file(&ctx))?;
    let published = published_contract(deps, &source).await.map_err(|e| e.with_file(&ctx))?;
    ctx.source = Some(source.clone());
    ctx.dataset = Some(published.dataset.clone());
    let contract = parse_contract(&published, &source, o).map_err(|e| e.with_file(&ctx))?;
    if is_export_part(&contract, o) {
        run.source = Some(source);
        run.dataset = Some(contract.dataset);
        run.contract_version = Some(published.version);
        return hold(deps, run).await.map_err(|e| e.with_file(&ctx));
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
        .map_err(|e| StageError::permanent(ErrorKind::Internal, e.to_string()).with_file(&ctx))?;
    deps.queue
        .send(deps.cfg.family_queue(contract.format.family()), &body)
        .await
        .map_err(|e| StageError::port(ErrorKind::QueueSendFailed, e).with_file(&ctx))?;
    run.source = Some(source);
    run.dataset = Some(contract.dataset);
    run.contract_version = Some(published.version);
    run.stage = Stage::Queued;
    run.updated_at = now();
    deps.meta
        .put_run(&run)
        .await
        .map_err(|e| StageError::port(ErrorKind::LedgerWriteFailed, e).with_file(&ctx))?;
    layer::metrics::emit(FUNCTION.as_str(), run.source.as_deref(), &[("FilesRouted", 1.0, "Count")]);
    Ok(())
}

/// A file of a FHIR Bulk Data export other than its manifest.
fn is_export_part(contract: &Contract, o: &CreatedObject) -> bool {
    matches!(&contract.format, Format::FhirBundle { export: Some(e), .. } if o.key.file_name() != e.manifest)
}

/// Holds an export part until its manifest arrives: RECEIVED at stage `awaiting-manifest`, no
/// work message (the manifest's workflow lists the export folder and joins the parts). A part
/// the join already marked DONE (its event came late) stays DONE.
async fn hold(deps: &Deps, mut run: RunRecord) -> Result<(), StageError> {
    run.stage = Stage::AwaitingManifest;
    run.updated_at = now();
    // one conditional write: a join that marks the part DONE between a read and a write here
    // would otherwise be overwritten, and the part would look stuck to the audit
    let held = deps
        .meta
        .put_run_unless_done(&run)
        .await
        .map_err(|e| StageError::port(ErrorKind::LedgerWriteFailed, e))?;
    if !held {
        tracing::info!(file_id = %run.file_id, "export part already joined: no-op");
        return Ok(());
    }
    layer::metrics::emit(FUNCTION.as_str(), run.source.as_deref(), &[("FilesHeld", 1.0, "Count")]);
    tracing::info!(file_id = %run.file_id, key_hash = %run.key_hash, "export part held until its manifest arrives");
    Ok(())
}

/// Records the object version in the ledger (conditional put). `None` when an earlier delivery
/// already dispatched it (a duplicate event); the entry to carry on with otherwise.
async fn claim(deps: &Deps, run: RunRecord, ctx: &mut FileCtx) -> Result<Option<RunRecord>, StageError> {
    let fresh = deps
        .meta
        .put_run_if_absent(&run)
        .await
        .map_err(|e| StageError::port(ErrorKind::LedgerWriteFailed, e).with_file(ctx))?;
    if fresh {
        return Ok(Some(run));
    }
    match deps
        .meta
        .get_run(&run.file_id)
        .await
        .map_err(|e| StageError::port(ErrorKind::LedgerReadFailed, e).with_file(ctx))?
    {
        // seen and dispatched (or finished, or failed and not redriven): a duplicate event
        Some(r) if !(r.status == Status::Received && r.stage == Stage::Router) => {
            tracing::info!(file_id = %r.file_id, status = r.status.as_str(), "duplicate event: no-op");
            Ok(None)
        }
        // seen but the work message may not have gone out: carry on (the workflow is idempotent)
        Some(r) => {
            ctx.first_seen = Some(r.received_at.clone());
            Ok(Some(r))
        }
        None => Ok(Some(run)),
    }
}

/// The object must be a non-empty file under a `<source>/` prefix; returns the source.
fn check_object(o: &CreatedObject) -> Result<String, StageError> {
    if o.key.is_folder() {
        return Err(StageError::permanent(
            ErrorKind::FolderMarker,
            "the object is a folder marker, not a file",
        ));
    }
    if o.size == Some(0) {
        return Err(StageError::permanent(ErrorKind::EmptyObject, "the object is empty (0 bytes)"));
    }
    match o.key.expose().split_once('/') {
        Some((s, rest)) if !s.is_empty() && !rest.is_empty() => Ok(s.to_string()),
        _ => Err(StageError::permanent(ErrorKind::KeyOutsideSource, "the key has no `<source>/` prefix")),
    }
}

/// The source's published contract.
async fn published_contract(deps: &Deps, source: &str) -> Result<PublishedContract, StageError> {
    // until a contract vouches for it, the first path segment is just key text (it may be PHI)
    deps.meta
        .current_contract(source)
        .await
        .map_err(|e| StageError::port(ErrorKind::MetadataReadFailed, e))?
        .ok_or_else(|| {
            StageError::permanent(
                ErrorKind::UnknownSource,
                format!(
                    "no published contract for the key's first path segment (hash {})",
                    layer::key_hash(source)
                ),
            )
        })
}

/// The published contract parsed, and checked to cover the key.
fn parse_contract(
    published: &PublishedContract,
    source: &str,
    o: &CreatedObject,
) -> Result<Contract, StageError> {
    let origin = format!("{source} contract v{}", published.version);
    let contract = Contract::from_toml_str(&published.toml, &origin, &Catalog::builtin())
        .map_err(|e| StageError::permanent(ErrorKind::InvalidContract, e.to_string()))?;
    if !contract.keys.iter().any(|p| o.key.expose().starts_with(p.as_str())) {
        return Err(StageError::permanent(
            ErrorKind::KeyOutsideContract,
            format!("the key matches none of {origin}'s key prefixes"),
        ));
    }
    Ok(contract)
}

/// Direct S3 invocation (compatibility with buckets that notify the Lambda itself): routes every
/// object, failing the invocation on the first error so Lambda's async retries apply. Each object
/// is routed in a correlation scope, as a queued message is: its log lines and metrics carry the
/// invocation's request id and the file id.
pub async fn handle_s3(deps: &Deps, request_id: &str, body: &str) -> Result<(), StageError> {
    let objects =
        s3event::parse(body).map_err(|e| StageError::permanent(ErrorKind::NotAnS3Event, e.to_string()))?;
    for o in objects {
        let scope = layer::telemetry::MessageScope::new(Function::IngestionRouter, request_id, request_id);
        scope.run(route_object(deps, &o)).await.inspect_err(|e| {
            tracing::error!(kind = %e.kind, "direct S3 invocation failed; Lambda retries it");
        })?;
    }
    Ok(())
}
