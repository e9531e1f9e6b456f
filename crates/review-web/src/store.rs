//! The `WebStore` port: what the web application keeps besides the reviews themselves (the
//! queue as a page, leases, the append-only audit trail of views, reveals and decisions). The
//! file-backed adapter is [`crate::local`], the PostgreSQL one [`crate::pg`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A row's place in queue order (oldest first: `created_at`, then `review_id`), as the queue's
/// page links carry it: `<micros since 1970>_<review_id>`, or `<review_id>` alone where the
/// store has no creation times (the embedded lake orders by id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: Option<DateTime<Utc>>,
    pub review_id: i64,
}

impl Cursor {
    /// The cursor of a listed row.
    pub fn of(r: &QueueRow) -> Self {
        Cursor { created_at: r.created_at, review_id: r.review_id }
    }

    /// Parses a page link's cursor (untrusted: digits only, bounded, a real time and id).
    pub fn parse(s: &str) -> Option<Self> {
        fn digits(s: &str, max: usize) -> Option<&str> {
            (!s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
        }
        let (time, id) = match s.split_once('_') {
            Some((t, id)) => (Some(t), id),
            None => (None, s),
        };
        let review_id = digits(id, 18)?.parse().ok()?;
        let created_at = match time {
            None => None,
            Some(t) => {
                let (neg, t) = t.strip_prefix('-').map_or((false, t), |t| (true, t));
                let micros: i64 = digits(t, 18)?.parse().ok()?;
                Some(DateTime::from_timestamp_micros(if neg { -micros } else { micros })?)
            }
        };
        Some(Cursor { created_at, review_id })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.created_at {
            Some(t) => write!(f, "{}_{}", t.timestamp_micros(), self.review_id),
            None => write!(f, "{}", self.review_id),
        }
    }
}

/// Where a queue page starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Position {
    /// The oldest pending proposals.
    #[default]
    First,
    /// The proposals right after this one (the next page).
    After(Cursor),
    /// The proposals right before this one (the previous page).
    Before(Cursor),
}

/// Which pending proposals a queue page shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueQuery {
    pub source: Option<String>,
    pub dataset: Option<String>,
    /// Score band: best score at least `min_score` and below `max_score`.
    pub min_score: Option<f64>,
    pub max_score: Option<f64>,
    /// Where the page starts (keyset paging: no offset is ever walked).
    pub at: Position,
    /// The zero-based number the link gave this page (a label for "page N of M": the rows come
    /// from `at` alone).
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
    /// The zero-based number of this page ("page N of M").
    pub page: i64,
    /// Older pending proposals exist before this page (a previous page).
    pub older: bool,
    /// Newer pending proposals exist after this page (a next page).
    pub newer: bool,
}

impl QueuePage {
    /// The number of pages at `per_page` (at least one).
    pub fn pages(&self, per_page: i64) -> i64 {
        let per = per_page.max(1);
        ((self.total + per - 1) / per).max(1)
    }
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
    /// The pending count passing `q`'s filters and the unfiltered per-source-and-dataset counts.
    async fn counts(&self, q: &QueueQuery) -> Result<(i64, Vec<Facet>), StoreError>;
    /// Up to `limit` pending proposals passing `q`'s filters, in queue order (oldest first):
    /// the first ones, the ones right after a cursor, or the ones right before it. `me`'s own
    /// leases do not show as taken.
    async fn rows(
        &self,
        q: &QueueQuery,
        at: Position,
        limit: i64,
        me: &str,
    ) -> Result<Vec<QueueRow>, StoreError>;
    /// One page of the queue (keyset paging: each page reads its own rows plus one, whatever
    /// its depth).
    async fn queue(&self, q: &QueueQuery, me: &str) -> Result<QueuePage, StoreError> {
        let (total, facets) = self.counts(q).await?;
        let per = q.per_page.max(1);
        let first = |rows: Vec<QueueRow>| {
            let newer = rows.len() as i64 > per;
            (rows.into_iter().take(per as usize).collect::<Vec<_>>(), false, newer)
        };
        let (rows, older, newer) = match q.at {
            Position::First => first(self.rows(q, Position::First, per + 1, me).await?),
            Position::After(c) => {
                let (rows, _, newer) = first(self.rows(q, Position::After(c), per + 1, me).await?);
                (rows, true, newer)
            }
            Position::Before(c) => {
                let mut rows = self.rows(q, Position::Before(c), per + 1, me).await?;
                if rows.len() as i64 > per {
                    rows.remove(0);
                    (rows, true, true)
                } else {
                    // back at the start: the first page, full
                    first(self.rows(q, Position::First, per + 1, me).await?)
                }
            }
        };
        let mut page = QueuePage { rows, total, facets, page: 0, older, newer };
        let last = page.pages(per) - 1;
        page.page = match (older, newer) {
            (false, _) => 0,
            (true, false) => last.max(1),
            (true, true) => q.page.clamp(1, (last - 1).max(1)),
        };
        Ok(page)
    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let t = DateTime::parse_from_rfc3339("2026-12-07T09:01:44.907615Z").unwrap().with_timezone(&Utc);
        let c = Cursor { created_at: Some(t), review_id: 48642 };
        assert_eq!(c.to_string(), "1796634104907615_48642");
        assert_eq!(Cursor::parse(&c.to_string()), Some(c));
        let early = Cursor { created_at: DateTime::from_timestamp_micros(-5), review_id: 1 };
        assert_eq!(Cursor::parse(&early.to_string()), Some(early));
        let bare = Cursor { created_at: None, review_id: 7 };
        assert_eq!((bare.to_string().as_str(), Cursor::parse("7")), ("7", Some(bare)));
        for bad in [
            "",
            "_",
            "abc",
            "1_",
            "_1",
            "-_1",
            "1_-2",
            "+1",
            "1.5",
            "1_2_3",
            " 1",
            "1%00",
            "1234567890123456789",
            "9999999999999999999_1",
            "1_99999999999999999999",
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
        // a far-future time is still a place in the order (the page after it is empty)
        assert!(Cursor::parse("99999999999999999_1").is_some());
    }
}
