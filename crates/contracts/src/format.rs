//! Formats: how a source writes its files (the closed [`Format`] enum and its options), the text
//! encodings a contract may declare, and the work-queue [`FormatFamily`] each format belongs to.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{ContractError, Origin};
use crate::fhir_path::FhirVersion;
use crate::field_path::XmlPath;

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
    /// FHIR, JSON or XML: a Bundle, a single resource, or NDJSON of resources. One row per
    /// Encounter, joined with its Patient and Conditions by the reference paths of the declared
    /// `version` (default R4). Fields are FHIRPath-subset paths like `Patient.name[0].family`.
    /// With `export`, the source sends FHIR Bulk Data exports: one folder per export, NDJSON
    /// files per resource type, joined when the export's manifest arrives.
    FhirBundle {
        #[serde(default)]
        version: FhirVersion,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        export: Option<FhirExport>,
    },
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

/// A FHIR Bulk Data export: `<prefix>/<export folder>/{manifest, Patient.ndjson, ...}`. The
/// parts wait until the manifest arrives; its `output` list names them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FhirExport {
    /// The manifest's file name in the export folder (the Bulk Data status response body).
    #[serde(default = "default_manifest")]
    pub manifest: String,
    /// The resource types read from the export; the manifest's other outputs are skipped.
    #[serde(default = "default_export_types")]
    pub types: Vec<String>,
}

fn default_manifest() -> String {
    "manifest.json".into()
}

fn default_export_types() -> Vec<String> {
    crate::fhir_path::FHIR_RESOURCES.iter().map(|s| s.to_string()).collect()
}

impl FhirExport {
    fn validate(&self, at: &Origin) -> Result<(), ContractError> {
        let m = &self.manifest;
        let bare = !m.is_empty()
            && m != "."
            && m != ".."
            && !m.contains(['/', '\\'])
            && !m.chars().any(char::is_control);
        if !bare {
            return Err(
                at.at("manifest", "export.manifest is a file name in the export folder, like manifest.json")
            );
        }
        if self.types.is_empty() {
            return Err(at.at("types", "export.types names the resource types to read"));
        }
        if let Some(t) = self.types.iter().find(|t| !crate::fhir_path::FHIR_RESOURCES.contains(&t.as_str())) {
            return Err(at.at(
                "types",
                format!("export type `{t}` is not one of {}", crate::fhir_path::FHIR_RESOURCES.join(", ")),
            ));
        }
        Ok(())
    }
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

/// The workflow queue family a format is sent to. Closed: every format belongs to one, and a
/// typo is a compile error, not a silent fallback. Serialised as `"delimited"` / `"json"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FormatFamily {
    /// Line-oriented text: delimited, fixed-width, HL7 v2.
    Delimited,
    /// Documents: JSON, FHIR, XML, workbooks.
    Json,
}

impl FormatFamily {
    pub const ALL: [FormatFamily; 2] = [FormatFamily::Delimited, FormatFamily::Json];

    /// The family's name as used in queue and function names (`delimited`, `json`).
    pub fn as_str(self) -> &'static str {
        match self {
            FormatFamily::Delimited => "delimited",
            FormatFamily::Json => "json",
        }
    }
}

impl fmt::Display for FormatFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Format {
    /// The workflow queue family: line-oriented text formats go to `delimited`, document formats
    /// (JSON, FHIR, XML) to `json`. Both run the same binary; the split only spreads load.
    pub fn family(&self) -> FormatFamily {
        match self {
            Format::Delimited { .. } | Format::FixedWidth { .. } | Format::Hl7v2 => FormatFamily::Delimited,
            Format::JsonLines
            | Format::JsonArray
            | Format::FhirBundle { .. }
            | Format::Xml { .. }
            | Format::Excel { .. } => FormatFamily::Json,
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
            Format::FhirBundle { .. } => "fhir_bundle",
            Format::Xml { .. } => "xml",
            Format::Excel { .. } => "excel",
        }
    }

