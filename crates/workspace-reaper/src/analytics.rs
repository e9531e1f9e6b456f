//! Activity analytics from the run history (`history/<date>.json`): for each run, the fleet size,
//! WorkSpaces connected within 7 / 14 / 30 days, never connected, at risk, terminated in the run
//! and to date, and the estimated monthly cost avoided (the policy's price table), for the whole
//! fleet and per directory, running mode and bundle. Rendered as a CSV, an HTML table for the
//! Confluence page, a text table for `lake reaper report`, and a hand-written SVG trend chart.
//! Reads the store only; pure otherwise.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};

use crate::error::ReaperError;
use crate::policy::{Mode, Prices};
use crate::report::{self, ConnectionKind, Outcome, Snapshot, SnapshotEntry};
use crate::store::ObjectStore;
use crate::wiki::escape_html;

/// What a group of WorkSpaces is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    All,
    Directory,
    RunningMode,
    Bundle,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Directory => "directory",
            Self::RunningMode => "running-mode",
            Self::Bundle => "bundle",
        }
    }
}

/// The figures of one group in one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub fleet: usize,
    pub connected_7d: usize,
    pub connected_14d: usize,
    pub connected_30d: usize,
    pub never_connected: usize,
    pub at_risk: usize,
    pub terminated: usize,
    pub terminated_to_date: usize,
    /// Monthly price of the WorkSpaces terminated in this run (USD).
    pub cost_avoided_usd: f64,
    /// Monthly price of every WorkSpace terminated so far (USD a month, from the first run).
    pub cost_avoided_to_date_usd: f64,
}

impl Counts {
    fn add(&mut self, e: &SnapshotEntry, run_at: DateTime<Utc>, prices: &Prices) {
        self.fleet += 1;
        if let Some(t) = e.last_connection {
            let within = |d: i64| t >= run_at - Duration::days(d);
            self.connected_7d += usize::from(within(7));
            self.connected_14d += usize::from(within(14));
            self.connected_30d += usize::from(within(30));
        }
        self.never_connected += usize::from(e.connection_kind() == ConnectionKind::Never);
        self.at_risk += usize::from(e.decision == Outcome::AtRisk);
        if e.decision == Outcome::Terminated {
            self.terminated += 1;
            self.cost_avoided_usd += prices.monthly(&e.bundle, &e.running_mode);
        }
    }
}

/// One run's figures, per group; `(Scope::All, "")` is the whole fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct RunActivity {
    pub run_at: DateTime<Utc>,
    pub mode: Mode,
    pub groups: BTreeMap<(Scope, String), Counts>,
}

impl RunActivity {
    /// The whole fleet's figures.
    pub fn total(&self) -> Counts {
        self.groups.get(&(Scope::All, String::new())).cloned().unwrap_or_default()
    }
}

fn or_unknown(s: &str) -> String {
    if s.is_empty() {
        "unknown".into()
    } else {
        s.to_string()
    }
}

/// One run's figures from its snapshot (the to-date fields still count this run only).
pub fn run_activity(snap: &Snapshot, prices: &Prices) -> RunActivity {
    let mut groups: BTreeMap<(Scope, String), Counts> = BTreeMap::new();
    groups.insert((Scope::All, String::new()), Counts::default());
    for e in &snap.workspaces {
        for key in [
            (Scope::All, String::new()),
            (Scope::Directory, or_unknown(&e.directory)),
            (Scope::RunningMode, or_unknown(&e.running_mode)),
            (Scope::Bundle, or_unknown(&e.bundle)),
        ] {
            groups.entry(key).or_default().add(e, snap.run_at, prices);
        }
    }
    RunActivity { run_at: snap.run_at, mode: snap.mode(), groups }
}

/// Every run, oldest first, with the to-date figures summed over the runs before.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Activity {
    pub runs: Vec<RunActivity>,
}

impl Activity {
    /// Orders runs by time (a re-run of the same date replaced its snapshot) and sums the to-date
    /// figures per group.
    pub fn new(mut runs: Vec<RunActivity>) -> Self {
        runs.sort_by_key(|r| r.run_at);
        let mut so_far: BTreeMap<(Scope, String), (usize, f64)> = BTreeMap::new();
        for r in &mut runs {
            for (k, c) in &mut r.groups {
                let acc = so_far.entry(k.clone()).or_default();
                acc.0 += c.terminated;
                acc.1 += c.cost_avoided_usd;
                c.terminated_to_date = acc.0;
                c.cost_avoided_to_date_usd = acc.1;
            }
        }
        Self { runs }
    }

