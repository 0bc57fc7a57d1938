//! Real Litestream 0.3 backups for tests: the `generations/` layout users of the Go
//! sqlite-rest (whose sidecar ran Litestream 0.3) upgrade from, written by the real
//! Litestream 0.3.13 binary on a file or S3 replica, with Litestream 0.3.13's own restore of
//! it as the oracle.
//!
//! [`LitestreamV03::write_backup`] produces a backup with several generations (the sidecar
//! was stopped, the database written and checkpointed meanwhile, then restarted), several
//! snapshots and WAL indexes in the newest generation (Litestream's own checkpoints and an
//! external `PRAGMA wal_checkpoint(TRUNCATE)`), and a database of a few MB of random blobs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::litestream::Replicating;
use crate::{S3, Tool, require_tool};

/// The real `litestream` 0.3.13 binary, and the sqlite3 CLI that writes the database it
/// replicates.
#[derive(Debug, Clone)]
pub struct LitestreamV03 {
    pub bin: PathBuf,
    pub sqlite3: PathBuf,
}

/// Where a Litestream 0.3 backup goes.
#[derive(Debug, Clone)]
pub enum V03Replica {
    /// A directory.
    File(PathBuf),
    /// `s3://bucket/path` on the local S3 server.
    S3 {
        s3: S3,
        bucket: String,
        path: String,
    },
}

impl V03Replica {
    /// The replica URL Litestream 0.5 and sqlite-rest read the same path with.
    pub fn url(&self) -> String {
        match self {
            V03Replica::File(dir) => format!("file://{}", dir.display()),
            V03Replica::S3 { s3, bucket, path } => s3.replica_url(bucket, path),
        }
    }

    fn yaml(&self) -> String {
        match self {
            V03Replica::File(dir) => format!("      - path: {}\n", dir.display()),
            V03Replica::S3 { s3, bucket, path } => format!(
                "      - type: s3\n        bucket: {bucket}\n        path: {path}\n        endpoint: {}\n        region: {}\n        force-path-style: true\n        access-key-id: {}\n        secret-access-key: {}\n",
                s3.endpoint, s3.region, s3.access_key_id, s3.secret_access_key
            ),
        }
    }
}

/// A backup written by [`LitestreamV03::write_backup`].
#[derive(Debug, Clone)]
pub struct V03Backup {
    /// The database Litestream 0.3 replicated, in its final state (every row of it is in the
    /// backup).
    pub source: PathBuf,
    /// Litestream 0.3.13's own restore of the backup's newest state.
    pub oracle: PathBuf,
    /// Rows of table `t` in the final state.
    pub rows: i64,
    /// The replica URL of the backup.
    pub url: String,
    /// A moment after the first generation was fully replicated and before anything else
    /// was written (RFC 3339, UTC, nanoseconds).
    pub first_generation_done: String,
    /// Rows of `t` at that moment.
    pub first_generation_rows: i64,
    /// The Litestream 0.3 config that wrote the backup (for its own `restore`).
    pub config: PathBuf,
}

impl LitestreamV03 {
    /// Both tools, or `None` (skip) / panic (tools required).
    pub fn require(test: &str) -> Option<LitestreamV03> {
        let bin = require_tool(Tool::LitestreamV03, test)?;
        let sqlite3 = require_tool(Tool::Sqlite3, test)?;
        Some(LitestreamV03 { bin, sqlite3 })
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env_remove("AWS_CA_BUNDLE");
        c
    }

    /// Writes the Litestream 0.3 config replicating `db` to `replica` into `dir`.
    pub fn write_config(&self, dir: &Path, db: &Path, replica: &V03Replica) -> PathBuf {
        let config = dir.join("litestream-v03.yml");
        std::fs::write(
            &config,
            format!(
                "dbs:\n  - path: {}\n    monitor-interval: 100ms\n    checkpoint-interval: 2s\n    min-checkpoint-page-count: 200\n    replicas:\n{}        sync-interval: 200ms\n        snapshot-interval: 3s\n",
                db.display(),
                replica.yaml()
            ),
        )
        .unwrap();
        config
    }

    /// `litestream restore -config <config> -o <out> <db>` (Litestream 0.3.13).
    pub fn restore(&self, config: &Path, db: &Path, out: &Path) -> Output {
        self.restore_with(config, db, out, &[])
    }

    /// [`LitestreamV03::restore`] with more flags (`-timestamp T`).
    pub fn restore_with(&self, config: &Path, db: &Path, out: &Path, extra: &[&str]) -> Output {
        self.command()
            .arg("restore")
            .args(extra)
            .arg("-config")
            .arg(config)
            .arg("-o")
            .arg(out)
            .arg(db)
            .output()
            .unwrap()
    }

    /// Starts `litestream replicate -config <config>`; its log goes to `<config>.log`
    /// (appended). Dropping the result kills it; [`Replicating::stop`] stops it with SIGTERM.
    pub fn replicate(&self, config: &Path) -> Replicating {
        Replicating::spawn(self.command(), config, true)
    }

