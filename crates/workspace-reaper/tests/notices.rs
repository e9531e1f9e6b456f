//! Who is told what, and when: one notice per user per run, terminated users told too, none in
//! dry run unless the policy says so; the mode in every report and a mode change alerted; the
//! cap's message; clock skew flagged; the activity files beside the report. In-memory fakes; the
//! same paths through SES, SNS and S3 are in `tests/aws_adapters.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use chrono::Duration;
use common::*;
use workspace_reaper::report::{Snapshot, HEADER};
use workspace_reaper::{FakeWorkspaces, Mode, WsState};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
}

#[test]
fn one_notice_per_user_naming_each_workspace_and_terminated_users_are_told() {
    let fleet = vec![
        ws("ws-risk00001", "ann", WsState::Available, Some(days_ago(10))),
        ws("ws-risk00002", "ann", WsState::Stopped, Some(days_ago(12))),
        ws("ws-gone00001", "ann", WsState::Stopped, Some(days_ago(30))),
        ws("ws-gone00002", "bob", WsState::Available, Some(days_ago(40))),
        ws("ws-fine00001", "cat", WsState::Available, Some(days_ago(1))),
    ];
    let store = warned_store(&["ws-gone00001", "ws-gone00002"]);
    let r = rig(FakeWorkspaces::new(fleet), store.clone(), live_policy());
    let s = block_on(r.reaper.run(now())).unwrap();
    assert_eq!((s.terminated, s.at_risk, s.kept), (2, 2, 1));
    assert_eq!((s.notices_sent, s.notice_failures), (2, 0), "ann once for three WorkSpaces, bob once");
    let notices = r.notifier.notices();
    let ann = notices.iter().find(|n| n.email == "ann@county.gov").unwrap();
    assert_eq!(ann.workspace_ids.len(), 3);
    for id in ["ws-risk00001", "ws-risk00002", "ws-gone00001"] {
        assert!(ann.body.contains(id) && ann.html.contains(id), "{id} in {}", ann.body);
    }
    assert!(ann.body.contains("Unless you sign in to it before 2025-03-17"), "{}", ann.body);
    assert!(ann.body.contains("was last used on 2025-02-28"), "{}", ann.body);
    assert!(ann.body.contains("ask the IT service desk"), "whom to ask: {}", ann.body);
    assert!(ann.body.contains("\"reaper:exempt\""), "how to keep it: {}", ann.body);
    let bob = notices.iter().find(|n| n.email == "bob@county.gov").unwrap();
    assert_eq!(bob.subject, "Your WorkSpace ws-gone00002 was removed");
    assert!(bob.body.contains("was removed on 2025-03-10"), "{}", bob.body);
    assert!(bob.body.contains("Its data cannot be recovered"), "{}", bob.body);
    assert!(!notices.iter().any(|n| n.email.starts_with("cat@")), "a kept user is not emailed");
}

#[test]
fn dry_run_notifies_only_when_the_policy_says_so_and_then_warns_would_terminate_users_too() {
    let fleet = || {
        FakeWorkspaces::new(vec![
            ws("ws-risk00001", "ann", WsState::Available, Some(days_ago(10))),
            ws("ws-old000001", "bob", WsState::Available, Some(days_ago(30))),
            ws("ws-old000002", "cat", WsState::Available, Some(days_ago(30))),
        ])
    };
    // Cat was warned a week ago (of removal today), bob never was.
    let mut policy = live_policy();
    policy.dry_run = true;
    let store = warned_store(&["ws-old000002"]);
    let r = rig(fleet(), store.clone(), policy.clone());
    let s = block_on(r.reaper.run(now())).unwrap();
    assert_eq!((s.mode, s.would_terminate, s.at_risk, s.notices_sent), (Mode::DryRun, 1, 2, 0));
    assert!(r.notifier.notices().is_empty());
    let csv = store.text("reports/latest.csv").unwrap();
    assert!(csv.contains("ws-old000001,bob,d-0123456789,AVAILABLE,2025-02-08T06:00:00Z,30,at-risk next run,over-limit-warn-first,"), "{csv}");
    assert!(csv.contains("ws-old000002,cat,d-0123456789,AVAILABLE,2025-02-08T06:00:00Z,30,would-terminate (dry run),inactive-over-limit,"), "{csv}");

    // notify_in_dry_run: everyone a run may remove is warned, would-terminate users too, of the
    // next run's date, and the history records it.
    policy.notify.notify_in_dry_run = true;
    let store = warned_store(&["ws-old000002"]);
    let r = rig(fleet(), store.clone(), policy);
    let s = block_on(r.reaper.run(now())).unwrap();
    assert_eq!((s.would_terminate, s.at_risk, s.notices_sent), (1, 2, 3));
    assert!(r.api.terminated().is_empty());
    let mut to: Vec<String> = r.notifier.notices().into_iter().map(|n| n.email).collect();
    to.sort();
    assert_eq!(to, vec!["ann@county.gov", "bob@county.gov", "cat@county.gov"]);
    for n in r.notifier.notices() {
        assert!(n.body.contains("Unless you sign in to it before 2025-03-17"), "{}", n.body);
    }
    let snap: Snapshot = serde_json::from_str(&store.text("history/2025-03-10.json").unwrap()).unwrap();
    let warned = snap.warnings();
    assert_eq!(warned.len(), 3);
    assert!(warned.values().all(|w| w.sent_at == now() && w.removal_on.to_string() == "2025-03-17"));

    // The first enforcing run, a week later, removes all three: each was warned a run earlier.
    let r = rig(fleet(), store.clone(), live_policy());
    let s = block_on(r.reaper.run(now() + Duration::days(7))).unwrap();
    assert_eq!((s.terminated, s.at_risk), (3, 0));
    assert_eq!(r.api.terminated().len(), 3);
}

