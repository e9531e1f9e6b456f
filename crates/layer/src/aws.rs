//! The AWS client factory. `aws-config` reads `AWS_ENDPOINT_URL` (and the per-service variants),
//! so the same code reaches moto in tests and AWS in production. S3 uses path-style addressing
//! when an endpoint override is set (moto, VPC endpoints by URL).

use aws_config::BehaviorVersion;
pub use aws_config::SdkConfig;

/// Loads the shared SDK configuration once per cold start.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

pub fn s3(cfg: &SdkConfig) -> aws_sdk_s3::Client {
    let mut b = aws_sdk_s3::config::Builder::from(cfg);
    if std::env::var("AWS_ENDPOINT_URL").is_ok() || std::env::var("AWS_ENDPOINT_URL_S3").is_ok() {
        b = b.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(b.build())
}

pub fn dynamodb(cfg: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(cfg)
}

pub fn sqs(cfg: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(cfg)
}

pub fn sns(cfg: &SdkConfig) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(cfg)
}

// ---------------------------------------------------------------------------------------------
// Adapters
// ---------------------------------------------------------------------------------------------

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::ledger::{now, PublishedContract, RunRecord};
use crate::ports::{GuardFlag, Metadata, Notifier, ObjectStore, ObjectVersion, PortError, Queue, Received};

/// An SDK error as a port error: the message is the service's error code and text (no payloads).
pub(crate) fn sdk_err<E, R>(
    service: &'static str,
    op: &'static str,
    e: aws_sdk_s3::error::SdkError<E, R>,
) -> PortError
where
    E: std::error::Error + aws_sdk_s3::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::SdkError;
    let transient = !matches!(&e, SdkError::ServiceError(s) if {
        let code = s.err().code().unwrap_or_default();
        matches!(code, "NoSuchKey" | "NoSuchBucket" | "AccessDenied" | "ResourceNotFoundException" | "NotFound" | "InvalidParameterValue" | "ValidationException" | "AWS.SimpleQueueService.NonExistentQueue")
    });
    let msg = match &e {
        SdkError::ServiceError(s) => {
            format!("{}: {}", s.err().code().unwrap_or("error"), s.err().message().unwrap_or(""))
        }
        other => format!("{}", aws_sdk_s3::error::DisplayErrorContext(other)),
    };
    PortError::new(service, op, msg, transient)
}

/// A blocking `Read` over chunks sent by an async task (called on the blocking pool only).
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(c)) => self.chunk = c,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// S3 as the object store.
pub struct S3Store {
    pub client: aws_sdk_s3::Client,
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<Vec<u8>, PortError> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(Into::into))
            .send()
            .await
            .map_err(|e| sdk_err("s3", "GetObject", e))?;
        let body =
            out.body.collect().await.map_err(|e| PortError::new("s3", "GetObject", e.to_string(), true))?;
        Ok(body.into_bytes().to_vec())
    }

    async fn open(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<crate::ports::ObjectReader, PortError> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(Into::into))
            .send()
            .await
            .map_err(|e| sdk_err("s3", "GetObject", e))?;
        // the body's chunks cross to the blocking reader through a small bounded channel: at most
        // a few chunks are held, however large the object
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
        let mut body = out.body;
        tokio::spawn(async move {
            loop {
                let next = match body.try_next().await {
                    Ok(Some(chunk)) => Ok(chunk),
                    Ok(None) => break,
                    Err(e) => Err(std::io::Error::other(format!("s3 GetObject body: {e}"))),
                };
                let failed = next.is_err();
                if tx.send(next).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Box::new(ChannelReader { rx, chunk: bytes::Bytes::new() }))
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        kms_key: Option<&str>,
    ) -> Result<(), PortError> {
        let mut req = self.client.put_object().bucket(bucket).key(key).body(body.into());
        if let Some(k) = kms_key {
            req = req
                .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                .ssekms_key_id(k)
                .bucket_key_enabled(true);
        }
        req.send().await.map_err(|e| sdk_err("s3", "PutObject", e))?;
        Ok(())
    }

    async fn create(
        &self,
        bucket: &str,
        key: &str,
        kms_key: Option<&str>,
    ) -> Result<crate::ports::ObjectWriter, PortError> {
        let sink = crate::multipart::S3Sink::new(
            self.client.clone(),
            bucket,
            key,
            kms_key,
            crate::multipart::PART_BYTES,
        );
        Ok(Box::new(sink))
    }

    async fn list_versions(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectVersion>, PortError> {
        let mut out = Vec::new();
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await
                .map_err(|e| sdk_err("s3", "ListObjectVersions", e))?;
            for v in page.versions() {
                out.push(ObjectVersion {
                    key: v.key().unwrap_or_default().into(),
                    version_id: v.version_id().filter(|v| *v != "null").map(Into::into),
                    size: v.size().unwrap_or_default() as u64,
                    last_modified: v.last_modified().map(|t| t.to_string()).unwrap_or_default(),
                    is_latest: v.is_latest().unwrap_or(false),
                });
            }
            if page.is_truncated() == Some(true) {
                key_marker = page.next_key_marker().map(Into::into);
                version_marker = page.next_version_id_marker().map(Into::into);
            } else {
                break;
            }
        }
        Ok(out)
    }
}

