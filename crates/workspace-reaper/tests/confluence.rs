//! The Confluence page update through the real HTTP adapter (hyper) against a tiny HTTP server on
//! 127.0.0.1 started by the test, which records every request and answers from a script. With
//! `LAKE_TEST_AWS_ENDPOINT` (moto) the secret is also read through Secrets Manager.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use common::*;
use workspace_reaper::wiki::{ConfluenceCreds, CredsSource, Wiki, WikiPage};
use workspace_reaper::{ConfluenceWiki, FakeWorkspaces, WsState};

const TOKEN: &str = "s3cret-token";
const PAGE: &str = "4242";
const INJECTION: &str = r#"<img src=x onerror=alert(1)>&"co"</td>"#;

#[derive(Debug, Clone)]
struct Req {
    method: String,
    target: String,
    headers: BTreeMap<String, String>,
    body: String,
}

/// Answers (status, body) for a request.
type Script = dyn Fn(&Req) -> (u16, String) + Send + Sync;

struct Server {
    base_url: String,
    requests: Arc<Mutex<Vec<Req>>>,
}

impl Server {
    /// Serves one request per connection (`Connection: close`) until the test process ends.
    fn start(script: Box<Script>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://{}/wiki", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                serve(stream, &*script, &log);
            }
        });
        Self { base_url, requests }
    }
    fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }
    fn creds(&self) -> ConfluenceCreds {
        ConfluenceCreds::from_json(
            &serde_json::json!({"base_url": self.base_url, "page_id": PAGE, "token": TOKEN}).to_string(),
        )
        .unwrap()
    }
}

/// Reads one request, records it (before answering, so the client never sees an answer to a
/// request the log does not hold yet), then answers from the script.
fn serve(stream: TcpStream, script: &Script, log: &Mutex<Vec<Req>>) -> Option<()> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let req = Req { method, target, headers, body: String::from_utf8(body).ok()? };
    let (status, answer) = script(&req);
    log.lock().unwrap().push(req);
    let mut out = stream;
    let _ = write!(
        out,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let _ = out.flush();
    Some(())
}

/// A Confluence that knows page 4242 at version 7 and accepts updates; `put_status` for the PUT.
fn confluence(put_status: u16) -> Box<Script> {
    Box::new(move |r: &Req| match r.method.as_str() {
        "GET" => {
            (200, r#"{"id":"4242","type":"page","title":"WorkSpaces weekly","version":{"number":7}}"#.into())
        }
        "PUT" => (put_status, "{}".into()),
        _ => (405, "{}".into()),
    })
}

fn fleet() -> FakeWorkspaces {
    FakeWorkspaces::new(vec![
        ws("ws-old000001", INJECTION, WsState::Available, Some(days_ago(20))),
        ws("ws-risk00001", "risk.user", WsState::Stopped, Some(days_ago(10))),
        ws("ws-fresh0001", "fresh.user", WsState::Available, Some(days_ago(1))),
    ])
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(f)
}

fn check_requests(server: &Server) -> serde_json::Value {
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "one GET, one PUT: {reqs:?}");
    let (get, put) = (&reqs[0], &reqs[1]);
    assert_eq!(
        (get.method.as_str(), get.target.as_str()),
        ("GET", "/wiki/rest/api/content/4242?expand=version")
    );
    assert_eq!((put.method.as_str(), put.target.as_str()), ("PUT", "/wiki/rest/api/content/4242"));
    for r in &reqs {
        assert_eq!(r.headers.get("authorization").map(String::as_str), Some("Bearer s3cret-token"));
    }
    assert_eq!(put.headers.get("content-type").map(String::as_str), Some("application/json"));
    let body: serde_json::Value = serde_json::from_str(&put.body).unwrap();
    assert_eq!(body["version"]["number"], 8, "the update is the page's version + 1");
    assert_eq!(body["title"], "WorkSpaces weekly", "the title is kept");
    assert_eq!(body["type"], "page");
    assert_eq!(body["body"]["storage"]["representation"], "storage");
    body
}

