//! Workbooks (xlsx, xlsm, xlsb, xls, ods) with calamine: one sheet, a header row, one row per
//! sheet row below it.
//!
//! Not streamed: calamine reads a sheet whole, so the file is held in memory up to
//! `max_in_memory_bytes`, and an xlsx/ods container's declared part sizes are checked against
//! `max_expanded_bytes` and `max_ratio` before it is opened (a zip bomb dressed as a workbook
//! fails clearly). Cells formatted as dates (Excel serial numbers, 1900 or 1904 system) and ODS
//! ISO dates become dates directly; numbers become text without a trailing `.0`; error cells
//! (`#N/A`) are empty. Header names the contract neither maps nor drops are reported as ignored.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use calamine::{Data, Range, Reader as _};
use contracts::{Contract, Limits};

use crate::decode::{check_zip_container, io_error, Input};
use crate::error::TransformError;
use crate::job::{Job, Reader};
use crate::outcome::Summary;
use crate::plan::{Plan, Raw, Src};
use crate::sink::{run_records, Sink};

pub(crate) struct Excel<'c> {
    pub sheet: Option<&'c str>,
    pub sheet_index: Option<usize>,
    pub header_row: usize,
}

impl Reader for Excel<'_> {
    fn text(&self) -> bool {
        false
    }

    fn read(&self, job: Job<'_, '_>) -> Result<Summary, TransformError> {
        let Job { contract, plan, input, out, opts } = job;
        let lim = &contract.limits;
        let bytes = read_capped(input, lim.max_in_memory_bytes)?;
        let n_bytes = bytes.len() as u64;
        check_container(&bytes, lim)?;
        let (name, range) = self.open_sheet(bytes, lim)?;
        let first_row = u64::from(range.start().map_or(0, |s| s.0));
        let header_row = self.header_row;
        let header_at = (header_row as u64).saturating_sub(1);
        if header_at < first_row {
            return Err(TransformError::Header(format!(
                "row {header_row} of sheet `{name}` is empty; the header is expected there"
            )));
        }
        let mut rows = range.rows().skip((header_at - first_row) as usize);
        let header: Vec<String> = match rows.next() {
            Some(h) => h.iter().map(|c| text(c).unwrap_or_default().trim().to_string()).collect(),
            None => {
                return Err(TransformError::Header(format!(
                    "sheet `{name}` has no row {header_row} to be its header"
                )))
            }
        };
        let at = positions(&plan, &header, header_row, &name)?;
        let ignored_cols = ignored(contract, &header);
        let mut data_rows = 0u64;
        let mut summary = run_records(&plan, out, opts, |sink| {
            data_rows = sheet_rows(&plan, &at, rows, sink)?;
            Ok(())
        })?;
        summary.bytes = n_bytes;
        summary.ignored_keys = ignored_cols.into_iter().map(|h| (h, data_rows)).collect::<BTreeMap<_, _>>();
        Ok(summary)
    }
}

impl Excel<'_> {
    /// Opens the workbook and reads its sheet (by name, or 1-based index, default the first).
    fn open_sheet(&self, bytes: Vec<u8>, lim: &Limits) -> Result<(String, Range<Data>), TransformError> {
        // calamine is a third-party parser of hostile bytes: a panic inside it is a broken file,
        // not a crash (the release profile unwinds).
        let caught =
            |what: &str| TransformError::Structure(format!("the workbook is unreadable ({what} failed)"));
        let opened =
            std::panic::catch_unwind(move || calamine::open_workbook_auto_from_rs(Cursor::new(bytes)))
                .map_err(|_| caught("opening"))?;
        let mut book =
            opened.map_err(|e| TransformError::Structure(format!("the workbook is unreadable: {e}")))?;
        let names = book.sheet_names();
        let name = match (self.sheet, self.sheet_index) {
            (Some(s), _) => names.iter().find(|n| *n == s).cloned().ok_or_else(|| {
                TransformError::Structure(format!(
                    "the workbook has no sheet `{s}` (it has: {})",
                    names.join(", ")
                ))
            })?,
            (None, i) => {
                let i = i.unwrap_or(1);
                i.checked_sub(1).and_then(|k| names.get(k)).cloned().ok_or_else(|| {
                    TransformError::Structure(format!(
                        "the workbook has {} sheet(s); sheet_index {i} is not one",
                        names.len()
                    ))
                })?
            }
        };
        // calamine allocates a sheet's whole rectangle: one far-away cell (XFD1048576) in a tiny
        // file would ask for hundreds of GB. For xlsx, measure the rectangle first, streaming.
        let max_cells = lim.max_in_memory_bytes / 32;
        if let calamine::Sheets::Xlsx(x) = &mut book {
            let span = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sheet_span(x, &name)))
                .map_err(|_| caught("measuring the sheet"))?
                .map_err(|e| TransformError::Structure(format!("sheet `{name}` is unreadable: {e}")))?;
            if span > max_cells {
                return Err(TransformError::Encoding(format!(
                    "sheet `{name}` spans {span} cells (first to last used cell), over the {max_cells} that max_in_memory_bytes allows"
                )));
            }
        }
        let range = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| book.worksheet_range(&name)))
            .map_err(|_| caught("reading the sheet"))?
            .map_err(|e| TransformError::Structure(format!("sheet `{name}` is unreadable: {e}")))?;
        if range.is_empty() {
            return Err(TransformError::EmptyInput);
        }
        Ok((name, range))
    }
}

