//! Hostile reads never panic and never end in a 5xx: query strings assembled from the
//! grammar's own tokens, broken encodings and SQL fragments go through parse → plan → SQL →
//! execution on a real SQLite database, with random `Prefer`, `Range` and `Accept` headers;
//! aggregates are allowed and generated (top level, in embeds and spreads, with casts).
//! Writes get the same treatment with random bodies (JSON, CSV and form), `columns`,
//! `on_conflict` and `Prefer`. Numbers at the edges (i64 and f64 limits, huge exponents, long
//! digit strings) go everywhere a number can: filters, limits, offsets, ranges, JSON paths,
//! preferences and bodies. Whatever fails must fail as a PostgREST-shaped client error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]

use dialect::parse_range;
use dialect::register_insert_counter;
use dialect::{
    ApiError, BodyFormat, Exposure, Limits, MediaType, Mutation, Preferences, QueryParams,
    RequestHeaders, SchemaCache, WriteOptions, WriteRequest, execute_read, execute_write,
    parse_payload, plan_read, plan_write,
};
use proptest::prelude::*;
use rusqlite::Connection;

/// Pieces of the PostgREST grammar and of what an attacker would try, glued at random.
const TOKENS: &[&str] = &[
    "select",
    ".sum()",
    "count()",
    ".avg()::int",
    "order",
    "limit",
    "offset",
    "and",
    "or",
    "not.and",
    "not.or",
    "id",
    "name",
    "price",
    "data",
    "tags",
    "nope",
    "books",
    "=",
    "&",
    "eq.",
    "neq.",
    "gt.",
    "lte.",
    "in.",
    "is.",
    "isdistinct.",
    "like.",
    "ilike.",
    "match.",
    "imatch.",
    "cs.",
    "cd.",
    "ov.",
    "fts.",
    "plfts.",
    "phfts.",
    "wfts.",
    "fts(english).",
    "|",
    "!",
    "<->",
    "<2>",
    ":*",
    "NEAR",
    "AND",
    "-",
    "not.",
    "(any)",
    "(all)",
    "null",
    "true",
    "unknown",
    "(",
    ")",
    ",",
    ".",
    ":",
    "::",
    "::text",
    "::integer",
    "::evil",
    "->",
    "->>",
    "->0",
    "->'a'",
    "!inner",
    "*",
    "asc",
    "desc",
    "nullsfirst",
    "nullslast",
    "\"",
    "%22",
    "%2C",
    "%28",
    "%",
    "%zz",
    "%00",
    "{",
    "}",
    "[",
    "]",
    "\\",
    "'",
    ";",
    "--",
    "/*",
    "*/",
    " ",
    "+",
    "-1",
    "0",
    "1",
    "2.5",
    "1e309",
    "99999999999999999999",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "-0",
    "1e-400",
    "1e99999999999",
    "NaN",
    "inf",
    "-infinity",
    "0x7fffffffffffffff",
    "123456789012345678901234567890123456789012345678901234567890",
    "->9223372036854775807",
    "->-9223372036854775808",
    "é",
    "\u{202e}",
    "DROP TABLE books",
    "ATTACH 'x' AS y",
    "PRAGMA writable_schema",
    "sqlite_master",
    "rowid",
    "a\"b",
];

const HEADER_TOKENS: &[&str] = &[
    "count=exact",
    "count=planned",
    "count=estimated",
    "count=",
    "return=representation",
    "handling=strict",
    "handling=lenient",
    "max-affected=3",
    "tx=rollback",
    "timezone=UTC",
    ",",
    ";",
    " ",
    "items=",
    "0",
    "-",
    "5",
    "-3",
    "x",
    "99999999999999999999",
    "9223372036854775807",
    "-9223372036854775808",
    "max-affected=9223372036854775807",
    "max-affected=-9223372036854775808",
    "max-affected=99999999999999999999",
    "application/json",
    "text/csv",
    "application/vnd.pgrst.object+json",
    "*/*",
    "nulls=stripped",
    "application/vnd.pgrst.plan",
    "q=0.5",
];

