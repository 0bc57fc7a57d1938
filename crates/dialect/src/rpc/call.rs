//! Calling a function: the arguments taken from the query string (GET/HEAD) or a JSON object
//! body (POST), the function resolved by name and argument set (404 PGRST202 otherwise, with
//! PostgREST's hint naming the closest signature), each argument converted to its declared
//! type (400 `22P02` otherwise) and bound, never spliced; then the statement run.
//!
//! A read-only set or row function is read like a table: its statement is the relation, as a
//! subquery (`SELECT … FROM (<statement>) AS "t0" WHERE … ORDER BY … LIMIT …`), planned by the
//! read planner against a schema cache holding only the function's result (its columns come
//! from the prepared statement), so `select`, filters, `order`, `limit`/`offset`, `Range` and
//! counts work as on a table. A writing function runs its statement once (in the writer's
//! transaction) and its rows are then read the same way from a JSON array bound as one
//! parameter. A scalar is the first column of the first row as a bare JSON value; a row is
//! one object (`null` without one); void answers 204.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rusqlite::Connection;
use rusqlite::types::{Value, ValueRef};

use crate::error::{ApiError, ErrorCode};
use crate::headers::{CountMethod, MediaType, PreferenceApplied, RequestHeaders};
use crate::ident::push_quoted;
use crate::query::{QueryParams, decode_component};
use crate::read::exec::{BodyStream, ReadOutcome, ReadOutput, read};
use crate::read::plan::{Limits, OutputKind, ReadPlan, plan_read};
use crate::schema_cache::{Relation, SchemaCache, Source, ValueKind, most_similar};
use crate::shape::write_json_value;

use super::definition::{Function, ParamType, Returns};

/// The loaded functions, by name.
#[derive(Debug, Clone, Default)]
pub struct Functions {
    by_name: BTreeMap<String, Arc<Function>>,
}

impl Functions {
    pub fn new(list: impl IntoIterator<Item = Function>) -> Self {
        Functions {
            by_name: list
                .into_iter()
                .map(|f| (f.name.clone(), Arc::new(f)))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Function>> {
        self.by_name.get(name)
    }

    /// Every function, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Function>> {
        self.by_name.values()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The function `name` called with exactly the arguments `keys`; 404 PGRST202 otherwise.
    pub fn resolve(&self, name: &str, keys: &[&str]) -> Result<&Arc<Function>, ApiError> {
        let mut sorted: Vec<&str> = keys.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        // Exactly the function's parameters, each once: a repeated argument (`?a=1&a=2`)
        // names no signature rather than silently dropping another parameter.
        if let Some(f) = self.by_name.get(name)
            && f.params.len() == keys.len()
            && sorted.len() == keys.len()
            && keys.iter().all(|k| f.params.iter().any(|p| p.name == *k))
        {
            return Ok(f);
        }
        let args = sorted.join(", ");
        let (message, searched) = if sorted.is_empty() {
            (
                format!(
                    "Could not find the function public.{name} without parameters in the schema cache"
                ),
                format!("public.{name} without parameters"),
            )
        } else {
            (
                format!("Could not find the function public.{name}({args}) in the schema cache"),
                format!("public.{name} with parameters {args}"),
            )
        };
        let e = ApiError::new(404, ErrorCode::UnknownFunction, message).with_details(format!(
            "Searched for the function {searched}, but no matches were found in the schema cache."
        ));
        let closest = match self.by_name.get(name) {
            Some(f) => Some(f),
            None => most_similar(name, self.by_name.keys().map(String::as_str))
                .and_then(|n| self.by_name.get(n)),
        };
        Err(match closest {
            Some(f) => e.with_hint(format!(
                "Perhaps you meant to call the function {}",
                f.signature()
            )),
            None => e,
        })
    }
}

/// A call's arguments as the request sent them.
#[derive(Debug, Clone, PartialEq)]
pub enum Args {
    /// From the query string (GET/HEAD): text, in order.
    Query(Vec<(String, String)>),
    /// From a JSON object body (POST).
    Body(serde_json::Map<String, serde_json::Value>),
}

impl Args {
    /// The argument names, in the order sent.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Args::Query(pairs) => pairs.iter().map(|(k, _)| k.as_str()).collect(),
            Args::Body(map) => map.keys().map(String::as_str).collect(),
        }
    }

