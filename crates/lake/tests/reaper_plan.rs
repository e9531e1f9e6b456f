//! `lake reaper plan --fleet config/fleet.example.json` through the real binary: the rows a manager
//! would see, the cap, and that a plan never terminates anything.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

const NOW: &str = "2025-03-10T06:00:00Z";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lake(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lake"));
    cmd.current_dir(root()).args(args);
    // The plan must not depend on the caller's environment: no policy overrides, no account.
    for (k, _) in std::env::vars() {
        if k.starts_with("REAPER_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_ENDPOINT_URL", "http://127.0.0.1:9").output().unwrap()
}

/// The table's rows as columns split on runs of two or more spaces.
fn rows(out: &Output) -> Vec<Vec<String>> {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    text.lines()
        .take_while(|l| !l.is_empty())
        .map(|l| l.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect())
        .collect()
}

fn row<'a>(rows: &'a [Vec<String>], id: &str) -> &'a [String] {
    rows.iter().find(|r| r[0] == id).unwrap_or_else(|| panic!("{id} not in the table: {rows:?}"))
}

#[test]
fn plan_on_the_example_fleet_prints_each_decision_and_its_rule() {
    let before = std::fs::read(root().join("config/fleet.example.json")).unwrap();
    let out = lake(&["reaper", "plan", "--fleet", "config/fleet.example.json", "--now", NOW]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = rows(&out);
    assert_eq!(
        rows[0],
        ["WORKSPACE", "USER", "STATE", "LAST CONNECTION", "DAYS INACTIVE", "DECISION", "RULE"]
    );
    assert_eq!(rows.len(), 12, "header + 11 WorkSpaces");
    assert_eq!(
        row(&rows, "ws-0a1b2c3d1"),
        [
            "ws-0a1b2c3d1",
            "m.garcia",
            "AVAILABLE",
            "2025-02-20T09:15:00Z",
            "17",
            "would-terminate (dry run)",
            "inactive-over-limit"
        ]
    );
    assert_eq!(
        row(&rows, "ws-0a1b2c3d7"),
        [
            "ws-0a1b2c3d7",
            "contractor.x",
            "STOPPED",
            "never",
            "35",
            "would-terminate (dry run)",
            "never-connected-over-limit"
        ]
    );
    assert_eq!(
        row(&rows, "ws-0a1b2c3d2"),
        [
            "ws-0a1b2c3d2",
            "j.chen",
            "STOPPED",
            "2025-03-01T16:40:00Z",
            "8",
            "at-risk next run",
            "passes-limit-before-next-run"
        ]
    );
    let rule = |id: &str| (row(&rows, id)[5].clone(), row(&rows, id)[6].clone());
    assert_eq!(
        rule("ws-0a1b2c3da"),
        ("at-risk next run".into(), "never-connected-passes-limit-before-next-run".into())
    );
    // Over the limit, but no earlier run warned p.osei: warned now, removed at the next run.
    assert_eq!(rule("ws-0a1b2c3db"), ("at-risk next run".into(), "over-limit-warn-first".into()));
    assert_eq!(rule("ws-0a1b2c3d3"), ("keep".into(), "used-within-limit".into()));
    assert_eq!(rule("ws-0a1b2c3d4"), ("keep".into(), "exempt-tag".into()));
    assert_eq!(rule("ws-0a1b2c3d5"), ("keep".into(), "protected-state".into()));
    assert_eq!(rule("ws-0a1b2c3d6"), ("keep".into(), "never-connected-first-sighting".into()));
    assert_eq!(rule("ws-0a1b2c3d8"), ("keep".into(), "tags-unavailable".into()));
    assert_eq!(row(&rows, "ws-0a1b2c3d9")[3..], ["unknown", "-", "keep", "status-unavailable"]);
    // Ordered as the report: would-terminate first, then at risk, then kept.
    let order: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(&order[..5], ["ws-0a1b2c3d1", "ws-0a1b2c3d7", "ws-0a1b2c3d2", "ws-0a1b2c3da", "ws-0a1b2c3db"]);

    // Nothing terminated: no row says so, the summary says so, and the fleet file is untouched.
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!rows.iter().any(|r| r[5] == "terminated"), "{text}");
    assert!(
        text.contains(
            "11 WorkSpace(s) at 2025-03-10 06:00 UTC: 2 would be terminated, 0 held by the cap, \
         3 at risk before the next run (2025-03-17), 6 kept."
        ),
        "{text}"
    );
    assert!(
        text.contains("1 of the at-risk WorkSpace(s) are over the limit, but their users were not warned"),
        "{text}"
    );
    assert!(text.contains("Dry run: nothing was terminated and nobody was notified."), "{text}");
    assert_eq!(std::fs::read(root().join("config/fleet.example.json")).unwrap(), before);
}

