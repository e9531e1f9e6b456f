//! Deciding proposed matches: the rules a reviewer's accept or reject follows, and what a
//! reviewer sees (every value masked unless explicitly unmasked). Shared by `lake review` and
//! any other front end; they only parse and print.
//!
//! The rules: only a pending review can be decided; an accept names one of the review's own
//! candidates (the best one by default) who is in the person index, and whose values fill
//! every field the record misses. The completed row is built first (so a row that cannot be
//! completed decides nothing), then the decision lands atomically (only while the review is
//! still pending: of two racing reviewers exactly one wins), and only the winner writes the row
//! into the dataset like an exact match (at a key derived from the record, so a repeat
//! overwrites with the same bytes) and moves the ledger once. If that write fails, the review is
//! accepted with its row not yet written: [`complete_again`] (`lake review complete`) writes it.
//! The decision is audited once. A reject leaves the row in quarantine.
//!
//! Masking: names, sex, address and city show their first character then `***`; dates, SSNs,
//! ZIPs and phones show nothing but their shape.

use std::collections::HashMap;

use async_trait::async_trait;
use layer::ledger::now;
use layer::pipeline::{Deps, StageError};
use layer::ErrorKind;

use crate::index::IndexError;
use crate::matcher::Scored;
use crate::model::{Person, Record};
use crate::reviews::{ReviewStatus, StoredReview};
use crate::rows;
use crate::rules::Rules;

/// Review status: waiting for a reviewer.
pub const PENDING: ReviewStatus = ReviewStatus::Pending;

/// Why a review action did not happen (no values, only ids and field names).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("no review {0}")]
    NotFound(i64),
    #[error(
        "review {id} is already {status}{}: nothing changed",
        by.as_deref().map(|w| format!(" (by {w})")).unwrap_or_default()
    )]
    AlreadyDecided { id: i64, status: String, by: Option<String> },
    #[error("the review has no candidate")]
    NoCandidate,
    #[error("person {person} is not a candidate of review {id}")]
    NotACandidate { id: i64, person: i64 },
    #[error("person {0} is not in the index")]
    UnknownPerson(i64),
    #[error("review {id} was decided by someone else meanwhile; nothing was written")]
    DecidedMeanwhile { id: i64 },
    /// The decision landed but the row could not be written (a transient store or ledger error).
    #[error(
        "review {id} is accepted (person {person}) but its completed row could not be written ({cause}); \
         `lake review complete {id}` writes it"
    )]
    NotCompleted { id: i64, person: i64, cause: String },
    /// `complete_again` on a review that is not accepted.
    #[error("review {id} is {status}, not accepted: nothing to complete")]
    NotAccepted { id: i64, status: String },
    /// The person file behind an embedded review store could not be read.
    #[error("{0}")]
    People(String),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Stage(Box<StageError>),
}

impl From<StageError> for ReviewError {
    fn from(e: StageError) -> Self {
        ReviewError::Stage(Box::new(e))
    }
}

/// Where reviews are decided: the stored reviews and the persons their candidates name.
#[async_trait]
pub trait ReviewDesk: Send + Sync {
    /// Reviews with a status, oldest first.
    async fn list(&self, status: ReviewStatus, limit: i64) -> Result<Vec<StoredReview>, ReviewError>;
    async fn get(&self, review_id: i64) -> Result<Option<StoredReview>, ReviewError>;
    /// One person of the index by id.
    async fn person(&self, person_id: i64) -> Result<Option<Person>, ReviewError>;
    /// Accepts (with the chosen person) or rejects a pending review and audits it; false when
    /// it was not pending.
    async fn decide(
        &self,
        review_id: i64,
        accept_person: Option<i64>,
        reviewer: &str,
    ) -> Result<bool, ReviewError>;
}

/// One candidate of a review: person id, score, the level each field reached and, for
/// proposals stored since the matcher records them, the weight each level added to the score
/// under the rules that proposed it (and those rules' version). Older proposals: levels only.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub person_id: i64,
    pub score: f64,
    pub levels: serde_json::Map<String, serde_json::Value>,
    pub weights: Option<serde_json::Map<String, serde_json::Value>>,
    pub rules_version: Option<u64>,
}

