//! Values that never lie: each case runs a file through `transform::run` with a shipped contract
//! (or a variant of it) and asserts what a user sees: the Parquet read back, the summary's
//! counts and reasons, and the malformed records.
#![allow(clippy::unwrap_used)]

mod common;

use common::{check_bytes, config, Contract, Row};

const CG_HEADER: &str = "ENC_NO|PAT_ID|LNAME|FNAME|BIRTH_DT|SEX|SOC_SEC|STREET|CITY|ST|ZIP5|PHONE_NUM|ENC_DT|DX|CHG|INTERNAL_FLAG";

fn cg_row(id: &str, charge: &str) -> String {
    format!("{id}|CG1|POWELL|PAT|19591127|2|647847999|1 ELM|ARLINGTON|MA|2474|3516385475|2023-05-01|J069|{charge}|N")
}

fn by_id<'r>(rows: &'r [Row], id: &str) -> &'r Row {
    rows.iter().find(|r| r["encounter_id"] == id).unwrap_or_else(|| panic!("no row {id}: {rows:?}"))
}

#[test]
fn non_finite_charges_are_null_with_a_counted_reason() {
    let mut text = format!("{CG_HEADER}\n");
    for (id, charge) in
        [("1", "inf"), ("2", "-Infinity"), ("3", "1e400"), ("4", "NaN"), ("5", "$1,200.50"), ("6", "n/a")]
    {
        text.push_str(&cg_row(id, charge));
        text.push('\n');
    }
    let r = check_bytes(Contract::Config("county_general"), "cg.psv", text.as_bytes());
    assert!(r.ok, "{}", r.error);
    assert_eq!(r.good.len(), 6, "charges is not required: the rows stay good");
    for id in ["1", "2", "3", "4", "6"] {
        assert_eq!(by_id(&r.good, id)["charges"], "<null>", "row {id}");
    }
    assert_eq!(by_id(&r.good, "5")["charges"], "1200.50");
    assert_eq!(r.summary["refused_values"], serde_json::json!({"charges: not a finite number": 4}));
}

const VC: &str = r#"{"encounterId": "VC-1", "mrn": "vc1", "givenName": "ann", "familyName": "lee", "birthDate": "1980-01-02", "gender": "female", "ssn": "123-45-6789", "encounterDate": "2024-01-02", "diagnoses": ["e119"], "charges": 12}"#;

/// A Valley Clinic line with `edits`: each key's value replaced by raw JSON text, the edited
/// keys moved to the end in order (the others in alphabetical order, positions 1 to 10).
fn vc(id: &str, edits: &[(&str, &str)]) -> String {
    let mut v: serde_json::Value = serde_json::from_str(VC).unwrap();
    v["encounterId"] = id.into();
    let obj = v.as_object_mut().unwrap();
    for (key, _) in edits {
        obj.remove(*key);
    }
    let mut line = v.to_string();
    line.pop();
    for (key, raw) in edits {
        line.push_str(&format!(",\"{key}\":{raw}"));
    }
    line.push('}');
    line
}

#[test]
fn json_numbers_keep_their_text_and_non_finite_ones_are_refused() {
    let text = [
        vc("VC-1", &[("mrn", "123456789012345678901234"), ("charges", "1e400")]),
        vc("VC-2", &[("mrn", "12345678901234567890.50"), ("charges", "-1e999")]),
        vc("VC-3", &[("mrn", "-0"), ("charges", "12.25")]),
    ]
    .join("\n");
    let r = check_bytes(Contract::Config("valley_clinic"), "v.jsonl", text.as_bytes());
    assert!(r.ok, "{}", r.error);
    assert!(r.malformed.is_empty(), "{:?}", r.malformed);
    assert_eq!(by_id(&r.good, "VC-1")["patient_id"], "123456789012345678901234");
    assert_eq!(by_id(&r.good, "VC-2")["patient_id"], "12345678901234567890.50");
    assert_eq!(by_id(&r.good, "VC-3")["patient_id"], "-0");
    assert_eq!(by_id(&r.good, "VC-1")["charges"], "<null>");
    assert_eq!(by_id(&r.good, "VC-3")["charges"], "12.25");
    assert_eq!(r.summary["refused_values"], serde_json::json!({"charges: not a finite number": 2}));
}

