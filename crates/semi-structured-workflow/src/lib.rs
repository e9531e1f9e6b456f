//! `semi-structured-workflow` (`semi_structured_event_workflow_<family>`): one binary, deployed
//! once per format family. Reads the object named by a work message, runs the transform with the
//! published contract version, writes the canonical Parquet to the raw bucket and the bad and
//! malformed records to quarantine (SSE-KMS, paths derived from the file id so a retry
//! overwrites instead of duplicating), sends a pointer to the bad records to the pii queue, and
//! marks the ledger and the dataset. Memory stays flat whatever the file's size: the object is
//! read as a stream and the outputs are written while it is read (on S3 as multipart uploads),
//! visible only once committed. The object's SHA-256 is computed while it is read and the bytes
//! are claimed for the file before any output is committed: a file byte-identical to one of the
//! same source that is DONE or in flight is recorded as its duplicate and its outputs are
//! aborted (unless the contract sets `allow_resend`); a FAILED owner's claim is taken over.
//!
//! A FHIR Bulk Data export (a contract with `export`) is transformed when its manifest's work
//! message arrives: the export folder is listed (S3 is the source of truth, not the order of
//! events), a part not there yet fails the manifest transiently (`ExportIncomplete`: SQS retries,
//! then the DLQ, and `lake redrive` once the parts are in), otherwise the parts are joined into one
//! set of outputs under the manifest's file id and each part is marked DONE at stage `joined`.
//!
//! Boundaries: no AWS types here beyond the layer's ports; the transform stays pure.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsMessage};
use contracts::{CanonicalSchema, Catalog, Contract, FhirExport, Format};
use layer::ledger::{now, Counts, RunRecord, Status};
use layer::pipeline::{handle_batch, Deps, FileCtx, PiiMessage, SqsInvocation, StageError, WorkMessage};
use layer::ports::ObjectWriter;
use layer::{ErrorKind, FormatFamily, Function, Stage};

