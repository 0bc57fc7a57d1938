//! Turning committed WAL frames into L0 LTX files, as Litestream does, so a replica we write
//! is one Litestream could have written and either can take over from the other; and
//! checkpointing the WAL without ever losing a commit on the way.
//!
//! [`Syncer`] owns the database attachment ([`Database`]), the local metadata directory
//! ([`MetaDir`]) and the sync state. One [`Syncer::sync`]:
//! 1. *verifies* that the WAL still continues where the newest local L0 file ended
//!    (Litestream's decision table): incremental from that offset, incremental from offset
//!    32 after an expected truncation or a WAL restart, or a *full* L0 file (every page) when
//!    the WAL was reset, truncated or overwritten behind our back, or when the
//!    [`crate::meta::NEXT_L0_FULL`] mark asks for one;
//! 2. reads the committed frames (up to `max-sync-wal-bytes` per file) and writes the next
//!    L0 file (TXID + 1): WAL pages, plus growth pages from the database file, pages beyond
//!    the commit dropped, the lock page skipped; `<name>.tmp`, fsync, rename, fsync dir;
//! 3. checkpoints when [`crate::checkpoint::Policy`] says so.
//!
//! # Checkpoints never drop a commit that no L0 file holds
//! A WAL frame disappears only when the WAL restarts (or is truncated), and SQLite restarts it
//! only once every frame has been copied into the database file (*backfilled*) and no read
//! transaction holds a read mark in it. A checkpoint — anyone's, in any process, in any mode —
//! copies frames only up to the oldest snapshot of a running read transaction, and a read
//! transaction that began with the WAL fully backfilled (it then holds no read mark) stops
//! every copy. So the invariant, which holds whatever other processes write or checkpoint:
//!
//! > At every instant we hold (a) a read transaction with a read mark in the WAL, or (b) a
//! > read transaction without one, every frame of which is in an L0 file, or (c) the write
//! > barrier, with every committed frame in an L0 file.
//!
//! Under (a) nothing restarts the WAL; under (b) nothing after what it sees can be
//! backfilled, so a restart drops only frames it sees, which are in L0 files; under (c)
//! nobody writes. How each step keeps it:
//! - the reader connection's read transaction is released only inside
//!   [`Database::checkpoint`] and taken again right after; outside our checkpoints its
//!   snapshot ends at or before the newest L0 file (it is taken again under the barrier, or
//!   the pin stays until a sync has caught up);
//! - a PASSIVE checkpoint first copies most of the WAL while writers keep going. That early
//!   copy may take commits no L0 file holds yet into the database file, so the *pin* (a read
//!   transaction on a connection of its own, taken after the reader's and before the reader
//!   lets go) holds the WAL from then until the barrier's sync has those commits: taken when
//!   frames were still to be copied, it holds a read mark; taken when none were, it sees only
//!   what the reader's snapshot saw. Under the barrier, once that sync has every commit, the
//!   pin is taken again (it then sees exactly what L0 files hold, so it does not hold back
//!   the copy) before the reader lets go, the checkpoint proper copies the rest, and the pin
//!   goes once the reader holds its read transaction again (or stays in its place); if
//!   anything fails before that sync, the pin stays until a later sync has read the WAL to
//!   its end;
//! - a TRUNCATE checkpoint needs every reader gone, ours too, so for it the invariant is
//!   given up on purpose: commits landing between the sync before it and the truncation are
//!   copied into the database file and cut out of the WAL. It is made good by a full
//!   "checkpoint boundary" L0 file, and the [`crate::meta::NEXT_L0_FULL`] mark, written
//!   durably before the TRUNCATE and removed only once a full file exists, makes any failure
//!   or crash in between end in that full file too.
//!
//! Nothing of ours holds the WAL while replication is stopped, or between attaching and the
//! first sync. The verify step then sees what other processes did: a WAL restarted after
//! commits we never read still holds the tail of its old generation after the position (or
//! has overwritten the position's last frame), and either way the next file is a full one;
//! and a header whose salt-1 is not the position's plus one (SQLite adds one per restart)
//! means more than one restart, whose first generation may be overwritten whole: full too.
//!
//! # Snapshots see the pages of their TXID
//! The database file changes only through checkpoints: ours hold the write half of the
//! [`CheckpointLock`], and other processes' can copy only frames up to our read
//! transactions, which, while the lock is free, never reach past the position. The syncer publishes each position as soon as its file exists,
//! which is before a checkpoint releases the lock. So a snapshot that holds the read half sees
//! a database file at or behind the published position, and overlays the WAL up to it: the
//! image of exactly that TXID — except when the database file may be ahead (a checkpoint
//! failed after its early copy, while the pin stays; a full L0 file is pending after a
//! TRUNCATE): then [`Published::file_ahead`] says so, and snapshots wait for the next sync.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

use ltx::{Encoder, FileName, Header, TxId};
use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::checkpoint::{Due, Policy, WalAfterSync};
use crate::db_attachment::{CheckpointMode, CheckpointResult, Database, DbError};
use crate::db_metrics::DbMetrics;
use crate::level::Level;
use crate::litestream_config::DbConfig;
use crate::meta::{MetaDir, MetaWriteError};
use crate::wal::{self, Salt, WAL_HEADER_SIZE, WalError, WalHeader, WalReader, WalScan};

/// Points of a sync at which a test hook ([`SyncSettings::hook`]) is called.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPoint {
    /// A checkpoint holds the checkpoint lock and has done nothing yet (the sync before it,
    /// if any, is finished).
    CheckpointStart(CheckpointMode),
    /// A checkpoint is about to take the write barrier.
    BeforeBarrier(CheckpointMode),
    /// The checkpoint proper (`PRAGMA wal_checkpoint`, under the barrier for PASSIVE) is
    /// about to run.
    BeforeCheckpoint(CheckpointMode),
    /// `PRAGMA wal_checkpoint` returned (the barrier released); what follows it (the
    /// `_litestream_seq` bump, the sync after it) has not run yet.
    AfterCheckpoint(CheckpointMode),
    /// [`Syncer::sync`] is about to return; the checkpoint lock is free.
    SyncDone,
}

