//! Scoring and deciding: every candidate gets a score (sum of the weights of the levels that
//! held) and its per-field levels as evidence; the tiers of the rules turn the scores into one
//! decision per record, naming the rule or score that fired.

use std::collections::BTreeMap;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use futures_util::future::try_join_all;

use chrono::NaiveDate;
use compact_str::CompactString;

use serde::Serialize;

use crate::compare::{date_level, text_level, Nicknames};
use crate::index::{Found, IndexError, PersonIndex};
use crate::model::{norm_compact, norm_phone, us_zip5, BlockingKey, BlockingKind, Person, Record};
use crate::rules::{Comparison, Field, LevelKind, Rule, Rules};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Exact,
    Proposed,
    None,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Exact => "exact",
            Tier::Proposed => "proposed",
            Tier::None => "none",
        }
    }
}

/// A candidate with its score and the level each field reached (no values: safe to store and show).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Scored {
    pub person_id: i64,
    pub score: f64,
    /// Level names (inline strings: no allocation per field).
    pub levels: BTreeMap<Field, CompactString>,
}

/// The matcher's decision for one record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub reference: String,
    pub tier: Tier,
    /// The exact rule, `score>=T` or the proposed rule, or why there is no match.
    pub rule: String,
    /// Exact: the one person. Proposed: the proposals, best first. None: empty.
    pub chosen: Vec<Scored>,
    /// How many candidates blocking found.
    pub candidates: usize,
    pub best_score: Option<f64>,
    /// What blocking did for this record, only when the matcher traces ([`Matcher::with_trace`]):
    /// never stored nor serialised (it names every candidate).
    #[serde(skip)]
    pub trace: Option<Box<Trace>>,
}

/// The blocking trace of one decision (`lake match --truth` measures blocking with it).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trace {
    /// Every person scored for the record (after the cut at `max_candidates`).
    pub scored: Vec<i64>,
    /// Candidates found but cut by `blocking.max_candidates`.
    pub truncated: usize,
}

/// Records per group in [`Matcher::match_batch`]: small enough that the groups of one batch
/// overlap (query, score), large enough that a query still carries a thousand keys.
pub const GROUP: usize = 1000;

/// The rules, compiled.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub rules: Rules,
    nick: Nicknames,
    /// Records per group in [`Matcher::match_batch`] ([`GROUP`] unless set).
    pub group: usize,
    /// Fill [`Decision::trace`] (off by default: then it costs one branch per record).
    trace: bool,
}

/// Identity values normalised once (per record, per candidate), not once per pair; inline
/// strings, so preparing a candidate seldom allocates.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    first: Option<CompactString>,
    last: Option<CompactString>,
    dob: Option<NaiveDate>,
    sex: Option<CompactString>,
    address: Option<CompactString>,
    city: Option<CompactString>,
    zip: Option<CompactString>,
    phone: Option<CompactString>,
}

fn n(v: Option<&str>) -> Option<CompactString> {
    v.map(norm_compact).filter(|s| !s.is_empty())
}

/// `M` or `F`; unknown (`U`, anything else) is missing, so it is no evidence either way.
fn known_sex(v: Option<&str>) -> Option<CompactString> {
    crate::model::norm_sex(v?).filter(|s| s != "U")
}

/// A US ZIP as its five digits ([`us_zip5`]); anything else (a foreign postcode) normalised
/// whole, so `SW1A 1AA` is never read as `11`.
fn zip_value(v: Option<&str>) -> Option<CompactString> {
    let v = v?;
    us_zip5(v).or_else(|| n(Some(v)))
}

