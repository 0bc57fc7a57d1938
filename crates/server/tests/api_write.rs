//! The write API over real HTTP against the binary: POST (single, bulk, CSV, form,
//! `columns`, `missing=default`, upserts, `Location`), PATCH, PUT, DELETE, every `Prefer`
//! that applies to writes, singular responses, views and `WITHOUT ROWID` tables, the
//! safe-update switch, and every error path — each bad request checked to change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Options, Server, p, post, send};
use reqwest::Method;
use serde_json::json;

const REP: (&str, &str) = ("Prefer", "return=representation");

#[tokio::test]
async fn inserts_single_bulk_and_representations() {
    let s = Server::start().await;
    // Single object: 201, empty body, no Content-Type, Content-Range */*.
    let r = post(&s, "/clients", &[], r#"{"id":3,"name":"IBM"}"#).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body, "");
    assert_eq!(r.header("content-type"), None);
    assert_eq!(r.header("content-length"), Some("0"));
    assert_eq!(r.header("content-range"), Some("*/*"));
    assert_eq!(
        s.json("/clients?id=eq.3", 200).await,
        json!([{"id":3,"name":"IBM"}])
    );

    // Bulk with representation, select, order and an exact count.
    let r = post(
        &s,
        "/clients?select=name&order=id.desc",
        &[REP, ("Prefer", "count=exact")],
        r#"[{"id":10,"name":"Ten"},{"id":11,"name":"Eleven"}]"#,
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json(), json!([{"name":"Eleven"},{"name":"Ten"}]));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.header("content-range"), Some("*/2"));
    assert_eq!(
        r.header("preference-applied"),
        Some("return=representation, count=exact")
    );

    // Types round-trip: JSON nests, booleans, BLOBs as \x hex.
    let r = post(
        &s,
        "/projects?select=id,name,settings,logo,active",
        &[REP],
        r#"{"id":6,"name":"Linux","settings":{"tags":["x"],"n":1.5},"logo":"\\xcafe","active":false}"#,
    )
    .await;
    assert_eq!(
        r.json(),
        json!([{"id":6,"name":"Linux","settings":{"tags":["x"],"n":1.5},"logo":"\\xcafe","active":false}])
    );
    assert_eq!(
        s.json("/projects?id=eq.6&select=settings->tags", 200).await,
        json!([{"tags":["x"]}])
    );

    // columns (quoted, as the supabase clients send it) with missing=default.
    let r = post(
        &s,
        "/stock?columns=%22id%22,%22sku%22,%22qty%22,%22note%22&select=id,qty,note",
        &[REP, ("Prefer", "missing=default")],
        r#"[{"id":20,"sku":"X-20"},{"id":21,"sku":"X-21","qty":3,"note":null,"ignored":1}]"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.json(),
        json!([{"id":20,"qty":0,"note":"none"},{"id":21,"qty":3,"note":null}])
    );
    assert_eq!(
        r.header("preference-applied"),
        Some("missing=default, return=representation")
    );

    // Location for one inserted row with return=headers-only (URL-encoded key).
    let r = post(
        &s,
        "/kv",
        &[("Prefer", "return=headers-only")],
        r#"{"k":"a b&c","scope":"z","v":"1"}"#,
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (201, ""));
    assert_eq!(r.header("location"), Some("/kv?k=eq.a%20b%26c&scope=eq.z"));
    let r = post(
        &s,
        "/clients",
        &[("Prefer", "return=headers-only")],
        r#"{"name":"Auto"}"#,
    )
    .await;
    let loc = r.header("location").unwrap().to_string();
    assert_eq!(
        s.json(&loc, 200).await[0]["name"],
        "Auto",
        "Location {loc} names the row"
    );
    let r = post(&s, "/clients", &[], r#"{"name":"NoLocation"}"#).await;
    assert_eq!(r.header("location"), None);

    // CSV and form bodies.
    let r = post(
        &s,
        "/stock?select=sku,qty,note",
        &[REP, ("Content-Type", "text/csv")],
        "sku,qty,note\nC-1,4,NULL\n\"C,2\",0,\"quoted, text\"",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.json(),
        json!([{"sku":"C-1","qty":4,"note":null},{"sku":"C,2","qty":0,"note":"quoted, text"}])
    );
    let r = post(
        &s,
        "/stock?select=sku,qty",
        &[REP, ("Content-Type", "application/x-www-form-urlencoded")],
        "sku=F%201&qty=7",
    )
    .await;
    assert_eq!(r.json(), json!([{"sku":"F 1","qty":7}]));

    // Empty payloads: [] inserts nothing; {} inserts a row of defaults.
    let r = post(&s, "/items", &[REP], "[]").await;
    assert_eq!((r.status, r.json()), (201, json!([])));
    let r = post(
        &s,
        "/stock?select=qty,note",
        &[REP, ("Prefer", "tx=rollback")],
        "{}",
    )
    .await;
    // stock.sku is NOT NULL without default: a row of defaults fails.
    r.error(400, "23502");
    let r = post(&s, "/items?select=id", &[REP], "[{},{}]").await;
    assert_eq!((r.status, r.json()), (201, json!([{"id":16},{"id":17}])));

    // CSV output of a representation, and a singular one.
    let r = post(
        &s,
        "/clients?select=id,name",
        &[REP, ("Accept", "text/csv")],
        r#"[{"id":30,"name":"a, b"}]"#,
    )
    .await;
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(r.body, "id,name\n30,\"a, b\"");
    let r = post(
        &s,
        "/clients",
        &[REP, ("Accept", "application/vnd.pgrst.object+json")],
        r#"{"id":31,"name":"one"}"#,
    )
    .await;
    assert_eq!(r.json(), json!({"id":31,"name":"one"}));
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.pgrst.object+json; charset=utf-8")
    );
}