#[test]
fn the_first_enforcing_run_without_earlier_warnings_warns_and_the_next_removes() {
    let fleet = || FakeWorkspaces::new(vec![ws("ws-old000001", "bob", WsState::Stopped, Some(days_ago(40)))]);
    let store = Arc::new(MemStore::default());
    let r = rig(fleet(), store.clone(), live_policy());
    let s = block_on(r.reaper.run(now())).unwrap();
    assert_eq!((s.terminated, s.at_risk, s.planned_terminations, s.notices_sent), (0, 1, 0, 1));
    assert!(r.api.terminated().is_empty(), "nobody loses a WorkSpace without notice");
    let n = &r.notifier.notices()[0];
    assert_eq!(n.subject, "Your WorkSpace ws-old000001 will be removed on 2025-03-17 unless you sign in");
    assert!(store
        .text("reports/latest.csv")
        .unwrap()
        .contains(",at-risk next run,over-limit-warn-first,,enforce"));

    // A re-run of the same date does not count as the earlier run: still only warned, not re-sent.
    let r = rig(fleet(), store.clone(), live_policy());
    let s = block_on(r.reaper.run(now() + Duration::hours(2))).unwrap();
    assert_eq!((s.terminated, s.notices_sent, s.notices_already_sent), (0, 0, 1));

    // The next week: removed, and told so.
    let r = rig(fleet(), store.clone(), live_policy());
    let s = block_on(r.reaper.run(now() + Duration::days(7))).unwrap();
    assert_eq!(s.terminated, 1);
    assert_eq!(r.notifier.notices()[0].subject, "Your WorkSpace ws-old000001 was removed");

    // A user who signs in after the warning voids it: over the limit again later, warned again.
    let back = || {
        FakeWorkspaces::new(vec![ws(
            "ws-back00001",
            "cy",
            WsState::Available,
            Some(days_ago(1) + Duration::days(20)),
        )])
    };
    let store = warned_store(&["ws-back00001"]);
    let r = rig(back(), store.clone(), live_policy());
    let s = block_on(r.reaper.run(now() + Duration::days(35))).unwrap();
    assert_eq!((s.terminated, s.at_risk), (0, 1), "the warning of a week ago predates the last sign-in");
}

#[test]
fn addresses_differing_only_in_case_get_one_notice() {
    let fleet = vec![
        tagged(
            ws("ws-risk00001", "ann", WsState::Available, Some(days_ago(10))),
            "reaper:email",
            " Ann.Lee@County.GOV ",
        ),
        ws("ws-risk00002", "ANN.LEE", WsState::Stopped, Some(days_ago(12))),
    ];
    let r = rig(FakeWorkspaces::new(fleet), Arc::new(MemStore::default()), live_policy());
    let s = block_on(r.reaper.run(now())).unwrap();
    assert_eq!((s.at_risk, s.notices_sent), (2, 1));
    let n = r.notifier.notices();
    assert_eq!(n[0].email, "ann.lee@county.gov");
    assert_eq!(n[0].workspace_ids.len(), 2);
}

