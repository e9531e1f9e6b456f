//! The host names the functions' SDK calls in GovCloud, from the SDK's own endpoint rules (the
//! crates in Cargo.lock), with FIPS on and off: they must equal `infra/sdk_endpoints.json`, the
//! table `scripts/check_template.py` holds the VPC endpoints to. An SDK update that moves a
//! service to another host name fails here instead of timing out in a private subnet.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

/// The functions' buckets are named like this (template.yaml): no dots, so virtual-hosted.
const BUCKET: &str = "county-lake-dev-ingestion-111122223333-us-gov-west-1";

fn host(url: &str) -> String {
    let rest = url.strip_prefix("https://").unwrap_or(url);
    rest.split(['/', '?']).next().unwrap_or_default().to_owned()
}

async fn resolved(region: &str, fips: bool) -> BTreeMap<String, String> {
    macro_rules! resolve {
        ($krate:ident $(, $extra:ident($val:expr))?) => {{
            use $krate::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
            let p = Params::builder()
                .region(region)
                .use_fips(fips)
                .use_dual_stack(false)
                $(.$extra($val))?
                .build()
                .unwrap();
            host(DefaultResolver::new().resolve_endpoint(&p).await.unwrap().url())
        }};
    }
    let s3 = resolve!(aws_sdk_s3, bucket(BUCKET));
    let s3 = s3.strip_prefix(&format!("{BUCKET}.")).unwrap_or(&s3).to_owned();
    BTreeMap::from([
        ("s3".to_owned(), s3),
        ("dynamodb".to_owned(), resolve!(aws_sdk_dynamodb)),
        ("sqs".to_owned(), resolve!(aws_sdk_sqs)),
        ("sns".to_owned(), resolve!(aws_sdk_sns)),
        ("secretsmanager".to_owned(), resolve!(aws_sdk_secretsmanager)),
    ])
}

#[tokio::test]
async fn the_endpoint_table_is_what_the_sdk_resolves_in_govcloud() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/sdk_endpoints.json");
    let table: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let region = table["region"].as_str().unwrap();
    for (mode, fips) in [("fips", true), ("plain", false)] {
        let want: BTreeMap<String, String> = serde_json::from_value(table[mode].clone()).unwrap();
        assert_eq!(resolved(region, fips).await, want, "infra/sdk_endpoints.json \"{mode}\" is stale");
    }
    // the finding this guards: with FIPS the Secrets Manager host is not the regional one
    assert_eq!(table["fips"]["secretsmanager"], "secretsmanager-fips.us-gov-west-1.amazonaws.com");
}
