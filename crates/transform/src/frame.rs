//! Framing: cutting a byte stream into records, in file order, without holding the file.
//!
//! Delimited text: a record ends at `\n`, `\r\n` or a lone `\r` outside a quoted field; a quote
//! opens a quoted field only at the start of a field (elsewhere it is a literal character), and a
//! doubled quote inside one is an escaped quote. JSON lines: a record is a line. JSON array: a
//! record is one top-level element. A record longer than the limit is reported and skipped to the
//! next line end; an unterminated quoted field runs to the end of the file and is reported.
//! HL7 v2: a record is one message, from an `MSH` segment to the next `MSH` (segments end at
//! `\r`, `\n` or `\r\n`; MLLP framing bytes and FHS/BHS/BTS/FTS batch segments are skipped);
//! its "line" is the 1-based number of its MSH segment among the file's segments.

use memchr::{memchr, memchr2, memchr3};

/// Why a framed record cannot be used as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    Ok,
    /// A quoted field was still open at the end of the file.
    Unterminated,
    /// Longer than the record limit: its bytes were dropped.
    TooLong,
}

/// A record: `[start, end)` in the framer's buffer, its 1-based first line (JSON array: the
/// 0-based element index), and a flag.
#[derive(Debug, Clone, Copy)]
pub struct Rec {
    pub start: usize,
    pub end: usize,
    pub line: u64,
    pub flag: Flag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Delimited { delim: u8, quote: Option<u8> },
    Lines,
    JsonArray,
    Hl7,
}

/// Incremental framer over a growing buffer.
pub struct Framer {
    kind: Kind,
    max: usize,
    /// Start of the record being scanned.
    rec_start: usize,
    /// Scan position (bytes before it, after `rec_start`, are known not to end the record).
    scan: usize,
    in_quote: bool,
    skipping: bool,
    line: u64,
    // JSON array state
    arr_state: ArrState,
    depth: u32,
    in_str: bool,
    esc: bool,
    element: u64,
    // HL7 state
    in_msg: bool,
    skip_seg: bool,
    msg_line: u64,
    seg_end: usize,
    /// A FHS/BHS segment came after a message's segments: undecided until the next segment.
    header_in_msg: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrState {
    BeforeOpen,
    BetweenElements,
    InElement,
    Closed,
}

/// What a step of the line scanner decided: go on from a position, wait for more input there,
/// or stop (the scan position already set).
enum Step {
    Next(usize),
    Pause(usize),
    Done,
}

/// The array structure itself is broken (not `[`, garbage after `]`): the whole file is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayError(pub String);

impl Framer {
    pub fn new(kind: Kind, max_record_bytes: usize) -> Self {
        Self {
            kind,
            max: max_record_bytes,
            rec_start: 0,
            scan: 0,
            in_quote: false,
            skipping: false,
            line: 1,
            arr_state: ArrState::BeforeOpen,
            depth: 0,
            in_str: false,
            esc: false,
            element: 0,
            in_msg: false,
            skip_seg: false,
            msg_line: 0,
            seg_end: 0,
            header_in_msg: false,
        }
    }

    /// Where the unconsumed bytes start: everything before can be dropped from the buffer.
    pub fn consumed(&self) -> usize {
        self.rec_start
    }

    /// Shifts internal offsets after the caller dropped `n` bytes from the buffer front.
    pub fn shift(&mut self, n: usize) {
        self.rec_start -= n;
        self.scan -= n;
        self.seg_end = self.seg_end.saturating_sub(n);
    }

    /// Finds the complete records in `buf` (and at `eof`, the last one), appending them to `out`.
    pub fn frame(&mut self, buf: &[u8], eof: bool, out: &mut Vec<Rec>) -> Result<(), ArrayError> {
        match self.kind {
            Kind::JsonArray => self.frame_array(buf, eof, out),
            Kind::Hl7 => {
                self.frame_hl7(buf, eof, out);
                Ok(())
            }
            _ => {
                self.frame_lines(buf, eof, out);
                Ok(())
            }
        }
    }

