//! Proposals (`match_review`) and the decision audit (`match_decision`) in PostgreSQL.

use std::sync::Arc;

use async_trait::async_trait;
use compact_str::CompactString;

use super::Db;
use crate::error::IndexError;
use crate::model::Person;
use crate::review::{ReviewDesk, ReviewError};
use crate::reviews::{DecisionRow, DecisionTier, ReviewRow, ReviewStatus, Reviews, StoredReview};

/// Reviews and audit in PostgreSQL.
pub struct PgReviews {
    pub db: Arc<Db>,
}

#[async_trait]
impl Reviews for PgReviews {
    async fn propose(&self, rows: &[ReviewRow]) -> Result<u64, IndexError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let col = |f: fn(&ReviewRow) -> String| rows.iter().map(f).collect::<Vec<String>>();
        let (r, fi, ds, so, bb, bk, ru) = (
            col(|x| x.record_ref.clone()),
            col(|x| x.file_id.clone()),
            col(|x| x.dataset.clone()),
            col(|x| x.source.clone()),
            col(|x| x.bad_bucket.clone()),
            col(|x| x.bad_key.clone()),
            col(|x| x.rule.clone()),
        );
        let ix: Vec<i32> = rows.iter().map(|x| x.row_index).collect();
        let ca: Vec<serde_json::Value> = rows.iter().map(|x| x.candidates.clone()).collect();
        let sc: Vec<f64> = rows.iter().map(|x| x.best_score).collect();
        let rv: Vec<Option<String>> = rows.iter().map(|x| x.rules_version.clone()).collect();
        self.db
            .run(|pool| {
                let (r, fi, ds, so, bb, bk, ru, ix, ca, sc, rv) =
                    (&r, &fi, &ds, &so, &bb, &bk, &ru, &ix, &ca, &sc, &rv);
                async move {
                    let res = sqlx::query!(
                        r#"
                        INSERT INTO match_review
                            (record_ref, file_id, row_index, dataset, source, bad_bucket, bad_key,
                             candidates, best_score, rule, rules_version)
                        SELECT * FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::text[], $5::text[],
                                             $6::text[], $7::text[], $8::jsonb[], $9::float8[], $10::text[],
                                             $11::text[])
                        ON CONFLICT (record_ref) DO NOTHING
                        "#,
                        r,
                        fi,
                        ix,
                        ds,
                        so,
                        bb,
                        bk,
                        ca,
                        sc,
                        ru,
                        rv as &[Option<String>]
                    )
                    .execute(&pool)
                    .await?;
                    Ok(res.rows_affected())
                }
            })
            .await
    }

    async fn record(&self, rows: &[DecisionRow]) -> Result<u64, IndexError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let col = |f: fn(&DecisionRow) -> String| rows.iter().map(f).collect::<Vec<String>>();
        let (r, fi, ti, ru, by) = (
            col(|x| x.record_ref.clone()),
            col(|x| x.file_id.clone()),
            col(|x| x.tier.as_str().to_string()),
            col(|x| x.rule.clone()),
            col(|x| x.decided_by.clone()),
        );
        let pe: Vec<Option<i64>> = rows.iter().map(|x| x.person_id).collect();
        let sc: Vec<Option<f64>> = rows.iter().map(|x| x.score).collect();
        let rv: Vec<Option<String>> = rows.iter().map(|x| x.rules_version.clone()).collect();
        self.db
            .run(|pool| {
                let (r, fi, ti, ru, by, pe, sc, rv) = (&r, &fi, &ti, &ru, &by, &pe, &sc, &rv);
                async move {
                    let res = sqlx::query!(
                        r#"
                        INSERT INTO match_decision
                            (record_ref, file_id, tier, person_id, score, rule, decided_by, rules_version)
                        SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::float8[],
                                             $6::text[], $7::text[], $8::text[])
                        ON CONFLICT (record_ref, tier, decided_by) DO NOTHING
                        "#,
                        r,
                        fi,
                        ti,
                        pe as &[Option<i64>],
                        sc as &[Option<f64>],
                        ru,
                        by,
                        rv as &[Option<String>]
                    )
                    .execute(&pool)
                    .await?;
                    Ok(res.rows_affected())
                }
            })
            .await
    }
}

/// A `match_review` row as read (the status still its stored word).
struct StoredRow {
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
    status: String,
    accepted_person_id: Option<i64>,
    reviewer: Option<String>,
}

impl TryFrom<StoredRow> for StoredReview {
    type Error = IndexError;

    fn try_from(r: StoredRow) -> Result<Self, IndexError> {
        Ok(StoredReview {
            status: r.status.parse().map_err(IndexError::Query)?,
            review_id: r.review_id,
            record_ref: r.record_ref,
            file_id: r.file_id,
            row_index: r.row_index,
            dataset: r.dataset,
            source: r.source,
            bad_bucket: r.bad_bucket,
            bad_key: r.bad_key,
            candidates: r.candidates,
            best_score: r.best_score,
            rule: r.rule,
            accepted_person_id: r.accepted_person_id,
            reviewer: r.reviewer,
        })
    }
}

