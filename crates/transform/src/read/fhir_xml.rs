//! FHIR XML to FHIR JSON, by the rules of FHIR's XML and JSON representations, so the JSON
//! reader's index, join and paths apply unchanged (`Patient.name[0].given[0]` reads the same in
//! both):
//! - a primitive is its `value` attribute: `<birthDate value="1984-03-07"/>` becomes
//!   `"birthDate": "1984-03-07"`; booleans (`active`, `preferred`, `userSelected`, names ending
//!   in `Boolean`) become JSON booleans and integers and decimals (names ending in `Integer`,
//!   `Decimal`, `PositiveInt`, `UnsignedInt`; `rank`, `sequence`, `total`) JSON numbers with
//!   their text kept; every other value stays a string, digits and all;
//! - a primitive's `id` attribute and `extension` children go to `_name` (`_birthDate`), as in
//!   JSON; a primitive with extensions and no value has only `_name`;
//! - an element's `id` and an extension's `url` attribute become members;
//! - elements that repeat become arrays, and so do the elements of [`ALWAYS_ARRAY`] (0..* in
//!   FHIR) when they occur once, so a rendered value matches the JSON form;
//! - an element holding a resource (`resource`, `contained`, `outcome`) becomes that resource's
//!   object with its `resourceType`; the root element is the Bundle or the single resource;
//! - the narrative's xhtml `div` becomes its XML text, as FHIR JSON holds it;
//! - namespace prefixes are ignored; text between elements is layout.
//!
//! Hardened like the XML reader: a DTD (`<!DOCTYPE>`) is refused outright (no external entity,
//! no entity expansion), only the predefined entities and character references are decoded,
//! nesting deeper than the contract's `max_depth` is an error. A Bundle is converted one
//! top-level element (one `entry`) at a time.

use contracts::Limits;
use quick_xml::events::{BytesStart, Event};
use quick_xml::XmlVersion;

use crate::error::TransformError;
use crate::jv::Jv;

/// Elements that are arrays in FHIR JSON even when they occur once: `*.name` for any parent,
/// else the path from the resource (`Encounter.participant.type`). Covers Bundle, Patient,
/// Encounter, Condition, Organization and the common datatypes (HumanName, Address,
/// CodeableConcept, Meta).
pub const ALWAYS_ARRAY: &[&str] = &[
    "*.extension",
    "*.modifierExtension",
    "*.contained",
    "*.identifier",
    "*.telecom",
    "*.coding",
    "*.given",
    "*.prefix",
    "*.suffix",
    "*.line",
    "*.profile",
    "*.tag",
    "*.security",
    "Bundle.link",
    "Bundle.entry",
    "Bundle.entry.link",
    "Patient.name",
    "Patient.address",
    "Patient.contact",
    "Patient.contact.relationship",
    "Patient.communication",
    "Patient.generalPractitioner",
    "Patient.link",
    "Patient.photo",
    "Encounter.statusHistory",
    "Encounter.classHistory",
    "Encounter.type",
    "Encounter.episodeOfCare",
    "Encounter.basedOn",
    "Encounter.participant",
    "Encounter.participant.type",
    "Encounter.reason",
    "Encounter.reasonCode",
    "Encounter.reasonReference",
    "Encounter.indication",
    "Encounter.diagnosis",
    "Encounter.account",
    "Encounter.location",
    "Encounter.hospitalization.dietPreference",
    "Encounter.hospitalization.specialCourtesy",
    "Encounter.hospitalization.specialArrangement",
    "Condition.category",
    "Condition.bodySite",
    "Condition.stage",
    "Condition.evidence",
    "Condition.evidence.code",
    "Condition.evidence.detail",
    "Condition.note",
    "Organization.type",
    "Organization.alias",
    "Organization.address",
    "Organization.contact",
];

const BOOLEANS: &[&str] = &["active", "preferred", "userSelected"];
const NUMBERS: &[&str] = &["rank", "sequence", "total"];
const NUMBER_SUFFIXES: &[&str] = &["Integer", "Decimal", "PositiveInt", "UnsignedInt"];

