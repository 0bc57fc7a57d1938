//! The read plan cache (`read/plan_cache.rs`) against the uncached path: for a corpus of
//! requests, and for generated ones, a read through the cache answers exactly what the same
//! read planned from scratch answers (status, headers, body, or the same error), for the
//! request that taught the cache its plan and for later requests of the same shape with other
//! values; also after a schema reload and a permissions reload, and with row filters that take
//! claims. And the cache stays within its bounds under a flood of unique shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]

use std::collections::HashSet;
use std::sync::Arc;

use dialect::{
    Access, ApiError, Grant, Limits, Method, PlanCache, Privilege, ReadCall, ReadOutcome,
    RelationGrants, Request, RequestHeaderValues, Response, RoleGrants, RowFilter, SchemaCache,
};
use proptest::prelude::*;
use rusqlite::Connection;

const LIMITS: Limits = Limits {
    max_rows: Some(1000),
    aggregates: true,
};

fn database() -> (Connection, SchemaCache) {
    let conn = Connection::open_in_memory().unwrap();
    dialect::register_functions(&conn).unwrap();
    conn.execute_batch(
        r#"
        CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT NOT NULL, price REAL,
          stock NUMERIC, active BOOLEAN, data JSON, code TEXT,
          author_id INTEGER REFERENCES authors(id));
        INSERT INTO authors VALUES (1, 'Ann'), (2, 'Bob'), (3, NULL);
        INSERT INTO books VALUES
          (1, 'Emma', 9.5, 3, 1, '{"a": 1}', '10', 1),
          (2, 'Dune', NULL, 0, 0, '[1, 2]', '9', 2),
          (3, 'Ubik', 7, 2.5, 1, NULL, 'x', NULL),
          (4, 'Emma', 12, 10, 0, '{"a": 2}', '010', 1),
          (5, '', 0, NULL, NULL, '"s"', NULL, 3);
        CREATE VIEW cheap AS SELECT id, title, price FROM books WHERE price < 10;
        "#,
    )
    .unwrap();
    let cache = SchemaCache::load(&conn, &Exposure::All).unwrap();
    (conn, cache)
}

use dialect::Exposure;

/// One request's headers, as text.
#[derive(Debug, Clone, Default)]
struct Headers {
    accept: Option<&'static str>,
    prefer: Option<&'static str>,
    range: Option<&'static str>,
}

fn request<'a>(method: Method, relation: &'a str, query: &'a str, h: &Headers) -> Request<'a> {
    Request {
        method,
        relation,
        raw_segment: relation,
        query,
        headers: RequestHeaderValues {
            accept: h.accept,
            prefer: h.prefer.into_iter().collect(),
            range: h.range,
            ..RequestHeaderValues::default()
        },
    }
}

/// The outcome of a read as the server would send it.
fn answer(
    conn: &Connection,
    cache: &SchemaCache,
    req: &Request<'_>,
    access: Option<&Access<'_>>,
    plans: Option<(&Arc<PlanCache>, Option<&str>)>,
) -> Result<Response, String> {
    let shown = |e: ApiError| {
        format!(
            "{} {} {} {:?} {:?} {:?}",
            e.status, e.code, e.message, e.details, e.hint, e.headers
        )
    };
    let (call, answer) = match plans {
        Some((p, role)) => ReadCall::prepare_cached(req, p, role),
        None => ReadCall::prepare(req),
    }
    .map_err(shown)?;
    match call
        .run(conn, cache, LIMITS, 1 << 20, None, access)
        .map_err(shown)?
    {
        ReadOutcome::Whole(out) => Ok(answer.whole(out, req.method == Method::Head)),
        other => panic!("a small read is kept whole: {other:?}"),
    }
}

/// Checks that the cached path answers `query` (and the other queries of its shape) as the
/// uncached one does; returns the cache's hits.
fn same_both_ways(
    conn: &Connection,
    cache: &SchemaCache,
    plans: &Arc<PlanCache>,
    method: Method,
    relation: &str,
    queries: &[&str],
    h: &Headers,
) {
    for q in queries {
        let req = request(method, relation, q, h);
        let plain = answer(conn, cache, &req, None, None);
        let cached = answer(conn, cache, &req, None, Some((plans, None)));
        assert_eq!(cached, plain, "{method:?} /{relation}?{q} {h:?}");
    }
}

