//! The resolved config: [`Config`] and its parts, every default applied, as the replicator
//! and restore read them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::target::ReplicaTarget;

/// A parsed, validated Litestream config with every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from, if any.
    pub source: Option<PathBuf>,
    /// Compaction intervals of L1, L2, … (`levels:`; default 30s, 5m, 1h).
    pub levels: Vec<Duration>,
    pub snapshot: SnapshotConfig,
    /// `l0-retention`; `None` when set to 0 (disabled). Default 5m.
    pub l0_retention: Option<Duration>,
    /// Default 15s.
    pub l0_retention_check_interval: Duration,
    /// `retention.enabled` (default true); false suppresses all remote deletions.
    pub retention_enabled: bool,
    /// `validation.interval`: periodic level contiguity check (off when `None`).
    pub validation_interval: Option<Duration>,
    pub verify_compaction: bool,
    /// Default 30s.
    pub shutdown_sync_timeout: Duration,
    /// Default 500ms.
    pub shutdown_sync_interval: Duration,
    pub heartbeat_url: Option<String>,
    /// Default 5m (minimum 1m).
    pub heartbeat_interval: Duration,
    /// `addr` (Litestream's own metrics listener; sqlite-rest serves metrics itself).
    pub addr: Option<String>,
    pub logging: LoggingConfig,
    pub socket_enabled: bool,
    pub exec: Option<String>,
    pub mcp_addr: Option<String>,
    pub dbs: Vec<DbConfig>,
}

/// `snapshot:` (global, or promoted from the databases when only they set it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotConfig {
    /// Default 24h.
    pub interval: Duration,
    /// Default 24h.
    pub retention: Duration,
}

/// `logging:`; `LOG_LEVEL` in the environment overrides `level`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoggingConfig {
    pub level: Option<String>,
    pub format: Option<String>,
    pub stderr: bool,
    pub source: bool,
}

/// One `dbs[]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct DbConfig {
    /// Position in `dbs:` (for messages: `dbs[0]`).
    pub index: usize,
    pub source: DbSource,
    /// `meta-path` (absolute); see [`DbConfig::meta_path`] for the default.
    pub meta_path: Option<PathBuf>,
    pub meta_dir: Option<PathBuf>,
    /// Default 1s.
    pub monitor_interval: Duration,
    /// Default 1m.
    pub checkpoint_interval: Duration,
    /// Default 1s.
    pub busy_timeout: Duration,
    /// Default 1000 frames.
    pub min_checkpoint_page_count: u32,
    /// Default 121359 frames; 0 in the file means the default.
    pub truncate_page_n: u32,
    /// Default 64 MiB; `None` (0 or negative in the file) means no limit.
    pub max_sync_wal_bytes: Option<u64>,
    pub restore_if_db_not_exists: bool,
    pub replica: ReplicaConfig,
}

/// Where a `dbs[]` entry's databases are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbSource {
    /// `path:` (absolute, `~` and `sqlite://` handled).
    Path(PathBuf),
    /// `dir:` + `pattern:` (a directory of databases; not supported by sqlite-rest).
    Dir {
        dir: PathBuf,
        pattern: String,
        recursive: bool,
        watch: bool,
    },
}

impl DbConfig {
    /// The database path of a `path:` entry.
    pub fn path(&self) -> Option<&Path> {
        match &self.source {
            DbSource::Path(p) => Some(p),
            DbSource::Dir { .. } => None,
        }
    }

    /// The local metadata directory: `meta-path`, else `<dir>/.<file name>-litestream`.
    pub fn meta_path(&self) -> Option<PathBuf> {
        if let Some(p) = &self.meta_path {
            return Some(p.clone());
        }
        Some(default_meta_path(self.path()?))
    }
}

/// Litestream's default metadata directory of a database: `<dir>/.<file name>-litestream`.
pub fn default_meta_path(db: &Path) -> PathBuf {
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    db.with_file_name(format!(".{name}-litestream"))
}

/// A database's replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    pub target: ReplicaTarget,
    /// Deprecated `name:`.
    pub name: Option<String>,
    /// Default 1s. Litestream's sync interval; we sync at every commit instead.
    pub sync_interval: Duration,
    /// `sync-interval` when the file sets it explicitly: the shortest time between the
    /// starts of two uploads (a cap on object-store requests). `None` (the default): an
    /// upload starts as soon as the previous one returned and there is something new.
    pub upload_interval: Option<Duration>,
    /// Default 256; `None` (0 in the file) uploads every pending file in one pass.
    pub max_sync_ltx_files: Option<usize>,
    pub auto_recover: bool,
    /// Parsed, unused by Litestream 0.5.
    pub validation_interval: Option<Duration>,
}

/// How to read a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Expand `$VAR` / `${VAR}` (Litestream's default; `-no-expand-env` turns it off).
    pub expand_env: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { expand_env: true }
    }
}
