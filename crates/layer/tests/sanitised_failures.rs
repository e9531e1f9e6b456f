//! A file whose key holds a patient's name fails with the S3 `AccessDenied` a same-account
//! request really gets (its message names the object's ARN, key included). Through
//! `layer::pipeline::handle_batch` the failure reaches the DLQ envelope, the alert, the ledger
//! and the logs: none of them may hold the name or the key, all of them still say
//! `AccessDenied`. The S3 answer comes from a local HTTP server speaking S3's error XML to the
//! real SDK adapter (`S3Store`); the DLQ, the alert topic and the ledger are the local adapters,
//! and again moto's SQS, SNS and DynamoDB (`bash scripts/test.sh` starts moto; under `CI=true` a
//! missing moto fails the test). When recording the failure fails too, the port errors logged
//! for it are sanitised as well.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use layer::aws::{DynamoMetadata, S3Store, SnsNotifier, SqsQueue};
use layer::envelope::FailureEnvelope;
use layer::ledger::{PublishedContract, RunRecord, Status};
use layer::local::{LocalMetadata, LocalNotifier, LocalQueue};
use layer::pipeline::{handle_batch, Deps, FileCtx, PipelineConfig, SqsInvocation, StageError, WorkMessage};
use layer::ports::{GuardFlag, Metadata, Notifier, PortError, Queue, Received};
use layer::{key_hash, ErrorKind, Function, ObjectKey};

const ACCOUNT: &str = "111122223333";
const BUCKET: &str = "county-lake-dev-ingestion-111122223333-us-gov-west-1";
const KEY: &str = "st_marys/2026/12/JOHN SMITH 1984-02-29 admissions.csv";
/// Pieces of the key that must not appear anywhere (the name, the birth date, the path).
const LEAKS: [&str; 5] = ["JOHN", "SMITH", "1984-02-29", "st_marys/2026", "admissions.csv"];

// ------------------------------------------------------------------ S3 answering AccessDenied
/// S3's answer to a same-account GetObject the role's policy does not allow (the message format
/// of the S3 user guide's "Access denied error messages").
fn access_denied_xml() -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>User: \
         arn:aws-us-gov:sts::{ACCOUNT}:assumed-role/county-lake-dev-WorkflowDelimitedRole-1A2B3C/\
         county-lake-dev-workflow-delimited is not authorized to perform: s3:GetObject on resource: \
         \"arn:aws-us-gov:s3:::{BUCKET}/{KEY}\" because no identity-based policy allows the s3:GetObject \
         action</Message><RequestId>7N4Q2ZK8W1B3C5D6</RequestId><HostId>aG9zdC1pZA==</HostId></Error>"
    )
}

/// A local HTTP server (a thread) that answers every request with that 403; returns its endpoint.
fn s3_denying_everything() -> String {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut sock in listener.incoming().map_while(Result::ok) {
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let body = access_denied_xml();
            let head = format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
                 x-amz-request-id: 7N4Q2ZK8W1B3C5D6\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).and_then(|()| sock.write_all(body.as_bytes()));
        }
    });
    format!("http://{addr}")
}

/// The real S3 adapter, pointed at that server (path-style, GovCloud region).
fn denying_store(endpoint: &str) -> Arc<S3Store> {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-gov-west-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .build();
    Arc::new(S3Store { client: aws_sdk_s3::Client::from_conf(conf) })
}

// ------------------------------------------------------------------ the stage and its batch
fn work_message() -> WorkMessage {
    WorkMessage {
        file_id: format!("f{}", &key_hash(KEY)[..15]),
        bucket: BUCKET.into(),
        key: ObjectKey::new(KEY),
        version_id: Some("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY".into()),
        source: "st_marys".into(),
        dataset: "encounter".into(),
        contract_version: 1,
    }
}

/// What a workflow does first: read the object. Its failure carries the file's context.
async fn read_the_object(d: &Deps, m: SqsMessage) -> Result<(), StageError> {
    let w: WorkMessage = serde_json::from_str(m.body.as_deref().unwrap_or_default())
        .map_err(|e| StageError::permanent(ErrorKind::BadWorkMessage, e.to_string()))?;
    let file = FileCtx {
        file_id: w.file_id.clone(),
        bucket: w.bucket.clone(),
        key_hash: w.key.hash(),
        source: Some(w.source.clone()),
        dataset: Some(w.dataset.clone()),
        key: w.key.clone(),
        version_id: w.version_id.clone(),
        ..Default::default()
    };
    d.store
        .get(&w.bucket, w.key.expose(), w.version_id.as_deref())
        .await
        .map_err(|e| StageError::port(ErrorKind::S3GetFailed, e).with_file(&file))?;
    Ok(())
}

