//! `lake synth` through the binary: the file and its manifest, then `lake contract check` on
//! the file agrees with the manifest exactly; a second run with the same seed writes the same
//! bytes; bad options end in a clear error and leave no file behind.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lake(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lake")).args(args).current_dir(root()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn synth(contract: &str, file: &Path, seed: &str) -> serde_json::Value {
    let (code, stdout, stderr) = lake(&[
        "synth",
        contract,
        "--rows",
        "2000",
        "--out",
        file.to_str().unwrap(),
        "--seed",
        seed,
        "--defects",
        "duplicates=0.02,missing=0.05,malformed=0.01",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("manifest"), "{stdout}");
    let manifest = std::fs::read_to_string(format!("{}.manifest.json", file.display())).unwrap();
    serde_json::from_str(&manifest).unwrap()
}

#[test]
fn contract_check_agrees_with_the_manifest_of_a_synthetic_file() {
    let tmp = tempfile::tempdir().unwrap();
    for (contract, name) in
        [("config/sources/old_mill.toml", "old_mill.dat"), ("config/sources/bayside_hl7.toml", "bayside.hl7")]
    {
        let file = tmp.path().join(name);
        let m = synth(contract, &file, "42");
        let out = tmp.path().join(format!("{name}-check"));
        let (code, stdout, stderr) = lake(&[
            "contract",
            "check",
            contract,
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let s: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        let e = &m["expected"];
        for k in ["rows_read", "good", "bad", "malformed", "duplicates", "skipped", "bad_by_field"] {
            assert_eq!(s[k], e[k], "{name}: {k}: check {s}\nmanifest {m}");
        }
        assert!(e["malformed"].as_u64().unwrap() > 0 && e["duplicates"].as_u64().unwrap() > 0, "{m}");
        assert_eq!(m["rows"], 2000);

        // the same seed again: the same bytes
        let again = tmp.path().join(format!("again-{name}"));
        synth(contract, &again, "42");
        assert!(std::fs::read(&file).unwrap() == std::fs::read(&again).unwrap(), "{name}");
    }
}

#[test]
fn bad_options_are_refused_clearly_and_leave_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("x.csv");
    let f = file.to_str().unwrap();
    let (code, _, stderr) = lake(&[
        "synth",
        "config/sources/st_marys.toml",
        "--rows",
        "10",
        "--out",
        f,
        "--defects",
        "typos=0.1",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown defect `typos` (known: duplicates, missing, malformed)"), "{stderr}");
    assert!(!file.exists());
    let (code, _, stderr) =
        lake(&["synth", "config/sources/brookside_xlsx.toml", "--rows", "2000000", "--out", f]);
    assert_eq!(code, 2);
    assert!(stderr.contains("an xlsx sheet holds 1048576 rows"), "{stderr}");
    assert!(!file.exists(), "no half-written file is left");
    let (code, stdout, _) = lake(&["synth", "--help"]);
    assert_eq!(code, 0);
    for words in ["--rows", "--defects", "--seed", "manifest", "duplicates=0.02"] {
        assert!(stdout.contains(words), "--help mentions {words}: {stdout}");
    }
}
