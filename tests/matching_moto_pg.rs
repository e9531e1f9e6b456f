//! Matching on a deployment: moto for S3 / DynamoDB / SQS / SNS and a PostgreSQL prepared only by
//! what a deploy and an operator do (the schema custom resource's migrations, then
//! `lake people load`). A file with bad rows goes router -> workflow -> pii queue -> the
//! pii-matching handler connected as `lake_matcher`; a reviewer connected as `lake_reviewer`
//! accepts one proposal. The in-memory adapter on the same file is the yardstick.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use e2e::{database_url, root, unique, world};
use lake::embedded;
use layer::ledger::Status;
use layer::pipeline::Deps;
use pii_matching::deploy::{self, CustomResourceRequest};
use pii_matching::handler::MatchDeps;
use pii_matching::people::{read_export, PeopleMapping};
use pii_matching::pg::{upsert_people, Db, Missing, PgIndex, PgReviews};
use pii_matching::review;

const FILE: &str = "st_marys_600.csv";

/// A database with nothing in it but what the deploy's schema step and a people load put there.
async fn deployed_database() -> (String, String) {
    let admin_url = database_url();
    let admin = Db::from_url(&admin_url, 1).unwrap();
    let name = format!("e2e_{}", unique());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin.pool()).await.unwrap();
    let base = admin_url.rsplit_once('/').unwrap().0.to_string();
    let master = format!("{base}/{name}");

    let req: CustomResourceRequest = serde_json::from_value(serde_json::json!({
        "RequestType": "Create", "ResponseURL": "https://unused.invalid/", "StackId": "stack",
        "RequestId": "req", "LogicalResourceId": "MatchingSchema"}))
    .unwrap();
    let url = master.clone();
    let resp = deploy::respond_to(&req, || async move { Ok(Arc::new(Db::from_url(&url, 1)?)) }).await;
    assert_eq!(resp.status, "SUCCESS", "{}", resp.reason);

    let mapping = PeopleMapping::from_file(&root().join("config/people.toml")).unwrap();
    let people = read_export(&root().join("config/people.example.csv"), &mapping).unwrap();
    assert!(people.rejected.is_empty(), "{:?}", people.rejected);
    let db = Db::from_url(&master, 1).unwrap();
    let loaded = upsert_people(&db, &people.persons, Missing::Inactivate).await.unwrap();
    assert_eq!(loaded.inserted as usize, people.persons.len());
    (base, name)
}

/// A connection as one of the roles the migrations create (the test server trusts local roles;
/// in AWS they log in with IAM tokens).
fn as_role(base: &str, role: &str, db: &str) -> Arc<Db> {
    let url = base.replacen("://lake@", &format!("://{role}@"), 1);
    Arc::new(Db::from_url(&format!("{url}/{db}"), 2).unwrap())
}

async fn pending(db: &Db) -> Vec<i64> {
    sqlx::query_scalar("SELECT review_id FROM match_review WHERE status = 'pending' ORDER BY review_id")
        .fetch_all(&db.pool())
        .await
        .unwrap()
}