/// Requests grouped by shape: each group's queries differ only in the values of their
/// comparisons (the slots), so the first teaches the cache and the others hit it.
const CORPUS: &[&[&str]] = &[
    &[
        "id=eq.1",
        "id=eq.2",
        "id=eq.99",
        "id=eq.abc",
        "id=eq.",
        "id=eq.1.5",
        "id=eq.%20",
    ],
    &["id=not.eq.1", "id=not.eq.3"],
    &[
        "id=gt.2",
        "id=gt.-1",
        "id=gt.9223372036854775807",
        "id=gt.9223372036854775808",
    ],
    &[
        "id=gte.2&id=lte.4",
        "id=gte.1&id=lte.1",
        "id=gte.x&id=lte.y",
    ],
    &[
        "price=lt.10",
        "price=lt.9.5",
        "price=lt.1e308",
        "price=lt.NaN",
        "price=lt.inf",
    ],
    &["stock=eq.2.5", "stock=eq.3", "stock=eq.10", "stock=eq.1e1"],
    &[
        "active=eq.true",
        "active=eq.false",
        "active=eq.t",
        "active=eq.F",
        "active=eq.1",
        "active=eq.yes",
    ],
    &["code=eq.10", "code=eq.010", "code=eq.x", "code=eq.9"],
    &[
        "title=eq.Emma",
        "title=eq.Dune",
        "title=eq.",
        "title=eq.Emma%20",
        "title=eq.%C3%A9",
        "title=eq.a+b",
    ],
    &[
        "title=neq.Emma&select=id,title",
        "title=neq.Dune&select=id,title",
    ],
    &["title=isdistinct.Emma", "title=isdistinct."],
    &[
        "select=id,title&order=id.desc&limit=2&title=eq.Emma",
        "select=id,title&order=id.desc&limit=2&title=eq.Ubik",
    ],
    &["select=id&id=eq.1&offset=0", "select=id&id=eq.4&offset=0"],
    &[
        "select=title,n:id::text&id=lt.3",
        "select=title,n:id::text&id=lt.5",
    ],
    &[
        "select=id,authors(name)&author_id=eq.1",
        "select=id,authors(name)&author_id=eq.2",
    ],
    &[
        "select=id,authors!inner(name)&authors.name=eq.Ann&id=gt.0",
        "select=id,authors!inner(name)&authors.name=eq.Ann&id=gt.2",
    ],
    &["select=id,data->a&id=eq.1", "select=id,data->a&id=eq.4"],
    &["data->a=eq.1", "data->a=eq.2"],
    &["data->>a=eq.1", "data->>a=eq.2"],
    &[
        "id=in.(1,2)",
        "id=in.(3,4)",
        "id=in.(1,2,3)",
        "id=in.()",
        "id=in.(%20)",
        "id=in.(x,1)",
        "id=in.(1.0,2)",
        "id=in.(%221%22,%222%22)",
    ],
    &[
        "title=in.(Emma,Dune)",
        "title=in.(%22Emma%22,%22a,b%22)",
        "title=in.(null)",
        "title=in.(%22%22)",
        "title=in.(%20Emma%20,%20Dune%20)",
        "title=in.(%22Em\\%22ma%22)",
        "title=in.(pgrst,%01)",
    ],
    &["id=not.in.(1,2)", "id=not.in.(3)", "id=not.in.()"],
    &[
        "price=in.(8.5,2)",
        "price=in.(x)",
        "active=in.(true,f)",
        "active=in.(1,no)",
        "code=in.(010,x)",
        "stock=in.(2.5,1e1)",
    ],
    &[
        "id=in.(1,2",
        "id=in.1,2",
        "id=in.(%22a)",
        "id=in.(1,2)x",
        "id=in.(1)&id=in.(",
    ],
    &[
        "id=in.(1,2)&title=eq.Emma&select=id",
        "id=in.(3)&title=eq.Dune&select=id",
        "id=in.(1,2,3,4)&title=neq.Emma&select=id",
    ],
    &["nope=in.(1,2)", "nope=in.(3)"],
    &[
        "select=id,authors(name)&author_id=in.(1,2)",
        "select=id,authors(name)&author_id=in.(3)",
    ],
    &["id=is.null", "title=is.null"],
    &["title=like.E*", "title=like.D*", "title=ilike.*m*"],
    &[
        "title=like.Emma",
        "title=like.E_ma",
        "title=like.E?ma",
        "title=like.E%25",
        "title=like.E*",
    ],
    &[
        "or=(id.eq.1,id.eq.2)",
        "or=(id.eq.3,id.eq.4)",
        "and=(id.gt.1,title.eq.Emma)",
    ],
    &["id=eq(any).{1,2}", "id=eq(any).{3}"],
    &["title=match.^E", "title=imatch.^d"],
    &[
        "author_id=eq.1&select=id,title,authors(id,name)&order=id",
        "author_id=eq.3&select=id,title,authors(id,name)&order=id",
    ],
    &[
        "authors=eq.1&select=id,authors(name)",
        "authors=eq.2&select=id,authors(name)",
    ],
    &["nope=eq.1", "nope=eq.2"],
    &["id=eq.1&limit=x", "id=eq.2&limit=x"],
    &["id=eq.%FF", "id=eq.1&title=eq.%FF"],
    &["id=xx.1", "id=eq(any).1"],
    &[
        "",
        "select=*",
        "order=price.desc.nullslast",
        "limit=2&offset=1",
    ],
    &["id=eq.1&id=eq.1&id=eq.1", "id=eq.1&id=eq.2&id=eq.3"],
    &["title=eq.pgrst", "title=eq.pgrstslot0", "title=eq.%01"],
];

