//! The WorkSpaces reaper Lambda: once a week it terminates Amazon WorkSpaces unused for longer
//! than the policy allows (in `enforce` mode; `dry-run` only reports), emails each user whose
//! WorkSpace will pass the limit before the next run or was terminated, and writes a CSV report,
//! a history snapshot and activity analytics (figures and a trend chart) for managers. Termination
//! destroys data, so every doubt (exempt tag, unknown tags or status, protected state, first
//! sighting, a changed state at re-check, a tripped cap, dry run) means keep. The decision is a
//! pure function (`decide`) over plain fleet data (`fleet`); AWS sits behind small ports
//! (`WorkspacesApi`, `ObjectStore`, `Notifier`, `Wiki`) with SDK/HTTP and in-memory adapters.
//! This crate must not depend on polars, the transform engine or any other Lambda crate, and it
//! logs ids and counts only.

pub mod analytics;
pub mod decide;
pub mod email;
pub mod error;
pub mod fleet;
pub mod notice;
pub mod notify;
pub mod observe;
pub mod policy;
pub mod port;
pub mod report;
pub mod run;
pub mod sdk;
pub mod sent;
pub mod store;
pub mod wiki;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;

pub use decide::{decide, plan, Decision, Plan, Rule, Verdict};
pub use error::ReaperError;
pub use fleet::{Connection, Observed, Warning, Workspace, WsState};
pub use policy::{Mode, Policy};
pub use port::{ApiError, Backoff, FakeWorkspace, FakeWorkspaces, WorkspacesApi};
pub use run::{load_known, observe_and_plan, preview, History, Preview, Reaper, RunSummary};
pub use wiki::{ConfluenceWiki, Wiki};

/// Environment variables the Lambda cannot start without.
pub const REQUIRED_ENV: &[&str] = &[
    "REAPER_REPORTS_BUCKET",
    "REAPER_KMS_KEY_ID",
    "REAPER_ALERT_TOPIC_ARN",
    "REAPER_EMAIL_FROM",
    "REAPER_EMAIL_CONFIGURATION_SET",
];

/// The Lambda's settings, read and validated at cold start.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvConfig {
    pub reports_bucket: String,
    pub kms_key_id: String,
    pub alert_topic_arn: String,
    /// `REAPER_EMAIL_FROM` and `REAPER_EMAIL_CONFIGURATION_SET`: how user notices are sent.
    pub email: notify::EmailSender,
    /// Optional (`REAPER_CONFLUENCE_SECRET_ARN`): the Secrets Manager secret with the Confluence
    /// base URL, page id and token. Unset: no Confluence page.
    pub confluence_secret_arn: Option<String>,
    pub policy: Policy,
}

/// Optional: the secret that enables the Confluence page update.
pub const CONFLUENCE_SECRET_ENV: &str = "REAPER_CONFLUENCE_SECRET_ARN";

impl EnvConfig {
    /// Reads settings through `get` (the process environment in the Lambda, a map in tests).
    /// An empty value counts as missing. `REAPER_POLICY` names a TOML file replacing the embedded
    /// `config/reaper.toml`; `REAPER_MODE` and the other `REAPER_*` overrides apply on top.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ReaperError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let mut vals = Vec::with_capacity(REQUIRED_ENV.len());
        for name in REQUIRED_ENV {
            vals.push(get(name).ok_or(ReaperError::MissingEnv(name))?);
        }
        let mut policy = match get("REAPER_POLICY") {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| ReaperError::Policy(format!("REAPER_POLICY {path}: {e}")))?;
                Policy::from_toml(&text)?
            }
            None => Policy::from_toml(policy::EMBEDDED_POLICY)?,
        };
        policy.apply_env(&get)?;
        policy.validate()?;
        let mut it = vals.into_iter();
        let mut next = || it.next().unwrap_or_default();
        let (reports_bucket, kms_key_id, alert_topic_arn) = (next(), next(), next());
        let email = notify::EmailSender { from: next(), configuration_set: next() };
        if !run::valid_address(&email.from) {
            return Err(ReaperError::Policy(format!(
                "REAPER_EMAIL_FROM must be one email address, got {:?}",
                email.from
            )));
        }
        Ok(Self {
            reports_bucket,
            kms_key_id,
            alert_topic_arn,
            email,
            confluence_secret_arn: get(CONFLUENCE_SECRET_ENV),
            policy,
        })
    }
}