    fn emit(&mut self, buf: &[u8], end: usize, term: usize, flag: Flag, out: &mut Vec<Rec>) {
        let mut rec = Rec { start: self.rec_start, end, line: self.line, flag };
        if end - self.rec_start > self.max {
            rec = Rec { start: self.rec_start, end: self.rec_start, line: self.line, flag: Flag::TooLong };
        }
        let body = &buf[self.rec_start..end];
        // physical lines inside a quoted multi-line record
        let inner =
            if self.kind == Kind::Lines { 0 } else { memchr::memchr_iter(b'\n', body).count() as u64 };
        self.line += inner + u64::from(term > 0);
        if rec.end > rec.start || rec.flag != Flag::Ok {
            out.push(rec);
        }
        self.rec_start = end + term;
        self.scan = self.rec_start;
        self.in_quote = false;
    }

    fn frame_lines(&mut self, buf: &[u8], eof: bool, out: &mut Vec<Rec>) {
        let (delim, quote) = match self.kind {
            Kind::Delimited { delim, quote } => (delim, quote),
            _ => (0, None),
        };
        let mut i = self.scan;
        loop {
            let step = if self.skipping {
                self.skip_line(buf, i)
            } else if i - self.rec_start > self.max {
                out.push(Rec {
                    start: self.rec_start,
                    end: self.rec_start,
                    line: self.line,
                    flag: Flag::TooLong,
                });
                self.skipping = true;
                self.in_quote = false;
                Step::Next(i)
            } else if self.in_quote {
                self.scan_quoted(buf, i, eof, quote.unwrap_or(b'"'), out)
            } else {
                self.scan_unquoted(buf, i, eof, delim, quote, out)
            };
            match step {
                Step::Next(n) => i = n,
                Step::Pause(n) => {
                    self.scan = n;
                    return;
                }
                Step::Done => return,
            }
        }
    }

    /// Skips the rest of a record already reported as too long, to the next line end.
    #[inline]
    fn skip_line(&mut self, buf: &[u8], i: usize) -> Step {
        match memchr2(b'\n', b'\r', &buf[i..]) {
            Some(k) => {
                let j = i + k;
                let term = if buf[j] == b'\r' && buf.get(j + 1) == Some(&b'\n') { 2 } else { 1 };
                self.skipping = false;
                self.line += 1;
                self.rec_start = j + term;
                self.scan = self.rec_start;
                Step::Next(self.rec_start)
            }
            None => {
                // drop everything scanned: the record is already reported
                self.rec_start = buf.len();
                self.scan = buf.len();
                Step::Done
            }
        }
    }

    /// Inside a quoted field: finds its closing quote (a doubled quote is an escaped one).
    #[inline]
    fn scan_quoted(&mut self, buf: &[u8], i: usize, eof: bool, q: u8, out: &mut Vec<Rec>) -> Step {
        let len = buf.len();
        match memchr(q, &buf[i..]) {
            None => {
                if eof {
                    self.emit(buf, len, 0, Flag::Unterminated, out);
                    return Step::Done;
                }
                if len - self.rec_start > self.max {
                    return Step::Next(len);
                }
                Step::Pause(len)
            }
            Some(k) => {
                let j = i + k;
                if j + 1 >= len && !eof {
                    return Step::Pause(j);
                }
                if buf.get(j + 1) == Some(&q) {
                    Step::Next(j + 2)
                } else {
                    self.in_quote = false;
                    Step::Next(j + 1)
                }
            }
        }
    }

    /// Outside quotes: finds the next line end (emitting the record) or opening quote.
    #[inline]
    fn scan_unquoted(
        &mut self,
        buf: &[u8],
        i: usize,
        eof: bool,
        delim: u8,
        quote: Option<u8>,
        out: &mut Vec<Rec>,
    ) -> Step {
        let len = buf.len();
        let hit = match quote {
            Some(q) => memchr3(q, b'\n', b'\r', &buf[i..]),
            None => memchr2(b'\n', b'\r', &buf[i..]),
        };
        let Some(k) = hit else {
            if len - self.rec_start > self.max {
                return Step::Next(len);
            }
            if eof {
                if len > self.rec_start {
                    self.emit(buf, len, 0, Flag::Ok, out);
                }
                return Step::Done;
            }
            return Step::Pause(len);
        };
        let j = i + k;
        let c = buf[j];
        if Some(c) == quote {
            if j == self.rec_start || buf[j - 1] == delim {
                self.in_quote = true;
            }
            return Step::Next(j + 1);
        }
        let term = if c == b'\r' {
            if j + 1 >= len && !eof {
                return Step::Pause(j);
            }
            if buf.get(j + 1) == Some(&b'\n') {
                2
            } else {
                1
            }
        } else {
            1
        };
        self.emit(buf, j, term, Flag::Ok, out);
        Step::Next(self.rec_start)
    }

