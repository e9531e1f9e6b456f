//! Fault injection for the no-loss tests: wrappers around any port that fail chosen operations,
//! before doing them (the service was unreachable, throttled, timed out) or after (the write
//! happened but the caller crashed before hearing so). Production code never builds these.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::ledger::{PublishedContract, RunRecord};
use crate::ports::{
    Metadata, Notifier, ObjectSink, ObjectStore, ObjectVersion, ObjectWriter, PortError, Queue, Received,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Fail without doing the operation.
    Before,
    /// Do the operation, then report a failure (a crash after the side effect).
    After,
}

#[derive(Debug, Clone)]
struct Rule {
    op: &'static str,
    skip: u32,
    times: u32,
    when: When,
    transient: bool,
}

/// The fault plan shared by the wrapped ports; counts how many faults fired.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<Rule>>,
    fired: Mutex<u32>,
}

impl Faults {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// After `skip` successful calls of `op`, the next `times` calls fail.
    pub fn inject(&self, op: &'static str, skip: u32, times: u32, when: When, transient: bool) {
        if let Ok(mut r) = self.rules.lock() {
            r.push(Rule { op, skip, times, when, transient });
        }
    }

    pub fn fired(&self) -> u32 {
        self.fired.lock().map(|f| *f).unwrap_or(0)
    }

    fn check(&self, op: &'static str) -> Option<(When, bool)> {
        let mut rules = self.rules.lock().ok()?;
        for r in rules.iter_mut().filter(|r| r.op == op) {
            if r.skip > 0 {
                r.skip -= 1;
                continue;
            }
            if r.times > 0 {
                r.times -= 1;
                if let Ok(mut f) = self.fired.lock() {
                    *f += 1;
                }
                return Some((r.when, r.transient));
            }
        }
        None
    }

    fn err(op: &'static str, transient: bool) -> PortError {
        PortError::new("fault", op, "injected fault (service unavailable)", transient)
    }
}

macro_rules! faulty {
    ($self:ident, $op:literal, $call:expr) => {{
        match $self.faults.check($op) {
            Some((When::Before, t)) => Err(Faults::err($op, t)),
            Some((When::After, t)) => {
                let _ = $call;
                Err(Faults::err($op, t))
            }
            None => $call,
        }
    }};
}

/// Any port, wrapped.
pub struct Faulty<T: ?Sized> {
    pub inner: Arc<T>,
    pub faults: Arc<Faults>,
}

