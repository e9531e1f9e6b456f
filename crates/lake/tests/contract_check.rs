//! `lake contract check` as a data engineer runs it: the real binary, real files, real Parquet
//! read back. The expected outputs in `tests/expected/` were written by the reference pandas
//! pipeline (`bench/baseline_pandas.py`) from the same sample files.

#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow_array::{Array, Date32Array, Float64Array, ListArray, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lake(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lake")).args(args).current_dir(root()).output().expect("run lake")
}

fn read_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let f = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let r = ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap();
    let mut names = vec![];
    let mut rows = vec![];
    for b in r {
        let b: RecordBatch = b.unwrap();
        names = b.schema().fields().iter().map(|f| f.name().clone()).collect();
        for i in 0..b.num_rows() {
            rows.push(b.columns().iter().map(|c| cell(c.as_ref(), i)).collect());
        }
    }
    rows.sort();
    (names, rows)
}

fn cell(c: &dyn Array, i: usize) -> String {
    if c.is_null(i) {
        return "<null>".into();
    }
    if let Some(a) = c.as_any().downcast_ref::<StringArray>() {
        return a.value(i).to_string();
    }
    if let Some(a) = c.as_any().downcast_ref::<arrow_array::LargeStringArray>() {
        return a.value(i).to_string();
    }
    if let Some(a) = c.as_any().downcast_ref::<Date32Array>() {
        return format!("d{}", a.value(i));
    }
    if let Some(a) = c.as_any().downcast_ref::<Float64Array>() {
        return format!("{:.6}", a.value(i));
    }
    if let Some(a) = c.as_any().downcast_ref::<ListArray>() {
        let v = a.value(i);
        return (0..v.len()).map(|j| cell(v.as_ref(), j)).collect::<Vec<_>>().join("|");
    }
    panic!("unexpected column type {:?}", c.data_type())
}

fn check_against_reference(source: &str, file: &str) {
    let out = tempfile::tempdir().unwrap();
    let o = lake(&[
        "contract",
        "check",
        &format!("config/sources/{source}.toml"),
        &format!("samples/{source}/{file}"),
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    let stem = file.rsplit_once('.').unwrap().0;
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join(format!("tests/expected/{stem}.manifest.json"))).unwrap(),
    )
    .unwrap();
    for (suffix, key) in [(".parquet", "expected_good"), (".bad.parquet", "expected_bad")] {
        let (names, got) = read_rows(&out.path().join(format!("{stem}{suffix}")));
        let (want_names, want) = read_rows(&root().join(format!("tests/expected/{stem}{suffix}")));
        assert_eq!(names, want_names, "{stem}{suffix}: columns");
        assert_eq!(got.len() as u64, manifest[key].as_u64().unwrap(), "{stem}{suffix}: row count");
        assert_eq!(got.len(), want.len(), "{stem}{suffix}: row count vs reference");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "{stem}{suffix}: row differs from the reference");
        }
        // the summary a person reads says the same
        let label = if suffix == ".parquet" { "good" } else { "bad" };
        let line = stdout.lines().find(|l| l.trim_start().starts_with(label)).unwrap();
        assert!(line.contains(&got.len().to_string()), "summary line `{line}`");
    }
}

#[test]
fn st_marys_matches_the_reference_pipeline() {
    check_against_reference("st_marys", "st_marys_600.csv");
}

#[test]
fn county_general_matches_the_reference_pipeline() {
    check_against_reference("county_general", "county_general_600.psv");
}

#[test]
fn valley_clinic_matches_the_reference_pipeline() {
    check_against_reference("valley_clinic", "valley_clinic_600.jsonl");
}

#[test]
fn every_contract_in_config_validates() {
    let dir = root().join("config/sources");
    let mut paths: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".toml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 3);
    let mut args = vec!["contract", "validate"];
    args.extend(paths.iter().map(String::as_str));
    let o = lake(&args);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok ")).count(), paths.len(), "{stdout}");
}

#[test]
fn an_invalid_contract_is_explained_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("config/sources/st_marys.toml"))
        .unwrap()
        .replace("drop = [\"RoomNo\"]", "drop = []");
    let p = dir.path().join("broken.toml");
    std::fs::write(&p, text).unwrap();
    let o = lake(&["contract", "validate", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("broken.toml:"), "{stdout}");
    assert!(stdout.contains("header column `RoomNo` is neither mapped"), "{stdout}");
}