fn batch(body: &str) -> SqsInvocation {
    let mut m = SqsMessage::default();
    m.message_id = Some("m-1".into());
    m.body = Some(body.into());
    m.attributes = HashMap::from([("ApproximateReceiveCount".into(), "1".into())]);
    let mut ev = SqsEvent::default();
    ev.records = vec![m];
    let mut ctx = lambda_runtime::Context::default();
    ctx.request_id = "req-sanitise".into();
    lambda_runtime::LambdaEvent::new(ev, ctx)
}

// ------------------------------------------------------------------ logs, as the Lambda writes them
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// The production JSON format (`layer::telemetry::init_json`) into a buffer, for this thread:
/// the production level for the SDK (`info`), everything for this crate.
///
/// The tests of this file run one at a time ([`SERIAL`]): tracing caches per call site whether
/// anyone listens, and a call site first hit on another test's thread while this subscriber is
/// being installed can be cached as unheard, dropping the lines this test reads.
fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let out = Captured::default();
    let w = out.clone();
    let sub = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,layer=trace"))
        .with_current_span(true)
        .with_writer(move || w.clone())
        .finish();
    (out, tracing::subscriber::set_default(sub))
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn assert_clean(what: &str, text: &str) {
    for leak in LEAKS {
        assert!(!text.contains(leak), "{what} holds {leak:?}: {text}");
    }
}

// ------------------------------------------------------------------ where the failure is read back
enum Alerts {
    File(std::path::PathBuf),
    Queue(String),
}

struct World {
    deps: Deps,
    alerts: Alerts,
    _dir: tempfile::TempDir,
}

impl World {
    async fn dlq_bodies(&self) -> Vec<String> {
        self.deps.queue.receive(&self.deps.cfg.dlq, 10).await.unwrap().into_iter().map(|m| m.body).collect()
    }

    async fn alert_texts(&self) -> Vec<String> {
        match &self.alerts {
            Alerts::File(p) => std::fs::read_to_string(p).unwrap().lines().map(str::to_owned).collect(),
            Alerts::Queue(q) => {
                self.deps.queue.receive(q, 10).await.unwrap().into_iter().map(|m| m.body).collect()
            }
        }
    }
}

fn local_world(store: Arc<S3Store>) -> World {
    let dir = tempfile::tempdir().unwrap();
    let deps = Deps {
        store,
        queue: Arc::new(LocalQueue::new(dir.path().join("queues"))),
        notifier: Arc::new(LocalNotifier::new(dir.path().join("topics"))),
        meta: Arc::new(LocalMetadata::new(dir.path().join("meta"))),
        cfg: PipelineConfig { dlq: "dlq".into(), alert_topic: "alerts".into(), ..Default::default() },
    };
    World { deps, alerts: Alerts::File(dir.path().join("topics/alerts.jsonl")), _dir: dir }
}

/// The same world on moto's SQS (the DLQ, and a queue subscribed to the alert topic), SNS and
/// DynamoDB; fails when moto is not running.
async fn moto_world(store: Arc<S3Store>) -> World {
    let sdk = e2e::moto_sdk().await;
    let run = format!("sanitise{}{}", std::process::id(), chrono::Utc::now().timestamp_micros());
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let sns = aws_sdk_sns::Client::new(&sdk);
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let dlq = sqs.create_queue().queue_name(format!("{run}-dlq")).send().await.unwrap().queue_url.unwrap();
    let alerts =
        sqs.create_queue().queue_name(format!("{run}-alerts")).send().await.unwrap().queue_url.unwrap();
    let topic = sns.create_topic().name(format!("{run}-alerts")).send().await.unwrap().topic_arn.unwrap();
    let alerts_arn = sqs
        .get_queue_attributes()
        .queue_url(&alerts)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    sns.subscribe().topic_arn(&topic).protocol("sqs").endpoint(alerts_arn).send().await.unwrap();
    for t in ["runs", "datasets"] {
        e2e::create_table(&ddb, &format!("{run}-{t}")).await;
    }
    let deps = Deps {
        store,
        queue: Arc::new(SqsQueue { client: sqs.clone() }),
        notifier: Arc::new(SnsNotifier { client: sns }),
        meta: Arc::new(DynamoMetadata {
            client: ddb,
            runs_table: format!("{run}-runs"),
            datasets_table: format!("{run}-datasets"),
        }),
        cfg: PipelineConfig { dlq, alert_topic: topic, ..Default::default() },
    };
    World { deps, alerts: Alerts::Queue(alerts), _dir: tempfile::tempdir().unwrap() }
}

