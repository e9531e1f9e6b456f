//! `lake match` through the binary: records against the example person file in memory, the
//! decisions CSV, and precision / recall per tier against a truth file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
