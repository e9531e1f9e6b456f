//! `lake match` and `lake rules` through the binary: records (CSV, lower case, Parquet, a source's
//! own file through its contract) against the example person file in memory or a PostgreSQL
//! index, the decisions CSV, precision / recall per tier against a truth file, `--rules`; rules
//! files checked and published (an invalid one named and refused).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn lake_match_writes_one_decision_per_record_and_scores_each_tier_against_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    // persons 9000001 and 9000002 of config/people.example.csv as records (no SSN), one of them
    // typed in lower case with a wrong birth day, and a record of nobody in the index
    let records = "record_id,first_name,last_name,dob,sex,address,city,zip,phone
r1,ALEXANDER,BARNES,1999-04-06,M,8 HILLSIDE PL,CHELMSFORD,01824,774-833-1605
r2,JAMES,WALSH,1933-05-25,M,1178 FOREST DR,WALTHAM,02452,781-447-3083
r3,ZEBEDEE,QUIXWORTH,2001-01-01,M,1 NOWHERE LN,NOWHERE,09999,
";
    let truth = "record_id,person_id\nr1,9000001\nr2,9000002\nr3,\n";
    let (rp, tp, out) = (dir.path().join("r.csv"), dir.path().join("t.csv"), dir.path().join("d.csv"));
    std::fs::write(&rp, records).unwrap();
    std::fs::write(&tp, truth).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(["match", "--people", root().join("config/people.example.csv").to_str().unwrap()])
        .args([
            "--records",
            rp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--truth",
            tp.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("3 records in"), "{stdout}");

    // no field holds a comma or a quote (ids, tier names, rule names, numbers)
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("record_id,tier,rule,person_ids,score"));
    let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(String::from).collect()).collect();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.len() == 5), "{text}");
    let get = |id: &str| rows.iter().find(|r| r[0] == id).unwrap().clone();
    assert_eq!((get("r1")[1].as_str(), get("r1")[3].as_str()), ("exact", "9000001"));
    assert_eq!((get("r3")[1].as_str(), get("r3")[3].as_str()), ("none", ""));
    assert!(!get("r1")[2].is_empty() && !get("r1")[4].is_empty(), "rule and score recorded");

    // the printed figures follow from the decisions: pairs of each tier that the truth confirms
    let truth = [("r1", "9000001"), ("r2", "9000002")];
    for (tier, tiers) in [
        ("exact", &["exact"][..]),
        ("proposed", &["proposed"][..]),
        ("exact+proposed", &["exact", "proposed"][..]),
    ] {
        let pred: Vec<(String, String)> = rows
            .iter()
            .filter(|r| tiers.contains(&r[1].as_str()))
            .flat_map(|r| {
                r[3].split_whitespace().map(|p| (r[0].to_string(), p.to_string())).collect::<Vec<_>>()
            })
            .collect();
        let tp = pred.iter().filter(|(r, p)| truth.contains(&(r.as_str(), p.as_str()))).count();
        let want = format!(
            "{tier:<16} {:>9} {:>9} {:>9.4} {:>9.4}",
            pred.len(),
            tp,
            tp as f64 / pred.len().max(1) as f64,
            tp as f64 / 2.0
        );
        assert!(stdout.contains(&want), "{want:?} in\n{stdout}");
    }
}

