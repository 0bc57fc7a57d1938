//! The replicator: one database replicated to one replica, for as long as the server runs.
//!
//! [`Replicator::start`] runs before the server opens the database: it connects to the
//! replica and probes it, restores or lineage-checks the database ([`crate::startup`]),
//! attaches to it ([`crate::db`]) and writes the first L0 file. Then these tasks run beside
//! the server:
//!
//! - **sync** (blocking work on a blocking thread): WAL → L0 files ([`crate::sync`]), woken
//!   at once by [`ReplicationHandle::notify_commit`] from the server's writer and every
//!   `monitor-interval` for writes by other processes. While the previous files are still
//!   being uploaded, commits accumulate and the next sync turns the burst into one L0 file;
//! - **upload**: local L0 files → replica, in TXID order (at most `max-sync-ltx-files` per
//!   pass);
//! - **maintenance**: compaction, snapshots and retention ([`maintenance`]);
//! - **probe**: an active check of the replica every [`PROBE_INTERVAL`] (every second while
//!   anything fails), so a dead endpoint is noticed without waiting for a write;
//! - **watchdog**: turns a failure that outlasts the retry window into a fatal error
//!   ([`crate::health`]), which [`Replicator::failed`] reports to the owner.
//!
//! [`Replicator::shutdown`] runs after the server has stopped writing: a final sync, then
//! uploads until the replica holds everything, bounded by `shutdown-sync-timeout`.
//!
//! The owner's handle ([`ReplicationHandle`]) is cheap to clone; it notifies commits, reports
//! positions and lag, and waits for a TXID or a commit to reach the replica (the basis of a
//! synchronous-acknowledgement mode).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use ltx::{Decoder, Encoder, FileName, Header, TxId};
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::deadline::Deadline;
use crate::client::{
    ClientError, ClientOptions, NetworkOptions, ReadRange, ReplicaClient, ReplicaMetrics,
    open_backend,
};
use crate::config::{Config, ConfigError, DbConfig};
use crate::db::{Database, DbError};
use crate::health::{Component, Failure, FatalError, Health};
use crate::level::{Level, LtxFileInfo, timestamp_from_millis};
use crate::meta::MetaDir;
use crate::metrics::DbMetrics;
use crate::progress::{CommitNotice, Positions, Progress};
use crate::restore::{IntegrityCheck, ProgressFn};
use crate::startup::{self, PrepareOptions, StartAction, StartupError};
use maintenance::{Jobs, MaintenanceError};
pub mod maintenance;

use crate::sync::{
    CheckpointLock, Position, SyncError, SyncHook, SyncReport, SyncSettings, Syncer,
};

/// How often the replica is probed while everything works.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(15);
/// How often while something fails.
pub const PROBE_INTERVAL_FAILING: Duration = Duration::from_secs(1);
/// Shortest pause between two syncs under a steady write load (see the sync task): the first
/// commit after a quiet spell is synced at once, later ones are batched for at least this
/// long, so a lightly loaded server writes at most five L0 files (and uploads) a second.
pub const MIN_SYNC_GAP: Duration = Duration::from_millis(200);
/// Longest pause between two syncs: reached under a heavy write load (at
/// [`HEAVY_WAL_RATE`]) or when syncs themselves get that slow. Litestream's default
/// `sync-interval`, so even then a commit is on the replica about as soon as with Litestream.
pub const MAX_SYNC_GAP: Duration = Duration::from_secs(1);
/// WAL bytes per second up to which syncs run [`MIN_SYNC_GAP`] apart (the benchmark's paced
/// 200 commits/s of one row each write about 2 MB/s).
pub const LIGHT_WAL_RATE: f64 = 4e6;
/// WAL bytes per second from which syncs run [`MAX_SYNC_GAP`] apart; in between the gap grows
/// linearly. Every sync, upload (and the replica's work on it) and checkpoint has a fixed
/// cost, and a longer gap folds the rewrites of hot pages into one page image: with the HTTP
/// write API at full speed (30–60 MB/s of WAL on a 2-core machine) 1 s gaps instead of
/// 200 ms cut the L0 files from 7 to 3 a second and the uploaded bytes by 60 %, and the
/// throughput beside no replication rose from 0.85× to 0.92× (`scripts/bench-replication`).
pub const HEAVY_WAL_RATE: f64 = 16e6;

/// The pause between the end of one sync and the start of the next under a steady load:
/// from the WAL bytes per second the last sync found (`wal_rate`, bytes synced over the time
/// since the sync before) and how long it took.
pub fn sync_gap(wal_rate: f64, last_took: Duration) -> Duration {
    let load = if wal_rate.is_nan() {
        0.0
    } else {
        ((wal_rate - LIGHT_WAL_RATE) / (HEAVY_WAL_RATE - LIGHT_WAL_RATE)).clamp(0.0, 1.0)
    };
    let by_load = MIN_SYNC_GAP + (MAX_SYNC_GAP - MIN_SYNC_GAP).mul_f64(load);
    by_load.max(last_took).min(MAX_SYNC_GAP)
}

