//! A review store without PostgreSQL, for the embedded lake (`lake run --people`, `lake review`
//! without a database): proposed matches and the decision audit in one JSON file,
//! `<dir>/reviews.json`, with the same semantics as the `match_review` / `match_decision` tables:
//! a record reference is proposed once (a retry inserts nothing), a decision is recorded once per
//! (record, tier, decider), and only a pending review can be accepted or rejected.
//!
//! The file holds ids, scores, rules and per-field levels, never values. Writes go to a temporary
//! file renamed over the old one (a crash leaves the previous state); one process writes at a time
//! (the embedded lake is a single-user tool).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::index::{IndexError, MemoryIndex};
use crate::model::Person;
use crate::review::{ReviewDesk, ReviewError};
use crate::reviews::{DecisionRow, DecisionTier, ReviewRow, ReviewStatus, Reviews, StoredReview};

/// The file under the store's folder.
pub const FILE_NAME: &str = "reviews.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ReviewEntry {
    review_id: i64,
    record_ref: String,
    file_id: String,
    row_index: i32,
    dataset: String,
    source: String,
    bad_bucket: String,
    bad_key: String,
    candidates: serde_json::Value,
    best_score: f64,
    rule: String,
    status: ReviewStatus,
    accepted_person_id: Option<i64>,
    reviewer: Option<String>,
    decided_at: Option<String>,
    created_at: String,
    #[serde(default)]
    rules_version: Option<String>,
}

/// One audited decision as stored (the `match_decision` columns): the row and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDecision {
    #[serde(flatten)]
    pub decision: DecisionRow,
    pub decided_at: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    next_id: i64,
    /// The person file the proposals were matched against (so `lake review` can show and
    /// complete them without being told again).
    #[serde(default)]
    people_file: Option<String>,
    #[serde(default)]
    reviews: Vec<ReviewEntry>,
    #[serde(default)]
    decisions: Vec<StoredDecision>,
}

impl State {
    /// Appends a decision unless the same record, tier and decider is already audited (a retry).
    fn record_once(&mut self, d: DecisionRow, decided_at: String) -> bool {
        let seen = self
            .decisions
            .iter()
            .map(|x| &x.decision)
            .any(|x| x.record_ref == d.record_ref && x.tier == d.tier && x.decided_by == d.decided_by);
        if !seen {
            self.decisions.push(StoredDecision { decision: d, decided_at });
        }
        !seen
    }
}