#[test]
fn a_switch_to_enforce_alerts_on_call_before_anything_is_terminated() {
    use workspace_reaper::notice::UserNotice;
    use workspace_reaper::notify::{Alert, Notifier, NotifyError};

    /// Notes how many WorkSpaces were already terminated when each alert went out.
    struct Watch(Arc<FakeWorkspaces>, std::sync::Mutex<Vec<(String, usize)>>);
    #[async_trait::async_trait]
    impl Notifier for Watch {
        async fn notify_user(&self, _: &UserNotice) -> Result<(), NotifyError> {
            Ok(())
        }
        async fn alert(&self, a: &Alert) -> Result<(), NotifyError> {
            self.1.lock().unwrap().push((a.subject.clone(), self.0.terminated().len()));
            Ok(())
        }
    }
    let store = warned_store(&["ws-old000001"]);
    let mut last_week: Snapshot = serde_json::from_str(&store.text(LAST_WEEK).unwrap()).unwrap();
    last_week.dry_run = true;
    store.0.lock().unwrap().insert(LAST_WEEK.into(), serde_json::to_vec(&last_week).unwrap());
    let mut r = rig(
        FakeWorkspaces::new(vec![ws("ws-old000001", "ann", WsState::Available, Some(days_ago(30)))]),
        store,
        live_policy(),
    );
    let watch = Arc::new(Watch(r.api.clone(), std::sync::Mutex::new(Vec::new())));
    r.reaper.notifier = watch.clone();
    let s = block_on(r.reaper.run(now())).unwrap();
    assert_eq!((s.mode_changed, s.terminated), (true, 1));
    let seen = watch.1.lock().unwrap().clone();
    assert_eq!(seen, vec![("WorkSpaces reaper: mode changed from dry-run to enforce".to_string(), 0)]);
}

#[test]
fn an_address_per_directory_or_none_is_reported() {
    let mut policy = live_policy();
    policy.notify.directory_domains.insert(DIR.into(), "health.county.gov".into());
    let mut odd = ws("ws-risk00002", "no such user", WsState::Available, Some(days_ago(9)));
    odd.ws.directory = "d-abcdefabcd".into();
    policy.directories = vec!["*".into()];
    // Warned last week (at an address it no longer has): removed now, but cannot be told.
    let gone = ws("ws-gone00001", "x,y", WsState::Available, Some(days_ago(30)));
    let fleet = vec![ws("ws-risk00001", "ann", WsState::Available, Some(days_ago(10))), odd, gone];
    let store = warned_store(&["ws-gone00001"]);
    let r = rig(FakeWorkspaces::new(fleet), store.clone(), policy);
    let s = block_on(r.reaper.run(now())).unwrap();
    assert_eq!((s.notices_sent, s.notice_failures), (1, 2));
    assert_eq!(s.unnotified, vec!["ws-gone00001", "ws-risk00002"]);
    assert_eq!(r.notifier.notices()[0].email, "ann@health.county.gov");
    let csv = store.text("reports/latest.csv").unwrap();
    assert!(csv.contains("passes-limit-before-next-run,notice not sent: no usable email address"), "{csv}");
    assert!(
        csv.contains(",terminated,inactive-over-limit,,enforce"),
        "the terminated row stays clean: {csv}"
    );
    let alerts = r.notifier.alerts();
    assert!(
        alerts
            .iter()
            .any(|a| a.body.contains("2 notices failed (users not told about: ws-gone00001, ws-risk00002)")),
        "{alerts:?}"
    );
}

#[test]
fn the_mode_is_in_every_report_and_a_change_alerts_on_call() {
    let store = Arc::new(MemStore::default());
    let fleet =
        || FakeWorkspaces::new(vec![ws("ws-old000001", "ann", WsState::Available, Some(days_ago(30)))]);
    let mut dry = live_policy();
    dry.dry_run = true;
    // Week 1, dry run: no earlier run, so no mode change.
    let r1 = rig(fleet(), store.clone(), dry.clone());
    let s1 = block_on(r1.reaper.run(now() - Duration::days(7))).unwrap();
    assert_eq!((s1.mode, s1.previous_mode, s1.mode_changed), (Mode::DryRun, None, false));
    assert!(r1.notifier.alerts().is_empty());
    let csv = store.text("reports/2025-03-03/workspaces.csv").unwrap();
    assert_eq!(csv.lines().next().unwrap().split(',').next_back(), Some("mode"));
    assert!(csv.lines().nth(1).unwrap().ends_with(",dry-run"), "{csv}");
    assert_eq!(HEADER.len(), 10);

    // Week 2, enforce: on-call hears of the switch; the dry run warned nobody, so ann is warned now.
    let r2 = rig(fleet(), store.clone(), live_policy());
    let s2 = block_on(r2.reaper.run(now())).unwrap();
    assert_eq!((s2.mode, s2.previous_mode, s2.mode_changed), (Mode::Enforce, Some(Mode::DryRun), true));
    let alerts = r2.notifier.alerts();
    let a = alerts.iter().find(|a| a.subject.contains("mode changed")).unwrap();
    assert_eq!(a.subject, "WorkSpaces reaper: mode changed from dry-run to enforce");
    assert!(a.body.contains("the previous run (history/2025-03-03.json) ran in dry-run mode"), "{}", a.body);
    assert!(store
        .text("reports/2025-03-10/workspaces.csv")
        .unwrap()
        .contains(",at-risk next run,over-limit-warn-first,,enforce"));
    let snap: Snapshot = serde_json::from_str(&store.text("history/2025-03-10.json").unwrap()).unwrap();
    assert_eq!(snap.mode(), Mode::Enforce);

    // A re-run of the same date compares with the week before, not with itself; same mode: quiet.
    let r3 = rig(fleet(), store.clone(), live_policy());
    let s3 = block_on(r3.reaper.run(now() + Duration::hours(1))).unwrap();
    assert_eq!(s3.previous_mode, Some(Mode::DryRun), "history/2025-03-10.json is this date's own");
    let r4 = rig(fleet(), store.clone(), live_policy());
    let s4 = block_on(r4.reaper.run(now() + Duration::days(7))).unwrap();
    assert_eq!((s4.previous_mode, s4.mode_changed, s4.terminated), (Some(Mode::Enforce), false, 1));
    assert!(!r4.notifier.alerts().iter().any(|a| a.subject.contains("mode changed")));
}

