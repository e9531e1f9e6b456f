//! The shared layer every Lambda and the CLI stand on: configuration from the environment,
//! the AWS client factory (honours `AWS_ENDPOINT_URL`, so tests reach moto), telemetry (JSON
//! logs and EMF metrics that never carry PHI), PHI-safe value types, the run ledger types, the
//! failure envelope, and the ports (object store, queue, notifier, metadata) with their AWS and
//! local adapters.
//!
//! Boundaries: no business rules (those live in `contracts`, `transform` and the Lambda crates)
//! and no columnar code. Library code here logs ids, hashes and counts, never values.

pub mod aws;
pub mod config;
pub mod envelope;
#[cfg(any(test, feature = "test-util"))]
pub mod faults;
pub mod guard;
pub mod key;
pub mod ledger;
pub mod local;
pub mod metrics;
pub mod multipart;
pub mod ops;
pub mod phi;
pub mod pipeline;
pub mod ports;
pub mod protocol;
pub mod s3event;
pub mod sanitize;
pub mod telemetry;

pub use key::ObjectKey;
pub use phi::{key_hash, Phi};
pub use protocol::{AuditVerdict, Backend, ErrorKind, FormatFamily, Function, Stage};
