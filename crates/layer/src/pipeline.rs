//! What every pipeline stage shares: its dependencies (ports + config, built once per cold
//! start), the stage error with its stable kind, and the SQS batch loop with the retry / DLQ /
//! alert / ledger rules. A stage only writes `process(deps, message)`.

use std::future::Future;
use std::sync::Arc;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};

use crate::config::{self, names, MissingVar};
use crate::envelope::FailureEnvelope;
use crate::ledger::{now, RunRecord, Status};
use crate::ports::{Metadata, Notifier, ObjectStore, PortError, Queue};
use crate::protocol::{ErrorKind, FormatFamily, Function, Stage};
use crate::ObjectKey;

/// 1 delivery + 3 retries: on the 4th receive a stage gives up and writes the envelope.
pub const MAX_RECEIVES: u32 = 4;

/// Names of the resources a stage uses (queue URLs, bucket names, table names, topic ARN).
#[derive(Debug, Clone, Default)]
pub struct PipelineConfig {
    pub queue_delimited: String,
    pub queue_json: String,
    pub dlq: String,
    pub alert_topic: String,
    pub raw_bucket: String,
    pub quarantine_bucket: String,
    pub kms_key: Option<String>,
    pub pii_queue: String,
}

impl PipelineConfig {
    /// The router's configuration, from the environment.
    pub fn router_from_env() -> Result<Self, MissingVar> {
        Ok(Self {
            queue_delimited: config::var(names::QUEUE_DELIMITED)?,
            queue_json: config::var(names::QUEUE_JSON)?,
            dlq: config::var(names::DLQ_URL)?,
            alert_topic: config::var(names::ALERT_TOPIC_ARN)?,
            ..Default::default()
        })
    }

    /// A workflow's configuration, from the environment.
    pub fn workflow_from_env() -> Result<Self, MissingVar> {
        Ok(Self {
            dlq: config::var(names::DLQ_URL)?,
            alert_topic: config::var(names::ALERT_TOPIC_ARN)?,
            raw_bucket: config::var(names::RAW_BUCKET)?,
            quarantine_bucket: config::var(names::QUARANTINE_BUCKET)?,
            kms_key: Some(config::var(names::KMS_KEY_ID)?),
            pii_queue: config::var(names::PII_QUEUE_URL)?,
            ..Default::default()
        })
    }

    /// The work queue of a format family.
    pub fn family_queue(&self, family: FormatFamily) -> &str {
        match family {
            FormatFamily::Json => &self.queue_json,
            FormatFamily::Delimited => &self.queue_delimited,
        }
    }
}

/// The ports and configuration a stage runs with.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn ObjectStore>,
    pub queue: Arc<dyn Queue>,
    pub notifier: Arc<dyn Notifier>,
    pub meta: Arc<dyn Metadata>,
    pub cfg: PipelineConfig,
}

impl Deps {
    /// AWS adapters for everything, from the environment (tables named by env vars).
    pub async fn aws(cfg: PipelineConfig) -> Result<Self, MissingVar> {
        let sdk = crate::aws::sdk_config().await;
        Self::on_sdk(&sdk, cfg, config::var(names::DATASETS_TABLE)?)
    }

    /// AWS adapters on an SDK config the caller also uses for other clients. The runs table
    /// comes from the environment; `datasets_table` may be empty for a stage that reads no
    /// contracts.
    pub fn on_sdk(
        sdk: &aws_config::SdkConfig,
        cfg: PipelineConfig,
        datasets_table: String,
    ) -> Result<Self, MissingVar> {
        Ok(Self {
            store: Arc::new(crate::aws::S3Store { client: crate::aws::s3(sdk) }),
            queue: Arc::new(crate::aws::SqsQueue { client: crate::aws::sqs(sdk) }),
            notifier: Arc::new(crate::aws::SnsNotifier { client: crate::aws::sns(sdk) }),
            meta: Arc::new(crate::aws::DynamoMetadata {
                client: crate::aws::dynamodb(sdk),
                runs_table: config::var(names::RUNS_TABLE)?,
                datasets_table,
            }),
            cfg,
        })
    }
}

/// The file a failure is about (known once the message is parsed).
#[derive(Debug, Clone, Default)]
pub struct FileCtx {
    pub file_id: String,
    pub bucket: String,
    pub key_hash: String,
    pub source: Option<String>,
    pub dataset: Option<String>,
    pub first_seen: Option<String>,
    /// The object key, kept to rebuild a ledger entry that a failure left missing; prints as
    /// its hash.
    pub key: ObjectKey,
    pub version_id: Option<String>,
}

/// A stage's failure: a stable kind, a message without row values or object keys, and whether
/// a retry can help.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct StageError {
    pub kind: ErrorKind,
    pub message: String,
    pub transient: bool,
    /// Boxed: most failures carry it, and it keeps `Result<_, StageError>` small.
    pub file: Option<Box<FileCtx>>,
}

