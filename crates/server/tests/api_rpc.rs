//! RPC over named SQL files (`--rpc-dir`) over real HTTP against the release `sqlite-rest`
//! binary: read and write functions over GET and POST, set results with filters, order,
//! limit, `Range` and counts, scalar and row shapes, every error PostgREST answers (PGRST101,
//! PGRST202 with its hint, 25006, 22P02), start-up refusing a broken file, reloads on SIGUSR1
//! and on a file change, writing functions replicated to a file replica (restored with the
//! real Litestream), and the bookstore demo's two functions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::replica::{Running, Setup, create_db, ids};
use common::{Options, Server, get, hs_token, p, post, send, spawn_ready};
use reqwest::Method;
use serde_json::{Value, json};
use testkit::litestream::Litestream;

/// The functions every test server starts with, over the fixture's `clients`/`projects`.
const FUNCTIONS: &[(&str, &str)] = &[
    (
        "projects_of",
        "-- The projects of a client.\n-- params: client_id integer\n-- returns: setof\n\
         SELECT id, name, client_id, budget, settings, logo FROM projects WHERE client_id = :client_id;\n",
    ),
    (
        "budget_over",
        "-- params: min real, active boolean\n-- returns: rows\n\
         SELECT id, name, budget FROM projects WHERE budget > :min AND (:active = 0 OR id <> 3)",
    ),
    (
        "project_count",
        "-- returns: scalar\nSELECT count(*) FROM projects",
    ),
    (
        "client",
        "-- params: id integer\n-- returns: row\nSELECT id, name FROM clients WHERE id = :id",
    ),
    (
        "add_client",
        "-- params: name text\n-- returns: row\n-- writes\n\
         INSERT INTO clients (name) VALUES (:name) RETURNING id, name",
    ),
    (
        "rename_projects",
        "-- params: client_id integer, suffix text\n-- returns: setof\n-- writes\n\
         UPDATE projects SET name = name || :suffix WHERE client_id = :client_id RETURNING id, name",
    ),
    (
        "forget_client",
        "-- params: id integer\n-- returns: void\n-- writes\nDELETE FROM clients WHERE id = :id",
    ),
];

fn write_functions(dir: &Path, functions: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, sql) in functions {
        std::fs::write(dir.join(format!("{name}.sql")), sql).unwrap();
    }
}

