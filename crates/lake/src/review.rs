//! `lake review`: proposed person matches waiting for a data scientist. `list` shows the pending
//! ones, `show` one with every candidate's per-field evidence (values masked unless `--unmask`),
//! `accept` completes the row into the dataset like an exact match, `reject` leaves it in
//! quarantine. Every decision is audited (`match_decision`).
//!
//! Where the reviews are: PostgreSQL (`--database-url`, or the RDS secret `--db-secret-arn` from
//! Secrets Manager, as the pii-matching Lambda reads it), else the embedded lake's review store
//! that `lake run --people` fills. Where an accepted row goes: the embedded lake under `--lake`
//! (`--backend local`) or the raw bucket (`--backend aws`, SSE-KMS), at the key the pii-matching
//! handler uses for reviewed rows, with the ledger counts moved once.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use layer::pipeline::{Deps, PipelineConfig};
use pii_matching::pg::{Db, DbSettings, PgReviews, SecretsManager, StoredReview};
use pii_matching::review_store::LocalReviews;
use pii_matching::{MemoryIndex, Person, Record};

#[derive(Args)]
pub struct ReviewArgs {
    #[command(subcommand)]
    cmd: ReviewCmd,
    /// The matching database (`postgres://user:pass@host:port/db?sslmode=require`).
    #[arg(long, env = "LAKE_DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// The matching database's RDS secret in Secrets Manager (username, password, and host, port,
    /// dbname when present, else LAKE_DB_HOST, LAKE_DB_PORT, LAKE_DB_NAME; TLS required unless
    /// LAKE_DB_SSLMODE=disable). Refetched once if the database rejects it (rotation).
    #[arg(long, env = "LAKE_DB_SECRET_ARN", global = true)]
    db_secret_arn: Option<String>,
    /// Folder of the embedded lake: its review store (used when no database is given) and, with
    /// --backend local, the buckets and ledger accepted rows are completed into.
    #[arg(long, default_value = "./lake-data", global = true)]
    lake: PathBuf,
    /// Where accepted rows are written and bad rows read: `local` (the embedded lake) or `aws`
    /// (LAKE_RAW_BUCKET with SSE-KMS key LAKE_KMS_KEY_ID, ledger LAKE_RUNS_TABLE; the bad rows
    /// from the bucket the review names; AWS_ENDPOINT_URL honoured).
    #[arg(long, default_value = "local", value_parser = ["local", "aws"], global = true)]
    backend: String,
    /// Person file for the embedded review store (default: the file `lake run --people` used).
    #[arg(long, value_name = "FILE", global = true)]
    people: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ReviewCmd {
    /// Proposed matches, oldest first: ids, scores, rules and the record's name and birth date,
    /// masked unless --unmask.
    List {
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// pending | accepted | rejected
        #[arg(long, default_value = "pending")]
        status: String,
        /// Show names and birth dates in full (PHI: only on an approved workstation).
        #[arg(long)]
        unmask: bool,
    },
    /// One review: the record and every candidate field by field, with the comparison level
    /// each field reached (values masked unless --unmask).
    Show {
        id: i64,
        /// Show names, dates, addresses and SSNs in full (PHI: only on an approved workstation).
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

/// The first character, then stars (a one-character value: a star); `-` for no value.
fn mask(v: Option<&str>, unmask: bool) -> String {
    match v {
        None => "-".into(),
        Some(s) if unmask => s.to_string(),
        Some(s) if s.chars().count() <= 1 => "*".into(),
        Some(s) => {
            let mut c = s.chars();
            format!("{}***", c.next().map(String::from).unwrap_or_default())
        }
    }
}

/// Dates, SSNs, phones, ZIPs: nothing shown unless unmasked.
fn hide(v: Option<String>, unmask: bool, masked: &str) -> String {
    match v {
        None => "-".into(),
        Some(s) if unmask => s,
        Some(_) => masked.into(),
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

/// Where the reviews are.
enum Store {
    Pg(PgReviews),
    Local { reviews: LocalReviews, people: Option<PathBuf>, index: OnceCell<MemoryIndex> },
}

impl Store {
    async fn open(a: &ReviewArgs) -> Result<Self> {
        match (&a.database_url, &a.db_secret_arn) {
            (Some(_), Some(_)) => bail!(
                "give either --database-url (LAKE_DATABASE_URL) or --db-secret-arn (LAKE_DB_SECRET_ARN), not both"
            ),
            (Some(url), None) => Ok(Store::Pg(PgReviews { db: Arc::new(Db::from_url(url, 1)?) })),
            (None, Some(arn)) => {
                let sdk = layer::aws::sdk_config().await;
                let source = Arc::new(SecretsManager {
                    client: aws_sdk_secretsmanager::Client::new(&sdk),
                    secret_id: arn.clone(),
                });
                let settings =
                    DbSettings { max_connections: 1, ..pii_matching::setup::db_settings_from_env()? };
                let db = Db::from_secret(source, settings).await.context("the database secret")?;
                Ok(Store::Pg(PgReviews { db: Arc::new(db) }))
            }
            (None, None) => {
                let reviews = lake::embedded::review_store(&a.lake);
                if !reviews.exists() {
                    bail!(
                        "no review database given (--database-url / LAKE_DATABASE_URL or --db-secret-arn / \
                         LAKE_DB_SECRET_ARN) and no embedded review store at {} (`lake run DIR --people FILE \
                         --lake {}` creates one)",
                        reviews.path().display(),
                        a.lake.display()
                    );
                }
                eprintln!("reviews: embedded review store {}", reviews.path().display());
                Ok(Store::Local { reviews, people: a.people.clone(), index: OnceCell::new() })
            }
        }
    }

    async fn list(&self, status: &str, limit: i64) -> Result<Vec<StoredReview>> {
        Ok(match self {
            Store::Pg(p) => p.list(status, limit).await?,
            Store::Local { reviews, .. } => reviews.list(status, limit)?,
        })
    }

    async fn get(&self, id: i64) -> Result<StoredReview> {
        let r = match self {
            Store::Pg(p) => p.get(id).await?,
            Store::Local { reviews, .. } => reviews.get(id)?,
        };
        r.with_context(|| format!("no review {id}"))
    }

    async fn person(&self, id: i64) -> Result<Option<Person>> {
        match self {
            Store::Pg(p) => Ok(p.person(id).await?),
            Store::Local { reviews, people, index } => {
                if index.get().is_none() {
                    let path = match people {
                        Some(p) => p.clone(),
                        None => reviews.people_file()?.context(
                            "the embedded review store does not name its person file: pass --people FILE",
                        )?,
                    };
                    let _ = index.set(lake::embedded::load_people(&path)?);
                }
                Ok(index.get().and_then(|i| i.person(id)).cloned())
            }
        }
    }

    async fn decide(&self, id: i64, person: Option<i64>, reviewer: &str) -> Result<bool> {
        Ok(match self {
            Store::Pg(p) => p.decide(id, person, reviewer).await?,
            Store::Local { reviews, .. } => reviews.decide(id, person, reviewer)?,
        })
    }
}

/// The ports accepted rows are written through (and bad rows read from).
async fn row_deps(a: &ReviewArgs) -> Result<Deps> {
    if a.backend != "aws" {
        return Ok(lake::embedded::local_deps(&a.lake, None).0);
    }
    use layer::config::{names, opt, var};
    let sdk = layer::aws::sdk_config().await;
    let cfg = PipelineConfig {
        raw_bucket: var(names::RAW_BUCKET)?,
        quarantine_bucket: opt(names::QUARANTINE_BUCKET).unwrap_or_default(),
        kms_key: Some(var(names::KMS_KEY_ID)?),
        ..Default::default()
    };
    Ok(Deps::on_sdk(&sdk, cfg, opt(names::DATASETS_TABLE).unwrap_or_default())?)
}

/// The records of a bad file and the missing fields of each row.
type BadRows = (Vec<Record>, Vec<Vec<String>>);

/// The quarantined row of a review and its missing fields (None when the bad file cannot be
/// read from this backend); each bad file is read once.
async fn record(
    deps: &Deps,
    cache: &mut HashMap<(String, String), Option<BadRows>>,
    r: &StoredReview,
) -> Option<(Record, Vec<String>)> {
    let k = (r.bad_bucket.clone(), r.bad_key.clone());
    if !cache.contains_key(&k) {
        let rows = match deps.store.get(&r.bad_bucket, &r.bad_key, None).await {
            Ok(bytes) => pii_matching::rows::read_parquet(bytes)
                .ok()
                .map(|b| (pii_matching::rows::records(&b, &r.file_id), pii_matching::rows::missing(&b))),
            Err(_) => None,
        };
        cache.insert(k.clone(), rows);
    }
    let (recs, missing) = cache.get(&k)?.as_ref()?;
    let i = usize::try_from(r.row_index).ok()?;
    Some((recs.get(i)?.clone(), missing.get(i).cloned().unwrap_or_default()))
}

const FIELDS: [&str; 8] = ["first_name", "last_name", "dob", "sex", "address", "city", "zip", "phone"];

fn record_value(r: &Record, f: &str, unmask: bool) -> String {
    match f {
        "first_name" => mask(r.first_name.as_deref(), unmask),
        "last_name" => mask(r.last_name.as_deref(), unmask),
        "dob" => hide(r.dob.map(|d| d.to_string()), unmask, "****-**-**"),
        "sex" => mask(r.sex.as_deref(), unmask),
        "address" => mask(r.address.as_deref(), unmask),
        "city" => mask(r.city.as_deref(), unmask),
        "zip" => hide(r.zip.clone(), unmask, "*****"),
        "phone" => hide(r.phone.clone(), unmask, "***-***-****"),
        _ => "-".into(),
    }
}

fn person_value(p: &Person, f: &str, unmask: bool) -> String {
    match f {
        "first_name" => mask(p.first_name.as_deref(), unmask),
        "last_name" => mask(p.last_name.as_deref(), unmask),
        "dob" => hide(p.dob.map(|d| d.to_string()), unmask, "****-**-**"),
        "sex" => mask(p.sex.as_deref(), unmask),
        "address" => mask(p.address.as_deref(), unmask),
        "city" => mask(p.city.as_deref(), unmask),
        "zip" => hide(p.zip.as_deref().map(String::from), unmask, "*****"),
        "phone" => hide(p.phone.as_deref().map(String::from), unmask, "***-***-****"),
        "ssn" => hide(p.ssn.as_deref().map(String::from), unmask, "***-**-****"),
        _ => "-".into(),
    }
}

pub fn run(a: ReviewArgs) -> Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async move {
        let store = Store::open(&a).await?;
        match &a.cmd {
            ReviewCmd::List { limit, status, unmask } => {
                let rows = store.list(status, *limit).await?;
                let deps = row_deps(&a).await?;
                let mut cache = HashMap::new();
                println!(
                    "{:>8}  {:<24}  {:<10}  {:<14}  {:>6}  {:>5}  {:<16}  record",
                    "id", "record_ref", "dataset", "source", "score", "cands", "rule"
                );
                for r in &rows {
                    let who = match record(&deps, &mut cache, r).await {
                        Some((rec, _)) => format!(
                            "{} {} {}",
                            mask(rec.first_name.as_deref(), *unmask),
                            mask(rec.last_name.as_deref(), *unmask),
                            hide(rec.dob.map(|d| d.to_string()), *unmask, "****-**-**")
                        ),
                        None => "(bad rows not readable from this backend)".into(),
                    };
                    println!(
                        "{:>8}  {:<24}  {:<10}  {:<14}  {:>6.1}  {:>5}  {:<16}  {who}",
                        r.review_id,
                        r.record_ref,
                        r.dataset,
                        r.source,
                        r.best_score,
                        candidates(r).len(),
                        r.rule
                    );
                }
                println!("{} {status} review(s){}", rows.len(), if *unmask { "" } else { "; values masked" });
            }
            ReviewCmd::Show { id, unmask } => {
                let r = store.get(*id).await?;
                let deps = row_deps(&a).await?;
                let rec = record(&deps, &mut HashMap::new(), &r).await;
                println!(
                    "review {}  {}  {} / {}  status {}  rule {}  best score {:.1}",
                    r.review_id, r.record_ref, r.dataset, r.source, r.status, r.rule, r.best_score
                );
                if let Some(pid) = r.accepted_person_id {
                    println!("accepted person {pid}");
                }
                if let Some(who) = &r.reviewer {
                    println!("decided by {who}");
                }
                let cands = candidates(&r);
                let mut persons = Vec::new();
                let mut unknown = None;
                for (pid, _, _) in &cands {
                    match store.person(*pid).await {
                        Ok(p) => persons.push(p),
                        Err(e) => {
                            unknown = Some(e);
                            persons.push(None);
                        }
                    }
                }
                if let Some(e) = unknown {
                    eprintln!("candidate values not shown: {e:#}");
                }
                match &rec {
                    Some((_, missing)) => println!("missing in the record: {}", missing.join(", ")),
                    None => println!("record: the bad rows are not readable from this backend (--backend?)"),
                }
                let mut head = format!("{:<12}  {:<24}", "field", "record");
                for (pid, score, _) in &cands {
                    head.push_str(&format!("  {:<36}", format!("candidate {pid} (score {score:.1})")));
                }
                println!("{}", head.trim_end());
                for f in FIELDS.iter().chain(["ssn"].iter()) {
                    let rv =
                        rec.as_ref().map(|(r, _)| record_value(r, f, *unmask)).unwrap_or_else(|| "?".into());
                    let mut line = format!("{f:<12}  {rv:<24}");
                    for ((_, _, levels), p) in cands.iter().zip(&persons) {
                        let v = p.as_ref().map(|p| person_value(p, f, *unmask)).unwrap_or_else(|| "?".into());
                        let level = levels.get(*f).and_then(|l| l.as_str()).unwrap_or("");
                        let cell = if level.is_empty() { v } else { format!("{v} [{level}]") };
                        line.push_str(&format!("  {cell:<36}"));
                    }
                    println!("{}", line.trim_end());
                }
                if !*unmask {
                    println!("(values masked; --unmask shows them)");
                }
            }
            ReviewCmd::Accept { id, person, reviewer } => {
                let r = store.get(*id).await?;
                if r.status != "pending" {
                    bail!(
                        "review {id} is already {}{}: nothing changed",
                        r.status,
                        r.reviewer.as_deref().map(|w| format!(" (by {w})")).unwrap_or_default()
                    );
                }
                let cands = candidates(&r);
                let pid = person.or(cands.first().map(|c| c.0)).context("the review has no candidate")?;
                if !cands.iter().any(|c| c.0 == pid) {
                    bail!("person {pid} is not a candidate of review {id}");
                }
                let p =
                    store.person(pid).await?.with_context(|| format!("person {pid} is not in the index"))?;
                let deps = row_deps(&a).await?;
                let key = pii_matching::handler::complete_accepted(&deps, &r, &p).await?;
                if !store.decide(*id, Some(pid), reviewer).await? {
                    bail!(
                        "review {id} was decided by someone else meanwhile; the completed row was written to \
                         {}/{key}",
                        deps.cfg.raw_bucket
                    );
                }
                println!(
                    "accepted review {id}: person {pid}; completed row written to {}/{key}",
                    deps.cfg.raw_bucket
                );
            }
            ReviewCmd::Reject { id, reviewer } => {
                let r = store.get(*id).await?;
                if r.status != "pending" || !store.decide(*id, None, reviewer).await? {
                    bail!("review {id} is already {}: nothing changed", r.status);
                }
                println!("rejected review {id}: the row stays in quarantine ({})", r.record_ref);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
