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
    pub fn family_queue(&self, family: &str) -> &str {
        match family {
            "json" => &self.queue_json,
            _ => &self.queue_delimited,
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
    /// The object key, kept to rebuild a ledger entry that a failure left missing; never printed.
    pub key: crate::Phi<String>,
    pub version_id: Option<String>,
}

/// A stage's failure: a stable kind (`UnknownSource`, `HeaderMismatch`, `S3GetFailed`, ...), a
/// message without row values, and whether a retry can help.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct StageError {
    pub kind: String,
    pub message: String,
    pub transient: bool,
    pub file: Option<FileCtx>,
}

impl StageError {
    pub fn permanent(kind: &str, message: impl Into<String>) -> Self {
        Self { kind: kind.into(), message: message.into(), transient: false, file: None }
    }

    pub fn port(kind: &str, e: PortError) -> Self {
        Self { kind: kind.into(), message: e.to_string(), transient: e.transient, file: None }
    }

    pub fn with_file(mut self, f: &FileCtx) -> Self {
        if self.file.is_none() {
            self.file = Some(f.clone());
        }
        self
    }
}

pub fn receive_count(m: &SqsMessage) -> u32 {
    m.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse().ok()).unwrap_or(1)
}

/// Runs `process` on every message of an SQS batch. A transient failure before the last attempt
/// is reported as a batch item failure (SQS redelivers it); a permanent failure, or any failure
/// on the last attempt, writes the envelope to the DLQ, raises the alert and marks the ledger
/// FAILED, and the message is consumed. If even that fails, the item is reported as failed so
/// SQS keeps it (and its redrive policy moves it to the DLQ).
pub async fn handle_batch<'a, F, Fut>(
    deps: &'a Deps,
    function: &str,
    source_queue: &str,
    event: SqsEvent,
    process: F,
) -> SqsBatchResponse
where
    F: Fn(&'a Deps, SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), StageError>>,
{
    let mut failures = Vec::new();
    for m in event.records {
        let id = m.message_id.clone().unwrap_or_default();
        let attempts = receive_count(&m);
        let body = m.body.clone().unwrap_or_default();
        match process(deps, m).await {
            Ok(()) => {}
            Err(e) if e.transient && attempts < MAX_RECEIVES => {
                tracing::warn!(message_id = %id, kind = %e.kind, attempts, "transient failure, will retry");
                failures.push(item_failure(id));
            }
            Err(e) => {
                tracing::error!(message_id = %id, kind = %e.kind, attempts, "giving up: envelope to DLQ");
                if let Err(fe) = fail(deps, function, source_queue, &e, attempts, body).await {
                    tracing::error!(message_id = %id, error = %fe, "could not record the failure; SQS keeps the message");
                    failures.push(item_failure(id));
                }
            }
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
/// alert and the ledger are best effort after it.
pub async fn fail(
    deps: &Deps,
    function: &str,
    source_queue: &str,
    e: &StageError,
    attempts: u32,
    original: String,
) -> Result<(), PortError> {
    let f = e.file.clone().unwrap_or_default();
    let env = FailureEnvelope {
        file_id: f.file_id.clone(),
        bucket: f.bucket.clone(),
        key_hash: f.key_hash.clone(),
        dataset: f.dataset.clone(),
        source: f.source.clone(),
        function: function.into(),
        error_kind: e.kind.clone(),
        error_message: e.message.clone(),
        attempts,
        first_seen: f.first_seen.clone().unwrap_or_else(now),
        failed_at: now(),
        source_queue: source_queue.into(),
        original_message: redact_message(&original),
    };
    let body = serde_json::to_string(&env)
        .map_err(|x| PortError::new("envelope", "serialise", x.to_string(), false))?;
    crate::metrics::emit(function, f.source.as_deref(), &[("FilesFailed", 1.0, "Count")]);
    deps.queue.send(&deps.cfg.dlq, &body).await?;
    let (subject, text) = env.alert();
    if let Err(x) = deps.notifier.publish(&deps.cfg.alert_topic, &subject, &text).await {
        tracing::error!(error = %x, "alert not sent");
    }
    if !f.file_id.is_empty() {
        let mut run = match deps.meta.get_run(&f.file_id).await {
            Ok(Some(r)) => r,
            _ => {
                let mut r = RunRecord::received(&f.bucket, f.key.expose(), f.version_id.as_deref());
                r.file_id = f.file_id.clone();
                r.key_hash = f.key_hash.clone();
                r.source = f.source.clone();
                r.dataset = f.dataset.clone();
                r
            }
        };
        run.status = Status::Failed;
        run.stage = function.into();
        run.error_kind = Some(e.kind.clone());
        run.error_message = Some(e.message.clone());
        run.attempts = attempts;
        run.updated_at = now();
        if let Err(x) = deps.meta.put_run(&run).await {
            tracing::error!(error = %x, "ledger not updated");
        }
        if let Some(src) = &f.source {
            let _ = deps.meta.set_dataset_status(src, "FAILED", &f.file_id).await;
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
    pub key: String,
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
