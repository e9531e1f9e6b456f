//! The decoding layer in front of every reader: compression, then text encoding.
//!
//! Compression is recognised by content, not by name: gzip (`1f 8b`, multi-member allowed) is
//! decoded as a stream; a zip archive (`PK\x03\x04`) must hold exactly one file, is held in
//! memory (compressed, up to `max_in_memory_bytes`: the central directory sits at its end) and
//! its entry is inflated as a stream with its CRC checked. Entries named with `..` or an absolute
//! path are refused. Every decompressed stream is capped at `max_expanded_bytes` and at
//! `max_ratio` times the compressed bytes consumed (past the first 8 MiB), so a bomb fails fast.
//!
//! Text encoding: a UTF-16 byte-order mark is transcoded to UTF-8; a UTF-8 BOM is left for the
//! reader to skip; otherwise the contract's declared `encoding` (e.g. windows-1252) is
//! transcoded, and with none the bytes go through untouched (the fast path). Invalid sequences in
//! a transcoded stream become U+FFFD.

use std::io::{self, Cursor, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use contracts::{Contract, TextEncoding};

use crate::error::TransformError;

/// A content problem raised inside a `Read` adapter, carried through `io::Error` unchanged.
#[derive(Debug)]
pub(crate) struct ContentError(pub TransformError);

impl std::fmt::Display for ContentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
impl std::error::Error for ContentError {}

fn content(e: TransformError) -> io::Error {
    io::Error::other(ContentError(e))
}

/// An I/O error as a transform error: content problems keep their kind, the rest are reads.
pub(crate) fn io_error(e: io::Error) -> TransformError {
    match e.get_ref().and_then(|x| x.downcast_ref::<ContentError>()) {
        Some(c) => c.0.clone(),
        None => TransformError::Read(e.to_string()),
    }
}

pub(crate) type Input<'a> = Box<dyn Read + Send + 'a>;

const GZIP: &[u8] = &[0x1f, 0x8b];
const ZIP: &[u8] = b"PK\x03\x04";
const ZIP_EMPTY: &[u8] = b"PK\x05\x06";
/// Below this many expanded bytes the ratio is not judged (small files compress very well).
const RATIO_FLOOR: u64 = 8 << 20;

/// Reads up to `n` bytes from the front of `input` (fewer only at its end).
fn peek(input: &mut impl Read, n: usize) -> Result<Vec<u8>, TransformError> {
    let mut head = Vec::with_capacity(n);
    input.by_ref().take(n as u64).read_to_end(&mut head).map_err(io_error)?;
    Ok(head)
}

/// What was found in front of the data (for the summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Layers {
    pub compression: Option<&'static str>,
    pub transcoded: Option<&'static str>,
}

/// Decompresses (by content) and, when `text`, transcodes to UTF-8. Binary formats (`text` false:
/// workbooks) are only gunzipped.
pub(crate) fn open<'a>(
    input: impl Read + Send + 'a,
    contract: &Contract,
    text: bool,
) -> Result<(Input<'a>, Layers), TransformError> {
    let mut input = input;
    let head = peek(&mut input, 4)?;
    if head.is_empty() {
        return Err(TransformError::EmptyInput);
    }
    let lim = &contract.limits;
    let whole = Cursor::new(head.clone()).chain(input);
    let mut layers = Layers::default();
    let stream: Input<'a> = if head.starts_with(GZIP) {
        layers.compression = Some("gzip");
        let counter = Arc::new(AtomicU64::new(0));
        let counted = Counting { inner: whole, n: counter.clone() };
        let dec = flate2::read::MultiGzDecoder::new(io::BufReader::with_capacity(64 << 10, counted));
        Box::new(Limited::new(Corrupt { inner: dec, what: "gzip stream" }, counter, lim, "gzip file"))
    } else if text && (head.starts_with(ZIP) || head.starts_with(ZIP_EMPTY)) {
        // (for a workbook, PK is the xlsx/ods container itself: see the excel reader)
        layers.compression = Some("zip");
        open_zip(whole, contract)?
    } else {
        Box::new(whole)
    };
    if !text {
        return Ok((stream, layers));
    }
    let mut stream = stream;
    let head = peek(&mut stream, 4)?;
    if head.is_empty() {
        return Err(TransformError::EmptyInput);
    }
    let enc = if head.starts_with(b"\xFF\xFE") {
        Some(encoding_rs::UTF_16LE)
    } else if head.starts_with(b"\xFE\xFF") {
        Some(encoding_rs::UTF_16BE)
    } else if head.starts_with(b"\xEF\xBB\xBF") {
        None
    } else {
        match contract.encoding {
            None | Some(TextEncoding::Utf8) => None,
            Some(TextEncoding::Utf16Le) => Some(encoding_rs::UTF_16LE),
            Some(TextEncoding::Utf16Be) => Some(encoding_rs::UTF_16BE),
            Some(TextEncoding::Windows1252 | TextEncoding::Iso8859_1) => Some(encoding_rs::WINDOWS_1252),
            Some(TextEncoding::Iso8859_15) => Some(encoding_rs::ISO_8859_15),
        }
    };
    let stream: Input<'a> = Box::new(Cursor::new(head).chain(stream));
    Ok(match enc {
        None => (stream, layers),
        Some(e) => {
            layers.transcoded = Some(e.name());
            (Box::new(Transcode::new(stream, e)), layers)
        }
    })
}

