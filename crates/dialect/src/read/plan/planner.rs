//! Planning a read: the relation looked up (hidden and missing alike get PGRST205), then
//! the select list with its embedded resources, and the filters, logic trees, order and page
//! of every scope (the root and each embed), checked as a whole ([`plan_read`]).
//!
//! Embeds follow the schema cache's relationships (see `relationships.rs`): each becomes a
//! child node with the link (join columns, junction) to its parent. Embeds nest at most
//! [`MAX_EMBED_DEPTH`] levels, a request holds at most [`MAX_EMBEDS`] of them and each shows at
//! most [`MAX_EMBED_FIELDS`] fields (400 PGRST127 beyond), which bounds the one statement a
//! read becomes. A scoped parameter
//! (`books.order`, `books.author.name=eq.x`) names an embed by its alias or, as PostgREST
//! still allows, by its relation's name; one that names no embed is PGRST108.

use std::sync::Arc;

use crate::access::{Access, Grant, Privilege};
use crate::error::{ApiError, ErrorCode};
use crate::headers::RequestHeaders;
use crate::query::{
    EmbedPath, Field, IsValue, LogicTree, Operation, OrderTerm, QueryParams, Range, SelectItem,
};
use crate::relationships::Cardinality;
use crate::schema_cache::{Relation, SchemaCache};

use super::conditions::{condition, tree_condition};
use super::fields::{aggregate_field, order_item, output_field, star};
use super::full_text::full_text_drives;
use super::patterns::check_regexes;
use super::tree::*;

/// How deep embeds may nest (the root is level 0).
pub const MAX_EMBED_DEPTH: usize = 8;
/// How many embeds one request may hold.
pub const MAX_EMBEDS: usize = 64;
/// How many fields one embedded resource may show: SQLite's `json_object` takes at most
/// 1,000 arguments, two per field.
pub const MAX_EMBED_FIELDS: usize = 400;

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
    plan_read_as(cache, relation, query, headers, limits, None, false)
}

/// [`plan_read`] for a role ([`Access`]; `None` is unrestricted): only the columns and rows
/// it may read. `writing`: the read of a write's own relation, which the role may lack the
/// read privilege on (then it names no column and gets no representation).
pub fn plan_read_as(
    cache: &SchemaCache,
    relation: &str,
    query: &QueryParams,
    headers: &RequestHeaders,
    limits: Limits,
    access: Option<&Access<'_>>,
    writing: bool,
) -> Result<ReadPlan, ApiError> {
    let rel = resolve_relation(cache, relation)?.clone();
    let mut planner = Planner {
        cache,
        query,
        max_rows: limits.max_rows,
        aggregates: limits.aggregates,
        aliases: 0,
        embeds: 0,
        scopes: Vec::new(),
        access,
        writing,
    };
    let alias = planner.alias();
    let mut root = planner.node(rel, query.select.as_deref(), &Vec::new(), alias, false)?;
    // Every scoped parameter must name an embed of the select.
    for path in query
        .filters
        .iter()
        .map(|(p, _)| p)
        .chain(query.logic.iter().map(|(p, _)| p))
        .chain(query.order.iter().map(|(p, _)| p))
        .chain(query.ranges.keys())
        .filter(|p| !p.is_empty())
    {
        if !planner.scopes.iter().any(|s| path_matches(path, s)) {
            let known = (0..path.len())
                .rev()
                .find(|&n| n == 0 || planner.scopes.iter().any(|s| path_matches(&path[..n], s)))
                .unwrap_or(0);
            return Err(ApiError::not_embedded(&path[known]));
        }
    }

    // The root's page: the query's limit/offset, intersected with the Range header.
    let range = query.ranges.get(&Vec::new()).copied().unwrap_or_default();
    if range.limit.is_some_and(|l| l < 0) {
        return Err(negative_limit());
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
    root.offset = lo;
    root.limit = limit;

    Ok(ReadPlan {
        root,
        count: headers.prefer.count,
        media: headers.media,
        max_rows: limits.max_rows,
    })
}

/// The names one level of a scope answers to: the embed's key (its alias, else its name)
/// and the name as written.
type Scope = Vec<(String, String)>;

/// True when the scoped parameter's path names the scope.
fn path_matches(path: &[String], scope: &Scope) -> bool {
    path.len() == scope.len()
        && path
            .iter()
            .zip(scope)
            .all(|(p, (key, name))| p == key || p == name)
}

struct Planner<'a> {
    cache: &'a SchemaCache,
    query: &'a QueryParams,
    max_rows: Option<i64>,
    /// Aggregates are allowed in `select`.
    aggregates: bool,
    aliases: usize,
    embeds: usize,
    /// The scope of every node planned so far (the root's is empty).
    scopes: Vec<Scope>,
    /// The role's privileges (`None`: unrestricted).
    access: Option<&'a Access<'a>>,
    /// The root is a write's relation (see [`plan_read_as`]).
    writing: bool,
}

