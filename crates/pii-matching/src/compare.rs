//! Field comparison primitives: the level checks of `config/matching.toml`.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};

use chrono::{Datelike, NaiveDate};

use crate::rules::LevelKind;

/// Nickname groups: every name maps to the groups it belongs to (ROBERT, BOB, BOBBY share one).
#[derive(Debug, Clone, Default)]
pub struct Nicknames(HashMap<String, Vec<u32>>);

impl Nicknames {
    pub fn new(table: &BTreeMap<String, Vec<String>>) -> Self {
        let mut m: HashMap<String, Vec<u32>> = HashMap::new();
        for (g, (formal, nicks)) in table.iter().enumerate() {
            let g = u32::try_from(g).unwrap_or(u32::MAX);
            for n in std::iter::once(formal).chain(nicks) {
                let e = m.entry(n.clone()).or_default();
                if !e.contains(&g) {
                    e.push(g);
                }
            }
        }
        Self(m)
    }

    pub fn related(&self, a: &str, b: &str) -> bool {
        match (self.0.get(a), self.0.get(b)) {
            (Some(x), Some(y)) => a != b && x.iter().any(|g| y.contains(g)),
            _ => false,
        }
    }
}

/// American Soundex (letter + 3 digits); empty for a value without letters.
pub fn soundex(s: &str) -> String {
    soundex_code(s).map(|c| String::from_utf8_lossy(&c).into_owned()).unwrap_or_default()
}

/// [`soundex`] as four bytes, `None` for a value without letters (no allocation).
pub fn soundex_code(s: &str) -> Option<[u8; 4]> {
    fn code(c: u8) -> u8 {
        match c {
            b'B' | b'F' | b'P' | b'V' => b'1',
            b'C' | b'G' | b'J' | b'K' | b'Q' | b'S' | b'X' | b'Z' => b'2',
            b'D' | b'T' => b'3',
            b'L' => b'4',
            b'M' | b'N' => b'5',
            b'R' => b'6',
            b'H' | b'W' => b'h',
            _ => b'0',
        }
    }
    let mut letters = s.bytes().filter(u8::is_ascii_alphabetic).map(|c| c.to_ascii_uppercase());
    let first = letters.next()?;
    let mut out = [first, b'0', b'0', b'0'];
    let mut n = 1;
    let mut last = code(first);
    for c in letters {
        let d = code(c);
        if d == b'h' {
            continue; // H and W do not separate equal codes
        }
        if d != b'0' && d != last {
            out[n] = d;
            n += 1;
            if n == 4 {
                break;
            }
        }
        last = d;
    }
    Some(out)
}

/// Values up to this many bytes are compared on the stack; longer or non-ASCII ones go to
/// `strsim` (same results, with an allocation per pair).
const SHORT: usize = 64;

fn short_ascii(a: &str, b: &str) -> bool {
    a.len() <= SHORT && b.len() <= SHORT && a.is_ascii() && b.is_ascii()
}

/// Jaro-Winkler similarity, equal to `strsim::jaro_winkler` (the same steps on bytes, so the
/// same floating-point result) without its allocation for ASCII values up to [`SHORT`] bytes.
pub fn jaro_winkler(a: &str, b: &str) -> f64 {
    if !short_ascii(a, b) {
        return strsim::jaro_winkler(a, b);
    }
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let sim = jaro_bytes(x, y);
    if sim > 0.7 {
        let prefix = x.iter().take(4).zip(y).take_while(|(p, q)| p == q).count();
        sim + 0.1 * prefix as f64 * (1.0 - sim)
    } else {
        sim
    }
}

fn jaro_bytes(a: &[u8], b: &[u8]) -> f64 {
    let (al, bl) = (a.len(), b.len());
    if al == 0 && bl == 0 {
        return 1.0;
    }
    if al == 0 || bl == 0 {
        return 0.0;
    }
    let range = (al.max(bl) / 2).saturating_sub(1);
    let (mut af, mut bf) = ([false; SHORT], [false; SHORT]);
    let mut matches = 0_usize;
    for (i, &c) in a.iter().enumerate() {
        for j in i.saturating_sub(range)..bl.min(i + range + 1) {
            if c == b[j] && !bf[j] {
                af[i] = true;
                bf[j] = true;
                matches += 1;
                break;
            }
        }
    }
    if matches == 0 {
        return 0.0;
    }
    let (mut transpositions, mut k) = (0_usize, 0_usize);
    for i in (0..al).filter(|&i| af[i]) {
        while !bf[k] {
            k += 1;
        }
        if a[i] != b[k] {
            transpositions += 1;
        }
        k += 1;
    }
    transpositions /= 2;
    ((matches as f64 / al as f64)
        + (matches as f64 / bl as f64)
        + ((matches - transpositions) as f64 / matches as f64))
        / 3.0
}