/// Everything [`Replicator::start`] needs.
#[derive(Clone)]
pub struct ReplicatorOptions {
    /// The Litestream config (`--replication-config`).
    pub config: Config,
    /// The served database; must be one of `config.dbs`.
    pub db_path: PathBuf,
    /// Where the `litestream_*` and `sqlite_rest_replication_*` metrics are registered.
    pub registry: Option<prometheus::Registry>,
    /// Replica operation metrics; registered in `registry` when `None`.
    pub replica_metrics: Option<ReplicaMetrics>,
    /// See [`crate::health`]; default 60 s or `SQLITEREST_REPLICATION_RETRY_WINDOW`.
    pub retry_window: Duration,
    pub probe_interval: Duration,
    /// Network settings, and the deadline of every replica operation
    /// ([`NetworkOptions::operation_timeout`]: default 30 s or
    /// `SQLITEREST_REPLICATION_OPERATION_TIMEOUT`).
    pub network: NetworkOptions,
    /// Check run on a database restored at start-up (default: full `integrity_check`).
    pub restore_integrity_check: IntegrityCheck,
    /// Restore progress (start-up restores).
    pub restore_progress: Option<ProgressFn>,
    /// Wraps the replica client once it is opened, before anything uses it (every
    /// operation of start-up, the replicator's tasks and shutdown goes through the wrapper):
    /// the place for instrumentation or fault injection. `None` in the shipped server.
    pub wrap_client: Option<WrapClient>,
    /// Test hook of the syncer ([`crate::sync::SyncHook`]); never set outside tests.
    #[doc(hidden)]
    pub sync_hook: Option<SyncHook>,
}

/// A function that wraps the opened replica client ([`ReplicatorOptions::wrap_client`]).
pub type WrapClient = Arc<dyn Fn(Arc<dyn ReplicaClient>) -> Arc<dyn ReplicaClient> + Send + Sync>;

impl std::fmt::Debug for ReplicatorOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatorOptions")
            .field("db_path", &self.db_path)
            .field("retry_window", &self.retry_window)
            .finish_non_exhaustive()
    }
}

impl ReplicatorOptions {
    /// Options with the defaults (retry window from the environment).
    pub fn new(config: Config, db_path: impl Into<PathBuf>) -> Result<ReplicatorOptions, String> {
        Ok(ReplicatorOptions {
            config,
            db_path: db_path.into(),
            registry: None,
            replica_metrics: None,
            retry_window: crate::health::retry_window_from_env()?,
            probe_interval: PROBE_INTERVAL,
            network: NetworkOptions::from_env()?,
            restore_integrity_check: IntegrityCheck::Full,
            restore_progress: None,
            wrap_client: None,
            sync_hook: None,
        })
    }
}

/// Why replication could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("replica {replica} is not reachable: {source}")]
    Unreachable {
        replica: String,
        source: ClientError,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Startup(Box<StartupError>),
    #[error("attaching to the database: {0}")]
    Db(#[from] DbError),
    #[error("first sync of the database: {0}")]
    Sync(#[from] SyncError),
    #[error("adopting the replica's position: {0}")]
    Adopt(String),
    #[error("registering replication metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{0}")]
    Other(String),
}

impl UploadError {
    /// See [`ClientError::stalled`].
    fn stalled(&self) -> Duration {
        match self {
            UploadError::Client(e) => e.stalled(),
            _ => Duration::ZERO,
        }
    }
}

impl From<StartupError> for StartError {
    fn from(e: StartupError) -> Self {
        StartError::Startup(Box::new(e))
    }
}

impl StartError {
    /// True if the local database and the replica have diverged.
    pub fn is_divergence(&self) -> bool {
        matches!(self, StartError::Startup(e) if matches!(**e, StartupError::Diverged(_)))
    }
}

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
    wake: Notify,
    /// The deadline of replica operations.
    pub operation_timeout: Duration,
    last_upload: Mutex<Option<SystemTime>>,
    pub start_action: StartAction,
}

impl Shared {
    /// The newest local L0 file, as the syncer published it.
    pub fn position(&self) -> Position {
        self.checkpoint_lock.published().position
    }
}

/// A snapshot of the replicator's state, for health endpoints and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// False when something is failing (retrying) or replication has failed for good.
    pub healthy: bool,
    pub replica: String,
    pub positions: Positions,
    /// Age of the oldest commit not yet on the replica.
    pub lag: Duration,
    pub failures: Vec<Failure>,
    pub fatal: Option<FatalError>,
    pub last_upload: Option<SystemTime>,
    pub retry_window: Duration,
}

/// The owner's handle (cheap to clone).
#[derive(Clone)]
pub struct ReplicationHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ReplicationHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationHandle")
            .field("db", &self.shared.db_path)
            .finish_non_exhaustive()
    }
}

