//! pii-matching against a real PostgreSQL (`LAKE_TEST_DATABASE_URL`, started by
//! `scripts/test.sh`): each test gets a fresh database with a random name. The handler runs with
//! the local pipeline adapters (folders for buckets, queues and ledger) and real event JSON.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow_array::{ArrayRef, Date32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use async_trait::async_trait;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use chrono::NaiveDate;
use layer::envelope::FailureEnvelope;
use layer::ledger::{RunRecord, Status};
use layer::local::LocalObjectStore;
use layer::pipeline::{Deps, PiiMessage};
use pii_matching::handler::{self, MatchDeps, MatchSummary};
use pii_matching::index::IndexError;
use pii_matching::pg::{copy_people_csv, Db, DbSecret, DbSettings, PgIndex, PgReviews, SecretSource};
use pii_matching::{Matcher, MemoryIndex, PersonIndex, Record, Rules};
use sqlx::postgres::PgConnectOptions;

const PEOPLE: &str = "person_id,first_name,last_name,middle_initial,dob,sex,ssn,address,city,state,zip,phone
101,ANNA,SMITH,J,1980-03-05,F,123-45-6789,1 MAIN ST,CAMBRIDGE,MA,02138,617-555-0101
102,ROBERT,JONES,,1975-07-20,M,234-56-7890,2 ELM AVE,SOMERVILLE,MA,02143,617-555-0102
103,MARIA,GARCIA,L,1990-11-11,F,345-67-8901,3 OAK RD,LOWELL,MA,01850,978-555-0103
104,MARY,GARCIA,,1990-11-11,F,456-78-9012,4 PINE CT,LOWELL,MA,01851,978-555-0104
105,JAMES,BROWN,T,1960-01-02,M,567-89-0123,5 HIGH ST,ACTON,MA,01720,978-555-0105
";

use e2e::{database_url, empty_database as empty_db};

/// A fresh database (random name) with the migrations applied.
async fn fresh_db() -> (Arc<Db>, String) {
    let (url, name) = empty_db().await;
    let db = Arc::new(Db::from_url(&url, 2).unwrap());
    db.migrate().await.unwrap();
    (db, name)
}

async fn load_people(db: &Db, csv: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(csv.as_bytes()).unwrap();
    copy_people_csv(db, f.path()).await.unwrap();
    f
}

fn s(v: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

fn days(d: &str) -> i32 {
    let d = NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
}

/// Four bad rows as the workflow writes them (canonical columns + `missing_fields`):
/// 0 exact, 1 surname change (proposed), 2 not in the index (unmatched), 3 exact but its MRN is
/// also missing (cannot be completed).
fn bad_parquet() -> Vec<u8> {
    fn n4(v: &str) -> Vec<Option<&str>> {
        vec![Some(v); 4]
    }
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("source_system", s(&n4("st_marys"))),
        ("source_file", s(&n4("f.csv"))),
        ("encounter_id", s(&[Some("E1"), Some("E2"), Some("E3"), Some("E4")])),
        ("patient_id", s(&[Some("M1"), Some("M2"), Some("M3"), None])),
        ("first_name", s(&[Some("ANNA"), Some("MARIA"), Some("PETER"), Some("ROBERT")])),
        ("last_name", s(&[Some("SMITH"), Some("LOPEZ"), Some("NOBODY"), Some("JONES")])),
        ("middle_initial", s(&[None, None, None, None])),
        (
            "dob",
            Arc::new(Date32Array::from(vec![
                Some(days("1980-03-05")),
                Some(days("1990-11-11")),
                Some(days("1999-09-09")),
                Some(days("1975-07-20")),
            ])),
        ),
        ("sex", s(&[Some("F"), Some("F"), Some("M"), Some("M")])),
        ("ssn", s(&[None, None, None, None])),
        ("address", s(&[Some("1 MAIN ST"), Some("3 OAK RD"), Some("99 NOWHERE LN"), Some("2 ELM AVE")])),
        ("city", s(&[Some("CAMBRIDGE"), Some("LOWELL"), Some("BOSTON"), Some("SOMERVILLE")])),
        ("zip", s(&[Some("02138"), Some("01850"), Some("02101"), Some("02143")])),
        ("phone", s(&[Some("617-555-0101"), Some("857-555-9999"), None, Some("617-555-0102")])),
        ("missing_fields", s(&[Some("ssn"), Some("ssn"), Some("ssn"), Some("patient_id;ssn")])),
    ];
    let schema = Schema::new(
        cols.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), true)).collect::<Vec<_>>(),
    );
    assert_eq!(schema.field_with_name("dob").unwrap().data_type(), &DataType::Date32);
    let b = RecordBatch::try_new(Arc::new(schema), cols.into_iter().map(|c| c.1).collect()).unwrap();
    pii_matching::rows::to_parquet(&b).unwrap()
}

const BAD_KEY: &str =
    "bad/dataset=encounter/source=st_marys/ingest_date=2026-11-26/00aa11bb22cc33dd.bad.parquet";
const FILE_ID: &str = "00aa11bb22cc33dd";

struct Lake {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    deps: Deps,
}

async fn lake() -> Lake {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let deps = layer::local::local_deps(&root, LocalObjectStore::new(root.join("buckets")));
    deps.store.put("quarantine", BAD_KEY, bad_parquet(), None).await.unwrap();
    let mut run = RunRecord::received("ingest", &"st_marys/f.csv".into(), None);
    run.file_id = FILE_ID.into();
    run.status = Status::Done;
    run.stage = layer::Stage::MatchingPending;
    run.counts.good = 96;
    run.counts.bad = 4;
    deps.meta.put_run(&run).await.unwrap();
    Lake { _dir: dir, root, deps }
}

fn message() -> String {
    serde_json::to_string(&PiiMessage {
        file_id: FILE_ID.into(),
        source: "st_marys".into(),
        dataset: "encounter".into(),
        bucket: "quarantine".into(),
        bad_key: BAD_KEY.into(),
        bad_rows: 4,
    })
    .unwrap()
}

/// The SQS event Lambda would deliver (real event JSON shape).
fn event(body: &str, receive_count: u32) -> layer::pipeline::SqsInvocation {
    let json = serde_json::json!({"Records": [{
        "messageId": "m-1", "receiptHandle": "r-1", "body": body,
        "attributes": {"ApproximateReceiveCount": receive_count.to_string(), "SentTimestamp": "1764150000000",
                        "SenderId": "AIDA", "ApproximateFirstReceiveTimestamp": "1764150000000"},
        "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-gov-west-1:000000000000:pii", "awsRegion": "us-gov-west-1"
    }]});
    let ev: SqsEvent = serde_json::from_value(json).unwrap();
    lambda_runtime::LambdaEvent::new(ev, lambda_runtime::Context::default())
}

fn match_deps(l: &Lake, db: &Arc<Db>) -> MatchDeps {
    MatchDeps {
        pipeline: l.deps.clone(),
        index: Arc::new(PgIndex::new(db.clone(), 1024)),
        reviews: Arc::new(PgReviews { db: db.clone() }),
        matcher: Arc::new(pii_matching::rules_store::ActiveRules::builtin()),
    }
}

async fn process(d: &MatchDeps) -> MatchSummary {
    let m: SqsMessage = event(&message(), 1).payload.records.remove(0);
    handler::process(d, m).await.unwrap()
}

fn read_raw(l: &Lake, key: &str) -> RecordBatch {
    let bytes = std::fs::read(l.root.join("buckets/raw").join(key)).unwrap();
    pii_matching::rows::read_parquet(bytes).unwrap()
}

