//! A FHIR JSON Bundle (`collection`) of the contract's version: per record a Patient, an
//! Encounter referencing it (`subject`, DSTU2 `patient`) and one Condition per diagnosis
//! referencing the Encounter (`encounter`, STU3 `context`), one entry per line, references by
//! `fullUrl`. Each value goes to its contract FHIRPath (`Patient.name.where(use = 'official')
//! .given.first()`): the elements and repetitions the path names are made. Gender is the FHIR
//! word, other sex codes `F` / `M`. A duplicate repeats the Encounter entry; a malformed record
//! is an entry without a resource.

use contracts::{FhirPath, FhirStep, FhirVersion};

use crate::out::Out;
use crate::record::{Columns, Kind, Record, Val};
use crate::rng::Rng;
use crate::write::node::{json_str, put_fhir, Node};
use crate::write::FormatWriter;
use crate::SynthError;

pub(crate) struct Fhir<'c> {
    version: FhirVersion,
    paths: Vec<FhirPath>,
    cols: &'c Columns,
    first: bool,
    /// NDJSON (one resource per line, references `Type/id`) instead of a Bundle.
    ndjson: bool,
}

/// A resource and the `fullUrl` of its entry.
struct Entry {
    url: String,
    res: Node,
}

impl Entry {
    /// How other resources reference it: its `fullUrl` in a Bundle, `Type/id` in NDJSON.
    fn target(&self, ndjson: bool) -> String {
        let member = |k: &str| self.res.get(k).and_then(Node::text).unwrap_or_default().to_string();
        if ndjson {
            format!("{}/{}", member("resourceType"), member("id"))
        } else {
            self.url.clone()
        }
    }

    /// The entry as the file holds it: a Bundle entry, or the resource alone (NDJSON).
    fn line(&self, ndjson: bool) -> String {
        if ndjson {
            return self.res.to_json();
        }
        self.json()
    }

    fn json(&self) -> String {
        let mut s = String::with_capacity(1024);
        s.push_str("{\"fullUrl\":");
        json_str(&self.url, &mut s);
        s.push_str(",\"resource\":");
        self.res.write(&mut s);
        s.push('}');
        s
    }
}

fn reference(url: &str) -> Node {
    let mut r = Node::obj();
    r.set("reference", Node::Str(url.to_string()));
    r
}

