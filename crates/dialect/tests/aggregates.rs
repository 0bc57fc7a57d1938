//! Aggregates in `select` on a real SQLite database (`crates/server/tests/fixtures/
//! aggregates.sql`): every function, implicit grouping, casts, renames, embeds and spreads,
//! counts of groups, and the errors, with the answers PostgreSQL (through PostgREST) gives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]

use dialect::{
    ApiError, CountMethod, Exposure, Limits, MediaType, Preferences, QueryParams, ReadOutput,
    RequestHeaders, SchemaCache, execute_read, plan_read,
};
use rusqlite::Connection;
use serde_json::{Value, json};

const AGGREGATES: &str = include_str!("../../server/tests/fixtures/aggregates.sql");

fn db() -> Connection {
    let c = Connection::open_in_memory().unwrap();
    dialect::register_functions(&c).unwrap();
    c.execute_batch(AGGREGATES).unwrap();
    c
}

fn run(
    c: &Connection,
    table: &str,
    q: &str,
    media: MediaType,
    count: Option<CountMethod>,
    aggregates: bool,
) -> Result<ReadOutput, ApiError> {
    let cache = SchemaCache::load(c, &Exposure::All).unwrap();
    let h = RequestHeaders {
        media,
        prefer: Preferences {
            count,
            ..Default::default()
        },
        range: None,
        profile_sent: false,
    };
    let limits = Limits {
        max_rows: None,
        aggregates,
    };
    let plan = plan_read(&cache, table, &QueryParams::parse(q)?, &h, limits)?;
    execute_read(c, &plan, false)
}

const JSON: MediaType = MediaType::Json { strip_nulls: false };

fn ok(c: &Connection, table: &str, q: &str) -> Value {
    let out = run(c, table, q, JSON, None, true)
        .unwrap_or_else(|e| panic!("{table}?{q}: {e} {:?}", e.details));
    serde_json::from_slice(&out.body).unwrap()
}

fn err(c: &Connection, table: &str, q: &str) -> ApiError {
    match run(c, table, q, JSON, None, true) {
        Ok(out) => panic!(
            "{table}?{q} answered {}",
            String::from_utf8_lossy(&out.body)
        ),
        Err(e) => e,
    }
}

#[test]
fn every_function_over_the_whole_table() {
    let c = db();
    // Keys are the functions' names, repeated as PostgreSQL labels them. count() counts
    // rows, price.count() non-NULL prices; the sum of integers is an integer, their average
    // a number; max of dates is the latest date.
    let body = run(
        &c,
        "books",
        "select=count(),price.count(),price.sum(),pages.sum(),pages.avg(),published.max(),id.min()",
        JSON,
        None,
        true,
    )
    .unwrap()
    .body;
    assert_eq!(
        String::from_utf8(body).unwrap(),
        r#"[{"count":5,"count":4,"sum":42.75,"sum":800,"avg":160.0,"max":"2022-02-02","min":1}]"#
    );
    let body = run(
        &c,
        "books",
        "select=n:count(),rows:price.count(),total:price.sum(),pages:pages.sum(),mean:pages.avg(),latest:published.max(),first:id.min()",
        JSON,
        None,
        true,
    )
    .unwrap()
    .body;
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!([{"n": 5, "rows": 4, "total": 42.75, "pages": 800, "mean": 160.0,
                "latest": "2022-02-02", "first": 1}])
    );
}

#[test]
fn no_rows_without_grouping_is_one_row_of_nulls_and_zero() {
    let c = db();
    // PostgreSQL: an aggregate without GROUP BY over no rows still gives one row.
    assert_eq!(
        ok(
            &c,
            "books",
            "select=count(),price.sum(),pages.avg(),published.max()&id=gt.100"
        ),
        json!([{"count": 0, "sum": null, "avg": null, "max": null}])
    );
    // With GROUP BY, no rows means no groups.
    assert_eq!(ok(&c, "books", "select=genre,count()&id=gt.100"), json!([]));
}

#[test]
fn implicit_group_by_the_other_fields_with_filters_order_and_limit() {
    let c = db();
    assert_eq!(
        ok(
            &c,
            "books",
            "select=genre,count(),price.sum(),pages.max()&order=genre.asc.nullsfirst"
        ),
        json!([
            {"genre": null, "count": 1, "sum": 7.0, "max": 50},
            {"genre": "crime", "count": 1, "sum": null, "max": 300},
            {"genre": "sf", "count": 3, "sum": 35.75, "max": 200},
        ])
    );
    // Filters apply before grouping; limit and offset to the groups.
    assert_eq!(
        ok(
            &c,
            "books",
            "select=g:genre,author_id,count()&genre=not.is.null&order=author_id.desc,genre&limit=2&offset=1"
        ),
        json!([
            {"g": "sf", "author_id": 2, "count": 1},
            {"g": "sf", "author_id": 1, "count": 2},
        ])
    );
    // `*` with an aggregate groups by every column.
    let v = ok(&c, "books", "select=*,count()&order=id&limit=1");
    assert_eq!(v[0]["count"], json!(1));
    assert_eq!(v[0]["title"], json!("A1"));
}

