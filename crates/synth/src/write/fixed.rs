//! Fixed-width text at the contract's character spans: each value left-aligned and padded with
//! blanks (cut to its span; a value too long loses its punctuation first, so `123-45-6789`
//! fits nine characters; a list keeps the items that fit). With a record-type span, data
//! lines carry the first kept type and the file has a header and a trailer record of other
//! types (which the reader skips and counts); else `header_lines` title lines. A malformed line
//! stops before the layout's last column starts.

use contracts::{Contract, RecordType, Span};

use crate::out::Out;
use crate::record::{Columns, Kind, Record, Val};
use crate::write::{filler, FormatWriter};
use crate::SynthError;

pub(crate) struct Fixed<'c> {
    /// Per layout column: its 0-based character range and the mapped column's number.
    spans: Vec<((usize, usize), Option<usize>, &'c str)>,
    width: usize,
    record_type: Option<(usize, String, [String; 2])>,
    header_lines: usize,
    /// The reader's minimum line length (the last column's start).
    min_chars: usize,
    cols: &'c Columns,
}

impl<'c> Fixed<'c> {
    pub fn new(
        layout: &'c [Span],
        header_lines: usize,
        record_type: Option<&'c RecordType>,
        _contract: &'c Contract,
        cols: &'c Columns,
    ) -> Result<Self, SynthError> {
        let spans: Vec<_> = layout
            .iter()
            .map(|s| (s.range(), cols.cols.iter().position(|c| c.path == s.name), s.name.as_str()))
            .collect();
        let rt = match record_type {
            Some(rt) => {
                let data = rt.keep.first().cloned().unwrap_or_default();
                let other = |c: char| std::iter::repeat_n(c, rt.length).collect::<String>();
                let mut free =
                    ['H', 'T', 'X', 'Z', '9', '8'].into_iter().map(other).filter(|c| !rt.keep.contains(c));
                let (h, t) = (free.next().unwrap_or_default(), free.next().unwrap_or_default());
                Some((rt.start - 1, data, [h, t]))
            }
            None => None,
        };
        let rt_end = record_type.map_or(0, |r| r.start - 1 + r.length);
        let width = spans.iter().map(|((_, e), _, _)| *e).max().unwrap_or(0).max(rt_end);
        let min_chars = layout.iter().map(|c| c.start).max().unwrap_or(0);
        Ok(Self { spans, width, record_type: rt, header_lines, min_chars, cols })
    }

    /// The line of a record (without its line end), `width` characters.
    fn line(&self, rec: &Record, type_code: Option<&str>) -> Vec<char> {
        let mut line = vec![' '; self.width];
        if let (Some((at, _, _)), Some(code)) = (&self.record_type, type_code) {
            place(&mut line, (*at, at + code.chars().count()), code);
        }
        for ((a, b), slot, name) in &self.spans {
            let len = b - a;
            let v = match slot {
                Some(k) => match &rec.vals[*k] {
                    Some(Val::List(items)) => fit_list(items, self.cols.cols[*k].list_sep.as_deref(), len),
                    _ => rec.text(self.cols, *k).map(|v| fit(&v, len)).unwrap_or_default(),
                },
                None => fit(&filler(rec, name), len),
            };
            place(&mut line, (*a, *b), &v);
        }
        line
    }
}

impl Fixed<'_> {
    /// A header or trailer record: its type code at the record-type span, then `words`.
    fn type_line(&self, code: &str, words: &str) -> String {
        let at = self.record_type.as_ref().map_or(0, |(at, _, _)| *at);
        let end = at + code.chars().count();
        let len = self.width.max(end + words.chars().count());
        let mut line = vec![' '; len];
        place(&mut line, (at, end), code);
        place(&mut line, (end, len), words);
        let text: String = line.into_iter().collect();
        format!("{}\n", text.trim_end())
    }
}

fn place(line: &mut [char], (a, b): (usize, usize), v: &str) {
    for (slot, c) in line[a..b].iter_mut().zip(v.chars()) {
        *slot = c;
    }
}

/// A value cut to `len` characters, its punctuation dropped first when it is too long.
fn fit(v: &str, len: usize) -> String {
    if v.chars().count() <= len {
        return v.to_string();
    }
    let compact: String = v.chars().filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '.').collect();
    compact.chars().take(len).collect()
}

/// The list items that fit in `len` characters, joined by the separator.
fn fit_list(items: &[String], sep: Option<&str>, len: usize) -> String {
    let sep = sep.unwrap_or(";");
    let mut s = String::new();
    for it in items {
        let add = if s.is_empty() { it.chars().count() } else { sep.len() + it.chars().count() };
        if s.chars().count() + add > len {
            break;
        }
        if !s.is_empty() {
            s.push_str(sep);
        }
        s.push_str(it);
    }
    s
}

impl FormatWriter for Fixed<'_> {
    fn can_malform(&self) -> bool {
        // a short line must still carry its record type to be read as a data line
        self.record_type.as_ref().is_none_or(|(at, data, _)| at + data.chars().count() < self.min_chars)
    }

    fn skipped(&self) -> u64 {
        if self.record_type.is_some() {
            2
        } else {
            0
        }
    }

    fn begin(&mut self, out: &mut Out<'_>) -> Result<(), SynthError> {
        for n in 0..self.header_lines {
            out.text(&format!("SYNTHETIC EXTRACT TITLE LINE {}\n", n + 1))?;
        }
        if let Some((_, _, [h, _])) = &self.record_type {
            out.text(&self.type_line(h, "SYNTHETIC EXTRACT"))?;
        }
        Ok(())
    }

    fn record(&mut self, out: &mut Out<'_>, rec: &Record, kind: Kind) -> Result<(), SynthError> {
        let code = self.record_type.as_ref().map(|(_, d, _)| d.as_str());
        let mut line = self.line(rec, code);
        if kind == Kind::Malformed {
            line.truncate(self.min_chars.saturating_sub(1));
        }
        let mut text: String = line.into_iter().collect();
        text.push('\n');
        Ok(out.text(&text)?)
    }

    fn end(&mut self, out: &mut Out<'_>) -> Result<(), SynthError> {
        if let Some((_, _, [_, t])) = &self.record_type {
            out.text(&self.type_line(t, "END OF SYNTHETIC EXTRACT"))?;
        }
        Ok(())
    }
}
