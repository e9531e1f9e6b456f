//! Test helpers shared by the integration tests: fleets, an in-memory object store, a reaper.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use workspace_reaper::notify::RecordingNotifier;
use workspace_reaper::report::{Outcome, Snapshot, SnapshotEntry};
use workspace_reaper::store::{ObjectStore, StoreError};
use workspace_reaper::{Backoff, FakeWorkspace, FakeWorkspaces, Policy, Reaper, Warning, Workspace, WsState};

pub const DIR: &str = "d-0123456789";

/// A name no other test run on the same moto server uses.
pub fn unique(prefix: &str) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

pub fn now() -> DateTime<Utc> {
    "2025-03-10T06:00:00Z".parse().unwrap()
}

pub fn days_ago(d: i64) -> DateTime<Utc> {
    now() - Duration::days(d)
}

/// The shipped policy, live (not dry run).
pub fn live_policy() -> Policy {
    let mut p = Policy::embedded().unwrap();
    p.dry_run = false;
    p.cap.max_terminations = 10_000;
    p.cap.max_fleet_share = 1.0;
    p
}

pub fn ws(id: &str, user: &str, state: WsState, last: Option<DateTime<Utc>>) -> FakeWorkspace {
    FakeWorkspace {
        ws: Workspace {
            id: id.into(),
            user: user.into(),
            directory: DIR.into(),
            state,
            bundle: "wsb-standard".into(),
            running_mode: "AUTO_STOP".into(),
            tags: Some(BTreeMap::new()),
        },
        last_connection: last,
    }
}

pub fn tagged(mut w: FakeWorkspace, k: &str, v: &str) -> FakeWorkspace {
    w.ws.tags.get_or_insert_with(BTreeMap::new).insert(k.into(), v.into());
    w
}

/// The key of the run a week before [`now`].
pub const LAST_WEEK: &str = "history/2025-03-03.json";

/// The history of an enforcing run a week before [`now`] that saw `ids` and warned their users
/// of removal at [`now`]'s run: so those over the limit may be terminated now.
pub fn warned_last_week(ids: &[&str]) -> Vec<u8> {
    warned_before(ids, now())
}

/// The history of an enforcing run a week before `run` that warned the users of `ids` of
/// removal at `run`.
pub fn warned_before(ids: &[&str], run: DateTime<Utc>) -> Vec<u8> {
    let at = run - Duration::days(7);
    let workspaces = ids
        .iter()
        .map(|id| SnapshotEntry {
            id: id.to_string(),
            user: String::new(),
            directory: DIR.into(),
            state: "AVAILABLE".into(),
            last_connection: None,
            first_seen: at,
            decision: Outcome::AtRisk,
            rule: "passes-limit-before-next-run".into(),
            bundle: String::new(),
            running_mode: String::new(),
            connection: None,
            warning: Some(Warning { sent_at: at, removal_on: run.date_naive() }),
        })
        .collect();
    serde_json::to_vec(&Snapshot { run_at: at, dry_run: false, cap_tripped: false, workspaces }).unwrap()
}

/// Puts [`warned_last_week`] into `store`.
pub async fn seed_warned(store: &dyn ObjectStore, ids: &[&str]) {
    store.put(LAST_WEEK, warned_last_week(ids), "application/json").await.unwrap();
}

/// A [`MemStore`] holding [`warned_last_week`] for `ids`.
pub fn warned_store(ids: &[&str]) -> Arc<MemStore> {
    let s = MemStore::default();
    s.0.lock().unwrap().insert(LAST_WEEK.into(), warned_last_week(ids));
    Arc::new(s)
}

/// Objects in a map.
#[derive(Debug, Default)]
pub struct MemStore(pub Mutex<BTreeMap<String, Vec<u8>>>);

impl MemStore {
    pub fn text(&self, key: &str) -> Option<String> {
        self.0.lock().unwrap().get(key).map(|b| String::from_utf8(b.clone()).unwrap())
    }
}

#[async_trait]
impl ObjectStore for MemStore {
    async fn put(&self, key: &str, body: Vec<u8>, _ct: &str) -> Result<(), StoreError> {
        self.0.lock().unwrap().insert(key.into(), body);
        Ok(())
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.0.lock().unwrap().keys().filter(|k| k.starts_with(prefix)).cloned().collect())
    }
}

pub struct Rig {
    pub api: Arc<FakeWorkspaces>,
    pub store: Arc<dyn ObjectStore>,
    pub notifier: Arc<RecordingNotifier>,
    pub reaper: Reaper,
}

pub fn rig(api: FakeWorkspaces, store: Arc<dyn ObjectStore>, policy: Policy) -> Rig {
    let api = Arc::new(api);
    let notifier = Arc::new(RecordingNotifier::default());
    let reaper = Reaper {
        api: api.clone(),
        store: store.clone(),
        notifier: notifier.clone(),
        policy,
        backoff: Backoff::fast(),
        wiki: None,
    };
    Rig { api, store, notifier, reaper }
}
