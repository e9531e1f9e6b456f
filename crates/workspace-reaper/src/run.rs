//! One reaper run: read history, describe the fleet, decide, act (or not), tell people (one
//! notice per user, alerts to on-call), and write the report, history, activity analytics and the
//! Confluence page.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::analytics::{self, Activity};
use crate::decide::{Decision, Plan, Verdict};
use crate::email;
use crate::error::ReaperError;
use crate::fleet::{Connection, Observed, Warning, Workspace, WsState};
use crate::notice::{NoticeItem, NoticeKind};
use crate::notify::{Alert, Notifier};
use crate::policy::{Mode, Policy};
use crate::port::{ApiError, Backoff, TerminateFailure, WorkspacesApi, BATCH};
use crate::report::{self, ConnectionKind, Outcome, Row, Snapshot, SnapshotEntry};
use crate::sent::{self, SentItem, SentNotices};
use crate::store::ObjectStore;
use crate::wiki::{Attachment, Wiki, WikiPage};

pub use crate::observe::{load_history, load_known, observe_and_plan, preview, History, Preview};
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
    /// Users not emailed again because an earlier attempt of this run date already did.
    pub notices_already_sent: usize,
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
        // Read before acting: a store that cannot say what was sent fails the run, not the users.
        let already_sent = sent::load(self.store.as_ref(), &date).await?;
        let plan = observe_and_plan(self.api.as_ref(), &self.policy, &self.backoff, &history, now).await?;
        tracing::info!(
            fleet = plan.items.len(),
            planned = plan.planned_terminations,
            cap_tripped = plan.cap_tripped,
            mode = self.policy.mode().as_str(),
            "reaper plan"
        );
        let previous = history.previous.as_ref();
        let mut summary = self.start_summary(&plan, previous.map(|(_, m)| *m), &date, now);
        // On-call hears of a mode switch before anything is terminated.
        if summary.mode_changed {
            self.send_alerts(vec![mode_alert(&summary, previous.map(|(k, _)| k.as_str()))]).await;
        }
        let acted = self.act(&plan).await;
        let (mut rows, mut snapshot, notices) = self.tally(&plan, acted, now, &mut summary);
        let warned = self.send_notices(notices, already_sent, &mut rows, &date, now, &mut summary).await;
        for e in &mut snapshot {
            if let Some(w) = warned.get(&e.id) {
                e.warning = Some(*w);
            }
        }
        self.write_report(&mut summary, &mut rows, snapshot, plan.cap_tripped, now).await?;
        let activity = self.write_activity(&date).await?;
        // After the CSV and history are safe: a wiki failure is reported and alerted, not fatal.
        if let Some(wiki) = &self.wiki {
            summary.confluence = publish_page(wiki.as_ref(), &summary, &rows, &activity).await;
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
            clock_skew = summary.clock_skew,
            notices_sent = summary.notices_sent,
            notices_already_sent = summary.notices_already_sent,
            notice_failures = summary.notice_failures,
            mode_changed = summary.mode_changed,
            confluence = %summary.confluence,
            "reaper run done"
        );
        Ok(summary)
    }

    /// The summary before anything is done: the run, its mode against the previous run's, the plan.
    fn start_summary(
        &self,
        plan: &Plan,
        previous_mode: Option<Mode>,
        date: &str,
        now: DateTime<Utc>,
    ) -> RunSummary {
        let mode = self.policy.mode();
        RunSummary {
            run_at: now.to_rfc3339_opts(SecondsFormat::Secs, true),
            mode,
            dry_run: self.policy.dry_run,
            previous_mode,
            mode_changed: previous_mode.is_some_and(|p| p != mode),
            fleet: plan.items.len(),
            planned_terminations: plan.planned_terminations,
            cap_tripped: plan.cap_tripped,
            report_key: report::report_key(date),
            activity_key: report::activity_svg_key(date),
            confluence: "not configured".into(),
            ..RunSummary::default()
        }
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
    /// and who is to be told, grouped by (normalised) address: at-risk users, and in dry run with
    /// `notify_in_dry_run` also would-terminate users (warned of the next run's date; in dry run
    /// without it nobody), and users whose WorkSpace was terminated.
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
                Outcome::AtRisk | Outcome::WouldTerminate if warn => {
                    Some(NoticeKind::AtRisk { removal_run: next_run })
                }
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
                        if warns(outcome) {
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

    /// One notice per address, leaving out what an earlier attempt of this run date already sent
    /// (`sent.rs`; each send is recorded there at once); a failure is noted on each of that
    /// user's rows. Returns the warnings given, now or by that earlier attempt, per WorkSpace id.
    async fn send_notices(
        &self,
        notices: Notices,
        mut already: BTreeMap<String, SentNotices>,
        rows: &mut [Row],
        date: &str,
        now: DateTime<Utc>,
        s: &mut RunSummary,
    ) -> BTreeMap<String, Warning> {
        let mut warned = BTreeMap::new();
        for (addr, items) in notices {
            let mut record =
                already.remove(&addr).unwrap_or_else(|| SentNotices { email: addr.clone(), items: vec![] });
            warned.extend(record.items.iter().filter_map(|i| Some((i.workspace_id.clone(), i.warning()?))));
            let fresh: Vec<&(usize, NoticeItem)> = items
                .iter()
                .filter(|(_, i)| !record.items.iter().any(|r| r.covers(&i.workspace_id, i.kind)))
                .collect();
            if fresh.is_empty() {
                s.notices_already_sent += 1;
                continue;
            }
            let list: Vec<NoticeItem> = fresh.iter().map(|(_, i)| i.clone()).collect();
            let n = email::compose(&addr, &list, now, &self.policy);
            if let Err(e) = self.notifier.notify_user(&n).await {
                s.notice_failures += 1;
                tracing::warn!(workspaces = list.len(), "notice not sent");
                for (i, item) in fresh {
                    s.unnotified.push(item.workspace_id.clone());
                    if let Some(r) = rows.get_mut(*i).filter(|r| warns(r.outcome)) {
                        r.error = format!("notice not sent: {e}");
                    }
                }
                continue;
            }
            s.notices_sent += 1;
            for i in &list {
                let item = SentItem::new(&i.workspace_id, i.kind, now);
                if let Some(w) = item.warning() {
                    warned.insert(i.workspace_id.clone(), w);
                }
                record.items.push(item);
            }
            if let Err(e) = sent::record(self.store.as_ref(), date, &record).await {
                tracing::warn!(error = %e, "record of a sent notice not written: a retry may send it again");
            }
        }
        warned
    }

    /// The history snapshot, then the dated CSV and `latest.csv`. A same-day retry merges: what an
    /// earlier attempt of this date terminated (gone from the fleet now) stays in the history and
    /// the report. History first, so a failed CSV write still leaves that record for the retry.
    async fn write_report(
        &self,
        summary: &mut RunSummary,
        rows: &mut Vec<Row>,
        mut workspaces: Vec<SnapshotEntry>,
        cap_tripped: bool,
        now: DateTime<Utc>,
    ) -> Result<(), ReaperError> {
        let key = report::history_key(&now.format("%Y-%m-%d").to_string());
        if let Some(bytes) = self.store.get(&key).await? {
            let earlier: Snapshot = serde_json::from_slice(&bytes)
                .map_err(|e| ReaperError::History(format!("cannot read {key}: {e}")))?;
            let seen: BTreeSet<String> = workspaces.iter().map(|e| e.id.clone()).collect();
            for e in earlier.workspaces {
                if e.decision == Outcome::Terminated && !seen.contains(&e.id) {
                    rows.push(earlier_row(&e, now, self.policy.mode()));
                    summary.terminated += 1;
                    workspaces.push(e);
                }
            }
        }
        let snap = Snapshot { run_at: now, dry_run: self.policy.dry_run, cap_tripped, workspaces };
        let json = serde_json::to_vec_pretty(&snap).map_err(|e| ReaperError::History(e.to_string()))?;
        self.store.put(&key, json, "application/json").await?;
        let csv = report::to_csv(rows)?;
        self.store.put(&summary.report_key, csv.clone(), "text/csv").await?;
        self.store.put(report::LATEST_KEY, csv, "text/csv").await?;
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
        let known = load_known(self.store.as_ref()).await?;
        preview(self.api.as_ref(), &self.policy, &self.backoff, &known, now).await
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
            // IAM refuses the whole call when it refuses one WorkSpace named in it (the exempt-tag
            // guard): one at a time, the others still go and the refusal is reported per WorkSpace.
            Err(ApiError::Denied(_)) if go.len() > 1 => {
                for id in &go {
                    let one = std::slice::from_ref(id);
                    let r = self.backoff.run("TerminateWorkspaces", || self.api.terminate(one)).await;
                    record_terminations(one, r, acted);
                }
            }
            r => record_terminations(&go, r, acted),
        }
    }

    /// After the run: cap exceeded, failures, Confluence not updated (the mode change went first).
    async fn alerts(&self, s: &RunSummary) {
        let mut alerts = Vec::new();
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
        self.send_alerts(alerts).await;
    }

    async fn send_alerts(&self, alerts: Vec<Alert>) {
        for a in alerts {
            if let Err(e) = self.notifier.alert(&a).await {
                tracing::error!(error = %e, "alert not sent");
            }
        }
    }
}

