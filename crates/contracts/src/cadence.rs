//! Cadence: how often a source is expected to send (`expect_every = "1d"`), and whether a
//! silence has lasted longer than that. Business days (`"2bd"`) skip Saturdays and Sundays.

use chrono::{DateTime, Datelike, Duration, Utc, Weekday};

use crate::error::{ContractError, Origin};

/// The unit of a cadence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CadenceUnit {
    Hours,
    Days,
    /// Monday to Friday: a weekend does not count towards a silence.
    BusinessDays,
}

/// How often a source sends: `N` units (`"12h"`, `"1d"`, `"2bd"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    pub amount: u32,
    pub unit: CadenceUnit,
}

impl Cadence {
    /// Parses `<N>h`, `<N>d` or `<N>bd` (N >= 1).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let (num, unit) = if let Some(n) = t.strip_suffix("bd") {
            (n, CadenceUnit::BusinessDays)
        } else if let Some(n) = t.strip_suffix('d') {
            (n, CadenceUnit::Days)
        } else if let Some(n) = t.strip_suffix('h') {
            (n, CadenceUnit::Hours)
        } else {
            return Err(format!("`{t}` is not a cadence: expected <N>h, <N>d or <N>bd (business days)"));
        };
        match num.trim().parse::<u32>() {
            Ok(amount) if amount >= 1 => Ok(Self { amount, unit }),
            _ => Err(format!("`{t}`: the count must be a whole number >= 1 (e.g. \"1d\", \"2bd\", \"12h\")")),
        }
    }

    /// The latest time by which the next file is due after one at `last`.
    pub fn due_after(self, last: DateTime<Utc>) -> DateTime<Utc> {
        match self.unit {
            CadenceUnit::Hours => last + Duration::hours(i64::from(self.amount)),
            CadenceUnit::Days => last + Duration::days(i64::from(self.amount)),
            CadenceUnit::BusinessDays => {
                let mut t = last;
                let mut left = self.amount;
                while left > 0 {
                    t += Duration::days(1);
                    if !matches!(t.weekday(), Weekday::Sat | Weekday::Sun) {
                        left -= 1;
                    }
                }
                t
            }
        }
    }

    /// Whether a source last heard from at `last` is overdue at `now`.
    pub fn overdue(self, last: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now > self.due_after(last)
    }
}

pub(crate) fn validate(expect_every: Option<&str>, at: &Origin) -> Result<(), ContractError> {
    match expect_every {
        Some(t) => Cadence::parse(t).map(|_| ()).map_err(|m| at.at("expect_every", m)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn cadences_parse_and_refuse_nonsense() {
        assert_eq!(Cadence::parse("1d").unwrap(), Cadence { amount: 1, unit: CadenceUnit::Days });
        assert_eq!(Cadence::parse("2bd").unwrap(), Cadence { amount: 2, unit: CadenceUnit::BusinessDays });
        assert_eq!(Cadence::parse("12h").unwrap(), Cadence { amount: 12, unit: CadenceUnit::Hours });
        for bad in ["", "d", "0d", "1w", "-1d", "1.5d"] {
            assert!(Cadence::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_weekend_does_not_count_as_business_days() {
        // Friday noon, one business day: due Monday noon
        let fri = t("2026-11-27T12:00:00Z");
        let bd = Cadence::parse("1bd").unwrap();
        assert_eq!(bd.due_after(fri), t("2026-11-30T12:00:00Z"));
        assert!(!bd.overdue(fri, t("2026-11-29T23:00:00Z")), "Sunday night is not late");
        assert!(bd.overdue(fri, t("2026-11-30T12:00:01Z")));
        // one calendar day: late on Saturday
        assert!(Cadence::parse("1d").unwrap().overdue(fri, t("2026-11-28T12:00:01Z")));
    }
}
