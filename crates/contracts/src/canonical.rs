use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{line_of, ContractError};

/// Parquet (Arrow) type of a canonical column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParquetType {
    String,
    Date32,
    Float64,
    #[serde(rename = "list<string>")]
    ListString,
}

/// Semantic type: the normalisation rule a canonical column applies to every source's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Semantic {
    /// Set by the pipeline (source id, file name); trimmed.
    Constant,
    /// Trimmed.
    Text,
    /// Trimmed, UPPER.
    TextUpper,
    /// Trimmed, lower.
    TextLower,
    /// Trimmed, inner whitespace runs collapsed to one space, UPPER.
    Name,
    /// Trimmed, parsed with the contract's formats in order; none parses: null.
    Date,
    /// M / F / U.
    Sex,
    /// `NNN-NN-NNNN` when valid, else null.
    Ssn,
    /// Five digits, leading zeros restored; ZIP+4 cut to five.
    Zip5,
    /// `NNN-NNN-NNNN`, a leading country code 1 dropped.
    Phone10,
    /// ICD-10 codes, UPPER, dotted after the third character.
    Icd10List,
    /// `$`, `,` and whitespace removed, parsed as a number.
    Money,
}

impl Semantic {
    /// The Parquet type this rule produces.
    pub fn parquet_type(self) -> ParquetType {
        match self {
            Semantic::Date => ParquetType::Date32,
            Semantic::Money => ParquetType::Float64,
            Semantic::Icd10List => ParquetType::ListString,
            _ => ParquetType::String,
        }
    }
}

/// One column of a canonical schema.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanonicalColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub parquet_type: ParquetType,
    pub semantic: Semantic,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub description: String,
}

/// A canonical dataset schema: the columns, in Parquet column order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanonicalSchema {
    pub name: String,
    pub version: u32,
    #[serde(default)]
    pub description: String,
    pub columns: Vec<CanonicalColumn>,
}

/// The embedded default schema, so the CLI and Lambdas work with no config directory at hand.
const ENCOUNTER_TOML: &str = include_str!("../../../config/canonical/encounter.toml");

impl CanonicalSchema {
    /// Parses and validates a schema; `origin` names the file in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ContractError> {
        let schema: CanonicalSchema = toml::from_str(text).map_err(|e| {
            ContractError::new(origin, e.span().map(|s| line_of(text, s.start)), e.message().to_string())
        })?;
        schema.validate(text, origin)?;
        Ok(schema)
    }

    fn validate(&self, text: &str, origin: &str) -> Result<(), ContractError> {
        if self.columns.is_empty() {
            return Err(ContractError::new(origin, None, "a canonical schema needs at least one column"));
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.columns {
            if !seen.insert(c.name.as_str()) {
                return Err(ContractError::at_key(
                    origin,
                    text,
                    "name",
                    format!("column `{}` is defined twice", c.name),
                ));
            }
            if c.semantic.parquet_type() != c.parquet_type {
                return Err(ContractError::new(
                    origin,
                    text.find(&format!("\"{}\"", c.name)).map(|o| line_of(text, o)),
                    format!(
                        "column `{}`: semantic type {:?} produces {:?}, but the column says {:?}",
                        c.name,
                        c.semantic,
                        c.semantic.parquet_type(),
                        c.parquet_type
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The built-in `encounter` schema (`config/canonical/encounter.toml`).
    pub fn encounter() -> Self {
        Self::from_toml_str(ENCOUNTER_TOML, "config/canonical/encounter.toml")
            .unwrap_or_else(|e| unreachable!("embedded encounter schema is invalid: {e}"))
    }

    pub fn column(&self, name: &str) -> Option<&CanonicalColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Names of the required columns, in column order.
    pub fn required(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().filter(|c| c.required).map(|c| c.name.as_str())
    }
}

/// The canonical schemas known to a run, by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    schemas: BTreeMap<String, CanonicalSchema>,
}

impl Catalog {
    /// The schemas built into the binary.
    pub fn builtin() -> Self {
        let mut c = Self::default();
        c.insert(CanonicalSchema::encounter());
        c
    }

    /// The built-in schemas, overridden and extended by every `*.toml` in `dir`.
    pub fn load_dir(dir: &Path) -> Result<Self, ContractError> {
        let mut c = Self::builtin();
        let origin = dir.display().to_string();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| ContractError::new(&origin, None, format!("cannot read directory: {e}")))?;
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths.into_iter().filter(|p| p.extension().is_some_and(|x| x == "toml")) {
            let o = p.display().to_string();
            let text = std::fs::read_to_string(&p)
                .map_err(|e| ContractError::new(&o, None, format!("cannot read: {e}")))?;
            c.insert(CanonicalSchema::from_toml_str(&text, &o)?);
        }
        Ok(c)
    }

    pub fn insert(&mut self, s: CanonicalSchema) {
        self.schemas.insert(s.name.clone(), s);
    }

    pub fn get(&self, name: &str) -> Option<&CanonicalSchema> {
        self.schemas.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.schemas.keys().map(String::as_str)
    }
}
