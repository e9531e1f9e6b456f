//! The decision: pure functions from what was observed, the policy and the run time to a verdict.
//! No I/O here, so every rule can be property-tested.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::fleet::{Connection, Observed};
use crate::policy::Policy;

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
    /// Over the limit, but its user was not warned of a removal date that has now come.
    WarnFirst,
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
            Self::WarnFirst => "over-limit-warn-first",
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
    /// Seconds since the same moment (0 when it lies in the future).
    pub idle_seconds: Option<i64>,
    /// The last connection lies after the run time (clock skew): counted as used just now.
    pub clock_skew: bool,
}

/// Decides one WorkSpace. Order matters: every reason to keep is checked before age.
pub fn decide(o: &Observed, policy: &Policy, now: DateTime<Utc>) -> Verdict {
    let (since, never) = match &o.connection {
        Connection::Last(t) => (Some(*t), false),
        Connection::Never => (o.first_seen, true),
        Connection::Unknown(_) => (None, false),
    };
    let clock_skew = matches!(o.connection, Connection::Last(t) if t > now);
    let idle_seconds = since.map(|t| (now - t).num_seconds().max(0));
    let keep = |rule, days: Option<i64>| Verdict {
        decision: Decision::Keep,
        rule,
        days_inactive: days,
        idle_seconds: days.and(idle_seconds),
        clock_skew,
    };
    let days = since.map(|t| (now - t).num_days().max(0));

    let Some(tags) = &o.ws.tags else { return keep(Rule::TagsUnavailable, days) };
    if policy.is_exempt(tags) {
        return keep(Rule::Exempt, days);
    }
    if let Connection::Unknown(_) = o.connection {
        return keep(Rule::StatusUnavailable, None);
    }
    let Some(since) = since else {
        return Verdict { idle_seconds: Some(0), ..keep(Rule::FirstSighting, Some(0)) };
    };

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
    // Nobody loses a WorkSpace without notice: an earlier run must have warned its user, during
    // this idle spell, of a removal date that has now come. Otherwise warn now, remove next run.
    if decision == Decision::Terminate && !o.warning.is_some_and(|w| w.allows_removal(since, now)) {
        return Verdict {
            decision: Decision::AtRisk,
            rule: Rule::WarnFirst,
            days_inactive: days,
            idle_seconds,
            clock_skew,
        };
    }
    Verdict { decision, rule, days_inactive: days, idle_seconds, clock_skew }
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
    use crate::fleet::{Warning, Workspace, WsState};
    use std::collections::BTreeMap;

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
                bundle: String::new(),
                running_mode: String::new(),
                tags: Some(BTreeMap::new()),
            },
            connection: conn,
            first_seen,
            warning: Some(week_old_warning()),
        }
    }
    /// The notice of the run a week ago, naming this run's date.
    fn week_old_warning() -> Warning {
        Warning { sent_at: days_ago(7), removal_on: now().date_naive() }
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

    #[test]
    fn idle_seconds_and_clock_skew() {
        let p = policy();
        let v = decide(&obs(WsState::Available, Connection::Last(days_ago(3)), None), &p, now());
        assert_eq!((v.idle_seconds, v.clock_skew), (Some(3 * 86_400), false));
        let ahead = now() + Duration::hours(5);
        let v = decide(&obs(WsState::Available, Connection::Last(ahead), None), &p, now());
        assert_eq!((v.decision, v.rule), (Decision::Keep, Rule::Recent), "a future connection counts as now");
        assert_eq!((v.days_inactive, v.idle_seconds, v.clock_skew), (Some(0), Some(0), true));
        let v = decide(&obs(WsState::Available, Connection::Unknown("x".into()), None), &p, now());
        assert_eq!((v.idle_seconds, v.clock_skew), (None, false));
    }

    #[test]
    fn over_the_limit_is_removed_only_after_a_warning_naming_a_date_that_has_come() {
        let p = policy();
        let mut o = obs(WsState::Available, Connection::Last(days_ago(30)), None);
        let v = |o: &Observed| decide(o, &p, now());
        assert_eq!((v(&o).decision, v(&o).rule), (Decision::Terminate, Rule::InactiveOverLimit));
        o.warning = None;
        assert_eq!((v(&o).decision, v(&o).rule), (Decision::AtRisk, Rule::WarnFirst), "never warned");
        assert_eq!(v(&o).days_inactive, Some(30));
        o.warning = Some(Warning { sent_at: days_ago(40), removal_on: days_ago(33).date_naive() });
        assert_eq!(v(&o).rule, Rule::WarnFirst, "warned before the last sign-in: void");
        o.warning =
            Some(Warning { sent_at: days_ago(2), removal_on: (now() + Duration::days(5)).date_naive() });
        assert_eq!(v(&o).rule, Rule::WarnFirst, "the date it named has not come");
        o.warning = Some(Warning { sent_at: now(), removal_on: now().date_naive() });
        assert_eq!(v(&o).rule, Rule::WarnFirst, "a warning of this very run does not count");
        // The named date has come even if the run is a few hours early that day.
        o.warning = Some(Warning { sent_at: days_ago(7), removal_on: now().date_naive() });
        let early = now() - Duration::hours(5);
        assert_eq!(decide(&o, &p, early).decision, Decision::Terminate);
        // Never connected: the idle spell starts at the first sighting.
        let mut n = obs(WsState::Stopped, Connection::Never, Some(days_ago(30)));
        assert_eq!(v(&n).rule, Rule::NeverConnectedOverLimit);
        n.warning = None;
        assert_eq!(v(&n).rule, Rule::WarnFirst);
        // A protected state still wins: kept, not warned.
        let mut m = obs(WsState::Other("MAINTENANCE".into()), Connection::Last(days_ago(30)), None);
        m.warning = None;
        assert_eq!(v(&m).rule, Rule::ProtectedState);
    }
}
