//! The streaming pipeline of the line- and message-shaped formats (delimited, JSON lines and
//! arrays, fixed-width, HL7 v2): the reading thread cuts the input into records in file order
//! (the framer) and drops exact duplicates, workers turn chunks of records into Arrow batches
//! in parallel, and the writer appends them in file order. Memory is bounded by the chunk size
//! and the channel depth, plus 16 bytes per distinct record for duplicate detection.
//!
//! What differs per format sits behind [`RecordFormat`], chosen once per file: the per-record
//! loop is compiled for each format and never branches on it.

use std::collections::BTreeMap;
use std::io::Read;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::decode;
use crate::dedupe::Seen;
use crate::error::TransformError;
use crate::frame::{Flag, Framer, Kind, Rec};
use crate::job::Job;
use crate::outcome::{Malformed, Summary};
use crate::plan::{Builders, Plan, Row};
use crate::writer::{count_refused, refused_slots, write_all, Batch, Written};

/// What one record of a streaming format became.
pub(crate) enum Parsed {
    /// `row` holds it, normalised.
    Row,
    /// Only whitespace: counted, not a row.
    Blank,
    /// Deliberately not read (a fixed-width record of another type).
    Skipped,
    /// Unreadable, with the reason (never the record's text).
    Malformed(String),
}

/// A format of the streaming pipeline: how the framer cuts it and how one record becomes a row.
pub(crate) trait RecordFormat: Sync {
    /// Per-chunk scratch space, reused across the records of a chunk.
    type Scratch: Default;

    /// How the framer cuts the bytes into records.
    fn kind(&self) -> Kind;

    /// Lines at the start of the file that are not records (skipped, not counted).
    fn header_lines(&self) -> u64 {
        0
    }

    /// True when the first record is a header to check (and not a row).
    fn has_header(&self) -> bool {
        false
    }

    /// Checks the header record's text against the contract.
    fn check_header(&self, _text: &str) -> Result<(), TransformError> {
        Ok(())
    }

    /// The duplicate key of a well-framed record: equal keys are the same record.
    fn dedupe_key(&self, rec: &[u8]) -> u128 {
        xxhash_rust::xxh3::xxh3_128(rec)
    }

    /// Why a record still open at the end of the file is malformed.
    fn unterminated(&self) -> &'static str {
        "unterminated quoted field (runs to end of file)"
    }

    /// True when records are numbered by element (JSON array), not by line.
    fn by_element(&self) -> bool {
        false
    }

    /// Reads one record's text into `row`; `ignored` counts source keys the contract does not map.
    fn parse(
        &self,
        plan: &Plan,
        text: &str,
        row: &mut Row,
        scratch: &mut Self::Scratch,
        ignored: &mut BTreeMap<usize, u64>,
    ) -> Parsed;
}

/// Records of one stretch of the input, with the bytes they point into.
struct Chunk {
    seq: u64,
    data: Vec<u8>,
    recs: Vec<Rec>,
}

/// The input as the reading thread sees it: a growing buffer of blocks and the framer over it.
struct Source<'a> {
    input: decode::Input<'a>,
    buf: Vec<u8>,
    block: usize,
    read: u64,
    eof: bool,
    framer: Framer,
    /// The contract's `max_distinct_records`.
    max_distinct: u64,
}

impl Source<'_> {
    /// Appends up to one block of input to the buffer (`eof` once the input is exhausted).
    fn read_block(&mut self) -> Result<(), TransformError> {
        let start = self.buf.len();
        self.buf.resize(start + self.block, 0);
        let mut filled = start;
        while filled < self.buf.len() {
            match self.input.read(&mut self.buf[filled..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(filled);
                    return Err(decode::io_error(e));
                }
            }
        }
        self.buf.truncate(filled);
        self.read += (filled - start) as u64;
        Ok(())
    }

    fn frame(&mut self, out: &mut Vec<Rec>) -> Result<(), TransformError> {
        self.framer.frame(&self.buf, self.eof, out).map_err(|e| TransformError::Structure(e.0))
    }

    /// Frames until the first record and checks it as the header; returns the records framed
    /// after it.
    fn header(&mut self, fmt: &impl RecordFormat) -> Result<Vec<Rec>, TransformError> {
        let mut recs: Vec<Rec> = Vec::new();
        loop {
            self.frame(&mut recs)?;
            if !recs.is_empty() || self.eof {
                break;
            }
            self.read_block()?;
        }
        let Some(h) = recs.first().copied() else { return Err(TransformError::EmptyInput) };
        if h.flag != Flag::Ok {
            return Err(TransformError::Header(
                "the header line is unreadable (too long or an open quote)".into(),
            ));
        }
        let text = std::str::from_utf8(&self.buf[h.start..h.end])
            .map_err(|_| TransformError::Header("the header line is not valid UTF-8".into()))?;
        fmt.check_header(text)?;
        recs.remove(0);
        Ok(recs)
    }
}

