//! The syntax tree of a query string: what the parsers produce and the planner resolves
//! (fields with JSON paths, select items, filters and their operations, logic trees, order
//! terms, ranges).

use crate::fts::FtsSyntax;

/// `->` (JSON result) or `->>` (SQL/text result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrow {
    Json,
    Text,
}

/// One key or index of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonKey {
    Key(String),
    Index(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonStep {
    pub arrow: Arrow,
    pub key: JsonKey,
}

/// A column reference with an optional JSON path: `data->a->>b`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub path: Vec<JsonStep>,
}

/// The aggregate functions `select` may apply (`col.sum()`, `count()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregateFn {
    Sum,
    Avg,
    Min,
    Max,
    Count,
}

impl AggregateFn {
    /// The name as written in `select`, which is also the default output key and the SQL
    /// function (the same in SQLite).
    pub fn name(self) -> &'static str {
        match self {
            AggregateFn::Sum => "sum",
            AggregateFn::Avg => "avg",
            AggregateFn::Min => "min",
            AggregateFn::Max => "max",
            AggregateFn::Count => "count",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "sum" => AggregateFn::Sum,
            "avg" => AggregateFn::Avg,
            "min" => AggregateFn::Min,
            "max" => AggregateFn::Max,
            "count" => AggregateFn::Count,
            _ => return None,
        })
    }
}

/// One item of `select`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectItem {
    Star,
    Column {
        alias: Option<String>,
        field: Field,
        cast: Option<String>,
    },
    /// `alias:field::cast.function()::aggregate_cast`, or `alias:count()::aggregate_cast`
    /// (`field` is `None`: every row is counted).
    Aggregate {
        alias: Option<String>,
        function: AggregateFn,
        field: Option<Field>,
        cast: Option<String>,
        aggregate_cast: Option<String>,
    },
    /// `alias:relation!hint(items)` or `...relation(items)`: resource embedding.
    Embed {
        alias: Option<String>,
        relation: String,
        hints: Vec<String>,
        spread: bool,
        items: Vec<SelectItem>,
    },
}

/// A comparison that means the same in PostgREST and in SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    IsDistinct,
}

/// A filter operator that takes one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Compare(Comparison),
    Like,
    Ilike,
    Match,
    Imatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantifier {
    Any,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsValue {
    Null,
    NotNull,
    True,
    False,
    Unknown,
}

/// The operator part of a filter, with its value(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Compare {
        op: CmpOp,
        value: String,
    },
    Quantified {
        op: CmpOp,
        quantifier: Quantifier,
        values: Vec<String>,
    },
    In(Vec<String>),
    Is(IsValue),
    /// `cs`, `cd`, `ov` on JSON values; `json` is the operand as JSON text (a PostgreSQL
    /// array literal `{a,b}` becomes a JSON array).
    Contain {
        op: ContainOp,
        json: String,
    },
    /// `fts`, `plfts`, `phfts`, `wfts`: a full-text query (raw) in one of PostgreSQL's
    /// syntaxes. The language of `fts(english)` is kept but not used: an FTS5 index's
    /// tokenizer is fixed when the index is created.
    FullText {
        syntax: FtsSyntax,
        language: Option<String>,
        query: String,
    },
    /// Parsed but not mapped onto SQLite (range operators).
    Unsupported {
        op: String,
    },
}

/// The JSON containment operators (PostgreSQL's `@>`, `<@` and `&&`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainOp {
    /// `cs`: the column contains the operand.
    Contains,
    /// `cd`: the column is contained in the operand.
    ContainedBy,
    /// `ov`: the column and the operand share an element.
    Overlaps,
}

/// `field=[not.]op[(modifier)].value`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub field: Field,
    pub negated: bool,
    pub operation: Operation,
}

/// An `and`/`or` tree, or one filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogicTree {
    Node {
        negated: bool,
        and: bool,
        children: Vec<LogicTree>,
    },
    Leaf(Filter),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Asc,
    Desc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nulls {
    First,
    Last,
}

/// One term of `order`. `relation` is set for `rel(col)` (ordering by an embedded to-one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTerm {
    pub relation: Option<String>,
    pub field: Field,
    pub direction: Option<Direction>,
    pub nulls: Option<Nulls>,
}

/// The embed path a scoped parameter applies to: empty for the root relation.
pub(crate) type EmbedPath = Vec<String>;

/// `limit` and `offset` of one scope; the last occurrence wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}