#[test]
fn by_key_shows_what_each_blocking_key_kind_costs_and_finds() {
    let dir = tempfile::tempdir().unwrap();
    // RECORDS: 9000001 right, 9000002 with a birth date one day off, and nobody (no phone)
    let (rp, tp, out) = (dir.path().join("r.csv"), dir.path().join("t.csv"), dir.path().join("d.csv"));
    std::fs::write(&rp, RECORDS).unwrap();
    std::fs::write(&tp, "record_id,person_id\nr1,9000001\nr2,9000002\nr3,\n").unwrap();
    let people = root().join("config/people.example.csv");
    let args = ["match", "--people", people.to_str().unwrap(), "--records", rp.to_str().unwrap()];
    let (ok, stdout, stderr) = lake(
        &[&args[..], &["--out", out.to_str().unwrap(), "--truth", tp.to_str().unwrap(), "--by-key"]].concat(),
    );
    assert!(ok, "{stdout}{stderr}");
    // kind, pass, keys, rows, rows/key, wide, true pairs, only this
    let row = |kind: &str| -> Vec<String> {
        let line = stdout.lines().find(|l| l.split_whitespace().next() == Some(kind));
        line.unwrap_or_else(|| panic!("no {kind} row in\n{stdout}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    // every record has a last name and a birth date; only r1's is right
    assert_eq!(row("last_name_dob")[1..4], ["1", "3", "1"], "{stdout}");
    assert_eq!(row("last_name_dob")[6], "1", "{stdout}");
    // r3 has no phone; r1's and r2's phones find their persons
    assert_eq!(row("phone")[1..3], ["3", "2"], "{stdout}");
    assert_eq!(row("phone")[6], "2", "{stdout}");
    // a fallback kind without a birth date: no record asks it
    assert_eq!(row("last_first_name")[2], "0", "{stdout}");
    assert!(stdout.contains("true pairs no kind finds: 0"), "{stdout}");
    assert!(stdout.contains("true pairs only wide keys find (none in a run): 0"), "{stdout}");
    // figures and kind names only: no value of a record or a person
    for value in ["BARNES", "WALSH", "QUIXWORTH", "HILLSIDE", "1999-04-06", "01824", "7748331605", "774-833"]
    {
        assert!(!stdout.contains(value), "{value} printed:\n{stdout}");
    }

    // the table needs a truth file
    let (ok, _, stderr) = lake(&[&args[..], &["--out", out.to_str().unwrap(), "--by-key"]].concat());
    assert!(!ok && stderr.contains("--truth"), "{stderr}");
}

fn lake(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_lake")).args(args).current_dir(root()).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

/// `lake match --people config/people.example.csv` on `records`; the decisions file's rows.
fn decide(dir: &Path, name: &str, records: &Path, extra: &[&str]) -> Vec<String> {
    let out = dir.join(format!("{name}.csv"));
    let people = root().join("config/people.example.csv");
    let mut args =
        vec!["match", "--people", people.to_str().unwrap(), "--records", records.to_str().unwrap()];
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend(extra);
    let (ok, stdout, stderr) = lake(&args);
    assert!(ok, "{stdout}{stderr}");
    std::fs::read_to_string(out).unwrap().lines().skip(1).map(String::from).collect()
}

const RECORDS: &str = "record_id,first_name,last_name,dob,sex,address,city,zip,phone
r1,ALEXANDER,BARNES,1999-04-06,M,8 HILLSIDE PL,CHELMSFORD,01824,774-833-1605
r2,JAMES,WALSH,1933-05-25,M,1178 FOREST DR,WALTHAM,02452,781-447-3083
r3,ZEBEDEE,QUIXWORTH,2001-01-01,M,1 NOWHERE LN,NOWHERE,09999,
";

#[test]
fn records_typed_in_lower_case_or_given_as_parquet_decide_like_canonical_ones() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.csv");
    std::fs::write(&clean, RECORDS).unwrap();
    let messy = dir.path().join("messy.csv");
    std::fs::write(
        &messy,
        "record_id,first_name,last_name,dob,sex,address,city,zip,phone
r1, alexander ,barnes,04/06/1999,male,8  hillside pl,chelmsford,1824,(774) 833-1605
r2,james,walsh,19330525,m,1178 forest dr,waltham,02452-1234,781.447.3083
r3,zebedee,quixworth,2001-01-01,m,1 nowhere ln,nowhere,09999,
",
    )
    .unwrap();
    let want = decide(dir.path(), "clean", &clean, &[]);
    assert_eq!(decide(dir.path(), "messy", &messy, &[]), want, "normalised like the index");

    // the same records as Parquet (dob as a date column)
    use arrow_array::{ArrayRef, Date32Array, RecordBatch, StringArray};
    let s = |v: &[&str]| -> ArrayRef { std::sync::Arc::new(StringArray::from(v.to_vec())) };
    let rows: Vec<Vec<&str>> = RECORDS.lines().skip(1).map(|l| l.split(',').collect()).collect();
    let col = |i: usize| s(&rows.iter().map(|r| r[i]).collect::<Vec<_>>());
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    let dob: Vec<i32> = rows
        .iter()
        .map(|r| (chrono::NaiveDate::parse_from_str(r[3], "%Y-%m-%d").unwrap() - epoch).num_days() as i32)
        .collect();
    let b = RecordBatch::try_from_iter([
        ("record_id", col(0)),
        ("first_name", col(1)),
        ("last_name", col(2)),
        ("dob", std::sync::Arc::new(Date32Array::from(dob)) as ArrayRef),
        ("sex", col(4)),
        ("address", col(5)),
        ("city", col(6)),
        ("zip", col(7)),
        ("phone", col(8)),
    ])
    .unwrap();
    let pq = dir.path().join("records.parquet");
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&pq).unwrap(), b.schema(), None).unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
    assert_eq!(decide(dir.path(), "parquet", &pq, &[]), want);
}

#[test]
fn rules_given_with_rules_decide_and_an_invalid_rules_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("r.csv");
    std::fs::write(&records, RECORDS).unwrap();
    let shipped = std::fs::read_to_string(root().join("config/matching.toml")).unwrap();
    assert!(shipped.contains("min_score = 27.08\n") && shipped.contains("min_score = 19.25"));
    // every rule needs 500 points: nothing is exact, nothing is proposed
    let strict = shipped
        .replace("min_score = 27.08\n", "")
        .replace("[[tiers.exact.rules]]\nname = ", "[[tiers.exact.rules]]\nmin_score = 500.0\nname = ")
        .replacen("min_score = 19.25", "min_score = 500.0", 1);
    let strict_path = dir.path().join("strict.toml");
    std::fs::write(&strict_path, strict).unwrap();
    let default = decide(dir.path(), "default", &records, &[]);
    assert!(default[0].starts_with("r1,exact,"), "{default:?}");
    let with = decide(dir.path(), "strict", &records, &["--rules", strict_path.to_str().unwrap()]);
    assert!(with.iter().all(|r| r.split(',').nth(1) == Some("none")), "{with:?}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, shipped.replacen("field = \"city\"", "field = \"town\"", 1)).unwrap();
    let people = root().join("config/people.example.csv");
    let (ok, _, err) = lake(&[
        "match",
        "--people",
        people.to_str().unwrap(),
        "--records",
        records.to_str().unwrap(),
        "--rules",
        bad.to_str().unwrap(),
        "--out",
        dir.path().join("x.csv").to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("bad.toml") && err.contains("town"), "{err}");
}

