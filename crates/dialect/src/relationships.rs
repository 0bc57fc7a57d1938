//! Relationships between exposed relations, for resource embedding (`docs/postgrest-dialect.md`).
//!
//! Built with the schema cache from every table's foreign keys (`pragma_foreign_key_list`,
//! composite keys too) and unique keys (`pragma_index_list`/`pragma_index_info`, the primary
//! key included), as PostgREST builds its own from `pg_constraint`:
//!
//! - a foreign key from `a` to `b` gives `a` many-to-one `b` and `b` one-to-many `a`, or
//!   one-to-one both ways when its columns are a unique key of `a`;
//! - a table whose two foreign keys' columns all lie in one unique key (its primary key,
//!   usually) is a junction: many-to-many between their targets, both ways;
//! - a view whose columns come straight from a table's columns (SQLite's column origin
//!   metadata) takes part like that table wherever it shows all the columns of a key.
//!
//! Foreign keys are named as PostgreSQL names them (`{table}_{columns}_fkey`), unless the
//! `CREATE TABLE` statement names them (`CONSTRAINT name FOREIGN KEY …` or a column's
//! `CONSTRAINT name REFERENCES …`). Only exposed relations take part: a relationship through
//! a hidden junction, or to a hidden table, does not exist for the API. [`find`] picks the
//! relationship an embed names, with PostgREST's rules for targets, hints and
//! self-references, and its errors (PGRST200, PGRST201).

use std::collections::{HashMap, HashSet};

use rusqlite::Connection;
use serde_json::json;

use crate::error::{ApiError, ErrorCode};
use crate::ident::quoted;
use crate::schema_cache::foreign_key_list;

/// How many rows of the target one row of the origin relates to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cardinality {
    ManyToOne,
    OneToMany,
    OneToOne,
    ManyToMany(Junction),
}

/// The junction of a many-to-many relationship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Junction {
    pub table: String,
    /// The junction's foreign key to the origin, and the one to the target.
    pub constraint1: String,
    pub constraint2: String,
    /// (origin column, junction column) pairs.
    pub source: Vec<(String, String)>,
    /// (target column, junction column) pairs.
    pub target: Vec<(String, String)>,
}

/// One relationship from `table` (the origin) to `foreign_table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relationship {
    pub table: String,
    pub foreign_table: String,
    pub is_self: bool,
    pub cardinality: Cardinality,
    /// The foreign key's name (empty for many-to-many: see [`Junction`]).
    pub constraint: String,
    /// (origin column, target column) pairs (empty for many-to-many).
    pub columns: Vec<(String, String)>,
    pub foreign_is_view: bool,
}

impl Relationship {
    /// At most one target row per origin row.
    pub fn to_one(&self) -> bool {
        matches!(
            self.cardinality,
            Cardinality::ManyToOne | Cardinality::OneToOne
        )
    }

    fn single_column(&self) -> Option<&(String, String)> {
        match self.columns.as_slice() {
            [one] if !matches!(self.cardinality, Cardinality::ManyToMany(_)) => Some(one),
            _ => None,
        }
    }

    fn cardinality_name(&self) -> &'static str {
        match self.cardinality {
            Cardinality::ManyToOne => "many-to-one",
            Cardinality::OneToMany => "one-to-many",
            Cardinality::OneToOne => "one-to-one",
            Cardinality::ManyToMany(_) => "many-to-many",
        }
    }

    /// The relationship as PostgREST lists it in PGRST201's details.
    fn describe(&self) -> serde_json::Value {
        let list = |cols: &mut dyn Iterator<Item = &String>| {
            format!(
                "({})",
                cols.map(String::as_str).collect::<Vec<_>>().join(", ")
            )
        };
        let relationship = match &self.cardinality {
            Cardinality::ManyToMany(j) => format!(
                "{} using {}{} and {}{}",
                j.table,
                j.constraint1,
                list(&mut j.source.iter().map(|p| &p.1)),
                j.constraint2,
                list(&mut j.target.iter().map(|p| &p.1)),
            ),
            _ => format!(
                "{} using {}{} and {}{}",
                self.constraint,
                self.table,
                list(&mut self.columns.iter().map(|p| &p.0)),
                self.foreign_table,
                list(&mut self.columns.iter().map(|p| &p.1)),
            ),
        };
        json!({
            "cardinality": self.cardinality_name(),
            "embedding": format!("{} with {}", self.table, self.foreign_table),
            "relationship": relationship,
        })
    }

    /// The `target!hint` PostgREST proposes for this relationship.
    fn hint(&self) -> String {
        match &self.cardinality {
            Cardinality::ManyToMany(j) => format!("'{}!{}'", self.foreign_table, j.table),
            _ => format!("'{}!{}'", self.foreign_table, self.constraint),
        }
    }
}

