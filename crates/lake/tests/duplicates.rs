//! A byte-identical file re-sent under another name is recorded as a duplicate of the DONE one:
//! no second Parquet, no second pii message, visible in `lake status`; a contract with
//! `allow_resend = true` ingests it again.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lake(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lake")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn files_under(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out
}

/// st_marys' sample twice under two names (a re-send) and county_general's once.
fn incoming(tmp: &Path) -> PathBuf {
    let d = tmp.join("incoming");
    let sample = std::fs::read(root().join("samples/st_marys/st_marys_600.csv")).unwrap();
    std::fs::create_dir_all(d.join("st_marys/2026/11")).unwrap();
    std::fs::write(d.join("st_marys/2026/11/st_marys_600.csv"), &sample).unwrap();
    std::fs::write(d.join("st_marys/2026/11/resent_friday.csv"), &sample).unwrap();
    std::fs::create_dir_all(d.join("county_general")).unwrap();
    std::fs::copy(
        root().join("samples/county_general/county_general_600.psv"),
        d.join("county_general/county_general_600.psv"),
    )
    .unwrap();
    d
}

/// The shipped contracts, with st_marys allowed to re-send when `allow` is set.
fn contracts(tmp: &Path, allow: bool) -> PathBuf {
    let d = tmp.join("contracts");
    std::fs::create_dir_all(&d).unwrap();
    for src in ["st_marys", "county_general"] {
        let mut text = std::fs::read_to_string(root().join(format!("config/sources/{src}.toml"))).unwrap();
        if allow && src == "st_marys" {
            text = text.replacen("\nkeys = ", "\nallow_resend = true\nkeys = ", 1);
        }
        std::fs::write(d.join(format!("{src}.toml")), text).unwrap();
    }
    d
}

fn run(tmp: &Path, allow: bool) -> (PathBuf, String) {
    let (dir, c, l) = (incoming(tmp), contracts(tmp, allow), tmp.join("lake"));
    let (ok, _) = lake(&[
        "run",
        dir.to_str().unwrap(),
        "--lake",
        l.to_str().unwrap(),
        "--contracts",
        c.to_str().unwrap(),
    ]);
    assert!(ok, "lake run");
    let (ok, status) = lake(&["status", "--lake", l.to_str().unwrap()]);
    assert!(ok);
    (l, status)
}

#[test]
fn a_resent_file_is_recorded_as_a_duplicate_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (l, status) = run(tmp.path(), false);
    let st: Vec<&str> = status.lines().filter(|l| l.contains("st_marys")).collect();
    assert_eq!(st.len(), 2, "{status}");
    let dup: Vec<&&str> = st.iter().filter(|l| l.contains(" duplicate ")).collect();
    assert_eq!(dup.len(), 1, "one of the two is the duplicate: {status}");
    let original = st.iter().find(|l| !l.contains(" duplicate ")).unwrap();
    let original_id = original.split_whitespace().next().unwrap();
    assert!(dup[0].contains(&format!("duplicate of {original_id}")), "{status}");
    assert!(dup[0].contains("DONE"), "a duplicate is settled, not at risk: {status}");
    // exactly one Parquet per distinct content, one pii pointer per distinct content
    let raw = files_under(&l.join("buckets/raw"), ".parquet");
    assert_eq!(raw.iter().filter(|p| p.to_string_lossy().contains("source=st_marys")).count(), 1);
    assert_eq!(raw.iter().filter(|p| p.to_string_lossy().contains("source=county_general")).count(), 1);
    let pii = files_under(&l.join("queues/pii"), "");
    assert_eq!(pii.len(), 2, "st_marys and county_general each send one pointer: {pii:?}");
    // the ledger holds the SHA-256 of both st_marys files: the same
    let runs: Vec<serde_json::Value> = files_under(&l.join("meta/runs"), ".json")
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .filter(|r: &serde_json::Value| r["source"] == "st_marys")
        .collect();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["sha256"], runs[1]["sha256"]);
    assert_eq!(runs[0]["sha256"].as_str().unwrap().len(), 64);
    // and the audit counts it as done
    let dir = tmp.path().join("incoming");
    let (ok, _) = lake(&["audit", dir.to_str().unwrap(), "--lake", l.to_str().unwrap()]);
    assert!(ok, "nothing at risk");
}

#[test]
fn a_contract_that_allows_resends_ingests_the_same_bytes_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (l, status) = run(tmp.path(), true);
    assert!(!status.contains("duplicate"), "{status}");
    let raw = files_under(&l.join("buckets/raw"), ".parquet");
    assert_eq!(raw.iter().filter(|p| p.to_string_lossy().contains("source=st_marys")).count(), 2);
}
