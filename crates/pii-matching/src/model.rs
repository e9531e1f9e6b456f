//! The values the matcher works on: a county person, a record to match, and the blocking keys
//! that find candidates. Every type here holds PHI, so `Debug` prints ids only.

use std::fmt;

use chrono::NaiveDate;
use compact_str::CompactString;

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
    /// Same last and first name (any birth date).
    LastFirstName,
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
}

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
        }
    }

    /// The key of `kind` for these identity values, if every part is present.
    pub fn of(kind: BlockingKind, v: KeyParts<'_>) -> Option<BlockingKey> {
        let n = |v: Option<&str>| v.map(norm_compact).filter(|s| !s.is_empty());
        let KeyParts { first, last, dob, address, zip, phone } = v;
        Some(match kind {
            BlockingKind::LastNameDob => BlockingKey::LastNameDob { last_name: n(last)?, dob: dob? },
            BlockingKind::FirstNameDob => BlockingKey::FirstNameDob { first_name: n(first)?, dob: dob? },
            BlockingKind::Address => BlockingKey::Address { address: n(address)? },
            BlockingKind::AddressZip => {
                BlockingKey::AddressZip { address: n(address)?, zip: zip.map(zip5).filter(|z| z.len() == 5)? }
            }
            BlockingKind::Phone => BlockingKey::Phone { phone: phone.and_then(norm_phone)? },
            BlockingKind::LastFirstName => {
                BlockingKey::LastFirstName { last_name: n(last)?, first_name: n(first)? }
            }
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
                zip: p.zip.as_deref(),
                phone: p.phone.as_deref(),
            },
        )
    }

    pub fn of_record(kind: BlockingKind, r: &Record) -> Option<BlockingKey> {
        Self::of(
            kind,
            KeyParts {
                first: r.first_name.as_deref(),
                last: r.last_name.as_deref(),
                dob: r.dob,
                address: r.address.as_deref(),
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
