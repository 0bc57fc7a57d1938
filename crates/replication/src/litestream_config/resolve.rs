//! Resolution of the top level: Litestream's defaults and validation applied to the raw
//! schema, one [`DbConfig`] per `dbs:` entry (`resolve_db.rs`).

use super::error::{ConfigError, invalid};
use super::model::{Config, DbConfig, DbSource, LoggingConfig, SnapshotConfig};
use super::raw::{RawReplicaSettings, RawSnapshot, RawTop};
use super::resolve_db::resolve_db;
use super::units::GoDuration;
use super::values::{dur, non_empty, non_negative, positive};
use super::{defaults, expand};

pub(super) fn resolve(raw: RawTop, global: RawReplicaSettings) -> Result<Config, ConfigError> {
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
pub(super) fn check_meta_paths(dbs: &[DbConfig]) -> Result<(), ConfigError> {
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

pub(super) fn db_label(db: &DbConfig) -> String {
    match &db.source {
        DbSource::Path(p) => p.display().to_string(),
        DbSource::Dir { dir, .. } => dir.display().to_string(),
    }
}