#[test]
fn records_mapped_through_a_source_contract_are_the_transform_s_canonical_rows() {
    let dir = tempfile::tempdir().unwrap();
    let input = root().join("samples/st_marys/st_marys_600.csv");
    let out = dir.path().join("d.csv");
    let people = root().join("config/people.example.csv");
    let (ok, stdout, stderr) = lake(&[
        "match",
        "--people",
        people.to_str().unwrap(),
        "--records",
        input.to_str().unwrap(),
        "--contract",
        "st_marys",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    let text = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    // "<file>: N rows through contract <c> (G good, B bad, M malformed and left out)"
    let counts = stderr.split("through contract").nth(1).unwrap_or_else(|| panic!("{stderr}"));
    let n = |what: &str| -> usize {
        let at = counts.find(&format!(" {what}")).unwrap();
        counts[..at].rsplit(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    assert_eq!(rows.len(), n("good") + n("bad"), "every good and bad row decided once: {stderr}");
    assert!(n("bad") > 0, "the sample has rows missing an identity field: {stderr}");
    // ids are the contract's encounter ids (VisitID); a bad row without one is numbered
    let with_id = rows.iter().filter(|r| r.starts_with('V')).count();
    assert!(with_id >= n("good") && with_id < rows.len() + 1, "{with_id} of {}", rows.len());
    assert!(stdout.contains(&format!("{} records in", rows.len())), "{stdout}");
    assert!(rows.iter().any(|r| r.contains(",exact,")), "sample rows of the example persons match exactly");

    let (ok, _, err) = lake(&[
        "match",
        "--people",
        people.to_str().unwrap(),
        "--records",
        input.to_str().unwrap(),
        "--contract",
        "no_such_source",
    ]);
    assert!(!ok && err.contains("no_such_source"), "{err}");
}

#[test]
fn rules_check_names_the_wrong_field_and_publish_refuses_an_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = lake(&["rules", "check", "config/matching.toml"]);
    assert!(ok && out.starts_with("ok: config/matching.toml: 4 blocking pass(es)"), "{out}{err}");
    let shipped = std::fs::read_to_string(root().join("config/matching.toml")).unwrap();
    for (from, to, names) in [
        ("field = \"city\"", "field = \"town\"", "town"),
        ("{ kind = \"nickname\", weight = 4.58 }", "{ kind = \"nickname\", weight = 9.0 }", "(first_name)"),
        (
            "last_name = [\"exact\", \"normalised\"], dob = [\"exact\"], address",
            "last_name = [\"exakt\"], dob = [\"exact\"], address",
            "last_name has no level \"exakt\"",
        ),
    ] {
        assert!(shipped.contains(from), "{from}");
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, shipped.replacen(from, to, 1)).unwrap();
        let (ok, _, err) = lake(&["rules", "check", bad.to_str().unwrap()]);
        assert!(!ok && err.contains(names), "{names} in {err}");

        let lk = dir.path().join("lake");
        let (ok, _, err) = lake(&["rules", "publish", bad.to_str().unwrap(), "--lake", lk.to_str().unwrap()]);
        assert!(!ok && err.contains("nothing published"), "{err}");
        assert!(
            !lk.join("meta/rules/matching/current.json").exists(),
            "an invalid file never becomes current"
        );
    }
    let lk = dir.path().join("lake");
    let publish = |f: &str| lake(&["rules", "publish", f, "--lake", lk.to_str().unwrap()]);
    let (ok, out, err) = publish("config/matching.toml");
    assert!(ok && out.contains("published matching rules v1"), "{out}{err}");
    let (ok, out, _) = publish("config/matching.toml");
    assert!(ok && out.contains("unchanged: matching rules v1"), "{out}");
}

/// The PostgreSQL server of `scripts/test.sh` (skipped without one, except under CI=true).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_index_given_with_database_url_decides_like_the_person_file() {
    let (db_url, _) = e2e::empty_database().await;
    let (ok, out, err) = lake(&["db", "migrate", "--database-url", &db_url]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = lake(&["people", "load", "config/people.example.csv", "--database-url", &db_url]);
    assert!(ok, "{out}{err}");

    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("r.csv");
    std::fs::write(&records, RECORDS).unwrap();
    let want = decide(dir.path(), "memory", &records, &[]);
    let out = dir.path().join("pg.csv");
    let (ok, stdout, stderr) = lake(&[
        "match",
        "--database-url",
        &db_url,
        "--records",
        records.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    let got: Vec<String> = std::fs::read_to_string(&out).unwrap().lines().skip(1).map(String::from).collect();
    assert_eq!(got, want);
    assert!(got[0].starts_with("r1,exact,") && got[2].starts_with("r3,none,"), "{got:?}");

    // the table of blocking key kinds is the same from PostgreSQL as from the person file
    let truth = dir.path().join("t.csv");
    std::fs::write(&truth, "record_id,person_id\nr1,9000001\nr2,9000002\nr3,\n").unwrap();
    let table = |source: &[&str]| {
        let rest = ["--records", records.to_str().unwrap(), "--out", out.to_str().unwrap()];
        let (ok, stdout, stderr) = lake(
            &[&["match"][..], source, &rest, &["--truth", truth.to_str().unwrap(), "--by-key"]].concat(),
        );
        assert!(ok, "{stdout}{stderr}");
        let from = stdout.find("blocking keys").unwrap_or_else(|| panic!("no table in\n{stdout}"));
        stdout[from..].to_string()
    };
    let (memory, pg) =
        (table(&["--people", "config/people.example.csv"]), table(&["--database-url", &db_url]));
    assert_eq!(memory, pg);
    assert!(memory.lines().count() > 10 && memory.contains("last_name_dob"), "{memory}");
}
