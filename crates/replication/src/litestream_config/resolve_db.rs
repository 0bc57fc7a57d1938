//! Resolution of one `dbs:` entry: its path, metadata directory, checkpoint and sync
//! settings, and its one replica (`resolve_replica.rs`).

use serde_yaml_ng::Value;

use super::defaults;
use super::error::{ConfigError, invalid};
use super::key_errors::{from_mapping, unknown_key};
use super::model::{DbConfig, DbSource};
use super::raw::{RawDb, RawReplicaSettings, RawSnapshot, split_mapping, struct_fields};
use super::resolve_replica::resolve_replica;
use super::values::{expand_path_at, non_empty, non_negative, positive};

pub(super) fn resolve_db(
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
