//! Every format through `transform::run` as the Lambdas and `lake contract check` call it: each
//! sample gives specific canonical values, and each hostile input ends in its documented outcome
//! (`docs/FORMATS.md`). Samples come from `crates/transform/tests/gen_formats.py`, compressed
//! hostile files from `crates/transform/tests/gen_hostile.py`.

#![allow(clippy::unwrap_used)]

mod common;

use common::{check, check_bytes, check_export, config, data, root, Contract, Row, Run};

fn by_id<'a>(rows: &'a [Row], id: &str) -> &'a Row {
    rows.iter().find(|r| r["encounter_id"] == id).unwrap_or_else(|| panic!("no row {id}"))
}

fn sample(source: &str, file: &str) -> Run {
    let r = check(Contract::Config(source), &root().join(format!("samples/{source}/{file}")));
    assert!(r.ok, "{}", r.error);
    r
}

/// What every sample of the generator holds: the same three fixed people (tests pin them).
fn assert_fixed_people(r: &Run, id1: &str, id2: &str, id3: &str, with_address: bool) {
    assert_eq!(r.summary["good"], 11, "{}", r.summary);
    assert_eq!(r.summary["bad"], 1, "{}", r.summary);
    assert_eq!(r.summary["malformed"], 0, "{}", r.summary);
    let a = by_id(&r.good, id1);
    assert_eq!(a["patient_id"], "HL1001");
    assert_eq!(a["last_name"], "O'BRIEN");
    assert_eq!(a["first_name"], "MARY");
    assert_eq!(a["dob"], "d5179", "1984-03-07");
    assert_eq!(a["sex"], "F");
    assert_eq!(a["ssn"], "123-45-6789");
    assert_eq!(a["zip"], "01101");
    assert_eq!(a["encounter_date"], "d19724", "2024-01-02");
    assert_eq!(a["diagnosis_codes"], "E11.9|I10");
    if with_address {
        assert_eq!(a["address"], "12 ELM ST & 3RD AVE", "escapes decoded");
        assert_eq!(a["city"], "SPRINGFIELD");
    }
    let b = by_id(&r.good, id2);
    assert_eq!((b["first_name"].as_str(), b["last_name"].as_str()), ("JOSÉ", "MÜLLER"));
    assert_eq!(b["dob"], "d14", "1970-01-15");
    assert_eq!(b["sex"], "M");
    assert_eq!(b["diagnosis_codes"], "J45.909");
    let c = by_id(&r.bad, id3);
    assert_eq!(c["last_name"], "LEE");
    assert_eq!(c["ssn"], "<null>");
    assert_eq!(c["missing_fields"], "ssn");
}

// ---- the samples ----

#[test]
fn hl7v2_sample_one_row_per_message() {
    let r = sample("harbor_lab", "harbor_lab_12.hl7");
    assert_fixed_people(&r, "V1001", "V1002", "V1003", true);
    let a = by_id(&r.good, "V1001");
    assert_eq!(a["middle_initial"], "Q");
    assert_eq!(a["phone"], "617-555-1234");
    assert_eq!(a["facility"], "HARBOR LAB");
    assert_eq!(r.summary["rows_read"], 12, "ORU and ADT messages alike; FHS/BHS/BTS/FTS are not rows");
    // the same file zipped gives the same rows
    let z = sample("harbor_lab", "harbor_lab_12_zip.zip");
    assert_eq!(z.summary["compression"], "zip");
    let key = |rows: &[Row]| {
        let mut v: Vec<Vec<String>> = rows
            .iter()
            .map(|r| r.iter().filter(|(k, _)| *k != "source_file").map(|(_, v)| v.clone()).collect())
            .collect();
        v.sort();
        v
    };
    assert_eq!(key(&z.good), key(&r.good));
}

#[test]
fn hl7v2_adt_and_oru_sample_picks_repetitions_by_component_value() {
    let r = sample("bayside_hl7", "bayside_hl7_4.hl7");
    assert!(r.malformed.is_empty(), "{:?}", r.malformed);
    assert_eq!(
        (r.summary["rows_read"].as_u64(), r.good.len()),
        (Some(4), 4),
        "A01, A04, A08 and R01: {:?}",
        r.bad
    );
    let got: Vec<(&str, &str, &str)> = ["BV2001", "BV2002", "BV2003", "BV2004"]
        .iter()
        .map(|id| {
            let row = by_id(&r.good, id);
            (row["patient_id"].as_str(), row["phone"].as_str(), row["diagnosis_codes"].as_str())
        })
        .collect();
    assert_eq!(
        got,
        [
            ("BH1001", "617-555-0100", "E11.9|I10"),
            ("BH1002", "781-555-0200", "J45.909"),
            ("BH1003", "617-555-0300", "F32.9"),
            ("BH1004", "781-555-0400", "K21.9"),
        ],
        "the MR identifier (not the SSA or other facility's id), the PRN (home) number (not work)"
    );
    let a = by_id(&r.good, "BV2001");
    assert_eq!((a["last_name"].as_str(), a["middle_initial"].as_str()), ("NGUYEN", "T"));
    assert_eq!(by_id(&r.good, "BV2002")["last_name"], "O'NEIL");
}

