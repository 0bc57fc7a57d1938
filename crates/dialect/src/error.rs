//! The one error type of the API, rendered in PostgREST's shape `{code, message, details, hint}`.
//!
//! Every failure a request can meet — a parse error, an unknown name, a bad token, a SQLite
//! error — becomes an [`ApiError`] carrying its HTTP status, its PostgREST (`PGRSTnnn`) or
//! SQLSTATE code and any extra headers (e.g. `Content-Range` on 416). SQLite result codes are
//! translated here. Constraint violations get PostgreSQL's wording without any name (SQLite's
//! text can name a table the caller cannot see, reached through a trigger); the text is kept
//! aside so [`ApiError::for_client`] (see `crate::wording`) can name what the caller may see.

use serde_json::{Value, json};

/// A PostgREST-shaped error with its HTTP status and extra response headers.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub details: Option<Value>,
    pub hint: Option<String>,
    /// Headers to add to the error response (name, value).
    pub headers: Vec<(&'static str, String)>,
    /// SQLite's own text of the error, never sent (see `crate::wording`).
    pub(crate) sqlite: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            details: None,
            hint: None,
            headers: Vec::new(),
            sqlite: None,
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(Value::String(details.into()));
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        let v = json!({
            "code": self.code,
            "message": self.message,
            "details": self.details,
            "hint": self.hint,
        });
        v.to_string().into_bytes()
    }

    /// PGRST100: the query string did not parse. `column` is 1-based.
    pub fn parse(part: &str, input: &str, column: usize, details: impl Into<String>) -> Self {
        ApiError::new(
            400,
            "PGRST100",
            format!("\"failed to parse {part} ({input})\" (line 1, column {column})"),
        )
        .with_details(details)
    }

    /// PGRST205: the relation is unknown (or not exposed, which must look the same).
    pub fn unknown_relation(name: &str, suggestion: Option<&str>) -> Self {
        let e = ApiError::new(
            404,
            "PGRST205",
            format!("Could not find the table 'public.{name}' in the schema cache"),
        );
        match suggestion {
            Some(s) => e.with_hint(format!("Perhaps you meant the table 'public.{s}'")),
            None => e,
        }
    }

    /// 42703: a column the relation does not have.
    pub fn unknown_column(relation: &str, column: &str) -> Self {
        ApiError::new(
            400,
            "42703",
            format!("column {relation}.{column} does not exist"),
        )
    }

    /// PGRST116: a singular response was asked for, but the result has `n` rows.
    pub fn singular(n: usize) -> Self {
        ApiError::new(
            406,
            "PGRST116",
            "Cannot coerce the result to a single JSON object",
        )
        .with_details(format!("The result contains {n} rows"))
    }

    /// PGRST103: the requested range cannot be satisfied.
    pub fn range(details: impl Into<String>) -> Self {
        ApiError::new(416, "PGRST103", "Requested range not satisfiable").with_details(details)
    }

    /// PGRST127: a feature PostgREST has that this server does not (yet) offer.
    pub fn not_implemented(details: impl Into<String>) -> Self {
        ApiError::new(400, "PGRST127", "Feature not implemented").with_details(details)
    }

    /// PGRST108: a filter, order or limit names an embed that is not in `select`.
    pub fn not_embedded(name: &str) -> Self {
        ApiError::new(
            400,
            "PGRST108",
            format!("'{name}' is not an embedded resource in this request"),
        )
        .with_hint(format!(
            "Verify that '{name}' is included in the 'select' query parameter."
        ))
    }

    /// PGRST500-style internal error, without leaking internals.
    pub fn internal(details: impl Into<String>) -> Self {
        ApiError::new(500, "PGRSTX00", "Internal server error").with_details(details)
    }

    /// Translates a SQLite error (extended result code) into SQLSTATE and HTTP status. The
    /// message is SQLite's own text; no SQL text or file path is ever included.
    pub fn from_sqlite(err: &rusqlite::Error) -> Self {
        use rusqlite::ffi;
        let (code, msg) = match err {
            rusqlite::Error::SqliteFailure(e, msg) => (
                e.extended_code,
                msg.clone().unwrap_or_else(|| e.to_string()),
            ),
            // A prepare error; its SQL text and offset stay out of the response.
            rusqlite::Error::SqlInputError { error, msg, .. } => (error.extended_code, msg.clone()),
            rusqlite::Error::MultipleStatement => {
                return ApiError::new(400, "42601", "multiple statements are not allowed");
            }
            other => return ApiError::internal(other.to_string()),
        };
        let primary = code & 0xff;
        let raw = msg.clone();
        let (status, sqlstate, message) = match (code, primary) {
            (ffi::SQLITE_CONSTRAINT_PRIMARYKEY | ffi::SQLITE_CONSTRAINT_UNIQUE, _) => (
                409,
                "23505",
                "duplicate key value violates unique constraint".into(),
            ),
            (ffi::SQLITE_CONSTRAINT_FOREIGNKEY, _) => {
                (409, "23503", "a foreign key constraint is violated".into())
            }
            (ffi::SQLITE_CONSTRAINT_NOTNULL, _) => (
                400,
                "23502",
                "null value violates not-null constraint".into(),
            ),
            (ffi::SQLITE_CONSTRAINT_CHECK, _) => {
                (400, "23514", "new row violates check constraint".into())
            }
            (ffi::SQLITE_CONSTRAINT_DATATYPE, _) => (
                400,
                "22P02",
                "invalid input value for the column's type".into(),
            ),
            (_, ffi::SQLITE_MISMATCH) => (400, "22P02", msg),
            (ffi::SQLITE_CONSTRAINT_TRIGGER, _) => (400, "P0001", msg),
            (_, ffi::SQLITE_READONLY) => (
                405,
                "25006",
                "cannot execute in a read-only transaction".into(),
            ),
            (_, ffi::SQLITE_AUTH) => (403, "42501", "permission denied".into()),
            (_, ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED) => {
                return ApiError::new(503, "PGRST003", "The database is busy.")
                    .with_header("Retry-After", "1");
            }
            (_, ffi::SQLITE_INTERRUPT) => (
                504,
                "57014",
                "canceling statement due to statement timeout".into(),
            ),
            (_, ffi::SQLITE_FULL) => (503, "53100", msg),
            (_, ffi::SQLITE_NOMEM) => (503, "53200", msg),
            (_, ffi::SQLITE_TOOBIG) => (400, "54000", msg),
            (_, ffi::SQLITE_IOERR) => (500, "58030", "disk I/O error".into()),
            (_, ffi::SQLITE_CORRUPT) => (500, "XX001", "database disk image is malformed".into()),
            (_, ffi::SQLITE_CANTOPEN) => {
                return ApiError::new(503, "PGRST000", "Database connection error.");
            }
            (_, ffi::SQLITE_ERROR) if msg.starts_with("no such column") => (400, "42703", msg),
            (_, ffi::SQLITE_ERROR) if msg.starts_with("no such table") => (404, "42P01", msg),
            (_, ffi::SQLITE_ERROR) if msg.starts_with("no such function") => (404, "42883", msg),
            // A written value its column's type cannot hold (`functions::typed`).
            (_, ffi::SQLITE_ERROR) if msg.starts_with(crate::functions::INVALID_INPUT) => {
                (400, "22P02", msg)
            }
            (_, ffi::SQLITE_ERROR)
                if msg.contains("malformed JSON") || msg.contains("bad JSON path") =>
            {
                (400, "22P02", msg)
            }
            // A full-text query FTS5 rejects (our translation quotes every word, so this is a
            // limit such as FTS5's parser depth).
            (_, ffi::SQLITE_ERROR) if msg.starts_with("fts5:") => (400, "42601", msg),
            // Any other SQL error a request can cause (a bad regular expression at run time, …).
            (_, ffi::SQLITE_ERROR) => (400, "22000", msg),
            _ => (500, "XX000", msg),
        };
        let mut e = ApiError::new(status, sqlstate, message);
        e.sqlite = Some(raw);
        e
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::from_sqlite(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_all_four_keys() {
        let e = ApiError::singular(3);
        let v: Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["code"], "PGRST116");
        assert_eq!(v["details"], "The result contains 3 rows");
        assert!(v["hint"].is_null());
        assert_eq!(e.status, 406);
    }

    #[test]
    fn parse_error_message_matches_postgrest() {
        let e = ApiError::parse("order", "id.asc.nullslasttt", 17, "unexpected 't'");
        assert_eq!(
            e.message,
            "\"failed to parse order (id.asc.nullslasttt)\" (line 1, column 17)"
        );
    }

    #[test]
    fn sqlite_errors_map_to_sqlstate_and_status() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE p (id INTEGER PRIMARY KEY);
             CREATE TABLE t (id INTEGER PRIMARY KEY, u TEXT UNIQUE, n TEXT NOT NULL,
                             c INTEGER CHECK (c > 0), p INTEGER REFERENCES p(id));
             INSERT INTO t VALUES (1, 'a', 'x', 1, NULL);",
        )
        .unwrap();
        let code = |sql: &str| {
            let e = ApiError::from_sqlite(&c.execute(sql, []).unwrap_err());
            (e.status, e.code)
        };
        assert_eq!(
            code("INSERT INTO t VALUES (1, 'b', 'x', 1, NULL)"),
            (409, "23505".into())
        );
        assert_eq!(
            code("INSERT INTO t VALUES (2, 'a', 'x', 1, NULL)"),
            (409, "23505".into())
        );
        assert_eq!(
            code("INSERT INTO t VALUES (2, 'b', NULL, 1, NULL)"),
            (400, "23502".into())
        );
        assert_eq!(
            code("INSERT INTO t VALUES (2, 'b', 'x', 0, NULL)"),
            (400, "23514".into())
        );
        assert_eq!(
            code("INSERT INTO t VALUES (2, 'b', 'x', 1, 9)"),
            (409, "23503".into())
        );
        assert_eq!(code("SELECT nope FROM t"), (400, "42703".into()));
        assert_eq!(code("SELECT * FROM nope"), (404, "42P01".into()));
        assert_eq!(code("SELECT nope(1)"), (404, "42883".into()));
        c.execute_batch("CREATE VIRTUAL TABLE ft USING fts5(x)")
            .unwrap();
        assert_eq!(
            code("SELECT * FROM ft WHERE ft MATCH 'AND'"),
            (400, "42601".into())
        );
        c.pragma_update(None, "query_only", true).unwrap();
        assert_eq!(code("DELETE FROM t"), (405, "25006".into()));
    }
}
