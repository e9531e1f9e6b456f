use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::canonical::{Catalog, ParquetType, Semantic};
use crate::error::{line_of, locate, locate_text, ContractError};

/// Longest record (line, or quoted multi-line record) the readers hold in memory by default.
pub const MAX_RECORD_BYTES_DEFAULT: usize = 16 << 20;

/// How a source writes its files. Closed: a new format is a new variant and a new reader.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "format", rename_all = "snake_case", deny_unknown_fields)]
pub enum Format {
    /// Delimited text: any single-character delimiter, optional quoting (a quoted field may hold
    /// delimiters, doubled quotes and newlines). The first record is the header.
    Delimited {
        delimiter: char,
        #[serde(default)]
        quote: Option<char>,
        /// The header the file must start with, in order.
        header: Vec<String>,
    },
    /// One JSON object per line.
    JsonLines,
    /// One JSON array of objects.
    JsonArray,
    /// Fixed-width text: each line is cut at column spans (1-based character positions), values
    /// trimmed. Leading header lines can be skipped and records filtered by a record-type code.
    FixedWidth {
        columns: Vec<Span>,
        /// Lines at the start of the file that are not records (a title or header line).
        #[serde(default)]
        header_lines: usize,
        /// Keep only records whose type code (a span of each line) is listed; others (header,
        /// trailer, other record types) are skipped and counted.
        #[serde(default)]
        record_type: Option<RecordType>,
    },
    /// HL7 v2 messages (ADT, ORU, ...): one row per message. Fields are paths like `PID-5.1`.
    Hl7v2,
    /// FHIR R4: a JSON Bundle, or NDJSON of resources. One row per Encounter, joined with its
    /// Patient (by `subject`) and Conditions (by `encounter`). Fields are paths like
    /// `Patient.name[0].family`.
    FhirBundle,
    /// XML: one row per element at the `record` path (`/Export/Patient/Encounter`). Fields are
    /// paths relative to it: `Date`, `@id`, `Dx/Code`, `../@mrn` (`..` is the parent element).
    Xml { record: String },
    /// A workbook (xlsx, xlsm, xls, ods; recognised by content): one sheet, by name or 1-based
    /// index (default: the first), a header row (1-based, default 1; rows above it are skipped),
    /// one row per sheet row below it. Fields are header names. Cells formatted as dates
    /// (Excel serial numbers) become dates directly.
    Excel {
        #[serde(default)]
        sheet: Option<String>,
        #[serde(default)]
        sheet_index: Option<usize>,
        #[serde(default = "one")]
        header_row: usize,
    },
}

fn one() -> usize {
    1
}

/// A column of a fixed-width layout: 1-based `start` and either `length` or inclusive `end`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Span {
    pub name: String,
    pub start: usize,
    #[serde(default)]
    pub length: Option<usize>,
    #[serde(default)]
    pub end: Option<usize>,
}

impl Span {
    /// 0-based character range `[from, to)` (validated on load: start >= 1, a length or an end).
    pub fn range(&self) -> (usize, usize) {
        let from = self.start.saturating_sub(1);
        let to = match (self.length, self.end) {
            (Some(l), _) => from + l,
            (None, Some(e)) => e,
            (None, None) => from,
        };
        (from, to.max(from))
    }
}

/// The record-type code of a fixed-width line and the codes that are data records.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecordType {
    pub start: usize,
    pub length: usize,
    pub keep: Vec<String>,
}

/// A text encoding a contract may declare for sources that do not write UTF-8. A byte-order
/// mark in the file (UTF-8 or UTF-16) always wins over the declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum TextEncoding {
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "utf-16le")]
    Utf16Le,
    #[serde(rename = "utf-16be")]
    Utf16Be,
    #[serde(rename = "windows-1252")]
    Windows1252,
    /// Decoded as windows-1252 (its superset), as browsers do.
    #[serde(rename = "iso-8859-1")]
    Iso8859_1,
    #[serde(rename = "iso-8859-15")]
    Iso8859_15,
}

