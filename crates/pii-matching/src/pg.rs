//! The PostgreSQL (Aurora) adapter: credentials from Secrets Manager (fetched once per cold
//! start, refetched once when the database rejects them), TLS required outside tests, the
//! migrations, the set-based candidate query, and the review and audit tables.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use compact_str::CompactString;
use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};

use crate::index::{IndexError, PersonIndex};
use crate::model::{BlockingKey, Person};

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
    // The batch is split into concurrent chunks here; a parallel plan per chunk only adds
    // worker start-up time to every query. The candidate query's plan does not depend on its
    // arrays (one index scan per key kind), so it is planned once per connection instead of
    // once per call (a custom plan for 1,000-key arrays cost ~0.3 ms of planning each time).
    let opts =
        opts.options([("max_parallel_workers_per_gather", "0"), ("plan_cache_mode", "force_generic_plan")]);
    PgPoolOptions::new()
        .max_connections(max.max(1))
        .acquire_timeout(Duration::from_secs(15))
        // no ping before every query (one extra round trip each); a connection that died
        // (failover) fails its query as DbUnavailable, which the queue retries
        .test_before_acquire(false)
        .connect_lazy_with(opts)
}

/// Maps a driver error to the port's error without row values (SQLSTATE and class only).
pub fn map_err(e: sqlx::Error) -> IndexError {
    match &e {
        sqlx::Error::Database(d) => {
            let code = d.code().map(|c| c.to_string()).unwrap_or_default();
            if code.starts_with("28") {
                IndexError::Auth(format!("SQLSTATE {code}: {}", d.message()))
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
}

impl Db {
    /// Fetches the secret once (cold start) and builds a lazy pool.
    pub async fn from_secret(
        source: Arc<dyn SecretSource>,
        settings: DbSettings,
    ) -> Result<Self, IndexError> {
        let secret = source.fetch().await?;
        let p = pool(options(&secret, &settings), settings.max_connections);
        Ok(Self { source: Some(source), settings, pool: RwLock::new(p) })
    }

    /// A fixed URL (tests, benchmark, CLI): no refetch.
    pub fn from_url(url: &str, max_connections: u32) -> Result<Self, IndexError> {
        let opts: PgConnectOptions =
            url.parse().map_err(|e: sqlx::Error| IndexError::Secret(e.to_string()))?;
        Ok(Self {
            source: None,
            settings: DbSettings { max_connections, ..DbSettings::default() },
            pool: RwLock::new(pool(opts, max_connections)),
        })
    }

    pub fn pool(&self) -> PgPool {
        match self.pool.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
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
        let p = self.pool();
        sqlx::migrate!("./migrations").run(&p).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => map_err(e),
            other => IndexError::Query(other.to_string()),
        })
    }
}

/// The person index in PostgreSQL: one query per chunk of keys (a UNION ALL of one `= ANY`
/// index scan per key kind over the keys' hashes, computed here by [`key_hash`]), the chunks
/// run concurrently on the pool's connections. A person may come back twice.
pub struct PgIndex {
    pub db: Arc<Db>,
    /// Keys per query; a batch larger than this runs as several concurrent queries.
    pub chunk: usize,
}

/// The keys of one query as the hashes of the generated key columns (migration 0002), one
/// array per key kind. Hashing here, not in SQL, keeps that work off the shared database.
#[derive(Default)]
struct KeyArrays {
    last_dob: Vec<i64>,
    first_dob: Vec<i64>,
    address: Vec<i64>,
    address_zip: Vec<i64>,
    phone: Vec<i64>,
    last_first: Vec<i64>,
}

impl KeyArrays {
    fn of(keys: &[BlockingKey]) -> Self {
        let mut a = Self::default();
        for k in keys {
            let h = key_hash(k);
            match k {
                BlockingKey::LastNameDob { .. } => a.last_dob.push(h),
                BlockingKey::FirstNameDob { .. } => a.first_dob.push(h),
                BlockingKey::Address { .. } => a.address.push(h),
                BlockingKey::AddressZip { .. } => a.address_zip.push(h),
                BlockingKey::Phone { .. } => a.phone.push(h),
                BlockingKey::LastFirstName { .. } => a.last_first.push(h),
            }
        }
        a
    }
}

/// The value of a key's generated column in `person` (migration 0002): PostgreSQL's
/// `hashtextextended(text, 0)` of the same text, e.g. `last_name || '|' || (dob - DATE
/// '2000-01-01')::text`. The test `key_hashes_equal_the_generated_columns` checks it against
/// the server on every key kind.
pub fn key_hash(k: &BlockingKey) -> i64 {
    use std::fmt::Write;
    let days = |d: &NaiveDate| (*d - EPOCH_2000).num_days();
    let mut text = CompactString::default();
    // writing to a string cannot fail
    let _ = match k {
        BlockingKey::LastNameDob { last_name, dob } => write!(text, "{last_name}|{}", days(dob)),
        BlockingKey::FirstNameDob { first_name, dob } => write!(text, "{first_name}|{}", days(dob)),
        BlockingKey::Address { address } => write!(text, "{address}"),
        BlockingKey::AddressZip { address, zip } => write!(text, "{address}|{zip}"),
        BlockingKey::Phone { phone } => write!(text, "{phone}"),
        BlockingKey::LastFirstName { last_name, first_name } => write!(text, "{last_name}|{first_name}"),
    };
    pg_hash_bytes_extended(text.as_bytes()) as i64
}

const EPOCH_2000: NaiveDate = match NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(d) => d,
    None => panic!("2000-01-01 is a date"),
};