#[tokio::test]
async fn exact_proposed_and_unmatched_records_end_where_they_should() {
    let (db, _) = fresh_db().await;
    let _f = load_people(&db, PEOPLE).await;
    let l = lake().await;
    let d = match_deps(&l, &db);
    let resp = handler::handle(&d, event(&message(), 1)).await;
    assert!(resp.batch_item_failures.is_empty());

    // exact: completed row in the dataset, SSN from the person index, no missing_fields column
    let key = "dataset=encounter/source=st_marys/ingest_date=2026-11-26/00aa11bb22cc33dd.matched.parquet";
    let b = read_raw(&l, key);
    assert_eq!(b.num_rows(), 1);
    assert!(b.column_by_name("missing_fields").is_none());
    let col = |n: &str| pii_matching::rows::str_col(&b, n);
    assert_eq!(col("encounter_id"), vec![Some("E1".to_string())]);
    assert_eq!(col("ssn"), vec![Some("123-45-6789".to_string())]);

    // proposed: one review row with the candidate and its evidence
    let reviews = PgReviews { db: db.clone() };
    let pending = reviews.list(pii_matching::reviews::ReviewStatus::Pending, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].record_ref, format!("{FILE_ID}:1"));
    assert_eq!(pending[0].candidates[0]["person_id"], 103);
    assert_eq!(pending[0].candidates[0]["levels"]["last_name"], "else");
    assert_eq!(pending[0].candidates[0]["levels"]["first_name"], "exact");

    // unmatched and incomplete stay in quarantine, counted, with reasons
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(l.root.join(
            "buckets/quarantine/matching/dataset=encounter/source=st_marys/ingest_date=2026-11-26/00aa11bb22cc33dd.match.json",
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(report["summary"]["completed"], 1);
    assert_eq!(report["summary"]["proposed"], 1);
    assert_eq!(report["summary"]["unmatched"], 1);
    assert_eq!(report["summary"]["incomplete"], 1);
    let reasons: HashMap<u64, String> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["row"].as_u64().unwrap(), r["reason"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(reasons[&2], "unmatched");
    assert_eq!(reasons[&3], "incomplete");
    assert_eq!(reasons[&1], "in_review");

    // ledger: the completed row moved from bad to good
    let run = l.deps.meta.get_run(FILE_ID).await.unwrap().unwrap();
    assert_eq!(run.status, Status::Done);
    assert_eq!(run.stage, layer::Stage::Matched);
    assert_eq!((run.counts.good, run.counts.bad), (97, 3));
    // every record audited with the rule that fired
    assert_eq!(reviews.counts(FILE_ID).await.unwrap(), (1, 4));
}

#[tokio::test]
async fn a_retry_of_the_same_batch_changes_nothing() {
    let (db, _) = fresh_db().await;
    let _f = load_people(&db, PEOPLE).await;
    let l = lake().await;
    let d = match_deps(&l, &db);
    let first = process(&d).await;
    let key = first.matched_key.clone().unwrap();
    let bytes1 = std::fs::read(l.root.join("buckets/raw").join(&key)).unwrap();
    let run1 = l.deps.meta.get_run(FILE_ID).await.unwrap().unwrap();
    let second = process(&d).await;
    assert_eq!(first.reviews_inserted, 1);
    assert_eq!(second.reviews_inserted, 0);
    assert_eq!(std::fs::read(l.root.join("buckets/raw").join(&key)).unwrap(), bytes1);
    let run2 = l.deps.meta.get_run(FILE_ID).await.unwrap().unwrap();
    assert_eq!(run2.counts, run1.counts);
    assert_eq!(run2.outputs, run1.outputs);
    assert_eq!(PgReviews { db }.counts(FILE_ID).await.unwrap(), (1, 4));
    let raw_files: Vec<_> = walk(&l.root.join("buckets/raw"));
    assert_eq!(raw_files.len(), 1, "one output per input file: {raw_files:?}");
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else if !e.file_name().to_string_lossy().starts_with('.') {
            out.push(e.path());
        }
    }
    out
}

/// The server must ask `lake_pw` for a password (scripts/test.sh adds the pg_hba line).
async fn password_role(url: &str) -> PgConnectOptions {
    let admin = Db::from_url(url, 1).unwrap();
    let _ = sqlx::query("CREATE ROLE lake_pw LOGIN PASSWORD 'right-password'").execute(&admin.pool()).await;
    let base: PgConnectOptions = url.parse().unwrap();
    let wrong = base.clone().username("lake_pw").password("surely-wrong");
    if sqlx::postgres::PgPool::connect_with(wrong).await.is_ok() {
        panic!(
            "the test PostgreSQL accepts lake_pw without its password (trust auth): start it with \
             scripts/test.sh, which requires scram-sha-256 for lake_pw"
        );
    }
    base
}

struct Counting<S> {
    inner: S,
    calls: AtomicUsize,
}

#[async_trait]
impl<S: SecretSource> SecretSource for Counting<S> {
    async fn fetch(&self) -> Result<DbSecret, IndexError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.fetch().await
    }
}

fn settings(base: &PgConnectOptions, dbname: &str) -> DbSettings {
    DbSettings {
        host: base.get_host().to_string(),
        port: base.get_port(),
        dbname: dbname.into(),
        tls: pii_matching::pg::DbTls::Disable,
        max_connections: 1,
    }
}

#[tokio::test]
async fn a_wrong_password_fails_with_db_auth_failed_and_a_dlq_envelope() {
    let url = database_url();
    let (db, dbname) = fresh_db().await;
    let base = password_role(&url).await;
    let sdk = e2e::moto_sdk().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let secret = serde_json::json!({"engine": "postgres", "username": "lake_pw", "password": "surely-wrong",
        "host": base.get_host(), "port": base.get_port(), "dbname": dbname});
    let arn = client
        .create_secret()
        .name(format!("lake/db/{dbname}"))
        .secret_string(secret.to_string())
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let source = Arc::new(Counting {
        inner: pii_matching::pg::SecretsManager { client, secret_id: arn },
        calls: AtomicUsize::new(0),
    });
    let wrong = Arc::new(Db::from_secret(source.clone(), settings(&base, &dbname)).await.unwrap());
    assert_eq!(source.calls.load(Ordering::SeqCst), 1, "fetched once at cold start");

    let l = lake().await;
    let mut d = match_deps(&l, &wrong);
    d.reviews = Arc::new(PgReviews { db });
    let resp = handler::handle(&d, event(&message(), 1)).await;
    assert!(resp.batch_item_failures.is_empty(), "a permanent failure is consumed after the envelope");
    assert_eq!(source.calls.load(Ordering::SeqCst), 2, "refetched once after the rejection");

    let dlq = l.deps.queue.receive("dlq", 10).await.unwrap();
    assert_eq!(dlq.len(), 1);
    let env: FailureEnvelope = serde_json::from_str(&dlq[0].body).unwrap();
    assert_eq!(env.error_kind, layer::ErrorKind::DbAuthFailed);
    assert_eq!(env.function, layer::Function::PiiMatching);
    assert_eq!(env.file_id, FILE_ID);
    let original: serde_json::Value = serde_json::from_str(&env.original_message).unwrap();
    assert_eq!(original["file_id"], FILE_ID, "the envelope carries the message to redrive");
    assert!(env.error_message.contains("authentication failed"), "{}", env.error_message);
    assert!(!env.error_message.contains("surely-wrong"));
    let run = l.deps.meta.get_run(FILE_ID).await.unwrap().unwrap();
    assert_eq!(run.status, Status::Failed);
    assert_eq!(run.error_kind, Some(layer::ErrorKind::DbAuthFailed));
}

/// Wrong first, right after the refetch: a rotated secret heals without a failure.
struct Rotating {
    calls: AtomicUsize,
    base: PgConnectOptions,
    dbname: String,
}

#[async_trait]
impl SecretSource for Rotating {
    async fn fetch(&self) -> Result<DbSecret, IndexError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let pw = if n == 0 { "stale-password" } else { "right-password" };
        DbSecret::parse(
            &serde_json::json!({"username": "lake_pw", "password": pw, "host": self.base.get_host(),
                "port": self.base.get_port(), "dbname": self.dbname})
            .to_string(),
        )
    }
}

