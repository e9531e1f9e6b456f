//! Lambda entry point of `ingestion-router`: state built once per cold start.
use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use layer::pipeline::{Deps, PipelineConfig};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    layer::telemetry::init_json();
    layer::config::require_all(ingestion_router::REQUIRED_ENV)?;
    let deps = Deps::aws(PipelineConfig::router_from_env()?).await?;
    lambda_runtime::run(service_fn(|ev: LambdaEvent<Value>| {
        let deps = &deps;
        async move {
            let is_sqs = ev.payload["Records"][0]["eventSource"] == "aws:sqs";
            if is_sqs {
                let sqs: SqsEvent = serde_json::from_value(ev.payload).map_err(not_an_event)?;
                let resp = ingestion_router::handle(deps, LambdaEvent::new(sqs, ev.context)).await;
                Ok::<Value, Diagnostic>(serde_json::to_value(resp).map_err(not_an_event)?)
            } else {
                // a failure reaches the runtime as its kind (errorType) and sanitised message
                ingestion_router::handle_s3(deps, &ev.context.request_id, &ev.payload.to_string()).await?;
                Ok(Value::Null)
            }
        }
    }))
    .await
}

/// An SQS event that does not deserialise (or a response that does not serialise): named by kind
/// and position only (serde's own message can quote a value).
fn not_an_event(e: serde_json::Error) -> Diagnostic {
    Diagnostic {
        error_type: "NotAnSqsEvent".into(),
        error_message: format!(
            "NotAnSqsEvent: {:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ),
    }
}
