//! The PostgreSQL (Aurora) adapter: connecting (credentials from Secrets Manager, fetched once
//! per cold start and refetched once when the database rejects them; TLS required outside
//! tests), the pool, the migrations and the driver-error mapping. By concern: [`index`] the
//! set-based candidate lookup and its key hashing, [`reviews`] proposals and decisions, [`load`]
//! the bulk load of a person file. Only the composition root (`setup`, the CLI) names this module.

mod iam;
mod index;
mod load;
mod reviews;

pub use iam::{auth_token, IamTarget, IamToken};
pub use index::{column, key_hash, PgIndex};
pub use load::{copy_people_csv, upsert_people, upsert_people_with, LoadCounts, Missing};
pub use reviews::PgReviews;

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};

use crate::index::IndexError;

/// The standard RDS secret JSON (`engine`, `host`, `port`, `dbname` are absent from an
/// RDS-managed master-user secret; then the settings from the environment are used).
#[derive(Clone, Deserialize)]
pub struct DbSecret {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub dbname: Option<String>,
}

impl std::fmt::Debug for DbSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbSecret(***)")
    }
}

impl DbSecret {
    pub fn parse(json: &str) -> Result<Self, IndexError> {
        serde_json::from_str(json).map_err(|e| {
            IndexError::Secret(format!(
                "not the RDS secret JSON (username, password, host, port, dbname): {e}"
            ))
        })
    }
}

/// Where the credentials come from.
#[async_trait]
pub trait SecretSource: Send + Sync {
    async fn fetch(&self) -> Result<DbSecret, IndexError>;

    /// How old fetched credentials may get before new connections need fresh ones (`None`: until
    /// the database rejects them, as a rotated secret).
    fn max_age(&self) -> Option<Duration> {
        None
    }
}

/// AWS Secrets Manager (`LAKE_DB_SECRET_ARN`).
pub struct SecretsManager {
    pub client: aws_sdk_secretsmanager::Client,
    pub secret_id: String,
}

#[async_trait]
impl SecretSource for SecretsManager {
    async fn fetch(&self) -> Result<DbSecret, IndexError> {
        let out = self.client.get_secret_value().secret_id(&self.secret_id).send().await.map_err(|e| {
            let e = aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string();
            IndexError::Secret(format!("GetSecretValue failed: {}", e.chars().take(300).collect::<String>()))
        })?;
        let s = out.secret_string().ok_or_else(|| IndexError::Secret("secret has no SecretString".into()))?;
        DbSecret::parse(s)
    }
}

/// How the connection to PostgreSQL is protected (`LAKE_DB_SSLMODE`, read by `setup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbTls {
    /// `verify-full` (the default; always in AWS): TLS, and the server certificate must chain to a
    /// CA in `root_cert` (a PEM bundle: in AWS the RDS CA bundle, `LAKE_DB_SSLROOTCERT`) and name
    /// the host connected to. `None` trusts only the built-in web roots, which lack the RDS CAs.
    VerifyFull { root_cert: Option<std::path::PathBuf> },
    /// `require`: TLS without verifying the certificate (encrypts; does not authenticate the server).
    Require,
    /// `disable`: plain TCP (local tests only).
    Disable,
}

impl DbTls {
    /// The `LAKE_DB_SSLMODE` value of this mode.
    pub fn mode(&self) -> &'static str {
        match self {
            DbTls::VerifyFull { .. } => "verify-full",
            DbTls::Require => "require",
            DbTls::Disable => "disable",
        }
    }
}

/// Connection settings besides the credentials.
#[derive(Debug, Clone)]
pub struct DbSettings {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    /// TLS to the server: `VerifyFull` in AWS; `Disable` only for local tests.
    pub tls: DbTls,
    pub max_connections: u32,
}

impl Default for DbSettings {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 5432,
            dbname: "postgres".into(),
            tls: DbTls::VerifyFull { root_cert: None },
            max_connections: 2,
        }
    }
}

fn options(secret: &DbSecret, s: &DbSettings) -> PgConnectOptions {
    let opts = PgConnectOptions::new()
        .host(secret.host.as_deref().unwrap_or(&s.host))
        .port(secret.port.unwrap_or(s.port))
        .database(secret.dbname.as_deref().unwrap_or(&s.dbname))
        .username(&secret.username)
        .password(&secret.password)
        .application_name("pii-matching");
    match &s.tls {
        DbTls::VerifyFull { root_cert: Some(ca) } => opts.ssl_mode(PgSslMode::VerifyFull).ssl_root_cert(ca),
        DbTls::VerifyFull { root_cert: None } => opts.ssl_mode(PgSslMode::VerifyFull),
        DbTls::Require => opts.ssl_mode(PgSslMode::Require),
        DbTls::Disable => opts.ssl_mode(PgSslMode::Disable),
    }
}

