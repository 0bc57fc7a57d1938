//! The seam on a real SQLite database: a typed request in, a typed response out, for a read
//! and for a write, with the headers PostgREST sends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]

use dialect::{
    AppliedPreference, Body, CountMethod, Exposure, InsertCounter, Limits, Method, ReadCall,
    ReadOutcome, Request, RequestHeaderValues, SchemaCache, WriteCall, WriteOptions,
    register_insert_counter,
};
use rusqlite::Connection;

fn db() -> (Connection, InsertCounter, SchemaCache) {
    let conn = Connection::open_in_memory().unwrap();
    dialect::register_functions(&conn).unwrap();
    let counter = register_insert_counter(&conn).unwrap();
    conn.execute_batch(
        "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT NOT NULL);
         INSERT INTO books VALUES (1, 'a'), (2, 'b'), (3, 'c');",
    )
    .unwrap();
    let cache = SchemaCache::load(&conn, &Exposure::All).unwrap();
    (conn, counter, cache)
}

fn request<'a>(method: Method, query: &'a str, headers: RequestHeaderValues<'a>) -> Request<'a> {
    Request {
        method,
        relation: "books",
        raw_segment: "books",
        query,
        headers,
    }
}

#[test]
fn a_read_answers_status_headers_and_body() {
    let (conn, _, cache) = db();
    let req = request(
        Method::Get,
        "order=id.desc&limit=2&select=id",
        RequestHeaderValues {
            prefer: vec!["count=exact", "min-txid=000000000000002a"],
            accept_profile: Some("public"),
            ..RequestHeaderValues::default()
        },
    );
    let (call, answer) = ReadCall::prepare(&req).unwrap();
    assert_eq!(answer.min_txid(), Some(42));
    let ReadOutcome::Whole(out) = call
        .run(&conn, &cache, Limits::default(), 1 << 20, None, None)
        .unwrap()
    else {
        panic!("a small read is kept whole");
    };
    let resp = answer.whole(out, false);
    assert_eq!(resp.status, 206);
    assert_eq!(resp.body, Body::Bytes(br#"[{"id":3},{"id":2}]"#.to_vec()));
    let h = &resp.headers;
    assert_eq!(h.content_type, Some("application/json; charset=utf-8"));
    assert_eq!(h.content_range.as_deref(), Some("0-1/3"));
    assert_eq!(
        h.content_location.as_deref(),
        Some("/books?limit=2&order=id.desc&select=id")
    );
    assert_eq!(h.vary, Some("Accept, Prefer, Range"));
    assert_eq!(h.content_profile, Some("public"));
    assert_eq!(
        h.preference_applied.iter().cloned().collect::<Vec<_>>(),
        [
            AppliedPreference::Count(CountMethod::Exact),
            AppliedPreference::MinTxid(42)
        ]
    );
    assert_eq!(
        h.preference_applied.header_value().as_deref(),
        Some("count=exact, min-txid=000000000000002a")
    );
    // HEAD: the same head, no body.
    let head = request(Method::Head, "", RequestHeaderValues::default());
    let (call, answer) = ReadCall::prepare(&head).unwrap();
    let ReadOutcome::Whole(out) = call
        .run(&conn, &cache, Limits::default(), 1 << 20, None, None)
        .unwrap()
    else {
        panic!("a small read is kept whole");
    };
    let resp = answer.whole(out, true);
    assert_eq!((resp.status, resp.body), (200, Body::None));
    assert_eq!(resp.headers.content_location.as_deref(), Some("/books"));
}

#[test]
fn a_write_answers_status_headers_and_body() {
    let (conn, counter, cache) = db();
    let req = request(
        Method::Post,
        "select=title",
        RequestHeaderValues {
            prefer: vec!["return=representation, count=exact"],
            content_type: Some("application/json"),
            ..RequestHeaderValues::default()
        },
    );
    let mut call = WriteCall::prepare(&req).unwrap();
    let (format, answer) = call.payload_format(&req).unwrap();
    call.set_payload(
        format
            .unwrap()
            .parse(br#"{"id": 4, "title": "d"}"#)
            .unwrap(),
    );
    let out = call
        .run(&conn, &cache, &WriteOptions::default(), &counter, None)
        .unwrap();
    let resp = answer.respond(out);
    assert_eq!(resp.status, 201);
    assert_eq!(resp.body, Body::Bytes(br#"[{"title":"d"}]"#.to_vec()));
    assert_eq!(resp.headers.content_range.as_deref(), Some("*/1"));
    assert_eq!(
        resp.headers.preference_applied.header_value().as_deref(),
        Some("return=representation, count=exact")
    );
    assert_eq!(resp.headers.content_profile, None);

    // Without a representation: no body and no Content-Type; 204 for a DELETE.
    let req = request(Method::Delete, "id=eq.4", RequestHeaderValues::default());
    let call = WriteCall::prepare(&req).unwrap();
    let (format, answer) = call.payload_format(&req).unwrap();
    assert_eq!(format, None);
    let resp = answer.respond(
        call.run(&conn, &cache, &WriteOptions::default(), &counter, None)
            .unwrap(),
    );
    assert_eq!((resp.status, resp.body), (204, Body::None));
    assert_eq!(resp.headers.content_type, None);
    // An invalid Content-Profile is refused with the body's headers.
    let req = request(
        Method::Post,
        "",
        RequestHeaderValues {
            content_profile: Some("private"),
            ..RequestHeaderValues::default()
        },
    );
    let call = WriteCall::prepare(&req).unwrap();
    let e = call.payload_format(&req).unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (406, "PGRST106"));
}
