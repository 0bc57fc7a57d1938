//! The one error type of the API, rendered in PostgREST's shape `{code, message, details, hint}`.
//!
//! Every failure a request can meet — a parse error, an unknown name, a bad token, a SQLite
//! error — becomes an [`ApiError`] carrying its HTTP status, its PostgREST (`PGRSTnnn`) or
//! SQLSTATE code and any extra headers (e.g. `Content-Range` on 416). SQLite result codes are
//! translated here. Constraint violations get PostgreSQL's wording without any name (SQLite's
//! text can name a table the caller cannot see, reached through a trigger); the text is kept
//! aside so [`ApiError::for_client`] (see `crate::wording`) can name what the caller may see.

use serde_json::{Value, json};

/// Declares [`ErrorCode`]: each variant with the code it is sent as.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal,)*) => {
        /// The code of an error, as the `code` field of its body sends it: PostgREST's own
        /// (`PGRSTnnn`), a SQLSTATE PostgreSQL would give, or sqlite-rest's own (`SRnnn`,
        /// `SQLRESTnnn`). Callers branch on these variants, never on the text; the text is
        /// written in one place ([`ErrorCode::as_str`]).
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
        }

        impl ErrorCode {
            /// Every code, for tests that check them all.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The code as the response body sends it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $code,)*
                }
            }
        }
    };
}

