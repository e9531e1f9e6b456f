//! `lake db` and `lake people`: the matching database for operators. `migrate` applies the schema, the person
//! index's key columns and the least-privilege roles (the same migrations a deploy runs); a
//! second run changes nothing. Connection: `--database-url`, or an RDS secret in Secrets
//! Manager (`--db-secret-arn`, for `migrate` the master-user secret). `people load` upserts the
//! county's person export into the index.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use pii_matching::pg::{Db, DbSettings, SecretsManager};

/// Where the matching database is (shared by `lake db` and `lake review`).
#[derive(Args, Clone)]
pub struct DbArgs {
    /// The matching database (`postgres://user:pass@host:port/db?sslmode=require`).
    #[arg(long, env = "LAKE_DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// The matching database's RDS secret in Secrets Manager (username, password, and host, port,
    /// dbname when present, else LAKE_DB_HOST, LAKE_DB_PORT, LAKE_DB_NAME; TLS required unless
    /// LAKE_DB_SSLMODE=disable). Refetched once if the database rejects it (rotation).
    #[arg(long, env = "LAKE_DB_SECRET_ARN", global = true)]
    pub db_secret_arn: Option<String>,
}

impl DbArgs {
    /// Is a database given at all?
    pub fn given(&self) -> bool {
        self.database_url.is_some() || self.db_secret_arn.is_some()
    }

    /// A pool of one connection to the given database (an error when none or both are given).
    pub async fn connect(&self) -> Result<Db> {
        match (&self.database_url, &self.db_secret_arn) {
            (Some(_), Some(_)) => bail!(
                "give either --database-url (LAKE_DATABASE_URL) or --db-secret-arn (LAKE_DB_SECRET_ARN), not both"
            ),
            (Some(url), None) => Ok(Db::from_url(url, 1)?),
            (None, Some(arn)) => {
                let sdk = layer::aws::sdk_config().await;
                let source = Arc::new(SecretsManager {
                    client: aws_sdk_secretsmanager::Client::new(&sdk),
                    secret_id: arn.clone(),
                });
                let settings = DbSettings { max_connections: 1, ..pii_matching::setup::db_settings_from_env()? };
                Ok(Db::from_secret(source, settings).await.context("the database secret")?)
            }
            (None, None) => bail!(
                "no database given: --database-url (LAKE_DATABASE_URL) or --db-secret-arn (LAKE_DB_SECRET_ARN)"
            ),
        }
    }
}

#[derive(Args)]
pub struct DbCmdArgs {
    #[command(subcommand)]
    cmd: DbCmd,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Subcommand)]
enum DbCmd {
    /// Apply the migrations the database lacks (schema, key columns, roles lake_matcher and
    /// lake_reviewer); prints what was applied. Safe to run twice or concurrently.
    Migrate,
}

pub fn run(a: DbCmdArgs) -> Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async move {
        match a.cmd {
            DbCmd::Migrate => {
                let db = a.db.connect().await?;
                let applied = db.apply(&pii_matching::pg::MIGRATOR).await.context("migrate")?;
                for m in &applied {
                    println!("applied {} {}", m.version, m.description);
                }
                let all = db.applied().await?;
                match applied.len() {
                    0 => println!("up to date: {} migration(s) applied before", all.len()),
                    n => println!("{n} migration(s) applied; {} in all", all.len()),
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[derive(Args)]
pub struct PeopleArgs {
    #[command(subcommand)]
    cmd: PeopleCmd,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Subcommand)]
enum PeopleCmd {
    /// Upsert a person export (CSV) into the index by person_id, every value normalised as the
    /// records are. A row that cannot be loaded is reported by line number and reason (never by
    /// value) and nothing is loaded; loading the same file twice changes nothing.
    Load {
        file: std::path::PathBuf,
        /// Export column names per index column.
        #[arg(long, default_value = "config/people.toml")]
        mapping: std::path::PathBuf,
        /// Delete persons missing from this (full) export, instead of marking them inactive.
        #[arg(long, conflicts_with = "partial")]
        prune: bool,
        /// The file is not a full export: persons missing from it stay as they are (by default
        /// they are marked inactive: no longer candidates, kept for the decisions that name them).
        #[arg(long)]
        partial: bool,
    },
}

pub fn run_people(a: PeopleArgs) -> Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async move {
        let PeopleCmd::Load { file, mapping, prune, partial } = a.cmd;
        let m = pii_matching::people::PeopleMapping::from_file(&mapping)?;
        let total = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let mut bar = |read: u64| {
            if tty && total > 0 {
                let pct = read as f64 * 100.0 / total as f64;
                eprint!("\r  reading {:.1} / {:.1} MB ({pct:.0}%)   ", read as f64 / 1e6, total as f64 / 1e6);
            }
        };
        let read = pii_matching::people::read_export_with(&file, &m, &mut bar)?;
        if tty {
            eprint!("\r{:60}\r", "");
        }
        eprintln!("read {} person(s) from {}", read.persons.len(), file.display());
        if !read.rejected.is_empty() {
            for r in read.rejected.iter().take(50) {
                eprintln!("line {}: {}", r.line, r.reason);
            }
            bail!(
                "{} row(s) of {} cannot be loaded (first 50 above); nothing loaded",
                read.rejected.len(),
                file.display()
            );
        }
        let db = a.db.connect().await?;
        use pii_matching::pg::Missing;
        let missing = match (prune, partial) {
            (true, _) => Missing::Delete,
            (false, true) => Missing::Keep,
            (false, false) => Missing::Inactivate,
        };
        let c = pii_matching::pg::upsert_people(&db, &read.persons, missing).await.context("load")?;
        println!(
            "loaded {}: {} inserted, {} updated, {} unchanged, {} marked inactive, {} active again, {} pruned",
            file.display(),
            c.inserted,
            c.updated,
            c.unchanged,
            c.inactivated,
            c.reactivated,
            c.pruned
        );
        Ok(ExitCode::SUCCESS)
    })
}
