//! Embedded replication in `serve` (and `demo`): the glue between the server and the
//! `replication` crate.
//!
//! - [`start`] runs before the database is opened: it reads `--replication-config`
//!   (Litestream's YAML), finds the entry for `--db-dsn`, probes the replica, restores or
//!   lineage-checks the database, and starts replicating. Every failure is a start-up error
//!   that says what is wrong.
//! - [`report_health`] keeps the `replication` component of `/health` current (lag,
//!   positions, which operations fail and how often, never error texts); it is not ok while
//!   anything is failing.
//! - [`forward_commits`] turns the writer's commit notices into
//!   [`replication::ReplicationHandle::notify_commit`] calls, so commits reach the replica at
//!   once instead of at the next poll.
//!
//! The shutdown order lives in [`crate::serve`]: stop serving (synchronous writes still wait
//! for the replica, at most `shutdown-sync-timeout`), finish writes, close the server's
//! connections, then [`replication::Replicator::shutdown`] (final sync, bounded by
//! `shutdown-sync-timeout`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use replication::{CommitNotice, ReplicationHandle, Replicator, ReplicatorOptions};
use replication::{Config, LoadOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::admin::HealthReport;

/// `--replication-enabled --replication-config FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationSettings {
    pub config_path: PathBuf,
}

/// The database file of a Go-style DSN (a path, or a `file:` URI whose parameters are
/// dropped), made absolute.
pub fn db_path(dsn: &str) -> anyhow::Result<PathBuf> {
    let name = crate::database::open::sqlite_filename(dsn);
    let path = match name.strip_prefix("file:") {
        Some(rest) => {
            let rest = rest.split_once('?').map_or(rest, |(p, _)| p);
            let rest = rest.strip_prefix("//localhost").unwrap_or(rest);
            let rest = match rest.strip_prefix("//") {
                Some(r) if r.starts_with('/') => r,
                _ => rest,
            };
            percent_encoding::percent_decode_str(rest)
                .decode_utf8()
                .context("the --db-dsn path is not valid UTF-8 after percent-decoding")?
                .into_owned()
        }
        None => name.to_string(),
    };
    if path.is_empty() || path == ":memory:" || path.contains("mode=memory") {
        anyhow::bail!("replication needs a database file; --db-dsn {dsn:?} names none");
    }
    let path = PathBuf::from(path);
    Ok(if path.is_absolute() {
        path
    } else {
        std::env::current_dir()?.join(path)
    })
}

/// Replication, started.
pub struct Started {
    pub replicator: Replicator,
    /// The config's `shutdown-sync-timeout`: how long shutdown waits for the replica.
    pub shutdown_sync_timeout: Duration,
}

/// Loads the config, then restores / lineage-checks the database and starts replicating it;
/// `wrap_client` wraps the replica client ([`ReplicatorOptions::wrap_client`]);
/// `create_database` false refuses to start a new, empty database when there is none and
/// the replica is empty (`--db-must-exist`).
pub async fn start(
    settings: &ReplicationSettings,
    dsn: &str,
    registry: &prometheus::Registry,
    wrap_client: Option<replication::WrapClient>,
    create_database: bool,
) -> anyhow::Result<Started> {
    let config = Config::load(&settings.config_path, LoadOptions::default())
        .with_context(|| format!("--replication-config {}", settings.config_path.display()))?;
    for (key, why) in config.ignored_settings() {
        tracing::warn!(
            key,
            reason = why,
            "replication config setting has no effect"
        );
    }
    let db = db_path(dsn)?;
    let shutdown_sync_timeout = config.shutdown_sync_timeout;
    let mut options = ReplicatorOptions::new(config, &db).map_err(anyhow::Error::msg)?;
    options.registry = Some(registry.clone());
    options.wrap_client = wrap_client;
    options.create_database = create_database;
    options.restore_progress = Some(Arc::new(|p: replication::restore::RestoreProgress| {
        tracing::info!(
            files = p.files_done,
            files_total = p.files_total,
            mb = p.bytes as f64 / 1e6,
            mb_total = p.bytes_total as f64 / 1e6,
            elapsed_s = p.elapsed.as_secs_f64(),
            "restore in progress"
        );
    }));
    let replicator = Replicator::start(options)
        .await
        .with_context(|| format!("replication of {}", db.display()))?;
    Ok(Started {
        replicator,
        shutdown_sync_timeout,
    })
}

/// The `replication` component of `/health`. The admin port needs no token, so it says which
/// operation fails, since when and how often, never the error's text (an object store's
/// answer may carry account names, keys in URLs, request ids): that is in the logs.
pub fn health_json(handle: &ReplicationHandle) -> serde_json::Value {
    let s = handle.status();
    let failing: Vec<serde_json::Value> = s
        .failures
        .iter()
        .map(|f| {
            serde_json::json!({
                "operation": f.component.as_str(),
                "since": chrono::DateTime::<chrono::Utc>::from(f.since).to_rfc3339(),
                "errors": f.consecutive,
            })
        })
        .collect();
    let mut v = serde_json::json!({
        "ok": s.healthy,
        "replica": s.replica,
        "lag_ms": s.lag.as_millis() as u64,
        "local_txid": s.positions.local_txid.to_string(),
        "replicated_txid": s.positions.replicated_txid.to_string(),
        "retry_window_s": s.retry_window.as_secs(),
        "failing": failing,
    });
    if let Some(t) = s.last_upload {
        v["last_upload"] = chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339().into();
    }
    if let Some(f) = s.fatal {
        v["fatal"] = serde_json::json!({
            "operation": f.component.as_str(),
            "failing_for_s": f.failing_for.as_secs(),
        });
    }
    v
}

/// Keeps `/health`'s `replication` entry current until `stop`.
pub async fn report_health(
    handle: ReplicationHandle,
    health: Arc<HealthReport>,
    stop: CancellationToken,
) {
    loop {
        health.set("replication", health_json(&handle));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Forwards the writer's commit notices (a `watch` of its latest commit) to the replicator.
/// Ends when the writer goes away.
pub async fn forward_commits(
    mut commits: watch::Receiver<CommitNotice>,
    handle: ReplicationHandle,
) {
    while commits.changed().await.is_ok() {
        let n = *commits.borrow_and_update();
        handle.notify_commit(n);
    }
}

/// True if the file replica at `replica_dir` holds any LTX file, i.e. a missing database
/// can be restored from it (used by `demo`).
pub fn replica_has_files(replica_dir: &Path) -> bool {
    std::fs::read_dir(replica_dir.join("ltx")).is_ok_and(|mut d| d.next().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_to_path() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            db_path("/data/app.db").unwrap(),
            PathBuf::from("/data/app.db")
        );
        assert_eq!(db_path("app.db?_fk=1").unwrap(), cwd.join("app.db"));
        assert_eq!(
            db_path("file:/data/my%20app.db?cache=shared").unwrap(),
            PathBuf::from("/data/my app.db")
        );
        assert_eq!(
            db_path("file:///data/a.db").unwrap(),
            PathBuf::from("/data/a.db")
        );
        assert_eq!(db_path("file:rel.db").unwrap(), cwd.join("rel.db"));
        assert!(db_path(":memory:").is_err());
        assert!(db_path("file::memory:?cache=shared").is_err());
    }
}