/// Every relationship, by origin.
#[derive(Debug, Clone, Default)]
pub struct Relationships {
    by_origin: HashMap<String, Vec<Relationship>>,
}

/// A foreign key between two tables, columns resolved: (from, to) pairs.
#[derive(Debug, Clone)]
struct Edge {
    table: String,
    name: String,
    target: String,
    columns: Vec<(String, String)>,
}

/// One side of an edge: a table or a view showing the key's columns, with their names there.
struct Side {
    relation: String,
    columns: Vec<String>,
    is_view: bool,
}

impl Relationships {
    /// Only the relationships whose relations (origin, target and junction) all pass `keep`.
    pub(crate) fn retain(&self, keep: &dyn Fn(&str) -> bool) -> Relationships {
        let by_origin = self
            .by_origin
            .iter()
            .filter(|(origin, _)| keep(origin))
            .map(|(origin, list)| {
                let list = list
                    .iter()
                    .filter(|r| {
                        keep(&r.foreign_table)
                            && match &r.cardinality {
                                Cardinality::ManyToMany(j) => keep(&j.table),
                                _ => true,
                            }
                    })
                    .cloned()
                    .collect();
                (origin.clone(), list)
            })
            .collect();
        Relationships { by_origin }
    }

    /// Reads every table's keys and every exposed view's column origins; `exposed` says which
    /// relations take part (views by name, tables by name).
    pub(crate) fn load(
        conn: &Connection,
        exposed: &dyn Fn(&str) -> bool,
    ) -> rusqlite::Result<Self> {
        let mut tables = Vec::new();
        let mut views = Vec::new();
        {
            let mut stmt = conn.prepare(
                "SELECT name, type FROM pragma_table_list WHERE schema = 'main' \
                 AND type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                 ORDER BY name",
            )?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (name, kind) = row?;
                if kind == "view" {
                    views.push(name);
                } else {
                    tables.push(name);
                }
            }
        }
        let mut unique: HashMap<String, Vec<Vec<String>>> = HashMap::new();
        let mut edges = Vec::new();
        for t in &tables {
            unique.insert(t.clone(), unique_keys(conn, t)?);
            edges.extend(foreign_keys(conn, t, &tables)?);
        }
        // Each view's columns that come straight from a table's: (table, column) → view column.
        let mut view_origins: Vec<(String, ViewOrigins)> = Vec::new();
        for v in views.iter().filter(|v| exposed(v)) {
            if let Some(map) = view_columns(conn, v) {
                view_origins.push((v.clone(), map));
            }
        }
        // Where the columns `cols` of `table` can be read from: the table itself, and each
        // exposed view that shows all of them.
        let sides = |table: &str, cols: &[&String]| -> Vec<Side> {
            let mut out = Vec::new();
            if exposed(table) {
                out.push(Side {
                    relation: table.to_string(),
                    columns: cols.iter().map(|c| (*c).clone()).collect(),
                    is_view: false,
                });
            }
            for (view, map) in &view_origins {
                let mapped: Option<Vec<String>> = cols
                    .iter()
                    .map(|c| map.get(&(table.to_string(), (*c).clone())).cloned())
                    .collect();
                if let Some(columns) = mapped {
                    out.push(Side {
                        relation: view.clone(),
                        columns,
                        is_view: true,
                    });
                }
            }
            out
        };
        let is_unique = |table: &str, cols: &[&String]| {
            let set: HashSet<&str> = cols.iter().map(|c| c.as_str()).collect();
            unique.get(table).is_some_and(|keys| {
                keys.iter()
                    .any(|k| k.len() == set.len() && k.iter().all(|c| set.contains(c.as_str())))
            })
        };
        let mut by_origin: HashMap<String, Vec<Relationship>> = HashMap::new();
        let mut add = |r: Relationship| {
            let list = by_origin.entry(r.table.clone()).or_default();
            if !list.contains(&r) {
                list.push(r);
            }
        };
        for e in &edges {
            let from: Vec<&String> = e.columns.iter().map(|p| &p.0).collect();
            let to: Vec<&String> = e.columns.iter().map(|p| &p.1).collect();
            let one_to_one = is_unique(&e.table, &from);
            for s in sides(&e.table, &from) {
                for d in sides(&e.target, &to) {
                    let is_self = s.relation == d.relation;
                    let pairs = |a: &[String], b: &[String]| -> Vec<(String, String)> {
                        a.iter().cloned().zip(b.iter().cloned()).collect()
                    };
                    add(Relationship {
                        table: s.relation.clone(),
                        foreign_table: d.relation.clone(),
                        is_self,
                        cardinality: if one_to_one {
                            Cardinality::OneToOne
                        } else {
                            Cardinality::ManyToOne
                        },
                        constraint: e.name.clone(),
                        columns: pairs(&s.columns, &d.columns),
                        foreign_is_view: d.is_view,
                    });
                    add(Relationship {
                        table: d.relation.clone(),
                        foreign_table: s.relation.clone(),
                        is_self,
                        cardinality: if one_to_one {
                            Cardinality::OneToOne
                        } else {
                            Cardinality::OneToMany
                        },
                        constraint: e.name.clone(),
                        columns: pairs(&d.columns, &s.columns),
                        foreign_is_view: s.is_view,
                    });
                }
            }
        }
        // Junctions: an exposed table with two foreign keys whose columns share a unique key.
        for (i, e1) in edges.iter().enumerate() {
            if !exposed(&e1.table) {
                continue;
            }
            for (k, e2) in edges.iter().enumerate() {
                if i == k || e1.table != e2.table {
                    continue;
                }
                let mut all: Vec<&String> = e1.columns.iter().map(|p| &p.0).collect();
                all.extend(e2.columns.iter().map(|p| &p.0));
                let covered = unique
                    .get(&e1.table)
                    .is_some_and(|keys| keys.iter().any(|key| all.iter().all(|c| key.contains(c))));
                if !covered {
                    continue;
                }
                let to1: Vec<&String> = e1.columns.iter().map(|p| &p.1).collect();
                let to2: Vec<&String> = e2.columns.iter().map(|p| &p.1).collect();
                for a in sides(&e1.target, &to1) {
                    for b in sides(&e2.target, &to2) {
                        add(Relationship {
                            table: a.relation.clone(),
                            foreign_table: b.relation.clone(),
                            is_self: a.relation == b.relation,
                            cardinality: Cardinality::ManyToMany(Junction {
                                table: e1.table.clone(),
                                constraint1: e1.name.clone(),
                                constraint2: e2.name.clone(),
                                source: a
                                    .columns
                                    .iter()
                                    .cloned()
                                    .zip(e1.columns.iter().map(|p| p.0.clone()))
                                    .collect(),
                                target: b
                                    .columns
                                    .iter()
                                    .cloned()
                                    .zip(e2.columns.iter().map(|p| p.0.clone()))
                                    .collect(),
                            }),
                            constraint: String::new(),
                            columns: Vec::new(),
                            foreign_is_view: b.is_view,
                        });
                    }
                }
            }
        }
        Ok(Relationships { by_origin })
    }

    /// The relationships whose origin is `origin`.
    pub fn from(&self, origin: &str) -> &[Relationship] {
        self.by_origin.get(origin).map_or(&[], Vec::as_slice)
    }

    /// The relationship `origin?select=target!hint(…)` names (PostgREST's rules): the target
    /// is the related relation, or (tables only) a foreign key's name or its single column;
    /// the hint a foreign key's name, one of its single columns, or a junction. In a
    /// self-reference, the target's name alone is the one-to-many side and a column name the
    /// many-to-one side; a hint picks a one-to-many by the referenced column.
    pub fn find(
        &self,
        origin: &str,
        target: &str,
        hint: Option<&str>,
    ) -> Result<&Relationship, ApiError> {
        let candidates = self.from(origin);
        let found: Vec<&Relationship> = candidates
            .iter()
            .filter(|r| {
                let single = r.single_column();
                let fk_col = |h: &str| single.is_some_and(|p| p.0 == h);
                let ref_col = |h: &str| single.is_some_and(|p| p.1 == h);
                let constraint = |h: &str| {
                    !matches!(r.cardinality, Cardinality::ManyToMany(_)) && r.constraint == h
                };
                let junction =
                    |h: &str| matches!(&r.cardinality, Cardinality::ManyToMany(j) if j.table == h);
                let one_to_many = r.cardinality == Cardinality::OneToMany;
                let many_to_one = r.cardinality == Cardinality::ManyToOne;
                if r.is_self {
                    return match hint {
                        None => {
                            (target == r.foreign_table && one_to_many)
                                || (fk_col(target) && many_to_one)
                        }
                        Some(h) => target == r.foreign_table && one_to_many && ref_col(h),
                    };
                }
                match hint {
                    None => {
                        target == r.foreign_table
                            || (constraint(target) && !r.foreign_is_view)
                            || (fk_col(target) && !r.foreign_is_view)
                    }
                    Some(h) => {
                        target == r.foreign_table
                            && (constraint(h) || fk_col(h) || ref_col(h) || junction(h))
                    }
                }
            })
            .collect();
        match found.as_slice() {
            [one] => Ok(one),
            [] => Err(self.no_relationship(origin, target, hint)),
            many => Err(ApiError {
                details: Some(serde_json::Value::Array(
                    many.iter().map(|r| r.describe()).collect(),
                )),
                hint: Some(format!(
                    "Try changing '{target}' to one of the following: {}. Find the desired relationship in the 'details' key.",
                    many.iter().map(|r| r.hint()).collect::<Vec<_>>().join(", ")
                )),
                ..ApiError::new(
                    300,
                    ErrorCode::AmbiguousRelationship,
                    format!(
                        "Could not embed because more than one relationship was found for '{origin}' and '{target}'"
                    ),
                )
            }),
        }
    }

    /// PGRST200, with PostgREST's "Perhaps you meant" hint: another target of the origin
    /// when the origin has relationships, else another origin.
    fn no_relationship(&self, origin: &str, target: &str, hint: Option<&str>) -> ApiError {
        let using = hint.map_or(String::new(), |h| format!("' using the hint '{h}"));
        let suggestion = match self.by_origin.get(origin) {
            Some(rels) => {
                let names: HashSet<&str> = rels.iter().map(|r| r.foreign_table.as_str()).collect();
                crate::schema_cache::most_similar(
                    target,
                    names.into_iter().filter(|n| *n != target),
                )
                .map(|s| format!("Perhaps you meant '{s}' instead of '{target}'."))
            }
            None => {
                crate::schema_cache::most_similar(origin, self.by_origin.keys().map(String::as_str))
                    .map(|s| format!("Perhaps you meant '{s}' instead of '{origin}'."))
            }
        };
        let e = ApiError::new(
            400,
            ErrorCode::NoRelationship,
            format!(
                "Could not find a relationship between '{origin}' and '{target}' in the schema cache"
            ),
        )
        .with_details(format!(
            "Searched for a foreign key relationship between '{origin}' and '{target}{using}' in the schema 'public', but no matches were found."
        ));
        match suggestion {
            Some(s) => e.with_hint(s),
            None => e,
        }
    }
}