fn always_array(path: &str, name: &str) -> bool {
    ALWAYS_ARRAY.iter().any(|e| match e.strip_prefix("*.") {
        Some(n) => n == name,
        None => e.len() == path.len() + 1 + name.len() && e.starts_with(path) && e.ends_with(name),
    })
}

/// A resource type or an element: resource types are capitalised, elements are not.
fn is_resource(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
}

fn local(name: &[u8]) -> String {
    let n = match name.iter().rposition(|&b| b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    };
    String::from_utf8_lossy(n).into_owned()
}

fn structure(pos: u64, what: &str) -> TransformError {
    TransformError::Structure(format!("the FHIR XML {what} (at byte {pos})"))
}

/// An element as read: its attributes and children, or the raw text of an xhtml `div`.
struct XNode {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<XNode>,
    raw: Option<String>,
}

/// The FHIR JSON text of a FHIR XML document (a Bundle or one resource).
pub(crate) fn to_json(text: &str, limits: &Limits) -> Result<String, TransformError> {
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut open: Vec<XNode> = Vec::new();
    let mut root: Option<Root> = None;
    loop {
        let pos = reader.buffer_position();
        let ev = reader.read_event().map_err(|e| structure(pos, &format!("is malformed: {e}")))?;
        let (start, empty) = match &ev {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            _ => (None, false),
        };
        if let Some(e) = start {
            let depth = open.len() + usize::from(root.is_some()) + 1;
            if depth > limits.max_depth {
                return Err(structure(pos, &format!("nests deeper than max_depth ({})", limits.max_depth)));
            }
            let mut node = element(e, pos)?;
            if root.is_none() {
                if !is_resource(&node.name) {
                    return Err(TransformError::Structure(
                        "the file is not a FHIR Bundle, a FHIR resource or NDJSON of resources".into(),
                    ));
                }
                root = Some(Root::new(node.name));
                if empty {
                    break;
                }
                continue;
            }
            if node.name == "div" && open.last().is_some_and(|p| p.name == "text") {
                // the narrative: its xhtml as text, not elements
                if !empty {
                    reader
                        .read_to_end(e.name())
                        .map_err(|er| structure(pos, &format!("is malformed: {er}")))?;
                }
                node.raw = Some(text[pos as usize..reader.buffer_position() as usize].to_string());
                close(node, &mut open, root.as_mut());
                continue;
            }
            if empty {
                close(node, &mut open, root.as_mut());
            } else {
                open.push(node);
            }
            continue;
        }
        match ev {
            Event::DocType(_) => {
                return Err(structure(
                    pos,
                    "declares a DTD (<!DOCTYPE>): DTDs and entities are refused (XXE, entity expansion)",
                ))
            }
            Event::End(_) => match open.pop() {
                Some(node) => close(node, &mut open, root.as_mut()),
                None => break,
            },
            Event::Eof => {
                let unclosed = open.len() + usize::from(root.is_some());
                if unclosed > 0 {
                    return Err(structure(pos, &format!("is truncated: {unclosed} element(s) not closed")));
                }
                return Err(TransformError::EmptyInput);
            }
            _ => {}
        }
    }
    // after the root: only comments, processing instructions and whitespace
    loop {
        let pos = reader.buffer_position();
        match reader.read_event().map_err(|e| structure(pos, &format!("is malformed: {e}")))? {
            Event::Eof => break,
            Event::Text(t) if t.iter().all(u8::is_ascii_whitespace) => {}
            Event::Comment(_) | Event::PI(_) => {}
            _ => return Err(structure(pos, "has content after its root element")),
        }
    }
    Ok(root.map(Root::finish).unwrap_or_default())
}

