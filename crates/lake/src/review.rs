//! `lake review`: proposed person matches waiting for a data scientist. `list` shows the pending
//! ones, `show` one with every candidate's per-field evidence (values masked unless `--unmask`),
//! `accept` completes the row into the dataset like an exact match (the decision lands first, so
//! of two racing reviewers only the winner writes; `complete` writes an accepted row again if
//! that write failed), `reject` leaves it in quarantine. Every decision is audited (`match_decision`).
//!
//! Where the reviews are: PostgreSQL (`--database-url`, or the RDS secret `--db-secret-arn` from
//! Secrets Manager, as the pii-matching Lambda reads it), else the embedded lake's review store
//! that `lake run --people` fills. Where an accepted row goes: the embedded lake under `--lake`
//! (`--backend local`) or the raw bucket (`--backend aws`, SSE-KMS), at the key the pii-matching
//! handler uses for reviewed rows, with the ledger counts moved once. `serve` runs the review web
//! application (crate `review-web`) on 127.0.0.1 as the local reviewer; `audit` exports its trail.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use layer::pipeline::{Deps, PipelineConfig};
use pii_matching::pg::PgReviews;
use pii_matching::review::{self, ReviewDesk};
use pii_matching::review_store::LocalDesk;
use pii_matching::reviews::ReviewStatus;

#[derive(Args)]
pub struct ReviewArgs {
    #[command(subcommand)]
    cmd: ReviewCmd,
    #[command(flatten)]
    db: crate::db::DbArgs,
    /// Folder of the embedded lake: its review store (used when no database is given) and, with
    /// --backend local, the buckets and ledger accepted rows are completed into.
    #[arg(long, default_value = "./lake-data", global = true)]
    lake: PathBuf,
    /// Where accepted rows are written and bad rows read: `local` (the embedded lake) or `aws`
    /// (LAKE_RAW_BUCKET with SSE-KMS key LAKE_KMS_KEY_ID, ledger LAKE_RUNS_TABLE; the bad rows
    /// from the bucket the review names; AWS_ENDPOINT_URL honoured).
    #[arg(long, default_value = "local", global = true)]
    backend: layer::Backend,
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
        status: ReviewStatus,
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
    /// Write the completed row of an accepted review again: after an accept whose decision was
    /// recorded but whose row could not be written (the same key and bytes; the ledger moves once).
    Complete { id: i64 },
    /// Reject the proposal: the row stays in quarantine.
    Reject {
        id: i64,
        #[arg(long, env = "USER")]
        reviewer: String,
    },
    /// Serve the review web application on 127.0.0.1 only, as the local reviewer; prints the
    /// one-time login link to open in the browser (pages show PHI: approved workstation only).
    Serve {
        /// Port on 127.0.0.1 (0: any free port; the link says which).
        #[arg(long, default_value_t = 8450)]
        port: u16,
        /// The local identity decisions and reveals are recorded under.
        #[arg(long, env = "USER")]
        reviewer: String,
        /// A browser session ends after this many idle minutes.
        #[arg(long, default_value_t = 30)]
        idle_minutes: u64,
        /// Opening a proposal holds it for this many minutes.
        #[arg(long, default_value_t = 5)]
        lease_minutes: i64,
    },
    /// The web application's audit trail (views, reveals, decisions) since DATE (YYYY-MM-DD, UTC,
    /// or RFC 3339), one JSON object per line, oldest first.
    Audit {
        #[arg(long, value_name = "DATE")]
        since: String,
    },
}

/// Where the reviews are: PostgreSQL, or the embedded lake's review store.
async fn open(a: &ReviewArgs) -> Result<Box<dyn ReviewDesk>> {
    if a.db.given() {
        return Ok(Box::new(PgReviews { db: Arc::new(a.db.connect().await?) }));
    }
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
    let load = |p: &Path| lake::embedded::load_people(p).map_err(|e| format!("{e:#}"));
    Ok(Box::new(LocalDesk::new(reviews, a.people.clone(), Box::new(load))))
}

/// The ports accepted rows are written through (and bad rows read from).
async fn row_deps(a: &ReviewArgs) -> Result<Deps> {
    if a.backend != layer::Backend::Aws {
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

/// The desk and web store of `serve` and `audit`: PostgreSQL (a pool of several connections)
/// or the embedded lake's review store.
async fn open_web(a: &ReviewArgs) -> Result<(Arc<dyn ReviewDesk>, Arc<dyn review_web::WebStore>)> {
    if a.db.given() {
        let db = Arc::new(match &a.db.database_url {
            Some(url) if a.db.db_secret_arn.is_none() => pii_matching::pg::Db::from_url(url, 8)?,
            _ => a.db.connect().await?,
        });
        return Ok((Arc::new(PgReviews { db: db.clone() }), Arc::new(review_web::pg::PgWebStore::new(db))));
    }
    let desk: Arc<dyn ReviewDesk> = Arc::from(open(a).await?);
    Ok((desk, Arc::new(review_web::local::LocalWebStore::new(a.lake.join("reviews")))))
}

fn since(s: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    match chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) => Ok(d.and_time(chrono::NaiveTime::MIN).and_utc()),
        Err(_) => bail!("--since {s:?}: give a date (YYYY-MM-DD) or an RFC 3339 time"),
    }
}

