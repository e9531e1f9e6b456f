//! `lake review` through the binary against a real PostgreSQL (`LAKE_TEST_DATABASE_URL`, started
//! by `scripts/test.sh`; each test creates a fresh database with a random name). The proposals
//! are made the way production makes them: the samples run through the embedded pipeline, then
//! the pii queue is drained through the pii-matching handler with the PostgreSQL adapters over
//! the persons of `config/people.example.csv`. With `LAKE_TEST_AWS_ENDPOINT` (moto), an accept
//! through `--backend aws` and `--db-secret-arn` writes the completed row to S3 with SSE-KMS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow_array::{Array, RecordBatch, StringArray};
use pii_matching::handler::MatchDeps;
use pii_matching::pg::{copy_people_csv, Db, PgIndex, PgReviews};

const KMS_KEY: &str =
    "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/11111111-2222-3333-4444-555555555555";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The hand-set rules that leave eight sample rows proposed (tests/fixtures/matching.handset.toml):
/// the review mechanics under test need proposals, which the shipped trained rules mostly decide.
const HANDSET_RULES: &str = include_str!("fixtures/matching.handset.toml");

/// A fresh, empty database (random name); its URL.
async fn empty_db() -> String {
    e2e::empty_database().await.0
}

/// A fresh database (random name) with the migrations and the example persons; its URL.
async fn fresh_db() -> (Arc<Db>, String) {
    let db_url = empty_db().await;
    let db = Arc::new(Db::from_url(&db_url, 2).unwrap());
    db.migrate().await.unwrap();
    copy_people_csv(&db, &root().join("config/people.example.csv")).await.unwrap();
    (db, db_url)
}

