//! JSON lines (one object per line) and JSON arrays (one object per top-level element):
//! streamed. Fields are paths into the object, followed through the record's raw text level by
//! level, so a number keeps its text exactly as written (`123456789012345678901234` stays every
//! digit in a text column; `1e400` is a number no money column may hold, refused and counted).
//! Top-level keys the contract neither maps nor drops are counted by their position in the
//! object, never by name. Identical array elements (same keys and values, whatever the spacing
//! or key order) are duplicates.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use contracts::PathSeg;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::TransformError;
use crate::frame::Kind;
use crate::job::{Job, Reader};
use crate::jv::{Jv, MAX_JSON_DEPTH};
use crate::outcome::{Summary, ValueIssue};
use crate::plan::{Plan, Raw, Row, Src};
use crate::stream::{self, Parsed, RecordFormat};

/// Distinct ignored key positions reported per chunk at most.
const MAX_IGNORED_KEYS: usize = 100;

pub(crate) struct Json {
    /// One JSON array rather than one object per line.
    pub array: bool,
}

impl Reader for Json {
    fn read(&self, job: Job<'_, '_>) -> Result<Summary, TransformError> {
        stream::run(self, job)
    }
}

impl RecordFormat for Json {
    type Scratch = ();

    fn kind(&self) -> Kind {
        if self.array {
            Kind::JsonArray
        } else {
            Kind::Lines
        }
    }

    fn dedupe_key(&self, rec: &[u8]) -> u128 {
        if self.array {
            // identical elements: same keys and values, whatever the spacing or key order
            if let Ok(v) = serde_json::from_slice::<Value>(rec) {
                return xxhash_rust::xxh3::xxh3_128(v.to_string().as_bytes());
            }
        }
        xxhash_rust::xxh3::xxh3_128(rec)
    }

    fn unterminated(&self) -> &'static str {
        if self.array {
            "truncated JSON element"
        } else {
            "unterminated quoted field (runs to end of file)"
        }
    }

    fn by_element(&self) -> bool {
        self.array
    }

    fn parse(
        &self,
        plan: &Plan,
        text: &str,
        row: &mut Row,
        _scratch: &mut (),
        ignored: &mut BTreeMap<usize, u64>,
    ) -> Parsed {
        if text.trim().is_empty() {
            return Parsed::Blank;
        }
        // the whole record's syntax first (numbers out of f64 range are fine as text)
        let raw: &RawValue = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return Parsed::Malformed(format!("invalid JSON ({})", json_err(&e))),
        };
        let Some(top) = Members::of(raw) else { return Parsed::Malformed("not a JSON object".into()) };
        for (pos, (k, _)) in top.0.iter().enumerate() {
            if plan.known_keys.binary_search_by(|known| known.as_str().cmp(k)).is_err() {
                if let Some(n) = ignored.get_mut(&(pos + 1)) {
                    *n += 1;
                } else if ignored.len() < MAX_IGNORED_KEYS {
                    ignored.insert(pos + 1, 1);
                }
            }
        }
        let leaves: Vec<Leaf<'_>> = plan
            .cols
            .iter()
            .map(|col| match &col.src {
                Src::Path(p) => top.follow(&p.0).map_or(Leaf::Null, Leaf::of),
                _ => Leaf::Null,
            })
            .collect();
        row.fill(plan, |i, _| leaves[i].raw());
        Parsed::Row
    }
}

