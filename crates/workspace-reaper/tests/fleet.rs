//! Whole runs against the fake WorkSpaces: a property test over random fleets, 5,000 WorkSpaces
//! within the call budget, and the safety scenarios a manager would ask about.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::Duration;
use common::*;
use lambda_runtime::{Context, LambdaEvent};
use proptest::prelude::*;
use workspace_reaper::policy::Cap;
use workspace_reaper::report::{Snapshot, SnapshotEntry};
use workspace_reaper::store::LocalStore;
use workspace_reaper::{handle, FakeWorkspaces, Warning, WsState};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
}

const STATES: &[&str] = &[
    "AVAILABLE",
    "STOPPED",
    "PENDING",
    "MAINTENANCE",
    "ADMIN_MAINTENANCE",
    "ERROR",
    "SUSPENDED",
    "IMPAIRED",
    "REBOOTING",
    "STARTING",
    "STOPPING",
    "TERMINATING",
];

#[derive(Debug, Clone)]
struct Gen {
    state: usize,
    exempt: bool,
    tags_unavailable: bool,
    /// Minutes since last connection; `None` = never connected.
    idle_minutes: Option<i64>,
    /// Minutes since first sighting in history; `None` = first sighting.
    seen_minutes: Option<i64>,
    status_missing: bool,
    terminate_fails: bool,
    changes_before_terminate: bool,
    /// The run a week ago warned the user (recorded only when that run saw it: `seen_minutes`).
    warned: bool,
    /// IAM refuses to terminate it (a TerminateWorkspaces naming it fails as a whole).
    denied: bool,
}

