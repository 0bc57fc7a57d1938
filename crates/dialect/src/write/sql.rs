//! Write SQL, built with [`crate::sql::Sql`] as reads are: INSERT (with upsert), UPDATE and DELETE, each with the
//! RETURNING list the write planner asks for.
//!
//! The request body is ONE parameter, `?1`: a JSON array of rows, unpacked with
//! `json_each(?1)` (INSERT) or read from its first element (UPDATE). A column's value is
//! `"pgrst_body"."value" ->> ?N` with the column's JSON path bound as `?N` (`$."name"`,
//! escaped, in an object; `$[i]` in a CSV body's array, see [`ColumnPaths`]), so the SQL text depends only on the relation and the column set — never on the
//! values or the number of rows — and is reused from the prepared-statement cache. Column
//! defaults for `missing=default` come from the schema (`dflt_value`), as PostgREST inlines
//! them. Upserts count inserted rows with `pgrst_ins(±1)` (see [`crate::functions`]):
//! `WHERE pgrst_ins(1)` on every candidate row, `DO UPDATE … WHERE pgrst_ins(-1)` on every
//! conflict. Every statement's `WHERE` starts with `pgrst_budget()` ([`crate::read::sql::budget_where`]),
//! evaluated on every candidate row, so the writer can stop a statement at its request's time
//! budget without ending the transaction; a `WHERE` before `ON CONFLICT` also resolves SQLite's
//! parsing ambiguity of `INSERT … SELECT … ON CONFLICT`. `INSERT … DEFAULT VALUES` has no row
//! loop: its caller checks the budget before each run
//! ([`crate::functions::BUDGET_CHECK_SQL`]).

use rusqlite::types::Value;

use crate::functions::{RLS_FN, TYPED_FN, WriteType};
use crate::read::plan::{Condition, OutputField, distinct_exprs};
use crate::read::sql::{budget_where, condition, expr, key_exprs};
use crate::schema_cache::{Affinity, Column, Relation, RowKey, ValueKind, is_temporal};
use crate::sql::Sql;
use crate::write::body::ColumnPaths;

/// What a write statement returns for each row it touched.
#[derive(Debug, Clone, Default)]
pub struct Returning {
    /// The row key first (nothing for views).
    pub key: Option<RowKey>,
    /// Then these fields' distinct expressions ([`distinct_exprs`]), over the written row
    /// (views: what the statement reports).
    pub fields: Vec<OutputField>,
    /// Then these columns (the primary key, for `Location`).
    pub columns: Vec<String>,
    /// Nothing else to return, but rows must be counted: `RETURNING 1`.
    pub count_only: bool,
    /// Last, a check every written row must pass (a role's WITH CHECK): `pgrst_rls(…)`,
    /// which fails the statement on a row that does not.
    pub check: Vec<Condition>,
}

impl Returning {
    fn is_empty(&self) -> bool {
        self.key.is_none()
            && self.fields.is_empty()
            && self.columns.is_empty()
            && !self.count_only
            && self.check.is_empty()
    }

    /// How many values the fields take.
    pub fn fields_width(&self) -> usize {
        distinct_exprs(&self.fields).0.len()
    }

    /// How many values the key takes.
    pub fn key_width(&self) -> usize {
        match &self.key {
            Some(RowKey::Rowid(_)) => 1,
            Some(RowKey::Columns(c)) => c.len(),
            Some(RowKey::None) | None => 0,
        }
    }
}

/// How an INSERT handles rows whose key exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OnConflict {
    /// Plain insert: a conflict is an error (23505).
    Fail,
    /// `ON CONFLICT (target) DO UPDATE SET <every column> = excluded.<column>`.
    Merge(Vec<String>),
    /// `ON CONFLICT (target) DO NOTHING`.
    Ignore(Vec<String>),
}

/// The JSON path of a key: `$."name"` with the name escaped as a JSON string (SQLite reads
/// `\"` and `\\` inside a quoted path label).
pub(crate) fn json_path(prefix: &str, key: &str) -> String {
    let quoted = serde_json::Value::String(key.to_string()).to_string();
    let mut p = String::with_capacity(prefix.len() + quoted.len() + 1);
    p.push_str(prefix);
    p.push('.');
    p.push_str(&quoted);
    p
}