/// A column, sometimes with a JSON path or a hostile name.
fn column() -> impl Strategy<Value = String> {
    let name = proptest::sample::select(
        &[
            "id",
            "name",
            "price",
            "data",
            "tags",
            "%22a%22%22b%22",
            "nope",
        ][..],
    );
    let path =
        proptest::sample::select(&["", "", "->a", "->>a", "->a->>b", "->0", "->a->b->1"][..]);
    prop_oneof![
        4 => (name, path).prop_map(|(n, p)| format!("{n}{p}")),
        1 => glue(TOKENS, 3),
    ]
}

/// A value for a filter: operator, optional modifier or negation, operand.
fn condition() -> impl Strategy<Value = String> {
    let op = proptest::sample::select(
        &[
            "eq",
            "neq",
            "gt",
            "gte",
            "lt",
            "lte",
            "like",
            "ilike",
            "match",
            "imatch",
            "in",
            "is",
            "isdistinct",
            "eq(any)",
            "like(all)",
            "cs",
            "cd",
            "ov",
            "fts",
            "fts(english)",
            "fts(",
            "plfts",
            "phfts",
            "wfts",
        ][..],
    );
    let operand = prop_oneof![
        proptest::sample::select(
            &[
                "1",
                "Emma",
                "*m*",
                "^D",
                "null",
                "true",
                "(1,2)",
                "(\"a,b\",Emma)",
                "{1,2}",
                "{\"a\":[1,{}]}",
                "[1,10)",
                "2.5",
                "9223372036854775807",
                "-9223372036854775808",
                "9223372036854775808",
                "1e308",
                "-1e309",
                "4.9e-324",
                "1e99999",
                "NaN",
                "{9223372036854775807,-9223372036854775808}",
                "(1e309,-1e309,99999999999999999999)",
                "",
                "Emma%20%26%20!Dune",
                "a%20<->%20b",
                "%22x%20y%22%20or%20-z",
                "NEAR(a%20b)",
                "x:*",
                "(a%20|%20b",
                "!a",
                "a:B*",
                "'q",
            ][..]
        )
        .prop_map(str::to_string),
        glue(TOKENS, 4),
    ];
    (any::<bool>(), op, operand)
        .prop_map(|(not, op, v)| format!("{}{op}.{v}", if not { "not." } else { "" }))
}

/// Plausible query strings (filters, logic trees, select, order, limit/offset) with hostile
/// pieces mixed in.
fn query_string() -> impl Strategy<Value = String> {
    let filter = (column(), condition()).prop_map(|(c, v)| format!("{c}={v}"));
    let tree = (
        proptest::sample::select(&["and", "or", "not.or"][..]),
        column(),
        condition(),
        column(),
        condition(),
    )
        .prop_map(|(l, c1, v1, c2, v2)| format!("{l}=({c1}.{v1},and({c2}.{v2},{c1}.{v1}))"));
    let select = proptest::collection::vec(
        (
            column(),
            proptest::sample::select(&["", "", "::text", "::integer", "::evil", ""][..]),
            any::<bool>(),
        ),
        1..4,
    )
    .prop_map(|cols| {
        let items: Vec<String> = cols
            .into_iter()
            .map(|(c, cast, alias)| format!("{}{c}{cast}", if alias { "x:" } else { "" }))
            .collect();
        format!("select={}", items.join(","))
    });
    // Aggregates among columns: every function, casts on both sides, aliases, broken calls.
    let aggregates = proptest::collection::vec(
        prop_oneof![
            2 => (
                column(),
                proptest::sample::select(&["", "", "::integer", "::text", "::evil"][..]),
                proptest::sample::select(
                    &[".sum()", ".avg()", ".min()", ".max()", ".count()", ".sum", ".nope()", ".sum(1)"][..],
                ),
                proptest::sample::select(&["", "", "::text", "::int", "::json", "::evil"][..]),
                any::<bool>(),
            )
                .prop_map(|(c, cast, f, after, alias)| {
                    format!("{}{c}{cast}{f}{after}", if alias { "x:" } else { "" })
                }),
            1 => proptest::sample::select(
                &["count()", "n:count()::text", "count()::evil", "*.count()", "count(", "*"][..],
            )
            .prop_map(str::to_string),
            1 => column(),
        ],
        1..5,
    )
    .prop_map(|items| format!("select={}", items.join(",")));
    let order = (
        column(),
        proptest::sample::select(&["", ".asc", ".desc.nullsfirst", ".nullslast", ".up"][..]),
    )
        .prop_map(|(c, d)| format!("order={c}{d}"));
    let paging = (
        proptest::sample::select(&["limit", "offset"][..]),
        proptest::sample::select(
            &[
                "0",
                "2",
                "-1",
                "x",
                "99999999999999999999",
                "9223372036854775807",
                "9223372036854775806",
                "-9223372036854775808",
                "9223372036854775808",
                "1e3",
                "+5",
                " 7",
            ][..],
        ),
    )
        .prop_map(|(k, v)| format!("{k}={v}"));
    let pair = prop_oneof![
        4 => filter,
        2 => tree,
        2 => select,
        2 => aggregates,
        2 => order,
        1 => paging,
        3 => embed_select(),
        2 => embed_scoped(),
    ];
    proptest::collection::vec(pair, 0..5).prop_map(|v| v.join("&"))
}

