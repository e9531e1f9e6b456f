//! Building the handler's dependencies from the environment, once per cold start.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use layer::ledger::{PublishedContract, RunRecord, Status};
use layer::ports::{GuardFlag, Metadata, PortError};

use layer::config::names::DB_SSLROOTCERT;
use layer::config::{self, names, opt, var};
use layer::pipeline::{Deps, PipelineConfig};

use crate::handler::MatchDeps;
use crate::pg::{
    Db, DbSettings, DbTls, IamTarget, IamToken, PgIndex, PgReviews, SecretSource, SecretsManager,
};
use crate::rules_store::{ActiveRules, DynamoRules, DEFAULT_TTL};

/// The table the published matching rules are read from (the datasets table, items
/// `pk = rules#matching`); unset: the built-in rules.
pub const RULES_TABLE: &str = "LAKE_RULES_TABLE";

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

/// The values `LAKE_DB_SSLMODE` accepts.
pub const DB_SSLMODES: &str = "verify-full (the default), require, disable";

/// Database settings from `LAKE_DB_HOST`, `LAKE_DB_PORT`, `LAKE_DB_NAME`, `LAKE_DB_SSLMODE`,
/// `LAKE_DB_SSLROOTCERT` (the secret's host/port/dbname win when present).
pub fn db_settings_from_env() -> Result<DbSettings, SetupError> {
    db_settings_from(opt)
}

/// [`db_settings_from_env`] over any lookup (`get(name)`: the value, `None` when unset or empty).
pub fn db_settings_from(get: impl Fn(&str) -> Option<String>) -> Result<DbSettings, SetupError> {
    let port = match get(names::DB_PORT) {
        Some(p) => p.parse().map_err(|_| SetupError::Invalid(format!("{} is not a port", names::DB_PORT)))?,
        None => 5432,
    };
    Ok(DbSettings {
        host: get(names::DB_HOST).unwrap_or_else(|| "localhost".into()),
        port,
        dbname: get(names::DB_NAME).unwrap_or_else(|| "postgres".into()),
        tls: db_tls(&get)?,
        // the groups of a batch query concurrently (Matcher::match_batch); 4 measured best on 2 vCPUs
        max_connections: 4,
    })
}

/// `LAKE_DB_SSLMODE` (+ `LAKE_DB_SSLROOTCERT`): verify-full needs a readable PEM CA bundle, checked
/// here so a missing bundle fails the cold start with its name rather than every connection.
fn db_tls(get: &impl Fn(&str) -> Option<String>) -> Result<DbTls, SetupError> {
    let root_cert = get(DB_SSLROOTCERT).map(PathBuf::from);
    let tls = match get(names::DB_SSLMODE).as_deref() {
        None | Some("verify-full") => {
            let Some(ca) = root_cert else {
                return Err(SetupError::Invalid(format!(
                    "{}=verify-full (the default) needs {DB_SSLROOTCERT}: the CA bundle (PEM) to verify \
                     the database server against, e.g. the RDS bundle /var/task/rds-ca/global-bundle.pem",
                    names::DB_SSLMODE
                )));
            };
            let pem = std::fs::read_to_string(&ca).map_err(|e| {
                SetupError::Invalid(format!(
                    "{DB_SSLROOTCERT}={}: cannot read the CA bundle: {e}",
                    ca.display()
                ))
            })?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(SetupError::Invalid(format!(
                    "{DB_SSLROOTCERT}={}: no PEM certificate in the CA bundle",
                    ca.display()
                )));
            }
            return Ok(DbTls::VerifyFull { root_cert: Some(ca) });
        }
        Some("require") => DbTls::Require,
        Some("disable") => DbTls::Disable,
        Some(other) => {
            return Err(SetupError::Invalid(format!(
                "{} is {:?}; allowed: {DB_SSLMODES}",
                names::DB_SSLMODE,
                other.chars().take(40).collect::<String>()
            )))
        }
    };
    if root_cert.is_some() {
        tracing::warn!(
            mode = tls.mode(),
            "{DB_SSLROOTCERT} is ignored: only verify-full checks the certificate"
        );
    }
    Ok(tls)
}

/// The database of `LAKE_DB_SECRET_ARN` (Secrets Manager) with the settings from the
/// environment, `max_connections` pooled.
pub async fn db_from_env(max_connections: u32) -> Result<Arc<Db>, SetupError> {
    let sdk = layer::aws::sdk_config().await;
    let source = Arc::new(SecretsManager {
        client: aws_sdk_secretsmanager::Client::new(&sdk),
        secret_id: var(names::DB_SECRET_ARN)?,
    });
    let settings = DbSettings { max_connections, ..db_settings_from_env()? };
    tracing::info!(tls = settings.tls.mode(), "database connection settings read");
    Ok(Arc::new(Db::from_secret(source, settings).await?))
}

