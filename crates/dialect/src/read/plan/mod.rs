//! The planner: resolves a parsed request against the schema cache into a read-plan tree.
//!
//! Every relation and column name is looked up in the cache here (PGRST205 / 42703 when
//! missing), casts are taken from a whitelist (42704 otherwise), filter values are converted to
//! the bind values SQLite should compare with, and the page (offset/limit, `Range`, max-rows)
//! is fixed. The result is a tree of [`ReadNode`]s: today only the root, but resource embedding
//! adds child nodes (each with its own fields, conditions, order and range) without changing
//! the shape of the plan or the SQL builder's recursion.
//!
//! One file per job: `tree.rs` (the plan's types), `read.rs` (the entry: [`plan_read`]),
//! `fields.rs` (select fields and order terms), `conditions.rs` (filters and logic trees),
//! `patterns.rs` (LIKE and regular-expression filters), `full_text.rs` (FTS5 filters).

mod conditions;
mod fields;
mod full_text;
mod patterns;
mod planner;
#[cfg(test)]
mod tests;
mod tree;

pub(crate) use conditions::{comparable, in_list_json, tree_condition};
pub use planner::{
    MAX_EMBED_DEPTH, MAX_EMBED_FIELDS, MAX_EMBEDS, plan_read, plan_read_as, resolve_relation,
};
pub use tree::*;
