//! Read SQL: turns a read plan into SQL text plus bound parameters ([`crate::sql::Sql`]).
//!
//! A node with aggregates in its fields is grouped by its other fields (PostgREST's implicit
//! `GROUP BY`): by result-column position in the top-level statement, by expression inside
//! an embed's subquery, and its counts count groups.
//!
//! Every identifier is written through [`crate::ident`] after the planner resolved it; every
//! value (filter values, `in` lists as one JSON array, JSON paths, LIMIT/OFFSET) is a `?`
//! parameter, so the SQL text depends only on the request's shape and is reused by the
//! prepared-statement cache. Null ordering is always explicit (`NULLS FIRST/LAST`).
//!
//! Statements of the write path reserve `?1` for one large parameter bound by the caller (the
//! request body, or the keys of the rows a write touched); their other parameters are then
//! numbered from `?2` ([`Sql::reserving_first`]). [`select_keyed`] re-reads rows by key (for
//! `return=representation`), [`select_with_key`] reads rows together with their key (before a
//! DELETE removes them). Every statement that scans rows for a write opens its `WHERE` with
//! the per-row budget check `pgrst_budget()` ([`budget_where`]; see
//! [`crate::functions::register_budget`]), so the writer can stop it at its request's time
//! budget without ending the transaction it shares with other requests.

use rusqlite::types::Value;

use crate::fts::{FullTextIndex, MatchScope};
use crate::functions::BUDGET_FN;
use crate::ident::push_quoted;
use crate::query::IsValue;
use crate::query::{Comparison, ContainOp};
use crate::read::plan::{
    CastType, Condition, Embed, Expr, Link, OrderItem, OutputField, OutputKind, Predicate,
    ReadNode, SqlCmp, distinct_exprs,
};
use crate::schema_cache::RowKey;
use crate::sql::Sql;

/// `SELECT <fields> FROM "rel" AS "t0" WHERE … [GROUP BY …] ORDER BY … LIMIT ? OFFSET ?`
pub(crate) fn select(node: &ReadNode) -> Sql {
    // Room for a usual statement: the text is not reallocated as it grows.
    let mut sql = Sql {
        text: String::with_capacity(256),
        ..Sql::default()
    };
    sql.push("SELECT ");
    fields(&mut sql, node);
    from_where(&mut sql, node);
    group_by_ordinals(&mut sql, node);
    order_by(&mut sql, node, None);
    page(&mut sql, node);
    sql
}

/// The node's result rows before paging, one column or more: `SELECT 1 FROM … WHERE …`, or
/// for a grouped node its groups (`SELECT <fields> … GROUP BY …`), so counts count groups.
fn result_rows(sql: &mut Sql, node: &ReadNode) {
    if node.grouped() {
        sql.push("SELECT ");
        fields(sql, node);
        from_where(sql, node);
        group_by_ordinals(sql, node);
    } else {
        sql.push("SELECT 1");
        from_where(sql, node);
    }
}

/// `SELECT count(*) FROM "rel" AS "t0" WHERE …` (the total for `Prefer: count=exact`); the
/// number of groups for a grouped node.
pub(crate) fn count(node: &ReadNode) -> Sql {
    let mut sql = Sql::default();
    if node.grouped() {
        sql.push("SELECT count(*) FROM (");
        result_rows(&mut sql, node);
        sql.push(")");
    } else {
        sql.push("SELECT count(*)");
        from_where(&mut sql, node);
    }
    sql
}

/// Counts at most `cap` result rows (for `count=estimated` under a max-rows cap).
pub(crate) fn capped_count(node: &ReadNode, cap: i64) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT count(*) FROM (");
    result_rows(&mut sql, node);
    sql.push(" LIMIT ");
    sql.bind(Value::Integer(cap));
    sql.push(")");
    sql
}

/// Counts the rows of the node's page (its filters, limit and offset):
/// `SELECT count(*) FROM (SELECT 1 FROM … WHERE … LIMIT ? OFFSET ?)`.
pub(crate) fn page_count(node: &ReadNode) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT count(*) FROM (");
    result_rows(&mut sql, node);
    page(&mut sql, node);
    sql.push(")");
    sql
}

