//! The state the replicator's tasks and the owner's handles share ([`Shared`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::client::ReplicaClient;
use crate::db_metrics::DbMetrics;
use crate::health::Health;
use crate::lineage::StartAction;
use crate::litestream_config::{Config, DbConfig};
use crate::meta::MetaDir;
use crate::progress::Progress;
use crate::sync::{CheckpointLock, Position};

use super::maintenance::LevelVersions;
use super::own_files::OwnFiles;
use super::upload::Pruned;

/// State shared by the replicator's tasks and handles.
pub(crate) struct Shared {
    pub config: Arc<Config>,
    pub db: DbConfig,
    pub db_path: PathBuf,
    pub page_size: u32,
    pub client: Arc<dyn ReplicaClient>,
    pub meta: MetaDir,
    pub progress: Progress,
    pub health: Health,
    pub metrics: Option<DbMetrics>,
    /// Checkpoints take the write half; snapshots hold the read half while they read, and
    /// the position the syncer published under it.
    pub checkpoint_lock: Arc<CheckpointLock>,
    /// Wakes the sync task.
    pub(super) wake: Notify,
    /// How many callers wait for a commit to be synced or replicated right now: while any
    /// does, syncs are not paced ([`super::pacing`]).
    pub(super) waiters: AtomicUsize,
    /// Cuts a paced pause short when a caller starts waiting.
    pub(super) hurry: Notify,
    /// Set by [`crate::ReplicationHandle::wake`]: sync even if every notified commit is
    /// already synced (a write the handle was not told about).
    pub(super) poked: AtomicBool,
    /// Cancelled when the sync task has ended (however it ended): waiters for a local sync
    /// stop waiting then.
    pub(super) sync_stopped: CancellationToken,
    /// The deadline of replica operations.
    pub operation_timeout: Duration,
    pub(super) last_upload: Mutex<Option<SystemTime>>,
    /// The newest TXID compacted into L1, as maintenance last saw it: local L0 files up to
    /// it are no longer needed by compaction (see the upload task's pruning).
    pub l1_txid: AtomicU64,
    /// Where pruning of local L0 files stands.
    pub(super) pruned: Mutex<Pruned>,
    pub start_action: StartAction,
    /// What maintenance changed in the replica's levels, so its jobs skip when nothing did.
    pub(crate) level_versions: LevelVersions,
    /// The level-0 files this replicator wrote (another writer's are refused).
    pub(crate) own_files: OwnFiles,
}

impl Shared {
    /// The newest local L0 file, as the syncer published it.
    pub(crate) fn position(&self) -> Position {
        self.checkpoint_lock.published().position
    }
}
