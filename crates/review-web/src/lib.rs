//! The reviewers' web application: data scientists decide proposed person matches in a
//! browser. One axum router, served two ways: `lake review serve` on a laptop (127.0.0.1, the
//! embedded lake's review store or PostgreSQL, one local identity) and the `review-web` Lambda
//! behind the county's authenticating load balancer (Aurora as `lake_reviewer`).
//!
//! Boundaries: the review rules (what an accept writes, who may decide what) are the
//! `pii_matching::review` library's, the same functions `lake review` calls; this crate adds the
//! pages, identity, leases and the audit trail (the [`store::WebStore`] port, with a file-backed
//! and a PostgreSQL adapter). Server-rendered HTML, stylesheet and script embedded in the binary
//! (no CDN). Every route but `/health` needs an authenticated reviewer; every response carries
//! `Cache-Control: no-store`, a self-only Content-Security-Policy and `frame-ancestors 'none'`;
//! HSTS behind TLS; request bodies are capped. Logs carry proposal ids and field names, never
//! values.

pub mod alb;
pub mod auth;
mod html;
pub mod local;
mod pages;
pub mod pg;
mod routes;
pub mod store;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use layer::pipeline::Deps;
use pii_matching::review::ReviewDesk;

pub use alb::AlbKeys;
pub use auth::{Auth, ClaimsAuth, Identity, LocalAuth, Role};
pub use store::WebStore;

/// How the application behaves.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long opening a proposal holds it for the reviewer.
    pub lease: chrono::Duration,
    /// Served over TLS (the Lambda behind the load balancer): HSTS and Secure cookies.
    pub tls: bool,
    /// Shown on every page (the local server says it is local and who is signed in).
    pub banner: Option<String>,
    pub per_page: i64,
    /// Largest request body accepted (forms are small).
    pub body_limit: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lease: chrono::Duration::minutes(5),
            tls: false,
            banner: None,
            per_page: 50,
            body_limit: 16 * 1024,
        }
    }
}

/// Everything a request needs.
pub struct App {
    /// The reviews and persons (the same port `lake review` decides through).
    pub desk: Arc<dyn ReviewDesk>,
    /// Queue view, leases and audit.
    pub store: Arc<dyn WebStore>,
    /// Where bad rows are read and accepted rows completed into.
    pub deps: Deps,
    pub auth: Auth,
    pub settings: Settings,
}

const CSS: &str = include_str!("../assets/app.css");
const JS: &str = include_str!("../assets/app.js");

async fn css(_who: routes::Who) -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

async fn js(_who: routes::Who) -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], JS).into_response()
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// Security headers on every response; in claims mode a CSRF cookie for a browser without one.
async fn guard(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let mut minted = None;
    if matches!(app.auth, Auth::Claims(_)) && auth::cookie(req.headers(), auth::CSRF_COOKIE).is_none() {
        let t = auth::random_token();
        req.extensions_mut().insert(routes::MintedCsrf(t.clone()));
        minted = Some(t);
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::CACHE_CONTROL, "no-store");
    set(h, header::PRAGMA, "no-cache");
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    if app.settings.tls {
        set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000; includeSubDomains");
    }
    if let Some(t) = minted {
        // Lax: the return from the identity provider (a cross-site navigation) carries it, so
        // open tabs keep their token (auth.rs)
        let c = format!("{}={t}; HttpOnly; SameSite=Lax; Path=/; Secure", auth::CSRF_COOKIE);
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    res
}

/// The application's routes.
pub fn router(app: Arc<App>) -> Router {
    let limit = app.settings.body_limit;
    Router::new()
        .route("/health", get(routes::health))
        .route("/login", get(routes::login))
        .route("/", get(routes::queue))
        .route("/proposal/{id}", get(routes::proposal))
        .route("/proposal/{id}/reveal", post(routes::reveal))
        .route("/proposal/{id}/decide", post(routes::decide))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// Binds the local server: 127.0.0.1 only (never another interface), `port` 0 for any free one.
pub async fn bind_local(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).await
}

/// Serves the application on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, app: Arc<App>) -> std::io::Result<()> {
    axum::serve(listener, router(app)).await
}