/// Levenshtein distance at most `max` (no allocation for short ASCII values; stops early once
/// every cell of a row exceeds `max`).
pub fn levenshtein_within(a: &str, b: &str, max: usize) -> bool {
    if !short_ascii(a, b) {
        return strsim::levenshtein(a, b) <= max;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len().abs_diff(b.len()) > max {
        return false;
    }
    let mut row = [0_usize; SHORT + 1];
    for (j, cell) in row.iter_mut().enumerate().take(b.len() + 1) {
        *cell = j;
    }
    for (i, &ca) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        let mut row_min = row[0];
        for (j, &cb) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = (up + 1).min(row[j] + 1).min(diag + usize::from(ca != cb));
            diag = up;
            row_min = row_min.min(row[j + 1]);
        }
        if row_min > max {
            return false;
        }
    }
    row[b.len()] <= max
}

fn alnum(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_uppercase)
}

fn tokens(s: &str) -> impl Iterator<Item = &str> + Clone {
    s.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty())
}

/// Does the text level hold for two normalised values?
pub fn text_level(kind: &LevelKind, a: &str, b: &str, nick: &Nicknames) -> bool {
    match kind {
        LevelKind::Exact => a == b,
        LevelKind::Normalised => {
            // compared as iterators: no allocation per pair
            alnum(a).next().is_some() && alnum(a).eq(alnum(b))
        }
        LevelKind::JaroWinkler { min } => jaro_winkler(a, b) >= *min,
        LevelKind::Levenshtein { max } => levenshtein_within(a, b, *max),
        LevelKind::Soundex => soundex_code(a).is_some_and(|x| soundex_code(b) == Some(x)),
        LevelKind::Nickname => nick.related(a, b),
        LevelKind::TokenSubset => {
            let (ta, tb) = (tokens(a), tokens(b));
            let (na, nb) = (ta.clone().count(), tb.clone().count());
            let (short, long, ns, nl) = if na <= nb { (ta, tb, na, nb) } else { (tb, ta, nb, na) };
            ns > 0 && ns < nl && short.into_iter().all(|t| long.clone().any(|u| u == t))
        }
        LevelKind::Initial => a.chars().next().is_some_and(|c| b.starts_with(c)),
        LevelKind::TokenOverlap { min } => token_overlap(a, b) >= *min,
        // Swapped needs both names (the matcher checks it); the rest are date levels
        LevelKind::Swapped
        | LevelKind::DateSwapped
        | LevelKind::DateOneDigit
        | LevelKind::DateDaysApart { .. }
        | LevelKind::DateYearOff { .. }
        | LevelKind::DateMonthsApart { .. } => false,
    }
}

/// A street word in its usual abbreviation (USPS suffixes and directions).
fn fold(w: &str) -> &str {
    match w {
        "STREET" | "STR" => "ST",
        "AVENUE" | "AV" => "AVE",
        "ROAD" => "RD",
        "DRIVE" => "DR",
        "LANE" => "LN",
        "COURT" => "CT",
        "PLACE" => "PL",
        "TERRACE" => "TER",
        "CIRCLE" => "CIR",
        "BOULEVARD" => "BLVD",
        "PARKWAY" => "PKWY",
        "HIGHWAY" => "HWY",
        "SQUARE" => "SQ",
        "APARTMENT" | "UNIT" => "APT",
        "NORTH" => "N",
        "SOUTH" => "S",
        "EAST" => "E",
        "WEST" => "W",
        _ => w,
    }
}

