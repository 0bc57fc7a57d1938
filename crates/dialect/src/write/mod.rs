//! The write path: the request body ([`body`]: JSON, CSV, form), the plan ([`plan`]: columns
//! and rows checked against the schema cache), its DML ([`sql`]: INSERT/UPDATE/DELETE written
//! with the same builder as reads) and execution ([`exec`]: inside the writer's savepoint,
//! then the representation).

pub(crate) mod body;
pub(crate) mod exec;
pub(crate) mod plan;
pub(crate) mod sql;