    /// The source field names of a layout that declares them (a delimited header, fixed-width
    /// columns): what [fields] and `drop` must name. `None` for formats whose fields are paths.
    pub fn declared_fields(&self) -> Option<Vec<&str>> {
        match self {
            Format::Delimited { header, .. } => Some(header.iter().map(String::as_str).collect()),
            Format::FixedWidth { columns, .. } => Some(columns.iter().map(|c| c.name.as_str()).collect()),
            _ => None,
        }
    }

    /// The format's own options, on their own; `encoding` is the contract's declared encoding
    /// (a workbook must not declare one).
    pub(crate) fn validate(&self, encoding: Option<TextEncoding>, at: &Origin) -> Result<(), ContractError> {
        match self {
            Format::Delimited { delimiter, quote, header } => {
                validate_delimited(*delimiter, *quote, header, at)
            }
            Format::FixedWidth { columns, record_type, .. } => {
                validate_columns(columns, at)?;
                record_type.as_ref().map_or(Ok(()), |rt| rt.validate(at))
            }
            Format::Xml { record } => XmlPath::parse_record(record).map(drop).map_err(|m| at.at("record", m)),
            Format::Excel { sheet, sheet_index, header_row } => {
                validate_excel(sheet.as_deref(), *sheet_index, *header_row, encoding, at)
            }
            Format::FhirBundle { export: Some(e), .. } => e.validate(at),
            Format::JsonLines | Format::JsonArray | Format::Hl7v2 | Format::FhirBundle { .. } => Ok(()),
        }
    }
}

fn validate_delimited(
    delimiter: char,
    quote: Option<char>,
    header: &[String],
    at: &Origin,
) -> Result<(), ContractError> {
    if delimiter == '\n' || delimiter == '\r' || !delimiter.is_ascii() {
        return Err(at.at(
            "delimiter",
            format!("delimiter {delimiter:?} must be one ASCII character other than a line end"),
        ));
    }
    if let Some(q) = quote {
        if q == delimiter || !q.is_ascii() || q == '\n' || q == '\r' {
            return Err(at.at(
                "quote",
                format!("quote {q:?} must be one ASCII character other than the delimiter and line ends"),
            ));
        }
    }
    if header.is_empty() {
        return Err(at.at("header", "a delimited format needs its expected `header`"));
    }
    let mut seen = HashSet::new();
    if let Some(h) = header.iter().find(|h| !seen.insert(h.as_str())) {
        return Err(at.at("header", format!("header column `{h}` appears twice")));
    }
    Ok(())
}

/// A fixed-width layout: at least one column, names unique, every span well-formed.
fn validate_columns(columns: &[Span], at: &Origin) -> Result<(), ContractError> {
    if columns.is_empty() {
        return Err(at.at("columns", "a fixed_width format needs its `columns`"));
    }
    let mut seen = HashSet::new();
    for c in columns {
        if !seen.insert(c.name.as_str()) {
            return Err(at.at("columns", format!("column `{}` appears twice", c.name)));
        }
        c.validate(at)?;
    }
    Ok(())
}

impl Span {
    /// 1-based `start` and exactly one of a positive `length` or an `end` not before `start`;
    /// reported at the column's own line.
    fn validate(&self, at: &Origin) -> Result<(), ContractError> {
        let ok = self.start >= 1
            && match (self.length, self.end) {
                (Some(l), None) => l >= 1,
                (None, Some(e)) => e >= self.start,
                _ => false,
            };
        if ok {
            return Ok(());
        }
        let line = at.locate_text(&format!("\"{}\"", self.name)).or_else(|| at.locate("columns"));
        Err(at.at_line(
            line,
            format!(
                "column `{}`: needs `start` (1-based) and exactly one of `length` (>= 1) or `end` (>= start)",
                self.name
            ),
        ))
    }
}