async fn serve(a: &ReviewArgs, port: u16, reviewer: &str, idle: u64, lease: i64) -> Result<()> {
    let (desk, store) = open_web(a).await?;
    let deps = row_deps(a).await?;
    let auth = review_web::LocalAuth::new(reviewer, std::time::Duration::from_secs(idle.max(1) * 60));
    let token = auth.login_token().to_string();
    let settings = review_web::Settings {
        lease: chrono::Duration::minutes(lease.max(1)),
        banner: Some(format!(
            "Local review server on 127.0.0.1: you are {reviewer} (local identity, not the county sign-in). \
             Pages show PHI: approved workstation only."
        )),
        ..Default::default()
    };
    let app = review_web::App { desk, store, deps, auth: review_web::Auth::Local(auth), settings };
    let listener = review_web::bind_local(port).await?;
    let addr = listener.local_addr()?;
    println!("review web (the link signs in one browser, once): open http://{addr}/login?token={token}");
    use std::io::Write;
    std::io::stdout().flush()?;
    review_web::serve(listener, Arc::new(app)).await?;
    Ok(())
}

async fn audit(a: &ReviewArgs, from: &str) -> Result<()> {
    let t = since(from)?;
    let (_, store) = open_web(a).await?;
    for e in store.audit_since(t).await? {
        println!("{}", serde_json::to_string(&e)?);
    }
    Ok(())
}

pub fn run(a: ReviewArgs) -> Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async move {
        match &a.cmd {
            ReviewCmd::Serve { port, reviewer, idle_minutes, lease_minutes } => {
                serve(&a, *port, reviewer, *idle_minutes, *lease_minutes).await?;
                return Ok(ExitCode::SUCCESS);
            }
            ReviewCmd::Audit { since } => {
                audit(&a, since).await?;
                return Ok(ExitCode::SUCCESS);
            }
            _ => {}
        }
        let desk = open(&a).await?;
        let store = desk.as_ref();
        match &a.cmd {
            ReviewCmd::List { limit, status, unmask } => {
                let deps = row_deps(&a).await?;
                print_list(&review::list(store, &deps, *status, *limit, *unmask).await?, *status, *unmask);
            }
            ReviewCmd::Show { id, unmask } => {
                let r = review::get(store, *id).await?;
                let deps = row_deps(&a).await?;
                print_evidence(&review::evidence(store, &deps, r, *unmask).await?, *unmask);
            }
            ReviewCmd::Accept { id, person, reviewer } => {
                let (r, p) = review::choose(store, *id, *person).await?;
                let deps = row_deps(&a).await?;
                let done = review::complete(store, &deps, &r, &p, reviewer).await?;
                println!(
                    "accepted review {id}: person {}; completed row written to {}/{}",
                    done.person_id, done.bucket, done.key
                );
            }
            ReviewCmd::Complete { id } => {
                let deps = row_deps(&a).await?;
                let done = review::complete_again(store, &deps, *id).await?;
                println!(
                    "review {id}: person {}; completed row written to {}/{}",
                    done.person_id, done.bucket, done.key
                );
            }
            ReviewCmd::Reject { id, reviewer } => {
                let r = review::reject(store, *id, reviewer).await?;
                println!("rejected review {id}: the row stays in quarantine ({})", r.record_ref);
            }
            ReviewCmd::Serve { .. } | ReviewCmd::Audit { .. } => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn print_list(rows: &[review::Listed], status: ReviewStatus, unmask: bool) {
    println!(
        "{:>8}  {:<24}  {:<10}  {:<14}  {:>6}  {:>5}  {:<16}  record",
        "id", "record_ref", "dataset", "source", "score", "cands", "rule"
    );
    for l in rows {
        let r = &l.review;
        let who = l.who.as_deref().unwrap_or("(bad rows not readable from this backend)");
        println!(
            "{:>8}  {:<24}  {:<10}  {:<14}  {:>6.1}  {:>5}  {:<16}  {who}",
            r.review_id, r.record_ref, r.dataset, r.source, r.best_score, l.candidates, r.rule
        );
    }
    println!("{} {status} review(s){}", rows.len(), if unmask { "" } else { "; values masked" });
}

fn print_evidence(e: &review::Evidence, unmask: bool) {
    let r = &e.review;
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
    if let Some(err) = &e.unknown {
        eprintln!("candidate values not shown: {err}");
    }
    match &e.missing {
        Some(missing) => println!("missing in the record: {}", missing.join(", ")),
        None => println!("record: the bad rows are not readable from this backend (--backend?)"),
    }
    let mut head = format!("{:<12}  {:<24}", "field", "record");
    for c in &e.candidates {
        head.push_str(&format!("  {:<36}", format!("candidate {} (score {:.1})", c.person_id, c.score)));
    }
    println!("{}", head.trim_end());
    for f in &e.fields {
        let mut line = format!("{:<12}  {:<24}", f.field, f.record);
        for cell in &f.cells {
            line.push_str(&format!("  {cell:<36}"));
        }
        println!("{}", line.trim_end());
    }
    if !unmask {
        println!("(values masked; --unmask shows them)");
    }
}
