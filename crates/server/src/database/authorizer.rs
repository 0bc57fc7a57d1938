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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
            if t.load(Ordering::Relaxed) || policy.allows(&ctx.action) {
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
}