/// Checks a workbook's zip container before it is opened: the declared sizes of its parts must
/// stay under `max_expanded_bytes` in total and under `max_ratio` each (past 8 MiB).
pub(crate) fn check_zip_container(bytes: &[u8], lim: &contracts::Limits) -> Result<(), TransformError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| TransformError::Structure(format!("the workbook's zip container is unreadable: {e}")))?;
    let mut total = 0u64;
    for i in 0..archive.len() {
        let f = archive
            .by_index_raw(i)
            .map_err(|e| TransformError::Structure(format!("workbook part {} is unreadable: {e}", i + 1)))?;
        total = total.saturating_add(f.size());
        if f.size() > RATIO_FLOOR && f.size() / f.compressed_size().max(1) > lim.max_ratio {
            return Err(TransformError::Encoding(format!(
                "workbook part {} expands more than {}:1 (a decompression bomb?): refused",
                i + 1,
                lim.max_ratio
            )));
        }
    }
    if total > lim.max_expanded_bytes {
        return Err(TransformError::Encoding(format!(
            "the workbook expands to {total} bytes, over max_expanded_bytes ({})",
            lim.max_expanded_bytes
        )));
    }
    Ok(())
}

fn open_zip<'a>(input: impl Read + Send + 'a, contract: &Contract) -> Result<Input<'a>, TransformError> {
    let lim = &contract.limits;
    let mut bytes = Vec::new();
    input.take(lim.max_in_memory_bytes + 1).read_to_end(&mut bytes).map_err(io_error)?;
    if bytes.len() as u64 > lim.max_in_memory_bytes {
        return Err(TransformError::Encoding(format!(
            "the zip archive is larger than max_in_memory_bytes ({} bytes); send it gzipped, which streams",
            lim.max_in_memory_bytes
        )));
    }
    let total = bytes.len() as u64;
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| TransformError::Structure(format!("the zip archive is unreadable: {e}")))?;
    let mut chosen = None;
    let mut files = 0;
    for i in 0..archive.len() {
        let f = archive
            .by_index_raw(i)
            .map_err(|e| TransformError::Structure(format!("zip entry {} is unreadable: {e}", i + 1)))?;
        let raw = String::from_utf8_lossy(f.name_raw()).into_owned();
        let unsafe_name = raw.starts_with('/')
            || raw.starts_with('\\')
            || raw.as_bytes().get(1) == Some(&b':')
            || raw.split(['/', '\\']).any(|p| p == "..")
            || f.enclosed_name().is_none();
        if unsafe_name {
            // The name may hold PHI: say where, not what.
            return Err(TransformError::Encoding(format!(
                "zip entry {} has an absolute path or `..` in its name: refused",
                i + 1
            )));
        }
        if f.is_dir() || raw.starts_with("__MACOSX/") {
            continue;
        }
        if f.encrypted() {
            return Err(TransformError::Encoding(format!("zip entry {} is encrypted", i + 1)));
        }
        files += 1;
        let method = f.compression();
        let deflate = if method == zip::CompressionMethod::STORE {
            false
        } else if method == zip::CompressionMethod::DEFLATE {
            true
        } else {
            return Err(TransformError::Encoding(format!(
                "zip entry {} uses compression {method}; only stored and deflate are supported",
                i + 1
            )));
        };
        if f.size() > lim.max_expanded_bytes {
            return Err(TransformError::Encoding(format!(
                "zip entry {} declares {} expanded bytes, over max_expanded_bytes ({})",
                i + 1,
                f.size(),
                lim.max_expanded_bytes
            )));
        }
        let start = f.data_start().unwrap_or(total);
        chosen = Some((start, f.compressed_size(), f.size(), f.crc32(), deflate));
    }
    if files != 1 {
        return Err(TransformError::Encoding(format!(
            "the zip archive holds {files} files; exactly one file per archive is expected"
        )));
    }
    let Some((start, csize, size, crc, deflate)) = chosen else {
        return Err(TransformError::Internal("zip entry vanished".into()));
    };
    let mut cur = archive.into_inner();
    if start.saturating_add(csize) > total {
        return Err(TransformError::Structure("the zip archive is truncated".into()));
    }
    cur.set_position(start);
    let counter = Arc::new(AtomicU64::new(0));
    let counted = Counting { inner: cur.take(csize), n: counter.clone() };
    let body: Input<'a> = if deflate {
        Box::new(Corrupt { inner: flate2::read::DeflateDecoder::new(counted), what: "zip entry" })
    } else {
        Box::new(counted)
    };
    let checked =
        Checked { inner: body, crc: flate2::Crc::new(), got_size: 0, want_crc: crc, want_size: size };
    Ok(Box::new(Limited::new(checked, counter, lim, "zip entry")))
}

