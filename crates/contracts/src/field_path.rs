//! Field paths: how a contract names a source field inside a document — a JSON path, an HL7 v2
//! field, an XML step path — each with its grammar checked on parse.

/// One element of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

/// A simple JSON path: `mrn`, `patient.name[0].family`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(pub Vec<PathSeg>);

impl JsonPath {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut segs = Vec::new();
        for part in s.split('.') {
            let (key, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if key.is_empty() && (segs.is_empty() || rest.is_empty()) {
                return Err(format!("`{s}` has an empty segment"));
            }
            if !key.is_empty() {
                segs.push(PathSeg::Key(key.to_string()));
            }
            while !rest.is_empty() {
                let close = rest.find(']').ok_or_else(|| format!("`{s}`: `[` without `]`"))?;
                let idx: usize =
                    rest[1..close].parse().map_err(|_| format!("`{s}`: index must be a whole number"))?;
                segs.push(PathSeg::Index(idx));
                rest = &rest[close + 1..];
                if !rest.is_empty() && !rest.starts_with('[') {
                    return Err(format!("`{s}`: unexpected text after `]`"));
                }
            }
        }
        Ok(JsonPath(segs))
    }
}

/// A field of an HL7 v2 message: `PID-5.1` is segment PID, field 5, component 1 (`PID-5.1.2`
/// adds a subcomponent). For MSH, `MSH-3` is the third field as the standard counts (MSH-1 is the
/// field separator itself). A repetition may be chosen after the field: `PID-3[2].1` (the second,
/// 1-based) or `PID-3[5=MR].1` (the first whose component 5 is `MR`; `PID-13[2=WPN].1`, the
/// work number by its use code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7Path {
    pub segment: String,
    pub field: usize,
    pub repetition: Option<Hl7Rep>,
    pub component: Option<usize>,
    pub subcomponent: Option<usize>,
}

/// Which repetition of an HL7 field a path reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hl7Rep {
    /// The n-th repetition, 1-based.
    Index(usize),
    /// The first repetition whose component `component` (1-based) equals `value`.
    Where { component: usize, value: String },
}

impl Hl7Path {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (seg, rest) = s.split_once('-').ok_or_else(|| format!("`{s}` is not like `PID-5.1`"))?;
        if seg.len() != 3 || !seg.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            return Err(format!("`{s}`: the segment id must be 3 upper-case letters or digits, like `PID`"));
        }
        let (rest, repetition) = Self::parse_rep(s, rest)?;
        let mut nums = Vec::new();
        for p in rest.split('.') {
            let n: usize = p.parse().map_err(|_| format!("`{s}`: `{p}` is not a position (1, 2, ...)"))?;
            if n == 0 {
                return Err(format!("`{s}`: positions start at 1"));
            }
            nums.push(n);
        }
        if nums.len() > 3 {
            return Err(format!("`{s}`: at most field.component.subcomponent"));
        }
        Ok(Self {
            segment: seg.to_string(),
            field: nums[0],
            repetition,
            component: nums.get(1).copied(),
            subcomponent: nums.get(2).copied(),
        })
    }

    /// Cuts `[n]` or `[c=VALUE]` out of `3[5=MR].1`, returning `3.1` and the selection.
    fn parse_rep(s: &str, rest: &str) -> Result<(String, Option<Hl7Rep>), String> {
        let Some(open) = rest.find('[') else { return Ok((rest.to_string(), None)) };
        let close = rest.find(']').filter(|&c| c > open).ok_or_else(|| format!("`{s}`: `[` without `]`"))?;
        let inside = &rest[open + 1..close];
        let after = &rest[close + 1..];
        if !(after.is_empty() || after.starts_with('.')) || rest[..open].contains('.') {
            return Err(format!(
                "`{s}`: a repetition `[..]` goes right after the field, like `PID-3[5=MR].1`"
            ));
        }
        let rep = match inside.split_once('=') {
            None => match inside.parse::<usize>() {
                Ok(n) if n >= 1 => Hl7Rep::Index(n),
                _ => return Err(format!("`{s}`: a repetition is `[n]` (1-based) or `[component=VALUE]`")),
            },
            Some((c, v)) => match c.parse::<usize>() {
                Ok(component) if component >= 1 && !v.is_empty() && !v.contains(['[', ']']) => {
                    Hl7Rep::Where { component, value: v.to_string() }
                }
                _ => return Err(format!("`{s}`: a repetition is `[n]` (1-based) or `[component=VALUE]`")),
            },
        };
        Ok((format!("{}{after}", &rest[..open]), Some(rep)))
    }
}

/// One step of an XML field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmlStep {
    /// `..`: the parent element.
    Parent,
    /// A child element by (local) name.
    Child(String),
    /// `@name`: an attribute (last step only).
    Attr(String),
}

/// A path from an XML record element: `Date`, `@id`, `Dx/Code`, `../@mrn`, `../Name/Family`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlPath(pub Vec<XmlStep>);

