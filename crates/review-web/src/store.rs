//! The `WebStore` port: what the web application keeps besides the reviews themselves (the
//! queue as a page, leases, the append-only audit trail of views, reveals and decisions). The
//! file-backed adapter is [`crate::local`], the PostgreSQL one [`crate::pg`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which pending proposals a queue page shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueQuery {
    pub source: Option<String>,
    pub dataset: Option<String>,
    /// Score band: best score at least `min_score` and below `max_score`.
    pub min_score: Option<f64>,
    pub max_score: Option<f64>,
    /// Zero-based page number.
    pub page: i64,
    pub per_page: i64,
}

impl QueueQuery {
    /// Does a pending proposal pass the filters?
    pub fn admits(&self, source: &str, dataset: &str, score: f64) -> bool {
        self.source.as_deref().is_none_or(|s| s == source)
            && self.dataset.as_deref().is_none_or(|d| d == dataset)
            && self.min_score.is_none_or(|m| score >= m)
            && self.max_score.is_none_or(|m| score < m)
    }
}

/// One pending proposal as the queue lists it (ids and scores: no values).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueRow {
    pub review_id: i64,
    pub created_at: Option<DateTime<Utc>>,
    pub source: String,
    pub dataset: String,
    pub best_score: f64,
    pub candidates: i64,
    pub rule: String,
    /// Someone else holds an unexpired lease.
    pub taken_by: Option<String>,
}

/// Pending proposals per source and dataset (the filter choices and their counts).
#[derive(Debug, Clone, PartialEq)]
pub struct Facet {
    pub source: String,
    pub dataset: String,
    pub pending: i64,
}

/// One page of the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuePage {
    pub rows: Vec<QueueRow>,
    /// Pending proposals passing the filters.
    pub total: i64,
    /// Every pending proposal, per source and dataset (unfiltered).
    pub facets: Vec<Facet>,
}

/// The outcome of taking a lease on a proposal.
#[derive(Debug, Clone, PartialEq)]
pub enum Lease {
    /// Yours until then (taken now or renewed).
    Granted { until: DateTime<Utc> },
    /// Someone else's until then.
    Held { by: String, until: DateTime<Utc> },
}

/// What an audit row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    View,
    Reveal,
    Accept,
    Reject,
    Skip,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::View => "view",
            Action::Reveal => "reveal",
            Action::Accept => "accept",
            Action::Reject => "reject",
            Action::Skip => "skip",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Action::View, Action::Reveal, Action::Accept, Action::Reject, Action::Skip]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// One row of the audit trail: who did what to which proposal, when (a revealed field's name,
/// an accepted person's id, a reviewer's note; never a record's values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub at: DateTime<Utc>,
    pub reviewer: String,
    pub action: Action,
    pub review_id: i64,
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default)]
    pub person_id: Option<i64>,
    #[serde(default)]
    pub note: Option<String>,
}

/// Who decided a proposal and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub status: String,
    pub by: String,
    pub at: Option<DateTime<Utc>>,
}

/// Why the store could not answer (ids and causes, no values).
#[derive(Debug, thiserror::Error)]
#[error("review web store: {0}")]
pub struct StoreError(pub String);

impl From<pii_matching::IndexError> for StoreError {
    fn from(e: pii_matching::IndexError) -> Self {
        StoreError(e.to_string())
    }
}

/// Where the web application keeps the queue view, leases and the audit trail.
#[async_trait]
pub trait WebStore: Send + Sync {
    /// Pending proposals passing `q`, oldest first; `me`'s own leases do not show as taken.
    async fn queue(&self, q: &QueueQuery, me: &str) -> Result<QueuePage, StoreError>;
    /// Takes or renews the lease of `reviewer` on a proposal for `ttl`, unless another
    /// reviewer holds an unexpired one.
    async fn lease(&self, review_id: i64, reviewer: &str, ttl: chrono::Duration)
        -> Result<Lease, StoreError>;
    /// Gives up `reviewer`'s lease (someone else's stays).
    async fn release(&self, review_id: i64, reviewer: &str) -> Result<(), StoreError>;
    /// Appends one audit row (the trail is never updated or deleted).
    async fn append(&self, e: &AuditEvent) -> Result<(), StoreError>;
    /// Audit rows at or after `since`, in the order they were appended.
    async fn audit_since(&self, since: DateTime<Utc>) -> Result<Vec<AuditEvent>, StoreError>;
    /// The fields `reviewer` has revealed on a proposal.
    async fn revealed(&self, review_id: i64, reviewer: &str) -> Result<Vec<String>, StoreError>;
    /// Who decided a proposal and when (None: still pending or unknown).
    async fn decided(&self, review_id: i64) -> Result<Option<Decided>, StoreError>;
    /// The pending proposal after (`forward`) or before `from` in queue order that nobody else
    /// holds.
    async fn neighbour(&self, from: i64, me: &str, forward: bool) -> Result<Option<i64>, StoreError>;
}
