//! HL7 v2 messages (ADT, ORU, ...): streamed, one row per message (the framer cuts messages at
//! `MSH`); fields are paths like `PID-5.1`. The parser reads segments, fields, repetitions,
//! components and escape sequences.
//!
//! The separators come from each message's MSH segment (`MSH|^~\&`), so a message using other
//! characters is read correctly. Values are decoded: `\F\ \S\ \T\ \R\ \E\` become the
//! separator characters, `\Xhh..\` hex bytes, `\.br\` a line break; highlighting (`\H\ \N\`) is
//! dropped and anything else is kept as written.

use std::collections::BTreeMap;

use contracts::{Hl7Path, Hl7Rep, ParquetType};

use crate::error::TransformError;
use crate::frame::Kind;
use crate::job::{Job, Reader};
use crate::jv::Jv;
use crate::outcome::Summary;
use crate::plan::{Plan, Raw, Row, Src};
use crate::stream::{self, Parsed, RecordFormat};

pub(crate) struct Hl7;

impl Reader for Hl7 {
    fn read(&self, job: Job<'_, '_>) -> Result<Summary, TransformError> {
        stream::run(self, job)
    }
}

/// An HL7 value of one column, owned for the row being filled.
enum Cell {
    Null,
    Str(String),
    List(Jv),
}

/// The values found at a column's path, and each column's cell.
#[derive(Default)]
pub(crate) struct Scratch {
    vals: Vec<String>,
    cells: Vec<Cell>,
}

impl RecordFormat for Hl7 {
    type Scratch = Scratch;

    fn kind(&self) -> Kind {
        Kind::Hl7
    }

    fn parse(
        &self,
        plan: &Plan,
        text: &str,
        row: &mut Row,
        s: &mut Scratch,
        _ignored: &mut BTreeMap<usize, u64>,
    ) -> Parsed {
        let msg = match parse(text) {
            Ok(m) => m,
            Err(why) => return Parsed::Malformed(format!("malformed HL7 message: {why}")),
        };
        s.cells.clear();
        for col in &plan.cols {
            let Src::Hl7(p) = &col.src else {
                s.cells.push(Cell::Null);
                continue;
            };
            s.vals.clear();
            let list = col.ty == ParquetType::ListString;
            msg.values(p, list, &mut s.vals);
            s.cells.push(if list {
                if s.vals.is_empty() {
                    Cell::Null
                } else {
                    Cell::List(Jv::Arr(s.vals.drain(..).map(Jv::Str).collect()))
                }
            } else {
                s.vals.pop().map_or(Cell::Null, Cell::Str)
            });
        }
        let cells = &s.cells;
        row.fill(plan, |i, _| match &cells[i] {
            Cell::Null => Raw::Null,
            Cell::Str(s) => Raw::Str(s),
            Cell::List(v) => Raw::Json(v),
        });
        Parsed::Row
    }
}

/// One parsed message: separators and its segments in order.
#[derive(Debug)]
pub(crate) struct Message<'a> {
    field: char,
    comp: char,
    rep: char,
    esc: Option<char>,
    sub: char,
    segs: Vec<&'a str>,
}

/// Parses a message framed by the HL7 framer; the error says what is wrong, never the text.
pub(crate) fn parse(text: &str) -> Result<Message<'_>, String> {
    let mut segs: Vec<&str> = text
        .split(['\r', '\n'])
        .map(|s| s.trim_matches(|c| c == '\u{0b}' || c == '\u{1c}'))
        .filter(|s| !s.trim().is_empty())
        .collect();
    let Some(msh) = segs.first() else { return Err("empty message".into()) };
    if !msh.starts_with("MSH") {
        return Err("segments outside a message (no MSH segment before them)".into());
    }
    let mut chars = msh.chars().skip(3);
    let field = chars.next().ok_or("the MSH segment is truncated (no field separator)")?;
    if field.is_alphanumeric() || field.is_whitespace() {
        return Err("the MSH segment has no valid field separator".into());
    }
    let enc: Vec<char> = chars.take_while(|&c| c != field).collect();
    if enc.len() < 2 || enc.len() > 5 || enc.iter().any(|c| c.is_alphanumeric()) {
        return Err("the MSH segment has no valid encoding characters (MSH-2)".into());
    }
    let comp = enc[0];
    let rep = enc[1];
    let esc = enc.get(2).copied();
    let sub = enc.get(3).copied().unwrap_or('&');
    for (n, s) in segs.iter().enumerate() {
        let id_ok = s.len() >= 3
            && s.as_bytes()[..3].iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            && s[3..].chars().next().is_none_or(|c| c == field);
        if !id_ok {
            return Err(format!("segment {} of the message is not a valid HL7 segment", n + 1));
        }
        if n > 0 && (s.starts_with("FHS") || s.starts_with("BHS")) {
            let what = if s.starts_with("FHS") { "FHS (file header)" } else { "BHS (batch header)" };
            return Err(format!(
                "segment {} of the message is a {what}: a second file or batch header inside a message",
                n + 1
            ));
        }
    }
    segs.shrink_to_fit();
    Ok(Message { field, comp, rep, esc, sub, segs })
}