/// PostgreSQL's `hash_bytes_extended(k, len, 0)` (src/common/hashfn.c: Bob Jenkins' lookup3,
/// 64-bit result `b << 32 | c`), which `hashtextextended` applies to a text's bytes under a
/// deterministic collation. Words are read little-endian, as every PostgreSQL on x86 and ARM
/// does; a big-endian server would hash differently (and fail the test above).
fn pg_hash_bytes_extended(mut k: &[u8]) -> u64 {
    const A: usize = 0;
    const B: usize = 1;
    const C: usize = 2;
    // mix(a, b, c): six steps of x -= y; x ^= rot(y, r); y += z, cycling (a c b), (b a c), (c b a)
    fn mix(s: &mut [u32; 3]) {
        for (i, r) in [4, 6, 8, 16, 19, 4].into_iter().enumerate() {
            let (x, y, z) = [(A, C, B), (B, A, C), (C, B, A)][i % 3];
            s[x] = s[x].wrapping_sub(s[y]) ^ s[y].rotate_left(r);
            s[y] = s[y].wrapping_add(s[z]);
        }
    }
    let word = |w: &[u8]| u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
    let init = 0x9e37_79b9_u32.wrapping_add(k.len() as u32).wrapping_add(3_923_095);
    let mut s = [init; 3];
    while k.len() >= 12 {
        for (j, v) in s.iter_mut().enumerate() {
            *v = v.wrapping_add(word(&k[4 * j..4 * j + 4]));
        }
        mix(&mut s);
        k = &k[12..];
    }
    // the last 0..=11 bytes, little-endian into a, b and c's upper three bytes (c's lowest
    // byte stands for the length, added above)
    for (i, &byte) in k.iter().enumerate() {
        let (j, shift) = if i < 8 { (i / 4, 8 * (i % 4)) } else { (C, 8 * (i - 7)) };
        s[j] = s[j].wrapping_add(u32::from(byte) << shift);
    }
    // final(a, b, c): seven steps of x ^= y; x -= rot(y, r), cycling (c b), (a c), (b a)
    for (i, r) in [14, 11, 25, 16, 4, 14, 24].into_iter().enumerate() {
        let (x, y) = [(C, B), (A, C), (B, A)][i % 3];
        s[x] = (s[x] ^ s[y]).wrapping_sub(s[y].rotate_left(r));
    }
    (u64::from(s[B]) << 32) | u64::from(s[C])
}

