//! The real adapters against moto (`LAKE_TEST_AWS_ENDPOINT`, set by `scripts/test.sh`; skipped
//! locally without it, failing under CI): the S3 report/history store (SSE-KMS, pagination,
//! a missing key), SNS alerts read back through an SQS subscription, and user notices through
//! SES v2 read back from moto's record of sent mail (`/moto-api/data.json`) and parsed as MIME by
//! Python's `email` package, an independent reader. WorkSpaces is the fake here (its SDK adapter
//! against moto is `tests/moto.rs`).
//!
//! moto does not deliver SES configuration-set events (bounces, complaints), so that path is
//! checked in `template.yaml` by `scripts/check_template.py`, not here; and moto does not keep
//! the configuration set of a sent message, so an SDK interceptor reads it off the request.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_sesv2::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_sesv2::config::{ConfigBag, Intercept, RuntimeComponents};
use chrono::Duration;
use common::*;
use workspace_reaper::notify::{AwsNotifier, EmailSender};
use workspace_reaper::store::{ObjectStore, S3Store, StoreError};
use workspace_reaper::{Backoff, FakeWorkspaces, Mode, Reaper, WsState};

const KMS_KEY: &str =
    "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

/// Sent mail to addresses containing `needle`, as (from, to, subject, text, html, SES source).
const READ_MAIL: &str = r#"
import email, json, sys, urllib.request
from email import policy
data = json.load(urllib.request.urlopen(sys.argv[1] + "/moto-api/data.json"))
out = []
for m in data.get("ses", {}).get("RawMessage", []):
    if not any(sys.argv[2] in d for d in m["destinations"]):
        continue
    msg = email.message_from_string(m["raw_data"], policy=policy.default)
    parts = {p.get_content_type(): p.get_content() for p in msg.iter_parts()}
    out.append({"from": str(msg["From"]), "to": str(msg["To"]), "subject": str(msg["Subject"]),
                "type": msg.get_content_type(), "text": parts.get("text/plain"),
                "html": parts.get("text/html"), "source": m["source"]})
print(json.dumps(out))
"#;

fn sent_mail(endpoint: &str, needle: &str) -> Vec<serde_json::Value> {
    let out =
        std::process::Command::new("python3").args(["-c", READ_MAIL, endpoint, needle]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

struct Aws {
    s3: aws_sdk_s3::Client,
    sns: aws_sdk_sns::Client,
    sqs: aws_sdk_sqs::Client,
    ses: aws_sdk_sesv2::Client,
    /// The body of every SES request, as sent.
    ses_requests: Capture,
}

/// Keeps the body of every request its client sends.
#[derive(Debug, Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

impl Intercept for Capture {
    fn name(&self) -> &'static str {
        "capture-request-bodies"
    }
    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let body = ctx.request().body().bytes().map(|b| String::from_utf8_lossy(b).into_owned());
        self.0.lock().unwrap().push(body.unwrap_or_default());
        Ok(())
    }
}

impl Capture {
    /// The SendEmail requests (SES v2 JSON bodies) that carried raw content.
    fn send_email(&self) -> Vec<serde_json::Value> {
        let bodies = self.0.lock().unwrap().clone();
        bodies
            .iter()
            .filter_map(|b| serde_json::from_str::<serde_json::Value>(b).ok())
            .filter(|v| v.pointer("/Content/Raw").is_some())
            .collect()
    }
}

async fn aws() -> Aws {
    let cfg = e2e::moto_sdk().await;
    let s3 =
        aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&cfg).force_path_style(true).build());
    let ses_requests = Capture::default();
    let ses = aws_sdk_sesv2::Client::from_conf(
        aws_sdk_sesv2::config::Builder::from(&cfg).interceptor(ses_requests.clone()).build(),
    );
    Aws { s3, sns: aws_sdk_sns::Client::new(&cfg), sqs: aws_sdk_sqs::Client::new(&cfg), ses, ses_requests }
}

async fn bucket(a: &Aws) -> String {
    let name = unique("reaper-reports");
    e2e::create_bucket(&a.s3, &name, false).await;
    name
}

