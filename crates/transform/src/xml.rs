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

use contracts::{CanonicalSchema, Contract, Format, ParquetType, XmlPath, XmlStep};
use quick_xml::events::Event;
use quick_xml::XmlVersion;
use serde_json::Value;

use crate::decode::{ContentError, Input};
use crate::engine::{Malformed, Options, Outputs, Summary};
use crate::plan::{Plan, Raw, Src};
use crate::TransformError;

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

pub(crate) fn run(
    contract: &Contract,
    schema: &CanonicalSchema,
    file_name: &str,
    input: Input<'_>,
    out: Outputs<'_>,
    opts: &Options,
) -> Result<Summary, TransformError> {
    let Format::Xml { record } = &contract.format else {
        return Err(TransformError::Internal("not an XML contract".into()));
    };
    let record = XmlPath::parse_record(record).map_err(TransformError::Internal)?;
    let plan = Plan::new(contract, schema, file_name);
    let max_depth = contract.limits.max_depth;
    let max_rec = contract.limits.max_record_bytes as u64;
    let mut reader = quick_xml::Reader::from_reader(BufReader::with_capacity(256 << 10, input));
    reader.config_mut().check_end_names = true;

    let mut total = 0u64;
    let mut summary = crate::sink::run_records(&plan, out, opts, |sink| {
        let mut buf = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut open: Vec<Open> = Vec::new();
        // bytes of text and attributes held in built nodes outside the current record
        let mut held: u64 = 0;
        let mut rec_start: Option<u64> = None;
        let mut rec_problem: Option<String> = None;
        let mut element = 0u64;
        let mut cells: Vec<Cell> = Vec::with_capacity(plan.cols.len());
        let structure = |pos: u64, what: String| TransformError::Structure(format!("{what} (at byte {pos})"));
        loop {
            let pos = reader.buffer_position();
            let ev = reader.read_event_into(&mut buf).map_err(|e| match e {
                // an I/O error below the parser may be a decoding-layer content error (a bomb)
                quick_xml::Error::Io(io) => match io.get_ref().and_then(|x| x.downcast_ref::<ContentError>())
                {
                    Some(c) => c.0.clone(),
                    None => TransformError::Read(io.to_string()),
                },
                other => structure(pos, format!("the XML is malformed: {other}")),
            })?;
            let in_record = rec_start.is_some();
            match ev {
                Event::DocType(_) => {
                    return Err(structure(
                        pos,
                        "the XML declares a DTD (<!DOCTYPE>): DTDs and entities are refused (XXE, entity expansion)"
                            .into(),
                    ))
                }
                Event::Start(ref e) | Event::Empty(ref e) => {
                    let empty = matches!(ev, Event::Empty(_));
                    let name = local(e.name().as_ref());
                    names.push(name);
                    if names.len() > max_depth {
                        return Err(structure(pos, format!("the XML nests deeper than max_depth ({max_depth})")));
                    }
                    let on_path = names.len() <= record.len() && names.iter().zip(&record).all(|(a, b)| a == b);
                    let parent_built = matches!(open.last(), Some(Open::Built(_)));
                    if names.len() == record.len() && on_path {
                        rec_start = Some(pos);
                        rec_problem = None;
                    }
                    let build = (on_path || parent_built) && rec_problem.is_none();
                    if build {
                        let mut node = Node { name: names.last().cloned().unwrap_or_default(), ..Default::default() };
                        for a in e.attributes() {
                            let a = match a {
                                Ok(a) => a,
                                Err(err) => return Err(structure(pos, format!("bad XML attribute: {err}"))),
                            };
                            let key = local(a.key.as_ref());
                            if key == "xmlns" || a.key.as_ref().starts_with(b"xmlns:") {
                                continue;
                            }
                            match a.normalized_value(XmlVersion::Implicit1_0) {
                                Ok(v) => {
                                    held += (key.len() + v.len()) as u64;
                                    node.attrs.push((key, v.into_owned()));
                                }
                                Err(_) if rec_start.is_some() => {
                                    rec_problem = Some("an attribute uses an undeclared entity".into())
                                }
                                Err(err) => return Err(structure(pos, format!("bad XML attribute value: {err}"))),
                            }
                        }
                        open.push(Open::Built(node));
                    } else {
                        open.push(Open::Ignored);
                    }
                    if empty {
                        close(&mut names, &mut open, &record, &mut rec_start, &mut rec_problem, &mut held, &mut element, sink, &mut cells)?;
                    }
                }
                Event::End(_) => {
                    close(&mut names, &mut open, &record, &mut rec_start, &mut rec_problem, &mut held, &mut element, sink, &mut cells)?;
                }
                Event::Text(ref t) => {
                    // whitespace between the elements of a container on the record path is
                    // layout, not a value (and would grow with the file)
                    let layout = names.len() <= record.len()
                        && names.iter().zip(&record).all(|(a, b)| a == b)
                        && t.iter().all(u8::is_ascii_whitespace);
                    if let (false, Some(Open::Built(n))) = (layout, open.last_mut()) {
                        let s = t.xml10_content().map_err(|_| structure(pos, "the XML is not valid UTF-8".into()))?;
                        held += s.len() as u64;
                        n.text.push_str(&s);
                    }
                }
                Event::CData(ref t) => {
                    if let Some(Open::Built(n)) = open.last_mut() {
                        let s = t.decode().map_err(|_| structure(pos, "the XML is not valid UTF-8".into()))?;
                        held += s.len() as u64;
                        n.text.push_str(&s);
                    }
                }
                Event::GeneralRef(ref r) => {
                    if let Some(Open::Built(n)) = open.last_mut() {
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
                            None if in_record => rec_problem = Some("a value uses an undeclared entity".into()),
                            None => return Err(structure(pos, "the XML uses an undeclared entity".into())),
                        }
                    }
                }
                Event::Eof => {
                    if !names.is_empty() {
                        return Err(structure(
                            pos,
                            format!("the XML is truncated: {} element(s) not closed", names.len()),
                        ));
                    }
                    total = reader.buffer_position();
                    break;
                }
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            }
            if let Some(start) = rec_start {
                if rec_problem.is_none() && reader.buffer_position() - start > max_rec {
                    rec_problem = Some("record too long: over the contract's max_record_bytes".into());
                    // drop what was built of it; the rest of the record is ignored
                    let depth = record.len() - 1;
                    if let Some(Open::Built(n)) = open.get_mut(depth) {
                        n.children.clear();
                        n.text.clear();
                    }
                    for o in open.iter_mut().skip(depth + 1) {
                        *o = Open::Ignored;
                    }
                }
            } else if held > max_rec {
                return Err(structure(
                    pos,
                    "the XML elements around the records hold more than max_record_bytes".into(),
                ));
            }
            buf.clear();
        }
        Ok(())
    })?;
    summary.bytes = total;
    Ok(summary)
}

