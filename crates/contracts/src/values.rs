//! Value rules: what the readers do with a value that does not fit its column as written, so no
//! value is ever changed without a word. The `[values]` table of a contract:
//!
//! - `non_scalar`: a JSON boolean, object or array arriving in a text column (or an object or a
//!   nested array in a list column) is `refuse`d (null, counted with its reason: the default) or
//!   `render`ed (booleans as `true`/`false`, objects and arrays as compact JSON text, nested
//!   arrays in a list column flattened).
//! - `partial_dates`: a date with only a year and month (`1974-12`, `197412`) or a year
//!   (`1974`) is `refuse`d (null, counted with its reason: the default), or completed with a
//!   declared day (and month, for a year alone): `partial_dates = { day = 15, month = 7 }`.

use serde::{Deserialize, Serialize};

use crate::error::{ContractError, Origin};

/// The `[values]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ValueRules {
    #[serde(default)]
    pub non_scalar: NonScalar,
    #[serde(default)]
    pub partial_dates: PartialDates,
}

impl ValueRules {
    /// True when every rule is the default (the table is then left out of a published contract).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub(crate) fn validate(&self, at: &Origin) -> Result<(), ContractError> {
        if let PartialDates::Complete { day, month } = self.partial_dates {
            if !(1..=28).contains(&day) {
                return Err(
                    at.at("partial_dates", "partial_dates: `day` must be 1 to 28 (a day every month has)")
                );
            }
            if month.is_some_and(|m| !(1..=12).contains(&m)) {
                return Err(at.at("partial_dates", "partial_dates: `month` must be 1 to 12"));
            }
        }
        Ok(())
    }
}

/// What a boolean, object or array does in a text or list column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NonScalar {
    /// Null, counted under the column with the value's kind as the reason.
    #[default]
    Refuse,
    /// Written as text: `true`/`false`, compact JSON; nested arrays in a list column flattened.
    Render,
}

/// What a date with only a year and month, or only a year, becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "PartialRepr", into = "PartialRepr")]
pub enum PartialDates {
    /// `"refuse"`: null, counted as `a partial date`.
    #[default]
    Refuse,
    /// `{ day = 15 }`: `1974-12` becomes 1974-12-15; a year alone needs `month` too, else it is
    /// refused.
    Complete { day: u32, month: Option<u32> },
}

/// How `partial_dates` is written: a word or a table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
enum PartialRepr {
    Word(String),
    Table {
        day: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        month: Option<u32>,
    },
}

impl TryFrom<PartialRepr> for PartialDates {
    type Error = String;

    fn try_from(r: PartialRepr) -> Result<Self, String> {
        match r {
            PartialRepr::Word(w) if w == "refuse" => Ok(PartialDates::Refuse),
            PartialRepr::Word(w) => Err(format!(
                "partial_dates is \"refuse\" or {{ day = N }} (with `month` for a year alone), not `{w}`"
            )),
            PartialRepr::Table { day, month } => Ok(PartialDates::Complete { day, month }),
        }
    }
}

impl From<PartialDates> for PartialRepr {
    fn from(p: PartialDates) -> Self {
        match p {
            PartialDates::Refuse => PartialRepr::Word("refuse".into()),
            PartialDates::Complete { day, month } => PartialRepr::Table { day, month },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(t: &str) -> Result<ValueRules, String> {
        #[derive(Deserialize)]
        struct Doc {
            values: ValueRules,
        }
        let text = format!("[values]\n{t}\n");
        let d: Doc = toml::from_str(&text).map_err(|e| e.message().to_string())?;
        d.values.validate(&Origin::new("v.toml", &text)).map_err(|e| e.to_string())?;
        Ok(d.values)
    }

    #[test]
    fn rules_parse_with_defaults_and_mistakes_are_named() {
        assert!(check("").unwrap().is_default());
        let v = check("non_scalar = \"render\"\npartial_dates = { day = 15 }").unwrap();
        assert_eq!(v.non_scalar, NonScalar::Render);
        assert_eq!(v.partial_dates, PartialDates::Complete { day: 15, month: None });
        assert_eq!(check("partial_dates = \"refuse\"").unwrap().partial_dates, PartialDates::Refuse);
        assert_eq!(
            check("partial_dates = { day = 31 }").unwrap_err(),
            "v.toml:2: partial_dates: `day` must be 1 to 28 (a day every month has)"
        );
        assert!(check("partial_dates = { day = 1, month = 13 }").unwrap_err().contains("1 to 12"));
        assert!(check("partial_dates = \"guess\"").unwrap_err().contains("not `guess`"));
        assert!(check("non_scalar = \"drop\"").unwrap_err().contains("unknown variant `drop`"));
    }
}
