//! The PostgREST dialect, mapped onto SQLite (`docs/postgrest-dialect.md`).
//!
//! Owns the path from a request's URL, headers and body to SQL and back. It knows no HTTP
//! server and no connection pool: callers hand it a `rusqlite::Connection`. Every identifier is
//! checked against the schema cache before it reaches SQL, and every value is bound.
//!
//! # Layout
//!
//! The modules are private; the API is what this file re-exports.
//!
//! The seam — one typed call each way, reads and writes alike:
//!
//! - `exchange.rs`: a [`Request`] (method, relation, query string, the headers the dialect
//!   reads) in, a [`Response`] (status, typed [`ResponseHeaders`], [`Body`]) out, in three
//!   steps: [`ReadCall::prepare`] / [`WriteCall::prepare`] (parse, no schema needed),
//!   `run` (plan against the schema cache, execute on the caller's connection), and
//!   [`ReadAnswer`] / [`WriteAnswer`] (the response). The server keeps the transport:
//!   authentication, limits, deadlines, pools, durability waits, metrics.
//!
//! Reads — URL → plan → SQL → rows → body:
//!
//! - `query/`: PostgREST's query-string grammar parsed into a syntax tree ([`QueryParams`]):
//!   `syntax.rs` (the tree), `lexer.rs`, `params.rs` (the query string as a whole) and one
//!   parser per parameter (`select.rs`, `filter.rs`, `logic.rs`, `order.rs`).
//! - `headers.rs`: `Prefer`, `Accept`, `Range` and the profile headers ([`RequestHeaders`]),
//!   and `Preference-Applied` ([`PreferenceApplied`], rendered in one place).
//! - `schema_cache.rs`: the schema cache ([`SchemaCache`]) — relations, columns, keys, the
//!   allow-list ([`Exposure`]) and "did you mean" hints; `relationships.rs`: the
//!   relationships between relations that resource embedding follows ([`Relationships`]); `fts/`: FTS5 indexes found in the
//!   schema and PostgreSQL's full-text query syntaxes translated to FTS5.
//! - `read/`, the same three steps as `write/` — `read/plan/`: the read planner
//!   ([`plan_read`] → [`ReadPlan`]): `tree.rs` (the plan's types), `planner.rs`,
//!   `fields.rs`, `conditions.rs`, `patterns.rs`, `full_text.rs`; `read/sql.rs`: its SELECT;
//!   `read/exec.rs`: running it ([`execute_read`], [`execute_read_streaming`]);
//!   `read/plan_cache.rs`: plans, page statements and shapers kept by the request's shape
//!   with its bound values masked ([`PlanCache`], used by [`ReadCall::prepare_cached`]).
//! - `shape.rs`: rows straight to JSON or CSV bytes.
//!
//! Writes — body → plan → DML in the caller's transaction → representation:
//!
//! - `write/body.rs`: JSON, CSV and form bodies ([`parse_payload`] → [`Payload`]);
//!   `write/plan.rs`: the write planner ([`plan_write`] → [`WritePlan`]); `write/sql.rs`: its
//!   INSERT/UPDATE/DELETE; `write/exec.rs`: running it ([`execute_write`]).
//!
//! One SQL builder for both: `sql.rs` ([`Sql`]: text plus bound parameters, one binder);
//! `ident.rs`: identifier quoting.
//!
//! RPC — `rpc/`: functions defined as SQL files and calls to them ([`RpcFunction`],
//! [`RpcFunctions`], [`RpcCall`], [`execute_rpc`]); a set result is read through the read
//! planner with the function's statement as the relation.
//!
//! Shared:
//!
//! - `access.rs`: what one role may do ([`RoleGrants`], [`Access`]): privileges per relation,
//!   column lists and row filters with claim placeholders, applied by both planners.
//! - `error.rs`: [`ApiError`], PostgREST's error shape with its typed code ([`ErrorCode`],
//!   every code we send, written in one place), and SQLite errors mapped to it;
//!   `wording.rs`: constraint violations in PostgreSQL's words, naming nothing hidden.
//! - `openapi.rs`: the OpenAPI 3.1 document of `GET /` ([`openapi_document`]), from the
//!   schema cache, with [`FunctionDoc`] for the functions under `/rpc/`.
//! - `functions.rs`: the SQL functions every connection registers ([`register_functions`],
//!   [`register_budget`], [`register_insert_counter`]).

// `ApiError` travels only on the cold error path; boxing it would buy nothing measurable.
#![allow(clippy::result_large_err)]
// Items are `pub` only when the facade below re-exports them.
#![warn(unreachable_pub)]

mod access;
mod error;
mod exchange;
mod fts;
mod functions;
mod headers;
mod ident;
mod openapi;
mod query;
mod read;
mod relationships;
mod rpc;
mod schema_cache;
mod shape;
mod sql;
mod wording;
mod write;

// The API: what the server (and the tests and benchmarks) name. Everything else is
// `pub(crate)`, so the compiler reports what nobody uses.

// The seam: one typed request in, one typed response out, reads and writes alike.
pub use exchange::{
    Body, Method, PayloadFormat, ReadAnswer, ReadCall, Request, RequestHeaderValues, Response,
    ResponseHeaders, WriteAnswer, WriteCall,
};
// The read path: URL → plan → SQL → rows → body.
pub use query::{QueryParams, canonical_query, decode_component};
pub use read::exec::{
    BodyStream, ReadHead, ReadOutcome, ReadOutput, execute_read, read as execute_read_streaming,
    read_sql,
};
pub use read::plan::{
    Condition, Limits, MAX_EMBED_DEPTH, MAX_EMBED_FIELDS, MAX_EMBEDS, Predicate, ReadNode,
    ReadPlan, plan_read, plan_read_as, resolve_relation,
};
pub use read::plan_cache::{PlanCache, PlanCacheStats};
// The write path: body → plan → DML in the caller's transaction → representation.
pub use sql::{Sql, with_statement_tag};
pub use write::body::{BodyFormat, Payload, csv_header, parse_payload};
pub use write::exec::{WriteOutput, execute_write};
pub use write::plan::{
    MAX_REPRESENTATION_BYTES, Mutation, WriteOptions, WritePlan, WriteRequest, check_names,
    plan_write, plan_write_as,
};
// Roles: what each may read and write (the permissions file, enforced by the planners).
pub use access::{Access, Grant, Privilege, RelationGrants, RoleFilters, RoleGrants, RowFilter};
// Headers, errors, the schema cache and the SQL functions every connection needs.
pub use error::{ApiError, ErrorCode};
pub use functions::{
    InsertCounter, register as register_functions, register_budget, register_insert_counter,
};
pub use headers::{
    AppliedPreference, Choice, CountMethod, Durability, MediaType, PreferenceApplied, Preferences,
    RequestHeaders, check_profile, parse_range,
};
pub use openapi::{
    CONTENT_TYPE as OPENAPI_CONTENT_TYPE, DocOptions, Exposed, FunctionColumn, FunctionDoc,
    FunctionParam, FunctionReturns, Operation, Visibility, document as openapi_document,
    negotiate_root as negotiate_openapi,
};
pub use relationships::{Cardinality, Junction, Relationship, Relationships};
pub use schema_cache::{Exposure, RelKind, Relation, SchemaCache, Source, schema_version};
// RPC over named SQL files.
pub use rpc::{
    Args as RpcArgs, Call as RpcCall, CallRead as RpcRead, Function as RpcFunction,
    Functions as RpcFunctions, Param as RpcParam, ParamType as RpcParamType, Returns as RpcReturns,
    execute_call as execute_rpc, is_identifier, split_query as split_rpc_query,
};
