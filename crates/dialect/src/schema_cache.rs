//! The schema cache: tables, views, columns, keys and foreign keys of the `main` database.
//!
//! Built from `pragma_table_list`, `pragma_table_xinfo` (which also gives a view's columns
//! the declared type of the column they come from), `pragma_foreign_key_list`,
//! `pragma_index_list`/`pragma_index_info`, and the view triggers and FTS5 tables (see
//! [`crate::fts::index`]) in `sqlite_schema`, stamped with the `PRAGMA schema_version` it was
//! read at. FTS5's shadow tables (`pragma_table_list` type `shadow`) are never relations.
//! Callers compare that stamp with the database's current `schema_version` (one cheap
//! pragma) and rebuild when it moved; nothing here is read per request. Relations that are not exposed (the allow-list) are left out, so
//! they answer exactly like missing ones; their names are kept only to count refusals.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension};

use crate::fts::index::{FullTextIndex, fts5_tables, full_text_columns};
use crate::relationships::Relationships;

/// What kind of relation a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelKind {
    Table,
    View,
    Virtual,
}

/// How values of a column are rendered; driven by the declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// Declared `BOOL…`: 0/1 rendered as false/true; filter values true/false map to 1/0.
    Bool,
    /// Declared `JSON…`: valid JSON text is nested as JSON.
    Json,
    /// Everything else: rendered by its storage class.
    Plain,
}

impl ValueKind {
    /// The kind for a declared column type.
    pub fn from_decl_type(decl: &str) -> Self {
        let up = decl.to_ascii_uppercase();
        if up.contains("BOOL") {
            ValueKind::Bool
        } else if up.contains("JSON") {
            ValueKind::Json
        } else {
            ValueKind::Plain
        }
    }
}

/// SQLite's type affinity of a column, from its declared type (the rules of
/// <https://sqlite.org/datatype3.html#determination_of_column_affinity>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

impl Affinity {
    pub fn from_decl_type(decl: &str) -> Self {
        let up = decl.to_ascii_uppercase();
        if up.contains("INT") {
            Affinity::Integer
        } else if up.contains("CHAR") || up.contains("CLOB") || up.contains("TEXT") {
            Affinity::Text
        } else if up.contains("BLOB") || up.trim().is_empty() {
            Affinity::Blob
        } else if up.contains("REAL") || up.contains("FLOA") || up.contains("DOUB") {
            Affinity::Real
        } else {
            Affinity::Numeric
        }
    }
}

/// Whether a declared type names a date or a time (`DATE`, `DATETIME`, `TIMESTAMP`, `TIME`):
/// NUMERIC affinity, but SQLite keeps such values as text.
pub(crate) fn is_temporal(decl: &str) -> bool {
    let up = decl.to_ascii_uppercase();
    up.contains("DATE") || up.contains("TIME")
}

/// One column.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub decl_type: String,
    pub kind: ValueKind,
    pub affinity: Affinity,
    pub nullable: bool,
    /// The default as SQL text from the schema (may be inlined in SQL, as PostgREST does).
    pub default: Option<String>,
    /// 1-based position in the primary key, 0 when not part of it.
    pub pk: u32,
}

/// A foreign key from this relation's `columns` to `target`'s `target_columns`.
#[derive(Debug, Clone)]
pub struct ForeignKey {
    /// Synthesized PostgreSQL-style name: `{table}_{cols}_fkey`.
    pub name: String,
    pub columns: Vec<String>,
    pub target: String,
    /// Empty when the FK refers to the target's primary key implicitly.
    pub target_columns: Vec<String>,
}

/// Relations and columns by name. Every request looks names up here, and the keys are the
/// schema's own names, never a client's, so a fast hash without flooding resistance serves
/// (its seed is still random per map).
type NameMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// A table or view with everything the planner needs.
#[derive(Debug, Clone)]
pub struct Relation {
    pub name: String,
    pub kind: RelKind,
    pub columns: Vec<Column>,
    by_name: NameMap<usize>,
    /// Primary key columns in key order (empty for views and tables without one).
    pub primary_key: Vec<String>,
    pub foreign_keys: Vec<ForeignKey>,
    /// Column sets of UNIQUE indexes (including the PK's).
    pub unique_keys: Vec<Vec<String>>,
    pub insertable: bool,
    pub updatable: bool,
    pub deletable: bool,
    /// A `WITHOUT ROWID` table: rows are identified by their primary key only.
    pub without_rowid: bool,
    /// The columns with an FTS5 index (see `fts/index.rs`), by column name.
    pub full_text: HashMap<String, FullTextIndex>,
    /// The `CREATE` statement (for naming the CHECK constraint a write violated).
    pub sql: String,
    /// Rows read from a statement instead of a stored relation (an RPC function's result,
    /// see `rpc/`); `None` for tables and views.
    pub source: Option<Arc<Source>>,
}

