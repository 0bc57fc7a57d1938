//! The write path of the dialect on a real SQLite database: parse a body, plan against the
//! schema cache, run inside a savepoint, and check both the response and the rows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]

use dialect::{
    ApiError, BodyFormat, Exposure, Mutation, QueryParams, SchemaCache, WriteOptions, WriteOutput,
    WriteRequest, execute_write, parse_payload, plan_write,
};
use dialect::{InsertCounter, register_insert_counter};
use dialect::{MediaType, Preferences};
use rusqlite::Connection;
use serde_json::{Value, json};

struct Db {
    conn: Connection,
    counter: InsertCounter,
}

const JSON: MediaType = MediaType::Json { strip_nulls: false };

fn db() -> Db {
    let conn = Connection::open_in_memory().unwrap();
    dialect::register_functions(&conn).unwrap();
    let counter = register_insert_counter(&conn).unwrap();
    conn.execute_batch(
        r#"
        CREATE TABLE clients (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
        CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
          client_id INTEGER REFERENCES clients(id), settings JSON, logo BLOB,
          active BOOLEAN NOT NULL DEFAULT 1, created TEXT DEFAULT 'now');
        CREATE TABLE kv (k TEXT, scope TEXT, v TEXT, PRIMARY KEY (k, scope)) WITHOUT ROWID;
        CREATE TABLE no_pk (a TEXT, b TEXT);
        CREATE TABLE "we""ird" ("a.b" TEXT, "x""y" TEXT, rowid TEXT);
        CREATE TABLE base (id INTEGER PRIMARY KEY, name TEXT, extra INTEGER DEFAULT 7);
        CREATE VIEW v AS SELECT id, name, extra FROM base;
        CREATE TRIGGER v_ins INSTEAD OF INSERT ON v BEGIN INSERT INTO base (id, name) VALUES (NEW.id, NEW.name); END;
        CREATE TRIGGER v_upd INSTEAD OF UPDATE ON v BEGIN UPDATE base SET name = NEW.name WHERE id = OLD.id; END;
        CREATE TRIGGER v_del INSTEAD OF DELETE ON v BEGIN DELETE FROM base WHERE id = OLD.id; END;
        CREATE VIEW ro AS SELECT id FROM base;
        CREATE VIRTUAL TABLE docs USING fts5(title, body);
        INSERT INTO clients VALUES (1, 'Microsoft'), (2, 'Apple');
        INSERT INTO projects (id, name, client_id) VALUES (1, 'Windows 7', 1), (2, 'Windows 10', 1), (3, 'IOS', 2);
        INSERT INTO kv VALUES ('a', 'x', '1');
        INSERT INTO no_pk VALUES ('1', '0'), ('2', '0'), (NULL, NULL);
        INSERT INTO base VALUES (1, 'one', 1);
        "#,
    )
    .unwrap();
    Db { conn, counter }
}

struct Req<'a> {
    mutation: Mutation,
    rel: &'a str,
    query: &'a str,
    prefer: &'a [&'a str],
    body: Option<&'a str>,
    media: MediaType,
    safe_update: bool,
    format: BodyFormat,
}

fn req<'a>(mutation: Mutation, rel: &'a str, query: &'a str, body: Option<&'a str>) -> Req<'a> {
    Req {
        mutation,
        rel,
        query,
        prefer: &[],
        body,
        media: JSON,
        safe_update: true,
        format: BodyFormat::Json,
    }
}

/// POST: insert `body` (JSON) into `rel` with this query string.
fn insert<'a>(rel: &'a str, query: &'a str, body: &'a str) -> Req<'a> {
    req(Mutation::Insert, rel, query, Some(body))
}

/// PATCH: update the rows of `rel` the query string selects with `body`.
fn update<'a>(rel: &'a str, query: &'a str, body: &'a str) -> Req<'a> {
    req(Mutation::Update, rel, query, Some(body))
}

/// PUT: insert or replace the one row of `rel` the query string names.
fn upsert<'a>(rel: &'a str, query: &'a str, body: &'a str) -> Req<'a> {
    req(Mutation::Upsert, rel, query, Some(body))
}

/// DELETE: the rows of `rel` the query string selects.
fn delete<'a>(rel: &'a str, query: &'a str) -> Req<'a> {
    req(Mutation::Delete, rel, query, None)
}

impl<'a> Req<'a> {
    /// With these `Prefer` values.
    fn prefer(self, prefer: &'a [&'a str]) -> Self {
        Req { prefer, ..self }
    }

    /// Answered in this media type.
    fn media(self, media: MediaType) -> Self {
        Req { media, ..self }
    }

    /// With a CSV body.
    fn csv(self) -> Self {
        Req {
            format: BodyFormat::Csv,
            ..self
        }
    }
}

