//! The handlers. Each authenticated one takes a [`Who`] (401/403 before any work), validates the
//! proposal id (404 for anything that is not a known proposal), and logs ids only.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::Utc;
use pii_matching::review::{self, BadRowCache, ReviewError, PENDING};
use pii_matching::reviews::StoredReview;
use serde::Deserialize;

use crate::auth::{cookie, same_secret, Auth, Denied, Identity, Role, CSRF_COOKIE, SESSION_COOKIE};
use crate::html::{layout, MASKED};
use crate::pages::{self, ProposalView};
use crate::store::{Action, AuditEvent, Cursor, Lease, Position, QueueQuery};
use crate::App;

/// An error page with its status.
pub struct Page(pub StatusCode, pub String, pub String);

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let Page(status, title, body) = self;
        let html = layout(&title, None, None, &pages::message(&title, &body));
        (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
    }
}

fn fail(status: StatusCode, title: &str, text: impl Into<String>) -> Page {
    Page(status, title.into(), text.into())
}

fn internal(what: &str, e: impl std::fmt::Display) -> Page {
    tracing::error!(what, error = %e, "review web request failed");
    fail(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The request failed; the server log has the details.",
    )
}

/// The CSRF token a middleware minted for a request without one (claims mode).
#[derive(Clone)]
pub struct MintedCsrf(pub String);

/// The authenticated person and the CSRF token their forms carry.
pub struct Who {
    pub id: Identity,
    pub csrf: String,
}

impl FromRequestParts<Arc<App>> for Who {
    type Rejection = Page;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Page> {
        let denied = |d: Denied| match d {
            Denied::Unauthenticated(why) => {
                fail(StatusCode::UNAUTHORIZED, "Sign-in required", format!("{why}: sign in again."))
            }
            Denied::NoGroup => fail(
                StatusCode::FORBIDDEN,
                "Not allowed",
                "You are in neither the reviewer nor the viewer group.",
            ),
        };
        match &app.auth {
            Auth::Local(l) => {
                let csrf = l.session(&parts.headers).map_err(denied)?;
                Ok(Who { id: l.identity.clone(), csrf })
            }
            Auth::Claims(c) => {
                let id = c.identify(&parts.headers).await.map_err(denied)?;
                let csrf = cookie(&parts.headers, CSRF_COOKIE)
                    .map(String::from)
                    .or_else(|| parts.extensions.get::<MintedCsrf>().map(|m| m.0.clone()))
                    .unwrap_or_default();
                Ok(Who { id, csrf })
            }
        }
    }
}

impl Who {
    fn banner(&self, app: &App) -> Option<String> {
        app.settings.banner.clone()
    }

    fn label(&self) -> String {
        match self.id.role {
            Role::Reviewer => format!("{} (reviewer)", self.id.name),
            Role::Viewer => format!("{} (viewer: look only)", self.id.name),
        }
    }

    fn page(&self, app: &App, title: &str, body: &str) -> Response {
        let html = layout(title, self.banner(app).as_deref(), Some(&self.label()), body);
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
    }

    /// A POST must repeat the token (403 otherwise).
    fn check_csrf(&self, sent: Option<&str>) -> Result<(), Page> {
        match sent {
            Some(s) if !self.csrf.is_empty() && same_secret(s, &self.csrf) => Ok(()),
            _ => Err(fail(
                StatusCode::FORBIDDEN,
                "Form expired",
                "The form's security token is missing or stale: reload the page and try again.",
            )),
        }
    }

    fn must_decide(&self) -> Result<(), Page> {
        match self.id.role {
            Role::Reviewer => Ok(()),
            Role::Viewer => Err(fail(
                StatusCode::FORBIDDEN,
                "Not allowed",
                "Viewers can look at proposals but not decide them.",
            )),
        }
    }
}

async fn audit(
    app: &App,
    who: &Who,
    action: Action,
    id: i64,
    field: Option<&str>,
    person: Option<i64>,
    note: Option<&str>,
) -> Result<(), Page> {
    let e = AuditEvent {
        at: Utc::now(),
        reviewer: who.id.name.clone(),
        action,
        review_id: id,
        field: field.map(String::from),
        person_id: person,
        note: note.map(str::trim).filter(|n| !n.is_empty()).map(String::from),
    };
    app.store.append(&e).await.map_err(|e| internal("audit", e))
}

