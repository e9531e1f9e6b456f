//! A run that partly fails: IAM refusing one WorkSpace of a TerminateWorkspaces batch, and a
//! same-day retry after the first attempt terminated WorkSpaces and then failed. In-memory fakes
//! (the fake refuses as IAM does: the whole call, AccessDenied); the retry through S3 and SES is
//! in `tests/aws_adapters.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use common::*;
use workspace_reaper::report::Snapshot;
use workspace_reaper::store::{ObjectStore, StoreError};
use workspace_reaper::{FakeWorkspaces, WsState};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
}

#[test]
fn one_workspace_refused_by_iam_does_not_fail_its_batch() {
    let ids = ["ws-old000001", "ws-old000002", "ws-old000003"];
    let fleet = ids.iter().map(|id| ws(id, "u", WsState::Available, Some(days_ago(30)))).collect::<Vec<_>>();
    let mut api = FakeWorkspaces::new(fleet);
    api.terminate_denied = BTreeSet::from(["ws-old000002".to_string()]);
    let store = warned_store(&ids);
    let r = rig(api, store.clone(), live_policy());
    let s = block_on(r.reaper.run(now())).unwrap();
    assert_eq!((s.terminated, s.terminate_failed), (2, 1));
    assert_eq!(r.api.terminated(), vec!["ws-old000001", "ws-old000003"]);
    assert_eq!(FakeWorkspaces::count(&r.api.calls.terminate), 4, "the batch, then one call each");
    let csv = store.text("reports/latest.csv").unwrap();
    let refused = csv.lines().find(|l| l.starts_with("ws-old000002,")).unwrap();
    assert!(
        refused.contains(",terminate-failed,inactive-over-limit,terminate call failed: access denied: AccessDeniedException"),
        "{refused}"
    );
    assert!(
        r.notifier.alerts().iter().any(|a| a.body.contains("1 terminations failed")),
        "{:?}",
        r.notifier.alerts()
    );
}

/// An in-memory bucket whose first write of `key` fails.
struct FailOnce {
    inner: Arc<MemStore>,
    key: &'static str,
    left: AtomicUsize,
}

#[async_trait]
impl ObjectStore for FailOnce {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), StoreError> {
        if key == self.key
            && self.left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        {
            return Err(StoreError { op: "put", key: key.into(), message: "injected".into() });
        }
        self.inner.put(key, body, content_type).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
}

#[test]
fn a_same_day_retry_merges_the_failed_attempts_terminations() {
    let mem = warned_store(&["ws-old000001"]);
    // The history is written, then the activity chart fails: Lambda retries the whole run.
    let store = Arc::new(FailOnce {
        inner: mem.clone(),
        key: "reports/2025-03-10/activity.svg",
        left: AtomicUsize::new(1),
    });
    let api = Arc::new(FakeWorkspaces::new(vec![
        ws("ws-old000001", "bob", WsState::Stopped, Some(days_ago(30))),
        ws("ws-fine00001", "cat", WsState::Available, Some(days_ago(1))),
    ]));
    let mut r = rig(FakeWorkspaces::default(), store.clone(), live_policy());
    r.reaper.api = api.clone();
    let err = block_on(r.reaper.run(now())).unwrap_err();
    assert_eq!(err.kind(), "ReaperObjectStore");
    assert_eq!(api.terminated(), vec!["ws-old000001"]);
    assert_eq!(r.notifier.notices().len(), 1, "bob is told");

    let s = block_on(r.reaper.run(now())).unwrap();
    assert_eq!((s.terminated, s.kept, s.notices_sent, s.notices_already_sent), (1, 1, 0, 0));
    assert_eq!(r.notifier.notices().len(), 1, "bob is not told twice (he is no longer in the fleet)");
    let snap: Snapshot = serde_json::from_str(&mem.text("history/2025-03-10.json").unwrap()).unwrap();
    let ids: Vec<&str> = snap.workspaces.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, vec!["ws-fine00001", "ws-old000001"], "the termination is not lost");
    let csv = mem.text("reports/latest.csv").unwrap();
    assert!(
        csv.contains(",terminated,inactive-over-limit,terminated by an earlier attempt of this run,enforce"),
        "{csv}"
    );
    let activity = mem.text("reports/2025-03-10/activity.csv").unwrap();
    assert!(activity.contains("2025-03-10T06:00:00Z,enforce,all,,2,1,1,2,0,0,1,1,25.00,25.00"), "{activity}");
}
