//! The S3 object sink: a blocking `Write` (the transform's side) that hands full parts to an
//! async uploader task through a one-slot channel. An object that stays under one part is stored
//! with a single PutObject when committed; a larger one becomes a multipart upload
//! (CreateMultipartUpload carries the SSE-KMS headers the bucket policies demand, parts of
//! `PART_BYTES`, CompleteMultipartUpload on commit). At most three parts are held: the one being
//! filled, the one waiting in the channel and the one being uploaded. An upload that fails, is
//! aborted, or is dropped before commit is aborted with AbortMultipartUpload, so no parts stay
//! stored and billed (the buckets' lifecycle rule is the net under a killed process).

use std::sync::{Arc, Mutex};

use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::aws::sdk_err;
use crate::ports::{ObjectSink, PortError};

/// Bytes per part. S3 needs at least 5 MiB for every part but the last and allows 10,000
/// parts: 8 MiB parts hold objects up to 78 GiB.
pub const PART_BYTES: usize = 8 << 20;

/// Where an object goes, and the calls that put it there.
#[derive(Clone)]
struct Target {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    kms: Option<String>,
}

impl Target {
    async fn create_upload(&self) -> Result<String, PortError> {
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .checksum_algorithm(ChecksumAlgorithm::Crc32);
        if let Some(k) = &self.kms {
            req = req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(k)
                .bucket_key_enabled(true);
        }
        let out = req.send().await.map_err(|e| sdk_err("s3", "CreateMultipartUpload", e))?;
        out.upload_id
            .ok_or_else(|| PortError::new("s3", "CreateMultipartUpload", "no upload id in the answer", true))
    }

    async fn upload_part(&self, id: &str, number: i32, body: Bytes) -> Result<CompletedPart, PortError> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(body.into())
            .send()
            .await
            .map_err(|e| sdk_err("s3", "UploadPart", e))?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag)
            .set_checksum_crc32(out.checksum_crc32)
            .build())
    }

    async fn complete(&self, id: &str, parts: Vec<CompletedPart>) -> Result<(), PortError> {
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| sdk_err("s3", "CompleteMultipartUpload", e))?;
        Ok(())
    }

    async fn abort(&self, id: &str) -> Result<(), PortError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(id)
            .send()
            .await
            .map_err(|e| sdk_err("s3", "AbortMultipartUpload", e))?;
        Ok(())
    }

    async fn put(&self, body: Bytes) -> Result<(), PortError> {
        let mut req = self.client.put_object().bucket(&self.bucket).key(&self.key).body(body.into());
        if let Some(k) = &self.kms {
            req = req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(k)
                .bucket_key_enabled(true);
        }
        req.send().await.map_err(|e| sdk_err("s3", "PutObject", e))?;
        Ok(())
    }
}

/// What the uploader task holds when its channel closes: the upload (if one was started) and
/// its parts so far.
#[derive(Default)]
struct Uploaded {
    id: Option<String>,
    parts: Vec<CompletedPart>,
}

type Failure = Arc<Mutex<Option<PortError>>>;

/// Uploads each part it receives, starting the multipart upload with the first. On a failure it
/// records the cause, closes the channel (the writer's next part fails at once) and aborts the
/// upload itself.
async fn uploader(target: Target, mut rx: mpsc::Receiver<Bytes>, failure: Failure) -> Uploaded {
    let mut up = Uploaded::default();
    while let Some(part) = rx.recv().await {
        if let Err(e) = upload_one(&target, &mut up, part).await {
            if let Ok(mut f) = failure.lock() {
                *f = Some(e);
            }
            drop(rx);
            if let Some(id) = up.id.take() {
                if let Err(e) = target.abort(&id).await {
                    tracing::warn!(error = %e, "multipart upload not aborted (the bucket's lifecycle rule removes it)");
                }
            }
            return Uploaded::default();
        }
    }
    up
}

async fn upload_one(target: &Target, up: &mut Uploaded, part: Bytes) -> Result<(), PortError> {
    let id = match &up.id {
        Some(id) => id.clone(),
        None => up.id.insert(target.create_upload().await?).clone(),
    };
    let number = up.parts.len() as i32 + 1;
    let done = target.upload_part(&id, number, part).await?;
    up.parts.push(done);
    Ok(())
}

