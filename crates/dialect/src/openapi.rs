//! The OpenAPI 3.1 document of the API (served at `GET /`), generated from the schema cache.
//!
//! One path per exposed table and view (GET; POST, PATCH and DELETE where the relation takes
//! them; PUT where it also has a primary key, as `OPTIONS` answers), PostgREST's query
//! parameters (one string filter per column, `select`, `order`, `limit`, `offset`, `or`,
//! `and`, `on_conflict`, `columns`), the `Prefer` values each method understands, `Range`,
//! the row schemas and the error shape. Columns map from their declared types: `BOOL…` to
//! `boolean`, `JSON…` to any JSON value, INTEGER affinity to `integer`, REAL and NUMERIC to
//! `number`, TEXT to `string`, `DATE`/`TIME…` names to `string` (with a format) or `number`, a declared
//! `BLOB` to a `string` (the `\x…` hex text rows render it as), no declared type to any
//! value; a nullable column is `type: [x, "null"]`. Primary and foreign keys are noted in
//! the column's description as PostgREST notes them (`<pk/>`, `<fk table=… column=…/>`).
//!
//! Only what the caller may see is described: the schema cache already leaves out what the
//! allow-list hides, and [`Visibility`] is where per-role privileges plug in. Functions are
//! described from [`FunctionDoc`]s, which whoever serves `/rpc/<name>` supplies.
//!
//! Component names are the relation's and column's names with every byte outside
//! `[A-Za-z0-9_]` written as `-XX` (hex): OpenAPI allows only `[A-Za-z0-9._-]` there, and the
//! escape keeps distinct names distinct. Paths are percent-encoded the same way URLs are.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::headers::{
    Choice, CountMethod, Durability, Handling, Missing, Resolution, ReturnPref, negotiate_with,
};
use crate::schema_cache::{
    Affinity, Column, RelKind, Relation, SchemaCache, ValueKind, is_temporal,
};

/// Query keys that are PostgREST's own parameters: a column of the same name gets no filter
/// parameter (a query key cannot be both, and OpenAPI forbids two parameters of one name).
const RESERVED: &[&str] = &[
    "select",
    "order",
    "limit",
    "offset",
    "or",
    "and",
    "not.or",
    "not.and",
    "on_conflict",
    "columns",
];

/// A function's parameter, as `/rpc/<name>` binds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionParam {
    pub name: String,
    /// The declared SQLite type (mapped like a column's).
    pub decl_type: String,
    /// False when the function has a default for it.
    pub required: bool,
}

/// A column of a function's result (one row or a set of rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionColumn {
    pub name: String,
    /// The declared SQLite type (mapped like a table column's).
    pub decl_type: String,
}

/// What a function returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionReturns {
    /// One bare JSON value of this declared type.
    Scalar(String),
    /// One object with these columns.
    One(Vec<FunctionColumn>),
    /// An array of objects with these columns (filters, `order`, `limit` apply).
    Set(Vec<FunctionColumn>),
    /// Nothing: 204 without a body.
    Void,
}

/// A function served at `/rpc/<name>`, as the document describes it. A function that writes
/// is POST only; the others are GET (arguments in the query string) and POST (a JSON object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionDoc {
    pub name: String,
    pub description: Option<String>,
    pub params: Vec<FunctionParam>,
    pub returns: FunctionReturns,
    pub writes: bool,
}

/// A method on a relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    Insert,
    Update,
    Upsert,
    Delete,
}

/// What the caller may see. The schema cache already holds only what the allow-list exposes;
/// a role's privileges narrow it further here.
pub trait Visibility {
    /// Whether the relation appears at all.
    fn sees(&self, _relation: &Relation) -> bool {
        true
    }
    /// Whether the operation on a visible relation appears.
    fn may(&self, _relation: &Relation, _op: Operation) -> bool {
        true
    }
    /// Whether a column of a visible relation appears for the operation: in the rows read and
    /// the filters ([`Operation::Read`]), in the bodies of inserts and updates.
    fn column(&self, _relation: &Relation, _column: &str, _op: Operation) -> bool {
        true
    }
}

/// Everything the schema cache exposes (the allow-list is the only restriction today).
pub struct Exposed;

