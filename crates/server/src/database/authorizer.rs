//! What a connection may even prepare: SQLite's authorizer, with one [`Policy`] per kind of
//! connection, and a switch that lifts it for the server's own trusted statements (loading
//! the schema cache).
//!
//! - [`Policy::Read`] (the read pool): reading (SELECT, reads, functions, recursive CTEs,
//!   transactions) and a few pragmas without a value (`schema_version`, `data_version`,
//!   `page_count`, `page_size`). No write, DDL, ATTACH, savepoint or other pragma.
//! - [`Policy::Write`] (the single writer): reading plus INSERT, UPDATE, DELETE and
//!   savepoints, and the pragmas `schema_version` and `data_version` without a value. No DDL,
//!   ATTACH/DETACH, pragma with a value, ANALYZE, REINDEX or virtual-table change.
//!
//! The authorizer runs when a statement is prepared, so a refused statement never runs: its
//! preparation fails with SQLITE_AUTH. SQLite has no authorizer action for VACUUM, so no
//! policy can refuse it: read connections are opened read-only, and the writer runs only
//! statements it planned.
//!
//! With a permissions file, the authorizer also enforces the request's role ([`RoleRules`],
//! set for the thread that runs the request by [`as_role`]): the tables and columns a
//! statement reads, the tables it inserts into or deletes from and the columns it updates
//! must be covered by the role's grants. The planners already refuse all of that with
//! PostgREST's errors; this is the second line, so a planner bug cannot reach what a role may
//! not. Because SQLite authorizes a statement only when preparing it, every statement a role
//! runs carries the role's tag in its text ([`dialect::with_statement_tag`]): the
//! prepared-statement cache, keyed by text, never hands one role's statement to another.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dialect::{Grant, RoleGrants, SchemaCache};
use rusqlite::Connection;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

/// Which statements a connection may prepare (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// A read-only connection of the read pool.
    Read,
    /// The writer's read-write connection.
    Write,
}

/// Pragmas a read connection may query (without a value): the schema stamp and sizes.
const READ_PRAGMAS: &[&str] = &["schema_version", "data_version", "page_count", "page_size"];

/// Pragmas the writer may query without lifting its authorizer (none may be set).
const WRITE_PRAGMAS: &[&str] = &["schema_version", "data_version"];

impl Policy {
    /// Pragmas this policy lets a statement query (never set).
    fn pragmas(self) -> &'static [&'static str] {
        match self {
            Policy::Read => READ_PRAGMAS,
            Policy::Write => WRITE_PRAGMAS,
        }
    }

    /// Whether this policy allows `action`.
    pub fn allows(self, action: &AuthAction<'_>) -> bool {
        match action {
            AuthAction::Select
            | AuthAction::Read { .. }
            | AuthAction::Function { .. }
            | AuthAction::Recursive
            | AuthAction::Transaction { .. } => true,
            AuthAction::Insert { .. }
            | AuthAction::Update { .. }
            | AuthAction::Delete { .. }
            | AuthAction::Savepoint { .. } => self == Policy::Write,
            AuthAction::Pragma {
                pragma_name,
                pragma_value: None,
            } => self
                .pragmas()
                .iter()
                .any(|p| pragma_name.eq_ignore_ascii_case(p)),
            // DDL, ATTACH/DETACH, pragmas with values, ANALYZE, REINDEX, virtual table changes.
            _ => false,
        }
    }
}

/// The authorizer installed on one connection.
pub struct Authorizer {
    /// While set, every action is allowed (the server's own statements).
    trusted: Arc<AtomicBool>,
}

impl Authorizer {
    /// Installs `policy` as `conn`'s authorizer.
    pub fn install(conn: &mut Connection, policy: Policy) -> rusqlite::Result<Authorizer> {
        let trusted = Arc::new(AtomicBool::new(false));
        let t = trusted.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            let allowed = t.load(Ordering::Relaxed)
                || (policy.allows(&ctx.action)
                    && ROLE.with(|r| r.borrow().as_ref().is_none_or(|r| r.allows(policy, &ctx))));
            if allowed {
                Authorization::Allow
            } else {
                Authorization::Deny
            }
        }))?;
        Ok(Authorizer { trusted })
    }

    /// Runs `f` with the authorizer lifted: for the server's own statements only (schema
    /// loading), never for anything a request supplies.
    pub fn trusted<T>(&self, f: impl FnOnce() -> T) -> T {
        self.trusted.store(true, Ordering::Relaxed);
        let r = f();
        self.trusted.store(false, Ordering::Relaxed);
        r
    }
}

