//! Filters and logic trees turned into conditions: each operator's SQL comparison, the bind
//! values SQLite should compare with (by the column's affinity), JSON paths compared as
//! PostgreSQL compares them.

use rusqlite::types::Value;

use crate::error::ApiError;
use crate::query::{Arrow, CmpOp, Comparison, Field, Filter, LogicTree, Operation};
use crate::schema_cache::{Affinity, Column, Relation, ValueKind};

use super::fields::field_expr;
use super::full_text::full_text;
use super::patterns::{like_to_glob, regex_len};
use super::tree::*;

pub(crate) fn tree_condition(rel: &Relation, tree: &LogicTree) -> Result<Condition, ApiError> {
    map_tree(tree, &mut |f| {
        condition(rel, &f.field, f.negated, &f.operation)
    })
}

/// `tree` as a [`Condition`] of the same shape, each leaf through `leaf`.
fn map_tree(
    tree: &LogicTree,
    leaf: &mut impl FnMut(&Filter) -> Result<Condition, ApiError>,
) -> Result<Condition, ApiError> {
    match tree {
        LogicTree::Leaf(f) => leaf(f),
        LogicTree::Node {
            negated,
            and,
            children,
        } => Ok(Condition::Tree {
            negated: *negated,
            and: *and,
            children: children
                .iter()
                .map(|c| map_tree(c, leaf))
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
pub(crate) fn comparable(raw: &str, col: Option<&Column>) -> Value {
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

/// The JSON array an `in.(…)` list is bound as (one parameter, read by `json_each`): each
/// item converted for `col` as a comparison's value is ([`comparable`]).
pub(crate) fn in_list_json(values: &[String], col: Option<&Column>) -> String {
    let arr: Vec<serde_json::Value> = values
        .iter()
        .map(|v| match comparable(v, col) {
            Value::Integer(i) => serde_json::Value::from(i),
            Value::Real(f) => serde_json::Value::from(f),
            _ => serde_json::Value::from(v.as_str()),
        })
        .collect();
    serde_json::Value::Array(arr).to_string()
}

pub(super) fn condition(
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
            let expr = text_side(expr, json_arrow);
            Ok(pred_for(expr, Predicate::In(in_list_json(values, col))))
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
