//! Server time of the review web application's two busiest pages with 100,000 pending
//! proposals in PostgreSQL (a benchmark, not a test: it prints figures and asserts nothing but
//! that each page answers 200 with rows). The queue mix: the first page, page 1001 reached
//! forward and backward through keyset links, a source filter, a score band, a dataset filter
//! at page 501, and source + band deep down (page 201, or its middle page if it has fewer).
//!
//! The samples run through the embedded pipeline, the pii queue is drained with the PostgreSQL
//! index and review store (real proposals over real quarantined rows), then those proposals are
//! copied until the database holds `--proposals` pending ones. Each request goes through the whole
//! router (identity with the ES256 check of a signed claims token, lease, audit insert, the bad
//! rows read back from the lake, HTML) and is timed from request to the last body byte.
//!
//! usage: LAKE_BENCH_DATABASE_URL=postgres://... cargo run --release -p lake --example review_web_bench
//!        [-- PROPOSALS [REQUESTS]]   (defaults 100000 and 350; a fresh database per run)
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use pii_matching::handler::MatchDeps;
use pii_matching::pg::{copy_people_csv, Db, PgIndex, PgReviews};
use review_web::{App, Auth, ClaimsAuth, Settings};
use tower::ServiceExt;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn fresh_db(url: &str) -> Result<Arc<Db>> {
    let admin = Db::from_url(url, 1)?;
    let name = format!("lake_web_bench_{}", std::process::id());
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&admin.pool()).await?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin.pool()).await?;
    let db = Arc::new(Db::from_url(&format!("{}/{name}", url.rsplit_once('/').context("url")?.0), 8)?);
    db.migrate().await?;
    copy_people_csv(&db, &root().join("config/people.example.csv")).await?;
    Ok(db)
}

/// The samples through the embedded lake in `l`, proposals into PostgreSQL, copied to `n`.
async fn proposals(l: &Path, db: &Arc<Db>, n: i64) -> Result<i64> {
    let (deps, topo) = lake::embedded::local_deps(l, Some(&root().join("samples")));
    lake::embedded::publish_dir(&deps, &root().join("config/sources")).await?;
    lake::embedded::notify_all(&deps, &topo).await?;
    lake::embedded::drain(&deps, &topo).await?;
    let m = MatchDeps {
        pipeline: deps,
        index: Arc::new(PgIndex::new(db.clone(), 1024)),
        reviews: Arc::new(PgReviews { db: db.clone() }),
        matcher: Arc::new(pii_matching::rules_store::ActiveRules::builtin()),
    };
    lake::embedded::drain_matching(&m).await?;
    let real: i64 = sqlx::query_scalar("SELECT count(*) FROM match_review").fetch_one(&db.pool()).await?;
    let copies = (n - real).max(0) / real.max(1) + 1;
    sqlx::query(
        "INSERT INTO match_review (record_ref, file_id, row_index, dataset, source, bad_bucket, bad_key, \
                                   candidates, best_score, rule, created_at) \
         SELECT r.record_ref || ':copy:' || g, r.file_id, r.row_index, r.dataset, r.source, r.bad_bucket, \
                r.bad_key, r.candidates, r.best_score + (g % 7), r.rule, now() - make_interval(secs => g) \
         FROM match_review r, generate_series(1, $1) g",
    )
    .bind(copies)
    .execute(&db.pool())
    .await?;
    sqlx::query(&format!("DELETE FROM match_review WHERE review_id IN (SELECT review_id FROM match_review ORDER BY review_id DESC LIMIT (SELECT greatest(count(*) - {n}, 0) FROM match_review))"))
        .execute(&db.pool())
        .await?;
    // a table in steady state is vacuumed (visibility map: index-only scans for the counts)
    sqlx::query("VACUUM ANALYZE match_review").execute(&db.pool()).await?;
    Ok(sqlx::query_scalar("SELECT count(*) FROM match_review WHERE status = 'pending'")
        .fetch_one(&db.pool())
        .await?)
}

