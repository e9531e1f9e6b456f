//! The scheduled guard's checks, shared by the `guard` Lambda and the `lake` CLI: the no-loss
//! audit with an alert naming the file ids at risk, freshness (a source silent for longer than
//! its contract's `expect_every` raises one alert, and one more when it resumes; the state is
//! kept in the metadata store), and a summary of every DLQ (count, oldest age, count per cause).
//!
//! Alerts carry file ids, source ids and counts only: never a key, a value or an error text.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use contracts::{Cadence, Catalog, Contract};

use crate::envelope::FailureEnvelope;
use crate::ops::{audit, peek_all, OpsError, Topology};
use crate::pipeline::Deps;
use crate::ports::GuardFlag;
use crate::protocol::AuditVerdict;

/// A change of a source's freshness since the last check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum FreshnessChange {
    /// Silent for longer than its cadence: the alert went out (once).
    WentSilent,
    /// Sent again after a silence alert: the all-clear went out (once).
    Resumed,
}

/// One source with a declared cadence.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FreshnessRow {
    pub source: String,
    pub expect_every: String,
    /// The last time a file of the source was received (RFC 3339); none when it never sent.
    pub last_received: Option<String>,
    /// When the next file was due (from the last file, or from the contract's publication).
    pub due_by: String,
    pub overdue: bool,
    /// What this check changed (only when it keeps state and alerts).
    pub change: Option<FreshnessChange>,
}

