//! The single writer: every write of the API runs on ONE read-write connection, owned by one
//! OS thread and fed by a bounded queue, with group commit.
//!
//! A write is a job: a closure that runs on the writer's connection with a fresh schema cache
//! ([`WriteCtx`]) and returns its output plus whether its changes stay
//! ([`Writer::run_committed`]). The thread takes the first queued job, drains whatever else is
//! queued (bounded by [`WriterConfig::max_batch_jobs`] and [`WriterConfig::max_batch_bytes`]),
//! opens ONE transaction (`BEGIN IMMEDIATE`) and runs each job inside its own `SAVEPOINT`: a
//! job that fails, or asks to be rolled back (`Prefer: tx=rollback`, PGRST116, PGRST124 …), is
//! undone with `ROLLBACK TO` and never affects the others. Then ONE `COMMIT` — one fsync for the
//! whole batch under `synchronous=FULL` — and only after it succeeded are the jobs answered: a
//! response never claims a write that a failed commit lost. That holds for every job that ran
//! in the transaction, whatever its answer: a job rolled back on request, or failing on its
//! own, saw the uncommitted writes of the jobs before it (its representation, its count, its
//! conflict), so it is answered after the COMMIT too, and runs again with the others when their
//! transaction is lost.
//!
//! Time: every job carries its request's deadline (the request's arrival plus its time
//! budget), so the time it waits in the queue counts. A job whose requester is gone (the
//! client hung up, or the budget ran out while it was queued: the requester answered 504) is
//! dropped before it runs. A running job's write statements stop at its deadline through the
//! per-row budget check (`pgrst_budget()`, see [`super::deadline`]): the statement and the job's
//! savepoint are rolled back, the job is answered 504, and the batch goes on. The same check
//! stops a job when a job already done in the batch would otherwise be answered past its own
//! deadline: the slow job yields (its savepoint rolled back), the batch so far commits and is
//! answered, and the slow job runs again in the next transaction. One slow request never makes
//! the others run again or wait past their budget. SQLite's interrupt stays armed a little past
//! the deadline as the backstop.
//!
//! Failures that are not one job's own:
//! - a statement that ends the whole transaction (a trigger's `RAISE(ROLLBACK)`, the backstop
//!   interrupt, an I/O error), or a savepoint that cannot be released or rolled back (the
//!   transaction is then rolled back, as its state is unknown): that job gets its error, the
//!   jobs that ran before it in the batch run again in a new transaction (jobs are re-runnable
//!   closures);
//! - a COMMIT refused because of a constraint (a deferred foreign key): every job of the batch
//!   runs again alone, in its own transaction, so only the offending one fails;
//! - any other COMMIT or BEGIN failure: every job of the batch gets the error (SQLITE_BUSY from
//!   another process after the busy timeout becomes 503 with `Retry-After`).
//!
//! After every COMMIT that wrote something, the writer publishes a [`CommitNotice`] on a watch
//! channel ([`Writer::subscribe_commits`]); replication uses it to ship the new WAL frames
//! without polling. Each job whose changes that COMMIT holds learns its `seq`
//! ([`Writer::run_committed`]), so its request can wait until replication has that commit
//! in a local LTX file, or on the replica; a job whose changes were rolled back, or whose
//! batch wrote nothing, gets `None`. The connection comes from start-up ([`super::Database::take_writer_connection`],
//! opened with the [`super::OpenOptions`] start-up chose: `synchronous`, and who
//! checkpoints). Its WAL hook tells whether a COMMIT wrote anything; as a WAL hook replaces
//! SQLite's automatic checkpoint, it also runs that checkpoint when the connection's
//! [`Checkpointer`] says so (never when the replicator checkpoints).
//!
//! Shutdown ([`Writer::shutdown`]): the queue closes to new jobs, every job already queued
//! runs and is committed, then the thread ends.

use std::collections::VecDeque;
use std::ffi::c_int;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dialect::{ApiError, ErrorCode, SchemaCache};
use dialect::{InsertCounter, register_insert_counter};
use replication::Checkpointer;
use replication::CommitNotice;
use rusqlite::Connection;
use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;
use tokio::sync::{mpsc, oneshot, watch};

use super::authorizer::{Authorizer, Policy};
use super::deadline::Deadline;
use super::schema_holder::SchemaHolder;

/// Tuning of the writer.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Most jobs in one transaction (one COMMIT).
    pub max_batch_jobs: usize,
    /// Most request-body bytes in one transaction (a batch always takes at least one job).
    pub max_batch_bytes: usize,
    /// Jobs that may wait in the queue; further writers wait for room (within their budget).
    pub queue: usize,
}

/// How long past its deadline a job's statements may still run before SQLite's interrupt
/// stops them (work outside the per-row budget check; it ends the whole transaction).
pub const HARD_STOP_GRACE: Duration = Duration::from_millis(250);

/// How long before a done job's deadline the batch commits, so the COMMIT still fits.
pub const COMMIT_MARGIN: Duration = Duration::from_millis(100);

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            max_batch_jobs: 256,
            max_batch_bytes: 32 << 20,
            queue: 1024,
        }
    }
}

/// What a job gets to run with.
pub struct WriteCtx<'a> {
    /// The read-write connection, inside the job's savepoint.
    pub conn: &'a Connection,
    /// The schema cache, checked against the database at the start of this transaction.
    pub cache: &'a SchemaCache,
    /// The connection's `pgrst_ins` counter (upserts count inserted rows with it).
    pub inserts: &'a InsertCounter,
}

/// Counters of the writer's work, for metrics and tests.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Transactions committed that wrote something (the last [`CommitNotice::seq`]).
    pub commits: AtomicU64,
    /// Jobs whose changes were committed.
    pub committed_jobs: AtomicU64,
    /// Batches run (transactions opened).
    pub batches: AtomicU64,
    /// Jobs run again because another job's statement ended their transaction.
    pub reruns: AtomicU64,
    /// Jobs dropped before they ran: their requester was gone.
    pub dropped: AtomicU64,
}