/// An element's local name and attributes (namespace declarations dropped; values with
/// predefined entities and character references decoded, any other entity refused).
fn element(e: &BytesStart<'_>, pos: u64) -> Result<XNode, TransformError> {
    let mut node =
        XNode { name: local(e.name().as_ref()), attrs: Vec::new(), children: Vec::new(), raw: None };
    for a in e.attributes() {
        let a = a.map_err(|err| structure(pos, &format!("has a bad attribute: {err}")))?;
        if a.key.as_ref() == b"xmlns" || a.key.as_ref().starts_with(b"xmlns:") {
            continue;
        }
        let v = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|_| structure(pos, "uses an undeclared entity in an attribute"))?;
        node.attrs.push((local(a.key.as_ref()), v.into_owned()));
    }
    Ok(node)
}

/// A closed element goes to its parent, or (a child of the root) is converted and written.
fn close(node: XNode, open: &mut [XNode], root: Option<&mut Root>) {
    match (open.last_mut(), root) {
        (Some(parent), _) => parent.children.push(node),
        (None, Some(root)) => root.add(node),
        (None, None) => {}
    }
}

/// The root's JSON, written one top-level element at a time: adjacent repeats (the entries of
/// a Bundle) stream into one array.
struct Root {
    rt: String,
    out: String,
    group: Option<Group>,
}

/// The top-level element being written: its name, whether its array is open (streamed), its
/// values held (not streamed) and its `_name` values.
struct Group {
    name: String,
    streamed: bool,
    vals: Vec<Jv>,
    unders: Vec<Option<Jv>>,
}

impl Root {
    fn new(rt: String) -> Self {
        let mut out = String::from("{\"resourceType\":");
        push_str(&mut out, &rt);
        Root { rt, out, group: None }
    }

    fn add(&mut self, node: XNode) {
        let (name, v, under) = convert(node, &self.rt);
        if self.group.as_ref().is_some_and(|g| g.name != name) {
            self.flush();
        }
        let stream = always_array(&self.rt, &name);
        let g = self.group.get_or_insert_with(|| Group {
            name,
            streamed: false,
            vals: Vec::new(),
            unders: Vec::new(),
        });
        if stream {
            // written as it comes: an entry is not held once converted
            self.out.push(',');
            if !g.streamed {
                push_str(&mut self.out, &g.name);
                self.out.push_str(":[");
                g.streamed = true;
            }
            self.out.push_str(&v.to_string());
        } else {
            g.vals.push(v);
        }
        g.unders.push(under);
    }

    fn flush(&mut self) {
        let Some(Group { name, streamed, vals, unders }) = self.group.take() else { return };
        if streamed {
            self.out.push(']');
        }
        let many = streamed || vals.len() > 1;
        let mut members = Vec::new();
        group_members(&name, vals, unders, many, &mut members);
        for (k, v) in members {
            if streamed && k == name {
                continue;
            }
            self.out.push(',');
            push_str(&mut self.out, &k);
            self.out.push(':');
            self.out.push_str(&v.to_string());
        }
    }

    fn finish(mut self) -> String {
        self.flush();
        self.out.push('}');
        self.out
    }
}

fn push_str(out: &mut String, s: &str) {
    out.push_str(&Jv::Str(s.to_string()).to_string());
}

/// One element as FHIR JSON: its member name, its value and its `_name` value (a primitive's
/// id and extensions). `path` is its parent's path from the resource.
fn convert(node: XNode, path: &str) -> (String, Jv, Option<Jv>) {
    let XNode { name, attrs, mut children, raw } = node;
    if let Some(raw) = raw {
        return (name, Jv::Str(raw), None);
    }
    if is_resource(&name) {
        let rt = name.clone();
        return (name, resource(rt, children), None);
    }
    if attrs.is_empty() && children.len() == 1 && is_resource(&children[0].name) {
        // `resource`, `contained`, `outcome`: the resource itself
        let inner = children.remove(0);
        return (name, resource(inner.name, inner.children), None);
    }
    let get = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (value, id, url) = (get("value"), get("id"), get("url"));
    let here = format!("{path}.{name}");
    let only_extensions = !children.is_empty() && children.iter().all(|c| c.name == "extension");
    if value.is_some() || (only_extensions && url.is_none()) {
        let v = value.map_or(Jv::Null, |v| primitive(&name, v));
        let mut under = Vec::new();
        if let Some(id) = id {
            under.push(("id".to_string(), Jv::Str(id)));
        }
        under.extend(members(children, &here));
        return (name, v, (!under.is_empty()).then_some(Jv::Obj(under)));
    }
    let mut m = Vec::new();
    if let Some(id) = id {
        m.push(("id".to_string(), Jv::Str(id)));
    }
    if let Some(url) = url {
        m.push(("url".to_string(), Jv::Str(url)));
    }
    m.extend(members(children, &here));
    (name, Jv::Obj(m), None)
}