/// The unique keys of `table` (its primary key and UNIQUE indexes), as column lists.
fn unique_keys(conn: &Connection, table: &str) -> rusqlite::Result<Vec<Vec<String>>> {
    let mut stmt = conn.prepare_cached(
        "SELECT il.name, ii.name FROM pragma_index_list(?1, 'main') il \
         JOIN pragma_index_info(il.name, 'main') ii WHERE il.\"unique\" = 1 AND il.partial = 0 \
         ORDER BY il.seq, ii.seqno",
    )?;
    let rows = stmt.query_map([table], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
    })?;
    let mut keys: Vec<Vec<String>> = Vec::new();
    let mut last: Option<String> = None;
    let mut broken = false;
    for row in rows {
        let (index, col) = row?;
        if last.as_deref() != Some(index.as_str()) {
            if broken {
                keys.pop();
            }
            broken = false;
            last = Some(index);
            keys.push(Vec::new());
        }
        match (keys.last_mut(), col) {
            (Some(cols), Some(col)) => cols.push(col),
            // An expression in the index: not a key of columns.
            _ => broken = true,
        }
    }
    if broken {
        keys.pop();
    }
    let pk = primary_key(conn, table)?;
    if !pk.is_empty() && !keys.contains(&pk) {
        keys.push(pk);
    }
    Ok(keys)
}

