//! Learning the comparison weights from the county's own data (`lake rules train`), as the
//! Fellegi-Sunter literature does: for every comparison level, `u` (how often two different
//! persons reach it) from random record/person pairs, `m` (how often a record and its own person
//! reach it) by expectation-maximisation over the blocked pairs with `u` held fixed, and the
//! weight `log2(m / u)`. The exact tier's score threshold is the lowest score whose pairs reach
//! the asked precision (estimated from the model, or measured when a truth file is given).
//! Deterministic: a seeded generator, fixed iteration order, no threads.

use std::collections::{BTreeMap, HashMap};

use crate::index::{IndexError, MemoryIndex, PersonIndex};
use crate::matcher::{Matcher, Prepared};
use crate::model::{BlockingKey, BlockingKind, Record};
use crate::rules::{Field, Rules};

/// How to train.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Random record/person pairs for `u`.
    pub random_pairs: usize,
    /// Seed of the random pairs (same seed, same data: same weights).
    pub seed: u64,
    /// EM iterations at most (stops earlier once no `m` moves by more than 1e-6).
    pub iterations: usize,
    /// Precision the exact tier's score threshold must reach.
    pub exact_precision: f64,
    /// Precision the proposed tier's score threshold must reach.
    pub proposed_precision: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            random_pairs: 2_000_000,
            seed: 20_240_917,
            iterations: 100,
            exact_precision: 0.999,
            proposed_precision: 0.98,
        }
    }
}

/// One comparison level's estimates.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelEstimate {
    pub field: Field,
    /// The level's name, `else`, or `missing` (weight 0: a missing value is no evidence).
    pub level: String,
    pub m: f64,
    pub u: f64,
    pub weight: f64,
    /// Blocked pairs at this level.
    pub blocked_pairs: u64,
    /// Random pairs at this level.
    pub random_pairs: u64,
    /// Merged with the level above it: its own estimate weighed more than the stronger level's.
    pub pooled: bool,
}

/// The result of a training run.
#[derive(Debug, Clone, PartialEq)]
pub struct Training {
    pub levels: Vec<LevelEstimate>,
    /// Estimated share of blocked pairs that are matches.
    pub lambda: f64,
    pub blocked_pairs: u64,
    pub iterations: usize,
    /// The exact tier's score threshold, and the precision reached at it (how it was measured:
    /// `model` or `truth`).
    pub exact_min_score: f64,
    pub exact_precision: f64,
    /// The proposed tier's threshold and the precision at it: of the records' best candidates
    /// (estimated), or, after [`tune_proposed`], of every exact and proposed pair (measured).
    pub proposed_min_score: f64,
    pub proposed_precision: f64,
    pub precision_from: &'static str,
    /// Whether [`tune_proposed`] chose the proposed threshold by matching the records.
    pub proposed_measured: bool,
}

/// A comparison vector: per comparison, the level index (levels, then `else`, then `missing`).
type Pattern = [u8; Field::ALL.len()];

/// splitmix64: a small, fast, seedable generator (same sequence on every platform).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Per comparison, how many levels it has in all (its levels, `else`, `missing`).
fn sizes(rules: &Rules) -> Vec<usize> {
    rules.comparisons.iter().map(|c| c.levels.len() + 2).collect()
}

/// Counts per level index, per comparison, over a pattern histogram, weighted by `w(pattern)`.
fn marginals(hist: &[(Pattern, u64)], sizes: &[usize], w: impl Fn(&Pattern) -> f64) -> Vec<Vec<f64>> {
    let mut out: Vec<Vec<f64>> = sizes.iter().map(|&n| vec![0.0; n]).collect();
    for (p, n) in hist {
        let x = w(p) * *n as f64;
        for (c, slot) in out.iter_mut().enumerate() {
            slot[usize::from(p[c])] += x;
        }
    }
    out
}

/// Share of each level among the non-missing values, with 0.5 added to every count (a level
/// never seen is rare, not impossible).
fn shares(counts: &[f64]) -> Vec<f64> {
    let n = counts.len() - 1; // the last is `missing`
    let total: f64 = counts[..n].iter().sum::<f64>() + 0.5 * n as f64;
    counts[..n].iter().map(|c| (c + 0.5) / total).collect()
}