const HEADERS: &[Headers] = &[
    Headers {
        accept: None,
        prefer: None,
        range: None,
    },
    Headers {
        accept: Some("text/csv"),
        prefer: None,
        range: None,
    },
    Headers {
        accept: Some("application/vnd.pgrst.object+json"),
        prefer: None,
        range: None,
    },
    Headers {
        accept: None,
        prefer: Some("count=exact"),
        range: Some("0-1"),
    },
    Headers {
        accept: None,
        prefer: Some("count=planned, min-txid=000000000000002a"),
        range: Some("1-"),
    },
    Headers {
        accept: Some("application/json"),
        prefer: Some("count=estimated"),
        range: None,
    },
];

#[test]
fn the_corpus_answers_the_same_cached_and_uncached() {
    let (conn, cache) = database();
    let plans = Arc::new(PlanCache::new());
    for h in HEADERS {
        for method in [Method::Get, Method::Head] {
            for relation in ["books", "cheap"] {
                for group in CORPUS {
                    // Twice over: the second pass runs only on kept plans.
                    same_both_ways(&conn, &cache, &plans, method, relation, group, h);
                    same_both_ways(&conn, &cache, &plans, method, relation, group, h);
                }
            }
        }
    }
    let stats = plans.stats();
    assert!(stats.hits > 1000, "{stats:?}");
    assert!(stats.learnt > 100, "{stats:?}");
}

