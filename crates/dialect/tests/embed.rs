//! Resource embedding on a real SQLite database: the server's conformance fixture plus a
//! relationship of every kind (`crates/server/tests/fixtures/embed.sql`), planned against the
//! schema cache and run as one statement; bodies and errors compared with PostgREST's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]

use dialect::{
    ApiError, CountMethod, Exposure, Limits, MediaType, Preferences, QueryParams, ReadPlan,
    RequestHeaders, SchemaCache, execute_read, plan_read,
};
use rusqlite::Connection;
use serde_json::{Value, json};

const FIXTURE: &str = include_str!("../../server/tests/fixtures/fixture.sql");
const EMBED: &str = include_str!("../../server/tests/fixtures/embed.sql");

fn db() -> Connection {
    let c = Connection::open_in_memory().unwrap();
    dialect::register_functions(&c).unwrap();
    c.execute_batch(FIXTURE).unwrap();
    c.execute_batch(EMBED).unwrap();
    c
}

fn plan(
    c: &Connection,
    exposure: &Exposure,
    table: &str,
    q: &str,
    count: Option<CountMethod>,
) -> Result<ReadPlan, ApiError> {
    let cache = SchemaCache::load(c, exposure).unwrap();
    let h = RequestHeaders {
        media: MediaType::Json { strip_nulls: false },
        prefer: Preferences {
            count,
            ..Default::default()
        },
        range: None,
        profile_sent: false,
    };
    plan_read(
        &cache,
        table,
        &QueryParams::parse(q)?,
        &h,
        Limits::default(),
    )
}

fn read(c: &Connection, table: &str, q: &str) -> Result<Value, ApiError> {
    let p = plan(c, &Exposure::All, table, q, None)?;
    let out = execute_read(c, &p, false)?;
    Ok(serde_json::from_slice(&out.body).unwrap())
}

fn ok(c: &Connection, table: &str, q: &str) -> Value {
    read(c, table, q).unwrap_or_else(|e| panic!("{table}?{q}: {e} {:?}", e.details))
}

fn err(c: &Connection, table: &str, q: &str) -> ApiError {
    match read(c, table, q) {
        Ok(v) => panic!("{table}?{q} answered {v}"),
        Err(e) => e,
    }
}

#[test]
fn many_to_one_one_to_many_one_to_one_many_to_many() {
    let c = db();
    assert_eq!(
        ok(&c, "projects", "select=id,clients(name)&order=id"),
        json!([
            {"id": 1, "clients": {"name": "Microsoft"}},
            {"id": 2, "clients": {"name": "Microsoft"}},
            {"id": 3, "clients": {"name": "Apple"}},
            {"id": 4, "clients": {"name": "Apple"}},
            {"id": 5, "clients": null},
        ])
    );
    assert_eq!(
        ok(
            &c,
            "clients",
            "select=name,projects(id)&order=id&projects.order=id"
        ),
        json!([
            {"name": "Microsoft", "projects": [{"id": 1}, {"id": 2}]},
            {"name": "Apple", "projects": [{"id": 3}, {"id": 4}]},
        ])
    );
    // No children: an empty array.
    assert_eq!(
        ok(&c, "projects", "select=id,tasks(id)&id=eq.5"),
        json!([{"id": 5, "tasks": []}])
    );
    // One-to-one, both ways: objects.
    assert_eq!(
        ok(
            &c,
            "projects",
            "select=id,project_specs(camera,certified)&id=in.(1,2,3)&order=id"
        ),
        json!([
            {"id": 1, "project_specs": {"camera": "Canon", "certified": true}},
            {"id": 2, "project_specs": null},
            {"id": 3, "project_specs": {"camera": "Nikon", "certified": false}},
        ])
    );
    assert_eq!(
        ok(
            &c,
            "project_specs",
            "select=camera,projects(name)&order=project_id"
        ),
        json!([
            {"camera": "Canon", "projects": {"name": "Windows 7"}},
            {"camera": "Nikon", "projects": {"name": "IOS"}},
        ])
    );
    // Many-to-many through the junction, both ways.
    assert_eq!(
        ok(&c, "users", "select=name,tasks(id)&id=eq.2&tasks.order=id"),
        json!([{"name": "Michael Scott", "tasks": [{"id": 5}, {"id": 6}, {"id": 7}]}])
    );
    assert_eq!(
        ok(&c, "tasks", "select=id,users(name)&id=eq.1&users.order=id"),
        json!([{"id": 1, "users": [{"name": "Angela Martin"}, {"name": "Dwight Schrute"}]}])
    );
    // The junction by name.
    assert_eq!(
        ok(
            &c,
            "users",
            "select=tasks!users_tasks(id)&id=eq.3&tasks.order=id"
        ),
        json!([{"tasks": [{"id": 1}, {"id": 5}]}])
    );
}

