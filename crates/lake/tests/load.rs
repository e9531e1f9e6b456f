//! Load: 500 files from 20 sources arriving at once, every event delivered twice and out of
//! order, through the embedded lake: all DONE, each exactly once. Reports files/s (a figure, not
//! an assertion: this is a debug build on a shared machine).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use layer::ledger::Status;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const DIALECTS: [(&str, &str); 3] = [
    ("st_marys", "st_marys_600.csv"),
    ("county_general", "county_general_600.psv"),
    ("valley_clinic", "valley_clinic_600.jsonl"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_files_from_twenty_sources_each_done_once() {
    let tmp = tempfile::tempdir().unwrap();
    let contracts = tmp.path().join("contracts");
    let incoming = tmp.path().join("incoming");
    std::fs::create_dir_all(&contracts).unwrap();
    // 20 sources, each one of the three dialects under its own id
    let mut heads = Vec::new();
    for s in 0..20 {
        let (dialect, file) = DIALECTS[s % 3];
        let id = format!("hosp{s:02}");
        let text = std::fs::read_to_string(root().join(format!("config/sources/{dialect}.toml")))
            .unwrap()
            .replace(&format!("source = \"{dialect}\""), &format!("source = \"{id}\""))
            .replace(&format!("keys = [\"{dialect}/\"]"), &format!("keys = [\"{id}/\"]"));
        std::fs::write(contracts.join(format!("{id}.toml")), text).unwrap();
        // the first 40 lines of the sample (header included): small files, many of them
        let body = std::fs::read_to_string(root().join(format!("samples/{dialect}/{file}"))).unwrap();
        let head: String = body.lines().take(40).map(|l| format!("{l}\n")).collect();
        heads.push((id, file.rsplit_once('.').unwrap().1.to_string(), head));
    }
    for i in 0..500 {
        let (id, ext, head) = &heads[i % 20];
        // each of a source's 25 files a line shorter than the last: 25 different contents
        // (byte-identical files of one source would be recorded as duplicates)
        let head: String = head.lines().take(40 - i / 20).map(|l| format!("{l}\n")).collect();
        let d = incoming.join(id).join(format!("batch{}", i / 100));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("file{i:03}.{ext}")), head).unwrap();
    }
    let (deps, topo) = lake::embedded::local_deps(&tmp.path().join("lake"), Some(&incoming));
    lake::embedded::publish_dir(&deps, &contracts).await.unwrap();

    // every notification twice, in a shuffled order
    let objs = deps.store.list_versions(&topo.ingest_bucket, "").await.unwrap();
    assert_eq!(objs.len(), 500);
    let mut events: Vec<String> = objs
        .iter()
        .flat_map(|o| {
            let e = layer::s3event::notification(&topo.ingest_bucket, o.key.expose(), None, o.size);
            [e.clone(), e]
        })
        .collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..events.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        events.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let t = Instant::now();
    for e in &events {
        deps.queue.send(&topo.ingest_queue, e).await.unwrap();
    }
    lake::embedded::drain(&deps, &topo).await.unwrap();
    let secs = t.elapsed().as_secs_f64();

    let runs = lake::embedded::status(&deps).await.unwrap();
    assert_eq!(runs.len(), 500, "one ledger entry per file");
    assert!(
        runs.iter().all(|r| r.status == Status::Done),
        "{:?}",
        runs.iter().find(|r| r.status != Status::Done)
    );
    let mut outputs: Vec<&String> = runs
        .iter()
        .flat_map(|r| r.outputs.iter().filter(|o| o.ends_with(".parquet") && !o.contains(".bad.")))
        .collect();
    outputs.sort();
    outputs.dedup();
    assert_eq!(outputs.len(), 500, "exactly one raw output per file");
    let sources: std::collections::BTreeSet<_> = runs.iter().filter_map(|r| r.source.clone()).collect();
    assert_eq!(sources.len(), 20);
    let audit = lake::embedded::audit(&deps, &topo, 0).await.unwrap();
    assert!(audit.iter().all(|r| r.verdict == layer::AuditVerdict::Done));
    eprintln!("load: 500 files (1,000 events, shuffled, duplicated) from 20 sources in {secs:.1}s = {:.0} files/s (debug build)", 500.0 / secs);
}
