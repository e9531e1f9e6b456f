//! The values the matcher works on: a county person, a record to match, and the blocking keys
//! that find candidates. Every type here holds PHI, so `Debug` prints ids only.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use compact_str::CompactString;

use crate::compare::soundex_code;

/// The columns of a person file (CSV header or Parquet schema) and of `person`, as in the
/// county's person extract.
pub const PERSON_COLUMNS: [&str; 12] = [
    "person_id",
    "first_name",
    "last_name",
    "middle_initial",
    "dob",
    "sex",
    "ssn",
    "address",
    "city",
    "state",
    "zip",
    "phone",
];

/// The date forms a county export or a record file carries: ISO, `MM/DD/YYYY`, `YYYYMMDD`.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    ["%Y-%m-%d", "%m/%d/%Y", "%Y%m%d"].iter().find_map(|f| NaiveDate::parse_from_str(s, f).ok())
}

/// One person of the county person index. Values are inline strings: a candidate row decodes
/// without an allocation per field (most values are under 24 bytes).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Person {
    pub person_id: i64,
    pub first_name: Option<CompactString>,
    pub last_name: Option<CompactString>,
    pub middle_initial: Option<CompactString>,
    pub dob: Option<NaiveDate>,
    pub sex: Option<CompactString>,
    pub ssn: Option<CompactString>,
    pub address: Option<CompactString>,
    pub city: Option<CompactString>,
    pub state: Option<CompactString>,
    pub zip: Option<CompactString>,
    pub phone: Option<CompactString>,
}

impl Person {
    /// The person with every value in the canonical form the records have (the canonical
    /// schema's semantic rules): names, address, city and state upper case, trimmed, inner
    /// whitespace collapsed; sex `M`/`F`/`U` (`MALE`, `1`, ... accepted); SSN as `NNN-NN-NNNN`
    /// from its nine digits; ZIP as five digits (3-4 digits left-padded, ZIP+4 cut); phone as
    /// `NNN-NNN-NNNN`. A value that does not fit its rule becomes missing. The SSN keeps its shape
    /// only: the index's own numbers are not re-judged. Index and records then compare like with
    /// like in both adapters (the database hashes the stored text).
    pub fn normalised(self) -> Person {
        let text = |v: Option<CompactString>| v.map(|s| norm_compact(&s)).filter(|s| !s.is_empty());
        Person {
            person_id: self.person_id,
            first_name: text(self.first_name),
            last_name: text(self.last_name),
            middle_initial: text(self.middle_initial),
            dob: self.dob,
            sex: self.sex.and_then(|s| norm_sex(&s)),
            ssn: self.ssn.and_then(|s| digits_as(&s, &[3, 2, 4])),
            address: text(self.address),
            city: text(self.city),
            state: text(self.state),
            zip: self.zip.and_then(|s| norm_zip(&s)),
            phone: self.phone.and_then(|s| norm_phone(&s)),
        }
    }
}

/// `M`, `F` or `U` (`MALE`, `1`, `FEMALE`, `2` accepted; anything else is `U`); empty: None.
pub fn norm_sex(s: &str) -> Option<CompactString> {
    let s = norm(s);
    let v = match s.as_str() {
        "" => return None,
        "M" | "MALE" | "1" => "M",
        "F" | "FEMALE" | "2" => "F",
        _ => "U",
    };
    Some(CompactString::new(v))
}

/// The digits of `s` in groups joined by `-` when there are exactly as many as the groups take.
fn digits_as(s: &str, groups: &[usize]) -> Option<CompactString> {
    let d: Vec<u8> = s.bytes().filter(u8::is_ascii_digit).collect();
    if d.len() != groups.iter().sum::<usize>() {
        return None;
    }
    let mut out = CompactString::default();
    let mut at = 0;
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        out.extend(d[at..at + g].iter().map(|&b| b as char));
        at += g;
    }
    Some(out)
}