fn xml_name_ok(n: &str) -> bool {
    !n.is_empty() && n.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

impl XmlPath {
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let mut steps = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            if *p == ".." {
                steps.push(XmlStep::Parent);
            } else if let Some(a) = p.strip_prefix('@') {
                if i + 1 != parts.len() || !xml_name_ok(a) {
                    return Err(format!("`{s}`: an attribute `@name` must be the last step"));
                }
                steps.push(XmlStep::Attr(a.to_string()));
            } else if xml_name_ok(p) && *p != "." {
                steps.push(XmlStep::Child(p.to_string()));
            } else {
                return Err(format!("`{s}`: `{p}` is not an element name, `..` or `@attribute`"));
            }
        }
        Ok(Self(steps))
    }

    /// The element names of an absolute record path like `/Export/Patient/Encounter`.
    pub fn parse_record(s: &str) -> Result<Vec<String>, String> {
        let rest = s.strip_prefix('/').ok_or_else(|| format!("record path `{s}` must start with `/`"))?;
        let parts: Vec<String> = rest.split('/').map(str::to_string).collect();
        if parts.iter().any(|p| !xml_name_ok(p)) {
            return Err(format!("record path `{s}`: every step must be an element name"));
        }
        Ok(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_parse() {
        assert_eq!(
            JsonPath::parse("a.b[2].c").unwrap().0,
            vec![
                PathSeg::Key("a".into()),
                PathSeg::Key("b".into()),
                PathSeg::Index(2),
                PathSeg::Key("c".into())
            ]
        );
        assert!(JsonPath::parse("a..b").is_err());
        assert!(JsonPath::parse("a[x]").is_err());
    }

    #[test]
    fn json_path_mistakes_are_named() {
        for (path, message) in [
            ("a..b", "`a..b` has an empty segment"),
            ("a[1", "`a[1`: `[` without `]`"),
            ("a[x]", "`a[x]`: index must be a whole number"),
            ("a[1]b", "`a[1]b`: unexpected text after `]`"),
        ] {
            assert_eq!(JsonPath::parse(path).unwrap_err(), message);
        }
    }

    #[test]
    fn hl7_paths_parse_and_their_mistakes_are_named() {
        let p = Hl7Path::parse("PID-5.1.2").unwrap();
        assert_eq!((p.segment.as_str(), p.field, p.component, p.subcomponent), ("PID", 5, Some(1), Some(2)));
        assert_eq!(Hl7Path::parse("MSH-3").unwrap().component, None);
        let p = Hl7Path::parse("PID-3[5=MR].1").unwrap();
        assert_eq!(
            (p.field, p.repetition, p.component),
            (3, Some(Hl7Rep::Where { component: 5, value: "MR".into() }), Some(1))
        );
        assert_eq!(Hl7Path::parse("PID-13[2]").unwrap().repetition, Some(Hl7Rep::Index(2)));
        for (path, message) in [
            ("PID5", "`PID5` is not like `PID-5.1`"),
            ("pid-5", "`pid-5`: the segment id must be 3 upper-case letters or digits, like `PID`"),
            ("PID-x", "`PID-x`: `x` is not a position (1, 2, ...)"),
            ("PID-0", "`PID-0`: positions start at 1"),
            ("PID-1.2.3.4", "`PID-1.2.3.4`: at most field.component.subcomponent"),
            ("PID-3[0].1", "`PID-3[0].1`: a repetition is `[n]` (1-based) or `[component=VALUE]`"),
            ("PID-3[x=MR]", "`PID-3[x=MR]`: a repetition is `[n]` (1-based) or `[component=VALUE]`"),
            ("PID-3[5=]", "`PID-3[5=]`: a repetition is `[n]` (1-based) or `[component=VALUE]`"),
            (
                "PID-3.1[2]",
                "`PID-3.1[2]`: a repetition `[..]` goes right after the field, like `PID-3[5=MR].1`",
            ),
            ("PID-3[2", "`PID-3[2`: `[` without `]`"),
        ] {
            assert_eq!(Hl7Path::parse(path).unwrap_err(), message);
        }
    }

    #[test]
    fn xml_paths_and_record_paths_parse() {
        assert_eq!(
            XmlPath::parse("../Name/@id").unwrap().0,
            vec![XmlStep::Parent, XmlStep::Child("Name".into()), XmlStep::Attr("id".into())]
        );
        assert_eq!(XmlPath::parse("@a/b").unwrap_err(), "`@a/b`: an attribute `@name` must be the last step");
        assert_eq!(
            XmlPath::parse("a/./b").unwrap_err(),
            "`a/./b`: `.` is not an element name, `..` or `@attribute`"
        );
        assert_eq!(XmlPath::parse_record("/Export/Patient").unwrap(), vec!["Export", "Patient"]);
        assert_eq!(XmlPath::parse_record("Export").unwrap_err(), "record path `Export` must start with `/`");
        assert_eq!(
            XmlPath::parse_record("/Export//Patient").unwrap_err(),
            "record path `/Export//Patient`: every step must be an element name"
        );
    }
}
