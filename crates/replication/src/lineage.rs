//! Before the database is served: restore it if it is missing, and check that a local
//! database and the replica share one history (lineage). Neither side is ever overwritten
//! silently.
//!
//! The local position is the newest L0 file in the metadata directory; the replica's history
//! is its listing. [`prepare`] decides:
//!
//! | Local database | Replica | Decision |
//! |---|---|---|
//! | missing | empty | new database |
//! | missing | has data | restore the latest state (integrity-checked), adopt its position (the replica's newest L0 file, merged or not) |
//! | missing | a Litestream 0.3 backup newer than any LTX file | restore it (integrity-checked); replicate in LTX from the next TXID, under the same path |
//! | exists | empty, or only a Litestream 0.3 backup | start a new replica from this database (local position reset; a 0.3 backup is left untouched) |
//! | exists, no position | has data | compare contents page by page: equal → adopt the replica's position; different → **diverged** |
//! | position L, another page size than the database's | has data | **diverged** (one LTX history has one page size) |
//! | position L | has L0 file L | compare the two files page by page: different → **diverged**; L is the newest → continue; replica ahead → catch up if the local database is exactly at L (proved by its WAL, or by comparing contents with the replica's state at L), else **diverged** |
//! | position L | has a merged L0 file `<M>-<L>` (M < L; our uploads merge the files of a batch) | the local file L must be its tail (same header but for MinTXID and pre-apply checksum, each of its pages in the merged file with the same bytes): else **diverged**; then as above |
//! | position L | ends below L | continue (upload the missing files) if every local L0 file after the replica's end is still there, else **diverged** (the replica went backwards) |
//! | position L | no file L, ends at L (only a snapshot reaches L, or L's file was compacted away) | compare the local state *at L* (the database file plus its WAL up to L's end: later commits are simply not replicated yet) with the replica's state at L: different → as in the next row; equal → continue. A snapshot is taken from the local database, so it can reach the replica while L0 uploads fail, also beyond its L0/L1… files: uploads continue after those files (the local ones in between are uploaded), so no level keeps a gap; only if those local files are gone, after the snapshot |
//! | position L | no file L, ends above L | compare contents (all of them: a catch-up replaces the database) with the replica's state at L: equal → catch up; else **diverged** unless they equal its latest state (adopted) |
//!
//! Two L0 files are the same when their headers and pages are. Where in a WAL a file was
//! read from (offset, size, salts) is compared too — the random salts are what tells two
//! writers' files apart when they clash in timestamp and pages — except against a copy
//! adopted at start-up, which holds the replica's file re-headed to the start of the local
//! WAL (offset 32, no WAL bytes). Files are compared as streams, page by page, never whole
//! in memory.
//!
//! Catching up restores the replica's latest state next to the database and swaps it in.
//! After a restore or catch-up the local metadata is reset and the replica's newest L0 file
//! is adopted as the position, re-headed to the new WAL (see
//! [`crate::replicator::Replicator::start`]), so replication continues incrementally with no
//! full snapshot upload; a read transaction held from the comparison (or the restore) until
//! the replicator attaches keeps another process's commits in the WAL meanwhile, and the
//! adoption is dropped for a full L0 file if one may have left it ([`crate::adoption`]). A stop at any point of this is no divergence at the next start: a
//! database that is not at its recorded position but equals the replica's latest state (a
//! catch-up or `sqlite-rest restore` swapped it in and stopped before the position was
//! reset) is adopted like one with no position.
//!
//! What the replica path holds is checked first ([`crate::layout::inspect`]): anything that
//! is neither LTX files nor a Litestream 0.3 backup stops start-up, naming what was found.
//! A Litestream 0.3 backup is only ever read, never written: with a local database present
//! it plays no part (as for Litestream 0.5, which replicates the local database and leaves
//! the old backup beside the LTX files; `sqlite-rest restore` reads whichever is newer).
//!
//! A divergence is a [`Divergence`] whose message says what differs and how the operator
//! chooses a side, with commands to copy: `sqlite-rest restore --force --config … <db>` (keep
//! the replica's), or a new replica path (keep the local one).
//!
//! Local files (the database, its WAL, the metadata directory) are read on blocking threads.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ltx::{Compactor, Decoder, FileName, Header, PageSink, TxId};

use crate::adoption::Adoption;
use crate::client::{ClientError, ReplicaClient};
use crate::db_attachment::with_suffix;
use crate::layout::{self, Format, ReplicaContents};
use crate::level::{Level, LtxFileInfo};
use crate::meta::{MetaDir, fsync_parent, remove_if_exists};
use crate::replica_readers::{FetchOptions, FetchProgress, Input, open_inputs};
use crate::restore::{self, IntegrityCheck, ProgressFn, RestoreError, RestoreOptions, sidecars};
use crate::restore::{PlanError, RestoreTarget, plan_restore};
use crate::snapshot::{DbImage, SnapshotError, detect_page_size};
use crate::sync::{Position, SyncError, read_position};
use crate::v03::{self, Generation, RestoredV03, V03Target};
use crate::wal::{WalHeader, WalReader};

/// What start-up did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAction {
    /// No local database and an empty replica: a new database.
    NewDatabase,
    /// No local database: restored from the replica at this TXID.
    Restored { txid: TxId },
    /// No local database: restored from a Litestream 0.3 backup (generation, last WAL
    /// index); replication continues in LTX.
    RestoredV03 { generation: Generation, index: u32 },
    /// A local database and an empty replica: a new replica.
    NewReplica,
    /// Same history, nothing to do.
    Continued { local: TxId, replica: TxId },
    /// The local database was behind and was brought to the replica's state.
    CaughtUp { from: TxId, to: TxId },
    /// The local database had no replication position but equals the replica's state.
    Adopted { txid: TxId },
}

