//! The WorkSpaces port: the four calls the reaper makes, a backoff wrapper for throttling, and an
//! in-memory fake that counts calls (the SDK adapter lives in `sdk.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::fleet::{Workspace, WsState};

/// Most ids one status, state or terminate call may carry (the WorkSpaces API limit).
pub const BATCH: usize = 25;

/// A WorkSpaces call failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// Throttling or another transient failure: worth retrying after a pause.
    #[error("throttled: {0}")]
    Throttled(String),
    /// IAM refused the call (`AccessDeniedException`), e.g. the exempt-tag guard.
    #[error("access denied: {0}")]
    Denied(String),
    #[error("{0}")]
    Failed(String),
}

/// One page of DescribeWorkspaces.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub workspaces: Vec<Workspace>,
    pub next_token: Option<String>,
}

/// One row of DescribeWorkspacesConnectionStatus. `last_connection: None` means never connected.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub id: String,
    pub last_connection: Option<DateTime<Utc>>,
}

/// A per-item failure in a TerminateWorkspaces answer.
#[derive(Debug, Clone, PartialEq)]
pub struct TerminateFailure {
    pub id: String,
    pub code: String,
    pub message: String,
}

/// What the reaper needs from Amazon WorkSpaces.
#[async_trait]
pub trait WorkspacesApi: Send + Sync {
    /// One page of DescribeWorkspaces (with each WorkSpace's tags), for one directory or all.
    async fn describe_page(
        &self,
        directory: Option<&str>,
        next_token: Option<String>,
    ) -> Result<Page, ApiError>;
    /// Current state of up to [`BATCH`] WorkSpaces; ids that no longer exist are absent.
    async fn current_states(&self, ids: &[String]) -> Result<Vec<(String, WsState)>, ApiError>;
    /// Connection status of up to [`BATCH`] WorkSpaces; ids missing from the answer are unknown.
    async fn connection_status(&self, ids: &[String]) -> Result<Vec<Status>, ApiError>;
    /// Terminates up to [`BATCH`] WorkSpaces, returning the per-item failures.
    async fn terminate(&self, ids: &[String]) -> Result<Vec<TerminateFailure>, ApiError>;
}

/// Exponential backoff on [`ApiError::Throttled`].
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { first: Duration::from_millis(200), max: Duration::from_secs(10), attempts: 6 }
    }
}

impl Backoff {
    /// For tests: retries without waiting long.
    pub fn fast() -> Self {
        Self { first: Duration::from_millis(1), max: Duration::from_millis(4), attempts: 6 }
    }