thread_local! {
    /// The role whose request this thread runs now ([`as_role`]); `None`: unrestricted.
    static ROLE: RefCell<Option<Arc<RoleRules>>> = const { RefCell::new(None) };
}

/// Runs `f` (a request's statements, on this thread) as `rules`' role: the authorizer of
/// every connection enforces the role's grants on what `f` prepares, and its statements are
/// tagged as the role's (see the module docs). `None` runs `f` unrestricted.
pub fn as_role<T>(rules: Option<&Arc<RoleRules>>, f: impl FnOnce() -> T) -> T {
    let Some(rules) = rules else { return f() };
    struct Restore(Option<Arc<RoleRules>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            ROLE.with(|r| *r.borrow_mut() = previous);
        }
    }
    let previous = ROLE.with(|r| r.borrow_mut().replace(rules.clone()));
    let _restore = Restore(previous);
    dialect::with_statement_tag(&rules.tag, f)
}

/// Columns a statement may name: all, or these (columns SQLite reports that the relation does
/// not declare, such as `ROWID`, count as covered whenever the relation is).
#[derive(Debug, Clone)]
enum Columns {
    All,
    Only(HashSet<String>),
}

impl Columns {
    fn of(grant: &Grant) -> Columns {
        grant
            .columns
            .as_ref()
            .map_or(Columns::All, |c| Columns::Only(c.clone()))
    }

    fn add(&mut self, other: &Columns) {
        match (&mut *self, other) {
            (Columns::All, _) => {}
            (_, Columns::All) => *self = Columns::All,
            (Columns::Only(a), Columns::Only(b)) => a.extend(b.iter().cloned()),
        }
    }

    fn with(mut self, extra: impl IntoIterator<Item = String>) -> Columns {
        if let Columns::Only(c) = &mut self {
            c.extend(extra);
        }
        self
    }

    fn covers(&self, column: &str, declared: &HashSet<String>) -> bool {
        match self {
            Columns::All => true,
            Columns::Only(c) => c.contains(column) || !declared.contains(column),
        }
    }
}

/// What a role's statements may touch on one exposed relation.
#[derive(Debug)]
struct RelationRules {
    declared: HashSet<String>,
    /// Read by a read: the read grant's columns and the columns of the role's row filters.
    read: Option<Columns>,
    /// Read by a write (its conditions, checks and representation): any grant's columns and
    /// the row filters' columns.
    write_read: Option<Columns>,
    insert: bool,
    update: Option<Columns>,
    delete: bool,
}

/// One role's grants as SQLite's authorizer checks them, against one version of the schema.
#[derive(Debug)]
pub struct RoleRules {
    /// Put in front of the role's statements (unique to these rules).
    tag: String,
    relations: HashMap<String, RelationRules>,
    /// The database's views and triggers (see [`SchemaCache::is_definer`]).
    definers: HashSet<String>,
    /// Every relation of the database, exposed or not.
    named: HashSet<String>,
    /// The full-text tables that index columns the role reads (a search reads them).
    searchable: HashSet<String>,
    /// Columns the foreign-key checks of the role's writes read, by table: the parent keys of
    /// the tables it inserts into or updates, the referencing columns of the tables it
    /// updates or deletes from. PostgreSQL runs those checks with the owner's rights, not the
    /// caller's; they tell no more than the 23503 error a violation answers. SQLite's
    /// authorizer does not tell a foreign-key lookup from any other read, so on the writer
    /// these columns (keys only) are readable by the role's statements; the planners never
    /// read them on a role's behalf.
    constraint_reads: HashMap<String, HashSet<String>>,
}

/// What the foreign-key checks of `grants`' writes read (see `RoleRules::constraint_reads`).
fn constraint_reads(grants: &RoleGrants, cache: &SchemaCache) -> HashMap<String, HashSet<String>> {
    let mut reads: HashMap<String, HashSet<String>> = HashMap::new();
    let may = |table: &str, f: fn(&dialect::RelationGrants) -> bool| {
        grants.relations.get(table).is_some_and(f)
    };
    for rel in cache.relations() {
        for fk in &rel.foreign_keys {
            // Inserting or updating a referencing row looks its parent key up.
            if may(&rel.name, |g| g.insert.is_some() || g.update.is_some()) {
                let parent_key = if fk.target_columns.is_empty() {
                    cache
                        .relation(&fk.target)
                        .map(|t| t.primary_key.clone())
                        .unwrap_or_default()
                } else {
                    fk.target_columns.clone()
                };
                reads
                    .entry(fk.target.clone())
                    .or_default()
                    .extend(parent_key);
            }
            // Updating or deleting a parent row looks its referencing rows up.
            if may(&fk.target, |g| g.update.is_some() || g.delete.is_some()) {
                reads
                    .entry(rel.name.clone())
                    .or_default()
                    .extend(fk.columns.iter().cloned());
            }
        }
    }
    reads
}

