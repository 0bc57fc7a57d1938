//! The PostgREST read surface over real HTTP against the `sqlite-rest` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Options, Server, get, ids, p, send};
use reqwest::Method;
use serde_json::json;

/// Query parameters and the ids they must select.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a [i64]);

async fn ids_of(s: &Server, table: &str, params: &[(&str, &str)]) -> Vec<i64> {
    let mut all = vec![("select", "id"), ("order", "id")];
    all.extend_from_slice(params);
    ids(&s.json(&p(&format!("/{table}"), &all), 200).await)
}

#[tokio::test]
async fn every_filter_operator() {
    let s = Server::start().await;
    let cases: &[Case] = &[
        (&[("id", "eq.2")], &[2]),
        (&[("id", "neq.2")], &[1, 3, 4, 5]),
        (&[("id", "gt.3")], &[4, 5]),
        (&[("id", "gte.3")], &[3, 4, 5]),
        (&[("id", "lt.2")], &[1]),
        (&[("id", "lte.2")], &[1, 2]),
        (&[("name", "like.Windows*")], &[1, 2]),
        (&[("name", "like.windows*")], &[]),
        (&[("name", "like.*O*")], &[3, 4, 5]),
        (&[("name", "like.Windows_7")], &[1]),
        (&[("name", "ilike.windows*")], &[1, 2]),
        (&[("name", "match.^W.*0$")], &[2]),
        (&[("name", "imatch.^w")], &[1, 2]),
        (&[("id", "in.(1,3,5)")], &[1, 3, 5]),
        (&[("name", "in.(\"Windows 7\",IOS)")], &[1, 3]),
        (&[("id", "not.in.(1,2)")], &[3, 4, 5]),
        (&[("id", "in.()")], &[]),
        (&[("budget", "is.null")], &[3]),
        (&[("budget", "not.is.null")], &[1, 2, 4, 5]),
        (&[("budget", "is.not_null")], &[1, 2, 4, 5]),
        (&[("budget", "is.unknown")], &[3]),
        (&[("active", "is.true")], &[1, 2, 4]),
        (&[("active", "is.True")], &[1, 2, 4]),
        (&[("active", "is.false")], &[3, 5]),
        (&[("active", "eq.false")], &[3, 5]),
        (&[("active", "eq.t")], &[1, 2, 4]),
        (&[("budget", "isdistinct.0.5")], &[1, 2, 3, 4]),
        (&[("budget", "gt.100")], &[1, 2]),
        (&[("id", "eq(any).{1,4}")], &[1, 4]),
        (&[("id", "gt(all).{1,2}")], &[3, 4, 5]),
        (&[("name", "like(any).{IOS,OSX}")], &[3, 4]),
        (&[("name", "like(all).{*i*,*n*}")], &[1, 2]),
        (&[("name", "ilike(any).{ios,*phan}")], &[3, 5]),
        (&[("id", "not.eq.1")], &[2, 3, 4, 5]),
        (&[("id", "gte.2"), ("id", "lte.3")], &[2, 3]),
        (&[("or", "(id.eq.1,id.eq.3)")], &[1, 3]),
        (&[("and", "(id.gte.2,id.lte.3)")], &[2, 3]),
        (&[("or", "(id.eq.1,and(id.gt.3,not.or(id.eq.5)))")], &[1, 4]),
        (&[("not.or", "(id.eq.1,id.eq.2)")], &[3, 4, 5]),
        (&[("not.and", "(id.gte.2,id.lte.4)")], &[1, 5]),
        (&[("or", "(name.eq.\"Windows 7\",name.eq.IOS)")], &[1, 3]),
        (&[("or", "( id.eq.1 , id.in.(4,5) )")], &[1, 4, 5]),
        (&[("settings->foo->>bar", "eq.baz")], &[1, 4]),
        (&[("settings->foo->int", "gt.1")], &[2, 4]),
        (&[("settings->tags", "eq.[\"b\"]")], &[2]),
        (&[("settings->tags->0", "eq.\"a\"")], &[1]),
        (&[("settings->tags->-1", "eq.\"b\"")], &[1, 2]),
        (&[("settings->foo->>bar", "like.*u*")], &[2]),
        (&[("or", "(settings->foo->>bar.eq.qux,id.eq.5)")], &[2, 5]),
        // JSON containment and overlap (PostgreSQL's jsonb @>, <@ and array &&).
        (&[("settings->tags", "cs.{a}")], &[1]),
        (&[("settings->tags", "cs.[\"b\"]")], &[1, 2]),
        (&[("settings->tags", "cs.{}")], &[1, 2, 4]),
        (&[("settings->tags", "cs.{a,c}")], &[]),
        (&[("settings->tags", "cs.\"b\"")], &[1, 2]),
        (&[("settings->tags", "not.cs.{a}")], &[2, 4]),
        (&[("settings->tags", "cd.{a,b}")], &[1, 2, 4]),
        (&[("settings->tags", "cd.{b,c}")], &[2, 4]),
        (&[("settings->tags", "ov.{a,c}")], &[1]),
        (&[("settings->tags", "ov.[\"b\",\"z\"]")], &[1, 2]),
        (&[("settings", "cs.{\"foo\":{\"bar\":\"baz\"}}")], &[1, 4]),
        (&[("settings->foo", "cs.{\"int\":2}")], &[2]),
        (
            &[("settings->foo", "cd.{\"int\":2,\"bar\":\"qux\",\"x\":1}")],
            &[2],
        ),
        (&[("settings->foo->int", "cs.4")], &[4]),
        (&[("or", "(settings->tags.cs.{a},id.eq.5)")], &[1, 5]),
        (
            &[(
                "or",
                "(settings.cs.{\"foo\":{\"int\":4,\"bar\":\"baz\"}},id.eq.2)",
            )],
            &[2, 4],
        ),
    ];
    for (params, want) in cases {
        assert_eq!(&ids_of(&s, "projects", params).await, want, "{params:?}");
    }
    // Quoted values with commas, quotes and backslashes; unicode.
    let names: &[Case] = &[
        (
            &[("name", "in.(\"Hebdon, John\",\"Double\\\"Quote\")")],
            &[1, 4],
        ),
        (&[("or", "(name.eq.\"Hebdon, John\",id.eq.3)")], &[1, 3]),
        (&[("name", "eq.Zoë Ñandú")], &[2]),
        (&[("name", "eq.棋圍")], &[3]),
        (&[("name", "eq.back\\slash")], &[5]),
        (&[("name", "like.*\\\\*")], &[5]),
        (&[("name", "eq.")], &[]),
    ];
    for (params, want) in names {
        assert_eq!(&ids_of(&s, "names", params).await, want, "{params:?}");
    }
    // Text keys compared with TEXT: case-sensitive on both ops that should be.
    assert_eq!(
        s.query("/simple_pk", &[("k", "eq.xyyx")]).await,
        json!([{"k": "xyyx", "extra": "u"}])
    );
    assert_eq!(
        s.query(
            "/simple_pk",
            &[("select", "k"), ("k", "ilike.XYYX"), ("order", "k")]
        )
        .await,
        json!([{"k": "xYYx"}, {"k": "xyyx"}])
    );
}