    /// A POST body: a JSON object (an empty body counts as `{}`; an array's first object is
    /// used, as PostgREST does).
    pub fn from_body(bytes: &[u8]) -> Result<Args, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Args::Body(serde_json::Map::new()));
        }
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
            ApiError::new(400, ErrorCode::InvalidBody, "Empty or invalid json")
                .with_details(e.to_string())
        })?;
        match v {
            serde_json::Value::Object(m) => Ok(Args::Body(m)),
            serde_json::Value::Array(items) => match items.into_iter().next() {
                Some(serde_json::Value::Object(m)) => Ok(Args::Body(m)),
                None => Ok(Args::Body(serde_json::Map::new())),
                Some(_) => Err(not_an_object()),
            },
            _ => Err(not_an_object()),
        }
    }
}

fn not_an_object() -> ApiError {
    ApiError::new(400, ErrorCode::InvalidBody, "Empty or invalid json")
        .with_details("The arguments of a function call are a JSON object")
}

/// Query-string keys that are never arguments.
const RESERVED: &[&str] = &[
    "select",
    "order",
    "limit",
    "offset",
    "and",
    "or",
    "not.and",
    "not.or",
    "columns",
    "on_conflict",
];

/// Splits a GET query string into the call's arguments and the rest (filters, `select`,
/// `order`, paging), as PostgREST does: a key naming a parameter of `function` is an
/// argument; a reserved or scoped key, or a pair that reads as a filter, is left to the query;
/// anything else is an argument (one the function does not take makes the call unknown).
pub fn split_query(raw: &str, function: Option<&Function>) -> Result<(Args, String), ApiError> {
    let mut args = Vec::new();
    let mut rest: Vec<&str> = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_component(k)?;
        let is_param = function.is_some_and(|f| f.params.iter().any(|p| p.name == key));
        if !is_param
            && (RESERVED.contains(&key.as_ref())
                || key.contains('.')
                || looks_like_filter(&decode_component(v)?))
        {
            rest.push(pair);
            continue;
        }
        args.push((key.into_owned(), decode_component(v)?.into_owned()));
    }
    Ok((Args::Query(args), rest.join("&")))
}

/// `op.value` or `op(mod).value` (`eq.1`, `not.in.(1,2)`, `like(any).{a,b}`): a value that
/// reads as a filter, whether or not its operator exists (the query parser says which).
fn looks_like_filter(value: &str) -> bool {
    let word_end = value
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(value.len());
    if word_end == 0 {
        return false;
    }
    let rest = &value[word_end..];
    let rest = match rest.strip_prefix('(') {
        Some(r) => match r.find(')') {
            Some(i) => &r[i + 1..],
            None => return false,
        },
        None => rest,
    };
    rest.starts_with('.')
}

/// PostgreSQL's error for a value its type does not accept.
fn invalid(ty: ParamType, text: &str) -> ApiError {
    ApiError::new(
        400,
        ErrorCode::InvalidTextRepresentation,
        format!("invalid input syntax for type {}: \"{text}\"", ty.name()),
    )
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "yes" | "y" | "on" | "1" => Some(true),
        "f" | "false" | "no" | "n" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn blob_of(s: &str) -> Result<Vec<u8>, ApiError> {
    match s.strip_prefix("\\x") {
        Some(hex) => {
            if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(ParamType::Blob, s));
            }
            (0..hex.len())
                .step_by(2)
                .map(|i| {
                    u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| invalid(ParamType::Blob, s))
                })
                .collect()
        }
        None => Ok(s.as_bytes().to_vec()),
    }
}

/// A text argument (query string, or a JSON string) converted to `ty`.
fn from_text(ty: ParamType, s: &str) -> Result<Value, ApiError> {
    Ok(match ty {
        ParamType::Integer => Value::Integer(s.trim().parse().map_err(|_| invalid(ty, s))?),
        ParamType::Real => {
            let f: f64 = s.trim().parse().map_err(|_| invalid(ty, s))?;
            if !f.is_finite() {
                return Err(invalid(ty, s));
            }
            Value::Real(f)
        }
        ParamType::Text => Value::Text(s.to_string()),
        ParamType::Boolean => {
            Value::Integer(i64::from(parse_bool(s).ok_or_else(|| invalid(ty, s))?))
        }
        ParamType::Json => {
            let v: serde_json::Value = serde_json::from_str(s).map_err(|_| invalid(ty, s))?;
            Value::Text(v.to_string())
        }
        ParamType::Blob => Value::Blob(blob_of(s)?),
    })
}

