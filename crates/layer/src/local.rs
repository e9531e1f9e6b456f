//! Local adapters: folders stand in for buckets, queues and topics, JSON files for the ledger.
//! `lake run` uses them so the whole pipeline runs on a laptop with no services.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use crate::ledger::{now, PublishedContract, RunRecord};
use crate::ports::{GuardFlag, Metadata, Notifier, ObjectStore, ObjectVersion, PortError, Queue, Received};

fn io(service: &'static str, op: &'static str, e: std::io::Error) -> PortError {
    PortError::new(service, op, e.to_string(), true)
}

/// Joins a key under a root, refusing keys that would leave it.
fn under(root: &Path, key: &str) -> Result<PathBuf, PortError> {
    let rel = Path::new(key);
    if key.is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(PortError::new(
            "local-store",
            "path",
            "object key is empty, absolute or has `..`",
            false,
        ));
    }
    Ok(root.join(rel))
}

/// The embedded lake's names: queues, topic and buckets as the local adapters keep them.
pub fn embedded_config() -> crate::pipeline::PipelineConfig {
    crate::pipeline::PipelineConfig {
        queue_delimited: "work-delimited".into(),
        queue_json: "work-json".into(),
        dlq: "dlq".into(),
        alert_topic: "alerts".into(),
        raw_bucket: "raw".into(),
        quarantine_bucket: "quarantine".into(),
        kms_key: None,
        pii_queue: "pii".into(),
    }
}

/// Local adapters under `root` (queues, topics as folders, the ledger as JSON) around `store`,
/// with the embedded lake's names: what `lake run` and the handler tests build on.
pub fn local_deps(root: &Path, store: LocalObjectStore) -> crate::pipeline::Deps {
    crate::pipeline::Deps {
        store: std::sync::Arc::new(store),
        queue: std::sync::Arc::new(LocalQueue::new(root.join("queues"))),
        notifier: std::sync::Arc::new(LocalNotifier::new(root.join("topics"))),
        meta: std::sync::Arc::new(LocalMetadata::new(root.join("meta"))),
        cfg: embedded_config(),
    }
}

/// Buckets as folders: a bucket is mapped to a folder, or to `<root>/<bucket>`.
pub struct LocalObjectStore {
    root: PathBuf,
    map: HashMap<String, PathBuf>,
}

impl LocalObjectStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), map: HashMap::new() }
    }

    /// Serves `bucket` from `dir` (e.g. the folder a user points `lake run` at).
    pub fn with_bucket(mut self, bucket: &str, dir: impl Into<PathBuf>) -> Self {
        self.map.insert(bucket.into(), dir.into());
        self
    }

    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.map.get(bucket).cloned().unwrap_or_else(|| self.root.join(bucket))
    }
}

#[async_trait]
impl ObjectStore for LocalObjectStore {
    async fn get(&self, bucket: &str, key: &str, _version: Option<&str>) -> Result<Vec<u8>, PortError> {
        let p = under(&self.bucket_dir(bucket), key)?;
        tokio::fs::read(&p).await.map_err(|e| {
            let nf = e.kind() == std::io::ErrorKind::NotFound;
            PortError::new(
                "local-store",
                "get",
                if nf { "no such object".into() } else { e.to_string() },
                !nf,
            )
        })
    }

