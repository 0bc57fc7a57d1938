//! Roles and permissions (`--permissions FILE`) over real HTTP against the `sqlite-rest`
//! binary: a matrix generated from the permissions fixture (every role × relation × method:
//! the allowed ones succeed, the others get PostgREST's status and code), row filters on
//! reads, embeds, counts, `Range`, updates, deletes, inserts and upserts (WITH CHECK, an
//! invisible conflicting row), forbidden columns wherever a request names them, API keys,
//! RPC set results, the OpenAPI document per role, reloads (a changed file, a broken one
//! that keeps the previous), a broken file refusing the start, and a refusal's status by
//! the caller's role (401 only for the anonymous role, however reached).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Options, SECRET, Server, hs_token};
use jsonwebtoken::Algorithm;
use reqwest::Method;
use serde_json::{Value, json};

const SCHEMA: &str = "
CREATE TABLE owners (id TEXT PRIMARY KEY, name TEXT NOT NULL, secret TEXT);
CREATE TABLE docs (id INTEGER PRIMARY KEY, owner_id TEXT REFERENCES owners(id),
  title TEXT NOT NULL, public INTEGER NOT NULL DEFAULT 0, secret TEXT, slug TEXT UNIQUE);
INSERT INTO owners VALUES ('alice', 'Alice', 'a-secret'), ('bob', 'Bob', 'b-secret');
INSERT INTO docs VALUES (1, 'alice', 'A1', 0, 's1', 'a1'), (2, 'alice', 'A2', 1, 's2', 'a2'),
  (3, 'bob', 'B1', 0, 's3', 'b1'), (4, 'bob', 'B2', 1, 's4', 'b2');
";

/// The API key the `anon` role is reached with (its SHA-256 is in the file).
const ANON_KEY: &str = "pk-anon-0123456789";

/// The permissions fixture; `{anon_key}` is replaced by the key's hash.
const PERMISSIONS: &str = r#"
roles:
  anon:
    docs:
      read: { columns: [id, title, public], filter: "public=eq.1" }
  user:
    docs:
      read: { columns: [id, owner_id, title, public, slug], filter: "or=(public.eq.1,owner_id.eq.{sub})" }
      insert: { columns: [id, owner_id, title, public, slug], filter: "owner_id=eq.{sub}" }
      update: { columns: [id, owner_id, title, public, slug], filter: "owner_id=eq.{sub}" }
      delete: { filter: "owner_id=eq.{sub}" }
    owners:
      read: { columns: [id, name] }
  admin:
    docs: { read: {}, insert: {}, update: {}, delete: {} }
    owners: { read: {}, insert: {}, update: {}, delete: {} }
api_keys:
  "{anon_key}": anon
"#;

fn sha256_hex(s: &str) -> String {
    // The hash the file stores, computed by another implementation than the server's.
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

fn permissions_text() -> String {
    PERMISSIONS.replace("{anon_key}", &sha256_hex(ANON_KEY))
}

fn token(role: &str, sub: &str) -> String {
    hs_token(
        SECRET,
        Algorithm::HS256,
        json!({"role": role, "sub": sub, "exp": common::now() + 3600}),
    )
}

/// Who sends a request.
#[derive(Clone, Copy, Debug)]
enum Who<'a> {
    Token(&'a str, &'a str),
    ApiKey,
    /// No credential at all: the anonymous role (`--auth-anon-role`).
    Nobody,
}

struct Resp {
    status: u16,
    content_range: Option<String>,
    body: String,
}

impl Resp {
    /// Asserts the status (the body in the message); the response, for more.
    fn expect(self, status: u16) -> Resp {
        assert_eq!(self.status, status, "{}", self.body);
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        let v = self.json();
        assert_eq!(v["code"], code, "{v}");
        v
    }
}

