//! The workspace-reaper Lambda binary: builds the reaper once per cold start, then serves the
//! weekly EventBridge schedule. All logic lives in the library.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use tracing_subscriber::EnvFilter;
use workspace_reaper::{handle, Reaper};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // JSON logs on stderr, as layer::telemetry::init_json does (not linked: this binary stays small).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    // Fails at init (clear error naming the missing variable), not on every invocation.
    let reaper = Reaper::from_env().await?;
    let reaper = &reaper;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<serde_json::Value>| async move {
        handle(reaper, ev).await
    }))
    .await
}