/// A callback at the [`SyncPoint`]s, for tests that must put another writer (or a fault) in
/// a precise gap. Only code can set it (never the configuration); `None` in production.
#[doc(hidden)]
#[derive(Clone)]
pub struct SyncHook(pub Arc<dyn Fn(SyncPoint) + Send + Sync>);

impl std::fmt::Debug for SyncHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncHook")
    }
}

/// The sync and checkpoint settings of one `dbs[]` entry.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// Bytes of WAL per L0 file at most (`max-sync-wal-bytes`; `None` = no limit).
    pub max_sync_wal_bytes: Option<u64>,
    /// When to checkpoint, and in which mode.
    pub checkpoints: Policy,
    #[doc(hidden)]
    pub hook: Option<SyncHook>,
}

impl SyncSettings {
    pub fn from_config(db: &DbConfig) -> SyncSettings {
        SyncSettings {
            max_sync_wal_bytes: db.max_sync_wal_bytes,
            checkpoints: Policy::from_config(db),
            hook: None,
        }
    }
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            max_sync_wal_bytes: Some(crate::litestream_config::defaults::MAX_SYNC_WAL_BYTES),
            checkpoints: Policy::default(),
            hook: None,
        }
    }
}

/// The replication position of the database: the newest local L0 file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub txid: TxId,
    /// Header of the L0 file holding `txid`; `None` when the TXID is known but there is no
    /// local L0 file for it (the next file is then a full one).
    pub header: Option<Header>,
}

impl Position {
    pub const ZERO: Position = Position {
        txid: TxId::ZERO,
        header: None,
    };

    /// The WAL offset right after what `txid` covers, and its salts.
    pub fn wal_end(&self) -> Option<(u64, Salt)> {
        self.header
            .map(|h| (h.wal_offset as u64 + h.wal_size as u64, header_salt(&h)))
    }
}

/// The WAL salts an LTX header records.
fn header_salt(h: &Header) -> Salt {
    Salt {
        salt1: h.wal_salt1,
        salt2: h.wal_salt2,
    }
}

/// The checkpoint lock, and the position it vouches for; shared by the syncer and snapshots.
///
/// Our checkpoints hold the write half; a snapshot holds the read half
/// ([`CheckpointLock::hold`]) and reads [`CheckpointLock::published`] under it. See the module
/// docs for why the database file is then at or behind the published position.
#[derive(Debug, Default)]
pub struct CheckpointLock {
    lock: RwLock<()>,
    published: Mutex<Published>,
}

/// What the syncer last published ([`CheckpointLock::published`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The newest local L0 file.
    pub position: Position,
    /// The database file may hold pages newer than `position` (a checkpoint failed after
    /// its early copy and the pin still holds what it copied, or a full L0 file is pending
    /// after a TRUNCATE): no snapshot may be taken from it until the next sync.
    pub file_ahead: bool,
}

impl Default for Published {
    fn default() -> Self {
        Published {
            position: Position::ZERO,
            file_ahead: false,
        }
    }
}

impl CheckpointLock {
    /// Keeps our checkpoints out while the guard lives (waits for a running one).
    pub fn hold(&self) -> RwLockReadGuard<'_, ()> {
        self.lock.read()
    }

    /// What the syncer last published.
    pub fn published(&self) -> Published {
        *self.published.lock()
    }

    fn try_checkpoint(&self) -> Option<RwLockWriteGuard<'_, ()>> {
        self.lock.try_write()
    }

    fn publish(&self, published: Published) {
        *self.published.lock() = published;
    }
}

/// Errors from a sync or checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{path}: {source}")]
    Wal { path: String, source: WalError },
    #[error("local L0 file {path}: {source}")]
    LocalLtx { path: String, source: ltx::Error },
    #[error("local L0 file {path}: {source}")]
    LocalIo {
        path: String,
        source: std::io::Error,
    },
    #[error("writing L0 file {path}: {source}")]
    Encode { path: String, source: ltx::Error },
    #[error("prev WAL offset is less than the header size: {0}")]
    PrevOffset(i64),
    #[error("WAL was restarted while it was being read; retrying")]
    WalRestarted,
    #[error("TXID overflow")]
    TxIdOverflow,
    #[error("marking that the next L0 file must be a full one in {path}: {source}")]
    Mark {
        path: String,
        source: std::io::Error,
    },
}

impl SyncError {
    pub fn is_disk_full(&self) -> bool {
        match self {
            SyncError::Db(e) => e.is_disk_full(),
            SyncError::LocalIo { source, .. } => source.raw_os_error() == Some(28),
            SyncError::Encode { source, .. } => source.to_string().contains("No space left"),
            _ => false,
        }
    }
}

/// One L0 file written by a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L0File {
    pub header: Header,
    pub size: u64,
    /// True for a full file (every page), with the reason.
    pub full: Option<&'static str>,
}

impl L0File {
    pub fn name(&self) -> FileName {
        self.header.file_name()
    }

    pub fn txid(&self) -> TxId {
        self.header.max_txid
    }
}

/// What one [`Syncer::sync`] did.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// L0 files written, in TXID order.
    pub files: Vec<L0File>,
    /// WAL bytes read into L0 files.
    pub wal_bytes: u64,
    /// Checkpoints run (mode and result).
    pub checkpoints: Vec<(CheckpointMode, CheckpointResult)>,
    /// Where the sync's time went (debug logs, the benchmark's breakdown).
    pub timings: SyncTimings,
}

/// Where one [`Syncer::sync`]'s time went.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncTimings {
    /// Reading the WAL and encoding L0 files (up to their last byte in the page cache).
    pub encode: std::time::Duration,
    /// Making the L0 files durable: the file's fsync, the rename and the directory's fsync.
    pub fsync: std::time::Duration,
    /// Checkpoints, including the syncs they run (their encode and fsync times count here
    /// too).
    pub checkpoint: std::time::Duration,
    /// From the start of the sync to [`Syncer::sync_publishing`]'s first call (the files then
    /// hold every commit made before the sync started), if it was called.
    pub published: Option<std::time::Duration>,
}

/// Called by [`Syncer::sync_publishing`] with the newest local TXID.
struct Publish(Box<dyn FnMut(TxId) + Send>);

impl std::fmt::Debug for Publish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Publish")
    }
}

