//! The binary as a user runs it: --version/--help, Go-compatible flags and environment
//! variables, refusing bad auth setups, insecure mode, metrics, pprof, demo, and graceful
//! shutdown on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Options, Server, post};
use pprof::protos::Message;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sqlite-rest"))
}

/// GET `path` from a server the test started itself on `port`, with `token` if given.
async fn get_from(port: u16, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

/// Asserts that a finished command succeeded, showing its stderr if not.
/// The `(version, dirty)` row of the served database's migration table.
fn migration_state(s: &Server) -> (i64, bool) {
    s.sqlite()
        .query_row(
            "SELECT version, dirty FROM __sqlite_rest_migrations",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

/// `git args` in this crate's directory: its trimmed output, or None without git or a checkout.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn version_and_help() {
    // The version and the commit built from: HEAD's short hash (`-dirty` if the tree had
    // uncommitted changes when the build script last ran), `unknown` outside a checkout.
    let prefix = format!("sqlite-rest {} (commit ", env!("CARGO_PKG_VERSION"));
    let commit = match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => vec![format!("{head})"), format!("{head}-dirty)")],
        None => vec!["unknown)".to_string()],
    };
    for flag in ["--version", "-V"] {
        let out = bin().arg(flag).output().unwrap();
        assert!(out.status.success(), "{flag}: {out:?}");
        let line = String::from_utf8(out.stdout).unwrap();
        let line = line.trim();
        assert!(
            line.strip_prefix(&prefix)
                .is_some_and(|rest| commit.iter().any(|c| c == rest)),
            "{flag} printed {line:?}, expected {prefix}{commit:?}"
        );
    }
    let out = bin().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--db-dsn",
        "--http-addr",
        "--auth-token-file",
        "--auth-rsa-public-key",
        "--auth-jwks-file",
        "SQLITEREST_AUTH_JWKS_FILE",
        "--auth-role-claim-key",
        "SQLITEREST_AUTH_ROLE_CLAIM_KEY",
        "[default: .role]",
        "--auth-anon-role",
        "SQLITEREST_AUTH_ANON_ROLE",
        "--auth-jwt-aud",
        "SQLITEREST_AUTH_JWT_AUD",
        "--security-allow-table",
        "--metrics-addr",
        "--pprof-addr",
        "--log-level",
        "--log-devel",
        "SQLITEREST_DB_DSN",
        "[default: :8080]",
        "[default: :8081]",
    ] {
        assert!(help.contains(flag), "serve --help lacks {flag}:\n{help}");
    }
    let out = bin().arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("serve") && help.contains("demo") && help.contains("migrate"),
        "{help}"
    );
}

