//! The manager's report (CSV, formula-injection safe) and the per-run history snapshot that keeps
//! first-seen dates across runs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ReaperError;
use crate::fleet::Warning;
use crate::policy::Mode;

/// What finally happened to a WorkSpace in this run (the report's `decision` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Terminated,
    TerminateFailed,
    WouldTerminate,
    HeldByCap,
    StateChanged,
    AtRisk,
    Keep,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Terminated => "terminated",
            Self::TerminateFailed => "terminate-failed",
            Self::WouldTerminate => "would-terminate (dry run)",
            Self::HeldByCap => "held: cap exceeded",
            Self::StateChanged => "kept: state changed before terminate",
            Self::AtRisk => "at-risk next run",
            Self::Keep => "keep",
        }
    }
}

/// One report row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub workspace_id: String,
    pub user: String,
    pub directory: String,
    pub state: String,
    /// ISO-8601, `never` or `unknown`.
    pub last_connection: String,
    pub days_inactive: Option<i64>,
    pub outcome: Outcome,
    pub rule: String,
    pub error: String,
    /// Seconds since the last connection (or first sighting); not a report column.
    pub idle_seconds: Option<i64>,
    /// The run's mode, repeated on every row so a filtered sheet still shows it.
    pub mode: Mode,
}

impl Row {
    /// The row's cells, in `HEADER` order, as text (not yet neutralised or escaped).
    pub fn cells(&self) -> [String; 10] {
        [
            self.workspace_id.clone(),
            self.user.clone(),
            self.directory.clone(),
            self.state.clone(),
            self.last_connection.clone(),
            self.days_inactive.map(|d| d.to_string()).unwrap_or_default(),
            self.outcome.as_str().to_string(),
            self.rule.clone(),
            self.error.clone(),
            self.mode.as_str().to_string(),
        ]
    }
}

/// Rows in report order: by outcome, then workspace id. The CSV and the Confluence page agree.
pub fn in_report_order(rows: &[Row]) -> Vec<&Row> {
    let mut sorted: Vec<&Row> = rows.iter().collect();
    sorted.sort_by(|a, b| (a.outcome, &a.workspace_id).cmp(&(b.outcome, &b.workspace_id)));
    sorted
}

/// The report's header, in column order.
pub const HEADER: [&str; 10] = [
    "workspace id",
    "user",
    "directory",
    "state",
    "last connection",
    "days inactive",
    "decision",
    "rule",
    "error",
    "mode",
];

/// Spreadsheet formula injection: a cell starting with `= + - @`, tab or CR gets a leading `'`.
pub fn neutralise(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

/// Renders rows as CSV (RFC 4180 quoting, every cell neutralised), sorted by outcome then id.
pub fn to_csv(rows: &[Row]) -> Result<Vec<u8>, ReaperError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let e = |e: csv::Error| ReaperError::Report(e.to_string());
    w.write_record(HEADER).map_err(e)?;
    for r in in_report_order(rows) {
        w.write_record(r.cells().iter().map(|c| neutralise(c))).map_err(e)?;
    }
    w.into_inner().map_err(|e| ReaperError::Report(e.to_string()))
}

/// Columns of the machine-readable plan (`lake reaper plan --csv`).
pub const PLAN_HEADER: [&str; 10] = [
    "workspace_id",
    "user",
    "directory",
    "state",
    "last_connection",
    "idle_seconds",
    "days_inactive",
    "decision",
    "rule",
    "note",
];

fn outcome_key(o: Outcome) -> String {
    serde_json::to_value(o).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// The plan as CSV, one row per WorkSpace in report order; `decision` is the stable kebab-case
/// key (`would-terminate`, `held-by-cap`, `at-risk`, `keep`, ...). Cells neutralised.
pub fn plan_csv(rows: &[Row]) -> Result<Vec<u8>, ReaperError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let e = |e: csv::Error| ReaperError::Report(e.to_string());
    w.write_record(PLAN_HEADER).map_err(e)?;
    for r in in_report_order(rows) {
        let cells = [
            r.workspace_id.clone(),
            r.user.clone(),
            r.directory.clone(),
            r.state.clone(),
            r.last_connection.clone(),
            r.idle_seconds.map(|d| d.to_string()).unwrap_or_default(),
            r.days_inactive.map(|d| d.to_string()).unwrap_or_default(),
            outcome_key(r.outcome),
            r.rule.clone(),
            r.error.clone(),
        ];
        w.write_record(cells.iter().map(|c| neutralise(c))).map_err(e)?;
    }
    w.into_inner().map_err(|e| ReaperError::Report(e.to_string()))
}

