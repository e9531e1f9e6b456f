//! Deciding proposed matches: the rules a reviewer's accept or reject follows, and what a
//! reviewer sees (every value masked unless explicitly unmasked). Shared by `lake review` and
//! any other front end; they only parse and print.
//!
//! The rules: only a pending review can be decided; an accept names one of the review's own
//! candidates (the best one by default) who is in the person index, and whose values fill
//! every field the record misses; the completed row is written into the dataset like an exact
//! match (at a key derived from the record, so a repeat overwrites) before the decision is
//! recorded, and the decision is audited once. A reject leaves the row in quarantine.
//!
//! Masking: names, sex, address and city show their first character then `***`; dates, SSNs,
//! ZIPs and phones show nothing but their shape.

use std::collections::HashMap;

use async_trait::async_trait;
use layer::ledger::now;
use layer::pipeline::{Deps, StageError};
use layer::ErrorKind;

use crate::index::IndexError;
use crate::model::{Person, Record};
use crate::reviews::StoredReview;
use crate::rows;

/// Review status: waiting for a reviewer.
pub const PENDING: &str = "pending";

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
    #[error(
        "review {id} was decided by someone else meanwhile; the completed row was written to {bucket}/{key}"
    )]
    DecidedMeanwhile { id: i64, bucket: String, key: String },
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
    async fn list(&self, status: &str, limit: i64) -> Result<Vec<StoredReview>, ReviewError>;
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

/// One candidate of a review: person id, score and the level each field reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub person_id: i64,
    pub score: f64,
    pub levels: serde_json::Map<String, serde_json::Value>,
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
                })
                .collect()
        })
        .unwrap_or_default()
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
        return Err(ReviewError::AlreadyDecided { id, status: r.status.clone(), by: r.reviewer.clone() });
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

/// The second step of an accept: completes the row into the dataset through `deps`, then records
/// the decision (if someone else decided meanwhile, says so and where the row went).
pub async fn complete(
    desk: &dyn ReviewDesk,
    deps: &Deps,
    review: &StoredReview,
    person: &Person,
    reviewer: &str,
) -> Result<Accepted, ReviewError> {
    let key = complete_accepted(deps, review, person).await?;
    let bucket = deps.cfg.raw_bucket.clone();
    let id = review.review_id;
    if !desk.decide(id, Some(person.person_id), reviewer).await? {
        return Err(ReviewError::DecidedMeanwhile { id, bucket, key });
    }
    Ok(Accepted { person_id: person.person_id, bucket, key })
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
        return Err(ReviewError::AlreadyDecided { id, status: r.status, by: None });
    }
    Ok(r)
}

/// Completes the row of an accepted review like an exact match: the row with its missing fields
/// filled from `person`, written to the raw bucket at a path derived from the record (a repeat
/// overwrites), and the ledger counts moved. Returns the raw key.
pub async fn complete_accepted(
    p: &Deps,
    review: &StoredReview,
    person: &Person,
) -> Result<String, StageError> {
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
    let out = rows::complete(&batch, &[(row, person)])
        .and_then(|b| rows::to_parquet(&b))
        .map_err(|e| StageError::permanent(ErrorKind::CompletionFailed, e.0))?;
    let key = rows::output_key(&review.bad_key, &format!("reviewed-{row}"));
    p.store
        .put(&p.cfg.raw_bucket, &key, out, p.cfg.kms_key.as_deref())
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
    status: &str,
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
