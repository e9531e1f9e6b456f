//! Measuring blocking and decisions against a labelled truth file (`lake match --truth`): pair
//! completeness (did the true person reach scoring), candidates per record, records with no
//! candidate or a cut candidate list, exact-tier recall where a record carries enough to decide,
//! and every figure per error kind. Figures only: no record values leave this module.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::path::Path;

use crate::index::IndexError;
use crate::matcher::{Decision, Tier};
use crate::model::Record;

/// One row of a truth file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TruthRow {
    /// The true person (None: nobody in the index).
    pub person: Option<i64>,
    /// The generator's variant (`exact`, `typo_last`, ...), when the file has that column.
    pub variant: Option<String>,
    /// The errors put into the record (`errors` column, `;`-separated), when the file has it.
    pub errors: Vec<String>,
}

impl TruthRow {
    /// The kinds a record is counted under: each of its errors, else its variant, else `all`.
    fn kinds(&self) -> Vec<&str> {
        if !self.errors.is_empty() {
            return self.errors.iter().map(String::as_str).collect();
        }
        vec![self.variant.as_deref().unwrap_or("all")]
    }
}

fn load_err(path: &Path, e: impl std::fmt::Display) -> IndexError {
    IndexError::Load(format!("{}: {e}", path.display()))
}

/// Reads a truth file by header name: the record id (`record_id`, `encounter_id`, else the first
/// column), the true person (`true_person_id`, `person_id`, else the second column; empty = not
/// in the index), and the optional `variant` and `errors` (`;`-separated; `none` or empty = no
/// error) columns.
pub fn read_truth_rows(path: &Path) -> Result<HashMap<String, TruthRow>, IndexError> {
    let mut rd = csv::Reader::from_path(path).map_err(|e| load_err(path, e))?;
    let h = rd.headers().map_err(|e| load_err(path, e))?.clone();
    let col = |names: &[&str]| h.iter().position(|x| names.contains(&x.trim()));
    let id = col(&["record_id", "encounter_id"]).unwrap_or(0);
    let person = col(&["true_person_id", "person_id"]).unwrap_or(1);
    let (variant, errors) = (col(&["variant"]), col(&["errors"]));
    let mut out = HashMap::new();
    for (line, r) in rd.records().enumerate() {
        let r = r.map_err(|_| load_err(path, format!("line {}: unreadable row", line + 2)))?;
        let get = |i: Option<usize>| i.and_then(|i| r.get(i)).map(str::trim).filter(|s| !s.is_empty());
        let person = match get(Some(person)) {
            None => None,
            Some(v) => Some(v.parse().map_err(|_| {
                load_err(path, format!("line {}: the true person id is not a number", line + 2))
            })?),
        };
        let errors = get(errors)
            .map(|e| {
                e.split(';')
                    .map(str::trim)
                    .filter(|x| !x.is_empty() && *x != "none")
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let row = TruthRow { person, variant: get(variant).map(String::from), errors };
        out.insert(get(Some(id)).unwrap_or_default().to_string(), row);
    }
    Ok(out)
}

/// The identifying fields a record carries: first name, last name, birth date, street address,
/// phone (city, ZIP and sex narrow a match down but identify nobody alone).
pub fn identifying_fields(r: &Record) -> usize {
    let t = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
    [t(&r.first_name), t(&r.last_name), r.dob.is_some(), t(&r.address), t(&r.phone)]
        .into_iter()
        .filter(|x| *x)
        .count()
}

/// Counts for one error kind (or for all records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KindCounts {
    pub records: usize,
    /// Records whose true person is in the index.
    pub in_index: usize,
    /// ... and reached scoring (needs a traced matcher).
    pub reached: usize,
    pub exact_right: usize,
    pub exact_wrong: usize,
    /// Proposed with the true person among the proposals.
    pub proposed_right: usize,
    /// Proposed, none of them the true person (or nobody to find).
    pub proposed_wrong: usize,
    pub none: usize,
}

impl KindCounts {
    fn add(&mut self, d: &Decision, truth: Option<i64>) {
        self.records += 1;
        let hit = truth.is_some_and(|p| d.chosen.iter().any(|c| c.person_id == p));
        if let Some(p) = truth {
            self.in_index += 1;
            self.reached += usize::from(d.trace.as_ref().is_some_and(|t| t.scored.contains(&p)));
        }
        match (d.tier, hit) {
            (Tier::Exact, true) => self.exact_right += 1,
            (Tier::Exact, false) => self.exact_wrong += 1,
            (Tier::Proposed, true) => self.proposed_right += 1,
            (Tier::Proposed, false) => self.proposed_wrong += 1,
            (Tier::None, _) => self.none += 1,
        }
    }
}

/// Distribution of a count over records.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Spread {
    pub mean: f64,
    pub p50: usize,
    pub p99: usize,
    pub max: usize,
}