#[tokio::test]
async fn a_rotated_secret_is_refetched_once_and_works() {
    let url = database_url();
    let (db, dbname) = fresh_db().await;
    let _f = load_people(&db, PEOPLE).await;
    let base = password_role(&url).await;
    sqlx::query("GRANT SELECT ON person TO lake_pw").execute(&db.pool()).await.unwrap();
    let src = Arc::new(Rotating { calls: AtomicUsize::new(0), base: base.clone(), dbname: dbname.clone() });
    let rotated = Arc::new(Db::from_secret(src.clone(), settings(&base, &dbname)).await.unwrap());
    let idx = PgIndex::new(rotated, 100);
    let key = pii_matching::BlockingKey::Address { address: "1 MAIN ST".into() };
    let found = idx.candidates(&[key], None).await.unwrap();
    assert_eq!(found.persons.iter().map(|p| p.person_id).collect::<Vec<_>>(), vec![101]);
    assert_eq!(found.hits, vec![(0, 0)]);
    assert_eq!(src.calls.load(Ordering::SeqCst), 2);
}

/// A small synthetic county: deterministic names, dates, addresses; records with the usual errors.
fn synthetic(n_people: usize, n_records: usize) -> (String, Vec<Record>) {
    const FIRST: [&str; 12] = [
        "ROBERT",
        "MARY",
        "JAMES",
        "PATRICIA",
        "JOHN",
        "JENNIFER",
        "MICHAEL",
        "LINDA",
        "WILLIAM",
        "ELIZABETH",
        "DAVID",
        "SUSAN",
    ];
    const LAST: [&str; 10] =
        ["SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "LOPEZ", "WILSON"];
    let mut x: u64 = 42;
    let mut next = move |m: u64| {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    let mut csv = String::from(
        "person_id,first_name,last_name,middle_initial,dob,sex,ssn,address,city,state,zip,phone\n",
    );
    let mut people = Vec::new();
    for i in 0..n_people {
        let f = FIRST[next(12) as usize];
        let l = LAST[next(10) as usize];
        let dob = NaiveDate::from_ymd_opt(1950 + next(20) as i32, 1 + next(12) as u32, 1 + next(28) as u32)
            .unwrap();
        let addr = format!("{} {} ST", 1 + next(300), ["MAIN", "ELM", "OAK"][next(3) as usize]);
        let phone = format!("617-555-{:04}", next(10000));
        csv.push_str(&format!("{},{f},{l},,{dob},F,,{addr},LOWELL,MA,01850,{phone}\n", 1000 + i));
        people.push((f, l, dob, addr, phone));
    }
    let mut recs = Vec::new();
    for r in 0..n_records {
        let (f, l, dob, addr, phone) = people[next(n_people as u64) as usize].clone();
        let (mut f, mut l, mut dob) = (f.to_string(), l.to_string(), dob);
        match next(6) {
            1 => l = format!("{l}X"),
            2 => f = if f == "ROBERT" { "BOB".into() } else { f[..f.len() - 1].to_string() },
            3 => dob = dob.succ_opt().unwrap(),
            4 => l = LAST[next(10) as usize].to_string(),
            _ => {}
        }
        recs.push(Record {
            reference: format!("R{r}"),
            first_name: Some(f),
            last_name: Some(l),
            dob: Some(dob),
            sex: Some("F".into()),
            address: Some(addr),
            city: Some("LOWELL".into()),
            zip: Some("01850".into()),
            phone: Some(phone),
        });
    }
    (csv, recs)
}

#[tokio::test]
async fn in_memory_and_postgres_adapters_give_the_same_decisions() {
    let (db, _) = fresh_db().await;
    let (csv, recs) = synthetic(3000, 600);
    let f = load_people(&db, &csv).await;
    let mem = MemoryIndex::load(f.path()).unwrap();
    let m = Arc::new(Matcher::new(Rules::builtin()));
    let recs: std::sync::Arc<[Record]> = recs.into();
    let (a, _) = m.match_batch(&PgIndex::new(db, 128), recs.clone()).await.unwrap();
    let (b, _) = m.match_batch(&mem, recs.clone()).await.unwrap();
    assert_eq!(a.len(), 600);
    let tiers = |ds: &[pii_matching::Decision]| {
        ds.iter().fold(HashMap::new(), |mut h: HashMap<&str, usize>, d| {
            *h.entry(d.tier.as_str()).or_default() += 1;
            h
        })
    };
    assert!(tiers(&a).len() >= 2, "the data exercises several tiers: {:?}", tiers(&a));
    assert_eq!(a, b);
}

/// The index names which asked key each person answers; the matcher attaches persons to records
/// by it alone. Both adapters must name the same (key, person) pairs, for every key kind,
/// across query chunks (a person answering keys of two chunks comes back once).
#[tokio::test]
async fn both_adapters_name_the_same_persons_for_every_key() {
    use pii_matching::{BlockingKey, BlockingKind};
    use std::collections::BTreeSet;
    let (db, _) = fresh_db().await;
    let (csv, mut recs) = synthetic(3000, 300);
    for r in recs.iter_mut().step_by(3) {
        r.dob = None; // the keys asked only without a birth date
    }
    for r in recs.iter_mut().skip(1).step_by(5) {
        r.first_name = None; // and only without a first name
    }
    for r in recs.iter_mut().skip(2).step_by(7) {
        r.last_name = None; // or a last name
    }
    let f = load_people(&db, &csv).await;
    let mem = MemoryIndex::load(f.path()).unwrap();
    let mut keys: Vec<BlockingKey> = Vec::new();
    for r in &recs {
        for k in BlockingKind::ALL {
            if let Some(key) = BlockingKey::of_record(k, r) {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
    }
    let kinds: BTreeSet<String> = keys.iter().map(|k| format!("{:?}", k.kind())).collect();
    assert_eq!(kinds.len(), BlockingKind::ALL.len(), "every kind asked: {kinds:?}");
    let pairs = |f: &pii_matching::index::Found| -> BTreeSet<(u32, i64)> {
        let ids: BTreeSet<i64> = f.persons.iter().map(|p| p.person_id).collect();
        assert_eq!(ids.len(), f.persons.len(), "each person once");
        f.hits.iter().map(|&(k, p)| (k, f.persons[p as usize].person_id)).collect()
    };
    let pg = PgIndex::new(db, 7);
    let want = pairs(&mem.candidates(&keys, None).await.unwrap());
    let got = pairs(&pg.candidates(&keys, None).await.unwrap());
    assert!(want.len() > keys.len(), "most keys find someone: {} pairs, {} keys", want.len(), keys.len());
    assert_eq!(got, want);
    // with a limit, the keys more persons hold than it find nobody, in both adapters alike
    let mut holders: HashMap<u32, usize> = HashMap::new();
    for e in &want {
        *holders.entry(e.0).or_default() += 1;
    }
    for limit in [5, 20] {
        let narrow: BTreeSet<(u32, i64)> = want.iter().copied().filter(|e| holders[&e.0] <= limit).collect();
        assert!(narrow.len() < want.len() && !narrow.is_empty(), "limit {limit} drops some keys, not all");
        assert_eq!(
            pairs(&mem.candidates(&keys, Some(limit)).await.unwrap()),
            narrow,
            "memory, limit {limit}"
        );
        assert_eq!(
            pairs(&pg.candidates(&keys, Some(limit)).await.unwrap()),
            narrow,
            "postgres, limit {limit}"
        );
    }
}

/// A person CSV of 120 SMITHs in ZIP 01851 and 40 JONESes in 01852, for the wide-key test.
fn namesakes() -> String {
    let mut csv = String::from(
        "person_id,first_name,last_name,middle_initial,dob,sex,ssn,address,city,state,zip,phone\n",
    );
    let first = ["ANNA", "BRUNO", "CARLA", "DIEGO", "ELENA", "FELIX", "GRETA", "HUGO"];
    for i in 0..160u32 {
        let (last, zip) = if i < 120 { ("SMITH", "01851") } else { ("JONES", "01852") };
        csv.push_str(&format!(
            "{},{},{last},,19{:02}-{:02}-{:02},F,,{} ELM ST,LOWELL,MA,{zip},978-555-{:04}\n",
            1000 + i,
            first[(i % 8) as usize],
            50 + i % 40,
            1 + i % 12,
            1 + i % 28,
            10 + i,
            1000 + i
        ));
    }
    csv
}

/// A key more persons hold than the limit finds nobody: PostgreSQL leaves out what `wide_key`
/// lists (refreshed by every load) before reading a row, and drops a key the list does not name
/// yet by the rows it read; the in-memory index counts. Both give the same finds throughout.
#[tokio::test]
async fn wide_keys_find_nobody_in_both_adapters_whether_wide_key_lists_them_or_not() {
    use pii_matching::BlockingKey;
    let (db, name) = fresh_db().await;
    let csv = namesakes();
    let f = load_people(&db, &csv).await;
    let smiths = BlockingKey::LastNameZip { last_name: "SMITH".into(), zip: "01851".into() };
    let joneses = BlockingKey::LastNameZip { last_name: "JONES".into(), zip: "01852".into() };
    let anna = BlockingKey::Phone { phone: "978-555-1000".into() };
    let keys = [smiths.clone(), joneses.clone(), anna];
    let listed = |db: Arc<Db>| async move {
        sqlx::query_as::<_, (String, i64, i32)>(
            "SELECT key_column, hash, persons FROM wide_key ORDER BY 1, 2",
        )
        .fetch_all(&db.pool())
        .await
        .unwrap()
    };
    // the load listed the 120 SMITHs' last name + ZIP but not the 40 JONESes' (50 or fewer)
    let wide = listed(db.clone()).await;
    assert!(wide.contains(&("k_last_zip".into(), pii_matching::pg::key_hash(&smiths), 120)), "{wide:?}");
    assert!(!wide.iter().any(|w| w.1 == pii_matching::pg::key_hash(&joneses)), "{wide:?}");
    let hits = |f: &pii_matching::index::Found| -> Vec<(u32, usize)> {
        (0..3u32).map(|k| (k, f.hits.iter().filter(|h| h.0 == k).count())).collect()
    };
    let pg = PgIndex::new(db.clone(), 2);
    let mem = MemoryIndex::load(f.path()).unwrap();
    for (limit, want) in
        [(None, [120, 40, 1]), (Some(200), [120, 40, 1]), (Some(100), [0, 40, 1]), (Some(30), [0, 0, 1])]
    {
        let want: Vec<(u32, usize)> = (0..3u32).zip(want).collect();
        let (m, p) =
            (mem.candidates(&keys, limit).await.unwrap(), pg.candidates(&keys, limit).await.unwrap());
        assert_eq!(hits(&m), want, "memory, limit {limit:?}");
        assert_eq!(hits(&p), want, "postgres, limit {limit:?}");
        assert_eq!(p.persons.len(), m.persons.len(), "no person without a hit, limit {limit:?}");
    }
    // the matcher role reads the list; without the grant (a deploy gone wrong) it finds the
    // same, reading the wide keys and dropping them by their rows
    let want: Vec<(u32, usize)> = (0..3u32).zip([0, 40, 1]).collect();
    let matcher = as_role("lake_matcher", &name);
    assert_eq!(hits(&PgIndex::new(matcher.clone(), 2).candidates(&keys, Some(100)).await.unwrap()), want);
    sqlx::query("REVOKE SELECT ON wide_key FROM lake_matcher").execute(&db.pool()).await.unwrap();
    assert_eq!(hits(&PgIndex::new(matcher, 2).candidates(&keys, Some(100)).await.unwrap()), want, "no grant");
    // the list is what PostgreSQL consults: a key it names as wide finds nobody there, even one
    // a single person holds (the in-memory index still finds her). An index reads which
    // columns have wide keys at most every 5 minutes: a new one (a new container) sees k_phone.
    sqlx::query("INSERT INTO wide_key VALUES ('k_phone', $1, 500)")
        .bind(pii_matching::pg::key_hash(&keys[2]))
        .execute(&db.pool())
        .await
        .unwrap();
    assert_eq!(hits(&pg.candidates(&keys, Some(100)).await.unwrap())[2], (2, 1), "k_phone had no wide key");
    let pg = PgIndex::new(db.clone(), 2);
    assert_eq!(hits(&pg.candidates(&keys, Some(100)).await.unwrap())[2], (2, 0));
    assert_eq!(hits(&mem.candidates(&keys, Some(100)).await.unwrap())[2], (2, 1));
    // 80 more JONESes written behind the list's back: not listed, still dropped by the rows read
    sqlx::query(
        "INSERT INTO person (person_id, first_name, last_name, dob, address, city, state, zip) \
         SELECT 5000 + g, 'IVO', 'JONES', DATE '1980-01-01' + g, g || ' OAK ST', 'LOWELL', 'MA', '01852' \
         FROM generate_series(1, 80) g",
    )
    .execute(&db.pool())
    .await
    .unwrap();
    assert!(!listed(db.clone()).await.iter().any(|w| w.1 == pii_matching::pg::key_hash(&joneses)));
    let p = pg.candidates(&keys, Some(100)).await.unwrap();
    assert_eq!(hits(&p)[1], (1, 0), "120 JONESes now: dropped without the list");
    assert!(p.persons.is_empty(), "and none of them comes back without a hit: {}", p.persons.len());
    // a full export without 30 of the SMITHs (`lake people load`'s upsert): the 80 JONESes
    // written by hand and the 30 SMITHs become inactive, and the load recounts in its own
    // transaction: SMITH + ZIP 90 (listed, not above 100), JONES 40 (unlisted), the stale
    // k_phone entry gone; both adapters find the 90 again
    let kept: Vec<pii_matching::Person> =
        mem.persons().iter().filter(|p| p.person_id >= 1030).cloned().collect();
    let counts =
        pii_matching::pg::upsert_people(&db, &kept, pii_matching::pg::Missing::Inactivate).await.unwrap();
    assert_eq!(counts.inactivated, 110);
    let wide = listed(db.clone()).await;
    assert!(wide.contains(&("k_last_zip".into(), pii_matching::pg::key_hash(&smiths), 90)), "{wide:?}");
    assert!(!wide.iter().any(|w| w.1 == pii_matching::pg::key_hash(&joneses)), "{wide:?}");
    assert!(!wide.iter().any(|w| w.0 == "k_phone"), "{wide:?}");
    let mem = MemoryIndex::new(kept);
    let want: Vec<(u32, usize)> = (0..3u32).zip([90, 40, 0]).collect();
    let pg = PgIndex::new(db.clone(), 2);
    assert_eq!(hits(&pg.candidates(&keys, Some(100)).await.unwrap()), want, "postgres after the load");
    assert_eq!(hits(&mem.candidates(&keys, Some(100)).await.unwrap()), want, "memory after the load");
}

#[tokio::test]
async fn an_accepted_review_completes_the_row_like_an_exact_match() {
    let (db, _) = fresh_db().await;
    let _f = load_people(&db, PEOPLE).await;
    let l = lake().await;
    let d = match_deps(&l, &db);
    process(&d).await;
    let reviews = PgReviews { db: db.clone() };
    let r = reviews.list(pii_matching::reviews::ReviewStatus::Pending, 10).await.unwrap().remove(0);
    let p = reviews.person(103).await.unwrap().unwrap();
    let key = pii_matching::review::complete_accepted(&l.deps, &r, &p).await.unwrap();
    assert!(reviews.decide(r.review_id, Some(103), "analyst1").await.unwrap());
    assert!(!reviews.decide(r.review_id, None, "analyst2").await.unwrap(), "decided once");
    let b = read_raw(&l, &key);
    assert_eq!(pii_matching::rows::str_col(&b, "encounter_id"), vec![Some("E2".to_string())]);
    assert_eq!(pii_matching::rows::str_col(&b, "ssn"), vec![Some("345-67-8901".to_string())]);
    assert_eq!(pii_matching::rows::str_col(&b, "last_name"), vec![Some("LOPEZ".to_string())]);
    // a repeat (e.g. the CLI re-run) does not move the counts twice
    pii_matching::review::complete_accepted(&l.deps, &r, &p).await.unwrap();
    let run = l.deps.meta.get_run(FILE_ID).await.unwrap().unwrap();
    assert_eq!((run.counts.good, run.counts.bad), (98, 2));
    assert!(reviews.list(pii_matching::reviews::ReviewStatus::Pending, 10).await.unwrap().is_empty());
    assert_eq!(
        reviews.list(pii_matching::reviews::ReviewStatus::Accepted, 10).await.unwrap()[0].reviewer.as_deref(),
        Some("analyst1")
    );
}

#[tokio::test]
async fn key_hashes_equal_the_generated_columns() {
    use pii_matching::model::BlockingKey;
    use pii_matching::pg::key_hash;
    let (db, _) = fresh_db().await;
    // every tail length (0..=11 bytes after 12-byte blocks), multibyte letters, dates before
    // 2000 (negative day counts) and after
    let letters = ["A", "Z", "É", "Ø", "-", " ", "'", "ß", "中"];
    let text = |i: usize, salt: usize| -> String {
        (0..(i % 41)).map(|j| letters[(i * 7 + j * salt) % letters.len()]).collect()
    };
    let mut want = Vec::new();
    for i in 0..300usize {
        let (first, last, address) = (text(i, 3), text(i + 5, 5), text(i + 11, 2));
        let dob =
            NaiveDate::from_ymd_opt(1900 + (i as i32 * 7) % 130, 1 + (i as u32 % 12), 1 + (i as u32 % 28))
                .unwrap();
        let (zip, phone) = (format!("{:05}", i * 331 % 100_000), format!("617-555-{:04}", i));
        sqlx::query(
            "INSERT INTO person (person_id, first_name, last_name, dob, address, zip, phone) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(i as i64)
        .bind(&first)
        .bind(&last)
        .bind(dob)
        .bind(&address)
        .bind(&zip)
        .bind(&phone)
        .execute(&db.pool())
        .await
        .unwrap();
        let c = |v: &str| compact_str::CompactString::from(v);
        want.push([
            key_hash(&BlockingKey::LastNameDob { last_name: c(&last), dob }),
            key_hash(&BlockingKey::FirstNameDob { first_name: c(&first), dob }),
            key_hash(&BlockingKey::LastFirstName { last_name: c(&last), first_name: c(&first) }),
            key_hash(&BlockingKey::Address { address: c(&address) }),
            key_hash(&BlockingKey::AddressZip { address: c(&address), zip: c(&zip) }),
            key_hash(&BlockingKey::Phone { phone: c(&phone) }),
        ]);
    }
    let got: Vec<(i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT k_last_dob, k_first_dob, k_last_first, k_address, k_address_zip, k_phone FROM person ORDER BY person_id",
    )
    .fetch_all(&db.pool())
    .await
    .unwrap();
    let got: Vec<[i64; 6]> = got.into_iter().map(|(a, b, c, d, e, f)| [a, b, c, d, e, f]).collect();
    assert_eq!(got.len(), 300);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "person {i}");
    }
}

/// The keys of migrations 0007 and 0008 (Soundex pairs, house number, city and birth date,
/// phone's last seven digits, names or first name with ZIP) on the values a load stores
/// (normalised): SQL `lake_soundex` and the column texts equal the Rust keys exactly, on names
/// with non-ASCII letters, apostrophes, hyphens, H/W between equal codes, leading vowels, no
/// letter at all; US and foreign ZIPs; addresses with and without a house number; cities with
/// accents or none; phones present or not.
#[tokio::test]
async fn fuzzy_key_hashes_equal_the_generated_columns() {
    use pii_matching::model::{norm, BlockingKey, BlockingKind, Person};
    use pii_matching::pg::{column, key_hash};
    let (db, _) = fresh_db().await;
    let names = [
        "ASHCRAFT",
        "TYMCZAK",
        "PFISTER",
        "HONG",
        "WHITE",
        "ANNA",
        "O'BRIEN",
        "SOSA-VINCENT",
        "JOSÉ",
        "ÉMILE",
        "ØRSTED",
        "STRAßE",
        "中村",
        "-",
        "",
        "LEE",
        "LI",
        "SCHMIDT",
        "BURROUGHS",
        "GUTIÉRREZ",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "Y",
        "MC DONALD",
    ];
    let addresses =
        ["12 ELM ST", "12B ELM ST", "221B BAKER ST", "ELM ST", "7", "7 É RUE", "1 中 RD", "10  X", "0 A"];
    let zips = ["02138", "02138-1234", "021381234", "SW1A 1AA", "2138", "H2Y 1G5", "06050", "0213"];
    let cities = ["SPRINGFIELD", "SAINT-LÉONARD", "NEW YORK", "中村"];
    let phones = ["617-555-0101", "857-000-9999", "781-123-4567"];
    let kinds = &BlockingKind::ALL[6..];
    let mut want = Vec::new();
    for i in 0..400usize {
        let dob =
            NaiveDate::from_ymd_opt(1899 + (i as i32 * 13) % 130, 1 + (i as u32 % 12), 1 + (i as u32 % 28));
        let p = Person {
            person_id: i as i64,
            first_name: Some(norm(names[i % names.len()]).into()),
            last_name: Some(norm(names[(i * 7 + 3) % names.len()]).into()),
            dob: dob.filter(|_| i % 17 != 0),
            address: Some(norm(addresses[i % addresses.len()]).into()),
            city: (i % 5 != 0).then(|| norm(cities[(i / 5) % cities.len()]).into()),
            zip: Some(zips[(i / 3) % zips.len()].into()),
            phone: (i % 4 != 0).then(|| phones[(i / 4) % phones.len()].into()),
            ..Person::default()
        };
        sqlx::query(
            "INSERT INTO person (person_id, first_name, last_name, dob, address, city, zip, phone) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(p.person_id)
        .bind(p.first_name.as_deref())
        .bind(p.last_name.as_deref())
        .bind(p.dob)
        .bind(p.address.as_deref())
        .bind(p.city.as_deref())
        .bind(p.zip.as_deref())
        .bind(p.phone.as_deref())
        .execute(&db.pool())
        .await
        .unwrap();
        want.push(
            kinds
                .iter()
                .map(|k| BlockingKey::of_person(*k, &p).map(|key| key_hash(&key)))
                .collect::<Vec<_>>(),
        );
    }
    let cols: Vec<&str> = kinds.iter().map(|k| column(*k)).collect();
    let sql = format!("SELECT {} FROM person ORDER BY person_id", cols.join(", "));
    let rows = sqlx::query(&sql).fetch_all(&db.pool()).await.unwrap();
    assert_eq!(rows.len(), 400);
    let mut present = 0;
    for (i, (r, w)) in rows.iter().zip(&want).enumerate() {
        use sqlx::Row;
        let got: Vec<Option<i64>> = (0..kinds.len()).map(|c| r.get(c)).collect();
        assert_eq!(
            &got,
            w,
            "person {i}: {:?} / {:?}",
            names[i % names.len()],
            addresses[i % addresses.len()]
        );
        present += got.iter().flatten().count();
    }
    assert!(present > 1000, "most keys present ({present})");
    // the SQL Soundex is the Rust one, value by value
    for n in names {
        let sql: Option<String> =
            sqlx::query_scalar("SELECT lake_soundex($1)").bind(n).fetch_one(&db.pool()).await.unwrap();
        let rust = pii_matching::compare::soundex(n);
        assert_eq!(sql.unwrap_or_default(), rust, "{n}");
    }
}

/// The test database `name` as one of the roles the migrations create (scripts/test.sh lets
/// them in without a password, as IAM authentication does in Aurora).
fn as_role(role: &str, name: &str) -> Arc<Db> {
    let o: PgConnectOptions = database_url().parse().unwrap();
    Arc::new(Db::from_url(&format!("postgres://{role}@{}:{}/{name}", o.get_host(), o.get_port()), 2).unwrap())
}

/// Runs `sql` as the role's pool and returns the SQLSTATE it failed with ("" when it worked).
async fn sqlstate(db: &Db, sql: &str) -> String {
    match sqlx::query(sql).execute(&db.pool()).await {
        Ok(_) => String::new(),
        Err(e) => e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.to_string())
            .unwrap_or_else(|| e.to_string()),
    }
}

async fn person_fingerprint(db: &Db) -> (i64, i64) {
    sqlx::query_as("SELECT count(*), count(ssn) FROM person").fetch_one(&db.pool()).await.unwrap()
}

#[tokio::test]
async fn the_matcher_role_matches_but_cannot_change_person_or_delete_a_proposal() {
    let (db, name) = fresh_db().await;
    let _f = load_people(&db, PEOPLE).await;
    let l = lake().await;
    let matcher = as_role("lake_matcher", &name);
    let s = process(&match_deps(&l, &matcher)).await;
    assert_eq!((s.completed, s.proposed, s.unmatched, s.incomplete, s.reviews_inserted), (1, 1, 1, 1, 1));
    assert_eq!(PgReviews { db: db.clone() }.counts(FILE_ID).await.unwrap(), (1, 4));

    let before = person_fingerprint(&db).await;
    for sql in [
        "UPDATE person SET ssn = NULL",
        "DELETE FROM person",
        "INSERT INTO person (person_id, last_name) VALUES (999, 'X')",
        "TRUNCATE person",
        "DELETE FROM match_review",
        "UPDATE match_review SET status = 'accepted'",
        "DELETE FROM match_decision",
        "UPDATE match_decision SET person_id = 1",
        "SELECT * FROM match_review",
        "DROP TABLE match_review",
    ] {
        assert_eq!(sqlstate(&matcher, sql).await, "42501", "the matcher role may not: {sql}");
    }
    assert_eq!(person_fingerprint(&db).await, before, "person unchanged");
    assert_eq!(
        PgReviews { db: db.clone() }.counts(FILE_ID).await.unwrap(),
        (1, 4),
        "the proposal is still there"
    );
}

#[tokio::test]
async fn the_reviewer_role_decides_but_cannot_rewrite_proposals_person_or_the_audit() {
    let (db, name) = fresh_db().await;
    let _f = load_people(&db, PEOPLE).await;
    let l = lake().await;
    process(&match_deps(&l, &db)).await;
    let reviewer = PgReviews { db: as_role("lake_reviewer", &name) };
    let pending = reviewer.list(pii_matching::reviews::ReviewStatus::Pending, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    let p = reviewer.person(103).await.unwrap().unwrap();
    assert_eq!(p.person_id, 103);
    assert!(reviewer.decide(pending[0].review_id, Some(103), "analyst1").await.unwrap());
    assert_eq!(
        PgReviews { db: db.clone() }.counts(FILE_ID).await.unwrap(),
        (1, 5),
        "the decision is audited"
    );

    let before = person_fingerprint(&db).await;
    for sql in [
        "UPDATE person SET ssn = NULL",
        "DELETE FROM person",
        "DELETE FROM match_review",
        "UPDATE match_review SET candidates = '[]'::jsonb",
        "INSERT INTO match_review (record_ref, file_id, row_index, dataset, source, bad_bucket, bad_key, \
         candidates, best_score, rule) VALUES ('x', 'f', 0, 'd', 's', 'b', 'k', '[]', 0, 'r')",
        "DELETE FROM match_decision",
        "UPDATE match_decision SET person_id = 1",
    ] {
        assert_eq!(sqlstate(&reviewer.db, sql).await, "42501", "the reviewer role may not: {sql}");
    }
    assert_eq!(person_fingerprint(&db).await, before);
    let r = PgReviews { db }.get(pending[0].review_id).await.unwrap().unwrap();
    assert_eq!((r.status.as_str(), r.accepted_person_id), ("accepted", Some(103)));
}

#[tokio::test]
async fn a_role_without_the_grant_fails_permanently_with_a_dlq_envelope_and_no_retry() {
    let (db, name) = fresh_db().await;
    let _f = load_people(&db, PEOPLE).await;
    let l = lake().await;
    // the reviewer may read persons but not insert proposals: the matcher's work is refused
    let d = match_deps(&l, &as_role("lake_reviewer", &name));
    let resp = handler::handle(&d, event(&message(), 1)).await;
    assert!(resp.batch_item_failures.is_empty(), "permanent: consumed, not retried");
    let dlq = l.deps.queue.receive("dlq", 10).await.unwrap();
    assert_eq!(dlq.len(), 1);
    let env: FailureEnvelope = serde_json::from_str(&dlq[0].body).unwrap();
    assert_eq!(env.error_kind, layer::ErrorKind::DbPermissionDenied);
    assert_eq!(serde_json::to_value(env.error_kind).unwrap(), "DbPermissionDenied");
    assert!(env.error_message.contains("42501"), "{}", env.error_message);
    assert_eq!(
        l.deps.meta.get_run(FILE_ID).await.unwrap().unwrap().error_kind,
        Some(layer::ErrorKind::DbPermissionDenied)
    );
}

fn versions(a: &[pii_matching::pg::Applied]) -> Vec<i64> {
    let mut v: Vec<i64> = a.iter().map(|m| m.version).collect();
    v.sort();
    v
}

#[tokio::test]
async fn two_concurrent_migrations_apply_each_once_and_a_rerun_changes_nothing() {
    use pii_matching::pg::MIGRATOR;
    let (url, _) = empty_db().await;
    let all: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    assert_eq!(all, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let (a, b) = (Db::from_url(&url, 1).unwrap(), Db::from_url(&url, 1).unwrap());
    let (ra, rb) = tokio::join!(a.apply(&MIGRATOR), b.apply(&MIGRATOR));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let mut both = ra.clone();
    both.extend(rb.clone());
    assert_eq!(versions(&both), all, "each migration applied by exactly one of them: {ra:?} {rb:?}");
    assert_eq!(versions(&a.applied().await.unwrap()), all);
    assert!(a.apply(&MIGRATOR).await.unwrap().is_empty(), "a re-run is a no-op");
    let roles: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_roles WHERE rolname IN ('lake_matcher', 'lake_reviewer')",
    )
    .fetch_one(&a.pool())
    .await
    .unwrap();
    assert_eq!(roles, 2);
}

#[tokio::test]
async fn a_failing_migration_leaves_nothing_of_itself_and_the_next_run_completes() {
    let (url, _) = empty_db().await;
    let db = Db::from_url(&url, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    // after every shipped migration
    let broken = dir.path().join("9000_broken.sql");
    std::fs::write(
        &broken,
        "CREATE TABLE half_done (x int);\nALTER TABLE person ADD COLUMN half_col int;\nSELECT 1 / 0;\n",
    )
    .unwrap();
    let m = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    let e = db.apply(&m).await.unwrap_err();
    assert_eq!(e.kind(), layer::ErrorKind::DbQueryFailed);
    assert!(e.to_string().contains("migration 9000 failed, nothing of it applied"), "{e}");
    assert!(e.to_string().contains("22012"), "the SQLSTATE (division by zero): {e}");
    let shipped: Vec<i64> = pii_matching::pg::MIGRATOR.iter().map(|m| m.version).collect();
    assert_eq!(versions(&db.applied().await.unwrap()), shipped, "the ones before it stay");
    let left: (Option<String>, i64) = sqlx::query_as(
        "SELECT to_regclass('half_done')::text, (SELECT count(*) FROM information_schema.columns \
         WHERE table_name = 'person' AND column_name = 'half_col')",
    )
    .fetch_one(&db.pool())
    .await
    .unwrap();
    assert_eq!(left, (None, 0), "nothing of the failed migration");

    std::fs::write(&broken, "CREATE TABLE half_done (x int);\n").unwrap();
    let m = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    assert_eq!(versions(&db.apply(&m).await.unwrap()), [9000]);
    assert!(db.apply(&m).await.unwrap().is_empty());
}

/// A stand-in for CloudFormation's pre-signed response URL: answers 200 to `n` PUTs and hands
/// back their bodies.
async fn response_sink(n: usize) -> (String, tokio::task::JoinHandle<Vec<serde_json::Value>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cfn-response?X-Amz-Signature=abc", listener.local_addr().unwrap());
    let h = tokio::spawn(async move {
        let mut bodies = Vec::new();
        for _ in 0..n {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, len) = loop {
                let k = s.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..k]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                    assert!(head.starts_with("put /cfn-response?x-amz-signature=abc"), "{head}");
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse::<usize>().unwrap())
                        .unwrap();
                    break (i + 4, len);
                }
            };
            while buf.len() < head_end + len {
                let k = s.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..k]);
            }
            bodies.push(serde_json::from_slice(&buf[head_end..head_end + len]).unwrap());
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await.unwrap();
        }
        bodies
    });
    (url, h)
}