/// SQS as the queue. `queue` is the queue URL.
pub struct SqsQueue {
    pub client: aws_sdk_sqs::Client,
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, queue: &str, body: &str) -> Result<(), PortError> {
        self.client
            .send_message()
            .queue_url(queue)
            .message_body(body)
            .send()
            .await
            .map_err(|e| sdk_err("sqs", "SendMessage", e))?;
        Ok(())
    }

    async fn receive(&self, queue: &str, max: usize) -> Result<Vec<Received>, PortError> {
        let out = self
            .client
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
            )
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp)
            .wait_time_seconds(0)
            .send()
            .await
            .map_err(|e| sdk_err("sqs", "ReceiveMessage", e))?;
        Ok(out
            .messages()
            .iter()
            .map(|m| Received {
                message_id: m.message_id().unwrap_or_default().into(),
                body: m.body().unwrap_or_default().into(),
                receipt: m.receipt_handle().unwrap_or_default().into(),
                receive_count: m
                    .attributes()
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                    })
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
                sent_at_ms: m
                    .attributes()
                    .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp))
                    .and_then(|v| v.parse().ok()),
            })
            .collect())
    }

    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), PortError> {
        self.client
            .delete_message()
            .queue_url(queue)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| sdk_err("sqs", "DeleteMessage", e))?;
        Ok(())
    }

    async fn release(&self, queue: &str, receipt: &str) -> Result<(), PortError> {
        self.client
            .change_message_visibility()
            .queue_url(queue)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(|e| sdk_err("sqs", "ChangeMessageVisibility", e))?;
        Ok(())
    }
}

/// SNS as the notifier. `topic` is the topic ARN.
pub struct SnsNotifier {
    pub client: aws_sdk_sns::Client,
}

#[async_trait]
impl Notifier for SnsNotifier {
    async fn publish(&self, topic: &str, subject: &str, message: &str) -> Result<(), PortError> {
        self.client
            .publish()
            .topic_arn(topic)
            .subject(subject)
            .message(message)
            .send()
            .await
            .map_err(|e| sdk_err("sns", "Publish", e))?;
        Ok(())
    }
}

/// DynamoDB as the metadata store: the `runs` ledger and the `datasets` table.
/// Keys: runs `pk = run#<file_id>`, `sk = ledger`; datasets `pk = source#<source>`,
/// `sk = v#<0000version>` per version and `sk = current` for the published one.
pub struct DynamoMetadata {
    pub client: aws_sdk_dynamodb::Client,
    pub runs_table: String,
    pub datasets_table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn get_s<'a>(item: &'a HashMap<String, AttributeValue>, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

impl DynamoMetadata {
    fn run_item(run: &RunRecord) -> Result<HashMap<String, AttributeValue>, PortError> {
        let doc = serde_json::to_string(run)
            .map_err(|e| PortError::new("dynamodb", "PutItem", e.to_string(), false))?;
        let mut item = HashMap::from([
            ("pk".to_string(), s(format!("run#{}", run.file_id))),
            ("sk".to_string(), s("ledger")),
            ("file_id".to_string(), s(&run.file_id)),
            ("status".to_string(), s(run.status.as_str())),
            ("stage".to_string(), s(run.stage.as_str())),
            ("updated_at".to_string(), s(&run.updated_at)),
            ("doc".to_string(), s(doc)),
        ]);
        if let Some(src) = &run.source {
            item.insert("source".into(), s(src));
        }
        if let Some(k) = &run.error_kind {
            item.insert("error_kind".into(), s(k.as_str()));
        }
        Ok(item)
    }

    fn parse_run(item: &HashMap<String, AttributeValue>) -> Result<RunRecord, PortError> {
        let doc = get_s(item, "doc")
            .ok_or_else(|| PortError::new("dynamodb", "GetItem", "ledger item without doc", false))?;
        serde_json::from_str(doc).map_err(|e| PortError::new("dynamodb", "GetItem", e.to_string(), false))
    }

