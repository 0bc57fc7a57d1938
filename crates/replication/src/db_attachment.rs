//! The replicator's hold on the SQLite database: its own two connections, the long-running
//! read transaction that keeps other connections from checkpointing past it or restarting the
//! WAL behind its back, the pin, the write barrier, checkpoints, and raw reads of the
//! database file and WAL. When each may be taken and released is [`crate::sync`]'s business.
//!
//! All three connections run with `busy_timeout` from the config and are set up for
//! [`Checkpointer::Replicator`]: `wal_autocheckpoint=0` and `SQLITE_FCNTL_PERSIST_WAL` (the
//! WAL survives the last close, so a restart can continue incrementally). Attaching puts the database in WAL mode and creates Litestream's
//! bookkeeping tables `_litestream_seq` and `_litestream_lock`, so a replica we write has
//! the same tables as one Litestream writes.
//!
//! - the *reader* connection holds the read transaction (`BEGIN; SELECT COUNT(1) FROM
//!   _litestream_seq`) and runs `PRAGMA wal_checkpoint(...)`, releasing the read transaction
//!   only for the checkpoint itself;
//! - the *writer* connection bumps `_litestream_seq` (to force a WAL header or mark a
//!   checkpoint) and takes the *barrier*: a write transaction inserting into
//!   `_litestream_lock` that is always rolled back;
//! - the *pin* connection holds a second read transaction, which keeps the WAL in place
//!   while the reader's is released for a checkpoint, also across the barrier.
//!
//! Everything here blocks; the replicator calls it from a blocking thread.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::checkpoint::Checkpointer;

use crate::wal::{ReadAt, WalError, WalHeader};

/// `PRAGMA wal_checkpoint` modes the replicator uses (never RESTART: it blocks writers until
/// every reader is done, see `crate::checkpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckpointMode {
    Passive,
    Truncate,
}

impl CheckpointMode {
    /// The PRAGMA argument and the `mode` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointMode::Passive => "PASSIVE",
            CheckpointMode::Truncate => "TRUNCATE",
        }
    }
}

/// The three numbers `PRAGMA wal_checkpoint` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointResult {
    /// 1 if the checkpoint could not finish because of another connection.
    pub busy: i64,
    /// Frames in the WAL.
    pub log: i64,
    /// Frames checkpointed.
    pub checkpointed: i64,
}

/// Errors from the database side of replication.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{path}: {context}: {source}")]
    Sqlite {
        path: String,
        context: &'static str,
        source: rusqlite::Error,
    },
    #[error("{path}: {context}: {source}")]
    Io {
        path: String,
        context: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: cannot enable WAL mode (journal_mode is {mode:?})")]
    NotWal { path: String, mode: String },
    #[error("{path}: invalid page size {page_size}")]
    PageSize { path: String, page_size: i64 },
    #[error("{path}: {source}")]
    Wal { path: String, source: WalError },
}

impl DbError {
    /// True if SQLite answered SQLITE_BUSY / SQLITE_LOCKED (another connection holds a lock).
    pub fn is_busy(&self) -> bool {
        match self {
            DbError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
            ),
            _ => false,
        }
    }

    /// True if the disk is full (ENOSPC / SQLITE_FULL).
    pub fn is_disk_full(&self) -> bool {
        match self {
            DbError::Sqlite { source, .. } => {
                matches!(source.sqlite_error_code(), Some(ErrorCode::DiskFull))
            }
            DbError::Io { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        }
    }
}

/// The replicator's connections and file handles for one database.
#[derive(Debug)]
pub struct Database {
    path: PathBuf,
    wal_path: PathBuf,
    display: String,
    reader: Connection,
    writer: Connection,
    pin: Connection,
    read_tx: bool,
    /// The process's read-only descriptor on the database file ([`shared_file`]).
    file: Arc<File>,
    page_size: u32,
}