/// The proposal behind a path id: anything but a known proposal's id is 404.
async fn proposal_of(app: &App, raw: &str) -> Result<StoredReview, Page> {
    let not_found = || fail(StatusCode::NOT_FOUND, "No such proposal", "There is no proposal with this id.");
    if raw.is_empty() || raw.len() > 18 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_found());
    }
    let id: i64 = raw.parse().map_err(|_| not_found())?;
    match app.desk.get(id).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(not_found()),
        Err(e) => Err(internal("get proposal", e)),
    }
}

pub async fn health() -> &'static str {
    "ok"
}

#[derive(Deserialize)]
pub struct LoginQuery {
    token: Option<String>,
}

/// Local mode: the login link starts a session.
pub async fn login(State(app): State<Arc<App>>, Query(q): Query<LoginQuery>) -> Response {
    let Auth::Local(l) = &app.auth else {
        return fail(StatusCode::NOT_FOUND, "Not here", "Sign in through the county's identity provider.")
            .into_response();
    };
    let Some(sid) = q.token.as_deref().and_then(|t| l.login(t)) else {
        return fail(StatusCode::UNAUTHORIZED, "Sign-in required", "This login link is not valid.")
            .into_response();
    };
    let secure = if app.settings.tls { "; Secure" } else { "" };
    let c = format!("{SESSION_COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/{secure}");
    ([(header::SET_COOKIE, c)], Redirect::to("/")).into_response()
}

#[derive(Deserialize, Default)]
pub struct QueueParams {
    source: Option<String>,
    dataset: Option<String>,
    min: Option<String>,
    max: Option<String>,
    /// The page's number as its link gave it (1-based; a label only).
    page: Option<String>,
    /// The last row of the previous page (next page) ...
    after: Option<String>,
    /// ... or the first row of the following page (previous page).
    before: Option<String>,
}

fn parse_query(p: QueueParams, per_page: i64) -> Result<QueueQuery, Page> {
    let bad = || fail(StatusCode::BAD_REQUEST, "Bad filter", "Scores and pages are numbers.");
    let bad_link = || {
        fail(
            StatusCode::BAD_REQUEST,
            "Bad page link",
            "This page link is not one the queue made: start from the queue.",
        )
    };
    let num = |v: Option<String>| -> Result<Option<f64>, Page> {
        match v.filter(|s| !s.trim().is_empty()) {
            None => Ok(None),
            Some(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()).map(Some).ok_or_else(bad),
        }
    };
    let text = |v: Option<String>| v.filter(|s| !s.is_empty() && s.len() <= 200);
    let page = match p.page.filter(|s| !s.is_empty()) {
        None => 0,
        Some(s) => s.parse::<i64>().ok().filter(|n| (1..=1_000_000).contains(n)).ok_or_else(bad)? - 1,
    };
    let cursor = |v: Option<String>| -> Result<Option<Cursor>, Page> {
        v.filter(|s| !s.is_empty()).map(|s| Cursor::parse(&s).ok_or_else(bad_link)).transpose()
    };
    let at = match (cursor(p.after)?, cursor(p.before)?) {
        (None, None) => Position::First,
        (Some(c), None) => Position::After(c),
        (None, Some(c)) => Position::Before(c),
        (Some(_), Some(_)) => return Err(bad_link()),
    };
    Ok(QueueQuery {
        source: text(p.source),
        dataset: text(p.dataset),
        min_score: num(p.min)?,
        max_score: num(p.max)?,
        at,
        page,
        per_page,
    })
}

pub async fn queue(
    State(app): State<Arc<App>>,
    who: Who,
    Query(p): Query<QueueParams>,
) -> Result<Response, Page> {
    let q = parse_query(p, app.settings.per_page)?;
    let page = app.store.queue(&q, &who.id.name).await.map_err(|e| internal("queue", e))?;
    Ok(who.page(&app, "Queue", &pages::queue(&page, &q)))
}

