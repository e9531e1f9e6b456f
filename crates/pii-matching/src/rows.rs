//! Bad-record Parquet in, completed canonical Parquet out: reading the quarantined rows as
//! records, filling the missing identity fields from the matched person, and the output keys.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Date32Array, LargeStringArray, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Schema};
use chrono::{Datelike, NaiveDate};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::model::{parse_date, Person, Record};

/// The bad-record columns that hold no canonical value.
pub const EXTRA_COLUMNS: [&str; 1] = ["missing_fields"];

/// Fields the person index can fill.
const FILLABLE: [&str; 6] = ["first_name", "last_name", "middle_initial", "dob", "sex", "ssn"];

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RowsError(pub String);

/// A string column of a batch by name (Utf8 or LargeUtf8), as optional owned values.
pub fn str_col(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let n = b.num_rows();
    let Some(c) = b.column_by_name(name) else { return vec![None; n] };
    if let Some(a) = c.as_any().downcast_ref::<StringArray>() {
        return (0..n).map(|i| (!a.is_null(i)).then(|| a.value(i).to_string())).collect();
    }
    if let Some(a) = c.as_any().downcast_ref::<LargeStringArray>() {
        return (0..n).map(|i| (!a.is_null(i)).then(|| a.value(i).to_string())).collect();
    }
    vec![None; n]
}

/// A date column by name (Date32, or ISO text).
pub fn date_col(b: &RecordBatch, name: &str) -> Vec<Option<NaiveDate>> {
    let n = b.num_rows();
    let Some(c) = b.column_by_name(name) else { return vec![None; n] };
    if let Some(a) = c.as_any().downcast_ref::<Date32Array>() {
        return (0..n).map(|i| if a.is_null(i) { None } else { a.value_as_date(i) }).collect();
    }
    str_col(b, name).into_iter().map(|v| v.as_deref().and_then(parse_date)).collect()
}

/// Reads a Parquet file into one batch.
pub fn read_parquet(bytes: Vec<u8>) -> Result<RecordBatch, RowsError> {
    let rd = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .and_then(|b| b.build())
        .map_err(|e| RowsError(format!("not a readable Parquet file: {e}")))?;
    let schema = arrow_array::RecordBatchReader::schema(&rd);
    let batches: Vec<RecordBatch> =
        rd.collect::<Result<_, _>>().map_err(|e| RowsError(format!("cannot decode Parquet: {e}")))?;
    arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| RowsError(e.to_string()))
}

/// The identity part of every row; `reference` = `<file_id>:<row>`.
pub fn records(b: &RecordBatch, file_id: &str) -> Vec<Record> {
    let (fi, la, sx, ad, ci, zi, ph) = (
        str_col(b, "first_name"),
        str_col(b, "last_name"),
        str_col(b, "sex"),
        str_col(b, "address"),
        str_col(b, "city"),
        str_col(b, "zip"),
        str_col(b, "phone"),
    );
    let dob = date_col(b, "dob");
    (0..b.num_rows())
        .map(|i| Record {
            reference: format!("{file_id}:{i}"),
            first_name: fi[i].clone(),
            last_name: la[i].clone(),
            dob: dob[i],
            sex: sx[i].clone(),
            address: ad[i].clone(),
            city: ci[i].clone(),
            zip: zi[i].clone(),
            phone: ph[i].clone(),
        })
        .collect()
}

/// The `missing_fields` of every row.
pub fn missing(b: &RecordBatch) -> Vec<Vec<String>> {
    str_col(b, "missing_fields")
        .into_iter()
        .map(|v| {
            v.map(|s| s.split(';').filter(|x| !x.is_empty()).map(String::from).collect()).unwrap_or_default()
        })
        .collect()
}

/// Can every missing field of the row be filled from this person?
pub fn completable(missing: &[String], p: &Person) -> bool {
    missing.iter().all(|f| {
        FILLABLE.contains(&f.as_str())
            && match f.as_str() {
                "first_name" => p.first_name.is_some(),
                "last_name" => p.last_name.is_some(),
                "middle_initial" => p.middle_initial.is_some(),
                "dob" => p.dob.is_some(),
                "sex" => p.sex.is_some(),
                "ssn" => p.ssn.is_some(),
                _ => false,
            }
    })
}

fn person_str<'a>(p: &'a Person, col: &str) -> Option<&'a str> {
    match col {
        "first_name" => p.first_name.as_deref(),
        "last_name" => p.last_name.as_deref(),
        "middle_initial" => p.middle_initial.as_deref(),
        "sex" => p.sex.as_deref(),
        "ssn" => p.ssn.as_deref(),
        _ => None,
    }
}

fn days(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - 719_163
}

/// The rows `fills` (row, person) of `b`, in that order, with null identity fields filled from
/// the person and the non-canonical columns dropped: canonical rows for the dataset.
pub fn complete(b: &RecordBatch, fills: &[(usize, &Person)]) -> Result<RecordBatch, RowsError> {
    let idx = UInt32Array::from(
        fills.iter().map(|(r, _)| u32::try_from(*r).unwrap_or(u32::MAX)).collect::<Vec<_>>(),
    );
    let taken = arrow_select::take::take_record_batch(b, &idx).map_err(|e| RowsError(e.to_string()))?;
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (f, c) in taken.schema().fields().iter().zip(taken.columns()) {
        if EXTRA_COLUMNS.contains(&f.name().as_str()) {
            continue;
        }
        let name = f.name().as_str();
        let new: ArrayRef = match (f.data_type(), c.as_any().downcast_ref::<StringArray>()) {
            (DataType::Utf8, Some(a)) if FILLABLE.contains(&name) => Arc::new(StringArray::from(
                (0..a.len())
                    .map(|i| {
                        if a.is_null(i) {
                            person_str(fills[i].1, name).map(String::from)
                        } else {
                            Some(a.value(i).to_string())
                        }
                    })
                    .collect::<Vec<_>>(),
            )),
            (DataType::Date32, _) if name == "dob" => {
                let a = c.as_any().downcast_ref::<Date32Array>();
                Arc::new(Date32Array::from(
                    (0..c.len())
                        .map(|i| match a {
                            Some(a) if !a.is_null(i) => Some(a.value(i)),
                            _ => fills[i].1.dob.map(days),
                        })
                        .collect::<Vec<_>>(),
                ))
            }
            _ => c.clone(),
        };
        fields.push(f.as_ref().clone());
        cols.push(new);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| RowsError(e.to_string()))
}

/// Parquet (snappy) bytes of a batch.
pub fn to_parquet(b: &RecordBatch) -> Result<Vec<u8>, RowsError> {
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut buf = Vec::new();
    let mut w =
        ArrowWriter::try_new(&mut buf, b.schema(), Some(props)).map_err(|e| RowsError(e.to_string()))?;
    w.write(b).map_err(|e| RowsError(e.to_string()))?;
    w.close().map_err(|e| RowsError(e.to_string()))?;
    Ok(buf)
}

/// The raw-bucket key for completed rows of a bad file:
/// `bad/dataset=d/source=s/ingest_date=x/<id>.bad.parquet` -> `dataset=d/.../<id>.<suffix>.parquet`.
pub fn output_key(bad_key: &str, suffix: &str) -> String {
    let k = bad_key.strip_prefix("bad/").unwrap_or(bad_key);
    let k = k.strip_suffix(".bad.parquet").unwrap_or(k.strip_suffix(".parquet").unwrap_or(k));
    format!("{k}.{suffix}.parquet")
}
