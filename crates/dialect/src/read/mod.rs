//! The read path after parsing: plan ([`plan`]: names resolved against the schema cache,
//! values typed), SQL ([`sql`]: one statement, embeds as correlated subqueries) and execution
//! ([`exec`]: count and page in one transaction, rows shaped straight to bytes).

pub(crate) mod exec;
pub(crate) mod plan;
pub(crate) mod plan_cache;
pub(crate) mod sql;
