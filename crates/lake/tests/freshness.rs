//! `lake freshness` on the embedded lake: a source silent past its contract's `expect_every` is
//! overdue (exit 1); with --notify it raises one alert, and none more while it stays silent.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lake(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lake")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_silent_source_is_overdue_and_alerted_once() {
    let tmp = tempfile::tempdir().unwrap();
    let l = tmp.path().join("lake");
    let c = tmp.path().join("st_marys.toml");
    let text = std::fs::read_to_string(root().join("config/sources/st_marys.toml")).unwrap().replacen(
        "\nkeys = ",
        "\nexpect_every = \"1bd\"\nkeys = ",
        1,
    );
    std::fs::write(&c, text).unwrap();
    let (code, _) = lake(&["contract", "publish", c.to_str().unwrap(), "--lake", l.to_str().unwrap()]);
    assert_eq!(code, 0);
    let (code, out) = lake(&["freshness", "--lake", l.to_str().unwrap()]);
    assert_eq!(code, 0, "just published: not overdue yet: {out}");
    assert!(out.contains("st_marys") && out.contains("ok"), "{out}");
    let later = (chrono::Utc::now() + chrono::Duration::days(5)).to_rfc3339();
    let args = ["freshness", "--lake", l.to_str().unwrap(), "--at", &later, "--notify"];
    let (code, out) = lake(&args);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("OVERDUE") && out.contains("WentSilent"), "{out}");
    let (code, out) = lake(&args);
    assert_eq!(code, 1);
    assert!(!out.contains("WentSilent"), "alerted once only: {out}");
    let alerts = std::fs::read_to_string(l.join("topics/alerts.jsonl")).unwrap();
    assert_eq!(alerts.lines().count(), 1, "{alerts}");
    assert!(alerts.contains("source st_marys is silent"), "{alerts}");
}
