//! The planner: resolves a parsed request against the schema cache into a read-plan tree.
//!
//! Every relation and column name is looked up in the cache here (PGRST205 / 42703 when
//! missing), casts are taken from a whitelist (42704 otherwise), filter values are converted to
//! the bind values SQLite should compare with, and the page (offset/limit, `Range`, max-rows)
//! is fixed. The result is a tree of [`ReadNode`]s: today only the root, but resource embedding
//! adds child nodes (each with its own fields, conditions, order and range) without changing
//! the shape of the plan or the SQL builder's recursion.

use std::sync::Arc;

use rusqlite::types::Value;

use crate::error::ApiError;
use crate::fts::{FtsSyntax, FullTextIndex, MatchScope, to_fts5};
use crate::functions::compile_regex_set;
use crate::headers::{CountMethod, MediaType, RequestHeaders};
use crate::ident::quoted;
use crate::query::{
    Arrow, CmpOp, Comparison, ContainOp, Direction, Field, IsValue, JsonKey, LogicTree, Nulls,
    Operation, OrderTerm, QueryParams, SelectItem,
};
use crate::schema::{Affinity, Column, RelKind, Relation, RowKey, SchemaCache, ValueKind};

/// Server-side limits applied while planning.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Caps the rows of every read node (PostgREST's `db-max-rows`).
    pub max_rows: Option<i64>,
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
                    "42704",
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
    /// [`crate::functions`]).
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
    /// Embedded reads (resource embedding adds them; none yet).
    pub children: Vec<ReadNode>,
}

/// A planned GET/HEAD.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    pub root: ReadNode,
    pub count: Option<CountMethod>,
    pub media: MediaType,
    pub max_rows: Option<i64>,
}

/// Looks the relation up; a hidden or missing one gets the same PGRST205.
pub fn resolve_relation<'a>(
    cache: &'a SchemaCache,
    name: &str,
) -> Result<&'a Arc<Relation>, ApiError> {
    cache
        .relation(name)
        .ok_or_else(|| ApiError::unknown_relation(name, cache.suggest(name)))
}