impl Visibility for Exposed {}

/// What the document says besides the schema.
pub struct DocOptions<'a> {
    pub title: &'a str,
    pub version: &'a str,
    /// Requests need a bearer token (JWT authentication is on).
    pub bearer_auth: bool,
    /// The functions under `/rpc/`.
    pub functions: &'a [FunctionDoc],
    pub visibility: &'a dyn Visibility,
}

/// The OpenAPI 3.1 document for `cache` under `opts`.
pub fn document(cache: &SchemaCache, opts: &DocOptions<'_>) -> Value {
    let mut relations: Vec<&Relation> = cache
        .relations()
        .map(|r| r.as_ref())
        .filter(|r| opts.visibility.sees(r))
        .collect();
    relations.sort_by(|a, b| a.name.cmp(&b.name));
    let visible: HashSet<&str> = relations.iter().map(|r| r.name.as_str()).collect();

    let mut paths = Map::new();
    paths.insert("/".into(), root_path());
    let mut schemas = Map::new();
    let mut parameters = common_parameters();
    for rel in &relations {
        let vis = opts.visibility;
        schemas.insert(component(&rel.name), row_schema(rel, &visible, vis));
        schemas.insert(
            format!("{}.insert", component(&rel.name)),
            write_schema(rel, &visible, true, vis),
        );
        schemas.insert(
            format!("{}.update", component(&rel.name)),
            write_schema(rel, &visible, false, vis),
        );
        for c in &rel.columns {
            if !RESERVED.contains(&c.name.as_str()) && vis.column(rel, &c.name, Operation::Read) {
                parameters.insert(filter_ref_name(rel, c), filter_parameter(c));
            }
        }
        paths.insert(
            relation_path(&rel.name),
            relation_item(rel, opts.visibility),
        );
    }
    for f in opts.functions {
        paths.insert(
            format!("/rpc/{}", encode_path(&f.name)),
            function_item(f, &mut parameters),
        );
    }
    // Table names are escaped into `[A-Za-z0-9_-]` (plus `.insert`/`.update`), so no table
    // takes this name.
    schemas.insert("pgrst.Error".into(), error_schema());

    let mut components = json!({
        "schemas": schemas,
        "parameters": parameters,
        "responses": {
            "Error": {
                "description": "A PostgREST-shaped error.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/pgrst.Error"}}},
            },
        },
    });
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": opts.title,
            "version": opts.version,
            "description": "A PostgREST-compatible REST API over a SQLite database.",
        },
        "paths": paths,
    });
    if opts.bearer_auth {
        components["securitySchemes"] = json!({
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        });
        doc["security"] = json!([{"bearerAuth": []}]);
    }
    doc["components"] = components;
    doc
}

/// The `Content-Type` of the document.
pub const CONTENT_TYPE: &str = "application/openapi+json; charset=utf-8";

/// Negotiates `Accept` for `GET /`: the document is `application/openapi+json`, also given
/// for `application/json` and wildcards (absent means `*/*`); anything else is 406 PGRST107.
pub fn negotiate_root(accept: Option<&str>) -> Result<(), ApiError> {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(());
    };
    negotiate_with(accept, |mt, _| {
        matches!(
            mt,
            "application/openapi+json" | "application/json" | "application/*" | "*/*"
        )
        .then_some(())
    })
}

/// A name as an OpenAPI component key: bytes outside `[A-Za-z0-9_]` as `-XX`.
fn component(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("-{b:02X}"));
        }
    }
    out
}

