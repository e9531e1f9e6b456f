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

use crate::error::IndexError;
use crate::index::PersonIndex;
use crate::matcher::Tier;
use crate::model::{Person, Record};
use crate::reviews::{DecisionRow, ReviewRow, Reviews};
use crate::rows;
use crate::rules_store::ActiveRules;

pub const FUNCTION: Function = Function::PiiMatching;
/// Ledger stage once matching has finished for a file.
pub const STAGE_MATCHED: Stage = Stage::Matched;

/// What the handler runs with: the pipeline's ports, the person index, the review store and the
/// rules (fixed, or the published version behind a TTL cache).
#[derive(Clone)]
pub struct MatchDeps {
    pub pipeline: Deps,
    pub index: Arc<dyn PersonIndex>,
    pub reviews: Arc<dyn Reviews>,
    pub matcher: Arc<ActiveRules>,
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
    /// The rules version every decision of the file was made with.
    pub rules_version: String,
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
    StageError { kind: e.kind(), message: e.to_string(), transient: e.transient(), file: None }
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
            tier: dec.tier.into(),
            person_id: best.map(|c| c.person_id),
            score: dec.best_score,
            rule: dec.rule.clone(),
            decided_by: "matcher".into(),
            rules_version: Some(s.rules_version.clone()),
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
                    rules_version: Some(s.rules_version.clone()),
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
    // a store that cannot be read keeps the last good version; this fails only when there is none
    let rules = d
        .matcher
        .get()
        .await
        .map_err(|e| StageError::of_kind(ErrorKind::MetadataReadFailed, e.to_string()))?;
    let (decisions, persons) =
        rules.matcher.match_batch(d.index.as_ref(), records.clone()).await.map_err(index_err)?;
    let by_id: HashMap<i64, &Person> = persons.iter().map(|p| (p.person_id, p)).collect();

    let mut s = MatchSummary {
        file_id: msg.file_id.clone(),
        rows: records.len() as u64,
        report_key: format!(
            "matching/{}.json",
            rows::output_key(&msg.bad_key, "match").trim_end_matches(".parquet")
        ),
        rules_version: rules.version,
        ..Default::default()
    };
    let o = outcomes(msg, &decisions, &by_id, &missing, &rules.matcher.rules, &mut s);
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
        rules_version = %s.rules_version,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use arrow_array::{ArrayRef, Date32Array, RecordBatch, StringArray};
    use arrow_schema::{Field, Schema};
    use layer::ledger::RunRecord;
    use layer::local::LocalObjectStore;

    use super::*;
    use crate::index::MemoryIndex;
    use crate::people::{read_export_bytes, PeopleMapping};
    use crate::reviews::MemoryReviews;
    use crate::rules_store::{builtin_label, publish, ActiveRules, LocalRules, DEFAULT_TTL};

    const PEOPLE: &str =
        "person_id,first_name,last_name,middle_initial,dob,sex,ssn,address,city,state,zip,phone
101,ANNA,SMITH,J,1980-03-05,F,123-45-6789,1 MAIN ST,CAMBRIDGE,MA,02138,617-555-0101
103,MARIA,GARCIA,L,1990-11-11,F,345-67-8901,3 OAK RD,LOWELL,MA,01850,978-555-0103
";

    fn s(v: [Option<&str>; 2]) -> ArrayRef {
        Arc::new(StringArray::from(v.to_vec()))
    }