/// A busy handler that retries every 100 µs (after a few yields) until `timeout`.
///
/// SQLite's default handler sleeps 1, 2, 5, 10, … 100 ms between attempts, so under a steady
/// stream of short write transactions (the server's writer) a connection waiting for the
/// write lock keeps losing the race for tens of milliseconds, and the barrier then has that
/// much more WAL to copy while it blocks writers. Retrying promptly takes the lock between two
/// commits.
fn eager_busy_handler(timeout: Duration) -> impl FnMut(i32) -> bool + Send + 'static {
    let mut started = std::time::Instant::now();
    move |count| {
        if count == 0 {
            started = std::time::Instant::now();
        }
        if started.elapsed() >= timeout {
            return false;
        }
        if count < 8 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
        true
    }
}

/// The `-wal` path of a database.
pub(crate) fn wal_path(db: &Path) -> PathBuf {
    with_suffix(db, "-wal")
}

/// `path` with `suffix` appended to its file name (`app.db` + `-wal` → `app.db-wal`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

impl Database {
    /// Attaches to the database at `path` (created if missing): WAL mode, bookkeeping
    /// tables, page size, the read transaction, and a WAL with at least a header.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Database, DbError> {
        let display = path.display().to_string();
        let sq = |context: &'static str| {
            let display = display.clone();
            move |source| DbError::Sqlite {
                path: display.clone(),
                context,
                source,
            }
        };
        let open = || -> Result<Connection, DbError> {
            let mut conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(sq("open"))?;
            conn.busy_handler(Some(eager_busy_handler(busy_timeout)))
                .map_err(sq("busy handler"))?;
            Checkpointer::Replicator
                .configure(&conn)
                .map_err(sq("wal_autocheckpoint"))?;
            Ok(conn)
        };
        let writer = open()?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode = wal", [], |r| r.get(0))
            .map_err(sq("journal_mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DbError::NotWal {
                path: display,
                mode,
            });
        }
        writer
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER);\n\
                 CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER);",
            )
            .map_err(sq("create _litestream tables"))?;
        let reader = open()?;
        let pin = open()?;
        let page_size: i64 = reader
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(sq("page_size"))?;
        let page_size = match u32::try_from(page_size) {
            Ok(p) if ltx::is_valid_page_size(p) => p,
            _ => {
                return Err(DbError::PageSize {
                    path: display,
                    page_size,
                });
            }
        };
        let file = shared_file(path).map_err(|source| DbError::Io {
            path: display.clone(),
            context: "open database file",
            source,
        })?;
        let mut db = Database {
            path: path.to_path_buf(),
            wal_path: wal_path(path),
            display,
            reader,
            writer,
            pin,
            read_tx: false,
            file,
            page_size,
        };
        db.acquire_read_lock()?;
        db.ensure_wal_exists()?;
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn wal_path(&self) -> &Path {
        &self.wal_path
    }

    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// Size of one WAL frame (24-byte header + page).
    pub fn frame_size(&self) -> u64 {
        crate::wal::FRAME_HEADER_SIZE + u64::from(self.page_size)
    }

    fn sqlite(&self, context: &'static str) -> impl Fn(rusqlite::Error) -> DbError + '_ {
        move |source| DbError::Sqlite {
            path: self.display.clone(),
            context,
            source,
        }
    }

    fn io(&self, context: &'static str) -> impl Fn(std::io::Error) -> DbError + '_ {
        move |source| DbError::Io {
            path: self.display.clone(),
            context,
            source,
        }
    }

    /// Starts the long-running read transaction (no-op if held).
    pub fn acquire_read_lock(&mut self) -> Result<(), DbError> {
        if self.read_tx {
            return Ok(());
        }
        begin_read(&self.reader).map_err(self.sqlite("read lock"))?;
        self.read_tx = true;
        Ok(())
    }

    /// True while the long-running read transaction is held.
    pub fn holds_read_lock(&self) -> bool {
        self.read_tx
    }

    /// Ends the read transaction (no-op if not held).
    pub fn release_read_lock(&mut self) -> Result<(), DbError> {
        if !self.read_tx {
            return Ok(());
        }
        self.read_tx = false;
        if self.reader.is_autocommit() {
            return Ok(());
        }
        self.reader
            .execute_batch("ROLLBACK")
            .map_err(self.sqlite("release read lock"))
    }

    /// Writes `_litestream_seq` (one small write transaction): forces a WAL header, and marks
    /// a checkpoint so the WAL restarts right away.
    pub fn bump_seq(&self) -> Result<(), DbError> {
        self.writer
            .execute(
                "INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) \
                 ON CONFLICT (id) DO UPDATE SET seq = seq + 1",
                [],
            )
            .map(|_| ())
            .map_err(self.sqlite("bump _litestream_seq"))
    }

    /// Makes sure the WAL has at least its 32-byte header.
    pub fn ensure_wal_exists(&self) -> Result<(), DbError> {
        if self.wal_size()? >= crate::wal::WAL_HEADER_SIZE {
            return Ok(());
        }
        self.bump_seq()
    }

    /// Pins the WAL: a read transaction on the pin connection (no-op if held). While it
    /// lasts no checkpoint copies frames committed after it began into the database file,
    /// and, holding a read mark, it keeps the WAL from restarting.
    pub fn begin_pin(&self) -> Result<(), DbError> {
        if !self.pin.is_autocommit() {
            return Ok(());
        }
        begin_read(&self.pin).map_err(self.sqlite("pin"))
    }

    /// Ends the pin (no-op if none is held).
    pub fn end_pin(&self) -> Result<(), DbError> {
        rollback(&self.pin).map_err(self.sqlite("end pin"))
    }

    /// Takes the barrier: a write transaction holding SQLite's write lock (waits up to the
    /// busy timeout). End it with [`Database::end_barrier`].
    pub fn begin_barrier(&self) -> Result<(), DbError> {
        self.writer
            .execute_batch("BEGIN")
            .map_err(self.sqlite("begin barrier"))?;
        if let Err(e) = self
            .writer
            .execute("INSERT INTO _litestream_lock (id) VALUES (1)", [])
        {
            let _ = self.writer.execute_batch("ROLLBACK");
            return Err(self.sqlite("_litestream_lock")(e));
        }
        Ok(())
    }

    /// Rolls the barrier back (nothing it wrote is ever committed).
    pub fn end_barrier(&self) -> Result<(), DbError> {
        rollback(&self.writer).map_err(self.sqlite("rollback barrier"))
    }

    /// Runs `PRAGMA wal_checkpoint(mode)` with the read transaction released for exactly that
    /// long (it is taken again even if the checkpoint fails).
    pub fn checkpoint(&mut self, mode: CheckpointMode) -> Result<CheckpointResult, DbError> {
        self.release_read_lock()?;
        let sql = format!("PRAGMA wal_checkpoint({})", mode.as_str());
        let result = self.reader.query_row(&sql, [], |r| {
            Ok(CheckpointResult {
                busy: r.get(0)?,
                log: r.get(1)?,
                checkpointed: r.get(2)?,
            })
        });
        let relock = self.acquire_read_lock();
        let result = result.map_err(self.sqlite("wal_checkpoint"))?;
        relock?;
        Ok(result)
    }

    /// Size of the WAL file (0 if it does not exist).
    pub fn wal_size(&self) -> Result<u64, DbError> {
        match std::fs::metadata(&self.wal_path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(self.io("stat WAL")(e)),
        }
    }

    /// The WAL's header; `None` if it is missing, short or not fully written.
    pub fn wal_header(&self) -> Result<Option<WalHeader>, DbError> {
        let file = match File::open(&self.wal_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io("open WAL")(e)),
        };
        match WalHeader::read(&file) {
            Ok(h) => Ok(Some(h)),
            Err(e) if e.is_empty_wal() => Ok(None),
            Err(source) => Err(DbError::Wal {
                path: self.display.clone(),
                source,
            }),
        }
    }

    /// The raw 32 WAL header bytes (to see whether a checkpoint restarted the WAL).
    pub fn wal_header_bytes(&self) -> Result<[u8; 32], DbError> {
        let mut buf = [0u8; 32];
        match File::open(&self.wal_path) {
            Ok(f) => {
                f.read_full_at(&mut buf, 0)
                    .map_err(self.io("read WAL header"))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io("open WAL")(e)),
        }
        Ok(buf)
    }

    /// Opens the WAL for reading.
    pub fn open_wal(&self) -> Result<File, DbError> {
        File::open(&self.wal_path).map_err(self.io("open WAL"))
    }

    /// Size of the database file.
    pub fn db_size(&self) -> Result<u64, DbError> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(self.io("stat database"))
    }

    /// The database file's modification time.
    pub fn db_mtime(&self) -> Result<SystemTime, DbError> {
        self.file
            .metadata()
            .and_then(|m| m.modified())
            .map_err(self.io("stat database"))
    }

    /// The read-only descriptor on the database file (shared with snapshots).
    pub fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    /// Reads page `pgno` from the database file into `page`; bytes past the end of the
    /// file read as zeros (a page SQLite never wrote).
    pub fn read_db_page(&self, pgno: u32, page: &mut [u8]) -> Result<(), DbError> {
        read_db_page(self.file.as_ref(), self.page_size, pgno, page)
            .map_err(self.io("read database page"))
    }

    /// Closes the connections (read transaction released).
    pub fn close(mut self) -> Result<(), DbError> {
        self.release_read_lock()?;
        let _ = self.end_barrier();
        let _ = self.end_pin();
        let Database {
            reader,
            writer,
            pin,
            display,
            ..
        } = self;
        let err = |source| DbError::Sqlite {
            path: display.clone(),
            context: "close",
            source,
        };
        writer.close().map_err(|(_, e)| err(e))?;
        pin.close().map_err(|(_, e)| err(e))?;
        reader.close().map_err(|(_, e)| err(e))?;
        Ok(())
    }
}

