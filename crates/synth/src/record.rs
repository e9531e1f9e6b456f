//! The columns a contract fills, each record's values, and which defect each record carries.
//!
//! A record is a synthetic person's visit as canonical values (`Val`), one per column the
//! contract maps in `[fields]` (constants are the pipeline's to add). A record missing a field
//! has that required column's value removed; the writers leave it empty or absent, as senders
//! do. Which record carries which defect is drawn per record from the seed (`Plan`), so a
//! duplicate of record `j` is record `j` made again, byte for byte.

use chrono::{NaiveDateTime, NaiveTime, TimeZone};
use contracts::{CanonicalSchema, Contract, Semantic};

use crate::people::Person;
use crate::rng::Rng;
use crate::{Defects, SynthError};

/// A canonical value before a writer renders it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Text(String),
    /// A date (`time`: the visit's time of day matters).
    Date {
        at: NaiveDateTime,
        time: bool,
    },
    List(Vec<String>),
    Money(f64),
    /// Female when true.
    Sex(bool),
}

/// A canonical column the contract maps: where its value goes and how it is written.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub name: String,
    /// The contract's source field: a header name, a path.
    pub path: String,
    pub semantic: Semantic,
    pub required: bool,
    /// The contract's date formats for the column (`[dates]`).
    pub formats: Vec<String>,
    /// The separator of a list in one text value (`[lists]`).
    pub list_sep: Option<String>,
}

/// The columns of one contract, in the canonical schema's order.
#[derive(Debug, Clone)]
pub(crate) struct Columns {
    pub cols: Vec<Column>,
    required: Vec<String>,
}

/// One record: its person's values by column (`None`: the missing field).
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub index: u64,
    pub seed: u64,
    pub vals: Vec<Option<Val>>,
    pub person: Person,
}

/// What one written record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Good,
    /// Required column number `n` (of `Columns::required_fields`) is missing: a bad row.
    Missing(usize),
    Malformed,
    /// An exact copy of record `j` (good or bad, never malformed or itself a copy).
    Duplicate(u64),
}

impl Columns {
    pub fn new(contract: &Contract, schema: &CanonicalSchema) -> Result<Self, SynthError> {
        let cols: Vec<Column> = schema
            .columns
            .iter()
            .filter_map(|c| {
                let path = contract.fields.get(&c.name)?;
                Some(Column {
                    name: c.name.clone(),
                    path: path.clone(),
                    semantic: c.semantic,
                    required: c.required,
                    formats: contract.dates.get(&c.name).cloned().unwrap_or_default(),
                    list_sep: contract.lists.get(&c.name).cloned(),
                })
            })
            .collect();
        if cols.is_empty() {
            return Err(SynthError::Contract(format!(
                "contract `{}` maps no field in [fields]",
                contract.source
            )));
        }
        let required = cols.iter().filter(|c| c.required).map(|c| c.name.clone()).collect();
        Ok(Self { cols, required })
    }

    /// The required columns the contract maps (a missing-field defect empties one of them).
    pub fn required_fields(&self) -> &[String] {
        &self.required
    }

    /// Record `i` of a file made with `seed`, with the field `kind` says is missing removed.
    pub fn record(&self, seed: u64, i: u64, kind: Kind) -> Record {
        let person = Person::draw(&mut Rng::for_record(seed, i), i);
        let mut vals: Vec<Option<Val>> = self.cols.iter().map(|c| Some(value(c, &person))).collect();
        if let Kind::Missing(n) = kind {
            let name = &self.required[n];
            if let Some(k) = self.cols.iter().position(|c| &c.name == name) {
                vals[k] = None;
            }
        }
        Record { index: i, seed, vals, person }
    }
}

/// The person's value for a column: by the encounter schema's column names, else by the
/// column's semantic type (another dataset's columns still get plausible values).
fn value(c: &Column, p: &Person) -> Val {
    let t = |s: &str| Val::Text(s.to_string());
    let midnight = |d: chrono::NaiveDate| Val::Date { at: d.and_time(NaiveTime::MIN), time: false };
    match c.name.as_str() {
        "encounter_id" => t(&p.encounter_id),
        "patient_id" => t(&p.mrn),
        "first_name" => t(&p.first),
        "last_name" => t(&p.last),
        "middle_initial" => t(&p.middle),
        "dob" => midnight(p.dob),
        "address" => match &p.unit {
            Some(u) => Val::Text(format!("{}, {u}", p.street)),
            None => t(&p.street),
        },
        "city" => t(&p.city),
        "state" => t(&p.state),
        "email" => t(&p.email),
        "encounter_date" => Val::Date { at: p.visit, time: true },
        "facility" => t(&p.facility),
        _ => match c.semantic {
            Semantic::Date => midnight(p.visit.date()),
            Semantic::Sex => Val::Sex(p.female),
            Semantic::Ssn => Val::Text(format!("{}-{}-{}", &p.ssn[..3], &p.ssn[3..5], &p.ssn[5..])),
            Semantic::Zip5 => t(&p.zip),
            Semantic::Phone10 => Val::Text(dashed_phone(&p.phone)),
            Semantic::Icd10List => Val::List(p.dx.clone()),
            Semantic::Money => Val::Money(p.charges),
            Semantic::Name => t(&p.last),
            _ => Val::Text(format!("{}{}", &p.encounter_id[..1], &p.mrn[1..])),
        },
    }
}

