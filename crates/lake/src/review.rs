//! `lake review`: proposed person matches waiting in `match_review` (PostgreSQL). `list` shows
//! the pending ones without values; `show` one with its per-field evidence (values masked unless
//! `--unmask`); `accept` completes the row into the dataset like an exact match (embedded lake
//! under `--lake`); `reject` leaves it in quarantine. Every decision is audited.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use pii_matching::pg::{Db, PgReviews, StoredReview};

#[derive(Args)]
pub struct ReviewArgs {
    #[command(subcommand)]
    cmd: ReviewCmd,
    /// The matching database (`postgres://user:pass@host:port/db?sslmode=require`).
    #[arg(long, env = "LAKE_DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// Folder of the embedded lake (buckets and ledger) where accepted rows are completed.
    #[arg(long, default_value = "./lake-data", global = true)]
    lake: PathBuf,
}

#[derive(Subcommand)]
enum ReviewCmd {
    /// Pending proposed matches, oldest first (ids, scores and rules only).
    List {
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// pending | accepted | rejected
        #[arg(long, default_value = "pending")]
        status: String,
    },
    /// One review with every candidate's per-field evidence.
    Show {
        id: i64,
        /// Show names, dates and addresses in full (PHI: only on an approved workstation).
        #[arg(long)]
        unmask: bool,
    },
    /// Accept a candidate (the best one unless --person): the row is completed into the dataset.
    Accept {
        id: i64,
        #[arg(long)]
        person: Option<i64>,
        #[arg(long, env = "USER")]
        reviewer: String,
    },
    /// Reject the proposal: the row stays in quarantine.
    Reject {
        id: i64,
        #[arg(long, env = "USER")]
        reviewer: String,
    },
}

fn mask(v: Option<&str>, unmask: bool) -> String {
    match v {
        None => "-".into(),
        Some(s) if unmask => s.to_string(),
        Some(s) => {
            let mut c = s.chars();
            format!("{}***", c.next().map(String::from).unwrap_or_default())
        }
    }
}

fn candidates(r: &StoredReview) -> Vec<(i64, f64, serde_json::Map<String, serde_json::Value>)> {
    r.candidates
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c["person_id"].as_i64().unwrap_or_default(),
                        c["score"].as_f64().unwrap_or_default(),
                        c["levels"].as_object().cloned().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn run(a: ReviewArgs) -> Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async move {
        let url = a.database_url.clone().context("--database-url (or LAKE_DATABASE_URL) is required")?;
        let db = Arc::new(Db::from_url(&url, 1)?);
        let reviews = PgReviews { db };
        match a.cmd {
            ReviewCmd::List { limit, status } => {
                let rows = reviews.list(&status, limit).await?;
                println!(
                    "{:>8}  {:<24}  {:<10}  {:<14}  {:>6}  {:>5}  rule",
                    "id", "record", "dataset", "source", "score", "cands"
                );
                for r in &rows {
                    println!(
                        "{:>8}  {:<24}  {:<10}  {:<14}  {:>6.1}  {:>5}  {}",
                        r.review_id,
                        r.record_ref,
                        r.dataset,
                        r.source,
                        r.best_score,
                        candidates(r).len(),
                        r.rule
                    );
                }
                println!("{} {status} review(s)", rows.len());
            }
            ReviewCmd::Show { id, unmask } => {
                let r = reviews.get(id).await?.with_context(|| format!("no review {id}"))?;
                let (deps, _) = lake::embedded::local_deps(&a.lake, None);
                let record = match deps.store.get(&r.bad_bucket, &r.bad_key, None).await {
                    Ok(b) => pii_matching::rows::read_parquet(b).ok().and_then(|b| {
                        pii_matching::rows::records(&b, &r.file_id).into_iter().nth(r.row_index as usize)
                    }),
                    Err(_) => None,
                };
                println!(
                    "review {}  {}  {} / {}  status {}  rule {}",
                    r.review_id, r.record_ref, r.dataset, r.source, r.status, r.rule
                );
                let rec = record.unwrap_or_default();
                println!(
                    "record      first {:<12} last {:<14} dob {:<10} address {}",
                    mask(rec.first_name.as_deref(), unmask),
                    mask(rec.last_name.as_deref(), unmask),
                    if unmask {
                        rec.dob.map(|d| d.to_string()).unwrap_or_default()
                    } else {
                        "****-**-**".into()
                    },
                    mask(rec.address.as_deref(), unmask)
                );
                for (pid, score, levels) in candidates(&r) {
                    let p = reviews.person(pid).await?.unwrap_or_default();
                    println!(
                        "candidate {pid}  score {score:.1}  first {:<12} last {:<14} dob {:<10} address {}",
                        mask(p.first_name.as_deref(), unmask),
                        mask(p.last_name.as_deref(), unmask),
                        if unmask {
                            p.dob.map(|d| d.to_string()).unwrap_or_default()
                        } else {
                            "****-**-**".into()
                        },
                        mask(p.address.as_deref(), unmask)
                    );
                    let ev: Vec<String> =
                        levels.iter().map(|(f, l)| format!("{f}={}", l.as_str().unwrap_or("?"))).collect();
                    println!("    evidence: {}", ev.join("  "));
                }
            }
            ReviewCmd::Accept { id, person, reviewer } => {
                let r = reviews.get(id).await?.with_context(|| format!("no review {id}"))?;
                if r.status != "pending" {
                    bail!("review {id} is already {}", r.status);
                }
                let cands = candidates(&r);
                let pid = person.or(cands.first().map(|c| c.0)).context("the review has no candidate")?;
                if !cands.iter().any(|c| c.0 == pid) {
                    bail!("person {pid} is not a candidate of review {id}");
                }
                let p = reviews
                    .person(pid)
                    .await?
                    .with_context(|| format!("person {pid} is not in the index"))?;
                let (deps, _) = lake::embedded::local_deps(&a.lake, None);
                let key = pii_matching::handler::complete_accepted(&deps, &r, &p).await?;
                if !reviews.decide(id, Some(pid), &reviewer).await? {
                    bail!("review {id} was decided meanwhile");
                }
                println!(
                    "accepted review {id}: person {pid}; completed row written to {}/{key}",
                    deps.cfg.raw_bucket
                );
            }
            ReviewCmd::Reject { id, reviewer } => {
                if !reviews.decide(id, None, &reviewer).await? {
                    bail!("review {id} is not pending");
                }
                println!("rejected review {id}: the row stays in quarantine");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
