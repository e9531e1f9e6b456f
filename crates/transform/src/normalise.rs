//! The normalisation rule of every semantic type, on one value at a time.
//!
//! Whitespace means what Python's `str.isspace` means (the reference pipeline is pandas), so the
//! output is identical to the reference on the same input. Digits are ASCII digits.

use contracts::{DateFormat, DateItem};

use crate::outcome::ValueIssue;

/// Python's `str.isspace`: Unicode White_Space plus the ASCII separators 0x1C..0x1F.
#[inline]
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Trims Python whitespace from both ends.
#[inline]
pub fn strip(v: &str) -> &str {
    if v.is_ascii() {
        v.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b' || ('\u{1c}'..='\u{1f}').contains(&c))
    } else {
        v.trim_matches(is_space)
    }
}

/// How a text value is cased and spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextRule {
    /// Trim only.
    Trim,
    /// Trim, UPPER.
    Upper,
    /// Trim, lower.
    Lower,
    /// Trim, collapse inner whitespace runs to one space, UPPER.
    Name,
}

/// Applies a text rule; returns false (and writes nothing) when the result is empty, i.e. null.
pub fn text(v: &str, rule: TextRule, out: &mut String) -> bool {
    let v = strip(v);
    if v.is_empty() {
        return false;
    }
    match rule {
        TextRule::Trim => out.push_str(v),
        TextRule::Upper => push_upper(v, out),
        TextRule::Lower => {
            if v.is_ascii() {
                out.extend(v.bytes().map(|b| b.to_ascii_lowercase() as char));
            } else {
                out.push_str(&v.to_lowercase());
            }
        }
        TextRule::Name => {
            let start = out.len();
            let mut in_space = false;
            for c in v.chars() {
                if is_space(c) {
                    in_space = true;
                    continue;
                }
                if in_space {
                    out.push(' ');
                    in_space = false;
                }
                out.push(c);
            }
            let collapsed = out.split_off(start);
            push_upper(&collapsed, out);
        }
    }
    true
}

#[inline]
fn push_upper(v: &str, out: &mut String) {
    if v.is_ascii() {
        out.extend(v.bytes().map(|b| b.to_ascii_uppercase() as char));
    } else {
        out.push_str(&v.to_uppercase());
    }
}

/// Sex: M / F / U.
pub fn sex(v: Option<&str>) -> &'static str {
    let Some(v) = v else { return "U" };
    let v = strip(v);
    if v.len() > 6 {
        return "U";
    }
    let mut buf = [0u8; 6];
    for (i, b) in v.bytes().enumerate() {
        buf[i] = b.to_ascii_uppercase();
    }
    match &buf[..v.len()] {
        b"M" | b"MALE" | b"1" => "M",
        b"F" | b"FEMALE" | b"2" => "F",
        _ => "U",
    }
}

/// The ASCII digits of `v`, when there are at most `N` of them.
#[inline]
fn digits<const N: usize>(v: &str) -> Option<([u8; N], usize)> {
    let mut d = [0u8; N];
    let mut n = 0;
    for b in v.bytes().filter(u8::is_ascii_digit) {
        if n == N {
            return None;
        }
        d[n] = b;
        n += 1;
    }
    Some((d, n))
}

/// SSN: 9 digits, area not 000/666/9xx, group not 00, serial not 0000 -> `NNN-NN-NNNN`.
pub fn ssn(v: &str, out: &mut String) -> bool {
    let Some((d, 9)) = digits::<9>(v) else { return false };
    if &d[..3] == b"000" || &d[..3] == b"666" || d[0] == b'9' || &d[3..5] == b"00" || &d[5..] == b"0000" {
        return false;
    }
    push_ascii(&d[..3], out);
    out.push('-');
    push_ascii(&d[3..5], out);
    out.push('-');
    push_ascii(&d[5..], out);
    true
}

#[inline]
fn push_ascii(b: &[u8], out: &mut String) {
    out.extend(b.iter().map(|&b| b as char));
}

/// ZIP: 3 to 5 digits left-padded to 5; 9 digits cut to 5; else null.
pub fn zip5(v: &str, out: &mut String) -> bool {
    let Some((d, n)) = digits::<9>(v) else { return false };
    match n {
        3..=5 => {
            for _ in n..5 {
                out.push('0');
            }
            push_ascii(&d[..n], out);
        }
        9 => push_ascii(&d[..5], out),
        _ => return false,
    }
    true
}