fn cfn_request(kind: &str, response_url: &str) -> pii_matching::deploy::CustomResourceRequest {
    serde_json::from_value(serde_json::json!({
        "RequestType": kind, "ServiceToken": "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:db-migrate",
        "ResponseURL": response_url,
        "StackId": "arn:aws-us-gov:cloudformation:us-gov-west-1:123456789012:stack/county-lake-dev/1f2e",
        "RequestId": format!("req-{kind}"), "LogicalResourceId": "MatchingSchema",
        "ResourceType": "Custom::MatchingSchema", "ResourceProperties": {"ServiceToken": "x", "Version": "7"}
    }))
    .unwrap()
}

#[tokio::test]
async fn the_schema_custom_resource_migrates_on_deploy_and_answers_cloudformation() {
    use pii_matching::deploy::{respond_to, send};
    let (url, _) = empty_db().await;
    let (sink, bodies) = response_sink(4).await;
    let open = || async { Ok(Arc::new(Db::from_url(&url, 1).unwrap())) };
    for kind in ["Create", "Update"] {
        let req = cfn_request(kind, &sink);
        send(&req.response_url, &respond_to(&req, open).await).await.unwrap();
    }
    let req = cfn_request("Delete", &sink);
    let never = || async { panic!("Delete must not touch the database") };
    send(&req.response_url, &respond_to(&req, never).await).await.unwrap();
    // a database that refuses: the stack operation fails visibly, with the reason
    let missing = format!("{}/no_such_database_here", url.rsplit_once('/').unwrap().0);
    let req = cfn_request("Update", &sink);
    let broken = || async { Ok(Arc::new(Db::from_url(&missing, 1).unwrap())) };
    send(&req.response_url, &respond_to(&req, broken).await).await.unwrap();

    let b = bodies.await.unwrap();
    let field = |i: usize, k: &str| b[i][k].as_str().unwrap().to_string();
    assert_eq!(
        (field(0, "Status"), b[0]["Data"]["Applied"].as_str()),
        ("SUCCESS".into(), Some("1,2,3,4,5,6,7,8,9"))
    );
    assert_eq!(
        (field(1, "Status"), b[1]["Data"]["Applied"].as_str()),
        ("SUCCESS".into(), Some("")),
        "up to date"
    );
    assert_eq!(field(2, "Status"), "SUCCESS");
    assert_eq!(field(3, "Status"), "FAILED");
    assert!(
        field(3, "Reason").starts_with("DbQueryFailed: ") && field(3, "Reason").contains("3D000"),
        "{}",
        b[3]
    );
    for (i, kind) in ["Create", "Update", "Delete", "Update"].iter().enumerate() {
        assert_eq!(field(i, "RequestId"), format!("req-{kind}"));
        assert_eq!(field(i, "PhysicalResourceId"), "county-lake-matching-schema");
        assert_eq!(field(i, "LogicalResourceId"), "MatchingSchema");
        assert!(field(i, "StackId").ends_with("stack/county-lake-dev/1f2e"));
    }
    assert_eq!(
        versions(&Db::from_url(&url, 1).unwrap().applied().await.unwrap()),
        [1, 2, 3, 4, 5, 6, 7, 8, 9]
    );
}