pub async fn proposal(
    State(app): State<Arc<App>>,
    who: Who,
    Path(raw): Path<String>,
) -> Result<Response, Page> {
    let r = proposal_of(&app, &raw).await?;
    let id = r.review_id;
    let decided = app.store.decided(id).await.map_err(|e| internal("decided", e))?;
    let lease = if r.status == PENDING && who.id.role == Role::Reviewer {
        Some(app.store.lease(id, &who.id.name, app.settings.lease).await.map_err(|e| internal("lease", e))?)
    } else {
        None
    };
    audit(&app, &who, Action::View, id, None, None, None).await?;
    let row = BadRowCache::default().row(&app.deps, &r).await;
    let mut cands = Vec::new();
    for c in review::candidates(&r) {
        let p = app.desk.person(c.person_id).await.map_err(|e| internal("person", e))?;
        cands.push((c, p));
    }
    let revealed = app.store.revealed(id, &who.id.name).await.map_err(|e| internal("revealed", e))?;
    let prev = app.store.neighbour(id, &who.id.name, false).await.map_err(|e| internal("prev", e))?;
    let next = app.store.neighbour(id, &who.id.name, true).await.map_err(|e| internal("next", e))?;
    let view = ProposalView {
        review: &r,
        record: row.as_ref().map(|(rec, _)| rec),
        missing: row.as_ref().map(|(_, m)| m.as_slice()),
        candidates: &cands,
        revealed: &revealed,
        lease: lease.as_ref(),
        decided: decided.as_ref(),
        can_decide: r.status == PENDING
            && who.id.role == Role::Reviewer
            && matches!(lease, Some(Lease::Granted { .. })),
        csrf: &who.csrf,
        prev,
        next,
    };
    Ok(who.page(&app, &format!("Proposal {id}"), &view.render()))
}

#[derive(Deserialize)]
pub struct RevealForm {
    csrf: Option<String>,
    field: Option<String>,
}

pub async fn reveal(
    State(app): State<Arc<App>>,
    who: Who,
    Path(raw): Path<String>,
    Form(f): Form<RevealForm>,
) -> Result<Response, Page> {
    who.check_csrf(f.csrf.as_deref())?;
    let r = proposal_of(&app, &raw).await?;
    let field =
        f.field.as_deref().filter(|x| MASKED.contains(x)).ok_or_else(|| {
            fail(StatusCode::BAD_REQUEST, "Bad field", "Only masked fields can be revealed.")
        })?;
    audit(&app, &who, Action::Reveal, r.review_id, Some(field), None, None).await?;
    tracing::info!(review_id = r.review_id, field, "field revealed");
    Ok(Redirect::to(&format!("/proposal/{}#f-{field}", r.review_id)).into_response())
}

#[derive(Deserialize)]
pub struct DecideForm {
    csrf: Option<String>,
    choice: Option<String>,
    note: Option<String>,
}

/// The longest note a decision keeps (the form's `maxlength`).
const MAX_NOTE: usize = 1000;

enum Choice {
    Accept(i64),
    Reject,
    Skip,
}

fn choice(s: Option<&str>) -> Result<Choice, Page> {
    let bad = || fail(StatusCode::BAD_REQUEST, "Bad choice", "Accept a candidate, reject all, or skip.");
    match s {
        Some("reject") => Ok(Choice::Reject),
        Some("skip") => Ok(Choice::Skip),
        Some(c) => c.strip_prefix("accept:").and_then(|p| p.parse().ok()).map(Choice::Accept).ok_or_else(bad),
        None => Err(bad()),
    }
}

/// 409 with who decided and when.
async fn conflict(app: &App, id: i64) -> Page {
    match app.store.decided(id).await {
        Ok(Some(d)) => Page(StatusCode::CONFLICT, "Already decided".into(), pages_text(id, &d)),
        Ok(None) => {
            fail(StatusCode::CONFLICT, "Already decided", format!("Proposal {id} was decided meanwhile."))
        }
        Err(e) => internal("decided", e),
    }
}

fn pages_text(id: i64, d: &crate::store::Decided) -> String {
    let at =
        d.at.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "an unrecorded time".into());
    format!("Proposal {id} was already {} by {} at {at}; nothing changed.", d.status, d.by)
}