impl Reaper {
    /// Builds the AWS-backed reaper from the process environment (once per cold start).
    pub async fn from_env() -> Result<Self, ReaperError> {
        let env = EnvConfig::from_lookup(&|k| std::env::var(k).ok())?;
        let sdk = aws_config::load_from_env().await;
        Ok(Self {
            api: Arc::new(sdk::SdkWorkspaces::new(aws_sdk_workspaces::Client::new(&sdk))),
            store: Arc::new(store::S3Store::new(
                aws_sdk_s3::Client::new(&sdk),
                env.reports_bucket,
                env.kms_key_id,
            )),
            notifier: Arc::new(notify::AwsNotifier::new(
                aws_sdk_sesv2::Client::new(&sdk),
                env.email,
                aws_sdk_sns::Client::new(&sdk),
                env.alert_topic_arn,
            )),
            wiki: match env.confluence_secret_arn {
                Some(secret_id) => {
                    let client = aws_sdk_secretsmanager::Client::new(&sdk);
                    let source = wiki::CredsSource::SecretsManager { client, secret_id };
                    let w = ConfluenceWiki::new(source).map_err(|e| ReaperError::Policy(e.to_string()))?;
                    Some(Arc::new(w) as Arc<dyn Wiki>)
                }
                None => None,
            },
            policy: env.policy,
            backoff: Backoff::default(),
        })
    }
}

/// The ports `lake reaper plan` reads an account through: WorkSpaces over the SDK and, when a
/// reports bucket is named, that bucket for first-seen history (read only, so no KMS key is
/// needed). Honours `AWS_ENDPOINT_URL` like every other client.
pub async fn aws_plan_ports(
    reports_bucket: Option<String>,
) -> (Arc<dyn WorkspacesApi>, Option<Arc<dyn store::ObjectStore>>) {
    let sdk = aws_config::load_from_env().await;
    let api = Arc::new(sdk::SdkWorkspaces::new(aws_sdk_workspaces::Client::new(&sdk)));
    let history = reports_bucket.map(|b| {
        Arc::new(store::S3Store::new(aws_sdk_s3::Client::new(&sdk), b, String::new()))
            as Arc<dyn store::ObjectStore>
    });
    (api, history)
}

/// The run time of a scheduled event: its `time` field, else now.
pub fn event_time(event: &serde_json::Value) -> DateTime<Utc> {
    event
        .get("time")
        .and_then(|t| t.as_str())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc))
}