#[test]
fn casts_before_and_after_the_aggregate() {
    let c = db();
    assert_eq!(
        ok(
            &c,
            "books",
            "select=price::int.sum(),pages.avg()::int,total:price.sum()::text,data->>tax::numeric.sum(),c:count()::text"
        ),
        // 10 + 20 + 5 + 7 (each price cast first); 160; "42.75"; 1.5 + 2 + 0.5; "5".
        json!([{"sum": 42, "avg": 160, "total": "42.75", "sum": 4.0, "c": "5"}])
    );
    // min/max keep the column's rendering: a boolean stays a boolean.
    assert_eq!(
        ok(&c, "books", "select=in_print.max(),in_print.min()"),
        json!([{"max": true, "min": false}])
    );
}

#[test]
fn aggregates_inside_embeds_group_per_parent() {
    let c = db();
    assert_eq!(
        ok(
            &c,
            "authors",
            "select=name,books(count(),price.sum())&order=id"
        ),
        json!([
            {"name": "Ann", "books": [{"count": 2, "sum": 30.5}]},
            {"name": "Bob", "books": [{"count": 2, "sum": 5.25}]},
            // An aggregate without grouping gives one row, also over no rows.
            {"name": "Cy", "books": [{"count": 0, "sum": null}]},
        ])
    );
    assert_eq!(
        ok(
            &c,
            "authors",
            "select=name,books(genre,count())&books.order=genre&order=id&id=lt.3"
        ),
        json!([
            {"name": "Ann", "books": [{"genre": "sf", "count": 2}]},
            {"name": "Bob", "books": [{"genre": "crime", "count": 1}, {"genre": "sf", "count": 1}]},
        ])
    );
    // Inside a to-one embed: one row, also where there is no related row.
    assert_eq!(
        ok(
            &c,
            "books",
            "select=id,authors(count())&id=in.(1,5)&order=id"
        ),
        json!([
            {"id": 1, "authors": {"count": 1}},
            {"id": 5, "authors": {"count": 0}},
        ])
    );
    // Embeds nested under an aggregated embed, and a filter inside it.
    assert_eq!(
        ok(
            &c,
            "authors",
            "select=name,books(pages.sum(),authors(country))&books.pages=gte.150&order=id"
        ),
        json!([
            {"name": "Ann", "books": [{"sum": 200, "authors": {"country": "FR"}}]},
            {"name": "Bob", "books": [{"sum": 450, "authors": {"country": "FR"}}]},
            // Grouped by the nested embed: no rows, no groups.
            {"name": "Cy", "books": []},
        ])
    );
}

#[test]
fn grouping_by_an_embed_and_by_a_spread() {
    let c = db();
    // Grouped by the embedded author (a to-one embed is one of the grouping fields).
    assert_eq!(
        ok(
            &c,
            "books",
            "select=author_id,price.sum(),authors(name)&order=author_id"
        ),
        json!([
            {"author_id": 1, "sum": 30.5, "authors": {"name": "Ann"}},
            {"author_id": 2, "sum": 5.25, "authors": {"name": "Bob"}},
            {"author_id": null, "sum": 7.0, "authors": null},
        ])
    );
    // A spread's fields group like the parent's own; its aggregates are hoisted into the
    // parent (they aggregate the parent's rows).
    assert_eq!(
        ok(
            &c,
            "books",
            "select=genre,...authors(country),count()&order=genre"
        ),
        json!([
            {"genre": "crime", "country": "FR", "count": 1},
            {"genre": "sf", "country": "FR", "count": 3},
            {"genre": null, "country": null, "count": 1},
        ])
    );
    assert_eq!(
        ok(
            &c,
            "books",
            "select=genre,...authors(id.max(),n:count())&order=genre"
        ),
        // n counts the books that have an author.
        json!([
            {"genre": "crime", "max": 2, "n": 1},
            {"genre": "sf", "max": 2, "n": 3},
            {"genre": null, "max": null, "n": 0},
        ])
    );
}

