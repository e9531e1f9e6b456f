//! What a run sees before it acts: the history's first-seen dates, warnings and previous mode, the fleet
//! (describe, connection status) and the plan; the dry-run preview `lake reaper plan` prints; the
//! report row of one WorkSpace. Reads only.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::decide::{plan, Decision, Plan, Verdict};
use crate::error::ReaperError;
use crate::fleet::{Connection, Observed, Warning, Workspace};
use crate::policy::{Mode, Policy};
use crate::port::{Backoff, WorkspacesApi, BATCH};
use crate::report::{self, Outcome, Row, Snapshot};
use crate::store::ObjectStore;

/// What a dry plan would do, without touching anything: the report rows a manager would see.
#[derive(Debug, Clone)]
pub struct Preview {
    pub rows: Vec<Row>,
    pub planned_terminations: usize,
    pub cap_tripped: bool,
    /// Fleet size the cap was measured against.
    pub fleet: usize,
}

/// What the history tells a new run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// First-seen date per WorkSpace id, from the newest snapshot.
    pub first_seen: BTreeMap<String, DateTime<Utc>>,
    /// The warning its user was given per WorkSpace id, from the newest snapshot.
    pub warnings: BTreeMap<String, Warning>,
    /// The newest snapshot of an earlier date (its key) and its mode.
    pub previous: Option<(String, Mode)>,
}

/// Reads the newest snapshot (first-seen dates) and the newest one of a date before `today_key`
/// (the previous run's mode). A re-run of the same date does not count as the previous run.
pub async fn load_history(store: &dyn ObjectStore, today_key: &str) -> Result<History, ReaperError> {
    let keys = store.list(report::HISTORY_PREFIX).await?;
    let mut json: Vec<&String> = keys.iter().filter(|k| k.ends_with(".json")).collect();
    json.sort();
    let Some(latest) = json.last() else { return Ok(History::default()) };
    let read = |key: String| async move {
        let Some(bytes) = store.get(&key).await? else { return Ok::<_, ReaperError>(None) };
        let snap: Snapshot = serde_json::from_slice(&bytes)
            .map_err(|e| ReaperError::History(format!("cannot read {key}: {e}")))?;
        Ok(Some(snap))
    };
    let newest = read((*latest).clone()).await?;
    let first_seen = newest.as_ref().map(Snapshot::first_seen).unwrap_or_default();
    let warnings = newest.as_ref().map(Snapshot::warnings).unwrap_or_default();
    let before = json.iter().rev().find(|k| k.as_str() < today_key);
    let previous = match before {
        Some(k) if Some(*k) == json.last().copied() => newest.map(|s| ((*k).clone(), s.mode())),
        Some(k) => read((*k).clone()).await?.map(|s| ((*k).clone(), s.mode())),
        None => None,
    };
    Ok(History { first_seen, warnings, previous })
}

/// First-seen dates and warnings from the newest history snapshot (absent history: everything
/// is new and nobody was warned).
pub async fn load_known(store: &dyn ObjectStore) -> Result<History, ReaperError> {
    load_history(store, "").await
}

/// Describes the fleet, looks up connection status and decides: the one code path shared by a
/// run and by `lake reaper plan`.
pub async fn observe_and_plan(
    api: &dyn WorkspacesApi,
    policy: &Policy,
    backoff: &Backoff,
    known: &History,
    now: DateTime<Utc>,
) -> Result<Plan, ReaperError> {
    let fleet = describe_fleet(api, policy, backoff).await?;
    let connections = connections(api, backoff, &fleet).await;
    let observed: Vec<Observed> = fleet
        .into_iter()
        .map(|ws| {
            let connection = connections
                .get(&ws.id)
                .cloned()
                .unwrap_or_else(|| Connection::Unknown("not in the status answer".into()));
            let first_seen = known.first_seen.get(&ws.id).copied();
            let warning = known.warnings.get(&ws.id).copied();
            Observed { ws, connection, first_seen, warning }
        })
        .collect();
    Ok(plan(observed, policy, now))
}