/// Starts a read transaction on `conn` (`BEGIN` and a read, as Litestream does).
fn begin_read(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN")?;
    let read = conn.query_row("SELECT COUNT(1) FROM _litestream_seq", [], |r| {
        r.get::<_, i64>(0)
    });
    if let Err(e) = read {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(e);
    }
    Ok(())
}

/// Rolls back the transaction open on `conn`, if any.
fn rollback(conn: &Connection) -> rusqlite::Result<()> {
    if conn.is_autocommit() {
        return Ok(());
    }
    conn.execute_batch("ROLLBACK")
}

/// The process's one read-only descriptor on a database file, opened on first use and never
/// closed.
///
/// SQLite's locks are POSIX advisory locks, which belong to the process: closing *any*
/// descriptor of the file releases every lock the process's SQLite connections hold on it
/// (SQLite guards its own descriptors against this, but cannot see ours). Another process
/// could then checkpoint and delete the WAL under us. So raw reads of a database file go
/// through this descriptor, which stays open for the life of the process (keyed by device
/// and inode, so a database replaced by a restore gets a new one).
pub(crate) fn shared_file(path: &Path) -> std::io::Result<Arc<File>> {
    type Files = HashMap<(u64, u64), Arc<File>>;
    static FILES: OnceLock<Mutex<Files>> = OnceLock::new();
    let files = FILES.get_or_init(|| Mutex::new(HashMap::new()));
    let meta = std::fs::metadata(path)?;
    let key = (meta.dev(), meta.ino());
    let mut files = files.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(f) = files.get(&key) {
        return Ok(f.clone());
    }
    let file = File::open(path)?;
    let opened = file.metadata()?;
    let file = Arc::new(file);
    // Keep it whatever inode it turned out to be (never close a database descriptor).
    files.insert((opened.dev(), opened.ino()), file.clone());
    Ok(file)
}

/// Reads page `pgno` of a database file; past-the-end bytes read as zeros.
pub(crate) fn read_db_page<R: ReadAt + ?Sized>(
    file: &R,
    page_size: u32,
    pgno: u32,
    page: &mut [u8],
) -> std::io::Result<()> {
    let offset = u64::from(pgno.saturating_sub(1)) * u64::from(page_size);
    let mut done = 0;
    while done < page.len() {
        match file.read_at(&mut page[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    page[done..].fill(0);
    Ok(())
}