/// Where the previous sync left off and what it decided (Litestream's `syncState`).
#[derive(Debug, Clone, Copy, Default)]
struct SyncState {
    /// Logical end of the synced WAL (WALOffset + WALSize of the newest L0), 0 if unknown.
    last_synced_wal_offset: u64,
    /// The last sync ended exactly at the end of the WAL file.
    synced_to_wal_end: bool,
    /// Something was synced since the last checkpoint (time-based checkpoints need it).
    synced_since_checkpoint: bool,
    /// A PASSIVE attempt before a TRUNCATE failed (go straight to TRUNCATE next time).
    truncate_passive_failed: bool,
}

/// Where to read from, and whether the next file must be full (the verify step).
#[derive(Debug, Clone, Copy)]
struct SyncInfo {
    offset: u64,
    salt: Salt,
    prev_commit: u32,
    full: Option<&'static str>,
    clear_synced_to_wal_end: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct OnceResult {
    file_written: bool,
    limited: bool,
    synced_to_wal_end: bool,
    new_wal_size: u64,
}

/// The last WAL frame the newest L0 file covers, kept so verifying the next sync does not
/// have to read the L0 file.
#[derive(Debug, Clone)]
struct LastFrame {
    txid: TxId,
    offset: u64,
    pgno: u32,
    data: Vec<u8>,
}

/// Syncs one database into its metadata directory. See the module docs.
#[derive(Debug)]
pub struct Syncer {
    db: Database,
    meta: MetaDir,
    settings: SyncSettings,
    state: SyncState,
    pos: Position,
    last_frame: Option<LastFrame>,
    lock: Arc<CheckpointLock>,
    metrics: Option<DbMetrics>,
    report: SyncReport,
    last_checkpoint: Option<std::time::Instant>,
    /// The pin is held (see the module docs).
    pinned: bool,
    /// A threshold checkpoint runs right after a sync that read the WAL to its end.
    just_synced: bool,
    /// The next L0 file must be a full one, and why (the [`crate::meta::NEXT_L0_FULL`] mark).
    next_full: Option<&'static str>,
    /// The running sync's files hold every commit made before it started (see
    /// [`Syncer::sync_publishing`]).
    covered: bool,
    /// The running sync's [`Syncer::sync_publishing`] callback.
    publish: Option<Publish>,
    /// When the running sync started.
    sync_started: Option<std::time::Instant>,
}

impl Syncer {
    /// A syncer for an attached database whose position is `pos` (the newest local L0 file,
    /// see [`read_position`]).
    pub fn new(
        db: Database,
        meta: MetaDir,
        settings: SyncSettings,
        pos: Position,
        lock: Arc<CheckpointLock>,
        metrics: Option<DbMetrics>,
    ) -> Syncer {
        let next_full = meta
            .next_full()
            .then_some("a full L0 file was pending when replication stopped");
        let syncer = Syncer {
            db,
            meta,
            settings,
            state: SyncState::default(),
            pos,
            last_frame: None,
            lock,
            metrics,
            report: SyncReport::default(),
            last_checkpoint: None,
            pinned: false,
            just_synced: false,
            next_full,
            covered: false,
            publish: None,
            sync_started: None,
        };
        syncer.publish();
        syncer
    }

    /// Publishes the position (and whether a full file is pending) to snapshots.
    fn publish(&self) {
        self.lock.publish(Published {
            position: self.pos,
            file_ahead: self.next_full.is_some() || self.pinned,
        });
    }

    fn set_pos(&mut self, pos: Position) {
        self.pos = pos;
        self.publish();
    }

    /// Takes the pin (no-op if held).
    fn pin(&mut self) -> Result<(), SyncError> {
        self.db.begin_pin()?;
        self.pinned = true;
        self.publish();
        Ok(())
    }

    /// Ends the pin and takes it again at the newest commit, while the reader's read
    /// transaction holds the WAL (under the barrier, once every commit is in an L0 file).
    fn repin(&mut self) -> Result<(), SyncError> {
        self.db.acquire_read_lock()?;
        self.db.end_pin()?;
        self.pinned = false;
        self.publish();
        self.pin()
    }

    /// Ends the pin (no-op if none). Only once every commit it could see is in an L0 file (a
    /// sync that read the WAL to its end ran after it was taken), and never while the reader
    /// connection holds no read transaction: that is taken again first.
    fn release_pin(&mut self) -> Result<(), SyncError> {
        if !self.pinned {
            return Ok(());
        }
        self.db.acquire_read_lock()?;
        self.db.end_pin()?;
        self.pinned = false;
        self.publish();
        Ok(())
    }

    /// Durably marks that the next L0 file must be a full one.
    fn require_full(&mut self, reason: &'static str) -> Result<(), SyncError> {
        self.meta
            .mark_next_full(reason)
            .map_err(|source| SyncError::Mark {
                path: self.meta.root().display().to_string(),
                source,
            })?;
        self.next_full = Some(reason);
        self.publish();
        Ok(())
    }

