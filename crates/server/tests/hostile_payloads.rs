//! Hostile payloads against the release binary over real sockets: request bodies and
//! responses built to exhaust memory, and the numbers, patterns and names built to make one
//! request cost far more than its size. Memory is the server's peak resident set (`VmHWM` of
//! `/proc/<pid>/status`), read before and after the hostile request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::{Child, Stdio};

use common::{SECRET, hs_token, serve_command, spawn_ready};
use jsonwebtoken::Algorithm;
use reqwest::Method;
use serde_json::{Value, json};
use testkit::Tool;

const MIB: u64 = 1024 * 1024;

/// The schema every test here starts from; `secret_log` is not exposed.
const SCHEMA: &str = r#"
PRAGMA foreign_keys = ON;
CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT);
CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE owners (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE pets (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                   owner_id INTEGER REFERENCES owners(id),
                   age INTEGER CONSTRAINT pets_age_check CHECK (age >= 0));
CREATE TABLE secret_log (id INTEGER PRIMARY KEY, pet_name TEXT NOT NULL UNIQUE,
                         note TEXT NOT NULL, CHECK (length(note) < 5));
CREATE TABLE secret_parent (id INTEGER PRIMARY KEY);
CREATE TABLE secret_child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES secret_parent(id));
CREATE TABLE logged (id INTEGER PRIMARY KEY, name TEXT, note TEXT);
CREATE TRIGGER logged_audit AFTER INSERT ON logged BEGIN
  INSERT INTO secret_log (pet_name, note) VALUES (NEW.name, NEW.note);
END;
CREATE TABLE linked (id INTEGER PRIMARY KEY, parent INTEGER);
CREATE TRIGGER linked_child AFTER INSERT ON linked BEGIN
  INSERT INTO secret_child (parent) VALUES (NEW.parent);
END;
CREATE TABLE secret_typed (x INTEGER) STRICT;
CREATE TABLE typed (id INTEGER PRIMARY KEY, v TEXT);
CREATE TRIGGER typed_copy AFTER INSERT ON typed BEGIN
  INSERT INTO secret_typed VALUES (NEW.v);
END;
INSERT INTO owners VALUES (1, 'Ann');
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 50)
  INSERT INTO items SELECT i, 'item ' || i FROM s;
"#;
const EXPOSED: &str = "docs,items,owners,pets,logged,linked,typed";

/// The release binary serving a database made from [`SCHEMA`] (plus `extra` SQL).
struct Hostile {
    child: Child,
    base: String,
    client: reqwest::Client,
    token: String,
    _dir: tempfile::TempDir,
}

impl Hostile {
    async fn start(test: &str, extra: &str) -> Option<Hostile> {
        Hostile::start_with_allow(test, extra, EXPOSED).await
    }

    /// Like [`Hostile::start`], exposing `allow` (a comma list).
    async fn start_with_allow(test: &str, extra: &str, allow: &str) -> Option<Hostile> {
        // Generous: the responses here are large and the machine may be loaded.
        Hostile::start_with(test, extra, allow, 60_000).await
    }