/// A JSON argument converted to `ty` (strings are read as text, as PostgreSQL's
/// `json_to_record` reads them).
fn from_json(ty: ParamType, v: &serde_json::Value) -> Result<Value, ApiError> {
    use serde_json::Value as J;
    Ok(match (ty, v) {
        (_, J::Null) => Value::Null,
        (ParamType::Json, v) => Value::Text(v.to_string()),
        (_, J::String(s)) => from_text(ty, s)?,
        (ParamType::Integer, J::Number(n)) => {
            Value::Integer(n.as_i64().ok_or_else(|| invalid(ty, &n.to_string()))?)
        }
        (ParamType::Real, J::Number(n)) => {
            Value::Real(n.as_f64().ok_or_else(|| invalid(ty, &n.to_string()))?)
        }
        (ParamType::Boolean, J::Bool(b)) => Value::Integer(i64::from(*b)),
        (ParamType::Text, v) => Value::Text(v.to_string()),
        (ty, v) => return Err(invalid(ty, &v.to_string())),
    })
}

/// A resolved call: the function and its arguments converted and in the statement's order.
#[derive(Debug, Clone)]
pub struct Call {
    pub function: Arc<Function>,
    pub(crate) args: Vec<Value>,
}

impl Call {
    /// Resolves `name` with `args` among `functions` and converts every argument.
    pub fn new(functions: &Functions, name: &str, args: &Args) -> Result<Call, ApiError> {
        let keys = args.keys();
        let function = functions.resolve(name, &keys)?.clone();
        let mut by_param: HashMap<&str, Value> = HashMap::with_capacity(keys.len());
        for p in &function.params {
            let v = match args {
                Args::Query(pairs) => pairs
                    .iter()
                    .find(|(k, _)| *k == p.name)
                    .map(|(_, v)| from_text(p.ty, v)),
                Args::Body(map) => map.get(&p.name).map(|v| from_json(p.ty, v)),
            }
            .transpose()?
            .unwrap_or(Value::Null);
            by_param.insert(p.name.as_str(), v);
        }
        let args = function
            .order
            .iter()
            .map(|&i| {
                by_param
                    .get(function.params[i].name.as_str())
                    .cloned()
                    .unwrap_or(Value::Null)
            })
            .collect();
        Ok(Call { function, args })
    }

    /// The call's arguments in the order the statement numbers its parameters.
    pub fn args(&self) -> &[Value] {
        &self.args
    }
}

/// How a call's result is read: the request's query and headers.
#[derive(Debug, Clone)]
pub struct CallRead {
    pub query: QueryParams,
    pub headers: RequestHeaders,
    pub limits: Limits,
    /// Largest representation a writing call may build (bytes).
    pub max_bytes: usize,
}

