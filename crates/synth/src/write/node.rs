//! A JSON tree that keeps its keys in the order they were set (so the bytes do not depend on
//! serde_json's map features), and how a value is put at a JSON path or a FHIR path: the
//! elements a path walks through are created, the repetition a FHIRPath selector names
//! (`where(a.b = 'v')`, `[n]`, `first()`, `extension('url')`) is found or made to match.

use contracts::{FhirStep, PathSeg};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Str(String),
    /// A number's text.
    Num(String),
    Obj(Vec<(String, Node)>),
    Arr(Vec<Node>),
}

/// FHIR elements that are arrays (0..*) in the resources the pipeline reads.
const FHIR_ARRAYS: &[&str] = &[
    "identifier",
    "name",
    "given",
    "prefix",
    "suffix",
    "telecom",
    "address",
    "line",
    "coding",
    "extension",
    "contact",
    "diagnosis",
    "participant",
    "reasonCode",
    "category",
    "communication",
];

impl Node {
    pub fn obj() -> Self {
        Node::Obj(Vec::new())
    }

    /// The member `k`, made (null) when absent; a non-object becomes an object first.
    pub fn entry(&mut self, k: &str) -> &mut Node {
        if !matches!(self, Node::Obj(_)) {
            *self = Node::obj();
        }
        let Node::Obj(members) = self else { unreachable!("made an object above") };
        let i = match members.iter().position(|(mk, _)| mk == k) {
            Some(i) => i,
            None => {
                members.push((k.to_string(), Node::Null));
                members.len() - 1
            }
        };
        &mut members[i].1
    }

