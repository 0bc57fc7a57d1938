//! Planning a read: the relation looked up (hidden and missing alike get PGRST205), then
//! the select list, filters, logic trees, order and page of the query string, checked as a
//! whole ([`plan_read`]).

use std::sync::Arc;

use crate::error::ApiError;
use crate::headers::RequestHeaders;
use crate::query::{QueryParams, SelectItem};
use crate::schema_cache::{Relation, SchemaCache};

use super::conditions::{condition, tree_condition};
use super::fields::{order_item, output_field, star};
use super::full_text::full_text_drives;
use super::patterns::check_regexes;
use super::tree::*;

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