fn primary_key(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name FROM pragma_table_info(?1, 'main') WHERE pk > 0 ORDER BY pk",
    )?;
    let rows = stmt.query_map([table], |r| r.get::<_, String>(0))?;
    rows.collect()
}

/// The names of `table`'s columns.
fn column_names(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT name FROM pragma_table_info(?1, 'main')")?;
    let rows = stmt.query_map([table], |r| r.get::<_, String>(0))?;
    rows.collect()
}

/// `name` as `names` spells it: SQLite matches identifiers without regard to ASCII case, and
/// a foreign key keeps the spelling of its declaration.
fn spelled<'a>(names: &'a [String], name: &str) -> Option<&'a String> {
    names
        .iter()
        .find(|n| *n == name)
        .or_else(|| names.iter().find(|n| n.eq_ignore_ascii_case(name)))
}

/// The foreign keys of `table`, their target columns resolved (the target's primary key when
/// the declaration names none) and named; tables and columns as the schema spells them (a
/// key to a table or column that does not exist is left out: SQLite would refuse it too).
fn foreign_keys(conn: &Connection, table: &str, tables: &[String]) -> rusqlite::Result<Vec<Edge>> {
    let raw: Vec<(String, Vec<String>, Vec<Option<String>>)> = foreign_key_list(conn, table)?
        .into_iter()
        .map(|fk| (fk.target, fk.columns, fk.target_columns))
        .collect();
    let sql: String = conn
        .prepare_cached(
            "SELECT coalesce(sql, '') FROM sqlite_schema WHERE name = ?1 AND type = 'table'",
        )?
        .query_row([table], |r| r.get(0))
        .unwrap_or_default();
    let named = constraint_names(&sql);
    let own = column_names(conn, table)?;
    let mut out = Vec::new();
    for (target, from, to) in raw {
        let Some(target) = spelled(tables, &target).cloned() else {
            continue;
        };
        let theirs = column_names(conn, &target)?;
        let to: Vec<String> = if to.iter().all(Option::is_some) {
            to.into_iter().flatten().collect()
        } else {
            primary_key(conn, &target)?
        };
        let from: Option<Vec<String>> = from.iter().map(|c| spelled(&own, c).cloned()).collect();
        let to: Option<Vec<String>> = to.iter().map(|c| spelled(&theirs, c).cloned()).collect();
        let (Some(from), Some(to)) = (from, to) else {
            continue;
        };
        if to.len() != from.len() || from.is_empty() {
            // A key SQLite itself would reject when enforcing it.
            continue;
        }
        let name = named
            .iter()
            .find(|(cols, _)| {
                cols.len() == from.len()
                    && cols
                        .iter()
                        .zip(&from)
                        .all(|(a, b)| a.eq_ignore_ascii_case(b))
            })
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| synthesized_name(table, &from));
        out.push(Edge {
            table: table.to_string(),
            name,
            target,
            columns: from.into_iter().zip(to).collect(),
        });
    }
    Ok(out)
}

