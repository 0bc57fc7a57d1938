//! The read pool: read-only connections, a time budget per request, and no thread hop for
//! short queries.
//!
//! A read first runs *inline* on the async worker thread that took the request, on that
//! thread's own read-only connection, with a short budget ([`INLINE_BUDGET`]) enforced by a
//! progress handler. Almost every PostgREST read (a point lookup, a page of rows) finishes well
//! inside it, so it never pays the hop to the blocking pool. A read that runs over is
//! interrupted and re-run from scratch (reads have no side effects) on a blocking-pool
//! connection, with what is left of the request's time budget (it started when the request
//! arrived, [`ReadPool::run_within`]); past that budget it is interrupted and answered 504
//! (SQLSTATE 57014). The blocking pool holds as many connections as cores.
//!
//! A read whose body outgrows [`BUFFER_BYTES`] is not kept in memory: it runs (again) on a
//! blocking-pool connection and streams ([`ReadPool::read`], [`super::stream`]); that
//! connection and its permit stay with the stream until it ends, at the latest at the
//! request's deadline.
//!
//! Connections are locked down by an authorizer ([`Policy::Read`]): statements may only read
//! (SELECT, reads, functions, transactions, and a few pragmas such as `schema_version` without
//! a value); no write, DDL, ATTACH or other PRAGMA can even be prepared. Schema loading lifts
//! the restriction for its own statements only.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dialect::{ApiError, BodyStream, ErrorCode, ReadOutcome, SchemaCache};
use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::authorizer::{Authorizer, Policy};
use super::deadline::Deadline;
use super::open::{OpenOptions, open};
use super::schema_holder::SchemaHolder;
use super::stream::{self, ReadReply};

/// How long a read may run on the async worker before it moves to the blocking pool.
pub const INLINE_BUDGET: Duration = Duration::from_millis(5);

/// The largest body a read keeps in memory; a larger one streams.
pub const BUFFER_BYTES: usize = 1 << 20;

/// How often (at most) a connection compares the schema cache with `schema_version`.
pub const SCHEMA_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// One read-only connection with its deadline and authorizer switch.
pub struct ReadConn {
    conn: Connection,
    /// Interrupts the running statement once the request's time is up.
    deadline: Deadline,
    /// Refuses anything but reading (lifted for schema loading).
    authorizer: Authorizer,
    /// When this connection last compared the schema cache with the database.
    checked_at: Cell<Option<Instant>>,
}

impl ReadConn {
    fn open(dsn: &str) -> rusqlite::Result<Self> {
        let mut conn = open(dsn, &OpenOptions::reader())?;
        let deadline = Deadline::install(&mut conn)?;
        let authorizer = Authorizer::install(&mut conn, Policy::Read)?;
        Ok(ReadConn {
            conn,
            deadline,
            authorizer,
            checked_at: Cell::new(None),
        })
    }

    /// Compares the cached schema with this connection's `schema_version` (rebuilding it if
    /// it moved) and notes when.
    fn check_schema(&self, schema: &SchemaHolder) -> Result<Arc<SchemaCache>, ApiError> {
        let cache = schema.fresh(&self.conn, |load| self.authorizer.trusted(load))?;
        self.checked_at.set(Some(Instant::now()));
        Ok(cache)
    }

    fn armed<T>(
        &self,
        deadline: Instant,
        f: impl FnOnce() -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.deadline.run(deadline, f)
    }

    /// Runs `f` with a fresh-enough schema cache and the deadline armed.
    ///
    /// The schema is compared with the database at most every [`SCHEMA_CHECK_INTERVAL`] per
    /// connection, and again whenever a request names something the cache does not know (an
    /// unknown relation or column): if the schema moved, the request is planned again. So a
    /// migration is visible to the very next request, while ordinary requests run just their
    /// own statement — a separate version check would cost a second read transaction, and
    /// each read transaction costs file-lock system calls.
    fn run<T>(
        &self,
        schema: &SchemaHolder,
        deadline: Instant,
        f: &dyn Fn(&Connection, &SchemaCache) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let due = schema.is_forced()
            || self
                .checked_at
                .get()
                .is_none_or(|t| t.elapsed() >= SCHEMA_CHECK_INTERVAL);
        let cache = if due {
            self.check_schema(schema)?
        } else {
            schema.current()
        };
        match self.armed(deadline, || f(&self.conn, &cache)) {
            Err(e) if !due && is_schema_miss(&e) => {
                let fresh = self.check_schema(schema)?;
                if fresh.version == cache.version {
                    Err(e)
                } else {
                    self.armed(deadline, || f(&self.conn, &fresh))
                }
            }
            other => other,
        }
    }
}