/// ` GROUP BY 1, 3` for a grouped node's statement whose result columns are its distinct
/// field expressions ([`fields`]): every one that is not an aggregate, by its position, so
/// an embed's subquery is written (and bound) once. Nothing when the node is not grouped,
/// or when every field aggregates (one row, as PostgreSQL gives without GROUP BY).
fn group_by_ordinals(sql: &mut Sql, node: &ReadNode) {
    if !node.grouped() {
        return;
    }
    let mut first = true;
    for (i, e) in distinct_exprs(&node.fields).0.into_iter().enumerate() {
        if e.is_aggregate() {
            continue;
        }
        sql.push(if first { " GROUP BY " } else { ", " });
        first = false;
        sql.push(itoa::Buffer::new().format(i + 1));
    }
}

/// ` GROUP BY <expr>, …` for a grouped node read inside its parent's statement (its result
/// is one JSON column, so the expressions are written out).
fn group_by_exprs(sql: &mut Sql, node: &ReadNode) {
    if !node.grouped() {
        return;
    }
    let mut first = true;
    for e in distinct_exprs(&node.fields).0 {
        if e.is_aggregate() {
            continue;
        }
        sql.push(if first { " GROUP BY " } else { ", " });
        first = false;
        value(sql, node, e);
    }
}

fn from_where(sql: &mut Sql, node: &ReadNode) {
    sql.push(" FROM ");
    match &node.relation.source {
        // A derived relation (an RPC result): its statement as a subquery. Its parameters
        // are named, so SQLite numbers them where they appear, like the `?` around them.
        Some(source) => {
            sql.push("(\n");
            sql.push(&source.sql);
            sql.push("\n)");
            sql.params.extend(source.args.iter().cloned());
        }
        None => push_quoted(&mut sql.text, &node.relation.name),
    }
    sql.push(" AS ");
    push_quoted(&mut sql.text, &node.alias);
    where_clause(sql, &node.alias, &node.conditions);
}

/// ` WHERE pgrst_budget() AND c1 AND c2 …`: the per-row budget check of a write's statement,
/// then the request's conditions over columns qualified by `qualifier`.
pub(crate) fn budget_where(sql: &mut Sql, qualifier: &str, conditions: &[Condition]) {
    sql.push(" WHERE ");
    sql.push(BUDGET_FN);
    sql.push("()");
    for c in conditions {
        sql.push(" AND ");
        condition(sql, qualifier, c);
    }
}

/// ` WHERE c1 AND c2 …` over columns qualified by `qualifier` (nothing when there are none).
pub(crate) fn where_clause(sql: &mut Sql, qualifier: &str, conditions: &[Condition]) {
    if !conditions.is_empty() {
        sql.push(" WHERE ");
        for (i, c) in conditions.iter().enumerate() {
            if i > 0 {
                sql.push(" AND ");
            }
            condition(sql, qualifier, c);
        }
    }
}

/// The node's distinct field expressions (see [`distinct_exprs`]).
fn fields(sql: &mut Sql, node: &ReadNode) {
    if node.fields.is_empty() {
        sql.push("NULL");
    }
    for (i, e) in distinct_exprs(&node.fields).0.into_iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        value(sql, node, e);
    }
}

/// An expression over the node's row that may read its embeds: an embed's JSON, or a value
/// through a to-one embed (`(SELECT … FROM <related row>)`, NULL without one).
fn value(sql: &mut Sql, node: &ReadNode, e: &Expr) {
    render(sql, &node.alias, Some(node), e);
}

/// Writes an expression over the columns of `alias` (bare column names when it is empty).
pub(crate) fn expr(sql: &mut Sql, alias: &str, e: &Expr) {
    render(sql, alias, None, e);
}

