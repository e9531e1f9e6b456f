//! Configuration from the environment, validated once at cold start.

/// A required variable is missing or empty: the message names it, so the fix is obvious.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: environment variable {0} is not set (or empty)")]
pub struct MissingVar(pub String);

/// A required variable.
pub fn var(name: &str) -> Result<String, MissingVar> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(MissingVar(name.to_string())),
    }
}

/// An optional variable.
pub fn opt(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Names of the pipeline's environment variables: one place, shared by code, template test, docs.
pub mod names {
    pub const DATASETS_TABLE: &str = "LAKE_DATASETS_TABLE";
    pub const RUNS_TABLE: &str = "LAKE_RUNS_TABLE";
    pub const QUEUE_DELIMITED: &str = "LAKE_QUEUE_DELIMITED";
    pub const QUEUE_JSON: &str = "LAKE_QUEUE_JSON";
    pub const DLQ_URL: &str = "LAKE_DLQ_URL";
    pub const ALERT_TOPIC_ARN: &str = "LAKE_ALERT_TOPIC_ARN";
    pub const FORMAT_FAMILY: &str = "LAKE_FORMAT_FAMILY";
    pub const RAW_BUCKET: &str = "LAKE_RAW_BUCKET";
    pub const QUARANTINE_BUCKET: &str = "LAKE_QUARANTINE_BUCKET";
    pub const KMS_KEY_ID: &str = "LAKE_KMS_KEY_ID";
    pub const PII_QUEUE_URL: &str = "LAKE_PII_QUEUE_URL";
    /// The schema migration only: the Aurora master secret (username, password; host/port/dbname
    /// when present). Without `LAKE_DB_USER` pii-matching logs in with it too (a local stack).
    pub const DB_SECRET_ARN: &str = "LAKE_DB_SECRET_ARN";
    /// pii-matching in AWS: its own database user (`lake_matcher`), logged in with IAM database
    /// authentication (a SigV4 token signed with the function's role; no secret is read).
    pub const DB_USER: &str = "LAKE_DB_USER";
    /// pii-matching: database host, port and name when the secret does not carry them.
    pub const DB_HOST: &str = "LAKE_DB_HOST";
    pub const DB_PORT: &str = "LAKE_DB_PORT";
    pub const DB_NAME: &str = "LAKE_DB_NAME";
    /// pii-matching: `verify-full` (default; what the template sets, with `LAKE_DB_SSLROOTCERT`),
    /// `require` (TLS without certificate checks) or `disable` (local tests only).
    pub const DB_SSLMODE: &str = "LAKE_DB_SSLMODE";
    /// pii-matching: the CA bundle (PEM) that `verify-full` checks the server certificate
    /// against; in AWS the RDS bundle shipped with the function (docs/DEPLOY.md).
    pub const DB_SSLROOTCERT: &str = "LAKE_DB_SSLROOTCERT";
}

/// Checks a Lambda's required variables at cold start; the error names every missing one.
pub fn require_all(names: &[&str]) -> Result<(), MissingVar> {
    let missing: Vec<&str> = names.iter().copied().filter(|n| opt(n).is_none()).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(MissingVar(missing.join(", ")))
    }
}