/// Errors that may only mean the cache is older than the database.
fn is_schema_miss(e: &ApiError) -> bool {
    matches!(
        e.code,
        // PGRST200/PGRST201: a relationship that appeared or went with the schema.
        ErrorCode::UnknownRelation
            | ErrorCode::UnknownPayloadColumn
            | ErrorCode::NoRelationship
            | ErrorCode::AmbiguousRelationship
            | ErrorCode::UndefinedColumn
            | ErrorCode::UndefinedTable
            | ErrorCode::UndefinedFunction
    )
}

type ReadFn<T> = dyn Fn(&Connection, &SchemaCache) -> Result<T, ApiError> + Send + Sync;

thread_local! {
    /// This worker thread's read connection for each pool (pools are told apart by id).
    static INLINE: RefCell<Vec<(u64, ReadConn)>> = const { RefCell::new(Vec::new()) };
}

/// Read-only connections for GET/HEAD (and anything else that only reads).
pub struct ReadPool {
    id: u64,
    dsn: String,
    schema: Arc<SchemaHolder>,
    idle: Arc<Mutex<Vec<ReadConn>>>,
    permits: Arc<Semaphore>,
    budget: Duration,
}

fn is_interrupt(e: &ApiError) -> bool {
    e.code == ErrorCode::QueryCanceled
}

impl ReadPool {
    /// A pool over `dsn`; opens one connection now to fail early and load the schema.
    pub fn new(dsn: &str, schema: Arc<SchemaHolder>, budget: Duration) -> anyhow::Result<Self> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let size = std::thread::available_parallelism().map_or(2, |n| n.get());
        let first = ReadConn::open(dsn)?;
        first
            .run(&schema, Instant::now() + budget, &|_, _| Ok(()))
            .map_err(|e| anyhow::anyhow!("loading the schema: {}", e.message))?;
        Ok(ReadPool {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            dsn: dsn.to_string(),
            schema,
            idle: Arc::new(Mutex::new(vec![first])),
            permits: Arc::new(Semaphore::new(size)),
            budget,
        })
    }

    /// Runs a read with the pool's whole time budget from now (see [`ReadPool::run_within`]).
    pub async fn run<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: Fn(&Connection, &SchemaCache) -> Result<T, ApiError> + Send + Sync + 'static,
    {
        self.run_within(Instant::now() + self.budget, f).await
    }

    /// Runs a read that must end by `deadline` (a request's: its arrival plus its budget):
    /// inline first, on the blocking pool if it outlives [`INLINE_BUDGET`].
    pub async fn run_within<T, F>(&self, deadline: Instant, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: Fn(&Connection, &SchemaCache) -> Result<T, ApiError> + Send + Sync + 'static,
    {
        let f: Arc<ReadFn<T>> = Arc::new(f);
        let inline = (Instant::now() + INLINE_BUDGET).min(deadline);
        match self.run_inline(inline, f.as_ref()) {
            Err(e) if is_interrupt(&e) && inline < deadline => {
                tracing::debug!("read outlived the inline budget; moving it to the blocking pool");
                self.run_blocking(deadline, f).await
            }
            other => other,
        }
    }

    fn run_inline<T>(
        &self,
        deadline: Instant,
        f: &dyn Fn(&Connection, &SchemaCache) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        INLINE.with(|cell| {
            let mut conns = cell.borrow_mut();
            let idx = match conns.iter().position(|(id, _)| *id == self.id) {
                Some(i) => i,
                None => {
                    conns.push((self.id, ReadConn::open(&self.dsn).map_err(open_error)?));
                    conns.len() - 1
                }
            };
            conns[idx].1.run(&self.schema, deadline, f)
        })
    }

    /// A blocking-pool permit, waiting at most until `deadline`.
    async fn permit(&self, deadline: Instant) -> Result<OwnedSemaphorePermit, ApiError> {
        let wait = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                ApiError::new(
                    504,
                    ErrorCode::PoolTimeout,
                    "Timed out acquiring connection from connection pool.",
                )
            })?
            .map_err(|_| ApiError::new(503, ErrorCode::DbConnection, "Database connection error."))
    }

    async fn run_blocking<T: Send + 'static>(
        &self,
        deadline: Instant,
        f: Arc<ReadFn<T>>,
    ) -> Result<T, ApiError> {
        let permit = self.permit(deadline).await?;
        let conn = self.idle.lock().pop();
        let dsn = self.dsn.clone();
        let schema = self.schema.clone();
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let conn = match conn {
                Some(c) => c,
                None => match ReadConn::open(&dsn) {
                    Ok(c) => c,
                    Err(e) => return (None, Err(open_error(e))),
                },
            };
            let r = conn.run(&schema, deadline, f.as_ref());
            (Some(conn), r)
        })
        .await
        .map_err(|e| ApiError::internal(format!("read task failed: {e}")))?;
        if let Some(c) = conn {
            self.idle.lock().push(c);
        }
        drop(permit);
        result
    }

    /// Runs a read that may answer with a large body: inline first with a body of at most
    /// [`BUFFER_BYTES`]; a read that outgrows it (or the inline budget) runs again on the
    /// blocking pool, where a large body streams. The stream keeps its connection and permit
    /// until it ends; past the request's `deadline` (its arrival plus its budget) it is cut.
    pub async fn read<F>(&self, deadline: Instant, f: F) -> Result<ReadReply, ApiError>
    where
        F: Fn(
                &Connection,
                &SchemaCache,
                Option<&mut dyn BodyStream>,
            ) -> Result<ReadOutcome, ApiError>
            + Send
            + Sync
            + 'static,
    {
        let inline = (Instant::now() + INLINE_BUDGET).min(deadline);
        match self.run_inline(inline, &|c, s| f(c, s, None)) {
            Ok(ReadOutcome::Whole(out)) => return Ok(ReadReply::Whole(out)),
            Ok(ReadOutcome::TooLarge) => {
                tracing::debug!("read outgrew its buffer; streaming it from the blocking pool");
            }
            Ok(ReadOutcome::Streamed) => {
                return Err(ApiError::internal("an inline read streamed"));
            }
            Err(e) if is_interrupt(&e) && inline < deadline => {
                tracing::debug!("read outlived the inline budget; moving it to the blocking pool");
            }
            Err(e) => return Err(e),
        }
        let permit = self.permit(deadline).await?;
        let conn = self.idle.lock().pop();
        let dsn = self.dsn.clone();
        let schema = self.schema.clone();
        let idle = self.idle.clone();
        let (out, first) = stream::channel(deadline, tokio::runtime::Handle::current());
        // Not awaited: once the response has begun, the task feeds its body and then gives
        // the connection back.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = match conn {
                Some(c) => c,
                None => match ReadConn::open(&dsn) {
                    Ok(c) => c,
                    Err(e) => return out.finish(Err(open_error(e))),
                },
            };
            let out = RefCell::new(out);
            let result = conn.run(&schema, deadline, &|c, cache| {
                let mut out = out.borrow_mut();
                f(c, cache, Some(&mut *out))
            });
            out.into_inner().finish(result);
            idle.lock().push(conn);
        });
        first
            .await
            .map_err(|_| ApiError::internal("the read task ended without an answer"))?
    }
}