/// `PEOPLE` as a county export might carry it: lower case, stray spaces, other column order,
/// SSNs without dashes, ZIPs read as numbers, phones in any punctuation, US dates.
const MESSY_PEOPLE: &str =
    "phone,person_id,last_name,first_name,middle_initial,dob,sex,ssn,address,city,state,zip
(617) 555-0101,101, smith,anna ,j,03/05/1980,female,123456789,1  main st,cambridge,ma,2138
617.555.0102,102,jones,robert,,1975-07-20,m,234 56 7890,2 elm  ave,somerville,ma,2143
9785550103,103,garcia,maria,l,11/11/1990,F,345-67-8901,3 oak rd,lowell,MA,01850
1-978-555-0104,104,garcia,mary,,19901111,f,456789012,4 pine ct,lowell,ma,1851
978 555 0105,105,brown,james,t,1960-01-02,1,567890123,5 high st,acton,ma,01720-1234
";

#[tokio::test]
async fn a_messy_lower_case_export_matches_exactly_like_the_clean_one_through_both_adapters() {
    let records: Arc<[Record]> =
        pii_matching::rows::records(&pii_matching::rows::read_parquet(bad_parquet()).unwrap(), FILE_ID)
            .into();
    let m = Arc::new(Matcher::new(Rules::builtin()));
    let mut seen = Vec::new();
    for people in [PEOPLE, MESSY_PEOPLE] {
        let (db, _) = fresh_db().await;
        let f = load_people(&db, people).await;
        let l = lake().await;
        let s = process(&match_deps(&l, &db)).await;
        let completed = read_raw(&l, s.matched_key.as_deref().unwrap());
        let col = |n: &str| pii_matching::rows::str_col(&completed, n);
        let proposed: Vec<i64> = PgReviews { db: db.clone() }
            .list(pii_matching::reviews::ReviewStatus::Pending, 10)
            .await
            .unwrap()
            .iter()
            .flat_map(|r| r.candidates.as_array().unwrap().iter().map(|c| c["person_id"].as_i64().unwrap()))
            .collect();
        let (pg, _) = m.match_batch(&PgIndex::new(db, 1024), records.clone()).await.unwrap();
        let (mem, _) = m.match_batch(&MemoryIndex::load(f.path()).unwrap(), records.clone()).await.unwrap();
        assert!(pg == mem, "the two adapters decide alike");
        let tiers: Vec<&str> = pg.iter().map(|d| d.tier.as_str()).collect();
        seen.push((
            (s.completed, s.proposed, s.unmatched, s.incomplete),
            col("ssn"),
            col("zip"),
            proposed,
            tiers,
        ));
    }
    assert_eq!(seen[0].0, (1, 1, 1, 1));
    assert_eq!(seen[0].1, [Some("123-45-6789".to_string())]);
    assert_eq!(seen[0], seen[1], "the messy export decides and completes exactly like the clean one");
}

