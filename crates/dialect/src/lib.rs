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

pub mod body;
pub mod dml;
pub mod error;
pub mod exec;
pub mod exec_write;
pub mod fts;
pub mod functions;
pub mod headers;
pub mod ident;
pub mod plan;
pub mod query;
pub mod schema;
pub mod shape;
pub mod sql;
pub mod wording;
pub mod write;

pub use body::{BodyFormat, Payload, parse_payload};
pub use error::ApiError;
pub use exec::{BodyStream, ReadHead, ReadOutcome, ReadOutput, execute_read};
pub use exec_write::{WriteOutput, execute_write};
pub use headers::{CountMethod, MediaType, Preferences, RequestHeaders};
pub use plan::{Limits, ReadPlan, plan_read};
pub use query::QueryParams;
pub use schema::{Exposure, Relation, SchemaCache};
pub use write::{Mutation, WriteOptions, WritePlan, WriteRequest, plan_write};