#[test]
fn nested_aliased_and_twice() {
    let c = db();
    assert_eq!(
        ok(
            &c,
            "clients",
            "select=name,projects(name,tasks(name))&id=eq.1&projects.order=id&projects.tasks.order=id.desc"
        ),
        json!([{"name": "Microsoft", "projects": [
            {"name": "Windows 7", "tasks": [{"name": "Code w7"}, {"name": "Design w7"}]},
            {"name": "Windows 10", "tasks": [{"name": "Code w10"}, {"name": "Design w10"}]},
        ]}])
    );
    assert_eq!(
        ok(
            &c,
            "projects",
            "select=name,client:clients(clientId:id,name)&id=eq.3"
        ),
        json!([{"name": "IOS", "client": {"clientId": 2, "name": "Apple"}}])
    );
    assert_eq!(
        ok(
            &c,
            "users",
            "select=name,designTasks:tasks(name),codeTasks:tasks(name)&id=eq.1\
             &designTasks.name=like.Design*&codeTasks.name=like.Code*\
             &designTasks.order=id&codeTasks.order=id"
        ),
        json!([{
            "name": "Angela Martin",
            "designTasks": [{"name": "Design w7"}, {"name": "Design w10"}],
            "codeTasks": [{"name": "Code w7"}, {"name": "Code w10"}],
        }])
    );
    // Values nest as they render at the top: JSON, BLOB, BOOL, REAL.
    assert_eq!(
        ok(
            &c,
            "clients",
            "select=projects(settings->tags,logo,active,budget)&id=eq.1&projects.order=id"
        ),
        json!([{"projects": [
            {"tags": ["a", "b"], "logo": "\\xdeadbeef", "active": true, "budget": 1500.5},
            {"tags": ["b"], "logo": null, "active": true, "budget": 2000.25},
        ]}])
    );
    // `*` inside an embed, and an embed under a star.
    assert_eq!(
        ok(&c, "tasks", "select=*,projects(*)&id=eq.8")[0]["projects"]["name"],
        json!("OSX")
    );
}

#[test]
fn hints_and_ambiguity() {
    let c = db();
    let e = err(&c, "users", "select=messages(*)");
    assert_eq!((e.status, e.code.as_str()), (300, "PGRST201"));
    assert_eq!(
        e.message,
        "Could not embed because more than one relationship was found for 'users' and 'messages'"
    );
    let details = e.details.clone().unwrap();
    let mut details = details.as_array().unwrap().clone();
    details.sort_by_key(|d| d["relationship"].as_str().unwrap().to_string());
    assert_eq!(
        details,
        vec![
            json!({"cardinality": "one-to-many", "embedding": "users with messages",
                   "relationship": "messages_recipient_id_fkey using users(id) and messages(recipient_id)"}),
            json!({"cardinality": "one-to-many", "embedding": "users with messages",
                   "relationship": "messages_sender_id_fkey using users(id) and messages(sender_id)"}),
        ]
    );
    let hint = e.hint.unwrap();
    assert!(
        hint.starts_with("Try changing 'messages' to one of the following: ")
            && hint.contains("'messages!messages_sender_id_fkey'")
            && hint.contains("'messages!messages_recipient_id_fkey'")
            && hint.ends_with(". Find the desired relationship in the 'details' key."),
        "{hint}"
    );
    // By column, by foreign key name, by the referenced column.
    assert_eq!(
        ok(
            &c,
            "messages",
            "select=body,sender:users!sender_id(name),recipient:users!messages_recipient_id_fkey(name)&order=id&limit=2"
        ),
        json!([
            {"body": "hi", "sender": {"name": "Angela Martin"}, "recipient": {"name": "Michael Scott"}},
            {"body": "yo", "sender": {"name": "Michael Scott"}, "recipient": {"name": "Angela Martin"}},
        ])
    );
    assert_eq!(
        ok(&c, "users", "select=sent:messages!sender_id(body)&id=eq.3"),
        json!([{"sent": [{"body": "hey"}]}])
    );
    // The foreign key's column as the target.
    assert_eq!(
        ok(&c, "messages", "select=body,sender_id(name)&id=eq.3"),
        json!([{"body": "hey", "sender_id": {"name": "Dwight Schrute"}}])
    );
    // Names the schema gives its constraints.
    assert_eq!(
        ok(
            &c,
            "orders",
            "select=name,billing:addresses!billing(name),shipping:addresses!shipping(name)&order=id"
        ),
        json!([
            {"name": "first", "billing": {"name": "Home"}, "shipping": {"name": "Work"}},
            {"name": "second", "billing": {"name": "Work"}, "shipping": {"name": "Work"}},
            {"name": "third", "billing": null, "shipping": {"name": "Home"}},
        ])
    );
    let e = err(&c, "orders", "select=addresses(*)");
    assert_eq!(e.status, 300);
    let hint = e.hint.unwrap();
    assert!(
        hint.contains("'addresses!billing'") && hint.contains("'addresses!shipping'"),
        "{hint}"
    );
    assert_eq!(
        ok(&c, "addresses", "select=name,orders!billing(name)&id=eq.1"),
        json!([{"name": "Home", "orders": [{"name": "first"}]}])
    );
}

