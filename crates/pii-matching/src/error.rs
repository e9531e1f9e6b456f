//! The failure type of the person index, the review store and the loaders, with its stable
//! pipeline error kind (`layer::ErrorKind`: what alerts, DLQ envelopes and the ledger carry).

use layer::ErrorKind;

/// A failure of the person index. `kind()` is the stable error kind of alerts and envelopes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// The database rejected the credentials (also after refetching the secret once).
    #[error("database authentication failed ({0})")]
    Auth(String),
    /// The database could not be reached or dropped the connection.
    #[error("database unavailable ({0})")]
    Unavailable(String),
    /// The database role may not do this (SQLSTATE 42501: a missing grant; retrying cannot help).
    #[error("database permission denied ({0})")]
    Denied(String),
    /// A query failed (SQLSTATE and class only, never values).
    #[error("database query failed ({0})")]
    Query(String),
    /// The credentials could not be fetched or read.
    #[error("database secret: {0}")]
    Secret(String),
    /// A person file could not be read.
    #[error("person file: {0}")]
    Load(String),
}

impl IndexError {
    /// The pipeline's error kind of this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            IndexError::Auth(_) => ErrorKind::DbAuthFailed,
            IndexError::Unavailable(_) => ErrorKind::DbUnavailable,
            IndexError::Denied(_) => ErrorKind::DbPermissionDenied,
            IndexError::Query(_) => ErrorKind::DbQueryFailed,
            IndexError::Secret(_) => ErrorKind::DbSecretFailed,
            IndexError::Load(_) => ErrorKind::PersonIndexLoadFailed,
        }
    }

    /// Can a retry help? Bad credentials after a refetch and bad files cannot.
    pub fn transient(&self) -> bool {
        matches!(self, IndexError::Unavailable(_) | IndexError::Query(_) | IndexError::Secret(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_pipeline_kind_and_retry_rule() {
        let cases = [
            (IndexError::Auth(String::new()), ErrorKind::DbAuthFailed, false),
            (IndexError::Unavailable(String::new()), ErrorKind::DbUnavailable, true),
            (IndexError::Denied(String::new()), ErrorKind::DbPermissionDenied, false),
            (IndexError::Query(String::new()), ErrorKind::DbQueryFailed, true),
            (IndexError::Secret(String::new()), ErrorKind::DbSecretFailed, true),
            (IndexError::Load(String::new()), ErrorKind::PersonIndexLoadFailed, false),
        ];
        for (e, kind, transient) in cases {
            assert_eq!((e.kind(), e.transient()), (kind, transient), "{e:?}");
        }
    }
}