pub const FUNCTION: Function = Function::SemiStructuredWorkflow;

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
pub async fn handle(deps: &Deps, family: FormatFamily, invocation: SqsInvocation) -> SqsBatchResponse {
    let queue = deps.cfg.family_queue(family).to_string();
    handle_batch(deps, FUNCTION, &queue, invocation, process).await
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

/// The three outputs, written while the transform runs (on S3 as multipart uploads once they
/// pass a part): nothing is visible until committed, and an aborted one leaves nothing behind.
struct Sinks {
    good: ObjectWriter,
    bad: ObjectWriter,
    malformed: ObjectWriter,
}

impl Sinks {
    async fn create(deps: &Deps, w: &WorkMessage, ingest_date: &str) -> Result<Self, StageError> {
        let (raw_key, bad_key, malformed_key) = output_keys(w, ingest_date);
        let kms = deps.cfg.kms_key.as_deref();
        let create = |bucket: &str, key: String| {
            let bucket = bucket.to_string();
            async move {
                deps.store
                    .create(&bucket, &key, kms)
                    .await
                    .map_err(|e| StageError::port(ErrorKind::S3PutFailed, e))
            }
        };
        Ok(Self {
            good: create(&deps.cfg.raw_bucket, raw_key).await?,
            bad: create(&deps.cfg.quarantine_bucket, bad_key).await?,
            malformed: create(&deps.cfg.quarantine_bucket, malformed_key).await?,
        })
    }

    /// The store's own refusal, when one of them failed while being written.
    fn failure(&self) -> Option<layer::ports::PortError> {
        [&self.good, &self.bad, &self.malformed].into_iter().find_map(|s| s.failure())
    }

    /// Discards all three after the transform failed with `e`; the error to report: the store's
    /// own refusal when a sink failed (retryable when it is), otherwise the transform's.
    async fn fail(self, e: transform::TransformError) -> StageError {
        let store_failure = self.failure();
        self.abort().await;
        if let Some(pe) = store_failure {
            return StageError::port(ErrorKind::S3PutFailed, pe);
        }
        let mut se = StageError::permanent(transform_kind(&e), e.to_string());
        se.transient = e.retryable();
        se
    }

    /// Discards all three (on S3: aborts their multipart uploads and waits for that).
    async fn abort(self) {
        for sink in [self.good, self.bad, self.malformed] {
            if let Err(e) = sink.abort().await {
                tracing::warn!(error = %e, "output not discarded");
            }
        }
    }
}

/// What the transform did, the SHA-256 of the object's bytes (hex) computed while reading them,
/// and its outputs, written but not yet committed.
struct Transformed {
    summary: transform::Summary,
    sha256: String,
    sinks: Sinks,
}

async fn process(deps: &Deps, m: SqsMessage) -> Result<(), StageError> {
    let body = m.body.unwrap_or_default();
    let w: WorkMessage = serde_json::from_str(&body)
        .map_err(|e| StageError::permanent(ErrorKind::BadWorkMessage, format!("{:?}", e.classify())))?;
    layer::telemetry::set_file_id(&w.file_id);
    let mut ctx = FileCtx {
        file_id: w.file_id.clone(),
        bucket: w.bucket.clone(),
        key_hash: w.key.hash(),
        source: Some(w.source.clone()),
        dataset: Some(w.dataset.clone()),
        first_seen: None,
        key: w.key.clone(),
        version_id: w.version_id.clone(),
    };
    let mut run = deps
        .meta
        .get_run(&w.file_id)
        .await
        .map_err(|e| StageError::port(ErrorKind::LedgerReadFailed, e).with_file(&ctx))?
        .unwrap_or_else(|| RunRecord::received(&w.bucket, &w.key, w.version_id.as_deref()));
    ctx.first_seen = Some(run.received_at.clone());
    if run.status == Status::Done {
        tracing::info!(file_id = %w.file_id, "already done: no-op");
        return Ok(());
    }
    tracing::info!(file_id = %w.file_id, key_hash = %ctx.key_hash, "transforming");
    let (contract, schema) = contract_of(deps, &w).await.map_err(|e| e.with_file(&ctx))?;
    if let Format::FhirBundle { export: Some(export), .. } = &contract.format {
        let export = export.clone();
        return process_export(deps, &w, &mut run, contract, schema, export)
            .await
            .map_err(|e| e.with_file(&ctx));
    }
    let allow_resend = contract.allow_resend;
    let data = deps
        .store
        .open(&w.bucket, w.key.expose(), w.version_id.as_deref())
        .await
        .map_err(|e| StageError::port(ErrorKind::S3GetFailed, e).with_file(&ctx))?;
    let sinks = Sinks::create(deps, &w, run.ingest_date()).await.map_err(|e| e.with_file(&ctx))?;
    let Transformed { summary, sha256, sinks } =
        run_transform(contract, schema, w.key.file_name().to_string(), data, sinks)
            .await
            .map_err(|e| e.with_file(&ctx))?;
    run.sha256 = Some(sha256.clone());
    // the content is claimed before any output is committed: of two files with the same bytes
    // in flight together, only the claim's owner's outputs become visible
    let original = match claim(deps, &w, &sha256).await {
        Ok(original) => original,
        Err(e) => {
            sinks.abort().await;
            return Err(e.with_file(&ctx));
        }
    };
    if let Some(original) = original.filter(|_| !allow_resend) {
        sinks.abort().await;
        return record_duplicate(deps, &w, &mut run, original).await.map_err(|e| e.with_file(&ctx));
    }
    run.outputs =
        write_outputs(deps, &w, run.ingest_date(), sinks, &summary).await.map_err(|e| e.with_file(&ctx))?;
    finish(deps, &w, &mut run, &summary).await.map_err(|e| e.with_file(&ctx))
}

/// How often a claim is looked at again when a FAILED owner's claim moves away under us.
const CLAIM_ROUNDS: usize = 3;

/// Claims these bytes for this file; returns the file this one duplicates, or `None` when this
/// file owns them and writes the outputs. The owner is whoever claimed first: DONE, or in flight
/// (it holds the same bytes and either ends DONE or fails into the DLQ, and a redrive of it runs
/// as the owner again). A FAILED owner's claim is taken over in one atomic step that also checks
/// it is still FAILED, so this file is ingested instead of being lost as a duplicate of nothing;
/// if the owner is redriven later it becomes this file's duplicate.
async fn claim(deps: &Deps, w: &WorkMessage, sha256: &str) -> Result<Option<String>, StageError> {
    let write = |e| StageError::port(ErrorKind::LedgerWriteFailed, e);
    for _ in 0..CLAIM_ROUNDS {
        let owner = deps.meta.claim_content(&w.source, sha256, &w.file_id).await.map_err(write)?;
        if owner == w.file_id {
            return Ok(None);
        }
        if owner.is_empty() {
            continue; // the claim read back empty (a write racing ours): look again
        }
        let owner_status = deps
            .meta
            .get_run(&owner)
            .await
            .map_err(|e| StageError::port(ErrorKind::LedgerReadFailed, e))?
            .map(|r| r.status);
        if owner_status != Some(Status::Failed) {
            // DONE, in flight, or claimed by a file the ledger does not show yet (in flight)
            return Ok(Some(owner));
        }
        if deps.meta.take_over_content(&w.source, sha256, &owner, &w.file_id).await.map_err(write)? {
            tracing::info!(file_id = %w.file_id, failed_owner = %owner, "took over the content of a FAILED file");
            return Ok(None);
        }
    }
    Err(StageError::of_kind(
        ErrorKind::LedgerWriteFailed,
        "the content claim kept changing hands: retrying later",
    ))
}

/// Records the file as a duplicate of `original`: DONE at stage `duplicate`, no outputs, no rows.
async fn record_duplicate(
    deps: &Deps,
    w: &WorkMessage,
    run: &mut RunRecord,
    original: String,
) -> Result<(), StageError> {
    run.source = Some(w.source.clone());
    run.dataset = Some(w.dataset.clone());
    run.contract_version = Some(w.contract_version);
    run.status = Status::Done;
    run.stage = Stage::Duplicate;
    run.counts = Counts::default();
    run.outputs = vec![];
    run.duplicate_of = Some(original.clone());
    run.error_kind = None;
    run.error_message = None;
    run.updated_at = now();
    deps.meta.put_run(run).await.map_err(|e| StageError::port(ErrorKind::LedgerWriteFailed, e))?;
    if let Err(e) = deps.meta.set_dataset_status(&w.source, Status::Done, &w.file_id).await {
        tracing::warn!(error = %e, "dataset status not updated");
    }
    layer::metrics::emit(FUNCTION.as_str(), Some(&w.source), &[("FilesDuplicate", 1.0, "Count")]);
    tracing::info!(file_id = %w.file_id, duplicate_of = %original, "duplicate of a file with the same bytes: nothing written");
    Ok(())
}

/// A reader that hashes every byte it hands on (SHA-256).
struct Sha256Reader<R> {
    inner: R,
    hash: sha2::Sha256,
}

impl<R: std::io::Read> std::io::Read for Sha256Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

impl<R: std::io::Read> Sha256Reader<R> {
    fn new(inner: R) -> Self {
        use sha2::Digest;
        Self { inner, hash: sha2::Sha256::new() }
    }

    /// Reads what the transform left unread (a trailer) and returns the hex digest of it all.
    fn finish(mut self) -> std::io::Result<String> {
        use sha2::Digest;
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok(hex::encode(self.hash.finalize()))
    }
}

/// The contract version the work message names, parsed, and its canonical schema.
async fn contract_of(deps: &Deps, w: &WorkMessage) -> Result<(Contract, CanonicalSchema), StageError> {
    let published = deps
        .meta
        .contract_version(&w.source, w.contract_version)
        .await
        .map_err(|e| StageError::port(ErrorKind::MetadataReadFailed, e))?
        .ok_or_else(|| {
            StageError::permanent(
                ErrorKind::ContractMissing,
                format!("contract v{} is not published", w.contract_version),
            )
        })?;
    let catalog = Catalog::builtin();
    let origin = format!("{} contract v{}", w.source, published.version);
    let contract = Contract::from_toml_str(&published.toml, &origin, &catalog)
        .map_err(|e| StageError::permanent(ErrorKind::InvalidContract, e.to_string()))?;
    let schema = catalog
        .get(&contract.dataset)
        .cloned()
        .ok_or_else(|| StageError::permanent(ErrorKind::UnknownDataset, contract.dataset.clone()))?;
    Ok((contract, schema))
}

/// The stage's kind of a transform failure (same texts as the transform's own kinds).
fn transform_kind(e: &transform::TransformError) -> ErrorKind {
    use transform::TransformError as T;
    match e {
        T::EmptyInput => ErrorKind::EmptyInput,
        T::Header(_) => ErrorKind::HeaderMismatch,
        T::Encoding(_) => ErrorKind::UnsupportedContent,
        T::Structure(_) => ErrorKind::BrokenStructure,
        T::Read(_) => ErrorKind::ReadFailed,
        T::Write(_) => ErrorKind::WriteFailed,
        T::Internal(_) => ErrorKind::Internal,
    }
}

/// Runs the (CPU-bound) transform on the blocking pool, reading the object as it streams in
/// (workbooks and FHIR bundles are held whole by their readers, up to `max_in_memory_bytes`) and
/// writing the outputs into `sinks` as it goes. On failure the sinks are aborted; a failure of
/// the store behind them is reported as the store's (retryable when it is), not the transform's.
async fn run_transform(
    contract: Contract,
    schema: CanonicalSchema,
    file_name: String,
    data: layer::ports::ObjectReader,
    mut sinks: Sinks,
) -> Result<Transformed, StageError> {
    let (sinks, result) = tokio::task::spawn_blocking(move || {
        let opts = transform::Options::default();
        let mut input = Sha256Reader::new(data);
        let summary = transform::run(
            &contract,
            &schema,
            &file_name,
            &mut input,
            transform::Outputs {
                good: &mut *sinks.good,
                bad: &mut *sinks.bad,
                malformed: &mut *sinks.malformed,
            },
            &opts,
        );
        let result = summary.and_then(|summary| {
            let sha256 = input.finish().map_err(|e| transform::TransformError::Read(e.to_string()))?;
            Ok((summary, sha256))
        });
        (sinks, result)
    })
    .await
    .map_err(|e| StageError::permanent(ErrorKind::Internal, e.to_string()))?;
    match result {
        Ok((summary, sha256)) => Ok(Transformed { summary, sha256, sinks }),
        Err(e) => Err(sinks.fail(e).await),
    }
}

/// Commits the canonical Parquet, and the bad rows and the malformed records when there are any
/// (the empty ones are discarded), and sends the pointer to the bad rows to the pii queue.
/// Returns where the outputs went.
async fn write_outputs(
    deps: &Deps,
    w: &WorkMessage,
    ingest_date: &str,
    sinks: Sinks,
    s: &transform::Summary,
) -> Result<Vec<String>, StageError> {
    let (raw_key, bad_key, malformed_key) = output_keys(w, ingest_date);
    let (raw, quarantine) = (&deps.cfg.raw_bucket, &deps.cfg.quarantine_bucket);
    let plan = [
        (sinks.good, true, raw, &raw_key),
        (sinks.bad, s.bad > 0, quarantine, &bad_key),
        (sinks.malformed, s.malformed > 0, quarantine, &malformed_key),
    ];
    let (mut outputs, mut failed) = (Vec::new(), None);
    for (sink, keep, bucket, key) in plan {
        if !keep || failed.is_some() {
            if let Err(e) = sink.abort().await {
                tracing::warn!(error = %e, "output not discarded");
            }
            continue;
        }
        match sink.commit().await {
            Ok(()) => outputs.push(format!("{bucket}/{key}")),
            Err(e) => failed = Some(e),
        }
    }
    if let Some(e) = failed {
        return Err(StageError::port(ErrorKind::S3PutFailed, e));
    }
    if s.bad > 0 {
        let msg = PiiMessage {
            file_id: w.file_id.clone(),
            source: w.source.clone(),
            dataset: w.dataset.clone(),
            bucket: deps.cfg.quarantine_bucket.clone(),
            bad_key: bad_key.clone(),
            bad_rows: s.bad,
        };
        let body = serde_json::to_string(&msg)
            .map_err(|e| StageError::permanent(ErrorKind::Internal, e.to_string()))?;
        deps.queue
            .send(&deps.cfg.pii_queue, &body)
            .await
            .map_err(|e| StageError::port(ErrorKind::QueueSendFailed, e))?;
    }
    Ok(outputs)
}

/// Marks the ledger DONE with the counts (stage `matching-pending` when bad rows wait for
/// matching), the dataset's last status, and the metrics.
async fn finish(
    deps: &Deps,
    w: &WorkMessage,
    run: &mut RunRecord,
    s: &transform::Summary,
) -> Result<(), StageError> {
    run.source = Some(w.source.clone());
    run.dataset = Some(w.dataset.clone());
    run.contract_version = Some(w.contract_version);
    run.status = Status::Done;
    run.stage = if s.bad > 0 { Stage::MatchingPending } else { Stage::Workflow };
    run.counts = Counts {
        rows_read: s.rows_read,
        duplicates: s.duplicates,
        malformed: s.malformed,
        good: s.good,
        bad: s.bad,
    };
    run.seconds = s.seconds;
    run.error_kind = None;
    run.error_message = None;
    run.updated_at = now();
    deps.meta.put_run(run).await.map_err(|e| StageError::port(ErrorKind::LedgerWriteFailed, e))?;
    if let Err(e) = deps.meta.set_dataset_status(&w.source, Status::Done, &w.file_id).await {
        tracing::warn!(error = %e, "dataset status not updated");
    }
    layer::metrics::emit(
        FUNCTION.as_str(),
        Some(&w.source),
        &[
            ("FilesDone", 1.0, "Count"),
            ("RowsRead", s.rows_read as f64, "Count"),
            ("RowsGood", s.good as f64, "Count"),
            ("RowsBad", s.bad as f64, "Count"),
            ("RowsMalformed", s.malformed as f64, "Count"),
            ("TransformSeconds", s.seconds, "Seconds"),
        ],
    );
    tracing::info!(file_id = %w.file_id, good = s.good, bad = s.bad, malformed = s.malformed, "done");
    Ok(())
}

/// A FHIR Bulk Data export's manifest: its parts (listed in the folder) joined into one set of
/// outputs; each part marked DONE `joined`, the manifest last. A part's own work message (a
/// replay) only holds it again.
async fn process_export(
    deps: &Deps,
    w: &WorkMessage,
    run: &mut RunRecord,
    contract: Contract,
    schema: CanonicalSchema,
    export: FhirExport,
) -> Result<(), StageError> {
    let folder = w.key.expose().rsplit_once('/').map_or("", |(f, _)| f).to_string() + "/";
    if w.key.file_name() != export.manifest {
        run.stage = Stage::AwaitingManifest;
        run.updated_at = now();
        // a DONE written by the manifest's join meanwhile stays DONE
        deps.meta
            .put_run_unless_done(run)
            .await
            .map_err(|e| StageError::port(ErrorKind::LedgerWriteFailed, e))?;
        return Ok(());
    }
    let manifest = read_manifest(deps, w).await?;
    let (parts, not_read) = manifest.parts(&export.types);
    let latest = latest_versions(deps, &w.bucket, &folder).await?;
    let missing = parts.iter().filter(|p| !latest.contains_key(&format!("{folder}{}", p.file_name))).count();
    if missing > 0 {
        return Err(StageError::of_kind(
            ErrorKind::ExportIncomplete,
            format!("{missing} of {} parts of the export have not arrived", parts.len()),
        ));
    }
    let mut inputs = Vec::with_capacity(parts.len());
    for p in &parts {
        let key = format!("{folder}{}", p.file_name);
        let data = deps
            .store
            .open(&w.bucket, &key, latest[&key].as_deref())
            .await
            .map_err(|e| StageError::port(ErrorKind::S3GetFailed, e))?;
        inputs.push((p.resource_type.clone(), data));
    }
    let sinks = Sinks::create(deps, w, run.ingest_date()).await?;
    let mut t = run_export(contract, schema, w.key.file_name().to_string(), inputs, sinks).await?;
    t.summary.skipped += not_read;
    run.outputs = write_outputs(deps, w, run.ingest_date(), t.sinks, &t.summary).await?;
    // every file the manifest lists that is in the folder (parts read, types not read, error
    // files) is settled: its rows, if any, are in the manifest's outputs
    let listed =
        manifest.output.iter().chain(&manifest.error).filter_map(|f| transform::bulk::file_name(&f.url).ok());
    for name in listed {
        let key = format!("{folder}{name}");
        if let Some(version) = latest.get(&key) {
            mark_joined(deps, w, &key, version.as_deref()).await?;
        }
    }
    finish(deps, w, run, &t.summary).await
}

/// The manifest's bytes (at most `MAX_MANIFEST_BYTES`), parsed.
async fn read_manifest(deps: &Deps, w: &WorkMessage) -> Result<transform::bulk::Manifest, StageError> {
    use std::io::Read;
    let data = deps
        .store
        .open(&w.bucket, w.key.expose(), w.version_id.as_deref())
        .await
        .map_err(|e| StageError::port(ErrorKind::S3GetFailed, e))?;
    tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::new();
        data.take(transform::bulk::MAX_MANIFEST_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(|e| {
            StageError::of_kind(ErrorKind::ReadFailed, layer::sanitize::port_text(&e.to_string()))
        })?;
        transform::bulk::Manifest::parse(&bytes).map_err(|e| StageError::permanent(ErrorKind::BadManifest, e))
    })
    .await
    .map_err(|e| StageError::permanent(ErrorKind::Internal, e.to_string()))?
}