impl Candidate {
    /// The weight the matcher stored for a field (None: not stored, or not compared).
    pub fn weight(&self, field: &str) -> Option<f64> {
        self.weights.as_ref()?.get(field)?.as_f64()
    }
}

/// The candidates of a review, best first.
pub fn candidates(r: &StoredReview) -> Vec<Candidate> {
    r.candidates
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| Candidate {
                    person_id: c["person_id"].as_i64().unwrap_or_default(),
                    score: c["score"].as_f64().unwrap_or_default(),
                    levels: c["levels"].as_object().cloned().unwrap_or_default(),
                    weights: c.get("weights").and_then(|w| w.as_object()).cloned(),
                    rules_version: c.get("rules_version").and_then(|v| v.as_u64()),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The weight `rules` give a field's level (the per-field part of a candidate's score).
pub fn level_weight(rules: &Rules, field: &str, level: &str) -> Option<f64> {
    let c = rules.comparisons.iter().find(|c| c.field.as_str() == field)?;
    match level {
        "missing" => Some(c.missing),
        "else" => Some(c.else_weight),
        l => c.levels.iter().find(|x| x.name() == l).map(|x| x.weight),
    }
}

/// A proposal's candidates as stored with it (`match_review.candidates`): each scored candidate
/// with the weight of every level it reached under `rules`, and the rules' version, so a later
/// rules change does not misreport an old proposal.
pub fn stored_candidates(rules: &Rules, chosen: &[Scored]) -> serde_json::Value {
    let one = |c: &Scored| {
        let mut v = serde_json::to_value(c).unwrap_or_default();
        let weights: serde_json::Map<String, serde_json::Value> = c
            .levels
            .iter()
            .filter_map(|(f, l)| {
                Some((f.as_str().to_string(), serde_json::json!(level_weight(rules, f.as_str(), l)?)))
            })
            .collect();
        if let Some(o) = v.as_object_mut() {
            o.insert("weights".into(), serde_json::Value::Object(weights));
            o.insert("rules_version".into(), serde_json::json!(rules.version));
        }
        v
    };
    serde_json::Value::Array(chosen.iter().map(one).collect())
}

/// Looks up a review that must exist.
pub async fn get(desk: &dyn ReviewDesk, id: i64) -> Result<StoredReview, ReviewError> {
    desk.get(id).await?.ok_or(ReviewError::NotFound(id))
}

/// The first step of an accept: the pending review and the person to complete it with (`person`,
/// else the best candidate), checked against the review's candidates and the index.
pub async fn choose(
    desk: &dyn ReviewDesk,
    id: i64,
    person: Option<i64>,
) -> Result<(StoredReview, Person), ReviewError> {
    let r = get(desk, id).await?;
    if r.status != PENDING {
        return Err(ReviewError::AlreadyDecided { id, status: r.status.to_string(), by: r.reviewer.clone() });
    }
    let cands = candidates(&r);
    let pid = person.or(cands.first().map(|c| c.person_id)).ok_or(ReviewError::NoCandidate)?;
    if !cands.iter().any(|c| c.person_id == pid) {
        return Err(ReviewError::NotACandidate { id, person: pid });
    }
    let p = desk.person(pid).await?.ok_or(ReviewError::UnknownPerson(pid))?;
    Ok((r, p))
}

/// An accepted review: the person and where the completed row was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub person_id: i64,
    pub bucket: String,
    pub key: String,
}

/// The second step of an accept: builds the completed row (nothing is decided if it cannot be
/// built), records the decision only while the review is pending (someone else's decision
/// meanwhile: [`ReviewError::DecidedMeanwhile`], nothing written), then writes the row through
/// `deps` and moves the ledger.
pub async fn complete(
    desk: &dyn ReviewDesk,
    deps: &Deps,
    review: &StoredReview,
    person: &Person,
    reviewer: &str,
) -> Result<Accepted, ReviewError> {
    let row = prepare_completion(deps, review, person).await?;
    let id = review.review_id;
    if !desk.decide(id, Some(person.person_id), reviewer).await? {
        return Err(ReviewError::DecidedMeanwhile { id });
    }
    let key = write_completion(deps, review, row).await.map_err(|e| ReviewError::NotCompleted {
        id,
        person: person.person_id,
        // the kind only: a store error's message can name the object key
        cause: e.kind.as_str().to_string(),
    })?;
    Ok(Accepted { person_id: person.person_id, bucket: deps.cfg.raw_bucket.clone(), key })
}

