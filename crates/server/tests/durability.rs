//! What a write's acknowledgement promises, proven by killing things: the release
//! `sqlite-rest` binary under concurrent HTTP writers, with `Prefer: durability=replicated`
//! (synchronous: answered once the replica holds the write) or `durability=local`, against
//! the local S3 server (moto, through a fault-injecting proxy where the network must fail)
//! or a file replica on a small tmpfs, every replica read back by the real Litestream 0.5.17.
//!
//! - `sigkill_*`: `kill -9` at seeded random moments (at least 20 kills, restart in between,
//!   same database and replica); after each, `litestream restore` must hold every write
//!   acknowledged as replicated, pass `PRAGMA integrity_check`, and be a prefix of the local
//!   database's commit order. In local mode the acknowledged writes the replica lacks are
//!   counted and printed.
//! - `a_replica_outage_*`: the S3 endpoint refuses or goes silent mid-load, then heals within
//!   the retry window (nothing acknowledged lost; a synchronous write either waits or gets
//!   503 `SR001` and is on the replica after healing), then stays down (the server exits
//!   non-zero; nothing acknowledged as replicated is missing).
//! - `slow_and_cut_uploads_*`: delays, cuts after n bytes, resets and lost responses on the
//!   way to S3: no missing or duplicate TXIDs per level, point-in-time restores hold every
//!   write with a TXID up to theirs, and Litestream's restore is byte-identical to ours.
//! - `a_full_disk_*`: a file replica on a 1 MiB tmpfs (a user and mount namespace, no root
//!   needed) fills up: a clear error, exit non-zero after the retry window, nothing
//!   acknowledged as replicated lost.
//! - `txids_*`: `Sqlite-Rest-Txid` increases across writes, SIGTERM and SIGKILL restarts,
//!   lies within a replica file's TXID range, and a read with `Prefer: min-txid` sees the
//!   write that handed the TXID out.
//! - `a_restart_racing_*`: a primary SIGKILLed while the network holds its last upload; the
//!   held request lands after the restarted primary's first upload: no false "another
//!   primary" stop, the overlap is settled, synchronous writes go on, Litestream restores
//!   every row.
//!
//! Knobs: `SQLITEREST_DURABILITY_SEED` (decimal or `0x` hex; printed by every seeded test)
//! repeats a run's random choices; `SQLITEREST_DURABILITY_KILLS` (default 20) sets the kills
//! per mode of the crash tests (longer runs than CI's).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::Value;
use testkit::litestream::{Litestream, LtxEntry};
use testkit::proxy::{FaultProxy, NetFault};
use testkit::{Tool, require_tool};

use common::replica::{Running, Setup, create_db};

/// `Prefer` of a synchronous write.
const REPLICATED: &str = "return=representation, durability=replicated";
/// `Prefer` of an asynchronous write.
const LOCAL: &str = "return=representation, durability=local";
const RETRY_WINDOW_ENV: &str = "SQLITEREST_REPLICATION_RETRY_WINDOW";
const OPERATION_TIMEOUT_ENV: &str = "SQLITEREST_REPLICATION_OPERATION_TIMEOUT";

// ---------------------------------------------------------------------------------------
// Shared pieces: seeds, the release binary, the write load and what it was answered.
// ---------------------------------------------------------------------------------------

/// The run's seed: `SQLITEREST_DURABILITY_SEED`, or a fresh one; printed.
fn seed(test: &str) -> u64 {
    let seed = match std::env::var("SQLITEREST_DURABILITY_SEED") {
        Ok(s) if !s.is_empty() => match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
            None => s.parse().unwrap(),
        },
        _ => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            nanos ^ (u64::from(std::process::id()) << 32)
        }
    };
    eprintln!("{test}: seed {seed:#x} (SQLITEREST_DURABILITY_SEED={seed:#x} repeats it)");
    seed
}

/// Kills per mode of the crash tests.
fn kills() -> usize {
    std::env::var("SQLITEREST_DURABILITY_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20)
}

/// `setup` running the release binary; `None` (skip) when it is missing and allowed to be.
fn release(test: &str, mut setup: Setup) -> Option<Setup> {
    setup.bin = require_tool(Tool::ReleaseBinary, test)?;
    Some(setup)
}

/// `setup`'s serve command on these ports with `--write-durability-timeout-ms timeout_ms`
/// and the environment `env`.
fn durable_cmd(
    setup: &Setup,
    port: u16,
    admin: u16,
    timeout_ms: u64,
    env: &[(&str, &str)],
) -> Command {
    let mut c = setup.serve_cmd(port, admin);
    c.args(["--write-durability-timeout-ms", &timeout_ms.to_string()]);
    c.arg("--write-positions");
    c.envs(env.iter().copied());
    c
}

/// A new database served by `setup` as [`durable_cmd`] says, once it is on the replica.
async fn serve_new(setup: &Setup, timeout_ms: u64, env: &[(&str, &str)]) -> Running {
    create_db(&setup.db, 1);
    let s = setup
        .spawn_or_log(|p, a| durable_cmd(setup, p, a, timeout_ms, env))
        .await;
    s.wait_replicated("").await;
    s
}

/// A TXID as the server writes it: 16 lowercase hex digits.
fn parse_txid(s: &str) -> u64 {
    assert!(
        s.len() == 16
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "not a TXID: {s:?}"
    );
    u64::from_str_radix(s, 16).unwrap()
}

fn hex(txid: u64) -> String {
    format!("{txid:016x}")
}

/// A write acknowledged with a 2xx.
#[derive(Debug, Clone)]
struct Acked {
    id: i64,
    v: String,
    txid: Option<u64>,
}

/// A write answered 503 `SR001`: committed locally, not confirmed on the replica.
#[derive(Debug, Clone)]
struct NotConfirmed {
    v: String,
    /// `Sqlite-Rest-Txid` (always there while the local sync works).
    txid: Option<u64>,
    body: Value,
}

/// Everything the writers were answered.
#[derive(Debug, Default)]
struct Outcomes {
    acked: Vec<Acked>,
    not_confirmed: Vec<NotConfirmed>,
    /// Any other answer (status and body): always a failure.
    unexpected: Vec<String>,
    /// Requests that got no answer (the server died or closed the connection).
    unanswered: usize,
}

impl Outcomes {
    fn extend(&mut self, o: Outcomes) {
        self.acked.extend(o.acked);
        self.not_confirmed.extend(o.not_confirmed);
        self.unexpected.extend(o.unexpected);
        self.unanswered += o.unanswered;
    }

    /// Asserts that every `SR001` names its transaction: `Sqlite-Rest-Txid` and the details
    /// carry the TXID (known as soon as the local sync wrote the commit, which does not
    /// depend on the replica).
    fn assert_not_confirmed_name_their_txid(&self, what: &str) {
        for nc in &self.not_confirmed {
            let txid = nc.txid.unwrap_or_else(|| {
                panic!("{what}: an SR001 without Sqlite-Rest-Txid: {}", nc.body)
            });
            assert!(
                nc.body["details"]
                    .as_str()
                    .is_some_and(|d| d.contains(&hex(txid))),
                "{what}: SR001 details do not name TXID {}: {}",
                hex(txid),
                nc.body
            );
        }
    }

    fn assert_no_unexpected(&self, what: &str) {
        assert!(
            self.unexpected.is_empty(),
            "{what}: {} unexpected answers, e.g. {:?}",
            self.unexpected.len(),
            &self.unexpected[..self.unexpected.len().min(5)]
        );
    }
}

/// Concurrent HTTP writers inserting rows `{v}` into `t`, each until it is told to stop or
/// its request gets no answer (the server is gone).
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Outcomes>>,
}