/// An embedded resource: alias, spread, a relation or foreign key (or a wrong name), hints,
/// columns, sometimes an embed inside.
fn embed_item() -> impl Strategy<Value = String> {
    let rel = proptest::sample::select(
        &[
            "authors",
            "reviews",
            "tags",
            "books",
            "book_tags",
            "author_id",
            "books_author_id_fkey",
            "cheap",
            "nope",
            "%22a%22%22b%22",
        ][..],
    );
    let hint = proptest::sample::select(
        &[
            "",
            "",
            "!inner",
            "!left",
            "!books_author_id_fkey",
            "!book_tags",
            "!author_id!inner",
            "!nope",
            "!inner!left!x",
        ][..],
    );
    let cols = proptest::sample::select(
        &[
            "*",
            "id",
            "name",
            "stars",
            "",
            "id,name",
            "nope",
            "n:name::text",
            "data->a",
            "count()",
            "name,count()",
            "stars.sum(),stars.avg()::int",
            "id.max(),name.min()",
            "name.sum()",
        ][..],
    );
    let alias = proptest::sample::select(&["", "", "x:", "a:"][..]);
    let spread = proptest::sample::select(&["", "", "..."][..]);
    let one =
        (alias, spread, rel, hint, cols).prop_map(|(a, s, r, h, c)| format!("{a}{s}{r}{h}({c})"));
    one.prop_recursive(3, 6, 2, |inner| {
        (
            proptest::sample::select(&["", "x:", "..."][..]),
            proptest::sample::select(&["authors", "reviews", "tags", "books", "nope"][..]),
            proptest::sample::select(&["", "!inner"][..]),
            proptest::collection::vec(inner, 1..3),
        )
            .prop_map(|(a, r, h, items)| format!("{a}{r}{h}(id,{})", items.join(",")))
    })
}

fn embed_select() -> impl Strategy<Value = String> {
    proptest::collection::vec(embed_item(), 1..3)
        .prop_map(|items| format!("select=id,{}", items.join(",")))
}

/// Parameters scoped to embeds, and filters and orders that name them.
fn embed_scoped() -> impl Strategy<Value = String> {
    proptest::sample::select(
        &[
            "authors.name=eq.Ann",
            "reviews.stars=gt.1",
            "reviews.order=stars.desc",
            "reviews.limit=1",
            "reviews.offset=1",
            "reviews.limit=-1",
            "authors=is.null",
            "reviews=not.is.null",
            "tags=eq.1",
            "order=authors(name).desc",
            "order=reviews(stars)",
            "x.limit=1",
            "x.id=eq.1",
            "x.x.order=id",
            "or=(authors.is.null,id.eq.1)",
            "reviews.or=(stars.eq.1,stars.gt.4)",
            "nope.id=eq.1",
            "authors.books.reviews.stars=eq.5",
        ][..],
    )
    .prop_map(str::to_string)
}