    async fn open(
        &self,
        bucket: &str,
        key: &str,
        _version: Option<&str>,
    ) -> Result<crate::ports::ObjectReader, PortError> {
        let p = under(&self.bucket_dir(bucket), key)?;
        match std::fs::File::open(&p) {
            Ok(f) => Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, f))),
            Err(e) => {
                let nf = e.kind() == std::io::ErrorKind::NotFound;
                Err(PortError::new(
                    "local-store",
                    "open",
                    if nf { "no such object".into() } else { e.to_string() },
                    !nf,
                ))
            }
        }
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, _kms: Option<&str>) -> Result<(), PortError> {
        let p = under(&self.bucket_dir(bucket), key)?;
        if let Some(d) = p.parent() {
            tokio::fs::create_dir_all(d).await.map_err(|e| io("local-store", "put", e))?;
        }
        // write then rename: a reader never sees half an object
        let tmp = p.with_extension("partial");
        tokio::fs::write(&tmp, body).await.map_err(|e| io("local-store", "put", e))?;
        tokio::fs::rename(&tmp, &p).await.map_err(|e| io("local-store", "put", e))
    }

    async fn create(
        &self,
        bucket: &str,
        key: &str,
        _kms: Option<&str>,
    ) -> Result<crate::ports::ObjectWriter, PortError> {
        let p = under(&self.bucket_dir(bucket), key)?;
        Ok(Box::new(LocalSink::create(p)?))
    }

    async fn list_versions(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectVersion>, PortError> {
        let root = self.bucket_dir(bucket);
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                let p = e.path();
                let Ok(md) = e.metadata() else { continue };
                if md.is_dir() {
                    stack.push(p);
                    continue;
                }
                let Ok(rel) = p.strip_prefix(&root) else { continue };
                let key = rel.to_string_lossy().replace('\\', "/");
                if key.starts_with(prefix) && !key.ends_with(".partial") {
                    let modified: chrono::DateTime<chrono::Utc> =
                        md.modified().map(Into::into).unwrap_or_else(|_| chrono::Utc::now());
                    out.push(ObjectVersion {
                        key: key.into(),
                        version_id: None,
                        size: md.len(),
                        last_modified: modified.to_rfc3339(),
                        is_latest: true,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

/// A new local object: written to a temporary file beside it (named `*.partial`, which
/// listings skip) and renamed into place on commit, so a reader never sees half an object;
/// removed when aborted or dropped.
pub struct LocalSink {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    written: u64,
}

/// Tells apart the temporary files of objects written at the same time.
static SINK_SEQ: AtomicU64 = AtomicU64::new(0);

impl LocalSink {
    fn create(path: PathBuf) -> Result<Self, PortError> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| io("local-store", "create", e))?;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let seq = SINK_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_file_name(format!(".{name}.{}-{seq}.partial", std::process::id()));
        let file = std::fs::File::create(&tmp).map_err(|e| io("local-store", "create", e))?;
        Ok(Self { path, tmp, file: Some(std::io::BufWriter::with_capacity(1 << 20, file)), written: 0 })
    }

    fn file(&mut self) -> std::io::Result<&mut std::io::BufWriter<std::fs::File>> {
        self.file.as_mut().ok_or_else(|| std::io::Error::other("the object was already closed"))
    }
}

impl std::io::Write for LocalSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.file()?.write(data)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file()?.flush()
    }
}

#[async_trait]
impl crate::ports::ObjectSink for LocalSink {
    fn written(&self) -> u64 {
        self.written
    }

    fn failure(&self) -> Option<PortError> {
        None
    }

    async fn commit(mut self: Box<Self>) -> Result<(), PortError> {
        let file =
            self.file.take().ok_or_else(|| PortError::new("local-store", "commit", "closed", false))?;
        let file = file.into_inner().map_err(|e| io("local-store", "commit", e.into_error()))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(|e| io("local-store", "commit", e))
    }

    async fn abort(self: Box<Self>) -> Result<(), PortError> {
        Ok(()) // dropping removes the temporary file
    }
}

impl Drop for LocalSink {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            drop(file.into_parts()); // without writing out what is buffered
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Queues as folders: `<root>/<queue>/` holds waiting messages, `<root>/<queue>/inflight/` taken ones.
pub struct LocalQueue {
    root: PathBuf,
    seq: AtomicU64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredMessage {
    id: String,
    body: String,
    receive_count: u32,
}

impl LocalQueue {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), seq: AtomicU64::new(0) }
    }

    fn dir(&self, queue: &str) -> Result<PathBuf, PortError> {
        under(&self.root, queue)
    }

    fn next_name(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let t = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        format!("{t:020}-{}-{n:08}.json", std::process::id())
    }

    fn write(&self, dir: &Path, name: &str, m: &StoredMessage) -> Result<(), PortError> {
        std::fs::create_dir_all(dir).map_err(|e| io("local-queue", "send", e))?;
        let body =
            serde_json::to_vec(m).map_err(|e| PortError::new("local-queue", "send", e.to_string(), false))?;
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, body).map_err(|e| io("local-queue", "send", e))?;
        std::fs::rename(&tmp, dir.join(name)).map_err(|e| io("local-queue", "send", e))
    }

    /// Messages waiting in a queue (for `lake redrive` and tests).
    pub fn depth(&self, queue: &str) -> usize {
        self.dir(queue)
            .ok()
            .and_then(|d| std::fs::read_dir(d).ok())
            .map(|rd| rd.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "json")).count())
            .unwrap_or(0)
    }
}