async fn candidates_query(pool: PgPool, a: Arc<KeyArrays>) -> Result<Vec<Person>, sqlx::Error> {
    // Each branch hands one generated hash column (migration 0002) all of its keys at once:
    // one b-tree scan over the sorted hashes. A row may come back twice (two keys) or, on a
    // 64-bit collision, for no record at all: the matcher dedups, and attaches a person to a
    // record only when their normalised key values are equal.
    let rows = sqlx::query_as!(
        Person,
        r#"
        SELECT q.person_id AS "person_id!", q.first_name AS "first_name: CompactString",
               q.last_name AS "last_name: CompactString", q.middle_initial AS "middle_initial: CompactString",
               q.dob, q.sex AS "sex: CompactString", q.ssn AS "ssn: CompactString",
               q.address AS "address: CompactString", q.city AS "city: CompactString",
               q.state AS "state: CompactString", q.zip AS "zip: CompactString", q.phone AS "phone: CompactString"
          FROM person q WHERE q.k_last_dob = ANY($1::int8[])
        UNION ALL
        SELECT q.person_id, q.first_name, q.last_name, q.middle_initial, q.dob,
               q.sex, q.ssn, q.address, q.city, q.state, q.zip, q.phone
          FROM person q WHERE q.k_first_dob = ANY($2::int8[])
        UNION ALL
        SELECT q.person_id, q.first_name, q.last_name, q.middle_initial, q.dob,
               q.sex, q.ssn, q.address, q.city, q.state, q.zip, q.phone
          FROM person q WHERE q.k_address = ANY($3::int8[])
        UNION ALL
        SELECT q.person_id, q.first_name, q.last_name, q.middle_initial, q.dob,
               q.sex, q.ssn, q.address, q.city, q.state, q.zip, q.phone
          FROM person q WHERE q.k_phone = ANY($4::int8[])
        UNION ALL
        SELECT q.person_id, q.first_name, q.last_name, q.middle_initial, q.dob,
               q.sex, q.ssn, q.address, q.city, q.state, q.zip, q.phone
          FROM person q WHERE q.k_last_first = ANY($5::int8[])
        UNION ALL
        SELECT q.person_id, q.first_name, q.last_name, q.middle_initial, q.dob,
               q.sex, q.ssn, q.address, q.city, q.state, q.zip, q.phone
          FROM person q WHERE q.k_address_zip = ANY($6::int8[])
        "#,
        &a.last_dob,
        &a.first_dob,
        &a.address,
        &a.phone,
        &a.last_first,
        &a.address_zip,
    )
    .fetch_all(&pool)
    .await?;
    Ok(rows)
}

#[async_trait]
impl PersonIndex for PgIndex {
    async fn candidates(&self, keys: &[BlockingKey]) -> Result<Vec<Person>, IndexError> {
        let chunks: Vec<Arc<KeyArrays>> =
            keys.chunks(self.chunk.max(1)).map(|c| Arc::new(KeyArrays::of(c))).collect();
        let out: Vec<Person> = self
            .db
            .run(|pool| {
                let chunks = chunks.clone();
                async move {
                    let tasks: Vec<_> =
                        chunks.into_iter().map(|a| tokio::spawn(candidates_query(pool.clone(), a))).collect();
                    let mut all = Vec::new();
                    for t in tasks {
                        let rows =
                            t.await.map_err(|e| sqlx::Error::Protocol(format!("query task: {e}")))??;
                        if all.is_empty() {
                            all = rows; // one chunk (the usual case): no copy
                        } else {
                            all.extend(rows);
                        }
                    }
                    Ok(all)
                }
            })
            .await?;
        // A person found by two keys comes back twice; the matcher's pool keeps the first (sorting
        // and deduplicating the ~300-byte rows here cost more than the duplicates).
        Ok(out)
    }
}

/// A proposed match waiting for a data scientist.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewRow {
    pub record_ref: String,
    pub file_id: String,
    pub row_index: i32,
    pub dataset: String,
    pub source: String,
    pub bad_bucket: String,
    pub bad_key: String,
    /// `[Scored]`, best first: person ids, scores, levels (no values).
    pub candidates: serde_json::Value,
    pub best_score: f64,
    pub rule: String,
}

/// One audited decision.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DecisionRow {
    pub record_ref: String,
    pub file_id: String,
    pub tier: String,
    pub person_id: Option<i64>,
    pub score: Option<f64>,
    pub rule: String,
    pub decided_by: String,
}

/// A stored review (as `lake review` shows it).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReview {
    pub review_id: i64,
    pub record_ref: String,
    pub file_id: String,
    pub row_index: i32,
    pub dataset: String,
    pub source: String,
    pub bad_bucket: String,
    pub bad_key: String,
    pub candidates: serde_json::Value,
    pub best_score: f64,
    pub rule: String,
    pub status: String,
    pub accepted_person_id: Option<i64>,
    pub reviewer: Option<String>,
}

/// Where proposed matches and the decision audit go.
#[async_trait]
pub trait Reviews: Send + Sync {
    /// Inserts reviews; an existing record reference is left alone. Returns how many were new.
    async fn propose(&self, rows: &[ReviewRow]) -> Result<u64, IndexError>;
    /// Appends audit rows; a decision already recorded is left alone.
    async fn record(&self, rows: &[DecisionRow]) -> Result<u64, IndexError>;
}