    /// Two bad rows: an exact match and a surname change (proposed by the shipped rules).
    fn bad_rows() -> Vec<u8> {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let days = |y, m, d| (chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap() - epoch).num_days() as i32;
        let cols: Vec<(&str, ArrayRef)> = vec![
            ("encounter_id", s([Some("E1"), Some("E2")])),
            ("patient_id", s([Some("M1"), Some("M2")])),
            ("first_name", s([Some("ANNA"), Some("MARIA")])),
            ("last_name", s([Some("SMITH"), Some("LOPEZ")])),
            ("dob", Arc::new(Date32Array::from(vec![Some(days(1980, 3, 5)), Some(days(1990, 11, 11))]))),
            ("sex", s([Some("F"), Some("F")])),
            ("ssn", s([None, None])),
            ("address", s([Some("1 MAIN ST"), Some("3 OAK RD")])),
            ("city", s([Some("CAMBRIDGE"), Some("LOWELL")])),
            ("zip", s([Some("02138"), Some("01850")])),
            ("phone", s([Some("617-555-0101"), Some("857-555-9999")])),
            ("missing_fields", s([Some("ssn"), Some("ssn")])),
        ];
        let schema = Schema::new(
            cols.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), true)).collect::<Vec<_>>(),
        );
        let b = RecordBatch::try_new(Arc::new(schema), cols.into_iter().map(|c| c.1).collect()).unwrap();
        rows::to_parquet(&b).unwrap()
    }

    async fn file(deps: &Deps, file_id: &str) -> SqsMessage {
        let key =
            format!("bad/dataset=encounter/source=st_marys/ingest_date=2026-12-07/{file_id}.bad.parquet");
        deps.store.put("quarantine", &key, bad_rows(), None).await.unwrap();
        let mut run = RunRecord::received("ingest", &format!("st_marys/{file_id}.csv").as_str().into(), None);
        run.file_id = file_id.into();
        run.status = Status::Done;
        run.stage = Stage::MatchingPending;
        run.counts.bad = 2;
        deps.meta.put_run(&run).await.unwrap();
        let body = serde_json::json!({"file_id": file_id, "source": "st_marys", "dataset": "encounter",
            "bucket": "quarantine", "bad_key": key, "bad_rows": 2});
        let mut m = SqsMessage::default();
        m.body = Some(body.to_string());
        m
    }

    #[tokio::test]
    async fn a_rules_version_published_while_running_is_used_after_the_ttl_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let pipeline = layer::local::local_deps(root, LocalObjectStore::new(root.join("buckets")));
        let people =
            read_export_bytes("p.csv", PEOPLE.into(), &PeopleMapping::identity(), &mut |_| {}).unwrap();
        let store = Arc::new(LocalRules::in_lake(root));
        let start = Instant::now();
        let secs = Arc::new(AtomicU64::new(0));
        let s2 = secs.clone();
        let clock = Arc::new(move || start + Duration::from_secs(s2.load(Ordering::SeqCst)));
        let reviews = Arc::new(MemoryReviews::default());
        let d = MatchDeps {
            pipeline: pipeline.clone(),
            index: Arc::new(MemoryIndex::new(people.persons)),
            reviews: reviews.clone(),
            matcher: Arc::new(ActiveRules::published_with_clock(store.clone(), DEFAULT_TTL, clock)),
        };

        let first = process(&d, file(&pipeline, "00000000000000f1").await).await.unwrap();
        assert_eq!((first.completed, first.proposed, first.rules_version.clone()), (1, 1, builtin_label()));

        // a data scientist publishes rules that propose nothing below 99 points
        let strict = crate::rules::BUILTIN_TOML.replacen("min_score = 19.25", "min_score = 99.0", 1);
        assert_eq!(publish(store.as_ref(), &strict, "strict.toml").await.unwrap(), (1, true));
        let cached = process(&d, file(&pipeline, "00000000000000f2").await).await.unwrap();
        assert_eq!(
            (cached.proposed, cached.rules_version.as_str()),
            (1, builtin_label().as_str()),
            "within the TTL"
        );
        secs.store(61, Ordering::SeqCst);
        let after = process(&d, file(&pipeline, "00000000000000f3").await).await.unwrap();
        assert_eq!((after.completed, after.proposed, after.unmatched), (1, 0, 1), "the new rules decide");
        assert_eq!(after.rules_version, "v1");

        // every decision and proposal carries the version that made it
        let decisions = reviews.decisions.lock().unwrap().clone();
        assert_eq!(decisions.len(), 6);
        for dec in &decisions {
            let want = if dec.file_id.ends_with("f3") { "v1".to_string() } else { builtin_label() };
            assert_eq!(dec.rules_version.as_deref(), Some(want.as_str()), "{dec:?}");
        }
        let proposals = reviews.reviews.lock().unwrap().clone();
        assert_eq!(proposals.len(), 2);
        assert!(proposals.iter().all(|r| r.rules_version.as_deref() == Some(builtin_label().as_str())));
        let run = pipeline.meta.get_run("00000000000000f3").await.unwrap().unwrap();
        assert_eq!((run.stage, run.counts.good, run.counts.bad), (Stage::Matched, 1, 1));
    }
}