#[test]
fn a_shape_is_learnt_once_and_then_hit() {
    let (conn, cache) = database();
    let plans = Arc::new(PlanCache::new());
    let h = Headers::default();
    same_both_ways(
        &conn,
        &cache,
        &plans,
        Method::Get,
        "books",
        &["id=eq.1"],
        &h,
    );
    assert_eq!((plans.stats().learnt, plans.stats().hits), (1, 0));
    let ids: Vec<String> = (0..50).map(|i| format!("id=eq.{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    same_both_ways(&conn, &cache, &plans, Method::Get, "books", &ids, &h);
    let s = plans.stats();
    assert_eq!((s.learnt, s.hits, s.entries), (1, 50, 1), "{s:?}");
}

/// `in.(…)` lists of any length and items are one shape: one plan, hit by every other list
/// (before, each list was a shape of its own, a miss that evicted another plan).
#[test]
fn in_lists_of_any_items_share_one_plan() {
    let (conn, cache) = database();
    let plans = Arc::new(PlanCache::new());
    let h = Headers::default();
    for (column, lists) in [
        (
            "id",
            &[
                "(1)",
                "(1,2)",
                "(3,4,5)",
                "()",
                "(x,2)",
                "(%221%22,%20%204)",
            ][..],
        ),
        (
            "title",
            &["(Emma)", "(%22a,b%22,Dune)", "(null)", "(%22%22)"][..],
        ),
    ] {
        let before = plans.stats();
        let queries: Vec<String> = lists
            .iter()
            .map(|l| format!("{column}=in.{l}&select=id,title"))
            .collect();
        let queries: Vec<&str> = queries.iter().map(String::as_str).collect();
        same_both_ways(&conn, &cache, &plans, Method::Get, "books", &queries, &h);
        let s = plans.stats();
        assert_eq!(
            (s.learnt - before.learnt, s.hits - before.hits),
            (1, lists.len() as u64 - 1),
            "{column}: {s:?}"
        );
    }
}

#[test]
fn a_schema_reload_never_serves_an_old_plan() {
    let (conn, cache) = database();
    let plans = Arc::new(PlanCache::new());
    let h = Headers::default();
    let get = |cache: &SchemaCache, q: &str| {
        answer(
            &conn,
            cache,
            &request(Method::Get, "books", q, &h),
            None,
            Some((&plans, None)),
        )
    };
    let before = get(&cache, "id=eq.1").unwrap();
    assert!(String::from_utf8_lossy(&body(&before)).contains("\"title\":\"Emma\""));
    get(&cache, "id=eq.2").unwrap();
    assert_eq!(plans.stats().hits, 1);

    conn.execute_batch("ALTER TABLE books RENAME COLUMN title TO name; ALTER TABLE books ADD COLUMN extra INTEGER DEFAULT 7;")
        .unwrap();
    let reloaded = SchemaCache::load(&conn, &Exposure::All).unwrap();
    let after = get(&reloaded, "id=eq.1").unwrap();
    let text = String::from_utf8_lossy(&body(&after)).to_string();
    assert!(
        text.contains("\"name\":\"Emma\"") && text.contains("\"extra\":7"),
        "{text}"
    );
    assert_eq!(
        Ok(after),
        answer(
            &conn,
            &reloaded,
            &request(Method::Get, "books", "id=eq.1", &h),
            None,
            None
        )
    );
    // The same schema loaded again (a forced reload) is another generation too.
    let again = SchemaCache::load(&conn, &Exposure::All).unwrap();
    assert_eq!(again.version, reloaded.version);
    assert_ne!(again.generation(), reloaded.generation());
    let learnt = plans.stats().learnt;
    get(&again, "id=eq.3").unwrap();
    assert_eq!(plans.stats().learnt, learnt + 1);
}

fn body(r: &Response) -> Vec<u8> {
    match &r.body {
        dialect::Body::Bytes(b) => b.clone(),
        _ => Vec::new(),
    }
}

/// A role that reads `books` (only `columns`, when given, through `filter`, when given).
fn role(columns: Option<&[&str]>, filter: Option<&str>) -> RoleGrants {
    let mut rg = RelationGrants::default();
    rg.set(
        Privilege::Read,
        Grant {
            columns: columns.map(|c| c.iter().map(|s| s.to_string()).collect::<HashSet<_>>()),
            filter: filter.map(|f| RowFilter::parse(f).unwrap()),
        },
    );
    let mut grants = RoleGrants::default();
    grants.relations.insert("books".into(), rg);
    grants
}

/// A role's view of a schema, made once per schema and permissions load, as the server does.
struct View<'g> {
    grants: &'g RoleGrants,
    cache: SchemaCache,
    filters: dialect::RoleFilters,
}

fn view<'g>(cache: &SchemaCache, grants: &'g RoleGrants) -> View<'g> {
    let cache = cache.restricted(&|n| grants.visible(n));
    let filters = grants.filters(&cache);
    View {
        grants,
        cache,
        filters,
    }
}