impl StageError {
    /// A failure a retry cannot help (the message, the file or its contract is the problem).
    pub fn permanent(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), transient: false, file: None }
    }

    /// A failure whose retry-ability is the kind's own ([`ErrorKind::transient`]).
    pub fn of_kind(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), transient: kind.transient(), file: None }
    }

    /// An outside service failed: the port's own judgement says whether to retry, and its text is
    /// sanitised (AWS error texts can quote ARNs and URLs that contain the object key).
    pub fn port(kind: ErrorKind, e: PortError) -> Self {
        Self { kind, message: crate::sanitize::port_text(&e.to_string()), transient: e.transient, file: None }
    }

    pub fn with_file(mut self, f: &FileCtx) -> Self {
        if self.file.is_none() {
            self.file = Some(Box::new(f.clone()));
        }
        self
    }
}

/// What the Lambda runtime reports for a failed invocation: the stable kind as `errorType`, and
/// the kind again at the start of `errorMessage` (an asynchronous invocation's DLQ record keeps
/// only the message). The message is the stage's own, already free of keys and values.
impl From<&StageError> for lambda_runtime::Diagnostic {
    fn from(e: &StageError) -> Self {
        lambda_runtime::Diagnostic { error_type: e.kind.as_str().into(), error_message: e.to_string() }
    }
}

impl From<StageError> for lambda_runtime::Diagnostic {
    fn from(e: StageError) -> Self {
        Self::from(&e)
    }
}

pub fn receive_count(m: &SqsMessage) -> u32 {
    m.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse().ok()).unwrap_or(1)
}

/// The handler's batch, as `lambda_runtime` hands it over: the SQS event and the invocation's
/// context (its request id correlates every log line and metric of the batch).
pub type SqsInvocation = lambda_runtime::LambdaEvent<SqsEvent>;

/// What [`handle_batch`] does with a failed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Report it as a batch item failure: SQS delivers it again.
    Retry,
    /// Envelope to the DLQ, alert, ledger FAILED; the message is consumed.
    GiveUp,
}

/// The retry rule: a transient failure before the last allowed receive is retried, anything else
/// is given up.
pub fn disposition(e: &StageError, attempts: u32) -> Disposition {
    if e.transient && attempts < MAX_RECEIVES {
        Disposition::Retry
    } else {
        Disposition::GiveUp
    }
}

/// Runs `process` on every message of an SQS batch. A transient failure before the last attempt
/// is reported as a batch item failure (SQS redelivers it); a permanent failure, or any failure
/// on the last attempt, writes the envelope to the DLQ, raises the alert and marks the ledger
/// FAILED, and the message is consumed. If even that fails, the item is reported as failed so
/// SQS keeps it (and its redrive policy moves it to the DLQ).
pub async fn handle_batch<'a, F, Fut>(
    deps: &'a Deps,
    function: Function,
    source_queue: &str,
    invocation: SqsInvocation,
    process: F,
) -> SqsBatchResponse
where
    F: Fn(&'a Deps, SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), StageError>>,
{
    let request_id = invocation.context.request_id.clone();
    let mut failures = Vec::new();
    for m in invocation.payload.records {
        let id = m.message_id.clone().unwrap_or_default();
        let attempts = receive_count(&m);
        let body = m.body.clone().unwrap_or_default();
        let scope = crate::telemetry::MessageScope::new(function, &request_id, &id);
        let keep = scope
            .run(async {
                let Err(e) = process(deps, m).await else { return false };
                if disposition(&e, attempts) == Disposition::Retry {
                    tracing::warn!(kind = %e.kind, attempts, "transient failure, will retry");
                    return true;
                }
                tracing::error!(kind = %e.kind, attempts, "giving up: envelope to DLQ");
                if let Err(fe) = fail(deps, function, source_queue, &e, attempts, body).await {
                    let error = crate::sanitize::error_text(&fe);
                    tracing::error!(%error, "could not record the failure; SQS keeps the message");
                    return true;
                }
                false
            })
            .await;
        if keep {
            failures.push(item_failure(id));
        }
    }
    let mut r = SqsBatchResponse::default();
    r.batch_item_failures = failures;
    r
}

fn item_failure(id: String) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id;
    f
}

