//! `lake match`: tries the matching rules on a laptop. Records (CSV, canonical column names)
//! against a person file in memory or a PostgreSQL person index; one decision row per record in
//! `--out`; with `--truth`, precision and recall per tier, and how blocking did (pair
//! completeness, candidates per record, per error kind: `pii_matching::measure`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use pii_matching::evaluate::{self, Quality};
use pii_matching::{Matcher, PersonIndex, Rules, Tier};

#[derive(Args)]
pub struct MatchArgs {
    /// Person file (CSV or Parquet) for the in-memory index.
    #[arg(long, value_name = "FILE", conflicts_with = "database_url")]
    people: Option<PathBuf>,
    /// A PostgreSQL person index instead of --people.
    #[arg(long, hide_env_values = true)]
    database_url: Option<String>,
    /// Records to match (CSV: record_id or encounter_id, first_name, last_name, dob, sex,
    /// address, city, zip, phone).
    #[arg(long, value_name = "FILE")]
    records: PathBuf,
    /// Where the decisions go (CSV: record_id, tier, rule, person_ids, score).
    #[arg(long, value_name = "FILE", default_value = "decisions.csv")]
    out: PathBuf,
    /// Rules file (default: the shipped config/matching.toml).
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// Truth file (record id, true person id or empty; optional variant and errors columns):
    /// prints precision and recall per tier, pair completeness, candidates per record and a
    /// table per error kind.
    #[arg(long, value_name = "FILE")]
    truth: Option<PathBuf>,
}

fn line(name: &str, q: Quality) -> String {
    format!(
        "{name:<16} {:>9} {:>9} {:>9.4} {:>9.4}",
        q.predicted,
        q.true_positives,
        q.precision(),
        q.recall()
    )
}

pub fn run(a: MatchArgs) -> Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async move {
        let rules = match &a.rules {
            Some(p) => Rules::from_file(p)?,
            None => Rules::builtin(),
        };
        let index: Box<dyn PersonIndex> = match (&a.people, &a.database_url) {
            (Some(p), None) => Box::new(lake::embedded::load_people(p)?),
            (None, Some(url)) => Box::new(pii_matching::pg::PgIndex {
                db: Arc::new(pii_matching::pg::Db::from_url(url, 4)?),
                chunk: 4096,
            }),
            _ => bail!("give --people FILE or --database-url URL"),
        };
        let records = evaluate::read_records(&a.records)?;
        let records: Arc<[_]> = records.into();
        let m = Arc::new(Matcher::new(rules).with_trace(a.truth.is_some()));
        let t = std::time::Instant::now();
        let (ds, _) = m.match_batch(index.as_ref(), records.clone()).await.context("matching")?;
        evaluate::write_decisions(&a.out, &ds)?;
        let n = |t: Tier| ds.iter().filter(|d| d.tier == t).count();
        println!(
            "{} records in {:.2}s: {} exact, {} proposed, {} none; decisions in {}",
            ds.len(),
            t.elapsed().as_secs_f64(),
            n(Tier::Exact),
            n(Tier::Proposed),
            n(Tier::None),
            a.out.display()
        );
        if let Some(path) = &a.truth {
            let rows = pii_matching::measure::read_truth_rows(path)?;
            let truth = rows.iter().map(|(k, v)| (k.clone(), v.person)).collect();
            println!("{:<16} {:>9} {:>9} {:>9} {:>9}", "tier", "predicted", "correct", "precision", "recall");
            println!("{}", line("exact", evaluate::quality(&ds, &truth, &[Tier::Exact])));
            println!("{}", line("proposed", evaluate::quality(&ds, &truth, &[Tier::Proposed])));
            println!(
                "{}",
                line("exact+proposed", evaluate::quality(&ds, &truth, &[Tier::Exact, Tier::Proposed]))
            );
            print!("{}", pii_matching::measure::Report::of(&ds, &records, &rows).render());
        }
        Ok(ExitCode::SUCCESS)
    })
}