/// A statement whose rows a derived relation reads: its SQL text and the values of its
/// parameters in the order SQLite numbers them (first appearance), so that it can stand as a
/// subquery in a statement whose other parameters are `?`.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub sql: String,
    pub args: Vec<rusqlite::types::Value>,
}

/// How the rows a write touched are found again (for `return=representation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowKey {
    /// The table's rowid, under a name no column shadows (`rowid`, `_rowid_` or `oid`).
    Rowid(&'static str),
    /// The primary key columns (`WITHOUT ROWID` tables, or every rowid name is shadowed).
    Columns(Vec<String>),
    /// No key (views): a write reports the values its statement returns.
    None,
}

impl Relation {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.by_name.get(name).map(|&i| &self.columns[i])
    }

    /// A read-only relation named `name` whose rows come from `source`, with `columns`
    /// (name, declared type) as its columns.
    pub(crate) fn derived(
        name: &str,
        columns: &[(String, Option<String>)],
        source: Source,
    ) -> Self {
        let columns: Vec<Column> = columns
            .iter()
            .map(|(n, decl)| {
                let decl = decl.clone().unwrap_or_default();
                Column {
                    name: n.clone(),
                    kind: ValueKind::from_decl_type(&decl),
                    affinity: Affinity::from_decl_type(&decl),
                    decl_type: decl,
                    nullable: true,
                    default: None,
                    pk: 0,
                }
            })
            .collect();
        let by_name = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        Relation {
            name: name.to_string(),
            kind: RelKind::View,
            columns,
            by_name,
            primary_key: Vec::new(),
            foreign_keys: Vec::new(),
            unique_keys: Vec::new(),
            insertable: false,
            updatable: false,
            deletable: false,
            without_rowid: false,
            full_text: HashMap::new(),
            sql: String::new(),
            source: Some(Arc::new(source)),
        }
    }

    /// The key that identifies this relation's rows.
    pub fn row_key(&self) -> RowKey {
        if self.kind == RelKind::View {
            return RowKey::None;
        }
        if !self.without_rowid
            && let Some(name) = ["rowid", "_rowid_", "oid"]
                .into_iter()
                .find(|n| !self.columns.iter().any(|c| c.name.eq_ignore_ascii_case(n)))
        {
            return RowKey::Rowid(name);
        }
        if self.primary_key.is_empty() {
            RowKey::None
        } else {
            RowKey::Columns(self.primary_key.clone())
        }
    }

    /// The `Allow` header PostgREST sends for `OPTIONS` on this relation.
    pub fn allow_header(&self) -> String {
        let mut methods = vec!["OPTIONS", "GET", "HEAD"];
        if self.insertable {
            methods.push("POST");
        }
        if self.insertable && self.updatable && !self.primary_key.is_empty() {
            methods.push("PUT");
        }
        if self.updatable {
            methods.push("PATCH");
        }
        if self.deletable {
            methods.push("DELETE");
        }
        methods.join(",")
    }
}

/// Which relations the API exposes.
#[derive(Debug, Clone, Default)]
pub enum Exposure {
    /// Every table and view (except SQLite's own).
    #[default]
    All,
    /// Only these names (the Go version's `--security-allow-table`).
    Only(HashSet<String>),
}

impl Exposure {
    pub fn allows(&self, name: &str) -> bool {
        match self {
            Exposure::All => true,
            Exposure::Only(set) => set.contains(name),
        }
    }
}

