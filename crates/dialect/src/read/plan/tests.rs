//! Tests of the planner: plans read from real schema caches, and the SQL they run.

use super::*;

use rusqlite::types::Value;

use crate::error::ApiError;
use crate::headers::RequestHeaders;
use crate::query::{Comparison, QueryParams};
use crate::schema_cache::SchemaCache;

use super::patterns::{MAX_REGEX_FILTERS, MAX_REGEX_LEN, like_to_glob};

#[test]
fn glob_translation() {
    assert_eq!(like_to_glob("*yx"), "*yx");
    assert_eq!(like_to_glob("a_b%"), "a?b*");
    assert_eq!(like_to_glob("50\\%"), "50%");
    assert_eq!(like_to_glob("x[?]"), "x[[][?]]");
    assert_eq!(like_to_glob("\\*"), "[*]");
}

#[test]
fn casts_are_whitelisted() {
    assert_eq!(
        CastType::from_pg("double precision").unwrap(),
        CastType::Real
    );
    let e = CastType::from_pg("int); DROP TABLE x").unwrap_err();
    assert_eq!(e.code.as_str(), "42704");
}

fn cache() -> SchemaCache {
    let c = rusqlite::Connection::open_in_memory().unwrap();
    c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, b BOOLEAN, j JSON, s TEXT)")
        .unwrap();
    SchemaCache::load(&c, &crate::schema_cache::Exposure::All).unwrap()
}

fn headers() -> RequestHeaders {
    RequestHeaders::plain_json()
}

#[test]
fn range_intersection_and_max_rows() {
    let c = cache();
    let q = QueryParams::parse("limit=10&offset=5").unwrap();
    let mut h = headers();
    h.range = Some((0, Some(7)));
    let p = plan_read(
        &c,
        "t",
        &q,
        &h,
        Limits {
            max_rows: Some(2),
            ..Limits::default()
        },
    )
    .unwrap();
    assert_eq!(p.root.offset, 5);
    assert_eq!(p.root.limit, Some(2));
    let p = plan_read(&c, "t", &q, &h, Limits::default()).unwrap();
    assert_eq!(p.root.limit, Some(3));
}

#[test]
fn pages_at_the_extremes_saturate() {
    let c = cache();
    let max = i64::MAX;
    let page = |q: &str, range: Option<(i64, Option<i64>)>| {
        let mut h = headers();
        h.range = range;
        let p = plan_read(
            &c,
            "t",
            &QueryParams::parse(q).unwrap(),
            &h,
            Limits::default(),
        )?;
        Ok::<_, ApiError>((p.root.offset, p.root.limit))
    };
    assert_eq!(
        page(&format!("limit={max}&offset={max}"), None).unwrap(),
        (max, Some(max))
    );
    assert_eq!(
        page(&format!("limit={max}&offset=5"), None).unwrap(),
        (5, Some(max))
    );
    assert_eq!(
        page(&format!("limit={max}"), Some((0, Some(max)))).unwrap(),
        (0, Some(max))
    );
    assert_eq!(page("", Some((max, Some(max)))).unwrap(), (max, Some(1)));
    assert_eq!(page("limit=0", Some((max, None))).unwrap(), (max, Some(0)));
    assert_eq!(
        page(&format!("offset={}", i64::MIN), None).unwrap(),
        (0, None)
    );
    let e = page(&format!("limit={}", i64::MIN), None).unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (416, "PGRST103"));
    // Past i64 the number does not parse.
    let e = QueryParams::parse("limit=9223372036854775808").unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (400, "PGRST100"));
    // And the statement runs.
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2);")
        .unwrap();
    let cache = SchemaCache::load(&conn, &crate::schema_cache::Exposure::All).unwrap();
    for (q, rows) in [
        (format!("limit={max}&offset={max}"), 0),
        (format!("limit={max}&offset=1"), 1),
    ] {
        let mut h = headers();
        h.prefer.count = Some(crate::headers::CountMethod::Exact);
        let plan = plan_read(
            &cache,
            "t",
            &QueryParams::parse(&q).unwrap(),
            &h,
            Limits::default(),
        )
        .unwrap();
        match crate::read::exec::execute_read(&conn, &plan, false) {
            Ok(out) => assert_eq!(out.rows, rows, "{q}"),
            Err(e) => assert_eq!((e.status, rows), (416, 0), "{q}"),
        }
    }
}