impl Prepared {
    pub(crate) fn record(r: &Record) -> Self {
        Self {
            first: n(r.first_name.as_deref()),
            last: n(r.last_name.as_deref()),
            dob: r.dob,
            sex: known_sex(r.sex.as_deref()),
            address: n(r.address.as_deref()),
            city: n(r.city.as_deref()),
            zip: zip_value(r.zip.as_deref()),
            phone: r.phone.as_deref().and_then(norm_phone),
        }
    }
    /// How many values both sides have and agree on exactly (ranks candidates beyond the cap).
    fn equal_values(&self, o: &Prepared) -> usize {
        let eq = |a: &Option<CompactString>, b: &Option<CompactString>| usize::from(a.is_some() && a == b);
        eq(&self.first, &o.first)
            + eq(&self.last, &o.last)
            + usize::from(self.dob.is_some() && self.dob == o.dob)
            + eq(&self.sex, &o.sex)
            + eq(&self.address, &o.address)
            + eq(&self.city, &o.city)
            + eq(&self.zip, &o.zip)
            + eq(&self.phone, &o.phone)
    }
    pub(crate) fn person(p: &Person) -> Self {
        Self {
            first: n(p.first_name.as_deref()),
            last: n(p.last_name.as_deref()),
            dob: p.dob,
            sex: known_sex(p.sex.as_deref()),
            address: n(p.address.as_deref()),
            city: n(p.city.as_deref()),
            zip: zip_value(p.zip.as_deref()),
            phone: p.phone.as_deref().and_then(norm_phone),
        }
    }
    fn text(&self, f: Field) -> Option<&str> {
        match f {
            Field::FirstName => self.first.as_deref(),
            Field::LastName => self.last.as_deref(),
            Field::Sex => self.sex.as_deref(),
            Field::Address => self.address.as_deref(),
            Field::City => self.city.as_deref(),
            Field::Zip => self.zip.as_deref(),
            Field::Phone => self.phone.as_deref(),
            Field::Dob => None,
        }
    }
}

impl Matcher {
    pub fn new(rules: Rules) -> Self {
        let nick = Nicknames::new(&rules.nicknames);
        Self { rules, nick, group: GROUP, trace: false }
    }

    /// The same matcher, recording for every decision which persons were scored and how many
    /// candidates `max_candidates` cut ([`Decision::trace`]). Decisions are otherwise the same.
    pub fn with_trace(mut self, on: bool) -> Self {
        self.trace = on;
        self
    }

    /// The first-pass blocking keys of a record (those whose parts are all present).
    pub fn keys(&self, r: &Record) -> Vec<BlockingKey> {
        let first = self.rules.blocking.passes.first().map(Vec::as_slice).unwrap_or_default();
        first.iter().filter_map(|k| BlockingKey::of_record(*k, r)).collect()
    }

    /// The keys of `kinds` of the records `open`, each once, numbered from `first` on: appends
    /// each record's key numbers to its list in `rec_keys`.
    pub(crate) fn number_keys(
        kinds: &[BlockingKind],
        records: &[Record],
        open: &[usize],
        first: usize,
        rec_keys: &mut [Vec<u32>],
    ) -> Vec<BlockingKey> {
        let mut ids: HashMap<BlockingKey, u32> = HashMap::new();
        let mut keys = Vec::new();
        for &i in open {
            for k in kinds {
                let Some(key) = BlockingKey::of_record(*k, &records[i]) else { continue };
                let id = *ids.entry(key).or_insert_with_key(|key| {
                    keys.push(key.clone());
                    u32::try_from(first + keys.len() - 1).unwrap_or(u32::MAX)
                });
                rec_keys[i].push(id);
            }
        }
        keys
    }

    /// Finds candidates with one set-based index call per blocking pass (each pass only for the
    /// records the earlier passes left open: not exact, and not proposed at
    /// `blocking.settle_score`), then decides every record.
    /// Returns the decisions (in record order) and the persons the exact decisions name (to
    /// complete rows from).
    ///
    /// The batch goes through the passes in groups of [`Matcher::group`] records, all groups at once:
    /// while one group is scored (on the blocking pool, off the async workers), the database
    /// answers the others' queries, so both the database and the scoring keep busy.
    /// `records` is shared with the scoring tasks, not copied.
    pub async fn match_batch(
        self: &Arc<Self>,
        index: &dyn PersonIndex,
        records: Arc<[Record]>,
    ) -> Result<(Vec<Decision>, Vec<Person>), IndexError> {
        let step = self.group.max(1);
        let groups = (0..records.len()).step_by(step).map(|a| a..records.len().min(a + step));
        let outs = try_join_all(groups.map(|g| self.clone().match_group(index, records.clone(), g))).await?;
        let mut decisions = Vec::with_capacity(records.len());
        let mut persons = Vec::new();
        let mut seen = HashSet::new();
        for (ds, ps) in outs {
            decisions.extend(ds);
            persons.extend(ps.into_iter().filter(|p| seen.insert(p.person_id)));
        }
        Ok((decisions, persons))
    }

