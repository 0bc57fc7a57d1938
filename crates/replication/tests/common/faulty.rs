//! A real replica client behind a switch that tests flip to inject one fault: every
//! operation blocking a thread (a file replica on a dead NFS mount), a panic in writes,
//! failing L0 uploads, or stalled L0 uploads.
//! Install it with [`replication::ReplicatorOptions::wrap_client`] ([`Switch::wrapper`]).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ltx::FileName;
use replication::ReplicaKind;
use replication::WrapClient;
use replication::{ByteStream, ClientError, DirEntry, ListOptions, ReadRange, ReplicaClient};
use replication::{Level, LtxFileInfo};

/// The fault in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// Every operation blocks a blocking-pool thread until the fault is cleared.
    Block,
    /// Writes panic.
    PanicOnWrite,
    /// Writes of L0 files fail (other levels work).
    FailL0Writes,
    /// Writes of L0 files land on the replica, then fail (a response lost on the way back).
    FailL0WritesAfterLanding,
    /// Writes of L0 files block (a stalled upload) until the fault is cleared; other
    /// operations work.
    BlockL0Writes,
}

/// The switch shared by the test and the wrapper. Dropping the test's handle
/// ([`Switch::guard`]) clears the fault, so blocked threads end and the test's runtime can
/// shut down even when the test fails.
#[derive(Debug, Default)]
pub struct Switch {
    fault: Mutex<Fault>,
    cleared: Condvar,
    /// Operations blocked right now.
    blocked: std::sync::atomic::AtomicUsize,
}

impl Switch {
    pub fn set(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
        self.cleared.notify_all();
    }

    fn get(&self) -> Fault {
        *self.fault.lock().unwrap()
    }

    /// The hook that puts this switch in front of the replicator's client.
    pub fn wrapper(self: &Arc<Self>) -> WrapClient {
        let s = self.clone();
        Arc::new(move |inner| {
            Arc::new(Faulty {
                inner,
                switch: s.clone(),
            })
        })
    }

    /// Clears the fault when dropped.
    pub fn guard(self: &Arc<Self>) -> Guard {
        Guard(self.clone())
    }

    /// How many operations are blocked right now.
    pub fn blocked(&self) -> usize {
        self.blocked.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn pass(self: &Arc<Self>) {
        self.block_while(Fault::Block).await;
    }

    async fn block_while(self: &Arc<Self>, fault: Fault) {
        if self.get() != fault {
            return;
        }
        let s = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut f = s.fault.lock().unwrap();
            s.blocked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            while *f == fault {
                f = s.cleared.wait(f).unwrap();
            }
            s.blocked.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        })
        .await;
    }
}

pub struct Guard(Arc<Switch>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.set(Fault::None);
    }
}

#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn ReplicaClient>,
    switch: Arc<Switch>,
}

#[async_trait]
impl ReplicaClient for Faulty {
    fn kind(&self) -> ReplicaKind {
        self.inner.kind()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn local_path(&self, _level: Level, _name: FileName) -> Option<PathBuf> {
        None
    }

    async fn levels(&self) -> Result<Vec<Level>, ClientError> {
        self.switch.pass().await;
        self.inner.levels().await
    }

    async fn list(
        &self,
        level: Level,
        options: ListOptions,
    ) -> Result<Vec<LtxFileInfo>, ClientError> {
        self.switch.pass().await;
        self.inner.list(level, options).await
    }

    async fn open(
        &self,
        level: Level,
        name: FileName,
        range: ReadRange,
    ) -> Result<ByteStream, ClientError> {
        self.switch.pass().await;
        self.inner.open(level, name, range).await
    }

    async fn write(
        &self,
        level: Level,
        name: FileName,
        body: ByteStream,
        created_at: DateTime<Utc>,
    ) -> Result<LtxFileInfo, ClientError> {
        self.switch.pass().await;
        if level == Level::L0 {
            self.switch.block_while(Fault::BlockL0Writes).await;
        }
        match self.switch.get() {
            Fault::PanicOnWrite => panic!("injected panic in a replica write"),
            Fault::FailL0Writes if level == Level::L0 => {
                return Err(ClientError::Backend {
                    replica: self.inner.describe(),
                    operation: "put",
                    code: "Unknown",
                    message: "injected L0 write failure".into(),
                });
            }
            Fault::FailL0WritesAfterLanding if level == Level::L0 => {
                self.inner.write(level, name, body, created_at).await?;
                return Err(ClientError::Backend {
                    replica: self.inner.describe(),
                    operation: "put",
                    code: "Unknown",
                    message: "injected failure after the L0 write landed".into(),
                });
            }
            _ => {}
        }
        self.inner.write(level, name, body, created_at).await
    }

    async fn delete(&self, level: Level, names: &[FileName]) -> Result<(), ClientError> {
        self.switch.pass().await;
        self.inner.delete(level, names).await
    }

    async fn probe(&self) -> Result<(), ClientError> {
        self.switch.pass().await;
        self.inner.probe().await
    }

    async fn list_dir(&self, dir: &str) -> Result<Vec<DirEntry>, ClientError> {
        self.switch.pass().await;
        self.inner.list_dir(dir).await
    }

    async fn open_path(&self, path: &str) -> Result<ByteStream, ClientError> {
        self.switch.pass().await;
        self.inner.open_path(path).await
    }
}