impl Format {
    /// The workflow queue family: line-oriented text formats go to `delimited`, document formats
    /// (JSON, FHIR, XML) to `json`. Both run the same binary; the split only spreads load.
    pub fn family(&self) -> &'static str {
        match self {
            Format::Delimited { .. } | Format::FixedWidth { .. } | Format::Hl7v2 => "delimited",
            Format::JsonLines
            | Format::JsonArray
            | Format::FhirBundle
            | Format::Xml { .. }
            | Format::Excel { .. } => "json",
        }
    }

    /// The format's name as written in a contract.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Delimited { .. } => "delimited",
            Format::JsonLines => "json_lines",
            Format::JsonArray => "json_array",
            Format::FixedWidth { .. } => "fixed_width",
            Format::Hl7v2 => "hl7v2",
            Format::FhirBundle => "fhir_bundle",
            Format::Xml { .. } => "xml",
            Format::Excel { .. } => "excel",
        }
    }
}

/// Limits a reader enforces so hostile input ends in a clear outcome, not memory exhaustion.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// A record longer than this is malformed (`record too long`) and skipped to the next line.
    #[serde(default = "default_max_record")]
    pub max_record_bytes: usize,
    /// A compressed file (gzip, zip) may expand to at most this many bytes.
    #[serde(default = "default_max_expanded")]
    pub max_expanded_bytes: u64,
    /// ... and at most this many times its compressed size (checked past the first 8 MiB), so
    /// a decompression bomb fails fast with a clear error.
    #[serde(default = "default_max_ratio")]
    pub max_ratio: u64,
    /// Inputs that cannot be streamed (a zip archive's central directory, a FHIR bundle, which
    /// must be joined whole) are held in memory up to this many bytes.
    #[serde(default = "default_max_in_memory")]
    pub max_in_memory_bytes: u64,
    /// Deepest XML element nesting accepted.
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
}

fn default_max_record() -> usize {
    MAX_RECORD_BYTES_DEFAULT
}
fn default_max_expanded() -> u64 {
    MAX_EXPANDED_BYTES_DEFAULT
}
fn default_max_ratio() -> u64 {
    100
}
fn default_max_in_memory() -> u64 {
    MAX_IN_MEMORY_BYTES_DEFAULT
}
fn default_max_depth() -> usize {
    64
}

/// Default cap on what a compressed file expands to (16 GiB).
pub const MAX_EXPANDED_BYTES_DEFAULT: u64 = 16 << 30;
/// Default cap on an input that must be held in memory (512 MiB).
pub const MAX_IN_MEMORY_BYTES_DEFAULT: u64 = 512 << 20;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_record_bytes: MAX_RECORD_BYTES_DEFAULT,
            max_expanded_bytes: MAX_EXPANDED_BYTES_DEFAULT,
            max_ratio: default_max_ratio(),
            max_in_memory_bytes: MAX_IN_MEMORY_BYTES_DEFAULT,
            max_depth: default_max_depth(),
        }
    }
}

/// A source contract: everything the pipeline needs to know about one source, as data.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    /// The source id (`st_marys`): also the `source_system` value and the SFTP prefix.
    pub source: String,
    /// The canonical dataset this source feeds (`encounter`).
    pub dataset: String,
    #[serde(default)]
    pub description: String,
    /// Object key prefixes (relative to the ingestion bucket) that belong to this source.
    pub keys: Vec<String>,
    pub format: Format,
    /// The text encoding when it is not UTF-8 (e.g. `"windows-1252"`); a BOM in the file wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<TextEncoding>,
    /// Canonical column -> source field (delimited: header name; JSON: a path like `a.b[0].c`).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Source fields deliberately not carried (delimited: must be header names).
    #[serde(default)]
    pub drop: Vec<String>,
    /// Canonical column -> a value every row gets (normalised by the column's rule).
    #[serde(default)]
    pub constants: BTreeMap<String, String>,
    /// Date column -> strftime-style formats tried in order (`%Y %m %d %H %M %S %b %B %y %f %%`).
    #[serde(default)]
    pub dates: BTreeMap<String, Vec<String>>,
    /// List column -> separator of the items in a text value.
    #[serde(default)]
    pub lists: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: Limits,
}