#[tokio::test]
async fn upserts_merge_ignore_and_on_conflict() {
    let s = Server::start().await;
    let merge = ("Prefer", "resolution=merge-duplicates");
    let ignore = ("Prefer", "resolution=ignore-duplicates");
    let r = post(
        &s,
        "/clients",
        &[REP, merge],
        r#"[{"id":1,"name":"MSFT"},{"id":3,"name":"IBM"}]"#,
    )
    .await;
    assert_eq!(r.status, 201, "an insert happened");
    assert_eq!(
        r.json(),
        json!([{"id":1,"name":"MSFT"},{"id":3,"name":"IBM"}])
    );
    assert_eq!(
        r.header("preference-applied"),
        Some("resolution=merge-duplicates, return=representation")
    );
    let r = post(&s, "/clients", &[merge], r#"[{"id":1,"name":"Microsoft"}]"#).await;
    assert_eq!(r.status, 200, "only updates");
    assert_eq!(
        s.json("/clients?id=eq.1", 200).await,
        json!([{"id":1,"name":"Microsoft"}])
    );
    let r = post(
        &s,
        "/clients",
        &[REP, ignore],
        r#"[{"id":1,"name":"X"},{"id":4,"name":"New"}]"#,
    )
    .await;
    assert_eq!((r.status, r.json()), (201, json!([{"id":4,"name":"New"}])));
    assert_eq!(
        s.json("/clients?id=eq.1", 200).await,
        json!([{"id":1,"name":"Microsoft"}])
    );
    // on_conflict names a UNIQUE column; missing=default keeps the surrogate key automatic.
    let r = post(
        &s,
        "/counters?on_conflict=slug&columns=slug,hits&select=id,slug,hits",
        &[REP, merge, ("Prefer", "missing=default")],
        r#"[{"slug":"home","hits":5},{"slug":"about","hits":1}]"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.json(),
        json!([{"id":1,"slug":"home","hits":5},{"id":2,"slug":"about","hits":1}])
    );
    // on_conflict that is not a unique key, or not a column.
    let before = s.snapshot();
    let r = post(
        &s,
        "/counters?on_conflict=hits",
        &[merge],
        r#"{"slug":"x","hits":1}"#,
    )
    .await;
    let v = r.error(400, "42P10");
    assert!(v["hint"].as_str().unwrap().contains("UNIQUE"), "{v}");
    post(
        &s,
        "/counters?on_conflict=nope",
        &[merge],
        r#"{"slug":"x"}"#,
    )
    .await
    .error(400, "PGRST204");
    assert_eq!(s.snapshot(), before);
    // A table without a primary key ignores the resolution (and does not report it).
    let r = post(&s, "/no_pk", &[REP, merge], r#"{"a":"9","b":"9"}"#).await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("preference-applied"),
        Some("return=representation")
    );
    // Composite keys (WITHOUT ROWID).
    let r = post(
        &s,
        "/kv",
        &[REP, merge],
        r#"[{"k":"a","scope":"x","v":"2"},{"k":"b","scope":"x","v":"3"}]"#,
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        s.json("/kv?order=k", 200).await,
        json!([{"k":"a","scope":"x","v":"2"},{"k":"b","scope":"x","v":"3"}])
    );
    // An empty array upsert inserted nothing: 200.
    let r = post(&s, "/clients", &[REP, merge], "[]").await;
    assert_eq!((r.status, r.json()), (200, json!([])));
}

#[tokio::test]
async fn patch_put_and_delete() {
    let s = Server::start().await;
    let r = send(
        &s,
        Method::PATCH,
        "/projects?client_id=eq.1",
        &[],
        Some(r#"{"budget":1}"#),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert_eq!(r.header("content-range"), Some("0-1/*"));
    assert_eq!(r.header("content-type"), None);
    let r = send(
        &s,
        Method::PATCH,
        "/projects?id=eq.5&select=id,name,budget",
        &[REP, ("Prefer", "count=exact")],
        Some(r#"{"name":"Orphan 2","id":50}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!([{"id":50,"name":"Orphan 2","budget":0.5}]));
    assert_eq!(r.header("content-range"), Some("0-0/1"));
    let r = send(
        &s,
        Method::PATCH,
        "/projects?id=eq.999",
        &[REP],
        Some(r#"{"name":"x"}"#),
    )
    .await;
    assert_eq!((r.status, r.json()), (200, json!([])));
    assert_eq!(r.header("content-range"), Some("*/*"));
    // PATCH with {} changes nothing.
    let r = send(&s, Method::PATCH, "/projects?id=eq.1", &[], Some("{}")).await;
    assert_eq!((r.status, r.header("content-range")), (204, Some("*/*")));
    // PATCH with columns and missing=default: an absent key takes the column default.
    let r = send(
        &s,
        Method::PATCH,
        "/stock?id=eq.1&columns=qty,note&select=qty,note",
        &[
            REP,
            ("Prefer", "missing=default"),
            ("Content-Profile", "public"),
        ],
        Some(r#"{"qty":8}"#),
    )
    .await;
    assert_eq!(r.json(), json!([{"qty":8,"note":"none"}]));
    assert_eq!(r.header("content-profile"), Some("public"));
    assert_eq!(
        r.header("preference-applied"),
        Some("missing=default, return=representation")
    );
    // PATCH with columns ignores other keys.
    let r = send(
        &s,
        Method::PATCH,
        "/projects?id=eq.1&columns=name&select=id,name,budget",
        &[REP],
        Some(r#"{"name":"Seven","budget":99,"nope":1}"#),
    )
    .await;
    assert_eq!(r.json(), json!([{"id":1,"name":"Seven","budget":1.0}]));

    // PUT: insert (201), replace (200), minimal (204, no Content-Range).
    let r = send(
        &s,
        Method::PUT,
        "/clients?id=eq.7",
        &[REP],
        Some(r#"{"id":7,"name":"Seven"}"#),
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (201, json!([{"id":7,"name":"Seven"}]))
    );
    assert_eq!(r.header("content-range"), None);
    let r = send(
        &s,
        Method::PUT,
        "/clients?id=eq.7",
        &[REP],
        Some(r#"[{"id":7,"name":"Sieben"}]"#),
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (200, json!([{"id":7,"name":"Sieben"}]))
    );
    let r = send(
        &s,
        Method::PUT,
        "/kv?k=eq.q&scope=eq.w",
        &[],
        Some(r#"{"k":"q","scope":"w","v":"put"}"#),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert_eq!(
        s.json("/kv?k=eq.q", 200).await,
        json!([{"k":"q","scope":"w","v":"put"}])
    );

    // DELETE: 204 with Content-Range; representation reads the rows before they go.
    let r = send(&s, Method::DELETE, "/clients?id=eq.7", &[], None).await;
    assert_eq!((r.status, r.header("content-range")), (204, Some("*/*")));
    let r = send(
        &s,
        Method::DELETE,
        "/items?id=gt.12&select=id&order=id.desc",
        &[REP, ("Prefer", "count=exact")],
        // postgrest-py sends {} with DELETE: ignored.
        Some("{}"),
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (200, json!([{"id":15},{"id":14},{"id":13}]))
    );
    assert_eq!(r.header("content-range"), Some("*/3"));
    assert_eq!(common::ids(&s.json("/items?id=gt.10", 200).await), [11, 12]);
}

#[tokio::test]
async fn transaction_preferences_and_singular_writes() {
    let s = Server::start().await;
    let before = s.snapshot();
    // tx=rollback: the answer is the write's, the database keeps nothing.
    let r = post(
        &s,
        "/clients",
        &[REP, ("Prefer", "tx=rollback")],
        r#"{"id":9,"name":"Ghost"}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (201, json!([{"id":9,"name":"Ghost"}]))
    );
    assert_eq!(
        r.header("preference-applied"),
        Some("return=representation, tx=rollback")
    );
    for (m, path, body) in [
        (Method::PATCH, "/projects?id=lt.3", Some(r#"{"name":"x"}"#)),
        (Method::DELETE, "/items?id=gt.0", None),
        (
            Method::PUT,
            "/clients?id=eq.1",
            Some(r#"{"id":1,"name":"x"}"#),
        ),
    ] {
        let r = send(&s, m.clone(), path, &[("Prefer", "tx=rollback")], body).await;
        assert!(r.status < 300, "{m}: {}", r.body);
    }
    assert_eq!(s.snapshot(), before, "tx=rollback left something behind");
    // tx=commit is accepted and reported.
    let r = post(&s, "/items", &[("Prefer", "tx=commit")], r#"{"id":99}"#).await;
    assert_eq!(r.header("preference-applied"), Some("tx=commit"));

    // max-affected under handling=strict: over the limit is 400 and nothing is written.
    let before = s.snapshot();
    let strict = ("Prefer", "handling=strict, max-affected=10");
    let r = send(&s, Method::DELETE, "/items?id=lt.15", &[strict], None).await;
    let v = r.error(400, "PGRST124");
    assert_eq!(v["details"], "The query affects 14 rows");
    assert_eq!(
        v["message"],
        "Query result exceeds max-affected preference constraint"
    );
    let r = send(
        &s,
        Method::PATCH,
        "/projects?id=lt.15",
        &[("Prefer", "handling=strict, max-affected=2")],
        Some(r#"{"name":"x"}"#),
    )
    .await;
    assert_eq!(
        r.error(400, "PGRST124")["details"],
        "The query affects 5 rows"
    );
    assert_eq!(s.snapshot(), before);
    let r = send(&s, Method::DELETE, "/items?id=lt.5", &[strict], None).await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("preference-applied"),
        Some("handling=strict, max-affected=10")
    );
    // Lenient handling ignores max-affected.
    let r = send(
        &s,
        Method::DELETE,
        "/items?id=lt.12",
        &[("Prefer", "handling=lenient, max-affected=1")],
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.header("preference-applied")),
        (204, Some("handling=lenient"))
    );
    // handling=strict refuses unknown preferences.
    let r = post(
        &s,
        "/items",
        &[("Prefer", "handling=strict, whatever=1")],
        r#"{"id":100}"#,
    )
    .await;
    let v = r.error(400, "PGRST122");
    assert_eq!(v["details"], "Invalid preferences: whatever=1");

    // Singular writes touching other than one row: 406 and rolled back, even when minimal.
    let before = s.snapshot();
    let one = ("Accept", "application/vnd.pgrst.object+json");
    let r = send(
        &s,
        Method::PATCH,
        "/projects?id=gt.0",
        &[one],
        Some(r#"{"name":"all"}"#),
    )
    .await;
    let v = r.error(406, "PGRST116");
    assert_eq!(v["details"], "The result contains 5 rows");
    let r = post(
        &s,
        "/clients",
        &[one],
        r#"[{"id":40,"name":"a"},{"id":41,"name":"b"}]"#,
    )
    .await;
    r.error(406, "PGRST116");
    let r = send(&s, Method::DELETE, "/projects?id=eq.999", &[one], None).await;
    r.error(406, "PGRST116");
    assert_eq!(s.snapshot(), before);
    let r = send(
        &s,
        Method::PATCH,
        "/projects?id=eq.5&select=id,name",
        &[one, REP],
        Some(r#"{"name":"Adopted"}"#),
    )
    .await;
    assert_eq!(r.json(), json!({"id":5,"name":"Adopted"}));
}

/// Every bad write answers a PostgREST error with the right status, and changes nothing.
#[tokio::test]
async fn bad_writes_get_errors_and_change_nothing() {
    let s = Server::start().await;
    let merge = ("Prefer", "resolution=merge-duplicates");
    type Case<'a> = (
        Method,
        &'a str,
        Vec<(&'a str, &'a str)>,
        Option<&'a str>,
        u16,
        &'a str,
    );
    #[rustfmt::skip]
    let cases: Vec<Case<'_>> = vec![
        // Bodies.
        (Method::POST, "/clients", vec![], Some("}{ x = 2"), 400, "PGRST102"),
        (Method::POST, "/clients", vec![], Some(""), 400, "PGRST102"),
        (Method::PATCH, "/clients?id=eq.1", vec![], Some(""), 400, "PGRST102"),
        (Method::PUT, "/clients?id=eq.1", vec![], Some("{"), 400, "PGRST102"),
        (Method::POST, "/clients", vec![], Some(r#"[{"id":5,"name":"a"},{"id":6}]"#), 400, "PGRST102"),
        (Method::POST, "/clients", vec![], Some(r#"[{"id":5,"name":"a"},7]"#), 400, "PGRST102"),
        (Method::POST, "/clients", vec![("Content-Type", "text/xml")], Some("<a/>"), 400, "PGRST102"),
        (Method::POST, "/clients", vec![("Content-Type", "application/octet-stream")], Some("x"), 400, "PGRST102"),
        (Method::POST, "/stock", vec![("Content-Type", "text/csv")], Some("sku,qty\nA,1\nB"), 400, "PGRST102"),
        // Names.
        (Method::POST, "/clients", vec![], Some(r#"{"id":5,"nope":"a"}"#), 400, "PGRST204"),
        (Method::POST, "/clients?columns=id,nope", vec![], Some(r#"{"id":5}"#), 400, "PGRST204"),
        (Method::POST, "/clients?columns=", vec![], Some(r#"{"id":5}"#), 400, "PGRST100"),
        (Method::PATCH, "/clients?id=eq.1", vec![], Some(r#"{"nope":"a"}"#), 400, "PGRST204"),
        (Method::PATCH, "/clients?nope=eq.1", vec![], Some(r#"{"name":"a"}"#), 400, "42703"),
        (Method::POST, "/nope", vec![], Some(r#"{"id":5}"#), 404, "PGRST205"),
        (Method::DELETE, "/secrets?id=eq.1", vec![], None, 404, "PGRST205"),
        (Method::POST, "/clients?select=nope", vec![REP], Some(r#"{"id":5,"name":"a"}"#), 400, "42703"),
        (Method::POST, "/counters?on_conflict=hits", vec![merge], Some(r#"{"slug":"z"}"#), 400, "42P10"),
        (Method::POST, "/projects_view", vec![], Some(r#"{"id":9,"name":"v"}"#), 405, "55000"),
        // PUT's rules.
        (Method::PUT, "/users_tasks?user_id=eq.1", vec![], Some(r#"{"user_id":1,"task_id":1}"#), 405, "PGRST105"),
        (Method::PUT, "/clients?name=eq.Apple", vec![], Some(r#"{"id":2,"name":"Apple"}"#), 405, "PGRST105"),
        (Method::PUT, "/clients?id=gt.1", vec![], Some(r#"{"id":2,"name":"Apple"}"#), 405, "PGRST105"),
        (Method::PUT, "/no_pk?a=eq.1", vec![], Some(r#"{"a":"1"}"#), 405, "PGRST105"),
        (Method::PUT, "/clients?id=eq.2&limit=1", vec![], Some(r#"{"id":2,"name":"x"}"#), 400, "PGRST114"),
        (Method::PUT, "/clients?id=eq.2", vec![], Some(r#"{"id":3,"name":"x"}"#), 400, "PGRST115"),
        // Constraints.
        (Method::POST, "/clients", vec![], Some(r#"{"id":1,"name":"dup id"}"#), 409, "23505"),
        (Method::POST, "/clients", vec![], Some(r#"{"id":9,"name":"Apple"}"#), 409, "23505"),
        (Method::POST, "/stock", vec![], Some(r#"{"sku":"Z","client_id":999}"#), 409, "23503"),
        (Method::POST, "/stock", vec![], Some(r#"{"qty":1}"#), 400, "23502"),
        (Method::POST, "/stock", vec![], Some(r#"{"sku":"Z","qty":-1}"#), 400, "23514"),
        (Method::PATCH, "/stock?id=eq.1", vec![], Some(r#"{"qty":-5}"#), 400, "23514"),
        (Method::DELETE, "/clients?id=eq.1", vec![], None, 409, "23503"),
        // A bulk insert is one statement: one bad row and none of them stays.
        (Method::POST, "/stock", vec![], Some(r#"[{"sku":"ok-1","qty":1},{"sku":"bad","qty":-1}]"#), 400, "23514"),
        // Whole-table writes without a filter.
        (Method::PATCH, "/stock", vec![], Some(r#"{"qty":1}"#), 400, "21000"),
        (Method::DELETE, "/stock", vec![], None, 400, "21000"),
        (Method::DELETE, "/stock?select=id&order=id", vec![], None, 400, "21000"),
        // Profiles and negotiation.
        (Method::POST, "/clients", vec![("Content-Profile", "other")], Some(r#"{"id":9,"name":"x"}"#), 406, "PGRST106"),
        (Method::POST, "/clients", vec![("Accept", "text/unknown")], Some(r#"{"id":9,"name":"x"}"#), 406, "PGRST107"),
        (Method::POST, "/clients", vec![("Prefer", "handling=strict, nope")], Some(r#"{"id":9,"name":"x"}"#), 400, "PGRST122"),
    ];
    let before = s.snapshot();
    for (m, path, headers, body, status, code) in &cases {
        let r = send(&s, m.clone(), path, headers, *body).await;
        assert_eq!(r.status, *status, "{m} {path} {body:?}: {}", r.body);
        let v = r.json();
        common::assert_error_shape(&v, code);
        assert_eq!(
            r.header("proxy-status"),
            Some(format!("sqlite-rest; error={code}").as_str())
        );
        assert_eq!(
            s.snapshot(),
            before,
            "{m} {path} {body:?} changed the database"
        );
    }
    let r = send(&s, Method::PATCH, "/stock", &[], Some(r#"{"qty":1}"#)).await;
    let v = r.error(400, "21000");
    assert_eq!(v["message"], "UPDATE requires a WHERE clause");
    assert!(v["hint"].as_str().unwrap().contains("--safe-update"), "{v}");
    let v = post(&s, "/clients", &[], "").await.error(400, "PGRST102");
    assert_eq!(v["message"], "Empty or invalid json");
    let v = post(&s, "/clients", &[], r#"[{"id":5,"name":"a"},{"id":6}]"#)
        .await
        .error(400, "PGRST102");
    assert_eq!(v["message"], "All object keys must match");
    let v = post(&s, "/clients", &[], r#"{"id":5,"nope":"a"}"#)
        .await
        .error(400, "PGRST204");
    assert_eq!(
        v["message"],
        "Could not find the 'nope' column of 'clients' in the schema cache"
    );
    let v = send(
        &s,
        Method::PUT,
        "/clients?name=eq.Apple",
        &[],
        Some(r#"{"id":2,"name":"Apple"}"#),
    )
    .await
    .error(405, "PGRST105");
    assert_eq!(
        v["message"],
        "Filters must include all and only primary key columns with 'eq' operators"
    );
}

#[tokio::test]
async fn body_limit_counts_the_bytes_actually_sent() {
    let s = Server::start_with(Options {
        args: vec!["--max-body-bytes".into(), "1000".into()],
        ..Options::default()
    })
    .await;
    let before = s.snapshot();
    // A chunked body has no Content-Length: the limit applies to the bytes as they arrive.
    use std::io::{Read, Write};
    let addr = s.base.trim_start_matches("http://").to_string();
    let token = s.token().to_string();
    let chunk = format!(
        "[{}]",
        (0..200)
            .map(|i| format!(r#"{{"id":{},"name":"n{i}"}}"#, 1000 + i))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert!(chunk.len() > 1000);
    let response = tokio::task::spawn_blocking(move || {
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        write!(
            sock,
            "POST /clients HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        )
        .unwrap();
        let mut out = String::new();
        let _ = sock.read_to_string(&mut out);
        out
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("SQLREST413"), "{response}");
    assert_eq!(s.snapshot(), before);
    // Under the limit, a chunked body works.
    let r = post(&s, "/clients", &[], r#"{"id":50,"name":"small"}"#).await;
    assert_eq!(r.status, 201);
}

#[tokio::test]
async fn views_without_rowid_and_hostile_names() {
    let s = Server::start().await;
    // A view writable through INSTEAD OF triggers: the representation is what the statement
    // reports (the values written).
    let r = post(
        &s,
        "/stock_view?select=id,sku",
        &[REP],
        r#"{"id":60,"sku":"V-60","qty":2}"#,
    )
    .await;
    assert_eq!((r.status, r.json()), (201, json!([{"id":60,"sku":"V-60"}])));
    let r = send(
        &s,
        Method::PATCH,
        "/stock_view?id=eq.60",
        &[REP],
        Some(r#"{"qty":9}"#),
    )
    .await;
    assert_eq!(r.json(), json!([{"id":60,"sku":"V-60","qty":9}]));
    assert_eq!(
        s.json("/stock?id=eq.60&select=qty", 200).await,
        json!([{"qty":9}])
    );
    let r = send(&s, Method::DELETE, "/stock_view?id=eq.60", &[], None).await;
    assert_eq!(r.status, 204);
    assert_eq!(s.json("/stock?id=eq.60", 200).await, json!([]));
    // OPTIONS tells what a view allows.
    let r = s
        .request(Method::OPTIONS, "/stock_view")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "OPTIONS,GET,HEAD,POST,PATCH,DELETE");

    // Odd names: spaces, dots and quotes in column names.
    let r = post(
        &s,
        &p("/Order Items", &[("select", "id,\"a.b\",\"we\\\"ird\"")]),
        &[REP],
        r#"{"id":3,"Unit Price":1.5,"a.b":"dotted","we\"ird":"quoted"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.json(),
        json!([{"id":3,"a.b":"dotted","we\"ird":"quoted"}])
    );

    // Hostile names never reach SQL; hostile values are stored as they are.
    let before = s.snapshot();
    for h in [
        "\"; DROP TABLE clients; --",
        "name\" = 'x",
        "id) VALUES (1); --",
        "sqlite_schema",
        "rowid",
    ] {
        let body = json!({ h: "x", "id": 77 }).to_string();
        post(&s, "/clients", &[], &body)
            .await
            .error(400, "PGRST204");
        let r = post(&s, &p("/clients", &[("columns", h)]), &[], r#"{"id":77}"#).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(["PGRST100", "PGRST204"].contains(&r.json()["code"].as_str().unwrap()));
        let r = post(
            &s,
            &p("/clients", &[("on_conflict", h)]),
            &[("Prefer", "resolution=merge-duplicates")],
            r#"{"id":77,"name":"x"}"#,
        )
        .await;
        assert_eq!(r.status, 400, "{}", r.body);
    }
    assert_eq!(s.snapshot(), before);
    let evil = "'); DROP TABLE clients; --";
    let r = post(
        &s,
        "/clients?select=name",
        &[REP],
        &json!({"id": 78, "name": evil}).to_string(),
    )
    .await;
    assert_eq!(r.json(), json!([{"name": evil}]));
    assert_eq!(
        s.json("/clients?id=eq.78&select=name", 200).await,
        json!([{"name": evil}])
    );
}

#[tokio::test]
async fn safe_update_switch_and_write_metrics() {
    let s = Server::start_with(Options {
        args: vec!["--safe-update=false".into()],
        ..Options::default()
    })
    .await;
    let r = send(&s, Method::PATCH, "/stock", &[], Some(r#"{"note":"all"}"#)).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        s.json("/stock?select=note", 200).await,
        json!([{"note":"all"}])
    );
    let r = send(&s, Method::DELETE, "/kv", &[], None).await;
    assert_eq!(r.status, 204);
    assert_eq!(s.json("/kv", 200).await, json!([]));
    post(&s, "/clients", &[], r#"{"id":5,"name":"x"}"#).await;
    send(
        &s,
        Method::PUT,
        "/clients?id=eq.5",
        &[],
        Some(r#"{"id":5,"name":"y"}"#),
    )
    .await;
    let m = s.metrics().await;
    for needle in [
        "sqlite_rest_http_requests_total{http_code=\"204\",operation=\"updateTable\",target=\"stock\"} 1",
        "sqlite_rest_http_requests_total{http_code=\"204\",operation=\"deleteTable\",target=\"kv\"} 1",
        "sqlite_rest_http_requests_total{http_code=\"201\",operation=\"insertTable\",target=\"clients\"} 1",
        "sqlite_rest_http_requests_total{http_code=\"204\",operation=\"updateSingleEntity\",target=\"clients\"} 1",
        "sqlite_rest_write_commits_total 4",
        "sqlite_rest_write_batch_size_sum 4",
    ] {
        assert!(m.contains(needle), "missing {needle}:\n{m}");
    }
}

#[tokio::test]
async fn writes_follow_schema_changes_without_restart() {
    let s = Server::start().await;
    post(&s, "/clients", &[], r#"{"id":5,"name":"x","tier":"gold"}"#)
        .await
        .error(400, "PGRST204");
    s.exec_sql("ALTER TABLE clients ADD COLUMN tier TEXT");
    let r = post(
        &s,
        "/clients?select=name,tier",
        &[REP],
        r#"{"id":5,"name":"x","tier":"gold"}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (201, json!([{"name":"x","tier":"gold"}]))
    );
}

#[tokio::test]
async fn a_database_locked_by_another_process_gives_503_with_retry_after() {
    let s = Server::start_with(Options {
        args: vec!["--db-busy-timeout-ms".into(), "200".into()],
        ..Options::default()
    })
    .await;
    let other = s.sqlite();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let r = post(&s, "/clients", &[], r#"{"id":60,"name":"blocked"}"#).await;
    r.error(503, "PGRST003");
    assert_eq!(r.header("retry-after"), Some("1"));
    other.execute_batch("ROLLBACK").unwrap();
    let r = post(&s, "/clients", &[], r#"{"id":60,"name":"free"}"#).await;
    assert_eq!(r.status, 201);
    // CSV bodies fill BOOLEAN columns with PostgreSQL's words.
    let r = post(
        &s,
        "/projects?select=id,active",
        &[REP, ("Content-Type", "text/csv")],
        "id,name,active\n70,a,true\n71,b,f",
    )
    .await;
    assert_eq!(
        r.json(),
        json!([{"id":70,"active":true},{"id":71,"active":false}])
    );
}

/// Sends `head` on `sock`, then `body` after a pause (so the server has every chance to answer
/// before the body arrives), and reads one response: its status line and body.
fn exchange(sock: &mut std::net::TcpStream, head: &str, body: &str) -> (String, String) {
    use std::io::{BufRead, BufReader, Read, Write};
    sock.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    sock.write_all(body.as_bytes()).unwrap();
    let mut reader = BufReader::new(sock.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut content = vec![0; length];
    reader.read_exact(&mut content).unwrap();
    (
        status.trim_end().to_string(),
        String::from_utf8(content).unwrap(),
    )
}

#[tokio::test]
async fn a_connection_stays_usable_after_a_body_the_answer_did_not_need() {
    // postgrest-py sends `{}` with every DELETE, and an error can be known before the body
    // arrives. The body is still read before the answer, so the client's next request on the
    // same keep-alive connection is answered instead of finding the connection closed.
    let s = Server::start().await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let token = s.token().to_string();
    let answers = tokio::task::spawn_blocking(move || {
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let with_body = |method: &str, path: &str, auth: &str| {
            format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 2\r\n\r\n"
            )
        };
        let auth = format!("Authorization: Bearer {token}\r\n");
        let get = format!("GET /clients?select=id&id=eq.1 HTTP/1.1\r\nHost: x\r\n{auth}\r\n");
        vec![
            exchange(&mut sock, &with_body("DELETE", "/items?id=eq.1", &auth), "{}"),
            exchange(&mut sock, &get, ""),
            // Errors decided before the body is looked at: no token, an unknown table.
            exchange(&mut sock, &with_body("POST", "/clients", ""), "{}"),
            exchange(&mut sock, &with_body("POST", "/nope", &auth), "{}"),
            exchange(&mut sock, &get, ""),
        ]
    })
    .await
    .unwrap();
    let statuses: Vec<&str> = answers.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 204 No Content",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 401 Unauthorized",
            "HTTP/1.1 404 Not Found",
            "HTTP/1.1 200 OK"
        ],
        "{answers:?}"
    );
    assert_eq!(answers[1].1, r#"[{"id":1}]"#);
    let left: i64 = s
        .sqlite()
        .query_row("SELECT count(*) FROM items WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "the DELETE ran");
}

#[tokio::test]
async fn a_body_is_read_only_for_a_routed_authenticated_request_and_within_the_time_budget() {
    let s = Server::start_with(Options {
        // A budget long enough that the early answers' bound below leaves a debug build on
        // a loaded machine room, and still far from the budget a body wait would take.
        args: vec!["--request-timeout-ms".into(), "1500".into()],
        ..Options::default()
    })
    .await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let token = s.token().to_string();
    let answers = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        // Sends `head` (declaring a body that never comes) and reads until the server closes.
        let ask = |head: String| {
            let mut sock = std::net::TcpStream::connect(&addr).unwrap();
            sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            sock.write_all(head.as_bytes()).unwrap();
            let started = std::time::Instant::now();
            let mut out = String::new();
            let _ = sock.read_to_string(&mut out);
            (out, started.elapsed())
        };
        let post = |path: &str, auth: &str| {
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 5000000\r\n\r\n"
            )
        };
        let auth = format!("Authorization: Bearer {token}\r\n");
        vec![
            // No token: answered at once, without waiting for (or buffering) 5 MB.
            ask(post("/clients", "")),
            // No such path: the same.
            ask(post("/a/b", &auth)),
            // Routed and authenticated: the body is awaited, within the request's budget.
            ask(post("/clients", &auth)),
        ]
    })
    .await
    .unwrap();
    let status = |i: usize| answers[i].0.lines().next().unwrap_or("").to_string();
    assert_eq!(status(0), "HTTP/1.1 401 Unauthorized", "{answers:?}");
    assert_eq!(status(1), "HTTP/1.1 404 Not Found", "{answers:?}");
    assert_eq!(status(2), "HTTP/1.1 408 Request Timeout", "{answers:?}");
    assert!(answers[2].0.contains("SQLREST408"), "{answers:?}");
    // The early answers did not wait for the body; the late one waited about the budget.
    assert!(
        answers[0].1 < std::time::Duration::from_millis(1000),
        "{answers:?}"
    );
    assert!(
        answers[1].1 < std::time::Duration::from_millis(1000),
        "{answers:?}"
    );
    assert!(
        answers[2].1 >= std::time::Duration::from_millis(1400),
        "{answers:?}"
    );
}
