//! HL7 v2.5.1 messages in one FHS/BHS batch (BTS/FTS at the end), segments ending in `\r`.
//! ADT^A01 and ORU^R01 (with ORC/OBR/OBX) alternate; each value goes to its contract path
//! `SEG-field[rep].component.subcomponent`, escaped. A repetition chosen by a component's value
//! (`PID-3[5=MR].1`) or by number (`PID-3[2].1`) gets other repetitions before it, as feeds
//! send an SSA number or another facility's id first; a list column (`DG1-3.1`) gets one
//! segment per item. A malformed message carries a segment whose id is not a valid one.

use contracts::{Hl7Path, Hl7Rep, Semantic};

use crate::out::Out;
use crate::record::{format_date, Columns, Kind, Record, Val};
use crate::write::FormatWriter;
use crate::SynthError;

const ORDER: &[&str] =
    &["MSH", "EVN", "PID", "PD1", "NK1", "PV1", "PV2", "IN1", "DG1", "ORC", "OBR", "OBX", "NTE"];

/// One segment: `fields[n]` is field n (MSH: the n-th `|`-separated piece), as repetitions of
/// components of subcomponents.
#[derive(Debug, Clone)]
struct Seg {
    id: String,
    fields: Vec<Vec<Vec<Vec<String>>>>,
}

impl Seg {
    fn new(id: &str) -> Self {
        Self { id: id.to_string(), fields: vec![vec![]] }
    }

    /// The repetitions of field `n` (MSH counted as the standard does).
    fn reps(&mut self, n: usize) -> &mut Vec<Vec<Vec<String>>> {
        let idx = if self.id == "MSH" { n.saturating_sub(1).max(2) } else { n };
        while self.fields.len() <= idx {
            self.fields.push(vec![]);
        }
        &mut self.fields[idx]
    }

    /// Sets (or, with `None`, only makes room for) the value at repetition `rep`, component
    /// `comp`, subcomponent `sub` (0-based) of field `n`.
    fn put(&mut self, n: usize, rep: usize, comp: usize, sub: usize, v: Option<&str>) {
        let reps = self.reps(n);
        while reps.len() <= rep {
            reps.push(vec![]);
        }
        let comps = &mut reps[rep];
        while comps.len() <= comp {
            comps.push(vec![]);
        }
        let subs = &mut comps[comp];
        while subs.len() <= sub {
            subs.push(String::new());
        }
        if let Some(v) = v {
            subs[sub] = escape(v);
        }
    }

    /// Sets a field from text already in HL7 form (`ADT^A01`).
    fn raw(&mut self, n: usize, text: &str) {
        *self.reps(n) = vec![text.split('^').map(|c| vec![c.to_string()]).collect()];
    }

    fn write(&self, out: &mut String) {
        out.push_str(&self.id);
        let start = if self.id == "MSH" {
            out.push_str("|^~\\&");
            2
        } else {
            1
        };
        let last = self.fields.iter().rposition(|f| !f.is_empty()).unwrap_or(0);
        for f in self.fields.iter().take(last + 1).skip(start) {
            out.push('|');
            let reps: Vec<String> = f
                .iter()
                .map(|comps| comps.iter().map(|subs| subs.join("&")).collect::<Vec<_>>().join("^"))
                .collect();
            out.push_str(&reps.join("~"));
        }
        out.push('\r');
    }
}

fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\E\\"),
            '|' => s.push_str("\\F\\"),
            '^' => s.push_str("\\S\\"),
            '&' => s.push_str("\\T\\"),
            '~' => s.push_str("\\R\\"),
            '\r' | '\n' => s.push_str("\\.br\\"),
            c => s.push(c),
        }
    }
    s
}

pub(crate) struct Hl7<'c> {
    paths: Vec<Hl7Path>,
    cols: &'c Columns,
    messages: u64,
}

impl<'c> Hl7<'c> {
    pub fn new(cols: &'c Columns) -> Result<Self, SynthError> {
        let paths = cols
            .cols
            .iter()
            .map(|c| Hl7Path::parse(&c.path).map_err(SynthError::Contract))
            .collect::<Result<_, _>>()?;
        Ok(Self { paths, cols, messages: 0 })
    }

    /// The message's segments before the contract's values: MSH, EVN (ADT) or ORC/OBR/OBX (ORU).
    fn skeleton(&self, rec: &Record) -> Vec<Seg> {
        let oru = rec.choice(usize::MAX, 2) == 1;
        let ts = format_date(rec.person.visit, "%Y%m%d%H%M%S");
        let mut msh = Seg::new("MSH");
        for (n, v) in
            [(3, "SYNTH_EHR"), (4, "SYNTHETIC"), (5, "LAKE"), (6, "COUNTY"), (11, "P"), (12, "2.5.1")]
        {
            msh.raw(n, v);
        }
        msh.raw(7, ts.as_str());
        msh.raw(9, if oru { "ORU^R01^ORU_R01" } else { "ADT^A01^ADT_A01" });
        msh.raw(10, &format!("SYN{:09}", rec.index + 1));
        let mut segs = vec![msh];
        let mut add = |id: &str, fields: &[(usize, &str)]| {
            let mut s = Seg::new(id);
            fields.iter().for_each(|(n, v)| s.raw(*n, v));
            segs.push(s);
        };
        if oru {
            add("PID", &[(1, "1")]);
            add("PV1", &[(1, "1"), (2, "O")]);
            add("ORC", &[(1, "RE")]);
            add("OBR", &[(1, "1"), (4, "2345-7^Glucose^LN"), (7, ts.as_str())]);
            add("OBX", &[(1, "1"), (2, "NM"), (3, "2345-7^Glucose^LN"), (5, "95"), (6, "mg/dL"), (11, "F")]);
        } else {
            add("EVN", &[(1, "A01"), (2, ts.as_str())]);
            add("PID", &[(1, "1")]);
            add("PV1", &[(1, "1"), (2, "O")]);
        }
        segs
    }

