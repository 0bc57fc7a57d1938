//! Shared helpers for the replication integration tests: a WAL-mode database written with
//! rusqlite, Litestream-written replicas, LTX header fields, and our side of a test (a client
//! of a replica URL, a started replicator, a restore).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use replication::MetaDir;
use replication::ReplicaClient;
use replication::internals::Database;
use replication::internals::{SyncSettings, Syncer};
use replication::restore::RestoreTarget;
use replication::restore::{self, IntegrityCheck, RestoreError, RestoreOptions, Restored};
use replication::{AbsTarget, ReplicaTarget, Secret};
use replication::{Config, LoadOptions};
use replication::{Replicator, ReplicatorOptions, StartError};
use rusqlite::Connection;
use testkit::litestream::{Litestream, LtxEntry, Source};

pub mod contract;
pub mod faulty;

/// A WAL-mode database with a table `t`.
pub fn wal_db(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.execute_batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")
        .unwrap();
    conn
}

pub fn insert(conn: &Connection, rows: i64, size: i64) {
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2) \
         INSERT INTO t(v) SELECT randomblob(?1) FROM n",
        (size, rows),
    )
    .unwrap();
}

/// Runs `litestream replicate` with short intervals for a few seconds while writing, so the
/// replica at `replica_url` has files in levels 0, 1 and 9 (and several L0/L1 boundaries).
pub fn replicate_with_levels(ls: &Litestream, dir: &Path, db: &Path, replica_url: &str) {
    replicate_with_levels_to(ls, dir, db, &url_entry(replica_url));
}

/// [`replicate_with_levels`] to the replica of a `replica:` entry ([`Replica::entry`]).
pub fn replicate_with_levels_to(ls: &Litestream, dir: &Path, db: &Path, replica_entry: &str) {
    let conn = wal_db(db);
    insert(&conn, 20, 300);
    let config = dir.join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "levels:\n  - interval: 1s\nsnapshot:\n  interval: 2s\n  retention: 1h\nl0-retention: 1h\n\
             dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n{replica_entry}      sync-interval: 100ms\n",
            db.display()
        ),
    )
    .unwrap();
    let running = ls.spawn_replicate(&config);
    for i in 0..16 {
        insert(&conn, 1 + i % 3, 200);
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = running.stop();
    assert!(!log.contains("sync error"), "{log}");
}

/// The Timestamp field of an LTX header (ms since the epoch).
pub fn header_timestamp(ltx: &[u8]) -> DateTime<Utc> {
    let ms = i64::from_be_bytes(ltx[32..40].try_into().unwrap());
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap()
}

/// (min, max) TXIDs of an LTX header.
pub fn header_txids(ltx: &[u8]) -> (u64, u64) {
    (
        u64::from_be_bytes(ltx[16..24].try_into().unwrap()),
        u64::from_be_bytes(ltx[24..32].try_into().unwrap()),
    )
}

/// A Litestream listing row as (level, min, max, size, unix seconds).
pub fn entry_key(e: &LtxEntry) -> (u8, u64, u64, u64, i64) {
    (
        e.level as u8,
        u64::from_str_radix(&e.min_txid, 16).unwrap(),
        u64::from_str_radix(&e.max_txid, 16).unwrap(),
        e.size,
        DateTime::parse_from_rfc3339(&e.timestamp)
            .unwrap()
            .timestamp(),
    )
}

pub fn info_key(f: &replication::LtxFileInfo) -> (u8, u64, u64, u64, i64) {
    (
        f.level.get(),
        f.name.min.get(),
        f.name.max.get(),
        f.size,
        f.created_at.timestamp(),
    )
}

/// `litestream restore` into `out`; panics with stderr on failure.
pub fn restore(ls: &Litestream, url: &str, out: &Path, extra: &[&str]) {
    restore_from(ls, Source::Url(url), out, extra);
}

/// `litestream restore` of `source` into `out`; panics with stderr on failure.
pub fn restore_from(ls: &Litestream, source: Source<'_>, out: &Path, extra: &[&str]) {
    let res = ls.restore_of(source, out, extra);
    assert!(
        res.status.success(),
        "litestream restore {source:?} {extra:?}: {}",
        String::from_utf8_lossy(&res.stderr)
    );
}

/// A client of the replica at `url`, with default options.
pub async fn open_url(url: &str) -> Arc<dyn ReplicaClient> {
    let target = replication::parse_replica_url(url).unwrap();
    replication::open_client(&target, &Default::default())
        .await
        .unwrap()
}

