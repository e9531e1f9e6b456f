//! `lake match` and `lake rules`: trying and publishing the matching rules. `match` runs records
//! (CSV or Parquet with canonical column names, normalised as the transform writes them, or any
//! source file mapped by its source contract) against a person file in memory or a PostgreSQL
//! person index; one decision row per record in `--out`; with `--truth`, precision and recall
//! per tier, and how blocking did (pair completeness, candidates per record, per error kind, and
//! with `--by-key` what each blocking key kind costs and finds: `pii_matching::measure`).
//! `rules check` validates a rules file; `rules publish` makes it the version the pii-matching
//! function uses (within a minute, no redeploy); `rules train` learns the weights from the data
//! (`crate::rules_train`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use layer::Backend;
use pii_matching::evaluate::{self, Quality};
use pii_matching::rules_store::{self, DynamoRules, LocalRules, PublishError, RulesStore};
use pii_matching::{Matcher, PersonIndex, Record, Rules, Tier};

#[derive(Args)]
pub struct MatchArgs {
    /// Person file (CSV or Parquet) for the in-memory index, read as `lake people load` reads it.
    #[arg(long, value_name = "FILE", conflicts_with = "database_url")]
    people: Option<PathBuf>,
    /// Export column names per index column for --people (default: the index's own names).
    #[arg(long, value_name = "FILE", requires = "people")]
    people_mapping: Option<PathBuf>,
    /// A PostgreSQL person index instead of --people.
    #[arg(long, hide_env_values = true)]
    database_url: Option<String>,
    /// Records to match: CSV or Parquet with record_id (or encounter_id) and any of first_name,
    /// last_name, dob, sex, address, city, zip, phone; with --contract, a source's own file.
    #[arg(long, value_name = "FILE")]
    records: PathBuf,
    /// Map --records through this source contract (a name in --contracts, or a contract file):
    /// the workflow's transform turns it into canonical rows (good and bad), which are matched.
    #[arg(long, value_name = "NAME")]
    contract: Option<String>,
    /// Folder of the source contracts for --contract NAME.
    #[arg(long, value_name = "DIR", default_value = "config/sources")]
    contracts: PathBuf,
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
    /// With --truth: per blocking key kind of the rules, as if every record asked it, the keys,
    /// the persons found (rows), the keys finding more than max_candidates, the true pairs it
    /// finds and those only it finds; then the true pairs no kind finds (what each kind costs
    /// against what it is for). One more index query per kind (with --database-url, on the
    /// database).
    #[arg(long, requires = "truth")]
    by_key: bool,
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

/// The contract file of `name`: a path to a TOML file, or `<dir>/<name>.toml`.
fn contract_path(name: &str, dir: &Path) -> Result<PathBuf> {
    let p = Path::new(name);
    if p.extension().is_some_and(|e| e == "toml") && p.is_file() {
        return Ok(p.to_path_buf());
    }
    let p = dir.join(format!("{name}.toml"));
    if !p.is_file() {
        bail!("--contract {name}: no contract {} (give a source name in --contracts or a file)", p.display());
    }
    Ok(p)
}

/// The records of a source's file through its contract: the transform writes canonical good and
/// bad rows (values normalised as in the pipeline); both are matched, ids from the contract's
/// `encounter_id` (else the row number).
fn records_through_contract(contract: &Path, input: &Path) -> Result<Vec<Record>> {
    let catalog = crate::check::catalog_for(contract, None)?;
    let c = contracts::Contract::load(contract, &catalog)?;
    let schema = catalog.get(&c.dataset).context("the contract's dataset is not in the catalog")?;
    let f = std::fs::File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
    let name = input.file_name().and_then(|n| n.to_str()).unwrap_or("records").to_string();
    let (mut good, mut bad, mut malformed) = (Vec::new(), Vec::new(), Vec::new());
    let outs = transform::Outputs { good: &mut good, bad: &mut bad, malformed: &mut malformed };
    let s = transform::run(&c, schema, &name, f, outs, &transform::Options::default())
        .map_err(|e| anyhow::anyhow!("{} [{}] ({})", e, e.kind(), input.display()))?;
    eprintln!(
        "{}: {} rows through contract {} ({} good, {} bad, {} malformed and left out)",
        input.display(),
        s.rows_read,
        contract.display(),
        s.good,
        s.bad,
        s.malformed
    );
    let mut out = Vec::new();
    for bytes in [good, bad] {
        if bytes.is_empty() {
            continue;
        }
        let b = pii_matching::rows::read_parquet(bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
        let offset = out.len();
        let mut recs = evaluate::batch_records(&b, Some("encounter_id")).map_err(|e| anyhow::anyhow!(e))?;
        for (i, r) in recs.iter_mut().enumerate() {
            if b.schema().column_with_name("encounter_id").is_none() {
                r.reference = (offset + i + 1).to_string();
            }
        }
        out.extend(recs);
    }
    Ok(out)
}

pub fn run(a: MatchArgs) -> Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async move {
        let rules = match &a.rules {
            Some(p) => Rules::from_file(p)?,
            None => Rules::builtin(),
        };
        let index: Box<dyn PersonIndex> = match (&a.people, &a.database_url) {
            (Some(p), None) => {
                let mapping = match &a.people_mapping {
                    Some(m) => pii_matching::people::PeopleMapping::from_file(m)?,
                    None => pii_matching::people::PeopleMapping::identity(),
                };
                Box::new(lake::embedded::load_people_mapped(p, &mapping)?)
            }
            (None, Some(url)) => Box::new(pii_matching::pg::PgIndex::new(
                Arc::new(pii_matching::pg::Db::from_url(url, 4)?),
                4096,
            )),
            _ => bail!("give --people FILE or --database-url URL"),
        };
        let records = match &a.contract {
            Some(name) => records_through_contract(&contract_path(name, &a.contracts)?, &a.records)?,
            None => evaluate::read_records(&a.records)?,
        };
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
            if a.by_key {
                let (kinds, unfound) =
                    pii_matching::measure::by_key(&m.rules, index.as_ref(), &records, &rows).await?;
                let max = m.rules.blocking.max_candidates;
                print!("{}", pii_matching::measure::render_by_key(&kinds, unfound, max));
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[derive(Subcommand)]
pub enum RulesCmd {
    /// Validate a rules file; the message names the entry (field, level, rule) that is wrong.
    /// Exits 1 when it is invalid.
    Check { file: PathBuf },
    /// Validate a rules file and publish it as the next version (the embedded lake under --lake,
    /// or the datasets table LAKE_DATASETS_TABLE with --backend aws). An invalid file is refused
    /// and nothing changes; the same text as the current version publishes nothing. The
    /// pii-matching function uses the new version within a minute, without a redeploy.
    Publish {
        file: PathBuf,
        /// Folder of the embedded lake.
        #[arg(long, default_value = "./lake-data")]
        lake: PathBuf,
        #[arg(long, default_value = "local")]
        backend: Backend,
    },
    /// Learn the comparison weights from the data (u from random pairs, m by EM over the
    /// blocked pairs), choose the exact tier's threshold for a precision of 0.999, and write
    /// the rules with them.
    Train(crate::rules_train::TrainArgs),
}

fn read_text(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

fn summary(r: &Rules) -> String {
    format!(
        "{} blocking pass(es), {} compared field(s), {} exact rule(s), {} proposed rule(s), {} nickname group(s)",
        r.blocking.passes.len(),
        r.comparisons.len(),
        r.tiers.exact.rules.len(),
        r.tiers.proposed.rules.len(),
        r.nicknames.len()
    )
}

pub fn run_rules(c: RulesCmd) -> Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async move {
        match c {
            RulesCmd::Check { file } => {
                match Rules::from_toml_str(&read_text(&file)?, &file.display().to_string()) {
                    Ok(r) => {
                        println!("ok: {}: {}", file.display(), summary(&r));
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => {
                        eprintln!("invalid: {e}");
                        Ok(ExitCode::from(1))
                    }
                }
            }
            RulesCmd::Publish { file, lake, backend } => {
                let store: Box<dyn RulesStore> = match backend {
                    Backend::Local => Box::new(LocalRules::in_lake(&lake)),
                    Backend::Aws => {
                        let table = layer::config::var(layer::config::names::DATASETS_TABLE)?;
                        let sdk = layer::aws::sdk_config().await;
                        Box::new(DynamoRules { client: layer::aws::dynamodb(&sdk), table })
                    }
                };
                let text = read_text(&file)?;
                match rules_store::publish(store.as_ref(), &text, &file.display().to_string()).await {
                    Ok((v, true)) => println!("published matching rules v{v} ({})", file.display()),
                    Ok((v, false)) => println!("unchanged: matching rules v{v} is already this file"),
                    Err(PublishError::Invalid(e)) => bail!("{e}; nothing published"),
                    Err(e) => bail!("{e}"),
                }
                Ok(ExitCode::SUCCESS)
            }
            RulesCmd::Train(a) => crate::rules_train::run(a).await,
        }
    })
}