async fn raw_rows(w: &e2e::World) -> (usize, usize) {
    let listed = w.s3.list_objects_v2().bucket(&w.deps.cfg.raw_bucket).send().await.unwrap();
    let mut matched = 0;
    let mut reviewed = 0;
    for o in listed.contents() {
        let k = o.key().unwrap();
        let body = w.s3.get_object().bucket(&w.deps.cfg.raw_bucket).key(k).send().await.unwrap();
        let bytes = body.body.collect().await.unwrap().into_bytes();
        let rows: usize = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum();
        if k.contains("matched") {
            matched += rows;
        } else if k.contains("review") {
            reviewed += rows;
        }
    }
    (matched, reviewed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_matched_through_moto_and_a_deployed_database_then_one_is_accepted() {
    let (base, dbname) = deployed_database().await;
    let w = world().await;
    embedded::publish_dir(&w.deps, &root().join("config/sources")).await.unwrap();
    let body = std::fs::read(root().join(format!("samples/st_marys/{FILE}"))).unwrap();
    w.upload(&format!("st_marys/2026/12/{FILE}"), body, 1).await;
    embedded::drain(&w.deps, &w.topo).await.unwrap();

    // the handler as the Lambda builds it: no datasets table (the template grants none, and
    // matching never updates a dataset's status), the matcher's own database role
    let mut pipeline: Deps = w.deps.clone();
    pipeline.meta = Arc::new(layer::aws::DynamoMetadata {
        client: aws_sdk_dynamodb::Client::new(&e2e::moto_sdk().await),
        runs_table: w.runs_table.clone(),
        datasets_table: "no-such-table-matching-must-not-touch".into(),
    });
    let matcher_db = as_role(&base, "lake_matcher", &dbname);
    let m = MatchDeps {
        pipeline,
        index: Arc::new(PgIndex { db: matcher_db.clone(), chunk: 4096 }),
        reviews: Arc::new(PgReviews { db: matcher_db }),
        matcher: Arc::new(pii_matching::rules_store::ActiveRules::builtin()),
    };
    assert!(embedded::drain_matching(&m).await.unwrap() > 0, "the pii queue had work");
    assert!(w.drain_all(&w.deps.cfg.dlq.clone()).await.is_empty(), "no failure envelope");

    let runs = embedded::status(&w.deps).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, Status::Done, "{:?}", runs[0]);
    let counts = embedded::match_counts(&w.deps, &runs).await.unwrap()[&runs[0].file_id];

    // the yardstick: the same file and people through the embedded lake's in-memory index
    let tmp = tempfile::tempdir().unwrap();
    let (local, topo) = embedded::local_deps(tmp.path(), None);
    embedded::publish_dir(&local, &root().join("config/sources")).await.unwrap();
    std::fs::create_dir_all(tmp.path().join("ingest/st_marys")).unwrap();
    let (lm, _) =
        embedded::local_matching(&local, tmp.path(), &root().join("config/people.example.csv")).unwrap();
    let body = std::fs::read(root().join(format!("samples/st_marys/{FILE}"))).unwrap();
    local.store.put(&topo.ingest_bucket, &format!("st_marys/{FILE}"), body, None).await.unwrap();
    embedded::notify_all(&local, &topo).await.unwrap();
    embedded::drain(&local, &topo).await.unwrap();
    embedded::drain_matching(&lm).await.unwrap();
    let lruns = embedded::status(&local).await.unwrap();
    let expected = embedded::match_counts(&local, &lruns).await.unwrap()[&lruns[0].file_id];
    assert_eq!(counts, expected, "PostgreSQL on a deployed database decides as the in-memory index");
    assert!(counts.matched > 0 && counts.proposed > 0, "{counts:?}");

    // completed rows in the raw bucket (moto), proposals in PostgreSQL
    let (matched_rows, reviewed_rows) = raw_rows(&w).await;
    assert_eq!(matched_rows as u64, counts.matched);
    assert_eq!(reviewed_rows, 0);
    let reviewer_db = as_role(&base, "lake_reviewer", &dbname);
    let open = pending(&reviewer_db).await;
    assert_eq!(open.len() as u64, counts.proposed);

    // a data scientist accepts one (`lake review accept`'s library call, as lake_reviewer)
    let desk = PgReviews { db: reviewer_db.clone() };
    let accepted = review::accept(&desk, &w.deps, open[0], None, "e2e-reviewer").await.unwrap();
    assert_eq!(accepted.bucket, w.deps.cfg.raw_bucket);
    let (matched_after, reviewed_after) = raw_rows(&w).await;
    assert_eq!((matched_after, reviewed_after), (matched_rows, 1), "one more completed row");
    assert_eq!(pending(&reviewer_db).await, open[1..].to_vec());
    let again = review::accept(&desk, &w.deps, open[0], None, "e2e-reviewer").await;
    assert!(matches!(again, Err(review::ReviewError::AlreadyDecided { .. })), "{again:?}");
}
