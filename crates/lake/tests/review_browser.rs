//! A reviewer in a real browser: Debian's Chromium (headless, driven by `playwright-core` from
//! `crates/review-web/browser`) against `lake review serve` on 127.0.0.1 over an embedded lake
//! with proposals. The browser signs in once with the printed link (a second use is refused),
//! opens the queue, opens a proposal, reveals its phone, accepts candidate 1 with the keyboard and
//! lands on the next proposal; moves with j and k, skips with s, accepts the second of three
//! candidates with 2, rejects with r; then two tabs race to accept one proposal. Afterwards the raw bucket holds the completed row (read back as
//! Parquet) and the audit trail the reveal and exactly one decision per proposal.
//!
//! Needs `/usr/bin/chromium` (or `CHROMIUM`) and `npm ci` in `crates/review-web/browser`
//! (`scripts/test.sh` installs both); missing under `CI=true` is a failure, elsewhere a skip.
//! `REVIEW_SHOTS=DIR` keeps the queue and proposal screenshots (docs/ has two).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use arrow_array::{Array, StringArray};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The browser and the driver, or None (a skip; under CI=true a failure).
fn tools() -> Option<(PathBuf, PathBuf)> {
    let chromium = PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    let driver = root().join("crates/review-web/browser");
    let have = chromium.is_file()
        && driver.join("node_modules/playwright-core/package.json").is_file()
        && Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "under CI=true the browser test needs {} and `npm ci` in {}",
            chromium.display(),
            driver.display()
        );
        eprintln!("SKIPPED: no Chromium or playwright-core (`bash scripts/test.sh` installs them)");
        return None;
    }
    Some((chromium, driver))
}

/// Kills the server when the test ends, whatever happens.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn strings(b: &arrow_array::RecordBatch, col: &str) -> Vec<Option<String>> {
    let a = b.column_by_name(col).unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
    (0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i).to_string())).collect()
}

