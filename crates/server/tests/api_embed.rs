//! Resource embedding over real HTTP against the release `sqlite-rest` binary: the
//! conformance fixture plus a relationship of every kind (`fixtures/embed.sql`), every
//! embedding feature and error compared with PostgREST's documented answers, counts, and
//! representations of writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ALL_TABLES, Options, Server, get, p, send};
use reqwest::Method;
use serde_json::{Value, json};

const EMBED_SQL: &str = include_str!("fixtures/embed.sql");
const EMBED_TABLES: &str = "project_specs,family,addresses,orders,editions,printings,tasks_view";

/// A path, its query parameters, and the body PostgREST answers.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Value);

/// The release server over the fixture plus `embed.sql`, exposing `allow` (every table when
/// `None`); `None` (skipped) without the release build.
async fn start(test: &str, allow: Option<&str>) -> Option<Server> {
    let bin = testkit::require_tool(testkit::Tool::ReleaseBinary, test)?;
    let s = Server::start_with(Options {
        bin: Some(bin),
        allow: allow
            .map(str::to_string)
            .unwrap_or_else(|| format!("{ALL_TABLES},{EMBED_TABLES}")),
        ..Options::default()
    })
    .await;
    // Another process changes the schema: the server sees it on its next request.
    s.exec_sql(EMBED_SQL);
    Some(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_relationship() {
    let Some(s) = start("embed_kinds", None).await else {
        return;
    };
    let cases: &[Case] = &[
        // Many-to-one: an object, or null.
        (
            "/projects",
            &[
                ("select", "id,clients(name)"),
                ("id", "in.(1,5)"),
                ("order", "id"),
            ],
            json!([{"id": 1, "clients": {"name": "Microsoft"}}, {"id": 5, "clients": null}]),
        ),
        // One-to-many: an array, [] when empty.
        (
            "/clients",
            &[
                ("select", "name,projects(id)"),
                ("order", "id"),
                ("projects.order", "id"),
            ],
            json!([
                {"name": "Microsoft", "projects": [{"id": 1}, {"id": 2}]},
                {"name": "Apple", "projects": [{"id": 3}, {"id": 4}]},
            ]),
        ),
        (
            "/projects",
            &[("select", "id,tasks(id)"), ("id", "eq.5")],
            json!([{"id": 5, "tasks": []}]),
        ),
        // One-to-one, both ways.
        (
            "/projects",
            &[
                ("select", "name,project_specs(camera,certified)"),
                ("id", "in.(1,2)"),
                ("order", "id"),
            ],
            json!([
                {"name": "Windows 7", "project_specs": {"camera": "Canon", "certified": true}},
                {"name": "Windows 10", "project_specs": null},
            ]),
        ),
        (
            "/project_specs",
            &[("select", "camera,projects(name)"), ("project_id", "eq.3")],
            json!([{"camera": "Nikon", "projects": {"name": "IOS"}}]),
        ),
        // Many-to-many through the junction.
        (
            "/users",
            &[
                ("select", "name,tasks(id)"),
                ("id", "eq.2"),
                ("tasks.order", "id"),
            ],
            json!([{"name": "Michael Scott", "tasks": [{"id": 5}, {"id": 6}, {"id": 7}]}]),
        ),
        (
            "/users",
            &[
                ("select", "tasks!users_tasks(id)"),
                ("id", "eq.3"),
                ("tasks.order", "id"),
            ],
            json!([{"tasks": [{"id": 1}, {"id": 5}]}]),
        ),
        // Nested, with order and limit per level.
        (
            "/clients",
            &[
                ("select", "name,projects(name,tasks(name))"),
                ("id", "eq.2"),
                ("projects.order", "id.desc"),
                ("projects.limit", "1"),
                ("projects.tasks.order", "name"),
            ],
            json!([{"name": "Apple", "projects": [
                {"name": "OSX", "tasks": [{"name": "Code OSX"}, {"name": "Design OSX"}]},
            ]}]),
        ),
        // Aliases; the same table twice with its own filters.
        (
            "/users",
            &[
                (
                    "select",
                    "name,designTasks:tasks(name),codeTasks:tasks(name)",
                ),
                ("id", "eq.1"),
                ("designTasks.name", "like.Design*"),
                ("codeTasks.name", "like.Code*"),
                ("designTasks.order", "id"),
                ("codeTasks.order", "id"),
            ],
            json!([{
                "name": "Angela Martin",
                "designTasks": [{"name": "Design w7"}, {"name": "Design w10"}],
                "codeTasks": [{"name": "Code w7"}, {"name": "Code w10"}],
            }]),
        ),
        (
            "/projects",
            &[
                ("select", "name,client:clients(clientId:id,name)"),
                ("id", "eq.3"),
            ],
            json!([{"name": "IOS", "client": {"clientId": 2, "name": "Apple"}}]),
        ),
        // Spread of a to-one embed.
        (
            "/projects",
            &[
                ("select", "name,...clients(client_name:name)"),
                ("id", "in.(4,5)"),
                ("order", "id"),
            ],
            json!([{"name": "OSX", "client_name": "Apple"}, {"name": "Orphan", "client_name": null}]),
        ),
        // Disambiguation: foreign key name (declared), column, referenced column.
        (
            "/orders",
            &[
                (
                    "select",
                    "name,billing:addresses!billing(name),shipping:addresses!shipping_address_id(name)",
                ),
                ("id", "eq.3"),
            ],
            json!([{"name": "third", "billing": null, "shipping": {"name": "Home"}}]),
        ),
        (
            "/messages",
            &[
                (
                    "select",
                    "body,sender:users!sender_id(name),recipient:users!messages_recipient_id_fkey(name)",
                ),
                ("id", "eq.1"),
            ],
            json!([{"body": "hi", "sender": {"name": "Angela Martin"}, "recipient": {"name": "Michael Scott"}}]),
        ),
        // Self-reference: children by the table's name, the parent by the column's.
        (
            "/family",
            &[
                ("select", "name,family(name),parent_id(name)"),
                ("id", "eq.2"),
            ],
            json!([{"name": "Ben", "family": [{"name": "Dee"}], "parent_id": {"name": "Ada"}}]),
        ),
        // A composite foreign key, both ways.
        (
            "/printings",
            &[
                ("select", "copies,editions(title)"),
                ("id", "in.(2,4)"),
                ("order", "id"),
            ],
            json!([{"copies": 500, "editions": {"title": "Dune (2nd)"}}, {"copies": 5, "editions": null}]),
        ),
        (
            "/editions",
            &[
                ("select", "title,printings(copies)"),
                ("book", "eq.dune"),
                ("number", "eq.1"),
                ("printings.order", "copies"),
            ],
            json!([{"title": "Dune", "printings": [{"copies": 250}, {"copies": 1000}]}]),
        ),
        // Views embed like the tables their columns come from.
        (
            "/tasks_view",
            &[("select", "title,projects(name)"), ("id", "eq.8")],
            json!([{"title": "Code OSX", "projects": {"name": "OSX"}}]),
        ),
        (
            "/projects_view",
            &[("select", "name,clients(name),tasks(name)"), ("id", "eq.5")],
            json!([{"name": "Orphan", "clients": null, "tasks": []}]),
        ),
        // Order by a to-one embed's column (DESC puts NULLs first, as PostgreSQL does).
        (
            "/projects",
            &[
                ("select", "id,clients()"),
                ("order", "clients(name).desc,id.desc"),
                ("limit", "3"),
            ],
            json!([{"id": 5}, {"id": 2}, {"id": 1}]),
        ),
        // Values nest as they render at the top level.
        (
            "/clients",
            &[
                ("select", "projects(settings,logo,active)"),
                ("id", "eq.1"),
                ("projects.order", "id"),
                ("projects.limit", "1"),
            ],
            json!([{"projects": [{
                "settings": {"foo": {"int": 1, "bar": "baz"}, "tags": ["a", "b"]},
                "logo": "\\xdeadbeef",
                "active": true,
            }]}]),
        ),
    ];
    for (path, params, want) in cases {
        let got = s.query(path, params).await;
        assert_eq!(&got, want, "GET {}", p(path, params));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_inner_and_counts() {
    let Some(s) = start("embed_filters", None).await else {
        return;
    };
    let counted = |path: String| {
        let s = &s;
        async move {
            let r = get(s, &path, &[("Prefer", "count=exact")]).await;
            assert_eq!(r.status / 100, 2, "{path}: {}", r.body);
            (r.header("Content-Range").unwrap().to_string(), r.json())
        }
    };
    // `!inner` drops the parents without a matching row, and the count drops them too.
    let (range, body) = counted(p(
        "/clients",
        &[
            ("select", "name,projects!inner(name)"),
            ("projects.name", "eq.IOS"),
        ],
    ))
    .await;
    assert_eq!(range, "0-0/1");
    assert_eq!(
        body,
        json!([{"name": "Apple", "projects": [{"name": "IOS"}]}])
    );
    // Without it, every parent stays.
    let body = s
        .query(
            "/clients",
            &[
                ("select", "name,projects(name)"),
                ("projects.name", "eq.IOS"),
                ("order", "id"),
            ],
        )
        .await;
    assert_eq!(
        body,
        json!([{"name": "Microsoft", "projects": []}, {"name": "Apple", "projects": [{"name": "IOS"}]}])
    );
    // Null filters on an embed filter the parents (anti-join, semi-join, inside `or`).
    let (range, body) = counted(p(
        "/projects",
        &[
            ("select", "id,project_specs()"),
            ("project_specs", "is.null"),
            ("order", "id"),
        ],
    ))
    .await;
    assert_eq!(
        (range.as_str(), body),
        ("0-2/3", json!([{"id": 2}, {"id": 4}, {"id": 5}]))
    );
    let body = s
        .query(
            "/projects",
            &[
                ("select", "id,tasks()"),
                ("tasks.name", "eq.Code IOS"),
                ("tasks", "not.is.null"),
            ],
        )
        .await;
    assert_eq!(body, json!([{"id": 3}]));
    let body = s
        .query(
            "/projects",
            &[
                ("select", "id,project_specs(),clients()"),
                ("or", "(project_specs.is.null,clients.is.null)"),
                ("order", "id"),
            ],
        )
        .await;
    assert_eq!(body, json!([{"id": 2}, {"id": 4}, {"id": 5}]));
    // CSV carries an embed as its JSON text.
    let r = get(
        &s,
        &p(
            "/clients",
            &[
                ("select", "id,projects(id)"),
                ("id", "eq.2"),
                ("projects.order", "id"),
            ],
        ),
        &[("Accept", "text/csv")],
    )
    .await;
    assert_eq!(r.body, "id,projects\n2,\"[{\"\"id\"\":3},{\"\"id\"\":4}]\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_postgrest_shaped() {
    let Some(s) = start("embed_errors", None).await else {
        return;
    };
    // Ambiguous: 300 with every candidate and the hints that pick one.
    let v = s
        .error(
            &p("/orders", &[("select", "addresses(*)")]),
            300,
            "PGRST201",
        )
        .await;
    assert_eq!(
        v["message"],
        "Could not embed because more than one relationship was found for 'orders' and 'addresses'"
    );
    let mut details = v["details"].as_array().unwrap().clone();
    details.sort_by_key(|d| d["relationship"].as_str().unwrap().to_string());
    assert_eq!(
        details,
        vec![
            json!({"cardinality": "many-to-one", "embedding": "orders with addresses",
                   "relationship": "billing using orders(billing_address_id) and addresses(id)"}),
            json!({"cardinality": "many-to-one", "embedding": "orders with addresses",
                   "relationship": "shipping using orders(shipping_address_id) and addresses(id)"}),
        ]
    );
    let hint = v["hint"].as_str().unwrap();
    assert!(
        hint.starts_with("Try changing 'addresses' to one of the following: ")
            && hint.contains("'addresses!billing'")
            && hint.contains("'addresses!shipping'")
            && hint.ends_with("Find the desired relationship in the 'details' key."),
        "{hint}"
    );
    // No relationship, with and without a suggestion.
    let v = s
        .error(&p("/projects", &[("select", "*,nope(*)")]), 400, "PGRST200")
        .await;
    assert_eq!(
        v,
        json!({
            "code": "PGRST200",
            "message": "Could not find a relationship between 'projects' and 'nope' in the schema cache",
            "details": "Searched for a foreign key relationship between 'projects' and 'nope' in the schema 'public', but no matches were found.",
            "hint": null,
        })
    );
    let v = s
        .error(
            &p("/projects", &[("select", "*,client(*)")]),
            400,
            "PGRST200",
        )
        .await;
    assert_eq!(
        v["hint"],
        "Perhaps you meant 'clients' instead of 'client'."
    );
    // A scoped parameter on an embed that is not selected.
    let v = s
        .error(
            &p("/projects", &[("select", "id"), ("tasks.id", "eq.1")]),
            400,
            "PGRST108",
        )
        .await;
    assert_eq!(
        v["message"],
        "'tasks' is not an embedded resource in this request"
    );
    assert_eq!(
        v["hint"],
        "Verify that 'tasks' is included in the 'select' query parameter."
    );
    // Related order on a to-many embed.
    let v = s
        .error(
            &p(
                "/clients",
                &[("select", "projects(id)"), ("order", "projects(id)")],
            ),
            400,
            "PGRST118",
        )
        .await;
    assert_eq!(
        v["message"],
        "A related order on 'projects' is not possible"
    );
    // Spread of a to-many embed.
    s.error(
        &p("/clients", &[("select", "...projects(id)")]),
        400,
        "PGRST119",
    )
    .await;
    // Any operator but is.null / not.is.null on an embed.
    let v = s
        .error(
            &p(
                "/projects",
                &[("select", "id,tasks(id)"), ("tasks", "eq.1")],
            ),
            400,
            "PGRST120",
        )
        .await;
    assert_eq!(
        v["message"],
        "Bad operator on the 'tasks' embedded resource"
    );
    // Past the depth cap.
    let deep = format!("{}name{}", "family(".repeat(9), ")".repeat(9));
    s.error(&p("/family", &[("select", &deep)]), 400, "PGRST127")
        .await;
    // Columns of an embed are checked against it.
    s.error(
        &p("/projects", &[("select", "clients(nope)")]),
        400,
        "42703",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_exposed_relations_take_part() {
    // users_tasks hidden: no many-to-many; clients hidden: no many-to-one to it, and the
    // error never names it.
    let allow = "projects,tasks,users,family";
    let Some(s) = start("embed_exposed", Some(allow)).await else {
        return;
    };
    let v = s
        .error(&p("/users", &[("select", "tasks(*)")]), 400, "PGRST200")
        .await;
    assert_eq!(v["hint"], Value::Null);
    let v = s
        .error(
            &p("/projects", &[("select", "clients(*)")]),
            400,
            "PGRST200",
        )
        .await;
    assert!(!v.to_string().contains("users_tasks"), "{v}");
    assert_eq!(
        s.query(
            "/projects",
            &[
                ("select", "name,tasks(id)"),
                ("id", "eq.1"),
                ("tasks.order", "id")
            ]
        )
        .await,
        json!([{"name": "Windows 7", "tasks": [{"id": 1}, {"id": 2}]}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_return_embeds() {
    let Some(s) = start("embed_writes", None).await else {
        return;
    };
    let rep = [("Prefer", "return=representation")];
    let r = send(
        &s,
        Method::POST,
        &p(
            "/projects",
            &[("select", "name,client:clients(name),tasks(name)")],
        ),
        &rep,
        Some(r#"[{"id":20,"name":"Mac","client_id":2},{"id":21,"name":"Lone","client_id":null}]"#),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.json(),
        json!([
            {"name": "Mac", "client": {"name": "Apple"}, "tasks": []},
            {"name": "Lone", "client": null, "tasks": []},
        ])
    );
    let r = send(
        &s,
        Method::POST,
        &p("/tasks", &[("select", "name,...projects(project:name)")]),
        &rep,
        Some(r#"{"id":30,"name":"Ship","project_id":20}"#),
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (201, json!([{"name": "Ship", "project": "Mac"}]))
    );
    let r = send(
        &s,
        Method::PATCH,
        &p(
            "/projects",
            &[("id", "eq.21"), ("select", "name,clients(name)")],
        ),
        &rep,
        Some(r#"{"client_id":1}"#),
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (
            200,
            json!([{"name": "Lone", "clients": {"name": "Microsoft"}}])
        )
    );
    let r = send(
        &s,
        Method::DELETE,
        &p(
            "/tasks",
            &[("id", "eq.30"), ("select", "name,projects(name)")],
        ),
        &rep,
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (200, json!([{"name": "Ship", "projects": {"name": "Mac"}}]))
    );
    // A bad embed refuses the write before anything is written.
    let r = send(
        &s,
        Method::POST,
        &p("/projects", &[("select", "name,nope(*)")]),
        &rep,
        Some(r#"{"id":22,"name":"Never"}"#),
    )
    .await;
    r.error(400, "PGRST200");
    assert_eq!(
        s.query("/projects", &[("select", "id"), ("id", "eq.22")])
            .await,
        json!([])
    );
}
