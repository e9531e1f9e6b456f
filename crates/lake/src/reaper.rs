//! `lake reaper plan`: the WorkSpaces reaper's decision code run in dry-run, printed as the table
//! a manager would see (or `--json` / `--csv` for scripts). Against the account (the SDK adapter,
//! honouring `AWS_ENDPOINT_URL`), or, with `--fleet FILE`, against a JSON fleet through the
//! in-memory fake for what-if checks. Nothing is ever terminated and nobody is notified: the plan
//! calls only describe operations. `lake reaper report --history DIR` computes the activity
//! analytics and the trend chart from run snapshots on disk, as the Lambda does from S3.
//! Output to a closed pipe (`| head -1`) ends quietly.
//!
//! The fleet file is a JSON array of WorkSpaces:
//! ```json
//! [{"id": "ws-0123abcd1", "user": "j.chen", "directory": "d-0123456789", "state": "STOPPED",
//!   "tags": {"reaper:email": "jc@health.county.gov"}, "last_connected": "2025-03-01T08:00:00Z",
//!   "first_seen": null}]
//! ```
//! `tags` may be omitted (no tags) or `null` (the tag lookup failed: kept); `last_connected` is
//! required, `null` meaning never connected; `first_seen` (optional, `null` = first sighting) is
//! the date an earlier run first saw it; `status_unavailable: true` simulates a failed status
//! lookup; `bundle` and `running_mode` are optional; `warned` (optional, RFC 3339) is when an
//! earlier run warned its user of removal at the following run (without it, a WorkSpace over the
//! limit is warned first, not terminated). Unknown keys are errors; every error names the
//! WorkSpace (or entry number) and the field. A UTF-8 byte order mark is ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use workspace_reaper::analytics::{self, Activity};
use workspace_reaper::report::{Row, Snapshot};
use workspace_reaper::{
    Backoff, FakeWorkspace, FakeWorkspaces, History, Policy, Preview, Warning, Workspace, WorkspacesApi,
    WsState,
};

#[derive(clap::Subcommand)]
pub enum ReaperCmd {
    /// Decide every WorkSpace as the weekly run would, in dry run, and print the table.
    Plan(PlanArgs),
    /// Activity analytics and the trend chart from run snapshots (`history/<date>.json`).
    Report(ReportArgs),
}

#[derive(clap::Args)]
pub struct ReportArgs {
    /// A folder of run snapshots: the reports bucket's `history/` (or a folder holding it).
    #[arg(long)]
    pub history: PathBuf,
    /// Where `activity.svg` and `activity.csv` are written.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Policy TOML for the price table (default: the shipped `config/reaper.toml`).
    #[arg(long)]
    pub policy: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct PlanArgs {
    /// A JSON fleet (see `docs/REAPER.md`) instead of the account's WorkSpaces.
    #[arg(long)]
    pub fleet: Option<PathBuf>,
    /// Policy TOML (default: the shipped `config/reaper.toml`); `REAPER_*` overrides apply as
    /// in the Lambda. Dry run is forced on.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The run time, RFC 3339 (default: now).
    #[arg(long)]
    pub now: Option<String>,
    /// One JSON document: the run time, mode, cap and one object per WorkSpace (decision, rule,
    /// idle seconds, ...).
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// CSV, one row per WorkSpace (decision, rule, idle seconds, ...).
    #[arg(long)]
    pub csv: bool,
}

/// One WorkSpace of a `--fleet` file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetEntry {
    pub id: String,
    pub user: String,
    pub directory: String,
    pub state: String,
    #[serde(default = "no_tags", deserialize_with = "nullable")]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(deserialize_with = "nullable")]
    pub last_connected: Option<DateTime<Utc>>,
    #[serde(default)]
    pub first_seen: Option<DateTime<Utc>>,
    #[serde(default)]
    pub status_unavailable: bool,
    #[serde(default)]
    pub bundle: String,
    #[serde(default)]
    pub running_mode: String,
    #[serde(default)]
    pub warned: Option<DateTime<Utc>>,
}