// ------------------------------------------------------------------ the end-to-end assertion
/// One AccessDenied for the named key through the batch loop; then every place it went.
async fn a_named_keys_access_denied_leaves_no_name(w: &World, logs: &Captured) {
    let w_msg = work_message();
    let r = handle_batch(
        &w.deps,
        Function::SemiStructuredWorkflow,
        "work-delimited",
        batch(&serde_json::to_string(&w_msg).unwrap()),
        read_the_object,
    )
    .await;
    assert!(r.batch_item_failures.is_empty(), "AccessDenied is permanent: envelope, not retry");

    let dlq = w.dlq_bodies().await;
    assert_eq!(dlq.len(), 1, "one envelope: {dlq:?}");
    assert_clean("the DLQ envelope", &dlq[0]);
    let env: FailureEnvelope = serde_json::from_str(&dlq[0]).unwrap();
    assert_eq!((env.error_kind, env.file_id.as_str()), (ErrorKind::S3GetFailed, w_msg.file_id.as_str()));
    assert!(
        env.error_message.starts_with("s3 GetObject: AccessDenied: User: arn:#"),
        "{}",
        env.error_message
    );
    assert!(
        env.error_message.contains("is not authorized to perform: s3:GetObject"),
        "{}",
        env.error_message
    );
    assert_eq!(env.key_hash, key_hash(KEY), "the key only as its hash");

    let alerts = w.alert_texts().await;
    assert_eq!(alerts.len(), 1, "one alert: {alerts:?}");
    assert_clean("the alert", &alerts[0]);
    assert!(alerts[0].contains("S3GetFailed") && alerts[0].contains("AccessDenied"), "{}", alerts[0]);

    let run = w.deps.meta.get_run(&w_msg.file_id).await.unwrap().expect("ledger entry FAILED");
    let msg = run.error_message.clone().unwrap();
    assert_clean("the ledger's error", &msg);
    assert_eq!(msg, env.error_message, "ledger and envelope say the same");
    // the ledger keeps the key itself, by design (KMS-encrypted table, `lake redrive` needs it):
    // everything else in the entry is clean
    assert_eq!(run.key.expose(), KEY);
    let mut item = serde_json::to_value(&run).unwrap();
    item.as_object_mut().unwrap().remove("key");
    assert_clean("the ledger entry (but its key field)", &item.to_string());

    let logged = logs.text();
    assert!(logged.contains("giving up: envelope to DLQ"), "the failure is logged: {logged}");
    assert_clean("the logs", &logged);
}

#[tokio::test]
async fn an_access_denied_for_a_named_key_reaches_the_dlq_alert_ledger_and_logs_without_it() {
    let _serial = SERIAL.lock().await;
    let endpoint = s3_denying_everything();
    let (logs, _guard) = capture_logs();
    let w = local_world(denying_store(&endpoint));
    a_named_keys_access_denied_leaves_no_name(&w, &logs).await;
}

#[tokio::test]
async fn the_same_through_moto_sqs_sns_and_dynamodb() {
    let _serial = SERIAL.lock().await;
    let endpoint = s3_denying_everything();
    let (logs, _guard) = capture_logs();
    let w = moto_world(denying_store(&endpoint)).await;
    a_named_keys_access_denied_leaves_no_name(&w, &logs).await;
}

// ------------------------------------------------------------------ when recording fails too
/// Ports that fail with service texts quoting the key (as an ARN and as a bare quoted key).
struct Quoting;

fn quoting_error(service: &'static str, op: &'static str) -> PortError {
    PortError::new(
        service,
        op,
        format!(
            "ServiceUnavailable: could not process 'st_marys/2026/12/JOHN SMITH 1984-02-29 admissions.csv' \
             (arn:aws-us-gov:s3:::{BUCKET}/{KEY})"
        ),
        true,
    )
}

#[async_trait]
impl Queue for Quoting {
    async fn send(&self, _q: &str, _b: &str) -> Result<(), PortError> {
        Err(quoting_error("sqs", "SendMessage"))
    }
    async fn receive(&self, _q: &str, _m: usize) -> Result<Vec<Received>, PortError> {
        Ok(Vec::new())
    }
    async fn delete(&self, _q: &str, _r: &str) -> Result<(), PortError> {
        Ok(())
    }
    async fn release(&self, _q: &str, _r: &str) -> Result<(), PortError> {
        Ok(())
    }
}

#[async_trait]
impl Notifier for Quoting {
    async fn publish(&self, _t: &str, _s: &str, _m: &str) -> Result<(), PortError> {
        Err(quoting_error("sns", "Publish"))
    }
}

/// The local ledger, except that writing a run fails quoting the key.
struct QuotingLedger(LocalMetadata);

