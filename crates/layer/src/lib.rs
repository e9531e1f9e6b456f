//! The shared layer every Lambda and the CLI stand on: telemetry (JSON logs that never carry
//! PHI), PHI-safe value types, and stable error kinds.
//!
//! Boundaries: no business rules (those live in `contracts`, `transform` and the Lambda crates)
//! and no columnar code. Library code here logs ids, hashes and counts, never values.

pub mod phi;
pub mod telemetry;

pub use phi::{key_hash, Phi};
