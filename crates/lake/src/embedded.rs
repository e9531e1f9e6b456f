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
use layer::ledger::RunRecord;
use layer::local::LocalObjectStore;
use layer::pipeline::{Deps, PipelineConfig, SqsInvocation};
use layer::FormatFamily;
use pii_matching::handler::MatchDeps;

/// The operations (status, audit, redrive) live in the library, shared with any scheduled job.
pub use layer::ops::{audit, redrive, status, AuditRow, RedriveFilter, RedriveReport, StageDlq, Topology};

/// The embedded lake under `root`: folders for buckets, queues and topics, JSON for the ledger.
pub fn local_deps(root: &Path, ingest_dir: Option<&Path>) -> (Deps, Topology) {
    let mut store = LocalObjectStore::new(root.join("buckets"));
    if let Some(d) = ingest_dir {
        store = store.with_bucket("ingest", d);
    }
    let deps = layer::local::local_deps(root, store);
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

/// The SQS event JSON and invocation context Lambda's event source mapping would hand the
/// handler for `msgs` (a fresh request id per invocation, as Lambda gives).
fn to_event(msgs: &[layer::ports::Received]) -> SqsInvocation {
    static INVOCATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = INVOCATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut ctx = lambda_runtime::Context::default();
    ctx.request_id = format!("local-{}-{n:06}", std::process::id());
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
    lambda_runtime::LambdaEvent::new(ev, ctx)
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
    let stages: Vec<(String, Option<FormatFamily>)> = vec![
        (topo.ingest_queue.clone(), None),
        (deps.cfg.queue_delimited.clone(), Some(FormatFamily::Delimited)),
        (deps.cfg.queue_json.clone(), Some(FormatFamily::Json)),
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
                Some(f) => semi_structured_workflow::handle(deps, *f, to_event(&msgs)).await,
            };
            settle(deps, queue, &msgs, &resp).await?;
        }
        if !any {
            return Ok(invocations);
        }
    }
    anyhow::bail!("queues did not drain")
}

/// Loads a person file (CSV or Parquet with the index's column names, or the county export's
/// through `mapping`) into the in-memory index, through the reader `lake people load` uses: every
/// value normalised, a missing column named, and any rejected row (by line and reason, never a
/// value) fails the load.
pub fn load_people_mapped(
    path: &Path,
    mapping: &pii_matching::people::PeopleMapping,
) -> Result<pii_matching::MemoryIndex> {
    if !path.is_file() {
        anyhow::bail!("people file {}: no such file", path.display());
    }
    pii_matching::MemoryIndex::load_mapped(path, mapping).map_err(|e| anyhow::anyhow!("{e}"))
}

/// [`load_people_mapped`] with the index's own column names.
pub fn load_people(path: &Path) -> Result<pii_matching::MemoryIndex> {
    load_people_mapped(path, &pii_matching::people::PeopleMapping::identity())
}

/// The review store of the embedded lake under `root` (`<root>/reviews/reviews.json`).
pub fn review_store(root: &Path) -> pii_matching::review_store::LocalReviews {
    pii_matching::review_store::LocalReviews::new(root.join("reviews"))
}

/// The pii-matching handler's dependencies for the embedded lake: the pipeline's ports, the
/// persons of `people` in memory (the same `PersonIndex` port the PostgreSQL adapter
/// implements), proposals in the lake's review store, and the rules published under the lake
/// (`lake rules publish --lake`; the built-in rules while none is).
pub fn local_matching(deps: &Deps, root: &Path, people: &Path) -> Result<(MatchDeps, usize)> {
    local_matching_mapped(deps, root, people, &pii_matching::people::PeopleMapping::identity())
}

/// [`local_matching`] with the person file read through `mapping`.
pub fn local_matching_mapped(
    deps: &Deps,
    root: &Path,
    people: &Path,
    mapping: &pii_matching::people::PeopleMapping,
) -> Result<(MatchDeps, usize)> {
    let index = load_people_mapped(people, mapping)?;
    let n = index.len();
    let reviews = review_store(root);
    let abs = people.canonicalize().unwrap_or_else(|_| people.to_path_buf());
    reviews.set_people_file(&abs)?;
    let m = MatchDeps {
        pipeline: deps.clone(),
        index: Arc::new(index),
        reviews: Arc::new(reviews),
        matcher: Arc::new(pii_matching::rules_store::ActiveRules::published(
            Arc::new(pii_matching::rules_store::LocalRules::in_lake(root)),
            pii_matching::rules_store::DEFAULT_TTL,
        )),
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
    for o in objs.iter().filter(|o| o.is_latest && !o.key.is_hidden()) {
        let ev = layer::s3event::notification(
            &topo.ingest_bucket,
            o.key.expose(),
            o.version_id.as_deref(),
            o.size,
        );
        deps.queue.send(&topo.ingest_queue, &ev).await?;
        n += 1;
    }
    Ok(n)
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
        let err = match (&r.error_kind, &r.duplicate_of) {
            (Some(k), _) => k.to_string(),
            (None, Some(d)) => format!("duplicate of {d}"),
            (None, None) => String::new(),
        };
        let last = if show_keys { format!("{} {}", r.key.expose(), err) } else { err };
        let m = match matching.and_then(|m| m.get(&r.file_id)) {
            Some(c) => mcols(&c.matched.to_string(), &c.proposed.to_string(), &c.unmatched.to_string()),
            None => mcols("-", "-", "-"),
        };
        s.push_str(&format!(
            "{:<16}  {:<16}  {:<11}  {:<16}  {:>8}  {:>6}  {:>9}{m}  {:>7.2}  {}\n",
            r.file_id,
            r.source.as_deref().unwrap_or("-"),
            r.status.as_str(),
            r.stage.as_str(),
            r.counts.good,
            r.counts.bad,
            r.counts.malformed,
            r.seconds,
            last.trim()
        ));
    }
    s
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
        let body = std::fs::read(dir.join(f.key.expose()))?;
        deps.store.put(&topo.ingest_bucket, f.key.expose(), body, deps.cfg.kms_key.as_deref()).await?;
    }
    Ok(files.len())
}

/// The stage DLQs (`lake redrive` moves their raw messages back): in the embedded lake the
/// queues `<stage>-dlq`; with AWS, `LAKE_STAGE_DLQS` as comma-separated `DLQ_URL=QUEUE_URL` pairs.
pub fn stage_dlqs(backend: layer::Backend, deps: &Deps, topo: &Topology) -> Result<Vec<StageDlq>> {
    if backend == layer::Backend::Local {
        let queues =
            [&topo.ingest_queue, &deps.cfg.queue_delimited, &deps.cfg.queue_json, &deps.cfg.pii_queue];
        return Ok(queues
            .iter()
            .map(|q| StageDlq { dlq: format!("{q}-dlq"), queue: (*q).clone() })
            .collect());
    }
    let Some(list) = layer::config::opt("LAKE_STAGE_DLQS") else { return Ok(vec![]) };
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((d, q)) if !d.is_empty() && !q.is_empty() => Ok(StageDlq { dlq: d.into(), queue: q.into() }),
            _ => anyhow::bail!("LAKE_STAGE_DLQS: `{p}` is not DLQ_URL=QUEUE_URL"),
        })
        .collect()
}
