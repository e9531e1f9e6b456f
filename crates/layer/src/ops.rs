//! Operations on a running lake, shared by the `lake` CLI and any scheduled function: the
//! ledger as a status list, the no-loss audit, and redrive / replay of failure envelopes. They
//! work over the ports, so they run the same against the embedded lake and an AWS account; the
//! caller parses arguments and prints.

use std::collections::HashSet;

use contracts::{Catalog, Contract};

use crate::envelope::FailureEnvelope;
use crate::ledger::{now, RunRecord, Status};
use crate::pipeline::{Deps, WorkMessage};
use crate::ports::{PortError, Received};
use crate::protocol::{AuditVerdict, ErrorKind, Function, Stage};

/// Where files enter the lake: the ingestion bucket and the queue its notifications go to.
#[derive(Debug, Clone)]
pub struct Topology {
    pub ingest_bucket: String,
    pub ingest_queue: String,
}

/// Why an operation could not run: a port failed, or the ledger lacks what a replay needs.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("{0}")]
    Replay(String),
}

/// The ledger, newest first.
pub async fn status(deps: &Deps) -> Result<Vec<RunRecord>, OpsError> {
    let mut runs = deps.meta.list_runs().await?;
    runs.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.file_id.cmp(&b.file_id)));
    Ok(runs)
}

/// One object version and what the ledger says of it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRow {
    pub file_id: String,
    pub key_hash: String,
    pub version_id: Option<String>,
    pub verdict: AuditVerdict,
    pub why: String,
}

/// Takes every message of a queue and makes them visible again: a look that consumes nothing.
pub(crate) async fn peek_all(deps: &Deps, queue: &str) -> Result<Vec<Received>, PortError> {
    let mut seen = Vec::new();
    loop {
        let msgs = deps.queue.receive(queue, 10).await?;
        if msgs.is_empty() {
            break;
        }
        seen.extend(msgs);
    }
    for m in &seen {
        deps.queue.release(queue, &m.receipt).await?;
    }
    Ok(seen)
}

/// How long an NDJSON part of a FHIR Bulk Data export may wait for its export's manifest
/// before the audit calls it at risk: an export server writes the manifest last, after every
/// part, and a large export takes hours.
pub const MAX_MANIFEST_WAIT_SECS: i64 = 24 * 3600;

/// The verdict on one object version from its ledger entry.
fn verdict(
    run: Option<&RunRecord>,
    enveloped: bool,
    now_t: chrono::DateTime<chrono::Utc>,
    max_in_flight_secs: i64,
) -> (AuditVerdict, String) {
    match run {
        Some(r) if r.status == Status::Done => (AuditVerdict::Done, String::new()),
        Some(r) if r.status == Status::Failed && enveloped => {
            (AuditVerdict::FailedEnveloped, r.error_kind.map(|k| k.to_string()).unwrap_or_default())
        }
        Some(r) if r.status == Status::Failed => {
            (AuditVerdict::AtRisk, "FAILED but no envelope in the DLQ".into())
        }
        Some(r) => {
            let age = chrono::DateTime::parse_from_rfc3339(&r.updated_at)
                .map(|t| (now_t - t.with_timezone(&chrono::Utc)).num_seconds())
                .unwrap_or(i64::MAX);
            if r.stage == Stage::AwaitingManifest {
                let limit = max_in_flight_secs.max(MAX_MANIFEST_WAIT_SECS);
                let v = if age <= limit { AuditVerdict::InFlight } else { AuditVerdict::AtRisk };
                return (v, format!("NDJSON part awaiting its export's manifest for {age}s"));
            }
            let v = if age <= max_in_flight_secs { AuditVerdict::InFlight } else { AuditVerdict::AtRisk };
            (v, format!("{} / {} for {age}s", r.status.as_str(), r.stage))
        }
        None => (AuditVerdict::AtRisk, "no ledger entry: never routed".into()),
    }
}

/// The no-loss check: every object version in the ingestion bucket must be DONE, FAILED with
/// its envelope in the DLQ, or in flight for less than `max_in_flight_secs`. Anything else is
/// at risk. The DLQ is read without consuming it.
pub async fn audit(deps: &Deps, topo: &Topology, max_in_flight_secs: i64) -> Result<Vec<AuditRow>, OpsError> {
    let versions = deps.store.list_versions(&topo.ingest_bucket, "").await?;
    let enveloped: HashSet<String> = peek_all(deps, &deps.cfg.dlq)
        .await?
        .iter()
        .filter_map(|m| serde_json::from_str::<FailureEnvelope>(&m.body).ok())
        .map(|e| e.file_id)
        .collect();
    let now_t = chrono::Utc::now();
    let mut rows = Vec::new();
    for v in versions.iter().filter(|v| !v.key.is_folder() && !v.key.is_hidden()) {
        let id = crate::ledger::file_id(&topo.ingest_bucket, v.key.expose(), v.version_id.as_deref());
        let run = deps.meta.get_run(&id).await?;
        let (verdict, why) = verdict(run.as_ref(), enveloped.contains(&id), now_t, max_in_flight_secs);
        rows.push(AuditRow {
            file_id: id,
            key_hash: v.key.hash(),
            version_id: v.version_id.clone(),
            verdict,
            why,
        });
    }
    Ok(rows)
}