/// The blocked pairs of every record (candidates of every key kind of the rules, all passes) as
/// a histogram of comparison vectors, and the pairs themselves for the truth check.
async fn blocked(m: &Matcher, index: &MemoryIndex, records: &[Record]) -> Result<Vec<Pair>, IndexError> {
    let kinds: Vec<BlockingKind> = m.rules.blocking.all_kinds();
    let mut pairs = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let keys: Vec<BlockingKey> = kinds.iter().filter_map(|k| BlockingKey::of_record(*k, r)).collect();
        if keys.is_empty() {
            continue;
        }
        // every holder of every key, wide ones included, as before migration 0009 (the shipped
        // rules are this trainer's output); the cut below keeps max_candidates
        let mut cands = index.candidates(&keys, None).await?.persons;
        cands.sort_by_key(|p| p.person_id);
        cands.dedup_by_key(|p| p.person_id);
        cands.truncate(m.rules.blocking.max_candidates);
        let rp = Prepared::record(r);
        for p in &cands {
            let pattern = m.pattern(&rp, &Prepared::person(p));
            let shared = |k: &BlockingKind| {
                keys.iter().any(|x| x.kind() == *k && BlockingKey::of_person(*k, p).as_ref() == Some(x))
            };
            let contact = kinds.iter().filter(|k| CONTACT_KEYS.contains(k)).any(shared);
            let identity = kinds.iter().filter(|k| IDENTITY_KEYS.contains(k)).any(shared);
            pairs.push(Pair { record: i, person: p.person_id, pattern, contact, identity });
        }
    }
    Ok(pairs)
}

/// The key kinds made of contact fields only (address, ZIP, phone): pairs found by them say
/// something about names and dates.
const CONTACT_KEYS: [BlockingKind; 5] = [
    BlockingKind::Address,
    BlockingKind::AddressZip,
    BlockingKind::Phone,
    BlockingKind::ZipHouseStreet,
    BlockingKind::PhoneLast7,
];

/// The key kinds made of names and dates only: pairs found by them say something about contact
/// fields. The kinds that mix both (city or ZIP with a date or names) are in neither list: the
/// pairs they find agree on a contact field and on an identity field by construction.
const IDENTITY_KEYS: [BlockingKind; 10] = [
    BlockingKind::LastNameDob,
    BlockingKind::FirstNameDob,
    BlockingKind::LastFirstName,
    BlockingKind::NamesYear,
    BlockingKind::NamesMonthDay,
    BlockingKind::LastSoundexDob,
    BlockingKind::FirstSoundexDob,
    BlockingKind::LastSoundexYear,
    BlockingKind::FirstSoundexMonthDay,
    BlockingKind::NamesSoundex,
];

/// A blocked pair: its comparison vector and which kinds of key found it.
struct Pair {
    record: usize,
    person: i64,
    pattern: Pattern,
    contact: bool,
    identity: bool,
}

/// The histogram of the comparison vectors of `pairs` (sorted: the sums come out the same on
/// every run).
fn histogram<'a>(pairs: impl Iterator<Item = &'a Pair>) -> Vec<(Pattern, u64)> {
    let mut hist: HashMap<Pattern, u64> = HashMap::new();
    for p in pairs {
        *hist.entry(p.pattern).or_default() += 1;
    }
    let mut hist: Vec<(Pattern, u64)> = hist.into_iter().collect();
    hist.sort_unstable();
    hist
}

/// `u` per level from random record/person pairs.
fn random_u(
    m: &Matcher,
    index: &MemoryIndex,
    records: &[Record],
    o: &TrainOptions,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let persons = index.persons();
    let mut rng = SplitMix(o.seed);
    let prepared: Vec<Prepared> = records.iter().map(Prepared::record).collect();
    let mut hist: HashMap<Pattern, u64> = HashMap::new();
    for _ in 0..o.random_pairs {
        let (r, p) = (rng.below(records.len()), rng.below(persons.len()));
        *hist.entry(m.pattern(&prepared[r], &Prepared::person(&persons[p]))).or_default() += 1;
    }
    let mut hist: Vec<(Pattern, u64)> = hist.into_iter().collect();
    hist.sort_unstable();
    let counts = marginals(&hist, &sizes(&m.rules), |_| 1.0);
    (counts.iter().map(|c| shares(c)).collect(), counts)
}

