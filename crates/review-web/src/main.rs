//! The `review-web` Lambda: the review router behind the county's internal load balancer, which
//! signs reviewers in (OIDC) and forwards their claims. Aurora as `lake_reviewer` (IAM token, or
//! the secret), TLS verify-full with the shipped RDS CA bundle; accepted rows completed into the
//! raw bucket with SSE-KMS. Configuration: `LAKE_RAW_BUCKET`, `LAKE_QUARANTINE_BUCKET`,
//! `LAKE_KMS_KEY_ID`, `LAKE_RUNS_TABLE`, the `LAKE_DB_*` settings, `LAKE_REVIEW_REVIEWER_GROUP`,
//! `LAKE_REVIEW_VIEWER_GROUP` (groups claim `LAKE_REVIEW_GROUPS_CLAIM`, default `groups`),
//! `LAKE_REVIEW_ALB_ARN` (the only load balancer whose signed claims are accepted; its keys from
//! the regional endpoint, or `LAKE_REVIEW_ALB_KEYS_URL`), `LAKE_REVIEW_SESSION_SECONDS` (the
//! longest sign-in accepted, default 8 hours).

use std::sync::Arc;

use layer::config::{names, opt, var};
use layer::pipeline::{Deps, PipelineConfig};
use pii_matching::pg::{Db, PgReviews};
use review_web::{App, Auth, ClaimsAuth, Settings};

/// The variables the function cannot start without.
pub const REQUIRED_ENV: &[&str] = &[
    "LAKE_RAW_BUCKET",
    "LAKE_QUARANTINE_BUCKET",
    "LAKE_KMS_KEY_ID",
    "LAKE_RUNS_TABLE",
    "LAKE_REVIEW_REVIEWER_GROUP",
    "LAKE_REVIEW_VIEWER_GROUP",
    "LAKE_REVIEW_ALB_ARN",
];

async fn app() -> Result<App, Box<dyn std::error::Error + Send + Sync>> {
    let sdk = layer::aws::sdk_config().await;
    let settings = pii_matching::setup::db_settings_from_env()?;
    let source = pii_matching::setup::db_source(&sdk)?;
    let db = Arc::new(
        Db::from_secret(source, pii_matching::pg::DbSettings { max_connections: 2, ..settings }).await?,
    );
    let cfg = PipelineConfig {
        raw_bucket: var(names::RAW_BUCKET)?,
        quarantine_bucket: var(names::QUARANTINE_BUCKET)?,
        kms_key: Some(var(names::KMS_KEY_ID)?),
        ..Default::default()
    };
    let deps = Deps::on_sdk(&sdk, cfg, String::new())?;
    let auth = Auth::Claims(ClaimsAuth {
        header: "x-amzn-oidc-data".into(),
        name_claim: opt("LAKE_REVIEW_NAME_CLAIM").unwrap_or_else(|| "email".into()),
        groups_claim: opt("LAKE_REVIEW_GROUPS_CLAIM").unwrap_or_else(|| "groups".into()),
        reviewer_group: var("LAKE_REVIEW_REVIEWER_GROUP")?,
        viewer_group: var("LAKE_REVIEW_VIEWER_GROUP")?,
        alb_arn: var("LAKE_REVIEW_ALB_ARN")?,
        keys: review_web::AlbKeys::new(opt("LAKE_REVIEW_ALB_KEYS_URL"))?,
        max_session: std::time::Duration::from_secs(match opt("LAKE_REVIEW_SESSION_SECONDS") {
            Some(s) => s
                .parse()
                .map_err(|_| format!("LAKE_REVIEW_SESSION_SECONDS {s:?} is not a number of seconds"))?,
            None => 8 * 3600,
        }),
    });
    Ok(App {
        desk: Arc::new(PgReviews { db: db.clone() }),
        store: Arc::new(review_web::pg::PgWebStore::new(db)),
        deps,
        auth,
        settings: Settings { tls: true, ..Settings::default() },
    })
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    layer::telemetry::init_json();
    let app = Arc::new(app().await?);
    lambda_http::run(review_web::router(app)).await
}
