//! `lake db` and `lake people`: the matching database for operators. `migrate` applies the schema, the person
//! index's key columns and the least-privilege roles (the same migrations a deploy runs); a
//! second run changes nothing. Connection: `--database-url`, an RDS secret in Secrets Manager
//! (`--db-secret-arn`, for `migrate` the master-user secret), or IAM database authentication as
//! a role's own user (`--db-user lake_loader`). `people load` upserts the county's person export
//! (a file, or an S3 object with `--backend aws`) into the index, with a progress bar.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use layer::Backend;
use pii_matching::people::{PeopleFile, PeopleMapping, ReadProgress};
use pii_matching::pg::{Db, DbSettings, IamTarget, IamToken, SecretSource, SecretsManager};

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
    /// Log in as this database user with IAM database authentication (e.g. lake_loader for
    /// `people load`): a token signed with your AWS credentials (rds-db:connect on that user),
    /// for LAKE_DB_HOST / LAKE_DB_PORT / LAKE_DB_NAME, TLS as LAKE_DB_SSLMODE says.
    #[arg(long, global = true, value_name = "USER")]
    pub db_user: Option<String>,
}

impl DbArgs {
    /// Is a database given at all?
    pub fn given(&self) -> bool {
        self.database_url.is_some() || self.db_secret_arn.is_some() || self.db_user.is_some()
    }

    /// A pool of one connection to the given database (an error when none or several are given).
    pub async fn connect(&self) -> Result<Db> {
        let given = [self.database_url.is_some(), self.db_secret_arn.is_some(), self.db_user.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            bail!(
                "give one of --database-url (LAKE_DATABASE_URL), --db-secret-arn (LAKE_DB_SECRET_ARN) \
                 or --db-user, not several"
            );
        }
        if let Some(url) = &self.database_url {
            return Ok(Db::from_url(url, 1)?);
        }
        if !self.given() {
            bail!(
                "no database given: --database-url (LAKE_DATABASE_URL), --db-secret-arn (LAKE_DB_SECRET_ARN) \
                 or --db-user"
            );
        }
        let sdk = layer::aws::sdk_config().await;
        let settings = DbSettings { max_connections: 1, ..pii_matching::setup::db_settings_from_env()? };
        let source: Arc<dyn SecretSource> = match (&self.db_secret_arn, &self.db_user) {
            (Some(arn), _) => Arc::new(SecretsManager {
                client: aws_sdk_secretsmanager::Client::new(&sdk),
                secret_id: arn.clone(),
            }),
            (None, Some(user)) => {
                if layer::config::opt(layer::config::names::DB_HOST).is_none() {
                    bail!("--db-user needs LAKE_DB_HOST: the token is signed for the host it logs in to");
                }
                let credentials = sdk.credentials_provider().context("--db-user: no AWS credentials")?;
                let region = sdk.region().map(|r| r.to_string()).context("--db-user: no AWS region")?;
                let target = IamTarget {
                    host: settings.host.clone(),
                    port: settings.port,
                    user: user.clone(),
                    region,
                };
                Arc::new(IamToken { target, credentials })
            }
            (None, None) => bail!("no database given"),
        };
        Db::from_secret(source, settings).await.context("the database credentials")
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
    /// Upsert a person export (CSV or Parquet; a file, or s3://bucket/key with --backend aws)
    /// into the index by person_id, every value normalised as the records are. A row that cannot
    /// be loaded is reported by line (row) number and reason (never by value) and nothing is
    /// loaded; export columns the mapping does not name are listed and read past; loading the
    /// same file twice changes nothing.
    Load {
        /// The export: a path, or s3://bucket/key (with --backend aws).
        file: String,
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
        /// `aws` reads s3:// exports with your AWS credentials (SDK GetObject; honours
        /// AWS_ENDPOINT_URL).
        #[arg(long, default_value = "local")]
        backend: Backend,
    },
}

/// A progress bar on stderr when it is a terminal (quiet otherwise): the rows read, then the
/// load's phases with their time.
struct Bar {
    tty: bool,
    start: std::time::Instant,
    drawn: std::time::Instant,
}

impl Bar {
    fn new() -> Self {
        let now = std::time::Instant::now();
        Self { tty: std::io::IsTerminal::is_terminal(&std::io::stderr()), start: now, drawn: now }
    }

