//! The decision: pure functions from what was observed, the policy and the run time to a verdict.
//! No I/O here, so every rule can be property-tested.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::policy::Policy;

/// WorkSpace states, as the WorkSpaces API names them. Only `Available` and `Stopped` may be
/// terminated; everything else (including states this code does not know) is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WsState {
    Available,
    Stopped,
    Other(String),
}

impl WsState {
    pub fn parse(s: &str) -> Self {
        match s {
            "AVAILABLE" => Self::Available,
            "STOPPED" => Self::Stopped,
            other => Self::Other(other.to_string()),
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            Self::Available => "AVAILABLE",
            Self::Stopped => "STOPPED",
            Self::Other(s) => s,
        }
    }
    /// True for the only states a termination may start from.
    pub fn terminable(&self) -> bool {
        matches!(self, Self::Available | Self::Stopped)
    }
}

/// One WorkSpace as DescribeWorkspaces (+ DescribeTags) reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Workspace {
    pub id: String,
    pub user: String,
    pub directory: String,
    pub state: WsState,
    /// `None` when the tag lookup failed: the exemption cannot be ruled out, so the WorkSpace is kept.
    pub tags: Option<BTreeMap<String, String>>,
}

/// The outcome of DescribeWorkspacesConnectionStatus for one WorkSpace.
#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    /// Last known user connection.
    Last(DateTime<Utc>),
    /// The user never connected.
    Never,
    /// The lookup failed or the WorkSpace was missing from the answer.
    Unknown(String),
}

/// Everything the decision needs about one WorkSpace.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub ws: Workspace,
    pub connection: Connection,
    /// First time an earlier run saw this WorkSpace (from `history/`); `None` on first sighting.
    pub first_seen: Option<DateTime<Utc>>,
}

/// The three decisions of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    Terminate,
    AtRisk,
    Keep,
}

/// The rule that produced a decision (shown in the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    Exempt,
    TagsUnavailable,
    StatusUnavailable,
    ProtectedState,
    FirstSighting,
    Recent,
    NeverConnectedRecent,
    WillPassLimit,
    NeverConnectedWillPassLimit,
    InactiveOverLimit,
    NeverConnectedOverLimit,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exempt => "exempt-tag",
            Self::TagsUnavailable => "tags-unavailable",
            Self::StatusUnavailable => "status-unavailable",
            Self::ProtectedState => "protected-state",
            Self::FirstSighting => "never-connected-first-sighting",
            Self::Recent => "used-within-limit",
            Self::NeverConnectedRecent => "never-connected-within-limit",
            Self::WillPassLimit => "passes-limit-before-next-run",
            Self::NeverConnectedWillPassLimit => "never-connected-passes-limit-before-next-run",
            Self::InactiveOverLimit => "inactive-over-limit",
            Self::NeverConnectedOverLimit => "never-connected-over-limit",
        }
    }
}

/// A decision with its reason and the inactivity it was based on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    pub rule: Rule,
    /// Whole days since the last connection (or first sighting, when never connected).
    pub days_inactive: Option<i64>,
}

/// Decides one WorkSpace. Order matters: every reason to keep is checked before age.
pub fn decide(o: &Observed, policy: &Policy, now: DateTime<Utc>) -> Verdict {
    let keep = |rule, days| Verdict { decision: Decision::Keep, rule, days_inactive: days };
    let (since, never) = match &o.connection {
        Connection::Last(t) => (Some(*t), false),
        Connection::Never => (o.first_seen, true),
        Connection::Unknown(_) => (None, false),
    };
    let days = since.map(|t| (now - t).num_days().max(0));

    let Some(tags) = &o.ws.tags else { return keep(Rule::TagsUnavailable, days) };
    if tags.contains_key(&policy.exempt_tag_key) {
        return keep(Rule::Exempt, days);
    }
    if let Connection::Unknown(_) = o.connection {
        return keep(Rule::StatusUnavailable, None);
    }
    let Some(since) = since else { return keep(Rule::FirstSighting, Some(0)) };

    let limit = Duration::days(i64::from(policy.inactivity_limit_days));
    let interval = Duration::days(i64::from(policy.schedule_interval_days));
    let idle = now - since;
    let (decision, rule) = if idle > limit {
        (Decision::Terminate, if never { Rule::NeverConnectedOverLimit } else { Rule::InactiveOverLimit })
    } else if idle + interval > limit {
        (Decision::AtRisk, if never { Rule::NeverConnectedWillPassLimit } else { Rule::WillPassLimit })
    } else {
        (Decision::Keep, if never { Rule::NeverConnectedRecent } else { Rule::Recent })
    };
    // State is checked after age so that an old WorkSpace in a protected state is visible as such.
    if decision == Decision::Terminate && !o.ws.state.terminable() {
        return keep(Rule::ProtectedState, days);
    }
    Verdict { decision, rule, days_inactive: days }
}

