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

impl From<ReaperError> for lambda_runtime::Diagnostic {
    fn from(e: ReaperError) -> Self {
        lambda_runtime::Diagnostic { error_type: e.kind().into(), error_message: e.to_string() }
    }
}
