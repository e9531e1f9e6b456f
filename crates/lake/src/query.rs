//! `lake query "SQL"`: the analysts' SQL on the embedded lake, with polars (lazy Parquet scans
//! and its SQL context). The tables carry the catalog's names (`docs/ANALYTICS.md`): one per
//! canonical dataset over `raw/dataset=<name>/` (good rows and the rows completed by matching),
//! and `<name>_quarantine` over the bad rows in `quarantine/bad/dataset=<name>/`. The partition
//! columns `source` and `ingest_date` come from the hive-style key layout, as Athena's partition
//! projection reads them, and `"$path"` is each row's file, as in Athena.
//!
//! Boundaries: reads files under `--lake`, prints or writes the result; no rules of its own.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use contracts::{CanonicalSchema, Catalog, ParquetType};
use polars::prelude::*;
use polars::sql::SQLContext;

/// The suffix of the quarantine table of a dataset.
pub const QUARANTINE_SUFFIX: &str = "_quarantine";
/// The file-path pseudo-column (Athena's hidden column of the same name).
pub const PATH_COLUMN: &str = "$path";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Parquet,
}

#[derive(clap::Args)]
pub struct QueryArgs {
    /// The SQL (tables: `encounter`, `encounter_quarantine`; partitions `source`, `ingest_date`).
    sql: String,
    /// Folder of the embedded lake (as for `lake run`).
    #[arg(long, default_value = "./lake-data")]
    lake: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Write the result here instead of standard output (required for parquet).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// `local` (the embedded lake, polars) or `aws` (Athena in --workgroup, honouring
    /// AWS_ENDPOINT_URL).
    #[arg(long, default_value = "local")]
    backend: layer::Backend,
    /// Athena workgroup (the stack's `county-lake-<env>-analysts`).
    #[arg(long, env = "LAKE_ATHENA_WORKGROUP", required_if_eq("backend", "aws"))]
    workgroup: Option<String>,
    /// Glue database of the tables (the stack's `county_lake_<env>`).
    #[arg(long, env = "LAKE_GLUE_DATABASE", required_if_eq("backend", "aws"))]
    database: Option<String>,
    /// Result location, for a workgroup that does not enforce its own (default: the
    /// workgroup's configured location). Not sent to a workgroup that enforces its configuration.
    #[arg(long, env = "LAKE_ATHENA_OUTPUT", value_name = "S3_URI")]
    athena_output: Option<String>,
    /// KMS key (ARN or id) the results are encrypted with (SSE-KMS), for a workgroup that does
    /// not enforce its own (default: the workgroup's configured key).
    #[arg(long, env = "LAKE_ATHENA_KMS_KEY", value_name = "KEY")]
    athena_kms_key: Option<String>,
}

pub fn run(a: QueryArgs) -> anyhow::Result<ExitCode> {
    if a.format == Format::Parquet && a.out.is_none() {
        anyhow::bail!("--format parquet needs --out FILE");
    }
    let mut df = if a.backend == layer::Backend::Aws {
        let t = crate::athena::Target {
            workgroup: a.workgroup.clone().unwrap_or_default(),
            database: a.database.clone().unwrap_or_default(),
            output: a.athena_output.clone(),
            kms_key: a.athena_kms_key.clone(),
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(crate::athena::execute(&a.sql, &t))?
    } else {
        execute(&a.lake, &a.sql)?
    };
    let mut buf = Vec::new();
    write(&mut df, a.format, &mut buf)?;
    match &a.out {
        Some(p) => std::fs::write(p, &buf).with_context(|| format!("cannot write {}", p.display()))?,
        None => std::io::stdout().write_all(&buf)?,
    }
    eprintln!("{} row(s)", df.height());
    Ok(ExitCode::SUCCESS)
}

/// Runs `sql` over the tables of the embedded lake at `lake`.
pub fn execute(lake: &Path, sql: &str) -> anyhow::Result<DataFrame> {
    let mut ctx = SQLContext::new();
    let buckets = lake.join("buckets");
    for schema in Catalog::builtin().names().filter_map(|n| Catalog::builtin().get(n).cloned()) {
        let raw = buckets.join("raw").join(format!("dataset={}", schema.name));
        ctx.register(&schema.name, scan(&raw, &schema, false)?);
        let bad = buckets.join("quarantine/bad").join(format!("dataset={}", schema.name));
        ctx.register(&format!("{}{QUARANTINE_SUFFIX}", schema.name), scan(&bad, &schema, true)?);
    }
    let known = ctx.get_tables();
    let lf = ctx.execute(sql).map_err(|e| explain(e, &known))?;
    lf.collect().map_err(|e| explain(e, &known))
}

fn explain(e: PolarsError, known: &[String]) -> anyhow::Error {
    let msg = e.to_string();
    if msg.contains("not found") && msg.contains("relation") {
        anyhow::anyhow!("{msg} (tables: {})", known.join(", "))
    } else {
        anyhow::anyhow!("{msg}")
    }
}

/// Lazy scan of every `*.parquet` under `dir` (hive partitions `source=`, `ingest_date=`), or an
/// empty frame with the table's columns when nothing has landed yet.
fn scan(dir: &Path, schema: &CanonicalSchema, quarantine: bool) -> anyhow::Result<LazyFrame> {
    let mut parts = Schema::default();
    parts.insert("source".into(), DataType::String);
    parts.insert("ingest_date".into(), DataType::String);
    let any = dir.is_dir() && has_parquet(dir)?;
    if !any {
        let mut cols = Schema::default();
        for c in &schema.columns {
            cols.insert(c.name.as_str().into(), dtype(c.parquet_type));
        }
        if quarantine {
            cols.insert("missing_fields".into(), DataType::String);
        }
        for (n, t) in parts.iter() {
            cols.insert(n.clone(), t.clone());
        }
        cols.insert(PATH_COLUMN.into(), DataType::String);
        return Ok(DataFrame::empty_with_schema(&cols).lazy());
    }
    // a directory (not a glob): hive partitions are parsed from below it (`source=`, `ingest_date=`)
    let root = format!("{}/", dir.display());
    let args = ScanArgsParquet {
        hive_options: HiveOptions {
            enabled: Some(true),
            hive_start_idx: 0,
            schema: Some(Arc::new(parts)),
            try_parse_dates: false,
        },
        include_file_paths: Some(PATH_COLUMN.into()),
        ..Default::default()
    };
    LazyFrame::scan_parquet(PlRefPath::new(root), args)
        .map_err(|e| anyhow::anyhow!("cannot scan {}: {e}", dir.display()))
}

fn has_parquet(dir: &Path) -> anyhow::Result<bool> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() && has_parquet(&p)? || p.extension().is_some_and(|x| x == "parquet") {
            return Ok(true);
        }
    }
    Ok(false)
}