/// `m` with no level below [`M_FLOOR`], renormalised: a level that the matches of this data
/// never reach (sex disagreeing, on generated data) is rare in real data, not impossible, and
/// must not weigh as if it were.
fn floored(m: &[f64]) -> Vec<f64> {
    let raised: Vec<f64> = m.iter().map(|x| x.max(M_FLOOR)).collect();
    let total: f64 = raised.iter().sum();
    raised.iter().map(|x| x / total).collect()
}

/// The lowest `m` of a level (one match in a thousand).
const M_FLOOR: f64 = 0.001;

/// Probability that a pair with this vector is a match, under (`lambda`, `m`, `u`).
fn posterior(p: &Pattern, lambda: f64, m: &[Vec<f64>], u: &[Vec<f64>], active: &[bool]) -> f64 {
    let (mut lm, mut lu) = (lambda.ln(), (1.0 - lambda).ln());
    for (c, &l) in p.iter().enumerate().take(m.len()) {
        let l = usize::from(l);
        if active[c] && l < m[c].len() {
            lm += m[c][l].ln();
            lu += u[c][l].ln();
        }
    }
    1.0 / (1.0 + (lu - lm).exp())
}

/// EM for `m` of the `active` comparisons and the match share, with `u` fixed; returns
/// (lambda, m, iterations run). Comparisons whose field found the pairs are left out (`active`
/// false): among pairs blocked on a field, agreement on it says nothing about a match.
fn em(
    hist: &[(Pattern, u64)],
    u: &[Vec<f64>],
    sizes: &[usize],
    active: &[bool],
    iterations: usize,
) -> (f64, Vec<Vec<f64>>, usize) {
    // start: the strongest level likely for a match, the rest sharing what is left
    let mut m: Vec<Vec<f64>> = sizes
        .iter()
        .map(|&n| {
            let k = n - 1;
            (0..k).map(|l| if l == 0 { 0.9 } else { 0.1 / (k - 1).max(1) as f64 }).collect()
        })
        .collect();
    let mut lambda = 0.1;
    for it in 0..iterations {
        let g = |p: &Pattern| posterior(p, lambda, &m, u, active);
        let total: f64 = hist.iter().map(|(_, n)| *n as f64).sum();
        let matched = marginals(hist, sizes, g);
        let new_lambda = hist.iter().map(|(p, n)| g(p) * *n as f64).sum::<f64>() / total.max(1.0);
        let new_m: Vec<Vec<f64>> = matched.iter().map(|c| floored(&shares(c))).collect();
        let moved =
            new_m.iter().flatten().zip(m.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        m = new_m;
        lambda = new_lambda.clamp(1e-6, 1.0 - 1e-6);
        if moved < 1e-6 {
            return (lambda, m, it + 1);
        }
    }
    (lambda, m, iterations)
}

/// The match share of the blocked pairs under fixed `m` and `u` (EM on the share alone).
fn match_share(hist: &[(Pattern, u64)], m: &[Vec<f64>], u: &[Vec<f64>], active: &[bool]) -> f64 {
    let total: f64 = hist.iter().map(|(_, n)| *n as f64).sum::<f64>().max(1.0);
    let mut lambda = 0.5;
    for _ in 0..200 {
        let next =
            hist.iter().map(|(p, n)| posterior(p, lambda, m, u, active) * *n as f64).sum::<f64>() / total;
        let done = (next - lambda).abs() < 1e-9;
        lambda = next.clamp(1e-6, 1.0 - 1e-6);
        if done {
            break;
        }
    }
    lambda
}

/// Weights `log2(m/u)` per level (then `else`), pooling a level into the one above while it
/// would weigh more (the rules require weights that never increase down the list).
fn weights(m: &[f64], u: &[f64]) -> Vec<(f64, f64, f64, bool)> {
    // groups of adjacent levels: (m, u, members)
    let mut groups: Vec<(f64, f64, usize)> = Vec::new();
    for l in 0..m.len() {
        groups.push((m[l], u[l], 1));
        while groups.len() > 1 {
            let n = groups.len();
            let w = |g: &(f64, f64, usize)| (g.0 / g.1).log2();
            if w(&groups[n - 1]) <= w(&groups[n - 2]) {
                break;
            }
            let last = groups.pop().unwrap_or_default();
            if let Some(prev) = groups.last_mut() {
                *prev = (prev.0 + last.0, prev.1 + last.1, prev.2 + last.2);
            }
        }
    }
    let mut out = Vec::with_capacity(m.len());
    for (gm, gu, k) in groups {
        let w = (gm / gu).log2();
        for j in 0..k {
            let l = out.len();
            out.push((m[l], u[l], (w * 100.0).round() / 100.0, k > 1 && j > 0));
        }
    }
    out
}

/// Trains the weights of `rules`' comparisons on `records` against the persons of `index`. With
/// `truth` (record reference -> true person), thresholds are chosen on measured precision.
pub async fn train(
    rules: &Rules,
    index: &MemoryIndex,
    records: &[Record],
    truth: Option<&HashMap<String, Option<i64>>>,
    o: &TrainOptions,
) -> Result<Training, IndexError> {
    let m0 = Matcher::new(rules.clone());
    let sizes = sizes(rules);
    let (u, random_counts) = random_u(&m0, index, records, o);
    let pairs = blocked(&m0, index, records).await?;
    let hist = histogram(pairs.iter());
    // two sessions: names, dob and sex learnt on the pairs contact keys found; address, city,
    // ZIP, phone and sex on the pairs name/date keys found (Splink's way around blocking bias)
    let of =
        |fs: &[Field]| -> Vec<bool> { rules.comparisons.iter().map(|c| fs.contains(&c.field)).collect() };
    let identity_fields = of(&[Field::FirstName, Field::LastName, Field::Dob, Field::Sex]);
    let contact_fields = of(&[Field::Address, Field::City, Field::Zip, Field::Phone, Field::Sex]);
    let (_, m_id, it_a) =
        em(&histogram(pairs.iter().filter(|p| p.contact)), &u, &sizes, &identity_fields, o.iterations);
    let (_, m_ct, it_b) =
        em(&histogram(pairs.iter().filter(|p| p.identity)), &u, &sizes, &contact_fields, o.iterations);
    let m: Vec<Vec<f64>> = (0..sizes.len())
        .map(|c| if identity_fields[c] && !contact_fields[c] { m_id[c].clone() } else { m_ct[c].clone() })
        .collect();
    let all = vec![true; sizes.len()];
    let lambda = match_share(&hist, &m, &u, &all);
    let iterations = it_a.max(it_b);
    let blocked_counts = marginals(&hist, &sizes, |_| 1.0);
    let mut levels = Vec::new();
    for (c, comp) in rules.comparisons.iter().enumerate() {
        let w = weights(&m[c], &u[c]);
        let names = comp.levels.iter().map(|l| l.name().to_string()).chain(["else".to_string()]);
        for (l, (name, (mm, uu, weight, pooled))) in names.zip(w).enumerate() {
            levels.push(LevelEstimate {
                field: comp.field,
                level: name,
                m: mm,
                u: uu,
                weight,
                blocked_pairs: blocked_counts[c][l] as u64,
                random_pairs: random_counts[c][l] as u64,
                pooled,
            });
        }
        let miss = sizes[c] - 1;
        levels.push(LevelEstimate {
            field: comp.field,
            level: "missing".into(),
            m: f64::NAN,
            u: f64::NAN,
            weight: 0.0,
            blocked_pairs: blocked_counts[c][miss] as u64,
            random_pairs: random_counts[c][miss] as u64,
            pooled: false,
        });
    }
    let trained = apply(rules, &levels);
    let score = |p: &Pattern| pattern_score(&trained, p);
    // (score, probability or truth of being a match) per blocked pair, best first
    let mut scored: Vec<(f64, f64)> = match truth {
        Some(t) => pairs
            .iter()
            .map(|p| {
                let ok = t.get(&records[p.record].reference).copied().flatten() == Some(p.person);
                (score(&p.pattern), f64::from(u8::from(ok)))
            })
            .collect(),
        None => {
            pairs.iter().map(|p| (score(&p.pattern), posterior(&p.pattern, lambda, &m, &u, &all))).collect()
        }
    };
    // the proposed tier decides on each record's best candidates: its threshold is chosen on
    // the best pair per record (exact and proposed together must reach the precision)
    let mut best: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
    for (p, sc) in pairs.iter().zip(&scored) {
        let e = best.entry(p.record).or_insert(*sc);
        if sc.0 > e.0 {
            *e = *sc;
        }
    }
    let mut best: Vec<(f64, f64)> = best.into_values().collect();
    best.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (exact_min_score, exact_precision) = threshold(&scored, o.exact_precision);
    let (proposed_min_score, proposed_precision) = threshold(&best, o.proposed_precision);
    Ok(Training {
        levels,
        lambda,
        blocked_pairs: hist.iter().map(|(_, n)| n).sum(),
        iterations,
        exact_min_score,
        exact_precision,
        proposed_min_score,
        proposed_precision,
        precision_from: if truth.is_some() { "truth" } else { "model" },
        proposed_measured: false,
    })
}

/// With a truth file, the proposed tier's `min_score` chosen on what `lake match --truth`
/// measures: the precision of every exact and proposed pair (a record proposes up to the tier's
/// `max_candidates` persons, so the best-candidate estimate of [`train`] undershoots it). The
/// records are matched with the written rules `text` at each threshold from that estimate up,
/// in steps of 0.25, until the pairs reach `want`; at the exact threshold at the latest. Returns
/// the rules at the chosen threshold; `t` records it and its precision.
pub async fn tune_proposed(
    text: &str,
    t: &mut Training,
    index: &MemoryIndex,
    records: &[Record],
    truth: &HashMap<String, Option<i64>>,
    want: f64,
) -> Result<String, IndexError> {
    use crate::evaluate::quality;
    use crate::matcher::Tier;
    let bad = |e: String| IndexError::Load(format!("trained rules: {e}"));
    let records: std::sync::Arc<[Record]> = records.to_vec().into();
    // the scan ends at the exact threshold as written (two decimals), so it always ends
    let cap = round2(t.exact_min_score);
    let mut min = round2(t.proposed_min_score).min(cap);
    loop {
        let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| bad(format!("{e}")))?;
        doc["tiers"]["proposed"]["min_score"] = toml_edit::value(min);
        let out = doc.to_string();
        let rules = Rules::from_toml_str(&out, "trained rules").map_err(|e| bad(e.to_string()))?;
        let m = std::sync::Arc::new(Matcher::new(rules));
        let (ds, _) = m.match_batch(index, records.clone()).await?;
        let precision = quality(&ds, truth, &[Tier::Exact, Tier::Proposed]).precision();
        if precision >= want || min >= cap {
            (t.proposed_min_score, t.proposed_precision, t.proposed_measured) = (min, precision, true);
            return Ok(out);
        }
        min = round2(min + 0.25).min(cap);
    }
}

