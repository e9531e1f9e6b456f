//! An exact JSON value: what the JSON and FHIR readers hand the normaliser for arrays, objects
//! and FHIR resources. Unlike `serde_json::Value` (without its `arbitrary_precision` feature,
//! which would change every crate of the workspace), a number keeps its text exactly as written:
//! `123456789012345678901234` keeps every digit and `1e400` is text a money column refuses, not a
//! parse error that loses the whole record. Objects keep their members in file order.
//!
//! The parser is a small recursive-descent one over already-decoded UTF-8 text: full JSON
//! syntax, string escapes decoded by serde_json, nesting capped (a clear error, never a stack
//! overflow).

use std::fmt::{self, Write};

/// serde_json's own recursion limit: JSON nested deeper is refused, as it was before.
pub const MAX_JSON_DEPTH: usize = 128;

/// A JSON value whose numbers keep their text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Jv {
    Null,
    Bool(bool),
    /// A number's text exactly as written (valid JSON number syntax).
    Num(String),
    Str(String),
    Arr(Vec<Jv>),
    /// Members in file order; of a repeated key the last one counts (as a JSON object reads).
    Obj(Vec<(String, Jv)>),
}

/// Why a text is not one JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JvError {
    /// The text ends inside a value.
    Truncated,
    /// Not JSON syntax.
    Syntax,
    /// Nested deeper than the cap.
    TooDeep,
}

impl fmt::Display for JvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JvError::Truncated => "truncated",
            JvError::Syntax => "syntax error",
            JvError::TooDeep => "nested too deep",
        })
    }
}

impl Jv {
    /// Parses one JSON value (surrounding whitespace allowed), nested at most `max_depth` deep.
    pub fn parse(text: &str, max_depth: usize) -> Result<Jv, JvError> {
        let mut p = Parser { t: text, b: text.as_bytes(), i: 0, depth: 0, max: max_depth };
        let v = p.value()?;
        p.ws();
        if p.i < p.b.len() {
            return Err(JvError::Syntax);
        }
        Ok(v)
    }

    /// The value of member `k` of an object (the last one when the key repeats).
    pub fn get(&self, k: &str) -> Option<&Jv> {
        match self {
            Jv::Obj(m) => m.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Jv::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Jv::Null)
    }

    pub fn is_array(&self) -> bool {
        matches!(self, Jv::Arr(_))
    }

    /// A string, number or boolean as text (objects, arrays and null have none).
    pub fn scalar_text(&self) -> Option<&str> {
        match self {
            Jv::Str(s) | Jv::Num(s) => Some(s),
            Jv::Bool(true) => Some("true"),
            Jv::Bool(false) => Some("false"),
            _ => None,
        }
    }
}

/// Compact JSON, as serde_json writes a `Value`: object keys sorted, a repeated key once (its
/// last value); numbers as written.
impl fmt::Display for Jv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Jv::Null => f.write_str("null"),
            Jv::Bool(b) => write!(f, "{b}"),
            Jv::Num(n) => f.write_str(n),
            Jv::Str(s) => write_str(f, s),
            Jv::Arr(a) => {
                f.write_char('[')?;
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_char(']')
            }
            Jv::Obj(m) => {
                let mut sorted: std::collections::BTreeMap<&str, &Jv> = std::collections::BTreeMap::new();
                for (k, v) in m {
                    sorted.insert(k, v);
                }
                f.write_char('{')?;
                for (i, (k, v)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write_str(f, k)?;
                    write!(f, ":{v}")?;
                }
                f.write_char('}')
            }
        }
    }
}

fn write_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    match serde_json::to_string(s) {
        Ok(q) => f.write_str(&q),
        Err(_) => Err(fmt::Error),
    }
}

