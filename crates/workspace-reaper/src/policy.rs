//! The reaper policy: loaded from TOML (`config/reaper.toml` by default), overridden from the
//! environment, and validated before any WorkSpace is looked at.

use serde::{Deserialize, Serialize};

use crate::error::ReaperError;

/// The policy file shipped with the function (`config/reaper.toml`).
pub const EMBEDDED_POLICY: &str = include_str!("../../../config/reaper.toml");

/// What the reaper may do and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// A WorkSpace unused for more than this many days is terminated.
    pub inactivity_limit_days: u32,
    /// Days between scheduled runs (used for "at risk before the next run").
    pub schedule_interval_days: u32,
    /// A WorkSpace carrying this tag key is always kept.
    pub exempt_tag_key: String,
    /// Directory ids in scope, or `["*"]` for all.
    pub directories: Vec<String>,
    /// Decide and report only.
    pub dry_run: bool,
    pub cap: Cap,
    pub notify: NotifyPolicy,
}

/// Limit on terminations per run. Over either limit the run terminates nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cap {
    pub max_terminations: usize,
    /// Share of the in-scope fleet, in (0, 1].
    pub max_fleet_share: f64,
}

impl Cap {
    /// True when `planned` terminations out of a fleet of `fleet` stay within the cap.
    pub fn allows(&self, planned: usize, fleet: usize) -> bool {
        if planned == 0 {
            return true;
        }
        if planned > self.max_terminations || fleet == 0 {
            return false;
        }
        // planned / fleet <= share, kept in floating point with a tiny tolerance for exact ratios.
        (planned as f64) <= self.max_fleet_share * (fleet as f64) + 1e-9
    }
}

/// How at-risk users are addressed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyPolicy {
    pub email_tag_key: String,
    pub email_domain: String,
}

impl Policy {
    /// Parses a policy from TOML text; does not validate.
    pub fn from_toml(text: &str) -> Result<Self, ReaperError> {
        toml::from_str(text).map_err(|e| ReaperError::Policy(format!("cannot parse policy: {e}")))
    }

    /// The shipped policy.
    pub fn embedded() -> Result<Self, ReaperError> {
        let p = Self::from_toml(EMBEDDED_POLICY)?;
        p.validate()?;
        Ok(p)
    }

    /// True when every directory is in scope.
    pub fn all_directories(&self) -> bool {
        self.directories.iter().any(|d| d == "*")
    }

    /// Applies `REAPER_*` overrides read through `get` (so tests need not touch the process env).
    pub fn apply_env(&mut self, get: &dyn Fn(&str) -> Option<String>) -> Result<(), ReaperError> {
        if let Some(v) = get("REAPER_DRY_RUN") {
            self.dry_run = parse_bool("REAPER_DRY_RUN", &v)?;
        }
        if let Some(v) = get("REAPER_INACTIVITY_LIMIT_DAYS") {
            self.inactivity_limit_days = parse_num("REAPER_INACTIVITY_LIMIT_DAYS", &v)?;
        }
        if let Some(v) = get("REAPER_SCHEDULE_INTERVAL_DAYS") {
            self.schedule_interval_days = parse_num("REAPER_SCHEDULE_INTERVAL_DAYS", &v)?;
        }
        if let Some(v) = get("REAPER_MAX_TERMINATIONS") {
            self.cap.max_terminations = parse_num("REAPER_MAX_TERMINATIONS", &v)?;
        }
        if let Some(v) = get("REAPER_DIRECTORIES") {
            self.directories = v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        }
        Ok(())
    }