impl Load {
    /// `writers` writers with this `Prefer`; values are `<tag>-w<writer>-<n>`, padded with
    /// `pad` incompressible hex characters.
    fn start(s: &Running, writers: usize, prefer: &'static str, tag: &str, pad: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..writers)
            .map(|w| {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .unwrap();
                let (base, token, stop) = (s.base.clone(), s.token(), stop.clone());
                let tag = format!("{tag}-w{w}");
                tokio::spawn(async move {
                    let mut out = Outcomes::default();
                    let mut noise = StdRng::seed_from_u64(w as u64);
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let mut v = format!("{tag}-{i}");
                        if pad > 0 {
                            v.push('-');
                            v.extend((0..pad).map(|_| {
                                char::from_digit(noise.random_range(0..16u32), 16).unwrap()
                            }));
                        }
                        let r = client
                            .post(format!("{base}/t"))
                            .bearer_auth(&token)
                            .header("Prefer", prefer)
                            .json(&serde_json::json!({ "v": v }))
                            .send()
                            .await;
                        let Ok(r) = r else {
                            out.unanswered += 1;
                            break;
                        };
                        let status = r.status().as_u16();
                        let txid = r
                            .headers()
                            .get("sqlite-rest-txid")
                            .map(|h| parse_txid(h.to_str().unwrap()));
                        let retry_after = r.headers().get("retry-after").is_some();
                        let Ok(text) = r.text().await else {
                            out.unanswered += 1;
                            break;
                        };
                        match status {
                            201 => {
                                let rows: Value = serde_json::from_str(&text).unwrap();
                                let id = rows[0]["id"].as_i64().unwrap();
                                assert_eq!(rows[0]["v"], v.as_str());
                                out.acked.push(Acked { id, v, txid });
                            }
                            503 => {
                                let body: Value = serde_json::from_str(&text)
                                    .unwrap_or_else(|_| Value::String(text.clone()));
                                let shaped = body["code"] == "SR001"
                                    && ["message", "details", "hint"]
                                        .iter()
                                        .all(|k| body.get(k).is_some());
                                if shaped && retry_after {
                                    out.not_confirmed.push(NotConfirmed { v, txid, body })
                                } else {
                                    out.unexpected
                                        .push(format!("503 (Retry-After {retry_after}): {text}"))
                                }
                                // Not confirmed is not lost: the write stays committed.
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            _ => out.unexpected.push(format!("{status}: {text}")),
                        }
                    }
                    out
                })
            })
            .collect();
        Load { stop, tasks }
    }

    /// Stops the writers (each after its request in flight) and collects the answers.
    async fn finish(self) -> Outcomes {
        self.stop.store(true, Ordering::Relaxed);
        self.join().await
    }

    /// Collects the answers once every writer has stopped by itself (the server is gone).
    async fn join(self) -> Outcomes {
        let mut all = Outcomes::default();
        for t in self.tasks {
            all.extend(t.await.unwrap());
        }
        all
    }
}

// ---------------------------------------------------------------------------------------
// Reading databases back.
// ---------------------------------------------------------------------------------------

/// The rows of `t` in commit order (`id`: the writer assigns increasing ids and nothing is
/// deleted), opened read-only so that closing it never checkpoints the server's WAL.
fn table_rows(db: &Path) -> Vec<(i64, String)> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let mut s = c.prepare("SELECT id, v FROM t ORDER BY id").unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get::<_, Option<String>>(1)?)))
        .unwrap()
        .map(|r| {
            let (id, v) = r.unwrap();
            (id, v.unwrap_or_default())
        })
        .collect()
}

fn assert_integrity(db: &Path) {
    let c = rusqlite::Connection::open(db).unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "{}", db.display());
}

