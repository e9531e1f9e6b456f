//! The reaper's one error type: what Lambda sees when a run fails.

/// Why a run (or its setup) failed. Messages carry ids and counts, never user data beyond ids.
#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    #[error("missing required environment variable {0}")]
    MissingEnv(&'static str),
    #[error("invalid policy: {0}")]
    Policy(String),
    #[error("WorkSpaces API: {0}")]
    Api(#[from] crate::port::ApiError),
    #[error("object store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("history: {0}")]
    History(String),
    #[error("report: {0}")]
    Report(String),
}

impl ReaperError {
    /// A stable, short error type for Lambda's diagnostic.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingEnv(_) => "ReaperMissingEnv",
            Self::Policy(_) => "ReaperPolicy",
            Self::Api(_) => "ReaperWorkspacesApi",
            Self::Store(_) => "ReaperObjectStore",
            Self::History(_) => "ReaperHistory",
            Self::Report(_) => "ReaperReport",
        }
    }
}

/// The message starts with the stable kind too: Lambda's asynchronous DLQ record keeps only the
/// message (`ErrorMessage` attribute, first 1 KB) next to an HTTP status (`ErrorCode`).
impl From<ReaperError> for lambda_runtime::Diagnostic {
    fn from(e: ReaperError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.kind().into(),
            error_message: format!("{}: {e}", e.kind()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diagnostic_names_the_kind_in_its_message() {
        let d = lambda_runtime::Diagnostic::from(ReaperError::History(
            "cannot read history/2025-03-03.json".into(),
        ));
        assert_eq!(d.error_type, "ReaperHistory");
        assert_eq!(d.error_message, "ReaperHistory: history: cannot read history/2025-03-03.json");
    }
}
