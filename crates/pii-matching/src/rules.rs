//! Matching rules as data (`config/matching.toml`): blocking keys, per-field comparison levels
//! with Fellegi-Sunter style weights, and the exact / proposed tiers. Validated on load with
//! messages that name the offending entry.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use crate::model::BlockingKind;

/// A field the matcher compares (closed: each has a value on both sides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    FirstName,
    LastName,
    Dob,
    Sex,
    Address,
    City,
    Zip,
    Phone,
}

impl Field {
    /// Every field, so a compiled rule set can size per-field arrays.
    pub const ALL: [Field; 8] = [
        Field::FirstName,
        Field::LastName,
        Field::Dob,
        Field::Sex,
        Field::Address,
        Field::City,
        Field::Zip,
        Field::Phone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Field::FirstName => "first_name",
            Field::LastName => "last_name",
            Field::Dob => "dob",
            Field::Sex => "sex",
            Field::Address => "address",
            Field::City => "city",
            Field::Zip => "zip",
            Field::Phone => "phone",
        }
    }
    fn is_date(self) -> bool {
        self == Field::Dob
    }
}

/// One comparison level: the first level (in file order) that holds for a pair gives the field's
/// weight. `missing` (a side has no value) and `else` (no level held) are implicit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LevelKind {
    /// Byte-equal after trimming.
    Exact,
    /// Equal after upper-casing and dropping everything but letters and digits.
    Normalised,
    /// Jaro-Winkler similarity >= min.
    JaroWinkler { min: f64 },
    /// Levenshtein distance <= max.
    Levenshtein { max: usize },
    /// Same Soundex code.
    Soundex,
    /// Names in one group of the nickname table (ROBERT / BOB / BOBBY).
    Nickname,
    /// Every word of the shorter value is a word of the longer (SOSA vs SOSA-VINCENT).
    TokenSubset,
    /// Same first letter.
    Initial,
    /// Day and month swapped.
    DateSwapped,
    /// YYYYMMDD differs in exactly one digit.
    DateOneDigit,
    /// At most `max` days apart.
    DateDaysApart { max: i64 },
    /// Same month and day, years at most `max` apart.
    DateYearOff { max: i32 },
    /// Same day of the month (or both at a month's end), months at most `max` apart.
    DateMonthsApart { max: i32 },
    /// First and last name swapped: this side's first name is the other's last name and the
    /// other way round (first_name and last_name only).
    Swapped,
    /// Street addresses with the same house number whose street words (abbreviations folded:
    /// STREET = ST, AVENUE = AVE, ...) agree for at least `min` of the shorter one's words.
    TokenOverlap { min: f64 },
}