/// Where the function's database credentials come from: with `LAKE_DB_USER`, IAM database
/// authentication as that user on `LAKE_DB_HOST` (the role's credentials sign a token; the
/// region is the function's); otherwise the secret of `LAKE_DB_SECRET_ARN`.
pub fn db_source(sdk: &layer::aws::SdkConfig) -> Result<Arc<dyn SecretSource>, SetupError> {
    if let Some(user) = opt(names::DB_USER) {
        let settings = db_settings_from_env()?;
        if opt(names::DB_HOST).is_none() {
            return Err(SetupError::Invalid(format!(
                "{} needs {}: the token is signed for the host it logs in to",
                names::DB_USER,
                names::DB_HOST
            )));
        }
        let credentials = sdk.credentials_provider().ok_or_else(|| {
            SetupError::Invalid("IAM database authentication needs role credentials".into())
        })?;
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| SetupError::Invalid("IAM database authentication needs AWS_REGION".into()))?;
        tracing::info!(auth = "iam", "database login: IAM token for the function's own user");
        return Ok(Arc::new(IamToken {
            target: IamTarget { host: settings.host, port: settings.port, user, region },
            credentials,
        }));
    }
    tracing::info!(auth = "secret", "database login: Secrets Manager secret");
    Ok(Arc::new(SecretsManager {
        client: aws_sdk_secretsmanager::Client::new(sdk),
        secret_id: var(names::DB_SECRET_ARN)?,
    }))
}

/// AWS adapters for the pipeline ports, database credentials ([`db_source`]), PostgreSQL index and reviews.
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
    // no datasets table: matching records no dataset status (see `without_dataset_status`)
    let pipeline = without_dataset_status(Deps::on_sdk(&sdk, cfg, String::new())?);
    let source = db_source(&sdk)?;
    let settings = db_settings_from_env()?;
    tracing::info!(tls = settings.tls.mode(), "database connection settings read");
    let db = Arc::new(Db::from_secret(source, settings).await?);
    let rules = match opt(RULES_TABLE) {
        Some(table) => {
            let store = DynamoRules { client: layer::aws::dynamodb(&sdk), table };
            ActiveRules::published(Arc::new(store), DEFAULT_TTL)
        }
        None => {
            tracing::warn!("{RULES_TABLE} is not set: the built-in matching rules apply");
            ActiveRules::builtin()
        }
    };
    Ok(MatchDeps {
        pipeline,
        index: Arc::new(PgIndex::new(db.clone(), 4096)),
        reviews: Arc::new(PgReviews { db }),
        matcher: Arc::new(rules),
    })
}

/// The pipeline's ports with a metadata store that records no dataset status. The shared failure
/// path (`layer::pipeline::handle_batch`) sets the failed file's dataset status; pii-matching has
/// no datasets table to write (its role reads only the rules items there), so that call would fail
/// unseen in AWS on every failure. Matching's outcome is in the ledger (stage `matched` or FAILED).
pub fn without_dataset_status(mut deps: Deps) -> Deps {
    deps.meta = Arc::new(NoDatasetStatus(deps.meta));
    deps
}

/// [`without_dataset_status`]'s metadata: every call but `set_dataset_status` goes through.
struct NoDatasetStatus(Arc<dyn Metadata>);

#[async_trait]
impl Metadata for NoDatasetStatus {
    async fn put_run_if_absent(&self, run: &RunRecord) -> Result<bool, PortError> {
        self.0.put_run_if_absent(run).await
    }
    async fn put_run(&self, run: &RunRecord) -> Result<(), PortError> {
        self.0.put_run(run).await
    }
    async fn put_run_unless_done(&self, run: &RunRecord) -> Result<bool, PortError> {
        self.0.put_run_unless_done(run).await
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
    async fn contract_version(
        &self,
        source: &str,
        version: u32,
    ) -> Result<Option<PublishedContract>, PortError> {
        self.0.contract_version(source, version).await
    }
    async fn list_contracts(&self) -> Result<Vec<PublishedContract>, PortError> {
        self.0.list_contracts().await
    }
    async fn set_dataset_status(
        &self,
        _source: &str,
        _status: Status,
        file_id: &str,
    ) -> Result<(), PortError> {
        tracing::debug!(file_id, "dataset status not recorded by pii-matching");
        Ok(())
    }
    async fn content_owner(&self, source: &str, sha256: &str) -> Result<Option<String>, PortError> {
        self.0.content_owner(source, sha256).await
    }
    async fn claim_content(&self, source: &str, sha256: &str, file_id: &str) -> Result<String, PortError> {
        self.0.claim_content(source, sha256, file_id).await
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
}
