//! Upgrading from the Go sqlite-rest and its Litestream 0.3 sidecar, through the real
//! `sqlite-rest` binary: a replica path holding a backup written by the real Litestream
//! 0.3.13 (several generations, snapshots and WAL indexes, a few MB; file and S3) is restored
//! by `sqlite-rest restore` and by `serve` when there is no local database; the server then
//! replicates in LTX under the same path, and both our restore and the real Litestream
//! 0.5.17's return the 0.3 data plus the new writes. A replica path holding anything else is
//! refused by name by both commands, and no database is created.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::litestream::Litestream;
use testkit::litestream_v03::{LitestreamV03, V03Backup, V03Replica};

const BIN: &str = env!("CARGO_BIN_EXE_sqlite-rest");

/// Rows of `t` (id, phase) in a database file.
fn rows(path: &Path) -> Vec<(i64, i64)> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn.prepare("SELECT id, phase FROM t ORDER BY id").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn restore_cmd(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("restore")
        .args(args)
        .output()
        .unwrap()
}

/// The Litestream 0.5 config sqlite-rest serves `db` with, replicating to `url`.
fn write_config(dir: &Path, db: &Path, url: &str) -> PathBuf {
    let config = dir.join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "levels:\n  - interval: 2s\nsnapshot:\n  interval: 1h\nl0-retention: 1h\nshutdown-sync-timeout: 10s\n\
             dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      url: {url}\n",
            db.display()
        ),
    )
    .unwrap();
    config
}

fn serve_cmd(dir: &Path, db: &Path, config: &Path, port: u16, admin: u16) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--db-dsn")
        .arg(db)
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--metrics-addr", &format!("127.0.0.1:{admin}")])
        .args(["--security-allow-table", "t", "--insecure-disable-auth"])
        .arg("--replication-enabled")
        .arg("--replication-config")
        .arg(config)
        .args(["--log-level", "info"])
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("server.log"))
                .unwrap(),
        ));
    cmd
}

/// Kills the server if a failed assertion leaves it running.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// SIGTERM, then the exit status (within 30 s).
fn stop(mut child: Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sqlite-rest did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `sqlite-rest restore` of the 0.3 backup (dry run, then for real) equals Litestream
/// 0.3.13's restore.
fn restore_command(backup: &V03Backup, dir: &Path) {
    let dry = restore_cmd(&[
        "--dry-run",
        "--json",
        "-o",
        "/nonexistent/x.db",
        &backup.url,
    ]);
    testkit::assert_success(&dry);
    let plan: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(plan["format"], "litestream-0.3", "{plan}");
    assert!(plan["files"].as_array().unwrap().len() >= 2, "{plan}");
    let out = dir.join("restored-v03.db");
    let o = restore_cmd(&[
        "-o",
        out.to_str().unwrap(),
        "--integrity-check",
        "full",
        &backup.url,
    ]);
    testkit::assert_success(&o);
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&backup.oracle).unwrap(),
        "sqlite-rest restore differs from Litestream 0.3.13's"
    );
}