#[test]
fn a_policy_with_a_tighter_cap_holds_every_termination() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(root().join("config/reaper.toml")).unwrap();
    assert!(shipped.contains("max_fleet_share = 0.2"));
    // Live on purpose: the plan forces dry run whatever the file says.
    let policy = shipped
        .replace("max_fleet_share = 0.2", "max_fleet_share = 0.1")
        .replace("dry_run = true", "dry_run = false");
    let path = dir.path().join("reaper.toml");
    std::fs::write(&path, policy).unwrap();
    let out = lake(&[
        "reaper",
        "plan",
        "--fleet",
        "config/fleet.example.json",
        "--now",
        NOW,
        "--policy",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = rows(&out);
    assert_eq!(row(&rows, "ws-0a1b2c3d1")[5], "held: cap exceeded");
    assert_eq!(row(&rows, "ws-0a1b2c3d7")[5], "held: cap exceeded");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("0 would be terminated, 2 held by the cap"), "{text}");
    assert!(text.contains("Cap exceeded: 2 planned terminations, over 50 or 10% of the fleet."), "{text}");
    assert!(text.contains("Dry run: nothing was terminated"), "{text}");
}

#[test]
fn a_longer_limit_and_bad_input_are_handled() {
    // REAPER_* overrides apply as in the Lambda: with 60 days, only the 98- and 66-day-old
    // WorkSpaces are over the limit, and both are kept for another reason (exempt, tags
    // unavailable); the 53-day-old one in MAINTENANCE passes 60 before the next run.
    let out = Command::new(env!("CARGO_BIN_EXE_lake"))
        .current_dir(root())
        .args(["reaper", "plan", "--fleet", "config/fleet.example.json", "--now", NOW])
        .env("REAPER_INACTIVITY_LIMIT_DAYS", "60")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(row(&rows(&out), "ws-0a1b2c3d5")[5..], ["at-risk next run", "passes-limit-before-next-run"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("0 would be terminated, 0 held by the cap, 1 at risk"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("fleet.json");
    std::fs::write(&bad, r#"[{"id":"ws-1","user":"u","directory":"d-0123456789","state":"AVAILABLE"}]"#)
        .unwrap();
    let out = lake(&["reaper", "plan", "--fleet", bad.to_str().unwrap(), "--now", NOW]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("missing field `last_connected`"), "{err}");

    let out = lake(&["reaper", "plan", "--fleet", "config/fleet.example.json", "--now", "last monday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("--now \"last monday\" is not an RFC 3339 time"));
}

#[test]
fn plan_as_json_and_csv_gives_decision_rule_and_idle_seconds() {
    let out = lake(&["reaper", "plan", "--fleet", "config/fleet.example.json", "--now", NOW, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["mode"], "dry-run");
    assert_eq!((doc["fleet"].as_u64(), doc["planned_terminations"].as_u64()), (Some(11), Some(2)));
    assert_eq!(doc["cap_tripped"], false);
    let ws = doc["workspaces"].as_array().unwrap();
    assert_eq!(ws.len(), 11);
    let first = &ws[0];
    assert_eq!(first["workspace_id"], "ws-0a1b2c3d1");
    assert_eq!(first["decision"], "would-terminate");
    assert_eq!(first["rule"], "inactive-over-limit");
    // 2025-02-20T09:15:00Z to 2025-03-10T06:00:00Z
    assert_eq!(first["idle_seconds"].as_i64(), Some(17 * 86_400 + 20 * 3600 + 45 * 60));
    let unknown = ws.iter().find(|w| w["workspace_id"] == "ws-0a1b2c3d9").unwrap();
    assert_eq!((unknown["idle_seconds"].is_null(), unknown["decision"].as_str()), (true, Some("keep")));

    let out = lake(&["reaper", "plan", "--fleet", "config/fleet.example.json", "--now", NOW, "--csv"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "workspace_id,user,directory,state,last_connection,idle_seconds,days_inactive,decision,rule,note"
        )
    );
    assert_eq!(
        lines.next(),
        Some("ws-0a1b2c3d1,m.garcia,d-0123456789,AVAILABLE,2025-02-20T09:15:00Z,1543500,17,would-terminate,inactive-over-limit,")
    );
    assert_eq!(text.lines().count(), 12);
    let both = lake(&["reaper", "plan", "--fleet", "config/fleet.example.json", "--json", "--csv"]);
    assert_eq!(both.status.code(), Some(2), "--json and --csv exclude each other");
}

#[test]
fn a_closed_pipe_ends_the_plan_quietly() {
    use std::io::{BufRead, BufReader};
    // Enough rows that the output cannot fit the pipe's buffer: the writer meets the closed end.
    let dir = tempfile::tempdir().unwrap();
    let fleet: Vec<serde_json::Value> = (0..3000)
        .map(|i| {
            serde_json::json!({"id": format!("ws-{i:09}"), "user": format!("user.{i}"),
                "directory": "d-0123456789", "state": "AVAILABLE", "last_connected": "2025-03-01T00:00:00Z"})
        })
        .collect();
    let path = dir.path().join("fleet.json");
    std::fs::write(&path, serde_json::to_vec(&fleet).unwrap()).unwrap();
    for extra in [None, Some("--csv"), Some("--json")] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lake"));
        cmd.current_dir(root()).args(["reaper", "plan", "--fleet", path.to_str().unwrap(), "--now", NOW]);
        cmd.args(extra);
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        // `| head -1`: the reader is gone after one line.
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!first.is_empty());
        assert!(out.status.success(), "{extra:?}: {:?} {err}", out.status);
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{extra:?}: {err}");
    }
}

#[test]
fn fleet_errors_name_the_workspace_and_field_and_a_bom_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let good = r#"{"id":"ws-good00001","user":"u","directory":"d-0123456789","state":"AVAILABLE","last_connected":"2025-03-01T00:00:00Z"}"#;
    let bad_time = write(
        "time.json",
        &format!(
            r#"[{good},{{"id":"ws-bad000001","user":"u","directory":"d-0123456789","state":"AVAILABLE","last_connected":"2025-02-30T25:00:00Z"}}]"#
        ),
    );
    let out = lake(&["reaper", "plan", "--fleet", bad_time.to_str().unwrap(), "--now", NOW]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("WorkSpace ws-bad000001 (entry 2): field `last_connected`: "), "{err}");
    let bad_state =
        write("state.json", r#"[{"id":"ws-x","user":"u","directory":"d","state":3,"last_connected":null}]"#);
    let err =
        String::from_utf8(lake(&["reaper", "plan", "--fleet", bad_state.to_str().unwrap()]).stderr).unwrap();
    assert!(
        err.contains("WorkSpace ws-x (entry 1): field `state`: invalid type: integer `3`, expected a string"),
        "{err}"
    );
    let no_id =
        write("noid.json", r#"[{"user":"u","directory":"d","state":"AVAILABLE","last_connected":null}]"#);
    let err =
        String::from_utf8(lake(&["reaper", "plan", "--fleet", no_id.to_str().unwrap()]).stderr).unwrap();
    assert!(err.contains("entry 1: missing field `id`"), "{err}");

    let bom = write("bom.json", &format!("\u{feff}[{good}]"));
    let out = lake(&["reaper", "plan", "--fleet", bom.to_str().unwrap(), "--now", NOW]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(row(&rows(&out), "ws-good00001")[5], "at-risk next run", "9 days idle");

    // Policy errors name the field too.
    let shipped = std::fs::read_to_string(root().join("config/reaper.toml")).unwrap();
    let policy = write(
        "p.toml",
        &shipped.replace("inactivity_limit_days = 14", "inactivity_limit_days = \"two weeks\""),
    );
    let out =
        lake(&["reaper", "plan", "--fleet", bom.to_str().unwrap(), "--policy", policy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("inactivity_limit_days") && err.contains("expected u32"), "{err}");
}

#[test]
fn the_cap_message_names_the_limit_and_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(root().join("config/reaper.toml")).unwrap();
    let path = dir.path().join("reaper.toml");
    std::fs::write(&path, shipped.replace("max_terminations = 50", "max_terminations = 1")).unwrap();
    let out = lake(&[
        "reaper",
        "plan",
        "--fleet",
        "config/fleet.example.json",
        "--now",
        NOW,
        "--policy",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            "Cap exceeded: 2 planned terminations, over 1 or 20% of the fleet. \
             Limit hit: cap.max_terminations = 1 (planned 2, 1 over). A live run would"
        ),
        "{text}"
    );
}

#[test]
fn a_future_last_connection_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("skew.json");
    std::fs::write(
        &p,
        r#"[{"id":"ws-skew00001","user":"u","directory":"d-0123456789","state":"AVAILABLE","last_connected":"2025-03-12T06:00:00Z"}]"#,
    )
    .unwrap();
    let out = lake(&["reaper", "plan", "--fleet", p.to_str().unwrap(), "--now", NOW]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            "note: ws-skew00001: clock skew: last connection 2025-03-12T06:00:00Z is after the run time"
        ),
        "{text}"
    );
    let out = lake(&["reaper", "plan", "--fleet", p.to_str().unwrap(), "--now", NOW, "--csv"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(",0,0,keep,used-within-limit,clock skew: last connection"), "{text}");
}

#[test]
fn report_from_a_history_folder_writes_the_chart_and_figures() {
    let dir = tempfile::tempdir().unwrap();
    let hist = dir.path().join("history");
    std::fs::create_dir_all(&hist).unwrap();
    let entry = |id: &str, last: Option<&str>, decision: &str, rule: &str| {
        serde_json::json!({"id": id, "user": "u", "directory": "d-0123456789", "state": "AVAILABLE",
            "last_connection": last, "first_seen": "2025-01-06T06:00:00Z", "decision": decision, "rule": rule,
            "bundle": "wsb-0123456789", "running_mode": "ALWAYS_ON"})
    };
    for (i, day) in ["2025-02-24", "2025-03-03", "2025-03-10"].iter().enumerate() {
        let mut ws = vec![entry("ws-fresh0001", Some("2025-02-23T08:00:00Z"), "keep", "used-within-limit")];
        if i == 1 {
            ws.push(entry("ws-gone00001", None, "terminated", "never-connected-over-limit"));
        }
        let snap = serde_json::json!({"run_at": format!("{day}T06:00:00Z"), "dry_run": i == 0, "cap_tripped": false, "workspaces": ws});
        std::fs::write(hist.join(format!("{day}.json")), serde_json::to_vec(&snap).unwrap()).unwrap();
    }
    // A snapshot written before bundles and running modes were recorded still reads.
    let old = serde_json::json!({"run_at": "2025-02-17T06:00:00Z", "dry_run": true, "cap_tripped": false, "workspaces": [
        {"id": "ws-fresh0001", "user": "u", "directory": "d-0123456789", "state": "AVAILABLE", "last_connection": null,
         "first_seen": "2025-01-06T06:00:00Z", "decision": "keep", "rule": "never-connected-within-limit"}]});
    std::fs::write(hist.join("2025-02-17.json"), serde_json::to_vec(&old).unwrap()).unwrap();
    let out_dir = dir.path().join("out");
    let out = lake(&[
        "reaper",
        "report",
        "--history",
        dir.path().to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("Activity at 2025-03-10 06:00 UTC (mode: enforce), 4 run(s) in the history"),
        "{text}"
    );
    let all = text.lines().find(|l| l.starts_with("all")).unwrap();
    let cells: Vec<&str> = all.split_whitespace().collect();
    // scope group fleet 7d 14d 30d never at-risk terminated to-date avoided avoided-to-date
    assert_eq!(cells, ["all", "fleet", "1", "0", "0", "1", "0", "0", "0", "1", "$0.00", "$35.00"], "{text}");
    let svg = std::fs::read_to_string(out_dir.join("activity.svg")).unwrap();
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert_eq!(svg.matches("<circle").count(), 4 * 4, "four series, four runs");
    let csv = std::fs::read_to_string(out_dir.join("activity.csv")).unwrap();
    assert!(csv.contains("2025-03-03T06:00:00Z,enforce,all,,2,0,1,1,1,0,1,1,35.00,35.00"), "{csv}");
    assert!(csv.contains("2025-02-17T06:00:00Z,dry-run,bundle,unknown,1,"), "{csv}");
    let missing = lake(&["reaper", "report", "--history", out_dir.join("nothing").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
}
