//! Driving the pipeline in-process: queues are drained into the real handlers with real SQS
//! event JSON, exactly as Lambda's event source mapping would, including partial batch failures
//! and receive counts. The pii queue is drained into the pii-matching handler when a person file
//! is given (`lake run --people`): persons in memory, proposals in a review store under the lake.

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
use pii_matching::handler::MatchDeps;

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

/// Deletes the messages a handler processed and releases the ones it reported as failed (SQS
/// makes them visible again, with a higher receive count).
async fn settle(
    deps: &Deps,
    queue: &str,
    msgs: &[layer::ports::Received],
    resp: &aws_lambda_events::sqs::SqsBatchResponse,
) -> Result<()> {
    let failed: Vec<&str> = resp.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    for m in msgs {
        if failed.contains(&m.message_id.as_str()) {
            deps.queue.release(queue, &m.receipt).await?;
        } else {
            deps.queue.delete(queue, &m.receipt).await?;
        }
    }
    Ok(())
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
            settle(deps, queue, &msgs, &resp).await?;
        }
        if !any {
            return Ok(invocations);
        }
    }
    anyhow::bail!("queues did not drain")
}

/// The columns of a person file (`lake run --people`), as in the county's person extract.
pub use pii_matching::index::PERSON_COLUMNS as PEOPLE_COLUMNS;

/// The column names of a person file: the header line of a CSV, the schema of a Parquet file.
fn people_columns(path: &Path) -> Result<Vec<String>> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")) {
        let bytes = std::fs::read(path).with_context(|| format!("people file {}", path.display()))?;
        let b = pii_matching::rows::read_parquet(bytes)
            .map_err(|e| anyhow::anyhow!("people file {}: {e}", path.display()))?;
        return Ok(b.schema().fields().iter().map(|f| f.name().clone()).collect());
    }
    use std::io::BufRead;
    let f = std::fs::File::open(path).with_context(|| format!("people file {}", path.display()))?;
    let mut line = String::new();
    std::io::BufReader::new(f)
        .read_line(&mut line)
        .with_context(|| format!("people file {}: cannot read the header line", path.display()))?;
    Ok(line
        .trim_start_matches('\u{feff}')
        .trim_end()
        .split(',')
        .map(|c| c.trim().trim_matches('"').to_string())
        .filter(|c| !c.is_empty())
        .collect())
}

/// Loads a person file (CSV with a header line, or `.parquet`) into the in-memory index. The
/// columns are checked first, so a wrong file fails naming the file and every missing column
/// (values are never quoted).
pub fn load_people(path: &Path) -> Result<pii_matching::MemoryIndex> {
    if !path.is_file() {
        anyhow::bail!("people file {}: no such file", path.display());
    }
    let have = people_columns(path)?;
    let missing: Vec<&str> =
        PEOPLE_COLUMNS.iter().copied().filter(|c| !have.iter().any(|h| h == c)).collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "people file {}: missing column(s) {} (expected {})",
            path.display(),
            missing.join(", "),
            PEOPLE_COLUMNS.join(",")
        );
    }
    pii_matching::MemoryIndex::load(path).map_err(|e| anyhow::anyhow!("people file {}: {e}", path.display()))
}

/// The review store of the embedded lake under `root` (`<root>/reviews/reviews.json`).
pub fn review_store(root: &Path) -> pii_matching::review_store::LocalReviews {
    pii_matching::review_store::LocalReviews::new(root.join("reviews"))
}

/// The pii-matching handler's dependencies for the embedded lake: the pipeline's ports, the
/// persons of `people` in memory (the same `PersonIndex` port the PostgreSQL adapter
/// implements), proposals in the lake's review store, and the built-in rules.
pub fn local_matching(deps: &Deps, root: &Path, people: &Path) -> Result<(MatchDeps, usize)> {
    let index = load_people(people)?;
    let n = index.len();
    let reviews = review_store(root);
    let abs = people.canonicalize().unwrap_or_else(|_| people.to_path_buf());
    reviews.set_people_file(&abs)?;
    let m = MatchDeps {
        pipeline: deps.clone(),
        index: Arc::new(index),
        reviews: Arc::new(reviews),
        matcher: Arc::new(pii_matching::Matcher::new(pii_matching::Rules::builtin())),
    };
    Ok((m, n))
}