impl fmt::Display for StartAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartAction::NewDatabase => write!(f, "new database (the replica is empty)"),
            StartAction::Restored { txid } => write!(f, "restored from the replica at TXID {txid}"),
            StartAction::RestoredV03 { generation, index } => write!(
                f,
                "restored from the Litestream 0.3 backup (generation {generation}, WAL index \
                 {index:08x}); replicating in LTX files from now on"
            ),
            StartAction::NewReplica => write!(f, "new replica from the local database"),
            StartAction::Continued { local, replica } => {
                write!(f, "continuing (local TXID {local}, replica TXID {replica})")
            }
            StartAction::CaughtUp { from, to } => {
                write!(f, "caught up from TXID {from} to the replica's TXID {to}")
            }
            StartAction::Adopted { txid } => {
                write!(
                    f,
                    "local database equals the replica at TXID {txid}; adopted its position"
                )
            }
        }
    }
}

/// The outcome of [`prepare`].
#[derive(Debug, Clone)]
pub struct Prepared {
    pub action: StartAction,
    /// The local position to start from.
    pub position: Position,
    /// The newest TXID on the replica (uploads continue after it).
    pub replica_txid: TxId,
    /// The replica's newest L0 file, to adopt as the local position once the database is
    /// attached (if [`Adoption::holds`] then).
    pub adopt: Option<Adoption>,
}

/// How the local database and the replica differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DivergenceKind {
    /// No local replication position, and contents differ from the replica's latest state.
    NoLocalHistory { replica: TxId, detail: String },
    /// Both have TXID `txid`, with different contents.
    TxidDiffers { txid: TxId },
    /// The replica moved on, and the local database has changes after `local`.
    LocalChangesAfter {
        local: TxId,
        replica: TxId,
        detail: String,
    },
    /// The replica ends before the local position and the local files in between are gone.
    ReplicaWentBack { local: TxId, replica: TxId },
    /// The database's page size is not the one its replication history (up to `txid`) has:
    /// it was changed (`PRAGMA page_size` and `VACUUM`) while replication was stopped.
    PageSizeChanged {
        txid: TxId,
        local: u32,
        replica: u32,
    },
}

/// The local database and the replica do not share one history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    pub db: PathBuf,
    pub replica: String,
    pub meta: PathBuf,
    /// The replication config, named in the remedy commands (`None`: a placeholder).
    pub config: Option<PathBuf>,
    pub kind: DivergenceKind,
}

impl Divergence {
    /// The command that keeps the replica's version, ready to run in a POSIX shell.
    pub fn restore_command(&self) -> String {
        let config = self
            .config
            .as_ref()
            .map_or_else(|| "litestream.yml".to_string(), |c| c.display().to_string());
        let db = self.db.display().to_string();
        let words = [
            "sqlite-rest",
            "restore",
            "--force",
            "--config",
            &config,
            &db,
        ];
        shlex::try_join(words).unwrap_or_else(|_| words.join(" "))
    }
}

impl std::error::Error for Divergence {}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the local database {} and the replica {} have diverged: ",
            self.db.display(),
            self.replica
        )?;
        match &self.kind {
            DivergenceKind::NoLocalHistory { replica, detail } => write!(
                f,
                "the local database has no replication history ({} is missing or empty) and differs \
                 from the replica's latest state at TXID {replica} ({detail})",
                self.meta.display()
            )?,
            DivergenceKind::TxidDiffers { txid } => write!(
                f,
                "both record TXID {txid}, with different contents (another database was replicated \
                 to this replica path?)"
            )?,
            DivergenceKind::LocalChangesAfter {
                local,
                replica,
                detail,
            } => write!(
                f,
                "the replica has moved on to TXID {replica}, but the local database has changes \
                 after its replicated TXID {local} that are not on the replica ({detail})"
            )?,
            DivergenceKind::ReplicaWentBack { local, replica } => write!(
                f,
                "the replica ends at TXID {replica}, but this database had already replicated up to \
                 TXID {local} and its local copies of the files after TXID {replica} are gone (the \
                 replica lost files or was replaced)"
            )?,
            DivergenceKind::PageSizeChanged {
                txid,
                local,
                replica,
            } => write!(
                f,
                "the database's page size is {local} bytes, but its replication history (up to \
                 TXID {txid}) has {replica}-byte pages: the page size was changed while \
                 replication was stopped, and one replica history cannot change its page size"
            )?,
        }
        write!(
            f,
            ". Nothing was changed. Choose a side: to keep the replica's version, run `{}` (it \
             replaces the local database and its replication metadata with the replica's latest \
             state); to keep the local version, point the replication config at a new, empty \
             replica path (the old replica is left untouched)",
            self.restore_command()
        )
    }
}

/// Errors of [`prepare`].
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Diverged(Box<Divergence>),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error(
        "reading the local replication position: {}. Nothing was changed. To start over, remove the metadata directory {} (or set `auto-recover: true` on the replica): the database is then compared with the replica page by page and replication continues if they are equal", .0, .1.display()
    )]
    LocalPosition(Box<SyncError>, PathBuf),
    #[error("{0}")]
    Image(#[from] SnapshotError),
    #[error("comparing the local database with the replica: {0}")]
    Compare(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("start-up task failed: {0}")]
    Task(String),
    /// No local database, nothing on the replica to restore, and start-up was told not to
    /// create one ([`PrepareOptions::create_database`]).
    #[error(
        "the database {} does not exist and the replica {replica} holds no backup to restore it from; refusing to create a new, empty database", .db.display()
    )]
    NoDatabase { db: PathBuf, replica: String },
}