impl From<&ReviewEntry> for StoredReview {
    fn from(e: &ReviewEntry) -> Self {
        StoredReview {
            review_id: e.review_id,
            record_ref: e.record_ref.clone(),
            file_id: e.file_id.clone(),
            row_index: e.row_index,
            dataset: e.dataset.clone(),
            source: e.source.clone(),
            bad_bucket: e.bad_bucket.clone(),
            bad_key: e.bad_key.clone(),
            candidates: e.candidates.clone(),
            best_score: e.best_score,
            rule: e.rule.clone(),
            status: e.status,
            accepted_person_id: e.accepted_person_id,
            reviewer: e.reviewer.clone(),
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

/// Reviews and their audit in `<dir>/reviews.json`.
#[derive(Debug)]
pub struct LocalReviews {
    dir: PathBuf,
    lock: Mutex<()>,
}

impl LocalReviews {
    /// The store in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), lock: Mutex::new(()) }
    }

    /// The JSON file of the store.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Has anything been written yet?
    pub fn exists(&self) -> bool {
        self.path().is_file()
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> IndexError {
        IndexError::Query(format!("review store {}: {what}: {e}", self.path().display()))
    }

    fn read(&self) -> Result<State, IndexError> {
        match std::fs::read(self.path()) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| self.err("unreadable", e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(State { next_id: 1, ..State::default() })
            }
            Err(e) => Err(self.err("cannot read", e)),
        }
    }

    fn write(&self, s: &State) -> Result<(), IndexError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.err("cannot create", e))?;
        let body = serde_json::to_vec_pretty(s).map_err(|e| self.err("cannot encode", e))?;
        let tmp = self.dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, body).map_err(|e| self.err("cannot write", e))?;
        std::fs::rename(&tmp, self.path()).map_err(|e| self.err("cannot write", e))
    }

    /// Reads, lets `f` change the state, writes it back when `f` says so; one caller at a time.
    fn update<T>(&self, f: impl FnOnce(&mut State) -> (T, bool)) -> Result<T, IndexError> {
        let _g = self.lock.lock().map_err(|_| self.err("lock", "poisoned"))?;
        let mut s = self.read()?;
        let (out, changed) = f(&mut s);
        if changed {
            self.write(&s)?;
        }
        Ok(out)
    }

    /// Reviews with a status, oldest first.
    pub fn list(&self, status: ReviewStatus, limit: i64) -> Result<Vec<StoredReview>, IndexError> {
        let s = self.read()?;
        let limit = usize::try_from(limit.max(0)).unwrap_or(usize::MAX);
        Ok(s.reviews.iter().filter(|r| r.status == status).take(limit).map(StoredReview::from).collect())
    }

    pub fn get(&self, review_id: i64) -> Result<Option<StoredReview>, IndexError> {
        Ok(self.read()?.reviews.iter().find(|r| r.review_id == review_id).map(StoredReview::from))
    }

    /// Accepts (with the chosen person) or rejects a pending review and audits the decision;
    /// false when the review does not exist or is not pending.
    pub fn decide(
        &self,
        review_id: i64,
        accept_person: Option<i64>,
        reviewer: &str,
    ) -> Result<bool, IndexError> {
        let status = ReviewStatus::decided(accept_person);
        self.update(|s| {
            let Some(r) =
                s.reviews.iter_mut().find(|r| r.review_id == review_id && r.status == ReviewStatus::Pending)
            else {
                return (false, false);
            };
            let t = now();
            r.status = status;
            r.accepted_person_id = accept_person;
            r.reviewer = Some(reviewer.into());
            r.decided_at = Some(t.clone());
            let d = DecisionRow {
                record_ref: r.record_ref.clone(),
                file_id: r.file_id.clone(),
                tier: DecisionTier::decided(accept_person),
                person_id: accept_person,
                score: Some(r.best_score),
                rule: "review".into(),
                decided_by: reviewer.into(),
                rules_version: None,
            };
            s.record_once(d, t);
            (true, true)
        })
    }

    /// Every audited decision, in the order they were made.
    pub fn decisions(&self) -> Result<Vec<StoredDecision>, IndexError> {
        Ok(self.read()?.decisions)
    }

    /// Counts of reviews and decisions for a file (as `PgReviews::counts`).
    pub fn counts(&self, file_id: &str) -> Result<(i64, i64), IndexError> {
        let s = self.read()?;
        let n = |c: usize| i64::try_from(c).unwrap_or(i64::MAX);
        Ok((
            n(s.reviews.iter().filter(|r| r.file_id == file_id).count()),
            n(s.decisions.iter().filter(|d| d.decision.file_id == file_id).count()),
        ))
    }

    /// The person file the proposals were matched against, if recorded.
    pub fn people_file(&self) -> Result<Option<PathBuf>, IndexError> {
        Ok(self.read()?.people_file.map(PathBuf::from))
    }

    /// Records the person file the proposals are matched against.
    pub fn set_people_file(&self, path: &Path) -> Result<(), IndexError> {
        let p = path.display().to_string();
        self.update(|s| {
            let changed = s.people_file.as_deref() != Some(p.as_str());
            s.people_file = Some(p);
            ((), changed)
        })
    }
}