/// Runs `call` on `conn` and shapes its result (see the module docs). A read-only function's
/// set or row is read like a table (its body past `buffer_limit` goes to `stream`, as
/// [`crate::execute_read_streaming`] does); a writing function's statement runs once on
/// `conn` (the writer's, inside its transaction) and its result is built in memory.
pub fn execute_call(
    conn: &Connection,
    call: &Call,
    how: &CallRead,
    head: bool,
    buffer_limit: usize,
    stream: Option<&mut dyn BodyStream>,
) -> Result<ReadOutcome, ApiError> {
    let f = &call.function;
    match f.returns {
        Returns::Void => {
            run_statement(conn, call, |_| Ok(()))?;
            Ok(whole(204, Vec::new(), String::new(), 0))
        }
        Returns::Scalar => {
            let kind = match ValueKind::from_decl_type(f.columns[0].1.as_deref().unwrap_or("")) {
                ValueKind::Bool => OutputKind::Bool,
                ValueKind::Json => OutputKind::Json,
                ValueKind::Plain => OutputKind::Plain,
            };
            let mut body = Vec::new();
            let mut n = 0;
            run_statement(conn, call, |row| {
                if n == 0 {
                    write_json_value(&mut body, row.get_ref(0)?, kind);
                    n = 1;
                }
                Ok(())
            })?;
            if n == 0 {
                body.extend_from_slice(b"null");
            }
            Ok(whole(
                200,
                if head { Vec::new() } else { body },
                String::new(),
                n,
            ))
        }
        Returns::Set | Returns::Row => {
            let plan = if f.writes {
                // Planned once, before anything is written, so the request's select, filters
                // and order are checked first: planning does not depend on the rows, which
                // are bound into the plan once the statement has run.
                let mut plan = plan_result(f, rows_source(f, String::new()), how)?;
                let rows = returned_rows(conn, call, how.max_bytes)?;
                bind_rows(&mut plan, f, rows);
                plan
            } else {
                plan_result(
                    f,
                    Source {
                        sql: f.sql.clone(),
                        args: call.args.clone(),
                    },
                    how,
                )?
            };
            let (buffer_limit, stream) = if f.writes {
                (usize::MAX, None)
            } else {
                (buffer_limit, stream)
            };
            match read(conn, &plan, head, buffer_limit, stream) {
                // A row function without a row: `null`, as a function returning no
                // composite value answers.
                Err(e)
                    if f.returns == Returns::Row
                        && e.code == ErrorCode::Singular
                        && e.details.as_ref().and_then(|d| d.as_str())
                            == Some("The result contains 0 rows") =>
                {
                    Ok(whole(
                        200,
                        if head { Vec::new() } else { b"null".to_vec() },
                        "*/*".into(),
                        0,
                    ))
                }
                other => other,
            }
        }
    }
}

fn whole(status: u16, body: Vec<u8>, content_range: String, rows: usize) -> ReadOutcome {
    ReadOutcome::Whole(ReadOutput {
        status,
        body,
        content_range,
        preference_applied: PreferenceApplied::default(),
        rows,
    })
}

/// Runs the function's statement with the call's arguments to its end, handing each row to
/// `each`.
fn run_statement(
    conn: &Connection,
    call: &Call,
    mut each: impl FnMut(&rusqlite::Row<'_>) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let mut stmt = crate::sql::prepare_cached(conn, &call.function.sql)?;
    for (i, v) in call.args.iter().enumerate() {
        stmt.raw_bind_parameter(i + 1, v)?;
    }
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next()? {
        each(row)?;
    }
    Ok(())
}

/// Runs a writing function's statement to its end and returns its rows as one JSON array of
/// arrays (BLOBs as `{"x": "<hex>"}`, text that is not UTF-8 lossily, as table reads render
/// it). The array's size is the one check of the result's size: past `max_bytes` the call
/// fails at once (nothing kept; the caller's transaction undoes the write), so a huge
/// `RETURNING` is never held in memory whole.
fn returned_rows(conn: &Connection, call: &Call, max_bytes: usize) -> Result<String, ApiError> {
    let mut json = String::from("[");
    let mut first = true;
    run_statement(conn, call, |row| {
        let width = row.as_ref().column_count();
        let mut cells = Vec::with_capacity(width);
        for i in 0..width {
            cells.push(match row.get_ref(i)? {
                ValueRef::Null => serde_json::Value::Null,
                ValueRef::Integer(n) => n.into(),
                ValueRef::Real(r) => serde_json::Number::from_f64(r)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number),
                ValueRef::Text(t) => String::from_utf8_lossy(t).into(),
                ValueRef::Blob(b) => serde_json::json!({
                    "x": b.iter().map(|byte| format!("{byte:02x}")).collect::<String>()
                }),
            });
        }
        if !std::mem::take(&mut first) {
            json.push(',');
        }
        json.push_str(&serde_json::Value::Array(cells).to_string());
        if json.len() > max_bytes {
            return Err(too_large(max_bytes));
        }
        Ok(())
    })?;
    json.push(']');
    Ok(json)
}

/// 400 `54000`: a writing function's result past the representation limit of writes.
fn too_large(max_bytes: usize) -> ApiError {
    ApiError::new(
        400,
        ErrorCode::ProgramLimitExceeded,
        "The representation of the write is too large",
    )
    .with_details(format!(
        "It would exceed {max_bytes} bytes; nothing was written."
    ))
    .with_hint("Return fewer rows or columns from the function")
}

