//! Opening a SQLite connection with the server's hardening, in one function with options.
//!
//! Every connection gets: URI file names (`file:` DSNs), defensive mode, untrusted schema, no
//! ATTACH (attached-database limit 0), bounded SQL length and expression depth, a busy
//! timeout, the dialect's SQL functions and a prepared statement cache. Read connections are
//! opened read-only and `query_only`, with mmap and a larger page cache. The writer's
//! durability (`PRAGMA synchronous`) is an option too, and so is who checkpoints: a
//! read-write connection is set up for the [`Checkpointer`] start-up chose (the replication
//! crate's `checkpoint` module decides what that means).

use std::time::Duration;

use replication::Checkpointer;
use rusqlite::config::DbConfig;
use rusqlite::limits::Limit;
use rusqlite::{Connection, OpenFlags};

/// `PRAGMA synchronous`: when SQLite waits for the disk. In WAL mode, FULL syncs the WAL on
/// every commit (a committed write survives a power loss); NORMAL syncs only at checkpoints
/// (the last commits may be lost on power loss, never corrupted); OFF never syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    Off,
    Normal,
    Full,
    Extra,
}

impl Synchronous {
    pub fn as_str(self) -> &'static str {
        match self {
            Synchronous::Off => "OFF",
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
            Synchronous::Extra => "EXTRA",
        }
    }

    /// The value go-sqlite3's DSN parameter `_sync` (alias `_synchronous`) gives, if any.
    pub fn from_dsn(dsn: &str) -> Option<Synchronous> {
        let (_, query) = dsn.split_once('?')?;
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            matches!(k, "_sync" | "_synchronous")
                .then(|| v.parse().ok())
                .flatten()
        })
    }
}

impl std::str::FromStr for Synchronous {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "OFF" | "0" => Ok(Synchronous::Off),
            "NORMAL" | "1" => Ok(Synchronous::Normal),
            "FULL" | "2" => Ok(Synchronous::Full),
            "EXTRA" | "3" => Ok(Synchronous::Extra),
            _ => Err(format!(
                "unknown synchronous mode '{s}' (expected off, normal, full or extra)"
            )),
        }
    }
}

/// How to open a connection.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Open read-only and set `query_only`.
    pub read_only: bool,
    pub busy_timeout: Duration,
    /// Who checkpoints (read-write connections only): SQLite's automatic checkpoint, or the
    /// replicator alone.
    pub checkpointer: Checkpointer,
    /// Capacity of the prepared-statement cache (keyed by SQL text).
    pub statement_cache: usize,
    /// `PRAGMA mmap_size` in bytes: reads through a memory map skip a `pread` and a copy per
    /// page; 0 disables it.
    pub mmap_size: i64,
    /// `PRAGMA cache_size` in KiB (the page cache of this connection).
    pub cache_kib: u32,
    /// `PRAGMA synchronous` (the writer's durability); `None` keeps SQLite's default.
    pub synchronous: Option<Synchronous>,
}

impl OpenOptions {
    pub fn reader() -> Self {
        OpenOptions {
            read_only: true,
            busy_timeout: Duration::from_secs(5),
            checkpointer: Checkpointer::default(),
            statement_cache: 256,
            mmap_size: 1 << 30,
            cache_kib: 8 * 1024,
            synchronous: None,
        }
    }

    pub fn writer() -> Self {
        OpenOptions {
            read_only: false,
            ..OpenOptions::reader()
        }
    }
}

/// The file name SQLite should open for a Go-style DSN: a `file:` URI is used as it is
/// (SQLite ignores URI parameters it does not know, such as go-sqlite3's `_busy_timeout`); a
/// plain path loses its `?…` part, as go-sqlite3 strips it.
pub fn sqlite_filename(dsn: &str) -> &str {
    if dsn.starts_with("file:") {
        dsn
    } else {
        dsn.split_once('?').map_or(dsn, |(path, _)| path)
    }
}