#[test]
fn regular_expressions_are_bounded_per_request() {
    let c = cache();
    let plan = |q: &str| {
        plan_read(
            &c,
            "t",
            &QueryParams::parse(q).unwrap(),
            &headers(),
            Limits::default(),
        )
    };
    let e = plan("s=match.(").unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (400, "2201B"));
    let e = plan(&format!("s=match.{}", "a".repeat(MAX_REGEX_LEN + 1))).unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (400, "2201B"));
    // Each fits the size limit alone, not all together.
    let each = r"\w{10}";
    assert!(plan(&format!("s=match.{each}")).is_ok());
    let many = vec![format!("s.match.{each}"); 30].join(",");
    let e = plan(&format!("or=({many})")).unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (400, "2201B"), "{e:?}");
    // Quoted (for the braces); `\` escapes inside quotes.
    let list = vec![format!("\"{}\"", each.replace('\\', "\\\\")); 30].join(",");
    let e = plan(&format!("s=match(any).{{{list}}}")).unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (400, "2201B"));
    // A bounded number of filters.
    let filters = vec!["s.match.a"; MAX_REGEX_FILTERS + 1].join(",");
    let e = plan(&format!("or=({filters})")).unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (400, "54001"));
    let filters = vec!["s.imatch.a"; MAX_REGEX_FILTERS].join(",");
    assert!(plan(&format!("and=({filters})")).is_ok());
}

#[test]
fn unknown_names() {
    let c = cache();
    let q = QueryParams::parse("select=nope").unwrap();
    let e = plan_read(&c, "t", &q, &headers(), Limits::default()).unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (400, "42703"));
    let e = plan_read(
        &c,
        "x",
        &QueryParams::default(),
        &headers(),
        Limits::default(),
    )
    .unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (404, "PGRST205"));
    let q = QueryParams::parse("tasks.id=eq.1").unwrap();
    let e = plan_read(&c, "t", &q, &headers(), Limits::default()).unwrap_err();
    assert_eq!(e.code.as_str(), "PGRST108");
}

/// `GET /relation?query` on a database with an FTS5 table (`notes`) and an
/// external-content FTS5 index over `docs`: the ids returned, or the error.
fn search(relation: &str, query: &str) -> Result<Vec<i64>, ApiError> {
    search_rows(relation, &format!("select=id&order=id&{query}"))
        .map(|rows| rows.iter().map(|r| r["id"].as_i64().unwrap()).collect())
}

fn search_rows(relation: &str, query: &str) -> Result<Vec<serde_json::Value>, ApiError> {
    rows_in(
        "CREATE TABLE docs (id INTEGER PRIMARY KEY, title TEXT, body TEXT);
         CREATE VIRTUAL TABLE \"docs \"\"fts\"\"\" USING fts5(title, body, content='docs',
           content_rowid='id', tokenize='porter');
         INSERT INTO docs VALUES (1, 'Fat cats', 'The fat cat sat on the mat'),
           (2, 'Rats', 'A fat rat ate the cheese'), (3, NULL, 'Dogs chase cats');
         INSERT INTO \"docs \"\"fts\"\"\"(\"docs \"\"fts\"\"\") VALUES ('rebuild');
         CREATE VIRTUAL TABLE notes USING fts5(id UNINDEXED, body);
         INSERT INTO notes SELECT id, body FROM docs;",
        relation,
        query,
    )
}

/// `GET /relation?query` on a database made by `setup`.
fn rows_in(setup: &str, relation: &str, query: &str) -> Result<Vec<serde_json::Value>, ApiError> {
    let c = rusqlite::Connection::open_in_memory().unwrap();
    c.execute_batch(setup).unwrap();
    let cache = SchemaCache::load(&c, &crate::schema_cache::Exposure::All).unwrap();
    let q = QueryParams::parse(query)?;
    let plan = plan_read(&cache, relation, &q, &headers(), Limits::default())?;
    let out = crate::read::exec::execute_read(&c, &plan, false)?;
    Ok(serde_json::from_slice(&out.body).unwrap())
}