/// A JSON value at a path, classified from its raw text.
enum Leaf<'a> {
    Null,
    Str(Cow<'a, str>),
    /// A number's text exactly as written.
    Num(&'a str),
    Bool(bool),
    /// An array or object, parsed with its numbers' text kept (list columns take arrays).
    Json(Jv),
    Refused(ValueIssue),
}

impl<'a> Leaf<'a> {
    fn of(raw: &'a RawValue) -> Self {
        let t = raw.get();
        match t.as_bytes().first() {
            Some(b'"') => serde_json::from_str::<Text<'a>>(t).map_or(Leaf::Null, |s| Leaf::Str(s.0)),
            Some(b't') => Leaf::Bool(true),
            Some(b'f') => Leaf::Bool(false),
            Some(b'[' | b'{') => match Jv::parse(t, MAX_JSON_DEPTH) {
                Ok(v) => Leaf::Json(v),
                // the record's syntax and depth were checked by serde_json: not reached
                Err(_) => {
                    Leaf::Refused(if t.starts_with('[') { ValueIssue::Array } else { ValueIssue::Object })
                }
            },
            Some(b'-' | b'0'..=b'9') => Leaf::Num(t),
            _ => Leaf::Null,
        }
    }

    fn raw(&self) -> Raw<'_> {
        match self {
            Leaf::Null => Raw::Null,
            Leaf::Str(s) => Raw::Str(s),
            Leaf::Num(n) => Raw::Num(n),
            Leaf::Bool(b) => Raw::Bool(*b),
            Leaf::Json(v) => Raw::Json(v),
            Leaf::Refused(why) => Raw::Refused(*why),
        }
    }
}

/// A JSON object's members in file order, their values unparsed.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Members<'a> {
    /// The members of `raw` when it is an object.
    fn of(raw: &'a RawValue) -> Option<Self> {
        if !raw.get().starts_with('{') {
            return None;
        }
        serde_json::from_str(raw.get()).ok()
    }

    /// The value of `key` (the last one when a key repeats, as a JSON object reads).
    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// The value at `path` (object keys and array indexes), parsing only the levels it crosses.
    fn follow(&self, path: &[PathSeg]) -> Option<&'a RawValue> {
        let (PathSeg::Key(first), rest) = path.split_first()? else { return None };
        let mut cur = self.get(first)?;
        for seg in rest {
            cur = match seg {
                PathSeg::Key(k) => Members::of(cur)?.get(k)?,
                PathSeg::Index(i) => {
                    if !cur.get().starts_with('[') {
                        return None;
                    }
                    serde_json::from_str::<Vec<&RawValue>>(cur.get()).ok()?.get(*i).copied()?
                }
            };
        }
        Some(cur)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Members<'a>, M::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<Text<'a>, &'a RawValue>()? {
                    out.push((k.0, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A JSON string, borrowed from the text when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, _: S) -> Result<Text<'a>, S::Error> {
                Err(serde::de::Error::custom("expected a string"))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// What kind of JSON error, in words (never the text around it).
pub(crate) fn json_err(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "truncated",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Io => "read error",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at<'a>(raw: &'a RawValue, path: &str) -> Option<&'a str> {
        let p = contracts::JsonPath::parse(path).unwrap();
        Members::of(raw).unwrap().follow(&p.0).map(RawValue::get)
    }

    #[test]
    fn paths_follow_the_raw_text_and_keep_numbers_exact() {
        let raw: &RawValue = serde_json::from_str(
            r#"{"a":{"b":[1, {"c":123456789012345678901234}]},"k\"":"x","a":{"b":[7]}}"#,
        )
        .unwrap();
        assert_eq!(at(raw, "a.b[0]"), Some("7"), "the last of a repeated key");
        let raw: &RawValue =
            serde_json::from_str(r#"{"a":{"b":[1, {"c":123456789012345678901234}]}}"#).unwrap();
        assert_eq!(at(raw, "a.b[1].c"), Some("123456789012345678901234"));
        assert_eq!(at(raw, "a.b[2]"), None);
        assert_eq!(at(raw, "a.x"), None);
        assert_eq!(at(raw, "a.b.c"), None);
        let raw: &RawValue = serde_json::from_str(r#"{"k\"e":"v\u00e9","n":1e400}"#).unwrap();
        let m = Members::of(raw).unwrap();
        assert_eq!(m.0[0].0, "k\"e");
        assert!(matches!(Leaf::of(m.get("k\"e").unwrap()), Leaf::Str(s) if s == "vé"));
        assert!(matches!(Leaf::of(m.get("n").unwrap()), Leaf::Num("1e400")));
    }
}
