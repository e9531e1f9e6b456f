//! Measuring blocking and decisions against a labelled truth file (`lake match --truth`): pair
//! completeness (did the true person reach scoring), candidates per record, records with no
//! candidate or a cut candidate list, exact-tier recall where a record carries enough to decide,
//! and every figure per error kind. Figures only: no record values leave this module.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::path::Path;

use crate::index::{IndexError, PersonIndex};
use crate::matcher::{Decision, Matcher, Tier};
use crate::model::{BlockingKind, Record};
use crate::rules::Rules;

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

/// What one blocking key kind costs and finds (`lake match --truth --by-key`), as if every record
/// asked it (each kind a record has the values for) and the whole file were one query: a run asks
/// the later passes' kinds only for the records left open, and a key once per group of records
/// (`matcher::GROUP`). The pairs a kind finds do not depend on that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyKindRow {
    pub kind: BlockingKind,
    /// 1-based pass of the rules that asks the kind.
    pub pass: usize,
    /// Distinct keys of the kind among the records (a record without the kind's values has none).
    pub keys: usize,
    /// Persons found through those keys: the rows the index returns (a person holds one key
    /// of a kind).
    pub rows: usize,
    /// Keys that find more persons than `blocking.max_candidates`: wide keys, which find nobody
    /// in a run (`PersonIndex::candidates`).
    pub wide_keys: usize,
    /// True pairs the kind finds: the record's key of this kind is a key of its true person.
    pub pairs: usize,
    /// True pairs no other kind of the rules finds.
    pub only: usize,
}

/// The true pairs [`by_key`] finds through no key a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unfound {
    /// Found by no kind (a true person missing from the index counts here).
    pub by_no_kind: usize,
    /// Found only through wide keys, which a run leaves out.
    pub only_by_wide_keys: usize,
}

/// Per blocking key kind of `rules` (in pass order): keys, rows, wide keys, and the true pairs
/// it finds and that only it finds, by asking `index` for each kind's keys once, wide keys
/// included. Also returns the true pairs that no kind finds and those that only wide keys find.
/// The rules name a kind in one pass only (`rules.rs`), so a pair's finders are distinct kinds.
/// Figures only: no key or value leaves here.
pub async fn by_key(
    rules: &Rules,
    index: &dyn PersonIndex,
    records: &[Record],
    truth_rows: &HashMap<String, TruthRow>,
) -> Result<(Vec<KeyKindRow>, Unfound), IndexError> {
    let true_person: Vec<Option<i64>> =
        records.iter().map(|r| truth_rows.get(&r.reference).and_then(|t| t.person)).collect();
    // per record: how many kinds find its true person, and the row of the last one
    let mut finders: Vec<(usize, usize)> = vec![(0, 0); records.len()];
    // per record: is its true person found through a key that is not wide?
    let mut narrow = vec![false; records.len()];
    let max = rules.blocking.max_candidates;
    let mut rows = Vec::new();
    let kinds =
        rules.blocking.passes.iter().enumerate().flat_map(|(p, ks)| ks.iter().map(move |k| (p + 1, *k)));
    let every: Vec<usize> = (0..records.len()).collect();
    for (pass, kind) in kinds {
        // each record's key of the kind (none or one), numbered as the matcher numbers a pass's
        let mut rec_keys: Vec<Vec<u32>> = vec![Vec::new(); records.len()];
        let keys = Matcher::number_keys(&[kind], records, &every, 0, &mut rec_keys);
        let rec_key = rec_keys.iter().map(|k| k.first().copied());
        // every holder, so that the table shows what the wide keys hold
        let found = if keys.is_empty() { Default::default() } else { index.candidates(&keys, None).await? };
        let mut holders: Vec<(u32, i64)> =
            found.hits.iter().map(|&(k, p)| (k, found.persons[p as usize].person_id)).collect();
        holders.sort_unstable();
        let mut per_key = vec![0usize; keys.len()];
        for &(k, _) in &holders {
            per_key[k as usize] += 1;
        }
        let row_no = rows.len();
        let mut pairs = 0;
        for (i, (k, t)) in rec_key.zip(&true_person).enumerate() {
            let (Some(k), Some(t)) = (k, t) else { continue };
            if holders.binary_search(&(k, *t)).is_ok() {
                pairs += 1;
                narrow[i] |= per_key[k as usize] <= max;
                finders[i] = (finders[i].0 + 1, row_no);
            }
        }
        rows.push(KeyKindRow {
            kind,
            pass,
            keys: keys.len(),
            rows: holders.len(),
            wide_keys: per_key.iter().filter(|&&n| n > max).count(),
            pairs,
            only: 0,
        });
    }
    let mut unfound = Unfound::default();
    for ((&(n, last), t), narrow) in finders.iter().zip(&true_person).zip(narrow) {
        match n {
            0 if t.is_some() => unfound.by_no_kind += 1,
            0 => {}
            _ if !narrow => unfound.only_by_wide_keys += 1,
            _ => {}
        }
        if n == 1 {
            rows[last].only += 1;
        }
    }
    Ok((rows, unfound))
}