/// What the writer reports as it works (metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterEvent {
    /// A COMMIT that wrote something, holding `jobs` requests.
    Committed { jobs: usize },
    /// `jobs` requests run again because another request's statement ended the transaction.
    Rerun { jobs: usize },
    /// A request dropped before it ran (its client left, or its budget ran out in the queue).
    Dropped,
}

/// Who decides a queued job's fate first: the writer claims it to run it, or its requester
/// gives up on it at its deadline (then it never runs).
const QUEUED: u8 = 0;
const CLAIMED: u8 = 1;
const ABANDONED: u8 = 2;

/// 504 for a write whose time budget ran out before or while it ran.
fn budget_spent(ran: bool) -> ApiError {
    ApiError::new(
        504,
        ErrorCode::QueryCanceled,
        "canceling statement due to statement timeout",
    )
    .with_details(if ran {
        "The write ran out of the request's time budget and was rolled back"
    } else {
        "The request's time budget ran out before its write could run; nothing was written"
    })
}

/// A queued job, type-erased: runs (possibly more than once), then is answered once.
trait Task: Send {
    /// Runs inside the job's savepoint; `Ok(keep)` or the job's error. The output is kept
    /// inside until [`Task::succeed`].
    fn run(&mut self, ctx: &WriteCtx<'_>) -> Result<bool, ApiError>;
    fn bytes(&self) -> usize;
    /// When the request's time budget ends.
    fn deadline(&self) -> Instant;
    /// Claims the job for running (again); false when its requester is gone: the client
    /// left, or its deadline passed while it was queued and it was answered 504.
    fn claim(&self) -> bool;
    /// Answers with the output; `commit` is the [`CommitNotice::seq`] of the COMMIT that
    /// holds the job's changes (`None`: nothing of it was committed).
    fn succeed(self: Box<Self>, commit: Option<u64>);
    fn fail(self: Box<Self>, e: ApiError);
}

struct Job<T, F> {
    f: F,
    out: Option<T>,
    reply: oneshot::Sender<Result<(T, Option<u64>), ApiError>>,
    bytes: usize,
    deadline: Instant,
    /// [`QUEUED`], [`CLAIMED`] or [`ABANDONED`], shared with the requester.
    claim: Arc<AtomicU8>,
}

impl<T, F> Task for Job<T, F>
where
    T: Send,
    F: Fn(&WriteCtx<'_>) -> Result<(T, bool), ApiError> + Send,
{
    fn run(&mut self, ctx: &WriteCtx<'_>) -> Result<bool, ApiError> {
        let (out, keep) = (self.f)(ctx)?;
        self.out = Some(out);
        Ok(keep)
    }
    fn bytes(&self) -> usize {
        self.bytes
    }
    fn deadline(&self) -> Instant {
        self.deadline
    }
    fn claim(&self) -> bool {
        if self.reply.is_closed() {
            return false;
        }
        match self
            .claim
            .compare_exchange(QUEUED, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) | Err(CLAIMED) => true,
            Err(_) => false,
        }
    }
    fn succeed(self: Box<Self>, commit: Option<u64>) {
        let Job { out, reply, .. } = *self;
        let r = out
            .map(|out| (out, commit))
            .ok_or_else(|| ApiError::internal("a write job finished without output"));
        // The requester may have gone away; the write stands either way.
        let _ = reply.send(r);
    }
    fn fail(self: Box<Self>, e: ApiError) {
        let _ = self.reply.send(Err(e));
    }
}

enum Msg {
    Job(Box<dyn Task>),
    Stop,
}

fn unavailable() -> ApiError {
    ApiError::new(503, ErrorCode::DbConnection, "Database connection error.")
        .with_details("The writer is not running (the server is shutting down).")
        .with_header("Retry-After", "1")
}

/// The handle to the writer thread.
pub struct Writer {
    queue: mpsc::Sender<Msg>,
    commits: watch::Receiver<CommitNotice>,
    stopped: watch::Receiver<bool>,
    #[cfg(test)]
    stats: Arc<WriterStats>,
}

/// The state the writer thread owns.
struct Engine {
    conn: Connection,
    schema: Arc<SchemaHolder>,
    inserts: InsertCounter,
    deadline: Deadline,
    /// Refuses DDL, ATTACH and pragmas with values (lifted for schema loading).
    authorizer: Authorizer,
    wal_written: Arc<AtomicBool>,
    notices: watch::Sender<CommitNotice>,
    stats: Arc<WriterStats>,
    config: WriterConfig,
    on_event: Option<Box<dyn Fn(WriterEvent) + Send>>,
}

/// How a job that ran in the open transaction is answered once that transaction ends.
enum Ran {
    /// Its changes stay: answered with its output after the COMMIT.
    Keep,
    /// Rolled back on request (`Prefer: tx=rollback`, …): answered with its output.
    Discard,
    /// Failed on its own (its savepoint rolled back): answered with this error.
    Failed(ApiError),
}

impl Ran {
    /// Answers `task`; `commit` is the seq of the COMMIT that ended its transaction, if that
    /// COMMIT wrote something (it holds the job's changes only when they were kept).
    fn answer(self, task: Box<dyn Task>, commit: Option<u64>) {
        match self {
            Ran::Keep => task.succeed(commit),
            Ran::Discard => task.succeed(None),
            Ran::Failed(e) => task.fail(e),
        }
    }
}

/// How one job's run ended, when it did not simply succeed or fail.
enum JobEnd {
    /// The job's own outcome: `Ok(keep)` or its error.
    Done(Result<bool, ApiError>),
    /// Stopped (savepoint rolled back) so the batch so far can commit in time; run it again.
    Yield,
    /// Out of its time budget, its savepoint rolled back: answered 504 at once, as that holds
    /// whatever becomes of the transaction.
    OutOfTime,
}

impl Writer {
    /// Takes over `conn` (read-write, WAL) and starts the writer thread.
    /// `on_event` hears of every COMMIT that wrote something, re-run and dropped job (metrics).
    pub fn start(
        mut conn: Connection,
        schema: Arc<SchemaHolder>,
        config: WriterConfig,
        on_event: Option<Box<dyn Fn(WriterEvent) + Send>>,
    ) -> anyhow::Result<Writer> {
        let inserts = register_insert_counter(&conn)?;
        let deadline = Deadline::install(&mut conn)?;
        deadline.install_soft(&conn)?;
        // Asked before the hook is set: setting a WAL hook replaces SQLite's autocheckpoint.
        let checkpointer = Checkpointer::of(&conn)?;
        let wal_written = Arc::new(AtomicBool::new(false));
        {
            let written = wal_written.clone();
            conn.wal_hook(Some(move |wal: &mut Wal, pages: c_int| {
                written.store(true, Ordering::Release);
                if checkpointer.checkpoint_after_commit(u64::try_from(pages).unwrap_or(0)) {
                    // The commit already happened: a failed checkpoint must not fail it.
                    if let Err(e) = wal.checkpoint_v2(CheckpointMode::PASSIVE) {
                        tracing::warn!(error = %e, "automatic WAL checkpoint failed");
                    }
                }
                Ok(())
            }))?;
        }
        let authorizer = Authorizer::install(&mut conn, Policy::Write)?;
        let (queue, rx) = mpsc::channel(config.queue.max(1));
        let (notices, commits) = watch::channel(CommitNotice::default());
        let (stopped_tx, stopped) = watch::channel(false);
        let stats = Arc::new(WriterStats::default());
        let engine = Engine {
            conn,
            schema,
            inserts,
            deadline,
            authorizer,
            wal_written,
            notices,
            stats: Arc::clone(&stats),
            config,
            on_event,
        };
        std::thread::Builder::new()
            .name("sqlite-rest-writer".into())
            .spawn(move || {
                // Tells waiters the thread ended, however it ends.
                struct Stopped(watch::Sender<bool>);
                impl Drop for Stopped {
                    fn drop(&mut self) {
                        let _ = self.0.send(true);
                    }
                }
                let _stopped = Stopped(stopped_tx);
                engine.run(rx);
            })?;
        Ok(Writer {
            queue,
            commits,
            stopped,
            #[cfg(test)]
            stats,
        })
    }