impl PgReviews {
    /// Reviews with a status, oldest first.
    pub async fn list(&self, status: ReviewStatus, limit: i64) -> Result<Vec<StoredReview>, IndexError> {
        let status = status.as_str();
        let rows = self
            .db
            .run(|pool| async move {
                sqlx::query_as!(
                    StoredRow,
                    r#"SELECT review_id, record_ref, file_id, row_index, dataset, source, bad_bucket, bad_key,
                              candidates, best_score, rule, status, accepted_person_id, reviewer
                       FROM match_review WHERE status = $1 ORDER BY created_at, review_id LIMIT $2"#,
                    status,
                    limit
                )
                .fetch_all(&pool)
                .await
            })
            .await?;
        rows.into_iter().map(StoredReview::try_from).collect()
    }

    pub async fn get(&self, review_id: i64) -> Result<Option<StoredReview>, IndexError> {
        let row = self
            .db
            .run(|pool| async move {
                sqlx::query_as!(
                    StoredRow,
                    r#"SELECT review_id, record_ref, file_id, row_index, dataset, source, bad_bucket, bad_key,
                              candidates, best_score, rule, status, accepted_person_id, reviewer
                       FROM match_review WHERE review_id = $1"#,
                    review_id
                )
                .fetch_optional(&pool)
                .await
            })
            .await?;
        row.map(StoredReview::try_from).transpose()
    }

    /// Accepts (with the chosen person) or rejects a pending review; false when it was not pending.
    pub async fn decide(
        &self,
        review_id: i64,
        accept_person: Option<i64>,
        reviewer: &str,
    ) -> Result<bool, IndexError> {
        let status = ReviewStatus::decided(accept_person).as_str();
        let tier = DecisionTier::decided(accept_person).as_str();
        self.db
            .run(|pool| async move {
                let mut tx = pool.begin().await?;
                let row = sqlx::query!(
                    r#"UPDATE match_review SET status = $2, accepted_person_id = $3, reviewer = $4, decided_at = now()
                       WHERE review_id = $1 AND status = 'pending'
                       RETURNING record_ref, file_id, best_score"#,
                    review_id,
                    status,
                    accept_person,
                    reviewer
                )
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else { return Ok(false) };
                sqlx::query!(
                    r#"INSERT INTO match_decision (record_ref, file_id, tier, person_id, score, rule, decided_by)
                       VALUES ($1, $2, $3, $4, $5, 'review', $6)
                       ON CONFLICT (record_ref, tier, decided_by) DO NOTHING"#,
                    row.record_ref,
                    row.file_id,
                    tier,
                    accept_person,
                    row.best_score,
                    reviewer
                )
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            })
            .await
    }

    /// One person by id (to complete an accepted row).
    pub async fn person(&self, person_id: i64) -> Result<Option<Person>, IndexError> {
        self.db
            .run(|pool| async move {
                sqlx::query_as!(
                    Person,
                    r#"SELECT person_id, first_name AS "first_name: CompactString",
                              last_name AS "last_name: CompactString",
                              middle_initial AS "middle_initial: CompactString", dob,
                              sex AS "sex: CompactString", ssn AS "ssn: CompactString",
                              address AS "address: CompactString", city AS "city: CompactString",
                              state AS "state: CompactString", zip AS "zip: CompactString",
                              phone AS "phone: CompactString"
                         FROM person WHERE person_id = $1"#,
                    person_id
                )
                .fetch_optional(&pool)
                .await
            })
            .await
    }

    /// Counts of reviews and decisions for a file (tests, status).
    pub async fn counts(&self, file_id: &str) -> Result<(i64, i64), IndexError> {
        self.db
            .run(|pool| async move {
                let r = sqlx::query!(
                    r#"SELECT (SELECT count(*) FROM match_review WHERE file_id = $1) AS "reviews!",
                              (SELECT count(*) FROM match_decision WHERE file_id = $1) AS "decisions!""#,
                    file_id
                )
                .fetch_one(&pool)
                .await?;
                Ok((r.reviews, r.decisions))
            })
            .await
    }
}

#[async_trait]
impl ReviewDesk for PgReviews {
    async fn list(&self, status: ReviewStatus, limit: i64) -> Result<Vec<StoredReview>, ReviewError> {
        Ok(PgReviews::list(self, status, limit).await?)
    }

    async fn get(&self, review_id: i64) -> Result<Option<StoredReview>, ReviewError> {
        Ok(PgReviews::get(self, review_id).await?)
    }

    async fn person(&self, person_id: i64) -> Result<Option<Person>, ReviewError> {
        Ok(PgReviews::person(self, person_id).await?)
    }

    async fn decide(
        &self,
        review_id: i64,
        accept_person: Option<i64>,
        reviewer: &str,
    ) -> Result<bool, ReviewError> {
        Ok(PgReviews::decide(self, review_id, accept_person, reviewer).await?)
    }
}