/// A US ZIP as five digits: 3-5 digits left-padded with zeros (a ZIP read as a number), 9 cut to
/// the first 5. A value with anything but digits, spaces and one dash (a foreign postcode such as
/// `H2X 1Y4` or `SW1A 1AA`) is kept whole, upper case: never padded into a false ZIP.
fn norm_zip(s: &str) -> Option<CompactString> {
    if !s.trim().bytes().all(|c| c.is_ascii_digit() || c == b'-' || c == b' ') {
        return Some(norm_compact(s)).filter(|z| !z.is_empty());
    }
    let d: Vec<u8> = s.bytes().filter(u8::is_ascii_digit).collect();
    let five = match d.len() {
        3..=5 => std::iter::repeat_n(b'0', 5 - d.len()).chain(d.iter().copied()).collect::<Vec<u8>>(),
        9 => d[..5].to_vec(),
        _ => return None,
    };
    Some(five.iter().map(|&b| b as char).collect())
}

impl fmt::Debug for Person {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Person {{ person_id: {}, .. *** }}", self.person_id)
    }
}

/// A record to match: the identity fields of one bad row. `reference` is stable per row
/// (`<file_id>:<row>` in the pipeline, the record id in the benchmark).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub reference: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub dob: Option<NaiveDate>,
    pub sex: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub zip: Option<String>,
    pub phone: Option<String>,
}

impl Record {
    /// The record with its values in the canonical form ([`Person::normalised`]'s rules), as the
    /// workflow's transform writes them: a record file typed by hand (`lake match`) compares like
    /// with like against the index.
    pub fn normalised(self) -> Record {
        let text = |v: Option<String>| v.map(|s| norm(&s)).filter(|s| !s.is_empty());
        Record {
            reference: self.reference,
            first_name: text(self.first_name),
            last_name: text(self.last_name),
            dob: self.dob,
            sex: self.sex.and_then(|s| norm_sex(&s)).map(String::from),
            address: text(self.address),
            city: text(self.city),
            zip: self.zip.and_then(|s| norm_zip(&s)).map(String::from),
            phone: self.phone.and_then(|s| norm_phone(&s)).map(String::from),
        }
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Record {{ reference: {}, .. *** }}", self.reference)
    }
}

/// The kinds of blocking key the index adapters know (closed: each has an index in the
/// migrations and a branch in every adapter). `config/matching.toml` chooses which are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockingKind {
    /// Same last name and birth date.
    LastNameDob,
    /// Same first name and birth date.
    FirstNameDob,
    /// Same street address.
    Address,
    /// Same street address and 5-digit ZIP: a third of the candidates of `address` (the same
    /// street name and number recur in other towns).
    AddressZip,
    /// Same phone number.
    Phone,
    /// Same last and first name (any birth date): ~140 candidates a record at 1,000,000
    /// persons, so asked only by records without a birth date.
    LastFirstName,
    /// Soundex of the last and of the first name as a sorted pair (swapped names give the same
    /// key) and birth year: survives a typo that keeps a name's sound and any day/month error.
    NamesYear,
    /// The same sorted Soundex pair and birth month and day: survives a wrong birth year.
    NamesMonthDay,
    /// Soundex of the last name and birth date: survives any error in the first name.
    LastSoundexDob,
    /// Soundex of the first name and birth date: survives any error in the last name.
    FirstSoundexDob,
    /// Soundex of the last name and birth year, asked only by records without a first name.
    LastSoundexYear,
    /// US ZIP (5 digits, or ZIP+4), house number and first letter of the street: survives a
    /// typo in the street name or a missing suffix.
    ZipHouseStreet,
    /// Birth date and city: survives wrong or missing names, a move within the town, a new phone.
    DobCity,
    /// The last seven digits of the phone (`NNN-NNNN`): survives a wrong area code.
    PhoneLast7,
    /// The sorted Soundex pair of the names and the US ZIP: survives a missing or wrong birth date.
    NamesZip,
    /// US ZIP and birth date: survives wrong or missing names and a street address that changed
    /// within the ZIP.
    ZipDob,
    /// Soundex of the first name and birth month and day, asked only by records without a last
    /// name: survives a wrong birth year and a first-name typo.
    FirstSoundexMonthDay,
    /// The sorted Soundex pair of the names alone, asked only by records without a birth date.
    NamesSoundex,
    /// Last name and US ZIP, asked only by records without a birth date.
    LastNameZip,
}