/// Plans a read of `relation` for the parsed query and headers.
pub fn plan_read(
    cache: &SchemaCache,
    relation: &str,
    query: &QueryParams,
    headers: &RequestHeaders,
    limits: Limits,
) -> Result<ReadPlan, ApiError> {
    let rel = resolve_relation(cache, relation)?.clone();
    // Scoped parameters need an embed of that name, and there are no embeds yet.
    if let Some(path) = query
        .filters
        .iter()
        .map(|(p, _)| p)
        .chain(query.logic.iter().map(|(p, _)| p))
        .chain(query.order.iter().map(|(p, _)| p))
        .chain(query.ranges.keys())
        .find(|p| !p.is_empty())
    {
        return Err(ApiError::not_embedded(&path[0]));
    }

    let fields = match &query.select {
        None => star(&rel),
        Some(items) => {
            let mut out = Vec::new();
            for item in items {
                match item {
                    SelectItem::Star => out.extend(star(&rel)),
                    SelectItem::Column { alias, field, cast } => out.push(output_field(
                        &rel,
                        alias.as_deref(),
                        field,
                        cast.as_deref(),
                    )?),
                    SelectItem::Embed { relation, .. } => {
                        return Err(ApiError::not_implemented(format!(
                            "Resource embedding ('{relation}') is not supported yet"
                        )));
                    }
                }
            }
            out
        }
    };

    let mut conditions = Vec::new();
    for (_, f) in &query.filters {
        conditions.push(condition(&rel, &f.field, f.negated, &f.operation)?);
    }
    for (_, tree) in &query.logic {
        conditions.push(tree_condition(&rel, tree)?);
    }
    for c in &mut conditions {
        full_text_drives(c, false);
    }
    check_regexes(&conditions)?;

    let mut order = Vec::new();
    for (_, terms) in &query.order {
        for t in terms {
            order.push(order_item(&rel, t)?);
        }
    }

    let range = query.ranges.get(&Vec::new()).copied().unwrap_or_default();
    if let Some(l) = range.limit
        && l < 0
    {
        return Err(ApiError::range(
            "Limit should be greater than or equal to zero.",
        ));
    }
    let q_lo = range.offset.unwrap_or(0).max(0);
    let mut lo = q_lo;
    // In i128: a bound past i64::MAX (offset + limit) is exact, and the limit saturates.
    let mut hi = range.limit.map(|l| i128::from(q_lo) + i128::from(l) - 1);
    if let Some((h_lo, h_hi)) = headers.range {
        lo = lo.max(h_lo);
        hi = match (hi, h_hi.map(i128::from)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let mut limit =
        hi.map(|hi| i64::try_from((hi - i128::from(lo) + 1).max(0)).unwrap_or(i64::MAX));
    if let Some(max) = limits.max_rows {
        limit = Some(limit.map_or(max, |l| l.min(max)));
    }

    Ok(ReadPlan {
        root: ReadNode {
            relation: rel,
            alias: "t0".to_string(),
            fields,
            conditions,
            order,
            offset: lo,
            limit,
            children: Vec::new(),
        },
        count: headers.prefer.count,
        media: headers.media,
        max_rows: limits.max_rows,
    })
}

fn star(rel: &Relation) -> Vec<OutputField> {
    rel.columns
        .iter()
        .map(|c| OutputField {
            key: c.name.clone(),
            expr: Expr::Column(c.name.clone()),
            kind: column_output(c.kind),
        })
        .collect()
}

fn column_output(kind: ValueKind) -> OutputKind {
    match kind {
        ValueKind::Bool => OutputKind::Bool,
        ValueKind::Json => OutputKind::Json,
        ValueKind::Plain => OutputKind::Plain,
    }
}

/// Resolves `field` to an expression and its natural output kind.
fn field_expr(rel: &Relation, field: &Field) -> Result<(Expr, OutputKind), ApiError> {
    let col = rel
        .column(&field.name)
        .ok_or_else(|| ApiError::unknown_column(&rel.name, &field.name))?;
    if field.path.is_empty() {
        return Ok((Expr::Column(col.name.clone()), column_output(col.kind)));
    }
    let mut path = String::from("$");
    for step in &field.path {
        match &step.key {
            JsonKey::Key(k) => {
                if k.contains('"') {
                    return Err(ApiError::new(
                        400,
                        "PGRST100",
                        format!("JSON keys containing '\"' are not supported: {k}"),
                    ));
                }
                path.push_str(".\"");
                path.push_str(k);
                path.push('"');
            }
            JsonKey::Index(i) if *i < 0 => {
                path.push_str("[#");
                path.push_str(&i.to_string());
                path.push(']');
            }
            JsonKey::Index(i) => {
                path.push('[');
                path.push_str(&i.to_string());
                path.push(']');
            }
        }
    }
    let text = field.path.last().is_some_and(|s| s.arrow == Arrow::Text);
    Ok((
        Expr::JsonPath {
            column: col.name.clone(),
            path,
            text,
        },
        if text {
            OutputKind::Plain
        } else {
            OutputKind::Json
        },
    ))
}

/// The key PostgREST gives a selected field: the alias, else the last JSON key, else the
/// column name.
fn field_key(field: &Field) -> String {
    field
        .path
        .iter()
        .rev()
        .find_map(|s| match &s.key {
            JsonKey::Key(k) => Some(k.clone()),
            JsonKey::Index(_) => None,
        })
        .unwrap_or_else(|| field.name.clone())
}

fn output_field(
    rel: &Relation,
    alias: Option<&str>,
    field: &Field,
    cast: Option<&str>,
) -> Result<OutputField, ApiError> {
    let (expr, kind) = field_expr(rel, field)?;
    let key = alias.map_or_else(|| field_key(field), str::to_string);
    let Some(cast) = cast else {
        return Ok(OutputField { key, expr, kind });
    };
    let to = CastType::from_pg(cast)?;
    let kind = match to {
        CastType::Bool => OutputKind::Bool,
        CastType::Json => OutputKind::Json,
        _ => OutputKind::Plain,
    };
    Ok(OutputField {
        key,
        expr: Expr::Cast {
            inner: Box::new(expr),
            to,
        },
        kind,
    })
}

fn order_item(rel: &Relation, t: &OrderTerm) -> Result<OrderItem, ApiError> {
    if let Some(r) = &t.relation {
        return Err(ApiError::not_embedded(r));
    }
    let (expr, _) = field_expr(rel, &t.field)?;
    let desc = t.direction == Some(Direction::Desc);
    // PostgreSQL's defaults: NULLS LAST for ASC, NULLS FIRST for DESC.
    let nulls_first = match t.nulls {
        Some(Nulls::First) => true,
        Some(Nulls::Last) => false,
        None => desc,
    };
    Ok(OrderItem {
        expr,
        desc,
        nulls_first,
    })
}

fn tree_condition(rel: &Relation, tree: &LogicTree) -> Result<Condition, ApiError> {
    match tree {
        LogicTree::Leaf(f) => condition(rel, &f.field, f.negated, &f.operation),
        LogicTree::Node {
            negated,
            and,
            children,
        } => Ok(Condition::Tree {
            negated: *negated,
            and: *and,
            children: children
                .iter()
                .map(|c| tree_condition(rel, c))
                .collect::<Result<_, _>>()?,
        }),
    }
}

fn sql_cmp(op: CmpOp) -> SqlCmp {
    match op {
        CmpOp::Compare(c) => SqlCmp::Compare(c),
        CmpOp::Like => SqlCmp::Glob,
        CmpOp::Ilike => SqlCmp::Ilike,
        CmpOp::Match | CmpOp::Imatch => SqlCmp::Regexp,
    }
}

/// Turns one operator value into what is bound for it.
fn bind_value(op: CmpOp, raw: &str, col: Option<&Column>) -> Result<Value, ApiError> {
    Ok(match op {
        CmpOp::Like => Value::Text(like_to_glob(raw)),
        CmpOp::Ilike => Value::Text(raw.replace('*', "%")),
        CmpOp::Match => Value::Text(regex_len(raw)?.to_string()),
        CmpOp::Imatch => Value::Text(format!("(?i){}", regex_len(raw)?)),
        _ => comparable(raw, col),
    })
}

/// A comparison value, typed as the column's affinity would convert it (as PostgreSQL types
/// its `unknown` parameters by the column): true/false become 1/0 on BOOL columns, integers
/// and reals are bound as numbers on numeric columns, anything else stays TEXT.
fn comparable(raw: &str, col: Option<&Column>) -> Value {
    let Some(col) = col else {
        return Value::Text(raw.to_string());
    };
    if col.kind == ValueKind::Bool {
        match raw.to_ascii_lowercase().as_str() {
            "true" | "t" => return Value::Integer(1),
            "false" | "f" => return Value::Integer(0),
            _ => {}
        }
    }
    match col.affinity {
        Affinity::Integer | Affinity::Real | Affinity::Numeric => {
            if let Ok(i) = raw.parse::<i64>() {
                return Value::Integer(i);
            }
            if col.affinity != Affinity::Integer
                && let Ok(f) = raw.parse::<f64>()
                && f.is_finite()
            {
                return Value::Real(f);
            }
            Value::Text(raw.to_string())
        }
        Affinity::Text | Affinity::Blob => Value::Text(raw.to_string()),
    }
}

/// The longest pattern of `match`/`imatch`.
const MAX_REGEX_LEN: usize = 1024;
/// The most `match`/`imatch` filters one request may hold (each is compiled on its own when
/// the statement runs, with its own matching cache).
pub(crate) const MAX_REGEX_FILTERS: usize = 32;

fn invalid_regex(details: String) -> ApiError {
    ApiError::new(400, "2201B", "invalid regular expression").with_details(details)
}

/// `pattern`, unless it is longer than [`MAX_REGEX_LEN`].
fn regex_len(pattern: &str) -> Result<&str, ApiError> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err(invalid_regex(format!(
            "pattern longer than {MAX_REGEX_LEN} bytes"
        )));
    }
    Ok(pattern)
}

