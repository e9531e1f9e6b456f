//! The pipeline's vocabulary as closed enums: the stage a ledger entry is at, the function that
//! failed, the stable error kind of a failure, and the verdict of the no-loss audit. Each
//! serialises to exactly the string today's ledger items, DLQ envelopes and alerts carry, so
//! records written before these types existed read back unchanged (see the stored fixtures in
//! `tests/fixtures/`), and a typo is a compile error instead of a silent new value.

use serde::{Deserialize, Serialize};

/// The work queue family of a format (`delimited` | `json`): defined with the formats in
/// `contracts`, part of the pipeline's protocol here.
pub use contracts::FormatFamily;

macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable text of this value (as stored and printed).
            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text, )+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err(UnknownValue {
                        what: stringify!($name),
                        expected: $name::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                    }),
                }
            }
        }
    };
}

/// A value that is not one of an enum's known texts (the value itself is not repeated: it may
/// come from a file or a command line and is not ours to echo into logs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what}; expected one of: {expected}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub expected: String,
}

string_enum! {
    /// The Lambda (pipeline function) that handled or failed a file.
    pub enum Function {
        IngestionRouter => "ingestion-router",
        SemiStructuredWorkflow => "semi-structured-workflow",
        PiiMatching => "pii-matching",
    }
}

string_enum! {
    /// Where a ledger entry is in the data path. The `Failed*` stages are where a FAILED entry
    /// stopped (the function that gave up).
    pub enum Stage {
        /// Seen by the router; the work message may not have gone out yet.
        Router => "router",
        /// The work message is on a format family's queue.
        Queued => "queued",
        /// Transformed, no bad rows: nothing left to do.
        Workflow => "workflow",
        /// Transformed; bad rows wait on the pii queue.
        MatchingPending => "matching-pending",
        /// The bad rows went through matching.
        Matched => "matched",
        /// Byte for byte a file of the same source already DONE: recorded, nothing written.
        Duplicate => "duplicate",
        /// An NDJSON part of a FHIR Bulk Data export, held (RECEIVED, no work message) until
        /// its export's manifest arrives.
        AwaitingManifest => "awaiting-manifest",
        /// A part joined into its export's outputs, which are under the manifest's file id
        /// (`joined_into`).
        Joined => "joined",
        FailedInRouter => "ingestion-router",
        FailedInWorkflow => "semi-structured-workflow",
        FailedInMatching => "pii-matching",
    }
}

impl From<Function> for Stage {
    /// The stage a failed entry records: the function that gave up.
    fn from(f: Function) -> Self {
        match f {
            Function::IngestionRouter => Stage::FailedInRouter,
            Function::SemiStructuredWorkflow => Stage::FailedInWorkflow,
            Function::PiiMatching => Stage::FailedInMatching,
        }
    }
}

string_enum! {
    /// The stable kind of a stage failure: the Lambda error type, the envelope's `error_kind`,
    /// the ledger's `error_kind`, the alert subject and `lake redrive --error-kind`.
    pub enum ErrorKind {
        // the message itself
        NotAnS3Event => "NotAnS3Event",
        BadWorkMessage => "BadWorkMessage",
        BadMessage => "BadMessage",
        // the object and its source
        FolderMarker => "FolderMarker",
        EmptyObject => "EmptyObject",
        KeyOutsideSource => "KeyOutsideSource",
        UnknownSource => "UnknownSource",
        KeyOutsideContract => "KeyOutsideContract",
        InvalidContract => "InvalidContract",
        ContractMissing => "ContractMissing",
        UnknownDataset => "UnknownDataset",
        // the file's content (the transform)
        EmptyInput => "EmptyInput",
        HeaderMismatch => "HeaderMismatch",
        UnsupportedContent => "UnsupportedContent",
        BrokenStructure => "BrokenStructure",
        /// A FHIR Bulk Data manifest that cannot be read (permanent).
        BadManifest => "BadManifest",
        /// A FHIR Bulk Data manifest whose parts have not all arrived yet (a retry waits).
        ExportIncomplete => "ExportIncomplete",
        ReadFailed => "ReadFailed",
        WriteFailed => "WriteFailed",
        // outside services
        S3GetFailed => "S3GetFailed",
        S3PutFailed => "S3PutFailed",
        QueueSendFailed => "QueueSendFailed",
        LedgerReadFailed => "LedgerReadFailed",
        LedgerWriteFailed => "LedgerWriteFailed",
        MetadataReadFailed => "MetadataReadFailed",
        // matching
        BadRecordsUnreadable => "BadRecordsUnreadable",
        CompletionFailed => "CompletionFailed",
        /// An accepted candidate lacks a field the quarantined row is missing.
        Incomplete => "Incomplete",
        DbAuthFailed => "DbAuthFailed",
        /// The database role lacks a grant (SQLSTATE 42501): permanent.
        DbPermissionDenied => "DbPermissionDenied",
        DbUnavailable => "DbUnavailable",
        DbQueryFailed => "DbQueryFailed",
        DbSecretFailed => "DbSecretFailed",
        PersonIndexLoadFailed => "PersonIndexLoadFailed",
        // a bug or an impossible state
        Internal => "Internal",
    }
}

