//! The read plan: a tree of [`ReadNode`]s, each with its output fields (expressions and how
//! they render), conditions, order and page, every name already resolved.

use std::sync::Arc;

use rusqlite::types::Value;

use crate::error::{ApiError, ErrorCode};
use crate::fts::FullTextIndex;
use crate::headers::{CountMethod, MediaType};
use crate::query::{AggregateFn, Comparison, ContainOp, IsValue};
use crate::schema_cache::Relation;

/// Server-side limits applied while planning.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Caps the rows of every read node (PostgREST's `db-max-rows`).
    pub max_rows: Option<i64>,
    /// Aggregates in `select` (`count()`, `col.sum()`) are allowed (PostgREST's
    /// `db-aggregates-enabled`); without it they answer 400 PGRST123.
    pub aggregates: bool,
}

/// How a value is rendered in the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// By storage class: numbers as numbers, text as strings, BLOBs as `"\x…"`.
    Plain,
    /// 0/1 as false/true.
    Bool,
    /// Valid JSON text nested as JSON (anything else as a string).
    Json,
    /// JSON text SQLite built (an embedded resource), written as it is.
    RawJson,
}

/// A whitelisted cast target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CastType {
    Text,
    Integer,
    Real,
    Numeric,
    Bool,
    Json,
}

impl CastType {
    /// PostgreSQL type names clients send, mapped onto SQLite; anything else is 42704.
    pub fn from_pg(name: &str) -> Result<Self, ApiError> {
        let n = name.trim().to_ascii_lowercase();
        Ok(match n.as_str() {
            "text" | "varchar" | "char" | "character" | "character varying" | "bpchar" | "name"
            | "citext" => CastType::Text,
            "int" | "integer" | "bigint" | "smallint" | "int2" | "int4" | "int8" => {
                CastType::Integer
            }
            "real" | "float" | "float4" | "float8" | "double precision" | "double" => {
                CastType::Real
            }
            "numeric" | "decimal" => CastType::Numeric,
            "bool" | "boolean" => CastType::Bool,
            "json" | "jsonb" => CastType::Json,
            _ => {
                return Err(ApiError::new(
                    400,
                    ErrorCode::UndefinedObject,
                    format!("type \"{}\" does not exist", name.trim()),
                ));
            }
        })
    }
}

/// A value expression over the node's relation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// A column of the node's relation.
    Column(String),
    /// `column -> path` (JSON result) or `column ->> path` (SQL value); `path` is bound.
    JsonPath {
        column: String,
        path: String,
        text: bool,
    },
    /// `CAST(inner AS …)` from the whitelist.
    Cast { inner: Box<Expr>, to: CastType },
    /// `CAST(inner AS TEXT)`: PostgreSQL's `->>` compares as text.
    AsText(Box<Expr>),
    /// The JSON (object, array or null) of the node's embed at this index.
    Embed(usize),
    /// `inner` over the node's to-one embed at this index (a spread field, or an order by a
    /// related column): NULL when there is no related row.
    Spread { embed: usize, inner: Box<Expr> },
    /// `1`: the related row of a to-one spread is there (what `...rel(count())` counts).
    Present,
    /// `function(arg)` over the rows of a group; `count(*)` when `arg` is `None`. A node
    /// whose fields hold one is grouped by its other fields.
    Aggregate {
        function: AggregateFn,
        arg: Option<Box<Expr>>,
    },
}

impl Expr {
    /// True when the expression applies an aggregate (its value is one per group).
    pub fn is_aggregate(&self) -> bool {
        match self {
            Expr::Aggregate { .. } => true,
            Expr::Cast { inner, .. } | Expr::AsText(inner) => inner.is_aggregate(),
            _ => false,
        }
    }
}

/// A field of the output objects.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputField {
    pub key: String,
    pub expr: Expr,
    pub kind: OutputKind,
}

/// The distinct expressions of `fields` (in order of first use) and, for each field, the
/// position of its expression among them. SQL computes each expression once and the shaper
/// writes it for every field that shows it: `select=body,body,…` reads `body` once, so
/// repeating a large column in `select` multiplies only the response, never what SQLite
/// holds for a row (its result registers, a sorter's records, RETURNING rows).
pub(crate) fn distinct_exprs(fields: &[OutputField]) -> (Vec<&Expr>, Vec<usize>) {
    let mut exprs: Vec<&Expr> = Vec::with_capacity(fields.len());
    let mut positions = Vec::with_capacity(fields.len());
    // A short list (the usual select) is searched; a long one hashed.
    if fields.len() <= 32 {
        for f in fields {
            let at = match exprs.iter().position(|e| **e == f.expr) {
                Some(at) => at,
                None => {
                    exprs.push(&f.expr);
                    exprs.len() - 1
                }
            };
            positions.push(at);
        }
        return (exprs, positions);
    }
    let mut seen: std::collections::HashMap<&Expr, usize> = std::collections::HashMap::new();
    for f in fields {
        let at = *seen.entry(&f.expr).or_insert_with(|| {
            exprs.push(&f.expr);
            exprs.len() - 1
        });
        positions.push(at);
    }
    (exprs, positions)
}

