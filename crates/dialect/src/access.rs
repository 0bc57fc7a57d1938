//! What one role may do, as the planners enforce it: per relation, which operations
//! (`read`, `insert`, `update`, `delete`), on which columns, and on which rows (a row filter in
//! PostgREST's filter syntax, with claim placeholders). See `docs/postgrest-dialect.md`.
//!
//! [`RoleGrants`] is one role's part of the permissions file, parsed and checked once per
//! load; [`Access`] is that role for one request, with its JWT claims. The planners take an
//! `Option<&Access>`: `None` is the unrestricted API (no permissions file).
//!
//! Semantics, PostgreSQL's where it has them:
//! - A relation the role has no grant on answers as a missing one (the caller builds the
//!   role's schema cache without it, see [`RoleGrants::visible`]); an operation the role lacks
//!   on a relation it sees is 42501 "permission denied for table t" (401 for the anonymous
//!   role, 403 for any other, whether a token, an API key or nothing named it, as PostgREST
//!   answers).
//! - A column outside the grant's column list is 42501 wherever the request names it
//!   (select, filters, order, embedding joins, written columns), as PostgreSQL's column
//!   privileges are; `*` expands to the granted columns only (PostgreSQL would refuse `*`).
//! - A read grant's row filter is ANDed into every read of the relation (the root, embeds,
//!   `!inner` and `is.null` tests, counts); update and delete touch only rows that pass both
//!   the read filter and their own (USING); inserted and updated rows must pass their
//!   operation's filter afterwards (WITH CHECK), and an upsert's existing row must pass the
//!   update filter, else the statement fails with 42501 "new row violates row-level security
//!   policy" and nothing is written.
//! - A placeholder `{claim}` (or `{a.b}`, a path into the claims) stands for a whole filter
//!   value of `eq neq gt gte lt lte isdistinct` or an item of `in`; it is bound, never
//!   spliced. A claim that is missing (or JSON null) is SQL NULL, as
//!   `current_setting('request.jwt.claims')::json->>'sub'` is in a PostgreSQL policy: `eq`
//!   matches nothing, and an `or` with another branch still matches through that branch.

use std::collections::{HashMap, HashSet};

use rusqlite::types::Value;

use crate::error::{ApiError, ErrorCode};
use crate::query::{CmpOp, Field, Filter, LogicTree, Operation, QueryParams};
use crate::read::plan::{Condition, Expr, Predicate, SqlCmp, tree_condition};
use crate::schema_cache::{RelKind, Relation, SchemaCache};

/// The four privileges of the permissions file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Privilege {
    Read,
    Insert,
    Update,
    Delete,
}

impl Privilege {
    pub const ALL: [Privilege; 4] = [
        Privilege::Read,
        Privilege::Insert,
        Privilege::Update,
        Privilege::Delete,
    ];

    /// The key in the permissions file.
    pub fn name(self) -> &'static str {
        match self {
            Privilege::Read => "read",
            Privilege::Insert => "insert",
            Privilege::Update => "update",
            Privilege::Delete => "delete",
        }
    }
}

/// One privilege on one relation: optionally only some columns, optionally only some rows.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// `None`: every column.
    pub columns: Option<HashSet<String>>,
    pub filter: Option<RowFilter>,
}

impl Grant {
    /// Whether the grant covers `column`.
    pub fn allows_column(&self, column: &str) -> bool {
        self.columns.as_ref().is_none_or(|c| c.contains(column))
    }
}

/// A role's privileges on one relation.
#[derive(Debug, Clone, Default)]
pub struct RelationGrants {
    pub read: Option<Grant>,
    pub insert: Option<Grant>,
    pub update: Option<Grant>,
    pub delete: Option<Grant>,
}

impl RelationGrants {
    pub fn get(&self, p: Privilege) -> Option<&Grant> {
        match p {
            Privilege::Read => self.read.as_ref(),
            Privilege::Insert => self.insert.as_ref(),
            Privilege::Update => self.update.as_ref(),
            Privilege::Delete => self.delete.as_ref(),
        }
    }