#[test]
fn full_text_filters_run_on_fts5() {
    for (rel, q, want) in [
        ("docs", "body=fts.fat", vec![1, 2]),
        ("docs", "body=fts(english).cats", vec![1, 3]),
        ("docs", "body=fts.fat%20%26%20!rat", vec![1]),
        ("docs", "body=fts.ch:*%20|%20mat", vec![1, 2, 3]),
        ("docs", "body=fts.fat%20<->%20rat", vec![2]),
        ("docs", "body=plfts.the%20cheese", vec![2]),
        ("docs", "body=plfts.cats,dogs", vec![3]),
        ("docs", "body=wfts.cats,dogs", vec![3]),
        ("docs", "body=phfts.cat%20sat", vec![1]),
        ("docs", "body=phfts.sat%20cat", vec![]),
        (
            "docs",
            "body=wfts.%22fat%20cat%22%20or%20dogs%20-rat",
            vec![1, 3],
        ),
        ("docs", "body=not.fts.fat", vec![3]),
        // A NULL column is neither matched nor, negated, unmatched (as in PostgreSQL).
        ("docs", "title=not.fts.fat", vec![2]),
        ("docs", "or=(body.fts.cheese,title.fts.cats)", vec![1, 2]),
        ("docs", "not.and=(body.fts.fat,id.lt.2)", vec![2, 3]),
        ("notes", "body=fts.dogs", vec![3]),
        ("notes", "or=(body.fts.rat,id.like.1)", vec![1, 2]),
        ("notes", "body=not.wfts.cats", vec![1, 2]),
    ] {
        let got = search(rel, q).unwrap_or_else(|e| panic!("{rel}?{q}: {e:?}"));
        assert_eq!(got, want, "{rel}?{q}");
    }
    // The external-content FTS5 table searched directly (its porter tokenizer stems).
    let rows = search_rows("docs \"fts\"", "select=title&title=fts.rat").unwrap();
    assert_eq!(rows, [serde_json::json!({"title": "Rats"})]);
}

/// The `body` values `GET /relation?select=body&order=body&query` returns.
fn bodies(setup: &str, relation: &str, query: &str) -> Result<Vec<String>, ApiError> {
    let rows = rows_in(setup, relation, &format!("select=body&order=body&{query}"))?;
    Ok(rows
        .iter()
        .map(|r| r["body"].as_str().unwrap().to_string())
        .collect())
}