/// The cached schema, stamped with the `schema_version` it was read at.
#[derive(Debug, Clone, Default)]
pub struct SchemaCache {
    pub version: i64,
    /// Unique to each cache built (loaded, restricted to a role, …) in this process; a clone
    /// keeps it, as it holds the same schema. What the plan cache keys its plans by, so no
    /// plan outlives the cache it was made against (`schema_version` alone does not change on
    /// a forced reload or a permissions reload).
    generation: u64,
    relations: NameMap<Arc<Relation>>,
    hidden: HashSet<String>,
    /// The names of every view and trigger of the database, exposed or not: what SQLite's
    /// authorizer names as the accessor of what they read and write on their own behalf.
    definers: HashSet<String>,
    /// The relationships between exposed relations (see `relationships.rs`).
    pub relationships: Relationships,
}

/// The next [`SchemaCache::generation`] (0 is the empty default cache's).
fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The database's current `PRAGMA schema_version`.
pub fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("PRAGMA schema_version")?
        .query_row([], |r| r.get(0))
}

impl SchemaCache {
    /// Reads the schema of `main` from `conn`, keeping only exposed relations.
    pub fn load(conn: &Connection, exposure: &Exposure) -> rusqlite::Result<Self> {
        // Read the version first: a change racing with the load makes the next check rebuild.
        let version = schema_version(conn)?;
        let mut relations = NameMap::default();
        let mut hidden = HashSet::new();
        let names: Vec<(String, String, bool)> = {
            let mut stmt = conn.prepare(
                "SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main' \
                 AND type IN ('table', 'view', 'virtual') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                 ORDER BY name",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        let (triggers, mut definers) = view_triggers(conn)?;
        let fts5 = fts5_tables(conn)?;
        for (name, kind, without_rowid) in names {
            if kind == "view" {
                definers.insert(name.clone());
            }
            if !exposure.allows(&name) {
                hidden.insert(name);
                continue;
            }
            let kind = match kind.as_str() {
                "view" => RelKind::View,
                "virtual" => RelKind::Virtual,
                _ => RelKind::Table,
            };
            let mut rel = load_relation(conn, name.clone(), kind, triggers.get(&name))?;
            rel.without_rowid = without_rowid;
            rel.full_text = full_text_columns(&rel, &fts5);
            relations.insert(name, Arc::new(rel));
        }
        let relationships = Relationships::load(conn, &|n| relations.contains_key(n))?;
        Ok(SchemaCache {
            version,
            generation: next_generation(),
            relations,
            hidden,
            definers,
            relationships,
        })
    }

    /// See the field: unique to this cache (and its clones) in this process.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn relation(&self, name: &str) -> Option<&Arc<Relation>> {
        self.relations.get(name)
    }

    /// A cache holding only `rel`, without relationships (what an RPC result is planned
    /// against).
    pub(crate) fn of_one(rel: Relation) -> Self {
        let mut relations = NameMap::default();
        relations.insert(rel.name.clone(), Arc::new(rel));
        SchemaCache {
            relations,
            generation: next_generation(),
            ..SchemaCache::default()
        }
    }

    /// The cache as a role sees it: only the relations `visible` keeps (with their
    /// relationships); the others answer and are kept out of errors like hidden ones.
    pub fn restricted(&self, visible: &dyn Fn(&str) -> bool) -> SchemaCache {
        let mut hidden = self.hidden.clone();
        let mut relations =
            NameMap::with_capacity_and_hasher(self.relations.len(), Default::default());
        for (name, rel) in &self.relations {
            if visible(name) {
                relations.insert(name.clone(), rel.clone());
            } else {
                hidden.insert(name.clone());
            }
        }
        SchemaCache {
            version: self.version,
            generation: next_generation(),
            relationships: self.relationships.retain(&|n| relations.contains_key(n)),
            relations,
            hidden,
            definers: self.definers.clone(),
        }
    }

    /// Whether `name` is a view or a trigger of the database (exposed or not).
    pub fn is_definer(&self, name: &str) -> bool {
        self.definers.contains(name)
    }

    /// The names of the database's views and triggers.
    pub fn definers(&self) -> impl Iterator<Item = &String> {
        self.definers.iter()
    }

    /// The relations the allow-list hides.
    pub fn hidden(&self) -> impl Iterator<Item = &String> {
        self.hidden.iter()
    }

    /// True when `name` exists in the database but the allow-list hides it.
    pub fn is_hidden(&self, name: &str) -> bool {
        self.hidden.contains(name)
    }

    /// True when `text` mentions a hidden relation: its name, not preceded by a character of
    /// a name (so `secret`, `"secret"`, `main.secret` and `secret_data` count, `mysecret`
    /// does not). Errors are checked with it before they leave.
    pub fn mentions_hidden(&self, text: &str) -> bool {
        self.hidden.iter().any(|name| {
            !name.is_empty()
                && text.match_indices(name.as_str()).any(|(i, _)| {
                    !text[..i]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_')
                })
        })
    }

    pub fn relations(&self) -> impl Iterator<Item = &Arc<Relation>> {
        self.relations.values()
    }

    /// The exposed name most similar to `name`, if it is similar enough (≥ 0.75, as
    /// PostgREST asks) to suggest. Bounded work: a name longer than `MAX_HINT_CHARS` (64) gets no
    /// hint, and names whose lengths alone rule them out are skipped before any distance.
    pub fn suggest(&self, name: &str) -> Option<&str> {
        most_similar(name, self.relations.keys().map(String::as_str))
    }
}

/// The candidate most similar to `name`, if it is similar enough (see [`SchemaCache::suggest`];
/// ties go to the smallest name).
pub(crate) fn most_similar<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    // A character is at most 4 bytes: a long name is refused before it is even counted.
    if name.len() > 4 * MAX_HINT_CHARS {
        return None;
    }
    let a_len = name.chars().count();
    if a_len > MAX_HINT_CHARS {
        return None;
    }
    let mut best: Option<(f64, &str)> = None;
    for k in candidates {
        let Some(s) = similarity(name, a_len, k) else {
            continue;
        };
        if best.is_none_or(|(b, bk)| s > b || (s == b && k < bk)) {
            best = Some((s, k));
        }
    }
    best.map(|(_, k)| k)
}

