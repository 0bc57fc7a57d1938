//! Security over real HTTP: hostile names in every place a name can appear, oversize
//! requests, and the table allow-list.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Server, p};

const HOSTILE: &[&str] = &[
    "\"; DROP TABLE projects; --",
    "id) OR 1=1 --",
    "id\" FROM sqlite_schema --",
    "'",
    "\\",
    "\"",
    "\"\"",
    "sqlite_schema",
    "pragma_table_list",
    "main.projects",
    "projects; ATTACH DATABASE '/tmp/x' AS x",
    "$.\"a\"",
    "[#-1]",
    "a->>'b'",
    "../../etc/passwd",
    "%00",
    "x\u{0}y",
    "名前",
    "*",
    "(select 1)",
    "1e999",
];

/// `h` as a quoted name or value of the grammar (`"…"` with `\\` escapes).
fn quoted(h: &str) -> String {
    format!("\"{}\"", h.replace('\\', "\\\\").replace('"', "\\\""))
}

fn long_name() -> String {
    "a".repeat(3000)
}

/// Status is a 4xx with a PostgREST error body, or 200 where the hostile string is a value.
async fn check(s: &Server, url: &str, ok_allowed: bool) {
    let r = s.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    let short = &url[..url.len().min(200)];
    assert!(status < 500, "{short} -> {status}: {body}");
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{short}: not JSON ({e}): {body}"));
    if status >= 400 {
        common::assert_error_shape(&v, v["code"].as_str().unwrap_or("?"));
    } else {
        assert!(ok_allowed, "{short} unexpectedly succeeded: {body}");
        assert_eq!(status, 200, "{short}");
    }
}

#[tokio::test]
async fn hostile_names_never_reach_sql_unquoted() {
    let s = Server::start().await;
    let before = s.snapshot();
    let long = long_name();
    let mut hostile: Vec<&str> = HOSTILE.to_vec();
    hostile.push(&long);
    for h in hostile {
        let q = quoted(h);
        let path = format!(
            "/{}",
            percent_encoding::utf8_percent_encode(h, percent_encoding::NON_ALPHANUMERIC)
        );
        // Every place a name can appear: (URL, whether a 200 is a correct answer). JSON keys
        // are bound as paths, so any key is a valid (empty) lookup.
        let places = [
            (path, false),
            (p("/projects", &[("select", h)]), h == "*"),
            (p("/projects", &[("select", &q)]), false),
            (p("/projects", &[("select", &format!("x:{h}"))]), false),
            (p("/projects", &[("select", &format!("id::{h}"))]), false),
            (
                p("/projects", &[("select", &format!("settings->{h}"))]),
                true,
            ),
            (
                p("/projects", &[("select", &format!("settings->>{q}"))]),
                true,
            ),
            (p("/projects", &[(h, "eq.1")]), false),
            (
                p("/projects", &[(&format!("settings->>{h}"), "eq.1")]),
                true,
            ),
            (
                p("/projects", &[("or", &format!("({h}.eq.1,id.eq.2)"))]),
                false,
            ),
            (p("/projects", &[("order", h)]), false),
            (
                p("/projects", &[("order", &format!("settings->>{h}.desc"))]),
                true,
            ),
        ];
        for (url, ok_allowed) in &places {
            check(&s, url, *ok_allowed).await;
        }
        // Values are bound: a hostile value matches nothing and breaks nothing.
        let v = s
            .json(&p("/projects", &[("name", &format!("eq.{h}"))]), 200)
            .await;
        assert_eq!(v, serde_json::json!([]), "value {h:?}");
        let v = s
            .json(&p("/projects", &[("name", &format!("in.({q})"))]), 200)
            .await;
        assert_eq!(v, serde_json::json!([]), "in value {h:?}");
    }
    // The classic: a value that would be an injection if spliced.
    let v = s
        .json(&p("/projects", &[("name", "eq.' OR '1'='1")]), 200)
        .await;
    assert_eq!(v, serde_json::json!([]));
    assert_eq!(s.snapshot(), before, "a request changed the database");
    assert_eq!(
        common::ids(&s.json("/projects?select=id&order=id", 200).await),
        vec![1, 2, 3, 4, 5]
    );
}

#[tokio::test]
async fn oversize_requests_are_refused() {
    let s = Server::start().await;
    let before = s.snapshot();
    let big = vec![b'x'; 11 * 1024 * 1024];
    let r = s
        .request(reqwest::Method::POST, "/projects")
        .header("Content-Type", "application/json")
        .body(big)
        .send()
        .await;
    // The server answers 413 before reading the body (the client may see the reset instead).
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
        let v: serde_json::Value = r.json().await.unwrap();
        common::assert_error_shape(&v, "SQLREST413");
    }
    // A declared body over the limit is refused before it is read (raw socket: the client
    // libraries would not send a lying Content-Length).
    {
        use std::io::{Read, Write};
        let addr = s.base.trim_start_matches("http://");
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        write!(
            sock,
            "GET /projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 999999999\r\nConnection: close\r\n\r\n",
            s.token()
        )
        .unwrap();
        let mut resp = String::new();
        let _ = sock.read_to_string(&mut resp);
        assert!(
            resp.starts_with("HTTP/1.1 413"),
            "{}",
            &resp[..resp.len().min(200)]
        );
        assert!(resp.contains("SQLREST413"));
    }
    let long = format!("/projects?name=eq.{}", "a".repeat(20_000));
    let fresh = reqwest::Client::new();
    let r = fresh
        .get(format!("{}{long}", s.base))
        .bearer_auth(s.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 414);
    common::assert_error_shape(&r.json().await.unwrap(), "SQLREST414");
    let r = reqwest::Client::new()
        .get(format!("{}/projects", s.base))
        .bearer_auth(s.token())
        .header("X-Padding", "p".repeat(40_000))
        .send()
        .await
        .unwrap();
    assert!(r.status() == 431, "{}", r.status());
    common::assert_error_shape(&r.json().await.unwrap(), "SQLREST431");
    // Deep and wide logic trees are bounded by the grammar.
    let deep = format!("({}id.eq.1{})", "or(".repeat(40), ")".repeat(40));
    s.error(&p("/projects", &[("or", &deep)]), 400, "PGRST100")
        .await;
    let wide = format!("({})", vec!["id.eq.1"; 300].join(","));
    s.error(&p("/projects", &[("or", &wide)]), 400, "PGRST100")
        .await;
    assert_eq!(s.snapshot(), before);
}

#[tokio::test]
async fn tables_outside_the_allow_list_look_missing() {
    let s = Server::start().await;
    // `secrets` exists in the database but is not allowed; `secretz` does not exist.
    let hidden = s.error("/secrets", 404, "PGRST205").await;
    let missing = s.error("/secretz", 404, "PGRST205").await;
    assert_eq!(
        hidden["message"],
        "Could not find the table 'public.secrets' in the schema cache"
    );
    assert_eq!(hidden["hint"], missing["hint"]);
    assert!(
        missing["hint"].is_null(),
        "a hidden table leaked as a hint: {missing}"
    );
    for m in [reqwest::Method::OPTIONS, reqwest::Method::HEAD] {
        let r = s.request(m.clone(), "/secrets").send().await.unwrap();
        assert_eq!(r.status(), 404, "{m}");
    }
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("sqlite_rest_access_check_failed_requests_total 3"),
        "{metrics}"
    );
    // Nothing is exposed unless listed.
    let none = Server::start_with(common::Options {
        allow: String::new(),
        ..common::Options::default()
    })
    .await;
    none.error("/projects", 404, "PGRST205").await;
}