#[test]
fn hl7_batch_header_inside_a_message_is_named_without_a_junk_row() {
    let (m1, m2, m3) = (msg("M1", "P1"), msg("M2", "P2"), msg("M3", "P3"));
    // M2 is interrupted by a second BHS after its MSH and an EVN; M3 follows a BHS normally
    let broken = m2.replacen("\rPID", "\rEVN|A01\rBHS|^~\\&|OTHER\rPID", 1);
    let text = format!("FHS|^~\\&|A\rBHS|^~\\&|A\r{m1}{broken}BHS|^~\\&|B\r{m3}BTS|2\rFTS|1\r");
    let r = check_bytes(Contract::Config("harbor_lab"), "b.hl7", text.as_bytes());
    assert!(r.ok, "{}", r.error);
    let ids: Vec<&str> = r.good.iter().map(|g| g["encounter_id"].as_str()).collect();
    assert_eq!(ids, ["M1", "M3"]);
    assert_eq!(r.bad.len(), 0, "no junk row made of MSH and EVN");
    let m: Vec<(u64, &str)> =
        r.malformed.iter().map(|m| (m["line"].as_u64().unwrap(), m["reason"].as_str().unwrap())).collect();
    assert_eq!(
        m,
        [(7, "malformed HL7 message: segment 3 of the message is a BHS (batch header): a second file or batch header inside a message")]
    );
}

#[test]
fn fixed_width_sample_in_windows_1252_with_header_and_trailer() {
    let r = sample("old_mill", "old_mill_12.dat");
    assert_fixed_people(&r, "V1001", "V1002", "V1003", false);
    assert_eq!(r.summary["encoding"], "windows-1252");
    assert_eq!(r.summary["skipped"], 2, "the H and T records");
    assert_eq!(r.summary["rows_read"], 12);
    assert_eq!(by_id(&r.good, "V1001")["charges"], "120.50");
    let g = sample("old_mill", "old_mill_12_gz.dat.gz");
    assert_eq!(g.summary["compression"], "gzip");
    assert_eq!(g.good.len(), 11);
    assert_eq!(by_id(&g.good, "V1002")["last_name"], "MÜLLER");
}

#[test]
fn fhir_bundle_sample_joins_patient_and_conditions() {
    let r = sample("riverside_fhir", "riverside_fhir_12.json");
    assert_fixed_people(&r, "enc-0", "enc-1", "enc-2", true);
    assert_eq!(by_id(&r.good, "enc-0")["facility"], "RIVERSIDE MEDICAL CENTER");
    assert_eq!(r.summary["skipped"], 1, "the Organization resource");
}

#[test]
fn fhir_stu3_sample_follows_condition_context_and_fhirpath_fields() {
    let r = sample("lakeside_fhir", "lakeside_fhir_stu3.json");
    assert!(r.malformed.is_empty(), "{:?}", r.malformed);
    assert_eq!((r.good.len(), r.bad.len()), (3, 0), "{:?}", r.bad);
    assert_eq!(r.summary["skipped"], 1, "the patient without an encounter");
    let a = by_id(&r.good, "LS1");
    let got: Vec<&str> = [
        "patient_id",
        "last_name",
        "first_name",
        "middle_initial",
        "sex",
        "ssn",
        "phone",
        "email",
        "address",
        "diagnosis_codes",
    ]
    .iter()
    .map(|c| a[*c].as_str())
    .collect();
    assert_eq!(
        got,
        [
            "LS-1001",
            "OKAFOR",
            "GRACE",
            "A",
            "F",
            "123-45-6789",
            "617-555-0100",
            "grace@example.org",
            "2 LAKE ST",
            "E11.9|I10"
        ],
        "the MR identifier, the official name, the middle initial by substring(0, 1), the home phone, \
         the birth-sex extension, Condition.context"
    );
    // `1974-12` completed with the contract's declared day, never silently
    assert_eq!(by_id(&r.good, "LS3")["dob"], "d1809");
    // read as R4, the same bundle loses its diagnoses (Condition.encounter is absent)
    let r4 = config("lakeside_fhir").replace("version = \"stu3\"", "version = \"r4\"");
    let bundle = std::fs::read(root().join("samples/lakeside_fhir/lakeside_fhir_stu3.json")).unwrap();
    let r = check_bytes(Contract::Text(&r4), "l.json", &bundle);
    assert_eq!(by_id(&r.good, "LS1")["diagnosis_codes"], "<null>");
    assert_eq!(r.summary["skipped"], 5, "4 conditions and a patient no row joined");
}

