//! Who checkpoints the database, when, and in which mode: the one place that decides it.
//!
//! **Who** ([`Checkpointer`]), for the connections of this process:
//! - without replication, SQLite's automatic checkpoint: the connection that commits runs a
//!   PASSIVE checkpoint once the commit leaves [`AUTOCHECKPOINT_FRAMES`] frames (SQLite's
//!   default) in the WAL. A connection with a WAL hook of its own replaces SQLite's, so it
//!   asks [`Checkpointer::checkpoint_after_commit`] and runs it itself;
//! - with replication, the replicator, and nobody else: every other read-write connection of
//!   the process runs with `wal_autocheckpoint = 0` and keeps the WAL when it closes, so a
//!   restart continues incrementally ([`Checkpointer::configure`]). Other processes may still
//!   write and checkpoint in any mode at any moment; the replicator stays safe against that
//!   by how it takes its own checkpoints ([`crate::sync`]).
//!
//! **When and in which mode** the replicator checkpoints ([`Policy`], Litestream's rules and
//! settings), evaluated after a sync that read the WAL to its end (or one cut short with the
//! WAL past the TRUNCATE threshold):
//! 1. the WAL holds `truncate-page-n` frames: PASSIVE first (skipped after a PASSIVE that
//!    could not restart the WAL); if the WAL is still past the threshold, TRUNCATE. Always
//!    honoured;
//! 2. otherwise at most once per `monitor-interval`: PASSIVE once the synced WAL holds
//!    `min-checkpoint-page-count` frames;
//! 3. or PASSIVE when the database file is older than `checkpoint-interval`, something was
//!    synced since the last checkpoint and the WAL holds more than one frame.
//!
//! Never RESTART (it blocks writers until every reader is done). How a checkpoint is taken
//! without losing a commit is [`crate::sync`]'s business.

use std::time::Duration;

use rusqlite::{Connection, FileControl};

use crate::litestream_config::DbConfig;
use crate::wal::WAL_HEADER_SIZE;

/// SQLite's default `wal_autocheckpoint`: frames after which a commit checkpoints.
pub(crate) const AUTOCHECKPOINT_FRAMES: u32 = 1000;

/// Who checkpoints the database among this process's connections. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpointer {
    /// SQLite's automatic checkpoint: PASSIVE, by the committing connection, once a commit
    /// leaves at least `frames` frames in the WAL.
    Sqlite { frames: u32 },
    /// The replicator, alone.
    Replicator,
}

impl Default for Checkpointer {
    fn default() -> Self {
        Checkpointer::Sqlite {
            frames: AUTOCHECKPOINT_FRAMES,
        }
    }
}

impl Checkpointer {
    /// The checkpointer of a server that replicates (`true`) or not.
    pub fn for_replication(replicated: bool) -> Checkpointer {
        if replicated {
            Checkpointer::Replicator
        } else {
            Checkpointer::default()
        }
    }

    /// Sets up a read-write connection of this process (read-only connections never
    /// checkpoint).
    pub fn configure(self, conn: &Connection) -> rusqlite::Result<()> {
        match self {
            Checkpointer::Sqlite { frames } => {
                conn.pragma_update(None, "wal_autocheckpoint", frames)
            }
            Checkpointer::Replicator => {
                conn.pragma_update(None, "wal_autocheckpoint", 0)?;
                let mut persist: std::ffi::c_int = 1;
                conn.file_control(None::<&str>, FileControl::PersistWal(&mut persist))
            }
        }
    }

    /// The checkpointer a connection was set up for by [`Checkpointer::configure`].
    pub fn of(conn: &Connection) -> rusqlite::Result<Checkpointer> {
        let frames: i64 = conn.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))?;
        Ok(match u32::try_from(frames) {
            Ok(frames) if frames > 0 => Checkpointer::Sqlite { frames },
            _ => Checkpointer::Replicator,
        })
    }

    /// Whether the connection that just committed, leaving `wal_frames` frames in the WAL,
    /// runs a PASSIVE checkpoint now (SQLite's automatic checkpoint, for a connection whose
    /// WAL hook replaced it).
    pub fn checkpoint_after_commit(self, wal_frames: u64) -> bool {
        match self {
            Checkpointer::Sqlite { frames } => wal_frames >= u64::from(frames),
            Checkpointer::Replicator => false,
        }
    }
}

