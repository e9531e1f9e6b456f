//! The web store in PostgreSQL (Aurora in AWS, as role `lake_reviewer`): the queue straight from
//! `match_review`, leases in `review_lease` (one row per proposal, taken with one conditional
//! upsert so two reviewers cannot both hold it), the audit trail in `review_audit` (insert and
//! select only; a trigger refuses update, delete and truncate). Tables: migration 0004.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pii_matching::pg::Db;
use sqlx::Row;

use crate::store::{
    Action, AuditEvent, Cursor, Decided, Facet, Lease, Position, QueueQuery, QueueRow, StoreError, WebStore,
};

/// The web store on the matching database.
pub struct PgWebStore {
    pub db: Arc<Db>,
    /// The per-(source, dataset) counts, recomputed at most every [`FACETS_TTL`] (a full
    /// index scan at 100,000 pending; a few seconds stale is fine for a queue's counts).
    facets: Mutex<Option<(Instant, Vec<Facet>)>>,
    /// Pending counts of score-band filters (the only counts the facets cannot answer), each
    /// reused for [`FACETS_TTL`] like the facets.
    bands: Mutex<HashMap<BandKey, (Instant, i64)>>,
}

/// A score-band filter: source, dataset, and the band's bounds (as bits: f64 is not `Eq`).
type BandKey = (Option<String>, Option<String>, Option<u64>, Option<u64>);

/// Band counts kept at most (distinct filters within one TTL; beyond, the cache starts over).
const MAX_BANDS: usize = 256;

/// How long the queue's counts are reused.
pub const FACETS_TTL: Duration = Duration::from_secs(5);

impl PgWebStore {
    pub fn new(db: Arc<Db>) -> Self {
        Self { db, facets: Mutex::new(None), bands: Mutex::new(HashMap::new()) }
    }

    async fn facets(&self) -> Result<Vec<Facet>, StoreError> {
        if let Ok(g) = self.facets.lock() {
            if let Some((_, f)) = g.as_ref().filter(|(at, _)| at.elapsed() < FACETS_TTL) {
                return Ok(f.clone());
            }
        }
        let f = self
            .run(|pool| async move {
                sqlx::query(
                    "SELECT source, dataset, count(*) AS n FROM match_review WHERE status = 'pending' \
                     GROUP BY source, dataset ORDER BY source, dataset",
                )
                .fetch_all(&pool)
                .await?
                .iter()
                .map(|r| Ok(Facet { source: r.try_get(0)?, dataset: r.try_get(1)?, pending: r.try_get(2)? }))
                .collect::<Result<Vec<_>, sqlx::Error>>()
            })
            .await?;
        if let Ok(mut g) = self.facets.lock() {
            *g = Some((Instant::now(), f.clone()));
        }
        Ok(f)
    }

    /// The pending count of a score-band filter: cached for [`FACETS_TTL`], else one count.
    async fn band_count(&self, q: &QueueQuery) -> Result<i64, StoreError> {
        let key: BandKey = (
            q.source.clone(),
            q.dataset.clone(),
            q.min_score.map(f64::to_bits),
            q.max_score.map(f64::to_bits),
        );
        if let Some(n) = self
            .bands
            .lock()
            .ok()
            .and_then(|g| g.get(&key).filter(|(at, _)| at.elapsed() < FACETS_TTL).map(|(_, n)| *n))
        {
            return Ok(n);
        }
        let count = format!("SELECT count(*) FROM match_review r WHERE {FILTER}");
        let n: i64 = self
            .run(|pool| {
                let count = &count;
                async move {
                    sqlx::query_scalar(count)
                        .bind(&q.source)
                        .bind(&q.dataset)
                        .bind(q.min_score)
                        .bind(q.max_score)
                        .fetch_one(&pool)
                        .await
                }
            })
            .await?;
        if let Ok(mut g) = self.bands.lock() {
            if g.len() >= MAX_BANDS {
                g.clear();
            }
            g.insert(key, (Instant::now(), n));
        }
        Ok(n)
    }
}

const FILTER: &str = "r.status = 'pending' AND ($1::text IS NULL OR r.source = $1) \
     AND ($2::text IS NULL OR r.dataset = $2) AND ($3::float8 IS NULL OR r.best_score >= $3) \
     AND ($4::float8 IS NULL OR r.best_score < $4)";

/// The `WHERE` of a page: the filters `q` sets (only those, so the planner sees each as a plain
/// comparison it can serve from an index) and the keyset bound. Parameters: `$1` the reviewer,
/// `$2` the page size, then source, dataset, min and max score as present, then the cursor's
/// time and id.
fn page_where(q: &QueueQuery, at: Position) -> String {
    let mut w = String::from("r.status = 'pending'");
    let mut n = 2;
    let mut next = || {
        n += 1;
        n
    };
    for (present, cond) in [
        (q.source.is_some(), "r.source ="),
        (q.dataset.is_some(), "r.dataset ="),
        (q.min_score.is_some(), "r.best_score >="),
        (q.max_score.is_some(), "r.best_score <"),
    ] {
        if present {
            w.push_str(&format!(" AND {cond} ${}", next()));
        }
    }
    let cmp = match at {
        Position::First => return w,
        Position::After(_) => ">",
        Position::Before(_) => "<",
    };
    let (t, id) = (next(), next());
    w.push_str(&format!(" AND (r.created_at, r.review_id) {cmp} (${t}::timestamptz, ${id}::int8)"));
    w
}

