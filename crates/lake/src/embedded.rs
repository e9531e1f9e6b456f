//! Driving the pipeline in-process: queues are drained into the real handlers with real SQS
//! event JSON, exactly as Lambda's event source mapping would, including partial batch failures
//! and receive counts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use contracts::{Catalog, Contract};
use layer::envelope::FailureEnvelope;
use layer::ledger::{now, RunRecord, Status};
use layer::local::{LocalMetadata, LocalNotifier, LocalObjectStore, LocalQueue};
use layer::pipeline::{Deps, PipelineConfig};

/// Names of the queues and buckets a driven lake uses.
#[derive(Debug, Clone)]
pub struct Topology {
    pub ingest_bucket: String,
    pub ingest_queue: String,
}

/// The embedded lake under `root`: folders for buckets, queues and topics, JSON for the ledger.
pub fn local_deps(root: &Path, ingest_dir: Option<&Path>) -> (Deps, Topology) {
    let mut store = LocalObjectStore::new(root.join("buckets"));
    if let Some(d) = ingest_dir {
        store = store.with_bucket("ingest", d);
    }
    let cfg = PipelineConfig {
        queue_delimited: "work-delimited".into(),
        queue_json: "work-json".into(),
        dlq: "dlq".into(),
        alert_topic: "alerts".into(),
        raw_bucket: "raw".into(),
        quarantine_bucket: "quarantine".into(),
        kms_key: None,
        pii_queue: "pii".into(),
    };
    let deps = Deps {
        store: Arc::new(store),
        queue: Arc::new(LocalQueue::new(root.join("queues"))),
        notifier: Arc::new(LocalNotifier::new(root.join("topics"))),
        meta: Arc::new(LocalMetadata::new(root.join("meta"))),
        cfg,
    };
    (deps, Topology { ingest_bucket: "ingest".into(), ingest_queue: "ingest".into() })
}

/// Publishes every contract in `dir` whose text differs from the published one; returns
/// (source, version, newly published).
pub async fn publish_dir(deps: &Deps, dir: &Path) -> Result<Vec<(String, u32, bool)>> {
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    for p in paths {
        out.push(publish(deps, &p).await?);
    }
    Ok(out)
}

/// Validates a contract file and publishes it as a new version unless the current one is the same.
pub async fn publish(deps: &Deps, path: &Path) -> Result<(String, u32, bool)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let c = Contract::from_toml_str(&text, &path.display().to_string(), &Catalog::builtin())?;
    if let Some(cur) = deps.meta.current_contract(&c.source).await? {
        if cur.toml == text {
            return Ok((c.source, cur.version, false));
        }
    }
    let v = deps.meta.publish_contract(&c.source, &c.dataset, &text).await?;
    Ok((c.source, v, true))
}

fn to_event(msgs: &[layer::ports::Received]) -> SqsEvent {
    let mut ev = SqsEvent::default();
    ev.records = msgs
        .iter()
        .map(|r| {
            let mut m = SqsMessage::default();
            m.message_id = Some(r.message_id.clone());
            m.receipt_handle = Some(r.receipt.clone());
            m.body = Some(r.body.clone());
            m.event_source = Some("aws:sqs".into());
            m.attributes =
                HashMap::from([("ApproximateReceiveCount".to_string(), r.receive_count.to_string())]);
            m
        })
        .collect();
    ev
}

/// Drains the ingest queue and both workflow queues through the real handlers until all are
/// empty. Returns the number of handler invocations.
pub async fn drain(deps: &Deps, topo: &Topology) -> Result<usize> {
    let stages: Vec<(String, Option<&str>)> = vec![
        (topo.ingest_queue.clone(), None),
        (deps.cfg.queue_delimited.clone(), Some("delimited")),
        (deps.cfg.queue_json.clone(), Some("json")),
    ];
    let mut invocations = 0;
    for _pass in 0..10_000 {
        let mut any = false;
        for (queue, family) in &stages {
            let msgs = deps.queue.receive(queue, 10).await?;
            if msgs.is_empty() {
                continue;
            }
            any = true;
            invocations += 1;
            let resp = match family {
                None => ingestion_router::handle(deps, to_event(&msgs)).await,
                Some(f) => semi_structured_workflow::handle(deps, f, to_event(&msgs)).await,
            };
            let failed: Vec<&str> =
                resp.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
            for m in &msgs {
                if failed.contains(&m.message_id.as_str()) {
                    deps.queue.release(queue, &m.receipt).await?;
                } else {
                    deps.queue.delete(queue, &m.receipt).await?;
                }
            }
        }
        if !any {
            return Ok(invocations);
        }
    }
    anyhow::bail!("queues did not drain")
}

/// Sends an S3 notification for every object under the ingest bucket (a re-run is harmless:
/// the router ignores versions it has seen).
pub async fn notify_all(deps: &Deps, topo: &Topology) -> Result<usize> {
    let objs = deps.store.list_versions(&topo.ingest_bucket, "").await?;
    let mut n = 0;
    for o in objs.iter().filter(|o| o.is_latest && !o.key.rsplit('/').next().unwrap_or("").starts_with('.')) {
        let ev = layer::s3event::notification(&topo.ingest_bucket, &o.key, o.version_id.as_deref(), o.size);
        deps.queue.send(&topo.ingest_queue, &ev).await?;
        n += 1;
    }
    Ok(n)
}