/// The dry-run view of a plan: what a run with `dry_run = true` would report, changing nothing.
pub async fn preview(
    api: &dyn WorkspacesApi,
    policy: &Policy,
    backoff: &Backoff,
    known: &History,
    now: DateTime<Utc>,
) -> Result<Preview, ReaperError> {
    let plan = observe_and_plan(api, policy, backoff, known, now).await?;
    let rows = plan
        .items
        .iter()
        .map(|(o, v)| {
            let outcome = match v.decision {
                Decision::Terminate if plan.cap_tripped => Outcome::HeldByCap,
                Decision::Terminate => Outcome::WouldTerminate,
                Decision::AtRisk => Outcome::AtRisk,
                Decision::Keep => Outcome::Keep,
            };
            row(o, v, outcome, status_error(o, v), Mode::DryRun)
        })
        .collect();
    Ok(Preview {
        rows,
        planned_terminations: plan.planned_terminations,
        cap_tripped: plan.cap_tripped,
        fleet: plan.items.len(),
    })
}

/// The report's note on a WorkSpace's connection status, if any.
pub fn status_error(o: &Observed, v: &Verdict) -> String {
    match &o.connection {
        Connection::Unknown(m) => format!("status lookup: {m}"),
        Connection::Last(t) if v.clock_skew => format!(
            "clock skew: last connection {} is after the run time (counted as used now)",
            t.to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
        _ => String::new(),
    }
}

/// The report row of one WorkSpace.
pub fn row(o: &Observed, v: &Verdict, outcome: Outcome, error: String, mode: Mode) -> Row {
    Row {
        workspace_id: o.ws.id.clone(),
        user: o.ws.user.clone(),
        directory: o.ws.directory.clone(),
        state: o.ws.state.as_str().to_string(),
        last_connection: match &o.connection {
            Connection::Last(t) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
            Connection::Never => "never".into(),
            Connection::Unknown(_) => "unknown".into(),
        },
        days_inactive: v.days_inactive,
        outcome,
        rule: v.rule.as_str().to_string(),
        error,
        idle_seconds: v.idle_seconds,
        mode,
    }
}

/// Every WorkSpace in scope. Any describe failure aborts the run: a partial fleet would make
/// the fleet-share cap meaningless.
async fn describe_fleet(
    api: &dyn WorkspacesApi,
    policy: &Policy,
    backoff: &Backoff,
) -> Result<Vec<Workspace>, ReaperError> {
    let dirs: Vec<Option<&str>> = if policy.all_directories() {
        vec![None]
    } else {
        policy.directories.iter().map(|d| Some(d.as_str())).collect()
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for dir in dirs {
        let mut token: Option<String> = None;
        loop {
            let page = backoff.run("DescribeWorkspaces", || api.describe_page(dir, token.clone())).await?;
            for ws in page.workspaces {
                if seen.insert(ws.id.clone()) {
                    out.push(ws);
                }
            }
            match page.next_token {
                Some(t) if Some(&t) != token.as_ref() => token = Some(t),
                _ => break,
            }
        }
    }
    Ok(out)
}

/// Connection status, 25 ids a call. A failed call leaves its ids unknown (so they are kept).
async fn connections(
    api: &dyn WorkspacesApi,
    backoff: &Backoff,
    fleet: &[Workspace],
) -> BTreeMap<String, Connection> {
    let ids: Vec<String> = fleet.iter().map(|w| w.id.clone()).collect();
    let mut out = BTreeMap::new();
    for chunk in ids.chunks(BATCH) {
        match backoff.run("DescribeWorkspacesConnectionStatus", || api.connection_status(chunk)).await {
            Ok(statuses) => {
                for s in statuses {
                    let c = s.last_connection.map_or(Connection::Never, Connection::Last);
                    out.insert(s.id, c);
                }
            }
            Err(e) => {
                tracing::warn!(ids = chunk.len(), "status lookup failed; keeping these WorkSpaces");
                for id in chunk {
                    out.insert(id.clone(), Connection::Unknown(e.to_string()));
                }
            }
        }
    }
    out
}