/// Reads as `v`'s role with `claims`.
fn as_role(
    conn: &Connection,
    v: &View<'_>,
    claims: &serde_json::Value,
    plans: Option<&Arc<PlanCache>>,
    q: &str,
) -> Result<Response, String> {
    let access = Access {
        grants: v.grants,
        claims,
        anonymous: false,
        filters: Some(&v.filters),
    };
    let req = request(Method::Get, "books", q, &Headers::default());
    answer(
        conn,
        &v.cache,
        &req,
        Some(&access),
        plans.map(|p| (p, Some("reader"))),
    )
}

#[test]
fn a_permissions_reload_never_serves_an_old_plan() {
    let (conn, cache) = database();
    let plans = Arc::new(PlanCache::new());
    let none = serde_json::Value::Null;
    let wide = role(Some(&["id", "title"]), Some("id=gte.2"));
    let wide = view(&cache, &wide);
    for q in ["id=lt.5", "id=lt.4"] {
        assert_eq!(
            as_role(&conn, &wide, &none, Some(&plans), q),
            as_role(&conn, &wide, &none, None, q)
        );
    }
    assert_eq!((plans.stats().learnt, plans.stats().hits), (1, 1));
    // The file changes: fewer columns, other rows. The same shape answers by the new grants.
    let narrow = role(Some(&["id"]), Some("id=lte.1"));
    let narrow = view(&cache, &narrow);
    let after = as_role(&conn, &narrow, &none, Some(&plans), "id=lt.5").unwrap();
    assert_eq!(String::from_utf8_lossy(&body(&after)), r#"[{"id":1}]"#);
    assert_eq!(Ok(after), as_role(&conn, &narrow, &none, None, "id=lt.5"));
}

#[test]
fn row_filters_with_claims_are_bound_per_request() {
    let (conn, cache) = database();
    let plans = Arc::new(PlanCache::new());
    let owner = role(None, Some("author_id=eq.{sub}"));
    let owner = view(&cache, &owner);
    let mut seen = Vec::new();
    for sub in [
        serde_json::json!({"sub": 1}),
        serde_json::json!({"sub": 2}),
        serde_json::json!({}),
    ] {
        for q in ["id=gt.0", "id=gt.1"] {
            let cached = as_role(&conn, &owner, &sub, Some(&plans), q);
            assert_eq!(cached, as_role(&conn, &owner, &sub, None, q));
            seen.push(body(&cached.unwrap()));
        }
    }
    // Each token saw its own rows.
    assert_ne!(seen[0], seen[2]);
    assert_eq!(seen[4], b"[]");
    assert_eq!(
        plans.stats().learnt,
        0,
        "a plan that takes claims is not kept"
    );
}

#[test]
fn unique_shapes_never_grow_the_cache_past_its_bounds() {
    let (conn, cache) = database();
    let plans = Arc::new(PlanCache::new());
    let h = Headers::default();
    let get = |q: &str| {
        let req = request(Method::Get, "books", q, &h);
        answer(&conn, &cache, &req, None, Some((&plans, None))).unwrap()
    };
    // Light plans, many of them: the entry bound.
    for i in 0..(PlanCache::MAX_ENTRIES * 2 + 7) {
        let q = format!("id=eq.1&limit={i}");
        get(&q);
        assert!(plans.stats().entries <= PlanCache::MAX_ENTRIES);
    }
    let s = plans.stats();
    assert_eq!(s.entries, PlanCache::MAX_ENTRIES, "{s:?}");
    assert!(s.evicted >= PlanCache::MAX_ENTRIES as u64, "{s:?}");
    // Heavy plans (long select lists): the byte bound.
    for i in 0..600 {
        let items: Vec<String> = (0..40)
            .map(|j| format!("c{i}x{j}aaaaaaaaa:title"))
            .collect();
        let q = format!("select={}&id=eq.1", items.join(","));
        assert!(q.len() <= PlanCache::MAX_QUERY_BYTES, "{}", q.len());
        get(&q);
        let s = plans.stats();
        assert!(
            s.bytes <= PlanCache::MAX_BYTES && s.entries <= PlanCache::MAX_ENTRIES,
            "{s:?}"
        );
    }
    assert!(
        plans.stats().bytes > PlanCache::MAX_BYTES / 2,
        "{:?}",
        plans.stats()
    );
    // A query string past the bound is never kept.
    let learnt = plans.stats().learnt;
    let long = format!(
        "id=eq.1&select=id{}",
        ",id".repeat(PlanCache::MAX_QUERY_BYTES)
    );
    get(&long);
    assert_eq!(plans.stats().learnt, learnt);
}

/// A filter's value: numbers, words, booleans, encoded and odd text.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(
            &[
                "1",
                "2",
                "0",
                "-1",
                "2.5",
                "1e3",
                "9223372036854775808",
                "true",
                "false",
                "t",
                "Emma",
                "Dune",
                "",
                "%20",
                "a+b",
                "%C3%A9",
                "%FF",
                "null",
                "NaN",
                "010",
                "x",
                "(1,2)",
                "{1}",
                "%2C",
                "%26",
                "eq.1",
            ][..]
        )
        .prop_map(str::to_string),
        "[a-zA-Z0-9 ._-]{0,8}".prop_map(|s| s.replace(' ', "+")),
    ]
}