#[async_trait]
impl Metadata for QuotingLedger {
    async fn put_run_if_absent(&self, run: &RunRecord) -> Result<bool, PortError> {
        self.0.put_run_if_absent(run).await
    }
    async fn put_run(&self, _run: &RunRecord) -> Result<(), PortError> {
        Err(quoting_error("dynamodb", "PutItem"))
    }
    async fn put_run_unless_done(&self, _run: &RunRecord) -> Result<bool, PortError> {
        Err(quoting_error("dynamodb", "PutItem"))
    }
    async fn get_run(&self, file_id: &str) -> Result<Option<RunRecord>, PortError> {
        self.0.get_run(file_id).await
    }
    async fn list_runs(&self) -> Result<Vec<RunRecord>, PortError> {
        self.0.list_runs().await
    }
    async fn publish_contract(&self, source: &str, dataset: &str, toml: &str) -> Result<u32, PortError> {
        self.0.publish_contract(source, dataset, toml).await
    }
    async fn current_contract(&self, source: &str) -> Result<Option<PublishedContract>, PortError> {
        self.0.current_contract(source).await
    }
    async fn contract_version(&self, source: &str, v: u32) -> Result<Option<PublishedContract>, PortError> {
        self.0.contract_version(source, v).await
    }
    async fn list_contracts(&self) -> Result<Vec<PublishedContract>, PortError> {
        self.0.list_contracts().await
    }
    async fn set_dataset_status(&self, source: &str, status: Status, file_id: &str) -> Result<(), PortError> {
        self.0.set_dataset_status(source, status, file_id).await
    }
    async fn content_owner(&self, source: &str, sha256: &str) -> Result<Option<String>, PortError> {
        self.0.content_owner(source, sha256).await
    }
    async fn claim_content(&self, source: &str, sha256: &str, file_id: &str) -> Result<String, PortError> {
        self.0.claim_content(source, sha256, file_id).await
    }
    async fn guard_state(&self, source: &str, name: GuardFlag) -> Result<Option<String>, PortError> {
        self.0.guard_state(source, name).await
    }
    async fn set_guard_state(
        &self,
        source: &str,
        name: GuardFlag,
        value: Option<&str>,
    ) -> Result<(), PortError> {
        self.0.set_guard_state(source, name, value).await
    }
    async fn take_over_content(
        &self,
        source: &str,
        sha256: &str,
        failed_owner: &str,
        file_id: &str,
    ) -> Result<bool, PortError> {
        self.0.take_over_content(source, sha256, failed_owner, file_id).await
    }
}

#[tokio::test]
async fn port_errors_logged_while_recording_a_failure_hold_no_key() {
    let _serial = SERIAL.lock().await;
    let endpoint = s3_denying_everything();
    let (logs, _guard) = capture_logs();
    let body = serde_json::to_string(&work_message()).unwrap();

    // the DLQ cannot be reached: SQS keeps the message, and the log says why without the key
    let mut w = local_world(denying_store(&endpoint));
    w.deps.queue = Arc::new(Quoting);
    let r = handle_batch(
        &w.deps,
        Function::SemiStructuredWorkflow,
        "work-delimited",
        batch(&body),
        read_the_object,
    )
    .await;
    assert_eq!(r.batch_item_failures.len(), 1, "not recorded: SQS keeps it");
    let logged = logs.text();
    assert!(logged.contains("could not record the failure"), "{logged}");
    assert!(logged.contains("ServiceUnavailable") && logged.contains("key:#"), "{logged}");
    assert_clean("the DLQ-failure log", &logged);

    // the envelope goes out, the alert does not: logged without the key
    let mut w = local_world(denying_store(&endpoint));
    w.deps.notifier = Arc::new(Quoting);
    handle_batch(&w.deps, Function::SemiStructuredWorkflow, "work-delimited", batch(&body), read_the_object)
        .await;
    assert_eq!(w.dlq_bodies().await.len(), 1, "the envelope is what must not be lost");
    let logged = logs.text();
    assert!(logged.contains("alert not sent"), "{logged}");
    assert_clean("the alert-failure log", &logged);

    // envelope and alert go out, the ledger write fails: logged without the key
    let dir = tempfile::tempdir().unwrap();
    let mut w = local_world(denying_store(&endpoint));
    w.deps.meta = Arc::new(QuotingLedger(LocalMetadata::new(dir.path())));
    handle_batch(&w.deps, Function::SemiStructuredWorkflow, "work-delimited", batch(&body), read_the_object)
        .await;
    assert_eq!((w.dlq_bodies().await.len(), w.alert_texts().await.len()), (1, 1));
    let logged = logs.text();
    assert!(logged.contains("ledger not updated"), "{logged}");
    assert_clean("the ledger-failure log", &logged);
}
