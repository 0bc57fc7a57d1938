//! Select fields and order terms resolved against the relation: columns, JSON paths,
//! casts from the whitelist, aggregates, aliases, and how each value renders.

use crate::error::{ApiError, ErrorCode};
use crate::query::{AggregateFn, Arrow, Direction, Field, JsonKey, Nulls, OrderTerm};
use crate::schema_cache::{Affinity, Relation, ValueKind};

use super::tree::*;

pub(super) fn star(rel: &Relation) -> Vec<OutputField> {
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
pub(super) fn field_expr(rel: &Relation, field: &Field) -> Result<(Expr, OutputKind), ApiError> {
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
                        ErrorCode::QueryParse,
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

pub(super) fn output_field(
    rel: &Relation,
    alias: Option<&str>,
    field: &Field,
    cast: Option<&str>,
) -> Result<OutputField, ApiError> {
    let (expr, kind) = field_expr(rel, field)?;
    let key = alias.map_or_else(|| field_key(field), str::to_string);
    let (expr, kind) = apply_cast(expr, kind, cast)?;
    Ok(OutputField { key, expr, kind })
}

/// `CAST(expr AS …)` for a whitelisted type, and how the result renders.
fn apply_cast(
    expr: Expr,
    kind: OutputKind,
    cast: Option<&str>,
) -> Result<(Expr, OutputKind), ApiError> {
    let Some(cast) = cast else {
        return Ok((expr, kind));
    };
    let to = CastType::from_pg(cast)?;
    let kind = match to {
        CastType::Bool => OutputKind::Bool,
        CastType::Json => OutputKind::Json,
        _ => OutputKind::Plain,
    };
    Ok((
        Expr::Cast {
            inner: Box::new(expr),
            to,
        },
        kind,
    ))
}

/// An aggregate of `select`: `function(field::cast)::aggregate_cast`, or `count(*)` without a
/// field. Its key is the alias, else the function's name (PostgreSQL's label for it).
/// `sum` and `avg` take numbers only: over text, JSON or booleans PostgreSQL has no such
/// function (404 42883, with its hint), which a cast such as `::numeric` fixes.
pub(super) fn aggregate_field(
    rel: &Relation,
    alias: Option<&str>,
    function: AggregateFn,
    field: Option<&Field>,
    cast: Option<&str>,
    aggregate_cast: Option<&str>,
) -> Result<OutputField, ApiError> {
    let (arg, kind) = match field {
        None => (None, OutputKind::Plain),
        Some(field) => {
            let (expr, kind) = field_expr(rel, field)?;
            let (expr, kind) = apply_cast(expr, kind, cast)?;
            if matches!(function, AggregateFn::Sum | AggregateFn::Avg)
                && let Some(pg_type) = non_numeric_type(rel, &expr, kind)
            {
                return Err(ApiError::new(
                    404,
                    ErrorCode::UndefinedFunction,
                    format!("function {}({pg_type}) does not exist", function.name()),
                )
                .with_hint(
                    "No function matches the given name and argument types. You might need to add explicit type casts.",
                ));
            }
            (Some(Box::new(expr)), kind)
        }
    };
    // `min`/`max` keep their argument's rendering; `count`, `sum` and `avg` give numbers.
    let kind = match function {
        AggregateFn::Min | AggregateFn::Max => kind,
        _ => OutputKind::Plain,
    };
    let expr = Expr::Aggregate { function, arg };
    let (expr, kind) = apply_cast(expr, kind, aggregate_cast)?;
    Ok(OutputField {
        key: alias.map_or_else(|| function.name().to_string(), str::to_string),
        expr,
        kind,
    })
}

/// The PostgreSQL type of a value `sum`/`avg` cannot take, if it is one: text, JSON or a
/// boolean (columns declared so, JSON paths, casts to them). Columns without a declared type
/// hold anything and are let through.
fn non_numeric_type(rel: &Relation, expr: &Expr, kind: OutputKind) -> Option<&'static str> {
    match (expr, kind) {
        (_, OutputKind::Bool) => Some("boolean"),
        (_, OutputKind::Json | OutputKind::RawJson) => Some("jsonb"),
        (Expr::Cast { to, .. }, _) => (*to == CastType::Text).then_some("text"),
        (Expr::JsonPath { text: true, .. }, _) => Some("text"),
        (Expr::Column(c), _) => rel
            .column(c)
            .filter(|c| c.affinity == Affinity::Text)
            .map(|_| "text"),
        _ => None,
    }
}

pub(super) fn order_item(rel: &Relation, t: &OrderTerm) -> Result<OrderItem, ApiError> {
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
