//! Read replicas (`BENCH_ONLY=follow`): one primary `sqlite-rest serve` replicating a seeded
//! `books` table to the local S3 server and one `serve --replication-follow` of that replica,
//! both the release binary (`SQLITEREST_BIN`) on this machine:
//!
//! 1. read throughput: wrk (2 threads, 32 connections, `scripts/bench.d/random_path.lua`)
//!    against the primary and against the follower, alternating per round, for a point read
//!    (`/books?id=eq.N`) and a 100-row read (`/books?author=eq.X&limit=100`); the ratio
//!    follower / primary of each round, median of the rounds (target ≥ 0.9);
//! 2. lag: a paced writer POSTs to the primary (`--write-positions`: answered once the
//!    commit is in a local LTX file, a few milliseconds after it) and keeps each answer's
//!    `Sqlite-Rest-Txid` and arrival time; a watcher reads the follower every few milliseconds and keeps the
//!    TXID each answer was served at; a write's lag is the time from its answer to the first
//!    follower answer at or past its TXID. For the default poll interval (1 s) and a
//!    sub-second one; p50/p99 against the target (p99 ≤ interval + 100 ms), plotted to
//!    `target/bench/follower-lag.svg`;
//!    The first write after the reads (the follower idle and backed off) is reported apart;
//! 3. idle cost: object-store requests per minute of an idle follower after its back-off
//!    settled (`BENCH_FOLLOW_IDLE` seconds, default 240: the level scan comes every 30
//!    polls), from `litestream_replica_operation_total`, with the monthly count and its price
//!    at S3's list prices.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Server, median_f64, ms, pct};

/// S3 Standard request prices (us-east-1), dollars per 1000 requests: LIST/PUT and GET.
const LIST_PRICE: f64 = 0.005;
const GET_PRICE: f64 = 0.0004;

/// Rows seeded into the primary before the followers start.
const ROWS: u64 = 100_000;

/// A follower of `config`'s replica on its own database in `dir`; ready once it restored.
async fn start_follower(bin: &Path, dir: &Path, url: &str, interval: Option<&str>) -> Server {
    let db = dir.join("follower.db");
    let config = dir.join("follower.yml");
    let interval = interval
        .map(|i| format!("      sync-interval: {i}\n"))
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      url: {url}\n{interval}",
            db.display()
        ),
    )
    .unwrap();
    Server::spawn(bin, &db, |cmd| {
        cmd.arg("--replication-follow")
            .arg("--replication-config")
            .arg(&config);
    })
    .await
}

/// wrk against `port` on `pattern` (one `%d` in `[1, max]`): requests per second.
fn wrk(port: u16, pattern: &str, max: u64, secs: f64) -> f64 {
    let script = testkit::workspace_root().join("scripts/bench.d/random_path.lua");
    let out = Command::new("wrk")
        .args(["-t2", "-c32", &format!("-d{}s", secs.round() as u64)])
        .arg("-s")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}"))
        .env("BENCH_PATH", pattern)
        .env("BENCH_MAX", max.to_string())
        .stderr(Stdio::inherit())
        .output()
        .expect("wrk (scripts/bench-replication installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "wrk saw error responses on port {port}:\n{text}"
    );
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rate in wrk's output:\n{text}"))
}

/// The `Sqlite-Rest-Txid` of a response, as a number.
fn txid_of(resp: &reqwest::Response) -> Option<u64> {
    let v = resp.headers().get("sqlite-rest-txid")?.to_str().ok()?;
    u64::from_str_radix(v, 16).ok()
}