#[async_trait]
impl Queue for LocalQueue {
    async fn send(&self, queue: &str, body: &str) -> Result<(), PortError> {
        let name = self.next_name();
        let m =
            StoredMessage { id: name.trim_end_matches(".json").into(), body: body.into(), receive_count: 0 };
        self.write(&self.dir(queue)?, &name, &m)
    }

    async fn receive(&self, queue: &str, max: usize) -> Result<Vec<Received>, PortError> {
        let dir = self.dir(queue)?;
        let Ok(rd) = std::fs::read_dir(&dir) else { return Ok(vec![]) };
        let mut names: Vec<String> = rd
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        let inflight = dir.join("inflight");
        let mut out = Vec::new();
        for name in names.into_iter().take(max) {
            let p = dir.join(&name);
            let Ok(bytes) = std::fs::read(&p) else { continue };
            let Ok(mut m) = serde_json::from_slice::<StoredMessage>(&bytes) else { continue };
            m.receive_count += 1;
            self.write(&inflight, &name, &m)?;
            std::fs::remove_file(&p).map_err(|e| io("local-queue", "receive", e))?;
            out.push(Received {
                message_id: m.id,
                body: m.body,
                sent_at_ms: name
                    .split('-')
                    .next()
                    .and_then(|t| t.parse::<i64>().ok())
                    .map(|ns| ns / 1_000_000),
                receipt: name,
                receive_count: m.receive_count,
            });
        }
        Ok(out)
    }

    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), PortError> {
        let p = under(&self.dir(queue)?.join("inflight"), receipt)?;
        match std::fs::remove_file(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("local-queue", "delete", e)),
            _ => Ok(()),
        }
    }

    async fn release(&self, queue: &str, receipt: &str) -> Result<(), PortError> {
        let dir = self.dir(queue)?;
        let from = under(&dir.join("inflight"), receipt)?;
        std::fs::rename(&from, dir.join(receipt)).map_err(|e| io("local-queue", "release", e))
    }
}

/// Topics as files: every message appended as one JSON line to `<root>/<topic>.jsonl`.
pub struct LocalNotifier {
    root: PathBuf,
}

impl LocalNotifier {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

#[async_trait]
impl Notifier for LocalNotifier {
    async fn publish(&self, topic: &str, subject: &str, message: &str) -> Result<(), PortError> {
        use std::io::Write;
        std::fs::create_dir_all(&self.root).map_err(|e| io("local-topic", "publish", e))?;
        let p = under(&self.root, &format!("{topic}.jsonl"))?;
        let line = serde_json::json!({"at": now(), "subject": subject, "message": message}).to_string();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| io("local-topic", "publish", e))?;
        writeln!(f, "{line}").map_err(|e| io("local-topic", "publish", e))
    }
}

/// The ledger and the published contracts as JSON and TOML files.
pub struct LocalMetadata {
    root: PathBuf,
}

impl LocalMetadata {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn run_path(&self, file_id: &str) -> Result<PathBuf, PortError> {
        under(&self.root.join("runs"), &format!("{file_id}.json"))
    }

    fn source_dir(&self, source: &str) -> Result<PathBuf, PortError> {
        under(&self.root.join("datasets"), source)
    }
}