    pub fn set(&mut self, p: Privilege, g: Grant) {
        match p {
            Privilege::Read => self.read = Some(g),
            Privilege::Insert => self.insert = Some(g),
            Privilege::Update => self.update = Some(g),
            Privilege::Delete => self.delete = Some(g),
        }
    }
}

/// One role's privileges, by relation name.
#[derive(Debug, Clone, Default)]
pub struct RoleGrants {
    pub relations: HashMap<String, RelationGrants>,
}

impl RoleGrants {
    /// Every privilege on every relation of `cache`, every row (`--security-allow-table`'s
    /// meaning, and the unrestricted role).
    pub fn everything(cache: &SchemaCache) -> Self {
        let all = RelationGrants {
            read: Some(Grant::default()),
            insert: Some(Grant::default()),
            update: Some(Grant::default()),
            delete: Some(Grant::default()),
        };
        RoleGrants {
            relations: cache
                .relations()
                .map(|r| (r.name.clone(), all.clone()))
                .collect(),
        }
    }

    /// Whether the role sees `relation` at all (any privilege on it).
    pub fn visible(&self, relation: &str) -> bool {
        self.relations.contains_key(relation)
    }

    /// Checks every relation, column and row filter against `cache`; the error names the
    /// first one that does not fit (`prefix` says where it is, e.g. the role).
    pub fn validate(&self, cache: &SchemaCache, prefix: &str) -> Result<(), String> {
        let mut names: Vec<&String> = self.relations.keys().collect();
        names.sort();
        for name in names {
            let Some(rel) = cache.relation(name) else {
                return Err(format!(
                    "{prefix}.{name}: no table or view \"{name}\" in the database"
                ));
            };
            let grants = &self.relations[name];
            for p in Privilege::ALL {
                let Some(g) = grants.get(p) else { continue };
                let at = format!("{prefix}.{name}.{}", p.name());
                if let Some(cols) = &g.columns {
                    let mut cols: Vec<&String> = cols.iter().collect();
                    cols.sort();
                    for c in cols {
                        if rel.column(c).is_none() {
                            return Err(format!("{at}.columns: \"{name}\" has no column \"{c}\""));
                        }
                    }
                }
                if let Some(f) = &g.filter {
                    f.plan(rel, &serde_json::Value::Null)
                        .map_err(|e| format!("{at}.filter: {}", e.message))?;
                }
            }
        }
        Ok(())
    }
}

/// A role's row filters built against one version of the schema (see
/// [`RoleGrants::filters`]): per relation and privilege, the condition with only its claim
/// placeholders left to bind per request.
#[derive(Debug, Default)]
pub struct RoleFilters {
    by_relation: HashMap<String, [Option<Compiled>; 4]>,
    /// Every read filter of the role was built whole (no claim placeholder, nothing left to
    /// build per request): a read's plan depends on the role and the schema only, so the
    /// plan cache may keep it.
    reads_fixed: bool,
}

impl RoleFilters {
    fn get(&self, relation: &str, p: Privilege) -> Option<&Compiled> {
        self.by_relation.get(relation)?[p as usize].as_ref()
    }
}

impl RoleGrants {
    /// Every row filter of the role built against `cache`, once: a request then only binds
    /// its claims into the placeholders (a filter without any is used as built). A filter
    /// that no longer fits the schema is left out, so a request builds it and gets its error.
    pub fn filters(&self, cache: &SchemaCache) -> RoleFilters {
        let mut by_relation = HashMap::new();
        let mut reads_fixed = true;
        for (name, grants) in &self.relations {
            let Some(rel) = cache.relation(name) else {
                continue;
            };
            let mut slots: [Option<Compiled>; 4] = Default::default();
            for p in Privilege::ALL {
                if let Some(f) = grants.get(p).and_then(|g| g.filter.as_ref()) {
                    slots[p as usize] = f.compile(rel).ok();
                    if p == Privilege::Read {
                        reads_fixed &= matches!(slots[p as usize], Some(Compiled::Fixed(_)));
                    }
                }
            }
            if slots.iter().any(Option::is_some) {
                by_relation.insert(name.clone(), slots);
            }
        }
        RoleFilters {
            by_relation,
            reads_fixed,
        }
    }
}