/// Writes `e` over the columns of `alias`; only with the `node` can it read the node's
/// embeds (NULL otherwise).
fn render(sql: &mut Sql, alias: &str, node: Option<&ReadNode>, e: &Expr) {
    match e {
        Expr::Column(c) => column(sql, alias, c),
        Expr::JsonPath {
            column: c,
            path,
            text,
        } => {
            // Text that is not JSON yields NULL instead of failing the whole query.
            sql.push("(CASE WHEN json_valid(");
            column(sql, alias, c);
            sql.push(") THEN ");
            column(sql, alias, c);
            sql.push(if *text { " ->> " } else { " -> " });
            sql.bind(Value::Text(path.clone()));
            sql.push(" END)");
        }
        Expr::AsText(inner) => {
            sql.push("CAST(");
            render(sql, alias, node, inner);
            sql.push(" AS TEXT)");
        }
        Expr::Cast { inner, to } => match to {
            CastType::Text | CastType::Integer | CastType::Real | CastType::Numeric => {
                sql.push("CAST(");
                render(sql, alias, node, inner);
                sql.push(match to {
                    CastType::Text => " AS TEXT)",
                    CastType::Integer => " AS INTEGER)",
                    CastType::Real => " AS REAL)",
                    _ => " AS NUMERIC)",
                });
            }
            CastType::Bool => {
                sql.push("CASE WHEN ");
                render(sql, alias, node, inner);
                sql.push(" IS NULL THEN NULL WHEN ");
                render(sql, alias, node, inner);
                sql.push(" THEN 1 ELSE 0 END");
            }
            CastType::Json => render(sql, alias, node, inner),
        },
        Expr::Present => sql.push("1"),
        Expr::Aggregate { function, arg } => {
            sql.push(function.name());
            sql.push("(");
            match arg {
                Some(arg) => render(sql, alias, node, arg),
                None => sql.push("*"),
            }
            sql.push(")");
        }
        Expr::Embed(at) => match node.and_then(|n| n.children.get(*at)) {
            Some(embed) => embed_json(sql, alias, embed),
            None => sql.push("NULL"),
        },
        Expr::Spread { embed, inner } => match node.and_then(|n| n.children.get(*embed)) {
            Some(embed) => {
                sql.push("(SELECT ");
                value(sql, &embed.node, inner);
                related_rows(sql, alias, &embed.link, &embed.node.conditions);
                page(sql, &embed.node);
                sql.push(")");
            }
            None => sql.push("NULL"),
        },
    }
}

/// ` FROM <child> WHERE <link to the parent's row> AND <conditions>`: the related rows of a
/// parent row (through the junction for many-to-many). The link's columns are the ones the
/// foreign key declares, so an index on them (which SQLite's foreign-key enforcement wants
/// anyway) serves every parent row.
fn related_rows(sql: &mut Sql, parent: &str, link: &Link, conditions: &[Condition]) {
    sql.push(" FROM ");
    match &link.junction {
        None => {
            sql.quoted(&link.table);
            sql.push(" AS ");
            sql.quoted(&link.alias);
            sql.push(" WHERE ");
            equal_columns(sql, &link.alias, parent, &link.pairs, true);
        }
        Some(j) => {
            sql.quoted(&j.table);
            sql.push(" AS ");
            sql.quoted(&j.alias);
            sql.push(" JOIN ");
            sql.quoted(&link.table);
            sql.push(" AS ");
            sql.quoted(&link.alias);
            sql.push(" ON ");
            equal_columns(sql, &link.alias, &j.alias, &j.child, false);
            sql.push(" WHERE ");
            equal_columns(sql, &j.alias, parent, &j.parent, true);
        }
    }
    for c in conditions {
        sql.push(" AND ");
        condition(sql, &link.alias, c);
    }
}

/// `"a"."x" = "b"."y" AND …` for (x, y) pairs, or (y, x) pairs when `flipped` (the pairs
/// name the parent's column first); `1` when there are none.
fn equal_columns(sql: &mut Sql, a: &str, b: &str, pairs: &[(String, String)], flipped: bool) {
    if pairs.is_empty() {
        sql.push("0");
    }
    for (i, (x, y)) in pairs.iter().enumerate() {
        if i > 0 {
            sql.push(" AND ");
        }
        let (ours, theirs) = if flipped { (y, x) } else { (x, y) };
        column(sql, a, ours);
        sql.push(" = ");
        column(sql, b, theirs);
    }
}

