//! FHIR, JSON or XML (recognised by content): a Bundle (pretty or on one line), a single
//! resource, NDJSON of resources (Bundles in it are expanded), or the NDJSON files of one Bulk
//! Data export (`export`). One row per Encounter, joined with its Patient and its Conditions by
//! the contract's FHIR version (`FhirVersion::patient_ref` / `encounter_ref`): R4/R4B
//! `Encounter.subject` and `Condition.encounter`, STU3 `Condition.context`, DSTU2
//! `Encounter.patient`; and `Encounter.diagnosis[].condition`. References match an entry's
//! `fullUrl` or `Type/id` (absolute URLs and `_history` suffixes tolerated). Resources no row
//! uses (other types, patients without an encounter, conditions of none) are counted as
//! `skipped`. Fields are FHIRPath-subset paths evaluated over collections (`where`, `first`,
//! `extension`, `substring`, `join`). XML is converted to the JSON form first (`fhir_xml`).
//!
//! Not streamed: the join needs every resource, so the file is held in memory up to
//! `max_in_memory_bytes` (a clear error past it). Resources are indexed by their raw text (id,
//! type and references only) and parsed into exact values (`Jv`: numbers keep their text) one
//! row at a time, so memory stays close to the file's size. Nesting is capped at 128 levels.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::Read;

use contracts::{FhirStep, FhirVersion, ParquetType};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::decode::{io_error, Input};
use crate::error::TransformError;
use crate::job::{Job, Reader};
use crate::jv::{Jv, MAX_JSON_DEPTH};
use crate::outcome::{Malformed, Options, Outputs, Summary};
use crate::plan::{ColPlan, Plan, Raw, Src};
use crate::read::fhir_xml;
use crate::read::json::json_err;
use crate::sink::{run_records, Sink};

/// Where a resource is in the input, for reports: its NDJSON line, its bundle entry, its part of
/// an export (the index in the manifest's output list, never a file name).
#[derive(Debug, Clone, Copy, Default)]
struct Loc {
    line: Option<u64>,
    element: Option<u64>,
    part: Option<u32>,
}

impl Loc {
    fn malformed(self, reason: String) -> Malformed {
        Malformed { line: self.line, element: self.element, part: self.part, reason, raw: None }
    }
}

/// A resource's identity and references, read without building its whole value; `raw` is its
/// JSON text (parsed again only when a row needs it).
struct Res<'t> {
    raw: &'t str,
    rt: String,
    keys: Vec<String>,
    subject: Option<String>,
    encounter: Option<String>,
    diagnoses: Vec<String>,
    at: Loc,
}

impl<'t> Res<'t> {
    /// A resource from its head: the version says which reference elements join it.
    fn new(raw: &'t str, h: Head, full_url: Option<String>, v: FhirVersion, at: Loc) -> Result<Self, String> {
        let rt = h.rt.ok_or("not a FHIR resource (no resourceType)")?;
        let mut keys: Vec<String> = full_url.into_iter().collect();
        if let Some(id) = &h.id {
            keys.push(format!("{rt}/{id}"));
        }
        let reference = |name: &str| {
            let r = match name {
                "patient" => h.patient.as_ref(),
                "subject" => h.subject.as_ref(),
                "context" => h.context.as_ref(),
                _ => h.encounter.as_ref(),
            };
            r.and_then(|r| r.reference.clone())
        };
        Ok(Res {
            raw,
            keys,
            subject: reference(v.patient_ref()),
            encounter: reference(v.encounter_ref()),
            diagnoses: h
                .diagnosis
                .unwrap_or_default()
                .into_iter()
                .filter_map(|d| d.condition.and_then(|c| c.reference))
                .collect(),
            rt,
            at,
        })
    }
}

#[derive(Deserialize)]
struct BundleDoc<'t> {
    #[serde(rename = "resourceType", default)]
    rt: Option<String>,
    #[serde(borrow, default)]
    entry: Option<Vec<&'t RawValue>>,
}