#[async_trait]
impl Reviews for LocalReviews {
    async fn propose(&self, rows: &[ReviewRow]) -> Result<u64, IndexError> {
        if rows.is_empty() {
            return Ok(0);
        }
        self.update(|s| {
            let mut n = 0;
            let t = now();
            for r in rows {
                if s.reviews.iter().any(|x| x.record_ref == r.record_ref) {
                    continue;
                }
                let id = s.next_id.max(1);
                s.next_id = id + 1;
                s.reviews.push(ReviewEntry {
                    review_id: id,
                    record_ref: r.record_ref.clone(),
                    file_id: r.file_id.clone(),
                    row_index: r.row_index,
                    dataset: r.dataset.clone(),
                    source: r.source.clone(),
                    bad_bucket: r.bad_bucket.clone(),
                    bad_key: r.bad_key.clone(),
                    candidates: r.candidates.clone(),
                    best_score: r.best_score,
                    rule: r.rule.clone(),
                    status: ReviewStatus::Pending,
                    accepted_person_id: None,
                    reviewer: None,
                    decided_at: None,
                    created_at: t.clone(),
                    rules_version: r.rules_version.clone(),
                });
                n += 1;
            }
            (n, n > 0)
        })
    }

    async fn record(&self, rows: &[DecisionRow]) -> Result<u64, IndexError> {
        if rows.is_empty() {
            return Ok(0);
        }
        self.update(|s| {
            let mut n = 0;
            let t = now();
            for d in rows {
                if s.record_once(d.clone(), t.clone()) {
                    n += 1;
                }
            }
            (n, n > 0)
        })
    }
}

/// Loads a person file into memory (the caller's checks and messages; never values).
pub type PeopleLoader = dyn Fn(&Path) -> Result<MemoryIndex, String> + Send + Sync;

/// The embedded review desk: the store, and the person file its proposals were matched against
/// (given, else the one the store records), loaded on first use.
pub struct LocalDesk {
    reviews: LocalReviews,
    people: Option<PathBuf>,
    load: Box<PeopleLoader>,
    index: OnceLock<MemoryIndex>,
}

impl LocalDesk {
    pub fn new(reviews: LocalReviews, people: Option<PathBuf>, load: Box<PeopleLoader>) -> Self {
        Self { reviews, people, load, index: OnceLock::new() }
    }

    fn index(&self) -> Result<&MemoryIndex, ReviewError> {
        if let Some(i) = self.index.get() {
            return Ok(i);
        }
        let path = match &self.people {
            Some(p) => p.clone(),
            None => self.reviews.people_file()?.ok_or_else(|| {
                ReviewError::People(
                    "the embedded review store does not name its person file: pass --people FILE".into(),
                )
            })?,
        };
        let index = (self.load)(&path).map_err(ReviewError::People)?;
        Ok(self.index.get_or_init(|| index))
    }
}

#[async_trait]
impl ReviewDesk for LocalDesk {
    async fn list(&self, status: ReviewStatus, limit: i64) -> Result<Vec<StoredReview>, ReviewError> {
        Ok(self.reviews.list(status, limit)?)
    }

    async fn get(&self, review_id: i64) -> Result<Option<StoredReview>, ReviewError> {
        Ok(self.reviews.get(review_id)?)
    }

    async fn person(&self, person_id: i64) -> Result<Option<Person>, ReviewError> {
        Ok(self.index()?.person(person_id).cloned())
    }