/// A row filter built against a relation: what does not depend on the claims is built, the
/// leaves with a claim placeholder are kept to bind per request.
#[derive(Debug, Clone, PartialEq)]
enum Compiled {
    /// No placeholder below: the condition as every request uses it.
    Fixed(Condition),
    /// An and/or tree with placeholders below.
    Tree {
        negated: bool,
        and: bool,
        children: Vec<Compiled>,
    },
    /// A leaf with a placeholder.
    Claim(Filter),
}

impl Compiled {
    /// `children` under one and/or node: fixed as a whole when every child is.
    fn node(negated: bool, and: bool, children: Vec<Compiled>) -> Compiled {
        if children.iter().all(|c| matches!(c, Compiled::Fixed(_))) {
            let children = children
                .into_iter()
                .filter_map(|c| match c {
                    Compiled::Fixed(c) => Some(c),
                    _ => None,
                })
                .collect();
            Compiled::Fixed(Condition::Tree {
                negated,
                and,
                children,
            })
        } else {
            Compiled::Tree {
                negated,
                and,
                children,
            }
        }
    }

    /// The condition with `claims` bound.
    fn bind(&self, rel: &Relation, claims: &serde_json::Value) -> Result<Condition, ApiError> {
        match self {
            Compiled::Fixed(c) => Ok(c.clone()),
            Compiled::Tree {
                negated,
                and,
                children,
            } => {
                let bound = children.iter().map(|c| c.bind(rel, claims));
                let children = bound.collect::<Result<_, _>>()?;
                let (negated, and) = (*negated, *and);
                Ok(Condition::Tree {
                    negated,
                    and,
                    children,
                })
            }
            Compiled::Claim(f) => bind_leaf(rel, f, claims),
        }
    }
}

/// A row filter: PostgREST filters (`col=op.value`, `or=(…)`, `and=(…)`), `&`-separated and
/// ANDed, with claim placeholders (see the module documentation).
#[derive(Debug, Clone)]
pub struct RowFilter {
    text: String,
    trees: Vec<LogicTree>,
}

impl RowFilter {
    /// Parses `text`; anything but root filters and logic trees is refused, and so is a
    /// placeholder where it cannot stand.
    pub fn parse(text: &str) -> Result<Self, String> {
        let q = QueryParams::parse(text).map_err(|e| e.message.clone())?;
        if q.select.is_some()
            || !q.order.is_empty()
            || !q.ranges.is_empty()
            || q.columns.is_some()
            || q.on_conflict.is_some()
        {
            return Err(format!(
                "\"{text}\": a row filter takes only filters and and=/or= trees"
            ));
        }
        let mut trees = Vec::new();
        for (path, f) in q.filters {
            if !path.is_empty() {
                return Err(format!(
                    "\"{text}\": a row filter cannot name embedded resources"
                ));
            }
            trees.push(LogicTree::Leaf(f));
        }
        for (path, t) in q.logic {
            if !path.is_empty() {
                return Err(format!(
                    "\"{text}\": a row filter cannot name embedded resources"
                ));
            }
            trees.push(t);
        }
        if trees.is_empty() {
            return Err(format!("\"{text}\": no filter"));
        }
        for t in &trees {
            check_placeholders(t).map_err(|why| format!("\"{text}\": {why}"))?;
        }
        Ok(RowFilter {
            text: text.to_string(),
            trees,
        })
    }

    /// The filter as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The columns it reads.
    pub fn columns(&self) -> HashSet<String> {
        fn walk(t: &LogicTree, out: &mut HashSet<String>) {
            match t {
                LogicTree::Leaf(f) => {
                    out.insert(f.field.name.clone());
                }
                LogicTree::Node { children, .. } => children.iter().for_each(|c| walk(c, out)),
            }
        }
        let mut out = HashSet::new();
        self.trees.iter().for_each(|t| walk(t, &mut out));
        out
    }

    /// The condition over `rel` for a request with `claims`: the trees ANDed, placeholders
    /// bound. Built whole; requests use the [`RoleFilters`] built once instead.
    pub(crate) fn plan(
        &self,
        rel: &Relation,
        claims: &serde_json::Value,
    ) -> Result<Condition, ApiError> {
        self.compile(rel)?.bind(rel, claims)
    }

