//! Replication benchmark (run by `scripts/bench-replication`; not a test). Against one local
//! S3-compatible server (moto) and the same write load:
//!
//! 1. lag: a paced writer (one row per commit); each commit's WAL end offset and salts are
//!    recorded, the replicator talks to the server through a recording proxy that notes
//!    when each L0 file's PUT was answered (`replication/put_recorder.rs`), and each landed
//!    file's header is read after the load; a commit is durable once an L0 file with its
//!    salts covering its offset has landed. p50/p99 for sqlite-rest's replicator vs `litestream replicate` (defaults);
//!    the distributions are plotted to `target/bench/lag.svg` (`testkit::plot::latency_cdf`);
//! 2. throughput: the same writer unpaced, commits per second with our replicator, with
//!    `litestream replicate` beside it, and with no replication (the baseline); then the
//!    same three through the HTTP write API of the release binary (16 clients POSTing);
//! 3. durability: single-row POSTs from 32 connections against the release binary with
//!    replication off, asynchronous (the default: answered once committed locally) and
//!    synchronous (`--write-durability replicated`: answered once on the replica):
//!    throughput, p50/p90/p99 latency and object-store PUTs per second (from the server's
//!    `litestream_replica_operation_total`) per mode, ratios against "off" of the same
//!    round; with the asynchronous lag p99 at the paced rate of part 1, and the ceiling that
//!    bare PUTs to the same server set on any synchronous design ([`bare_puts`]). A plot (latency
//!    distribution and throughput per mode) goes to `target/bench/durability.svg`;
//! 4. restore: a ~200 MB database restored from the replica by `sqlite-rest restore` and by
//!    `litestream restore` (median of three each, alternating);
//! 5. read replicas (`replication/follower.rs`): a follower's read throughput against the
//!    primary's, its lag behind the primary's writes, and its object-store requests when
//!    idle.
//!
//! Ratios are against the baseline measured in the same run. Environment:
//! `BENCH_SECONDS` (per phase, default 6), `BENCH_RATE` (paced commits/s, default 200),
//! `BENCH_ROUNDS` (throughput and durability rounds, default 5), `BENCH_RESTORE_MB`
//! (default 200), `BENCH_ONLY` (`lag`, `throughput`, `http`, `durability`, `restore` or
//! `follow`: run one part), `BENCH_FOLLOW_RATE` (writes/s of the follower lag runs, default 20), `BENCH_FOLLOW_IDLE`
//! (seconds the idle follower is watched, default 240),
//! `BENCH_LAG_POLL=1` (the lag phases also list the replica every 5 ms, as they once timed
//! it, to see what that load on the S3 server does to the lag),
//! `BENCH_CLIENTS` (connections of the durability part, default 32),
//! `BENCH_COMPARE_BIN` (another build of `sqlite-rest`, e.g. of the commit before a change:
//! the HTTP rounds also run it with replication, and report its rate against ours),
//! `BENCH_LOG` (a `tracing` filter, e.g. `warn,replication=debug`: the in-process replicator
//! and the servers log JSON lines to stderr with it, each phase and round announced by a
//! `BENCH` line, for a breakdown of where a commit's time goes: the replicator's debug
//! events `sync done` and `ltx file uploaded` time each sync, checkpoint and upload).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use replication::Level;
use replication::restore::RestoreTarget;
use replication::restore::{self, RestoreOptions};
use replication::{CommitNotice, Replicator, ReplicatorOptions};
use replication::{Config, LoadOptions};
use replication::{ReadRange, ReplicaClient};
use rusqlite::Connection;
use testkit::litestream::Litestream;

#[path = "replication/follower.rs"]
mod follower;
#[path = "replication/put_recorder.rs"]
mod put_recorder;
use put_recorder::PutRecorder;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Baseline,
    Ours,
    Litestream,
}

/// One commit to trace: when, and where its frames end in which WAL generation.
#[derive(Debug, Clone, Copy)]
struct Traced {
    seq: u64,
    at: Instant,
    salt: (u32, u32),
    end: u64,
}

struct Run {
    commits: u64,
    secs: f64,
    lags: Vec<Duration>,
    /// Ours only: commit → the replicator's PUT of the file holding it returned (its own
    /// `replicated_seq`): the same PUTs the recorder times, seen from inside the replicator
    /// (after the proxy's hop back, and the progress notice).
    confirmed: Vec<Duration>,
    /// Ours only: commit → the local L0 file holding it was written (`synced_seq`): the
    /// part of the lag before the upload.
    synced: Vec<Duration>,
    /// Ours only: that file written → the PUT holding it returned (waiting for the upload in
    /// flight, then its own).
    uploaded: Vec<Duration>,
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A Litestream config for `db` replicating to `url` with Litestream's defaults.
fn config_yaml(db: &Path, url: &str) -> String {
    format!(
        "dbs:\n  - path: {}\n    replica:\n      url: {url}\n",
        db.display()
    )
}

fn open_writer(db: &Path, mode: Mode) -> Connection {
    let conn = Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
        .unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    if mode == Mode::Ours {
        // The replicator is the checkpointer.
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    }
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS books(id INTEGER PRIMARY KEY, title TEXT, author TEXT, price REAL, published INTEGER);\
         CREATE INDEX IF NOT EXISTS books_author ON books(author);",
    )
    .unwrap();
    conn
}

/// Inserts `rows` books (authors `author-0` … `author-996`) in one transaction.
fn seed_books(conn: &Connection, rows: u64) {
    conn.execute_batch("BEGIN").unwrap();
    let mut insert = conn
        .prepare("INSERT INTO books(title, author, price, published) VALUES (?1, ?2, ?3, ?4)")
        .unwrap();
    for i in 0..rows {
        insert
            .execute(rusqlite::params![
                format!("Title {i}"),
                format!("author-{}", i % 997),
                (i % 100) as f64 + 0.99,
                1900 + (i % 120) as i64
            ])
            .unwrap();
    }
    drop(insert);
    conn.execute_batch("COMMIT").unwrap();
}