/// Envelope to the DLQ, alert to SNS, ledger FAILED. The envelope is what must not be lost: the
/// alert and the ledger are best effort after it. The error text is sanitised once more here
/// (a no-op for [`StageError::port`]'s), so whatever a stage wrote, no ARN, URL or quoted key
/// reaches the envelope, the alert or the ledger; the ports' own failures are logged sanitised.
pub async fn fail(
    deps: &Deps,
    function: Function,
    source_queue: &str,
    e: &StageError,
    attempts: u32,
    original: String,
) -> Result<(), PortError> {
    let f = e.file.as_deref().cloned().unwrap_or_default();
    let message = crate::sanitize::port_text(&e.message);
    let env = FailureEnvelope {
        file_id: f.file_id.clone(),
        bucket: f.bucket.clone(),
        key_hash: f.key_hash.clone(),
        dataset: f.dataset.clone(),
        source: f.source.clone(),
        function,
        error_kind: e.kind,
        error_message: message.clone(),
        attempts,
        first_seen: f.first_seen.clone().unwrap_or_else(now),
        failed_at: now(),
        source_queue: source_queue.into(),
        original_message: redact_message(&original),
    };
    let body = serde_json::to_string(&env)
        .map_err(|x| PortError::new("envelope", "serialise", x.to_string(), false))?;
    crate::metrics::emit(function.as_str(), f.source.as_deref(), &[("FilesFailed", 1.0, "Count")]);
    deps.queue.send(&deps.cfg.dlq, &body).await?;
    let (subject, text) = env.alert();
    if let Err(x) = deps.notifier.publish(&deps.cfg.alert_topic, &subject, &text).await {
        tracing::error!(error = %crate::sanitize::error_text(&x), "alert not sent");
    }
    if !f.file_id.is_empty() {
        let mut run = match deps.meta.get_run(&f.file_id).await {
            Ok(Some(r)) => r,
            _ => {
                let mut r = RunRecord::received(&f.bucket, &f.key, f.version_id.as_deref());
                r.file_id = f.file_id.clone();
                r.key_hash = f.key_hash.clone();
                r.source = f.source.clone();
                r.dataset = f.dataset.clone();
                r
            }
        };
        run.status = Status::Failed;
        run.stage = Stage::from(function);
        run.error_kind = Some(e.kind);
        run.error_message = Some(message);
        run.attempts = attempts;
        run.updated_at = now();
        if let Err(x) = deps.meta.put_run(&run).await {
            tracing::error!(error = %crate::sanitize::error_text(&x), "ledger not updated");
        }
        if let Some(src) = &f.source {
            let _ = deps.meta.set_dataset_status(src, Status::Failed, &f.file_id).await;
        }
    }
    Ok(())
}

/// The original message as the envelope keeps it: object keys (which can carry a patient's name)
/// replaced by their hash, anything that is not JSON replaced by its size and hash. `lake redrive`
/// rebuilds the message from the ledger, which keeps the key under encryption and access control.
pub fn redact_message(original: &str) -> String {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k == "key" || k == "bad_key" {
                        if let serde_json::Value::String(s) = x {
                            *x = serde_json::Value::String(format!("redacted:{}", crate::key_hash(s)));
                        }
                    } else {
                        walk(x);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    match serde_json::from_str::<serde_json::Value>(original) {
        Ok(mut v) => {
            walk(&mut v);
            v.to_string()
        }
        Err(_) => format!(
            "redacted: non-JSON message of {} bytes, sha256 {}",
            original.len(),
            crate::key_hash(original)
        ),
    }
}

/// The message a router sends to a workflow queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkMessage {
    pub file_id: String,
    pub bucket: String,
    pub key: ObjectKey,
    pub version_id: Option<String>,
    pub source: String,
    pub dataset: String,
    pub contract_version: u32,
}