/// Phone: 10 digits (an 11-digit number starting with 1 loses the 1) -> `NNN-NNN-NNNN`.
pub fn phone10(v: &str, out: &mut String) -> bool {
    let Some((d, n)) = digits::<11>(v) else { return false };
    let d = match n {
        11 if d[0] == b'1' => &d[1..11],
        10 => &d[..10],
        _ => return false,
    };
    push_ascii(&d[..3], out);
    out.push('-');
    push_ascii(&d[3..6], out);
    out.push('-');
    push_ascii(&d[6..], out);
    true
}

/// Money: `$`, `,` and whitespace removed, parsed as a number; not a number or not finite is null.
pub fn money(v: &str) -> Option<f64> {
    money_checked(v).ok().flatten()
}

/// Money as [`money`], telling a non-finite number (`inf`, `-Infinity`, `NaN`, `1e400`) apart:
/// `Ok(None)` is text that is not a number, `Err` a number no column may hold.
pub fn money_checked(v: &str) -> Result<Option<f64>, ValueIssue> {
    // short values (all real amounts) are cleaned on the stack: no allocation per cell
    let mut stack = [0u8; 64];
    let mut heap = String::new();
    let cleaned: &str = if v.len() <= stack.len() {
        let mut n = 0;
        for c in v.chars().filter(|&c| c != '$' && c != ',' && !is_space(c)) {
            n += c.encode_utf8(&mut stack[n..]).len();
        }
        std::str::from_utf8(&stack[..n]).unwrap_or_default()
    } else {
        heap.extend(v.chars().filter(|&c| c != '$' && c != ',' && !is_space(c)));
        &heap
    };
    match cleaned.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(Some(x)),
        Ok(_) => Err(ValueIssue::NonFinite),
        Err(_) => Ok(None),
    }
}

