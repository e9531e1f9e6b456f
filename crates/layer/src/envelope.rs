//! The failure envelope: what lands in the DLQ when a stage gives up. Everything ops need to see
//! why and to redrive; never a row value. The object key appears only as its hash; the original
//! message is kept so `lake redrive` can replay it.

use serde::{Deserialize, Serialize};

use crate::protocol::{ErrorKind, Function};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureEnvelope {
    pub file_id: String,
    pub bucket: String,
    pub key_hash: String,
    pub dataset: Option<String>,
    pub source: Option<String>,
    /// The Lambda (stage) that failed.
    pub function: Function,
    pub error_kind: ErrorKind,
    pub error_message: String,
    pub attempts: u32,
    pub first_seen: String,
    pub failed_at: String,
    /// The queue the original message came from (where a redrive sends it back).
    pub source_queue: String,
    /// The message the stage received, verbatim.
    pub original_message: String,
}

impl FailureEnvelope {
    /// The SNS alert text: what failed, why, and the command that retries it.
    pub fn alert(&self) -> (String, String) {
        let subject = format!("[lake] {} failed: {}", self.function, self.error_kind);
        let body = format!(
            "File {} (source {}, dataset {}) failed in {} after {} attempt(s).\n\
             Error: {} - {}\n\
             First seen {}; failed at {}.\n\
             The failure envelope is in the DLQ. After fixing the cause, replay it with:\n  \
             lake redrive --file-id {}\n",
            self.file_id,
            self.source.as_deref().unwrap_or("unknown"),
            self.dataset.as_deref().unwrap_or("unknown"),
            self.function,
            self.attempts,
            self.error_kind,
            self.error_message,
            self.first_seen,
            self.failed_at,
            self.file_id
        );
        (subject.chars().take(100).collect(), body)
    }
}
