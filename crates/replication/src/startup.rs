//! Before the database is served: restore it if it is missing, and check that a local
//! database and the replica share one history (lineage). Neither side is ever overwritten
//! silently.
//!
//! The local position is the newest L0 file in the metadata directory (spec §1.5); the
//! replica's history is its listing. [`prepare`] decides:
//!
//! | Local database | Replica | Decision |
//! |---|---|---|
//! | missing | empty | new database |
//! | missing | has data | restore the latest state (integrity-checked), adopt its position |
//! | missing | a Litestream 0.3 backup newer than any LTX file | restore it (integrity-checked); replicate in LTX from the next TXID, under the same path |
//! | exists | empty, or only a Litestream 0.3 backup | start a new replica from this database (local position reset; a 0.3 backup is left untouched) |
//! | exists, no position | has data | compare contents page by page: equal → adopt the replica's position; different → **diverged** |
//! | position L | has L0 file L | byte-compare the two files: different → **diverged**; L is the newest → continue; replica ahead → catch up if the local database is exactly at L (proved by its WAL, or by comparing contents with the replica's state at L), else **diverged** |
//! | position L | ends below L | continue (upload the missing files) if every local L0 file after the replica's end is still there, else **diverged** (the replica went backwards) |
//! | position L | no file L, ends above L | compare contents with the replica's state at L: equal → catch up; else **diverged** |
//!
//! Catching up restores the replica's latest state next to the database and swaps it in.
//! After a restore or catch-up the local metadata is reset and the replica's newest L0 file
//! is adopted as the position, re-headed to the new WAL (see
//! [`crate::replicator::Replicator::start`]), so replication continues incrementally with no
//! full snapshot upload.
//!
//! What the replica path holds is checked first ([`crate::layout::inspect`]): anything that
//! is neither LTX files nor a Litestream 0.3 backup stops start-up, naming what was found.
//! A Litestream 0.3 backup is only ever read, never written: with a local database present
//! it plays no part (as for Litestream 0.5, which replicates the local database and leaves
//! the old backup beside the LTX files; `sqlite-rest restore` reads whichever is newer).
//!
//! A divergence is a [`Divergence`] whose message says what differs and how the operator
//! chooses a side: `sqlite-rest restore --force` (keep the replica's), or a new replica path
//! (keep the local one).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ltx::{Compactor, Decoder, FileName, PageSink, TxId};

use crate::client::{ClientError, ReadRange, ReplicaClient};
use crate::db::with_suffix;
use crate::fetch::{FetchOptions, FetchProgress, Input, open_inputs};
use crate::layout::{self, Format, ReplicaContents};
use crate::level::{Level, LtxFileInfo};
use crate::meta::{MetaDir, fsync_parent, remove_if_exists};
use crate::plan::{PlanError, RestoreTarget, plan_restore};
use crate::restore::{self, IntegrityCheck, ProgressFn, RestoreError, RestoreOptions, sidecars};
use crate::snapshot::{DbImage, SnapshotError};
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
    /// attached.
    pub adopt: Option<LtxFileInfo>,
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
}

/// The local database and the replica do not share one history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    pub db: PathBuf,
    pub replica: String,
    pub meta: PathBuf,
    pub kind: DivergenceKind,
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
        }
        write!(
            f,
            ". Nothing was changed. Choose a side: to keep the replica's version, run \
             `sqlite-rest restore --force` for this database (it replaces the local database \
             with the replica's latest state); to keep the local version, point the replication \
             config at a new, empty replica path (the old replica is left untouched)"
        )
    }
}