error_codes! {
    // PostgREST's codes.
    /// The database cannot be opened or reached.
    DbConnection = "PGRST000",
    /// The schema cache could not be loaded.
    SchemaCacheLoad = "PGRST002",
    /// No connection in time, or the database is busy.
    PoolTimeout = "PGRST003",
    /// The query string did not parse.
    QueryParse = "PGRST100",
    /// A function called with a method it does not accept.
    RpcMethod = "PGRST101",
    /// The body did not parse (or could not be read).
    InvalidBody = "PGRST102",
    /// The range cannot be satisfied.
    InvalidRange = "PGRST103",
    /// A PUT whose filters are not exactly the primary key.
    InvalidPut = "PGRST105",
    /// A schema that is not exposed.
    InvalidSchema = "PGRST106",
    /// No producible media type in `Accept`.
    NotAcceptable = "PGRST107",
    /// A filter, order or limit names an embed that is not selected.
    NotEmbedded = "PGRST108",
    /// `limit`/`offset` on a PUT.
    PutLimitOffset = "PGRST114",
    /// A PUT whose payload does not match its URL's key.
    PutKeyMismatch = "PGRST115",
    /// A singular response over anything but one row.
    Singular = "PGRST116",
    /// An HTTP method the API does not serve.
    UnsupportedMethod = "PGRST117",
    /// An order on a related resource that is not to-one.
    RelatedOrder = "PGRST118",
    /// A spread of a resource that is not to-one.
    Spread = "PGRST119",
    /// A filter on an embed other than `is.null`.
    EmbedFilter = "PGRST120",
    /// Invalid preferences under `handling=strict`.
    InvalidPreferences = "PGRST122",
    /// Aggregates while they are disabled.
    AggregatesDisabled = "PGRST123",
    /// More rows than `max-affected` allows.
    MaxAffected = "PGRST124",
    /// A path the API does not serve.
    InvalidPath = "PGRST125",
    /// The root endpoint (`GET /`) while it is disabled.
    RootDisabled = "PGRST126",
    /// A feature PostgREST has that this server does not offer.
    NotImplemented = "PGRST127",
    /// No relationship between two resources.
    NoRelationship = "PGRST200",
    /// More than one relationship between two resources.
    AmbiguousRelationship = "PGRST201",
    /// An unknown function or argument set.
    UnknownFunction = "PGRST202",
    /// More than one function matches the arguments.
    AmbiguousFunction = "PGRST203",
    /// A column the relation does not have (named by `columns` or a body).
    UnknownPayloadColumn = "PGRST204",
    /// An unknown (or hidden) relation.
    UnknownRelation = "PGRST205",
    /// JWTs are configured without a secret.
    JwtSecretMissing = "PGRST300",
    /// A JWT that does not decode or verify.
    JwtInvalid = "PGRST301",
    /// A request without a token while anonymous access is off.
    AnonymousDisabled = "PGRST302",
    /// A JWT whose claims are invalid (expired, not yet valid, …).
    JwtClaims = "PGRST303",
    /// An internal error, without its internals.
    Internal = "PGRSTX00",
    // SQLSTATEs, as PostgreSQL would answer.
    /// `21000` cardinality_violation (an unfiltered PATCH/DELETE under safe updates).
    CardinalityViolation = "21000",
    /// `22000` data_exception.
    DataException = "22000",
    /// `22003` numeric_value_out_of_range.
    NumericValueOutOfRange = "22003",
    /// `2201B` invalid_regular_expression.
    InvalidRegex = "2201B",
    /// `22021` character_not_in_repertoire.
    CharacterNotInRepertoire = "22021",
    /// `22023` invalid_parameter_value.
    InvalidParameterValue = "22023",
    /// `22P02` invalid_text_representation.
    InvalidTextRepresentation = "22P02",
    /// `23502` not_null_violation.
    NotNullViolation = "23502",
    /// `23503` foreign_key_violation.
    ForeignKeyViolation = "23503",
    /// `23505` unique_violation.
    UniqueViolation = "23505",
    /// `23514` check_violation.
    CheckViolation = "23514",
    /// `25006` read_only_sql_transaction.
    ReadOnlyTransaction = "25006",
    /// `42501` insufficient_privilege.
    InsufficientPrivilege = "42501",
    /// `42601` syntax_error.
    SyntaxError = "42601",
    /// `42803` grouping_error.
    GroupingError = "42803",
    /// `42703` undefined_column.
    UndefinedColumn = "42703",
    /// `42704` undefined_object.
    UndefinedObject = "42704",
    /// `42883` undefined_function.
    UndefinedFunction = "42883",
    /// `42P01` undefined_table.
    UndefinedTable = "42P01",
    /// `42P10` invalid_column_reference.
    InvalidColumnReference = "42P10",
    /// `53100` disk_full.
    DiskFull = "53100",
    /// `53200` out_of_memory.
    OutOfMemory = "53200",
    /// `54000` program_limit_exceeded.
    ProgramLimitExceeded = "54000",
    /// `54001` statement_too_complex.
    StatementTooComplex = "54001",
    /// `55000` object_not_in_prerequisite_state.
    ObjectNotInPrerequisiteState = "55000",
    /// `57014` query_canceled: the request's time budget ran out.
    QueryCanceled = "57014",
    /// `58030` io_error.
    IoError = "58030",
    /// `P0001` raise_exception (a trigger's `RAISE`).
    RaiseException = "P0001",
    /// `XX000` internal_error.
    InternalError = "XX000",
    /// `XX001` data_corrupted.
    DataCorrupted = "XX001",
    // sqlite-rest's own.
    /// The write committed locally but is not confirmed on the replica.
    NotReplicated = "SR001",
    /// An invalid value of one of sqlite-rest's own preferences.
    InvalidOwnPreference = "SR002",
    /// `Prefer: min-txid` not reached in time.
    PositionNotReached = "SR003",
    /// The body did not arrive within the request's time budget.
    BodyTimeout = "SQLREST408",
    /// The body is larger than allowed.
    PayloadTooLarge = "SQLREST413",
    /// The URI is longer than allowed.
    UriTooLong = "SQLREST414",
    /// The headers are larger than allowed.
    HeadersTooLarge = "SQLREST431",
    /// The client went away; nobody sees this error, it only stops the work.
    ClientGone = "SQLREST499",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A PostgREST-shaped error with its HTTP status and extra response headers.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: ErrorCode,
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
    pub fn new(status: u16, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
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
            "code": self.code.as_str(),
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
            ErrorCode::QueryParse,
            format!("\"failed to parse {part} ({input})\" (line 1, column {column})"),
        )
        .with_details(details)
    }

    /// PGRST205: the relation is unknown (or not exposed, which must look the same).
    pub fn unknown_relation(name: &str, suggestion: Option<&str>) -> Self {
        let e = ApiError::new(
            404,
            ErrorCode::UnknownRelation,
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
            ErrorCode::UndefinedColumn,
            format!("column {relation}.{column} does not exist"),
        )
    }

    /// PGRST116: a singular response was asked for, but the result has `n` rows.
    pub fn singular(n: usize) -> Self {
        ApiError::new(
            406,
            ErrorCode::Singular,
            "Cannot coerce the result to a single JSON object",
        )
        .with_details(format!("The result contains {n} rows"))
    }

    /// PGRST103: the requested range cannot be satisfied.
    pub fn range(details: impl Into<String>) -> Self {
        ApiError::new(
            416,
            ErrorCode::InvalidRange,
            "Requested range not satisfiable",
        )
        .with_details(details)
    }

    /// PGRST127: a feature PostgREST has that this server does not (yet) offer.
    pub fn not_implemented(details: impl Into<String>) -> Self {
        ApiError::new(400, ErrorCode::NotImplemented, "Feature not implemented")
            .with_details(details)
    }

    /// PGRST108: a filter, order or limit names an embed that is not in `select`.
    pub fn not_embedded(name: &str) -> Self {
        ApiError::new(
            400,
            ErrorCode::NotEmbedded,
            format!("'{name}' is not an embedded resource in this request"),
        )
        .with_hint(format!(
            "Verify that '{name}' is included in the 'select' query parameter."
        ))
    }

    /// PGRST500-style internal error, without leaking internals.
    pub fn internal(details: impl Into<String>) -> Self {
        ApiError::new(500, ErrorCode::Internal, "Internal server error").with_details(details)
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
                return ApiError::new(
                    400,
                    ErrorCode::SyntaxError,
                    "multiple statements are not allowed",
                );
            }
            other => return ApiError::internal(other.to_string()),
        };
        let primary = code & 0xff;
        let raw = msg.clone();
        let (status, sqlstate, message) = match (code, primary) {
            (ffi::SQLITE_CONSTRAINT_PRIMARYKEY | ffi::SQLITE_CONSTRAINT_UNIQUE, _) => (
                409,
                ErrorCode::UniqueViolation,
                "duplicate key value violates unique constraint".into(),
            ),
            (ffi::SQLITE_CONSTRAINT_FOREIGNKEY, _) => (
                409,
                ErrorCode::ForeignKeyViolation,
                "a foreign key constraint is violated".into(),
            ),
            (ffi::SQLITE_CONSTRAINT_NOTNULL, _) => (
                400,
                ErrorCode::NotNullViolation,
                "null value violates not-null constraint".into(),
            ),
            (ffi::SQLITE_CONSTRAINT_CHECK, _) => (
                400,
                ErrorCode::CheckViolation,
                "new row violates check constraint".into(),
            ),
            (ffi::SQLITE_CONSTRAINT_DATATYPE, _) => (
                400,
                ErrorCode::InvalidTextRepresentation,
                "invalid input value for the column's type".into(),
            ),
            (_, ffi::SQLITE_MISMATCH) => (400, ErrorCode::InvalidTextRepresentation, msg),
            (ffi::SQLITE_CONSTRAINT_TRIGGER, _) => (400, ErrorCode::RaiseException, msg),
            (_, ffi::SQLITE_READONLY) => (
                405,
                ErrorCode::ReadOnlyTransaction,
                "cannot execute in a read-only transaction".into(),
            ),
            (_, ffi::SQLITE_AUTH) => (
                403,
                ErrorCode::InsufficientPrivilege,
                "permission denied".into(),
            ),
            (_, ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED) => {
                return ApiError::new(503, ErrorCode::PoolTimeout, "The database is busy.")
                    .with_header("Retry-After", "1");
            }
            (_, ffi::SQLITE_INTERRUPT) => (
                504,
                ErrorCode::QueryCanceled,
                "canceling statement due to statement timeout".into(),
            ),
            (_, ffi::SQLITE_FULL) => (503, ErrorCode::DiskFull, msg),
            (_, ffi::SQLITE_NOMEM) => (503, ErrorCode::OutOfMemory, msg),
            (_, ffi::SQLITE_TOOBIG) => (400, ErrorCode::ProgramLimitExceeded, msg),
            (_, ffi::SQLITE_IOERR) => (500, ErrorCode::IoError, "disk I/O error".into()),
            (_, ffi::SQLITE_CORRUPT) => (
                500,
                ErrorCode::DataCorrupted,
                "database disk image is malformed".into(),
            ),
            (_, ffi::SQLITE_CANTOPEN) => {
                return ApiError::new(503, ErrorCode::DbConnection, "Database connection error.");
            }
            (_, ffi::SQLITE_ERROR) if msg.starts_with("no such column") => {
                (400, ErrorCode::UndefinedColumn, msg)
            }
            (_, ffi::SQLITE_ERROR) if msg.starts_with("no such table") => {
                (404, ErrorCode::UndefinedTable, msg)
            }
            (_, ffi::SQLITE_ERROR) if msg.starts_with("no such function") => {
                (404, ErrorCode::UndefinedFunction, msg)
            }
            // A role's row check in a write (`functions::rls`).
            (_, ffi::SQLITE_ERROR) if msg.starts_with(crate::functions::RLS_VIOLATION) => {
                (403, ErrorCode::InsufficientPrivilege, msg)
            }
            // A written value its column's type cannot hold (`functions::typed`).
            (_, ffi::SQLITE_ERROR) if msg.starts_with(crate::functions::INVALID_INPUT) => {
                (400, ErrorCode::InvalidTextRepresentation, msg)
            }
            // `sum()` of integers past i64 (PostgreSQL's bigint range).
            (_, ffi::SQLITE_ERROR) if msg == "integer overflow" => (
                400,
                ErrorCode::NumericValueOutOfRange,
                "bigint out of range".into(),
            ),
            (_, ffi::SQLITE_ERROR)
                if msg.contains("malformed JSON") || msg.contains("bad JSON path") =>
            {
                (400, ErrorCode::InvalidTextRepresentation, msg)
            }
            // A full-text query FTS5 rejects (our translation quotes every word, so this is a
            // limit such as FTS5's parser depth).
            (_, ffi::SQLITE_ERROR) if msg.starts_with("fts5:") => {
                (400, ErrorCode::SyntaxError, msg)
            }
            // Any other SQL error a request can cause (a bad regular expression at run time, …).
            (_, ffi::SQLITE_ERROR) => (400, ErrorCode::DataException, msg),
            _ => (500, ErrorCode::InternalError, msg),
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
    fn codes_are_distinct_and_shaped() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} names two variants");
            let shaped = match s.len() {
                5 => s
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
                8 => s.starts_with("PGRST"),
                10 => s.starts_with("SQLREST"),
                _ => false,
            };
            assert!(shaped, "{s} is not a code's shape");
        }
        assert_eq!(
            ApiError::new(404, ErrorCode::UnknownRelation, "m").body(),
            br#"{"code":"PGRST205","details":null,"hint":null,"message":"m"}"#
        );
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
            (e.status, e.code.as_str())
        };
        assert_eq!(
            code("INSERT INTO t VALUES (1, 'b', 'x', 1, NULL)"),
            (409, "23505")
        );
        assert_eq!(
            code("INSERT INTO t VALUES (2, 'a', 'x', 1, NULL)"),
            (409, "23505")
        );
        assert_eq!(
            code("INSERT INTO t VALUES (2, 'b', NULL, 1, NULL)"),
            (400, "23502")
        );
        assert_eq!(
            code("INSERT INTO t VALUES (2, 'b', 'x', 0, NULL)"),
            (400, "23514")
        );
        assert_eq!(
            code("INSERT INTO t VALUES (2, 'b', 'x', 1, 9)"),
            (409, "23503")
        );
        assert_eq!(code("SELECT nope FROM t"), (400, "42703"));
        assert_eq!(code("SELECT * FROM nope"), (404, "42P01"));
        assert_eq!(code("SELECT nope(1)"), (404, "42883"));
        c.execute_batch("CREATE VIRTUAL TABLE ft USING fts5(x)")
            .unwrap();
        assert_eq!(
            code("SELECT * FROM ft WHERE ft MATCH 'AND'"),
            (400, "42601")
        );
        c.pragma_update(None, "query_only", true).unwrap();
        assert_eq!(code("DELETE FROM t"), (405, "25006"));
    }
}