    async fn match_group(
        self: Arc<Self>,
        index: &dyn PersonIndex,
        all_records: Arc<[Record]>,
        range: std::ops::Range<usize>,
    ) -> Result<(Vec<Decision>, Vec<Person>), IndexError> {
        let records = &all_records[range.clone()];
        let mut pool = Pool::default();
        // the records' normalised values, made in the first scoring task and kept for the later passes
        let mut prepared: Vec<Prepared> = Vec::new();
        let mut decisions: Vec<Option<Decision>> = vec![None; records.len()];
        let mut open: Vec<usize> = (0..records.len()).collect();
        // the numbers of the keys each record asked for, all passes so far
        let mut rec_keys: Vec<Vec<u32>> = vec![Vec::new(); records.len()];
        let mut asked = 0usize;
        for pass in &self.rules.blocking.passes {
            if open.is_empty() {
                break;
            }
            let keys = Self::number_keys(pass, records, &open, asked, &mut rec_keys);
            let first = u32::try_from(asked).unwrap_or(u32::MAX);
            asked += keys.len();
            // a key more persons hold than a record may have candidates finds nobody (wide)
            let wide = Some(self.rules.blocking.max_candidates);
            let found =
                if keys.is_empty() { Found::default() } else { index.candidates(&keys, wide).await? };
            let (m, arc) = (self.clone(), all_records.clone());
            let (now, range) = (std::mem::take(&mut open), range.clone());
            let (p, rp, rk, ds, now) = tokio::task::spawn_blocking(move || {
                let recs = &arc[range];
                let (mut pool, mut rp) = (pool, prepared);
                if rp.is_empty() {
                    rp = recs.iter().map(Prepared::record).collect();
                }
                pool.add(found, first);
                let rs: Vec<(&Record, &Prepared, &[u32])> =
                    now.iter().map(|&i| (&recs[i], &rp[i], rec_keys[i].as_slice())).collect();
                let ds = m.decide_pool(&rs, &pool);
                (pool, rp, rec_keys, ds, now)
            })
            .await
            .map_err(|e| IndexError::Query(format!("scoring task failed: {e}")))?;
            (pool, prepared, rec_keys) = (p, rp, rk);
            for (i, d) in now.into_iter().zip(ds) {
                if !self.settled(&d) {
                    open.push(i);
                }
                decisions[i] = Some(d);
            }
        }
        let decisions: Vec<Decision> = decisions
            .into_iter()
            .zip(records.iter())
            .map(|(d, r)| d.unwrap_or_else(|| self.decide(r, &[])))
            .collect();
        // only the persons an exact decision names leave the matcher (to complete rows from);
        // the other candidates, and their values, are dropped here
        let exact: HashSet<i64> = decisions
            .iter()
            .filter(|d| d.tier == Tier::Exact)
            .filter_map(|d| d.chosen.first().map(|c| c.person_id))
            .collect();
        let persons = pool.persons.into_iter().filter(|p| exact.contains(&p.person_id)).collect();
        Ok((decisions, persons))
    }

    /// Does a record skip the later passes? Exact, or proposed at `blocking.settle_score` or more.
    fn settled(&self, d: &Decision) -> bool {
        match (d.tier, self.rules.blocking.settle_score, d.best_score) {
            (Tier::Exact, ..) => true,
            (Tier::Proposed, Some(min), Some(best)) => best >= min,
            _ => false,
        }
    }

    /// Decides every record against a candidate pool: a record's candidates are the persons
    /// sharing one of its keys of `kinds`. Scoring runs on all cores.
    pub fn decide_all(
        &self,
        records: &[Record],
        persons: &[Person],
        kinds: &[BlockingKind],
    ) -> Vec<Decision> {
        let open: Vec<usize> = (0..records.len()).collect();
        let mut rec_keys: Vec<Vec<u32>> = vec![Vec::new(); records.len()];
        let keys = Self::number_keys(kinds, records, &open, 0, &mut rec_keys);
        let ids: HashMap<&BlockingKey, u32> = keys.iter().zip(0..).collect();
        let mut found = Found { persons: persons.to_vec(), hits: Vec::new() };
        for (p, person) in (0..).zip(persons) {
            for k in kinds {
                if let Some(&id) = BlockingKey::of_person(*k, person).and_then(|key| ids.get(&key)) {
                    found.hits.push((id, p));
                }
            }
        }
        let mut pool = Pool::default();
        pool.add(found, 0);
        let prepared: Vec<Prepared> = records.iter().map(Prepared::record).collect();
        let recs: Vec<(&Record, &Prepared, &[u32])> =
            (0..records.len()).map(|i| (&records[i], &prepared[i], rec_keys[i].as_slice())).collect();
        self.decide_pool(&recs, &pool)
    }