/// The lowest score at which the pairs scoring at least it reach `want` precision, and that
/// precision (`scored` best first: (score, match probability or 0/1)).
fn threshold(scored: &[(f64, f64)], want: f64) -> (f64, f64) {
    let (mut sum, mut best) = (0.0, (scored.first().map_or(0.0, |s| s.0), 1.0));
    for (n, (s, p)) in scored.iter().enumerate() {
        sum += p;
        let next_differs = scored.get(n + 1).is_none_or(|x| x.0 < *s);
        let precision = sum / (n + 1) as f64;
        if next_differs && precision >= want {
            best = (*s, precision);
        }
    }
    ((best.0 * 100.0).ceil() / 100.0, best.1)
}

/// A pattern's score under `rules`.
fn pattern_score(rules: &Rules, p: &Pattern) -> f64 {
    rules
        .comparisons
        .iter()
        .enumerate()
        .map(|(c, comp)| {
            let l = usize::from(p[c]);
            match l.cmp(&comp.levels.len()) {
                std::cmp::Ordering::Less => comp.levels[l].weight,
                std::cmp::Ordering::Equal => comp.else_weight,
                std::cmp::Ordering::Greater => comp.missing,
            }
        })
        .sum()
}

/// `rules` with the trained weights (every level, `else`; `missing` 0).
pub fn apply(rules: &Rules, levels: &[LevelEstimate]) -> Rules {
    let mut r = rules.clone();
    let by: HashMap<(Field, &str), f64> =
        levels.iter().map(|l| ((l.field, l.level.as_str()), l.weight)).collect();
    for c in &mut r.comparisons {
        for l in &mut c.levels {
            if let Some(w) = by.get(&(c.field, l.name())) {
                l.weight = *w;
            }
        }
        c.else_weight = by.get(&(c.field, "else")).copied().unwrap_or(c.else_weight);
        c.missing = 0.0;
    }
    r
}