impl ReplicationHandle {
    /// Tells the replicator that the writer committed (non-blocking, cheap: an atomic max and
    /// a wake-up). The commit's `seq` must increase with every commit.
    pub fn notify_commit(&self, notice: CommitNotice) {
        self.shared.progress.notify(notice);
        self.shared.wake.notify_one();
    }

    /// Wakes the sync task (something was written, commit unknown).
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }

    pub fn positions(&self) -> Positions {
        self.shared.progress.positions()
    }

    /// Watches the positions.
    pub fn subscribe(&self) -> watch::Receiver<Positions> {
        self.shared.progress.subscribe()
    }

    /// Age of the oldest commit not yet on the replica.
    pub fn lag(&self) -> Duration {
        self.shared.progress.lag()
    }

    pub fn replica(&self) -> String {
        self.shared.client.describe()
    }

    pub fn db_path(&self) -> &Path {
        &self.shared.db_path
    }

    /// What start-up did (restored, continued, …).
    pub fn start_action(&self) -> StartAction {
        self.shared.start_action
    }

    /// Waits until the replica holds `txid` (or replication fails).
    pub async fn wait_replicated(&self, txid: TxId) -> Result<Positions, FatalError> {
        self.wait(|p| p.replicated_txid >= txid).await
    }

    /// Waits until the commit numbered `seq` (see [`CommitNotice`]) is on the replica, and
    /// returns the positions then (`replicated_txid` holds the commit). The commit must have
    /// been notified first.
    pub async fn wait_commit_replicated(&self, seq: u64) -> Result<Positions, FatalError> {
        self.wait(|p| p.replicated_seq >= seq).await
    }

    /// Waits until the commit numbered `seq` is in a local L0 file; returns the positions then
    /// (`local_txid` is the TXID that holds it, or a later one).
    pub async fn wait_commit_synced(&self, seq: u64) -> Result<Positions, FatalError> {
        self.wait(|p| p.synced_seq >= seq).await
    }

    async fn wait(&self, done: impl Fn(&Positions) -> bool) -> Result<Positions, FatalError> {
        let mut rx = self.shared.progress.subscribe();
        let fatal = self.shared.health.wait_fatal();
        tokio::pin!(fatal);
        loop {
            {
                let p = *rx.borrow_and_update();
                if done(&p) {
                    return Ok(p);
                }
            }
            if let Some(f) = self.shared.health.fatal() {
                return Err(f);
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Err(self.shared.health.fatal().unwrap_or_else(stopped));
                    }
                }
                f = &mut fatal => return Err(f),
            }
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        let s = &self.shared;
        let failures = s.health.failures();
        let fatal = s.health.fatal();
        Status {
            healthy: failures.is_empty() && fatal.is_none(),
            replica: s.client.describe(),
            positions: s.progress.positions(),
            lag: s.progress.lag(),
            failures,
            fatal,
            last_upload: *s.last_upload.lock(),
            retry_window: s.health.window(),
        }
    }

    /// Resolves when replication has failed for good.
    pub async fn failed(&self) -> FatalError {
        self.shared.health.wait_fatal().await
    }
}

fn stopped() -> FatalError {
    FatalError {
        component: Component::Sync,
        failing_for: Duration::ZERO,
        window: Duration::ZERO,
        last_error: "replication stopped".into(),
    }
}

enum SyncCommand {
    /// Sync now; reply with the positions after it.
    Sync(oneshot::Sender<Result<Positions, String>>),
    /// Final sync, then close the database.
    Final(Duration, oneshot::Sender<Result<(), String>>),
}

/// A running replicator. See the module docs.
pub struct Replicator {
    shared: Arc<Shared>,
    sync_ctl: mpsc::Sender<SyncCommand>,
    /// Stops the probe and maintenance tasks.
    stop_background: CancellationToken,
    /// Stops everything.
    stop_all: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Replicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator")
            .field("db", &self.shared.db_path)
            .finish_non_exhaustive()
    }
}

/// What [`Replicator::shutdown`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    pub positions: Positions,
    pub took: Duration,
}

/// Why the shutdown sync could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    #[error(transparent)]
    Fatal(#[from] FatalError),
    #[error(
        "shutdown sync timed out after {timeout:?}: the replica is at TXID {replicated}, the local database at TXID {local}"
    )]
    Timeout {
        timeout: Duration,
        local: TxId,
        replicated: TxId,
    },
    #[error("final sync failed: {0}")]
    FinalSync(String),
}