/// The whole workbook, refused past `cap` bytes (calamine reads it whole).
fn read_capped(input: Input<'_>, cap: u64) -> Result<Vec<u8>, TransformError> {
    let mut bytes = Vec::new();
    input.take(cap + 1).read_to_end(&mut bytes).map_err(io_error)?;
    if bytes.len() as u64 > cap {
        return Err(TransformError::Encoding(format!(
            "the workbook is larger than max_in_memory_bytes ({cap} bytes): it is read whole"
        )));
    }
    Ok(bytes)
}

/// Checks the container before calamine sees it: an xlsx/ods zip against the expansion
/// limits, an xls compound file for sector chains and cell ranges that would exhaust memory.
fn check_container(bytes: &[u8], lim: &Limits) -> Result<(), TransformError> {
    if bytes.starts_with(b"PK\x03\x04") {
        return check_zip_container(bytes, lim);
    }
    if !bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]) {
        return Err(TransformError::Encoding(
            "the file is not a workbook (xlsx, xls or ods): this contract expects one".into(),
        ));
    }
    let broken = |why: String| TransformError::Structure(format!("the xls workbook is corrupt: {why}"));
    let stream = check_cfb(bytes).map_err(broken)?;
    check_biff(&stream, lim.max_in_memory_bytes / 32).map_err(|e| match e {
        Biff::Corrupt(why) => broken(why),
        Biff::TooBig(span, max) => TransformError::Encoding(format!(
            "a sheet of the xls workbook spans {span} cells, over the {max} that max_in_memory_bytes allows"
        )),
    })
}

/// For each canonical column, its position in the sheet's header (none when not read from it).
fn positions(
    plan: &Plan,
    header: &[String],
    header_row: usize,
    name: &str,
) -> Result<Vec<Option<usize>>, TransformError> {
    let mut at: Vec<Option<usize>> = Vec::with_capacity(plan.cols.len());
    for col in &plan.cols {
        at.push(match &col.src {
            Src::Column(h) => match header.iter().position(|x| x == h) {
                Some(p) => Some(p),
                None => {
                    return Err(TransformError::Header(format!(
                        "the header (row {header_row} of sheet `{name}`) lacks column `{h}` that the contract expects"
                    )))
                }
            },
            _ => None,
        });
    }
    Ok(at)
}

/// The 1-based positions of header columns neither mapped nor dropped (never their names).
fn ignored(contract: &Contract, header: &[String]) -> Vec<usize> {
    let known: Vec<&str> = contract
        .fields
        .values()
        .map(String::as_str)
        .chain(contract.drop.iter().map(String::as_str))
        .collect();
    header
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.is_empty() && !known.contains(&h.as_str()))
        .map(|(i, _)| i + 1)
        .collect()
}