impl BlockingKind {
    /// Every kind, in the order of the index columns.
    pub const ALL: [BlockingKind; 19] = [
        BlockingKind::LastNameDob,
        BlockingKind::FirstNameDob,
        BlockingKind::Address,
        BlockingKind::AddressZip,
        BlockingKind::Phone,
        BlockingKind::LastFirstName,
        BlockingKind::NamesYear,
        BlockingKind::NamesMonthDay,
        BlockingKind::LastSoundexDob,
        BlockingKind::FirstSoundexDob,
        BlockingKind::LastSoundexYear,
        BlockingKind::ZipHouseStreet,
        BlockingKind::DobCity,
        BlockingKind::PhoneLast7,
        BlockingKind::NamesZip,
        BlockingKind::ZipDob,
        BlockingKind::FirstSoundexMonthDay,
        BlockingKind::NamesSoundex,
        BlockingKind::LastNameZip,
    ];
}

/// One blocking key value. Values are normalised with [`norm`] / [`norm_phone`] on both sides.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum BlockingKey {
    LastNameDob { last_name: CompactString, dob: NaiveDate },
    FirstNameDob { first_name: CompactString, dob: NaiveDate },
    Address { address: CompactString },
    AddressZip { address: CompactString, zip: CompactString },
    Phone { phone: CompactString },
    LastFirstName { last_name: CompactString, first_name: CompactString },
    NamesYear { low: Soundex, high: Soundex, year: i32 },
    NamesMonthDay { low: Soundex, high: Soundex, month: u32, day: u32 },
    LastSoundexDob { code: Soundex, dob: NaiveDate },
    FirstSoundexDob { code: Soundex, dob: NaiveDate },
    LastSoundexYear { code: Soundex, year: i32 },
    ZipHouseStreet { zip: CompactString, house: CompactString, street: char },
    DobCity { dob: NaiveDate, city: CompactString },
    PhoneLast7 { digits: CompactString },
    NamesZip { low: Soundex, high: Soundex, zip: CompactString },
    ZipDob { zip: CompactString, dob: NaiveDate },
    FirstSoundexMonthDay { code: Soundex, month: u32, day: u32 },
    NamesSoundex { low: Soundex, high: Soundex },
    LastNameZip { last_name: CompactString, zip: CompactString },
}

/// A Soundex code (letter and three digits, [`crate::compare::soundex_code`]).
pub type Soundex = [u8; 4];

impl fmt::Debug for BlockingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockingKey::{:?}(***)", self.kind())
    }
}

impl BlockingKey {
    pub fn kind(&self) -> BlockingKind {
        match self {
            BlockingKey::LastNameDob { .. } => BlockingKind::LastNameDob,
            BlockingKey::FirstNameDob { .. } => BlockingKind::FirstNameDob,
            BlockingKey::Address { .. } => BlockingKind::Address,
            BlockingKey::AddressZip { .. } => BlockingKind::AddressZip,
            BlockingKey::Phone { .. } => BlockingKind::Phone,
            BlockingKey::LastFirstName { .. } => BlockingKind::LastFirstName,
            BlockingKey::NamesYear { .. } => BlockingKind::NamesYear,
            BlockingKey::NamesMonthDay { .. } => BlockingKind::NamesMonthDay,
            BlockingKey::LastSoundexDob { .. } => BlockingKind::LastSoundexDob,
            BlockingKey::FirstSoundexDob { .. } => BlockingKind::FirstSoundexDob,
            BlockingKey::LastSoundexYear { .. } => BlockingKind::LastSoundexYear,
            BlockingKey::ZipHouseStreet { .. } => BlockingKind::ZipHouseStreet,
            BlockingKey::DobCity { .. } => BlockingKind::DobCity,
            BlockingKey::PhoneLast7 { .. } => BlockingKind::PhoneLast7,
            BlockingKey::NamesZip { .. } => BlockingKind::NamesZip,
            BlockingKey::ZipDob { .. } => BlockingKind::ZipDob,
            BlockingKey::FirstSoundexMonthDay { .. } => BlockingKind::FirstSoundexMonthDay,
            BlockingKey::NamesSoundex { .. } => BlockingKind::NamesSoundex,
            BlockingKey::LastNameZip { .. } => BlockingKind::LastNameZip,
        }
    }