/// When the replicator checkpoints, and in which mode (the `dbs[]` settings). See the module
/// docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// PASSIVE once the synced WAL holds this many frames (`min-checkpoint-page-count`).
    pub min_checkpoint_page_count: u32,
    /// TRUNCATE once the WAL holds this many frames (`truncate-page-n`; 0: never).
    pub truncate_page_n: u32,
    /// PASSIVE when the database file is older than this and something was synced since the
    /// last checkpoint (`checkpoint-interval`; zero: never).
    pub checkpoint_interval: Duration,
    /// Checkpoints by the rules after the TRUNCATE threshold run at most this often
    /// (`monitor-interval`: as often as Litestream evaluates them; syncs run more often).
    pub min_checkpoint_gap: Duration,
}

impl Policy {
    pub fn from_config(db: &DbConfig) -> Policy {
        Policy {
            min_checkpoint_page_count: db.min_checkpoint_page_count,
            truncate_page_n: if db.truncate_page_n == 0 {
                crate::litestream_config::defaults::TRUNCATE_PAGE_N
            } else {
                db.truncate_page_n
            },
            checkpoint_interval: db.checkpoint_interval,
            min_checkpoint_gap: db.monitor_interval,
        }
    }

    /// True if a WAL of `wal_size` bytes is past the TRUNCATE threshold.
    pub fn exceeds_truncate(&self, wal_size: u64, frame_size: u64) -> bool {
        self.truncate_page_n > 0 && wal_size >= wal_bytes(self.truncate_page_n, frame_size)
    }

    /// The checkpoint due after a sync, if any; `db_age` (the database file's age) is asked
    /// only when the interval rule needs it.
    pub fn due<E>(
        &self,
        wal: &WalAfterSync,
        db_age: impl FnOnce() -> Result<Option<Duration>, E>,
    ) -> Result<Option<Due>, E> {
        let fs = wal.frame_size;
        if self.exceeds_truncate(wal.size_before_sync, fs) {
            return Ok(Some(Due::Truncate {
                passive_first: !wal.truncate_passive_failed,
            }));
        }
        if wal
            .since_last_checkpoint
            .is_some_and(|t| t < self.min_checkpoint_gap)
        {
            return Ok(None);
        }
        if wal.synced_end >= wal_bytes(self.min_checkpoint_page_count, fs) {
            return Ok(Some(Due::Passive));
        }
        if !self.checkpoint_interval.is_zero()
            && wal.synced_since_checkpoint
            && wal.synced_end > wal_bytes(1, fs)
            && db_age()?.is_some_and(|age| age > self.checkpoint_interval)
        {
            return Ok(Some(Due::Passive));
        }
        Ok(None)
    }

    /// After the PASSIVE that precedes a TRUNCATE: whether the TRUNCATE is still needed.
    pub fn truncate_after_passive(
        &self,
        restarted: bool,
        synced_end: u64,
        frame_size: u64,
    ) -> bool {
        !restarted || self.exceeds_truncate(synced_end, frame_size)
    }
}

impl Default for Policy {
    fn default() -> Self {
        use crate::litestream_config::defaults as d;
        Policy {
            min_checkpoint_page_count: d::MIN_CHECKPOINT_PAGE_COUNT,
            truncate_page_n: d::TRUNCATE_PAGE_N,
            checkpoint_interval: d::CHECKPOINT_INTERVAL,
            min_checkpoint_gap: d::MONITOR_INTERVAL,
        }
    }
}

/// What [`Policy::due`] looks at after a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalAfterSync {
    /// Bytes of one WAL frame.
    pub frame_size: u64,
    /// The WAL's logical size when the sync started (where the newest L0 file ended, or the
    /// file's size when that is unknown).
    pub size_before_sync: u64,
    /// Where the newest L0 file ends now.
    pub synced_end: u64,
    /// Time since the last checkpoint, if there was one.
    pub since_last_checkpoint: Option<Duration>,
    /// Something was synced since the last checkpoint.
    pub synced_since_checkpoint: bool,
    /// The PASSIVE before a TRUNCATE could not restart the WAL last time.
    pub truncate_passive_failed: bool,
}