/// Writes the completed row of an already accepted review again (after [`ReviewError::NotCompleted`]):
/// the accepted person's values, the same key and bytes, the ledger moved at most once.
pub async fn complete_again(desk: &dyn ReviewDesk, deps: &Deps, id: i64) -> Result<Accepted, ReviewError> {
    let r = get(desk, id).await?;
    let person = match (r.status, r.accepted_person_id) {
        (ReviewStatus::Accepted, Some(p)) => p,
        _ => return Err(ReviewError::NotAccepted { id, status: r.status.to_string() }),
    };
    let p = desk.person(person).await?.ok_or(ReviewError::UnknownPerson(person))?;
    let key = complete_accepted(deps, &r, &p).await?;
    Ok(Accepted { person_id: person, bucket: deps.cfg.raw_bucket.clone(), key })
}

/// Accepts a review: [`choose`] then [`complete`].
pub async fn accept(
    desk: &dyn ReviewDesk,
    deps: &Deps,
    id: i64,
    person: Option<i64>,
    reviewer: &str,
) -> Result<Accepted, ReviewError> {
    let (r, p) = choose(desk, id, person).await?;
    complete(desk, deps, &r, &p, reviewer).await
}

/// Rejects a pending review (the row stays in quarantine); returns it.
pub async fn reject(desk: &dyn ReviewDesk, id: i64, reviewer: &str) -> Result<StoredReview, ReviewError> {
    let r = get(desk, id).await?;
    if r.status != PENDING || !desk.decide(id, None, reviewer).await? {
        return Err(ReviewError::AlreadyDecided { id, status: r.status.to_string(), by: None });
    }
    Ok(r)
}

/// A completed row, built but not yet written: its raw key and Parquet bytes.
pub struct Completion {
    key: String,
    bytes: Vec<u8>,
}

/// Builds the completed row of `review` with `person`'s values: reads the bad file, checks that
/// the person fills every missing field, encodes the row. Writes nothing.
pub async fn prepare_completion(
    p: &Deps,
    review: &StoredReview,
    person: &Person,
) -> Result<Completion, StageError> {
    let bytes = p
        .store
        .get(&review.bad_bucket, &review.bad_key, None)
        .await
        .map_err(|e| StageError::port(ErrorKind::S3GetFailed, e))?;
    let batch =
        rows::read_parquet(bytes).map_err(|e| StageError::permanent(ErrorKind::BadRecordsUnreadable, e.0))?;
    let row = usize::try_from(review.row_index).unwrap_or(usize::MAX);
    let missing = rows::missing(&batch);
    let Some(m) = missing.get(row) else {
        return Err(StageError::permanent(
            ErrorKind::BadRecordsUnreadable,
            format!("row {row} is not in the file"),
        ));
    };
    if !rows::completable(m, person) {
        return Err(StageError::permanent(
            ErrorKind::Incomplete,
            format!("the person index has no value for a missing field ({})", m.join(", ")),
        ));
    }
    let bytes = rows::complete(&batch, &[(row, person)])
        .and_then(|b| rows::to_parquet(&b))
        .map_err(|e| StageError::permanent(ErrorKind::CompletionFailed, e.0))?;
    Ok(Completion { key: rows::output_key(&review.bad_key, &format!("reviewed-{row}")), bytes })
}

/// Writes a prepared row to the raw bucket (a repeat overwrites) and moves the file's ledger
/// counts once. Returns the raw key.
pub async fn write_completion(p: &Deps, review: &StoredReview, c: Completion) -> Result<String, StageError> {
    let Completion { key, bytes } = c;
    p.store
        .put(&p.cfg.raw_bucket, &key, bytes, p.cfg.kms_key.as_deref())
        .await
        .map_err(|e| StageError::port(ErrorKind::S3PutFailed, e))?;
    if let Some(mut run) =
        p.meta.get_run(&review.file_id).await.map_err(|e| StageError::port(ErrorKind::LedgerReadFailed, e))?
    {
        let full = format!("{}/{key}", p.cfg.raw_bucket);
        if !run.outputs.contains(&full) {
            run.counts.good += 1;
            run.counts.bad = run.counts.bad.saturating_sub(1);
            run.outputs.push(full);
            run.updated_at = now();
            p.meta.put_run(&run).await.map_err(|e| StageError::port(ErrorKind::LedgerWriteFailed, e))?;
        }
    }
    Ok(key)
}