/// The read grant of a role that may not read its write's relation: no column.
static NO_COLUMNS: std::sync::LazyLock<Grant> = std::sync::LazyLock::new(|| Grant {
    columns: Some(Default::default()),
    filter: None,
});

impl<'a> Planner<'a> {
    fn alias(&mut self) -> String {
        let mut buf = itoa::Buffer::new();
        let n = buf.format(self.aliases);
        let mut a = String::with_capacity(1 + n.len());
        a.push('t');
        a.push_str(n);
        self.aliases += 1;
        a
    }

    /// Plans one node: its fields and embeds, then the parameters scoped to it. The fields of
    /// a `spread` node are lifted into its parent, which also does any grouping.
    fn node(
        &mut self,
        rel: Arc<Relation>,
        items: Option<&[SelectItem]>,
        scope: &Scope,
        alias: String,
        spread: bool,
    ) -> Result<ReadNode, ApiError> {
        self.scopes.push(scope.clone());
        let grant = self.read_grant(&rel, scope.is_empty())?;
        let star = |rel: &Relation| {
            let mut all = star(rel);
            if let Some(g) = grant {
                all.retain(|f| matches!(&f.expr, Expr::Column(c) if g.allows_column(c)));
            }
            all
        };
        let mut fields = Vec::new();
        let mut children: Vec<Embed> = Vec::new();
        match items {
            None => fields = star(&rel),
            Some(items) => {
                for item in items {
                    match item {
                        SelectItem::Star => fields.extend(star(&rel)),
                        SelectItem::Column { alias, field, cast } => fields.push(output_field(
                            &rel,
                            alias.as_deref(),
                            field,
                            cast.as_deref(),
                        )?),
                        SelectItem::Aggregate {
                            alias,
                            function,
                            field,
                            cast,
                            aggregate_cast,
                        } => {
                            if !self.aggregates {
                                return Err(ApiError::new(
                                    400,
                                    ErrorCode::AggregatesDisabled,
                                    "Use of aggregate functions is not allowed",
                                ));
                            }
                            fields.push(aggregate_field(
                                &rel,
                                alias.as_deref(),
                                *function,
                                field.as_ref(),
                                cast.as_deref(),
                                aggregate_cast.as_deref(),
                            )?);
                        }
                        SelectItem::Embed {
                            alias,
                            relation,
                            hints,
                            spread,
                            items,
                        } => {
                            let embed = self.embed(
                                &rel,
                                alias.as_deref(),
                                relation,
                                hints,
                                *spread,
                                items,
                                scope,
                            )?;
                            let at = children.len();
                            if embed.spread {
                                for f in &embed.node.fields {
                                    fields.push(OutputField {
                                        key: f.key.clone(),
                                        expr: spread_expr(at, &f.expr),
                                        kind: f.kind,
                                    });
                                }
                            } else if embed.shown {
                                fields.push(OutputField {
                                    key: embed.key.clone(),
                                    expr: Expr::Embed(at),
                                    kind: OutputKind::RawJson,
                                });
                            }
                            children.push(embed);
                        }
                    }
                }
            }
        }

        let query = self.query;
        let mine = |p: &EmbedPath| path_matches(p, scope);
        let mut conditions = Vec::new();
        for (_, f) in query.filters.iter().filter(|(p, _)| mine(p)) {
            conditions.push(filter(&rel, &children, &f.field, f.negated, &f.operation)?);
        }
        for (_, tree) in query.logic.iter().filter(|(p, _)| mine(p)) {
            conditions.push(logic(&rel, &children, tree)?);
        }
        for c in &mut conditions {
            full_text_drives(c, false);
        }
        check_regexes(&conditions)?;
        // `!inner` embeds keep only the rows that have a related row.
        for e in children.iter().filter(|e| e.inner) {
            conditions.push(exists(e, false));
        }

        let mut order = Vec::new();
        for (_, terms) in query.order.iter().filter(|(p, _)| mine(p)) {
            for t in terms {
                order.push(order_term(&rel, &children, t)?);
            }
        }

        if !spread {
            check_grouped_order(&rel, &fields, &order)?;
        }
        if let (Some(access), Some(grant)) = (self.access, grant) {
            self.check_columns(access, grant, &rel, &fields, &conditions, &order, &children)?;
            // The role's rows only: ANDed into this node, so into every count, `!inner`
            // and `is.null` test and embedding that reads it.
            if let Some(c) = access.row_filter(&rel, Privilege::Read)? {
                conditions.push(c);
            }
        }

        let (offset, limit) = if scope.is_empty() {
            (0, None)
        } else {
            let range = query
                .ranges
                .iter()
                .filter(|(p, _)| mine(p))
                .map(|(_, r)| *r)
                .next_back()
                .unwrap_or_default();
            self.page(range)?
        };
        Ok(ReadNode {
            relation: rel,
            alias,
            fields,
            conditions,
            order,
            offset,
            limit,
            children,
        })
    }

