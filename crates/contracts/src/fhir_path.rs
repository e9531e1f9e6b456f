//! FHIR paths: the documented FHIRPath subset a `fhir_bundle` contract names fields with, and
//! the FHIR versions whose reference paths the reader follows.
//!
//! A path starts with the resource (`Patient`, `Encounter`, `Condition`), then steps separated
//! by `.`: an element name (`name`, `given`), optionally indexed (`name[0]`: the first of the
//! collection so far), or a function: `first()`, `last()`, `where(a.b = 'value')` (keeps the
//! items with a value at `a.b` equal to the literal), `extension('url')` (the extensions with
//! that url), `substring(start[, length])` (of each string, in characters, 0-based: a middle
//! initial is `given[1].substring(0, 1)`) and, last, `join('sep')` (the string values joined
//! into one).

use serde::{Deserialize, Serialize};

/// The FHIR resources a `fhir_bundle` contract can read fields from.
pub const FHIR_RESOURCES: &[&str] = &["Encounter", "Patient", "Condition"];

/// A FHIR version a contract declares: the reader follows its reference paths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FhirVersion {
    /// DSTU2: `Encounter.patient`, `Condition.encounter`.
    Dstu2,
    /// STU3: `Encounter.subject`, `Condition.context`, `Encounter.diagnosis.condition`.
    Stu3,
    /// R4 and R4B: `Encounter.subject`, `Condition.encounter`, `Encounter.diagnosis.condition`.
    #[default]
    R4,
    R4b,
}

impl FhirVersion {
    /// The Encounter element referencing its Patient.
    pub fn patient_ref(self) -> &'static str {
        match self {
            FhirVersion::Dstu2 => "patient",
            _ => "subject",
        }
    }

    /// The Condition element referencing its Encounter.
    pub fn encounter_ref(self) -> &'static str {
        match self {
            FhirVersion::Stu3 => "context",
            _ => "encounter",
        }
    }
}

/// One step of a FHIR path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FhirStep {
    /// An element: every value of it in the collection (arrays flattened).
    Key(String),
    /// `[n]`: the n-th item (0-based) of the collection.
    Index(usize),
    First,
    Last,
    /// `where(a.b = 'v')`: the items with a value at `path` equal to `value`.
    Where {
        path: Vec<String>,
        value: String,
    },
    /// `extension('url')`: the extensions with that url.
    Extension(String),
    /// `substring(start[, length])`: of each string, in characters (0-based); a start past the
    /// end gives nothing.
    Substring {
        start: usize,
        length: Option<usize>,
    },
    /// `join('sep')`: one string of the items' values (last step only).
    Join(String),
}

/// A parsed FHIR path: the resource and its steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirPath {
    pub resource: String,
    pub steps: Vec<FhirStep>,
}

impl FhirPath {
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts = split_steps(s)?;
        let (resource, rest) = parts.split_first().ok_or_else(|| format!("`{s}` is empty"))?;
        if resource.contains('[') {
            // the bracket's own mistake first (`Patient[`), then the resource
            parse_step(s, resource, &mut Vec::new())?;
        }
        if !FHIR_RESOURCES.contains(&resource.as_str()) || rest.is_empty() {
            return Err(format!(
                "a FHIR path starts with the resource ({}) and a field, like `Patient.birthDate`",
                FHIR_RESOURCES.join(", ")
            ));
        }
        let mut steps = Vec::new();
        for p in rest {
            parse_step(s, p, &mut steps)?;
        }
        if steps.iter().rev().skip(1).any(|st| matches!(st, FhirStep::Join(_))) {
            return Err(format!("`{s}`: join(...) must be the last step"));
        }
        Ok(Self { resource: resource.clone(), steps })
    }
}

/// Splits at the `.`s outside parentheses and quotes.
fn split_steps(s: &str) -> Result<Vec<String>, String> {
    let (mut parts, mut cur, mut depth, mut quoted) = (Vec::new(), String::new(), 0usize, false);
    for c in s.chars() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth = depth.checked_sub(1).ok_or_else(|| format!("`{s}`: `)` without `(`"))?
            }
            '.' if !quoted && depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if quoted || depth > 0 {
        return Err(format!("`{s}`: an unclosed quote or parenthesis"));
    }
    parts.push(cur);
    if parts.iter().any(String::is_empty) {
        return Err(format!("`{s}` has an empty segment"));
    }
    Ok(parts)
}