/// The rows a writing function returned (`rows`, the JSON of [`returned_rows`]), as a
/// relation: the array bound as one parameter and read back column by column.
fn rows_source(f: &Function, rows: String) -> Source {
    let mut sql = String::from("SELECT ");
    for (i, (name, _)) in f.columns.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let path = format!("'$[{i}]'");
        sql.push_str(&format!(
            "CASE json_type(\"value\", {path}) WHEN 'object' THEN unhex(json_extract(\"value\", '$[{i}].x')) ELSE json_extract(\"value\", {path}) END AS "
        ));
        push_quoted(&mut sql, name);
    }
    sql.push_str(" FROM json_each(:pgrst_rows)");
    Source {
        sql,
        args: vec![Value::Text(rows)],
    }
}

/// Binds the rows a writing function returned into the plan made before it ran (its root
/// reads [`rows_source`]; a derived relation has no embeds).
fn bind_rows(plan: &mut ReadPlan, f: &Function, rows: String) {
    let rel = Arc::make_mut(&mut plan.root.relation);
    rel.source = Some(Arc::new(match rel.source.as_deref() {
        Some(source) => Source {
            sql: source.sql.clone(),
            args: vec![Value::Text(rows)],
        },
        None => rows_source(f, rows),
    }));
}

/// Plans the read of a set or row result from `source` against a cache holding only it.
fn plan_result(f: &Function, source: Source, how: &CallRead) -> Result<ReadPlan, ApiError> {
    let cache = SchemaCache::of_one(Relation::derived(&f.name, &f.columns, source));
    let mut headers = how.headers.clone();
    // The planner's estimates read statistics of stored tables; a result has none.
    if headers.prefer.count.is_some() {
        headers.prefer.count = Some(CountMethod::Exact);
    }
    if f.returns == Returns::Row
        && let MediaType::Json { strip_nulls } = headers.media
    {
        headers.media = MediaType::Singular { strip_nulls };
    }
    let mut plan = plan_read(&cache, &f.name, &how.query, &headers, how.limits)?;
    if f.returns == Returns::Row {
        plan.root.limit = Some(1);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::Preferences;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        crate::functions::register(&c).unwrap();
        c.execute_batch(
            "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT, rating REAL, author TEXT, cover BLOB, in_print BOOLEAN);
             INSERT INTO books VALUES (1,'War and Peace',4.5,'Tolstoy',X'0102',1),(2,'Anna Karenina',4.0,'Tolstoy',NULL,0),
                                      (3,'The Idiot',3.5,'Dostoevsky',NULL,1);",
        )
        .unwrap();
        c
    }

    fn functions(c: &Connection) -> Functions {
        Functions::new([
            Function::define(c, "by_author", "-- params: author text, min_rating real\n-- returns: setof\nSELECT id, title, rating, cover, in_print FROM books WHERE author = :author AND rating >= :min_rating ORDER BY id").unwrap(),
            Function::define(c, "count_books", "-- returns: scalar\nSELECT count(*) FROM books").unwrap(),
            Function::define(c, "book", "-- params: id integer\n-- returns: row\nSELECT id, title FROM books WHERE id = :id").unwrap(),
            Function::define(c, "retitle", "-- params: id integer, title text\n-- returns: setof\n-- writes\nUPDATE books SET title = :title WHERE id >= :id RETURNING id, title, cover").unwrap(),
            Function::define(c, "echo", "-- params: i int, r real, b bool, j json, x blob, t text\n-- returns: row\nSELECT :i AS i, typeof(:r) AS r, :b AS b, :j AS j, hex(:x) AS x, :t AS t").unwrap(),
        ])
    }

    fn call(
        c: &Connection,
        name: &str,
        args: Args,
        query: &str,
    ) -> Result<(u16, String, String), ApiError> {
        let f = functions(c);
        let call = Call::new(&f, name, &args)?;
        let how = CallRead {
            query: QueryParams::parse(query)?,
            headers: RequestHeaders {
                media: MediaType::Json { strip_nulls: false },
                prefer: Preferences {
                    count: Some(CountMethod::Exact),
                    ..Default::default()
                },
                range: None,
                profile_sent: false,
            },
            limits: Limits::default(),
            max_bytes: 1 << 20,
        };
        match execute_call(c, &call, &how, false, usize::MAX, None)? {
            ReadOutcome::Whole(out) => Ok((
                out.status,
                out.content_range,
                String::from_utf8(out.body).unwrap(),
            )),
            _ => panic!("not whole"),
        }
    }

    fn q(pairs: &[(&str, &str)]) -> Args {
        Args::Query(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn set_results_read_like_a_table() {
        let c = db();
        let args = q(&[("author", "Tolstoy"), ("min_rating", "4")]);
        let (s, range, body) = call(
            &c,
            "by_author",
            args.clone(),
            "select=title,in_print&order=rating.asc",
        )
        .unwrap();
        assert_eq!((s, range.as_str()), (200, "0-1/2"));
        assert_eq!(
            body,
            r#"[{"title":"Anna Karenina","in_print":false},{"title":"War and Peace","in_print":true}]"#
        );
        let (_, range, body) =
            call(&c, "by_author", args.clone(), "select=id&id=gt.1&limit=5").unwrap();
        assert_eq!((range.as_str(), body.as_str()), ("0-0/1", r#"[{"id":2}]"#));
        let (s, range, _) = call(&c, "by_author", args, "select=id&limit=1&offset=1").unwrap();
        assert_eq!((s, range.as_str()), (206, "1-1/2"));
        let e = call(
            &c,
            "by_author",
            q(&[("author", "Tolstoy"), ("min_rating", "4")]),
            "nope=eq.1",
        )
        .unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "42703"));
    }

    #[test]
    fn scalar_row_and_conversions() {
        let c = db();
        assert_eq!(call(&c, "count_books", q(&[]), "").unwrap().2, "3");
        assert_eq!(
            call(&c, "book", q(&[("id", "3")]), "").unwrap().2,
            r#"{"id":3,"title":"The Idiot"}"#
        );
        assert_eq!(call(&c, "book", q(&[("id", "9")]), "").unwrap().2, "null");
        let mut m = serde_json::Map::new();
        for (k, v) in [
            ("i", "7"),
            ("r", "\"2.5\""),
            ("b", "true"),
            ("j", "{\"a\":[1]}"),
            ("x", "\"\\\\xff00\""),
            ("t", "12"),
        ] {
            m.insert(k.into(), serde_json::from_str(v).unwrap());
        }
        assert_eq!(
            call(&c, "echo", Args::Body(m), "").unwrap().2,
            r#"{"i":7,"r":"real","b":1,"j":"{\"a\":[1]}","x":"FF00","t":"12"}"#
        );
        let args = q(&[
            ("i", "1.5"),
            ("r", "1"),
            ("b", "t"),
            ("j", "1"),
            ("x", "a"),
            ("t", ""),
        ]);
        let e = call(&c, "echo", args, "").unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str(), e.message.as_str()),
            (
                400,
                "22P02",
                "invalid input syntax for type integer: \"1.5\""
            )
        );
        let args = q(&[
            ("i", "1"),
            ("r", "1"),
            ("b", "maybe"),
            ("j", "1"),
            ("x", "a"),
            ("t", ""),
        ]);
        assert!(
            call(&c, "echo", args, "")
                .unwrap_err()
                .message
                .contains("boolean: \"maybe\"")
        );
    }

    #[test]
    fn writing_functions_run_once_and_shape_their_rows() {
        let c = db();
        let (s, _, body) = call(
            &c,
            "retitle",
            q(&[("id", "1"), ("title", "X")]),
            "select=id,cover&id=lt.3&order=id.desc",
        )
        .unwrap();
        assert_eq!(
            (s, body.as_str()),
            (200, r#"[{"id":2,"cover":null},{"id":1,"cover":"\\x0102"}]"#)
        );
        let n: i64 = c
            .query_row("SELECT count(*) FROM books WHERE title = 'X'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(
            n, 3,
            "the filter shapes the answer, not what the statement wrote"
        );
    }

    #[test]
    fn a_writing_function_writes_nothing_for_a_bad_query_or_a_result_past_the_limit() {
        let c = db();
        let titles = || -> Vec<String> {
            let mut s = c.prepare("SELECT title FROM books ORDER BY id").unwrap();
            s.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let before = titles();
        // The query is checked before the statement runs (no savepoint here to undo it).
        let e = call(
            &c,
            "retitle",
            q(&[("id", "1"), ("title", "Y")]),
            "select=nope",
        )
        .unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "42703"));
        assert_eq!(titles(), before, "a refused call wrote");
        // Rows are counted while they are read: past the limit the call fails (the writer's
        // savepoint undoes the write), without holding the whole result.
        let f = functions(&c);
        let call = Call::new(&f, "retitle", &q(&[("id", "1"), ("title", "Z")])).unwrap();
        let e = returned_rows(&c, &call, 40).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "54000"));
        // ... and a whole call past the limit answers the same, with no result.
        let how = CallRead {
            query: QueryParams::parse("select=id").unwrap(),
            headers: RequestHeaders {
                media: MediaType::Json { strip_nulls: false },
                prefer: Preferences::default(),
                range: None,
                profile_sent: false,
            },
            limits: Limits::default(),
            max_bytes: 40,
        };
        let e = execute_call(&c, &call, &how, false, usize::MAX, None).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "54000"));
        // Within the limit: every returned row, once.
        let rows = returned_rows(&c, &call, 1 << 20).unwrap();
        assert_eq!(rows, r#"[[1,"Z",{"x":"0102"}],[2,"Z",null],[3,"Z",null]]"#);
    }

    #[test]
    fn a_repeated_argument_names_no_signature() {
        let c = db();
        let e = call(
            &c,
            "by_author",
            q(&[("author", "Tolstoy"), ("author", "x")]),
            "",
        )
        .unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (404, "PGRST202"));
    }

    #[test]
    fn unknown_functions_and_argument_sets_are_pgrst202() {
        let c = db();
        let e = call(&c, "by_author", q(&[("author", "x")]), "").unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (404, "PGRST202"));
        assert_eq!(
            e.message,
            "Could not find the function public.by_author(author) in the schema cache"
        );
        assert_eq!(
            e.details.unwrap().as_str().unwrap(),
            "Searched for the function public.by_author with parameters author, but no matches were found in the schema cache."
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("Perhaps you meant to call the function public.by_author(author, min_rating)")
        );
        let e = call(&c, "by_autor", q(&[]), "").unwrap_err();
        assert_eq!(
            e.message,
            "Could not find the function public.by_autor without parameters in the schema cache"
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("Perhaps you meant to call the function public.by_author(author, min_rating)")
        );
        assert_eq!(call(&c, "zzz", q(&[]), "").unwrap_err().hint, None);
    }

    #[test]
    fn get_query_strings_split_into_arguments_and_filters() {
        let c = db();
        let f = functions(&c);
        let by_author = f.get("by_author").map(|f| f.as_ref());
        let (args, rest) = split_query(
            "author=Leo%20T&min_rating=4&select=id&id=gt.1&order=id&limit=2&x=1",
            by_author,
        )
        .unwrap();
        assert_eq!(
            args,
            q(&[("author", "Leo T"), ("min_rating", "4"), ("x", "1")])
        );
        assert_eq!(rest, "select=id&id=gt.1&order=id&limit=2");
        // A parameter's name wins over reading the pair as a filter.
        let (args, rest) = split_query("x=1.5&y=xx.1&z=like(any).{a}&w=lt%2E2", by_author).unwrap();
        assert_eq!(
            (args, rest.as_str()),
            (q(&[("x", "1.5")]), "y=xx.1&z=like(any).{a}&w=lt%2E2")
        );
        let (args, rest) = split_query("author=eq.x", by_author).unwrap();
        assert_eq!((args, rest.as_str()), (q(&[("author", "eq.x")]), ""));
    }

    #[test]
    fn bodies_are_objects() {
        assert_eq!(
            Args::from_body(b"  ").unwrap(),
            Args::Body(Default::default())
        );
        assert!(
            matches!(Args::from_body(br#"[{"a":1},{"a":2}]"#).unwrap(), Args::Body(m) if m["a"] == 1)
        );
        assert_eq!(
            Args::from_body(b"[1]").unwrap_err().code.as_str(),
            "PGRST102"
        );
        assert_eq!(Args::from_body(b"{").unwrap_err().code.as_str(), "PGRST102");
    }
}
