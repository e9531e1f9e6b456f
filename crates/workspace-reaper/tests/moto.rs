//! The SDK adapter against a moto server (`scripts/moto_server.py`, started by `scripts/test.sh`,
//! which sets `LAKE_TEST_AWS_ENDPOINT`). Without that variable the test is skipped locally and fails
//! under CI.
//!
//! Gaps in moto 5.x that this test cannot express (covered with the fake in `tests/fleet.rs`):
//! - DescribeWorkspacesConnectionStatus does not exist in moto; the launcher adds it, reading the
//!   tags `test:last-connected` (ISO-8601 or `never`) and `test:connection-state`.
//! - Every WorkSpace is AVAILABLE: no STOPPED, MAINTENANCE, ... and no state change between
//!   describe and terminate, so protected states and the re-check are tested with the fake.
//! - DescribeWorkspaces ignores `Limit` and `NextToken` (one page), so pagination is tested with
//!   the fake (5,000 WorkSpaces in pages of 25).
//! - No throttling, and TerminateWorkspaces removes a WorkSpace at once (no TERMINATING).
//! - RegisterWorkspaceDirectory needs a Directory Service directory, which needs an EC2 VPC and
//!   two subnets in different zones. That set-up runs through boto3 (already installed with moto):
//!   building `aws-sdk-ec2` for two calls would cost minutes per clean build. Every WorkSpaces call
//!   (register, create, tags, describe, status, terminate) goes through the Rust SDK.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_workspaces::config::{Credentials, Region};
use aws_sdk_workspaces::types::{Tag, WorkspaceRequest};
use chrono::{Duration, SecondsFormat, Utc};
use common::MemStore;
use workspace_reaper::notify::RecordingNotifier;
use workspace_reaper::sdk::SdkWorkspaces;
use workspace_reaper::{Backoff, Policy, Reaper, WorkspacesApi, WsState};

const SETUP: &str = r#"
import boto3, sys
kw = dict(endpoint_url=sys.argv[1], region_name=sys.argv[2])
ec2 = boto3.client("ec2", **kw)
vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
azs = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:2]
subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.42.{i}.0/24", AvailabilityZone=az)["Subnet"]["SubnetId"]
           for i, az in enumerate(azs)]
d = boto3.client("ds", **kw).create_directory(
    Name="corp.county.example", Password="Passw0rd!Passw0rd", Size="Small",
    VpcSettings={"VpcId": vpc, "SubnetIds": subnets})["DirectoryId"]
print(d, *subnets)
"#;

const REGION: &str = "us-gov-west-1";

/// A test user: name, `test:last-connected`, extra tags.
type Person<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);

async fn client(endpoint: &str) -> aws_sdk_workspaces::Client {
    let cfg = aws_config::from_env()
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await;
    aws_sdk_workspaces::Client::new(&cfg)
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build().unwrap()
}

