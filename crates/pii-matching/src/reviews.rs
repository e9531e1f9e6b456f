//! The `Reviews` port (where proposed matches and the decision audit go), its row types, and the
//! in-memory adapter. The PostgreSQL adapter (`pg`) and the file-backed store (`review_store`)
//! implement the same port.

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::IndexError;
use crate::matcher::Tier;

/// A proposed match waiting for a data scientist.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewRow {
    pub record_ref: String,
    pub file_id: String,
    pub row_index: i32,
    pub dataset: String,
    pub source: String,
    pub bad_bucket: String,
    pub bad_key: String,
    /// `[Scored]`, best first: person ids, scores, levels (no values).
    pub candidates: serde_json::Value,
    pub best_score: f64,
    pub rule: String,
    /// The rules version that proposed it (`v<N>` published, `builtin-<hash>`).
    pub rules_version: Option<String>,
}

/// One audited decision.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DecisionRow {
    pub record_ref: String,
    pub file_id: String,
    pub tier: DecisionTier,
    pub person_id: Option<i64>,
    pub score: Option<f64>,
    pub rule: String,
    pub decided_by: String,
    /// The rules version of a matcher decision (none on a reviewer's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_version: Option<String>,
}

/// What a decision row records: the matcher's tier for a record, or a reviewer's outcome for a
/// proposal. The closed set of `match_decision.tier` (its CHECK constraint) and of the embedded
/// store's decisions, written as these lowercase words (rows stored as strings read back as is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecisionTier {
    /// The matcher settled the record on one person.
    Exact,
    /// The matcher proposed candidates to a reviewer.
    Proposed,
    /// The matcher found no one.
    None,
    /// A reviewer accepted a candidate.
    Accepted,
    /// A reviewer rejected every candidate.
    Rejected,
}

impl DecisionTier {
    pub const ALL: [DecisionTier; 5] = [
        DecisionTier::Exact,
        DecisionTier::Proposed,
        DecisionTier::None,
        DecisionTier::Accepted,
        DecisionTier::Rejected,
    ];

    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionTier::Exact => "exact",
            DecisionTier::Proposed => "proposed",
            DecisionTier::None => "none",
            DecisionTier::Accepted => "accepted",
            DecisionTier::Rejected => "rejected",
        }
    }

    /// The tier a reviewer's decision records: accepted with a person, else rejected.
    pub fn decided(accept_person: Option<i64>) -> Self {
        if accept_person.is_some() {
            DecisionTier::Accepted
        } else {
            DecisionTier::Rejected
        }
    }

    /// A reviewer's decision on a proposal: the tier its audit row records (none while pending).
    pub fn of_review(status: ReviewStatus) -> Option<Self> {
        match status {
            ReviewStatus::Pending => Option::None,
            ReviewStatus::Accepted => Some(DecisionTier::Accepted),
            ReviewStatus::Rejected => Some(DecisionTier::Rejected),
        }
    }
}

impl From<Tier> for DecisionTier {
    fn from(t: Tier) -> Self {
        match t {
            Tier::Exact => DecisionTier::Exact,
            Tier::Proposed => DecisionTier::Proposed,
            Tier::None => DecisionTier::None,
        }
    }
}

impl std::fmt::Display for DecisionTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DecisionTier {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
            format!("unknown decision tier {s:?} (expected exact, proposed, none, accepted or rejected)")
        })
    }
}

/// Where a proposal stands: the closed set of `match_review.status` (its CHECK constraint) and
/// of the embedded store's `status`, written as these lowercase words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewStatus {
    /// Waiting for a reviewer.
    Pending,
    Accepted,
    Rejected,
}

impl ReviewStatus {
    pub const ALL: [ReviewStatus; 3] =
        [ReviewStatus::Pending, ReviewStatus::Accepted, ReviewStatus::Rejected];

    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Pending => "pending",
            ReviewStatus::Accepted => "accepted",
            ReviewStatus::Rejected => "rejected",
        }
    }

    /// The status a decision leaves: accepted with a person, else rejected.
    pub fn decided(accept_person: Option<i64>) -> Self {
        if accept_person.is_some() {
            ReviewStatus::Accepted
        } else {
            ReviewStatus::Rejected
        }
    }
}

impl std::fmt::Display for ReviewStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ReviewStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown review status {s:?} (expected pending, accepted or rejected)"))
    }
}

impl PartialEq<str> for ReviewStatus {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ReviewStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A stored review (as `lake review` shows it).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReview {
    pub review_id: i64,
    pub record_ref: String,
    pub file_id: String,
    pub row_index: i32,
    pub dataset: String,
    pub source: String,
    pub bad_bucket: String,
    pub bad_key: String,
    pub candidates: serde_json::Value,
    pub best_score: f64,
    pub rule: String,
    pub status: ReviewStatus,
    pub accepted_person_id: Option<i64>,
    pub reviewer: Option<String>,
}

/// Where proposed matches and the decision audit go.
#[async_trait]
pub trait Reviews: Send + Sync {
    /// Inserts reviews; an existing record reference is left alone. Returns how many were new.
    async fn propose(&self, rows: &[ReviewRow]) -> Result<u64, IndexError>;
    /// Appends audit rows; a decision already recorded is left alone.
    async fn record(&self, rows: &[DecisionRow]) -> Result<u64, IndexError>;
}

/// Reviews kept in memory (embedded runs and tests).
#[derive(Debug, Default)]
pub struct MemoryReviews {
    pub reviews: Mutex<Vec<ReviewRow>>,
    pub decisions: Mutex<Vec<DecisionRow>>,
}

#[async_trait]
impl Reviews for MemoryReviews {
    async fn propose(&self, rows: &[ReviewRow]) -> Result<u64, IndexError> {
        let mut g = self.reviews.lock().map_err(|_| IndexError::Query("poisoned".into()))?;
        let have: HashSet<String> = g.iter().map(|r| r.record_ref.clone()).collect();
        let new: Vec<ReviewRow> = rows.iter().filter(|r| !have.contains(&r.record_ref)).cloned().collect();
        let n = new.len() as u64;
        g.extend(new);
        Ok(n)
    }

    async fn record(&self, rows: &[DecisionRow]) -> Result<u64, IndexError> {
        let mut g = self.decisions.lock().map_err(|_| IndexError::Query("poisoned".into()))?;
        let key = |d: &DecisionRow| (d.record_ref.clone(), d.tier, d.decided_by.clone());
        let have: HashSet<_> = g.iter().map(key).collect();
        let new: Vec<DecisionRow> = rows.iter().filter(|r| !have.contains(&key(r))).cloned().collect();
        let n = new.len() as u64;
        g.extend(new);
        Ok(n)
    }
}