/// A header value: usually absent or well-formed, sometimes junk.
fn header(valid: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(String::new()),
        3 => proptest::sample::select(valid).prop_map(str::to_string),
        1 => glue(HEADER_TOKENS, 3),
    ]
}

fn glue(tokens: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(tokens), 0..max).prop_map(|v| v.concat())
}

fn database() -> (Connection, SchemaCache) {
    let conn = Connection::open_in_memory().unwrap();
    dialect::register_functions(&conn).unwrap();
    conn.execute_batch(
        r#"
        CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE books (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL,
          data JSON, tags TEXT, "a""b" TEXT, author_id INTEGER REFERENCES authors(id));
        CREATE TABLE reviews (id INTEGER PRIMARY KEY, book_id INTEGER REFERENCES books(id),
          stars INTEGER, name BLOB);
        CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE book_tags (book_id INTEGER REFERENCES books(id),
          tag_id INTEGER REFERENCES tags(id), PRIMARY KEY (book_id, tag_id));
        INSERT INTO authors VALUES (1, 'Ann'), (2, NULL);
        INSERT INTO books VALUES (1, 'Emma', 9.5, '{"a": {"b": [1, 2]}}', 'x,y', 'q', 1),
          (2, 'Dune', NULL, '[1, "two", null]', NULL, NULL, 2),
          (3, 'Ubik', 7, 'not json', '', 'r', NULL);
        INSERT INTO reviews VALUES (1, 1, 5, X'00FF'), (2, 1, 1, 'ok'), (3, 2, 3, NULL);
        INSERT INTO tags VALUES (1, 'x'), (2, 'y');
        INSERT INTO book_tags VALUES (1, 1), (1, 2), (3, 2);
        CREATE VIEW cheap AS SELECT id, name FROM books WHERE price < 9;
        CREATE VIRTUAL TABLE books_fts USING fts5(name, content='books', content_rowid='id');
        INSERT INTO books_fts(books_fts) VALUES ('rebuild');
        CREATE VIRTUAL TABLE notes USING fts5(name, tags UNINDEXED);
        INSERT INTO notes VALUES ('Emma and Dune', 'x'), ('a b', NULL);
        "#,
    )
    .unwrap();
    let cache = SchemaCache::load(&conn, &Exposure::All).unwrap();
    (conn, cache)
}

fn assert_client_error(e: &ApiError, what: &str) {
    assert!(
        (400..500).contains(&e.status) && !e.code.as_str().is_empty() && !e.message.is_empty(),
        "{what}: {e:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn hostile_reads_are_client_errors(
        query in prop_oneof![1 => glue(TOKENS, 24), 4 => query_string()],
        relation in proptest::sample::select(&["books", "authors", "reviews", "cheap", "notes", "notes_data", "nope", "books\"", "sqlite_master"][..]),
        prefer in header(&["count=exact", "count=planned", "count=estimated"]),
        range in header(&[
            "0-1", "items=1-", "5-9", "2-1", "0-9223372036854775807", "9223372036854775807-",
            "9223372036854775806-9223372036854775807", "1-9223372036854775808",
            "99999999999999999999-", "0-99999999999999999999",
        ]),
        accept in header(&["application/json", "text/csv", "application/vnd.pgrst.object+json"]),
    ) {
        let (conn, cache) = database();
        let headers = (|| {
            Ok::<_, ApiError>(RequestHeaders {
                media: MediaType::negotiate(Some(&accept))?,
                prefer: Preferences::parse([prefer.as_str()])?,
                range: parse_range(&range)?,
                profile_sent: false,
            })
        })();
        let headers = match headers {
            Ok(h) => h,
            Err(e) => {
                assert_client_error(&e, "headers");
                return Ok(());
            }
        };
        let outcome = QueryParams::parse(&query)
            .and_then(|q| plan_read(&cache, relation, &q, &headers, Limits { max_rows: Some(1000), aggregates: true }))
            .and_then(|plan| execute_read(&conn, &plan, false));
        if let Err(e) = outcome {
            assert_client_error(&e, &format!("GET /{relation}?{query}"));
        }
        // Nothing a read does changes the data.
        let n: i64 = conn.query_row("SELECT count(*) FROM books", [], |r| r.get(0)).unwrap();
        prop_assert_eq!(n, 3);
    }
}

