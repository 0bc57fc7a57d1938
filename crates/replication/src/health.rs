//! Failure tracking: every replication component retries its errors with exponential
//! backoff, and a component that keeps failing for longer than the retry window makes
//! replication fail for good (there is no degraded mode: the owner stops taking writes and
//! exits non-zero).
//!
//! A component is failing from its first error until its next success. A hang is an error
//! too: every replica operation has a deadline ([`crate::client::deadline`]), and an
//! operation cut by it counts as failing from the moment it got stuck
//! ([`Health::error_stalled`]), so a replica that stops answering reaches the window as soon
//! as one that answers with errors. The window defaults
//! to [`DEFAULT_RETRY_WINDOW`] (60 s) and can be changed with the environment variable
//! [`RETRY_WINDOW_ENV`] (`SQLITEREST_REPLICATION_RETRY_WINDOW`, a Go duration such as `90s`).
//! Errors are logged at their first occurrence and then at most every
//! [`ERROR_LOG_INTERVAL`]; recoveries are logged too.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::db_metrics::DbMetrics;

/// How long a component may keep failing before replication gives up.
pub(crate) const DEFAULT_RETRY_WINDOW: Duration = Duration::from_secs(60);
/// Environment variable overriding [`DEFAULT_RETRY_WINDOW`] (Go duration syntax).
pub(crate) const RETRY_WINDOW_ENV: &str = "SQLITEREST_REPLICATION_RETRY_WINDOW";
/// Repeated errors of one component are logged at most this often.
pub(crate) const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// First retry delay; doubles per consecutive failure up to [`MAX_BACKOFF`].
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(200);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The retry window from [`RETRY_WINDOW_ENV`], or the default.
pub(crate) fn retry_window_from_env() -> Result<Duration, String> {
    positive_duration_env(RETRY_WINDOW_ENV, DEFAULT_RETRY_WINDOW)
}

/// A positive Go duration (`90s`, `2m`) from the environment variable `name`, or `default`
/// when it is unset or empty.
pub(crate) fn positive_duration_env(name: &str, default: Duration) -> Result<Duration, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            crate::litestream_config::units::GoDuration::parse(v.trim())
                .ok()
                .and_then(|d| d.to_std())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("{name}={v:?} is not a positive duration (e.g. 60s, 2m)"))
        }
        _ => Ok(default),
    }
}

/// The parts of replication that fail and recover independently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    /// WAL → local L0 files (and checkpoints).
    Sync,
    /// Local L0 files → replica.
    Upload,
    /// The active reachability check of the replica.
    Probe,
    /// Compaction into levels 1..8.
    Compaction,
    /// Snapshots (level 9).
    Snapshot,
    /// Snapshot and L0 retention.
    Retention,
}

impl Component {
    /// The `operation` label of `sqlite_rest_replication_errors_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Sync => "sync",
            Component::Upload => "upload",
            Component::Probe => "probe",
            Component::Compaction => "compaction",
            Component::Snapshot => "snapshot",
            Component::Retention => "retention",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failing component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub component: Component,
    /// When it started failing.
    pub since: SystemTime,
    pub consecutive: u32,
    pub last_error: String,
}

/// Replication gave up: a component failed for longer than the retry window, or at once on
/// an error no retry can mend (`failing_for` zero: a panic, another writer on the replica).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("replication failed: {}", describe_fatal(self))]
pub struct FatalError {
    pub component: Component,
    pub failing_for: Duration,
    pub window: Duration,
    pub last_error: String,
}

fn describe_fatal(f: &FatalError) -> String {
    if f.failing_for.is_zero() {
        return format!("{}: {}", f.component, f.last_error);
    }
    format!(
        "{} has been failing for {}s (retry window {}s): {}",
        f.component,
        f.failing_for.as_secs(),
        f.window.as_secs(),
        f.last_error
    )
}

#[derive(Debug)]
struct Tracked {
    since: Instant,
    since_wall: SystemTime,
    consecutive: u32,
    last_error: String,
    last_logged: Instant,
}

/// The failure tracker shared by every replication task.
#[derive(Debug)]
pub(crate) struct Health {
    window: Duration,
    failing: Mutex<BTreeMap<Component, Tracked>>,
    fatal: watch::Sender<Option<FatalError>>,
    metrics: Option<DbMetrics>,
    db: String,
}

impl Health {
    pub(crate) fn new(window: Duration, metrics: Option<DbMetrics>, db: String) -> Health {
        let (fatal, _) = watch::channel(None);
        Health {
            window,
            failing: Mutex::new(BTreeMap::new()),
            fatal,
            metrics,
            db,
        }
    }

    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    /// Records an error of `component`; returns how long to wait before retrying.
    pub(crate) fn error(&self, component: Component, error: &dyn fmt::Display) -> Duration {
        self.error_stalled(component, error, Duration::ZERO)
    }