/// `litestream restore` of `url` (`-txid` when given) into `out`, asserting success.
fn litestream_restore(ls: &Litestream, url: &str, out: &Path, txid: Option<u64>) -> PathBuf {
    let _ = std::fs::remove_file(out);
    let t = txid.map(hex);
    let extra: Vec<&str> = match &t {
        Some(t) => vec!["-txid", t],
        None => vec![],
    };
    let r = ls.restore(url, out, &extra);
    assert!(
        r.status.success(),
        "litestream restore {url} {extra:?}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    out.to_path_buf()
}

/// Asserts that `restored` is the first rows of `local` (same ids, same values): the
/// replica holds a prefix of the commit order.
fn assert_prefix(restored: &[(i64, String)], local: &[(i64, String)], what: &str) {
    assert!(
        restored.len() <= local.len() && restored == &local[..restored.len()],
        "{what}: the restored rows are not a prefix of the local commit order: {} restored, {} local; first difference at {:?}",
        restored.len(),
        local.len(),
        restored
            .iter()
            .zip(local)
            .position(|(a, b)| a != b)
            .map(|i| (&restored[i], &local[i]))
    );
}

/// The acknowledged writes missing from `rows` (matched by id and value).
fn missing<'a>(
    acked: impl IntoIterator<Item = &'a Acked>,
    rows: &[(i64, String)],
) -> Vec<&'a Acked> {
    let have: HashSet<(i64, &str)> = rows.iter().map(|(i, v)| (*i, v.as_str())).collect();
    acked
        .into_iter()
        .filter(|a| !have.contains(&(a.id, a.v.as_str())))
        .collect()
}

/// The values (of writes answered `SR001`) missing from `rows`.
fn missing_values<'a>(
    writes: impl IntoIterator<Item = &'a NotConfirmed>,
    rows: &[(i64, String)],
) -> Vec<&'a str> {
    let have: HashSet<&str> = rows.iter().map(|(_, v)| v.as_str()).collect();
    writes
        .into_iter()
        .map(|w| w.v.as_str())
        .filter(|v| !have.contains(v))
        .collect()
}

/// The replica's LTX files by level, each level sorted by (min, max) TXID.
fn levels(listing: &[LtxEntry]) -> BTreeMap<u32, Vec<(u64, u64)>> {
    let mut by_level: BTreeMap<u32, Vec<(u64, u64)>> = BTreeMap::new();
    for e in listing {
        by_level.entry(e.level).or_default().push((
            u64::from_str_radix(&e.min_txid, 16).unwrap(),
            u64::from_str_radix(&e.max_txid, 16).unwrap(),
        ));
    }
    for files in by_level.values_mut() {
        files.sort_unstable();
    }
    by_level
}

/// Asserts that every level below the snapshots holds contiguous TXIDs without duplicates:
/// each file starts right after the previous one ends. One exception, as the format allows:
/// in L1..L8 a compaction whose upload failed on our side but landed is redone with more
/// input, so a file may start at the same TXID as the previous one and end later. Returns
/// how many such superseded files there were.
fn assert_contiguous_levels(listing: &[LtxEntry]) -> usize {
    let mut superseded = 0;
    for (level, files) in levels(listing) {
        if level == 9 {
            continue;
        }
        for w in files.windows(2) {
            let ((pmin, pmax), (nmin, nmax)) = (w[0], w[1]);
            if level != 0 && nmin == pmin && nmax > pmax {
                superseded += 1;
                continue;
            }
            assert_eq!(
                nmin,
                pmax + 1,
                "level {level}: {}-{} then {}-{} (a gap or duplicate TXIDs); level: {files:x?}",
                hex(pmin),
                hex(pmax),
                hex(nmin),
                hex(nmax)
            );
        }
    }
    superseded
}

