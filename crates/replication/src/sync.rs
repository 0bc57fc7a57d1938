//! Turning committed WAL frames into L0 LTX files (spec §3.2–§3.5), as Litestream does, so a
//! replica we write is one Litestream could have written and either can take over from the
//! other.
//!
//! [`Syncer`] owns the database attachment ([`Database`]), the local metadata directory
//! ([`MetaDir`]) and the sync state. One [`Syncer::sync`]:
//! 1. *verifies* that the WAL still continues where the newest local L0 file ended (the
//!    decision table of §3.3): incremental from that offset, incremental from offset 32
//!    after an expected truncation or a WAL restart, or a *full* L0 file (every page) when
//!    the WAL was reset, truncated or overwritten behind our back;
//! 2. reads the committed frames (up to `max-sync-wal-bytes` per file) and writes the next
//!    L0 file (TXID + 1): WAL pages, plus growth pages from the database file, pages beyond
//!    the commit dropped, the lock page skipped; `<name>.tmp`, fsync, rename, fsync dir;
//! 3. checkpoints when a threshold is reached (§3.5): PASSIVE under the write barrier,
//!    TRUNCATE only past `truncate-page-n`, never RESTART; after a TRUNCATE (or commits that
//!    slipped in) a full "checkpoint boundary snapshot" L0 file.
//!
//! Checkpoints take the write half of the checkpoint lock and are skipped while a snapshot
//! ([`crate::snapshot`]) holds the read half.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ltx::{Encoder, FileName, Header, TxId};
use parking_lot::RwLock;

use crate::config::DbConfig;
use crate::db::{CheckpointMode, CheckpointResult, Database, DbError};
use crate::level::Level;
use crate::meta::{MetaDir, MetaWriteError};
use crate::metrics::DbMetrics;
use crate::wal::{self, Salt, WAL_HEADER_SIZE, WalError, WalHeader, WalReader, WalScan};

/// The sync and checkpoint settings of one `dbs[]` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSettings {
    /// Bytes of WAL per L0 file at most (`max-sync-wal-bytes`; `None` = no limit).
    pub max_sync_wal_bytes: Option<u64>,
    /// PASSIVE checkpoint once the synced WAL holds this many frames.
    pub min_checkpoint_page_count: u32,
    /// TRUNCATE checkpoint once the WAL holds this many frames.
    pub truncate_page_n: u32,
    /// PASSIVE checkpoint when the database file is older than this and something was
    /// synced since the last checkpoint.
    pub checkpoint_interval: Duration,
    /// Threshold checkpoints (PASSIVE at `min_checkpoint_page_count`) run at most this often
    /// (`monitor-interval`: as often as Litestream evaluates them); syncs themselves run more
    /// often. The TRUNCATE threshold is always honoured.
    pub min_checkpoint_gap: Duration,
}

impl SyncSettings {
    pub fn from_config(db: &DbConfig) -> SyncSettings {
        SyncSettings {
            max_sync_wal_bytes: db.max_sync_wal_bytes,
            min_checkpoint_page_count: db.min_checkpoint_page_count,
            truncate_page_n: if db.truncate_page_n == 0 {
                crate::config::defaults::TRUNCATE_PAGE_N
            } else {
                db.truncate_page_n
            },
            checkpoint_interval: db.checkpoint_interval,
            min_checkpoint_gap: db.monitor_interval,
        }
    }
}

