//! Delimited text (CSV, PSV, ...): streamed. The first record is the header, checked against
//! the contract's; each later record is split at the delimiter (quoted fields unquoted) into
//! the header's columns. A record with more fields than the header is malformed.

use std::collections::BTreeMap;

use crate::error::TransformError;
use crate::frame::Kind;
use crate::job::{Job, Reader};
use crate::outcome::Summary;
use crate::plan::{Plan, Raw, Row, Src};
use crate::stream::{self, Parsed, RecordFormat};

pub(crate) struct Delimited<'c> {
    delim: u8,
    quote: Option<u8>,
    header: &'c [String],
}

impl<'c> Delimited<'c> {
    pub fn new(delimiter: char, quote: Option<char>, header: &'c [String]) -> Self {
        Self { delim: delimiter as u8, quote: quote.map(|q| q as u8), header }
    }
}

impl Reader for Delimited<'_> {
    fn read(&self, job: Job<'_, '_>) -> Result<Summary, TransformError> {
        stream::run(self, job)
    }
}

impl RecordFormat for Delimited<'_> {
    /// Unquoted field text.
    type Scratch = String;

    fn kind(&self) -> Kind {
        Kind::Delimited { delim: self.delim, quote: self.quote }
    }

    fn has_header(&self) -> bool {
        true
    }

    fn check_header(&self, text: &str) -> Result<(), TransformError> {
        let mut scratch = String::new();
        let got = split_fields(text, self.delim, self.quote, usize::MAX, &mut scratch);
        check_header(&got, self.header)
    }

    fn parse(
        &self,
        plan: &Plan,
        text: &str,
        row: &mut Row,
        scratch: &mut String,
        _ignored: &mut BTreeMap<usize, u64>,
    ) -> Parsed {
        let width = self.header.len();
        let fields = split_fields(text, self.delim, self.quote, width, scratch);
        if fields.len() > width {
            return Parsed::Malformed(format!("more fields than the header's {width}"));
        }
        row.fill(plan, |_, col| match col.src {
            Src::Field(k) => match fields.get(k) {
                Some(v) if !v.is_empty() => Raw::Str(v),
                _ => Raw::Null,
            },
            _ => Raw::Null,
        });
        Parsed::Row
    }
}

fn check_header(got: &[&str], want: &[String]) -> Result<(), TransformError> {
    if got.len() == want.len() && got.iter().zip(want).all(|(g, w)| g == w) {
        return Ok(());
    }
    let mut g: Vec<&str> = got.to_vec();
    let mut w: Vec<&str> = want.iter().map(String::as_str).collect();
    g.sort_unstable();
    w.sort_unstable();
    if g == w {
        return Err(TransformError::Header(
            "the header has the contract's columns in a different order; the contract's order is expected"
                .into(),
        ));
    }
    // Header cells of a wrong file may be data (a file without its header): name positions,
    // never the cell text, since this message travels to the DLQ and alerts.
    if let Some(pos) = got.iter().position(|c| !want.iter().any(|w| w == c)) {
        return Err(TransformError::Header(format!(
            "unexpected column at position {} of the header (schema drift?): map it or drop it in the contract",
            pos + 1
        )));
    }
    if let Some(missing) = want.iter().find(|w| !got.contains(&w.as_str())) {
        return Err(TransformError::Header(format!(
            "the header lacks column `{missing}` that the contract expects"
        )));
    }
    Err(TransformError::Header(format!(
        "the header has {} columns, the contract expects {} (duplicate column names?)",
        got.len(),
        want.len()
    )))
}

/// Splits a delimited record into at most `max` fields (quoted fields unquoted into `scratch`).
fn split_fields<'a>(
    s: &'a str,
    delim: u8,
    quote: Option<u8>,
    max: usize,
    scratch: &'a mut String,
) -> Vec<&'a str> {
    let b = s.as_bytes();
    let len = b.len();
    // (start, end, in_scratch)
    let mut spans: Vec<(usize, usize, bool)> = Vec::with_capacity(32);
    let mut pos = 0;
    scratch.clear();
    loop {
        if spans.len() >= max {
            // one more than allowed: enough to know the record is too wide
            spans.push((pos, pos, false));
            break;
        }
        if let Some(q) = quote.filter(|&q| pos < len && b[pos] == q) {
            let s0 = scratch.len();
            let mut i = pos + 1;
            loop {
                match memchr::memchr(q, &b[i..]) {
                    None => {
                        scratch.push_str(&s[i..]);
                        i = len;
                        break;
                    }
                    Some(k) => {
                        scratch.push_str(&s[i..i + k]);
                        let j = i + k;
                        if b.get(j + 1) == Some(&q) {
                            scratch.push(q as char);
                            i = j + 2;
                        } else {
                            i = j + 1;
                            break;
                        }
                    }
                }
            }
            match memchr::memchr(delim, &b[i..]) {
                None => {
                    scratch.push_str(&s[i..]);
                    spans.push((s0, scratch.len(), true));
                    break;
                }
                Some(k) => {
                    scratch.push_str(&s[i..i + k]);
                    spans.push((s0, scratch.len(), true));
                    pos = i + k + 1;
                }
            }
        } else {
            match memchr::memchr(delim, &b[pos..]) {
                None => {
                    spans.push((pos, len, false));
                    break;
                }
                Some(k) => {
                    spans.push((pos, pos + k, false));
                    pos += k + 1;
                }
            }
        }
    }
    let scratch: &'a str = scratch;
    spans.into_iter().map(|(a, e, sc)| if sc { &scratch[a..e] } else { &s[a..e] }).collect()
}