/// `6175550123` as `617-555-0123`.
pub(crate) fn dashed_phone(d: &str) -> String {
    format!("{}-{}-{}", &d[..3], &d[3..6], &d[6..])
}

impl Record {
    /// A choice fixed for this record and column (a date format among several, a dialect).
    pub fn choice(&self, col: usize, n: usize) -> usize {
        let mut r = Rng::for_record(self.seed ^ 0xC401_CE00 ^ col as u64, self.index);
        r.below(n.max(1) as u64) as usize
    }

    /// A value as text: dates in one of the column's formats, lists joined by its separator,
    /// money with two decimals, sex as `F` / `M`.
    pub fn text(&self, cols: &Columns, k: usize) -> Option<String> {
        let c = &cols.cols[k];
        Some(match self.vals[k].as_ref()? {
            Val::Text(s) => s.clone(),
            Val::Sex(f) => (if *f { "F" } else { "M" }).to_string(),
            Val::Date { at, .. } => {
                let pattern = match c.formats.len() {
                    0 => "%Y-%m-%d",
                    n => &c.formats[self.choice(k, n)],
                };
                format_date(*at, pattern)
            }
            Val::List(items) => items.join(c.list_sep.as_deref().unwrap_or(";")),
            Val::Money(x) => format!("{x:.2}"),
        })
    }
}

/// A date in a contract's strftime-style pattern; `%z` writes US Eastern standard time.
pub(crate) fn format_date(at: NaiveDateTime, pattern: &str) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let local = chrono::FixedOffset::west_opt(5 * 3600).and_then(|z| z.from_local_datetime(&at).single());
    match local {
        Some(dt) if write!(s, "{}", dt.format(pattern)).is_ok() => s,
        _ => at.format("%Y-%m-%d").to_string(),
    }
}

/// Which record carries which defect: drawn per record from the seed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    seed: u64,
    d: Defects,
    required: usize,
}

impl Plan {
    pub fn new(seed: u64, d: Defects, required: usize) -> Self {
        Self { seed, d, required }
    }

    /// The kind of record `i` as drawn, before a copy of a copy is traced to its original.
    fn draw(&self, i: u64) -> Kind {
        let mut r = Rng::for_record(self.seed ^ 0x5EED_DEFE_C750, i);
        let (u, j, c) = (r.unit(), r.below(i.max(1)), r.below(self.required.max(1) as u64));
        let d = self.d;
        if i > 0 && u < d.duplicates {
            Kind::Duplicate(j)
        } else if u < d.duplicates + d.malformed {
            Kind::Malformed
        } else if self.required > 0 && u < d.duplicates + d.malformed + d.missing {
            Kind::Missing(c as usize)
        } else {
            Kind::Good
        }
    }

    /// The kind of record `i`: a copy always names an original (good or bad); a copy that
    /// would repeat a malformed record is written as a good record of its own instead.
    pub fn kind(&self, i: u64) -> Kind {
        let mut k = self.draw(i);
        // follow copies of copies down to their original (indices only decrease)
        while let Kind::Duplicate(j) = k {
            match self.draw(j) {
                Kind::Duplicate(next) => k = Kind::Duplicate(next),
                Kind::Malformed => return Kind::Good,
                _ => return k,
            }
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_name_a_readable_original_and_shares_come_out_near_the_asked() {
        let d = Defects { duplicates: 0.1, missing: 0.1, malformed: 0.1 };
        let p = Plan::new(42, d, 5);
        let mut n = [0u64; 4];
        for i in 0..20_000 {
            match p.kind(i) {
                Kind::Good => n[0] += 1,
                Kind::Missing(c) => {
                    assert!(c < 5);
                    n[1] += 1;
                }
                Kind::Malformed => n[2] += 1,
                Kind::Duplicate(j) => {
                    assert!(j < i);
                    assert!(matches!(p.kind(j), Kind::Good | Kind::Missing(_)), "{i} -> {j}");
                    n[3] += 1;
                }
            }
        }
        for share in &n[1..] {
            assert!((1_600..2_400).contains(share), "{n:?}");
        }
        assert_eq!(Plan::new(42, Defects::default(), 5).kind(7), Kind::Good);
    }

    #[test]
    fn dates_follow_the_contract_patterns() {
        let at = chrono::NaiveDate::from_ymd_opt(1980, 3, 5).unwrap().and_hms_opt(9, 7, 0).unwrap();
        assert_eq!(format_date(at, "%d-%b-%Y"), "05-Mar-1980");
        assert_eq!(format_date(at, "%Y%m%d%H%M%S%z"), "19800305090700-0500");
        assert_eq!(format_date(at, "%m/%d/%Y %H:%M"), "03/05/1980 09:07");
        assert_eq!(format_date(at, "%Y-%m-%dT%H:%M:%SZ"), "1980-03-05T09:07:00Z");
    }
}