impl From<Divergence> for StartupError {
    fn from(d: Divergence) -> Self {
        StartupError::Diverged(Box::new(d))
    }
}

/// Options of [`prepare`].
#[derive(Clone)]
pub struct PrepareOptions {
    /// Check run on a restored database before it is renamed into place (default: full).
    pub integrity_check: IntegrityCheck,
    pub fetch: FetchOptions,
    pub progress: Option<ProgressFn>,
    /// `auto-recover`: a corrupt local position is reset instead of being an error.
    pub auto_recover: bool,
    /// The replication config file, named in the commands a [`Divergence`] prints.
    pub config: Option<PathBuf>,
    /// Whether a missing database may start as a new, empty one when the replica is empty
    /// (default true); false makes that case [`StartupError::NoDatabase`].
    pub create_database: bool,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            integrity_check: IntegrityCheck::Full,
            fetch: FetchOptions::default(),
            progress: None,
            auto_recover: false,
            config: None,
            create_database: true,
        }
    }
}

/// Decides how to start (see the module docs) and does the restore or catch-up it needs.
pub async fn prepare(
    client: &Arc<dyn ReplicaClient>,
    db_path: &Path,
    meta: &MetaDir,
    options: &PrepareOptions,
) -> Result<Prepared, StartupError> {
    let contents = layout::inspect(client.as_ref(), false)
        .await
        .map_err(RestoreError::from)?;
    let remote = contents.ltx.clone();
    let replica_txid = remote
        .iter()
        .map(|f| f.name.max)
        .max()
        .unwrap_or(TxId::ZERO);
    // The end of the replica's L0/L1… chain. A snapshot can be ahead of it: it is taken from
    // the local database, so it can reach the replica while L0 uploads fail. Uploads then
    // continue after the chain, not after the snapshot (see `resume_after`).
    let chain_txid = remote
        .iter()
        .filter(|f| !f.level.is_snapshot())
        .map(|f| f.name.max)
        .max()
        .unwrap_or(TxId::ZERO);
    let newest_l0 = remote
        .iter()
        .filter(|f| f.level == Level::L0)
        .max_by_key(|f| f.name.max)
        .copied();
    // A merged L0 file `<min>-<max>` (our uploads merge the files of one batch) is adopted
    // like a single one: its pages, commit and timestamp are those of its last TXID.
    let adopt = newest_l0.filter(|f| f.name.max == replica_txid);
    let diverged = |kind| Divergence {
        db: db_path.to_path_buf(),
        replica: client.describe(),
        meta: meta.root().to_path_buf(),
        config: options.config.clone(),
        kind,
    };

    let local = {
        let (db, meta, auto_recover) = (db_path.to_path_buf(), meta.clone(), options.auto_recover);
        let restoring = !contents.is_empty();
        blocking(move || inspect_local(&db, &meta, auto_recover, restoring)).await?
    };
    let Some(local) = local else {
        if contents.is_empty() {
            if !options.create_database {
                return Err(StartupError::NoDatabase {
                    db: db_path.to_path_buf(),
                    replica: client.describe(),
                });
            }
            return Ok(Prepared {
                action: StartAction::NewDatabase,
                position: Position::ZERO,
                replica_txid,
                adopt: None,
            });
        }
        if contents.format_for(RestoreTarget::Latest) == Format::V03 {
            let restored = restore_v03_latest(client, db_path, &contents, options).await?;
            // No LTX position: the first sync writes a full L0 file after the replica's
            // newest TXID (TXID 1 on a replica without LTX files).
            return Ok(Prepared {
                action: StartAction::RestoredV03 {
                    generation: restored.generation,
                    index: restored.index,
                },
                position: Position::ZERO,
                replica_txid,
                adopt: None,
            });
        }
        let txid = restore_latest(client, db_path, db_path, options).await?;
        return Ok(Prepared {
            action: StartAction::Restored { txid },
            position: Position::ZERO,
            replica_txid,
            adopt: begin_adoption(db_path, adopt).await?,
        });
    };

    if remote.is_empty() {
        if let Some(snapshot) = contents.v03.best_snapshot(None) {
            tracing::warn!(
                db = %db_path.display(),
                replica = %client.describe(),
                generation = %snapshot.generation,
                snapshot_created_at = %restore::describe_time(snapshot.created_at),
                "the replica path holds a Litestream 0.3 backup and the local database exists: \
                 replicating the local database in LTX files beside it (the 0.3 backup is left \
                 untouched; a restore reads whichever of the two is newer)"
            );
        }
        if local.txid != TxId::ZERO {
            tracing::warn!(
                db = %db_path.display(),
                replica = %client.describe(),
                local_txid = %local.txid,
                "the replica is empty although this database was replicated before; starting a new replica from the local database"
            );
            reset_meta(meta).await?;
        }
        return Ok(Prepared {
            action: StartAction::NewReplica,
            position: Position::ZERO,
            replica_txid,
            adopt: None,
        });
    }

    if local.txid == TxId::ZERO {
        // Before the comparison: a write after it must not be missed by the adoption.
        let adoption = begin_adoption(db_path, adopt).await?;
        return match compare_with_replica(
            client,
            db_path,
            &remote,
            RestoreTarget::Latest,
            LocalState::Current,
            options,
        )
        .await?
        {
            Comparison::Equal => Ok(Prepared {
                action: StartAction::Adopted { txid: replica_txid },
                position: Position::ZERO,
                replica_txid,
                adopt: adoption,
            }),
            Comparison::Different(detail) | Comparison::Unavailable(detail) => {
                Err(diverged(DivergenceKind::NoLocalHistory {
                    replica: replica_txid,
                    detail,
                })
                .into())
            }
        };
    }

    let l = local.txid;
    if let Some(h) = local.header {
        let db = db_path.to_path_buf();
        let page_size = blocking(move || Ok(detect_page_size(&db)?)).await?;
        if page_size != h.page_size {
            return Err(diverged(DivergenceKind::PageSizeChanged {
                txid: l,
                local: page_size,
                replica: h.page_size,
            })
            .into());
        }
    }
    // The local position file: one TXID, or an adopted merged file `<min>-<max>`.
    let l_name = FileName::new(local.header.map_or(l, |h| h.min_txid), l);
    let remote_l = remote
        .iter()
        .find(|f| f.level == Level::L0 && f.name == l_name)
        .copied();
    // Our uploads merge consecutive local files into one replica file ending at L: then the
    // local file at L must be its tail.
    let remote_merged_l = remote
        .iter()
        .filter(|f| f.level == Level::L0 && f.name.max == l && f.name.min < l_name.min)
        .max_by_key(|f| f.name.min)
        .copied();
    let behind = Behind {
        client,
        db_path,
        meta,
        remote: &remote,
        local,
        replica_txid,
        adopt,
        options,
        diverged: &diverged,
    };
    let same = match (remote_l, remote_merged_l) {
        (Some(info), _) => Some(same_l0(client, meta, info, options.fetch, l_name).await?),
        (None, Some(info)) => Some(same_l0(client, meta, info, options.fetch, l_name).await?),
        (None, None) => None,
    };
    if let Some(same) = same {
        if same != Some(true) {
            return Err(diverged(DivergenceKind::TxidDiffers { txid: l }).into());
        }
        if l >= replica_txid {
            return Ok(continued(local, replica_txid));
        }
        return behind.catch_up_if_at().await;
    }
    if l > replica_txid {
        if let Some(n) = newest_l0
            && same_l0(client, meta, n, options.fetch, n.name).await? == Some(false)
        {
            return Err(diverged(DivergenceKind::TxidDiffers { txid: n.name.max }).into());
        }
        if !has_local_l0(meta, replica_txid, l).await? {
            return Err(diverged(DivergenceKind::ReplicaWentBack {
                local: l,
                replica: replica_txid,
            })
            .into());
        }
        let resume = resume_after(meta, db_path, chain_txid, replica_txid, l).await?;
        return Ok(continued(local, resume));
    }
    // The replica is at or beyond L but no longer has L's own file (compacted away), or only
    // a snapshot reaches L. At L, commits after L are not replicated yet, so the local state
    // at L is what must match (after a crash the WAL still holds commits no L0 file has).
    // Beyond L, a catch-up would replace the database: all of it must be at L.
    let state = if l == replica_txid {
        LocalState::At(local)
    } else {
        LocalState::Current
    };
    match compare_with_replica(
        client,
        db_path,
        &remote,
        RestoreTarget::TxId(l),
        state,
        options,
    )
    .await?
    {
        Comparison::Equal if l == replica_txid => {
            let resume = resume_after(meta, db_path, chain_txid, replica_txid, l).await?;
            Ok(continued(local, resume))
        }
        Comparison::Equal => behind.catch_up().await,
        Comparison::Different(detail) | Comparison::Unavailable(detail) => {
            behind.not_at_position(detail).await
        }
    }
}

