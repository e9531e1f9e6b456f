//! Mapping: how a contract fills the canonical columns — [fields] (canonical column -> source
//! field), `drop`, [constants] and [lists] — checked against the format's fields and against the
//! canonical schema.

use std::collections::{BTreeMap, HashSet};

use crate::canonical::{CanonicalSchema, ParquetType, Semantic};
use crate::error::{ContractError, Origin};
use crate::fhir_path::FhirPath;
use crate::field_path::{Hl7Path, JsonPath, XmlPath};
use crate::format::Format;

/// The mapping tables of a contract, borrowed (they sit at the top level of the TOML).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mapping<'a> {
    pub fields: &'a BTreeMap<String, String>,
    pub drop: &'a [String],
    pub constants: &'a BTreeMap<String, String>,
    pub lists: &'a BTreeMap<String, String>,
}

/// Where a layout that names its fields declares them, for the words of its errors.
#[derive(Debug, Clone, Copy)]
enum Declared {
    /// A delimited file's `header`.
    Header,
    /// A fixed-width layout's `columns`.
    Columns,
}

impl Declared {
    fn key(self) -> &'static str {
        match self {
            Declared::Header => "header",
            Declared::Columns => "columns",
        }
    }

    fn not_declared(self, col: &str, field: &str) -> String {
        match self {
            Declared::Header => format!("`{col}` maps source field `{field}`, which is not in the header"),
            Declared::Columns => format!("`{col}` maps `{field}`, which is not in `columns`"),
        }
    }

    fn drop_not_declared(self, field: &str) -> String {
        match self {
            Declared::Header => format!("dropped field `{field}` is not in the header"),
            Declared::Columns => format!("dropped field `{field}` is not in `columns`"),
        }
    }

    fn unaccounted(self, field: &str) -> String {
        let what = match self {
            Declared::Header => "header column",
            Declared::Columns => "column",
        };
        format!("{what} `{field}` is neither mapped in [fields] nor listed in `drop`")
    }
}

