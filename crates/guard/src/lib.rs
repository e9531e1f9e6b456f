//! `guard` (`county-lake-<env>-guard`): the scheduled guardian of the lake. On every EventBridge
//! tick it runs the no-loss audit over the ingestion bucket (every object version DONE, FAILED
//! with its envelope, or in flight for less than `LAKE_MAX_IN_FLIGHT_SECS`) and alerts naming the
//! file ids at risk; checks every source whose contract declares `expect_every` and alerts once
//! when it goes silent and once when it resumes (state in the datasets table); and summarises
//! every DLQ (count, oldest age, count per cause).
//!
//! Boundaries: configuration and the invocation only; the checks are `layer::guard`, the same
//! code `lake audit` and `lake freshness` run. Alerts and logs carry ids and counts, never keys.

use layer::config::{self, names, MissingVar};
use layer::guard::{GuardConfig, GuardReport};
use layer::ops::{OpsError, Topology};
use layer::pipeline::{Deps, PipelineConfig};

/// The ingestion bucket the audit lists.
pub const INGEST_BUCKET: &str = "LAKE_INGEST_BUCKET";
/// Every DLQ to summarise besides `LAKE_DLQ_URL`: the stage queues' redrive-policy DLQs,
/// comma-separated queue URLs.
pub const STAGE_DLQ_URLS: &str = "LAKE_STAGE_DLQ_URLS";
/// Seconds a file may sit between stages before it is at risk (default 900).
pub const MAX_IN_FLIGHT_SECS: &str = "LAKE_MAX_IN_FLIGHT_SECS";

/// Environment variables this Lambda needs (checked at cold start; `scripts/check_template.py`
/// proves `template.yaml` sets each of them).
pub const REQUIRED_ENV: &[&str] = &[
    "LAKE_DATASETS_TABLE",
    "LAKE_RUNS_TABLE",
    "LAKE_INGEST_BUCKET",
    "LAKE_DLQ_URL",
    "LAKE_STAGE_DLQ_URLS",
    "LAKE_ALERT_TOPIC_ARN",
    "LAKE_MAX_IN_FLIGHT_SECS",
];

/// The guard's wiring, read once per cold start.
pub struct Guard {
    pub deps: Deps,
    pub topo: Topology,
    pub cfg: GuardConfig,
}

impl Guard {
    /// From the environment, over AWS.
    pub async fn from_env() -> Result<Self, MissingVar> {
        config::require_all(REQUIRED_ENV)?;
        let pipeline = PipelineConfig {
            dlq: config::var(names::DLQ_URL)?,
            alert_topic: config::var(names::ALERT_TOPIC_ARN)?,
            ..Default::default()
        };
        let deps = Deps::aws(pipeline).await?;
        let topo = Topology { ingest_bucket: config::var(INGEST_BUCKET)?, ingest_queue: String::new() };
        let max = config::var(MAX_IN_FLIGHT_SECS)?;
        let max_in_flight_secs = max
            .trim()
            .parse()
            .map_err(|_| MissingVar(format!("{MAX_IN_FLIGHT_SECS} (a whole number of seconds)")))?;
        let mut dlqs = vec![deps.cfg.dlq.clone()];
        dlqs.extend(stage_dlqs(&config::var(STAGE_DLQ_URLS)?));
        Ok(Self { deps, topo, cfg: GuardConfig { max_in_flight_secs, dlqs } })
    }

    /// One scheduled run.
    pub async fn run(&self) -> Result<GuardReport, OpsError> {
        let r = layer::guard::run(&self.deps, &self.topo, &self.cfg, chrono::Utc::now()).await?;
        tracing::info!(
            versions = r.versions,
            at_risk = r.at_risk.len(),
            silent = r.freshness.iter().filter(|f| f.overdue).count(),
            dlq_messages = r.dlqs.iter().map(|d| d.count).sum::<usize>(),
            "guard run"
        );
        Ok(r)
    }
}

/// The comma-separated DLQ URLs of `LAKE_STAGE_DLQ_URLS`.
pub fn stage_dlqs(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}