enum Cell {
    Null,
    Str(String),
    List(Value),
}

#[allow(clippy::too_many_arguments)]
fn close<'p>(
    names: &mut Vec<String>,
    open: &mut Vec<Open>,
    record: &[String],
    rec_start: &mut Option<u64>,
    rec_problem: &mut Option<String>,
    held: &mut u64,
    element: &mut u64,
    sink: &mut crate::sink::Sink<'p>,
    cells: &mut Vec<Cell>,
) -> Result<(), TransformError> {
    let plan = sink.plan();
    let depth = names.len();
    let was_record =
        depth == record.len() && rec_start.is_some() && names.iter().zip(record).all(|(a, b)| a == b);
    names.pop();
    let node = open.pop();
    if was_record {
        *rec_start = None;
        *held = 0;
        let idx = *element;
        *element += 1;
        if let Some(why) = rec_problem.take() {
            return sink.malformed(Malformed { line: None, element: Some(idx), reason: why, raw: None });
        }
        let Some(Open::Built(rec)) = node else { return Ok(()) };
        let ancestors: Vec<&Node> =
            open.iter().filter_map(|o| if let Open::Built(n) = o { Some(n) } else { None }).collect();
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for a in &ancestors {
            a.hash_into(&mut h);
        }
        rec.hash_into(&mut h);
        cells.clear();
        let mut vals: Vec<&str> = Vec::new();
        for col in &plan.cols {
            let Src::Xml(p) = &col.src else {
                cells.push(Cell::Null);
                continue;
            };
            let list = col.ty == ParquetType::ListString;
            vals.clear();
            resolve(&rec, &ancestors, p, &mut vals);
            let cell = if list {
                let items: Vec<Value> = vals.iter().map(|v| Value::String(v.to_string())).collect();
                if items.is_empty() {
                    Cell::Null
                } else {
                    Cell::List(Value::Array(items))
                }
            } else {
                vals.first().map_or(Cell::Null, |v| Cell::Str(v.to_string()))
            };
            cells.push(cell);
        }
        let key = h.digest128();
        return sink.push(key, |i, _| match &cells[i] {
            Cell::Null => Raw::Null,
            Cell::Str(s) => Raw::Str(s),
            Cell::List(v) => Raw::Json(v),
        });
    }
    // an element on the record path above the record: its context is no longer needed
    let on_path = depth < record.len() && names.iter().zip(record).all(|(a, b)| a == b);
    if let Some(Open::Built(n)) = node {
        if !on_path {
            if let Some(Open::Built(parent)) = open.last_mut() {
                parent.children.push(n);
            }
        }
    }
    Ok(())
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