/// Runs blocking file work (the database, its WAL, the metadata directory) on a blocking
/// thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StartupError> + Send + 'static,
) -> Result<T, StartupError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StartupError::Task(e.to_string()))?
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> StartupError + '_ {
    move |source| StartupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The local side (blocking): `None` if there is no database (its metadata is then reset,
/// and when `restoring`, leftover `-wal`/`-shm`/`-journal` files removed); else its
/// replication position.
fn inspect_local(
    db_path: &Path,
    meta: &MetaDir,
    auto_recover: bool,
    restoring: bool,
) -> Result<Option<Position>, StartupError> {
    let db_exists = std::fs::metadata(db_path).is_ok_and(|m| m.len() > 0);
    if !db_exists {
        meta.reset().map_err(io_error(meta.root()))?;
        if restoring {
            // Leftover sidecars of a database that no longer exists must not be applied to
            // the restored one.
            for p in &sidecars(db_path)[1..] {
                if p.exists() {
                    tracing::warn!(path = %p.display(), "removing a leftover file of a missing database before restoring");
                    std::fs::remove_file(p).map_err(io_error(p))?;
                }
            }
        }
        return Ok(None);
    }
    match read_position(meta) {
        Ok(p) => Ok(Some(p)),
        Err(e) if auto_recover => {
            tracing::warn!(error = %e, meta = %meta.root().display(), "local replication state is unreadable; auto-recover resets it");
            meta.reset().map_err(io_error(meta.root()))?;
            Ok(Some(Position::ZERO))
        }
        Err(e) => Err(StartupError::LocalPosition(
            Box::new(e),
            meta.root().to_path_buf(),
        )),
    }
}

async fn reset_meta(meta: &MetaDir) -> Result<(), StartupError> {
    let meta = meta.clone();
    blocking(move || meta.reset().map_err(io_error(meta.root()))).await
}

/// Whether every local L0 file after `after` up to `to` is still in the metadata directory.
async fn has_local_l0(meta: &MetaDir, after: TxId, to: TxId) -> Result<bool, StartupError> {
    let meta = meta.clone();
    blocking(move || {
        Ok((after.get() + 1..=to.get())
            .all(|t| meta.exists(Level::L0, FileName::new(TxId(t), TxId(t)))))
    })
    .await
}

/// Where uploads continue when the local database (at `local`, not behind the replica) keeps
/// its position: after the end of the replica's L0/L1… chain (`chain`) when a snapshot took
/// the replica further (to `replica`) and every local L0 file after the chain is still here,
/// so that no level keeps a gap and every TXID stays restorable; else after `replica`.
/// Litestream also takes a replica's position from its L0 files alone.
async fn resume_after(
    meta: &MetaDir,
    db_path: &Path,
    chain: TxId,
    replica: TxId,
    local: TxId,
) -> Result<TxId, StartupError> {
    if chain >= replica {
        return Ok(replica);
    }
    if has_local_l0(meta, chain, local).await? {
        tracing::info!(db = %db_path.display(), chain_txid = %chain, snapshot_txid = %replica, "a snapshot on the replica is ahead of its L0 files: uploading the local L0 files after them");
        return Ok(chain);
    }
    tracing::warn!(db = %db_path.display(), chain_txid = %chain, snapshot_txid = %replica, "a snapshot on the replica is ahead of its L0 files and the local L0 files in between are gone: continuing after the snapshot (the TXIDs in between can only be restored from the snapshot on)");
    Ok(replica)
}

fn continued(local: Position, replica: TxId) -> Prepared {
    Prepared {
        action: StartAction::Continued {
            local: local.txid,
            replica,
        },
        position: local,
        replica_txid: replica,
        adopt: None,
    }
}

/// A local database whose position L the replica has moved beyond.
struct Behind<'a> {
    client: &'a Arc<dyn ReplicaClient>,
    db_path: &'a Path,
    meta: &'a MetaDir,
    remote: &'a [LtxFileInfo],
    local: Position,
    replica_txid: TxId,
    adopt: Option<LtxFileInfo>,
    options: &'a PrepareOptions,
    diverged: &'a dyn Fn(DivergenceKind) -> Divergence,
}

