//! Lambda entry point of `guard`: wiring built once per cold start, one run per schedule tick.
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    layer::telemetry::init_json();
    let guard = guard::Guard::from_env().await?;
    let guard = &guard;
    lambda_runtime::run(service_fn(move |_ev: LambdaEvent<serde_json::Value>| async move {
        // The runtime logs the error and returns it to the caller (GuardDLQ's message carries
        // it): an AWS error text can name a bucket key, so only its sanitised text leaves.
        let r = guard.run().await.map_err(|e| Error::from(layer::sanitize::error_text(&e)))?;
        Ok::<serde_json::Value, Error>(serde_json::json!({
            "versions": r.versions,
            "at_risk": r.at_risk,
            "silent": r.freshness.iter().filter(|f| f.overdue).map(|f| f.source.clone()).collect::<Vec<_>>(),
            "dlq_messages": r.dlqs.iter().map(|d| d.count).sum::<usize>(),
        }))
    }))
    .await
}
