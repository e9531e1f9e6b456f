//! One reaper run: read history, describe the fleet, decide, act (or not), tell people (one
//! notice per user, alerts to on-call), and write the report, history, activity analytics and the
//! Confluence page.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::analytics::{self, Activity};
use crate::decide::{Decision, Plan, Verdict};
use crate::email::{self, NoticeItem, NoticeKind};
use crate::error::ReaperError;
use crate::fleet::{Connection, Observed, Workspace, WsState};
use crate::notify::{Alert, Notifier};
use crate::policy::{Mode, Policy};
use crate::port::{Backoff, WorkspacesApi, BATCH};
use crate::report::{self, Outcome, Row, Snapshot, SnapshotEntry};
use crate::store::ObjectStore;
use crate::wiki::{Attachment, Wiki, WikiPage};

pub use crate::observe::{load_first_seen, load_history, observe_and_plan, preview, History, Preview};
use crate::observe::{row, status_error};

/// File name of the activity chart attached to the Confluence page.
pub const CHART_ATTACHMENT: &str = "reaper-activity.svg";

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
    pub mode: Mode,
    pub dry_run: bool,
    /// The mode of the previous run (an earlier date in the history), if any.
    pub previous_mode: Option<Mode>,
    /// True when the mode differs from the previous run's (on-call is alerted).
    pub mode_changed: bool,
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
    /// WorkSpaces whose last connection lies after the run time (flagged in the report).
    pub clock_skew: usize,
    pub notices_sent: usize,
    pub notice_failures: usize,
    /// WorkSpaces whose user got no notice (no usable address, or the send failed); listed in
    /// the failure alert. At-risk rows also say so in the report's `error` column.
    pub unnotified: Vec<String>,
    pub report_key: String,
    pub activity_key: String,
    /// `not configured`, `updated page <id> to version <n>` or `failed: <why>` (also in dry run).
    pub confluence: String,
}

struct Acted {
    outcome: Outcome,
    error: String,
}

/// The notices of a run: per address, the report rows and what to say about each.
type Notices = BTreeMap<String, Vec<(usize, NoticeItem)>>;

impl Reaper {
    /// Runs the policy once at `now`.
    pub async fn run(&self, now: DateTime<Utc>) -> Result<RunSummary, ReaperError> {
        let date = now.format("%Y-%m-%d").to_string();
        let history = load_history(self.store.as_ref(), &report::history_key(&date)).await?;
        let plan = observe_and_plan(self.api.as_ref(), &self.policy, &self.backoff, &history.first_seen, now)
            .await?;
        let mode = self.policy.mode();
        tracing::info!(
            fleet = plan.items.len(),
            planned = plan.planned_terminations,
            cap_tripped = plan.cap_tripped,
            mode = mode.as_str(),
            "reaper plan"
        );
        let acted = self.act(&plan).await;
        let previous_mode = history.previous.as_ref().map(|(_, m)| *m);
        let mut summary = RunSummary {
            run_at: now.to_rfc3339_opts(SecondsFormat::Secs, true),
            mode,
            dry_run: self.policy.dry_run,
            previous_mode,
            mode_changed: previous_mode.is_some_and(|p| p != mode),
            fleet: plan.items.len(),
            planned_terminations: plan.planned_terminations,
            cap_tripped: plan.cap_tripped,
            report_key: report::report_key(&date),
            activity_key: report::activity_svg_key(&date),
            confluence: "not configured".into(),
            ..RunSummary::default()
        };
        let (mut rows, snapshot, notices) = self.tally(&plan, acted, now, &mut summary);
        self.send_notices(notices, &mut rows, now, &mut summary).await;
        self.write_report(&summary, &rows, snapshot, plan.cap_tripped, now).await?;
        let activity = self.write_activity(&date).await?;
        // After the CSV and history are safe: a wiki failure is reported and alerted, not fatal.
        if let Some(wiki) = &self.wiki {
            summary.confluence = publish_page(wiki.as_ref(), &summary, &rows, &activity).await;
        }
        self.alerts(&summary, history.previous.as_ref().map(|(k, _)| k.as_str())).await;
        tracing::info!(
            terminated = summary.terminated,
            terminate_failed = summary.terminate_failed,
            would_terminate = summary.would_terminate,
            held_by_cap = summary.held_by_cap,
            state_changed = summary.state_changed,
            at_risk = summary.at_risk,
            kept = summary.kept,
            status_unknown = summary.status_unknown,
            clock_skew = summary.clock_skew,
            notices_sent = summary.notices_sent,
            notice_failures = summary.notice_failures,
            mode_changed = summary.mode_changed,
            confluence = %summary.confluence,
            "reaper run done"
        );
        Ok(summary)
    }