    /// Writes the run when `condition` holds on the stored item, false when it does not. Each
    /// `(#name, attribute, :value, string)` binds a name and a value the condition uses.
    async fn put_run_when(
        &self,
        run: &RunRecord,
        condition: &str,
        bindings: &[(&str, &str, &str, &str)],
    ) -> Result<bool, PortError> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.runs_table)
            .set_item(Some(Self::run_item(run)?))
            .condition_expression(condition);
        for (name, attribute, placeholder, value) in bindings {
            req = req
                .expression_attribute_names(*name, *attribute)
                .expression_attribute_values(*placeholder, s(*value));
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                Ok(false)
            }
            Err(e) => Err(sdk_err("dynamodb", "PutItem", e)),
        }
    }

    /// Every item of `table` (only those whose `sk` is `sk`, when given), page after page,
    /// each parsed with `parse`.
    async fn scan_all<T>(
        &self,
        table: &str,
        sk: Option<&str>,
        parse: impl Fn(&HashMap<String, AttributeValue>) -> Result<T, PortError>,
    ) -> Result<Vec<T>, PortError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut req = self.client.scan().table_name(table).set_exclusive_start_key(start);
            if let Some(sk) = sk {
                req = req.filter_expression("sk = :c").expression_attribute_values(":c", s(sk));
            }
            let page = req.send().await.map_err(|e| sdk_err("dynamodb", "Scan", e))?;
            for item in page.items() {
                out.push(parse(item)?);
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    fn parse_contract(item: &HashMap<String, AttributeValue>) -> Result<PublishedContract, PortError> {
        let doc = get_s(item, "doc")
            .ok_or_else(|| PortError::new("dynamodb", "GetItem", "dataset item without doc", false))?;
        serde_json::from_str(doc).map_err(|e| PortError::new("dynamodb", "GetItem", e.to_string(), false))
    }

    async fn get_dataset_item(&self, source: &str, sk: &str) -> Result<Option<PublishedContract>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.datasets_table)
            .key("pk", s(format!("source#{source}")))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("dynamodb", "GetItem", e))?;
        out.item().map(Self::parse_contract).transpose()
    }
}

#[async_trait]
impl Metadata for DynamoMetadata {
    async fn put_run_if_absent(&self, run: &RunRecord) -> Result<bool, PortError> {
        self.put_run_when(run, "attribute_not_exists(pk)", &[]).await
    }

    async fn put_run_unless_done(&self, run: &RunRecord) -> Result<bool, PortError> {
        let done = crate::ledger::Status::Done.as_str();
        self.put_run_when(
            run,
            "attribute_not_exists(pk) OR #status <> :done",
            &[("#status", "status", ":done", done)],
        )
        .await
    }

    async fn put_run(&self, run: &RunRecord) -> Result<(), PortError> {
        self.client
            .put_item()
            .table_name(&self.runs_table)
            .set_item(Some(Self::run_item(run)?))
            .send()
            .await
            .map_err(|e| sdk_err("dynamodb", "PutItem", e))?;
        Ok(())
    }