impl Message<'_> {
    /// The values at `path`: the first segment and first repetition (or the repetition the
    /// path selects), or with `all` every (selected) repetition of every such segment. Empty
    /// values are left out.
    pub(crate) fn values(&self, path: &Hl7Path, all: bool, out: &mut Vec<String>) {
        for seg in self.segs.iter().filter(|s| s.as_bytes().starts_with(path.segment.as_bytes())) {
            let is_msh = path.segment == "MSH";
            if is_msh && path.field == 1 {
                out.push(self.field.to_string());
                return;
            }
            let idx = if is_msh { path.field - 1 } else { path.field };
            let Some(field) = seg.split(self.field).nth(idx) else {
                if all {
                    continue;
                }
                return;
            };
            if is_msh && path.field == 2 {
                out.push(field.to_string());
                return;
            }
            let found = self.repetitions(field, path, all, out);
            if !all && (found || path.repetition.is_none()) {
                return;
            }
        }
    }

    /// The values of one field's repetitions (those the path selects); true when one was found.
    fn repetitions(&self, field: &str, path: &Hl7Path, all: bool, out: &mut Vec<String>) -> bool {
        let mut found = false;
        for (n, rep) in field.split(self.rep).enumerate() {
            let chosen = match &path.repetition {
                None => true,
                Some(Hl7Rep::Index(i)) => n + 1 == *i,
                Some(Hl7Rep::Where { component, value }) => {
                    rep.split(self.comp).nth(component - 1).is_some_and(|c| c.trim() == value)
                }
            };
            if !chosen {
                continue;
            }
            let mut v = Some(rep);
            if let Some(c) = path.component {
                v = v.and_then(|r| r.split(self.comp).nth(c - 1));
            }
            if let Some(sc) = path.subcomponent {
                v = v.and_then(|r| r.split(self.sub).nth(sc - 1));
            }
            if let Some(v) = v.filter(|v| !v.trim().is_empty() && *v != "\"\"") {
                let mut s = String::with_capacity(v.len());
                self.unescape(v, &mut s);
                out.push(s);
                found = true;
            }
            // without a selection a scalar reads the first repetition only, empty or not
            if !all {
                break;
            }
        }
        found
    }

    fn unescape(&self, v: &str, out: &mut String) {
        let Some(e) = self.esc.filter(|e| v.contains(*e)) else {
            out.push_str(v);
            return;
        };
        let mut rest = v;
        while let Some(i) = rest.find(e) {
            out.push_str(&rest[..i]);
            let after = &rest[i + e.len_utf8()..];
            let Some(j) = after.find(e) else {
                out.push_str(&rest[i..]);
                return;
            };
            let code = &after[..j];
            match code {
                "F" => out.push(self.field),
                "S" => out.push(self.comp),
                "T" => out.push(self.sub),
                "R" => out.push(self.rep),
                "E" => out.push(e),
                ".br" => out.push('\n'),
                "H" | "N" => {}
                c if c.starts_with('X')
                    && c.len() % 2 == 1
                    && c[1..].bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    let bytes: Vec<u8> = (1..c.len())
                        .step_by(2)
                        .filter_map(|k| u8::from_str_radix(&c[k..k + 2], 16).ok())
                        .collect();
                    out.push_str(&String::from_utf8_lossy(&bytes));
                }
                _ => {
                    out.push(e);
                    out.push_str(code);
                    out.push(e);
                }
            }
            rest = &after[j + e.len_utf8()..];
        }
        out.push_str(rest);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MSG: &str = "MSH|^~\\&|LAB|COUNTY|||20240102||ADT^A01|MSG1|P|2.5.1\r\
PID|1||MRN1^^^HOSP^MR~ALT9||O\\S\\BRIEN^MARY^Q||19840307|F|||12 Elm St\\F\\Apt 2^^Springfield^MA^01101||||||||123-45-6789\r\
DG1|1||E11.9^Diabetes^I10~I10^HTN^I10\r\
DG1|2||J45.909^Asthma^I10";

    fn get(m: &Message<'_>, p: &str, all: bool) -> Vec<String> {
        let mut v = vec![];
        m.values(&Hl7Path::parse(p).unwrap(), all, &mut v);
        v
    }

    #[test]
    fn paths_components_repeats_and_escapes() {
        let m = parse(MSG).unwrap();
        assert_eq!(get(&m, "PID-5.1", false), ["O^BRIEN"]);
        assert_eq!(get(&m, "PID-5.2", false), ["MARY"]);
        assert_eq!(get(&m, "PID-3.1", false), ["MRN1"]);
        assert_eq!(get(&m, "PID-7", false), ["19840307"]);
        assert_eq!(get(&m, "PID-11.1", false), ["12 Elm St|Apt 2"]);
        assert_eq!(get(&m, "PID-19", false), ["123-45-6789"]);
        assert_eq!(get(&m, "DG1-3.1", true), ["E11.9", "I10", "J45.909"]);
        assert_eq!(get(&m, "DG1-3.1", false), ["E11.9"]);
        assert_eq!(get(&m, "MSH-1", false), ["|"]);
        assert_eq!(get(&m, "MSH-9.1", false), ["ADT"]);
        assert_eq!(get(&m, "MSH-10", false), ["MSG1"]);
        assert!(get(&m, "PV1-44", false).is_empty());
        assert!(get(&m, "PID-99", false).is_empty());
    }

    #[test]
    fn hex_and_unknown_escapes() {
        let m = parse("MSH|^~\\&|A\rNTE|1||caf\\XC3A9\\ \\Z1\\ end\\").unwrap();
        assert_eq!(get(&m, "NTE-3", false), ["café \\Z1\\ end\\"]);
    }

    #[test]
    fn malformed_messages_are_explained() {
        assert!(parse("PID|1").unwrap_err().contains("no MSH"));
        assert!(parse("MSH").unwrap_err().contains("truncated"));
        assert!(parse("MSH|").unwrap_err().contains("encoding characters"));
        assert!(parse("MSH|^~\\&|A\rpid|1").unwrap_err().contains("segment 2"));
        assert_eq!(
            parse("MSH|^~\\&|A\rEVN|A01\rBHS|^~\\&|X\rPID|1").unwrap_err(),
            "segment 3 of the message is a BHS (batch header): a second file or batch header inside a message"
        );
    }

    #[test]
    fn repetitions_are_chosen_by_index_or_component_value() {
        let m = parse(
            "MSH|^~\\&|A\rPID|1||X9^^^H^PI~MRN7^^^H^MR||||||||||(617)555-0001^PRN^PH~(617)555-0002^WPN^PH",
        )
        .unwrap();
        assert_eq!(get(&m, "PID-3.1", false), ["X9"]);
        assert_eq!(get(&m, "PID-3[5=MR].1", false), ["MRN7"]);
        assert_eq!(get(&m, "PID-3[2].1", false), ["MRN7"]);
        assert!(get(&m, "PID-3[3].1", false).is_empty());
        assert!(get(&m, "PID-3[5=SS].1", false).is_empty());
        assert_eq!(get(&m, "PID-13[2=WPN].1", false), ["(617)555-0002"]);
        assert_eq!(get(&m, "PID-13[2=PRN].1", false), ["(617)555-0001"]);
        assert_eq!(get(&m, "PID-13[3=PH].1", true), ["(617)555-0001", "(617)555-0002"]);
    }
}
