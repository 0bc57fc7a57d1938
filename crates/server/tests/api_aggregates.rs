//! Aggregates in `select` over real HTTP against the `sqlite-rest` binary: off by default
//! (PostgREST's 400 PGRST123), on with `--aggregates-enabled` or its environment variable;
//! every function, implicit grouping, casts, renames, embeds and spreads, filters, order and
//! pages of groups, counts, CSV, and the errors (`fixtures/aggregates.sql`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ALL_TABLES, Options, Server, get, p};
use serde_json::{Value, json};

const AGGREGATES_SQL: &str = include_str!("fixtures/aggregates.sql");

/// A path, its query parameters, and the body PostgREST answers.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Value);

/// The server over the fixture plus `aggregates.sql`, started with `args` and `env`.
async fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
    let s = Server::start_with(Options {
        args: args.iter().map(|a| a.to_string()).collect(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        allow: format!("{ALL_TABLES},authors,books"),
        ..Options::default()
    })
    .await;
    // Another process changes the schema: the server sees it on its next request.
    s.exec_sql(AGGREGATES_SQL);
    s
}

async fn enabled() -> Server {
    start(&["--aggregates-enabled"], &[]).await
}

#[tokio::test]
async fn off_by_default_with_postgrest_error() {
    let s = start(&[], &[]).await;
    for (path, select) in [
        ("/books", "count()"),
        ("/books", "genre,price.sum()"),
        ("/books", "total:price.sum()::text"),
        ("/authors", "name,books(count())"),
        ("/books", "id,...authors(id.max())"),
    ] {
        let v = s
            .error(&p(path, &[("select", select)]), 400, "PGRST123")
            .await;
        assert_eq!(
            v,
            json!({"code": "PGRST123", "details": null, "hint": null,
                   "message": "Use of aggregate functions is not allowed"}),
            "{select}"
        );
    }
    // Everything else still reads.
    assert_eq!(
        s.query("/books", &[("select", "id"), ("id", "eq.1")]).await,
        json!([{"id": 1}])
    );
}

#[tokio::test]
async fn on_through_the_environment() {
    let s = start(&[], &[("SQLITEREST_AGGREGATES_ENABLED", "true")]).await;
    assert_eq!(
        s.query("/books", &[("select", "count()")]).await,
        json!([{"count": 5}])
    );
}

#[tokio::test]
async fn every_function_grouping_casts_and_renames() {
    let s = enabled().await;
    // The functions' names are the keys (repeated as PostgreSQL labels them).
    let r = get(
        &s,
        &p(
            "/books",
            &[(
                "select",
                "count(),price.count(),price.sum(),pages.sum(),pages.avg(),published.max(),id.min()",
            )],
        ),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        r#"[{"count":5,"count":4,"sum":42.75,"sum":800,"avg":160.0,"max":"2022-02-02","min":1}]"#
    );
    let cases: &[(&[(&str, &str)], Value)] = &[
        // Renames.
        (
            &[("select", "n:count(),total:price.sum(),mean:pages.avg()")],
            json!([{"n": 5, "total": 42.75, "mean": 160.0}]),
        ),
        // Grouped by the other fields; filters before, order and limit over the groups.
        (
            &[
                ("select", "genre,count(),price.sum(),pages.max()"),
                ("genre", "not.is.null"),
                ("order", "genre.desc"),
            ],
            json!([
                {"genre": "sf", "count": 3, "sum": 35.75, "max": 200},
                {"genre": "crime", "count": 1, "sum": null, "max": 300},
            ]),
        ),
        (
            &[
                ("select", "author_id,genre,count()"),
                ("order", "author_id.nullslast,genre"),
                ("limit", "2"),
                ("offset", "1"),
            ],
            json!([
                {"author_id": 2, "genre": "crime", "count": 1},
                {"author_id": 2, "genre": "sf", "count": 1},
            ]),
        ),
        // Casts of the column (before) and of the aggregate (after).
        (
            &[(
                "select",
                "i:price::int.sum(),pages.avg()::int,t:price.sum()::text,tax:data->>tax::numeric.sum()",
            )],
            // 10 + 20 + 5 + 7 after each price's cast; 160; "42.75"; 1.5 + 2 + 0.5.
            json!([{"i": 42, "avg": 160, "t": "42.75", "tax": 4.0}]),
        ),
        // No rows: one row without grouping (count 0, sum null), no groups with it.
        (
            &[("select", "count(),price.sum()"), ("id", "gt.100")],
            json!([{"count": 0, "sum": null}]),
        ),
        (&[("select", "genre,count()"), ("id", "gt.100")], json!([])),
    ];
    for (params, want) in cases {
        assert_eq!(&s.query("/books", params).await, want, "{params:?}");
    }
}

