//! Types for values that may hold PHI: they print as `***` in `Debug` and `Display`, so a value
//! that slips into a log line or an error message leaks nothing.

use std::fmt;

use sha2::{Digest, Sha256};

/// A value that may be protected health information. Read it with [`Phi::expose`] only where the
/// value itself is needed (normalising, matching, writing the dataset), never for logging.
#[derive(Clone, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct Phi<T>(T);

impl<T> Phi<T> {
    pub fn new(v: T) -> Self {
        Self(v)
    }

    /// The value itself. Every call site is a place PHI flows: keep them few.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Phi<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T> fmt::Display for Phi<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A short, stable, non-reversible name for an object key (keys can carry patient names):
/// the first 16 hex digits of SHA-256. Logs and alerts carry this, never the key.
pub fn key_hash(key: &str) -> String {
    let d = Sha256::digest(key.as_bytes());
    hex::encode(&d[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phi_never_prints() {
        let v = Phi::new("123-45-6789".to_string());
        assert_eq!(format!("{v:?} {v}"), "*** ***");
        assert_eq!(format!("{:?}", Some(v.clone())), "Some(***)");
        assert_eq!(v.expose(), "123-45-6789");
    }

    #[test]
    fn key_hash_is_stable_and_hides_the_key() {
        let h = key_hash("st_marys/2026/JOHN_SMITH_1984.csv");
        assert_eq!(h.len(), 16);
        assert_eq!(h, key_hash("st_marys/2026/JOHN_SMITH_1984.csv"));
        assert!(!h.contains("SMITH"));
    }
}
