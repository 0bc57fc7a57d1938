//! The Litestream YAML config (`docs/replication.md#configuration`): parsing, Litestream's defaults, validation, and
//! finding the entry for one database.
//!
//! sqlite-rest reads Litestream's own config file (`--replication-config litestream.yml`);
//! every replication knob comes from it, with Litestream 0.5's defaults. Differences from
//! Litestream, all in the direction of failing loudly:
//! - an unknown key is an error naming it with its path (`dbs[0].replica.retention-interval`);
//!   Litestream drops such keys silently;
//! - a replica URL with unknown query parameters is an error;
//! - settings of features sqlite-rest does not implement (other backends, `exec`, the control
//!   socket, MCP, heartbeats, `dir:` databases, age encryption) parse, and
//!   [`Config::ensure_supported`] (called by [`Config::load`]) rejects them by name.
//!
//! Env expansion ([`expand`]) runs over the whole text before parsing unless disabled.

pub mod expand;
mod raw;
pub mod units;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use crate::target::{AbsTarget, FileTarget, ReplicaKind, ReplicaTarget, Secret};
use crate::url::{S3Keys, UrlParts, clean_key_prefix, is_url, parse_url_parts, resolve_s3};
use raw::{
    RawDb, RawReplicaOwn, RawReplicaSettings, RawSnapshot, RawTop, split_mapping, struct_fields,
};
use units::GoDuration;

/// Litestream's defaults (`docs/replication.md#configuration`; the maintenance ones also in
/// `#compaction`, `#snapshots` and `#retention`).
pub mod defaults {
    use std::time::Duration;

    /// L1, L2, L3 compaction intervals.
    pub const LEVELS: [Duration; 3] = [
        Duration::from_secs(30),
        Duration::from_secs(5 * 60),
        Duration::from_secs(60 * 60),
    ];
    pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
    pub const SNAPSHOT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
    pub const L0_RETENTION: Duration = Duration::from_secs(5 * 60);
    pub const L0_RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(15);
    pub const SHUTDOWN_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
    pub const SHUTDOWN_SYNC_INTERVAL: Duration = Duration::from_millis(500);
    pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5 * 60);
    pub const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
    pub const MONITOR_INTERVAL: Duration = Duration::from_secs(1);
    pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
    pub const BUSY_TIMEOUT: Duration = Duration::from_secs(1);
    pub const MIN_CHECKPOINT_PAGE_COUNT: u32 = 1000;
    pub const TRUNCATE_PAGE_N: u32 = 121_359;
    pub const MAX_SYNC_WAL_BYTES: u64 = 64 << 20;
    pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);
    pub const MAX_SYNC_LTX_FILES: usize = 256;
    /// Highest compaction level a `levels:` list may reach (level 9 is the snapshot level).
    pub const MAX_COMPACTION_LEVEL: usize = 8;
}

/// Errors from reading, parsing or validating a config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("replication config file not found: {}", .0.display())]
    NotFound(PathBuf),
    #[error("reading replication config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("replication config is not valid YAML: {0}")]
    Syntax(String),
    #[error("unknown key `{path}` in replication config{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    UnknownKey { path: String, hint: Option<String> },
    #[error("replication config `{path}`: {message}")]
    Invalid { path: String, message: String },
    #[error("replication config `{path}`: {message}; sqlite-rest does not support this")]
    Unsupported { path: String, message: String },
    #[error(
        "database {} is not in the replication config{}; add a `dbs:` entry with `path: {}` (configured: {})",
        path.display(),
        config.as_ref().map(|c| format!(" {}", c.display())).unwrap_or_default(),
        path.display(),
        if configured.is_empty() { "none".to_string() } else {
            configured.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        }
    )]
    DatabaseNotInConfig {
        path: PathBuf,
        config: Option<PathBuf>,
        configured: Vec<PathBuf>,
    },
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

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
    /// Default 1s.
    pub sync_interval: Duration,
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

