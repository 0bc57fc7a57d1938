//! SQL functions the generated SQL relies on, registered on every connection that runs it.
//!
//! `regexp(pattern, text)` backs `match`/`imatch` with Rust's `regex` (linear time, size-capped);
//! `pgrst_match_any(patterns, text)` and `pgrst_match_all(patterns, text)` back their
//! `(any)`/`(all)` forms over a JSON array of patterns, compiled together as one set. The
//! patterns are always a bound parameter, so the compiled form is kept in SQLite's auxiliary
//! data and built once per statement run, never per row; [`REGEX_SIZE_LIMIT`] and
//! [`REGEX_CACHE_LIMIT`] bound what one can cost.
//! `pgrst_contains`, `pgrst_contained` and `pgrst_overlaps` (column, operand) back `cs`, `cd`
//! and `ov` with
//! PostgreSQL's `jsonb @>` containment and array `&&` overlap over JSON values (see
//! [`json_contains`], [`json_overlaps`]).
//! `pgrst_ins(n)` (write connections only, [`register_insert_counter`]) adds `n` to a counter
//! and returns it: upserts call it with 1 for every row they try to insert and with -1 for
//! every conflict they turn into an update, so the counter ends at the number of inserted
//! rows (201 vs 200), as PostgREST counts them.
//! `pgrst_typed(value, type)` checks a value a write is about to store against its column's
//! declared type (integers, numbers, booleans) ([`WriteType`]) and returns it unchanged, or fails with PostgreSQL's
//! `invalid input syntax for type …` (400 22P02): SQLite keeps a value its column's affinity
//! cannot convert (`"abc"` in a REAL column stays text), and reads would then answer rows
//! outside the column's documented type.
//! `pgrst_budget()` ([`register_budget`]) is called by every write statement on every
//! candidate row, so a write can be stopped at its time budget without ending the transaction
//! it shares with other writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use regex::{Regex, RegexSet};
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Error};
use serde_json::Value as Json;

/// The largest compiled form of a regular expression (or of a set of them), in bytes: what
/// bounds the time compiling takes.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// The largest lazy-DFA cache a compiled regular expression may grow while matching; past it,
/// matching continues with a slower engine in the same linear time.
pub(crate) const REGEX_CACHE_LIMIT: usize = 256 << 10;

thread_local! {
    static COMPILED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many regular expressions (or sets of them) this thread has compiled: compiling is the
/// costly part of `match`, and tests count it.
#[cfg(test)]
pub(crate) fn regex_compilations() -> u64 {
    COMPILED.with(|c| c.get())
}

fn counted() {
    COMPILED.with(|c| c.set(c.get() + 1));
}

/// Compiles `pattern` within the size limits.
pub(crate) fn compile_regex(pattern: &str) -> Result<Regex, regex::Error> {
    counted();
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_CACHE_LIMIT)
        .build()
}

/// Compiles `patterns` as one set within the size limits (which then bound them together).
pub(crate) fn compile_regex_set<I, S>(patterns: I) -> Result<RegexSet, regex::Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    counted();
    regex::RegexSetBuilder::new(patterns)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_CACHE_LIMIT)
        .build()
}

/// A SQL value as the text a pattern is matched against (`None` for NULL; a BLOB never
/// matches, as it has no text).
fn match_text(v: ValueRef<'_>) -> Option<Option<std::borrow::Cow<'_, str>>> {
    match v {
        ValueRef::Null => None,
        ValueRef::Text(t) => Some(Some(String::from_utf8_lossy(t))),
        ValueRef::Integer(i) => Some(Some(i.to_string().into())),
        ValueRef::Real(f) => Some(Some(f.to_string().into())),
        ValueRef::Blob(_) => Some(None),
    }
}

/// The SQL function that checks a written value's type ([`WriteType`]).
pub(crate) const TYPED_FN: &str = "pgrst_typed";

/// What a column declared with a type accepts on writes, and the name that type has in the
/// error (PostgreSQL's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteType {
    /// INTEGER affinity: integers, integral numbers, and text that reads as an integer.
    Integer,
    /// REAL or NUMERIC affinity: finite numbers and text that reads as one.
    Number,
    /// `BOOL…`: 0 and 1 (true and false arrive as them).
    Boolean,
}

