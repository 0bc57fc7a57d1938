//! PostgREST's query-string grammar: `select`, filters, `and`/`or` trees, `order`, `limit`,
//! `offset`, `columns` and `on_conflict`, parsed into a syntax tree.
//!
//! Nothing here knows the schema: names come out as written (decoded, unquoted) and the
//! planner resolves them. Whatever does not parse is rejected with PGRST100, in PostgREST's
//! message shape `"failed to parse <part> (<input>)" (line 1, column N)`, before any SQL exists.
//!
//! One file per job: `syntax.rs` (the tree), `lexer.rs` (the cursor every parser shares),
//! `params.rs` (the query string as a whole, dispatching each parameter), and one parser per
//! grammar: `select.rs`, `filter.rs`, `logic.rs`, `order.rs`.

mod filter;
mod lexer;
mod logic;
mod order;
mod params;
mod select;
mod syntax;
#[cfg(test)]
mod tests;

pub(crate) use filter::parse_filter_value;
pub use params::{QueryParams, canonical_query, decode_component};
pub(crate) use syntax::*;
