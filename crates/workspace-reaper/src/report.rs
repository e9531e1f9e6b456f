//! The manager's report (CSV, formula-injection safe) and the per-run history snapshot that keeps
//! first-seen dates across runs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ReaperError;

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
}

impl Row {
    /// The row's cells, in `HEADER` order, as text (not yet neutralised or escaped).
    pub fn cells(&self) -> [String; 9] {
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
pub const HEADER: [&str; 9] = [
    "workspace id",
    "user",
    "directory",
    "state",
    "last connection",
    "days inactive",
    "decision",
    "rule",
    "error",
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
    /// First-seen date per WorkSpace id.
    pub fn first_seen(&self) -> BTreeMap<String, DateTime<Utc>> {
        self.workspaces.iter().map(|e| (e.id.clone(), e.first_seen)).collect()
    }
}

/// Object keys for one run date.
pub fn report_key(date: &str) -> String {
    format!("reports/{date}/workspaces.csv")
}
pub const LATEST_KEY: &str = "reports/latest.csv";
pub const HISTORY_PREFIX: &str = "history/";
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