/// A column's default as an SQL expression (parenthesized), or NULL. A bare double-quoted
/// default (legacy string literal) is rewritten as a single-quoted literal, so it can never
/// be read as a column of the statement.
fn default_sql(col: &Column) -> String {
    match col.default.as_deref().map(str::trim) {
        None | Some("") => "NULL".to_string(),
        Some(d) if d.len() >= 2 && d.starts_with('"') && d.ends_with('"') => {
            let inner = d[1..d.len() - 1].replace("\"\"", "\"");
            format!("'{}'", inner.replace('\'', "''"))
        }
        Some(d) => format!("({d})"),
    }
}

/// The value of `col` taken from the JSON object `obj` (SQL text) at a bound path.
fn value_of(sql: &mut Sql, obj: &str, path: &str, col: &Column, missing_default: bool) {
    if missing_default {
        sql.push("CASE WHEN json_type(");
        sql.push(obj);
        sql.push(", ");
        sql.bind(Value::Text(path.to_string()));
        sql.push(") IS NULL THEN ");
        sql.push(&default_sql(col));
        sql.push(" ELSE ");
        raw_value(sql, obj, path, col);
        sql.push(" END");
    } else {
        raw_value(sql, obj, path, col);
    }
}

/// The value of `col` at `path` of `obj`, checked against the column's declared type
/// (`pgrst_typed`, see [`crate::functions::WriteType`]) where it has one that SQLite would not
/// enforce.
fn raw_value(sql: &mut Sql, obj: &str, path: &str, col: &Column) {
    let Some(ty) = write_type(col) else {
        return untyped_value(sql, obj, path, col);
    };
    sql.push(TYPED_FN);
    sql.push("(");
    untyped_value(sql, obj, path, col);
    sql.push(", '");
    sql.push(ty.name());
    sql.push("')");
}

/// The type a write to `col` is checked against: none for JSON, text, BLOB and untyped
/// columns, which keep anything as it is rendered back, nor for dates and times, which
/// SQLite applications keep as ISO 8601 text or as numbers (unix time, Julian days).
fn write_type(col: &Column) -> Option<WriteType> {
    match (col.kind, col.affinity) {
        (ValueKind::Bool, _) => Some(WriteType::Boolean),
        (ValueKind::Json, _) => None,
        (_, Affinity::Integer) => Some(WriteType::Integer),
        (_, Affinity::Real) => Some(WriteType::Number),
        (_, Affinity::Numeric) if is_temporal(&col.decl_type) => None,
        (_, Affinity::Numeric) => Some(WriteType::Number),
        (_, Affinity::Text | Affinity::Blob) => None,
    }
}

fn untyped_value(sql: &mut Sql, obj: &str, path: &str, col: &Column) {
    if col.kind == ValueKind::Json {
        // JSON columns keep JSON: strings stay quoted, true stays true; null is NULL.
        sql.push("CASE WHEN json_type(");
        sql.push(obj);
        sql.push(", ");
        sql.bind(Value::Text(path.to_string()));
        sql.push(") = 'null' THEN NULL ELSE ");
        sql.push(obj);
        sql.push(" -> ");
        sql.bind(Value::Text(path.to_string()));
        sql.push(" END");
    } else if col.kind == ValueKind::Bool {
        // true/false as JSON, or PostgreSQL's boolean words as text (CSV and form bodies).
        sql.push("CASE lower(");
        sql.push(obj);
        sql.push(" ->> ");
        sql.bind(Value::Text(path.to_string()));
        sql.push(") WHEN 'true' THEN 1 WHEN 't' THEN 1 WHEN 'false' THEN 0 WHEN 'f' THEN 0 ELSE ");
        sql.push(obj);
        sql.push(" ->> ");
        sql.bind(Value::Text(path.to_string()));
        sql.push(" END");
    } else if col.decl_type.to_ascii_uppercase().contains("BLOB") {
        // bytea's text form `\x…` becomes bytes again (what reads render BLOBs as).
        sql.push("(SELECT CASE WHEN typeof(\"v\") = 'text' AND substr(\"v\", 1, 2) = '\\x' THEN coalesce(unhex(substr(\"v\", 3)), \"v\") ELSE \"v\" END FROM (SELECT ");
        sql.push(obj);
        sql.push(" ->> ");
        sql.bind(Value::Text(path.to_string()));
        sql.push(" AS \"v\"))");
    } else {
        sql.push(obj);
        sql.push(" ->> ");
        sql.bind(Value::Text(path.to_string()));
    }
}

