//! Adopting the replica's position at start-up, safely against other writers: what start-up
//! hands the replicator ([`Adoption`]) and the check, once the replicator holds its read
//! lock, that nothing written to the database since start-up looked at it can be missed.
//!
//! Adoption records the replica's newest L0 file as the local position, re-headed to the
//! current WAL at its start (offset 32), so the first sync reads every committed frame of
//! the WAL as the next TXID. That is complete only if every commit since the database was
//! compared with (or restored from) the replica is still in the WAL. Another process (the
//! sqlite3 shell, whose last connection checkpoints and deletes the WAL on close) can write,
//! checkpoint and restart the WAL in between: its commit is then in the database file only
//! and would never reach the replica.
//!
//! So start-up holds a read transaction on the database from the moment it looks at it
//! ([`ReadGuard`]): while it is held no other connection can restart the WAL or copy frames
//! the guard cannot see into the database file. Start-up also records the database file's
//! identity, size and change times and the WAL's salts ([`LocalState`]). Once the
//! replicator holds its own read lock, the adoption stands if the database file was not
//! written since, or if the WAL was not restarted since (same salts: every frame written
//! since is still in it); otherwise the first sync writes a full L0 file (every page), which
//! misses nothing.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

use crate::db_attachment::wal_path;
use crate::level::LtxFileInfo;
use crate::wal::{Salt, WalHeader};

/// The replica's newest L0 file to adopt as the local position, and the local database as
/// start-up left it.
#[derive(Debug, Clone)]
pub struct Adoption {
    /// The replica's newest L0 file (a single TXID, the replica's newest).
    pub file: LtxFileInfo,
    /// The local database when start-up looked at it.
    pub seen: LocalState,
    /// Held until the replicator holds its own read lock.
    guard: Option<Arc<ReadGuard>>,
}

impl Adoption {
    /// Takes the guard on the database at `db`, then reads its state (blocking): call it
    /// before comparing the database with the replica, or right after restoring it.
    pub fn begin(db: &Path, file: LtxFileInfo) -> std::io::Result<Adoption> {
        let guard = ReadGuard::take(db).map(Arc::new);
        Ok(Adoption {
            file,
            seen: LocalState::read(db)?,
            guard,
        })
    }

    /// Whether the adoption still stands (blocking; call it once the replicator holds its
    /// read lock): nothing written to the database since [`Adoption::begin`] can be missed
    /// by a sync from the start of the WAL. Releases the guard.
    pub fn holds(self, db: &Path) -> std::io::Result<bool> {
        let now = LocalState::read(db)?;
        drop(self.guard);
        Ok(self.seen.allows(&now))
    }
}

/// The database file's identity, size and modification and change times, and the salts of
/// its WAL (`None`: no WAL, or not even a header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalState {
    db: [i64; 7],
    wal: Option<Salt>,
}

impl LocalState {
    /// Reads the state of the database at `db` (blocking).
    pub fn read(db: &Path) -> std::io::Result<LocalState> {
        let m = std::fs::metadata(db)?;
        let wal = File::open(wal_path(db))
            .ok()
            .and_then(|f| WalHeader::read(&f).ok())
            .map(|h| h.salt);
        Ok(LocalState {
            db: [
                m.dev() as i64,
                m.ino() as i64,
                m.size() as i64,
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            ],
            wal,
        })
    }

    /// True if a sync from the start of the WAL of `now` misses nothing committed since
    /// `self`: the database file was not written (every commit since is in the WAL), or the
    /// WAL was not restarted (it had a header then and has the same salts now, so every
    /// frame written since is still in it).
    pub fn allows(&self, now: &LocalState) -> bool {
        self.db == now.db || (self.wal.is_some() && self.wal == now.wal)
    }
}

/// A read transaction on a WAL-mode database, on a connection of its own that never
/// checkpoints: while it is held, no other connection can restart the WAL, and frames it
/// cannot see cannot be copied into the database file.
pub(crate) struct ReadGuard {
    conn: Mutex<Connection>,
}

impl fmt::Debug for ReadGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadGuard").finish_non_exhaustive()
    }
}

impl ReadGuard {
    /// The guard, or `None` if the database is not in WAL mode (a read transaction would
    /// then block the switch to WAL mode) or cannot be read; [`LocalState`] alone then
    /// tells whether the database changed.
    pub(crate) fn take(db: &Path) -> Option<ReadGuard> {
        let conn = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ok()?;
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .ok()?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .ok()?;
        if !mode.eq_ignore_ascii_case("wal") {
            return None;
        }
        conn.execute_batch("BEGIN").ok()?;
        conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .ok()?;
        Some(ReadGuard {
            conn: Mutex::new(conn),
        })
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        if let Ok(conn) = self.conn.get_mut() {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(db: [i64; 7], wal: Option<u32>) -> LocalState {
        LocalState {
            db,
            wal: wal.map(|s| Salt {
                salt1: s,
                salt2: !s,
            }),
        }
    }

    #[test]
    fn an_adoption_stands_if_the_database_file_or_the_wal_generation_is_unchanged() {
        let (a, b) = ([1, 2, 4096, 10, 0, 10, 0], [1, 2, 4096, 10, 0, 11, 5]);
        // Nothing written into the database file: every commit since is in the WAL.
        assert!(state(a, None).allows(&state(a, Some(7))));
        assert!(state(a, Some(7)).allows(&state(a, Some(8))));
        // Written into (a checkpoint), but the WAL was not restarted: still all in it.
        assert!(state(a, Some(7)).allows(&state(b, Some(7))));
        // Written into and the WAL restarted or gone: a commit may be in the file only.
        assert!(!state(a, Some(7)).allows(&state(b, Some(8))));
        assert!(!state(a, Some(7)).allows(&state(b, None)));
        assert!(!state(a, None).allows(&state(b, None)));
        assert!(!state(a, None).allows(&state(b, Some(7))));
    }
}
