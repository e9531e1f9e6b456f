//! Matching rules at run time. `lake rules publish` stores a validated rules file as a new
//! version (versioned like the source contracts: one item per version plus `current`, in the
//! datasets table in AWS or under the embedded lake's metadata folder); an invalid file is
//! refused and never becomes current. The Lambda reads the current version through
//! [`ActiveRules`]: a cache with a TTL (60 s in AWS), so a publish is picked up within a minute
//! without a redeploy; a version that cannot be read or compiled keeps the last good one in
//! use; the built-in rules (`config/matching.toml` compiled in) apply only while nothing was
//! ever published. Every decision and proposal records the version that made it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use layer::ports::PortError;
use serde::{Deserialize, Serialize};

use crate::matcher::Matcher;
use crate::rules::{Rules, RulesError};

/// The partition key of the rules items in the datasets table (the Lambda's read grant is
/// limited to it with `dynamodb:LeadingKeys`).
pub const RULES_PK: &str = "rules#matching";
/// How long the Lambda uses a fetched version before asking again.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// One published version of the rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedRules {
    pub version: u32,
    pub toml: String,
    pub published_at: String,
}

impl PublishedRules {
    /// The label recorded on decisions: `v<version>`.
    pub fn label(&self) -> String {
        format!("v{}", self.version)
    }
}

/// Where published rules are kept.
#[async_trait]
pub trait RulesStore: Send + Sync {
    /// The current version (None: nothing was ever published).
    async fn current(&self) -> Result<Option<PublishedRules>, PortError>;
    /// Stores `toml` as version `version` and makes it current; fails when that version exists
    /// (a concurrent publish won).
    async fn put(&self, version: u32, toml: &str) -> Result<PublishedRules, PortError>;
}

/// Why a publish did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The file is not valid rules: nothing was stored (the message names the entry).
    #[error(transparent)]
    Invalid(#[from] RulesError),
    #[error("rules store: {}", .0.message)]
    Store(PortError),
}

/// Validates `toml` (as [`Rules::from_toml_str`]) and publishes it as the next version; the same
/// text as the current version publishes nothing. Returns the version and whether it is new.
pub async fn publish(store: &dyn RulesStore, toml: &str, name: &str) -> Result<(u32, bool), PublishError> {
    Rules::from_toml_str(toml, name)?;
    let cur = store.current().await.map_err(PublishError::Store)?;
    if let Some(c) = &cur {
        if c.toml == toml {
            return Ok((c.version, false));
        }
    }
    let next = cur.map_or(1, |c| c.version + 1);
    let p = store.put(next, toml).await.map_err(PublishError::Store)?;
    Ok((p.version, true))
}

/// The embedded lake's store: `<dir>/v0001.json` per version and `current.json`.
pub struct LocalRules {
    pub dir: PathBuf,
}

impl LocalRules {
    /// The store under an embedded lake's metadata folder (`<lake>/meta/rules/matching`).
    pub fn in_lake(lake: &std::path::Path) -> Self {
        Self { dir: lake.join("meta").join("rules").join("matching") }
    }
}

fn local_err(op: &'static str, e: impl std::fmt::Display) -> PortError {
    PortError::new("local-rules", op, e.to_string(), false)
}

#[async_trait]
impl RulesStore for LocalRules {
    async fn current(&self) -> Result<Option<PublishedRules>, PortError> {
        match std::fs::read(self.dir.join("current.json")) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| local_err("get", e))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(local_err("get", e)),
        }
    }

    async fn put(&self, version: u32, toml: &str) -> Result<PublishedRules, PortError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| local_err("publish", e))?;
        let p = PublishedRules { version, toml: toml.into(), published_at: layer::ledger::now() };
        let body = serde_json::to_vec_pretty(&p).map_err(|e| local_err("publish", e))?;
        let v = self.dir.join(format!("v{version:04}.json"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&v)
            .map_err(|e| local_err("publish", format!("version {version}: {e}")))?;
        std::io::Write::write_all(&mut f, &body).map_err(|e| local_err("publish", e))?;
        let tmp = self.dir.join("current.json.tmp");
        std::fs::write(&tmp, &body).map_err(|e| local_err("publish", e))?;
        std::fs::rename(&tmp, self.dir.join("current.json")).map_err(|e| local_err("publish", e))?;
        Ok(p)
    }
}

/// DynamoDB (the datasets table): `pk = rules#matching`, `sk = v#<0000version>` per version and
/// `sk = current`, the document in `doc` (as the contracts).
pub struct DynamoRules {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
}

fn ddb_err<E, R>(op: &'static str, e: aws_sdk_dynamodb::error::SdkError<E, R>) -> PortError
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    let code = e.code().unwrap_or("no code").to_string();
    let permanent = matches!(
        code.as_str(),
        "AccessDeniedException"
            | "ResourceNotFoundException"
            | "ValidationException"
            | "ConditionalCheckFailedException"
    );
    PortError::new("dynamodb", op, format!("{code}: {}", e.message().unwrap_or("no message")), !permanent)
}

