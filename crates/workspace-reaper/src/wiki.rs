//! The wiki port: the weekly report as a table on a Confluence page. Optional: enabled when
//! `REAPER_CONFLUENCE_SECRET_ARN` names a Secrets Manager secret holding
//! `{"base_url": "...", "page_id": "...", "token": "..."}`. The adapter reads the page (for its
//! title and version number), then replaces its body with `version.number + 1`, both through
//! Confluence's REST API (`/rest/api/content/{id}`) with `Authorization: Bearer <token>`.
//! A wiki failure never stops the run: the CSV report is written first, and the failure goes into
//! the run summary and an on-call alert.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::report::{in_report_order, Row, HEADER};

/// Longest a single Confluence request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A wiki failure. Messages carry the step and HTTP status, never page content or the token.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("confluence {step}: {message}")]
pub struct WikiError {
    pub step: &'static str,
    pub message: String,
}

fn werr(step: &'static str, message: impl Into<String>) -> WikiError {
    WikiError { step, message: message.into() }
}

/// Where the report goes and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct WikiPage {
    /// Storage-format XHTML (see [`storage_body`]).
    pub body: String,
}

/// What the wiki did with a published page.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub page_id: String,
    pub version: u64,
}

/// A file attached to the page (the activity chart), shown with `<ac:image>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// File name: letters, digits, `-`, `_` and `.` only.
    pub name: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// Publishes the report page.
#[async_trait]
pub trait Wiki: Send + Sync {
    async fn publish(&self, page: &WikiPage) -> Result<Published, WikiError>;
    /// Creates or replaces a file attached to the page.
    async fn attach(&self, file: &Attachment) -> Result<(), WikiError>;
}

/// The Confluence connection, as stored in the secret.
#[derive(Clone, PartialEq, Deserialize)]
pub struct ConfluenceCreds {
    /// e.g. `https://county.atlassian.net/wiki` or `https://wiki.county.gov`.
    pub base_url: String,
    pub page_id: String,
    pub token: String,
}

impl std::fmt::Debug for ConfluenceCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfluenceCreds")
            .field("base_url", &self.base_url)
            .field("page_id", &self.page_id)
            .field("token", &"***")
            .finish()
    }
}

impl ConfluenceCreds {
    /// Parses and checks the secret's JSON. The token may travel in clear only to a loopback
    /// address (the tests' local server); everywhere else the base URL must be https.
    pub fn from_json(text: &str) -> Result<Self, WikiError> {
        let c: Self = serde_json::from_str(text)
            .map_err(|e| werr("secret", format!("not {{\"base_url\",\"page_id\",\"token\"}} JSON: {e}")))?;
        let uri: http::Uri = c.base_url.parse().map_err(|_| werr("secret", "base_url is not a URL"))?;
        let host = uri.host().unwrap_or("");
        let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1");
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if loopback => {}
            _ => return Err(werr("secret", "base_url must be https")),
        }
        if c.page_id.is_empty() || !c.page_id.chars().all(|ch| ch.is_ascii_digit()) {
            return Err(werr("secret", "page_id must be the page's numeric id"));
        }
        if c.token.trim().is_empty() {
            return Err(werr("secret", "token is empty"));
        }
        Ok(c)
    }

    fn content_url(&self, query: &str) -> String {
        format!("{}/rest/api/content/{}{query}", self.base_url.trim_end_matches('/'), self.page_id)
    }
}

/// Where the adapter gets its connection: fixed (tests, `lake`), or Secrets Manager, read on
/// every publish so a rotated token is picked up without a cold start.
#[derive(Debug, Clone)]
pub enum CredsSource {
    Fixed(ConfluenceCreds),
    SecretsManager { client: aws_sdk_secretsmanager::Client, secret_id: String },
}

