//! The web store of the embedded lake (`lake review serve --lake DIR` without a database): the
//! queue read from the lake's review store (`reviews.json`), leases in memory (one local server
//! process), and the audit trail in `audit.jsonl` beside it, a file only ever opened for
//! appending: this adapter has no way to rewrite or delete a line.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pii_matching::review::{candidates, PENDING};
use pii_matching::review_store::LocalReviews;
use pii_matching::reviews::DecisionTier;

use crate::store::{
    Action, AuditEvent, Decided, Facet, Lease, Position, QueueQuery, QueueRow, StoreError, WebStore,
};

/// The audit file under the review store's folder.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// Queue, leases and audit over the embedded lake's review store in `dir`.
pub struct LocalWebStore {
    reviews: LocalReviews,
    audit: PathBuf,
    leases: Mutex<HashMap<i64, (String, DateTime<Utc>)>>,
    append_lock: Mutex<()>,
}

impl LocalWebStore {
    /// The store over the review store folder `dir` (`<lake>/reviews`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            audit: dir.join(AUDIT_FILE),
            reviews: LocalReviews::new(dir),
            leases: Mutex::new(HashMap::new()),
            append_lock: Mutex::new(()),
        }
    }

    fn pending(&self) -> Result<Vec<pii_matching::reviews::StoredReview>, StoreError> {
        Ok(self.reviews.list(PENDING, i64::MAX)?)
    }

    fn taken(&self, id: i64, me: &str) -> Result<Option<String>, StoreError> {
        let g = self.leases.lock().map_err(|_| StoreError("lease lock poisoned".into()))?;
        Ok(g.get(&id).filter(|(who, until)| who != me && *until > Utc::now()).map(|(who, _)| who.clone()))
    }

    fn read_audit(&self) -> Result<Vec<AuditEvent>, StoreError> {
        let f = match std::fs::File::open(&self.audit) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError(format!("{}: {e}", self.audit.display()))),
        };
        let mut out = Vec::new();
        for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| StoreError(format!("{}: {e}", self.audit.display())))?;
            if line.trim().is_empty() {
                continue;
            }
            out.push(
                serde_json::from_str(&line)
                    .map_err(|e| StoreError(format!("{} line {}: {e}", self.audit.display(), n + 1)))?,
            );
        }
        Ok(out)
    }
}

#[async_trait]
impl WebStore for LocalWebStore {
    async fn counts(&self, q: &QueueQuery) -> Result<(i64, Vec<Facet>), StoreError> {
        let pending = self.pending()?;
        let mut facets: Vec<Facet> = Vec::new();
        for r in &pending {
            match facets.iter_mut().find(|f| f.source == r.source && f.dataset == r.dataset) {
                Some(f) => f.pending += 1,
                None => {
                    facets.push(Facet { source: r.source.clone(), dataset: r.dataset.clone(), pending: 1 })
                }
            }
        }
        facets.sort_by(|a, b| (&a.source, &a.dataset).cmp(&(&b.source, &b.dataset)));
        let total = pending.iter().filter(|r| q.admits(&r.source, &r.dataset, r.best_score)).count();
        Ok((i64::try_from(total).unwrap_or(i64::MAX), facets))
    }

    async fn rows(
        &self,
        q: &QueueQuery,
        at: Position,
        limit: i64,
        me: &str,
    ) -> Result<Vec<QueueRow>, StoreError> {
        // the embedded store lists in id order (its ids grow with time): the cursor's id places it
        let pending = self.pending()?;
        let hits = pending.iter().filter(|r| q.admits(&r.source, &r.dataset, r.best_score));
        let limit = usize::try_from(limit.max(1)).unwrap_or(50);
        let chosen: Vec<_> = match at {
            Position::First => hits.take(limit).collect(),
            Position::After(c) => hits.filter(|r| r.review_id > c.review_id).take(limit).collect(),
            Position::Before(c) => {
                let mut v: Vec<_> = hits.rev().filter(|r| r.review_id < c.review_id).take(limit).collect();
                v.reverse();
                v
            }
        };
        let mut rows = Vec::new();
        for r in chosen {
            rows.push(QueueRow {
                review_id: r.review_id,
                created_at: None,
                source: r.source.clone(),
                dataset: r.dataset.clone(),
                best_score: r.best_score,
                candidates: i64::try_from(candidates(r).len()).unwrap_or(0),
                rule: r.rule.clone(),
                taken_by: self.taken(r.review_id, me)?,
            });
        }
        Ok(rows)
    }