/// A request body: well-formed rows with good and bad values, or junk.
fn write_body() -> impl Strategy<Value = String> {
    let key =
        proptest::sample::select(&["id", "name", "price", "data", "tags", "a\"b", "nope", ""][..]);
    let value = proptest::sample::select(
        &[
            "1",
            "2",
            "-1",
            "null",
            "\"Emma\"",
            "\"x\"",
            "2.5",
            "1e400",
            "true",
            "[1]",
            "{\"a\":1}",
            "\"\\u0000\"",
            "99999999999999999999",
            "9223372036854775807",
            "-9223372036854775808",
            "18446744073709551616",
            "1e308",
            "-1e308",
            "4.9e-324",
            "1e-400",
            "123456789012345678901234567890.5",
            "0.1e99999",
            "\"9223372036854775808\"",
            "\"1e309\"",
        ][..],
    );
    let row = proptest::collection::vec((key, value), 0..4).prop_map(|kv| {
        let fields: Vec<String> = kv
            .iter()
            .map(|(k, v)| format!("\"{}\":{v}", k.replace('"', "\\\"")))
            .collect();
        format!("{{{}}}", fields.join(","))
    });
    prop_oneof![
        3 => row.clone(),
        2 => proptest::collection::vec(row, 0..4).prop_map(|rows| format!("[{}]", rows.join(","))),
        1 => proptest::sample::select(&["", "[", "null", "1", "\"s\"", "[1,2]", "{\"id\":", "[[]]", "id,name\n7,Zed"][..]).prop_map(str::to_string),
    ]
}

/// A value as a CSV cell or form value: numbers at the edges, text, NULL, empty, quotes.
const CELLS: &[&str] = &[
    "1",
    "-1",
    "NULL",
    "",
    "Emma",
    "2.5",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "99999999999999999999",
    "1e309",
    "-1e309",
    "4.9e-324",
    "NaN",
    "true",
    "t",
    "[1]",
    "{\"a\":1}",
    "\\x00ff",
    "\u{0}",
    "é",
];

/// A CSV body: a header of (sometimes unknown, empty or repeated) columns, then rows of
/// cells, sometimes ragged, sometimes quoted.
fn csv_body() -> impl Strategy<Value = String> {
    let key = proptest::sample::select(
        &[
            "id",
            "name",
            "price",
            "data",
            "tags",
            "\"a\"\"b\"",
            "nope",
            "",
            "name",
        ][..],
    );
    let cell = (proptest::sample::select(CELLS), any::<bool>()).prop_map(|(v, quoted)| {
        if quoted {
            format!("\"{}\"", v.replace('"', "\"\""))
        } else {
            v.to_string()
        }
    });
    (
        proptest::collection::vec(key, 0..4),
        proptest::collection::vec(proptest::collection::vec(cell, 0..5), 0..4),
        proptest::sample::select(&["\n", "\r\n"][..]),
    )
        .prop_map(|(header, rows, eol)| {
            let mut out = header.join(",");
            for row in rows {
                out.push_str(eol);
                out.push_str(&row.join(","));
            }
            out
        })
}

