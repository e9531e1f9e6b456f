//! The run ledger: one record per object version, from the first sighting to DONE or FAILED.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::protocol::{ErrorKind, Stage};
use crate::ObjectKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Seen by the router; `stage` says whether the work message went out.
    Received,
    /// Canonical Parquet written; bad records on their way to matching.
    Transformed,
    Matching,
    Done,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Received => "RECEIVED",
            Status::Transformed => "TRANSFORMED",
            Status::Matching => "MATCHING",
            Status::Done => "DONE",
            Status::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub rows_read: u64,
    pub duplicates: u64,
    pub malformed: u64,
    pub good: u64,
    pub bad: u64,
}

/// One object version's history. The key is kept (the ledger is encrypted and access-controlled:
/// redrive and audit need it) but never logged: logs carry `file_id` and `key_hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub file_id: String,
    pub bucket: String,
    pub key: ObjectKey,
    pub key_hash: String,
    pub version_id: Option<String>,
    pub source: Option<String>,
    pub dataset: Option<String>,
    pub contract_version: Option<u32>,
    pub status: Status,
    pub stage: Stage,
    pub received_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub counts: Counts,
    #[serde(default)]
    pub seconds: f64,
    pub error_kind: Option<ErrorKind>,
    pub error_message: Option<String>,
    #[serde(default)]
    pub attempts: u32,
    /// Where the outputs went (object keys, no values).
    #[serde(default)]
    pub outputs: Vec<String>,
    /// SHA-256 of the object's bytes (hex), computed while the workflow read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The DONE file of the same source with the same bytes, when this one is its duplicate
    /// (status DONE, stage `duplicate`, no outputs of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
    /// For a part of a FHIR Bulk Data export: the manifest's file id, whose outputs hold this
    /// part's rows (status DONE, stage `joined`, no outputs of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined_into: Option<String>,
}

/// The stable id of an object version: first 16 hex digits of SHA-256(bucket/key#version).
/// Output paths use it, so a retry overwrites instead of duplicating, and no key text leaks.
pub fn file_id(bucket: &str, key: &str, version: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(bucket.as_bytes());
    h.update(b"/");
    h.update(key.as_bytes());
    h.update(b"#");
    h.update(version.unwrap_or("null").as_bytes());
    hex::encode(&h.finalize()[..8])
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl RunRecord {
    pub fn received(bucket: &str, key: &ObjectKey, version: Option<&str>) -> Self {
        let t = now();
        Self {
            file_id: file_id(bucket, key.expose(), version),
            bucket: bucket.into(),
            key: key.clone(),
            key_hash: key.hash(),
            version_id: version.map(Into::into),
            source: None,
            dataset: None,
            contract_version: None,
            status: Status::Received,
            stage: Stage::Router,
            received_at: t.clone(),
            updated_at: t,
            counts: Counts::default(),
            seconds: 0.0,
            error_kind: None,
            error_message: None,
            attempts: 0,
            outputs: vec![],
            sha256: None,
            duplicate_of: None,
            joined_into: None,
        }
    }

    /// The ingest date partition: the day the file was first received (stable across retries).
    pub fn ingest_date(&self) -> &str {
        self.received_at.get(..10).unwrap_or("1970-01-01")
    }
}

/// A published contract version as stored in the datasets table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedContract {
    pub source: String,
    pub dataset: String,
    pub version: u32,
    pub toml: String,
    pub published_at: String,
}
