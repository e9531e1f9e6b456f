//! The record of the notices a run date has sent, so that a retried run (Lambda retries a
//! failed invocation with the same event) does not email anyone twice: one small object per
//! address, `notices/<date>/<hash of the address>.json`, written right after SES accepted that
//! address's notice, read once at the start of a run. It also tells the retry which warnings
//! the failed attempt gave, so the history records them.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ReaperError;
use crate::fleet::Warning;
use crate::notice::NoticeKind;
use crate::report::NOTICES_PREFIX;
use crate::store::{ObjectStore, StoreError};

/// One WorkSpace named in a sent notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentItem {
    pub workspace_id: String,
    /// `at-risk` or `terminated`.
    pub kind: String,
    /// For `at-risk`: the removal date the notice named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removal_on: Option<NaiveDate>,
    pub sent_at: DateTime<Utc>,
}

impl SentItem {
    pub fn new(workspace_id: &str, kind: NoticeKind, sent_at: DateTime<Utc>) -> Self {
        let (kind, removal_on) = match kind {
            NoticeKind::AtRisk { removal_run } => ("at-risk", Some(removal_run.date_naive())),
            NoticeKind::Terminated => ("terminated", None),
        };
        Self { workspace_id: workspace_id.into(), kind: kind.into(), removal_on, sent_at }
    }

    /// True when this item already told about `workspace_id` the same kind of news.
    pub fn covers(&self, workspace_id: &str, kind: NoticeKind) -> bool {
        let same = matches!(
            (self.kind.as_str(), kind),
            ("at-risk", NoticeKind::AtRisk { .. }) | ("terminated", NoticeKind::Terminated)
        );
        same && self.workspace_id == workspace_id
    }

    /// The warning an at-risk item gave.
    pub fn warning(&self) -> Option<Warning> {
        Some(Warning { sent_at: self.sent_at, removal_on: self.removal_on? })
    }
}

/// Everything one address was sent on one run date.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentNotices {
    pub email: String,
    pub items: Vec<SentItem>,
}

/// FNV-1a, 64 bit: a stable, dependency-free name for an address (no address in object keys,
/// which appear in access logs).
fn fnv1a64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The object holding what `email` was sent on `date`.
pub fn key(date: &str, email: &str) -> String {
    format!("{NOTICES_PREFIX}{date}/{:016x}.json", fnv1a64(email))
}

/// What every address was sent on `date`, by address. A store failure fails the run before it
/// acts (better no run than duplicate notices).
pub async fn load(store: &dyn ObjectStore, date: &str) -> Result<BTreeMap<String, SentNotices>, ReaperError> {
    let mut out = BTreeMap::new();
    for key in store.list(&format!("{NOTICES_PREFIX}{date}/")).await? {
        let Some(bytes) = store.get(&key).await? else { continue };
        let sent: SentNotices = serde_json::from_slice(&bytes)
            .map_err(|e| ReaperError::History(format!("cannot read {key}: {e}")))?;
        out.insert(sent.email.clone(), sent);
    }
    Ok(out)
}

/// Records what `sent.email` has been sent on `date` (the whole list, replacing the object).
pub async fn record(store: &dyn ObjectStore, date: &str, sent: &SentNotices) -> Result<(), StoreError> {
    let body = serde_json::to_vec(sent).map_err(|e| StoreError {
        op: "put",
        key: key(date, &sent.email),
        message: e.to_string(),
    })?;
    store.put(&key(date, &sent.email), body, "application/json").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_name_no_address() {
        assert_eq!(fnv1a64(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64("a"), 0xaf63_dc4c_8601_ec8c, "FNV-1a 64 test vector");
        let k = key("2025-03-10", "ann@county.gov");
        assert!(k.starts_with("notices/2025-03-10/") && k.ends_with(".json") && !k.contains("ann"), "{k}");
        assert_ne!(k, key("2025-03-10", "bob@county.gov"));
    }

    #[test]
    fn an_item_covers_the_same_workspace_and_kind_only() {
        let at: DateTime<Utc> = "2025-03-10T06:00:00Z".parse().unwrap_or_default();
        let risk = NoticeKind::AtRisk { removal_run: at + chrono::Duration::days(7) };
        let item = SentItem::new("ws-1", risk, at);
        assert!(item.covers("ws-1", risk));
        assert!(!item.covers("ws-1", NoticeKind::Terminated));
        assert!(!item.covers("ws-2", risk));
        let w = item.warning().unwrap_or_else(|| Warning { sent_at: at, removal_on: at.date_naive() });
        assert_eq!(w.removal_on.to_string(), "2025-03-17");
        assert_eq!(SentItem::new("ws-1", NoticeKind::Terminated, at).warning(), None);
    }
}
