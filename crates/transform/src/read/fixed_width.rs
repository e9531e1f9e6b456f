//! Fixed-width text: streamed, one record per line, cut at the contract's 1-based character
//! spans and trimmed. Leading header lines are skipped; with a record-type span, lines of
//! other types (header, trailer) are skipped and counted. A line shorter than the layout's
//! last column start is malformed; a blank line is counted, not a row.

use std::collections::BTreeMap;

use contracts::{RecordType, Span};

use crate::error::TransformError;
use crate::frame::Kind;
use crate::job::{Job, Reader};
use crate::outcome::Summary;
use crate::plan::{Plan, Raw, Row, Src};
use crate::stream::{self, Parsed, RecordFormat};

pub(crate) struct FixedWidth<'c> {
    /// 0-based character ranges of the columns, the record-type range last (when there is one).
    spans: Vec<(usize, usize)>,
    columns: usize,
    keep_types: Option<&'c [String]>,
    min_chars: usize,
    header_lines: u64,
}

impl<'c> FixedWidth<'c> {
    pub fn new(columns: &[Span], record_type: Option<&'c RecordType>, header_lines: usize) -> Self {
        let mut spans: Vec<(usize, usize)> = columns.iter().map(|c| c.range()).collect();
        let keep_types = record_type.map(|rt| {
            spans.push((rt.start - 1, rt.start - 1 + rt.length));
            rt.keep.as_slice()
        });
        Self {
            spans,
            columns: columns.len(),
            keep_types,
            min_chars: columns.iter().map(|c| c.start).max().unwrap_or(0),
            header_lines: header_lines as u64,
        }
    }
}

impl Reader for FixedWidth<'_> {
    fn read(&self, job: Job<'_, '_>) -> Result<Summary, TransformError> {
        stream::run(self, job)
    }
}

impl RecordFormat for FixedWidth<'_> {
    /// Byte offsets of the characters of a non-ASCII line.
    type Scratch = Vec<usize>;

    fn kind(&self) -> Kind {
        Kind::Lines
    }

    fn header_lines(&self) -> u64 {
        self.header_lines
    }

    fn parse(
        &self,
        plan: &Plan,
        text: &str,
        row: &mut Row,
        offs: &mut Vec<usize>,
        _ignored: &mut BTreeMap<usize, u64>,
    ) -> Parsed {
        if text.trim().is_empty() {
            return Parsed::Blank;
        }
        let (fields, chars) = cut_fixed(text, &self.spans, offs);
        if let Some(keep) = self.keep_types {
            let code = fields[self.columns];
            if !keep.iter().any(|k| k == code) {
                return Parsed::Skipped;
            }
        }
        if chars < self.min_chars {
            return Parsed::Malformed(format!(
                "record is {chars} characters; the layout needs at least {}",
                self.min_chars
            ));
        }
        row.fill(plan, |_, col| match col.src {
            Src::Field(k) => match fields.get(k) {
                Some(v) if !v.trim().is_empty() => Raw::Str(v),
                _ => Raw::Null,
            },
            _ => Raw::Null,
        });
        Parsed::Row
    }
}

/// Cuts a fixed-width line at 0-based character ranges; returns the pieces and the line's
/// length in characters.
fn cut_fixed<'a>(s: &'a str, spans: &[(usize, usize)], offs: &mut Vec<usize>) -> (Vec<&'a str>, usize) {
    if s.is_ascii() {
        let n = s.len();
        return (spans.iter().map(|&(a, b)| &s[a.min(n)..b.min(n)]).collect(), n);
    }
    offs.clear();
    offs.extend(s.char_indices().map(|(i, _)| i));
    let n = offs.len();
    offs.push(s.len());
    (spans.iter().map(|&(a, b)| &s[offs[a.min(n)]..offs[b.min(n)]]).collect(), n)
}