#[test]
fn fhir_single_resources_and_patient_only_ndjson_say_what_they_did() {
    let r = sample("riverside_fhir", "riverside_patient.json");
    assert_eq!((r.summary["good"].as_u64(), r.summary["skipped"].as_u64()), (Some(0), Some(1)));
    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(ENCOUNTER).unwrap()).unwrap();
    let r = check_bytes(Contract::Config("riverside_fhir"), "e.json", pretty.as_bytes());
    assert!(r.ok, "{}", r.error);
    assert_eq!(r.bad.len(), 1, "an Encounter alone: its patient's columns are missing");
    assert_eq!(r.bad[0]["encounter_id"], "e1");
    let r = sample("riverside_fhir", "riverside_patients.ndjson");
    assert_eq!((r.summary["good"].as_u64(), r.summary["skipped"].as_u64()), (Some(0), Some(12)));
    let r = check_bytes(Contract::Config("riverside_fhir"), "x.json", b"{\n \"a\": 1\n}");
    assert_eq!(
        r.error,
        "broken file structure: the file is not a FHIR Bundle, a FHIR resource or NDJSON of resources [BrokenStructure]"
    );
}

/// Rows keyed for comparison across samples of the same people (`source_file` and
/// `source_system` left out).
fn keyed(rows: &[Row]) -> Vec<Vec<String>> {
    let mut v: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter().filter(|(k, _)| !k.starts_with("source_")).map(|(k, v)| format!("{k}={v}")).collect()
        })
        .collect();
    v.sort();
    v
}

fn assert_same_rows(a: &Run, b: &Run) {
    assert_eq!(keyed(&a.good), keyed(&b.good));
    assert_eq!(keyed(&a.bad), keyed(&b.bad));
    assert_eq!(a.summary["skipped"], b.summary["skipped"]);
    assert_eq!(a.summary["malformed"], b.summary["malformed"]);
}

#[test]
fn fhir_xml_samples_give_the_rows_of_their_json_twins() {
    let json = sample("riverside_fhir", "riverside_fhir_12.json");
    let xml = sample("riverside_fhir", "riverside_fhir_12.xml");
    assert_fixed_people(&xml, "enc-0", "enc-1", "enc-2", true);
    assert_same_rows(&xml, &json);
    let json = sample("lakeside_fhir", "lakeside_fhir_stu3.json");
    let xml = sample("lakeside_fhir", "lakeside_fhir_stu3.xml");
    assert_same_rows(&xml, &json);
    assert_eq!(by_id(&xml.good, "LS1")["middle_initial"], "A");
    assert_eq!(by_id(&xml.good, "LS3")["dob"], "d1809", "the partial date completed as declared");
}

#[test]
fn fhir_xml_hostile_files() {
    let patient = "<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"p1\"/></Patient>";
    let xxe = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\
<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"&xxe;\"/></Patient>";
    let deep = format!("<Bundle>{}{}</Bundle>", "<entry>".repeat(100_000), "</entry>".repeat(100_000));
    let truncated = "<Bundle xmlns=\"http://hl7.org/fhir\"><entry><resource><Patient><id value=\"p1\"/>";
    for (name, text, want) in [
        ("xxe.xml", xxe, "declares a DTD (<!DOCTYPE>): DTDs and entities are refused"),
        ("deep.xml", &deep, "nests deeper than max_depth (64)"),
        ("cut.xml", truncated, "the FHIR XML is truncated: 4 element(s) not closed"),
        ("lone.xml", "<Patient>", "the FHIR XML is truncated: 1 element(s) not closed"),
        ("other.xml", "<html><body/></html>", "not a FHIR Bundle, a FHIR resource or NDJSON of resources"),
        ("mismatch.xml", "<Patient><name></Patient>", "the FHIR XML is malformed"),
    ] {
        let r = check_bytes(Contract::Config("riverside_fhir"), name, text.as_bytes());
        assert!(!r.ok, "{name}");
        assert!(r.error.contains(want), "{name}: {}", r.error);
        assert!(r.error.contains("[BrokenStructure]"), "{name}: {}", r.error);
        assert!(!r.error.contains("passwd"), "{name}: {}", r.error);
    }
    // a lone resource is a single resource: skipped, no row
    let r = check_bytes(Contract::Config("riverside_fhir"), "p.xml", patient.as_bytes());
    assert!(r.ok, "{}", r.error);
    assert_eq!(r.summary["skipped"], 1);
}

/// The riverside sample with every resource edited by `edit`.
fn edited_riverside(mut edit: impl FnMut(&mut serde_json::Value)) -> Vec<u8> {
    let mut b: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root().join("samples/riverside_fhir/riverside_fhir_12.json")).unwrap(),
    )
    .unwrap();
    for e in b["entry"].as_array_mut().unwrap() {
        edit(&mut e["resource"]);
    }
    serde_json::to_vec(&b).unwrap()
}