/// Counts the bytes read through it into a shared counter (the compressed side of a ratio).
struct Counting<R> {
    inner: R,
    n: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.fetch_add(k as u64, Ordering::Relaxed);
        Ok(k)
    }
}

/// Turns a decoder's data errors into a clear "corrupt or truncated" content error.
struct Corrupt<R> {
    inner: R,
    what: &'static str,
}

impl<R: Read> Read for Corrupt<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof => {
                content(TransformError::Structure(format!("the {} is corrupt or truncated ({e})", self.what)))
            }
            _ => e,
        })
    }
}

/// Checks a zip entry's CRC-32 and size at its end.
struct Checked<R> {
    inner: R,
    crc: flate2::Crc,
    got_size: u64,
    want_crc: u32,
    want_size: u64,
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.crc.update(&buf[..k]);
        self.got_size += k as u64;
        if k == 0 && !buf.is_empty() && (self.crc.sum() != self.want_crc || self.got_size != self.want_size) {
            return Err(content(TransformError::Structure(
                "the zip entry is corrupt or truncated (CRC or size differs from its header)".into(),
            )));
        }
        Ok(k)
    }
}

/// Caps a decompressed stream's size and its ratio to the compressed bytes consumed.
struct Limited<R> {
    inner: R,
    compressed: Arc<AtomicU64>,
    expanded: u64,
    max: u64,
    ratio: u64,
    what: &'static str,
}

impl<R> Limited<R> {
    fn new(inner: R, compressed: Arc<AtomicU64>, lim: &contracts::Limits, what: &'static str) -> Self {
        Self { inner, compressed, expanded: 0, max: lim.max_expanded_bytes, ratio: lim.max_ratio, what }
    }
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.expanded += k as u64;
        if self.expanded > self.max {
            return Err(content(TransformError::Encoding(format!(
                "the {} expands past max_expanded_bytes ({} bytes): refused (raise [limits] max_expanded_bytes if it is genuine)",
                self.what, self.max
            ))));
        }
        let packed = self.compressed.load(Ordering::Relaxed).max(1);
        if self.expanded > RATIO_FLOOR && self.expanded / packed > self.ratio {
            return Err(content(TransformError::Encoding(format!(
                "the {} expands more than {}:1 (a decompression bomb?): refused (raise [limits] max_ratio if it is genuine)",
                self.what, self.ratio
            ))));
        }
        Ok(k)
    }
}

/// Transcodes a stream in some encoding into UTF-8.
struct Transcode<R> {
    inner: R,
    dec: encoding_rs::Decoder,
    inbuf: Vec<u8>,
    in_pos: usize,
    in_len: usize,
    in_eof: bool,
    out: Vec<u8>,
    out_pos: usize,
    out_len: usize,
    done: bool,
}

impl<R: Read> Transcode<R> {
    fn new(inner: R, enc: &'static encoding_rs::Encoding) -> Self {
        Self {
            inner,
            dec: enc.new_decoder_with_bom_removal(),
            inbuf: vec![0; 64 << 10],
            in_pos: 0,
            in_len: 0,
            in_eof: false,
            out: vec![0; 3 * (64 << 10) + 16],
            out_pos: 0,
            out_len: 0,
            done: false,
        }
    }
}

