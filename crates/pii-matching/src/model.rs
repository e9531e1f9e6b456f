//! The values the matcher works on: a county person, a record to match, and the blocking keys
//! that find candidates. Every type here holds PHI, so `Debug` prints ids only.

use std::fmt;

use chrono::NaiveDate;

/// One person of the county person index.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Person {
    pub person_id: i64,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub middle_initial: Option<String>,
    pub dob: Option<NaiveDate>,
    pub sex: Option<String>,
    pub ssn: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub phone: Option<String>,
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
    /// Same phone number.
    Phone,
    /// Same last and first name (any birth date).
    LastFirstName,
}

/// One blocking key value. Values are normalised with [`norm`] / [`norm_phone`] on both sides.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum BlockingKey {
    LastNameDob { last_name: String, dob: NaiveDate },
    FirstNameDob { first_name: String, dob: NaiveDate },
    Address { address: String },
    Phone { phone: String },
    LastFirstName { last_name: String, first_name: String },
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
            BlockingKey::Phone { .. } => BlockingKind::Phone,
            BlockingKey::LastFirstName { .. } => BlockingKind::LastFirstName,
        }
    }

    /// The key of `kind` for these identity values, if every part is present.
    pub fn of(
        kind: BlockingKind,
        first: Option<&str>,
        last: Option<&str>,
        dob: Option<NaiveDate>,
        address: Option<&str>,
        phone: Option<&str>,
    ) -> Option<BlockingKey> {
        let n = |v: Option<&str>| v.map(norm).filter(|s| !s.is_empty());
        Some(match kind {
            BlockingKind::LastNameDob => BlockingKey::LastNameDob { last_name: n(last)?, dob: dob? },
            BlockingKind::FirstNameDob => BlockingKey::FirstNameDob { first_name: n(first)?, dob: dob? },
            BlockingKind::Address => BlockingKey::Address { address: n(address)? },
            BlockingKind::Phone => BlockingKey::Phone { phone: phone.and_then(norm_phone)? },
            BlockingKind::LastFirstName => {
                BlockingKey::LastFirstName { last_name: n(last)?, first_name: n(first)? }
            }
        })
    }

    pub fn of_person(kind: BlockingKind, p: &Person) -> Option<BlockingKey> {
        Self::of(
            kind,
            p.first_name.as_deref(),
            p.last_name.as_deref(),
            p.dob,
            p.address.as_deref(),
            p.phone.as_deref(),
        )
    }

    pub fn of_record(kind: BlockingKind, r: &Record) -> Option<BlockingKey> {
        Self::of(
            kind,
            r.first_name.as_deref(),
            r.last_name.as_deref(),
            r.dob,
            r.address.as_deref(),
            r.phone.as_deref(),
        )
    }
}

/// Upper case, trimmed, inner whitespace collapsed to one space (the canonical `name` rule).
pub fn norm(s: &str) -> String {
    let b = s.as_bytes();
    let clean = !b.is_empty()
        && b[0] != b' '
        && b[b.len() - 1] != b' '
        && b.iter()
            .all(|&c| c.is_ascii() && !c.is_ascii_lowercase() && (c == b' ' || !c.is_ascii_whitespace()))
        && !s.contains("  ");
    if clean {
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

/// A 10-digit phone as `NNN-NNN-NNNN` (a leading 1 dropped), the canonical `phone` rule.
pub fn norm_phone(s: &str) -> Option<String> {
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
    let mut out = String::with_capacity(12);
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