#[tokio::test]
async fn sdk_adapter_against_moto_decides_and_terminates() {
    let endpoint = e2e::moto_endpoint();
    // Directory Service directory (EC2 VPC + subnets) through boto3; see the module comment.
    let out = std::process::Command::new("python3")
        .args(["-c", SETUP, &endpoint, REGION])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    assert!(out.status.success(), "set-up failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut parts = text.split_whitespace().map(str::to_string);
    let directory = parts.next().unwrap();
    let subnets: Vec<String> = parts.collect();

    let ws = client(&endpoint).await;
    ws.register_workspace_directory()
        .directory_id(&directory)
        .set_subnet_ids(Some(subnets))
        .send()
        .await
        .unwrap();

    let now = Utc::now();
    let ago = |d: i64| (now - Duration::days(d)).to_rfc3339_opts(SecondsFormat::Secs, true);
    // (user, last connected, extra tags)
    let people: Vec<Person> = vec![
        ("stale.user", ago(30), vec![]),
        ("recent.user", ago(2), vec![]),
        ("risk.user", ago(10), vec![]),
        ("risk.tagged", ago(12), vec![("reaper:email", "r.tagged@health.county.example")]),
        ("exempt.user", ago(60), vec![("reaper:exempt", "director")]),
        // IAM matches the tag key in any letter case, so the code does too.
        ("exempt.case", ago(60), vec![("Reaper:Exempt", "yes")]),
        ("never.user", "never".to_string(), vec![]),
    ];
    let mut reqs = Vec::new();
    for (user, last, extra) in &people {
        let mut b = WorkspaceRequest::builder()
            .directory_id(&directory)
            .user_name(*user)
            .bundle_id("wsb-0123456789")
            .tags(tag("test:last-connected", last))
            .tags(tag("test:connection-state", "DISCONNECTED"));
        for (k, v) in extra {
            b = b.tags(tag(k, v));
        }
        reqs.push(b.build().unwrap());
    }
    let created = ws.create_workspaces().set_workspaces(Some(reqs)).send().await.unwrap();
    assert!(created.failed_requests().is_empty(), "{:?}", created.failed_requests());
    let by_user: BTreeMap<String, String> = created
        .pending_requests()
        .iter()
        .map(|w| (w.user_name().unwrap().to_string(), w.workspace_id().unwrap().to_string()))
        .collect();
    assert_eq!(by_user.len(), people.len());

    // The adapter on its own: one page with tags, and connection status for all seven.
    let api = SdkWorkspaces::new(ws.clone());
    let page = api.describe_page(Some(&directory), None).await.unwrap();
    assert_eq!(page.workspaces.len(), 7);
    let exempt = page.workspaces.iter().find(|w| w.user == "exempt.user").unwrap();
    assert_eq!(exempt.state, WsState::Available);
    assert_eq!(exempt.tags.as_ref().unwrap().get("reaper:exempt").map(String::as_str), Some("director"));
    let ids: Vec<String> = by_user.values().cloned().collect();
    let status = api.connection_status(&ids).await.unwrap();
    assert_eq!(status.len(), 7);
    let never = status.iter().find(|s| s.id == by_user["never.user"]).unwrap();
    assert_eq!(never.last_connection, None);
    let stale = status.iter().find(|s| s.id == by_user["stale.user"]).unwrap();
    assert_eq!(stale.last_connection.unwrap().timestamp(), (now - Duration::days(30)).timestamp());

    // A whole live run through the SDK adapter, scoped to this test's directory.
    let mut policy = Policy::embedded().unwrap();
    policy.dry_run = false;
    policy.directories = vec![directory.clone()];
    policy.cap.max_fleet_share = 1.0;
    // The run a week ago warned stale.user of removal today.
    let store = Arc::new(MemStore::default());
    let last_week = format!("history/{}.json", (now - Duration::days(7)).format("%Y-%m-%d"));
    let warned = common::warned_before(&[by_user["stale.user"].as_str()], now);
    store.0.lock().unwrap().insert(last_week, warned);
    let notifier = Arc::new(RecordingNotifier::default());
    let reaper = Reaper {
        api: Arc::new(api),
        store: store.clone(),
        notifier: notifier.clone(),
        policy,
        backoff: Backoff::fast(),
        wiki: None,
    };
    let s = reaper.run(now).await.unwrap();
    assert_eq!((s.fleet, s.terminated, s.at_risk, s.kept, s.terminate_failed), (7, 1, 2, 4, 0));

    let left: Vec<String> = ws
        .describe_workspaces()
        .directory_id(&directory)
        .send()
        .await
        .unwrap()
        .workspaces()
        .iter()
        .map(|w| w.user_name().unwrap().to_string())
        .collect();
    assert_eq!(left.len(), 6);
    assert!(!left.contains(&"stale.user".to_string()), "the stale WorkSpace is gone from moto");

    let csv = store.text("reports/latest.csv").unwrap();
    let decision = |user: &str| -> (String, String) {
        let line = csv.lines().find(|l| l.starts_with(&format!("{},", by_user[user]))).unwrap();
        let cells: Vec<&str> = line.split(',').collect();
        (cells[6].to_string(), cells[7].to_string())
    };
    assert_eq!(decision("stale.user"), ("terminated".into(), "inactive-over-limit".into()));
    assert_eq!(decision("recent.user"), ("keep".into(), "used-within-limit".into()));
    assert_eq!(decision("risk.user"), ("at-risk next run".into(), "passes-limit-before-next-run".into()));
    assert_eq!(decision("exempt.user"), ("keep".into(), "exempt-tag".into()));
    assert_eq!(decision("exempt.case"), ("keep".into(), "exempt-tag".into()));
    assert_eq!(decision("never.user"), ("keep".into(), "never-connected-first-sighting".into()));
    let mut emails: Vec<String> = notifier.notices().into_iter().map(|n| n.email).collect();
    emails.sort();
    // The two at-risk users, and the user whose WorkSpace was terminated (told what was removed).
    assert_eq!(
        emails,
        vec!["r.tagged@health.county.example", "risk.user@county.gov", "stale.user@county.gov"]
    );
}