/// Which DLQ envelopes to replay (every given field must match).
#[derive(Debug, Clone, Default)]
pub struct RedriveFilter {
    pub file_id: Option<String>,
    pub source: Option<String>,
    pub error_kind: Option<ErrorKind>,
}

impl RedriveFilter {
    fn matches(&self, env: &FailureEnvelope) -> bool {
        self.file_id.as_ref().is_none_or(|x| *x == env.file_id)
            && self.source.as_ref().is_none_or(|x| Some(x) == env.source.as_ref())
            && self.error_kind.is_none_or(|x| x == env.error_kind)
    }
}

/// What a redrive did: the envelopes replayed, and those that matched but could not be replayed
/// (each stays in the DLQ) with the reason.
#[derive(Debug, Default)]
pub struct RedriveReport {
    pub replayed: Vec<FailureEnvelope>,
    pub not_replayed: Vec<(FailureEnvelope, String)>,
}

/// Moves matching DLQ envelopes back to the queue of the stage that failed, resetting the
/// ledger so the stage runs again. Envelopes that do not match, or cannot be replayed, stay in
/// the DLQ.
pub async fn redrive(deps: &Deps, topo: &Topology, f: &RedriveFilter) -> Result<RedriveReport, OpsError> {
    let mut report = RedriveReport::default();
    let mut keep = Vec::new();
    loop {
        let msgs = deps.queue.receive(&deps.cfg.dlq, 10).await?;
        if msgs.is_empty() {
            break;
        }
        for m in msgs {
            let env = match serde_json::from_str::<FailureEnvelope>(&m.body) {
                Ok(env) if f.matches(&env) => env,
                _ => {
                    keep.push(m);
                    continue;
                }
            };
            // a failure here leaves the envelope in the DLQ (released, not lost) and is reported
            if let Err(e) = replay(deps, topo, &env).await {
                report.not_replayed.push((env, e.to_string()));
                keep.push(m);
                continue;
            }
            deps.queue.delete(&deps.cfg.dlq, &m.receipt).await?;
            report.replayed.push(env);
        }
    }
    for m in keep {
        deps.queue.release(&deps.cfg.dlq, &m.receipt).await?;
    }
    Ok(report)
}

/// Rebuilds the failed stage's message from the ledger (the envelope holds no key) and sends it:
/// an S3 notification to the ingest queue for a router failure (or an unrouted file), otherwise a
/// work message under the source's current contract to its format family's queue.
pub async fn replay(deps: &Deps, topo: &Topology, env: &FailureEnvelope) -> Result<(), OpsError> {
    let Some(mut run) = deps.meta.get_run(&env.file_id).await? else {
        return Err(OpsError::Replay(format!(
            "no ledger entry for {}: the envelope cannot be replayed",
            env.file_id
        )));
    };
    let (target, body) = match run.source.clone() {
        Some(source) if env.function != Function::IngestionRouter => {
            work_message(deps, &mut run, env, source).await?
        }
        _ => {
            let body =
                crate::s3event::notification(&run.bucket, run.key.expose(), run.version_id.as_deref(), 1);
            run.stage = Stage::Router;
            (topo.ingest_queue.clone(), body)
        }
    };
    run.status = Status::Received;
    run.error_kind = None;
    run.error_message = None;
    run.updated_at = now();
    deps.meta.put_run(&run).await?;
    deps.queue.send(&target, &body).await?;
    Ok(())
}

/// The work message of a replayed workflow failure and the queue it goes to. After a fix the
/// source's current contract applies; its dataset is the run's, else the contract's.
async fn work_message(
    deps: &Deps,
    run: &mut RunRecord,
    env: &FailureEnvelope,
    source: String,
) -> Result<(String, String), OpsError> {
    let current = deps.meta.current_contract(&source).await?;
    let version = current.as_ref().map(|c| c.version).or(run.contract_version).unwrap_or(1);
    let contract =
        current.as_ref().and_then(|c| Contract::from_toml_str(&c.toml, &source, &Catalog::builtin()).ok());
    let dataset =
        run.dataset.clone().or_else(|| current.as_ref().map(|c| c.dataset.clone())).ok_or_else(|| {
            OpsError::Replay(format!("{}: no dataset in the ledger or a contract", run.file_id))
        })?;
    let queue = match &contract {
        Some(c) => deps.cfg.family_queue(c.format.family()).to_string(),
        None if !env.source_queue.is_empty() => env.source_queue.clone(),
        None => {
            return Err(OpsError::Replay(format!(
                "{}: the source has no valid published contract and the envelope names no queue",
                run.file_id
            )))
        }
    };
    let w = WorkMessage {
        file_id: run.file_id.clone(),
        bucket: run.bucket.clone(),
        key: run.key.clone(),
        version_id: run.version_id.clone(),
        source,
        dataset: dataset.clone(),
        contract_version: version,
    };
    run.stage = Stage::Queued;
    run.contract_version = Some(version);
    run.dataset = Some(dataset);
    let body = serde_json::to_string(&w).map_err(|e| OpsError::Replay(e.to_string()))?;
    Ok((queue, body))
}

