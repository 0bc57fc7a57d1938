//! What [`super::Replicator::start`] is given: [`ReplicatorOptions`] and its defaults.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::client::{NetworkOptions, ReplicaClient, ReplicaMetrics};
use crate::litestream_config::Config;
use crate::restore::{IntegrityCheck, ProgressFn};
use crate::sync::SyncHook;

use super::probe::PROBE_INTERVAL;

/// Everything [`Replicator::start`](super::Replicator::start) needs.
#[derive(Clone)]
pub struct ReplicatorOptions {
    /// The Litestream config (`--replication-config`).
    pub config: Config,
    /// The served database; must be one of `config.dbs`.
    pub db_path: PathBuf,
    /// Where the `litestream_*` and `sqlite_rest_replication_*` metrics are registered.
    pub registry: Option<prometheus::Registry>,
    /// Replica operation metrics; registered in `registry` when `None`.
    pub replica_metrics: Option<ReplicaMetrics>,
    /// See `crate::health`; default 60 s or `SQLITEREST_REPLICATION_RETRY_WINDOW`.
    pub retry_window: Duration,
    pub probe_interval: Duration,
    /// Network settings, and the deadline of every replica operation
    /// ([`NetworkOptions::operation_timeout`]: default 30 s or
    /// `SQLITEREST_REPLICATION_OPERATION_TIMEOUT`).
    pub network: NetworkOptions,
    /// Check run on a database restored at start-up (default: full `integrity_check`).
    pub restore_integrity_check: IntegrityCheck,
    /// Restore progress (start-up restores).
    pub restore_progress: Option<ProgressFn>,
    /// Whether start-up may create a new, empty database when there is none and the replica
    /// has nothing to restore (default true; false: start-up fails with
    /// [`crate::StartupError::NoDatabase`] before anything creates the file).
    pub create_database: bool,
    /// Wraps the replica client once it is opened, before anything uses it (every
    /// operation of start-up, the replicator's tasks and shutdown goes through the wrapper):
    /// the place for instrumentation or fault injection. `None` in the shipped server.
    pub wrap_client: Option<WrapClient>,
    /// Test hook of the syncer ([`crate::sync::SyncHook`]); never set outside tests.
    #[doc(hidden)]
    pub sync_hook: Option<SyncHook>,
}

/// A function that wraps the opened replica client ([`ReplicatorOptions::wrap_client`]).
pub type WrapClient = Arc<dyn Fn(Arc<dyn ReplicaClient>) -> Arc<dyn ReplicaClient> + Send + Sync>;

impl std::fmt::Debug for ReplicatorOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatorOptions")
            .field("db_path", &self.db_path)
            .field("retry_window", &self.retry_window)
            .finish_non_exhaustive()
    }
}

impl ReplicatorOptions {
    /// Options with the defaults (retry window from the environment).
    pub fn new(config: Config, db_path: impl Into<PathBuf>) -> Result<ReplicatorOptions, String> {
        Ok(ReplicatorOptions {
            config,
            db_path: db_path.into(),
            registry: None,
            replica_metrics: None,
            retry_window: crate::health::retry_window_from_env()?,
            probe_interval: PROBE_INTERVAL,
            network: NetworkOptions::from_env()?,
            restore_integrity_check: IntegrityCheck::Full,
            restore_progress: None,
            create_database: true,
            wrap_client: None,
            sync_hook: None,
        })
    }
}