// ---- hostile input: each gives a defined outcome or a clear error, never a panic ----

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    good: Vec<Vec<String>>,
    #[allow(dead_code)]
    bad: Vec<Vec<String>>,
    malformed: Vec<serde_json::Value>,
}

fn run_bytes(source: &str, name: &str, data: &[u8], extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join(name);
    std::fs::write(&input, data).unwrap();
    let out = dir.path().join("out");
    let mut args = vec!["contract", "check"];
    let c = format!("config/sources/{source}.toml");
    args.push(&c);
    args.push(input.to_str().unwrap());
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend(extra);
    let o = lake(&args);
    let stem = name.rsplit_once('.').map_or(name, |x| x.0);
    let read = |s: &str| {
        let p = out.join(format!("{stem}{s}"));
        if p.exists() && std::fs::metadata(&p).unwrap().len() > 0 {
            read_rows(&p).1
        } else {
            vec![]
        }
    };
    let malformed = std::fs::read_to_string(out.join(format!("{stem}.malformed.jsonl")))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (good, bad) =
        if o.status.success() { (read(".parquet"), read(".bad.parquet")) } else { (vec![], vec![]) };
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
        good,
        bad,
        malformed,
    }
}

const CG_HEADER: &str =
    "ENC_NO|PAT_ID|LNAME|FNAME|BIRTH_DT|SEX|SOC_SEC|STREET|CITY|ST|ZIP5|PHONE_NUM|ENC_DT|DX|CHG|INTERNAL_FLAG";
const CG_ROW: &str =
    "7|cg1|  doe |jane|19840307|2|123456789|1 main st|boston|ma|2139|617.555.1234|2024-01-02|E119^I10|12.5|N";

#[test]
fn bom_and_every_line_ending_give_the_same_rows() {
    let lf = format!("{CG_HEADER}\n{CG_ROW}\n{}\n", CG_ROW.replacen("7|", "8|", 1));
    let variants = [
        lf.clone(),
        format!("\u{feff}{lf}"),
        lf.replace('\n', "\r\n"),
        lf.replace('\n', "\r"),
        format!("{CG_HEADER}\r\n{CG_ROW}\r{}", CG_ROW.replacen("7|", "8|", 1)),
    ];
    for v in variants {
        let r = run_bytes("county_general", "in.psv", v.as_bytes(), &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.good.len(), 2, "{v:?}");
        let row = &r.good[0];
        assert_eq!(row[2], "7");
        assert_eq!(row[5], "DOE");
        assert_eq!(row[7], "d5179", "1984-03-07");
        assert_eq!(row[13], "02139");
        assert_eq!(row[18], "E11.9|I10");
        assert!(r.malformed.is_empty());
    }
}

#[test]
fn an_unterminated_quote_is_quarantined_with_its_line() {
    let data = "VisitID,PatientID,FirstName,LastName,MiddleInit,DOB,Gender,SSN,Address1,City,State,Zip,Phone,VisitDate,Facility,DxCodes,TotalCharges,RoomNo\n\
        V1,P1,Ann,Lee,,01/02/1980,F,123-45-6789,1 A St,Town,MA,02139,,01/02/2024,X,,,\n\
        V2,P2,\"Bob,Ray,,01/02/1980,M,123-45-6789\n\
        V3,P3,Cy,Day,,01/02/1980,M,123-45-6789,,,,,,01/02/2024,,,,\n";
    let r = run_bytes("st_marys", "q.csv", data.as_bytes(), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.good.len(), 1);
    assert_eq!(r.malformed.len(), 1);
    assert_eq!(r.malformed[0]["line"], 3);
    assert!(r.malformed[0]["reason"].as_str().unwrap().contains("unterminated"));
    assert!(r.malformed[0].get("raw").is_none(), "raw text only with --keep-raw");
}

