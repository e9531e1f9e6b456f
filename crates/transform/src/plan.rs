//! A contract compiled against its canonical schema: per column, where the value comes from and
//! which rule normalises it; and the row buffer and Arrow builders the rows are written into.

use std::sync::Arc;

use arrow_array::builder::{Date32Builder, Float64Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use contracts::{
    CanonicalSchema, Contract, DateFormat, Format, Hl7Path, JsonPath, ParquetType, Semantic, XmlPath,
};
use serde_json::Value;

use crate::normalise::{self, TextRule};

/// Where a canonical column's value comes from.
#[derive(Debug, Clone)]
pub enum Src {
    /// Field index in a delimited record.
    Field(usize),
    /// Path into a JSON record (FHIR: its first key names the resource).
    Path(JsonPath),
    /// An HL7 v2 field path.
    Hl7(Hl7Path),
    /// A path from an XML record element.
    Xml(XmlPath),
    /// A header name, found in the file when it is read (Excel).
    Column(String),
    /// The same value on every row (contract constant, source id, file name).
    Constant(String),
    /// The source does not provide it.
    Absent,
}

#[derive(Debug, Clone)]
pub struct ColPlan {
    pub name: String,
    pub semantic: Semantic,
    pub ty: ParquetType,
    pub src: Src,
    pub required: bool,
    pub dates: Vec<DateFormat>,
    pub list_sep: String,
}

/// Everything a worker needs to turn a source record into a canonical row.
#[derive(Debug, Clone)]
pub struct Plan {
    pub cols: Vec<ColPlan>,
    pub good_schema: SchemaRef,
    pub bad_schema: SchemaRef,
    /// Top-level JSON keys the contract maps or drops (others are counted as ignored).
    pub known_keys: Vec<String>,
}

/// A raw source value, before normalisation.
#[derive(Debug, Clone, Copy)]
pub enum Raw<'a> {
    Null,
    Str(&'a str),
    Json(&'a Value),
    /// A date already known (an Excel date cell): days since 1970-01-01.
    Date(i32),
}

fn arrow_type(t: ParquetType) -> DataType {
    match t {
        ParquetType::String => DataType::Utf8,
        ParquetType::Date32 => DataType::Date32,
        ParquetType::Float64 => DataType::Float64,
        ParquetType::ListString => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
    }
}

/// The Arrow schema of a canonical dataset's good rows.
pub fn arrow_schema(schema: &CanonicalSchema) -> Schema {
    Schema::new(
        schema
            .columns
            .iter()
            .map(|c| Field::new(&c.name, arrow_type(c.parquet_type), true))
            .collect::<Vec<_>>(),
    )
}

impl Plan {
    pub fn new(contract: &Contract, schema: &CanonicalSchema, file_name: &str) -> Self {
        let header: Vec<&str> = match &contract.format {
            Format::Delimited { header, .. } => header.iter().map(String::as_str).collect(),
            Format::FixedWidth { columns, .. } => columns.iter().map(|c| c.name.as_str()).collect(),
            _ => vec![],
        };
        let cols = schema
            .columns
            .iter()
            .map(|c| {
                let src = if let Some(f) = contract.fields.get(&c.name) {
                    match &contract.format {
                        Format::Delimited { .. } | Format::FixedWidth { .. } => {
                            Src::Field(header.iter().position(|h| h == f).unwrap_or(usize::MAX))
                        }
                        Format::Hl7v2 => Hl7Path::parse(f).map(Src::Hl7).unwrap_or(Src::Absent),
                        Format::Xml { .. } => XmlPath::parse(f).map(Src::Xml).unwrap_or(Src::Absent),
                        Format::Excel { .. } => Src::Column(f.clone()),
                        Format::JsonLines | Format::JsonArray | Format::FhirBundle => {
                            JsonPath::parse(f).map(Src::Path).unwrap_or(Src::Absent)
                        }
                    }
                } else if let Some(v) = contract.constants.get(&c.name) {
                    Src::Constant(v.clone())
                } else if c.semantic == Semantic::Constant {
                    match c.name.as_str() {
                        "source_system" => Src::Constant(contract.source.clone()),
                        "source_file" => Src::Constant(file_name.to_string()),
                        _ => Src::Absent,
                    }
                } else {
                    Src::Absent
                };
                ColPlan {
                    name: c.name.clone(),
                    semantic: c.semantic,
                    ty: c.parquet_type,
                    src,
                    required: c.required,
                    dates: contract.date_formats(&c.name),
                    list_sep: contract.lists.get(&c.name).cloned().unwrap_or_else(|| ";".into()),
                }
            })
            .collect();
        let good = arrow_schema(schema);
        let mut bad_fields: Vec<Field> = good.fields().iter().map(|f| f.as_ref().clone()).collect();
        bad_fields.push(Field::new("missing_fields", DataType::Utf8, true));
        let mut known_keys: Vec<String> = contract
            .fields
            .values()
            .filter_map(|p| JsonPath::parse(p).ok())
            .filter_map(|p| match p.0.first() {
                Some(contracts::PathSeg::Key(k)) => Some(k.clone()),
                _ => None,
            })
            .chain(contract.drop.iter().cloned())
            .collect();
        known_keys.sort();
        known_keys.dedup();
        Self { cols, good_schema: Arc::new(good), bad_schema: Arc::new(Schema::new(bad_fields)), known_keys }
    }
}

/// One normalised cell; strings and list items live in [`Row::text`].
#[derive(Debug, Clone, Copy)]
enum Cell {
    Null,
    Str(usize, usize),
    Date(i32),
    F64(f64),
    List(usize, usize),
}

/// Scratch space for one row, reused across rows.
#[derive(Default)]
pub struct Row {
    text: String,
    items: Vec<(usize, usize)>,
    cells: Vec<Cell>,
    num: String,
}

impl Row {
    /// Normalises one row; `get(i)` yields the raw value of column `i` of the plan.
    pub fn fill<'a>(&mut self, plan: &'a Plan, mut get: impl FnMut(usize, &'a ColPlan) -> Raw<'a>) {
        self.text.clear();
        self.items.clear();
        self.cells.clear();
        for (i, col) in plan.cols.iter().enumerate() {
            let raw = match &col.src {
                Src::Constant(v) => Raw::Str(v),
                Src::Absent => Raw::Null,
                _ => get(i, col),
            };
            let cell = self.cell(col, raw);
            self.cells.push(cell);
        }
    }

    fn cell(&mut self, col: &ColPlan, raw: Raw<'_>) -> Cell {
        if let Raw::Date(d) = raw {
            if col.semantic == Semantic::Date {
                return Cell::Date(d);
            }
        }
        // Lists and money take JSON arrays and numbers as they are.
        if let Raw::Json(v) = raw {
            match (col.semantic, v) {
                (Semantic::Icd10List, Value::Array(a)) => {
                    let first = self.items.len();
                    for item in a {
                        let t = match item {
                            Value::String(s) => s.as_str(),
                            Value::Number(_) => {
                                self.num.clear();
                                json_number_text(item, &mut self.num);
                                // `num` is reused below; copy out first.
                                let s = std::mem::take(&mut self.num);
                                normalise::icd10_list(&s, &col.list_sep, &mut self.text, &mut self.items);
                                self.num = s;
                                continue;
                            }
                            _ => continue,
                        };
                        normalise::icd10_list(t, &col.list_sep, &mut self.text, &mut self.items);
                    }
                    return if self.items.len() > first {
                        Cell::List(first, self.items.len())
                    } else {
                        Cell::Null
                    };
                }
                (Semantic::Money, Value::Number(n)) => {
                    return n.as_f64().and_then(normalise::money_f64).map_or(Cell::Null, Cell::F64)
                }
                _ => {}
            }
        }
        let num;
        let v: Option<&str> = match raw {
            Raw::Null => None,
            Raw::Str(s) => Some(s),
            Raw::Json(Value::Null) => None,
            Raw::Json(Value::String(s)) => Some(s),
            Raw::Json(j) => {
                let mut s = String::new();
                json_number_text(j, &mut s);
                num = s;
                Some(num.as_str())
            }
            Raw::Date(d) => {
                num = chrono::DateTime::from_timestamp(i64::from(d) * 86_400, 0)
                    .map(|t| t.date_naive().format("%Y-%m-%d").to_string())
                    .unwrap_or_default();
                Some(num.as_str())
            }
        };
        if col.semantic == Semantic::Sex {
            let s = self.text.len();
            self.text.push_str(normalise::sex(v));
            return Cell::Str(s, self.text.len());
        }
        let Some(v) = v else { return Cell::Null };
        let start = self.text.len();
        let ok = match col.semantic {
            Semantic::Constant | Semantic::Text => normalise::text(v, TextRule::Trim, &mut self.text),
            Semantic::TextUpper => normalise::text(v, TextRule::Upper, &mut self.text),
            Semantic::TextLower => normalise::text(v, TextRule::Lower, &mut self.text),
            Semantic::Name => normalise::text(v, TextRule::Name, &mut self.text),
            Semantic::Ssn => normalise::ssn(v, &mut self.text),
            Semantic::Zip5 => normalise::zip5(v, &mut self.text),
            Semantic::Phone10 => normalise::phone10(v, &mut self.text),
            Semantic::Date => return normalise::date(v, &col.dates).map_or(Cell::Null, Cell::Date),
            Semantic::Money => return normalise::money(v).map_or(Cell::Null, Cell::F64),
            Semantic::Icd10List => {
                let first = self.items.len();
                normalise::icd10_list(v, &col.list_sep, &mut self.text, &mut self.items);
                return if self.items.len() > first {
                    Cell::List(first, self.items.len())
                } else {
                    Cell::Null
                };
            }
            Semantic::Sex => unreachable!("handled above"),
        };
        if ok {
            Cell::Str(start, self.text.len())
        } else {
            Cell::Null
        }
    }

    /// True when a required column is null.
    pub fn is_bad(&self, plan: &Plan) -> bool {
        plan.cols.iter().zip(&self.cells).any(|(c, v)| c.required && matches!(v, Cell::Null))
    }

    /// True when column `i` of the plan is null in this row.
    pub fn is_null(&self, i: usize) -> bool {
        matches!(self.cells.get(i), Some(Cell::Null) | None)
    }

    /// The required columns that are null, `;`-separated, in column order.
    pub fn missing_fields(&self, plan: &Plan) -> String {
        let mut s = String::new();
        for (c, v) in plan.cols.iter().zip(&self.cells) {
            if c.required && matches!(v, Cell::Null) {
                if !s.is_empty() {
                    s.push(';');
                }
                s.push_str(&c.name);
            }
        }
        s
    }
}

/// A JSON scalar as text: integers without a fraction, other numbers in shortest form.
pub fn json_number_text(v: &Value, out: &mut String) {
    use std::fmt::Write;
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() < 1e15 {
                    let _ = write!(out, "{}", f as i64);
                } else {
                    let _ = write!(out, "{f}");
                }
            }
        }
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::String(s) => out.push_str(s),
        Value::Null => {}
        other => out.push_str(&other.to_string()),
    }
}