/// The plan as JSON objects, one per WorkSpace in report order (same fields as [`plan_csv`];
/// numbers as numbers, absent values as `null`).
pub fn plan_json(rows: &[Row]) -> Vec<serde_json::Value> {
    in_report_order(rows)
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "workspace_id": r.workspace_id,
                "user": r.user,
                "directory": r.directory,
                "state": r.state,
                "last_connection": r.last_connection,
                "idle_seconds": r.idle_seconds,
                "days_inactive": r.days_inactive,
                "decision": outcome_key(r.outcome),
                "rule": r.rule,
                "note": r.error,
            })
        })
        .collect()
}

/// One WorkSpace in a run's history snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    pub id: String,
    pub user: String,
    pub directory: String,
    pub state: String,
    pub last_connection: Option<DateTime<Utc>>,
    pub first_seen: DateTime<Utc>,
    pub decision: Outcome,
    pub rule: String,
    #[serde(default)]
    pub bundle: String,
    #[serde(default)]
    pub running_mode: String,
    /// What the status lookup said; absent in snapshots written before it was recorded (then
    /// inferred, see [`SnapshotEntry::connection_kind`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionKind>,
    /// The last notice that named a removal date, while it concerns the current idle spell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<Warning>,
}

/// The kind of answer the connection-status lookup gave for a WorkSpace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionKind {
    /// A last user connection (in `last_connection`).
    Connected,
    /// The user never connected.
    Never,
    /// The lookup failed or left the WorkSpace out.
    Unknown,
}

impl SnapshotEntry {
    /// What the status lookup said. Snapshots written before this was recorded are read
    /// backward-compatibly: a last connection means connected; no last connection is unknown
    /// when the rule could hide a failed lookup (`status-unavailable`, or `exempt-tag` and
    /// `tags-unavailable`, which are decided before status), never connected otherwise.
    pub fn connection_kind(&self) -> ConnectionKind {
        if let Some(k) = self.connection {
            return k;
        }
        match (self.last_connection, self.rule.as_str()) {
            (Some(_), _) => ConnectionKind::Connected,
            (None, "status-unavailable" | "exempt-tag" | "tags-unavailable") => ConnectionKind::Unknown,
            (None, _) => ConnectionKind::Never,
        }
    }
}

/// `history/<date>.json`: the whole fleet as this run saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub run_at: DateTime<Utc>,
    pub dry_run: bool,
    pub cap_tripped: bool,
    pub workspaces: Vec<SnapshotEntry>,
}

impl Snapshot {
    /// The mode the run had.
    pub fn mode(&self) -> Mode {
        Mode::from_dry_run(self.dry_run)
    }

    /// First-seen date per WorkSpace id.
    pub fn first_seen(&self) -> BTreeMap<String, DateTime<Utc>> {
        self.workspaces.iter().map(|e| (e.id.clone(), e.first_seen)).collect()
    }

    /// The recorded warning per WorkSpace id.
    pub fn warnings(&self) -> BTreeMap<String, Warning> {
        self.workspaces.iter().filter_map(|e| Some((e.id.clone(), e.warning?))).collect()
    }
}

/// Object keys for one run date.
pub fn report_key(date: &str) -> String {
    format!("reports/{date}/workspaces.csv")
}
pub const LATEST_KEY: &str = "reports/latest.csv";
pub const HISTORY_PREFIX: &str = "history/";
/// The activity chart and table beside the dated CSV, and the newest copies.
pub fn activity_svg_key(date: &str) -> String {
    format!("reports/{date}/activity.svg")
}
pub fn activity_csv_key(date: &str) -> String {
    format!("reports/{date}/activity.csv")
}
pub const LATEST_ACTIVITY_SVG_KEY: &str = "reports/latest-activity.svg";
/// Where a run date's record of sent notices lies (see `sent.rs`).
pub const NOTICES_PREFIX: &str = "notices/";
pub fn history_key(date: &str) -> String {
    format!("{HISTORY_PREFIX}{date}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutralises_formula_starts_only() {
        assert_eq!(neutralise("=1+1"), "'=1+1");
        assert_eq!(neutralise("+1"), "'+1");
        assert_eq!(neutralise("-1"), "'-1");
        assert_eq!(neutralise("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise("\tx"), "'\tx");
        assert_eq!(neutralise("\rx"), "'\rx");
        assert_eq!(neutralise("jdoe"), "jdoe");
        assert_eq!(neutralise("a=b"), "a=b");
        assert_eq!(neutralise(""), "");
    }
}