#[tokio::test]
async fn select_rename_cast_and_json_paths() {
    let s = Server::start().await;
    let r = get(
        &s,
        &p("/projects", &[("select", "id,name"), ("id", "eq.1")]),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.body, r#"[{"id":1,"name":"Windows 7"}]"#);

    let all = s.query("/projects", &[("id", "eq.1")]).await;
    assert_eq!(
        all,
        json!([{"id":1,"name":"Windows 7","client_id":1,"budget":1500.5,
                "settings":{"foo":{"int":1,"bar":"baz"},"tags":["a","b"]},
                "logo":"\\xdeadbeef","active":true}])
    );
    assert_eq!(
        s.query("/projects", &[("select", ""), ("id", "eq.1")])
            .await,
        all
    );
    assert_eq!(
        s.query(
            "/projects",
            &[
                ("select", "projectName:name,id::text,budget::int"),
                ("id", "eq.1")
            ]
        )
        .await,
        json!([{"projectName":"Windows 7","id":"1","budget":1500}])
    );
    assert_eq!(
        s.query(
            "/projects",
            &[
                ("select", "b:budget::text,active::boolean,on:active::int"),
                ("id", "eq.3")
            ]
        )
        .await,
        json!([{"b":null,"active":false,"on":0}])
    );
    assert_eq!(
        s.query(
            "/projects",
            &[
                ("select", "id,settings->foo->>bar,t:settings->tags,first:settings->tags->0,settings->foo->int,last:settings->tags->-1"),
                ("id", "eq.1"),
            ]
        )
        .await,
        json!([{"id":1,"bar":"baz","t":["a","b"],"first":"a","int":1,"last":"b"}])
    );
    assert_eq!(
        s.query(
            "/projects",
            &[
                ("select", "settings->foo"),
                ("id", "in.(3,4)"),
                ("order", "id")
            ]
        )
        .await,
        json!([{"foo":null},{"foo":{"int":4,"bar":"baz"}}])
    );
    assert_eq!(
        s.query(
            "/projects",
            &[("select", "n:settings->foo->int::text"), ("id", "eq.2")]
        )
        .await,
        json!([{"n":"2"}])
    );
    // Quoted, dotted and spaced names.
    assert_eq!(
        s.query(
            "/Order Items",
            &[
                ("select", "\"Unit Price\",\"a.b\",\"we\\\"ird\""),
                ("Unit Price", "lt.200")
            ]
        )
        .await,
        json!([{"Unit Price":150.0,"a.b":"dot","we\"ird":"q"}])
    );
    assert_eq!(
        s.query("/Order Items", &[("select", "id"), ("\"a.b\"", "eq.dot")])
            .await,
        json!([{"id":1}])
    );
    // Views are readable like tables.
    assert_eq!(
        s.query(
            "/projects_view",
            &[("select", "id,name"), ("budget", "lt.1")]
        )
        .await,
        json!([{"id":5,"name":"Orphan"}])
    );
}

#[tokio::test]
async fn order_with_null_placement() {
    let s = Server::start().await;
    let cases: &[(&str, &[i64])] = &[
        ("budget.asc", &[5, 4, 1, 2, 3]),
        ("budget", &[5, 4, 1, 2, 3]),
        ("budget.desc", &[3, 2, 1, 4, 5]),
        ("budget.asc.nullsfirst", &[3, 5, 4, 1, 2]),
        ("budget.desc.nullslast", &[2, 1, 4, 5, 3]),
        ("client_id.desc,id.asc", &[5, 3, 4, 1, 2]),
        ("settings->foo->int.desc.nullslast,id", &[4, 2, 1, 3, 5]),
        ("name.desc", &[1, 2, 5, 4, 3]),
    ];
    for (order, want) in cases {
        let v = s
            .json(&p("/projects", &[("select", "id"), ("order", order)]), 200)
            .await;
        assert_eq!(&ids(&v), want, "order={order}");
    }
}

#[tokio::test]
async fn limits_ranges_and_counts() {
    let s = Server::start().await;
    let get = |q: Vec<(&'static str, &'static str)>, headers: Vec<(&'static str, &'static str)>| {
        let mut all = vec![("select", "id"), ("order", "id")];
        all.extend(q);
        let mut req = s.get(&p("/items", &all));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let range = r
                .headers()
                .get("content-range")
                .map(|v| v.to_str().unwrap().to_string());
            let applied = r
                .headers()
                .get("preference-applied")
                .map(|v| v.to_str().unwrap().to_string());
            let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            (status, range, applied, body)
        }
    };
    let (st, cr, _, b) = get(vec![("limit", "5")], vec![]).await;
    assert_eq!(
        (st, cr.as_deref(), ids(&b)),
        (200, Some("0-4/*"), vec![1, 2, 3, 4, 5])
    );
    let (st, cr, _, b) = get(vec![("limit", "5"), ("offset", "10")], vec![]).await;
    assert_eq!(
        (st, cr.as_deref(), ids(&b)),
        (200, Some("10-14/*"), vec![11, 12, 13, 14, 15])
    );
    let (_, cr, _, b) = get(vec![("limit", "9"), ("limit", "2")], vec![]).await;
    assert_eq!((cr.as_deref(), ids(&b)), (Some("0-1/*"), vec![1, 2]));
    let (_, cr, _, b) = get(vec![], vec![("Range", "2-4")]).await;
    assert_eq!((cr.as_deref(), ids(&b)), (Some("2-4/*"), vec![3, 4, 5]));
    let (_, cr, _, b) = get(vec![], vec![("Range-Unit", "items"), ("Range", "13-")]).await;
    assert_eq!((cr.as_deref(), ids(&b)), (Some("13-14/*"), vec![14, 15]));
    let (_, cr, _, b) = get(vec![("limit", "2")], vec![("Range", "0-9")]).await;
    assert_eq!((cr.as_deref(), ids(&b)), (Some("0-1/*"), vec![1, 2]));
    let (_, cr, _, b) = get(vec![], vec![("Range", "nonsense")]).await;
    assert_eq!((cr.as_deref(), ids(&b).len()), (Some("0-14/*"), 15));
    let (st, cr, _, b) = get(vec![("limit", "0")], vec![]).await;
    assert_eq!((st, cr.as_deref(), b), (200, Some("*/*"), json!([])));
    let (st, cr, _, b) = get(vec![("offset", "-3"), ("limit", "1")], vec![]).await;
    assert_eq!((st, cr.as_deref(), ids(&b)), (200, Some("0-0/*"), vec![1]));

    let exact = vec![("Prefer", "count=exact")];
    let (st, cr, applied, _) = get(vec![("limit", "5")], exact.clone()).await;
    assert_eq!(
        (st, cr.as_deref(), applied.as_deref()),
        (206, Some("0-4/15"), Some("count=exact"))
    );
    let (st, cr, _, _) = get(vec![], exact.clone()).await;
    assert_eq!((st, cr.as_deref()), (200, Some("0-14/15")));
    let (st, cr, _, _) = get(vec![("id", "gt.10")], exact.clone()).await;
    assert_eq!((st, cr.as_deref()), (200, Some("0-4/5")));
    let (st, cr, _, _) = get(vec![("id", "gt.100")], exact.clone()).await;
    assert_eq!((st, cr.as_deref()), (200, Some("*/0")));
    let (st, cr, _, _) = get(vec![("offset", "15")], exact.clone()).await;
    assert_eq!((st, cr.as_deref()), (206, Some("*/15")));
    let (st, cr, _, b) = get(vec![("offset", "100")], exact.clone()).await;
    assert_eq!((st, cr.as_deref()), (416, Some("*/15")));
    common::assert_error_shape(&b, "PGRST103");
    assert_eq!(
        b["details"],
        "An offset of 100 was requested, but there are only 15 rows."
    );
    for (pref, applied) in [
        ("count=planned", "count=planned"),
        ("count=estimated", "count=estimated"),
    ] {
        let (st, cr, a, _) = get(vec![("limit", "5")], vec![("Prefer", pref)]).await;
        assert_eq!(
            (st, cr.as_deref(), a.as_deref()),
            (206, Some("0-4/15"), Some(applied))
        );
    }
    // postgrest-js folds preferences with ", ", postgrest-py with ",".
    let (st, cr, _, _) = get(
        vec![("limit", "1")],
        vec![("Prefer", "return=representation, count=exact")],
    )
    .await;
    assert_eq!((st, cr.as_deref()), (206, Some("0-0/15")));

    let (st, _, _, b) = get(vec![("limit", "-1")], vec![]).await;
    assert_eq!(st, 416);
    common::assert_error_shape(&b, "PGRST103");
    assert_eq!(
        b["details"],
        "Limit should be greater than or equal to zero."
    );
    let (st, _, _, b) = get(vec![], vec![("Range", "3-1")]).await;
    assert_eq!(st, 416);
    common::assert_error_shape(&b, "PGRST103");
    let (st, _, _, b) = get(vec![], vec![("Prefer", "handling=strict, bogus")]).await;
    assert_eq!(st, 400);
    common::assert_error_shape(&b, "PGRST122");

    // HEAD: same status and headers, no body; Range is ignored.
    let r = send(
        &s,
        Method::HEAD,
        "/items?limit=3",
        &[("Prefer", "count=exact"), ("Range", "0-0")],
        None,
    )
    .await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("0-2/15"));
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn max_rows_caps_every_read() {
    let s = Server::start_with(Options {
        args: vec!["--max-rows".into(), "3".into()],
        ..Options::default()
    })
    .await;
    let r = get(
        &s,
        "/items?select=id&order=id",
        &[("Prefer", "count=exact")],
    )
    .await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("0-2/15"));
    assert_eq!(ids(&r.json()), vec![1, 2, 3]);
    let v = s.json("/items?select=id&order=id&limit=2", 200).await;
    assert_eq!(ids(&v), vec![1, 2]);
}