/// The fields of a fleet entry, for error messages.
const FIELDS: &[&str] = &[
    "id",
    "user",
    "directory",
    "state",
    "tags",
    "last_connected",
    "first_seen",
    "status_unavailable",
    "bundle",
    "running_mode",
    "warned",
];

/// Which field of `entry` is wrong and why (serde's own message names neither the WorkSpace nor,
/// for a bad value, the field).
fn field_problem(entry: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    use serde_json::{from_value, Value};
    for (k, v) in entry {
        let v: Value = v.clone();
        let bad = match k.as_str() {
            "id" | "user" | "directory" | "state" | "bundle" | "running_mode" => {
                from_value::<String>(v).err()
            }
            "tags" => from_value::<Option<BTreeMap<String, String>>>(v).err(),
            "last_connected" | "first_seen" | "warned" => from_value::<Option<DateTime<Utc>>>(v).err(),
            "status_unavailable" => from_value::<bool>(v).err(),
            _ => return Some(format!("unknown field `{k}`, expected one of {}", FIELDS.join(", "))),
        };
        if let Some(e) = bad {
            return Some(format!("field `{k}`: {e}"));
        }
    }
    None
}

/// Parses one entry; the error names the WorkSpace (or the entry's position) and the field.
fn parse_entry(n: usize, v: serde_json::Value) -> Result<FleetEntry> {
    let who = match v.get("id").and_then(|i| i.as_str()) {
        Some(id) => format!("WorkSpace {id} (entry {n})"),
        None => format!("entry {n}"),
    };
    let Some(map) = v.as_object() else { bail!("{who}: not a JSON object") };
    if let Some(p) = field_problem(map) {
        bail!("{who}: {p}");
    }
    let map = map.clone();
    serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| anyhow::anyhow!("{who}: {e}"))
}

fn no_tags() -> Option<BTreeMap<String, String>> {
    Some(BTreeMap::new())
}

fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

/// Parses a fleet file: the fake WorkSpaces and the history (first sightings, warnings) it
/// implies; a warning named the run `schedule_interval_days` after it as the removal date.
pub fn load_fleet(text: &str, policy: &Policy) -> Result<(FakeWorkspaces, History)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let values: Vec<serde_json::Value> =
        serde_json::from_str(text).context("a fleet file is a JSON array of WorkSpaces")?;
    let entries = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| parse_entry(i + 1, v))
        .collect::<Result<Vec<FleetEntry>>>()?;
    let mut ids = BTreeSet::new();
    let mut known = History::default();
    let interval = chrono::Duration::days(i64::from(policy.schedule_interval_days));
    let mut missing = BTreeSet::new();
    let mut fleet = Vec::with_capacity(entries.len());
    for e in entries {
        if e.id.trim().is_empty() {
            bail!("a WorkSpace has an empty id");
        }
        if !ids.insert(e.id.clone()) {
            bail!("WorkSpace {} is listed twice", e.id);
        }
        if let Some(t) = e.first_seen {
            known.first_seen.insert(e.id.clone(), t);
        }
        if let Some(t) = e.warned {
            let w = Warning { sent_at: t, removal_on: (t + interval).date_naive() };
            known.warnings.insert(e.id.clone(), w);
        }
        if e.status_unavailable {
            missing.insert(e.id.clone());
        }
        fleet.push(FakeWorkspace {
            ws: Workspace {
                id: e.id,
                user: e.user,
                directory: e.directory,
                state: WsState::parse(&e.state),
                bundle: e.bundle,
                running_mode: e.running_mode,
                tags: e.tags,
            },
            last_connection: e.last_connected,
        });
    }
    let mut api = FakeWorkspaces::new(fleet);
    api.status_missing = missing;
    Ok((api, known))
}

fn load_policy(path: Option<&Path>) -> Result<Policy> {
    let mut p = match path {
        Some(f) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
            Policy::from_toml(&text)?
        }
        None => Policy::from_toml(workspace_reaper::policy::EMBEDDED_POLICY)?,
    };
    p.apply_env(&|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))?;
    p.validate()?;
    p.dry_run = true;
    Ok(p)
}