    pub fn position(&self) -> Position {
        self.pos
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn meta(&self) -> &MetaDir {
        &self.meta
    }

    /// Gives the database attachment back (closing it releases the read transaction).
    pub fn into_database(self) -> Database {
        self.db
    }

    fn frame_size(&self) -> u64 {
        self.db.frame_size()
    }

    fn exceeds_truncate_threshold(&self, wal_size: u64) -> bool {
        self.settings
            .checkpoints
            .exceeds_truncate(wal_size, self.frame_size())
    }

    /// One sync: L0 files for everything committed, then a checkpoint if one is due.
    pub fn sync(&mut self) -> Result<SyncReport, SyncError> {
        self.report = SyncReport::default();
        self.covered = false;
        let started = std::time::Instant::now();
        self.sync_started = Some(started);
        let result = self.sync_inner();
        if let Some(m) = &self.metrics {
            m.record_sync(started.elapsed(), result.is_err());
            if let Err(e) = &result {
                m.set_disk_full(e.is_disk_full());
            } else {
                m.set_disk_full(false);
                m.set_txid(self.pos.txid);
                if let Ok(size) = self.db.db_size() {
                    m.set_db_size(size);
                }
                m.set_wal_size(self.state.last_synced_wal_offset);
            }
        }
        self.at(SyncPoint::SyncDone);
        self.sync_started = None;
        result.map(|()| std::mem::take(&mut self.report))
    }

    /// [`Syncer::sync`], calling `publish` with the newest local TXID as soon as the local L0
    /// files hold every commit made before the sync started, and again after each file the
    /// same sync writes later (a checkpoint's syncs). That is before the checkpoint the sync
    /// may run: what waits for those commits (their upload, a synchronous write, a position)
    /// need not wait for the checkpoint too. Not called if the sync fails before that point.
    pub fn sync_publishing(
        &mut self,
        publish: impl FnMut(TxId) + Send + 'static,
    ) -> Result<SyncReport, SyncError> {
        self.publish = Some(Publish(Box::new(publish)));
        let result = self.sync();
        self.publish = None;
        result
    }

    /// Calls the [`Syncer::sync_publishing`] callback, once the files cover the sync's start.
    fn published(&mut self) {
        if !self.covered {
            return;
        }
        let txid = self.pos.txid;
        if let Some(p) = &mut self.publish {
            if self.report.timings.published.is_none() {
                self.report.timings.published = self.sync_started.map(|t| t.elapsed());
            }
            (p.0)(txid);
        }
    }

    /// Calls the test hook, if any.
    fn at(&self, point: SyncPoint) {
        if let Some(hook) = &self.settings.hook {
            (hook.0)(point);
        }
    }

    fn sync_inner(&mut self) -> Result<(), SyncError> {
        // (Taken again here if that failed after a checkpoint.)
        self.db.acquire_read_lock()?;
        self.db.ensure_wal_exists()?;
        let limit = self.settings.max_sync_wal_bytes;
        loop {
            let orig_wal_size = match self.state.last_synced_wal_offset {
                0 => self.db.wal_size()?,
                n => n,
            };
            let r = self.verify_and_sync(limit)?;
            self.apply(r);
            if !r.limited {
                // The scan reached the WAL's end as it was after the sync started.
                self.covered = true;
                self.published();
                // A pin left by a checkpoint that failed before its barrier: what it held is
                // in L0 files now.
                self.release_pin()?;
            }
            if r.file_written {
                self.state.synced_since_checkpoint = true;
            }
            if !r.limited || r.synced_to_wal_end || self.exceeds_truncate_threshold(orig_wal_size) {
                // (A sync cut short by `max-sync-wal-bytes` leaves the rest to the
                // checkpoint's own copy.)
                self.just_synced = !r.limited;
                let checkpointed = self.checkpoint_if_needed(orig_wal_size, r.new_wal_size);
                self.just_synced = false;
                checkpointed?;
            }
            if !(r.file_written && r.limited && !r.synced_to_wal_end) {
                return Ok(());
            }
        }
    }

    fn apply(&mut self, r: OnceResult) {
        self.state.last_synced_wal_offset = r.new_wal_size;
        self.state.synced_to_wal_end = r.synced_to_wal_end;
    }

    fn verify_and_sync(&mut self, limit: Option<u64>) -> Result<OnceResult, SyncError> {
        let info = match self.next_full {
            Some(reason) => self.full_from_start(reason)?,
            None => self.verify()?,
        };
        self.sync_once(info, limit)
    }

    /// A full file of the state SQLite would read now: the database file overlaid with every
    /// committed frame of the WAL from its start.
    fn full_from_start(&self, reason: &'static str) -> Result<SyncInfo, SyncError> {
        Ok(SyncInfo {
            offset: WAL_HEADER_SIZE,
            salt: self.db.wal_header()?.map(|h| h.salt).unwrap_or_default(),
            prev_commit: self.pos.header.map_or(0, |h| h.commit),
            full: Some(reason),
            clear_synced_to_wal_end: true,
        })
    }

    fn wal_error(&self, source: WalError) -> SyncError {
        SyncError::Wal {
            path: self.db.wal_path().display().to_string(),
            source,
        }
    }

    /// The verify step: where the next file starts and whether it must be full (Litestream's
    /// decision table, see the module docs).
    fn verify(&mut self) -> Result<SyncInfo, SyncError> {
        let frame_size = self.frame_size();
        let mut info = SyncInfo {
            offset: WAL_HEADER_SIZE,
            salt: Salt::default(),
            prev_commit: 0,
            full: Some("no replication position, snapshotting"),
            clear_synced_to_wal_end: false,
        };
        let Some(h) = self.pos.header else {
            if self.pos.txid != TxId::ZERO {
                info.full = Some("no local L0 file for the position, snapshotting");
            }
            return Ok(info);
        };
        info.offset = h.wal_offset as u64 + h.wal_size as u64;
        info.salt = header_salt(&h);
        info.prev_commit = h.commit;

        let wal_size = self.db.wal_size()?;
        if info.offset > wal_size {
            self.state.truncate_passive_failed = false;
            if self.state.synced_to_wal_end {
                // A checkpoint truncated the WAL after we had read all of it: continue from
                // the start of the new WAL.
                let hdr = self.db.wal_header()?;
                info.offset = WAL_HEADER_SIZE;
                info.salt = hdr.map(|h| h.salt).unwrap_or_default();
                info.full = None;
                info.clear_synced_to_wal_end = true;
                return Ok(info);
            }
            info.full = Some("wal truncated by another process");
            return Ok(info);
        }

        let Some(hdr) = self.db.wal_header()? else {
            info.full = Some("wal header unreadable, snapshotting");
            return Ok(info);
        };
        let salt_match = hdr.salt == info.salt;
        if !salt_match {
            self.state.truncate_passive_failed = false;
        }
        if info.offset == WAL_HEADER_SIZE {
            if salt_match {
                info.full = None;
            } else {
                info.full = Some("wal header salt reset, snapshotting");
            }
            return Ok(info);
        }
        let prev = info.offset as i64 - frame_size as i64;
        if prev == WAL_HEADER_SIZE as i64 {
            if salt_match {
                info.full = None;
            } else {
                info.full = Some("wal header salt reset, snapshotting");
            }
            return Ok(info);
        } else if prev < WAL_HEADER_SIZE as i64 {
            return Err(SyncError::PrevOffset(prev));
        }
        if !self.last_page_match(&h, prev as u64)? {
            info.full = Some(
                "last page does not exist in last ltx file, wal overwritten by another process",
            );
            return Ok(info);
        }
        if !salt_match {
            // The WAL was restarted after everything we know was synced: read it from the
            // start, unless it went through more than one unknown generation, or the old
            // generation went on after the position (commits made while nothing of ours held
            // the WAL, e.g. while replication was stopped: the restart copied them into the
            // database file and only a full file holds them now).
            let old_went_on = self.commits_after(info.offset, info.salt)?;
            // SQLite adds one to salt-1 at every restart, so any other value means more than
            // one restart (or a new WAL file): a generation in between may have been
            // overwritten whole by the newest one, leaving no salt of its own to see.
            let restarted_once = hdr.salt.salt1 == info.salt.salt1.wrapping_add(1);
            info.offset = WAL_HEADER_SIZE;
            info.salt = hdr.salt;
            info.full = if old_went_on {
                Some("wal restarted after commits that were never synced, snapshotting")
            } else if !restarted_once {
                Some("wal restarted more than once since the last sync, snapshotting")
            } else if self.detect_full_checkpoint(&[hdr.salt, header_salt(&h)])? {
                Some("full or restart checkpoint detected, snapshotting")
            } else {
                None
            };
            return Ok(info);
        }
        info.full = None;
        Ok(info)
    }

    /// Is the WAL frame at `offset` (the last frame the newest L0 file covers) still there,
    /// with the same salts, page number and page bytes as in that file?
    fn last_page_match(&mut self, h: &Header, offset: u64) -> Result<bool, SyncError> {
        let wal = self.db.open_wal()?;
        let page_size = self.db.page_size() as usize;
        let mut frame = vec![0u8; wal::FRAME_HEADER_SIZE as usize + page_size];
        if !wal::ReadAt::read_full_at(&wal, &mut frame, offset)
            .map_err(|e| self.wal_error(e.into()))?
        {
            return Ok(false);
        }
        let mut fh = [0u8; 24];
        fh.copy_from_slice(&frame[..24]);
        let fh = wal::FrameHeader::parse(&fh);
        if fh.salt != header_salt(h) {
            return Ok(false);
        }
        let data = &frame[24..];
        if let Some(last) = &self.last_frame
            && last.txid == h.max_txid
            && last.offset == offset
        {
            return Ok(last.pgno == fh.pgno && last.data == data);
        }
        // Look the page up in the L0 file through its index.
        // The position file: one TXID, or a merged file adopted at start-up.
        let path = self
            .meta
            .path(Level::L0, FileName::new(h.min_txid, h.max_txid));
        let mut page = vec![0u8; page_size];
        let matched = read_ltx_page(&path, fh.pgno, &mut page)? && page == data;
        if matched {
            self.last_frame = Some(LastFrame {
                txid: h.max_txid,
                offset,
                pgno: fh.pgno,
                data: page,
            });
        }
        Ok(matched)
    }

    /// Does the WAL hold committed frames of the generation with `salt` from `offset` on?
    /// (After a restart shorter than that generation, its tail is still in the file.) When
    /// it cannot tell, it says yes: a full file is never wrong.
    fn commits_after(&self, offset: u64, salt: Salt) -> Result<bool, SyncError> {
        let wal = self.db.open_wal()?;
        Ok(WalReader::resume_generation(&wal, offset, salt)
            .and_then(|mut r| r.read_committed(None))
            .map_or(true, |scan| scan.commit.is_some()))
    }

    /// After a WAL restart: does the WAL (from the start up to the newest known salts) hold
    /// frames of a generation we never saw?
    fn detect_full_checkpoint(&self, known: &[Salt]) -> Result<bool, SyncError> {
        let wal = self.db.open_wal()?;
        let frame_size = self.frame_size();
        let until = known.last().copied().unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        let mut offset = WAL_HEADER_SIZE;
        let mut hdr = [0u8; 24];
        loop {
            match wal::ReadAt::read_full_at(&wal, &mut hdr, offset) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(self.wal_error(e.into())),
            }
            let fh = wal::FrameHeader::parse(&hdr);
            seen.insert(fh.salt);
            if fh.salt == until {
                break;
            }
            offset += frame_size;
        }
        for s in known {
            seen.remove(s);
        }
        Ok(!seen.is_empty())
    }