/// An alert topic with an SQS queue subscribed, so published alerts can be read back.
async fn alert_topic(a: &Aws) -> (String, String) {
    let topic =
        a.sns.create_topic().name(unique("alerts")).send().await.unwrap().topic_arn().unwrap().to_string();
    let q = a
        .sqs
        .create_queue()
        .queue_name(unique("alerts-q"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let qarn = a
        .sqs
        .get_queue_attributes()
        .queue_url(&q)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    a.sns.subscribe().topic_arn(&topic).protocol("sqs").endpoint(qarn).send().await.unwrap();
    (topic, q)
}

/// Every alert that reached the queue: (subject, message).
async fn alerts(a: &Aws, queue: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for _ in 0..5 {
        let got = a
            .sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if got.messages().is_empty() && !out.is_empty() {
            break;
        }
        for m in got.messages() {
            let env: serde_json::Value = serde_json::from_str(m.body().unwrap()).unwrap();
            out.push((
                env["Subject"].as_str().unwrap_or("").to_string(),
                env["Message"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

#[test]
fn the_s3_store_writes_with_kms_pages_lists_and_knows_missing_keys() {
    rt().block_on(async {
        let a = aws().await;
        let b = bucket(&a).await;
        let store = S3Store::new(a.s3.clone(), b.clone(), KMS_KEY);
        store.put("history/2025-03-10.json", b"{}".to_vec(), "application/json").await.unwrap();
        let head = a.s3.head_object().bucket(&b).key("history/2025-03-10.json").send().await.unwrap();
        assert_eq!(head.server_side_encryption(), Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms));
        assert_eq!(head.ssekms_key_id(), Some(KMS_KEY));
        assert_eq!(head.content_type(), Some("application/json"));
        assert_eq!(store.get("history/2025-03-10.json").await.unwrap(), Some(b"{}".to_vec()));
        assert_eq!(store.get("history/none.json").await.unwrap(), None, "a missing key is no error");
        // More keys than one ListObjectsV2 page (1,000).
        let keys: Vec<String> = (0..1003).map(|i| format!("reports/x/{i:05}.csv")).collect();
        for k in &keys {
            store.put(k, vec![b'x'], "text/csv").await.unwrap();
        }
        let listed = store.list("reports/").await.unwrap();
        assert_eq!(listed, keys, "every key, sorted, across pages");
        assert_eq!(store.list("history/").await.unwrap(), vec!["history/2025-03-10.json"]);
        let wrong = S3Store::new(a.s3.clone(), unique("no-such-bucket"), KMS_KEY);
        let err = wrong.put("reports/latest.csv", vec![], "text/csv").await.unwrap_err();
        assert_eq!((err.op, err.key.as_str()), ("put", "reports/latest.csv"));
    });
}

#[test]
fn two_weekly_runs_through_s3_ses_and_sns() {
    let endpoint = e2e::moto_endpoint();
    rt().block_on(async {
        let a = aws().await;
        let b = bucket(&a).await;
        let (topic, queue) = alert_topic(&a).await;
        let sender_domain = format!("{}.county.example", unique("notices"));
        a.ses.create_email_identity().email_identity(&sender_domain).send().await.unwrap();
        let users = format!("{}.county.example", unique("users"));
        let sender = EmailSender {
            from: format!("workspaces@{sender_domain}"),
            configuration_set: "reaper-test".into(),
        };
        let notifier =
            Arc::new(AwsNotifier::new(a.ses.clone(), sender.clone(), a.sns.clone(), topic.clone()));
        let store: Arc<dyn ObjectStore> = Arc::new(S3Store::new(a.s3.clone(), b.clone(), KMS_KEY));
        let fleet = || {
            FakeWorkspaces::new(vec![
                ws("ws-risk00001", "ann", WsState::Available, Some(days_ago(10))),
                ws("ws-risk00002", "ann", WsState::Stopped, Some(days_ago(12))),
                ws("ws-old000001", "bob", WsState::Available, Some(days_ago(30))),
                ws("ws-fine00001", "cat", WsState::Available, Some(days_ago(1))),
            ])
        };
        let reaper = |policy| Reaper {
            api: Arc::new(fleet()),
            store: store.clone(),
            notifier: notifier.clone(),
            policy,
            backoff: Backoff::fast(),
            wiki: None,
        };
        let mut policy = live_policy();
        policy.notify.email_domain = users.clone();

        // Week 1, dry run with notify_in_dry_run: report, history and chart in S3; bob's WorkSpace
        // is over the limit, and he is warned (of removal on 2025-03-10) before any enforcing run.
        let mut dry = policy.clone();
        dry.dry_run = true;
        dry.notify.notify_in_dry_run = true;
        let s1 = reaper(dry).run(now() - Duration::days(7)).await.unwrap();
        assert_eq!((s1.mode, s1.notices_sent, s1.at_risk, s1.would_terminate), (Mode::DryRun, 1, 1, 0));
        let mail = sent_mail(&endpoint, &users);
        assert_eq!(mail.len(), 1, "{mail:?}");
        assert_eq!(mail[0]["to"], format!("bob@{users}"));
        assert_eq!(
            mail[0]["subject"],
            "Your WorkSpace ws-old000001 will be removed on 2025-03-10 unless you sign in"
        );
        // The configuration set (bounces and complaints to on-call) is on the request itself.
        let sent = a.ses_requests.send_email();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0]["ConfigurationSetName"], "reaper-test");
        assert_eq!(sent[0]["FromEmailAddress"], sender.from.as_str());
        assert_eq!(sent[0]["Destination"]["ToAddresses"], serde_json::json!([format!("bob@{users}")]));
        for key in [
            "reports/2025-03-03/workspaces.csv",
            "history/2025-03-03.json",
            "reports/2025-03-03/activity.svg",
        ] {
            assert!(store.get(key).await.unwrap().is_some(), "{key} in S3");
        }

        // Week 2, enforce: bob's WorkSpace goes (he was warned), ann is warned once about two, on-call
        // hears of the mode.
        let s2 = reaper(policy.clone()).run(now()).await.unwrap();
        assert_eq!(
            (s2.mode, s2.terminated, s2.at_risk, s2.notices_sent, s2.notice_failures),
            (Mode::Enforce, 1, 2, 2, 0)
        );
        let all = sent_mail(&endpoint, &users);
        let mail: Vec<_> = all.into_iter().skip(1).collect();
        assert_eq!(mail.len(), 2, "one message per user: {mail:?}");
        let to = |who: &str| mail.iter().find(|m| m["to"] == format!("{who}@{users}")).unwrap();
        assert!(a.ses_requests.send_email().iter().all(|r| r["ConfigurationSetName"] == "reaper-test"));
        let ann = to("ann");
        assert_eq!(ann["from"], sender.from.as_str());
        assert_eq!(ann["source"], sender.from.as_str());
        assert_eq!(ann["type"], "multipart/alternative");
        assert_eq!(ann["subject"], "2 of your WorkSpaces will be removed unless you sign in");
        let text = ann["text"].as_str().unwrap();
        assert!(text.contains("ws-risk00001") && text.contains("ws-risk00002"), "{text}");
        assert!(text.contains("Unless you sign in to it before 2025-03-17"), "{text}");
        assert!(ann["html"].as_str().unwrap().contains("<p>Your Amazon WorkSpace ws-risk00001"), "{ann}");
        let bob = to("bob");
        assert_eq!(bob["subject"], "Your WorkSpace ws-old000001 was removed");
        assert!(bob["text"].as_str().unwrap().contains("was removed on 2025-03-10"), "{bob}");
        let got = alerts(&a, &queue).await;
        assert!(
            got.iter().any(|(s, m)| s == "WorkSpaces reaper: mode changed from dry-run to enforce"
                && m.contains("previous run (history/2025-03-03.json) ran in dry-run mode")),
            "{got:?}"
        );
        let csv = String::from_utf8(store.get("reports/latest.csv").await.unwrap().unwrap()).unwrap();
        assert!(csv.contains("ws-old000001,bob,d-0123456789,AVAILABLE"), "{csv}");
        assert!(csv.lines().skip(1).all(|l| l.ends_with(",enforce")), "{csv}");
        let activity =
            String::from_utf8(store.get("reports/2025-03-10/activity.csv").await.unwrap().unwrap()).unwrap();
        assert!(activity.contains("2025-03-03T06:00:00Z,dry-run,all,,4,"), "{activity}");
        assert!(activity.contains("2025-03-10T06:00:00Z,enforce,all,,4,"), "{activity}");

        // SES refuses an unverified sender: the notices fail, the report says so, on-call is told.
        let bad = EmailSender {
            from: format!("x@{}", unique("unverified")),
            configuration_set: "reaper-test".into(),
        };
        let mut r3 = reaper(policy);
        r3.notifier = Arc::new(AwsNotifier::new(a.ses.clone(), bad, a.sns.clone(), topic));
        let s3 = r3.run(now() + Duration::days(7)).await.unwrap();
        assert!(s3.notice_failures >= 1 && s3.notices_sent == 0, "{s3:?}");
        let csv = String::from_utf8(store.get("reports/2025-03-17/workspaces.csv").await.unwrap().unwrap())
            .unwrap();
        assert!(csv.contains("notice not sent: notify: "), "{csv}");
        let got = alerts(&a, &queue).await;
        assert!(got.iter().any(|(s, _)| s == "WorkSpaces reaper: failures in this run"), "{got:?}");
    });
}

/// The reports bucket, except that the first `fail` writes of `key` fail (S3 trouble mid-run).
struct FlakyStore {
    inner: S3Store,
    key: String,
    fail: AtomicUsize,
}

#[async_trait::async_trait]
impl ObjectStore for FlakyStore {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), StoreError> {
        if key == self.key
            && self.fail.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        {
            return Err(StoreError {
                op: "put",
                key: key.into(),
                message: "InternalError (injected)".into(),
            });
        }
        self.inner.put(key, body, content_type).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
}

#[test]
fn a_retried_run_emails_nobody_twice_and_keeps_what_the_failed_attempt_did() {
    let endpoint = e2e::moto_endpoint();
    rt().block_on(async {
        let a = aws().await;
        let b = bucket(&a).await;
        let (topic, _) = alert_topic(&a).await;
        let sender_domain = format!("{}.county.example", unique("notices"));
        a.ses.create_email_identity().email_identity(&sender_domain).send().await.unwrap();
        let users = format!("{}.county.example", unique("users"));
        let sender = EmailSender { from: format!("workspaces@{sender_domain}"), configuration_set: "reaper-test".into() };
        let notifier = Arc::new(AwsNotifier::new(a.ses.clone(), sender, a.sns.clone(), topic));
        let s3 = S3Store::new(a.s3.clone(), b.clone(), KMS_KEY);
        seed_warned(&s3, &["ws-old000001"]).await;
        let mut policy = live_policy();
        policy.notify.email_domain = users.clone();
        let fleet = Arc::new(FakeWorkspaces::new(vec![
            ws("ws-old000001", "bob", WsState::Available, Some(days_ago(30))),
            ws("ws-risk00001", "ann", WsState::Available, Some(days_ago(10))),
        ]));
        // Attempt 1 terminates bob's WorkSpace and emails both, then fails writing the CSV.
        let flaky = Arc::new(FlakyStore { inner: s3.clone(), key: "reports/2025-03-10/workspaces.csv".into(), fail: AtomicUsize::new(1) });
        let reaper = |store: Arc<dyn ObjectStore>| Reaper {
            api: fleet.clone(),
            store,
            notifier: notifier.clone(),
            policy: policy.clone(),
            backoff: Backoff::fast(),
            wiki: None,
        };
        let err = reaper(flaky.clone()).run(now()).await.unwrap_err();
        assert_eq!(err.kind(), "ReaperObjectStore");
        assert_eq!(fleet.terminated(), vec!["ws-old000001"]);
        assert_eq!(sent_mail(&endpoint, &users).len(), 2);
        let keys = s3.list("notices/2025-03-10/").await.unwrap();
        assert_eq!(keys.len(), 2, "one record per address: {keys:?}");
        assert!(keys.iter().all(|k| !k.contains("bob") && !k.contains("ann")), "{keys:?}");

        // Lambda's retry (same event): nobody is emailed again; the report and the history still
        // show the termination of the failed attempt, and ann's warning.
        let s = reaper(flaky).run(now()).await.unwrap();
        assert_eq!((s.notices_sent, s.notices_already_sent, s.terminated, s.at_risk), (0, 1, 1, 1));
        assert_eq!(sent_mail(&endpoint, &users).len(), 2, "no duplicate email");
        let csv = String::from_utf8(s3.get("reports/2025-03-10/workspaces.csv").await.unwrap().unwrap()).unwrap();
        assert!(
            csv.contains("ws-old000001,bob,d-0123456789,AVAILABLE,2025-02-08T06:00:00Z,30,terminated,inactive-over-limit,terminated by an earlier attempt of this run,enforce"),
            "{csv}"
        );
        let hist: workspace_reaper::report::Snapshot =
            serde_json::from_slice(&s3.get("history/2025-03-10.json").await.unwrap().unwrap()).unwrap();
        let ids: Vec<&str> = hist.workspaces.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, vec!["ws-risk00001", "ws-old000001"]);
        let w = hist.warnings();
        assert_eq!(w["ws-risk00001"].removal_on.to_string(), "2025-03-17", "the warning the first attempt gave");
    });
}
