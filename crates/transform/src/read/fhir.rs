//! FHIR JSON: a Bundle (pretty or on one line), a single resource, or NDJSON of resources
//! (Bundles in it are expanded). One row per Encounter, joined with its Patient and its
//! Conditions by the contract's FHIR version: R4/R4B `Encounter.subject` and
//! `Condition.encounter`, STU3 `Condition.context`, DSTU2 `Encounter.patient`; and
//! `Encounter.diagnosis[].condition`. References match an entry's `fullUrl` or `Type/id`
//! (absolute URLs and `_history` suffixes tolerated). Resources no row uses (other types,
//! patients without an encounter, conditions of none) are counted as `skipped`. Fields are
//! FHIRPath-subset paths evaluated over collections (`where`, `first`, `extension`, `join`).
//!
//! Not streamed: the join needs every resource, so the file is held in memory up to
//! `max_in_memory_bytes` (a clear error past it). Resources are indexed by their raw text (id,
//! type and references only) and parsed into values one row at a time, so memory stays close
//! to the file's size. serde_json's recursion limit (128) bounds nesting.

use std::collections::HashMap;
use std::io::Read;

use contracts::{FhirStep, FhirVersion, ParquetType};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::decode::{io_error, Input};
use crate::error::TransformError;
use crate::job::{Job, Reader};
use crate::outcome::{Malformed, Summary};
use crate::plan::{ColPlan, Plan, Raw, Src};
use crate::read::json::json_err;
use crate::sink::{run_records, Sink};

/// A resource's identity and references, read without building its whole value; `raw` is its
/// text in the file (parsed again only when a row needs it).
struct Res<'t> {
    raw: &'t str,
    rt: String,
    keys: Vec<String>,
    subject: Option<String>,
    encounter: Option<String>,
    diagnoses: Vec<String>,
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

fn head<'t>(raw: &'t str, full_url: Option<String>, v: FhirVersion) -> Result<Res<'t>, String> {
    if !raw.trim_start().starts_with('{') {
        return Err("not a FHIR resource (no resourceType)".into());
    }
    let h: Head = serde_json::from_str(raw).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => "a FHIR resource with fields of an unexpected type".to_string(),
        _ => format!("invalid JSON ({})", json_err(&e)),
    })?;
    let rt = h.rt.ok_or("not a FHIR resource (no resourceType)")?;
    let mut keys: Vec<String> = full_url.into_iter().collect();
    if let Some(id) = &h.id {
        keys.push(format!("{rt}/{id}"));
    }
    Ok(Res {
        raw,
        rt,
        keys,
        subject: if v == FhirVersion::Dstu2 { h.patient } else { h.subject }.and_then(|r| r.reference),
        encounter: if v == FhirVersion::Stu3 { h.context } else { h.encounter }.and_then(|r| r.reference),
        diagnoses: h
            .diagnosis
            .unwrap_or_default()
            .into_iter()
            .filter_map(|d| d.condition.and_then(|c| c.reference))
            .collect(),
    })
}