/// A page in queue order: its keys read from the index `match_review_queue` (status,
/// created_at, review_id; source, dataset and score included, so the filters are checked in
/// the index), starting at the cursor, then only the page's rows read from the table.
fn rows_sql(q: &QueueQuery, at: Position) -> String {
    let dir = if matches!(at, Position::Before(_)) { "DESC" } else { "ASC" };
    format!(
        "WITH page AS (SELECT r.review_id, r.created_at FROM match_review r WHERE {} \
                       ORDER BY r.created_at {dir}, r.review_id {dir} LIMIT $2) \
         SELECT r.review_id, r.created_at, r.source, r.dataset, r.best_score, \
                jsonb_array_length(r.candidates)::int8 AS n, r.rule, \
                CASE WHEN l.expires_at > now() AND l.reviewer <> $1 THEN l.reviewer END AS taken_by \
         FROM page p JOIN match_review r ON r.review_id = p.review_id \
         LEFT JOIN review_lease l ON l.review_id = r.review_id \
         ORDER BY p.created_at, p.review_id",
        page_where(q, at)
    )
}

fn row_of(r: &sqlx::postgres::PgRow) -> Result<QueueRow, sqlx::Error> {
    Ok(QueueRow {
        review_id: r.try_get("review_id")?,
        created_at: r.try_get("created_at")?,
        source: r.try_get("source")?,
        dataset: r.try_get("dataset")?,
        best_score: r.try_get("best_score")?,
        candidates: r.try_get("n")?,
        rule: r.try_get("rule")?,
        taken_by: r.try_get("taken_by")?,
    })
}

fn audit_of(r: &sqlx::postgres::PgRow) -> Result<AuditEvent, sqlx::Error> {
    let action: String = r.try_get("action")?;
    Ok(AuditEvent {
        at: r.try_get("at")?,
        reviewer: r.try_get("reviewer")?,
        action: Action::parse(&action).ok_or_else(|| sqlx::Error::Decode("unknown audit action".into()))?,
        review_id: r.try_get("review_id")?,
        field: r.try_get("field")?,
        person_id: r.try_get("person_id")?,
        note: r.try_get("note")?,
    })
}

impl PgWebStore {
    /// The queue position of a proposal (a cursor given by id alone), None if there is none.
    async fn placed(&self, review_id: i64) -> Result<Option<Cursor>, StoreError> {
        self.run(|pool| async move {
            let t: Option<DateTime<Utc>> =
                sqlx::query_scalar("SELECT created_at FROM match_review WHERE review_id = $1")
                    .bind(review_id)
                    .fetch_optional(&pool)
                    .await?;
            Ok(t.map(|t| Cursor { created_at: Some(t), review_id }))
        })
        .await
    }

    async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn(sqlx::PgPool) -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        Ok(self.db.run(f).await?)
    }
}

#[async_trait]
impl WebStore for PgWebStore {
    async fn counts(&self, q: &QueueQuery) -> Result<(i64, Vec<Facet>), StoreError> {
        let facets = self.facets().await?;
        // without a score band the facets already hold the count (no second scan)
        let total: i64 = if q.min_score.is_none() && q.max_score.is_none() {
            facets.iter().filter(|f| q.admits(&f.source, &f.dataset, 0.0)).map(|f| f.pending).sum()
        } else {
            self.band_count(q).await?
        };
        Ok((total, facets))
    }

    async fn rows(
        &self,
        q: &QueueQuery,
        at: Position,
        limit: i64,
        me: &str,
    ) -> Result<Vec<QueueRow>, StoreError> {
        let at = match at {
            Position::After(c) | Position::Before(c) if c.created_at.is_none() => {
                match self.placed(c.review_id).await? {
                    Some(placed) if matches!(at, Position::After(_)) => Position::After(placed),
                    Some(placed) => Position::Before(placed),
                    // a link to a proposal that is not there: the queue from its start
                    None => Position::First,
                }
            }
            at => at,
        };
        let cursor = match at {
            Position::First => None,
            Position::After(c) | Position::Before(c) => Some(c),
        };
        let sql = rows_sql(q, at);
        self.run(|pool| {
            let sql = &sql;
            async move {
                let mut query = sqlx::query(sql).bind(me).bind(limit.max(1));
                for text in [&q.source, &q.dataset].into_iter().flatten() {
                    query = query.bind(text);
                }
                for score in [q.min_score, q.max_score].into_iter().flatten() {
                    query = query.bind(score);
                }
                if let Some(c) = cursor {
                    query = query.bind(c.created_at).bind(c.review_id);
                }
                // not a named statement: planned with the actual filter values every time (a
                // generic plan would walk the whole queue index for a source with few rows)
                let rows = query.persistent(false).fetch_all(&pool).await?;
                rows.iter().map(row_of).collect::<Result<Vec<_>, _>>()
            }
        })
        .await
    }