#[test]
fn exact_counts_count_groups() {
    let c = db();
    let out = run(
        &c,
        "books",
        "select=genre,count()&limit=1&order=genre",
        JSON,
        Some(CountMethod::Exact),
        true,
    )
    .unwrap();
    assert_eq!(out.content_range, "0-0/3");
    assert_eq!(out.status, 206);
    let out = run(
        &c,
        "books",
        "select=count()",
        JSON,
        Some(CountMethod::Exact),
        true,
    )
    .unwrap();
    assert_eq!(out.content_range, "0-0/1");
    // The planner's estimate is of rows, not groups: grouped reads count exactly.
    c.execute_batch("ANALYZE").unwrap();
    for method in [CountMethod::Planned, CountMethod::Estimated] {
        let out = run(
            &c,
            "books",
            "select=author_id,count()",
            JSON,
            Some(method),
            true,
        )
        .unwrap();
        assert_eq!(out.content_range, "0-2/3", "{method:?}");
    }
}

#[test]
fn csv_output() {
    let c = db();
    let out = run(
        &c,
        "books",
        "select=genre,count(),price.sum()&genre=not.is.null&order=genre",
        MediaType::Csv,
        None,
        true,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(out.body).unwrap(),
        "genre,count,sum\ncrime,1,\nsf,3,35.75"
    );
}

#[test]
fn refused_when_not_enabled() {
    let c = db();
    for q in [
        "select=count()",
        "select=price.sum()",
        "select=name,books(count())",
        "select=id,...authors(id.max())",
    ] {
        let table = if q.contains("books(") {
            "authors"
        } else {
            "books"
        };
        let e = run(&c, table, q, JSON, None, false).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str(), e.message.as_str()),
            (400, "PGRST123", "Use of aggregate functions is not allowed"),
            "{q}"
        );
        assert!(e.details.is_none() && e.hint.is_none());
    }
}

#[test]
fn errors() {
    let c = db();
    // An unknown column, aggregated or grouped.
    let e = err(&c, "books", "select=nope.sum()");
    assert_eq!((e.status, e.code.as_str()), (400, "42703"));
    assert_eq!(e.message, "column books.nope does not exist");
    // sum/avg of text, JSON or a boolean: no such function in PostgreSQL.
    for (q, msg) in [
        ("select=title.sum()", "function sum(text) does not exist"),
        (
            "select=data->tax.avg()",
            "function avg(jsonb) does not exist",
        ),
        (
            "select=data->>tax.sum()",
            "function sum(text) does not exist",
        ),
        (
            "select=in_print.sum()",
            "function sum(boolean) does not exist",
        ),
        (
            "select=pages::text.avg()",
            "function avg(text) does not exist",
        ),
    ] {
        let e = err(&c, "books", q);
        assert_eq!(
            (e.status, e.code.as_str(), e.message.as_str()),
            (404, "42883", msg),
            "{q}"
        );
        assert!(e.hint.is_some());
    }
    // Ordering by a field that is not grouped (or by an aggregate).
    let e = err(&c, "books", "select=genre,count()&order=title");
    assert_eq!((e.status, e.code.as_str()), (400, "42803"), "{e:?}");
    assert_eq!(
        e.message,
        "column \"books.title\" must appear in the GROUP BY clause or be used in an aggregate function"
    );
    let e = err(
        &c,
        "authors",
        "select=name,books(genre,count())&books.order=title",
    );
    assert_eq!((e.status, e.code.as_str()), (400, "42803"), "{e:?}");
    // An unknown cast.
    let e = err(&c, "books", "select=pages.sum()::money");
    assert_eq!((e.status, e.code.as_str()), (400, "42704"));
    // Ordering by an aggregate is not supported (as in PostgREST): its name is no column.
    let e = err(&c, "books", "select=genre,count()&order=count");
    assert_eq!((e.status, e.code.as_str()), (400, "42703"), "{e:?}");
    // A bad aggregate's syntax.
    for q in [
        "select=*.count()",
        "select=price.total()",
        "select=price.sum(price)",
    ] {
        let e = err(&c, "books", q);
        assert_eq!((e.status, e.code.as_str()), (400, "PGRST100"), "{q}");
    }
    // An integer sum past i64: a client error (PostgreSQL's bigint range), never a 500.
    c.execute_batch("INSERT INTO books (id, title, pages) VALUES (6, 'Big', 9223372036854775807)")
        .unwrap();
    let e = err(&c, "books", "select=pages.sum()");
    assert_eq!((e.status, e.code.as_str()), (400, "22003"), "{e:?}");
}
