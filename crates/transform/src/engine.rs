//! The streaming engine: framer (file order, dedupe) -> workers (parse, normalise, split) ->
//! writer (Parquet row groups in file order). Memory is bounded by the chunk size and the
//! channel depth, plus 16 bytes per distinct record for duplicate detection.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{Read, Write};
use std::time::Instant;

use arrow_array::RecordBatch;
use contracts::{CanonicalSchema, Contract, Format};
use crossbeam_channel::bounded;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::Serialize;
use serde_json::Value;

use crate::decode;
use crate::frame::{Flag, Framer, Kind, Rec};
use crate::plan::{Builders, Plan, Raw, Row, Src};
use crate::TransformError;

/// Knobs of one run.
pub struct Options {
    /// Keep the raw text of malformed records in the malformed output (it may hold PHI).
    pub keep_raw: bool,
    /// Worker threads (default: available cores).
    pub threads: usize,
    /// Bytes of input per chunk handed to a worker.
    pub chunk_bytes: usize,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Called from the reading thread after each block with the bytes read so far.
    pub progress: Option<Box<dyn Fn(u64) + Send + Sync>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            keep_raw: false,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            chunk_bytes: 4 << 20,
            row_group_rows: 128 * 1024,
            progress: None,
        }
    }
}

/// Where a run writes: good rows (Parquet), bad rows (Parquet), malformed records (JSON lines).
pub struct Outputs<'a> {
    pub good: &'a mut (dyn Write + Send),
    pub bad: &'a mut (dyn Write + Send),
    pub malformed: &'a mut (dyn Write + Send),
}

/// What a run did, in counts a person can check.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub bytes: u64,
    /// Records read (data lines or JSON elements; header and blank lines excluded).
    pub rows_read: u64,
    pub duplicates: u64,
    pub malformed: u64,
    pub blank: u64,
    pub good: u64,
    pub bad: u64,
    /// Bad rows per missing required column (a row may miss several).
    pub bad_by_field: BTreeMap<String, u64>,
    /// Records deliberately not read: fixed-width lines of another record type (header,
    /// trailer). Not counted in `rows_read`.
    pub skipped: u64,
    /// What was in front of the data: `gzip` or `zip`, and the encoding transcoded from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// JSON keys the contract does not map, with how many records had them.
    pub ignored_keys: BTreeMap<String, u64>,
    pub seconds: f64,
}

/// One malformed record: where it was and why (and its text only when asked for).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Malformed {
    /// 1-based line of the record's start (JSON array: absent, see `element`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// 0-based element index in a JSON array.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub element: Option<u64>,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

struct Chunk {
    seq: u64,
    data: Vec<u8>,
    recs: Vec<Rec>,
}

pub(crate) struct Done {
    pub seq: u64,
    pub good: Option<RecordBatch>,
    pub bad: Option<RecordBatch>,
    pub malformed: Vec<Malformed>,
    pub bad_by_field: Vec<u64>,
    pub ignored: BTreeMap<String, u64>,
    pub blank: u64,
    pub skipped: u64,
}

#[derive(Default)]
pub(crate) struct IdHasher(u64);
impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}
pub(crate) type Seen = HashSet<u128, BuildHasherDefault<IdHasher>>;

/// Runs the transform of one file. `file_name` becomes `source_file`.
///
/// The input may be gzip- or zip-compressed and UTF-16 (with a BOM) or in the contract's
/// declared encoding: see the decoding layer. Text formats then stream; a FHIR bundle is read
/// whole (up to `max_in_memory_bytes`).
pub fn run(
    contract: &Contract,
    schema: &CanonicalSchema,
    file_name: &str,
    input: impl Read + Send,
    out: Outputs<'_>,
    opts: &Options,
) -> Result<Summary, TransformError> {
    let t0 = Instant::now();
    let text = !matches!(contract.format, Format::Excel { .. });
    let (input, layers) = decode::open(input, contract, text)?;
    let mut s = match &contract.format {
        Format::Excel { .. } => crate::excel::run(contract, schema, file_name, input, out, opts)?,
        Format::FhirBundle => crate::fhir::run(contract, schema, file_name, input, out, opts)?,
        Format::Xml { .. } => crate::xml::run(contract, schema, file_name, input, out, opts)?,
        _ => run_stream(contract, schema, file_name, input, out, opts)?,
    };
    s.compression = layers.compression.map(str::to_string);
    s.encoding = layers.transcoded.map(str::to_string);
    s.seconds = t0.elapsed().as_secs_f64();
    Ok(s)
}