    /// The filter built against `rel`, placeholders left to bind: the trees ANDed.
    fn compile(&self, rel: &Relation) -> Result<Compiled, ApiError> {
        let mut children = self
            .trees
            .iter()
            .map(|t| compile_tree(rel, t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(if children.len() == 1 {
            children.remove(0)
        } else {
            Compiled::node(false, true, children)
        })
    }
}

/// `t` built against `rel`, its placeholder leaves kept to bind.
fn compile_tree(rel: &Relation, t: &LogicTree) -> Result<Compiled, ApiError> {
    match t {
        LogicTree::Leaf(f) if binds_claims(f) => Ok(Compiled::Claim(f.clone())),
        LogicTree::Leaf(_) => Ok(Compiled::Fixed(tree_condition(rel, t)?)),
        LogicTree::Node {
            negated,
            and,
            children,
        } => Ok(Compiled::node(
            *negated,
            *and,
            children
                .iter()
                .map(|c| compile_tree(rel, c))
                .collect::<Result<_, _>>()?,
        )),
    }
}

/// Whether the leaf takes a claim: a placeholder as the value of a comparison or as an item
/// of `in` (where [`check_placeholders`] lets one stand).
fn binds_claims(f: &Filter) -> bool {
    match &f.operation {
        Operation::Compare {
            op: CmpOp::Compare(_),
            value,
        } => placeholder(value).is_some(),
        Operation::In(values) => values.iter().any(|v| placeholder(v).is_some()),
        _ => false,
    }
}

/// The placeholder a filter value is, if it is one: `{name}` or `{a.b.c}`.
fn placeholder(value: &str) -> Option<&str> {
    let inner = value.strip_prefix('{')?.strip_suffix('}')?;
    let ok = !inner.is_empty()
        && inner.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == ':')
        });
    ok.then_some(inner)
}

/// Placeholders only where they are bound as one value.
fn check_placeholders(t: &LogicTree) -> Result<(), String> {
    match t {
        LogicTree::Node { children, .. } => children.iter().try_for_each(check_placeholders),
        LogicTree::Leaf(f) => match &f.operation {
            Operation::Compare {
                op: CmpOp::Compare(_),
                ..
            }
            | Operation::In(_) => Ok(()),
            Operation::Compare { value, .. } if placeholder(value).is_some() => Err(format!(
                "a claim placeholder ({value}) stands only for a value of eq, neq, gt, gte, lt, lte, isdistinct or in"
            )),
            Operation::Quantified { values, .. }
                if values.iter().any(|v| placeholder(v).is_some()) =>
            {
                Err("a claim placeholder cannot stand in an (any)/(all) list".into())
            }
            _ => Ok(()),
        },
    }
}