/// A stage queue's DLQ (where its redrive policy moves a message after the last receive) and the
/// queue its messages go back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageDlq {
    pub dlq: String,
    pub queue: String,
}

/// Whether a raw (non-envelope) message matches a filter: never by error kind (it has none);
/// by file id or source when the message carries them (work and pii messages do).
fn raw_matches(f: &RedriveFilter, body: &str) -> bool {
    if f.error_kind.is_some() {
        return false;
    }
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(String::from);
    f.file_id.as_ref().is_none_or(|x| field("file_id").as_ref() == Some(x))
        && f.source.as_ref().is_none_or(|x| field("source").as_ref() == Some(x))
}

/// What a redrive would do, per DLQ: the matching messages' count per cause (an envelope's
/// error kind, `raw` for a message a redrive policy moved) and the envelopes' file ids. Nothing
/// is consumed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RedrivePlan {
    pub dlq: String,
    pub by_cause: std::collections::BTreeMap<String, usize>,
    pub file_ids: Vec<String>,
}

/// The dry run of a redrive over the envelope DLQ and every stage DLQ.
pub async fn redrive_plan(
    deps: &Deps,
    stages: &[StageDlq],
    f: &RedriveFilter,
) -> Result<Vec<RedrivePlan>, OpsError> {
    let mut out = Vec::new();
    let mut queues = vec![deps.cfg.dlq.clone()];
    queues.extend(stages.iter().map(|s| s.dlq.clone()));
    for q in queues {
        let mut plan = RedrivePlan { dlq: q.clone(), ..Default::default() };
        for m in peek_all(deps, &q).await? {
            match serde_json::from_str::<FailureEnvelope>(&m.body) {
                Ok(env) if f.matches(&env) => {
                    *plan.by_cause.entry(env.error_kind.to_string()).or_default() += 1;
                    plan.file_ids.push(env.file_id);
                }
                Ok(_) => {}
                Err(_) if raw_matches(f, &m.body) => *plan.by_cause.entry("raw".into()).or_default() += 1,
                Err(_) => {}
            }
        }
        out.push(plan);
    }
    Ok(out)
}

/// Moves the matching raw messages of every stage DLQ back to their stage queue, unchanged (the
/// stages are idempotent: a message already handled is a no-op). Envelopes found in a stage DLQ
/// are left for [`redrive`]. Returns how many moved per DLQ.
pub async fn redrive_raw(
    deps: &Deps,
    stages: &[StageDlq],
    f: &RedriveFilter,
) -> Result<Vec<(String, usize)>, OpsError> {
    let mut out = Vec::new();
    for s in stages {
        let mut keep = Vec::new();
        let mut moved = 0;
        loop {
            let msgs = deps.queue.receive(&s.dlq, 10).await?;
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                let raw = serde_json::from_str::<FailureEnvelope>(&m.body).is_err();
                if !(raw && raw_matches(f, &m.body)) {
                    keep.push(m);
                    continue;
                }
                // sent first, then deleted: a crash in between leaves a copy, never a loss
                deps.queue.send(&s.queue, &m.body).await?;
                deps.queue.delete(&s.dlq, &m.receipt).await?;
                moved += 1;
            }
        }
        for m in keep {
            deps.queue.release(&s.dlq, &m.receipt).await?;
        }
        out.push((s.dlq.clone(), moved));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_part_awaiting_its_manifest_is_in_flight_for_a_day_then_at_risk() {
        let key = crate::ObjectKey::from("ridgeline_bulk/export-1/Patient.ndjson".to_string());
        let mut run = RunRecord::received("b", &key, None);
        run.stage = Stage::AwaitingManifest;
        let now_t =
            chrono::DateTime::parse_from_rfc3339(&run.updated_at).unwrap().with_timezone(&chrono::Utc);
        let (v, why) = verdict(Some(&run), false, now_t + chrono::Duration::hours(3), 900);
        assert_eq!(v, AuditVerdict::InFlight, "{why}");
        let (v, why) = verdict(Some(&run), false, now_t + chrono::Duration::hours(25), 900);
        assert_eq!(v, AuditVerdict::AtRisk);
        assert_eq!(why, "NDJSON part awaiting its export's manifest for 90000s");
        run.stage = Stage::Queued;
        let (v, _) = verdict(Some(&run), false, now_t + chrono::Duration::hours(3), 900);
        assert_eq!(v, AuditVerdict::AtRisk, "other stages keep the ordinary limit");
    }
}