impl Replicator {
    /// Prepares the database (restore / lineage check), attaches to it and starts
    /// replicating. Run it before the server opens the database.
    pub async fn start(options: ReplicatorOptions) -> Result<Replicator, StartError> {
        let config = Arc::new(options.config);
        let db_config = config.find_db(&options.db_path)?.clone();
        let db_path = db_config
            .path()
            .map(Path::to_path_buf)
            .unwrap_or(options.db_path.clone());
        let metrics = DbMetrics::new(&db_path)?;
        let replica_metrics = match (options.replica_metrics, &options.registry) {
            (Some(m), _) => m,
            (None, Some(r)) => ReplicaMetrics::register(r)?,
            (None, None) => ReplicaMetrics::unregistered()?,
        };
        let target = &db_config.replica.target;
        target
            .ensure_supported()
            .map_err(|e| StartError::Other(e.to_string()))?;
        let client = open_backend(
            target,
            &ClientOptions {
                metrics: Some(replica_metrics),
                db_path: Some(db_path.clone()),
                network: options.network,
            },
        )
        .await?;
        let client = match &options.wrap_client {
            Some(wrap) => wrap(client),
            None => client,
        };
        // Every operation has a deadline, so a hang is an error like any other.
        let client = Deadline::wrap(client, options.network.operation_timeout);
        client
            .probe()
            .await
            .map_err(|source| StartError::Unreachable {
                replica: client.describe(),
                source,
            })?;
        let meta = MetaDir::new(
            db_config
                .meta_path()
                .unwrap_or_else(|| crate::config::default_meta_path(&db_path)),
        );
        let prepared = startup::prepare(
            &client,
            &db_path,
            &meta,
            &PrepareOptions {
                integrity_check: options.restore_integrity_check,
                progress: options.restore_progress.clone(),
                auto_recover: db_config.replica.auto_recover,
                config: config
                    .source
                    .as_deref()
                    .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())),
                ..PrepareOptions::default()
            },
        )
        .await?;
        tracing::info!(db = %db_path.display(), replica = %client.describe(), action = %prepared.action, "replication start-up");

        // Attach, adopt the replica's position if start-up asked for it, first sync.
        {
            // Creates ltx/0 and clears leftover temp files (before the download below).
            let m = meta.clone();
            let root = meta.root().display().to_string();
            tokio::task::spawn_blocking(move || m.prepare())
                .await
                .map_err(|e| StartError::Other(e.to_string()))?
                .map_err(|e| StartError::Other(format!("{root}: {e}")))?;
        }
        // The replica's newest L0 file to adopt, downloaded next to the metadata (streamed:
        // right after a first sync of a large database it holds every page).
        let adopt_file = match prepared.adopt {
            Some(adoption) => {
                let path = download_for_adoption(&client, &meta, adoption.file).await?;
                Some((adoption, path))
            }
            None => None,
        };
        let checkpoint_lock = Arc::new(CheckpointLock::default());
        let settings = SyncSettings {
            hook: options.sync_hook.clone(),
            ..SyncSettings::from_config(&db_config)
        };
        let busy = db_config.busy_timeout;
        let (syncer, first) = {
            let meta = meta.clone();
            let db_path = db_path.clone();
            let lock = checkpoint_lock.clone();
            let metrics = metrics.clone();
            let position = prepared.position;
            let replica_txid = prepared.replica_txid;
            tokio::task::spawn_blocking(move || -> Result<(Syncer, SyncReport), StartError> {
                let meta = meta.with_modes_from(&db_path);
                let db = Database::open(&db_path, busy)?;
                let mut syncer = Syncer::new(db, meta, settings, position, lock, Some(metrics));
                let adopted = match adopt_file {
                    // Checked now that the read lock is held: see `crate::adoption`.
                    Some((adoption, path)) => {
                        let info = adoption.file;
                        let pos = match adoption.holds(&db_path) {
                            Ok(true) => adopt(&syncer, info, &path).map(Some),
                            Ok(false) => {
                                tracing::warn!(db = %db_path.display(), txid = %info.name.max, "the database was written and checkpointed by another process during start-up: continuing after the replica's TXID with a full L0 file instead of adopting its position");
                                Ok(None)
                            }
                            Err(e) => Err(StartError::Adopt(format!("{}: {e}", db_path.display()))),
                        };
                        let _ = std::fs::remove_file(&path);
                        pos?
                    }
                    None => None,
                };
                if let Some(pos) = adopted {
                    syncer.set_position(pos);
                } else if replica_txid > syncer.position().txid {
                    // The replica is ahead but there is no L0 file to adopt (or the adoption
                    // no longer stands): continue after it with a full L0 file.
                    syncer.set_position(Position {
                        txid: replica_txid,
                        header: None,
                    });
                }
                let first = syncer.sync()?;
                Ok((syncer, first))
            })
            .await
            .map_err(|e| StartError::Other(e.to_string()))??
        };
        let page_size = syncer.database().page_size();
        let position = syncer.position();
        let progress = Progress::new(position.txid, prepared.replica_txid);
        let health = Health::new(
            options.retry_window,
            Some(metrics.clone()),
            db_path.display().to_string(),
        );
        let shared = Arc::new(Shared {
            config: config.clone(),
            db: db_config.clone(),
            db_path: db_path.clone(),
            page_size,
            client: client.clone(),
            meta: syncer.meta().clone(),
            progress,
            health,
            metrics: Some(metrics.clone()),
            checkpoint_lock,
            wake: Notify::new(),
            operation_timeout: options.network.operation_timeout,
            last_upload: Mutex::new(None),
            start_action: prepared.action,
        });
        metrics.set_replicated_txid(prepared.replica_txid);
        metrics.set_txid(position.txid);
        if first.files.is_empty() {
            tracing::debug!(db = %db_path.display(), txid = %position.txid, "nothing new to sync at start-up");
        }
        if let Some(registry) = &options.registry {
            let weak: Weak<Shared> = Arc::downgrade(&shared);
            metrics.register(
                registry,
                Arc::new(move || {
                    weak.upgrade()
                        .map_or(0.0, |s| s.progress.lag().as_secs_f64())
                }),
            )?;
        }

        let stop_all = CancellationToken::new();
        let stop_background = stop_all.child_token();
        let (sync_ctl, ctl_rx) = mpsc::channel(4);
        let tasks = vec![
            supervised(
                &shared,
                &stop_all,
                Component::Sync,
                sync_loop(shared.clone(), syncer, ctl_rx, stop_all.clone()),
            ),
            supervised(
                &shared,
                &stop_all,
                Component::Upload,
                upload_loop(shared.clone(), prepared.replica_txid, stop_all.clone()),
            ),
            supervised(
                &shared,
                &stop_all,
                Component::Compaction,
                maintenance::run(shared.clone(), stop_background.clone()),
            ),
            supervised(
                &shared,
                &stop_all,
                Component::Probe,
                probe_loop(
                    shared.clone(),
                    options.probe_interval,
                    stop_background.clone(),
                ),
            ),
            tokio::spawn(watchdog(shared.clone(), stop_all.clone())),
        ];
        tracing::info!(
            db = %db_path.display(),
            replica = %client.describe(),
            txid = %position.txid,
            replica_txid = %prepared.replica_txid,
            retry_window_s = options.retry_window.as_secs(),
            "replication started"
        );
        Ok(Replicator {
            shared,
            sync_ctl,
            stop_background,
            stop_all,
            tasks,
        })
    }

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

    /// Runs snapshot and L0 retention now (tests, tools).
    pub async fn retention_now(&self) -> Result<(), MaintenanceError> {
        Jobs(self.shared.clone()).retention_now().await
    }

    /// Stops replicating: background jobs stop, a final sync picks up the last commits, and
    /// uploads continue until the replica holds everything or `shutdown-sync-timeout`
    /// passes. Call it after the server has stopped writing (and ideally closed its own
    /// connections, so the replicator's connection — which keeps the WAL — closes last).
    pub async fn shutdown(self) -> Result<ShutdownReport, ShutdownError> {
        let started = Instant::now();
        self.stop_background.cancel();
        let timeout = self.shared.config.shutdown_sync_timeout;
        let result = self.final_sync(timeout).await;
        self.stop_all.cancel();
        // Every task stops at its next await once cancelled; one stuck in a replica operation
        // is abandoned at its deadline at the latest (a thread stuck in a system call on a
        // dead mount never returns, so the wait is bounded).
        let grace = self.shared.operation_timeout + Duration::from_secs(1);
        for mut t in self.tasks {
            if tokio::time::timeout(grace, &mut t).await.is_err() {
                t.abort();
                tracing::warn!(db = %self.shared.db_path.display(), "a replication task did not stop in time; abandoned");
            }
        }
        let positions = self.shared.progress.positions();
        if let Some(f) = self.shared.health.fatal() {
            return Err(f.into());
        }
        result?;
        tracing::info!(
            db = %self.shared.db_path.display(),
            txid = %positions.local_txid,
            replica_txid = %positions.replicated_txid,
            took_ms = started.elapsed().as_millis() as u64,
            "replication stopped"
        );
        Ok(ShutdownReport {
            positions,
            took: started.elapsed(),
        })
    }

    async fn final_sync(&self, timeout: Duration) -> Result<(), ShutdownError> {
        if let Some(f) = self.shared.health.fatal() {
            return Err(f.into());
        }
        let deadline = Instant::now() + timeout;
        let (tx, rx) = oneshot::channel();
        if self
            .sync_ctl
            .send(SyncCommand::Final(timeout, tx))
            .await
            .is_err()
        {
            return Err(ShutdownError::FinalSync(
                "replication already stopped".into(),
            ));
        }
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ShutdownError::FinalSync(e)),
            Err(_) => {
                return Err(self
                    .shared
                    .health
                    .fatal()
                    .map(ShutdownError::from)
                    .unwrap_or_else(|| ShutdownError::FinalSync("sync task stopped".into())));
            }
        }
        let local = self.shared.progress.positions().local_txid;
        let handle = self.handle();
        match tokio::time::timeout_at(deadline.into(), handle.wait_replicated(local)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(f)) => Err(f.into()),
            Err(_) => {
                let p = self.shared.progress.positions();
                Err(ShutdownError::Timeout {
                    timeout,
                    local: p.local_txid,
                    replicated: p.replicated_txid,
                })
            }
        }
    }
}

