//! The OpenAPI document at `GET /` over real HTTP: its content negotiation, methods and
//! authentication, that it follows the schema and the allow-list, that the real
//! `openapi-spec-validator` accepts it, and a bounded schemathesis run against the release
//! binary from that very document (no 5xx, no response outside the documented schema).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Options, Server, get, send};
use reqwest::Method;
use serde_json::Value;

/// `GET /` with the test token: the document, after checking status and headers.
async fn document(s: &Server) -> Value {
    let r = get(s, "/", &[("Accept", "application/openapi+json")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("application/openapi+json; charset=utf-8")
    );
    r.json()
}

/// Runs `program args…` in `dir` (schemathesis keeps state in its working directory) on a
/// blocking thread; its output.
async fn run(program: &Path, dir: &Path, args: Vec<String>) -> std::process::Output {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn root_serves_the_document_to_who_may_read() {
    let s = Server::start().await;
    let d = document(&s).await;
    assert_eq!(d["openapi"], "3.1.0");
    // Wildcards and plain JSON get it too; HEAD gets the headers only.
    for accept in ["*/*", "application/json", "text/csv;q=0.5, application/*"] {
        let r = get(&s, "/", &[("Accept", accept)]).await;
        assert_eq!(r.status, 200, "{accept}: {}", r.body);
        assert_eq!(r.json(), d, "{accept}");
    }
    let r = send(&s, Method::HEAD, "/", &[], None).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(
        r.header("content-type"),
        Some("application/openapi+json; charset=utf-8")
    );
    // Any other media type: 406 PGRST107 naming what was asked.
    let r = get(&s, "/", &[("Accept", "text/csv")]).await;
    let v = r.error(406, "PGRST107");
    assert_eq!(
        v["message"],
        "None of these media types are available: text/csv"
    );
    // The root only reads (PostgREST's 405 for the rest); OPTIONS says so.
    let r = send(&s, Method::POST, "/", &[], Some("{}")).await;
    r.error(405, "PGRST117");
    let r = send(&s, Method::OPTIONS, "/", &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("allow"), Some("OPTIONS,GET,HEAD"));
    // It describes the schema, so it needs a token like every other route.
    let r = s.client.get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().await.unwrap();
    common::assert_error_shape(&v, "PGRST302");
    // The document says so.
    assert_eq!(d["security"][0]["bearerAuth"], serde_json::json!([]));
}

#[tokio::test]
async fn document_shows_what_the_allow_list_exposes_and_follows_the_schema() {
    // `later` is allowed but does not exist yet.
    let s = Server::start_with(Options {
        allow: format!("{},later", common::ALL_TABLES),
        ..Options::default()
    })
    .await;
    let d = document(&s).await;
    let paths = d["paths"].as_object().unwrap();
    for table in common::ALL_TABLES.split(',') {
        let path = format!("/{}", table.replace(' ', "%20"));
        assert!(paths.contains_key(&path), "{path} is missing");
    }
    // `secrets` and `endless` exist but are not on the allow-list: not even mentioned.
    let text = d.to_string();
    assert!(!text.contains("secret"), "a hidden table leaked");
    assert!(!text.contains("endless"), "a hidden view leaked");
    // Methods as OPTIONS answers them: a read-only view, a table without a primary key.
    assert_eq!(
        paths["/projects_view"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["get"]
    );
    assert!(paths["/no_pk"].get("put").is_none());
    assert!(paths["/projects"].get("put").is_some());
    let projects = &d["components"]["schemas"]["projects"]["properties"];
    assert_eq!(projects["active"]["type"], "boolean");
    assert_eq!(
        projects["budget"]["type"],
        serde_json::json!(["number", "null"])
    );
    assert_eq!(
        d["components"]["schemas"]["projects.insert"]["required"],
        serde_json::json!(["name"])
    );

    // A table created by another process appears once the schema cache sees it (the
    // rendered document is kept only as long as the cache it came from).
    assert!(paths.get("/later").is_none());
    s.exec_sql("CREATE TABLE later (id INTEGER PRIMARY KEY, note TEXT NOT NULL)");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = document(&s).await;
        if d["paths"].get("/later").is_some() {
            assert_eq!(
                d["components"]["schemas"]["later.insert"]["required"],
                serde_json::json!(["note"])
            );
            break;
        }
        assert!(Instant::now() < deadline, "the new table never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A column added while the server runs shows too.
    s.exec_sql("ALTER TABLE later ADD COLUMN extra REAL");
    loop {
        let d = document(&s).await;
        if d["components"]["schemas"]["later"]["properties"]
            .get("extra")
            .is_some()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the new column never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1() {
    let Some(validator) = testkit::require_tool(
        testkit::Tool::OpenApiSpecValidator,
        "the_document_is_valid_openapi_3_1",
    ) else {
        return;
    };
    let s = Server::start().await;
    let d = document(&s).await;
    let file = s.dir.path().join("openapi.json");
    std::fs::write(&file, d.to_string()).unwrap();
    let out = run(
        &validator,
        s.dir.path(),
        vec![
            "--schema".into(),
            "3.1".into(),
            "--errors".into(),
            "all".into(),
            file.display().to_string(),
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "invalid document:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(": OK"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_undocumented_response() {
    let test = "schemathesis_finds_no_server_error_and_no_undocumented_response";
    let Some(schemathesis) = testkit::require_tool(testkit::Tool::Schemathesis, test) else {
        return;
    };
    let Some(bin) = testkit::require_tool(testkit::Tool::ReleaseBinary, test) else {
        return;
    };
    let s = Server::start_with(Options {
        bin: Some(bin),
        ..Options::default()
    })
    .await;
    let d = document(&s).await;
    let file = s.dir.path().join("openapi.json");
    std::fs::write(&file, d.to_string()).unwrap();
    let report = s.dir.path().join("schemathesis");
    let out = run(
        &schemathesis,
        s.dir.path(),
        vec![
            "run".into(),
            file.display().to_string(),
            "--url".into(),
            s.base.clone(),
            "--header".into(),
            format!("Authorization: Bearer {}", s.token()),
            // No 5xx; every status, content type and body as documented; a request without
            // the token refused. Not `positive_data_acceptance`: filters, `select` and
            // `order` are documented as strings, and most strings are not PostgREST's
            // grammar (400 is the right answer to them). Not `negative_data_rejection`: the
            // grammar accepts strings no JSON Schema pattern describes.
            "--checks".into(),
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,ignored_auth".into(),
            // Positive and negative data; a bounded number of examples per operation, one
            // worker, a fixed seed: the same cases on every run.
            "--mode".into(),
            "all".into(),
            "--max-examples".into(),
            "12".into(),
            "--workers".into(),
            "1".into(),
            "--seed".into(),
            "20261207".into(),
            "--generation-database".into(),
            "none".into(),
            "--request-timeout".into(),
            "30".into(),
            "--no-color".into(),
            "--report-dir".into(),
            report.display().to_string(),
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // It really tested every operation (a document it could not read would test none).
    let operations = d["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum::<usize>();
    assert!(
        stdout.contains(&format!("Tested: {operations}")),
        "not every one of {operations} operations was tested:\n{stdout}"
    );
    // The server is still well.
    assert_eq!(s.health().await.0, 200);
}

/// Found while checking what schemathesis' `response_schema_conformance` asserts: SQLite keeps a value its column's affinity cannot convert
/// (`"abc"` in a REAL column stays text), so a write accepted it and every later read of the
/// table answered rows outside the documented schema. Such a write is now 400 22P02, as
/// PostgreSQL refuses it; values the type can hold still go in, converted.
#[tokio::test]
async fn writes_refuse_values_their_column_type_cannot_hold() {
    let s = Server::start().await;
    let repr = [("Prefer", "return=representation")];
    for (body, ty, shown) in [
        (r#"{"name":"x","budget":"abc"}"#, "numeric", "abc"),
        (r#"{"name":"x","budget":[1]}"#, "numeric", "[1]"),
        (r#"{"name":"x","client_id":1.5}"#, "integer", "1.5"),
        (r#"{"name":"x","client_id":"one"}"#, "integer", "one"),
        (r#"{"name":"x","active":"yes"}"#, "boolean", "yes"),
        (r#"{"name":"x","active":2}"#, "boolean", "2"),
    ] {
        let r = common::post(&s, "/projects", &repr, body).await;
        let v = r.error(400, "22P02");
        assert_eq!(
            v["message"],
            format!("invalid input syntax for type {ty}: \"{shown}\""),
            "{body}"
        );
    }
    let r = send(
        &s,
        Method::PATCH,
        "/projects?id=eq.1",
        &repr,
        Some(r#"{"budget":"lots"}"#),
    )
    .await;
    r.error(400, "22P02");
    let r = common::post(
        &s,
        "/projects",
        &[
            ("Content-Type", "text/csv"),
            ("Prefer", "return=representation"),
        ],
        "name,budget\nz,abc",
    )
    .await;
    r.error(400, "22P02");
    // What the types can hold goes in, as the type.
    let r = common::post(
        &s,
        "/projects",
        &repr,
        r#"{"name":"ok","budget":"12.5","client_id":"2","active":"true"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let row = &r.json()[0];
    assert_eq!(row["budget"], 12.5);
    assert_eq!(row["client_id"], 2);
    assert_eq!(row["active"], true);
    // Every row read back is inside the documented types.
    for row in s.json("/projects", 200).await.as_array().unwrap() {
        assert!(
            row["budget"].is_number() || row["budget"].is_null(),
            "{row}"
        );
        assert!(
            row["client_id"].is_i64() || row["client_id"].is_null(),
            "{row}"
        );
        assert!(row["active"].is_boolean(), "{row}");
    }
    // Dates and times are not checked: SQLite applications keep them as ISO 8601 text or as
    // numbers (unix time), and the document says both.
    s.exec_sql("ALTER TABLE projects ADD COLUMN due TIMESTAMP");
    let deadline = Instant::now() + Duration::from_secs(30);
    let due = loop {
        let d = document(&s).await;
        if let Some(due) = d["components"]["schemas"]["projects"]["properties"].get("due") {
            break due.clone();
        }
        assert!(Instant::now() < deadline, "the new column never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(due["type"], serde_json::json!(["string", "number", "null"]));
    let r = common::post(
        &s,
        "/projects",
        &repr,
        r#"[{"name":"a","due":"2026-12-07T09:30:00Z"},{"name":"b","due":1796635800}]"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()[1]["due"], 1796635800);
}