fn resource(rt: String, children: Vec<XNode>) -> Jv {
    let mut m = vec![("resourceType".to_string(), Jv::Str(rt.clone()))];
    m.extend(members(children, &rt));
    Jv::Obj(m)
}

/// A primitive's value: a boolean or number where FHIR JSON has one, else the text.
fn primitive(name: &str, v: String) -> Jv {
    let boolean = BOOLEANS.contains(&name) || name.ends_with("Boolean");
    if boolean && (v == "true" || v == "false") {
        return Jv::Bool(v == "true");
    }
    let number = NUMBERS.contains(&name) || NUMBER_SUFFIXES.iter().any(|s| name.ends_with(s));
    if number && matches!(Jv::parse(&v, 1), Ok(Jv::Num(_))) {
        return Jv::Num(v);
    }
    Jv::Str(v)
}

/// The members of an element from its children: repeats (and [`ALWAYS_ARRAY`] elements) as
/// arrays, primitives' ids and extensions as `_name`.
fn members(children: Vec<XNode>, path: &str) -> Vec<(String, Jv)> {
    let mut groups: Vec<(String, Vec<Jv>, Vec<Option<Jv>>)> = Vec::new();
    for c in children {
        let (n, v, u) = convert(c, path);
        match groups.iter_mut().find(|g| g.0 == n) {
            Some(g) => {
                g.1.push(v);
                g.2.push(u);
            }
            None => groups.push((n, vec![v], vec![u])),
        }
    }
    let mut out = Vec::new();
    for (n, vals, unders) in groups {
        let many = vals.len() > 1 || always_array(path, &n);
        group_members(&n, vals, unders, many, &mut out);
    }
    out
}

