//! JSON lines or a JSON array of objects, each value at its contract path (`a.b[0].c`); a list
//! column is a JSON array, charges a number, sex the FHIR-style word; a field left out is
//! absent. Keys the contract drops are written too. A malformed JSON line is cut short; a
//! malformed array element is a string, not an object.

use contracts::{Contract, JsonPath, PathSeg};

use crate::out::Out;
use crate::record::{Columns, Kind, Record, Val};
use crate::write::node::{put_json, Node};
use crate::write::{filler, FormatWriter};
use crate::SynthError;

pub(crate) struct Json<'c> {
    array: bool,
    paths: Vec<Vec<PathSeg>>,
    drop: &'c [String],
    cols: &'c Columns,
    first: bool,
}

impl<'c> Json<'c> {
    pub fn new(array: bool, contract: &'c Contract, cols: &'c Columns) -> Result<Self, SynthError> {
        let paths = cols
            .cols
            .iter()
            .map(|c| JsonPath::parse(&c.path).map(|p| p.0).map_err(SynthError::Contract))
            .collect::<Result<_, _>>()?;
        Ok(Self { array, paths, drop: &contract.drop, cols, first: true })
    }

    fn object(&self, rec: &Record) -> Node {
        let mut o = Node::obj();
        for (k, path) in self.paths.iter().enumerate() {
            let leaf = match rec.vals[k].as_ref() {
                None => continue,
                Some(Val::List(items)) => Node::Arr(items.iter().map(|s| Node::Str(s.clone())).collect()),
                Some(Val::Money(x)) => Node::Num(format!("{x:.2}")),
                Some(Val::Sex(f)) => Node::Str((if *f { "female" } else { "male" }).into()),
                Some(_) => Node::Str(rec.text(self.cols, k).unwrap_or_default()),
            };
            put_json(&mut o, path, leaf);
        }
        for d in self.drop {
            o.set(d, Node::Str(filler(rec, d)));
        }
        o
    }
}

impl FormatWriter for Json<'_> {
    fn begin(&mut self, out: &mut Out<'_>) -> Result<(), SynthError> {
        if self.array {
            out.text("[\n")?;
        }
        Ok(())
    }

    fn record(&mut self, out: &mut Out<'_>, rec: &Record, kind: Kind) -> Result<(), SynthError> {
        let mut text = self.object(rec).to_json();
        if kind == Kind::Malformed {
            if self.array {
                text = Node::Str(format!("unreadable record {}", rec.index + 1)).to_json();
            } else {
                let mut cut = text.len() / 2;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
        }
        if self.array {
            out.text(if self.first { "  " } else { ",\n  " })?;
            self.first = false;
            Ok(out.text(&text)?)
        } else {
            text.push('\n');
            Ok(out.text(&text)?)
        }
    }

    fn end(&mut self, out: &mut Out<'_>) -> Result<(), SynthError> {
        if self.array {
            out.text("\n]\n")?;
        }
        Ok(())
    }
}