#[tokio::test]
async fn inside_embeds_and_spreads() {
    let s = enabled().await;
    let cases: &[Case] = &[
        // An aggregate inside a to-many embed groups each parent's rows.
        (
            "/authors",
            &[
                ("select", "name,books(count(),price.sum())"),
                ("order", "id"),
            ],
            json!([
                {"name": "Ann", "books": [{"count": 2, "sum": 30.5}]},
                {"name": "Bob", "books": [{"count": 2, "sum": 5.25}]},
                {"name": "Cy", "books": [{"count": 0, "sum": null}]},
            ]),
        ),
        (
            "/authors",
            &[
                ("select", "name,books(genre,count())"),
                ("books.order", "genre"),
                ("books.genre", "not.is.null"),
                ("id", "lt.3"),
                ("order", "id"),
            ],
            json!([
                {"name": "Ann", "books": [{"genre": "sf", "count": 2}]},
                {"name": "Bob", "books": [{"genre": "crime", "count": 1}, {"genre": "sf", "count": 1}]},
            ]),
        ),
        // A to-one embed is one of the grouping fields.
        (
            "/books",
            &[
                ("select", "author_id,pages.sum(),authors(name)"),
                ("author_id", "not.is.null"),
                ("order", "author_id"),
            ],
            json!([
                {"author_id": 1, "sum": 300, "authors": {"name": "Ann"}},
                {"author_id": 2, "sum": 450, "authors": {"name": "Bob"}},
            ]),
        ),
        // A to-one spread: its fields group, its aggregates run over the parent's rows.
        (
            "/books",
            &[
                ("select", "...authors(country),count(),price.sum()"),
                ("order", "authors(country)"),
            ],
            json!([
                {"country": "FR", "count": 4, "sum": 35.75},
                {"country": null, "count": 1, "sum": 7.0},
            ]),
        ),
        (
            "/books",
            &[
                ("select", "genre,...authors(latest:id.max(),n:count())"),
                ("order", "genre"),
            ],
            json!([
                {"genre": "crime", "latest": 2, "n": 1},
                {"genre": "sf", "latest": 2, "n": 3},
                {"genre": null, "latest": null, "n": 0},
            ]),
        ),
    ];
    for (path, params, want) in cases {
        assert_eq!(&s.query(path, params).await, want, "{path} {params:?}");
    }
}

#[tokio::test]
async fn counts_count_groups_and_csv() {
    let s = enabled().await;
    let r = get(
        &s,
        &p(
            "/books",
            &[
                ("select", "genre,count()"),
                ("order", "genre"),
                ("limit", "2"),
            ],
        ),
        &[("Prefer", "count=exact")],
    )
    .await;
    assert_eq!(r.status, 206, "{}", r.body);
    assert_eq!(r.header("Content-Range"), Some("0-1/3"));
    assert_eq!(r.header("Preference-Applied"), Some("count=exact"));
    assert_eq!(
        r.json(),
        json!([{"genre": "crime", "count": 1}, {"genre": "sf", "count": 3}])
    );
    let r = get(
        &s,
        &p(
            "/books",
            &[
                ("select", "genre,count(),price.sum()"),
                ("genre", "not.is.null"),
                ("order", "genre"),
            ],
        ),
        &[("Accept", "text/csv")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("Content-Type").unwrap().starts_with("text/csv"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.body, "genre,count,sum\ncrime,1,\nsf,3,35.75");
    // HEAD counts the groups too.
    let r = common::send(
        &s,
        reqwest::Method::HEAD,
        &p("/books", &[("select", "author_id,count()")]),
        &[("Prefer", "count=exact")],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Range"), Some("0-2/3"));
}

#[tokio::test]
async fn errors_are_postgrest_shaped() {
    let s = enabled().await;
    let cases: &[(&str, &str, u16, &str, &str)] = &[
        (
            "/books",
            "nope.sum()",
            400,
            "42703",
            "column books.nope does not exist",
        ),
        (
            "/books",
            "genre,nope,count()",
            400,
            "42703",
            "column books.nope does not exist",
        ),
        (
            "/books",
            "title.sum()",
            404,
            "42883",
            "function sum(text) does not exist",
        ),
        (
            "/books",
            "data->tax.avg()",
            404,
            "42883",
            "function avg(jsonb) does not exist",
        ),
        (
            "/books",
            "in_print.sum()",
            404,
            "42883",
            "function sum(boolean) does not exist",
        ),
        (
            "/books",
            "pages.sum()::money",
            400,
            "42704",
            "type \"money\" does not exist",
        ),
        (
            "/authors",
            "name,nope(count())",
            400,
            "PGRST200",
            "Could not find a relationship between 'authors' and 'nope' in the schema cache",
        ),
    ];
    for (path, select, status, code, message) in cases {
        let v = s
            .error(&p(path, &[("select", select)]), *status, code)
            .await;
        assert_eq!(v["message"], *message, "{select}: {v}");
    }
    for select in ["*.count()", "price.total()", "price.sum(price)", "count()x"] {
        s.error(&p("/books", &[("select", select)]), 400, "PGRST100")
            .await;
    }
    // Ordering by a field that is not grouped: PostgreSQL's grouping error.
    let v = s
        .error(
            &p("/books", &[("select", "genre,count()"), ("order", "title")]),
            400,
            "42803",
        )
        .await;
    assert_eq!(
        v["message"],
        "column \"books.title\" must appear in the GROUP BY clause or be used in an aggregate function"
    );
    // An integer sum past the 64-bit range is a client error, not a 500.
    s.exec_sql("INSERT INTO books (id, title, pages) VALUES (6, 'Big', 9223372036854775807)");
    let v = s
        .error(&p("/books", &[("select", "pages.sum()")]), 400, "22003")
        .await;
    assert_eq!(v["message"], "bigint out of range");
}