/// The JSON of an embed for one parent row: an object (or NULL) for a to-one embed, an
/// array (`[]` when empty) for a to-many one, built by SQLite's JSON functions in the
/// statement itself. A page or an order of a to-many embed is taken in a sub-select whose
/// rows `json_group_array` reads in order.
fn embed_json(sql: &mut Sql, parent: &str, embed: &Embed) {
    let node = &embed.node;
    // A grouped embed's rows are groups: built in a sub-select too (aggregates do not nest).
    let paged = node.limit.is_some() || node.offset > 0 || node.grouped();
    sql.push("(SELECT ");
    if embed.to_one {
        json_object(sql, node);
        related_rows(sql, parent, &embed.link, &node.conditions);
        group_by_exprs(sql, node);
        order_by(sql, node, None);
        page(sql, node);
    } else if paged {
        sql.push("json_group_array(json(\"pgrst_row\")) FROM (SELECT ");
        json_object(sql, node);
        sql.push(" AS \"pgrst_row\"");
        related_rows(sql, parent, &embed.link, &node.conditions);
        group_by_exprs(sql, node);
        order_by(sql, node, None);
        page(sql, node);
        sql.push(")");
    } else {
        sql.push("json_group_array(");
        json_object(sql, node);
        order_by(sql, node, None);
        sql.push(")");
        related_rows(sql, parent, &embed.link, &node.conditions);
    }
    sql.push(")");
}

/// `json_object(?, <value>, …)` of the node's fields (keys bound).
fn json_object(sql: &mut Sql, node: &ReadNode) {
    sql.push("json_object(");
    for (i, f) in node.fields.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(Value::Text(f.key.clone()));
        sql.push(", ");
        json_value(sql, node, f);
    }
    sql.push(")");
}

/// A field as a value `json_object` nests as the top-level shaper renders it: BOOL as
/// true/false, valid JSON text as JSON, BLOBs as `"\x…"` text (`json_object` refuses BLOBs),
/// embeds as JSON.
fn json_value(sql: &mut Sql, node: &ReadNode, f: &OutputField) {
    match f.kind {
        OutputKind::RawJson => {
            sql.push("json(");
            value(sql, node, &f.expr);
            sql.push(")");
        }
        OutputKind::Bool => {
            sql.push("CASE WHEN ");
            value(sql, node, &f.expr);
            sql.push(" IS NULL THEN NULL WHEN ");
            value(sql, node, &f.expr);
            sql.push(" THEN json('true') ELSE json('false') END");
        }
        OutputKind::Json => {
            sql.push("CASE WHEN typeof(");
            value(sql, node, &f.expr);
            sql.push(") = 'text' AND json_valid(");
            value(sql, node, &f.expr);
            sql.push(") THEN json(");
            value(sql, node, &f.expr);
            sql.push(") WHEN ");
            blob_as_hex_else_value(sql, node, &f.expr);
        }
        OutputKind::Plain => {
            sql.push("CASE WHEN ");
            blob_as_hex_else_value(sql, node, &f.expr);
        }
    }
}

/// The end of a `CASE` rendering a value: a BLOB as `\x` and lowercase hex (PostgreSQL's
/// bytea text), anything else as itself.
fn blob_as_hex_else_value(sql: &mut Sql, node: &ReadNode, e: &Expr) {
    sql.push("typeof(");
    value(sql, node, e);
    sql.push(") = 'blob' THEN '\\x' || lower(hex(");
    value(sql, node, e);
    sql.push(")) ELSE ");
    value(sql, node, e);
    sql.push(" END");
}

fn order_by(sql: &mut Sql, node: &ReadNode, then: Option<&str>) {
    if node.order.is_empty() && then.is_none() {
        return;
    }
    sql.push(" ORDER BY ");
    for (i, o) in node.order.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        order(sql, node, o);
    }
    if let Some(then) = then {
        if !node.order.is_empty() {
            sql.push(", ");
        }
        sql.push(then);
    }
}

fn page(sql: &mut Sql, node: &ReadNode) {
    if node.limit.is_some() || node.offset > 0 {
        sql.push(" LIMIT ");
        sql.bind(Value::Integer(node.limit.unwrap_or(-1)));
        sql.push(" OFFSET ");
        sql.bind(Value::Integer(node.offset));
    }
}

