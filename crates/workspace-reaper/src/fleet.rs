//! The fleet as the WorkSpaces API shows it: a WorkSpace, its state, its last connection, and what
//! a run observed about it. Plain data shared by the decision, the ports and the adapters; this
//! module depends on nothing else in the crate.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

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
    /// Bundle id (`wsb-...`); empty when the API did not say.
    pub bundle: String,
    /// `ALWAYS_ON`, `AUTO_STOP`, ...; empty when the API did not say.
    pub running_mode: String,
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
    /// The last notice its user got that named a removal date (from `history/`), if any.
    pub warning: Option<Warning>,
}

/// A notice that told a user their WorkSpace would be removed on a date (kept in `history/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// When the notice was sent (the run time of the run that sent it).
    pub sent_at: DateTime<Utc>,
    /// The removal date the notice named: the date of the next scheduled run.
    pub removal_on: NaiveDate,
}

impl Warning {
    /// True when this warning allows removing, at `now`, a WorkSpace idle since `since` (last
    /// connection, or first sighting when never connected): it was sent by an earlier run after
    /// the idle spell began (a sign-in since then voids it), and the date it named has come.
    pub fn allows_removal(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.sent_at >= since && self.sent_at < now && now.date_naive() >= self.removal_on
    }

    /// False once a sign-in after it was sent voided it (`since` is the start of the current
    /// idle spell, `None` when unknown); a relevant warning is carried to the next snapshot.
    pub fn still_relevant(&self, since: Option<DateTime<Utc>>) -> bool {
        since.is_none_or(|s| self.sent_at >= s)
    }
}