#[derive(Deserialize)]
struct EntryDoc<'t> {
    #[serde(rename = "fullUrl", default)]
    full_url: Option<String>,
    #[serde(borrow, default)]
    resource: Option<&'t RawValue>,
}

#[derive(Deserialize)]
struct RefDoc {
    #[serde(default)]
    reference: Option<String>,
}

#[derive(Deserialize)]
struct DiagDoc {
    #[serde(default)]
    condition: Option<RefDoc>,
}

/// What the index reads of a resource: its type, id and every element a version may join by.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "resourceType", default)]
    rt: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    subject: Option<RefDoc>,
    #[serde(default)]
    patient: Option<RefDoc>,
    #[serde(default)]
    encounter: Option<RefDoc>,
    #[serde(default)]
    context: Option<RefDoc>,
    #[serde(default)]
    diagnosis: Option<Vec<DiagDoc>>,
}

fn head<'t>(raw: &'t str, full_url: Option<String>, v: FhirVersion, at: Loc) -> Result<Res<'t>, String> {
    if !raw.trim_start().starts_with('{') {
        return Err("not a FHIR resource (no resourceType)".into());
    }
    // unmapped values are skipped unchecked here (a number out of f64 range is fine)
    let h: Head = serde_json::from_str(raw).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => "a FHIR resource with fields of an unexpected type".to_string(),
        _ => format!("invalid JSON ({})", json_err(&e)),
    })?;
    Res::new(raw, h, full_url, v, at)
}

/// One Bundle document (`line`: its NDJSON line, or none for a whole-file bundle).
fn bundle<'t>(
    doc: &'t str,
    at: Loc,
    v: FhirVersion,
    all: &mut Vec<Res<'t>>,
    bad: &mut Vec<Malformed>,
) -> Result<(), TransformError> {
    let b: BundleDoc<'_> = serde_json::from_str(doc).map_err(|e| {
        TransformError::Structure(format!(
            "the FHIR bundle is not valid JSON ({} at line {} column {})",
            json_err(&e),
            e.line(),
            e.column()
        ))
    })?;
    match b.rt.as_deref() {
        Some("Bundle") => {}
        // a single resource (a Patient, an Encounter) on its own
        Some(_) if at.line.is_none() => {
            match head(doc, None, v, at) {
                Ok(r) => all.push(r),
                Err(reason) => bad.push(at.malformed(reason)),
            }
            return Ok(());
        }
        _ => {
            return Err(TransformError::Structure(
                "the file is not a FHIR Bundle, a FHIR resource or NDJSON of resources".into(),
            ))
        }
    }
    for (k, e) in b.entry.unwrap_or_default().into_iter().enumerate() {
        let at = Loc { element: Some(k as u64), ..at };
        let res = serde_json::from_str::<EntryDoc<'_>>(e.get())
            .ok()
            .and_then(|en| en.resource.map(|r| (r, en.full_url)))
            .ok_or_else(|| "bundle entry without a resource".to_string())
            .and_then(|(r, full)| head(r.get(), full, v, at));
        match res {
            Ok(r) => all.push(r),
            Err(reason) => bad.push(at.malformed(reason)),
        }
    }
    Ok(())
}

pub(crate) struct Fhir {
    pub version: FhirVersion,
}

impl Reader for Fhir {
    fn read(&self, job: Job<'_, '_>) -> Result<Summary, TransformError> {
        let Job { contract, plan, input, out, opts } = job;
        let bytes = read_capped(input, contract.limits.max_in_memory_bytes)?;
        let text = utf8(&bytes)?;
        // XML is converted to FHIR's JSON form, one resource at a time
        let xml = text.trim_start().starts_with('<');
        let converted;
        let text = if xml {
            converted = fhir_xml::to_json(text, &contract.limits)?;
            converted.as_str()
        } else {
            text
        };
        let (all, bad_records) = resources(text, self.version, xml)?;
        let mut summary = join(&plan, out, opts, &all, bad_records)?;
        summary.bytes = bytes.len() as u64;
        Ok(summary)
    }
}

