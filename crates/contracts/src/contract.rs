//! The source contract: its TOML shape, loading and publishing, and `validate` as the
//! composition of each noun's own rules (keys, limits, format, mapping, dates).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::canonical::{CanonicalSchema, Catalog};
use crate::dates::{self, DateFormat};
use crate::error::{line_of, ContractError, Origin};
use crate::format::{Format, TextEncoding};
use crate::keys;
use crate::limits::Limits;
use crate::mapping::Mapping;
use crate::values::ValueRules;

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
    /// What a value that does not fit its column becomes (`[values]`): never a silent change.
    #[serde(default, skip_serializing_if = "ValueRules::is_default")]
    pub values: ValueRules,
    /// Whether the source may re-send a file with the same bytes as one already DONE and have it
    /// ingested again (default: such a file is recorded as a duplicate, nothing is written).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_resend: bool,
    /// How often the source is expected to send (`"1d"`, `"12h"`, `"2bd"` business days): the
    /// scheduled guard alerts once when it is silent for longer, and once when it resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_every: Option<String>,
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

    /// Every rule, noun by noun, in the order a reader of the file meets them: who the source is
    /// and what it feeds, which keys it owns, its limits, its format, then its mapping.
    fn validate(&self, text: &str, origin: &str, catalog: &Catalog) -> Result<(), ContractError> {
        let at = Origin::new(origin, text);
        keys::validate_source_id(&self.source, &at)?;
        let schema = self.schema(catalog, &at)?;
        keys::validate_prefixes(&self.keys, &at)?;
        self.limits.validate(&at)?;
        self.values.validate(&at)?;
        crate::cadence::validate(self.expect_every.as_deref(), &at)?;
        self.format.validate(self.encoding, &at)?;
        let mapping = self.mapping();
        mapping.validate_against_format(&self.format, &at)?;
        mapping.validate_against_schema(schema, &at)?;
        dates::validate_table(&self.dates, schema, |c| mapping.sets(c), &at)?;
        mapping.validate_lists(schema, &self.format, &at)
    }

    /// The canonical schema of `dataset`, or an error listing the known ones.
    fn schema<'c>(&self, catalog: &'c Catalog, at: &Origin) -> Result<&'c CanonicalSchema, ContractError> {
        catalog.get(&self.dataset).ok_or_else(|| {
            at.at(
                "dataset",
                format!(
                    "unknown canonical dataset `{}` (known: {})",
                    self.dataset,
                    catalog.names().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    /// The source's cadence (`expect_every`), validated on load.
    pub fn cadence(&self) -> Option<crate::cadence::Cadence> {
        self.expect_every.as_deref().and_then(|t| crate::cadence::Cadence::parse(t).ok())
    }

    fn mapping(&self) -> Mapping<'_> {
        Mapping { fields: &self.fields, drop: &self.drop, constants: &self.constants, lists: &self.lists }
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
        assert_eq!(c.format.family().as_str(), "delimited");

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
}
