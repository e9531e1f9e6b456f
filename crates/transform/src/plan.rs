//! A contract compiled against its canonical schema: per column, where the value comes from and
//! which rule normalises it; and the row buffer and Arrow builders the rows are written into.

use std::sync::Arc;

use crate::jv::Jv;
use crate::normalise::{self, TextRule};
use crate::outcome::ValueIssue;
use arrow_array::builder::{Date32Builder, Float64Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use contracts::{
    CanonicalSchema, Contract, DateFormat, FhirPath, Format, Hl7Path, JsonPath, NonScalar, ParquetType,
    PartialDates, Semantic, XmlPath,
};

/// Where a canonical column's value comes from.
#[derive(Debug, Clone)]
pub enum Src {
    /// Field index in a delimited record.
    Field(usize),
    /// Path into a JSON record.
    Path(JsonPath),
    /// A FHIR path (its resource, then FHIRPath-subset steps).
    Fhir(FhirPath),
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
    /// What booleans, objects and arrays in text and list columns become.
    pub non_scalar: NonScalar,
    /// What a date with only a year (and month) becomes.
    pub partial_dates: PartialDates,
    /// The contract's `max_distinct_records`.
    pub max_distinct_records: u64,
}

/// A raw source value, before normalisation.
#[derive(Debug, Clone, Copy)]
pub enum Raw<'a> {
    Null,
    Str(&'a str),
    /// A JSON number, its text exactly as written (a text column keeps every digit).
    Num(&'a str),
    /// A JSON boolean.
    Bool(bool),
    /// A JSON value as parsed, numbers keeping their text (arrays, objects; FHIR and list values).
    Json(&'a Jv),
    /// A value the reader already refused.
    Refused(ValueIssue),
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
                        Format::JsonLines | Format::JsonArray => {
                            JsonPath::parse(f).map(Src::Path).unwrap_or(Src::Absent)
                        }
                        Format::FhirBundle { .. } => FhirPath::parse(f).map(Src::Fhir).unwrap_or(Src::Absent),
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
        Self {
            cols,
            good_schema: Arc::new(good),
            bad_schema: Arc::new(Schema::new(bad_fields)),
            known_keys,
            non_scalar: contract.values.non_scalar,
            partial_dates: contract.values.partial_dates,
            max_distinct_records: contract.limits.max_distinct_records,
        }
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
    /// Values refused in this row: (column index, why).
    issues: Vec<(usize, ValueIssue)>,
}

/// The rules of a plan a cell is judged by, and the column's index (for refused values).
#[derive(Clone, Copy)]
struct Judge<'p> {
    col: &'p ColPlan,
    index: usize,
    non_scalar: NonScalar,
    partial: PartialDates,
}

impl Row {
    /// Normalises one row; `get(i)` yields the raw value of column `i` of the plan.
    pub fn fill<'a>(&mut self, plan: &'a Plan, mut get: impl FnMut(usize, &'a ColPlan) -> Raw<'a>) {
        self.text.clear();
        self.items.clear();
        self.cells.clear();
        self.issues.clear();
        for (i, col) in plan.cols.iter().enumerate() {
            let raw = match &col.src {
                Src::Constant(v) => Raw::Str(v),
                Src::Absent => Raw::Null,
                _ => get(i, col),
            };
            let j = Judge { col, index: i, non_scalar: plan.non_scalar, partial: plan.partial_dates };
            let cell = self.cell(j, raw);
            self.cells.push(cell);
        }
    }

    /// The values refused in this row: (column index in the plan, why).
    pub fn issues(&self) -> &[(usize, ValueIssue)] {
        &self.issues
    }

    fn refuse(&mut self, j: Judge<'_>, why: ValueIssue) -> Cell {
        self.issues.push((j.index, why));
        Cell::Null
    }

    fn cell(&mut self, j: Judge<'_>, raw: Raw<'_>) -> Cell {
        let col = j.col;
        match raw {
            Raw::Refused(why) => return self.refuse(j, why),
            Raw::Date(d) if col.semantic == Semantic::Date => return Cell::Date(d),
            Raw::Json(Jv::Arr(a)) if col.semantic == Semantic::Icd10List => return self.list(j, a),
            Raw::Json(Jv::Num(n)) => return self.cell(j, Raw::Num(n)),
            Raw::Json(Jv::Bool(b)) => return self.cell(j, Raw::Bool(*b)),
            Raw::Json(Jv::Str(s)) => return self.cell(j, Raw::Str(s)),
            Raw::Json(Jv::Null) => return self.cell(j, Raw::Null),
            _ => {}
        }
        let rendered;
        let v: Option<&str> = match raw {
            Raw::Null => None,
            Raw::Str(s) | Raw::Num(s) => Some(s),
            Raw::Bool(b) => match self.non_scalar_text(j, ValueIssue::Boolean) {
                Err(c) => return c,
                Ok(()) => Some(if b { "true" } else { "false" }),
            },
            Raw::Json(other) => {
                let why = if other.is_array() { ValueIssue::Array } else { ValueIssue::Object };
                if let Err(c) = self.non_scalar_text(j, why) {
                    return c;
                }
                rendered = other.to_string();
                Some(rendered.as_str())
            }
            Raw::Date(d) => {
                rendered = chrono::DateTime::from_timestamp(i64::from(d) * 86_400, 0)
                    .map(|t| t.date_naive().format("%Y-%m-%d").to_string())
                    .unwrap_or_default();
                Some(rendered.as_str())
            }
            Raw::Refused(_) => unreachable!("handled above"),
        };
        self.text_cell(j, v)
    }

    /// A boolean, object or array where one value is expected: refused (`Err` with the null
    /// cell) unless the contract renders them; never rendered into money or dates.
    fn non_scalar_text(&mut self, j: Judge<'_>, why: ValueIssue) -> Result<(), Cell> {
        let numeric = matches!(j.col.semantic, Semantic::Money | Semantic::Date);
        if j.non_scalar == NonScalar::Render && !numeric {
            Ok(())
        } else {
            Err(self.refuse(j, why))
        }
    }

    /// A JSON array in a list column: strings and numbers are items; nested arrays, objects and
    /// booleans follow the contract's `non_scalar` rule (refused: the whole cell is null).
    fn list(&mut self, j: Judge<'_>, a: &[Jv]) -> Cell {
        let first = self.items.len();
        let text_len = self.text.len();
        if let Err(why) = self.list_items(j, a) {
            self.items.truncate(first);
            self.text.truncate(text_len);
            return self.refuse(j, why);
        }
        if self.items.len() > first {
            Cell::List(first, self.items.len())
        } else {
            Cell::Null
        }
    }

    fn list_items(&mut self, j: Judge<'_>, a: &[Jv]) -> Result<(), ValueIssue> {
        let render = j.non_scalar == NonScalar::Render;
        for item in a {
            let owned;
            let t: &str = match item {
                // a number's text as written (every digit of a long one)
                Jv::Str(s) | Jv::Num(s) => s,
                Jv::Null => continue,
                Jv::Arr(inner) if render => {
                    self.list_items(j, inner)?;
                    continue;
                }
                Jv::Arr(_) => return Err(ValueIssue::NestedArray),
                Jv::Bool(_) if !render => return Err(ValueIssue::Boolean),
                Jv::Obj(_) if !render => return Err(ValueIssue::Object),
                other => {
                    owned = other.to_string();
                    &owned
                }
            };
            normalise::icd10_list(t, &j.col.list_sep, &mut self.text, &mut self.items);
        }
        Ok(())
    }

    /// One text value by the column's rule.
    fn text_cell(&mut self, j: Judge<'_>, v: Option<&str>) -> Cell {
        let col = j.col;
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
            Semantic::Date => return self.date(j, v),
            Semantic::Money => {
                return match normalise::money_checked(v) {
                    Ok(x) => x.map_or(Cell::Null, Cell::F64),
                    Err(why) => self.refuse(j, why),
                }
            }
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

    /// A date by the column's formats; a partial one (`1974-12`, `1974`) by the contract's rule.
    fn date(&mut self, j: Judge<'_>, v: &str) -> Cell {
        if let Some(d) = normalise::date(v, &j.col.dates) {
            return Cell::Date(d);
        }
        let Some((year, month)) = normalise::partial_date(v) else { return Cell::Null };
        match j.partial {
            PartialDates::Complete { day, month: default_month } => {
                match month.or(default_month).and_then(|m| normalise::days(year, m, day)) {
                    Some(d) => Cell::Date(d),
                    None => self.refuse(j, ValueIssue::PartialDate),
                }
            }
            PartialDates::Refuse => self.refuse(j, ValueIssue::PartialDate),
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

/// The longest value a bad row keeps (longer ones are cut at a character boundary).
pub const BAD_VALUE_BYTES: usize = 1024;

#[inline]
fn capped(v: &str, cap: usize) -> &str {
    if v.len() <= cap {
        return v;
    }
    let mut end = cap;
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    &v[..end]
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
        // a bad row keeps at most BAD_VALUE_BYTES of each value: it is for a person to look at
        let cap = if self.missing.is_some() { BAD_VALUE_BYTES } else { usize::MAX };
        for (b, cell) in self.cols.iter_mut().zip(&row.cells) {
            match (b, *cell) {
                (ColBuilder::Str(b), Cell::Str(s, e)) => b.append_value(capped(&row.text[s..e], cap)),
                (ColBuilder::Str(b), _) => b.append_null(),
                (ColBuilder::Date(b), Cell::Date(d)) => b.append_value(d),
                (ColBuilder::Date(b), _) => b.append_null(),
                (ColBuilder::F64(b), Cell::F64(x)) => b.append_value(x),
                (ColBuilder::F64(b), _) => b.append_null(),
                (ColBuilder::List(b), Cell::List(first, end)) => {
                    for &(s, e) in &row.items[first..end] {
                        b.values().append_value(capped(&row.text[s..e], cap));
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