    /// Decides every record (with the numbers of the keys it asked for) against the pool.
    fn decide_pool(&self, records: &[(&Record, &Prepared, &[u32])], pool: &Pool) -> Vec<Decision> {
        let persons = &pool.persons;
        let work = |recs: &[(&Record, &Prepared, &[u32])]| -> Vec<Decision> {
            // buffers reused from record to record (three allocations per record otherwise)
            let (mut idx, mut shared, mut cands, mut scored) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut out = Vec::with_capacity(recs.len());
            for &(r, rp, keys) in recs {
                idx.clear();
                idx.extend(keys.iter().flat_map(|&k| pool.with_key(k)));
                idx.sort_unstable_by_key(|&i| (persons[i as usize].person_id, i));
                // a person found by n keys is n times in `idx` (the pool holds each person once)
                shared.clear();
                shared.extend(idx.chunk_by(|a, b| a == b).map(|run| (run.len(), run[0])));
                let found = shared.len();
                if found > self.rules.blocking.max_candidates {
                    // cut the candidates that share the fewest keys with the record, then those
                    // with the fewest equal values (a record without a birth date finds every
                    // namesake in the ZIP through the same keys), not the highest ids
                    shared.sort_by_cached_key(|&(n, i)| {
                        let same = rp.equal_values(&pool.prepared[i as usize]);
                        (std::cmp::Reverse((n, same)), persons[i as usize].person_id)
                    });
                    shared.truncate(self.rules.blocking.max_candidates);
                    shared.sort_unstable_by_key(|&(_, i)| persons[i as usize].person_id);
                }
                cands.clear();
                cands.extend(shared.iter().map(|&(_, i)| (&persons[i as usize], &pool.prepared[i as usize])));
                let mut d = self.decide_scored(r, rp, &cands, &mut scored);
                if self.trace {
                    let scored = cands.iter().map(|(p, _)| p.person_id).collect();
                    d.trace = Some(Box::new(Trace { scored, truncated: found - shared.len() }));
                }
                out.push(d);
            }
            out
        };
        let threads = cores();
        if threads < 2 || records.len() < 2000 {
            return work(records);
        }
        let per = records.len().div_ceil(threads);
        std::thread::scope(|s| {
            let hs: Vec<_> = records.chunks(per).map(|c| s.spawn(move || work(c))).collect();
            hs.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
        })
    }

    /// Scores one pair.
    pub fn score(&self, r: &Record, p: &Person) -> Scored {
        self.score_prepared(&Prepared::record(r), p.person_id, &Prepared::person(p))
    }

    fn score_prepared(&self, r: &Prepared, person_id: i64, p: &Prepared) -> Scored {
        self.score_compact(r, person_id, p).expand(self)
    }