impl LevelKind {
    fn tag(&self) -> &'static str {
        match self {
            LevelKind::Exact => "exact",
            LevelKind::Normalised => "normalised",
            LevelKind::JaroWinkler { .. } => "jaro_winkler",
            LevelKind::Levenshtein { .. } => "levenshtein",
            LevelKind::Soundex => "soundex",
            LevelKind::Nickname => "nickname",
            LevelKind::TokenSubset => "token_subset",
            LevelKind::Initial => "initial",
            LevelKind::DateSwapped => "date_swapped",
            LevelKind::DateOneDigit => "date_one_digit",
            LevelKind::DateDaysApart { .. } => "date_days_apart",
            LevelKind::DateYearOff { .. } => "date_year_off",
            LevelKind::DateMonthsApart { .. } => "date_months_apart",
            LevelKind::Swapped => "swapped",
            LevelKind::TokenOverlap { .. } => "token_overlap",
        }
    }
    fn for_dates(&self) -> bool {
        matches!(
            self,
            LevelKind::Exact
                | LevelKind::DateSwapped
                | LevelKind::DateOneDigit
                | LevelKind::DateDaysApart { .. }
                | LevelKind::DateYearOff { .. }
                | LevelKind::DateMonthsApart { .. }
        )
    }
    fn for_text(&self) -> bool {
        !matches!(
            self,
            LevelKind::DateSwapped
                | LevelKind::DateOneDigit
                | LevelKind::DateDaysApart { .. }
                | LevelKind::DateYearOff { .. }
                | LevelKind::DateMonthsApart { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Level {
    /// Name used in tier rules and evidence (default: the kind).
    pub name: Option<String>,
    #[serde(flatten)]
    pub kind: LevelKind,
    /// log2(m/u): evidence for (positive) or against (negative) a match.
    pub weight: f64,
}

impl Level {
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.kind.tag())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    pub field: Field,
    pub levels: Vec<Level>,
    /// Weight when no level holds.
    #[serde(rename = "else")]
    pub else_weight: f64,
    /// Weight when either side has no value.
    #[serde(default)]
    pub missing: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blocking {
    /// Passes of blocking keys. Pass 1 runs for every record; each later pass only for the
    /// records the passes before left open (one set-based query per pass), and a record's
    /// candidates are the persons sharing any key of the passes run for it.
    pub passes: Vec<Vec<BlockingKind>>,
    /// A record is left open for the next pass unless it is decided as exact or, when this is
    /// set, proposed with a best score of at least this (a later pass would find the same
    /// person again). Unset: every record not decided as exact goes on.
    #[serde(default)]
    pub settle_score: Option<f64>,
    /// Records whose candidate set is larger are scored against the N persons sharing the most
    /// keys with them only (then the most equal values, then by id). A key more than N persons
    /// hold (a *wide* key: a common surname without a birth date) finds nobody: it cannot
    /// single out the record's person, and reading its holders would cost more than the rest
    /// of the record's keys together (`PersonIndex::candidates`, migration 0009).
    #[serde(default = "default_max_candidates")]
    pub max_candidates: usize,
}

impl Blocking {
    pub fn all_kinds(&self) -> Vec<BlockingKind> {
        self.passes.iter().flatten().copied().collect()
    }
}

fn default_max_candidates() -> usize {
    200
}

/// A rule: AND of "field's level is one of" plus an optional minimum score.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default)]
    pub min_score: Option<f64>,
    #[serde(default)]
    pub require: BTreeMap<Field, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExactTier {
    /// The best candidate must beat the second best by at least this much.
    pub min_margin: f64,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposedTier {
    /// A candidate is proposed when its score reaches this (rule `score>=T`) ...
    pub min_score: f64,
    /// ... or when one of these rules holds.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Only candidates within this much of the best are proposed ...
    pub within: f64,
    /// ... and at most this many.
    pub max_candidates: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tiers {
    pub exact: ExactTier,
    pub proposed: ProposedTier,
}

/// The whole rules file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub version: u32,
    pub blocking: Blocking,
    #[serde(rename = "comparison")]
    pub comparisons: Vec<Comparison>,
    pub tiers: Tiers,
    /// Formal name -> nicknames (upper case).
    #[serde(default)]
    pub nicknames: BTreeMap<String, Vec<String>>,
}

/// The text of `config/matching.toml` as compiled in.
pub const BUILTIN_TOML: &str = include_str!("../../../config/matching.toml");

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Rules {
    pub fn from_file(path: &Path) -> Result<Self, RulesError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| RulesError::Read { path: p.clone(), message: e.to_string() })?;
        Self::from_toml_str(&text, &p)
    }

    pub fn from_toml_str(text: &str, path: &str) -> Result<Self, RulesError> {
        let r: Rules = toml::from_str(text)
            .map_err(|e| RulesError::Parse { path: path.into(), message: e.to_string() })?;
        r.validate().map_err(|message| RulesError::Invalid { path: path.into(), message })?;
        Ok(r)
    }

    /// The rules shipped in `config/matching.toml` (compiled in, so a Lambda needs no file).
    pub fn builtin() -> Self {
        #[allow(clippy::expect_used)]
        Self::from_toml_str(BUILTIN_TOML, "config/matching.toml")
            .expect("config/matching.toml is valid (tested)")
    }

    /// Checks the rules in the order of the file: version, blocking, comparisons, tiers, nicknames.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != 1 {
            return Err(format!("version {} is not supported (expected 1)", self.version));
        }
        self.validate_blocking()?;
        let mut levels: HashMap<Field, HashSet<String>> = HashMap::new();
        for (i, c) in self.comparisons.iter().enumerate() {
            let at = format!("comparison[{i}] ({})", c.field.as_str());
            if levels.contains_key(&c.field) {
                return Err(format!("{at}: field compared twice"));
            }
            levels.insert(c.field, self.validate_comparison(&at, c)?);
        }
        self.validate_tiers(&levels)?;
        for (formal, nicks) in &self.nicknames {
            for n in std::iter::once(formal).chain(nicks) {
                if n.trim().is_empty() || *n != crate::model::norm(n) {
                    return Err(format!("nicknames.{formal}: {n:?} must be upper case, trimmed"));
                }
            }
        }
        Ok(())
    }

    fn validate_blocking(&self) -> Result<(), String> {
        if self.blocking.passes.is_empty() || self.blocking.passes.iter().any(Vec::is_empty) {
            return Err("blocking.passes: at least one pass, each with at least one key".into());
        }
        let mut seen = HashSet::new();
        for k in self.blocking.passes.iter().flatten() {
            if !seen.insert(*k) {
                return Err(format!("blocking.passes: {k:?} listed twice"));
            }
        }
        if self.blocking.max_candidates == 0 {
            return Err("blocking.max_candidates must be > 0".into());
        }
        if let Some(t) = self.blocking.settle_score {
            if !t.is_finite() {
                return Err("blocking.settle_score must be a finite number".into());
            }
            if self.blocking.passes.len() < 2 {
                return Err("blocking.settle_score needs at least two passes (it skips later ones)".into());
            }
        }
        Ok(())
    }

    /// One comparison's levels; returns the level names a rule may require (with `missing`, `else`).
    fn validate_comparison(&self, at: &str, c: &Comparison) -> Result<HashSet<String>, String> {
        if !c.else_weight.is_finite() || !c.missing.is_finite() {
            return Err(format!("{at}: weights must be finite numbers"));
        }
        let mut names = HashSet::new();
        let mut prev = f64::INFINITY;
        for l in &c.levels {
            let n = l.name().to_string();
            if ["missing", "else"].contains(&n.as_str()) || !names.insert(n.clone()) {
                return Err(format!("{at}: level name {n:?} is reserved or used twice"));
            }
            if !l.weight.is_finite() {
                return Err(format!("{at}: level {n:?}: weight must be a finite number"));
            }
            if l.weight > prev {
                return Err(format!(
                    "{at}: level {n:?} (weight {}) is weaker evidence than the level before it \
                     but weighs more; order levels from strongest to weakest",
                    l.weight
                ));
            }
            prev = l.weight;
            self.validate_level(at, &n, c.field, l)?;
        }
        if l_last_weight(c) < c.else_weight {
            return Err(format!("{at}: `else` weighs more than the weakest level"));
        }
        names.insert("missing".into());
        names.insert("else".into());
        Ok(names)
    }

    fn validate_level(&self, at: &str, n: &str, field: Field, l: &Level) -> Result<(), String> {
        if field.is_date() && !l.kind.for_dates() {
            return Err(format!("{at}: level {n:?} does not apply to dates"));
        }
        if !field.is_date() && !l.kind.for_text() {
            return Err(format!("{at}: level {n:?} applies to dates only"));
        }
        match l.kind {
            LevelKind::JaroWinkler { min } if !(0.0..=1.0).contains(&min) => {
                Err(format!("{at}: jaro_winkler min {min} is outside 0..1"))
            }
            LevelKind::DateDaysApart { max } if max < 1 => {
                Err(format!("{at}: date_days_apart max must be >= 1"))
            }
            LevelKind::DateYearOff { max } if max < 1 => Err(format!("{at}: date_year_off max must be >= 1")),
            LevelKind::DateMonthsApart { max } if max < 1 => {
                Err(format!("{at}: date_months_apart max must be >= 1"))
            }
            LevelKind::Swapped if !matches!(field, Field::FirstName | Field::LastName) => {
                Err(format!("{at}: level swapped applies to first_name and last_name only"))
            }
            LevelKind::TokenOverlap { min } if !(0.0..=1.0).contains(&min) => {
                Err(format!("{at}: token_overlap min {min} is outside 0..1"))
            }
            LevelKind::Nickname if self.nicknames.is_empty() => {
                Err(format!("{at}: level nickname needs a [nicknames] table"))
            }
            _ => Ok(()),
        }
    }

    fn validate_tiers(&self, levels: &HashMap<Field, HashSet<String>>) -> Result<(), String> {
        if self.tiers.exact.rules.is_empty() {
            return Err("tiers.exact: at least one rule is needed".into());
        }
        for r in &self.tiers.exact.rules {
            check_rule(levels, "exact", r)?;
        }
        for r in &self.tiers.proposed.rules {
            check_rule(levels, "proposed", r)?;
        }
        if self.tiers.exact.min_margin < 0.0 || self.tiers.proposed.within < 0.0 {
            return Err("tiers: min_margin and within must be >= 0".into());
        }
        if self.tiers.proposed.max_candidates == 0 {
            return Err("tiers.proposed.max_candidates must be > 0".into());
        }
        Ok(())
    }
}