#[test]
fn bad_auth_setups_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    let db = db.to_str().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, b"k").unwrap();
    let key = key.to_str().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        br#"{"keys": [{"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}]}"#,
    )
    .unwrap();
    let jwks = jwks.to_str().unwrap();
    // After `serve --db-dsn <db>`: no key, two keys, a key and insecure mode, an RSA key
    // that is not one, a JWK set without a usable key, a role claim key that does not
    // parse, an empty anonymous role or audience, permissions without a role to run as.
    let auth: [(&[&str], &str); 11] = [
        (&[], "specify --auth-token-file"),
        (
            &["--auth-token-file", key, "--auth-rsa-public-key", key],
            "at the same time",
        ),
        (
            &["--auth-token-file", key, "--insecure-disable-auth"],
            "cannot be combined",
        ),
        (
            &["--auth-jwks-file", jwks, "--insecure-disable-auth"],
            "cannot be combined",
        ),
        (&["--auth-rsa-public-key", key], "not an RSA public key"),
        (&["--auth-jwks-file", jwks], "no usable signature key"),
        (&["--auth-jwks-file", key], "is not JSON"),
        (
            &["--auth-token-file", key, "--auth-role-claim-key", "role"],
            "--auth-role-claim-key: invalid role claim key \"role\" at character 1",
        ),
        (
            &["--auth-token-file", key, "--auth-anon-role", " "],
            "--auth-anon-role is empty",
        ),
        (
            &["--auth-token-file", key, "--auth-jwt-aud", ""],
            "--auth-jwt-aud is empty",
        ),
        (
            &["--insecure-disable-auth", "--permissions", key],
            "needs --auth-anon-role",
        ),
    ];
    for (args, why) in auth {
        let out = bin()
            .args(["serve", "--db-dsn", db])
            .args(args)
            .args(["--http-addr", "127.0.0.1:0", "--metrics-addr", ""])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("sqlite-rest:"), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn environment_variables_configure_serve() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("env.db");
    common::create_fixture_db(&db);
    let secret = dir.path().join("secret");
    std::fs::write(&secret, common::SECRET).unwrap();
    let (mut child, port, _admin) = common::spawn_ready(|port, admin| {
        let mut cmd = bin();
        cmd.arg("serve")
            .env(
                "SQLITEREST_DB_DSN",
                format!("file:{}?cache=private", db.display()),
            )
            .env("SQLITEREST_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("SQLITEREST_METRICS_ADDR", format!("127.0.0.1:{admin}"))
            .env("SQLITEREST_AUTH_TOKEN_FILE", &secret)
            .env("SQLITEREST_SECURITY_ALLOW_TABLE", "clients,items")
            .env("SQLITEREST_LOG_LEVEL", "warn")
            .stdout(Stdio::null());
        cmd
    })
    .await;
    let token = common::hs_token(
        common::SECRET,
        jsonwebtoken::Algorithm::HS256,
        serde_json::json!({}),
    );
    let token = Some(token.as_str());
    assert_eq!(get_from(port, "/clients", token).await.status(), 200);
    assert_eq!(get_from(port, "/items", token).await.status(), 200);
    assert_eq!(get_from(port, "/projects", token).await.status(), 404);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn insecure_mode_serves_without_tokens_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("i.db");
    common::create_fixture_db(&db);
    let (child, port, _admin) = common::spawn_ready(|port, admin| {
        let mut cmd = bin();
        cmd.args([
            "serve",
            "--insecure-disable-auth",
            "--security-allow-table",
            "clients",
        ])
        .arg("--db-dsn")
        .arg(&db)
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--metrics-addr", &format!("127.0.0.1:{admin}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        cmd
    })
    .await;
    let mut child = child;
    let r = get_from(port, "/clients?select=name&order=id", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        r#"[{"name":"Microsoft"},{"name":"Apple"}]"#
    );
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("AUTHENTICATION IS DISABLED"), "{logs}");
}

