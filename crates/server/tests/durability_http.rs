//! Durability and replication positions on the REST API, through the release binary over real
//! sockets, with file replicas and the local S3 server (moto) behind a fault-injecting proxy,
//! checked against the real Litestream: `Sqlite-Rest-Txid` on writes and reads (16 hex
//! digits, increasing, the max TXID of a local L0 file, inside a replica file's range),
//! `Preference-Applied`, the 400s (`SR002`), synchronous writes (`durability=replicated`)
//! that are answered only once on the replica, 503 `SR001` after the bound while the replica
//! is unreachable (committed locally, on the replica once it heals), when replication fails
//! for good, and at shutdown's deadline after SIGTERM (never a dropped connection);
//! `min-txid` reads (served at once for a handed-out TXID, 503 `SR003` for a future one);
//! `--write-durability replicated` without replication refused at start-up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use testkit::litestream::Litestream;
use testkit::proxy::{FaultProxy, NetFault};

/// A database with table `t`, a replica and the Litestream config tying them.
struct Setup {
    dir: tempfile::TempDir,
    db: PathBuf,
    /// The replica reached directly, not through the proxy (for Litestream).
    direct_url: String,
    config: PathBuf,
}

impl Setup {
    fn file() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("replica").display());
        Setup::new(dir, url.clone(), url, "")
    }

    /// An S3 replica reached through `proxy`; `extra` goes at the config's top level.
    fn s3_behind(s3: &testkit::S3, proxy: &FaultProxy, extra: &str) -> Setup {
        let bucket = s3.create_bucket("durability");
        let url = format!(
            "s3://{bucket}/app?endpoint={}&region={}",
            proxy.host_port(),
            s3.region
        );
        let direct = s3.replica_url(&bucket, "app");
        Setup::new(tempfile::tempdir().unwrap(), url, direct, extra)
    }

    fn new(dir: tempfile::TempDir, url: String, direct_url: String, extra: &str) -> Setup {
        let db = dir.path().join("app.db");
        let config = dir.path().join("litestream.yml");
        let c = rusqlite::Connection::open(&db).unwrap();
        c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .unwrap();
        c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
            .unwrap();
        drop(c);
        std::fs::write(
            &config,
            format!(
                "levels:\n  - interval: 1h\nsnapshot:\n  interval: 1h\nl0-retention: 1h\n{extra}\
                 dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      url: {url}\n",
                db.display()
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("secret"), common::SECRET).unwrap();
        Setup {
            dir,
            db,
            direct_url,
            config,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The local L0 directory of the replication metadata.
    fn local_l0(&self) -> PathBuf {
        self.dir.path().join(".app.db-litestream/ltx/0")
    }

    /// Starts the release binary with replication and `args`, `env`; waits until ready.
    async fn serve(&self, bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
        let (child, port, admin) = common::spawn_ready(|port, admin| {
            let mut cmd = common::serve_command(bin, &self.db, port, admin, "t");
            cmd.arg("--auth-token-file")
                .arg(self.dir.path().join("secret"))
                .arg("--replication-enabled")
                .arg("--replication-config")
                .arg(&self.config)
                .args(["--log-level", "info"])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::File::create(self.dir.path().join("server.log")).unwrap(),
                ));
            // Local-mode writes carry their position (a test can turn it off through `env`).
            cmd.env("SQLITEREST_WRITE_POSITIONS", "true");
            for (k, v) in env {
                cmd.env(k, v);
            }
            cmd
        })
        .await;
        Running::new(child, port, admin)
    }
}

struct Running {
    child: Child,
    base: String,
    admin: String,
    client: reqwest::Client,
    token: String,
}

/// One response, read whole.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// `Sqlite-Rest-Txid`, checked to be 16 lower-case hex digits.
    fn txid(&self) -> u64 {
        let t = self
            .header("sqlite-rest-txid")
            .unwrap_or_else(|| panic!("no Sqlite-Rest-Txid: {self:?}"));
        assert!(
            t.len() == 16 && t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "not 16 lower-case hex digits: {t:?}"
        );
        u64::from_str_radix(t, 16).unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }

    /// Asserts a PostgREST-shaped error with this status and code; its body.
    fn error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        let v = self.json();
        common::assert_error_shape(&v, code);
        v
    }
}