    pub fn latest(&self) -> Option<&RunActivity> {
        self.runs.last()
    }
}

/// Reads every snapshot under `history/` (one at a time) and computes the activity.
pub async fn load(store: &dyn ObjectStore, prices: &Prices) -> Result<Activity, ReaperError> {
    let keys = store.list(report::HISTORY_PREFIX).await?;
    let mut runs = Vec::new();
    for key in keys.iter().filter(|k| k.ends_with(".json")) {
        let Some(bytes) = store.get(key).await? else { continue };
        let snap: Snapshot = serde_json::from_slice(&bytes)
            .map_err(|e| ReaperError::History(format!("cannot read {key}: {e}")))?;
        runs.push(run_activity(&snap, prices));
    }
    Ok(Activity::new(runs))
}

/// Column names of the activity CSV.
pub const CSV_HEADER: [&str; 14] = [
    "run at",
    "mode",
    "scope",
    "group",
    "fleet",
    "connected within 7 days",
    "connected within 14 days",
    "connected within 30 days",
    "never connected",
    "at risk",
    "terminated this run",
    "terminated to date",
    "monthly cost avoided this run (USD)",
    "monthly cost avoided to date (USD)",
];

fn cells(c: &Counts) -> [String; 10] {
    [
        c.fleet.to_string(),
        c.connected_7d.to_string(),
        c.connected_14d.to_string(),
        c.connected_30d.to_string(),
        c.never_connected.to_string(),
        c.at_risk.to_string(),
        c.terminated.to_string(),
        c.terminated_to_date.to_string(),
        format!("{:.2}", c.cost_avoided_usd),
        format!("{:.2}", c.cost_avoided_to_date_usd),
    ]
}

/// Every run and group, oldest run first (cells neutralised against formula injection).
pub fn to_csv(a: &Activity) -> Result<Vec<u8>, ReaperError> {
    let e = |e: csv::Error| ReaperError::Report(e.to_string());
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_HEADER).map_err(e)?;
    for r in &a.runs {
        let run_at = r.run_at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        for ((scope, key), c) in &r.groups {
            let mut row = vec![run_at.clone(), r.mode.as_str().into(), scope.as_str().into(), key.clone()];
            row.extend(cells(c));
            w.write_record(row.iter().map(|c| report::neutralise(c))).map_err(e)?;
        }
    }
    w.into_inner().map_err(|e| ReaperError::Report(e.to_string()))
}

const TABLE_HEADER: [&str; 12] = [
    "scope",
    "group",
    "fleet",
    "7 d",
    "14 d",
    "30 d",
    "never",
    "at risk",
    "terminated",
    "to date",
    "avoided/mo",
    "avoided/mo to date",
];

fn table_rows(r: &RunActivity) -> Vec<[String; 12]> {
    r.groups
        .iter()
        .map(|((scope, key), c)| {
            let [f, c7, c14, c30, nv, ar, t, td, ca, cad] = cells(c);
            let key = if key.is_empty() { "fleet".to_string() } else { key.clone() };
            [
                scope.as_str().to_string(),
                key,
                f,
                c7,
                c14,
                c30,
                nv,
                ar,
                t,
                td,
                format!("${ca}"),
                format!("${cad}"),
            ]
        })
        .collect()
}