fn non_scalar_lines() -> String {
    [
        vc("VC-1", &[("mrn", "true")]),
        vc("VC-2", &[("facility", "{\"name\":\"North\"}")]),
        vc("VC-3", &[("diagnoses", "[\"e119\", [\"i10\", \"j45909\"]]")]),
        vc("VC-4", &[("familyName", "[\"lee\",\"li\"]")]),
        vc("VC-5", &[("diagnoses", "[\"e119\", false, {\"code\": \"i10\"}]")]),
    ]
    .join("\n")
}

#[test]
fn booleans_objects_and_arrays_are_refused_by_default_never_silently() {
    let r = check_bytes(Contract::Config("valley_clinic"), "v.jsonl", non_scalar_lines().as_bytes());
    assert!(r.ok, "{}", r.error);
    // patient_id and last_name are required: their refused values make the rows bad
    assert_eq!(r.bad.len(), 2);
    assert_eq!(by_id(&r.bad, "VC-1")["missing_fields"], "patient_id");
    assert_eq!(by_id(&r.bad, "VC-4")["missing_fields"], "last_name");
    assert_eq!(by_id(&r.good, "VC-2")["facility"], "<null>");
    assert_eq!(
        by_id(&r.good, "VC-3")["diagnosis_codes"],
        "<null>",
        "not E11.9 alone: the nested list is not dropped"
    );
    assert_eq!(by_id(&r.good, "VC-5")["diagnosis_codes"], "<null>");
    assert_eq!(
        r.summary["refused_values"],
        serde_json::json!({
            "patient_id: a boolean (the contract's non_scalar rule is refuse)": 1,
            "facility: an object (the contract's non_scalar rule is refuse)": 1,
            "diagnosis_codes: an array inside the list (the contract's non_scalar rule is refuse)": 1,
            "diagnosis_codes: a boolean (the contract's non_scalar rule is refuse)": 1,
            "last_name: an array where one value is expected (the contract's non_scalar rule is refuse)": 1,
        })
    );
}

#[test]
fn booleans_objects_and_arrays_are_rendered_when_the_contract_says_so() {
    let contract = format!("{}\n[values]\nnon_scalar = \"render\"\n", config("valley_clinic"));
    let r = check_bytes(Contract::Text(&contract), "v.jsonl", non_scalar_lines().as_bytes());
    assert!(r.ok, "{}", r.error);
    assert_eq!(r.bad.len(), 0, "{:?}", r.bad);
    assert_eq!(by_id(&r.good, "VC-1")["patient_id"], "TRUE", "rendered, then the text_upper rule");
    assert_eq!(by_id(&r.good, "VC-2")["facility"], "{\"NAME\":\"NORTH\"}", "rendered, then upper-cased");
    assert_eq!(by_id(&r.good, "VC-3")["diagnosis_codes"], "E11.9|I10|J45.909", "nested lists flattened");
    assert_eq!(by_id(&r.good, "VC-4")["last_name"], "[\"LEE\",\"LI\"]");
    assert_eq!(by_id(&r.good, "VC-5")["diagnosis_codes"], "E11.9|FALSE|{\"CODE\":\"I10\"}");
    assert_eq!(r.summary["refused_values"], serde_json::json!({}));
}