impl Running {
    fn new(child: Child, port: u16, admin: u16) -> Running {
        Running {
            child,
            base: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin}"),
            client: reqwest::Client::new(),
            token: common::hs_token(
                common::SECRET,
                jsonwebtoken::Algorithm::HS256,
                json!({"role": "test"}),
            ),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Resp {
        let mut r = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        Resp {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    async fn post(&self, v: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(Method::POST, "/t", headers, Some(json!({ "v": v })))
            .await
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(Method::GET, path, headers, None).await
    }

    async fn metrics(&self) -> String {
        common::admin_get(&self.client, &self.admin, "/metrics")
            .await
            .1
    }

    async fn health(&self) -> Value {
        common::admin_health(&self.client, &self.admin).await.1
    }

    fn sigterm(&self) {
        common::sigterm(&self.child);
    }

    async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        common::wait_exit(&mut self.child, within).await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(min, max)` TXIDs of an LTX file name (`<min hex16>-<max hex16>.ltx`).
fn range(name: &str) -> (u64, u64) {
    let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
    (hex(&name[..16]), hex(&name[17..33]))
}

/// The names of the LTX files in `dir`.
fn ltx_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".ltx"))
                .collect()
        })
        .unwrap_or_default()
}

/// True if Litestream lists an L0 file of the replica at `url` whose range holds `txid`.
fn replica_holds(ls: &Litestream, url: &str, txid: u64) -> bool {
    ls.ltx_list(url).iter().any(|e| {
        let (min, max) = (
            u64::from_str_radix(&e.min_txid, 16).unwrap(),
            u64::from_str_radix(&e.max_txid, 16).unwrap(),
        );
        e.level == 0 && min <= txid && txid <= max
    })
}

use common::replica::ids;

/// The value of the metric sample `line_start` (`name{labels}`) in a text exposition.
fn sample(metrics: &str, line_start: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Restores the replica with Litestream; the ids of the restored rows.
fn restored_ids(ls: &Litestream, setup: &Setup, name: &str) -> Vec<i64> {
    let out = setup.dir.path().join(name);
    testkit::assert_success(&ls.restore(&setup.direct_url, &out, &[]));
    ids(&out)
}

fn release_bin(test: &str) -> Option<PathBuf> {
    testkit::require_tool(testkit::Tool::ReleaseBinary, test)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_reads_carry_their_replication_position() {
    let test = "writes_and_reads_carry_their_replication_position";
    let (Some(bin), Some(ls)) = (release_bin(test), Litestream::require(test)) else {
        return;
    };
    let setup = Setup::file();
    let s = setup
        .serve(
            &bin,
            &[],
            &[("SQLITEREST_WRITE_DURABILITY_TIMEOUT_MS", "1500")],
        )
        .await;

    // Each write, answered once its commit is in a local L0 file, carries that file's max
    // TXID; one write after another, each is in a later file.
    let mut txids = Vec::new();
    for i in 0..8 {
        let r = s.post(&format!("row {i}"), &[]).await;
        assert_eq!(r.status, 201, "{r:?}");
        let t = r.txid();
        let local = ltx_names(&setup.local_l0());
        assert!(
            local.iter().any(|n| range(n).1 == t),
            "no local L0 file ends at {t:016x}: {local:?}"
        );
        if let Some(&last) = txids.last() {
            assert!(t > last, "{t:016x} after {last:016x}");
        }
        txids.push(t);
    }
    let last = *txids.last().unwrap();

    // Reads carry the position they were served at: at least every write answered before.
    let r = s.get("/t?order=id", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.txid() >= last, "read at {:016x} < {last:016x}", r.txid());
    assert_eq!(r.json().as_array().unwrap().len(), 8);
    let head = s.send(Method::HEAD, "/t", &[], None).await;
    assert_eq!(head.status, 200);
    assert!(head.txid() >= last);

    // Preference-Applied echoes the durability asked for, with the other preferences.
    let r = s
        .post(
            "local",
            &[("Prefer", "return=representation, durability=local")],
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        r.header("preference-applied"),
        Some("return=representation, durability=local")
    );
    assert!(r.txid() > last);
    let last = r.txid();
    let r = s.post("no preference", &[]).await;
    assert_eq!(r.header("preference-applied"), None);
    let last = r.txid().max(last);

    // A write that commits nothing gets the current position at once (replication's own
    // bookkeeping may have moved it on).
    let r = s.post("rolled back", &[("Prefer", "tx=rollback")]).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert!(r.txid() >= last);
    let r = s
        .send(
            Method::PATCH,
            "/t?id=eq.424242",
            &[],
            Some(json!({"v": "nothing"})),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert!(r.txid() >= last);

    // Invalid values are 400 SR002, whatever handling says; nothing is written.
    let before = ids(&setup.db).len();
    for prefer in ["durability=sync", "handling=lenient, durability=Replicated"] {
        s.post("bad", &[("Prefer", prefer)])
            .await
            .error(400, "SR002");
    }
    assert_eq!(ids(&setup.db).len(), before);
    for prefer in ["min-txid=12", "min-txid=000000000000000g"] {
        let r = s.get("/t", &[("Prefer", prefer)]).await;
        let e = r.error(400, "SR002");
        assert!(e["message"].as_str().unwrap().contains("min-txid"), "{e}");
    }

    // min-txid: a handed-out TXID is served at once, a future one is 503 SR003 after the bound.
    let asked = format!("{last:016x}");
    let r = s
        .get("/t?order=id", &[("Prefer", &format!("min-txid={asked}"))])
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.txid() >= last);
    assert_eq!(
        r.header("preference-applied"),
        Some(format!("min-txid={asked}").as_str())
    );
    let future = format!("{:016x}", last + 1_000_000);
    let asked_at = Instant::now();
    let r = s
        .get("/t", &[("Prefer", &format!("min-txid={future}"))])
        .await;
    let e = r.error(503, "SR003");
    assert!(asked_at.elapsed() >= Duration::from_millis(1500));
    assert_eq!(r.header("retry-after"), Some("1"));
    let details = e["details"].as_str().unwrap();
    assert!(details.contains(&future), "{details}");
    assert!(details.contains(&format!("{:016x}", r.txid())), "{details}");

    // Browsers may read the header.
    let r = s.get("/t", &[("Origin", "https://app.example")]).await;
    let exposed = r.header("access-control-expose-headers").unwrap();
    assert!(exposed.contains("Sqlite-Rest-Txid"), "{exposed}");

    // Every write's TXID is inside the range of an L0 file on the replica once it is there.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = s.health().await;
        let r = &h["replication"];
        if r["replicated_txid"] == r["local_txid"]
            && u64::from_str_radix(r["replicated_txid"].as_str().unwrap(), 16).unwrap() >= last
        {
            break;
        }
        assert!(Instant::now() < deadline, "not replicated: {h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for t in &txids {
        assert!(
            replica_holds(&ls, &setup.direct_url, *t),
            "{t:016x} is in no replica L0 file: {:?}",
            ls.ltx_list(&setup.direct_url)
        );
    }

    let m = s.metrics().await;
    assert!(
        sample(
            &m,
            "sqlite_rest_write_durability_total{mode=\"local\",outcome=\"synced\"}"
        ) >= 10.0,
        "{m}"
    );
    assert!(
        sample(
            &m,
            "sqlite_rest_write_durability_total{mode=\"local\",outcome=\"no_commit\"}"
        ) >= 2.0,
        "{m}"
    );
}

/// Without `--write-positions`, a local-mode write is answered at its commit, without a
/// position; a replicated write and a read still carry theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_write_positions_local_writes_are_answered_at_their_commit() {
    let test = "without_write_positions_local_writes_are_answered_at_their_commit";
    let Some(bin) = release_bin(test) else {
        return;
    };
    let setup = Setup::file();
    let s = setup
        .serve(&bin, &[], &[("SQLITEREST_WRITE_POSITIONS", "false")])
        .await;
    let r = s.post("local", &[]).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("sqlite-rest-txid"), None, "{r:?}");
    let r = s
        .post("replicated", &[("Prefer", "durability=replicated")])
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let t = r.txid();
    let r = s.get("/t?select=v&order=id", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.txid() >= t, "{r:?}");
    let rows: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(rows, json!([{"v": "local"}, {"v": "replicated"}]), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_replication_there_are_no_positions_and_guarantees_are_refused() {
    let test = "without_replication_there_are_no_positions_and_guarantees_are_refused";
    let Some(bin) = release_bin(test) else {
        return;
    };
    let s = common::Server::start_with(common::Options {
        bin: Some(bin),
        ..common::Options::default()
    })
    .await;
    let body = r#"{"id": 9001, "name": "n"}"#;
    let r = common::post(&s, "/names", &[], body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("sqlite-rest-txid"), None);
    let r = common::get(&s, "/names", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("sqlite-rest-txid"), None);

    // A guarantee the server cannot give is refused before anything runs.
    let before = s.snapshot();
    for prefer in [
        "durability=replicated",
        "handling=lenient, durability=replicated",
    ] {
        let r = common::post(
            &s,
            "/names",
            &[("Prefer", prefer)],
            r#"{"id": 9002, "name": "x"}"#,
        )
        .await;
        let e = r.error(400, "SR002");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("durability=replicated"),
            "{e}"
        );
    }
    assert_eq!(s.snapshot(), before, "a refused write changed the database");
    common::get(&s, "/names", &[("Prefer", "min-txid=0000000000000001")])
        .await
        .error(400, "SR002");
    // `durability=local` is what the server does anyway.
    let r = common::post(
        &s,
        "/names",
        &[("Prefer", "durability=local")],
        r#"{"id": 9003, "name": "l"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("preference-applied"), Some("durability=local"));
}

#[test]
fn write_durability_replicated_without_replication_is_refused_at_start_up() {
    let Some(bin) = release_bin("write_durability_replicated_without_replication") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    for (args, env) in [
        (vec!["--write-durability", "replicated"], None),
        (vec![], Some(("SQLITEREST_WRITE_DURABILITY", "replicated"))),
    ] {
        let mut cmd = Command::new(&bin);
        cmd.args([
            "serve",
            "--insecure-disable-auth",
            "--http-addr",
            "127.0.0.1:0",
        ])
        .arg("--db-dsn")
        .arg(&db)
        .args(args);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A server that starts would serve until stopped: give it a generous while to refuse.
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the server started");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(!status.success());
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(
            stderr.contains("--write-durability replicated")
                && stderr.contains("--replication-enabled"),
            "{stderr}"
        );
    }
}

/// The local S3 server behind a proxy, an S3 setup through it, and the release binary.
fn s3_setup(test: &str, extra: &str) -> Option<(PathBuf, Litestream, FaultProxy, Setup)> {
    let bin = release_bin(test)?;
    let ls = Litestream::require(test)?;
    let s3 = testkit::require_s3(test)?;
    let proxy = FaultProxy::start(s3.host_port()).unwrap();
    let setup = Setup::s3_behind(&s3, &proxy, extra);
    Some((bin, ls, proxy, setup))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_writes_are_answered_once_on_the_replica_and_503_while_it_is_unreachable() {
    let test = "replicated_writes_are_answered_once_on_the_replica_and_503_while_it_is_unreachable";
    let Some((bin, ls, proxy, setup)) = s3_setup(test, "") else {
        return;
    };
    let timeout = Duration::from_millis(2000);
    let s = setup
        .serve(
            &bin,
            &[],
            &[
                ("SQLITEREST_WRITE_DURABILITY", "replicated"),
                ("SQLITEREST_WRITE_DURABILITY_TIMEOUT_MS", "2000"),
                ("SQLITEREST_REPLICATION_OPERATION_TIMEOUT", "1s"),
            ],
        )
        .await;

    // Answered only once the replica holds it: it is there the moment the 201 arrives.
    for i in 0..3 {
        let r = s.post(&format!("synchronous {i}"), &[]).await;
        assert_eq!(r.status, 201, "{r:?}");
        let t = r.txid();
        assert!(
            replica_holds(&ls, &setup.direct_url, t),
            "answered before the replica held {t:016x}: {:?}",
            ls.ltx_list(&setup.direct_url)
        );
    }
    let r = s
        .post("asked for", &[("Prefer", "durability=replicated")])
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("preference-applied"),
        Some("durability=replicated")
    );
    assert!(replica_holds(&ls, &setup.direct_url, r.txid()));

    // The replica stops answering: a synchronous write is committed locally, then answered
    // 503 SR001 after the bound, with its TXID.
    proxy.set(NetFault::Silent);
    let sent = Instant::now();
    let r = s
        .post("during the outage", &[("Prefer", "return=representation")])
        .await;
    let waited = sent.elapsed();
    let e = r.error(503, "SR001");
    assert!(waited >= timeout, "answered after {waited:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    let t = r.txid();
    let hex = format!("{t:016x}");
    let details = e["details"].as_str().unwrap();
    assert!(
        details.contains(&hex) && details.contains("did not confirm"),
        "{details}"
    );
    assert!(
        e["hint"]
            .as_str()
            .unwrap()
            .contains(&format!("min-txid={hex}")),
        "{e}"
    );
    // Committed locally: a read at that position (the one the hint names) has the row.
    let r = s
        .get(
            "/t?v=eq.during%20the%20outage",
            &[("Prefer", &format!("min-txid={hex}"))],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json().as_array().unwrap().len(), 1, "{}", r.body);
    let outage_id = r.json()[0]["id"].as_i64().unwrap();
    // A request may opt out: answered once committed locally.
    let r = s
        .post("local during the outage", &[("Prefer", "durability=local")])
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert!(r.txid() > t);
    let m = s.metrics().await;
    assert!(
        sample(
            &m,
            "sqlite_rest_write_durability_total{mode=\"replicated\",outcome=\"timeout\"}"
        ) >= 1.0,
        "{m}"
    );

    // The replica answers again: the write that got SR001 reaches it.
    proxy.set(NetFault::Pass);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !replica_holds(&ls, &setup.direct_url, t) {
        assert!(
            Instant::now() < deadline,
            "{hex} never reached the replica: {}",
            setup.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = s.post("after the outage", &[]).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert!(replica_holds(&ls, &setup.direct_url, r.txid()));
    let restored = restored_ids(&ls, &setup, "restored.db");
    assert!(restored.contains(&outage_id), "{restored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_write_is_answered_sr001_when_replication_fails_for_good() {
    let test = "a_waiting_write_is_answered_sr001_when_replication_fails_for_good";
    let Some((bin, _ls, proxy, setup)) = s3_setup(test, "shutdown-sync-timeout: 1s\n") else {
        return;
    };
    let mut s = setup
        .serve(
            &bin,
            &[],
            &[
                ("SQLITEREST_WRITE_DURABILITY", "replicated"),
                ("SQLITEREST_WRITE_DURABILITY_TIMEOUT_MS", "120000"),
                ("SQLITEREST_REPLICATION_OPERATION_TIMEOUT", "1s"),
                ("SQLITEREST_REPLICATION_RETRY_WINDOW", "3s"),
            ],
        )
        .await;
    proxy.set(NetFault::Silent);
    let r = s.post("never replicated", &[]).await;
    let e = r.error(503, "SR001");
    let details = e["details"].as_str().unwrap();
    assert!(details.contains("failed for good"), "{details}");
    // The replica's address and the errors' own text stay in the server's log.
    assert!(
        !details.contains("127.0.0.1") && !details.contains("s3://") && !details.contains("PUT"),
        "{details}"
    );
    r.txid();
    assert!(!s.wait_exit(Duration::from_secs(30)).await.success());
    assert!(
        ids(&setup.db).len() == 1,
        "the write was not committed locally"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_writes_waiting_for_a_stalled_replica() {
    let test = "sigterm_answers_writes_waiting_for_a_stalled_replica";
    let Some((bin, ls, proxy, setup)) = s3_setup(test, "shutdown-sync-timeout: 4s\n") else {
        return;
    };
    // The flags (the other tests set the same through the environment).
    let args = [
        "--write-durability",
        "replicated",
        "--write-durability-timeout-ms",
        "120000",
    ];
    let env = [("SQLITEREST_REPLICATION_OPERATION_TIMEOUT", "1s")];

    /// POSTs a synchronous write in a task; waits until it is committed locally (so it is
    /// waiting for the replica).
    async fn waiting_write(
        s: &Running,
        setup: &Setup,
        v: &'static str,
    ) -> tokio::task::JoinHandle<Result<Resp, String>> {
        let before = ids(&setup.db).len();
        let (client, base, token) = (s.client.clone(), s.base.clone(), s.token.clone());
        let w = tokio::spawn(async move {
            let r = client
                .post(format!("{base}/t"))
                .bearer_auth(token)
                .json(&json!({ "v": v }))
                .send()
                .await
                .map_err(|e| format!("{e:?}"))?;
            Ok(Resp {
                status: r.status().as_u16(),
                headers: r.headers().clone(),
                body: r.text().await.map_err(|e| format!("{e:?}"))?,
            })
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while ids(&setup.db).len() == before {
            assert!(Instant::now() < deadline, "the write was never committed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        w
    }

    // The replica stays stalled: the write is answered 503 SR001 at shutdown's deadline
    // (the config's shutdown-sync-timeout), then the server exits non-zero (its final sync
    // cannot finish either).
    let mut s = setup.serve(&bin, &args, &env).await;
    assert_eq!(s.post("replicated first", &[]).await.status, 201);
    proxy.set(NetFault::Silent);
    let w = waiting_write(&s, &setup, "stalled").await;
    let stopped = Instant::now();
    s.sigterm();
    let r = w.await.unwrap().expect("the connection was dropped");
    let e = r.error(503, "SR001");
    assert!(
        stopped.elapsed() >= Duration::from_secs(4),
        "{:?}",
        stopped.elapsed()
    );
    let details = e["details"].as_str().unwrap();
    assert!(details.contains("shutting down"), "{details}");
    let t = r.txid();
    assert!(!s.wait_exit(Duration::from_secs(30)).await.success());
    assert!(setup.log().contains("SIGTERM"), "{}", setup.log());

    // Restarted with a working replica, the write gets there. Then the replica stalls
    // again, and heals while the server is shutting down: the waiting write is answered
    // 201 and the server exits 0.
    proxy.set(NetFault::Pass);
    let mut s = setup.serve(&bin, &args, &env).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !replica_holds(&ls, &setup.direct_url, t) {
        assert!(
            Instant::now() < deadline,
            "{t:016x} never reached the replica"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    proxy.set(NetFault::Silent);
    let w = waiting_write(&s, &setup, "healed").await;
    s.sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.set(NetFault::Pass);
    let r = w.await.unwrap().expect("the connection was dropped");
    assert_eq!(r.status, 201, "{r:?}: {}", setup.log());
    let t = r.txid();
    let status = s.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}: {}", setup.log());
    assert!(replica_holds(&ls, &setup.direct_url, t));
    let restored = restored_ids(&ls, &setup, "restored.db");
    assert_eq!(restored, ids(&setup.db));
}