struct Parser<'a> {
    t: &'a str,
    b: &'a [u8],
    i: usize,
    depth: usize,
    max: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Past the end: truncated; else a syntax error.
    fn unexpected(&self) -> JvError {
        if self.i >= self.b.len() {
            JvError::Truncated
        } else {
            JvError::Syntax
        }
    }

    fn value(&mut self) -> Result<Jv, JvError> {
        self.ws();
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(Jv::Str),
            Some(b't') => self.literal("true", Jv::Bool(true)),
            Some(b'f') => self.literal("false", Jv::Bool(false)),
            Some(b'n') => self.literal("null", Jv::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.unexpected()),
        }
    }

    fn literal(&mut self, word: &str, v: Jv) -> Result<Jv, JvError> {
        let rest = &self.b[self.i..];
        if rest.starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else if word.as_bytes().starts_with(rest) {
            Err(JvError::Truncated)
        } else {
            Err(JvError::Syntax)
        }
    }

    fn enter(&mut self) -> Result<(), JvError> {
        self.depth += 1;
        self.i += 1;
        if self.depth > self.max {
            Err(JvError::TooDeep)
        } else {
            Ok(())
        }
    }

    fn object(&mut self) -> Result<Jv, JvError> {
        self.enter()?;
        let mut members = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            self.depth -= 1;
            return Ok(Jv::Obj(members));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.unexpected());
            }
            let k = self.string()?;
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.unexpected());
            }
            self.i += 1;
            let v = self.value()?;
            members.push((k, v));
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => break,
                _ => return Err(self.unexpected()),
            }
        }
        self.i += 1;
        self.depth -= 1;
        Ok(Jv::Obj(members))
    }

    fn array(&mut self) -> Result<Jv, JvError> {
        self.enter()?;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            self.depth -= 1;
            return Ok(Jv::Arr(items));
        }
        loop {
            items.push(self.value()?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => break,
                _ => return Err(self.unexpected()),
            }
        }
        self.i += 1;
        self.depth -= 1;
        Ok(Jv::Arr(items))
    }

    /// A string at `"`: borrowed when it has no escapes, else decoded by serde_json.
    fn string(&mut self) -> Result<String, JvError> {
        let start = self.i;
        self.i += 1;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => return Err(JvError::Truncated),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.i += 2;
                }
                Some(c) if c < 0x20 => return Err(JvError::Syntax),
                Some(_) => self.i += 1,
            }
        }
        if self.i >= self.b.len() {
            return Err(JvError::Truncated);
        }
        let quoted = &self.t[start..=self.i];
        self.i += 1;
        if !escaped {
            return Ok(quoted[1..quoted.len() - 1].to_string());
        }
        serde_json::from_str::<String>(quoted).map_err(|_| JvError::Syntax)
    }

    fn digits(&mut self) -> usize {
        let s = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - s
    }

    /// A number by JSON's grammar, kept as its text.
    fn number(&mut self) -> Result<Jv, JvError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.unexpected()),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.unexpected());
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.unexpected());
            }
        }
        Ok(Jv::Num(self.t[start..self.i].to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn p(t: &str) -> Result<Jv, JvError> {
        Jv::parse(t, MAX_JSON_DEPTH)
    }

    #[test]
    fn numbers_keep_their_text() {
        let v = p(r#"{"a":[123456789012345678901234, 1e400, -0, 1.50, 2E-3]}"#).unwrap();
        let items: Vec<&str> = match v.get("a").unwrap() {
            Jv::Arr(a) => a.iter().filter_map(Jv::scalar_text).collect(),
            _ => panic!(),
        };
        assert_eq!(items, ["123456789012345678901234", "1e400", "-0", "1.50", "2E-3"]);
    }

    #[test]
    fn strings_objects_and_rendering_follow_serde_json() {
        let t = r#" {"b":"\u00e9\"x\ud83d\ude00","a":[true,false,null,{}],"b":"last"} "#;
        let v = p(t).unwrap();
        assert_eq!(v.get("b").unwrap().as_str(), Some("last"));
        let parsed: serde_json::Value = serde_json::from_str(t).unwrap();
        assert_eq!(v.to_string(), parsed.to_string());
        let v = p(r#"{"k":"\u00e9\"x\ud83d\ude00\n"}"#).unwrap();
        assert_eq!(v.get("k").unwrap().as_str(), Some("é\"x😀\n"));
    }

    #[test]
    fn bad_text_is_named() {
        for (t, e) in [
            ("{\"a\":1", JvError::Truncated),
            ("{\"a\":tr", JvError::Truncated),
            ("[1,]", JvError::Syntax),
            ("{\"a\" 1}", JvError::Syntax),
            ("01", JvError::Syntax),
            ("1.", JvError::Truncated),
            ("-x", JvError::Syntax),
            ("\"a\u{1}\"", JvError::Syntax),
            ("\"\\u12\"", JvError::Syntax),
            ("\"ab\\", JvError::Truncated),
            ("[1] x", JvError::Syntax),
            ("", JvError::Truncated),
        ] {
            assert_eq!(p(t), Err(e), "{t:?}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(p(&deep), Err(JvError::TooDeep));
        let bomb = "[".repeat(1_000_000);
        assert_eq!(p(&bomb), Err(JvError::TooDeep));
        assert!(Jv::parse(&format!("{}{}", "[".repeat(128), "]".repeat(128)), 128).is_ok());
    }
}
