//! Time limits for the statements of one connection.
//!
//! The *hard* limit is SQLite's progress handler: once the armed instant has passed, the
//! running statement is interrupted (SQLITE_INTERRUPT, answered 504 57014). An interrupted
//! statement that writes rolls back the whole transaction, which is fine for a read and for a
//! write alone in its transaction, but not for the writer's group commit, where one request's
//! interrupt would undo the others'. So the writer also arms a *soft* limit: every write
//! statement calls `pgrst_budget()` on each candidate row
//! ([`dialect::register_budget`]), which fails the statement once the soft instant
//! has passed; SQLite then rolls back that statement only and the writer rolls back that
//! request's savepoint. The hard limit stays armed a little later as the backstop for work
//! outside any row loop.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rusqlite::Connection;

/// VM steps between two checks of the deadline.
const PROGRESS_STEPS: i32 = 1000;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn nanos(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// True once the armed instant (nanoseconds since a process epoch; 0 = none) has passed.
fn passed(armed: &AtomicU64) -> bool {
    let at = armed.load(Ordering::Relaxed);
    at != 0 && nanos(Instant::now()) > at
}

/// The deadlines of one connection.
pub struct Deadline {
    hard: Arc<AtomicU64>,
    soft: Arc<AtomicU64>,
}

impl Deadline {
    /// Installs the progress handler (the hard limit) on `conn`.
    pub fn install(conn: &mut Connection) -> rusqlite::Result<Deadline> {
        let hard = Arc::new(AtomicU64::new(0));
        let h = hard.clone();
        conn.progress_handler(PROGRESS_STEPS, Some(move || passed(&h)))?;
        Ok(Deadline {
            hard,
            soft: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Also installs the soft limit: `pgrst_budget()` on `conn` fails once it has passed.
    pub fn install_soft(&self, conn: &Connection) -> rusqlite::Result<()> {
        let soft = self.soft.clone();
        dialect::register_budget(conn, move || !passed(&soft))
    }

    /// Runs `f` with statements interrupted after `at`.
    pub fn run<T>(&self, at: Instant, f: impl FnOnce() -> T) -> T {
        self.hard.store(nanos(at), Ordering::Relaxed);
        let r = f();
        self.hard.store(0, Ordering::Relaxed);
        r
    }

    /// Runs `f` with write statements stopped (statement rolled back) after `soft`, and any
    /// statement interrupted after `hard`.
    pub fn run_soft<T>(&self, soft: Instant, hard: Instant, f: impl FnOnce() -> T) -> T {
        self.soft.store(nanos(soft), Ordering::Relaxed);
        let r = self.run(hard, f);
        self.soft.store(0, Ordering::Relaxed);
        r
    }
}