async fn next_url(app: &App, id: i64, me: &str) -> String {
    match app.store.neighbour(id, me, true).await {
        Ok(Some(n)) => format!("/proposal/{n}"),
        _ => "/".into(),
    }
}

pub async fn decide(
    State(app): State<Arc<App>>,
    who: Who,
    Path(raw): Path<String>,
    Form(f): Form<DecideForm>,
) -> Result<Response, Page> {
    who.check_csrf(f.csrf.as_deref())?;
    who.must_decide()?;
    let r = proposal_of(&app, &raw).await?;
    let id = r.review_id;
    let c = choice(f.choice.as_deref())?;
    let note = f.note.as_deref();
    if note.is_some_and(|n| n.chars().count() > MAX_NOTE) {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "Note too long",
            format!(
                "A note holds at most {MAX_NOTE} characters; nothing was decided. Shorten it and try again."
            ),
        ));
    }
    if r.status != PENDING {
        return Err(conflict(&app, id).await);
    }
    if let Lease::Held { by, until } =
        app.store.lease(id, &who.id.name, app.settings.lease).await.map_err(|e| internal("lease", e))?
    {
        let text = format!(
            "{by} has this proposal open until {}; it is theirs to decide.",
            until.format("%H:%M:%S UTC")
        );
        return Err(fail(StatusCode::CONFLICT, "Taken by someone else", text));
    }
    let (action, person) = match c {
        Choice::Skip => (Action::Skip, None),
        Choice::Reject => match review::reject(app.desk.as_ref(), id, &who.id.name).await {
            Ok(_) => (Action::Reject, None),
            Err(ReviewError::AlreadyDecided { .. }) => return Err(conflict(&app, id).await),
            Err(e) => return Err(internal("reject", e)),
        },
        Choice::Accept(pid) => match accept(&app, &who, id, pid, note).await {
            Ok(()) => (Action::Accept, Some(pid)),
            Err(e) => return Err(e),
        },
    };
    audit(&app, &who, action, id, None, person, note).await?;
    let _ = app.store.release(id, &who.id.name).await;
    tracing::info!(review_id = id, action = action.as_str(), "proposal decided");
    Ok(Redirect::to(&next_url(&app, id, &who.id.name).await).into_response())
}

/// Accept through the same library steps as `lake review accept`: choose, then complete.
async fn accept(app: &App, who: &Who, id: i64, person: i64, note: Option<&str>) -> Result<(), Page> {
    let refused = |e: ReviewError| match e {
        ReviewError::AlreadyDecided { .. } | ReviewError::DecidedMeanwhile { .. } => None,
        // decided, row not yet written: say so (ids only), ops complete it with the CLI
        e @ ReviewError::NotCompleted { .. } => {
            tracing::error!(review_id = id, error = %e, "accepted, completed row not written");
            Some(fail(StatusCode::INTERNAL_SERVER_ERROR, "Accepted, row not yet written", e.to_string()))
        }
        ReviewError::NotACandidate { .. } | ReviewError::NoCandidate | ReviewError::UnknownPerson(_) => {
            Some(fail(StatusCode::BAD_REQUEST, "Not a candidate", e.to_string()))
        }
        e => Some(internal("accept", e)),
    };
    let (r, p) = match review::choose(app.desk.as_ref(), id, Some(person)).await {
        Ok(x) => x,
        Err(e) => {
            return Err(match refused(e) {
                Some(p) => p,
                None => conflict(app, id).await,
            })
        }
    };
    match review::complete(app.desk.as_ref(), &app.deps, &r, &p, &who.id.name).await {
        Ok(_) => Ok(()),
        Err(e @ ReviewError::NotCompleted { .. }) => {
            // the decision is recorded: so is the audit row, before the error page
            audit(app, who, Action::Accept, id, None, Some(person), note).await?;
            Err(refused(e).unwrap_or_else(|| internal("accept", "not completed")))
        }
        Err(e) => Err(match refused(e) {
            Some(p) => p,
            None => conflict(app, id).await,
        }),
    }
}

pub async fn not_found(_who: Who) -> Page {
    fail(StatusCode::NOT_FOUND, "Not found", "There is no such page.")
}