    /// The role's read grant on `rel` (`None` when unrestricted); 42501 without one, except
    /// on a write's own relation, which then shows no column.
    fn read_grant(&self, rel: &Relation, root: bool) -> Result<Option<&'a Grant>, ApiError> {
        let Some(access) = self.access else {
            return Ok(None);
        };
        match access.get(&rel.name, Privilege::Read) {
            Some(g) => Ok(Some(g)),
            None if root && self.writing => Ok(Some(&NO_COLUMNS)),
            None => Err(access.denied(rel)),
        }
    }

    /// 42501 unless the grant covers every column the node reads: its fields, conditions and
    /// order, and the columns its embeds are joined on (on both sides, and a junction's).
    #[allow(clippy::too_many_arguments)]
    fn check_columns(
        &self,
        access: &Access<'_>,
        grant: &Grant,
        rel: &Relation,
        fields: &[OutputField],
        conditions: &[Condition],
        order: &[OrderItem],
        children: &[Embed],
    ) -> Result<(), ApiError> {
        for f in fields {
            access.check_expr(rel, grant, &f.expr)?;
        }
        for c in conditions {
            access.check_condition(rel, grant, c)?;
        }
        for o in order {
            match &o.expr {
                Expr::Spread { embed, inner } => {
                    if let Some(e) = children.get(*embed) {
                        let child = &e.node.relation;
                        let g = access.grant(child, Privilege::Read)?;
                        access.check_expr(child, g, inner)?;
                    }
                }
                e => access.check_expr(rel, grant, e)?,
            }
        }
        for e in children {
            let child = &e.node.relation;
            let child_grant = access.grant(child, Privilege::Read)?;
            let column = |r: &Relation, g: &Grant, c: &str| {
                if g.allows_column(c) {
                    Ok(())
                } else {
                    Err(access.denied(r))
                }
            };
            for (p, c) in &e.link.pairs {
                column(rel, grant, p)?;
                column(child, child_grant, c)?;
            }
            if let Some(j) = &e.link.junction {
                let Some(junction) = self.cache.relation(&j.table) else {
                    return Err(ApiError::internal("a junction the schema cache lacks"));
                };
                let jg = access.grant(junction, Privilege::Read)?;
                // The junction is joined without its own conditions: a row filter on it
                // could not hold, so such a junction is not followed.
                if jg.filter.is_some() {
                    return Err(access.denied(junction));
                }
                for (p, jc) in &j.parent {
                    column(rel, grant, p)?;
                    column(junction, jg, jc)?;
                }
                for (c, jc) in &j.child {
                    column(child, child_grant, c)?;
                    column(junction, jg, jc)?;
                }
            }
        }
        Ok(())
    }

    /// A relationship error whose candidates name a relation the allow-list hides (a view
    /// over a hidden table keeps that table's foreign key names) keeps only its message.
    fn without_hidden_names(&self, mut e: ApiError) -> ApiError {
        let details = e
            .details
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or_default();
        let hint = e.hint.clone().unwrap_or_default();
        if self.cache.mentions_hidden(&details) || self.cache.mentions_hidden(&hint) {
            e.details = None;
            e.hint = None;
        }
        e
    }

    /// An embed's page: its own limit/offset, under the server's row cap.
    fn page(&self, range: Range) -> Result<(i64, Option<i64>), ApiError> {
        if range.limit.is_some_and(|l| l < 0) {
            return Err(negative_limit());
        }
        let mut limit = range.limit;
        if let Some(max) = self.max_rows {
            limit = Some(limit.map_or(max, |l| l.min(max)));
        }
        Ok((range.offset.unwrap_or(0).max(0), limit))
    }

    #[allow(clippy::too_many_arguments)]
    fn embed(
        &mut self,
        parent: &Relation,
        alias: Option<&str>,
        target: &str,
        hints: &[String],
        spread: bool,
        items: &[SelectItem],
        scope: &Scope,
    ) -> Result<Embed, ApiError> {
        if scope.len() >= MAX_EMBED_DEPTH {
            return Err(ApiError::not_implemented(format!(
                "Embedded resources nest at most {MAX_EMBED_DEPTH} levels deep ('{target}' is at level {})",
                scope.len() + 1
            )));
        }
        self.embeds += 1;
        if self.embeds > MAX_EMBEDS {
            return Err(ApiError::not_implemented(format!(
                "A request embeds at most {MAX_EMBEDS} resources"
            )));
        }
        let mut inner = false;
        let mut hint = None;
        for h in hints {
            match h.as_str() {
                "inner" => inner = true,
                "left" => inner = false,
                other if hint.is_none() => hint = Some(other),
                other => {
                    return Err(ApiError::new(
                        400,
                        ErrorCode::QueryParse,
                        format!(
                            "\"failed to parse select parameter\": more than one hint on '{target}' ('{other}')"
                        ),
                    ));
                }
            }
        }
        let relationship = self
            .cache
            .relationships
            .find(&parent.name, target, hint)
            .map_err(|e| self.without_hidden_names(e))?
            .clone();
        let Some(child) = self.cache.relation(&relationship.foreign_table).cloned() else {
            return Err(ApiError::internal(
                "a relationship names a relation the schema cache lacks",
            ));
        };
        if spread && !relationship.to_one() {
            return Err(ApiError::new(
                400,
                ErrorCode::Spread,
                format!("A spread operation on '{target}' is not possible"),
            )
            .with_details(format!(
                "'{}' and '{target}' do not form a many-to-one or one-to-one relationship",
                parent.name
            )));
        }
        let child_alias = self.alias();
        let (pairs, junction) = match &relationship.cardinality {
            Cardinality::ManyToMany(j) => (
                Vec::new(),
                Some(JunctionLink {
                    table: j.table.clone(),
                    alias: self.alias(),
                    parent: j.source.clone(),
                    child: j.target.clone(),
                }),
            ),
            _ => (relationship.columns.clone(), None),
        };
        let link = Link {
            table: child.name.clone(),
            alias: child_alias.clone(),
            pairs,
            junction,
        };
        let key = alias.unwrap_or(target).to_string();
        let mut child_scope = scope.clone();
        child_scope.push((key.clone(), target.to_string()));
        let node = self.node(child, Some(items), &child_scope, child_alias, spread)?;
        if node.fields.len() > MAX_EMBED_FIELDS {
            return Err(ApiError::not_implemented(format!(
                "An embedded resource shows at most {MAX_EMBED_FIELDS} fields ('{target}' asks for {})",
                node.fields.len()
            )));
        }
        Ok(Embed {
            key,
            name: target.to_string(),
            link,
            node,
            to_one: relationship.to_one(),
            spread,
            shown: !items.is_empty(),
            inner,
        })
    }
}