/// Downloads `info` into `<meta>/ltx/0/<name>.adopt.tmp` (a leftover is removed at the next
/// start, like every `*.tmp` file there).
async fn download_for_adoption(
    client: &Arc<dyn ReplicaClient>,
    meta: &MetaDir,
    info: LtxFileInfo,
) -> Result<PathBuf, StartError> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let dir = meta.level_dir(Level::L0);
    let path = dir.join(format!("{}.adopt.tmp", info.name));
    let io = |e: std::io::Error| StartError::Adopt(format!("{}: {e}", path.display()));
    tokio::fs::create_dir_all(&dir).await.map_err(io)?;
    let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
    let mut stream = client.open(Level::L0, info.name, ReadRange::Full).await?;
    while let Some(chunk) = stream.next().await {
        file.write_all(&chunk?).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    Ok(path)
}

/// Re-heads the replica's newest L0 file (downloaded to `path`) for the freshly attached
/// database: same pages, commit and timestamp (so compactions that read it produce the same
/// bytes), but a WAL range of (32, 0) with the current WAL's salts, so the next sync continues
/// from the start of this WAL. Streams page by page.
fn adopt(syncer: &Syncer, info: LtxFileInfo, path: &Path) -> Result<Position, StartError> {
    let err = |e: &dyn std::fmt::Display| StartError::Adopt(format!("{}: {e}", info.name));
    let salt = syncer
        .database()
        .wal_header()?
        .map(|h| h.salt)
        .unwrap_or_default();
    let file = std::fs::File::open(path).map_err(|e| err(&e))?;
    let mut dec =
        Decoder::new(std::io::BufReader::with_capacity(1 << 20, file)).map_err(|e| err(&e))?;
    let mut header: Header = *dec.header();
    header.wal_offset = crate::wal::WAL_HEADER_SIZE as i64;
    header.wal_size = 0;
    header.wal_salt1 = salt.salt1;
    header.wal_salt2 = salt.salt2;
    let name = FileName::new(header.min_txid, header.max_txid);
    syncer
        .meta()
        .write_with(Level::L0, name, |w| -> Result<(), ltx::Error> {
            let mut enc = Encoder::new(w, header)?;
            let mut page = vec![0u8; header.page_size as usize];
            while let Some(pgno) = dec.next_page(&mut page)? {
                enc.write_page(pgno, &page)?;
            }
            enc.finish()?;
            Ok(())
        })
        .map_err(|e| err(&e))?;
    dec.finish().map_err(|e| err(&e))?;
    tracing::info!(txid = %header.max_txid, "adopted the replica's newest L0 file as the local position");
    Ok(Position {
        txid: header.max_txid,
        header: Some(header),
    })
}

