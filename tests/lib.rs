//! The one end-to-end harness of the workspace: emulated AWS (a moto server on 127.0.0.1, started
//! by `scripts/test.sh` and named by `LAKE_TEST_AWS_ENDPOINT`) and a real PostgreSQL
//! (`LAKE_TEST_DATABASE_URL`). A test that needs a service it cannot reach fails with the command
//! that starts it: it never passes by skipping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use layer::aws::{DynamoMetadata, S3Store, SnsNotifier, SqsQueue};
use layer::ops::Topology;
use layer::pipeline::{Deps, PipelineConfig};

/// The moto server's URL; panics (the test fails) when it is not set.
pub fn moto_endpoint() -> String {
    std::env::var("LAKE_TEST_AWS_ENDPOINT").ok().filter(|e| !e.is_empty()).expect(
        "LAKE_TEST_AWS_ENDPOINT is not set: run the tests with `bash scripts/test.sh`, which starts moto",
    )
}

/// An SDK configuration for moto (GovCloud region, test credentials).
pub async fn moto_sdk() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto_endpoint())
        .region(aws_config::Region::new("us-gov-west-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await
}

/// The PostgreSQL server's URL (a superuser); panics (the test fails) when it is not set.
pub fn database_url() -> String {
    std::env::var("LAKE_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty()).expect(
        "LAKE_TEST_DATABASE_URL is not set: these tests need a real PostgreSQL; run them with \
         `bash scripts/test.sh`, which starts one",
    )
}

/// A name no other test of any process uses: pid, a per-process counter and the clock (tests
/// run concurrently, and the clock alone can collide).
pub fn unique() -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}{n:x}{:x}", std::process::id(), t % 0xffff_ffff)
}

/// A fresh, empty database on the test server (a unique name): its URL and name. The caller
/// applies the migrations it wants (as a deploy would) or none.
pub async fn empty_database() -> (String, String) {
    use sqlx::Connection;
    let url = database_url();
    let name = format!("lake_t{}", unique());
    let mut admin = sqlx::PgConnection::connect(&url).await.expect("cannot connect to the test PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
    admin.close().await.unwrap();
    let base = url.rsplit_once('/').expect("LAKE_TEST_DATABASE_URL names a database").0;
    (format!("{base}/{name}"), name)
}

pub const KMS_KEY: &str =
    "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/11111111-2222-3333-4444-555555555555";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The hand-set matching rules (a test fixture, not shipped): they leave eight sample rows
/// proposed, several with two or three candidates, which the review tests need; the shipped
/// trained rules decide all but one of those rows.
pub fn handset_rules() -> PathBuf {
    root().join("crates/lake/tests/fixtures/matching.handset.toml")
}

/// Publishes the hand-set rules into the embedded lake `l` with the `lake` binary `lake_bin`
/// (the rules `lake run --people` then uses).
pub fn publish_handset_rules(lake_bin: &str, l: &Path) {
    let o = std::process::Command::new(lake_bin)
        .args(["rules", "publish"])
        .arg(handset_rules())
        .arg("--lake")
        .arg(l)
        .output()
        .expect("the lake binary runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

pub struct World {
    pub deps: Deps,
    pub topo: Topology,
    pub s3: aws_sdk_s3::Client,

    pub alerts_queue: String,
    pub ingest_bucket: String,
    /// The ledger table (a test that builds its own metadata adapter names it).
    pub runs_table: String,
    /// The datasets table (contracts; the published matching rules).
    pub datasets_table: String,
}

/// A fresh pipeline in moto: ingest (versioned), raw and quarantine buckets, the runs and
/// datasets tables, every queue, the alert topic (subscribed by an `alerts` queue the test reads).
pub async fn world() -> World {
    let sdk = moto_sdk().await;
    let s3 = s3_client(&sdk);
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let sns = aws_sdk_sns::Client::new(&sdk);
    let id = unique();
    let name = |s: &str| format!("t{id}-{s}");

    for b in ["ingest", "raw", "quarantine"] {
        create_bucket(&s3, &name(b), b == "ingest").await;
    }
    for t in ["runs", "datasets"] {
        create_table(&ddb, &name(t)).await;
    }
    let mut urls = std::collections::HashMap::new();
    for q in ["ingest", "work-delimited", "work-json", "pii", "dlq", "alerts"] {
        let u = sqs.create_queue().queue_name(name(q)).send().await.unwrap().queue_url.unwrap();
        urls.insert(q, u);
    }
    let topic = sns.create_topic().name(name("alerts")).send().await.unwrap().topic_arn.unwrap();
    subscribe_queue(&sns, &sqs, &topic, &urls["alerts"]).await;

    let deps = Deps {
        store: Arc::new(S3Store { client: s3.clone() }),
        queue: Arc::new(SqsQueue { client: sqs.clone() }),
        notifier: Arc::new(SnsNotifier { client: sns }),
        meta: Arc::new(DynamoMetadata {
            client: ddb,
            runs_table: name("runs"),
            datasets_table: name("datasets"),
        }),
        cfg: PipelineConfig {
            queue_delimited: urls["work-delimited"].clone(),
            queue_json: urls["work-json"].clone(),
            dlq: urls["dlq"].clone(),
            alert_topic: topic,
            raw_bucket: name("raw"),
            quarantine_bucket: name("quarantine"),
            kms_key: Some(KMS_KEY.into()),
            pii_queue: urls["pii"].clone(),
        },
    };
    let topo = Topology { ingest_bucket: name("ingest"), ingest_queue: urls["ingest"].clone() };
    World {
        deps,
        topo,
        s3,
        alerts_queue: urls["alerts"].clone(),
        ingest_bucket: name("ingest"),
        runs_table: name("runs"),
        datasets_table: name("datasets"),
    }
}

/// An S3 client for moto (path-style addressing: moto serves no bucket host names).
pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(sdk).force_path_style(true).build())
}

/// A bucket in the GovCloud region, versioned when asked (as the ingestion bucket is).
pub async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str, versioned: bool) {
    use aws_sdk_s3::types::{BucketLocationConstraint, BucketVersioningStatus};
    use aws_sdk_s3::types::{CreateBucketConfiguration, VersioningConfiguration};
    let region = CreateBucketConfiguration::builder()
        .location_constraint(BucketLocationConstraint::from("us-gov-west-1"))
        .build();
    match s3.create_bucket().bucket(bucket).create_bucket_configuration(region).send().await {
        Ok(_) => {}
        // the SDK retried a create whose first attempt succeeded (moto closed the connection)
        Err(e) if e.as_service_error().is_some_and(|e| e.is_bucket_already_owned_by_you()) => {}
        Err(e) => panic!("create bucket {bucket}: {e:?}"),
    }
    if versioned {
        let on = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
        s3.put_bucket_versioning().bucket(bucket).versioning_configuration(on).send().await.unwrap();
    }
}

