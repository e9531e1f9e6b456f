//! The WorkSpaces port over the AWS SDK. The client comes from `aws_config`, so `AWS_ENDPOINT_URL`
//! (moto in tests) is honoured without code here.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_workspaces::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_workspaces::types::TerminateRequest;
use aws_sdk_workspaces::Client;
use chrono::{DateTime, Utc};

use crate::fleet::{Workspace, WsState};
use crate::port::{ApiError, Page, Status, TerminateFailure, WorkspacesApi, BATCH};

/// Tag lookups in flight at once while describing a page.
const TAG_CONCURRENCY: usize = 8;

/// Amazon WorkSpaces through `aws-sdk-workspaces`.
#[derive(Debug, Clone)]
pub struct SdkWorkspaces {
    client: Client,
}

impl SdkWorkspaces {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

const THROTTLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottledException",
    "ServiceUnavailable",
];

/// Codes of an IAM refusal.
const DENIED_CODES: &[&str] = &["AccessDeniedException", "AccessDenied", "UnauthorizedOperation"];

/// Classifies an SDK error: throttling and transport trouble are retried, an IAM refusal is told
/// apart (terminations are then retried one by one), the rest is final.
fn classify<E, R>(e: SdkError<E, R>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let transient = match &e {
        SdkError::ServiceError(s) => s.err().code().is_some_and(|c| THROTTLE_CODES.contains(&c)),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        _ => false,
    };
    let denied =
        matches!(&e, SdkError::ServiceError(s) if s.err().code().is_some_and(|c| DENIED_CODES.contains(&c)));
    let msg = aws_sdk_workspaces::error::DisplayErrorContext(&e).to_string();
    if transient {
        ApiError::Throttled(msg)
    } else if denied {
        ApiError::Denied(msg)
    } else {
        ApiError::Failed(msg)
    }
}

fn to_utc(t: &aws_sdk_workspaces::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

impl SdkWorkspaces {
    async fn tags(&self, id: &str) -> Result<BTreeMap<String, String>, ApiError> {
        let out = self.client.describe_tags().resource_id(id).send().await.map_err(classify)?;
        Ok(out
            .tag_list()
            .iter()
            .map(|t| (t.key().to_string(), t.value().unwrap_or("").to_string()))
            .collect())
    }
}

#[async_trait]
impl WorkspacesApi for SdkWorkspaces {
    async fn describe_page(
        &self,
        directory: Option<&str>,
        next_token: Option<String>,
    ) -> Result<Page, ApiError> {
        let out = self
            .client
            .describe_workspaces()
            .set_directory_id(directory.map(str::to_string))
            .set_next_token(next_token)
            .limit(BATCH as i32)
            .send()
            .await
            .map_err(classify)?;
        let mut workspaces: Vec<Workspace> = out
            .workspaces()
            .iter()
            .filter_map(|w| {
                Some(Workspace {
                    id: w.workspace_id()?.to_string(),
                    user: w.user_name().unwrap_or("").to_string(),
                    directory: w.directory_id().unwrap_or("").to_string(),
                    state: w.state().map_or(WsState::Other("UNKNOWN".into()), |s| WsState::parse(s.as_str())),
                    bundle: w.bundle_id().unwrap_or("").to_string(),
                    running_mode: w
                        .workspace_properties()
                        .and_then(|p| p.running_mode())
                        .map_or(String::new(), |m| m.as_str().to_string()),
                    tags: None,
                })
            })
            .collect();
        // Tags are not part of DescribeWorkspaces: one DescribeTags per WorkSpace, a few at a time.
        // A failed lookup leaves `tags: None`, which keeps the WorkSpace.
        for group in workspaces.chunks_mut(TAG_CONCURRENCY) {
            let mut set = tokio::task::JoinSet::new();
            for (i, w) in group.iter().enumerate() {
                let me = self.clone();
                let id = w.id.clone();
                set.spawn(async move {
                    let backoff = crate::port::Backoff::default();
                    (i, backoff.run("DescribeTags", || me.tags(&id)).await)
                });
            }
            while let Some(joined) = set.join_next().await {
                if let Ok((i, Ok(tags))) = joined {
                    if let Some(w) = group.get_mut(i) {
                        w.tags = Some(tags);
                    }
                }
            }
        }
        Ok(Page { workspaces, next_token: out.next_token().map(str::to_string) })
    }

    async fn current_states(&self, ids: &[String]) -> Result<Vec<(String, WsState)>, ApiError> {
        let out = self
            .client
            .describe_workspaces()
            .set_workspace_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(classify)?;
        Ok(out
            .workspaces()
            .iter()
            .filter_map(|w| {
                let id = w.workspace_id()?.to_string();
                Some((id, w.state().map_or(WsState::Other("UNKNOWN".into()), |s| WsState::parse(s.as_str()))))
            })
            .collect())
    }

    async fn connection_status(&self, ids: &[String]) -> Result<Vec<Status>, ApiError> {
        let out = self
            .client
            .describe_workspaces_connection_status()
            .set_workspace_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(classify)?;
        Ok(out
            .workspaces_connection_status()
            .iter()
            .filter_map(|s| {
                Some(Status {
                    id: s.workspace_id()?.to_string(),
                    last_connection: s.last_known_user_connection_timestamp().and_then(to_utc),
                })
            })
            .collect())
    }

    async fn terminate(&self, ids: &[String]) -> Result<Vec<TerminateFailure>, ApiError> {
        let reqs = ids
            .iter()
            .map(|id| TerminateRequest::builder().workspace_id(id).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::Failed(e.to_string()))?;
        let out = self
            .client
            .terminate_workspaces()
            .set_terminate_workspace_requests(Some(reqs))
            .send()
            .await
            .map_err(classify)?;
        Ok(out
            .failed_requests()
            .iter()
            .map(|f| TerminateFailure {
                id: f.workspace_id().unwrap_or("").to_string(),
                code: f.error_code().unwrap_or("").to_string(),
                message: f.error_message().unwrap_or("").to_string(),
            })
            .collect())
    }
}