impl<R: Read> Read for Transcode<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.out_pos < self.out_len {
                let k = (self.out_len - self.out_pos).min(buf.len());
                buf[..k].copy_from_slice(&self.out[self.out_pos..self.out_pos + k]);
                self.out_pos += k;
                return Ok(k);
            }
            if self.done {
                return Ok(0);
            }
            if self.in_pos == self.in_len && !self.in_eof {
                let k = loop {
                    match self.inner.read(&mut self.inbuf) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        r => break r?,
                    }
                };
                self.in_pos = 0;
                self.in_len = k;
                self.in_eof = k == 0;
            }
            let (_, read, written, _) =
                self.dec.decode_to_utf8(&self.inbuf[self.in_pos..self.in_len], &mut self.out, self.in_eof);
            self.in_pos += read;
            self.out_pos = 0;
            self.out_len = written;
            if self.in_eof && self.in_pos == self.in_len {
                self.done = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;

    fn contract(extra: &str) -> Contract {
        let text = format!(
            "source = \"t\"\ndataset = \"encounter\"\nkeys = [\"t/\"]\n{extra}\n[format]\nformat = \"json_lines\"\n"
        );
        Contract::from_toml_str(&text, "t.toml", &contracts::Catalog::builtin()).unwrap()
    }

    fn read_all(data: &[u8], c: &Contract) -> Result<Vec<u8>, TransformError> {
        let (mut r, _) = open(data, c, true)?;
        let mut v = Vec::new();
        r.read_to_end(&mut v).map_err(io_error)?;
        Ok(v)
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_multi_member_and_utf16_inside() {
        let c = contract("");
        let mut two = gz(b"a,b\n");
        two.extend(gz(b"c,d\n"));
        assert_eq!(read_all(&two, &c).unwrap(), b"a,b\nc,d\n");
        let mut u16 = vec![0xFF, 0xFE];
        for ch in "é,ü\n".encode_utf16() {
            u16.extend(ch.to_le_bytes());
        }
        assert_eq!(read_all(&gz(&u16), &c).unwrap(), "é,ü\n".as_bytes());
    }

    #[test]
    fn gzip_bomb_fails_on_ratio_and_on_size() {
        let zeros = vec![0u8; 64 << 20];
        let e = read_all(&gz(&zeros), &contract("")).unwrap_err();
        assert!(e.to_string().contains("expands more than 100:1"), "{e}");
        let small = contract("[limits]\nmax_expanded_bytes = 1000\n");
        let e = read_all(&gz(&[b'x'; 5000]), &small).unwrap_err();
        assert!(e.to_string().contains("past max_expanded_bytes (1000 bytes)"), "{e}");
    }

    #[test]
    fn truncated_gzip_is_a_structure_error() {
        let g = gz(&[b'y'; 100_000]);
        let e = read_all(&g[..g.len() / 2], &contract("")).unwrap_err();
        assert_eq!(e.kind(), "BrokenStructure", "{e}");
        assert!(e.to_string().contains("gzip stream is corrupt or truncated"), "{e}");
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (n, d) in entries {
            w.start_file(*n, o).unwrap();
            w.write_all(d).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn zip_one_entry_is_read_and_hostile_archives_are_refused() {
        let c = contract("");
        assert_eq!(read_all(&zip_of(&[("a/b.csv", b"x\n")]), &c).unwrap(), b"x\n");
        let e = read_all(&zip_of(&[("../etc/passwd", b"x")]), &c).unwrap_err();
        assert!(e.to_string().contains("`..` in its name: refused"), "{e}");
        let e = read_all(&zip_of(&[("/abs.csv", b"x")]), &c).unwrap_err();
        assert!(e.to_string().contains("absolute path"), "{e}");
        let e = read_all(&zip_of(&[("a.csv", b"x"), ("b.csv", b"y")]), &c).unwrap_err();
        assert!(e.to_string().contains("holds 2 files"), "{e}");
        let z = zip_of(&[("a.csv", &[b'q'; 10_000])]);
        let e = read_all(&z[..z.len() - 30], &c).unwrap_err();
        assert_eq!(e.kind(), "BrokenStructure", "{e}");
        // a corrupted byte inside the stored data: the CRC catches it
        let mut bad = z.clone();
        let at = bad.windows(4).position(|w| w == b"qqqq").unwrap();
        bad[at] = b'r';
        let e = read_all(&bad, &c).unwrap_err();
        assert!(e.to_string().contains("CRC"), "{e}");
    }

    #[test]
    fn declared_legacy_encoding_and_bom_precedence() {
        let c = contract("encoding = \"windows-1252\"");
        assert_eq!(read_all(b"Jos\xe9 \x80\n", &c).unwrap(), "José €\n".as_bytes());
        // a UTF-8 BOM wins over the declaration: bytes pass through for the reader to skip
        assert_eq!(read_all("\u{feff}é".as_bytes(), &c).unwrap(), "\u{feff}é".as_bytes());
        let mut be = vec![0xFE, 0xFF];
        for ch in "Zoë".encode_utf16() {
            be.extend(ch.to_be_bytes());
        }
        assert_eq!(read_all(&be, &contract("")).unwrap(), "Zoë".as_bytes());
    }
}