/// Tables that hold the schema: no request reads them.
const SCHEMA_TABLES: &[&str] = &[
    "sqlite_schema",
    "sqlite_master",
    "sqlite_temp_schema",
    "sqlite_temp_master",
];

impl RoleRules {
    /// `grants` against `cache` (every exposed relation of the database).
    pub fn new(grants: &RoleGrants, cache: &SchemaCache) -> RoleRules {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut relations = HashMap::new();
        let mut named: HashSet<String> = cache.hidden().cloned().collect();
        let mut searchable = HashSet::new();
        for rel in cache.relations() {
            named.insert(rel.name.clone());
            let Some(g) = grants.relations.get(&rel.name) else {
                continue;
            };
            if let Some(read) = &g.read {
                searchable.extend(
                    rel.full_text
                        .iter()
                        .filter(|(column, _)| read.allows_column(column))
                        .map(|(_, index)| index.table.clone()),
                );
            }
            let all = [&g.read, &g.insert, &g.update, &g.delete];
            let filtered: Vec<String> = all
                .iter()
                .filter_map(|g| g.as_ref()?.filter.as_ref())
                .flat_map(|f| f.columns())
                .collect();
            let mut write_read: Option<Columns> = None;
            for grant in all.iter().filter_map(|g| g.as_ref()) {
                match &mut write_read {
                    None => write_read = Some(Columns::of(grant)),
                    Some(c) => c.add(&Columns::of(grant)),
                }
            }
            relations.insert(
                rel.name.clone(),
                RelationRules {
                    declared: rel.columns.iter().map(|c| c.name.clone()).collect(),
                    read: g
                        .read
                        .as_ref()
                        .map(|r| Columns::of(r).with(filtered.iter().cloned())),
                    write_read: write_read.map(|c| c.with(filtered.iter().cloned())),
                    insert: g.insert.is_some(),
                    update: g.update.as_ref().map(Columns::of),
                    delete: g.delete.is_some(),
                },
            );
        }
        RoleRules {
            tag: format!("/*role:{id}*/"),
            constraint_reads: constraint_reads(grants, cache),
            relations,
            definers: cache.definers().cloned().collect(),
            named,
            searchable,
        }
    }

    /// Whether the role may do `ctx`'s action (which `policy` already allows).
    fn allows(&self, policy: Policy, ctx: &AuthContext<'_>) -> bool {
        // What a view or trigger does on its own behalf (its definer's, as in PostgreSQL):
        // the view or the write that fires the trigger is what the role must be allowed.
        // SQLite also names a CTE as the accessor of what it reads: that is not trusted
        // (unless it takes a view's or trigger's name; the planners write no CTE).
        if ctx.accessor.is_some_and(|a| self.definers.contains(a)) {
            return true;
        }
        match &ctx.action {
            AuthAction::Read { table_name, .. } if self.searchable.contains(*table_name) => true,
            AuthAction::Read {
                table_name,
                column_name,
            } if policy == Policy::Write
                && self
                    .constraint_reads
                    .get(*table_name)
                    .is_some_and(|c| c.contains(*column_name)) =>
            {
                true
            }
            AuthAction::Read {
                table_name,
                column_name,
            } => self.on(table_name, |r| {
                let cols = if policy == Policy::Write {
                    &r.write_read
                } else {
                    &r.read
                };
                cols.as_ref()
                    .is_some_and(|c| c.covers(column_name, &r.declared))
            }),
            AuthAction::Insert { table_name } => self.on(table_name, |r| r.insert),
            AuthAction::Update {
                table_name,
                column_name,
            } => self.on(table_name, |r| {
                r.update
                    .as_ref()
                    .is_some_and(|c| c.covers(column_name, &r.declared))
            }),
            AuthAction::Delete { table_name } => self.on(table_name, |r| r.delete),
            _ => true,
        }
    }