/// A new S3 object being written (see the module text).
pub struct S3Sink {
    target: Target,
    part_bytes: usize,
    buf: Vec<u8>,
    written: u64,
    sent_parts: u32,
    tx: Option<mpsc::Sender<Bytes>>,
    task: Option<JoinHandle<Uploaded>>,
    failure: Failure,
    runtime: tokio::runtime::Handle,
}

impl S3Sink {
    /// Starts the uploader task; must be called inside a tokio runtime.
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        kms: Option<&str>,
        part_bytes: usize,
    ) -> Self {
        let target = Target { client, bucket: bucket.into(), key: key.into(), kms: kms.map(Into::into) };
        let (tx, rx) = mpsc::channel(1);
        let failure = Failure::default();
        let runtime = tokio::runtime::Handle::current();
        let task = runtime.spawn(uploader(target.clone(), rx, failure.clone()));
        Self {
            target,
            part_bytes: part_bytes.max(5 << 20),
            buf: Vec::new(),
            written: 0,
            sent_parts: 0,
            tx: Some(tx),
            task: Some(task),
            failure,
            runtime,
        }
    }

    fn failed(&self) -> PortError {
        self.failure().unwrap_or_else(|| PortError::new("s3", "UploadPart", "the upload stopped", true))
    }

    /// Hands the full buffer to the uploader, waiting while the channel's slot is taken.
    fn send_part(&mut self) -> std::io::Result<()> {
        let part = std::mem::replace(&mut self.buf, Vec::with_capacity(self.part_bytes));
        let sent = match &self.tx {
            Some(tx) => tx.blocking_send(Bytes::from(part)).is_ok(),
            None => false,
        };
        if !sent {
            return Err(std::io::Error::other(self.failed().to_string()));
        }
        self.sent_parts += 1;
        Ok(())
    }
}

impl std::io::Write for S3Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(self.part_bytes - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() == self.part_bytes {
            self.send_part()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl ObjectSink for S3Sink {
    fn written(&self) -> u64 {
        self.written
    }

    fn failure(&self) -> Option<PortError> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    async fn commit(mut self: Box<Self>) -> Result<(), PortError> {
        let rest = Bytes::from(std::mem::take(&mut self.buf));
        let (tx, task) = (self.tx.take(), self.task.take());
        let join = |e: tokio::task::JoinError| PortError::new("s3", "UploadPart", e.to_string(), true);
        let Some(task) = task else { return Err(self.failed()) };
        if self.sent_parts == 0 {
            drop(tx);
            task.await.map_err(join)?;
            return self.target.put(rest).await;
        }
        // the last part may be smaller than 5 MiB
        if let Some(tx) = tx.filter(|_| !rest.is_empty()) {
            tx.send(rest).await.map_err(|_| self.failed())?;
        }
        let up = task.await.map_err(join)?;
        let Some(id) = up.id else { return Err(self.failed()) };
        if let Err(e) = self.target.complete(&id, up.parts).await {
            tracing::warn!(error = %e, "multipart upload not completed: aborting it");
            if let Err(a) = self.target.abort(&id).await {
                tracing::warn!(error = %a, "multipart upload not aborted (the bucket's lifecycle rule removes it)");
            }
            return Err(e);
        }
        Ok(())
    }

    async fn abort(mut self: Box<Self>) -> Result<(), PortError> {
        self.buf = Vec::new();
        drop(self.tx.take());
        let Some(task) = self.task.take() else { return Ok(()) };
        match task.await {
            Ok(Uploaded { id: Some(id), .. }) => self.target.abort(&id).await,
            _ => Ok(()),
        }
    }
}

impl Drop for S3Sink {
    /// Neither committed nor aborted (an error path, a panic): abort in the background.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(task) = self.task.take() {
            let target = self.target.clone();
            self.runtime.spawn(async move {
                if let Ok(Uploaded { id: Some(id), .. }) = task.await {
                    if let Err(e) = target.abort(&id).await {
                        tracing::warn!(error = %e, "multipart upload not aborted (the bucket's lifecycle rule removes it)");
                    }
                }
            });
        }
    }
}