    /// Records an error of an operation that had been stuck for `stalled` before it failed
    /// (a hang cut by its deadline): a component that was working fails from the moment it
    /// got stuck, so a hang reaches the retry window as soon as an error would.
    pub(crate) fn error_stalled(
        &self,
        component: Component,
        error: &dyn fmt::Display,
        stalled: Duration,
    ) -> Duration {
        if let Some(m) = &self.metrics {
            m.error(component.as_str());
        }
        let now = Instant::now();
        let since = now.checked_sub(stalled).unwrap_or(now);
        let since_wall = SystemTime::now()
            .checked_sub(now.duration_since(since))
            .unwrap_or_else(SystemTime::now);
        let message = error.to_string();
        let mut failing = self.failing.lock();
        let entry = failing.entry(component).or_insert_with(|| Tracked {
            since,
            since_wall,
            consecutive: 0,
            last_error: String::new(),
            last_logged: now - ERROR_LOG_INTERVAL - Duration::from_secs(1),
        });
        entry.consecutive += 1;
        entry.last_error = message;
        if now.duration_since(entry.last_logged) >= ERROR_LOG_INTERVAL {
            entry.last_logged = now;
            tracing::error!(
                db = %self.db,
                operation = component.as_str(),
                error = %entry.last_error,
                consecutive_errors = entry.consecutive,
                failing_for_s = now.duration_since(entry.since).as_secs(),
                retry_window_s = self.window.as_secs(),
                "replication error, retrying"
            );
        }
        backoff(entry.consecutive)
    }

    /// Records a success of `component`.
    pub(crate) fn ok(&self, component: Component) {
        let mut failing = self.failing.lock();
        if let Some(t) = failing.remove(&component) {
            tracing::info!(
                db = %self.db,
                operation = component.as_str(),
                previous_errors = t.consecutive,
                failed_for_ms = t.since.elapsed().as_millis() as u64,
                "replication recovered"
            );
        }
    }

    /// True if any component is failing.
    pub(crate) fn any_failing(&self) -> bool {
        !self.failing.lock().is_empty()
    }

    /// The failing components.
    pub(crate) fn failures(&self) -> Vec<Failure> {
        self.failing
            .lock()
            .iter()
            .map(|(c, t)| Failure {
                component: *c,
                since: t.since_wall,
                consecutive: t.consecutive,
                last_error: t.last_error.clone(),
            })
            .collect()
    }

    /// Checks the window; the first time a component exceeds it, replication becomes fatal.
    pub(crate) fn check(&self) -> Option<FatalError> {
        if let Some(f) = self.fatal.borrow().clone() {
            return Some(f);
        }
        let failing = self.failing.lock();
        let worst = failing
            .iter()
            .max_by_key(|(_, t)| t.since.elapsed())
            .filter(|(_, t)| t.since.elapsed() >= self.window)?;
        let fatal = FatalError {
            component: *worst.0,
            failing_for: worst.1.since.elapsed(),
            window: self.window,
            last_error: worst.1.last_error.clone(),
        };
        drop(failing);
        self.set_fatal(fatal.clone());
        Some(fatal)
    }

    /// Makes replication fail now (an unrecoverable error).
    pub(crate) fn set_fatal(&self, fatal: FatalError) {
        self.fatal.send_if_modified(|f| {
            if f.is_none() {
                tracing::error!(db = %self.db, error = %fatal, "replication failed; giving up");
                *f = Some(fatal);
                true
            } else {
                false
            }
        });
    }

    pub(crate) fn fatal(&self) -> Option<FatalError> {
        self.fatal.borrow().clone()
    }

    /// Waits until replication is fatal.
    pub(crate) async fn wait_fatal(&self) -> FatalError {
        let mut rx = self.fatal.subscribe();
        loop {
            if let Some(f) = rx.borrow_and_update().clone() {
                return f;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as `self`; unreachable in practice.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Exponential backoff for the `n`th consecutive failure (n ≥ 1).
pub(crate) fn backoff(n: u32) -> Duration {
    let factor = 1u32 << n.saturating_sub(1).min(10);
    (MIN_BACKOFF * factor).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_failing_past_the_window_is_fatal() {
        let h = Health::new(Duration::from_millis(50), None, "db".into());
        assert_eq!(h.error(Component::Upload, &"boom"), MIN_BACKOFF);
        assert_eq!(h.error(Component::Upload, &"boom"), MIN_BACKOFF * 2);
        assert!(h.check().is_none());
        h.ok(Component::Upload);
        h.error(Component::Probe, &"unreachable");
        std::thread::sleep(Duration::from_millis(60));
        let f = h.check().unwrap();
        assert_eq!(f.component, Component::Probe);
        assert!(f.to_string().contains("unreachable"), "{f}");
        assert_eq!(backoff(30), MAX_BACKOFF);
    }

    #[test]
    fn a_hang_fails_from_when_it_got_stuck() {
        let h = Health::new(Duration::from_secs(5), None, "db".into());
        // A hang cut after 6 s is past a 5 s window at once; an answered error is not.
        h.error(Component::Probe, &"refused");
        h.error_stalled(Component::Upload, &"no progress", Duration::from_secs(6));
        let f = h.check().unwrap();
        assert_eq!(f.component, Component::Upload);
        assert!(f.failing_for >= Duration::from_secs(6), "{f:?}");
    }
}
