//! Failing fast and shutting down cleanly: a replica error that persists makes replication
//! fatal within the retry window (the local sync goes on until shutdown) (a dead endpoint while idle at the next write: idle costs no
//! request, not even a probe); a transient one
//! recovers; bad start-up settings fail with clear errors; shutdown after a write load leaves
//! every acknowledged commit on the replica; writes by another process (the sqlite3 CLI) are
//! replicated too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use replication::restore::IntegrityCheck;
use replication::restore::RestoreTarget;
use replication::{CommitNotice, Replicator, ReplicatorOptions, StartError};
use replication::{Config, LoadOptions};
use testkit::litestream::Litestream;

fn options(yaml: &str, db: &Path, window: Duration) -> ReplicatorOptions {
    let mut o = replicator_options(yaml, db);
    o.retry_window = window;
    o.probe_interval = Duration::from_millis(200);
    o
}

async fn start(yaml: &str, db: &Path, window: Duration) -> Replicator {
    Replicator::start(options(yaml, db, window)).await.unwrap()
}

/// A private moto S3 server that a test may kill.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start(test: &str) -> Option<Moto> {
        let python = testkit::require_tool(testkit::Tool::Python, test)?;
        let port = testkit::free_port();
        let child = Command::new(python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let s3 = testkit::S3 {
            endpoint: format!("http://127.0.0.1:{port}"),
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
            region: "us-east-1".into(),
        };
        s3.create_bucket("private");
        Some(Moto { child, port })
    }

    fn url(&self) -> String {
        // create_bucket names are unique; find ours by listing is overkill: use a fixed one.
        format!(
            "s3://bkt/db?endpoint=127.0.0.1:{}&region=us-east-1",
            self.port
        )
    }

    fn create_fixed_bucket(&self) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        use std::io::{Read, Write};
        write!(s, "PUT /bkt HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.port).unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        assert!(buf.starts_with("HTTP/1.1 200"), "{buf}");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_upload_errors_are_fatal_within_the_window() {
    init_logging();
    let (_t, dir) = tempdir();
    let db = dir.join("app.db");
    let replica = dir.join("replica");
    let yaml = fast_config(&db, &file_url(&replica), "");
    let window = Duration::from_secs(2);
    let r = start(&yaml, &db, window).await;
    r.sync_and_wait().await.unwrap();
    // Break the replica: its level directories become a file.
    testkit::replace_dir_with_file(&replica.join("ltx"));
    let broke = Instant::now();
    let conn = wal_db(&db);
    insert(&conn, 3, 100);
    r.handle().notify_commit(CommitNotice { seq: 1 });
    let h = r.handle();
    let status_seen_unhealthy = tokio::spawn(async move {
        loop {
            let s = h.status();
            if !s.healthy {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let fatal = tokio::time::timeout(window + Duration::from_secs(5), r.failed())
        .await
        .expect("not fatal in time");
    let took = broke.elapsed();
    assert!(took >= window, "fatal too early: {took:?}");
    assert!(
        took < window + Duration::from_secs(3),
        "fatal too late: {took:?}"
    );
    // The cause is named: the replica path that cannot be written.
    assert!(
        fatal
            .to_string()
            .contains(&replica.join("ltx").display().to_string()),
        "{fatal}"
    );
    let s = status_seen_unhealthy.await.unwrap();
    assert!(!s.failures.is_empty());
    assert!(
        r.handle().wait_commit_replicated(1).await.is_err(),
        "waiters see the failure"
    );
    // The local disk still works: a commit made after the failure (a write the server was
    // still finishing) gets its TXID, a local L0 file holds it, and one made just before
    // shutdown is in a local L0 file too (the final local sync), ready for the next start.
    let before = r.handle().positions().local_txid;
    insert(&conn, 1, 100);
    r.handle().notify_commit(CommitNotice { seq: 2 });
    let txid = tokio::time::timeout(Duration::from_secs(10), r.handle().wait_commit_synced(2))
        .await
        .expect("the local sync went on after the failure")
        .expect("a commit after the failure still gets its TXID");
    assert!(txid > before, "{txid} after {before}");
    insert(&conn, 1, 100);
    r.handle().notify_commit(CommitNotice { seq: 3 });
    drop(conn);
    let err = r.shutdown().await.expect_err("replication had failed");
    assert!(
        err.to_string()
            .contains(&replica.join("ltx").display().to_string()),
        "{err}"
    );
    let newest = replication::MetaDir::new(dir.join(".app.db-litestream"))
        .newest_l0()
        .unwrap()
        .expect("local L0 files");
    assert!(newest.max > txid, "{newest:?} after {txid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_recover() {
    let (_t, dir) = tempdir();
    let db = dir.join("app.db");
    let replica = dir.join("replica");
    let yaml = fast_config(&db, &file_url(&replica), "");
    let r = start(&yaml, &db, Duration::from_secs(20)).await;
    r.sync_and_wait().await.unwrap();
    // The start-up maintenance may still be writing: a mkdir of its level between a rename
    // and the write of the file would make the write fail. The helper retries; the
    // original directory is the first one it sets aside.
    testkit::replace_dir_with_file(&replica.join("ltx"));
    let saved = replica.join("ltx.aside0");
    let conn = wal_db(&db);
    insert(&conn, 3, 100);
    r.handle().notify_commit(CommitNotice { seq: 1 });
    let deadline = Instant::now() + Duration::from_secs(5);
    while r.handle().status().healthy {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::remove_file(replica.join("ltx")).unwrap();
    std::fs::rename(&saved, replica.join("ltx")).unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        r.handle().wait_commit_replicated(1),
    )
    .await
    .unwrap()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !r.handle().status().healthy {
        assert!(Instant::now() < deadline, "{:?}", r.handle().status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_s3_endpoint_is_noticed_at_the_next_write() {
    init_logging();
    let test = "a_dead_s3_endpoint_is_noticed_at_the_next_write";
    let Some(mut moto) = Moto::start(test) else {
        return;
    };
    moto.create_fixed_bucket();
    let (_t, dir) = tempdir();
    let db = dir.join("app.db");
    let yaml = fast_config(&db, &moto.url(), "");
    let window = Duration::from_secs(2);
    let registry = prometheus::Registry::new();
    let mut o = options(&yaml, &db, window);
    o.registry = Some(registry.clone());
    let r = Replicator::start(o).await.unwrap();
    r.sync_and_wait().await.unwrap();
    // Let the probe and the maintenance catch up with the first write (the longest interval
    // is 4 s), then go idle.
    wait_quiet(
        &registry,
        Duration::from_millis(4500),
        Duration::from_secs(60),
    )
    .await;
    moto.kill();
    // Idle costs nothing, not even a probe: nobody notices the dead endpoint while nothing
    // is written (well past the window, at a 200 ms probe interval).
    tokio::time::sleep(window * 2).await;
    assert!(r.handle().status().healthy, "{:?}", r.handle().status());
    // The next write's upload fails, the probe runs every second again, and the failure is
    // fatal within the window.
    let conn = wal_db(&db);
    insert(&conn, 3, 100);
    r.handle().notify_commit(CommitNotice { seq: 1 });
    let written = Instant::now();
    let fatal = tokio::time::timeout(Duration::from_secs(20), r.failed())
        .await
        .expect("not fatal in time");
    let took = written.elapsed();
    assert!(took < window + Duration::from_secs(8), "{took:?}");
    assert!(!fatal.last_error.is_empty(), "{fatal}");
    let _ = r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_start_up_settings_fail_clearly() {
    let (_t, dir) = tempdir();
    let db = dir.join("app.db");
    // The database is not in the config.
    let yaml = fast_config(&dir.join("other.db"), &file_url(&dir.join("replica")), "");
    let err = Replicator::start(options(&yaml, &db, Duration::from_secs(5)))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StartError::Config(_)), "{msg}");
    assert!(
        msg.contains("is not in the replication config") && msg.contains("app.db"),
        "{msg}"
    );
    // An unknown key is named with its path.
    let bad = format!(
        "{}      retention-interval: 1h\n",
        fast_config(&db, &file_url(&dir.join("replica")), "")
    );
    let err = Config::parse(&bad, LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("dbs[0].replica.retention-interval"), "{err}");
    // A bad replica URL.
    let err = Config::parse(&fast_config(&db, "s3://", ""), LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("dbs[0].replica"), "{err}");
    // An unreachable endpoint fails the start, quickly, naming the replica.
    let port = testkit::free_port();
    let yaml = fast_config(
        &db,
        &format!("s3://bkt/db?endpoint=127.0.0.1:{port}&region=us-east-1"),
        "",
    );
    let started = Instant::now();
    let err = Replicator::start(options(&yaml, &db, Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let msg = err.to_string();
    assert!(matches!(err, StartError::Unreachable { .. }), "{msg}");
    assert!(
        msg.contains("s3://bkt/db") && msg.contains("not reachable"),
        "{msg}"
    );
    assert!(!db.exists(), "nothing was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_after_a_write_load_leaves_every_acknowledged_commit_on_the_replica() {
    let test = "shutdown_after_a_write_load_leaves_every_acknowledged_commit_on_the_replica";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    let (_t, dir) = tempdir();
    let db = dir.join("app.db");
    let url = file_url(&dir.join("replica"));
    let r = start(&fast_config(&db, &url, ""), &db, Duration::from_secs(30)).await;
    let h = r.handle();
    let db2 = db.clone();
    let acknowledged = tokio::task::spawn_blocking(move || {
        let conn = wal_db(&db2);
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        let started = Instant::now();
        let mut seq = 0u64;
        // A load of at least 300 commits over at least 1.5 s, however slow the machine.
        while seq < 300 || started.elapsed() < Duration::from_millis(1500) {
            seq += 1;
            conn.execute("INSERT INTO t(v) VALUES (randomblob(64))", [])
                .unwrap();
            h.notify_commit(CommitNotice { seq });
        }
        conn.query_row("SELECT max(id) FROM t", [], |r| r.get::<_, i64>(0))
            .unwrap()
    })
    .await
    .unwrap();
    // The writer stopped (as the server stops taking writes on SIGTERM); shut down.
    let report = r.shutdown().await.unwrap();
    assert_eq!(
        report.positions.replicated_txid,
        report.positions.local_txid
    );
    let out = dir.join("out.db");
    restore(&ls, &url, &out, &[]);
    let conn = rusqlite::Connection::open(&out).unwrap();
    let max: i64 = conn
        .query_row("SELECT max(id) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(max, acknowledged);
    assert!(acknowledged >= 300, "only {acknowledged} writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_by_the_sqlite3_cli_are_replicated() {
    let test = "writes_by_the_sqlite3_cli_are_replicated";
    let Some(sqlite3) = testkit::require_tool(testkit::Tool::Sqlite3, test) else {
        return;
    };
    let (_t, dir) = tempdir();
    let db = dir.join("app.db");
    drop(wal_db(&db));
    let url = file_url(&dir.join("replica"));
    let r = start(&fast_config(&db, &url, ""), &db, Duration::from_secs(30)).await;
    let start = r.handle().positions().replicated_txid;
    for i in 0..3 {
        testkit::sqlite3_exec(
            &sqlite3,
            &db,
            &format!("INSERT INTO t(v) VALUES (CAST('from the cli {i}' AS BLOB));"),
        );
    }
    // No notification: the monitor interval (100 ms) finds them.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = r.handle().positions();
        if p.replicated_txid > start && p.replicated_txid == p.local_txid {
            let out = dir.join(format!("check-{}.db", p.replicated_txid));
            let c = open_url(&url).await;
            restore_ours(&c, RestoreTarget::Latest, &out, IntegrityCheck::None)
                .await
                .unwrap();
            if rows(&out).len() == 3 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "CLI writes not replicated: {:?}",
            r.handle().positions()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    r.shutdown().await.unwrap();
}

/// Starts replicating `db` to the file replica `replica`, syncs once, then makes L0 uploads
/// fail (through `switch`), commits three times (each synced locally) and lands a snapshot
/// (level 9, taken from the local database) at the local position, as the snapshot job does
/// while L0 uploads fail. Returns the replicator, the snapshot and the config.
async fn snapshot_at_the_local_position_while_l0_uploads_fail(
    db: &Path,
    replica: &Path,
    switch: &std::sync::Arc<common::faulty::Switch>,
    conn: &rusqlite::Connection,
) -> (Replicator, replication::LtxFileInfo, String) {
    // L0 retention kept long: the callers look at level 0 from TXID 1 on, and with
    // `fast_config`'s 2 s the first files went as soon as a level-1 compaction (at the
    // restart's start-up, say) found them that old: the first run alone waits 1 s in its
    // failing shutdown, and a slow machine takes the rest.
    let yaml = fast_config(db, &file_url(replica), "")
        .replace("shutdown-sync-timeout: 10s", "shutdown-sync-timeout: 1s")
        .replace("l0-retention: 2s", "l0-retention: 1h");
    let mut o = options(&yaml, db, Duration::from_secs(60));
    o.wrap_client = Some(switch.wrapper());
    let r = Replicator::start(o).await.unwrap();
    insert(conn, 10, 100);
    r.sync_and_wait().await.unwrap();
    switch.set(common::faulty::Fault::FailL0Writes);
    for _ in 0..3 {
        // Read before the commit: the sync the wake starts may end before the next line.
        let before = r.handle().positions().local_txid;
        insert(conn, 10, 100);
        r.handle().wake();
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.handle().positions().local_txid == before {
            assert!(Instant::now() < deadline, "no sync");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let snap = r.snapshot_now().await.unwrap();
    assert_eq!(
        snap.name.max,
        r.handle().positions().local_txid,
        "the snapshot is at the local position"
    );
    (r, snap, yaml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_ahead_of_the_uploaded_l0_files_leaves_no_gap() {
    // L0 uploads fail for a while; a snapshot (level 9, taken from the local database) still
    // reaches the replica, labelled with the local position; the server stops before the L0
    // files get there. The next start must upload those L0 files, not continue after the
    // snapshot's TXID and leave every level with a hole.
    init_logging();
    let (_t, dir) = tempdir();
    let db = dir.join("app.db");
    let replica = dir.join("replica");
    let switch = std::sync::Arc::new(common::faulty::Switch::default());
    let _guard = switch.guard();
    let conn = wal_db(&db);
    let (r, snap, yaml) =
        snapshot_at_the_local_position_while_l0_uploads_fail(&db, &replica, &switch, &conn).await;
    assert!(
        r.shutdown().await.is_err(),
        "the L0 files could not be uploaded"
    );
    switch.set(common::faulty::Fault::None);
    let r = start(&yaml, &db, Duration::from_secs(60)).await;
    r.sync_and_wait().await.unwrap();
    r.shutdown().await.unwrap();
    let client = open_url(&file_url(&replica)).await;
    let l0 = client
        .list(replication::Level::L0, Default::default())
        .await
        .unwrap();
    // Uploads merge the pending files into `<min>-<max>` objects: contiguous ranges.
    let txids: Vec<(u64, u64)> = l0
        .iter()
        .map(|f| (f.name.min.get(), f.name.max.get()))
        .collect();
    let contiguous = txids.windows(2).all(|w| w[1].0 == w[0].1 + 1);
    assert!(
        contiguous
            && txids.first().map(|t| t.0) == Some(1)
            && txids.last().map(|t| t.1) >= Some(snap.name.max.get()),
        "L0 on the replica: {txids:?} (snapshot at {})",
        snap.name.max
    );
}

/// L0 uploads fail, a snapshot at the local position L lands, and more commits reach the
/// WAL but no L0 file before the process dies (the replicator stops, then commits come from
/// a connection that leaves its WAL behind, as a killed process does) — in the same WAL
/// generation, or after a checkpoint restarted the WAL (the torture harness's case: seed
/// 0x9afaef0576c6f140). Only the snapshot reaches L on the replica, so start-up compares the
/// local database with the replica's state at L: it must compare the local state at L, not
/// the later commits, which are simply not replicated yet. No divergence; they reach the
/// replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_after_a_snapshot_at_the_local_position_are_no_divergence_at_restart() {
    init_logging();
    for restart_wal in [false, true] {
        let (_t, dir) = tempdir();
        let db = dir.join("app.db");
        let replica = dir.join("replica");
        let switch = std::sync::Arc::new(common::faulty::Switch::default());
        let _guard = switch.guard();
        let conn = wal_db(&db);
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .unwrap();
        let (r, snap, yaml) =
            snapshot_at_the_local_position_while_l0_uploads_fail(&db, &replica, &switch, &conn)
                .await;
        assert!(
            r.shutdown().await.is_err(),
            "the L0 files could not be uploaded"
        );
        if restart_wal {
            // Every frame is in an L0 file: the next commit starts a new WAL generation.
            let (busy, _, _): (i64, i64, i64) = conn
                .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .unwrap();
            assert_eq!(busy, 0, "the checkpoint was blocked");
        }
        insert(&conn, 5, 100);
        insert(&conn, 5, 100);
        drop(conn);
        switch.set(common::faulty::Fault::None);
        let r = Replicator::start(options(&yaml, &db, Duration::from_secs(60)))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "restart (WAL restarted: {restart_wal}) after the snapshot at {}: {e}",
                    snap.name.max
                )
            });
        assert!(
            matches!(
                r.handle().start_action(),
                replication::StartAction::Continued { local, .. } if local == snap.name.max
            ),
            "{:?}",
            r.handle().start_action()
        );
        r.sync_and_wait().await.unwrap();
        r.shutdown().await.unwrap();
        let out = dir.join("restored.db");
        restore_ours(
            &open_url(&file_url(&replica)).await,
            RestoreTarget::Latest,
            &out,
            IntegrityCheck::Full,
        )
        .await
        .unwrap();
        let (ours, theirs) = (rows(&db), rows(&out));
        assert_eq!(ours.len(), 50, "the database holds every commit");
        assert!(
            ours == theirs,
            "WAL restarted: {restart_wal}: the replica has {} rows, the database {}",
            theirs.len(),
            ours.len()
        );
    }
}