    /// The key of `kind` for these identity values, if every part is present.
    pub fn of(kind: BlockingKind, v: KeyParts<'_>) -> Option<BlockingKey> {
        let n = |v: Option<&str>| v.map(norm_compact).filter(|s| !s.is_empty());
        let KeyParts { first, last, dob, address, zip, phone, .. } = v;
        Some(match kind {
            BlockingKind::LastNameDob => BlockingKey::LastNameDob { last_name: n(last)?, dob: dob? },
            BlockingKind::FirstNameDob => BlockingKey::FirstNameDob { first_name: n(first)?, dob: dob? },
            BlockingKind::Address => BlockingKey::Address { address: n(address)? },
            BlockingKind::AddressZip => BlockingKey::AddressZip { address: n(address)?, zip: us_zip5(zip?)? },
            BlockingKind::Phone => BlockingKey::Phone { phone: phone.and_then(norm_phone)? },
            BlockingKind::LastFirstName => {
                BlockingKey::LastFirstName { last_name: n(last)?, first_name: n(first)? }
            }
            BlockingKind::DobCity => BlockingKey::DobCity { dob: dob?, city: n(v.city)? },
            BlockingKind::PhoneLast7 => {
                let phone = phone.and_then(norm_phone)?;
                BlockingKey::PhoneLast7 { digits: CompactString::new(&phone[4..]) }
            }
            BlockingKind::ZipDob => BlockingKey::ZipDob { zip: us_zip5(zip?)?, dob: dob? },
            BlockingKind::LastNameZip => {
                BlockingKey::LastNameZip { last_name: n(last)?, zip: us_zip5(zip?)? }
            }
            _ => return Self::fuzzy(kind, v),
        })
    }

    /// The keys of the Soundex and house-number kinds (computed on normalised values, as the
    /// generated columns of migration 0007 compute them on the stored ones).
    fn fuzzy(kind: BlockingKind, v: KeyParts<'_>) -> Option<BlockingKey> {
        let sdx = |x: Option<&str>| x.map(norm_compact).and_then(|s| soundex_code(&s));
        let pair = || {
            let (a, b) = (sdx(v.last)?, sdx(v.first)?);
            Some((a.min(b), a.max(b)))
        };
        Some(match kind {
            BlockingKind::NamesYear => {
                let (low, high) = pair()?;
                BlockingKey::NamesYear { low, high, year: v.dob?.year() }
            }
            BlockingKind::NamesMonthDay => {
                let ((low, high), d) = (pair()?, v.dob?);
                BlockingKey::NamesMonthDay { low, high, month: d.month(), day: d.day() }
            }
            BlockingKind::LastSoundexDob => BlockingKey::LastSoundexDob { code: sdx(v.last)?, dob: v.dob? },
            BlockingKind::FirstSoundexDob => {
                BlockingKey::FirstSoundexDob { code: sdx(v.first)?, dob: v.dob? }
            }
            BlockingKind::LastSoundexYear => {
                BlockingKey::LastSoundexYear { code: sdx(v.last)?, year: v.dob?.year() }
            }
            BlockingKind::ZipHouseStreet => {
                let address = norm_compact(v.address?);
                let (house, street) = house_street(&address)?;
                BlockingKey::ZipHouseStreet { zip: us_zip5(v.zip?)?, house: house.into(), street }
            }
            BlockingKind::FirstSoundexMonthDay => {
                let d = v.dob?;
                BlockingKey::FirstSoundexMonthDay { code: sdx(v.first)?, month: d.month(), day: d.day() }
            }
            BlockingKind::NamesSoundex => {
                let (low, high) = pair()?;
                BlockingKey::NamesSoundex { low, high }
            }
            BlockingKind::NamesZip => {
                let ((low, high), zip) = (pair()?, us_zip5(v.zip?)?);
                BlockingKey::NamesZip { low, high, zip }
            }
            _ => return None,
        })
    }