/// One lag run: after one first write (its lag returned apart), `rate` POSTs per second to
/// the primary for `secs`, the follower watched every 2 ms; each write's lag from its answer
/// to the follower serving its TXID.
async fn lag_run(
    primary: &Server,
    follower: &Server,
    rate: u64,
    secs: f64,
) -> (Duration, Vec<Duration>) {
    let client = reqwest::Client::new();
    let seen: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (client, seen, stop) = (client.clone(), seen.clone(), stop.clone());
        let url = format!("http://127.0.0.1:{}/books?select=id&limit=1", follower.port);
        tokio::spawn(async move {
            let mut last = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(resp) = client.get(&url).send().await {
                    let at = Instant::now();
                    if let Some(txid) = txid_of(&resp).filter(|t| *t > last) {
                        last = txid;
                        seen.lock().unwrap().push((at, txid));
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    // The first write after an idle period waits out the follower's idle back-off: its lag
    // is reported on its own, and the paced writes start once the follower has seen it.
    let first = post(&client, primary.port, 0).await;
    let first_lag = visible(&seen, first).await;
    let mut writes = Vec::new();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed().as_secs_f64() < secs {
        n += 1;
        let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        writes.push(post(&client, primary.port, n).await);
    }
    if let Some(last) = writes.last() {
        visible(&seen, *last).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.await.unwrap();
    let seen = seen.lock().unwrap();
    let lags = writes
        .iter()
        .map(|(at, txid)| {
            let i = seen.partition_point(|s| s.1 < *txid);
            seen[i].0.saturating_duration_since(*at)
        })
        .collect();
    (first_lag, lags)
}

/// POSTs book `n` to the primary: when its answer arrived, and its TXID.
async fn post(client: &reqwest::Client, port: u16, n: u64) -> (Instant, u64) {
    let resp = client
        .post(format!("http://127.0.0.1:{port}/books"))
        .header("Content-Type", "application/json")
        .body(format!(
            r#"{{"title":"lag {n}","author":"author-{}","price":1.5,"published":2000}}"#,
            n % 997
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "a write to the primary failed");
    (Instant::now(), txid_of(&resp).expect("a write's TXID"))
}

/// Waits (generously) until the watcher saw the follower at or past `write`'s TXID; the lag.
async fn visible(seen: &Mutex<Vec<(Instant, u64)>>, (at, txid): (Instant, u64)) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = seen.lock().unwrap().iter().find(|s| s.1 >= txid) {
            return s.0.saturating_duration_since(at);
        }
        assert!(
            Instant::now() < deadline,
            "the follower did not reach TXID {txid:016x}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Object-store requests by `server` during `window`, after `settle` of idling.
async fn idle_requests(server: &Server, settle: Duration, window: Duration) -> u64 {
    tokio::time::sleep(settle).await;
    let before = server.operations(|_| true).await;
    tokio::time::sleep(window).await;
    server.operations(|_| true).await - before
}

/// The whole follower benchmark; prints its table.
pub async fn run(bin: &Path, s3: &testkit::S3, secs: f64, rounds: u64, rate: u64, idle_secs: u64) {
    let dir = tempfile::tempdir().unwrap();
    // `--write-positions`: local writes carry their TXID (answered once in a local LTX file).
    let (primary, _config) =
        Server::start_seeded(bin, s3, true, &["--write-positions"], ROWS).await;
    let follower_dir = dir.path().join("follower");
    std::fs::create_dir_all(&follower_dir).unwrap();
    let follower = start_follower(bin, &follower_dir, &primary.url, None).await;

    // 1. Read throughput, alternating primary and follower in each round.
    let loads = [
        ("point read /books?id=eq.N", "/books?id=eq.%d", ROWS),
        (
            "100 rows /books?author=eq.X&limit=100",
            "/books?author=eq.author-%d&limit=100",
            999,
        ),
    ];
    let mut read_rows = Vec::new();
    for (name, pattern, max) in loads {
        let (mut p, mut f, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 1..=rounds {
            let rp = wrk(primary.port, pattern, max, secs);
            let rf = wrk(follower.port, pattern, max, secs);
            println!(
                "follow round {round}: {name}: primary {rp:.0} req/s, follower {rf:.0} req/s ({:.3})",
                rf / rp
            );
            p.push(rp);
            f.push(rf);
            ratios.push(rf / rp);
        }
        read_rows.push((name, median_f64(&p), median_f64(&f), median_f64(&ratios)));
    }

    // 2. Lag, at the default interval (after the reads: the follower idled and backed off)
    // and at a sub-second one (a fresh follower).
    let lag_secs = (secs * 3.0).max(15.0);
    let (first, default_lags) = lag_run(&primary, &follower, rate, lag_secs).await;

    // 3. Idle cost of the default follower, once its back-off settled.
    let settle = Duration::from_secs(20);
    let window = Duration::from_secs(idle_secs);
    let idle = idle_requests(&follower, settle, window).await;
    follower.stop();

    let fast_dir = dir.path().join("follower-fast");
    std::fs::create_dir_all(&fast_dir).unwrap();
    let fast = start_follower(bin, &fast_dir, &primary.url, Some("250ms")).await;
    let (_, fast_lags) = lag_run(&primary, &fast, rate, lag_secs).await;
    fast.stop();
    primary.stop();
    let lag_rows = [
        ("1 s (default)", Duration::from_secs(1), default_lags),
        ("250 ms", Duration::from_millis(250), fast_lags),
    ];
    let series: Vec<(String, Vec<f64>)> = lag_rows
        .iter()
        .map(|(name, _, lags)| {
            (
                format!("poll interval {name}"),
                lags.iter().map(|d| ms(*d)).collect(),
            )
        })
        .collect();
    let plot = super::plot_dir().join("follower-lag.svg");
    std::fs::create_dir_all(plot.parent().unwrap()).unwrap();
    testkit::plot::latency_cdf(
        &plot,
        &format!("follower lag, primary's answer -> visible on the follower, {rate} writes/s"),
        &series,
    )
    .unwrap();

    println!();
    println!(
        "| read load (wrk -t2 -c32), {rounds} rounds | primary req/s | follower req/s | follower / primary (median) |"
    );
    println!("|---|---|---|---|");
    for (name, p, f, r) in &read_rows {
        println!("| {name} | {p:.0} | {f:.0} | {r:.3} |");
    }
    println!();
    println!(
        "| follower poll interval | writes at {rate}/s | lag p50 | lag p99 | max | target p99 ≤ interval + 100 ms |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, interval, lags) in &lag_rows {
        let p99 = pct(lags, 0.99);
        println!(
            "| {name} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {} |",
            lags.len(),
            ms(pct(lags, 0.5)),
            ms(p99),
            ms(pct(lags, 1.0)),
            if p99 <= *interval + Duration::from_millis(100) {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    println!(
        "the first write after the reads (the default follower idle, backed off): lag {:.0} ms",
        ms(first)
    );
    let per_min = idle as f64 * 60.0 / window.as_secs_f64();
    let month = 60.0 * 24.0 * 30.0;
    println!(
        "idle follower (default interval), after {} s of settling, over {} s: {idle} object-store requests, {per_min:.1}/min, ≈ {:.0}/month, ≈ ${:.2}/month at ${LIST_PRICE}/1000 LIST",
        settle.as_secs(),
        window.as_secs(),
        per_min * month,
        per_min * month * LIST_PRICE / 1000.0,
    );
    println!(
        "a busy follower: one LIST per interval plus one GET per file (${:.2}/month of LISTs at 1 s, plus ${GET_PRICE}/1000 GETs)",
        month * 60.0 * LIST_PRICE / 1000.0
    );
    println!("follower lag plot: {}", plot.display());
}
