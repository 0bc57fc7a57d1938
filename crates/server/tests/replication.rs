//! Embedded replication through the real `sqlite-rest` binary, on file and S3 (moto)
//! replicas, checked with the real Litestream: restore before serving, a new database on an
//! empty replica, refusal of a diverged database, exit within the retry window when the
//! replica keeps failing (with `/health` unhealthy first) or hangs (an S3 endpoint that stops
//! answering, behind a fault-injecting proxy), SIGTERM under a write load
//! (every acknowledged write on the replica), SIGKILL under a write load (each restart
//! continues the lineage, loses no acknowledged write and levels the replica), writes by the
//! sqlite3 CLI, clear start-up errors for bad configs, metrics, the `restore` command and the
//! demo's replica.
//!
//! Writes go through the HTTP API (the single writer's commit notices wake replication) and,
//! where a test needs another process's writes, to the database file with rusqlite or the
//! sqlite3 CLI (found by polling every `monitor-interval`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::litestream::Litestream;
use testkit::proxy::{FaultProxy, NetFault};

use common::replica::{BIN, Running, Setup, create_db, ids, insert, lose_database};

async fn restores_before_serving(setup: Setup, ls: &Litestream) {
    // Replicate a database, then lose it (and its metadata).
    create_db(&setup.db, 20);
    let expected = ids(&setup.db);
    {
        let mut s = setup.serve().await;
        s.wait_replicated("").await;
        s.stop().await;
    }
    setup.lose_database();

    let s = setup.serve().await;
    let rows = s.rows().await;
    let got: Vec<i64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, expected, "the server answers with the restored data");
    assert!(setup.log().contains("restore finished"), "{}", setup.log());
    // Replication continues after the restore.
    let before = s.replicated_txid("").await;
    // One transaction: a sync sees all three rows or none, so the first TXID after `before`
    // holds them.
    let c = rusqlite::Connection::open(&setup.db).unwrap();
    c.execute_batch("BEGIN").unwrap();
    insert(&c, 3);
    c.execute_batch("COMMIT").unwrap();
    s.wait_replicated(&before).await;
    let out = setup.litestream_restore(ls, "check.db");
    assert_eq!(ids(&out), ids(&setup.db));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_a_missing_database_before_serving_file() {
    let Some(ls) = Litestream::require("restores_a_missing_database_before_serving_file") else {
        return;
    };
    restores_before_serving(Setup::file(), &ls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_a_missing_database_before_serving_s3() {
    let test = "restores_a_missing_database_before_serving_s3";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    let Some(setup) = Setup::s3(test) else { return };
    restores_before_serving(setup, &ls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_replica_starts_a_new_database_and_metrics_and_health_report_it() {
    let setup = Setup::file();
    let s = setup.serve().await;
    assert!(setup.db.exists(), "a new database was created");
    let (status, h) = s.health().await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["replication"]["ok"], true, "{h}");
    assert!(h["replication"]["lag_ms"].is_number(), "{h}");
    // The PUT series exists once the first upload is done, which readiness does not wait
    // for (it runs beside the server's own start).
    s.wait_replicated("").await;
    let m = s.metrics().await;
    for name in [
        "sqlite_rest_replication_lag_seconds",
        "sqlite_rest_replication_bytes_replicated_total",
        "sqlite_rest_replication_last_snapshot_timestamp",
        "litestream_txid{db=",
        "litestream_sync_count{db=",
        "litestream_replica_operation_total{operation=\"PUT\",replica_type=\"file\"}",
        "sqlite_rest_database_size_bytes",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics:\n{m}");
    }
}

/// The command between backticks in `stderr` that starts with `prefix` (a remedy printed by
/// a refused start).
fn printed_command(stderr: &str, prefix: &str) -> String {
    let at = stderr
        .find(&format!("`{prefix}"))
        .unwrap_or_else(|| panic!("no `{prefix}…` command in: {stderr}"));
    let rest = &stderr[at + 1..];
    rest[..rest.find('`').unwrap()].to_string()
}

impl Setup {
    /// Runs a command printed by the server as an operator would: in a shell, with
    /// `sqlite-rest` on the PATH.
    fn run_printed(&self, command: &str) -> Output {
        let bin = self.dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let link = bin.join("sqlite-rest");
        if !link.exists() {
            std::os::unix::fs::symlink(BIN, &link).unwrap();
        }
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("sh")
            .args(["-c", command])
            .env("PATH", path)
            .output()
            .unwrap()
    }

    /// Points the config at another replica URL.
    fn use_replica(&self, url: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let current = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("url: "))
            .unwrap()
            .to_string();
        std::fs::write(&self.config, text.replace(&current, url)).unwrap();
    }

    /// The file replica's L0 files: name → size.
    fn replica_l0(&self) -> std::collections::BTreeMap<String, u64> {
        l0_files(&self.dir.path().join("replica"))
    }
}

/// The L0 files of the file replica in `replica`: name → size.
fn l0_files(replica: &Path) -> std::collections::BTreeMap<String, u64> {
    std::fs::read_dir(replica.join("ltx/0"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".ltx"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect()
}

/// POSTs one row and returns its id.
async fn post_row(s: &Running, v: &str) -> i64 {
    let r = s
        .client
        .post(format!("{}/t", s.base))
        .bearer_auth(s.token())
        .header("Prefer", "return=representation")
        .json(&serde_json::json!({ "v": v }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let rows: Value = r.json().await.unwrap();
    rows[0]["id"].as_i64().unwrap()
}

/// The MaxTXID of an LTX file name (`<min hex16>-<max hex16>.ltx`).
fn max_txid(name: &str) -> u64 {
    u64::from_str_radix(&name[17..33], 16).unwrap()
}

fn row_ids(rows: &Value) -> Vec<i64> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

/// How a test makes the local database and its replica diverge.
#[derive(Debug, Clone, Copy)]
enum Divergence {
    /// Another database, with no replication history, appears at the path.
    AnotherDatabase,
    /// Another database with a replication history of its own (on another replica) is
    /// pointed at this replica: both record the same TXIDs with different contents.
    AnotherHistory,
}

/// Replicates a database, then makes the local side diverge as `how` says: the next start
/// refuses, changing nothing. Returns its stderr.
async fn diverge(setup: &Setup, how: Divergence) -> String {
    create_db(&setup.db, 5);
    {
        let mut s = setup.serve().await;
        s.wait_replicated("").await;
        s.stop().await;
    }
    setup.lose_database();
    create_db(&setup.db, 2);
    if let Divergence::AnotherHistory = how {
        let other = format!("file://{}", setup.dir.path().join("other").display());
        setup.use_replica(&other);
        let mut s = setup.serve().await;
        s.wait_replicated("").await;
        s.stop().await;
        setup.use_replica(&setup.url);
    }
    let before = std::fs::read(&setup.db).unwrap();
    let (_, stderr) = setup.serve_fails();
    let kind = match how {
        Divergence::AnotherDatabase => "has no replication history",
        Divergence::AnotherHistory => "with different contents",
    };
    for needle in [
        "have diverged",
        kind,
        "Nothing was changed",
        "to keep the replica's version, run `sqlite-rest restore --force",
        "point the replication config at a new, empty replica path",
    ] {
        assert!(
            stderr.contains(needle),
            "{how:?}: {needle:?} not in: {stderr}"
        );
    }
    assert_eq!(std::fs::read(&setup.db).unwrap(), before);
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverged_database_takes_the_replicas_side_with_the_printed_command() {
    let test = "a_diverged_database_takes_the_replicas_side_with_the_printed_command";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    for how in [Divergence::AnotherDatabase, Divergence::AnotherHistory] {
        let setup = Setup::file();
        let stderr = diverge(&setup, how).await;
        let replica_rows = ids(&setup.litestream_restore(&ls, "replica.db"));
        assert_eq!(replica_rows.len(), 5);

        // The operator runs the printed command as it is.
        let command = printed_command(&stderr, "sqlite-rest restore --force");
        let out = setup.run_printed(&command);
        testkit::assert_success(&out);

        // The server serves the replica's data and replicates on from there.
        let mut s = setup.serve_or_log().await;
        assert_eq!(row_ids(&s.rows().await), replica_rows, "{how:?}");
        let before = s.replicated_txid("").await;
        let new = post_row(&s, "after the restore").await;
        s.wait_replicated(&before).await;
        s.stop().await;
        let restored = ids(&setup.litestream_restore(&ls, "after.db"));
        assert!(restored.contains(&new), "{how:?}: {restored:?}");
        assert_eq!(restored, ids(&setup.db), "{how:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverged_database_keeps_its_side_on_a_new_replica_path() {
    let test = "a_diverged_database_keeps_its_side_on_a_new_replica_path";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    for how in [Divergence::AnotherDatabase, Divergence::AnotherHistory] {
        let setup = Setup::file();
        diverge(&setup, how).await;
        let local = ids(&setup.db);
        let old_replica = setup.replica_l0();

        // The operator points the config at a new, empty replica path.
        let url = format!("file://{}", setup.dir.path().join("replica2").display());
        setup.use_replica(&url);
        let mut s = setup.serve_or_log().await;
        assert_eq!(row_ids(&s.rows().await), local, "{how:?}");
        let before = s.replicated_txid("").await;
        let new = post_row(&s, "on the new replica").await;
        s.wait_replicated(&before).await;
        s.stop().await;
        let out = setup.dir.path().join("new-replica.db");
        testkit::assert_success(&ls.restore(&url, &out, &[]));
        let restored = ids(&out);
        assert!(restored.contains(&new), "{how:?}: {restored:?}");
        assert_eq!(restored, ids(&setup.db), "{how:?}");
        assert_eq!(
            setup.replica_l0(),
            old_replica,
            "{how:?}: the old replica is untouched"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_local_position_is_refused_and_the_printed_remedy_works() {
    let setup = Setup::file();
    create_db(&setup.db, 5);
    {
        let mut s = setup.serve().await;
        s.wait_replicated("").await;
        s.stop().await;
    }
    // The newest local L0 file is damaged (a bad disk, a file copied half).
    let meta = setup.dir.path().join(".app.db-litestream");
    let l0 = meta.join("ltx/0");
    let newest = std::fs::read_dir(&l0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let len = std::fs::metadata(&newest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let (_, stderr) = setup.serve_fails();
    let remedy = format!("remove the metadata directory {}", meta.display());
    assert!(stderr.contains(&remedy), "{remedy:?} not in: {stderr}");

    // As told: remove it and start again.
    std::fs::remove_dir_all(&meta).unwrap();
    let mut s = setup.serve_or_log().await;
    assert_eq!(row_ids(&s.rows().await), ids(&setup.db));
    let before = s.replicated_txid("").await;
    post_row(&s, "after the reset").await;
    s.wait_replicated(&before).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_right_after_a_restore_loses_nothing_and_is_no_divergence() {
    // Start-up restores the database and adopts the replica's newest L0 file (N) as its
    // position; the server is killed before anything after N reaches the replica (the
    // upload of N+1 is made to fail). The restart must continue the same lineage and upload
    // every acknowledged write.
    let test = "a_kill_right_after_a_restore_loses_nothing_and_is_no_divergence";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    let setup = Setup::file();
    create_db(&setup.db, 10);
    {
        let mut s = setup.serve().await;
        s.wait_replicated("").await;
        s.stop().await;
    }
    setup.lose_database();
    let newest = setup
        .replica_l0()
        .keys()
        .map(|n| max_txid(n))
        .max()
        .unwrap();
    let next = format!("{:016x}-{:016x}.ltx", newest + 1, newest + 1);
    // A directory under the name of N+1 (listings skip it) makes its upload fail: a file
    // cannot be renamed or linked over it.
    let blocker = setup.dir.path().join("replica/ltx/0").join(&next);
    std::fs::create_dir_all(blocker.join("blocked")).unwrap();

    let mut s = setup.serve_or_log().await;
    assert!(setup.log().contains("restore finished"), "{}", setup.log());
    let mut acknowledged = Vec::new();
    for i in 0..3 {
        acknowledged.push(post_row(&s, &format!("after the restore {i}")).await);
    }
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    drop(s);
    assert!(blocker.is_dir(), "N+1 was uploaded");
    std::fs::remove_dir_all(&blocker).unwrap();

    let mut s = setup.serve_or_log().await;
    let rows = row_ids(&s.rows().await);
    for id in &acknowledged {
        assert!(rows.contains(id), "acknowledged write {id} lost: {rows:?}");
    }
    s.wait_replicated(&format!("{newest:016x}")).await;
    s.stop().await;
    assert_eq!(ids(&setup.litestream_restore(&ls, "after-kill.db")), rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_size_change_while_stopped_is_refused_and_both_remedies_work() {
    let test = "a_page_size_change_while_stopped_is_refused_and_both_remedies_work";
    let Some(sqlite3) = testkit::require_tool(testkit::Tool::Sqlite3, test) else {
        return;
    };
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    let page_size = |db: &Path| -> i64 {
        rusqlite::Connection::open(db)
            .unwrap()
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap()
    };
    // How an operator changes the page size of a WAL database with the sqlite3 shell.
    let change_page_size = |db: &Path| {
        testkit::sqlite3_exec(
            &sqlite3,
            db,
            "PRAGMA journal_mode=delete; PRAGMA page_size=8192; VACUUM; PRAGMA journal_mode=wal;",
        );
        assert_eq!(page_size(db), 8192);
    };
    let setup = Setup::file();
    create_db(&setup.db, 20);
    {
        let mut s = setup.serve().await;
        s.wait_replicated("").await;
        s.stop().await;
    }
    let replicated = ids(&setup.db);
    change_page_size(&setup.db);
    let refused = |setup: &Setup| {
        let before = std::fs::read(&setup.db).unwrap();
        let (_, stderr) = setup.serve_fails();
        for needle in [
            "page size",
            "8192",
            "4096",
            "Nothing was changed",
            "point the replication config at a new, empty replica path",
        ] {
            assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
        }
        assert_eq!(std::fs::read(&setup.db).unwrap(), before);
        stderr
    };
    let stderr = refused(&setup);

    // Undo it: the replica's version, with the printed command.
    let out = setup.run_printed(&printed_command(&stderr, "sqlite-rest restore --force"));
    testkit::assert_success(&out);
    assert_eq!(page_size(&setup.db), 4096);
    {
        let mut s = setup.serve_or_log().await;
        assert_eq!(row_ids(&s.rows().await), replicated);
        let before = s.replicated_txid("").await;
        post_row(&s, "4096").await;
        s.wait_replicated(&before).await;
        s.stop().await;
    }
    assert_eq!(
        ids(&setup.litestream_restore(&ls, "undone.db")),
        ids(&setup.db)
    );

    // Keep it: a new replica at the new page size.
    change_page_size(&setup.db);
    refused(&setup);
    let url = format!("file://{}", setup.dir.path().join("replica-8k").display());
    setup.use_replica(&url);
    let mut s = setup.serve_or_log().await;
    let before = s.replicated_txid("").await;
    post_row(&s, "8192").await;
    s.wait_replicated(&before).await;
    // Compaction at the new page size works (no crash loop): an L1 file appears.
    let l1 = setup.dir.path().join("replica-8k/ltx/1");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(&l1).map_or(true, |mut d| d.next().is_none()) {
        assert!(
            Instant::now() < deadline,
            "no L1 compaction: {}",
            setup.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
    let out = setup.dir.path().join("kept.db");
    testkit::assert_success(&ls.restore(&url, &out, &[]));
    assert_eq!(page_size(&out), 8192);
    assert_eq!(ids(&out), ids(&setup.db));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_replica_error_makes_the_server_exit_within_the_window() {
    let setup = Setup::file();
    create_db(&setup.db, 3);
    let window = Duration::from_secs(3);
    let mut s = Running::spawn(|p, a| {
        let mut c = setup.serve_cmd(p, a);
        c.env("SQLITEREST_REPLICATION_RETRY_WINDOW", "3s");
        c
    })
    .await;
    s.wait_replicated("").await;
    // The replica breaks for good: its level directories become a file.
    let replica = setup.dir.path().join("replica");
    testkit::replace_dir_with_file(&replica.join("ltx"));
    let broke = Instant::now();
    insert(&rusqlite::Connection::open(&setup.db).unwrap(), 1);
    // /health turns unhealthy while it retries.
    let deadline = Instant::now() + window;
    loop {
        let (status, h) = s.health().await;
        if status == 503 {
            assert_eq!(h["replication"]["ok"], false, "{h}");
            assert_eq!(h["status"], "degraded", "{h}");
            break;
        }
        assert!(Instant::now() < deadline, "health stayed ok: {h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = s.wait_exit(window + Duration::from_secs(10)).await;
    let took = broke.elapsed();
    assert!(!status.success(), "exit status {status}");
    assert!(took >= window, "gave up after {took:?}, before the window");
    let log = setup.log();
    assert!(log.contains("replication failed"), "{log}");
    assert!(
        log.contains(&replica.join("ltx").display().to_string()),
        "the cause is logged: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_endpoint_that_stops_answering_makes_the_server_exit_within_the_window() {
    // The S3 server still accepts connections and reads requests, but never answers (a
    // hung endpoint, behind a proxy that goes silent): a hang must count like an error.
    let test = "an_s3_endpoint_that_stops_answering_makes_the_server_exit_within_the_window";
    let Some(s3) = testkit::require_s3(test) else {
        return;
    };
    let proxy = FaultProxy::start(s3.host_port()).unwrap();
    let bucket = s3.create_bucket("silent");
    let url = format!(
        "s3://{bucket}/app?endpoint={}&region={}",
        proxy.host_port(),
        s3.region
    );
    let setup = Setup::with_url(tempfile::tempdir().unwrap(), url);
    create_db(&setup.db, 3);
    let window = Duration::from_secs(4);
    let mut s = Running::spawn(|p, a| {
        let mut c = setup.serve_cmd(p, a);
        c.env("SQLITEREST_REPLICATION_RETRY_WINDOW", "4s")
            .env("SQLITEREST_REPLICATION_OPERATION_TIMEOUT", "1s");
        c
    })
    .await;
    s.wait_replicated("").await;

    proxy.set(NetFault::Silent);
    let silent = Instant::now();
    // A write is acknowledged; its upload hangs.
    let r = s
        .client
        .post(format!("{}/t", s.base))
        .bearer_auth(s.token())
        .json(&serde_json::json!({"v": "during the hang"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // /health turns unhealthy while it retries, long before the window ends.
    let deadline = Instant::now() + window;
    loop {
        let (status, h) = s.health().await;
        if status == 503 {
            assert_eq!(h["replication"]["ok"], false, "{h}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health stayed ok while the replica hung: {h}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = s.wait_exit(window + Duration::from_secs(30)).await;
    let took = silent.elapsed();
    assert!(!status.success(), "exit status {status}");
    assert!(took >= window, "gave up after {took:?}, before the window");
    assert!(
        took < window + Duration::from_secs(8),
        "exited only {took:?} after the replica hung (window {window:?})"
    );
    let log = setup.log();
    assert!(
        log.contains("made no progress"),
        "the hang is the cause: {log}"
    );
    // Replication failed, so the server stopped serving (writes first), then exited.
    assert!(log.contains("stopping the server"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_a_write_load_leaves_every_acknowledged_write_on_the_replica() {
    let test = "sigterm_under_a_write_load_leaves_every_acknowledged_write_on_the_replica";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    for setup in Setup::file_and_s3(test) {
        create_db(&setup.db, 1);
        let mut s = setup.serve().await;
        // Every 201 is an acknowledged write.
        let writers = write_load(&s);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        s.sigterm();
        let mut acknowledged = Vec::new();
        for w in writers {
            acknowledged.extend(w.await.unwrap());
        }
        let status = s.wait_exit(Duration::from_secs(30)).await;
        assert!(status.success(), "{status}: {}", setup.log());
        assert!(
            acknowledged.len() > 50,
            "only {} writes",
            acknowledged.len()
        );
        let out = setup.litestream_restore(&ls, "after-sigterm.db");
        let on_replica: std::collections::HashSet<i64> = ids(&out).into_iter().collect();
        let missing: Vec<_> = acknowledged
            .iter()
            .filter(|id| !on_replica.contains(id))
            .collect();
        assert!(
            missing.is_empty(),
            "{}: {} acknowledged writes missing from the replica: {:?}",
            setup.url,
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }
}

/// Eight HTTP clients POST rows to `s` until it stops answering; the ids of the 201s.
fn write_load(s: &Running) -> Vec<tokio::task::JoinHandle<Vec<i64>>> {
    (0..8)
        .map(|w| {
            let (client, base, token) = (s.client.clone(), s.base.clone(), s.token());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    let r = client
                        .post(format!("{base}/t"))
                        .bearer_auth(&token)
                        .header("Prefer", "return=representation")
                        .json(&serde_json::json!({"v": format!("w{w}-{i}")}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 201 => {
                            let rows: Value = r.json().await.unwrap();
                            acked.push(rows[0]["id"].as_i64().unwrap());
                        }
                        // Stopped: refused, reset or 503.
                        _ => break,
                    }
                }
                acked
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_under_a_write_load_restarts_and_replicates_what_was_left() {
    // SIGKILL lands anywhere: mid-commit, mid-sync, mid-upload, mid-checkpoint. Each restart
    // must take the local database as the same lineage (no false divergence), keep every
    // acknowledged write, and bring the replica level with it.
    let test = "a_crash_under_a_write_load_restarts_and_replicates_what_was_left";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    for setup in Setup::file_and_s3(test) {
        create_db(&setup.db, 1);
        let mut acknowledged = Vec::new();
        for (round, ms) in [700u64, 1300, 400].into_iter().enumerate() {
            let mut s = setup.serve().await;
            let writers = write_load(&s);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            s.child.kill().unwrap();
            s.child.wait().unwrap();
            let mut acked = Vec::new();
            for w in writers {
                acked.extend(w.await.unwrap());
            }
            assert!(
                !acked.is_empty(),
                "round {round}: no write was acknowledged"
            );
            acknowledged.extend(acked);
        }
        // The last restart replicates what the crashes left behind.
        let mut s = setup.serve().await;
        let local = ids(&setup.db);
        let missing: Vec<_> = acknowledged
            .iter()
            .filter(|id| !local.contains(id))
            .collect();
        assert!(
            missing.is_empty(),
            "acknowledged writes lost locally: {missing:?}"
        );
        s.wait_replicated("").await;
        s.stop().await;
        let out = setup.litestream_restore(&ls, "after-crashes.db");
        assert_eq!(
            ids(&out),
            local,
            "{}: the replica differs from the database",
            setup.url
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_not_yet_replicated_survive_a_wal_restart_while_the_server_is_down() {
    // The server dies with a commit not yet in any LTX file; while it is down another process
    // checkpoints the whole WAL and writes, which restarts the WAL from its start. The next
    // start must still put that commit on the replica (a full snapshot if it cannot be read
    // from the WAL any more), never continue from the restarted WAL as if nothing was lost.
    let test = "commits_not_yet_replicated_survive_a_wal_restart_while_the_server_is_down";
    let (Some(ls), Some(sqlite3)) = (
        Litestream::require(test),
        testkit::require_tool(testkit::Tool::Sqlite3, test),
    ) else {
        return;
    };
    let setup = Setup::file();
    create_db(&setup.db, 200);
    let mut s = setup.serve().await;
    // Enough synced WAL that the write after the restart does not reach its end.
    for _ in 0..30 {
        let r = s
            .client
            .post(format!("{}/t", s.base))
            .bearer_auth(s.token())
            .json(&serde_json::json!({"v": "x".repeat(4000)}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    s.wait_replicated("").await;
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    // Another connection stays open meanwhile, so no process's last close checkpoints and
    // removes the WAL.
    let keep = rusqlite::Connection::open(&setup.db).unwrap();
    keep.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
        .unwrap();
    // Committed after the last sync (on the first page, which the next write leaves alone),
    // then checkpointed; then a write restarts the WAL.
    testkit::sqlite3_exec(
        &sqlite3,
        &setup.db,
        "UPDATE t SET v = 'unsynced' WHERE id = 1",
    );
    testkit::sqlite3_exec(&sqlite3, &setup.db, "PRAGMA wal_checkpoint(PASSIVE)");
    testkit::sqlite3_exec(
        &sqlite3,
        &setup.db,
        "INSERT INTO t(v) VALUES ('after the restart')",
    );
    let mut s = setup.serve().await;
    drop(keep);
    s.wait_replicated("").await;
    s.stop().await;
    let out = setup.litestream_restore(&ls, "after-restart.db");
    let first = |db: &Path| -> String {
        rusqlite::Connection::open(db)
            .unwrap()
            .query_row("SELECT v FROM t WHERE id = 1", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(first(&setup.db), "unsynced");
    assert_eq!(
        first(&out),
        "unsynced",
        "the replica lost the commit the WAL restart overwrote"
    );
    assert_eq!(ids(&out), ids(&setup.db));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_writes_reach_the_replica_without_waiting_for_a_poll() {
    let setup = Setup::file();
    // A long monitor interval: only the writer's commit notices can make it quick.
    setup.write_config("    monitor-interval: 30s\n");
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        text.replacen("    monitor-interval: 100ms\n", "", 1),
    )
    .unwrap();
    create_db(&setup.db, 1);
    let s = setup.serve().await;
    let before = s.replicated_txid("").await;
    let started = Instant::now();
    let r = s
        .client
        .post(format!("{}/t", s.base))
        .bearer_auth(s.token())
        .json(&serde_json::json!({"v": "notified"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    s.wait_replicated(&before).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}: commits did not wake replication",
        started.elapsed()
    );
    let (_, h) = s.health().await;
    assert_eq!(h["replication"]["lag_ms"], 0, "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_by_the_sqlite3_cli_are_replicated() {
    let test = "server_writes_by_the_sqlite3_cli_are_replicated";
    let Some(sqlite3) = testkit::require_tool(testkit::Tool::Sqlite3, test) else {
        return;
    };
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    let setup = Setup::file();
    create_db(&setup.db, 2);
    let s = setup.serve().await;
    let before = s.replicated_txid("").await;
    for i in 0..3 {
        testkit::sqlite3_exec(
            &sqlite3,
            &setup.db,
            &format!("INSERT INTO t(v) VALUES ('cli {i}');"),
        );
    }
    s.wait_replicated(&before).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = setup.litestream_restore(&ls, "cli.db");
        if ids(&out).len() == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "CLI rows not on the replica");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The server answers with them too.
    assert_eq!(s.rows().await.as_array().unwrap().len(), 5);
}

#[test]
fn bad_replication_settings_fail_start_up_clearly() {
    let setup = Setup::file();
    // Enabled without a config.
    let out = setup.serve_insecure(&[]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("--replication-config"),
        "{e}"
    );
    // The config file does not exist.
    let missing = setup.dir.path().join("nope.yml");
    let out = setup.serve_insecure(&["--replication-config".as_ref(), missing.as_os_str()]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("not found") && e.contains("nope.yml"),
        "{e}"
    );

    let cases: [(&str, &[&str]); 4] = [
        // An unknown key, named with its path.
        (
            "      retention-interval: 1h\n",
            &["dbs[0].replica.retention-interval"],
        ),
        // The served database is not in the config.
        ("PATH", &["is not in the replication config", "app.db"]),
        // A bad replica URL.
        ("URL s3://", &["dbs[0].replica"]),
        // An unreachable endpoint (nothing listens there).
        ("UNREACHABLE", &["not reachable", "s3://bkt/app"]),
    ];
    for (case, needles) in cases {
        let text = std::fs::read_to_string(&setup.config).unwrap();
        let bad = match case {
            "PATH" => text.replace("app.db", "other.db"),
            "URL s3://" => text.replace(&setup.url, "s3://"),
            "UNREACHABLE" => text.replace(
                &setup.url,
                &format!(
                    "s3://bkt/app?endpoint=127.0.0.1:{}&region=us-east-1",
                    testkit::free_port()
                ),
            ),
            extra => format!("{text}{extra}"),
        };
        std::fs::write(&setup.config, bad).unwrap();
        let started = Instant::now();
        let (_, stderr) = setup.serve_fails();
        assert!(started.elapsed() < Duration::from_secs(20));
        for n in needles {
            assert!(stderr.contains(n), "{case}: {n:?} not in: {stderr}");
        }
        std::fs::write(&setup.config, text).unwrap();
    }
    assert!(
        !setup.db.exists(),
        "no database was created by a failed start"
    );
}

/// `sqlite-rest restore` against `litestream restore` on the same replica.
fn restore_cmd(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("restore")
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restore_command_matches_litestream() {
    let test = "the_restore_command_matches_litestream";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    for setup in Setup::file_and_s3(test) {
        create_db(&setup.db, 10);
        let mut s = setup.serve().await;
        let first = s.replicated_txid("").await;
        insert(&rusqlite::Connection::open(&setup.db).unwrap(), 5);
        s.wait_replicated(&first).await;
        s.stop().await;
        let dir = setup.dir.path();
        let url = setup.url.as_str();

        // Latest, by URL, with a full integrity check: byte-identical to Litestream's.
        let ours = dir.join("ours.db");
        let o = restore_cmd(&[
            "-o",
            ours.to_str().unwrap(),
            "--integrity-check",
            "full",
            url,
        ]);
        testkit::assert_success(&o);
        let theirs = setup.litestream_restore(&ls, "theirs.db");
        assert!(std::fs::read(&ours).unwrap() == std::fs::read(&theirs).unwrap());
        // Into a directory that does not exist yet: made, as Litestream makes it.
        let nested = dir.join("new").join("dir").join("ours.db");
        let o = restore_cmd(&["-o", nested.to_str().unwrap(), url]);
        testkit::assert_success(&o);
        assert!(std::fs::read(&nested).unwrap() == std::fs::read(&theirs).unwrap());
        // An existing output needs --force; --if-db-not-exists skips it.
        let o = restore_cmd(&["-o", ours.to_str().unwrap(), url]);
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
        let o = restore_cmd(&["-o", ours.to_str().unwrap(), "--if-db-not-exists", url]);
        assert!(o.status.success());
        let o = restore_cmd(&["-o", ours.to_str().unwrap(), "--force", url]);
        assert!(o.status.success());
        // At a TXID, by config: same as Litestream's.
        let txid = first.as_str();
        let at = dir.join("at.db");
        let o = restore_cmd(&[
            "--config",
            setup.config.to_str().unwrap(),
            "--txid",
            txid,
            "-o",
            at.to_str().unwrap(),
            setup.db.to_str().unwrap(),
        ]);
        testkit::assert_success(&o);
        let their_at = dir.join("their-at.db");
        let r = ls.restore(url, &their_at, &["-txid", txid]);
        assert!(r.status.success());
        assert!(std::fs::read(&at).unwrap() == std::fs::read(&their_at).unwrap());
        assert_eq!(ids(&at).len(), 10);
        // The dry-run plan is Litestream's.
        let o = restore_cmd(&["--dry-run", "--json", "-o", "/nonexistent/x.db", url]);
        assert!(o.status.success());
        let plan: Value = serde_json::from_slice(&o.stdout).unwrap();
        let theirs_plan = ls.restore_plan(url, None);
        let names: Vec<&str> = plan["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        let their_names: Vec<String> = theirs_plan
            .files
            .iter()
            .map(|f| f.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, their_names);
        assert_eq!(plan["max_txid"], theirs_plan.max_txid.as_str());
        // Bad input is refused clearly; a missing backup with --if-replica-exists is fine.
        let o = restore_cmd(&["-o", dir.join("x.db").to_str().unwrap(), "--txid", "9", url]);
        assert!(String::from_utf8_lossy(&o.stderr).contains("16 hex digits"));
        let o = restore_cmd(&[
            "-o",
            dir.join("x.db").to_str().unwrap(),
            "--txid",
            "00000000000000ff",
            url,
        ]);
        assert!(String::from_utf8_lossy(&o.stderr).contains("no matching backup files available"));
        let o = restore_cmd(&[
            "-o",
            dir.join("x.db").to_str().unwrap(),
            "--txid",
            "00000000000000ff",
            "--if-replica-exists",
            url,
        ]);
        assert!(o.status.success());
        assert!(!dir.join("x.db").exists());
        // By timestamp: a time after everything restores the latest state.
        let ts = "2100-01-01T00:00:00Z";
        let o = restore_cmd(&[
            "--config",
            setup.config.to_str().unwrap(),
            "--timestamp",
            ts,
            "-o",
            dir.join("ts.db").to_str().unwrap(),
            setup.db.to_str().unwrap(),
        ]);
        testkit::assert_success(&o);
        assert!(std::fs::read(dir.join("ts.db")).unwrap() == std::fs::read(&theirs).unwrap());
    }
}

/// `sqlite-rest demo` in `demo` on the given ports.
fn demo_cmd(demo: &Path, port: u16, admin: u16) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("demo")
        .arg("--dir")
        .arg(demo)
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--metrics-addr", &format!("127.0.0.1:{admin}")])
        .args(["--log-level", "warn"])
        .stdout(Stdio::null());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_replicates_to_a_local_directory_and_restores_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let start = || Running::spawn(|port, admin| demo_cmd(&demo, port, admin));
    let mut s = start().await;
    s.wait_replicated("").await;
    assert!(demo.join("litestream.yml").exists());
    assert!(demo.join("replica/ltx/0").is_dir());
    s.stop().await;
    lose_database(&demo.join("bookstore.db"));
    let s = start().await;
    let (status, h) = s.health().await;
    assert_eq!(status, 200, "{h}");
    assert!(demo.join("bookstore.db").exists(), "restored");
    let c = rusqlite::Connection::open(demo.join("bookstore.db")).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM books", [], |r| r.get(0))
        .unwrap();
    assert!(n > 0);
}

/// True if the LTX file at `path` holds every page of the database it describes (a full
/// file, as the first of a new replica), read page by page with the `ltx` crate.
fn is_full_ltx(path: &Path) -> bool {
    let mut dec = ltx::Decoder::new(std::fs::File::open(path).unwrap()).unwrap();
    let header = *dec.header();
    let mut page = vec![0u8; header.page_size as usize];
    let mut pages = 0u32;
    while dec.next_page(&mut page).unwrap().is_some() {
        pages += 1;
    }
    let lock = ltx::lock_page(header.page_size);
    pages == header.commit - u32::from(lock <= header.commit)
}

/// Starts and cleanly stops a server three times without a write in between (`start` gives
/// it ready), and checks that the replica gained no full L0 file after the first run.
async fn restarts_write_no_full_l0_file<F: std::future::Future<Output = Running>>(
    replica: &Path,
    start: impl Fn() -> F,
) {
    let mut s = start().await;
    s.wait_replicated("").await;
    s.stop().await;
    let first = l0_files(replica);
    let l0 = replica.join("ltx/0");
    assert!(
        first.keys().any(|name| is_full_ltx(&l0.join(name))),
        "the first run wrote no full L0 file: {first:?}"
    );
    for _ in 0..2 {
        let mut s = start().await;
        s.wait_replicated("").await;
        s.stop().await;
    }
    let added: Vec<_> = l0_files(replica)
        .into_iter()
        .filter(|(name, _)| !first.contains_key(name))
        .collect();
    for (name, size) in &added {
        assert!(
            !is_full_ltx(&l0.join(name)),
            "a restart without changes wrote the full L0 file {name} ({size} bytes); added: {added:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_without_changes_writes_no_full_l0_file() {
    let setup = Setup::file();
    create_db(&setup.db, 400);
    restarts_write_no_full_l0_file(&setup.dir.path().join("replica"), || setup.serve()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_restarts_without_writing_a_full_l0_file() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let start = || Running::spawn(|port, admin| demo_cmd(&demo, port, admin));
    restarts_write_no_full_l0_file(&demo.join("replica"), start).await;
}

#[test]
fn the_readme_replication_examples_are_valid_configs() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let section = readme
        .split("## Replication")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a Replication section");
    let mut yaml_blocks = 0;
    for block in section.split("```yaml\n").skip(1) {
        let yaml = block.split("```").next().unwrap();
        replication::Config::parse(yaml, replication::LoadOptions::default())
            .and_then(|c| c.ensure_supported().map(|_| c))
            .unwrap_or_else(|e| panic!("README example does not parse: {e}\n{yaml}"));
        yaml_blocks += 1;
    }
    assert_eq!(yaml_blocks, 3, "file, s3 and abs examples");
    // The policy is valid JSON naming the four actions.
    let policy = section
        .split("```json\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let v: Value = serde_json::from_str(policy).unwrap();
    let text = v.to_string();
    for action in [
        "s3:PutObject",
        "s3:GetObject",
        "s3:ListBucket",
        "s3:DeleteObject",
    ] {
        assert!(text.contains(action), "{action}");
    }
}