/// Writes the key of a row of `alias` (`"t0".rowid` or its primary key columns).
pub(crate) fn key_exprs(sql: &mut Sql, alias: &str, key: &RowKey) {
    match key {
        RowKey::Rowid(name) => {
            if !alias.is_empty() {
                push_quoted(&mut sql.text, alias);
                sql.push(".");
            }
            sql.push(name);
        }
        RowKey::Columns(cols) => {
            for (i, c) in cols.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                column(sql, alias, c);
            }
        }
        RowKey::None => sql.push("NULL"),
    }
}

/// Re-reads the rows whose keys `?1` lists (a JSON array: rowids, or arrays of key values),
/// in that order unless the node orders them; the node's conditions are ignored.
///
/// `SELECT <fields> FROM json_each(?1) AS "pgrst_keys" CROSS JOIN "rel" AS "t0" ON <key
/// match> ORDER BY <order>, "pgrst_keys"."key" LIMIT … OFFSET …`
pub(crate) fn select_keyed(node: &ReadNode, key: &RowKey) -> Sql {
    let mut sql = Sql::reserving_first();
    sql.push("SELECT ");
    fields(&mut sql, node);
    sql.push(" FROM json_each(?1) AS \"pgrst_keys\" CROSS JOIN ");
    push_quoted(&mut sql.text, &node.relation.name);
    sql.push(" AS ");
    push_quoted(&mut sql.text, &node.alias);
    sql.push(" ON ");
    match key {
        RowKey::Rowid(name) => {
            push_quoted(&mut sql.text, &node.alias);
            sql.push(".");
            sql.push(name);
            sql.push(" = \"pgrst_keys\".\"value\"");
        }
        RowKey::Columns(cols) => {
            for (i, c) in cols.iter().enumerate() {
                if i > 0 {
                    sql.push(" AND ");
                }
                column(&mut sql, &node.alias, c);
                sql.push(" = \"pgrst_keys\".\"value\" ->> ");
                sql.push(itoa::Buffer::new().format(i));
            }
        }
        RowKey::None => sql.push("0"),
    }
    order_by(&mut sql, node, Some("\"pgrst_keys\".\"key\""));
    page(&mut sql, node);
    sql
}

/// The node's rows with their key after the fields, in the node's order, without paging:
/// `SELECT <fields>, <key> FROM "rel" AS "t0" WHERE pgrst_budget() AND … ORDER BY …` (read by
/// the writer before a DELETE, so it checks the write's budget on every row it scans).
pub(crate) fn select_with_key(node: &ReadNode, key: &RowKey) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT ");
    fields(&mut sql, node);
    sql.push(", ");
    key_exprs(&mut sql, &node.alias, key);
    sql.push(" FROM ");
    push_quoted(&mut sql.text, &node.relation.name);
    sql.push(" AS ");
    push_quoted(&mut sql.text, &node.alias);
    budget_where(&mut sql, &node.alias, &node.conditions);
    order_by(&mut sql, node, None);
    sql
}

/// A column, qualified by `alias` unless it is empty (RETURNING takes bare names).
fn column(sql: &mut Sql, alias: &str, name: &str) {
    if !alias.is_empty() {
        push_quoted(&mut sql.text, alias);
        sql.push(".");
    }
    push_quoted(&mut sql.text, name);
}

fn order(sql: &mut Sql, node: &ReadNode, o: &OrderItem) {
    value(sql, node, &o.expr);
    sql.push(if o.desc { " DESC" } else { " ASC" });
    sql.push(if o.nulls_first {
        " NULLS FIRST"
    } else {
        " NULLS LAST"
    });
}

