//! Where the text goes: encoded as the contract declares (windows-1252 and the ISO Latin sets
//! through encoding_rs, UTF-16 with a byte-order mark), optionally gzip-compressed, bytes counted.

use std::io::Write;

use contracts::TextEncoding;
use flate2::write::GzEncoder;

/// Counts the bytes that reach the file.
struct Counting<'a> {
    inner: &'a mut dyn Write,
    bytes: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

enum Sink<'a> {
    Plain(Counting<'a>),
    Gzip(Box<GzEncoder<Counting<'a>>>),
}

/// The file being written: text in, encoded (and compressed) bytes out.
pub(crate) struct Out<'a> {
    sink: Sink<'a>,
    encoding: Option<TextEncoding>,
    started: bool,
    scratch: Vec<u8>,
}

/// The encoding's name as contracts write it.
pub(crate) fn label(e: TextEncoding) -> &'static str {
    match e {
        TextEncoding::Utf8 => "utf-8",
        TextEncoding::Utf16Le => "utf-16le",
        TextEncoding::Utf16Be => "utf-16be",
        TextEncoding::Windows1252 => "windows-1252",
        TextEncoding::Iso8859_1 => "iso-8859-1",
        TextEncoding::Iso8859_15 => "iso-8859-15",
    }
}

impl<'a> Out<'a> {
    pub fn new(inner: &'a mut dyn Write, encoding: Option<TextEncoding>, gzip: bool) -> Self {
        let counting = Counting { inner, bytes: 0 };
        let sink = if gzip {
            Sink::Gzip(Box::new(GzEncoder::new(counting, flate2::Compression::default())))
        } else {
            Sink::Plain(counting)
        };
        Self { sink, encoding, started: false, scratch: Vec::new() }
    }

    fn write_bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        match &mut self.sink {
            Sink::Plain(w) => w.write_all(b),
            Sink::Gzip(w) => w.write_all(b),
        }
    }

    /// Bytes as they are (a workbook).
    pub fn raw(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.write_bytes(b)
    }

    /// Text, in the file's encoding (a UTF-16 file starts with its byte-order mark).
    pub fn text(&mut self, s: &str) -> std::io::Result<()> {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        match self.encoding {
            None | Some(TextEncoding::Utf8) => buf.extend_from_slice(s.as_bytes()),
            Some(TextEncoding::Utf16Le) => {
                if !self.started {
                    buf.extend_from_slice(&[0xFF, 0xFE]);
                }
                s.encode_utf16().for_each(|u| buf.extend_from_slice(&u.to_le_bytes()));
            }
            Some(TextEncoding::Utf16Be) => {
                if !self.started {
                    buf.extend_from_slice(&[0xFE, 0xFF]);
                }
                s.encode_utf16().for_each(|u| buf.extend_from_slice(&u.to_be_bytes()));
            }
            Some(e @ (TextEncoding::Windows1252 | TextEncoding::Iso8859_1 | TextEncoding::Iso8859_15)) => {
                let enc = match e {
                    TextEncoding::Iso8859_15 => encoding_rs::ISO_8859_15,
                    _ => encoding_rs::WINDOWS_1252,
                };
                let (bytes, _, unmappable) = enc.encode(s);
                if unmappable {
                    return Err(std::io::Error::other(format!(
                        "a synthetic value has a character {} cannot hold",
                        label(e)
                    )));
                }
                buf.extend_from_slice(&bytes);
            }
        }
        self.started = true;
        let r = self.write_bytes(&buf);
        self.scratch = buf;
        r
    }

    /// Flushes (and ends the gzip stream); returns the bytes written to the file.
    pub fn finish(self) -> std::io::Result<u64> {
        match self.sink {
            Sink::Plain(mut w) => {
                w.flush()?;
                Ok(w.bytes)
            }
            Sink::Gzip(g) => {
                let mut w = g.finish()?;
                w.flush()?;
                Ok(w.bytes)
            }
        }
    }
}