#[tokio::test]
async fn singular_csv_and_negotiation() {
    let s = Server::start().await;
    let obj = "application/vnd.pgrst.object+json";
    let r = get(&s, "/projects?select=id,name&id=eq.1", &[("Accept", obj)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.pgrst.object+json; charset=utf-8")
    );
    assert_eq!(r.body, r#"{"id":1,"name":"Windows 7"}"#);
    for (q, n) in [("id=gt.1", 4), ("id=eq.99", 0)] {
        let v = get(&s, &format!("/projects?{q}"), &[("Accept", obj)])
            .await
            .error(406, "PGRST116");
        assert_eq!(
            v["message"],
            "Cannot coerce the result to a single JSON object"
        );
        assert_eq!(v["details"], format!("The result contains {n} rows"));
    }

    let r = get(&s, "/names?order=id", &[("Accept", "text/csv")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        r.body,
        "id,name\n1,\"Hebdon, John\"\n2,\"Zoë Ñandú\"\n3,棋圍\n4,\"Double\"\"Quote\"\n5,\"back\\\\slash\""
    );
    let r = get(
        &s,
        "/projects?select=id,active,budget,logo&order=id&id=lte.3",
        &[("Accept", "text/csv, application/json")],
    )
    .await;
    assert_eq!(
        r.body,
        "id,active,budget,logo\n1,t,1500.5,\\xdeadbeef\n2,t,2000.25,\n3,f,,"
    );

    let v = get(&s, "/projects", &[("Accept", "text/unknowntype")])
        .await
        .error(406, "PGRST107");
    assert_eq!(
        v["message"],
        "None of these media types are available: text/unknowntype"
    );
    let r = get(
        &s,
        "/projects?select=id&id=eq.1",
        &[("Accept", "text/unknowntype, */*")],
    )
    .await;
    assert_eq!(r.body, r#"[{"id":1}]"#);
    let r = get(
        &s,
        "/projects?select=id,budget&id=eq.3",
        &[("Accept", "application/vnd.pgrst.array+json;nulls=stripped")],
    )
    .await;
    assert_eq!(r.body, r#"[{"id":3}]"#);
}

#[tokio::test]
async fn head_options_profiles_cors_and_headers() {
    let s = Server::start().await;
    let r = send(&s, Method::HEAD, "/projects", &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-range"), Some("0-4/*"));
    assert!(r.body.is_empty());
    // No Content-Length on HEAD (as PostgREST): one would have to be the GET body's length
    // (RFC 9110), never the 0 of the empty body actually sent.
    assert_eq!(r.header("content-length"), None, "HEAD /projects");
    let r = send(&s, Method::HEAD, "/", &[], None).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), None, "HEAD /");
    let r = send(&s, Method::GET, "/projects", &[], None).await;
    assert_eq!(
        r.header("content-length").map(str::to_string),
        Some(r.body.len().to_string())
    );

    for (rel, allow) in [
        ("projects", "OPTIONS,GET,HEAD,POST,PUT,PATCH,DELETE"),
        ("no_pk", "OPTIONS,GET,HEAD,POST,PATCH,DELETE"),
        ("projects_view", "OPTIONS,GET,HEAD"),
    ] {
        let r = send(&s, Method::OPTIONS, &format!("/{rel}"), &[], None).await;
        assert_eq!(r.status, 200, "{rel}");
        assert_eq!(r.header("allow"), Some(allow), "{rel}");
        assert!(r.body.is_empty());
    }
    let r = send(&s, Method::OPTIONS, "/nope", &[], None).await;
    assert_eq!(r.status, 404);

    // postgrest-py always sends Accept-Profile: public.
    let r = get(
        &s,
        "/clients?select=id&order=id",
        &[("Accept-Profile", "public")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-profile"), Some("public"));
    assert_eq!(r.header("vary"), Some("Accept, Prefer, Range"));
    assert_eq!(
        r.header("content-location"),
        Some("/clients?order=id&select=id")
    );
    let v = get(&s, "/clients", &[("Accept-Profile", "private")])
        .await
        .error(406, "PGRST106");
    assert_eq!(v["hint"], "Only the following schemas are exposed: public");

    // CORS: every origin by default; a preflight needs no token.
    let r = get(&s, "/clients", &[("Origin", "http://app.example")]).await;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(
        r.header("access-control-expose-headers")
            .unwrap()
            .contains("Content-Range")
    );
    let r = s
        .client
        .request(Method::OPTIONS, format!("{}/clients", s.base))
        .header("Origin", "http://app.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "x-client-info, apikey")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        r.headers()["access-control-allow-methods"],
        "GET, POST, PATCH, PUT, DELETE, OPTIONS, HEAD"
    );
    assert_eq!(
        r.headers()["access-control-allow-headers"],
        "Authorization, x-client-info, apikey, Accept, Accept-Language, Content-Language"
    );
    assert_eq!(r.headers()["access-control-max-age"], "86400");
    // Errors carry CORS headers too, so browsers can read them.
    let r = s
        .client
        .get(format!("{}/clients", s.base))
        .header("Origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn cors_allowed_origins_are_configurable() {
    let s = Server::start_with(Options {
        env: vec![(
            "SQLITEREST_CORS_ALLOWED_ORIGINS".into(),
            "http://good.example,http://other.example".into(),
        )],
        ..Options::default()
    })
    .await;
    let r = get(&s, "/clients", &[("Origin", "http://good.example")]).await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://good.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let r = get(&s, "/clients", &[("Origin", "http://evil.example")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn full_text_search_on_fts5() {
    let s = Server::start().await;
    // A base table with an external-content FTS5 index (porter stemming, so `cats` is `cat`).
    let articles: &[Case] = &[
        (&[("title", "fts.cats")], &[1]),
        (&[("body", "fts(english).cat")], &[1, 3]),
        (&[("body", "fts.fat & !rat")], &[1]),
        (&[("body", "fts.fat <-> rat")], &[3]),
        (&[("body", "fts.supernova:*")], &[2]),
        (&[("body", "fts.cat | star")], &[1, 2, 3]),
        (&[("body", "plfts.fat cats")], &[1, 3]),
        // Words split at every non-alphanumeric character, as PostgreSQL's parser does.
        (&[("body", "plfts.cats,fat")], &[1, 3]),
        (&[("body", "wfts.cats,fat -rat")], &[1]),
        (&[("body", "phfts.fat cats")], &[1]),
        (&[("body", "phfts(english).lean cat")], &[3]),
        (&[("body", "wfts.\"fat rat\" or supernovae -galaxy")], &[3]),
        (&[("body", "wfts.fat -rat")], &[1]),
        // Negation; a NULL body is neither matched nor unmatched (as in PostgreSQL).
        (&[("body", "not.fts.fat")], &[2]),
        (&[("or", "(body.fts.supernova:*,title.fts.race)")], &[2, 3]),
        (&[("and", "(body.fts.fat,author.eq.Ann)")], &[1, 3]),
        (&[("not.or", "(title.fts.rat,id.eq.2)")], &[1, 4]),
        (&[("body", "wfts.fat"), ("id", "gt.1")], &[3]),
    ];
    // An FTS5 table (no stemming); FTS5's own syntax in the input is only words.
    let notes: &[Case] = &[
        (&[("body", "fts.cats")], &[3]),
        (&[("title", "fts.cats")], &[1]),
        (&[("body", "fts.NEAR & AND")], &[4]),
        (&[("body", "plfts.OR * : ( ) are")], &[4]),
        (&[("body", "wfts.\"only words\"")], &[4]),
        (&[("title", "phfts.\"quotes\"")], &[4]),
        (&[("body", "not.fts.fat")], &[3, 4]),
        (&[("or", "(title.fts.rats,body.fts.dogs)")], &[2, 3]),
    ];
    for (table, cases) in [("articles", articles), ("notes", notes)] {
        for (params, want) in cases {
            assert_eq!(&ids_of(&s, table, params).await, want, "{table} {params:?}");
        }
    }
    // The external-content FTS5 table can be read and searched itself.
    assert_eq!(
        s.query(
            "/articles search",
            &[("select", "title"), ("title", "fts.race")]
        )
        .await,
        json!([{"title": "Rat Race"}])
    );
    // Counts go through the same condition.
    let r = get(
        &s,
        &p("/articles", &[("body", "fts.fat"), ("limit", "1")]),
        &[("Prefer", "count=exact")],
    )
    .await;
    assert_eq!(r.header("content-range"), Some("0-0/2"));
}

#[tokio::test]
async fn full_text_errors_and_hidden_shadow_tables() {
    let shadows = ["data", "idx", "content", "docsize", "config"];
    let mut allow = common::ALL_TABLES.to_string();
    for sh in shadows {
        allow.push_str(&format!(",notes_{sh},articles search_{sh}"));
    }
    let s = Server::start_with(Options {
        allow,
        ..Options::default()
    })
    .await;
    let before = s.snapshot();
    // A column without an FTS5 index: no silent full scan, a hint that creates an index.
    let v = s
        .error(&p("/projects", &[("name", "fts.windows")]), 400, "PGRST127")
        .await;
    assert_eq!(
        v["details"],
        "Full-text search needs an FTS5 index, and column projects.name has none"
    );
    let hint = v["hint"].as_str().unwrap();
    assert!(
        hint.contains(
            "CREATE VIRTUAL TABLE \"projects_fts\" USING fts5(\"name\", content='projects', content_rowid='id')"
        ),
        "{hint}"
    );
    let cases: &[(&str, &str, &str, &str)] = &[
        ("/articles", "author", "fts.ann", "PGRST127"),
        ("/notes", "id", "fts.1", "PGRST127"),
        ("/projects_view", "name", "not.plfts.x", "PGRST127"),
        ("/articles", "nope", "fts.x", "42703"),
        ("/articles", "body", "fts.fat cat", "42601"),
        ("/articles", "body", "fts.(fat", "42601"),
        ("/articles", "body", "fts.!fat", "PGRST127"),
        ("/articles", "body", "wfts.-fat", "PGRST127"),
        ("/articles", "body", "plfts.", "22023"),
        ("/articles", "body", "phfts.* : ( )", "22023"),
        ("/articles", "body", "fts().fat", "PGRST100"),
        ("/articles", "body", "fts(en glish).fat", "PGRST100"),
        ("/articles", "body", "fts.fat <0> rat", "PGRST127"),
        ("/articles", "body", "plfts.fat\0cat", "22021"),
    ];
    for (path, key, value, code) in cases {
        s.error(&p(path, &[(key, value)]), 400, code).await;
    }
    let v = s
        .error(&p("/articles", &[("body", "fts.fat cat")]), 400, "42601")
        .await;
    assert_eq!(v["message"], "syntax error in tsquery: \"fat cat\"");
    // FTS5's shadow tables are not relations, even when the allow-list names them.
    for sh in shadows {
        for table in [format!("notes_{sh}"), format!("articles search_{sh}")] {
            s.error(&p(&format!("/{table}"), &[]), 404, "PGRST205")
                .await;
        }
    }
    assert_eq!(s.snapshot(), before);
}

#[tokio::test]
async fn full_text_index_follows_writes() {
    let s = Server::start().await;
    let search = |table: &'static str, q: &'static str| {
        let s = &s;
        async move { ids_of(s, table, &[("body", q)]).await }
    };
    let write = |method: Method, path: &'static str, body: Option<&'static str>| {
        let s = &s;
        async move {
            let r = send(
                s,
                method,
                path,
                &[("Content-Type", "application/json")],
                body,
            )
            .await;
            assert!(r.status < 300, "{path}: {} {}", r.status, r.body);
        }
    };
    write(
        Method::POST,
        "/articles",
        Some(r#"{"id":5,"title":"News","body":"A fresh supernova"}"#),
    )
    .await;
    assert_eq!(search("articles", "fts.fresh").await, [5]);
    assert_eq!(search("articles", "fts.supernova").await, [2, 5]);
    write(
        Method::PATCH,
        "/articles?body=fts.fresh",
        Some(r#"{"body":"A stale supernova"}"#),
    )
    .await;
    assert_eq!(search("articles", "fts.fresh").await, Vec::<i64>::new());
    assert_eq!(search("articles", "fts.stale").await, [5]);
    write(Method::DELETE, "/articles?body=plfts.stale", None).await;
    assert_eq!(search("articles", "fts.supernova").await, [2]);
    // Writes to an FTS5 table itself.
    write(
        Method::POST,
        "/notes",
        Some(r#"{"id":5,"title":"Owls","body":"Owls hunt rats"}"#),
    )
    .await;
    assert_eq!(search("notes", "fts.rats").await, [3, 5]);
}

#[tokio::test]
async fn bad_input_gets_json_errors_and_changes_nothing() {
    let s = Server::start().await;
    let before = s.snapshot();
    // (query parameter, value, status, code) on /projects.
    let cases: &[(&str, &str, u16, &str)] = &[
        ("id", "0", 400, "PGRST100"),
        ("id", "", 400, "PGRST100"),
        ("id", "eq", 400, "PGRST100"),
        ("id", "nope.1", 400, "PGRST100"),
        ("order", "id.asc.nullslasttt", 400, "PGRST100"),
        ("select", "id,", 400, "PGRST100"),
        ("select", "id,name::", 400, "PGRST100"),
        ("select", "tasks(id", 400, "PGRST100"),
        (
            "select",
            "id::int); DROP TABLE projects; --",
            400,
            "PGRST100",
        ),
        ("or", "(id.eq.1", 400, "PGRST100"),
        ("or", "()", 400, "PGRST100"),
        ("or", "id.eq.1", 400, "PGRST100"),
        ("name", "in.(a,b", 400, "PGRST100"),
        ("active", "is.maybe", 400, "PGRST100"),
        ("id", "eq(some).{1}", 400, "PGRST100"),
        ("id", "eq(any).1", 400, "PGRST100"),
        ("limit", "ten", 400, "PGRST100"),
        ("select", "nope", 400, "42703"),
        ("nope", "eq.1", 400, "42703"),
        ("order", "nope.desc", 400, "42703"),
        ("or", "(nope.eq.1,id.eq.2)", 400, "42703"),
        ("select", "nope->a", 400, "42703"),
        ("select", "id::nosuchtype", 400, "42704"),
        ("name", "fts.windows", 400, "PGRST127"),
        ("settings", "ov.[2017-01-01,2017-06-30]", 400, "PGRST127"),
        ("settings", "cs.(1,10)", 400, "PGRST127"),
        ("settings", "cs.{a", 400, "PGRST100"),
        ("settings", "cs(any).{a}", 400, "PGRST100"),
        ("select", "id,nope(id)", 400, "PGRST200"),
        ("tasks.id", "eq.1", 400, "PGRST108"),
        ("order", "clients(name)", 400, "PGRST108"),
        ("select", "count()", 400, "PGRST123"),
        ("select", "budget.sum()", 400, "PGRST123"),
        ("name", "match.(", 400, "2201B"),
    ];
    for (key, value, status, code) in cases {
        s.error(&p("/projects", &[(key, value)]), *status, code)
            .await;
    }
    // PostgREST's exact texts where clients or people read them.
    let v = s.error("/projects?id=0", 400, "PGRST100").await;
    assert_eq!(
        v["message"],
        "\"failed to parse filter (0)\" (line 1, column 1)"
    );
    assert_eq!(
        v["details"],
        "unexpected \"0\" expecting \"not\" or operator (eq, gt, ...)"
    );
    let v = s
        .error("/projects?order=id.asc.nullslasttt", 400, "PGRST100")
        .await;
    assert_eq!(
        v["message"],
        "\"failed to parse order (id.asc.nullslasttt)\" (line 1, column 17)"
    );
    let v = s.error("/projects?select=nope", 400, "42703").await;
    assert_eq!(v["message"], "column projects.nope does not exist");
    let v = s
        .error("/projects?select=id::nosuchtype", 400, "42704")
        .await;
    assert_eq!(v["message"], "type \"nosuchtype\" does not exist");
    let v = s.error("/faketable", 404, "PGRST205").await;
    assert_eq!(
        v["message"],
        "Could not find the table 'public.faketable' in the schema cache"
    );
    assert!(v["hint"].is_null());
    let v = s.error("/projcts", 404, "PGRST205").await;
    assert_eq!(v["hint"], "Perhaps you meant the table 'public.projects'");
    s.error("/projects/1", 404, "PGRST125").await;
    // `/` is the OpenAPI document (tests/api_openapi.rs).
    send(&s, Method::TRACE, "/projects", &[], None)
        .await
        .error(405, "PGRST117");
    // Writes with bad input get JSON errors too (the write tests cover them in depth).
    for (m, path, body, code) in [
        (Method::POST, "/projects", "{\"nope\":\"x\"}", "PGRST204"),
        (
            Method::PATCH,
            "/projects?id=eq.1",
            "{\"nope\":\"x\"}",
            "PGRST204",
        ),
        (
            Method::PUT,
            "/projects?name=eq.x",
            "{\"name\":\"x\"}",
            "PGRST105",
        ),
        (Method::DELETE, "/projects?nope=eq.1", "", "42703"),
    ] {
        let r = send(&s, m.clone(), path, &[], Some(body)).await;
        assert!((400..500).contains(&r.status), "{m}: {}", r.status);
        common::assert_error_shape(&r.json(), code);
    }
    let r = get(&s, "/projects?id=0", &[]).await;
    assert_eq!(
        r.header("proxy-status"),
        Some("sqlite-rest; error=PGRST100")
    );
    assert_eq!(s.snapshot(), before);
}

#[tokio::test]
async fn schema_changes_are_picked_up_without_restart() {
    let s = Server::start_with(Options {
        allow: format!("{},later", common::ALL_TABLES),
        ..Options::default()
    })
    .await;
    s.error("/later", 404, "PGRST205").await;
    s.error("/clients?select=region", 400, "42703").await;
    s.exec_sql(
        "CREATE TABLE later (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO later VALUES (1, 'x');
         ALTER TABLE clients ADD COLUMN region TEXT DEFAULT 'eu';",
    );
    assert_eq!(s.json("/later", 200).await, json!([{"id":1,"v":"x"}]));
    assert_eq!(
        s.json("/clients?select=id,region&id=eq.1", 200).await,
        json!([{"id":1,"region":"eu"}])
    );
    // The shape `/clients?id=eq.N` is planned (and its plan kept) with the column…
    assert_eq!(
        s.json("/clients?id=eq.1", 200).await,
        json!([{"id":1,"name":"Microsoft","region":"eu"}])
    );
    // …and a dropped column disappears from `*` at once (the stale plan fails, the schema
    // cache is rebuilt, and a kept plan of the old schema is never used again).
    s.exec_sql("ALTER TABLE clients DROP COLUMN region");
    assert_eq!(
        s.json("/clients?id=eq.2", 200).await,
        json!([{"id":2,"name":"Apple"}])
    );
    // Rows written by another process are visible at once (no stale snapshot).
    s.exec_sql("INSERT INTO later VALUES (2, 'y')");
    assert_eq!(ids(&s.json("/later?order=id", 200).await), vec![1, 2]);
}

#[tokio::test]
async fn long_queries_are_interrupted_at_the_time_budget() {
    let s = Server::start_with(Options {
        allow: format!("{},endless", common::ALL_TABLES),
        args: vec!["--request-timeout-ms".into(), "400".into()],
        ..Options::default()
    })
    .await;
    // A page of an endless view is fine…
    assert_eq!(
        s.json("/endless?limit=2", 200).await,
        json!([{"i":1},{"i":2}])
    );
    // …but a filter that never matches would scan forever.
    let started = std::time::Instant::now();
    let slow: Vec<_> = (0..3).map(|_| get(&s, "/endless?i=lt.0", &[])).collect();
    let mut interrupted = 0;
    for r in futures::future::join_all(slow).await {
        assert_eq!(r.status, 504);
        let v = r.json();
        // Interrupted at the budget, or (more requests than pool connections) out of budget
        // while waiting for a connection.
        let code = v["code"].as_str().unwrap().to_string();
        assert!(code == "57014" || code == "PGRST003", "{v}");
        common::assert_error_shape(&v, &code);
        interrupted += usize::from(code == "57014");
    }
    assert!(interrupted >= 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // The server is still responsive.
    assert_eq!(ids(&s.json("/clients?order=id", 200).await), vec![1, 2]);
}