/// Token similarity of two street addresses: 0 unless both start with the same house number;
/// else the share of the shorter address's other words (folded, [`fold`]) found in the longer,
/// a word with one typo (Levenshtein 1, four letters or more) counting as found.
pub fn token_overlap(a: &str, b: &str) -> f64 {
    let (mut ta, mut tb) = (tokens(a), tokens(b));
    let (Some(ha), Some(hb)) = (ta.next(), tb.next()) else { return 0.0 };
    if ha != hb || !ha.bytes().next().is_some_and(|c| c.is_ascii_digit()) {
        return 0.0;
    }
    let (wa, wb): (Vec<&str>, Vec<&str>) = (ta.map(fold).collect(), tb.map(fold).collect());
    let (short, long) = if wa.len() <= wb.len() { (&wa, &wb) } else { (&wb, &wa) };
    if short.is_empty() {
        return 0.0;
    }
    let found = short
        .iter()
        .filter(|w| {
            long.iter().any(|x| x == *w || (w.len() >= 4 && x.len() >= 4 && levenshtein_within(w, x, 1)))
        })
        .count();
    found as f64 / short.len() as f64
}

fn ymd(d: NaiveDate) -> u32 {
    u32::try_from(d.year()).unwrap_or(0) % 10_000 * 10_000 + d.month() * 100 + d.day()
}