impl WriteType {
    pub(crate) fn name(self) -> &'static str {
        match self {
            WriteType::Integer => "integer",
            WriteType::Number => "numeric",
            WriteType::Boolean => "boolean",
        }
    }

    fn from_name(name: &[u8]) -> Option<Self> {
        [WriteType::Integer, WriteType::Number, WriteType::Boolean]
            .into_iter()
            .find(|t| t.name().as_bytes() == name)
    }

    /// Whether a column of this type keeps `v` as a value of the type.
    fn accepts(self, v: ValueRef<'_>) -> bool {
        // The spaces SQLite's type affinity skips around a number: ASCII only (a Unicode
        // space left in would keep the value text).
        fn text(t: &[u8]) -> Option<&str> {
            std::str::from_utf8(t)
                .ok()
                .map(|t| t.trim_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']))
        }
        // The REALs an INTEGER column turns into integers: integral and within 64 bits (a
        // JSON number past i64 arrives as a REAL and would stay one).
        const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;
        match (self, v) {
            (_, ValueRef::Null) => true,
            (WriteType::Integer, ValueRef::Integer(_)) => true,
            (WriteType::Integer, ValueRef::Real(f)) => {
                f.fract() == 0.0 && (-I64_BOUND..I64_BOUND).contains(&f)
            }
            (WriteType::Integer, ValueRef::Text(t)) => {
                text(t).is_some_and(|t| t.parse::<i64>().is_ok())
            }
            (WriteType::Number, ValueRef::Integer(_)) => true,
            (WriteType::Number, ValueRef::Real(f)) => f.is_finite(),
            (WriteType::Number, ValueRef::Text(t)) => {
                text(t).is_some_and(|t| t.parse::<f64>().is_ok_and(f64::is_finite))
            }
            (WriteType::Boolean, ValueRef::Integer(i)) => i == 0 || i == 1,
            (WriteType::Boolean, ValueRef::Real(f)) => f == 0.0 || f == 1.0,
            (WriteType::Boolean, ValueRef::Text(t)) => matches!(text(t), Some("0" | "1")),
            _ => false,
        }
    }
}

/// The value a write rejects, as PostgreSQL quotes it.
#[derive(Debug)]
struct InvalidInput(String);

impl std::fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidInput {}

/// The start of the error `pgrst_typed` fails with (`error.rs` answers it with 22P02).
pub(crate) const INVALID_INPUT: &str = "invalid input syntax for type ";

/// `pgrst_typed(value, type)`: `value` when a column of `type` keeps it as such, else an
/// error naming both (the value cut at 100 characters).
fn typed(ctx: &mut Context<'_>) -> rusqlite::Result<rusqlite::types::Value> {
    use rusqlite::types::Value;
    let v = ctx.get_raw(0);
    let ty = match ctx.get_raw(1) {
        ValueRef::Text(t) => WriteType::from_name(t),
        _ => None,
    };
    let Some(ty) = ty else {
        return Err(user_error(InvalidInput("pgrst_typed: unknown type".into())));
    };
    if ty.accepts(v) {
        return Ok(match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        });
    }
    let shown: String = match v {
        ValueRef::Text(t) => String::from_utf8_lossy(t).chars().take(100).collect(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Blob(_) => "(bytes)".into(),
        ValueRef::Null => String::new(),
    };
    Err(user_error(InvalidInput(format!(
        "{INVALID_INPUT}{}: {}",
        ty.name(),
        serde_json::Value::String(shown)
    ))))
}

fn user_error(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::UserFunctionError(Box::new(e))
}

/// `pgrst_match_any`/`pgrst_match_all`: the JSON array of patterns in argument 0, compiled
/// once per statement; the text in argument 1. Never NULL, as the `EXISTS` forms of the other
/// quantified operators: a NULL or BLOB text matches no pattern, and every pattern of an
/// empty list.
fn match_set(ctx: &Context<'_>, all: bool) -> rusqlite::Result<bool> {
    let set: Arc<RegexSet> = ctx.get_or_create_aux(0, |v| -> Result<RegexSet, Error> {
        let patterns: Vec<String> =
            serde_json::from_slice(v.as_bytes().map_err(user_error)?).map_err(user_error)?;
        compile_regex_set(&patterns).map_err(user_error)
    })?;
    Ok(match match_text(ctx.get_raw(1)) {
        Some(Some(text)) if all => set.matches(&text).matched_all(),
        Some(Some(text)) => set.is_match(&text),
        _ => all && set.is_empty(),
    })
}