    /// Checks every field; the message names the offending field.
    pub fn validate(&self) -> Result<(), ReaperError> {
        let bad = |m: String| Err(ReaperError::Policy(m));
        if !(1..=365).contains(&self.inactivity_limit_days) {
            return bad(format!(
                "inactivity_limit_days must be between 1 and 365, got {}",
                self.inactivity_limit_days
            ));
        }
        if !(1..=31).contains(&self.schedule_interval_days) {
            return bad(format!(
                "schedule_interval_days must be between 1 and 31, got {}",
                self.schedule_interval_days
            ));
        }
        if self.exempt_tag_key.trim().is_empty() {
            return bad("exempt_tag_key must not be empty".into());
        }
        if self.directories.is_empty() {
            return bad("directories must list at least one directory id, or \"*\"".into());
        }
        for d in &self.directories {
            if d != "*" && !is_directory_id(d) {
                return bad(format!("directories: {d:?} is not a directory id (d- and 10 hex digits)"));
            }
        }
        if !(self.cap.max_fleet_share > 0.0 && self.cap.max_fleet_share <= 1.0) {
            return bad(format!("cap.max_fleet_share must be in (0, 1], got {}", self.cap.max_fleet_share));
        }
        if self.notify.email_tag_key.trim().is_empty() {
            return bad("notify.email_tag_key must not be empty".into());
        }
        let dom = &self.notify.email_domain;
        if dom.is_empty() || dom.contains('@') || dom.contains(char::is_whitespace) || !dom.contains('.') {
            return bad(format!("notify.email_domain {dom:?} is not a domain"));
        }
        Ok(())
    }
}

fn is_directory_id(s: &str) -> bool {
    s.len() == 12 && s.starts_with("d-") && s[2..].chars().all(|c| c.is_ascii_hexdigit())
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ReaperError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ReaperError::Policy(format!("{name} must be true or false, got {v:?}"))),
    }
}

fn parse_num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ReaperError> {
    v.trim().parse().map_err(|_| ReaperError::Policy(format!("{name} must be a whole number, got {v:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_policy_loads_and_validates() {
        let p = Policy::embedded().unwrap();
        assert_eq!(p.inactivity_limit_days, 14);
        assert_eq!(p.schedule_interval_days, 7);
        assert!(p.dry_run, "the shipped policy must start in dry-run");
    }

    #[test]
    fn env_overrides_and_validation_name_the_field() {
        let mut p = Policy::embedded().unwrap();
        let env = |k: &str| match k {
            "REAPER_DRY_RUN" => Some("false".to_string()),
            "REAPER_DIRECTORIES" => Some("d-0123456789, d-abcdefabcd".to_string()),
            _ => None,
        };
        p.apply_env(&env).unwrap();
        assert!(!p.dry_run);
        assert_eq!(p.directories, vec!["d-0123456789", "d-abcdefabcd"]);
        p.validate().unwrap();

        let err = p.apply_env(&|k: &str| (k == "REAPER_DRY_RUN").then(|| "maybe".to_string())).unwrap_err();
        assert!(err.to_string().contains("REAPER_DRY_RUN"), "{err}");

        let mut q = Policy::embedded().unwrap();
        q.directories = vec!["corp".into()];
        assert!(q.validate().unwrap_err().to_string().contains("directories"));
        let mut q = Policy::embedded().unwrap();
        q.inactivity_limit_days = 0;
        assert!(q.validate().unwrap_err().to_string().contains("inactivity_limit_days"));
        let mut q = Policy::embedded().unwrap();
        q.cap.max_fleet_share = 1.5;
        assert!(q.validate().unwrap_err().to_string().contains("max_fleet_share"));
    }

    #[test]
    fn unknown_policy_keys_are_rejected() {
        let text = format!("{EMBEDDED_POLICY}\ninactivity_days = 3\n");
        assert!(Policy::from_toml(&text).is_err());
    }

    #[test]
    fn cap_counts_and_shares() {
        let cap = Cap { max_terminations: 10, max_fleet_share: 0.2 };
        assert!(cap.allows(0, 0));
        assert!(cap.allows(2, 10));
        assert!(!cap.allows(3, 10));
        assert!(!cap.allows(11, 1000));
        assert!(cap.allows(10, 1000));
    }
}
