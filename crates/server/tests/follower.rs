//! Read replicas (`serve --replication-follow`), end to end with real processes: a primary
//! `sqlite-rest` (the release build) replicating to the local S3 server (moto) or a directory,
//! followers of the same replica, and a replica written by the real `litestream replicate`.
//! Every wait polls for a condition with a generous deadline; nothing asserts a duration.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::replica::{Running, Setup, create_db};
use serde_json::Value;

/// How long a follower may take to show a write (many poll intervals on a loaded machine).
const CATCH_UP: Duration = Duration::from_secs(60);

/// A follower's own directory: its database and a config naming the same replica.
struct Follower {
    dir: tempfile::TempDir,
    db: PathBuf,
    config: PathBuf,
    bin: PathBuf,
    url: String,
}

impl Follower {
    fn new(bin: &Path, url: &str) -> Follower {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("follower.db");
        let config = dir.path().join("litestream.yml");
        std::fs::write(
            &config,
            format!(
                "dbs:\n  - path: {}\n    replica:\n      url: {url}\n      sync-interval: 200ms\n",
                db.display()
            ),
        )
        .unwrap();
        Follower {
            dir,
            db,
            config,
            bin: bin.to_path_buf(),
            url: url.to_string(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Fails, showing the log, unless the follower's log contains `words`.
    fn assert_logged(&self, words: &str) {
        let log = self.log();
        assert!(log.contains(words), "no {words:?} in the log:\n{log}");
    }

    fn cmd(&self, port: u16, admin: u16, extra: &[&str]) -> Command {
        self.cmd_as("--replication-follow", port, admin, extra)
    }

    /// The server on this follower's database and config, as a follower
    /// (`--replication-follow`) or as a primary (`--replication-enabled`: a promotion).
    fn cmd_as(&self, role: &str, port: u16, admin: u16, extra: &[&str]) -> Command {
        let secret = self.dir.path().join("secret");
        std::fs::write(&secret, common::SECRET).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .arg("--db-dsn")
            .arg(&self.db)
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{admin}")])
            .args(["--security-allow-table", "t"])
            .arg("--auth-token-file")
            .arg(&secret)
            .arg(role)
            .arg("--replication-config")
            .arg(&self.config)
            .args(["--log-level", "info"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        cmd
    }

    async fn start(&self, extra: &[&str]) -> Running {
        use futures::FutureExt;
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let run = Running::spawn(|p, a| {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            self.cmd(p, a, &extra)
        });
        match std::panic::AssertUnwindSafe(run).catch_unwind().await {
            Ok(r) => r,
            Err(_) => panic!(
                "the follower of {} did not start; its log:\n{}",
                self.url,
                self.log()
            ),
        }
    }
}

impl Follower {
    /// Starts the follower without waiting for `/ready` (it may start unready): returns
    /// once its admin server answers `/live`.
    async fn start_unready(&self) -> Running {
        let (port, admin) = (testkit::free_port(), testkit::free_port());
        let mut child = self.cmd(port, admin, &[]).spawn().unwrap();
        let client = reqwest::Client::new();
        let deadline = Instant::now() + CATCH_UP;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the follower exited ({status}); its log:\n{}", self.log());
            }
            if client
                .get(format!("http://127.0.0.1:{admin}/live"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the follower never answered /live"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Running {
            child,
            base: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin}"),
            client,
        }
    }
}

/// The release binary and an S3 replica setup (None: skipped, unless tools are required).
fn s3_setup(test: &str) -> Option<Setup> {
    let bin = testkit::require_tool(testkit::Tool::ReleaseBinary, test)?;
    let mut setup = Setup::s3(test)?;
    setup.bin = bin;
    Some(setup)
}

fn release_bin(test: &str) -> Option<PathBuf> {
    testkit::require_tool(testkit::Tool::ReleaseBinary, test)
}

/// `GET path` with the test token and `headers`: status, TXID header, body.
async fn get(r: &Running, path: &str, headers: &[(&str, &str)]) -> (u16, Option<String>, Value) {
    let mut req = r
        .client
        .get(format!("{}{path}", r.base))
        .bearer_auth(r.token());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let txid = resp
        .headers()
        .get("sqlite-rest-txid")
        .map(|v| v.to_str().unwrap().to_string());
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, txid, body)
}

/// Inserts one row through the primary's API, answered once it is on the replica; its TXID.
async fn insert(primary: &Running, v: &str) -> String {
    let resp = primary
        .client
        .post(format!("{}/t", primary.base))
        .bearer_auth(primary.token())
        .header("Prefer", "durability=replicated")
        .json(&serde_json::json!({"v": v}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    resp.headers()["sqlite-rest-txid"]
        .to_str()
        .unwrap()
        .to_string()
}

/// The `v` column of `t` on a server, in id order.
async fn values(r: &Running) -> Vec<String> {
    let (status, _, body) = get(r, "/t?select=v&order=id", &[]).await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|o| o["v"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Waits until `r` serves exactly `want` in `t`.
async fn wait_values(r: &Running, want: &[String]) {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let got = values(r).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the follower serves {got:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the follower's `/health` satisfies `ok`; the last report.
async fn wait_health(r: &Running, what: &str, ok: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let (status, h) = r.health().await;
        if ok(status, &h) {
            return h;
        }
        assert!(Instant::now() < deadline, "{what}: {status} {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ready_status(r: &Running) -> u16 {
    common::admin_get(&r.client, &r.admin, "/ready").await.0
}

/// A primary and two followers of its S3 replica: the primary's writes appear on both;
/// `Prefer: min-txid` with the primary's TXID returns the row; every read carries a TXID;
/// writes are refused with 405 naming the primary; a new table created on the primary
/// becomes readable; a position never reached is 503 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_followers_serve_the_primarys_writes() {
    let test = "two_followers_serve_the_primarys_writes";
    let Some(setup) = s3_setup(test) else { return };
    create_db(&setup.db, 0);
    let primary = setup.serve_or_log().await;
    let mut want = vec!["first".to_string()];
    insert(&primary, "first").await;

    let a = Follower::new(&setup.bin, &setup.url);
    let b = Follower::new(&setup.bin, &setup.url);
    let extra = [
        "--replication-primary-url",
        "http://primary.example:8080",
        "--replication-follow-wait-ms",
        "30000",
        "--security-allow-table",
        "t2",
    ];
    let fa = a.start(&extra).await;
    let fb = b.start(&extra).await;
    wait_values(&fa, &want).await;
    wait_values(&fb, &want).await;

    for i in 0..5 {
        let v = format!("row {i}");
        let txid = insert(&primary, &v).await;
        want.push(v.clone());
        // The primary's position: the follower waits for it, then serves the row.
        let (status, served_at, body) = get(
            &fa,
            "/t?select=v&order=id",
            &[("Prefer", &format!("min-txid={txid}"))],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let served_at = served_at.expect("a follower's read carries Sqlite-Rest-Txid");
        assert!(served_at >= txid, "served at {served_at}, asked {txid}");
        let got: Vec<&str> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["v"].as_str().unwrap())
            .collect();
        assert!(got.contains(&v.as_str()), "{v} missing from {got:?}");
    }
    wait_values(&fa, &want).await;
    wait_values(&fb, &want).await;

    // Writes are refused, naming the primary.
    let resp = fb
        .client
        .post(format!("{}/t", fb.base))
        .bearer_auth(fb.token())
        .json(&serde_json::json!({"v": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let e: Value = resp.json().await.unwrap();
    common::assert_error_shape(&e, "25006");
    assert!(
        e["hint"]
            .as_str()
            .unwrap()
            .contains("http://primary.example:8080"),
        "{e}"
    );
    let resp = fb
        .client
        .delete(format!("{}/t?id=eq.1", fb.base))
        .bearer_auth(fb.token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    wait_values(&fb, &want).await;

    // A migration on the primary (another process writing its database; the primary
    // replicates it) becomes readable on the followers.
    {
        let c = rusqlite::Connection::open(&setup.db).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c.execute_batch("CREATE TABLE t2(id INTEGER PRIMARY KEY, w TEXT); INSERT INTO t2(w) VALUES ('migrated');")
            .unwrap();
    }
    for f in [&fa, &fb] {
        let deadline = Instant::now() + CATCH_UP;
        loop {
            let (status, _, body) = get(f, "/t2?select=w", &[]).await;
            if status == 200 && body == serde_json::json!([{"w": "migrated"}]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "t2 not readable on a follower: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Health and metrics say where the follower is.
    let h = wait_health(&fa, "follower healthy", |s, h| {
        s == 200 && h["follower"]["ok"] == true
    })
    .await;
    assert!(h["follower"]["applied_txid"].as_str().is_some(), "{h}");
    assert_eq!(ready_status(&fa).await, 200);
    let metrics = fa.metrics().await;
    for name in [
        "sqlite_rest_follower_applied_txid",
        "sqlite_rest_follower_files_applied_total",
        "sqlite_rest_follower_lag_seconds",
        "litestream_replica_operation_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    drop(primary);
    drop(fa);

    // A position the replica never reaches: 503 SR003 with Retry-After, after the bounded
    // wait (a follower started with a short one).
    let c = Follower::new(&setup.bin, &setup.url);
    let fc = c.start(&["--replication-follow-wait-ms", "300"]).await;
    let resp = fc
        .client
        .get(format!("{}/t", fc.base))
        .bearer_auth(fc.token())
        .header("Prefer", "min-txid=00000000ffffffff")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let e: Value = resp.json().await.unwrap();
    common::assert_error_shape(&e, "SR003");
}

/// A follower started late catches up; killed with SIGKILL and restarted, it resumes its
/// database (no restore) and catches up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_follower_catches_up_and_a_killed_one_resumes() {
    let test = "a_late_follower_catches_up_and_a_killed_one_resumes";
    let Some(setup) = s3_setup(test) else { return };
    create_db(&setup.db, 0);
    let primary = setup.serve_or_log().await;
    let mut want = Vec::new();
    for i in 0..10 {
        let v = format!("early {i}");
        insert(&primary, &v).await;
        want.push(v);
    }
    let f = Follower::new(&setup.bin, &setup.url);
    let mut running = f.start(&[]).await;
    wait_values(&running, &want).await;
    assert!(
        f.log().contains("follower restored its database"),
        "{}",
        f.log()
    );

    running.child.kill().unwrap();
    running.child.wait().unwrap();
    drop(running);
    for i in 0..5 {
        let v = format!("while down {i}");
        insert(&primary, &v).await;
        want.push(v);
    }
    let running = f.start(&[]).await;
    // Caught up before it became ready.
    assert_eq!(values(&running).await, want);
    f.assert_logged("follower resumes its database");
    let v = "after restart".to_string();
    insert(&primary, &v).await;
    want.push(v);
    wait_values(&running, &want).await;
}

/// A corrupted LTX file on the replica is rejected: the follower keeps serving its previous
/// state, turns unready, and `/health` says which file and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupted_file_is_rejected_and_the_previous_state_kept() {
    let test = "a_corrupted_file_is_rejected_and_the_previous_state_kept";
    let Some(bin) = release_bin(test) else { return };
    let mut setup = Setup::file();
    setup.bin = bin;
    create_db(&setup.db, 0);
    let mut primary = setup.serve_or_log().await;
    let want = vec!["kept".to_string()];
    insert(&primary, "kept").await;
    let f = Follower::new(&setup.bin, &setup.url);
    let follower = f.start(&[]).await;
    wait_values(&follower, &want).await;
    primary.stop().await;
    let h = wait_health(&follower, "follower healthy", |s, h| {
        s == 200 && h["follower"]["lag_txids"] == 0
    })
    .await;
    let at: u64 = u64::from_str_radix(h["follower"]["applied_txid"].as_str().unwrap(), 16).unwrap();

    // The next file: a copy of the newest level-0 file with one byte flipped.
    let l0 = setup.dir.path().join("replica/ltx/0");
    let newest = std::fs::read_dir(&l0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ltx"))
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    let name = format!("{:016x}-{:016x}.ltx", at + 1, at + 1);
    std::fs::write(l0.join(&name), &bytes).unwrap();

    let h = wait_health(&follower, "the corrupted file rejected", |s, h| {
        s == 503
            && h["follower"]["why"]
                .as_str()
                .is_some_and(|w| w.contains(&name))
    })
    .await;
    assert_eq!(h["follower"]["ok"], false, "{h}");
    assert_eq!(ready_status(&follower).await, 503);
    // The previous state is still served, at the same position.
    assert_eq!(values(&follower).await, want);
    assert_eq!(
        follower.health().await.1["follower"]["applied_txid"]
            .as_str()
            .map(|t| u64::from_str_radix(t, 16).unwrap()),
        Some(at)
    );
    assert!(
        follower
            .metrics()
            .await
            .contains("sqlite_rest_follower_errors_total{operation=\"rejected\"}"),
        "no rejection counted"
    );
}

/// Readers of a follower under load never see a torn state: the primary's writer moves
/// money between accounts spread over many pages (the total never changes) while readers
/// of the follower sum every balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_readers_never_see_a_torn_state() {
    let test = "follower_readers_never_see_a_torn_state";
    let Some(setup) = s3_setup(test) else { return };
    const ACCOUNTS: i64 = 1000;
    const TOTAL: i64 = ACCOUNTS * 100;
    {
        let c = rusqlite::Connection::open(&setup.db).unwrap();
        c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .unwrap();
        c.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, pad TEXT);",
        )
        .unwrap();
        c.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < ?1)
             INSERT INTO accounts SELECT i, 100, printf('%.400c', 'x') FROM n",
            [ACCOUNTS],
        )
        .unwrap();
    }
    let primary = setup.serve_or_log().await;
    insert(&primary, "start").await;
    let f = Follower::new(&setup.bin, &setup.url);
    let follower = f.start(&["--security-allow-table", "accounts"]).await;

    // The writer: transfers between accounts far apart (different pages), one transaction each.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (setup.db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut c = rusqlite::Connection::open(db).unwrap();
            c.busy_timeout(Duration::from_secs(10)).unwrap();
            let mut n: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let from = 1 + (n * 7919) % ACCOUNTS;
                let to = 1 + (n * 104_729 + ACCOUNTS / 2) % ACCOUNTS;
                let tx = c.transaction().unwrap();
                tx.execute(
                    "UPDATE accounts SET balance = balance - 7 WHERE id = ?1",
                    [from],
                )
                .unwrap();
                tx.execute(
                    "UPDATE accounts SET balance = balance + 7 WHERE id = ?1",
                    [to],
                )
                .unwrap();
                tx.commit().unwrap();
                n += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            n
        })
    };

    // Readers: every read's balances sum to the total, at whatever position it was served.
    let mut positions = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut reads = 0;
    while positions.len() < 10 || reads < 100 {
        let (status, txid, body) = get(&follower, "/accounts?select=balance", &[]).await;
        assert_eq!(status, 200, "{body}");
        let rows = body.as_array().unwrap();
        assert_eq!(rows.len() as i64, ACCOUNTS);
        let sum: i64 = rows.iter().map(|r| r["balance"].as_i64().unwrap()).sum();
        assert_eq!(sum, TOTAL, "a torn state at {txid:?}");
        positions.insert(txid.unwrap());
        reads += 1;
        assert!(
            Instant::now() < deadline,
            "the follower applied too few files while read: {positions:?}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let transfers = writer.join().unwrap();
    assert!(transfers > 0);
}

/// A follower of a replica written by the real `litestream replicate` 0.5.17 serves its
/// database and follows its writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follows_a_replica_written_by_litestream() {
    let test = "follows_a_replica_written_by_litestream";
    let Some(bin) = release_bin(test) else { return };
    let Some(ls) = testkit::litestream::Litestream::require(test) else {
        return;
    };
    let Some(url) = testkit::s3_replica_url(test, "follow-ls", "app") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    create_db(&db, 0);
    let c = rusqlite::Connection::open(&db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.execute("INSERT INTO t(v) VALUES ('from litestream')", [])
        .unwrap();
    let config = dir.path().join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      url: {url}\n      sync-interval: 100ms\n",
            db.display()
        ),
    )
    .unwrap();
    let replicating = ls.spawn_replicate(&config);
    // Wait for the replica to hold the row: a restore by Litestream itself shows it.
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let out = dir.path().join("probe.db");
        let _ = std::fs::remove_file(&out);
        if ls.restore(&url, &out, &[]).status.success() && common::replica::ids(&out).len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "litestream did not replicate:\n{}",
            replicating.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let f = Follower::new(&bin, &url);
    let follower = f.start(&[]).await;
    wait_values(&follower, &["from litestream".to_string()]).await;
    c.execute("INSERT INTO t(v) VALUES ('later')", []).unwrap();
    wait_values(
        &follower,
        &["from litestream".to_string(), "later".to_string()],
    )
    .await;
    drop(replicating);
}

/// `--replication-follow` refuses what cannot combine with it, before anything starts.
#[test]
fn follow_refuses_flags_that_do_not_combine() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("litestream.yml");
    std::fs::write(&config, "dbs: []\n").unwrap();
    let db = dir.path().join("app.db");
    let run = |extra: &[&str]| {
        let out = Command::new(common::replica::BIN)
            .args(["serve", "--insecure-disable-auth"])
            .arg("--db-dsn")
            .arg(&db)
            .arg("--replication-follow")
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let config = config.to_str().unwrap();
    assert!(run(&[]).contains("--replication-follow needs --replication-config"));
    assert!(
        run(&["--replication-config", config, "--replication-enabled"])
            .contains("--replication-follow and --replication-enabled do not combine")
    );
    assert!(
        run(&[
            "--replication-config",
            config,
            "--write-durability",
            "replicated"
        ])
        .contains("a follower (--replication-follow) takes no writes")
    );
    assert!(!db.exists(), "nothing was created");
}

/// A follower whose next level-0 files were compacted away (and removed, as retention does)
/// resumes through the level-1 file that covers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_bridges_compacted_level_0_files_through_level_1() {
    let test = "a_follower_bridges_compacted_level_0_files_through_level_1";
    let Some(bin) = release_bin(test) else { return };
    let mut setup = Setup::file();
    setup.bin = bin;
    create_db(&setup.db, 0);
    let mut primary = setup.serve_or_log().await;
    let mut want = vec!["a".to_string()];
    insert(&primary, "a").await;
    let f = Follower::new(&setup.bin, &setup.url);
    let mut follower = f.start(&[]).await;
    wait_values(&follower, &want).await;
    follower.child.kill().unwrap();
    follower.child.wait().unwrap();
    drop(follower);

    let mut last = String::new();
    for v in ["b", "c"] {
        last = insert(&primary, v).await;
        want.push(v.to_string());
    }
    let last = u64::from_str_radix(&last, 16).unwrap();
    // Wait for level 1 (compacted every 2 s in this setup) to cover the last write.
    let level = |n: u8| setup.dir.path().join(format!("replica/ltx/{n}"));
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let covered = std::fs::read_dir(level(1)).is_ok_and(|d| {
            d.filter_map(|e| e.ok()).any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.get(17..33)
                    .and_then(|max| u64::from_str_radix(max, 16).ok())
                    .is_some_and(|max| max >= last)
            })
        });
        if covered {
            break;
        }
        assert!(Instant::now() < deadline, "level 1 never covered {last:x}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    primary.stop().await;
    for e in std::fs::read_dir(level(0)).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }

    let follower = f.start(&[]).await;
    assert_eq!(values(&follower).await, want);
    f.assert_logged("follower resumes its database");
}

/// A follower's position from its `/health` (the applied TXID).
async fn applied_txid(r: &Running) -> u64 {
    let (_, h) = r.health().await;
    u64::from_str_radix(h["follower"]["applied_txid"].as_str().unwrap(), 16).unwrap()
}

/// Waits until `/health`'s follower `why` contains `words` and `/ready` is 503; the report.
async fn wait_unready_because(r: &Running, words: &str) -> Value {
    let h = wait_health(r, words, |s, h| {
        s == 503
            && h["follower"]["why"]
                .as_str()
                .is_some_and(|w| w.contains(words))
    })
    .await;
    assert_eq!(h["follower"]["ok"], false, "{h}");
    assert_eq!(h["follower"]["ready"], false, "{h}");
    assert_eq!(ready_status(r).await, 503);
    h
}

/// Waits until the follower is unready because of `words`, then checks it still serves
/// `want` at its position `at` (every read carrying that TXID).
async fn unready_and_serving(r: &Running, words: &str, at: u64, want: &[String]) {
    let h = wait_unready_because(r, words).await;
    assert_eq!(
        h["follower"]["applied_txid"].as_str(),
        Some(format!("{at:016x}").as_str()),
        "{h}"
    );
    let (status, txid, body) = get(r, "/t?select=v&order=id", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(txid, Some(format!("{at:016x}")));
    assert_eq!(values(r).await, want);
}

/// A follower caught up with a file replica whose primary stopped: the follower and its
/// position.
async fn caught_up_follower(setup: &Setup, rows: &[&str]) -> (Follower, Running, Vec<String>, u64) {
    let mut primary = setup.serve_or_log().await;
    let mut want = Vec::new();
    for v in rows {
        insert(&primary, v).await;
        want.push(v.to_string());
    }
    primary.stop().await;
    let f = Follower::new(&setup.bin, &setup.url);
    let follower = f.start(&[]).await;
    wait_values(&follower, &want).await;
    wait_health(&follower, "follower caught up", |s, h| {
        s == 200 && h["follower"]["lag_txids"] == 0
    })
    .await;
    let at = applied_txid(&follower).await;
    (f, follower, want, at)
}

/// The replica deleted under a follower (its directory moved away): the follower turns
/// unready, `/health` says the replica is gone, it keeps serving its last state (readers
/// behind a load balancer are moved away by `/ready`, direct readers keep a consistent if
/// stale snapshot with its `Sqlite-Rest-Txid`); when the same replica comes back it is
/// ready again, and follows a restarted primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_replica_turns_the_follower_unready_until_it_comes_back() {
    let test = "a_deleted_replica_turns_the_follower_unready_until_it_comes_back";
    let Some(bin) = release_bin(test) else { return };
    let mut setup = Setup::file();
    setup.bin = bin;
    create_db(&setup.db, 0);
    let (_f, follower, mut want, at) = caught_up_follower(&setup, &["kept"]).await;

    let replica = setup.dir.path().join("replica");
    let away = setup.dir.path().join("replica.away");
    std::fs::rename(&replica, &away).unwrap();
    unready_and_serving(&follower, "the replica is gone", at, &want).await;
    assert!(
        follower
            .metrics()
            .await
            .contains("sqlite_rest_follower_errors_total{operation=\"gone\"}"),
        "no error counted"
    );

    // The same replica comes back: ready again, and it follows the primary restarted on it.
    std::fs::rename(&away, &replica).unwrap();
    let h = wait_health(&follower, "ready again", |s, h| {
        s == 200 && h["follower"]["ok"] == true
    })
    .await;
    assert!(h["follower"].get("why").is_none(), "{h}");
    assert_eq!(ready_status(&follower).await, 200);
    let primary = setup.serve_or_log().await;
    insert(&primary, "after").await;
    want.push("after".to_string());
    wait_values(&follower, &want).await;
    assert_eq!(ready_status(&follower).await, 200);
}

/// A primary restored from an older point (here: its database and replica lost, a new one
/// started at the same replica path): the follower sees the replica went backwards, then
/// that the files at its TXID are another lineage's, and applies none of them: unready,
/// `/health` says why, its state and position kept, the error counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_went_backwards_is_refused() {
    let test = "a_replica_that_went_backwards_is_refused";
    let Some(bin) = release_bin(test) else { return };
    let mut setup = Setup::file();
    setup.bin = bin;
    create_db(&setup.db, 0);
    let (f, follower, want, at) = caught_up_follower(&setup, &["a", "b", "c"]).await;

    std::fs::remove_dir_all(setup.dir.path().join("replica")).unwrap();
    setup.lose_database();
    create_db(&setup.db, 0);
    let primary = setup.serve_or_log().await;
    insert(&primary, "other first").await;
    wait_unready_because(&follower, "the replica went backwards").await;
    assert_eq!(values(&follower).await, want);

    // The new lineage passes the follower's TXID with other rows.
    let mut n = 0;
    loop {
        let txid = insert(&primary, &format!("other {n}")).await;
        n += 1;
        if u64::from_str_radix(&txid, 16).unwrap() > at + 1 {
            break;
        }
        assert!(n < 100, "the new primary never passed TXID {at:x}");
    }
    let h = wait_unready_because(&follower, "another lineage").await;
    assert_eq!(
        h["follower"]["applied_txid"].as_str(),
        Some(format!("{at:016x}").as_str()),
        "{h}"
    );
    assert_eq!(values(&follower).await, want);
    // It stays refused while the new lineage writes on.
    insert(&primary, "more").await;
    wait_unready_because(&follower, "another lineage").await;
    assert_eq!(values(&follower).await, want);
    assert_eq!(applied_txid(&follower).await, at);
    assert!(
        follower
            .metrics()
            .await
            .contains("sqlite_rest_follower_errors_total{operation=\"diverged\"}"),
        "no error counted"
    );

    // Restarted, it checks what it resumed before applying anything: it refuses to start,
    // and its database keeps the old lineage's rows.
    let mut follower = follower;
    follower.child.kill().unwrap();
    follower.child.wait().unwrap();
    drop(follower);
    let mut child = KillOnDrop(
        f.cmd(testkit::free_port(), testkit::free_port(), &[])
            .spawn()
            .unwrap(),
    );
    let status = common::wait_exit(&mut child.0, CATCH_UP).await;
    assert!(!status.success(), "{}", f.log());
    assert!(f.log().contains("another lineage"), "{}", f.log());
    let c = rusqlite::Connection::open(&f.db).unwrap();
    let rows: Vec<String> = c
        .prepare("SELECT v FROM t ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows, want);
}

/// A child process killed when the test ends, also when it fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The LISTs an instance made, from its metrics.
async fn lists(r: &Running) -> u64 {
    r.metrics()
        .await
        .lines()
        .filter(|l| {
            l.starts_with("litestream_replica_operation_total{") && l.contains("operation=\"LIST\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// An idle follower backs off: over an idle stretch it LISTs far less often than once per
/// configured interval (200 ms here), and a new file is still picked up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_follower_backs_off_its_polls() {
    let test = "an_idle_follower_backs_off_its_polls";
    let Some(bin) = release_bin(test) else { return };
    let mut setup = Setup::file();
    setup.bin = bin;
    create_db(&setup.db, 0);
    let (_f, follower, mut want, _) = caught_up_follower(&setup, &["a"]).await;

    let (before, start) = (lists(&follower).await, Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (after, elapsed) = (lists(&follower).await, start.elapsed());
    // Without back-off: one LIST per 200 ms interval at least (more with the level looks).
    let unbacked = (elapsed.as_millis() / 200) as u64;
    assert!(
        (after - before) * 3 < unbacked,
        "{} LISTs in {elapsed:?} of idling (one per interval would be {unbacked})",
        after - before
    );
    assert_eq!(ready_status(&follower).await, 200);

    let primary = setup.serve_or_log().await;
    insert(&primary, "b").await;
    want.push("b".to_string());
    wait_values(&follower, &want).await;
}

/// Whether a file of levels 0 to 8 of the file replica `replica` continues TXID `n` (starts
/// at or before `n + 1` and ends after `n`), and the highest TXID of a snapshot (level 9).
fn replica_continues(replica: &Path, n: u64) -> (bool, u64) {
    let names = |level: u8| -> Vec<(u64, u64)> {
        std::fs::read_dir(replica.join(format!("ltx/{level}")))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let min = u64::from_str_radix(name.get(..16)?, 16).ok()?;
                        let max = u64::from_str_radix(name.get(17..33)?, 16).ok()?;
                        Some((min, max))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let continues = (0..=8).any(|l| {
        names(l)
            .into_iter()
            .any(|(min, max)| min <= n + 1 && max > n)
    });
    let snapshot = names(9).into_iter().map(|(_, max)| max).max().unwrap_or(0);
    (continues, snapshot)
}

/// Inserts `row <i>` rows through the primary until compaction and retention removed every
/// file that continues TXID `n` and a snapshot is past it; the rows inserted are added to
/// `want`.
async fn write_until_gap(setup: &Setup, primary: &Running, n: u64, want: &mut Vec<String>) {
    let replica = setup.dir.path().join("replica");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = format!("row {}", want.len());
        insert(primary, &v).await;
        want.push(v);
        let (continues, snapshot) = replica_continues(&replica, n);
        if !continues && snapshot > n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "retention never removed the files after {n:x}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A follower whose next files compaction and retention removed (no level bridges the gap)
/// goes to the replica's latest state: while running (its process stopped with SIGSTOP
/// while the primary writes on, then continued) readers see only whole states, never an
/// error; killed with SIGKILL and restarted after another such gap, it starts at the
/// latest state. `/ready` is 200 after both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_crosses_a_gap_no_level_bridges() {
    let test = "a_follower_crosses_a_gap_no_level_bridges";
    let Some(bin) = release_bin(test) else { return };
    let mut setup = Setup::file();
    setup.bin = bin;
    // Short compaction, snapshot and retention intervals: files go away within seconds.
    std::fs::write(
        &setup.config,
        format!(
            "levels:\n  - interval: 1s\nsnapshot:\n  interval: 2s\n  retention: 1s\n\
             l0-retention: 1s\nl0-retention-check-interval: 1s\nshutdown-sync-timeout: 10s\n\
             dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      url: {}\n",
            setup.db.display(),
            setup.url
        ),
    )
    .unwrap();
    create_db(&setup.db, 0);
    let mut primary = setup.serve_or_log().await;
    let mut want = Vec::new();
    for _ in 0..3 {
        let v = format!("row {}", want.len());
        insert(&primary, &v).await;
        want.push(v);
    }
    let f = Follower::new(&setup.bin, &setup.url);
    let mut follower = f.start(&[]).await;
    wait_values(&follower, &want).await;
    let at = applied_txid(&follower).await;

    // Readers: every read is a whole state (rows `row 0`.. in order), positions never go
    // back, no error.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (client, base, token, stop) = (
            follower.client.clone(),
            follower.base.clone(),
            follower.token(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut last = String::new();
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let resp = client
                    .get(format!("{base}/t?select=v&order=id"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                let txid = resp.headers()["sqlite-rest-txid"]
                    .to_str()
                    .unwrap()
                    .to_string();
                assert!(txid >= last, "position went back: {last} -> {txid}");
                let body: Value = resp.json().await.unwrap();
                for (i, row) in body.as_array().unwrap().iter().enumerate() {
                    assert_eq!(
                        row["v"],
                        format!("row {i}"),
                        "a mixed state at {txid}: {body}"
                    );
                }
                last = txid;
                reads += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            reads
        })
    };

    // The follower stops polling (SIGSTOP) while the primary writes on and retention
    // removes what it needs; then it continues.
    let pid = follower.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    write_until_gap(&setup, &primary, at, &mut want).await;
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_values(&follower, &want).await;
    wait_health(&follower, "ready after crossing the gap", |s, h| {
        s == 200 && h["follower"]["ok"] == true
    })
    .await;
    assert_eq!(ready_status(&follower).await, 200);
    stop.store(true, Ordering::Relaxed);
    assert!(reader.await.unwrap() > 0);
    assert!(
        follower
            .metrics()
            .await
            .contains("sqlite_rest_follower_restores_total 1"),
        "{}",
        f.log()
    );

    // Killed, a gap, restarted: it starts at the latest state.
    let at = applied_txid(&follower).await;
    follower.child.kill().unwrap();
    follower.child.wait().unwrap();
    drop(follower);
    write_until_gap(&setup, &primary, at, &mut want).await;
    primary.stop().await;
    let follower = f.start(&[]).await;
    assert_eq!(values(&follower).await, want);
    assert_eq!(ready_status(&follower).await, 200);
    f.assert_logged("follower resumes its database");
    f.assert_logged("the follower goes to the replica's latest state");
}

/// A follower restarted while its replica is gone (the directory moved away) starts and
/// serves its resumed state unready, `/health` saying why; when the replica comes back it is
/// ready again. A fresh follower of a replica that holds nothing refuses to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_started_without_its_replica_serves_unready() {
    let test = "a_follower_started_without_its_replica_serves_unready";
    let Some(bin) = release_bin(test) else { return };
    let mut setup = Setup::file();
    setup.bin = bin;
    create_db(&setup.db, 0);
    let (f, mut follower, want, at) = caught_up_follower(&setup, &["kept"]).await;
    follower.child.kill().unwrap();
    follower.child.wait().unwrap();
    drop(follower);

    let replica = setup.dir.path().join("replica");
    let away = setup.dir.path().join("replica.away");
    std::fs::rename(&replica, &away).unwrap();
    let follower = f.start_unready().await;
    unready_and_serving(&follower, "the replica is gone", at, &want).await;

    std::fs::rename(&away, &replica).unwrap();
    wait_health(&follower, "ready again", |s, h| {
        s == 200 && h["follower"]["ok"] == true
    })
    .await;
    drop(follower);

    // A fresh follower (no database) of an empty replica refuses to start, saying why.
    let empty = Setup::file();
    let fresh = Follower::new(&setup.bin, &empty.url);
    let mut child = KillOnDrop(
        fresh
            .cmd(testkit::free_port(), testkit::free_port(), &[])
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + CATCH_UP;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "a fresh follower of an empty replica started: {}",
            fresh.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success());
    assert!(fresh.log().contains("to follow it"), "{}", fresh.log());
}

/// A TXID header value as a number.
fn txid_value(hex: &str) -> u64 {
    u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("TXID {hex:?}: {e}"))
}

/// Starts the server on `f`'s database and config as a primary (`--replication-enabled`);
/// panics with its log if it does not start.
async fn promote(f: &Follower) -> Running {
    use futures::FutureExt;
    let run = Running::spawn(|p, a| f.cmd_as("--replication-enabled", p, a, &[]));
    match std::panic::AssertUnwindSafe(run).catch_unwind().await {
        Ok(r) => r,
        Err(_) => panic!("the promoted server did not start; its log:\n{}", f.log()),
    }
}

/// The level-0 files of the replica at `url` (`replica ls --json`): (min, max, size).
fn level0_files(bin: &Path, url: &str) -> Vec<(u64, u64, u64)> {
    let out = Command::new(bin)
        .args(["replica", "ls", "--json", "--log-level", "warn", url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["level"] == 0)
        .map(|r| {
            (
                txid_value(r["min_txid"].as_str().unwrap()),
                txid_value(r["max_txid"].as_str().unwrap()),
                r["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The documented promotion: the primary P writes and is stopped; follower F, caught up, is
/// stopped and its database started as the primary P2 with the same config. P2 continues
/// the replica's lineage (its first write gets the next TXID, uploaded as a small level-0
/// file, not every page again), follower G keeps following across the switch without a
/// restart, and the real `litestream restore` of the replica gives P2's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_promoted_follower_continues_the_replicas_lineage() {
    let test = "a_promoted_follower_continues_the_replicas_lineage";
    let Some(setup) = s3_setup(test) else { return };
    let Some(ls) = testkit::litestream::Litestream::require(test) else {
        return;
    };
    // Enough pages that a full level-0 file would stand out.
    create_db(&setup.db, 2000);
    let mut primary = setup.serve_or_log().await;
    let f = Follower::new(&setup.bin, &setup.url);
    let g = Follower::new(&setup.bin, &setup.url);
    let mut ff = f.start(&[]).await;
    let fg = g.start(&[]).await;
    let mut want = values(&primary).await;
    let mut last = String::new();
    for i in 0..3 {
        let v = format!("before {i}");
        last = insert(&primary, &v).await;
        want.push(v);
    }
    wait_values(&ff, &want).await;
    wait_values(&fg, &want).await;

    // Stop the primary, then the follower once it has applied the primary's last TXID.
    primary.stop().await;
    wait_health(&ff, "F applied the primary's last TXID", |_, h| {
        h["follower"]["applied_txid"].as_str() == Some(last.as_str())
    })
    .await;
    ff.stop().await;
    let p2 = promote(&f).await;
    assert!(
        f.log().contains("adopted its position"),
        "the promoted database did not adopt the replica's position:\n{}",
        f.log()
    );

    // The lineage continues: P2's level-0 files start right after the replica's last TXID
    // (its first sync may carry what the follower's WAL held as one more TXID), each one
    // small: no full copy of the database was uploaded.
    let next = insert(&p2, "after promotion").await;
    want.push("after promotion".to_string());
    assert!(
        txid_value(&next) > txid_value(&last),
        "P2 wrote {next} after the replica's {last}"
    );
    let db_bytes = std::fs::metadata(&f.db).unwrap().len();
    let files = level0_files(&setup.bin, &setup.url);
    let ours: Vec<_> = files
        .iter()
        .filter(|(_, max, _)| *max > txid_value(&last))
        .collect();
    assert_eq!(
        ours.first().map(|f| f.0),
        Some(txid_value(&last) + 1),
        "P2's files do not continue the replica's TXIDs: {files:?}"
    );
    assert!(
        ours.iter().any(|f| f.1 >= txid_value(&next)),
        "{next} is not on the replica: {files:?}"
    );
    for file in &ours {
        assert!(
            file.2 * 4 < db_bytes,
            "P2's level-0 file {file:?} is not incremental (database {db_bytes} bytes): {files:?}"
        );
    }

    // G follows P2 without a restart or a restore.
    wait_values(&fg, &want).await;
    let h = wait_health(&fg, "G follows P2", |s, h| {
        s == 200 && h["follower"]["applied_txid"].as_str() == Some(next.as_str())
    })
    .await;
    assert_eq!(h["follower"]["ok"], true, "{h}");
    assert_eq!(ready_status(&fg).await, 200);

    // The replica restores, with the real Litestream, to P2's rows.
    let mut p2 = p2;
    p2.stop().await;
    let restored = setup.litestream_restore(&ls, "restored.db");
    let c = rusqlite::Connection::open(&restored).unwrap();
    let got: Vec<String> = c
        .prepare("SELECT v FROM t ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, want);
}

/// Inserts one row through `r` with a synchronous (replicated) write: whether it succeeded.
async fn try_insert(r: &Running, v: &str) -> bool {
    let resp = r
        .client
        .post(format!("{}/t", r.base))
        .bearer_auth(r.token())
        .header("Prefer", "durability=replicated")
        .json(&serde_json::json!({ "v": v }))
        .send()
        .await;
    matches!(resp, Ok(r) if r.status() == 201)
}

/// Two primaries on one replica path (the old one still running after a second one started
/// from the replica, or a second server by mistake), both writing: one of them stops with
/// the divergence error naming the way out, within a bounded time, and a follower never
/// serves a mix of both (its rows come from one of them only, its database intact).
async fn two_primaries_one_replica(setup: Setup) {
    create_db(&setup.db, 10);
    let p = setup.serve_or_log().await;
    let common = values(&p).await;
    let follower = Follower::new(&setup.bin, &setup.url);
    let second = Follower::new(&setup.bin, &setup.url);
    let fr = follower.start(&[]).await;
    wait_values(&fr, &common).await;
    // A second primary from the replica: its database is restored, its position adopted.
    let mut q = promote(&second).await;
    let mut p = p;

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut i = 0;
    let stopped = loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            break ("P", status, setup.log());
        }
        if let Some(status) = q.child.try_wait().unwrap() {
            break ("Q", status, second.log());
        }
        assert!(
            Instant::now() < deadline,
            "two primaries wrote to {} for 120 s and neither stopped:\nP:\n{}\nQ:\n{}",
            setup.url,
            setup.log(),
            second.log()
        );
        try_insert(&p, &format!("p {i}")).await;
        try_insert(&q, &format!("q {i}")).await;
        i += 1;
    };
    let (who, status, log) = stopped;
    assert!(!status.success(), "{who} exited {status}:\n{log}");
    assert!(
        log.contains("another primary is writing to the replica")
            && log.contains("sqlite-rest restore --force"),
        "{who} stopped without the divergence error:\n{log}"
    );

    // The follower serves one history only, from an intact database.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows = values(&fr).await;
    assert!(rows.starts_with(&common), "{rows:?}");
    let tail = &rows[common.len()..];
    let from_p = tail.iter().filter(|v| v.starts_with("p ")).count();
    let from_q = tail.iter().filter(|v| v.starts_with("q ")).count();
    assert!(
        from_p == 0 || from_q == 0,
        "the follower applied files of both primaries: {tail:?}\n{}",
        follower.log()
    );
    let c = rusqlite::Connection::open_with_flags(
        &follower.db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "{}", follower.log());
    drop((p, q));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_primaries_on_one_s3_replica_are_refused() {
    let Some(setup) = s3_setup("two_primaries_on_one_s3_replica_are_refused") else {
        return;
    };
    two_primaries_one_replica(setup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_primaries_on_one_file_replica_are_refused() {
    let Some(bin) = release_bin("two_primaries_on_one_file_replica_are_refused") else {
        return;
    };
    let mut setup = Setup::file();
    setup.bin = bin;
    two_primaries_one_replica(setup).await;
}

/// Copies the directory tree `from` to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Two level-0 files that overlap (`<a>-<a>` and `<a>-<b>`, as two primaries' uploads of the
/// same TXIDs would, or a restarted primary's and its predecessor's late one) listed together:
/// a restarted follower applies neither and serves its database unready, naming them, until
/// one history is left (here as a restarted primary settles it: `<a>-<b>` replaced by
/// `<b>-<b>`); then it applies what follows. (Listed together, both used to be applied in
/// turn; then the follower stopped for good.) Then overlapping files again, which level 1
/// reaches past (the primary's compaction passed them before the late one landed, so nothing
/// settles them): the follower crosses through level 1 without waiting for them to go.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_applies_no_overlapping_level0_files() {
    let test = "a_follower_applies_no_overlapping_level0_files";
    let Some(bin) = release_bin(test) else { return };
    let mut setup = Setup::file();
    setup.bin = bin;
    create_db(&setup.db, 0);
    let primary = setup.serve_or_log().await;
    insert(&primary, "first").await;
    // The follower reads a copy of the replica that the test controls.
    let source = setup.dir.path().join("replica");
    let mirror = setup.dir.path().join("mirror");
    copy_tree(&source, &mirror);
    let f = Follower::new(&setup.bin, &format!("file://{}", mirror.display()));
    let mut fr = f.start(&[]).await;
    wait_values(&fr, &["first".to_string()]).await;
    fr.stop().await;

    let a = txid_value(&insert(&primary, "second").await);
    let b = txid_value(&insert(&primary, "third").await);
    let level0 = |max: u64| {
        let name = std::fs::read_dir(source.join("ltx/0"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .find(|n| n.parse::<ltx::FileName>().is_ok_and(|f| f.max.get() == max))
            .unwrap_or_else(|| panic!("no level-0 file ends at {max}"));
        (
            name.parse::<ltx::FileName>().unwrap(),
            std::fs::read(source.join("ltx/0").join(&name)).unwrap(),
        )
    };
    // The files of two consecutive writes, and the two as one file (`<a>-<b>`).
    let two_files = |a: u64, b: u64| {
        let (name_a, bytes_a) = level0(a);
        let (name_b, bytes_b) = level0(b);
        assert_eq!(name_b.min.get(), a + 1, "{name_a} {name_b}");
        let merged = ltx::Compactor::new(vec![
            ltx::Decoder::new(&bytes_a[..]).unwrap(),
            ltx::Decoder::new(&bytes_b[..]).unwrap(),
        ])
        .unwrap()
        .compact(Vec::new())
        .unwrap()
        .writer;
        let merged_name = ltx::FileName::new(name_a.min, name_b.max);
        std::fs::write(mirror.join("ltx/0").join(name_a.to_string()), &bytes_a).unwrap();
        std::fs::write(mirror.join("ltx/0").join(merged_name.to_string()), &merged).unwrap();
        (name_a, (name_b, bytes_b), (merged_name, merged))
    };
    let (name_a, (name_b, bytes_b), (merged_name, _)) = two_files(a, b);

    let run = f.start_unready().await;
    let h = wait_health(&run, "unready, naming the overlap", |status, h| {
        status == 503
            && h.to_string()
                .contains(&format!("overlaps the level-0 file {name_a}"))
    })
    .await;
    assert!(h.to_string().contains("overlapping level-0 files"), "{h}");
    // Nothing of either file was applied.
    assert_eq!(values(&run).await, ["first"], "{}", f.log());
    // Settled: the predecessor's file stays, ours is replaced by the TXIDs after it.
    std::fs::write(mirror.join("ltx/0").join(name_b.to_string()), &bytes_b).unwrap();
    std::fs::remove_file(mirror.join("ltx/0").join(merged_name.to_string())).unwrap();
    wait_values(
        &run,
        &[
            "first".to_string(),
            "second".to_string(),
            "third".to_string(),
        ],
    )
    .await;
    wait_health(&run, "ready once settled", |status, _| status == 200).await;

    let c = txid_value(&insert(&primary, "fourth").await);
    let d = txid_value(&insert(&primary, "fifth").await);
    let (name_c, _, (merged_name, merged)) = two_files(c, d);
    wait_health(&run, "unready again, naming the overlap", |status, h| {
        status == 503
            && h.to_string()
                .contains(&format!("overlaps the level-0 file {name_c}"))
    })
    .await;
    std::fs::create_dir_all(mirror.join("ltx/1")).unwrap();
    std::fs::write(mirror.join("ltx/1").join(merged_name.to_string()), &merged).unwrap();
    wait_values(
        &run,
        &["first", "second", "third", "fourth", "fifth"].map(String::from),
    )
    .await;
    wait_health(&run, "ready through level 1", |status, _| status == 200).await;
    assert!(
        f.log()
            .contains("overlapping level-0 files of a restart race passed"),
        "{}",
        f.log()
    );
}

/// The processes holding a read lock on one of the WAL read slots of `db`'s `-shm` file
/// (SQLite's unix locking: the slots are bytes 123..=127), as the kernel lists them in
/// `/proc/locks`.
fn read_slot_holders(db: &Path) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(format!("{}-shm", db.display()))
        .unwrap()
        .ino();
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    // "1: POSIX  ADVISORY  READ 1234 fd:01:5678 123 123"
    locks
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (kind, pid, file, start) = (f.get(3)?, f.get(4)?, f.get(5)?, f.get(6)?);
            let start: u64 = start.parse().ok()?;
            let file_ino: u64 = file.rsplit(':').next()?.parse().ok()?;
            (*kind == "READ" && file_ino == ino && (123..=127).contains(&start))
                .then(|| pid.parse().ok())
                .flatten()
        })
        .collect()
}

/// An idle follower holds a WAL read slot between applies (released for each apply and
/// held again after it), so its reads never take and drop that lock in the kernel; the
/// writes it applies are still seen by the next read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_follower_holds_a_read_slot_between_applies() {
    let Some(bin) = release_bin("an_idle_follower_holds_a_read_slot_between_applies") else {
        return;
    };
    let mut setup = Setup::file();
    setup.bin = bin;
    create_db(&setup.db, 0);
    let (f, follower, mut want, _) = caught_up_follower(&setup, &["one"]).await;
    let pid = follower.child.id();
    assert!(
        read_slot_holders(&f.db).contains(&pid),
        "no read slot held by the follower: {}",
        f.log()
    );

    let primary = setup.serve_or_log().await;
    for v in ["two", "three"] {
        insert(&primary, v).await;
        want.push(v.to_string());
        wait_values(&follower, &want).await;
        assert!(
            read_slot_holders(&f.db).contains(&pid),
            "no read slot held by the follower after an apply: {}",
            f.log()
        );
    }
}

/// Rows of random (incompressible) 4000-byte blobs in the big state of the bounded-memory
/// test, one a page: a database of 256 MiB.
const BIG_ROWS: i64 = 64 * 1024;

/// The most resident memory (`VmHWM`, the kernel's peak of the process) the follower of
/// that test may reach: half of one copy of the database. A follower at rest is about
/// 20 MiB; an apply that held a file it applies would need the whole file at least.
const FOLLOWER_PEAK_BOUND: u64 = 128 << 20;

/// The peak resident memory of the process `pid` so far (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kib << 10
}

/// Fails unless the follower's peak resident memory stayed under [`FOLLOWER_PEAK_BOUND`].
fn assert_bounded(f: &Follower, r: &Running, what: &str) {
    let peak = peak_rss(r.child.id());
    eprintln!(
        "the follower's peak resident memory after {what}: {} MiB",
        peak >> 20
    );
    assert!(
        peak < FOLLOWER_PEAK_BOUND,
        "the follower's peak resident memory after {what} is {} MiB, over the bound of {} MiB \
         (the database is {} MiB); its log:\n{}",
        peak >> 20,
        FOLLOWER_PEAK_BOUND >> 20,
        std::fs::metadata(&f.db).map(|m| m.len() >> 20).unwrap_or(0),
        f.log()
    );
}

/// Writes every page of the database file `db` (a WAL database checkpointed into its file,
/// as a primary's is) as one LTX file for TXIDs `min..=max` into `<replica>/ltx/<level>/`, page by
/// page, through a temp file renamed into place (a follower never lists half a file). With
/// `only_first`, just page 1 (a small file that leaves the same page count).
fn ship(db: &Path, replica: &Path, level: u8, min: u64, max: u64, only_first: bool) {
    use std::io::Read;
    let mut file = std::fs::File::open(db).unwrap();
    let mut head = [0u8; 100];
    file.read_exact(&mut head).unwrap();
    let page_size = match u16::from_be_bytes([head[16], head[17]]) {
        1 => 65536,
        n => u32::from(n),
    };
    let commit = u32::try_from(file.metadata().unwrap().len() / u64::from(page_size)).unwrap();
    let tmp = replica.join(format!("incoming-{level}-{min}-{max}"));
    std::fs::create_dir_all(replica).unwrap();
    let header = ltx::Header::new(page_size, commit, ltx::TxId(min), ltx::TxId(max), 0);
    let out = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
    let mut enc = ltx::Encoder::new(out, header).unwrap();
    let mut reader = std::io::BufReader::new(std::fs::File::open(db).unwrap());
    let mut page = vec![0u8; page_size as usize];
    let last = if only_first { 1 } else { commit };
    for pgno in 1..=last {
        reader.read_exact(&mut page).unwrap();
        if pgno != ltx::lock_page(page_size) {
            enc.write_page(pgno, &page).unwrap();
        }
    }
    let mut out = enc.finish().unwrap().writer;
    std::io::Write::flush(&mut out).unwrap();
    let dir = replica.join(format!("ltx/{level}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{min:016x}-{max:016x}.ltx"))).unwrap();
}

/// Owned copies of `values`, as [`wait_values`] takes them.
fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

/// The rows of `big` (a hash of every rowid and blob, and their count) and the page count
/// of `db`.
fn big_state(db: &Path) -> (u64, usize, u32) {
    use std::hash::Hasher;
    let c = rusqlite::Connection::open(db).unwrap();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut stmt = c
        .prepare("SELECT rowid, b FROM big ORDER BY rowid")
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut count = 0;
    while let Some(row) = rows.next().unwrap() {
        hasher.write_i64(row.get(0).unwrap());
        hasher.write(row.get_ref(1).unwrap().as_blob().unwrap());
        count += 1;
    }
    let pages = c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    (hasher.finish(), count, pages)
}

/// A follower crosses gaps in memory bounded by a small constant, not by the database: it
/// bridges a gap through a level-1 file of a 256 MiB database (every page), then, killed
/// and restarted, goes to the replica's latest state across a gap no level bridges (a
/// snapshot of 170 MiB, the database shrinking); each process's peak resident memory (the
/// kernel's `VmHWM`, no sampling) stays under half of one copy of the database. Both are one transaction each
/// (`t` shows whole states), the follower's database equals the primary's (every row, page
/// count, integrity) and `sqlite_rest_follower_restores_total` counts the restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_crosses_gaps_in_bounded_memory() {
    let test = "a_follower_crosses_gaps_in_bounded_memory";
    let Some(bin) = release_bin(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    let primary = dir.path().join("primary.db");
    let p = rusqlite::Connection::open(&primary).unwrap();
    p.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         CREATE TABLE big(b BLOB); INSERT INTO t(v) VALUES ('a');
         PRAGMA wal_checkpoint(TRUNCATE);",
    )
    .unwrap();
    ship(&primary, &replica, 0, 1, 1, false);

    let f = Follower::new(&bin, &format!("file://{}", replica.display()));
    let mut follower = f.start(&[]).await;
    wait_values(&follower, &strings(&["a"])).await;

    // TXIDs 2..3: the big rows. Level 0 keeps only a small file at 3, so the follower
    // bridges 2..3 through level 1, which holds every page.
    p.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO big(b) SELECT randomblob(4000) FROM n",
        [BIG_ROWS],
    )
    .unwrap();
    p.execute_batch("INSERT INTO t(v) VALUES ('b'); PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    ship(&primary, &replica, 1, 2, 3, false);
    ship(&primary, &replica, 0, 3, 3, true);
    wait_values(&follower, &strings(&["a", "b"])).await;
    assert_eq!(big_state(&f.db), big_state(&primary));
    assert_bounded(&f, &follower, "the level-1 bridge");

    // Killed (a fresh process, so its peak is the restore's alone). TXIDs 4..5: a third of
    // the rows deleted, the database vacuumed (it shrinks to about 170 MiB). Retention
    // removed everything but a snapshot at 5 and a small level-0 file at 5: no level
    // continues 3, so the restarted follower goes to the latest state before it serves.
    follower.child.kill().unwrap();
    follower.child.wait().unwrap();
    p.execute_batch(
        "DELETE FROM big WHERE rowid % 3 = 0; INSERT INTO t(v) VALUES ('c'); VACUUM;
         PRAGMA wal_checkpoint(TRUNCATE)",
    )
    .unwrap();
    ship(&primary, &replica, 9, 1, 5, false);
    ship(&primary, &replica, 0, 5, 5, true);
    for (level, name) in [(0, (1, 1)), (1, (2, 3)), (0, (3, 3))] {
        std::fs::remove_file(
            replica.join(format!("ltx/{level}/{:016x}-{:016x}.ltx", name.0, name.1)),
        )
        .unwrap();
    }
    let mut follower = f.start_unready().await;
    wait_values(&follower, &strings(&["a", "b", "c"])).await;
    assert_eq!(big_state(&f.db), big_state(&primary));
    let check: String = rusqlite::Connection::open(&f.db)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    assert_bounded(&f, &follower, "the restore across the gap");
    let metrics = follower.metrics().await;
    assert!(
        metrics.contains("sqlite_rest_follower_restores_total 1"),
        "{metrics}\n{}",
        f.log()
    );
    f.assert_logged("the follower goes to the replica's latest state");
    assert!(follower.child.try_wait().unwrap().is_none(), "{}", f.log());
}