/// On-call's alert that the mode differs from the previous run's (sent before acting).
fn mode_alert(s: &RunSummary, previous_key: Option<&str>) -> Alert {
    let prev = s.previous_mode.unwrap_or(s.mode);
    let what = match s.mode {
        Mode::Enforce => {
            "From this run on, WorkSpaces over the limit are terminated and their users emailed."
        }
        Mode::DryRun => "Nothing is terminated until the mode is set back to enforce.",
    };
    Alert {
        subject: format!("WorkSpaces reaper: mode changed from {prev} to {}", s.mode),
        body: format!(
            "The run at {} runs in {} mode; the previous run ({}) ran in {prev} mode. {what} Report: {}",
            s.run_at,
            s.mode,
            previous_key.unwrap_or("history"),
            s.report_key
        ),
    }
}

/// True for the outcomes whose user is warned of a removal date (a failed notice shows on the row).
fn warns(outcome: Outcome) -> bool {
    matches!(outcome, Outcome::AtRisk | Outcome::WouldTerminate)
}

/// Records the answer of one TerminateWorkspaces call for `ids`: per-item failures, or the
/// call's own failure for every id in it.
fn record_terminations(
    ids: &[String],
    result: Result<Vec<TerminateFailure>, ApiError>,
    acted: &mut BTreeMap<String, Acted>,
) {
    match result {
        Ok(failures) => {
            let failed: BTreeMap<&str, _> = failures.iter().map(|f| (f.id.as_str(), f)).collect();
            for id in ids {
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
            for id in ids {
                let error = format!("terminate call failed: {e}");
                acted.insert(id.clone(), Acted { outcome: Outcome::TerminateFailed, error });
            }
        }
    }
}

/// The report row of a WorkSpace an earlier attempt of this run date terminated.
fn earlier_row(e: &SnapshotEntry, now: DateTime<Utc>, mode: Mode) -> Row {
    let kind = e.connection_kind();
    let since = e.last_connection.or((kind == ConnectionKind::Never).then_some(e.first_seen));
    let idle = since.map(|t| (now - t).num_seconds().max(0));
    Row {
        workspace_id: e.id.clone(),
        user: e.user.clone(),
        directory: e.directory.clone(),
        state: e.state.clone(),
        last_connection: match (kind, e.last_connection) {
            (ConnectionKind::Connected, Some(t)) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
            (ConnectionKind::Never, _) => "never".into(),
            _ => "unknown".into(),
        },
        days_inactive: idle.map(|s| s / 86_400),
        outcome: Outcome::Terminated,
        rule: e.rule.clone(),
        error: "terminated by an earlier attempt of this run".into(),
        idle_seconds: idle,
        mode,
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
/// `notify.email_domain`; trimmed and lowercased, so `Ann@County.gov` and `ann@county.gov` get
/// one notice. `None` when that is no valid address.
pub fn email_for(ws: &Workspace, policy: &Policy) -> Option<String> {
    let e = match ws.tags.as_ref().and_then(|t| t.get(&policy.notify.email_tag_key)) {
        Some(tagged) => tagged.clone(),
        None => {
            let domain =
                policy.notify.directory_domains.get(&ws.directory).unwrap_or(&policy.notify.email_domain);
            format!("{}@{domain}", ws.user)
        }
    };
    let e = e.trim().to_lowercase();
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

/// The history entry of one WorkSpace; its earlier warning is carried while a sign-in has not
/// voided it (a warning sent in this run replaces it later).
fn snapshot_entry(o: &Observed, v: &Verdict, outcome: Outcome, now: DateTime<Utc>) -> SnapshotEntry {
    let (connection, since) = match &o.connection {
        Connection::Last(t) => (ConnectionKind::Connected, Some(*t)),
        Connection::Never => (ConnectionKind::Never, Some(o.first_seen.unwrap_or(now))),
        Connection::Unknown(_) => (ConnectionKind::Unknown, None),
    };
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
        connection: Some(connection),
        warning: o.warning.filter(|w| w.still_relevant(since)),
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