/// The claim at `path` (dot-separated keys) as filter text; `None` when missing or null.
fn claim_text(claims: &serde_json::Value, path: &str) -> Option<String> {
    let mut v = claims;
    for key in path.split('.') {
        v = v.get(key)?;
    }
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// One leaf with its placeholders bound (missing claims as SQL NULL).
fn bind_leaf(
    rel: &Relation,
    f: &Filter,
    claims: &serde_json::Value,
) -> Result<Condition, ApiError> {
    let leaf = |operation: Operation| {
        tree_condition(
            rel,
            &LogicTree::Leaf(Filter {
                field: f.field.clone(),
                negated: f.negated,
                operation,
            }),
        )
    };
    // `col = NULL`: NULL on every row (the three-valued logic of a missing claim).
    let null_of = |field: &Field, cmp| -> Result<Condition, ApiError> {
        let expr = match tree_condition(
            rel,
            &LogicTree::Leaf(Filter {
                field: field.clone(),
                negated: false,
                operation: Operation::Is(crate::query::IsValue::Null),
            }),
        )? {
            Condition::Pred { expr, .. } => expr,
            _ => Expr::Column(field.name.clone()),
        };
        Ok(Condition::Pred {
            expr,
            negated: f.negated,
            pred: Predicate::Cmp(cmp, Value::Null),
        })
    };
    match &f.operation {
        Operation::Compare {
            op: op @ CmpOp::Compare(c),
            value,
        } => match placeholder(value) {
            None => leaf(f.operation.clone()),
            Some(path) => match claim_text(claims, path) {
                Some(v) => leaf(Operation::Compare { op: *op, value: v }),
                None => null_of(&f.field, SqlCmp::Compare(*c)),
            },
        },
        Operation::In(values) if values.iter().any(|v| placeholder(v).is_some()) => {
            let mut present = Vec::with_capacity(values.len());
            let mut missing = false;
            for v in values {
                match placeholder(v) {
                    None => present.push(v.clone()),
                    Some(path) => match claim_text(claims, path) {
                        Some(t) => present.push(t),
                        None => missing = true,
                    },
                }
            }
            if !missing {
                return leaf(Operation::In(present));
            }
            // `x IN (a, NULL)` is `x IN (a) OR NULL`: true on a match, else NULL.
            let positive = Filter {
                field: f.field.clone(),
                negated: false,
                operation: Operation::In(present),
            };
            let mut children = vec![tree_condition(rel, &LogicTree::Leaf(positive))?];
            if let Condition::Pred { expr, .. } = &children[0] {
                children.push(Condition::Pred {
                    expr: expr.clone(),
                    negated: false,
                    pred: Predicate::Cmp(
                        SqlCmp::Compare(crate::query::Comparison::Eq),
                        Value::Null,
                    ),
                });
            }
            Ok(Condition::Tree {
                negated: f.negated,
                and: false,
                children,
            })
        }
        _ => leaf(f.operation.clone()),
    }
}

/// One role for one request: its grants and its JWT claims.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub grants: &'a RoleGrants,
    /// The token's claims (`Null` without a token).
    pub claims: &'a serde_json::Value,
    /// The request runs as the anonymous role: a refusal is 401 rather than 403, as
    /// PostgREST answers a request whose role is its anonymous one.
    pub anonymous: bool,
    /// The role's row filters built against the schema the request is planned with (see
    /// [`RoleGrants::filters`]); `None` builds each filter when it is used.
    pub filters: Option<&'a RoleFilters>,
}

impl<'a> Access<'a> {
    /// The grant of `p` on `rel`, or 42501.
    pub fn grant(&self, rel: &Relation, p: Privilege) -> Result<&'a Grant, ApiError> {
        self.grants
            .relations
            .get(&rel.name)
            .and_then(|g| g.get(p))
            .ok_or_else(|| self.denied(rel))
    }

    /// The grant of `p` on `rel`, if any.
    pub fn get(&self, rel: &str, p: Privilege) -> Option<&'a Grant> {
        self.grants.relations.get(rel).and_then(|g| g.get(p))
    }

    /// 42501 "permission denied for table t" (or view), 401 for the anonymous role.
    pub fn denied(&self, rel: &Relation) -> ApiError {
        let kind = if rel.kind == RelKind::View {
            "view"
        } else {
            "table"
        };
        ApiError::new(
            if self.anonymous { 401 } else { 403 },
            ErrorCode::InsufficientPrivilege,
            format!("permission denied for {kind} {}", rel.name),
        )
    }

    /// True when a read's plan depends on this role and the schema only, never on the
    /// request's claims: the role's read filters were all built whole (see
    /// [`RoleGrants::filters`]). Only then may a read plan be cached for the role.
    pub(crate) fn plans_are_claim_free(&self) -> bool {
        self.filters.is_some_and(|f| f.reads_fixed)
    }

    /// `rel`'s row filter for `p` with this request's claims bound, if the role's grant of
    /// `p` has one: as built once for the role ([`Access::filters`]), only its placeholders
    /// bound here.
    pub fn row_filter(&self, rel: &Relation, p: Privilege) -> Result<Option<Condition>, ApiError> {
        let Some(filter) = self.get(&rel.name, p).and_then(|g| g.filter.as_ref()) else {
            return Ok(None);
        };
        match self.filters.and_then(|f| f.get(&rel.name, p)) {
            Some(built) => built.bind(rel, self.claims).map(Some),
            None => filter.plan(rel, self.claims).map(Some),
        }
    }

    /// 42501 unless `grant` covers every column `expr` reads.
    pub(crate) fn check_expr(
        &self,
        rel: &Relation,
        grant: &Grant,
        expr: &Expr,
    ) -> Result<(), ApiError> {
        match expr {
            Expr::Column(c) | Expr::JsonPath { column: c, .. } => {
                if grant.allows_column(c) {
                    Ok(())
                } else {
                    Err(self.denied(rel))
                }
            }
            Expr::Cast { inner, .. } | Expr::AsText(inner) => self.check_expr(rel, grant, inner),
            Expr::Aggregate { arg, .. } => arg
                .as_deref()
                .map_or(Ok(()), |a| self.check_expr(rel, grant, a)),
            // Through an embed: checked against the embedded relation by its node.
            Expr::Embed(_) | Expr::Spread { .. } | Expr::Present => Ok(()),
        }
    }

    /// 42501 unless `grant` covers every column `c` reads on its own relation (not inside
    /// `EXISTS`, whose related rows were checked when their node was planned).
    pub(crate) fn check_condition(
        &self,
        rel: &Relation,
        grant: &Grant,
        c: &Condition,
    ) -> Result<(), ApiError> {
        match c {
            Condition::Pred { expr, .. } => self.check_expr(rel, grant, expr),
            Condition::Tree { children, .. } => children
                .iter()
                .try_for_each(|c| self.check_condition(rel, grant, c)),
            Condition::Exists { .. } => Ok(()),
        }
    }
}

