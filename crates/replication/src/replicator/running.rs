//! The running replicator the owner holds ([`Replicator`]): its handle, its failure, and
//! on-demand sync, compaction, snapshot and retention. Starting and stopping it live in
//! `start.rs` and `shutdown.rs`.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::health::FatalError;
use crate::level::{Level, LtxFileInfo};
use crate::progress::Positions;

use super::handle::ReplicationHandle;
use super::maintenance::{Jobs, MaintenanceError};
use super::shared::Shared;
use super::sync_task::SyncCommand;

/// A running replicator. See the module docs.
pub struct Replicator {
    pub(super) shared: Arc<Shared>,
    pub(super) sync_ctl: mpsc::Sender<SyncCommand>,
    /// Stops the probe and maintenance tasks.
    pub(super) stop_background: CancellationToken,
    /// Stops everything.
    pub(super) stop_all: CancellationToken,
    pub(super) tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Replicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator")
            .field("db", &self.shared.db_path)
            .finish_non_exhaustive()
    }
}

impl Replicator {
    pub fn handle(&self) -> ReplicationHandle {
        ReplicationHandle {
            shared: self.shared.clone(),
        }
    }

    /// Resolves when replication has failed for good (the owner then stops taking writes and
    /// exits non-zero).
    pub async fn failed(&self) -> FatalError {
        self.shared.health.wait_fatal().await
    }

    /// Syncs now and waits until everything synced is on the replica (tests, tools).
    pub async fn sync_and_wait(&self) -> Result<Positions, String> {
        let (tx, rx) = oneshot::channel();
        self.sync_ctl
            .send(SyncCommand::Sync(tx))
            .await
            .map_err(|_| "replication stopped".to_string())?;
        let p = rx.await.map_err(|_| "replication stopped".to_string())??;
        self.handle()
            .wait_replicated(p.local_txid)
            .await
            .map_err(|e| e.to_string())
    }

    /// Compacts into `level` now, ignoring the schedule (tests, tools).
    pub async fn compact_now(&self, level: Level) -> Result<Option<LtxFileInfo>, MaintenanceError> {
        Jobs(self.shared.clone()).compact_now(level).await
    }

    /// Writes a snapshot now (tests, tools; `replicate -force-snapshot`).
    pub async fn snapshot_now(&self) -> Result<LtxFileInfo, MaintenanceError> {
        Jobs(self.shared.clone()).snapshot_now().await
    }

    /// How many of its level-0 uploads the replicator remembers for the two-primaries check
    /// (tests: compaction into level 1 forgets what it covers; without levels none are kept).
    #[doc(hidden)]
    pub fn tracked_uploads(&self) -> usize {
        self.shared.own_files.len()
    }

    /// Runs snapshot and L0 retention now (tests, tools).
    pub async fn retention_now(&self) -> Result<(), MaintenanceError> {
        Jobs(self.shared.clone()).retention_now().await
    }
}