fn pool(opts: PgConnectOptions, max: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max.max(1))
        .acquire_timeout(Duration::from_secs(15))
        // no ping before every query (one extra round trip each); a connection that died
        // (failover) fails its query as DbUnavailable, which the queue retries
        .test_before_acquire(false)
        .connect_lazy_with(tuned(opts))
}

fn tuned(opts: PgConnectOptions) -> PgConnectOptions {
    // The batch is split into concurrent chunks here; a parallel plan per chunk only adds
    // worker start-up time to every query. The candidate query's plan does not depend on its
    // arrays (one index scan per key kind), so it is planned once per connection instead of
    // once per call (a custom plan for 1,000-key arrays cost ~0.3 ms of planning each time).
    opts.options([("max_parallel_workers_per_gather", "0"), ("plan_cache_mode", "force_generic_plan")])
}

/// Maps a driver error to the port's error without row values (SQLSTATE and class only).
pub fn map_err(e: sqlx::Error) -> IndexError {
    match &e {
        sqlx::Error::Database(d) => {
            let code = d.code().map(|c| c.to_string()).unwrap_or_default();
            if code.starts_with("28") {
                IndexError::Auth(format!("SQLSTATE {code}: {}", d.message()))
            } else if code == "42501" {
                IndexError::Denied(format!("SQLSTATE {code}: {}", d.message()))
            } else if code.starts_with("08") || code.starts_with("57") || code.starts_with("53") {
                IndexError::Unavailable(format!("SQLSTATE {code}"))
            } else {
                IndexError::Query(format!("SQLSTATE {code}"))
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => IndexError::Unavailable(e.to_string()),
        sqlx::Error::Configuration(_) => IndexError::Secret(e.to_string()),
        _ => IndexError::Query(e.to_string().chars().take(200).collect()),
    }
}

/// A connection pool that knows where its credentials came from.
pub struct Db {
    source: Option<Arc<dyn SecretSource>>,
    settings: DbSettings,
    pool: RwLock<PgPool>,
    fetched: std::sync::Mutex<Instant>,
}

impl Db {
    /// Fetches the secret once (cold start) and builds a lazy pool.
    pub async fn from_secret(
        source: Arc<dyn SecretSource>,
        settings: DbSettings,
    ) -> Result<Self, IndexError> {
        let secret = source.fetch().await?;
        let p = pool(options(&secret, &settings), settings.max_connections);
        Ok(Self { source: Some(source), settings, pool: RwLock::new(p), fetched: Instant::now().into() })
    }

    /// A fixed URL (tests, benchmark, CLI): no refetch.
    pub fn from_url(url: &str, max_connections: u32) -> Result<Self, IndexError> {
        let opts: PgConnectOptions =
            url.parse().map_err(|e: sqlx::Error| IndexError::Secret(e.to_string()))?;
        Ok(Self {
            source: None,
            settings: DbSettings { max_connections, ..DbSettings::default() },
            pool: RwLock::new(pool(opts, max_connections)),
            fetched: Instant::now().into(),
        })
    }

    pub fn pool(&self) -> PgPool {
        match self.pool.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Credentials that age (IAM tokens) are replaced for the connections the pool opens next;
    /// open connections stay (RDS checks a token only at login).
    async fn renew_if_old(&self) -> Result<(), IndexError> {
        let Some(src) = &self.source else { return Ok(()) };
        let Some(max) = src.max_age() else { return Ok(()) };
        let age = self.fetched.lock().map(|t| t.elapsed()).unwrap_or(max);
        if age < max {
            return Ok(());
        }
        let secret = src.fetch().await?;
        self.pool().set_connect_options(tuned(options(&secret, &self.settings)));
        if let Ok(mut t) = self.fetched.lock() {
            *t = Instant::now();
        }
        Ok(())
    }

    async fn refresh(&self) -> Result<(), IndexError> {
        let Some(src) = &self.source else { return Ok(()) };
        let secret = src.fetch().await?;
        let p = pool(options(&secret, &self.settings), self.settings.max_connections);
        let old = {
            let mut g = match self.pool.write() {
                Ok(g) => g,
                Err(g) => g.into_inner(),
            };
            std::mem::replace(&mut *g, p)
        };
        if let Ok(mut t) = self.fetched.lock() {
            *t = Instant::now();
        }
        old.close().await;
        Ok(())
    }

    /// Runs `f` on the pool; on an authentication failure refetches the secret once (rotation)
    /// and tries again. A second rejection is `IndexError::Auth` (permanent).
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, IndexError>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        self.renew_if_old().await?;
        match f(self.pool()).await.map_err(map_err) {
            Err(IndexError::Auth(m)) if self.source.is_some() => {
                tracing::warn!("database rejected the credentials; refetching the secret once");
                self.refresh().await?;
                f(self.pool())
                    .await
                    .map_err(map_err)
                    .map_err(|e| match e {
                        IndexError::Auth(m2) => {
                            IndexError::Auth(format!("{m2}; also after refetching the secret"))
                        }
                        other => other,
                    })
                    .inspect_err(|_| tracing::debug!(first = %m, "retry after refetch failed"))
            }
            r => r,
        }
    }

    /// Applies `migrations/` (idempotent).
    pub async fn migrate(&self) -> Result<(), IndexError> {
        self.apply(&MIGRATOR).await.map(|_| ())
    }

    /// Applies the migrations `m` has that the database lacks, in order; returns those applied now
    /// (empty: the database was up to date). See [`Db::apply_report`].
    pub async fn apply(&self, m: &Migrator) -> Result<Vec<Applied>, IndexError> {
        Ok(self.apply_report(m).await?.applied)
    }

    /// Applies the migrations `m` has that the database lacks, in order. Concurrent callers on one
    /// database wait for each other (a session advisory lock held for the whole run); each
    /// migration runs in its own transaction, so a failing one leaves nothing of itself behind,
    /// the ones before it stay applied and the error names its version. Migrations the database
    /// has and `m` does not know (newer code migrated it, and this is a rollback to older code)
    /// are left alone and reported as `ahead`, not an error.
    pub async fn apply_report(&self, m: &Migrator) -> Result<MigrateReport, IndexError> {
        let mut conn = self.pool().acquire().await.map_err(map_err)?;
        // Held on this connection around the run, so what was applied before and after is this
        // caller's own view (sqlx's own migration lock, on the same session, nests inside).
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATE_LOCK)
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
        let out = apply_locked(&mut conn, m).await;
        let unlocked =
            sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATE_LOCK).execute(&mut *conn).await;
        if unlocked.is_err() {
            conn.close_on_drop();
        }
        out
    }

    /// The migrations recorded as applied (none before the first run).
    pub async fn applied(&self) -> Result<Vec<Applied>, IndexError> {
        let mut conn = self.pool().acquire().await.map_err(map_err)?;
        applied_on(&mut conn).await
    }
}