/// A path segment percent-encoded (everything but RFC 3986's unreserved characters).
fn encode_path(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn relation_path(name: &str) -> String {
    format!("/{}", encode_path(name))
}

fn filter_ref_name(rel: &Relation, c: &Column) -> String {
    format!("rowFilter.{}.{}", component(&rel.name), component(&c.name))
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn param_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/parameters/{name}")})
}

/// The JSON Schema of a value of declared type `decl` (without nullability).
fn type_schema(decl: &str) -> Map<String, Value> {
    let mut s = Map::new();
    let up = decl.to_ascii_uppercase();
    let mut set = |ty: &str, format: Option<&str>| {
        s.insert("type".into(), json!(ty));
        if let Some(f) = format {
            s.insert("format".into(), json!(f));
        }
    };
    match ValueKind::from_decl_type(decl) {
        ValueKind::Bool => set("boolean", None),
        // Any JSON value: no type.
        ValueKind::Json => {}
        ValueKind::Plain => match Affinity::from_decl_type(decl) {
            Affinity::Integer => set("integer", Some("int64")),
            Affinity::Real => set("number", Some("double")),
            Affinity::Text => set("string", None),
            // A declared BLOB renders as `\x` and lowercase hex; no declared type holds
            // anything.
            Affinity::Blob if up.contains("BLOB") => set("string", Some("blob")),
            Affinity::Blob => {}
            // SQLite keeps dates and times as ISO 8601 text or as numbers (unix time, Julian
            // days), and writes take both; their names have NUMERIC affinity. The format
            // describes the text form.
            Affinity::Numeric if is_temporal(decl) => {
                let format = if up.contains("DATETIME") || up.contains("TIMESTAMP") {
                    "datetime"
                } else if up.contains("DATE") {
                    "date"
                } else {
                    "time"
                };
                set("string", Some(format));
                s.insert("type".into(), json!(["string", "number"]));
            }
            Affinity::Numeric => set("number", None),
        },
    }
    s
}

/// `schema` also admitting null (`type: [x, "null"]`; a schema without a type admits it
/// already).
fn nullable(mut schema: Map<String, Value>) -> Map<String, Value> {
    match schema.get_mut("type") {
        Some(Value::String(t)) => {
            let t = std::mem::take(t);
            schema.insert("type".into(), json!([t, "null"]));
        }
        Some(Value::Array(types)) => types.push(json!("null")),
        _ => {}
    }
    schema
}

/// A column's schema: its type, nullability and key notes (a foreign key only when its
/// target is `visible`).
fn column_schema(rel: &Relation, c: &Column, visible: &HashSet<&str>) -> Value {
    let mut s = type_schema(&c.decl_type);
    // An INTEGER PRIMARY KEY (the rowid) is never null, whatever `notnull` says.
    let rowid_alias = c.pk > 0
        && rel.primary_key.len() == 1
        && c.decl_type.eq_ignore_ascii_case("INTEGER")
        && !rel.without_rowid;
    if c.nullable && !rowid_alias {
        s = nullable(s);
    }
    let mut notes = Vec::new();
    if c.pk > 0 {
        notes.push("This is a Primary Key.<pk/>".to_string());
    }
    for fk in rel
        .foreign_keys
        .iter()
        .filter(|fk| visible.contains(fk.target.as_str()))
    {
        if let Some(i) = fk.columns.iter().position(|x| *x == c.name) {
            let target_col = fk.target_columns.get(i).map_or("", String::as_str);
            notes.push(format!(
                "This is a Foreign Key to `{}.{}`.<fk table='{}' column='{}'/>",
                fk.target, target_col, fk.target, target_col
            ));
        }
    }
    let mut description = vec![format!("SQLite type: {}", display_type(&c.decl_type))];
    if !notes.is_empty() {
        description.push(format!("Note:\n{}", notes.join("\n")));
    }
    s.insert("description".into(), json!(description.join("\n\n")));
    Value::Object(s)
}

fn display_type(decl: &str) -> &str {
    if decl.trim().is_empty() {
        "(none)"
    } else {
        decl
    }
}

/// The row as reads and representations return it. Nothing is required (`select` picks
/// columns) and other keys may appear (embeds, aliases, JSON paths).
fn row_schema(rel: &Relation, visible: &HashSet<&str>, vis: &dyn Visibility) -> Value {
    let props: Map<String, Value> = rel
        .columns
        .iter()
        .filter(|c| vis.column(rel, &c.name, Operation::Read))
        .map(|c| (c.name.clone(), column_schema(rel, c, visible)))
        .collect();
    let kind = match rel.kind {
        RelKind::Table => "table",
        RelKind::View => "view",
        RelKind::Virtual => "virtual table",
    };
    json!({
        "type": "object",
        "description": format!("A row of the {kind} `{}`.", rel.name),
        "properties": props,
    })
}

/// The row as a write's body sends it: only the relation's columns, and for an insert
/// (POST, PUT) every NOT NULL column without a default.
fn write_schema(
    rel: &Relation,
    visible: &HashSet<&str>,
    insert: bool,
    vis: &dyn Visibility,
) -> Value {
    let op = if insert {
        Operation::Insert
    } else {
        Operation::Update
    };
    let shown = |c: &&Column| vis.column(rel, &c.name, op);
    let props: Map<String, Value> = rel
        .columns
        .iter()
        .filter(shown)
        .map(|c| (c.name.clone(), column_schema(rel, c, visible)))
        .collect();
    let required: Vec<&str> = rel
        .columns
        .iter()
        .filter(shown)
        .filter(|c| insert && !c.nullable && c.default.is_none())
        .map(|c| c.name.as_str())
        .collect();
    json!({
        "type": "object",
        "description": format!(
            "A row of `{}` to {}.",
            rel.name,
            if insert { "insert" } else { "update" }
        ),
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "description": "PostgREST's error shape: a PGRST or SQLSTATE code and words for people.",
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "details": {"description": "More about the error: text, a list, or null."},
            "hint": {"type": ["string", "null"]},
        },
        "required": ["code", "message", "details", "hint"],
    })
}