fn b64(b: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut o = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..=c.len() {
            o.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    o
}

const ALB: &str = "arn:aws-us-gov:elasticloadbalancing:us-gov-west-1:111122223333:loadbalancer/app/bench/1";
const KID: &str = "bench-key";

/// The load balancer's signing key and, on 127.0.0.1, its public key as the regional key
/// endpoint serves it (so each request pays the real signature check).
async fn alb_signer() -> Result<(EcdsaKeyPair, String)> {
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|e| anyhow::anyhow!("{e}"))?;
    let pem = review_web::alb::pem_for_point(key.public_key().as_ref());
    let app = axum::Router::new().route(&format!("/{KID}"), axum::routing::get(move || async move { pem }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move { axum::serve(l, app).await });
    Ok((key, format!("http://{addr}")))
}

/// The claims JWT the load balancer would forward for `who`.
fn token(key: &EcdsaKeyPair, who: &str) -> Result<String> {
    let exp = chrono::Utc::now().timestamp() + 600;
    let header = serde_json::json!({"alg": "ES256", "kid": KID, "signer": ALB, "exp": exp});
    let claims = serde_json::json!({"email": who, "groups": ["lake-reviewers"], "exp": exp});
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let sig = key.sign(&SystemRandom::new(), input.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(format!("{input}.{}", b64(sig.as_ref())))
}

async fn timed(app: &Arc<App>, key: &EcdsaKeyPair, path: &str, who: &str) -> Result<(Duration, String)> {
    let req = Request::get(path).header("x-amzn-oidc-data", token(key, who)?).body(Body::empty())?;
    let t = Instant::now();
    let res = review_web::router(app.clone()).oneshot(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    let d = t.elapsed();
    anyhow::ensure!(status == StatusCode::OK && body.len() > 500, "{path}: {status}");
    Ok((d, String::from_utf8_lossy(&body).into_owned()))
}

/// The newer-page link of page `want` (or of the middle page, if the filter has fewer) for a
/// filter (its SQL condition and its query string): the keyset cursor of that page's last row,
/// as a reviewer who paged that far follows it, and the number of the page it opens.
async fn deep_link(db: &Db, cond: &str, qs: &str, want: i64) -> Result<(String, String)> {
    const PER: i64 = 50;
    let n: i64 =
        sqlx::query_scalar(&format!("SELECT count(*) FROM match_review WHERE status = 'pending' {cond}"))
            .fetch_one(&db.pool())
            .await?;
    let page = want.min(n / PER / 2).max(1);
    let (t, id): (chrono::DateTime<chrono::Utc>, i64) = sqlx::query_as(&format!(
        "SELECT created_at, review_id FROM match_review WHERE status = 'pending' {cond} \
         ORDER BY created_at, review_id OFFSET $1 LIMIT 1"
    ))
    .bind(page * PER - 1)
    .fetch_one(&db.pool())
    .await?;
    let c = review_web::store::Cursor { created_at: Some(t), review_id: id };
    Ok((format!("/?{qs}after={c}&page={}", page + 1), format!("page {} of", page + 1)))
}

/// The mix of queue pages (path, what the page must say): the first page, page 1001 reached
/// forward and backward through keyset links, filters, a band, filters deep down.
async fn queue_pages(db: &Db) -> Result<Vec<(String, String)>> {
    let (fwd, label) = deep_link(db, "", "", 1000).await?;
    // page 1001 again, from the older-page link of page 1002 (the first row of page 1002)
    let (t, id): (chrono::DateTime<chrono::Utc>, i64) = sqlx::query_as(
        "SELECT created_at, review_id FROM match_review WHERE status = 'pending' \
         ORDER BY created_at, review_id OFFSET 50050 LIMIT 1",
    )
    .fetch_one(&db.pool())
    .await?;
    let back =
        format!("/?before={}&page=1001", review_web::store::Cursor { created_at: Some(t), review_id: id });
    Ok(vec![
        ("/".into(), "page 1 of".into()),
        (fwd, label.clone()),
        (back, label),
        ("/?source=brookside_xlsx".into(), "page 1 of".into()),
        ("/?min=27&max=30".into(), "page 1 of".into()),
        deep_link(db, "AND dataset = 'encounter'", "dataset=encounter&", 500).await?,
        deep_link(
            db,
            "AND source = 'brookside_xlsx' AND best_score >= 27 AND best_score < 30",
            "source=brookside_xlsx&min=27&max=30&",
            200,
        )
        .await?,
    ])
}

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let q = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1].as_secs_f64() * 1e3;
    println!(
        "{name:<30} n={:<5} p50 {:>6.2} ms  p95 {:>6.2} ms  max {:>6.2} ms",
        v.len(),
        q(0.5),
        q(0.95),
        q(1.0)
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let url = std::env::var("LAKE_BENCH_DATABASE_URL")
        .context("LAKE_BENCH_DATABASE_URL (a PostgreSQL to create a database in)")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: i64 = args.first().map(|a| a.parse()).transpose()?.unwrap_or(100_000);
    let reqs: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(350);
    let dir = tempfile::tempdir()?;
    let l = dir.path().join("lake");
    let db = fresh_db(&url).await?;
    let pending = proposals(&l, &db, n).await?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT review_id FROM match_review WHERE status = 'pending' ORDER BY random() LIMIT $1",
    )
    .bind(reqs as i64)
    .fetch_all(&db.pool())
    .await?;
    let (key, keys_url) = alb_signer().await?;
    let app = Arc::new(App {
        desk: Arc::new(PgReviews { db: db.clone() }),
        store: Arc::new(review_web::pg::PgWebStore::new(db.clone())),
        deps: lake::embedded::local_deps(&l, None).0,
        auth: Auth::Claims(ClaimsAuth {
            header: "x-amzn-oidc-data".into(),
            name_claim: "email".into(),
            groups_claim: "groups".into(),
            reviewer_group: "lake-reviewers".into(),
            viewer_group: "lake-viewers".into(),
            alb_arn: ALB.into(),
            keys: review_web::AlbKeys::new(Some(keys_url)).map_err(|e| anyhow::anyhow!(e))?,
            max_session: Duration::from_secs(8 * 3600),
        }),
        settings: Settings::default(),
    });
    println!("{pending} pending proposals in PostgreSQL; {reqs} requests per page, one at a time");
    let pages = queue_pages(&db).await?;
    for (p, label) in &pages {
        let (_, body) = timed(&app, &key, p, "warm@county.gov").await?;
        anyhow::ensure!(
            body.contains(label) && body.contains("class=\"open\""),
            "{p}: not {label} with rows"
        );
    }
    let mut queue = Vec::new();
    let mut per_page: Vec<Vec<Duration>> = vec![Vec::new(); pages.len()];
    for i in 0..reqs {
        let (d, _) = timed(&app, &key, &pages[i % pages.len()].0, &format!("r{}@county.gov", i % 20)).await?;
        per_page[i % pages.len()].push(d);
        queue.push(d);
    }
    for ((p, _), v) in pages.iter().zip(per_page) {
        let shown = p.split_once("after=").or(p.split_once("before=")).map_or(p.clone(), |(a, rest)| {
            let dir = if p.contains("after=") { "after=" } else { "before=" };
            format!("{a}{dir}..{}", rest.split_once('&').map_or(String::new(), |(_, t)| format!("&{t}")))
        });
        report(&format!("  {shown}"), v);
    }
    let mut proposal = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        proposal
            .push(timed(&app, &key, &format!("/proposal/{id}"), &format!("r{}@county.gov", i % 20)).await?.0);
    }
    report("queue page", queue);
    report("proposal page", proposal);
    Ok(())
}
