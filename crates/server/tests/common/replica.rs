//! A database replicated by the real `sqlite-rest` binary, for the tests of embedded
//! replication and durability: [`Setup`] (a database, a replica URL and the Litestream config
//! tying them, in a temp dir) starts [`Running`] servers over it; helpers write rows to a
//! table `t(id INTEGER PRIMARY KEY, v TEXT)` and read them back.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::litestream::Litestream;

/// This build's `sqlite-rest`.
pub const BIN: &str = env!("CARGO_BIN_EXE_sqlite-rest");

/// A database, a replica and the config tying them, in a temp dir.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub url: String,
    pub config: PathBuf,
    /// The `sqlite-rest` binary [`Setup::serve_cmd`] runs: this build's, unless a test sets
    /// another (the release build, `testkit::Tool::ReleaseBinary`).
    pub bin: PathBuf,
}

impl Setup {
    pub fn file() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("replica").display());
        Setup::with_url(dir, url)
    }

    pub fn s3(test: &str) -> Option<Setup> {
        let url = testkit::s3_replica_url(test, "server-repl", "app")?;
        Some(Setup::with_url(tempfile::tempdir().unwrap(), url))
    }

    /// A file setup, then an S3 one (none where S3 is not available and not required).
    pub fn file_and_s3(test: &str) -> Vec<Setup> {
        [Some(Setup::file()), Setup::s3(test)]
            .into_iter()
            .flatten()
            .collect()
    }

    pub fn with_url(dir: tempfile::TempDir, url: String) -> Setup {
        let db = dir.path().join("app.db");
        let config = dir.path().join("litestream.yml");
        let s = Setup {
            dir,
            db,
            url,
            config,
            bin: PathBuf::from(BIN),
        };
        s.write_config("");
        s
    }

    /// Writes the config with short intervals; `extra` goes into the `dbs[0]` entry.
    pub fn write_config(&self, extra: &str) {
        std::fs::write(
            &self.config,
            format!(
                "levels:\n  - interval: 2s\nsnapshot:\n  interval: 1h\nl0-retention: 1h\nshutdown-sync-timeout: 10s\n\
                 dbs:\n  - path: {}\n    monitor-interval: 100ms\n{extra}    replica:\n      url: {}\n",
                self.db.display(),
                self.url
            ),
        )
        .unwrap();
    }

    pub fn secret(&self) -> PathBuf {
        let p = self.dir.path().join("secret");
        std::fs::write(&p, super::SECRET).unwrap();
        p
    }

    pub fn serve_cmd(&self, port: u16, admin: u16) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .arg("--db-dsn")
            .arg(&self.db)
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{admin}")])
            .args(["--security-allow-table", "t"])
            .arg("--auth-token-file")
            .arg(self.secret())
            .arg("--replication-enabled")
            .arg("--replication-config")
            .arg(&self.config)
            .args(["--log-level", "info"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.path().join("server.log")).unwrap(),
            ));
        cmd
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Starts the server and waits until it is ready.
    pub async fn serve(&self) -> Running {
        Running::spawn(|p, a| self.serve_cmd(p, a)).await
    }

    /// Starts the server; panics with its log if it does not start.
    pub async fn serve_or_log(&self) -> Running {
        self.spawn_or_log(|p, a| self.serve_cmd(p, a)).await
    }

    /// Spawns `build(api_port, admin_port)` (a command that logs to [`Setup::log`]) and waits
    /// until it is ready; panics with the log if it does not start.
    pub async fn spawn_or_log(&self, build: impl FnMut(u16, u16) -> Command) -> Running {
        use futures::FutureExt;
        match std::panic::AssertUnwindSafe(Running::spawn(build))
            .catch_unwind()
            .await
        {
            Ok(r) => r,
            Err(_) => panic!("the server did not start; its log:\n{}", self.log()),
        }
    }

    /// Removes the database with its WAL, shared memory and replication metadata, as if
    /// the machine had been lost.
    pub fn lose_database(&self) {
        lose_database(&self.db);
    }

    /// Runs `serve` with replication enabled and authentication off, plus `extra` arguments
    /// (no `--replication-config` unless they give one).
    pub fn serve_insecure(&self, extra: &[&OsStr]) -> Output {
        Command::new(&self.bin)
            .args([
                "serve",
                "--insecure-disable-auth",
                "--replication-enabled",
                "--db-dsn",
            ])
            .arg(&self.db)
            .args(extra)
            .output()
            .unwrap()
    }

    /// Runs `serve` expecting it to fail at start-up; returns its output.
    pub fn serve_fails(&self) -> (Output, String) {
        let mut cmd = self.serve_cmd(testkit::free_port(), testkit::free_port());
        cmd.stderr(Stdio::piped());
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "serve should have failed");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out, stderr)
    }

    /// Restores the replica with Litestream into `name`.
    pub fn litestream_restore(&self, ls: &Litestream, name: &str) -> PathBuf {
        let out = self.dir.path().join(name);
        let _ = std::fs::remove_file(&out);
        let r = ls.restore(&self.url, &out, &[]);
        testkit::assert_success(&r);
        out
    }
}