fn run_stream(
    contract: &Contract,
    schema: &CanonicalSchema,
    file_name: &str,
    mut input: impl Read + Send,
    out: Outputs<'_>,
    opts: &Options,
) -> Result<Summary, TransformError> {
    let plan = Plan::new(contract, schema, file_name);
    let kind = match &contract.format {
        Format::Delimited { delimiter, quote, .. } => {
            Kind::Delimited { delim: *delimiter as u8, quote: quote.map(|q| q as u8) }
        }
        Format::JsonLines | Format::FixedWidth { .. } => Kind::Lines,
        Format::JsonArray => Kind::JsonArray,
        Format::Hl7v2 => Kind::Hl7,
        Format::FhirBundle | Format::Xml { .. } | Format::Excel { .. } => {
            return Err(TransformError::Internal("document formats do not stream through the framer".into()))
        }
    };
    let header_skip = match &contract.format {
        Format::FixedWidth { header_lines, .. } => *header_lines as u64,
        _ => 0,
    };
    let mut framer = Framer::new(kind, contract.limits.max_record_bytes);
    let mut buf: Vec<u8> = Vec::with_capacity(opts.chunk_bytes + (64 << 10));
    let mut bytes_read = 0u64;
    let mut eof = false;

    // First block: sniff the content.
    read_block(&mut input, &mut buf, opts.chunk_bytes, &mut bytes_read, &mut eof)?;
    if buf.is_empty() {
        return Err(TransformError::EmptyInput);
    }
    if buf.starts_with(b"\xEF\xBB\xBF") {
        buf.drain(..3);
    }

    // Header (delimited): the first record, checked against the contract.
    let mut recs: Vec<Rec> = Vec::new();
    if let Format::Delimited { header, delimiter, quote } = &contract.format {
        loop {
            framer.frame(&buf, eof, &mut recs).map_err(|e| TransformError::Structure(e.0))?;
            if !recs.is_empty() || eof {
                break;
            }
            read_block(&mut input, &mut buf, opts.chunk_bytes, &mut bytes_read, &mut eof)?;
        }
        let Some(h) = recs.first().copied() else { return Err(TransformError::EmptyInput) };
        if h.flag != Flag::Ok {
            return Err(TransformError::Header(
                "the header line is unreadable (too long or an open quote)".into(),
            ));
        }
        let text = std::str::from_utf8(&buf[h.start..h.end])
            .map_err(|_| TransformError::Header("the header line is not valid UTF-8".into()))?;
        let mut scratch = String::new();
        let got = split_fields(text, *delimiter as u8, quote.map(|q| q as u8), usize::MAX, &mut scratch);
        check_header(&got, header)?;
        recs.remove(0);
    }

    let threads = opts.threads.max(1);
    let (chunk_tx, chunk_rx) = bounded::<Chunk>(threads * 2);
    let (done_tx, done_rx) = bounded::<Done>(threads * 2);
    let mut summary = Summary::default();
    let mut seen = Seen::default();
    let keep_raw = opts.keep_raw;

    let result = std::thread::scope(|scope| -> Result<(), TransformError> {
        for _ in 0..threads {
            let rx = chunk_rx.clone();
            let tx = done_tx.clone();
            let plan = &plan;
            let format = &contract.format;
            scope.spawn(move || {
                for chunk in rx {
                    if tx.send(process(plan, format, chunk, keep_raw)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(chunk_rx);
        drop(done_tx);
        let plan_ref = &plan;
        let writer = scope.spawn(move || write_all(plan_ref, done_rx, out, opts.row_group_rows));

        let mut seq = 0u64;
        let mut framed = recs;
        let mut dups = 0u64;
        let mut rows = 0u64;
        let mut send_err = false;
        loop {
            if framed.is_empty() {
                framer.frame(&buf, eof, &mut framed).map_err(|e| TransformError::Structure(e.0))?;
            }
            // Drop duplicates in file order: the first occurrence wins.
            let mut kept = Vec::with_capacity(framed.len());
            for r in framed.drain(..) {
                if header_skip > 0 && r.line <= header_skip {
                    continue;
                }
                rows += 1;
                if r.flag == Flag::Ok {
                    let key = dedupe_key(kind, &buf[r.start..r.end]);
                    if !seen.insert(key) {
                        dups += 1;
                        continue;
                    }
                }
                kept.push(r);
            }
            let consumed = framer.consumed();
            if !kept.is_empty() || eof {
                let data = buf[..consumed].to_vec();
                if chunk_tx.send(Chunk { seq, data, recs: kept }).is_err() {
                    send_err = true;
                    break;
                }
                seq += 1;
            }
            buf.drain(..consumed);
            framer.shift(consumed);
            if eof {
                break;
            }
            read_block(&mut input, &mut buf, opts.chunk_bytes, &mut bytes_read, &mut eof)?;
            if let Some(p) = &opts.progress {
                p(bytes_read);
            }
        }
        drop(chunk_tx);
        let w = writer.join().map_err(|_| TransformError::Internal("writer thread panicked".into()))?;
        let w = w?;
        if send_err {
            return Err(TransformError::Internal("a worker stopped early".into()));
        }
        summary.rows_read = rows;
        summary.duplicates = dups;
        summary.good = w.good;
        summary.bad = w.bad;
        summary.malformed = w.malformed;
        summary.blank = w.blank;
        summary.skipped = w.skipped;
        summary.ignored_keys = w.ignored;
        let required: Vec<&str> = plan.cols.iter().filter(|c| c.required).map(|c| c.name.as_str()).collect();
        summary.bad_by_field = required
            .iter()
            .zip(&w.bad_by_field)
            .filter(|(_, n)| **n > 0)
            .map(|(c, n)| (c.to_string(), *n))
            .collect();
        Ok(())
    });
    result?;
    summary.rows_read -= summary.blank + summary.skipped;
    summary.bytes = bytes_read;
    Ok(summary)
}

fn read_block(
    input: &mut impl Read,
    buf: &mut Vec<u8>,
    block: usize,
    read: &mut u64,
    eof: &mut bool,
) -> Result<(), TransformError> {
    let start = buf.len();
    buf.resize(start + block, 0);
    let mut filled = start;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => {
                *eof = true;
                break;
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                buf.truncate(filled);
                return Err(decode::io_error(e));
            }
        }
    }
    buf.truncate(filled);
    *read += (filled - start) as u64;
    Ok(())
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

fn dedupe_key(kind: Kind, rec: &[u8]) -> u128 {
    if kind == Kind::JsonArray {
        // identical elements: same keys and values, whatever the spacing or key order
        if let Ok(v) = serde_json::from_slice::<Value>(rec) {
            return xxhash_rust::xxh3::xxh3_128(v.to_string().as_bytes());
        }
    }
    xxhash_rust::xxh3::xxh3_128(rec)
}

/// Splits a delimited record into at most `max` fields (quoted fields unquoted into `scratch`).
pub(crate) fn split_fields<'a>(
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

fn process(plan: &Plan, format: &Format, chunk: Chunk, keep_raw: bool) -> Done {
    let mut good = Builders::new(plan, false);
    let mut bad = Builders::new(plan, true);
    let mut row = Row::default();
    let mut malformed = Vec::new();
    let required: Vec<usize> =
        plan.cols.iter().enumerate().filter(|(_, c)| c.required).map(|(i, _)| i).collect();
    let mut bad_by_field = vec![0u64; required.len()];
    let mut ignored: BTreeMap<String, u64> = BTreeMap::new();
    let mut blank = 0;
    let mut skipped = 0;
    let mut scratch = String::new();
    let mut offs: Vec<usize> = Vec::new();
    let mut hl7_vals: Vec<String> = Vec::new();
    let mut hl7_cells: Vec<Hl7Cell> = Vec::new();
    // fixed width: the column ranges, the record-type range last
    let (spans, keep_types, min_chars) = match format {
        Format::FixedWidth { columns, record_type, .. } => {
            let mut v: Vec<(usize, usize)> = columns.iter().map(|c| c.range()).collect();
            let min_chars = columns.iter().map(|c| c.start).max().unwrap_or(0);
            let keep = record_type.as_ref().map(|rt| {
                v.push((rt.start - 1, rt.start - 1 + rt.length));
                rt.keep.clone()
            });
            (v, keep, min_chars)
        }
        _ => (vec![], None, 0),
    };
    let is_array = matches!(format, Format::JsonArray);
    let mut report = |r: &Rec, reason: String, data: &[u8]| {
        malformed.push(Malformed {
            line: (!is_array).then_some(r.line),
            element: is_array.then_some(r.line),
            reason,
            raw: keep_raw.then(|| String::from_utf8_lossy(&data[r.start..r.end]).into_owned()),
        });
    };
    for r in &chunk.recs {
        match r.flag {
            Flag::Ok => {}
            Flag::TooLong => {
                report(r, "record too long: over the contract's max_record_bytes".into(), &chunk.data);
                continue;
            }
            Flag::Unterminated => {
                report(
                    r,
                    if is_array {
                        "truncated JSON element"
                    } else {
                        "unterminated quoted field (runs to end of file)"
                    }
                    .into(),
                    &chunk.data,
                );
                continue;
            }
        }
        let bytes = &chunk.data[r.start..r.end];
        let s = match std::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                report(r, format!("invalid UTF-8 at byte {}", e.valid_up_to()), &chunk.data);
                continue;
            }
        };
        match format {
            Format::Delimited { delimiter, quote, header } => {
                let fields =
                    split_fields(s, *delimiter as u8, quote.map(|q| q as u8), header.len(), &mut scratch);
                if fields.len() > header.len() {
                    report(r, format!("more fields than the header's {}", header.len()), &chunk.data);
                    continue;
                }
                row.fill(plan, |_, col| match col.src {
                    Src::Field(k) => match fields.get(k) {
                        Some(v) if !v.is_empty() => Raw::Str(v),
                        _ => Raw::Null,
                    },
                    _ => Raw::Null,
                });
            }
            Format::FixedWidth { columns, .. } => {
                if s.trim().is_empty() {
                    blank += 1;
                    continue;
                }
                let (fields, chars) = cut_fixed(s, &spans, &mut offs);
                if let Some(keep) = &keep_types {
                    let code = fields[columns.len()];
                    if !keep.iter().any(|k| k == code) {
                        skipped += 1;
                        continue;
                    }
                }
                if chars < min_chars {
                    report(
                        r,
                        format!("record is {chars} characters; the layout needs at least {min_chars}"),
                        &chunk.data,
                    );
                    continue;
                }
                row.fill(plan, |_, col| match col.src {
                    Src::Field(k) => match fields.get(k) {
                        Some(v) if !v.trim().is_empty() => Raw::Str(v),
                        _ => Raw::Null,
                    },
                    _ => Raw::Null,
                });
            }
            Format::Hl7v2 => {
                let msg = match crate::hl7::parse(s) {
                    Ok(m) => m,
                    Err(why) => {
                        report(r, format!("malformed HL7 message: {why}"), &chunk.data);
                        continue;
                    }
                };
                hl7_cells.clear();
                for col in &plan.cols {
                    let Src::Hl7(p) = &col.src else {
                        hl7_cells.push(Hl7Cell::Null);
                        continue;
                    };
                    hl7_vals.clear();
                    let list = col.ty == contracts::ParquetType::ListString;
                    msg.values(p, list, &mut hl7_vals);
                    hl7_cells.push(if list {
                        if hl7_vals.is_empty() {
                            Hl7Cell::Null
                        } else {
                            Hl7Cell::List(Value::Array(hl7_vals.drain(..).map(Value::String).collect()))
                        }
                    } else {
                        hl7_vals.pop().map_or(Hl7Cell::Null, Hl7Cell::Str)
                    });
                }
                row.fill(plan, |i, _| match &hl7_cells[i] {
                    Hl7Cell::Null => Raw::Null,
                    Hl7Cell::Str(s) => Raw::Str(s),
                    Hl7Cell::List(v) => Raw::Json(v),
                });
            }
            Format::FhirBundle | Format::Xml { .. } | Format::Excel { .. } => continue,
            Format::JsonLines | Format::JsonArray => {
                if s.trim().is_empty() {
                    blank += 1;
                    continue;
                }
                let v: Value = match serde_json::from_str(s) {
                    Ok(v) => v,
                    Err(e) => {
                        report(r, format!("invalid JSON ({})", e.classify_text()), &chunk.data);
                        continue;
                    }
                };
                let Value::Object(obj) = &v else {
                    report(r, "not a JSON object".into(), &chunk.data);
                    continue;
                };
                for k in obj.keys() {
                    if plan.known_keys.binary_search(k).is_err() {
                        if let Some(n) = ignored.get_mut(k) {
                            *n += 1;
                        } else if ignored.len() < 100 {
                            ignored.insert(k.clone(), 1);
                        }
                    }
                }
                row.fill(plan, |_, col| match &col.src {
                    Src::Path(p) => lookup(&v, p).map_or(Raw::Null, Raw::Json),
                    _ => Raw::Null,
                });
            }
        }
        if row.is_bad(plan) {
            bad.push(&row, plan);
            for (slot, &ci) in bad_by_field.iter_mut().zip(&required) {
                if row.is_null(ci) {
                    *slot += 1;
                }
            }
        } else {
            good.push(&row, plan);
        }
    }
    Done {
        seq: chunk.seq,
        good: (!good.is_empty()).then(|| good.finish()),
        bad: (!bad.is_empty()).then(|| bad.finish()),
        malformed,
        bad_by_field,
        ignored,
        blank,
        skipped,
    }
}

/// An HL7 value of one column, owned for the row being filled.
enum Hl7Cell {
    Null,
    Str(String),
    List(Value),
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

trait ClassifyText {
    fn classify_text(&self) -> &'static str;
}
impl ClassifyText for serde_json::Error {
    fn classify_text(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Eof => "truncated",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Io => "read error",
        }
    }
}

fn lookup<'v>(v: &'v Value, path: &contracts::JsonPath) -> Option<&'v Value> {
    let mut cur = v;
    for seg in &path.0 {
        cur = match seg {
            contracts::PathSeg::Key(k) => cur.get(k.as_str())?,
            contracts::PathSeg::Index(i) => cur.get(*i)?,
        };
    }
    Some(cur)
}