    /// Reads committed frames from `info.offset` and writes the next L0 file.
    fn sync_once(
        &mut self,
        mut info: SyncInfo,
        limit: Option<u64>,
    ) -> Result<OnceResult, SyncError> {
        let mut result = OnceResult {
            file_written: false,
            limited: false,
            synced_to_wal_end: self.state.synced_to_wal_end && !info.clear_synced_to_wal_end,
            new_wal_size: self.state.last_synced_wal_offset,
        };
        let txid = self.pos.txid.next().ok_or(SyncError::TxIdOverflow)?;
        let page_size = self.db.page_size();
        let db_commit =
            u32::try_from(self.db.db_size()? / u64::from(page_size)).unwrap_or(u32::MAX);

        let wal_file = self.db.open_wal()?;
        let reader = if info.offset == WAL_HEADER_SIZE {
            WalReader::open(&wal_file)
        } else {
            match WalReader::resume(&wal_file, info.offset, info.salt) {
                Err(WalError::ResumeFrameMissing { .. } | WalError::ResumeSaltMismatch { .. }) => {
                    info.offset = WAL_HEADER_SIZE;
                    WalReader::open(&wal_file)
                }
                other => other,
            }
        };
        let (scan, wal_header) = match reader {
            Ok(mut reader) => {
                let limit = if info.full.is_some() { None } else { limit };
                let scan = reader
                    .read_committed(limit)
                    .map_err(|e| self.wal_error(e))?;
                (scan, Some(*reader.header()))
            }
            Err(e) if e.is_empty_wal() => (
                WalScan {
                    page_size,
                    salt: Salt::default(),
                    start_offset: WAL_HEADER_SIZE,
                    end_offset: WAL_HEADER_SIZE,
                    commit: None,
                    pages: BTreeMap::new(),
                    transactions: 0,
                    last_commit_frame: None,
                    stop: wal::StopReason::EndOfFile,
                },
                None,
            ),
            Err(e) => return Err(self.wal_error(e)),
        };
        result.limited = scan.stop == wal::StopReason::ByteLimit;
        let commit = scan.commit.unwrap_or(db_commit);
        // (The scan starts at `info.offset`; it covers nothing when it found no commit.)
        let size = scan.wal_size();
        if info.full.is_none() && size == 0 {
            return Ok(result);
        }
        if let Some(h) = wal_header
            && h.page_size != page_size
        {
            return Err(self.wal_error(WalError::BadPageSize(h.page_size)));
        }

        let timestamp = now_millis();
        let mut header = Header::new(page_size, commit, txid, txid, timestamp);
        header.wal_offset = info.offset as i64;
        header.wal_size = size as i64;
        header.wal_salt1 = scan.salt.salt1;
        header.wal_salt2 = scan.salt.salt2;
        // A file that read no frames still needs a WAL offset (never 0: a zero offset makes
        // Litestream loop on "prev WAL offset is less than the header size").
        if header.wal_offset == 0 {
            header.wal_offset = WAL_HEADER_SIZE as i64;
        }

        let name = FileName::new(txid, txid);
        let path = self.meta.path(Level::L0, name);
        let display = path.display().to_string();
        let db = &self.db;
        let last_frame_offset = scan.last_commit_frame;
        let mut last_frame = None;
        let full = info.full;
        let prev_commit = info.prev_commit;
        let frame_header = wal_header_or(&wal_header, page_size);
        let write_started = std::time::Instant::now();
        let mut encoded = None;
        let write = |w: &mut std::io::BufWriter<File>| -> Result<(), SyncError> {
            let mut enc = Encoder::new(&mut *w, header).map_err(|source| SyncError::Encode {
                path: display.clone(),
                source,
            })?;
            let pages = page_list(&scan, full.is_some(), prev_commit, commit, page_size);
            let mut page = vec![0u8; page_size as usize];
            for (pgno, wal_offset) in pages {
                match wal_offset {
                    Some(off) => {
                        wal::read_page(&wal_file, &frame_header, off, &mut page).map_err(
                            |source| SyncError::Wal {
                                path: db.wal_path().display().to_string(),
                                source,
                            },
                        )?;
                        if Some(off) == last_frame_offset {
                            last_frame = Some((off, pgno, page.clone()));
                        }
                    }
                    None => db.read_db_page(pgno, &mut page)?,
                }
                enc.write_page(pgno, &page)
                    .map_err(|source| SyncError::Encode {
                        path: display.clone(),
                        source,
                    })?;
            }
            enc.finish().map_err(|source| SyncError::Encode {
                path: display.clone(),
                source,
            })?;
            w.flush().map_err(|source| SyncError::LocalIo {
                path: display.clone(),
                source,
            })?;
            // A WAL restart while we read would have rewritten the header: the pages read
            // could belong to the new generation.
            if size > 0
                && let Ok(Some(now)) = db.wal_header()
                && now.salt != scan.salt
            {
                return Err(SyncError::WalRestarted);
            }
            encoded = Some(write_started.elapsed());
            Ok(())
        };
        let (_, file_size) = self
            .meta
            .write_with(Level::L0, name, write)
            .map_err(|e| match e {
                MetaWriteError::Io(source) => SyncError::LocalIo {
                    path: path.display().to_string(),
                    source,
                },
                MetaWriteError::Write(e) => e,
            })?;
        let written = write_started.elapsed();
        let encoded = encoded.unwrap_or(written);
        self.report.timings.encode += encoded;
        self.report.timings.fsync += written.saturating_sub(encoded);

        self.set_pos(Position {
            txid,
            header: Some(header),
        });
        // A full file of the whole WAL holds every page as SQLite reads it, so whatever the
        // database file held beyond the old position.
        if full.is_some() && info.offset == WAL_HEADER_SIZE {
            self.clear_next_full();
        }
        self.last_frame = last_frame.map(|(offset, pgno, data)| LastFrame {
            txid,
            offset,
            pgno,
            data,
        });
        let end = info.offset + size;
        result.file_written = true;
        result.new_wal_size = end;
        result.synced_to_wal_end = self.db.wal_size().map(|s| s == end).unwrap_or(false);
        self.report.wal_bytes += size;
        if let Some(m) = &self.metrics {
            m.add_wal_bytes(size);
        }
        match full {
            Some(reason) => {
                tracing::debug!(db = %self.db.path().display(), txid = %txid, offset = info.offset, snap = true, reason, "sync")
            }
            None => {
                tracing::trace!(db = %self.db.path().display(), txid = %txid, offset = info.offset, "sync")
            }
        }
        self.report.files.push(L0File {
            header,
            size: file_size,
            full,
        });
        self.published();
        Ok(result)
    }