fn gen_ws() -> impl Strategy<Value = Gen> {
    let minutes = 0i64..(40 * 24 * 60);
    (
        // Weighted towards the terminable states so the property is exercised.
        prop_oneof![3 => 0usize..2, 1 => 0usize..STATES.len()],
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.05),
        prop::option::weighted(0.8, minutes.clone()),
        prop::option::weighted(0.6, minutes),
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.05),
    )
        .prop_map(
            |(state, exempt, tags_unavailable, idle, seen, missing, fails, changes, warned, denied)| Gen {
                state,
                exempt,
                tags_unavailable,
                idle_minutes: idle,
                seen_minutes: seen,
                status_missing: missing,
                terminate_fails: fails,
                changes_before_terminate: changes,
                warned,
                denied,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Oracle: nothing exempt, unknown, young, recently used, in a protected state or whose user
    /// was not warned by an earlier run is ever terminated; every other AVAILABLE/STOPPED
    /// WorkSpace past the limit is (unless the cap trips, in which case nothing is), also when IAM
    /// refuses another one in its batch; the cap always holds.
    #[test]
    fn random_fleets_obey_the_policy(
        fleet in prop::collection::vec(gen_ws(), 0..70),
        max_terminations in 0usize..40,
        share_pct in 1u32..=100,
        throttles in 0usize..4,
    ) {
        let mut policy = live_policy();
        policy.cap = Cap { max_terminations, max_fleet_share: f64::from(share_pct) / 100.0 };
        let limit = Duration::days(i64::from(policy.inactivity_limit_days));
        let mut status_missing = BTreeSet::new();
        let mut terminate_fails = BTreeSet::new();
        let mut state_after = BTreeMap::new();
        let mut workspaces = Vec::new();
        let mut history = Vec::new();
        let mut must_not = BTreeSet::new();
        let mut eligible = BTreeSet::new();
        let mut fails = BTreeSet::new();
        let mut denied = BTreeSet::new();
        let week_ago = now() - Duration::days(7);
        for (i, g) in fleet.iter().enumerate() {
            let id = format!("ws-{i:09}");
            let state = WsState::parse(STATES[g.state]);
            let last = g.idle_minutes.map(|m| now() - Duration::minutes(m));
            let mut w = ws(&id, &format!("user{i}"), state.clone(), last);
            if g.exempt { w = tagged(w, &policy.exempt_tag_key, "yes"); }
            if g.tags_unavailable { w.ws.tags = None; }
            workspaces.push(w);
            if let Some(m) = g.seen_minutes {
                history.push(SnapshotEntry {
                    id: id.clone(), user: String::new(), directory: DIR.into(), state: "AVAILABLE".into(),
                    last_connection: None, first_seen: now() - Duration::minutes(m),
                    decision: workspace_reaper::report::Outcome::Keep, rule: String::new(),
                    bundle: String::new(), running_mode: String::new(), connection: None,
                    warning: g.warned.then(|| Warning { sent_at: week_ago, removal_on: now().date_naive() }),
                });
            }
            if g.status_missing { status_missing.insert(id.clone()); }
            if g.terminate_fails { terminate_fails.insert(id.clone()); fails.insert(id.clone()); }
            if g.denied { denied.insert(id.clone()); fails.insert(id.clone()); }
            if g.changes_before_terminate {
                state_after.insert(id.clone(), WsState::parse("PENDING"));
            }
            let old_enough = match (g.idle_minutes, g.seen_minutes) {
                (Some(m), _) => Duration::minutes(m) > limit,
                (None, Some(s)) => Duration::minutes(s) > limit,
                (None, None) => false,
            };
            let protected = g.exempt || g.tags_unavailable || g.status_missing || !state.terminable();
            // Warned a week ago, after the idle spell began (it did: old enough means over 14 days).
            let warned = g.warned && g.seen_minutes.is_some();
            if protected || !old_enough || !warned {
                must_not.insert(id.clone());
            } else {
                eligible.insert(id.clone());
            }
        }
        let mut api = FakeWorkspaces::new(workspaces);
        api.status_missing = status_missing;
        api.terminate_fails = terminate_fails;
        api.terminate_denied = denied;
        api.state_after_describe = state_after;
        api.throttle_next.store(throttles, Ordering::SeqCst);
        let changed: BTreeSet<String> = api.state_after_describe.keys().cloned().collect();
        let store = Arc::new(MemStore::default());
        if !history.is_empty() {
            let snap = Snapshot { run_at: now() - Duration::days(7), dry_run: false, cap_tripped: false, workspaces: history };
            store.0.lock().unwrap().insert("history/2025-03-03.json".into(), serde_json::to_vec(&snap).unwrap());
        }
        let r = rig(api, store, policy.clone());
        let summary = block_on(r.reaper.run(now())).unwrap();
        let terminated: BTreeSet<String> = r.api.terminated().into_iter().collect();

        for id in &terminated {
            prop_assert!(!must_not.contains(id), "{id} must not be terminated");
            prop_assert!(!changed.contains(id), "{id} changed state before terminate");
        }
        prop_assert!(policy.cap.allows(terminated.len(), fleet.len()), "cap broken: {} of {}", terminated.len(), fleet.len());
        prop_assert_eq!(summary.planned_terminations, eligible.len());
        if policy.cap.allows(eligible.len(), fleet.len()) {
            prop_assert!(!summary.cap_tripped);
            let expected: BTreeSet<String> = eligible.iter()
                .filter(|id| !fails.contains(*id) && !changed.contains(*id)).cloned().collect();
            prop_assert_eq!(&terminated, &expected);
            prop_assert_eq!(summary.terminate_failed, eligible.iter().filter(|id| fails.contains(*id) && !changed.contains(*id)).count());
        } else {
            prop_assert!(summary.cap_tripped);
            prop_assert!(terminated.is_empty());
            prop_assert_eq!(summary.held_by_cap, eligible.len());
            prop_assert!(r.notifier.alerts().iter().any(|a| a.subject.contains("cap exceeded")));
        }
        prop_assert_eq!(summary.terminated, terminated.len());
        prop_assert!(FakeWorkspaces::count(&r.api.max_batch) <= 25);
    }
}

#[test]
fn five_thousand_workspaces_within_the_call_budget() {
    let fleet: Vec<_> = (0..5000)
        .map(|i| {
            let last = if i % 2 == 0 { Some(days_ago(30)) } else { Some(days_ago(1)) };
            ws(&format!("ws-{i:09}"), &format!("user{i}"), WsState::Available, last)
        })
        .collect();
    let ids: Vec<String> = (0..5000).step_by(2).map(|i| format!("ws-{i:09}")).collect();
    let store = warned_store(&ids.iter().map(String::as_str).collect::<Vec<_>>());
    let r = rig(FakeWorkspaces::new(fleet), store, live_policy());
    let s = block_on(r.reaper.run(now())).unwrap();
    assert_eq!(s.fleet, 5000);
    assert_eq!(s.terminated, 2500);
    assert_eq!(r.api.terminated().len(), 2500);
    let status = FakeWorkspaces::count(&r.api.calls.status);
    let terminate = FakeWorkspaces::count(&r.api.calls.terminate);
    let states = FakeWorkspaces::count(&r.api.calls.states);
    assert!(status <= 200, "{status} status calls");
    assert!(terminate <= 200, "{terminate} terminate calls");
    assert!(states <= 200, "{states} re-check calls");
    assert_eq!(status, 200);
    assert_eq!(terminate, 100);
    assert_eq!(FakeWorkspaces::count(&r.api.calls.describe), 200);
    assert_eq!(FakeWorkspaces::count(&r.api.max_batch), 25);
}

#[test]
fn never_connected_survives_first_sighting_then_goes_after_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(dir.path()));
    let fleet = vec![ws("ws-new000001", "newbie", WsState::Available, None)];
    let r = rig(FakeWorkspaces::new(fleet.clone()), store.clone(), live_policy());
    let s1 = block_on(r.reaper.run(now())).unwrap();
    assert_eq!((s1.terminated, s1.kept), (0, 1));
    let hist = std::fs::read_to_string(dir.path().join("history/2025-03-10.json")).unwrap();
    assert!(hist.contains("\"first_seen\": \"2025-03-10T06:00:00Z\""), "{hist}");

    // Eight days later: judged from the first sighting, 8 <= 14 but 8 + 7 > 14: at risk.
    let r2 = rig(FakeWorkspaces::new(fleet.clone()), store.clone(), live_policy());
    let s2 = block_on(r2.reaper.run(now() + Duration::days(8))).unwrap();
    assert_eq!((s2.terminated, s2.at_risk), (0, 1));
    assert_eq!(r2.notifier.notices()[0].email, "newbie@county.gov");

    // Three weeks after the first sighting: over the limit, terminated.
    let r3 = rig(FakeWorkspaces::new(fleet), store, live_policy());
    let s3 = block_on(r3.reaper.run(now() + Duration::days(21))).unwrap();
    assert_eq!(s3.terminated, 1);
    assert_eq!(r3.api.terminated(), vec!["ws-new000001"]);
}