impl CredsSource {
    async fn get(&self) -> Result<ConfluenceCreds, WikiError> {
        match self {
            Self::Fixed(c) => Ok(c.clone()),
            Self::SecretsManager { client, secret_id } => {
                let out = client.get_secret_value().secret_id(secret_id).send().await.map_err(|e| {
                    werr("secret", aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())
                })?;
                let text =
                    out.secret_string().ok_or_else(|| werr("secret", "the secret has no string value"))?;
                ConfluenceCreds::from_json(text)
            }
        }
    }
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Confluence over its REST API, with hyper (the HTTP stack the AWS SDK already links).
#[derive(Clone)]
pub struct ConfluenceWiki {
    creds: CredsSource,
    http: HttpsClient,
}

impl std::fmt::Debug for ConfluenceWiki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfluenceWiki").field("creds", &self.creds).finish_non_exhaustive()
    }
}

/// The parts of `GET /rest/api/content/{id}?expand=version` the update needs.
#[derive(Deserialize)]
struct PageInfo {
    title: String,
    #[serde(rename = "type", default = "page_type")]
    kind: String,
    version: VersionInfo,
}

#[derive(Deserialize)]
struct VersionInfo {
    number: u64,
}

fn page_type() -> String {
    "page".into()
}

impl ConfluenceWiki {
    pub fn new(creds: CredsSource) -> Result<Self, WikiError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| werr("tls", format!("no native root certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self { creds, http: Client::builder(TokioExecutor::new()).build(https) })
    }

    async fn send(
        &self,
        step: &'static str,
        req: http::Request<Full<Bytes>>,
    ) -> Result<(http::StatusCode, Bytes), WikiError> {
        let call = async {
            let resp =
                self.http.request(req).await.map_err(|e| werr(step, format!("request failed: {e}")))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| werr(step, format!("reading the answer: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, call)
            .await
            .map_err(|_| werr(step, format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())))?
    }
}

fn request(
    method: http::Method,
    url: &str,
    token: &str,
    body: Option<Vec<u8>>,
) -> Result<http::Request<Full<Bytes>>, WikiError> {
    typed_request(method, url, token, body.map(|b| (b, "application/json".to_string())))
}

fn typed_request(
    method: http::Method,
    url: &str,
    token: &str,
    body: Option<(Vec<u8>, String)>,
) -> Result<http::Request<Full<Bytes>>, WikiError> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(url)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::ACCEPT, "application/json");
    let body = match body {
        Some((bytes, ct)) => {
            b = b.header(http::header::CONTENT_TYPE, ct);
            bytes
        }
        None => Vec::new(),
    };
    b.body(Full::new(Bytes::from(body)))
        .map_err(|e| werr("request", format!("cannot build the request: {e}")))
}

#[async_trait]
impl Wiki for ConfluenceWiki {
    async fn publish(&self, page: &WikiPage) -> Result<Published, WikiError> {
        let c = self.creds.get().await?;
        let get = request(http::Method::GET, &c.content_url("?expand=version"), &c.token, None)?;
        let (status, body) = self.send("get page", get).await?;
        if !status.is_success() {
            return Err(werr("get page", format!("HTTP {}", status.as_u16())));
        }
        let info: PageInfo = serde_json::from_slice(&body)
            .map_err(|e| werr("get page", format!("unexpected answer (no title/version.number): {e}")))?;
        let version = info.version.number + 1;
        let update = serde_json::json!({
            "id": c.page_id,
            "type": info.kind,
            "title": info.title,
            "version": {"number": version, "message": "WorkSpaces reaper weekly report"},
            "body": {"storage": {"value": page.body, "representation": "storage"}},
        });
        let put =
            request(http::Method::PUT, &c.content_url(""), &c.token, Some(update.to_string().into_bytes()))?;
        let (status, _) = self.send("update page", put).await?;
        if !status.is_success() {
            let hint = if status == http::StatusCode::CONFLICT {
                " (edited concurrently; next run retries)"
            } else {
                ""
            };
            return Err(werr("update page", format!("HTTP {}{hint}", status.as_u16())));
        }
        Ok(Published { page_id: c.page_id, version })
    }

