//! The PostgREST dialect, mapped onto SQLite.
//!
//! Owns the path from a request's URL, headers and body to SQL: the schema cache, the parsers
//! for PostgREST's query grammar, the planner that checks every identifier against the cache,
//! and the SQL builder that quotes every identifier and binds every value. It knows no HTTP
//! server and no connection pool.