#[test]
fn invalid_utf8_and_extra_fields_are_malformed_and_the_rest_goes_on() {
    let mut data = format!("{CG_HEADER}\n{CG_ROW}\n").into_bytes();
    data.extend_from_slice(b"9|cg2|D\xffOE|x|19840307|1|123456789||||||2024-01-02|||N\n");
    data.extend_from_slice(format!("{}|extra\n", CG_ROW.replacen("7|", "10|", 1)).as_bytes());
    data.extend_from_slice(format!("{}\n", CG_ROW.replacen("7|", "11|", 1)).as_bytes());
    let r = run_bytes("county_general", "u.psv", &data, &["--keep-raw"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.good.len(), 2);
    let reasons: Vec<(u64, String)> = r
        .malformed
        .iter()
        .map(|m| (m["line"].as_u64().unwrap(), m["reason"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(reasons[0], (3, "invalid UTF-8 at byte 7".to_string()));
    assert_eq!(reasons[1], (4, "more fields than the header's 16".to_string()));
    assert!(r.malformed[1]["raw"].as_str().unwrap().ends_with("|extra"), "--keep-raw keeps the text");
    assert!(r.stdout.contains("malformed                2"), "{}", r.stdout);
}

#[test]
fn empty_header_only_and_wrong_headers() {
    let r = run_bytes("county_general", "e.psv", b"", &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("the file is empty [EmptyInput]"), "{}", r.stderr);

    let r = run_bytes("county_general", "h.psv", format!("{CG_HEADER}\n").as_bytes(), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("rows read                0"), "{}", r.stdout);

    let wrong = CG_HEADER.replace("INTERNAL_FLAG", "NEW_COL");
    let r = run_bytes("county_general", "w.psv", format!("{wrong}\n{CG_ROW}\n").as_bytes(), &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("unexpected column at position 16"), "{}", r.stderr);
    assert!(!r.stderr.contains("NEW_COL"), "header cells may be data: never echoed");

    let reordered = CG_HEADER.replace("LNAME|FNAME", "FNAME|LNAME");
    let r = run_bytes("county_general", "r.psv", format!("{reordered}\n{CG_ROW}\n").as_bytes(), &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("different order"), "{}", r.stderr);

    let r = run_bytes("county_general", "z.psv", b"\x1f\x8b\x08\x00rest", &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("gzip"), "{}", r.stderr);
}

#[test]
fn a_100_mb_line_is_reported_and_skipped() {
    let mut data = format!("{CG_HEADER}\n{CG_ROW}\n").into_bytes();
    data.extend(std::iter::repeat_n(b'x', 100 << 20));
    data.push(b'\n');
    data.extend_from_slice(format!("{}\n", CG_ROW.replacen("7|", "8|", 1)).as_bytes());
    let r = run_bytes("county_general", "big.psv", &data, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.good.len(), 2);
    assert_eq!(r.malformed.len(), 1);
    assert_eq!(r.malformed[0]["line"], 3);
    assert!(r.malformed[0]["reason"].as_str().unwrap().starts_with("record too long"));
}

#[test]
fn json_lines_and_arrays_hostile_cases() {
    let good = r#"{"encounterId":"VC-1","mrn":"vc1","givenName":"ann","familyName":"lee","birthDate":"1980-01-02","ssn":"123-45-6789","encounterDate":"2024-01-02","diagnoses":["e119"],"charges":12,"extraKey":1}"#;
    let data = format!("{good}\n[1,2]\n{{\"encounterId\": \"VC-2\"\n\n   \n{good}\n");
    let r = run_bytes("valley_clinic", "v.jsonl", data.as_bytes(), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.good.len(), 1, "the duplicate line is dropped");
    assert!(r.stdout.contains("duplicates               1"), "{}", r.stdout);
    assert!(r.stdout.contains("ignored keys    at position 10 (1)"), "{}", r.stdout);
    assert!(!r.stdout.contains("extraKey"), "key names may hold PHI: {}", r.stdout);
    let m: Vec<(u64, &str)> =
        r.malformed.iter().map(|m| (m["line"].as_u64().unwrap(), m["reason"].as_str().unwrap())).collect();
    assert_eq!(m, [(2, "not a JSON object"), (3, "invalid JSON (truncated)")]);
    assert_eq!(r.good[0][18], "E11.9");
    assert_eq!(r.good[0][19], "12.000000");

    // the same rows as a JSON array, with a non-object element reported by its index
    let contract = std::fs::read_to_string(root().join("config/sources/valley_clinic.toml"))
        .unwrap()
        .replace("format = \"json_lines\"", "format = \"json_array\"");
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("arr.toml");
    std::fs::write(&cp, contract).unwrap();
    let input = dir.path().join("a.json");
    let spaced = good.replace(",", ", ");
    std::fs::write(&input, format!("[{good}, \"text\", {spaced}]")).unwrap();
    let out = dir.path().join("out");
    let o = lake(&[
        "contract",
        "check",
        cp.to_str().unwrap(),
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("duplicates               1"), "same keys and values: {stdout}");
    let mal = std::fs::read_to_string(out.join("a.malformed.jsonl")).unwrap();
    assert_eq!(mal.trim(), r#"{"element":1,"reason":"not a JSON object"}"#);
}