fn returning(sql: &mut Sql, table: &str, r: &Returning) {
    if r.is_empty() {
        return;
    }
    sql.push(" RETURNING ");
    let mut first = true;
    let mut sep = |sql: &mut Sql| {
        if !first {
            sql.push(", ");
        }
        first = false;
    };
    if let Some(key) = &r.key
        && *key != RowKey::None
    {
        sep(sql);
        key_exprs(sql, "", key);
    }
    for e in distinct_exprs(&r.fields).0 {
        sep(sql);
        expr(sql, "", e);
    }
    for c in &r.columns {
        sep(sql);
        sql.quoted(c);
    }
    if !r.check.is_empty() {
        sep(sql);
        rls_check(sql, table, "", &r.check, RlsCheck::NewRow);
    } else if r.count_only && first {
        sql.push("1");
    }
}

/// Which policy check failed, in PostgreSQL's words.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RlsCheck {
    /// A written row that does not pass its filter (WITH CHECK).
    NewRow,
    /// An upsert's existing row the role may not update (USING).
    ExistingRow,
}

/// `pgrst_rls(<conditions>, kind, 'table')`: 1, or the statement fails with 42501.
fn rls_check(
    sql: &mut Sql,
    table: &str,
    qualifier: &str,
    conditions: &[Condition],
    kind: RlsCheck,
) {
    sql.push(RLS_FN);
    sql.push("((");
    for (i, c) in conditions.iter().enumerate() {
        if i > 0 {
            sql.push(" AND ");
        }
        condition(sql, qualifier, c);
    }
    sql.push(") IS TRUE, ");
    sql.push(match kind {
        RlsCheck::NewRow => "0, ",
        RlsCheck::ExistingRow => "1, ",
    });
    sql.bind(Value::Text(table.to_string()));
    sql.push(")");
}

fn column_list(sql: &mut Sql, cols: &[&Column]) {
    sql.push(" (");
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.quoted(&c.name);
    }
    sql.push(")");
}

/// `INSERT INTO "rel" (cols) SELECT <values> FROM json_each(?1) AS "pgrst_body" WHERE …
/// [ON CONFLICT …] [RETURNING …]`. `count_inserts` adds the `pgrst_ins` counter.
#[allow(clippy::too_many_arguments)]
pub(crate) fn insert(
    rel: &Relation,
    cols: &[&Column],
    paths: &ColumnPaths,
    missing_default: bool,
    conflict: &OnConflict,
    guard: &[Condition],
    count_inserts: bool,
    ret: &Returning,
) -> Sql {
    let mut sql = Sql::reserving_first();
    sql.push("INSERT INTO ");
    sql.quoted(&rel.name);
    column_list(&mut sql, cols);
    sql.push(" SELECT ");
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        value_of(
            &mut sql,
            "\"pgrst_body\".\"value\"",
            &paths.path("$", &c.name),
            c,
            missing_default,
        );
    }
    sql.push(" FROM json_each(?1) AS \"pgrst_body\"");
    budget_where(&mut sql, "", &[]);
    if count_inserts {
        sql.push(" AND pgrst_ins(1)");
    }
    match conflict {
        OnConflict::Fail => {}
        OnConflict::Merge(target) | OnConflict::Ignore(target) => {
            sql.push(" ON CONFLICT (");
            for (i, t) in target.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.quoted(t);
            }
            sql.push(")");
            if let OnConflict::Merge(_) = conflict {
                sql.push(" DO UPDATE SET ");
                for (i, c) in cols.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.quoted(&c.name);
                    sql.push(" = \"excluded\".");
                    sql.quoted(&c.name);
                }
                // The existing row's check first: it fails the statement before anything is
                // counted.
                if !guard.is_empty() {
                    sql.push(" WHERE ");
                    rls_check(&mut sql, &rel.name, "", guard, RlsCheck::ExistingRow);
                }
                if count_inserts {
                    sql.push(if guard.is_empty() { " WHERE " } else { " AND " });
                    sql.push("pgrst_ins(-1)");
                }
            } else {
                sql.push(" DO NOTHING");
            }
        }
    }
    returning(&mut sql, &rel.name, ret);
    sql
}

