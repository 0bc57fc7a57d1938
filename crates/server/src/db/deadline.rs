//! A time limit for the statements of one connection, enforced by SQLite's progress handler:
//! once the armed instant has passed, the running statement is interrupted (SQLITE_INTERRUPT,
//! answered 504 57014). Used by read connections and by the writer.

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

/// The deadline of one connection (nanoseconds since a process epoch; 0 = none).
pub struct Deadline(Arc<AtomicU64>);

impl Deadline {
    /// Installs the progress handler on `conn`.
    pub fn install(conn: &mut Connection) -> rusqlite::Result<Deadline> {
        let at = Arc::new(AtomicU64::new(0));
        let d = at.clone();
        conn.progress_handler(
            PROGRESS_STEPS,
            Some(move || {
                let at = d.load(Ordering::Relaxed);
                at != 0 && nanos(Instant::now()) > at
            }),
        )?;
        Ok(Deadline(at))
    }

    /// Runs `f` with statements interrupted after `at`.
    pub fn run<T>(&self, at: Instant, f: impl FnOnce() -> T) -> T {
        self.0.store(nanos(at), Ordering::Relaxed);
        let r = f();
        self.0.store(0, Ordering::Relaxed);
        r
    }
}