#[test]
fn no_relationship() {
    let c = db();
    let e = err(&c, "projects", "select=*,nope(*)");
    assert_eq!((e.status, e.code.as_str()), (400, "PGRST200"));
    assert_eq!(
        e.message,
        "Could not find a relationship between 'projects' and 'nope' in the schema cache"
    );
    assert_eq!(
        e.details,
        Some(json!(
            "Searched for a foreign key relationship between 'projects' and 'nope' in the schema 'public', but no matches were found."
        ))
    );
    assert_eq!(e.hint, None);
    let e = err(&c, "projects", "select=*,task(*)");
    assert_eq!(
        e.hint.as_deref(),
        Some("Perhaps you meant 'tasks' instead of 'task'.")
    );
    let e = err(&c, "clients", "select=projects!nope(*)");
    assert_eq!(
        e.details,
        Some(json!(
            "Searched for a foreign key relationship between 'clients' and 'projects' using the hint 'nope' in the schema 'public', but no matches were found."
        ))
    );
    // A relation that exists but has no key to this one.
    assert_eq!(
        err(&c, "items", "select=clients(*)").code.as_str(),
        "PGRST200"
    );
}

#[test]
fn only_exposed_relations_take_part() {
    let c = db();
    let only = |names: &[&str]| Exposure::Only(names.iter().map(|s| s.to_string()).collect());
    // Hidden target.
    let e = plan(
        &c,
        &only(&["projects"]),
        "projects",
        "select=clients(*)",
        None,
    )
    .unwrap_err();
    assert_eq!(e.code.as_str(), "PGRST200");
    // Hidden junction: no many-to-many.
    let e = plan(
        &c,
        &only(&["users", "tasks"]),
        "users",
        "select=tasks(*)",
        None,
    )
    .unwrap_err();
    assert_eq!(e.code.as_str(), "PGRST200");
    assert!(
        plan(
            &c,
            &only(&["projects", "clients"]),
            "projects",
            "select=clients(*)",
            None
        )
        .is_ok()
    );
}