/// PostgreSQL's default name of a foreign key: `{table}_{col1}_{col2}_fkey`.
pub(crate) fn synthesized_name(table: &str, columns: &[String]) -> String {
    format!("{table}_{}_fkey", columns.join("_"))
}

/// A view's columns by where they come from: (table, column) → the view's column.
type ViewOrigins = HashMap<(String, String), String>;

/// For each column of the view that is a table's column as is: (table, column) → its name in
/// the view (the first one, when a column shows twice). `None` when the view cannot be
/// prepared (it names something that no longer exists).
fn view_columns(conn: &Connection, view: &str) -> Option<ViewOrigins> {
    let stmt = conn
        .prepare(&format!("SELECT * FROM {}", quoted(view)))
        .ok()?;
    let mut map = HashMap::new();
    for i in 0..stmt.column_count() {
        let Ok(name) = stmt.column_name(i) else {
            continue;
        };
        let Ok(Some((db, table, origin, ..))) = stmt.column_metadata(i) else {
            continue;
        };
        let (Ok(db), Ok(table), Ok(origin)) = (db.to_str(), table.to_str(), origin.to_str()) else {
            continue;
        };
        if db != "main" {
            continue;
        }
        map.entry((table.to_string(), origin.to_string()))
            .or_insert_with(|| name.to_string());
    }
    Some(map)
}