/// The text of a decoded input (a byte-order mark dropped); empty is an error.
fn utf8(bytes: &[u8]) -> Result<&str, TransformError> {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(body).map_err(|e| {
        TransformError::Encoding(format!("the FHIR file is not valid UTF-8 (byte {})", e.valid_up_to()))
    })?;
    if text.trim().is_empty() {
        return Err(TransformError::EmptyInput);
    }
    Ok(text)
}

/// Rows of every encounter of `all`, joined; `bad_records` are reported first.
fn join(
    plan: &Plan,
    out: Outputs<'_>,
    opts: &Options,
    all: &[Res<'_>],
    bad_records: Vec<Malformed>,
) -> Result<Summary, TransformError> {
    let index = Index::new(all);
    run_records(plan, out, opts, |sink| {
        for m in bad_records {
            sink.malformed(m)?;
        }
        let used = rows(plan, all, &index, sink)?;
        // other resource types, and patients and conditions no encounter row joined
        sink.skipped = index.skipped + (index.joinable - used);
        Ok(())
    })
}

/// One part of a Bulk Data export: its resource type (from the manifest) and its decoded text.
pub(crate) struct Part {
    pub resource_type: String,
    pub text: Vec<u8>,
}

/// The parts of one Bulk Data export, joined as one file: each part is NDJSON of its manifest
/// type (a line of another type is malformed); lines are counted within their part and reported
/// with the part's index in the manifest.
pub(crate) fn export(
    version: FhirVersion,
    plan: &Plan,
    parts: &[Part],
    out: Outputs<'_>,
    opts: &Options,
) -> Result<Summary, TransformError> {
    let mut all = Vec::new();
    let mut bad = Vec::new();
    for (n, p) in parts.iter().enumerate() {
        let body = p.text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&p.text);
        let text = std::str::from_utf8(body).map_err(|e| {
            TransformError::Encoding(format!(
                "part {n} of the export ({}) is not valid UTF-8 (byte {})",
                p.resource_type,
                e.valid_up_to()
            ))
        })?;
        let part = Some(n as u32);
        ndjson(text, version, part, Some(&p.resource_type), &mut all, &mut bad);
    }
    let mut summary = join(plan, out, opts, &all, bad)?;
    summary.bytes = parts.iter().map(|p| p.text.len() as u64).sum();
    Ok(summary)
}

/// The whole input, refused past `cap` bytes (the join needs every resource at once).
fn read_capped(input: Input<'_>, cap: u64) -> Result<Vec<u8>, TransformError> {
    let mut bytes = Vec::new();
    input.take(cap + 1).read_to_end(&mut bytes).map_err(io_error)?;
    if bytes.len() as u64 > cap {
        return Err(TransformError::Encoding(format!(
            "the FHIR file is larger than max_in_memory_bytes ({cap} bytes): it is joined in memory; split it or raise the limit"
        )));
    }
    Ok(bytes)
}

/// Every resource of the file, and the entries or lines that are not one. `doc`: one document
/// (converted from XML), never NDJSON.
fn resources(
    text: &str,
    v: FhirVersion,
    doc: bool,
) -> Result<(Vec<Res<'_>>, Vec<Malformed>), TransformError> {
    // NDJSON when the first line is a JSON value on its own; else one document.
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let is_ndjson = !doc && serde_json::from_str::<&RawValue>(first).is_ok();
    let mut bad_records: Vec<Malformed> = Vec::new();
    let mut all: Vec<Res<'_>> = Vec::new();
    if is_ndjson {
        ndjson(text, v, None, None, &mut all, &mut bad_records);
    } else {
        bundle(text, Loc::default(), v, &mut all, &mut bad_records)?;
    }
    Ok((all, bad_records))
}

