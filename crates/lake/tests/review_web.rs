//! The review web application at the HTTP level, every route, against both stores: the embedded
//! lake's review store (proposals made by `lake run --people`) and a real PostgreSQL
//! (`LAKE_TEST_DATABASE_URL`, started by `scripts/test.sh`; proposals made by the pii-matching
//! handler with the PostgreSQL adapters). Accepted rows are completed into the embedded lake's raw
//! bucket and read back as Parquet. Several reviewers: the identity the load balancer forwards
//! (`x-amzn-oidc-data`); the local server's login link and session: its own test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow_array::{Array, StringArray};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use pii_matching::handler::MatchDeps;
use pii_matching::pg::{copy_people_csv, Db, PgIndex, PgReviews};
use pii_matching::review::ReviewDesk;
use pii_matching::review_store::LocalDesk;
use review_web::store::{Action, Lease, WebStore};
use review_web::{App, Auth, ClaimsAuth, LocalAuth, Settings};
use tower::ServiceExt;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The hand-set rules that leave eight sample rows proposed (tests/fixtures/matching.handset.toml):
/// the review mechanics under test need proposals, which the shipped trained rules mostly decide.
const HANDSET_RULES: &str = include_str!("fixtures/matching.handset.toml");

/// `lake run` over the samples into `l` (with `--people`: proposals in the embedded store).
fn lake_run(l: &Path, people: bool) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lake"));
    c.args(["run", root().join("samples").to_str().unwrap(), "--lake", l.to_str().unwrap()])
        .args(["--contracts", root().join("config/sources").to_str().unwrap()]);
    if people {
        e2e::publish_handset_rules(env!("CARGO_BIN_EXE_lake"), l);
        c.args(["--people", root().join("config/people.example.csv").to_str().unwrap()]);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

enum Backend {
    Local,
    Pg(Arc<Db>),
}

struct Fixture {
    _dir: tempfile::TempDir,
    lake: PathBuf,
    desk: Arc<dyn ReviewDesk>,
    store: Arc<dyn WebStore>,
    backend: Backend,
}

fn local_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let l = dir.path().join("lake");
    lake_run(&l, true);
    let load = |p: &Path| lake::embedded::load_people(p).map_err(|e| format!("{e:#}"));
    let desk = LocalDesk::new(lake::embedded::review_store(&l), None, Box::new(load));
    let store = review_web::local::LocalWebStore::new(l.join("reviews"));
    Fixture { _dir: dir, lake: l, desk: Arc::new(desk), store: Arc::new(store), backend: Backend::Local }
}