    fn end_msg(&mut self, out: &mut Vec<Rec>) {
        if self.in_msg {
            out.push(Rec { start: self.rec_start, end: self.seg_end, line: self.msg_line, flag: Flag::Ok });
            self.in_msg = false;
        }
    }

    fn frame_hl7(&mut self, buf: &[u8], eof: bool, out: &mut Vec<Rec>) {
        let len = buf.len();
        let mut i = self.scan;
        loop {
            if self.skip_seg {
                match memchr2(b'\r', b'\n', &buf[i..]) {
                    Some(k) => {
                        self.skip_seg = false;
                        self.line += 1;
                        i += k;
                    }
                    None => {
                        i = len;
                        if !self.in_msg {
                            self.rec_start = len;
                        }
                        break;
                    }
                }
            }
            while i < len && matches!(buf[i], b'\r' | b'\n' | 0x0b | 0x1c) {
                i += 1;
            }
            if !self.in_msg {
                self.rec_start = i;
            }
            if i >= len {
                if eof {
                    self.end_msg(out);
                    self.rec_start = len;
                }
                break;
            }
            if len - i < 3 && !eof {
                break;
            }
            let id = &buf[i..(i + 3).min(len)];
            let msh = id == b"MSH";
            let batch = matches!(id, b"FHS" | b"BHS" | b"BTS" | b"FTS");
            // (a segment cut by the buffer end is scanned again from its start)
            let resumed = self.in_msg && i == self.rec_start;
            if self.header_in_msg && !msh && !batch {
                // a FHS/BHS followed by more of the message: it stays inside the message, which
                // the parser reports as malformed (naming the header), not as two records
                self.header_in_msg = false;
            } else if self.header_in_msg {
                self.header_in_msg = false;
                self.end_msg(out);
            }
            if self.in_msg && !resumed && matches!(id, b"FHS" | b"BHS") {
                // a header after a message: the next segment says whether the message goes on
                self.header_in_msg = true;
                self.skip_seg = true;
                continue;
            }
            if (msh || batch) && !resumed {
                self.end_msg(out);
                self.rec_start = i;
                self.skipping = false;
            }
            if batch || self.skipping {
                self.skip_seg = true;
                continue;
            }
            if !self.in_msg {
                self.in_msg = true;
                self.rec_start = i;
                self.msg_line = self.line;
            }
            let end = match memchr2(b'\r', b'\n', &buf[i..]) {
                Some(k) => i + k,
                None if eof => len,
                None => {
                    if len - self.rec_start > self.max {
                        out.push(Rec { start: i, end: i, line: self.msg_line, flag: Flag::TooLong });
                        self.in_msg = false;
                        self.skipping = true;
                        self.skip_seg = true;
                        i = len;
                        self.rec_start = len;
                    }
                    break;
                }
            };
            self.line += 1;
            self.seg_end = end;
            if end - self.rec_start > self.max {
                out.push(Rec { start: i, end: i, line: self.msg_line, flag: Flag::TooLong });
                self.in_msg = false;
                self.skipping = true;
                self.rec_start = end;
            }
            i = end;
        }
        self.scan = i;
    }

    fn frame_array(&mut self, buf: &[u8], eof: bool, out: &mut Vec<Rec>) -> Result<(), ArrayError> {
        let len = buf.len();
        let mut i = self.scan;
        while i < len {
            let b = buf[i];
            match self.arr_state {
                ArrState::BeforeOpen => {
                    if b.is_ascii_whitespace() {
                        i += 1;
                    } else if b == b'[' {
                        self.arr_state = ArrState::BetweenElements;
                        i += 1;
                    } else {
                        return Err(ArrayError("a JSON array file must start with `[`".into()));
                    }
                    self.rec_start = i;
                }
                ArrState::BetweenElements => {
                    if b.is_ascii_whitespace() || b == b',' {
                        i += 1;
                        self.rec_start = i;
                    } else if b == b']' {
                        self.arr_state = ArrState::Closed;
                        i += 1;
                        self.rec_start = i;
                    } else {
                        self.arr_state = ArrState::InElement;
                        self.rec_start = i;
                        self.depth = 0;
                        self.in_str = false;
                        self.esc = false;
                    }
                }
                ArrState::InElement => {
                    if i - self.rec_start > self.max {
                        return Err(ArrayError(format!(
                            "JSON array element {} is longer than {} bytes",
                            self.element, self.max
                        )));
                    }
                    if let Some(e) = self.element_end(b, i) {
                        out.push(Rec { start: self.rec_start, end: e, line: self.element, flag: Flag::Ok });
                        self.element += 1;
                        self.arr_state = ArrState::BetweenElements;
                        i = e;
                        self.rec_start = e;
                        continue;
                    }
                    i += 1;
                }
                ArrState::Closed => {
                    if !b.is_ascii_whitespace() {
                        return Err(ArrayError(
                            "unexpected text after the closing `]` of the JSON array".into(),
                        ));
                    }
                    i += 1;
                    self.rec_start = i;
                }
            }
        }
        self.scan = i;
        if eof {
            return self.end_array(len, i, out);
        }
        Ok(())
    }