#[test]
fn full_text_links_rows_as_fts5_does() {
    // `content_r` is FTS5's `content_rowid`: rows link through `id`, not the rowid.
    let setup = "CREATE TABLE docs (id INTEGER NOT NULL, body TEXT);
         INSERT INTO docs (rowid, id, body) VALUES (1, 100, 'apple'), (2, 1, 'banana'),
           (100, 2, 'cherry');
         CREATE VIRTUAL TABLE f USING fts5(body, content='docs', content_r='id');
         INSERT INTO f(f) VALUES ('rebuild');";
    assert_eq!(bodies(setup, "docs", "body=fts.apple").unwrap(), ["apple"]);
    assert_eq!(
        bodies(setup, "docs", "body=not.fts.apple").unwrap(),
        ["banana", "cherry"]
    );
    // A comment glued to `docs` ends the word: the index is docs', not "docs/*x*/"'s.
    let setup = "CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT);
         CREATE TABLE \"docs/*x*/\" (id INTEGER PRIMARY KEY, body TEXT);
         INSERT INTO docs VALUES (1, 'apple'), (2, 'pear');
         INSERT INTO \"docs/*x*/\" VALUES (1, 'pear'), (2, 'apple');
         CREATE VIRTUAL TABLE f USING fts5(body, content=docs/*x*/, content_rowid=id);
         INSERT INTO f(f) VALUES ('rebuild');";
    assert_eq!(bodies(setup, "docs", "body=fts.apple").unwrap(), ["apple"]);
    let e = bodies(setup, "docs/*x*/", "body=fts.apple").unwrap_err();
    assert_eq!(e.code.as_str(), "PGRST127");
    // `oid`/`_rowid_` on a table with a real `rowid` column: the true rowid, under an alias
    // no column shadows; `rowid` there is the real column, as FTS5 reads `T.'rowid'`.
    for key in ["oid", "_rowid_", "rowid"] {
        let setup = format!(
            "CREATE TABLE r (\"rowid\" INTEGER, body TEXT);
             INSERT INTO r (_rowid_, \"rowid\", body) VALUES (1, 2, 'apple'), (2, 1, 'pear');
             CREATE VIRTUAL TABLE f USING fts5(body, content='r', content_rowid='{key}');
             INSERT INTO f(f) VALUES ('rebuild');"
        );
        let got = bodies(&setup, "r", "body=fts.apple").unwrap();
        assert_eq!(got, ["apple"], "{key}");
        let native: Vec<String> = {
            let c = rusqlite::Connection::open_in_memory().unwrap();
            c.execute_batch(&setup).unwrap();
            c.prepare("SELECT body FROM f WHERE f MATCH 'apple'")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        // FTS5's own content lookup (through the same link) agrees.
        assert_eq!(native, ["apple"], "{key}");
    }
}

#[test]
fn detail_none_indexes() {
    let setup = "CREATE TABLE docs (id INTEGER PRIMARY KEY, title TEXT, body TEXT);
         INSERT INTO docs VALUES (1, 'apple', 'pear plum'), (2, 'pear', 'apple'),
           (3, NULL, NULL);
         CREATE VIRTUAL TABLE one USING fts5(body, content='docs', content_rowid='id',
           detail=none);
         CREATE VIRTUAL TABLE two USING fts5(id UNINDEXED, title, body, content='docs',
           content_rowid='id', d='n');
         INSERT INTO one(one) VALUES ('rebuild');
         INSERT INTO two(two) VALUES ('rebuild');";
    // Its only indexed column: the whole table is searched (no column filter).
    let ids = |q: &str| {
        rows_in(setup, "docs", &format!("select=id&order=id&{q}")).map(|r| {
            r.iter()
                .map(|r| r["id"].as_i64().unwrap())
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(ids("body=fts.apple").unwrap(), [2]);
    assert_eq!(ids("body=not.fts.apple").unwrap(), [1]);
    assert_eq!(ids("or=(body.fts.plum,body.fts.apple)").unwrap(), [1, 2]);
    assert_eq!(ids("body=fts.pe:*").unwrap(), [1]);
    // One of several columns: FTS5 cannot search it alone.
    let e = ids("title=fts.apple").unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (400, "PGRST127"));
    assert!(e.hint.unwrap().contains("detail=full"));
    // Searched directly, the same rules.
    let e = rows_in(setup, "two", "title=fts.apple").unwrap_err();
    assert_eq!(e.code.as_str(), "PGRST127");
    let rows = rows_in(setup, "one", "select=body&body=fts.apple").unwrap();
    assert_eq!(rows, [serde_json::json!({"body": "apple"})]);
}

/// SQLite's `EXPLAIN QUERY PLAN` for `sql`, one step a line.
fn query_plan(c: &rusqlite::Connection, sql: &crate::sql::Sql) -> String {
    c.prepare(&format!("EXPLAIN QUERY PLAN {}", sql.text))
        .unwrap()
        .query_map(rusqlite::params_from_iter(&sql.params), |r| {
            r.get::<_, String>(3)
        })
        .unwrap()
        .map(|r| r.unwrap() + "\n")
        .collect()
}

#[test]
fn full_text_drives_the_scan_inside_trees_not_under_not() {
    let c = rusqlite::Connection::open_in_memory().unwrap();
    c.execute_batch(
        "CREATE TABLE d (id INTEGER PRIMARY KEY, body TEXT);
         CREATE VIRTUAL TABLE f USING fts5(body, content='d', content_rowid='id');",
    )
    .unwrap();
    let cache = SchemaCache::load(&c, &crate::schema_cache::Exposure::All).unwrap();
    // (query, how many filters keep the three-valued CASE form)
    for (query, three_valued) in [
        ("or=(body.fts.a,body.fts.b)", 0),
        ("and=(body.fts.a,or(body.fts.b,id.eq.1))", 0),
        ("not.and=(not.or(body.fts.a,body.fts.b))", 0),
        ("not.or=(body.fts.a,body.fts.b)", 2),
        ("or=(body.not.fts.a,body.fts.b)", 1),
        ("and=(id.gt.0,not.or(body.fts.a,body.fts.b))", 2),
    ] {
        let q = QueryParams::parse(query).unwrap();
        let p = plan_read(&cache, "d", &q, &headers(), Limits::default()).unwrap();
        let sql = crate::read::sql::select(&p.root);
        assert_eq!(
            sql.text.matches("CASE WHEN").count(),
            three_valued,
            "{query}: {}",
            sql.text
        );
        assert_eq!(sql.text.matches(" IN (SELECT rowid FROM \"f\"").count(), 2);
        if query == "or=(body.fts.a,body.fts.b)" {
            let plan = query_plan(&c, &sql);
            // Each branch looks rows up by the index's matches: no full scan of d.
            assert!(!plan.contains("SCAN t0"), "{plan}");
            assert!(plan.contains("MULTI-INDEX OR"), "{plan}");
        }
    }
}

#[test]
fn full_text_query_is_one_bound_parameter() {
    let c = rusqlite::Connection::open_in_memory().unwrap();
    c.execute_batch(
        "CREATE TABLE d (id INTEGER PRIMARY KEY, \"b\"\"x\" TEXT);
         CREATE VIRTUAL TABLE \"d'fts\" USING fts5(\"b\"\"x\", content='d', content_rowid='id');",
    )
    .unwrap();
    let cache = SchemaCache::load(&c, &crate::schema_cache::Exposure::All).unwrap();
    let q = QueryParams::parse("%22b%5C%22x%22=not.wfts.%22x%27%20y);DROP%22%20z").unwrap();
    let p = plan_read(&cache, "d", &q, &headers(), Limits::default()).unwrap();
    let sql = crate::read::sql::select(&p.root);
    assert!(
        sql.text.ends_with(
            " WHERE NOT (CASE WHEN \"t0\".\"b\"\"x\" IS NULL THEN NULL ELSE \"t0\".\"id\" IN \
             (SELECT rowid FROM \"d'fts\" WHERE \"d'fts\".\"b\"\"x\" MATCH ?) END)"
        ),
        "{}",
        sql.text
    );
    assert_eq!(
        sql.params,
        [Value::Text("(\"x' y);DROP\" AND \"z\")".into())]
    );
    // Not negated, at the top: a plain IN, so SQLite looks rows up by the index's matches.
    let q = QueryParams::parse("%22b%5C%22x%22=fts.x").unwrap();
    let p = plan_read(&cache, "d", &q, &headers(), Limits::default()).unwrap();
    let sql = crate::read::sql::select(&p.root);
    assert!(
        sql.text.ends_with(
            " WHERE (\"t0\".\"id\" IN (SELECT rowid FROM \"d'fts\" WHERE \"d'fts\".\"b\"\"x\" MATCH ?))"
        ),
        "{}",
        sql.text
    );
    let plan = query_plan(&c, &sql);
    assert!(
        plan.contains("SEARCH t0 USING INTEGER PRIMARY KEY"),
        "{plan}"
    );
}

#[test]
fn contentless_fts5_tables_are_searched_by_rowid_alone() {
    let c = rusqlite::Connection::open_in_memory().unwrap();
    c.execute_batch(
        "CREATE VIRTUAL TABLE cl USING fts5(x, content='');
         INSERT INTO cl (rowid, x) VALUES (1, 'a b'), (2, 'c'), (3, 'a');",
    )
    .unwrap();
    let cache = SchemaCache::load(&c, &crate::schema_cache::Exposure::All).unwrap();
    let count = |q: &str| -> i64 {
        let q = QueryParams::parse(q).unwrap();
        let p = plan_read(&cache, "cl", &q, &headers(), Limits::default()).unwrap();
        let sql = crate::read::sql::count(&p.root);
        c.query_row(&sql.text, rusqlite::params_from_iter(&sql.params), |r| {
            r.get(0)
        })
        .unwrap()
    };
    // Its column reads as NULL, which must not hide rows from `not.` or trees.
    assert_eq!(count("x=fts.a"), 2);
    assert_eq!(count("x=not.fts.a"), 1);
    assert_eq!(count("or=(x.fts.c,x.fts.b)"), 2);
}

#[test]
fn full_text_errors_are_client_errors() {
    for (rel, q, code) in [
        ("docs", "id=fts.1", "PGRST127"),
        ("notes", "id=fts.1", "PGRST127"),
        ("docs", "body->a=fts.x", "PGRST127"),
        ("docs", "nope=fts.x", "42703"),
        ("docs", "body=fts.fat%20cat", "42601"),
        ("docs", "body=plfts.%20*%20", "22023"),
        ("docs", "body=fts.!fat", "PGRST127"),
        ("docs", "body=fts.fat%20<0>%20cat", "PGRST127"),
        ("docs", "body=fts.fat%00", "22021"),
        ("docs", "body=wfts.fat%00", "22021"),
    ] {
        let e = search(rel, q).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, code), "{rel}?{q}: {e:?}");
    }
    let e = search("docs", "id=fts.1").unwrap_err();
    assert_eq!(
        e.hint.as_deref(),
        Some(
            "Create an external-content FTS5 index for it: CREATE VIRTUAL TABLE \"docs_fts\" \
             USING fts5(\"id\", content='docs', content_rowid='id'); INSERT INTO \"docs_fts\"\
             (\"docs_fts\") VALUES ('rebuild'); and keep it in step with triggers on 'docs' \
             (https://sqlite.org/fts5.html#external_content_tables)."
        )
    );
    // Without a rowid (a view, a WITHOUT ROWID table) the hint never links through one;
    // a shadowed rowid is named by an alias no column shadows.
    for (rel, key) in [
        ("v", "'<integer column>'"),
        ("w", "'<integer column>'"),
        ("s", "'_rowid_'"),
    ] {
        let e = rows_in(
            "CREATE TABLE t (id TEXT, body TEXT); CREATE VIEW v AS SELECT id, body FROM t;
             CREATE TABLE w (id TEXT PRIMARY KEY, body TEXT) WITHOUT ROWID;
             CREATE TABLE s (rowid TEXT, body TEXT);",
            rel,
            "body=fts.x",
        )
        .unwrap_err();
        let hint = e.hint.unwrap();
        assert!(
            hint.contains(&format!("content='{rel}', content_rowid={key});")),
            "{hint}"
        );
    }
}

#[test]
fn json_keys_and_bool_values() {
    let c = cache();
    let q = QueryParams::parse("select=j->a->>b,j->0,x:j->a&b=eq.true").unwrap();
    let p = plan_read(&c, "t", &q, &headers(), Limits::default()).unwrap();
    let keys: Vec<_> = p.root.fields.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["b", "j", "x"]);
    assert_eq!(
        p.root.fields[0].expr,
        Expr::JsonPath {
            column: "j".into(),
            path: "$.\"a\".\"b\"".into(),
            text: true
        }
    );
    match &p.root.conditions[0] {
        Condition::Pred { pred, .. } => {
            assert_eq!(
                pred,
                &Predicate::Cmp(SqlCmp::Compare(Comparison::Eq), Value::Integer(1))
            )
        }
        other => panic!("{other:?}"),
    }
}

fn aggregates_cache() -> SchemaCache {
    let c = rusqlite::Connection::open_in_memory().unwrap();
    c.execute_batch(
        "CREATE TABLE a (id INTEGER PRIMARY KEY, name TEXT);
         CREATE TABLE b (id INTEGER PRIMARY KEY, n INTEGER, g TEXT, a_id INTEGER REFERENCES a(id));",
    )
    .unwrap();
    SchemaCache::load(&c, &crate::schema_cache::Exposure::All).unwrap()
}

fn plan_aggregates(table: &str, q: &str) -> Result<ReadPlan, ApiError> {
    let limits = Limits {
        aggregates: true,
        ..Limits::default()
    };
    plan_read(
        &aggregates_cache(),
        table,
        &QueryParams::parse(q)?,
        &headers(),
        limits,
    )
}

#[test]
fn aggregates_plan_into_fields_keyed_by_function_or_alias() {
    let p = plan_aggregates("b", "select=g,count(),t:n::int.sum()::text,n.max()").unwrap();
    let keys: Vec<&str> = p.root.fields.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["g", "count", "t", "max"]);
    assert!(p.root.grouped());
    assert!(!p.root.fields[0].expr.is_aggregate());
    assert_eq!(
        p.root.fields[2].expr,
        Expr::Cast {
            inner: Box::new(Expr::Aggregate {
                function: crate::query::AggregateFn::Sum,
                arg: Some(Box::new(Expr::Cast {
                    inner: Box::new(Expr::Column("n".into())),
                    to: CastType::Integer,
                })),
            }),
            to: CastType::Text,
        }
    );
    // Off: the same select is PostgREST's PGRST123, before anything else is resolved.
    let e = plan_read(
        &aggregates_cache(),
        "b",
        &QueryParams::parse("select=count(),nope").unwrap(),
        &headers(),
        Limits::default(),
    )
    .unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (400, "PGRST123"));
}