impl Config {
    /// Reads a config file for sqlite-rest: parses it ([`Config::parse`]) and rejects
    /// features sqlite-rest does not implement ([`Config::ensure_supported`]).
    pub fn load(path: &Path, options: LoadOptions) -> Result<Config, ConfigError> {
        let file = expand::expand_path(&path.to_string_lossy())
            .map_err(|message| invalid("--replication-config", message))?;
        let text = std::fs::read_to_string(&file).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ConfigError::NotFound(file.clone())
            } else {
                ConfigError::Read {
                    path: file.clone(),
                    source: e,
                }
            }
        })?;
        let mut config = Config::parse(&text, options)?;
        config.source = Some(file);
        config.ensure_supported()?;
        Ok(config)
    }

    /// Parses config text with Litestream's schema, defaults and validation.
    pub fn parse(text: &str, options: LoadOptions) -> Result<Config, ConfigError> {
        let text = if options.expand_env {
            expand::expand_env(text)
        } else {
            text.to_string()
        };
        let value: Value =
            serde_yaml_ng::from_str(&text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let top = match value {
            Value::Null => Mapping::new(),
            Value::Mapping(m) => m,
            _ => {
                return Err(ConfigError::Syntax(
                    "the top level must be a mapping".into(),
                ));
            }
        };
        let settings_keys = struct_fields::<RawReplicaSettings>();
        let top_keys = struct_fields::<RawTop>();
        let (own, shared) = split_mapping(&top, top_keys, settings_keys)
            .map_err(|key| unknown_key("", &key, &[top_keys, settings_keys].concat()))?;
        let raw: RawTop = from_mapping(own, "")?;
        let global: RawReplicaSettings = from_mapping(shared, "")?;
        resolve(raw, global)
    }

    /// The entry for the database at `db_path` (compared after resolving symlinks and
    /// relative parts), or [`ConfigError::DatabaseNotInConfig`].
    pub fn find_db(&self, db_path: &Path) -> Result<&DbConfig, ConfigError> {
        let want = expand::canonical(
            &expand::expand_path(&db_path.to_string_lossy())
                .map_err(|message| invalid("--db-dsn", message))?,
        );
        self.dbs
            .iter()
            .find(|db| db.path().is_some_and(|p| expand::canonical(p) == want))
            .ok_or_else(|| ConfigError::DatabaseNotInConfig {
                path: want,
                config: self.source.clone(),
                configured: self
                    .dbs
                    .iter()
                    .map(|db| match &db.source {
                        DbSource::Path(p) => p.clone(),
                        DbSource::Dir { dir, .. } => dir.clone(),
                    })
                    .collect(),
            })
    }

    /// Rejects, by key, settings of features sqlite-rest does not implement, so that none
    /// is silently ignored: replica backends other than file, s3 and abs, `exec`, the control
    /// `socket`, `mcp-addr`, `heartbeat-url` and `dir:` databases. (`addr` and `logging` are
    /// accepted: sqlite-rest serves the metrics and logs itself; see
    /// [`Config::ignored_settings`].)
    pub fn ensure_supported(&self) -> Result<(), ConfigError> {
        let unsupported = |path: &str, message: &str| {
            Err(ConfigError::Unsupported {
                path: path.to_string(),
                message: message.to_string(),
            })
        };
        if self.exec.is_some() {
            return unsupported("exec", "running a subprocess");
        }
        if self.socket_enabled {
            return unsupported("socket.enabled", "Litestream's control socket");
        }
        if self.mcp_addr.is_some() {
            return unsupported("mcp-addr", "Litestream's MCP server");
        }
        if self.heartbeat_url.is_some() {
            return unsupported("heartbeat-url", "heartbeat pings");
        }
        for db in &self.dbs {
            if let DbSource::Dir { .. } = db.source {
                return unsupported(
                    &format!("dbs[{}].dir", db.index),
                    "replicating a directory of databases (use `path:` for the served database)",
                );
            }
            if let Err(e) = db.replica.target.ensure_supported() {
                return unsupported(&format!("dbs[{}].replica", db.index), &e.to_string());
            }
        }
        Ok(())
    }

    /// Settings that are valid but have no effect in sqlite-rest, with the reason, for the
    /// server to log as warnings.
    pub fn ignored_settings(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        if self.addr.is_some() {
            out.push((
                "addr",
                "sqlite-rest serves the litestream_* metrics on its own /metrics endpoint",
            ));
        }
        if self.logging != LoggingConfig::default() {
            out.push(("logging", "sqlite-rest logs through its own logger"));
        }
        out
    }
}