fn name_ok(n: &str) -> bool {
    !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A single-quoted literal (no quotes inside).
fn literal(s: &str, t: &str) -> Result<String, String> {
    let t = t.trim();
    t.strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .filter(|v| !v.contains('\''))
        .map(str::to_string)
        .ok_or_else(|| format!("`{s}`: `{t}` is not a quoted literal like 'phone'"))
}

/// `substring(start)` or `substring(start, length)`: whole numbers.
fn substring(s: &str, arg: &str) -> Result<FhirStep, String> {
    let n = |t: &str| {
        t.trim()
            .parse::<usize>()
            .map_err(|_| format!("`{s}`: substring(start, length) takes whole numbers, like substring(0, 1)"))
    };
    match arg.split_once(',') {
        Some((a, b)) => Ok(FhirStep::Substring { start: n(a)?, length: Some(n(b)?) }),
        None => Ok(FhirStep::Substring { start: n(arg)?, length: None }),
    }
}

fn parse_step(s: &str, p: &str, steps: &mut Vec<FhirStep>) -> Result<(), String> {
    if let Some((f, arg)) = p.strip_suffix(')').and_then(|q| q.split_once('(')) {
        let step = match f {
            "first" if arg.is_empty() => FhirStep::First,
            "last" if arg.is_empty() => FhirStep::Last,
            "extension" => FhirStep::Extension(literal(s, arg)?),
            "join" => FhirStep::Join(literal(s, arg)?),
            "substring" => substring(s, arg)?,
            "where" => {
                let (lhs, rhs) = arg
                    .split_once('=')
                    .ok_or_else(|| format!("`{s}`: where(...) takes `element = 'value'`"))?;
                let path: Vec<String> = lhs.trim().split('.').map(str::to_string).collect();
                if !path.iter().all(|n| name_ok(n)) {
                    return Err(format!("`{s}`: where(...) takes `element = 'value'`"));
                }
                FhirStep::Where { path, value: literal(s, rhs)? }
            }
            _ => {
                return Err(format!(
                    "`{s}`: `{f}(...)` is not supported (first(), last(), where(a = 'v'), extension('url'), substring(start, length), join('sep'))"
                ))
            }
        };
        steps.push(step);
        return Ok(());
    }
    let (key, mut rest) = match p.find('[') {
        Some(i) => (&p[..i], &p[i..]),
        None => (p, ""),
    };
    if !name_ok(key) {
        return Err(format!("`{s}`: `{p}` is not an element name, an index or a function"));
    }
    steps.push(FhirStep::Key(key.to_string()));
    while !rest.is_empty() {
        let close = rest.find(']').ok_or_else(|| format!("`{s}`: `[` without `]`"))?;
        let idx: usize =
            rest[1..close].parse().map_err(|_| format!("`{s}`: index must be a whole number"))?;
        steps.push(FhirStep::Index(idx));
        rest = &rest[close + 1..];
        if !rest.is_empty() && !rest.starts_with('[') {
            return Err(format!("`{s}`: unexpected text after `]`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subset_parses() {
        let p = FhirPath::parse("Patient.telecom.where(system = 'phone').value.first()").unwrap();
        assert_eq!(p.resource, "Patient");
        assert_eq!(
            p.steps,
            vec![
                FhirStep::Key("telecom".into()),
                FhirStep::Where { path: vec!["system".into()], value: "phone".into() },
                FhirStep::Key("value".into()),
                FhirStep::First,
            ]
        );
        let p = FhirPath::parse("Patient.extension('http://x.org/a.b').valueString").unwrap();
        assert_eq!(p.steps[0], FhirStep::Extension("http://x.org/a.b".into()));
        let p = FhirPath::parse("Patient.name[0].given.join(' ')").unwrap();
        assert_eq!(p.steps[1], FhirStep::Index(0));
        assert_eq!(p.steps[3], FhirStep::Join(" ".into()));
        let p = FhirPath::parse("Patient.name[0].given[1].substring(0, 1)").unwrap();
        assert_eq!(p.steps[4], FhirStep::Substring { start: 0, length: Some(1) });
        let p = FhirPath::parse("Patient.name.given.substring(2)").unwrap();
        assert_eq!(p.steps[2], FhirStep::Substring { start: 2, length: None });
        let p = FhirPath::parse("Patient.identifier.where(type.coding.code='MR').value").unwrap();
        assert_eq!(
            p.steps[1],
            FhirStep::Where { path: vec!["type".into(), "coding".into(), "code".into()], value: "MR".into() }
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (path, message) in [
            ("name.family", "a FHIR path starts with the resource"),
            ("Patient.name.count()", "`count(...)` is not supported"),
            ("Patient.name.where(use)", "where(...) takes `element = 'value'`"),
            ("Patient.name.where(use = official)", "is not a quoted literal"),
            ("Patient.given.join(' ').first()", "join(...) must be the last step"),
            ("Patient.name[x]", "index must be a whole number"),
            ("Patient.name.where(use = 'a'", "unclosed quote or parenthesis"),
            ("Patient..name", "has an empty segment"),
            ("Patient.given.substring(a, 1)", "substring(start, length) takes whole numbers"),
            ("Patient.given.substring()", "substring(start, length) takes whole numbers"),
            ("Patient.given.substring(0, -1)", "substring(start, length) takes whole numbers"),
        ] {
            let e = FhirPath::parse(path).unwrap_err();
            assert!(e.contains(message), "{path}: {e}");
        }
    }
}