impl Behind<'_> {
    /// The replica's file L is the local one: catch up if the local database is exactly at
    /// L.
    async fn catch_up_if_at(&self) -> Result<Prepared, StartupError> {
        let proved = {
            let (db, local) = (self.db_path.to_path_buf(), self.local);
            blocking(move || Ok(proved_at(&db, local))).await?
        };
        if proved {
            return self.catch_up().await;
        }
        match compare_with_replica(
            self.client,
            self.db_path,
            self.remote,
            RestoreTarget::TxId(self.local.txid),
            LocalState::Current,
            self.options,
        )
        .await?
        {
            Comparison::Equal => self.catch_up().await,
            Comparison::Different(d) | Comparison::Unavailable(d) => self.not_at_position(d).await,
        }
    }

    /// The local database is not the replica's state at L (`detail` says how). If it is the
    /// replica's latest state — a catch-up or `sqlite-rest restore` swapped it in and stopped
    /// before the position was reset — adopt the replica's position; else the local
    /// database has changes of its own: diverged.
    async fn not_at_position(&self, detail: String) -> Result<Prepared, StartupError> {
        let adoption = begin_adoption(self.db_path, self.adopt).await?;
        let latest = compare_with_replica(
            self.client,
            self.db_path,
            self.remote,
            RestoreTarget::Latest,
            LocalState::Current,
            self.options,
        )
        .await?;
        if latest != Comparison::Equal {
            return Err((self.diverged)(DivergenceKind::LocalChangesAfter {
                local: self.local.txid,
                replica: self.replica_txid,
                detail,
            })
            .into());
        }
        tracing::info!(db = %self.db_path.display(), local_txid = %self.local.txid, replica_txid = %self.replica_txid, "the local database already holds the replica's latest state; adopting its position");
        reset_meta(self.meta).await?;
        Ok(Prepared {
            action: StartAction::Adopted {
                txid: self.replica_txid,
            },
            position: Position::ZERO,
            replica_txid: self.replica_txid,
            adopt: adoption,
        })
    }

    /// Replaces the local database (known to be an earlier state of the replica's history)
    /// with the replica's latest state.
    async fn catch_up(&self) -> Result<Prepared, StartupError> {
        let db_path = self.db_path;
        tracing::info!(db = %db_path.display(), local_txid = %self.local.txid, replica_txid = %self.replica_txid, "the local database is behind the replica; catching up");
        let staged = with_suffix(db_path, ".catch-up");
        {
            let staged = staged.clone();
            blocking(move || Ok(restore::prepare_output(&staged, true)?)).await?;
        }
        let txid = restore_latest(self.client, db_path, &staged, self.options).await?;
        // Swapped in before the position is reset: a stop in between leaves the replica's
        // latest state with the old position, which the next start adopts
        // (`not_at_position`).
        let (db, meta) = (db_path.to_path_buf(), self.meta.clone());
        blocking(move || {
            // The WAL goes before the new file is renamed into place (an old WAL must never
            // be applied to it); its frames are copied into the database file first, so a
            // stop in between leaves the file at the verified state L, which the next start
            // catches up again.
            checkpoint_into_file(&db)?;
            for p in &sidecars(&db)[1..] {
                remove_if_exists(p).map_err(io_error(p))?;
            }
            std::fs::rename(&staged, &db).map_err(io_error(&db))?;
            fsync_parent(&db).map_err(io_error(&db))?;
            meta.reset().map_err(io_error(meta.root()))
        })
        .await?;
        Ok(Prepared {
            action: StartAction::CaughtUp {
                from: self.local.txid,
                to: txid,
            },
            position: Position::ZERO,
            replica_txid: self.replica_txid,
            adopt: begin_adoption(db_path, self.adopt).await?,
        })
    }
}

