//! The object-store port for reports and history: an S3 adapter (SSE-KMS) and a local folder.

use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;

/// An object-store failure.
#[derive(Debug, thiserror::Error)]
#[error("{op} {key}: {message}")]
pub struct StoreError {
    pub op: &'static str,
    pub key: String,
    pub message: String,
}

/// Keys are `/`-separated; `get` of a missing key is `Ok(None)`.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), StoreError>;
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every key under `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
}

/// A folder standing in for the reports bucket.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    fn path(&self, op: &'static str, key: &str) -> Result<PathBuf, StoreError> {
        let rel = Path::new(key);
        if key.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(StoreError { op, key: key.into(), message: "key must be a relative path".into() });
        }
        Ok(self.root.join(rel))
    }
}

fn io(op: &'static str, key: &str, e: std::io::Error) -> StoreError {
    StoreError { op, key: key.into(), message: e.to_string() }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put(&self, key: &str, body: Vec<u8>, _content_type: &str) -> Result<(), StoreError> {
        let p = self.path("put", key)?;
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io("put", key, e))?;
        }
        std::fs::write(&p, body).map_err(|e| io("put", key, e))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(self.path("get", key)?) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("get", key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let p = entry?.path();
                if p.is_dir() {
                    walk(&p, root, out)?;
                } else if let Ok(rel) = p.strip_prefix(root) {
                    let key: Vec<String> =
                        rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
                    out.push(key.join("/"));
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        match walk(&self.root, &self.root, &mut out) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("list", prefix, e)),
        }
        out.retain(|k| k.starts_with(prefix));
        out.sort();
        Ok(out)
    }
}

/// The reports bucket: every object written with SSE-KMS under the given key.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    kms_key_id: String,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>, kms_key_id: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into(), kms_key_id: kms_key_id.into() }
    }
}

fn s3err<E: std::error::Error>(op: &'static str, key: &str, e: E) -> StoreError {
    StoreError { op, key: key.into(), message: aws_sdk_s3::error::DisplayErrorContext(e).to_string() }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            .ssekms_key_id(&self.kms_key_id)
            .body(body.into())
            .send()
            .await
            .map_err(|e| s3err("put", key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let out = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(s3err("get", key, e)),
        };
        let bytes = out.body.collect().await.map_err(|e| s3err("get", key, e))?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| s3err("list", prefix, e))?;
            keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_string)));
            token = out.next_continuation_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        Ok(keys)
    }
}
