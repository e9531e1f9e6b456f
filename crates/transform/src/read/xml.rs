//! XML: one row per element at the contract's `record` path, streamed with quick-xml.
//!
//! Safe by construction: a document type declaration (`<!DOCTYPE`) is refused outright, so no
//! DTD is read, no external entity is fetched and no entity is expanded (XXE and billion-laughs
//! files fail with a clear error); only the five predefined entities and character references
//! are decoded. Nesting deeper than `max_depth` is an error. Memory holds one record plus the
//! small elements of its ancestors (siblings that are not on the record path, e.g. a patient's
//! name around its encounters); a record over `max_record_bytes` is reported and skipped.
//!
//! Field paths are relative to the record element: `Date` (a child's text), `@id` (an
//! attribute), `Dx/Code` (every match for a list column, the first otherwise), and leading
//! `..` steps to an ancestor (`../@mrn`, `../Name/Family`). Namespace prefixes are ignored.

use std::io::BufReader;

use contracts::{ParquetType, XmlPath, XmlStep};
use quick_xml::events::{BytesCData, BytesRef, BytesStart, BytesText, Event};
use quick_xml::XmlVersion;

use crate::decode::{ContentError, Input};
use crate::error::TransformError;
use crate::job::{Job, Reader};
use crate::jv::Jv;
use crate::outcome::{Malformed, Summary};
use crate::plan::{Raw, Src};
use crate::sink::{run_records, Sink};

#[derive(Default)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn hash_into(&self, h: &mut xxhash_rust::xxh3::Xxh3) {
        h.update(self.name.as_bytes());
        for (k, v) in &self.attrs {
            h.update(&[1]);
            h.update(k.as_bytes());
            h.update(&[2]);
            h.update(v.as_bytes());
        }
        h.update(&[3]);
        h.update(self.text.trim().as_bytes());
        for c in &self.children {
            h.update(&[4]);
            c.hash_into(h);
        }
        h.update(&[5]);
    }
}

fn local(name: &[u8]) -> String {
    let n = match name.iter().rposition(|&b| b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    };
    String::from_utf8_lossy(n).into_owned()
}

/// An open element: built when on the record path or inside something built, else ignored.
enum Open {
    Built(Node),
    Ignored,
}

pub(crate) struct Xml<'c> {
    /// The record path (`/Export/Patient/Encounter`).
    pub record: &'c str,
}

impl Reader for Xml<'_> {
    fn read(&self, job: Job<'_, '_>) -> Result<Summary, TransformError> {
        let Job { contract, plan, input, out, opts } = job;
        let record = XmlPath::parse_record(self.record).map_err(TransformError::Internal)?;
        let mut walk = Walk {
            record,
            max_depth: contract.limits.max_depth,
            max_rec: contract.limits.max_record_bytes as u64,
            names: Vec::new(),
            open: Vec::new(),
            held: 0,
            rec_start: None,
            rec_problem: None,
            element: 0,
            cells: Vec::with_capacity(plan.cols.len()),
        };
        let mut reader = quick_xml::Reader::from_reader(BufReader::with_capacity(256 << 10, input));
        reader.config_mut().check_end_names = true;
        let mut total = 0u64;
        let mut summary = run_records(&plan, out, opts, |sink| {
            total = walk.run(&mut reader, sink)?;
            Ok(())
        })?;
        summary.bytes = total;
        Ok(summary)
    }
}

fn structure(pos: u64, what: &str) -> TransformError {
    TransformError::Structure(format!("{what} (at byte {pos})"))
}

enum Cell {
    Null,
    Str(String),
    List(Jv),
}

/// The state of one pass over a document: the open elements, the record being built and what
/// is held around it.
struct Walk {
    record: Vec<String>,
    max_depth: usize,
    max_rec: u64,
    /// Local names of the open elements, outermost first.
    names: Vec<String>,
    open: Vec<Open>,
    /// Bytes of text and attributes held in built nodes outside the current record.
    held: u64,
    /// Where the current record started (none outside a record).
    rec_start: Option<u64>,
    /// Why the current record cannot be read (it is then skipped to its end and reported).
    rec_problem: Option<String>,
    /// Records seen so far (the next record's 0-based index).
    element: u64,
    cells: Vec<Cell>,
}

impl Walk {
    /// True when the open elements are the record path or a prefix of it.
    fn on_path(&self) -> bool {
        self.names.len() <= self.record.len() && self.names.iter().zip(&self.record).all(|(a, b)| a == b)
    }