/// The resources of NDJSON text (a Bundle line is expanded); with `expect`, a line of another
/// resource type is malformed (an export part holds one type).
fn ndjson<'t>(
    text: &'t str,
    v: FhirVersion,
    part: Option<u32>,
    expect: Option<&str>,
    all: &mut Vec<Res<'t>>,
    bad: &mut Vec<Malformed>,
) {
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = Loc { line: Some(i as u64 + 1), element: None, part };
        match head(line, None, v, at) {
            Ok(r) if expect.is_some_and(|t| t != r.rt) => {
                let want = expect.unwrap_or_default();
                bad.push(at.malformed(format!("a {} in the export's {want} file", r.rt)));
            }
            Ok(r) if r.rt == "Bundle" => {
                if let Err(e) = bundle(line, at, v, all, bad) {
                    bad.push(at.malformed(e.to_string()));
                }
            }
            Ok(r) => all.push(r),
            Err(reason) => bad.push(at.malformed(reason)),
        }
    }
}

/// The resources by reference: patients, conditions and the conditions of each encounter.
struct Index {
    patients: HashMap<String, usize>,
    cond_by_ref: HashMap<String, usize>,
    conds_of_enc: HashMap<String, Vec<usize>>,
    encounters: Vec<usize>,
    /// Resources of other types.
    skipped: u64,
    /// Patients and Conditions (which only count when an encounter joins them).
    joinable: u64,
}

impl Index {
    fn new(all: &[Res<'_>]) -> Self {
        let mut ix = Index {
            patients: HashMap::new(),
            cond_by_ref: HashMap::new(),
            conds_of_enc: HashMap::new(),
            encounters: Vec::new(),
            skipped: 0,
            joinable: 0,
        };
        for (i, r) in all.iter().enumerate() {
            match r.rt.as_str() {
                "Patient" => {
                    ix.joinable += 1;
                    r.keys.iter().for_each(|k| {
                        ix.patients.entry(k.clone()).or_insert(i);
                    });
                }
                "Condition" => {
                    ix.joinable += 1;
                    r.keys.iter().for_each(|k| {
                        ix.cond_by_ref.entry(k.clone()).or_insert(i);
                    });
                    if let Some(e) = &r.encounter {
                        ix.conds_of_enc.entry(norm_ref(e)).or_default().push(i);
                    }
                }
                "Encounter" => ix.encounters.push(i),
                _ => ix.skipped += 1,
            }
        }
        ix
    }

    fn find(map: &HashMap<String, usize>, r: &str) -> Option<usize> {
        map.get(r).or_else(|| map.get(&norm_ref(r))).copied()
    }

    /// The conditions of an encounter (by their `encounter` or its `diagnosis`), in file order.
    fn conditions(&self, enc: &Res<'_>) -> Vec<usize> {
        let mut conds: Vec<usize> = Vec::new();
        for key in &enc.keys {
            if let Some(v) = self.conds_of_enc.get(key).or_else(|| self.conds_of_enc.get(&norm_ref(key))) {
                conds.extend(v);
            }
        }
        conds.extend(enc.diagnoses.iter().filter_map(|r| Self::find(&self.cond_by_ref, r)));
        conds.sort_unstable();
        conds.dedup();
        conds
    }
}

/// Parses resources whole when a row needs them; one that cannot be read (nested past the cap)
/// is reported once, as malformed, with its type, never silently left out.
struct Values<'a, 't> {
    all: &'a [Res<'t>],
    reported: HashSet<usize>,
}

impl Values<'_, '_> {
    fn get(&mut self, i: usize, sink: &mut Sink<'_>) -> Result<Option<Jv>, TransformError> {
        let r = &self.all[i];
        match Jv::parse(r.raw, MAX_JSON_DEPTH) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                if self.reported.insert(i) {
                    sink.malformed(r.at.malformed(format!("a {} that cannot be read whole ({e})", r.rt)))?;
                }
                Ok(None)
            }
        }
    }
}