#[test]
fn the_report_table_replaces_the_page_body_at_the_next_version() {
    let server = Server::start(confluence(200));
    let store = Arc::new(MemStore::default());
    let mut r = rig(fleet(), store.clone(), live_policy());
    r.reaper.wiki = Some(Arc::new(ConfluenceWiki::new(CredsSource::Fixed(server.creds())).unwrap()));
    let s = block_on(r.reaper.run(now())).unwrap();
    // No earlier run warned the old WorkSpace's user: warned now, removed next run.
    assert_eq!((s.terminated, s.at_risk, s.kept), (0, 2, 1));
    assert_eq!(s.confluence, "updated page 4242 to version 8");

    let body = check_requests(&server);
    let xhtml = body["body"]["storage"]["value"].as_str().unwrap();
    assert!(
        xhtml.starts_with("<p>WorkSpaces reaper run 2025-03-10T06:00:00Z: 0 terminated, 2 at risk, 1 kept."),
        "{xhtml}"
    );
    assert!(xhtml.contains("<th>workspace id</th><th>user</th>"), "{xhtml}");
    // The injected user name is text in its cell, not markup.
    assert!(
        xhtml.contains(
            "<tr><td>ws-old000001</td><td>&lt;img src=x onerror=alert(1)&gt;&amp;&quot;co&quot;&lt;/td&gt;</td>\
             <td>d-0123456789</td><td>AVAILABLE</td><td>2025-02-18T06:00:00Z</td><td>20</td><td>at-risk next run</td>\
             <td>over-limit-warn-first</td><td>notice not sent: no usable email address</td></tr>"
        ),
        "{xhtml}"
    );
    assert!(!xhtml.contains("<img"), "no raw markup from a user name: {xhtml}");
    assert_eq!(xhtml.matches("<tr>").count(), 4, "header + 3 WorkSpaces");
    assert!(xhtml.contains("<td>ws-risk00001</td><td>risk.user</td>"));
    assert!(!r.notifier.alerts().iter().any(|a| a.subject.contains("Confluence")));
    // The CSV is unaffected (and still formula-safe).
    assert!(store.text("reports/latest.csv").unwrap().contains("ws-fresh0001,fresh.user"));
}

#[test]
fn a_confluence_failure_is_in_the_summary_and_alerted_and_the_csv_is_still_written() {
    let server = Server::start(confluence(409));
    let store = Arc::new(MemStore::default());
    let mut r = rig(fleet(), store.clone(), live_policy());
    r.reaper.wiki = Some(Arc::new(ConfluenceWiki::new(CredsSource::Fixed(server.creds())).unwrap()));
    let s = block_on(r.reaper.run(now())).unwrap();
    check_requests(&server);
    assert_eq!(
        s.confluence,
        "failed: confluence update page: HTTP 409 (edited concurrently; next run retries)"
    );
    assert_eq!(s.at_risk, 2, "the run itself went on");
    assert!(store.text("reports/2025-03-10/workspaces.csv").is_some());
    assert!(store.text("reports/latest.csv").is_some());
    assert!(store.text("history/2025-03-10.json").is_some());
    let alerts = r.notifier.alerts();
    let a = alerts.iter().find(|a| a.subject == "WorkSpaces reaper: Confluence page not updated").unwrap();
    assert!(
        a.body.contains("HTTP 409") && a.body.contains("reports/2025-03-10/workspaces.csv"),
        "{}",
        a.body
    );
    assert!(!a.body.contains(TOKEN));
}