pub struct Running {
    pub child: Child,
    pub base: String,
    pub admin: String,
    pub client: reqwest::Client,
}

impl Running {
    /// Spawns `build(api_port, admin_port)` and waits until it is ready.
    pub async fn spawn(build: impl FnMut(u16, u16) -> Command) -> Running {
        let (child, port, admin) = super::spawn_ready(build).await;
        Running {
            child,
            base: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin}"),
            client: reqwest::Client::new(),
        }
    }

    pub fn token(&self) -> String {
        super::hs_token(
            super::SECRET,
            jsonwebtoken::Algorithm::HS256,
            serde_json::json!({"role": "test"}),
        )
    }

    pub async fn health(&self) -> (u16, Value) {
        super::admin_health(&self.client, &self.admin).await
    }

    pub async fn metrics(&self) -> String {
        super::admin_get(&self.client, &self.admin, "/metrics")
            .await
            .1
    }

    pub async fn rows(&self) -> Value {
        let r = self
            .client
            .get(format!("{}/t?order=id", self.base))
            .bearer_auth(self.token())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Waits until `/health` says the replica holds everything synced locally (and something
    /// newer than `after`).
    pub async fn wait_replicated(&self, after: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (_, h) = self.health().await;
            let r = &h["replication"];
            if r["replicated_txid"] == r["local_txid"]
                && r["replicated_txid"].as_str().unwrap_or("") > after
            {
                return h;
            }
            assert!(Instant::now() < deadline, "not replicated: {h}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// [`Running::wait_replicated`], returning the replicated TXID.
    pub async fn replicated_txid(&self, after: &str) -> String {
        let h = self.wait_replicated(after).await;
        h["replication"]["replicated_txid"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Stops the server with SIGTERM, asserting a clean exit.
    pub async fn stop(&mut self) {
        self.sigterm();
        assert!(self.wait_exit(Duration::from_secs(15)).await.success());
    }

    pub fn sigterm(&self) {
        super::sigterm(&self.child);
    }

    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        super::wait_exit(&mut self.child, within).await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes `db` (which must exist), its `-wal` and `-shm` files and its replication
/// metadata directory.
pub fn lose_database(db: &Path) {
    std::fs::remove_file(db).unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let name = db.file_name().unwrap().to_str().unwrap();
    std::fs::remove_dir_all(db.with_file_name(format!(".{name}-litestream"))).unwrap();
}

pub fn create_db(db: &Path, rows: i64) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
        .unwrap();
    c.execute_batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    insert(&c, rows);
}

pub fn insert(c: &rusqlite::Connection, rows: i64) {
    for _ in 0..rows {
        c.execute("INSERT INTO t(v) VALUES (hex(randomblob(40)))", [])
            .unwrap();
    }
}

pub fn ids(db: &Path) -> Vec<i64> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut s = c.prepare("SELECT id FROM t ORDER BY id").unwrap();
    s.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}
