//! Delimited text: the contract's header, delimiter and quoting. With a quote character, values
//! holding the delimiter, a quote or a line break are quoted (quotes doubled), charges are
//! written as `$1,234.50` and some addresses span two lines, as spreadsheet exports do; without
//! one, no value may hold the delimiter. A malformed record has one field more than the header.

use contracts::Contract;

use crate::out::Out;
use crate::record::{Columns, Kind, Record, Val};
use crate::write::{filler, FormatWriter};
use crate::SynthError;

pub(crate) struct Delimited<'c> {
    delim: char,
    quote: Option<char>,
    /// Per header column: the mapped column's number, or none (a dropped field).
    slots: Vec<(Option<usize>, &'c str)>,
    cols: &'c Columns,
    eol: &'static str,
}

impl<'c> Delimited<'c> {
    pub fn new(
        delim: char,
        quote: Option<char>,
        header: &'c [String],
        _contract: &'c Contract,
        cols: &'c Columns,
    ) -> Self {
        let slots =
            header.iter().map(|h| (cols.cols.iter().position(|c| &c.path == h), h.as_str())).collect();
        Self { delim, quote, slots, cols, eol: if quote.is_some() { "\r\n" } else { "\n" } }
    }

    fn field(&self, v: &str, line: &mut String) {
        match self.quote {
            Some(q) if v.contains([self.delim, q, '\r', '\n']) => {
                line.push(q);
                for c in v.chars() {
                    if c == q {
                        line.push(q);
                    }
                    line.push(c);
                }
                line.push(q);
            }
            Some(_) => line.push_str(v),
            None => {
                line.extend(
                    v.chars().map(|c| if c == self.delim || c == '\r' || c == '\n' { ' ' } else { c }),
                )
            }
        }
    }

    /// The value of mapped column `k` in this dialect.
    fn value(&self, rec: &Record, k: usize) -> Option<String> {
        if self.quote.is_some() {
            match rec.vals[k].as_ref()? {
                Val::Money(x) => return Some(dollars(*x)),
                Val::Text(s) if self.cols.cols[k].name == "address" && rec.choice(k, 2) == 0 => {
                    return Some(s.replacen(", ", "\n", 1));
                }
                _ => {}
            }
        }
        rec.text(self.cols, k)
    }
}

/// `1234.5` as `$1,234.50`.
fn dollars(x: f64) -> String {
    let cents = format!("{x:.2}");
    let (whole, frac) = cents.split_once('.').unwrap_or((cents.as_str(), "00"));
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("${grouped}.{frac}")
}

impl FormatWriter for Delimited<'_> {
    fn begin(&mut self, out: &mut Out<'_>) -> Result<(), SynthError> {
        let mut line = String::new();
        for (n, (_, h)) in self.slots.iter().enumerate() {
            if n > 0 {
                line.push(self.delim);
            }
            self.field(h, &mut line);
        }
        line.push_str(self.eol);
        Ok(out.text(&line)?)
    }

    fn record(&mut self, out: &mut Out<'_>, rec: &Record, kind: Kind) -> Result<(), SynthError> {
        let mut line = String::with_capacity(256);
        for (n, (slot, h)) in self.slots.iter().enumerate() {
            if n > 0 {
                line.push(self.delim);
            }
            let v = match slot {
                Some(k) => self.value(rec, *k).unwrap_or_default(),
                None => filler(rec, h),
            };
            self.field(&v, &mut line);
        }
        if kind == Kind::Malformed {
            line.push(self.delim);
            line.push_str("EXTRA");
        }
        line.push_str(self.eol);
        Ok(out.text(&line)?)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dollars_are_grouped() {
        assert_eq!(super::dollars(1234.5), "$1,234.50");
        assert_eq!(super::dollars(25.0), "$25.00");
        assert_eq!(super::dollars(1_234_567.891), "$1,234,567.89");
    }
}