/// Deserializes one mapping into `T`, turning serde's errors into path-named ones.
fn from_mapping<T: for<'de> Deserialize<'de>>(
    map: Mapping,
    prefix: &str,
) -> Result<T, ConfigError> {
    from_value(Value::Mapping(map), prefix)
}

fn from_value<T: for<'de> Deserialize<'de>>(value: Value, prefix: &str) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.inner().to_string();
        let mut path = e.path().to_string();
        if path == "." {
            path.clear();
        }
        let full = join_path(prefix, &path);
        if let Some(rest) = inner.strip_prefix("unknown field `")
            && let Some(end) = rest.find('`')
        {
            let key = &rest[..end];
            // serde_path_to_error may or may not have pushed the key itself.
            let container = full
                .strip_suffix(key)
                .map(|p| p.trim_end_matches('.').to_string())
                .unwrap_or(full.clone());
            // serde lists the expected fields as `a`, `b` or `c`.
            let expected: Vec<&str> = rest[end + 1..].split('`').skip(1).step_by(2).collect();
            return unknown_key(&container, key, &expected);
        }
        invalid(full, inner)
    })
}

fn join_path(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) if rest.starts_with('[') => format!("{prefix}{rest}"),
        (false, false) => format!("{prefix}.{rest}"),
    }
}

/// Hints for keys that were valid in older Litestream versions or are commonly misplaced.
fn legacy_hint(key: &str) -> Option<&'static str> {
    Some(match key {
        "retention" | "retention-interval" | "retention-check-interval" => {
            "Litestream 0.5 has no per-replica retention: use top-level `snapshot.retention` and `l0-retention`"
        }
        "snapshot-interval" => "use top-level `snapshot.interval`",
        "max-checkpoint-page-count" => "removed in Litestream 0.5; see `truncate-page-n`",
        "shadow-retention-count" | "generation" => "not part of Litestream 0.5",
        _ => return None,
    })
}