    /// Score and level names by reference: no allocation per pair (most pairs are discarded).
    fn score_compact<'s>(&'s self, r: &Prepared, person_id: i64, p: &Prepared) -> Compact<'s> {
        let mut score = 0.0;
        let mut levels = [""; FIELDS];
        // at most one comparison per field (rules.rs), so at most FIELDS
        for (c, slot) in self.rules.comparisons.iter().zip(levels.iter_mut()) {
            let (name, w) = self.compare(c, r, p);
            score += w;
            *slot = name;
        }
        Compact { person_id, score, levels }
    }

    fn compare<'c>(&self, c: &'c Comparison, r: &Prepared, p: &Prepared) -> (&'c str, f64) {
        let i = self.level_of(c, r, p);
        match c.levels.get(i) {
            Some(l) => (l.name(), l.weight),
            None if i == c.levels.len() => ("else", c.else_weight),
            None => ("missing", c.missing),
        }
    }

    /// The index of the first level of `c` that holds; `levels.len()` for `else`, one more
    /// for `missing` (either side has no value).
    fn level_of(&self, c: &Comparison, r: &Prepared, p: &Prepared) -> usize {
        let n = c.levels.len();
        if c.field == Field::Dob {
            let (Some(a), Some(b)) = (r.dob, p.dob) else { return n + 1 };
            return c.levels.iter().position(|l| date_level(&l.kind, a, b)).unwrap_or(n);
        }
        let (Some(a), Some(b)) = (r.text(c.field), p.text(c.field)) else { return n + 1 };
        let swapped = || {
            let (rf, rl, pf, pl) =
                (r.first.as_deref(), r.last.as_deref(), p.first.as_deref(), p.last.as_deref());
            rf.is_some() && rf == pl && rl.is_some() && rl == pf && rf != rl
        };
        c.levels
            .iter()
            .position(|l| match l.kind {
                LevelKind::Swapped => swapped(),
                _ => text_level(&l.kind, a, b, &self.nick),
            })
            .unwrap_or(n)
    }

    /// The comparison vector of a pair: per comparison, [`Matcher::level_of`] (for training).
    pub(crate) fn pattern(&self, r: &Prepared, p: &Prepared) -> [u8; FIELDS] {
        let mut out = [0u8; FIELDS];
        for (c, slot) in self.rules.comparisons.iter().zip(out.iter_mut()) {
            *slot = u8::try_from(self.level_of(c, r, p)).unwrap_or(u8::MAX);
        }
        out
    }

    fn holds(&self, rule: &Rule, s: &Compact) -> bool {
        rule.min_score.is_none_or(|m| s.score >= m)
            && rule.require.iter().all(|(f, ok)| {
                self.rules
                    .comparisons
                    .iter()
                    .position(|c| c.field == *f)
                    .and_then(|i| s.levels.get(i))
                    .is_some_and(|l| ok.iter().any(|x| x == *l))
            })
    }

    /// Decides one record against its candidates.
    pub fn decide(&self, r: &Record, cands: &[&Person]) -> Decision {
        let prepared: Vec<Prepared> = cands.iter().map(|p| Prepared::person(p)).collect();
        let pairs: Vec<(&Person, &Prepared)> = cands.iter().copied().zip(prepared.iter()).collect();
        self.decide_scored(r, &Prepared::record(r), &pairs, &mut Vec::new())
    }

    /// Decides one prepared record against prepared candidates; `scored` is a buffer reused
    /// from record to record.
    fn decide_scored<'s>(
        &'s self,
        r: &Record,
        rp: &Prepared,
        cands: &[(&Person, &Prepared)],
        scored: &mut Vec<Compact<'s>>,
    ) -> Decision {
        scored.clear();
        scored.extend(cands.iter().map(|(p, pp)| self.score_compact(rp, p.person_id, pp)));
        scored.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.person_id.cmp(&b.person_id)));
        let n = scored.len();
        let none = |rule: &str, best: Option<f64>| Decision {
            reference: r.reference.clone(),
            tier: Tier::None,
            rule: rule.into(),
            chosen: vec![],
            candidates: n,
            best_score: best,
            trace: None,
        };
        let Some(best) = scored.first() else { return none("no_candidates", None) };
        let t = &self.rules.tiers;
        let margin = scored.get(1).map_or(f64::INFINITY, |s| best.score - s.score);
        if margin >= t.exact.min_margin {
            if let Some(rule) = t.exact.rules.iter().find(|x| self.holds(x, best)) {
                return Decision {
                    reference: r.reference.clone(),
                    tier: Tier::Exact,
                    rule: rule.name.clone(),
                    chosen: vec![best.expand(self)],
                    candidates: n,
                    best_score: Some(best.score),
                    trace: None,
                };
            }
        }
        let floor = best.score - t.proposed.within;
        let mut rule_fired: Option<String> = None;
        let mut chosen = Vec::new();
        for s in scored.iter().take_while(|s| s.score >= floor) {
            let fired = if s.score >= t.proposed.min_score {
                Some(format!("score>={}", t.proposed.min_score))
            } else {
                t.proposed.rules.iter().find(|x| self.holds(x, s)).map(|x| x.name.clone())
            };
            if let Some(f) = fired {
                rule_fired.get_or_insert(f);
                chosen.push(s.expand(self));
                if chosen.len() == t.proposed.max_candidates {
                    break;
                }
            }
        }
        let best_score = Some(best.score);
        match rule_fired {
            Some(rule) => Decision {
                reference: r.reference.clone(),
                tier: Tier::Proposed,
                rule,
                chosen,
                candidates: n,
                best_score,
                trace: None,
            },
            None => none("below_threshold", best_score),
        }
    }
}

