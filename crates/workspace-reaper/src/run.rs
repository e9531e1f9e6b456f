//! One reaper run: read history, describe the fleet, decide, act (or not), tell people.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::decide::{plan, Connection, Decision, Observed, Plan, Verdict, Workspace, WsState};
use crate::error::ReaperError;
use crate::notify::{Alert, Notifier, UserNotice};
use crate::policy::Policy;
use crate::port::{Backoff, WorkspacesApi, BATCH};
use crate::report::{self, Outcome, Row, Snapshot, SnapshotEntry};
use crate::store::ObjectStore;
use crate::wiki::{Wiki, WikiPage};

/// Everything a run needs; built once per cold start.
#[derive(Clone)]
pub struct Reaper {
    pub api: Arc<dyn WorkspacesApi>,
    pub store: Arc<dyn ObjectStore>,
    pub notifier: Arc<dyn Notifier>,
    pub policy: Policy,
    pub backoff: Backoff,
    /// The Confluence page, when one is configured (`REAPER_CONFLUENCE_SECRET_ARN`).
    pub wiki: Option<Arc<dyn Wiki>>,
}

/// What a run did, in counts (returned to Lambda and logged).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunSummary {
    pub run_at: String,
    pub dry_run: bool,
    pub fleet: usize,
    pub planned_terminations: usize,
    pub cap_tripped: bool,
    pub terminated: usize,
    pub terminate_failed: usize,
    pub would_terminate: usize,
    pub held_by_cap: usize,
    pub state_changed: usize,
    pub at_risk: usize,
    pub kept: usize,
    pub status_unknown: usize,
    pub notices_sent: usize,
    pub notice_failures: usize,
    pub report_key: String,
    /// `not configured`, `updated page <id> to version <n>` or `failed: <why>` (also in dry run).
    pub confluence: String,
}

/// What a dry plan would do, without touching anything: the report rows a manager would see.
#[derive(Debug, Clone)]
pub struct Preview {
    pub rows: Vec<Row>,
    pub planned_terminations: usize,
    pub cap_tripped: bool,
}

struct Acted {
    outcome: Outcome,
    error: String,
}

impl Reaper {
    /// Runs the policy once at `now`.
    pub async fn run(&self, now: DateTime<Utc>) -> Result<RunSummary, ReaperError> {
        let date = now.format("%Y-%m-%d").to_string();
        let first_seen = load_first_seen(self.store.as_ref()).await?;
        let plan = observe_and_plan(self.api.as_ref(), &self.policy, &self.backoff, &first_seen, now).await?;
        tracing::info!(
            fleet = plan.items.len(),
            planned = plan.planned_terminations,
            cap_tripped = plan.cap_tripped,
            dry_run = self.policy.dry_run,
            "reaper plan"
        );

        let mut acted: BTreeMap<String, Acted> = BTreeMap::new();
        let candidates: Vec<String> = plan
            .items
            .iter()
            .filter(|(_, v)| v.decision == Decision::Terminate)
            .map(|(o, _)| o.ws.id.clone())
            .collect();
        if plan.cap_tripped {
            for id in &candidates {
                acted.insert(id.clone(), Acted { outcome: Outcome::HeldByCap, error: String::new() });
            }
        } else if self.policy.dry_run {
            for id in &candidates {
                acted.insert(id.clone(), Acted { outcome: Outcome::WouldTerminate, error: String::new() });
            }
        } else {
            for chunk in candidates.chunks(BATCH) {
                self.recheck_and_terminate(chunk, &mut acted).await;
            }
        }

        // Notices to at-risk users (not in dry run: a dry run changes nothing for anyone).
        let mut summary = RunSummary {
            run_at: now.to_rfc3339_opts(SecondsFormat::Secs, true),
            dry_run: self.policy.dry_run,
            fleet: plan.items.len(),
            planned_terminations: plan.planned_terminations,
            cap_tripped: plan.cap_tripped,
            report_key: report::report_key(&date),
            confluence: "not configured".into(),
            ..RunSummary::default()
        };
        let next_run = now + chrono::Duration::days(i64::from(self.policy.schedule_interval_days));
        let mut rows = Vec::with_capacity(plan.items.len());
        let mut snapshot = Vec::with_capacity(plan.items.len());
        for (o, v) in &plan.items {
            let (outcome, mut error) = match acted.remove(&o.ws.id) {
                Some(a) => (a.outcome, a.error),
                None if v.decision == Decision::AtRisk => (Outcome::AtRisk, String::new()),
                None => (Outcome::Keep, String::new()),
            };
            if let Connection::Unknown(_) = &o.connection {
                summary.status_unknown += 1;
            }
            if error.is_empty() {
                error = status_error(o);
            }
            if outcome == Outcome::AtRisk && !self.policy.dry_run {
                match self.notify(&o.ws, next_run).await {
                    Ok(()) => summary.notices_sent += 1,
                    Err(m) => {
                        summary.notice_failures += 1;
                        error = format!("notice not sent: {m}");
                    }
                }
            }
            match outcome {
                Outcome::Terminated => summary.terminated += 1,
                Outcome::TerminateFailed => summary.terminate_failed += 1,
                Outcome::WouldTerminate => summary.would_terminate += 1,
                Outcome::HeldByCap => summary.held_by_cap += 1,
                Outcome::StateChanged => summary.state_changed += 1,
                Outcome::AtRisk => summary.at_risk += 1,
                Outcome::Keep => summary.kept += 1,
            }
            let last = match &o.connection {
                Connection::Last(t) => Some(*t),
                _ => None,
            };
            rows.push(row(o, v, outcome, error));
            snapshot.push(SnapshotEntry {
                id: o.ws.id.clone(),
                user: o.ws.user.clone(),
                directory: o.ws.directory.clone(),
                state: o.ws.state.as_str().to_string(),
                last_connection: last,
                first_seen: o.first_seen.unwrap_or(now),
                decision: outcome,
                rule: v.rule.as_str().to_string(),
            });
        }

        let csv = report::to_csv(&rows)?;
        self.store.put(&summary.report_key, csv.clone(), "text/csv").await?;
        self.store.put(report::LATEST_KEY, csv, "text/csv").await?;
        let snap = Snapshot {
            run_at: now,
            dry_run: self.policy.dry_run,
            cap_tripped: plan.cap_tripped,
            workspaces: snapshot,
        };
        let json = serde_json::to_vec_pretty(&snap).map_err(|e| ReaperError::History(e.to_string()))?;
        self.store.put(&report::history_key(&date), json, "application/json").await?;

        // After the CSV and history are safe: a wiki failure is reported and alerted, not fatal.
        if let Some(wiki) = &self.wiki {
            let title = format!(
                "WorkSpaces reaper run {}{}: {} terminated, {} at risk, {} kept. Full report: {}",
                summary.run_at,
                if summary.dry_run { " (dry run)" } else { "" },
                summary.terminated,
                summary.at_risk,
                summary.kept,
                summary.report_key
            );
            let page = WikiPage { body: crate::wiki::storage_body(&title, &rows) };
            summary.confluence = match wiki.publish(&page).await {
                Ok(p) => format!("updated page {} to version {}", p.page_id, p.version),
                Err(e) => {
                    tracing::error!(error = %e, "confluence page not updated");
                    format!("failed: {e}")
                }
            };
        }

        self.alerts(&summary).await;
        tracing::info!(
            terminated = summary.terminated,
            terminate_failed = summary.terminate_failed,
            would_terminate = summary.would_terminate,
            held_by_cap = summary.held_by_cap,
            state_changed = summary.state_changed,
            at_risk = summary.at_risk,
            kept = summary.kept,
            status_unknown = summary.status_unknown,
            confluence = %summary.confluence,
            "reaper run done"
        );
        Ok(summary)
    }