impl ErrorKind {
    /// Whether a failure of this kind can be helped by a retry when nothing more is known. A port
    /// failure's own judgement (throttling vs. NoSuchKey) overrides this for the port kinds.
    pub fn transient(self) -> bool {
        use ErrorKind::*;
        matches!(
            self,
            ReadFailed
                | ExportIncomplete
                | WriteFailed
                | S3GetFailed
                | S3PutFailed
                | QueueSendFailed
                | LedgerReadFailed
                | LedgerWriteFailed
                | MetadataReadFailed
                | DbUnavailable
                | DbQueryFailed
                | DbSecretFailed
                | Internal
        )
    }
}

string_enum! {
    /// What the no-loss audit says of one object version.
    pub enum AuditVerdict {
        /// Every stage finished.
        Done => "DONE",
        /// Failed for good, with its envelope in the DLQ (an alert went out; redrive replays it).
        FailedEnveloped => "FAILED+DLQ",
        /// Between stages for less than the allowed time.
        InFlight => "IN_FLIGHT",
        /// Neither: the file may be lost. The audit exits non-zero.
        AtRisk => "AT_RISK",
    }
}

string_enum! {
    /// Where the CLI's commands run: the embedded lake on this machine (folders), or the AWS
    /// account the `LAKE_*` environment variables name.
    pub enum Backend {
        Local => "local",
        Aws => "aws",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_through_its_text_and_json() {
        for k in ErrorKind::ALL {
            assert_eq!(k.as_str().parse::<ErrorKind>(), Ok(*k));
            assert_eq!(serde_json::to_string(k).unwrap(), format!("\"{}\"", k.as_str()));
        }
        for s in Stage::ALL {
            assert_eq!(serde_json::from_str::<Stage>(&format!("\"{s}\"")).unwrap(), *s);
        }
        for v in AuditVerdict::ALL {
            assert_eq!(v.as_str().parse::<AuditVerdict>(), Ok(*v));
        }
    }

    #[test]
    fn an_unknown_text_is_refused_without_echoing_it() {
        let e = "JOHN_SMITH".parse::<ErrorKind>().unwrap_err();
        assert!(!e.to_string().contains("JOHN"), "{e}");
        assert!(e.to_string().contains("UnknownSource"), "{e}");
    }

    #[test]
    fn a_failed_function_names_its_stage_with_the_same_text() {
        for f in Function::ALL {
            assert_eq!(Stage::from(*f).as_str(), f.as_str());
        }
    }

    #[test]
    fn port_kinds_are_transient_and_content_kinds_are_not() {
        assert!(ErrorKind::S3GetFailed.transient());
        assert!(ErrorKind::DbUnavailable.transient());
        assert!(!ErrorKind::HeaderMismatch.transient());
        assert!(!ErrorKind::UnknownSource.transient());
        assert!(!ErrorKind::DbAuthFailed.transient());
        assert!(ErrorKind::ExportIncomplete.transient(), "the parts may still arrive");
        assert!(!ErrorKind::BadManifest.transient());
    }
}