/// One Bundle document (`line`: its NDJSON line, or none for a whole-file bundle).
fn bundle<'t>(
    doc: &'t str,
    line: Option<u64>,
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
        Some(_) if line.is_none() => {
            match head(doc, None, v) {
                Ok(r) => all.push(r),
                Err(reason) => bad.push(Malformed { line: None, element: None, reason, raw: None }),
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
        let (l, element) = (line, Some(k as u64));
        let res = serde_json::from_str::<EntryDoc<'_>>(e.get())
            .ok()
            .and_then(|en| en.resource.map(|r| (r, en.full_url)))
            .ok_or_else(|| "bundle entry without a resource".to_string())
            .and_then(|(r, full)| head(r.get(), full, v));
        match res {
            Ok(r) => all.push(r),
            Err(reason) => bad.push(Malformed { line: l, element, reason, raw: None }),
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
        let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let text = std::str::from_utf8(body).map_err(|e| {
            TransformError::Encoding(format!("the FHIR file is not valid UTF-8 (byte {})", e.valid_up_to()))
        })?;
        if text.trim().is_empty() {
            return Err(TransformError::EmptyInput);
        }
        let (all, bad_records) = resources(text, self.version)?;
        let index = Index::new(&all);
        let mut summary = run_records(&plan, out, opts, |sink| {
            for m in bad_records {
                sink.malformed(m)?;
            }
            let used = rows(&plan, &all, &index, sink)?;
            // other resource types, and patients and conditions no encounter row joined
            sink.skipped = index.skipped + (index.joinable - used);
            Ok(())
        })?;
        summary.bytes = bytes.len() as u64;
        Ok(summary)
    }
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

/// Every resource of the file, and the entries or lines that are not one.
fn resources(text: &str, v: FhirVersion) -> Result<(Vec<Res<'_>>, Vec<Malformed>), TransformError> {
    // NDJSON when the first line is a JSON value on its own; else one document.
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let ndjson = serde_json::from_str::<&RawValue>(first).is_ok();
    let mut bad_records: Vec<Malformed> = Vec::new();
    let mut all: Vec<Res<'_>> = Vec::new();
    if !ndjson {
        bundle(text, None, v, &mut all, &mut bad_records)?;
        return Ok((all, bad_records));
    }
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let n = i as u64 + 1;
        match head(line, None, v) {
            Ok(r) if r.rt == "Bundle" => {
                if let Err(e) = bundle(line, Some(n), v, &mut all, &mut bad_records) {
                    bad_records.push(Malformed {
                        line: Some(n),
                        element: None,
                        reason: e.to_string(),
                        raw: None,
                    });
                }
            }
            Ok(r) => all.push(r),
            Err(reason) => bad_records.push(Malformed { line: Some(n), element: None, reason, raw: None }),
        }
    }
    Ok((all, bad_records))
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

/// One row per encounter, joined with its patient and conditions; returns how many distinct
/// patients and conditions the rows joined.
fn rows(plan: &Plan, all: &[Res<'_>], ix: &Index, sink: &mut Sink<'_>) -> Result<u64, TransformError> {
    let mut used = std::collections::HashSet::new();
    let mut cells: Vec<Cell> = Vec::with_capacity(plan.cols.len());
    let parse = |i: usize| serde_json::from_str::<Value>(all[i].raw).ok();
    let mut last_patient: Option<(usize, Option<Value>)> = None;
    for &ei in &ix.encounters {
        let enc = &all[ei];
        let Some(enc_v) = parse(ei) else {
            // its head was readable but the whole is not (nested past serde_json's limit)
            sink.malformed(Malformed {
                line: None,
                element: None,
                reason: "an Encounter that cannot be read whole (nested too deep)".into(),
                raw: None,
            })?;
            continue;
        };
        let pi = enc.subject.as_deref().and_then(|r| Index::find(&ix.patients, r));
        if let Some(pi) = pi {
            if last_patient.as_ref().map(|(i, _)| *i) != Some(pi) {
                last_patient = Some((pi, parse(pi)));
            }
        }
        let patient: Option<&Value> = pi.and_then(|_| last_patient.as_ref().and_then(|(_, v)| v.as_ref()));
        let conds = ix.conditions(enc);
        used.extend(pi.into_iter().chain(conds.iter().copied()));
        let cond_vs: Vec<Value> = conds.iter().filter_map(|&ci| parse(ci)).collect();
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
fn cell(col: &ColPlan, enc: &Value, patient: Option<&Value>, conds: &[Value]) -> Cell {
    let Src::Fhir(p) = &col.src else { return Cell::Null };
    let list = col.ty == ParquetType::ListString;
    let out = match p.resource.as_str() {
        "Encounter" => eval(vec![enc], &p.steps),
        "Patient" => patient.map_or(Out::Items(vec![]), |pv| eval(vec![pv], &p.steps)),
        _ if list => {
            let mut items = Vec::new();
            for c in conds {
                match eval(vec![c], &p.steps) {
                    Out::Items(v) => items.extend(v.into_iter().cloned()),
                    Out::Joined(s) => items.push(Value::String(s)),
                }
            }
            return if items.is_empty() { Cell::Null } else { Cell::Val(Value::Array(items)) };
        }
        _ => conds
            .iter()
            .map(|c| eval(vec![c], &p.steps))
            .find(|o| !matches!(o, Out::Items(v) if v.is_empty()))
            .unwrap_or(Out::Items(vec![])),
    };
    match out {
        Out::Joined(s) => Cell::Val(Value::String(s)),
        Out::Items(v) if v.is_empty() => Cell::Null,
        Out::Items(v) if v.len() == 1 && !list => Cell::Val(v[0].clone()),
        // several values for one cell: an array, which the column's rule judges
        Out::Items(v) => Cell::Val(Value::Array(v.into_iter().cloned().collect())),
    }
}

/// What a FHIR path yields: a collection, or one joined string.
enum Out<'v> {
    Items(Vec<&'v Value>),
    Joined(String),
}

/// Evaluates FHIRPath-subset `steps` on a collection (arrays flatten into it, nulls drop out).
fn eval<'v>(mut items: Vec<&'v Value>, steps: &[FhirStep]) -> Out<'v> {
    for step in steps {
        items = match step {
            FhirStep::Key(k) => children(&items, k),
            FhirStep::Index(i) => items.get(*i).copied().into_iter().collect(),
            FhirStep::First => items.first().copied().into_iter().collect(),
            FhirStep::Last => items.last().copied().into_iter().collect(),
            FhirStep::Where { path, value } => items
                .into_iter()
                .filter(|it| {
                    let mut found = vec![*it];
                    for k in path {
                        found = children(&found, k);
                    }
                    found.iter().any(|f| scalar_text(f).as_deref() == Some(value.as_str()))
                })
                .collect(),
            FhirStep::Extension(url) => children(&items, "extension")
                .into_iter()
                .filter(|e| e.get("url").and_then(Value::as_str) == Some(url.as_str()))
                .collect(),
            FhirStep::Join(sep) => {
                let parts: Vec<String> = items.iter().filter_map(|v| scalar_text(v)).collect();
                return Out::Joined(parts.join(sep));
            }
        };
    }
    Out::Items(items)
}

/// Every value of element `k` of the items, arrays flattened.
fn children<'v>(items: &[&'v Value], k: &str) -> Vec<&'v Value> {
    let mut out = Vec::new();
    for it in items {
        match it.get(k) {
            Some(Value::Array(a)) => out.extend(a.iter().filter(|v| !v.is_null())),
            Some(Value::Null) | None => {}
            Some(v) => out.push(v),
        }
    }
    out
}

/// A string, number or boolean as text (objects and arrays have none).
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

enum Cell {
    Null,
    Val(Value),
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
    use super::norm_ref;

    #[test]
    fn references_normalise() {
        assert_eq!(norm_ref("Patient/1"), "Patient/1");
        assert_eq!(norm_ref("http://h/fhir/Patient/1/_history/2"), "Patient/1");
        assert_eq!(norm_ref("urn:uuid:abc"), "urn:uuid:abc");
    }
}
