//! PHI never leaks: the whole embedded pipeline runs on files carrying marker values (names,
//! SSNs, dates of birth, and a patient name in an object key), and every log line (at TRACE),
//! metric, DLQ envelope, alert, pii-queue message and CLI output is scanned for them.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

const MARKERS: [&str; 6] =
    ["QZXFIRSTMARK", "QZXLASTMARK", "219-09-9999", "219099999", "07/04/1923", "1923-07-04"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);
impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn write(dir: &Path, rel: &str, body: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

fn hostile_incoming(dir: &Path) {
    let header = std::fs::read_to_string(root().join("config/sources/st_marys.toml")).unwrap();
    assert!(header.contains("VisitID"));
    let h = "VisitID,PatientID,FirstName,LastName,MiddleInit,DOB,Gender,SSN,Address1,City,State,Zip,Phone,VisitDate,Facility,DxCodes,TotalCharges,RoomNo";
    let good = "V1,P1,QZXFIRSTMARK,QZXLASTMARK,,07/04/1923,F,219-09-9999,1 Elm St,Town,MA,02139,,01/02/2024,X,E119,$10,1";
    let bad = "V2,P2,QZXFIRSTMARK,QZXLASTMARK,,07/04/1923,F,,1 Elm St,Town,MA,02139,,01/02/2024,X,E119,$10,1";
    let wide = "V3,P3,QZXFIRSTMARK,QZXLASTMARK,,07/04/1923,F,219-09-9999,1 Elm St,Town,MA,02139,,01/02/2024,X,E119,$10,1,EXTRA";
    write(
        dir,
        "st_marys/in/QZXLASTMARK_QZXFIRSTMARK_1923-07-04.csv",
        format!("{h}\n{good}\n{bad}\n{wide}\n").as_bytes(),
    );
    // no header: the first data row is taken for one
    let cg = "7|cg1|QZXLASTMARK|QZXFIRSTMARK|19230704|2|219099999|1 main st|boston|ma|2139|617.555.1234|2024-01-02|E119|12.5|N";
    write(dir, "county_general/noheader.psv", format!("{cg}\n").as_bytes());
    let mut gz = b"\x1f\x8b\x08".to_vec();
    gz.extend_from_slice(good.as_bytes());
    write(dir, "st_marys/in/compressed.csv", &gz);
    write(dir, "QZXLASTMARK/misplaced.csv", good.as_bytes());
    let j = r#"{"encounterId":"VC-1","mrn":"m1","givenName":"QZXFIRSTMARK","familyName":"QZXLASTMARK","birthDate":"1923-07-04","ssn":"219-09-9999","encounterDate":"2024-01-02"}"#;
    write(
        dir,
        "valley_clinic/QZXLASTMARK.jsonl",
        format!("{j}\n{{\"givenName\": \"QZXFIRSTMARK\"\n").as_bytes(),
    );
}

fn scan(what: &str, text: &str, hits: &mut Vec<String>) {
    for m in MARKERS {
        if text.contains(m) {
            let at = text.find(m).unwrap();
            let lo = text[..at].char_indices().rev().nth(80).map_or(0, |x| x.0);
            hits.push(format!("{what}: {m} in …{}…", &text[lo..(at + m.len()).min(text.len())]));
        }
    }
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_marker_value_reaches_logs_metrics_envelopes_alerts_or_cli_output() {
    let logs = Buf::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();
    layer::metrics::capture();

    let tmp = tempfile::tempdir().unwrap();
    let incoming = tmp.path().join("incoming");
    hostile_incoming(&incoming);
    let (deps, topo) = lake::embedded::local_deps(&tmp.path().join("lake"), Some(&incoming));
    lake::embedded::publish_dir(&deps, &root().join("config/sources")).await.unwrap();
    lake::embedded::notify_all(&deps, &topo).await.unwrap();
    lake::embedded::drain(&deps, &topo).await.unwrap();
    let runs = lake::embedded::status(&deps).await.unwrap();
    assert_eq!(runs.len(), 5);
    let failed = runs.iter().filter(|r| r.status == layer::ledger::Status::Failed).count();
    assert_eq!(failed, 3, "headerless, compressed and misplaced files fail: {runs:?}");

    let mut hits = vec![];
    scan("logs", &String::from_utf8_lossy(&logs.0.lock().unwrap()), &mut hits);
    assert!(!logs.0.lock().unwrap().is_empty(), "logs were captured");
    let metrics = layer::metrics::captured();
    assert!(!metrics.is_empty(), "metrics were emitted");
    scan("metrics", &metrics.join("\n"), &mut hits);
    // DLQ envelopes, pii pointers, alerts: everything under queues/ and topics/
    let mut scanned = 0;
    for dir in ["queues", "topics"] {
        for f in all_files(&tmp.path().join("lake").join(dir)) {
            scanned += 1;
            scan(&f.display().to_string(), &std::fs::read_to_string(&f).unwrap(), &mut hits);
        }
    }
    assert!(scanned >= 5, "envelopes, pii messages and alerts were scanned: {scanned}");

    // the CLI a person uses, on a fresh lake: run, status, audit, redrive
    let lake_dir = tmp.path().join("cli-lake");
    let bin = env!("CARGO_BIN_EXE_lake");
    let l = lake_dir.to_str().unwrap();
    for args in [
        vec!["run", incoming.to_str().unwrap(), "--lake", l],
        vec!["status", "--lake", l],
        vec!["audit", incoming.to_str().unwrap(), "--lake", l],
        vec!["redrive", "--lake", l],
    ] {
        let o = Command::new(bin).args(&args).current_dir(root()).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        scan(&format!("lake {}", args[0]), &text, &mut hits);
    }
    eprintln!("phi: scanned logs ({} bytes), {} metric lines, {scanned} queue/topic files, 4 CLI commands; hits: {}", logs.0.lock().unwrap().len(), metrics.len(), hits.len());
    assert!(hits.is_empty(), "PHI leaked:\n{}", hits.join("\n"));
}