/// Starts adopting the replica's newest L0 file `file` (if there is one to adopt) for the
/// database as it is now (see [`crate::adoption`]).
async fn begin_adoption(
    db_path: &Path,
    file: Option<LtxFileInfo>,
) -> Result<Option<Adoption>, StartupError> {
    let Some(file) = file else {
        return Ok(None);
    };
    let db = db_path.to_path_buf();
    blocking(move || Adoption::begin(&db, file).map(Some).map_err(io_error(&db))).await
}

/// Copies every frame of the WAL of the database at `db` into the database file and
/// truncates the WAL (blocking), so the file alone holds the database's state. Fails if
/// another connection keeps it from completing.
fn checkpoint_into_file(db: &Path) -> Result<(), StartupError> {
    let failed = |what: String| StartupError::Io {
        path: db.display().to_string(),
        source: std::io::Error::other(format!(
            "copying the WAL into the database file before replacing it: {what}"
        )),
    };
    let sqlite = |e: rusqlite::Error| failed(e.to_string());
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sqlite)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(sqlite)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Ok(());
    }
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .map_err(sqlite)?;
    if busy != 0 {
        return Err(failed(
            "another process is using the database (a read transaction)".into(),
        ));
    }
    conn.close().map_err(|(_, e)| sqlite(e))
}

/// Compares the local L0 file `ours` with the replica's L0 file `info`, page by page (see
/// the module docs): `None` if there is no local file. When `info` is a merged file that
/// ends where `ours` does and starts before it, `ours` must be its tail ([`tail_of`]).
async fn same_l0(
    client: &Arc<dyn ReplicaClient>,
    meta: &MetaDir,
    info: LtxFileInfo,
    fetch: FetchOptions,
    ours: FileName,
) -> Result<Option<bool>, StartupError> {
    let merged = info.name != ours;
    let path = meta.path(Level::L0, ours);
    let ours = blocking(move || match std::fs::File::open(&path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(&path)(e)),
    })
    .await?;
    let Some(ours) = ours else {
        return Ok(None);
    };
    let Some(theirs) = open_inputs(
        client,
        &Input::remote(&[info]),
        fetch.for_comparison(),
        Arc::new(FetchProgress::default()),
    )
    .pop() else {
        return Err(StartupError::Task(
            "no reader for the replica's file".into(),
        ));
    };
    blocking(move || {
        let same = if merged {
            tail_of(ours, theirs)
        } else {
            same_ltx(ours, theirs)
        };
        same.map(Some)
            .map_err(|e| StartupError::Compare(format!("L0 file {}: {e}", info.name)))
    })
    .await
}

/// True if two LTX files hold the same history: equal headers (but for the WAL range and
/// salts when either is a copy adopted at start-up) and the same pages. Both are read page
/// by page, and verified to their end when equal.
pub(crate) fn same_ltx(ours: impl Read, theirs: impl Read) -> ltx::Result<bool> {
    let mut ours = Decoder::new(ours)?;
    let mut theirs = Decoder::new(theirs)?;
    // What `Replicator::start`'s adoption writes: the start of a WAL, no WAL bytes.
    let adopted =
        |h: &Header| h.wal_offset == crate::wal::WAL_HEADER_SIZE as i64 && h.wal_size == 0;
    let loose = adopted(ours.header()) || adopted(theirs.header());
    let history = |h: &Header| {
        if loose {
            Header {
                wal_offset: 0,
                wal_size: 0,
                wal_salt1: 0,
                wal_salt2: 0,
                ..*h
            }
        } else {
            *h
        }
    };
    if history(ours.header()) != history(theirs.header()) {
        return Ok(false);
    }
    let page_size = ours.header().page_size as usize;
    let (mut a, mut b) = (vec![0u8; page_size], vec![0u8; page_size]);
    loop {
        let (pa, pb) = (ours.next_page(&mut a)?, theirs.next_page(&mut b)?);
        if pa != pb {
            return Ok(false);
        }
        if pa.is_none() {
            return Ok(true);
        }
        if a != b {
            return Ok(false);
        }
    }
}

/// True if `ours` (an L0 file) is the tail of `theirs` (a merged L0 file of several TXIDs
/// ending at the same one): equal headers but for the first TXID and the pre-apply checksum
/// (a merged file takes both from its first input; WAL range and salts are those of its last
/// input, ours), and every page of ours in theirs with the same bytes (a merged file holds
/// the newest image of every page, and ours is the newest). Both are verified to their end
/// when true.
fn tail_of(ours: impl Read, theirs: impl Read) -> ltx::Result<bool> {
    let mut ours = Decoder::new(ours)?;
    let mut theirs = Decoder::new(theirs)?;
    let loose = |h: &Header| Header {
        min_txid: TxId::ZERO,
        pre_apply_checksum: ltx::Checksum::ZERO,
        ..*h
    };
    if loose(ours.header()) != loose(theirs.header())
        || theirs.header().min_txid >= ours.header().min_txid
    {
        return Ok(false);
    }
    let page_size = ours.header().page_size as usize;
    let (mut a, mut b) = (vec![0u8; page_size], vec![0u8; page_size]);
    while let Some(pa) = ours.next_page(&mut a)? {
        loop {
            match theirs.next_page(&mut b)? {
                None => return Ok(false),
                Some(pb) if pb < pa => continue,
                Some(pb) if pb == pa && a == b => break,
                Some(_) => return Ok(false),
            }
        }
    }
    while theirs.next_page(&mut b)?.is_some() {}
    ours.finish()?;
    theirs.finish()?;
    Ok(true)
}

