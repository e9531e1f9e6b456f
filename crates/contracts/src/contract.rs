use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::canonical::{Catalog, ParquetType, Semantic};
use crate::error::{line_of, locate, ContractError};

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
}

impl Format {
    pub fn family(&self) -> &'static str {
        match self {
            Format::Delimited { .. } => "delimited",
            Format::JsonLines | Format::JsonArray => "json",
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
}

fn default_max_record() -> usize {
    MAX_RECORD_BYTES_DEFAULT
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_record_bytes: MAX_RECORD_BYTES_DEFAULT }
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
                Some('%') => DateItem::Literal('%'),
                Some(o) => {
                    return Err(format!(
                        "`{pattern}`: %{o} is not supported (use %Y %y %m %d %H %M %S %f %b %B %%)"
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
        if matches!(self.format, Format::Delimited { .. }) {
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