#[test]
fn nul_only_records_are_malformed_and_bad_rows_keep_short_values() {
    let mut data = format!("{CG_HEADER}\n{}\n", cg_row("1", "10")).into_bytes();
    data.extend(std::iter::repeat_n(0u8, 10 << 20));
    data.extend_from_slice(format!("\n{}\n", cg_row("2", "10")).as_bytes());
    let long_id = "7".repeat(5000);
    // a bad row (no patient id) with a 5,000-character encounter id
    data.extend_from_slice(format!("{}\n", cg_row(&long_id, "10").replace("|CG1|", "||")).as_bytes());
    let r = check_bytes(Contract::Config("county_general"), "z.psv", &data);
    assert!(r.ok, "{}", r.error);
    assert_eq!(r.good.len(), 2);
    let m: Vec<(u64, &str)> =
        r.malformed.iter().map(|m| (m["line"].as_u64().unwrap(), m["reason"].as_str().unwrap())).collect();
    assert_eq!(m, [(3, "the record holds only NUL bytes (a zero-filled or unfinished file?)")]);
    assert_eq!(r.bad.len(), 1);
    assert_eq!(r.bad[0]["encounter_id"], "7".repeat(1024), "a bad row keeps 1 KiB of a value");
    assert_eq!(r.bad[0]["missing_fields"], "patient_id");

    // nothing but NULs after the header (no line end at all)
    let mut data = format!("{CG_HEADER}\n").into_bytes();
    data.extend(std::iter::repeat_n(0u8, 1 << 20));
    let r = check_bytes(Contract::Config("county_general"), "z.psv", &data);
    assert!(r.ok, "{}", r.error);
    assert_eq!((r.good.len(), r.bad.len(), r.malformed.len()), (0, 0, 1));
}

#[test]
fn unmapped_keys_are_counted_by_position_never_by_name() {
    let text = [
        vc("VC-1", &[("patientSsnCopy", "\"123-45-6789\"")]),
        vc("VC-2", &[("patientSsnCopy", "\"987-65-4321\""), ("Jane Doe", "1")]),
    ]
    .join("\n");
    let r = check_bytes(Contract::Config("valley_clinic"), "v.jsonl", text.as_bytes());
    assert!(r.ok, "{}", r.error);
    assert_eq!(r.summary["ignored_keys"], serde_json::json!({"11": 2, "12": 1}));
    let summary = r.summary.to_string();
    assert!(!summary.contains("patientSsnCopy") && !summary.contains("Jane"), "{summary}");
}

#[test]
fn distinct_records_past_the_limit_end_in_a_clear_error() {
    let contract =
        config("county_general").replace("[dates]", "[limits]\nmax_distinct_records = 100\n\n[dates]");
    let rows = |n: usize| -> String {
        let mut t = format!("{CG_HEADER}\n");
        for i in 0..n {
            t.push_str(&cg_row(&i.to_string(), "1"));
            t.push('\n');
        }
        // duplicates are not distinct records
        t.push_str(&cg_row("0", "1"));
        t.push('\n');
        t
    };
    let r = check_bytes(Contract::Text(&contract), "d.psv", rows(100).as_bytes());
    assert!(r.ok, "{}", r.error);
    assert_eq!((r.good.len(), r.summary["duplicates"].as_u64()), (100, Some(1)));
    let r = check_bytes(Contract::Text(&contract), "d.psv", rows(101).as_bytes());
    assert!(!r.ok);
    assert_eq!(
        r.error,
        "unsupported content: the file holds more than 100 distinct records (the contract's max_distinct_records): split it or raise the limit [UnsupportedContent]"
    );
}