#[test]
fn over_the_cap_nothing_is_terminated_and_on_call_is_alerted() {
    let fleet: Vec<_> =
        (0..10).map(|i| ws(&format!("ws-{i:09}"), "u", WsState::Stopped, Some(days_ago(40)))).collect();
    let mut policy = live_policy();
    policy.cap = Cap { max_terminations: 50, max_fleet_share: 0.2 };
    let ids: Vec<String> = (0..10).map(|i| format!("ws-{i:09}")).collect();
    let store = warned_store(&ids.iter().map(String::as_str).collect::<Vec<_>>());
    let r = rig(FakeWorkspaces::new(fleet), store.clone(), policy);
    let s = block_on(r.reaper.run(now())).unwrap();
    assert!(s.cap_tripped);
    assert_eq!((s.terminated, s.held_by_cap), (0, 10));
    assert_eq!(FakeWorkspaces::count(&r.api.calls.terminate), 0);
    let alerts = r.notifier.alerts();
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0].body.contains("planned 10 terminations out of 10"), "{}", alerts[0].body);
    assert!(store.text("reports/latest.csv").unwrap().contains("held: cap exceeded"));
}

#[test]
fn dry_run_terminates_and_notifies_nobody() {
    let fleet = vec![
        ws("ws-old000001", "old", WsState::Available, Some(days_ago(20))),
        ws("ws-risk00001", "risk", WsState::Available, Some(days_ago(10))),
    ];
    let mut policy = live_policy();
    policy.dry_run = true;
    let store = warned_store(&["ws-old000001"]);
    let r = rig(FakeWorkspaces::new(fleet), store.clone(), policy);
    let s = block_on(r.reaper.run(now())).unwrap();
    assert_eq!((s.would_terminate, s.at_risk, s.terminated, s.notices_sent), (1, 1, 0, 0));
    assert!(r.api.terminated().is_empty());
    assert!(r.notifier.notices().is_empty());
    assert!(store.text("reports/2025-03-10/workspaces.csv").unwrap().contains("would-terminate (dry run)"));
}

#[test]
fn state_change_before_terminate_and_per_item_failures_are_reported() {
    let fleet = vec![
        ws("ws-changes01", "a", WsState::Available, Some(days_ago(20))),
        ws("ws-refuses01", "b", WsState::Stopped, Some(days_ago(20))),
        ws("ws-goes00001", "c", WsState::Stopped, Some(days_ago(20))),
    ];
    let mut api = FakeWorkspaces::new(fleet);
    api.state_after_describe = BTreeMap::from([("ws-changes01".to_string(), WsState::parse("MAINTENANCE"))]);
    api.terminate_fails = BTreeSet::from(["ws-refuses01".to_string()]);
    api.throttle_next.store(3, Ordering::SeqCst);
    let store = warned_store(&["ws-changes01", "ws-refuses01", "ws-goes00001"]);
    let r = rig(api, store.clone(), live_policy());
    let s = block_on(r.reaper.run(now())).unwrap();
    assert_eq!((s.terminated, s.terminate_failed, s.state_changed), (1, 1, 1));
    assert_eq!(r.api.terminated(), vec!["ws-goes00001"]);
    let csv = store.text("reports/latest.csv").unwrap();
    assert!(csv.contains("ws-changes01,a,d-0123456789,AVAILABLE"), "{csv}");
    assert!(csv.contains("kept: state changed before terminate,inactive-over-limit,state now MAINTENANCE"));
    assert!(csv.contains("terminate-failed,inactive-over-limit,InvalidResourceState: fake refused"));
    assert!(r.notifier.alerts().iter().any(|a| a.body.contains("1 terminations failed")));
}