    /// The plan this reaper would make at `now`, with no termination, notice or write: the
    /// report rows with dry-run outcomes. First-seen dates come from the history in the store.
    pub async fn preview(&self, now: DateTime<Utc>) -> Result<Preview, ReaperError> {
        let first_seen = load_first_seen(self.store.as_ref()).await?;
        preview(self.api.as_ref(), &self.policy, &self.backoff, &first_seen, now).await
    }

    /// Re-reads the state of up to 25 candidates, then terminates those still AVAILABLE/STOPPED.
    async fn recheck_and_terminate(&self, chunk: &[String], acted: &mut BTreeMap<String, Acted>) {
        let states =
            match self.backoff.run("DescribeWorkspaces(ids)", || self.api.current_states(chunk)).await {
                Ok(s) => s.into_iter().collect::<BTreeMap<String, WsState>>(),
                Err(e) => {
                    for id in chunk {
                        let error = format!("state re-check failed: {e}");
                        acted.insert(id.clone(), Acted { outcome: Outcome::StateChanged, error });
                    }
                    return;
                }
            };
        let mut go = Vec::new();
        for id in chunk {
            match states.get(id) {
                Some(s) if s.terminable() => go.push(id.clone()),
                Some(s) => {
                    let error = format!("state now {}", s.as_str());
                    acted.insert(id.clone(), Acted { outcome: Outcome::StateChanged, error });
                }
                None => {
                    let error = "no longer listed".to_string();
                    acted.insert(id.clone(), Acted { outcome: Outcome::StateChanged, error });
                }
            }
        }
        if go.is_empty() {
            return;
        }
        match self.backoff.run("TerminateWorkspaces", || self.api.terminate(&go)).await {
            Ok(failures) => {
                let failed: BTreeMap<&str, _> = failures.iter().map(|f| (f.id.as_str(), f)).collect();
                for id in &go {
                    let a = match failed.get(id.as_str()) {
                        Some(f) => Acted {
                            outcome: Outcome::TerminateFailed,
                            error: format!("{}: {}", f.code, f.message),
                        },
                        None => Acted { outcome: Outcome::Terminated, error: String::new() },
                    };
                    acted.insert(id.clone(), a);
                }
            }
            Err(e) => {
                for id in &go {
                    let error = format!("terminate call failed: {e}");
                    acted.insert(id.clone(), Acted { outcome: Outcome::TerminateFailed, error });
                }
            }
        }
    }