/// A token of a `CREATE TABLE` statement.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A bare word (keyword, name or number).
    Word(String),
    /// A quoted name, unquoted.
    Name(String),
    /// A string literal (its text does not matter here).
    Str,
    Punct(char),
}

impl Tok {
    fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
    fn name(&self) -> Option<&str> {
        match self {
            Tok::Word(w) | Tok::Name(w) => Some(w),
            _ => None,
        }
    }
}

fn tokens(sql: &str) -> Vec<Tok> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if matches!(c, '"' | '`' | '[' | '\'') {
            let close = if c == '[' { ']' } else { c };
            let mut text = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == close {
                    if close != ']' && chars.get(i + 1) == Some(&close) {
                        text.push(close);
                        i += 2;
                        continue;
                    }
                    break;
                }
                text.push(chars[i]);
                i += 1;
            }
            i += 1;
            out.push(if c == '\'' { Tok::Str } else { Tok::Name(text) });
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    out
}

/// The foreign keys a `CREATE TABLE` statement names: (their columns, the name).
fn constraint_names(sql: &str) -> Vec<(Vec<String>, String)> {
    let toks = tokens(sql);
    // The items of the table's definition list: split on commas at depth 1.
    let mut items: Vec<Vec<Tok>> = Vec::new();
    let mut depth = 0usize;
    for t in toks {
        match t {
            Tok::Punct('(') => {
                depth += 1;
                if depth == 1 {
                    items.push(Vec::new());
                    continue;
                }
            }
            Tok::Punct(')') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            Tok::Punct(',') if depth == 1 => {
                items.push(Vec::new());
                continue;
            }
            _ => {}
        }
        if depth >= 1
            && let Some(item) = items.last_mut()
        {
            item.push(t);
        }
    }
    let mut out = Vec::new();
    for item in items {
        if item.first().is_some_and(|t| t.is_kw("CONSTRAINT")) {
            let (Some(name), true, true) = (
                item.get(1).and_then(Tok::name),
                item.get(2).is_some_and(|t| t.is_kw("FOREIGN")),
                item.get(3).is_some_and(|t| t.is_kw("KEY")),
            ) else {
                continue;
            };
            let cols: Vec<String> = item
                .iter()
                .skip(5)
                .take_while(|t| **t != Tok::Punct(')'))
                .filter_map(|t| t.name().map(str::to_string))
                .collect();
            out.push((cols, name.to_string()));
            continue;
        }
        let Some(column) = item.first().and_then(Tok::name) else {
            continue;
        };
        if ["PRIMARY", "UNIQUE", "CHECK", "FOREIGN"]
            .iter()
            .any(|kw| column.eq_ignore_ascii_case(kw))
        {
            continue;
        }
        for w in item.windows(3) {
            if w[0].is_kw("CONSTRAINT")
                && w[2].is_kw("REFERENCES")
                && let Some(name) = w[1].name()
            {
                out.push((vec![column.to_string()], name.to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraint_names_are_read_from_the_statement() {
        let sql = r#"CREATE TABLE "orders" (
            id INTEGER PRIMARY KEY, -- a comment, with (parens)
            billing INTEGER CONSTRAINT billing REFERENCES addresses(id),
            shipping INTEGER REFERENCES addresses(id),
            note TEXT DEFAULT 'a, (b',
            a INT, b INT,
            CONSTRAINT "composite, key" FOREIGN KEY (a, "b") REFERENCES pairs(x, y),
            FOREIGN KEY (shipping) REFERENCES addresses(id)
        )"#;
        assert_eq!(
            constraint_names(sql),
            vec![
                (vec!["billing".to_string()], "billing".to_string()),
                (
                    vec!["a".to_string(), "b".to_string()],
                    "composite, key".to_string()
                ),
            ]
        );
    }
}