#[tokio::test]
async fn metrics_use_the_go_names() {
    let s = Server::start().await;
    s.json("/clients", 200).await;
    s.json("/nope", 404).await;
    let text = s.metrics().await;
    for needle in [
        "sqlite_rest_http_requests_total{http_code=\"200\",operation=\"queryTableOrView\",target=\"clients\"} 1",
        "sqlite_rest_http_requests_total{http_code=\"404\",operation=\"queryTableOrView\",target=\"\"} 1",
        "sqlite_rest_http_request_duration_milliseconds_bucket{http_code=\"200\",operation=\"queryTableOrView\",target=\"clients\",le=\"1000\"} 1",
        "sqlite_rest_auth_failed_requests_total 0",
        "sqlite_rest_access_check_failed_requests_total 0",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
    let size = text
        .lines()
        .find_map(|l| l.strip_prefix("sqlite_rest_database_size_bytes "))
        .unwrap();
    assert!(size.parse::<f64>().unwrap() > 0.0, "{size}");
    let (_, health) = s.health().await;
    assert_eq!(health["status"], "ok");
}

#[tokio::test]
async fn pprof_serves_cpu_profiles() {
    let pprof = testkit::free_port();
    let s = Server::start_with(Options {
        args: vec!["--pprof-addr".into(), format!("127.0.0.1:{pprof}")],
        ..Options::default()
    })
    .await;
    let load = {
        let (client, url, token) = (
            s.client.clone(),
            format!("{}/items", s.base),
            s.token().to_string(),
        );
        tokio::spawn(async move {
            for _ in 0..200 {
                let _ = client.get(&url).bearer_auth(&token).send().await;
            }
        })
    };
    let r = s
        .client
        .get(format!(
            "http://127.0.0.1:{pprof}/debug/pprof/profile?seconds=1"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    assert!(body.len() > 20, "profile too small: {} bytes", body.len());
    // A pprof Profile message starts with field 1 (sample_type, length-delimited) = 0x0a.
    assert_eq!(body[0], 0x0a);
    load.await.unwrap();
}

/// The release build keeps its symbol table (only debug info is stripped): a CPU profile of
/// the release binary names our functions. A binary stripped of its symbols would profile as
/// bare addresses.
#[tokio::test]
async fn release_binary_profiles_name_functions() {
    let Some(release) = testkit::require_tool(
        testkit::Tool::ReleaseBinary,
        "release_binary_profiles_name_functions",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    common::create_fixture_db(&db);
    let pprof = testkit::free_port();
    let (mut child, port, _admin) = common::spawn_ready(|port, admin| {
        let mut cmd = Command::new(&release);
        cmd.args(["serve", "--insecure-disable-auth", "--log-level", "warn"])
            .arg("--db-dsn")
            .arg(&db)
            .args(["--security-allow-table", "clients,items"])
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{admin}")])
            .args(["--pprof-addr", &format!("127.0.0.1:{pprof}")])
            .stdout(Stdio::null());
        cmd
    })
    .await;
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load = {
        let busy = busy.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let url = format!("http://127.0.0.1:{port}/clients?order=name");
            while busy.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = client.get(&url).send().await;
            }
        })
    };
    let body = reqwest::get(format!(
        "http://127.0.0.1:{pprof}/debug/pprof/profile?seconds=2"
    ))
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    busy.store(false, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let profile = pprof::protos::Profile::decode(body.as_ref()).unwrap();
    assert!(!profile.sample.is_empty(), "no samples in 2 s under load");
    assert!(
        profile
            .string_table
            .iter()
            .any(|name| name.starts_with("sqlite_rest::") || name.starts_with("dialect::")),
        "no function of ours named in the profile: {:?}",
        &profile.string_table[..profile.string_table.len().min(40)]
    );
}

#[tokio::test]
async fn sigterm_stops_every_server_cleanly() {
    let mut s = Server::start().await;
    s.json("/clients", 200).await;
    #[allow(unsafe_code)]
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(s.pid() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = s.child().try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
    for url in [
        format!("{}/clients", s.base),
        format!("{}/metrics", s.admin),
    ] {
        assert!(
            s.client.get(&url).send().await.is_err(),
            "{url} still answers"
        );
    }
}

#[tokio::test]
async fn demo_creates_a_bookstore_and_prints_a_working_token() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port, _admin) = common::spawn_ready(|port, admin| {
        let mut cmd = bin();
        cmd.arg("demo")
            .arg("--dir")
            .arg(dir.path().join("demo"))
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{admin}")])
            .args(["--log-level", "warn"])
            .stdout(Stdio::piped());
        cmd
    })
    .await;
    let stdout = child.stdout.take().unwrap();
    let token = tokio::task::spawn_blocking(move || {
        let mut token = None;
        // Read to the end so the demo never writes into a closed pipe.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(t) = line.trim().strip_prefix("export TOKEN=") {
                token = Some(t.to_string());
            }
            if line.starts_with("Tables and views:") {
                break;
            }
        }
        token
    })
    .await
    .unwrap()
    .expect("demo printed no token");
    let r = get_from(port, "/books?select=title&author_id=eq.3", Some(&token)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), r#"[{"title":"Frankenstein"}]"#);
    // The README's full-text example: the bookstore's external-content FTS5 index.
    let r = get_from(
        port,
        "/books?select=title&order=id&title=wfts.adventures%20or%20%22war%20and%20peace%22",
        Some(&token),
    )
    .await;
    assert_eq!(
        r.text().await.unwrap(),
        r#"[{"title":"War and Peace"},{"title":"Adventures of Huckleberry Finn"},{"title":"The Adventures of Tom Sawyer"}]"#
    );
    assert_eq!(get_from(port, "/books", None).await.status(), 401);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(dir.path().join("demo/bookstore.db").exists());
    assert!(dir.path().join("demo/jwt-secret").exists());
}