/// Reviews and audit in PostgreSQL.
pub struct PgReviews {
    pub db: Arc<Db>,
}

#[async_trait]
impl Reviews for PgReviews {
    async fn propose(&self, rows: &[ReviewRow]) -> Result<u64, IndexError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let col = |f: fn(&ReviewRow) -> String| rows.iter().map(f).collect::<Vec<String>>();
        let (r, fi, ds, so, bb, bk, ru) = (
            col(|x| x.record_ref.clone()),
            col(|x| x.file_id.clone()),
            col(|x| x.dataset.clone()),
            col(|x| x.source.clone()),
            col(|x| x.bad_bucket.clone()),
            col(|x| x.bad_key.clone()),
            col(|x| x.rule.clone()),
        );
        let ix: Vec<i32> = rows.iter().map(|x| x.row_index).collect();
        let ca: Vec<serde_json::Value> = rows.iter().map(|x| x.candidates.clone()).collect();
        let sc: Vec<f64> = rows.iter().map(|x| x.best_score).collect();
        self.db
            .run(|pool| {
                let (r, fi, ds, so, bb, bk, ru, ix, ca, sc) =
                    (&r, &fi, &ds, &so, &bb, &bk, &ru, &ix, &ca, &sc);
                async move {
                    let res = sqlx::query!(
                        r#"
                        INSERT INTO match_review
                            (record_ref, file_id, row_index, dataset, source, bad_bucket, bad_key,
                             candidates, best_score, rule)
                        SELECT * FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::text[], $5::text[],
                                             $6::text[], $7::text[], $8::jsonb[], $9::float8[], $10::text[])
                        ON CONFLICT (record_ref) DO NOTHING
                        "#,
                        r,
                        fi,
                        ix,
                        ds,
                        so,
                        bb,
                        bk,
                        ca,
                        sc,
                        ru
                    )
                    .execute(&pool)
                    .await?;
                    Ok(res.rows_affected())
                }
            })
            .await
    }

    async fn record(&self, rows: &[DecisionRow]) -> Result<u64, IndexError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let col = |f: fn(&DecisionRow) -> String| rows.iter().map(f).collect::<Vec<String>>();
        let (r, fi, ti, ru, by) = (
            col(|x| x.record_ref.clone()),
            col(|x| x.file_id.clone()),
            col(|x| x.tier.clone()),
            col(|x| x.rule.clone()),
            col(|x| x.decided_by.clone()),
        );
        let pe: Vec<Option<i64>> = rows.iter().map(|x| x.person_id).collect();
        let sc: Vec<Option<f64>> = rows.iter().map(|x| x.score).collect();
        self.db
            .run(|pool| {
                let (r, fi, ti, ru, by, pe, sc) = (&r, &fi, &ti, &ru, &by, &pe, &sc);
                async move {
                    let res = sqlx::query!(
                        r#"
                        INSERT INTO match_decision (record_ref, file_id, tier, person_id, score, rule, decided_by)
                        SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::float8[],
                                             $6::text[], $7::text[])
                        ON CONFLICT (record_ref, tier, decided_by) DO NOTHING
                        "#,
                        r,
                        fi,
                        ti,
                        pe as &[Option<i64>],
                        sc as &[Option<f64>],
                        ru,
                        by
                    )
                    .execute(&pool)
                    .await?;
                    Ok(res.rows_affected())
                }
            })
            .await
    }
}

impl PgReviews {
    /// Reviews with a status, oldest first.
    pub async fn list(&self, status: &str, limit: i64) -> Result<Vec<StoredReview>, IndexError> {
        self.db
            .run(|pool| async move {
                sqlx::query_as!(
                    StoredReview,
                    r#"SELECT review_id, record_ref, file_id, row_index, dataset, source, bad_bucket, bad_key,
                              candidates, best_score, rule, status, accepted_person_id, reviewer
                       FROM match_review WHERE status = $1 ORDER BY created_at, review_id LIMIT $2"#,
                    status,
                    limit
                )
                .fetch_all(&pool)
                .await
            })
            .await
    }