/// A JSON number as money.
pub fn money_f64(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// A partial date as FHIR and HL7 write it: `YYYY-MM`, `YYYYMM` or `YYYY` (trimmed), as the
/// year and, when given, a valid month.
pub fn partial_date(v: &str) -> Option<(i32, Option<u32>)> {
    let b = strip(v).as_bytes();
    let year = |b: &[u8]| Some((two(b, 0)? * 100 + two(b, 2)?) as i32);
    let month = |m: u32| (1..=12).contains(&m).then_some(m);
    match b.len() {
        4 => Some((year(b)?, None)),
        6 => Some((year(b)?, Some(month(two(b, 4)?)?))),
        7 if b[4] == b'-' => Some((year(b)?, Some(month(two(b, 5)?)?))),
        _ => None,
    }
}

/// Days since 1970-01-01 of a calendar date, when it exists.
pub fn days(year: i32, month: u32, day: u32) -> Option<i32> {
    let date = chrono::NaiveDate::from_ymd_opt(year, month, day)?;
    Some(chrono::Datelike::num_days_from_ce(&date) - DAYS_FROM_CE_TO_EPOCH)
}

const DAYS_FROM_CE_TO_EPOCH: i32 = 719_163;
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Date: trimmed, the first format that matches the whole value exactly; days since 1970-01-01.
pub fn date(v: &str, formats: &[DateFormat]) -> Option<i32> {
    let v = strip(v);
    if v.is_empty() {
        return None;
    }
    formats.iter().find_map(|f| parse_date(v.as_bytes(), &f.items))
}

fn two(b: &[u8], i: usize) -> Option<u32> {
    let (x, y) = (*b.get(i)?, *b.get(i + 1)?);
    (x.is_ascii_digit() && y.is_ascii_digit()).then(|| ((x - b'0') * 10 + (y - b'0')) as u32)
}

fn parse_date(b: &[u8], items: &[DateItem]) -> Option<i32> {
    let (mut y, mut m, mut d) = (None::<i32>, None::<u32>, None::<u32>);
    let mut i = 0;
    for item in items {
        match item {
            DateItem::Year4 => {
                let hi = two(b, i)?;
                let lo = two(b, i + 2)?;
                y = Some((hi * 100 + lo) as i32);
                i += 4;
            }
            DateItem::Year2 => {
                let v = two(b, i)? as i32;
                y = Some(if v < 69 { 2000 + v } else { 1900 + v });
                i += 2;
            }
            DateItem::Month2 => {
                m = Some(two(b, i)?);
                i += 2;
            }
            DateItem::Day2 => {
                d = Some(two(b, i)?);
                i += 2;
            }
            DateItem::Hour2 => {
                (two(b, i)? < 24).then_some(())?;
                i += 2;
            }
            DateItem::Minute2 | DateItem::Second2 => {
                (two(b, i)? < 60).then_some(())?;
                i += 2;
            }
            DateItem::Fraction => {
                let n = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
                (1..=9).contains(&n).then_some(())?;
                i += n;
            }
            DateItem::MonthAbbr => {
                let s = b.get(i..i + 3)?;
                m = Some(MONTHS.iter().position(|n| n.as_bytes()[..3].eq_ignore_ascii_case(s))? as u32 + 1);
                i += 3;
            }
            DateItem::MonthName => {
                let (k, n) = MONTHS.iter().enumerate().find(|(_, n)| {
                    b.get(i..i + n.len()).is_some_and(|s| s.eq_ignore_ascii_case(n.as_bytes()))
                })?;
                m = Some(k as u32 + 1);
                i += n.len();
            }
            DateItem::Offset => {
                // Z, +HH, +HHMM or +HH:MM: accepted and ignored (the local date is kept)
                match b.get(i)? {
                    b'Z' | b'z' => i += 1,
                    b'+' | b'-' => {
                        (two(b, i + 1)? <= 23).then_some(())?;
                        i += 3;
                        if b.get(i) == Some(&b':') {
                            (two(b, i + 1)? < 60).then_some(())?;
                            i += 3;
                        } else if let Some(mm) = two(b, i) {
                            (mm < 60).then_some(())?;
                            i += 2;
                        }
                    }
                    _ => return None,
                }
            }
            DateItem::Literal(c) => {
                let mut enc = [0u8; 4];
                let lit = c.encode_utf8(&mut enc).as_bytes();
                (b.get(i..i + lit.len())? == lit).then_some(())?;
                i += lit.len();
            }
        }
    }
    if i != b.len() {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(y?, m?, d?)?;
    Some(chrono::Datelike::num_days_from_ce(&date) - DAYS_FROM_CE_TO_EPOCH)
}

#[inline]
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// ICD-10 codes: UPPER, whitespace removed, split on `sep`; a whole code shaped
/// letter-digit-(digit|letter) followed by 1 to 4 letters/digits gets a dot after the third
/// character. Appends the non-empty codes to `out` as (start, end) ranges of `buf`.
pub fn icd10_list(v: &str, sep: &str, buf: &mut String, out: &mut Vec<(usize, usize)>) {
    let mut cleaned = String::with_capacity(v.len());
    for c in v.chars().filter(|&c| !is_space(c)) {
        if c.is_ascii() {
            cleaned.push(c.to_ascii_uppercase());
        } else {
            cleaned.extend(c.to_uppercase());
        }
    }
    let dotted = dot_codes(&cleaned);
    for code in dotted.split(sep).filter(|c| !c.is_empty()) {
        let s = buf.len();
        buf.push_str(code);
        out.push((s, buf.len()));
    }
}

/// Inserts the dot into every whole word (a maximal run of word characters) shaped like an
/// undotted ICD-10 code: exactly what `\b([A-Z][0-9][0-9A-Z])([0-9A-Z]{1,4})\b` -> `\1.\2` does.
fn dot_codes(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let mut rest = s;
    while !rest.is_empty() {
        let word_len: usize = rest.chars().take_while(|&c| is_word(c)).map(char::len_utf8).sum();
        if word_len > 0 {
            let w = &rest[..word_len];
            let b = w.as_bytes();
            let shaped = (4..=7).contains(&b.len())
                && b.is_ascii()
                && b[0].is_ascii_uppercase()
                && b[1].is_ascii_digit()
                && b[2..].iter().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase());
            if shaped {
                out.push_str(&w[..3]);
                out.push('.');
                out.push_str(&w[3..]);
            } else {
                out.push_str(w);
            }
            rest = &rest[word_len..];
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &str, rule: TextRule) -> Option<String> {
        let mut s = String::new();
        text(v, rule, &mut s).then_some(s)
    }
    fn f(v: &str, func: fn(&str, &mut String) -> bool) -> Option<String> {
        let mut s = String::new();
        func(v, &mut s).then_some(s)
    }
    fn formats(p: &[&str]) -> Vec<DateFormat> {
        p.iter().map(|p| DateFormat::parse(p).unwrap()).collect()
    }
    fn ymd(days: Option<i32>) -> Option<String> {
        days.map(|d| {
            (chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Duration::days(d as i64))
                .to_string()
        })
    }

    #[test]
    fn spec_worked_examples() {
        let us = formats(&["%m/%d/%Y", "%Y-%m-%d"]);
        assert_eq!(ymd(date("03/07/1984", &us)).as_deref(), Some("1984-03-07"));
        assert_eq!(date("1984-13-40", &us), None);
        assert_eq!(f("2139", zip5).as_deref(), Some("02139"));
        assert_eq!(f("02139-4307", zip5).as_deref(), Some("02139"));
        assert_eq!(f("213", zip5).as_deref(), Some("00213"));
        assert_eq!(f("12", zip5), None);
        assert_eq!(f("(617) 555-1234", phone10).as_deref(), Some("617-555-1234"));
        assert_eq!(f("1-617-555-1234", phone10).as_deref(), Some("617-555-1234"));
        assert_eq!(f("555-1234", phone10), None);
        assert_eq!(f("123 45 6789", ssn).as_deref(), Some("123-45-6789"));
        assert_eq!(f("666-12-3456", ssn), None);
        assert_eq!(f("123-00-4567", ssn), None);
        assert_eq!(f("923-12-4567", ssn), None);
        assert_eq!(f("123-45-0000", ssn), None);
        let mut buf = String::new();
        let mut codes = vec![];
        icd10_list("e119; i10", ";", &mut buf, &mut codes);
        let got: Vec<&str> = codes.iter().map(|&(s, e)| &buf[s..e]).collect();
        assert_eq!(got, ["E11.9", "I10"]);
        assert_eq!(money("$1,234.50"), Some(1234.5));
        assert_eq!(money("n/a"), None);
    }

    #[test]
    fn non_finite_money_is_told_apart_from_text() {
        for v in ["inf", "-Infinity", "1e400", "NaN", "-1e999", " $1e400 "] {
            assert_eq!(money_checked(v), Err(ValueIssue::NonFinite), "{v}");
            assert_eq!(money(v), None, "{v}");
        }
        assert_eq!(money_checked("n/a"), Ok(None));
        assert_eq!(money_checked("$1,234.50"), Ok(Some(1234.5)));
        let long = format!("{}1.5", " ".repeat(100));
        assert_eq!(money_checked(&long), Ok(Some(1.5)));
        assert_eq!(money_f64(f64::INFINITY), None);
    }

    #[test]
    fn partial_dates_are_recognised() {
        assert_eq!(partial_date("1974-12"), Some((1974, Some(12))));
        assert_eq!(partial_date("197412"), Some((1974, Some(12))));
        assert_eq!(partial_date(" 1974 "), Some((1974, None)));
        assert_eq!(partial_date("1974-13"), None);
        assert_eq!(partial_date("1974-12-01"), None);
        assert_eq!(partial_date("74-12"), None);
        assert_eq!(ymd(days(1974, 12, 15)).as_deref(), Some("1974-12-15"));
    }

    #[test]
    fn text_rules() {
        assert_eq!(t("  mary\t ann  ", TextRule::Name).as_deref(), Some("MARY ANN"));
        assert_eq!(t(" \t ", TextRule::Name), None);
        assert_eq!(t(" Bob@X.ORG ", TextRule::Lower).as_deref(), Some("bob@x.org"));
        assert_eq!(t("straße", TextRule::Upper).as_deref(), Some("STRASSE"));
        assert_eq!(t("\u{1f}x\u{a0}", TextRule::Trim).as_deref(), Some("x"));
    }

    #[test]
    fn sex_rule() {
        assert_eq!(sex(Some(" male")), "M");
        assert_eq!(sex(Some("2")), "F");
        assert_eq!(sex(Some("unknown")), "U");
        assert_eq!(sex(None), "U");
    }

    #[test]
    fn dates_with_times_and_month_names() {
        let f = formats(&["%Y-%m-%dT%H:%M:%SZ", "%d-%b-%Y", "%Y%m%d"]);
        assert_eq!(ymd(date("2024-03-05T23:59:01Z", &f)).as_deref(), Some("2024-03-05"));
        assert_eq!(ymd(date("05-MAR-1980", &f)).as_deref(), Some("1980-03-05"));
        assert_eq!(ymd(date("19851231", &f)).as_deref(), Some("1985-12-31"));
        assert_eq!(date("19851341", &f), None);
        assert_eq!(date("00000000", &f), None);
        assert_eq!(date("2024-03-05T24:00:00Z", &f), None);
        assert_eq!(date("1985-02-30", &formats(&["%Y-%m-%d"])), None);
        assert_eq!(date("3/7/1984", &formats(&["%m/%d/%Y"])), None, "zero-padded fields only");
    }

    #[test]
    fn icd_dots_only_whole_codes() {
        assert_eq!(dot_codes("E119^I10^E11.9^Z7901^A1234567"), "E11.9^I10^E11.9^Z79.01^A1234567");
        assert_eq!(dot_codes("E119_X"), "E119_X");
    }
}