    async fn notify(&self, ws: &Workspace, next_run: DateTime<Utc>) -> Result<(), String> {
        let email = email_for(ws, &self.policy).ok_or_else(|| "no usable email address".to_string())?;
        let n = UserNotice {
            email,
            workspace_id: ws.id.clone(),
            subject: format!("Your WorkSpace {} will be removed unless you sign in", ws.id),
            body: format!(
                "Your Amazon WorkSpace {} has not been used recently. WorkSpaces unused for more than {} days \
                 are removed. Sign in before {} to keep it; removal deletes its data and cannot be undone.",
                ws.id,
                self.policy.inactivity_limit_days,
                next_run.format("%Y-%m-%d")
            ),
        };
        self.notifier.notify_user(&n).await.map_err(|e| e.to_string())
    }

    async fn alerts(&self, s: &RunSummary) {
        let mut alerts = Vec::new();
        if s.cap_tripped {
            alerts.push(Alert {
                subject: "WorkSpaces reaper: cap exceeded, nothing terminated".into(),
                body: format!(
                    "The run at {} planned {} terminations out of {} WorkSpaces, over the cap ({} or {:.0}% \
                     of the fleet). Nothing was terminated. Report: {}",
                    s.run_at,
                    s.planned_terminations,
                    s.fleet,
                    self.policy.cap.max_terminations,
                    self.policy.cap.max_fleet_share * 100.0,
                    s.report_key
                ),
            });
        }
        if s.terminate_failed > 0 || s.notice_failures > 0 {
            alerts.push(Alert {
                subject: "WorkSpaces reaper: failures in this run".into(),
                body: format!(
                    "The run at {}: {} terminations failed, {} notices failed. Report: {}",
                    s.run_at, s.terminate_failed, s.notice_failures, s.report_key
                ),
            });
        }
        if let Some(why) = s.confluence.strip_prefix("failed: ") {
            alerts.push(Alert {
                subject: "WorkSpaces reaper: Confluence page not updated".into(),
                body: format!(
                    "The run at {} wrote its report ({}), but the Confluence page was not updated: {why}",
                    s.run_at, s.report_key
                ),
            });
        }
        for a in alerts {
            if let Err(e) = self.notifier.alert(&a).await {
                tracing::error!(error = %e, "alert not sent");
            }
        }
    }
}

/// The address for an at-risk notice: the configured tag, else `{username}@domain`.
pub fn email_for(ws: &Workspace, policy: &Policy) -> Option<String> {
    let valid = |e: &str| {
        let mut parts = e.split('@');
        matches!((parts.next(), parts.next(), parts.next()), (Some(l), Some(d), None)
            if !l.is_empty() && d.contains('.') && !e.contains(char::is_whitespace))
    };
    if let Some(e) = ws.tags.as_ref().and_then(|t| t.get(&policy.notify.email_tag_key)) {
        return valid(e).then(|| e.clone());
    }
    let e = format!("{}@{}", ws.user, policy.notify.email_domain);
    valid(&e).then_some(e)
}

/// First-seen dates from the newest history snapshot (absent history: everything is new).
pub async fn load_first_seen(
    store: &dyn ObjectStore,
) -> Result<BTreeMap<String, DateTime<Utc>>, ReaperError> {
    let keys = store.list(report::HISTORY_PREFIX).await?;
    let Some(latest) = keys.iter().filter(|k| k.ends_with(".json")).max() else {
        return Ok(BTreeMap::new());
    };
    let Some(bytes) = store.get(latest).await? else { return Ok(BTreeMap::new()) };
    let snap: Snapshot = serde_json::from_slice(&bytes)
        .map_err(|e| ReaperError::History(format!("cannot read {latest}: {e}")))?;
    Ok(snap.first_seen())
}

/// Describes the fleet, looks up connection status and decides: the one code path shared by a
/// run and by `lake reaper plan`.
pub async fn observe_and_plan(
    api: &dyn WorkspacesApi,
    policy: &Policy,
    backoff: &Backoff,
    first_seen: &BTreeMap<String, DateTime<Utc>>,
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
            let first_seen = first_seen.get(&ws.id).copied();
            Observed { ws, connection, first_seen }
        })
        .collect();
    Ok(plan(observed, policy, now))
}

/// The dry-run view of a plan: what a run with `dry_run = true` would report, changing nothing.
pub async fn preview(
    api: &dyn WorkspacesApi,
    policy: &Policy,
    backoff: &Backoff,
    first_seen: &BTreeMap<String, DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Preview, ReaperError> {
    let plan = observe_and_plan(api, policy, backoff, first_seen, now).await?;
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
            row(o, v, outcome, status_error(o))
        })
        .collect();
    Ok(Preview { rows, planned_terminations: plan.planned_terminations, cap_tripped: plan.cap_tripped })
}

fn status_error(o: &Observed) -> String {
    match &o.connection {
        Connection::Unknown(m) => format!("status lookup: {m}"),
        _ => String::new(),
    }
}

fn row(o: &Observed, v: &Verdict, outcome: Outcome, error: String) -> Row {
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