/// Completes the row of an accepted review like an exact match: [`prepare_completion`] then
/// [`write_completion`]. Returns the raw key.
pub async fn complete_accepted(
    p: &Deps,
    review: &StoredReview,
    person: &Person,
) -> Result<String, StageError> {
    let c = prepare_completion(p, review, person).await?;
    write_completion(p, review, c).await
}

/// The records of a bad file and the missing fields of each row.
type BadRows = (Vec<Record>, Vec<Vec<String>>);

/// The quarantined rows behind reviews, each bad file read once.
#[derive(Default)]
pub struct BadRowCache {
    files: HashMap<(String, String), Option<BadRows>>,
}

impl BadRowCache {
    /// The review's record and its missing fields (None when the bad file cannot be read
    /// through `deps`).
    pub async fn row(&mut self, deps: &Deps, r: &StoredReview) -> Option<(Record, Vec<String>)> {
        let k = (r.bad_bucket.clone(), r.bad_key.clone());
        if !self.files.contains_key(&k) {
            let rows = match deps.store.get(&r.bad_bucket, &r.bad_key, None).await {
                Ok(bytes) => {
                    rows::read_parquet(bytes).ok().map(|b| (rows::records(&b, &r.file_id), rows::missing(&b)))
                }
                Err(_) => None,
            };
            self.files.insert(k.clone(), rows);
        }
        let (recs, missing) = self.files.get(&k)?.as_ref()?;
        let i = usize::try_from(r.row_index).ok()?;
        Some((recs.get(i)?.clone(), missing.get(i).cloned().unwrap_or_default()))
    }
}

/// The first character, then stars (a one-character value: a star); `-` for no value.
pub fn mask(v: Option<&str>, unmask: bool) -> String {
    match v {
        None => "-".into(),
        Some(s) if unmask => s.to_string(),
        Some(s) if s.chars().count() <= 1 => "*".into(),
        Some(s) => {
            let mut c = s.chars();
            format!("{}***", c.next().map(String::from).unwrap_or_default())
        }
    }
}

/// Dates, SSNs, phones, ZIPs: nothing shown unless unmasked (`masked` shows the shape).
pub fn hide(v: Option<&str>, unmask: bool, masked: &str) -> String {
    match v {
        None => "-".into(),
        Some(s) if unmask => s.to_string(),
        Some(_) => masked.into(),
    }
}

const DATE: &str = "****-**-**";
const ZIP: &str = "*****";
const PHONE: &str = "***-***-****";
const SSN: &str = "***-**-****";

/// The fields a reviewer compares, in display order.
pub const FIELDS: [&str; 9] =
    ["first_name", "last_name", "dob", "sex", "address", "city", "zip", "phone", "ssn"];

/// A record's field as shown (records carry no SSN: `-`).
pub fn record_value(r: &Record, f: &str, unmask: bool) -> String {
    match f {
        "first_name" => mask(r.first_name.as_deref(), unmask),
        "last_name" => mask(r.last_name.as_deref(), unmask),
        "dob" => hide(r.dob.map(|d| d.to_string()).as_deref(), unmask, DATE),
        "sex" => mask(r.sex.as_deref(), unmask),
        "address" => mask(r.address.as_deref(), unmask),
        "city" => mask(r.city.as_deref(), unmask),
        "zip" => hide(r.zip.as_deref(), unmask, ZIP),
        "phone" => hide(r.phone.as_deref(), unmask, PHONE),
        _ => "-".into(),
    }
}

/// A person's field as shown.
pub fn person_value(p: &Person, f: &str, unmask: bool) -> String {
    match f {
        "first_name" => mask(p.first_name.as_deref(), unmask),
        "last_name" => mask(p.last_name.as_deref(), unmask),
        "dob" => hide(p.dob.map(|d| d.to_string()).as_deref(), unmask, DATE),
        "sex" => mask(p.sex.as_deref(), unmask),
        "address" => mask(p.address.as_deref(), unmask),
        "city" => mask(p.city.as_deref(), unmask),
        "zip" => hide(p.zip.as_deref(), unmask, ZIP),
        "phone" => hide(p.phone.as_deref(), unmask, PHONE),
        "ssn" => hide(p.ssn.as_deref(), unmask, SSN),
        _ => "-".into(),
    }
}