fn parse_t(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// Every source whose current contract declares `expect_every`, with when it last sent and
/// whether it is overdue at `now`. With `alert`, a source newly overdue raises one alert and one
/// that sent again after an alert raises one all-clear (the open alert is kept per source).
pub async fn freshness(deps: &Deps, now: DateTime<Utc>, alert: bool) -> Result<Vec<FreshnessRow>, OpsError> {
    let mut last: HashMap<String, String> = HashMap::new();
    for r in deps.meta.list_runs().await? {
        let Some(src) = r.source else { continue };
        let e = last.entry(src).or_default();
        if r.received_at > *e {
            *e = r.received_at;
        }
    }
    let catalog = Catalog::builtin();
    let mut rows = Vec::new();
    for pc in deps.meta.list_contracts().await? {
        let Ok(c) = Contract::from_toml_str(&pc.toml, &pc.source, &catalog) else { continue };
        let (Some(cadence), Some(text)) = (c.cadence(), c.expect_every.clone()) else { continue };
        let last_received = last.get(&pc.source).cloned();
        let from =
            last_received.as_deref().or(Some(pc.published_at.as_str())).and_then(parse_t).unwrap_or(now);
        let mut row = FreshnessRow {
            source: pc.source.clone(),
            expect_every: text,
            last_received,
            due_by: cadence.due_after(from).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            overdue: cadence.overdue(from, now),
            change: None,
        };
        if alert {
            row.change = transition(deps, &row, cadence, now).await?;
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Raises the silence alert or the all-clear when the source's state changed; keeps the state.
async fn transition(
    deps: &Deps,
    row: &FreshnessRow,
    cadence: Cadence,
    now: DateTime<Utc>,
) -> Result<Option<FreshnessChange>, OpsError> {
    let open = deps.meta.guard_state(&row.source, GuardFlag::Silent).await?;
    let change = match (row.overdue, open.is_some()) {
        (true, false) => FreshnessChange::WentSilent,
        (false, true) => FreshnessChange::Resumed,
        _ => return Ok(None),
    };
    let last = row.last_received.as_deref().unwrap_or("never");
    let (subject, text) = match change {
        FreshnessChange::WentSilent => (
            format!("[lake] source {} is silent", row.source),
            format!(
                "Source {} is expected every {} ({:?}); its last file was received {last}, the next was \
                 due by {}. This alert is sent once; another follows when the source sends again.\n\
                 Check locally with: lake freshness --backend aws\n",
                row.source, row.expect_every, cadence.unit, row.due_by
            ),
        ),
        FreshnessChange::Resumed => (
            format!("[lake] source {} resumed", row.source),
            format!("Source {} sent again (last file received {last}) after a silence alert.\n", row.source),
        ),
    };
    deps.notifier.publish(&deps.cfg.alert_topic, &subject, &text).await?;
    let value = (change == FreshnessChange::WentSilent).then(|| now.to_rfc3339());
    deps.meta.set_guard_state(&row.source, GuardFlag::Silent, value.as_deref()).await?;
    Ok(Some(change))
}

/// One DLQ: how many messages, how old the oldest is, and how many per cause (an envelope's
/// error kind; `raw` for a message SQS moved there by a redrive policy).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DlqSummary {
    pub queue: String,
    pub count: usize,
    pub oldest_age_secs: Option<i64>,
    pub by_cause: BTreeMap<String, usize>,
}

/// The cause of a DLQ message: the envelope's error kind, or `raw` for anything else.
pub fn cause_of(body: &str) -> String {
    match serde_json::from_str::<FailureEnvelope>(body) {
        Ok(e) => e.error_kind.to_string(),
        Err(_) => "raw".to_string(),
    }
}

/// Counts every message of each queue per cause without consuming them.
pub async fn dlq_summary(
    deps: &Deps,
    queues: &[String],
    now: DateTime<Utc>,
) -> Result<Vec<DlqSummary>, OpsError> {
    let mut out = Vec::new();
    for q in queues {
        let msgs = peek_all(deps, q).await?;
        let mut s = DlqSummary { queue: q.clone(), count: msgs.len(), ..Default::default() };
        for m in &msgs {
            *s.by_cause.entry(cause_of(&m.body)).or_default() += 1;
            let sent = serde_json::from_str::<FailureEnvelope>(&m.body)
                .ok()
                .and_then(|e| parse_t(&e.failed_at))
                .or_else(|| m.sent_at_ms.and_then(DateTime::from_timestamp_millis));
            if let Some(t) = sent {
                let age = (now - t).num_seconds().max(0);
                s.oldest_age_secs = Some(s.oldest_age_secs.map_or(age, |a| a.max(age)));
            }
        }
        out.push(s);
    }
    Ok(out)
}

/// What the guard checks and how.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Longer than this between stages and a file is at risk.
    pub max_in_flight_secs: i64,
    /// Every DLQ to summarise: the envelope DLQ and the stage queues' redrive-policy DLQs.
    pub dlqs: Vec<String>,
}

/// One guard run: the ids at risk, the freshness of every source with a cadence, the DLQs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GuardReport {
    pub versions: usize,
    pub at_risk: Vec<String>,
    pub freshness: Vec<FreshnessRow>,
    pub dlqs: Vec<DlqSummary>,
}

/// Runs every check; alerts once naming the file ids at risk (ids only), and on each freshness
/// change. The DLQ summary is reported (and logged as counts) but alarms on the DLQs page for it.
pub async fn run(
    deps: &Deps,
    topo: &Topology,
    cfg: &GuardConfig,
    now: DateTime<Utc>,
) -> Result<GuardReport, OpsError> {
    let rows = audit(deps, topo, cfg.max_in_flight_secs).await?;
    let at_risk: Vec<String> =
        rows.iter().filter(|r| r.verdict == AuditVerdict::AtRisk).map(|r| r.file_id.clone()).collect();
    if !at_risk.is_empty() {
        let subject = format!("[lake] audit: {} file(s) at risk", at_risk.len());
        let text = format!(
            "The no-loss audit found {} of {} object version(s) neither DONE, nor FAILED with an envelope, \
             nor in flight for less than {}s. File ids:\n  {}\n\
             See `lake audit --backend aws` and `lake status --backend aws`.\n",
            at_risk.len(),
            rows.len(),
            cfg.max_in_flight_secs,
            at_risk.join("\n  ")
        );
        deps.notifier.publish(&deps.cfg.alert_topic, &subject, &text).await?;
    }
    let freshness = freshness(deps, now, true).await?;
    let dlqs = dlq_summary(deps, &cfg.dlqs, now).await?;
    for d in &dlqs {
        tracing::info!(queue_count = d.count, oldest_age_secs = ?d.oldest_age_secs, causes = ?d.by_cause, "dlq");
    }
    crate::metrics::emit(
        "guard",
        None,
        &[
            ("FilesAtRisk", at_risk.len() as f64, "Count"),
            ("SourcesSilent", freshness.iter().filter(|f| f.overdue).count() as f64, "Count"),
            ("DlqMessages", dlqs.iter().map(|d| d.count).sum::<usize>() as f64, "Count"),
        ],
    );
    Ok(GuardReport { versions: rows.len(), at_risk, freshness, dlqs })
}