/// An IAM-token-like source: a new password on every fetch (`tok-1`, `tok-2`, ...), old after
/// `max_age`, as IAM database authentication tokens are.
struct Expiring {
    calls: AtomicUsize,
    base: PgConnectOptions,
    dbname: String,
}

#[async_trait]
impl SecretSource for Expiring {
    async fn fetch(&self) -> Result<DbSecret, IndexError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        DbSecret::parse(
            &serde_json::json!({"username": "lake_tok", "password": format!("tok-{n}"),
                "host": self.base.get_host(), "port": self.base.get_port(), "dbname": self.dbname})
            .to_string(),
        )
    }

    fn max_age(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_millis(300))
    }
}

async fn tok_backends(admin: &Db) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = 'lake_tok'")
        .fetch_one(&admin.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn aging_credentials_are_renewed_for_new_connections_while_open_ones_stay() {
    let url = database_url();
    let (admin, dbname) = fresh_db().await;
    let base = password_role(&url).await;
    let _ = sqlx::query("CREATE ROLE lake_tok LOGIN").execute(&admin.pool()).await;
    sqlx::query("ALTER ROLE lake_tok PASSWORD 'tok-1'").execute(&admin.pool()).await.unwrap();
    let src = Arc::new(Expiring { calls: AtomicUsize::new(0), base: base.clone(), dbname: dbname.clone() });
    let db = Db::from_secret(src.clone(), DbSettings { max_connections: 2, ..settings(&base, &dbname) })
        .await
        .unwrap();
    let first = db
        .run(|p| async move { sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()").fetch_one(&p).await });
    let first = first.await.expect("the first connection logs in with tok-1");
    assert_eq!(tok_backends(&admin).await, 1);

    // the "token" ages out; the server now accepts only the next one
    sqlx::query("ALTER ROLE lake_tok PASSWORD 'tok-2'").execute(&admin.pool()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let both = db
        .run(|p| async move {
            let (a, b) = tokio::join!(
                sqlx::query_scalar::<_, i32>("SELECT 2 FROM pg_sleep(0.3)").fetch_one(&p),
                sqlx::query_scalar::<_, i32>("SELECT 3 FROM pg_sleep(0.3)").fetch_one(&p),
            );
            Ok((a?, b?))
        })
        .await
        .unwrap();
    assert_eq!(both, (2, 3), "a second connection opened with the renewed credentials");
    assert_eq!(src.calls.load(Ordering::SeqCst), 2, "renewed once, before any rejection");
    assert_eq!(tok_backends(&admin).await, 2);
    let alive: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)")
        .bind(first)
        .fetch_one(&admin.pool())
        .await
        .unwrap();
    assert!(alive, "the connection opened with tok-1 stays in the pool (no rejection, no new pool)");
}

#[tokio::test]
async fn the_rules_version_is_recorded_on_every_decision_and_proposal_in_postgres() {
    let (db, _) = fresh_db().await;
    let _f = load_people(&db, PEOPLE).await;
    let l = lake().await;
    let mut d = match_deps(&l, &db);
    d.matcher = Arc::new(pii_matching::rules_store::ActiveRules::fixed(Rules::builtin(), "v7"));
    let s = process(&d).await;
    assert_eq!(s.rules_version, "v7");
    let decisions: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT decided_by, rules_version FROM match_decision ORDER BY decision_id")
            .fetch_all(&db.pool())
            .await
            .unwrap();
    assert_eq!(decisions.len(), 4);
    assert!(decisions.iter().all(|(by, v)| by == "matcher" && v.as_deref() == Some("v7")), "{decisions:?}");
    let proposals: Vec<Option<String>> =
        sqlx::query_scalar("SELECT rules_version FROM match_review").fetch_all(&db.pool()).await.unwrap();
    assert_eq!(proposals, [Some("v7".to_string())]);
}

/// The shipped migrations without the newest: what the previous release's migrator holds.
fn older_migrator() -> sqlx::migrate::Migrator {
    let m = &pii_matching::pg::MIGRATOR;
    let newest = m.iter().map(|x| x.version).max().unwrap();
    sqlx::migrate::Migrator {
        migrations: m.iter().filter(|x| x.version < newest).cloned().collect::<Vec<_>>().into(),
        ..sqlx::migrate::Migrator::DEFAULT
    }
}

#[tokio::test]
async fn a_rollback_to_older_code_answers_success_when_the_database_is_ahead() {
    use pii_matching::deploy::respond_with;
    let (url, _) = empty_db().await;
    let open = || async { Ok(Arc::new(Db::from_url(&url, 1).unwrap())) };
    let newer = respond_with(&cfn_request("Update", "unused"), open, &pii_matching::pg::MIGRATOR).await;
    assert_eq!((newer.status.as_str(), newer.data["Applied"].as_str()), ("SUCCESS", "1,2,3,4,5,6,7,8,9"));
    // the stack rolls back: the previous function answers the Update with its own migrations
    let old = older_migrator();
    let rollback = respond_with(&cfn_request("Update", "unused"), open, &old).await;
    assert_eq!(rollback.status, "SUCCESS", "{}", rollback.reason);
    assert_eq!(rollback.data["Applied"], "");
    assert_eq!(rollback.data["DatabaseAhead"], "9", "the response says the database is ahead");
    // an older migrator on a database missing one of its own applies it, and still tolerates 9
    let db = Db::from_url(&url, 1).unwrap();
    let report = db.apply_report(&old).await.unwrap();
    assert!(report.applied.is_empty());
    assert_eq!(versions(&report.ahead), [9]);
    assert_eq!(versions(&db.applied().await.unwrap()), [1, 2, 3, 4, 5, 6, 7, 8, 9], "nothing undone");
}

#[tokio::test]
async fn a_failing_migration_answers_failed_naming_its_version_and_applies_nothing_of_it() {
    use pii_matching::deploy::respond_with;
    let (url, _) = empty_db().await;
    let dir = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    std::fs::write(dir.path().join("9001_broken.sql"), "CREATE TABLE half_done (x int);\nSELECT 1 / 0;\n")
        .unwrap();
    let m = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    let (sink, bodies) = response_sink(1).await;
    let req = cfn_request("Update", &sink);
    let open = || async { Ok(Arc::new(Db::from_url(&url, 1).unwrap())) };
    pii_matching::deploy::send(&req.response_url, &respond_with(&req, open, &m).await).await.unwrap();
    let b = bodies.await.unwrap();
    assert_eq!(b[0]["Status"], "FAILED", "{}", b[0]);
    let reason = b[0]["Reason"].as_str().unwrap();
    assert!(reason.starts_with("DbQueryFailed: "), "{reason}");
    assert!(
        reason.contains("migration 9001 failed, nothing of it applied") && reason.contains("22012"),
        "{reason}"
    );
    let db = Db::from_url(&url, 1).unwrap();
    assert_eq!(versions(&db.applied().await.unwrap()), [1, 2, 3, 4, 5, 6, 7, 8, 9], "the shipped ones stay");
    let left: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('half_done')::text").fetch_one(&db.pool()).await.unwrap();
    assert_eq!(left, None);
}

#[tokio::test]
async fn the_loader_role_loads_people_but_cannot_touch_proposals_or_decisions() {
    let (db, name) = fresh_db().await;
    let _f = load_people(&db, PEOPLE).await;
    let l = lake().await;
    process(&match_deps(&l, &db)).await;
    let loader = as_role("lake_loader", &name);
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), PEOPLE.replace("JAMES,BROWN", "JAMES,BROWNE")).unwrap();
    let file = pii_matching::people::read_export(f.path(), &pii_matching::people::PeopleMapping::identity())
        .unwrap();
    let c = pii_matching::pg::upsert_people(&loader, &file.persons, pii_matching::pg::Missing::Inactivate)
        .await
        .unwrap();
    assert_eq!((c.inserted, c.updated, c.unchanged), (0, 1, 4));
    for sql in [
        "SELECT count(*) FROM match_review",
        "SELECT count(*) FROM match_decision",
        "DELETE FROM match_review",
        "UPDATE match_decision SET tier = 'none'",
        "INSERT INTO match_decision (record_ref, file_id, tier, rule, decided_by) VALUES ('x', 'f', 'none', 'r', 'me')",
        "SELECT count(*) FROM review_audit",
        "DROP TABLE person",
    ] {
        assert_eq!(sqlstate(&loader, sql).await, "42501", "{sql}");
    }
}

/// Every decision tier lands in `match_decision` as the word its CHECK constraint admits, and
/// the words stored before the tier was an enum (a row inserted as plain text) parse back.
#[tokio::test]
async fn decision_tiers_are_stored_as_the_same_words_and_read_back() {
    use pii_matching::reviews::{DecisionRow, DecisionTier, Reviews};
    let (db, _) = fresh_db().await;
    let reviews = PgReviews { db: db.clone() };
    let row = |n: usize, tier: DecisionTier| DecisionRow {
        record_ref: format!("f9:{n}"),
        file_id: "f9".into(),
        tier,
        person_id: Some(101),
        score: Some(20.0),
        rule: "r".into(),
        decided_by: "matcher".into(),
        rules_version: None,
    };
    let rows: Vec<DecisionRow> = DecisionTier::ALL.iter().enumerate().map(|(n, t)| row(n, *t)).collect();
    assert_eq!(reviews.record(&rows).await.unwrap(), 5);
    assert_eq!(reviews.record(&rows).await.unwrap(), 0, "a retry records nothing (same words)");
    sqlx::query(
        "INSERT INTO match_decision (record_ref, file_id, tier, rule, decided_by) \
         VALUES ('f9:old', 'f9', 'rejected', 'review', 'ana')",
    )
    .execute(&db.pool())
    .await
    .unwrap();
    let stored: Vec<String> = sqlx::query_scalar("SELECT tier FROM match_decision ORDER BY decision_id")
        .fetch_all(&db.pool())
        .await
        .unwrap();
    assert_eq!(stored, ["exact", "proposed", "none", "accepted", "rejected", "rejected"]);
    let parsed: Vec<DecisionTier> = stored.iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(&parsed[..5], DecisionTier::ALL);
    assert_eq!(parsed[5], DecisionTier::Rejected);
}