/// A checkpoint [`Policy::due`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Passive,
    /// TRUNCATE, after a PASSIVE if `passive_first` (see
    /// [`Policy::truncate_after_passive`]).
    Truncate {
        passive_first: bool,
    },
}

/// Bytes of a WAL holding `frames` frames.
fn wal_bytes(frames: u32, frame_size: u64) -> u64 {
    WAL_HEADER_SIZE + u64::from(frames) * frame_size
}

#[cfg(test)]
mod tests {
    use super::*;

    const FS: u64 = 4096 + 24;

    fn wal(size_before_sync: u64, synced_end: u64) -> WalAfterSync {
        WalAfterSync {
            frame_size: FS,
            size_before_sync,
            synced_end,
            since_last_checkpoint: None,
            synced_since_checkpoint: true,
            truncate_passive_failed: false,
        }
    }

    fn frames(n: u64) -> u64 {
        WAL_HEADER_SIZE + n * FS
    }

    #[test]
    fn litestreams_rules_in_their_order() {
        let p = Policy {
            min_checkpoint_page_count: 10,
            truncate_page_n: 100,
            checkpoint_interval: Duration::from_secs(60),
            min_checkpoint_gap: Duration::from_secs(1),
        };
        let young = || Ok::<_, ()>(Some(Duration::from_secs(1)));
        let old = || Ok::<_, ()>(Some(Duration::from_secs(61)));
        assert_eq!(p.due(&wal(frames(5), frames(5)), young), Ok(None));
        // The PASSIVE threshold counts what is synced.
        assert_eq!(
            p.due(&wal(frames(5), frames(10)), young),
            Ok(Some(Due::Passive))
        );
        // The TRUNCATE threshold counts the WAL before the sync, and beats the gap.
        let mut w = wal(frames(100), frames(100));
        w.since_last_checkpoint = Some(Duration::ZERO);
        assert_eq!(
            p.due(&w, young),
            Ok(Some(Due::Truncate {
                passive_first: true
            }))
        );
        w.truncate_passive_failed = true;
        assert_eq!(
            p.due(&w, young),
            Ok(Some(Due::Truncate {
                passive_first: false
            }))
        );
        // The gap holds back the others.
        let mut w = wal(frames(5), frames(50));
        w.since_last_checkpoint = Some(Duration::from_millis(10));
        assert_eq!(p.due(&w, old), Ok(None));
        // The interval: an old database file, something synced, more than one frame.
        assert_eq!(
            p.due(&wal(frames(2), frames(2)), old),
            Ok(Some(Due::Passive))
        );
        assert_eq!(p.due(&wal(frames(1), frames(1)), old), Ok(None));
        let mut w = wal(frames(2), frames(2));
        w.synced_since_checkpoint = false;
        assert_eq!(p.due(&w, old), Ok(None));
        // The file's age is asked only when the interval rule needs it.
        assert_eq!(
            p.due(&wal(frames(5), frames(10)), || Err("not asked")),
            Ok(Some(Due::Passive))
        );
        // After the PASSIVE that precedes a TRUNCATE.
        assert!(!p.truncate_after_passive(true, frames(1), FS));
        assert!(p.truncate_after_passive(false, frames(1), FS));
        assert!(p.truncate_after_passive(true, frames(100), FS));
    }

    #[test]
    fn sqlite_checkpoints_after_commits_the_replicator_alone_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("c.db")).unwrap();
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .unwrap();
        for c in [
            Checkpointer::default(),
            Checkpointer::Sqlite { frames: 4 },
            Checkpointer::Replicator,
        ] {
            c.configure(&conn).unwrap();
            assert_eq!(Checkpointer::of(&conn).unwrap(), c);
        }
        assert!(Checkpointer::Sqlite { frames: 4 }.checkpoint_after_commit(4));
        assert!(!Checkpointer::Sqlite { frames: 4 }.checkpoint_after_commit(3));
        assert!(!Checkpointer::Replicator.checkpoint_after_commit(u64::MAX));
        assert_eq!(
            Checkpointer::for_replication(true),
            Checkpointer::Replicator
        );
        assert_eq!(
            Checkpointer::for_replication(false),
            Checkpointer::Sqlite {
                frames: AUTOCHECKPOINT_FRAMES
            }
        );
    }
}