async fn call(
    s: &Server,
    who: Who<'_>,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let mut r = s.client.request(method, format!("{}{path}", s.base));
    match who {
        Who::Token(role, sub) => r = r.bearer_auth(token(role, sub)),
        // supabase-js without a session: the key in `apikey` and as the bearer.
        Who::ApiKey => r = r.header("apikey", ANON_KEY).bearer_auth(ANON_KEY),
        Who::Nobody => {}
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(b) = body {
        r = r
            .header("Content-Type", "application/json")
            .body(b.to_string());
    }
    let resp = r.send().await.unwrap();
    Resp {
        status: resp.status().as_u16(),
        content_range: resp
            .headers()
            .get("content-range")
            .map(|v| v.to_str().unwrap().to_string()),
        body: resp.text().await.unwrap(),
    }
}

async fn get(s: &Server, who: Who<'_>, path: &str) -> Resp {
    call(s, who, Method::GET, path, &[], None).await
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect()
}

fn doc_row(s: &Server, id: i64) -> Option<(String, String)> {
    s.sqlite()
        .query_row(
            "SELECT owner_id, title FROM docs WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok()
}

/// Whether the doc `id` exists (whatever its columns hold).
fn has_doc(s: &Server, id: i64) -> bool {
    s.sqlite()
        .query_row("SELECT count(*) FROM docs WHERE id = ?1", [id], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap()
        == 1
}

/// A server whose permissions file is `text` once the schema exists: it starts with a
/// minimal file, the tables are created, then the file is replaced and the reload awaited.
async fn start(text: &str) -> (Server, tempfile::TempDir) {
    start_with_function(text, None, &[]).await
}

/// [`start`], with `--rpc-dir` holding one function `(name, sql)` when given, loaded (admin
/// can call it) before this returns, and `extra` flags.
async fn start_with_function(
    text: &str,
    function: Option<(&str, &str)>,
    extra: &[&str],
) -> (Server, tempfile::TempDir) {
    let conf = tempfile::tempdir().unwrap();
    let file = conf.path().join("permissions.yaml");
    std::fs::write(&file, "roles:\n  admin:\n    clients:\n      read: {}\n").unwrap();
    let rpc = conf.path().join("rpc");
    let mut args = vec!["--permissions".to_string(), file.display().to_string()];
    args.extend(extra.iter().map(|a| a.to_string()));
    if function.is_some() {
        std::fs::create_dir(&rpc).unwrap();
        args.extend(["--rpc-dir".to_string(), rpc.display().to_string()]);
    }
    let s = Server::start_with(Options {
        allow: String::new(),
        args,
        ..Options::default()
    })
    .await;
    s.exec_sql(SCHEMA);
    if let Some((name, sql)) = function {
        std::fs::write(rpc.join(format!("{name}.sql")), sql).unwrap();
    }
    std::fs::write(&file, text).unwrap();
    wait_until(&s, Who::Token("admin", "x"), "/docs?select=id&limit=1", 200).await;
    if let Some((name, _)) = function {
        wait_until(&s, Who::Token("admin", "x"), &format!("/rpc/{name}"), 200).await;
    }
    (s, conf)
}

/// Polls `path` until it answers `status` (the file is reloaded by a poller).
async fn wait_until(s: &Server, who: Who<'_>, path: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = get(s, who, path).await;
        if r.status == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still answers {}: {}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const ALICE: Who<'static> = Who::Token("user", "alice");

/// A role's relations and the methods it may use on each.
type Grants = &'static [(&'static str, &'static [&'static str])];

#[tokio::test]
async fn the_matrix_of_roles_relations_and_methods() {
    let (s, _conf) = start(&permissions_text()).await;
    // role → relation → the methods it may use (from the fixture above).
    let roles: &[(Who, Grants)] = &[
        (Who::ApiKey, &[("docs", &["GET"])]),
        (
            ALICE,
            &[
                ("docs", &["GET", "POST", "PATCH", "PUT", "DELETE"]),
                ("owners", &["GET"]),
            ],
        ),
        (
            Who::Token("admin", "root"),
            &[
                ("docs", &["GET", "POST", "PATCH", "PUT", "DELETE"]),
                ("owners", &["GET", "POST", "PATCH", "PUT", "DELETE"]),
            ],
        ),
    ];
    for (who, grants) in roles {
        for relation in ["docs", "owners", "clients"] {
            for method in ["GET", "POST", "PATCH", "PUT", "DELETE"] {
                let (path, body) = match (relation, method) {
                    (_, "GET") => (format!("/{relation}?select=id"), None),
                    ("docs", "POST") => (
                        "/docs".to_string(),
                        Some(r#"{"id":70,"owner_id":"alice","title":"t","slug":"m70"}"#),
                    ),
                    ("docs", "PUT") => (
                        "/docs?id=eq.71".to_string(),
                        Some(r#"{"id":71,"owner_id":"alice","title":"t","slug":"m71"}"#),
                    ),
                    (_, "POST") => (format!("/{relation}"), Some(r#"{"id":"zed","name":"Z"}"#)),
                    (_, "PUT") => (
                        format!("/{relation}?id=eq.zed"),
                        Some(r#"{"id":"zed","name":"Z"}"#),
                    ),
                    (_, "PATCH") => (format!("/{relation}?id=eq.999"), Some(r#"{"title":"x"}"#)),
                    _ => (format!("/{relation}?id=eq.999"), None),
                };
                let body = match (relation, method) {
                    ("owners", "PATCH") => Some(r#"{"name":"x"}"#),
                    _ => body,
                };
                let m = Method::from_bytes(method.as_bytes()).unwrap();
                let r = call(&s, *who, m, &path, &[("Prefer", "tx=rollback")], body).await;
                let visible = grants.iter().find(|(r, _)| *r == relation);
                let what = format!("{who:?} {method} {path}: {} {}", r.status, r.body);
                match visible {
                    None => {
                        assert_eq!(r.status, 404, "{what}");
                        assert_eq!(r.json()["code"], "PGRST205", "{what}");
                    }
                    Some((_, methods)) if methods.contains(&method) => {
                        assert!((200..300).contains(&r.status), "{what}");
                    }
                    Some(_) => {
                        // An API key identifies its caller: 403, as for a token.
                        assert_eq!(r.status, 403, "{what}");
                        let v = r.json();
                        assert_eq!(v["code"], "42501", "{what}");
                        assert_eq!(
                            v["message"],
                            format!("permission denied for table {relation}"),
                            "{what}"
                        );
                    }
                }
            }
        }
    }
    // Nothing the matrix sent was kept (tx=rollback), whoever sent it.
    assert_eq!(doc_row(&s, 70), None);
    // A role the file does not name: PostgREST's answer for a role the database lacks.
    get(&s, Who::Token("nobody", "x"), "/docs")
        .await
        .error(401, "22023");
}

#[tokio::test]
async fn row_filters_and_columns_hold_for_every_read() {
    let (s, _conf) = start(&permissions_text()).await;
    // alice sees the public docs and her own, only the granted columns (`*` included).
    let r = get(&s, ALICE, "/docs?order=id").await.expect(200);
    let v = r.json();
    assert_eq!(ids(&v), [1, 2, 4]);
    for o in v.as_array().unwrap() {
        assert!(o.get("secret").is_none(), "{o}");
    }
    // Counts and Content-Range count only visible rows.
    let r = call(
        &s,
        ALICE,
        Method::GET,
        "/docs?select=id&order=id",
        &[("Prefer", "count=exact"), ("Range", "0-0")],
        None,
    )
    .await
    .expect(206);
    assert_eq!(r.content_range.as_deref(), Some("0-0/3"));
    let r = call(
        &s,
        ALICE,
        Method::HEAD,
        "/docs",
        &[("Prefer", "count=exact")],
        None,
    )
    .await;
    assert_eq!(r.content_range.as_deref(), Some("0-2/3"));
    // An `or` naming an invisible row finds only the visible one.
    let v = get(&s, ALICE, "/docs?or=(id.eq.3,id.eq.1)&select=id")
        .await
        .json();
    assert_eq!(ids(&v), [1]);
    let v = get(&s, ALICE, "/docs?not.or=(id.eq.1,id.eq.2)&select=id")
        .await
        .json();
    assert_eq!(ids(&v), [4]);
    // A forbidden column anywhere in the request: 42501, never its values.
    for path in [
        "/docs?select=secret",
        "/docs?select=id,s:secret::text",
        "/docs?select=id,secret->>x",
        "/docs?secret=eq.s3",
        "/docs?or=(secret.eq.s3,id.eq.1)",
        "/docs?order=secret",
        "/docs?select=id,owners(secret)",
        "/docs?select=id,owners(name)&owners.secret=eq.b-secret",
        "/owners?select=id,docs(secret)",
    ] {
        let r = get(&s, ALICE, path).await;
        let v = r.error(403, "42501");
        assert!(
            !r.body.contains("s3") && !r.body.contains("b-secret"),
            "{path}: {v}"
        );
    }
    // Embedding applies the embedded relation's filter: bob's private doc never shows.
    let v = get(
        &s,
        ALICE,
        "/owners?select=id,docs(id)&order=id&docs.order=id",
    )
    .await
    .json();
    assert_eq!(
        v,
        json!([{"id": "alice", "docs": [{"id": 1}, {"id": 2}]}, {"id": "bob", "docs": [{"id": 4}]}])
    );
    let v = get(&s, ALICE, "/owners?select=id,docs!inner(id)&docs.id=eq.3")
        .await
        .json();
    assert_eq!(v, json!([]));
    let v = get(
        &s,
        ALICE,
        "/owners?select=id,docs(id)&docs=is.null&docs.id=eq.3",
    )
    .await
    .json();
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    let r = call(
        &s,
        ALICE,
        Method::GET,
        "/owners?select=id,docs!inner(id)&docs.public=eq.0",
        &[("Prefer", "count=exact")],
        None,
    )
    .await;
    assert_eq!(r.content_range.as_deref(), Some("0-0/1"), "{}", r.body);
    // The `anon` role (through an API key): public rows, three columns; owners does not exist.
    let v = get(&s, Who::ApiKey, "/docs?order=id").await.json();
    assert_eq!(
        v,
        json!([{"id": 2, "title": "A2", "public": 1}, {"id": 4, "title": "B2", "public": 1}])
    );
    get(&s, Who::ApiKey, "/owners").await.error(404, "PGRST205");
    get(&s, Who::ApiKey, "/docs?select=owner_id")
        .await
        .error(403, "42501");
    // The OpenAPI document shows each role what it may use.
    let anon_doc = get(&s, Who::ApiKey, "/").await.json();
    assert!(
        anon_doc["paths"].get("/docs").is_some(),
        "{}",
        anon_doc["paths"]
    );
    assert!(anon_doc["paths"].get("/owners").is_none());
    assert!(anon_doc["paths"]["/docs"].get("post").is_none());
    let alice_doc = get(&s, ALICE, "/").await.json();
    assert!(alice_doc["paths"]["/docs"].get("post").is_some());
    assert!(alice_doc["paths"].get("/owners").is_some());
    // ... and only the columns it may use: in rows, filters and write bodies.
    let props = |doc: &Value, schema: &str| -> Vec<String> {
        let mut p: Vec<String> = doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{schema}: {}", doc["components"]["schemas"]))
            .keys()
            .cloned()
            .collect();
        p.sort();
        p
    };
    let filters = |doc: &Value, rel: &str| -> Vec<String> {
        let prefix = format!("rowFilter.{rel}.");
        let mut f: Vec<String> = doc["components"]["parameters"]
            .as_object()
            .unwrap()
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .collect();
        f.sort();
        f
    };
    assert_eq!(props(&anon_doc, "docs"), ["id", "public", "title"]);
    assert_eq!(filters(&anon_doc, "docs"), ["id", "public", "title"]);
    let user_columns = ["id", "owner_id", "public", "slug", "title"];
    assert_eq!(props(&alice_doc, "docs"), user_columns);
    assert_eq!(props(&alice_doc, "docs.insert"), user_columns);
    assert_eq!(props(&alice_doc, "docs.update"), user_columns);
    assert_eq!(filters(&alice_doc, "docs"), user_columns);
    assert_eq!(props(&alice_doc, "owners"), ["id", "name"]);
    assert!(!anon_doc.to_string().contains("secret"), "{anon_doc}");
    assert!(!alice_doc.to_string().contains("secret"), "{alice_doc}");
    let admin_doc = get(&s, Who::Token("admin", "x"), "/").await.json();
    assert_eq!(
        props(&admin_doc, "docs"),
        ["id", "owner_id", "public", "secret", "slug", "title"]
    );
}

#[tokio::test]
async fn writes_touch_only_visible_rows_and_must_pass_the_filter() {
    let (s, _conf) = start(&permissions_text()).await;
    let send_ =
        |method: Method, path: &'static str, prefer: &'static str, body: Option<&'static str>| {
            let s = &s;
            async move { call(s, ALICE, method, path, &[("Prefer", prefer)], body).await }
        };
    let post = |path, prefer, body| send_(Method::POST, path, prefer, Some(body));
    // Insert: her own row is fine; a row for bob violates the filter and is not written.
    post(
        "/docs",
        "return=minimal",
        r#"{"id":10,"owner_id":"alice","title":"x","slug":"a10"}"#,
    )
    .await
    .expect(201);
    let r = post("/docs", "return=minimal", r#"[{"id":11,"owner_id":"alice","title":"x","slug":"a11"},{"id":12,"owner_id":"bob","title":"x","slug":"b12"}]"#).await;
    let v = r.error(403, "42501");
    assert_eq!(
        v["message"],
        "new row violates row-level security policy for table \"docs\""
    );
    assert_eq!(doc_row(&s, 11), None, "nothing of the batch was written");
    assert_eq!(doc_row(&s, 12), None);
    // A forbidden column written: 42501.
    post(
        "/docs",
        "",
        r#"{"id":13,"owner_id":"alice","title":"x","secret":"y"}"#,
    )
    .await
    .error(403, "42501");
    // Update: bob's rows are untouched (none visible to her update), hers change.
    let r = send_(
        Method::PATCH,
        "/docs?id=in.(1,3,4)",
        "count=exact",
        Some(r#"{"title":"mine"}"#),
    )
    .await
    .expect(204);
    assert_eq!(r.content_range.as_deref(), Some("0-0/1"));
    assert_eq!(doc_row(&s, 1).unwrap().1, "mine");
    assert_eq!(doc_row(&s, 3).unwrap().1, "B1");
    assert_eq!(doc_row(&s, 4).unwrap().1, "B2");
    // Giving her row away violates the update's check: refused, unchanged.
    send_(
        Method::PATCH,
        "/docs?id=eq.1",
        "",
        Some(r#"{"owner_id":"bob"}"#),
    )
    .await
    .error(403, "42501");
    assert_eq!(doc_row(&s, 1).unwrap().0, "alice");
    // Delete: only her rows.
    let r = send_(Method::DELETE, "/docs?id=in.(3,4,10)", "count=exact", None)
        .await
        .expect(204);
    assert_eq!(r.content_range.as_deref(), Some("*/1"));
    assert!(doc_row(&s, 3).is_some() && doc_row(&s, 4).is_some());
    assert_eq!(doc_row(&s, 10), None);
    // An upsert whose conflict is a row she cannot see never updates it.
    let r = post(
        "/docs?on_conflict=slug",
        "resolution=merge-duplicates",
        r#"{"id":20,"owner_id":"alice","title":"stolen","slug":"b1"}"#,
    )
    .await;
    let v = r.error(403, "42501");
    assert!(
        v["message"].as_str().unwrap().contains("USING expression"),
        "{v}"
    );
    assert_eq!(doc_row(&s, 3).unwrap(), ("bob".into(), "B1".into()));
    send_(
        Method::PUT,
        "/docs?id=eq.3",
        "",
        Some(r#"{"id":3,"owner_id":"alice","title":"stolen","slug":"b1"}"#),
    )
    .await
    .error(403, "42501");
    assert_eq!(doc_row(&s, 3).unwrap(), ("bob".into(), "B1".into()));
    // ignore-duplicates leaves it alone and reports nothing of it.
    let r = post(
        "/docs?on_conflict=slug",
        "resolution=ignore-duplicates, return=representation",
        r#"{"id":21,"owner_id":"alice","title":"stolen","slug":"b1"}"#,
    )
    .await
    .expect(201);
    assert_eq!(r.json(), json!([]));
    // A conflict with an invisible row is a 409 that shows nothing of that row.
    let r = post(
        "/docs",
        "",
        r#"{"id":3,"owner_id":"alice","title":"x","slug":"z3"}"#,
    )
    .await;
    r.error(409, "23505");
    assert!(
        !r.body.contains("B1") && !r.body.contains("s3") && !r.body.contains("bob"),
        "{}",
        r.body
    );
    // A representation shows only what she may read.
    let r = post(
        "/docs",
        "return=representation",
        r#"{"id":30,"owner_id":"alice","title":"r","slug":"a30"}"#,
    )
    .await
    .expect(201);
    assert_eq!(
        r.json(),
        json!([{"id": 30, "owner_id": "alice", "title": "r", "public": 0, "slug": "a30"}])
    );
}

#[tokio::test]
async fn rpc_set_results_need_grants_without_row_filters() {
    let (s, _conf) = start_with_function(
        &permissions_text(),
        Some(("all_docs", "-- returns: setof\nSELECT id, title FROM docs")),
        &[],
    )
    .await;
    let v = get(
        &s,
        Who::Token("admin", "x"),
        "/rpc/all_docs?order=id&select=id",
    )
    .await
    .json();
    assert_eq!(ids(&v), [1, 2, 3, 4]);
    // alice's read of docs has a row filter a function's SQL cannot carry: refused.
    get(&s, ALICE, "/rpc/all_docs").await.error(403, "42501");
    get(&s, Who::ApiKey, "/rpc/all_docs")
        .await
        .error(403, "42501");
    // The OpenAPI document lists a function only to the roles that may call it.
    let doc = get(&s, Who::Token("admin", "x"), "/").await.json();
    assert!(
        doc["paths"].get("/rpc/all_docs").is_some(),
        "{}",
        doc["paths"]
    );
    for who in [ALICE, Who::ApiKey] {
        let doc = get(&s, who, "/").await.json();
        assert!(
            doc["paths"].get("/rpc/all_docs").is_none(),
            "{who:?}: {}",
            doc["paths"]
        );
    }
}

#[tokio::test]
async fn the_file_reloads_and_a_broken_one_keeps_the_previous() {
    let (s, conf) = start(&permissions_text()).await;
    let file = conf.path().join("permissions.yaml");
    assert_eq!(get(&s, ALICE, "/owners?select=id").await.status, 200);
    // alice loses owners.
    let text = permissions_text().replace("    owners:\n      read: { columns: [id, name] }\n", "");
    assert_ne!(text, permissions_text());
    std::fs::write(&file, &text).unwrap();
    wait_until(&s, ALICE, "/owners?select=id", 404).await;
    // A broken file (an unknown key, then an unknown table) keeps the previous one.
    std::fs::write(
        &file,
        text.replace("filter: \"public=eq.1\"", "filtre: \"public=eq.1\""),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        ids(&get(&s, Who::ApiKey, "/docs?order=id").await.json()),
        [2, 4]
    );
    std::fs::write(
        &file,
        text.replace(
            "  admin:\n    docs:",
            "  admin:\n    nope: { read: {} }\n    docs:",
        ),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        ids(&get(&s, Who::ApiKey, "/docs?order=id").await.json()),
        [2, 4]
    );
    get(&s, ALICE, "/owners").await.error(404, "PGRST205");
}

#[tokio::test]
async fn a_broken_file_refuses_the_start_and_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(SCHEMA)
        .unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let file = dir.path().join("permissions.yaml");
    // `serve` with the file and `extra` flags: it must refuse to start.
    let refused = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sqlite-rest"))
            .args(["serve", "--http-addr", "127.0.0.1:0", "--metrics-addr", ""])
            .arg("--db-dsn")
            .arg(&db)
            .arg("--auth-token-file")
            .arg(&secret)
            .arg("--permissions")
            .arg(&file)
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for (text, names) in [
        (
            "roles:\n  a:\n    docs:\n      read: { colums: [id] }\n",
            &["roles.a.docs.read", "colums"][..],
        ),
        (
            "roles:\n  a:\n    nope:\n      read: {}\n",
            &["roles.a.nope", "\"nope\""][..],
        ),
        (
            "roles:\n  a:\n    docs:\n      read: { columns: [id, nope] }\n",
            &["roles.a.docs.read.columns", "nope"][..],
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let err = refused(&[]);
        for n in names {
            assert!(err.contains(n), "{n} not in {err}");
        }
    }
    // With --security-allow-table too: refused, saying why.
    std::fs::write(&file, "roles: {}\n").unwrap();
    assert!(refused(&["--security-allow-table", "docs"]).contains("--security-allow-table"));
}

/// The OpenAPI document lists only the functions a role may call: a function whose SQL
/// reads a relation the role cannot read (or reads under a row filter) is not shown, with
/// its parameters and result columns, as PostgREST shows only functions the role may execute.
#[tokio::test]
async fn the_openapi_document_lists_only_callable_functions() {
    let (s, _conf) = start_with_function(
        &permissions_text(),
        Some((
            "owner_secrets",
            "-- returns: setof\nSELECT id, secret AS hidden_secret_column FROM owners",
        )),
        &[],
    )
    .await;
    let admin_doc = get(&s, Who::Token("admin", "x"), "/").await;
    assert!(
        admin_doc.json()["paths"]
            .get("/rpc/owner_secrets")
            .is_some(),
        "{}",
        admin_doc.body
    );
    // alice reads owners without `secret`; the anonymous role not at all.
    get(&s, ALICE, "/rpc/owner_secrets")
        .await
        .error(403, "42501");
    // The anonymous role cannot see owners at all (404 PGRST205): refusing the function
    // does not name it either.
    let r = get(&s, Who::ApiKey, "/rpc/owner_secrets").await;
    r.error(403, "42501");
    assert!(!r.body.contains("owners"), "{}", r.body);
    for who in [ALICE, Who::ApiKey] {
        let r = get(&s, who, "/").await.expect(200);
        assert!(
            !r.body.contains("owner_secrets") && !r.body.contains("hidden_secret_column"),
            "{who:?} is shown a function it may not call: {}",
            r.json()["paths"]
        );
    }
}

/// A permissions file replaced by something that is not a regular file (a FIFO, which
/// blocks a reader until a writer comes) is refused at once: the reload does not hang, and
/// the next good file is loaded.
#[tokio::test]
async fn a_fifo_in_place_of_the_file_does_not_stall_reloads() {
    let (s, conf) = start(&permissions_text()).await;
    let file = conf.path().join("permissions.yaml");
    get(&s, ALICE, "/owners?select=id").await.expect(200);
    std::fs::remove_file(&file).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&file)
        .status()
        .unwrap();
    assert!(made.success());
    // Several polls see the FIFO.
    tokio::time::sleep(Duration::from_secs(2)).await;
    std::fs::remove_file(&file).unwrap();
    // The next file takes owners away from alice: it must be loaded.
    let next = permissions_text().replace("    owners:\n      read: { columns: [id, name] }\n", "");
    assert_ne!(next, permissions_text());
    std::fs::write(&file, next).unwrap();
    wait_until(&s, ALICE, "/owners?select=id", 404).await;
}

/// `Prefer: return=headers-only` answers the written row's key in `Location`: as
/// PostgreSQL's `RETURNING` does, it needs the read grant on the key's columns and the new
/// row must pass the read filter; otherwise 42501 and nothing is written (an insert-only role
/// learnt the keys SQLite gave its rows, and so how many rows the table had had).
#[tokio::test]
async fn location_shows_only_keys_the_role_may_read() {
    let text = r#"
roles:
  admin:
    docs: { read: {} }
  writer:
    docs:
      insert: {}
  dropbox:
    docs:
      insert: {}
      read: { columns: [id, title, public], filter: "public=eq.1" }
  keyless:
    docs:
      insert: {}
      read: { columns: [title] }
"#;
    let (s, _conf) = start(text).await;
    let insert = |role: &'static str, prefer: &'static [(&str, &str)], body: &'static str| {
        let s = &s;
        async move {
            call(
                s,
                Who::Token(role, "x"),
                Method::POST,
                "/docs",
                prefer,
                Some(body),
            )
            .await
        }
    };
    let headers_only: &[(&str, &str)] = &[("Prefer", "return=headers-only")];
    let post = |role, body| insert(role, headers_only, body);
    let r = post("writer", r#"{"id":40,"title":"w"}"#).await;
    r.error(403, "42501");
    assert!(!has_doc(&s, 40), "nothing written");
    let r = post("keyless", r#"{"id":41,"title":"k"}"#).await;
    r.error(403, "42501");
    assert!(!has_doc(&s, 41));
    // A row the role could not read back: the new row violates its read policy.
    let r = post("dropbox", r#"{"id":42,"title":"private","public":0}"#).await;
    let v = r.error(403, "42501");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("row-level security"),
        "{v}"
    );
    assert!(!has_doc(&s, 42));
    // One it reads: created, with its Location.
    post("dropbox", r#"{"id":43,"title":"public","public":1}"#)
        .await
        .expect(201);
    assert!(has_doc(&s, 43));
    // Without return=headers-only the insert-only role still inserts (no key shown).
    insert("writer", &[], r#"{"id":44,"title":"w"}"#)
        .await
        .expect(201);
    assert!(has_doc(&s, 44));
}

/// A refusal (42501) is 401 only for a request that runs as the anonymous role
/// (`--auth-anon-role`), whatever brought it there: no credential, an API key mapped to that
/// role, a token naming it. Any other role is authenticated and gets 403 — also one an API
/// key stands for (it was 401: "anonymous" was read off the missing claims). Planner
/// refusals, the authorizer's and RPC's alike. (The other tests run without an anonymous
/// role: there the API key's `anon` is an authenticated role like any other.)
#[tokio::test]
async fn a_refusal_is_401_only_for_the_anonymous_role() {
    let (s, _conf) = start_with_function(
        &permissions_text(),
        Some(("all_docs", "-- returns: setof\nSELECT id, title FROM docs")),
        &["--auth-anon-role", "anon"],
    )
    .await;
    for who in [Who::Nobody, Who::ApiKey, Who::Token("anon", "x")] {
        // All three run as `anon`: they read the same rows.
        assert_eq!(
            ids(&get(&s, who, "/docs?select=id&order=id").await.json()),
            [2, 4],
            "{who:?}"
        );
    }
    for (who, status) in [
        (Who::Nobody, 401),
        (Who::ApiKey, 401),
        (Who::Token("anon", "x"), 401),
        (ALICE, 403),
    ] {
        get(&s, who, "/docs?select=secret")
            .await
            .error(status, "42501");
        call(
            &s,
            who,
            Method::POST,
            "/docs",
            &[],
            Some(r#"{"id":90,"owner_id":"bob","title":"t","slug":"x90"}"#),
        )
        .await
        .error(status, "42501");
        get(&s, who, "/rpc/all_docs").await.error(status, "42501");
    }
    assert!(!has_doc(&s, 90));
}
