//! Lambda entry point of `semi-structured-workflow`: state built once per cold start; the format
//! family this deployment serves comes from `LAKE_FORMAT_FAMILY`.
use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use layer::config::{names, var};
use layer::pipeline::{Deps, PipelineConfig};

/// glibc's malloc never returns the holes its large transient buffers (input blocks, Arrow
/// builders, Parquet pages) leave between long-lived allocations: on a 4 GiB file the function's
/// peak RSS grew 16% over a 1 GiB one (302 -> 350 MiB) with nothing live growing. mimalloc purges
/// freed pages: 356 -> 374 MiB (`examples/rss_bench.rs`, README "Workflow memory").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    layer::telemetry::init_json();
    layer::config::require_all(semi_structured_workflow::REQUIRED_ENV)?;
    let family_name = var(names::FORMAT_FAMILY)?;
    let family = layer::FormatFamily::ALL
        .into_iter()
        .find(|f| f.as_str() == family_name)
        .ok_or_else(|| format!("{}: expected one of delimited, json", names::FORMAT_FAMILY))?;
    let mut cfg = PipelineConfig::workflow_from_env()?;
    cfg.queue_delimited = var(names::QUEUE_DELIMITED).unwrap_or_default();
    cfg.queue_json = var(names::QUEUE_JSON).unwrap_or_default();
    let deps = Deps::aws(cfg).await?;
    lambda_runtime::run(service_fn(|ev: LambdaEvent<SqsEvent>| {
        let deps = &deps;
        async move { Ok::<_, Error>(semi_structured_workflow::handle(deps, family, ev).await) }
    }))
    .await
}