/// Does the date level hold for two dates?
pub fn date_level(kind: &LevelKind, a: NaiveDate, b: NaiveDate) -> bool {
    match kind {
        LevelKind::Exact => a == b,
        LevelKind::DateSwapped => {
            a != b && a.year() == b.year() && a.month() == b.day() && a.day() == b.month()
        }
        LevelKind::DateOneDigit => {
            // the digits of YYYYMMDD, compared without formatting
            let (x, y) = (ymd(a), ymd(b));
            (0..8).filter(|i| (x / 10u32.pow(*i)) % 10 != (y / 10u32.pow(*i)) % 10).count() == 1
        }
        LevelKind::DateDaysApart { max } => a != b && (a - b).num_days().abs() <= *max,
        LevelKind::DateYearOff { max } => {
            a != b && a.month() == b.month() && a.day() == b.day() && (a.year() - b.year()).abs() <= *max
        }
        LevelKind::DateMonthsApart { max } => {
            let months = |d: NaiveDate| d.year() * 12 + d.month() as i32;
            let month_end = |d: NaiveDate| d.succ_opt().is_none_or(|n| n.month() != d.month());
            let same_day =
                a.day() == b.day() || (month_end(a) && month_end(b)) || (a.day() >= 28 && b.day() >= 28);
            a != b && same_day && (1..=*max).contains(&(months(a) - months(b)).abs())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_string_metrics_equal_strsim() {
        // every pair of a set of names, typos and edge cases: the same bits as strsim
        let words = [
            "",
            "A",
            "AB",
            "BA",
            "MARTHA",
            "MARHTA",
            "DWAYNE",
            "DUANE",
            "DIXON",
            "DICKSONX",
            "JONES",
            "JOHNSON",
            "SOSA VINCENT",
            "SOSA-VINCENT",
            "SOSAVINCENT",
            "CRATE",
            "TRACE",
            "ABCDEFGHIJ",
            "JIHGFEDCBA",
            "MCDONALD",
            "MACDONALD",
            "O'NEIL",
            "ONEIL",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",
            "JOSÉ",
            "JOSE",
        ];
        for a in words {
            for b in words {
                assert_eq!(jaro_winkler(a, b).to_bits(), strsim::jaro_winkler(a, b).to_bits(), "{a} / {b}");
                for max in 0..4 {
                    assert_eq!(
                        levenshtein_within(a, b, max),
                        strsim::levenshtein(a, b) <= max,
                        "{a} / {b} <= {max}"
                    );
                }
            }
        }
    }

    #[test]
    fn token_subset_needs_fewer_tokens_all_present() {
        let n = Nicknames::default();
        assert!(text_level(&LevelKind::TokenSubset, "SOSA", "SOSA-VINCENT", &n));
        assert!(text_level(&LevelKind::TokenSubset, "SOSA VINCENT", "VINCENT", &n));
        assert!(!text_level(&LevelKind::TokenSubset, "SOSA VINCENT", "SOSA-VINCENT", &n));
        assert!(!text_level(&LevelKind::TokenSubset, "SOSA", "DIAZ-VINCENT", &n));
        assert!(!text_level(&LevelKind::TokenSubset, "", "SOSA", &n));
    }

    #[test]
    fn soundex_matches_the_textbook_codes() {
        assert_eq!(soundex("ROBERT"), "R163");
        assert_eq!(soundex("RUPERT"), "R163");
        assert_eq!(soundex("ASHCRAFT"), "A261");
        assert_eq!(soundex("TYMCZAK"), "T522");
        assert_eq!(soundex("PFISTER"), "P236");
        assert_eq!(soundex(""), "");
    }

    #[test]
    fn date_levels_catch_the_usual_typos() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default();
        assert!(date_level(&LevelKind::DateSwapped, d("1980-03-05"), d("1980-05-03")));
        assert!(date_level(&LevelKind::DateOneDigit, d("1985-03-05"), d("1995-03-05")));
        assert!(date_level(&LevelKind::DateDaysApart { max: 1 }, d("1980-03-31"), d("1980-04-01")));
        assert!(date_level(&LevelKind::DateYearOff { max: 10 }, d("1999-03-05"), d("2009-03-05")));
        assert!(!date_level(&LevelKind::DateYearOff { max: 10 }, d("1999-03-05"), d("1999-03-06")));
        // one digit of YYYYMMDD, anywhere; two digits or none is not this level
        assert!(date_level(&LevelKind::DateOneDigit, d("1985-03-05"), d("1985-03-08")));
        assert!(date_level(&LevelKind::DateOneDigit, d("1985-12-05"), d("1985-11-05")));
        assert!(!date_level(&LevelKind::DateOneDigit, d("1985-03-05"), d("1985-03-05")));
        assert!(!date_level(&LevelKind::DateOneDigit, d("1985-03-05"), d("1986-03-06")));
        assert!(!date_level(&LevelKind::DateOneDigit, d("1985-03-05"), d("1985-05-03")));
    }

    #[test]
    fn new_date_levels_take_months_and_a_year_off() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default();
        let months = LevelKind::DateMonthsApart { max: 3 };
        assert!(date_level(&months, d("1980-03-05"), d("1980-06-05")));
        assert!(date_level(&months, d("1980-11-05"), d("1981-01-05")));
        assert!(date_level(&months, d("1980-01-31"), d("1980-02-29")), "clamped to the month's end");
        assert!(!date_level(&months, d("1980-03-05"), d("1980-07-05")), "four months");
        assert!(!date_level(&months, d("1980-03-05"), d("1980-04-06")), "another day");
        assert!(!date_level(&months, d("1980-03-05"), d("1980-03-05")));
        assert!(date_level(&LevelKind::DateDaysApart { max: 30 }, d("1980-03-05"), d("1980-02-04")));
        assert!(date_level(&LevelKind::DateYearOff { max: 1 }, d("1980-03-05"), d("1981-03-05")));
    }

    #[test]
    fn token_overlap_needs_the_house_number_and_folds_suffixes() {
        assert_eq!(token_overlap("12 ELM STREET", "12 ELM ST"), 1.0);
        assert_eq!(token_overlap("12 ELM ST APT 4", "12 ELM ST"), 1.0);
        assert_eq!(token_overlap("12 MASSACHUSETS AVE", "12 MASSACHUSETTS AVENUE"), 1.0);
        assert_eq!(token_overlap("12 OAK ST", "12 ELM ST"), 0.5);
        assert_eq!(token_overlap("13 ELM ST", "12 ELM ST"), 0.0);
        assert_eq!(token_overlap("ELM ST", "ELM ST"), 0.0, "no house number");
        assert_eq!(token_overlap("12", "12 ELM ST"), 0.0);
    }

    #[test]
    fn normalised_ignores_punctuation_and_space_only() {
        let nk = Nicknames::default();
        assert!(text_level(&LevelKind::Normalised, "SOSA-VINCENT", "SOSA VINCENT", &nk));
        assert!(text_level(&LevelKind::Normalised, "O'BRIEN", "OBRIEN", &nk));
        assert!(!text_level(&LevelKind::Normalised, "SOSA", "SOSAV", &nk));
        assert!(!text_level(&LevelKind::Normalised, "--", "..", &nk));
    }

    #[test]
    fn token_subset_finds_double_barrelled_surnames() {
        let n = Nicknames::default();
        assert!(text_level(&LevelKind::TokenSubset, "SOSA", "SOSA-VINCENT", &n));
        assert!(text_level(&LevelKind::Normalised, "SOSA VINCENT", "SOSA-VINCENT", &n));
        assert!(!text_level(&LevelKind::TokenSubset, "SOSA", "SOSA", &n));
    }
}