    /// Byte `b` at `i` inside an element: where the element ends, if it ends here.
    #[inline]
    fn element_end(&mut self, b: u8, i: usize) -> Option<usize> {
        if self.in_str {
            if self.esc {
                self.esc = false;
            } else if b == b'\\' {
                self.esc = true;
            } else if b == b'"' {
                self.in_str = false;
                if self.depth == 0 {
                    return Some(i + 1);
                }
            }
            return None;
        }
        match b {
            b'"' => self.in_str = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' if self.depth > 0 => {
                self.depth -= 1;
                if self.depth == 0 {
                    return Some(i + 1);
                }
            }
            b',' | b']' if self.depth == 0 => return Some(i),
            c if c.is_ascii_whitespace() && self.depth == 0 => return Some(i),
            _ => {}
        }
        None
    }

    /// At the end of the file: the array must have been closed.
    fn end_array(&mut self, len: usize, i: usize, out: &mut Vec<Rec>) -> Result<(), ArrayError> {
        match self.arr_state {
            ArrState::Closed => Ok(()),
            ArrState::InElement if self.depth == 0 && !self.in_str && i > self.rec_start => {
                Err(ArrayError("the JSON array is not closed with `]`".into()))
            }
            ArrState::BeforeOpen => Err(ArrayError("no JSON array found".into())),
            _ => {
                if self.arr_state == ArrState::InElement {
                    out.push(Rec {
                        start: self.rec_start,
                        end: len,
                        line: self.element,
                        flag: Flag::Unterminated,
                    });
                    self.rec_start = len;
                    self.scan = len;
                }
                Err(ArrayError("the JSON array is truncated: it is not closed with `]`".into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_all(kind: Kind, data: &[u8], step: usize) -> Vec<(String, u64, Flag)> {
        let mut f = Framer::new(kind, 64);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut res = Vec::new();
        for chunk in data.chunks(step.max(1)) {
            buf.extend_from_slice(chunk);
            f.frame(&buf, false, &mut out).unwrap();
            for r in out.drain(..) {
                res.push((String::from_utf8_lossy(&buf[r.start..r.end]).into_owned(), r.line, r.flag));
            }
            let c = f.consumed();
            buf.drain(..c);
            f.shift(c);
        }
        let _ = f.frame(&buf, true, &mut out);
        for r in out.drain(..) {
            res.push((String::from_utf8_lossy(&buf[r.start..r.end]).into_owned(), r.line, r.flag));
        }
        res
    }

    #[test]
    fn quoted_newlines_and_mixed_line_ends_at_any_split() {
        let data = b"h1,h2\r\n\"a\nb\",c\rd,\"e\"\"f\"\n\ng,h";
        for step in 1..data.len() + 1 {
            let recs = frame_all(Kind::Delimited { delim: b',', quote: Some(b'"') }, data, step);
            let got: Vec<(&str, u64)> = recs.iter().map(|(s, l, _)| (s.as_str(), *l)).collect();
            assert_eq!(
                got,
                [("h1,h2", 1), ("\"a\nb\",c", 2), ("d,\"e\"\"f\"", 4), ("g,h", 6)],
                "step {step}"
            );
        }
    }

    #[test]
    fn quote_inside_a_field_is_literal() {
        let recs = frame_all(Kind::Delimited { delim: b',', quote: Some(b'"') }, b"a,b\"c,d\ne,f\n", 3);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].0, "a,b\"c,d");
    }

    #[test]
    fn unterminated_quote_runs_to_the_end_and_is_flagged() {
        let recs = frame_all(Kind::Delimited { delim: b',', quote: Some(b'"') }, b"a,b\n\"oops,c\nd,e\n", 4);
        assert_eq!(recs[0].2, Flag::Ok);
        assert_eq!(recs[1].2, Flag::Unterminated);
        assert_eq!(recs[1].1, 2);
    }

    #[test]
    fn too_long_record_is_skipped_to_the_next_line() {
        let mut data = b"a\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 500));
        data.extend_from_slice(b"\nb\n");
        let recs = frame_all(Kind::Lines, &data, 7);
        let got: Vec<(&str, u64, Flag)> = recs.iter().map(|(s, l, f)| (s.as_str(), *l, *f)).collect();
        assert_eq!(got, [("a", 1, Flag::Ok), ("", 2, Flag::TooLong), ("b", 3, Flag::Ok)]);
    }

    #[test]
    fn json_array_elements() {
        let data = br#" [ {"a": "x,]"}, 1 , {"b": [1, {"c": 2}]}, "s" ] "#;
        for step in 1..data.len() {
            let recs = frame_all(Kind::JsonArray, data, step);
            let got: Vec<&str> = recs.iter().map(|(s, _, _)| s.as_str()).collect();
            assert_eq!(got, [r#"{"a": "x,]"}"#, "1", r#"{"b": [1, {"c": 2}]}"#, "\"s\""], "step {step}");
        }
    }

    #[test]
    fn hl7_messages_at_any_split_with_mllp_and_batch_segments() {
        let data = b"FHS|^~\\&|X\rBHS|^~\\&\r\x0bMSH|^~\\&|A\rPID|1\r\x1c\r\x0bMSH|^~\\&|B\r\nPV1|1\nDG1|1\r\x1c\rBTS|2\rFTS|1\r";
        for step in 1..data.len() + 1 {
            let recs = frame_all(Kind::Hl7, data, step);
            let got: Vec<(&str, u64)> = recs.iter().map(|(s, l, _)| (s.as_str(), *l)).collect();
            assert_eq!(got, [("MSH|^~\\&|A\rPID|1", 3), ("MSH|^~\\&|B\r\nPV1|1\nDG1|1", 5)], "step {step}");
        }
    }

    #[test]
    fn hl7_orphan_segments_become_a_record_and_long_messages_are_flagged() {
        let recs = frame_all(Kind::Hl7, b"ZZZ|1\rMSH|^~\\&|A\r", 5);
        assert_eq!(recs[0].0, "ZZZ|1");
        assert_eq!(recs[1].0, "MSH|^~\\&|A");
        let mut data = b"MSH|^~\\&|A\rOBX|".to_vec();
        data.extend(std::iter::repeat_n(b'x', 200));
        data.extend_from_slice(b"\rOBX|2\rMSH|^~\\&|B\r");
        for step in [3, 7, 500] {
            let recs = frame_all(Kind::Hl7, &data, step);
            let got: Vec<(&str, Flag)> = recs.iter().map(|(s, _, f)| (s.as_str(), *f)).collect();
            assert_eq!(got, [("", Flag::TooLong), ("MSH|^~\\&|B", Flag::Ok)], "step {step}");
        }
    }

    #[test]
    fn hl7_batch_header_inside_a_message_stays_in_it_at_any_buffer_cut() {
        let data = b"BHS|A\rMSH|1\rEVN|2\rBHS|B\rPID|3\rBTS|1\rBHS|C\rMSH|4\r";
        for step in [1, 2, 3, 5, 7, 500] {
            let recs = frame_all(Kind::Hl7, data, step);
            let got: Vec<(&str, u64)> = recs.iter().map(|(s, l, _)| (s.as_str(), *l)).collect();
            assert_eq!(got, [("MSH|1\rEVN|2\rBHS|B\rPID|3", 2), ("MSH|4", 8)], "step {step}");
        }
    }

    #[test]
    fn truncated_json_array_is_an_error() {
        let mut f = Framer::new(Kind::JsonArray, 1024);
        let mut out = vec![];
        assert!(f.frame(br#"[{"a": 1}, {"b""#, true, &mut out).is_err());
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].flag, Flag::Unterminated);
    }
}