/// The OpenAPI document shows a role the relations it sees and the operations it may use.
impl crate::openapi::Visibility for Access<'_> {
    fn sees(&self, relation: &Relation) -> bool {
        self.grants.visible(&relation.name)
    }

    fn may(&self, relation: &Relation, op: crate::openapi::Operation) -> bool {
        use crate::openapi::Operation as Op;
        let has = |p| self.get(&relation.name, p).is_some();
        match op {
            Op::Read => has(Privilege::Read),
            Op::Insert => has(Privilege::Insert),
            Op::Update => has(Privilege::Update),
            Op::Upsert => has(Privilege::Insert) && has(Privilege::Update),
            Op::Delete => has(Privilege::Delete),
        }
    }

    fn column(&self, relation: &Relation, column: &str, op: crate::openapi::Operation) -> bool {
        use crate::openapi::Operation as Op;
        let covers = |p| {
            self.get(&relation.name, p)
                .is_some_and(|g| g.allows_column(column))
        };
        match op {
            Op::Read | Op::Delete => covers(Privilege::Read),
            Op::Insert => covers(Privilege::Insert),
            Op::Update => covers(Privilege::Update),
            Op::Upsert => covers(Privilege::Insert) && covers(Privilege::Update),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_whole_values_of_comparisons() {
        assert!(RowFilter::parse("owner_id=eq.{sub}").is_ok());
        assert!(RowFilter::parse("or=(public.is.true,owner_id.eq.{sub})").is_ok());
        assert!(RowFilter::parse("org=in.(1,{app.org})").is_ok());
        assert!(RowFilter::parse("name=like.{sub}").is_err());
        assert!(RowFilter::parse("select=a").is_err());
        assert!(RowFilter::parse("").is_err());
        assert!(RowFilter::parse("books.id=eq.1").is_err());
        assert_eq!(placeholder("{a.b}"), Some("a.b"));
        assert_eq!(placeholder("{a,b}"), None);
        assert_eq!(placeholder("{}"), None);
    }

    fn docs() -> SchemaCache {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE docs (id INTEGER PRIMARY KEY, owner_id TEXT, org INTEGER, public BOOLEAN)",
        )
        .unwrap();
        SchemaCache::load(&c, &crate::schema_cache::Exposure::All).unwrap()
    }

    /// The condition the planner builds for `text` written as a request's own filters.
    fn literal(rel: &Relation, text: &str) -> Condition {
        let f = RowFilter::parse(text).unwrap();
        let mut c: Vec<Condition> = f
            .trees
            .iter()
            .map(|t| tree_condition(rel, t).unwrap())
            .collect();
        if c.len() == 1 {
            c.remove(0)
        } else {
            Condition::Tree {
                negated: false,
                and: true,
                children: c,
            }
        }
    }

    /// A role's filters are built once per schema: a request binds only the placeholders,
    /// and what it gets is the condition the planner builds for the same filter with the
    /// claim written in as a literal; a filter without placeholders is used as built.
    #[test]
    fn filters_built_once_bind_only_their_placeholders() {
        let cache = docs();
        let rel = cache.relation("docs").unwrap();
        let mut grants = RoleGrants::default();
        let filtered = |text: &str| Grant {
            columns: None,
            filter: Some(RowFilter::parse(text).unwrap()),
        };
        let mut rg = RelationGrants::default();
        rg.set(
            Privilege::Read,
            filtered("or=(public.is.true,owner_id.eq.{sub})"),
        );
        rg.set(
            Privilege::Insert,
            filtered("owner_id=eq.{sub}&org=in.(1,{app.org})"),
        );
        rg.set(Privilege::Update, filtered("public=is.true&org=gt.2"));
        rg.set(Privilege::Delete, Grant::default());
        grants.relations.insert("docs".into(), rg);
        let built = grants.filters(&cache);
        let claims = serde_json::json!({"sub": "alice", "app": {"org": 7}});
        let access = Access {
            grants: &grants,
            claims: &claims,
            anonymous: false,
            filters: Some(&built),
        };
        let unbuilt = Access {
            filters: None,
            ..access
        };
        let bound = |a: &Access<'_>, p| a.row_filter(rel, p).unwrap();
        for (p, as_literal) in [
            (Privilege::Read, "or=(public.is.true,owner_id.eq.alice)"),
            (Privilege::Insert, "owner_id=eq.alice&org=in.(1,7)"),
            (Privilege::Update, "public=is.true&org=gt.2"),
        ] {
            let want = literal(rel, as_literal);
            assert_eq!(bound(&access, p), Some(want.clone()), "{p:?}");
            assert_eq!(bound(&unbuilt, p), Some(want), "{p:?}");
        }
        assert_eq!(bound(&access, Privilege::Delete), None);
        // Without placeholders: built whole, once.
        let update = built.get("docs", Privilege::Update).unwrap();
        assert_eq!(
            *update,
            Compiled::Fixed(literal(rel, "public=is.true&org=gt.2"))
        );
        // With one: the branch without a placeholder is built, the other kept to bind.
        match built.get("docs", Privilege::Read).unwrap() {
            Compiled::Tree { children, .. } => {
                assert!(matches!(children[0], Compiled::Fixed(_)), "{children:?}");
                assert!(matches!(children[1], Compiled::Claim(_)), "{children:?}");
            }
            other => panic!("{other:?}"),
        }
        // A missing claim is NULL whichever way the filter is built.
        let none = serde_json::Value::Null;
        let anonymous = Access {
            claims: &none,
            ..access
        };
        assert_eq!(
            bound(&anonymous, Privilege::Insert),
            bound(
                &Access {
                    filters: None,
                    ..anonymous
                },
                Privilege::Insert
            )
        );
        // A relation the schema no longer has is left out (its requests build the filter
        // and get the error).
        let mut gone = RoleGrants::default();
        let mut rg = RelationGrants::default();
        rg.set(Privilege::Read, filtered("id=eq.1"));
        gone.relations.insert("gone".into(), rg);
        assert!(gone.filters(&cache).get("gone", Privilege::Read).is_none());
    }

    #[test]
    fn claims_are_text_and_null_is_missing() {
        let claims = serde_json::json!({"sub": "u1", "n": 5, "app": {"org": true}, "z": null});
        assert_eq!(claim_text(&claims, "sub").as_deref(), Some("u1"));
        assert_eq!(claim_text(&claims, "n").as_deref(), Some("5"));
        assert_eq!(claim_text(&claims, "app.org").as_deref(), Some("true"));
        assert_eq!(claim_text(&claims, "z"), None);
        assert_eq!(claim_text(&claims, "nope"), None);
    }
}