/// Names longer than this (in characters) get no "did you mean" hint.
pub(crate) const MAX_HINT_CHARS: usize = 64;
/// How similar a name must be to be suggested.
const MIN_SIMILARITY: f64 = 0.75;

thread_local! {
    static HINT_CELLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many edit-distance cells this thread has computed for hints (tests measure the cost of
/// a hint with it).
#[cfg(test)]
pub(crate) fn hint_cells() -> u64 {
    HINT_CELLS.with(|c| c.get())
}

/// 1 − Levenshtein distance / longer length, on characters, when it reaches
/// [`MIN_SIMILARITY`] (`None` otherwise). A name whose length alone rules it out costs no
/// distance; the distance itself (`strsim`) costs `a_len × b_len` cells.
fn similarity(a: &str, a_len: usize, b: &str) -> Option<f64> {
    let b_len = b.chars().count();
    let longest = a_len.max(b_len);
    if longest == 0 {
        return Some(1.0);
    }
    // The largest distance that still reaches the similarity; the lengths alone give a floor.
    let allowed = ((1.0 - MIN_SIMILARITY) * longest as f64).floor() as usize;
    if a_len.abs_diff(b_len) > allowed {
        return None;
    }
    HINT_CELLS.with(|c| c.set(c.get() + (a_len * b_len) as u64));
    let distance = strsim::levenshtein(a, b);
    (distance <= allowed).then(|| 1.0 - distance as f64 / longest as f64)
}

/// For each view: which of INSERT/UPDATE/DELETE have INSTEAD OF triggers; and the names of
/// all triggers.
type ViewTriggers = (HashMap<String, [bool; 3]>, HashSet<String>);

fn view_triggers(conn: &Connection) -> rusqlite::Result<ViewTriggers> {
    let mut stmt = conn.prepare(
        "SELECT tbl_name, sql, name FROM sqlite_schema WHERE type = 'trigger' AND sql IS NOT NULL",
    )?;
    let mut out: HashMap<String, [bool; 3]> = HashMap::new();
    let mut names = HashSet::new();
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (table, sql, name) = row?;
        names.insert(name);
        let norm = sql
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_uppercase();
        let e = out.entry(table).or_default();
        e[0] |= norm.contains("INSTEAD OF INSERT");
        e[1] |= norm.contains("INSTEAD OF UPDATE");
        e[2] |= norm.contains("INSTEAD OF DELETE");
    }
    Ok((out, names))
}

fn load_relation(
    conn: &Connection,
    name: String,
    kind: RelKind,
    triggers: Option<&[bool; 3]>,
) -> rusqlite::Result<Relation> {
    let mut columns = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT name, type, \"notnull\", dflt_value, pk, hidden FROM pragma_table_xinfo(?1, 'main') ORDER BY cid",
        )?;
        let rows = stmt.query_map([&name], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                r.get::<_, bool>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, u32>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        for row in rows {
            let (cname, decl, notnull, default, pk, hidden) = row?;
            // hidden = 1: a virtual table's hidden column; 2/3 are generated columns (shown).
            if hidden == 1 {
                continue;
            }
            columns.push(Column {
                kind: ValueKind::from_decl_type(&decl),
                affinity: Affinity::from_decl_type(&decl),
                name: cname,
                decl_type: decl,
                nullable: !notnull,
                default,
                pk,
            });
        }
    }
    let by_name = columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), i))
        .collect();
    let mut pk: Vec<&Column> = columns.iter().filter(|c| c.pk > 0).collect();
    pk.sort_by_key(|c| c.pk);
    let primary_key: Vec<String> = pk.iter().map(|c| c.name.clone()).collect();

    let mut foreign_keys: Vec<ForeignKey> = Vec::new();
    let mut unique_keys = Vec::new();
    if kind == RelKind::Table {
        for fk in foreign_key_list(conn, &name)? {
            foreign_keys.push(ForeignKey {
                name: String::new(),
                columns: fk.columns,
                target: fk.target,
                target_columns: fk.target_columns.into_iter().flatten().collect(),
            });
        }
        for fk in &mut foreign_keys {
            fk.name = format!("{}_{}_fkey", name, fk.columns.join("_"));
        }

        let mut stmt = conn.prepare(
            "SELECT il.name, ii.name FROM pragma_index_list(?1, 'main') il \
             JOIN pragma_index_info(il.name, 'main') ii WHERE il.\"unique\" = 1 ORDER BY il.seq, ii.seqno",
        )?;
        let rows = stmt.query_map([&name], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
        })?;
        let mut last: Option<String> = None;
        for row in rows {
            let (index, col) = row?;
            if last.as_deref() != Some(index.as_str()) {
                last = Some(index);
                unique_keys.push(Vec::new());
            }
            if let (Some(cols), Some(col)) = (unique_keys.last_mut(), col) {
                cols.push(col);
            }
        }
        if !primary_key.is_empty() && !unique_keys.contains(&primary_key) {
            unique_keys.push(primary_key.clone());
        }
    }
    let sql: Option<String> = conn
        .prepare_cached("SELECT sql FROM sqlite_schema WHERE name = ?1 AND sql IS NOT NULL")?
        .query_row([&name], |r| r.get(0))
        .optional()?;
    let (insertable, updatable, deletable) = match kind {
        RelKind::Table | RelKind::Virtual => (true, true, true),
        RelKind::View => {
            let t = triggers.copied().unwrap_or_default();
            (t[0], t[1], t[2])
        }
    };
    Ok(Relation {
        name,
        kind,
        columns,
        by_name,
        primary_key,
        foreign_keys,
        unique_keys,
        insertable,
        updatable,
        deletable,
        without_rowid: false,
        full_text: HashMap::new(),
        sql: sql.unwrap_or_default(),
        source: None,
    })
}