impl Mapping<'_> {
    /// Whether the contract fills `column` (mapped or constant).
    pub fn sets(&self, column: &str) -> bool {
        self.fields.contains_key(column) || self.constants.contains_key(column)
    }

    /// Every source field is one the format can read: a declared name (and every declared name
    /// is mapped or dropped), or a path in the format's grammar.
    pub fn validate_against_format(&self, format: &Format, at: &Origin) -> Result<(), ContractError> {
        let path_error =
            |col: &str, kind: &str, m: String| at.at(col, format!("`{col}`: bad {kind} path: {m}"));
        match format {
            Format::Delimited { .. } | Format::FixedWidth { .. } => {
                let declared = if matches!(format, Format::Delimited { .. }) {
                    Declared::Header
                } else {
                    Declared::Columns
                };
                self.validate_declared(&format.declared_fields().unwrap_or_default(), declared, at)
            }
            Format::JsonLines | Format::JsonArray => {
                self.each_path(|col, p| JsonPath::parse(p).map(drop).map_err(|m| path_error(col, "JSON", m)))
            }
            Format::Hl7v2 => {
                self.each_path(|col, p| Hl7Path::parse(p).map(drop).map_err(|m| path_error(col, "HL7", m)))
            }
            Format::FhirBundle { .. } => self.each_path(|col, p| {
                FhirPath::parse(p).map(drop).map_err(|m| {
                    if m.starts_with("a FHIR path starts") {
                        at.at(col, format!("`{col}`: {m}"))
                    } else {
                        path_error(col, "FHIR", m)
                    }
                })
            }),
            Format::Xml { .. } => {
                self.each_path(|col, p| XmlPath::parse(p).map(drop).map_err(|m| path_error(col, "XML", m)))
            }
            Format::Excel { .. } => Ok(()),
        }
    }

    fn each_path(
        &self,
        check: impl Fn(&str, &str) -> Result<(), ContractError>,
    ) -> Result<(), ContractError> {
        self.fields.iter().try_for_each(|(col, path)| check(col, path))
    }

    fn validate_declared(
        &self,
        names: &[&str],
        declared: Declared,
        at: &Origin,
    ) -> Result<(), ContractError> {
        let names_set: HashSet<&str> = names.iter().copied().collect();
        if let Some((col, field)) = self.fields.iter().find(|(_, f)| !names_set.contains(f.as_str())) {
            return Err(at.at(col, declared.not_declared(col, field)));
        }
        if let Some(d) = self.drop.iter().find(|d| !names_set.contains(d.as_str())) {
            return Err(at.at("drop", declared.drop_not_declared(d)));
        }
        let mapped: HashSet<&str> = self.fields.values().map(String::as_str).collect();
        match names.iter().find(|n| !mapped.contains(**n) && !self.drop.iter().any(|d| d == *n)) {
            Some(n) => Err(at.at(declared.key(), declared.unaccounted(n))),
            None => Ok(()),
        }
    }

    /// [fields] and [constants] name columns of the schema that a source may fill, once each.
    pub fn validate_against_schema(
        &self,
        schema: &CanonicalSchema,
        at: &Origin,
    ) -> Result<(), ContractError> {
        for (col, field) in self.fields {
            let c = schema.column(col).ok_or_else(|| {
                at.at(col, format!("`{col}` is not a column of canonical dataset `{}`", schema.name))
            })?;
            if c.semantic == Semantic::Constant {
                return Err(at.at(col, format!("`{col}` is set by the pipeline and cannot be mapped")));
            }
            if field.trim().is_empty() {
                return Err(at.at(col, format!("`{col}` maps an empty field name")));
            }
        }
        for col in self.constants.keys() {
            let c = schema.column(col).ok_or_else(|| {
                at.at(col, format!("constant `{col}` is not a column of canonical dataset `{}`", schema.name))
            })?;
            if c.semantic == Semantic::Constant {
                return Err(at.at(col, format!("`{col}` is set by the pipeline and cannot be a constant")));
            }
            if self.fields.contains_key(col) {
                return Err(at.at(col, format!("`{col}` is both mapped and a constant: choose one")));
            }
        }
        Ok(())
    }

    /// [lists] names list columns with a non-empty separator; a text format (delimited,
    /// fixed-width) that maps a list column must give its separator.
    pub fn validate_lists(
        &self,
        schema: &CanonicalSchema,
        format: &Format,
        at: &Origin,
    ) -> Result<(), ContractError> {
        for (col, sep) in self.lists {
            match schema.column(col) {
                Some(c) if c.parquet_type == ParquetType::ListString => {}
                _ => return Err(at.at(col, format!("[lists] names `{col}`, which is not a list column"))),
            }
            if sep.is_empty() {
                return Err(at.at(col, format!("list column `{col}` has an empty separator")));
            }
        }
        if !matches!(format, Format::Delimited { .. } | Format::FixedWidth { .. }) {
            return Ok(());
        }
        let list_columns = schema.columns.iter().filter(|c| c.parquet_type == ParquetType::ListString);
        match list_columns
            .into_iter()
            .find(|c| self.fields.contains_key(&c.name) && !self.lists.contains_key(&c.name))
        {
            Some(c) => Err(at.at_line(
                at.locate("lists").or_else(|| at.locate(&c.name)),
                format!("list column `{}` needs its separator in [lists], e.g. {} = \";\"", c.name, c.name),
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// The mapping tables as a contract writes them, with the format they are checked against.
    #[derive(Deserialize)]
    struct Doc {
        format: Format,
        #[serde(default)]
        fields: BTreeMap<String, String>,
        #[serde(default)]
        drop: Vec<String>,
        #[serde(default)]
        constants: BTreeMap<String, String>,
        #[serde(default)]
        lists: BTreeMap<String, String>,
    }

    /// Runs the mapping rules in the order `Contract::validate` does; the error as displayed.
    fn check(text: &str) -> Result<(), String> {
        let d: Doc = toml::from_str(text).unwrap();
        let m = Mapping { fields: &d.fields, drop: &d.drop, constants: &d.constants, lists: &d.lists };
        let at = Origin::new("m.toml", text);
        let schema = CanonicalSchema::encounter();
        m.validate_against_format(&d.format, &at)
            .and_then(|()| m.validate_against_schema(&schema, &at))
            .and_then(|()| m.validate_lists(&schema, &d.format, &at))
            .map_err(|e| e.to_string())
    }

    const CSV: &str = "drop = [\"X\"]\n[format]\nformat = \"delimited\"\ndelimiter = \",\"\nheader = [\"Id\", \"Dx\", \"X\"]\n[fields]\nencounter_id = \"Id\"\ndiagnosis_codes = \"Dx\"\n[lists]\ndiagnosis_codes = \";\"\n";

    #[test]
    fn a_header_layout_is_mapped_or_dropped_field_by_field() {
        assert_eq!(check(CSV), Ok(()));
        assert_eq!(
            check(&CSV.replace("= \"Id\"", "= \"ID\"")).unwrap_err(),
            "m.toml:7: `encounter_id` maps source field `ID`, which is not in the header"
        );
        assert_eq!(
            check(&CSV.replace("drop = [\"X\"]", "drop = [\"X\", \"Y\"]")).unwrap_err(),
            "m.toml:1: dropped field `Y` is not in the header"
        );
        assert_eq!(
            check(&CSV.replace("drop = [\"X\"]", "drop = []")).unwrap_err(),
            "m.toml:5: header column `X` is neither mapped in [fields] nor listed in `drop`"
        );
    }

    #[test]
    fn a_fixed_width_layout_uses_its_own_words() {
        let fw = CSV.replace(
            "format = \"delimited\"\ndelimiter = \",\"\nheader = [\"Id\", \"Dx\", \"X\"]",
            "format = \"fixed_width\"\ncolumns = [{ name = \"Id\", start = 1, length = 1 }, { name = \"Dx\", start = 2, length = 1 }, { name = \"X\", start = 3, length = 1 }]",
        );
        assert_eq!(check(&fw), Ok(()));
        assert_eq!(
            check(&fw.replace("= \"Id\"\n", "= \"ID\"\n")).unwrap_err(),
            "m.toml:6: `encounter_id` maps `ID`, which is not in `columns`"
        );
        assert_eq!(
            check(&fw.replace("drop = [\"X\"]", "drop = [\"Y\"]")).unwrap_err(),
            "m.toml:1: dropped field `Y` is not in `columns`"
        );
        assert_eq!(
            check(&fw.replace("drop = [\"X\"]", "drop = []")).unwrap_err(),
            "m.toml:4: column `X` is neither mapped in [fields] nor listed in `drop`"
        );
        assert_eq!(
            check(&fw.replace("[lists]\ndiagnosis_codes = \";\"\n", "")).unwrap_err(),
            "m.toml:7: list column `diagnosis_codes` needs its separator in [lists], e.g. diagnosis_codes = \";\""
        );
    }

    #[test]
    fn path_formats_check_each_field_in_their_grammar() {
        let doc =
            |format: &str, path: &str| format!("[format]\n{format}\n[fields]\npatient_id = \"{path}\"\n");
        assert_eq!(
            check(&doc("format = \"json_lines\"", "a..b")).unwrap_err(),
            "m.toml:4: `patient_id`: bad JSON path: `a..b` has an empty segment"
        );
        assert_eq!(
            check(&doc("format = \"hl7v2\"", "PID-0")).unwrap_err(),
            "m.toml:4: `patient_id`: bad HL7 path: `PID-0`: positions start at 1"
        );
        assert_eq!(
            check(&doc("format = \"fhir_bundle\"", "Patient[")).unwrap_err(),
            "m.toml:4: `patient_id`: bad FHIR path: `Patient[`: `[` without `]`"
        );
        assert_eq!(
            check(&doc("format = \"fhir_bundle\"", "Observation.code")).unwrap_err(),
            "m.toml:4: `patient_id`: a FHIR path starts with the resource (Encounter, Patient, Condition) and a field, like `Patient.birthDate`"
        );
        assert!(check(&doc("format = \"fhir_bundle\"", "Patient")).is_err());
        assert_eq!(
            check(&doc("format = \"xml\"\nrecord = \"/A\"", "a/@b/c")).unwrap_err(),
            "m.toml:5: `patient_id`: bad XML path: `a/@b/c`: an attribute `@name` must be the last step"
        );
        assert_eq!(check(&doc("format = \"excel\"", "Any header")), Ok(()));
        // a JSON list column needs no separator: the value is an array
        assert_eq!(
            check(&doc("format = \"json_lines\"", "mrn").replace("patient_id", "diagnosis_codes")),
            Ok(())
        );
    }

    #[test]
    fn fields_constants_and_lists_are_checked_against_the_schema() {
        let doc = |tables: &str| format!("[format]\nformat = \"json_lines\"\n{tables}\n");
        for (tables, message) in [
            (
                "[fields]\nbirthday = \"b\"",
                "m.toml:4: `birthday` is not a column of canonical dataset `encounter`",
            ),
            (
                "[fields]\nsource_system = \"s\"",
                "m.toml:4: `source_system` is set by the pipeline and cannot be mapped",
            ),
            ("[fields]\nssn = \" \"", "m.toml:4: `ssn` maps an empty field name"),
            (
                "[constants]\nbirthday = \"b\"",
                "m.toml:4: constant `birthday` is not a column of canonical dataset `encounter`",
            ),
            (
                "[constants]\nsource_file = \"f\"",
                "m.toml:4: `source_file` is set by the pipeline and cannot be a constant",
            ),
            (
                "[fields]\nfacility = \"f\"\n[constants]\nfacility = \"North\"",
                "m.toml:4: `facility` is both mapped and a constant: choose one",
            ),
            ("[lists]\nssn = \";\"", "m.toml:4: [lists] names `ssn`, which is not a list column"),
            (
                "[lists]\ndiagnosis_codes = \"\"",
                "m.toml:4: list column `diagnosis_codes` has an empty separator",
            ),
        ] {
            assert_eq!(check(&doc(tables)).unwrap_err(), message, "{tables}");
        }
        assert_eq!(check(&doc("[constants]\nfacility = \"North\"")), Ok(()));
    }
}