#[tokio::test]
async fn migrate_is_go_compatible_and_a_running_server_sees_it() {
    let s = Server::start_with(Options {
        allow: format!("{},shelves", common::ALL_TABLES),
        ..Options::default()
    })
    .await;
    s.error("/shelves", 404, "PGRST205").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("1_shelves.up.sql"),
        "CREATE TABLE shelves (id INTEGER PRIMARY KEY, label TEXT DEFAULT \"new\");\nINSERT INTO shelves (id) VALUES (1);",
    )
    .unwrap();
    std::fs::write(dir.path().join("1_shelves.down.sql"), "DROP TABLE shelves;").unwrap();
    let migrate = |extra: &[&str]| {
        bin()
            .arg("migrate")
            .arg("--db-dsn")
            .arg(&s.db)
            .args(extra)
            .arg(dir.path())
            .output()
            .unwrap()
    };
    testkit::assert_success(&migrate(&[]));
    assert_eq!(
        s.json("/shelves", 200).await,
        serde_json::json!([{"id": 1, "label": "new"}])
    );
    // The writer sees the new table too, defaults and all.
    let r = post(
        &s,
        "/shelves?select=id,label",
        &[("Prefer", "return=representation")],
        r#"{"id":2}"#,
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json(), serde_json::json!([{"id": 2, "label": "new"}]));
    assert_eq!(migration_state(&s), (1, false));
    assert!(
        migrate(&[]).status.success(),
        "a second run changes nothing"
    );
    testkit::assert_success(&migrate(&["--direction", "down", "--step", "1"]));
    s.error("/shelves", 404, "PGRST205").await;
    assert!(
        !migrate(&["--direction", "down", "--step", "1"])
            .status
            .success()
    );
    // A failing migration: a clear error, rolled back, and the version left dirty.
    std::fs::write(
        dir.path().join("2_broken.up.sql"),
        "CREATE TABLE half (id INTEGER); INSERT INTO nowhere VALUES (1);",
    )
    .unwrap();
    let out = migrate(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2_broken.up.sql")
            && err.contains("no such table: nowhere")
            && err.contains("dirty at version 2"),
        "{err}"
    );
    assert_eq!(migration_state(&s), (2, true));
    let half: i64 = s
        .sqlite()
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'half'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(half, 0, "the failed migration was rolled back");
    s.json("/shelves", 200).await;
    let out = migrate(&[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Dirty database version 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Go sqlite-rest's boolean syntax (pflag), as its Helm chart passes flags:
/// `--log-devel`, `--log-devel=true`, `--log-devel=false`, or SQLITEREST_LOG_DEVEL, on
/// `migrate` — whose migrations directory right after a bare `--log-devel` stays the
/// directory. Human-readable logs vs JSON lines show which value was taken.
#[test]
fn boolean_flags_take_go_syntax_on_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    let db = dir.path().join("m.db");
    // (flags before the directory, SQLITEREST_LOG_DEVEL, human-readable logs expected)
    let cases: [(&[&str], Option<&str>, bool); 8] = [
        (&[], None, false),
        (&["--log-devel"], None, true),
        (&["--log-devel=true"], None, true),
        (&["--log-devel=false"], None, false),
        (&["--log-devel=1"], None, true),
        (&[], Some("true"), true),
        (&[], Some("false"), false),
        (&["--log-devel=false"], Some("true"), false),
    ];
    for (flags, env, human) in cases {
        let mut cmd = bin();
        cmd.arg("migrate")
            .arg("--db-dsn")
            .arg(&db)
            .args(flags)
            .arg(&migrations)
            .env_remove("SQLITEREST_LOG_DEVEL");
        if let Some(v) = env {
            cmd.env("SQLITEREST_LOG_DEVEL", v);
        }
        let out = cmd.output().unwrap();
        testkit::assert_success(&out);
        let logs = String::from_utf8_lossy(&out.stderr);
        let line = logs
            .lines()
            .find(|l| l.contains("no pending migrations"))
            .unwrap_or_else(|| panic!("{flags:?} {env:?}: no log line in {logs}"));
        assert_eq!(
            !line.starts_with('{'),
            human,
            "{flags:?} with SQLITEREST_LOG_DEVEL={env:?} logged {line:?}"
        );
    }
    // A value that is no boolean is refused, naming the flag.
    let out = bin()
        .args(["migrate", "--db-dsn"])
        .arg(&db)
        .arg("--log-devel=maybe")
        .arg(&migrations)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--log-devel"), "{err}");
}

/// `serve --insecure-disable-auth` in the Go chart's forms: `=false` (or the environment
/// variable false) with no key is refused as if the flag were absent; `=true` and the
/// environment variable true serve without a token.
#[tokio::test]
async fn boolean_flags_take_go_syntax_on_serve() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    common::create_fixture_db(&db);
    let serve = |flags: &[&str], env: Option<&str>| {
        let mut cmd = bin();
        cmd.arg("serve")
            .arg("--db-dsn")
            .arg(&db)
            .args(flags)
            .args(["--security-allow-table", "clients"])
            .env_remove("SQLITEREST_INSECURE_DISABLE_AUTH")
            .stdout(Stdio::null());
        if let Some(v) = env {
            cmd.env("SQLITEREST_INSECURE_DISABLE_AUTH", v);
        }
        cmd
    };
    for (flags, env) in [
        (&["--insecure-disable-auth=false"][..], None),
        (&[][..], Some("false")),
    ] {
        let out = serve(flags, env)
            .args(["--http-addr", "127.0.0.1:0", "--metrics-addr", ""])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flags:?} {env:?} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("specify --auth-token-file"),
            "{flags:?} {env:?}: {err}"
        );
    }
    for (flags, env) in [
        (&["--insecure-disable-auth=true"][..], None),
        (&["--insecure-disable-auth=TRUE"][..], Some("false")),
        (&[][..], Some("true")),
    ] {
        let (mut child, port, _admin) = common::spawn_ready(|port, admin| {
            let mut cmd = serve(flags, env);
            cmd.args(["--http-addr", &format!("127.0.0.1:{port}")])
                .args(["--metrics-addr", &format!("127.0.0.1:{admin}")])
                .args(["--log-level", "warn"]);
            cmd
        })
        .await;
        let r = get_from(port, "/clients?select=name&order=id", None).await;
        assert_eq!(r.status(), 200, "{flags:?} {env:?}");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// The TCP sockets listening in the network namespace of process `pid`, as
/// `(address, port)` from `/proc/<pid>/net/tcp` (IPv4) and `tcp6`: the address in the kernel's
/// hex (`0100007F` is 127.0.0.1, `00000000` every interface).
fn listening_sockets(pid: u32) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Field 3 is the state: 0A is LISTEN.
            if fields.len() > 3 && fields[3] == "0A" {
                let (addr, port) = fields[1].rsplit_once(':').unwrap();
                out.push((addr.to_string(), u16::from_str_radix(port, 16).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Runs `sqlite-rest demo` with `extra` flags in a network namespace of its own (`unshare
/// -rn`: its own loopback, so the default ports 8080/8081 are always free, and no root
/// needed), waits until it listens on both ports and returns the listening sockets.
async fn demo_sockets_in_own_netns(
    unshare: &std::path::Path,
    extra: &[&str],
) -> Vec<(String, u16)> {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(unshare)
        .args(["-rn", env!("CARGO_BIN_EXE_sqlite-rest"), "demo", "--dir"])
        .arg(dir.path().join("demo"))
        .args(["--no-replication", "--log-level", "warn"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let sockets = loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "the demo exited ({status}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let sockets = listening_sockets(child.id());
        let ports: Vec<u16> = sockets.iter().map(|s| s.1).collect();
        if ports.contains(&8080) && ports.contains(&8081) {
            break sockets;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not listen: {sockets:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    sockets
}

#[tokio::test]
async fn demo_listens_on_loopback_unless_asked() {
    let Some(unshare) = testkit::require_tool(testkit::Tool::Unshare, "demo_listens_on_loopback")
    else {
        return;
    };
    // The defaults: the API and the admin port on 127.0.0.1 only.
    let sockets = demo_sockets_in_own_netns(&unshare, &[]).await;
    assert_eq!(
        sockets,
        [
            ("0100007F".to_string(), 8080),
            ("0100007F".to_string(), 8081)
        ],
        "the demo must listen on 127.0.0.1 only"
    );
    // Asked for every interface: `:8080`, as `serve` reads it.
    let sockets = demo_sockets_in_own_netns(
        &unshare,
        &["--http-addr", ":8080", "--metrics-addr", ":8081"],
    )
    .await;
    assert_eq!(
        sockets,
        [
            ("00000000".to_string(), 8080),
            ("00000000".to_string(), 8081)
        ]
    );
    // `serve` keeps the Go version's defaults: every interface.
    let out = bin().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("[default: :8080]") && help.contains("[default: :8081]"),
        "{help}"
    );
}

/// `serve --insecure-disable-auth --db-dsn <db>` plus `extra` on free ports, its stderr in
/// `log`.
fn serve_logged(db: &std::path::Path, log: &std::path::Path, extra: &[&str]) -> Command {
    let mut cmd = bin();
    cmd.args(["serve", "--insecure-disable-auth", "--db-dsn"])
        .arg(db)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()));
    cmd
}

#[tokio::test]
async fn a_missing_database_is_created_loudly_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let typo = dir.path().join("tpyo.db");
    // --db-must-exist, and its environment variable: refused, nothing created.
    for (flag, env) in [
        (Some("--db-must-exist"), None),
        (Some("--db-must-exist=true"), None),
        (None, Some("true")),
    ] {
        let mut cmd = serve_logged(&typo, &log, flag.as_slice());
        cmd.args(["--http-addr", "127.0.0.1:0", "--metrics-addr", ""]);
        if let Some(v) = env {
            cmd.env("SQLITEREST_DB_MUST_EXIST", v);
        }
        let status = cmd.status().unwrap();
        let logs = std::fs::read_to_string(&log).unwrap();
        assert!(!status.success(), "{flag:?} {env:?} started:\n{logs}");
        assert!(
            logs.contains("does not exist (--db-must-exist)")
                && logs.contains(typo.to_str().unwrap()),
            "{logs}"
        );
        assert!(!typo.exists(), "{flag:?} {env:?} created the database");
    }
    // Without it the file is created, as the Go version did, with a warning naming it.
    let (mut child, port, _admin) = common::spawn_ready(|port, admin| {
        let mut cmd = serve_logged(&typo, &log, &[]);
        cmd.args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{admin}")]);
        cmd
    })
    .await;
    assert_eq!(get_from(port, "/anything", None).await.status(), 404);
    child.kill().unwrap();
    child.wait().unwrap();
    let logs = std::fs::read_to_string(&log).unwrap();
    let warning = logs
        .lines()
        .find(|l| l.contains("created a new, empty database"))
        .unwrap_or_else(|| panic!("no warning about the new database:\n{logs}"));
    let warning: serde_json::Value = serde_json::from_str(warning).unwrap();
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert_eq!(warning["db"], typo.to_str().unwrap(), "{warning}");
    assert!(typo.exists());
    // An existing database: no warning, and --db-must-exist starts.
    let (mut child, _port, _admin) = common::spawn_ready(|port, admin| {
        let mut cmd = serve_logged(&typo, &log, &["--db-must-exist"]);
        cmd.args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{admin}")]);
        cmd
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(!logs.contains("created a new, empty database"), "{logs}");
}

#[tokio::test]
async fn db_must_exist_with_replication_accepts_a_restore_only() {
    use common::replica::Setup;
    let setup = Setup::file();
    let log = setup.dir.path().join("must-exist.log");
    let serve = |port: u16, admin: u16| {
        let mut cmd = setup.serve_cmd(port, admin);
        cmd.arg("--db-must-exist")
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
        cmd
    };
    // No database and an empty replica: nothing to restore, refused before the file exists.
    let status = serve(testkit::free_port(), testkit::free_port())
        .status()
        .unwrap();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "started:\n{logs}");
    assert!(
        logs.contains("refusing to create a new, empty database"),
        "{logs}"
    );
    assert!(!setup.db.exists(), "the database was created");
    // A replicated database, then lost: --db-must-exist restores it.
    common::replica::create_db(&setup.db, 3);
    let mut first = setup.serve_or_log().await;
    first.replicated_txid("0000000000000000").await;
    first.stop().await;
    setup.lose_database();
    let mut restored = setup.spawn_or_log(serve).await;
    assert_eq!(restored.rows().await.as_array().unwrap().len(), 3);
    restored.stop().await;
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(!logs.contains("created a new, empty database"), "{logs}");
}

#[tokio::test]
async fn allowed_tables_that_do_not_exist_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fixture.db");
    common::create_fixture_db(&db);
    let log = dir.path().join("serve.log");
    let (mut child, port, _admin) = common::spawn_ready(|port, admin| {
        let mut cmd = serve_logged(
            &db,
            &log,
            &["--security-allow-table", "clients,clinets,later"],
        );
        cmd.args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{admin}")]);
        cmd
    })
    .await;
    let warnings = |logs: &str| -> Vec<serde_json::Value> {
        logs.lines()
            .filter(|l| l.contains("--security-allow-table names tables"))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let logs = std::fs::read_to_string(&log).unwrap();
    let found = warnings(&logs);
    assert!(!found.is_empty(), "no warning at start:\n{logs}");
    assert_eq!(found[0]["level"], "WARN");
    assert_eq!(found[0]["tables"], "clinets,later", "{logs}");
    // A migration creates one of them: the reload says which is still missing.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE later(id INTEGER PRIMARY KEY)")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // A request naming the new table makes the server look at the schema again.
        let status = get_from(port, "/later", None).await.status();
        let logs = std::fs::read_to_string(&log).unwrap();
        let found = warnings(&logs);
        if status == 200 && found.len() >= 2 {
            assert_eq!(found.last().unwrap()["tables"], "clinets", "{logs}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no warning after the reload ({status}):\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