impl RecordType {
    /// A positive span and codes of exactly its length to keep.
    fn validate(&self, at: &Origin) -> Result<(), ContractError> {
        if self.start < 1 || self.length < 1 || self.keep.is_empty() {
            return Err(
                at.at("record_type", "record_type needs `start` >= 1, `length` >= 1 and the codes to `keep`")
            );
        }
        if let Some(k) = self.keep.iter().find(|k| k.chars().count() != self.length) {
            return Err(
                at.at("record_type", format!("record type `{k}` is not {} characters long", self.length))
            );
        }
        Ok(())
    }
}

fn validate_excel(
    sheet: Option<&str>,
    sheet_index: Option<usize>,
    header_row: usize,
    encoding: Option<TextEncoding>,
    at: &Origin,
) -> Result<(), ContractError> {
    if sheet.is_some() && sheet_index.is_some() {
        return Err(at.at("sheet_index", "give `sheet` (a name) or `sheet_index`, not both"));
    }
    if sheet_index == Some(0) {
        return Err(at.at("sheet_index", "sheet_index counts from 1"));
    }
    if header_row == 0 {
        return Err(at.at("header_row", "header_row counts from 1"));
    }
    if encoding.is_some() {
        return Err(at.at("encoding", "a workbook carries its own encoding: remove `encoding`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    struct Doc {
        format: Format,
    }

    fn check_with(format: &str, encoding: Option<TextEncoding>) -> Result<Format, String> {
        let text = format!("[format]\n{format}\n");
        let d: Doc = toml::from_str(&text).unwrap();
        d.format
            .validate(encoding, &Origin::new("f.toml", &text))
            .map(|()| d.format)
            .map_err(|e| e.to_string())
    }

    fn check(format: &str) -> Result<Format, String> {
        check_with(format, None)
    }

    #[test]
    fn delimited_options_are_checked() {
        let d = "format = \"delimited\"\n";
        assert!(check(&format!("{d}delimiter = \"|\"\nquote = '\"'\nheader = [\"a\", \"b\"]")).is_ok());
        assert_eq!(
            check(&format!("{d}delimiter = \"\\n\"\nheader = [\"a\"]")).unwrap_err(),
            "f.toml:3: delimiter '\\n' must be one ASCII character other than a line end"
        );
        assert_eq!(
            check(&format!("{d}delimiter = \",\"\nquote = \",\"\nheader = [\"a\"]")).unwrap_err(),
            "f.toml:4: quote ',' must be one ASCII character other than the delimiter and line ends"
        );
        assert_eq!(
            check(&format!("{d}delimiter = \",\"\nheader = []")).unwrap_err(),
            "f.toml:4: a delimited format needs its expected `header`"
        );
        assert_eq!(
            check(&format!("{d}delimiter = \",\"\nheader = [\"a\", \"b\", \"a\"]")).unwrap_err(),
            "f.toml:4: header column `a` appears twice"
        );
    }

    #[test]
    fn fixed_width_columns_and_record_type_are_checked() {
        let fw = |rest: &str| check(&format!("format = \"fixed_width\"\n{rest}"));
        let col = "columns = [\n  { name = \"A\", start = 1, length = 2 },\n  { name = \"B\", start = 3, end = 4 },\n]";
        let f = fw(col).unwrap();
        assert_eq!(f.declared_fields(), Some(vec!["A", "B"]));
        assert_eq!(fw("columns = []").unwrap_err(), "f.toml:3: a fixed_width format needs its `columns`");
        assert_eq!(fw(&col.replace("\"B\"", "\"A\"")).unwrap_err(), "f.toml:3: column `A` appears twice");
        assert_eq!(
            fw(&col.replace("end = 4", "end = 2")).unwrap_err(),
            "f.toml:5: column `B`: needs `start` (1-based) and exactly one of `length` (>= 1) or `end` (>= start)"
        );
        assert!(fw(&col.replace("start = 1, length = 2", "start = 1, length = 2, end = 2")).is_err());
        assert_eq!(
            fw(&format!("record_type = {{ start = 1, length = 0, keep = [\"\"] }}\n{col}")).unwrap_err(),
            "f.toml:3: record_type needs `start` >= 1, `length` >= 1 and the codes to `keep`"
        );
        assert_eq!(
            fw(&format!("record_type = {{ start = 1, length = 1, keep = [\"D\", \"HD\"] }}\n{col}"))
                .unwrap_err(),
            "f.toml:3: record type `HD` is not 1 characters long"
        );
    }

    #[test]
    fn xml_record_and_excel_options_are_checked() {
        assert!(check("format = \"xml\"\nrecord = \"/A/B\"").is_ok());
        assert_eq!(
            check("format = \"xml\"\nrecord = \"A/B\"").unwrap_err(),
            "f.toml:3: record path `A/B` must start with `/`"
        );
        let x = "format = \"excel\"\n";
        assert!(check(&format!("{x}sheet_index = 2\nheader_row = 3")).is_ok());
        assert_eq!(
            check(&format!("{x}sheet = \"S\"\nsheet_index = 1")).unwrap_err(),
            "f.toml:4: give `sheet` (a name) or `sheet_index`, not both"
        );
        assert_eq!(check(&format!("{x}sheet_index = 0")).unwrap_err(), "f.toml:3: sheet_index counts from 1");
        assert_eq!(check(&format!("{x}header_row = 0")).unwrap_err(), "f.toml:3: header_row counts from 1");
        assert_eq!(
            check_with(x, Some(TextEncoding::Utf8)).unwrap_err(),
            "f.toml: a workbook carries its own encoding: remove `encoding`"
        );
    }

    #[test]
    fn a_fhir_export_is_checked() {
        let f = check("format = \"fhir_bundle\"\nexport = {}").unwrap();
        let Format::FhirBundle { export: Some(e), .. } = f else { panic!() };
        assert_eq!(e.manifest, "manifest.json");
        assert_eq!(e.types, ["Encounter", "Patient", "Condition"]);
        assert!(check("format = \"fhir_bundle\"").is_ok());
        for (export, msg) in [
            ("{ manifest = \"a/manifest.json\" }", "export.manifest is a file name"),
            ("{ manifest = \"..\" }", "export.manifest is a file name"),
            ("{ types = [] }", "export.types names the resource types"),
            ("{ types = [\"Observation\"] }", "export type `Observation` is not one of"),
        ] {
            let e = check(&format!("format = \"fhir_bundle\"\nexport = {export}")).unwrap_err();
            assert!(e.contains(msg), "{export}: {e}");
        }
        assert!(toml::from_str::<Doc>("[format]\nformat = \"fhir_bundle\"\nexport = { mani = 1 }").is_err());
    }

    #[test]
    fn every_format_has_its_family_and_the_family_keeps_its_name() {
        for (format, family) in [
            ("format = \"delimited\"\ndelimiter = \",\"\nheader = [\"a\"]", "delimited"),
            ("format = \"fixed_width\"\ncolumns = [{ name = \"a\", start = 1, length = 1 }]", "delimited"),
            ("format = \"hl7v2\"", "delimited"),
            ("format = \"json_lines\"", "json"),
            ("format = \"json_array\"", "json"),
            ("format = \"fhir_bundle\"", "json"),
            ("format = \"xml\"\nrecord = \"/A\"", "json"),
            ("format = \"excel\"", "json"),
        ] {
            let f = check(format).unwrap();
            assert_eq!(
                (f.family().as_str(), f.family().to_string()),
                (family, family.to_string()),
                "{format}"
            );
            assert!(format.contains(&format!("\"{}\"", f.name())), "{format}");
            #[derive(Deserialize, Serialize)]
            struct Q {
                family: FormatFamily,
            }
            let text = toml::to_string(&Q { family: f.family() }).unwrap();
            assert_eq!(text.trim(), format!("family = \"{family}\""));
            assert_eq!(toml::from_str::<Q>(&text).unwrap().family, f.family());
        }
        assert!(toml::from_str::<std::collections::BTreeMap<String, FormatFamily>>("f = \"csv\"").is_err());
    }
}
