//! `sqlite-rest migrate`: SQL migrations compatible with the Go version (golang-migrate's
//! sqlite3 driver), so an existing migrations directory and database keep working.
//!
//! Files are `{version}_{title}.up.sql` / `{version}_{title}.down.sql`. The applied version
//! lives in the table `__sqlite_rest_migrations (version, dirty)`, one row, as golang-migrate
//! keeps it. Each migration runs in its own transaction; the version is marked dirty before and
//! clean after, so a failed migration leaves a dirty version that refuses further runs until
//! fixed by hand. A running server picks the new schema up by itself (it follows
//! `schema_version`); code that migrates in-process calls `SchemaHolder::invalidate()`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

/// The Go version's migrations table.
pub const TABLE: &str = "__sqlite_rest_migrations";

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

/// Reads the migration files of `dir`, by version.
fn load(dir: &Path) -> anyhow::Result<BTreeMap<u64, Migration>> {
    if !dir.is_dir() {
        anyhow::bail!("migrations source dir {} is not a directory", dir.display());
    }
    let mut out: BTreeMap<u64, Migration> = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some((version, rest)) = name.split_once('_') else {
            continue;
        };
        let Ok(version) = version.parse::<u64>() else {
            continue;
        };
        let m = out.entry(version).or_default();
        if rest.ends_with(".up.sql") {
            m.up = Some(path);
        } else if rest.ends_with(".down.sql") {
            m.down = Some(path);
        }
    }
    Ok(out)
}

fn ensure_table(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{TABLE}\" (version uint64, dirty bool);
         CREATE UNIQUE INDEX IF NOT EXISTS version_unique ON \"{TABLE}\" (version);"
    ))
}

/// The applied version and whether it is dirty; `None` when nothing is applied.
pub fn current(conn: &Connection) -> rusqlite::Result<Option<(u64, bool)>> {
    ensure_table(conn)?;
    conn.query_row(
        &format!("SELECT version, dirty FROM \"{TABLE}\" LIMIT 1"),
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
    )
    .optional()
}

fn set_version(conn: &Connection, version: Option<u64>, dirty: bool) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    tx.execute(&format!("DELETE FROM \"{TABLE}\""), [])?;
    if let Some(v) = version {
        tx.execute(
            &format!("INSERT INTO \"{TABLE}\" (version, dirty) VALUES (?1, ?2)"),
            params![v as i64, dirty],
        )?;
    }
    tx.commit()
}

fn apply(
    conn: &Connection,
    file: Option<&PathBuf>,
    mark: u64,
    after: Option<u64>,
) -> anyhow::Result<()> {
    set_version(conn, Some(mark), true)?;
    if let Some(path) = file {
        let sql = std::fs::read_to_string(path)?;
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(&sql)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        tx.commit()?;
    }
    set_version(conn, after, false)?;
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
    let current = current(conn)?;
    if let Some((v, true)) = current {
        anyhow::bail!("Dirty database version {v}. Fix and force version.");
    }
    let current = current.map(|(v, _)| v);
    let limit = usize::try_from(step).ok().filter(|s| *s > 0);
    let mut done = Vec::new();
    match direction {
        Direction::Up => {
            let pending: Vec<u64> = migrations
                .keys()
                .copied()
                .filter(|v| current.is_none_or(|c| *v > c))
                .collect();
            for v in pending.iter().take(limit.unwrap_or(usize::MAX)) {
                apply(conn, migrations[v].up.as_ref(), *v, Some(*v))?;
                tracing::info!(version = v, "applied migration");
                done.push(*v);
            }
        }
        Direction::Down => {
            let applied: Vec<u64> = migrations
                .keys()
                .copied()
                .filter(|v| current.is_some_and(|c| *v <= c))
                .rev()
                .collect();
            for (i, v) in applied.iter().enumerate().take(limit.unwrap_or(usize::MAX)) {
                let previous = applied.get(i + 1).copied();
                apply(conn, migrations[v].down.as_ref(), *v, previous)?;
                tracing::info!(version = v, "reverted migration");
                done.push(*v);
            }
        }
    }
    if let Some(limit) = limit
        && done.len() < limit
    {
        anyhow::bail!(
            "asked for {limit} migration step(s), but only {} could be applied",
            done.len()
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
    let conn = Connection::open_with_flags(crate::db::open::sqlite_filename(&args.db_dsn), flags)?;
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
        assert_eq!(run(&c, dir.path(), Direction::Up, 1).unwrap(), vec![2]);
        assert!(run(&c, dir.path(), Direction::Up, 1).is_err());
        assert_eq!(run(&c, dir.path(), Direction::Down, 1).unwrap(), vec![2]);
        assert_eq!(current(&c).unwrap(), Some((1, false)));
        assert!(run(&c, dir.path(), Direction::Down, 2).is_err());
        assert_eq!(current(&c).unwrap(), None);
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
        assert!(run(&c, dir.path(), Direction::Up, 0).is_err());
        assert_eq!(tables(&c), ["ok"]);
        assert_eq!(current(&c).unwrap(), Some((2, true)));
        let e = run(&c, dir.path(), Direction::Up, 0).unwrap_err();
        assert!(e.to_string().contains("Dirty database version 2"), "{e}");
    }

    #[test]
    fn empty_directory_is_fine() {
        let (dir, c) = setup(&[]);
        assert!(run(&c, dir.path(), Direction::Up, 0).unwrap().is_empty());
        assert!(run(&c, dir.path(), Direction::Down, 0).unwrap().is_empty());
    }
}