/// Waits until `/health` reports replication healthy again.
async fn wait_healthy(s: &Running, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (status, h) = s.health().await;
        if status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replication did not recover: {h}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------
// 1. Crash test: kill -9 under concurrent writers.
// ---------------------------------------------------------------------------------------

/// Kills the server `kills()` times at random moments under 8 writers with `prefer`, with
/// the checks after each kill; returns (acknowledged writes, how many the restores lacked).
async fn crash_run(test: &str, prefer: &'static str, synchronous: bool) -> Option<(usize, usize)> {
    let ls = Litestream::require(test)?;
    let setup = release(test, Setup::s3(test)?)?;
    let seed = seed(test);
    let mut rng = StdRng::seed_from_u64(seed);
    create_db(&setup.db, 1);
    // A first clean run puts the database on the replica.
    {
        let mut s = setup.serve_or_log().await;
        s.wait_replicated("").await;
        s.stop().await;
    }
    let (mut total_acked, mut total_lost) = (0, 0);
    let n = kills();
    for kill in 0..n {
        let mut s = setup.serve_or_log().await;
        let load = Load::start(&s, 8, prefer, &format!("k{kill}"), 0);
        let after = Duration::from_millis(rng.random_range(0..1200));
        tokio::time::sleep(after).await;
        s.child.kill().unwrap();
        s.child.wait().unwrap();
        let out = load.join().await;
        out.assert_no_unexpected(&format!("kill {kill}"));
        let what = format!("seed {seed:#x}, kill {kill} ({after:?} into the load)");

        // The local database after the kill is the reference order; the server's 2xx
        // promise at least a local commit.
        let local = table_rows(&setup.db);
        let lost_locally = missing(&out.acked, &local);
        assert!(
            lost_locally.is_empty(),
            "{what}: acknowledged writes missing from the local database: {lost_locally:?}"
        );
        let restored = litestream_restore(
            &ls,
            &setup.url,
            &setup.dir.path().join(format!("restore-{kill}.db")),
            None,
        );
        assert_integrity(&restored);
        let rows = table_rows(&restored);
        assert_prefix(&rows, &local, &what);
        let lost = missing(&out.acked, &rows);
        if synchronous {
            assert!(
                lost.is_empty(),
                "{what}: {} writes acknowledged as replicated are not on the replica, e.g. {:?}",
                lost.len(),
                &lost[..lost.len().min(5)]
            );
            // Each one's TXID is on the replica too.
            let max = parse_txid(&ls.restore_plan(&setup.url, None).max_txid);
            for a in &out.acked {
                let txid = a
                    .txid
                    .unwrap_or_else(|| panic!("{what}: no Sqlite-Rest-Txid: {a:?}"));
                assert!(
                    txid <= max,
                    "{what}: {a:?} beyond the replica's {}",
                    hex(max)
                );
            }
        }
        eprintln!(
            "{test}: kill {kill} after {after:?}: {} acknowledged, {} answered SR001, {} unanswered; {} of the acknowledged not on the replica; {} rows local, {} restored",
            out.acked.len(),
            out.not_confirmed.len(),
            out.unanswered,
            lost.len(),
            local.len(),
            rows.len()
        );
        total_acked += out.acked.len();
        total_lost += lost.len();
        let _ = std::fs::remove_file(&restored);
    }
    // The last restart brings the replica level with the database.
    let mut s = setup.serve_or_log().await;
    s.wait_replicated("").await;
    s.stop().await;
    let restored = litestream_restore(&ls, &setup.url, &setup.dir.path().join("final.db"), None);
    assert_eq!(
        table_rows(&restored),
        table_rows(&setup.db),
        "seed {seed:#x}"
    );
    assert!(total_acked > 0, "no write was acknowledged in {n} runs");
    Some((total_acked, total_lost))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_synchronous_writers_loses_no_write_acknowledged_as_replicated() {
    let test = "sigkill_under_synchronous_writers_loses_no_write_acknowledged_as_replicated";
    if let Some((acked, lost)) = crash_run(test, REPLICATED, true).await {
        eprintln!("{test}: {acked} writes acknowledged as replicated, {lost} lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_asynchronous_writers_loses_only_the_unuploaded_tail() {
    let test = "sigkill_under_asynchronous_writers_loses_only_the_unuploaded_tail";
    if let Some((acked, lost)) = crash_run(test, LOCAL, false).await {
        // Not a guarantee, so only reported: what `durability=local` risks when the machine
        // is lost right after a kill.
        eprintln!(
            "{test}: {lost} of {acked} acknowledged writes were not on the replica right after their kill (each restore a prefix of the commit order)"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 2. Replica outage.
// ---------------------------------------------------------------------------------------

/// A replica on the local S3 server behind a [`FaultProxy`]: the server reaches it through
/// the proxy, the checks read it directly.
struct ProxiedS3 {
    setup: Setup,
    proxy: FaultProxy,
    direct: String,
}

fn proxied_s3(test: &str, bucket_prefix: &str) -> Option<ProxiedS3> {
    let s3 = testkit::require_s3(test)?;
    let proxy = FaultProxy::start(s3.host_port()).unwrap();
    let bucket = s3.create_bucket(bucket_prefix);
    let via_proxy = format!(
        "s3://{bucket}/app?endpoint={}&region={}",
        proxy.host_port(),
        s3.region
    );
    let setup = release(
        test,
        Setup::with_url(tempfile::tempdir().unwrap(), via_proxy),
    )?;
    Some(ProxiedS3 {
        setup,
        proxy,
        direct: s3.replica_url(&bucket, "app"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_outage_loses_no_acknowledged_write_and_a_long_one_stops_the_server() {
    let test = "a_replica_outage_loses_no_acknowledged_write_and_a_long_one_stops_the_server";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    let Some(ProxiedS3 {
        setup,
        proxy,
        direct,
    }) = proxied_s3(test, "outage")
    else {
        return;
    };
    let window = Duration::from_secs(8);
    let mut s = serve_new(
        &setup,
        1000,
        &[(RETRY_WINDOW_ENV, "8s"), (OPERATION_TIMEOUT_ENV, "1s")],
    )
    .await;

    // Short outages, healed well within the window: refused connections, then an endpoint
    // that accepts and never answers.
    let load = Load::start(&s, 8, REPLICATED, "healed", 0);
    tokio::time::sleep(Duration::from_millis(700)).await;
    for fault in [NetFault::Refuse, NetFault::Silent] {
        proxy.set(fault);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        proxy.set(NetFault::Pass);
        wait_healthy(&s, Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let healed = load.finish().await;
    healed.assert_no_unexpected("outages within the window");
    assert!(!healed.acked.is_empty(), "no write was acknowledged");
    s.wait_replicated("").await;
    let restored = litestream_restore(&ls, &direct, &setup.dir.path().join("healed.db"), None);
    assert_integrity(&restored);
    let rows = table_rows(&restored);
    assert_prefix(&rows, &table_rows(&setup.db), "after healing");
    let lost = missing(&healed.acked, &rows);
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    let absent = missing_values(&healed.not_confirmed, &rows);
    assert!(
        absent.is_empty(),
        "writes answered SR001 are not on the replica after healing: {absent:?}"
    );
    // An SR001 names the transaction's TXID, which the replica now holds.
    healed.assert_not_confirmed_name_their_txid("outages within the window");
    let max = parse_txid(&ls.restore_plan(&direct, None).max_txid);
    for nc in &healed.not_confirmed {
        assert!(
            nc.txid <= Some(max),
            "{nc:?} beyond the replica's {}",
            hex(max)
        );
    }
    eprintln!(
        "{test}: healed outages: {} acknowledged, {} answered SR001 (all on the replica after healing)",
        healed.acked.len(),
        healed.not_confirmed.len()
    );
    if let Some(nc) = healed.not_confirmed.first() {
        eprintln!("{test}: an SR001: {}", nc.body);
    }

    // An outage past the window: the server must stop, non-zero.
    let load = Load::start(&s, 8, REPLICATED, "down", 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.set(NetFault::Refuse);
    let down = Instant::now();
    let status = s.wait_exit(window + Duration::from_secs(30)).await;
    let took = down.elapsed();
    let during = load.join().await;
    during.assert_no_unexpected("an outage past the window");
    assert!(!status.success(), "exit status {status}");
    assert!(took >= window, "gave up after {took:?}, before the window");
    let log = setup.log();
    assert!(log.contains("replication failed"), "{log}");
    // Nothing acknowledged as replicated, before or during the outage, is missing.
    let restored = litestream_restore(&ls, &direct, &setup.dir.path().join("down.db"), None);
    assert_integrity(&restored);
    let rows = table_rows(&restored);
    let local = table_rows(&setup.db);
    assert_prefix(&rows, &local, "after the server gave up");
    let lost = missing(healed.acked.iter().chain(&during.acked), &rows);
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    // SR001 means committed locally: every such write is in the local database.
    let absent = missing_values(&during.not_confirmed, &local);
    assert!(
        absent.is_empty(),
        "writes answered SR001 are not even local: {absent:?}"
    );
    eprintln!(
        "{test}: outage past the window: exit {status} after {took:?}; {} acknowledged before, {} answered SR001 (local only: {})",
        during.acked.len(),
        during.not_confirmed.len(),
        missing_values(&during.not_confirmed, &rows).len()
    );
    if let Some(nc) = during.not_confirmed.last() {
        eprintln!("{test}: the last SR001: {}", nc.body);
    }
    during.assert_not_confirmed_name_their_txid("an outage past the window");
}

// ---------------------------------------------------------------------------------------
// 3. Slow and partial uploads.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_cut_uploads_leave_a_contiguous_replica_litestream_restores_like_us() {
    let test = "slow_and_cut_uploads_leave_a_contiguous_replica_litestream_restores_like_us";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    let Some(ProxiedS3 {
        setup,
        proxy,
        direct,
    }) = proxied_s3(test, "slow")
    else {
        return;
    };
    let seed = seed(test);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut s = serve_new(
        &setup,
        30_000,
        &[(RETRY_WINDOW_ENV, "60s"), (OPERATION_TIMEOUT_ENV, "2s")],
    )
    .await;
    let load = Load::start(&s, 8, REPLICATED, "slow", 200);
    let mut faults = Vec::new();
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let (fault, ms) = match rng.random_range(0..5) {
            0 => (
                NetFault::Delay(Duration::from_millis(rng.random_range(20..250))),
                rng.random_range(500..1500),
            ),
            1 => (
                NetFault::CutAfter(rng.random_range(100..20_000)),
                rng.random_range(200..900),
            ),
            2 => (NetFault::Reset, 0),
            // Longer than the operation timeout: uploads that land unacknowledged.
            3 => (NetFault::DropResponses, rng.random_range(2500..3500)),
            _ => (NetFault::Pass, rng.random_range(200..800)),
        };
        proxy.set(fault);
        faults.push(format!("{fault:?} {ms} ms"));
        tokio::time::sleep(Duration::from_millis(ms)).await;
        proxy.set(NetFault::Pass);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.set(NetFault::Pass);
    let out = load.finish().await;
    let what = format!("seed {seed:#x}, faults {faults:?}");
    out.assert_no_unexpected(&what);
    assert!(!out.acked.is_empty(), "{what}: no write was acknowledged");
    s.wait_replicated("").await;
    s.stop().await;
    let local = table_rows(&setup.db);

    // No missing or duplicate TXIDs per level.
    let listing = ls.ltx_list(&direct);
    let superseded = assert_contiguous_levels(&listing);
    // Litestream restores what we restore, byte for byte, and it is our database.
    let theirs = litestream_restore(&ls, &direct, &setup.dir.path().join("theirs.db"), None);
    let ours = setup.dir.path().join("ours.db");
    let o = Command::new(&setup.bin)
        .args(["restore", "-o"])
        .arg(&ours)
        .arg(&direct)
        .env_remove("AWS_CA_BUNDLE")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    testkit::assert_success(&o);
    assert!(
        std::fs::read(&ours).unwrap() == std::fs::read(&theirs).unwrap(),
        "{what}: Litestream's restore differs from ours"
    );
    assert_integrity(&theirs);
    assert_eq!(table_rows(&theirs), local, "{what}");
    let lost = missing(&out.acked, &local);
    assert!(
        lost.is_empty(),
        "{what}: acknowledged writes lost: {lost:?}"
    );
    assert!(missing_values(&out.not_confirmed, &local).is_empty());

    // Point-in-time restores at random L0 positions: each a prefix of the commit order that
    // holds every write answered with a TXID up to it.
    let l0: Vec<u64> = levels(&listing)
        .get(&0)
        .map(|files| files.iter().map(|f| f.1).collect())
        .unwrap_or_default();
    assert!(!l0.is_empty(), "no L0 file on the replica");
    for i in 0..4 {
        let at = l0[rng.random_range(0..l0.len())];
        let restored = litestream_restore(
            &ls,
            &direct,
            &setup.dir.path().join(format!("at-{i}.db")),
            Some(at),
        );
        assert_integrity(&restored);
        let rows = table_rows(&restored);
        assert_prefix(&rows, &local, &format!("{what}: at {}", hex(at)));
        let due: Vec<&Acked> = out
            .acked
            .iter()
            .filter(|a| a.txid.is_some_and(|t| t <= at))
            .collect();
        let lost = missing(due, &rows);
        assert!(
            lost.is_empty(),
            "{what}: the restore at {} lacks writes answered with a TXID up to it: {lost:?}",
            hex(at)
        );
    }
    eprintln!(
        "{test}: {} acknowledged, {} answered SR001 under {faults:?}; {} replica files, {superseded} superseded compactions; {} connections through the proxy",
        out.acked.len(),
        out.not_confirmed.len(),
        listing.len(),
        proxy.accepted()
    );
}

// ---------------------------------------------------------------------------------------
// 4. Disk full on a file replica.
// ---------------------------------------------------------------------------------------

/// Wraps `cmd` so that it runs in a new user, mount and PID namespace (no root needed) with
/// a tmpfs of `size` mounted on `mount`; when it exits, the tmpfs's content is copied to
/// `copy` (the mount disappears with the namespace) and its exit status is passed on.
/// Killing the returned process kills everything in the namespace.
fn on_small_tmpfs(unshare: &Path, cmd: &Command, mount: &Path, size: &str, copy: &Path) -> Command {
    const SCRIPT: &str = r#"mount -t tmpfs -o size="$2" tmpfs "$1" || exit 97
m="$1"; c="$3"; shift 3
"$@"; s=$?
cp -a "$m" "$c"
exit $s"#;
    let mut w = Command::new(unshare);
    w.args([
        "--user",
        "--map-root-user",
        "--mount",
        "--pid",
        "--fork",
        "--kill-child",
        "sh",
        "-c",
        SCRIPT,
        "sh",
    ])
    .arg(mount)
    .arg(size)
    .arg(copy)
    .arg(cmd.get_program())
    .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => w.env(k, v),
            None => w.env_remove(k),
        };
    }
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_file_replica_fails_fast_and_loses_no_acknowledged_write() {
    let test = "a_full_disk_under_the_file_replica_fails_fast_and_loses_no_acknowledged_write";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    let Some(unshare) = require_tool(Tool::Unshare, test) else {
        return;
    };
    let Some(setup) = release(test, Setup::file()) else {
        return;
    };
    let replica = setup.dir.path().join("replica");
    let copy = setup.dir.path().join("replica-after");
    std::fs::create_dir_all(&replica).unwrap();
    let log = setup.dir.path().join("server.log");
    create_db(&setup.db, 1);
    let window = Duration::from_secs(3);
    let mut s = setup
        .spawn_or_log(|p, a| {
            let c = durable_cmd(&setup, p, a, 1000, &[(RETRY_WINDOW_ENV, "3s")]);
            let mut w = on_small_tmpfs(&unshare, &c, &replica, "1m", &copy);
            w.stdout(Stdio::null())
                .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
            w
        })
        .await;
    s.wait_replicated("").await;
    // Rows of 8 KiB of random hex: the 1 MiB replica fills after a hundred or so.
    let load = Load::start(&s, 8, REPLICATED, "full", 8192);
    let status = s.wait_exit(Duration::from_secs(120)).await;
    let out = load.join().await;
    out.assert_no_unexpected("a full replica disk");
    let log = setup.log();
    assert_ne!(status.code(), Some(97), "tmpfs mount failed: {log}");
    assert!(!status.success(), "exit status {status}: {log}");
    assert!(
        log.contains("No space left on device"),
        "the cause is logged: {log}"
    );
    assert!(log.contains("replication failed"), "{log}");
    assert!(!out.acked.is_empty(), "no write was acknowledged");
    let restored = litestream_restore(
        &ls,
        &format!("file://{}", copy.display()),
        &setup.dir.path().join("restored.db"),
        None,
    );
    assert_integrity(&restored);
    let rows = table_rows(&restored);
    let local = table_rows(&setup.db);
    assert_prefix(&rows, &local, "after the disk filled");
    let lost = missing(&out.acked, &rows);
    assert!(
        lost.is_empty(),
        "acknowledged writes lost: {:?}",
        lost.len()
    );
    let absent = missing_values(&out.not_confirmed, &local);
    assert!(
        absent.is_empty(),
        "writes answered SR001 are not even local: {absent:?}"
    );
    eprintln!(
        "{test}: exit {status}; {} acknowledged as replicated (all restored), {} answered SR001, {} unanswered; window {window:?}",
        out.acked.len(),
        out.not_confirmed.len(),
        out.unanswered
    );
    // The local disk is fine: the local sync goes on, so every SR001 names its TXID.
    out.assert_not_confirmed_name_their_txid("a full replica disk");
}

// ---------------------------------------------------------------------------------------
// 5. Positions: Sqlite-Rest-Txid and min-txid.
// ---------------------------------------------------------------------------------------

/// One POST with `prefer`; (id, TXID). Asserts 201 and the echoed durability.
async fn write_one(s: &Running, prefer: &str, v: &str) -> (i64, u64) {
    let r = s
        .client
        .post(format!("{}/t", s.base))
        .bearer_auth(s.token())
        .header("Prefer", prefer)
        .json(&serde_json::json!({ "v": v }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.text().await.unwrap();
    assert_eq!(status, 201, "{body}");
    let durability = prefer.split(", ").find(|p| p.starts_with("durability="));
    if let Some(d) = durability {
        let applied = headers
            .get("preference-applied")
            .map(|h| h.to_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(
            applied.contains(d),
            "Preference-Applied {applied:?} for {prefer:?}"
        );
    }
    let txid = headers
        .get("sqlite-rest-txid")
        .unwrap_or_else(|| panic!("no Sqlite-Rest-Txid on a write: {headers:?}"));
    let rows: Value = serde_json::from_str(&body).unwrap();
    (
        rows[0]["id"].as_i64().unwrap(),
        parse_txid(txid.to_str().unwrap()),
    )
}

/// A read of row `id` on a fresh connection (another node behind a load balancer would be
/// one), with `Prefer: min-txid` when given: status, the read's TXID, whether the row is in.
async fn read_row(s: &Running, id: i64, min_txid: Option<u64>) -> (u16, Option<u64>, bool, String) {
    let client = reqwest::Client::new();
    let mut r = client
        .get(format!("{}/t?id=eq.{id}", s.base))
        .bearer_auth(s.token());
    if let Some(t) = min_txid {
        r = r.header("Prefer", format!("min-txid={}", hex(t)));
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let txid = r
        .headers()
        .get("sqlite-rest-txid")
        .map(|h| parse_txid(h.to_str().unwrap()));
    let body = r.text().await.unwrap();
    let found = status == 200
        && serde_json::from_str::<Value>(&body)
            .map(|v| v.as_array().is_some_and(|a| a.len() == 1))
            .unwrap_or(false);
    (status, txid, found, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txids_increase_across_restarts_match_the_replica_and_min_txid_reads_see_the_write() {
    let test = "txids_increase_across_restarts_match_the_replica_and_min_txid_reads_see_the_write";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    let Some(setup) = release(test, Setup::file()) else {
        return;
    };
    create_db(&setup.db, 1);
    let serve = || setup.spawn_or_log(|p, a| durable_cmd(&setup, p, a, 1000, &[]));
    let mut written: Vec<(i64, u64)> = Vec::new();
    let mut last = 0u64;
    for (run, ending) in ["sigterm", "sigkill", "end"].into_iter().enumerate() {
        let mut s = serve().await;
        // Sequential writes, both durabilities: each commit after the previous one's TXID
        // was handed out, so each TXID is larger; a read with it sees the write.
        for i in 0..12 {
            let prefer = if i % 2 == 0 { REPLICATED } else { LOCAL };
            let (id, txid) = write_one(&s, prefer, &format!("r{run}-{i}")).await;
            assert!(
                txid > last,
                "run {run}, write {i}: TXID {} after {}",
                hex(txid),
                hex(last)
            );
            last = txid;
            written.push((id, txid));
            let (status, read_txid, found, body) = read_row(&s, id, Some(txid)).await;
            assert_eq!(status, 200, "{body}");
            assert!(
                found,
                "a read with min-txid {} misses row {id}: {body}",
                hex(txid)
            );
            let read_txid = read_txid.expect("no Sqlite-Rest-Txid on a read");
            assert!(
                read_txid >= txid,
                "read at {} after a write at {}",
                hex(read_txid),
                hex(txid)
            );
            // Without min-txid, a read that starts after the answer reflects it too.
            let (_, plain_txid, found, body) = read_row(&s, id, None).await;
            assert!(found, "{body}");
            assert!(plain_txid.unwrap() >= txid);
        }
        // Concurrent writers: TXIDs follow the commit order (ids), and every read with the
        // write's TXID sees it.
        let tasks: Vec<_> = (0..4)
            .map(|w| {
                let (base, token) = (s.base.clone(), s.token());
                let prefer = if w % 2 == 0 { REPLICATED } else { LOCAL };
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let mut got = Vec::new();
                    for i in 0..15 {
                        let r = client
                            .post(format!("{base}/t"))
                            .bearer_auth(&token)
                            .header("Prefer", prefer)
                            .json(&serde_json::json!({ "v": format!("r{run}-c{w}-{i}") }))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 201);
                        let txid = parse_txid(r.headers()["sqlite-rest-txid"].to_str().unwrap());
                        let rows: Value = r.json().await.unwrap();
                        let id = rows[0]["id"].as_i64().unwrap();
                        let reader = reqwest::Client::new();
                        let seen: Value = reader
                            .get(format!("{base}/t?id=eq.{id}"))
                            .bearer_auth(&token)
                            .header("Prefer", format!("min-txid={}", hex(txid)))
                            .send()
                            .await
                            .unwrap()
                            .json()
                            .await
                            .unwrap();
                        assert_eq!(
                            seen.as_array().map(Vec::len),
                            Some(1),
                            "row {id} at {}",
                            hex(txid)
                        );
                        got.push((id, txid));
                    }
                    got
                })
            })
            .collect();
        let mut concurrent = Vec::new();
        for t in tasks {
            concurrent.extend(t.await.unwrap());
        }
        concurrent.sort_unstable();
        for w in concurrent.windows(2) {
            assert!(w[0].1 <= w[1].1, "commit order {w:?} but TXIDs decrease");
        }
        assert!(
            concurrent[0].1 > last,
            "concurrent writes after TXID {}",
            hex(last)
        );
        last = concurrent.last().unwrap().1;
        written.extend(concurrent);

        // A TXID this server never handed out: the read waits the durability timeout, then
        // 503 SR003; a malformed one is 400 SR002.
        let (status, _, _, body) = read_row(&s, 1, Some(last + 0x1000)).await;
        assert_eq!(status, 503, "{body}");
        common::assert_error_shape(&serde_json::from_str(&body).unwrap(), "SR003");
        let r = s
            .client
            .get(format!("{}/t", s.base))
            .bearer_auth(s.token())
            .header("Prefer", "min-txid=xyz")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        common::assert_error_shape(&r.json().await.unwrap(), "SR002");

        match ending {
            "sigterm" => s.stop().await,
            "sigkill" => {
                s.child.kill().unwrap();
                s.child.wait().unwrap();
            }
            _ => {
                s.wait_replicated("").await;
                s.stop().await;
            }
        }
    }
    // Every TXID handed out lies within one replica file's range (L0 files are kept an hour).
    let listing = ls.ltx_list(&setup.url);
    let l0: Vec<(u64, u64)> = levels(&listing).remove(&0).unwrap_or_default();
    for (id, txid) in &written {
        assert!(
            l0.iter().any(|(min, max)| min <= txid && txid <= max),
            "row {id}: TXID {} is in no replica L0 file: {l0:x?}",
            hex(*txid)
        );
    }
    // And the replica restored at the end of the file holding a write's TXID holds it. (Not
    // at the TXID itself: an upload merges the L0 files pending at its start into one
    // object, so a TXID handed out may lie inside a replica file, and `litestream restore
    // -txid` restores only to a file's end.)
    for (i, (id, txid)) in written.iter().step_by(9).enumerate() {
        let end = l0
            .iter()
            .find(|(min, max)| min <= txid && txid <= max)
            .unwrap()
            .1;
        let rows = table_rows(&litestream_restore(
            &ls,
            &setup.url,
            &setup.dir.path().join(format!("at-{i}.db")),
            Some(end),
        ));
        assert!(
            rows.iter().any(|(r, _)| r == id),
            "the replica restored at {} lacks row {id} (TXID {})",
            hex(end),
            hex(*txid)
        );
    }
    let ids: HashMap<i64, u64> = written.iter().copied().collect();
    assert_eq!(ids.len(), written.len(), "an id written twice");
}

// ---------------------------------------------------------------------------------------
// 6. A restart racing its SIGKILLed predecessor's last upload.
// ---------------------------------------------------------------------------------------

/// docs/replication.md, "A restart racing its predecessor's last upload", with real
/// processes: the primary reaches S3 through a proxy that holds its next upload
/// (`NetFault::Hold`), commits more while that upload is held (synced to local L0 files,
/// waiting behind it), and is killed with SIGKILL. The restarted primary reaches S3
/// directly: it lists the replica without the held upload, so it uploads the transactions
/// again, in one file reaching further (`5-8` where its predecessor's is `5-6`); once that
/// is on the replica the proxy lets the predecessor's request, sent before the kill, through
/// to the server, and its file lands beside ours. The test waits until the replica shows
/// that file, the proof the race happened. The restarted primary must take it for its
/// predecessor's, not another primary's, and settle it: its compaction into level 1 leaves
/// its own uploads alone for `PREDECESSOR_GRACE` after its first upload following a start-up
/// that found local L0 files beyond the replica, so it lists the late file, keeps it and replaces its own overlapping
/// upload (level 0 is one history again, which followers wait for). It keeps running and
/// healthy, answers synchronous writes through several compactions, and the real Litestream
/// restores every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_racing_its_sigkilled_predecessors_last_upload_keeps_replicating() {
    let test = "a_restart_racing_its_sigkilled_predecessors_last_upload_keeps_replicating";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    let Some(ProxiedS3 {
        mut setup,
        proxy,
        direct,
    }) = proxied_s3(test, "race")
    else {
        return;
    };
    let mut old = serve_new(&setup, 5000, &[]).await;
    for i in 0..3 {
        write_one(&old, LOCAL, &format!("before-{i}")).await;
    }
    old.wait_replicated("").await;

    // The next upload is held in the network; what is committed after it waits behind it.
    proxy.set(NetFault::Hold);
    let (_, held) = write_one(&old, LOCAL, "held-0").await;
    write_one(&old, LOCAL, "held-1").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, behind) = write_one(&old, LOCAL, "behind-0").await;
    let (_, last) = write_one(&old, LOCAL, "behind-1").await;
    assert!(behind > held, "{behind} <= {held}");
    old.child.kill().unwrap();
    old.child.wait().unwrap();
    drop(old);

    // The restart, straight to S3.
    setup.url = direct.clone();
    setup.write_config("");
    let mut restarted = setup
        .spawn_or_log(|p, a| durable_cmd(&setup, p, a, 10_000, &[]))
        .await;
    let client = replication::open_client(
        &replication::parse_replica_url(&direct).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    // Once the restarted primary's first upload (through `last`) is on the replica, the
    // predecessor's request, sent before the kill, is let through.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .list(replication::Level::L0, Default::default())
        .await
        .unwrap()
        .iter()
        .any(|f| f.name.max.get() >= last)
    {
        assert!(
            Instant::now() < deadline,
            "the restarted server did not upload {}; its log:\n{}",
            hex(last),
            setup.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.set(NetFault::Pass);
    // The predecessor's file lands beside ours: two level-0 files overlap (theirs ends
    // first), until a level-1 compaction settles it (and says so).
    let settled_message = "holds the same transactions as its own first uploads";
    let overlap = async || {
        let files = client
            .list(replication::Level::L0, Default::default())
            .await
            .unwrap();
        let names: Vec<ltx::FileName> = files.iter().map(|f| f.name).collect();
        names.iter().find_map(|f| {
            names
                .iter()
                .any(|g| g != f && g.min <= f.max && f.min <= g.max && f.max < g.max)
                .then_some(f.to_string())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0;
    let late = loop {
        if let Some(name) = overlap().await {
            break name;
        }
        if setup.log().contains(settled_message) {
            break "(settled before this test saw it)".to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the predecessor's held upload (TXIDs before {}) never landed beside ours; level 0: {:?}; the restarted server's log:\n{}",
            hex(behind),
            client
                .list(replication::Level::L0, Default::default())
                .await
                .unwrap()
                .iter()
                .map(|f| f.name.to_string())
                .collect::<Vec<_>>(),
            setup.log()
        );
        write_one(&restarted, REPLICATED, &format!("after-{i}")).await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The restarted primary's compaction into level 1 leaves its own uploads alone for 10 s
    // after its first one (`PREDECESSOR_GRACE`), which the late file follows at once, so it
    // lists that file beside them and settles it: keeps it, replaces ours.
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut j = 0;
    while !setup.log().contains(settled_message) {
        assert!(
            Instant::now() < deadline,
            "the predecessor's {late} was not settled; the restarted server's log:\n{}",
            setup.log()
        );
        write_one(&restarted, REPLICATED, &format!("late-{j}")).await;
        j += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Synchronous writes through three more level-1 compactions (every 2 s).
    for k in 0..12 {
        write_one(&restarted, REPLICATED, &format!("settled-{k}")).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        restarted.child.try_wait().unwrap().is_none(),
        "the restarted server exited; its log:\n{}",
        setup.log()
    );
    let (status, health) = restarted.health().await;
    assert_eq!(status, 200, "{health}");
    let log = setup.log();
    for stop in ["another primary", "replication failed"] {
        assert!(!log.contains(stop), "{stop:?} in the log:\n{log}");
    }
    eprintln!(
        "{test}: the predecessor's {late} landed after the restart ({i} synchronous writes before it) and was settled ({j} after it)"
    );
    // One history is left in level 0: no two files overlap.
    let l0: Vec<ltx::FileName> = client
        .list(replication::Level::L0, Default::default())
        .await
        .unwrap()
        .iter()
        .map(|f| f.name)
        .collect();
    assert!(
        l0.windows(2).all(|w| w[1].min > w[0].max),
        "level 0 still overlaps: {l0:?}"
    );
    restarted.wait_replicated("").await;
    restarted.stop().await;
    let restored = litestream_restore(&ls, &direct, &setup.dir.path().join("raced.db"), None);
    assert_integrity(&restored);
    assert_eq!(table_rows(&restored), table_rows(&setup.db));
}