/// Replicator options for `db` from a Litestream YAML config.
pub fn replicator_options(yaml: &str, db: &Path) -> ReplicatorOptions {
    let config = Config::parse(yaml, LoadOptions::default()).unwrap();
    ReplicatorOptions::new(config, db).unwrap()
}

/// Starts a replicator for `db` with a Litestream YAML config.
pub async fn start_replicator(yaml: &str, db: &Path) -> Result<Replicator, StartError> {
    Replicator::start(replicator_options(yaml, db)).await
}

/// Our restore of the replica `client` at `target` into `out`, checked with `check`.
pub async fn restore_ours(
    client: &Arc<dyn ReplicaClient>,
    target: RestoreTarget,
    out: &Path,
    check: IntegrityCheck,
) -> Result<Restored, RestoreError> {
    let plan = restore::plan(client.as_ref(), target, true).await?;
    let mut options = RestoreOptions::new(out);
    options.integrity_check = check;
    restore::restore(client, &plan, &options).await
}

pub fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

pub fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().to_path_buf();
    (t, p)
}

/// A Litestream config for one database with short intervals (levels 1s/3s, snapshots every
/// 4s, L0 retention 2s) so compaction, snapshots and retention all run within a test.
pub fn fast_config(db: &Path, replica_url: &str, extra_db: &str) -> String {
    fast_config_to(db, &url_entry(replica_url), extra_db)
}

/// [`fast_config`] with the replica of a `replica:` entry ([`Replica::entry`]).
pub fn fast_config_to(db: &Path, replica_entry: &str, extra_db: &str) -> String {
    format!(
        "levels:\n  - interval: 1s\n  - interval: 3s\nsnapshot:\n  interval: 4s\n  retention: 1h\n\
         l0-retention: 2s\nl0-retention-check-interval: 1s\nshutdown-sync-timeout: 10s\n\
         dbs:\n  - path: {}\n    monitor-interval: 100ms\n    min-checkpoint-page-count: 64\n{extra_db}    replica:\n{replica_entry}      sync-interval: 100ms\n",
        db.display()
    )
}

/// The `replica:` entry (keys indented 6 spaces) of a replica URL.
pub fn url_entry(replica_url: &str) -> String {
    format!("      url: {replica_url}\n")
}

/// `path` in `container` on Azurite, authenticated with the account key.
pub fn abs_key_target(az: &testkit::Azurite, container: &str, path: &str) -> AbsTarget {
    AbsTarget {
        account_name: Some(az.account.clone()),
        account_key: Some(Secret(az.account_key.clone())),
        sas_token: None,
        container: container.to_string(),
        path: path.to_string(),
        endpoint: Some(az.endpoint.clone()),
    }
}

/// Where a test's replica lives.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    /// `<dir>/replica`.
    File,
    /// A fresh bucket on the local S3 server.
    S3,
    /// A fresh container on Azurite.
    Abs,
}

/// What an end-to-end test starts from: the Litestream binary, a temporary directory and a
/// replica (at key prefix `db`, in a fresh bucket or container named from `prefix`) of
/// `<dir>/<db_name>`; `None` (the test returns) when a tool is missing and allowed to be.
pub fn litestream_and_replica(
    test: &str,
    backend: Backend,
    prefix: &str,
    db_name: &str,
) -> Option<(Litestream, tempfile::TempDir, PathBuf, Replica)> {
    let ls = Litestream::require(test)?;
    let (t, dir) = tempdir();
    let replica = match backend {
        Backend::File => Replica::url(&file_url(&dir.join("replica"))),
        Backend::S3 => Replica::url(&testkit::s3_replica_url(test, prefix, "db")?),
        Backend::Abs => {
            let az = testkit::require_azurite(test)?;
            Replica::abs(&az, prefix, "db", &dir.join(db_name))
        }
    };
    Some((ls, t, dir, replica))
}

/// A replica both tools can reach: by URL (file, S3), or through config keys (Azure, whose
/// endpoint a URL cannot carry), in which case Litestream gets a config of its own naming
/// the database.
pub struct Replica {
    /// The keys of the `replica:` entry, indented 6 spaces.
    pub entry: String,
    pub target: ReplicaTarget,
    source: OwnedSource,
}

enum OwnedSource {
    Url(String),
    /// Litestream's config (`dbs: [{path: db, replica: entry}]`) and the database it names.
    Config {
        config: PathBuf,
        db: PathBuf,
    },
}