fn unknown_key(container: &str, key: &str, allowed: &[&str]) -> ConfigError {
    let hint = legacy_hint(key).map(str::to_string).or_else(|| {
        allowed
            .iter()
            .map(|k| (edit_distance(key, k), *k))
            .filter(|(d, _)| *d <= 2)
            .min()
            .map(|(_, k)| format!("did you mean `{}`?", join_path(container, k)))
    });
    ConfigError::UnknownKey {
        path: join_path(container, key),
        hint,
    }
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn dur(d: Option<GoDuration>, default: Duration) -> Option<Duration> {
    match d {
        None => Some(default),
        Some(d) => d.to_std(),
    }
}

/// A duration that must be > 0.
fn positive(path: &str, d: Option<GoDuration>, default: Duration) -> Result<Duration, ConfigError> {
    match dur(d, default) {
        Some(v) if !v.is_zero() => Ok(v),
        _ => Err(invalid(path, "must be greater than 0")),
    }
}

/// A duration that must be ≥ 0.
fn non_negative(
    path: &str,
    d: Option<GoDuration>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    dur(d, default).ok_or_else(|| invalid(path, "must not be negative"))
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

fn resolve(raw: RawTop, global: RawReplicaSettings) -> Result<Config, ConfigError> {
    let levels = match raw.levels {
        None => defaults::LEVELS.to_vec(),
        Some(levels) => {
            if levels.len() > defaults::MAX_COMPACTION_LEVEL {
                return Err(invalid(
                    "levels",
                    format!(
                        "at most {} compaction levels (L1..L8); level 9 is the snapshot level",
                        defaults::MAX_COMPACTION_LEVEL
                    ),
                ));
            }
            levels
                .iter()
                .enumerate()
                .map(|(i, l)| match l.interval.and_then(GoDuration::to_std) {
                    Some(d) if !d.is_zero() => Ok(d),
                    _ => Err(invalid(
                        format!("levels[{i}].interval"),
                        "compaction interval must be greater than 0",
                    )),
                })
                .collect::<Result<_, _>>()?
        }
    };
    let global_snapshot = raw.snapshot.clone().unwrap_or_default();
    let mut snapshot_interval = global_snapshot.interval;
    let mut snapshot_retention = global_snapshot.retention;

    let raw_dbs = raw.dbs.unwrap_or_default();
    let mut dbs = Vec::with_capacity(raw_dbs.len());
    let mut db_snapshots: Vec<(String, RawSnapshot)> = Vec::new();
    for (i, value) in raw_dbs.into_iter().enumerate() {
        let (db, snap) = resolve_db(i, value, &global)?;
        if let Some(snap) = snap {
            db_snapshots.push((db_label(&db), snap));
        }
        dbs.push(db);
    }
    check_meta_paths(&dbs)?;
    // Per-database snapshot settings must agree and are promoted to the global ones.
    let mut db_interval: Option<(String, GoDuration)> = None;
    let mut db_retention: Option<(String, GoDuration)> = None;
    for (label, snap) in &db_snapshots {
        for (value, seen, what) in [
            (snap.interval, &mut db_interval, "interval"),
            (snap.retention, &mut db_retention, "retention"),
        ] {
            let Some(v) = value else { continue };
            if let Some((other, prev)) = seen.as_ref()
                && *prev != v
            {
                return Err(invalid(
                    format!("dbs[{label}].snapshot.{what}"),
                    format!(
                        "conflicting database snapshot {what}s: {other} has {prev}, {label} has {v}"
                    ),
                ));
            }
            *seen = Some((label.clone(), v));
        }
    }
    if snapshot_interval.is_none() {
        snapshot_interval = db_interval.map(|(_, v)| v);
    }
    if snapshot_retention.is_none() {
        snapshot_retention = db_retention.map(|(_, v)| v);
    }
    let snapshot = SnapshotConfig {
        interval: positive(
            "snapshot.interval",
            snapshot_interval,
            defaults::SNAPSHOT_INTERVAL,
        )?,
        retention: positive(
            "snapshot.retention",
            snapshot_retention,
            defaults::SNAPSHOT_RETENTION,
        )?,
    };
    let l0_retention = non_negative("l0-retention", raw.l0_retention, defaults::L0_RETENTION)?;
    let heartbeat_url = non_empty(raw.heartbeat_url);
    if let Some(url) = &heartbeat_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(invalid(
            "heartbeat-url",
            "heartbeat URL must be a valid HTTP or HTTPS URL",
        ));
    }
    let heartbeat_interval = dur(raw.heartbeat_interval, defaults::HEARTBEAT_INTERVAL)
        .filter(|d| *d >= defaults::MIN_HEARTBEAT_INTERVAL)
        .ok_or_else(|| invalid("heartbeat-interval", "must be at least 1 minute"))?;
    let logging = raw.logging.unwrap_or_default();
    let env_level = std::env::var("LOG_LEVEL").ok().filter(|l| !l.is_empty());
    Ok(Config {
        source: None,
        levels,
        snapshot,
        l0_retention: Some(l0_retention).filter(|d| !d.is_zero()),
        l0_retention_check_interval: positive(
            "l0-retention-check-interval",
            raw.l0_retention_check_interval,
            defaults::L0_RETENTION_CHECK_INTERVAL,
        )?,
        retention_enabled: raw.retention.and_then(|r| r.enabled).unwrap_or(true),
        validation_interval: match raw.validation.and_then(|v| v.interval) {
            None => None,
            Some(d) => Some(
                d.to_std()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| invalid("validation.interval", "must be greater than 0"))?,
            ),
        },
        verify_compaction: raw.verify_compaction.unwrap_or(false),
        shutdown_sync_timeout: non_negative(
            "shutdown-sync-timeout",
            raw.shutdown_sync_timeout,
            defaults::SHUTDOWN_SYNC_TIMEOUT,
        )?,
        shutdown_sync_interval: positive(
            "shutdown-sync-interval",
            raw.shutdown_sync_interval,
            defaults::SHUTDOWN_SYNC_INTERVAL,
        )?,
        heartbeat_url,
        heartbeat_interval,
        addr: non_empty(raw.addr),
        logging: LoggingConfig {
            level: env_level.or(non_empty(logging.level)),
            format: non_empty(logging.kind),
            stderr: logging.stderr.unwrap_or(false),
            source: logging.source.unwrap_or(false),
        },
        socket_enabled: raw.socket.and_then(|s| s.enabled).unwrap_or(false),
        exec: non_empty(raw.exec),
        mcp_addr: non_empty(raw.mcp_addr),
        dbs,
    })
}