    /// Terminates the plan's candidates (re-checked, in batches), or records why not (cap, dry run).
    async fn act(&self, plan: &Plan) -> BTreeMap<String, Acted> {
        let mut acted: BTreeMap<String, Acted> = BTreeMap::new();
        let candidates: Vec<String> = plan
            .items
            .iter()
            .filter(|(_, v)| v.decision == Decision::Terminate)
            .map(|(o, _)| o.ws.id.clone())
            .collect();
        let held = if plan.cap_tripped {
            Some(Outcome::HeldByCap)
        } else if self.policy.dry_run {
            Some(Outcome::WouldTerminate)
        } else {
            None
        };
        match held {
            Some(outcome) => {
                for id in candidates {
                    acted.insert(id, Acted { outcome, error: String::new() });
                }
            }
            None => {
                for chunk in candidates.chunks(BATCH) {
                    self.recheck_and_terminate(chunk, &mut acted).await;
                }
            }
        }
        acted
    }

    /// The final outcome of every WorkSpace: report rows, history entries, the summary's counts,
    /// and who is to be told: at-risk users (not in dry run unless the policy says
    /// `notify_in_dry_run`) and users whose WorkSpace was terminated, grouped by address.
    fn tally(
        &self,
        plan: &Plan,
        mut acted: BTreeMap<String, Acted>,
        now: DateTime<Utc>,
        summary: &mut RunSummary,
    ) -> (Vec<Row>, Vec<SnapshotEntry>, Notices) {
        let next_run = now + chrono::Duration::days(i64::from(self.policy.schedule_interval_days));
        let warn = !self.policy.dry_run || self.policy.notify.notify_in_dry_run;
        let mut rows = Vec::with_capacity(plan.items.len());
        let mut snapshot = Vec::with_capacity(plan.items.len());
        let mut notices = Notices::new();
        for (o, v) in &plan.items {
            let (outcome, mut error) = match acted.remove(&o.ws.id) {
                Some(a) => (a.outcome, a.error),
                None if v.decision == Decision::AtRisk => (Outcome::AtRisk, String::new()),
                None => (Outcome::Keep, String::new()),
            };
            summary.status_unknown += usize::from(matches!(o.connection, Connection::Unknown(_)));
            summary.clock_skew += usize::from(v.clock_skew);
            if error.is_empty() {
                error = status_error(o, v);
            }
            let kind = match outcome {
                Outcome::AtRisk if warn => Some(NoticeKind::AtRisk { removal_run: next_run }),
                Outcome::Terminated => Some(NoticeKind::Terminated),
                _ => None,
            };
            if let Some(kind) = kind {
                match email_for(&o.ws, &self.policy) {
                    Some(addr) => notices.entry(addr).or_default().push((rows.len(), notice_item(o, kind))),
                    None => {
                        summary.notice_failures += 1;
                        summary.unnotified.push(o.ws.id.clone());
                        // A terminated row keeps its own record clean; the alert lists its id.
                        if outcome == Outcome::AtRisk {
                            error = "notice not sent: no usable email address".into();
                        }
                    }
                }
            }
            count(summary, outcome);
            rows.push(row(o, v, outcome, error, self.policy.mode()));
            snapshot.push(snapshot_entry(o, v, outcome, now));
        }
        (rows, snapshot, notices)
    }

