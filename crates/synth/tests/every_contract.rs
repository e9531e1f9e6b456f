//! For every shipped contract (`config/sources/*.toml`): a synthetic file with every defect,
//! run through `transform::run` (the engine behind `lake contract check` and the Lambdas),
//! gives exactly the counts of its manifest, and its good rows read back from the Parquet; the
//! same seed gives the same bytes; a file without defects is all good.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use contracts::{Catalog, Contract};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use synth::{Defects, Manifest, Options};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn contracts() -> Vec<(String, Contract)> {
    let catalog = Catalog::builtin();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("config/sources"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "the shipped contracts: {paths:?}");
    paths
        .iter()
        .map(|p| {
            (p.file_stem().unwrap().to_string_lossy().into_owned(), Contract::load(p, &catalog).unwrap())
        })
        .collect()
}

fn make(c: &Contract, opts: &Options) -> (Vec<u8>, Manifest) {
    let schema = Catalog::builtin().get(&c.dataset).unwrap().clone();
    let mut bytes = Vec::new();
    let mut calls = 0u64;
    let m = synth::generate(c, &schema, opts, &mut bytes, &mut |_| calls += 1).unwrap();
    assert!(calls >= 1, "progress is reported");
    assert_eq!(m.bytes, bytes.len() as u64);
    (bytes, m)
}

/// The transform's summary of `bytes`, and the rows of its good Parquet read back.
fn check(c: &Contract, bytes: &[u8]) -> (transform::Summary, usize) {
    let schema = Catalog::builtin().get(&c.dataset).unwrap().clone();
    let (mut good, mut bad, mut malformed) = (Vec::new(), Vec::new(), Vec::new());
    let s = transform::run(
        c,
        &schema,
        "synthetic",
        bytes,
        transform::Outputs { good: &mut good, bad: &mut bad, malformed: &mut malformed },
        &transform::Options::default(),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", c.source));
    let rows = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(good))
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    (s, rows)
}

fn assert_agrees(name: &str, m: &Manifest, s: &transform::Summary, parquet_rows: usize) {
    let e = &m.expected;
    let got = (s.rows_read, s.good, s.bad, s.malformed, s.duplicates, s.skipped, &s.bad_by_field);
    let want = (e.rows_read, e.good, e.bad, e.malformed, e.duplicates, e.skipped, &e.bad_by_field);
    assert_eq!(got, want, "{name}: transform {s:#?}\nmanifest {m:#?}");
    assert_eq!(parquet_rows as u64, e.good, "{name}: good rows read back");
}

const ALL: Defects = Defects { duplicates: 0.05, missing: 0.1, malformed: 0.05 };

#[test]
fn every_shipped_contract_agrees_with_its_manifest() {
    for (name, c) in contracts() {
        let opts = Options { rows: 700, seed: 11, defects: ALL, gzip: false, fhir_ndjson: false };
        let (bytes, m) = make(&c, &opts);
        let (s, rows) = check(&c, &bytes);
        assert_agrees(&name, &m, &s, rows);
        let e = &m.expected;
        assert!(e.good > 400 && e.bad > 30 && e.duplicates > 10, "{name}: every defect is there: {e:?}");
        if m.format == "excel" {
            assert_eq!(e.malformed, 0);
            assert!(m.notes.iter().any(|n| n.contains("no malformed records")), "{m:?}");
        } else {
            assert!(e.malformed > 10, "{name}: {e:?}");
        }
        assert_eq!(e.bad_by_field.values().sum::<u64>(), e.bad, "{name}: one missing field per bad row");
        if name == "old_mill" {
            assert_eq!(m.encoding.as_deref(), Some("windows-1252"), "written as the contract declares");
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_other_bytes() {
    for (name, c) in contracts() {
        let opts = Options { rows: 120, seed: 5, defects: ALL, gzip: false, fhir_ndjson: false };
        let (a, ma) = make(&c, &opts);
        let (b, mb) = make(&c, &opts);
        assert!(a == b, "{name}: same seed, same bytes");
        assert_eq!(ma, mb);
        let (other, _) = make(&c, &Options { seed: 6, ..opts });
        assert!(a != other, "{name}: another seed, another file");
    }
}

#[test]
fn a_file_without_defects_is_all_good() {
    for (name, c) in contracts() {
        let opts =
            Options { rows: 300, seed: 3, defects: Defects::default(), gzip: false, fhir_ndjson: false };
        let (bytes, m) = make(&c, &opts);
        let (s, rows) = check(&c, &bytes);
        assert_agrees(&name, &m, &s, rows);
        assert_eq!((s.good, s.bad, s.malformed, s.duplicates), (300, 0, 0, 0), "{name}: {s:#?}");
        assert!(s.refused_values.is_empty(), "{name}: no value is refused: {:?}", s.refused_values);
    }
}

#[test]
fn a_gzip_file_reads_the_same() {
    let (_, c) = contracts().into_iter().find(|(n, _)| n == "harbor_lab").unwrap();
    let opts = Options { rows: 400, seed: 9, defects: ALL, gzip: true, fhir_ndjson: false };
    let (bytes, m) = make(&c, &opts);
    assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
    assert_eq!(m.compression.as_deref(), Some("gzip"));
    let (s, rows) = check(&c, &bytes);
    assert_agrees("harbor_lab.gz", &m, &s, rows);
    assert_eq!(s.compression.as_deref(), Some("gzip"));
}

#[test]
fn fhir_contracts_also_write_ndjson() {
    for (name, c) in contracts().into_iter().filter(|(_, c)| c.format.name() == "fhir_bundle") {
        let opts = Options { rows: 500, seed: 4, defects: ALL, gzip: false, fhir_ndjson: true };
        let (bytes, m) = make(&c, &opts);
        assert!(bytes.starts_with(b"{\"resourceType\":\"Patient\"") || bytes.starts_with(b"{\"unreadable\""));
        let (s, rows) = check(&c, &bytes);
        assert_agrees(&format!("{name} (NDJSON)"), &m, &s, rows);
        assert!(m.expected.malformed > 5 && m.expected.duplicates > 5, "{m:?}");
    }
}

#[test]
fn defects_are_parsed_with_clear_errors() {
    let d: Defects = "duplicates=0.02,missing=0.05,malformed=0.01".parse().unwrap();
    assert_eq!(d, Defects { duplicates: 0.02, missing: 0.05, malformed: 0.01 });
    assert_eq!("none".parse::<Defects>().unwrap(), Defects::default());
    for (text, err) in [
        ("typos=0.1", "unknown defect `typos` (known: duplicates, missing, malformed)"),
        ("missing=2", "defect `missing`: `2` is not a share between 0 and 1"),
        ("missing", "defect `missing` is not NAME=SHARE (e.g. missing=0.05)"),
        ("missing=0.6,malformed=0.6", "the defect shares add up to more than 1"),
    ] {
        assert_eq!(text.parse::<Defects>().unwrap_err().to_string(), err);
    }
}