    fn read(&mut self, p: ReadProgress) {
        if !self.tty || (self.drawn.elapsed().as_millis() < 100 && p.done < p.total) {
            return;
        }
        self.drawn = std::time::Instant::now();
        let frac = if p.total > 0 { (p.done as f64 / p.total as f64).min(1.0) } else { 0.0 };
        let filled = (frac * 30.0).round() as usize;
        eprint!(
            "\r  reading [{}{}] {:>3.0}%  {} rows  {:.1}s ",
            "#".repeat(filled),
            "-".repeat(30 - filled),
            frac * 100.0,
            p.rows,
            self.start.elapsed().as_secs_f64()
        );
    }

    fn phase(&self, name: &str) {
        if self.tty {
            eprint!("\r{:72}\r  {name} ... {:.1}s ", "", self.start.elapsed().as_secs_f64());
        }
    }

    fn clear(&self) {
        if self.tty {
            eprint!("\r{:72}\r", "");
        }
    }
}

/// The export's persons: from a file, or from S3 (`s3://bucket/key`, `--backend aws`).
async fn read_people(
    file: &str,
    mapping: &PeopleMapping,
    backend: Backend,
    bar: &mut Bar,
) -> Result<PeopleFile> {
    let Some(rest) = file.strip_prefix("s3://") else {
        let path = std::path::Path::new(file);
        return Ok(pii_matching::people::read_export_with(path, mapping, &mut |p| bar.read(p))?);
    };
    if backend != Backend::Aws {
        bail!("{file}: an s3:// export is read with --backend aws");
    }
    let Some((bucket, key)) = rest.split_once('/').filter(|(b, k)| !b.is_empty() && !k.is_empty()) else {
        bail!("{file}: not s3://bucket/key");
    };
    bar.phase("downloading");
    let sdk = layer::aws::sdk_config().await;
    let store = layer::aws::S3Store { client: layer::aws::s3(&sdk) };
    let bytes = layer::ports::ObjectStore::get(&store, bucket, key, None)
        .await
        .map_err(|e| anyhow::anyhow!("{file}: {}", layer::sanitize::port_text(&e.to_string())))?;
    let name = format!("s3://{bucket}/{}", key.rsplit('/').next().unwrap_or(key));
    Ok(pii_matching::people::read_export_bytes(&name, bytes.into(), mapping, &mut |p| bar.read(p))?)
}

pub fn run_people(a: PeopleArgs) -> Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async move {
        let PeopleCmd::Load { file, mapping, prune, partial, backend } = a.cmd;
        let m = PeopleMapping::from_file(&mapping)?;
        let mut bar = Bar::new();
        let read = read_people(&file, &m, backend, &mut bar).await;
        bar.clear();
        let read = read?;
        eprintln!("read {} person(s) from {file}", read.persons.len());
        if !read.unknown_columns.is_empty() {
            eprintln!(
                "note: {} export column(s) not in the mapping, not loaded: {}",
                read.unknown_columns.len(),
                read.unknown_columns.join(", ")
            );
        }
        if !read.rejected.is_empty() {
            for r in read.rejected.iter().take(50) {
                eprintln!("{r}");
            }
            bail!("{} row(s) of {file} cannot be loaded (first 50 above); nothing loaded", read.rejected.len());
        }
        let db = a.db.connect().await?;
        use pii_matching::pg::Missing;
        let missing = match (prune, partial) {
            (true, _) => Missing::Delete,
            (false, true) => Missing::Keep,
            (false, false) => Missing::Inactivate,
        };
        let c = pii_matching::pg::upsert_people_with(&db, &read.persons, missing, &|p| bar.phase(p)).await;
        bar.clear();
        let c = c.context("load")?;
        println!(
            "loaded {file}: {} inserted, {} updated, {} unchanged, {} marked inactive, {} active again, {} pruned",
            c.inserted, c.updated, c.unchanged, c.inactivated, c.reactivated, c.pruned
        );
        Ok(ExitCode::SUCCESS)
    })
}