/// Who a record is, as a list shows it: first name, last name, birth date.
pub fn who(r: &Record, unmask: bool) -> String {
    format!(
        "{} {} {}",
        mask(r.first_name.as_deref(), unmask),
        mask(r.last_name.as_deref(), unmask),
        hide(r.dob.map(|d| d.to_string()).as_deref(), unmask, DATE)
    )
}

/// One listed review and who its record is (None: the bad rows are not readable through the
/// given ports).
pub struct Listed {
    pub review: StoredReview,
    pub who: Option<String>,
    pub candidates: usize,
}

/// Reviews with a status, oldest first, with their records masked unless `unmask`.
pub async fn list(
    desk: &dyn ReviewDesk,
    deps: &Deps,
    status: ReviewStatus,
    limit: i64,
    unmask: bool,
) -> Result<Vec<Listed>, ReviewError> {
    let mut cache = BadRowCache::default();
    let mut out = Vec::new();
    for r in desk.list(status, limit).await? {
        let who = cache.row(deps, &r).await.map(|(rec, _)| who(&rec, unmask));
        out.push(Listed { candidates: candidates(&r).len(), who, review: r });
    }
    Ok(out)
}

/// One field of the evidence: the record's value and each candidate's, with its level.
pub struct FieldLine {
    pub field: &'static str,
    /// `?` when the record cannot be read.
    pub record: String,
    /// Per candidate: the value (`?` when unknown) and ` [level]` when the field was compared.
    pub cells: Vec<String>,
}

/// What a reviewer sees of one review.
pub struct Evidence {
    pub review: StoredReview,
    /// The record's missing fields (None: the bad rows are not readable through the given ports).
    pub missing: Option<Vec<String>>,
    pub candidates: Vec<Candidate>,
    /// Why candidate values are not shown (the person index could not be read).
    pub unknown: Option<ReviewError>,
    pub fields: Vec<FieldLine>,
}

/// The record and every candidate field by field (values masked unless `unmask`).
pub async fn evidence(
    desk: &dyn ReviewDesk,
    deps: &Deps,
    r: StoredReview,
    unmask: bool,
) -> Result<Evidence, ReviewError> {
    let rec = BadRowCache::default().row(deps, &r).await;
    let cands = candidates(&r);
    let mut persons = Vec::new();
    let mut unknown = None;
    for c in &cands {
        match desk.person(c.person_id).await {
            Ok(p) => persons.push(p),
            Err(e) => {
                unknown = Some(e);
                persons.push(None);
            }
        }
    }
    let fields = FIELDS
        .iter()
        .map(|f| FieldLine {
            field: f,
            record: rec.as_ref().map(|(r, _)| record_value(r, f, unmask)).unwrap_or_else(|| "?".into()),
            cells: cands
                .iter()
                .zip(&persons)
                .map(|(c, p)| {
                    let v = p.as_ref().map(|p| person_value(p, f, unmask)).unwrap_or_else(|| "?".into());
                    match c.levels.get(*f).and_then(|l| l.as_str()).unwrap_or("") {
                        "" => v,
                        level => format!("{v} [{level}]"),
                    }
                })
                .collect(),
        })
        .collect();
    Ok(Evidence { missing: rec.map(|(_, m)| m), review: r, candidates: cands, unknown, fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_shows_the_first_character_or_only_the_shape() {
        assert_eq!(mask(Some("BARBARA"), false), "B***");
        assert_eq!(mask(Some("B"), false), "*");
        assert_eq!(mask(None, false), "-");
        assert_eq!(mask(Some("BARBARA"), true), "BARBARA");
        assert_eq!(hide(Some("1989-01-08"), false, DATE), "****-**-**");
        assert_eq!(hide(Some("1989-01-08"), true, DATE), "1989-01-08");
        let p = Person { person_id: 1, ssn: Some("900-10-0011".into()), ..Person::default() };
        assert_eq!(person_value(&p, "ssn", false), "***-**-****");
        assert_eq!(person_value(&p, "zip", false), "-");
    }
}