/// Restores the newest state of the replica's Litestream 0.3 backup into `db_path`.
async fn restore_v03_latest(
    client: &Arc<dyn ReplicaClient>,
    db_path: &Path,
    contents: &ReplicaContents,
    options: &PrepareOptions,
) -> Result<RestoredV03, StartupError> {
    let plan = v03::plan(&contents.v03, V03Target::Latest).map_err(RestoreError::V03Plan)?;
    tracing::info!(
        db = %db_path.display(),
        replica = %client.describe(),
        generation = %plan.snapshot.generation,
        snapshot_index = plan.snapshot.index,
        last_index = plan.last_index(),
        files = plan.files(),
        bytes = plan.bytes(),
        "restore from a Litestream 0.3 backup started"
    );
    let mut ropts = RestoreOptions::new(db_path);
    ropts.integrity_check = options.integrity_check;
    ropts.fetch = options.fetch;
    ropts.progress = options.progress.clone();
    let restored = v03::restore(client, &plan, &ropts).await?;
    tracing::info!(
        db = %db_path.display(),
        generation = %restored.generation,
        index = restored.index,
        pages = restored.pages,
        bytes_read = restored.bytes_read,
        duration_ms = restored.duration.as_millis() as u64,
        integrity_check = options.integrity_check.as_str(),
        "restore from a Litestream 0.3 backup finished"
    );
    Ok(restored)
}

async fn restore_latest(
    client: &Arc<dyn ReplicaClient>,
    db_path: &Path,
    output: &Path,
    options: &PrepareOptions,
) -> Result<TxId, StartupError> {
    let plan = restore::plan(client.as_ref(), RestoreTarget::Latest, false).await?;
    tracing::info!(
        db = %db_path.display(),
        replica = %client.describe(),
        txid = %plan.max_txid(),
        files = plan.files.len(),
        bytes = plan.files.iter().map(|f| f.size).sum::<u64>(),
        "restore started"
    );
    let mut ropts = RestoreOptions::new(output);
    ropts.integrity_check = options.integrity_check;
    ropts.fetch = options.fetch;
    ropts.progress = options.progress.clone();
    let restored = restore::restore(client, &plan, &ropts).await?;
    tracing::info!(
        db = %db_path.display(),
        txid = %restored.txid,
        pages = restored.commit,
        bytes_read = restored.bytes_read,
        duration_ms = restored.duration.as_millis() as u64,
        integrity_check = options.integrity_check.as_str(),
        "restore finished"
    );
    Ok(restored.txid)
}

/// True if the database's WAL proves it is exactly at `pos`: same salts, and no committed
/// frame after the position's WAL end.
pub(crate) fn proved_at(db_path: &Path, pos: Position) -> bool {
    let Some((end, salt)) = pos.wal_end() else {
        return false;
    };
    let Ok(wal) = std::fs::File::open(crate::db_attachment::wal_path(db_path)) else {
        return false;
    };
    let Ok(header) = WalHeader::read(&wal) else {
        return false;
    };
    if header.salt != salt {
        return false;
    }
    let reader = if end == crate::wal::WAL_HEADER_SIZE {
        WalReader::open(&wal)
    } else {
        WalReader::resume(&wal, end, salt)
    };
    match reader.and_then(|mut r| r.read_committed(None)) {
        Ok(scan) => scan.is_empty(),
        Err(_) => false,
    }
}

/// The result of comparing a local database with a replica state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Comparison {
    Equal,
    Different(String),
    /// The replica cannot restore that state (e.g. the TXID was compacted away).
    Unavailable(String),
}

/// Which state of the local database [`compare_with_replica`] reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LocalState {
    /// As SQLite would read it now: the database file and every committed WAL frame.
    Current,
    /// At the replication position: the database file and the WAL only up to the position's
    /// end (the commits after it are not replicated yet). A WAL restarted since leaves the
    /// database file alone (a restart needs every frame copied into it first, and a file
    /// that took commits after the position differs, as it must: they cannot be told
    /// apart). A WAL with the position's salts that no longer reaches its end cannot show
    /// that state: then as [`LocalState::Current`].
    At(Position),
}

impl LocalState {
    fn image(self, db_path: &Path) -> Result<DbImage, SnapshotError> {
        let LocalState::At(pos) = self else {
            return DbImage::current(db_path);
        };
        let (Some(h), Some((end, salt))) = (pos.header, pos.wal_end()) else {
            return DbImage::current(db_path);
        };
        match DbImage::at(db_path, h.page_size, end, salt, h.commit) {
            Err(SnapshotError::WalShort { .. }) => DbImage::current(db_path),
            image => image,
        }
    }
}

