//! The Lambda handler: a pii-queue message points at a file's bad records; they are matched as
//! one batch; exact matches are completed and written into the dataset, proposed ones go to
//! review, the rest stay in quarantine as `unmatched`. Retries, DLQ, alerts and the ledger follow
//! `layer::pipeline::handle_batch`. Logs carry file ids and counts only.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsMessage};
use layer::ledger::{now, Status};
use layer::pipeline::{handle_batch, Deps, FileCtx, PiiMessage, SqsInvocation, StageError};
use layer::{ErrorKind, Function, Stage};
use serde::Serialize;

use crate::index::{IndexError, PersonIndex};
use crate::matcher::{Matcher, Tier};
use crate::model::{Person, Record};
use crate::reviews::{DecisionRow, ReviewRow, Reviews};
use crate::rows;

pub const FUNCTION: Function = Function::PiiMatching;
/// Ledger stage once matching has finished for a file.
pub const STAGE_MATCHED: Stage = Stage::Matched;

/// What the handler runs with: the pipeline's ports plus the person index and the review store.
#[derive(Clone)]
pub struct MatchDeps {
    pub pipeline: Deps,
    pub index: Arc<dyn PersonIndex>,
    pub reviews: Arc<dyn Reviews>,
    pub matcher: Arc<Matcher>,
}

/// What matching did with one file's bad rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MatchSummary {
    pub file_id: String,
    pub rows: u64,
    /// Exact matches completed and written into the dataset.
    pub completed: u64,
    /// Exact matches that cannot be completed (a missing field the person index does not hold).
    pub incomplete: u64,
    pub proposed: u64,
    pub unmatched: u64,
    /// Review rows that were new (0 on a retry).
    pub reviews_inserted: u64,
    pub matched_key: Option<String>,
    pub report_key: String,
}

#[derive(Serialize)]
struct RowOutcome<'a> {
    row: usize,
    tier: &'a str,
    reason: &'a str,
    rule: &'a str,
}

#[derive(Serialize)]
struct Report<'a> {
    file_id: &'a str,
    summary: &'a MatchSummary,
    /// Rows that stay in quarantine, with why (no values).
    rows: Vec<RowOutcome<'a>>,
}

fn index_err(e: IndexError) -> StageError {
    let kind = match &e {
        IndexError::Auth(_) => ErrorKind::DbAuthFailed,
        IndexError::Denied(_) => ErrorKind::DbPermissionDenied,
        IndexError::Unavailable(_) => ErrorKind::DbUnavailable,
        IndexError::Query(_) => ErrorKind::DbQueryFailed,
        IndexError::Secret(_) => ErrorKind::DbSecretFailed,
        IndexError::Load(_) => ErrorKind::PersonIndexLoadFailed,
    };
    StageError { kind, message: e.to_string(), transient: e.transient(), file: None }
}

/// The SQS entry point.
pub async fn handle(deps: &MatchDeps, event: SqsInvocation) -> SqsBatchResponse {
    let queue = deps.pipeline.cfg.pii_queue.clone();
    handle_batch(
        &deps.pipeline,
        FUNCTION,
        &queue,
        event,
        |_, m| async move { process(deps, m).await.map(|_| ()) },
    )
    .await
}

/// Matches the bad rows of one message.
pub async fn process(d: &MatchDeps, m: SqsMessage) -> Result<MatchSummary, StageError> {
    let body = m.body.unwrap_or_default();
    let msg: PiiMessage = serde_json::from_str(&body)
        .map_err(|e| StageError::permanent(ErrorKind::BadMessage, format!("not a pii message: {e}")))?;
    layer::telemetry::set_file_id(&msg.file_id);
    let ctx = FileCtx {
        file_id: msg.file_id.clone(),
        bucket: msg.bucket.clone(),
        key_hash: layer::key_hash(&msg.bad_key),
        source: Some(msg.source.clone()),
        dataset: Some(msg.dataset.clone()),
        first_seen: None,
        ..Default::default()
    };
    run(d, &msg).await.map_err(|e| e.with_file(&ctx))
}

/// What one file's decisions lead to: rows to complete, rows that stay (and why), proposals and
/// the audit rows.
struct Outcomes<'a> {
    fills: Vec<(usize, &'a Person)>,
    stays: Vec<RowOutcome<'a>>,
    reviews: Vec<ReviewRow>,
    audit: Vec<DecisionRow>,
}