/// Every database has a metadata directory of its own: two sharing one would mix their L0
/// files (each one's position), and resetting one's (a restore) would reset the other's.
fn check_meta_paths(dbs: &[DbConfig]) -> Result<(), ConfigError> {
    for (j, b) in dbs.iter().enumerate() {
        let Some(meta) = b.meta_path() else { continue };
        let canonical = expand::canonical(&meta);
        if let Some(a) = dbs[..j].iter().find(|a| {
            a.meta_path()
                .is_some_and(|m| expand::canonical(&m) == canonical)
        }) {
            let key = if b.meta_path.is_some() {
                "meta-path"
            } else {
                "path"
            };
            return Err(invalid(
                format!("dbs[{j}].{key}"),
                format!(
                    "the metadata directory {} is also the one of {}: each database needs its own meta-path",
                    meta.display(),
                    db_label(a)
                ),
            ));
        }
    }
    Ok(())
}

fn db_label(db: &DbConfig) -> String {
    match &db.source {
        DbSource::Path(p) => p.display().to_string(),
        DbSource::Dir { dir, .. } => dir.display().to_string(),
    }
}

/// An abs `path:` as a blob-name prefix. Litestream 0.5 joins it into blob names as written
/// (`/mydb/` gives `/mydb/ltx/0/…`, a name with a leading empty segment), which
/// `object_store` cannot write; rather than clean it into a different replica, a leading `/`
/// is an error, and so is a `..` segment. The `abs://` URL form is trimmed (Litestream does so too).
fn abs_key_prefix(at: &str, p: &str) -> Result<String, ConfigError> {
    if p.starts_with('/') {
        let trimmed = p.trim_start_matches('/');
        return Err(invalid(
            at,
            format!(
                "an abs path must not start with '/': Litestream 0.5 would write blobs named \
                 {p:?} + \"ltx/<level>/<file>\" (a leading empty segment), which sqlite-rest \
                 cannot write, so the two tools would see different replicas; write \
                 `path: {trimmed}` (in both tools' configs)"
            ),
        ));
    }
    if p.split('/').any(|seg| seg == "..") {
        return Err(invalid(
            at,
            format!("an abs path must not contain '..' segments: {p:?}"),
        ));
    }
    Ok(clean_key_prefix(p))
}

fn expand_path_at(path: &str, value: &str) -> Result<PathBuf, ConfigError> {
    expand::expand_path(value).map_err(|m| invalid(path, m))
}