    /// One notice per address; a failure is noted on each of that user's rows.
    async fn send_notices(&self, notices: Notices, rows: &mut [Row], now: DateTime<Utc>, s: &mut RunSummary) {
        for (addr, items) in notices {
            let list: Vec<NoticeItem> = items.iter().map(|(_, i)| i.clone()).collect();
            let n = email::compose(&addr, &list, now, &self.policy);
            match self.notifier.notify_user(&n).await {
                Ok(()) => s.notices_sent += 1,
                Err(e) => {
                    s.notice_failures += 1;
                    tracing::warn!(workspaces = list.len(), "notice not sent");
                    for (i, item) in &items {
                        s.unnotified.push(item.workspace_id.clone());
                        if let Some(r) = rows.get_mut(*i).filter(|r| r.outcome == Outcome::AtRisk) {
                            r.error = format!("notice not sent: {e}");
                        }
                    }
                }
            }
        }
    }

    /// The dated CSV, `latest.csv` and the history snapshot.
    async fn write_report(
        &self,
        summary: &RunSummary,
        rows: &[Row],
        workspaces: Vec<SnapshotEntry>,
        cap_tripped: bool,
        now: DateTime<Utc>,
    ) -> Result<(), ReaperError> {
        let date = now.format("%Y-%m-%d").to_string();
        let csv = report::to_csv(rows)?;
        self.store.put(&summary.report_key, csv.clone(), "text/csv").await?;
        self.store.put(report::LATEST_KEY, csv, "text/csv").await?;
        let snap = Snapshot { run_at: now, dry_run: self.policy.dry_run, cap_tripped, workspaces };
        let json = serde_json::to_vec_pretty(&snap).map_err(|e| ReaperError::History(e.to_string()))?;
        self.store.put(&report::history_key(&date), json, "application/json").await?;
        Ok(())
    }