    /// Runs the checkpoint [`Policy`] asks for after a sync, if any.
    fn checkpoint_if_needed(
        &mut self,
        orig_wal_size: u64,
        new_wal_size: u64,
    ) -> Result<(), SyncError> {
        if !self.exceeds_truncate_threshold(self.state.last_synced_wal_offset) {
            self.state.truncate_passive_failed = false;
        }
        let policy = self.settings.checkpoints;
        let wal = WalAfterSync {
            frame_size: self.frame_size(),
            size_before_sync: orig_wal_size,
            synced_end: new_wal_size,
            since_last_checkpoint: self.last_checkpoint.map(|t| t.elapsed()),
            synced_since_checkpoint: self.state.synced_since_checkpoint,
            truncate_passive_failed: self.state.truncate_passive_failed,
        };
        let db = &self.db;
        let due = policy.due(&wal, || {
            let mtime = db.db_mtime()?;
            Ok::<_, SyncError>(SystemTime::now().duration_since(mtime).ok())
        })?;
        match due {
            None => Ok(()),
            Some(Due::Passive) => match self.checkpoint(CheckpointMode::Passive) {
                Err(e) if is_busy(&e) => Ok(()),
                other => other.map(|_| ()),
            },
            Some(Due::Truncate { passive_first }) => {
                if passive_first {
                    match self.checkpoint(CheckpointMode::Passive) {
                        Ok(Some(restarted)) => {
                            let synced = self.state.last_synced_wal_offset;
                            if !policy.truncate_after_passive(restarted, synced, wal.frame_size) {
                                tracing::info!(db = %self.db.path().display(), wal_size = orig_wal_size, "wal restarted by passive checkpoint, skipping truncate checkpoint");
                                return Ok(());
                            }
                            if !restarted {
                                self.state.truncate_passive_failed = true;
                            }
                        }
                        Ok(None) => {}
                        Err(e) if is_busy(&e) => self.state.truncate_passive_failed = true,
                        Err(e) => return Err(e),
                    }
                }
                tracing::info!(db = %self.db.path().display(), wal_size = orig_wal_size, "forcing truncate checkpoint");
                let restarted = self.checkpoint(CheckpointMode::Truncate)?;
                if restarted == Some(true)
                    || !self.exceeds_truncate_threshold(self.state.last_synced_wal_offset)
                {
                    self.state.truncate_passive_failed = false;
                }
                Ok(())
            }
        }
    }