/// The parameters every relation shares.
fn common_parameters() -> Map<String, Value> {
    let q = |name: &str, description: &str| {
        json!({"name": name, "in": "query", "required": false,
               "description": description, "schema": {"type": "string"}})
    };
    let mut p = Map::new();
    p.insert(
        "select".into(),
        q(
            "select",
            "The columns and embedded resources to return, e.g. `id,name,client(name)`.",
        ),
    );
    p.insert(
        "order".into(),
        q("order", "The order of rows, e.g. `name.desc.nullslast,id`."),
    );
    p.insert(
        "or".into(),
        q(
            "or",
            "Filters joined with OR, e.g. `(id.eq.1,name.like.A*)`.",
        ),
    );
    p.insert(
        "and".into(),
        q("and", "Filters joined with AND, e.g. `(id.gt.1,id.lt.9)`."),
    );
    p.insert(
        "on_conflict".into(),
        q(
            "on_conflict",
            "The unique columns an upsert (`Prefer: resolution=…`) matches on.",
        ),
    );
    p.insert(
        "columns".into(),
        q(
            "columns",
            "The body's keys to write, e.g. `name,client_id`; others are ignored.",
        ),
    );
    for (name, description) in [
        ("limit", "At most this many rows."),
        ("offset", "Skip this many rows."),
    ] {
        p.insert(
            name.into(),
            json!({"name": name, "in": "query", "required": false, "description": description,
                   "schema": {"type": "integer", "minimum": 0}}),
        );
    }
    p.insert(
        "range".into(),
        json!({"name": "Range", "in": "header", "required": false,
               "description": "Rows by position, `first-[last]` (0-based, inclusive).",
               "schema": {"type": "string", "pattern": "^[0-9]+-[0-9]*$"}}),
    );
    p.insert(
        "rangeUnit".into(),
        json!({"name": "Range-Unit", "in": "header", "required": false,
               "schema": {"type": "string", "default": "items"}}),
    );
    for (name, values) in [
        (
            "preferGet",
            [tokens::<CountMethod>(), tokens::<Handling>()].concat(),
        ),
        (
            "preferPost",
            [
                tokens::<ReturnPref>(),
                tokens::<Resolution>(),
                tokens::<Missing>(),
                tokens::<CountMethod>(),
                tokens::<Handling>(),
                tokens::<Durability>(),
            ]
            .concat(),
        ),
        (
            "preferWrite",
            [
                tokens::<ReturnPref>(),
                tokens::<CountMethod>(),
                tokens::<Handling>(),
                tokens::<Durability>(),
            ]
            .concat(),
        ),
        (
            "preferRpc",
            [tokens::<CountMethod>(), tokens::<Handling>()].concat(),
        ),
    ] {
        p.insert(
            name.into(),
            json!({"name": "Prefer", "in": "header", "required": false,
                   "description": "One preference; several may be sent separated by commas.",
                   "schema": {"type": "string", "enum": values}}),
        );
    }
    p
}