impl Spread {
    pub fn of(mut v: Vec<usize>) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Self {
            mean: v.iter().sum::<usize>() as f64 / v.len() as f64,
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// What `lake match --truth` prints beside precision and recall.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    pub all: KindCounts,
    /// Whether the decisions carry traces (pair completeness is known).
    pub traced: bool,
    pub candidates: Spread,
    pub no_candidate: usize,
    /// Records whose candidate list was cut at `max_candidates`.
    pub truncated: usize,
    /// Records with at least three identifying fields ([`identifying_fields`]).
    pub rich: KindCounts,
    pub by_kind: BTreeMap<String, KindCounts>,
    /// By how many errors the truth file lists for a record (0, 1, 2, 3 = three or more), when
    /// it has an `errors` column.
    pub by_errors: BTreeMap<usize, KindCounts>,
}

impl Report {
    /// The report of `ds` (in the order of `records`) against `truth`; a record without a truth
    /// row counts as nobody to find.
    pub fn of(ds: &[Decision], records: &[Record], truth: &HashMap<String, TruthRow>) -> Self {
        let mut r = Report { traced: ds.iter().any(|d| d.trace.is_some()), ..Report::default() };
        let none = TruthRow::default();
        let has_errors = truth.values().any(|t| !t.errors.is_empty());
        for (d, rec) in ds.iter().zip(records) {
            let t = truth.get(&d.reference).unwrap_or(&none);
            r.all.add(d, t.person);
            if identifying_fields(rec) >= 3 {
                r.rich.add(d, t.person);
            }
            for k in t.kinds() {
                r.by_kind.entry(k.to_string()).or_default().add(d, t.person);
            }
            if has_errors {
                r.by_errors.entry(t.errors.len().min(3)).or_default().add(d, t.person);
            }
            r.no_candidate += usize::from(d.candidates == 0);
            r.truncated += usize::from(d.trace.as_ref().is_some_and(|t| t.truncated > 0));
        }
        r.candidates = Spread::of(ds.iter().map(|d| d.candidates).collect());
        r
    }

    /// Share of the true pairs whose person reached scoring.
    pub fn pair_completeness(&self) -> Option<f64> {
        self.traced.then(|| ratio(self.all.reached, self.all.in_index))
    }

    /// Exact-tier recall on the records with at least three identifying fields.
    pub fn rich_exact_recall(&self) -> f64 {
        ratio(self.rich.exact_right, self.rich.in_index)
    }

