//! The reaper policy: loaded from TOML (`config/reaper.toml` by default), overridden from the
//! environment, and validated before any WorkSpace is looked at.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ReaperError;

/// How a run acts: `DryRun` decides and reports only; `Enforce` terminates. Set per environment
/// by the template (`REAPER_MODE`); shown in every report, page and run summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    DryRun,
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DryRun => "dry-run",
            Self::Enforce => "enforce",
        }
    }
    /// `dry-run` or `enforce` (the template parameter's values), nothing else.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "dry-run" => Some(Self::DryRun),
            "enforce" => Some(Self::Enforce),
            _ => None,
        }
    }
    pub fn from_dry_run(dry_run: bool) -> Self {
        if dry_run {
            Self::DryRun
        } else {
            Self::Enforce
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// A WorkSpace carrying this tag key (in any letter case, as IAM matches it) is always kept.
    pub exempt_tag_key: String,
    /// Directory ids in scope, or `["*"]` for all.
    pub directories: Vec<String>,
    /// Decide and report only.
    pub dry_run: bool,
    pub cap: Cap,
    pub notify: NotifyPolicy,
    /// Estimated monthly prices for the "cost avoided" figures of the activity analytics.
    #[serde(default)]
    pub prices: Prices,
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

    /// Most terminations the share allows in a fleet of `fleet`.
    pub fn share_allows(&self, fleet: usize) -> usize {
        (self.max_fleet_share * fleet as f64 + 1e-9).floor() as usize
    }

    /// Which limit `planned` terminations out of `fleet` exceed, with the exact numbers; `None`
    /// when the cap allows them.
    pub fn exceeded(&self, planned: usize, fleet: usize) -> Option<String> {
        if self.allows(planned, fleet) {
            return None;
        }
        let mut hit = Vec::new();
        if planned > self.max_terminations {
            hit.push(format!(
                "cap.max_terminations = {} (planned {planned}, {} over)",
                self.max_terminations,
                planned - self.max_terminations
            ));
        }
        let share = self.share_allows(fleet);
        if planned > share {
            let pct = if fleet == 0 { 100.0 } else { planned as f64 * 100.0 / fleet as f64 };
            hit.push(format!(
                "cap.max_fleet_share = {} (planned {planned} of {fleet} WorkSpaces = {pct:.1}%, at most {share} allowed)",
                self.max_fleet_share
            ));
        }
        Some(format!("Limit hit: {}", hit.join("; ")))
    }
}

/// How at-risk and terminated users are addressed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyPolicy {
    pub email_tag_key: String,
    pub email_domain: String,
    /// Per-directory domain for `{username}@domain`, overriding `email_domain`.
    #[serde(default)]
    pub directory_domains: BTreeMap<String, String>,
    /// Whom a user asks to keep or restore a WorkSpace (named in every notice).
    #[serde(default = "default_contact")]
    pub contact: String,
    /// Send the at-risk notices in dry-run mode too (off by default: a dry run changes nothing).
    #[serde(default)]
    pub notify_in_dry_run: bool,
}

fn default_contact() -> String {
    "the IT service desk".into()
}

/// Estimated monthly price of one WorkSpace (USD): by bundle id, else by running mode
/// (`ALWAYS_ON`, `AUTO_STOP`), else the default.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    #[serde(default)]
    pub default_monthly_usd: f64,
    #[serde(default)]
    pub by_running_mode: BTreeMap<String, f64>,
    #[serde(default)]
    pub by_bundle: BTreeMap<String, f64>,
}

impl Prices {
    pub fn monthly(&self, bundle: &str, running_mode: &str) -> f64 {
        self.by_bundle
            .get(bundle)
            .or_else(|| self.by_running_mode.get(running_mode))
            .copied()
            .unwrap_or(self.default_monthly_usd)
    }
}

impl Policy {
    /// Parses a policy from TOML text (a leading UTF-8 BOM is ignored); does not validate. The
    /// error quotes the offending line, so it names the field.
    pub fn from_toml(text: &str) -> Result<Self, ReaperError> {
        toml::from_str(text.strip_prefix('\u{feff}').unwrap_or(text))
            .map_err(|e| ReaperError::Policy(format!("cannot parse policy: {e}")))
    }

    /// The shipped policy.
    pub fn embedded() -> Result<Self, ReaperError> {
        let p = Self::from_toml(EMBEDDED_POLICY)?;
        p.validate()?;
        Ok(p)
    }

    /// The run's mode.
    pub fn mode(&self) -> Mode {
        Mode::from_dry_run(self.dry_run)
    }

    /// True when `tags` carry the exempt tag key, compared ignoring letter case: IAM matches the
    /// tag key of `aws:ResourceTag/<key>` case-insensitively, so the code keeps at least
    /// everything the IAM guard refuses to terminate (`Reaper:Exempt` counts as `reaper:exempt`).
    pub fn is_exempt(&self, tags: &std::collections::BTreeMap<String, String>) -> bool {
        let want = self.exempt_tag_key.to_lowercase();
        tags.keys().any(|k| k.to_lowercase() == want)
    }