/// The advisory lock key of [`Db::apply`] (any constant: advisory locks are per database).
const MIGRATE_LOCK: i64 = 0x006c_616b_656d_6967; // "lakemig"

async fn apply_locked(conn: &mut sqlx::PgConnection, m: &Migrator) -> Result<MigrateReport, IndexError> {
    let before = applied_on(conn).await?;
    let ahead: Vec<Applied> = before.iter().filter(|a| !m.version_exists(a.version)).cloned().collect();
    // the same migrations, tolerating applied versions they do not know (sqlx fails those with
    // VersionMissing, which would fail a stack rollback after a newer deploy migrated)
    let tolerant = Migrator { migrations: m.migrations.clone(), ignore_missing: true, ..Migrator::DEFAULT };
    tolerant.run(&mut *conn).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(e) => map_err(e),
        // the server's message names the statement's object (DDL: no row values)
        sqlx::migrate::MigrateError::ExecuteMigration(e, v) => {
            let why = e.as_database_error().map(|d| format!(": {}", d.message())).unwrap_or_default();
            match map_err(e) {
                IndexError::Query(m) => {
                    IndexError::Query(format!("migration {v} failed, nothing of it applied ({m}{why})"))
                }
                other => other,
            }
        }
        other => IndexError::Query(other.to_string()),
    })?;
    let after = applied_on(conn).await?;
    let applied = after.into_iter().filter(|a| !before.iter().any(|b| b.version == a.version)).collect();
    Ok(MigrateReport { applied, ahead })
}

async fn applied_on(conn: &mut sqlx::PgConnection) -> Result<Vec<Applied>, IndexError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, description FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)?;
    Ok(rows.into_iter().map(|(version, description)| Applied { version, description }).collect())
}

/// The schema of the person index, its review and audit tables, and its roles (`migrations/`).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// What a migration run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// The migrations this run applied (empty: up to date).
    pub applied: Vec<Applied>,
    /// Migrations the database has that this code does not know (newer code ran; left alone).
    pub ahead: Vec<Applied>,
}

/// One applied migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: i64,
    pub description: String,
}