/// The release server over the fixture with [`FUNCTIONS`] in `rpc/` of its own directory;
/// `None` (skipped) without the release build.
async fn start(test: &str) -> Option<(Server, tempfile::TempDir)> {
    let bin = testkit::require_tool(testkit::Tool::ReleaseBinary, test)?;
    let fns = tempfile::tempdir().unwrap();
    write_functions(fns.path(), FUNCTIONS);
    let s = Server::start_with(Options {
        bin: Some(bin),
        args: vec!["--rpc-dir".into(), fns.path().display().to_string()],
        ..Options::default()
    })
    .await;
    Some((s, fns))
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_functions_answer_get_and_post_like_a_table() {
    let Some((s, _fns)) = start("rpc_reads").await else {
        return;
    };
    // GET: the arguments from the query string; the result's columns render by their types.
    let r = get(&s, "/rpc/projects_of?client_id=1", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(r.header("content-range"), Some("0-1/*"));
    assert_eq!(
        r.json(),
        json!([
            {"id": 1, "name": "Windows 7", "client_id": 1, "budget": 1500.5,
             "settings": {"foo": {"int": 1, "bar": "baz"}, "tags": ["a", "b"]}, "logo": "\\xdeadbeef"},
            {"id": 2, "name": "Windows 10", "client_id": 1, "budget": 2000.25,
             "settings": {"foo": {"int": 2, "bar": "qux"}, "tags": ["b"]}, "logo": null}
        ])
    );
    // POST: the same call from a JSON object body.
    let r = post(&s, "/rpc/projects_of?select=id", &[], r#"{"client_id": 2}"#).await;
    assert_eq!((r.status, r.json()), (200, json!([{"id": 3}, {"id": 4}])));
    // select, filters, order, limit/offset on the result.
    let v = s
        .query(
            "/rpc/budget_over",
            &[
                ("min", "1"),
                ("active", "false"),
                ("select", "name,b:budget"),
                ("budget", "lt.2000"),
                ("order", "budget.desc"),
            ],
        )
        .await;
    assert_eq!(
        v,
        json!([{"name": "Windows 7", "b": 1500.5}, {"name": "OSX", "b": 99.99}])
    );
    let v = s
        .query(
            "/rpc/budget_over",
            &[
                ("min", "0"),
                ("active", "true"),
                ("or", "(id.eq.1,name.like.*X)"),
                ("order", "id"),
            ],
        )
        .await;
    assert_eq!(names(&v), ["Windows 7", "OSX"]);
    // Range and an exact count, with PostgREST's 206 and Content-Range.
    let r = get(
        &s,
        "/rpc/budget_over?min=0&active=false&order=id&select=id",
        &[("Range", "1-2"), ("Prefer", "count=exact")],
    )
    .await;
    assert_eq!(r.status, 206, "{}", r.body);
    assert_eq!(r.header("content-range"), Some("1-2/4"));
    assert_eq!(r.header("preference-applied"), Some("count=exact"));
    assert_eq!(r.json(), json!([{"id": 2}, {"id": 4}]));
    let r = post(
        &s,
        "/rpc/budget_over?order=id.desc&limit=1&offset=1&select=id",
        &[("Prefer", "count=exact")],
        r#"{"min": 0, "active": true}"#,
    )
    .await;
    assert_eq!((r.status, r.header("content-range")), (206, Some("1-1/4")));
    assert_eq!(r.json(), json!([{"id": 4}]));
    // HEAD: the headers of GET, no body.
    let r = send(&s, Method::HEAD, "/rpc/projects_of?client_id=1", &[], None).await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    // CSV.
    let r = get(
        &s,
        "/rpc/projects_of?client_id=2&select=id,name&order=id",
        &[("Accept", "text/csv")],
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "id,name\n3,IOS\n4,OSX"));
    // A scalar is the bare value; a row an object, null without one.
    let r = get(&s, "/rpc/project_count", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "5"));
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(
        post(&s, "/rpc/project_count", &[], "").await.body,
        "5",
        "an empty body counts as {{}}"
    );
    let r = get(&s, "/rpc/client?id=2", &[]).await;
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"id": 2, "name": "Apple"}))
    );
    let r = post(&s, "/rpc/client?select=name", &[], r#"[{"id": 1}]"#).await;
    assert_eq!((r.status, r.json()), (200, json!({"name": "Microsoft"})));
    let r = get(&s, "/rpc/client?id=99", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "null"));
    // OPTIONS: PostgREST's Allow by volatility.
    let r = send(&s, Method::OPTIONS, "/rpc/client", &[], None).await;
    assert_eq!(r.header("allow"), Some("OPTIONS,GET,HEAD,POST"));
    let r = send(&s, Method::OPTIONS, "/rpc/add_client", &[], None).await;
    assert_eq!(r.header("allow"), Some("OPTIONS,POST"));
    // Arguments are bound, never spliced.
    let hostile = "1; DROP TABLE clients; --";
    let before = s.snapshot();
    let r = post(
        &s,
        "/rpc/projects_of",
        &[],
        &json!({ "client_id": hostile }).to_string(),
    )
    .await;
    r.error(400, "22P02");
    let r = get(&s, &p("/rpc/client", &[("id", "1 OR 1=1")]), &[]).await;
    r.error(400, "22P02");
    assert_eq!(s.snapshot(), before);
    // The OpenAPI document describes the functions: GET and POST for a reader, POST only for
    // a writer, 204 for void.
    let doc = s.json("/", 200).await;
    let paths = &doc["paths"];
    assert!(paths["/rpc/projects_of"]["get"].is_object(), "{paths}");
    assert!(paths["/rpc/projects_of"]["post"].is_object(), "{paths}");
    assert!(paths["/rpc/add_client"]["get"].is_null(), "{paths}");
    assert!(paths["/rpc/add_client"]["post"].is_object(), "{paths}");
    assert!(
        paths["/rpc/forget_client"]["post"]["responses"]["204"].is_object(),
        "{paths}"
    );
    // Without a token: 401, as for tables.
    let r = s
        .client
        .get(format!("{}/rpc/project_count", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_functions_run_through_the_writer_on_post_only() {
    let Some((s, _fns)) = start("rpc_writes").await else {
        return;
    };
    let r = post(&s, "/rpc/add_client", &[], r#"{"name": "Google"}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"id": 3, "name": "Google"}));
    let n: i64 = s
        .sqlite()
        .query_row(
            "SELECT count(*) FROM clients WHERE name = 'Google'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
    // A constraint the statement violates: PostgreSQL's words, 409, nothing written.
    let r = post(&s, "/rpc/add_client", &[], r#"{"name": "Google"}"#).await;
    r.error(409, "23505");
    // GET (and HEAD) of a writing function: 405 25006, and it did not run.
    let before = s.snapshot();
    let v = s.error("/rpc/add_client?name=Amazon", 405, "25006").await;
    assert_eq!(
        v["message"],
        "cannot execute INSERT in a read-only transaction"
    );
    let r = send(&s, Method::HEAD, "/rpc/add_client?name=Amazon", &[], None).await;
    assert_eq!(r.status, 405);
    assert_eq!(s.snapshot(), before);
    // A set returned by a write: every row written, the answer filtered and ordered.
    let r = post(
        &s,
        "/rpc/rename_projects?id=gt.1&order=id.desc",
        &[("Prefer", "count=exact")],
        r#"{"client_id": 1, "suffix": " (old)"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!([{"id": 2, "name": "Windows 10 (old)"}]));
    assert_eq!(r.header("content-range"), Some("0-0/1"));
    let v = s
        .query(
            "/projects",
            &[("select", "name"), ("client_id", "eq.1"), ("order", "id")],
        )
        .await;
    assert_eq!(names(&v), ["Windows 7 (old)", "Windows 10 (old)"]);
    // Void: 204 without a body.
    let r = post(&s, "/rpc/forget_client", &[], r#"{"id": 3}"#).await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert!(r.header("content-type").is_none());
    let n: i64 = s
        .sqlite()
        .query_row("SELECT count(*) FROM clients", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
    // Without replication a replicated write cannot be promised: refused before it runs.
    let r = post(
        &s,
        "/rpc/add_client",
        &[("Prefer", "durability=replicated")],
        r#"{"name": "Nobody"}"#,
    )
    .await;
    assert_eq!(r.status / 100, 4, "{}", r.body);
    let n: i64 = s
        .sqlite()
        .query_row(
            "SELECT count(*) FROM clients WHERE name = 'Nobody'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_has_postgrests_shape() {
    let Some((s, _fns)) = start("rpc_errors").await else {
        return;
    };
    for method in [Method::DELETE, Method::PATCH, Method::PUT] {
        let r = send(&s, method.clone(), "/rpc/client?id=1", &[], Some("{}")).await;
        let v = r.error(405, "PGRST101");
        assert_eq!(
            v["message"],
            format!("Cannot use the {method} method on RPC")
        );
    }
    // An unknown argument set: PostgREST's message, details and hint.
    let r = post(&s, "/rpc/budget_over", &[], r#"{"min": 1, "x": 2}"#).await;
    let v = r.error(404, "PGRST202");
    assert_eq!(
        v,
        json!({
            "code": "PGRST202",
            "message": "Could not find the function public.budget_over(min, x) in the schema cache",
            "details": "Searched for the function public.budget_over with parameters min, x, but no matches were found in the schema cache.",
            "hint": "Perhaps you meant to call the function public.budget_over(active, min)"
        })
    );
    // A missing argument, over GET.
    let v = s.error("/rpc/budget_over?min=1", 404, "PGRST202").await;
    assert_eq!(
        v["message"],
        "Could not find the function public.budget_over(min) in the schema cache"
    );
    // An unknown function: the closest name's signature, or no hint.
    let v = s.error("/rpc/projects_off", 404, "PGRST202").await;
    assert_eq!(
        v["message"],
        "Could not find the function public.projects_off without parameters in the schema cache"
    );
    assert_eq!(
        v["hint"],
        "Perhaps you meant to call the function public.projects_of(client_id)"
    );
    let v = s.error("/rpc/zzzzzz", 404, "PGRST202").await;
    assert_eq!(v["hint"], Value::Null);
    // A value its type does not take: PostgreSQL's 22P02.
    let v = s.error("/rpc/client?id=abc", 400, "22P02").await;
    assert_eq!(
        v["message"],
        "invalid input syntax for type integer: \"abc\""
    );
    let r = post(
        &s,
        "/rpc/budget_over",
        &[],
        r#"{"min": 1, "active": "maybe"}"#,
    )
    .await;
    let v = r.error(400, "22P02");
    assert_eq!(
        v["message"],
        "invalid input syntax for type boolean: \"maybe\""
    );
    // A body that is no JSON object.
    post(&s, "/rpc/client", &[], "{")
        .await
        .error(400, "PGRST102");
    post(&s, "/rpc/client", &[], "[1]")
        .await
        .error(400, "PGRST102");
    // Filters and select name the result's columns.
    s.error("/rpc/projects_of?client_id=1&nope=eq.1", 400, "42703")
        .await;
    s.error("/rpc/projects_of?client_id=1&select=nope", 400, "42703")
        .await;
    s.error("/rpc/projects_of?client_id=1&id=xx.1", 400, "PGRST100")
        .await;
    // Deeper paths stay PGRST125.
    s.error("/rpc/client/1", 404, "PGRST125").await;
    s.error("/rpc/", 404, "PGRST125").await;
}

/// `sqlite-rest serve` over the fixture with `--rpc-dir dir`, expected to fail: its stderr.
fn serve_fails(dir: &Path) -> String {
    let bin = testkit::require_tool(testkit::Tool::ReleaseBinary, "rpc_startup").unwrap();
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("fixture.db");
    common::create_fixture_db(&db);
    let secret = work.path().join("secret");
    std::fs::write(&secret, common::SECRET).unwrap();
    let out = common::serve_command(
        &bin,
        &db,
        testkit::free_port(),
        testkit::free_port(),
        common::ALL_TABLES,
    )
    .arg("--auth-token-file")
    .arg(&secret)
    .arg("--rpc-dir")
    .arg(dir)
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .output()
    .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_refuses_a_broken_function_file() {
    if testkit::require_tool(testkit::Tool::ReleaseBinary, "rpc_startup").is_none() {
        return;
    }
    for (file, sql, reason) in [
        (
            "broken.sql",
            "-- returns: setof\nSELECT nope FROM clients",
            "no such column: nope",
        ),
        (
            "two.sql",
            "-- returns: scalar\nSELECT 1; SELECT 2",
            "more than one SQL statement",
        ),
        (
            "sneaky.sql",
            "-- returns: setof\nDELETE FROM clients RETURNING id",
            "does not declare `-- writes`",
        ),
        (
            "params.sql",
            "-- params: a integer\n-- returns: scalar\nSELECT :b",
            "does not declare",
        ),
        (
            "bad-name.sql",
            "-- returns: scalar\nSELECT 1",
            "not a function name",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_functions(dir.path(), &FUNCTIONS[..2]);
        std::fs::write(dir.path().join(file), sql).unwrap();
        let stderr = serve_fails(dir.path());
        assert!(
            stderr.contains(file) && stderr.contains(reason),
            "{file}: {stderr}"
        );
    }
    let stderr = serve_fails(Path::new("/nonexistent/rpc"));
    assert!(stderr.contains("/nonexistent/rpc"), "{stderr}");
}

/// Polls `path` until it answers `status`, within a generous deadline.
async fn eventually(s: &Server, path: &str, status: u16) -> common::Resp {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = get(s, path, &[]).await;
        if r.status == status {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still answers {}: {}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sigusr1(s: &Server) {
    #[allow(unsafe_code)]
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(s.pid() as i32, libc::SIGUSR1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_reload_when_the_directory_changes_and_on_sigusr1() {
    let Some((s, fns)) = start("rpc_reload").await else {
        return;
    };
    // A new file is picked up.
    std::fs::write(
        fns.path().join("twice.sql"),
        "-- params: x integer\n-- returns: scalar\nSELECT :x * 2",
    )
    .unwrap();
    let r = eventually(&s, "/rpc/twice?x=21", 200).await;
    assert_eq!(r.body, "42");
    // An edited file too.
    std::fs::write(
        fns.path().join("twice.sql"),
        "-- params: x integer\n-- returns: scalar\nSELECT :x * 2 + 1",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&s, "/rpc/twice?x=21", &[]).await.body != "43" {
        assert!(Instant::now() < deadline, "the edit was not picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A broken file keeps the previous set (and is not half loaded).
    s.exec_sql("CREATE TABLE later_table (id INTEGER PRIMARY KEY, note TEXT); INSERT INTO later_table VALUES (1, 'hi');");
    let later = fns.path().join("later.sql");
    std::fs::write(
        &later,
        "-- returns: setof\nSELECT id, note FROM later_tablX",
    )
    .unwrap();
    std::fs::remove_file(fns.path().join("twice.sql")).unwrap();
    // Several polls later the previous set still answers (the broken file prevents the load).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(get(&s, "/rpc/twice?x=1", &[]).await.body, "3");
    s.error("/rpc/later", 404, "PGRST202").await;
    // Fixed in place with the same size and modification time: the poller sees no change
    // (a failed load is retried only on a change), so only SIGUSR1 reloads it. The fixed
    // file is written aside (not a `.sql` name), given the old time, then renamed over the
    // broken one: rewritten where it is, a poll between the write and the restored time saw
    // a change and loaded the fixed file before the signal.
    let mtime = std::fs::metadata(&later).unwrap().modified().unwrap();
    let fixed = fns.path().join("later.sql.new");
    std::fs::write(
        &fixed,
        "-- returns: setof\nSELECT id, note FROM later_table",
    )
    .unwrap();
    std::fs::File::options()
        .write(true)
        .open(&fixed)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::rename(&fixed, &later).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.error("/rpc/later", 404, "PGRST202").await;
    sigusr1(&s);
    let r = eventually(&s, "/rpc/later", 200).await;
    assert_eq!(r.json(), json!([{"id": 1, "note": "hi"}]));
    // The removed file is gone with that load.
    s.error("/rpc/twice?x=1", 404, "PGRST202").await;
    // A migration reloads the functions too (their files did not change): one that could not
    // load before its table existed loads once the table is created.
    std::fs::write(
        fns.path().join("counted.sql"),
        "-- returns: scalar\nSELECT count(*) FROM later_two",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.error("/rpc/counted", 404, "PGRST202").await;
    s.exec_sql(
        "CREATE TABLE later_two (id INTEGER PRIMARY KEY); INSERT INTO later_two VALUES (1), (2);",
    );
    let r = eventually(&s, "/rpc/counted", 200).await;
    assert_eq!(r.body, "2");
}

/// A FIFO named like a function file (which blocks a reader until a writer comes) fails
/// the load at once, keeping the previous set; once it is gone the directory loads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_in_the_function_directory_does_not_stall_reloads() {
    let fns = tempfile::tempdir().unwrap();
    write_functions(fns.path(), &[("one", "-- returns: scalar\nSELECT 1")]);
    let s = Server::start_with(Options {
        args: vec!["--rpc-dir".into(), fns.path().display().to_string()],
        ..Options::default()
    })
    .await;
    assert_eq!(eventually(&s, "/rpc/one", 200).await.body, "1");
    let fifo = fns.path().join("stuck.sql");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Several polls see it; the previous set still answers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(get(&s, "/rpc/one", &[]).await.body, "1");
    std::fs::remove_file(&fifo).unwrap();
    write_functions(fns.path(), &[("two", "-- returns: scalar\nSELECT 2")]);
    assert_eq!(eventually(&s, "/rpc/two", 200).await.body, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writing_function_is_replicated() {
    let test = "rpc_replicated";
    let (Some(bin), Some(ls)) = (
        testkit::require_tool(testkit::Tool::ReleaseBinary, test),
        Litestream::require(test),
    ) else {
        return;
    };
    let mut setup = Setup::file();
    setup.bin = bin;
    create_db(&setup.db, 2);
    let fns = setup.dir.path().join("rpc");
    write_functions(
        &fns,
        &[(
            "put",
            "-- params: v text\n-- returns: row\n-- writes\nINSERT INTO t (v) VALUES (:v) RETURNING id, v",
        )],
    );
    let running = setup
        .spawn_or_log(|p, a| {
            let mut cmd = setup.serve_cmd(p, a);
            cmd.arg("--rpc-dir").arg(&fns);
            cmd
        })
        .await;
    let r = running
        .client
        .post(format!("{}/rpc/put", running.base))
        .bearer_auth(running.token())
        .header("Prefer", "durability=replicated")
        .json(&json!({"v": "through rpc"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let txid = r
        .headers()
        .get("sqlite-rest-txid")
        .expect("a replicated write carries its position")
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        r.headers()
            .get("preference-applied")
            .map(|v| v.to_str().unwrap()),
        None::<&str>
    );
    let row: Value = r.json().await.unwrap();
    assert_eq!(row["v"], "through rpc");
    let id = row["id"].as_i64().unwrap();
    // Answered only once on the replica: a restore right now holds the row.
    let out = setup.dir.path().join("restored.db");
    testkit::assert_success(&ls.restore(&setup.url, &out, &[]));
    assert!(ids(&out).contains(&id), "{txid}: {:?}", ids(&out));
    drop(running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_its_two_functions() {
    let Some(bin) = testkit::require_tool(testkit::Tool::ReleaseBinary, "rpc_demo") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let (child, port, _) = spawn_ready(|port, admin| {
        let mut cmd = std::process::Command::new(&bin);
        cmd.arg("demo")
            .arg("--dir")
            .arg(&demo)
            .arg("--no-replication")
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{admin}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    })
    .await;
    let _running = Running {
        child,
        base: format!("http://127.0.0.1:{port}"),
        admin: String::new(),
        client: reqwest::Client::new(),
    };
    let token = hs_token(
        &std::fs::read(demo.join("jwt-secret")).unwrap(),
        jsonwebtoken::Algorithm::HS256,
        json!({"role": "demo"}),
    );
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let read = |path: String| {
        let (client, token) = (client.clone(), token.clone());
        async move {
            let r = client.get(path).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let v = read(format!(
        "{base}/rpc/books_by_author?author=Austen&min_rating=0&select=title,rating,reviews"
    ))
    .await;
    assert_eq!(
        v,
        json!([
            {"title": "Pride and Prejudice", "rating": 4.5, "reviews": 2},
            {"title": "Emma", "rating": 0.0, "reviews": 0},
            {"title": "Persuasion", "rating": 0.0, "reviews": 0}
        ])
    );
    let r = client
        .post(format!("{base}/rpc/add_review"))
        .bearer_auth(&token)
        .json(&json!({"book_id": 2, "reviewer": "emma fan", "rating": 5, "body": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let review: Value = r.json().await.unwrap();
    assert_eq!(
        (
            review["book_id"].clone(),
            review["reviewer"].clone(),
            review["body"].clone()
        ),
        (json!(2), json!("emma fan"), Value::Null)
    );
    // The read function sees the write.
    let v = read(format!(
        "{base}/rpc/books_by_author?author=Austen&min_rating=4&select=title&order=title"
    ))
    .await;
    assert_eq!(
        v,
        json!([{"title": "Emma"}, {"title": "Pride and Prejudice"}])
    );
    // The CHECK constraint speaks PostgreSQL's words.
    let r = client
        .post(format!("{base}/rpc/add_review"))
        .bearer_auth(&token)
        .json(&json!({"book_id": 2, "reviewer": "x", "rating": 9, "body": "?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "23514");
}
