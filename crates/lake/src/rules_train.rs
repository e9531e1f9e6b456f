//! `lake rules train`: learns the matching weights from a person file and a record file
//! (`pii_matching::train`) and writes a rules file with them, plus a report of every level's
//! m, u and weight.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use pii_matching::train::{self, TrainOptions};
use pii_matching::{evaluate, Rules};

#[derive(Args)]
pub struct TrainArgs {
    /// The person index (CSV or Parquet, the columns of `lake match --people`).
    #[arg(long, value_name = "FILE")]
    people: PathBuf,
    /// Records to learn from (CSV, as `lake match --records`): unlabelled is enough.
    #[arg(long, value_name = "FILE")]
    records: PathBuf,
    /// Where the trained rules go.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The rules whose levels are trained (default: the shipped config/matching.toml); comments
    /// and nicknames are kept.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// Also write the report (every level's m, u, weight and pair counts) here.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// A truth file (record id, true person id): thresholds are then chosen on measured
    /// precision instead of the model's estimate, the proposed one by matching the records with
    /// the trained rules (exact+proposed pair precision). The weights never see it.
    #[arg(long, value_name = "FILE")]
    truth: Option<PathBuf>,
    /// Seed of the random pairs (the same seed and data give the same rules).
    #[arg(long, default_value_t = 20_240_917)]
    seed: u64,
    /// Random record/person pairs for the u probabilities.
    #[arg(long, default_value_t = 2_000_000)]
    random_pairs: usize,
    /// Precision the exact tier's threshold must reach.
    #[arg(long, default_value_t = 0.999, value_parser = precision)]
    exact_precision: f64,
    /// Precision the exact and proposed pairs together must reach at the proposed threshold
    /// (above the goal when the training records pool several sources, so that each still
    /// reaches the goal alone).
    #[arg(long, default_value_t = 0.98, value_parser = precision)]
    proposed_precision: f64,
}

/// A precision: a number in (0, 1].
fn precision(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 1.0 => Ok(p),
        _ => Err(format!("`{s}` is not a precision (a number above 0 and at most 1)")),
    }
}

pub async fn run(a: TrainArgs) -> Result<ExitCode> {
    let (base, rules) = match &a.rules {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let r = Rules::from_toml_str(&text, &p.display().to_string())?;
            (text, r)
        }
        None => (include_str!("../../../config/matching.toml").to_string(), Rules::builtin()),
    };
    let index = lake::embedded::load_people(&a.people)?;
    let records = evaluate::read_records(&a.records)?;
    anyhow::ensure!(!records.is_empty() && !index.is_empty(), "need at least one record and one person");
    let truth = a.truth.as_deref().map(evaluate::read_truth).transpose()?;
    let o = TrainOptions {
        seed: a.seed,
        random_pairs: a.random_pairs,
        exact_precision: a.exact_precision,
        proposed_precision: a.proposed_precision,
        ..TrainOptions::default()
    };
    eprintln!("training on {} records against {} persons ...", records.len(), index.len());
    let mut t = train::train(&rules, &index, &records, truth.as_ref(), &o).await?;
    let mut text = train::write_rules(&base, &t).map_err(anyhow::Error::msg)?;
    if let Some(truth) = &truth {
        eprintln!("choosing the proposed threshold by matching the records ...");
        text = train::tune_proposed(&text, &mut t, &index, &records, truth, o.proposed_precision).await?;
    }
    std::fs::write(&a.out, text).with_context(|| format!("writing {}", a.out.display()))?;
    let report = train::report(&t);
    print!("{report}");
    if let Some(p) = &a.report {
        std::fs::write(p, &report).with_context(|| format!("writing {}", p.display()))?;
    }
    println!("rules written to {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}
