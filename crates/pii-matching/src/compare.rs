//! Field comparison primitives: the level checks of `config/matching.toml`.

use std::collections::{BTreeMap, HashMap};

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
    let letters: Vec<u8> =
        s.bytes().filter(u8::is_ascii_alphabetic).map(|c| c.to_ascii_uppercase()).collect();
    let Some(&first) = letters.first() else { return String::new() };
    let mut out = vec![first];
    let mut last = code(first);
    for &c in &letters[1..] {
        let d = code(c);
        if d == b'h' {
            continue; // H and W do not separate equal codes
        }
        if d != b'0' && d != last {
            out.push(d);
            if out.len() == 4 {
                break;
            }
        }
        last = d;
    }
    while out.len() < 4 {
        out.push(b'0');
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn alnum(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_uppercase)
}

fn tokens(s: &str) -> Vec<&str> {
    s.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).collect()
}

/// Does the text level hold for two normalised values?
pub fn text_level(kind: &LevelKind, a: &str, b: &str, nick: &Nicknames) -> bool {
    match kind {
        LevelKind::Exact => a == b,
        LevelKind::Normalised => {
            // compared as iterators: no allocation per pair
            alnum(a).next().is_some() && alnum(a).eq(alnum(b))
        }
        LevelKind::JaroWinkler { min } => strsim::jaro_winkler(a, b) >= *min,
        LevelKind::Levenshtein { max } => strsim::levenshtein(a, b) <= *max,
        LevelKind::Soundex => {
            let x = soundex(a);
            !x.is_empty() && x == soundex(b)
        }
        LevelKind::Nickname => nick.related(a, b),
        LevelKind::TokenSubset => {
            let (ta, tb) = (tokens(a), tokens(b));
            let (short, long) = if ta.len() <= tb.len() { (ta, tb) } else { (tb, ta) };
            !short.is_empty() && short.len() < long.len() && short.iter().all(|t| long.contains(t))
        }
        LevelKind::Initial => a.chars().next().is_some_and(|c| b.starts_with(c)),
        LevelKind::DateSwapped
        | LevelKind::DateOneDigit
        | LevelKind::DateDaysApart { .. }
        | LevelKind::DateYearOff { .. } => false,
    }
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
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