/// One row per encounter, joined with its patient and conditions; returns how many distinct
/// patients and conditions the rows joined.
fn rows(plan: &Plan, all: &[Res<'_>], ix: &Index, sink: &mut Sink<'_>) -> Result<u64, TransformError> {
    let mut used = HashSet::new();
    let mut cells: Vec<Cell> = Vec::with_capacity(plan.cols.len());
    let mut values = Values { all, reported: HashSet::new() };
    let mut last_patient: Option<(usize, Option<Jv>)> = None;
    for &ei in &ix.encounters {
        let enc = &all[ei];
        let Some(enc_v) = values.get(ei, sink)? else { continue };
        let pi = enc.subject.as_deref().and_then(|r| Index::find(&ix.patients, r));
        if let Some(pi) = pi {
            if last_patient.as_ref().map(|(i, _)| *i) != Some(pi) {
                last_patient = Some((pi, values.get(pi, sink)?));
            }
        }
        let patient: Option<&Jv> = pi.and_then(|_| last_patient.as_ref().and_then(|(_, v)| v.as_ref()));
        let conds = ix.conditions(enc);
        used.extend(pi.into_iter().chain(conds.iter().copied()));
        let mut cond_vs: Vec<Jv> = Vec::with_capacity(conds.len());
        for &ci in &conds {
            cond_vs.extend(values.get(ci, sink)?);
        }
        cells.clear();
        cells.extend(plan.cols.iter().map(|col| cell(col, &enc_v, patient, &cond_vs)));
        let key = xxhash_rust::xxh3::xxh3_128(enc.raw.as_bytes());
        sink.push(key, |i, _| match &cells[i] {
            Cell::Null => Raw::Null,
            Cell::Val(v) => Raw::Json(v),
        })?;
    }
    Ok(used.len() as u64)
}

/// A column's value for one encounter: its path's resource says where it is read from. A
/// Condition path is evaluated on each condition: a list column collects from all, a scalar
/// takes the first that has a value.
fn cell(col: &ColPlan, enc: &Jv, patient: Option<&Jv>, conds: &[Jv]) -> Cell {
    let Src::Fhir(p) = &col.src else { return Cell::Null };
    let list = col.ty == ParquetType::ListString;
    let items = match p.resource.as_str() {
        "Encounter" => eval(enc, &p.steps),
        "Patient" => patient.map_or(vec![], |pv| eval(pv, &p.steps)),
        _ if list => {
            let items: Vec<Jv> = conds.iter().flat_map(|c| eval(c, &p.steps)).map(Cow::into_owned).collect();
            return if items.is_empty() { Cell::Null } else { Cell::Val(Jv::Arr(items)) };
        }
        _ => conds.iter().map(|c| eval(c, &p.steps)).find(|o| !o.is_empty()).unwrap_or_default(),
    };
    match items.len() {
        0 => Cell::Null,
        1 if !list => Cell::Val(items.into_iter().next().map(Cow::into_owned).unwrap_or(Jv::Null)),
        // several values for one cell: an array, which the column's rule judges
        _ => Cell::Val(Jv::Arr(items.into_iter().map(Cow::into_owned).collect())),
    }
}

/// Evaluates FHIRPath-subset `steps` on a resource: a collection (arrays flatten into it, nulls
/// drop out); `substring` and `join` make new strings.
fn eval<'v>(resource: &'v Jv, steps: &[FhirStep]) -> Vec<Cow<'v, Jv>> {
    let mut items: Vec<Cow<'v, Jv>> = vec![Cow::Borrowed(resource)];
    for step in steps {
        items = match step {
            FhirStep::Key(k) => children(&items, k),
            FhirStep::Index(i) => items.into_iter().nth(*i).into_iter().collect(),
            FhirStep::First => items.into_iter().next().into_iter().collect(),
            FhirStep::Last => items.into_iter().last().into_iter().collect(),
            FhirStep::Where { path, value } => items
                .into_iter()
                .filter(|it| {
                    let mut found = vec![Cow::Borrowed(it.as_ref())];
                    for k in path {
                        found = children(&found, k);
                    }
                    found.iter().any(|f| f.scalar_text() == Some(value.as_str()))
                })
                .collect(),
            FhirStep::Extension(url) => children(&items, "extension")
                .into_iter()
                .filter(|e| e.get("url").and_then(Jv::as_str) == Some(url.as_str()))
                .collect(),
            FhirStep::Substring { start, length } => items
                .iter()
                .filter_map(|it| it.as_str())
                .map(|s| s.chars().skip(*start).take(length.unwrap_or(usize::MAX)).collect::<String>())
                .filter(|s| !s.is_empty())
                .map(|s| Cow::Owned(Jv::Str(s)))
                .collect(),
            FhirStep::Join(sep) => {
                let parts: Vec<&str> = items.iter().filter_map(|v| v.scalar_text()).collect();
                vec![Cow::Owned(Jv::Str(parts.join(sep)))]
            }
        };
    }
    items
}

