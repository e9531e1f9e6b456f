//! Records written by the pipeline before its vocabulary was typed still read back: a ledger
//! item, a DLQ envelope, a work message and a pii message, stored as that code wrote them
//! (`tests/fixtures/`), parse into the typed records and serialise to the same JSON.
#![allow(clippy::unwrap_used)]

use layer::envelope::FailureEnvelope;
use layer::ledger::{RunRecord, Status};
use layer::pipeline::{PiiMessage, WorkMessage};
use layer::{ErrorKind, Function, Stage};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name),
    )
    .unwrap()
}

/// Parses `text` as `T`, writes it again and checks nothing changed.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(text: &str) -> T {
    let v: T = serde_json::from_str(text).unwrap();
    let again: serde_json::Value = serde_json::to_value(&v).unwrap();
    assert_eq!(again, serde_json::from_str::<serde_json::Value>(text).unwrap());
    v
}

#[test]
fn ledger_items_read_back_typed() {
    let done: RunRecord = round_trip(&fixture("ledger_done.json"));
    assert_eq!((done.status, done.stage, done.error_kind), (Status::Done, Stage::MatchingPending, None));
    assert_eq!(done.key.expose(), "st_marys/2026/11/JOHN_SMITH_1984-02-29.csv");
    assert!(!format!("{done:?}").contains("SMITH"), "a Debug of the record shows the key's hash only");
    let failed: RunRecord = round_trip(&fixture("ledger_failed.json"));
    assert_eq!(
        (failed.status, failed.stage, failed.error_kind),
        (Status::Failed, Stage::FailedInWorkflow, Some(ErrorKind::HeaderMismatch))
    );
}

#[test]
fn export_parts_read_back_typed_and_older_items_gain_nothing() {
    let part: RunRecord = round_trip(&fixture("ledger_joined.json"));
    assert_eq!((part.status, part.stage), (Status::Done, Stage::Joined));
    assert_eq!(part.joined_into.as_deref(), Some("a6b0e3d4c2f19857"));
    let held = fixture("ledger_joined.json")
        .replace("\"DONE\"", "\"RECEIVED\"")
        .replace("\"joined\"", "\"awaiting-manifest\"")
        .replace(",\n  \"joined_into\": \"a6b0e3d4c2f19857\"", "");
    let held: RunRecord = round_trip(&held);
    assert_eq!(
        (held.status, held.stage, held.joined_into),
        (Status::Received, Stage::AwaitingManifest, None)
    );
    // a record written before exports existed has no joined_into, and writes none
    let done: RunRecord = round_trip(&fixture("ledger_done.json"));
    assert!(!serde_json::to_string(&done).unwrap().contains("joined_into"));
    for (kind, text) in
        [(ErrorKind::ExportIncomplete, "ExportIncomplete"), (ErrorKind::BadManifest, "BadManifest")]
    {
        assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{text}\""));
    }
}

#[test]
fn dlq_envelopes_read_back_typed() {
    let env: FailureEnvelope = round_trip(&fixture("dlq_envelope.json"));
    assert_eq!((env.function, env.error_kind), (Function::SemiStructuredWorkflow, ErrorKind::HeaderMismatch));
    assert!(!fixture("dlq_envelope.json").contains("SMITH"));
}

#[test]
fn queue_messages_read_back_typed() {
    let w: WorkMessage = round_trip(&fixture("work_message.json"));
    assert_eq!(w.key.expose(), "st_marys/2026/11/JOHN_SMITH_1984-02-29.csv");
    assert!(!format!("{w:?}").contains("SMITH"));
    let p: PiiMessage = round_trip(&fixture("pii_message.json"));
    assert_eq!(p.bad_rows, 37);
}