#[test]
fn fhir_dstu2_follows_encounter_patient() {
    let r4 = sample("riverside_fhir", "riverside_fhir_12.json");
    let dstu2 = edited_riverside(|r| {
        if let Some(s) = r.as_object_mut().unwrap().remove("subject") {
            r["patient"] = s;
        }
    });
    let contract = config("riverside_fhir")
        .replace("format = \"fhir_bundle\"", "format = \"fhir_bundle\"\nversion = \"dstu2\"");
    let r = check_bytes(Contract::Text(&contract), "d.json", &dstu2);
    assert_same_rows(&r, &r4);
    // read as R4, no encounter finds its patient
    let r = check_bytes(Contract::Config("riverside_fhir"), "d.json", &dstu2);
    assert_eq!(r.good.len(), 0);
    assert!(r.bad.iter().all(|b| b["missing_fields"].contains("last_name")), "{:?}", r.bad);
}

#[test]
fn fhir_r4_encounter_diagnosis_joins_conditions_without_their_encounter_reference() {
    let r4 = sample("riverside_fhir", "riverside_fhir_12.json");
    let mut by_enc: std::collections::BTreeMap<String, Vec<serde_json::Value>> = Default::default();
    let bundle = edited_riverside(|r| {
        if r["resourceType"] == "Condition" {
            let enc = r.as_object_mut().unwrap().remove("encounter").unwrap();
            let id = r["id"].as_str().unwrap().to_string();
            by_enc
                .entry(enc["reference"].as_str().unwrap().to_string())
                .or_default()
                .push(serde_json::json!({"condition": {"reference": format!("urn:uuid:{id}")}, "rank": 1}));
        }
    });
    let mut b: serde_json::Value = serde_json::from_slice(&bundle).unwrap();
    for e in b["entry"].as_array_mut().unwrap() {
        let r = &mut e["resource"];
        if r["resourceType"] == "Encounter" {
            if let Some(d) = by_enc.get(&format!("Encounter/{}", r["id"].as_str().unwrap())) {
                r["diagnosis"] = serde_json::Value::Array(d.clone());
            }
        }
    }
    let r = check_bytes(Contract::Config("riverside_fhir"), "dx.json", &serde_json::to_vec(&b).unwrap());
    assert_same_rows(&r, &r4);
    assert_eq!(by_id(&r.good, "enc-0")["diagnosis_codes"], "E11.9|I10");
}