/// A tier rule names only compared fields and their levels.
fn check_rule(levels: &HashMap<Field, HashSet<String>>, tier: &str, r: &Rule) -> Result<(), String> {
    if r.require.is_empty() && r.min_score.is_none() {
        return Err(format!("tiers.{tier} rule {:?}: needs `require` or `min_score`", r.name));
    }
    for (f, ls) in &r.require {
        let Some(known) = levels.get(f) else {
            return Err(format!("tiers.{tier} rule {:?}: field {} is not compared", r.name, f.as_str()));
        };
        for l in ls {
            if !known.contains(l) {
                return Err(format!(
                    "tiers.{tier} rule {:?}: {} has no level {l:?} (known: {})",
                    r.name,
                    f.as_str(),
                    sorted(known).join(", ")
                ));
            }
        }
    }
    Ok(())
}

fn l_last_weight(c: &Comparison) -> f64 {
    c.levels.last().map_or(f64::INFINITY, |l| l.weight)
}

fn sorted(s: &HashSet<String>) -> Vec<String> {
    let mut v: Vec<String> = s.iter().cloned().collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_rules_load_and_validate() {
        let r = Rules::builtin();
        assert!(!r.tiers.exact.rules.is_empty());
        assert!(r.nicknames.contains_key("ROBERT"));
    }

    #[test]
    fn the_shipped_rules_are_trained_ones() {
        let r = Rules::builtin();
        assert!(r.tiers.exact.rules.iter().any(|x| x.name == "score_threshold"));
        assert!(r.comparisons.iter().all(|c| c.missing == 0.0), "a missing value is no evidence");
    }

    fn with(from: &str, to: &str) -> String {
        let text = include_str!("../../../config/matching.toml");
        assert!(text.contains(from), "{from}");
        text.replacen(from, to, 1)
    }

    #[test]
    fn invalid_rules_are_rejected_with_the_reason() {
        let bad = [
            (
                with(
                    "require = { first_name = [\"exact\"], last_name",
                    "require = { first_name = [\"exakt\"], last_name",
                ),
                "has no level \"exakt\"",
            ),
            (
                with("{ kind = \"exact\", weight = 15.01 }", "{ kind = \"soundex\", weight = 15.01 }"),
                "does not apply to dates",
            ),
            (
                with(
                    "{ kind = \"jaro_winkler\", min = 0.88, weight = 4.19 },\n  { kind = \"initial\"",
                    "{ kind = \"jaro_winkler\", min = 1.88, weight = 4.19 },\n  { kind = \"initial\"",
                ),
                "outside 0..1",
            ),
            (
                with("{ kind = \"nickname\", weight = 4.58 }", "{ kind = \"nickname\", weight = 9.0 }"),
                "order levels from strongest",
            ),
            (with("[\"address_zip\", \"phone\"]", "[\"address_zip\", \"address_zip\"]"), "listed twice"),
            (with("version = 1", "version = 2"), "not supported"),
            (with("settle_score = 35.08", "settle_score = nan"), "finite"),
            (
                with(
                    include_str!("../../../config/matching.toml")
                        .lines()
                        .find(|l| l.starts_with("passes = "))
                        .expect("a passes line"),
                    "passes = [[\"last_name_dob\"]]",
                ),
                "needs at least two passes",
            ),
        ];
        for (text, want) in bad {
            let e = Rules::from_toml_str(&text, "m.toml").unwrap_err().to_string();
            assert!(e.contains(want), "{e} should contain {want}");
        }
    }
}