/// The trained rules as a TOML file: `base` (the rules file's text, comments and nicknames kept)
/// with every weight, `else` and `missing` replaced, exact rules with a `min_score` and the
/// `score_threshold` rule at the exact threshold, the proposed `min_score` and `settle_score`.
pub fn write_rules(base: &str, t: &Training) -> Result<String, String> {
    use toml_edit::{value, DocumentMut, Item};
    let mut doc: DocumentMut = base.parse().map_err(|e| format!("rules: {e}"))?;
    let by: BTreeMap<(Field, &str), f64> =
        t.levels.iter().map(|l| ((l.field, l.level.as_str()), l.weight)).collect();
    let comps =
        doc.get_mut("comparison").and_then(Item::as_array_of_tables_mut).ok_or("rules: no [[comparison]]")?;
    for c in comps.iter_mut() {
        let field: Field = c
            .get("field")
            .and_then(Item::as_str)
            .and_then(|f| Field::ALL.into_iter().find(|x| x.as_str() == f))
            .ok_or("rules: a comparison without a known field")?;
        if let Some(levels) = c.get_mut("levels").and_then(Item::as_array_mut) {
            for l in levels.iter_mut() {
                let Some(tbl) = l.as_inline_table_mut() else { continue };
                let name = tbl
                    .get("name")
                    .or_else(|| tbl.get("kind"))
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string();
                if let Some(w) = by.get(&(field, name.as_str())) {
                    tbl.insert("weight", (*w).into());
                }
            }
        }
        if let Some(w) = by.get(&(field, "else")) {
            c.insert("else", value(*w));
        }
        c.insert("missing", value(0.0));
    }
    let exact = round2(t.exact_min_score);
    if let Some(rules) = doc["tiers"]["exact"].get_mut("rules").and_then(Item::as_array_of_tables_mut) {
        let mut has = false;
        for r in rules.iter_mut() {
            if r.contains_key("min_score") {
                r.insert("min_score", value(exact));
            }
            if r.get("name").and_then(Item::as_str) == Some("score_threshold") {
                r.insert("require", Item::Value(agreeing(&t.levels).into()));
                has = true;
            }
        }
        if !has {
            let mut r = toml_edit::Table::new();
            r.insert("name", value("score_threshold"));
            r.insert("min_score", value(exact));
            r.insert("require", Item::Value(agreeing(&t.levels).into()));
            rules.push(r);
        }
    }
    doc["tiers"]["proposed"]["min_score"] = value(round2(t.proposed_min_score));
    if doc["blocking"].get("settle_score").is_some() {
        // settled: a proposal that would be exact but for its margin, and by the margin more
        let margin = doc["tiers"]["exact"].get("min_margin").and_then(Item::as_float).unwrap_or(8.0);
        doc["blocking"]["settle_score"] = value(round2(exact + margin));
    }
    let out = doc.to_string();
    Rules::from_toml_str(&out, "trained rules").map_err(|e| e.to_string())?;
    Ok(out)
}