/// Which DLQ envelopes to replay.
#[derive(Debug, Clone, Default)]
pub struct RedriveFilter {
    pub file_id: Option<String>,
    pub source: Option<String>,
    pub error_kind: Option<String>,
}

/// Moves matching DLQ envelopes back to the queue of the stage that failed, resetting the
/// ledger so the stage runs again. Envelopes that do not match stay in the DLQ. Returns the
/// replayed envelopes.
pub async fn redrive(deps: &Deps, topo: &Topology, f: &RedriveFilter) -> Result<Vec<FailureEnvelope>> {
    let mut done = Vec::new();
    let mut keep = Vec::new();
    loop {
        let msgs = deps.queue.receive(&deps.cfg.dlq, 10).await?;
        if msgs.is_empty() {
            break;
        }
        for m in msgs {
            let env: FailureEnvelope = match serde_json::from_str(&m.body) {
                Ok(e) => e,
                Err(_) => {
                    keep.push(m);
                    continue;
                }
            };
            let matches = f.file_id.as_ref().is_none_or(|x| *x == env.file_id)
                && f.source.as_ref().is_none_or(|x| Some(x) == env.source.as_ref())
                && f.error_kind.as_ref().is_none_or(|x| *x == env.error_kind);
            if !matches {
                keep.push(m);
                continue;
            }
            // a failure here leaves the envelope in the DLQ (released, not lost) and is reported
            if let Err(e) = replay(deps, topo, &env).await {
                eprintln!(
                    "not redriven: {} ({}): {e:#}; its envelope stays in the DLQ",
                    env.file_id, env.error_kind
                );
                keep.push(m);
                continue;
            }
            deps.queue.delete(&deps.cfg.dlq, &m.receipt).await?;
            done.push(env);
        }
    }
    for m in keep {
        deps.queue.release(&deps.cfg.dlq, &m.receipt).await?;
    }
    Ok(done)
}

/// Rebuilds the failed stage's message from the ledger (the envelope holds no key) and sends it.
async fn replay(deps: &Deps, topo: &Topology, env: &FailureEnvelope) -> Result<()> {
    let Some(mut run) = deps.meta.get_run(&env.file_id).await? else {
        anyhow::bail!("no ledger entry for {}: the envelope cannot be replayed", env.file_id);
    };
    let (target, body) = if env.function == "ingestion-router" || run.source.is_none() {
        let body = layer::s3event::notification(&run.bucket, &run.key, run.version_id.as_deref(), 1);
        run.stage = "router".into();
        (topo.ingest_queue.clone(), body)
    } else {
        let source = run.source.clone().unwrap_or_default();
        // after a fix the source's current contract applies
        let current = deps.meta.current_contract(&source).await?;
        let version = current.as_ref().map(|c| c.version).or(run.contract_version).unwrap_or(1);
        let contract = current.map(|c| c.toml).unwrap_or_default();
        let family = Contract::from_toml_str(&contract, &source, &Catalog::builtin())
            .map(|c| c.format.family().to_string());
        let w = layer::pipeline::WorkMessage {
            file_id: run.file_id.clone(),
            bucket: run.bucket.clone(),
            key: run.key.clone(),
            version_id: run.version_id.clone(),
            source,
            dataset: run.dataset.clone().unwrap_or_else(|| "encounter".into()),
            contract_version: version,
        };
        run.stage = "queued".into();
        run.contract_version = Some(version);
        let queue = match family.as_deref() {
            Ok(f) => deps.cfg.family_queue(f).to_string(),
            Err(_) if !env.source_queue.is_empty() => env.source_queue.clone(),
            Err(_) => deps.cfg.queue_delimited.clone(),
        };
        (queue, serde_json::to_string(&w)?)
    };
    run.status = Status::Received;
    run.error_kind = None;
    run.error_message = None;
    run.updated_at = now();
    deps.meta.put_run(&run).await?;
    deps.queue.send(&target, &body).await?;
    Ok(())
}

/// The ledger as rows for a table, newest first.
pub async fn status(deps: &Deps) -> Result<Vec<RunRecord>> {
    let mut runs = deps.meta.list_runs().await?;
    runs.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.file_id.cmp(&b.file_id)));
    Ok(runs)
}

/// Formats runs as the table `lake run` and `lake status` print (no key text unless asked).
pub fn table(runs: &[RunRecord], show_keys: bool) -> String {
    let mut s = format!(
        "{:<16}  {:<16}  {:<11}  {:<16}  {:>8}  {:>6}  {:>9}  {:>7}  {}\n",
        "file_id",
        "source",
        "status",
        "stage",
        "good",
        "bad",
        "malformed",
        "seconds",
        if show_keys { "key / error" } else { "error" }
    );
    for r in runs {
        let err = r.error_kind.clone().unwrap_or_default();
        let last = if show_keys { format!("{} {}", r.key, err) } else { err };
        s.push_str(&format!(
            "{:<16}  {:<16}  {:<11}  {:<16}  {:>8}  {:>6}  {:>9}  {:>7.2}  {}\n",
            r.file_id,
            r.source.as_deref().unwrap_or("-"),
            r.status.as_str(),
            r.stage,
            r.counts.good,
            r.counts.bad,
            r.counts.malformed,
            r.seconds,
            last.trim()
        ));
    }
    s
}

