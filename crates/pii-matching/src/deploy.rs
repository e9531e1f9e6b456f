//! The schema on every deploy: a CloudFormation custom resource whose function (in the VPC,
//! the only one holding the Aurora master secret) applies the migrations on Create and Update
//! and answers CloudFormation on the pre-signed response URL. A failed migration answers
//! FAILED with its reason (SQLSTATE and the DDL's message, never row values), so the stack
//! create or update fails visibly and rolls back; Delete changes nothing (the person index and
//! the review audit outlive any stack). Concurrent deploys wait for each other on the
//! migration lock; a deploy with nothing new applies nothing (`Db::apply`). A database ahead of
//! this code (a stack rollback to an older function after a newer one migrated) answers SUCCESS
//! and says so (`Data.DatabaseAhead`, a warning in the log): the newer migrations stay, the
//! rollback completes.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

use sqlx::migrate::Migrator;

use crate::error::IndexError;
use crate::pg::{Db, MIGRATOR};

/// The physical id of the schema resource: the same on every update, so CloudFormation never
/// sees a replacement (which would delete the old resource).
pub const PHYSICAL_ID: &str = "county-lake-matching-schema";

/// What CloudFormation asks of a custom resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

/// A custom resource request (the fields this function reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomResourceRequest {
    pub request_type: RequestType,
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
}

/// The answer CloudFormation waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomResourceResponse {
    /// `SUCCESS` or `FAILED`.
    pub status: String,
    pub reason: String,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    /// `Applied`: the versions this deploy applied (comma-separated; empty when up to date);
    /// `DatabaseAhead`: versions the database has that this code does not know (empty normally).
    pub data: std::collections::BTreeMap<String, String>,
}

/// Runs the request against the database `db` opens (called only for Create and Update) with
/// the shipped migrations.
pub async fn respond_to<F, Fut>(req: &CustomResourceRequest, db: F) -> CustomResourceResponse
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Arc<Db>, IndexError>>,
{
    respond_with(req, db, &MIGRATOR).await
}

fn versions(a: &[crate::pg::Applied]) -> String {
    a.iter().map(|a| a.version.to_string()).collect::<Vec<_>>().join(",")
}

/// [`respond_to`] with the migrations `m`.
pub async fn respond_with<F, Fut>(req: &CustomResourceRequest, db: F, m: &Migrator) -> CustomResourceResponse
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Arc<Db>, IndexError>>,
{
    let outcome = match req.request_type {
        RequestType::Delete => Ok(Default::default()),
        RequestType::Create | RequestType::Update => async { db().await?.apply_report(m).await }.await,
    };
    let (status, reason, applied, ahead) = match outcome {
        Ok(r) => {
            let (applied, ahead) = (versions(&r.applied), versions(&r.ahead));
            if ahead.is_empty() {
                tracing::info!(request = ?req.request_type, applied = %applied, "schema migrated");
            } else {
                tracing::warn!(
                    request = ?req.request_type,
                    applied = %applied,
                    database_ahead = %ahead,
                    "the database has migrations this code does not know (a rollback after a newer deploy); left as they are"
                );
            }
            ("SUCCESS", String::new(), applied, ahead)
        }
        Err(e) => {
            tracing::error!(request = ?req.request_type, kind = %e.kind(), error = %e, "schema migration failed");
            (
                "FAILED",
                format!("{}: {e}", e.kind()).chars().take(1000).collect(),
                String::new(),
                String::new(),
            )
        }
    };
    CustomResourceResponse {
        status: status.into(),
        reason,
        physical_resource_id: PHYSICAL_ID.into(),
        stack_id: req.stack_id.clone(),
        request_id: req.request_id.clone(),
        logical_resource_id: req.logical_resource_id.clone(),
        data: [("Applied".to_string(), applied), ("DatabaseAhead".to_string(), ahead)].into_iter().collect(),
    }
}

/// Puts the response to the pre-signed URL (HTTPS in AWS; plain HTTP accepted for tests).
pub async fn send(url: &str, resp: &CustomResourceResponse) -> Result<(), String> {
    let body = serde_json::to_vec(resp).map_err(|e| e.to_string())?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
        .map_err(|e| format!("no native root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    // CloudFormation's pre-signed URL is signed for an empty content type
    let req = http::Request::put(url)
        .header(http::header::CONTENT_TYPE, "")
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let res = client.request(req).await.map_err(|e| format!("PUT response: {e}"))?;
    let status = res.status();
    let _ = res.into_body().collect().await;
    if !status.is_success() {
        return Err(format!("PUT response: HTTP {status}"));
    }
    Ok(())
}