/// The rows below the header into the sink; returns how many were not blank.
fn sheet_rows<'r>(
    plan: &Plan,
    at: &[Option<usize>],
    rows: impl Iterator<Item = &'r [Data]>,
    sink: &mut Sink<'_>,
) -> Result<u64, TransformError> {
    let mut data_rows = 0u64;
    let mut cells: Vec<Cell> = Vec::with_capacity(plan.cols.len());
    for row in rows {
        if row.iter().all(|c| {
            matches!(c, Data::Empty | Data::Error(_)) || text(c).is_some_and(|t| t.trim().is_empty())
        }) {
            sink.blank += 1;
            continue;
        }
        data_rows += 1;
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for c in row {
            h.update(text(c).unwrap_or_default().as_bytes());
            h.update(&[0x1f]);
        }
        cells.clear();
        for p in at {
            cells.push(match p.and_then(|p| row.get(p)) {
                None => Cell::Null,
                Some(c) => match date_of(c) {
                    Some(d) => Cell::Date(d),
                    None => text(c).map_or(Cell::Null, Cell::Str),
                },
            });
        }
        sink.push(h.digest128(), |i, _| match &cells[i] {
            Cell::Null => Raw::Null,
            Cell::Str(s) => Raw::Str(s),
            Cell::Date(d) => Raw::Date(*d),
        })?;
    }
    Ok(data_rows)
}

/// Cells in the rectangle from the first to the last used cell of an xlsx sheet.
fn sheet_span<RS: Read + std::io::Seek>(
    x: &mut calamine::Xlsx<RS>,
    name: &str,
) -> Result<u64, calamine::XlsxError> {
    let mut r = x.worksheet_cells_reader(name)?;
    let (mut r0, mut c0, mut r1, mut c1) = (u32::MAX, u32::MAX, 0u32, 0u32);
    while let Some(cell) = r.next_cell()? {
        let (row, col) = cell.get_position();
        (r0, c0, r1, c1) = (r0.min(row), c0.min(col), r1.max(row), c1.max(col));
    }
    if r0 == u32::MAX {
        return Ok(0);
    }
    Ok((u64::from(r1 - r0) + 1) * (u64::from(c1 - c0) + 1))
}

enum Cell {
    Null,
    Str(String),
    Date(i32),
}

/// A cell as text: integral numbers without a fraction; errors and empty cells are none.
fn text(c: &Data) -> Option<String> {
    match c {
        Data::Empty | Data::Error(_) => None,
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => Some(s.clone()),
        Data::Int(i) => Some(i.to_string()),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => Some(format!("{}", *f as i64)),
        Data::Float(f) => Some(f.to_string()),
        Data::Bool(b) => Some(b.to_string()),
        Data::DateTime(d) => Some(d.as_f64().to_string()),
    }
}

/// Days since 1970-01-01 of a date cell (serial date-time, or an ISO date from ODS).
fn date_of(c: &Data) -> Option<i32> {
    let (y, m, d) = match c {
        Data::DateTime(dt) if dt.is_datetime() => {
            let (y, m, d, ..) = dt.to_ymd_hms_milli();
            (i32::from(y), u32::from(m), u32::from(d))
        }
        Data::DateTimeIso(s) => {
            let b = s.as_bytes();
            if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
                return None;
            }
            (s.get(..4)?.parse().ok()?, s.get(5..7)?.parse().ok()?, s.get(8..10)?.parse().ok()?)
        }
        _ => return None,
    };
    let date = chrono::NaiveDate::from_ymd_opt(y, m, d)?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    let days = (date - epoch).num_days();
    i32::try_from(days).ok()
}

const ENDOFCHAIN: u32 = 0xFFFF_FFFE;
const RESERVED: u32 = 0xFFFF_FFFA;

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    let s = b.get(o..o + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Checks that a table of next-pointers (a FAT or mini FAT) only points inside itself and has
/// no cycles, so every chain ends.
fn check_table(next: &[u32], what: &str) -> Result<(), String> {
    // 0 unvisited, 1 on the current path, 2 known to end
    let mut state = vec![0u8; next.len()];
    for start in 0..next.len() {
        let mut path = Vec::new();
        let mut i = start;
        loop {
            match state[i] {
                2 => break,
                1 => return Err(format!("its {what} has a cycle")),
                _ => {}
            }
            state[i] = 1;
            path.push(i);
            let n = next[i];
            if n >= RESERVED {
                break;
            }
            if n as usize >= next.len() {
                return Err(format!("its {what} points past its end"));
            }
            i = n as usize;
        }
        for p in path {
            state[p] = 2;
        }
    }
    Ok(())
}

/// Follows a chain of a checked table from `start`, returning the sector ids.
fn chain(next: &[u32], start: u32) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    let mut i = start;
    while i < RESERVED {
        if i as usize >= next.len() || out.len() > next.len() {
            return Err("a chain starts outside its table".into());
        }
        out.push(i as usize);
        i = next[i as usize];
    }
    Ok(out)
}

