//! What the format and hostile-input tests share: a contract and a file through
//! `transform::run` as the Lambdas and `lake contract check` call it, with the Parquet read back.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{Array, Date32Array, Float64Array, ListArray, RecordBatch, StringArray};
use contracts::Catalog;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The repository root (contracts under `config/`, samples under `samples/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file of this crate's test data.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

pub type Row = BTreeMap<String, String>;

/// The rows of a Parquet file, each column as text (`<null>`, `dN` for dates, lists `|`-joined).
pub fn read_rows(path: &Path) -> Vec<Row> {
    if !path.exists() || std::fs::metadata(path).unwrap().len() == 0 {
        return vec![];
    }
    let f = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let r = ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap();
    let mut rows = vec![];
    for b in r {
        let b: RecordBatch = b.unwrap();
        let names: Vec<String> = b.schema().fields().iter().map(|f| f.name().clone()).collect();
        for i in 0..b.num_rows() {
            rows.push(names.iter().cloned().zip(b.columns().iter().map(|c| cell(c.as_ref(), i))).collect());
        }
    }
    rows
}

fn cell(c: &dyn Array, i: usize) -> String {
    if c.is_null(i) {
        return "<null>".into();
    }
    if let Some(a) = c.as_any().downcast_ref::<StringArray>() {
        return a.value(i).to_string();
    }
    if let Some(a) = c.as_any().downcast_ref::<Date32Array>() {
        return format!("d{}", a.value(i));
    }
    if let Some(a) = c.as_any().downcast_ref::<Float64Array>() {
        return format!("{:.2}", a.value(i));
    }
    if let Some(a) = c.as_any().downcast_ref::<ListArray>() {
        let v = a.value(i);
        return (0..v.len()).map(|j| cell(v.as_ref(), j)).collect::<Vec<_>>().join("|");
    }
    panic!("unexpected column type {:?}", c.data_type())
}

/// A contract: a shipped one by source name (`config/sources/<name>.toml`, schemas from
/// `config/canonical`), or contract text (built-in schemas).
pub enum Contract<'a> {
    Config(&'a str),
    Text(&'a str),
}

impl Contract<'_> {
    fn load(&self) -> Result<(contracts::Contract, Catalog), contracts::ContractError> {
        match self {
            Contract::Config(s) => {
                let catalog = Catalog::load_dir(&root().join("config/canonical"))?;
                let c =
                    contracts::Contract::load(&root().join(format!("config/sources/{s}.toml")), &catalog)?;
                Ok((c, catalog))
            }
            Contract::Text(t) => {
                let catalog = Catalog::builtin();
                Ok((contracts::Contract::from_toml_str(t, "contract.toml", &catalog)?, catalog))
            }
        }
    }
}

/// The text of a shipped contract.
pub fn config(source: &str) -> String {
    std::fs::read_to_string(root().join(format!("config/sources/{source}.toml"))).unwrap()
}

/// What one run did.
pub struct Run {
    /// True when the run ended with a summary, false when in a [`transform::TransformError`].
    pub ok: bool,
    /// The error as `<message> [<kind>]`, empty when the run succeeded.
    pub error: String,
    /// The summary as JSON (null when the run failed).
    pub summary: serde_json::Value,
    pub good: Vec<Row>,
    pub bad: Vec<Row>,
    pub malformed: Vec<serde_json::Value>,
}

/// Runs `input` through a contract with the default options, the file name as `source_file`.
pub fn check(contract: Contract<'_>, input: &Path) -> Run {
    let name = input.file_name().unwrap().to_str().unwrap();
    check_reader(contract, name, File::open(input).unwrap())
}

/// Runs the bytes `input` yields through a contract, `name` as `source_file`: a case too big
/// for a test machine's disk streams from a generator instead of a file.
pub fn check_reader(contract: Contract<'_>, name: &str, input: impl std::io::Read + Send) -> Run {
    run_with(contract, name, |c, schema, out| {
        transform::run(c, schema, name, input, out, &transform::Options::default())
    })
}

/// Runs a FHIR Bulk Data export through a contract: the manifest in `dir` names the parts, the
/// manifest's file name is `source_file`; the manifest's resources of types not read are added to
/// `skipped` (as the workflow and `lake contract check` do).
pub fn check_export(contract: Contract<'_>, dir: &Path) -> Run {
    let manifest =
        transform::bulk::Manifest::parse(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    run_with(contract, "manifest.json", |c, schema, out| {
        let contracts::Format::FhirBundle { export: Some(e), .. } = &c.format else {
            panic!("not an export contract")
        };
        let (files, not_read) = manifest.parts(&e.types);
        let parts = files
            .into_iter()
            .map(|f| transform::ExportPart {
                resource_type: f.resource_type,
                input: Box::new(File::open(dir.join(&f.file_name)).unwrap()),
            })
            .collect();
        let mut s =
            transform::run_export(c, schema, "manifest.json", parts, out, &transform::Options::default())?;
        s.skipped += not_read;
        Ok(s)
    })
}

/// Runs one transform (`f`) of a contract into temp outputs and reads them back.
fn run_with(
    contract: Contract<'_>,
    name: &str,
    f: impl FnOnce(
        &contracts::Contract,
        &contracts::CanonicalSchema,
        transform::Outputs<'_>,
    ) -> Result<transform::Summary, transform::TransformError>,
) -> Run {
    let (contract, catalog) = contract.load().unwrap();
    let schema = catalog.get(&contract.dataset).unwrap();
    let out = tempfile::tempdir().unwrap();
    let paths = ["good.parquet", "bad.parquet", "malformed.jsonl"].map(|n| out.path().join(n));
    let [mut good, mut bad, mut malformed] = paths.clone().map(|p| File::create(p).unwrap());
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        f(&contract, schema, transform::Outputs { good: &mut good, bad: &mut bad, malformed: &mut malformed })
    }));
    let res = res.unwrap_or_else(|_| panic!("{name}: the transform panicked"));
    let malformed = std::fs::read_to_string(&paths[2])
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    match res {
        Ok(s) => Run {
            ok: true,
            error: String::new(),
            summary: serde_json::to_value(&s).unwrap(),
            good: read_rows(&paths[0]),
            bad: read_rows(&paths[1]),
            malformed,
        },
        Err(e) => Run {
            ok: false,
            error: format!("{e} [{}]", e.kind()),
            summary: serde_json::Value::Null,
            good: vec![],
            bad: vec![],
            malformed,
        },
    }
}

/// Runs `data` (written to a temp file called `name`) through a contract.
pub fn check_bytes(contract: Contract<'_>, name: &str, data: &[u8]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join(name);
    std::fs::write(&input, data).unwrap();
    check(contract, &input)
}