fn ser(op: &'static str, e: serde_json::Error) -> PortError {
    PortError::new("local-metadata", op, e.to_string(), false)
}

#[async_trait]
impl Metadata for LocalMetadata {
    async fn put_run_if_absent(&self, run: &RunRecord) -> Result<bool, PortError> {
        let p = self.run_path(&run.file_id)?;
        std::fs::create_dir_all(p.parent().unwrap_or(&self.root))
            .map_err(|e| io("local-metadata", "put", e))?;
        let body = serde_json::to_vec_pretty(run).map_err(|e| ser("put", e))?;
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&p) {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(&body).map_err(|e| io("local-metadata", "put", e))?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io("local-metadata", "put", e)),
        }
    }

    async fn put_run(&self, run: &RunRecord) -> Result<(), PortError> {
        let p = self.run_path(&run.file_id)?;
        std::fs::create_dir_all(p.parent().unwrap_or(&self.root))
            .map_err(|e| io("local-metadata", "put", e))?;
        let body = serde_json::to_vec_pretty(run).map_err(|e| ser("put", e))?;
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, body).map_err(|e| io("local-metadata", "put", e))?;
        std::fs::rename(&tmp, &p).map_err(|e| io("local-metadata", "put", e))
    }

    /// Read, then write: the embedded pipeline runs one message at a time, so nothing writes
    /// between the two (DynamoDB's adapter makes it one conditional write).
    async fn put_run_unless_done(&self, run: &RunRecord) -> Result<bool, PortError> {
        if self.get_run(&run.file_id).await?.is_some_and(|r| r.status == crate::ledger::Status::Done) {
            return Ok(false);
        }
        self.put_run(run).await.map(|()| true)
    }

    async fn get_run(&self, file_id: &str) -> Result<Option<RunRecord>, PortError> {
        match std::fs::read(self.run_path(file_id)?) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| ser("get", e))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("local-metadata", "get", e)),
        }
    }

    async fn list_runs(&self) -> Result<Vec<RunRecord>, PortError> {
        let Ok(rd) = std::fs::read_dir(self.root.join("runs")) else { return Ok(vec![]) };
        let mut out = Vec::new();
        for e in rd.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "json")) {
            let b = std::fs::read(e.path()).map_err(|e| io("local-metadata", "list", e))?;
            out.push(serde_json::from_slice(&b).map_err(|e| ser("list", e))?);
        }
        Ok(out)
    }

    async fn publish_contract(&self, source: &str, dataset: &str, toml: &str) -> Result<u32, PortError> {
        let dir = self.source_dir(source)?;
        std::fs::create_dir_all(&dir).map_err(|e| io("local-metadata", "publish", e))?;
        let version = self.current_contract(source).await?.map_or(1, |c| c.version + 1);
        let pc = PublishedContract {
            source: source.into(),
            dataset: dataset.into(),
            version,
            toml: toml.into(),
            published_at: now(),
        };
        let body = serde_json::to_vec_pretty(&pc).map_err(|e| ser("publish", e))?;
        std::fs::write(dir.join(format!("v{version:04}.json")), &body)
            .map_err(|e| io("local-metadata", "publish", e))?;
        std::fs::write(dir.join("current.json"), &body).map_err(|e| io("local-metadata", "publish", e))?;
        Ok(version)
    }

    async fn current_contract(&self, source: &str) -> Result<Option<PublishedContract>, PortError> {
        match std::fs::read(self.source_dir(source)?.join("current.json")) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| ser("get", e))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("local-metadata", "get", e)),
        }
    }

    async fn contract_version(
        &self,
        source: &str,
        version: u32,
    ) -> Result<Option<PublishedContract>, PortError> {
        match std::fs::read(self.source_dir(source)?.join(format!("v{version:04}.json"))) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| ser("get", e))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("local-metadata", "get", e)),
        }
    }

    async fn set_dataset_status(
        &self,
        source: &str,
        status: crate::ledger::Status,
        file_id: &str,
    ) -> Result<(), PortError> {
        let dir = self.source_dir(source)?;
        std::fs::create_dir_all(&dir).map_err(|e| io("local-metadata", "status", e))?;
        let body = serde_json::json!({"last_status": status.as_str(), "last_file_id": file_id, "at": now()})
            .to_string();
        std::fs::write(dir.join("status.json"), body).map_err(|e| io("local-metadata", "status", e))
    }

    async fn list_contracts(&self) -> Result<Vec<PublishedContract>, PortError> {
        let Ok(rd) = std::fs::read_dir(self.root.join("datasets")) else { return Ok(vec![]) };
        let mut out = Vec::new();
        for e in rd.flatten() {
            match std::fs::read(e.path().join("current.json")) {
                Ok(b) => out.push(serde_json::from_slice(&b).map_err(|e| ser("list", e))?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("local-metadata", "list", e)),
            }
        }
        out.sort_by(|a: &PublishedContract, b| a.source.cmp(&b.source));
        Ok(out)
    }

    async fn content_owner(&self, source: &str, sha256: &str) -> Result<Option<String>, PortError> {
        let p = under(&self.source_dir(source)?.join("content"), sha256)?;
        match std::fs::read_to_string(p) {
            Ok(id) => Ok(Some(id.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("local-metadata", "content", e)),
        }
    }

    async fn claim_content(&self, source: &str, sha256: &str, file_id: &str) -> Result<String, PortError> {
        let dir = self.source_dir(source)?.join("content");
        std::fs::create_dir_all(&dir).map_err(|e| io("local-metadata", "content", e))?;
        let p = under(&dir, sha256)?;
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&p) {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(file_id.as_bytes()).map_err(|e| io("local-metadata", "content", e))?;
                Ok(file_id.to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok(self.content_owner(source, sha256).await?.unwrap_or_default())
            }
            Err(e) => Err(io("local-metadata", "content", e)),
        }
    }

    async fn take_over_content(
        &self,
        source: &str,
        sha256: &str,
        failed_owner: &str,
        file_id: &str,
    ) -> Result<bool, PortError> {
        // one process drives the local adapters: a process-wide lock makes check-and-move atomic
        // (the reads below are the same as `content_owner` and `get_run`, without an await)
        static TAKE_OVER: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _held = TAKE_OVER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let p = under(&self.source_dir(source)?.join("content"), sha256)?;
        match std::fs::read_to_string(&p) {
            Ok(owner) if owner.trim() == failed_owner => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io("local-metadata", "content", e)),
        }
        let owner_failed = match std::fs::read(self.run_path(failed_owner)?) {
            Ok(b) => {
                serde_json::from_slice::<RunRecord>(&b).map_err(|e| ser("get", e))?.status
                    == crate::ledger::Status::Failed
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io("local-metadata", "get", e)),
        };
        if !owner_failed {
            return Ok(false);
        }
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, file_id).map_err(|e| io("local-metadata", "content", e))?;
        std::fs::rename(&tmp, &p).map_err(|e| io("local-metadata", "content", e))?;
        Ok(true)
    }

    async fn guard_state(&self, source: &str, name: GuardFlag) -> Result<Option<String>, PortError> {
        let p = self.source_dir(source)?.join(format!("guard-{}", name.as_str()));
        match std::fs::read_to_string(p) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("local-metadata", "guard", e)),
        }
    }

    async fn set_guard_state(
        &self,
        source: &str,
        name: GuardFlag,
        value: Option<&str>,
    ) -> Result<(), PortError> {
        let dir = self.source_dir(source)?;
        let p = dir.join(format!("guard-{}", name.as_str()));
        match value {
            Some(v) => {
                std::fs::create_dir_all(&dir).map_err(|e| io("local-metadata", "guard", e))?;
                std::fs::write(p, v).map_err(|e| io("local-metadata", "guard", e))
            }
            None => match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("local-metadata", "guard", e)),
                _ => Ok(()),
            },
        }
    }
}