/// Every `key=value` of a preference.
fn tokens<C: Choice>() -> Vec<String> {
    C::VALUES.iter().map(|&(_, v)| v.token()).collect()
}

fn filter_parameter(c: &Column) -> Value {
    json!({
        "name": c.name,
        "in": "query",
        "required": false,
        "description": format!(
            "A filter on `{}`: an operator and a value, e.g. `eq.1`, `in.(1,2)`, `is.null`, `not.like.A*`.",
            c.name
        ),
        "schema": {"type": "string"},
    })
}

fn root_path() -> Value {
    json!({
        "get": {
            "tags": ["Introspection"],
            "summary": "This OpenAPI document.",
            "responses": {
                "200": {"description": "OK", "content": {
                    "application/openapi+json": {"schema": {"type": "object"}},
                    "application/json": {"schema": {"type": "object"}},
                }},
                "default": {"$ref": "#/components/responses/Error"},
            },
        },
    })
}

fn rows_content(name: &str) -> Value {
    json!({
        "application/json": {"schema": {"type": "array", "items": schema_ref(name)}},
        "application/vnd.pgrst.object+json": {"schema": schema_ref(name)},
        "text/csv": {"schema": {"type": "string"}},
    })
}

fn relation_item(rel: &Relation, vis: &dyn Visibility) -> Value {
    let name = component(&rel.name);
    let filters: Vec<Value> = rel
        .columns
        .iter()
        .filter(|c| {
            !RESERVED.contains(&c.name.as_str()) && vis.column(rel, &c.name, Operation::Read)
        })
        .map(|c| param_ref(&filter_ref_name(rel, c)))
        .collect();
    let with = |extra: &[&str]| -> Vec<Value> {
        filters
            .iter()
            .cloned()
            .chain(extra.iter().map(|p| param_ref(p)))
            .collect()
    };
    let tags = json!([rel.name]);
    let error = json!({"$ref": "#/components/responses/Error"});
    let rows = rows_content(&name);
    let write_body = |array: bool| {
        let one = schema_ref(&format!("{name}.insert"));
        let schema = if array {
            json!({"oneOf": [one, {"type": "array", "items": one}]})
        } else {
            one
        };
        json!({"required": true, "content": {"application/json": {"schema": schema}}})
    };
    let changed = |what: &str| {
        json!({
            "200": {"description": format!("{what} (`Prefer: return=representation`)."), "content": rows},
            "204": {"description": format!("{what}.")},
            "default": error,
        })
    };
    let mut item = Map::new();
    if vis.may(rel, Operation::Read) {
        item.insert(
            "get".into(),
            json!({
                "tags": tags,
                "parameters": with(&["select", "order", "range", "rangeUnit", "offset", "limit", "or", "and", "preferGet"]),
                "responses": {
                    "200": {"description": "The rows.", "content": rows},
                    "206": {"description": "Part of the rows (a range or a limit).", "content": rows},
                    "default": error,
                },
            }),
        );
    }
    if rel.insertable && vis.may(rel, Operation::Insert) {
        item.insert(
            "post".into(),
            json!({
                "tags": tags,
                "parameters": [param_ref("select"), param_ref("columns"), param_ref("on_conflict"), param_ref("preferPost")],
                "requestBody": write_body(true),
                // No content is documented: without `return=representation` the body is
                // empty, and OpenAPI cannot say that a body is optional. An upsert that
                // inserted nothing (every row existed, or none was sent) is 200.
                "responses": {
                    "201": {"description": "Created. With `Prefer: return=representation`, the rows (as GET returns them)."},
                    "200": {"description": "An upsert (`Prefer: resolution=…`) that inserted no row."},
                    "default": error,
                },
            }),
        );
    }
    if rel.updatable && vis.may(rel, Operation::Update) {
        item.insert(
            "patch".into(),
            json!({
                "tags": tags,
                "parameters": with(&["select", "columns", "order", "limit", "or", "and", "preferWrite"]),
                "requestBody": {"required": true, "content": {"application/json": {
                    "schema": schema_ref(&format!("{name}.update")),
                }}},
                "responses": changed("Updated"),
            }),
        );
    }
    if rel.insertable
        && rel.updatable
        && !rel.primary_key.is_empty()
        && vis.may(rel, Operation::Upsert)
    {
        item.insert(
            "put".into(),
            json!({
                "tags": tags,
                "description": "Inserts or replaces the one row the primary key's `eq` filters name.",
                "parameters": with(&["select", "columns", "preferWrite"]),
                "requestBody": write_body(false),
                "responses": changed("Upserted"),
            }),
        );
    }
    if rel.deletable && vis.may(rel, Operation::Delete) {
        item.insert(
            "delete".into(),
            json!({
                "tags": tags,
                "parameters": with(&["select", "order", "limit", "or", "and", "preferWrite"]),
                "responses": changed("Deleted"),
            }),
        );
    }
    Value::Object(item)
}

