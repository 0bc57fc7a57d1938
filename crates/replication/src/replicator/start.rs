//! [`Replicator::start`]: open and probe the replica, prepare the database (restore or
//! lineage check), attach, adopt the replica's position, first sync, and spawn the tasks;
//! and why it can fail ([`StartError`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::time::Duration;

use ltx::TxId;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::adoption::Adoption;
use crate::client::deadline::Deadline;
use crate::client::{ClientOptions, ReplicaClient, ReplicaMetrics, open_backend};
use crate::db_attachment::Database;
use crate::db_metrics::DbMetrics;
use crate::health::{Component, Health};
use crate::lineage::{self, PrepareOptions};
use crate::litestream_config::DbConfig;
use crate::meta::MetaDir;
use crate::progress::Progress;
use crate::sync::{CheckpointLock, Position, SyncReport, SyncSettings, Syncer};

use super::adopt::{adopt, download_for_adoption};
use super::error::StartError;
use super::maintenance;
use super::options::ReplicatorOptions;
use super::own_files::OwnFiles;
use super::probe::probe_loop;
use super::running::Replicator;
use super::shared::Shared;
use super::supervise::{supervised, watchdog};
use super::sync_task::sync_loop;
use super::upload::upload_loop;

impl Replicator {
    /// Prepares the database (restore / lineage check), attaches to it and starts
    /// replicating. Run it before the server opens the database.
    pub async fn start(options: ReplicatorOptions) -> Result<Replicator, StartError> {
        let config = Arc::new(options.config.clone());
        let db_config = config.find_db(&options.db_path)?.clone();
        let db_path = db_config
            .path()
            .map(Path::to_path_buf)
            .unwrap_or(options.db_path.clone());
        let metrics = DbMetrics::new(&db_path)?;
        let client = open_replica(&options, &db_config, &db_path).await?;
        let meta = MetaDir::new(
            db_config
                .meta_path()
                .unwrap_or_else(|| crate::litestream_config::default_meta_path(&db_path)),
        );
        let prepared = lineage::prepare(
            &client,
            &db_path,
            &meta,
            &PrepareOptions {
                integrity_check: options.restore_integrity_check,
                progress: options.restore_progress.clone(),
                auto_recover: db_config.replica.auto_recover,
                create_database: options.create_database,
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
        let (syncer, first) = {
            let attach = Attach {
                db_path: db_path.clone(),
                busy_timeout: db_config.busy_timeout,
                meta: meta.clone(),
                settings,
                position: prepared.position,
                replica_txid: prepared.replica_txid,
                checkpoint_lock: checkpoint_lock.clone(),
                metrics: metrics.clone(),
                adopt_file,
            };
            tokio::task::spawn_blocking(move || attach.run())
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
            waiters: AtomicUsize::new(0),
            hurry: Notify::new(),
            sync_stopped: CancellationToken::new(),
            poked: AtomicBool::new(false),
            operation_timeout: options.network.operation_timeout,
            last_upload: Mutex::new(None),
            l1_txid: AtomicU64::new(0),
            pruned: Mutex::new(Default::default()),
            start_action: prepared.action,
            level_versions: Default::default(),
            own_files: OwnFiles::new(
                prepared.replica_txid,
                prepared.position.txid,
                !config.levels.is_empty(),
            ),
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

        let replicator = spawn_tasks(
            shared,
            syncer,
            prepared.replica_txid,
            options.probe_interval,
        );
        tracing::info!(
            db = %db_path.display(),
            replica = %client.describe(),
            txid = %position.txid,
            replica_txid = %prepared.replica_txid,
            retry_window_s = options.retry_window.as_secs(),
            "replication started"
        );
        Ok(replicator)
    }
}

/// Opens the replica client as every start-up and task uses it: the backend (counted in the
/// replica operation metrics), the owner's wrapper if any, the deadline of every operation;
/// then probes it.
async fn open_replica(
    options: &ReplicatorOptions,
    db_config: &DbConfig,
    db_path: &Path,
) -> Result<Arc<dyn ReplicaClient>, StartError> {
    let replica_metrics = match (&options.replica_metrics, &options.registry) {
        (Some(m), _) => m.clone(),
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
            db_path: Some(db_path.to_path_buf()),
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
    Ok(client)
}

/// Attaching to the database, on a blocking thread: open the replicator's connections, adopt
/// the replica's position if start-up asked for it and it still stands, and the first sync.
struct Attach {
    db_path: PathBuf,
    busy_timeout: Duration,
    meta: MetaDir,
    settings: SyncSettings,
    position: Position,
    replica_txid: TxId,
    checkpoint_lock: Arc<CheckpointLock>,
    metrics: DbMetrics,
    /// The replica's newest L0 file, downloaded for adoption.
    adopt_file: Option<(Adoption, PathBuf)>,
}

impl Attach {
    fn run(self) -> Result<(Syncer, SyncReport), StartError> {
        let Attach {
            db_path,
            busy_timeout: busy,
            meta,
            settings,
            position,
            replica_txid,
            checkpoint_lock: lock,
            metrics,
            adopt_file,
        } = self;
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
    }
}

/// Spawns the replicator's tasks (see the module docs) over the attached database.
fn spawn_tasks(
    shared: Arc<Shared>,
    syncer: Syncer,
    replica_txid: TxId,
    probe_interval: Duration,
) -> Replicator {
    let stop_all = CancellationToken::new();
    // Replication failing for good on the replica's side stops these; the sync task goes on
    // writing local L0 files until shutdown, so every commit the server makes meanwhile gets
    // its TXID (see `sync_task`).
    let stop_replica = stop_all.child_token();
    let stop_background = stop_replica.child_token();
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
            &stop_replica,
            Component::Upload,
            upload_loop(shared.clone(), replica_txid, stop_replica.clone()),
        ),
        supervised(
            &shared,
            &stop_replica,
            Component::Compaction,
            maintenance::run(shared.clone(), stop_background.clone()),
        ),
        supervised(
            &shared,
            &stop_replica,
            Component::Probe,
            probe_loop(shared.clone(), probe_interval, stop_background.clone()),
        ),
        tokio::spawn(watchdog(
            shared.clone(),
            stop_all.clone(),
            stop_replica.clone(),
        )),
    ];
    Replicator {
        shared,
        sync_ctl,
        stop_background,
        stop_all,
        tasks,
    }
}