fn wal_salt(db: &Path) -> (u32, u32) {
    let mut wal = db.as_os_str().to_os_string();
    wal.push("-wal");
    let bytes = std::fs::read(PathBuf::from(wal)).unwrap_or_default();
    if bytes.len() < 24 {
        return (0, 0);
    }
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// The write load: one row per commit, paced at `rate` commits/s (0 = as fast as possible),
/// for `secs`. `trace` records every commit's WAL position (paced runs).
fn write_load(
    db: &Path,
    mode: Mode,
    secs: f64,
    rate: u64,
    trace: bool,
    notify: Option<replication::ReplicationHandle>,
) -> (u64, f64, Vec<Traced>) {
    let mut conn = open_writer(db, mode);
    let frames = Arc::new(Mutex::new(0u32));
    {
        let frames = frames.clone();
        conn.wal_hook(Some(
            move |_: &mut rusqlite::hooks::Wal, n: std::ffi::c_int| {
                *frames.lock().unwrap() = n.max(0) as u32;
                Ok(())
            },
        ))
        .unwrap();
    }
    let page_size: u64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
        .unwrap() as u64;
    let mut stmt = conn
        .prepare("INSERT INTO books(title, author, price, published) VALUES (?1, ?2, ?3, ?4)")
        .unwrap();
    let start = Instant::now();
    let mut traced = Vec::new();
    let mut seq = 0u64;
    let mut salt = (0, 0);
    let mut last_frames = 0u32;
    while start.elapsed().as_secs_f64() < secs {
        seq += 1;
        stmt.execute((
            format!("Title number {seq} of the benchmark"),
            format!("Author {}", seq % 997),
            (seq % 100) as f64 + 0.99,
            1900 + (seq % 120) as i64,
        ))
        .unwrap();
        let n = *frames.lock().unwrap();
        if let Some(h) = &notify {
            h.notify_commit(CommitNotice { seq });
        }
        if trace {
            if n < last_frames || salt == (0, 0) {
                salt = wal_salt(db);
            }
            last_frames = n;
            traced.push(Traced {
                seq,
                at: Instant::now(),
                salt,
                end: 32 + u64::from(n) * (24 + page_size),
            });
        }
        if rate > 0 {
            let due = start + Duration::from_secs_f64(seq as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    (seq, start.elapsed().as_secs_f64(), traced)
}

/// Lists L0 every 5 ms (only keys after the newest seen, S3's start-after) until `stop`, as
/// the lag phases once timed the replica; with `BENCH_LAG_POLL=1` it runs beside the
/// recorder, to show what that load on the server does to the lag it measures.
async fn list_l0_every_5ms(client: Arc<dyn ReplicaClient>, stop: Arc<AtomicBool>) {
    let mut newest: Option<u64> = None;
    while !stop.load(Ordering::Relaxed) {
        let options = replication::ListOptions {
            seek: newest.map(|m| ltx::TxId(m + 1)),
            ..Default::default()
        };
        if let Ok(files) = client.list(Level::L0, options).await {
            newest = files.iter().map(|f| f.name.max.get()).max().or(newest);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A level-0 file that landed: when, its first TXID, and the WAL its header names (salts,
/// offset, size).
struct Landed {
    at: Instant,
    min: u64,
    salt: (u32, u32),
    wal_end: u64,
}

/// The L0 files the recorder saw land, with the WAL range each one's header names (read after
/// the load, straight from the server).
async fn landed_files(client: &dyn ReplicaClient, landed: &[(Instant, String)]) -> Vec<Landed> {
    let mut out = Vec::new();
    for (at, name) in landed {
        let Ok(name) = name.parse::<ltx::FileName>() else {
            continue;
        };
        if let Ok(b) = client
            .read(Level::L0, name, ReadRange::Bounded { start: 0, end: 100 })
            .await
            && b.len() == 100
        {
            let be64 = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().unwrap());
            let be32 = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
            out.push(Landed {
                at: *at,
                min: name.min.get(),
                salt: (be32(64), be32(68)),
                wal_end: be64(48) + be64(56),
            });
        }
    }
    out
}

/// Lag of each traced commit: until the first L0 file whose WAL range (same salts) covers its
/// end offset landed. The last commits before a checkpoint are in no file of their WAL
/// generation: the sync that checkpoints puts them in its file, whose header names the WAL
/// after the checkpoint; they are in the file after the last one of their generation, so that
/// file's landing counts for them (every commit is traced, none is left out).
fn lags(traced: &[Traced], files: &[Landed]) -> Vec<Duration> {
    traced
        .iter()
        .filter_map(|c| {
            let covering = files
                .iter()
                .filter(|f| f.salt == c.salt && f.wal_end >= c.end)
                .map(|f| f.at)
                .min();
            let next_generation = || {
                let last = files
                    .iter()
                    .filter(|f| f.salt == c.salt)
                    .map(|f| f.min)
                    .max()?;
                files
                    .iter()
                    .filter(|f| f.min > last)
                    .min_by_key(|f| f.min)
                    .map(|f| f.at)
            };
            covering
                .or_else(next_generation)
                .map(|t| t.saturating_duration_since(c.at))
        })
        .collect()
}

fn pct(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let mut s = v.to_vec();
    s.sort();
    s[((s.len() - 1) as f64 * p).round() as usize]
}

async fn client_for(url: &str) -> Arc<dyn ReplicaClient> {
    let target = replication::parse_replica_url(url).unwrap();
    replication::open_client(&target, &Default::default())
        .await
        .unwrap()
}

/// One phase (paced with tracing, or unpaced) under one mode, on a fresh database.
async fn phase(ls: &Litestream, s3: &testkit::S3, mode: Mode, secs: f64, rate: u64) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    drop(open_writer(&db, Mode::Baseline));
    let bucket = s3.create_bucket("bench");
    let trace = rate > 0 && mode != Mode::Baseline;
    // Traced phases replicate through the recording proxy, which notes when each L0 file
    // landed.
    let recorder = if trace {
        Some(PutRecorder::start(&s3.endpoint).await)
    } else {
        None
    };
    let url = match &recorder {
        Some(r) => testkit::S3 {
            endpoint: r.endpoint.clone(),
            ..s3.clone()
        }
        .replica_url(&bucket, "db"),
        None => s3.replica_url(&bucket, "db"),
    };
    let mut ours = None;
    let mut theirs = None;
    match mode {
        Mode::Baseline => {}
        Mode::Ours => {
            let config = Config::parse(&config_yaml(&db, &url), LoadOptions::default()).unwrap();
            let opts = ReplicatorOptions::new(config, &db).unwrap();
            ours = Some(Replicator::start(opts).await.unwrap());
        }
        Mode::Litestream => {
            let config = dir.path().join("ls.yml");
            std::fs::write(&config, config_yaml(&db, &url)).unwrap();
            let running = ls.spawn_replicate(&config);
            assert!(running.wait_for_log("replicating to", Duration::from_secs(30)));
            theirs = Some(running);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let lister = (trace && std::env::var("BENCH_LAG_POLL").is_ok_and(|v| v == "1")).then(|| {
        let (stop, direct) = (stop.clone(), s3.replica_url(&bucket, "db"));
        tokio::spawn(async move { list_l0_every_5ms(client_for(&direct).await, stop).await })
    });
    let handle = ours.as_ref().map(|r| r.handle());
    // The replicator's own view: when each notified commit's upload returned.
    let confirmations = handle.clone().filter(|_| trace).map(|h| {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut rx = h.subscribe();
            let mut out = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if tokio::time::timeout(Duration::from_millis(50), rx.changed())
                    .await
                    .is_ok_and(|r| r.is_err())
                {
                    break;
                }
                let p = *rx.borrow_and_update();
                if out
                    .last()
                    .is_none_or(|&(_, s, r)| s < p.synced_seq || r < p.replicated_seq)
                {
                    out.push((Instant::now(), p.synced_seq, p.replicated_seq));
                }
            }
            out
        })
    });
    let db2 = db.clone();
    let (commits, took, traced) =
        tokio::task::spawn_blocking(move || write_load(&db2, mode, secs, rate, trace, handle))
            .await
            .unwrap();
    // Let the last commits land (Litestream's default intervals are 1 s).
    if trace {
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(l) = lister {
        l.await.unwrap();
    }
    let files = match &recorder {
        Some(r) => {
            let direct = client_for(&s3.replica_url(&bucket, "db")).await;
            landed_files(direct.as_ref(), &r.landed()).await
        }
        None => Vec::new(),
    };
    let seen = match confirmations {
        Some(c) => c.await.unwrap(),
        None => Vec::new(),
    };
    // Commit → the first notice whose `which` sequence number covers it.
    let after = |which: fn(&(Instant, u64, u64)) -> u64| -> Vec<Duration> {
        traced
            .iter()
            .filter_map(|t| {
                seen.iter()
                    .find(|e| which(e) >= t.seq)
                    .map(|e| e.0.saturating_duration_since(t.at))
            })
            .collect()
    };
    let confirmed = after(|e| e.2);
    let synced = after(|e| e.1);
    let uploaded = traced
        .iter()
        .filter_map(|t| {
            let s = seen.iter().find(|e| e.1 >= t.seq)?;
            let r = seen.iter().find(|e| e.2 >= t.seq)?;
            Some(r.0.saturating_duration_since(s.0))
        })
        .collect();
    if let Some(r) = ours {
        r.shutdown().await.unwrap();
    }
    if let Some(t) = theirs {
        t.stop();
    }
    Run {
        commits,
        secs: took,
        lags: lags(&traced, &files),
        confirmed,
        synced,
        uploaded,
    }
}

/// A running `sqlite-rest serve` (`SQLITEREST_BIN`) over a database with a table `books`,
/// answering on `port` (API) and `admin` (`/metrics`).
struct Server {
    child: std::process::Child,
    port: u16,
    admin: u16,
    /// The replica's URL (empty when the server does not replicate).
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts the server; with `replicate`, replicating to a fresh bucket with `extra` flags.
    /// Also returns its Litestream config (for `litestream replicate` beside it).
    async fn start(
        bin: &Path,
        s3: &testkit::S3,
        replicate: bool,
        extra: &[&str],
    ) -> (Server, PathBuf) {
        Server::start_seeded(bin, s3, replicate, extra, 0).await
    }

    /// [`Server::start`] over a database seeded with `rows` books first.
    async fn start_seeded(
        bin: &Path,
        s3: &testkit::S3,
        replicate: bool,
        extra: &[&str],
        rows: u64,
    ) -> (Server, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("bench.db");
        seed_books(&open_writer(&db, Mode::Baseline), rows);
        let bucket = s3.create_bucket("bench-http");
        let url = s3.replica_url(&bucket, "db");
        let config = dir.path().join("litestream.yml");
        std::fs::write(&config, config_yaml(&db, &url)).unwrap();
        let mut server = Server::spawn(bin, &db, |cmd| {
            cmd.args(extra);
            if replicate {
                cmd.arg("--replication-enabled")
                    .arg("--replication-config")
                    .arg(&config);
            }
        })
        .await;
        server._dir = Some(dir);
        if replicate {
            server.url = url;
        }
        (server, config)
    }

    /// Spawns `serve` on `db` without auth, exposing `books`, with the flags `configure` adds;
    /// returns once `/ready` answers 200.
    async fn spawn(bin: &Path, db: &Path, configure: impl FnOnce(&mut Command)) -> Server {
        let (port, admin) = (testkit::free_port(), testkit::free_port());
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--db-dsn")
            .arg(db)
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{admin}")])
            .args(["--insecure-disable-auth", "--security-allow-table", "books"])
            .stdout(std::process::Stdio::null());
        match std::env::var("BENCH_LOG") {
            Ok(filter) => cmd.args(["--log-level", &filter]),
            Err(_) => cmd
                .args(["--log-level", "warn"])
                .stderr(std::process::Stdio::null()),
        };
        configure(&mut cmd);
        let child = cmd.spawn().unwrap();
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !client
            .get(format!("http://127.0.0.1:{admin}/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            assert!(Instant::now() < deadline, "sqlite-rest did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Server {
            child,
            port,
            admin,
            url: String::new(),
            _dir: None,
        }
    }

    /// Object-store PUTs so far (`litestream_replica_operation_total{operation="PUT"}`).
    async fn puts(&self) -> u64 {
        self.operations(|l| l.contains("operation=\"PUT\"")).await
    }

    /// Object-store requests so far whose `litestream_replica_operation_total` line passes
    /// `keep`.
    async fn operations(&self, keep: impl Fn(&str) -> bool) -> u64 {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with("litestream_replica_operation_total{") && keep(l))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// What one HTTP write load achieved.
struct Load {
    acked: u64,
    failed: u64,
    secs: f64,
    /// Of every acknowledged write.
    latencies: Vec<Duration>,
}

/// `clients` concurrent clients (one connection each) POST one row per request to `port`
/// for `secs`.
async fn post_load(port: u16, clients: usize, secs: f64) -> Load {
    let client = reqwest::Client::new();
    let stop_at = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let client = client.clone();
            let target = format!("http://127.0.0.1:{port}/books");
            tokio::spawn(async move {
                let (mut failed, mut latencies) = (0u64, Vec::new());
                let mut i = 0u64;
                while Instant::now() < stop_at {
                    i += 1;
                    let body = format!(
                        r#"{{"title":"Title {c}-{i} of the benchmark","author":"Author {}","price":{}.99,"published":{}}}"#,
                        i % 997,
                        i % 100,
                        1900 + i % 120
                    );
                    let sent = Instant::now();
                    let r = client
                        .post(&target)
                        .header("Content-Type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    if r.is_ok_and(|r| r.status() == 201) {
                        latencies.push(sent.elapsed());
                    } else {
                        failed += 1;
                    }
                }
                (failed, latencies)
            })
        })
        .collect();
    let mut load = Load {
        acked: 0,
        failed: 0,
        secs: 0.0,
        latencies: Vec::new(),
    };
    for t in tasks {
        let (failed, latencies) = t.await.unwrap();
        load.failed += failed;
        load.acked += latencies.len() as u64;
        load.latencies.extend(latencies);
    }
    load.secs = started.elapsed().as_secs_f64();
    load
}

/// The HTTP write load against the real `sqlite-rest serve` (`SQLITEREST_BIN`): `clients`
/// concurrent clients POST one row each request for `secs`; returns acknowledged writes per
/// second. `Ours`: `--replication-enabled`; `Litestream`: no replication in the server and
/// `litestream replicate` beside it; `Baseline`: neither.
async fn http_phase(
    bin: &Path,
    ls: &Litestream,
    s3: &testkit::S3,
    mode: Mode,
    secs: f64,
    clients: usize,
) -> f64 {
    let (server, config) = Server::start(bin, s3, mode == Mode::Ours, &[]).await;
    let theirs = (mode == Mode::Litestream).then(|| {
        let running = ls.spawn_replicate(&config);
        assert!(running.wait_for_log("replicating to", Duration::from_secs(30)));
        running
    });
    let load = post_load(server.port, clients, secs).await;
    server.stop();
    if let Some(t) = theirs {
        t.stop();
    }
    load.acked as f64 / load.secs
}

/// The write durability a server runs with, in the durability comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// No replication.
    Off,
    /// Replication, writes answered once committed locally (the default).
    Async,
    /// `--write-durability replicated`: answered once on the replica.
    Sync,
}

impl Durability {
    const ALL: [Durability; 3] = [Durability::Off, Durability::Async, Durability::Sync];

    fn label(self) -> &'static str {
        match self {
            Durability::Off => "replication off",
            Durability::Async => "asynchronous",
            Durability::Sync => "synchronous",
        }
    }

    /// Line colour in the plot.
    fn colour(self) -> &'static str {
        match self {
            Durability::Off => "#7f7f7f",
            Durability::Async => "#1f77b4",
            Durability::Sync => "#d62728",
        }
    }
}

/// One mode's results over every round.
#[derive(Default)]
struct DurabilityRuns {
    /// Acknowledged writes per second, per round.
    rates: Vec<f64>,
    /// Object-store PUTs per second, per round.
    puts: Vec<f64>,
    /// Rate / that round's rate with replication off.
    ratios: Vec<f64>,
    failed: u64,
    /// Every acknowledged write's latency, all rounds.
    latencies: Vec<Duration>,
}

fn median_f64(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Synchronous vs asynchronous vs no replication through the release binary: `clients`
/// connections POSTing single rows, `rounds` rounds interleaving the modes, each mode on a
/// fresh database and bucket.
async fn durability_runs(
    bin: &Path,
    s3: &testkit::S3,
    secs: f64,
    clients: usize,
    rounds: u64,
) -> Vec<(Durability, DurabilityRuns)> {
    let mut runs: Vec<(Durability, DurabilityRuns)> = Durability::ALL
        .iter()
        .map(|d| (*d, DurabilityRuns::default()))
        .collect();
    for round in 1..=rounds {
        let mut off = 0.0;
        for (mode, r) in runs.iter_mut() {
            let extra: &[&str] = match mode {
                Durability::Sync => &["--write-durability", "replicated"],
                _ => &[],
            };
            eprintln!("BENCH durability round {round} {}", mode.label());
            let (server, _) = Server::start(bin, s3, *mode != Durability::Off, extra).await;
            let puts_before = server.puts().await;
            let load = post_load(server.port, clients, secs).await;
            let puts = server.puts().await - puts_before;
            server.stop();
            let rate = load.acked as f64 / load.secs;
            if *mode == Durability::Off {
                off = rate;
            }
            let puts_per_s = puts as f64 / load.secs;
            println!(
                "durability round {round}: {:<15} {rate:>7.0} writes/s ({:.3} of off), {} failed, {puts_per_s:.1} PUTs/s, p50 {:.1} ms, p99 {:.1} ms",
                mode.label(),
                rate / off,
                load.failed,
                ms(pct(&load.latencies, 0.5)),
                ms(pct(&load.latencies, 0.99)),
            );
            r.rates.push(rate);
            r.puts.push(puts_per_s);
            r.ratios.push(rate / off);
            r.failed += load.failed;
            r.latencies.extend(load.latencies);
        }
    }
    runs
}

/// Where the plot goes: `target/bench/` of the workspace (or of `CARGO_TARGET_DIR`).
fn plot_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap_or(Path::new("."));
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("bench")
}

/// The plot as plain SVG: left, each mode's latency distribution (share of writes answered
/// within a latency, log scale); right, each mode's throughput (median of the rounds) with
/// its object-store PUTs per second.
/// The local S3 server the bench runs against (`BENCH_S3`, set by scripts/bench-replication).
fn s3_server() -> String {
    std::env::var("BENCH_S3").unwrap_or_else(|_| "moto".into())
}

fn durability_svg(runs: &[(Durability, DurabilityRuns)], clients: usize) -> String {
    use std::fmt::Write as _;
    let (w, h) = (960.0, 420.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="{w}" height="{h}" fill="white"/>
<text x="{}" y="22" font-size="15" text-anchor="middle">sqlite-rest: single-row POSTs from {clients} connections, local S3 server ({})</text>
"#,
        w / 2.0,
        s3_server()
    );
    // Left panel: latency CDF, x = log10(ms) from 0.1 ms to the largest p99.9 (at least 100 ms).
    let (x0, y0, pw, ph) = (60.0, 50.0, 520.0, 310.0);
    let top_ms = runs
        .iter()
        .map(|(_, r)| ms(pct(&r.latencies, 0.999)))
        .fold(100.0f64, f64::max);
    let (lo, hi) = (0.1f64.log10(), top_ms.log10().ceil());
    let x_of = |v: f64| x0 + (v.max(0.1).log10() - lo) / (hi - lo) * pw;
    // y: the share of writes on a tail scale (-log10 of the rest: 90 % is 1, 99 % is 2,
    // 99.9 % is 3), so the slow tail is as readable as the median.
    let tail = |q: f64| (-(1.0 - q).max(1e-3).log10()).clamp(0.0, 3.0);
    let y_of = |q: f64| y0 + ph - tail(q) / 3.0 * ph;
    let _ = writeln!(
        svg,
        r#"<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let mut decade = lo;
    while decade <= hi + 1e-9 {
        let v = 10f64.powf(decade);
        let x = x_of(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{v} ms</text>"##,
            y0 + ph,
            y0 + ph + 16.0
        );
        decade += 1.0;
    }
    for q in [0.0, 0.5, 0.9, 0.99, 0.999] {
        let y = y_of(q);
        let _ = writeln!(
            svg,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}%</text>"##,
            x0 + pw,
            x0 - 6.0,
            y + 4.0,
            (q * 1000.0).round() / 10.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">write latency (log scale); up: share of acknowledged writes answered within it</text>"#,
        x0 + pw / 2.0,
        y0 + ph + 34.0
    );
    for (i, (mode, r)) in runs.iter().enumerate() {
        let mut sorted = r.latencies.clone();
        sorted.sort();
        let n = sorted.len().max(1);
        // At most ~2000 points per line.
        let step = (n / 2000).max(1);
        let points: Vec<String> = sorted
            .iter()
            .enumerate()
            .filter(|(k, _)| k % step == 0 || k + 1 == n)
            .map(|(k, d)| {
                format!(
                    "{:.1},{:.1}",
                    x_of(ms(*d)),
                    y_of((k as f64 + 0.5) / n as f64)
                )
            })
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            mode.colour(),
            points.join(" ")
        );
        let ly = y0 + 16.0 + i as f64 * 16.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"/><text x="{}" y="{}">{} (p50 {:.1} ms, p99 {:.1} ms)</text>"#,
            x0 + 10.0,
            x0 + 30.0,
            mode.colour(),
            x0 + 36.0,
            ly + 4.0,
            mode.label(),
            ms(pct(&r.latencies, 0.5)),
            ms(pct(&r.latencies, 0.99))
        );
    }
    // Right panel: throughput bars.
    let (bx, bw) = (660.0, 260.0);
    let max_rate = runs
        .iter()
        .map(|(_, r)| median_f64(&r.rates))
        .fold(1.0f64, f64::max);
    let _ = writeln!(
        svg,
        r#"<line x1="{bx}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        y0 + ph,
        bx + bw,
        y0 + ph
    );
    let slot = bw / runs.len().max(1) as f64;
    for (i, (mode, r)) in runs.iter().enumerate() {
        let rate = median_f64(&r.rates);
        let bh = rate / max_rate * (ph - 40.0);
        let x = bx + i as f64 * slot + slot * 0.15;
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{rate:.0}/s</text><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{:.1} PUTs/s</text><text x="{:.1}" y="{}" text-anchor="middle" font-size="11">{}</text>"#,
            y0 + ph - bh,
            slot * 0.7,
            mode.colour(),
            x + slot * 0.35,
            y0 + ph - bh - 18.0,
            x + slot * 0.35,
            y0 + ph - bh - 5.0,
            median_f64(&r.puts),
            x + slot * 0.35,
            y0 + ph + 16.0,
            mode.label()
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">acknowledged writes per second (median of rounds)</text>"#,
        bx + bw / 2.0,
        y0 + ph + 34.0
    );
    svg.push_str("</svg>\n");
    svg
}

/// Builds a database of about `mb` MB and replicates it with our replicator.
async fn build_restore_replica(s3: &testkit::S3, dir: &Path, mb: u64) -> String {
    let db = dir.join("big.db");
    {
        let conn = Connection::open(&db).unwrap();
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .unwrap();
        conn.execute_batch(
            "CREATE TABLE docs(id INTEGER PRIMARY KEY, title TEXT, body TEXT, blob BLOB);\
             CREATE INDEX docs_title ON docs(title);",
        )
        .unwrap();
        let rows = mb * 1_000_000 / 1100;
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
             INSERT INTO docs(title, body, blob) SELECT 'document ' || i, \
             printf('%.600c', char(65 + i % 26)) || ' body text of document ' || i, randomblob(300) FROM n",
            [rows as i64],
        )
        .unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let bucket = s3.create_bucket("bench-restore");
    let url = s3.replica_url(&bucket, "db");
    let config = Config::parse(&config_yaml(&db, &url), LoadOptions::default()).unwrap();
    let r = Replicator::start(ReplicatorOptions::new(config, &db).unwrap())
        .await
        .unwrap();
    r.sync_and_wait().await.unwrap();
    r.shutdown().await.unwrap();
    url
}

/// Our restore: the `sqlite-rest restore` command when `SQLITEREST_BIN` names the binary
/// (as `scripts/bench-replication` does), else the library call it runs.
async fn our_restore(url: &str, out: &Path) -> Duration {
    let _ = std::fs::remove_file(out);
    let started = Instant::now();
    if let Some(bin) = std::env::var_os("SQLITEREST_BIN") {
        let o = std::process::Command::new(bin)
            .args(["restore", "-o"])
            .arg(out)
            .arg(url)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        return started.elapsed();
    }
    let client = client_for(url).await;
    let plan = restore::plan(client.as_ref(), RestoreTarget::Latest, true)
        .await
        .unwrap();
    restore::restore(&client, &plan, &RestoreOptions::new(out))
        .await
        .unwrap();
    started.elapsed()
}

fn their_restore(ls: &Litestream, url: &str, out: &Path) -> Duration {
    let _ = std::fs::remove_file(out);
    let started = Instant::now();
    let o = ls.restore(url, out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    started.elapsed()
}

/// Rates of the baseline, ours and Litestream, round by round.
#[derive(Default)]
struct Rounds {
    base: Vec<f64>,
    /// Ours / baseline.
    ours: Vec<f64>,
    /// Litestream / baseline.
    theirs: Vec<f64>,
}

impl Rounds {
    /// Records and prints one round's (baseline, ours, Litestream) rates in `unit`.
    fn push(&mut self, what: &str, round: u64, unit: &str, (b, o, t): (f64, f64, f64)) {
        println!(
            "{what} round {round}: baseline {b:.0}, ours {o:.0} ({:.3}), litestream {t:.0} ({:.3}) {unit}",
            o / b,
            t / b
        );
        self.base.push(b);
        self.ours.push(o / b);
        self.theirs.push(t / b);
    }

    /// The median baseline rate and the median ratios of ours and Litestream.
    fn medians(self) -> (f64, f64, f64) {
        let med = |mut v: Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        (med(self.base), med(self.ours), med(self.theirs))
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(ls) = Litestream::require("bench-replication") else {
        return;
    };
    let Some(s3) = testkit::require_s3("bench-replication") else {
        return;
    };
    if let Ok(filter) = std::env::var("BENCH_LOG") {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let secs = env_or("BENCH_SECONDS", 6) as f64;
    let rate = env_or("BENCH_RATE", 200);
    let mb = env_or("BENCH_RESTORE_MB", 200);
    println!(
        "replication benchmark: {secs} s per phase, paced at {rate} commits/s, restore of ~{mb} MB, {} at {}",
        s3_server(),
        s3.endpoint
    );

    // BENCH_ONLY=lag|throughput|http|durability|restore|follow runs one part.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only == part;
    let mut lag_rows = [(Mode::Ours, Duration::ZERO, Duration::ZERO); 2];
    let mut lag_series: Vec<(String, Vec<f64>)> = Vec::new();
    for (i, mode) in [Mode::Ours, Mode::Litestream].into_iter().enumerate() {
        if !run("lag") {
            break;
        }
        eprintln!("BENCH lag {mode:?}");
        let r = phase(&ls, &s3, mode, secs, rate).await;
        println!(
            "lag  {mode:?}: {} commits traced, {} landed, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            r.commits,
            r.lags.len(),
            ms(pct(&r.lags, 0.5)),
            ms(pct(&r.lags, 0.99)),
            ms(pct(&r.lags, 1.0))
        );
        if !r.confirmed.is_empty() {
            println!(
                "lag  {mode:?} as the replicator saw its uploads return: {} commits, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                r.confirmed.len(),
                ms(pct(&r.confirmed, 0.5)),
                ms(pct(&r.confirmed, 0.99)),
                ms(pct(&r.confirmed, 1.0))
            );
            println!(
                "lag  {mode:?} of which commit → local L0 file: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                ms(pct(&r.synced, 0.5)),
                ms(pct(&r.synced, 0.99)),
                ms(pct(&r.synced, 1.0))
            );
            println!(
                "lag  {mode:?} of which local L0 file → its PUT returned: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                ms(pct(&r.uploaded, 0.5)),
                ms(pct(&r.uploaded, 0.99)),
                ms(pct(&r.uploaded, 1.0))
            );
        }
        lag_rows[i] = (mode, pct(&r.lags, 0.5), pct(&r.lags, 0.99));
        let samples = |lags: &[Duration]| lags.iter().map(|d| ms(*d)).collect::<Vec<f64>>();
        let name = match mode {
            Mode::Ours => "sqlite-rest, PUT answered by S3",
            _ => "Litestream 0.5.17, PUT answered by S3",
        };
        lag_series.push((name.to_string(), samples(&r.lags)));
        if !r.confirmed.is_empty() {
            lag_series.push((
                "sqlite-rest, its PUT returned".to_string(),
                samples(&r.confirmed),
            ));
        }
    }
    if !lag_series.is_empty() {
        let dir = plot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let plot = dir.join("lag.svg");
        let title = format!(
            "replication lag, commit -> on S3 ({}), {rate} commits/s for {secs} s",
            s3_server()
        );
        testkit::plot::latency_cdf(&plot, &title, &lag_series).unwrap();
        println!("lag plot: {}", plot.display());
    }
    // Throughput: rounds interleaving the modes, so the machine's noise spreads over all of
    // them; each round's ratios are against that round's baseline, and the median is kept.
    let rounds = env_or("BENCH_ROUNDS", 5);
    let mut tput = Rounds::default();
    for round in 1..=rounds {
        if !run("throughput") {
            tput.base.push(1.0);
            tput.ours.push(0.0);
            tput.theirs.push(0.0);
            break;
        }
        let mut cps = BTreeMap::new();
        for mode in [Mode::Baseline, Mode::Ours, Mode::Litestream] {
            let r = phase(&ls, &s3, mode, secs, 0).await;
            cps.insert(format!("{mode:?}"), r.commits as f64 / r.secs);
        }
        let (b, o, t) = (cps["Baseline"], cps["Ours"], cps["Litestream"]);
        tput.push("tput", round, "commits/s", (b, o, t));
    }
    let (base, ours, theirs) = tput.medians();

    // The same comparison through the HTTP write API of the release binary.
    let mut http = None;
    if let (Some(bin), true) = (std::env::var_os("SQLITEREST_BIN"), run("http")) {
        let bin = PathBuf::from(bin);
        let other = std::env::var_os("BENCH_COMPARE_BIN").map(PathBuf::from);
        let mut rates = Rounds::default();
        let mut versus_other = Vec::new();
        for round in 1..=rounds {
            let b = http_phase(&bin, &ls, &s3, Mode::Baseline, secs, 16).await;
            let o = http_phase(&bin, &ls, &s3, Mode::Ours, secs, 16).await;
            if let Some(other) = &other {
                let c = http_phase(other, &ls, &s3, Mode::Ours, secs, 16).await;
                println!(
                    "http round {round}: the other build {c:.0} writes/s ({:.3} of the baseline); ours / other {:.3}",
                    c / b,
                    o / c
                );
                versus_other.push(o / c);
            }
            let t = http_phase(&bin, &ls, &s3, Mode::Litestream, secs, 16).await;
            rates.push("http", round, "writes/s", (b, o, t));
        }
        if !versus_other.is_empty() {
            versus_other.sort_by(|a, b| a.total_cmp(b));
            println!(
                "http: ours / the other build, median of {rounds} rounds: {:.3} (rounds {versus_other:.3?})",
                versus_other[versus_other.len() / 2]
            );
        }
        http = Some(rates.medians());
    }

    // Synchronous vs asynchronous vs no replication, through the release binary.
    let mut durability = None;
    if let (Some(bin), true) = (std::env::var_os("SQLITEREST_BIN"), run("durability")) {
        let clients = env_or("BENCH_CLIENTS", 32) as usize;
        let put = bare_puts(&s3, 200).await;
        let runs = durability_runs(Path::new(&bin), &s3, secs, clients, rounds).await;
        let lag_p99 = if run("lag") {
            lag_rows[0].2
        } else {
            let r = phase(&ls, &s3, Mode::Ours, secs, rate).await;
            pct(&r.lags, 0.99)
        };
        let dir = plot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let plot = dir.join("durability.svg");
        std::fs::write(&plot, durability_svg(&runs, clients)).unwrap();
        durability = Some((runs, lag_p99, plot, clients, put));
    }

    // Read replicas: a follower of the replica against the primary.
    if let (Some(bin), true) = (std::env::var_os("SQLITEREST_BIN"), run("follow")) {
        let (rate, idle) = (
            env_or("BENCH_FOLLOW_RATE", 20),
            env_or("BENCH_FOLLOW_IDLE", 240),
        );
        follower::run(Path::new(&bin), &s3, secs, rounds, rate, idle).await;
    }

    let dir = tempfile::tempdir().unwrap();
    let url = if run("restore") {
        build_restore_replica(&s3, dir.path(), mb).await
    } else {
        String::new()
    };
    let out = dir.path().join("restored.db");
    let mut ours_t = vec![Duration::ZERO];
    let mut theirs_t = vec![Duration::from_secs(1)];
    for _ in 0..if run("restore") { 3 } else { 0 } {
        ours_t.push(our_restore(&url, &out).await);
        theirs_t.push(their_restore(&ls, &url, &out));
    }
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    let (ro, rt) = (median(ours_t), median(theirs_t));

    if !["", "lag", "throughput", "http", "restore"].contains(&only.as_str()) {
        if let Some((runs, lag_p99, plot, clients, put)) = durability {
            print_durability(&runs, lag_p99, rate, rounds, clients, &put);
            println!("plot: {}", plot.display());
        }
        return;
    }
    println!();
    println!("| measure | sqlite-rest | litestream 0.5.17 | ratio |");
    println!("|---|---|---|---|");
    let (o, t) = (lag_rows[0], lag_rows[1]);
    println!(
        "| lag p50 commit → S3 | {:.0} ms | {:.0} ms | {:.3} |",
        ms(o.1),
        ms(t.1),
        ms(o.1) / ms(t.1)
    );
    println!(
        "| lag p99 commit → S3 | {:.0} ms | {:.0} ms | {:.3} |",
        ms(o.2),
        ms(t.2),
        ms(o.2) / ms(t.2)
    );
    println!(
        "| write throughput vs no replication ({base:.0} commits/s), median of {rounds} rounds | {ours:.3} | {theirs:.3} | |"
    );
    if let Some((b, o, t)) = http {
        println!(
            "| HTTP POST throughput vs no replication ({b:.0} writes/s, 16 clients), median of {rounds} rounds | {o:.3} | {t:.3} | |"
        );
    }
    println!(
        "| restore of {:.0} MB from S3 | {:.2} s | {:.2} s | {:.3} |",
        size as f64 / 1e6,
        ro.as_secs_f64(),
        rt.as_secs_f64(),
        ro.as_secs_f64() / rt.as_secs_f64()
    );
    if let Some((runs, lag_p99, plot, clients, put)) = durability {
        print_durability(&runs, lag_p99, rate, rounds, clients, &put);
        println!("plot: {}", plot.display());
    }
}

/// `n` conditional PUTs of a 4 KiB level-0 file, one after another, to a fresh bucket (as
/// the replicator writes each upload): each one's round trip. The baseline of the
/// synchronous mode's ceiling: a synchronous write is answered only after a PUT that started
/// after its commit returned, so its latency is at least one PUT's, and by Little's law
/// `clients` connections complete at most `clients / mean PUT` writes a second, however
/// the writes are batched or pipelined.
async fn bare_puts(s3: &testkit::S3, n: u64) -> Vec<Duration> {
    let client = client_for(&s3.replica_url(&s3.create_bucket("bench-put"), "db")).await;
    let data = bytes::Bytes::from(vec![7u8; 4096]);
    let mut out = Vec::new();
    for i in 1..=n {
        let name = ltx::FileName::new(ltx::TxId(i), ltx::TxId(i));
        let started = Instant::now();
        client
            .create_bytes(Level::L0, name, data.clone(), chrono::Utc::now())
            .await
            .unwrap();
        out.push(started.elapsed());
    }
    out
}

/// The durability table, and the issue's targets (reported, never asserted).
fn print_durability(
    runs: &[(Durability, DurabilityRuns)],
    lag_p99: Duration,
    rate: u64,
    rounds: u64,
    clients: usize,
    put: &[Duration],
) {
    println!();
    println!(
        "| single-row POSTs, {clients} connections, {rounds} rounds | writes/s (median) | vs off (median) | p50 | p90 | p99 | object-store PUTs/s (median) | failed |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (mode, r) in runs {
        println!(
            "| {} | {:.0} | {:.3} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} | {} |",
            mode.label(),
            median_f64(&r.rates),
            median_f64(&r.ratios),
            ms(pct(&r.latencies, 0.5)),
            ms(pct(&r.latencies, 0.9)),
            ms(pct(&r.latencies, 0.99)),
            median_f64(&r.puts),
            r.failed
        );
    }
    println!(
        "| asynchronous lag p99 commit → S3 at {rate} commits/s | {:.0} ms | | | | | | |",
        ms(lag_p99)
    );
    let find = |d: Durability| runs.iter().find(|(m, _)| *m == d).map(|(_, r)| r);
    if let (Some(sync), Some(asyn)) = (find(Durability::Sync), find(Durability::Async)) {
        let met = |ok: bool| if ok { "met" } else { "NOT met" };
        let (ratio, p99) = (median_f64(&sync.ratios), ms(pct(&sync.latencies, 0.99)));
        println!(
            "targets: synchronous >= 0.5x off ({ratio:.3}x: {}), synchronous p99 < 50 ms ({p99:.1} ms: {}), async lag p99 <= 50 ms ({:.0} ms: {})",
            met(ratio >= 0.5),
            met(p99 < 50.0),
            ms(lag_p99),
            met(ms(lag_p99) <= 50.0)
        );
        let mean_put = put.iter().sum::<Duration>().as_secs_f64() / put.len().max(1) as f64;
        let ceiling = clients as f64 / mean_put.max(1e-9);
        let off = find(Durability::Off).map_or(0.0, |r| median_f64(&r.rates));
        println!(
            "ceiling: a bare 4 KiB PUT to this server takes {:.2} ms on average (p50 {:.2}, p99 {:.2}; {} PUTs, one at a time, before the rounds), so no synchronous design completes more than {clients} / {:.2} ms = {ceiling:.0} writes/s with {clients} connections: {:.3}x off; the synchronous mode reached {:.2} of that ceiling",
            mean_put * 1e3,
            ms(pct(put, 0.5)),
            ms(pct(put, 0.99)),
            put.len(),
            mean_put * 1e3,
            ceiling / off.max(1.0),
            median_f64(&sync.rates) / ceiling
        );
        println!(
            "PUTs per acknowledged write: synchronous {:.4}, asynchronous {:.4} (bounded by the upload cadence when far below 1)",
            median_f64(&sync.puts) / median_f64(&sync.rates).max(1.0),
            median_f64(&asyn.puts) / median_f64(&asyn.rates).max(1.0)
        );
    }
}