    async fn get_run(&self, file_id: &str) -> Result<Option<RunRecord>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.runs_table)
            .key("pk", s(format!("run#{file_id}")))
            .key("sk", s("ledger"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("dynamodb", "GetItem", e))?;
        out.item().map(Self::parse_run).transpose()
    }

    async fn list_runs(&self) -> Result<Vec<RunRecord>, PortError> {
        self.scan_all(&self.runs_table, None, Self::parse_run).await
    }

    async fn publish_contract(&self, source: &str, dataset: &str, toml: &str) -> Result<u32, PortError> {
        let version = self.current_contract(source).await?.map_or(1, |c| c.version + 1);
        let pc = PublishedContract {
            source: source.into(),
            dataset: dataset.into(),
            version,
            toml: toml.into(),
            published_at: now(),
        };
        let doc = serde_json::to_string(&pc)
            .map_err(|e| PortError::new("dynamodb", "PutItem", e.to_string(), false))?;
        for sk in [format!("v#{version:04}"), "current".to_string()] {
            let mut req = self
                .client
                .put_item()
                .table_name(&self.datasets_table)
                .item("pk", s(format!("source#{source}")))
                .item("sk", s(&sk))
                .item("dataset", s(dataset))
                .item("version", AttributeValue::N(version.to_string()))
                .item("doc", s(&doc));
            if sk != "current" {
                req = req.condition_expression("attribute_not_exists(pk)");
            }
            req.send().await.map_err(|e| sdk_err("dynamodb", "PutItem", e))?;
        }
        Ok(version)
    }

    async fn current_contract(&self, source: &str) -> Result<Option<PublishedContract>, PortError> {
        self.get_dataset_item(source, "current").await
    }

    async fn contract_version(
        &self,
        source: &str,
        version: u32,
    ) -> Result<Option<PublishedContract>, PortError> {
        self.get_dataset_item(source, &format!("v#{version:04}")).await
    }

    async fn set_dataset_status(
        &self,
        source: &str,
        status: crate::ledger::Status,
        file_id: &str,
    ) -> Result<(), PortError> {
        self.client
            .update_item()
            .table_name(&self.datasets_table)
            .key("pk", s(format!("source#{source}")))
            .key("sk", s("current"))
            .update_expression("SET last_status = :s, last_file_id = :f, last_run_at = :t")
            .expression_attribute_values(":s", s(status.as_str()))
            .expression_attribute_values(":f", s(file_id))
            .expression_attribute_values(":t", s(now()))
            .send()
            .await
            .map_err(|e| sdk_err("dynamodb", "UpdateItem", e))?;
        Ok(())
    }

    async fn list_contracts(&self) -> Result<Vec<PublishedContract>, PortError> {
        let mut out = self.scan_all(&self.datasets_table, Some("current"), Self::parse_contract).await?;
        out.sort_by(|a, b| a.source.cmp(&b.source));
        Ok(out)
    }

    async fn content_owner(&self, source: &str, sha256: &str) -> Result<Option<String>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.datasets_table)
            .key("pk", s(format!("source#{source}")))
            .key("sk", s(format!("content#{sha256}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("dynamodb", "GetItem", e))?;
        Ok(out.item().and_then(|i| get_s(i, "file_id")).map(String::from))
    }

    async fn claim_content(&self, source: &str, sha256: &str, file_id: &str) -> Result<String, PortError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.datasets_table)
            .item("pk", s(format!("source#{source}")))
            .item("sk", s(format!("content#{sha256}")))
            .item("file_id", s(file_id))
            .item("at", s(now()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(file_id.to_string()),
            Err(e) if e.as_service_error().is_some_and(|x| x.is_conditional_check_failed_exception()) => {
                Ok(self.content_owner(source, sha256).await?.unwrap_or_default())
            }
            Err(e) => Err(sdk_err("dynamodb", "PutItem", e)),
        }
    }

    async fn take_over_content(
        &self,
        source: &str,
        sha256: &str,
        failed_owner: &str,
        file_id: &str,
    ) -> Result<bool, PortError> {
        use aws_sdk_dynamodb::types::{ConditionCheck, TransactWriteItem, Update};
        let built = |e: aws_sdk_dynamodb::error::BuildError| {
            PortError::new("dynamodb", "TransactWriteItems", e.to_string(), false)
        };
        // the owner's ledger entry is still FAILED (a redrive resets it to RECEIVED) ...
        let owner_failed = ConditionCheck::builder()
            .table_name(&self.runs_table)
            .key("pk", s(format!("run#{failed_owner}")))
            .key("sk", s("ledger"))
            .condition_expression("#st = :failed")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":failed", s(crate::ledger::Status::Failed.as_str()))
            .build()
            .map_err(built)?;
        // ... and the claim is still its: then, in the same transaction, the claim moves
        let move_claim = Update::builder()
            .table_name(&self.datasets_table)
            .key("pk", s(format!("source#{source}")))
            .key("sk", s(format!("content#{sha256}")))
            .update_expression("SET file_id = :new, #at = :t")
            .condition_expression("file_id = :old")
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":new", s(file_id))
            .expression_attribute_values(":old", s(failed_owner))
            .expression_attribute_values(":t", s(now()))
            .build()
            .map_err(built)?;
        let res = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().condition_check(owner_failed).build())
            .transact_items(TransactWriteItem::builder().update(move_claim).build())
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|x| x.is_transaction_canceled_exception()) => {
                Ok(false)
            }
            Err(e) => Err(sdk_err("dynamodb", "TransactWriteItems", e)),
        }
    }

    async fn guard_state(&self, source: &str, name: GuardFlag) -> Result<Option<String>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.datasets_table)
            .key("pk", s(format!("source#{source}")))
            .key("sk", s(format!("guard#{}", name.as_str())))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("dynamodb", "GetItem", e))?;
        Ok(out.item().and_then(|i| get_s(i, "value")).map(String::from))
    }

    async fn set_guard_state(
        &self,
        source: &str,
        name: GuardFlag,
        value: Option<&str>,
    ) -> Result<(), PortError> {
        let (pk, sk) = (s(format!("source#{source}")), s(format!("guard#{}", name.as_str())));
        match value {
            Some(v) => self
                .client
                .put_item()
                .table_name(&self.datasets_table)
                .item("pk", pk)
                .item("sk", sk)
                .item("value", s(v))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_err("dynamodb", "PutItem", e)),
            None => self
                .client
                .delete_item()
                .table_name(&self.datasets_table)
                .key("pk", pk)
                .key("sk", sk)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_err("dynamodb", "DeleteItem", e)),
        }
    }
}
