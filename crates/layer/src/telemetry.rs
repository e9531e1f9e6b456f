//! Logging set-up and correlation. Lambdas log one JSON object per line on stderr (CloudWatch
//! parses it), level from `RUST_LOG` (default `info`). Spans in this project use `skip_all`;
//! fields are ids and counts.
//!
//! Correlation: [`crate::pipeline::handle_batch`] runs each message inside a [`MessageScope`], a
//! span carrying the function, the Lambda request id and the SQS message id. As soon as a stage
//! knows which file a message is about it calls [`set_file_id`]: from then on every log line of
//! that message (the span's fields, printed with each line) and every EMF record
//! ([`crate::metrics::emit`]) carries the file id, so one file can be followed through router,
//! workflow and matcher by `file_id`, and one invocation by `request_id`.

use std::cell::RefCell;
use std::future::Future;

use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::protocol::Function;

/// Installs the JSON subscriber once; later calls are no-ops (tests call it freely).
pub fn init_json() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Human-readable logs for the CLI (warnings and errors only unless `RUST_LOG` says otherwise).
pub fn init_cli() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The ids that tie a log line or metric to one invocation and one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Correlation {
    pub function: &'static str,
    pub request_id: String,
    pub message_id: String,
    pub file_id: Option<String>,
}

tokio::task_local! {
    static CORRELATION: RefCell<Correlation>;
}

/// One message's scope: a tracing span and the correlation ids, for the duration of a future.
pub struct MessageScope {
    span: tracing::Span,
    ids: Correlation,
}

impl MessageScope {
    pub fn new(function: Function, request_id: &str, message_id: &str) -> Self {
        let span = tracing::info_span!(
            "message",
            function = function.as_str(),
            request_id = %request_id,
            message_id = %message_id,
            file_id = tracing::field::Empty,
        );
        let ids = Correlation {
            function: function.as_str(),
            request_id: request_id.to_string(),
            message_id: message_id.to_string(),
            file_id: None,
        };
        Self { span, ids }
    }

    /// Runs `f` inside the scope: its log lines carry the span, its metrics the ids.
    pub async fn run<F: Future>(&self, f: F) -> F::Output {
        CORRELATION.scope(RefCell::new(self.ids.clone()), f.instrument(self.span.clone())).await
    }
}

/// Names the file the current message is about (its log lines and metrics carry it from now on).
/// Outside a message scope it does nothing.
pub fn set_file_id(file_id: &str) {
    tracing::Span::current().record("file_id", file_id);
    let _ = CORRELATION.try_with(|c| c.borrow_mut().file_id = Some(file_id.to_string()));
}

/// The current message's correlation ids, inside a message scope.
pub fn correlation() -> Option<Correlation> {
    CORRELATION.try_with(|c| c.borrow().clone()).ok()
}