fn resolve_db(
    i: usize,
    value: Value,
    global: &RawReplicaSettings,
) -> Result<(DbConfig, Option<RawSnapshot>), ConfigError> {
    let at = format!("dbs[{i}]");
    let Value::Mapping(map) = value else {
        return Err(invalid(&at, "each database entry must be a mapping"));
    };
    let db_keys = struct_fields::<RawDb>();
    let (own, _) = split_mapping(&map, db_keys, &[]).map_err(|k| unknown_key(&at, &k, db_keys))?;
    let raw: RawDb = from_mapping(own, &at)?;
    let path = non_empty(raw.path);
    let dir = non_empty(raw.dir);
    let n = i + 1;
    let source = match (path, dir) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                &at,
                format!("database config #{n}: cannot specify both 'path' and 'dir'"),
            ));
        }
        (None, None) => {
            return Err(invalid(
                &at,
                format!("database config #{n}: must specify either 'path' or 'dir'"),
            ));
        }
        (Some(p), None) => {
            if raw.watch == Some(true) {
                return Err(invalid(
                    format!("{at}.watch"),
                    "'watch' can only be enabled with a directory",
                ));
            }
            if raw.meta_dir.is_some() {
                return Err(invalid(
                    format!("{at}.meta-dir"),
                    "'meta-dir' can only be used with a directory",
                ));
            }
            DbSource::Path(expand_path_at(&format!("{at}.path"), &p)?)
        }
        (None, Some(d)) => {
            let Some(pattern) = non_empty(raw.pattern) else {
                return Err(invalid(
                    format!("{at}.pattern"),
                    "'pattern' is required when using 'dir'",
                ));
            };
            DbSource::Dir {
                dir: expand_path_at(&format!("{at}.dir"), &d)?,
                pattern,
                recursive: raw.recursive.unwrap_or(false),
                watch: raw.watch.unwrap_or(false),
            }
        }
    };
    if raw.meta_path.is_some() && raw.meta_dir.is_some() {
        return Err(invalid(
            &at,
            "cannot specify both 'meta-path' and 'meta-dir'",
        ));
    }
    let snapshot = raw.snapshot;
    if let Some(s) = &snapshot {
        if s.interval.is_some_and(|d| d.nanos() <= 0) {
            return Err(invalid(
                format!("{at}.snapshot.interval"),
                "must be greater than 0",
            ));
        }
        if s.retention.is_some_and(|d| d.nanos() <= 0) {
            return Err(invalid(
                format!("{at}.snapshot.retention"),
                "must be greater than 0",
            ));
        }
    }
    let replica_value = match (raw.replica, raw.replicas) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                &at,
                "cannot specify 'replica' and 'replicas' on a database",
            ));
        }
        (Some(r), None) => (format!("{at}.replica"), r),
        (None, Some(mut list)) => {
            if list.len() > 1 {
                return Err(invalid(
                    format!("{at}.replicas"),
                    "multiple replicas on a single database are no longer supported",
                ));
            }
            match list.pop() {
                Some(r) => (format!("{at}.replicas[0]"), r),
                None => return Err(invalid(&at, "must specify replica for database")),
            }
        }
        (None, None) => return Err(invalid(&at, "must specify replica for database")),
    };
    let replica = resolve_replica(&replica_value.0, replica_value.1, global)?;
    let count = |key: &str, v: Option<i64>, default: u32| -> Result<u32, ConfigError> {
        match v {
            None => Ok(default),
            Some(n) => u32::try_from(n)
                .map_err(|_| invalid(format!("{at}.{key}"), "must be a non-negative page count")),
        }
    };
    let min_checkpoint_page_count = count(
        "min-checkpoint-page-count",
        raw.min_checkpoint_page_count,
        defaults::MIN_CHECKPOINT_PAGE_COUNT,
    )?;
    if min_checkpoint_page_count == 0 {
        return Err(invalid(
            format!("{at}.min-checkpoint-page-count"),
            "minimum checkpoint page count must be greater than 0",
        ));
    }
    let truncate_page_n = match count(
        "truncate-page-n",
        raw.truncate_page_n,
        defaults::TRUNCATE_PAGE_N,
    )? {
        0 => defaults::TRUNCATE_PAGE_N,
        n => n,
    };
    let db = DbConfig {
        index: i,
        source,
        meta_path: raw
            .meta_path
            .map(|p| expand_path_at(&format!("{at}.meta-path"), &p))
            .transpose()?,
        meta_dir: raw
            .meta_dir
            .map(|p| expand_path_at(&format!("{at}.meta-dir"), &p))
            .transpose()?,
        monitor_interval: positive(
            &format!("{at}.monitor-interval"),
            raw.monitor_interval,
            defaults::MONITOR_INTERVAL,
        )?,
        checkpoint_interval: non_negative(
            &format!("{at}.checkpoint-interval"),
            raw.checkpoint_interval,
            defaults::CHECKPOINT_INTERVAL,
        )?,
        busy_timeout: non_negative(
            &format!("{at}.busy-timeout"),
            raw.busy_timeout,
            defaults::BUSY_TIMEOUT,
        )?,
        min_checkpoint_page_count,
        truncate_page_n,
        max_sync_wal_bytes: match raw.max_sync_wal_bytes {
            None => Some(defaults::MAX_SYNC_WAL_BYTES),
            Some(n) => u64::try_from(n).ok().filter(|&n| n > 0),
        },
        restore_if_db_not_exists: raw.restore_if_db_not_exists.unwrap_or(false),
        replica,
    };
    Ok((db, snapshot))
}

