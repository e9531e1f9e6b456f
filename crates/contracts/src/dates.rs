//! Dates: the strftime-style formats a contract gives its date columns, parsed into items the
//! readers match, and the [dates] table's rules against the canonical schema.

use std::collections::BTreeMap;

use crate::canonical::{CanonicalSchema, Semantic};
use crate::error::{ContractError, Origin};

/// One piece of a parsed date format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateItem {
    Year4,
    Year2,
    Month2,
    Day2,
    Hour2,
    Minute2,
    Second2,
    /// `%f`: 1 to 9 fraction digits.
    Fraction,
    /// `%b`: Jan..Dec, any case.
    MonthAbbr,
    /// `%B`: January..December, any case.
    MonthName,
    /// `%z`: a UTC offset (`Z`, `+05:00`, `-0500`, `+05`); the date is the local one written.
    Offset,
    Literal(char),
}

/// A parsed strftime-style date format; every numeric field is zero-padded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateFormat {
    pub pattern: String,
    pub items: Vec<DateItem>,
}

impl DateFormat {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let mut items = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                items.push(DateItem::Literal(c));
                continue;
            }
            let item = match chars.next() {
                Some('Y') => DateItem::Year4,
                Some('y') => DateItem::Year2,
                Some('m') => DateItem::Month2,
                Some('d') => DateItem::Day2,
                Some('H') => DateItem::Hour2,
                Some('M') => DateItem::Minute2,
                Some('S') => DateItem::Second2,
                Some('f') => DateItem::Fraction,
                Some('b') => DateItem::MonthAbbr,
                Some('B') => DateItem::MonthName,
                Some('z') => DateItem::Offset,
                Some('%') => DateItem::Literal('%'),
                Some(o) => {
                    return Err(format!(
                        "`{pattern}`: %{o} is not supported (use %Y %y %m %d %H %M %S %f %b %B %z %%)"
                    ))
                }
                None => return Err(format!("`{pattern}` ends with a lone %")),
            };
            items.push(item);
        }
        let has = |i: &DateItem| items.contains(i);
        if !(has(&DateItem::Year4) || has(&DateItem::Year2))
            || !(has(&DateItem::Month2) || has(&DateItem::MonthAbbr) || has(&DateItem::MonthName))
            || !has(&DateItem::Day2)
        {
            return Err(format!("`{pattern}` needs a year, a month and a day"));
        }
        Ok(Self { pattern: pattern.to_string(), items })
    }
}

/// The [dates] table against the schema: every date column the contract fills (`is_set`) has
/// formats, every listed format parses, and only date columns are listed.
pub(crate) fn validate_table(
    dates: &BTreeMap<String, Vec<String>>,
    schema: &CanonicalSchema,
    is_set: impl Fn(&str) -> bool,
    at: &Origin,
) -> Result<(), ContractError> {
    for c in schema.columns.iter().filter(|c| c.semantic == Semantic::Date) {
        match dates.get(&c.name) {
            None if is_set(&c.name) => {
                return Err(at.at_line(
                    at.locate("dates"),
                    format!(
                        "date column `{}` needs its formats in [dates], e.g. {} = [\"%Y-%m-%d\"]",
                        c.name, c.name
                    ),
                ))
            }
            Some(v) if v.is_empty() => {
                return Err(at.at(&c.name, format!("date column `{}` lists no formats", c.name)))
            }
            Some(v) => {
                for p in v {
                    DateFormat::parse(p)
                        .map_err(|m| at.at(&c.name, format!("date column `{}`: {m}", c.name)))?;
                }
            }
            None => {}
        }
    }
    for col in dates.keys() {
        match schema.column(col) {
            Some(c) if c.semantic == Semantic::Date => {}
            _ => return Err(at.at(col, format!("[dates] names `{col}`, which is not a date column"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_format_parses_into_its_items() {
        let f = DateFormat::parse("%d.%b %Y %%").unwrap();
        assert_eq!(
            f.items,
            vec![
                DateItem::Day2,
                DateItem::Literal('.'),
                DateItem::MonthAbbr,
                DateItem::Literal(' '),
                DateItem::Year4,
                DateItem::Literal(' '),
                DateItem::Literal('%'),
            ]
        );
    }

    #[test]
    fn a_bad_format_says_what_is_wrong() {
        for (pattern, message) in [
            ("%Y-%m-%Q", "`%Y-%m-%Q`: %Q is not supported (use %Y %y %m %d %H %M %S %f %b %B %z %%)"),
            ("%Y-%m-%d%", "`%Y-%m-%d%` ends with a lone %"),
            ("%Y-%m", "`%Y-%m` needs a year, a month and a day"),
        ] {
            assert_eq!(DateFormat::parse(pattern).unwrap_err(), message);
        }
    }

    fn check(dates: &str, set: &[&str]) -> Result<(), ContractError> {
        let text = format!("[dates]\n{dates}\n");
        let table: BTreeMap<String, Vec<String>> =
            toml::from_str::<BTreeMap<String, _>>(&text).unwrap().remove("dates").unwrap();
        let schema = CanonicalSchema::encounter();
        validate_table(&table, &schema, |c| set.contains(&c), &Origin::new("d.toml", &text))
    }

    #[test]
    fn the_dates_table_is_checked_against_the_schema() {
        assert!(check("dob = [\"%Y%m%d\"]", &["dob"]).is_ok());
        assert!(check("", &[]).is_ok());
        let e = check("", &["dob"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "d.toml:1: date column `dob` needs its formats in [dates], e.g. dob = [\"%Y-%m-%d\"]"
        );
        let e = check("dob = []", &["dob"]).unwrap_err();
        assert_eq!(e.to_string(), "d.toml:2: date column `dob` lists no formats");
        let e = check("dob = [\"%Y\"]", &["dob"]).unwrap_err();
        assert_eq!(e.to_string(), "d.toml:2: date column `dob`: `%Y` needs a year, a month and a day");
        let e = check("ssn = [\"%Y%m%d\"]", &[]).unwrap_err();
        assert_eq!(e.to_string(), "d.toml:2: [dates] names `ssn`, which is not a date column");
    }
}