/// Spawns one of the replicator's tasks so that a panic in it is fatal (and stops the
/// others) instead of silently ending, say, every upload while the server keeps
/// acknowledging writes.
fn supervised(
    shared: &Arc<Shared>,
    stop: &CancellationToken,
    component: Component,
    task: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    use futures::FutureExt;
    let (shared, stop) = (shared.clone(), stop.clone());
    tokio::spawn(async move {
        if let Err(panic) = std::panic::AssertUnwindSafe(task).catch_unwind().await {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown cause".into());
            shared.health.set_fatal(FatalError {
                component,
                failing_for: Duration::ZERO,
                window: shared.health.window(),
                last_error: format!("the {component} task panicked: {what}"),
            });
            stop.cancel();
        }
    })
}

/// The sync task. See the module docs.
async fn sync_loop(
    shared: Arc<Shared>,
    syncer: Syncer,
    mut ctl: mpsc::Receiver<SyncCommand>,
    stop: CancellationToken,
) {
    let monitor = shared.db.monitor_interval;
    let mut syncer = Some(syncer);
    let mut last_sync = Instant::now();
    let mut gap = MIN_SYNC_GAP;
    let mut backoff: Option<Duration> = None;
    let mut positions = shared.progress.subscribe();
    loop {
        let deadline = last_sync + backoff.unwrap_or(monitor);
        let mut reply = None;
        let mut final_sync = None;
        tokio::select! {
            _ = stop.cancelled() => break,
            cmd = ctl.recv() => match cmd {
                Some(SyncCommand::Sync(tx)) => reply = Some(tx),
                Some(SyncCommand::Final(timeout, tx)) => final_sync = Some((timeout, tx)),
                None => break,
            },
            _ = shared.wake.notified(), if backoff.is_none() => {}
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
        if let Some((timeout, tx)) = final_sync {
            let result = final_sync_run(&shared, &mut syncer, timeout, &stop).await;
            let _ = tx.send(result);
            break;
        }
        // A burst of commits becomes one file: the next sync starts `gap` after the last one
        // (`sync_gap`: longer under a heavier write load, or when syncs get slow), so syncs,
        // checkpoints and uploads stay a small share of the time.
        if reply.is_none() && backoff.is_none() {
            let next = last_sync + gap;
            if next > Instant::now() {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep_until(next.into()) => {}
                }
            }
        }
        // While earlier files are being uploaded, let commits accumulate into one file.
        if reply.is_none() && backoff.is_none() {
            let p = *positions.borrow_and_update();
            if p.local_txid > p.replicated_txid && !shared.health.is_failing(Component::Upload) {
                let wait_until = last_sync + monitor;
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = positions.wait_for(|p| p.replicated_txid >= p.local_txid) => {}
                    _ = tokio::time::sleep_until(wait_until.into()) => {}
                }
            }
        }
        let started = Instant::now();
        let Some(result) = run_sync(&shared, &mut syncer).await else {
            break;
        };
        let previous = std::mem::replace(&mut last_sync, Instant::now());
        match result {
            Ok((p, wal_bytes)) => {
                let since = (last_sync - previous).as_secs_f64().max(1e-3);
                gap = sync_gap(wal_bytes as f64 / since, last_sync - started);
                backoff = None;
                if let Some(tx) = reply {
                    let _ = tx.send(Ok(p));
                }
            }
            Err(e) => {
                backoff = Some(shared.health.error(Component::Sync, &e));
                if let Some(tx) = reply {
                    let _ = tx.send(Err(e));
                }
            }
        }
    }
    close(&shared, syncer).await;
}