    pub async fn get(&self, review_id: i64) -> Result<Option<StoredReview>, IndexError> {
        self.db
            .run(|pool| async move {
                sqlx::query_as!(
                    StoredReview,
                    r#"SELECT review_id, record_ref, file_id, row_index, dataset, source, bad_bucket, bad_key,
                              candidates, best_score, rule, status, accepted_person_id, reviewer
                       FROM match_review WHERE review_id = $1"#,
                    review_id
                )
                .fetch_optional(&pool)
                .await
            })
            .await
    }

    /// Accepts (with the chosen person) or rejects a pending review; false when it was not pending.
    pub async fn decide(
        &self,
        review_id: i64,
        accept_person: Option<i64>,
        reviewer: &str,
    ) -> Result<bool, IndexError> {
        let status = if accept_person.is_some() { "accepted" } else { "rejected" };
        self.db
            .run(|pool| async move {
                let mut tx = pool.begin().await?;
                let row = sqlx::query!(
                    r#"UPDATE match_review SET status = $2, accepted_person_id = $3, reviewer = $4, decided_at = now()
                       WHERE review_id = $1 AND status = 'pending'
                       RETURNING record_ref, file_id, best_score"#,
                    review_id,
                    status,
                    accept_person,
                    reviewer
                )
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else { return Ok(false) };
                sqlx::query!(
                    r#"INSERT INTO match_decision (record_ref, file_id, tier, person_id, score, rule, decided_by)
                       VALUES ($1, $2, $3, $4, $5, 'review', $6)
                       ON CONFLICT (record_ref, tier, decided_by) DO NOTHING"#,
                    row.record_ref,
                    row.file_id,
                    status,
                    accept_person,
                    row.best_score,
                    reviewer
                )
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            })
            .await
    }

    /// One person by id (to complete an accepted row).
    pub async fn person(&self, person_id: i64) -> Result<Option<Person>, IndexError> {
        self.db
            .run(|pool| async move {
                sqlx::query_as!(
                    Person,
                    r#"SELECT person_id, first_name AS "first_name: CompactString",
                              last_name AS "last_name: CompactString",
                              middle_initial AS "middle_initial: CompactString", dob,
                              sex AS "sex: CompactString", ssn AS "ssn: CompactString",
                              address AS "address: CompactString", city AS "city: CompactString",
                              state AS "state: CompactString", zip AS "zip: CompactString",
                              phone AS "phone: CompactString"
                         FROM person WHERE person_id = $1"#,
                    person_id
                )
                .fetch_optional(&pool)
                .await
            })
            .await
    }

    /// Counts of reviews and decisions for a file (tests, status).
    pub async fn counts(&self, file_id: &str) -> Result<(i64, i64), IndexError> {
        self.db
            .run(|pool| async move {
                let r = sqlx::query!(
                    r#"SELECT (SELECT count(*) FROM match_review WHERE file_id = $1) AS "reviews!",
                              (SELECT count(*) FROM match_decision WHERE file_id = $1) AS "decisions!""#,
                    file_id
                )
                .fetch_one(&pool)
                .await?;
                Ok((r.reviews, r.decisions))
            })
            .await
    }
}

/// Loads a person CSV (the benchmark's `people_<N>.csv` layout) with COPY, then VACUUM ANALYZE.
/// A load into an empty table is a bulk load: its indexes are rebuilt afterwards, as compact as
/// CREATE INDEX after COPY makes them (the baseline's load). Row by row, page splits leave the
/// 64-bit key indexes ~30% larger, and each probe reads through more pages.
pub async fn copy_people_csv(db: &Db, path: &std::path::Path) -> Result<u64, IndexError> {
    let data = tokio::fs::read(path).await.map_err(|e| IndexError::Load(e.to_string()))?;
    let pool = db.pool();
    let mut conn = pool.acquire().await.map_err(map_err)?;
    let empty: bool = sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM person)")
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
    let mut copy = conn
        .copy_in_raw(
            "COPY person (person_id, first_name, last_name, middle_initial, dob, sex, ssn, address, city, \
             state, zip, phone) FROM STDIN WITH (FORMAT csv, HEADER true)",
        )
        .await
        .map_err(map_err)?;
    copy.send(data).await.map_err(map_err)?;
    let n = copy.finish().await.map_err(map_err)?;
    if empty {
        sqlx::query("REINDEX TABLE person").execute(&mut *conn).await.map_err(map_err)?;
    }
    sqlx::query("VACUUM ANALYZE person").execute(&mut *conn).await.map_err(map_err)?;
    Ok(n)
}
