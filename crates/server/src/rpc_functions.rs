//! The RPC functions of `--rpc-dir`: `DIR/<name>.sql` is `/rpc/<name>` (the file format is
//! the dialect's, see `dialect::RpcFunction`).
//!
//! Loaded at start-up, where a broken file refuses the start naming the file and the reason;
//! reloaded on SIGUSR1 (with the schema cache), when the directory changes (its `.sql`
//! files' names, sizes and modification times, polled every `watch::POLL`: one `readdir` and a
//! `stat` per file, robust on every file system, where change notifications are not) and
//! when the database's schema changes (its `schema_version`, read at the same poll: a
//! migration can break a function or change its result columns). Reloads never overlap. A
//! reload that fails keeps the previous set and logs why. Files are checked on a connection
//! of their own with the writer's authorizer, so a statement the writer could not prepare
//! (DDL, ATTACH, a pragma with a value) is refused at load rather than at call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use dialect::{RpcFunction, RpcFunctions};
use parking_lot::Mutex;

use std::collections::HashMap;

use dialect::{Access, ApiError, ErrorCode, Privilege};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

use crate::database::authorizer::Policy;
use crate::database::{OpenOptions, open};

/// The largest function file read (a statement, not a data file).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// What the directory looked like: each `.sql` file's name, size and modification time.
/// The function files (name, size, modification time) and the database's schema version: a
/// schema change can break a function or change its result columns, so it reloads them too.
type Fingerprint = (Vec<(String, u64, Option<SystemTime>)>, Option<i64>);

/// What one function's statement touches, as SQLite's authorizer reported it while the
/// statement was prepared: (relation, column, the view it reads through) read, and
/// (relation, privilege) written. A role may call the function only if its grants cover all
/// of it without a row filter (see [`Touches::allowed`]): a function's SQL is not planned, so
/// no row filter can be added to it.
#[derive(Debug, Default, Clone)]
pub struct Touches {
    reads: Vec<(String, String, Option<String>)>,
    writes: Vec<(String, Privilege)>,
    /// Not recorded for this very statement (a reload is replacing it): nobody may run it.
    unknown: bool,
}

impl Touches {
    /// Whether `access`'s role may run a statement that touches this; the relation that
    /// refuses it otherwise.
    pub fn allowed(
        &self,
        access: &Access<'_>,
        cache: &dialect::SchemaCache,
    ) -> Result<(), ApiError> {
        // A relation the role does not see answers as a missing one elsewhere: the refusal
        // does not name it.
        let refuse = |name: &str| match cache.relation(name).filter(|_| access.grants.visible(name))
        {
            Some(rel) => access.denied(rel),
            None => ApiError::new(
                if access.anonymous { 401 } else { 403 },
                ErrorCode::InsufficientPrivilege,
                "permission denied for function",
            ),
        };
        if self.unknown {
            return Err(refuse(""));
        }
        for (table, column, through) in &self.reads {
            // Read through a view: the view's grant decides (every column of it).
            let (rel, column) = match through {
                Some(v) if cache.relation(v).is_some() => (v.as_str(), None),
                _ => (table.as_str(), Some(column.as_str())),
            };
            if cache.relation(rel).is_none() {
                continue; // not a relation of the API (json_each, sqlite_schema, …)
            }
            match access.get(rel, Privilege::Read) {
                Some(g)
                    if g.filter.is_none()
                        && column.is_none_or(|c| g.allows_column(c))
                        && (column.is_some() || g.columns.is_none()) => {}
                _ => return Err(refuse(rel)),
            }
        }
        for (table, p) in &self.writes {
            if cache.relation(table).is_none() {
                continue;
            }
            match access.get(table, *p) {
                Some(g) if g.filter.is_none() && g.columns.is_none() => {}
                _ => return Err(refuse(table)),
            }
        }
        Ok(())
    }
}

/// What each function touches, by name, with the function it was recorded for.
type Recorded = HashMap<String, (RpcFunction, Touches)>;

/// What `f` touches by `recorded`: a function is checked only against what was recorded for
/// that very function; anything else (a function newer or older than the record) refuses
/// every role until both agree.
fn touches_in(recorded: &Recorded, f: &RpcFunction) -> Touches {
    match recorded.get(&f.name) {
        Some((seen, t)) if seen == f => t.clone(),
        _ => Touches {
            unknown: true,
            ..Touches::default()
        },
    }
}

/// The functions and what each touches, as taken at one moment: what a document listing the
/// functions a role may call depends on (two snapshots of the same loads are [`same`]).
///
/// [`same`]: RpcSnapshot::same
#[derive(Clone)]
pub struct RpcSnapshot {
    pub functions: Arc<RpcFunctions>,
    recorded: Arc<Recorded>,
}

impl RpcSnapshot {
    /// What `f` touches (see [`RpcRegistry::touches`]).
    pub fn touches(&self, f: &RpcFunction) -> Touches {
        touches_in(&self.recorded, f)
    }