    /// `check` on `table`'s rules; a relation without a grant is refused, and a table that
    /// is no relation (an index's or a full-text table's own, `sqlite_stat1`) is allowed
    /// unless it holds the schema.
    fn on(&self, table: &str, check: impl FnOnce(&RelationRules) -> bool) -> bool {
        match self.relations.get(table) {
            Some(r) => check(r),
            None if self.named.contains(table) => false,
            None => !SCHEMA_TABLES.iter().any(|s| table.eq_ignore_ascii_case(s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection with a table and the policy installed.
    fn conn(policy: Policy) -> (Connection, Authorizer) {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER); CREATE INDEX tx ON t (x)")
            .unwrap();
        let auth = Authorizer::install(&mut conn, policy).unwrap();
        (conn, auth)
    }

    /// Statements and whether each policy lets them be prepared: (sql, read, write).
    const CASES: &[(&str, bool, bool)] = &[
        ("SELECT x FROM t", true, true),
        ("SELECT abs(-1)", true, true),
        (
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 3) SELECT i FROM c",
            true,
            true,
        ),
        ("BEGIN", true, true),
        ("COMMIT", true, true),
        ("PRAGMA schema_version", true, true),
        ("PRAGMA Data_Version", true, true),
        ("PRAGMA page_count", true, false),
        ("PRAGMA page_size", true, false),
        ("PRAGMA journal_mode", false, false),
        ("PRAGMA schema_version = 1", false, false),
        ("PRAGMA journal_mode = DELETE", false, false),
        ("INSERT INTO t VALUES (1)", false, true),
        ("UPDATE t SET x = 2", false, true),
        ("DELETE FROM t", false, true),
        ("SAVEPOINT s", false, true),
        ("RELEASE s", false, true),
        ("CREATE TABLE u (y)", false, false),
        ("DROP TABLE t", false, false),
        ("CREATE INDEX i ON t (x)", false, false),
        ("ALTER TABLE t ADD COLUMN y", false, false),
        ("ATTACH ':memory:' AS m", false, false),
        ("DETACH m", false, false),
        ("ANALYZE", false, false),
        ("REINDEX tx", false, false),
        // SQLite has no authorizer action for VACUUM: the read pool's connections are opened
        // read-only, and the writer only runs statements it planned itself.
        ("VACUUM", true, true),
    ];

    #[test]
    fn each_policy_prepares_exactly_its_statements() {
        let (reader, _r) = conn(Policy::Read);
        let (writer, _w) = conn(Policy::Write);
        for &(sql, read, write) in CASES {
            for (policy, conn, allowed) in [
                (Policy::Read, &reader, read),
                (Policy::Write, &writer, write),
            ] {
                match conn.prepare(sql) {
                    Ok(_) => assert!(allowed, "{policy:?} prepared {sql}"),
                    Err(e) => {
                        assert!(!allowed, "{policy:?} refused {sql}: {e}");
                        assert_eq!(
                            e.sqlite_error_code(),
                            Some(rusqlite::ErrorCode::AuthorizationForStatementDenied),
                            "{policy:?} {sql}: {e}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn trusted_lifts_the_policy_only_while_it_runs() {
        let (conn, auth) = conn(Policy::Read);
        assert!(conn.prepare("PRAGMA journal_mode").is_err());
        let mode =
            auth.trusted(|| conn.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0)));
        assert_eq!(mode.unwrap(), "memory");
        assert!(conn.prepare("PRAGMA journal_mode").is_err());
        assert!(conn.prepare("INSERT INTO t VALUES (1)").is_err());
    }

    /// The role's rules on a connection: what a view or trigger does on its own behalf is
    /// the definer's; everything else needs the role's grant, column by column (reads on a
    /// read connection: the read grant's columns only).
    #[test]
    fn role_rules_follow_the_grants_and_trust_views_and_triggers() {
        use dialect::{Exposure, RelationGrants};
        let db = |policy| {
            let mut conn = Connection::open_in_memory().unwrap();
            conn.execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, secret TEXT);
                 CREATE TABLE log (x TEXT);
                 CREATE VIEW v AS SELECT id, a, secret FROM t;
                 CREATE TRIGGER tl AFTER INSERT ON t BEGIN INSERT INTO log VALUES (new.a); END;",
            )
            .unwrap();
            let cache = SchemaCache::load(&conn, &Exposure::All).unwrap();
            let auth = Authorizer::install(&mut conn, policy).unwrap();
            (conn, cache, auth)
        };
        let (reader, cache, _r) = db(Policy::Read);
        let (writer, _, _w) = db(Policy::Write);
        let grant = |cols: Option<&[&str]>| {
            Some(Grant {
                columns: cols.map(|c| c.iter().map(|s| s.to_string()).collect()),
                filter: None,
            })
        };
        let mut grants = RoleGrants::default();
        grants.relations.insert(
            "t".into(),
            RelationGrants {
                read: grant(Some(&["id", "a"])),
                insert: grant(Some(&["a"])),
                update: None,
                delete: None,
            },
        );
        grants.relations.insert(
            "v".into(),
            RelationGrants {
                read: grant(Some(&["id", "a"])),
                ..RelationGrants::default()
            },
        );
        let rules = Arc::new(RoleRules::new(&grants, &cache));
        for (conn, sql, allowed) in [
            (&reader, "SELECT id, a FROM t", true),
            (&reader, "SELECT count(*) FROM t", true),
            (&reader, "SELECT rowid FROM t", true),
            // The view reads t.secret on its own behalf; the request names only v's columns.
            (&reader, "SELECT id, a FROM v", true),
            (&reader, "SELECT secret FROM v", false),
            (&reader, "SELECT secret FROM t", false),
            (&reader, "SELECT id FROM t WHERE secret = 'y'", false),
            (&reader, "SELECT x FROM log", false),
            (
                &reader,
                "WITH c AS (SELECT secret FROM t) SELECT * FROM c",
                false,
            ),
            (&reader, "SELECT sql FROM sqlite_schema", false),
            // The trigger writes log on its own behalf.
            (&writer, "INSERT INTO t (a) VALUES ('x')", true),
            (&writer, "UPDATE t SET a = 'z'", false),
            (&writer, "DELETE FROM t", false),
            (&writer, "INSERT INTO log VALUES ('x')", false),
        ] {
            let prepared = as_role(Some(&rules), || conn.prepare(sql).map(|_| ()));
            assert_eq!(prepared.is_ok(), allowed, "{sql}: {prepared:?}");
        }
        // Outside the role, the connection's policy alone decides.
        assert!(reader.prepare("SELECT secret FROM t").is_ok());
    }

    /// The foreign-key checks of a role's writes read the parent key (inserts, updates) and
    /// the referencing columns (updates, deletes of parents) with the owner's rights, as
    /// PostgreSQL runs them; nothing else of those tables becomes readable.
    #[test]
    fn foreign_key_checks_of_a_roles_writes_are_the_owners() {
        use dialect::{Exposure, RelationGrants};
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE owners (id TEXT PRIMARY KEY, secret TEXT);
             CREATE TABLE docs (id INTEGER PRIMARY KEY, owner_id TEXT REFERENCES owners (id), body TEXT);",
        )
        .unwrap();
        let cache = SchemaCache::load(&conn, &Exposure::All).unwrap();
        let _auth = Authorizer::install(&mut conn, Policy::Write).unwrap();
        let all = || Some(Grant::default());
        let rules = |relations: &[(&str, RelationGrants)]| {
            let mut grants = RoleGrants::default();
            for (name, g) in relations {
                grants.relations.insert(name.to_string(), g.clone());
            }
            Arc::new(RoleRules::new(&grants, &cache))
        };
        let writer = rules(&[(
            "docs",
            RelationGrants {
                insert: all(),
                update: all(),
                ..RelationGrants::default()
            },
        )]);
        let owner_admin = rules(&[(
            "owners",
            RelationGrants {
                delete: all(),
                ..RelationGrants::default()
            },
        )]);
        for (rules, sql, allowed) in [
            (
                &writer,
                "INSERT INTO docs (owner_id, body) VALUES ('a', 'x')",
                true,
            ),
            (&writer, "UPDATE docs SET owner_id = 'b'", true),
            (&writer, "SELECT secret FROM owners", false),
            (
                &writer,
                "UPDATE docs SET body = (SELECT secret FROM owners)",
                false,
            ),
            (&owner_admin, "DELETE FROM owners WHERE id = 'a'", true),
            (&owner_admin, "SELECT body FROM docs", false),
        ] {
            let prepared = as_role(Some(rules), || conn.prepare(sql).map(|_| ()));
            assert_eq!(prepared.is_ok(), allowed, "{sql}: {prepared:?}");
        }
    }
}
