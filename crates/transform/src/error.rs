//! The one error a run can end in.

/// Why a file could not be transformed at all (record-level problems are `Malformed`, not errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    #[error("the file is empty")]
    EmptyInput,
    #[error("header mismatch: {0}")]
    Header(String),
    #[error("unsupported content: {0}")]
    Encoding(String),
    #[error("broken file structure: {0}")]
    Structure(String),
    #[error("cannot read the input: {0}")]
    Read(String),
    #[error("cannot write the output: {0}")]
    Write(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl TransformError {
    /// A stable, machine-readable kind (for ledgers, alerts and Lambda error types).
    pub fn kind(&self) -> &'static str {
        match self {
            TransformError::EmptyInput => "EmptyInput",
            TransformError::Header(_) => "HeaderMismatch",
            TransformError::Encoding(_) => "UnsupportedContent",
            TransformError::Structure(_) => "BrokenStructure",
            TransformError::Read(_) => "ReadFailed",
            TransformError::Write(_) => "WriteFailed",
            TransformError::Internal(_) => "Internal",
        }
    }

    /// True when retrying the same input can help (I/O), false when the file itself is the problem.
    pub fn retryable(&self) -> bool {
        matches!(self, TransformError::Read(_) | TransformError::Write(_) | TransformError::Internal(_))
    }
}