/// A `urn:uuid:` of the record's resource `what` (fixed by the seed).
fn urn(rec: &Record, what: u64) -> String {
    let mut r = Rng::for_record(rec.seed ^ 0xF41E_0000 ^ what, rec.index);
    let (a, b) = (r.next_u64(), r.next_u64());
    format!(
        "urn:uuid:{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

impl<'c> Fhir<'c> {
    pub fn new(version: FhirVersion, cols: &'c Columns, ndjson: bool) -> Result<Self, SynthError> {
        let paths = cols
            .cols
            .iter()
            .map(|c| FhirPath::parse(&c.path).map_err(SynthError::Contract))
            .collect::<Result<_, _>>()?;
        Ok(Self { version, paths, cols, first: true, ndjson })
    }

    /// The value of column `k` as the node its path ends in (`None`: left out).
    fn leaf(&self, rec: &Record, k: usize, item: Option<&str>) -> Option<Node> {
        if let Some(item) = item {
            return Some(Node::Str(item.to_string()));
        }
        Some(match rec.vals[k].as_ref()? {
            Val::Money(x) => Node::Num(format!("{x:.2}")),
            Val::Sex(f) => {
                let gender = matches!(self.paths[k].steps.last(), Some(FhirStep::Key(g)) if g == "gender");
                Node::Str(
                    match (gender, f) {
                        (true, true) => "female",
                        (true, false) => "male",
                        (false, true) => "F",
                        (false, false) => "M",
                    }
                    .to_string(),
                )
            }
            _ => Node::Str(rec.text(self.cols, k)?),
        })
    }

    /// Puts every column of `resource` into `node` (a list column: item `item` of it).
    fn fill(&self, rec: &Record, resource: &str, node: &mut Node, item: Option<usize>) {
        for (k, p) in self.paths.iter().enumerate().filter(|(_, p)| p.resource == resource) {
            let leaf = match (&rec.vals[k], item) {
                (Some(Val::List(items)), Some(n)) => match items.get(n) {
                    Some(v) => self.leaf(rec, k, Some(v)),
                    None => continue,
                },
                (Some(Val::List(_)), None) => continue,
                (_, Some(n)) if n > 0 => continue,
                _ => self.leaf(rec, k, None),
            };
            put_fhir(node, &p.steps, leaf);
        }
    }

    fn resource(kind: &str, id: String) -> Node {
        let mut n = Node::obj();
        n.set("resourceType", Node::Str(kind.into()));
        n.set("id", Node::Str(id));
        n
    }

    fn patient(&self, rec: &Record) -> Entry {
        let mut p = Self::resource("Patient", format!("p{}", rec.index + 1));
        self.fill(rec, "Patient", &mut p, None);
        Entry { url: urn(rec, 1), res: p }
    }

    fn encounter(&self, rec: &Record, patient: &str) -> Entry {
        let mut e = Self::resource("Encounter", format!("e{}", rec.index + 1));
        e.set("status", Node::Str("finished".into()));
        if self.version == FhirVersion::Dstu2 {
            e.set("class", Node::Str("outpatient".into()));
        } else {
            let mut class = Node::obj();
            class.set("system", Node::Str("http://terminology.hl7.org/CodeSystem/v3-ActCode".into()));
            class.set("code", Node::Str("AMB".into()));
            e.set("class", class);
        }
        e.set(self.version.patient_ref(), reference(patient));
        self.fill(rec, "Encounter", &mut e, None);
        Entry { url: urn(rec, 2), res: e }
    }

    /// One Condition per diagnosis (at least one when a scalar column reads a Condition).
    fn conditions(&self, rec: &Record, patient: &str, encounter: &str) -> Vec<Entry> {
        let on_condition = |k: &usize| self.paths[*k].resource == "Condition";
        let list = (0..self.paths.len()).filter(on_condition).find_map(|k| match &rec.vals[k] {
            Some(Val::List(items)) => Some(items.len()),
            _ => None,
        });
        let n = list.unwrap_or_else(|| usize::from((0..self.paths.len()).any(|k| on_condition(&k))));
        (0..n)
            .map(|i| {
                let mut c = Self::resource("Condition", format!("c{}-{}", rec.index + 1, i + 1));
                let patient_key = if self.version == FhirVersion::Dstu2 { "patient" } else { "subject" };
                c.set(patient_key, reference(patient));
                c.set(self.version.encounter_ref(), reference(encounter));
                let mut coding = Node::obj();
                coding.set("system", Node::Str("http://hl7.org/fhir/sid/icd-10-cm".into()));
                c.entry("code").set("coding", Node::Arr(vec![coding]));
                self.fill(rec, "Condition", &mut c, Some(i));
                Entry { url: urn(rec, 100 + i as u64), res: c }
            })
            .collect()
    }
}

impl FormatWriter for Fhir<'_> {
    fn begin(&mut self, out: &mut Out<'_>) -> Result<(), SynthError> {
        if self.ndjson {
            return Ok(());
        }
        Ok(out.text("{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[\n")?)
    }

    fn record(&mut self, out: &mut Out<'_>, rec: &Record, kind: Kind) -> Result<(), SynthError> {
        let nd = self.ndjson;
        let patient = self.patient(rec);
        let encounter = self.encounter(rec, &patient.target(nd));
        let entries: Vec<String> = match kind {
            Kind::Malformed if nd => {
                // JSON, so an NDJSON file may start with it, but not a resource
                let mut e = Node::obj();
                e.set("unreadable", Node::Str(format!("record {}", rec.index + 1)));
                vec![e.to_json()]
            }
            Kind::Malformed => {
                let mut e = Node::obj();
                e.set("fullUrl", Node::Str(urn(rec, 0)));
                vec![e.to_json()]
            }
            Kind::Duplicate(_) => vec![encounter.line(nd)],
            _ => {
                let conditions = self.conditions(rec, &patient.target(nd), &encounter.target(nd));
                let mut v = vec![patient.line(nd), encounter.line(nd)];
                v.extend(conditions.iter().map(|c| c.line(nd)));
                v
            }
        };
        for e in entries {
            if nd {
                out.text(&e)?;
                out.text("\n")?;
                continue;
            }
            out.text(if self.first { "  " } else { ",\n  " })?;
            self.first = false;
            out.text(&e)?;
        }
        Ok(())
    }

    fn end(&mut self, out: &mut Out<'_>) -> Result<(), SynthError> {
        if self.ndjson {
            return Ok(());
        }
        Ok(out.text("\n]}\n")?)
    }
}
