//! Building the handler's dependencies from the environment, once per cold start.

use std::sync::Arc;

use layer::config::{self, names, opt, var};
use layer::pipeline::{Deps, PipelineConfig};

use crate::handler::MatchDeps;
use crate::matcher::Matcher;
use crate::pg::{Db, DbSettings, PgIndex, PgReviews, SecretsManager};
use crate::rules::Rules;

/// A setup failure (names the variable or the secret problem; never a credential).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Missing(#[from] config::MissingVar),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
}

/// Database settings from `LAKE_DB_HOST`, `LAKE_DB_PORT`, `LAKE_DB_NAME`, `LAKE_DB_SSLMODE`
/// (the secret's host/port/dbname win when present).
pub fn db_settings_from_env() -> Result<DbSettings, SetupError> {
    let port = match opt(names::DB_PORT) {
        Some(p) => p.parse().map_err(|_| SetupError::Invalid(format!("{} is not a port", names::DB_PORT)))?,
        None => 5432,
    };
    let require_tls = match opt(names::DB_SSLMODE).as_deref() {
        None | Some("require") => true,
        Some("disable") => false,
        Some(_) => {
            return Err(SetupError::Invalid(format!("{} must be require or disable", names::DB_SSLMODE)))
        }
    };
    Ok(DbSettings {
        host: opt(names::DB_HOST).unwrap_or_else(|| "localhost".into()),
        port,
        dbname: opt(names::DB_NAME).unwrap_or_else(|| "postgres".into()),
        require_tls,
        max_connections: 2,
    })
}

/// AWS adapters for the pipeline ports, Secrets Manager credentials, PostgreSQL index and reviews.
pub async fn deps_from_env() -> Result<MatchDeps, SetupError> {
    let sdk = layer::aws::sdk_config().await;
    let cfg = PipelineConfig {
        dlq: var(names::DLQ_URL)?,
        alert_topic: var(names::ALERT_TOPIC_ARN)?,
        raw_bucket: var(names::RAW_BUCKET)?,
        quarantine_bucket: var(names::QUARANTINE_BUCKET)?,
        kms_key: Some(var(names::KMS_KEY_ID)?),
        pii_queue: opt(names::PII_QUEUE_URL).unwrap_or_default(),
        ..Default::default()
    };
    let pipeline = Deps {
        store: Arc::new(layer::aws::S3Store { client: layer::aws::s3(&sdk) }),
        queue: Arc::new(layer::aws::SqsQueue { client: layer::aws::sqs(&sdk) }),
        notifier: Arc::new(layer::aws::SnsNotifier { client: layer::aws::sns(&sdk) }),
        meta: Arc::new(layer::aws::DynamoMetadata {
            client: layer::aws::dynamodb(&sdk),
            runs_table: var(names::RUNS_TABLE)?,
            datasets_table: opt(names::DATASETS_TABLE).unwrap_or_default(),
        }),
        cfg,
    };
    let source = Arc::new(SecretsManager {
        client: aws_sdk_secretsmanager::Client::new(&sdk),
        secret_id: var(names::DB_SECRET_ARN)?,
    });
    let db = Arc::new(Db::from_secret(source, db_settings_from_env()?).await?);
    Ok(MatchDeps {
        pipeline,
        index: Arc::new(PgIndex { db: db.clone(), chunk: 4096 }),
        reviews: Arc::new(PgReviews { db }),
        matcher: Arc::new(Matcher::new(Rules::builtin())),
    })
}