    /// Runs one checkpoint (see the module docs). `Ok(None)`: skipped (a snapshot is
    /// streaming); `Ok(Some(restarted))`: whether the WAL was restarted.
    pub fn checkpoint(&mut self, mode: CheckpointMode) -> Result<Option<bool>, SyncError> {
        let lock = self.lock.clone();
        let Some(_guard) = lock.try_checkpoint() else {
            tracing::debug!(db = %self.db.path().display(), mode = mode.as_str(), "checkpoint skipped, snapshot in progress");
            return Ok(None);
        };
        let started = std::time::Instant::now();
        self.last_checkpoint = Some(started);
        self.at(SyncPoint::CheckpointStart(mode));
        let result = match mode {
            CheckpointMode::Passive => self.checkpoint_passive(),
            CheckpointMode::Truncate => self.checkpoint_truncate(),
        };
        self.report.timings.checkpoint += started.elapsed();
        if let Some(m) = &self.metrics {
            m.record_checkpoint(mode, started.elapsed(), result.is_err());
        }
        result.map(Some)
    }

    /// PASSIVE: an early copy while writers keep going, then the barrier, a sync of what
    /// they committed meanwhile, and the checkpoint proper. The pin holds the WAL from before
    /// the early copy until that sync is done.
    fn checkpoint_passive(&mut self) -> Result<bool, SyncError> {
        let mode = CheckpointMode::Passive;
        let before = self.db.wal_header_bytes()?;
        // Sync first, so the early copy finds little left (a threshold checkpoint follows a
        // sync that just did: another file for the few commits since would be one more file
        // and upload per checkpoint; the barrier's sync takes them along).
        if !self.just_synced {
            let r = self.verify_and_sync(None)?;
            self.apply(r);
            self.release_pin()?;
        }
        // The early copy may put commits that no L0 file holds yet into the database file;
        // the pin keeps the WAL from restarting under them. If anything fails from here to
        // the barrier's sync, the pin stays until a later sync has them.
        self.pin()?;
        let early = self.db.checkpoint(mode)?;
        tracing::trace!(db = %self.db.path().display(), result = %format!("{},{},{}", early.busy, early.log, early.checkpointed), "checkpoint (pinned)");

        self.at(SyncPoint::BeforeBarrier(mode));
        self.db.begin_barrier()?;
        let sealed = std::time::Instant::now();
        let result = self.sealed_checkpoint(mode);
        let end = self.db.end_barrier();
        tracing::debug!(db = %self.db.path().display(), held_ms = sealed.elapsed().as_secs_f64() * 1e3, "checkpoint barrier released");
        let result = result?;
        end?;
        self.checkpointed(mode, result)?;
        let after = self.db.wal_header_bytes()?;
        if before == after {
            self.state.synced_since_checkpoint = false;
            return Ok(false);
        }
        self.state.truncate_passive_failed = false;
        let r = self.verify_and_sync(None)?;
        self.apply(r);
        self.state.synced_since_checkpoint = false;
        Ok(true)
    }

    /// Under the barrier: syncs what was committed since the last sync, takes the pin again
    /// (every commit is in an L0 file and nobody can write, so it sees exactly what L0 files
    /// hold, and does not hold back the copy), and checkpoints. The pin goes once the reader
    /// holds its read transaction again; if the reader cannot take it, the pin stands in for
    /// it until a later sync. Taken before the reader lets go, never after: a pin taken
    /// only once the reader had failed could fail the same way (the same read), and then
    /// nothing of ours would hold the WAL when the barrier ends.
    fn sealed_checkpoint(&mut self, mode: CheckpointMode) -> Result<CheckpointResult, SyncError> {
        let r = self.verify_and_sync(None)?;
        self.apply(r);
        self.repin()?;
        self.at(SyncPoint::BeforeCheckpoint(mode));
        let result = self.db.checkpoint(mode);
        if self.db.holds_read_lock() {
            self.release_pin()?;
        }
        Ok(result?)
    }

    /// TRUNCATE: needs every reader gone, ours too, so commits landing between the sync
    /// before it and the truncation are copied into the database file and cut out of the
    /// WAL; a full "checkpoint boundary" L0 file holds them.
    fn checkpoint_truncate(&mut self) -> Result<bool, SyncError> {
        let mode = CheckpointMode::Truncate;
        let before = self.db.wal_header_bytes()?;
        let r = self.verify_and_sync(None)?;
        self.apply(r);
        self.release_pin()?;
        // Marked before the TRUNCATE, removed once a full file exists: whatever fails (or
        // crashes) in between, the next file is a full one.
        self.require_full("checkpoint boundary snapshot")?;
        self.at(SyncPoint::BeforeCheckpoint(mode));
        let result = self.db.checkpoint(mode)?;
        self.checkpointed(mode, result)?;
        let after = self.db.wal_header_bytes()?;
        if before == after {
            // The WAL was not restarted (a reader held it): nothing was cut out of it, so an
            // incremental file holds whatever the checkpoint copied.
            let info = self.verify()?;
            let r = self.sync_once(info, None)?;
            self.apply(r);
            self.clear_next_full();
            self.state.synced_since_checkpoint = false;
            return Ok(false);
        }
        self.state.truncate_passive_failed = false;
        self.at(SyncPoint::BeforeBarrier(mode));
        self.db.begin_barrier()?;
        let r = self.verify_and_sync(None);
        let end = self.db.end_barrier();
        let r = r?;
        end?;
        self.apply(r);
        self.state.synced_since_checkpoint = false;
        Ok(true)
    }