    /// The message of a record, with the contract's values at their paths.
    fn message(&self, rec: &Record, kind: Kind) -> String {
        let mut segs = self.skeleton(rec);
        for (k, p) in self.paths.iter().enumerate() {
            match &rec.vals[k] {
                Some(Val::List(items)) => {
                    for (n, item) in items.iter().enumerate() {
                        let s = segment(&mut segs, &p.segment, n);
                        s.raw(1, &(n + 1).to_string());
                        put(s, p, Some(item), &self.cols.cols[k].semantic, rec);
                    }
                }
                Some(_) => {
                    let v = rec.text(self.cols, k);
                    put(segment(&mut segs, &p.segment, 0), p, v.as_deref(), &self.cols.cols[k].semantic, rec)
                }
                None => put(segment(&mut segs, &p.segment, 0), p, None, &self.cols.cols[k].semantic, rec),
            }
        }
        if kind == Kind::Malformed {
            let at = segs.len().min(3);
            let mut bad = Seg::new("ZZ*");
            bad.raw(1, "unreadable");
            segs.insert(at, bad);
        }
        let mut text = String::with_capacity(512);
        segs.iter().for_each(|s| s.write(&mut text));
        text
    }
}

/// The `n`-th segment `id` of the message, made (in the standard order) when missing.
fn segment<'s>(segs: &'s mut Vec<Seg>, id: &str, n: usize) -> &'s mut Seg {
    let have: Vec<usize> = segs.iter().enumerate().filter(|(_, s)| s.id == id).map(|(i, _)| i).collect();
    if let Some(&i) = have.get(n) {
        return &mut segs[i];
    }
    let rank = |s: &str| ORDER.iter().position(|o| *o == s).unwrap_or(ORDER.len());
    let at = match have.last() {
        Some(&i) => i + 1,
        None => segs.iter().position(|s| rank(&s.id) > rank(id)).unwrap_or(segs.len()),
    };
    segs.insert(at, Seg::new(id));
    &mut segs[at]
}

/// Puts a value at `p` in `seg`; repetitions a selector skips over get other values first.
fn put(seg: &mut Seg, p: &Hl7Path, v: Option<&str>, semantic: &Semantic, rec: &Record) {
    let comp = p.component.unwrap_or(1) - 1;
    let sub = p.subcomponent.unwrap_or(1) - 1;
    let rep = match &p.repetition {
        None => 0,
        Some(Hl7Rep::Index(i)) => {
            for r in 0..i - 1 {
                if seg.reps(p.field).get(r).is_none_or(Vec::is_empty) {
                    seg.put(p.field, r, comp, sub, Some(&decoy(semantic, rec, r)));
                }
            }
            i - 1
        }
        Some(Hl7Rep::Where { component, value }) => {
            let reps = seg.reps(p.field);
            let matching = |c: &Vec<Vec<String>>| c.get(component - 1).and_then(|s| s.first()) == Some(value);
            match reps.iter().position(matching) {
                Some(r) => r,
                None => {
                    // another repetition first (another type), then the one the path selects
                    let r = reps.len();
                    seg.put(p.field, r, comp, sub, Some(&decoy(semantic, rec, r)));
                    seg.put(p.field, r, component - 1, 0, Some(other_code(value)));
                    seg.put(p.field, r + 1, component - 1, 0, Some(value));
                    r + 1
                }
            }
        }
    };
    seg.put(p.field, rep, comp, sub, v);
}

/// A value for a repetition the contract does not read: another id, the work phone.
fn decoy(semantic: &Semantic, rec: &Record, r: usize) -> String {
    match semantic {
        Semantic::Phone10 => crate::record::dashed_phone(&rec.person.work_phone),
        _ => format!("X{}{:07}", r + 1, rec.index + 1),
    }
}

/// The type code of the repetition placed before the selected one.
fn other_code(selected: &str) -> &'static str {
    match selected {
        "MR" => "SS",
        "PRN" => "WPN",
        "WPN" => "PRN",
        _ => "PI",
    }
}

impl FormatWriter for Hl7<'_> {
    fn begin(&mut self, out: &mut Out<'_>) -> Result<(), SynthError> {
        let ts = "20260101000000";
        Ok(out.text(&format!(
            "FHS|^~\\&|SYNTH_EHR|SYNTHETIC|LAKE|COUNTY|{ts}\rBHS|^~\\&|SYNTH_EHR|SYNTHETIC|LAKE|COUNTY|{ts}\r"
        ))?)
    }

    fn record(&mut self, out: &mut Out<'_>, rec: &Record, kind: Kind) -> Result<(), SynthError> {
        self.messages += 1;
        Ok(out.text(&self.message(rec, kind))?)
    }

    fn end(&mut self, out: &mut Out<'_>) -> Result<(), SynthError> {
        Ok(out.text(&format!("BTS|{}\rFTS|1\r", self.messages))?)
    }
}