/// Counts the reading thread keeps.
struct Fed {
    rows: u64,
    dups: u64,
    /// A worker hung up before the input was all sent.
    lost: bool,
}

/// Frames the rest of the input, drops duplicates and sends chunks to the workers.
fn feed(
    fmt: &impl RecordFormat,
    src: &mut Source<'_>,
    mut framed: Vec<Rec>,
    tx: Sender<Chunk>,
    progress: Option<&(dyn Fn(u64) + Send + Sync)>,
) -> Result<Fed, TransformError> {
    let header_skip = fmt.header_lines();
    let mut seen = Seen::default();
    let max_distinct = src.max_distinct;
    let mut fed = Fed { rows: 0, dups: 0, lost: false };
    let mut seq = 0u64;
    loop {
        if framed.is_empty() {
            src.frame(&mut framed)?;
        }
        // Drop duplicates in file order: the first occurrence wins.
        let mut kept = Vec::with_capacity(framed.len());
        for r in framed.drain(..) {
            if header_skip > 0 && r.line <= header_skip {
                continue;
            }
            fed.rows += 1;
            if r.flag == Flag::Ok && !seen.insert(fmt.dedupe_key(&src.buf[r.start..r.end])) {
                fed.dups += 1;
                continue;
            }
            if seen.len() as u64 > max_distinct {
                return Err(too_many_records(max_distinct));
            }
            kept.push(r);
        }
        let consumed = src.framer.consumed();
        if !kept.is_empty() || src.eof {
            let data = src.buf[..consumed].to_vec();
            if tx.send(Chunk { seq, data, recs: kept }).is_err() {
                fed.lost = true;
                return Ok(fed);
            }
            seq += 1;
        }
        src.buf.drain(..consumed);
        src.framer.shift(consumed);
        if src.eof {
            return Ok(fed);
        }
        src.read_block()?;
        if let Some(p) = progress {
            p(src.read);
        }
    }
}

/// Runs a streaming format over the job's input.
pub(crate) fn run<F: RecordFormat>(fmt: &F, job: Job<'_, '_>) -> Result<Summary, TransformError> {
    let Job { contract, plan, input, out, opts } = job;
    let mut src = Source {
        input,
        buf: Vec::with_capacity(opts.chunk_bytes + (64 << 10)),
        block: opts.chunk_bytes,
        read: 0,
        eof: false,
        framer: Framer::new(fmt.kind(), contract.limits.max_record_bytes),
        max_distinct: contract.limits.max_distinct_records,
    };
    // First block: sniff the content.
    src.read_block()?;
    if src.buf.is_empty() {
        return Err(TransformError::EmptyInput);
    }
    if src.buf.starts_with(b"\xEF\xBB\xBF") {
        src.buf.drain(..3);
    }
    let recs = if fmt.has_header() { src.header(fmt)? } else { Vec::new() };

    let threads = opts.threads.max(1);
    let (chunk_tx, chunk_rx) = bounded::<Chunk>(threads * 2);
    let (done_tx, done_rx) = bounded::<Batch>(threads * 2);
    let plan = &plan;
    let (fed, w) = std::thread::scope(|scope| -> Result<(Fed, Written), TransformError> {
        for _ in 0..threads {
            let (rx, tx) = (chunk_rx.clone(), done_tx.clone());
            scope.spawn(move || work(fmt, plan, rx, tx, opts.keep_raw));
        }
        drop(chunk_rx);
        drop(done_tx);
        let writer = scope.spawn(move || write_all(plan, done_rx, out, opts.row_group_rows));
        let fed = feed(fmt, &mut src, recs, chunk_tx, opts.progress.as_deref())?;
        let w = writer.join().map_err(|_| TransformError::Internal("writer thread panicked".into()))?;
        let w = w?;
        if fed.lost {
            return Err(TransformError::Internal("a worker stopped early".into()));
        }
        Ok((fed, w))
    })?;
    Ok(Summary {
        bytes: src.read,
        rows_read: fed.rows - (w.blank + w.skipped),
        duplicates: fed.dups,
        malformed: w.malformed,
        blank: w.blank,
        good: w.good,
        bad: w.bad,
        bad_by_field: w.bad_by_field(plan),
        skipped: w.skipped,
        refused_values: w.refused_values(plan),
        ignored_keys: w.ignored,
        ..Summary::default()
    })
}

