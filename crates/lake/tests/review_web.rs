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
use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use pii_matching::handler::MatchDeps;
use pii_matching::pg::{copy_people_csv, Db, PgIndex, PgReviews};
use pii_matching::review::ReviewDesk;
use pii_matching::review_store::LocalDesk;
use pii_matching::Rules;
use review_web::store::{Action, WebStore};
use review_web::{App, Auth, ClaimsAuth, LocalAuth, Settings};
use tower::ServiceExt;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn database_url() -> Option<String> {
    let url = std::env::var("LAKE_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty());
    if url.is_none() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "LAKE_TEST_DATABASE_URL is not set under CI=true: these tests need a real PostgreSQL"
        );
        eprintln!("SKIPPED: LAKE_TEST_DATABASE_URL is not set (`bash scripts/test.sh` starts PostgreSQL)");
    }
    url
}

/// `lake run` over the samples into `l` (with `--people`: proposals in the embedded store).
fn lake_run(l: &Path, people: bool) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lake"));
    c.args(["run", root().join("samples").to_str().unwrap(), "--lake", l.to_str().unwrap()])
        .args(["--contracts", root().join("config/sources").to_str().unwrap()]);
    if people {
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

async fn pg_fixture(url: &str) -> Fixture {
    let admin = Db::from_url(url, 1).unwrap();
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "lake_web_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
    );
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin.pool()).await.unwrap();
    let db = Arc::new(Db::from_url(&format!("{}/{name}", url.rsplit_once('/').unwrap().0), 4).unwrap());
    db.migrate().await.unwrap();
    copy_people_csv(&db, &root().join("config/people.example.csv")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let l = dir.path().join("lake");
    lake_run(&l, false);
    let (deps, _) = lake::embedded::local_deps(&l, None);
    let m = MatchDeps {
        pipeline: deps,
        index: Arc::new(PgIndex { db: db.clone(), chunk: 1024 }),
        reviews: Arc::new(PgReviews { db: db.clone() }),
        matcher: Arc::new(pii_matching::rules_store::ActiveRules::builtin()),
    };
    lake::embedded::drain_matching(&m).await.unwrap();
    Fixture {
        _dir: dir,
        lake: l,
        desk: Arc::new(PgReviews { db: db.clone() }),
        store: Arc::new(review_web::pg::PgWebStore::new(db.clone())),
        backend: Backend::Pg(db),
    }
}

fn claims_auth() -> Auth {
    Auth::Claims(ClaimsAuth {
        header: "x-amzn-oidc-data".into(),
        name_claim: "email".into(),
        groups_claim: "groups".into(),
        reviewer_group: "lake-reviewers".into(),
        viewer_group: "lake-viewers".into(),
    })
}

fn app(f: &Fixture, auth: Auth, tls: bool) -> Arc<App> {
    Arc::new(App {
        desk: f.desk.clone(),
        store: f.store.clone(),
        deps: lake::embedded::local_deps(&f.lake, None).0,
        auth,
        rules: Rules::builtin(),
        settings: Settings { tls, ..Settings::default() },
    })
}

fn b64url(b: &[u8]) -> String {
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

/// The claims JWT a load balancer would forward for `email` in `group`.
fn oidc(email: &str, group: &str, exp_in: i64) -> String {
    let exp = chrono::Utc::now().timestamp() + exp_in;
    let payload = serde_json::json!({"sub": "s-1", "email": email, "groups": [group], "exp": exp});
    format!("{}.{}.sig", b64url(br#"{"alg":"ES256"}"#), b64url(payload.to_string().as_bytes()))
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
    let a = app(f, claims_auth(), true);
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
    let plain = app(f, claims_auth(), false);
    let r = Browser::as_reviewer(&plain, "ana@county.gov", "lake-reviewers").get("/").await;
    assert!(r.headers.get("strict-transport-security").is_none(), "no HSTS without TLS");
}

async fn mask_reveal_decide(f: &Fixture) {
    let a = app(f, claims_auth(), true);
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
    let Some(url) = database_url() else { return };
    let f = pg_fixture(&url).await;
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
    // a session's CSRF token works only in that session
    let p = b.get("/proposal/1").await;
    let mut other = Browser::new(&a, &[]);
    other.get(&format!("/login?token={token}")).await;
    let r = other.post("/proposal/1/decide", &format!("csrf={}&choice=skip", p.csrf())).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    std::thread::sleep(std::time::Duration::from_millis(400));
    let r = b.get("/").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("session expired"));
}
