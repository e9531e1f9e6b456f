//! `lake query --backend aws`: the same SQL on Athena, in the analysts' workgroup, polled with a
//! progress line on stderr, results read page by page into the same frame `lake query` prints
//! locally. The result configuration is decided from `GetWorkGroup`: a workgroup that enforces its
//! configuration (the stack's) gets none (its location, SSE-KMS key and scan limit apply); any
//! other gets an explicit location and SSE-KMS with a named key, or the query is not started.
//! Ctrl-C while a query runs stops it in Athena.
//!
//! Boundaries: Athena calls and the conversion of its string cells; printing is `query`'s.

use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_athena::types::{
    EncryptionConfiguration, EncryptionOption, QueryExecutionContext, QueryExecutionState,
    ResultConfiguration, WorkGroup,
};
use polars::prelude::*;

/// Where a query runs in AWS.
pub struct Target {
    pub workgroup: String,
    pub database: String,
    /// Result location for a workgroup that does not enforce its own.
    pub output: Option<String>,
    /// KMS key (ARN or id) for SSE-KMS results in a workgroup that does not enforce its own.
    pub kms_key: Option<String>,
}

/// The result configuration a query is started with.
#[derive(Debug, PartialEq, Eq)]
pub enum Results {
    /// The workgroup enforces its configuration: none is sent (it would be ignored).
    Enforced,
    /// Sent with the query: the location and SSE-KMS with this key.
    Client { location: String, kms_key: String },
}

/// Decides the result configuration from the workgroup's settings and the command line. Athena
/// rejects `SSE_KMS` without a key, and a client-side configuration without a location fails
/// every query, so either is an error here, before anything is started.
pub fn results_for(wg: &WorkGroup, t: &Target) -> anyhow::Result<Results> {
    let conf = wg.configuration();
    if conf.and_then(|c| c.enforce_work_group_configuration()) == Some(true) {
        return Ok(Results::Enforced);
    }
    let own = conf.and_then(|c| c.result_configuration());
    let location =
        t.output.clone().or_else(|| own.and_then(|r| r.output_location()).map(str::to_string)).with_context(
            || {
                format!(
                    "workgroup {} does not enforce its configuration and names no result location: \
                 pass --athena-output s3://BUCKET/PREFIX/",
                    t.workgroup
                )
            },
        )?;
    let own_key = own
        .and_then(|r| r.encryption_configuration())
        .filter(|e| e.encryption_option() == &EncryptionOption::SseKms)
        .and_then(|e| e.kms_key());
    let kms_key = t.kms_key.clone().or_else(|| own_key.map(str::to_string)).with_context(|| {
        format!(
            "workgroup {} does not enforce its configuration and names no SSE-KMS key: pass \
             --athena-kms-key (the lake key's ARN) so the results are encrypted with it",
            t.workgroup
        )
    })?;
    Ok(Results::Client { location, kms_key })
}

fn sdk_error<E, R>(call: &str, e: aws_sdk_athena::error::SdkError<E, R>) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    anyhow::anyhow!("Athena {call}: {}", aws_sdk_athena::error::DisplayErrorContext(e))
}

/// Runs `sql` on Athena and returns its result (cells typed from Athena's column types).
#[allow(clippy::print_stderr)]
pub async fn execute(sql: &str, t: &Target) -> anyhow::Result<DataFrame> {
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_athena::Client::new(&conf);
    let wg = client
        .get_work_group()
        .work_group(&t.workgroup)
        .send()
        .await
        .map_err(|e| sdk_error("GetWorkGroup", e))?;
    let wg = wg.work_group().with_context(|| format!("Athena returned no workgroup {}", t.workgroup))?;
    let mut start = client
        .start_query_execution()
        .query_string(sql)
        .work_group(&t.workgroup)
        .query_execution_context(QueryExecutionContext::builder().database(&t.database).build());
    match results_for(wg, t)? {
        Results::Enforced => {
            if t.output.is_some() || t.kms_key.is_some() {
                eprintln!(
                    "note: workgroup {} enforces its result location and encryption; \
                     --athena-output / --athena-kms-key are not sent",
                    t.workgroup
                );
            }
        }
        Results::Client { location, kms_key } => {
            let enc = EncryptionConfiguration::builder()
                .encryption_option(EncryptionOption::SseKms)
                .kms_key(kms_key)
                .build()?;
            start = start.result_configuration(
                ResultConfiguration::builder()
                    .output_location(location)
                    .encryption_configuration(enc)
                    .build(),
            );
        }
    }
    let started = start.send().await.map_err(|e| sdk_error("StartQueryExecution", e))?;
    let id = started.query_execution_id().context("Athena returned no query id")?.to_string();
    tokio::select! {
        done = wait(&client, &id) => done?,
        _ = tokio::signal::ctrl_c() => return Err(cancel(&client, &id).await),
    }
    results(&client, &id).await
}

/// Ctrl-C while the query runs: it is stopped in Athena (else it would go on scanning, and
/// billing, after the command is gone).
#[allow(clippy::print_stderr)]
async fn cancel(client: &aws_sdk_athena::Client, id: &str) -> anyhow::Error {
    eprintln!();
    match client.stop_query_execution().query_execution_id(id).send().await {
        Ok(_) => anyhow::anyhow!("query {id} cancelled (interrupted; StopQueryExecution sent)"),
        Err(e) => anyhow::anyhow!(
            "interrupted, but query {id} could not be stopped and may still run: {}",
            sdk_error("StopQueryExecution", e)
        ),
    }
}

/// Polls until the query ends, with one progress line on stderr.
#[allow(clippy::print_stderr)]
async fn wait(client: &aws_sdk_athena::Client, id: &str) -> anyhow::Result<()> {
    let t0 = Instant::now();
    loop {
        let out = client
            .get_query_execution()
            .query_execution_id(id)
            .send()
            .await
            .map_err(|e| sdk_error("GetQueryExecution", e))?;
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
                // Athena's reason names the culprit (a column, a table, the scan limit)
                let reason = status
                    .state_change_reason()
                    .or_else(|| status.athena_error().and_then(|e| e.error_message()))
                    .unwrap_or("no reason given");
                anyhow::bail!("query {id} {state}: {reason}");
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
            .map_err(|e| sdk_error("GetQueryResults", e))?;
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
        // Athena writes dates as YYYY-MM-DD (a cast from text to date is deprecated in polars)
        "date" => return Ok(s.str()?.as_date(Some("%Y-%m-%d"), false)?.into_series().into()),
        _ => return Ok(s.into()),
    };
    Ok(s.cast(&t)?.into())
}
