//! Ports: the small traits the handlers need from the outside world. Each has an AWS adapter
//! (`crate::aws`) and a local adapter (`crate::local`); handlers never know which they hold.

use async_trait::async_trait;

use crate::ledger::{PublishedContract, RunRecord, Status};
use crate::ObjectKey;

/// A failure of an outside service. `transient` says whether retrying can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{service} {op}: {message}")]
pub struct PortError {
    pub service: &'static str,
    pub op: &'static str,
    pub message: String,
    pub transient: bool,
}

impl PortError {
    pub fn new(service: &'static str, op: &'static str, message: impl Into<String>, transient: bool) -> Self {
        Self { service, op, message: message.into(), transient }
    }
}

/// One stored version of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub key: ObjectKey,
    pub version_id: Option<String>,
    pub size: u64,
    /// RFC 3339.
    pub last_modified: String,
    pub is_latest: bool,
}

/// A blocking reader over an object's bytes, fed while they arrive (a transform reads it on the
/// blocking pool); a failure mid-way is an `io::Error`.
pub type ObjectReader = Box<dyn std::io::Read + Send>;

/// A new object being written, blocking `Write` side first (a transform writes it on the
/// blocking pool), memory bounded whatever its size. Nothing is visible until `commit`; an
/// object dropped or aborted before that leaves nothing behind (on S3 its multipart upload is
/// aborted, so no parts stay stored and billed).
#[async_trait]
pub trait ObjectSink: std::io::Write + Send {
    /// Bytes written so far.
    fn written(&self) -> u64;
    /// Why writing failed, when the store itself refused it (a `write` then returns an
    /// `io::Error` naming the same cause).
    fn failure(&self) -> Option<PortError>;
    /// Stores what was written as the object and makes it visible.
    async fn commit(self: Box<Self>) -> Result<(), PortError>;
    /// Discards what was written; waits until the store has let go of it.
    async fn abort(self: Box<Self>) -> Result<(), PortError>;
}

/// A boxed object sink.
pub type ObjectWriter = Box<dyn ObjectSink>;

#[async_trait]
pub trait ObjectStore: Send + Sync {
    async fn get(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<Vec<u8>, PortError>;
    /// Opens an object for streaming: memory stays bounded whatever its size.
    async fn open(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<ObjectReader, PortError>;
    /// Writes an object; with `kms_key`, encrypted with SSE-KMS under that key.
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        kms_key: Option<&str>,
    ) -> Result<(), PortError>;
    /// Starts writing an object of any size (on S3: one PutObject when it stays under a part,
    /// else a multipart upload); with `kms_key`, encrypted with SSE-KMS under that key.
    async fn create(&self, bucket: &str, key: &str, kms_key: Option<&str>)
        -> Result<ObjectWriter, PortError>;
    async fn list_versions(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectVersion>, PortError>;
}

/// A message taken from a queue; `receive_count` counts this delivery too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub message_id: String,
    pub body: String,
    pub receipt: String,
    pub receive_count: u32,
    /// When the message was first sent to this queue (ms since the epoch), when known.
    pub sent_at_ms: Option<i64>,
}

#[async_trait]
pub trait Queue: Send + Sync {
    async fn send(&self, queue: &str, body: &str) -> Result<(), PortError>;
    async fn receive(&self, queue: &str, max: usize) -> Result<Vec<Received>, PortError>;
    /// Done with it: remove it for good.
    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), PortError>;
    /// Not done: make it visible again at once (the next receive counts one more delivery).
    async fn release(&self, queue: &str, receipt: &str) -> Result<(), PortError>;
}

#[async_trait]
pub trait Notifier: Send + Sync {
    async fn publish(&self, topic: &str, subject: &str, message: &str) -> Result<(), PortError>;
}

/// The metadata store: the run ledger and the published contracts.
#[async_trait]
pub trait Metadata: Send + Sync {
    /// Writes the run only if no run with its file id exists; false when one does.
    async fn put_run_if_absent(&self, run: &RunRecord) -> Result<bool, PortError>;
    async fn put_run(&self, run: &RunRecord) -> Result<(), PortError>;
    /// Writes the run unless the stored run with its file id is DONE (one conditional write, so a
    /// DONE written meanwhile by another function is never overwritten); false when it is DONE.
    async fn put_run_unless_done(&self, run: &RunRecord) -> Result<bool, PortError>;
    async fn get_run(&self, file_id: &str) -> Result<Option<RunRecord>, PortError>;
    async fn list_runs(&self) -> Result<Vec<RunRecord>, PortError>;
    /// Stores a new version of a source's contract and makes it current; returns its version.
    async fn publish_contract(&self, source: &str, dataset: &str, toml: &str) -> Result<u32, PortError>;
    async fn current_contract(&self, source: &str) -> Result<Option<PublishedContract>, PortError>;
    async fn contract_version(
        &self,
        source: &str,
        version: u32,
    ) -> Result<Option<PublishedContract>, PortError>;
    /// The current published contract of every source.
    async fn list_contracts(&self) -> Result<Vec<PublishedContract>, PortError>;
    /// Records the last run's status on the source's dataset entry.
    async fn set_dataset_status(&self, source: &str, status: Status, file_id: &str) -> Result<(), PortError>;
    /// The file id first recorded (DONE) with these bytes (SHA-256 hex) for the source.
    async fn content_owner(&self, source: &str, sha256: &str) -> Result<Option<String>, PortError>;
    /// Records `file_id` as the DONE file holding these bytes unless another already is;
    /// returns the owner (this file id, or the earlier one).
    async fn claim_content(&self, source: &str, sha256: &str, file_id: &str) -> Result<String, PortError>;
    /// Moves the claim on these bytes from `failed_owner` to `file_id` in one atomic step, only
    /// while the claim is still `failed_owner`'s and its ledger entry is FAILED (a redrive that
    /// resets the owner first wins); true when the claim moved.
    async fn take_over_content(
        &self,
        source: &str,
        sha256: &str,
        failed_owner: &str,
        file_id: &str,
    ) -> Result<bool, PortError>;
    /// A source's guard state (e.g. whether a silence alert is open), by name.
    async fn guard_state(&self, source: &str, name: GuardFlag) -> Result<Option<String>, PortError>;
    async fn set_guard_state(
        &self,
        source: &str,
        name: GuardFlag,
        value: Option<&str>,
    ) -> Result<(), PortError>;
}

/// The per-source state the scheduled guard keeps between runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardFlag {
    /// Set (to the time the alert went out) while a source is known to be silent too long.
    Silent,
}

impl GuardFlag {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardFlag::Silent => "silent",
        }
    }
}