    /// Runs `call` until it succeeds, fails for good, or runs out of attempts.
    pub async fn run<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let mut delay = self.first;
        let mut attempt = 1;
        loop {
            match call().await {
                Err(ApiError::Throttled(_)) if attempt < self.attempts => {
                    tracing::warn!(call = what, attempt, "throttled, backing off");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.max);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// One WorkSpace in the fake, with what the status call reports for it.
#[derive(Debug, Clone)]
pub struct FakeWorkspace {
    pub ws: Workspace,
    pub last_connection: Option<DateTime<Utc>>,
}

/// Call counters of the fake.
#[derive(Debug, Default)]
pub struct Calls {
    pub describe: AtomicUsize,
    pub states: AtomicUsize,
    pub status: AtomicUsize,
    pub terminate: AtomicUsize,
}

/// In-memory WorkSpaces: pages of 25, per-id status failures, per-id terminate failures,
/// scripted throttling, and state changes between describe and terminate.
#[derive(Debug, Default)]
pub struct FakeWorkspaces {
    fleet: Mutex<BTreeMap<String, FakeWorkspace>>,
    /// Ids the status call leaves out of its answer.
    pub status_missing: BTreeSet<String>,
    /// Ids TerminateWorkspaces reports as failed.
    pub terminate_fails: BTreeSet<String>,
    /// Ids IAM refuses to terminate: a TerminateWorkspaces call naming any of them fails as a
    /// whole with AccessDenied, as the real API does when a policy denies one resource.
    pub terminate_denied: BTreeSet<String>,
    /// Ids whose state becomes this value right after the first describe (the re-check sees it).
    pub state_after_describe: BTreeMap<String, WsState>,
    /// The next this-many calls (of any kind) answer "throttled".
    pub throttle_next: AtomicUsize,
    pub calls: Calls,
    terminated: Mutex<Vec<String>>,
    /// Largest id count seen in one status/state/terminate call.
    pub max_batch: AtomicUsize,
}

impl FakeWorkspaces {
    pub fn new(fleet: impl IntoIterator<Item = FakeWorkspace>) -> Self {
        let s = Self::default();
        if let Ok(mut f) = s.fleet.lock() {
            f.extend(fleet.into_iter().map(|w| (w.ws.id.clone(), w)));
        }
        s
    }
    /// Ids terminated so far, in call order.
    pub fn terminated(&self) -> Vec<String> {
        self.terminated.lock().map(|t| t.clone()).unwrap_or_default()
    }
    pub fn count(c: &AtomicUsize) -> usize {
        c.load(Ordering::SeqCst)
    }
    fn throttled(&self) -> bool {
        self.throttle_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }
    fn batch(&self, ids: &[String]) -> Result<(), ApiError> {
        self.max_batch.fetch_max(ids.len(), Ordering::SeqCst);
        if ids.len() > BATCH {
            return Err(ApiError::Failed(format!("{} ids in one call (limit {BATCH})", ids.len())));
        }
        if self.throttled() {
            return Err(ApiError::Throttled("ThrottlingException".into()));
        }
        Ok(())
    }
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, FakeWorkspace>>, ApiError> {
        self.fleet.lock().map_err(|_| ApiError::Failed("fake poisoned".into()))
    }
}

#[async_trait]
impl WorkspacesApi for FakeWorkspaces {
    async fn describe_page(
        &self,
        directory: Option<&str>,
        next_token: Option<String>,
    ) -> Result<Page, ApiError> {
        self.calls.describe.fetch_add(1, Ordering::SeqCst);
        if self.throttled() {
            return Err(ApiError::Throttled("ThrottlingException".into()));
        }
        let mut fleet = self.lock()?;
        let start: usize = next_token
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|_| ApiError::Failed("bad next token".into()))?
            .unwrap_or(0);
        let matching: Vec<&FakeWorkspace> =
            fleet.values().filter(|w| directory.is_none_or(|d| w.ws.directory == d)).collect();
        let workspaces: Vec<Workspace> =
            matching.iter().skip(start).take(BATCH).map(|w| w.ws.clone()).collect();
        let next = start + workspaces.len();
        let next_token = (next < matching.len()).then(|| next.to_string());
        if next_token.is_none() {
            for (id, st) in &self.state_after_describe {
                if let Some(w) = fleet.get_mut(id) {
                    w.ws.state = st.clone();
                }
            }
        }
        Ok(Page { workspaces, next_token })
    }

    async fn current_states(&self, ids: &[String]) -> Result<Vec<(String, WsState)>, ApiError> {
        self.calls.states.fetch_add(1, Ordering::SeqCst);
        self.batch(ids)?;
        let fleet = self.lock()?;
        Ok(ids.iter().filter_map(|id| fleet.get(id).map(|w| (id.clone(), w.ws.state.clone()))).collect())
    }

    async fn connection_status(&self, ids: &[String]) -> Result<Vec<Status>, ApiError> {
        self.calls.status.fetch_add(1, Ordering::SeqCst);
        self.batch(ids)?;
        let fleet = self.lock()?;
        Ok(ids
            .iter()
            .filter(|id| !self.status_missing.contains(*id))
            .filter_map(|id| {
                fleet.get(id).map(|w| Status { id: id.clone(), last_connection: w.last_connection })
            })
            .collect())
    }

    async fn terminate(&self, ids: &[String]) -> Result<Vec<TerminateFailure>, ApiError> {
        self.calls.terminate.fetch_add(1, Ordering::SeqCst);
        self.batch(ids)?;
        if let Some(id) = ids.iter().find(|id| self.terminate_denied.contains(*id)) {
            return Err(ApiError::Denied(format!(
                "AccessDeniedException: not authorized to perform workspaces:TerminateWorkspaces on \
                 workspace/{id} with an explicit deny"
            )));
        }
        let mut fleet = self.lock()?;
        let mut failures = Vec::new();
        for id in ids {
            if self.terminate_fails.contains(id) {
                failures.push(TerminateFailure {
                    id: id.clone(),
                    code: "InvalidResourceState".into(),
                    message: "fake refused".into(),
                });
            } else if fleet.remove(id).is_some() {
                if let Ok(mut t) = self.terminated.lock() {
                    t.push(id.clone());
                }
            } else {
                failures.push(TerminateFailure {
                    id: id.clone(),
                    code: "ResourceNotFound".into(),
                    message: "no such WorkSpace".into(),
                });
            }
        }
        Ok(failures)
    }
}