enum ColBuilder {
    Str(StringBuilder),
    Date(Date32Builder),
    F64(Float64Builder),
    List(ListBuilder<StringBuilder>),
}

/// Arrow builders for one output (good rows, or bad rows with `missing_fields`).
pub struct Builders {
    cols: Vec<ColBuilder>,
    missing: Option<StringBuilder>,
    schema: SchemaRef,
    rows: usize,
}

impl Builders {
    pub fn new(plan: &Plan, bad: bool) -> Self {
        let cols = plan
            .cols
            .iter()
            .map(|c| match c.ty {
                ParquetType::String => ColBuilder::Str(StringBuilder::new()),
                ParquetType::Date32 => ColBuilder::Date(Date32Builder::new()),
                ParquetType::Float64 => ColBuilder::F64(Float64Builder::new()),
                ParquetType::ListString => {
                    ColBuilder::List(ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new(
                        "item",
                        DataType::Utf8,
                        true,
                    ))))
                }
            })
            .collect();
        Self {
            cols,
            missing: bad.then(StringBuilder::new),
            schema: if bad { plan.bad_schema.clone() } else { plan.good_schema.clone() },
            rows: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn push(&mut self, row: &Row, plan: &Plan) {
        for (b, cell) in self.cols.iter_mut().zip(&row.cells) {
            match (b, *cell) {
                (ColBuilder::Str(b), Cell::Str(s, e)) => b.append_value(&row.text[s..e]),
                (ColBuilder::Str(b), _) => b.append_null(),
                (ColBuilder::Date(b), Cell::Date(d)) => b.append_value(d),
                (ColBuilder::Date(b), _) => b.append_null(),
                (ColBuilder::F64(b), Cell::F64(x)) => b.append_value(x),
                (ColBuilder::F64(b), _) => b.append_null(),
                (ColBuilder::List(b), Cell::List(first, end)) => {
                    for &(s, e) in &row.items[first..end] {
                        b.values().append_value(&row.text[s..e]);
                    }
                    b.append(true);
                }
                (ColBuilder::List(b), _) => b.append_null(),
            }
        }
        if let Some(m) = &mut self.missing {
            m.append_value(row.missing_fields(plan));
        }
        self.rows += 1;
    }

    /// The rows so far as a batch; the builders are left empty.
    pub fn finish(&mut self) -> RecordBatch {
        let mut arrays: Vec<ArrayRef> = self
            .cols
            .iter_mut()
            .map(|b| -> ArrayRef {
                match b {
                    ColBuilder::Str(b) => Arc::new(b.finish()),
                    ColBuilder::Date(b) => Arc::new(b.finish()),
                    ColBuilder::F64(b) => Arc::new(b.finish()),
                    ColBuilder::List(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        if let Some(m) = &mut self.missing {
            arrays.push(Arc::new(m.finish()));
        }
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
            .unwrap_or_else(|e| unreachable!("builders follow the schema: {e}"))
    }
}