    async fn lease(
        &self,
        review_id: i64,
        reviewer: &str,
        ttl: chrono::Duration,
    ) -> Result<Lease, StoreError> {
        let mut g = self.leases.lock().map_err(|_| StoreError("lease lock poisoned".into()))?;
        let now = Utc::now();
        if let Some((who, until)) = g.get(&review_id) {
            if who != reviewer && *until > now {
                return Ok(Lease::Held { by: who.clone(), until: *until });
            }
        }
        let until = now + ttl;
        g.insert(review_id, (reviewer.to_string(), until));
        Ok(Lease::Granted { until })
    }

    async fn release(&self, review_id: i64, reviewer: &str) -> Result<(), StoreError> {
        let mut g = self.leases.lock().map_err(|_| StoreError("lease lock poisoned".into()))?;
        if g.get(&review_id).is_some_and(|(who, _)| who == reviewer) {
            g.remove(&review_id);
        }
        Ok(())
    }

    async fn append(&self, e: &AuditEvent) -> Result<(), StoreError> {
        let _g = self.append_lock.lock().map_err(|_| StoreError("audit lock poisoned".into()))?;
        let err = |e: std::io::Error| StoreError(format!("{}: {e}", self.audit.display()));
        if let Some(dir) = self.audit.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut line = serde_json::to_vec(e).map_err(|e| StoreError(e.to_string()))?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new().append(true).create(true).open(&self.audit).map_err(err)?;
        f.write_all(&line).map_err(err)?;
        f.sync_data().map_err(err)
    }

    async fn audit_since(&self, since: DateTime<Utc>) -> Result<Vec<AuditEvent>, StoreError> {
        Ok(self.read_audit()?.into_iter().filter(|e| e.at >= since).collect())
    }

    async fn revealed(&self, review_id: i64, reviewer: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .read_audit()?
            .into_iter()
            .filter(|e| e.action == Action::Reveal && e.review_id == review_id && e.reviewer == reviewer)
            .filter_map(|e| e.field)
            .collect())
    }

    async fn decided(&self, review_id: i64) -> Result<Option<Decided>, StoreError> {
        let Some(r) = self.reviews.get(review_id)? else { return Ok(None) };
        if r.status == PENDING {
            return Ok(None);
        }
        let by = r.reviewer.clone().unwrap_or_default();
        let at = self
            .reviews
            .decisions()?
            .into_iter()
            .find(|d| {
                d.decision.record_ref == r.record_ref
                    && Some(d.decision.tier) == DecisionTier::of_review(r.status)
                    && d.decision.decided_by == by
            })
            .and_then(|d| DateTime::parse_from_rfc3339(&d.decided_at).ok())
            .map(|t| t.with_timezone(&Utc));
        Ok(Some(Decided { status: r.status.to_string(), by, at }))
    }

    async fn neighbour(&self, from: i64, me: &str, forward: bool) -> Result<Option<i64>, StoreError> {
        let pending = self.pending()?;
        let ids: Vec<i64> = if forward {
            pending.iter().map(|r| r.review_id).filter(|&id| id > from).collect()
        } else {
            pending.iter().rev().map(|r| r.review_id).filter(|&id| id < from).collect()
        };
        for id in ids {
            if self.taken(id, me)?.is_none() {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }
}
