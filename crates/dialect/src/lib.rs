//! The PostgREST dialect, mapped onto SQLite.
//!
//! Owns the path from a request's URL, headers and body to SQL and back: the schema cache
//! ([`schema`]), the parsers for PostgREST's query grammar ([`query`]) and headers
//! ([`headers`]), the planner that checks every identifier against the cache ([`plan`]), the SQL
//! builder that quotes every identifier and binds every value ([`sql`]), running a plan on a
//! connection ([`exec`]) and shaping rows into JSON or CSV ([`shape`]). Writes take the same
//! path: request bodies ([`body`]), the write planner ([`write`]), DML ([`dml`]) and running
//! it inside the caller's transaction ([`exec_write`]). Errors are worded for the client
//! ([`wording`]): constraint violations as PostgreSQL words them, naming nothing hidden. It knows no HTTP server and no
//! connection pool: callers hand it a `rusqlite::Connection`.

// `ApiError` travels only on the cold error path; boxing it would buy nothing measurable.
#![allow(clippy::result_large_err)]
// Items are `pub` only when the facade below re-exports them.
#![warn(unreachable_pub)]

mod body;
mod dml;
mod error;
mod exec;
mod exec_write;
mod fts;
mod functions;
mod headers;
mod ident;
mod plan;
mod query;
mod schema;
mod shape;
mod sql;
mod wording;
mod write;

// The API: what the server (and the tests and benchmarks) name. Everything else is
// `pub(crate)`, so the compiler reports what nobody uses.

// The read path: URL → plan → SQL → rows → body.
pub use exec::{
    BodyStream, ReadHead, ReadOutcome, ReadOutput, execute_read, read as execute_read_streaming,
};
pub use plan::{Condition, Limits, Predicate, ReadNode, ReadPlan, plan_read, resolve_relation};
pub use query::{QueryParams, canonical_query, decode_component};
// The write path: body → plan → DML in the caller's transaction → representation.
pub use body::{BodyFormat, Payload, csv_header, parse_payload};
pub use exec_write::{WriteOutput, execute_write};
pub use sql::Sql;
pub use write::{
    MAX_REPRESENTATION_BYTES, Mutation, WriteOptions, WritePlan, WriteRequest, check_names,
    plan_write,
};
// Headers, errors, the schema cache and the SQL functions every connection needs.
pub use error::ApiError;
pub use functions::{
    InsertCounter, register as register_functions, register_budget, register_insert_counter,
};
pub use headers::{
    Choice, CountMethod, MediaType, Preferences, RequestHeaders, check_profile, parse_range,
};
pub use schema::{Exposure, Relation, SchemaCache, schema_version};