/// The `require` of the score rule: first name, last name and birth date each at any level but
/// `else` (missing is allowed). A name or date that disagrees outright (a surname change, another
/// birth date) goes to a reviewer however high the rest scores.
fn agreeing(levels: &[LevelEstimate]) -> toml_edit::InlineTable {
    let mut req = toml_edit::InlineTable::new();
    for f in [Field::FirstName, Field::LastName, Field::Dob] {
        let names: toml_edit::Array =
            levels.iter().filter(|l| l.field == f && l.level != "else").map(|l| l.level.as_str()).collect();
        req.insert(f.as_str(), names.into());
    }
    req
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The training report: every level's m, u, weight and pair counts, the thresholds.
pub fn report(t: &Training) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "blocked pairs {}, EM iterations {}, estimated match share {:.4}",
        t.blocked_pairs, t.iterations, t.lambda
    );
    let _ = writeln!(
        s,
        "{:<11} {:<16} {:>10} {:>10} {:>8} {:>10} {:>10}",
        "field", "level", "m", "u", "weight", "blocked", "random"
    );
    for l in &t.levels {
        let f = |x: f64| if x.is_nan() { "-".to_string() } else { format!("{x:.6}") };
        let _ = writeln!(
            s,
            "{:<11} {:<16} {:>10} {:>10} {:>8.2} {:>10} {:>10}{}",
            l.field.as_str(),
            l.level,
            f(l.m),
            f(l.u),
            l.weight,
            l.blocked_pairs,
            l.random_pairs,
            if l.pooled { "  (pooled with the level above)" } else { "" }
        );
    }
    let _ = writeln!(
        s,
        "exact tier: min_score {:.2} (pair precision {:.4}, {}); proposed: min_score {:.2} ({} {:.4})",
        t.exact_min_score,
        t.exact_precision,
        t.precision_from,
        t.proposed_min_score,
        if t.proposed_measured {
            "exact+proposed pair precision, measured by matching the records:"
        } else {
            "best-candidate precision"
        },
        t.proposed_precision
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Person;
    use chrono::NaiveDate;

    /// 400 synthetic persons (a few names, birth dates spread) and, for the first 150, a record
    /// with a typo or a missing field every few rows.
    fn data() -> (MemoryIndex, Vec<Record>) {
        let (firsts, lasts) = (
            ["ANNA", "JOHN", "MARIA", "WEI", "OMAR", "LUCY"],
            ["SMITH", "GARCIA", "NGUYEN", "OKAFOR", "BROWN"],
        );
        let persons: Vec<Person> = (0..400i64)
            .map(|i| Person {
                person_id: 1000 + i,
                first_name: Some(firsts[(i % 6) as usize].into()),
                last_name: Some(lasts[(i / 6 % 5) as usize].into()),
                dob: NaiveDate::from_ymd_opt(
                    1940 + (i % 60) as i32,
                    1 + (i % 12) as u32,
                    1 + (i % 27) as u32,
                ),
                sex: Some(if i % 2 == 0 { "F" } else { "M" }.into()),
                address: Some(format!("{} ELM ST", i + 1).into()),
                city: Some("LOWELL".into()),
                zip: Some("01850".into()),
                phone: Some(format!("617-555-{:04}", i).into()),
                ..Person::default()
            })
            .collect();
        let records = persons[..150]
            .iter()
            .enumerate()
            .map(|(i, p)| Record {
                reference: format!("r{i}"),
                first_name: p.first_name.as_deref().map(|f| {
                    if i % 5 == 0 {
                        format!("{f}X")
                    } else {
                        f.to_string()
                    }
                }),
                last_name: p.last_name.as_deref().map(String::from),
                dob: p.dob.filter(|_| i % 7 != 0),
                sex: p.sex.as_deref().map(String::from),
                address: p.address.as_deref().map(String::from).filter(|_| i % 3 != 0),
                city: p.city.as_deref().map(String::from),
                zip: p.zip.as_deref().map(String::from),
                phone: p.phone.as_deref().map(String::from).filter(|_| i % 4 != 0),
            })
            .collect();
        (MemoryIndex::new(persons), records)
    }

    #[tokio::test]
    async fn training_is_deterministic_and_learns_agreement_as_evidence() {
        let (index, records) = data();
        let o = TrainOptions { random_pairs: 20_000, ..TrainOptions::default() };
        let rules = Rules::builtin();
        let a = train(&rules, &index, &records, None, &o).await.unwrap_or_else(|e| panic!("{e}"));
        let b = train(&rules, &index, &records, None, &o).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "same data and seed, same result");
        let w = |f: Field, l: &str| a.levels.iter().find(|x| x.field == f && x.level == l).map(|x| x.weight);
        for f in [Field::Dob, Field::Phone, Field::Address] {
            let (agree, disagree) = (w(f, "exact").unwrap_or(0.0), w(f, "else").unwrap_or(0.0));
            assert!(agree > 3.0 && disagree < 0.0, "{f:?}: exact {agree}, else {disagree}");
        }
        assert_eq!(w(Field::Dob, "missing"), Some(0.0));
        // weights never increase down a comparison's levels, so the written rules validate
        let text =
            write_rules(include_str!("../../../config/matching.toml"), &a).unwrap_or_else(|e| panic!("{e}"));
        let trained = Rules::from_toml_str(&text, "t").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            text.contains("[nicknames]") && text.contains("# Matching rules"),
            "comments and nicknames kept"
        );
        assert!(trained.tiers.exact.rules.iter().any(|r| r.name == "score_threshold"));
        assert!(report(&a).contains("dob         exact"), "{}", report(&a));
    }

    #[tokio::test]
    async fn the_proposed_threshold_is_chosen_on_every_exact_and_proposed_pair() {
        use crate::evaluate::quality;
        use crate::matcher::Tier;
        let (index, records) = data();
        let truth: HashMap<String, Option<i64>> =
            records.iter().zip(1000..).map(|(r, p)| (r.reference.clone(), Some(p))).collect();
        let o = TrainOptions { random_pairs: 20_000, ..TrainOptions::default() };
        let mut t = train(&Rules::builtin(), &index, &records, Some(&truth), &o).await.unwrap();
        let (estimate, exact) = (round2(t.proposed_min_score), round2(t.exact_min_score));
        let text = write_rules(include_str!("../../../config/matching.toml"), &t).unwrap();
        let measured = |min: f64| {
            let text = text.clone();
            let (index, records, truth) = (&index, &records, &truth);
            async move {
                let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
                doc["tiers"]["proposed"]["min_score"] = toml_edit::value(min);
                let rules = Rules::from_toml_str(&doc.to_string(), "t").unwrap();
                let m = std::sync::Arc::new(Matcher::new(rules));
                let (ds, _) = m.match_batch(index, records.clone().into()).await.unwrap();
                quality(&ds, truth, &[Tier::Exact, Tier::Proposed]).precision()
            }
        };
        // the data's best-candidate estimate is too low for the pairs: the scan has to climb
        let want = (measured(estimate).await + 0.0001).min(1.0);
        let out = tune_proposed(&text, &mut t, &index, &records, &truth, want).await.unwrap();
        assert!(t.proposed_measured);
        let chosen = Rules::from_toml_str(&out, "t").unwrap().tiers.proposed.min_score;
        assert_eq!(chosen, t.proposed_min_score);
        assert!(chosen > estimate && chosen <= exact, "{estimate} < {chosen} <= {exact}");
        // what `lake match --truth` measures with the written rules, and the lowest that reaches it
        assert_eq!(measured(chosen).await, t.proposed_precision);
        assert!(t.proposed_precision >= want || chosen == exact, "{} < {want}", t.proposed_precision);
        assert!(measured(round2(chosen - 0.25)).await < want);
        assert!(report(&t).contains("measured by matching the records"), "{}", report(&t));
        // a precision no threshold reaches: the scan stops at the exact threshold, never loops
        t.exact_min_score += 0.004; // not on the two-decimal grid
        let out = tune_proposed(&text, &mut t, &index, &records, &truth, 1.0 + 1e-9).await.unwrap();
        assert_eq!(t.proposed_min_score, round2(t.exact_min_score));
        assert_eq!(Rules::from_toml_str(&out, "t").unwrap().tiers.proposed.min_score, t.proposed_min_score);
    }
}
