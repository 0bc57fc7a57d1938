//! `sqlite-rest migrate`: SQL migrations compatible with the Go version, which ran
//! golang-migrate with its sqlite3 driver — so an existing migrations directory, and a
//! database the Go version migrated, keep working.
//!
//! golang-migrate's rules, as implemented here:
//! - Files are `{version}_{title}.{up|down}.{ext}` (`1_create_books.up.sql`); other files
//!   are ignored; two files for the same version and direction are an error.
//! - The applied version lives in `__sqlite_rest_migrations (version uint64, dirty bool)`
//!   (unique index `version_unique`), one row; no row means nothing is applied (version -1).
//! - Every migration runs in its own transaction. Before it, the version the migration leads
//!   to — the migration's own version going up, the previous one going down (-1 below the
//!   first) — is written as dirty; after it, the same version clean. A failed migration
//!   rolls back and leaves that dirty row, and every later run refuses with `Dirty database
//!   version N. Fix and force version.` until someone fixes the database and the row.
//! - The applied version must have a file in the directory (`no migration found for
//!   version N`).
//! - `--step N` applies (up) or reverts (down) N migrations; having fewer to do than N is an
//!   error after doing the ones there are; `0` means all, and nothing to do is then fine.
//!
//! A running server picks the new schema up by itself (reads and the writer follow
//! `schema_version`); code that migrates in-process calls `SchemaHolder::invalidate()`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

/// The Go version's migrations table.
pub const TABLE: &str = "__sqlite_rest_migrations";

/// golang-migrate's version for "nothing applied".
pub const NIL_VERSION: i64 = -1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

#[derive(Debug, Default)]
struct Migration {
    up: Option<PathBuf>,
    down: Option<PathBuf>,
}

/// `{version}_{title}.{up|down}.{ext}` → (version, up?), as golang-migrate parses names.
fn parse_name(name: &str) -> Option<(u64, bool)> {
    let (version, rest) = name.split_once('_')?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let version = version.parse().ok()?;
    // The direction is the last `.up.` / `.down.` (golang-migrate's greedy title).
    let up = rest.rfind(".up.");
    let down = rest.rfind(".down.");
    let is_up = match (up, down) {
        (Some(u), Some(d)) => u > d,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        (None, None) => return None,
    };
    Some((version, is_up))
}

/// Reads the migration files of `dir`, by version.
fn load(dir: &Path) -> anyhow::Result<BTreeMap<u64, Migration>> {
    if !dir.is_dir() {
        anyhow::bail!("migrations source dir {} is not a directory", dir.display());
    }
    let mut out: BTreeMap<u64, Migration> = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.is_file() {
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some((version, is_up)) = parse_name(name) else {
            continue;
        };
        let m = out.entry(version).or_default();
        let slot = if is_up { &mut m.up } else { &mut m.down };
        if slot.is_some() {
            anyhow::bail!("duplicate migration file: {name}");
        }
        *slot = Some(path);
    }
    Ok(out)
}

fn ensure_table(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{TABLE}\" (version uint64,dirty bool);
         CREATE UNIQUE INDEX IF NOT EXISTS version_unique ON \"{TABLE}\" (version);"
    ))
}

/// The applied version (`-1`: none) and whether it is dirty; `None` when there is no row.
pub fn current(conn: &Connection) -> rusqlite::Result<Option<(i64, bool)>> {
    ensure_table(conn)?;
    conn.query_row(
        &format!("SELECT version, dirty FROM \"{TABLE}\" LIMIT 1"),
        [],
        |r| Ok((r.get::<_, i64>(0)?, r.get(1)?)),
    )
    .optional()
}

/// golang-migrate's SetVersion: one row, or none for a clean nil version.
fn set_version(conn: &Connection, version: i64, dirty: bool) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    tx.execute(&format!("DELETE FROM \"{TABLE}\""), [])?;
    if version >= 0 || dirty {
        tx.execute(
            &format!("INSERT INTO \"{TABLE}\" (version, dirty) VALUES (?1, ?2)"),
            params![version, dirty],
        )?;
    }
    tx.commit()
}

