//! Test harness: starts the real `sqlite-rest` binary on a free port over a fixture database
//! and talks to it over HTTP with reqwest.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod replica;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

pub const SECRET: &[u8] = b"test-secret-that-is-at-least-32-bytes-long";
pub const FIXTURE_SQL: &str = include_str!("../fixtures/fixture.sql");
pub const ALL_TABLES: &str = "clients,projects,tasks,users,users_tasks,messages,items,simple_pk,no_pk,names,counters,projects_view,Order Items,stock,stock_view,kv,notes,articles,articles search";

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A running server.
pub struct Server {
    child: Child,
    pub base: String,
    pub admin: String,
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub client: reqwest::Client,
    token: String,
}

/// How to start one.
pub struct Options {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Use the RSA public key instead of the HMAC secret.
    pub rsa: bool,
    /// Pass no key flag: `args` name the keys (`--auth-jwks-file`, …).
    pub own_keys: bool,
    pub allow: String,
    /// The binary to run (default: this build's `sqlite-rest`; hostile tests run the release
    /// build, `testkit::Tool::ReleaseBinary`).
    pub bin: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            args: Vec::new(),
            env: Vec::new(),
            rsa: false,
            own_keys: false,
            allow: ALL_TABLES.to_string(),
            bin: None,
        }
    }
}

pub fn hs_token(secret: &[u8], alg: Algorithm, claims: Value) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

pub fn rs_token(private_pem_file: &str, alg: Algorithm, claims: Value) -> String {
    let pem = std::fs::read(fixtures().join(private_pem_file)).unwrap();
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

/// `bin serve` over `db` on 127.0.0.1 (API on `port`, admin on `admin_port`), exposing
/// `allow`; the caller adds auth and the rest.
pub fn serve_command(bin: &Path, db: &Path, port: u16, admin_port: u16, allow: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg("--db-dsn")
        .arg(db)
        .arg("--http-addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{admin_port}"))
        .arg("--security-allow-table")
        .arg(allow);
    cmd
}

pub fn create_fixture_db(path: &Path) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(FIXTURE_SQL).unwrap();
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("fixture.db");
        create_fixture_db(&db);
        let secret = dir.path().join("secret");
        std::fs::write(&secret, SECRET).unwrap();
        let (child, port, admin_port) = spawn_ready(|port, admin_port| {
            let bin = opts
                .bin
                .clone()
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sqlite-rest")));
            let mut cmd = serve_command(&bin, &db, port, admin_port, &opts.allow);
            cmd.arg("--log-level").arg("warn");
            if opts.own_keys {
            } else if opts.rsa {
                cmd.arg("--auth-rsa-public-key")
                    .arg(fixtures().join("rsa_public.pem"));
            } else {
                cmd.arg("--auth-token-file").arg(&secret);
            }
            cmd.args(&opts.args);
            for (k, v) in &opts.env {
                cmd.env(k, v);
            }
            cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
            cmd
        })
        .await;
        let token = if opts.rsa {
            rs_token("rsa_private.pem", Algorithm::RS256, json!({"role": "test"}))
        } else {
            hs_token(SECRET, Algorithm::HS256, json!({"role": "test"}))
        };
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            dir,
            db,
            client: reqwest::Client::new(),
            token,
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// A GET with the test token.
    pub fn get(&self, path_and_query: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{}", self.base, path_and_query))
            .bearer_auth(&self.token)
    }

    pub fn request(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{}", self.base, path_and_query))
            .bearer_auth(&self.token)
    }

    /// GET and parse a JSON body, asserting the status.
    pub async fn json(&self, path_and_query: &str, status: u16) -> Value {
        let r = self.get(path_and_query).send().await.unwrap();
        let got = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(got, status, "GET {path_and_query}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path_and_query}: {e}: {body}"))
    }

    /// GET expecting an error: checks status and code and the PostgREST error shape.
    pub async fn error(&self, path_and_query: &str, status: u16, code: &str) -> Value {
        let v = self.json(path_and_query, status).await;
        assert_error_shape(&v, code);
        v
    }

    /// GET `path` with these query parameters (percent-encoded, see [`p`]), asserting 200;
    /// the JSON body.
    pub async fn query(&self, path: &str, params: &[(&str, &str)]) -> Value {
        self.json(&p(path, params), 200).await
    }

    /// A second connection to the served database, as another process would open it.
    pub fn sqlite(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.db).unwrap()
    }

    /// Runs `sql` on the served database from a second connection (another process
    /// writing), then closes it.
    pub fn exec_sql(&self, sql: &str) {
        self.sqlite().execute_batch(sql).unwrap();
    }

    /// Runs a client conformance script against this server — `program <workspace>/script
    /// BASE_URL TOKEN extra…` on a blocking thread — and asserts that it exited 0 and
    /// reported `… passed, 0 failed`. `label` names it in the failure message.
    pub async fn run_client_script(
        &self,
        label: &str,
        program: PathBuf,
        script: &str,
        extra: &[PathBuf],
    ) {
        let mut cmd = Command::new(program);
        cmd.arg(testkit::workspace_root().join(script))
            .arg(&self.base)
            .arg(&self.token)
            .args(extra);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{label} failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        assert!(stdout.contains("passed, 0 failed"), "{stdout}");
    }

    /// The admin server's `/metrics` text.
    pub async fn metrics(&self) -> String {
        admin_get(&self.client, &self.admin, "/metrics").await.1
    }

    /// The admin server's `/health`: status and report.
    pub async fn health(&self) -> (u16, Value) {
        admin_health(&self.client, &self.admin).await
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// A digest of every row of every table, to prove a request changed nothing.
    pub fn snapshot(&self) -> String {
        let c = rusqlite::Connection::open(&self.db).unwrap();
        let tables: Vec<String> = c
            .prepare("SELECT name FROM sqlite_schema WHERE type='table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut out = String::new();
        for t in tables {
            let q = format!("SELECT * FROM \"{}\"", t.replace('"', "\"\""));
            let mut stmt = c.prepare(&q).unwrap();
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    let mut s = String::new();
                    for i in 0..n {
                        s.push_str(&format!("{:?}|", r.get_ref(i).unwrap()));
                    }
                    Ok(s)
                })
                .unwrap();
            out.push_str(&t);
            for r in rows {
                out.push_str(&r.unwrap());
                out.push('\n');
            }
        }
        out
    }
}

