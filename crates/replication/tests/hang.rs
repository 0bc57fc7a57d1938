//! Hangs are failures: a replica whose operations never finish (a file replica on a dead NFS
//! mount, whose reads and writes block a thread forever) makes replication fatal within the
//! retry window, exactly as a replica that answers with errors does, and shutdown still
//! finishes. The hang is injected by a wrapper around the real file client
//! ([`ReplicatorOptions::wrap_client`]); everything else is real.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::*;
use ltx::FileName;
use replication::client::{ByteStream, ClientError, ListOptions, ReadRange, ReplicaClient};
use replication::target::ReplicaKind;
use replication::{CommitNotice, Level, LtxFileInfo, Replicator};

/// The mount: open until [`Mount::hang`], then every operation blocks its thread until
/// [`Mount::release`].
#[derive(Debug, Default)]
struct Mount {
    hung: Mutex<bool>,
    released: Condvar,
}

impl Mount {
    fn hang(&self) {
        *self.hung.lock().unwrap() = true;
    }

    fn release(&self) {
        *self.hung.lock().unwrap() = false;
        self.released.notify_all();
    }

    /// Blocks a blocking-pool thread while the mount hangs, as a system call on a dead NFS
    /// mount does.
    async fn pass(self: &Arc<Self>) {
        let mount = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut hung = mount.hung.lock().unwrap();
            while *hung {
                hung = mount.released.wait(hung).unwrap();
            }
        })
        .await;
    }
}

/// Releases the mount when the test ends, also when it fails: the runtime waits for its
/// blocked threads before the test can finish.
struct Revive(Arc<Mount>);

impl Drop for Revive {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A real file client behind the mount.
#[derive(Debug)]
struct OnMount {
    inner: Arc<dyn ReplicaClient>,
    mount: Arc<Mount>,
}

#[async_trait]
impl ReplicaClient for OnMount {
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
        self.mount.pass().await;
        self.inner.levels().await
    }

    async fn list(
        &self,
        level: Level,
        options: ListOptions,
    ) -> Result<Vec<LtxFileInfo>, ClientError> {
        self.mount.pass().await;
        self.inner.list(level, options).await
    }

    async fn open(
        &self,
        level: Level,
        name: FileName,
        range: ReadRange,
    ) -> Result<ByteStream, ClientError> {
        self.mount.pass().await;
        self.inner.open(level, name, range).await
    }

    async fn write(
        &self,
        level: Level,
        name: FileName,
        body: ByteStream,
        created_at: DateTime<Utc>,
    ) -> Result<LtxFileInfo, ClientError> {
        self.mount.pass().await;
        self.inner.write(level, name, body, created_at).await
    }

    async fn delete(&self, level: Level, names: &[FileName]) -> Result<(), ClientError> {
        self.mount.pass().await;
        self.inner.delete(level, names).await
    }

    async fn probe(&self) -> Result<(), ClientError> {
        self.mount.pass().await;
        self.inner.probe().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_replica_whose_writes_block_is_fatal_within_the_window() {
    init_logging();
    let (_t, dir) = tempdir();
    let db = dir.join("app.db");
    let yaml = fast_config(&db, &file_url(&dir.join("replica")), "");
    let window = Duration::from_secs(3);
    let mount = Arc::new(Mount::default());
    let _revive = Revive(mount.clone());
    let mut options = replicator_options(&yaml, &db);
    options.retry_window = window;
    options.probe_interval = Duration::from_millis(200);
    options.network.operation_timeout = Duration::from_secs(1);
    let m = mount.clone();
    options.wrap_client = Some(Arc::new(move |inner| {
        Arc::new(OnMount {
            inner,
            mount: m.clone(),
        })
    }));
    let r = Replicator::start(options).await.unwrap();
    r.sync_and_wait().await.unwrap();

    // The mount dies; a commit has to be uploaded.
    mount.hang();
    let hung = Instant::now();
    insert(&wal_db(&db), 3, 100);
    r.handle().notify_commit(CommitNotice {
        seq: 1,
        wal_frames: 0,
    });
    let fatal = tokio::time::timeout(window + Duration::from_secs(15), r.failed())
        .await
        .expect("a hung replica never made replication fail");
    let took = hung.elapsed();
    // Counted from the start of the operation that hung, not from its deadline.
    assert!(took >= window, "fatal after {took:?}, before the window");
    assert!(
        took < window + Duration::from_secs(5),
        "fatal only after {took:?} (window {window:?})"
    );
    assert!(
        fatal.last_error.contains("no progress"),
        "the cause is the hang: {fatal}"
    );
    // Writes wait in vain: waiters see the failure.
    assert!(r.handle().wait_commit_replicated(1).await.is_err());
    // Shutdown does not wait for the hung threads.
    let stopped = tokio::time::timeout(Duration::from_secs(15), r.shutdown())
        .await
        .expect("shutdown hung on the dead mount");
    assert!(stopped.is_err(), "shutdown reports the failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_hangs_while_idle_is_noticed_by_the_probe() {
    init_logging();
    let (_t, dir) = tempdir();
    let db = dir.join("app.db");
    let yaml = fast_config(&db, &file_url(&dir.join("replica")), "");
    let window = Duration::from_secs(2);
    let mount = Arc::new(Mount::default());
    let _revive = Revive(mount.clone());
    let mut options = replicator_options(&yaml, &db);
    options.retry_window = window;
    options.probe_interval = Duration::from_millis(200);
    options.network.operation_timeout = Duration::from_secs(1);
    let m = mount.clone();
    options.wrap_client = Some(Arc::new(move |inner| {
        Arc::new(OnMount {
            inner,
            mount: m.clone(),
        })
    }));
    let r = Replicator::start(options).await.unwrap();
    r.sync_and_wait().await.unwrap();
    // No writes: only the probe (and maintenance) can notice.
    mount.hang();
    let hung = Instant::now();
    let fatal = tokio::time::timeout(window + Duration::from_secs(15), r.failed())
        .await
        .expect("a hung replica was never noticed while idle");
    assert!(
        hung.elapsed() < window + Duration::from_secs(5),
        "{:?}",
        hung.elapsed()
    );
    assert!(fatal.last_error.contains("no progress"), "{fatal}");
    let _ = tokio::time::timeout(Duration::from_secs(15), r.shutdown())
        .await
        .expect("shutdown hung on the dead mount");
}