    /// Reads the whole document; returns its length in bytes.
    fn run(
        &mut self,
        reader: &mut quick_xml::Reader<BufReader<Input<'_>>>,
        sink: &mut Sink<'_>,
    ) -> Result<u64, TransformError> {
        let mut buf = Vec::new();
        loop {
            let pos = reader.buffer_position();
            let ev = reader.read_event_into(&mut buf).map_err(|e| match e {
                // an I/O error below the parser may be a decoding-layer content error (a bomb)
                quick_xml::Error::Io(io) => match io.get_ref().and_then(|x| x.downcast_ref::<ContentError>())
                {
                    Some(c) => c.0.clone(),
                    None => TransformError::Read(io.to_string()),
                },
                other => structure(pos, &format!("the XML is malformed: {other}")),
            })?;
            match ev {
                Event::DocType(_) => {
                    return Err(structure(
                        pos,
                        "the XML declares a DTD (<!DOCTYPE>): DTDs and entities are refused (XXE, entity expansion)",
                    ))
                }
                Event::Start(ref e) => self.start(e, pos)?,
                Event::Empty(ref e) => {
                    self.start(e, pos)?;
                    self.close(sink)?;
                }
                Event::End(_) => self.close(sink)?,
                Event::Text(ref t) => self.text(t, pos)?,
                Event::CData(ref t) => self.cdata(t, pos)?,
                Event::GeneralRef(ref r) => self.general_ref(r, pos)?,
                Event::Eof => {
                    if !self.names.is_empty() {
                        let open = self.names.len();
                        return Err(structure(pos, &format!("the XML is truncated: {open} element(s) not closed")));
                    }
                    return Ok(reader.buffer_position());
                }
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            }
            self.check_size(pos, reader.buffer_position())?;
            buf.clear();
        }
    }

    /// An element opens: built when on the record path or inside something built.
    fn start(&mut self, e: &BytesStart<'_>, pos: u64) -> Result<(), TransformError> {
        self.names.push(local(e.name().as_ref()));
        if self.names.len() > self.max_depth {
            return Err(structure(pos, &format!("the XML nests deeper than max_depth ({})", self.max_depth)));
        }
        let on_path = self.on_path();
        let parent_built = matches!(self.open.last(), Some(Open::Built(_)));
        if self.names.len() == self.record.len() && on_path {
            self.rec_start = Some(pos);
            self.rec_problem = None;
        }
        if !((on_path || parent_built) && self.rec_problem.is_none()) {
            self.open.push(Open::Ignored);
            return Ok(());
        }
        let mut node = Node { name: self.names.last().cloned().unwrap_or_default(), ..Default::default() };
        for a in e.attributes() {
            let a = a.map_err(|err| structure(pos, &format!("bad XML attribute: {err}")))?;
            let key = local(a.key.as_ref());
            if key == "xmlns" || a.key.as_ref().starts_with(b"xmlns:") {
                continue;
            }
            match a.normalized_value(XmlVersion::Implicit1_0) {
                Ok(v) => {
                    self.held += (key.len() + v.len()) as u64;
                    node.attrs.push((key, v.into_owned()));
                }
                Err(_) if self.rec_start.is_some() => {
                    self.rec_problem = Some("an attribute uses an undeclared entity".into())
                }
                Err(err) => return Err(structure(pos, &format!("bad XML attribute value: {err}"))),
            }
        }
        self.open.push(Open::Built(node));
        Ok(())
    }

    fn text(&mut self, t: &BytesText<'_>, pos: u64) -> Result<(), TransformError> {
        // whitespace between the elements of a container on the record path is layout, not a
        // value (and would grow with the file)
        let layout = self.on_path() && t.iter().all(u8::is_ascii_whitespace);
        if let (false, Some(Open::Built(n))) = (layout, self.open.last_mut()) {
            let s = t.xml10_content().map_err(|_| structure(pos, "the XML is not valid UTF-8"))?;
            self.held += s.len() as u64;
            n.text.push_str(&s);
        }
        Ok(())
    }

    fn cdata(&mut self, t: &BytesCData<'_>, pos: u64) -> Result<(), TransformError> {
        if let Some(Open::Built(n)) = self.open.last_mut() {
            let s = t.decode().map_err(|_| structure(pos, "the XML is not valid UTF-8"))?;
            self.held += s.len() as u64;
            n.text.push_str(&s);
        }
        Ok(())
    }

    /// A character or entity reference: only character references and the five predefined
    /// entities are known.
    fn general_ref(&mut self, r: &BytesRef<'_>, pos: u64) -> Result<(), TransformError> {
        let in_record = self.rec_start.is_some();
        let Some(Open::Built(n)) = self.open.last_mut() else { return Ok(()) };
        let resolved = match r.resolve_char_ref() {
            Ok(Some(c)) => Some(c.to_string()),
            Ok(None) => {
                let name = r.decode().map(|c| c.into_owned()).unwrap_or_default();
                quick_xml::escape::resolve_predefined_entity(&name).map(str::to_string)
            }
            Err(_) => None,
        };
        match resolved {
            Some(s) => n.text.push_str(&s),
            None if in_record => self.rec_problem = Some("a value uses an undeclared entity".into()),
            None => return Err(structure(pos, "the XML uses an undeclared entity")),
        }
        Ok(())
    }