/// Every value of element `k` of the items, arrays flattened.
fn children<'v>(items: &[Cow<'v, Jv>], k: &str) -> Vec<Cow<'v, Jv>> {
    let mut out = Vec::new();
    for it in items {
        let found = match it {
            Cow::Borrowed(b) => {
                let b: &'v Jv = b;
                b.get(k)
            }
            // a made string has no elements
            Cow::Owned(_) => None,
        };
        match found {
            Some(Jv::Arr(a)) => out.extend(a.iter().filter(|v| !v.is_null()).map(Cow::Borrowed)),
            Some(Jv::Null) | None => {}
            Some(v) => out.push(Cow::Borrowed(v)),
        }
    }
    out
}

enum Cell {
    Null,
    Val(Jv),
}

/// `Type/id` of a reference (absolute URL and `_history/n` dropped); `urn:` references as is.
fn norm_ref(r: &str) -> String {
    if r.starts_with("urn:") {
        return r.to_string();
    }
    let r = r.split("/_history").next().unwrap_or(r);
    let parts: Vec<&str> = r.rsplitn(3, '/').collect();
    match parts.as_slice() {
        [id, ty, ..] => format!("{ty}/{id}"),
        _ => r.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn references_normalise() {
        assert_eq!(norm_ref("Patient/1"), "Patient/1");
        assert_eq!(norm_ref("http://h/fhir/Patient/1/_history/2"), "Patient/1");
        assert_eq!(norm_ref("urn:uuid:abc"), "urn:uuid:abc");
    }

    #[test]
    fn each_version_joins_by_its_own_reference_elements() {
        let enc = r#"{"resourceType":"Encounter","id":"e","subject":{"reference":"Patient/s"},
            "patient":{"reference":"Patient/p"},"diagnosis":[{"condition":{"reference":"Condition/c"}}]}"#;
        let cond = r#"{"resourceType":"Condition","encounter":{"reference":"Encounter/a"},
            "context":{"reference":"Encounter/b"}}"#;
        for (v, patient, encounter) in [
            (FhirVersion::Dstu2, "Patient/p", "Encounter/a"),
            (FhirVersion::Stu3, "Patient/s", "Encounter/b"),
            (FhirVersion::R4, "Patient/s", "Encounter/a"),
            (FhirVersion::R4b, "Patient/s", "Encounter/a"),
        ] {
            let e = head(enc, None, v, Loc::default()).unwrap();
            assert_eq!(e.subject.as_deref(), Some(patient), "{v:?}");
            assert_eq!(e.diagnoses, ["Condition/c"]);
            let c = head(cond, None, v, Loc::default()).unwrap();
            assert_eq!(c.encounter.as_deref(), Some(encounter), "{v:?}");
        }
    }

    #[test]
    fn substring_takes_characters_of_each_string() {
        let p = Jv::parse(r#"{"name":[{"given":["Ana","Émile"]}]}"#, 8).unwrap();
        let path = contracts::FhirPath::parse("Patient.name.given[1].substring(0, 1)").unwrap();
        let got: Vec<String> = eval(&p, &path.steps).iter().map(|v| v.to_string()).collect();
        assert_eq!(got, ["\"É\""]);
        let path = contracts::FhirPath::parse("Patient.name.given.substring(1).join('-')").unwrap();
        let got: Vec<String> = eval(&p, &path.steps).iter().map(|v| v.to_string()).collect();
        assert_eq!(got, ["\"na-mile\""]);
        let path = contracts::FhirPath::parse("Patient.name.given.substring(9, 1)").unwrap();
        assert!(eval(&p, &path.steps).is_empty(), "a start past the end gives nothing");
    }
}