/// `lhs <op> rhs`, where `rhs` is already written SQL (a `?` or a json_each column).
fn comparison(sql: &mut Sql, alias: &str, e: &Expr, op: SqlCmp, rhs: impl FnOnce(&mut Sql)) {
    if op == SqlCmp::Regexp {
        sql.push("regexp(");
        rhs(sql);
        sql.push(", ");
        expr(sql, alias, e);
        sql.push(")");
        return;
    }
    expr(sql, alias, e);
    sql.push(match op {
        SqlCmp::Compare(Comparison::Eq) => " = ",
        SqlCmp::Compare(Comparison::Neq) => " <> ",
        SqlCmp::Compare(Comparison::Gt) => " > ",
        SqlCmp::Compare(Comparison::Gte) => " >= ",
        SqlCmp::Compare(Comparison::Lt) => " < ",
        SqlCmp::Compare(Comparison::Lte) => " <= ",
        SqlCmp::Compare(Comparison::IsDistinct) => " IS DISTINCT FROM ",
        SqlCmp::Glob => " GLOB ",
        SqlCmp::Ilike | SqlCmp::Regexp => " LIKE ",
    });
    rhs(sql);
    if op == SqlCmp::Ilike {
        sql.push(" ESCAPE '\\'");
    }
}

/// `<key> IN (SELECT rowid FROM "<fts>" WHERE "<fts>"."<column>" MATCH ?)` (`"<fts>" MATCH ?`
/// for the only column of a `detail=none` index, which has no column filters), wrapped in
/// `CASE WHEN <column> IS NULL THEN NULL ELSE … END` when `three_valued` (unless the column
/// never holds values: a contentless FTS5 table). A subquery,
/// because FTS5 answers a bare `MATCH` only where it can drive the scan (not under NOT or
/// inside OR); NULL for a NULL column, as `to_tsvector(NULL) @@ q` is in PostgreSQL, so
/// `not.` leaves such rows out too.
fn full_text(
    sql: &mut Sql,
    alias: &str,
    e: &Expr,
    index: &FullTextIndex,
    query: &str,
    three_valued: bool,
) {
    let three_valued = three_valued && index.has_values;
    if three_valued {
        sql.push("CASE WHEN ");
        expr(sql, alias, e);
        sql.push(" IS NULL THEN NULL ELSE ");
    }
    column(sql, alias, &index.key);
    sql.push(" IN (SELECT rowid FROM ");
    sql.quoted(&index.table);
    sql.push(" WHERE ");
    sql.quoted(&index.table);
    if index.scope == MatchScope::Column {
        sql.push(".");
        sql.quoted(&index.column);
    }
    sql.push(" MATCH ");
    sql.bind(Value::Text(query.to_string()));
    sql.push(")");
    if three_valued {
        sql.push(" END");
    }
}