enum Biff {
    Corrupt(String),
    TooBig(u64, u64),
}

fn u16_at(d: &[u8], o: usize) -> Option<u64> {
    d.get(o..o + 2).map(|s| u64::from(u16::from_le_bytes([s[0], s[1]])))
}

/// Checks the cell positions and DIMENSIONS records of an xls Workbook stream: calamine
/// reserves a sheet's whole rectangle from them, so one bad record could ask for 100+ GB.
fn check_biff(w: &[u8], max_cells: u64) -> Result<(), Biff> {
    let mut pos = 0;
    // per sheet substream: min/max row and column of its cells
    let mut span = (u64::MAX, u64::MAX, 0u64, 0u64);
    let too_big = |s: (u64, u64, u64, u64)| {
        let cells = if s.0 == u64::MAX { 0 } else { (s.2 - s.0 + 1) * (s.3 - s.1 + 1) };
        if cells > max_cells {
            Err(Biff::TooBig(cells, max_cells))
        } else {
            Ok(())
        }
    };
    while pos + 4 <= w.len() {
        let typ = u16::from_le_bytes([w[pos], w[pos + 1]]);
        let len = usize::from(u16::from_le_bytes([w[pos + 2], w[pos + 3]]));
        let Some(d) = w.get(pos + 4..pos + 4 + len) else { break };
        pos += 4 + len;
        let corrupt = |what: &str| Biff::Corrupt(format!("a {what} record is malformed"));
        match typ {
            0x0809 => {
                too_big(span)?;
                span = (u64::MAX, u64::MAX, 0, 0);
            }
            0x0200 => {
                // DIMENSIONS: BIFF8 rows u32, BIFF5 rows u16; columns u16; the last is exclusive
                let (r0, r1, c0, c1) = if len >= 14 {
                    (u32_at(d, 0).map(u64::from), u32_at(d, 4).map(u64::from), u16_at(d, 8), u16_at(d, 10))
                } else {
                    (u16_at(d, 0), u16_at(d, 2), u16_at(d, 4), u16_at(d, 6))
                };
                let (Some(r0), Some(r1), Some(c0), Some(c1)) = (r0, r1, c0, c1) else {
                    return Err(corrupt("DIMENSIONS"));
                };
                if r1 < r0 || c1 < c0 || c1 > 256 || r1 > 65_536 {
                    return Err(corrupt("DIMENSIONS"));
                }
                if (r1 - r0 + 1) * (c1 - c0 + 1) > max_cells {
                    return Err(Biff::TooBig((r1 - r0 + 1) * (c1 - c0 + 1), max_cells));
                }
            }
            0x0006 | 0x0201 | 0x0203 | 0x0204 | 0x0205 | 0x027E | 0x00FD | 0x00D6 | 0x00BD | 0x00BE => {
                let (Some(row), Some(c0)) = (u16_at(d, 0), u16_at(d, 2)) else { return Err(corrupt("cell")) };
                let c1 = if matches!(typ, 0x00BD | 0x00BE) {
                    len.checked_sub(2).and_then(|o| u16_at(d, o)).ok_or_else(|| corrupt("cell"))?
                } else {
                    c0
                };
                if c0 > 255 || c1 > 255 || c1 < c0 {
                    return Err(Biff::Corrupt("a cell lies outside the xls grid".into()));
                }
                span = (span.0.min(row), span.1.min(c0), span.2.max(row), span.3.max(c1));
            }
            _ => {}
        }
    }
    too_big(span)
}