    /// Right after `PRAGMA wal_checkpoint`: records it, and bumps `_litestream_seq` so a
    /// fully checkpointed WAL restarts now (as Litestream does).
    fn checkpointed(
        &mut self,
        mode: CheckpointMode,
        result: CheckpointResult,
    ) -> Result<(), SyncError> {
        self.at(SyncPoint::AfterCheckpoint(mode));
        tracing::debug!(db = %self.db.path().display(), mode = mode.as_str(), result = %format!("{},{},{}", result.busy, result.log, result.checkpointed), "checkpoint");
        self.report.checkpoints.push((mode, result));
        Ok(self.db.bump_seq()?)
    }

    /// A full file now holds everything: the mark goes.
    fn clear_next_full(&mut self) {
        if self.next_full.take().is_none() {
            return;
        }
        self.publish();
        if let Err(e) = self.meta.clear_next_full() {
            // Only costs one more full file after a restart.
            tracing::warn!(meta = %self.meta.root().display(), error = %e, "could not remove the mark that asked for a full L0 file");
        }
    }

    /// Forces a checkpoint now (tests, tools).
    pub fn force_checkpoint(&mut self, mode: CheckpointMode) -> Result<Option<bool>, SyncError> {
        self.report = SyncReport::default();
        self.checkpoint(mode)
    }

    /// The report of the last [`Syncer::force_checkpoint`].
    pub fn take_report(&mut self) -> SyncReport {
        std::mem::take(&mut self.report)
    }

    /// Records a new position without a sync (after adopting the replica's newest L0 file).
    pub fn set_position(&mut self, pos: Position) {
        self.last_frame = None;
        self.state = SyncState::default();
        self.set_pos(pos);
    }
}

fn is_busy(e: &SyncError) -> bool {
    matches!(e, SyncError::Db(db) if db.is_busy())
}

fn wal_header_or(h: &Option<WalHeader>, page_size: u32) -> WalHeader {
    h.unwrap_or(WalHeader {
        byte_order: wal::ByteOrder::Little,
        version: wal::WAL_VERSION,
        page_size,
        checkpoint_seq: 0,
        salt: Salt::default(),
        checksum: (0, 0),
    })
}

/// The pages of the next file, ascending, with the WAL frame holding each (`None`: read it
/// from the database file). A full file holds every page 1..=commit; an incremental one the
/// WAL pages plus growth pages `prev_commit+1..=commit`. The lock page is never included.
fn page_list(
    scan: &WalScan,
    full: bool,
    prev_commit: u32,
    commit: u32,
    page_size: u32,
) -> Vec<(u32, Option<u64>)> {
    let lock = ltx::lock_page(page_size);
    let mut out: Vec<(u32, Option<u64>)> = Vec::new();
    if full {
        out.reserve(commit as usize);
        for pgno in 1..=commit {
            if pgno != lock {
                out.push((pgno, scan.pages.get(&pgno).copied()));
            }
        }
        return out;
    }
    out.extend(
        scan.pages
            .iter()
            .filter(|(p, _)| **p <= commit && **p != lock)
            .map(|(p, o)| (*p, Some(*o))),
    );
    if commit > prev_commit {
        for pgno in prev_commit.saturating_add(1)..=commit {
            if pgno != lock && !scan.pages.contains_key(&pgno) {
                out.push((pgno, None));
            }
        }
        out.sort_unstable_by_key(|(p, _)| *p);
    }
    out
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Reads page `pgno` of the LTX file at `path` into `page` through the file's page index:
/// its tail, then that one frame, never the whole file (a full L0 file holds every page of
/// the database). `Ok(false)` if the file does not hold the page.
fn read_ltx_page(path: &std::path::Path, pgno: u32, page: &mut [u8]) -> Result<bool, SyncError> {
    use crate::wal::ReadAt;
    let display = || path.display().to_string();
    let io = |source| SyncError::LocalIo {
        path: display(),
        source,
    };
    let ltx_err = |source| SyncError::LocalLtx {
        path: display(),
        source,
    };
    let short = || {
        io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the file is shorter than its index says",
        ))
    };
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut take = ltx::TAIL_FETCH_SIZE.min(size);
    let index = loop {
        let mut tail = vec![0u8; usize::try_from(take).unwrap_or(usize::MAX)];
        if !file.read_full_at(&mut tail, size - take).map_err(io)? {
            return Err(short());
        }
        match ltx::PageIndex::from_tail(&tail, size) {
            Ok(index) => break index,
            Err(ltx::Error::TailTooShort { needed, .. }) if needed > take && needed <= size => {
                take = needed;
            }
            Err(e) => return Err(ltx_err(e)),
        }
    };
    let Some(entry) = index.get(pgno) else {
        return Ok(false);
    };
    let mut frame = vec![0u8; usize::try_from(entry.size).unwrap_or(usize::MAX)];
    if !file.read_full_at(&mut frame, entry.offset).map_err(io)? {
        return Err(short());
    }
    Ok(ltx::decode_frame(&frame, page).map_err(ltx_err)? == pgno)
}

/// Reads the replication position from the metadata directory: the newest L0 file, fully
/// decoded and verified (as Litestream does).
pub fn read_position(meta: &MetaDir) -> Result<Position, SyncError> {
    let Some(name) = meta.newest_l0().map_err(|source| SyncError::LocalIo {
        path: meta.level_dir(Level::L0).display().to_string(),
        source,
    })?
    else {
        return Ok(Position::ZERO);
    };
    let path = meta.path(Level::L0, name);
    let display = path.display().to_string();
    let file = File::open(&path).map_err(|source| SyncError::LocalIo {
        path: display.clone(),
        source,
    })?;
    let decoded = ltx::Decoder::verify(std::io::BufReader::new(file)).map_err(|source| {
        SyncError::LocalLtx {
            path: display.clone(),
            source,
        }
    })?;
    Ok(Position {
        txid: decoded.header.max_txid,
        header: Some(decoded.header),
    })
}