/// [`by_key`]'s table as text lines.
pub fn render_by_key(rows: &[KeyKindRow], unfound: Unfound, max_candidates: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "blocking keys (every record asking each kind it has the values for; the passes ask fewer \
         records): rows = persons found, wide = keys finding more than {max_candidates}, which a run \
         leaves out"
    );
    let _ = writeln!(
        s,
        "{:<26} {:>4} {:>7} {:>9} {:>8} {:>6} {:>10} {:>9}",
        "kind", "pass", "keys", "rows", "rows/key", "wide", "true pairs", "only this"
    );
    for r in rows {
        let name =
            serde_json::to_value(r.kind).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        let _ = writeln!(
            s,
            "{name:<26} {:>4} {:>7} {:>9} {:>8.2} {:>6} {:>10} {:>9}",
            r.pass,
            r.keys,
            r.rows,
            r.rows as f64 / r.keys.max(1) as f64,
            r.wide_keys,
            r.pairs,
            r.only
        );
    }
    let _ = writeln!(s, "true pairs no kind finds: {}", unfound.by_no_kind);
    let _ = writeln!(s, "true pairs only wide keys find (none in a run): {}", unfound.only_by_wide_keys);
    s
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

    #[tokio::test]
    async fn by_key_counts_keys_rows_wide_keys_and_the_pairs_only_one_kind_finds() {
        use crate::index::MemoryIndex;
        use crate::model::Person;
        use chrono::NaiveDate;
        let dob = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        let person = |id: i64, last: &str, born, phone: &str| Person {
            person_id: id,
            first_name: Some("ANNA".into()),
            last_name: Some(last.into()),
            dob: born,
            phone: Some(phone.into()),
            ..Person::default()
        };
        let index = MemoryIndex::new(vec![
            person(1, "SMITH", dob(1980, 1, 1), "5550000001"),
            person(2, "JONES", dob(1981, 2, 2), "5550000002"),
            person(3, "BROWN", dob(1982, 3, 3), "5550000003"),
            // twins: one last name and birth date, two persons
            person(4, "GREEN", dob(1990, 9, 9), "5550000004"),
            person(5, "GREEN", dob(1990, 9, 9), "5550000005"),
        ]);
        let rec = |id: &str, last: &str, born, phone: Option<&str>| Record {
            reference: id.into(),
            first_name: Some("ANNA".into()),
            last_name: Some(last.into()),
            dob: born,
            phone: phone.map(String::from),
            ..Record::default()
        };
        let records = [
            // found by both kinds
            rec("a", "SMITH", dob(1980, 1, 1), Some("555-000-0001")),
            // the same key as a: counted once
            rec("a2", "SMITH", dob(1980, 1, 1), None),
            // a last-name typo: only the phone finds it
            rec("b", "JONSE", dob(1981, 2, 2), Some("5550000002")),
            // nothing right: no kind finds it
            rec("c", "BRAUN", dob(1983, 3, 3), Some("5559999999")),
            // nobody to find; its key finds both twins
            rec("d", "GREEN", dob(1990, 9, 9), None),
            // a true person the index does not hold: found by no kind
            rec("e", "WHITE", dob(1970, 7, 7), None),
            // a twin, found only through d's wide key
            rec("f", "GREEN", dob(1990, 9, 9), None),
        ];
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("t.csv");
        std::fs::write(&p, "record_id,true_person_id\na,1\na2,1\nb,2\nc,3\nd,\ne,99\nf,4\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let truth = read_truth_rows(&p).unwrap_or_else(|e| panic!("{e}"));
        let mut rules = Rules::builtin();
        rules.blocking.passes = vec![vec![BlockingKind::LastNameDob], vec![BlockingKind::Phone]];
        rules.blocking.max_candidates = 1;
        let (rows, unfound) =
            by_key(&rules, &index, &records, &truth).await.unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<_> =
            rows.iter().map(|r| (r.kind, r.pass, r.keys, r.rows, r.wide_keys, r.pairs, r.only)).collect();
        assert_eq!(
            got,
            vec![
                // keys SMITH, JONSE, BRAUN, GREEN (d and f), WHITE; rows SMITH 1 + GREEN 2; a, a2
                // and f found, a2 and f by nothing else
                (BlockingKind::LastNameDob, 1, 5, 3, 1, 3, 2),
                // phones of a, b, c; a and b found, b by nothing else
                (BlockingKind::Phone, 2, 3, 2, 0, 2, 1),
            ]
        );
        assert_eq!(unfound, Unfound { by_no_kind: 2, only_by_wide_keys: 1 }, "c and e; f");
        let text = render_by_key(&rows, unfound, 1);
        assert!(text.contains("last_name_dob"), "{text}");
        assert!(text.contains("true pairs no kind finds: 2"), "{text}");
        assert!(text.contains("true pairs only wide keys find (none in a run): 1"), "{text}");
    }
}