/// Checks an OLE compound file (xls) before calamine reads it: calamine follows its sector
/// chains without cycle or bounds checks, so a corrupt chain would grow memory without end.
/// Returns the Workbook stream (empty when there is none: calamine then says so).
fn check_cfb(b: &[u8]) -> Result<Vec<u8>, String> {
    if b.len() < 512 {
        return Err("its header is truncated".into());
    }
    let ss: usize = match u16::from_le_bytes([b[30], b[31]]) {
        9 => 512,
        12 => 4096,
        _ => return Err("its sector size is invalid".into()),
    };
    let nsec = b.len().saturating_sub(ss).div_ceil(ss);
    let sector = |id: usize| -> Result<&[u8], String> {
        let start = (id + 1).checked_mul(ss).ok_or("a sector id overflows")?;
        b.get(start..(start + ss).min(b.len()))
            .ok_or_else(|| "a sector lies past the end of the file".to_string())
    };
    let get = |o: usize| u32_at(b, o).ok_or_else(|| "its header is truncated".to_string());
    // DIFAT: 109 entries in the header, then a chain of DIFAT sectors
    let mut fat_ids: Vec<u32> = (0..109).filter_map(|k| u32_at(b, 76 + 4 * k)).collect();
    let mut difat = get(68)?;
    let mut steps = 0;
    while difat < RESERVED {
        steps += 1;
        if steps > nsec {
            return Err("its DIFAT chain has a cycle".into());
        }
        let s = sector(difat as usize)?;
        let n = s.len() / 4;
        fat_ids.extend((0..n.saturating_sub(1)).filter_map(|k| u32_at(s, 4 * k)));
        difat = u32_at(s, 4 * n.saturating_sub(1)).unwrap_or(ENDOFCHAIN);
    }
    let mut fat: Vec<u32> = Vec::new();
    for id in fat_ids.into_iter().filter(|&id| id < RESERVED) {
        if id as usize >= nsec {
            return Err("a FAT sector lies past the end of the file".into());
        }
        let s = sector(id as usize)?;
        fat.extend((0..s.len() / 4).filter_map(|k| u32_at(s, 4 * k)));
        if fat.len() > 4 * b.len() {
            return Err("its FAT is larger than the file".into());
        }
    }
    check_table(&fat, "FAT")?;
    let read_chain = |start: u32| -> Result<Vec<u8>, String> {
        let mut v = Vec::new();
        for id in chain(&fat, start)? {
            v.extend_from_slice(sector(id)?);
        }
        Ok(v)
    };
    let dirs = read_chain(get(48)?)?;
    let mini_start = get(60)?;
    let mini: Vec<u32> = if mini_start < RESERVED {
        let m = read_chain(mini_start)?;
        (0..m.len() / 4).filter_map(|k| u32_at(&m, 4 * k)).collect()
    } else {
        Vec::new()
    };
    check_table(&mini, "mini FAT")?;
    let mut workbook = Vec::new();
    let mut root_start = ENDOFCHAIN;
    for d in dirs.chunks_exact(128) {
        if d[66] != 2 && d[66] != 5 {
            continue; // not a stream (or the root, which holds the mini stream)
        }
        let start = u32_at(d, 116).unwrap_or(ENDOFCHAIN);
        let len = u32_at(d, 120).unwrap_or(0);
        let table = if d[66] == 2 && len < 4096 { &mini } else { &fat };
        if start < RESERVED && start as usize >= table.len() {
            return Err("a stream starts outside its table".into());
        }
        if d[66] == 5 {
            root_start = start;
            continue;
        }
        let name_len = usize::from(u16::from_le_bytes([d[64], d[65]])).min(64);
        let units: Vec<u16> =
            d[..name_len].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        let name = String::from_utf16_lossy(&units);
        let name = name.trim_end_matches('\0');
        if workbook.is_empty() && (name == "Workbook" || name == "Book") {
            let mut v = Vec::new();
            if len >= 4096 {
                v = read_chain(start)?;
            } else {
                let ministream = read_chain(root_start)?;
                for id in chain(&mini, start)? {
                    v.extend_from_slice(ministream.get(id * 64..(id + 1) * 64).unwrap_or(&[]));
                }
            }
            v.truncate(len as usize);
            workbook = v;
        }
    }
    Ok(workbook)
}