    /// True when WorkSpaces of `directory` are in scope.
    pub fn in_scope(&self, directory: &str) -> bool {
        self.all_directories() || self.directories.iter().any(|d| d == directory)
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
        if let Some(v) = get("REAPER_MODE") {
            let mode = Mode::parse(&v).ok_or_else(|| {
                ReaperError::Policy(format!("REAPER_MODE must be dry-run or enforce, got {v:?}"))
            })?;
            if get("REAPER_DRY_RUN").is_some_and(|d| parse_bool("", &d).ok() != Some(mode == Mode::DryRun)) {
                return Err(ReaperError::Policy(format!(
                    "REAPER_MODE={} contradicts REAPER_DRY_RUN; set one of them",
                    mode.as_str()
                )));
            }
            self.dry_run = mode == Mode::DryRun;
        }
        if let Some(v) = get("REAPER_EXEMPT_TAG_KEY") {
            self.exempt_tag_key = v;
        }
        if let Some(v) = get("REAPER_NOTIFY_IN_DRY_RUN") {
            self.notify.notify_in_dry_run = parse_bool("REAPER_NOTIFY_IN_DRY_RUN", &v)?;
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
        if !is_domain(&self.notify.email_domain) {
            return bad(format!("notify.email_domain {:?} is not a domain", self.notify.email_domain));
        }
        for (dir, dom) in &self.notify.directory_domains {
            if !is_directory_id(dir) {
                return bad(format!("notify.directory_domains: {dir:?} is not a directory id"));
            }
            if !is_domain(dom) {
                return bad(format!("notify.directory_domains.{dir}: {dom:?} is not a domain"));
            }
        }
        if self.notify.contact.trim().is_empty() {
            return bad("notify.contact must not be empty".into());
        }
        let p = &self.prices;
        let all = std::iter::once(("default_monthly_usd".to_string(), p.default_monthly_usd))
            .chain(p.by_running_mode.iter().map(|(k, v)| (format!("by_running_mode.{k}"), *v)))
            .chain(p.by_bundle.iter().map(|(k, v)| (format!("by_bundle.{k}"), *v)));
        for (name, v) in all {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("prices.{name} must be a price of 0 or more, got {v}"));
            }
        }
        Ok(())
    }
}

fn is_domain(dom: &str) -> bool {
    !(dom.is_empty() || dom.contains('@') || dom.contains(char::is_whitespace) || !dom.contains('.'))
}

/// `d-` and 10 hex digits.
pub fn is_directory_id(s: &str) -> bool {
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
    fn the_cap_names_the_limit_it_hit() {
        let cap = Cap { max_terminations: 10, max_fleet_share: 0.2 };
        assert_eq!(cap.exceeded(2, 10), None);
        assert_eq!(
            cap.exceeded(3, 10).as_deref(),
            Some("Limit hit: cap.max_fleet_share = 0.2 (planned 3 of 10 WorkSpaces = 30.0%, at most 2 allowed)")
        );
        assert_eq!(
            cap.exceeded(11, 1000).as_deref(),
            Some("Limit hit: cap.max_terminations = 10 (planned 11, 1 over)")
        );
        let both = cap.exceeded(12, 20).unwrap_or_default();
        assert!(both.contains("max_terminations = 10 (planned 12, 2 over); cap.max_fleet_share"), "{both}");
        assert_eq!(cap.share_allows(7), 1);
    }

    #[test]
    fn policy_text_errors_name_the_field_and_a_bom_is_accepted() {
        let bom = format!("\u{feff}{EMBEDDED_POLICY}");
        assert_eq!(Policy::from_toml(&bom).unwrap(), Policy::embedded().unwrap());
        let bad = EMBEDDED_POLICY.replace("schedule_interval_days = 7", "schedule_interval_days = -7");
        let err = Policy::from_toml(&bad).unwrap_err().to_string();
        assert!(err.contains("schedule_interval_days"), "{err}");
        let mut p = Policy::embedded().unwrap();
        p.notify.directory_domains.insert("d-0123456789".into(), "not a domain".into());
        assert!(p.validate().unwrap_err().to_string().contains("notify.directory_domains.d-0123456789"));
        let mut p = Policy::embedded().unwrap();
        p.prices.by_bundle.insert("wsb-1".into(), -3.0);
        assert!(p.validate().unwrap_err().to_string().contains("prices.by_bundle.wsb-1"));
        let p = Policy::embedded().unwrap();
        assert_eq!(p.prices.monthly("wsb-x", "ALWAYS_ON"), 35.0);
        assert_eq!(p.prices.monthly("wsb-x", "AUTO_STOP"), 25.0);
        assert_eq!(p.prices.monthly("wsb-x", ""), 35.0);
        assert!(!p.notify.notify_in_dry_run, "the shipped policy sends nothing in dry run");
    }

    #[test]
    fn the_exempt_tag_key_can_be_pinned_from_the_environment() {
        let mut p = Policy::embedded().unwrap();
        p.apply_env(&|k: &str| (k == "REAPER_EXEMPT_TAG_KEY").then(|| "Keep".to_string())).unwrap();
        assert_eq!(p.exempt_tag_key, "Keep");
    }

    #[test]
    fn dry_run_notices_can_be_switched_on_from_the_environment() {
        let mut p = Policy::embedded().unwrap();
        let env = |v: &'static str| move |k: &str| (k == "REAPER_NOTIFY_IN_DRY_RUN").then(|| v.to_string());
        p.apply_env(&env("true")).unwrap();
        assert!(p.notify.notify_in_dry_run);
        p.apply_env(&env("false")).unwrap();
        assert!(!p.notify.notify_in_dry_run);
        let err = p.apply_env(&env("yes please")).unwrap_err().to_string();
        assert!(err.contains("REAPER_NOTIFY_IN_DRY_RUN"), "{err}");
    }

    #[test]
    fn the_exempt_tag_key_matches_in_any_letter_case_as_iam_does() {
        let p = Policy::embedded().unwrap();
        let tags = |k: &str| std::collections::BTreeMap::from([(k.to_string(), String::new())]);
        for k in ["reaper:exempt", "Reaper:Exempt", "REAPER:EXEMPT"] {
            assert!(p.is_exempt(&tags(k)), "{k}");
        }
        for k in ["reaper:exempted", "reaper-exempt", "reaper:email"] {
            assert!(!p.is_exempt(&tags(k)), "{k}");
        }
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