#[test]
fn a_reviewer_decides_in_chromium_and_a_race_lands_once() {
    let Some((chromium, driver)) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let l = dir.path().join("lake");
    // the hand-set rules leave eight sample rows proposed (one with three candidates), which this
    // test needs; the shipped trained rules decide all but one of them
    e2e::publish_handset_rules(env!("CARGO_BIN_EXE_lake"), &l);
    let o = Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(["run", root().join("samples").to_str().unwrap(), "--lake", l.to_str().unwrap()])
        .args(["--contracts", root().join("config/sources").to_str().unwrap()])
        .args(["--people", root().join("config/people.example.csv").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (multi, persons) = three_candidates(&l);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(["review", "serve", "--lake", l.to_str().unwrap(), "--port", "0", "--reviewer", "ana"])
        .env_remove("LAKE_DATABASE_URL")
        .env_remove("LAKE_DB_SECRET_ARN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let _server = Server(child);
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).unwrap();
    let login = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(login.starts_with("http://127.0.0.1:") && login.contains("/login?token="), "{line}");

    let mut node = Command::new("node");
    node.arg(driver.join("review.mjs"))
        .env("REVIEW_LOGIN", &login)
        .env("REVIEW_MULTI", multi.to_string())
        .env("CHROMIUM", &chromium);
    if let Ok(shots) = std::env::var("REVIEW_SHOTS") {
        node.env("SHOTS", shots);
    }
    let o = node.output().unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let (opened, next, raced) =
        (r["opened"].as_i64().unwrap(), r["next"].as_i64().unwrap(), r["race"].as_i64().unwrap());
    assert_ne!(opened, next, "landed on the next proposal");
    assert_eq!(r["statuses"], serde_json::json!([303, 409]), "exactly one of the racing accepts lands: {r}");
    assert_eq!(r["refused"], 1, "{r}");

    // the lake: both proposals accepted, each completed row in the raw bucket
    let store = lake::embedded::review_store(&l);
    for id in [opened, raced] {
        let rev = store.get(id).unwrap().unwrap();
        assert_eq!((rev.status.as_str(), rev.reviewer.as_deref()), ("accepted", Some("ana")), "{id}");
        let key = pii_matching::rows::output_key(&rev.bad_key, &format!("reviewed-{}", rev.row_index));
        let b = pii_matching::rows::read_parquet(std::fs::read(l.join("buckets/raw").join(key)).unwrap())
            .unwrap();
        assert_eq!(b.num_rows(), 1);
        assert!(strings(&b, "ssn")[0].as_deref().is_some_and(|s| s.starts_with("900-10-")), "completed");
    }
    // the keys: 2 accepted the second of three candidates, r rejected, s skipped, j/k moved
    let k = &r["keys"];
    assert_eq!(k["multi"].as_i64(), Some(multi));
    let m = store.get(multi).unwrap().unwrap();
    assert_eq!((m.status.as_str(), m.accepted_person_id), ("accepted", Some(persons[1])), "key 2");
    let key = pii_matching::rows::output_key(&m.bad_key, &format!("reviewed-{}", m.row_index));
    let b =
        pii_matching::rows::read_parquet(std::fs::read(l.join("buckets/raw").join(key)).unwrap()).unwrap();
    assert_eq!(
        strings(&b, "ssn"),
        [Some(format!("900-10-{:04}", persons[1] - 9000000))],
        "candidate 2's values"
    );
    let rejected = k["rejected"].as_i64().unwrap();
    assert_eq!(store.get(rejected).unwrap().unwrap().status, "rejected", "key r");
    let (skipped, forward) = (k["skipped"].as_i64().unwrap(), k["forward"].as_i64().unwrap());
    assert_ne!(skipped, forward, "key j moved to another proposal");
    let decisions = store.decisions().unwrap();
    let accepted_once = |id: i64| {
        let rr = store.get(id).unwrap().unwrap().record_ref;
        decisions
            .iter()
            .filter(|d| {
                d.decision.record_ref == rr
                    && d.decision.tier == pii_matching::reviews::DecisionTier::Accepted
            })
            .count()
    };
    assert_eq!((accepted_once(opened), accepted_once(raced)), (1, 1));

    // the audit trail: the reveal and the decisions, exported by `lake review audit`
    let o = Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(["review", "audit", "--since", "2000-01-01", "--lake", l.to_str().unwrap()])
        .env_remove("LAKE_DATABASE_URL")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let trail: Vec<serde_json::Value> =
        String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let has = |action: &str, id: i64| {
        trail.iter().filter(|e| e["action"] == action && e["review_id"] == id).count()
    };
    assert_eq!(
        trail
            .iter()
            .filter(|e| e["action"] == "reveal")
            .map(|e| (&e["review_id"], &e["field"]))
            .collect::<Vec<_>>(),
        [(&serde_json::json!(opened), &serde_json::json!("phone"))]
    );
    assert_eq!((has("accept", opened), has("accept", raced)), (1, 1), "{trail:?}");
    assert!(has("view", opened) >= 2 && has("view", next) >= 1);
    assert_eq!((has("skip", skipped), has("reject", rejected), has("accept", multi)), (1, 1, 1), "{trail:?}");
    assert!(has("view", forward) >= 1 && has("view", skipped) >= 2, "j and k opened the pages");
}

/// Gives the second-to-last pending proposal three candidates, as the matcher stores them
/// (editing the embedded review store before the server starts); its id and the persons.
fn three_candidates(l: &Path) -> (i64, [i64; 3]) {
    let path = lake::embedded::review_store(l).path();
    let mut s: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let pending: Vec<usize> = s["reviews"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, r)| r["status"] == "pending")
        .map(|(i, _)| i)
        .collect();
    let e = &mut s["reviews"][pending[pending.len() - 2]];
    let first = e["candidates"][0].clone();
    let p0 = first["person_id"].as_i64().unwrap();
    let others: Vec<i64> = [9000001, 9000002, 9000003].into_iter().filter(|p| *p != p0).take(2).collect();
    let mut cands = vec![first.clone()];
    for (i, p) in others.iter().enumerate() {
        let mut c = first.clone();
        c["person_id"] = serde_json::json!(p);
        c["score"] = serde_json::json!(first["score"].as_f64().unwrap() - 1.0 - i as f64);
        cands.push(c);
    }
    e["candidates"] = serde_json::Value::Array(cands);
    let id = e["review_id"].as_i64().unwrap();
    std::fs::write(&path, serde_json::to_vec(&s).unwrap()).unwrap();
    (id, [p0, others[0], others[1]])
}