/// A shape: comparisons on columns, and verbatim parts (select, order, limit, other
/// operators) around them.
fn shape() -> impl Strategy<Value = Vec<(String, String)>> {
    let column = proptest::sample::select(
        &[
            "id",
            "title",
            "price",
            "stock",
            "active",
            "code",
            "author_id",
            "nope",
            "authors",
        ][..],
    );
    let op = proptest::sample::select(
        &[
            "eq",
            "neq",
            "gt",
            "gte",
            "lt",
            "lte",
            "isdistinct",
            "not.eq",
            "not.gt",
            "in",
            "not.in",
        ][..],
    );
    let filter = (column, op).prop_map(|(c, o)| (c.to_string(), format!("{o}.")));
    let extra = proptest::sample::select(
        &[
            "select=id,title",
            "select=id,authors(name)",
            "select=*,n:price::text",
            "order=id.desc",
            "order=price.nullsfirst",
            "limit=2",
            "offset=1",
            "id=in.(1,3)",
            "id=in.(4)",
            "title=in.(Emma,%22a,b%22)",
            "price=not.in.(8.5,x)",
            "id=in.()",
            "title=like.*m*",
            "price=is.null",
            "or=(id.eq.1,price.gt.8)",
            "limit=-1",
            "select=nope",
        ][..],
    )
    .prop_map(|e| (e.to_string(), String::new()));
    proptest::collection::vec(prop_oneof![3 => filter, 1 => extra], 0..5)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Generated shapes, each with several sets of values, answer the same both ways.
    #[test]
    fn generated_requests_answer_the_same_cached_and_uncached(
        parts in shape(),
        values in proptest::collection::vec(proptest::collection::vec(value(), 5), 3),
        h in proptest::sample::select(HEADERS),
        head in any::<bool>(),
    ) {
        let (conn, cache) = database();
        let plans = Arc::new(PlanCache::new());
        let method = if head { Method::Head } else { Method::Get };
        for vals in &values {
            let q: Vec<String> = parts
                .iter()
                .zip(vals)
                .map(|((k, op), v)| if op.is_empty() {
                    k.clone()
                } else if op.ends_with("in.") {
                    // A list of three items from the value: plain, suffixed and quoted.
                    format!("{k}={op}({v},{v}x,%22{v}%22)")
                } else {
                    format!("{k}={op}{v}")
                })
                .collect();
            let q = q.join("&");
            let req = request(method, "books", &q, &h);
            let plain = answer(&conn, &cache, &req, None, None);
            let cached = answer(&conn, &cache, &req, None, Some((&plans, None)));
            prop_assert_eq!(cached, plain, "{:?} /books?{} {:?}", method, q, h);
        }
    }
}