/// A table keyed as the ledger and datasets tables are (`pk` hash, `sk` range, both strings).
pub async fn create_table(ddb: &aws_sdk_dynamodb::Client, table: &str) {
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let key =
        |n: &str, t: KeyType| KeySchemaElement::builder().attribute_name(n).key_type(t).build().unwrap();
    ddb.create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .send()
        .await
        .unwrap();
}

/// Subscribes a queue to a topic with raw delivery, so a test reads each alert's text as is.
pub async fn subscribe_queue(
    sns: &aws_sdk_sns::Client,
    sqs: &aws_sdk_sqs::Client,
    topic: &str,
    queue_url: &str,
) {
    use aws_sdk_sqs::types::QueueAttributeName;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let arn = attrs[&QueueAttributeName::QueueArn].clone();
    sns.subscribe()
        .topic_arn(topic)
        .protocol("sqs")
        .endpoint(arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();
}

impl World {
    /// Uploads an object and delivers its S3 notification `times` times; returns the version id.
    pub async fn upload(&self, key: &str, body: Vec<u8>, times: usize) -> Option<String> {
        let size = body.len() as u64;
        let out =
            self.s3.put_object().bucket(&self.ingest_bucket).key(key).body(body.into()).send().await.unwrap();
        let v = out.version_id;
        let ev = layer::s3event::notification(&self.ingest_bucket, key, v.as_deref(), size);
        for _ in 0..times {
            self.deps.queue.send(&self.topo.ingest_queue, &ev).await.unwrap();
        }
        v
    }

    pub async fn drain_all(&self, q: &str) -> Vec<String> {
        let mut out = vec![];
        loop {
            let msgs = self.deps.queue.receive(q, 10).await.unwrap();
            if msgs.is_empty() {
                return out;
            }
            for m in msgs {
                out.push(m.body.clone());
                self.deps.queue.delete(q, &m.receipt).await.unwrap();
            }
        }
    }
}