#[test]
fn the_cap_alert_names_the_limit_and_the_numbers() {
    let fleet: Vec<_> =
        (0..10).map(|i| ws(&format!("ws-old{i:07}"), "u", WsState::Available, Some(days_ago(30)))).collect();
    let mut policy = live_policy();
    policy.cap.max_terminations = 4;
    policy.cap.max_fleet_share = 0.3;
    let ids: Vec<String> = (0..10).map(|i| format!("ws-old{i:07}")).collect();
    let store = warned_store(&ids.iter().map(String::as_str).collect::<Vec<_>>());
    let r = rig(FakeWorkspaces::new(fleet), store, policy);
    let s = block_on(r.reaper.run(now())).unwrap();
    assert!(s.cap_tripped);
    let a = r.notifier.alerts().into_iter().find(|a| a.subject.contains("cap exceeded")).unwrap();
    assert!(
        a.body.contains(
            "Limit hit: cap.max_terminations = 4 (planned 10, 6 over); cap.max_fleet_share = 0.3 \
             (planned 10 of 10 WorkSpaces = 100.0%, at most 3 allowed)."
        ),
        "{}",
        a.body
    );
}

#[test]
fn a_last_connection_in_the_future_is_flagged_not_trusted_further() {
    let fleet = vec![ws("ws-skew00001", "ann", WsState::Available, Some(now() + Duration::hours(30)))];
    let store = Arc::new(MemStore::default());
    let r = rig(FakeWorkspaces::new(fleet), store.clone(), live_policy());
    let s = block_on(r.reaper.run(now())).unwrap();
    assert_eq!((s.kept, s.clock_skew), (1, 1));
    let csv = store.text("reports/latest.csv").unwrap();
    assert!(
        csv.contains(
            "keep,used-within-limit,clock skew: last connection 2025-03-11T12:00:00Z is after the run time \
             (counted as used now),enforce"
        ),
        "{csv}"
    );
}

#[test]
fn the_activity_chart_and_figures_lie_beside_the_report() {
    let store = warned_store(&["ws-old000001"]);
    let fleet = || {
        FakeWorkspaces::new(vec![
            ws("ws-old000001", "ann", WsState::Available, Some(days_ago(30))),
            ws("ws-new000001", "bob", WsState::Available, Some(days_ago(2))),
        ])
    };
    let r = rig(fleet(), store.clone(), live_policy());
    let s = block_on(r.reaper.run(now())).unwrap();
    assert_eq!(s.activity_key, "reports/2025-03-10/activity.svg");
    let svg = store.text("reports/2025-03-10/activity.svg").unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("terminated to date (1)"), "{svg}");
    assert_eq!(store.text("reports/latest-activity.svg").unwrap(), svg);
    let csv = store.text("reports/2025-03-10/activity.csv").unwrap();
    // 2 WorkSpaces, 1 connected within 7 and 14 days, 2 within 30, 1 terminated at the AUTO_STOP
    // price (25.00).
    assert!(csv.contains("2025-03-10T06:00:00Z,enforce,all,,2,1,1,2,0,0,1,1,25.00,25.00"), "{csv}");
    assert!(csv.contains(",enforce,directory,d-0123456789,2,"), "{csv}");
    assert!(csv.contains(",enforce,running-mode,AUTO_STOP,2,"), "{csv}");
    assert!(csv.contains(",enforce,bundle,wsb-standard,2,"), "{csv}");
}