/// Compares the local database (`local` says which state of it) with the replica's state
/// at `target`, page by page, streaming the replica's files.
pub(crate) async fn compare_with_replica(
    client: &Arc<dyn ReplicaClient>,
    db_path: &Path,
    remote: &[LtxFileInfo],
    target: RestoreTarget,
    local: LocalState,
    options: &PrepareOptions,
) -> Result<Comparison, StartupError> {
    let plan = match plan_restore(remote, target) {
        Ok(p) => p,
        Err(e @ (PlanError::NotAvailable | PlanError::NonContiguous { .. })) => {
            return Ok(Comparison::Unavailable(format!(
                "the replica cannot rebuild that state to compare: {e}"
            )));
        }
        Err(e) => return Err(RestoreError::from(e).into()),
    };
    let inputs = Input::remote(&plan.files);
    let readers = open_inputs(
        client,
        &inputs,
        options.fetch.for_comparison(),
        Arc::new(FetchProgress::default()),
    );
    let txid = plan.max_txid();
    let db_path = db_path.to_path_buf();
    blocking(move || {
        let image = local.image(&db_path)?;
        let compare = |e: ltx::Error| StartupError::Compare(e.to_string());
        let decoders = readers
            .into_iter()
            .map(Decoder::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(compare)?;
        let compactor = Compactor::new(decoders).map_err(compare)?;
        let header = *compactor.output_header();
        if header.page_size != image.page_size() {
            return Ok(Comparison::Different(format!(
                "page size {} locally, {} on the replica",
                image.page_size(),
                header.page_size
            )));
        }
        if header.commit != image.commit() {
            return Ok(Comparison::Different(format!(
                "{} pages locally, {} on the replica at TXID {txid}",
                image.commit(),
                header.commit
            )));
        }
        let mut sink = CompareSink {
            image: &image,
            buf: vec![0u8; image.page_size() as usize],
            first_difference: None,
            next: 1,
            lock: ltx::lock_page(image.page_size()),
        };
        match compactor.merge(&mut sink) {
            Ok(_) => {}
            Err(_) if sink.first_difference.is_some() => {}
            Err(e) => return Err(compare(e)),
        }
        Ok(match sink.first_difference {
            Some(pgno) => Comparison::Different(format!(
                "page {pgno} differs from the replica's state at TXID {txid}"
            )),
            None => Comparison::Equal,
        })
    })
    .await
}

/// Compares merged pages with a local image; stops at the first difference.
struct CompareSink<'a> {
    image: &'a DbImage,
    buf: Vec<u8>,
    first_difference: Option<u32>,
    next: u32,
    lock: u32,
}

impl PageSink for CompareSink<'_> {
    fn write_page(&mut self, pgno: u32, data: &[u8]) -> ltx::Result<()> {
        if self.next == self.lock {
            self.next += 1;
        }
        if pgno != self.next {
            // A page the replica's state lacks (only the lock page may be missing).
            self.first_difference = Some(self.next);
            return Err(stop());
        }
        self.next += 1;
        self.image
            .read_page(pgno, &mut self.buf)
            .map_err(|e| ltx::Error::Io {
                section: ltx::Section::PageData,
                source: std::io::Error::other(e.to_string()),
            })?;
        if self.buf != data {
            self.first_difference = Some(pgno);
            return Err(stop());
        }
        Ok(())
    }
}

fn stop() -> ltx::Error {
    ltx::Error::Io {
        section: ltx::Section::PageData,
        source: std::io::Error::other("pages differ"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An L0 file of TXID 7 holding `pages` (page number, fill byte), read from `wal_offset`
    /// (four frames; none from offset 32: a copy adopted at start-up).
    fn l0(pages: &[(u32, u8)], timestamp: i64, wal_offset: i64, salt: u32) -> Vec<u8> {
        let mut header = Header::new(512, 3, TxId(7), TxId(7), timestamp);
        header.wal_offset = wal_offset;
        header.wal_size = if wal_offset == 32 { 0 } else { 4 * 536 };
        header.wal_salt1 = salt;
        header.wal_salt2 = salt ^ 0xffff;
        let mut enc = ltx::Encoder::new(Vec::new(), header).unwrap();
        for &(pgno, fill) in pages {
            enc.write_page(pgno, &[fill; 512]).unwrap();
        }
        enc.finish().unwrap().writer
    }

    #[test]
    fn l0_files_are_the_same_history_only_if_read_from_one_wal_or_adopted() {
        let pages = [(1, 1), (3, 3)];
        let ours = l0(&pages, 1_000, 2176, 5);
        assert!(same_ltx(&ours[..], &ours[..]).unwrap());
        // The same file re-headed to the start of another WAL (what adopting the replica's
        // file does), on either side.
        let adopted = l0(&pages, 1_000, 32, 9);
        assert!(same_ltx(&ours[..], &adopted[..]).unwrap());
        assert!(same_ltx(&adopted[..], &ours[..]).unwrap());
        // Read from another WAL, or from elsewhere in it: another writer's file, even with
        // the same timestamp and pages.
        assert!(!same_ltx(&ours[..], &l0(&pages, 1_000, 2176, 9)[..]).unwrap());
        assert!(!same_ltx(&ours[..], &l0(&pages, 1_000, 4328, 5)[..]).unwrap());
        // Another timestamp, page, page number or page count is another history.
        for ours in [&ours, &adopted] {
            assert!(!same_ltx(&ours[..], &l0(&pages, 1_001, 32, 5)[..]).unwrap());
            assert!(!same_ltx(&ours[..], &l0(&[(1, 1), (3, 4)], 1_000, 32, 5)[..]).unwrap());
            assert!(!same_ltx(&ours[..], &l0(&[(1, 1), (2, 3)], 1_000, 32, 5)[..]).unwrap());
            assert!(!same_ltx(&ours[..], &l0(&[(1, 1)], 1_000, 32, 5)[..]).unwrap());
        }
        // A damaged file is an error, not a difference.
        let mut damaged = ours.clone();
        let last = damaged.len() - 20;
        damaged[last] ^= 1;
        assert!(same_ltx(&ours[..], &damaged[..]).is_err());
    }
}