/// Runs one migration file (if any) leading to `target`, dirty while it runs.
fn apply(conn: &Connection, file: Option<&PathBuf>, target: i64) -> anyhow::Result<()> {
    set_version(conn, target, true)?;
    if let Some(path) = file {
        let sql = std::fs::read_to_string(path)?;
        let tx = conn.unchecked_transaction()?;
        if let Err(e) = tx.execute_batch(&sql) {
            drop(tx);
            anyhow::bail!(
                "migration {} failed: {e}. It was rolled back; the database is now marked dirty at version {target} in {TABLE}: fix the database, then correct that row (version, dirty = 0) before migrating again",
                path.display()
            );
        }
        tx.commit()?;
    }
    set_version(conn, target, false)?;
    Ok(())
}

/// Applies migrations from `dir`: every pending one (`step <= 0`) or `step` of them. Returns
/// the versions applied (up) or reverted (down), in order.
pub fn run(
    conn: &Connection,
    dir: &Path,
    direction: Direction,
    step: i64,
) -> anyhow::Result<Vec<u64>> {
    let migrations = load(dir)?;
    let (current, dirty) = current(conn)?.unwrap_or((NIL_VERSION, false));
    if dirty {
        anyhow::bail!("Dirty database version {current}. Fix and force version.");
    }
    let applied_version = u64::try_from(current).ok();
    if let Some(v) = applied_version
        && !migrations.contains_key(&v)
    {
        anyhow::bail!(
            "no migration found for version {v} (the database's version) in {}",
            dir.display()
        );
    }
    let limit = usize::try_from(step).ok().filter(|s| *s > 0);
    let mut done = Vec::new();
    match direction {
        Direction::Up => {
            let pending: Vec<u64> = migrations
                .keys()
                .copied()
                .filter(|v| applied_version.is_none_or(|c| *v > c))
                .collect();
            for v in pending.iter().take(limit.unwrap_or(usize::MAX)) {
                apply(conn, migrations[v].up.as_ref(), *v as i64)?;
                tracing::info!(version = v, "applied migration");
                done.push(*v);
            }
        }
        Direction::Down => {
            let applied: Vec<u64> = migrations
                .keys()
                .copied()
                .filter(|v| applied_version.is_some_and(|c| *v <= c))
                .rev()
                .collect();
            for (i, v) in applied.iter().enumerate().take(limit.unwrap_or(usize::MAX)) {
                let target = applied.get(i + 1).map_or(NIL_VERSION, |p| *p as i64);
                apply(conn, migrations[v].down.as_ref(), target)?;
                tracing::info!(version = v, "reverted migration");
                done.push(*v);
            }
        }
    }
    if let Some(limit) = limit
        && done.len() < limit
    {
        anyhow::bail!(
            "asked for {limit} migration step(s), but only {} could be {}",
            done.len(),
            if direction == Direction::Up {
                "applied"
            } else {
                "reverted"
            }
        );
    }
    if done.is_empty() {
        tracing::info!("no pending migrations");
    }
    Ok(done)
}