    async fn decide(
        &self,
        review_id: i64,
        accept_person: Option<i64>,
        reviewer: &str,
    ) -> Result<bool, ReviewError> {
        Ok(self.reviews.decide(review_id, accept_person, reviewer)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(r: &str) -> ReviewRow {
        ReviewRow {
            record_ref: r.into(),
            file_id: "f1".into(),
            row_index: 0,
            dataset: "encounter".into(),
            source: "s".into(),
            bad_bucket: "quarantine".into(),
            bad_key: "bad/k.bad.parquet".into(),
            candidates: serde_json::json!([{"person_id": 7, "score": 25.0, "levels": {}}]),
            best_score: 25.0,
            rule: "score>=20".into(),
            rules_version: Some("v1".into()),
        }
    }

    #[tokio::test]
    async fn proposes_once_decides_once_and_survives_a_reopen() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalReviews::new(d.path());
        assert!(s.list(ReviewStatus::Pending, 10).unwrap().is_empty());
        assert_eq!(s.propose(&[row("f1:0"), row("f1:1")]).await.unwrap(), 2);
        assert_eq!(s.propose(&[row("f1:0"), row("f1:2")]).await.unwrap(), 1, "a retry inserts nothing");
        let s = LocalReviews::new(d.path());
        let p = s.list(ReviewStatus::Pending, 10).unwrap();
        assert_eq!(p.iter().map(|r| r.review_id).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(s.decide(1, Some(7), "ana").unwrap());
        assert!(!s.decide(1, None, "bo").unwrap(), "decided once");
        assert!(!s.decide(99, None, "bo").unwrap());
        assert!(s.decide(2, None, "bo").unwrap());
        assert_eq!(s.get(1).unwrap().unwrap().status, "accepted");
        assert_eq!(s.get(2).unwrap().unwrap().status, "rejected");
        assert_eq!(s.list(ReviewStatus::Pending, 10).unwrap().len(), 1);
        let ds = s.decisions().unwrap();
        assert_eq!(ds.len(), 2);
        assert_eq!((ds[0].decision.tier, ds[0].decision.person_id), (DecisionTier::Accepted, Some(7)));
        assert_eq!(ds[1].decision.tier, DecisionTier::Rejected);
        assert_eq!(s.counts("f1").unwrap(), (3, 2));
    }

    /// A store written before the decision tier was an enum (tiers as plain strings) reads back
    /// unchanged, and what is written now uses the same words.
    #[tokio::test]
    async fn tiers_stored_as_strings_read_back() {
        let d = tempfile::tempdir().unwrap();
        let fixture = include_str!("../tests/fixtures/reviews_2026-12.json");
        std::fs::write(d.path().join(FILE_NAME), fixture).unwrap();
        let s = LocalReviews::new(d.path());
        let tiers =
            |s: &LocalReviews| s.decisions().unwrap().iter().map(|d| d.decision.tier).collect::<Vec<_>>();
        use DecisionTier as T;
        assert_eq!(tiers(&s), [T::Exact, T::Proposed, T::None, T::Accepted, T::Rejected]);
        assert_eq!(s.get(1).unwrap().unwrap().status, ReviewStatus::Accepted);
        assert!(s.decide(3, Some(9000013), "cy").unwrap());
        assert_eq!(tiers(&s), [T::Exact, T::Proposed, T::None, T::Accepted, T::Rejected, T::Accepted]);
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.path().join(FILE_NAME)).unwrap()).unwrap();
        let words: Vec<&str> =
            written["decisions"].as_array().unwrap().iter().map(|d| d["tier"].as_str().unwrap()).collect();
        assert_eq!(words, ["exact", "proposed", "none", "accepted", "rejected", "accepted"]);
        let all: Vec<String> = DecisionTier::ALL.iter().map(|t| t.to_string()).collect();
        assert!(all.iter().all(|w| w.parse::<DecisionTier>().unwrap().as_str() == w));

        // a tier no code writes: a clear error naming the file, nothing guessed
        std::fs::write(
            d.path().join(FILE_NAME),
            fixture.replace("\"rejected\", \"person_id\"", "\"rejectd\", \"person_id\""),
        )
        .unwrap();
        let e = s.decisions().unwrap_err().to_string();
        assert!(e.contains("reviews.json") && e.contains("rejectd"), "{e}");
        assert!("rejectd".parse::<DecisionTier>().unwrap_err().contains("expected exact, proposed"));
    }
}
