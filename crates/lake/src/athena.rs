//! `lake query --backend aws`: the same SQL on Athena, in the analysts' workgroup (whose enforced
//! configuration decides the result location, encryption and scan limit), polled with a progress
//! line on stderr, results read page by page into the same frame `lake query` prints locally.
//!
//! Boundaries: Athena calls and the conversion of its string cells; printing is `query`'s.

use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_athena::types::{
    EncryptionConfiguration, EncryptionOption, QueryExecutionContext, QueryExecutionState,
    ResultConfiguration,
};
use polars::prelude::*;

/// Where a query runs in AWS.
pub struct Target {
    pub workgroup: String,
    pub database: String,
    /// Sent as the result location; the workgroup's enforced location wins in the deployment.
    pub output: Option<String>,
}

/// Runs `sql` on Athena and returns its result (cells typed from Athena's column types).
pub async fn execute(sql: &str, t: &Target) -> anyhow::Result<DataFrame> {
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_athena::Client::new(&conf);
    let mut rc = ResultConfiguration::builder().encryption_configuration(
        EncryptionConfiguration::builder().encryption_option(EncryptionOption::SseKms).build()?,
    );
    if let Some(o) = &t.output {
        rc = rc.output_location(o);
    }
    let started = client
        .start_query_execution()
        .query_string(sql)
        .work_group(&t.workgroup)
        .query_execution_context(QueryExecutionContext::builder().database(&t.database).build())
        .result_configuration(rc.build())
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!("Athena StartQueryExecution: {}", aws_sdk_athena::error::DisplayErrorContext(e))
        })?;
    let id = started.query_execution_id().context("Athena returned no query id")?.to_string();
    wait(&client, &id).await?;
    results(&client, &id).await
}

/// Polls until the query ends, with one progress line on stderr.
#[allow(clippy::print_stderr)]
async fn wait(client: &aws_sdk_athena::Client, id: &str) -> anyhow::Result<()> {
    let t0 = Instant::now();
    loop {
        let out = client.get_query_execution().query_execution_id(id).send().await.map_err(|e| {
            anyhow::anyhow!("Athena GetQueryExecution: {}", aws_sdk_athena::error::DisplayErrorContext(e))
        })?;
        let q = out.query_execution().context("no query execution")?;
        let status = q.status().context("no status")?;
        let state = status.state().cloned().unwrap_or(QueryExecutionState::Queued);
        let scanned = q.statistics().and_then(|s| s.data_scanned_in_bytes()).unwrap_or(0);
        eprint!(
            "\rquery {id}: {state} after {:.1} s, {scanned} bytes scanned   ",
            t0.elapsed().as_secs_f64()
        );
        match state {
            QueryExecutionState::Succeeded => {
                eprintln!();
                return Ok(());
            }
            QueryExecutionState::Failed | QueryExecutionState::Cancelled => {
                eprintln!();
                anyhow::bail!(
                    "query {id} {state}: {}",
                    status.state_change_reason().unwrap_or("no reason given")
                );
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Every page of the result; the first row of the first page is the header (Athena's CSV rows).
async fn results(client: &aws_sdk_athena::Client, id: &str) -> anyhow::Result<DataFrame> {
    let mut names: Vec<String> = Vec::new();
    let mut types: Vec<String> = Vec::new();
    let mut cells: Vec<Vec<Option<String>>> = Vec::new();
    let mut token: Option<String> = None;
    let mut first = true;
    loop {
        let page = client
            .get_query_results()
            .query_execution_id(id)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!("Athena GetQueryResults: {}", aws_sdk_athena::error::DisplayErrorContext(e))
            })?;
        let rs = page.result_set().context("no result set")?;
        if first {
            let info = rs.result_set_metadata().map(|m| m.column_info()).unwrap_or_default();
            names = info.iter().map(|c| c.name().to_string()).collect();
            types = info.iter().map(|c| c.r#type().to_string()).collect();
            cells = vec![Vec::new(); names.len()];
        }
        for (i, row) in rs.rows().iter().enumerate() {
            let vals: Vec<Option<String>> =
                row.data().iter().map(|d| d.var_char_value().map(str::to_string)).collect();
            // the header row repeats the column names
            if first && i == 0 && vals.iter().map(|v| v.as_deref()).eq(names.iter().map(|n| Some(n.as_str())))
            {
                continue;
            }
            for (c, v) in cells.iter_mut().zip(vals.into_iter().chain(std::iter::repeat(None))) {
                c.push(v);
            }
        }
        first = false;
        match page.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    let cols: Vec<Column> = names
        .iter()
        .zip(&types)
        .zip(cells)
        .map(|((n, t), v)| typed(Series::new(n.as_str().into(), v), t))
        .collect::<PolarsResult<_>>()?;
    Ok(DataFrame::new_infer_height(cols)?)
}

/// Athena's cells are text: cast them to the column's type.
fn typed(s: Series, athena_type: &str) -> PolarsResult<Column> {
    let t = match athena_type {
        "tinyint" | "smallint" | "integer" | "bigint" => DataType::Int64,
        "float" | "real" | "double" | "decimal" => DataType::Float64,
        "boolean" => DataType::Boolean,
        "date" => DataType::Date,
        _ => return Ok(s.into()),
    };
    Ok(s.cast(&t)?.into())
}