/// The FHIR resources a `fhir_bundle` contract can read fields from.
pub const FHIR_RESOURCES: &[&str] = &["Encounter", "Patient", "Condition"];

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
/// field separator itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7Path {
    pub segment: String,
    pub field: usize,
    pub component: Option<usize>,
    pub subcomponent: Option<usize>,
}

impl Hl7Path {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (seg, rest) = s.split_once('-').ok_or_else(|| format!("`{s}` is not like `PID-5.1`"))?;
        if seg.len() != 3 || !seg.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            return Err(format!("`{s}`: the segment id must be 3 upper-case letters or digits, like `PID`"));
        }
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
            component: nums.get(1).copied(),
            subcomponent: nums.get(2).copied(),
        })
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

/// One piece of a parsed date format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateItem {
    Year4,
    Year2,
    Month2,
    Day2,
    Hour2,
    Minute2,
    Second2,
    /// `%f`: 1 to 9 fraction digits.
    Fraction,
    /// `%b`: Jan..Dec, any case.
    MonthAbbr,
    /// `%B`: January..December, any case.
    MonthName,
    /// `%z`: a UTC offset (`Z`, `+05:00`, `-0500`, `+05`); the date is the local one written.
    Offset,
    Literal(char),
}

/// A parsed strftime-style date format; every numeric field is zero-padded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateFormat {
    pub pattern: String,
    pub items: Vec<DateItem>,
}

impl DateFormat {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let mut items = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                items.push(DateItem::Literal(c));
                continue;
            }
            let item = match chars.next() {
                Some('Y') => DateItem::Year4,
                Some('y') => DateItem::Year2,
                Some('m') => DateItem::Month2,
                Some('d') => DateItem::Day2,
                Some('H') => DateItem::Hour2,
                Some('M') => DateItem::Minute2,
                Some('S') => DateItem::Second2,
                Some('f') => DateItem::Fraction,
                Some('b') => DateItem::MonthAbbr,
                Some('B') => DateItem::MonthName,
                Some('z') => DateItem::Offset,
                Some('%') => DateItem::Literal('%'),
                Some(o) => {
                    return Err(format!(
                        "`{pattern}`: %{o} is not supported (use %Y %y %m %d %H %M %S %f %b %B %z %%)"
                    ))
                }
                None => return Err(format!("`{pattern}` ends with a lone %")),
            };
            items.push(item);
        }
        let has = |i: &DateItem| items.contains(i);
        if !(has(&DateItem::Year4) || has(&DateItem::Year2))
            || !(has(&DateItem::Month2) || has(&DateItem::MonthAbbr) || has(&DateItem::MonthName))
            || !has(&DateItem::Day2)
        {
            return Err(format!("`{pattern}` needs a year, a month and a day"));
        }
        Ok(Self { pattern: pattern.to_string(), items })
    }
}