/// The cores to score on (at most 8); read once, as `available_parallelism` reads cgroup files.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(8))
}

/// The candidates found so far, each once and normalised once, with the keys each holds.
#[derive(Default)]
struct Pool {
    persons: Vec<Person>,
    prepared: Vec<Prepared>,
    ids: HashMap<i64, u32>,
    /// (key number, index into `persons`), sorted: one allocation instead of a list per key.
    by_key: Vec<(u32, u32)>,
}

impl Pool {
    /// Adds what the index found for keys numbered from `first` on (above every key before).
    fn add(&mut self, found: Found, first: u32) {
        self.persons.reserve(found.persons.len());
        self.prepared.reserve(found.persons.len());
        let mut to = Vec::with_capacity(found.persons.len());
        for p in found.persons {
            let next = u32::try_from(self.persons.len()).unwrap_or(u32::MAX);
            let i = *self.ids.entry(p.person_id).or_insert(next);
            if i == next {
                self.prepared.push(Prepared::person(&p));
                self.persons.push(p);
            }
            to.push(i);
        }
        let from = self.by_key.len();
        self.by_key.extend(found.hits.into_iter().map(|(k, p)| (first + k, to[p as usize])));
        // the earlier keys all have lower numbers: the new entries sort after them
        self.by_key[from..].sort_unstable();
    }

    /// The persons holding key number `k`.
    fn with_key(&self, k: u32) -> impl Iterator<Item = u32> + '_ {
        let from = self.by_key.partition_point(|e| e.0 < k);
        self.by_key[from..].iter().take_while(move |e| e.0 == k).map(|e| e.1)
    }
}

/// How many fields there are to compare; a field is compared at most once (rules.rs checks).
const FIELDS: usize = Field::ALL.len();

/// A scored pair before it is kept: level names borrowed from the rules, in comparison order.
struct Compact<'s> {
    person_id: i64,
    score: f64,
    levels: [&'s str; FIELDS],
}