/// Registers the dialect's SQL functions on `conn`.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    register_budget(conn, || true)?;
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("pgrst_contains", 2, flags, |ctx| {
        json_pair(ctx, |column, operand| json_contains(column, operand, true))
    })?;
    conn.create_scalar_function("pgrst_contained", 2, flags, |ctx| {
        json_pair(ctx, |column, operand| json_contains(operand, column, true))
    })?;
    conn.create_scalar_function("pgrst_overlaps", 2, flags, |ctx| {
        json_pair(ctx, json_overlaps)
    })?;
    conn.create_scalar_function("regexp", 2, flags, |ctx| {
        let re: Arc<Regex> = ctx.get_or_create_aux(0, |v| -> Result<Regex, Error> {
            compile_regex(v.as_str().map_err(user_error)?).map_err(user_error)
        })?;
        Ok(match_text(ctx.get_raw(1)).map(|t| t.is_some_and(|t| re.is_match(&t))))
    })?;
    conn.create_scalar_function(TYPED_FN, 2, flags, typed)?;
    conn.create_scalar_function(RLS_FN, 3, FunctionFlags::SQLITE_UTF8, rls)?;
    conn.create_scalar_function("pgrst_match_any", 2, flags, |ctx| match_set(ctx, false))?;
    conn.create_scalar_function("pgrst_match_all", 2, flags, |ctx| match_set(ctx, true))
}

/// A SQL value read as JSON: text that parses as JSON is that JSON, other text is a JSON
/// string, numbers are numbers; `None` for NULL and blobs.
fn as_json(v: ValueRef<'_>) -> Option<Json> {
    match v {
        ValueRef::Null | ValueRef::Blob(_) => None,
        ValueRef::Integer(i) => Some(Json::from(i)),
        ValueRef::Real(f) => Some(Json::from(f)),
        ValueRef::Text(t) => Some(
            serde_json::from_slice(t)
                .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(t).into_owned())),
        ),
    }
}