#[test]
fn at_risk_users_are_emailed_at_their_tag_or_username() {
    let fleet = vec![
        tagged(
            ws("ws-risk00001", "alice", WsState::Available, Some(days_ago(9))),
            "reaper:email",
            "a.smith@health.county.gov",
        ),
        ws("ws-risk00002", "bob", WsState::Stopped, Some(days_ago(12))),
        ws("ws-fresh0001", "carol", WsState::Available, Some(days_ago(2))),
        tagged(ws("ws-exempt001", "dan", WsState::Available, Some(days_ago(99))), "reaper:exempt", "board"),
    ];
    let r = rig(FakeWorkspaces::new(fleet), Arc::new(MemStore::default()), live_policy());
    let s = block_on(r.reaper.run(now())).unwrap();
    assert_eq!((s.at_risk, s.kept, s.terminated, s.notices_sent), (2, 2, 0, 2));
    let mut emails: Vec<_> = r.notifier.notices().into_iter().map(|n| n.email).collect();
    emails.sort();
    assert_eq!(emails, vec!["a.smith@health.county.gov", "bob@county.gov"]);
    assert!(r.notifier.notices()[0].body.contains("2025-03-17"));
}

#[test]
fn handler_takes_the_scheduled_event_and_uses_its_time() {
    let ev: serde_json::Value = serde_json::from_str(include_str!("events/scheduled.json")).unwrap();
    let store = warned_store(&["ws-old000001"]);
    let fleet = vec![ws("ws-old000001", "old", WsState::Available, Some(days_ago(15)))];
    let r = rig(FakeWorkspaces::new(fleet), store.clone(), live_policy());
    let s = block_on(handle(&r.reaper, LambdaEvent::new(ev, Context::default()))).unwrap();
    assert_eq!(s.run_at, "2025-03-10T06:00:00Z");
    assert_eq!(s.terminated, 1);
    assert!(store.text("reports/2025-03-10/workspaces.csv").is_some());
    assert!(store.text("history/2025-03-10.json").is_some());
}

#[test]
fn a_describe_failure_fails_the_run_terminates_nothing_and_alerts() {
    let fleet = vec![ws("ws-old000001", "old", WsState::Available, Some(days_ago(15)))];
    let api = FakeWorkspaces::new(fleet);
    api.throttle_next.store(100, Ordering::SeqCst);
    let r = rig(api, Arc::new(MemStore::default()), live_policy());
    let ev = serde_json::json!({"time": "2025-03-10T06:00:00Z"});
    let err = block_on(handle(&r.reaper, LambdaEvent::new(ev, Context::default()))).unwrap_err();
    assert_eq!(err.kind(), "ReaperWorkspacesApi");
    assert!(r.api.terminated().is_empty());
    assert_eq!(r.notifier.alerts()[0].subject, "WorkSpaces reaper: run failed");
}

#[test]
fn preview_is_the_dry_run_report_and_touches_nothing() {
    let fleet = || {
        FakeWorkspaces::new(vec![
            ws("ws-old000001", "old", WsState::Available, Some(days_ago(20))),
            ws("ws-risk00001", "risk", WsState::Stopped, Some(days_ago(10))),
            ws("ws-new000001", "new", WsState::Available, None),
            ws("ws-maint0001", "maint", WsState::parse("MAINTENANCE"), Some(days_ago(40))),
        ])
    };
    let store = warned_store(&["ws-old000001"]);
    let r = rig(fleet(), store.clone(), live_policy());
    let p = block_on(r.reaper.preview(now())).unwrap();
    assert!(r.api.terminated().is_empty());
    assert_eq!(FakeWorkspaces::count(&r.api.calls.terminate), 0);
    assert_eq!(FakeWorkspaces::count(&r.api.calls.states), 0, "no re-check: nothing to act on");
    let keys: Vec<String> = store.0.lock().unwrap().keys().cloned().collect();
    assert_eq!(keys, vec![LAST_WEEK], "no report or history written");
    assert!(r.notifier.notices().is_empty() && r.notifier.alerts().is_empty());
    assert_eq!((p.planned_terminations, p.cap_tripped), (1, false));

    // The same rows, cell for cell, as the CSV of a dry run over the same fleet.
    let mut policy = live_policy();
    policy.dry_run = true;
    let dry_store = warned_store(&["ws-old000001"]);
    let dry = rig(fleet(), dry_store.clone(), policy);
    block_on(dry.reaper.run(now())).unwrap();
    let csv = String::from_utf8(workspace_reaper::report::to_csv(&p.rows).unwrap()).unwrap();
    assert_eq!(csv, dry_store.text("reports/latest.csv").unwrap());
    assert!(csv.contains(
        "ws-old000001,old,d-0123456789,AVAILABLE,2025-02-18T06:00:00Z,20,would-terminate (dry run)"
    ));
}