    /// Like [`Hostile::start_with_allow`], with this request time budget.
    async fn start_with(test: &str, extra: &str, allow: &str, timeout_ms: u64) -> Option<Hostile> {
        let bin: PathBuf = testkit::require_tool(Tool::ReleaseBinary, test)?;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hostile.db");
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(SCHEMA).unwrap();
        c.execute_batch(extra).unwrap();
        drop(c);
        let secret = dir.path().join("secret");
        std::fs::write(&secret, SECRET).unwrap();
        let (child, port, _) = spawn_ready(|port, admin_port| {
            let mut cmd = serve_command(&bin, &db, port, admin_port, allow);
            cmd.arg("--auth-token-file")
                .arg(&secret)
                .arg("--log-level")
                .arg("error")
                .arg("--request-timeout-ms")
                .arg(timeout_ms.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            cmd
        })
        .await;
        let s = Hostile {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            token: hs_token(SECRET, Algorithm::HS256, json!({"role": "test"})),
            _dir: dir,
        };
        // Warm up (schema cache, connections, allocator) before any baseline is taken.
        assert_eq!(s.send(Method::GET, "/items?limit=1", &[], "").await.0, 200);
        Some(s)
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends a request; status, headers and the whole body as text.
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut r = self.request(method, path);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if !body.is_empty() {
            r = r.body(body.to_string());
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.unwrap())
    }

    /// The server's peak resident set so far, in bytes.
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server process is gone");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status");
        kib * 1024
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn error_code(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    common::assert_error_shape(&v, v["code"].as_str().unwrap_or("?"));
    v
}

/// The issue's case: a 32 KiB header field and 8,000 rows of `1` (48 KB in all).
fn quadratic_csv(name: &str) -> String {
    let mut body = String::with_capacity(name.len() + 16_010);
    body.push_str(name);
    for _ in 0..8000 {
        body.push_str("\n1");
    }
    body
}

#[tokio::test]
async fn csv_bodies_cost_their_size_not_its_square() {
    let long = "h".repeat(32 * 1024);
    let extra = format!("CREATE TABLE wide (\"{long}\" TEXT);");
    let Some(mut s) = Hostile::start("csv_bodies_cost_their_size_not_its_square", &extra).await
    else {
        return;
    };
    // `wide` exists but is not exposed: it answers like a missing table.
    let body = quadratic_csv(&long);
    let csv = [("Content-Type", "text/csv")];
    for (path, status, code) in [
        ("/nope", 404, "PGRST205"),
        ("/wide", 404, "PGRST205"),
        ("/items", 400, "PGRST204"),
    ] {
        let before = s.peak_rss();
        let (got, _, text) = s.send(Method::POST, path, &csv, &body).await;
        let grew = s.peak_rss().saturating_sub(before);
        assert_eq!(got, status, "{path}: {text:.300}");
        assert_eq!(error_code(&text)["code"], code, "{path}");
        assert!(
            grew < 32 * MIB,
            "POST {path} of a {} byte CSV body grew the server's peak memory by {} MiB",
            body.len(),
            grew / MIB
        );
    }
    assert!(s.alive());
}

#[tokio::test]
async fn a_valid_csv_body_with_a_long_header_is_inserted_in_bounded_memory() {
    let long = "h".repeat(32 * 1024);
    let extra = format!("CREATE TABLE wide (\"{long}\" TEXT);");
    let Some(s) = Hostile::start_with_allow(
        "a_valid_csv_body_with_a_long_header_is_inserted_in_bounded_memory",
        &extra,
        &format!("{EXPOSED},wide"),
    )
    .await
    else {
        return;
    };
    let body = quadratic_csv(&long);
    let before = s.peak_rss();
    let (status, _, text) = s
        .send(
            Method::POST,
            "/wide",
            &[("Content-Type", "text/csv"), ("Prefer", "count=exact")],
            &body,
        )
        .await;
    let grew = s.peak_rss().saturating_sub(before);
    assert_eq!(status, 201, "{text:.300}");
    assert!(
        grew < 32 * MIB,
        "inserting a {} byte CSV body grew the server's peak memory by {} MiB",
        body.len(),
        grew / MIB
    );
    let (_, headers, _) = s
        .send(Method::HEAD, "/wide", &[("Prefer", "count=exact")], "")
        .await;
    assert_eq!(headers["content-range"], "0-7999/8000");
}

/// `select=body,body,…` (50 times) over rows holding 1 MiB each: the first row is 50 MB of
/// JSON, and a reservation sized from it for `limit=1000` rows would ask for 50 GB at once.
#[tokio::test]
async fn a_wide_select_over_large_values_streams_in_bounded_memory() {
    const ROWS: usize = 4;
    const COPIES: usize = 50;
    const VALUE: usize = 1 << 20;
    let extra = format!(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {ROWS})
         INSERT INTO docs SELECT i, printf('%.{VALUE}c', 'x') FROM s;"
    );
    let Some(mut s) = Hostile::start(
        "a_wide_select_over_large_values_streams_in_bounded_memory",
        &extra,
    )
    .await
    else {
        return;
    };
    let select = vec!["body"; COPIES].join(",");
    let before = s.peak_rss();
    let mut resp = s
        .request(
            Method::GET,
            &format!("/docs?select={select}&limit=1000&order=id"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-range"], format!("0-{}/*", ROWS - 1));
    // Read it as it comes, keeping only its length and ends.
    let (mut len, mut head, mut tail) = (0usize, Vec::new(), Vec::new());
    while let Some(chunk) = resp.chunk().await.unwrap() {
        len += chunk.len();
        if head.len() < 16 {
            head.extend_from_slice(&chunk[..chunk.len().min(16)]);
        }
        tail.extend_from_slice(&chunk);
        tail.drain(..tail.len().saturating_sub(16));
    }
    let grew = s.peak_rss().saturating_sub(before);
    let field = "\"body\":\"\"".len() + VALUE;
    let row = 2 + COPIES * field + (COPIES - 1);
    assert_eq!(len, 2 + ROWS * row + (ROWS - 1), "response length");
    assert!(head.starts_with(b"[{\"body\":\"xxx"), "{head:?}");
    assert!(tail.ends_with(b"xxx\"}]"), "{tail:?}");
    assert!(s.alive(), "the server died");
    assert!(
        grew < 48 * MIB,
        "a {} MiB response grew the server's peak memory by {} MiB",
        len as u64 / MIB,
        grew / MIB
    );
    // Sorted by a column without an index: SQLite's sorter holds each row once, not 50 times.
    let before = s.peak_rss();
    let resp = s
        .request(
            Method::GET,
            &format!("/docs?select={select}&limit=1000&order=body.desc,id.desc"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (sorted_len, clean) = drain(resp).await;
    let grew = s.peak_rss().saturating_sub(before);
    assert!(clean && sorted_len == len, "{sorted_len} of {len} bytes");
    assert!(
        grew < 48 * MIB,
        "a sorted {} MiB response grew the server's peak memory by {} MiB",
        len as u64 / MIB,
        grew / MIB
    );
    // The connection pool is whole again: an ordinary read still works.
    assert_eq!(s.send(Method::GET, "/items?id=eq.1", &[], "").await.0, 200);
}

/// Rows of 1 MiB in `docs`, for large responses.
fn large_docs(rows: usize) -> String {
    format!(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {rows})
         INSERT INTO docs SELECT i, printf('%.1048576c', 'x') FROM s;"
    )
}

/// Reads a response to its end: the bytes received, and whether it ended cleanly.
async fn drain(mut resp: reqwest::Response) -> (usize, bool) {
    let mut len = 0;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => len += c.len(),
            Ok(None) => return (len, true),
            Err(_) => return (len, false),
        }
    }
}

/// A streamed response whose client stops reading is cut at the request's deadline: the
/// client sees a truncated response (never one that looks complete), and the connection it
/// held goes back to the pool.
#[tokio::test]
async fn a_stalled_stream_is_cut_at_the_deadline_and_its_connection_returns() {
    let Some(mut s) = Hostile::start_with(
        "a_stalled_stream_is_cut_at_the_deadline_and_its_connection_returns",
        &large_docs(8),
        EXPOSED,
        2_000,
    )
    .await
    else {
        return;
    };
    let select = vec!["body"; 25].join(",");
    let path = format!("/docs?select={select}");
    let full = 2 + 8 * (2 + 25 * ("\"body\":\"\"".len() + (1 << 20)) + 24) + 7;
    // As many stalled streams as a 2-core machine's pool has connections.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut resp = s.request(Method::GET, &path).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.chunk().await.unwrap().is_some());
        stalled.push(resp);
    }
    // Meanwhile ordinary reads are served.
    assert_eq!(s.send(Method::GET, "/items?id=eq.2", &[], "").await.0, 200);
    // Well past the 2 s budget.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    for resp in stalled {
        let (len, clean) = drain(resp).await;
        assert!(
            !clean && len < full,
            "a cut stream ended cleanly ({len} of {full} bytes)"
        );
    }
    // The pool is whole: large and small reads are served again.
    for _ in 0..3 {
        let resp = s
            .request(Method::GET, "/docs?select=id,body&limit=2")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let (len, clean) = drain(resp).await;
        assert!(clean && len > 2 << 20, "{len}");
    }
    assert_eq!(s.send(Method::GET, "/items?id=eq.1", &[], "").await.0, 200);
    assert!(s.alive());
}

/// A client that goes away in the middle of a stream stops the read; the connection and the
/// permit it held are not lost (more abandoned streams than the pool has connections).
#[tokio::test]
async fn abandoned_streams_give_their_connections_back() {
    let Some(mut s) = Hostile::start(
        "abandoned_streams_give_their_connections_back",
        &large_docs(8),
    )
    .await
    else {
        return;
    };
    let select = vec!["body"; 25].join(",");
    for _ in 0..6 {
        let mut resp = s
            .request(Method::GET, &format!("/docs?select={select}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.chunk().await.unwrap().is_some());
        drop(resp);
    }
    let resp = s
        .request(Method::GET, "/docs?select=id,body&order=id&limit=3")
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-range"], "0-2/*");
    let (len, clean) = drain(resp).await;
    assert!(clean && len > 3 << 20, "{len}");
    assert!(s.alive());
}

/// Constraint violations are worded as PostgreSQL words them and name only what the caller
/// can see: a violation inside a hidden table (reached through a trigger) names nothing.
#[tokio::test]
async fn constraint_errors_never_name_hidden_relations() {
    let Some(s) = Hostile::start("constraint_errors_never_name_hidden_relations", "").await else {
        return;
    };
    let json = [("Content-Type", "application/json")];
    let post = |path: &'static str, body: &'static str| {
        let s = &s;
        async move { s.send(Method::POST, path, &json, body).await }
    };
    assert_eq!(
        post("/logged", r#"{"name":"rex","note":"ok"}"#).await.0,
        201
    );
    for (path, body, status, code) in [
        ("/logged", r#"{"name":"rex","note":"ok"}"#, 409, "23505"),
        ("/logged", r#"{"name":"max","note":null}"#, 400, "23502"),
        (
            "/logged",
            r#"{"name":"ben","note":"far too long"}"#,
            400,
            "23514",
        ),
        ("/linked", r#"{"parent":99}"#, 409, "23503"),
        ("/typed", r#"{"v":"not a number"}"#, 400, "22P02"),
    ] {
        let (got, _, text) = post(path, body).await;
        assert_eq!(got, status, "{path} {body}: {text}");
        let v = error_code(&text);
        assert_eq!(v["code"], code, "{text}");
        assert!(
            !text.contains("secret"),
            "POST {path} {body} named a hidden relation: {text}"
        );
    }
    // Exposed relations are named, with PostgreSQL's wording and constraint names.
    for (path, body, status, message, details) in [
        (
            "/owners",
            r#"{"id":1,"name":"Bob"}"#,
            409,
            r#"duplicate key value violates unique constraint "owners_pkey""#,
            json!("Key (id) already exists."),
        ),
        (
            "/owners",
            r#"{"id":2,"name":"Ann"}"#,
            409,
            r#"duplicate key value violates unique constraint "owners_name_key""#,
            json!("Key (name) already exists."),
        ),
        (
            "/pets",
            r#"{"name":null}"#,
            400,
            r#"null value in column "name" of relation "pets" violates not-null constraint"#,
            Value::Null,
        ),
        (
            "/pets",
            r#"{"name":"Rex","age":-1}"#,
            400,
            r#"new row for relation "pets" violates check constraint "pets_age_check""#,
            Value::Null,
        ),
        (
            "/pets",
            r#"{"name":"Rex","owner_id":9}"#,
            409,
            r#"insert or update on table "pets" violates foreign key constraint "pets_owner_id_fkey""#,
            json!("Key (owner_id) is not present in table \"owners\"."),
        ),
    ] {
        let (got, _, text) = post(path, body).await;
        assert_eq!(got, status, "{path} {body}: {text}");
        let v = error_code(&text);
        assert_eq!(v["message"], message, "{text}");
        assert_eq!(v["details"], details, "{text}");
    }
    assert_eq!(post("/pets", r#"{"name":"Rex","owner_id":1}"#).await.0, 201);
    let (got, _, text) = s.send(Method::DELETE, "/owners?id=eq.1", &[], "").await;
    assert_eq!(got, 409, "{text}");
    assert_eq!(
        error_code(&text)["message"],
        r#"update or delete on table "owners" violates foreign key constraint"#
    );
}

/// Bodies of 700,000 distinct keys (an object, a form, a CSV header; 5-8 MB): what the server
/// keeps per key must not multiply the body. No table has more than 2,000 columns (SQLite's
/// limit), so such a body is refused as soon as that many keys have been seen.
#[tokio::test]
async fn bodies_of_many_distinct_keys_are_refused_in_bounded_memory() {
    let Some(mut s) = Hostile::start(
        "bodies_of_many_distinct_keys_are_refused_in_bounded_memory",
        "",
    )
    .await
    else {
        return;
    };
    let keys: Vec<String> = (0..700_000).map(|i| format!("k{i}")).collect();
    let json = format!(
        "{{{}}}",
        keys.iter()
            .map(|k| format!("\"{k}\":1"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let form = keys
        .iter()
        .map(|k| format!("{k}=1"))
        .collect::<Vec<_>>()
        .join("&");
    let csv = keys.join(",") + "\n" + &vec!["1"; keys.len()].join(",");
    for (content_type, body, query) in [
        ("application/json", &json, ""),
        ("application/x-www-form-urlencoded", &form, ""),
        ("text/csv", &csv, ""),
        ("text/csv", &csv, "?columns=id,name"),
    ] {
        let before = s.peak_rss();
        let (status, _, text) = s
            .send(
                Method::POST,
                &format!("/items{query}"),
                &[("Content-Type", content_type)],
                body,
            )
            .await;
        let grew = s.peak_rss().saturating_sub(before);
        assert_eq!(status, 400, "{content_type}{query}: {text:.300}");
        assert_eq!(
            error_code(&text)["code"],
            "PGRST102",
            "{content_type}{query}: {text}"
        );
        assert!(
            grew < 48 * MIB,
            "a {} MiB {content_type} body of distinct keys grew the server's peak memory by {} MiB",
            body.len() as u64 / MIB,
            grew / MIB
        );
    }
    assert!(s.alive());
}

/// A write's representation is built in memory (it is answered after its commit): one that
/// would pass its limit (twice the largest body, at least 16 MiB) is refused and nothing is
/// written, instead of 300 copies of a 1 MiB value being assembled.
#[tokio::test]
async fn a_write_representation_past_its_limit_is_refused_in_bounded_memory() {
    let Some(mut s) = Hostile::start(
        "a_write_representation_past_its_limit_is_refused_in_bounded_memory",
        "",
    )
    .await
    else {
        return;
    };
    let value = "x".repeat(1 << 20);
    let body = format!(r#"{{"id":1,"body":"{value}"}}"#);
    let select = vec!["body"; 300].join(",");
    let before = s.peak_rss();
    let (status, _, text) = s
        .send(
            Method::POST,
            &format!("/docs?select={select}"),
            &[
                ("Content-Type", "application/json"),
                ("Prefer", "return=representation"),
            ],
            &body,
        )
        .await;
    let grew = s.peak_rss().saturating_sub(before);
    assert_eq!(status, 400, "{text:.300}");
    assert_eq!(error_code(&text)["code"], "54000", "{text:.300}");
    // Refused once past 20 MiB: the buffer it was built in, its last doubling and the
    // write itself, not 300 MiB.
    assert!(
        grew < 128 * MIB,
        "a 300 MiB representation grew the server's peak memory by {} MiB",
        grew / MIB
    );
    // Nothing was written; a smaller representation is answered.
    let (_, headers, _) = s
        .send(Method::HEAD, "/docs", &[("Prefer", "count=exact")], "")
        .await;
    assert_eq!(headers["content-range"], "*/0");
    let (status, _, text) = s
        .send(
            Method::POST,
            "/docs?select=id,body,body",
            &[
                ("Content-Type", "application/json"),
                ("Prefer", "return=representation"),
            ],
            &body,
        )
        .await;
    assert_eq!(status, 201, "{text:.300}");
    assert_eq!(
        text.len(),
        2 * value.len() + r#"[{"id":1,"body":"","body":""}]"#.len()
    );
    assert!(s.alive());
}