#[async_trait]
impl ObjectStore for Faulty<dyn ObjectStore> {
    async fn get(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<Vec<u8>, PortError> {
        faulty!(self, "store.get", self.inner.get(bucket, key, version).await)
    }
    async fn open(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<crate::ports::ObjectReader, PortError> {
        faulty!(self, "store.get", self.inner.open(bucket, key, version).await)
    }
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, kms: Option<&str>) -> Result<(), PortError> {
        faulty!(self, "store.put", self.inner.put(bucket, key, body.clone(), kms).await)
    }
    async fn create(&self, bucket: &str, key: &str, kms: Option<&str>) -> Result<ObjectWriter, PortError> {
        let inner = self.inner.create(bucket, key, kms).await?;
        Ok(Box::new(FaultySink { inner, faults: self.faults.clone() }))
    }
    async fn list_versions(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectVersion>, PortError> {
        self.inner.list_versions(bucket, prefix).await
    }
}

/// A written object whose commit counts as a `store.put` (the moment it becomes visible).
struct FaultySink {
    inner: ObjectWriter,
    faults: Arc<Faults>,
}

impl std::io::Write for FaultySink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.inner.write(data)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[async_trait]
impl ObjectSink for FaultySink {
    fn written(&self) -> u64 {
        self.inner.written()
    }
    fn failure(&self) -> Option<PortError> {
        self.inner.failure()
    }
    async fn commit(self: Box<Self>) -> Result<(), PortError> {
        match self.faults.check("store.put") {
            Some((When::Before, t)) => {
                let _ = self.inner.abort().await;
                Err(Faults::err("store.put", t))
            }
            Some((When::After, t)) => {
                let _ = self.inner.commit().await;
                Err(Faults::err("store.put", t))
            }
            None => self.inner.commit().await,
        }
    }
    async fn abort(self: Box<Self>) -> Result<(), PortError> {
        self.inner.abort().await
    }
}

#[async_trait]
impl Queue for Faulty<dyn Queue> {
    async fn send(&self, queue: &str, body: &str) -> Result<(), PortError> {
        faulty!(self, "queue.send", self.inner.send(queue, body).await)
    }
    async fn receive(&self, queue: &str, max: usize) -> Result<Vec<Received>, PortError> {
        self.inner.receive(queue, max).await
    }
    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), PortError> {
        self.inner.delete(queue, receipt).await
    }
    async fn release(&self, queue: &str, receipt: &str) -> Result<(), PortError> {
        self.inner.release(queue, receipt).await
    }
}

#[async_trait]
impl Notifier for Faulty<dyn Notifier> {
    async fn publish(&self, topic: &str, subject: &str, message: &str) -> Result<(), PortError> {
        faulty!(self, "notifier.publish", self.inner.publish(topic, subject, message).await)
    }
}

#[async_trait]
impl Metadata for Faulty<dyn Metadata> {
    async fn put_run_if_absent(&self, run: &RunRecord) -> Result<bool, PortError> {
        faulty!(self, "meta.put_run_if_absent", self.inner.put_run_if_absent(run).await)
    }
    async fn put_run(&self, run: &RunRecord) -> Result<(), PortError> {
        faulty!(self, "meta.put_run", self.inner.put_run(run).await)
    }
    async fn put_run_unless_done(&self, run: &RunRecord) -> Result<bool, PortError> {
        faulty!(self, "meta.put_run", self.inner.put_run_unless_done(run).await)
    }
    async fn get_run(&self, file_id: &str) -> Result<Option<RunRecord>, PortError> {
        faulty!(self, "meta.get_run", self.inner.get_run(file_id).await)
    }
    async fn list_runs(&self) -> Result<Vec<RunRecord>, PortError> {
        self.inner.list_runs().await
    }
    async fn publish_contract(&self, source: &str, dataset: &str, toml: &str) -> Result<u32, PortError> {
        self.inner.publish_contract(source, dataset, toml).await
    }
    async fn current_contract(&self, source: &str) -> Result<Option<PublishedContract>, PortError> {
        faulty!(self, "meta.current_contract", self.inner.current_contract(source).await)
    }
    async fn contract_version(
        &self,
        source: &str,
        version: u32,
    ) -> Result<Option<PublishedContract>, PortError> {
        faulty!(self, "meta.contract_version", self.inner.contract_version(source, version).await)
    }
    async fn set_dataset_status(
        &self,
        source: &str,
        status: crate::ledger::Status,
        file_id: &str,
    ) -> Result<(), PortError> {
        faulty!(self, "meta.set_dataset_status", self.inner.set_dataset_status(source, status, file_id).await)
    }
    async fn list_contracts(&self) -> Result<Vec<PublishedContract>, PortError> {
        self.inner.list_contracts().await
    }
    async fn content_owner(&self, source: &str, sha256: &str) -> Result<Option<String>, PortError> {
        faulty!(self, "meta.content_owner", self.inner.content_owner(source, sha256).await)
    }
    async fn claim_content(&self, source: &str, sha256: &str, file_id: &str) -> Result<String, PortError> {
        faulty!(self, "meta.claim_content", self.inner.claim_content(source, sha256, file_id).await)
    }
    async fn take_over_content(
        &self,
        source: &str,
        sha256: &str,
        failed_owner: &str,
        file_id: &str,
    ) -> Result<bool, PortError> {
        faulty!(
            self,
            "meta.take_over_content",
            self.inner.take_over_content(source, sha256, failed_owner, file_id).await
        )
    }
    async fn guard_state(
        &self,
        source: &str,
        name: crate::ports::GuardFlag,
    ) -> Result<Option<String>, PortError> {
        self.inner.guard_state(source, name).await
    }
    async fn set_guard_state(
        &self,
        source: &str,
        name: crate::ports::GuardFlag,
        value: Option<&str>,
    ) -> Result<(), PortError> {
        self.inner.set_guard_state(source, name, value).await
    }
}

/// Wraps every port of a `Deps` with the same fault plan.
pub fn wrap(deps: &crate::pipeline::Deps, faults: &Arc<Faults>) -> crate::pipeline::Deps {
    crate::pipeline::Deps {
        store: Arc::new(Faulty { inner: deps.store.clone(), faults: faults.clone() }),
        queue: Arc::new(Faulty { inner: deps.queue.clone(), faults: faults.clone() }),
        notifier: Arc::new(Faulty { inner: deps.notifier.clone(), faults: faults.clone() }),
        meta: Arc::new(Faulty { inner: deps.meta.clone(), faults: faults.clone() }),
        cfg: deps.cfg.clone(),
    }
}