impl Replica {
    /// The replica at `url`.
    pub fn url(url: &str) -> Replica {
        Replica {
            entry: url_entry(url),
            target: replication::parse_replica_url(url).unwrap(),
            source: OwnedSource::Url(url.to_string()),
        }
    }

    /// `path` in a fresh container on Azurite, authenticated with the account key, as the
    /// replica of the database `db` (Litestream's config is written next to it).
    pub fn abs(az: &testkit::Azurite, container_prefix: &str, path: &str, db: &Path) -> Replica {
        let container = az.create_container(container_prefix);
        let target = ReplicaTarget::Abs(abs_key_target(az, &container, path));
        let entry = az.replica_yaml(&container, path, 6);
        let config = db.with_extension("replica.yml");
        std::fs::write(
            &config,
            format!("dbs:\n  - path: {}\n    replica:\n{entry}", db.display()),
        )
        .unwrap();
        Replica {
            entry,
            target,
            source: OwnedSource::Config {
                config,
                db: db.to_path_buf(),
            },
        }
    }

    /// Our client of it.
    pub async fn client(&self) -> Arc<dyn ReplicaClient> {
        replication::open_client(&self.target, &Default::default())
            .await
            .unwrap()
    }

    /// How the Litestream binary reaches it.
    pub fn source(&self) -> Source<'_> {
        match &self.source {
            OwnedSource::Url(u) => Source::Url(u),
            OwnedSource::Config { config, db } => Source::Config { config, db },
        }
    }
}

/// Every row of table `t`.
pub fn rows(path: &Path) -> Vec<(i64, Vec<u8>)> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn.prepare("SELECT id, v FROM t ORDER BY id").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A syncer for `db` (metadata in `.<name>-litestream` next to it, position read from it,
/// busy timeout 1 s).
pub fn syncer(db: &Path, settings: SyncSettings) -> Syncer {
    let meta = MetaDir::new(db.with_file_name(format!(
        ".{}-litestream",
        db.file_name().unwrap().to_string_lossy()
    )));
    meta.prepare().unwrap();
    let pos = replication::internals::read_position(&meta).unwrap();
    let database = Database::open(db, Duration::from_secs(1)).unwrap();
    Syncer::new(database, meta, settings, pos, Default::default(), None)
}

/// Copies the local L0 files into a file replica's `ltx/0`.
pub fn publish(s: &Syncer, replica: &Path) {
    let dst = replica.join("ltx/0");
    std::fs::create_dir_all(&dst).unwrap();
    for name in s.meta().list(replication::Level::L0).unwrap() {
        let src = s.meta().path(replication::Level::L0, name);
        let to = dst.join(name.to_string());
        if !to.exists() {
            std::fs::copy(&src, &to).unwrap();
        }
    }
}

/// Logs to the test output when `RUST_LOG` is set (e.g. `RUST_LOG=replication=debug`).
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// The object-store requests a replicator made, by the `litestream_replica_operation_total`
/// counter (the bill meter) of the registry it was given.
pub fn replica_requests(registry: &prometheus::Registry) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "litestream_replica_operation_total")
        .flat_map(|f| f.get_metric().iter())
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// Waits until the replicator counted in `registry` made no request for `quiet` (its jobs
/// have caught up with the last write); fails after `bound`.
pub async fn wait_quiet(registry: &prometheus::Registry, quiet: Duration, bound: Duration) {
    let deadline = std::time::Instant::now() + bound;
    let mut last = (replica_requests(registry), std::time::Instant::now());
    while last.1.elapsed() < quiet {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle replicator kept making requests: {} so far",
            replica_requests(registry)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = replica_requests(registry);
        if now != last.0 {
            last = (now, std::time::Instant::now());
        }
    }
}

/// Waits until the snapshot a replicator takes at start-up is on the file replica at
/// `replica` (its scheduled snapshot job runs once at start even with a long interval).
/// While a snapshot streams the database our checkpoints are skipped, so a test that needs
/// a given sync to checkpoint waits for it first; fails after 60 s.
///
/// Only a published `.ltx` file counts: the file replica writes `<name>.tmp` in the same
/// directory from the first byte of the stream on, while the snapshot still holds the
/// checkpoint lock, and renames it into place only after the stream ended.
pub async fn wait_for_the_start_up_snapshot(replica: &Path) {
    let dir = replica.join("ltx/9");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let published = |d: std::fs::ReadDir| {
        d.filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().ends_with(".ltx"))
    };
    while !std::fs::read_dir(&dir).is_ok_and(published) {
        assert!(
            std::time::Instant::now() < deadline,
            "no start-up snapshot in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