/// The Lambda handler for the weekly EventBridge schedule. A failed run alerts on-call and
/// returns the error, so Lambda retries and finally sends the event to the DLQ.
pub async fn handle(
    reaper: &Reaper,
    event: LambdaEvent<serde_json::Value>,
) -> Result<RunSummary, ReaperError> {
    let now = event_time(&event.payload);
    match reaper.run(now).await {
        Ok(s) => Ok(s),
        Err(e) => {
            tracing::error!(kind = e.kind(), error = %e, "reaper run failed");
            let alert = notify::Alert {
                subject: "WorkSpaces reaper: run failed".into(),
                body: format!(
                    "The run for {} failed and nothing further was done: {e}",
                    now.format("%Y-%m-%d")
                ),
            };
            if let Err(n) = reaper.notifier.alert(&alert).await {
                tracing::error!(error = %n, "alert not sent");
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn missing_env_is_named() {
        let mut m = env(&[
            ("REAPER_REPORTS_BUCKET", "reports"),
            ("REAPER_KMS_KEY_ID", "alias/lake"),
            ("REAPER_ALERT_TOPIC_ARN", "arn:aws-us-gov:sns:us-gov-west-1:1:alerts"),
            ("REAPER_EMAIL_CONFIGURATION_SET", "county-lake-dev-reaper"),
        ]);
        let err = EnvConfig::from_lookup(&|k| m.get(k).cloned()).unwrap_err();
        assert_eq!(err.to_string(), "missing required environment variable REAPER_EMAIL_FROM");
        m.insert("REAPER_EMAIL_FROM".into(), "workspaces@county.gov".into());
        m.insert("REAPER_DRY_RUN".into(), "false".into());
        let cfg = EnvConfig::from_lookup(&|k| m.get(k).cloned()).unwrap();
        assert_eq!(cfg.reports_bucket, "reports");
        assert_eq!(cfg.email.from, "workspaces@county.gov");
        assert_eq!(cfg.email.configuration_set, "county-lake-dev-reaper");
        assert!(!cfg.policy.dry_run);
        assert_eq!(cfg.policy.mode(), Mode::Enforce);
        assert_eq!(cfg.confluence_secret_arn, None, "Confluence is optional");
        m.insert(
            "REAPER_CONFLUENCE_SECRET_ARN".into(),
            "arn:aws-us-gov:secretsmanager:us-gov-west-1:1:secret:wiki".into(),
        );
        let cfg = EnvConfig::from_lookup(&|k| m.get(k).cloned()).unwrap();
        assert_eq!(
            cfg.confluence_secret_arn.as_deref(),
            Some("arn:aws-us-gov:secretsmanager:us-gov-west-1:1:secret:wiki")
        );
        m.insert("REAPER_KMS_KEY_ID".into(), " ".into());
        let err = EnvConfig::from_lookup(&|k| m.get(k).cloned()).unwrap_err();
        assert!(err.to_string().contains("REAPER_KMS_KEY_ID"));
    }

    #[test]
    fn the_mode_comes_from_the_template_and_a_bad_sender_is_refused() {
        let mut m = env(&[
            ("REAPER_REPORTS_BUCKET", "reports"),
            ("REAPER_KMS_KEY_ID", "alias/lake"),
            ("REAPER_ALERT_TOPIC_ARN", "arn:aws-us-gov:sns:us-gov-west-1:1:alerts"),
            ("REAPER_EMAIL_FROM", "workspaces@county.gov"),
            ("REAPER_EMAIL_CONFIGURATION_SET", "reaper"),
            ("REAPER_MODE", "enforce"),
        ]);
        assert_eq!(EnvConfig::from_lookup(&|k| m.get(k).cloned()).unwrap().policy.mode(), Mode::Enforce);
        m.insert("REAPER_MODE".into(), "dry-run".into());
        assert_eq!(EnvConfig::from_lookup(&|k| m.get(k).cloned()).unwrap().policy.mode(), Mode::DryRun);
        m.insert("REAPER_MODE".into(), "live".into());
        let err = EnvConfig::from_lookup(&|k| m.get(k).cloned()).unwrap_err().to_string();
        assert_eq!(err, "invalid policy: REAPER_MODE must be dry-run or enforce, got \"live\"");
        m.insert("REAPER_MODE".into(), "enforce".into());
        m.insert("REAPER_DRY_RUN".into(), "true".into());
        let err = EnvConfig::from_lookup(&|k| m.get(k).cloned()).unwrap_err().to_string();
        assert!(err.contains("REAPER_MODE=enforce contradicts REAPER_DRY_RUN"), "{err}");
        m.remove("REAPER_DRY_RUN");
        m.insert("REAPER_EMAIL_FROM".into(), "a@b.gov, c@d.gov".into());
        let err = EnvConfig::from_lookup(&|k| m.get(k).cloned()).unwrap_err().to_string();
        assert!(err.contains("REAPER_EMAIL_FROM must be one email address"), "{err}");
    }

    #[test]
    fn scheduled_event_time_is_the_run_time() {
        let ev = serde_json::json!({"detail-type": "Scheduled Event", "source": "aws.events",
            "time": "2025-03-10T06:00:00Z", "detail": {}});
        assert_eq!(event_time(&ev).to_rfc3339(), "2025-03-10T06:00:00+00:00");
    }
}