/// Applies `f` to `(column, operand)` read as JSON (NULL if either is NULL). The operand, the
/// second argument, is the bound parameter: it is parsed once per statement and kept in
/// SQLite's auxiliary data; the column is parsed row by row.
fn json_pair(
    ctx: &Context<'_>,
    f: impl Fn(&Json, &Json) -> bool,
) -> rusqlite::Result<Option<bool>> {
    let operand = ctx.get_or_create_aux(1, |v| Ok::<_, Error>(as_json(v)))?;
    Ok(match (as_json(ctx.get_raw(0)), operand.as_ref()) {
        (Some(column), Some(operand)) => Some(f(&column, operand)),
        _ => None,
    })
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn json_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// PostgreSQL's `jsonb @>`: every key of an object operand is in `a` with a containing value;
/// every element of an array operand is contained in some element of `a` (duplicates and order
/// do not matter); scalars are equal. At the top level an array also contains a scalar that is
/// one of its elements, and an empty object contains-matches any array: `{}` is also
/// PostgreSQL's empty array literal, which postgrest-js sends for `contains(col, [])`.
pub(crate) fn json_contains(a: &Json, b: &Json, top: bool) -> bool {
    match (a, b) {
        (Json::Array(_), Json::Object(b)) if top && b.is_empty() => true,
        (Json::Object(a), Json::Object(b)) => b
            .iter()
            .all(|(k, bv)| a.get(k).is_some_and(|av| json_contains(av, bv, false))),
        (Json::Array(a), Json::Array(b)) => b.iter().all(|bv| {
            a.iter().any(|av| match (av, bv) {
                (Json::Array(_), Json::Array(_)) | (Json::Object(_), Json::Object(_)) => {
                    json_contains(av, bv, false)
                }
                _ => json_eq(av, bv),
            })
        }),
        (Json::Array(a), b) if top && !b.is_object() => a.iter().any(|av| json_eq(av, b)),
        (Json::Array(_) | Json::Object(_), _) | (_, Json::Array(_) | Json::Object(_)) => false,
        _ => json_eq(a, b),
    }
}

/// PostgreSQL's array `&&`: `a` and `b` share an element (a value that is not an array counts
/// as an array of itself).
pub(crate) fn json_overlaps(a: &Json, b: &Json) -> bool {
    fn items(v: &Json) -> &[Json] {
        match v {
            Json::Array(items) => items,
            // `{}`: PostgreSQL's empty array literal.
            Json::Object(o) if o.is_empty() => &[],
            other => std::slice::from_ref(other),
        }
    }
    let (a, b) = (items(a), items(b));
    a.iter().any(|x| b.iter().any(|y| json_eq(x, y)))
}

/// The counter behind `pgrst_ins` on one connection.
#[derive(Debug, Clone, Default)]
pub struct InsertCounter(Arc<AtomicI64>);

impl InsertCounter {
    pub fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Registers `pgrst_ins(n)` on `conn` and returns its counter. Not deterministic, so SQLite
/// calls it once per row.
pub fn register_insert_counter(conn: &Connection) -> rusqlite::Result<InsertCounter> {
    let counter = InsertCounter::default();
    let c = counter.0.clone();
    conn.create_scalar_function("pgrst_ins", 1, FunctionFlags::SQLITE_UTF8, move |ctx| {
        let n: i64 = ctx.get(0)?;
        c.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    })?;
    Ok(counter)
}

/// The name of a role's row check in a write (see `write/sql.rs`): `pgrst_rls(ok, existing,
/// table)` is 1 when `ok` is true, else it fails the statement with PostgreSQL's words.
pub(crate) const RLS_FN: &str = "pgrst_rls";

/// How a failed row check's message starts (mapped to 42501 in `error.rs`).
pub(crate) const RLS_VIOLATION: &str = "new row violates row-level security policy";

fn rls(ctx: &mut Context<'_>) -> Result<i64, Error> {
    if ctx.get::<bool>(0)? {
        return Ok(1);
    }
    let existing: bool = ctx.get(1)?;
    let table: String = ctx.get(2)?;
    Err(Error::UserFunctionError(
        if existing {
            format!("{RLS_VIOLATION} (USING expression) for table \"{table}\"")
        } else {
            format!("{RLS_VIOLATION} for table \"{table}\"")
        }
        .into(),
    ))
}

/// The name of the write budget check every write statement calls once per candidate row.
pub(crate) const BUDGET_FN: &str = "pgrst_budget";

/// The budget check alone, for a write statement without a row loop to put it in
/// (`INSERT … DEFAULT VALUES`, run once per object).
pub(crate) const BUDGET_CHECK_SQL: &str = "SELECT pgrst_budget()";

/// Registers `pgrst_budget()`: true while `within()` says the running write may go on, else
/// an error. An error from a function ends only its statement (SQLite rolls back the statement,
/// the transaction stays), where an interrupt would roll back the whole transaction, so a
/// writer running several requests in one transaction can stop one request's statement at its
/// time budget without undoing the others. [`register`] installs one that always answers true;
/// the server's writer replaces it with its clock.
pub fn register_budget(
    conn: &Connection,
    within: impl Fn() -> bool + Send + 'static,
) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        BUDGET_FN,
        0,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY,
        move |_| {
            if within() {
                Ok(true)
            } else {
                Err(Error::UserFunctionError(
                    "the write's time budget is spent".into(),
                ))
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_writes_accept_what_the_affinity_converts_and_nothing_else() {
        use WriteType::*;
        let t = |s: &'static str| ValueRef::Text(s.as_bytes());
        // ASCII spaces around a number are what SQLite skips; a Unicode space keeps it text.
        assert!(Integer.accepts(t(" 5\t")));
        assert!(!Integer.accepts(t("5\u{a0}")));
        assert!(!Number.accepts(t("1.5\u{2003}")));
        assert!(!Boolean.accepts(t("1\u{a0}")));
        assert!(Number.accepts(t("\n2.5e3 ")));
        // REALs an INTEGER column turns into integers: integral, within 64 bits.
        assert!(Integer.accepts(ValueRef::Real(3.0)));
        assert!(Integer.accepts(ValueRef::Real(-9_223_372_036_854_775_808.0)));
        assert!(!Integer.accepts(ValueRef::Real(9_223_372_036_854_775_808.0)));
        assert!(!Integer.accepts(ValueRef::Real(1e300)));
        assert!(!Integer.accepts(ValueRef::Real(f64::INFINITY)));
        assert!(!Integer.accepts(ValueRef::Real(1.5)));
    }

    #[test]
    fn regexp_matches() {
        let c = Connection::open_in_memory().unwrap();
        register(&c).unwrap();
        let hit: bool = c
            .query_row("SELECT regexp('^ab+c$', 'abbbc')", [], |r| r.get(0))
            .unwrap();
        assert!(hit);
        let miss: bool = c
            .query_row("SELECT regexp('(?i)^X', 'yx')", [], |r| r.get(0))
            .unwrap();
        assert!(!miss);
        assert!(
            c.query_row("SELECT regexp('(', 'x')", [], |r| r.get::<_, bool>(0))
                .is_err()
        );
        let q = |sql: &str| {
            c.query_row(sql, [], |r| r.get::<_, Option<bool>>(0))
                .unwrap()
        };
        assert_eq!(q("SELECT regexp('^1', 12)"), Some(true));
        assert_eq!(q("SELECT regexp('x', NULL)"), None);
        assert_eq!(q("SELECT regexp('x', X'78')"), Some(false));
        // Sets: any, all; NULL text matches nothing, an empty list everything.
        assert_eq!(
            q(r#"SELECT pgrst_match_any('["^a","^x"]', 'xy')"#),
            Some(true)
        );
        assert_eq!(
            q(r#"SELECT pgrst_match_any('["^a","^b"]', 'xy')"#),
            Some(false)
        );
        assert_eq!(
            q(r#"SELECT pgrst_match_all('["^x","y$"]', 'xy')"#),
            Some(true)
        );
        assert_eq!(
            q(r#"SELECT pgrst_match_all('["^x","z$"]', 'xy')"#),
            Some(false)
        );
        assert_eq!(
            q(r#"SELECT pgrst_match_any('["(?i)^X"]', 'xy')"#),
            Some(true)
        );
        assert_eq!(q(r#"SELECT pgrst_match_any('["x"]', NULL)"#), Some(false));
        assert_eq!(q(r#"SELECT pgrst_match_all('["x"]', NULL)"#), Some(false));
        assert_eq!(q("SELECT pgrst_match_all('[]', NULL)"), Some(true));
        assert_eq!(q("SELECT pgrst_match_any('[]', 'x')"), Some(false));
        // Size limits hold at run time too.
        assert!(
            c.query_row(r"SELECT regexp('\w{1000}\w{1000}', 'x')", [], |r| r
                .get::<_, bool>(0))
                .is_err()
        );
    }

    #[test]
    fn containment_follows_jsonb() {
        let j = |s: &str| serde_json::from_str::<Json>(s).unwrap();
        let cs = |a: &str, b: &str| json_contains(&j(a), &j(b), true);
        // PostgreSQL's documented examples.
        assert!(cs(r#""foo""#, r#""foo""#));
        assert!(cs("[1, 2, 3]", "[1, 3]"));
        assert!(cs("[1, 2, 3]", "[3, 1]"));
        assert!(cs("[1, 2, 3]", "[1, 2, 2]"));
        assert!(cs(
            r#"{"product": "PostgreSQL", "version": 9.4, "jsonb": true}"#,
            r#"{"version": 9.4}"#
        ));
        assert!(!cs("[1, 2, [1, 3]]", "[1, 3]"));
        assert!(cs("[1, 2, [1, 3]]", "[[1, 3]]"));
        assert!(!cs(r#"{"foo": {"bar": "baz"}}"#, r#"{"bar": "baz"}"#));
        assert!(cs(r#"{"foo": {"bar": "baz"}}"#, r#"{"foo": {}}"#));
        assert!(cs(r#"["foo", "bar"]"#, r#""bar""#));
        assert!(!cs(r#""bar""#, r#"["bar"]"#));
        assert!(cs(r#"[{"a": 1, "b": 2}]"#, r#"[{"a": 1}]"#));
        assert!(!cs(r#"[{"a": 1}]"#, r#"[{"a": 1, "b": 2}]"#));
        // Numbers by value; types matter otherwise.
        assert!(cs("[1.0, 2]", "[1]"));
        assert!(!cs(r#"["1"]"#, "[1]"));
        assert!(!cs("[true]", "[1]"));
        // The empty operand (postgrest-js sends `{}` for an empty array).
        assert!(cs("[1]", "{}") && cs("[]", "[]") && cs(r#"{"a":1}"#, "{}"));
        assert!(!cs("1", "{}"));
        // An object never contains an array, nor the reverse (`[]` included).
        assert!(!cs(r#"{"a":1}"#, "[]") && !cs("[]", r#"{"a":1}"#));
    }

    #[test]
    fn overlap_needs_a_shared_element() {
        let j = |s: &str| serde_json::from_str::<Json>(s).unwrap();
        let ov = |a: &str, b: &str| json_overlaps(&j(a), &j(b));
        assert!(ov("[1, 2]", "[2, 3]"));
        assert!(!ov("[1, 2]", "[3]"));
        assert!(!ov("[]", "[]"));
        assert!(!ov("[{}]", "{}") && !ov("{}", "{}"));
        assert!(ov(r#"["a", "b"]"#, r#""a""#));
        assert!(ov("[1]", "[1.0]"));
    }

    #[test]
    fn containment_in_sql_reads_text_as_json_and_keeps_null() {
        let c = Connection::open_in_memory().unwrap();
        register(&c).unwrap();
        let q = |sql: &str| {
            c.query_row(sql, [], |r| r.get::<_, Option<bool>>(0))
                .unwrap()
        };
        assert_eq!(
            q(r#"SELECT pgrst_contains('["a","b"]', '["b"]')"#),
            Some(true)
        );
        assert_eq!(
            q(r#"SELECT pgrst_contains('["b"]', '["a","b"]')"#),
            Some(false)
        );
        // `cd`: the column is contained in the operand.
        assert_eq!(
            q(r#"SELECT pgrst_contained('["b"]', '["a","b"]')"#),
            Some(true)
        );
        assert_eq!(
            q(r#"SELECT pgrst_contained('["a","b"]', '["b"]')"#),
            Some(false)
        );
        assert_eq!(q("SELECT pgrst_contains(NULL, '[1]')"), None);
        assert_eq!(q("SELECT pgrst_contains('[1,2]', NULL)"), None);
        // Text that is not JSON is a string; numbers are numbers.
        assert_eq!(
            q(r#"SELECT pgrst_contains('plain', '"plain"')"#),
            Some(true)
        );
        assert_eq!(q("SELECT pgrst_contains(4, '4')"), Some(true));
        assert_eq!(q("SELECT pgrst_overlaps('[1,2]', '[2]')"), Some(true));
        assert_eq!(q("SELECT pgrst_overlaps(X'00', '[2]')"), None);
        // A column against a constant operand, row by row.
        c.execute_batch(r#"CREATE TABLE t (id INTEGER, tags TEXT); INSERT INTO t VALUES (1, '["x","y"]'), (2, '["y"]'), (3, NULL), (4, 'not json');"#).unwrap();
        let ids: Vec<i64> = c
            .prepare("SELECT id FROM t WHERE pgrst_contains(tags, ?1) ORDER BY id")
            .unwrap()
            .query_map([r#"["y"]"#], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(ids, [1, 2]);
    }

    #[test]
    fn insert_counter_counts_upserted_inserts() {
        let c = Connection::open_in_memory().unwrap();
        let n = register_insert_counter(&c).unwrap();
        c.execute_batch(
            "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');",
        )
        .unwrap();
        n.reset();
        c.execute(
            "INSERT INTO t (k, v) SELECT value ->> '$.k', value ->> '$.v' FROM json_each(?1) \
             WHERE pgrst_ins(1) ON CONFLICT (k) DO UPDATE SET v = excluded.v WHERE pgrst_ins(-1)",
            [r#"[{"k":1,"v":"b"},{"k":2,"v":"c"},{"k":3,"v":"d"}]"#],
        )
        .unwrap();
        assert_eq!(n.get(), 2);
    }
}