    /// The member `k` of an object.
    pub fn get(&self, k: &str) -> Option<&Node> {
        match self {
            Node::Obj(m) => m.iter().find(|(mk, _)| mk == k).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn set(&mut self, k: &str, v: Node) {
        *self.entry(k) = v;
    }

    fn items(&mut self) -> &mut Vec<Node> {
        if !matches!(self, Node::Arr(_)) {
            *self = Node::Arr(Vec::new());
        }
        let Node::Arr(items) = self else { unreachable!("made an array above") };
        items
    }

    /// Compact JSON.
    pub fn write(&self, out: &mut String) {
        match self {
            Node::Null => out.push_str("null"),
            Node::Str(s) => json_str(s, out),
            Node::Num(n) => out.push_str(n),
            Node::Obj(m) => {
                out.push('{');
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    json_str(k, out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
            Node::Arr(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
        }
    }

    pub fn to_json(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }

    /// A text node's text.
    pub fn text(&self) -> Option<&str> {
        match self {
            Node::Str(s) | Node::Num(s) => Some(s),
            _ => None,
        }
    }
}

/// A JSON string literal (serde_json's escaping).
pub(crate) fn json_str(s: &str, out: &mut String) {
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

/// Puts `leaf` at a JSON path (`a.b[0].c`), making the objects and arrays on the way.
pub(crate) fn put_json(node: &mut Node, segs: &[PathSeg], leaf: Node) {
    match segs.split_first() {
        None => *node = leaf,
        Some((PathSeg::Key(k), rest)) => put_json(node.entry(k), rest, leaf),
        Some((PathSeg::Index(i), rest)) => {
            let items = node.items();
            while items.len() <= *i {
                items.push(Node::Null);
            }
            put_json(&mut items[*i], rest, leaf)
        }
    }
}

/// Puts `leaf` at the FHIR path `steps` of a resource; `None` makes the path's elements (and
/// the repetition its selectors name) without the value, as a sender leaving it out does.
pub(crate) fn put_fhir(node: &mut Node, steps: &[FhirStep], leaf: Option<Node>) {
    match steps.split_first() {
        None => *node = leaf.unwrap_or(Node::Str(String::new())),
        Some((FhirStep::Key(k), rest)) if rest.is_empty() && leaf.is_none() => {
            // the value itself is absent: make its parent only
            if !FHIR_ARRAYS.contains(&k.as_str()) {
                node.entry(k);
                remove(node, k);
                return;
            }
            put_in_array(node.entry(k), rest, leaf)
        }
        Some((FhirStep::Key(k), rest)) if FHIR_ARRAYS.contains(&k.as_str()) => {
            put_in_array(node.entry(k), rest, leaf)
        }
        Some((FhirStep::Key(k), rest)) => put_fhir(node.entry(k), rest, leaf),
        Some((FhirStep::Extension(url), rest)) => {
            let items = node.entry("extension").items();
            let i = match items.iter().position(|e| e_url(e) == Some(url.as_str())) {
                Some(i) => i,
                None => {
                    let mut e = Node::obj();
                    e.set("url", Node::Str(url.clone()));
                    items.push(e);
                    items.len() - 1
                }
            };
            put_fhir(&mut items[i], rest, leaf)
        }
        // `substring(start, ..)` ends a path: the element holds the value after `start` filler
        // letters, so the reader's cut gives the value back (`given[1].substring(0, 1)`)
        Some((FhirStep::Substring { start, .. }, _)) => {
            *node = match leaf {
                Some(Node::Str(v)) => Node::Str(format!("{}{v}", "X".repeat(*start))),
                other => other.unwrap_or(Node::Str(String::new())),
            }
        }
        // a selector or join without an array element before it: the node is the collection
        Some(_) => put_in_array(node, steps, leaf),
    }
}

fn remove(node: &mut Node, k: &str) {
    if let Node::Obj(m) = node {
        m.retain(|(mk, _)| mk != k);
    }
}

fn e_url(e: &Node) -> Option<&str> {
    match e {
        Node::Obj(m) => m.iter().find(|(k, _)| k == "url").and_then(|(_, v)| v.text()),
        _ => None,
    }
}

/// Puts `leaf` into the item of array `arr` that the leading selectors of `steps` name.
fn put_in_array(arr: &mut Node, steps: &[FhirStep], leaf: Option<Node>) {
    let mut preds: Vec<(&[String], &str)> = Vec::new();
    let mut index: Option<isize> = None;
    let mut rest = steps;
    while let Some((s, r)) = rest.split_first() {
        match s {
            FhirStep::Where { path, value } => preds.push((path.as_slice(), value.as_str())),
            FhirStep::Index(i) => index = Some(*i as isize),
            FhirStep::First => index = Some(0),
            FhirStep::Last => index = Some(-1),
            _ => break,
        }
        rest = r;
    }
    let items = arr.items();
    if let Some((FhirStep::Join(_), _)) = rest.split_first() {
        // one item holds the whole value (`line.join(' ')`)
        items.clear();
        items.push(leaf.unwrap_or(Node::Str(String::new())));
        return;
    }
    let found = match index {
        _ if !preds.is_empty() => items.iter().position(|it| preds.iter().all(|(p, v)| matches(it, p, v))),
        Some(-1) => items.len().checked_sub(1),
        Some(i) => {
            let i = i as usize;
            while items.len() <= i {
                items.push(if rest.is_empty() { Node::Str(String::new()) } else { Node::obj() });
            }
            Some(i)
        }
        None => (!items.is_empty()).then_some(0),
    };
    let i = found.unwrap_or_else(|| {
        let mut it = if rest.is_empty() { Node::Null } else { Node::obj() };
        for (p, v) in &preds {
            put_path(&mut it, p, v);
        }
        items.push(it);
        items.len() - 1
    });
    put_fhir(&mut items[i], rest, leaf)
}

/// Whether an item has `value` at the element path `p` (arrays: any of their items).
fn matches(it: &Node, p: &[String], value: &str) -> bool {
    let Some((k, rest)) = p.split_first() else { return it.text() == Some(value) };
    let Node::Obj(m) = it else { return false };
    match m.iter().find(|(mk, _)| mk == k).map(|(_, v)| v) {
        Some(Node::Arr(a)) => a.iter().any(|x| matches(x, rest, value)),
        Some(v) => matches(v, rest, value),
        None => false,
    }
}

/// Makes an item match `where(p = 'value')`.
fn put_path(it: &mut Node, p: &[String], value: &str) {
    let steps: Vec<FhirStep> = p.iter().map(|k| FhirStep::Key(k.clone())).collect();
    put_fhir(it, &steps, Some(Node::Str(value.to_string())));
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::FhirPath;

    fn put(n: &mut Node, path: &str, v: Option<&str>) {
        let p = FhirPath::parse(path).unwrap();
        put_fhir(n, &p.steps, v.map(|s| Node::Str(s.into())));
    }

    #[test]
    fn fhir_paths_make_the_elements_their_selectors_name() {
        let mut p = Node::obj();
        put(&mut p, "Patient.identifier.where(type.coding.code = 'MR').value", Some("M1"));
        put(&mut p, "Patient.identifier.where(type.coding.code = 'SS').value", Some("123-45-6789"));
        put(&mut p, "Patient.name.where(use = 'official').given.first()", Some("Ann"));
        put(&mut p, "Patient.name.where(use = 'official').given[1]", Some("Q"));
        put(&mut p, "Patient.name.where(use = 'official').family", None);
        put(&mut p, "Patient.telecom.where(system = 'phone').where(use = 'home').value", Some("617"));
        put(&mut p, "Patient.address.where(use = 'home').line.join(' ')", Some("1 Elm St"));
        put(&mut p, "Patient.extension('http://x/birthsex').valueCode", Some("F"));
        put(&mut p, "Patient.identifier[0].system", Some("urn:mrn"));
        assert_eq!(
            p.to_json(),
            concat!(
                r#"{"identifier":[{"type":{"coding":[{"code":"MR"}]},"value":"M1","system":"urn:mrn"},"#,
                r#"{"type":{"coding":[{"code":"SS"}]},"value":"123-45-6789"}],"#,
                r#""name":[{"use":"official","given":["Ann","Q"]}],"#,
                r#""telecom":[{"system":"phone","use":"home","value":"617"}],"#,
                r#""address":[{"use":"home","line":["1 Elm St"]}],"#,
                r#""extension":[{"url":"http://x/birthsex","valueCode":"F"}]}"#
            )
        );
    }

    #[test]
    fn json_paths_make_objects_and_arrays() {
        let mut n = Node::obj();
        put_json(
            &mut n,
            &[PathSeg::Key("a".into()), PathSeg::Index(1), PathSeg::Key("b".into())],
            Node::Num("2".into()),
        );
        assert_eq!(n.to_json(), r#"{"a":[null,{"b":2}]}"#);
    }
}