/// Sends a request with the test token and these headers, and reads the whole response.
/// A body without an explicit Content-Type is sent as JSON.
pub async fn send(
    s: &Server,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let mut r = s.request(method, path);
    let mut typed = false;
    for (k, v) in headers {
        typed |= k.eq_ignore_ascii_case("content-type");
        r = r.header(*k, *v);
    }
    if let Some(b) = body {
        if !typed {
            r = r.header("Content-Type", "application/json");
        }
        r = r.body(b.to_string());
    }
    let resp = r.send().await.unwrap();
    Resp {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    }
}

/// A GET with these headers, read whole.
pub async fn get(s: &Server, path: &str, headers: &[(&str, &str)]) -> Resp {
    send(s, Method::GET, path, headers, None).await
}

/// A POST of `body` (JSON unless a Content-Type header says otherwise), read whole.
pub async fn post(s: &Server, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    send(s, Method::POST, path, headers, Some(body)).await
}

/// One response, read whole.
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }

    /// A header's value, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Asserts a PostgREST error with this status and code; its JSON body.
    pub fn error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        let v = self.json();
        assert_error_shape(&v, code);
        v
    }
}

/// GETs `path` (`/metrics`, `/health`) from the admin server at `admin`: status and text.
pub async fn admin_get(client: &reqwest::Client, admin: &str, path: &str) -> (u16, String) {
    let r = client.get(format!("{admin}{path}")).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// `/health` from the admin server at `admin`: status and report.
pub async fn admin_health(client: &reqwest::Client, admin: &str) -> (u16, Value) {
    let (status, text) = admin_get(client, admin, "/health").await;
    let report = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, report)
}

/// Spawns the command `build(api_port, admin_port)` on two free ports and waits until its
/// admin server answers `/ready`. A free port can be taken by a parallel test before the
/// server binds it; such an early exit is retried on new ports.
pub async fn spawn_ready(mut build: impl FnMut(u16, u16) -> Command) -> (Child, u16, u16) {
    let client = reqwest::Client::new();
    for _attempt in 0..5 {
        let (port, admin_port) = (testkit::free_port(), testkit::free_port());
        let mut child = build(port, admin_port).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if child.try_wait().unwrap().is_some() {
                break; // exited early: try other ports
            }
            if let Ok(r) = client
                .get(format!("http://127.0.0.1:{admin_port}/ready"))
                .send()
                .await
                && r.status() == 200
            {
                return (child, port, admin_port);
            }
            assert!(Instant::now() < deadline, "server did not become ready");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    panic!("sqlite-rest did not start (5 attempts)");
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn assert_error_shape(v: &Value, code: &str) {
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"));
    for k in ["code", "message", "details", "hint"] {
        assert!(o.contains_key(k), "missing {k} in {v}");
    }
    assert_eq!(o["code"], code, "{v}");
    assert!(o["message"].is_string(), "{v}");
}

/// The `id`s of a JSON array of objects.
pub fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect()
}

/// `path?k=v&…` with every key and value percent-encoded.
pub fn p(path: &str, params: &[(&str, &str)]) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let mut out = path.to_string();
    for (i, (k, v)) in params.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(&utf8_percent_encode(k, NON_ALPHANUMERIC).to_string());
        out.push('=');
        out.push_str(&utf8_percent_encode(v, NON_ALPHANUMERIC).to_string());
    }
    out
}

/// Sends SIGTERM to a child process.
pub fn sigterm(child: &Child) {
    #[allow(unsafe_code)]
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
}

/// Waits for `child` to exit, at most `within` (then panics), and returns its status.
pub async fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "did not exit within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