    /// Runs `sql` on `db` with the sqlite3 CLI, waiting up to 30 s for Litestream's locks.
    pub fn exec(&self, db: &Path, sql: &str) {
        crate::sqlite3_exec(
            &self.sqlite3,
            db,
            &format!("PRAGMA busy_timeout=30000; {sql}"),
        );
    }

    /// Rows of `t` in `db` (read with the sqlite3 CLI).
    pub fn count_rows(&self, db: &Path) -> Option<i64> {
        let out = Command::new(&self.sqlite3)
            .arg(db)
            .arg("SELECT count(*) FROM t")
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    /// Restores the backup with Litestream 0.3.13 into `out` until it holds `rows` rows (the
    /// sidecar syncs every 200 ms; 90 s at most on a loaded machine).
    fn wait_replicated(&self, config: &Path, db: &Path, out: &Path, rows: i64) {
        let start = Instant::now();
        loop {
            let _ = std::fs::remove_file(out);
            let restored = self.restore(config, db, out);
            if restored.status.success() && self.count_rows(out) == Some(rows) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "Litestream 0.3 did not replicate {rows} rows within 90 s (restore: {}; {})",
                restored.status,
                String::from_utf8_lossy(&restored.stderr)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Writes a Litestream 0.3 backup of a new database `dir/v03-source.db` to `replica` (see
    /// the module docs), about `megabytes` MB of rows. Returns once Litestream 0.3.13 itself
    /// restores every row, with that restore as the oracle.
    pub fn write_backup(&self, dir: &Path, replica: &V03Replica, megabytes: usize) -> V03Backup {
        self.write_backup_with(dir, replica, megabytes, "")
    }

    /// [`LitestreamV03::write_backup`] of a database that `setup` (SQL, run once after table
    /// `t` is created) gives more to: the state the Go sqlite-rest's migrations left, say.
    pub fn write_backup_with(
        &self,
        dir: &Path,
        replica: &V03Replica,
        megabytes: usize,
        setup: &str,
    ) -> V03Backup {
        let db = dir.join("v03-source.db");
        let config = self.write_config(dir, &db, replica);
        let oracle = dir.join("v03-oracle.db");
        self.exec(
            &db,
            "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, phase INTEGER NOT NULL, payload BLOB NOT NULL);",
        );
        if !setup.is_empty() {
            self.exec(&db, setup);
        }
        // Rows of 32 KiB random bytes (incompressible): megabytes * 32 rows in all.
        let per_phase = (megabytes * 32 / 3).max(4);
        // `pause` between transactions lets the sidecar sync each one apart: several WAL
        // segments per WAL index.
        let insert = |phase: usize, n: usize, pause: Duration| {
            for chunk in 0..n.div_ceil(4) {
                std::thread::sleep(pause);
                let rows = 4.min(n - chunk * 4);
                self.exec(
                    &db,
                    &format!(
                        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < {rows}) \
                         INSERT INTO t(phase, payload) SELECT {phase}, randomblob(32768) FROM n;"
                    ),
                );
            }
        };
        let mut rows = 0i64;

        // Generation 1.
        let running = self.replicate(&config);
        insert(1, per_phase, Duration::ZERO);
        rows += per_phase as i64;
        self.wait_replicated(&config, &db, &oracle, rows);
        running.stop();
        let first_generation_rows = rows;
        // File mtimes and LastModified are taken from the clock: step past them.
        std::thread::sleep(Duration::from_millis(1100));
        let first_generation_done = now_rfc3339();
        std::thread::sleep(Duration::from_millis(1100));

        // Written and checkpointed while the sidecar was down: the next start is a new
        // generation.
        insert(2, per_phase, Duration::ZERO);
        rows += per_phase as i64;
        self.exec(
            &db,
            "UPDATE t SET phase = phase + 10 WHERE id % 3 = 0; PRAGMA wal_checkpoint(TRUNCATE);",
        );

        // Generation 2: a snapshot, Litestream's own checkpoints (new WAL indexes), an
        // external TRUNCATE checkpoint, deletes and updates.
        let running = self.replicate(&config);
        insert(3, per_phase, Duration::from_millis(400));
        rows += per_phase as i64;
        self.wait_replicated(&config, &db, &oracle, rows);
        self.exec(&db, "PRAGMA wal_checkpoint(TRUNCATE);");
        self.exec(
            &db,
            "DELETE FROM t WHERE id % 7 = 0; UPDATE t SET payload = randomblob(1000) WHERE id % 5 = 0;",
        );
        rows = self.count_rows(&db).unwrap();
        // Long enough for another snapshot (snapshot-interval 3s) and a timed checkpoint.
        std::thread::sleep(Duration::from_secs(4));
        insert(4, 8, Duration::ZERO);
        rows += 8;
        self.wait_replicated(&config, &db, &oracle, rows);
        running.stop();
        // The oracle is the backup as the stopped sidecar left it (it may have written
        // another snapshot or segment since the last check).
        self.wait_replicated(&config, &db, &oracle, rows);
        V03Backup {
            source: db,
            oracle,
            rows,
            url: replica.url(),
            first_generation_done,
            first_generation_rows,
            config,
        }
    }
}

/// The current time as RFC 3339 in UTC with nanoseconds (`2026-01-02T03:04:05.123456789Z`).
fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