fn dtype(t: ParquetType) -> DataType {
    match t {
        ParquetType::String => DataType::String,
        ParquetType::Date32 => DataType::Date,
        ParquetType::Float64 => DataType::Float64,
        ParquetType::ListString => DataType::List(Box::new(DataType::String)),
    }
}

/// Writes `df` in `format` to `w`.
pub fn write(df: &mut DataFrame, format: Format, w: &mut Vec<u8>) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            // every row and column: an analyst asked for them
            std::env::set_var("POLARS_FMT_MAX_ROWS", "-1");
            std::env::set_var("POLARS_FMT_MAX_COLS", "-1");
            std::env::set_var("POLARS_FMT_STR_LEN", "200");
            writeln!(w, "{df}")?;
        }
        Format::Csv => {
            let mut c = csv::Writer::from_writer(w);
            c.write_record(df.get_column_names().iter().map(|n| n.as_str()))?;
            for i in 0..df.height() {
                let row: Vec<String> = df
                    .columns()
                    .iter()
                    .map(|c| c.get(i).map(|v| csv_cell(&json_value(&v))))
                    .collect::<PolarsResult<_>>()?;
                c.write_record(&row)?;
            }
            c.flush()?;
        }
        Format::Json => {
            // one object per line, keys in the result's column order
            for i in 0..df.height() {
                w.push(b'{');
                for (k, c) in df.columns().iter().enumerate() {
                    if k > 0 {
                        w.push(b',');
                    }
                    serde_json::to_writer(&mut *w, c.name().as_str())?;
                    w.push(b':');
                    serde_json::to_writer(&mut *w, &json_value(&c.get(i)?))?;
                }
                w.extend_from_slice(b"}\n");
            }
        }
        Format::Parquet => {
            ParquetWriter::new(std::io::Cursor::new(&mut *w))
                .with_compression(ParquetCompression::Snappy)
                .finish(df)?;
        }
    }
    Ok(())
}

fn csv_cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One cell as JSON: dates as `YYYY-MM-DD`, lists as arrays.
pub fn json_value(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        AnyValue::Null => J::Null,
        AnyValue::Boolean(b) => J::Bool(*b),
        AnyValue::String(s) => J::String((*s).to_string()),
        AnyValue::StringOwned(s) => J::String(s.to_string()),
        AnyValue::UInt8(n) => J::from(*n),
        AnyValue::UInt16(n) => J::from(*n),
        AnyValue::UInt32(n) => J::from(*n),
        AnyValue::UInt64(n) => J::from(*n),
        AnyValue::Int8(n) => J::from(*n),
        AnyValue::Int16(n) => J::from(*n),
        AnyValue::Int32(n) => J::from(*n),
        AnyValue::Int64(n) => J::from(*n),
        AnyValue::Float32(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(J::Null, J::Number),
        AnyValue::Float64(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        AnyValue::Date(d) => J::String(
            chrono::NaiveDate::from_num_days_from_ce_opt(d + 719_163)
                .map_or_else(|| d.to_string(), |x| x.format("%Y-%m-%d").to_string()),
        ),
        AnyValue::List(s) => {
            J::Array((0..s.len()).map(|i| s.get(i).map_or(J::Null, |v| json_value(&v))).collect())
        }
        other => J::String(other.to_string()),
    }
}