impl Contract {
    /// Reads, parses and validates a contract file against the catalog.
    pub fn load(path: &Path, catalog: &Catalog) -> Result<Self, ContractError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ContractError::new(&origin, None, format!("cannot read contract: {e}")))?;
        Self::from_toml_str(&text, &origin, catalog)
    }

    /// Parses and validates a contract; `origin` names the file in errors.
    pub fn from_toml_str(text: &str, origin: &str, catalog: &Catalog) -> Result<Self, ContractError> {
        let c: Contract = toml::from_str(text).map_err(|e| {
            ContractError::new(
                origin,
                e.span().map(|s| line_of(text, s.start)),
                e.message().trim().to_string(),
            )
        })?;
        c.validate(text, origin, catalog)?;
        Ok(c)
    }

    /// Serialises the contract back to TOML (what `lake contract publish` stores).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Warnings that do not stop the contract from being used.
    pub fn warnings(&self, catalog: &Catalog) -> Vec<String> {
        let Some(schema) = catalog.get(&self.dataset) else { return vec![] };
        schema
            .required()
            .filter(|c| !self.fields.contains_key(*c) && !self.constants.contains_key(*c))
            .map(|c| format!("required column `{c}` is not mapped: every row will be a bad record"))
            .collect()
    }

    /// The parsed formats of a date column (validated on load, so this cannot fail afterwards).
    pub fn date_formats(&self, column: &str) -> Vec<DateFormat> {
        self.dates
            .get(column)
            .map(|v| v.iter().filter_map(|p| DateFormat::parse(p).ok()).collect())
            .unwrap_or_default()
    }

    fn validate(&self, text: &str, origin: &str, catalog: &Catalog) -> Result<(), ContractError> {
        let err = |key: &str, msg: String| ContractError::at_key(origin, text, key, msg);
        if self.source.is_empty()
            || !self
                .source
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            return Err(err(
                "source",
                format!("source id `{}` must be lower-case letters, digits, `_` or `-`", self.source),
            ));
        }
        let schema = catalog.get(&self.dataset).ok_or_else(|| {
            err(
                "dataset",
                format!(
                    "unknown canonical dataset `{}` (known: {})",
                    self.dataset,
                    catalog.names().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        if self.keys.is_empty() {
            return Err(err(
                "keys",
                "`keys` needs at least one object key prefix, e.g. [\"st_marys/\"]".into(),
            ));
        }
        for k in &self.keys {
            if k.is_empty() || k.starts_with('/') || k.split('/').any(|s| s == "..") {
                return Err(err(
                    "keys",
                    format!("key prefix `{k}` must be relative, non-empty, without `..`"),
                ));
            }
        }
        if self.limits.max_record_bytes < 1024 {
            return Err(err("max_record_bytes", "max_record_bytes must be at least 1024".into()));
        }

        // Format-specific checks.
        match &self.format {
            Format::Delimited { delimiter, quote, header } => {
                if *delimiter == '\n' || *delimiter == '\r' || !delimiter.is_ascii() {
                    return Err(err(
                        "delimiter",
                        format!("delimiter {delimiter:?} must be one ASCII character other than a line end"),
                    ));
                }
                if let Some(q) = quote {
                    if q == delimiter || !q.is_ascii() || *q == '\n' || *q == '\r' {
                        return Err(err("quote", format!("quote {q:?} must be one ASCII character other than the delimiter and line ends")));
                    }
                }
                if header.is_empty() {
                    return Err(err("header", "a delimited format needs its expected `header`".into()));
                }
                let mut seen = HashSet::new();
                for h in header {
                    if !seen.insert(h.as_str()) {
                        return Err(err("header", format!("header column `{h}` appears twice")));
                    }
                }
                for (col, field) in &self.fields {
                    if !seen.contains(field.as_str()) {
                        return Err(err(
                            col,
                            format!("`{col}` maps source field `{field}`, which is not in the header"),
                        ));
                    }
                }
                for d in &self.drop {
                    if !seen.contains(d.as_str()) {
                        return Err(err("drop", format!("dropped field `{d}` is not in the header")));
                    }
                }
                let mapped: HashSet<&str> = self.fields.values().map(String::as_str).collect();
                for h in header {
                    if !mapped.contains(h.as_str()) && !self.drop.contains(h) {
                        return Err(err(
                            "header",
                            format!("header column `{h}` is neither mapped in [fields] nor listed in `drop`"),
                        ));
                    }
                }
            }
            Format::JsonLines | Format::JsonArray => {
                for (col, path) in &self.fields {
                    JsonPath::parse(path).map_err(|m| err(col, format!("`{col}`: bad JSON path: {m}")))?;
                }
            }
            Format::FixedWidth { columns, record_type, .. } => {
                if columns.is_empty() {
                    return Err(err("columns", "a fixed_width format needs its `columns`".into()));
                }
                let mut seen = HashSet::new();
                for c in columns {
                    if !seen.insert(c.name.as_str()) {
                        return Err(err("columns", format!("column `{}` appears twice", c.name)));
                    }
                    let ok = c.start >= 1
                        && match (c.length, c.end) {
                            (Some(l), None) => l >= 1,
                            (None, Some(e)) => e >= c.start,
                            _ => false,
                        };
                    if !ok {
                        let line =
                            locate_text(text, &format!("\"{}\"", c.name)).or_else(|| locate(text, "columns"));
                        return Err(ContractError::new(
                            origin,
                            line,
                            format!(
                                "column `{}`: needs `start` (1-based) and exactly one of `length` (>= 1) or `end` (>= start)",
                                c.name
                            ),
                        ));
                    }
                }
                if let Some(rt) = record_type {
                    if rt.start < 1 || rt.length < 1 || rt.keep.is_empty() {
                        return Err(err(
                            "record_type",
                            "record_type needs `start` >= 1, `length` >= 1 and the codes to `keep`".into(),
                        ));
                    }
                    if let Some(k) = rt.keep.iter().find(|k| k.chars().count() != rt.length) {
                        return Err(err(
                            "record_type",
                            format!("record type `{k}` is not {} characters long", rt.length),
                        ));
                    }
                }
                for (col, field) in &self.fields {
                    if !seen.contains(field.as_str()) {
                        return Err(err(col, format!("`{col}` maps `{field}`, which is not in `columns`")));
                    }
                }
                for d in &self.drop {
                    if !seen.contains(d.as_str()) {
                        return Err(err("drop", format!("dropped field `{d}` is not in `columns`")));
                    }
                }
                let mapped: HashSet<&str> = self.fields.values().map(String::as_str).collect();
                if let Some(c) =
                    columns.iter().find(|c| !mapped.contains(c.name.as_str()) && !self.drop.contains(&c.name))
                {
                    return Err(err(
                        "columns",
                        format!("column `{}` is neither mapped in [fields] nor listed in `drop`", c.name),
                    ));
                }
            }
            Format::Hl7v2 => {
                for (col, path) in &self.fields {
                    Hl7Path::parse(path).map_err(|m| err(col, format!("`{col}`: bad HL7 path: {m}")))?;
                }
            }
            Format::FhirBundle => {
                for (col, path) in &self.fields {
                    let p = JsonPath::parse(path)
                        .map_err(|m| err(col, format!("`{col}`: bad FHIR path: {m}")))?;
                    match p.0.first() {
                        Some(PathSeg::Key(r)) if FHIR_RESOURCES.contains(&r.as_str()) && p.0.len() > 1 => {}
                        _ => {
                            return Err(err(
                                col,
                                format!(
                                    "`{col}`: a FHIR path starts with the resource ({}) and a field, like `Patient.birthDate`",
                                    FHIR_RESOURCES.join(", ")
                                ),
                            ))
                        }
                    }
                }
            }
            Format::Xml { record } => {
                XmlPath::parse_record(record).map_err(|m| err("record", m))?;
                for (col, path) in &self.fields {
                    XmlPath::parse(path).map_err(|m| err(col, format!("`{col}`: bad XML path: {m}")))?;
                }
            }
            Format::Excel { sheet, sheet_index, header_row } => {
                if sheet.is_some() && sheet_index.is_some() {
                    return Err(err(
                        "sheet_index",
                        "give `sheet` (a name) or `sheet_index`, not both".into(),
                    ));
                }
                if *sheet_index == Some(0) {
                    return Err(err("sheet_index", "sheet_index counts from 1".into()));
                }
                if *header_row == 0 {
                    return Err(err("header_row", "header_row counts from 1".into()));
                }
                if self.encoding.is_some() {
                    return Err(err(
                        "encoding",
                        "a workbook carries its own encoding: remove `encoding`".into(),
                    ));
                }
            }
        }
        if self.limits.max_ratio < 2 {
            return Err(err("max_ratio", "max_ratio must be at least 2".into()));
        }
        if self.limits.max_depth < 2 {
            return Err(err("max_depth", "max_depth must be at least 2".into()));
        }

        // Mapping, constants, dates and lists against the canonical schema.
        for (col, field) in &self.fields {
            let c = schema.column(col).ok_or_else(|| {
                err(col, format!("`{col}` is not a column of canonical dataset `{}`", schema.name))
            })?;
            if c.semantic == Semantic::Constant {
                return Err(err(col, format!("`{col}` is set by the pipeline and cannot be mapped")));
            }
            if field.trim().is_empty() {
                return Err(err(col, format!("`{col}` maps an empty field name")));
            }
        }
        for col in self.constants.keys() {
            let c = schema.column(col).ok_or_else(|| {
                err(col, format!("constant `{col}` is not a column of canonical dataset `{}`", schema.name))
            })?;
            if c.semantic == Semantic::Constant {
                return Err(err(col, format!("`{col}` is set by the pipeline and cannot be a constant")));
            }
            if self.fields.contains_key(col) {
                return Err(err(col, format!("`{col}` is both mapped and a constant: choose one")));
            }
        }
        for c in schema.columns.iter().filter(|c| c.semantic == Semantic::Date) {
            let used = self.fields.contains_key(&c.name) || self.constants.contains_key(&c.name);
            match self.dates.get(&c.name) {
                None if used => {
                    return Err(ContractError::new(
                        origin,
                        locate(text, "dates"),
                        format!(
                            "date column `{}` needs its formats in [dates], e.g. {} = [\"%Y-%m-%d\"]",
                            c.name, c.name
                        ),
                    ))
                }
                Some(v) if v.is_empty() => {
                    return Err(err(&c.name, format!("date column `{}` lists no formats", c.name)))
                }
                Some(v) => {
                    for p in v {
                        DateFormat::parse(p)
                            .map_err(|m| err(&c.name, format!("date column `{}`: {m}", c.name)))?;
                    }
                }
                None => {}
            }
        }
        for col in self.dates.keys() {
            match schema.column(col) {
                Some(c) if c.semantic == Semantic::Date => {}
                _ => return Err(err(col, format!("[dates] names `{col}`, which is not a date column"))),
            }
        }
        for (col, sep) in &self.lists {
            match schema.column(col) {
                Some(c) if c.parquet_type == ParquetType::ListString => {}
                _ => return Err(err(col, format!("[lists] names `{col}`, which is not a list column"))),
            }
            if sep.is_empty() {
                return Err(err(col, format!("list column `{col}` has an empty separator")));
            }
        }
        if matches!(self.format, Format::Delimited { .. } | Format::FixedWidth { .. }) {
            for c in schema.columns.iter().filter(|c| c.parquet_type == ParquetType::ListString) {
                if self.fields.contains_key(&c.name) && !self.lists.contains_key(&c.name) {
                    return Err(ContractError::new(
                        origin,
                        locate(text, "lists").or_else(|| locate(text, &c.name)),
                        format!(
                            "list column `{}` needs its separator in [lists], e.g. {} = \";\"",
                            c.name, c.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::builtin()
    }

    const GOOD: &str = r#"
source = "demo"
dataset = "encounter"
keys = ["demo/"]
drop = ["Extra"]

[format]
format = "delimited"
delimiter = ","
quote = '"'
header = ["Id", "Mrn", "Dob", "Extra"]

[fields]
encounter_id = "Id"
patient_id = "Mrn"
dob = "Dob"

[dates]
dob = ["%m/%d/%Y"]
"#;

    #[test]
    fn a_good_contract_loads() {
        let c = Contract::from_toml_str(GOOD, "demo.toml", &catalog()).unwrap();
        assert_eq!(c.source, "demo");
        assert!(c.warnings(&catalog()).iter().any(|w| w.contains("`ssn`")));
    }

    #[test]
    fn unmapped_header_column_is_named_with_its_line() {
        let text = GOOD.replace("drop = [\"Extra\"]", "drop = []");
        let e = Contract::from_toml_str(&text, "demo.toml", &catalog()).unwrap_err();
        assert!(e.message.contains("`Extra` is neither mapped"), "{e}");
        assert_eq!(e.line, Some(11), "{e}");
    }

    #[test]
    fn unknown_canonical_column_is_an_error() {
        let text = GOOD.replace("dob = \"Dob\"", "dob = \"Dob\"\nbirthday = \"Dob\"");
        let e = Contract::from_toml_str(&text, "demo.toml", &catalog()).unwrap_err();
        assert!(e.to_string().contains("`birthday` is not a column of canonical dataset `encounter`"), "{e}");
    }

    #[test]
    fn bad_date_format_is_explained() {
        let text = GOOD.replace("%m/%d/%Y", "%m/%d/%Q");
        let e = Contract::from_toml_str(&text, "demo.toml", &catalog()).unwrap_err();
        assert!(e.message.contains("%Q is not supported"), "{e}");
    }

    #[test]
    fn toml_syntax_error_has_a_line() {
        let e = Contract::from_toml_str("source = \"x\"\nkeys = [", "x.toml", &catalog()).unwrap_err();
        assert_eq!(e.origin, "x.toml");
        assert!(e.line.is_some());
    }

    #[test]
    fn unknown_format_is_listed() {
        let text = GOOD.replace("format = \"delimited\"", "format = \"parquet\"");
        let e = Contract::from_toml_str(&text, "demo.toml", &catalog()).unwrap_err();
        assert!(e.message.contains("unknown variant `parquet`"), "{e}");
    }

    const FIXED: &str = r#"
source = "fw"
dataset = "encounter"
keys = ["fw/"]
encoding = "windows-1252"
drop = ["FILLER"]

[format]
format = "fixed_width"
header_lines = 1
record_type = { start = 1, length = 1, keep = ["D"] }
columns = [
  { name = "MRN", start = 2, length = 8 },
  { name = "DOB", start = 10, end = 17 },
  { name = "FILLER", start = 18, length = 3 },
]

[fields]
patient_id = "MRN"
dob = "DOB"

[dates]
dob = ["%Y%m%d"]
"#;

    #[test]
    fn fixed_width_contract_loads_and_its_mistakes_are_located() {
        let c = Contract::from_toml_str(FIXED, "fw.toml", &catalog()).unwrap();
        assert_eq!(c.encoding, Some(TextEncoding::Windows1252));
        let Format::FixedWidth { columns, header_lines, .. } = &c.format else { panic!() };
        assert_eq!((columns[1].range(), *header_lines), ((9, 17), 1));
        assert_eq!(c.format.family(), "delimited");

        let e = Contract::from_toml_str(&FIXED.replace(", end = 17", ""), "fw.toml", &catalog()).unwrap_err();
        assert!(e.message.contains("column `DOB`: needs `start` (1-based) and exactly one of"), "{e}");
        assert_eq!(e.line, Some(14), "{e}");
        let e = Contract::from_toml_str(&FIXED.replace("drop = [\"FILLER\"]", ""), "fw.toml", &catalog())
            .unwrap_err();
        assert!(e.message.contains("column `FILLER` is neither mapped"), "{e}");
        let e = Contract::from_toml_str(
            &FIXED.replace("keep = [\"D\"]", "keep = [\"DD\"]"),
            "fw.toml",
            &catalog(),
        )
        .unwrap_err();
        assert!(e.message.contains("record type `DD` is not 1 characters long"), "{e}");
        let e = Contract::from_toml_str(&FIXED.replace("windows-1252", "latin9"), "fw.toml", &catalog())
            .unwrap_err();
        assert!(e.message.contains("unknown variant `latin9`"), "{e}");
    }

    fn doc(format: &str, fields: &str) -> String {
        format!("source = \"d\"\ndataset = \"encounter\"\nkeys = [\"d/\"]\n\n[format]\n{format}\n\n[fields]\n{fields}\n")
    }

    #[test]
    fn hl7_fhir_and_xml_paths_are_checked() {
        let ok = |f: &str, x: &str| Contract::from_toml_str(&doc(f, x), "d.toml", &catalog());
        assert!(ok("format = \"hl7v2\"", "patient_id = \"PID-3.1\"\nlast_name = \"PID-5.1.2\"").is_ok());
        let e = ok("format = \"hl7v2\"", "patient_id = \"PID3\"").unwrap_err();
        assert!(e.message.contains("`patient_id`: bad HL7 path: `PID3` is not like `PID-5.1`"), "{e}");
        assert_eq!(e.line, Some(9));
        let e = ok("format = \"hl7v2\"", "patient_id = \"PID-0\"").unwrap_err();
        assert!(e.message.contains("positions start at 1"), "{e}");

        assert!(ok("format = \"fhir_bundle\"", "last_name = \"Patient.name[0].family\"").is_ok());
        let e = ok("format = \"fhir_bundle\"", "last_name = \"name[0].family\"").unwrap_err();
        assert!(e.message.contains("a FHIR path starts with the resource"), "{e}");

        let xml = "format = \"xml\"\nrecord = \"/Export/Patient/Encounter\"";
        assert!(ok(xml, "patient_id = \"../@mrn\"\nlast_name = \"../Name/Family\"").is_ok());
        let e = ok(xml, "patient_id = \"@mrn/x\"").unwrap_err();
        assert!(e.message.contains("an attribute `@name` must be the last step"), "{e}");
        let e = ok("format = \"xml\"\nrecord = \"Export/Patient\"", "patient_id = \"@mrn\"").unwrap_err();
        assert!(e.message.contains("must start with `/`"), "{e}");
        assert_eq!(e.line, Some(7));
    }

    #[test]
    fn excel_sheet_and_header_row_are_checked() {
        let ok = |f: &str| Contract::from_toml_str(&doc(f, "patient_id = \"MRN\""), "x.toml", &catalog());
        let c = ok("format = \"excel\"\nsheet = \"Visits\"").unwrap();
        assert_eq!(
            c.format,
            Format::Excel { sheet: Some("Visits".into()), sheet_index: None, header_row: 1 }
        );
        let e = ok("format = \"excel\"\nsheet = \"A\"\nsheet_index = 2").unwrap_err();
        assert!(e.message.contains("not both"), "{e}");
        assert_eq!(e.line, Some(8));
        assert!(ok("format = \"excel\"\nsheet_index = 0").unwrap_err().message.contains("counts from 1"));
        assert!(ok("format = \"excel\"\nheader_row = 0").unwrap_err().message.contains("counts from 1"));
        let text = doc("format = \"excel\"", "patient_id = \"MRN\"")
            .replace("[format]", "encoding = \"utf-16le\"\n[format]");
        let e = Contract::from_toml_str(&text, "x.toml", &catalog()).unwrap_err();
        assert!(e.message.contains("a workbook carries its own encoding"), "{e}");
    }

    #[test]
    fn every_format_survives_publish_round_trip() {
        for text in [
            FIXED.to_string(),
            doc("format = \"xml\"\nrecord = \"/A/B\"", "patient_id = \"@id\""),
            doc("format = \"excel\"\nsheet_index = 2\nheader_row = 3", "patient_id = \"MRN\""),
            doc("format = \"hl7v2\"", "patient_id = \"PID-3.1\""),
        ] {
            let c = Contract::from_toml_str(&text, "x.toml", &catalog()).unwrap();
            let back = Contract::from_toml_str(&c.to_toml(), "published", &catalog()).unwrap();
            assert_eq!(back, c);
        }
    }

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
}