impl Default for SyncSettings {
    fn default() -> Self {
        use crate::config::defaults as d;
        SyncSettings {
            max_sync_wal_bytes: Some(d::MAX_SYNC_WAL_BYTES),
            min_checkpoint_page_count: d::MIN_CHECKPOINT_PAGE_COUNT,
            truncate_page_n: d::TRUNCATE_PAGE_N,
            checkpoint_interval: d::CHECKPOINT_INTERVAL,
            min_checkpoint_gap: d::MONITOR_INTERVAL,
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
    checkpoint_lock: Arc<RwLock<()>>,
    metrics: Option<DbMetrics>,
    report: SyncReport,
    last_checkpoint: Option<std::time::Instant>,
    /// A threshold checkpoint is running right after a sync that read the WAL to its end (see
    /// [`Syncer::checkpoint_locked`]).
    just_synced: bool,
}

impl Syncer {
    /// A syncer for an attached database whose position is `pos` (the newest local L0 file,
    /// see [`read_position`]).
    pub fn new(
        db: Database,
        meta: MetaDir,
        settings: SyncSettings,
        pos: Position,
        checkpoint_lock: Arc<RwLock<()>>,
        metrics: Option<DbMetrics>,
    ) -> Syncer {
        Syncer {
            db,
            meta,
            settings,
            state: SyncState::default(),
            pos,
            last_frame: None,
            checkpoint_lock,
            metrics,
            report: SyncReport::default(),
            last_checkpoint: None,
            just_synced: false,
        }
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

    /// The WAL size in bytes of `pages` frames.
    fn wal_size_of(&self, pages: u32) -> u64 {
        WAL_HEADER_SIZE + u64::from(pages) * self.frame_size()
    }

    fn exceeds_truncate_threshold(&self, wal_size: u64) -> bool {
        self.settings.truncate_page_n > 0
            && wal_size >= self.wal_size_of(self.settings.truncate_page_n)
    }

    /// One sync: L0 files for everything committed, then a checkpoint if one is due.
    pub fn sync(&mut self) -> Result<SyncReport, SyncError> {
        self.report = SyncReport::default();
        let started = std::time::Instant::now();
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
        result.map(|()| std::mem::take(&mut self.report))
    }

    fn sync_inner(&mut self) -> Result<(), SyncError> {
        self.db.ensure_wal_exists()?;
        let limit = self.settings.max_sync_wal_bytes;
        loop {
            let orig_wal_size = match self.state.last_synced_wal_offset {
                0 => self.db.wal_size()?,
                n => n,
            };
            let r = self.verify_and_sync(limit)?;
            self.apply(r);
            if r.file_written {
                self.state.synced_since_checkpoint = true;
            }
            if !r.limited || r.synced_to_wal_end || self.exceeds_truncate_threshold(orig_wal_size) {
                // (A sync cut short by `max-sync-wal-bytes` leaves the rest to the checkpoint's
                // own copy, outside the barrier.)
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
        let info = self.verify()?;
        self.sync_once(info, limit)
    }

    fn wal_error(&self, source: WalError) -> SyncError {
        SyncError::Wal {
            path: self.db.wal_path().display().to_string(),
            source,
        }
    }

    /// The verify step: where the next file starts and whether it must be full (§3.3).
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
            // start, unless it went through more than one unknown generation.
            info.offset = WAL_HEADER_SIZE;
            info.salt = hdr.salt;
            if self.detect_full_checkpoint(&[hdr.salt, header_salt(&h)])? {
                info.full = Some("full or restart checkpoint detected, snapshotting");
            } else {
                info.full = None;
            }
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
        let path = self.meta.l0_path(h.max_txid);
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
        // Litestream loop on "prev WAL offset is less than the header size", §7).
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

        self.pos = Position {
            txid,
            header: Some(header),
        };
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
        Ok(result)
    }

    /// §3.5: checkpoint when a threshold is reached (after a sync that reached the WAL end).
    fn checkpoint_if_needed(
        &mut self,
        orig_wal_size: u64,
        new_wal_size: u64,
    ) -> Result<(), SyncError> {
        if !self.exceeds_truncate_threshold(self.state.last_synced_wal_offset) {
            self.state.truncate_passive_failed = false;
        }
        if self.exceeds_truncate_threshold(orig_wal_size) {
            if !self.state.truncate_passive_failed {
                match self.checkpoint(CheckpointMode::Passive) {
                    Ok(Some(true)) => {
                        if !self.exceeds_truncate_threshold(self.state.last_synced_wal_offset) {
                            tracing::info!(db = %self.db.path().display(), wal_size = orig_wal_size, "wal restarted by passive checkpoint, skipping truncate checkpoint");
                            return Ok(());
                        }
                    }
                    Ok(Some(false)) => self.state.truncate_passive_failed = true,
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
            return Ok(());
        }
        if self
            .last_checkpoint
            .is_some_and(|t| t.elapsed() < self.settings.min_checkpoint_gap)
        {
            return Ok(());
        }
        if new_wal_size >= self.wal_size_of(self.settings.min_checkpoint_page_count) {
            return match self.checkpoint(CheckpointMode::Passive) {
                Err(e) if is_busy(&e) => Ok(()),
                other => other.map(|_| ()),
            };
        }
        if !self.settings.checkpoint_interval.is_zero() && self.state.synced_since_checkpoint {
            let mtime = self.db.db_mtime()?;
            let old = SystemTime::now()
                .duration_since(mtime)
                .is_ok_and(|age| age > self.settings.checkpoint_interval);
            if old && new_wal_size > self.wal_size_of(1) {
                return match self.checkpoint(CheckpointMode::Passive) {
                    Err(e) if is_busy(&e) => Ok(()),
                    other => other.map(|_| ()),
                };
            }
        }
        Ok(())
    }

    /// Runs one checkpoint the way Litestream does. `Ok(None)`: skipped (a snapshot is
    /// streaming); `Ok(Some(restarted))`: whether the WAL was restarted.
    pub fn checkpoint(&mut self, mode: CheckpointMode) -> Result<Option<bool>, SyncError> {
        let lock = self.checkpoint_lock.clone();
        let Some(_guard) = lock.try_write() else {
            tracing::debug!(db = %self.db.path().display(), mode = mode.as_str(), "checkpoint skipped, snapshot in progress");
            return Ok(None);
        };
        let started = std::time::Instant::now();
        self.last_checkpoint = Some(started);
        let result = self.checkpoint_locked(mode);
        if let Some(m) = &self.metrics {
            m.record_checkpoint(mode, started.elapsed(), result.is_err());
        }
        result.map(Some)
    }

    fn checkpoint_locked(&mut self, mode: CheckpointMode) -> Result<bool, SyncError> {
        let before = self.db.wal_header_bytes()?;
        let barrier = mode == CheckpointMode::Passive;
        // Copy everything first, then seal the WAL with the barrier (PASSIVE) and copy again.
        // Right after a sync (a threshold checkpoint) there is next to nothing to copy: that
        // would be one more tiny L0 file and upload per checkpoint, so the sealed copy below
        // takes those few commits along.
        if !(barrier && self.just_synced) {
            let r = self.verify_and_sync(None)?;
            self.apply(r);
        }
        if barrier {
            // Most of the copying happens here, while writers keep going: a PASSIVE
            // checkpoint with the WAL pinned by a read transaction on the other connection, so
            // nothing can restart the WAL and drop frames we have not read yet. The barrier
            // below then only has the frames committed meanwhile left to copy.
            self.db.begin_pin()?;
            let early = self.db.checkpoint(CheckpointMode::Passive);
            let end = self.db.end_barrier();
            let early = early?;
            end?;
            tracing::trace!(db = %self.db.path().display(), result = %format!("{},{},{}", early.busy, early.log, early.checkpointed), "checkpoint (pinned)");
        }
        let mut sealed = None;
        if barrier {
            self.db.begin_barrier()?;
            sealed = Some(std::time::Instant::now());
            let r = match self.verify_and_sync(None) {
                Ok(r) => r,
                Err(e) => {
                    let _ = self.db.end_barrier();
                    return Err(e);
                }
            };
            self.apply(r);
        }
        let frame_size = self.frame_size();
        let pre_frames = self
            .state
            .last_synced_wal_offset
            .saturating_sub(WAL_HEADER_SIZE)
            / frame_size;
        let result = self.db.checkpoint(mode);
        if barrier {
            let end = self.db.end_barrier();
            if let Some(t) = sealed {
                tracing::debug!(db = %self.db.path().display(), held_ms = t.elapsed().as_secs_f64() * 1e3, "checkpoint barrier released");
            }
            if result.is_ok() {
                end?;
            }
        }
        let result = result?;
        tracing::debug!(db = %self.db.path().display(), mode = mode.as_str(), result = %format!("{},{},{}", result.busy, result.log, result.checkpointed), "checkpoint");
        self.report.checkpoints.push((mode, result));
        self.db.bump_seq()?;

        let after = self.db.wal_header_bytes()?;
        if before == after {
            self.state.synced_since_checkpoint = false;
            return Ok(false);
        }
        self.state.truncate_passive_failed = false;
        if mode == CheckpointMode::Passive
            || (mode != CheckpointMode::Truncate && result.log <= pre_frames as i64)
        {
            let r = self.verify_and_sync(None)?;
            self.apply(r);
            self.state.synced_since_checkpoint = false;
            return Ok(true);
        }
        // TRUNCATE: commits between the sealed sync and the checkpoint were backfilled and
        // truncated unseen, so take a full "checkpoint boundary snapshot" under the write lock.
        self.db.begin_barrier()?;
        let salt = WalHeader::parse(&after).map(|h| h.salt).unwrap_or_default();
        let info = SyncInfo {
            offset: WAL_HEADER_SIZE,
            salt,
            prev_commit: self.pos.header.map_or(0, |h| h.commit),
            full: Some("checkpoint boundary snapshot"),
            clear_synced_to_wal_end: false,
        };
        let r = self.sync_once(info, None);
        let end = self.db.end_barrier();
        let r = r?;
        end?;
        self.apply(r);
        self.state.synced_since_checkpoint = false;
        Ok(true)
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
        self.pos = pos;
        self.last_frame = None;
        self.state = SyncState::default();
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
pub fn now_millis() -> i64 {
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