/// A form body: `key=value` pairs (keys known, unknown or empty), percent-encoded or not.
fn form_body() -> impl Strategy<Value = String> {
    let key =
        proptest::sample::select(&["id", "name", "price", "data", "a%22b", "nope", "", "%zz"][..]);
    let value = prop_oneof![
        proptest::sample::select(CELLS).prop_map(|v| {
            percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
        }),
        proptest::sample::select(&["+", "%", "%2", "%FF", "a=b", "&"][..]).prop_map(str::to_string),
    ];
    proptest::collection::vec((key, value), 0..4).prop_map(|kv| {
        kv.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

/// A body and its format.
fn any_body() -> impl Strategy<Value = (BodyFormat, String)> {
    prop_oneof![
        6 => write_body().prop_map(|b| (BodyFormat::Json, b)),
        2 => csv_body().prop_map(|b| (BodyFormat::Csv, b)),
        1 => form_body().prop_map(|b| (BodyFormat::Form, b)),
        1 => write_body().prop_map(|b| (BodyFormat::Csv, b)),
    ]
}

fn write_query() -> impl Strategy<Value = String> {
    let extra = proptest::sample::select(
        &[
            "",
            "columns=id,name",
            "columns=%22name%22,price",
            "columns=nope",
            "on_conflict=id",
            "on_conflict=name",
            "on_conflict=nope",
            "id=eq.1",
            "name=eq.Emma",
            "select=id,name",
            "limit=1&order=id",
            "id=eq.4",
        ][..],
    );
    let base = prop_oneof![2 => Just(String::new()), 1 => query_string()];
    (base, extra).prop_map(|(q, e)| match (q.is_empty(), e.is_empty()) {
        (_, true) => q,
        (true, false) => e.to_string(),
        (false, false) => format!("{q}&{e}"),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn hostile_writes_are_client_errors(
        mutation in proptest::sample::select(&[Mutation::Insert, Mutation::Update, Mutation::Upsert, Mutation::Delete][..]),
        relation in proptest::sample::select(&["books", "cheap", "nope"][..]),
        query in write_query(),
        (format, body) in any_body(),
        prefer in header(&[
            "return=representation", "resolution=merge-duplicates", "resolution=ignore-duplicates",
            "missing=default", "count=exact", "handling=strict, max-affected=1", "tx=rollback",
        ]),
        safe_update in any::<bool>(),
    ) {
        let (conn, _) = database();
        let counter = register_insert_counter(&conn).unwrap();
        let cache = SchemaCache::load(&conn, &Exposure::All).unwrap();
        let outcome = (|| {
            let query = QueryParams::parse(&query)?;
            let payload = match mutation {
                Mutation::Delete => None,
                _ => Some(parse_payload(body.as_bytes(), format, query.columns.is_some())?),
            };
            let w = WriteRequest {
                mutation,
                relation: relation.to_string(),
                query,
                media: MediaType::Json { strip_nulls: false },
                prefer: Preferences::parse([prefer.as_str()])?,
                payload,
            };
            let plan = plan_write(&cache, &w, &WriteOptions { safe_update, ..WriteOptions::default() })?;
            let json = w.payload.as_ref().map_or("[]", |p| p.json.as_str());
            execute_write(&conn, &plan, json, &counter)
        })();
        if let Err(e) = outcome {
            assert_client_error(&e, &format!("{mutation:?} /{relation}?{query} {format:?} {body}"));
        }
    }
}

/// The functions the RPC property test calls, over [`database`].
const RPC_FUNCTIONS: &[(&str, &str)] = &[
    (
        "by_price",
        "-- params: min real, name text\n-- returns: setof\n\
         SELECT id, name, price, data, tags FROM books WHERE coalesce(price, 0) >= :min OR name = :name",
    ),
    (
        "count_books",
        "-- params: flag boolean\n-- returns: scalar\nSELECT count(*) + :flag FROM books",
    ),
    (
        "book",
        "-- params: id integer, meta json, raw blob\n-- returns: row\n\
         SELECT id, name, :meta AS meta, length(:raw) AS raw FROM books WHERE id = :id",
    ),
    (
        "retag",
        "-- params: id integer, tags text\n-- returns: setof\n-- writes\n\
         UPDATE books SET tags = :tags WHERE id >= :id RETURNING id, tags, data",
    ),
];

/// An argument's value in a query string: good ones, edges and junk.
const RPC_TEXT_VALUES: &[&str] = &[
    "1",
    "-1",
    "0",
    "2.5",
    "9223372036854775807",
    "9223372036854775808",
    "1e999",
    "NaN",
    "inf",
    "abc",
    "",
    "true",
    "f",
    "null",
    "{\"a\":1}",
    "[1",
    "\\x00ff",
    "\\xzz",
    "\\x0",
    "'; DROP TABLE books; --",
    "%00",
    "%FF",
    "eq.1",
    "in.(1,2)",
];

/// An argument's value in a JSON body.
const RPC_JSON_VALUES: &[&str] = &[
    "1",
    "-1",
    "2.5",
    "1e300",
    "-0",
    "18446744073709551616",
    "\"7\"",
    "\"x\"",
    "true",
    "false",
    "null",
    "[]",
    "[1,2]",
    "{}",
    "{\"a\":[1]}",
    "\"\\\\x00ff\"",
    "\"\\\\xq\"",
    "\"'; DROP TABLE books; --\"",
];

/// A call's arguments: a query string (GET) or a JSON body (POST), keys from the functions'
/// parameters and a few others, plus the query's own filters and paging.
fn rpc_request() -> impl Strategy<Value = (bool, String, String)> {
    let key = proptest::sample::select(
        &[
            "min", "name", "flag", "id", "meta", "raw", "tags", "x", "select", "order",
        ][..],
    );
    let pairs = proptest::collection::vec(
        (key.clone(), proptest::sample::select(RPC_TEXT_VALUES)),
        0..5,
    );
    let body_pairs =
        proptest::collection::vec((key, proptest::sample::select(RPC_JSON_VALUES)), 0..5);
    let body = prop_oneof![
        4 => body_pairs.prop_map(|kv| {
            let inner: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", inner.join(","))
        }),
        1 => glue(&["{", "}", "[", "]", "\"id\"", ":", "1", ",", "null", " "], 8),
    ];
    (
        any::<bool>(),
        pairs,
        body,
        prop_oneof![2 => Just(String::new()), 3 => query_string()],
    )
        .prop_map(|(post, pairs, body, query)| {
            let args: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let q = if post {
                query
            } else {
                [args.join("&"), query]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join("&")
            };
            (post, q, body)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn hostile_rpc_calls_are_client_errors(
        name in proptest::sample::select(&["by_price", "count_books", "book", "retag", "nope", "by_prise", ""][..]),
        (post, query, body) in rpc_request(),
        prefer in header(&["count=exact", "count=planned"]),
        range in header(&["0-1", "5-9", "2-1", "9223372036854775807-"]),
        accept in header(&["application/json", "text/csv", "application/vnd.pgrst.object+json"]),
    ) {
        let (conn, _) = database();
        let functions = dialect::RpcFunctions::new(RPC_FUNCTIONS.iter().map(|(n, sql)| {
            dialect::RpcFunction::define(&conn, n, sql).unwrap()
        }));
        let outcome = (|| {
            let (args, rest) = if post {
                (dialect::RpcArgs::from_body(body.as_bytes())?, query.clone())
            } else {
                dialect::split_rpc_query(&query, functions.get(name).map(|f| f.as_ref()))?
            };
            let call = dialect::RpcCall::new(&functions, name, &args)?;
            let how = dialect::RpcRead {
                query: QueryParams::parse(&rest)?,
                headers: RequestHeaders {
                    media: MediaType::negotiate(Some(&accept))?,
                    prefer: Preferences::parse([prefer.as_str()])?,
                    range: parse_range(&range)?,
                    profile_sent: false,
                },
                limits: Limits { max_rows: Some(1000), aggregates: true },
                max_bytes: 1 << 20,
            };
            dialect::execute_rpc(&conn, &call, &how, false, usize::MAX, None)
        })();
        match outcome {
            Ok(dialect::ReadOutcome::Whole(out)) => {
                // Every answer with a body is JSON or CSV the function's shape allows.
                if !out.body.is_empty() && MediaType::negotiate(Some(&accept)).ok() != Some(MediaType::Csv) {
                    prop_assert!(serde_json::from_slice::<serde_json::Value>(&out.body).is_ok(), "{}", String::from_utf8_lossy(&out.body));
                }
            }
            Ok(_) => prop_assert!(false, "an unbounded call did not keep its body"),
            Err(e) => assert_client_error(&e, &format!("{} /rpc/{name}?{query} {body}", if post { "POST" } else { "GET" })),
        }
        // Reading functions never change the data; the writing one only the tags.
        let n: i64 = conn.query_row("SELECT count(*) FROM books", [], |r| r.get(0)).unwrap();
        prop_assert_eq!(n, 3);
    }
}