/// `serve` with no local database restores the 0.3 backup, takes writes, and after SIGTERM
/// the replica restores (ours and Litestream 0.5.17's) to the 0.3 data plus them.
async fn start_up(backup: &V03Backup, dir: &Path) {
    let db = dir.join("app.db");
    let config = write_config(dir, &db, &backup.url);
    let (child, port, _admin) =
        common::spawn_ready(|p, a| serve_cmd(dir, &db, &config, p, a)).await;
    let mut child = Guard(Some(child));
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let r = client
        .get(format!("{base}/t?select=id,phase&order=id"))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let served: Value = r.json().await.unwrap();
    assert_eq!(
        status, 200,
        "the server must serve the Litestream 0.3 backup's table t; it answered {served}"
    );
    let served: Vec<(i64, i64)> = served
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_i64().unwrap(), r["phase"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        served,
        rows(&backup.oracle),
        "the server must serve the 0.3 backup"
    );
    let r = client
        .post(format!("{base}/t"))
        .json(&serde_json::json!([
            {"phase": 300, "payload": "after the upgrade"},
            {"phase": 301, "payload": "and another"}
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = client
        .patch(format!("{base}/t?id=eq.1"))
        .json(&serde_json::json!({"phase": 302}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert!(
        stop(child.0.take().unwrap()).success(),
        "{}",
        std::fs::read_to_string(dir.join("server.log")).unwrap()
    );
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap();
    assert!(log.contains("Litestream 0.3 backup"), "{log}");
    let mut expected = rows(&backup.oracle);
    expected[0].1 = 302;
    expected.extend(rows(&db).into_iter().filter(|r| r.1 >= 300 && r.1 != 302));
    assert_eq!(expected.len() as i64, backup.rows + 2);
    assert_eq!(rows(&db), expected);

    // The continuation, restored by us and by Litestream 0.5.17.
    let ours = dir.join("ours-after.db");
    testkit::assert_success(&restore_cmd(&[
        "-o",
        ours.to_str().unwrap(),
        "--integrity-check",
        "full",
        &backup.url,
    ]));
    assert_eq!(rows(&ours), expected);
    if let Some(ls) = Litestream::require("upgrade_through_the_binary") {
        let theirs = dir.join("litestream-05-after.db");
        let o = ls.restore(&backup.url, &theirs, &["-integrity-check", "full"]);
        testkit::assert_success(&o);
        assert_eq!(rows(&theirs), expected);
        assert!(std::fs::read(&theirs).unwrap() == std::fs::read(&ours).unwrap());
    }
}

fn file_backup(test: &str, dir: &Path) -> Option<V03Backup> {
    let v03 = LitestreamV03::require(test)?;
    Some(v03.write_backup(dir, &V03Replica::File(dir.join("replica")), 4))
}

fn s3_backup(test: &str, dir: &Path) -> Option<V03Backup> {
    let v03 = LitestreamV03::require(test)?;
    let s3 = testkit::require_s3(test)?;
    let bucket = s3.create_bucket("v03-bin");
    let replica = V03Replica::S3 {
        s3,
        bucket,
        path: "app".to_string(),
    };
    Some(v03.write_backup(dir, &replica, 4))
}

#[test]
fn the_restore_command_restores_a_litestream_03_file_backup() {
    let dir = tempfile::tempdir().unwrap();
    if let Some(backup) = file_backup(
        "the_restore_command_restores_a_litestream_03_file_backup",
        dir.path(),
    ) {
        restore_command(&backup, dir.path());
    }
}

#[test]
fn the_restore_command_restores_a_litestream_03_s3_backup() {
    let dir = tempfile::tempdir().unwrap();
    if let Some(backup) = s3_backup(
        "the_restore_command_restores_a_litestream_03_s3_backup",
        dir.path(),
    ) {
        restore_command(&backup, dir.path());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_restores_a_litestream_03_file_backup_and_continues_in_ltx() {
    let dir = tempfile::tempdir().unwrap();
    if let Some(backup) = file_backup("serve_restores_a_litestream_03_file_backup", dir.path()) {
        start_up(&backup, dir.path()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_restores_a_litestream_03_s3_backup_and_continues_in_ltx() {
    let dir = tempfile::tempdir().unwrap();
    if let Some(backup) = s3_backup("serve_restores_a_litestream_03_s3_backup", dir.path()) {
        start_up(&backup, dir.path()).await;
    }
}

/// A replica path holding something that is not a Litestream replica: `serve` exits non-zero
/// naming it and creates no database; `restore` refuses naming it.
#[test]
fn foreign_content_under_the_replica_path_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    std::fs::create_dir_all(replica.join("old-dumps")).unwrap();
    std::fs::write(replica.join("app.db"), b"SQLite format 3\0").unwrap();
    let url = format!("file://{}", replica.display());
    let db = dir.path().join("app.db");
    let config = write_config(dir.path(), &db, &url);
    let log = dir.path().join("serve.log");
    let child = Command::new(BIN)
        .args([
            "serve",
            "--insecure-disable-auth",
            "--security-allow-table",
            "t",
        ])
        .args(["--http-addr", "127.0.0.1:0", "--metrics-addr", ""])
        .arg("--db-dsn")
        .arg(&db)
        .arg("--replication-enabled")
        .arg("--replication-config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let mut child = Guard(Some(child));
    // It must exit by itself; one still serving after 60 s took the path for a replica.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.0.as_mut().unwrap().try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(child);
    let stderr = std::fs::read_to_string(&log).unwrap();
    let status = status.unwrap_or_else(|| {
        panic!("serve started on foreign content instead of refusing:\n{stderr}")
    });
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("found `app.db`, `old-dumps/` under")
            && stderr.contains("not a Litestream replica"),
        "{stderr}"
    );
    assert!(!db.exists(), "no new database next to foreign content");

    let o = restore_cmd(&["-o", dir.path().join("r.db").to_str().unwrap(), &url]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("`app.db`") && stderr.contains("not a Litestream replica"),
        "{stderr}"
    );
    assert!(!dir.path().join("r.db").exists());
}