fn resolve_replica(
    at: &str,
    value: Value,
    global: &RawReplicaSettings,
) -> Result<ReplicaConfig, ConfigError> {
    let map = match value {
        Value::Mapping(m) => m,
        Value::Null => Mapping::new(),
        _ => return Err(invalid(at, "the replica must be a mapping")),
    };
    let own_keys = struct_fields::<RawReplicaOwn>();
    let shared_keys = struct_fields::<RawReplicaSettings>();
    let (own, shared) = split_mapping(&map, own_keys, shared_keys)
        .map_err(|k| unknown_key(at, &k, &[own_keys, shared_keys].concat()))?;
    let own: RawReplicaOwn = from_mapping(own, at)?;
    let mut settings: RawReplicaSettings = from_mapping(shared, at)?;
    settings.inherit(global);

    if let Some(age) = &settings.age
        && (age.identities.as_ref().is_some_and(|v| !v.is_empty())
            || age.recipients.as_ref().is_some_and(|v| !v.is_empty()))
    {
        return Err(ConfigError::Unsupported {
            path: format!("{at}.age"),
            message: "age encryption is not supported by Litestream 0.5".to_string(),
        });
    }
    let url = non_empty(own.url);
    let path = non_empty(own.path);
    if let Some(p) = &path
        && is_url(p)
    {
        return Err(invalid(
            format!("{at}.path"),
            format!("replica path cannot be a url, please use the 'url' field instead: {p}"),
        ));
    }
    let url_parts = url
        .as_deref()
        .map(|u| parse_url_parts(u).map_err(|e| invalid(format!("{at}.url"), e.to_string())))
        .transpose()?;
    let declared = match non_empty(own.kind) {
        None => None,
        Some(t) => Some(ReplicaKind::parse(&t).ok_or_else(|| {
            invalid(
                format!("{at}.type"),
                format!("unknown replica type in config: {t:?}"),
            )
        })?),
    };
    let from_url = url_parts.as_ref().map(|p| match p {
        UrlParts::File(_) => ReplicaKind::File,
        UrlParts::S3(_) => ReplicaKind::S3,
        UrlParts::Abs(_) => ReplicaKind::Abs,
        UrlParts::Other { kind, .. } => *kind,
    });
    if let (Some(d), Some(u)) = (declared, from_url)
        && d != u
    {
        return Err(invalid(
            format!("{at}.type"),
            format!("type {d} conflicts with the url's scheme {u}"),
        ));
    }
    let kind = from_url.or(declared).unwrap_or(ReplicaKind::File);
    let target = match kind {
        ReplicaKind::File => {
            if url.is_some() && path.is_some() {
                return Err(invalid(at, "cannot specify url & path for file replica"));
            }
            let raw_path = match url_parts {
                Some(UrlParts::File(p)) => p.to_string_lossy().into_owned(),
                _ => path.ok_or_else(|| invalid(at, "file replica path required"))?,
            };
            ReplicaTarget::File(FileTarget {
                path: expand_path_at(&format!("{at}.path"), &raw_path)?,
            })
        }
        ReplicaKind::S3 => {
            if url.is_some() && path.is_some() {
                return Err(invalid(at, "cannot specify url & path for s3 replica"));
            }
            if url.is_some() && non_empty(settings.bucket.clone()).is_some() {
                return Err(invalid(at, "cannot specify url & bucket for s3 replica"));
            }
            let sse_customer_key = match non_empty(settings.sse_customer_key_path.clone()) {
                Some(key_path) => {
                    let file = expand_path_at(&format!("{at}.sse-customer-key-path"), &key_path)?;
                    let key = std::fs::read_to_string(&file).map_err(|e| {
                        invalid(
                            format!("{at}.sse-customer-key-path"),
                            format!("cannot read {}: {e}", file.display()),
                        )
                    })?;
                    Some(key.trim().to_string())
                }
                None => settings.sse_customer_key.clone(),
            };
            let keys = S3Keys {
                bucket: settings.bucket.clone(),
                path,
                region: settings.region.clone(),
                endpoint: settings.endpoint.clone(),
                force_path_style: settings.force_path_style,
                skip_verify: settings.skip_verify,
                access_key_id: settings.access_key_id.clone(),
                secret_access_key: settings.secret_access_key.clone(),
                sign_payload: settings.sign_payload,
                require_content_md5: settings.require_content_md5,
                storage_class: settings.storage_class.clone(),
                part_size: settings.part_size.map(|b| b.0),
                concurrency: settings.concurrency,
                sse_customer_algorithm: settings.sse_customer_algorithm.clone(),
                sse_customer_key,
                sse_kms_key_id: settings.sse_kms_key_id.clone(),
            };
            let url_s3 = match url_parts {
                Some(UrlParts::S3(p)) => Some(p),
                _ => None,
            };
            ReplicaTarget::S3(resolve_s3(&keys, url_s3).map_err(|e| invalid(at, e.to_string()))?)
        }
        ReplicaKind::Abs => {
            if url.is_some() && path.is_some() {
                return Err(invalid(at, "cannot specify url & path for abs replica"));
            }
            if url.is_some() && non_empty(settings.bucket.clone()).is_some() {
                return Err(invalid(at, "cannot specify url & bucket for abs replica"));
            }
            let from_url = match url_parts {
                Some(UrlParts::Abs(t)) => t,
                _ => AbsTarget::default(),
            };
            let container = non_empty(settings.bucket.clone())
                .unwrap_or(from_url.container)
                .trim()
                .to_string();
            if container.is_empty() {
                return Err(invalid(
                    format!("{at}.bucket"),
                    "bucket (the container) required for abs replica",
                ));
            }
            let endpoint = non_empty(settings.endpoint.clone());
            if let Some(e) = &endpoint
                && !(e.starts_with("http://") || e.starts_with("https://"))
            {
                return Err(invalid(
                    format!("{at}.endpoint"),
                    format!("expected an http:// or https:// URL, got {e:?}"),
                ));
            }
            ReplicaTarget::Abs(AbsTarget {
                account_name: non_empty(settings.account_name.clone()).or(from_url.account_name),
                account_key: non_empty(settings.account_key.clone()).map(Secret),
                sas_token: non_empty(settings.sas_token.clone()).map(Secret),
                container,
                path: match path {
                    Some(p) => abs_key_prefix(&format!("{at}.path"), &p)?,
                    None => from_url.path,
                },
                endpoint,
            })
        }
        other => ReplicaTarget::Unsupported {
            kind: other,
            location: url
                .or(path)
                .or(non_empty(settings.bucket.clone()))
                .or(non_empty(settings.host.clone()))
                .or(non_empty(settings.webdav_url.clone()))
                .unwrap_or_else(|| format!("type: {other}")),
        },
    };
    let max_sync_ltx_files = match settings.max_sync_ltx_files {
        None => Some(defaults::MAX_SYNC_LTX_FILES),
        Some(n) if n < 0 => {
            return Err(invalid(
                format!("{at}.max-sync-ltx-files"),
                "must not be negative",
            ));
        }
        Some(0) => None,
        Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
    };
    Ok(ReplicaConfig {
        target,
        name: non_empty(own.name),
        sync_interval: positive(
            &format!("{at}.sync-interval"),
            settings.sync_interval,
            defaults::SYNC_INTERVAL,
        )?,
        max_sync_ltx_files,
        auto_recover: settings.auto_recover.unwrap_or(false),
        validation_interval: settings.validation_interval.and_then(GoDuration::to_std),
    })
}