fn open_error(e: rusqlite::Error) -> ApiError {
    tracing::error!(error = %e, "opening a read connection failed");
    ApiError::new(503, ErrorCode::DbConnection, "Database connection error.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialect::Exposure;

    fn pool(budget: Duration) -> (tempfile::TempDir, ReadPool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let w = open(path.to_str().unwrap(), &OpenOptions::writer()).unwrap();
        w.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1),(2);",
        )
        .unwrap();
        let schema = Arc::new(SchemaHolder::new(Exposure::All));
        let p = ReadPool::new(path.to_str().unwrap(), schema, budget).unwrap();
        (dir, p)
    }

    #[tokio::test]
    async fn reads_run_and_writes_are_denied() {
        let (_d, p) = pool(Duration::from_secs(5));
        let n: i64 = p
            .run(|c, _| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 2);
        for sql in [
            "INSERT INTO t VALUES (3)",
            "PRAGMA journal_mode",
            "CREATE TABLE u (y)",
            "ATTACH ':memory:' AS m",
        ] {
            let e = p
                .run(move |c, _| Ok(c.execute(sql, []).map(|_| ())?))
                .await
                .unwrap_err();
            assert!(e.status >= 400 && e.status < 500, "{sql}: {e:?}");
        }
    }

    const SLOW: &str =
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c) SELECT count(*) FROM c";

    #[tokio::test]
    async fn long_reads_are_interrupted_at_the_budget() {
        let (_d, p) = pool(Duration::from_millis(300));
        let start = Instant::now();
        let e = p
            .run(|c, _| Ok(c.query_row(SLOW, [], |r| r.get::<_, i64>(0))?))
            .await
            .unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (504, "57014"));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn medium_reads_move_to_the_blocking_pool_and_finish() {
        let (_d, p) = pool(Duration::from_secs(20));
        // Runs well past the inline budget but finishes.
        let n: i64 = p
            .run(|c, _| {
                Ok(c.query_row(
                    "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 300000) SELECT count(*) FROM c",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(n, 300000);
    }
}
