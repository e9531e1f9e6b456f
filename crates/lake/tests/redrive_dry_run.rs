//! `lake redrive --dry-run` lists, per DLQ, the count per cause and the file ids, and changes
//! nothing: the same redrive afterwards still finds the envelope.
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
fn a_dry_run_lists_counts_per_cause_and_consumes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, l) = (tmp.path().join("incoming"), tmp.path().join("lake"));
    std::fs::create_dir_all(dir.join("nobody_knows")).unwrap();
    std::fs::write(dir.join("nobody_knows/QZXNAME.csv"), "a,b\n1,2\n").unwrap();
    let contracts = root().join("config/sources");
    let (l, d, c) = (l.to_str().unwrap(), dir.to_str().unwrap(), contracts.to_str().unwrap());
    let (code, _) = lake(&["run", d, "--lake", l, "--contracts", c]);
    assert_eq!(code, 1, "one file FAILED");
    for _ in 0..2 {
        let (code, out) = lake(&["redrive", "--lake", l, "--dry-run"]);
        assert_eq!(code, 0);
        assert!(out.contains("dlq: UnknownSource=1"), "{out}");
        assert!(out.contains("ingest-dlq: nothing to redrive"), "{out}");
        assert!(out.contains("dry run: nothing changed") && !out.contains("QZX"), "{out}");
    }
    let (_, out) = lake(&["redrive", "--lake", l, "--error-kind", "UnknownSource", "--dry-run"]);
    assert!(out.contains("UnknownSource=1"), "{out}");
    let (_, out) = lake(&["redrive", "--lake", l, "--error-kind", "HeaderMismatch", "--dry-run"]);
    assert!(out.contains("dlq: nothing to redrive"), "{out}");
}