#[test]
fn partial_dates_are_refused_or_completed_as_declared() {
    let text = [
        vc("VC-1", &[("birthDate", "\"1974-12\"")]),
        vc("VC-2", &[("birthDate", "\"1974\"")]),
        vc("VC-3", &[("birthDate", "\"1974-12-03\"")]),
    ]
    .join("\n");
    let r = check_bytes(Contract::Config("valley_clinic"), "v.jsonl", text.as_bytes());
    assert_eq!(r.bad.len(), 2, "dob is required");
    assert_eq!(
        r.summary["refused_values"],
        serde_json::json!({"dob: a partial date (the contract's partial_dates rule is refuse)": 2})
    );
    let contract = format!("{}\n[values]\npartial_dates = {{ day = 15 }}\n", config("valley_clinic"));
    let r = check_bytes(Contract::Text(&contract), "v.jsonl", text.as_bytes());
    // 1974-12-15 is day 1809 after 1970-01-01; a year alone needs a declared month
    assert_eq!(by_id(&r.good, "VC-1")["dob"], "d1809");
    assert_eq!(by_id(&r.bad, "VC-2")["missing_fields"], "dob");
    assert_eq!(by_id(&r.good, "VC-3")["dob"], "d1797");
    let contract =
        format!("{}\n[values]\npartial_dates = {{ day = 1, month = 7 }}\n", config("valley_clinic"));
    let r = check_bytes(Contract::Text(&contract), "v.jsonl", text.as_bytes());
    assert_eq!(by_id(&r.good, "VC-2")["dob"], "d1642", "1974-07-01");
    assert_eq!(r.summary["refused_values"], serde_json::json!({}));
}

#[test]
fn json_numbers_in_list_columns_keep_their_text() {
    let text = vc("VC-1", &[("diagnoses", "[123456789012345678901234, \"e119\", 1e400, 0.10]")]);
    let r = check_bytes(Contract::Config("valley_clinic"), "v.jsonl", text.as_bytes());
    assert!(r.ok, "{}", r.error);
    assert!(r.malformed.is_empty(), "{:?}", r.malformed);
    assert_eq!(
        by_id(&r.good, "VC-1")["diagnosis_codes"],
        "123456789012345678901234|E11.9|1E400|0.10",
        "every digit, as written (not 1.2345678901234568e23, not a refused list)"
    );
}

/// A FHIR bundle of two encounters of one patient: the MRN written as a JSON number, values out
/// of f64's range in unmapped parts of every resource, and the charges as an extension.
const FHIR_NUMBERS: &str = r#"{"resourceType":"Bundle","entry":[
{"resource":{"resourceType":"Patient","id":"p1","identifier":[{"value":123456789012345678901234},{"value":"123456789"}],
 "name":[{"family":"Doe","given":["Jane"]}],"birthDate":"1984-03-07","extension":[{"url":"http://x/odd","valueDecimal":1e400}]}},
{"resource":{"resourceType":"Encounter","id":"e1","subject":{"reference":"Patient/p1"},"period":{"start":"2024-01-02"},
 "extension":[{"url":"http://x/charges","valueDecimal":1e400}]}},
{"resource":{"resourceType":"Encounter","id":"e2","subject":{"reference":"Patient/p1"},"period":{"start":"2024-01-03"},
 "extension":[{"url":"http://x/charges","valueDecimal":125.5}],"length":{"value":-1e999}}},
{"resource":{"resourceType":"Condition","id":"c1","encounter":{"reference":"Encounter/e1"},
 "code":{"coding":[{"code":"E119"}]},"onsetAge":{"value":1e400}}}]}"#;

#[test]
fn fhir_numbers_keep_their_text_and_out_of_range_ones_lose_nothing_else() {
    let contract = config("riverside_fhir")
        .replace("[dates]", "charges = \"Encounter.extension('http://x/charges').valueDecimal\"\n\n[dates]");
    let r = check_bytes(Contract::Text(&contract), "n.json", FHIR_NUMBERS.as_bytes());
    assert!(r.ok, "{}", r.error);
    assert!(r.malformed.is_empty(), "{:?}", r.malformed);
    let e1 = by_id(&r.good, "e1");
    assert_eq!(e1["patient_id"], "123456789012345678901234", "every digit");
    assert_eq!(e1["last_name"], "DOE", "the patient with 1e400 in an unmapped part is joined");
    assert_eq!(e1["diagnosis_codes"], "E11.9", "the condition with 1e400 in an unmapped part is joined");
    assert_eq!(e1["charges"], "<null>");
    assert_eq!(by_id(&r.good, "e2")["charges"], "125.50");
    assert_eq!(r.summary["refused_values"], serde_json::json!({"charges: not a finite number": 1}));
}