/// The regular expressions of `conditions`: each `match`/`imatch` filter's patterns.
fn regex_filters<'a>(conditions: &'a [Condition], out: &mut Vec<&'a Predicate>) {
    for c in conditions {
        match c {
            Condition::Tree { children, .. } => regex_filters(children, out),
            Condition::Pred { pred, .. } => {
                if matches!(
                    pred,
                    Predicate::Cmp(SqlCmp::Regexp, _)
                        | Predicate::Quantified {
                            op: SqlCmp::Regexp,
                            ..
                        }
                ) {
                    out.push(pred);
                }
            }
        }
    }
}

/// Checks every regular expression of a request at once, so that one request's patterns can
/// cost only so much: at most [`MAX_REGEX_FILTERS`] filters, patterns of at most
/// [`MAX_REGEX_LEN`] bytes, and all of them together within the compiled size limit (one
/// compilation; invalid patterns fail here too). 400 `2201B` otherwise.
fn check_regexes(conditions: &[Condition]) -> Result<(), ApiError> {
    let mut filters = Vec::new();
    regex_filters(conditions, &mut filters);
    if filters.is_empty() {
        return Ok(());
    }
    if filters.len() > MAX_REGEX_FILTERS {
        return Err(
            ApiError::new(400, "54001", "too many regular expressions in one request")
                .with_details(format!(
                    "{} match/imatch filters; the limit is {MAX_REGEX_FILTERS}",
                    filters.len()
                )),
        );
    }
    let mut patterns: Vec<String> = Vec::new();
    for f in filters {
        match f {
            Predicate::Cmp(_, Value::Text(p)) => patterns.push(p.clone()),
            Predicate::Quantified { values, .. } => patterns.extend(
                serde_json::from_str::<Vec<String>>(values)
                    .map_err(|e| ApiError::internal(e.to_string()))?,
            ),
            _ => {}
        }
    }
    compile_regex_set(&patterns).map_err(|e| invalid_regex(e.to_string()))?;
    Ok(())
}

/// PostgreSQL LIKE (with `*` for `%`, `\` escaping) as a case-sensitive GLOB pattern.
pub(crate) fn like_to_glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    let literal = |out: &mut String, c: char| match c {
        '*' => out.push_str("[*]"),
        '?' => out.push_str("[?]"),
        '[' => out.push_str("[[]"),
        c => out.push(c),
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    literal(&mut out, n);
                }
            }
            '%' | '*' => out.push('*'),
            '_' => out.push('?'),
            c => literal(&mut out, c),
        }
    }
    out
}