pub(crate) fn condition(sql: &mut Sql, alias: &str, c: &Condition) {
    match c {
        Condition::Exists {
            negated,
            link,
            conditions,
        } => {
            if *negated {
                sql.push("NOT ");
            }
            sql.push("EXISTS (SELECT 1");
            related_rows(sql, alias, link, conditions);
            sql.push(")");
        }
        Condition::Tree {
            negated,
            and,
            children,
        } => {
            if *negated {
                sql.push("NOT ");
            }
            sql.push("(");
            if children.is_empty() {
                sql.push(if *and { "1" } else { "0" });
            }
            for (i, child) in children.iter().enumerate() {
                if i > 0 {
                    sql.push(if *and { " AND " } else { " OR " });
                }
                condition(sql, alias, child);
            }
            sql.push(")");
        }
        Condition::Pred {
            expr: e,
            negated,
            pred,
        } => {
            if *negated {
                sql.push("NOT ");
            }
            sql.push("(");
            match pred {
                Predicate::Cmp(op, v) => {
                    let v = v.clone();
                    comparison(sql, alias, e, *op, |s| s.bind(v));
                }
                Predicate::JsonEq(json) => {
                    expr(sql, alias, e);
                    sql.push(" = json(");
                    sql.bind(Value::Text(json.clone()));
                    sql.push(")");
                }
                Predicate::In(list) => {
                    expr(sql, alias, e);
                    sql.push(" IN (SELECT \"pgrst_in\".\"value\" FROM json_each(");
                    sql.bind(Value::Text(list.clone()));
                    sql.push(") AS \"pgrst_in\")");
                }
                Predicate::Quantified {
                    op: SqlCmp::Regexp,
                    all,
                    values,
                } => {
                    // One compiled set for the whole list (see `functions`).
                    sql.push(if *all {
                        "pgrst_match_all("
                    } else {
                        "pgrst_match_any("
                    });
                    sql.bind(Value::Text(values.clone()));
                    sql.push(", ");
                    expr(sql, alias, e);
                    sql.push(")");
                }
                Predicate::Quantified { op, all, values } => {
                    sql.push(if *all { "NOT EXISTS" } else { "EXISTS" });
                    sql.push(" (SELECT 1 FROM json_each(");
                    sql.bind(Value::Text(values.clone()));
                    sql.push(") AS \"pgrst_q\" WHERE (");
                    comparison(sql, alias, e, *op, |s| s.push("\"pgrst_q\".\"value\""));
                    sql.push(if *all { ") IS NOT TRUE)" } else { "))" });
                }
                Predicate::Contain(op, json) => {
                    sql.push(match op {
                        ContainOp::Contains => "pgrst_contains(",
                        ContainOp::ContainedBy => "pgrst_contained(",
                        ContainOp::Overlaps => "pgrst_overlaps(",
                    });
                    expr(sql, alias, e);
                    sql.push(", ");
                    sql.bind(Value::Text(json.clone()));
                    sql.push(")");
                }
                Predicate::FullText {
                    index,
                    query,
                    three_valued,
                } => full_text(sql, alias, e, index, query, *three_valued),
                Predicate::Is(v) => {
                    expr(sql, alias, e);
                    sql.push(match v {
                        IsValue::Null | IsValue::Unknown => " IS NULL",
                        IsValue::NotNull => " IS NOT NULL",
                        IsValue::True => " IS TRUE",
                        IsValue::False => " IS FALSE",
                    });
                }
            }
            sql.push(")");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::{MediaType, Preferences, RequestHeaders};
    use crate::query::QueryParams;
    use crate::read::plan::{Limits, plan_read};
    use crate::schema_cache::{Exposure, SchemaCache};

    fn build(q: &str) -> Sql {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE \"we\"\"ird\" (id INTEGER PRIMARY KEY, \"na\"\"me\" TEXT, j JSON)",
        )
        .unwrap();
        let cache = SchemaCache::load(&c, &Exposure::All).unwrap();
        let h = RequestHeaders {
            media: MediaType::Json { strip_nulls: false },
            prefer: Preferences::default(),
            range: None,
            profile_sent: false,
        };
        let p = plan_read(
            &cache,
            "we\"ird",
            &QueryParams::parse(q).unwrap(),
            &h,
            Limits::default(),
        )
        .unwrap();
        select(&p.root)
    }

    #[test]
    fn identifiers_are_quoted_and_values_bound() {
        let s = build(
            "select=id,%22na%5C%22me%22&id=in.(1,2)&or=(id.eq.3,not.and(id.gt.1,id.lt.9))&order=id.desc&limit=5",
        );
        assert_eq!(
            s.text,
            "SELECT \"t0\".\"id\", \"t0\".\"na\"\"me\" FROM \"we\"\"ird\" AS \"t0\" WHERE \
             (\"t0\".\"id\" IN (SELECT \"pgrst_in\".\"value\" FROM json_each(?) AS \"pgrst_in\")) AND \
             ((\"t0\".\"id\" = ?) OR NOT ((\"t0\".\"id\" > ?) AND (\"t0\".\"id\" < ?))) \
             ORDER BY \"t0\".\"id\" DESC NULLS FIRST LIMIT ? OFFSET ?"
        );
        assert_eq!(s.params.len(), 6);
        assert_eq!(s.params[0], Value::Text("[1,2]".into()));
    }

    #[test]
    fn json_paths_are_bound() {
        let s = build("select=j->a->>b&j->>x=eq.1");
        assert!(s.text.contains("\"t0\".\"j\" ->> ? END"), "{}", s.text);
        assert_eq!(s.params[0], Value::Text("$.\"a\".\"b\"".into()));
        assert!(
            s.text.contains(
                "CAST((CASE WHEN json_valid(\"t0\".\"j\") THEN \"t0\".\"j\" ->> ? END) AS TEXT) = ?"
            ),
            "{}",
            s.text
        );
    }
}