/// Errors of [`prepare`].
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Diverged(#[from] Divergence),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error(
        "reading the local replication position: {0} (remove the metadata directory {1} to start over from the replica's state)"
    )]
    LocalPosition(SyncError, PathBuf),
    #[error("{0}")]
    Image(#[from] SnapshotError),
    #[error("comparing the local database with the replica: {0}")]
    Compare(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
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
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            integrity_check: IntegrityCheck::Full,
            fetch: FetchOptions::default(),
            progress: None,
            auto_recover: false,
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
    let newest_l0 = remote
        .iter()
        .filter(|f| f.level == Level::L0)
        .max_by_key(|f| f.name.max)
        .copied();
    let adopt = newest_l0.filter(|f| f.name.max == replica_txid && f.name.min == f.name.max);
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| StartupError::Io {
            path: path.clone(),
            source,
        }
    };
    let diverged = |kind| Divergence {
        db: db_path.to_path_buf(),
        replica: client.describe(),
        meta: meta.root().to_path_buf(),
        kind,
    };

    let db_exists = std::fs::metadata(db_path).is_ok_and(|m| m.len() > 0);
    if !db_exists {
        meta.reset().map_err(io(meta.root()))?;
        if contents.is_empty() {
            return Ok(Prepared {
                action: StartAction::NewDatabase,
                position: Position::ZERO,
                replica_txid,
                adopt: None,
            });
        }
        // Leftover sidecars of a database that no longer exists must not be applied to the
        // restored one.
        for p in &sidecars(db_path)[1..] {
            if p.exists() {
                tracing::warn!(path = %p.display(), "removing a leftover file of a missing database before restoring");
                std::fs::remove_file(p).map_err(io(p))?;
            }
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
            adopt,
        });
    }

    let local = match read_position(meta) {
        Ok(p) => p,
        Err(e) if options.auto_recover => {
            tracing::warn!(error = %e, meta = %meta.root().display(), "local replication state is unreadable; auto-recover resets it");
            meta.reset().map_err(io(meta.root()))?;
            Position::ZERO
        }
        Err(e) => return Err(StartupError::LocalPosition(e, meta.root().to_path_buf())),
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
            meta.reset().map_err(io(meta.root()))?;
        }
        return Ok(Prepared {
            action: StartAction::NewReplica,
            position: Position::ZERO,
            replica_txid,
            adopt: None,
        });
    }

    if local.txid == TxId::ZERO {
        return match compare_with_replica(client, db_path, &remote, RestoreTarget::Latest, options)
            .await?
        {
            Comparison::Equal => Ok(Prepared {
                action: StartAction::Adopted { txid: replica_txid },
                position: Position::ZERO,
                replica_txid,
                adopt,
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
    let l_name = FileName::new(l, l);
    let remote_has_l = remote
        .iter()
        .any(|f| f.level == Level::L0 && f.name == l_name);
    if remote_has_l {
        let theirs = client.read(Level::L0, l_name, ReadRange::Full).await?;
        let ours = meta.read(Level::L0, l_name).map_err(io(&meta.l0_path(l)))?;
        if theirs.as_ref() != ours.as_slice() {
            return Err(diverged(DivergenceKind::TxidDiffers { txid: l }).into());
        }
        if l >= replica_txid {
            return Ok(continued(local, replica_txid));
        }
        return catch_up_if_at(
            client,
            db_path,
            meta,
            &remote,
            local,
            replica_txid,
            adopt,
            options,
            &diverged,
        )
        .await;
    }
    if l > replica_txid {
        if let Some(n) = newest_l0
            && meta.exists(Level::L0, n.name)
        {
            let theirs = client.read(Level::L0, n.name, ReadRange::Full).await?;
            let ours = meta
                .read(Level::L0, n.name)
                .map_err(io(&meta.path(Level::L0, n.name)))?;
            if theirs.as_ref() != ours.as_slice() {
                return Err(diverged(DivergenceKind::TxidDiffers { txid: n.name.max }).into());
            }
        }
        let missing = (replica_txid.get() + 1..=l.get())
            .any(|t| !meta.exists(Level::L0, FileName::new(TxId(t), TxId(t))));
        if missing {
            return Err(diverged(DivergenceKind::ReplicaWentBack {
                local: l,
                replica: replica_txid,
            })
            .into());
        }
        return Ok(continued(local, replica_txid));
    }
    // The replica is at or beyond L but no longer has L's own file (compacted away).
    match compare_with_replica(client, db_path, &remote, RestoreTarget::TxId(l), options).await? {
        Comparison::Equal if l == replica_txid => Ok(continued(local, replica_txid)),
        Comparison::Equal => {
            catch_up(client, db_path, meta, local, replica_txid, adopt, options).await
        }
        Comparison::Different(detail) | Comparison::Unavailable(detail) => {
            Err(diverged(DivergenceKind::LocalChangesAfter {
                local: l,
                replica: replica_txid,
                detail,
            })
            .into())
        }
    }
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

/// The replica is ahead of the local position L (whose file both sides share): catch up if
/// the local database is exactly at L.
#[allow(clippy::too_many_arguments)]
async fn catch_up_if_at(
    client: &Arc<dyn ReplicaClient>,
    db_path: &Path,
    meta: &MetaDir,
    remote: &[LtxFileInfo],
    local: Position,
    replica_txid: TxId,
    adopt: Option<LtxFileInfo>,
    options: &PrepareOptions,
    diverged: &dyn Fn(DivergenceKind) -> Divergence,
) -> Result<Prepared, StartupError> {
    let detail = if proved_at(db_path, local) {
        None
    } else {
        match compare_with_replica(
            client,
            db_path,
            remote,
            RestoreTarget::TxId(local.txid),
            options,
        )
        .await?
        {
            Comparison::Equal => None,
            Comparison::Different(d) | Comparison::Unavailable(d) => Some(d),
        }
    };
    match detail {
        None => catch_up(client, db_path, meta, local, replica_txid, adopt, options).await,
        Some(detail) => Err(diverged(DivergenceKind::LocalChangesAfter {
            local: local.txid,
            replica: replica_txid,
            detail,
        })
        .into()),
    }
}

/// Replaces the local database (known to be an earlier state of the replica's history) with
/// the replica's latest state.
async fn catch_up(
    client: &Arc<dyn ReplicaClient>,
    db_path: &Path,
    meta: &MetaDir,
    local: Position,
    replica_txid: TxId,
    adopt: Option<LtxFileInfo>,
    options: &PrepareOptions,
) -> Result<Prepared, StartupError> {
    tracing::info!(db = %db_path.display(), local_txid = %local.txid, replica_txid = %replica_txid, "the local database is behind the replica; catching up");
    let staged = with_suffix(db_path, ".catch-up");
    restore::prepare_output(&staged, true)?;
    let txid = restore_latest(client, db_path, &staged, options).await?;
    let io = |p: &Path, source| StartupError::Io {
        path: p.display().to_string(),
        source,
    };
    for p in &sidecars(db_path)[1..] {
        remove_if_exists(p).map_err(|e| io(p, e))?;
    }
    std::fs::rename(&staged, db_path).map_err(|e| io(db_path, e))?;
    fsync_parent(db_path).map_err(|e| io(db_path, e))?;
    meta.reset().map_err(|e| io(meta.root(), e))?;
    Ok(Prepared {
        action: StartAction::CaughtUp {
            from: local.txid,
            to: txid,
        },
        position: Position::ZERO,
        replica_txid,
        adopt,
    })
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
pub fn proved_at(db_path: &Path, pos: Position) -> bool {
    let Some((end, salt)) = pos.wal_end() else {
        return false;
    };
    let Ok(wal) = std::fs::File::open(crate::db::wal_path(db_path)) else {
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
pub enum Comparison {
    Equal,
    Different(String),
    /// The replica cannot restore that state (e.g. the TXID was compacted away).
    Unavailable(String),
}

/// Compares the local database (database file + committed WAL frames) with the replica's
/// state at `target`, page by page, streaming the replica's files.
pub async fn compare_with_replica(
    client: &Arc<dyn ReplicaClient>,
    db_path: &Path,
    remote: &[LtxFileInfo],
    target: RestoreTarget,
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
    let image = DbImage::current(db_path)?;
    let inputs = Input::remote(&plan.files);
    let readers = open_inputs(
        client,
        &inputs,
        options.fetch,
        Arc::new(FetchProgress::default()),
    );
    let txid = plan.max_txid();
    let result = tokio::task::spawn_blocking(move || -> Result<Comparison, String> {
        let decoders = readers
            .into_iter()
            .map(Decoder::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let compactor = Compactor::new(decoders).map_err(|e| e.to_string())?;
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
            Err(e) => return Err(e.to_string()),
        }
        Ok(match sink.first_difference {
            Some(pgno) => Comparison::Different(format!(
                "page {pgno} differs from the replica's state at TXID {txid}"
            )),
            None => Comparison::Equal,
        })
    })
    .await
    .map_err(|e| StartupError::Compare(e.to_string()))?;
    result.map_err(StartupError::Compare)
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