    /// Whether both were taken from the same loads.
    pub fn same(&self, other: &RpcSnapshot) -> bool {
        Arc::ptr_eq(&self.functions, &other.functions)
            && Arc::ptr_eq(&self.recorded, &other.recorded)
    }
}

/// The current set of functions and where it comes from.
pub struct RpcRegistry {
    dir: Option<PathBuf>,
    dsn: String,
    current: ArcSwap<RpcFunctions>,
    /// What each function touches, by name, with the function it was recorded for.
    touches: ArcSwap<Recorded>,
    /// The directory as of the last load attempt (a failed one too: it is not retried until
    /// something changes or SIGUSR1 asks).
    seen: Mutex<Option<Fingerprint>>,
    /// Held for a whole reload, so reloads never overlap.
    reloading: Mutex<()>,
    /// A read connection kept to read the schema version at each poll.
    probe: Mutex<Option<rusqlite::Connection>>,
}

impl RpcRegistry {
    /// Loads the functions of `dir` (none without one), checked against the database `dsn`.
    pub fn open(dir: Option<PathBuf>, dsn: &str) -> anyhow::Result<Self> {
        let registry = RpcRegistry {
            dir,
            dsn: dsn.to_string(),
            current: ArcSwap::from_pointee(RpcFunctions::default()),
            touches: ArcSwap::from_pointee(HashMap::new()),
            seen: Mutex::new(None),
            reloading: Mutex::new(()),
            probe: Mutex::new(None),
        };
        if registry.dir.is_some() {
            let n = registry.reload()?;
            tracing::info!(functions = n, dir = %registry.dir_display(), "RPC functions loaded");
        }
        Ok(registry)
    }

    fn dir_display(&self) -> String {
        self.dir
            .as_deref()
            .map(|d| d.display().to_string())
            .unwrap_or_default()
    }

    /// The functions now.
    pub fn current(&self) -> Arc<RpcFunctions> {
        self.current.load_full()
    }

    /// What `f` touches. The functions and their touches are replaced one after the other
    /// by a reload, so a function is checked only against what was recorded for that very
    /// function: anything else (a function newer or older than the record) refuses every role
    /// until both agree.
    pub fn touches(&self, f: &RpcFunction) -> Touches {
        touches_in(&self.touches.load(), f)
    }

    /// The functions and their touches now.
    pub fn snapshot(&self) -> RpcSnapshot {
        RpcSnapshot {
            functions: self.current(),
            recorded: self.touches.load_full(),
        }
    }

    /// Loads the directory again; on success the new set replaces the old one, on failure
    /// the old one stays. Answers how many functions are loaded.
    pub fn reload(&self) -> anyhow::Result<usize> {
        let Some(dir) = &self.dir else {
            return Ok(0);
        };
        // One reload at a time (SIGUSR1 and the poller): an older load never replaces a newer
        // one. The fingerprint first: a change racing with the load is seen at the next poll.
        let _one = self.reloading.lock();
        let print = self.fingerprint(dir);
        *self.seen.lock() = print;
        let (functions, touches) = load(dir, &self.dsn)?;
        let n = functions.len();
        self.current.store(Arc::new(functions));
        self.touches.store(Arc::new(touches));
        Ok(n)
    }

    /// [`RpcRegistry::reload`], logging the outcome (SIGUSR1 and directory changes).
    pub fn reload_logged(&self, why: &str) {
        if self.dir.is_none() {
            return;
        }
        match self.reload() {
            Ok(n) => tracing::info!(functions = n, why, "RPC functions reloaded"),
            Err(e) => tracing::error!(
                error = %format!("{e:#}"),
                why,
                "RPC functions not reloaded; the previous set stays"
            ),
        }
    }
}

impl crate::watch::Watched for RpcRegistry {
    fn what(&self) -> &'static str {
        "RPC functions"
    }

    fn reload_if_changed(&self) {
        let Some(dir) = &self.dir else {
            return;
        };
        let now = self.fingerprint(dir);
        if *self.seen.lock() != now {
            self.reload_logged("the directory or the schema changed");
        }
    }
}

impl RpcRegistry {
    /// The directory's files and the schema version now (`None` when the directory cannot be
    /// read).
    fn fingerprint(&self, dir: &Path) -> Option<Fingerprint> {
        let files = files_of(dir).ok()?;
        Some((files, self.schema_version()))
    }

    fn schema_version(&self) -> Option<i64> {
        let mut probe = self.probe.lock();
        if probe.is_none() {
            *probe = open(&self.dsn, &OpenOptions::reader()).ok();
        }
        let version = probe.as_ref().and_then(|c| dialect::schema_version(c).ok());
        if version.is_none() {
            // Opened again at the next poll.
            *probe = None;
        }
        version
    }
}

fn is_function_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "sql")
}

fn files_of(dir: &Path) -> std::io::Result<Vec<(String, u64, Option<SystemTime>)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if !is_function_file(&path) {
            continue;
        }
        let meta = std::fs::metadata(&path)?;
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            meta.len(),
            meta.modified().ok(),
        ));
    }
    out.sort();
    Ok(out)
}