    async fn attach(&self, file: &Attachment) -> Result<(), WikiError> {
        let step = "attach chart";
        if file.name.is_empty() || !file.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(werr(step, "attachment name must be letters, digits, - _ ."));
        }
        let c = self.creds.get().await?;
        const B: &str = "workspace-reaper-attachment-boundary";
        let mut body = format!(
            "--{B}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
            file.name, file.content_type
        )
        .into_bytes();
        body.extend_from_slice(&file.data);
        body.extend_from_slice(
            format!(
                "\r\n--{B}\r\nContent-Disposition: form-data; name=\"minorEdit\"\r\n\r\ntrue\r\n--{B}--\r\n"
            )
            .as_bytes(),
        );
        let url = c.content_url("/child/attachment");
        let mut req = typed_request(
            http::Method::PUT,
            &url,
            &c.token,
            Some((body, format!("multipart/form-data; boundary={B}"))),
        )?;
        // Confluence refuses attachment uploads without this header (XSRF check).
        req.headers_mut().insert("x-atlassian-token", http::HeaderValue::from_static("no-check"));
        let (status, _) = self.send(step, req).await?;
        if !status.is_success() {
            return Err(werr(step, format!("HTTP {}", status.as_u16())));
        }
        Ok(())
    }
}

/// Report columns shown on the page: all but the trailing `mode`.
const PAGE_COLUMNS: usize = 9;

/// [`storage_body_with`] without a section.
pub fn storage_body(title_line: &str, rows: &[Row]) -> String {
    storage_body_with(title_line, "", rows)
}

/// Escapes text for XHTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // XML 1.0 forbids most control characters; Confluence would reject the page.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The page body in Confluence storage format: a heading line, an optional section (the activity
/// analytics, already XHTML), and the report as a table, rows in the CSV's order (decision, then
/// WorkSpace id) without the CSV's `mode` column (the heading names the mode). Every cell is
/// HTML-escaped.
pub fn storage_body_with(title_line: &str, section: &str, rows: &[Row]) -> String {
    let mut s = String::with_capacity(256 + rows.len() * 256);
    s.push_str("<p>");
    s.push_str(&escape_html(title_line));
    s.push_str("</p>");
    s.push_str(section);
    s.push_str("<table><tbody><tr>");
    for h in &HEADER[..PAGE_COLUMNS] {
        s.push_str("<th>");
        s.push_str(&escape_html(h));
        s.push_str("</th>");
    }
    s.push_str("</tr>");
    for r in in_report_order(rows) {
        s.push_str("<tr>");
        for c in r.cells().iter().take(PAGE_COLUMNS) {
            s.push_str("<td>");
            s.push_str(&escape_html(c));
            s.push_str("</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(escape_html(r#"<b a="1">x&y</b>'"#), "&lt;b a=&quot;1&quot;&gt;x&amp;y&lt;/b&gt;&#39;");
        assert_eq!(escape_html("a\u{0}b"), "a\u{FFFD}b");
        assert_eq!(escape_html("jdoe"), "jdoe");
    }

    #[test]
    fn secret_must_be_complete_and_https() {
        let ok = ConfluenceCreds::from_json(
            r#"{"base_url":"https://wiki.county.gov","page_id":"4242","token":"t0k"}"#,
        )
        .unwrap();
        assert_eq!(
            ok.content_url("?expand=version"),
            "https://wiki.county.gov/rest/api/content/4242?expand=version"
        );
        assert!(!format!("{ok:?}").contains("t0k"), "the token never reaches Debug");
        let err = |j: &str| ConfluenceCreds::from_json(j).unwrap_err().message;
        assert!(err(r#"{"base_url":"http://wiki.county.gov","page_id":"1","token":"t"}"#).contains("https"));
        assert!(err(r#"{"base_url":"https://w.gov","page_id":"../x","token":"t"}"#).contains("page_id"));
        assert!(err(r#"{"base_url":"https://w.gov","page_id":"1","token":" "}"#).contains("token"));
        assert!(err(r#"{"base_url":"https://w.gov"}"#).contains("JSON"));
        ConfluenceCreds::from_json(r#"{"base_url":"http://127.0.0.1:8080/wiki","page_id":"1","token":"t"}"#)
            .unwrap();
    }
}