/// `INSERT INTO "rel" DEFAULT VALUES [RETURNING …]` (an object without keys).
pub(crate) fn insert_defaults(rel: &Relation, ret: &Returning) -> Sql {
    let mut sql = Sql::reserving_first();
    sql.push("INSERT INTO ");
    sql.quoted(&rel.name);
    sql.push(" DEFAULT VALUES");
    returning(&mut sql, &rel.name, ret);
    sql
}

/// `UPDATE "rel" SET "c" = <value from the first object of ?1>, … WHERE … [RETURNING …]`.
/// Conditions are written over columns qualified by the relation's own name (SQLite refuses
/// an alias on views written through INSTEAD OF triggers).
pub(crate) fn update(
    rel: &Relation,
    cols: &[&Column],
    paths: &ColumnPaths,
    missing_default: bool,
    conditions: &[Condition],
    ret: &Returning,
) -> Sql {
    let mut sql = Sql::reserving_first();
    sql.push("UPDATE ");
    sql.quoted(&rel.name);
    sql.push(" SET ");
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.quoted(&c.name);
        sql.push(" = ");
        value_of(
            &mut sql,
            "?1",
            &paths.path("$[0]", &c.name),
            c,
            missing_default,
        );
    }
    budget_where(&mut sql, &rel.name, conditions);
    returning(&mut sql, &rel.name, ret);
    sql
}

/// `DELETE FROM "rel" WHERE … [RETURNING …]`.
pub(crate) fn delete(rel: &Relation, conditions: &[Condition], ret: &Returning) -> Sql {
    let mut sql = Sql::reserving_first();
    sql.push("DELETE FROM ");
    sql.quoted(&rel.name);
    budget_where(&mut sql, &rel.name, conditions);
    returning(&mut sql, &rel.name, ret);
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema_cache::{Exposure, SchemaCache};

    fn cache() -> SchemaCache {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, \"a.b\" TEXT DEFAULT 'd', j JSON, \"q\"\"x\" TEXT DEFAULT \"legacy\")",
        )
        .unwrap();
        SchemaCache::load(&c, &Exposure::All).unwrap()
    }

    #[test]
    fn json_paths_escape_names() {
        assert_eq!(json_path("$", "a.b"), "$.\"a.b\"");
        assert_eq!(json_path("$[0]", "q\"x"), "$[0].\"q\\\"x\"");
    }

    #[test]
    fn insert_text_depends_on_columns_only() {
        let cache = cache();
        let rel = cache.relation("t").unwrap();
        let cols: Vec<&Column> = ["id", "a.b"]
            .iter()
            .map(|c| rel.column(c).unwrap())
            .collect();
        let ret = Returning {
            key: Some(RowKey::Rowid("rowid")),
            ..Returning::default()
        };
        let s = insert(
            rel,
            &cols,
            &ColumnPaths::ByKey,
            false,
            &OnConflict::Merge(vec!["id".into()]),
            &[],
            true,
            &ret,
        );
        assert_eq!(
            s.text,
            "INSERT INTO \"t\" (\"id\", \"a.b\") SELECT pgrst_typed(\"pgrst_body\".\"value\" ->> ?2, 'integer'), \"pgrst_body\".\"value\" ->> ?3 \
             FROM json_each(?1) AS \"pgrst_body\" WHERE pgrst_budget() AND pgrst_ins(1) ON CONFLICT (\"id\") \
             DO UPDATE SET \"id\" = \"excluded\".\"id\", \"a.b\" = \"excluded\".\"a.b\" WHERE pgrst_ins(-1) RETURNING rowid"
        );
        assert_eq!(
            s.params,
            vec![
                Value::Text("$.\"id\"".into()),
                Value::Text("$.\"a.b\"".into())
            ]
        );
    }

    #[test]
    fn defaults_are_schema_sql() {
        let cache = cache();
        let rel = cache.relation("t").unwrap();
        assert_eq!(default_sql(rel.column("a.b").unwrap()), "('d')");
        assert_eq!(default_sql(rel.column("q\"x").unwrap()), "'legacy'");
        assert_eq!(default_sql(rel.column("id").unwrap()), "NULL");
    }
}