impl Compact<'_> {
    fn expand(&self, m: &Matcher) -> Scored {
        let mut levels = BTreeMap::new(); // one node; collect() would sort through a Vec first
        for (c, l) in m.rules.comparisons.iter().zip(&self.levels) {
            levels.insert(c.field, CompactString::new(l));
        }
        Scored { person_id: self.person_id, score: self.score, levels }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::index::MemoryIndex;

    /// The in-memory index, noting which key kinds each call asked for.
    struct Counting(MemoryIndex, Mutex<Vec<BlockingKind>>);

    #[async_trait::async_trait]
    impl PersonIndex for Counting {
        async fn candidates(&self, keys: &[BlockingKey], wide: Option<usize>) -> Result<Found, IndexError> {
            self.1.lock().unwrap().extend(keys.iter().map(BlockingKey::kind));
            self.0.candidates(keys, wide).await
        }
    }

    fn s(v: &str) -> Option<CompactString> {
        Some(v.into())
    }

    fn robert() -> Person {
        Person {
            person_id: 7,
            first_name: s("ROBERT"),
            last_name: s("SMITH"),
            dob: NaiveDate::from_ymd_opt(1980, 3, 5),
            sex: s("M"),
            address: s("1 MAIN ST"),
            city: s("SPRINGFIELD"),
            zip: s("12345"),
            phone: s("5551234567"),
            ..Person::default()
        }
    }

    async fn run(settle: Option<f64>) -> (Vec<Decision>, Vec<BlockingKind>) {
        let mut rules = Rules::builtin();
        rules.blocking.settle_score = settle;
        let m = Arc::new(Matcher::new(rules));
        let p = robert();
        // a first-name typo and another street: a high score, but two persons score close
        let close = Record {
            reference: "close".into(),
            first_name: Some("ROBERY".into()),
            last_name: Some("SMITH".into()),
            dob: p.dob,
            sex: Some("M".into()),
            address: Some("9 ELM RD".into()),
            city: Some("SPRINGFIELD".into()),
            zip: Some("12345".into()),
            phone: Some("555-123-4567".into()),
        };
        let nobody = Record {
            reference: "nobody".into(),
            first_name: Some("ANNA".into()),
            last_name: Some("JONES".into()),
            dob: NaiveDate::from_ymd_opt(1990, 1, 1),
            address: Some("2 OAK AVE".into()),
            zip: Some("54321".into()),
            phone: Some("5559990000".into()),
            ..Record::default()
        };
        // a twin at another town: the record is as close to both, so it is proposed, not exact
        let twin = Person { person_id: 8, city: s("SHELBYVILLE"), ..robert() };
        let index = Counting(MemoryIndex::new(vec![p, twin]), Mutex::new(Vec::new()));
        let (ds, _) = m.match_batch(&index, vec![close, nobody].into()).await.unwrap();
        let asked = index.1.into_inner().unwrap();
        (ds, asked)
    }

    #[tokio::test]
    async fn a_record_proposed_at_the_settle_score_skips_the_later_passes() {
        use BlockingKind::*;
        let (open, asked_open) = run(None).await;
        let (settled, asked_settled) = run(Some(25.0)).await;
        // the same decisions: the later passes only find the same person again
        assert_eq!(open, settled);
        assert_eq!(open[0].tier, Tier::Proposed);
        assert!(open[0].best_score.unwrap() >= 25.0, "{:?}", open[0].best_score);
        assert_eq!(open[0].chosen[0].person_id, 7);
        assert_eq!(open[1].tier, Tier::None);
        let count = |v: &[BlockingKind], k| v.iter().filter(|&&x| x == k).count();
        // without settle_score both records go through every pass; with it only "nobody" does
        for k in [FirstNameDob, AddressZip, Phone] {
            assert_eq!((count(&asked_open, k), count(&asked_settled, k)), (2, 1), "{k:?}");
        }
        assert_eq!(count(&asked_settled, LastNameDob), 2);
    }

    #[tokio::test]
    async fn a_key_more_persons_hold_than_max_candidates_finds_nobody() {
        let p = robert();
        let rec = Record {
            reference: "r".into(),
            first_name: Some("ROBERT".into()),
            last_name: Some("SMITH".into()),
            dob: p.dob,
            ..Record::default()
        };
        // the twin shares the record's only key (last name and birth date)
        let twin = Person { person_id: 8, ..robert() };
        let index = MemoryIndex::new(vec![p, twin]);
        let decide = |max: usize| {
            let mut rules = Rules::builtin();
            rules.blocking.passes = vec![vec![BlockingKind::LastNameDob]];
            rules.blocking.max_candidates = max;
            let m = Arc::new(Matcher::new(rules));
            let (index, rec) = (&index, rec.clone());
            async move { m.match_batch(index, vec![rec].into()).await.unwrap().0.remove(0) }
        };
        let held = decide(2).await;
        assert_eq!(held.candidates, 2, "two holders, not above 2");
        let wide = decide(1).await;
        assert_eq!((wide.candidates, wide.tier), (0, Tier::None), "two holders, above 1: a wide key");
    }

    #[tokio::test]
    async fn only_the_persons_of_exact_decisions_come_back() {
        let m = Arc::new(Matcher::new(Rules::builtin()));
        let anna = Person {
            person_id: 8,
            first_name: s("ANNA"),
            last_name: s("SMITH"),
            dob: NaiveDate::from_ymd_opt(1982, 6, 1),
            address: s("1 MAIN ST"),
            zip: s("12345"),
            ..Person::default()
        };
        let index = MemoryIndex::new(vec![robert(), anna]);
        let p = robert();
        let exact = Record {
            reference: "exact".into(),
            first_name: Some("ROBERT".into()),
            last_name: Some("SMITH".into()),
            dob: p.dob,
            address: Some("1 MAIN ST".into()),
            zip: Some("12345".into()),
            ..Record::default()
        };
        // Anna shares the address (a candidate in pass 3) but is no match for this record
        let other = Record {
            reference: "other".into(),
            first_name: Some("ZOE".into()),
            last_name: Some("QUINN".into()),
            dob: NaiveDate::from_ymd_opt(1999, 9, 9),
            address: Some("1 MAIN ST".into()),
            zip: Some("12345".into()),
            ..Record::default()
        };
        let (ds, persons) = m.match_batch(&index, vec![exact, other].into()).await.unwrap();
        assert_eq!(ds[0].tier, Tier::Exact, "{:?}", ds[0].rule);
        assert_ne!(ds[1].tier, Tier::Exact);
        assert!(ds[1].candidates >= 2, "both persons at the address were candidates");
        let ids: Vec<i64> = persons.iter().map(|p| p.person_id).collect();
        assert_eq!(ids, vec![7]);
    }
}