/// One foreign key of a table as `PRAGMA foreign_key_list` declares it (its rows grouped by
/// key): the target as written, the local columns, and the target columns (`None` where the
/// key names none: the target's primary key).
pub(crate) struct DeclaredForeignKey {
    pub(crate) target: String,
    pub(crate) columns: Vec<String>,
    pub(crate) target_columns: Vec<Option<String>>,
}

/// The foreign keys `table` declares, in declaration order (read by the schema cache and by
/// the relationships built from it).
pub(crate) fn foreign_key_list(
    conn: &Connection,
    table: &str,
) -> rusqlite::Result<Vec<DeclaredForeignKey>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1, 'main') ORDER BY id, seq",
    )?;
    let rows = stmt.query_map([table], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
        ))
    })?;
    let mut keys: Vec<DeclaredForeignKey> = Vec::new();
    let mut last = None;
    for row in rows {
        let (id, target, from, to) = row?;
        if last != Some(id) {
            last = Some(id);
            keys.push(DeclaredForeignKey {
                target,
                columns: Vec::new(),
                target_columns: Vec::new(),
            });
        }
        if let Some(fk) = keys.last_mut() {
            fk.columns.push(from);
            fk.target_columns.push(to);
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_cost_little_whatever_the_name() {
        let c = Connection::open_in_memory().unwrap();
        for i in 0..200 {
            c.execute_batch(&format!("CREATE TABLE table_number_{i} (x);"))
                .unwrap();
        }
        c.execute_batch("CREATE TABLE books (x);").unwrap();
        let cache = SchemaCache::load(&c, &Exposure::All).unwrap();
        // A typo still gets its hint.
        assert_eq!(cache.suggest("bookz"), Some("books"));
        assert_eq!(cache.suggest("table_numbr_17"), Some("table_number_17"));
        assert_eq!(cache.suggest("zzzzz"), None);
        // A 16 KB name costs (almost) nothing.
        for name in [
            "a".repeat(16 * 1024),
            "table_number_".repeat(1200),
            "é".repeat(8000),
        ] {
            let before = hint_cells();
            assert_eq!(cache.suggest(&name), None);
            let cells = hint_cells() - before;
            assert!(
                cells < 100_000,
                "a {}-byte name cost {cells} cells",
                name.len()
            );
        }
    }

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE clients (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
             CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
               client_id INTEGER REFERENCES clients(id), settings JSON, active BOOLEAN NOT NULL DEFAULT 1);
             CREATE TABLE no_pk (a TEXT, b TEXT);
             CREATE VIEW pv AS SELECT id, name FROM projects;
             CREATE VIEW wv AS SELECT id, name FROM clients;
             CREATE TRIGGER wv_ins INSTEAD OF INSERT ON wv BEGIN INSERT INTO clients(name) VALUES (NEW.name); END;",
        )
        .unwrap();
        c
    }

    #[test]
    fn loads_tables_views_keys_and_fks() {
        let c = db();
        let cache = SchemaCache::load(&c, &Exposure::All).unwrap();
        let p = cache.relation("projects").unwrap();
        assert_eq!(p.primary_key, vec!["id"]);
        assert_eq!(p.column("settings").unwrap().kind, ValueKind::Json);
        assert_eq!(p.column("active").unwrap().kind, ValueKind::Bool);
        assert_eq!(p.column("active").unwrap().default.as_deref(), Some("1"));
        assert!(!p.column("name").unwrap().nullable);
        assert_eq!(p.foreign_keys[0].target, "clients");
        assert_eq!(p.foreign_keys[0].name, "projects_client_id_fkey");
        let clients = cache.relation("clients").unwrap();
        assert!(clients.unique_keys.contains(&vec!["name".to_string()]));
        assert_eq!(cache.relation("pv").unwrap().kind, RelKind::View);
        assert_eq!(
            cache.relation("pv").unwrap().allow_header(),
            "OPTIONS,GET,HEAD"
        );
        assert_eq!(
            cache.relation("wv").unwrap().allow_header(),
            "OPTIONS,GET,HEAD,POST"
        );
        assert_eq!(
            cache.relation("no_pk").unwrap().allow_header(),
            "OPTIONS,GET,HEAD,POST,PATCH,DELETE"
        );
        assert_eq!(p.allow_header(), "OPTIONS,GET,HEAD,POST,PUT,PATCH,DELETE");
        assert!(cache.relation("sqlite_schema").is_none());
    }

    #[test]
    fn allow_list_hides_everything_else() {
        let c = db();
        let only = Exposure::Only(["clients".to_string()].into_iter().collect());
        let cache = SchemaCache::load(&c, &only).unwrap();
        assert!(cache.relation("clients").is_some());
        assert!(cache.relation("projects").is_none());
        assert!(cache.is_hidden("projects"));
        assert_eq!(cache.suggest("project"), None);
    }

    #[test]
    fn version_moves_with_ddl() {
        let c = db();
        let cache = SchemaCache::load(&c, &Exposure::All).unwrap();
        c.execute_batch("CREATE TABLE later (x)").unwrap();
        assert_ne!(schema_version(&c).unwrap(), cache.version);
    }

    #[test]
    fn suggests_close_names_only() {
        let c = db();
        let cache = SchemaCache::load(&c, &Exposure::All).unwrap();
        assert_eq!(cache.suggest("projcts"), Some("projects"));
        assert_eq!(cache.suggest("zzz"), None);
    }
}