/// Opens `dsn` (a path or a `file:` URI) with `opts`.
pub fn open(dsn: &str, opts: &OpenOptions) -> rusqlite::Result<Connection> {
    let dsn = sqlite_filename(dsn);
    let mut flags = OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    flags |= if opts.read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    };
    let conn = Connection::open_with_flags(dsn, flags)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    // Double-quoted string literals stay allowed: schemas written for go-sqlite3 (views,
    // defaults) use them. Safe for our SQL: every identifier it contains is resolved first and
    // written qualified (`"t0"."col"`), and a qualified name never falls back to a string.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DML, true)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DDL, true)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, 1_000_000)?;
    conn.set_limit(Limit::SQLITE_LIMIT_EXPR_DEPTH, 500)?;
    conn.set_limit(Limit::SQLITE_LIMIT_COMPOUND_SELECT, 16)?;
    conn.busy_timeout(opts.busy_timeout)?;
    if opts.read_only {
        conn.pragma_update(None, "query_only", true)?;
    }
    conn.pragma_update(None, "mmap_size", opts.mmap_size)?;
    conn.pragma_update(None, "cache_size", -i64::from(opts.cache_kib))?;
    if !opts.read_only {
        opts.checkpointer.configure(&conn)?;
    }
    if let Some(s) = opts.synchronous {
        conn.pragma_update(None, "synchronous", s.as_str())?;
    }
    conn.set_prepared_statement_cache_capacity(opts.statement_cache);
    dialect::register_functions(&conn)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_double_quoted_strings_in_the_schema_still_work() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let path = path.to_str().unwrap();
        Connection::open(path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE t (x TEXT DEFAULT \"d\"); INSERT INTO t DEFAULT VALUES;
                 CREATE VIEW v AS SELECT \"hello\" AS g, x FROM t;",
            )
            .unwrap();
        let r = open(path, &OpenOptions::reader()).unwrap();
        let row: (String, String) = r
            .query_row("SELECT g, x FROM v", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!(row, ("hello".into(), "d".into()));
    }

    #[test]
    fn synchronous_modes() {
        assert_eq!("full".parse::<Synchronous>().unwrap(), Synchronous::Full);
        assert_eq!("1".parse::<Synchronous>().unwrap(), Synchronous::Normal);
        assert!("fast".parse::<Synchronous>().is_err());
        assert_eq!(
            Synchronous::from_dsn("x.db?_sync=NORMAL"),
            Some(Synchronous::Normal)
        );
        assert_eq!(
            Synchronous::from_dsn("file:x.db?cache=shared&_synchronous=off"),
            Some(Synchronous::Off)
        );
        assert_eq!(Synchronous::from_dsn("x.db"), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let c = open(
            path.to_str().unwrap(),
            &OpenOptions {
                synchronous: Some(Synchronous::Full),
                ..OpenOptions::writer()
            },
        )
        .unwrap();
        let mode: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, 2);
    }

    #[test]
    fn go_style_dsns() {
        assert_eq!(sqlite_filename("data.db"), "data.db");
        assert_eq!(sqlite_filename("data.db?_foreign_keys=1"), "data.db");
        assert_eq!(
            sqlite_filename("file:data.db?cache=shared&_busy_timeout=5000"),
            "file:data.db?cache=shared&_busy_timeout=5000"
        );
    }

    #[test]
    fn readers_cannot_write_or_attach() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let path = path.to_str().unwrap();
        let w = open(path, &OpenOptions::writer()).unwrap();
        w.execute_batch("CREATE TABLE t (x)").unwrap();
        let r = open(&format!("file:{path}?mode=ro"), &OpenOptions::reader()).unwrap();
        assert!(r.execute("INSERT INTO t VALUES (1)", []).is_err());
        assert!(w.execute("ATTACH ':memory:' AS x", []).is_err());
        // Qualified names (all the SQL we generate) never fall back to string literals.
        assert!(
            r.prepare("SELECT \"t0\".\"nope\" FROM t AS \"t0\"")
                .is_err()
        );
    }
}