    /// The activity analytics over the whole history (this run included): the trend chart and
    /// the figures' CSV beside the report, and the newest chart.
    async fn write_activity(&self, date: &str) -> Result<Activity, ReaperError> {
        let activity = analytics::load(self.store.as_ref(), &self.policy.prices).await?;
        let svg = analytics::trend_svg(&activity).into_bytes();
        self.store.put(&report::activity_svg_key(date), svg.clone(), "image/svg+xml").await?;
        self.store.put(report::LATEST_ACTIVITY_SVG_KEY, svg, "image/svg+xml").await?;
        let csv = analytics::to_csv(&activity)?;
        self.store.put(&report::activity_csv_key(date), csv, "text/csv").await?;
        Ok(activity)
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

    async fn alerts(&self, s: &RunSummary, previous_key: Option<&str>) {
        let mut alerts = Vec::new();
        if let (true, Some(prev)) = (s.mode_changed, s.previous_mode) {
            let what = match s.mode {
                Mode::Enforce => {
                    "From this run on, WorkSpaces over the limit are terminated and their users emailed."
                }
                Mode::DryRun => "Nothing is terminated until the mode is set back to enforce.",
            };
            alerts.push(Alert {
                subject: format!("WorkSpaces reaper: mode changed from {prev} to {}", s.mode),
                body: format!(
                    "The run at {} ran in {} mode; the previous run ({}) ran in {prev} mode. {what} Report: {}",
                    s.run_at,
                    s.mode,
                    previous_key.unwrap_or("history"),
                    s.report_key
                ),
            });
        }
        if s.cap_tripped {
            let why = self.policy.cap.exceeded(s.planned_terminations, s.fleet).unwrap_or_default();
            alerts.push(Alert {
                subject: "WorkSpaces reaper: cap exceeded, nothing terminated".into(),
                body: format!(
                    "The run at {} planned {} terminations out of {} WorkSpaces, over the cap ({} or {:.0}% \
                     of the fleet). {why}. Nothing was terminated. Report: {}",
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
                    "The run at {}: {} terminations failed, {} notices failed{}. Report: {}",
                    s.run_at,
                    s.terminate_failed,
                    s.notice_failures,
                    if s.unnotified.is_empty() {
                        String::new()
                    } else {
                        format!(" (users not told about: {})", s.unnotified.join(", "))
                    },
                    s.report_key
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

/// True for one plausible address: `local@domain.tld`, no whitespace or control characters.
pub fn valid_address(e: &str) -> bool {
    let mut parts = e.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(l), Some(d), None)
        if !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
            && !e.contains(|c: char| c.is_whitespace() || c.is_control() || c == ','))
}

/// The address for a user's notices: the configured tag (`notify.email_tag_key`) if set, else
/// `{username}@domain` with the directory's domain from `notify.directory_domains`, else
/// `notify.email_domain`. `None` when that is no valid address.
pub fn email_for(ws: &Workspace, policy: &Policy) -> Option<String> {
    if let Some(e) = ws.tags.as_ref().and_then(|t| t.get(&policy.notify.email_tag_key)) {
        return valid_address(e).then(|| e.clone());
    }
    let domain = policy.notify.directory_domains.get(&ws.directory).unwrap_or(&policy.notify.email_domain);
    let e = format!("{}@{domain}", ws.user);
    valid_address(&e).then_some(e)
}

fn notice_item(o: &Observed, kind: NoticeKind) -> NoticeItem {
    NoticeItem {
        workspace_id: o.ws.id.clone(),
        directory: o.ws.directory.clone(),
        last_used: match &o.connection {
            Connection::Last(t) => t.format("%Y-%m-%d").to_string(),
            Connection::Never => "never".into(),
            Connection::Unknown(_) => "unknown".into(),
        },
        kind,
    }
}

/// Adds one WorkSpace's outcome to the summary's counts.
fn count(summary: &mut RunSummary, outcome: Outcome) {
    match outcome {
        Outcome::Terminated => summary.terminated += 1,
        Outcome::TerminateFailed => summary.terminate_failed += 1,
        Outcome::WouldTerminate => summary.would_terminate += 1,
        Outcome::HeldByCap => summary.held_by_cap += 1,
        Outcome::StateChanged => summary.state_changed += 1,
        Outcome::AtRisk => summary.at_risk += 1,
        Outcome::Keep => summary.kept += 1,
    }
}

fn snapshot_entry(o: &Observed, v: &Verdict, outcome: Outcome, now: DateTime<Utc>) -> SnapshotEntry {
    SnapshotEntry {
        id: o.ws.id.clone(),
        user: o.ws.user.clone(),
        directory: o.ws.directory.clone(),
        state: o.ws.state.as_str().to_string(),
        last_connection: match &o.connection {
            Connection::Last(t) => Some(*t),
            _ => None,
        },
        first_seen: o.first_seen.unwrap_or(now),
        decision: outcome,
        rule: v.rule.as_str().to_string(),
        bundle: o.ws.bundle.clone(),
        running_mode: o.ws.running_mode.clone(),
    }
}

/// Replaces the Confluence page (heading with the mode, activity, report table) and, once there
/// are two runs to draw, attaches the trend chart; the returned text says how it went.
async fn publish_page(wiki: &dyn Wiki, summary: &RunSummary, rows: &[Row], activity: &Activity) -> String {
    let title = format!(
        "WorkSpaces reaper run {}{}: {} terminated, {} at risk, {} kept. Mode: {}{}. Full report: {}",
        summary.run_at,
        if summary.dry_run { " (dry run)" } else { "" },
        summary.terminated,
        summary.at_risk,
        summary.kept,
        summary.mode,
        if summary.clock_skew > 0 {
            format!(
                "; {} WorkSpace(s) with a last connection after the run time (clock skew)",
                summary.clock_skew
            )
        } else {
            String::new()
        },
        summary.report_key
    );
    let chart = (activity.runs.len() >= 2).then_some(CHART_ATTACHMENT);
    let section = analytics::html_summary(activity, chart);
    let page = WikiPage { body: crate::wiki::storage_body_with(&title, &section, rows) };
    let published = match wiki.publish(&page).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "confluence page not updated");
            return format!("failed: {e}");
        }
    };
    let done = format!("updated page {} to version {}", published.page_id, published.version);
    if chart.is_none() {
        return done;
    }
    let file = Attachment {
        name: CHART_ATTACHMENT.into(),
        content_type: "image/svg+xml".into(),
        data: analytics::trend_svg(activity).into_bytes(),
    };
    match wiki.attach(&file).await {
        Ok(()) => format!("{done} with the activity chart"),
        Err(e) => {
            tracing::error!(error = %e, "confluence chart not attached");
            format!("failed: page updated to version {}, but {e}", published.version)
        }
    }
}