    pub fn of_person(kind: BlockingKind, p: &Person) -> Option<BlockingKey> {
        Self::of(
            kind,
            KeyParts {
                first: p.first_name.as_deref(),
                last: p.last_name.as_deref(),
                dob: p.dob,
                address: p.address.as_deref(),
                city: p.city.as_deref(),
                zip: p.zip.as_deref(),
                phone: p.phone.as_deref(),
            },
        )
    }

    /// The record's key of `kind`. Five kinds are fallbacks, asked only by records that lack a
    /// field: [`BlockingKind::LastSoundexYear`] without a first name (the Soundex pair keys
    /// cover the others, ~100x tighter), [`BlockingKind::FirstSoundexMonthDay`] without a last
    /// name, [`BlockingKind::LastFirstName`], [`BlockingKind::NamesSoundex`] and
    /// [`BlockingKind::LastNameZip`] without a birth date.
    pub fn of_record(kind: BlockingKind, r: &Record) -> Option<BlockingKey> {
        let has = |v: &Option<String>| v.as_deref().is_some_and(|f| !f.trim().is_empty());
        match kind {
            BlockingKind::LastSoundexYear if has(&r.first_name) => return None,
            BlockingKind::FirstSoundexMonthDay if has(&r.last_name) => return None,
            BlockingKind::LastFirstName | BlockingKind::NamesSoundex | BlockingKind::LastNameZip
                if r.dob.is_some() =>
            {
                return None
            }
            _ => {}
        }
        Self::of(
            kind,
            KeyParts {
                first: r.first_name.as_deref(),
                last: r.last_name.as_deref(),
                dob: r.dob,
                address: r.address.as_deref(),
                city: r.city.as_deref(),
                zip: r.zip.as_deref(),
                phone: r.phone.as_deref(),
            },
        )
    }
}

/// The raw identity values a blocking key is made of (normalised by [`BlockingKey::of`]).
#[derive(Clone, Copy, Default)]
pub struct KeyParts<'a> {
    pub first: Option<&'a str>,
    pub last: Option<&'a str>,
    pub dob: Option<NaiveDate>,
    pub address: Option<&'a str>,
    pub city: Option<&'a str>,
    pub zip: Option<&'a str>,
    pub phone: Option<&'a str>,
}

/// The first five digits of a ZIP (`02478-1234` -> `02478`); fewer when it has fewer. An inline
/// string (no allocation).
pub fn zip5(s: &str) -> CompactString {
    if s.len() == 5 && s.bytes().all(|c| c.is_ascii_digit()) {
        return CompactString::new(s);
    }
    s.chars().filter(char::is_ascii_digit).take(5).collect()
}

/// A US ZIP as its five digits: `NNNNN`, `NNNNN-NNNN` or nine digits; anything else (a
/// foreign postcode, a ZIP that lost its leading zero) is not a US ZIP and gives `None`.
pub fn us_zip5(s: &str) -> Option<CompactString> {
    let b = s.as_bytes();
    let digits = |x: &[u8]| x.iter().all(u8::is_ascii_digit);
    let ok = match b.len() {
        5 | 9 => digits(b),
        10 => digits(&b[..5]) && b[5] == b'-' && digits(&b[6..]),
        _ => false,
    };
    ok.then(|| CompactString::new(&s[..5]))
}

/// The house number (leading digits of the first word) and the first character of the second
/// word of a normalised street address: `12B ELM ST` -> (`12`, `E`).
pub fn house_street(address: &str) -> Option<(&str, char)> {
    let mut words = address.split(' ');
    let first = words.next()?;
    let n = first.bytes().take_while(u8::is_ascii_digit).count();
    let street = words.next()?.chars().next()?;
    (n > 0).then(|| (&first[..n], street))
}

/// Upper case, trimmed, inner whitespace collapsed to one space (the canonical `name` rule).
pub fn norm(s: &str) -> String {
    if is_canonical(s) {
        return s.to_string(); // the usual case: already canonical
    }
    let mut out = String::with_capacity(s.len());
    for w in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in w.chars() {
            out.extend(c.to_uppercase());
        }
    }
    out
}