/// One sync on a blocking thread: the positions after it and the WAL bytes it read; `None`
/// if the syncer was lost (a panic: fatal).
async fn run_sync(
    shared: &Arc<Shared>,
    syncer: &mut Option<Syncer>,
) -> Option<Result<(Positions, u64), String>> {
    let mut s = syncer.take()?;
    let ticket = shared.progress.begin_sync();
    let joined = tokio::task::spawn_blocking(move || {
        let r = s.sync();
        (s, r)
    })
    .await;
    let (s, result) = match joined {
        Ok(v) => v,
        Err(e) => {
            shared.health.set_fatal(FatalError {
                component: Component::Sync,
                failing_for: Duration::ZERO,
                window: shared.health.window(),
                last_error: format!("sync task panicked: {e}"),
            });
            return None;
        }
    };
    let position = s.position();
    *syncer = Some(s);
    Some(match result {
        Ok(report) => {
            shared
                .progress
                .end_sync(ticket, position.txid, report.wal_bytes);
            shared.health.ok(Component::Sync);
            for f in &report.files {
                if let Some(reason) = f.full {
                    tracing::info!(db = %shared.db_path.display(), txid = %f.txid(), size = f.size, reason, "full L0 file written");
                }
            }
            Ok((shared.progress.positions(), report.wal_bytes))
        }
        Err(e) => {
            shared.progress.sync_failed(ticket);
            Err(e.to_string())
        }
    })
}

/// The final sync at shutdown: retried every `shutdown-sync-interval` within `timeout`.
async fn final_sync_run(
    shared: &Arc<Shared>,
    syncer: &mut Option<Syncer>,
    timeout: Duration,
    stop: &CancellationToken,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let interval = shared.config.shutdown_sync_interval;
    loop {
        match run_sync(shared, syncer).await {
            None => return Err("sync task lost its database".into()),
            Some(Ok(_)) => return Ok(()),
            Some(Err(e)) => {
                shared.health.error(Component::Sync, &e);
                if Instant::now() + interval > deadline || stop.is_cancelled() {
                    return Err(e);
                }
                tokio::time::sleep(interval).await;
            }
        }
    }
}

/// Releases the read transaction and closes the connections.
async fn close(shared: &Arc<Shared>, syncer: Option<Syncer>) {
    let Some(s) = syncer else { return };
    let db_path = shared.db_path.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = s.into_database().close() {
            tracing::warn!(db = %db_path.display(), error = %e, "closing the replication connections");
        }
    })
    .await;
}

