//! Hostile clients against the release binary, over real sockets: what an attacker (or a
//! broken client) can do to connections, time budgets, metrics and tokens, each a regression
//! test of a finding. Descriptors are counted from `/proc/<pid>/fd` of the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Options, Server, hs_token, now, post};
use jsonwebtoken::Algorithm;
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The release server with these settings (`SQLITEREST_*` variables, which a build without a
/// setting ignores instead of refusing to start), or `None` (skipped) without the release
/// build.
async fn start(test: &str, env: &[(&str, &str)]) -> Option<Server> {
    let bin = testkit::require_tool(testkit::Tool::ReleaseBinary, test)?;
    Some(
        Server::start_with(Options {
            bin: Some(bin),
            env: env
                .iter()
                .map(|(k, v)| (format!("SQLITEREST_{k}"), v.to_string()))
                .collect(),
            ..Options::default()
        })
        .await,
    )
}

/// Open descriptors of process `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `host:port` of a base URL.
fn addr(base: &str) -> &str {
    base.trim_start_matches("http://")
}

/// Waits (polling, up to `within`) until `ok()` holds; false if it never did.
async fn eventually(within: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if ok() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True if the server closes `sock` before `by` (end of stream or reset); anything the server
/// sends first (an answer) is read and skipped.
async fn closed_by(sock: &mut TcpStream, by: Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let left = by.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, sock.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Connections that send half a request line, and never more.
async fn half_open(addr: &str, n: usize) -> Vec<TcpStream> {
    let mut socks = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /clients?sel").await.unwrap();
        socks.push(s);
    }
    socks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_never_starve_others_and_are_closed_by_the_header_timeout() {
    let Some(s) = start(
        "slowloris",
        &[
            ("HEADER_READ_TIMEOUT_MS", "4000"),
            ("IDLE_TIMEOUT_MS", "600000"),
        ],
    )
    .await
    else {
        return;
    };
    let pid = s.pid();
    let before = fds(pid);
    let mut socks = half_open(addr(&s.base), 300).await;
    // The server holds them ...
    assert!(
        eventually(Duration::from_secs(20), || fds(pid) >= before + 250).await,
        "the server did not accept the connections: {} descriptors",
        fds(pid)
    );
    // ... and a normal client is served meanwhile.
    let r = s.get("/clients?select=id&limit=1").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        fds(pid) >= before + 250,
        "the half-open connections were closed too early"
    );
    // Then every half-open connection is closed by the header timeout.
    let by = Instant::now() + Duration::from_secs(40);
    for (i, sock) in socks.iter_mut().enumerate() {
        assert!(
            closed_by(sock, by).await,
            "half-open connection {i} still open after the header timeout"
        );
    }
    assert!(
        eventually(Duration::from_secs(20), || fds(pid) <= before + 10).await,
        "descriptors: {} (before {before})",
        fds(pid)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_bounds_descriptors_and_others_are_served_once_there_is_room() {
    let Some(s) = start(
        "connection_cap",
        &[
            ("MAX_CONNECTIONS", "40"),
            ("HEADER_READ_TIMEOUT_MS", "600000"),
            ("IDLE_TIMEOUT_MS", "600000"),
        ],
    )
    .await
    else {
        return;
    };
    let pid = s.pid();
    let before = fds(pid);
    let socks = half_open(addr(&s.base), 200).await;
    // The server takes the first 40 ...
    assert!(
        eventually(Duration::from_secs(20), || fds(pid) >= before + 38).await,
        "descriptors: {} (before {before})",
        fds(pid)
    );
    // ... and never more, however long the others wait.
    let mut most = 0;
    for _ in 0..40 {
        most = most.max(fds(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        most <= before + 40 + 4,
        "{most} descriptors for a cap of 40 (before {before})"
    );
    // A client waiting behind the cap is served once the hostile connections go.
    let waiting = {
        let r = s.get("/clients?select=id&limit=1");
        tokio::spawn(async move { r.send().await.map(|r| r.status().as_u16()) })
    };
    drop(socks);
    let status = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the waiting client was never served")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}

/// `n` keep-alive connections that each make one request, read its answer, then stay open
/// and silent: the cheapest way to hold a listener's connections.
async fn idle_keep_alive(addr: &str, n: usize, head: &str) -> Vec<TcpStream> {
    let mut socks = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(30), request(&mut s, head))
            .await
            .unwrap_or_else(|_| panic!("keep-alive connection {i} was never served"));
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        socks.push(s);
    }
    socks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_held_open_at_the_cap_never_lock_out_a_new_client() {
    let Some(s) = start(
        "held_at_cap",
        &[
            ("MAX_CONNECTIONS", "16"),
            ("HEADER_READ_TIMEOUT_MS", "600000"),
            ("IDLE_TIMEOUT_MS", "600000"),
        ],
    )
    .await
    else {
        return;
    };
    let api_head = format!(
        "GET /clients?select=id&limit=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        s.token()
    );
    // Every place of both listeners held (16 each: the metrics listener keeps at most the
    // API's cap) by idle keep-alive connections and half-open ones, all still open while the
    // new clients come.
    let mut held = idle_keep_alive(addr(&s.base), 8, &api_head).await;
    held.extend(half_open(addr(&s.base), 8).await);
    held.extend(idle_keep_alive(addr(&s.admin), 8, "GET /live HTTP/1.1\r\nHost: x\r\n\r\n").await);
    held.extend(half_open(addr(&s.admin), 8).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A new client of either listener is served: a connection without a request in progress
    // makes room for it.
    // Fresh clients: a pooled connection would already hold a place.
    let live = tokio::time::timeout(
        Duration::from_secs(15),
        reqwest::Client::new()
            .get(format!("{}/live", s.admin))
            .send(),
    )
    .await
    .expect("the admin listener locked out a health check")
    .unwrap();
    assert_eq!(live.status(), 200);
    let api = tokio::time::timeout(
        Duration::from_secs(15),
        reqwest::Client::new()
            .get(format!("{}/clients?select=id&limit=1", s.base))
            .bearer_auth(s.token())
            .send(),
    )
    .await
    .expect("the API listener locked out a new client")
    .unwrap();
    assert_eq!(api.status(), 200);
    drop(held);
}

/// One keep-alive request on `sock`, its answer read whole (by `Content-Length`).
async fn request(sock: &mut TcpStream, head: &str) -> String {
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed before the answer: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((headers, body)) = text.split_once("\r\n\r\n") {
            let len = headers
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_by_the_idle_timeout() {
    let Some(s) = start("idle_timeout", &[("IDLE_TIMEOUT_MS", "1500")]).await else {
        return;
    };
    let mut sock = TcpStream::connect(addr(&s.base)).await.unwrap();
    let head = format!(
        "GET /clients?select=id&limit=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        s.token()
    );
    // Two requests on one connection: it is kept alive between them ...
    for _ in 0..2 {
        let answer = request(&mut sock, &head).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // ... and closed once it stays idle.
    assert!(
        closed_by(&mut sock, Instant::now() + Duration::from_secs(30)).await,
        "an idle keep-alive connection was never closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_and_pprof_listeners_close_half_open_connections_too() {
    let pprof = testkit::free_port();
    let pprof_addr = format!("127.0.0.1:{pprof}");
    let Some(s) = start(
        "monitoring_listeners",
        &[
            ("PPROF_ADDR", &pprof_addr),
            ("HEADER_READ_TIMEOUT_MS", "1500"),
        ],
    )
    .await
    else {
        return;
    };
    let mut admin = half_open(addr(&s.admin), 1).await;
    let mut profiler = half_open(&pprof_addr, 1).await;
    let by = Instant::now() + Duration::from_secs(30);
    assert!(
        closed_by(&mut admin[0], by).await,
        "admin connection kept open"
    );
    assert!(
        closed_by(&mut profiler[0], by).await,
        "pprof connection kept open"
    );
    // Both still serve.
    assert!(s.metrics().await.contains("process_open_fds"));
}

/// `n` random lower-case letters.
fn random_name(n: usize) -> String {
    use rand_like::next;
    (0..n)
        .map(|_| (b'a' + (next() % 26) as u8) as char)
        .collect()
}

/// A small xorshift generator: the names only need to differ.
mod rand_like {
    use std::cell::Cell;
    thread_local!(static STATE: Cell<u64> = Cell::new(0x2545_f491_4f6c_dd1d ^ std::process::id() as u64));
    pub fn next() -> u64 {
        STATE.with(|s| {
            let mut x = s.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.set(x);
            x
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_paths_and_preflights_do_not_grow_the_metrics() {
    let Some(s) = start("metrics_flood", &[]).await else {
        return;
    };
    // Every kind of answer once, so their (fixed) series exist.
    let warm = |s: &Server| {
        let client = s.client.clone();
        let (base, token) = (s.base.clone(), s.token().to_string());
        async move {
            let name = random_name(8);
            let preflight = client
                .request(Method::OPTIONS, format!("{base}/{name}"))
                .header("Origin", "http://evil.example")
                .header("Access-Control-Request-Method", "GET");
            assert_eq!(preflight.send().await.unwrap().status(), 200);
            let anonymous = client.get(format!("{base}/{name}"));
            assert_eq!(anonymous.send().await.unwrap().status(), 401);
            let early_error = client
                .get(format!("{base}/{name}?select=((("))
                .bearer_auth(&token);
            assert_eq!(early_error.send().await.unwrap().status(), 400);
            let missing = client.get(format!("{base}/{name}")).bearer_auth(&token);
            assert_eq!(missing.send().await.unwrap().status(), 404);
        }
    };
    warm(&s).await;
    let before = s.metrics().await.len();
    let mut names = Vec::new();
    for _ in 0..150 {
        let name = random_name(2048);
        let preflight = s
            .client
            .request(Method::OPTIONS, format!("{}/{name}", s.base))
            .header("Origin", "http://evil.example")
            .header("Access-Control-Request-Method", "DELETE");
        assert_eq!(preflight.send().await.unwrap().status(), 200);
        let early_error = s.get(&format!("/{name}?order=!!"));
        assert_eq!(early_error.send().await.unwrap().status(), 400);
        let anonymous = s.client.get(format!("{}/{name}", s.base));
        assert_eq!(anonymous.send().await.unwrap().status(), 401);
        names.push(name);
    }
    let after = s.metrics().await;
    // Counters grow digits, not series.
    assert!(
        after.len() < before + 2048,
        "/metrics grew from {before} to {} bytes",
        after.len()
    );
    assert!(!names.iter().any(|n| after.contains(&n[..64])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_a_fractional_exp_expires_even_once_cached() {
    let Some(s) = start("fractional_exp", &[]).await else {
        return;
    };
    // `Date.now()/1000 + …`: valid for about 4.5 s more (30 s leeway), then expired.
    let exp = now() as f64 - 25.5;
    let token = hs_token(common::SECRET, Algorithm::HS256, json!({"exp": exp}));
    let status = || async {
        let r = s
            .client
            .get(format!("{}/clients?select=id&limit=1", s.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    };
    assert_eq!(status().await.0, 200, "a fresh token was refused");
    // Cached now; it must stop working when it expires.
    let end = Instant::now() + Duration::from_secs(40);
    let (code, body) = loop {
        let (code, body) = status().await;
        if code != 200 || Instant::now() >= end {
            break (code, body);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(code, 401, "the expired token still works: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["code"].as_str(), v["message"].as_str()),
        (Some("PGRST303"), Some("JWT expired"))
    );
}

/// 300,000 rows for slow `like(any)` PATCHes and reads.
fn fill_slow_table(s: &Server) {
    s.exec_sql(
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 300000) \
         INSERT INTO no_pk (a, b) SELECT printf('row %d %s', i, hex(randomblob(24))), 'x' FROM c;",
    );
}

/// `a=like(any).{…}` with `n` patterns that match no row: every row is compared with each
/// (a regex list would not do: it is one automaton, fast whatever its length).
fn slow_filter(n: usize) -> String {
    let patterns: Vec<String> = (0..n).map(|i| format!("*q{i}z*")).collect();
    format!("like(any).{{{}}}", patterns.join(","))
}

/// A PATCH that runs far past a second and a half: 200 patterns over every row.
fn slow_patch(s: &Server) -> reqwest::RequestBuilder {
    s.request(
        Method::PATCH,
        &common::p("/no_pk", &[("a", &slow_filter(200))]),
    )
    .header("Content-Type", "application/json")
    .body(r#"{"b":"y"}"#)
}

/// `sqlite_rest_<name>` from `/metrics`.
async fn counter(s: &Server, name: &str) -> Option<f64> {
    let text = s.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("sqlite_rest_{name} ")))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_writes_never_stall_a_plain_insert_past_its_budget_nor_make_it_run_again() {
    let budget = Duration::from_millis(1500);
    let Some(s) = start("write_starvation", &[("REQUEST_TIMEOUT_MS", "1500")]).await else {
        return;
    };
    fill_slow_table(&s);
    // One slow PATCH takes the writer ...
    let first = tokio::spawn(slow_patch(&s).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ... a plain insert queues behind it, then more slow PATCHes behind that.
    let sent = Instant::now();
    let insert = tokio::spawn(
        s.request(Method::POST, "/names")
            .header("Content-Type", "application/json")
            .body(r#"{"id": 4242, "name": "plain"}"#)
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let more: Vec<_> = (0..4)
        .map(|_| tokio::spawn(slow_patch(&s).send()))
        .collect();
    let insert = insert.await.unwrap().unwrap();
    let answered = sent.elapsed();
    let status = insert.status().as_u16();
    let body = insert.text().await.unwrap();
    // Answered within its budget (plus room for a loaded machine), not after the slow ones.
    assert!(
        answered < budget + Duration::from_secs(3),
        "the insert was answered {answered:?} after it was sent ({status} {body})"
    );
    let written: i64 = s
        .sqlite()
        .query_row("SELECT count(*) FROM names WHERE id = 4242", [], |r| {
            r.get(0)
        })
        .unwrap();
    match status {
        201 => assert_eq!(written, 1),
        504 => assert_eq!(written, 0, "a 504 for a write that was kept"),
        other => panic!("insert answered {other}: {body}"),
    }
    for r in std::iter::once(first).chain(more) {
        let r = r.await.unwrap().unwrap();
        assert_eq!(r.status(), 504, "{}", r.text().await.unwrap());
    }
    // None of the slow PATCHes changed a row.
    let changed: i64 = s
        .sqlite()
        .query_row("SELECT count(*) FROM no_pk WHERE b = 'y'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(changed, 0);
    assert_eq!(counter(&s, "write_reruns_total").await, Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_client_left_while_it_was_queued_never_runs() {
    let Some(s) = start("client_left", &[("REQUEST_TIMEOUT_MS", "3000")]).await else {
        return;
    };
    fill_slow_table(&s);
    let slow = tokio::spawn(slow_patch(&s).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A raw client sends an insert, then hangs up while it waits behind the slow PATCH.
    let body = r#"{"id": 777, "name": "left"}"#;
    let mut sock = TcpStream::connect(addr(&s.base)).await.unwrap();
    sock.write_all(
        format!(
            "POST /names HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            s.token(),
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(sock);
    assert_eq!(slow.await.unwrap().unwrap().status(), 504);
    // The writer is free again: a later write goes through, the abandoned one never ran.
    let r = post(&s, "/names", &[], r#"{"id": 778, "name": "later"}"#).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let ids: Vec<i64> = s
        .sqlite()
        .prepare("SELECT id FROM names WHERE id IN (777, 778) ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        ids,
        vec![778],
        "the write of a client that left was applied"
    );
    assert_eq!(counter(&s, "write_dropped_total").await, Some(1.0));
}

/// A GET that reads for many seconds: 800 patterns over every row of the slow table.
fn slow_read_path() -> String {
    common::p("/no_pk", &[("select", "a"), ("a", &slow_filter(800))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_gets_only_what_its_body_left_of_the_budget() {
    let budget = Duration::from_millis(3000);
    let Some(s) = start("read_budget", &[("REQUEST_TIMEOUT_MS", "3000")]).await else {
        return;
    };
    fill_slow_table(&s);
    // A GET whose (ignored) body arrives near the end of the budget, then a read that would
    // take far longer than a whole budget.
    let mut sock = TcpStream::connect(addr(&s.base)).await.unwrap();
    sock.write_all(
        format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 2\r\n\r\n[",
            slow_read_path(),
            s.token()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let sent = Instant::now();
    tokio::time::sleep(Duration::from_millis(2700)).await;
    sock.write_all(b"]").await.unwrap();
    let mut answer = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(60), sock.read(&mut answer))
        .await
        .expect("never answered")
        .unwrap();
    let answered = sent.elapsed();
    let head = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 504"), "{head}");
    // The budget started when the request arrived, not when its read began (plus room for
    // a loaded machine).
    assert!(
        answered < budget + Duration::from_millis(1500),
        "answered {answered:?} after the request arrived, for a budget of {budget:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_cut_by_the_request_budget() {
    let Some(s) = start("slow_body", &[("REQUEST_TIMEOUT_MS", "1500")]).await else {
        return;
    };
    let mut sock = TcpStream::connect(addr(&s.base)).await.unwrap();
    sock.write_all(
        format!(
            "POST /names HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[",
            s.token()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // One byte every 200 ms would take 200 s.
    let mut answer = Vec::new();
    let end = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        let _ = sock.write_all(b" ").await;
        match tokio::time::timeout(Duration::from_millis(200), sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("SQLREST408"), "{answer}");
}

/// Runs the release binary's `demo` in `dir` until its admin server is ready; the child.
async fn demo(bin: &std::path::Path, dir: &std::path::Path) -> std::process::Child {
    let (child, _, _) = common::spawn_ready(|port, admin| {
        let mut cmd = std::process::Command::new(bin);
        cmd.arg("demo")
            .arg("--dir")
            .arg(dir)
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{admin}")])
            .args(["--log-level", "warn"])
            .stdout(std::process::Stdio::null());
        cmd
    })
    .await;
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_keeps_its_secret_private() {
    use std::os::unix::fs::PermissionsExt;
    let Some(bin) = testkit::require_tool(testkit::Tool::ReleaseBinary, "demo_secret") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let mut child = demo(&bin, &dir).await;
    let _ = child.kill();
    let _ = child.wait();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&dir.join("jwt-secret")),
        0o600,
        "the JWT secret is readable by others"
    );
    assert_eq!(
        mode(&dir) & 0o022,
        0,
        "the demo directory is writable by others"
    );
    // A world-writable demo directory is refused.
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = std::process::Command::new(&bin)
        .args([
            "demo",
            "--dir",
            open.to_str().unwrap(),
            "--http-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("writable by every user"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_never_writes_through_a_planted_link() {
    let Some(bin) = testkit::require_tool(testkit::Tool::ReleaseBinary, "restore_link") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let mut child = demo(&bin, &dir).await;
    // Once the demo's replica holds the database, SIGKILL.
    let ltx_files = |d: &std::path::Path| -> usize {
        let Ok(levels) = std::fs::read_dir(d.join("replica/ltx")) else {
            return 0;
        };
        levels
            .flatten()
            .filter_map(|l| std::fs::read_dir(l.path()).ok())
            .flat_map(|files| files.flatten())
            .filter(|f| f.path().extension().is_some_and(|e| e == "ltx"))
            .count()
    };
    assert!(
        eventually(Duration::from_secs(30), || ltx_files(&dir) > 0).await,
        "the demo replicated nothing"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // Another user plants OUT.tmp as a link to a file of the restoring user.
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let out = tmp.path().join("out.db");
    std::os::unix::fs::symlink(&victim, tmp.path().join("out.db.tmp")).unwrap();
    let url = format!("file://{}", dir.join("replica").display());
    let o = std::process::Command::new(&bin)
        .args(["restore", "-o", out.to_str().unwrap(), &url])
        .output()
        .unwrap();
    let victim_now = std::fs::read(&victim).unwrap();
    assert!(
        victim_now == b"precious",
        "restore wrote through the link: the linked file now holds {} bytes starting {:?}",
        victim_now.len(),
        String::from_utf8_lossy(&victim_now[..victim_now.len().min(15)])
    );
    testkit::assert_success(&o);
    assert!(
        !std::fs::symlink_metadata(&out)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let books: i64 = rusqlite::Connection::open(&out)
        .unwrap()
        .query_row("SELECT count(*) FROM books", [], |r| r.get(0))
        .unwrap();
    assert!(books > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_on_the_unauthenticated_port_names_failures_without_their_text() {
    let Some(bin) = testkit::require_tool(testkit::Tool::ReleaseBinary, "health_text") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("app.db");
    common::create_fixture_db(&db);
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, common::SECRET).unwrap();
    let replica = tmp.path().join("replica");
    let config = tmp.path().join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      type: file\n      path: {}\n",
            db.display(),
            replica.display()
        ),
    )
    .unwrap();
    let (mut child, _, admin) = common::spawn_ready(|port, admin| {
        let mut cmd = std::process::Command::new(&bin);
        cmd.arg("serve")
            .arg("--db-dsn")
            .arg(&db)
            .arg("--auth-token-file")
            .arg(&secret)
            .args(["--security-allow-table", "clients"])
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{admin}")])
            .args(["--log-level", "error"])
            .arg("--replication-enabled")
            .arg("--replication-config")
            .arg(&config)
            .env("SQLITEREST_REPLICATION_RETRY_WINDOW", "600s")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    })
    .await;
    let client = reqwest::Client::new();
    let admin = format!("http://127.0.0.1:{admin}");
    assert!(
        eventually(Duration::from_secs(20), || replica.join("ltx").is_dir()).await,
        "nothing replicated"
    );
    // The replica breaks for good: its level directories become a file.
    testkit::replace_dir_with_file(&replica.join("ltx"));
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("INSERT INTO clients (name) VALUES ('after the break')", [])
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let (status, h) = common::admin_health(&client, &admin).await;
        if status == 503 {
            break h;
        }
        assert!(Instant::now() < end, "health stayed ok: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    let failing = &report["replication"]["failing"][0];
    assert!(failing["operation"].is_string(), "{report}");
    assert!(failing["errors"].as_u64().unwrap() >= 1, "{report}");
    let text = report.to_string();
    // The replica's location is configuration; the error's text (here the file system's, for
    // an object store its answer) is not shown.
    for leak in ["directory", "os error", "error\":"] {
        assert!(!text.contains(leak), "/health shows {leak:?}: {text}");
    }
}

/// Runs sqlmap (batch mode, bounded) with `args` against the server; its output. Fails the
/// test if sqlmap found an injection, or did not really test each of `params`.
async fn sqlmap(
    sqlmap: &std::path::Path,
    s: &Server,
    args: &[String],
    headers: &[&str],
    params: &[&str],
) -> String {
    let out_dir = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(sqlmap);
    cmd.args(args)
        .args([
            "--batch",
            "--dbms=SQLite",
            "--level=3",
            "--risk=2",
            "--technique=BEUST",
            "--time-sec=2",
            "--skip-waf",
            "--flush-session",
            "--disable-coloring",
            "--timeout=10",
            "--retries=0",
        ])
        // sqlmap splits its one --headers value at a literal `\n`.
        .arg(format!(
            "--headers={}",
            std::iter::once(format!("Authorization: Bearer {}", s.token()))
                .chain(headers.iter().map(|h| h.to_string()))
                .collect::<Vec<_>>()
                .join("\\n")
        ))
        .arg(format!("--output-dir={}", out_dir.path().display()))
        .arg("-p")
        .arg(params.join(","))
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("sqlmap ran for more than 5 minutes")
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // sqlmap's findings: a heuristic hit (an SQL error leaked), an injectable parameter, an
    // injection point, a fingerprinted back end.
    for found in [
        "might be injectable",
        "appears to be '",
        "is vulnerable",
        "identified the following injection point",
        "back-end DBMS is",
    ] {
        assert!(!text.contains(found), "sqlmap says {found:?}:\n{text}");
    }
    // It really tested every parameter (not skipped for being dynamic, static or unreachable).
    for p in params {
        let tested = text.lines().any(|l| {
            l.contains(&format!("parameter '{p}' does not seem to be injectable"))
                || l.contains(&format!(
                    "parameter 'JSON {p}' does not seem to be injectable"
                ))
        });
        assert!(tested, "sqlmap did not test parameter {p}:\n{text}");
    }
    for technique in [
        "testing 'AND boolean-based blind - WHERE or HAVING clause'",
        "testing 'SQLite > 2.0 AND time-based blind (heavy query)'",
        "testing 'Generic UNION query (NULL) - 1 to 10 columns'",
    ] {
        assert!(
            text.contains(technique),
            "sqlmap skipped {technique}:\n{text}"
        );
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlmap_finds_no_injectable_parameter() {
    let Some(tool) = testkit::require_tool(testkit::Tool::Sqlmap, "sqlmap") else {
        return;
    };
    let Some(s) = start("sqlmap", &[]).await else {
        return;
    };
    // A filter, an order and a select on a read.
    let url = format!(
        "{}/clients?name=eq.Microsoft&order=id.desc&select=id,name",
        s.base
    );
    sqlmap(
        &tool,
        &s,
        &[format!("--url={url}")],
        &[],
        &["name", "order", "select"],
    )
    .await;
    // A JSON body on a write (the representation gives sqlmap something to compare).
    sqlmap(
        &tool,
        &s,
        &[
            format!("--url={}/projects?select=id,name", s.base),
            r#"--data={"name":"sqlmap","client_id":1}"#.to_string(),
            "--method=POST".to_string(),
        ],
        &["Prefer: return=representation"],
        &["name"],
    )
    .await;
}