/// [`norm`] as an inline string: no allocation for values up to 24 bytes (nearly every name,
/// street address, city, ZIP and phone), which is most of the matcher's per-candidate work.
pub fn norm_compact(s: &str) -> CompactString {
    if is_canonical(s) {
        CompactString::new(s)
    } else {
        CompactString::from(norm(s))
    }
}

/// Already what [`norm`] would make of it: ASCII, no lower case, single inner spaces, trimmed.
fn is_canonical(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0] != b' '
        && b[b.len() - 1] != b' '
        && b.iter()
            .all(|&c| c.is_ascii() && !c.is_ascii_lowercase() && (c == b' ' || !c.is_ascii_whitespace()))
        && !s.contains("  ")
}

/// A 10-digit phone as `NNN-NNN-NNNN` (a leading 1 dropped), the canonical `phone` rule. An
/// inline string (no allocation).
pub fn norm_phone(s: &str) -> Option<CompactString> {
    let b = s.as_bytes();
    if b.len() == 12
        && b.iter().enumerate().all(|(i, c)| if i == 3 || i == 7 { *c == b'-' } else { c.is_ascii_digit() })
    {
        return Some(CompactString::new(s)); // already NNN-NNN-NNNN
    }
    let mut d = [0u8; 11];
    let mut n = 0;
    for c in s.bytes().filter(u8::is_ascii_digit) {
        if n == d.len() {
            return None;
        }
        d[n] = c;
        n += 1;
    }
    let d = match n {
        11 if d[0] == b'1' => &d[1..],
        10 => &d[..10],
        _ => return None,
    };
    let mut out = CompactString::with_capacity(12);
    for (i, &c) in d.iter().enumerate() {
        if i == 3 || i == 6 {
            out.push('-');
        }
        out.push(char::from(c));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_messy_person_normalises_to_the_canonical_form_and_a_clean_one_stays() {
        let c = |s: &str| Some(CompactString::new(s));
        let messy = Person {
            person_id: 7,
            first_name: c("  anna "),
            last_name: c("smith\tjones"),
            middle_initial: c("j"),
            sex: c("female"),
            ssn: c("123456789"),
            address: c("1  main st"),
            city: c("cambridge"),
            state: c("ma"),
            zip: c("2138"),
            phone: c("(617) 555 0101"),
            ..Person::default()
        };
        let clean = Person {
            person_id: 7,
            first_name: c("ANNA"),
            last_name: c("SMITH JONES"),
            middle_initial: c("J"),
            sex: c("F"),
            ssn: c("123-45-6789"),
            address: c("1 MAIN ST"),
            city: c("CAMBRIDGE"),
            state: c("MA"),
            zip: c("02138"),
            phone: c("617-555-0101"),
            ..Person::default()
        };
        assert!(messy.normalised() == clean);
        assert!(clean.clone().normalised() == clean);
        let odd =
            Person { person_id: 8, ssn: c("12-34"), zip: c("02138-1234"), sex: c("x"), ..Person::default() };
        let odd = odd.normalised();
        assert_eq!((odd.ssn, odd.zip.as_deref(), odd.sex.as_deref()), (None, Some("02138"), Some("U")));
        let foreign = Person { person_id: 9, zip: c("h2x 1y4"), ..Person::default() }.normalised();
        assert_eq!(foreign.zip.as_deref(), Some("H2X 1Y4"), "a Canadian postcode is not padded into a ZIP");
    }

    #[test]
    fn phones_become_ten_digits_with_dashes() {
        assert_eq!(norm_phone("857-631-6197").as_deref(), Some("857-631-6197"));
        assert_eq!(norm_phone("(857) 631 6197").as_deref(), Some("857-631-6197"));
        assert_eq!(norm_phone("+1 857.631.6197").as_deref(), Some("857-631-6197"));
        assert_eq!(norm_phone("2857-631-6197"), None); // 11 digits without the leading 1
        assert_eq!(norm_phone("857-631-619"), None);
        assert_eq!(norm_phone("1-857-631-6197-12"), None);
        assert_eq!(norm_phone(""), None);
    }
}