#[async_trait]
impl RulesStore for DynamoRules {
    async fn current(&self) -> Result<Option<PublishedRules>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(RULES_PK.into()))
            .key("sk", AttributeValue::S("current".into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| ddb_err("GetItem", e))?;
        let Some(item) = out.item() else { return Ok(None) };
        let doc = item
            .get("doc")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| PortError::new("dynamodb", "GetItem", "rules item without doc", false))?;
        serde_json::from_str(doc)
            .map(Some)
            .map_err(|e| PortError::new("dynamodb", "GetItem", e.to_string(), false))
    }

    async fn put(&self, version: u32, toml: &str) -> Result<PublishedRules, PortError> {
        let p = PublishedRules { version, toml: toml.into(), published_at: layer::ledger::now() };
        let doc = serde_json::to_string(&p)
            .map_err(|e| PortError::new("dynamodb", "PutItem", e.to_string(), false))?;
        for sk in [format!("v#{version:04}"), "current".to_string()] {
            let mut req = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", AttributeValue::S(RULES_PK.into()))
                .item("sk", AttributeValue::S(sk.clone()))
                .item("version", AttributeValue::N(version.to_string()))
                .item("doc", AttributeValue::S(doc.clone()));
            if sk != "current" {
                req = req.condition_expression("attribute_not_exists(pk)");
            }
            req.send().await.map_err(|e| ddb_err("PutItem", e))?;
        }
        Ok(p)
    }
}

/// A monotonic clock (injected by tests to step past the TTL).
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// The rules a batch is matched with, and their version label.
#[derive(Clone)]
pub struct InUse {
    pub matcher: Arc<Matcher>,
    /// `v<N>` for a published version, `builtin-<hash>` for the compiled-in rules, or the label
    /// a fixed rule set was given.
    pub version: String,
}

struct Cached {
    in_use: Option<InUse>,
    /// The published version in use (None: built-in or fixed).
    published: Option<u32>,
    checked: Option<Instant>,
}

enum Source {
    Fixed(InUse),
    Published { store: Arc<dyn RulesStore>, ttl: Duration, clock: Clock, cached: tokio::sync::Mutex<Cached> },
}

/// The matcher's rules: fixed (tests, `lake match`), or the published version with a TTL cache.
pub struct ActiveRules {
    source: Source,
}

/// The rules could not be had at all (nothing good was ever loaded).
#[derive(Debug, thiserror::Error)]
#[error("matching rules: {0}")]
pub struct RulesUnavailable(pub String);

impl ActiveRules {
    /// Always these rules, recorded as `version`.
    pub fn fixed(rules: Rules, version: impl Into<String>) -> Self {
        Self {
            source: Source::Fixed(InUse { matcher: Arc::new(Matcher::new(rules)), version: version.into() }),
        }
    }

    /// Always the built-in rules.
    pub fn builtin() -> Self {
        Self { source: Source::Fixed(builtin()) }
    }

    /// The current published version of `store`, asked again once `ttl` has passed.
    pub fn published(store: Arc<dyn RulesStore>, ttl: Duration) -> Self {
        Self::published_with_clock(store, ttl, Arc::new(Instant::now))
    }

    /// [`ActiveRules::published`] with an injected clock.
    pub fn published_with_clock(store: Arc<dyn RulesStore>, ttl: Duration, clock: Clock) -> Self {
        let cached = tokio::sync::Mutex::new(Cached { in_use: None, published: None, checked: None });
        Self { source: Source::Published { store, ttl, clock, cached } }
    }

    /// The rules to match the next batch with.
    pub async fn get(&self) -> Result<InUse, RulesUnavailable> {
        match &self.source {
            Source::Fixed(f) => Ok(f.clone()),
            Source::Published { store, ttl, clock, cached } => {
                let mut c = cached.lock().await;
                let now = clock();
                if let (Some(in_use), Some(at)) = (&c.in_use, c.checked) {
                    if now.duration_since(at) < *ttl {
                        return Ok(in_use.clone());
                    }
                }
                c.checked = Some(now);
                refresh(&mut c, store.current().await);
                c.in_use.clone().ok_or_else(|| {
                    RulesUnavailable(
                        "no usable published version (see the error logged before this one)".into(),
                    )
                })
            }
        }
    }
}

/// Applies what the store answered to the cache: a new valid version replaces the one in use;
/// an invalid one or a read failure keeps the last good one (logged); nothing published means
/// the built-in rules.
fn refresh(c: &mut Cached, answer: Result<Option<PublishedRules>, PortError>) {
    match answer {
        Ok(None) => {
            if c.published.is_some() {
                tracing::warn!("no current rules version in the store any more; keeping the last good one");
            } else if c.in_use.is_none() {
                tracing::info!("no rules published: the built-in rules apply");
                c.in_use = Some(builtin());
            }
        }
        Ok(Some(p)) if c.published == Some(p.version) => {}
        Ok(Some(p)) => match Rules::from_toml_str(&p.toml, &p.label()) {
            Ok(rules) => {
                tracing::info!(rules_version = %p.label(), "matching rules loaded");
                c.in_use = Some(InUse { matcher: Arc::new(Matcher::new(rules)), version: p.label() });
                c.published = Some(p.version);
            }
            Err(e) => tracing::error!(
                rules_version = %p.label(),
                error = %e,
                kept = c.in_use.as_ref().map_or("none", |u| u.version.as_str()),
                "published rules version is not valid; the last good version stays in use"
            ),
        },
        Err(e) => tracing::warn!(
            error = %e.message,
            kept = c.in_use.as_ref().map_or("none", |u| u.version.as_str()),
            "cannot read the published rules; the last good version stays in use"
        ),
    }
}