pub fn run(cmd: ReaperCmd) -> Result<ExitCode> {
    match cmd {
        ReaperCmd::Plan(a) => {
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(plan(a))
        }
        ReaperCmd::Report(a) => report(a),
    }
}

/// Writes to stdout; a reader that went away (`| head -1`) ends the output quietly.
fn emit(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// Every snapshot of a history folder (`DIR/history/*.json`, or `DIR/*.json`), oldest first.
fn read_history(dir: &Path, policy: &Policy) -> Result<Activity> {
    let folder = if dir.join("history").is_dir() { dir.join("history") } else { dir.to_path_buf() };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .with_context(|| format!("cannot read {}", folder.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no run snapshots (*.json) in {}", folder.display());
    }
    let mut runs = Vec::with_capacity(files.len());
    for f in &files {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        let snap: Snapshot = serde_json::from_str(text.strip_prefix('\u{feff}').unwrap_or(&text))
            .with_context(|| format!("{} is not a run snapshot", f.display()))?;
        runs.push(analytics::run_activity(&snap, &policy.prices));
    }
    Ok(Activity::new(runs))
}

fn report(a: ReportArgs) -> Result<ExitCode> {
    let policy = load_policy(a.policy.as_deref())?;
    let activity = read_history(&a.history, &policy)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let svg = a.out.join("activity.svg");
    let csv = a.out.join("activity.csv");
    std::fs::write(&svg, analytics::trend_svg(&activity))
        .with_context(|| format!("cannot write {}", svg.display()))?;
    std::fs::write(&csv, analytics::to_csv(&activity)?)
        .with_context(|| format!("cannot write {}", csv.display()))?;
    let mut text = analytics::text_table(&activity);
    text.push_str(&format!("\nwrote {} and {}\n", svg.display(), csv.display()));
    emit(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

async fn plan(a: PlanArgs) -> Result<ExitCode> {
    let now = match &a.now {
        Some(t) => DateTime::parse_from_rfc3339(t)
            .with_context(|| format!("--now {t:?} is not an RFC 3339 time"))?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    let policy = load_policy(a.policy.as_deref())?;
    let backoff = Backoff::default();
    let preview = match &a.fleet {
        Some(f) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
            let (api, known) =
                load_fleet(&text, &policy).with_context(|| format!("fleet file {}", f.display()))?;
            let api: Arc<dyn WorkspacesApi> = Arc::new(api);
            workspace_reaper::preview(api.as_ref(), &policy, &backoff, &known, now).await?
        }
        None => {
            let bucket = std::env::var("REAPER_REPORTS_BUCKET").ok().filter(|b| !b.trim().is_empty());
            let (api, history) = workspace_reaper::aws_plan_ports(bucket.clone()).await;
            let known = match &history {
                Some(store) => workspace_reaper::load_known(store.as_ref()).await?,
                None => {
                    eprintln!(
                        "note: REAPER_REPORTS_BUCKET not set: no run history, so never-connected WorkSpaces \
                         count as first sighting (kept) and nobody counts as warned (over the limit: warned first)"
                    );
                    History::default()
                }
            };
            workspace_reaper::preview(api.as_ref(), &policy, &backoff, &known, now).await?
        }
    };
    let out = if a.json {
        let doc = serde_json::json!({
            "run_at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "mode": policy.mode().as_str(),
            "fleet": preview.fleet,
            "planned_terminations": preview.planned_terminations,
            "cap_tripped": preview.cap_tripped,
            "cap": policy.cap.exceeded(preview.planned_terminations, preview.fleet),
            "workspaces": workspace_reaper::report::plan_json(&preview.rows),
        });
        let mut s = serde_json::to_vec_pretty(&doc)?;
        s.push(b'\n');
        s
    } else if a.csv {
        workspace_reaper::report::plan_csv(&preview.rows)?
    } else {
        format!("{}\n{}\n", table(&preview.rows), summary(&preview, &policy, now)).into_bytes()
    };
    emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// Terminal-safe cell text: control characters (escape sequences, line breaks) become `?`.
fn cell(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// The manager's table, in the report's order (decision, then WorkSpace id).
pub fn table(rows: &[Row]) -> String {
    let mut sorted: Vec<&Row> = rows.iter().collect();
    sorted.sort_by(|a, b| (a.outcome, &a.workspace_id).cmp(&(b.outcome, &b.workspace_id)));
    let header = ["WORKSPACE", "USER", "STATE", "LAST CONNECTION", "DAYS INACTIVE", "DECISION", "RULE"];
    let mut lines: Vec<[String; 7]> = vec![header.map(str::to_string)];
    for r in sorted {
        lines.push([
            cell(&r.workspace_id),
            cell(&r.user),
            cell(&r.state),
            cell(&r.last_connection),
            r.days_inactive.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
            r.outcome.as_str().to_string(),
            r.rule.clone(),
        ]);
    }
    let mut widths = [0usize; 7];
    for l in &lines {
        for (w, c) in widths.iter_mut().zip(l) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for l in &lines {
        let mut line = String::new();
        for (i, (c, w)) in l.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(c);
            line.extend(std::iter::repeat_n(' ', w.saturating_sub(c.chars().count())));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn summary(p: &Preview, policy: &Policy, now: DateTime<Utc>) -> String {
    use workspace_reaper::report::Outcome;
    let n = |o: Outcome| p.rows.iter().filter(|r| r.outcome == o).count();
    let next = now + chrono::Duration::days(i64::from(policy.schedule_interval_days));
    let mut s = format!(
        "{} WorkSpace(s) at {}: {} would be terminated, {} held by the cap, {} at risk before the next run ({}), {} kept.",
        p.rows.len(),
        now.format("%Y-%m-%d %H:%M UTC"),
        n(Outcome::WouldTerminate),
        n(Outcome::HeldByCap),
        n(Outcome::AtRisk),
        next.format("%Y-%m-%d"),
        n(Outcome::Keep)
    );
    let warn_first = p.rows.iter().filter(|r| r.rule == "over-limit-warn-first").count();
    if warn_first > 0 {
        s.push_str(&format!(
            "\n{warn_first} of the at-risk WorkSpace(s) are over the limit, but their users were not warned of \
             a removal date that has come: a run warns them now and removes them at the next run."
        ));
    }
    if p.cap_tripped {
        s.push_str(&format!(
            "\nCap exceeded: {} planned terminations, over {} or {:.0}% of the fleet. {}. A live run would \
             terminate nothing, write the report and alert on-call.",
            p.planned_terminations,
            policy.cap.max_terminations,
            policy.cap.max_fleet_share * 100.0,
            policy.cap.exceeded(p.planned_terminations, p.fleet).unwrap_or_default()
        ));
    }
    for r in p.rows.iter().filter(|r| r.error.starts_with("clock skew")) {
        s.push_str(&format!("\nnote: {}: {}", cell(&r.workspace_id), r.error));
    }
    s.push_str("\nDry run: nothing was terminated and nobody was notified.");
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fleet_file_keys_are_checked() {
        let ok = r#"[{"id":"ws-1","user":"u","directory":"d-0123456789","state":"AVAILABLE","last_connected":null}]"#;
        let policy = Policy::embedded().unwrap();
        let (api, known) = load_fleet(ok, &policy).unwrap();
        assert!(known.first_seen.is_empty() && known.warnings.is_empty());
        assert!(api.status_missing.is_empty());
        let err = |text: &str| format!("{:#}", load_fleet(text, &policy).unwrap_err());
        let no_last = r#"[{"id":"ws-1","user":"u","directory":"d-0123456789","state":"AVAILABLE"}]"#;
        assert!(err(no_last).contains("last_connected"), "{}", err(no_last));
        let typo = r#"[{"id":"ws-1","user":"u","directory":"d","state":"AVAILABLE","last_connected":null,"tag":{}}]"#;
        assert!(err(typo).contains("unknown field"), "{}", err(typo));
        let twice = format!("[{0},{0}]", &ok[1..ok.len() - 1]);
        assert!(err(&twice).contains("listed twice"), "{}", err(&twice));
    }

    #[test]
    fn cells_cannot_drive_the_terminal() {
        assert_eq!(cell("a\u{1b}[2Jb\nc"), "a?[2Jb?c");
    }
}