const REP: &str = "return=representation";

impl Db {
    /// Plans and runs one write in a savepoint, keeping it only on success with commit.
    fn run(&self, r: Req<'_>) -> Result<WriteOutput, ApiError> {
        let query = QueryParams::parse(r.query)?;
        let payload = match r.body {
            Some(b) => Some(parse_payload(
                b.as_bytes(),
                r.format,
                query.columns.is_some(),
            )?),
            None => None,
        };
        let w = WriteRequest {
            mutation: r.mutation,
            relation: r.rel.to_string(),
            query,
            media: r.media,
            prefer: Preferences::parse(r.prefer.iter().copied())?,
            payload,
        };
        let cache = SchemaCache::load(&self.conn, &Exposure::All).unwrap();
        self.conn.execute_batch("SAVEPOINT w").unwrap();
        let result = plan_write(
            &cache,
            &w,
            &WriteOptions {
                safe_update: r.safe_update,
                ..WriteOptions::default()
            },
        )
        .and_then(|plan| {
            let body = w.payload.as_ref().map_or("[]", |p| p.json.as_str());
            execute_write(&self.conn, &plan, body, &self.counter)
        });
        let keep = matches!(&result, Ok(o) if o.commit);
        self.conn
            .execute_batch(if keep {
                "RELEASE w"
            } else {
                "ROLLBACK TO w; RELEASE w"
            })
            .unwrap();
        result
    }

    /// Runs a write that must succeed.
    fn ok(&self, r: Req<'_>) -> WriteOutput {
        self.run(r).unwrap()
    }

    /// Runs a write that must fail.
    fn err(&self, r: Req<'_>) -> ApiError {
        self.run(r).unwrap_err()
    }