/// A field of a to-one spread, read through the embed. An aggregate in it is hoisted: it
/// runs in the parent over the related values (`max((SELECT … FROM <related row>))`), so
/// the parent's rows are grouped as PostgREST groups them.
fn spread_expr(embed: usize, e: &Expr) -> Expr {
    match e {
        Expr::Aggregate { function, arg } => Expr::Aggregate {
            function: *function,
            // `count()` of a spread counts the rows that have a related row.
            arg: Some(Box::new(match arg {
                Some(arg) => spread_expr(embed, arg),
                None => Expr::Spread {
                    embed,
                    inner: Box::new(Expr::Present),
                },
            })),
        },
        Expr::Cast { inner, to } if inner.is_aggregate() => Expr::Cast {
            inner: Box::new(spread_expr(embed, inner)),
            to: *to,
        },
        other => Expr::Spread {
            embed,
            inner: Box::new(other.clone()),
        },
    }
}

/// In a grouped node (one with aggregates), an order term must be one of the grouping
/// fields, as PostgreSQL requires (400 42803 otherwise); ordering by an aggregate is not
/// supported, as in PostgREST.
fn check_grouped_order(
    rel: &Relation,
    fields: &[OutputField],
    order: &[OrderItem],
) -> Result<(), ApiError> {
    if !fields.iter().any(|f| f.expr.is_aggregate()) {
        return Ok(());
    }
    for o in order {
        if !fields.iter().any(|f| f.expr == o.expr) {
            let name = match &o.expr {
                Expr::Column(c) | Expr::JsonPath { column: c, .. } => c.as_str(),
                Expr::Spread { inner, .. } => match inner.as_ref() {
                    Expr::Column(c) | Expr::JsonPath { column: c, .. } => c.as_str(),
                    _ => "?",
                },
                _ => "?",
            };
            return Err(ApiError::new(
                400,
                ErrorCode::GroupingError,
                format!(
                    "column \"{}.{name}\" must appear in the GROUP BY clause or be used in an aggregate function",
                    rel.name
                ),
            ));
        }
    }
    Ok(())
}