#[test]
fn grouping_is_by_result_position_at_the_top_and_by_expression_in_embeds() {
    let p = plan_aggregates("b", "select=g,count(),a_id,n.sum()&order=g&limit=2").unwrap();
    let sql = crate::read::sql::select(&p.root);
    assert_eq!(
        sql.text,
        "SELECT \"t0\".\"g\", count(*), \"t0\".\"a_id\", sum(\"t0\".\"n\") FROM \"b\" AS \"t0\" \
         GROUP BY 1, 3 ORDER BY \"t0\".\"g\" ASC NULLS LAST LIMIT ? OFFSET ?"
    );
    // Only aggregates: no GROUP BY (one row, even over no rows).
    let p = plan_aggregates("b", "select=count()").unwrap();
    assert_eq!(
        crate::read::sql::select(&p.root).text,
        "SELECT count(*) FROM \"b\" AS \"t0\""
    );
    // Inside a to-many embed: the group's rows in a sub-select, grouped by expression.
    let p = plan_aggregates("a", "select=name,b(g,count())").unwrap();
    let sql = crate::read::sql::select(&p.root);
    assert!(!p.root.grouped());
    assert!(
        sql.text
            .contains("json_group_array(json(\"pgrst_row\")) FROM (SELECT json_object(?, ")
            && sql.text.contains(" GROUP BY \"t1\".\"g\")"),
        "{}",
        sql.text
    );
    assert!(!sql.text.contains("GROUP BY 1"), "{}", sql.text);
    // Counts count groups.
    let p = plan_aggregates("b", "select=g,count()&n=gt.1").unwrap();
    assert_eq!(
        crate::read::sql::count(&p.root).text,
        "SELECT count(*) FROM (SELECT \"t0\".\"g\", count(*) FROM \"b\" AS \"t0\" \
         WHERE (\"t0\".\"n\" > ?) GROUP BY 1)"
    );
}

