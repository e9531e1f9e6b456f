//! `ObjectKey`: an S3 object key, which partners often build from a patient's name or birth date
//! (`JOHN_SMITH_1984.csv`). It serialises as the plain key (messages and the encrypted ledger need
//! it to address the object) but prints only its hash, so a key inside a `Debug`ged message,
//! record or error can never reach a log line.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An object key. Read the text with [`ObjectKey::expose`] only to address the object.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for S3 calls and the ledger. Never for a log line or an error text.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The short stable name that logs, alerts and envelopes carry (see [`crate::key_hash`]).
    pub fn hash(&self) -> String {
        crate::key_hash(&self.0)
    }

    /// The last path segment (the file name), still PHI.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }

    /// A folder marker (`prefix/`) rather than a file.
    pub fn is_folder(&self) -> bool {
        self.0.ends_with('/')
    }

    /// A hidden file (`.keep`, `.DS_Store`): its name starts with a dot.
    pub fn is_hidden(&self) -> bool {
        self.file_name().starts_with('.')
    }
}

impl From<String> for ObjectKey {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for ObjectKey {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectKey(#{})", self.hash())
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.hash())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_prints_as_its_hash_and_serialises_as_itself() {
        let k = ObjectKey::new("st_marys/2026/JOHN_SMITH_1984.csv");
        let shown = format!("{k:?} {k} {:?}", Some(&k));
        assert!(!shown.contains("SMITH"), "{shown}");
        assert!(shown.contains(&crate::key_hash(k.expose())), "{shown}");
        assert_eq!(serde_json::to_string(&k).unwrap(), "\"st_marys/2026/JOHN_SMITH_1984.csv\"");
        let back: ObjectKey = serde_json::from_str("\"a/b.csv\"").unwrap();
        assert_eq!(back.expose(), "a/b.csv");
        assert_eq!(back.file_name(), "b.csv");
    }
}