    /// The report as text lines (figures and error kind names only).
    pub fn render(&self) -> String {
        let mut s = String::new();
        let c = &self.candidates;
        let pc = self.pair_completeness().map_or_else(|| "-".into(), |p| format!("{p:.4}"));
        // writing to a String cannot fail
        let _ = writeln!(
            s,
            "pair completeness {pc} ({} of {} true pairs reached scoring)",
            self.all.reached, self.all.in_index
        );
        let _ = writeln!(
            s,
            "candidates per record: mean {:.2}, p50 {}, p99 {}, max {}; no candidate {}; truncated {}",
            c.mean, c.p50, c.p99, c.max, self.no_candidate, self.truncated
        );
        if self.traced && !self.by_errors.is_empty() {
            let per: Vec<String> = self
                .by_errors
                .iter()
                .map(|(n, c)| {
                    let n = if *n >= 3 { "3+".to_string() } else { n.to_string() };
                    format!(
                        "{n} errors {:.4} ({} of {})",
                        ratio(c.reached, c.in_index),
                        c.reached,
                        c.in_index
                    )
                })
                .collect();
            let _ = writeln!(s, "pair completeness by errors per record: {}", per.join(", "));
        }
        let _ = writeln!(
            s,
            "exact recall on records with >= 3 identifying fields: {:.4} ({} of {}, {} records)",
            self.rich_exact_recall(),
            self.rich.exact_right,
            self.rich.in_index,
            self.rich.records
        );
        let _ = writeln!(
            s,
            "{:<22} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}",
            "error kind",
            "records",
            "in index",
            "reached",
            "exact",
            "exact x",
            "prop",
            "prop x",
            "none",
            "found"
        );
        for (k, v) in &self.by_kind {
            let found = ratio(v.exact_right + v.proposed_right, v.in_index);
            let reached = if self.traced { v.reached.to_string() } else { "-".into() };
            let _ = writeln!(
                s,
                "{k:<22} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8.4}",
                v.records,
                v.in_index,
                reached,
                v.exact_right,
                v.exact_wrong,
                v.proposed_right,
                v.proposed_wrong,
                v.none,
                found
            );
        }
        s
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    a as f64 / b.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::{Scored, Trace};

    fn d(reference: &str, tier: Tier, chosen: &[i64], scored: &[i64], truncated: usize) -> Decision {
        Decision {
            reference: reference.into(),
            tier,
            rule: "r".into(),
            chosen: chosen
                .iter()
                .map(|&p| Scored { person_id: p, score: 1.0, levels: BTreeMap::new() })
                .collect(),
            candidates: scored.len(),
            best_score: None,
            trace: Some(Box::new(Trace { scored: scored.to_vec(), truncated })),
        }
    }

    #[test]
    fn the_report_counts_reached_pairs_kinds_and_rich_records() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("t.csv");
        std::fs::write(&p, "record_id,true_person_id,variant,errors\na,1,x,typo_first;blank_phone\nb,2,x,none\nc,,not_in_table,\nd,4,x,dob_days\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let truth = read_truth_rows(&p).unwrap_or_else(|e| panic!("{e}"));
        let rec = |id: &str, fields: usize| Record {
            reference: id.into(),
            first_name: (fields > 0).then(|| "A".into()),
            last_name: (fields > 1).then(|| "B".into()),
            address: (fields > 2).then(|| "1 X ST".into()),
            ..Record::default()
        };
        let records = [rec("a", 3), rec("b", 3), rec("c", 1), rec("d", 2)];
        let ds = [
            d("a", Tier::Exact, &[1], &[1, 9], 0),
            d("b", Tier::Proposed, &[7], &[7, 2], 3),
            d("c", Tier::None, &[], &[], 0),
            d("d", Tier::None, &[], &[5], 0),
        ];
        let r = Report::of(&ds, &records, &truth);
        assert_eq!(r.pair_completeness(), Some(2.0 / 3.0));
        assert_eq!((r.no_candidate, r.truncated, r.candidates.max, r.candidates.p50), (1, 1, 2, 2));
        assert_eq!((r.rich.in_index, r.rich.exact_right), (2, 1));
        assert_eq!(r.by_kind["blank_phone"].exact_right, 1);
        assert_eq!(r.by_kind["typo_first"].records, 1);
        assert_eq!(r.by_kind["dob_days"].reached, 0);
        // b has no errors: counted under its variant
        assert_eq!(r.by_kind["x"].proposed_wrong, 1);
        assert_eq!(r.by_kind["not_in_table"].none, 1);
        let text = r.render();
        assert!(text.contains("pair completeness 0.6667 (2 of 3"), "{text}");
        assert!(text.contains("no candidate 1; truncated 1"), "{text}");
        assert!(
            text.contains("0 errors 1.0000 (1 of 1), 1 errors 0.0000 (0 of 1), 2 errors 1.0000 (1 of 1)"),
            "{text}"
        );
    }
}