pub(crate) struct Written {
    pub good: u64,
    pub bad: u64,
    pub malformed: u64,
    pub blank: u64,
    pub skipped: u64,
    pub bad_by_field: Vec<u64>,
    pub ignored: BTreeMap<String, u64>,
}

pub(crate) fn write_all(
    plan: &Plan,
    rx: crossbeam_channel::Receiver<Done>,
    out: Outputs<'_>,
    row_group_rows: usize,
) -> Result<Written, TransformError> {
    // Dictionary encoding only pays for columns with few distinct values; for identifiers it is
    // built, overflows and is thrown away, costing a third of the writer's time.
    let low_cardinality = ["source_system", "source_file", "sex", "state", "city", "facility"];
    let props = || {
        let mut b = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_size(row_group_rows)
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_created_by("county-lake transform".into());
        for c in low_cardinality {
            b = b.set_column_dictionary_enabled(ColumnPath::from(c), true);
        }
        b.build()
    };
    let pq = |e: parquet::errors::ParquetError| TransformError::Write(e.to_string());
    let mut good_w = ArrowWriter::try_new(out.good, plan.good_schema.clone(), Some(props())).map_err(pq)?;
    let mut bad_w = ArrowWriter::try_new(out.bad, plan.bad_schema.clone(), Some(props())).map_err(pq)?;
    let malformed_out = out.malformed;
    let mut w = Written {
        good: 0,
        bad: 0,
        malformed: 0,
        blank: 0,
        skipped: 0,
        bad_by_field: vec![0; plan.cols.iter().filter(|c| c.required).count()],
        ignored: BTreeMap::new(),
    };
    let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
    let mut next = 0u64;
    let mut handle = |d: Done, w: &mut Written| -> Result<(), TransformError> {
        if let Some(b) = d.good {
            w.good += b.num_rows() as u64;
            good_w.write(&b).map_err(pq)?;
        }
        if let Some(b) = d.bad {
            w.bad += b.num_rows() as u64;
            bad_w.write(&b).map_err(pq)?;
        }
        for m in &d.malformed {
            let line = serde_json::to_string(m).map_err(|e| TransformError::Write(e.to_string()))?;
            writeln!(malformed_out, "{line}").map_err(|e| TransformError::Write(e.to_string()))?;
        }
        w.malformed += d.malformed.len() as u64;
        w.blank += d.blank;
        w.skipped += d.skipped;
        for (a, b) in w.bad_by_field.iter_mut().zip(&d.bad_by_field) {
            *a += b;
        }
        for (k, n) in d.ignored {
            *w.ignored.entry(k).or_default() += n;
        }
        Ok(())
    };
    for d in rx {
        pending.insert(d.seq, d);
        while let Some(d) = pending.remove(&next) {
            handle(d, &mut w)?;
            next += 1;
        }
    }
    if !pending.is_empty() {
        return Err(TransformError::Internal("a chunk was lost between workers and writer".into()));
    }
    good_w.close().map_err(pq)?;
    bad_w.close().map_err(pq)?;
    malformed_out.flush().map_err(|e| TransformError::Write(e.to_string()))?;
    Ok(w)
}