#[test]
fn spread_aggregates_are_hoisted_into_the_parent() {
    let p = plan_aggregates("b", "select=g,...a(id.max(),count())").unwrap();
    assert!(p.root.grouped());
    let sql = crate::read::sql::select(&p.root);
    assert_eq!(
        sql.text,
        "SELECT \"t0\".\"g\", max((SELECT \"t1\".\"id\" FROM \"a\" AS \"t1\" WHERE \"t1\".\"id\" = \"t0\".\"a_id\")), \
         count((SELECT 1 FROM \"a\" AS \"t1\" WHERE \"t1\".\"id\" = \"t0\".\"a_id\")) \
         FROM \"b\" AS \"t0\" GROUP BY 1"
    );
}

#[test]
fn grouped_order_must_name_a_grouping_field() {
    for (q, ok) in [
        ("select=g,count()&order=g.desc", true),
        ("select=x:g,count()&order=g", true),
        ("select=g,count()&order=n", false),
        ("select=count()&order=g", false),
        ("select=g,n&order=id", true),
    ] {
        match plan_aggregates("b", q) {
            Ok(_) => assert!(ok, "{q}"),
            Err(e) => {
                assert!(!ok, "{q}: {e:?}");
                assert_eq!((e.status, e.code.as_str()), (400, "42803"), "{q}");
            }
        }
    }
}