/// The latest version of every object under `prefix` (`None`: an unversioned bucket).
async fn latest_versions(
    deps: &Deps,
    bucket: &str,
    prefix: &str,
) -> Result<std::collections::HashMap<String, Option<String>>, StageError> {
    let versions = deps
        .store
        .list_versions(bucket, prefix)
        .await
        .map_err(|e| StageError::port(ErrorKind::S3GetFailed, e))?;
    Ok(versions
        .into_iter()
        .filter(|v| v.is_latest)
        .map(|v| (v.key.expose().to_string(), v.version_id))
        .collect())
}

/// Marks one file of an export DONE at stage `joined`, pointing at the manifest's file id.
async fn mark_joined(
    deps: &Deps,
    w: &WorkMessage,
    key: &str,
    version: Option<&str>,
) -> Result<(), StageError> {
    let id = layer::ledger::file_id(&w.bucket, key, version);
    let mut part = deps
        .meta
        .get_run(&id)
        .await
        .map_err(|e| StageError::port(ErrorKind::LedgerReadFailed, e))?
        .unwrap_or_else(|| RunRecord::received(&w.bucket, &key.to_string().into(), version));
    part.source = Some(w.source.clone());
    part.dataset = Some(w.dataset.clone());
    part.contract_version = Some(w.contract_version);
    part.status = Status::Done;
    part.stage = Stage::Joined;
    part.joined_into = Some(w.file_id.clone());
    part.error_kind = None;
    part.error_message = None;
    part.updated_at = now();
    deps.meta.put_run(&part).await.map_err(|e| StageError::port(ErrorKind::LedgerWriteFailed, e))
}

/// Runs the export's transform on the blocking pool, its parts streaming in and its outputs
/// written into `sinks` (aborted on failure, as in `run_transform`).
async fn run_export(
    contract: Contract,
    schema: CanonicalSchema,
    file_name: String,
    parts: Vec<(String, layer::ports::ObjectReader)>,
    mut sinks: Sinks,
) -> Result<Transformed, StageError> {
    let (sinks, result) = tokio::task::spawn_blocking(move || {
        let parts = parts
            .into_iter()
            .map(|(resource_type, input)| transform::ExportPart { resource_type, input })
            .collect();
        let summary = transform::run_export(
            &contract,
            &schema,
            &file_name,
            parts,
            transform::Outputs {
                good: &mut *sinks.good,
                bad: &mut *sinks.bad,
                malformed: &mut *sinks.malformed,
            },
            &transform::Options::default(),
        );
        (sinks, summary)
    })
    .await
    .map_err(|e| StageError::permanent(ErrorKind::Internal, e.to_string()))?;
    match result {
        Ok(summary) => Ok(Transformed { summary, sha256: String::new(), sinks }),
        Err(e) => Err(sinks.fail(e).await),
    }
}