    async fn lease(
        &self,
        review_id: i64,
        reviewer: &str,
        ttl: chrono::Duration,
    ) -> Result<Lease, StoreError> {
        let secs = ttl.num_seconds() as f64;
        self.run(|pool| async move {
            // The holder may release between the upsert and the read (it decided meanwhile):
            // then the lease is free and the upsert is tried again. Each lost round means another
            // reviewer took and released the lease in between; five was too few under a busy
            // holder (the test's 300 rounds), a hundred is not reached.
            for _ in 0..100 {
                let got: Option<DateTime<Utc>> = sqlx::query_scalar(
                    "INSERT INTO review_lease (review_id, reviewer, expires_at) \
                     VALUES ($1, $2, now() + make_interval(secs => $3)) \
                     ON CONFLICT (review_id) DO UPDATE SET reviewer = EXCLUDED.reviewer, expires_at = EXCLUDED.expires_at \
                     WHERE review_lease.reviewer = EXCLUDED.reviewer OR review_lease.expires_at <= now() \
                     RETURNING expires_at",
                )
                .bind(review_id)
                .bind(reviewer)
                .bind(secs)
                .fetch_optional(&pool)
                .await?;
                if let Some(until) = got {
                    return Ok(Lease::Granted { until });
                }
                let held = sqlx::query("SELECT reviewer, expires_at FROM review_lease WHERE review_id = $1")
                    .bind(review_id)
                    .fetch_optional(&pool)
                    .await?;
                if let Some(r) = held {
                    return Ok(Lease::Held { by: r.try_get(0)?, until: r.try_get(1)? });
                }
            }
            Err(sqlx::Error::Protocol("the lease kept changing hands".into()))
        })
        .await
    }

    async fn release(&self, review_id: i64, reviewer: &str) -> Result<(), StoreError> {
        self.run(|pool| async move {
            sqlx::query("DELETE FROM review_lease WHERE review_id = $1 AND reviewer = $2")
                .bind(review_id)
                .bind(reviewer)
                .execute(&pool)
                .await
                .map(|_| ())
        })
        .await
    }

    async fn append(&self, e: &AuditEvent) -> Result<(), StoreError> {
        self.run(|pool| async move {
            sqlx::query(
                "INSERT INTO review_audit (at, reviewer, action, review_id, field, person_id, note) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(e.at)
            .bind(&e.reviewer)
            .bind(e.action.as_str())
            .bind(e.review_id)
            .bind(&e.field)
            .bind(e.person_id)
            .bind(&e.note)
            .execute(&pool)
            .await
            .map(|_| ())
        })
        .await
    }

    async fn audit_since(&self, since: DateTime<Utc>) -> Result<Vec<AuditEvent>, StoreError> {
        self.run(|pool| async move {
            sqlx::query(
                "SELECT at, reviewer, action, review_id, field, person_id, note FROM review_audit \
                 WHERE at >= $1 ORDER BY audit_id",
            )
            .bind(since)
            .fetch_all(&pool)
            .await?
            .iter()
            .map(audit_of)
            .collect()
        })
        .await
    }

    async fn revealed(&self, review_id: i64, reviewer: &str) -> Result<Vec<String>, StoreError> {
        self.run(|pool| async move {
            sqlx::query_scalar(
                "SELECT DISTINCT field FROM review_audit WHERE review_id = $1 AND reviewer = $2 \
                 AND action = 'reveal' AND field IS NOT NULL",
            )
            .bind(review_id)
            .bind(reviewer)
            .fetch_all(&pool)
            .await
        })
        .await
    }

    async fn decided(&self, review_id: i64) -> Result<Option<Decided>, StoreError> {
        self.run(|pool| async move {
            let r = sqlx::query(
                "SELECT status, coalesce(reviewer, '') AS reviewer, decided_at FROM match_review \
                 WHERE review_id = $1 AND status <> 'pending'",
            )
            .bind(review_id)
            .fetch_optional(&pool)
            .await?;
            r.map(|r| Ok(Decided { status: r.try_get(0)?, by: r.try_get(1)?, at: r.try_get(2)? })).transpose()
        })
        .await
    }

    async fn neighbour(&self, from: i64, me: &str, forward: bool) -> Result<Option<i64>, StoreError> {
        let (cmp, order) = if forward { (">", "ASC") } else { ("<", "DESC") };
        let sql = format!(
            "SELECT r.review_id FROM match_review r LEFT JOIN review_lease l ON l.review_id = r.review_id \
             WHERE r.status = 'pending' \
               AND (r.created_at, r.review_id) {cmp} (SELECT created_at, review_id FROM match_review WHERE review_id = $1) \
               AND (l.review_id IS NULL OR l.expires_at <= now() OR l.reviewer = $2) \
             ORDER BY r.created_at {order}, r.review_id {order} LIMIT 1"
        );
        self.run(|pool| {
            let sql = &sql;
            async move { sqlx::query_scalar(sql).bind(from).bind(me).fetch_optional(&pool).await }
        })
        .await
    }
}