/// The message a workflow sends to the pii queue: where the bad records are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PiiMessage {
    pub file_id: String,
    pub source: String,
    pub dataset: String,
    pub bucket: String,
    pub bad_key: String,
    pub bad_rows: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashMap;

    use super::*;
    use crate::faults::{Faults, When};
    use crate::local::{LocalMetadata, LocalNotifier, LocalObjectStore, LocalQueue};

    fn local(dir: &std::path::Path) -> Deps {
        Deps {
            store: Arc::new(LocalObjectStore::new(dir.join("buckets"))),
            queue: Arc::new(LocalQueue::new(dir.join("queues"))),
            notifier: Arc::new(LocalNotifier::new(dir.join("topics"))),
            meta: Arc::new(LocalMetadata::new(dir.join("meta"))),
            cfg: PipelineConfig { dlq: "dlq".into(), alert_topic: "alerts".into(), ..Default::default() },
        }
    }

    /// A batch of (message id, body, receive count).
    fn batch(msgs: &[(&str, &str, u32)]) -> SqsInvocation {
        let mut ev = SqsEvent::default();
        ev.records = msgs
            .iter()
            .map(|(id, body, n)| {
                let mut m = SqsMessage::default();
                m.message_id = Some((*id).into());
                m.body = Some((*body).into());
                m.attributes = HashMap::from([("ApproximateReceiveCount".into(), n.to_string())]);
                m
            })
            .collect();
        let mut ctx = lambda_runtime::Context::default();
        ctx.request_id = "req-1".into();
        lambda_runtime::LambdaEvent::new(ev, ctx)
    }

    /// The stage under test: the body names its outcome; `file` messages carry a file context.
    async fn stage(_d: &Deps, m: SqsMessage) -> Result<(), StageError> {
        let file = FileCtx {
            file_id: "f1".into(),
            bucket: "ingest".into(),
            key: ObjectKey::new("src/JOHN_SMITH.csv"),
            source: Some("src".into()),
            ..Default::default()
        };
        match m.body.as_deref() {
            Some("ok") => Ok(()),
            Some("transient") => Err(StageError::port(
                ErrorKind::S3GetFailed,
                PortError::new("s3", "GetObject", "SlowDown", true),
            )),
            Some("permanent") => {
                Err(StageError::permanent(ErrorKind::HeaderMismatch, "expected 3 columns").with_file(&file))
            }
            _ => Err(StageError::permanent(ErrorKind::BadWorkMessage, "not JSON")),
        }
    }

    fn dlq(d: &Deps) -> Vec<FailureEnvelope> {
        futures_lite(async {
            let mut out = Vec::new();
            for m in d.queue.receive("dlq", 10).await.unwrap() {
                out.push(serde_json::from_str(&m.body).unwrap());
            }
            out
        })
    }

    fn futures_lite<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    fn failed_ids(r: &SqsBatchResponse) -> Vec<&str> {
        r.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect()
    }

    #[test]
    fn the_retry_rule_retries_transient_failures_until_the_last_receive() {
        let t = StageError::port(ErrorKind::S3GetFailed, PortError::new("s3", "GetObject", "x", true));
        let p = StageError::permanent(ErrorKind::UnknownSource, "x");
        assert_eq!(disposition(&t, 1), Disposition::Retry);
        assert_eq!(disposition(&t, MAX_RECEIVES - 1), Disposition::Retry);
        assert_eq!(disposition(&t, MAX_RECEIVES), Disposition::GiveUp);
        assert_eq!(disposition(&p, 1), Disposition::GiveUp);
    }

    #[test]
    fn a_batch_retries_only_its_transient_failures_and_envelopes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let d = local(dir.path());
        let r = futures_lite(handle_batch(
            &d,
            Function::SemiStructuredWorkflow,
            "work-delimited",
            batch(&[
                ("m-ok", "ok", 1),
                ("m-t1", "transient", 1),
                ("m-p", "permanent", 1),
                ("m-t4", "transient", 4),
            ]),
            stage,
        ));
        // only the transient failure with retries left goes back to SQS
        assert_eq!(failed_ids(&r), vec!["m-t1"]);
        let envs = dlq(&d);
        assert_eq!(envs.len(), 2, "the permanent failure and the exhausted transient one");
        let p = envs.iter().find(|e| e.error_kind == ErrorKind::HeaderMismatch).unwrap();
        assert_eq!((p.file_id.as_str(), p.attempts, p.function), ("f1", 1, Function::SemiStructuredWorkflow));
        assert_eq!(p.source_queue, "work-delimited");
        let t = envs.iter().find(|e| e.error_kind == ErrorKind::S3GetFailed).unwrap();
        assert_eq!(t.attempts, 4);
        // the file's ledger entry is FAILED at the function that gave up; the key is kept there only
        let run = futures_lite(d.meta.get_run("f1")).unwrap().unwrap();
        assert_eq!(
            (run.status, run.stage, run.error_kind),
            (Status::Failed, Stage::FailedInWorkflow, Some(ErrorKind::HeaderMismatch))
        );
        assert_eq!(run.key.expose(), "src/JOHN_SMITH.csv");
        let alerts = std::fs::read_to_string(dir.path().join("topics/alerts.jsonl")).unwrap();
        assert_eq!(alerts.lines().count(), 2);
        assert!(
            alerts.contains("semi-structured-workflow failed: HeaderMismatch") && !alerts.contains("JOHN"),
            "{alerts}"
        );
    }

    #[test]
    fn a_failure_that_cannot_reach_the_dlq_stays_on_its_queue() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::new();
        faults.inject("queue.send", 0, 1, When::Before, true);
        let d = crate::faults::wrap(&local(dir.path()), &faults);
        let r = futures_lite(handle_batch(
            &d,
            Function::IngestionRouter,
            "ingest",
            batch(&[("m-p", "permanent", 1), ("m-bad", "garbage", 2)]),
            stage,
        ));
        // the first envelope could not be sent: SQS keeps that message; the second got through
        assert_eq!(failed_ids(&r), vec!["m-p"]);
        let envs = dlq(&d);
        assert_eq!(envs.len(), 1);
        assert_eq!((envs[0].error_kind, envs[0].attempts), (ErrorKind::BadWorkMessage, 2));
    }
}