/// The samples through the embedded pipeline (matching skipped), then the pii queue drained
/// through the pii-matching handler with the PostgreSQL index and review store.
async fn lake_with_pg_proposals(l: &Path, db: &Arc<Db>) {
    let o = Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(["run", root().join("samples").to_str().unwrap(), "--lake", l.to_str().unwrap()])
        .args(["--contracts", root().join("config/sources").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (deps, _) = lake::embedded::local_deps(l, None);
    let m = MatchDeps {
        pipeline: deps,
        index: Arc::new(PgIndex::new(db.clone(), 1024)),
        reviews: Arc::new(PgReviews { db: db.clone() }),
        matcher: Arc::new(pii_matching::rules_store::ActiveRules::fixed(
            pii_matching::Rules::from_toml_str(HANDSET_RULES, "matching.handset.toml").unwrap(),
            "handset",
        )),
    };
    lake::embedded::drain_matching(&m).await.unwrap();
}

/// `lake review ...` with only the variables given here (no inherited database settings).
fn review(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lake"));
    c.arg("review").args(args).env("RUST_LOG", "warn");
    for v in
        ["LAKE_DATABASE_URL", "LAKE_DB_SECRET_ARN", "AWS_ENDPOINT_URL", "LAKE_RAW_BUCKET", "LAKE_RUNS_TABLE"]
    {
        c.env_remove(v);
    }
    c.envs(env.iter().copied());
    let o: Output = c.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The id of the one listed review of a source.
fn id_of(list: &str, source: &str) -> String {
    let lines: Vec<&str> = list.lines().filter(|l| l.contains(source)).collect();
    assert_eq!(lines.len(), 1, "one {source} review in:\n{list}");
    lines[0].split_whitespace().next().unwrap().to_string()
}

fn batch(bytes: Vec<u8>) -> RecordBatch {
    pii_matching::rows::read_parquet(bytes).unwrap()
}

fn strings(b: &RecordBatch, col: &str) -> Vec<Option<String>> {
    let a = b.column_by_name(col).unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
    (0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i).to_string())).collect()
}

/// Values of the two reviewed records and their candidates (config/people.example.csv).
const PHI: [&str; 10] = [
    "BARBARA",
    "WILSON",
    "KOWALSKI",
    "SARAH",
    "ALLEN",
    "1989-01-08",
    "353 ADAMS RD",
    "774-656-7549",
    "900-10-0011",
    "900-10-0012",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_show_accept_reject_through_the_cli() {
    let (db, db_url) = fresh_db().await;
    let dir = tempfile::tempdir().unwrap();
    let l = dir.path().join("lake");
    lake_with_pg_proposals(&l, &db).await;
    let lk = l.to_str().unwrap();
    let env = [("LAKE_DATABASE_URL", db_url.as_str())];

    // list: the pending proposals, masked
    let (ok, list, err) = review(&["list", "--lake", lk], &env);
    assert!(ok, "{list}{err}");
    assert!(list.contains("8 pending review(s); values masked"), "{list}");
    for m in PHI {
        assert!(!list.contains(m), "{m} in the masked list:\n{list}");
    }
    assert!(list.contains("B*** W*** ****-**-**"), "{list}");
    let (ok, unmasked, _) = review(&["list", "--lake", lk, "--unmask"], &env);
    assert!(ok && unmasked.contains("BARBARA WILSON 1989-01-08"), "{unmasked}");
    let accept_id = id_of(&list, "valley_clinic");
    let reject_id = id_of(&list, "st_marys");

    // show: the evidence field by field, values masked
    let (ok, show, err) = review(&["show", &accept_id, "--database-url", &db_url, "--lake", lk], &[]);
    assert!(ok, "{show}{err}");
    for m in PHI {
        assert!(!show.contains(m), "{m} in the masked evidence:\n{show}");
    }
    assert!(show.contains("candidate 9000011 (score 33.0)"), "{show}");
    let line =
        |f: &str| show.lines().find(|l| l.starts_with(f)).unwrap().split_whitespace().collect::<Vec<_>>();
    assert_eq!(line("last_name"), ["last_name", "W***", "K***", "[else]"], "{show}");
    assert_eq!(line("dob"), ["dob", "****-**-**", "****-**-**", "[exact]"], "{show}");
    assert_eq!(line("ssn"), ["ssn", "-", "***-**-****"], "{show}");
    let (_, show, _) = review(&["show", &accept_id, "--lake", lk, "--unmask"], &env);
    assert!(show.contains("KOWALSKI [else]") && show.contains("900-10-0011"), "{show}");

    // accept: the row completed into the dataset with the accepted person's SSN, audited
    let (ok, out, err) = review(&["accept", &accept_id, "--lake", lk, "--reviewer", "analyst1"], &env);
    assert!(ok, "{out}{err}");
    let key = out.trim().rsplit(" raw/").next().unwrap();
    assert!(key.ends_with(".reviewed-7.parquet"), "{out}");
    let b = batch(std::fs::read(l.join("buckets/raw").join(key)).unwrap());
    assert_eq!(strings(&b, "encounter_id"), [Some("VC-3000000167".to_string())]);
    assert_eq!(strings(&b, "ssn"), [Some("900-10-0011".to_string())]);
    assert_eq!(strings(&b, "last_name"), [Some("WILSON".to_string())], "the record's own values stay");
    let audit: Vec<(String, Option<i64>, String)> = sqlx::query_as(
        "SELECT tier, person_id, decided_by FROM match_decision WHERE decided_by <> 'matcher' ORDER BY decision_id",
    )
    .fetch_all(&db.pool())
    .await
    .unwrap();
    assert_eq!(audit, [("accepted".to_string(), Some(9000011), "analyst1".to_string())]);

    // a second accept is refused, and changes nothing
    let bytes = std::fs::read(l.join("buckets/raw").join(key)).unwrap();
    let (ok, out, err) = review(&["accept", &accept_id, "--lake", lk, "--reviewer", "analyst2"], &env);
    assert!(!ok, "{out}");
    assert!(err.contains(&format!("review {accept_id} is already accepted (by analyst1)")), "{err}");
    assert_eq!(std::fs::read(l.join("buckets/raw").join(key)).unwrap(), bytes);

    // reject: the row stays in quarantine, audited
    let (ok, out, err) = review(&["reject", &reject_id, "--lake", lk, "--reviewer", "analyst1"], &env);
    assert!(ok && out.contains("stays in quarantine"), "{out}{err}");
    let (ok, _, err) = review(&["reject", &reject_id, "--lake", lk, "--reviewer", "analyst1"], &env);
    assert!(!ok && err.contains("already rejected"), "{err}");
    let raw_st_marys: Vec<_> = std::fs::read_dir(
        l.join("buckets/raw/dataset=encounter/source=st_marys")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap()
    .flatten()
    .map(|e| e.file_name().to_string_lossy().into_owned())
    .collect();
    assert!(raw_st_marys.iter().all(|n| !n.contains("reviewed")), "{raw_st_marys:?}");
    let reports = l.join("buckets/quarantine/matching/dataset=encounter/source=st_marys");
    let report = std::fs::read_dir(reports.read_dir().unwrap().next().unwrap().unwrap().path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    assert!(v["rows"].as_array().unwrap().iter().any(|r| r["row"] == 10 && r["reason"] == "in_review"));
    let bad = v["summary"]["matched_key"].as_str().unwrap().replace(".matched.parquet", ".bad.parquet");
    assert!(l.join("buckets/quarantine/bad").join(bad).is_file(), "the bad rows stay in quarantine");
    let (_, rejected, _) = review(&["list", "--status", "rejected", "--lake", lk], &env);
    assert!(rejected.contains("1 rejected review(s)"), "{rejected}");
    let n: (i64,) = sqlx::query_as("SELECT count(*) FROM match_decision WHERE tier = 'rejected'")
        .fetch_one(&db.pool())
        .await
        .unwrap();
    assert_eq!(n.0, 1);

    // the ledger moved the accepted row from bad to good, once
    let run = lake::embedded::status(&lake::embedded::local_deps(&l, None).0)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.source.as_deref() == Some("valley_clinic"))
        .unwrap();
    assert_eq!((run.counts.good, run.counts.bad), (571, 16));

    // no database given and no embedded store: a clear error
    let (ok, _, err) = review(&["list", "--lake", dir.path().join("none").to_str().unwrap()], &[]);
    assert!(!ok && err.contains("no review database given"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_through_the_aws_backend_writes_sse_kms_to_s3_with_the_secret_from_secrets_manager() {
    let (db, db_url) = fresh_db().await;
    let dir = tempfile::tempdir().unwrap();
    let l = dir.path().join("lake");
    lake_with_pg_proposals(&l, &db).await;

    // moto: raw and quarantine buckets, the runs table, the database secret
    let endpoint = e2e::moto_endpoint();
    let sdk = e2e::moto_sdk().await;
    let s3 = e2e::s3_client(&sdk);
    let id = e2e::unique();
    let name = |s: &str| format!("r{id}-{s}");
    for b in ["raw", "quarantine"] {
        e2e::create_bucket(&s3, &name(b), false).await;
    }
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    e2e::create_table(&ddb, &name("runs")).await;
    let opts: sqlx::postgres::PgConnectOptions = db_url.parse().unwrap();
    let secret = serde_json::json!({"engine": "postgres", "username": opts.get_username(), "password": "unused-trust",
        "host": opts.get_host(), "port": opts.get_port(), "dbname": opts.get_database().unwrap()});
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let arn = sm
        .create_secret()
        .name(format!("lake/review/{id}"))
        .secret_string(secret.to_string())
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();

    // the proposal's bad rows, where the Lambda would have left them: the quarantine bucket
    let reviews = PgReviews { db: db.clone() };
    let r = reviews
        .list(pii_matching::reviews::ReviewStatus::Pending, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.source == "valley_clinic")
        .unwrap();
    let bytes = std::fs::read(l.join("buckets/quarantine").join(&r.bad_key)).unwrap();
    s3.put_object().bucket(name("quarantine")).key(&r.bad_key).body(bytes.into()).send().await.unwrap();
    sqlx::query("UPDATE match_review SET bad_bucket = $1 WHERE review_id = $2")
        .bind(name("quarantine"))
        .bind(r.review_id)
        .execute(&db.pool())
        .await
        .unwrap();

    let (raw, runs) = (name("raw"), name("runs"));
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-gov-west-1"),
        ("LAKE_DB_SECRET_ARN", arn.as_str()),
        ("LAKE_DB_SSLMODE", "disable"),
        ("LAKE_RAW_BUCKET", raw.as_str()),
        ("LAKE_KMS_KEY_ID", KMS_KEY),
        ("LAKE_RUNS_TABLE", runs.as_str()),
    ];
    let lk = l.to_str().unwrap();
    let (ok, list, err) = review(&["list", "--backend", "aws", "--lake", lk], &env);
    assert!(ok, "{list}{err}");
    assert!(list.contains("8 pending review(s)") && list.contains("B*** W*** ****-**-**"), "{list}");
    let rid = r.review_id.to_string();
    let (ok, out, err) =
        review(&["accept", &rid, "--backend", "aws", "--lake", lk, "--reviewer", "analyst1"], &env);
    assert!(ok, "{out}{err}");
    let key = out.trim().rsplit(&format!(" {raw}/")).next().unwrap().to_string();
    assert!(
        key.starts_with("dataset=encounter/source=valley_clinic/") && key.ends_with(".reviewed-7.parquet")
    );

    let head = s3.head_object().bucket(&raw).key(&key).send().await.unwrap();
    assert_eq!(head.server_side_encryption(), Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms));
    assert_eq!(head.ssekms_key_id(), Some(KMS_KEY));
    let body = s3.get_object().bucket(&raw).key(&key).send().await.unwrap().body.collect().await.unwrap();
    let b = batch(body.into_bytes().to_vec());
    assert_eq!(strings(&b, "ssn"), [Some("900-10-0011".to_string())]);
    assert!(!l.join("buckets/raw").join(&key).exists(), "not written to the embedded lake");
    assert_eq!(reviews.get(r.review_id).await.unwrap().unwrap().status, "accepted");

    // a missing setting is named
    let (ok, _, err) = review(
        &["accept", "1", "--backend", "aws", "--lake", lk, "--reviewer", "a"],
        &env.iter().copied().filter(|(k, _)| *k != "LAKE_KMS_KEY_ID").collect::<Vec<_>>(),
    );
    assert!(!ok && err.contains("LAKE_KMS_KEY_ID"), "{err}");
}

/// `lake db ...` with only the variables given here.
fn lake_db(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_lake"))
        .arg("db")
        .args(args)
        .env_remove("LAKE_DATABASE_URL")
        .env_remove("LAKE_DB_SECRET_ARN")
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The URL of the same database as another role (scripts/test.sh lets the migration's roles in
/// without a password, as IAM authentication does in Aurora).
fn as_role(db_url: &str, role: &str) -> String {
    let o: sqlx::postgres::PgConnectOptions = db_url.parse().unwrap();
    format!("postgres://{role}@{}:{}/{}", o.get_host(), o.get_port(), o.get_database().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lake_db_migrate_prepares_a_fresh_database_once_and_the_reviewer_role_reviews() {
    let db_url = empty_db().await;
    let (ok, out, err) = lake_db(&["migrate", "--database-url", &db_url]);
    assert!(ok, "{out}{err}");
    let n = pii_matching::pg::MIGRATOR.iter().count();
    assert!(
        out.contains("applied 3 roles") && out.contains(&format!("{n} migration(s) applied; {n} in all")),
        "{out}"
    );
    assert!(out.contains("applied 4 review web"), "{out}");
    let (ok, out, err) = lake_db(&["migrate", "--database-url", &db_url]);
    assert!(ok && out.contains(&format!("up to date: {n} migration(s) applied before")), "{out}{err}");
    let (ok, _, err) = lake_db(&["migrate"]);
    assert!(!ok && err.contains("no database given"), "{err}");

    // what a deploy leaves is enough: persons loaded, proposals made, then reviewed as lake_reviewer
    let db = Arc::new(Db::from_url(&db_url, 2).unwrap());
    copy_people_csv(&db, &root().join("config/people.example.csv")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let l = dir.path().join("lake");
    let matcher = Arc::new(Db::from_url(&as_role(&db_url, "lake_matcher"), 2).unwrap());
    lake_with_pg_proposals(&l, &matcher).await;
    let reviewer = as_role(&db_url, "lake_reviewer");
    let env = [("LAKE_DATABASE_URL", reviewer.as_str())];
    let lk = l.to_str().unwrap();
    let (ok, list, err) = review(&["list", "--lake", lk], &env);
    assert!(ok && list.contains("8 pending review(s)"), "{list}{err}");
    let id = id_of(&list, "valley_clinic");
    let (ok, out, err) = review(&["accept", &id, "--lake", lk, "--reviewer", "analyst1"], &env);
    assert!(ok && out.contains("completed row written to raw/"), "{out}{err}");
    let (ok, out, err) = review(&["reject", &id, "--lake", lk, "--reviewer", "analyst2"], &env);
    assert!(!ok && err.contains("already accepted"), "{out}{err}");
}

/// `lake people load ...` against `db_url`.
fn people_load(db_url: &str, file: &Path, more: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_lake"))
        .current_dir(root())
        .args(["people", "load", file.to_str().unwrap(), "--database-url", db_url])
        .args(more)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Every stored person row, key columns included, as text.
async fn person_rows(db_url: &str) -> Vec<String> {
    let db = Db::from_url(db_url, 1).unwrap();
    sqlx::query_scalar("SELECT p::text FROM person p ORDER BY person_id").fetch_all(&db.pool()).await.unwrap()
}

async fn inactive_rows(db_url: &str) -> i64 {
    let db = Db::from_url(db_url, 1).unwrap();
    sqlx::query_scalar("SELECT count(*) FROM person_inactive").fetch_one(&db.pool()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lake_people_load_normalises_upserts_prunes_and_rejects_bad_rows_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let clean_path = root().join("config/people.example.csv");
    let clean = std::fs::read_to_string(&clean_path).unwrap();
    // the same persons as a messy export: lower case, padded, SSNs without dashes
    let messy: String = clean
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                return format!("{l}\n");
            }
            let f: Vec<String> = l
                .split(',')
                .enumerate()
                .map(|(j, v)| match j {
                    1 | 2 | 7 | 8 => format!(" {}  ", v.to_lowercase()),
                    6 => v.replace('-', ""),
                    _ => v.to_lowercase(),
                })
                .collect();
            format!("{}\n", f.join(","))
        })
        .collect();
    let messy_path = dir.path().join("people_messy.csv");
    std::fs::write(&messy_path, &messy).unwrap();
    let n = clean.lines().count() - 1;

    let (a, b) = (empty_db().await, empty_db().await);
    for u in [&a, &b] {
        assert!(lake_db(&["migrate", "--database-url", u]).0);
    }
    let (ok, out, err) = people_load(&a, &clean_path, &[]);
    assert!(
        ok && out.contains(&format!(
            "{n} inserted, 0 updated, 0 unchanged, 0 marked inactive, 0 active again, 0 pruned"
        )),
        "{out}{err}"
    );
    let (ok, out, err) = people_load(&b, &messy_path, &[]);
    assert!(ok && out.contains(&format!("{n} inserted")), "{out}{err}");
    assert_eq!(person_rows(&a).await, person_rows(&b).await, "the messy export is stored as the clean one");
    let (ok, out, err) = people_load(&b, &clean_path, &[]);
    assert!(
        ok && out.contains(&format!("0 inserted, 0 updated, {n} unchanged")),
        "a second load changes nothing: {out}{err}"
    );

    // one person changed, one gone: updated, and the gone one marked inactive (not a candidate,
    // kept); back in the next export, active again; a partial file leaves the others; --prune deletes
    let mut lines: Vec<&str> = clean.lines().collect();
    let last = lines.pop().unwrap();
    let changed = lines[1].replacen(",MA,", ",NH,", 1);
    lines[1] = &changed;
    let next = dir.path().join("people_next.csv");
    std::fs::write(&next, lines.join("\n") + "\n").unwrap();
    let (ok, out, err) = people_load(&b, &next, &[]);
    assert!(
        ok && out.contains(&format!(
            "0 inserted, 1 updated, {} unchanged, 1 marked inactive, 0 active again",
            n - 2
        )),
        "{out}{err}"
    );
    assert_eq!(person_rows(&b).await.len(), n - 1, "the gone person is no longer in the index");
    assert_eq!(inactive_rows(&b).await, 1);
    let (ok, out, err) = people_load(&b, &clean_path, &[]);
    assert!(ok && out.contains("0 marked inactive, 1 active again"), "{out}{err}");
    assert_eq!(inactive_rows(&b).await, 0);
    let one = dir.path().join("people_one.csv");
    std::fs::write(&one, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
    let (ok, out, err) = people_load(&b, &one, &["--partial"]);
    assert!(ok && out.contains("1 updated") && out.contains("0 marked inactive"), "{out}{err}");
    assert_eq!(person_rows(&b).await.len(), n, "a partial file leaves the others alone");
    let (ok, out, err) = people_load(&b, &next, &["--prune"]);
    assert!(
        ok && out.contains(&format!(
            "0 inserted, 0 updated, {} unchanged, 0 marked inactive, 0 active again, 1 pruned",
            n - 1
        )),
        "{out}{err}"
    );
    assert_eq!(person_rows(&b).await.len(), n - 1);
    assert_eq!(inactive_rows(&b).await, 0);
    assert!(!last.is_empty());

    // bad rows: named by line and reason, never by value, and nothing loaded
    let bad = format!(
        "{}\nX12,ANNA,SMITH,,1980-03-05,F,,,,,,\n9000001,ANNA,SMITH,,1980-13-45,F,,,,,,\n\
         9000002,ANNA,SMITH,,1980-03-05,F,,,,,,\n9000002,ANNA,SMITH,,1980-03-05,F,,,,,,\n",
        lines[0]
    );
    let mut bytes = bad.into_bytes();
    bytes.extend_from_slice(b"9000003,\xe9MILE,SMITH,,1980-03-05,F,,,,,,\n");
    let bad_path = dir.path().join("people_bad.csv");
    std::fs::write(&bad_path, bytes).unwrap();
    let before = person_rows(&b).await;
    let (ok, _, err) = people_load(&b, &bad_path, &[]);
    assert!(!ok, "{err}");
    for want in [
        "line 2: person_id is not a number",
        "line 3: dob is not a date",
        "line 5: person_id repeats the one on line 4",
        "line 6: first_name is not UTF-8",
        "4 row(s) of",
        "nothing loaded",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
    for value in ["X12", "1980-13-45", "SMITH", "9000002"] {
        assert!(!err.contains(value), "{value} in {err}");
    }
    assert_eq!(person_rows(&b).await, before);
    let wrong = dir.path().join("people_wrong.csv");
    std::fs::write(&wrong, "person_id,first_name\n1,ANNA\n").unwrap();
    let (ok, _, err) = people_load(&b, &wrong, &[]);
    assert!(!ok && err.contains("missing column(s) last_name"), "{err}");
}
