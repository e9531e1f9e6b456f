//! TLS to PostgreSQL through the Lambda's own path: `LAKE_DB_*` variables -> `setup::db_settings_from`
//! -> `Db::from_secret` (a secret with only username and password, like the RDS-managed one) ->
//! `Db::run`. Needs the server `scripts/test.sh` starts: TLS with a throwaway CA
//! (`LAKE_TEST_PG_CA`), a server certificate naming only `localhost`, and the role `lake_tls`,
//! which `pg_hba.conf` admits over TLS only. Without it these tests fail under CI (`CI` set) and
//! are skipped with a note otherwise. The configuration tests need no server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pii_matching::index::IndexError;
use pii_matching::pg::{Db, DbSecret, DbTls, SecretSource};
use pii_matching::setup::{self, SetupError};
use sqlx::postgres::PgConnectOptions;

/// The role and password `scripts/test.sh` creates (throwaway, test server only).
const ROLE: &str = "lake_tls";
const PASSWORD: &str = "lake-tls-test";

struct Server {
    port: u16,
    ca: PathBuf,
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The TLS test server, or `None` (skip) outside CI when it is not there.
#[allow(clippy::print_stderr)]
fn server() -> Option<Server> {
    let url = std::env::var("LAKE_TEST_DATABASE_URL").ok().filter(|v| !v.is_empty());
    let ca = std::env::var("LAKE_TEST_PG_CA").ok().filter(|v| !v.is_empty());
    let (Some(url), Some(ca)) = (url, ca) else {
        let why = "LAKE_TEST_DATABASE_URL and LAKE_TEST_PG_CA must be set: these tests need the TLS \
                   PostgreSQL that `bash scripts/test.sh -p pii-matching` starts";
        if in_ci() {
            panic!("{why}");
        }
        eprintln!("skipping the TLS test: {why}");
        return None;
    };
    let opts: PgConnectOptions = url.parse().expect("LAKE_TEST_DATABASE_URL is a postgres:// URL");
    let ca = PathBuf::from(ca);
    assert!(ca.is_file(), "LAKE_TEST_PG_CA={} is not a file", ca.display());
    Some(Server { port: opts.get_port(), ca })
}

/// Username and password only: host, port and database come from the `LAKE_DB_*` settings.
struct Fixed;

#[async_trait]
impl SecretSource for Fixed {
    async fn fetch(&self) -> Result<DbSecret, IndexError> {
        DbSecret::parse(&serde_json::json!({"username": ROLE, "password": PASSWORD}).to_string())
    }
}

/// Builds the settings from these variables exactly as the Lambda does from its environment.
fn settings(vars: &[(&str, &str)]) -> Result<pii_matching::pg::DbSettings, SetupError> {
    let env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    setup::db_settings_from(|name| env.get(name).filter(|v| !v.trim().is_empty()).cloned())
}

/// Connects as `lake_tls` to `host` with `LAKE_DB_SSLMODE=mode` (and `LAKE_DB_SSLROOTCERT=ca`) and
/// asks the server whether this session is encrypted. Must end well before the pool's 15 s
/// acquire timeout: a rejected certificate is an immediate error, not a hang.
async fn session_ssl(s: &Server, host: &str, mode: &str, ca: Option<&Path>) -> Result<bool, IndexError> {
    let port = s.port.to_string();
    let ca = ca.map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let settings = settings(&[
        ("LAKE_DB_HOST", host),
        ("LAKE_DB_PORT", &port),
        ("LAKE_DB_NAME", "postgres"),
        ("LAKE_DB_SSLMODE", mode),
        ("LAKE_DB_SSLROOTCERT", &ca),
    ])
    .expect("valid settings");
    assert_eq!(settings.tls.mode(), mode);
    let db = Db::from_secret(Arc::new(Fixed), settings).await?;
    let t0 = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        db.run(|p| async move {
            sqlx::query_scalar::<_, bool>("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&p)
                .await
        }),
    )
    .await
    .expect("connecting hung");
    assert!(t0.elapsed() < Duration::from_secs(10), "took {:?}", t0.elapsed());
    db.pool().close().await;
    r
}

/// A freshly made CA with the same name as the test server's, which did not sign its certificate.
fn untrusted_ca(dir: &Path) -> PathBuf {
    let ca = dir.join("untrusted-ca.pem");
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-days", "1", "-subj", "/CN=lake-test-ca", "-keyout"])
        .arg(dir.join("untrusted-ca.key"))
        .arg("-out")
        .arg(&ca)
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .output()
        .expect("openssl (scripts/test.sh needs it too)");
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    ca
}

fn tls_failure(r: Result<bool, IndexError>) -> String {
    match r {
        Err(e @ IndexError::Unavailable(_)) => {
            assert_eq!(e.kind(), layer::ErrorKind::DbUnavailable);
            let m = e.to_string();
            // rustls' verdict, e.g. `invalid peer certificate: BadSignature`
            assert!(m.contains("invalid peer certificate"), "{m}");
            m
        }
        other => panic!("want a TLS failure (DbUnavailable), got {other:?}"),
    }
}

// (a)
#[tokio::test]
async fn verify_full_with_the_server_ca_connects_encrypted() {
    let Some(s) = server() else { return };
    let ssl = session_ssl(&s, "localhost", "verify-full", Some(&s.ca)).await.unwrap();
    assert!(ssl, "pg_stat_ssl says this session is not encrypted");
}

// (b)
#[tokio::test]
async fn verify_full_rejects_a_certificate_from_another_ca() {
    let Some(s) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let other = untrusted_ca(dir.path());
    let m = tls_failure(session_ssl(&s, "localhost", "verify-full", Some(&other)).await);
    assert!(!m.contains(PASSWORD));
}

// (c) the certificate names only `localhost`
#[tokio::test]
async fn verify_full_rejects_a_host_name_the_certificate_does_not_carry() {
    let Some(s) = server() else { return };
    let m = tls_failure(session_ssl(&s, "127.0.0.1", "verify-full", Some(&s.ca)).await);
    assert!(m.contains("not valid for name \"127.0.0.1\""), "{m}");
}

// `require` encrypts without checking the certificate: the same host name is accepted.
#[tokio::test]
async fn require_encrypts_without_verifying() {
    let Some(s) = server() else { return };
    assert!(session_ssl(&s, "127.0.0.1", "require", None).await.unwrap());
}

// (d) the server, not only the client, insists on TLS for lake_tls
#[tokio::test]
async fn the_server_rejects_lake_tls_without_tls() {
    let Some(s) = server() else { return };
    match session_ssl(&s, "127.0.0.1", "disable", None).await {
        Err(e @ IndexError::Auth(_)) => {
            assert_eq!(e.kind(), layer::ErrorKind::DbAuthFailed);
            let m = e.to_string();
            assert!(m.contains("SQLSTATE 28000") && m.contains("no encryption"), "{m}");
        }
        other => panic!("want pg_hba's rejection (DbAuthFailed), got {other:?}"),
    }
}

// (e)
#[test]
fn an_unknown_sslmode_is_a_config_error_naming_the_variable_and_the_values() {
    for bad in ["verify_full", "prefer", "REQUIRE", "on"] {
        let err = settings(&[("LAKE_DB_SSLMODE", bad)]).unwrap_err();
        let m = err.to_string();
        assert!(matches!(err, SetupError::Invalid(_)), "{m}");
        for want in ["LAKE_DB_SSLMODE", bad, "verify-full", "require", "disable"] {
            assert!(m.contains(want), "{want:?} not in {m:?}");
        }
    }
}

#[test]
fn verify_full_is_the_default_and_needs_a_readable_pem_bundle() {
    let err = settings(&[]).unwrap_err().to_string();
    assert!(err.contains("LAKE_DB_SSLMODE=verify-full") && err.contains("LAKE_DB_SSLROOTCERT"), "{err}");
    let err = settings(&[("LAKE_DB_SSLMODE", "verify-full")]).unwrap_err().to_string();
    assert!(err.contains("LAKE_DB_SSLROOTCERT"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = settings(&[("LAKE_DB_SSLROOTCERT", missing.to_str().unwrap())]).unwrap_err().to_string();
    assert!(err.contains("LAKE_DB_SSLROOTCERT") && err.contains("missing.pem"), "{err}");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let err = settings(&[("LAKE_DB_SSLROOTCERT", not_pem.to_str().unwrap())]).unwrap_err().to_string();
    assert!(err.contains("no PEM certificate"), "{err}");

    let pem = dir.path().join("bundle.pem");
    std::fs::write(&pem, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    let s = settings(&[("LAKE_DB_SSLROOTCERT", pem.to_str().unwrap())]).unwrap();
    assert_eq!(s.tls, DbTls::VerifyFull { root_cert: Some(pem.clone()) });
    assert_eq!(settings(&[("LAKE_DB_SSLMODE", "require")]).unwrap().tls, DbTls::Require);
    assert_eq!(settings(&[("LAKE_DB_SSLMODE", "disable")]).unwrap().tls, DbTls::Disable);
}