#[test]
fn fhir_bulk_export_joins_its_parts_as_the_bundle_does() {
    let bundle = sample("riverside_fhir", "riverside_fhir_12.json");
    let dir = root().join("samples/ridgeline_bulk/export-1");
    let r = check_export(Contract::Config("ridgeline_bulk"), &dir);
    assert!(r.ok, "{}", r.error);
    assert_eq!(keyed(&r.good), keyed(&bundle.good));
    assert_eq!(keyed(&r.bad), keyed(&bundle.bad));
    assert_eq!(r.summary["compression"], "gzip", "Condition.ndjson.gz");
    assert_eq!(r.summary["skipped"], 3, "the three Observations the manifest counts");
    assert_eq!(by_id(&r.good, "enc-0")["source_file"], "manifest.json");
    // a line of another type in a part, and a broken line: malformed, named by part and line
    let tmp = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(&dir).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, tmp.path().join(f.file_name().unwrap())).unwrap();
    }
    let enc = std::fs::read_to_string(dir.join("Encounter.ndjson")).unwrap();
    let extra = format!("{enc}{PATIENT}\n{{\"resourceType\":\n");
    std::fs::write(tmp.path().join("Encounter.ndjson"), extra).unwrap();
    let r = check_export(Contract::Config("ridgeline_bulk"), tmp.path());
    assert!(r.ok, "{}", r.error);
    assert_eq!(r.good.len(), bundle.good.len());
    let m: Vec<(u64, u64, &str)> = r
        .malformed
        .iter()
        .map(|m| (m["part"].as_u64().unwrap(), m["line"].as_u64().unwrap(), m["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(m, [(1, 13, "a Patient in the export's Encounter file"), (1, 14, "invalid JSON (truncated)")]);
}

#[test]
fn xml_sample_reads_records_and_their_ancestors() {
    let r = sample("lakeview_xml", "lakeview_xml_12.xml");
    assert_fixed_people(&r, "V1001", "V1002", "V1003", true);
    let a = by_id(&r.good, "V1001");
    assert_eq!(a["facility"], "LAKEVIEW CLINIC", "../../@facility");
    assert_eq!(a["charges"], "120.50");
}

#[test]
fn utf16_with_bom_reads_like_utf8() {
    let text = "ENC_NO|PAT_ID|LNAME|FNAME|BIRTH_DT|SEX|SOC_SEC|STREET|CITY|ST|ZIP5|PHONE_NUM|ENC_DT|DX|CHG|INTERNAL_FLAG\r\n\
                7|cg1|  doe |zoë|19840307|2|123456789|1 main st|boston|ma|2139|617.555.1234|2024-01-02|E119^I10|12.5|N\r\n";
    for (bom, le) in [([0xFF, 0xFE], true), ([0xFE, 0xFF], false)] {
        let mut data = bom.to_vec();
        for u in text.encode_utf16() {
            data.extend(if le { u.to_le_bytes() } else { u.to_be_bytes() });
        }
        let r = check_bytes(Contract::Config("county_general"), "u16.psv", &data);
        assert!(r.ok, "{}", r.error);
        assert_eq!(r.good.len(), 1);
        assert_eq!(r.good[0]["first_name"], "ZOË");
        assert_eq!(r.good[0]["dob"], "d5179");
        assert_eq!(r.summary["encoding"], if le { "UTF-16LE" } else { "UTF-16BE" });
    }
}

// ---- hostile input: each kind ends in its documented outcome ----

#[test]
fn compressed_hostile_files_fail_clearly() {
    let cases = [
        ("bomb.dat.gz", "expands more than 100:1 (a decompression bomb?)", "UnsupportedContent"),
        ("bomb.zip", "expands more than 100:1", "UnsupportedContent"),
        ("truncated.dat.gz", "the gzip stream is corrupt or truncated", "BrokenStructure"),
        ("slip.zip", "zip entry 1 has an absolute path or `..` in its name: refused", "UnsupportedContent"),
        ("absolute.zip", "absolute path or `..` in its name: refused", "UnsupportedContent"),
        (
            "two_files.zip",
            "the zip archive holds 2 files; exactly one file per archive is expected",
            "UnsupportedContent",
        ),
    ];
    for (file, msg, kind) in cases {
        let r = check(Contract::Config("old_mill"), &data(file));
        assert!(!r.ok, "{file}: {}", r.error);
        assert!(r.error.contains(msg), "{file}: {}", r.error);
        assert!(r.error.contains(&format!("[{kind}]")), "{file}: {}", r.error);
        assert!(!r.error.contains("evil"), "entry names may be PHI: never echoed");
    }
    // a truncated zip (central directory cut off)
    let z = std::fs::read(root().join("samples/harbor_lab/harbor_lab_12_zip.zip")).unwrap();
    let r = check_bytes(Contract::Config("harbor_lab"), "cut.zip", &z[..z.len() - 40]);
    assert!(!r.ok);
    assert!(r.error.contains("[BrokenStructure]"), "{}", r.error);
}

const FW_ROW: &str =
    "DV1001   HL1001  DOE            JANE        19840307F1234567890110120240102E119               12.50     ";

#[test]
fn fixed_width_hostile_lines() {
    let long = format!("D{}", "x".repeat(5000));
    let short = "DV1002   HL1002  SHORT";
    let text = format!(
        "H header\r\n{FW_ROW}\r\n{short}\r\nX other record type\r\n{long}\r\n{}\r\nT00000003\r\n",
        FW_ROW.replace("V1001", "V1004")
    );
    let contract = config("old_mill").replace("[dates]", "[limits]\nmax_record_bytes = 1024\n\n[dates]");
    let r = check_bytes(Contract::Text(&contract), "fw.dat", text.as_bytes());
    assert!(r.ok, "{}", r.error);
    assert_eq!(r.good.len(), 2);
    assert_eq!(by_id(&r.good, "V1004")["last_name"], "DOE");
    assert_eq!(r.summary["skipped"], 3, "H, X and T records");
    let m: Vec<(u64, &str)> =
        r.malformed.iter().map(|m| (m["line"].as_u64().unwrap(), m["reason"].as_str().unwrap())).collect();
    assert_eq!(
        m,
        [
            (3, format!("record is {} characters; the layout needs at least 96", short.len()).as_str()),
            (5, "record too long: over the contract's max_record_bytes")
        ]
    );
    // a windows-1252 byte: read as declared; without the declaration the record is malformed
    let mut row2 = FW_ROW.replace("V1001", "V1005").into_bytes();
    row2[18] = 0xC9;
    let bytes = [FW_ROW.as_bytes(), b"\r\n", &row2].concat();
    let r = check_bytes(Contract::Config("old_mill"), "fw2.dat", &bytes);
    assert_eq!(by_id(&r.good, "V1005")["last_name"], "D\u{c9}E");
    let utf8_only = config("old_mill").replace("encoding = \"windows-1252\"\n", "");
    let r = check_bytes(Contract::Text(&utf8_only), "fw2.dat", &bytes);
    assert_eq!(r.good.len(), 1);
    assert_eq!(r.malformed[0]["reason"], "invalid UTF-8 at byte 18");
    assert_eq!(r.malformed[0]["line"], 2);
}

/// Segment `id` with `fields` at their 1-based positions.
fn seg(id: &str, fields: &[(usize, &str)]) -> String {
    let n = fields.iter().map(|f| f.0).max().unwrap_or(0);
    let mut v = vec![""; n + 1];
    v[0] = id;
    for (i, f) in fields {
        v[*i] = f;
    }
    v.join("|")
}

fn msg(id: &str, mrn: &str) -> String {
    let pid =
        seg("PID", &[(1, "1"), (3, mrn), (5, "DOE^JANE"), (7, "19840307"), (8, "F"), (19, "123-45-6789")]);
    let pv1 = seg("PV1", &[(1, "1"), (2, "I"), (19, id), (44, "20240102")]);
    format!("MSH|^~\\&|A|B|C|D|20240102||ADT^A01|{id}|P|2.5.1\r{pid}\r{pv1}\rDG1|1||E119\r")
}

#[test]
fn hl7_hostile_messages() {
    let big = format!("MSH|^~\\&|A\rOBX|1|TX|||{}\r", "x".repeat(20_000));
    let text = format!(
        "ZZZ|orphan\r{}MSH|^~\\&|A\rpid|bad segment\r{}{big}{}",
        msg("M1", "P1"),
        msg("M2", "P2"),
        &msg("M3", "P3")[..60]
    );
    let contract = config("harbor_lab").replace("[dates]", "[limits]\nmax_record_bytes = 4096\n\n[dates]");
    let r = check_bytes(Contract::Text(&contract), "h.hl7", text.as_bytes());
    assert!(r.ok, "{}", r.error);
    assert_eq!(r.good.len(), 2, "M1 and M2");
    assert_eq!(by_id(&r.good, "M2")["patient_id"], "P2");
    assert_eq!(r.bad.len(), 1, "the truncated last message lacks its PID fields");
    let m: Vec<(u64, &str)> =
        r.malformed.iter().map(|m| (m["line"].as_u64().unwrap(), m["reason"].as_str().unwrap())).collect();
    assert_eq!(
        m,
        [
            (1, "malformed HL7 message: segments outside a message (no MSH segment before them)"),
            (6, "malformed HL7 message: segment 2 of the message is not a valid HL7 segment"),
            (12, "record too long: over the contract's max_record_bytes"),
        ]
    );
    // a file that is not HL7 at all: one malformed record, no rows
    let r = check_bytes(Contract::Config("harbor_lab"), "x.hl7", b"a,b,c\n1,2,3\n");
    assert!(r.ok);
    assert_eq!(r.summary["good"], 0);
    assert_eq!(r.malformed.len(), 1);
}

const PATIENT: &str = r#"{"resourceType":"Patient","id":"p1","identifier":[{"value":"MRN1"},{"value":"123456789"}],"name":[{"family":"Doe","given":["Jane"]}],"birthDate":"1984-03-07"}"#;
const ENCOUNTER: &str = r#"{"resourceType":"Encounter","id":"e1","subject":{"reference":"Patient/p1"},"period":{"start":"2024-01-02"}}"#;

#[test]
fn fhir_hostile_files() {
    // NDJSON: a broken line is malformed, an encounter without its patient is a bad row
    let orphan = ENCOUNTER.replace("\"e1\"", "\"e2\"").replace("Patient/p1", "Patient/nope");
    let text = format!("{PATIENT}\n{{\"resourceType\": \"Encounter\", \n{ENCOUNTER}\n[1]\n{orphan}\n");
    let r = check_bytes(Contract::Config("riverside_fhir"), "r.ndjson", text.as_bytes());
    assert!(r.ok, "{}", r.error);
    assert_eq!(r.good.len(), 1);
    assert_eq!(r.good[0]["last_name"], "DOE");
    assert_eq!(r.bad.len(), 1);
    assert!(r.bad[0]["missing_fields"].contains("last_name"), "{:?}", r.bad[0]);
    let m: Vec<(u64, &str)> =
        r.malformed.iter().map(|m| (m["line"].as_u64().unwrap(), m["reason"].as_str().unwrap())).collect();
    assert_eq!(m, [(2, "invalid JSON (truncated)"), (4, "not a FHIR resource (no resourceType)")]);

    // a truncated bundle is one broken document
    let bundle = format!(
        r#"{{"resourceType":"Bundle","entry":[{{"resource":{PATIENT}}},{{"resource":{ENCOUNTER}}}]}}"#
    );
    let r =
        check_bytes(Contract::Config("riverside_fhir"), "b.json", &bundle.as_bytes()[..bundle.len() - 30]);
    assert!(!r.ok);
    assert!(r.error.contains("the FHIR bundle is not valid JSON (truncated"), "{}", r.error);
    assert!(r.error.contains("[BrokenStructure]"), "{}", r.error);

    // nesting bomb: serde_json's recursion limit, not a stack overflow
    let deep =
        format!("{{\"resourceType\":\"Bundle\",\"entry\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let r = check_bytes(Contract::Config("riverside_fhir"), "deep.json", deep.as_bytes());
    assert!(r.ok, "{}", r.error);
    assert_eq!(r.malformed[0]["reason"], "bundle entry without a resource");
    assert_eq!(r.malformed[0]["element"], 0);
    let deep = format!(
        "{}\n{}\n",
        ENCOUNTER,
        PATIENT.replace("\"id\"", &format!("\"x\":{}{},\"id\"", "[".repeat(100_000), "]".repeat(100_000)))
    );
    let r = check_bytes(Contract::Config("riverside_fhir"), "deep.ndjson", deep.as_bytes());
    assert!(r.ok, "{}", r.error);
    assert_eq!(r.bad.len(), 1, "the encounter without its (unreadable) patient");
    assert!(r.bad[0]["missing_fields"].contains("last_name"));

    // oversized: held in memory, so capped
    let small = config("riverside_fhir").replace("[dates]", "[limits]\nmax_in_memory_bytes = 200\n\n[dates]");
    let r = check_bytes(Contract::Text(&small), "big.json", bundle.as_bytes());
    assert!(!r.ok);
    assert!(r.error.contains("larger than max_in_memory_bytes (200 bytes)"), "{}", r.error);
    assert!(r.error.contains("[UnsupportedContent]"), "{}", r.error);
}

const XML_REC: &str = "<Patient mrn=\"P1\"><Name><Family>Doe</Family><Given>Jane</Given></Name>\
<BirthDate>1984-03-07</BirthDate><SSN>123456789</SSN><Encounter id=\"E1\"><Date>2024-01-02</Date></Encounter></Patient>";

#[test]
fn xml_hostile_files() {
    let laughs = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\
<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]>\n<Export>&lol3;</Export>";
    let xxe = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><Export><Patient mrn=\"&xxe;\"/></Export>";
    for (name, text) in [("laughs.xml", laughs), ("xxe.xml", xxe)] {
        let r = check_bytes(Contract::Config("lakeview_xml"), name, text.as_bytes());
        assert!(!r.ok, "{name}");
        assert!(
            r.error.contains(
                "declares a DTD (<!DOCTYPE>): DTDs and entities are refused (XXE, entity expansion)"
            ),
            "{name}: {}",
            r.error
        );
        assert!(r.error.contains("[BrokenStructure]"));
    }
    let deep = format!("<Export>{}{}</Export>", "<a>".repeat(10_000), "</a>".repeat(10_000));
    let r = check_bytes(Contract::Config("lakeview_xml"), "deep.xml", deep.as_bytes());
    assert!(!r.ok);
    assert!(r.error.contains("nests deeper than max_depth (64)"), "{}", r.error);

    let whole = format!("<Export facility=\"F\">{XML_REC}</Export>");
    let cut = whole.strip_suffix("</Patient></Export>").unwrap();
    let r = check_bytes(Contract::Config("lakeview_xml"), "t.xml", cut.as_bytes());
    assert!(!r.ok);
    assert!(r.error.contains("the XML is truncated: 2 element(s) not closed"), "{}", r.error);

    let r = check_bytes(
        Contract::Config("lakeview_xml"),
        "m.xml",
        whole.replace("</Given>", "</Givn>").as_bytes(),
    );
    assert!(!r.ok);
    assert!(r.error.contains("the XML is malformed"), "{}", r.error);

    // record-level problems are quarantined and the rest goes on
    let big =
        XML_REC.replace("E1", "E3").replace("<Date>", &format!("<Note>{}</Note><Date>", "x".repeat(3000)));
    let text = format!(
        "<Export facility=\"F\">{XML_REC}{}{big}{}</Export>",
        XML_REC.replace("E1", "E2").replace("<Date>", "<Date>&unknown;"),
        XML_REC.replace("E1", "E4").replace("P1", "P4")
    );
    let contract = config("lakeview_xml").replace("[dates]", "[limits]\nmax_record_bytes = 1024\n\n[dates]");
    let r = check_bytes(Contract::Text(&contract), "r.xml", text.as_bytes());
    assert!(r.ok, "{}", r.error);
    assert_eq!(r.good.len(), 2, "E1 and E4");
    assert_eq!(by_id(&r.good, "E4")["patient_id"], "P4");
    let m: Vec<(u64, &str)> =
        r.malformed.iter().map(|m| (m["element"].as_u64().unwrap(), m["reason"].as_str().unwrap())).collect();
    assert_eq!(
        m,
        [
            (1, "a value uses an undeclared entity"),
            (2, "record too long: over the contract's max_record_bytes")
        ]
    );
}

#[test]
fn excel_samples_xlsx_xls_and_ods_give_the_same_rows() {
    for ext in ["xlsx", "xls", "ods"] {
        let r = sample("brookside_xlsx", &format!("brookside_12.{ext}"));
        assert_fixed_people(&r, "V1001", "V1002", "V1003", false);
        let a = by_id(&r.good, "V1001");
        assert_eq!(a["zip"], "01101", "{ext}: a ZIP stored as the number 1101");
        assert_eq!(a["ssn"], "123-45-6789", "{ext}: an SSN stored as a number");
        assert_eq!(a["charges"], "120.50", "{ext}");
        assert_eq!(a["facility"], "BROOKSIDE CLINIC");
        assert_eq!(
            r.summary["ignored_keys"],
            serde_json::json!({"13": 12}),
            "{ext}: a header column the contract does not name, by position (`Room`, never named)"
        );
    }
}

#[test]
fn excel_hostile_workbooks() {
    let xlsx = std::fs::read(root().join("samples/brookside_xlsx/brookside_12.xlsx")).unwrap();
    let cases: [(&str, Vec<u8>, &str, &str); 4] = [
        (
            "cut.xlsx",
            xlsx[..xlsx.len() / 2].to_vec(),
            "the workbook's zip container is unreadable",
            "BrokenStructure",
        ),
        ("text.xlsx", b"Visit ID,MRN\nV1,M1\n".to_vec(), "the file is not a workbook", "UnsupportedContent"),
        (
            "bomb.xlsx",
            std::fs::read(data("bomb.xlsx")).unwrap(),
            "expands more than 100:1",
            "UnsupportedContent",
        ),
        (
            "far_cell.xlsx",
            std::fs::read(data("far_cell.xlsx")).unwrap(),
            "sheet `Visits` spans 17179869184 cells (first to last used cell), over the 16777216",
            "UnsupportedContent",
        ),
    ];
    for (name, bytes, msg, kind) in cases {
        let r = check_bytes(Contract::Config("brookside_xlsx"), name, &bytes);
        assert!(!r.ok, "{name}");
        assert!(r.error.contains(msg), "{name}: {}", r.error);
        assert!(r.error.contains(&format!("[{kind}]")), "{name}: {}", r.error);
    }
    // an xls whose sector chain loops (calamine would grow memory without end): refused first
    let mut xls = std::fs::read(root().join("samples/brookside_xlsx/brookside_12.xls")).unwrap();
    let first_fat = u32::from_le_bytes([xls[76], xls[77], xls[78], xls[79]]) as usize;
    let at = (first_fat + 1) * 512; // FAT entry 0: point sector 0 at itself
    xls[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
    let r = check_bytes(Contract::Config("brookside_xlsx"), "loop.xls", &xls);
    assert!(!r.ok);
    assert!(
        r.error.contains("the xls workbook is corrupt: its FAT has a cycle [BrokenStructure]"),
        "{}",
        r.error
    );
    // an xls whose DIMENSIONS record claims 65,535 columns (calamine would reserve ~137 GB)
    let mut xls = std::fs::read(root().join("samples/brookside_xlsx/brookside_12.xls")).unwrap();
    let dims = xls.windows(4).rposition(|w| w == [0x00, 0x02, 0x0E, 0x00]).unwrap();
    xls[dims + 14..dims + 16].copy_from_slice(&[0xFF, 0xFF]);
    let r = check_bytes(Contract::Config("brookside_xlsx"), "dims.xls", &xls);
    assert!(!r.ok);
    assert!(r.error.contains("the xls workbook is corrupt: a DIMENSIONS record is malformed"), "{}", r.error);
    let other_sheet = config("brookside_xlsx").replace("sheet = \"Visits\"", "sheet = \"Visitz\"");
    let r = check_bytes(Contract::Text(&other_sheet), "s.xlsx", &xlsx);
    assert!(!r.ok);
    assert!(r.error.contains("the workbook has no sheet `Visitz` (it has: Notes, Visits)"), "{}", r.error);
    let wrong_header = config("brookside_xlsx").replace("header_row = 2", "header_row = 1");
    let r = check_bytes(Contract::Text(&wrong_header), "h.xlsx", &xlsx);
    assert!(!r.ok);
    assert!(
        r.error.contains("lacks column `Visit ID` that the contract expects [HeaderMismatch]"),
        "{}",
        r.error
    );
    let small =
        config("brookside_xlsx").replace("[dates]", "[limits]\nmax_in_memory_bytes = 4096\n\n[dates]");
    let r = check_bytes(Contract::Text(&small), "big.xlsx", &xlsx);
    assert!(!r.ok);
    assert!(r.error.contains("larger than max_in_memory_bytes (4096 bytes)"), "{}", r.error);
}