/// The comparison operators that take one bound value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlCmp {
    Compare(Comparison),
    /// Case-sensitive pattern: PostgreSQL LIKE translated to GLOB.
    Glob,
    /// Case-insensitive pattern: LIKE … ESCAPE '\'.
    Ilike,
    /// Rust regex through the `regexp(pattern, text)` function.
    Regexp,
}

/// What a condition tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    Cmp(SqlCmp, Value),
    /// `expr = json(?)` for JSON objects and arrays.
    JsonEq(String),
    /// `expr IN (SELECT value FROM json_each(?))`; the parameter is a JSON array.
    In(String),
    /// `op ANY/ALL` over a JSON array parameter.
    Quantified {
        op: SqlCmp,
        all: bool,
        values: String,
    },
    Is(IsValue),
    /// `cs`/`cd`/`ov`: JSON containment or overlap with a JSON parameter (see
    /// `functions.rs`).
    Contain(ContainOp, String),
    /// The FTS5 query `query` (bound) over the column's full-text index. `three_valued`:
    /// NULL for a NULL column, as PostgreSQL's `to_tsvector(NULL) @@ q` is (needed wherever
    /// an odd number of NOTs applies); when false, a plain `IN` that lets SQLite drive the
    /// scan from the index's matches (anywhere else, where only truth counts).
    FullText {
        index: FullTextIndex,
        query: String,
        three_valued: bool,
    },
}

/// How the rows of an embedded relation are found from a row of its parent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Link {
    /// The embedded relation and its SQL alias.
    pub table: String,
    pub alias: String,
    /// (parent column, child column) pairs that must be equal (without a junction).
    pub pairs: Vec<(String, String)>,
    pub junction: Option<JunctionLink>,
}

/// The junction table a many-to-many embed goes through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JunctionLink {
    pub table: String,
    pub alias: String,
    /// (parent column, junction column) pairs.
    pub parent: Vec<(String, String)>,
    /// (child column, junction column) pairs.
    pub child: Vec<(String, String)>,
}

/// An embedded resource of a read node.
#[derive(Debug, Clone)]
pub struct Embed {
    /// The key it takes in the parent object: the alias, else the name as written.
    pub key: String,
    /// The name as written in `select` (filters may also use it when there is an alias).
    pub name: String,
    pub link: Link,
    /// The embedded read: its fields, conditions, order and page.
    pub node: ReadNode,
    /// An object (or null) rather than an array.
    pub to_one: bool,
    /// `...rel(…)`: its fields are lifted into the parent.
    pub spread: bool,
    /// False for `rel()`: used only for filtering, never shown.
    pub shown: bool,
    /// `!inner`: parents without a (matching) related row are left out.
    pub inner: bool,
}

/// A WHERE condition: a predicate or an and/or tree, possibly negated.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Pred {
        expr: Expr,
        negated: bool,
        pred: Predicate,
    },
    Tree {
        negated: bool,
        and: bool,
        children: Vec<Condition>,
    },
    /// `[NOT] EXISTS` a related row meeting `conditions` (`!inner` embeds, and
    /// `rel=is.null` / `rel=not.is.null`).
    Exists {
        negated: bool,
        link: Box<Link>,
        conditions: Vec<Condition>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderItem {
    pub expr: Expr,
    pub desc: bool,
    pub nulls_first: bool,
}

/// One relation read: the root of a plan, or (with embedding) a child.
#[derive(Debug, Clone)]
pub struct ReadNode {
    pub relation: Arc<Relation>,
    /// The SQL alias of the relation in this node (`t0`, `t1`, … as the tree grows).
    pub alias: String,
    pub fields: Vec<OutputField>,
    pub conditions: Vec<Condition>,
    pub order: Vec<OrderItem>,
    pub offset: i64,
    pub limit: Option<i64>,
    /// Embedded reads, in `select` order.
    pub children: Vec<Embed>,
}

impl ReadNode {
    /// True when a field aggregates: the node's rows are groups of its other fields.
    pub fn grouped(&self) -> bool {
        self.fields.iter().any(|f| f.expr.is_aggregate())
    }
}

/// A planned GET/HEAD.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    pub root: ReadNode,
    pub count: Option<CountMethod>,
    pub media: MediaType,
    pub max_rows: Option<i64>,
}