/// `sqlite-rest migrate`: opens the database as the Go version did (a plain read-write
/// connection, so migrations written for go-sqlite3 run unchanged) and applies `args`.
pub fn run_command(args: &crate::cli::MigrateArgs) -> anyhow::Result<()> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
        | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
        | rusqlite::OpenFlags::SQLITE_OPEN_URI;
    let conn =
        Connection::open_with_flags(crate::database::open::sqlite_filename(&args.db_dsn), flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let direction = if args.direction == "down" {
        Direction::Down
    } else {
        Direction::Up
    };
    let done = run(&conn, &args.migrations_dir, direction, args.step)?;
    tracing::info!(direction = %args.direction, versions = ?done, "applied operation");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(files: &[(&str, &str)]) -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        for (name, sql) in files {
            std::fs::write(dir.path().join(name), sql).unwrap();
        }
        let conn = Connection::open(dir.path().join("db.sqlite")).unwrap();
        (dir, conn)
    }

    fn tables(conn: &Connection) -> Vec<String> {
        conn.prepare("SELECT name FROM sqlite_schema WHERE type='table' AND name NOT LIKE '\\_\\_%' ESCAPE '\\' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    const FILES: &[(&str, &str)] = &[
        ("1_test.up.sql", "create table test (id int);"),
        ("1_test.down.sql", "drop table test;"),
        ("2_test2.up.sql", "create table test2 (id int);"),
        ("2_test2.down.sql", "drop table test2;"),
    ];

    #[test]
    fn names_follow_golang_migrate() {
        assert_eq!(parse_name("1_create_books.up.sql"), Some((1, true)));
        assert_eq!(parse_name("20240101_x.down.sql"), Some((20240101, false)));
        assert_eq!(parse_name("3_.up.txt"), Some((3, true)));
        assert_eq!(parse_name("4_a.down.b.up.sql"), Some((4, true)));
        assert_eq!(parse_name("1_create_books_table.drop.sql"), None);
        assert_eq!(parse_name("x_y.up.sql"), None);
        assert_eq!(parse_name("README.md"), None);
    }

    #[test]
    fn up_and_down_all() {
        let (dir, c) = setup(FILES);
        assert_eq!(run(&c, dir.path(), Direction::Up, 0).unwrap(), vec![1, 2]);
        assert_eq!(tables(&c), ["test", "test2"]);
        assert_eq!(current(&c).unwrap(), Some((2, false)));
        assert!(run(&c, dir.path(), Direction::Up, 0).unwrap().is_empty());
        assert_eq!(run(&c, dir.path(), Direction::Down, 0).unwrap(), vec![2, 1]);
        assert!(tables(&c).is_empty());
        assert_eq!(current(&c).unwrap(), None);
        assert!(run(&c, dir.path(), Direction::Down, 0).unwrap().is_empty());
    }

    #[test]
    fn steps() {
        let (dir, c) = setup(FILES);
        assert_eq!(run(&c, dir.path(), Direction::Up, 1).unwrap(), vec![1]);
        assert_eq!(current(&c).unwrap(), Some((1, false)));
        assert_eq!(run(&c, dir.path(), Direction::Up, 1).unwrap(), vec![2]);
        assert!(run(&c, dir.path(), Direction::Up, 1).is_err());
        assert_eq!(run(&c, dir.path(), Direction::Down, 1).unwrap(), vec![2]);
        assert_eq!(current(&c).unwrap(), Some((1, false)));
        // Two steps asked, one possible: it is done, then reported.
        assert!(run(&c, dir.path(), Direction::Down, 2).is_err());
        assert_eq!(current(&c).unwrap(), None);
        assert!(run(&c, dir.path(), Direction::Down, 1).is_err());
        assert_eq!(
            run(&c, dir.path(), Direction::Up, 5)
                .unwrap_err()
                .to_string(),
            "asked for 5 migration step(s), but only 2 could be applied"
        );
        assert_eq!(tables(&c), ["test", "test2"]);
    }

    #[test]
    fn a_failed_migration_leaves_a_dirty_version() {
        let (dir, c) = setup(&[
            ("1_ok.up.sql", "create table ok (id int);"),
            (
                "2_bad.up.sql",
                "create table bad (id int); this is not sql;",
            ),
        ]);
        let e = run(&c, dir.path(), Direction::Up, 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("2_bad.up.sql") && e.contains("dirty at version 2"),
            "{e}"
        );
        assert_eq!(tables(&c), ["ok"], "the failed migration was rolled back");
        assert_eq!(current(&c).unwrap(), Some((2, true)));
        for d in [Direction::Up, Direction::Down] {
            let e = run(&c, dir.path(), d, 0).unwrap_err();
            assert_eq!(
                e.to_string(),
                "Dirty database version 2. Fix and force version."
            );
        }
    }

    #[test]
    fn a_failed_down_migration_marks_the_version_it_leads_to() {
        let (dir, c) = setup(&[
            ("1_a.up.sql", "create table a (id int);"),
            ("1_a.down.sql", "drop table nope;"),
            ("2_b.up.sql", "create table b (id int);"),
            ("2_b.down.sql", "drop table b; drop table nope;"),
        ]);
        run(&c, dir.path(), Direction::Up, 0).unwrap();
        assert!(run(&c, dir.path(), Direction::Down, 1).is_err());
        assert_eq!(
            current(&c).unwrap(),
            Some((1, true)),
            "golang-migrate marks the target"
        );
        assert_eq!(tables(&c), ["a", "b"]);
        // Below the first migration the target is -1 (golang-migrate keeps that dirty row).
        set_version(&c, 1, false).unwrap();
        c.execute_batch("DROP TABLE b").unwrap();
        assert!(run(&c, dir.path(), Direction::Down, 0).is_err());
        assert_eq!(current(&c).unwrap(), Some((-1, true)));
        let e = run(&c, dir.path(), Direction::Up, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Dirty database version -1. Fix and force version."
        );
    }

    #[test]
    fn continues_a_database_the_go_version_migrated() {
        let (dir, c) = setup(&[
            (
                "1_books.up.sql",
                "create table books (id integer primary key, title text);",
            ),
            ("1_books.down.sql", "drop table books;"),
            (
                "2_authors.up.sql",
                "create table authors (id integer primary key);",
            ),
            ("2_authors.down.sql", "drop table authors;"),
            ("3_isbn.up.sql", "alter table books add column isbn text;"),
            ("3_isbn.down.sql", "alter table books drop column isbn;"),
        ]);
        // Exactly what golang-migrate's sqlite3 driver (through go-sqlite3) leaves after
        // applying 1 and 2: its DDL, and bools stored as integers.
        c.execute_batch(
            "CREATE TABLE IF NOT EXISTS __sqlite_rest_migrations (version uint64,dirty bool);
             CREATE UNIQUE INDEX IF NOT EXISTS version_unique ON __sqlite_rest_migrations (version);
             create table books (id integer primary key, title text);
             create table authors (id integer primary key);
             DELETE FROM __sqlite_rest_migrations;
             INSERT INTO __sqlite_rest_migrations (version, dirty) VALUES (2, 0);",
        )
        .unwrap();
        assert_eq!(run(&c, dir.path(), Direction::Up, 0).unwrap(), vec![3]);
        assert_eq!(current(&c).unwrap(), Some((3, false)));
        assert_eq!(run(&c, dir.path(), Direction::Down, 2).unwrap(), vec![3, 2]);
        assert_eq!(tables(&c), ["books"]);
        // A dirty row written by the Go version is refused the same way.
        c.execute_batch("UPDATE __sqlite_rest_migrations SET version = 3, dirty = 1")
            .unwrap();
        let e = run(&c, dir.path(), Direction::Up, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Dirty database version 3. Fix and force version."
        );
    }

    #[test]
    fn the_applied_version_must_have_a_file() {
        let (dir, c) = setup(FILES);
        ensure_table(&c).unwrap();
        set_version(&c, 7, false).unwrap();
        let e = run(&c, dir.path(), Direction::Up, 0)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("no migration found for version 7"), "{e}");
    }

    #[test]
    fn duplicates_and_empty_directories() {
        let (dir, c) = setup(&[("1_a.up.sql", "select 1;"), ("1_b.up.sql", "select 2;")]);
        let e = run(&c, dir.path(), Direction::Up, 0)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("duplicate migration file"), "{e}");
        let (dir, c) = setup(&[]);
        assert!(run(&c, dir.path(), Direction::Up, 0).unwrap().is_empty());
        assert!(run(&c, dir.path(), Direction::Down, 0).unwrap().is_empty());
        assert!(run(&c, &dir.path().join("missing"), Direction::Up, 0).is_err());
    }
}
