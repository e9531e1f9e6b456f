//! Lambda entry point of the schema migration (a CloudFormation custom resource, see
//! `pii_matching::deploy`): the Aurora master secret and connection settings from the
//! environment, TLS verify-full as the matcher; one request per deploy.
use lambda_runtime::{service_fn, Error, LambdaEvent};
use pii_matching::deploy::{self, CustomResourceRequest};
use pii_matching::index::IndexError;

#[tokio::main]
async fn main() -> Result<(), Error> {
    layer::telemetry::init_json();
    lambda_runtime::run(service_fn(|ev: LambdaEvent<serde_json::Value>| async move {
        let req: CustomResourceRequest = serde_json::from_value(ev.payload)?;
        let resp = deploy::respond_to(&req, || async {
            pii_matching::setup::db_from_env(1).await.map_err(|e| IndexError::Secret(e.to_string()))
        })
        .await;
        deploy::send(&req.response_url, &resp).await?;
        Ok::<_, Error>(())
    }))
    .await
}