/// The latest run's figures as a plain-text table (for `lake reaper report`).
pub fn text_table(a: &Activity) -> String {
    let Some(r) = a.latest() else { return "no runs in the history\n".into() };
    let mut lines: Vec<[String; 12]> = vec![TABLE_HEADER.map(str::to_string)];
    lines.extend(table_rows(r));
    let mut widths = [0usize; 12];
    for l in &lines {
        for (w, c) in widths.iter_mut().zip(l) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = format!(
        "Activity at {} (mode: {}), {} run(s) in the history\n",
        r.run_at.format("%Y-%m-%d %H:%M UTC"),
        r.mode,
        a.runs.len()
    );
    for l in &lines {
        let line: Vec<String> = l
            .iter()
            .zip(widths)
            .map(|(c, w)| {
                let pad = w.saturating_sub(c.chars().count());
                let cell: String = c.chars().map(|ch| if ch.is_control() { '?' } else { ch }).collect();
                format!("{cell}{}", " ".repeat(pad))
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// One group's figures in a sentence.
fn describe(scope: Scope, key: &str, c: &Counts) -> String {
    let name =
        if scope == Scope::All { "whole fleet".to_string() } else { format!("{} {key}", scope.as_str()) };
    format!(
        "{name}: {} WorkSpaces; connected within 7 / 14 / 30 days: {} / {} / {}; never connected: {}; \
         at risk: {}; terminated: {} (to date {}); monthly cost avoided: ${:.2} (to date ${:.2})",
        c.fleet,
        c.connected_7d,
        c.connected_14d,
        c.connected_30d,
        c.never_connected,
        c.at_risk,
        c.terminated,
        c.terminated_to_date,
        c.cost_avoided_usd,
        c.cost_avoided_to_date_usd
    )
}

/// The latest run's figures for the Confluence page (storage-format XHTML, text escaped): a
/// heading, one list item per group, and the chart when `chart` names an attachment.
pub fn html_summary(a: &Activity, chart: Option<&str>) -> String {
    let Some(r) = a.latest() else { return String::new() };
    let mut s = format!(
        "<h2>Activity</h2><p>{}</p><ul>",
        escape_html(&format!("Mode: {}. {} run(s) in the history.", r.mode, a.runs.len()))
    );
    for ((scope, key), c) in &r.groups {
        let _ = write!(s, "<li>{}</li>", escape_html(&describe(*scope, key, c)));
    }
    s.push_str("</ul>");
    if let Some(file) = chart {
        let _ = write!(
            s,
            r#"<p><ac:image ac:alt="WorkSpaces activity trend"><ri:attachment ri:filename="{}"/></ac:image></p>"#,
            escape_html(file)
        );
    }
    s
}

/// Runs shown in the trend chart.
pub const CHART_RUNS: usize = 12;

/// A round axis maximum at or above `v` (1, 2 or 5 times a power of ten).
fn nice_max(v: usize) -> usize {
    let mut step = 1usize;
    loop {
        for m in [1, 2, 5] {
            if m * step >= v.max(1) {
                return m * step;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// Horizontal grid lines with their values, at quarters of `ymax`.
fn grid(ymax: usize, left: f64, pw: f64, y: &dyn Fn(usize) -> f64) -> String {
    let mut s = String::new();
    for k in 0..=4 {
        let v = ymax * k / 4;
        let yy = y(v);
        let _ = write!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#cccccc"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v}</text>"##,
            left + pw,
            left - 6.0,
            yy + 4.0
        );
    }
    s
}

/// The trend over the last [`CHART_RUNS`] runs as a standalone SVG: fleet size, connected within
/// 30 days, at risk and terminated to date; dry-run runs on a grey band.
pub fn trend_svg(a: &Activity) -> String {
    let runs: Vec<&RunActivity> = a.runs.iter().rev().take(CHART_RUNS).rev().collect();
    let (w, h, left, right, top, bottom) = (840.0_f64, 360.0_f64, 56.0, 250.0, 40.0, 56.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let totals: Vec<Counts> = runs.iter().map(|r| r.total()).collect();
    let series: [(&str, &str, Vec<usize>); 4] = [
        ("fleet", "#1f77b4", totals.iter().map(|c| c.fleet).collect()),
        ("connected within 30 days", "#2ca02c", totals.iter().map(|c| c.connected_30d).collect()),
        ("at risk", "#ff7f0e", totals.iter().map(|c| c.at_risk).collect()),
        ("terminated to date", "#d62728", totals.iter().map(|c| c.terminated_to_date).collect()),
    ];
    let ymax = nice_max(series.iter().flat_map(|s| s.2.iter().copied()).max().unwrap_or(0));
    let n = runs.len();
    let x = |i: usize| if n <= 1 { left + pw / 2.0 } else { left + pw * i as f64 / (n - 1) as f64 };
    let y = |v: usize| top + ph - ph * v as f64 / ymax as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    s.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
    let title = match (runs.first(), runs.last()) {
        (Some(f), Some(l)) => format!(
            "WorkSpaces activity, {} to {} ({n} runs)",
            f.run_at.format("%Y-%m-%d"),
            l.run_at.format("%Y-%m-%d")
        ),
        _ => "WorkSpaces activity: no runs yet".into(),
    };
    let _ = write!(
        s,
        r#"<text x="{left}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape_html(&title)
    );
    let band = if n <= 1 { pw } else { pw / (n - 1) as f64 };
    for (i, r) in runs.iter().enumerate() {
        if r.mode == Mode::DryRun {
            let bx = (x(i) - band / 2.0).max(left);
            let bw = (x(i) + band / 2.0).min(left + pw) - bx;
            let _ =
                write!(s, r##"<rect x="{bx:.1}" y="{top}" width="{bw:.1}" height="{ph}" fill="#eeeeee"/>"##);
        }
    }
    s.push_str(&grid(ymax, left, pw, &y));
    for (i, r) in runs.iter().enumerate() {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x(i),
            top + ph + 18.0,
            r.run_at.format("%m-%d")
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">run date (grey: dry run)</text>"#,
        left + pw / 2.0,
        h - 12.0
    );
    for (li, (name, color, vals)) in series.iter().enumerate() {
        let pts: Vec<String> =
            vals.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v))).collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        for (i, v) in vals.iter().enumerate() {
            let _ = write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#, x(i), y(*v));
        }
        let ly = top + 10.0 + 20.0 * li as f64;
        let lx = left + pw + 14.0;
        let last = vals.last().copied().unwrap_or(0);
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="{:.1}" width="12" height="12" fill="{color}"/><text x="{:.1}" y="{:.1}">{} ({last})</text>"#,
            ly - 10.0,
            lx + 18.0,
            ly,
            escape_html(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, dir: &str, last: Option<i64>, decision: Outcome, rule: &str) -> SnapshotEntry {
        let run: DateTime<Utc> = "2025-03-10T06:00:00Z".parse().unwrap_or_default();
        SnapshotEntry {
            id: id.into(),
            user: "u".into(),
            directory: dir.into(),
            state: "AVAILABLE".into(),
            last_connection: last.map(|d| run - Duration::days(d)),
            first_seen: run,
            decision,
            rule: rule.into(),
            bundle: "wsb-a".into(),
            running_mode: if id.ends_with('1') { "ALWAYS_ON".into() } else { "AUTO_STOP".into() },
            connection: None,
            warning: None,
        }
    }

    fn snap(at: &str, dry_run: bool, ws: Vec<SnapshotEntry>) -> Snapshot {
        Snapshot { run_at: at.parse().unwrap_or_default(), dry_run, cap_tripped: false, workspaces: ws }
    }

    #[test]
    fn counts_per_group_and_to_date() {
        let prices = Prices {
            default_monthly_usd: 10.0,
            by_running_mode: BTreeMap::from([("ALWAYS_ON".into(), 40.0)]),
            by_bundle: BTreeMap::new(),
        };
        let d1 = "d-0123456789";
        let d2 = "d-abcdefabcd";
        let first = snap(
            "2025-03-03T06:00:00Z",
            true,
            vec![entry("ws-1", d1, Some(20), Outcome::WouldTerminate, "inactive-over-limit")],
        );
        let second = snap(
            "2025-03-10T06:00:00Z",
            false,
            vec![
                entry("ws-1", d1, Some(27), Outcome::Terminated, "inactive-over-limit"),
                entry("ws-2", d1, Some(3), Outcome::Keep, "used-within-limit"),
                entry("ws-3", d2, Some(10), Outcome::AtRisk, "passes-limit-before-next-run"),
                entry("ws-4", d2, None, Outcome::Terminated, "never-connected-over-limit"),
            ],
        );
        // Given newest first: the order of the history listing does not matter.
        let a = Activity::new(vec![run_activity(&second, &prices), run_activity(&first, &prices)]);
        assert_eq!(a.runs[0].mode, Mode::DryRun);
        let t = a.latest().map(RunActivity::total).unwrap_or_default();
        assert_eq!(
            (t.fleet, t.connected_7d, t.connected_14d, t.connected_30d, t.never_connected, t.at_risk),
            (4, 1, 2, 3, 1, 1)
        );
        assert_eq!((t.terminated, t.terminated_to_date), (2, 2));
        assert!((t.cost_avoided_usd - 50.0).abs() < 1e-9, "40 always-on + 10 default");
        let g = |s: Scope, k: &str| a.runs[1].groups[&(s, k.to_string())].clone();
        assert_eq!((g(Scope::Directory, d1).fleet, g(Scope::Directory, d2).terminated), (2, 1));
        assert_eq!(g(Scope::RunningMode, "ALWAYS_ON").terminated, 1);
        assert_eq!(g(Scope::Bundle, "wsb-a").fleet, 4);
        let csv = String::from_utf8(to_csv(&a).unwrap_or_default()).unwrap_or_default();
        assert!(csv.contains("2025-03-10T06:00:00Z,enforce,all,,4,1,2,3,1,1,2,2,50.00,50.00"), "{csv}");
        assert!(csv.contains("2025-03-03T06:00:00Z,dry-run,all,,1,0,1,1,0,0,0,0,0.00,0.00"), "{csv}");
        let html = html_summary(&a, Some("reaper-activity.svg"));
        assert!(
            html.contains("<li>whole fleet: 4 WorkSpaces; connected within 7 / 14 / 30 days: 1 / 2 / 3;"),
            "{html}"
        );
        assert!(html.contains(r#"<ri:attachment ri:filename="reaper-activity.svg"/>"#), "{html}");
        assert!(!html.contains("<tr>"), "a list, not a table: the report table stays the page's only table");
        let text = text_table(&a);
        assert!(text.contains("mode: enforce"), "{text}");
        assert!(text.lines().any(|l| l.starts_with("directory") && l.contains("d-abcdefabcd")), "{text}");
    }

    #[test]
    fn the_chart_is_well_formed_svg_with_one_point_per_run() {
        let runs: Vec<RunActivity> = (0..15)
            .map(|i| {
                let at = format!("2025-{:02}-{:02}T06:00:00Z", 1 + i / 4, 1 + (i % 4) * 7);
                let ws = (0..(20 - i))
                    .map(|k| {
                        entry(
                            &format!("ws-{k}"),
                            "d-0123456789",
                            Some(k as i64),
                            Outcome::Keep,
                            "used-within-limit",
                        )
                    })
                    .collect();
                run_activity(&snap(&at, i < 3, ws), &Prices::default())
            })
            .collect();
        let svg = trend_svg(&Activity::new(runs));
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert_eq!(svg.matches("<circle").count(), 4 * CHART_RUNS, "the last 12 runs only");
        assert!(svg.contains("fleet (6)"), "legend shows the latest value");
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(17), 20);
        assert_eq!(nice_max(230), 500);
    }

    #[test]
    fn never_connected_counts_every_rule_and_reads_old_snapshots() {
        let mut exempt = entry("ws-1", "d-0123456789", None, Outcome::Keep, "exempt-tag");
        exempt.connection = Some(ConnectionKind::Never);
        let mut failed = entry("ws-2", "d-0123456789", None, Outcome::Keep, "tags-unavailable");
        failed.connection = Some(ConnectionKind::Unknown);
        let mut protected = entry("ws-3", "d-0123456789", None, Outcome::Keep, "protected-state");
        protected.connection = Some(ConnectionKind::Never);
        // Written before the connection was recorded: inferred from the rule.
        let old_first = entry("ws-4", "d-0123456789", None, Outcome::Keep, "never-connected-first-sighting");
        let old_exempt = entry("ws-5", "d-0123456789", None, Outcome::Keep, "exempt-tag");
        let old_used = entry("ws-6", "d-0123456789", Some(3), Outcome::Keep, "used-within-limit");
        let s = snap(
            "2025-03-10T06:00:00Z",
            false,
            vec![exempt, failed, protected, old_first, old_exempt, old_used],
        );
        let t = run_activity(&s, &Prices::default()).total();
        assert_eq!(t.never_connected, 3, "exempt, protected and first sighting; not the unknowns");
        let json = serde_json::to_string(&s).unwrap_or_default();
        let back: Snapshot = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, s, "the connection kind survives a round trip");
        assert!(json.contains(r#""connection":"never""#), "{json}");
    }
}
