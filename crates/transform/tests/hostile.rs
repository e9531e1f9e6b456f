//! The hostile-input corpus (`tests/hostile/`, plus cases too big to commit, generated here):
//! each file has a documented outcome, and none may panic, hang or lose the file. See
//! `tests/hostile/README.md` for the table.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::Contract;

#[derive(Debug)]
enum Want {
    /// A summary with these counts.
    Rows { good: u64, bad: u64, malformed: u64 },
    /// An error with this text in `<message> [<kind>]`.
    Error(&'static str),
}

fn check(source: &str, input: &Path, want: Want) {
    let r = common::check(Contract::Config(source), input);
    let name = input.file_name().unwrap().to_string_lossy();
    match want {
        Want::Rows { good, bad, malformed } => {
            assert!(r.ok, "{name}: {}", r.error);
            let v = &r.summary;
            assert_eq!(
                (v["good"].as_u64(), v["bad"].as_u64(), v["malformed"].as_u64()),
                (Some(good), Some(bad), Some(malformed)),
                "{name}: {v}"
            );
        }
        Want::Error(text) => {
            assert!(!r.ok, "{name}: {}", r.summary);
            assert!(r.error.contains(text), "{name}: expected `{text}` in: {}", r.error);
        }
    }
}

#[test]
fn committed_corpus_outcomes() {
    let h = |f: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile").join(f);
    check("st_marys", &h("formula_injection.csv"), Want::Rows { good: 2, bad: 0, malformed: 0 });
    check("county_general", &h("nul_bidi.psv"), Want::Rows { good: 2, bad: 0, malformed: 0 });
    check("county_general", &h("bom_middle.psv"), Want::Rows { good: 2, bad: 0, malformed: 0 });
    check("county_general", &h("duplicate_header.psv"), Want::Error("the header lacks column `FNAME`"));
    check("county_general", &h("missing_header.psv"), Want::Error("the header lacks column `INTERNAL_FLAG`"));
    check("county_general", &h("overlong_utf8.psv"), Want::Rows { good: 2, bad: 0, malformed: 2 });
    check("st_marys", &h("bare_quotes.csv"), Want::Rows { good: 2, bad: 0, malformed: 0 });
    check("st_marys", &h("partial_upload.csv"), Want::Rows { good: 2, bad: 1, malformed: 0 });
    check("st_marys", &h("unterminated_quote.csv"), Want::Rows { good: 1, bad: 0, malformed: 1 });
    check("county_general", &h("cr_only.psv"), Want::Rows { good: 2, bad: 0, malformed: 0 });
    check("county_general", &h("empty.psv"), Want::Error("[EmptyInput]"));
}

const H_CG: &str = "ENC_NO|PAT_ID|LNAME|FNAME|BIRTH_DT|SEX|SOC_SEC|STREET|CITY|ST|ZIP5|PHONE_NUM|ENC_DT|DX|CHG|INTERNAL_FLAG";
const ROW: &str =
    "7|cg7|doe|jane|19840307|2|123456789|1 main st|boston|ma|2139|617.555.1234|2024-01-02|E119|12.5|N";

#[test]
fn a_100000_column_header_and_a_100000_field_line() {
    let dir = tempfile::tempdir().unwrap();
    let wide: Vec<String> = (0..100_000).map(|i| format!("C{i}")).collect();
    let p = dir.path().join("wide_header.psv");
    std::fs::write(&p, format!("{}|{}\n{ROW}\n", H_CG, wide.join("|"))).unwrap();
    check("county_general", &p, Want::Error("unexpected column at position 17"));
    let p = dir.path().join("wide_row.psv");
    std::fs::write(&p, format!("{H_CG}\n{ROW}|{}\n{ROW}\n", wide.join("|"))).unwrap();
    check("county_general", &p, Want::Rows { good: 1, bad: 0, malformed: 1 });
}

#[test]
fn a_2_gb_line_is_skipped_in_bounded_memory() {
    // Streamed from a generator: 2 GiB on disk is more than a CI machine may have free.
    use std::io::Read;
    let head = format!("{H_CG}\n{ROW}\n");
    let tail = format!("\n{}\n", ROW.replacen("7|", "8|", 1));
    let input = head.as_bytes().chain(std::io::repeat(b'x').take(2 << 30)).chain(tail.as_bytes());
    let r = common::check_reader(Contract::Config("county_general"), "two_gb_line.psv", input);
    assert!(r.ok, "{}", r.error);
    let v = &r.summary;
    assert_eq!(
        (v["good"].as_u64(), v["bad"].as_u64(), v["malformed"].as_u64()),
        (Some(2), Some(0), Some(1)),
        "{v}"
    );
    let kept = r.malformed[0].to_string().len();
    assert!(kept < 64 << 10, "the malformed record keeps {kept} bytes of a 2 GiB line");
}