/// The upload task. See the module docs.
async fn upload_loop(shared: Arc<Shared>, mut remote: TxId, stop: CancellationToken) {
    let mut rx = shared.progress.subscribe();
    let max = shared.db.replica.max_sync_ltx_files;
    loop {
        let local = tokio::select! {
            _ = stop.cancelled() => return,
            p = rx.wait_for(|p| p.local_txid > remote) => match p {
                Ok(p) => p.local_txid,
                Err(_) => return,
            },
        };
        let mut uploaded = 0usize;
        while remote < local {
            if stop.is_cancelled() {
                return;
            }
            let txid = TxId(remote.get() + 1);
            let started = Instant::now();
            let uploaded_one = tokio::select! {
                _ = stop.cancelled() => return,
                r = upload_one(&shared, txid) => r,
            };
            match uploaded_one {
                Ok(size) => {
                    remote = txid;
                    shared.progress.uploaded(txid);
                    *shared.last_upload.lock() = Some(SystemTime::now());
                    shared.health.ok(Component::Upload);
                    if let Some(m) = &shared.metrics {
                        m.add_bytes_replicated(size);
                        m.set_replicated_txid(txid);
                    }
                    tracing::debug!(db = %shared.db_path.display(), txid = %txid, size, took_ms = started.elapsed().as_millis() as u64, "ltx file uploaded");
                }
                Err(e) => {
                    let wait = shared
                        .health
                        .error_stalled(Component::Upload, &e, e.stalled());
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            }
            uploaded += 1;
            if max.is_some_and(|m| uploaded >= m) {
                tokio::task::yield_now().await;
                uploaded = 0;
            }
        }
    }
}

/// Errors of one upload.
#[derive(Debug, thiserror::Error)]
enum UploadError {
    #[error("local L0 file {path}: {source}")]
    Local {
        path: String,
        source: std::io::Error,
    },
    #[error("local L0 file {path}: {message}")]
    BadLocal { path: String, message: String },
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// L0 files larger than this are streamed from disk rather than read into memory.
const STREAM_UPLOAD_ABOVE: u64 = 16 << 20;

/// Uploads the local L0 file of `txid`; returns its size.
async fn upload_one(shared: &Shared, txid: TxId) -> Result<u64, UploadError> {
    use tokio::io::AsyncReadExt;
    let path = shared.meta.l0_path(txid);
    let display = path.display().to_string();
    let local = |source| UploadError::Local {
        path: display.clone(),
        source,
    };
    let mut file = tokio::fs::File::open(&path).await.map_err(local)?;
    let size = file.metadata().await.map_err(local)?.len();
    let mut hb = [0u8; ltx::HEADER_SIZE];
    file.read_exact(&mut hb).await.map_err(local)?;
    let header = Header::from_bytes(&hb).map_err(|e| UploadError::BadLocal {
        path: display.clone(),
        message: e.to_string(),
    })?;
    let created_at = timestamp_from_millis(header.timestamp).unwrap_or_else(chrono::Utc::now);
    let name = FileName::new(txid, txid);
    if size > STREAM_UPLOAD_ABOVE {
        use futures::StreamExt;
        let file = tokio::fs::File::open(&path).await.map_err(local)?;
        let replica = shared.client.describe();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20)
            .map(move |r| {
                r.map_err(|source| ClientError::Io {
                    replica: replica.clone(),
                    operation: "read local L0",
                    path: PathBuf::new(),
                    source,
                })
            })
            .boxed();
        shared
            .client
            .write(Level::L0, name, stream, created_at)
            .await?;
    } else {
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        bytes.extend_from_slice(&hb);
        file.read_to_end(&mut bytes).await.map_err(local)?;
        shared
            .client
            .write_bytes(Level::L0, name, bytes::Bytes::from(bytes), created_at)
            .await?;
    }
    Ok(size)
}

/// The probe task. See the module docs.
async fn probe_loop(shared: Arc<Shared>, interval: Duration, stop: CancellationToken) {
    loop {
        let wait = if shared.health.any_failing() {
            PROBE_INTERVAL_FAILING
        } else {
            interval
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = shared.client.probe() => r,
        };
        match result {
            Ok(()) => shared.health.ok(Component::Probe),
            Err(e) => {
                shared
                    .health
                    .error_stalled(Component::Probe, &e, e.stalled());
            }
        }
    }
}

/// Checks the retry window; on a fatal error stops every task.
async fn watchdog(shared: Arc<Shared>, stop: CancellationToken) {
    let tick =
        (shared.health.window() / 20).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        if shared.health.check().is_some() {
            stop.cancel();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_gap_grows_with_the_write_load() {
        let quick = Duration::from_millis(5);
        // Light loads (and no load) keep the shortest gap, so their lag stays low.
        assert_eq!(sync_gap(0.0, quick), MIN_SYNC_GAP);
        assert_eq!(sync_gap(2e6, quick), MIN_SYNC_GAP);
        assert_eq!(sync_gap(LIGHT_WAL_RATE, quick), MIN_SYNC_GAP);
        // In between, linear.
        let mid = sync_gap((LIGHT_WAL_RATE + HEAVY_WAL_RATE) / 2.0, quick);
        assert_eq!(mid, (MIN_SYNC_GAP + MAX_SYNC_GAP) / 2);
        assert!(sync_gap(8e6, quick) < sync_gap(12e6, quick));
        // Heavy loads batch for the longest gap, and never longer.
        assert_eq!(sync_gap(HEAVY_WAL_RATE, quick), MAX_SYNC_GAP);
        assert_eq!(sync_gap(1e9, quick), MAX_SYNC_GAP);
        assert_eq!(sync_gap(f64::INFINITY, quick), MAX_SYNC_GAP);
        assert_eq!(sync_gap(f64::NAN, quick), MIN_SYNC_GAP);
        // A slow sync stretches the gap to its own length, up to the longest gap.
        let slow = Duration::from_millis(450);
        assert_eq!(sync_gap(0.0, slow), slow);
        assert_eq!(sync_gap(0.0, Duration::from_secs(5)), MAX_SYNC_GAP);
    }
}