fn condition(
    rel: &Relation,
    field: &Field,
    negated: bool,
    operation: &Operation,
) -> Result<Condition, ApiError> {
    let (expr, _) = field_expr(rel, field)?;
    let col = if field.path.is_empty() {
        rel.column(&field.name)
    } else {
        None
    };
    let json_arrow = field.path.last().map(|s| s.arrow);
    let pred_for = |expr: Expr, pred: Predicate| Condition::Pred {
        expr,
        negated,
        pred,
    };
    match operation {
        Operation::Unsupported { op } => Err(ApiError::not_implemented(format!(
            "The '{op}' operator is not supported on SQLite"
        ))),
        Operation::Is(v) => Ok(pred_for(expr, Predicate::Is(*v))),
        Operation::Contain { op, json } => {
            Ok(pred_for(expr, Predicate::Contain(*op, json.clone())))
        }
        Operation::FullText { syntax, query, .. } => {
            full_text(rel, field, *syntax, query).map(|pred| pred_for(expr, pred))
        }
        Operation::In(values) => {
            let arr: Vec<serde_json::Value> = values
                .iter()
                .map(|v| match comparable(v, col) {
                    Value::Integer(i) => serde_json::Value::from(i),
                    Value::Real(f) => serde_json::Value::from(f),
                    _ => serde_json::Value::from(v.as_str()),
                })
                .collect();
            let expr = text_side(expr, json_arrow);
            Ok(pred_for(
                expr,
                Predicate::In(serde_json::Value::Array(arr).to_string()),
            ))
        }
        Operation::Quantified {
            op,
            quantifier,
            values,
        } => {
            let arr = values
                .iter()
                .map(|v| {
                    Ok(match bind_value(*op, v, col)? {
                        Value::Integer(i) => serde_json::Value::from(i),
                        Value::Real(f) => serde_json::Value::from(f),
                        Value::Text(t) => serde_json::Value::from(t),
                        _ => serde_json::Value::Null,
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            Ok(pred_for(
                text_side(expr, json_arrow),
                Predicate::Quantified {
                    op: sql_cmp(*op),
                    all: *quantifier == crate::query::Quantifier::All,
                    values: serde_json::Value::Array(arr).to_string(),
                },
            ))
        }
        Operation::Compare { op, value } => {
            if let (Some(Arrow::Json), CmpOp::Compare(c)) = (json_arrow, op) {
                return Ok(json_compare(expr, negated, *c, value));
            }
            let v = bind_value(*op, value, col)?;
            Ok(pred_for(
                text_side(expr, json_arrow),
                Predicate::Cmp(sql_cmp(*op), v),
            ))
        }
    }
}

/// A full-text filter on `field`: its FTS5 index and the query translated for FTS5. A column
/// without an FTS5 index is refused (no silent full scan), with a hint that creates one.
fn full_text(
    rel: &Relation,
    field: &Field,
    syntax: FtsSyntax,
    query: &str,
) -> Result<Predicate, ApiError> {
    let index = rel
        .full_text
        .get(&field.name)
        .filter(|_| field.path.is_empty())
        .ok_or_else(|| no_full_text_index(rel, field))?;
    if index.scope == MatchScope::Unsearchable {
        return Err(ApiError::not_implemented(format!(
            "Column {}.{} is indexed by FTS5 table {} with detail=none, which cannot search one of its several columns alone",
            rel.name, field.name, index.table
        ))
        .with_hint(
            "Give the column an FTS5 index of its own, or recreate this one with detail=full or detail=column (https://sqlite.org/fts5.html#the_detail_option).",
        ));
    }
    Ok(Predicate::FullText {
        index: index.clone(),
        query: to_fts5(syntax, query)?,
        three_valued: true,
    })
}

/// Lets every full-text filter under an even number of NOTs (a top-level one, or one inside
/// non-negated `and`/`or` trees) drive the scan (see [`Predicate::FullText`]). There, NULL
/// and false are alike: AND and OR are monotone, so lowering NULL to false never changes
/// whether the whole condition is true. Under an odd number of NOTs they differ, so the
/// three-valued form stays.
fn full_text_drives(c: &mut Condition, negated_above: bool) {
    match c {
        Condition::Pred {
            negated,
            pred: Predicate::FullText { three_valued, .. },
            ..
        } => *three_valued = negated_above != *negated,
        Condition::Pred { .. } => {}
        Condition::Tree {
            negated, children, ..
        } => {
            let negated = negated_above != *negated;
            for child in children {
                full_text_drives(child, negated);
            }
        }
    }
}

fn no_full_text_index(rel: &Relation, field: &Field) -> ApiError {
    let details = format!(
        "Full-text search needs an FTS5 index, and column {}.{} has none",
        rel.name, field.name
    );
    let hint = if !field.path.is_empty() {
        "Full-text filters apply to columns, not to JSON paths.".to_string()
    } else if rel.kind == RelKind::Virtual {
        "Only the indexed columns of an FTS5 table can be searched (not UNINDEXED ones)."
            .to_string()
    } else {
        // FTS5 links through an integer key: the table's INTEGER PRIMARY KEY, else its rowid
        // under a name no column shadows. A view, a WITHOUT ROWID table or one whose rowid
        // names are all columns has none: one of its integer columns must be named.
        let key = match (rel.primary_key.as_slice(), rel.row_key()) {
            ([pk], _)
                if rel
                    .column(pk)
                    .is_some_and(|c| c.affinity == Affinity::Integer) =>
            {
                Some(pk.as_str())
            }
            (_, RowKey::Rowid(alias)) => Some(alias),
            _ => None,
        };
        let (key, why) = match key {
            Some(k) => (sql_literal(k), ""),
            None => (
                "'<integer column>'".to_string(),
                " (it has no rowid: name an integer column that identifies its rows)",
            ),
        };
        let index = format!("{}_fts", rel.name);
        format!(
            "Create an external-content FTS5 index for it{why}: CREATE VIRTUAL TABLE {idx} USING fts5({col}, content={tbl}, content_rowid={key}); INSERT INTO {idx}({idx}) VALUES ('rebuild'); and keep it in step with triggers on {tbl} (https://sqlite.org/fts5.html#external_content_tables).",
            idx = quoted(&index),
            col = quoted(&field.name),
            tbl = sql_literal(&rel.name),
        )
    };
    ApiError::not_implemented(details).with_hint(hint)
}

/// `'text'` with inner quotes doubled.
fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// For `->>` paths, compare as text (PostgreSQL's `->>` yields text); for `->` paths used with
/// text operators, take the SQL value.
fn text_side(expr: Expr, arrow: Option<Arrow>) -> Expr {
    match (arrow, expr) {
        (Some(Arrow::Text), e) => Expr::AsText(Box::new(e)),
        (Some(Arrow::Json), Expr::JsonPath { column, path, .. }) => Expr::JsonPath {
            column,
            path,
            text: true,
        },
        (_, e) => e,
    }
}

/// `->` compares JSON with JSON: numbers and booleans by value, strings as text, objects and
/// arrays as minified JSON.
fn json_compare(expr: Expr, negated: bool, op: Comparison, raw: &str) -> Condition {
    let as_value = |e: Expr| match e {
        Expr::JsonPath { column, path, .. } => Expr::JsonPath {
            column,
            path,
            text: true,
        },
        other => other,
    };
    let (expr, pred) = match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::Number(n)) => {
            let v = n
                .as_i64()
                .map(Value::Integer)
                .or_else(|| n.as_f64().map(Value::Real))
                .unwrap_or(Value::Null);
            (as_value(expr), Predicate::Cmp(SqlCmp::Compare(op), v))
        }
        Ok(serde_json::Value::Bool(b)) => (
            as_value(expr),
            Predicate::Cmp(SqlCmp::Compare(op), Value::Integer(i64::from(b))),
        ),
        Ok(serde_json::Value::String(s)) => (
            as_value(expr),
            Predicate::Cmp(SqlCmp::Compare(op), Value::Text(s)),
        ),
        Ok(v @ (serde_json::Value::Object(_) | serde_json::Value::Array(_)))
            if matches!(op, Comparison::Eq | Comparison::Neq) =>
        {
            let c = Condition::Pred {
                expr,
                negated: negated ^ (op == Comparison::Neq),
                pred: Predicate::JsonEq(v.to_string()),
            };
            return c;
        }
        _ => (
            as_value(expr),
            Predicate::Cmp(SqlCmp::Compare(op), Value::Text(raw.to_string())),
        ),
    };
    Condition::Pred {
        expr,
        negated,
        pred,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::Preferences;

    #[test]
    fn glob_translation() {
        assert_eq!(like_to_glob("*yx"), "*yx");
        assert_eq!(like_to_glob("a_b%"), "a?b*");
        assert_eq!(like_to_glob("50\\%"), "50%");
        assert_eq!(like_to_glob("x[?]"), "x[[][?]]");
        assert_eq!(like_to_glob("\\*"), "[*]");
    }

    #[test]
    fn casts_are_whitelisted() {
        assert_eq!(
            CastType::from_pg("double precision").unwrap(),
            CastType::Real
        );
        let e = CastType::from_pg("int); DROP TABLE x").unwrap_err();
        assert_eq!(e.code, "42704");
    }

    fn cache() -> SchemaCache {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, b BOOLEAN, j JSON, s TEXT)")
            .unwrap();
        SchemaCache::load(&c, &crate::schema::Exposure::All).unwrap()
    }

    fn headers() -> RequestHeaders {
        RequestHeaders {
            media: MediaType::Json { strip_nulls: false },
            prefer: Preferences::default(),
            range: None,
            profile_sent: false,
        }
    }

    #[test]
    fn range_intersection_and_max_rows() {
        let c = cache();
        let q = QueryParams::parse("limit=10&offset=5").unwrap();
        let mut h = headers();
        h.range = Some((0, Some(7)));
        let p = plan_read(&c, "t", &q, &h, Limits { max_rows: Some(2) }).unwrap();
        assert_eq!(p.root.offset, 5);
        assert_eq!(p.root.limit, Some(2));
        let p = plan_read(&c, "t", &q, &h, Limits::default()).unwrap();
        assert_eq!(p.root.limit, Some(3));
    }

    #[test]
    fn pages_at_the_extremes_saturate() {
        let c = cache();
        let max = i64::MAX;
        let page = |q: &str, range: Option<(i64, Option<i64>)>| {
            let mut h = headers();
            h.range = range;
            let p = plan_read(
                &c,
                "t",
                &QueryParams::parse(q).unwrap(),
                &h,
                Limits::default(),
            )?;
            Ok::<_, ApiError>((p.root.offset, p.root.limit))
        };
        assert_eq!(
            page(&format!("limit={max}&offset={max}"), None).unwrap(),
            (max, Some(max))
        );
        assert_eq!(
            page(&format!("limit={max}&offset=5"), None).unwrap(),
            (5, Some(max))
        );
        assert_eq!(
            page(&format!("limit={max}"), Some((0, Some(max)))).unwrap(),
            (0, Some(max))
        );
        assert_eq!(page("", Some((max, Some(max)))).unwrap(), (max, Some(1)));
        assert_eq!(page("limit=0", Some((max, None))).unwrap(), (max, Some(0)));
        assert_eq!(
            page(&format!("offset={}", i64::MIN), None).unwrap(),
            (0, None)
        );
        let e = page(&format!("limit={}", i64::MIN), None).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (416, "PGRST103"));
        // Past i64 the number does not parse.
        let e = QueryParams::parse("limit=9223372036854775808").unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "PGRST100"));
        // And the statement runs.
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2);",
        )
        .unwrap();
        let cache = SchemaCache::load(&conn, &crate::schema::Exposure::All).unwrap();
        for (q, rows) in [
            (format!("limit={max}&offset={max}"), 0),
            (format!("limit={max}&offset=1"), 1),
        ] {
            let mut h = headers();
            h.prefer.count = Some(crate::headers::CountMethod::Exact);
            let plan = plan_read(
                &cache,
                "t",
                &QueryParams::parse(&q).unwrap(),
                &h,
                Limits::default(),
            )
            .unwrap();
            match crate::exec::execute_read(&conn, &plan, false) {
                Ok(out) => assert_eq!(out.rows, rows, "{q}"),
                Err(e) => assert_eq!((e.status, rows), (416, 0), "{q}"),
            }
        }
    }

    #[test]
    fn regular_expressions_are_bounded_per_request() {
        let c = cache();
        let plan = |q: &str| {
            plan_read(
                &c,
                "t",
                &QueryParams::parse(q).unwrap(),
                &headers(),
                Limits::default(),
            )
        };
        let e = plan("s=match.(").unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "2201B"));
        let e = plan(&format!("s=match.{}", "a".repeat(MAX_REGEX_LEN + 1))).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "2201B"));
        // Each fits the size limit alone, not all together.
        let each = r"\w{10}";
        assert!(plan(&format!("s=match.{each}")).is_ok());
        let many = vec![format!("s.match.{each}"); 30].join(",");
        let e = plan(&format!("or=({many})")).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "2201B"), "{e:?}");
        // Quoted (for the braces); `\` escapes inside quotes.
        let list = vec![format!("\"{}\"", each.replace('\\', "\\\\")); 30].join(",");
        let e = plan(&format!("s=match(any).{{{list}}}")).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "2201B"));
        // A bounded number of filters.
        let filters = vec!["s.match.a"; MAX_REGEX_FILTERS + 1].join(",");
        let e = plan(&format!("or=({filters})")).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "54001"));
        let filters = vec!["s.imatch.a"; MAX_REGEX_FILTERS].join(",");
        assert!(plan(&format!("and=({filters})")).is_ok());
    }

    #[test]
    fn unknown_names() {
        let c = cache();
        let q = QueryParams::parse("select=nope").unwrap();
        let e = plan_read(&c, "t", &q, &headers(), Limits::default()).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "42703"));
        let e = plan_read(
            &c,
            "x",
            &QueryParams::default(),
            &headers(),
            Limits::default(),
        )
        .unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (404, "PGRST205"));
        let q = QueryParams::parse("tasks.id=eq.1").unwrap();
        let e = plan_read(&c, "t", &q, &headers(), Limits::default()).unwrap_err();
        assert_eq!(e.code, "PGRST108");
    }

    /// `GET /relation?query` on a database with an FTS5 table (`notes`) and an
    /// external-content FTS5 index over `docs`: the ids returned, or the error.
    fn search(relation: &str, query: &str) -> Result<Vec<i64>, ApiError> {
        search_rows(relation, &format!("select=id&order=id&{query}"))
            .map(|rows| rows.iter().map(|r| r["id"].as_i64().unwrap()).collect())
    }

    fn search_rows(relation: &str, query: &str) -> Result<Vec<serde_json::Value>, ApiError> {
        rows_in(
            "CREATE TABLE docs (id INTEGER PRIMARY KEY, title TEXT, body TEXT);
             CREATE VIRTUAL TABLE \"docs \"\"fts\"\"\" USING fts5(title, body, content='docs',
               content_rowid='id', tokenize='porter');
             INSERT INTO docs VALUES (1, 'Fat cats', 'The fat cat sat on the mat'),
               (2, 'Rats', 'A fat rat ate the cheese'), (3, NULL, 'Dogs chase cats');
             INSERT INTO \"docs \"\"fts\"\"\"(\"docs \"\"fts\"\"\") VALUES ('rebuild');
             CREATE VIRTUAL TABLE notes USING fts5(id UNINDEXED, body);
             INSERT INTO notes SELECT id, body FROM docs;",
            relation,
            query,
        )
    }

    /// `GET /relation?query` on a database made by `setup`.
    fn rows_in(
        setup: &str,
        relation: &str,
        query: &str,
    ) -> Result<Vec<serde_json::Value>, ApiError> {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch(setup).unwrap();
        let cache = SchemaCache::load(&c, &crate::schema::Exposure::All).unwrap();
        let q = QueryParams::parse(query)?;
        let plan = plan_read(&cache, relation, &q, &headers(), Limits::default())?;
        let out = crate::exec::execute_read(&c, &plan, false)?;
        Ok(serde_json::from_slice(&out.body).unwrap())
    }

    #[test]
    fn full_text_filters_run_on_fts5() {
        for (rel, q, want) in [
            ("docs", "body=fts.fat", vec![1, 2]),
            ("docs", "body=fts(english).cats", vec![1, 3]),
            ("docs", "body=fts.fat%20%26%20!rat", vec![1]),
            ("docs", "body=fts.ch:*%20|%20mat", vec![1, 2, 3]),
            ("docs", "body=fts.fat%20<->%20rat", vec![2]),
            ("docs", "body=plfts.the%20cheese", vec![2]),
            ("docs", "body=plfts.cats,dogs", vec![3]),
            ("docs", "body=wfts.cats,dogs", vec![3]),
            ("docs", "body=phfts.cat%20sat", vec![1]),
            ("docs", "body=phfts.sat%20cat", vec![]),
            (
                "docs",
                "body=wfts.%22fat%20cat%22%20or%20dogs%20-rat",
                vec![1, 3],
            ),
            ("docs", "body=not.fts.fat", vec![3]),
            // A NULL column is neither matched nor, negated, unmatched (as in PostgreSQL).
            ("docs", "title=not.fts.fat", vec![2]),
            ("docs", "or=(body.fts.cheese,title.fts.cats)", vec![1, 2]),
            ("docs", "not.and=(body.fts.fat,id.lt.2)", vec![2, 3]),
            ("notes", "body=fts.dogs", vec![3]),
            ("notes", "or=(body.fts.rat,id.like.1)", vec![1, 2]),
            ("notes", "body=not.wfts.cats", vec![1, 2]),
        ] {
            let got = search(rel, q).unwrap_or_else(|e| panic!("{rel}?{q}: {e:?}"));
            assert_eq!(got, want, "{rel}?{q}");
        }
        // The external-content FTS5 table searched directly (its porter tokenizer stems).
        let rows = search_rows("docs \"fts\"", "select=title&title=fts.rat").unwrap();
        assert_eq!(rows, [serde_json::json!({"title": "Rats"})]);
    }

    /// The `body` values `GET /relation?select=body&order=body&query` returns.
    fn bodies(setup: &str, relation: &str, query: &str) -> Result<Vec<String>, ApiError> {
        let rows = rows_in(setup, relation, &format!("select=body&order=body&{query}"))?;
        Ok(rows
            .iter()
            .map(|r| r["body"].as_str().unwrap().to_string())
            .collect())
    }

    #[test]
    fn full_text_links_rows_as_fts5_does() {
        // `content_r` is FTS5's `content_rowid`: rows link through `id`, not the rowid.
        let setup = "CREATE TABLE docs (id INTEGER NOT NULL, body TEXT);
             INSERT INTO docs (rowid, id, body) VALUES (1, 100, 'apple'), (2, 1, 'banana'),
               (100, 2, 'cherry');
             CREATE VIRTUAL TABLE f USING fts5(body, content='docs', content_r='id');
             INSERT INTO f(f) VALUES ('rebuild');";
        assert_eq!(bodies(setup, "docs", "body=fts.apple").unwrap(), ["apple"]);
        assert_eq!(
            bodies(setup, "docs", "body=not.fts.apple").unwrap(),
            ["banana", "cherry"]
        );
        // A comment glued to `docs` ends the word: the index is docs', not "docs/*x*/"'s.
        let setup = "CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT);
             CREATE TABLE \"docs/*x*/\" (id INTEGER PRIMARY KEY, body TEXT);
             INSERT INTO docs VALUES (1, 'apple'), (2, 'pear');
             INSERT INTO \"docs/*x*/\" VALUES (1, 'pear'), (2, 'apple');
             CREATE VIRTUAL TABLE f USING fts5(body, content=docs/*x*/, content_rowid=id);
             INSERT INTO f(f) VALUES ('rebuild');";
        assert_eq!(bodies(setup, "docs", "body=fts.apple").unwrap(), ["apple"]);
        let e = bodies(setup, "docs/*x*/", "body=fts.apple").unwrap_err();
        assert_eq!(e.code, "PGRST127");
        // `oid`/`_rowid_` on a table with a real `rowid` column: the true rowid, under an alias
        // no column shadows; `rowid` there is the real column, as FTS5 reads `T.'rowid'`.
        for key in ["oid", "_rowid_", "rowid"] {
            let setup = format!(
                "CREATE TABLE r (\"rowid\" INTEGER, body TEXT);
                 INSERT INTO r (_rowid_, \"rowid\", body) VALUES (1, 2, 'apple'), (2, 1, 'pear');
                 CREATE VIRTUAL TABLE f USING fts5(body, content='r', content_rowid='{key}');
                 INSERT INTO f(f) VALUES ('rebuild');"
            );
            let got = bodies(&setup, "r", "body=fts.apple").unwrap();
            assert_eq!(got, ["apple"], "{key}");
            let native: Vec<String> = {
                let c = rusqlite::Connection::open_in_memory().unwrap();
                c.execute_batch(&setup).unwrap();
                c.prepare("SELECT body FROM f WHERE f MATCH 'apple'")
                    .unwrap()
                    .query_map([], |r| r.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect()
            };
            // FTS5's own content lookup (through the same link) agrees.
            assert_eq!(native, ["apple"], "{key}");
        }
    }

    #[test]
    fn detail_none_indexes() {
        let setup = "CREATE TABLE docs (id INTEGER PRIMARY KEY, title TEXT, body TEXT);
             INSERT INTO docs VALUES (1, 'apple', 'pear plum'), (2, 'pear', 'apple'),
               (3, NULL, NULL);
             CREATE VIRTUAL TABLE one USING fts5(body, content='docs', content_rowid='id',
               detail=none);
             CREATE VIRTUAL TABLE two USING fts5(id UNINDEXED, title, body, content='docs',
               content_rowid='id', d='n');
             INSERT INTO one(one) VALUES ('rebuild');
             INSERT INTO two(two) VALUES ('rebuild');";
        // Its only indexed column: the whole table is searched (no column filter).
        let ids = |q: &str| {
            rows_in(setup, "docs", &format!("select=id&order=id&{q}")).map(|r| {
                r.iter()
                    .map(|r| r["id"].as_i64().unwrap())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(ids("body=fts.apple").unwrap(), [2]);
        assert_eq!(ids("body=not.fts.apple").unwrap(), [1]);
        assert_eq!(ids("or=(body.fts.plum,body.fts.apple)").unwrap(), [1, 2]);
        assert_eq!(ids("body=fts.pe:*").unwrap(), [1]);
        // One of several columns: FTS5 cannot search it alone.
        let e = ids("title=fts.apple").unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "PGRST127"));
        assert!(e.hint.unwrap().contains("detail=full"));
        // Searched directly, the same rules.
        let e = rows_in(setup, "two", "title=fts.apple").unwrap_err();
        assert_eq!(e.code, "PGRST127");
        let rows = rows_in(setup, "one", "select=body&body=fts.apple").unwrap();
        assert_eq!(rows, [serde_json::json!({"body": "apple"})]);
    }

    /// SQLite's `EXPLAIN QUERY PLAN` for `sql`, one step a line.
    fn query_plan(c: &rusqlite::Connection, sql: &crate::sql::Sql) -> String {
        c.prepare(&format!("EXPLAIN QUERY PLAN {}", sql.text))
            .unwrap()
            .query_map(rusqlite::params_from_iter(&sql.params), |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .map(|r| r.unwrap() + "\n")
            .collect()
    }

    #[test]
    fn full_text_drives_the_scan_inside_trees_not_under_not() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE d (id INTEGER PRIMARY KEY, body TEXT);
             CREATE VIRTUAL TABLE f USING fts5(body, content='d', content_rowid='id');",
        )
        .unwrap();
        let cache = SchemaCache::load(&c, &crate::schema::Exposure::All).unwrap();
        // (query, how many filters keep the three-valued CASE form)
        for (query, three_valued) in [
            ("or=(body.fts.a,body.fts.b)", 0),
            ("and=(body.fts.a,or(body.fts.b,id.eq.1))", 0),
            ("not.and=(not.or(body.fts.a,body.fts.b))", 0),
            ("not.or=(body.fts.a,body.fts.b)", 2),
            ("or=(body.not.fts.a,body.fts.b)", 1),
            ("and=(id.gt.0,not.or(body.fts.a,body.fts.b))", 2),
        ] {
            let q = QueryParams::parse(query).unwrap();
            let p = plan_read(&cache, "d", &q, &headers(), Limits::default()).unwrap();
            let sql = crate::sql::select(&p.root);
            assert_eq!(
                sql.text.matches("CASE WHEN").count(),
                three_valued,
                "{query}: {}",
                sql.text
            );
            assert_eq!(sql.text.matches(" IN (SELECT rowid FROM \"f\"").count(), 2);
            if query == "or=(body.fts.a,body.fts.b)" {
                let plan = query_plan(&c, &sql);
                // Each branch looks rows up by the index's matches: no full scan of d.
                assert!(!plan.contains("SCAN t0"), "{plan}");
                assert!(plan.contains("MULTI-INDEX OR"), "{plan}");
            }
        }
    }

    #[test]
    fn full_text_query_is_one_bound_parameter() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE d (id INTEGER PRIMARY KEY, \"b\"\"x\" TEXT);
             CREATE VIRTUAL TABLE \"d'fts\" USING fts5(\"b\"\"x\", content='d', content_rowid='id');",
        )
        .unwrap();
        let cache = SchemaCache::load(&c, &crate::schema::Exposure::All).unwrap();
        let q = QueryParams::parse("%22b%5C%22x%22=not.wfts.%22x%27%20y);DROP%22%20z").unwrap();
        let p = plan_read(&cache, "d", &q, &headers(), Limits::default()).unwrap();
        let sql = crate::sql::select(&p.root);
        assert!(
            sql.text.ends_with(
                " WHERE NOT (CASE WHEN \"t0\".\"b\"\"x\" IS NULL THEN NULL ELSE \"t0\".\"id\" IN \
                 (SELECT rowid FROM \"d'fts\" WHERE \"d'fts\".\"b\"\"x\" MATCH ?) END)"
            ),
            "{}",
            sql.text
        );
        assert_eq!(
            sql.params,
            [Value::Text("(\"x' y);DROP\" AND \"z\")".into())]
        );
        // Not negated, at the top: a plain IN, so SQLite looks rows up by the index's matches.
        let q = QueryParams::parse("%22b%5C%22x%22=fts.x").unwrap();
        let p = plan_read(&cache, "d", &q, &headers(), Limits::default()).unwrap();
        let sql = crate::sql::select(&p.root);
        assert!(
            sql.text.ends_with(
                " WHERE (\"t0\".\"id\" IN (SELECT rowid FROM \"d'fts\" WHERE \"d'fts\".\"b\"\"x\" MATCH ?))"
            ),
            "{}",
            sql.text
        );
        let plan = query_plan(&c, &sql);
        assert!(
            plan.contains("SEARCH t0 USING INTEGER PRIMARY KEY"),
            "{plan}"
        );
    }

    #[test]
    fn contentless_fts5_tables_are_searched_by_rowid_alone() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE VIRTUAL TABLE cl USING fts5(x, content='');
             INSERT INTO cl (rowid, x) VALUES (1, 'a b'), (2, 'c'), (3, 'a');",
        )
        .unwrap();
        let cache = SchemaCache::load(&c, &crate::schema::Exposure::All).unwrap();
        let count = |q: &str| -> i64 {
            let q = QueryParams::parse(q).unwrap();
            let p = plan_read(&cache, "cl", &q, &headers(), Limits::default()).unwrap();
            let sql = crate::sql::count(&p.root);
            c.query_row(&sql.text, rusqlite::params_from_iter(&sql.params), |r| {
                r.get(0)
            })
            .unwrap()
        };
        // Its column reads as NULL, which must not hide rows from `not.` or trees.
        assert_eq!(count("x=fts.a"), 2);
        assert_eq!(count("x=not.fts.a"), 1);
        assert_eq!(count("or=(x.fts.c,x.fts.b)"), 2);
    }

    #[test]
    fn full_text_errors_are_client_errors() {
        for (rel, q, code) in [
            ("docs", "id=fts.1", "PGRST127"),
            ("notes", "id=fts.1", "PGRST127"),
            ("docs", "body->a=fts.x", "PGRST127"),
            ("docs", "nope=fts.x", "42703"),
            ("docs", "body=fts.fat%20cat", "42601"),
            ("docs", "body=plfts.%20*%20", "22023"),
            ("docs", "body=fts.!fat", "PGRST127"),
            ("docs", "body=fts.fat%20<0>%20cat", "PGRST127"),
            ("docs", "body=fts.fat%00", "22021"),
            ("docs", "body=wfts.fat%00", "22021"),
        ] {
            let e = search(rel, q).unwrap_err();
            assert_eq!((e.status, e.code.as_str()), (400, code), "{rel}?{q}: {e:?}");
        }
        let e = search("docs", "id=fts.1").unwrap_err();
        assert_eq!(
            e.hint.as_deref(),
            Some(
                "Create an external-content FTS5 index for it: CREATE VIRTUAL TABLE \"docs_fts\" \
                 USING fts5(\"id\", content='docs', content_rowid='id'); INSERT INTO \"docs_fts\"\
                 (\"docs_fts\") VALUES ('rebuild'); and keep it in step with triggers on 'docs' \
                 (https://sqlite.org/fts5.html#external_content_tables)."
            )
        );
        // Without a rowid (a view, a WITHOUT ROWID table) the hint never links through one;
        // a shadowed rowid is named by an alias no column shadows.
        for (rel, key) in [
            ("v", "'<integer column>'"),
            ("w", "'<integer column>'"),
            ("s", "'_rowid_'"),
        ] {
            let e = rows_in(
                "CREATE TABLE t (id TEXT, body TEXT); CREATE VIEW v AS SELECT id, body FROM t;
                 CREATE TABLE w (id TEXT PRIMARY KEY, body TEXT) WITHOUT ROWID;
                 CREATE TABLE s (rowid TEXT, body TEXT);",
                rel,
                "body=fts.x",
            )
            .unwrap_err();
            let hint = e.hint.unwrap();
            assert!(
                hint.contains(&format!("content='{rel}', content_rowid={key});")),
                "{hint}"
            );
        }
    }

    #[test]
    fn json_keys_and_bool_values() {
        let c = cache();
        let q = QueryParams::parse("select=j->a->>b,j->0,x:j->a&b=eq.true").unwrap();
        let p = plan_read(&c, "t", &q, &headers(), Limits::default()).unwrap();
        let keys: Vec<_> = p.root.fields.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys, ["b", "j", "x"]);
        assert_eq!(
            p.root.fields[0].expr,
            Expr::JsonPath {
                column: "j".into(),
                path: "$.\"a\".\"b\"".into(),
                text: true
            }
        );
        match &p.root.conditions[0] {
            Condition::Pred { pred, .. } => {
                assert_eq!(
                    pred,
                    &Predicate::Cmp(SqlCmp::Compare(Comparison::Eq), Value::Integer(1))
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