    /// After each event: a record over `max_record_bytes` is dropped (and reported at its end);
    /// outside records, what is held around them is capped the same way.
    fn check_size(&mut self, pos: u64, now: u64) -> Result<(), TransformError> {
        if let Some(start) = self.rec_start {
            if self.rec_problem.is_none() && now - start > self.max_rec {
                self.rec_problem = Some("record too long: over the contract's max_record_bytes".into());
                // drop what was built of it; the rest of the record is ignored
                let depth = self.record.len() - 1;
                if let Some(Open::Built(n)) = self.open.get_mut(depth) {
                    n.children.clear();
                    n.text.clear();
                }
                for o in self.open.iter_mut().skip(depth + 1) {
                    *o = Open::Ignored;
                }
            }
        } else if self.held > self.max_rec {
            return Err(structure(
                pos,
                "the XML elements around the records hold more than max_record_bytes",
            ));
        }
        Ok(())
    }

    /// An element closes: a record becomes a row (or a malformed record); any other built
    /// element joins its parent, unless it is on the record path above the record.
    fn close(&mut self, sink: &mut Sink<'_>) -> Result<(), TransformError> {
        let depth = self.names.len();
        let was_record = depth == self.record.len() && self.rec_start.is_some() && self.on_path();
        self.names.pop();
        let node = self.open.pop();
        if was_record {
            return self.record_row(node, sink);
        }
        // an element on the record path above the record: its context is no longer needed
        let on_path = depth < self.record.len() && self.on_path();
        if let Some(Open::Built(n)) = node {
            if !on_path {
                if let Some(Open::Built(parent)) = self.open.last_mut() {
                    parent.children.push(n);
                }
            }
        }
        Ok(())
    }

    /// The record element just closed: its row, keyed by its content and its ancestors'.
    fn record_row(&mut self, node: Option<Open>, sink: &mut Sink<'_>) -> Result<(), TransformError> {
        self.rec_start = None;
        self.held = 0;
        let idx = self.element;
        self.element += 1;
        if let Some(why) = self.rec_problem.take() {
            return sink.malformed(Malformed {
                line: None,
                element: Some(idx),
                part: None,
                reason: why,
                raw: None,
            });
        }
        let Some(Open::Built(rec)) = node else { return Ok(()) };
        let ancestors: Vec<&Node> =
            self.open.iter().filter_map(|o| if let Open::Built(n) = o { Some(n) } else { None }).collect();
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for a in &ancestors {
            a.hash_into(&mut h);
        }
        rec.hash_into(&mut h);
        self.cells.clear();
        let mut vals: Vec<&str> = Vec::new();
        for col in &sink.plan().cols {
            let Src::Xml(p) = &col.src else {
                self.cells.push(Cell::Null);
                continue;
            };
            let list = col.ty == ParquetType::ListString;
            vals.clear();
            resolve(&rec, &ancestors, p, &mut vals);
            let cell = if list {
                let items: Vec<Jv> = vals.iter().map(|v| Jv::Str(v.to_string())).collect();
                if items.is_empty() {
                    Cell::Null
                } else {
                    Cell::List(Jv::Arr(items))
                }
            } else {
                vals.first().map_or(Cell::Null, |v| Cell::Str(v.to_string()))
            };
            self.cells.push(cell);
        }
        let key = h.digest128();
        let cells = &self.cells;
        sink.push(key, |i, _| match &cells[i] {
            Cell::Null => Raw::Null,
            Cell::Str(s) => Raw::Str(s),
            Cell::List(v) => Raw::Json(v),
        })
    }
}

/// Non-empty values at `path` from `rec` (leading `..` steps climb `ancestors`, nearest last).
fn resolve<'n>(rec: &'n Node, ancestors: &[&'n Node], path: &XmlPath, out: &mut Vec<&'n str>) {
    let mut up = 0;
    let mut steps = path.0.as_slice();
    while let Some((XmlStep::Parent, rest)) = steps.split_first() {
        up += 1;
        steps = rest;
    }
    let start: &Node = if up == 0 {
        rec
    } else {
        match ancestors.len().checked_sub(up).and_then(|i| ancestors.get(i)) {
            Some(n) => n,
            None => return,
        }
    };
    let mut cur: Vec<&Node> = vec![start];
    for (k, step) in steps.iter().enumerate() {
        match step {
            XmlStep::Child(name) => {
                cur = cur.iter().flat_map(|n| n.children.iter().filter(|c| &c.name == name)).collect();
            }
            XmlStep::Attr(name) => {
                if k + 1 == steps.len() {
                    for n in &cur {
                        if let Some((_, v)) = n.attrs.iter().find(|(a, _)| a == name) {
                            if !v.trim().is_empty() {
                                out.push(v.as_str());
                            }
                        }
                    }
                }
                return;
            }
            XmlStep::Parent => return,
        }
    }
    for n in cur {
        let t = n.text.trim();
        if !t.is_empty() {
            out.push(t);
        }
    }
}