/// A worker: chunks in, batches out, until either side hangs up.
fn work<F: RecordFormat>(fmt: &F, plan: &Plan, rx: Receiver<Chunk>, tx: Sender<Batch>, keep_raw: bool) {
    for chunk in rx {
        if tx.send(process(fmt, plan, chunk, keep_raw)).is_err() {
            break;
        }
    }
}

/// Parses, normalises and splits (good / bad) the records of one chunk.
fn process<F: RecordFormat>(fmt: &F, plan: &Plan, chunk: Chunk, keep_raw: bool) -> Batch {
    let mut good = Builders::new(plan, false);
    let mut bad = Builders::new(plan, true);
    let mut row = Row::default();
    let mut scratch = F::Scratch::default();
    let required: Vec<usize> =
        plan.cols.iter().enumerate().filter(|(_, c)| c.required).map(|(i, _)| i).collect();
    let mut out = Batch {
        seq: chunk.seq,
        good: None,
        bad: None,
        malformed: Vec::new(),
        bad_by_field: vec![0u64; required.len()],
        ignored: BTreeMap::new(),
        refused: refused_slots(plan),
        blank: 0,
        skipped: 0,
    };
    let by_element = fmt.by_element();
    let report = |r: &Rec, reason: String, malformed: &mut Vec<Malformed>| {
        malformed.push(Malformed {
            line: (!by_element).then_some(r.line),
            element: by_element.then_some(r.line),
            part: None,
            reason,
            raw: keep_raw.then(|| String::from_utf8_lossy(&chunk.data[r.start..r.end]).into_owned()),
        });
    };
    for r in &chunk.recs {
        let unusable = match r.flag {
            Flag::Ok => None,
            Flag::TooLong => Some("record too long: over the contract's max_record_bytes"),
            Flag::Unterminated => Some(fmt.unterminated()),
        };
        if let Some(why) = unusable {
            report(r, why.into(), &mut out.malformed);
            continue;
        }
        let bytes = &chunk.data[r.start..r.end];
        if only_nul(bytes) {
            report(
                r,
                "the record holds only NUL bytes (a zero-filled or unfinished file?)".into(),
                &mut out.malformed,
            );
            continue;
        }
        let s = match std::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                report(r, format!("invalid UTF-8 at byte {}", e.valid_up_to()), &mut out.malformed);
                continue;
            }
        };
        match fmt.parse(plan, s, &mut row, &mut scratch, &mut out.ignored) {
            Parsed::Row => {}
            Parsed::Blank => {
                out.blank += 1;
                continue;
            }
            Parsed::Skipped => {
                out.skipped += 1;
                continue;
            }
            Parsed::Malformed(why) => {
                report(r, why, &mut out.malformed);
                continue;
            }
        }
        count_refused(&mut out.refused, row.issues());
        if row.is_bad(plan) {
            bad.push(&row, plan);
            for (slot, &ci) in out.bad_by_field.iter_mut().zip(&required) {
                if row.is_null(ci) {
                    *slot += 1;
                }
            }
        } else {
            good.push(&row, plan);
        }
    }
    out.good = (!good.is_empty()).then(|| good.finish());
    out.bad = (!bad.is_empty()).then(|| bad.finish());
    out
}

/// The error of a file with more distinct records than the contract allows.
pub(crate) fn too_many_records(max: u64) -> TransformError {
    TransformError::Encoding(format!(
        "the file holds more than {max} distinct records (the contract's max_distinct_records): split it or raise the limit"
    ))
}

/// True when a record is NUL bytes (and whitespace) only: one SIMD scan for a NUL first, so
/// ordinary records cost almost nothing.
#[inline]
fn only_nul(b: &[u8]) -> bool {
    memchr::memchr(0, b).is_some() && b.iter().all(|&c| c == 0 || c.is_ascii_whitespace())
}
