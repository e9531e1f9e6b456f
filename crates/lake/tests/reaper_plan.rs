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
    assert_eq!(rows.len(), 11, "header + 10 WorkSpaces");
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
    assert_eq!(rule("ws-0a1b2c3d3"), ("keep".into(), "used-within-limit".into()));
    assert_eq!(rule("ws-0a1b2c3d4"), ("keep".into(), "exempt-tag".into()));
    assert_eq!(rule("ws-0a1b2c3d5"), ("keep".into(), "protected-state".into()));
    assert_eq!(rule("ws-0a1b2c3d6"), ("keep".into(), "never-connected-first-sighting".into()));
    assert_eq!(rule("ws-0a1b2c3d8"), ("keep".into(), "tags-unavailable".into()));
    assert_eq!(row(&rows, "ws-0a1b2c3d9")[3..], ["unknown", "-", "keep", "status-unavailable"]);
    // Ordered as the report: would-terminate first, then at risk, then kept.
    let order: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(&order[..4], ["ws-0a1b2c3d1", "ws-0a1b2c3d7", "ws-0a1b2c3d2", "ws-0a1b2c3da"]);

    // Nothing terminated: no row says so, the summary says so, and the fleet file is untouched.
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!rows.iter().any(|r| r[5] == "terminated"), "{text}");
    assert!(
        text.contains(
            "10 WorkSpace(s) at 2025-03-10 06:00 UTC: 2 would be terminated, 0 held by the cap, \
         2 at risk before the next run (2025-03-17), 6 kept."
        ),
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