/// `name` (unless every value is absent) and `_name` (when a value has an id or extensions).
fn group_members(
    name: &str,
    mut vals: Vec<Jv>,
    unders: Vec<Option<Jv>>,
    many: bool,
    out: &mut Vec<(String, Jv)>,
) {
    let any_under = unders.iter().any(Option::is_some);
    if !vals.iter().all(Jv::is_null) {
        let v = if many { Jv::Arr(vals) } else { vals.pop().unwrap_or(Jv::Null) };
        out.push((name.to_string(), v));
    } else if !any_under && many {
        out.push((name.to_string(), Jv::Arr(vals)));
    }
    if any_under {
        let mut unders: Vec<Jv> = unders.into_iter().map(|u| u.unwrap_or(Jv::Null)).collect();
        let u = if many { Jv::Arr(unders) } else { unders.pop().unwrap_or(Jv::Null) };
        out.push((format!("_{name}"), u));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn json(xml: &str) -> serde_json::Value {
        serde_json::from_str(&to_json(xml, &Limits::default()).unwrap()).unwrap()
    }

    #[test]
    fn a_patient_converts_by_fhir_rules() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<Patient xmlns="http://hl7.org/fhir">
  <id value="p1"/>
  <text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>Ann &amp; <b>Lee</b></p></div></text>
  <extension url="http://x/birthsex"><valueCode value="F"/></extension>
  <identifier><type><coding><code value="MR"/></coding></type><value value="00123456789012345678901234"/></identifier>
  <active value="true"/>
  <name><use value="official"/><family value="Lee"/><given value="Ann"/><given value="Q"/></name>
  <gender value="female"/>
  <birthDate id="bd" value="1974-12"><extension url="http://x/acc"><valueCode value="month"/></extension></birthDate>
  <deceasedBoolean value="false"/>
  <multipleBirthInteger value="2"/>
  <contained><Organization><id value="o"/><name value="North"/></Organization></contained>
</Patient>"#;
        let v = json(xml);
        assert_eq!(v["resourceType"], "Patient");
        assert_eq!(v["id"], "p1");
        assert_eq!(
            v["text"]["div"],
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Ann &amp; <b>Lee</b></p></div>"
        );
        assert_eq!(v["extension"][0]["url"], "http://x/birthsex");
        assert_eq!(v["extension"][0]["valueCode"], "F");
        assert_eq!(v["identifier"][0]["type"]["coding"][0]["code"], "MR");
        assert_eq!(v["identifier"][0]["value"], "00123456789012345678901234", "text, every digit");
        assert_eq!(v["active"], true);
        assert_eq!(v["name"][0]["given"], serde_json::json!(["Ann", "Q"]));
        assert_eq!(v["name"][0]["family"], "Lee", "0..1: not an array");
        assert_eq!(v["birthDate"], "1974-12");
        assert_eq!(v["_birthDate"]["id"], "bd");
        assert_eq!(v["_birthDate"]["extension"][0]["valueCode"], "month");
        assert_eq!(v["deceasedBoolean"], false);
        assert_eq!(v["multipleBirthInteger"], 2);
        assert_eq!(v["contained"][0]["resourceType"], "Organization");
        assert_eq!(v["contained"][0]["name"], "North");
    }

    #[test]
    fn a_bundle_streams_its_entries_and_primitives_without_values_keep_extensions() {
        let xml = r#"<f:Bundle xmlns:f="http://hl7.org/fhir"><f:type value="collection"/>
<f:entry><f:fullUrl value="urn:uuid:1"/><f:resource><f:Patient><f:id value="a"/>
<f:birthDate><f:extension url="http://hl7.org/fhir/StructureDefinition/data-absent-reason"><f:valueCode value="unknown"/></f:extension></f:birthDate>
<f:name><f:given value="X"/></f:name></f:Patient></f:resource></f:entry>
<f:entry><f:resource><f:Encounter><f:id value="e"/><f:subject><f:reference value="Patient/a"/></f:subject></f:Encounter></f:resource></f:entry>
</f:Bundle>"#;
        let v = json(xml);
        assert_eq!(v["type"], "collection");
        assert_eq!(v["entry"].as_array().unwrap().len(), 2);
        assert_eq!(v["entry"][0]["fullUrl"], "urn:uuid:1");
        let p = &v["entry"][0]["resource"];
        assert_eq!(p["resourceType"], "Patient");
        assert!(p.get("birthDate").is_none(), "{p}");
        assert_eq!(p["_birthDate"]["extension"][0]["valueCode"], "unknown");
        assert_eq!(v["entry"][1]["resource"]["subject"]["reference"], "Patient/a");
        let one = json(
            "<Bundle xmlns=\"http://hl7.org/fhir\"><entry><resource><Patient/></resource></entry></Bundle>",
        );
        assert!(one["entry"].is_array(), "an entry alone is still an array: {one}");
    }

    #[test]
    fn hostile_xml_is_refused_with_a_reason() {
        let lim = Limits { max_depth: 8, ..Limits::default() };
        for (xml, want) in [
            ("<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><Patient><id value=\"&e;\"/></Patient>", "declares a DTD"),
            ("<Patient><id value=\"&e;\"/></Patient>", "undeclared entity"),
            ("<Patient><name><given value=\"a\"/>", "is truncated: 2 element(s) not closed"),
            ("<Patient><name></Patient>", "is malformed"),
            ("<a><b/></a>", "not a FHIR Bundle"),
            ("<Patient/><Patient/>", "content after its root element"),
            (&format!("<Patient>{}{}</Patient>", "<a>".repeat(20), "</a>".repeat(20)), "nests deeper than max_depth (8)"),
        ] {
            let e = to_json(xml, &lim).unwrap_err().to_string();
            assert!(e.contains(want), "{xml}: {e}");
        }
    }
}