/// The compiled-in rules, labelled `builtin-<first 8 hex of the file's SHA-256>`.
pub fn builtin() -> InUse {
    InUse { matcher: Arc::new(Matcher::new(Rules::builtin())), version: builtin_label() }
}

/// The label of the compiled-in rules.
pub fn builtin_label() -> String {
    format!("builtin-{}", &layer::key_hash(crate::rules::BUILTIN_TOML)[..8])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::rules::BUILTIN_TOML;

    /// A clock that moves only when told (seconds after a fixed start).
    fn manual_clock() -> (Clock, Arc<AtomicU64>) {
        let start = Instant::now();
        let secs = Arc::new(AtomicU64::new(0));
        let s = secs.clone();
        (Arc::new(move || start + Duration::from_secs(s.load(Ordering::SeqCst))), secs)
    }

    /// The shipped rules with another proposal threshold (a valid change).
    fn v2_text() -> String {
        let t = BUILTIN_TOML.replacen("min_score = 19.25", "min_score = 21.0", 1);
        assert_ne!(t, BUILTIN_TOML, "the shipped rules have a proposed min_score of 19.25");
        t
    }

    #[tokio::test]
    async fn an_invalid_file_is_refused_and_nothing_is_published() {
        let d = tempfile::tempdir().unwrap();
        let store = LocalRules { dir: d.path().join("rules") };
        let bad = BUILTIN_TOML.replacen(
            "{ kind = \"exact\", weight = 15.01 }",
            "{ kind = \"soundex\", weight = 15.01 }",
            1,
        );
        let e = publish(&store, &bad, "bad.toml").await.unwrap_err();
        assert!(matches!(e, PublishError::Invalid(_)), "{e}");
        assert!(e.to_string().contains("(dob)") && e.to_string().contains("does not apply to dates"), "{e}");
        assert_eq!(store.current().await.unwrap(), None);
        assert_eq!(publish(&store, BUILTIN_TOML, "m.toml").await.unwrap(), (1, true));
        assert_eq!(
            publish(&store, BUILTIN_TOML, "m.toml").await.unwrap(),
            (1, false),
            "same text: unchanged"
        );
        assert!(publish(&store, &bad, "bad.toml").await.is_err());
        assert_eq!(store.current().await.unwrap().unwrap().version, 1, "v1 stays current");
        assert_eq!(publish(&store, &v2_text(), "m2.toml").await.unwrap(), (2, true));
        assert!(store.dir.join("v0001.json").is_file() && store.dir.join("v0002.json").is_file());
    }

    #[tokio::test]
    async fn a_published_version_is_picked_up_after_the_ttl_and_a_broken_one_keeps_the_last_good() {
        let d = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalRules { dir: d.path().join("rules") });
        let (clock, secs) = manual_clock();
        let active = ActiveRules::published_with_clock(store.clone(), DEFAULT_TTL, clock);
        assert_eq!(active.get().await.unwrap().version, builtin_label(), "nothing published: built-in");

        publish(store.as_ref(), BUILTIN_TOML, "m.toml").await.unwrap();
        secs.store(59, Ordering::SeqCst);
        assert_eq!(active.get().await.unwrap().version, builtin_label(), "within the TTL: cached");
        secs.store(61, Ordering::SeqCst);
        assert_eq!(active.get().await.unwrap().version, "v1", "after the TTL: the published version");

        publish(store.as_ref(), &v2_text(), "m2.toml").await.unwrap();
        secs.store(122, Ordering::SeqCst);
        let v2 = active.get().await.unwrap();
        assert_eq!(v2.version, "v2");
        assert_eq!(v2.matcher.rules.tiers.proposed.min_score, 21.0, "the new rules, compiled");

        // a version that does not compile (written past `publish`): the last good one stays
        store.put(3, "version = 1\n[blocking]\n").await.unwrap();
        secs.store(183, Ordering::SeqCst);
        assert_eq!(active.get().await.unwrap().version, "v2");

        // a store that cannot be read: the last good one stays
        std::fs::write(store.dir.join("current.json"), b"not json").unwrap();
        secs.store(244, Ordering::SeqCst);
        assert_eq!(active.get().await.unwrap().version, "v2");
    }

    #[tokio::test]
    async fn without_any_good_version_the_rules_are_unavailable() {
        let d = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalRules { dir: d.path().join("rules") });
        store.put(1, "version = 1\n").await.unwrap();
        let active = ActiveRules::published(store, DEFAULT_TTL);
        let e = active.get().await.err().unwrap();
        assert!(e.to_string().contains("no usable published version"), "{e}");
    }
}
