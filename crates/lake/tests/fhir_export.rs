//! A FHIR Bulk Data export through the real router and workflow handlers on the embedded lake:
//! its NDJSON parts are held (no work message) until the manifest arrives, then joined into one
//! set of outputs under the manifest's file id; a manifest that arrives before its parts fails
//! transiently (`ExportIncomplete`) and, redriven once the parts are in, succeeds.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use lake::embedded::{audit, drain, local_deps, notify_all, publish, redrive, RedriveFilter};
use layer::ledger::{file_id, RunRecord, Status};
use layer::{AuditVerdict, ErrorKind, Stage};

const PARTS: [&str; 4] = ["Patient.ndjson", "Encounter.ndjson", "Condition.ndjson.gz", "Observation.ndjson"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn arrive(incoming: &Path, names: &[&str]) {
    let d = incoming.join("ridgeline_bulk/export-1");
    std::fs::create_dir_all(&d).unwrap();
    for n in names {
        std::fs::copy(root().join("samples/ridgeline_bulk/export-1").join(n), d.join(n)).unwrap();
    }
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

fn parquet_rows(path: &Path) -> usize {
    let f = std::fs::File::open(path).unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum()
}

fn id(name: &str) -> String {
    file_id("ingest", &format!("ridgeline_bulk/export-1/{name}"), None)
}

async fn run_of(deps: &layer::pipeline::Deps, name: &str) -> RunRecord {
    deps.meta.get_run(&id(name)).await.unwrap().unwrap_or_else(|| panic!("no ledger entry for {name}"))
}

/// The manifest DONE with the sample's rows (11 good, 1 bad) in one Parquet under its file id,
/// and every part DONE `joined` into it; the audit finds nothing at risk.
async fn assert_joined(deps: &layer::pipeline::Deps, topo: &lake::embedded::Topology, lake: &Path) {
    let m = run_of(deps, "manifest.json").await;
    assert_eq!((m.status, m.stage), (Status::Done, Stage::MatchingPending), "{m:?}");
    assert_eq!((m.counts.good, m.counts.bad, m.counts.malformed), (11, 1, 0));
    let raw = files_under(&lake.join("buckets/raw"), ".parquet");
    assert_eq!(raw.len(), 1, "one set of outputs for the export: {raw:?}");
    assert!(raw[0].to_string_lossy().contains("source=ridgeline_bulk/ingest_date="));
    assert!(raw[0].to_string_lossy().ends_with(&format!("{}.parquet", m.file_id)));
    assert_eq!(parquet_rows(&raw[0]), 11);
    for p in PARTS {
        let r = run_of(deps, p).await;
        assert_eq!((r.status, r.stage), (Status::Done, Stage::Joined), "{p}");
        assert_eq!(r.joined_into.as_deref(), Some(m.file_id.as_str()), "{p}");
        assert!(r.outputs.is_empty(), "{p}");
    }
    let rows = audit(deps, topo, 900).await.unwrap();
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r.verdict == AuditVerdict::Done), "{rows:?}");
}

#[tokio::test]
async fn parts_wait_for_their_manifest_then_join_into_one_output() {
    let tmp = tempfile::tempdir().unwrap();
    let (incoming, lake) = (tmp.path().join("incoming"), tmp.path().join("lake"));
    std::fs::create_dir_all(&incoming).unwrap();
    let (deps, topo) = local_deps(&lake, Some(&incoming));
    publish(&deps, &root().join("config/sources/ridgeline_bulk.toml")).await.unwrap();

    arrive(&incoming, &PARTS);
    notify_all(&deps, &topo).await.unwrap();
    drain(&deps, &topo).await.unwrap();
    for p in PARTS {
        let r = run_of(&deps, p).await;
        assert_eq!((r.status, r.stage), (Status::Received, Stage::AwaitingManifest), "{p}");
        assert_eq!(r.source.as_deref(), Some("ridgeline_bulk"));
    }
    assert!(files_under(&lake.join("buckets/raw"), ".parquet").is_empty(), "nothing before the manifest");
    let rows = audit(&deps, &topo, 900).await.unwrap();
    assert!(rows.iter().all(|r| r.verdict == AuditVerdict::InFlight), "{rows:?}");
    assert!(rows.iter().all(|r| r.why.starts_with("NDJSON part awaiting its export's manifest")), "{rows:?}");

    arrive(&incoming, &["manifest.json"]);
    notify_all(&deps, &topo).await.unwrap();
    drain(&deps, &topo).await.unwrap();
    assert_joined(&deps, &topo, &lake).await;

    // a late duplicate event for a part changes nothing
    notify_all(&deps, &topo).await.unwrap();
    drain(&deps, &topo).await.unwrap();
    assert_joined(&deps, &topo, &lake).await;
}

#[tokio::test]
async fn a_manifest_before_its_parts_fails_transiently_and_a_redrive_joins_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (incoming, lake) = (tmp.path().join("incoming"), tmp.path().join("lake"));
    std::fs::create_dir_all(&incoming).unwrap();
    let (deps, topo) = local_deps(&lake, Some(&incoming));
    publish(&deps, &root().join("config/sources/ridgeline_bulk.toml")).await.unwrap();

    arrive(&incoming, &["manifest.json", "Patient.ndjson"]);
    notify_all(&deps, &topo).await.unwrap();
    drain(&deps, &topo).await.unwrap();
    let m = run_of(&deps, "manifest.json").await;
    assert_eq!((m.status, m.error_kind), (Status::Failed, Some(ErrorKind::ExportIncomplete)), "{m:?}");
    assert_eq!(m.error_message.as_deref(), Some("2 of 3 parts of the export have not arrived"));
    assert!(files_under(&lake.join("buckets/raw"), ".parquet").is_empty());

    arrive(&incoming, &PARTS[1..]);
    notify_all(&deps, &topo).await.unwrap();
    drain(&deps, &topo).await.unwrap();
    let f = RedriveFilter { error_kind: Some(ErrorKind::ExportIncomplete), ..Default::default() };
    let report = redrive(&deps, &topo, &f).await.unwrap();
    assert_eq!(report.replayed.len(), 1, "{:?}", report.not_replayed);
    drain(&deps, &topo).await.unwrap();
    assert_joined(&deps, &topo, &lake).await;
}

#[test]
fn contract_check_on_a_manifest_reads_its_parts_from_its_folder() {
    let lake =
        |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_lake")).args(args).output().unwrap();
    let contract = root().join("config/sources/ridgeline_bulk.toml");
    let out = tempfile::tempdir().unwrap();
    let manifest = root().join("samples/ridgeline_bulk/export-1/manifest.json");
    let o = lake(&[
        "contract",
        "check",
        contract.to_str().unwrap(),
        manifest.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (s["good"].as_u64(), s["bad"].as_u64(), s["malformed"].as_u64()),
        (Some(11), Some(1), Some(0))
    );
    assert_eq!(s["skipped"], 3, "the Observations the manifest counts");
    assert_eq!(parquet_rows(&out.path().join("manifest.parquet")), 11);

    // a part the manifest lists is not in the folder: named, nothing read
    let tmp = tempfile::tempdir().unwrap();
    arrive(tmp.path(), &["manifest.json", "Patient.ndjson", "Condition.ndjson.gz"]);
    let m = tmp.path().join("ridgeline_bulk/export-1/manifest.json");
    let o = lake(&[
        "contract",
        "check",
        contract.to_str().unwrap(),
        m.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("part 1 (Encounter) of the export is missing"), "{err}");
}