/// One object version and what the ledger says of it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRow {
    pub file_id: String,
    pub key_hash: String,
    pub version_id: Option<String>,
    /// DONE | FAILED+DLQ | IN_FLIGHT | AT_RISK
    pub verdict: &'static str,
    pub why: String,
}

/// The no-loss check: every object version in the ingestion bucket must be DONE, FAILED with
/// its envelope in the DLQ, or in flight for less than `max_in_flight_secs`. Anything else is
/// at risk. The DLQ is read without consuming it.
pub async fn audit(deps: &Deps, topo: &Topology, max_in_flight_secs: i64) -> Result<Vec<AuditRow>> {
    let versions = deps.store.list_versions(&topo.ingest_bucket, "").await?;
    // envelopes in the DLQ, by file id (peek: receive, then release)
    let mut enveloped = std::collections::HashSet::new();
    let mut taken = Vec::new();
    loop {
        let msgs = deps.queue.receive(&deps.cfg.dlq, 10).await?;
        if msgs.is_empty() {
            break;
        }
        for m in msgs {
            if let Ok(e) = serde_json::from_str::<FailureEnvelope>(&m.body) {
                enveloped.insert(e.file_id);
            }
            taken.push(m.receipt);
        }
    }
    for r in taken {
        deps.queue.release(&deps.cfg.dlq, &r).await?;
    }
    let now_t = chrono::Utc::now();
    let mut rows = Vec::new();
    for v in versions {
        if v.key.ends_with('/') || v.key.rsplit('/').next().is_some_and(|n| n.starts_with('.')) {
            continue;
        }
        let id = layer::ledger::file_id(&topo.ingest_bucket, &v.key, v.version_id.as_deref());
        let run = deps.meta.get_run(&id).await?;
        let (verdict, why) = match &run {
            Some(r) if r.status == Status::Done => ("DONE", String::new()),
            Some(r) if r.status == Status::Failed && enveloped.contains(&id) => {
                ("FAILED+DLQ", r.error_kind.clone().unwrap_or_default())
            }
            Some(r) if r.status == Status::Failed => ("AT_RISK", "FAILED but no envelope in the DLQ".into()),
            Some(r) => {
                let age = chrono::DateTime::parse_from_rfc3339(&r.updated_at)
                    .map(|t| (now_t - t.with_timezone(&chrono::Utc)).num_seconds())
                    .unwrap_or(i64::MAX);
                if age <= max_in_flight_secs {
                    ("IN_FLIGHT", format!("{} / {} for {age}s", r.status.as_str(), r.stage))
                } else {
                    ("AT_RISK", format!("{} / {} for {age}s", r.status.as_str(), r.stage))
                }
            }
            None => ("AT_RISK", "no ledger entry: never routed".into()),
        };
        rows.push(AuditRow {
            file_id: id,
            key_hash: layer::key_hash(&v.key),
            version_id: v.version_id.clone(),
            verdict,
            why,
        });
    }
    Ok(rows)
}

/// AWS adapters for everything, named by environment variables (for `--backend aws`).
pub async fn aws_deps() -> Result<(Deps, Topology)> {
    use layer::config::{names, opt, var};
    let cfg = PipelineConfig {
        queue_delimited: var(names::QUEUE_DELIMITED)?,
        queue_json: var(names::QUEUE_JSON)?,
        dlq: var(names::DLQ_URL)?,
        alert_topic: var(names::ALERT_TOPIC_ARN)?,
        raw_bucket: var(names::RAW_BUCKET)?,
        quarantine_bucket: var(names::QUARANTINE_BUCKET)?,
        kms_key: opt(names::KMS_KEY_ID),
        pii_queue: var(names::PII_QUEUE_URL)?,
    };
    let topo =
        Topology { ingest_bucket: var("LAKE_INGEST_BUCKET")?, ingest_queue: var("LAKE_INGEST_QUEUE_URL")? };
    Ok((Deps::aws(cfg).await?, topo))
}

/// Uploads every file under `dir` to the ingestion bucket, keyed by its path relative to `dir`.
pub async fn upload_dir(deps: &Deps, topo: &Topology, dir: &Path) -> Result<usize> {
    let local = LocalObjectStore::new(dir).with_bucket("d", dir);
    let files = layer::ports::ObjectStore::list_versions(&local, "d", "").await?;
    for f in &files {
        let body = std::fs::read(dir.join(&f.key))?;
        deps.store.put(&topo.ingest_bucket, &f.key, body, deps.cfg.kms_key.as_deref()).await?;
    }
    Ok(files.len())
}