/// The plan for a whole fleet: a verdict per WorkSpace and whether the cap stopped terminations.
#[derive(Debug, Clone)]
pub struct Plan {
    pub items: Vec<(Observed, Verdict)>,
    /// Terminations the rules asked for.
    pub planned_terminations: usize,
    /// True when `planned_terminations` exceeded the cap: nothing is terminated this run.
    pub cap_tripped: bool,
}

impl Plan {
    /// Ids the run will try to terminate (empty when the cap tripped).
    pub fn to_terminate(&self) -> Vec<&str> {
        if self.cap_tripped {
            return Vec::new();
        }
        self.items
            .iter()
            .filter(|(_, v)| v.decision == Decision::Terminate)
            .map(|(o, _)| o.ws.id.as_str())
            .collect()
    }
}

/// Decides every WorkSpace and applies the per-run cap.
pub fn plan(fleet: Vec<Observed>, policy: &Policy, now: DateTime<Utc>) -> Plan {
    let items: Vec<_> = fleet
        .into_iter()
        .map(|o| {
            let v = decide(&o, policy, now);
            (o, v)
        })
        .collect();
    let planned = items.iter().filter(|(_, v)| v.decision == Decision::Terminate).count();
    let cap_tripped = !policy.cap.allows(planned, items.len());
    Plan { items, planned_terminations: planned, cap_tripped }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::embedded().unwrap()
    }
    fn now() -> DateTime<Utc> {
        "2025-03-10T06:00:00Z".parse().unwrap()
    }
    fn obs(state: WsState, conn: Connection, first_seen: Option<DateTime<Utc>>) -> Observed {
        Observed {
            ws: Workspace {
                id: "ws-1".into(),
                user: "jdoe".into(),
                directory: "d-0123456789".into(),
                state,
                tags: Some(BTreeMap::new()),
            },
            connection: conn,
            first_seen,
        }
    }
    fn days_ago(d: i64) -> DateTime<Utc> {
        now() - Duration::days(d)
    }

    #[test]
    fn limits_are_strict_and_at_risk_looks_one_interval_ahead() {
        let p = policy();
        let v = |d: i64| decide(&obs(WsState::Available, Connection::Last(days_ago(d)), None), &p, now());
        assert_eq!(v(14).decision, Decision::AtRisk, "exactly 14 days is not more than 14");
        assert_eq!(v(15).decision, Decision::Terminate);
        assert_eq!(v(15).rule, Rule::InactiveOverLimit);
        assert_eq!(v(15).days_inactive, Some(15));
        assert_eq!(v(8).decision, Decision::AtRisk);
        assert_eq!(v(7).decision, Decision::Keep, "7 + 7 is not more than 14");
        assert_eq!(v(0).decision, Decision::Keep);
    }

    #[test]
    fn never_connected_is_judged_from_first_sighting() {
        let p = policy();
        let first = decide(&obs(WsState::Available, Connection::Never, None), &p, now());
        assert_eq!((first.decision, first.rule), (Decision::Keep, Rule::FirstSighting));
        let old = decide(&obs(WsState::Stopped, Connection::Never, Some(days_ago(30))), &p, now());
        assert_eq!((old.decision, old.rule), (Decision::Terminate, Rule::NeverConnectedOverLimit));
        let young = decide(&obs(WsState::Stopped, Connection::Never, Some(days_ago(3))), &p, now());
        assert_eq!(young.decision, Decision::Keep);
    }

    #[test]
    fn reasons_to_keep_win_over_age() {
        let p = policy();
        let mut o = obs(WsState::Other("MAINTENANCE".into()), Connection::Last(days_ago(90)), None);
        assert_eq!(decide(&o, &p, now()).rule, Rule::ProtectedState);
        o.ws.state = WsState::Available;
        o.ws.tags = Some(BTreeMap::from([(p.exempt_tag_key.clone(), "ceo".into())]));
        assert_eq!(decide(&o, &p, now()).rule, Rule::Exempt);
        o.ws.tags = None;
        assert_eq!(decide(&o, &p, now()).rule, Rule::TagsUnavailable);
        o.ws.tags = Some(BTreeMap::new());
        o.connection = Connection::Unknown("throttled".into());
        assert_eq!(decide(&o, &p, now()).rule, Rule::StatusUnavailable);
    }
}