    fn rows(&self, sql: &str) -> Value {
        let mut stmt = self.conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
        let rows: Vec<Value> = stmt
            .query_map([], |r| {
                let mut o = serde_json::Map::new();
                for (i, name) in names.iter().enumerate().take(n) {
                    let v = match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => Value::Null,
                        rusqlite::types::ValueRef::Integer(x) => json!(x),
                        rusqlite::types::ValueRef::Real(x) => json!(x),
                        rusqlite::types::ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                        rusqlite::types::ValueRef::Blob(b) => json!(format!("blob:{}", b.len())),
                    };
                    o.insert(name.clone(), v);
                }
                Ok(Value::Object(o))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        Value::Array(rows)
    }
}

fn body(o: &WriteOutput) -> Value {
    serde_json::from_slice(o.body.as_ref().expect("a body")).unwrap()
}

#[test]
fn insert_one_and_many() {
    let d = db();
    let o = d.ok(insert("clients", "", r#"{"id":3,"name":"IBM"}"#));
    assert_eq!((o.status, o.body.is_none(), o.affected), (201, true, 1));
    assert_eq!(o.content_range.as_deref(), Some("*/*"));
    assert_eq!(o.preference_applied.header_value(), None);
    let o = d.ok(insert(
        "clients",
        "select=name",
        r#"[{"id":5,"name":"Zed"},{"id":4,"name":"Ace"}]"#,
    )
    .prefer(&[REP, "count=exact"]));
    assert_eq!(o.status, 201);
    assert_eq!(
        body(&o),
        json!([{"name":"Zed"},{"name":"Ace"}]),
        "insertion order"
    );
    assert_eq!(o.content_range.as_deref(), Some("*/2"));
    assert_eq!(
        o.preference_applied.header_value().as_deref(),
        Some("return=representation, count=exact")
    );
    assert_eq!(
        d.rows("SELECT id, name FROM clients WHERE id > 2 ORDER BY id"),
        json!([{"id":3,"name":"IBM"},{"id":4,"name":"Ace"},{"id":5,"name":"Zed"}])
    );
    // order= shapes the representation.
    let o = d.ok(insert(
        "clients",
        "select=id&order=id.desc",
        r#"[{"id":6,"name":"a"},{"id":7,"name":"b"}]"#,
    )
    .prefer(&[REP]));
    assert_eq!(body(&o), json!([{"id":7},{"id":6}]));
}

#[test]
fn types_round_trip_and_missing_default() {
    let d = db();
    let o = d.ok(
            insert(
                "projects",
                "select=id,name,settings,logo,active,created",
                r#"{"id":9,"name":"P","settings":{"a":[1,"x"],"s":"str"},"logo":"\\xdeadbeef","active":false,"created":null}"#,
            )
            .prefer(&[REP]),
        );
    assert_eq!(
        body(&o),
        json!([{"id":9,"name":"P","settings":{"a":[1,"x"],"s":"str"},"logo":"\\xdeadbeef","active":false,"created":null}])
    );
    // columns + missing=default: absent keys take the column default; explicit null stays.
    let o = d.ok(insert(
        "projects",
        "columns=%22id%22,%22name%22,%22active%22,%22created%22&select=id,active,created",
        r#"[{"id":10,"name":"a"},{"id":11,"name":"b","active":false,"created":null}]"#,
    )
    .prefer(&[REP, "missing=default"]));
    assert_eq!(
        body(&o),
        json!([{"id":10,"active":true,"created":"now"},{"id":11,"active":false,"created":null}])
    );
    assert_eq!(
        o.preference_applied.header_value().as_deref(),
        Some("missing=default, return=representation")
    );
    // Without missing=default, a column named by `columns` but absent is NULL.
    let e = d.err(insert(
        "projects",
        "columns=id,name,active",
        r#"[{"id":12,"name":"c"}]"#,
    ));
    assert_eq!((e.status, e.code.as_str()), (400, "23502"));
}

#[test]
fn unknown_columns_and_relations() {
    let d = db();
    let e = d.err(insert("clients", "", r#"{"id":3,"nope":1}"#));
    assert_eq!((e.status, e.code.as_str()), (400, "PGRST204"));
    assert_eq!(
        e.message,
        "Could not find the 'nope' column of 'clients' in the schema cache"
    );
    let e = d.err(insert("clients", "columns=id,nope", r#"{"id":3}"#));
    assert_eq!(e.code.as_str(), "PGRST204");
    let e = d.err(insert("nope", "", r#"{"id":3}"#));
    assert_eq!((e.status, e.code.as_str()), (404, "PGRST205"));
    let e = d.err(insert("ro", "", r#"{"id":3}"#));
    assert_eq!(e.status, 405);
}

#[test]
fn upserts() {
    let d = db();
    // One new key, one existing: 201, both rows in the representation.
    let o = d.ok(insert(
        "clients",
        "",
        r#"[{"id":1,"name":"MS"},{"id":3,"name":"IBM"}]"#,
    )
    .prefer(&[REP, "resolution=merge-duplicates"]));
    assert_eq!(o.status, 201);
    assert_eq!(
        body(&o),
        json!([{"id":1,"name":"MS"},{"id":3,"name":"IBM"}])
    );
    assert_eq!(
        o.preference_applied.header_value().as_deref(),
        Some("resolution=merge-duplicates, return=representation")
    );
    // Only updates: 200.
    let o = d.ok(insert("clients", "", r#"[{"id":1,"name":"Microsoft"}]"#)
        .prefer(&["resolution=merge-duplicates"]));
    assert_eq!(o.status, 200);
    // on_conflict on a UNIQUE column.
    let o = d.ok(insert(
        "clients",
        "on_conflict=name&select=id,name",
        r#"[{"name":"Apple"}]"#,
    )
    .prefer(&[REP, "resolution=merge-duplicates"]));
    assert_eq!(
        (o.status, body(&o)),
        (200, json!([{"id":2,"name":"Apple"}]))
    );
    // ignore-duplicates: only inserted rows are represented, and the status is 201.
    let o = d.ok(insert(
        "clients",
        "",
        r#"[{"id":1,"name":"X"},{"id":8,"name":"Y"}]"#,
    )
    .prefer(&[REP, "resolution=ignore-duplicates"]));
    assert_eq!((o.status, body(&o)), (201, json!([{"id":8,"name":"Y"}])));
    assert_eq!(
        d.rows("SELECT name FROM clients WHERE id = 1"),
        json!([{"name":"Microsoft"}])
    );
    // on_conflict must match a unique key exactly.
    let e = d.err(
        insert("projects", "on_conflict=name", r#"{"id":1,"name":"x"}"#)
            .prefer(&["resolution=merge-duplicates"]),
    );
    assert_eq!((e.status, e.code.as_str()), (400, "42P10"));
    let e = d.err(
        insert("projects", "on_conflict=nope", r#"{"id":1,"name":"x"}"#)
            .prefer(&["resolution=merge-duplicates"]),
    );
    assert_eq!(e.code.as_str(), "PGRST204");
    // No primary key and no on_conflict: resolution is ignored and not reported.
    let o = d.ok(insert("no_pk", "", r#"{"a":"9"}"#).prefer(&["resolution=merge-duplicates"]));
    assert_eq!((o.status, o.preference_applied.header_value()), (201, None));
    // Composite keys of a WITHOUT ROWID table.
    let o = d.ok(insert(
        "kv",
        "select=k,scope,v",
        r#"[{"k":"a","scope":"x","v":"2"},{"k":"a","scope":"y","v":"3"}]"#,
    )
    .prefer(&[REP, "resolution=merge-duplicates"]));
    assert_eq!(
        (o.status, body(&o)),
        (
            201,
            json!([{"k":"a","scope":"x","v":"2"},{"k":"a","scope":"y","v":"3"}])
        )
    );
    // An empty array with merge-duplicates inserted nothing: 200.
    let o = d.ok(insert("clients", "", "[]").prefer(&["resolution=merge-duplicates", REP]));
    assert_eq!((o.status, body(&o)), (200, json!([])));
}

#[test]
fn put_rules() {
    let d = db();
    let put = |q: &'static str, b: &'static str| upsert("clients", q, b).prefer(&[REP]);
    let o = d.ok(put("id=eq.7", r#"{"id":7,"name":"New"}"#));
    assert_eq!((o.status, body(&o)), (201, json!([{"id":7,"name":"New"}])));
    assert_eq!(o.content_range, None);
    let o = d.ok(put(
        "id=eq.7",
        r#"[{"id":7,"name":"Newer"},{"id":8,"name":"no"}]"#,
    ));
    assert_eq!(
        (o.status, body(&o)),
        (200, json!([{"id":7,"name":"Newer"}]))
    );
    let o = d.ok(upsert("clients", "id=eq.7", r#"{"id":"7","name":"N"}"#));
    assert_eq!(o.status, 204);
    for (q, code, status) in [
        ("name=eq.x", "PGRST105", 405),
        ("id=gt.7", "PGRST105", 405),
        ("id=not.eq.7", "PGRST105", 405),
        ("id=in.(7)", "PGRST105", 405),
        ("and=(id.eq.7)", "PGRST105", 405),
        ("id=eq.7&name=eq.N", "PGRST105", 405),
        ("", "PGRST105", 405),
        ("id=eq.7&limit=1", "PGRST114", 400),
        ("id=eq.8", "PGRST115", 400),
    ] {
        let e = d.err(put(q, r#"{"id":7,"name":"x"}"#));
        assert_eq!((e.status, e.code.as_str()), (status, code), "{q}");
    }
    let e = d.err(upsert("no_pk", "a=eq.1", r#"{"a":"1"}"#));
    assert_eq!(e.code.as_str(), "PGRST105");
    // Composite key.
    let o = d.ok(upsert(
        "kv",
        "k=eq.a&scope=eq.x",
        r#"{"k":"a","scope":"x","v":"9"}"#,
    ));
    assert_eq!(o.status, 204);
    assert_eq!(
        d.rows("SELECT v FROM kv WHERE k='a' AND scope='x'"),
        json!([{"v":"9"}])
    );
}

#[test]
fn patch_and_delete() {
    let d = db();
    let o = d.ok(update("projects", "client_id=eq.1", r#"{"name":"W"}"#));
    assert_eq!((o.status, o.content_range.as_deref()), (204, Some("0-1/*")));
    let o = d
        .ok(update("projects", "id=eq.2&select=id,name", r#"{"id":20}"#)
            .prefer(&[REP, "count=exact"]));
    assert_eq!((o.status, body(&o)), (200, json!([{"id":20,"name":"W"}])));
    assert_eq!(o.content_range.as_deref(), Some("0-0/1"));
    let o = d.ok(update("projects", "id=eq.999", r#"{"name":"x"}"#));
    assert_eq!((o.status, o.content_range.as_deref()), (204, Some("*/*")));
    let o = d.ok(update("projects", "id=eq.1", "{}"));
    assert_eq!((o.affected, o.content_range.as_deref()), (0, Some("*/*")));
    // safe update: no filter, no write.
    let e = d.err(update("projects", "", r#"{"name":"x"}"#));
    assert_eq!((e.status, e.code.as_str()), (400, "21000"));
    assert!(e.message.ends_with("requires a WHERE clause"));
    let e = d.err(delete("projects", "select=id"));
    assert_eq!(e.code.as_str(), "21000");
    let o = d.ok(Req {
        safe_update: false,
        ..update("no_pk", "", r#"{"b":"z"}"#)
    });
    assert_eq!(o.affected, 3);
    // DELETE with representation reads the rows before removing them.
    let o = d.ok(delete("projects", "id=gte.1&select=id,name&order=id.desc").prefer(&[REP]));
    assert_eq!(
        body(&o),
        json!([{"id":20,"name":"W"},{"id":3,"name":"IOS"},{"id":1,"name":"W"}])
    );
    assert_eq!(
        d.rows("SELECT count(*) AS n FROM projects"),
        json!([{"n":0}])
    );
    let o = d.ok(delete("clients", "id=eq.2"));
    assert_eq!((o.status, o.content_range.as_deref()), (204, Some("*/*")));
}

#[test]
fn checks_roll_back() {
    let d = db();
    let before = d.rows("SELECT * FROM projects ORDER BY id");
    let e = d.err(
        update("projects", "id=gt.0", r#"{"name":"x"}"#)
            .prefer(&["handling=strict", "max-affected=1"]),
    );
    assert_eq!((e.status, e.code.as_str()), (400, "PGRST124"));
    assert_eq!(e.details, Some(json!("The query affects 3 rows")));
    // lenient: ignored, and max-affected is not reported.
    let o = d.ok(update("projects", "id=gt.2", r#"{"name":"IOS"}"#)
        .prefer(&["handling=lenient", "max-affected=1"]));
    assert_eq!(
        o.preference_applied.header_value().as_deref(),
        Some("handling=lenient")
    );
    let e = d.err(delete("projects", "id=gt.0").media(MediaType::Singular { strip_nulls: false }));
    assert_eq!((e.status, e.code.as_str()), (406, "PGRST116"));
    assert_eq!(d.rows("SELECT * FROM projects ORDER BY id"), before);
    // tx=rollback answers as if written, then nothing stays.
    let o = d.ok(insert("clients", "", r#"{"id":9,"name":"Gone"}"#).prefer(&["tx=rollback", REP]));
    assert_eq!((o.status, o.commit), (201, false));
    assert_eq!(body(&o), json!([{"id":9,"name":"Gone"}]));
    assert_eq!(
        o.preference_applied.header_value().as_deref(),
        Some("return=representation, tx=rollback")
    );
    assert_eq!(
        d.rows("SELECT count(*) AS n FROM clients WHERE id = 9"),
        json!([{"n":0}])
    );
    // Singular representation.
    let o = d.ok(insert("clients", "", r#"{"id":9,"name":"One"}"#)
        .prefer(&[REP])
        .media(MediaType::Singular { strip_nulls: false }));
    assert_eq!(body(&o), json!({"id":9,"name":"One"}));
}

#[test]
fn location_header() {
    let d = db();
    let o = d
        .ok(insert("kv", "", r#"{"k":"a b/c","scope":"é","v":"1"}"#)
            .prefer(&["return=headers-only"]));
    assert_eq!(
        o.location.as_deref(),
        Some("/kv?k=eq.a%20b%2Fc&scope=eq.%C3%A9")
    );
    let o = d.ok(insert(
        "clients",
        "",
        r#"[{"id":30,"name":"a"},{"id":31,"name":"b"}]"#,
    )
    .prefer(&["return=headers-only"]));
    assert_eq!(o.location, None, "only for one row");
    let o = d.ok(insert("clients", "", r#"{"name":"auto"}"#).prefer(&["return=headers-only"]));
    assert_eq!(o.location.as_deref(), Some("/clients?id=eq.32"));
}

#[test]
fn views_virtual_tables_and_odd_names() {
    let d = db();
    let o = d.ok(insert("v", "select=id,name", r#"{"id":2,"name":"two"}"#).prefer(&[REP]));
    assert_eq!(body(&o), json!([{"id":2,"name":"two"}]));
    let o = d.ok(update("v", "id=eq.2", r#"{"name":"deux"}"#).prefer(&[REP]));
    assert_eq!(body(&o), json!([{"id":2,"name":"deux","extra":7}]));
    let o = d.ok(delete("v", "id=eq.1"));
    assert_eq!(o.affected, 1);
    assert_eq!(
        d.rows("SELECT id, name FROM base"),
        json!([{"id":2,"name":"deux"}])
    );

    let o = d.ok(insert(
        "docs",
        "",
        r#"[{"title":"a","body":"b"},{"title":"c","body":"d"}]"#,
    ));
    assert_eq!((o.status, o.affected), (201, 2));
    let e = d.err(insert("docs", "", r#"{"title":"a"}"#).prefer(&[REP]));
    assert_eq!(e.code.as_str(), "PGRST127");

    // Names with quotes and dots; a column named rowid (the key falls back to _rowid_).
    let o =
        d.ok(insert("we\"ird", "", r#"{"a.b":"dot","x\"y":"quote","rowid":"r"}"#).prefer(&[REP]));
    assert_eq!(body(&o), json!([{"a.b":"dot","x\"y":"quote","rowid":"r"}]));
}

#[test]
fn defaults_only_objects() {
    let d = db();
    let o = d.ok(insert("base", "select=extra", "[{},{}]").prefer(&[REP]));
    assert_eq!(
        (o.status, body(&o)),
        (201, json!([{"extra":7},{"extra":7}]))
    );
}

#[test]
fn sql_text_does_not_depend_on_row_count() {
    let d = db();
    let cache = SchemaCache::load(&d.conn, &Exposure::All).unwrap();
    let plan = |b: &str| {
        let w = WriteRequest {
            mutation: Mutation::Insert,
            relation: "clients".into(),
            query: QueryParams::default(),
            media: JSON,
            prefer: Preferences::default(),
            payload: Some(parse_payload(b.as_bytes(), BodyFormat::Json, false).unwrap()),
        };
        plan_write(&cache, &w, &WriteOptions::default())
            .unwrap()
            .statement
            .unwrap()
    };
    let one = plan(r#"{"id":1,"name":"a"}"#);
    let many = plan(&format!(
        "[{}]",
        (0..500)
            .map(|i| format!(r#"{{"id":{i},"name":"n{i}"}}"#))
            .collect::<Vec<_>>()
            .join(",")
    ));
    assert_eq!(one.text, many.text);
    assert_eq!(one.params, many.params);
    assert!(!one.text.contains("n1"), "values are never in the SQL");
}

#[test]
fn csv_bodies_insert_patch_and_put_by_position() {
    let d = db();
    // Values by position, whatever the header's order; `NULL` is null.
    let o = d.ok(insert(
        "projects",
        "select=id,name,client_id,active",
        "name,id,client_id\nA,10,1\nB,11,NULL",
    )
    .csv()
    .prefer(&[REP]));
    assert_eq!(
        body(&o),
        json!([{"id":10,"name":"A","client_id":1,"active":true},{"id":11,"name":"B","client_id":null,"active":true}])
    );
    // `columns` picks columns; one the header lacks is missing: its default with
    // missing=default, else null.
    let o = d.ok(insert(
        "projects",
        "columns=id,name,created&select=id,created",
        "id,name,nope\n12,C,x",
    )
    .csv()
    .prefer(&[REP, "missing=default"]));
    assert_eq!(body(&o), json!([{"id":12,"created":"now"}]));
    let o = d.ok(insert(
        "projects",
        "columns=id,name,created&select=id,created",
        "name,id\nD,13",
    )
    .csv()
    .prefer(&[REP]));
    assert_eq!(body(&o), json!([{"id":13,"created":null}]));
    // A repeated header name takes its last value, as a repeated JSON key does.
    let o = d.ok(
        insert("clients", "select=id,name", "id,name,name\n7,first,last")
            .csv()
            .prefer(&[REP]),
    );
    assert_eq!(body(&o), json!([{"id":7,"name":"last"}]));
    // PATCH takes the first row; PUT the row whose key matches the URL.
    let o = d.ok(
        update("projects", "id=eq.10&select=id,name", "name\nRenamed")
            .csv()
            .prefer(&[REP]),
    );
    assert_eq!(body(&o), json!([{"id":10,"name":"Renamed"}]));
    let o = d.ok(
        upsert("clients", "id=eq.8&select=id,name", "id,name\n9,no\n8,yes")
            .csv()
            .prefer(&[REP]),
    );
    assert_eq!((o.status, body(&o)), (201, json!([{"id":8,"name":"yes"}])));
    let e = d.err(upsert("clients", "id=eq.5", "id,name\n9,no").csv());
    assert_eq!((e.status, e.code.as_str()), (400, "PGRST115"));
}

#[test]
fn repeated_fields_are_read_once_and_shown_each_time() {
    let d = db();
    // Representations: re-read by key (tables), returned (views), read before a DELETE.
    let o = d.ok(insert(
        "clients",
        "select=name,id,n:name,name",
        r#"{"id":5,"name":"HP"}"#,
    )
    .prefer(&[REP]));
    assert_eq!(body(&o), json!([{"name":"HP","id":5,"n":"HP"}]));
    let o = d.ok(insert(
        "clients",
        "select=name,id,n:name&columns=id,name",
        r#"{"id":6,"name":"HP2"}"#,
    )
    .prefer(&[REP])
    .media(MediaType::Csv));
    assert_eq!(
        String::from_utf8(o.body.unwrap()).unwrap(),
        "name,id,n\nHP2,6,HP2"
    );
    let o = d.ok(insert(
        "v",
        "select=id,name,id,x:name",
        r#"{"id":3,"name":"three"}"#,
    )
    .prefer(&[REP]));
    assert_eq!(body(&o), json!([{"id":3,"name":"three","x":"three"}]));
    let o = d.ok(delete(
        "clients",
        "id=gte.5&select=id,name,i:id,n:name&order=id.desc",
    )
    .prefer(&[REP]));
    assert_eq!(
        body(&o),
        json!([{"id":6,"name":"HP2","i":6,"n":"HP2"},{"id":5,"name":"HP","i":5,"n":"HP"}])
    );
    assert_eq!(
        d.rows("SELECT count(*) AS n FROM clients"),
        json!([{"n":2}])
    );
}

/// Replaces `pgrst_budget()` on `d`'s connection: it counts its calls and fails once `allow`
/// calls were made (as the writer's does at a request's time budget).
fn budget(d: &Db, allow: usize) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    dialect::register_budget(&d.conn, move || c.fetch_add(1, Ordering::Relaxed) < allow).unwrap();
    calls
}

/// Every row of every table of [`db`] (but `docs`).
const EVERY_TABLE: [&str; 5] = [
    "SELECT * FROM clients ORDER BY id",
    "SELECT * FROM projects ORDER BY id",
    "SELECT * FROM kv",
    "SELECT * FROM no_pk ORDER BY rowid",
    "SELECT * FROM base ORDER BY id",
];

#[test]
fn every_write_shape_stops_at_a_spent_budget_and_keeps_nothing() {
    let d = db();
    let before = EVERY_TABLE.map(|q| d.rows(q));
    budget(&d, 0);
    let shapes: Vec<(&str, Req<'_>)> = vec![
        (
            "insert one",
            insert("clients", "", r#"{"id":9,"name":"x"}"#),
        ),
        (
            "insert many, representation",
            insert(
                "clients",
                "",
                r#"[{"id":9,"name":"x"},{"id":10,"name":"y"}]"#,
            )
            .prefer(&[REP]),
        ),
        ("objects without keys", insert("base", "", "[{},{},{}]")),
        ("one object without keys", insert("base", "", "{}")),
        (
            "upsert, merge",
            insert("clients", "", r#"{"id":1,"name":"z"}"#)
                .prefer(&["resolution=merge-duplicates"]),
        ),
        (
            "upsert, ignore",
            insert("kv", "", r#"{"k":"b","scope":"x","v":"2"}"#)
                .prefer(&["resolution=ignore-duplicates"]),
        ),
        (
            "put",
            upsert("clients", "id=eq.7", r#"{"id":7,"name":"p"}"#),
        ),
        (
            "patch",
            update("projects", "client_id=eq.1", r#"{"name":"n"}"#),
        ),
        (
            "patch, representation",
            update("no_pk", "a=not.is.null", r#"{"b":"1"}"#).prefer(&[REP]),
        ),
        ("delete", delete("projects", "id=gt.0")),
        (
            "delete, representation",
            delete("no_pk", "a=not.is.null").prefer(&[REP]),
        ),
        (
            "view (trigger)",
            insert("v", "", r#"{"id":5,"name":"five"}"#),
        ),
        (
            "view update (trigger)",
            update("v", "id=eq.1", r#"{"name":"uno"}"#),
        ),
    ];
    for (what, r) in shapes {
        assert!(d.run(r).is_err(), "{what}: ran past a spent budget");
    }
    let after = EVERY_TABLE.map(|q| d.rows(q));
    assert_eq!(before, after);
}

#[test]
fn a_delete_checks_the_budget_while_it_reads_its_representation_too() {
    let d = db();
    let calls = budget(&d, usize::MAX);
    // Three rows scanned twice: once to read the representation, once to delete them.
    let o = d.ok(delete("no_pk", "a=not.is.null").prefer(&[REP]));
    assert_eq!(body(&o), json!([{"a":"1","b":"0"},{"a":"2","b":"0"}]));
    let n = calls.load(std::sync::atomic::Ordering::Relaxed);
    assert!(n >= 6, "{n} budget checks for two scans of three rows");
}

/// SQLite's plan of `sql` (`EXPLAIN QUERY PLAN`), one detail line per step; `?1` is `first`.
fn query_plan(conn: &Connection, sql: &dialect::Sql, first: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {}", sql.text))
        .unwrap();
    let offset = if sql.first_reserved {
        stmt.raw_bind_parameter(1, first).unwrap();
        2
    } else {
        1
    };
    for (i, v) in sql.params.iter().enumerate() {
        stmt.raw_bind_parameter(i + offset, v).unwrap();
    }
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(r) = rows.next().unwrap() {
        out.push(r.get::<_, String>(3).unwrap());
    }
    out
}

#[test]
fn the_budget_check_leaves_write_statements_on_their_indexes() {
    let d = db();
    let cache = SchemaCache::load(&d.conn, &Exposure::All).unwrap();
    for (mutation, rel, query, body, representation) in [
        (
            Mutation::Update,
            "clients",
            "id=eq.1",
            Some(r#"{"name":"n"}"#),
            false,
        ),
        (
            Mutation::Update,
            "clients",
            "name=eq.Apple",
            Some(r#"{"name":"n"}"#),
            false,
        ),
        (
            Mutation::Delete,
            "clients",
            "or=(id.eq.1,name.eq.Apple)",
            None,
            false,
        ),
        (Mutation::Delete, "kv", "k=eq.a&scope=eq.x", None, false),
        (Mutation::Delete, "projects", "id=in.(1,2)", None, true),
    ] {
        let query = QueryParams::parse(query).unwrap();
        let payload = body.map(|b| parse_payload(b.as_bytes(), BodyFormat::Json, false).unwrap());
        let w = WriteRequest {
            mutation,
            relation: rel.into(),
            query,
            media: JSON,
            prefer: Preferences::parse(representation.then_some(REP)).unwrap(),
            payload,
        };
        let plan = plan_write(
            &cache,
            &w,
            &WriteOptions {
                safe_update: true,
                ..WriteOptions::default()
            },
        )
        .unwrap();
        let body = w.payload.as_ref().map_or("[]", |p| p.json.as_str());
        let statements = plan.statement.iter().chain(plan.pre_read.iter());
        for sql in statements {
            assert!(
                sql.text.contains("WHERE pgrst_budget() AND "),
                "{}",
                sql.text
            );
            let steps = query_plan(&d.conn, sql, body);
            // The same plan as without the check, and one that searches an index.
            let without = dialect::Sql {
                text: sql.text.replace("WHERE pgrst_budget() AND ", "WHERE "),
                ..sql.clone()
            };
            assert_eq!(steps, query_plan(&d.conn, &without, body), "{}", sql.text);
            assert!(
                steps.iter().any(|s| s.starts_with("SEARCH ")),
                "{}: {steps:?}",
                sql.text
            );
        }
    }
}

#[test]
fn representations_embed_resources() {
    let d = db();
    // POST: the inserted rows re-read by key in the write's transaction, embeds included.
    let o = d.ok(insert(
        "projects",
        "select=name,client:clients(name)",
        r#"[{"id":10,"name":"Mac","client_id":2},{"id":11,"name":"Lone","client_id":null}]"#,
    )
    .prefer(&[REP]));
    assert_eq!(
        body(&o),
        json!([
            {"name":"Mac","client":{"name":"Apple"}},
            {"name":"Lone","client":null},
        ])
    );
    // The one-to-many side, ordered and limited inside the embed; `!inner` does not change
    // which rows were written.
    let o = d.ok(insert(
        "clients",
        "select=name,projects(name)&projects.order=id.desc&projects.limit=1",
        r#"{"id":3,"name":"IBM"}"#,
    )
    .prefer(&[REP]));
    assert_eq!(body(&o), json!([{"name":"IBM","projects":[]}]));
    // PATCH and DELETE.
    let o = d.ok(update(
        "projects",
        "id=eq.11&select=id,...clients(client:name)",
        r#"{"client_id":3}"#,
    )
    .prefer(&[REP]));
    assert_eq!(body(&o), json!([{"id":11,"client":"IBM"}]));
    let o = d.ok(delete("projects", "id=eq.10&select=name,clients(name)").prefer(&[REP]));
    assert_eq!(body(&o), json!([{"name":"Mac","clients":{"name":"Apple"}}]));
    // A view without a key cannot follow a relationship from what RETURNING gives.
    d.conn
        .execute_batch(
            "CREATE VIEW pv AS SELECT id, name, client_id FROM projects;
             CREATE TRIGGER pv_ins INSTEAD OF INSERT ON pv BEGIN
               INSERT INTO projects (id, name, client_id) VALUES (NEW.id, NEW.name, NEW.client_id);
             END;",
        )
        .unwrap();
    let e = d.err(
        insert(
            "pv",
            "select=id,clients(name)",
            r#"{"id":12,"name":"x","client_id":1}"#,
        )
        .prefer(&[REP]),
    );
    assert_eq!((e.status, e.code.as_str()), (400, "PGRST127"), "{e}");
    assert_eq!(
        d.rows("SELECT count(*) AS n FROM projects WHERE id = 12"),
        json!([{"n":0}])
    );
}
