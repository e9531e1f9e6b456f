//! The guard against moto: the audit alert names the file ids at risk (never a key), a silent
//! source raises one alert and one more when it resumes, and the DLQ summary counts every DLQ
//! per cause, our envelopes and raw redrive-policy messages alike.
#![allow(clippy::unwrap_used)]

use chrono::{Duration, Utc};
use e2e::{root, world};
use layer::guard::{FreshnessChange, GuardConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_alerts_on_files_at_risk_silence_and_resumption_once_each() {
    let w = world().await;
    let sqs = aws_sdk_sqs::Client::new(&e2e::moto_sdk().await);
    let stage_dlq =
        sqs.create_queue().queue_name(format!("t{}-ingest-dlq", e2e::unique())).send().await.unwrap();
    let stage_dlq = stage_dlq.queue_url.unwrap();
    let contract = std::fs::read_to_string(root().join("config/sources/st_marys.toml")).unwrap().replacen(
        "\nkeys = ",
        "\nexpect_every = \"1d\"\nkeys = ",
        1,
    );
    w.deps.meta.publish_contract("st_marys", "encounter", &contract).await.unwrap();
    // a file that never got its notification: at risk
    w.upload("st_marys/2026/11/QZXSECRETNAME.csv", b"VisitID\n1\n".to_vec(), 0).await;
    // an envelope in the DLQ and a raw message SQS moved to a stage DLQ
    let env = serde_json::json!({"file_id": "f00d", "bucket": "b", "key_hash": "h", "dataset": null,
        "source": "st_marys", "function": "ingestion-router", "error_kind": "UnknownSource",
        "error_message": "x", "attempts": 1, "first_seen": "2026-01-01T00:00:00Z",
        "failed_at": "2026-01-01T00:00:00Z", "source_queue": "q", "original_message": "{}"});
    w.deps.queue.send(&w.deps.cfg.dlq, &env.to_string()).await.unwrap();
    w.deps.queue.send(&stage_dlq, "{\"Records\":[]}").await.unwrap();

    let cfg = GuardConfig { max_in_flight_secs: 900, dlqs: vec![w.deps.cfg.dlq.clone(), stage_dlq.clone()] };
    let later = Utc::now() + Duration::days(2);
    let r = layer::guard::run(&w.deps, &w.topo, &cfg, later).await.unwrap();
    assert_eq!(r.at_risk.len(), 1);
    let st = r.freshness.iter().find(|f| f.source == "st_marys").unwrap();
    assert!(st.overdue && st.change == Some(FreshnessChange::WentSilent), "{st:?}");
    assert_eq!(r.dlqs[0].count, 1);
    assert_eq!(r.dlqs[0].by_cause.get("UnknownSource"), Some(&1));
    assert_eq!(r.dlqs[1].by_cause.get("raw"), Some(&1));
    assert!(r.dlqs[0].oldest_age_secs.unwrap() > 86_400, "the envelope failed long ago");
    let alerts = w.drain_all(&w.alerts_queue.clone()).await;
    assert_eq!(alerts.len(), 2, "one audit alert, one silence alert: {alerts:?}");
    assert!(alerts.iter().any(|a| a.contains(&r.at_risk[0])), "the alert names the file id");
    assert!(alerts.iter().all(|a| !a.contains("QZX")), "no key text in an alert: {alerts:?}");
    assert!(alerts.iter().any(|a| a.contains("st_marys") && a.contains("expected every 1d")));

    // the same silence again: no second alert; the DLQs were only looked at
    let r = layer::guard::run(&w.deps, &w.topo, &cfg, later).await.unwrap();
    assert_eq!(r.freshness[0].change, None);
    assert_eq!(r.dlqs.iter().map(|d| d.count).sum::<usize>(), 2);
    let alerts = w.drain_all(&w.alerts_queue.clone()).await;
    assert_eq!(alerts.len(), 1, "only the audit alert repeats: {alerts:?}");

    // the source sends (and its file is routed): one all-clear
    lake::embedded::publish_dir(&w.deps, &root().join("config/sources")).await.unwrap();
    w.deps.meta.publish_contract("st_marys", "encounter", &contract).await.unwrap();
    w.upload(
        "st_marys/2026/12/st_marys_600.csv",
        std::fs::read(root().join("samples/st_marys/st_marys_600.csv")).unwrap(),
        1,
    )
    .await;
    lake::embedded::drain(&w.deps, &w.topo).await.unwrap();
    let soon = Utc::now() + Duration::hours(1);
    let r = layer::guard::run(&w.deps, &w.topo, &cfg, soon).await.unwrap();
    let st = r.freshness.iter().find(|f| f.source == "st_marys").unwrap();
    assert!(!st.overdue && st.change == Some(FreshnessChange::Resumed), "{st:?}");
    let alerts = w.drain_all(&w.alerts_queue.clone()).await;
    assert!(alerts.iter().any(|a| a.contains("st_marys sent again")), "{alerts:?}");
    let r = layer::guard::run(&w.deps, &w.topo, &cfg, soon).await.unwrap();
    assert_eq!(r.freshness.iter().find(|f| f.source == "st_marys").unwrap().change, None);
}