#[test]
fn inner_null_filters_and_counts() {
    let c = db();
    assert_eq!(
        ok(
            &c,
            "clients",
            "select=name,projects!inner(name)&projects.name=eq.IOS"
        ),
        json!([{"name": "Apple", "projects": [{"name": "IOS"}]}])
    );
    // `!left` (the default) keeps every parent.
    assert_eq!(
        ok(
            &c,
            "clients",
            "select=name,projects!left(name)&projects.name=eq.IOS&order=id"
        ),
        json!([
            {"name": "Microsoft", "projects": []},
            {"name": "Apple", "projects": [{"name": "IOS"}]},
        ])
    );
    // Exact counts honour `!inner` and null filters.
    let p = plan(
        &c,
        &Exposure::All,
        "clients",
        "select=name,projects!inner(name)&projects.name=eq.IOS",
        Some(CountMethod::Exact),
    )
    .unwrap();
    assert_eq!(execute_read(&c, &p, false).unwrap().content_range, "0-0/1");
    let ids = |q: &str| -> Vec<i64> {
        ok(&c, "projects", q)
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(
        ids("select=id,project_specs()&project_specs=is.null&order=id"),
        vec![2, 4, 5]
    );
    assert_eq!(
        ids("select=id,project_specs()&project_specs=not.is.null&order=id"),
        vec![1, 3]
    );
    assert_eq!(
        ids("select=id,project_specs()&or=(project_specs.is.null,id.eq.1)&order=id"),
        vec![1, 2, 4, 5]
    );
    // The embed's own filters count: projects with a task named like Code IOS.
    assert_eq!(
        ids("select=id,tasks()&tasks.name=eq.Code IOS&tasks=not.is.null"),
        vec![3]
    );
    // An empty embed is not shown.
    assert_eq!(
        ok(&c, "projects", "select=id,tasks()&id=eq.1"),
        json!([{"id": 1}])
    );
    let p = plan(
        &c,
        &Exposure::All,
        "projects",
        "select=id,project_specs()&project_specs=is.null",
        Some(CountMethod::Exact),
    )
    .unwrap();
    assert_eq!(execute_read(&c, &p, false).unwrap().content_range, "0-2/3");
    let e = err(&c, "projects", "select=id,tasks(id)&tasks=eq.1");
    assert_eq!((e.status, e.code.as_str()), (400, "PGRST120"));
    assert_eq!(e.message, "Bad operator on the 'tasks' embedded resource");
    let e = err(&c, "projects", "select=id&tasks.id=eq.1");
    assert_eq!((e.status, e.code.as_str()), (400, "PGRST108"));
    assert_eq!(
        e.message,
        "'tasks' is not an embedded resource in this request"
    );
    let e = err(
        &c,
        "clients",
        "select=id,projects(id)&projects.tasks.order=id",
    );
    assert_eq!(
        e.message,
        "'tasks' is not an embedded resource in this request"
    );
}

#[test]
fn spreads_and_related_orders() {
    let c = db();
    assert_eq!(
        ok(
            &c,
            "projects",
            "select=name,...clients(client_name:name)&id=in.(1,5)&order=id"
        ),
        json!([
            {"name": "Windows 7", "client_name": "Microsoft"},
            {"name": "Orphan", "client_name": null},
        ])
    );
    // A spread's nested embed comes along.
    assert_eq!(
        ok(
            &c,
            "tasks",
            "select=name,...projects(project:name,clients(name))&id=eq.5"
        ),
        json!([{"name": "Design IOS", "project": "IOS", "clients": {"name": "Apple"}}])
    );
    let e = err(&c, "clients", "select=name,...projects(name)");
    assert_eq!((e.status, e.code.as_str()), (400, "PGRST119"));
    // Order by a to-one embed's column: PostgreSQL's NULLS FIRST for DESC.
    let ids: Vec<i64> = ok(
        &c,
        "projects",
        "select=id,clients(name)&order=clients(name).desc,id",
    )
    .as_array()
    .unwrap()
    .iter()
    .map(|o| o["id"].as_i64().unwrap())
    .collect();
    assert_eq!(ids, vec![5, 1, 2, 3, 4]);
    let e = err(&c, "clients", "select=projects(id)&order=projects(id)");
    assert_eq!((e.status, e.code.as_str()), (400, "PGRST118"));
    assert_eq!(
        e.details,
        Some(json!(
            "'clients' and 'projects' do not form a many-to-one or one-to-one relationship"
        ))
    );
    assert_eq!(
        err(&c, "projects", "select=id&order=clients(name)")
            .code
            .as_str(),
        "PGRST108"
    );
}

#[test]
fn pages_inside_embeds() {
    let c = db();
    assert_eq!(
        ok(
            &c,
            "clients",
            "select=id,projects(id)&projects.order=id.desc&projects.limit=1&projects.offset=1&order=id"
        ),
        json!([{"id": 1, "projects": [{"id": 1}]}, {"id": 2, "projects": [{"id": 3}]}])
    );
    // An offset on a to-one embed leaves it null.
    assert_eq!(
        ok(
            &c,
            "projects",
            "select=id,clients(id)&clients.offset=1&id=eq.1"
        ),
        json!([{"id": 1, "clients": null}])
    );
    // By alias.
    assert_eq!(
        ok(
            &c,
            "clients",
            "select=id,p:projects(id)&p.limit=1&p.order=id&id=eq.2"
        ),
        json!([{"id": 2, "p": [{"id": 3}]}])
    );
    assert_eq!(
        err(&c, "clients", "select=id,projects(id)&projects.limit=-1")
            .code
            .as_str(),
        "PGRST103"
    );
}

#[test]
fn self_references_composite_keys_and_views() {
    let c = db();
    assert_eq!(
        ok(
            &c,
            "family",
            "select=name,family(name)&id=eq.1&family.order=id"
        ),
        json!([{"name": "Ada", "family": [{"name": "Ben"}, {"name": "Cy"}]}])
    );
    assert_eq!(
        ok(&c, "family", "select=name,parent_id(name)&id=eq.4"),
        json!([{"name": "Dee", "parent_id": {"name": "Ben"}}])
    );
    assert_eq!(
        ok(
            &c,
            "family",
            "select=name,children:family!parent_id(name),parent:parent_id(name)&id=eq.2"
        ),
        json!([{"name": "Ben", "children": [{"name": "Dee"}], "parent": {"name": "Ada"}}])
    );
    assert_eq!(
        ok(&c, "printings", "select=id,editions(title)&order=id"),
        json!([
            {"id": 1, "editions": {"title": "Dune"}},
            {"id": 2, "editions": {"title": "Dune (2nd)"}},
            {"id": 3, "editions": {"title": "Dune"}},
            {"id": 4, "editions": null},
        ])
    );
    assert_eq!(
        ok(
            &c,
            "editions",
            "select=title,printings(copies)&book=eq.dune&number=eq.1&printings.order=id"
        ),
        json!([{"title": "Dune", "printings": [{"copies": 1000}, {"copies": 250}]}])
    );
    // Views embed like the tables their columns come from, both ways.
    assert_eq!(
        ok(&c, "tasks_view", "select=title,projects(name)&id=eq.1"),
        json!([{"title": "Design w7", "projects": {"name": "Windows 7"}}])
    );
    assert_eq!(
        ok(
            &c,
            "projects",
            "select=name,tasks_view(title)&id=eq.1&tasks_view.order=id"
        ),
        json!([{"name": "Windows 7", "tasks_view": [{"title": "Design w7"}, {"title": "Code w7"}]}])
    );
    assert_eq!(
        ok(&c, "projects_view", "select=name,clients(name)&id=eq.3"),
        json!([{"name": "IOS", "clients": {"name": "Apple"}}])
    );
}

#[test]
fn depth_and_breadth_are_capped() {
    let c = db();
    let nest = |n: usize| format!("select={}name{}", "family(".repeat(n), ")".repeat(n));
    assert!(read(&c, "family", &nest(dialect::MAX_EMBED_DEPTH)).is_ok());
    let e = err(&c, "family", &nest(dialect::MAX_EMBED_DEPTH + 1));
    assert_eq!((e.status, e.code.as_str()), (400, "PGRST127"));
    let wide = (0..=dialect::MAX_EMBEDS)
        .map(|i| format!("a{i}:clients(id)"))
        .collect::<Vec<_>>()
        .join(",");
    let e = err(&c, "projects", &format!("select={wide}"));
    assert_eq!((e.status, e.code.as_str()), (400, "PGRST127"));
    // As many fields as an embed may show work; one more is refused before any SQL.
    let fields = |n: usize| vec!["name"; n].join(",");
    let body = ok(
        &c,
        "projects",
        &format!(
            "select=clients({})&id=eq.1",
            fields(dialect::MAX_EMBED_FIELDS)
        ),
    );
    assert_eq!(body[0]["clients"]["name"], json!("Microsoft"));
    // (Past 500, SQLite's json_object itself would refuse, in its own words.)
    for n in [dialect::MAX_EMBED_FIELDS + 1, 600] {
        let e = err(
            &c,
            "projects",
            &format!("select=clients({})&id=eq.1", fields(n)),
        );
        assert_eq!((e.status, e.code.as_str()), (400, "PGRST127"), "{e}");
    }
}

#[test]
fn correlations_use_indexes() {
    let c = Connection::open_in_memory().unwrap();
    dialect::register_functions(&c).unwrap();
    c.execute_batch(
        "CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT);
         CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT, author_id INTEGER REFERENCES authors(id));
         CREATE TABLE reviews (id INTEGER PRIMARY KEY, book_id INTEGER REFERENCES books(id), stars INTEGER);
         CREATE INDEX reviews_book ON reviews(book_id);
         CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT);
         CREATE TABLE book_tags (book_id INTEGER REFERENCES books(id), tag_id INTEGER REFERENCES tags(id),
                                 PRIMARY KEY (book_id, tag_id));",
    )
    .unwrap();
    let p = plan(
        &c,
        &Exposure::All,
        "books",
        "select=title,authors(name),reviews(stars),tags(name)&reviews.order=stars.desc&reviews.limit=10",
        None,
    )
    .unwrap();
    let text = dialect::read_sql(&p);
    let mut stmt = c
        .prepare(&format!("EXPLAIN QUERY PLAN {}", text.text))
        .unwrap();
    let rows: Vec<String> = stmt
        .query_map(rusqlite::params_from_iter(text.params.iter()), |r| {
            r.get::<_, String>(3)
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let plan = rows.join("\n");
    // The root is scanned; every related table is searched by key, never scanned.
    assert!(plan.contains("SCAN t0"), "{plan}");
    for needle in [
        "SEARCH t1 USING INTEGER PRIMARY KEY",
        "SEARCH t2 USING INDEX reviews_book",
        "SEARCH t4 USING COVERING INDEX sqlite_autoindex_book_tags_1",
        "SEARCH t3 USING INTEGER PRIMARY KEY",
    ] {
        assert!(plan.contains(needle), "{needle} missing from:\n{plan}");
    }
    assert!(
        !plan.contains("SCAN t1") && !plan.contains("SCAN t2") && !plan.contains("SCAN t3"),
        "{plan}"
    );
}

#[test]
fn errors_never_name_hidden_relations() {
    let c = db();
    // Two views over the hidden `messages` keep its foreign keys (and their names).
    c.execute_batch("CREATE VIEW inbox AS SELECT id, body, sender_id, recipient_id FROM messages;")
        .unwrap();
    let only = Exposure::Only(["users", "inbox"].iter().map(|s| s.to_string()).collect());
    let e = plan(&c, &only, "users", "select=inbox(*)", None).unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (300, "PGRST201"));
    assert_eq!((e.details, e.hint), (None, None));
    // Disambiguated by column, it embeds.
    let p = plan(
        &c,
        &only,
        "users",
        "select=name,inbox!sender_id(body)&id=eq.3",
        None,
    )
    .unwrap();
    let out = execute_read(&c, &p, false).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&out.body).unwrap(),
        json!([{"name": "Dwight Schrute", "inbox": [{"body": "hey"}]}])
    );
}

#[test]
fn keys_declared_in_another_case_or_to_nothing() {
    let c = Connection::open_in_memory().unwrap();
    dialect::register_functions(&c).unwrap();
    c.execute_batch(
        "PRAGMA foreign_keys = OFF;
         CREATE TABLE Owners (Id INTEGER PRIMARY KEY, Name TEXT);
         CREATE TABLE pets (id INTEGER PRIMARY KEY, name TEXT,
           owner INTEGER REFERENCES OWNERS(ID), ghost INTEGER REFERENCES nowhere(id),
           FOREIGN KEY (NAME) REFERENCES owners(name_that_is_not));
         INSERT INTO Owners VALUES (1, 'Ann');
         INSERT INTO pets VALUES (1, 'Rex', 1, NULL);",
    )
    .unwrap();
    assert_eq!(
        ok(&c, "pets", "select=name,Owners(Name)"),
        json!([{"name": "Rex", "Owners": {"Name": "Ann"}}])
    );
    assert_eq!(
        ok(&c, "Owners", "select=Name,pets(name)"),
        json!([{"Name": "Ann", "pets": [{"name": "Rex"}]}])
    );
    assert_eq!(
        err(&c, "pets", "select=nowhere(*)").code.as_str(),
        "PGRST200"
    );
}