/// Every `.sql` file of `dir`, checked on a connection to `dsn`; the first broken file is
/// the error (named with its reason).
fn load(dir: &Path, dsn: &str) -> anyhow::Result<(RpcFunctions, Recorded)> {
    let mut conn = open(dsn, &OpenOptions::reader())
        .map_err(|e| anyhow::anyhow!("opening the database to check RPC functions: {e}"))?;
    dialect::register_functions(&conn)?;
    // The writer's policy, recording what each statement touches as it is prepared.
    let seen: Arc<Mutex<Touches>> = Arc::default();
    let record = seen.clone();
    conn.authorizer(Some(move |ctx: AuthContext<'_>| {
        if !Policy::Write.allows(&ctx.action) {
            return Authorization::Deny;
        }
        let mut t = record.lock();
        match ctx.action {
            AuthAction::Read {
                table_name,
                column_name,
            } => t.reads.push((
                table_name.to_string(),
                column_name.to_string(),
                ctx.accessor.map(str::to_string),
            )),
            AuthAction::Insert { table_name } => {
                t.writes.push((table_name.to_string(), Privilege::Insert))
            }
            AuthAction::Update { table_name, .. } => {
                t.writes.push((table_name.to_string(), Privilege::Update))
            }
            AuthAction::Delete { table_name } => {
                t.writes.push((table_name.to_string(), Privilege::Delete))
            }
            _ => {}
        }
        Authorization::Allow
    }))?;
    let mut touches = HashMap::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("reading the RPC directory {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_function_file(p))
        .collect();
    paths.sort();
    let mut functions: Vec<RpcFunction> = Vec::with_capacity(paths.len());
    for path in paths {
        let fail = |why: String| anyhow::anyhow!("RPC function file {}: {why}", path.display());
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| fail("the file name is not UTF-8".into()))?;
        let bytes =
            crate::config_file::read(&path, MAX_FILE_BYTES).map_err(|e| fail(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|e| fail(e.to_string()))?;
        *seen.lock() = Touches::default();
        functions.push(RpcFunction::define(&conn, name, &text).map_err(fail)?);
        let function = functions
            .last()
            .cloned()
            .ok_or_else(|| fail("not loaded".into()))?;
        touches.insert(
            name.to_string(),
            (function, std::mem::take(&mut *seen.lock())),
        );
    }
    Ok((RpcFunctions::new(functions), touches))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_file_names_itself_and_a_failed_reload_keeps_the_previous_set() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite");
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER);")
            .unwrap();
        let fns = dir.path().join("rpc");
        std::fs::create_dir(&fns).unwrap();
        std::fs::write(
            fns.join("n.sql"),
            "-- returns: scalar\nSELECT count(*) FROM t",
        )
        .unwrap();
        std::fs::write(fns.join("README.txt"), "not a function").unwrap();
        let dsn = db.to_string_lossy().into_owned();
        let r = RpcRegistry::open(Some(fns.clone()), &dsn).unwrap();
        assert_eq!(r.current().len(), 1);
        std::fs::write(fns.join("bad.sql"), "-- returns: row\nSELECT nope FROM t").unwrap();
        let e = r.reload().unwrap_err().to_string();
        assert!(e.contains("bad.sql") && e.contains("no such column"), "{e}");
        assert_eq!(r.current().len(), 1);
        assert!(RpcRegistry::open(Some(fns.clone()), &dsn).is_err());
        // DDL is refused at load: the writer could not prepare it.
        std::fs::write(
            fns.join("bad.sql"),
            "-- returns: void\n-- writes\nDROP TABLE t",
        )
        .unwrap();
        let e = r.reload().unwrap_err().to_string();
        assert!(e.contains("bad.sql") && e.contains("not authorized"), "{e}");
        std::fs::remove_file(fns.join("bad.sql")).unwrap();
        std::fs::write(fns.join("m.sql"), "-- returns: scalar\nSELECT 2").unwrap();
        assert_eq!(r.reload().unwrap(), 2);
    }

    #[test]
    fn a_schema_change_is_a_change_the_poller_reloads_for() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER);").unwrap();
        let fns = dir.path().join("rpc");
        std::fs::create_dir(&fns).unwrap();
        std::fs::write(fns.join("all.sql"), "-- returns: setof\nSELECT * FROM t").unwrap();
        let r = RpcRegistry::open(Some(fns.clone()), &db.to_string_lossy()).unwrap();
        let columns = |r: &RpcRegistry| r.current().get("all").unwrap().columns.len();
        assert_eq!(columns(&r), 1);
        assert_eq!(*r.seen.lock(), r.fingerprint(&fns), "nothing changed yet");
        // A migration by another process: the files did not change, the result did.
        conn.execute_batch("ALTER TABLE t ADD COLUMN y TEXT;")
            .unwrap();
        assert_ne!(
            *r.seen.lock(),
            r.fingerprint(&fns),
            "the poller sees the change"
        );
        r.reload().unwrap();
        assert_eq!(columns(&r), 2);
        assert_eq!(*r.seen.lock(), r.fingerprint(&fns));
    }
}