/// A fixture over a fresh PostgreSQL database (the migrations, the example persons); `url` is
/// its URL.
async fn pg_fixture() -> (Fixture, String) {
    let (url, _) = e2e::empty_database().await;
    let db = Arc::new(Db::from_url(&url, 4).unwrap());
    db.migrate().await.unwrap();
    copy_people_csv(&db, &root().join("config/people.example.csv")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let l = dir.path().join("lake");
    lake_run(&l, false);
    let (deps, _) = lake::embedded::local_deps(&l, None);
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
    let f = Fixture {
        _dir: dir,
        lake: l,
        desk: Arc::new(PgReviews { db: db.clone() }),
        store: Arc::new(review_web::pg::PgWebStore::new(db.clone())),
        backend: Backend::Pg(db),
    };
    (f, url)
}

/// The load balancer the tests' claims are signed by.
const ALB: &str =
    "arn:aws-us-gov:elasticloadbalancing:us-gov-west-1:111122223333:loadbalancer/app/county-lake-dev-review/50dc6c495c0c9188";
const KID: &str = "7c3e51a2-7a4b-4f5e-9c1d-2b2f0e6a9d10";

/// The load balancer's signing key (one per test process).
fn alb_key() -> &'static EcdsaKeyPair {
    static K: std::sync::OnceLock<EcdsaKeyPair> = std::sync::OnceLock::new();
    K.get_or_init(|| EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
}

/// Serves the load balancer's public key as the regional key endpoint does (`/<kid>`, PEM) on
/// 127.0.0.1; its base URL.
async fn key_endpoint() -> String {
    let pem = review_web::alb::pem_for_point(alb_key().public_key().as_ref());
    let app = axum::Router::new().route(
        "/{kid}",
        axum::routing::get(move |axum::extract::Path(kid): axum::extract::Path<String>| {
            let pem = pem.clone();
            async move {
                if kid == KID {
                    (StatusCode::OK, pem)
                } else {
                    (StatusCode::FORBIDDEN, String::new())
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

async fn claims_auth() -> Auth {
    Auth::Claims(ClaimsAuth {
        header: "x-amzn-oidc-data".into(),
        name_claim: "email".into(),
        groups_claim: "groups".into(),
        reviewer_group: "lake-reviewers".into(),
        viewer_group: "lake-viewers".into(),
        alb_arn: ALB.into(),
        keys: review_web::AlbKeys::new(Some(key_endpoint().await)).unwrap(),
        max_session: std::time::Duration::from_secs(8 * 3600),
    })
}

fn app_with(f: &Fixture, auth: Auth, settings: Settings) -> Arc<App> {
    Arc::new(App {
        desk: f.desk.clone(),
        store: f.store.clone(),
        deps: lake::embedded::local_deps(&f.lake, None).0,
        auth,
        settings,
    })
}

fn app(f: &Fixture, auth: Auth, tls: bool) -> Arc<App> {
    app_with(f, auth, Settings { tls, ..Settings::default() })
}

/// Base64url as the load balancer writes it: with `=` padding.
fn b64url(b: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut o = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            o.push(if i <= c.len() { A[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    o
}

/// A JWT with this header and payload, signed with the load balancer's key.
fn signed(header: serde_json::Value, payload: serde_json::Value) -> String {
    let input =
        format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(payload.to_string().as_bytes()));
    let sig = alb_key().sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", b64url(sig.as_ref()))
}

fn alb_header(signer: &str, exp: i64) -> serde_json::Value {
    serde_json::json!({"alg": "ES256", "kid": KID, "signer": signer, "iss": "https://idp.county.gov",
                       "client": "county-lake-review", "exp": exp})
}

/// The claims JWT a load balancer would forward for `email` in `group`.
fn oidc(email: &str, group: &str, exp_in: i64) -> String {
    let exp = chrono::Utc::now().timestamp() + exp_in;
    let payload = serde_json::json!({"sub": "s-1", "email": email, "groups": [group], "exp": exp,
                                     "iss": "https://idp.county.gov"});
    signed(alb_header(ALB, exp), payload)
}

/// A browser: headers it always sends, the cookies it was given.
struct Browser {
    app: Arc<App>,
    headers: Vec<(String, String)>,
    cookies: Vec<(String, String)>,
}

struct Res {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Res {
    fn location(&self) -> &str {
        self.headers.get(header::LOCATION).map(|v| v.to_str().unwrap()).unwrap_or("")
    }

    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
        self.body[at..].split('"').next().unwrap().to_string()
    }
}

impl Browser {
    fn new(app: &Arc<App>, headers: &[(&str, &str)]) -> Self {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self { app: app.clone(), headers, cookies: Vec::new() }
    }

    fn as_reviewer(app: &Arc<App>, email: &str, group: &str) -> Self {
        Self::new(app, &[("x-amzn-oidc-data", &oidc(email, group, 600))])
    }

    async fn send(&mut self, method: &str, path: &str, form: Option<String>) -> Res {
        let mut r = Request::builder().method(method).uri(path);
        for (k, v) in &self.headers {
            r = r.header(k, v);
        }
        if !self.cookies.is_empty() {
            let c: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            r = r.header(header::COOKIE, c.join("; "));
        }
        let body = match form {
            Some(f) => {
                r = r.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(f)
            }
            None => Body::empty(),
        };
        let res = review_web::router(self.app.clone()).oneshot(r.body(body).unwrap()).await.unwrap();
        for v in res.headers().get_all(header::SET_COOKIE) {
            let (k, v) = v.to_str().unwrap().split(';').next().unwrap().split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            self.cookies.push((k.to_string(), v.to_string()));
        }
        let status = res.status();
        let headers = res.headers().clone();
        let body = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        Res { status, headers, body }
    }

    async fn get(&mut self, path: &str) -> Res {
        self.send("GET", path, None).await
    }

    async fn post(&mut self, path: &str, form: &str) -> Res {
        self.send("POST", path, Some(form.to_string())).await
    }
}

/// The target of a queue page's paging link (`rel` next or prev), unescaped.
fn link(body: &str, rel: &str) -> Option<String> {
    let end = body.find(&format!("\" rel=\"{rel}\""))?;
    let start = body[..end].rfind("href=\"")? + 6;
    Some(body[start..end].replace("&amp;", "&"))
}

/// The id of the one pending proposal of a source, from the queue page.
async fn id_of(b: &mut Browser, source: &str) -> i64 {
    let page = b.get(&format!("/?source={source}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let at = page.body.find("href=\"/proposal/").expect("a listed proposal") + 16;
    page.body[at..].split('"').next().unwrap().parse().unwrap()
}

fn strings(b: &arrow_array::RecordBatch, col: &str) -> Vec<Option<String>> {
    let a = b.column_by_name(col).unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
    (0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i).to_string())).collect()
}

async fn security_and_identity(f: &Fixture) {
    let a = app(f, claims_auth().await, true);
    let mut anon = Browser::new(&a, &[]);
    let h = anon.get("/health").await;
    assert_eq!((h.status, h.body.as_str()), (StatusCode::OK, "ok"));
    for path in ["/", "/proposal/1", "/nope"] {
        let r = anon.get(path).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {}", r.body);
    }
    let r = anon.post("/proposal/1/decide", "choice=reject").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let mut expired =
        Browser::new(&a, &[("x-amzn-oidc-data", &oidc("ana@county.gov", "lake-reviewers", -5))]);
    let r = expired.get("/").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("session expired"), "{}", r.body);
    let mut stranger = Browser::as_reviewer(&a, "eve@county.gov", "finance");
    assert_eq!(stranger.get("/").await.status, StatusCode::FORBIDDEN);

    let mut ana = Browser::as_reviewer(&a, "ana@county.gov", "lake-reviewers");
    let q = ana.get("/").await;
    assert_eq!(q.status, StatusCode::OK);
    assert!(q.body.contains("8 shown of 8 pending"), "{}", q.body);
    let hv = |k: &str| q.headers.get(k).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    assert_eq!(hv("cache-control"), "no-store");
    assert!(hv("content-security-policy").contains("default-src 'self'"));
    assert!(hv("content-security-policy").contains("frame-ancestors 'none'"));
    assert!(hv("strict-transport-security").starts_with("max-age="));
    assert!(!q.body.contains("https://") && !q.body.contains("http://"), "no external asset");
    for asset in ["/assets/app.css", "/assets/app.js"] {
        let r = ana.get(asset).await;
        assert_eq!(r.status, StatusCode::OK, "{asset}");
        assert!(!r.body.is_empty());
    }
    let filtered = ana.get("/?source=brookside_xlsx").await;
    assert!(filtered.body.contains("3 shown of 8 pending"), "{}", filtered.body);
    let band = ana.get("/?min=27&max=100").await;
    assert!(band.body.contains("2 shown of 8 pending"), "{}", band.body);
    assert_eq!(ana.get("/?min=abc").await.status, StatusCode::BAD_REQUEST);
    for bad in ["/proposal/999999", "/proposal/abc", "/proposal/-1", "/proposal/1%27", "/nope"] {
        assert_eq!(ana.get(bad).await.status, StatusCode::NOT_FOUND, "{bad}");
    }
    let big = format!("csrf=x&note={}", "a".repeat(40_000));
    assert_eq!(ana.post("/proposal/1/decide", &big).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    let plain = app(f, claims_auth().await, false);
    let r = Browser::as_reviewer(&plain, "ana@county.gov", "lake-reviewers").get("/").await;
    assert!(r.headers.get("strict-transport-security").is_none(), "no HSTS without TLS");
}

async fn mask_reveal_decide(f: &Fixture) {
    let a = app(f, claims_auth().await, true);
    let mut ana = Browser::as_reviewer(&a, "ana@county.gov", "lake-reviewers");
    let mut bo = Browser::as_reviewer(&a, "bo@county.gov", "lake-reviewers");
    let mut vi = Browser::as_reviewer(&a, "vi@county.gov", "lake-viewers");
    let id = id_of(&mut ana, "valley_clinic").await;
    let page = ana.get(&format!("/proposal/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Yours until"), "{}", page.body);
    assert!(page.body.contains("KOWALSKI") && page.body.contains("WILSON"), "names shown in full");
    assert!(page.body.contains("\u{2022}\u{2022}\u{2022}0011"), "SSN: last characters only");
    assert!(!page.body.contains("900-10-0011"), "SSN masked until revealed");
    assert!(page.body.contains("[else]") || page.body.contains(">else "), "levels shown");
    let csrf = page.csrf();

    // another reviewer sees it taken, cannot decide it; the viewer cannot decide at all
    let q = bo.get("/?source=valley_clinic").await;
    assert!(q.body.contains("taken by ana@county.gov"), "{}", q.body);
    let other = bo.get(&format!("/proposal/{id}")).await;
    assert!(other.body.contains("ana@county.gov has this proposal open"), "{}", other.body);
    assert!(!other.body.contains("id=\"decide\""));
    let bo_csrf = bo.cookies.iter().find(|(k, _)| k == "rw_csrf").map(|(_, v)| v.clone()).unwrap();
    let r = bo.post(&format!("/proposal/{id}/decide"), &format!("csrf={bo_csrf}&choice=reject")).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains("ana@county.gov has this proposal open"), "{}", r.body);
    let vp = vi.get(&format!("/proposal/{id}")).await;
    assert_eq!(vp.status, StatusCode::OK);
    assert!(!vp.body.contains("id=\"decide\""), "no decision form for a viewer");
    let vcsrf = vi.cookies.iter().find(|(k, _)| k == "rw_csrf").map(|(_, v)| v.clone()).unwrap();
    let r = vi.post(&format!("/proposal/{id}/decide"), &format!("csrf={vcsrf}&choice=reject")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    // CSRF: missing or wrong token refused, nothing changed
    for form in ["choice=reject".to_string(), "csrf=00&choice=reject".to_string()] {
        let r = ana.post(&format!("/proposal/{id}/decide"), &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{form}");
    }
    let r = ana.post(&format!("/proposal/{id}/reveal"), "field=ssn").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(f.desk.get(id).await.unwrap().unwrap().status, "pending");

    // reveal one field: audited, then shown in full
    let r = ana.post(&format!("/proposal/{id}/reveal"), &format!("csrf={csrf}&field=ssn")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = ana.post(&format!("/proposal/{id}/reveal"), &format!("csrf={csrf}&field=first_name")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "only masked fields");
    let page = ana.get(&format!("/proposal/{id}")).await;
    assert!(page.body.contains("900-10-0011"), "revealed");
    assert!(!page.body.contains("774-656-7549"), "the phone stays masked");

    // accept candidate: the row completed into the raw bucket, then the next proposal opens
    let r = ana
        .post(
            &format!("/proposal/{id}/decide"),
            &format!("csrf={csrf}&choice=accept:9000011&note=same+person"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location().starts_with("/proposal/") || r.location() == "/", "{}", r.location());
    let rev = f.desk.get(id).await.unwrap().unwrap();
    assert_eq!((rev.status.as_str(), rev.accepted_person_id), ("accepted", Some(9000011)));
    let key = pii_matching::rows::output_key(&rev.bad_key, &format!("reviewed-{}", rev.row_index));
    let b = pii_matching::rows::read_parquet(std::fs::read(f.lake.join("buckets/raw").join(&key)).unwrap())
        .unwrap();
    assert_eq!(strings(&b, "ssn"), [Some("900-10-0011".to_string())]);
    assert_eq!(strings(&b, "last_name"), [Some("WILSON".to_string())]);

    // a second decision: 409, says who and when
    let r = ana.post(&format!("/proposal/{id}/decide"), &format!("csrf={csrf}&choice=reject")).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("already accepted by ana@county.gov at 20"), "{}", r.body);
    let page = bo.get(&format!("/proposal/{id}")).await;
    assert!(page.body.contains("Already accepted by ana@county.gov"), "{}", page.body);

    // reject and skip
    let rid = id_of(&mut ana, "st_marys").await;
    let p = ana.get(&format!("/proposal/{rid}")).await;
    let r = ana.post(&format!("/proposal/{rid}/decide"), &format!("csrf={}&choice=skip", p.csrf())).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(f.desk.get(rid).await.unwrap().unwrap().status, "pending");
    let r = ana.post(&format!("/proposal/{rid}/decide"), &format!("csrf={}&choice=reject", p.csrf())).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(f.desk.get(rid).await.unwrap().unwrap().status, "rejected");
    let r = ana.post(&format!("/proposal/{rid}/decide"), &format!("csrf={}&choice=accept:1", p.csrf())).await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    // the audit trail: views, the reveal, the decisions, in order
    let trail = f.store.audit_since(chrono::Utc::now() - chrono::Duration::hours(1)).await.unwrap();
    let mine: Vec<_> = trail.iter().filter(|e| e.reviewer == "ana@county.gov").collect();
    let acts: Vec<(Action, i64)> = mine.iter().map(|e| (e.action, e.review_id)).collect();
    assert!(acts.contains(&(Action::View, id)));
    let reveal = mine.iter().find(|e| e.action == Action::Reveal).unwrap();
    assert_eq!((reveal.review_id, reveal.field.as_deref()), (id, Some("ssn")));
    let acc = mine.iter().find(|e| e.action == Action::Accept).unwrap();
    assert_eq!((acc.review_id, acc.person_id, acc.note.as_deref()), (id, Some(9000011), Some("same person")));
    assert!(acts.contains(&(Action::Skip, rid)) && acts.contains(&(Action::Reject, rid)));
    assert!(!trail.iter().any(|e| e.reviewer == "vi@county.gov" && e.action != Action::View));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_against_the_local_store() {
    let f = local_fixture();
    security_and_identity(&f).await;
    mask_reveal_decide(&f).await;
    let lines = std::fs::read_to_string(f.lake.join("reviews/audit.jsonl")).unwrap();
    assert!(lines.lines().count() >= 8, "{lines}");
    assert!(!lines.contains("900-10-0011") && !lines.contains("WILSON"), "no values in the audit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_against_postgresql() {
    let (f, _) = pg_fixture().await;
    security_and_identity(&f).await;
    mask_reveal_decide(&f).await;
    let Backend::Pg(db) = &f.backend else { unreachable!() };
    for sql in ["UPDATE review_audit SET reviewer = 'x'", "DELETE FROM review_audit", "TRUNCATE review_audit"]
    {
        let e = sqlx::query(sql).execute(&db.pool()).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM review_audit").fetch_one(&db.pool()).await.unwrap();
    assert!(n >= 8, "{n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_server_signs_in_with_its_login_link_and_sessions_expire() {
    let f = local_fixture();
    let auth = LocalAuth::new("ana", std::time::Duration::from_millis(300));
    let token = auth.login_token().to_string();
    let a = app(&f, Auth::Local(auth), false);
    let mut b = Browser::new(&a, &[]);
    assert_eq!(b.get("/").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(b.get("/login?token=wrong").await.status, StatusCode::UNAUTHORIZED);
    let r = b.get(&format!("/login?token={token}")).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/"));
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let q = b.get("/").await;
    assert_eq!(q.status, StatusCode::OK);
    assert!(q.body.contains("ana (reviewer)"));
    // the link signs in once
    let mut again = Browser::new(&a, &[]);
    let r = again.get(&format!("/login?token={token}")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "a spent login link is refused");
    assert_eq!(again.get("/").await.status, StatusCode::UNAUTHORIZED);
    // a session's CSRF token works only in that session
    let p = b.get("/proposal/1").await;
    let Auth::Local(l) = &a.auth else { unreachable!() };
    let second = l.issue_login_token().unwrap();
    let mut other = Browser::new(&a, &[]);
    assert_eq!(other.get(&format!("/login?token={second}")).await.status, StatusCode::SEE_OTHER);
    let r = other.post("/proposal/1/decide", &format!("csrf={}&choice=skip", p.csrf())).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    std::thread::sleep(std::time::Duration::from_millis(400));
    let r = b.get("/").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("session expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_count_only_when_this_load_balancer_signed_them() {
    let f = local_fixture();
    let a = app(&f, claims_auth().await, true);
    let now = chrono::Utc::now().timestamp();
    let payload = |exp: i64| serde_json::json!({"sub": "s-9", "email": "ana@county.gov", "groups": ["lake-reviewers"], "exp": exp});
    let get = |token: String| {
        let a = a.clone();
        async move { Browser::new(&a, &[("x-amzn-oidc-data", &token)]).get("/").await }
    };
    let ok = get(signed(alb_header(ALB, now + 60), payload(now + 60))).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);

    // another load balancer of the account (same key endpoint, its own valid signature)
    let other = ALB.replace("county-lake-dev-review/50dc6c495c0c9188", "someone-else/0123456789abcdef");
    let r = get(signed(alb_header(&other, now + 60), payload(now + 60))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("was not made by this site"), "{}", r.body);
    // no signer at all, as a forged header without the load balancer would be
    let mut h = alb_header(ALB, now + 60);
    h.as_object_mut().unwrap().remove("signer");
    assert_eq!(get(signed(h, payload(now + 60))).await.status, StatusCode::UNAUTHORIZED);
    // a viewer's token with the groups changed to the reviewers': the signature no longer holds
    let good = signed(alb_header(ALB, now + 60), payload(now + 60));
    let parts: Vec<&str> = good.split('.').collect();
    let forged = serde_json::json!({"sub": "s-9", "email": "eve@county.gov", "groups": ["lake-reviewers"], "exp": now + 60});
    let tampered = format!("{}.{}.{}", parts[0], b64url(forged.to_string().as_bytes()), parts[2]);
    let r = get(tampered).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("signature is not valid"), "{}", r.body);
    // an unknown key id: the endpoint has no such key
    let mut h = alb_header(ALB, now + 60);
    h["kid"] = serde_json::json!("0000-unknown");
    assert_eq!(get(signed(h, payload(now + 60))).await.status, StatusCode::UNAUTHORIZED);
    // a token claiming to last past the session bound, or with no expiry
    let r = get(signed(alb_header(ALB, now + 9 * 3600), payload(now + 9 * 3600))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let mut h = alb_header(ALB, 0);
    h.as_object_mut().unwrap().remove("exp");
    let r =
        get(signed(h, serde_json::json!({"email": "ana@county.gov", "groups": ["lake-reviewers"]}))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // a sign-in older than the session bound (the identity provider's auth_time)
    let mut old = payload(now + 60);
    old["auth_time"] = serde_json::json!(now - 9 * 3600);
    let r = get(signed(alb_header(ALB, now + 60), old)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("session expired"), "{}", r.body);
    // not an ES256 token
    let mut h = alb_header(ALB, now + 60);
    h["alg"] = serde_json::json!("none");
    assert_eq!(get(signed(h, payload(now + 60))).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_tabs_keep_their_form_token_across_the_return_from_the_identity_provider() {
    let f = local_fixture();
    let a = app(&f, claims_auth().await, true);
    let mut ana = Browser::as_reviewer(&a, "ana@county.gov", "lake-reviewers");
    let id = id_of(&mut ana, "st_marys").await;
    let tab = ana.get(&format!("/proposal/{id}")).await;
    let set = ana.cookies.iter().find(|(k, _)| k == "rw_csrf").map(|(_, v)| v.clone()).unwrap();
    // the cookie is Lax (sent on the top-level navigation back from the identity provider) and
    // HttpOnly, Secure
    let mut fresh = Browser::as_reviewer(&a, "ana@county.gov", "lake-reviewers");
    let r = fresh.get("/").await;
    let c = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_string();
    assert!(c.contains("SameSite=Lax") && c.contains("HttpOnly") && c.contains("Secure"), "{c}");
    // the sign-in expires, the load balancer sends the browser to the identity provider and back:
    // the navigation carries the Lax cookie and a new identity token; nothing is minted again
    ana.headers = vec![("x-amzn-oidc-data".into(), oidc("ana@county.gov", "lake-reviewers", 600))];
    let back = ana.get("/").await;
    assert_eq!(back.status, StatusCode::OK);
    assert!(back.headers.get(header::SET_COOKIE).is_none(), "the CSRF cookie is not minted again");
    // the tab opened before still decides
    let r = ana.post(&format!("/proposal/{id}/decide"), &format!("csrf={}&choice=skip", tab.csrf())).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(tab.csrf(), set);
    // a forged cross-site POST carries no Lax cookie: refused
    let mut forger = Browser::as_reviewer(&a, "ana@county.gov", "lake-reviewers");
    let r = forger.post(&format!("/proposal/{id}/decide"), &format!("csrf={set}&choice=reject")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(f.desk.get(id).await.unwrap().unwrap().status, "pending");
}

/// Gives a pending proposal three candidates, as the matcher stores them (the first with the
/// weights it recorded, a distinctive one for the phone); returns its id and the persons.
async fn with_three_candidates(f: &Fixture, source: &str) -> (i64, [i64; 3]) {
    let pending = f.desk.list(pii_matching::reviews::ReviewStatus::Pending, 100).await.unwrap();
    let r = pending.iter().find(|r| r.source == source).unwrap().clone();
    let first = r.candidates[0].clone();
    let p0 = first["person_id"].as_i64().unwrap();
    let others: Vec<i64> =
        [9000001, 9000002, 9000003, 9000004].into_iter().filter(|p| *p != p0).take(2).collect();
    let mut c0 = first.clone();
    c0["weights"] = serde_json::json!({"phone": 6.4});
    c0["rules_version"] = serde_json::json!(1);
    let mut cands = vec![c0];
    for (i, p) in others.iter().enumerate() {
        let mut c = first.clone();
        c["person_id"] = serde_json::json!(p);
        c["score"] = serde_json::json!(r.best_score - 1.0 - i as f64);
        c.as_object_mut().unwrap().remove("weights");
        cands.push(c);
    }
    let cands = serde_json::Value::Array(cands);
    match &f.backend {
        Backend::Pg(db) => {
            sqlx::query("UPDATE match_review SET candidates = $1 WHERE review_id = $2")
                .bind(&cands)
                .bind(r.review_id)
                .execute(&db.pool())
                .await
                .unwrap();
        }
        Backend::Local => {
            let path = lake::embedded::review_store(&f.lake).path();
            let mut s: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            for e in s["reviews"].as_array_mut().unwrap() {
                if e["review_id"] == r.review_id {
                    e["candidates"] = cands.clone();
                }
            }
            std::fs::write(&path, serde_json::to_vec(&s).unwrap()).unwrap();
        }
    }
    (r.review_id, [p0, others[0], others[1]])
}

fn ssn_of(person: i64) -> String {
    format!("900-10-{:04}", person - 9000000)
}

fn raw_ssn(f: &Fixture, id_row: &pii_matching::reviews::StoredReview) -> Vec<Option<String>> {
    let key = pii_matching::rows::output_key(&id_row.bad_key, &format!("reviewed-{}", id_row.row_index));
    let b = pii_matching::rows::read_parquet(std::fs::read(f.lake.join("buckets/raw").join(&key)).unwrap())
        .unwrap();
    strings(&b, "ssn")
}

async fn several_candidates_and_races(f: &Fixture) {
    let a = app_with(
        f,
        claims_auth().await,
        Settings { tls: true, lease: chrono::Duration::seconds(2), ..Settings::default() },
    );
    // a proposal with three candidates: three columns, keys 1-3, the stored weights
    let (id, persons) = with_three_candidates(f, "brookside_xlsx").await;
    let mut tab1 = Browser::as_reviewer(&a, "ana@county.gov", "lake-reviewers");
    let page = tab1.get(&format!("/proposal/{id}")).await;
    for (k, p) in persons.iter().enumerate() {
        assert!(page.body.contains(&format!("Candidate {} <small>person {p}", k + 1)), "{}", page.body);
        assert!(page.body.contains(&format!("value=\"accept:{p}\" data-key=\"{}\"", k + 1)), "key {}", k + 1);
    }
    assert!(!page.body.contains("data-key=\"4\""));
    assert!(page.body.contains(" +6.4</span>"), "the weight stored with the proposal");
    assert!(page.body.contains("weights not stored with this proposal"), "older candidates: levels only");

    // two tabs of one reviewer accept different candidates at once: one decision, its row only
    let mut tab2 = Browser { app: a.clone(), headers: tab1.headers.clone(), cookies: tab1.cookies.clone() };
    let csrf = page.csrf();
    let (f1, f2) = (
        format!("csrf={csrf}&choice=accept:{}", persons[1]),
        format!("csrf={csrf}&choice=accept:{}", persons[2]),
    );
    let path = format!("/proposal/{id}/decide");
    let (r1, r2) = tokio::join!(tab1.post(&path, &f1), tab2.post(&path, &f2));
    let mut statuses = [r1.status.as_u16(), r2.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [303, 409], "{} / {}", r1.body, r2.body);
    let rev = f.desk.get(id).await.unwrap().unwrap();
    let winner = if r1.status == StatusCode::SEE_OTHER { persons[1] } else { persons[2] };
    assert_eq!((rev.status.as_str(), rev.accepted_person_id), ("accepted", Some(winner)));
    assert_eq!(raw_ssn(f, &rev), [Some(ssn_of(winner))], "the raw row is the winner's");

    // two reviewers: ana's lease runs out, bo opens and holds it; both decide at once
    let mut ana = Browser::as_reviewer(&a, "ana@county.gov", "lake-reviewers");
    let mut bo = Browser::as_reviewer(&a, "bo@county.gov", "lake-reviewers");
    let (id2, persons2) = with_three_candidates(f, "brookside_xlsx").await;
    let pa = ana.get(&format!("/proposal/{id2}")).await;
    assert!(pa.body.contains("Yours until"));
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let pb = bo.get(&format!("/proposal/{id2}")).await;
    assert!(pb.body.contains("Yours until"), "ana's lease expired: bo takes it");
    let path = format!("/proposal/{id2}/decide");
    let (fa, fb) = (
        format!("csrf={}&choice=accept:{}", pa.csrf(), persons2[1]),
        format!("csrf={}&choice=accept:{}", pb.csrf(), persons2[2]),
    );
    let (ra, rb) = tokio::join!(ana.post(&path, &fa), bo.post(&path, &fb));
    assert_eq!((ra.status, rb.status), (StatusCode::CONFLICT, StatusCode::SEE_OTHER), "{}", ra.body);
    // refused by bo's lease, or, if bo's accept finished first, as decided by bo
    assert!(
        ra.body.contains("bo@county.gov has this proposal open")
            || ra.body.contains("already accepted by bo@county.gov"),
        "{}",
        ra.body
    );
    let rev = f.desk.get(id2).await.unwrap().unwrap();
    assert_eq!((rev.accepted_person_id, rev.reviewer.as_deref()), (Some(persons2[2]), Some("bo@county.gov")));
    assert_eq!(raw_ssn(f, &rev), [Some(ssn_of(persons2[2]))]);

    // a note over 1000 characters: a clear refusal, nothing decided
    let (id3, _) = with_three_candidates(f, "brookside_xlsx").await;
    let p3 = ana.get(&format!("/proposal/{id3}")).await;
    let r = ana
        .post(
            &format!("/proposal/{id3}/decide"),
            &format!("csrf={}&choice=reject&note={}", p3.csrf(), "n".repeat(1001)),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("at most 1000 characters; nothing was decided"), "{}", r.body);
    assert_eq!(f.desk.get(id3).await.unwrap().unwrap().status, "pending");
    let r = ana
        .post(
            &format!("/proposal/{id3}/decide"),
            &format!("csrf={}&choice=reject&note={}", p3.csrf(), "n".repeat(1000)),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

async fn dataset_filter_and_paging(f: &Fixture) {
    let a = app_with(f, claims_auth().await, Settings { tls: true, per_page: 3, ..Settings::default() });
    let mut ana = Browser::as_reviewer(&a, "ana@county.gov", "lake-reviewers");
    let ids = |body: &str| -> Vec<i64> {
        body.split("class=\"open\">").skip(1).map(|s| s.split('<').next().unwrap().parse().unwrap()).collect()
    };
    let all = ana.get("/").await;
    let total: i64 =
        f.desk.list(pii_matching::reviews::ReviewStatus::Pending, 1000).await.unwrap().len() as i64;
    assert!(all.body.contains(&format!("{total} shown of {total} pending")), "{}", all.body);
    // keyset paging: follow the newer-page links to the end, then the older-page links back
    let pages = (total + 2) / 3;
    let mut seen: Vec<Vec<i64>> = Vec::new();
    let mut at = "/".to_string();
    for page in 1..=pages {
        let r = ana.get(&at).await;
        assert_eq!(r.status, StatusCode::OK, "{at}: {}", r.body);
        assert!(r.body.contains(&format!("page {page} of {pages}")), "{at}: {}", r.body);
        let got = ids(&r.body);
        assert_eq!(got.len() as i64, (total - 3 * (page - 1)).min(3), "{at}");
        assert_eq!(r.body.contains("rel=\"prev\""), page > 1, "{at}");
        seen.push(got);
        match link(&r.body, "next") {
            Some(next) => {
                assert!(page < pages, "no page after the last");
                assert!(next.contains("after=") && next.contains(&format!("page={}", page + 1)), "{next}");
                at = next;
            }
            None => assert_eq!(page, pages, "a newer-page link on every page but the last"),
        }
    }
    for page in (1..pages).rev() {
        at = link(&ana.get(&at).await.body, "prev").expect("an older-page link");
        assert!(at.contains("before="), "{at}");
        let r = ana.get(&at).await;
        assert!(r.body.contains(&format!("page {page} of {pages}")), "{at}: {}", r.body);
        assert_eq!(ids(&r.body), seen[page as usize - 1], "the same page on the way back");
    }
    let seen: Vec<i64> = seen.concat();
    let want: Vec<i64> = f
        .desk
        .list(pii_matching::reviews::ReviewStatus::Pending, 1000)
        .await
        .unwrap()
        .iter()
        .map(|r| r.review_id)
        .collect();
    assert_eq!(seen, want, "the pages together: every pending proposal once, oldest first");
    let enc = ana.get("/?dataset=encounter").await;
    let n_enc = f
        .desk
        .list(pii_matching::reviews::ReviewStatus::Pending, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.dataset == "encounter")
        .count();
    assert!(enc.body.contains(&format!("{n_enc} shown of {total} pending")), "{}", enc.body);
    // a filter stays on every page link: its pages hold its rows only, each once, in order
    let mut enc_ids = ids(&enc.body);
    let mut next = link(&enc.body, "next");
    while let Some(at) = next {
        assert!(at.starts_with("/?dataset=encounter&"), "{at}");
        let r = ana.get(&at).await;
        enc_ids.extend(ids(&r.body));
        next = link(&r.body, "next");
    }
    assert_eq!(enc_ids.len(), n_enc, "every encounter proposal once");
    let mut sorted = enc_ids.clone();
    sorted.sort_by_key(|id| want.iter().position(|w| w == id).unwrap());
    assert_eq!(enc_ids, sorted, "oldest first across pages");
    // page links are untrusted input: anything but a cursor the queue made is a clear 400
    for bad in
        ["/?after=abc", "/?after=1_2&before=3", "/?after=12345678901234567890", "/?before=-_1", "/?page=0"]
    {
        let r = ana.get(bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
        assert!(r.body.contains("Bad page link") || r.body.contains("Bad filter"), "{bad}: {}", r.body);
    }
    // a bookmark with a bare page number (no cursor) opens the first page
    assert!(ana.get("/?page=7").await.body.contains(&format!("page 1 of {pages}")));
    let none = ana.get("/?dataset=no_such_dataset").await;
    assert!(
        none.body.contains(&format!("0 shown of {total} pending")) && none.body.contains("Nothing pending")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_candidates_races_and_paging_against_the_local_store() {
    let f = local_fixture();
    dataset_filter_and_paging(&f).await;
    several_candidates_and_races(&f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_candidates_races_and_paging_against_postgresql() {
    let (f, _) = pg_fixture().await;
    dataset_filter_and_paging(&f).await;
    several_candidates_and_races(&f).await;
}

/// A lease asked while its holder takes and releases it is granted or held, never an error: the
/// holder's release can fall between the store's upsert and its read (a reviewer's 500 once).
async fn lease_while_the_holder_releases(f: &Fixture) {
    let (id, _) = with_three_candidates(f, "brookside_xlsx").await;
    let ttl = chrono::Duration::seconds(60);
    let store = f.store.clone();
    let holder = tokio::spawn(async move {
        for _ in 0..300 {
            store.lease(id, "bo@county.gov", ttl).await.unwrap();
            store.release(id, "bo@county.gov").await.unwrap();
        }
    });
    let (mut granted, mut held) = (0, 0);
    for i in 0..300 {
        match f.store.lease(id, "ana@county.gov", ttl).await {
            Ok(Lease::Granted { .. }) => granted += 1,
            Ok(Lease::Held { by, .. }) => {
                assert_eq!(by, "bo@county.gov");
                held += 1
            }
            Err(e) => panic!("lease {i}: {e}"),
        }
        f.store.release(id, "ana@county.gov").await.unwrap();
    }
    holder.await.unwrap();
    assert_eq!(granted + held, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_asked_while_its_holder_releases_it_is_never_an_error() {
    lease_while_the_holder_releases(&local_fixture()).await;
    lease_while_the_holder_releases(&pg_fixture().await.0).await;
}

/// `lake review serve` as a user starts it; killed when the test ends.
struct Served {
    child: std::process::Child,
    addr: String,
    login: String,
    log: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(l: &Path, extra: &[&str], log: PathBuf) -> Served {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(["review", "serve", "--lake", l.to_str().unwrap(), "--port", "0", "--reviewer", "ana"])
        .args(extra)
        .env_remove("LAKE_DATABASE_URL")
        .env_remove("LAKE_DB_SECRET_ARN")
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let login = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_default().to_string();
    assert!(login.starts_with("http://127.0.0.1:") && login.contains("/login?token="), "{line}");
    let addr = login.trim_start_matches("http://").split('/').next().unwrap().to_string();
    let path = login.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap();
    Served { child, addr, login: path, log }
}

/// One HTTP/1.1 request over a plain socket, as a browser sends it: status, headers, body.
async fn http(
    addr: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    let body = form.unwrap_or("");
    if form.is_some() {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap_or("0").parse().unwrap();
    (status, head.to_string(), body.to_string())
}

fn session_cookie(head: &str) -> String {
    head.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie: rw_session="))
        .map(|l| l["set-cookie: ".len()..].split(';').next().unwrap().to_string())
        .expect("a session cookie")
}

fn form_csrf(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").unwrap() + 19;
    body[at..].split('"').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lake_review_serve_says_it_is_local_signs_in_once_and_logs_no_values() {
    let f = local_fixture();
    let s = serve(&f.lake, &[], f.lake.join("serve.log"));
    let (status, head, _) = http(&s.addr, "GET", &s.login, None, None).await;
    assert_eq!(status, 303);
    let c = session_cookie(&head);
    let (status, _, queue) = http(&s.addr, "GET", "/?source=valley_clinic", Some(&c), None).await;
    assert_eq!(status, 200);
    assert!(
        queue.contains(
            "Local review server on 127.0.0.1: you are ana (local identity, not the county sign-in)"
        ),
        "the banner: {queue}"
    );
    assert!(queue.contains("ana (reviewer)"));
    let (status, _, body) = http(&s.addr, "GET", &s.login, None, None).await;
    assert_eq!(status, 401, "the printed link signs in once: {body}");

    // a reviewer's work: open, reveal the SSN and the phone, accept with a note
    let at = queue.find("href=\"/proposal/").unwrap() + 16;
    let id: i64 = queue[at..].split('"').next().unwrap().parse().unwrap();
    let (_, _, page) = http(&s.addr, "GET", &format!("/proposal/{id}"), Some(&c), None).await;
    let csrf = form_csrf(&page);
    for field in ["ssn", "phone"] {
        let form = format!("csrf={csrf}&field={field}");
        let (status, _, _) =
            http(&s.addr, "POST", &format!("/proposal/{id}/reveal"), Some(&c), Some(&form)).await;
        assert_eq!(status, 303);
    }
    let (_, _, page) = http(&s.addr, "GET", &format!("/proposal/{id}"), Some(&c), None).await;
    assert!(page.contains("900-10-0011") && page.contains("WILSON"), "values on the page");
    let form = format!("csrf={csrf}&choice=accept:9000011&note=checked");
    let (status, _, body) =
        http(&s.addr, "POST", &format!("/proposal/{id}/decide"), Some(&c), Some(&form)).await;
    assert_eq!(status, 303, "{body}");
    let (status, _, _) = http(&s.addr, "GET", "/proposal/999999", Some(&c), None).await;
    assert_eq!(status, 404);
    let log_path = s.log.clone();
    drop(s);

    // the server's log (debug level): what happened, by id and field name, never a value
    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(log.contains("field revealed") && log.contains("proposal decided"), "{log}");
    assert!(log.contains(&format!("review_id={id}")), "{log}");
    let values = ["900-10-0011", "WILSON", "KOWALSKI", "774-656-7549", "VC-3000000167"];
    for v in values {
        assert!(!log.contains(v), "{v} in the server log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lake_review_serve_reads_postgresql_with_database_url() {
    let (f, db_url) = pg_fixture().await;
    let Backend::Pg(db) = &f.backend else { unreachable!() };
    let s = serve(&f.lake, &["--database-url", &db_url], f.lake.join("serve.log"));
    let (status, head, _) = http(&s.addr, "GET", &s.login, None, None).await;
    assert_eq!(status, 303);
    let c = session_cookie(&head);
    let (status, _, queue) = http(&s.addr, "GET", "/", Some(&c), None).await;
    assert_eq!(status, 200, "{queue}");
    assert!(queue.contains("8 shown of 8 pending"), "{queue}");
    assert!(queue.contains("you are ana (local identity"), "{queue}");
    let id: i64 = sqlx::query_scalar("SELECT min(review_id) FROM match_review WHERE status = 'pending'")
        .fetch_one(&db.pool())
        .await
        .unwrap();
    let (_, _, page) = http(&s.addr, "GET", &format!("/proposal/{id}"), Some(&c), None).await;
    let form = format!("csrf={}&choice=reject", form_csrf(&page));
    let (status, _, _) =
        http(&s.addr, "POST", &format!("/proposal/{id}/decide"), Some(&c), Some(&form)).await;
    assert_eq!(status, 303);
    let (st, by): (String, Option<String>) =
        sqlx::query_as("SELECT status, reviewer FROM match_review WHERE review_id = $1")
            .bind(id)
            .fetch_one(&db.pool())
            .await
            .unwrap();
    assert_eq!((st.as_str(), by.as_deref()), ("rejected", Some("ana")));
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM review_audit WHERE review_id = $1 AND action = 'reject'")
            .bind(id)
            .fetch_one(&db.pool())
            .await
            .unwrap();
    assert_eq!(n, 1, "the audit row is in PostgreSQL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accept_whose_row_cannot_be_written_stays_accepted_and_lake_review_complete_writes_it() {
    use layer::faults::{Faults, Faulty, When};
    let f = local_fixture();
    let faults = Faults::new();
    faults.inject("store.put", 0, 1, When::Before, true);
    let mut deps = lake::embedded::local_deps(&f.lake, None).0;
    deps.store = Arc::new(Faulty { inner: deps.store.clone(), faults: faults.clone() });
    let a = Arc::new(App {
        desk: f.desk.clone(),
        store: f.store.clone(),
        deps,
        auth: claims_auth().await,
        settings: Settings { tls: true, ..Settings::default() },
    });
    let mut ana = Browser::as_reviewer(&a, "ana@county.gov", "lake-reviewers");
    let id = id_of(&mut ana, "valley_clinic").await;
    let page = ana.get(&format!("/proposal/{id}")).await;
    let form = format!("csrf={}&choice=accept:9000011", page.csrf());
    let r = ana.post(&format!("/proposal/{id}/decide"), &form).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
    assert!(r.body.contains("Accepted, row not yet written"), "{}", r.body);
    assert!(r.body.contains(&format!("lake review complete {id}")), "{}", r.body);
    assert!(!r.body.contains("900-10-0011") && !r.body.contains("WILSON"), "no values in the error");
    assert_eq!(faults.fired(), 1);
    let rev = f.desk.get(id).await.unwrap().unwrap();
    assert_eq!((rev.status.as_str(), rev.accepted_person_id), ("accepted", Some(9000011)));
    let key = pii_matching::rows::output_key(&rev.bad_key, &format!("reviewed-{}", rev.row_index));
    let raw = f.lake.join("buckets/raw").join(&key);
    assert!(!raw.exists(), "nothing written yet");
    let trail = f.store.audit_since(chrono::Utc::now() - chrono::Duration::hours(1)).await.unwrap();
    assert!(
        trail.iter().any(|e| e.action == Action::Accept && e.review_id == id && e.person_id == Some(9000011)),
        "the decision is in the audit trail"
    );
    // a second accept is refused (decided), it does not write either
    let r = ana.post(&format!("/proposal/{id}/decide"), &form).await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    let complete = || {
        Command::new(env!("CARGO_BIN_EXE_lake"))
            .args(["review", "complete", &id.to_string(), "--lake", f.lake.to_str().unwrap()])
            .env_remove("LAKE_DATABASE_URL")
            .env_remove("LAKE_DB_SECRET_ARN")
            .output()
            .unwrap()
    };
    let o = complete();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("person 9000011; completed row written to raw/"));
    let bytes = std::fs::read(&raw).unwrap();
    let b = pii_matching::rows::read_parquet(bytes.clone()).unwrap();
    assert_eq!(strings(&b, "ssn"), [Some("900-10-0011".to_string())]);
    let o = complete();
    assert!(o.status.success());
    assert_eq!(std::fs::read(&raw).unwrap(), bytes, "a repeat writes the same row");
    // a pending proposal has nothing to complete
    let other = id_of(&mut ana, "st_marys").await;
    let o = Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(["review", "complete", &other.to_string(), "--lake", f.lake.to_str().unwrap()])
        .env_remove("LAKE_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is pending, not accepted"), "{:?}", o);
}
