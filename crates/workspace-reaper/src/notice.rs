//! What a user is told about, as plain data: why one WorkSpace is in a notice, the WorkSpaces of
//! one notice, and the composed notice (subject, text, HTML). `email` builds notices and their
//! MIME from these types and `notify` sends them; this module depends on nothing in the crate,
//! so neither of those depends on the other through it.

use chrono::{DateTime, Utc};

/// Why one WorkSpace is in a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// Will be removed by the run at this time unless its user signs in.
    AtRisk { removal_run: DateTime<Utc> },
    /// Was removed by this run.
    Terminated,
}

/// One WorkSpace of a user's notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeItem {
    pub workspace_id: String,
    pub directory: String,
    /// Date of the last connection (`YYYY-MM-DD`), `never`, or `unknown`.
    pub last_used: String,
    pub kind: NoticeKind,
}

/// The one notice a user gets in a run, about all of their WorkSpaces in it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserNotice {
    pub email: String,
    pub workspace_ids: Vec<String>,
    pub subject: String,
    /// Plain text.
    pub body: String,
    pub html: String,
}