#[test]
fn from_the_second_run_the_activity_chart_is_attached_and_shown() {
    let server = Server::start(confluence(200));
    let store = Arc::new(MemStore::default());
    let r = rig(fleet(), store.clone(), live_policy());
    block_on(r.reaper.run(now() - chrono::Duration::days(7))).unwrap();
    let mut r = rig(fleet(), store.clone(), live_policy());
    r.reaper.wiki = Some(Arc::new(ConfluenceWiki::new(CredsSource::Fixed(server.creds())).unwrap()));
    let s = block_on(r.reaper.run(now())).unwrap();
    assert_eq!(s.confluence, "updated page 4242 to version 8 with the activity chart");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "GET, PUT page, PUT attachment: {reqs:?}");
    let att = &reqs[2];
    assert_eq!(
        (att.method.as_str(), att.target.as_str()),
        ("PUT", "/wiki/rest/api/content/4242/child/attachment")
    );
    assert_eq!(att.headers.get("x-atlassian-token").map(String::as_str), Some("no-check"));
    assert_eq!(att.headers.get("authorization").map(String::as_str), Some("Bearer s3cret-token"));
    assert!(att.headers["content-type"].starts_with("multipart/form-data; boundary="));
    assert!(att.body.contains(r#"name="file"; filename="reaper-activity.svg""#), "{}", att.body);
    assert!(att.body.contains("Content-Type: image/svg+xml"));
    assert!(att.body.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    let page: serde_json::Value = serde_json::from_str(&reqs[1].body).unwrap();
    let xhtml = page["body"]["storage"]["value"].as_str().unwrap();
    assert!(xhtml.contains("Mode: enforce."), "{xhtml}");
    assert!(xhtml.contains("<h2>Activity</h2><p>Mode: enforce. 2 run(s) in the history.</p><ul><li>whole fleet: 3 WorkSpaces;"), "{xhtml}");
    assert!(xhtml.contains(r#"<ri:attachment ri:filename="reaper-activity.svg"/>"#), "{xhtml}");
    assert_eq!(xhtml.matches("<tr>").count(), 4, "the report is still the page's only table");
}

#[test]
fn an_unreachable_or_refusing_confluence_fails_softly() {
    // Refused: a port nobody listens on any more.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let creds = ConfluenceCreds::from_json(
        &serde_json::json!({"base_url": format!("http://{closed}"), "page_id": PAGE, "token": TOKEN})
            .to_string(),
    )
    .unwrap();
    let store = Arc::new(MemStore::default());
    let mut r = rig(fleet(), store.clone(), live_policy());
    r.reaper.wiki = Some(Arc::new(ConfluenceWiki::new(CredsSource::Fixed(creds)).unwrap()));
    let s = block_on(r.reaper.run(now())).unwrap();
    assert!(s.confluence.starts_with("failed: confluence get page: request failed"), "{}", s.confluence);
    assert!(store.text("reports/latest.csv").is_some());

    // Refusing the token: the GET's status, nothing written.
    let server = Server::start(Box::new(|_: &Req| (401, r#"{"message":"nope"}"#.into())));
    let wiki = ConfluenceWiki::new(CredsSource::Fixed(server.creds())).unwrap();
    let err = block_on(wiki.publish(&WikiPage { body: "<p>x</p>".into() })).unwrap_err();
    assert_eq!(err.to_string(), "confluence get page: HTTP 401");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn the_secret_comes_from_secrets_manager() {
    let endpoint = e2e::moto_endpoint();
    let server = Server::start(confluence(200));
    block_on(async {
        use aws_sdk_secretsmanager::config::{Credentials, Region};
        let cfg = aws_config::from_env()
            .endpoint_url(&endpoint)
            .region(Region::new("us-gov-west-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .load()
            .await;
        let sm = aws_sdk_secretsmanager::Client::new(&cfg);
        let name = format!("reaper-confluence-{}", std::process::id());
        let secret = serde_json::json!({"base_url": server.base_url, "page_id": PAGE, "token": TOKEN});
        let arn = sm
            .create_secret()
            .name(&name)
            .secret_string(secret.to_string())
            .send()
            .await
            .unwrap()
            .arn()
            .unwrap()
            .to_string();
        let wiki = ConfluenceWiki::new(CredsSource::SecretsManager { client: sm, secret_id: arn }).unwrap();
        let p = wiki.publish(&WikiPage { body: "<p>report</p>".into() }).await.unwrap();
        assert_eq!((p.page_id.as_str(), p.version), ("4242", 8));
    });
    let body = check_requests(&server);
    assert_eq!(body["body"]["storage"]["value"], "<p>report</p>");
}
