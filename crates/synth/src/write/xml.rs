//! XML: the contract's record path (`/Export/Patient/Encounter`) with each record inside its
//! own chain of ancestors (a patient around its encounter). A field path's leading `..` steps
//! name the ancestor it belongs to (`../Name/Family` in the patient, `../../@facility` on the
//! root, written once from the first record's values); children and attributes on the way are
//! made; a list column repeats its last element (`Dx/Code`). A field left out is absent. A
//! malformed record holds a value with an undeclared entity (`&synthetic;`), which the reader
//! refuses for that record only (DTDs are refused, so no entity is ever declared).

use contracts::{Contract, XmlPath, XmlStep};

use crate::out::{label, Out};
use crate::record::{Columns, Kind, Record, Val};
use crate::write::FormatWriter;
use crate::SynthError;

#[derive(Debug, Default)]
struct El {
    name: String,
    attrs: Vec<(String, String)>,
    kids: Vec<El>,
    text: Option<String>,
}

impl El {
    fn named(name: &str) -> Self {
        Self { name: name.to_string(), ..Default::default() }
    }

    fn child(&mut self, name: &str) -> &mut El {
        let i = match self.kids.iter().position(|k| k.name == name) {
            Some(i) => i,
            None => {
                self.kids.push(El::named(name));
                self.kids.len() - 1
            }
        };
        &mut self.kids[i]
    }

    /// Puts `values` at the relative path `steps` (several values: the last element repeated).
    fn put(&mut self, steps: &[XmlStep], values: &[String]) {
        match steps {
            [XmlStep::Attr(a)] => self.attrs.push((a.clone(), values.join(" "))),
            [XmlStep::Child(c)] => {
                for v in values {
                    let mut e = El::named(c);
                    e.text = Some(v.clone());
                    self.kids.push(e);
                }
            }
            [XmlStep::Child(c), rest @ ..] => self.child(c).put(rest, values),
            _ => {}
        }
    }

    fn open(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        for (k, v) in &self.attrs {
            out.push_str(&format!(" {k}=\"{}\"", escape(v)));
        }
        out.push('>');
    }

    fn close(&self, out: &mut String) {
        out.push_str(&format!("</{}>", self.name));
    }

    fn write(&self, out: &mut String) {
        self.open(out);
        if let Some(t) = &self.text {
            out.push_str(&escape(t));
        }
        self.kids.iter().for_each(|k| k.write(out));
        self.close(out);
    }
}

fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&apos;"),
            c => s.push(c),
        }
    }
    s
}

pub(crate) struct Xml<'c> {
    /// Element names from the root to the record.
    record: Vec<String>,
    /// Per column: the level of the element it belongs to (0: the root) and the path from it.
    fields: Vec<(usize, Vec<XmlStep>)>,
    cols: &'c Columns,
    contract: &'c Contract,
    seed: u64,
}

impl<'c> Xml<'c> {
    pub fn new(
        record: &str,
        contract: &'c Contract,
        cols: &'c Columns,
        seed: u64,
    ) -> Result<Self, SynthError> {
        let record = XmlPath::parse_record(record).map_err(SynthError::Contract)?;
        let depth = record.len() - 1;
        let mut fields = Vec::new();
        for c in &cols.cols {
            let p = XmlPath::parse(&c.path).map_err(SynthError::Contract)?;
            let up = p.0.iter().take_while(|s| **s == XmlStep::Parent).count();
            let level = depth.checked_sub(up).ok_or_else(|| {
                SynthError::Contract(format!("`{}` = `{}` climbs above the document's root", c.name, c.path))
            })?;
            fields.push((level, p.0[up..].to_vec()));
        }
        Ok(Self { record, fields, cols, contract, seed })
    }

    /// The elements of levels `1..=depth` (the ancestors under the root, then the record).
    fn chain(&self, rec: &Record) -> Vec<El> {
        let mut chain: Vec<El> = self.record.iter().map(|n| El::named(n)).collect();
        for (k, (level, steps)) in self.fields.iter().enumerate() {
            if *level == 0 {
                continue;
            }
            let values = match &rec.vals[k] {
                None => continue,
                Some(Val::List(items)) => items.clone(),
                Some(_) => rec.text(self.cols, k).into_iter().collect(),
            };
            chain[*level].put(steps, &values);
        }
        chain.remove(0);
        chain
    }
}

impl FormatWriter for Xml<'_> {
    fn begin(&mut self, out: &mut Out<'_>) -> Result<(), SynthError> {
        let enc = self.contract.encoding.map_or("UTF-8", label);
        let first = self.cols.record(self.seed, 0, Kind::Good);
        let mut root = El::named(&self.record[0]);
        for (k, (level, steps)) in self.fields.iter().enumerate() {
            if *level == 0 {
                let values: Vec<String> = first.text(self.cols, k).into_iter().collect();
                root.put(steps, &values);
            }
        }
        let mut s = format!("<?xml version=\"1.0\" encoding=\"{enc}\"?>\n");
        root.open(&mut s);
        root.kids.iter().for_each(|k| k.write(&mut s));
        s.push('\n');
        Ok(out.text(&s)?)
    }

    fn record(&mut self, out: &mut Out<'_>, rec: &Record, kind: Kind) -> Result<(), SynthError> {
        let mut chain = self.chain(rec);
        if kind == Kind::Malformed {
            if let Some(r) = chain.last_mut() {
                r.kids.push(El { name: "Note".into(), text: Some("\u{0}".into()), ..Default::default() });
            }
        }
        let mut s = String::with_capacity(512);
        let (record, ancestors) =
            chain.split_last().ok_or_else(|| SynthError::Contract("empty record path".into()))?;
        for (d, a) in ancestors.iter().enumerate() {
            s.push_str(&"  ".repeat(d + 1));
            a.open(&mut s);
            a.kids.iter().for_each(|k| k.write(&mut s));
            s.push('\n');
        }
        s.push_str(&"  ".repeat(ancestors.len() + 1));
        record.write(&mut s);
        s.push('\n');
        for (d, a) in ancestors.iter().enumerate().rev() {
            s.push_str(&"  ".repeat(d + 1));
            a.close(&mut s);
            s.push('\n');
        }
        // the undeclared entity goes in unescaped, where the NUL placeholder stands
        Ok(out.text(&s.replace('\u{0}', "&synthetic;"))?)
    }

    fn end(&mut self, out: &mut Out<'_>) -> Result<(), SynthError> {
        Ok(out.text(&format!("</{}>\n", self.record[0]))?)
    }
}
