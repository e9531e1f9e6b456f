//! Limits: the size caps a reader enforces on hostile input, with their defaults and floors.

use serde::{Deserialize, Serialize};

use crate::error::{ContractError, Origin};

/// Longest record (line, or quoted multi-line record) the readers hold in memory by default.
pub const MAX_RECORD_BYTES_DEFAULT: usize = 16 << 20;

/// Limits a reader enforces so hostile input ends in a clear outcome, not memory exhaustion.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// A record longer than this is malformed (`record too long`) and skipped to the next line.
    #[serde(default = "default_max_record")]
    pub max_record_bytes: usize,
    /// A compressed file (gzip, zip) may expand to at most this many bytes.
    #[serde(default = "default_max_expanded")]
    pub max_expanded_bytes: u64,
    /// ... and at most this many times its compressed size (checked past the first 8 MiB), so
    /// a decompression bomb fails fast with a clear error.
    #[serde(default = "default_max_ratio")]
    pub max_ratio: u64,
    /// Inputs that cannot be streamed (a zip archive's central directory, a FHIR bundle, which
    /// must be joined whole) are held in memory up to this many bytes.
    #[serde(default = "default_max_in_memory")]
    pub max_in_memory_bytes: u64,
    /// Deepest XML element nesting accepted.
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    /// Distinct records one file may hold: duplicate detection keeps 16 bytes per distinct
    /// record, so an endless stream ends in a clear error rather than memory exhaustion.
    #[serde(default = "default_max_distinct")]
    pub max_distinct_records: u64,
}

fn default_max_record() -> usize {
    MAX_RECORD_BYTES_DEFAULT
}
fn default_max_expanded() -> u64 {
    MAX_EXPANDED_BYTES_DEFAULT
}
fn default_max_ratio() -> u64 {
    100
}
fn default_max_in_memory() -> u64 {
    MAX_IN_MEMORY_BYTES_DEFAULT
}
fn default_max_depth() -> usize {
    64
}
fn default_max_distinct() -> u64 {
    MAX_DISTINCT_RECORDS_DEFAULT
}

/// Default cap on the distinct records of one file (about 0.5 GiB of duplicate-detection keys).
pub const MAX_DISTINCT_RECORDS_DEFAULT: u64 = 25_000_000;

/// Default cap on what a compressed file expands to (16 GiB).
pub const MAX_EXPANDED_BYTES_DEFAULT: u64 = 16 << 30;
/// Default cap on an input that must be held in memory (512 MiB).
pub const MAX_IN_MEMORY_BYTES_DEFAULT: u64 = 512 << 20;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_record_bytes: MAX_RECORD_BYTES_DEFAULT,
            max_expanded_bytes: MAX_EXPANDED_BYTES_DEFAULT,
            max_ratio: default_max_ratio(),
            max_in_memory_bytes: MAX_IN_MEMORY_BYTES_DEFAULT,
            max_depth: default_max_depth(),
            max_distinct_records: MAX_DISTINCT_RECORDS_DEFAULT,
        }
    }
}

impl Limits {
    /// The floors below which a limit would reject ordinary files or defeat its own check.
    pub(crate) fn validate(&self, at: &Origin) -> Result<(), ContractError> {
        if self.max_record_bytes < 1024 {
            return Err(at.at("max_record_bytes", "max_record_bytes must be at least 1024"));
        }
        if self.max_ratio < 2 {
            return Err(at.at("max_ratio", "max_ratio must be at least 2"));
        }
        if self.max_depth < 2 {
            return Err(at.at("max_depth", "max_depth must be at least 2"));
        }
        if self.max_distinct_records < 1 {
            return Err(at.at("max_distinct_records", "max_distinct_records must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(limits: &str) -> Result<Limits, ContractError> {
        let text = format!("[limits]\n{limits}\n");
        #[derive(Deserialize)]
        struct Doc {
            limits: Limits,
        }
        let d: Doc = toml::from_str(&text).unwrap();
        d.limits.validate(&Origin::new("l.toml", &text)).map(|()| d.limits)
    }

    #[test]
    fn defaults_are_valid_and_omitted_keys_take_them() {
        assert_eq!(check("").unwrap(), Limits::default());
        let l = check("max_ratio = 7").unwrap();
        assert_eq!((l.max_ratio, l.max_record_bytes), (7, MAX_RECORD_BYTES_DEFAULT));
    }

    #[test]
    fn each_floor_is_reported_on_its_line() {
        for (key, value, message) in [
            ("max_record_bytes", 1023, "max_record_bytes must be at least 1024"),
            ("max_ratio", 1, "max_ratio must be at least 2"),
            ("max_depth", 1, "max_depth must be at least 2"),
            ("max_distinct_records", 0, "max_distinct_records must be at least 1"),
        ] {
            let e = check(&format!("max_expanded_bytes = 99\n{key} = {value}")).unwrap_err();
            assert_eq!(e.to_string(), format!("l.toml:3: {message}"));
        }
    }
}