/// Sorts each decision into completion, review or quarantine, counting into `s`.
fn outcomes<'a>(
    msg: &PiiMessage,
    decisions: &'a [crate::matcher::Decision],
    by_id: &HashMap<i64, &'a Person>,
    missing: &[Vec<String>],
    rules: &crate::Rules,
    s: &mut MatchSummary,
) -> Outcomes<'a> {
    let mut o = Outcomes { fills: Vec::new(), stays: Vec::new(), reviews: Vec::new(), audit: Vec::new() };
    for (i, dec) in decisions.iter().enumerate() {
        let best = dec.chosen.first();
        o.audit.push(DecisionRow {
            record_ref: dec.reference.clone(),
            file_id: msg.file_id.clone(),
            tier: dec.tier.as_str().into(),
            person_id: best.map(|c| c.person_id),
            score: dec.best_score,
            rule: dec.rule.clone(),
            decided_by: "matcher".into(),
        });
        match dec.tier {
            Tier::Exact => match best.and_then(|c| by_id.get(&c.person_id)) {
                Some(person) if rows::completable(&missing[i], person) => {
                    s.completed += 1;
                    o.fills.push((i, person));
                }
                _ => {
                    s.incomplete += 1;
                    o.stays.push(RowOutcome { row: i, tier: "exact", reason: "incomplete", rule: &dec.rule });
                }
            },
            Tier::Proposed => {
                s.proposed += 1;
                o.stays.push(RowOutcome { row: i, tier: "proposed", reason: "in_review", rule: &dec.rule });
                o.reviews.push(ReviewRow {
                    record_ref: dec.reference.clone(),
                    file_id: msg.file_id.clone(),
                    row_index: i32::try_from(i).unwrap_or(i32::MAX),
                    dataset: msg.dataset.clone(),
                    source: msg.source.clone(),
                    bad_bucket: msg.bucket.clone(),
                    bad_key: msg.bad_key.clone(),
                    candidates: crate::review::stored_candidates(rules, &dec.chosen),
                    best_score: dec.best_score.unwrap_or_default(),
                    rule: dec.rule.clone(),
                });
            }
            Tier::None => {
                s.unmatched += 1;
                o.stays.push(RowOutcome { row: i, tier: "none", reason: "unmatched", rule: &dec.rule });
            }
        }
    }
    o
}

async fn run(d: &MatchDeps, msg: &PiiMessage) -> Result<MatchSummary, StageError> {
    let t0 = std::time::Instant::now();
    let p = &d.pipeline;
    let bytes = p
        .store
        .get(&msg.bucket, &msg.bad_key, None)
        .await
        .map_err(|e| StageError::port(ErrorKind::S3GetFailed, e))?;
    let batch =
        rows::read_parquet(bytes).map_err(|e| StageError::permanent(ErrorKind::BadRecordsUnreadable, e.0))?;
    let records: Arc<[Record]> = rows::records(&batch, &msg.file_id).into();
    let missing = rows::missing(&batch);
    let (decisions, persons) =
        d.matcher.match_batch(d.index.as_ref(), records.clone()).await.map_err(index_err)?;
    let by_id: HashMap<i64, &Person> = persons.iter().map(|p| (p.person_id, p)).collect();

    let mut s = MatchSummary {
        file_id: msg.file_id.clone(),
        rows: records.len() as u64,
        report_key: format!(
            "matching/{}.json",
            rows::output_key(&msg.bad_key, "match").trim_end_matches(".parquet")
        ),
        ..Default::default()
    };
    let o = outcomes(msg, &decisions, &by_id, &missing, &d.matcher.rules, &mut s);
    let kms = p.cfg.kms_key.as_deref();
    if !o.fills.is_empty() {
        let out = rows::complete(&batch, &o.fills).and_then(|b| rows::to_parquet(&b));
        let out = out.map_err(|e| StageError::permanent(ErrorKind::CompletionFailed, e.0))?;
        let key = rows::output_key(&msg.bad_key, "matched");
        p.store
            .put(&p.cfg.raw_bucket, &key, out, kms)
            .await
            .map_err(|e| StageError::port(ErrorKind::S3PutFailed, e))?;
        s.matched_key = Some(key);
    }
    s.reviews_inserted = d.reviews.propose(&o.reviews).await.map_err(index_err)?;
    d.reviews.record(&o.audit).await.map_err(index_err)?;
    let report = serde_json::to_vec_pretty(&Report { file_id: &msg.file_id, summary: &s, rows: o.stays })
        .map_err(|e| StageError::permanent(ErrorKind::CompletionFailed, e.to_string()))?;
    p.store
        .put(&p.cfg.quarantine_bucket, &s.report_key, report, kms)
        .await
        .map_err(|e| StageError::port(ErrorKind::S3PutFailed, e))?;

    record_matched(p, msg, &s, t0.elapsed().as_secs_f64()).await?;
    tracing::info!(
        file_id = %msg.file_id,
        rows = s.rows,
        completed = s.completed,
        incomplete = s.incomplete,
        proposed = s.proposed,
        unmatched = s.unmatched,
        "matched"
    );
    Ok(s)
}

/// Ledger: counts move once (a retry finds the stage already `matched`).
async fn record_matched(
    p: &Deps,
    msg: &PiiMessage,
    s: &MatchSummary,
    seconds: f64,
) -> Result<(), StageError> {
    match p.meta.get_run(&msg.file_id).await.map_err(|e| StageError::port(ErrorKind::LedgerReadFailed, e))? {
        Some(mut run) => {
            if run.stage != STAGE_MATCHED {
                run.counts.good += s.completed;
                run.counts.bad = run.counts.bad.saturating_sub(s.completed);
                run.seconds += seconds;
            }
            run.status = Status::Done;
            run.stage = STAGE_MATCHED;
            run.updated_at = now();
            for k in s
                .matched_key
                .iter()
                .map(|k| format!("{}/{k}", p.cfg.raw_bucket))
                .chain([format!("{}/{}", p.cfg.quarantine_bucket, s.report_key)])
            {
                if !run.outputs.contains(&k) {
                    run.outputs.push(k);
                }
            }
            p.meta.put_run(&run).await.map_err(|e| StageError::port(ErrorKind::LedgerWriteFailed, e))?;
        }
        None => tracing::warn!(file_id = %msg.file_id, "no ledger entry for the file; counts not updated"),
    }
    Ok(())
}