fn negative_limit() -> ApiError {
    ApiError::range("Limit should be greater than or equal to zero.")
}

/// `[NOT] EXISTS` a row of the embed that meets its conditions.
fn exists(e: &Embed, negated: bool) -> Condition {
    Condition::Exists {
        negated,
        link: Box::new(e.link.clone()),
        conditions: e.node.conditions.clone(),
    }
}

/// The embed a filter's or order's name designates (by its key, as PostgREST matches).
fn embed_named<'e>(children: &'e [Embed], name: &str) -> Option<(usize, &'e Embed)> {
    children.iter().enumerate().find(|(_, e)| e.key == name)
}

/// A filter: on a column, or `is.null` / `not.is.null` on an embed (filtering the parents).
fn filter(
    rel: &Relation,
    children: &[Embed],
    field: &Field,
    negated: bool,
    operation: &Operation,
) -> Result<Condition, ApiError> {
    if field.path.is_empty()
        && let Some((_, e)) = embed_named(children, &field.name)
    {
        // `rel=is.null`: no related row; `rel=not.is.null`: one at least.
        return match operation {
            Operation::Is(IsValue::Null) => Ok(exists(e, !negated)),
            Operation::Is(IsValue::NotNull) => Ok(exists(e, negated)),
            _ => Err(ApiError::new(
                400,
                ErrorCode::EmbedFilter,
                format!("Bad operator on the '{}' embedded resource", field.name),
            )
            .with_details("Only is null or not is null filters are allowed on embedded resources")),
        };
    }
    condition(rel, field, negated, operation)
}

fn logic(rel: &Relation, children: &[Embed], tree: &LogicTree) -> Result<Condition, ApiError> {
    if children.is_empty() {
        return tree_condition(rel, tree);
    }
    match tree {
        LogicTree::Leaf(f) => filter(rel, children, &f.field, f.negated, &f.operation),
        LogicTree::Node {
            negated,
            and,
            children: trees,
        } => Ok(Condition::Tree {
            negated: *negated,
            and: *and,
            children: trees
                .iter()
                .map(|t| logic(rel, children, t))
                .collect::<Result<_, _>>()?,
        }),
    }
}

/// An order term: a column, or a column of a to-one embed (`order=author(name).desc`).
fn order_term(rel: &Relation, children: &[Embed], t: &OrderTerm) -> Result<OrderItem, ApiError> {
    let Some(name) = &t.relation else {
        return order_item(rel, t);
    };
    let Some((at, e)) = embed_named(children, name) else {
        return Err(ApiError::not_embedded(name));
    };
    if !e.to_one {
        return Err(ApiError::new(
            400,
            ErrorCode::RelatedOrder,
            format!("A related order on '{name}' is not possible"),
        )
        .with_details(format!(
            "'{}' and '{name}' do not form a many-to-one or one-to-one relationship",
            rel.name
        )));
    }
    let plain = OrderTerm {
        relation: None,
        ..t.clone()
    };
    // Checked against the embedded relation; evaluated through the link.
    let item = order_item(&e.node.relation, &plain)?;
    Ok(OrderItem {
        expr: Expr::Spread {
            embed: at,
            inner: Box::new(item.expr),
        },
        ..item
    })
}