    /// [`Writer::run_committed`] without the commit (tests).
    #[cfg(test)]
    pub async fn run<T, F>(&self, bytes: usize, deadline: Instant, job: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: Fn(&WriteCtx<'_>) -> Result<(T, bool), ApiError> + Send + 'static,
    {
        self.run_committed(bytes, deadline, job)
            .await
            .map(|(out, _)| out)
    }

    /// Runs `job` on the writer's connection, inside its own savepoint of a group-committed
    /// transaction, and answers once its changes are committed. The job returns its output
    /// and whether to keep its changes (`false`: answer, but roll back). It may run more than
    /// once (when another job's failure ended the transaction, or it yielded to let the batch
    /// commit in time), so it must not have side effects outside the database. `bytes` is the
    /// job's size for batching; `deadline` is when the request's time budget ends: waiting
    /// for room in the queue and in the queue counts, and a job not started by then is never
    /// run (504). Dropping the returned future before the job started drops the job too.
    ///
    /// Answers the job's output and which COMMIT holds its changes: the [`CommitNotice::seq`]
    /// it published, or `None` when the job's changes were rolled back (it asked for that, or
    /// failed) or its transaction wrote nothing.
    pub async fn run_committed<T, F>(
        &self,
        bytes: usize,
        deadline: Instant,
        job: F,
    ) -> Result<(T, Option<u64>), ApiError>
    where
        T: Send + 'static,
        F: Fn(&WriteCtx<'_>) -> Result<(T, bool), ApiError> + Send + 'static,
    {
        let (reply, mut rx) = oneshot::channel();
        let claim = Arc::new(AtomicU8::new(QUEUED));
        let task = Box::new(Job {
            f: job,
            out: None,
            reply,
            bytes,
            deadline,
            claim: claim.clone(),
        });
        let until = tokio::time::Instant::from_std(deadline);
        match tokio::time::timeout_at(until, self.queue.send(Msg::Job(task))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(unavailable()),
            Err(_) => return Err(budget_spent(false)),
        }
        tokio::select! {
            biased;
            r = &mut rx => return r.map_err(|_| unavailable())?,
            _ = tokio::time::sleep_until(until) => {}
        }
        if claim
            .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return Err(budget_spent(false));
        }
        // Claimed: it runs (or ran) and stops at the same deadline; its answer says which.
        rx.await.map_err(|_| unavailable())?
    }

    /// Notices of committed transactions: the receiver holds the latest one.
    pub fn subscribe_commits(&self) -> watch::Receiver<CommitNotice> {
        self.commits.clone()
    }

    #[cfg(test)]
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// True once the writer thread has ended.
    #[cfg(test)]
    pub fn is_stopped(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Resolves when the writer thread has ended (after [`Writer::shutdown`], or if it died).
    pub async fn stopped(&self) {
        let mut s = self.stopped.clone();
        let _ = s.wait_for(|v| *v).await;
    }

    /// Closes the queue to new jobs, lets every queued job run and commit, and waits for the
    /// thread to end.
    pub async fn shutdown(&self) {
        let _ = self.queue.send(Msg::Stop).await;
        self.stopped().await;
    }
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
}

impl Engine {
    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        tracing::debug!("writer started");
        loop {
            let first = match rx.blocking_recv() {
                Some(Msg::Job(t)) => t,
                Some(Msg::Stop) => {
                    // Nothing new gets in; what is queued still runs.
                    rx.close();
                    continue;
                }
                None => break,
            };
            let mut bytes = first.bytes();
            let mut batch = VecDeque::from([first]);
            while batch.len() < self.config.max_batch_jobs && bytes < self.config.max_batch_bytes {
                match rx.try_recv() {
                    Ok(Msg::Job(t)) => {
                        bytes += t.bytes();
                        batch.push_back(t);
                    }
                    Ok(Msg::Stop) => rx.close(),
                    Err(_) => break,
                }
            }
            self.batch(batch);
        }
        tracing::debug!("writer stopped");
    }

    fn exec(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(|_| ())
    }

    /// Ends a transaction that is still open, ignoring errors (the connection is then in
    /// autocommit mode either way).
    fn abandon(&self) {
        if !self.conn.is_autocommit()
            && let Err(e) = self.exec("ROLLBACK")
        {
            tracing::error!(error = %e, "ROLLBACK failed");
        }
    }

    /// The schema cache, rebuilt when the database's schema moved (read inside the
    /// transaction, so it holds for the whole batch).
    fn cache(&self) -> Result<Arc<SchemaCache>, ApiError> {
        self.schema
            .fresh(&self.conn, |load| self.authorizer.trusted(load))
    }

    /// Runs one batch: transactions with a savepoint per job, each with one COMMIT and then
    /// its answers. Usually one transaction; another when a job yielded so the jobs done
    /// before it could be answered within their budget.
    fn batch(&mut self, mut pending: VecDeque<Box<dyn Task>>) {
        while !pending.is_empty() {
            if let Some(done) = self.transaction(&mut pending) {
                self.commit(done);
            }
        }
    }

    /// Opens a transaction and runs queued jobs in it until none is left or one yields; the
    /// jobs that ran in it, to answer once it ends (`None`: the transaction could not start;
    /// every job was answered).
    fn transaction(
        &mut self,
        pending: &mut VecDeque<Box<dyn Task>>,
    ) -> Option<Vec<(Box<dyn Task>, Ran)>> {
        let mut done: Vec<(Box<dyn Task>, Ran)> = Vec::with_capacity(pending.len());
        'transaction: loop {
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
            let begun = self.exec("BEGIN IMMEDIATE").map_err(ApiError::from);
            let cache = begun.and_then(|()| self.cache());
            let cache = match cache {
                Ok(c) => c,
                Err(e) => {
                    self.abandon();
                    tracing::warn!(error = %e, jobs = done.len() + pending.len(), "a write transaction could not start");
                    for t in done.drain(..).map(|(t, _)| t).chain(pending.drain(..)) {
                        t.fail(e.clone());
                    }
                    return None;
                }
            };
            self.wal_written.store(false, Ordering::Release);
            while let Some(mut task) = pending.pop_front() {
                if !task.claim() {
                    // Its requester is gone: never run it.
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    self.event(WriterEvent::Dropped);
                    continue;
                }
                let now = Instant::now();
                if now >= task.deadline() {
                    task.fail(budget_spent(false));
                    continue;
                }
                // The jobs that ran must be answered, so committed, before the first of their
                // deadlines.
                let commit_by = done
                    .iter()
                    .map(|(t, _)| t.deadline())
                    .min()
                    .map(|d| d.checked_sub(COMMIT_MARGIN).unwrap_or(d));
                if commit_by.is_some_and(|c| now >= c) {
                    pending.push_front(task);
                    break 'transaction;
                }
                match self.job(task.as_mut(), &cache, commit_by) {
                    JobEnd::Yield => {
                        pending.push_front(task);
                        break 'transaction;
                    }
                    JobEnd::OutOfTime => task.fail(budget_spent(true)),
                    JobEnd::Done(Ok(true)) => done.push((task, Ran::Keep)),
                    JobEnd::Done(Ok(false)) => done.push((task, Ran::Discard)),
                    JobEnd::Done(Err(e)) if self.conn.is_autocommit() => {
                        // The statement ended the whole transaction: this job fails, the
                        // ones before it (whatever their outcome: it may have depended on
                        // what the lost transaction held) run again in a new transaction.
                        tracing::warn!(code = %e.code, jobs = done.len(), "a write ended its transaction; re-running the batch without it");
                        task.fail(e);
                        if !done.is_empty() {
                            self.stats
                                .reruns
                                .fetch_add(done.len() as u64, Ordering::Relaxed);
                            self.event(WriterEvent::Rerun { jobs: done.len() });
                        }
                        let again = std::mem::take(&mut done);
                        for (t, _) in again.into_iter().rev() {
                            pending.push_front(t);
                        }
                        continue 'transaction;
                    }
                    JobEnd::Done(Err(e)) => done.push((task, Ran::Failed(e))),
                }
            }
            break;
        }
        Some(done)
    }

    /// Commits the open transaction, then answers the jobs that ran in it (a transaction
    /// without changes to keep is rolled back, then answered).
    fn commit(&mut self, done: Vec<(Box<dyn Task>, Ran)>) {
        let kept = done.iter().filter(|(_, r)| matches!(r, Ran::Keep)).count();
        if kept == 0 {
            self.abandon();
            for (t, r) in done {
                r.answer(t, None);
            }
            return;
        }
        match self.exec("COMMIT") {
            Ok(()) => {
                let seq = self
                    .wal_written
                    .load(Ordering::Acquire)
                    .then(|| self.publish(kept));
                self.stats
                    .committed_jobs
                    .fetch_add(kept as u64, Ordering::Relaxed);
                for (t, r) in done {
                    r.answer(t, seq);
                }
            }
            Err(e) => {
                self.abandon();
                if is_constraint(&e) {
                    // Each job again in a transaction of its own, so only the culprit fails;
                    // alone among jobs that keep nothing, the culprit is known already.
                    tracing::warn!(error = %e, jobs = done.len(), "COMMIT refused by a constraint; running the batch's jobs one by one");
                    let e = ApiError::from(e);
                    for (t, r) in done {
                        match r {
                            Ran::Keep if kept == 1 => t.fail(e.clone()),
                            _ => self.batch(VecDeque::from([t])),
                        }
                    }
                } else {
                    let e = ApiError::from(e);
                    tracing::warn!(error = %e, jobs = done.len(), "COMMIT failed");
                    for (t, _) in done {
                        t.fail(e.clone());
                    }
                }
            }
        }
    }

    /// Runs one job in its savepoint, its write statements stopped at its deadline or at
    /// `commit_by` (the done jobs' need to commit), whichever comes first.
    fn job(&self, task: &mut dyn Task, cache: &SchemaCache, commit_by: Option<Instant>) -> JobEnd {
        if let Err(e) = self.exec("SAVEPOINT pgrst_job") {
            return JobEnd::Done(Err(e.into()));
        }
        let ctx = WriteCtx {
            conn: &self.conn,
            cache,
            inserts: &self.inserts,
        };
        let deadline = task.deadline();
        let soft = commit_by.map_or(deadline, |c| c.min(deadline));
        // A panicking job (a bug) fails alone instead of taking the writer thread with it.
        let result = self
            .deadline
            .run_soft(soft, deadline + HARD_STOP_GRACE, || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task.run(&ctx)))
                    .unwrap_or_else(|_| {
                        tracing::error!("a write job panicked");
                        Err(ApiError::internal("the write failed unexpectedly"))
                    })
            });
        let now = Instant::now();
        if self.conn.is_autocommit() {
            let e = match result {
                Err(_) if now >= deadline => budget_spent(true),
                Err(e) => e,
                Ok(_) => ApiError::internal("the transaction ended inside a write job"),
            };
            return JobEnd::Done(Err(e));
        }
        let keep = matches!(result, Ok(true));
        let end = if keep {
            self.exec("RELEASE pgrst_job")
        } else {
            self.exec("ROLLBACK TO pgrst_job")
                .and_then(|()| self.exec("RELEASE pgrst_job"))
        };
        if let Err(e) = &end {
            // The job's changes may or may not still be in the transaction: end it, so they
            // are not committed with the others' (which run again).
            tracing::error!(error = %e, "a write's savepoint could not be ended; rolling back its transaction");
            self.abandon();
        }
        match (result, end) {
            // Stopped by the budget check (or failing right at it): out of time, or yielding.
            (Err(_), Ok(())) if now >= deadline => JobEnd::OutOfTime,
            (Err(_), Ok(())) if now >= soft => JobEnd::Yield,
            (Ok(keep), Ok(())) => JobEnd::Done(Ok(keep)),
            (Err(e), _) => JobEnd::Done(Err(e)),
            (Ok(_), Err(e)) => JobEnd::Done(Err(e.into())),
        }
    }

    fn event(&self, e: WriterEvent) {
        if let Some(f) = &self.on_event {
            f(e);
        }
    }

    /// Announces a COMMIT that wrote something; its seq.
    fn publish(&self, jobs: usize) -> u64 {
        let seq = self.stats.commits.fetch_add(1, Ordering::Relaxed) + 1;
        self.notices.send_replace(CommitNotice { seq });
        self.event(WriterEvent::Committed { jobs });
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::open::{OpenOptions, open};
    use dialect::Exposure;

    struct Setup {
        _dir: tempfile::TempDir,
        path: String,
        writer: Writer,
    }

    fn setup(sql: &str, opts: OpenOptions, config: WriterConfig) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db").to_str().unwrap().to_string();
        let conn = open(&path, &opts).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL").unwrap();
        conn.execute_batch(sql).unwrap();
        let schema = Arc::new(SchemaHolder::new(Exposure::All));
        let writer = Writer::start(conn, schema, config, None).unwrap();
        Setup {
            _dir: dir,
            path,
            writer,
        }
    }

    const T: &str = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);";
    /// `T`, where inserting `v = 'boom'` ends the whole transaction.
    const T_BOOM: &str = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);
         CREATE TRIGGER boom BEFORE INSERT ON t WHEN NEW.v = 'boom'
         BEGIN SELECT RAISE(ROLLBACK, 'boom'); END;";

    /// A deadline no test reaches.
    fn far() -> Instant {
        Instant::now() + Duration::from_secs(600)
    }

    /// Occupies the writer for a moment, so the jobs sent meanwhile form one batch.
    async fn hold(w: &Writer) {
        let (started_tx, started) = oneshot::channel();
        let started_tx = std::sync::Mutex::new(Some(started_tx));
        let job = w.run(0, far(), move |_| {
            if let Some(tx) = started_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            std::thread::sleep(Duration::from_millis(150));
            Ok(((), false))
        });
        tokio::select! {
            biased;
            _ = started => {}
            _ = job => panic!("the holding job finished early"),
        }
    }

    fn insert(id: i64) -> impl Fn(&WriteCtx<'_>) -> Result<(i64, bool), ApiError> {
        move |ctx| {
            ctx.conn
                .execute("INSERT INTO t (id, v) VALUES (?1, 'x')", [id])
                .map_err(ApiError::from)?;
            Ok((id, true))
        }
    }

    fn ids(path: &str) -> Vec<i64> {
        let c = Connection::open(path).unwrap();
        c.prepare("SELECT id FROM t ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_jobs_share_one_commit_and_failures_stay_isolated() {
        let s = Arc::new(setup(T, OpenOptions::writer(), WriterConfig::default()));
        // A slow first job lets the others queue up behind it.
        let slow = {
            let s = s.clone();
            tokio::spawn(async move {
                s.writer
                    .run(0, far(), |ctx| {
                        std::thread::sleep(Duration::from_millis(200));
                        ctx.conn
                            .execute("INSERT INTO t (id, v) VALUES (0, 'slow')", [])
                            .map_err(ApiError::from)?;
                        Ok(((), true))
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut handles = Vec::new();
        for id in 1..=40i64 {
            let s = s.clone();
            handles.push(tokio::spawn(async move {
                match id % 10 {
                    // duplicate of the slow job's key: fails alone
                    3 => s.writer.run(0, far(), insert(0)).await,
                    // NOT NULL violation
                    7 => {
                        s.writer
                            .run(0, far(), move |ctx| {
                                ctx.conn
                                    .execute("INSERT INTO t (id, v) VALUES (?1, NULL)", [id])
                                    .map_err(ApiError::from)?;
                                Ok((id, true))
                            })
                            .await
                    }
                    // answered, then rolled back
                    9 => {
                        s.writer
                            .run(0, far(), move |ctx| Ok((insert(id)(ctx)?.0, false)))
                            .await
                    }
                    _ => s.writer.run(0, far(), insert(id)).await,
                }
            }));
        }
        slow.await.unwrap().unwrap();
        let mut expected = vec![0];
        for (i, h) in handles.into_iter().enumerate() {
            let id = i as i64 + 1;
            let r = h.await.unwrap();
            match id % 10 {
                3 => assert_eq!(r.unwrap_err().code.as_str(), "23505"),
                7 => assert_eq!(r.unwrap_err().code.as_str(), "23502"),
                9 => assert_eq!(r.unwrap(), id),
                _ => {
                    assert_eq!(r.unwrap(), id);
                    expected.push(id);
                }
            }
        }
        assert_eq!(ids(&s.path), expected);
        let stats = s.writer.stats();
        let commits = stats.commits.load(Ordering::Relaxed);
        assert_eq!(
            stats.committed_jobs.load(Ordering::Relaxed),
            expected.len() as u64
        );
        assert!(
            commits <= 4,
            "{commits} commits for {} jobs: no group commit",
            expected.len()
        );
    }

    #[tokio::test]
    async fn a_job_that_ends_the_transaction_does_not_take_others_with_it() {
        let s = setup(T_BOOM, OpenOptions::writer(), WriterConfig::default());
        // The three jobs run in one batch.
        let batches = s.writer.stats().batches.load(Ordering::Relaxed);
        hold(&s.writer).await;
        let a = s.writer.run(0, far(), insert(1));
        let b = s.writer.run(0, far(), |ctx| {
            ctx.conn
                .execute("INSERT INTO t (id, v) VALUES (2, 'boom')", [])
                .map_err(ApiError::from)?;
            Ok((2, true))
        });
        let c = s.writer.run(0, far(), insert(3));
        let (a, b, c) = tokio::join!(a, b, c);
        assert_eq!(a.unwrap(), 1);
        let e = b.unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "P0001"), "{e:?}");
        assert_eq!(c.unwrap(), 3);
        assert_eq!(ids(&s.path), vec![1, 3]);
        // The holding job's batch, the three jobs' batch, and its re-run without the culprit.
        assert_eq!(
            s.writer.stats().batches.load(Ordering::Relaxed) - batches,
            3
        );
    }

    #[tokio::test]
    async fn a_deferred_constraint_failing_at_commit_fails_only_its_job() {
        let s = setup(
            "CREATE TABLE p (id INTEGER PRIMARY KEY);
             CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL,
               p INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED);",
            OpenOptions::writer(),
            WriterConfig::default(),
        );
        let bad = |ctx: &WriteCtx<'_>| {
            ctx.conn
                .execute("INSERT INTO t (id, v, p) VALUES (2, 'x', 42)", [])
                .map_err(ApiError::from)?;
            Ok((2, true))
        };
        hold(&s.writer).await;
        let (a, b, c) = tokio::join!(
            s.writer.run(0, far(), insert(1)),
            s.writer.run(0, far(), bad),
            s.writer.run(0, far(), insert(3))
        );
        assert_eq!(a.unwrap(), 1);
        assert_eq!(b.unwrap_err().code.as_str(), "23503");
        assert_eq!(c.unwrap(), 3);
        assert_eq!(ids(&s.path), vec![1, 3]);
        // hold, the shared batch, then each job alone.
        assert_eq!(s.writer.stats().batches.load(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn commit_notices_number_the_commits_that_wrote() {
        let s = setup(T, OpenOptions::writer(), WriterConfig::default());
        let mut rx = s.writer.subscribe_commits();
        assert_eq!(rx.borrow().seq, 0);
        for id in 1..=5 {
            s.writer.run(0, far(), insert(id)).await.unwrap();
            assert_eq!(rx.borrow_and_update().seq, id as u64);
        }
        // A job that keeps nothing commits nothing and publishes nothing.
        s.writer.run(0, far(), |_| Ok(((), false))).await.unwrap();
        assert!(!rx.has_changed().unwrap());
        // The receiver wakes up on the next commit.
        let waiter = tokio::spawn(async move {
            rx.changed().await.unwrap();
            rx.borrow().seq
        });
        s.writer.run(0, far(), insert(6)).await.unwrap();
        assert_eq!(waiter.await.unwrap(), 6);
    }

    #[tokio::test]
    async fn each_job_learns_the_commit_that_holds_its_changes() {
        let s = setup(T, OpenOptions::writer(), WriterConfig::default());
        let rx = s.writer.subscribe_commits();
        let (id, seq) = s.writer.run_committed(0, far(), insert(1)).await.unwrap();
        assert_eq!((id, seq), (1, Some(1)));
        assert_eq!(rx.borrow().seq, 1);
        // Jobs of one batch share its COMMIT; one rolled back on request, one failing and one
        // writing nothing get no commit.
        hold(&s.writer).await;
        let (a, b, c, d, e) = tokio::join!(
            s.writer.run_committed(0, far(), insert(2)),
            s.writer
                .run_committed(0, far(), |ctx| Ok((insert(3)(ctx)?.0, false))),
            s.writer.run_committed(0, far(), insert(1)),
            s.writer.run_committed(0, far(), insert(4)),
            s.writer.run_committed(0, far(), |ctx| {
                ctx.conn
                    .execute("UPDATE t SET v = 'y' WHERE id = 99", [])
                    .map_err(ApiError::from)?;
                Ok(((), true))
            }),
        );
        assert_eq!(a.unwrap(), (2, Some(2)));
        assert_eq!(b.unwrap(), (3, None));
        assert_eq!(c.unwrap_err().code.as_str(), "23505");
        assert_eq!(d.unwrap(), (4, Some(2)));
        // Kept, but its batch's COMMIT carried the others' changes: that commit holds all
        // it did (nothing), so waiting for it is right.
        assert_eq!(e.unwrap().1, Some(2));
        assert_eq!(rx.borrow().seq, 2);
        // Alone, a job that changes nothing commits nothing.
        let (_, seq) = s
            .writer
            .run_committed(0, far(), |ctx| {
                ctx.conn
                    .execute("DELETE FROM t WHERE id = 99", [])
                    .map_err(ApiError::from)?;
                Ok(((), true))
            })
            .await
            .unwrap();
        assert_eq!(seq, None);
        assert_eq!(rx.borrow().seq, 2);
    }

    #[tokio::test]
    async fn the_writer_checkpoints_as_sqlite_would_unless_the_replicator_does() {
        /// The WAL file's size after each of 20 single-row commits.
        async fn wal_sizes(checkpointer: Checkpointer) -> Vec<u64> {
            let s = setup(
                T,
                OpenOptions {
                    checkpointer,
                    ..OpenOptions::writer()
                },
                WriterConfig::default(),
            );
            let wal = format!("{}-wal", s.path);
            let mut out = Vec::new();
            for id in 1..=20 {
                s.writer.run(0, far(), insert(id)).await.unwrap();
                out.push(std::fs::metadata(&wal).unwrap().len());
            }
            out
        }
        // The replicator checkpoints: the WAL only grows.
        let replicator = wal_sizes(Checkpointer::Replicator).await;
        assert!(replicator.windows(2).all(|w| w[1] > w[0]), "{replicator:?}");
        // SQLite's automatic checkpoint, every 4 frames: the WAL restarts from its top and
        // stays small.
        let sqlite = wal_sizes(Checkpointer::Sqlite { frames: 4 }).await;
        assert!(
            sqlite.windows(2).any(|w| w[1] == w[0]),
            "never restarted: {sqlite:?}"
        );
        assert!(sqlite[19] < replicator[19], "{sqlite:?} {replicator:?}");
    }

    #[tokio::test]
    async fn busy_database_gives_503_with_retry_after() {
        let s = setup(
            T,
            OpenOptions {
                busy_timeout: Duration::from_millis(100),
                ..OpenOptions::writer()
            },
            WriterConfig::default(),
        );
        let other = Connection::open(&s.path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let e = s.writer.run(0, far(), insert(1)).await.unwrap_err();
        assert_eq!(e.status, 503);
        assert!(e.headers.iter().any(|(k, _)| *k == "Retry-After"), "{e:?}");
        other.execute_batch("ROLLBACK").unwrap();
        assert_eq!(s.writer.run(0, far(), insert(1)).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone() {
        let s = setup(T, OpenOptions::writer(), WriterConfig::default());
        let e = s
            .writer
            .run(0, far(), |ctx| -> Result<((), bool), ApiError> {
                insert(1)(ctx)?;
                panic!("a bug in a job")
            })
            .await
            .unwrap_err();
        assert_eq!(e.status, 500);
        assert_eq!(s.writer.run(0, far(), insert(2)).await.unwrap(), 2);
        assert_eq!(
            ids(&s.path),
            vec![2],
            "the panicking job's insert was rolled back"
        );
    }

    #[tokio::test]
    async fn ddl_and_attach_are_refused() {
        let s = setup(T, OpenOptions::writer(), WriterConfig::default());
        for sql in [
            "CREATE TABLE x (y)",
            "DROP TABLE t",
            "ATTACH ':memory:' AS m",
            "PRAGMA journal_mode = DELETE",
        ] {
            let e = s
                .writer
                .run(0, far(), move |ctx| {
                    ctx.conn.execute_batch(sql).map_err(ApiError::from)?;
                    Ok(((), true))
                })
                .await
                .unwrap_err();
            assert!(e.status >= 400 && e.status < 500, "{sql}: {e:?}");
        }
    }

    #[tokio::test]
    async fn shutdown_finishes_queued_jobs_then_refuses() {
        let s = setup(T, OpenOptions::writer(), WriterConfig::default());
        let jobs: Vec<_> = (1..=10)
            .map(|id| s.writer.run(0, far(), insert(id)))
            .collect();
        let (results, ()) = tokio::join!(futures::future::join_all(jobs), s.writer.shutdown());
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(ids(&s.path).len(), 10);
        assert!(s.writer.is_stopped());
        assert_eq!(
            s.writer.run(0, far(), insert(11)).await.unwrap_err().status,
            503
        );
    }

    #[tokio::test]
    async fn long_jobs_are_interrupted_at_the_budget() {
        let s = setup(T, OpenOptions::writer(), WriterConfig::default());
        // Outside any row loop: only the backstop interrupt stops it.
        let e = s
            .writer
            .run(0, Instant::now() + Duration::from_millis(100), |ctx| {
                ctx.conn
                    .query_row(
                        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c) SELECT count(*) FROM c",
                        [],
                        |r| r.get::<_, i64>(0),
                    )
                    .map_err(ApiError::from)?;
                Ok(((), true))
            })
            .await
            .unwrap_err();
        assert_eq!(e.code.as_str(), "57014");
        assert!(ids(&s.path).is_empty());
        assert_eq!(s.writer.run(0, far(), insert(1)).await.unwrap(), 1);
    }

    /// An endless write statement (it never finds a row to write) that calls the budget
    /// check on every candidate row, as every write statement the dialect builds does.
    fn endless(ctx: &WriteCtx<'_>) -> Result<((), bool), ApiError> {
        ctx.conn
            .execute(
                "INSERT INTO t (v) WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c) \
                 SELECT 'x' FROM c WHERE pgrst_budget() AND i < 0",
                [],
            )
            .map_err(ApiError::from)?;
        Ok(((), true))
    }

    #[tokio::test]
    async fn a_job_out_of_time_rolls_back_alone_and_nothing_runs_again() {
        let s = setup(T, OpenOptions::writer(), WriterConfig::default());
        hold(&s.writer).await;
        let batches = s.writer.stats().batches.load(Ordering::Relaxed);
        // One batch: a quick insert, an endless write with a short budget, another insert.
        let soon = Instant::now() + Duration::from_millis(300);
        let (a, slow, c) = tokio::join!(
            s.writer.run(0, far(), insert(1)),
            s.writer.run(0, soon, endless),
            s.writer.run(0, far(), insert(3))
        );
        assert_eq!(a.unwrap(), 1);
        let e = slow.unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (504, "57014"), "{e:?}");
        assert_eq!(c.unwrap(), 3);
        assert_eq!(ids(&s.path), vec![1, 3]);
        let stats = s.writer.stats();
        assert_eq!(stats.reruns.load(Ordering::Relaxed), 0, "a job ran again");
        assert_eq!(stats.batches.load(Ordering::Relaxed) - batches, 1);
    }

    #[tokio::test]
    async fn a_slow_job_yields_so_the_jobs_before_it_are_answered_in_time() {
        let s = setup(T, OpenOptions::writer(), WriterConfig::default());
        hold(&s.writer).await;
        let start = Instant::now();
        let budget = Duration::from_millis(1500);
        // The quick insert's budget ends long before the slow job's.
        let (a, slow) = tokio::join!(
            async {
                let r = s.writer.run(0, start + budget, insert(1)).await;
                (r, start.elapsed())
            },
            s.writer.run(0, start + Duration::from_secs(4), endless),
        );
        let (a, answered) = (a.0.unwrap(), a.1);
        assert_eq!(a, 1);
        assert!(answered < budget, "answered after {answered:?}");
        assert_eq!(slow.unwrap_err().code.as_str(), "57014");
        assert_eq!(ids(&s.path), vec![1]);
        assert_eq!(s.writer.stats().reruns.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_job_whose_savepoint_cannot_be_ended_keeps_nothing() {
        let s = setup(T, OpenOptions::writer(), WriterConfig::default());
        hold(&s.writer).await;
        let (a, b) = tokio::join!(
            s.writer.run(0, far(), insert(1)),
            s.writer.run(0, far(), |ctx| {
                insert(2)(ctx)?;
                // A fault: the job's savepoint is gone when the writer ends it.
                ctx.conn
                    .execute_batch("RELEASE pgrst_job")
                    .map_err(ApiError::from)?;
                Ok((2, true))
            }),
        );
        assert_eq!(a.unwrap(), 1);
        assert!(b.is_err(), "{b:?}");
        assert_eq!(
            ids(&s.path),
            vec![1],
            "a write answered with an error was committed"
        );
    }

    /// How many rows `t` holds, seen from inside the job's transaction.
    fn count(ctx: &WriteCtx<'_>) -> Result<i64, ApiError> {
        ctx.conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .map_err(ApiError::from)
    }

    #[tokio::test]
    async fn no_answer_describes_a_write_that_was_never_committed() {
        let s = setup(T_BOOM, OpenOptions::writer(), WriterConfig::default());
        hold(&s.writer).await;
        // One batch: `a` inserts row 1 with a short budget; `b` counts the rows and asks for
        // its own changes to be rolled back (`Prefer: tx=rollback`); `c` inserts row 1 too;
        // `d` outlives `a`'s budget, then ends the whole transaction.
        let short = Instant::now() + Duration::from_millis(400);
        let (a, b, c, d) = tokio::join!(
            s.writer.run(0, short, insert(1)),
            s.writer.run(0, far(), |ctx| Ok((count(ctx)?, false))),
            s.writer.run(0, far(), insert(1)),
            s.writer.run(0, far(), |ctx| {
                std::thread::sleep(Duration::from_millis(800));
                ctx.conn
                    .execute("INSERT INTO t (id, v) VALUES (9, 'boom')", [])
                    .map_err(ApiError::from)?;
                Ok((9, true))
            }),
        );
        assert_eq!(d.unwrap_err().code.as_str(), "P0001");
        // `a` was rolled back with `d`'s transaction and its budget was gone by then.
        let a = a.unwrap_err();
        assert_eq!((a.status, a.code.as_str()), (504, "57014"), "{a:?}");
        // So nobody may have been told of row 1 by `a`: `b` counts what was committed before
        // it, and `c`'s insert meets no conflict.
        assert_eq!(
            b.unwrap(),
            0,
            "b was answered with a row that was never committed"
        );
        assert_eq!(c.unwrap(), 1, "c failed on a row that was never committed");
        assert_eq!(ids(&s.path), vec![1]);
    }

    #[tokio::test]
    async fn queued_jobs_past_their_budget_or_without_a_requester_never_run() {
        let s = setup(T, OpenOptions::writer(), WriterConfig::default());
        hold(&s.writer).await;
        // Its budget ends while the holding job still runs: answered 504 at its deadline.
        let e = s
            .writer
            .run(0, Instant::now() + Duration::from_millis(20), insert(1))
            .await
            .unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (504, "57014"));
        // Its requester leaves while it is queued.
        hold(&s.writer).await;
        let gone = s.writer.run(0, far(), insert(2));
        let _ = tokio::time::timeout(Duration::from_millis(20), gone).await;
        assert_eq!(s.writer.run(0, far(), insert(3)).await.unwrap(), 3);
        assert_eq!(ids(&s.path), vec![3]);
        assert!(s.writer.stats().dropped.load(Ordering::Relaxed) >= 2);
    }
}