fn function_item(f: &FunctionDoc, parameters: &mut Map<String, Value>) -> Value {
    let columns = |cols: &[FunctionColumn]| -> Value {
        let props: Map<String, Value> = cols
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    Value::Object(nullable(type_schema(&c.decl_type))),
                )
            })
            .collect();
        json!({"type": "object", "properties": props})
    };
    let (result, set) = match &f.returns {
        FunctionReturns::Scalar(t) => (Some(Value::Object(nullable(type_schema(t)))), false),
        FunctionReturns::One(cols) => (Some(columns(cols)), false),
        FunctionReturns::Set(cols) => {
            (Some(json!({"type": "array", "items": columns(cols)})), true)
        }
        FunctionReturns::Void => (None, false),
    };
    let responses = match result {
        Some(result) => json!({
            "200": {"description": "The function's result.", "content": {"application/json": {"schema": result}}},
            "default": {"$ref": "#/components/responses/Error"},
        }),
        None => json!({
            "204": {"description": "Done; the function returns nothing."},
            "default": {"$ref": "#/components/responses/Error"},
        }),
    };
    let tags = json!(["(rpc) ".to_string() + &f.name]);
    let description = f.description.clone().unwrap_or_default();
    let body_props: Map<String, Value> = f
        .params
        .iter()
        .map(|p| (p.name.clone(), Value::Object(type_schema(&p.decl_type))))
        .collect();
    let body_required: Vec<&str> = f
        .params
        .iter()
        .filter(|p| p.required)
        .map(|p| p.name.as_str())
        .collect();
    let shaping: Vec<Value> = if set {
        ["select", "order", "limit", "offset", "preferRpc"]
            .iter()
            .map(|p| param_ref(p))
            .collect()
    } else {
        vec![param_ref("preferRpc")]
    };
    let mut item = Map::new();
    item.insert(
        "post".into(),
        json!({
            "tags": tags,
            "description": description,
            "parameters": shaping,
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "properties": body_props, "required": body_required,
            }}}},
            "responses": responses,
        }),
    );
    if !f.writes {
        let mut params = shaping.clone();
        for p in &f.params {
            let key = format!("rpcArg.{}.{}", component(&f.name), component(&p.name));
            parameters.insert(
                key.clone(),
                json!({"name": p.name, "in": "query", "required": p.required,
                       "schema": type_schema(&p.decl_type)}),
            );
            params.push(param_ref(&key));
        }
        item.insert(
            "get".into(),
            json!({"tags": tags, "description": description, "parameters": params, "responses": responses}),
        );
    }
    Value::Object(item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema_cache::Exposure;
    use rusqlite::Connection;

    fn doc_for(sql: &str, functions: &[FunctionDoc], bearer_auth: bool) -> Value {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(sql).unwrap();
        let cache = SchemaCache::load(&c, &Exposure::All).unwrap();
        document(
            &cache,
            &DocOptions {
                title: "t",
                version: "1",
                bearer_auth,
                functions,
                visibility: &Exposed,
            },
        )
    }

    const SCHEMA: &str = "
        CREATE TABLE clients (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
        CREATE TABLE projects (id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL,
          client_id INTEGER REFERENCES clients(id), budget REAL, price DECIMAL(10,2),
          settings JSON, logo BLOB, anything, active BOOLEAN NOT NULL DEFAULT 1,
          due DATE, at DATETIME, \"limit\" INTEGER);
        CREATE TABLE no_pk (a TEXT, b TEXT);
        CREATE TABLE \"Odd Name\" (\"a.b\" TEXT NOT NULL);
        CREATE VIEW pv AS SELECT id, name FROM projects;";

    #[test]
    fn root_accepts_openapi_json_and_wildcards_only() {
        for ok in [
            None,
            Some(""),
            Some("*/*"),
            Some("application/json"),
            Some("application/openapi+json"),
            Some("text/csv;q=0.5, application/openapi+json"),
        ] {
            assert!(negotiate_root(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "text/csv",
            "application/vnd.pgrst.object+json",
            "text/html, text/*",
        ] {
            let e = negotiate_root(Some(bad)).unwrap_err();
            assert_eq!((e.status, e.code.as_str()), (406, "PGRST107"), "{bad}");
            assert_eq!(
                e.message,
                format!("None of these media types are available: {bad}")
            );
        }
    }

    #[test]
    fn a_table_named_error_keeps_its_row_schema() {
        let d = doc_for(
            "CREATE TABLE \"Error\" (id INTEGER PRIMARY KEY, v TEXT);",
            &[],
            false,
        );
        let schemas = &d["components"]["schemas"];
        assert!(
            schemas["Error"]["properties"].get("v").is_some(),
            "{}",
            schemas["Error"]
        );
        assert!(schemas["pgrst.Error"]["properties"].get("hint").is_some());
    }

    #[test]
    fn maps_declared_types_and_nullability() {
        let d = doc_for(SCHEMA, &[], false);
        let p = &d["components"]["schemas"]["projects"]["properties"];
        assert_eq!(p["id"]["type"], "integer");
        assert_eq!(p["id"]["format"], "int64");
        assert_eq!(p["name"]["type"], "string");
        assert_eq!(p["client_id"]["type"], json!(["integer", "null"]));
        assert_eq!(p["budget"]["type"], json!(["number", "null"]));
        assert_eq!(p["price"]["type"], json!(["number", "null"]));
        assert!(p["settings"].get("type").is_none(), "{}", p["settings"]);
        assert_eq!(p["logo"]["type"], json!(["string", "null"]));
        assert_eq!(p["logo"]["format"], "blob");
        assert!(p["anything"].get("type").is_none());
        assert_eq!(p["active"]["type"], "boolean");
        assert_eq!(p["due"]["format"], "date");
        assert_eq!(p["at"]["type"], json!(["string", "number", "null"]));
        assert_eq!(p["at"]["format"], "datetime");
    }

    #[test]
    fn notes_keys_and_requires_not_null_columns_without_default() {
        let d = doc_for(SCHEMA, &[], false);
        let s = &d["components"]["schemas"];
        let id = s["projects"]["properties"]["id"]["description"]
            .as_str()
            .unwrap();
        assert!(id.contains("This is a Primary Key.<pk/>"), "{id}");
        let fk = s["projects"]["properties"]["client_id"]["description"]
            .as_str()
            .unwrap();
        assert!(
            fk.contains("This is a Foreign Key to `clients.id`.<fk table='clients' column='id'/>"),
            "{fk}"
        );
        // `active` has a default, `id` is the rowid: neither is required.
        assert_eq!(s["projects.insert"]["required"], json!(["name"]));
        assert_eq!(s["projects.update"]["required"], json!([]));
        assert!(s["projects"].get("required").is_none());
    }

    #[test]
    fn paths_follow_what_each_relation_takes() {
        let d = doc_for(SCHEMA, &[], false);
        let paths = d["paths"].as_object().unwrap();
        let methods = |p: &str| -> Vec<String> {
            let mut m: Vec<String> = paths[p].as_object().unwrap().keys().cloned().collect();
            m.sort();
            m
        };
        assert_eq!(
            methods("/projects"),
            ["delete", "get", "patch", "post", "put"]
        );
        assert_eq!(methods("/no_pk"), ["delete", "get", "patch", "post"]);
        assert_eq!(methods("/pv"), ["get"]);
        // An upsert that inserts nothing answers 200, one that does 201 (found by
        // schemathesis' stateful phase: `POST []` with `resolution=merge-duplicates`).
        let post = paths["/projects"]["post"]["responses"].as_object().unwrap();
        assert!(post.contains_key("200") && post.contains_key("201"));
        assert_eq!(methods("/Odd%20Name"), ["delete", "get", "patch", "post"]);
        assert!(paths.contains_key("/"));
        // Component names are escaped.
        assert!(d["components"]["schemas"].get("Odd-20Name").is_some());
        assert!(
            d["components"]["parameters"]
                .get("rowFilter.Odd-20Name.a-2Eb")
                .is_some()
        );
        // A column called like a reserved parameter gets no filter.
        let get = &paths["/projects"]["get"]["parameters"];
        let refs: Vec<&str> = get
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["$ref"].as_str().unwrap())
            .collect();
        assert!(refs.contains(&"#/components/parameters/rowFilter.projects.client_id"));
        assert!(!refs.iter().any(|r| r.ends_with(".limit")));
        assert!(refs.contains(&"#/components/parameters/limit"));
        assert!(refs.contains(&"#/components/parameters/range"));
        let prefer = &d["components"]["parameters"]["preferPost"]["schema"]["enum"];
        assert!(
            prefer
                .as_array()
                .unwrap()
                .contains(&json!("return=representation"))
        );
        assert!(d.get("security").is_none());
    }

    #[test]
    fn bearer_auth_and_functions() {
        let functions = [
            FunctionDoc {
                name: "add".into(),
                description: None,
                params: vec![
                    FunctionParam {
                        name: "a".into(),
                        decl_type: "INTEGER".into(),
                        required: true,
                    },
                    FunctionParam {
                        name: "b".into(),
                        decl_type: "INTEGER".into(),
                        required: false,
                    },
                ],
                returns: FunctionReturns::Scalar("INTEGER".into()),
                writes: false,
            },
            FunctionDoc {
                name: "archive".into(),
                description: Some("Moves old rows away.".into()),
                params: vec![],
                returns: FunctionReturns::Set(vec![FunctionColumn {
                    name: "id".into(),
                    decl_type: "INTEGER".into(),
                }]),
                writes: true,
            },
        ];
        let d = doc_for(SCHEMA, &functions, true);
        assert_eq!(d["security"], json!([{"bearerAuth": []}]));
        let add = &d["paths"]["/rpc/add"];
        assert!(add.get("get").is_some() && add.get("post").is_some());
        assert_eq!(
            add["post"]["requestBody"]["content"]["application/json"]["schema"]["required"],
            json!(["a"])
        );
        assert_eq!(
            d["components"]["parameters"]["rpcArg.add.a"]["required"],
            json!(true)
        );
        let archive = &d["paths"]["/rpc/archive"];
        assert!(
            archive.get("get").is_none(),
            "a writing function is POST only"
        );
        assert_eq!(
            archive["post"]["responses"]["200"]["content"]["application/json"]["schema"]["type"],
            "array"
        );
    }

    #[test]
    fn hidden_relations_and_operations_are_left_out() {
        struct ReadOnly;
        impl Visibility for ReadOnly {
            fn sees(&self, r: &Relation) -> bool {
                r.name != "no_pk"
            }
            fn may(&self, _: &Relation, op: Operation) -> bool {
                op == Operation::Read
            }
        }
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(SCHEMA).unwrap();
        let only = Exposure::Only(["projects".to_string(), "no_pk".to_string()].into());
        let cache = SchemaCache::load(&c, &only).unwrap();
        let d = document(
            &cache,
            &DocOptions {
                title: "t",
                version: "1",
                bearer_auth: false,
                functions: &[],
                visibility: &ReadOnly,
            },
        );
        let paths: Vec<&String> = d["paths"].as_object().unwrap().keys().collect();
        assert_eq!(paths, ["/", "/projects"]);
        assert!(d["paths"]["/projects"].get("post").is_none());
        assert!(d["components"]["schemas"].get("clients").is_none());
        let text = d.to_string();
        assert!(!text.contains("no_pk"));
        // Not even a foreign key's note names a relation the caller cannot see.
        assert!(!text.contains("clients"), "{text}");
    }
}