/// Drains the pii queue through the real `pii_matching::handler` (the Lambda's code path:
/// batches of 10 as SQS event JSON, partial batch failures retried, then DLQ). Returns the
/// number of handler invocations.
pub async fn drain_matching(m: &MatchDeps) -> Result<usize> {
    let deps = &m.pipeline;
    let queue = deps.cfg.pii_queue.clone();
    for invocations in 0..10_000 {
        let msgs = deps.queue.receive(&queue, 10).await?;
        if msgs.is_empty() {
            return Ok(invocations);
        }
        let resp = pii_matching::handler::handle(m, to_event(&msgs)).await;
        settle(deps, &queue, &msgs, &resp).await?;
    }
    anyhow::bail!("the pii queue did not drain")
}

/// What matching did with one file's bad rows (from its `quarantine/matching/...match.json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchCounts {
    /// Matched exactly and completed into the dataset (`*.matched.parquet`).
    pub matched: u64,
    /// Matched exactly but a missing field is not in the person index: left in quarantine.
    pub incomplete: u64,
    /// Proposed for review.
    pub proposed: u64,
    /// No match: left in quarantine with reason `unmatched`.
    pub unmatched: u64,
}

impl std::ops::AddAssign for MatchCounts {
    fn add_assign(&mut self, o: Self) {
        self.matched += o.matched;
        self.incomplete += o.incomplete;
        self.proposed += o.proposed;
        self.unmatched += o.unmatched;
    }
}

/// The match counts of every run that has a matching report among its outputs, by file id.
pub async fn match_counts(deps: &Deps, runs: &[RunRecord]) -> Result<HashMap<String, MatchCounts>> {
    let prefix = format!("{}/", deps.cfg.quarantine_bucket);
    let mut out = HashMap::new();
    for r in runs {
        let Some(key) = r.outputs.iter().find_map(|o| {
            o.strip_prefix(&prefix).filter(|k| k.starts_with("matching/") && k.ends_with(".match.json"))
        }) else {
            continue;
        };
        let body = deps.store.get(&deps.cfg.quarantine_bucket, key, None).await?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .with_context(|| format!("the matching report of {} is not JSON", r.file_id))?;
        let n = |f: &str| v["summary"][f].as_u64().unwrap_or_default();
        out.insert(
            r.file_id.clone(),
            MatchCounts {
                matched: n("completed"),
                incomplete: n("incomplete"),
                proposed: n("proposed"),
                unmatched: n("unmatched"),
            },
        );
    }
    Ok(out)
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

/// Formats runs as the table `lake redrive` prints (no key text unless asked).
pub fn table(runs: &[RunRecord], show_keys: bool) -> String {
    table_with(runs, None, show_keys)
}

/// The table of `lake run` and `lake status`: with `matching`, three more columns (rows matched
/// and completed, proposed for review, unmatched; `-` where nothing was matched).
pub fn table_with(
    runs: &[RunRecord],
    matching: Option<&HashMap<String, MatchCounts>>,
    show_keys: bool,
) -> String {
    let mcols = |a: &str, b: &str, c: &str| match matching {
        Some(_) => format!("  {a:>7}  {b:>8}  {c:>9}"),
        None => String::new(),
    };
    let mut s = format!(
        "{:<16}  {:<16}  {:<11}  {:<16}  {:>8}  {:>6}  {:>9}{}  {:>7}  {}\n",
        "file_id",
        "source",
        "status",
        "stage",
        "good",
        "bad",
        "malformed",
        mcols("matched", "proposed", "unmatched"),
        "seconds",
        if show_keys { "key / error" } else { "error" }
    );
    for r in runs {
        let err = r.error_kind.clone().unwrap_or_default();
        let last = if show_keys { format!("{} {}", r.key, err) } else { err };
        let m = match matching.and_then(|m| m.get(&r.file_id)) {
            Some(c) => mcols(&c.matched.to_string(), &c.proposed.to_string(), &c.unmatched.to_string()),
            None => mcols("-", "-", "-"),
        };
        s.push_str(&format!(
            "{:<16}  {:<16}  {:<11}  {:<16}  {:>8}  {:>6}  {:>9}{m}  {:>7.2}  {}\n",
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
