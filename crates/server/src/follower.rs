//! Read replicas (`serve --replication-follow`): a server that follows the object-store
//! replica another server (or `litestream replicate`) writes, and serves reads from it.
//!
//! - [`start`] runs before the database is opened: it reads `--replication-config`, opens the
//!   replica, and either resumes the local database at the TXID recorded beside it
//!   (`<db>-follow-txid`) or restores the latest state (the restore code of `restore`). Then
//!   it applies every file the replica already holds after that TXID, before anything is
//!   served.
//! - [`Follower::run`] polls the replica: one LIST of level 0 starting after the applied
//!   TXID per poll (the replica's `sync-interval`, default 1 s); when the next level-0 file
//!   is gone (compaction, retention) a file of a higher level that covers the gap bridges it
//!   (looked for at once when level 0 skips TXIDs, and every 30 polls when it holds nothing
//!   newer).
//!   Each file is downloaded whole and decoded (the LTX decoder checks the file checksum and
//!   the page index) before anything is written; a file that carries database checksums must
//!   start from the database's current checksum and end at its post-apply checksum, else it is
//!   rejected and the previous state kept.
//! - A file is applied in ONE write transaction through SQLite's `sqlite_dbpage` virtual table
//!   (page images written as they are, then a truncation to the file's page count when the
//!   database shrank, which `sqlite_dbpage` applies at COMMIT). The database is in WAL mode:
//!   the read pool's transactions keep their snapshot and see the whole file at their next
//!   transaction, never half of it. The applying connection itself never reads a table: its
//!   b-tree layer keeps what it parsed of a page, which a page image written underneath it
//!   does not reset.
//! - Before applying anything, each poll checks that the replica still continues what the
//!   follower applied (its lineage): the file applied last (the anchor) must still be listed
//!   as it was, and no other level-0 file may cover the applied TXID. A listing that lost the
//!   anchor is followed by a look at every level: a replica with no file at all was deleted
//!   (unready until it comes back), one whose highest TXID is below the applied one went
//!   backwards (unready, nothing applied), and a file at the applied TXID whose pages are not
//!   the database's is another lineage (the follower stops applying for good).
//! - Idle polls back off: the interval doubles while nothing is new, up to 8 times the
//!   configured one (at most 30 s, never below the configured one), and resets on a new file.
//! - [`FollowHandle`] is what the API and the admin server see: the applied TXID (every read's
//!   `Sqlite-Rest-Txid`, `Prefer: min-txid` waits on it), and the state behind `/health`'s
//!   `follower` component and `/ready`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use ltx::{Checksum, DbChecksum, Decoder, TxId};
use parking_lot::Mutex;
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use replication::restore::{self, RestoreOptions, RestoreTarget};
use replication::{
    ClientOptions, Config, Level, ListOptions, LoadOptions, LtxFileInfo, NetworkOptions,
    ReplicaClient, ReplicaMetrics, open_client,
};
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::admin::HealthReport;

/// `--replication-follow` and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowSettings {
    pub config_path: PathBuf,
    /// `--replication-primary-url`, named in the answer to writes.
    pub primary_url: Option<String>,
    /// `--replication-follow-wait-ms`: the longest wait of a `Prefer: min-txid` read.
    pub wait: Duration,
    /// `--replication-follow-max-lag-ms`: unready when polls have failed for longer, or when
    /// the oldest replica file not applied yet is older.
    pub max_lag: Duration,
}

/// Polls between two looks at the levels above 0 while level 0 holds nothing newer.
const LEVEL_CHECK_EVERY: u64 = 30;

/// The default poll interval (the replica's `sync-interval` when the config sets it).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Idle back-off: the interval grows to at most this many times the configured one...
const IDLE_BACKOFF_FACTOR: u32 = 8;
/// ...and never beyond this (unless the configured interval itself is longer).
const IDLE_BACKOFF_CAP: Duration = Duration::from_secs(30);

/// The longest interval between idle polls for a configured `interval`.
fn idle_interval_cap(interval: Duration) -> Duration {
    (interval * IDLE_BACKOFF_FACTOR)
        .min(IDLE_BACKOFF_CAP)
        .max(interval)
}

/// What the API and admin server see of a follower.
#[derive(Clone)]
pub struct FollowHandle {
    applied: watch::Receiver<TxId>,
    state: Arc<Mutex<State>>,
    pub primary_url: Option<String>,
    pub wait: Duration,
    max_lag: Duration,
}

impl FollowHandle {
    /// The TXID the local database is at.
    pub fn applied(&self) -> TxId {
        *self.applied.borrow()
    }

    /// A receiver of the applied TXID, to wait for a position.
    pub fn subscribe(&self) -> watch::Receiver<TxId> {
        self.applied.clone()
    }

    /// `/health`'s `follower` component; `"ok"` and `"ready"` are false while polling has
    /// failed for longer than `--replication-follow-max-lag-ms`, while the oldest replica file
    /// not applied yet is older than that, while a file is rejected, and while the replica is
    /// gone, went backwards or holds another lineage.
    pub fn health_json(&self) -> serde_json::Value {
        let s = self.state.lock().clone();
        health_of(&s, self.applied(), self.max_lag, SystemTime::now())
    }
}

/// The `follower` health component of `s` at `now` (see [`FollowHandle::health_json`]).
fn health_of(s: &State, applied: TxId, max_lag: Duration, now: SystemTime) -> serde_json::Value {
    let since_ok = s
        .last_ok_poll
        .and_then(|t| now.duration_since(t).ok())
        .unwrap_or(Duration::MAX);
    let lag = s
        .oldest_unapplied
        .map(|t| now.duration_since(t).unwrap_or(Duration::ZERO))
        .unwrap_or(Duration::ZERO);
    let mut reasons = Vec::new();
    if let Some(p) = &s.replica_problem {
        reasons.push(p.clone());
    }
    // An idle follower polls rarely (back-off), so only failures count here, not the
    // time since the last poll.
    if s.consecutive_errors > 0 && since_ok > max_lag {
        reasons.push(format!(
            "the replica has not been read successfully for more than {} ms ({} consecutive failed polls)",
            max_lag.as_millis(),
            s.consecutive_errors
        ));
    }
    if lag > max_lag {
        reasons.push(format!(
            "the oldest replica file not applied yet appeared {} ms ago (more than --replication-follow-max-lag-ms {})",
            lag.as_millis(),
            max_lag.as_millis()
        ));
    }
    if let Some(r) = &s.rejected {
        reasons.push(format!("LTX file {} rejected: {}", r.file, r.reason));
    }
    let ok = reasons.is_empty();
    let lag_txids = s.replica_txid.get().saturating_sub(applied.get());
    let mut v = serde_json::json!({
        "ok": ok,
        "ready": ok,
        "applied_txid": applied.to_string(),
        "replica_txid": s.replica_txid.max(applied).to_string(),
        "lag_txids": lag_txids,
        "lag_ms": lag.as_millis() as u64,
        "failed_polls": s.consecutive_errors,
    });
    if !reasons.is_empty() {
        v["why"] = reasons.join("; ").into();
    }
    if let Some(f) = &s.last_file {
        v["last_applied_file"] = f.clone().into();
    }
    if let Some(t) = s.last_ok_poll {
        v["last_poll"] = chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339().into();
    }
    if let Some(op) = s.failing {
        v["failing"] = op.into();
    }
    v
}

/// A rejected file: which, and why (the LTX decoder's or the checksum check's words; they
/// describe the file's content, never the replica's address).
#[derive(Debug, Clone)]
struct Rejected {
    file: String,
    reason: String,
}

#[derive(Debug, Clone)]
struct State {
    last_ok_poll: Option<SystemTime>,
    consecutive_errors: u64,
    /// The operation failing (`list`, `read`, `apply`), while it fails.
    failing: Option<&'static str>,
    rejected: Option<Rejected>,
    /// The highest MaxTXID the last listing showed.
    replica_txid: TxId,
    /// When the oldest file the last listing showed and the follower has not applied yet
    /// was created (None when caught up); the lag is measured from it when asked.
    oldest_unapplied: Option<SystemTime>,
    /// The replica no longer continues the follower's database (gone, went backwards,
    /// another lineage): what `/health` says, until a poll succeeds again.
    replica_problem: Option<String>,
    last_file: Option<String>,
}

/// The follower's metrics (`sqlite_rest_follower_*`); the replica's requests are counted in
/// `litestream_replica_operation_total` like the primary's.
struct FollowMetrics {
    applied_txid: IntGauge,
    lag_txids: IntGauge,
    lag_seconds: Gauge,
    files_applied: IntCounter,
    errors: IntCounterVec,
}

impl FollowMetrics {
    fn register(registry: &Registry) -> anyhow::Result<FollowMetrics> {
        let m = FollowMetrics {
            applied_txid: IntGauge::new(
                "sqlite_rest_follower_applied_txid",
                "TXID the follower's database is at",
            )?,
            lag_txids: IntGauge::new(
                "sqlite_rest_follower_lag_txids",
                "Transactions the replica holds that the follower has not applied yet",
            )?,
            lag_seconds: Gauge::new(
                "sqlite_rest_follower_lag_seconds",
                "Age of the oldest replica file the follower has not applied yet",
            )?,
            files_applied: IntCounter::new(
                "sqlite_rest_follower_files_applied_total",
                "LTX files the follower applied",
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "sqlite_rest_follower_errors_total",
                    "Failed follower operations (list, read, apply, rejected, gap, gone, backwards, diverged)",
                ),
                &["operation"],
            )?,
        };
        registry.register(Box::new(m.applied_txid.clone()))?;
        registry.register(Box::new(m.lag_txids.clone()))?;
        registry.register(Box::new(m.lag_seconds.clone()))?;
        registry.register(Box::new(m.files_applied.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        Ok(m)
    }
}

/// A started follower: the replica, the applying connection, the positions.
pub struct Follower {
    client: Arc<dyn ReplicaClient>,
    db: PathBuf,
    conn: Arc<std::sync::Mutex<Connection>>,
    interval: Duration,
    applied: watch::Sender<TxId>,
    handle: FollowHandle,
    metrics: FollowMetrics,
    /// Polls so far.
    polls: std::sync::atomic::AtomicU64,
    /// The file applied last, as the replica listed it: the replica must keep listing it as
    /// it was (or hold the same pages under it) for the follower to go on. None after a
    /// resume or once retention removed it, until a look at the levels finds it.
    anchor: Mutex<Option<LtxFileInfo>>,
    /// Set for good once the replica showed another lineage: nothing is applied any more.
    diverged: Mutex<Option<(String, String)>>,
}

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error("{operation}: {source}")]
    Replica {
        operation: &'static str,
        source: replication::ClientError,
    },
    #[error("{file}: {reason}")]
    Rejected { file: String, reason: String },
    #[error("applying {file}: {source}")]
    Apply { file: String, source: anyhow::Error },
    #[error(
        "the replica has no file continuing TXID {applied} (the next one starts at {next}); a full restore is needed"
    )]
    Gap { applied: TxId, next: TxId },
    #[error(
        "the replica is gone: it holds no LTX file at all, but the follower applied TXID {applied} (the replica was deleted or emptied); the follower keeps serving TXID {applied} and is unready until the replica comes back"
    )]
    Gone { applied: TxId },
    #[error(
        "the replica went backwards: its highest TXID is {replica}, the follower applied {applied} (a primary restored from an older point, or another database at the replica's path); the follower applies nothing until the replica holds TXID {applied} again"
    )]
    Backwards { applied: TxId, replica: TxId },
    #[error(
        "another lineage is at the replica's path: {file} {reason}; the follower stopped applying files (remove its database and restart it to follow the new lineage)"
    )]
    Diverged { file: String, reason: String },
}

/// The file beside the database recording the TXID it is at.
fn txid_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-follow-txid");
    PathBuf::from(s)
}

fn read_recorded_txid(db: &Path) -> Option<TxId> {
    let text = std::fs::read_to_string(txid_path(db)).ok()?;
    text.trim().parse::<TxId>().ok()
}

/// Records the applied TXID (atomically: a temp file renamed over it). Written after the
/// COMMIT, so it never runs ahead of the database; a crash in between replays files, which
/// is harmless before serving (files hold page images).
fn record_txid(db: &Path, txid: TxId) -> std::io::Result<()> {
    let path = txid_path(db);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{txid}\n"))?;
    std::fs::rename(&tmp, &path)
}

/// Loads the config, opens the replica, and restores or resumes the database (see the module
/// docs). Runs before the server opens the database.
pub async fn start(
    settings: &FollowSettings,
    dsn: &str,
    registry: &Registry,
) -> anyhow::Result<Follower> {
    let config = Config::load(&settings.config_path, LoadOptions::default())
        .with_context(|| format!("--replication-config {}", settings.config_path.display()))?;
    let db = crate::embedded_replication::db_path(dsn)?;
    let entry = config
        .find_db(&db)
        .with_context(|| format!("--replication-config {}", settings.config_path.display()))?;
    let interval = if entry.replica.upload_interval.is_some() {
        entry.replica.sync_interval
    } else {
        DEFAULT_INTERVAL
    }
    .max(Duration::from_millis(10));
    let target = entry.replica.target.clone();
    let client: Arc<dyn ReplicaClient> = open_client(
        &target,
        &ClientOptions {
            metrics: Some(ReplicaMetrics::register(registry)?),
            network: NetworkOptions::from_env().map_err(anyhow::Error::msg)?,
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("replica {}", target.describe()))?;

    let resumed = match read_recorded_txid(&db) {
        Some(txid) if db.exists() => Some(txid),
        _ => None,
    };
    let txid = match resumed {
        Some(txid) => {
            tracing::info!(db = %db.display(), txid = %txid, "follower resumes its database");
            txid
        }
        None => {
            restore::prepare_output(&db, true)?;
            let _ = std::fs::remove_file(txid_path(&db));
            let plan = restore::plan(client.as_ref(), RestoreTarget::Latest, false)
                .await
                .with_context(|| {
                    format!(
                        "restoring {} from {} to follow it",
                        db.display(),
                        target.describe()
                    )
                })?;
            let restored = restore::restore(&client, &plan, &RestoreOptions::new(&db))
                .await
                .with_context(|| format!("restoring {}", db.display()))?;
            record_txid(&db, restored.txid)
                .with_context(|| format!("writing {}", txid_path(&db).display()))?;
            tracing::info!(db = %db.display(), txid = %restored.txid, "follower restored its database");
            restored.txid
        }
    };
    let conn = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || open_apply_connection(&db)).await??
    };
    let (applied, rx) = watch::channel(txid);
    let metrics = FollowMetrics::register(registry)?;
    metrics.applied_txid.set(txid.get() as i64);
    let handle = FollowHandle {
        applied: rx,
        state: Arc::new(Mutex::new(State {
            last_ok_poll: None,
            consecutive_errors: 0,
            failing: None,
            rejected: None,
            replica_txid: txid,
            oldest_unapplied: None,
            replica_problem: None,
            last_file: None,
        })),
        primary_url: settings.primary_url.clone(),
        wait: settings.wait,
        max_lag: settings.max_lag,
    };
    let follower = Follower {
        client,
        db,
        conn: Arc::new(std::sync::Mutex::new(conn)),
        interval,
        applied,
        handle,
        metrics,
        polls: std::sync::atomic::AtomicU64::new(0),
        anchor: Mutex::new(None),
        diverged: Mutex::new(None),
    };
    // Catch up before serving: a resumed database may be far behind (and replaying files
    // after a crash between a COMMIT and its recorded TXID must not be seen by readers).
    follower
        .poll()
        .await
        .context("catching up with the replica before serving")?;
    Ok(follower)
}

/// The connection that applies files: WAL (so readers keep their snapshots), full
/// synchronous (a recorded TXID is never ahead of the database after a power loss).
fn open_apply_connection(db: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
    conn.busy_timeout(Duration::from_secs(30))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        anyhow::bail!(
            "{} cannot be put in WAL mode (journal_mode {mode})",
            db.display()
        );
    }
    conn.execute_batch("PRAGMA synchronous=FULL")?;
    // Fails here, at start-up, if the bundled SQLite lacks the virtual table.
    conn.query_row(
        "SELECT count(*) FROM sqlite_dbpage WHERE pgno = 1",
        [],
        |r| r.get::<_, i64>(0),
    )
    .context("the SQLite library has no sqlite_dbpage (SQLITE_ENABLE_DBPAGE_VTAB)")?;
    Ok(conn)
}

impl Follower {
    pub fn handle(&self) -> FollowHandle {
        self.handle.clone()
    }

    /// Polls until `stop`, reporting to `/health` (see the module docs).
    pub async fn run(self, health: Arc<HealthReport>, stop: CancellationToken) {
        let cap = idle_interval_cap(self.interval);
        let mut wait = self.interval;
        loop {
            // `/health` is refreshed every configured interval while a backed-off wait
            // runs, so the lag it reports (and `/ready`) stays current.
            let until = tokio::time::Instant::now() + wait;
            loop {
                health.set("follower", self.handle.health_json());
                let now = tokio::time::Instant::now();
                if now >= until {
                    break;
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep((until - now).min(self.interval)) => {}
                }
            }
            wait = match self.poll().await {
                Ok(0) => (wait * 2).min(cap),
                Ok(_) => self.interval,
                Err(e) => {
                    tracing::warn!(error = %e, "follower poll failed");
                    self.interval
                }
            };
        }
    }

    /// One poll: list, check the lineage, bridge a gap, apply every new file in order.
    /// Records the outcome; the number of files applied.
    async fn poll(&self) -> Result<usize, PollError> {
        let result = self.poll_inner().await;
        let mut s = self.handle.state.lock();
        match &result {
            Ok(_) => {
                s.last_ok_poll = Some(SystemTime::now());
                s.consecutive_errors = 0;
                s.failing = None;
                s.rejected = None;
                s.replica_problem = None;
            }
            Err(e) => {
                s.consecutive_errors += 1;
                s.replica_problem = None;
                let op = match e {
                    PollError::Replica { operation, .. } => *operation,
                    PollError::Rejected { file, reason } => {
                        s.rejected = Some(Rejected {
                            file: file.clone(),
                            reason: reason.clone(),
                        });
                        "rejected"
                    }
                    PollError::Apply { .. } => "apply",
                    PollError::Gap { .. } => "gap",
                    PollError::Gone { .. } => "gone",
                    PollError::Backwards { .. } => "backwards",
                    PollError::Diverged { .. } => "diverged",
                };
                if matches!(
                    e,
                    PollError::Gone { .. }
                        | PollError::Backwards { .. }
                        | PollError::Diverged { .. }
                ) {
                    s.replica_problem = Some(e.to_string());
                }
                s.failing = Some(op);
                self.metrics.errors.with_label_values(&[op]).inc();
            }
        }
        result
    }

    async fn poll_inner(&self) -> Result<usize, PollError> {
        if let Some((file, reason)) = self.diverged.lock().clone() {
            return Err(PollError::Diverged { file, reason });
        }
        let applied = *self.applied.borrow();
        let anchor = *self.anchor.lock();
        // The listing starts at the anchor when it is a level-0 file, so it shows the anchor
        // itself (and anything of another lineage that overlaps it) besides the new files.
        let seek = match &anchor {
            Some(a) if a.level == Level::L0 => a.name.min,
            _ => TxId(applied.get().saturating_add(1)),
        };
        let listed = self
            .client
            .list(
                Level::L0,
                ListOptions {
                    seek: Some(seek),
                    precise_timestamps: false,
                },
            )
            .await
            .map_err(|source| PollError::Replica {
                operation: "list",
                source,
            })?;
        // One lineage's level-0 files never overlap: two listed files that do are two
        // writers' (two primaries on one replica path), and neither is applied.
        if let Some(pair) = listed.windows(2).find(|w| w[1].name.min <= w[0].name.max) {
            return Err(self.diverge(
                &pair[1],
                format!(
                    "overlaps the level-0 file {} (two primaries writing to one replica path)",
                    pair[0].name
                ),
            ));
        }
        let anchor_missing = match &anchor {
            Some(a) if a.level == Level::L0 => !self.check_anchor(a, &listed, applied).await?,
            _ => false,
        };
        let mut pending: Vec<LtxFileInfo> = listed
            .into_iter()
            .filter(|f| f.name.max > applied)
            .collect();
        self.note_pending(&pending, applied);
        // The levels are looked at when level 0 does not continue the applied TXID: at once
        // when its next file starts beyond it or the anchor vanished, and every
        // LEVEL_CHECK_EVERY polls when it holds nothing newer, since compaction and
        // retention may have taken every newer level-0 file away, and the replica may have
        // been deleted or rewound without a trace in that listing; and at the first poll,
        // so a restarted follower checks the lineage of what it resumed before applying.
        let polls = self
            .polls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let gap = pending
            .first()
            .filter(|f| f.name.min.get() > applied.get().saturating_add(1));
        if gap.is_some()
            || anchor_missing
            || polls == 0
            || (pending.is_empty() && polls.is_multiple_of(LEVEL_CHECK_EVERY))
        {
            let survey = self.survey(applied, anchor.as_ref()).await?;
            match (survey, gap) {
                (Some(b), _) => pending.insert(0, b),
                (None, Some(first)) => {
                    return Err(PollError::Gap {
                        applied,
                        next: first.name.min,
                    });
                }
                (None, None) => {}
            }
        }
        let mut count = 0;
        for file in pending {
            let at = *self.applied.borrow();
            if file.name.max <= at {
                continue;
            }
            if file.name.min.get() > at.get().saturating_add(1) {
                return Err(PollError::Gap {
                    applied: at,
                    next: file.name.min,
                });
            }
            self.apply(file, at).await?;
            count += 1;
        }
        let done = *self.applied.borrow();
        let mut s = self.handle.state.lock();
        if s.replica_txid <= done {
            s.oldest_unapplied = None;
        }
        self.metrics
            .lag_txids
            .set(s.replica_txid.get().saturating_sub(done.get()) as i64);
        let lag = s
            .oldest_unapplied
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or(Duration::ZERO);
        self.metrics.lag_seconds.set(lag.as_secs_f64());
        Ok(count)
    }

    /// Checks the level-0 listing (from the anchor on) against the anchor: false when the
    /// anchor is not listed; an error when the listing shows another lineage.
    async fn check_anchor(
        &self,
        anchor: &LtxFileInfo,
        listed: &[LtxFileInfo],
        applied: TxId,
    ) -> Result<bool, PollError> {
        // One lineage's level-0 files never overlap: another file starting at or before the
        // applied TXID is not ours.
        if let Some(other) = listed
            .iter()
            .find(|f| f.name != anchor.name && f.name.min <= applied)
        {
            return Err(self.diverge(
                other,
                format!(
                    "covers TXIDs {}..{}, which overlap the file {}/{} the follower applied",
                    other.name.min, other.name.max, anchor.level, anchor.name
                ),
            ));
        }
        let Some(listed) = listed.iter().find(|f| f.name == anchor.name) else {
            return Ok(false);
        };
        if listed.size != anchor.size || listed.created_at != anchor.created_at {
            // Rewritten, or copied back: the same file only when its pages are the
            // database's (it is the last file applied, so nothing has changed them since).
            self.same_pages(listed).await?;
            *self.anchor.lock() = Some(*listed);
        }
        Ok(true)
    }

    /// Fails (another lineage) unless every page of `file` is the database's page.
    async fn same_pages(&self, file: &LtxFileInfo) -> Result<(), PollError> {
        let (_, differs) = self
            .on_file(file, "compare", |conn, bytes, label| {
                first_differing_page(conn, bytes, label)
            })
            .await?;
        match differs {
            None => Ok(()),
            Some(why) => Err(self.diverge(
                file,
                format!("is not the file the follower applied under that name: {why}"),
            )),
        }
    }

    /// Downloads `file` whole and runs `f` on it with the applying connection, off the async
    /// workers; `f`'s errors and the answer name the file (`<level>/<name>`), `step` names
    /// what `f` does if its task fails.
    async fn on_file<T: Send + 'static>(
        &self,
        file: &LtxFileInfo,
        step: &'static str,
        f: impl FnOnce(&mut Connection, &[u8], &str) -> Result<T, PollError> + Send + 'static,
    ) -> Result<(String, T), PollError> {
        let label = format!("{}/{}", file.level, file.name);
        let bytes = self
            .client
            .read(file.level, file.name, replication::ReadRange::Full)
            .await
            .map_err(|source| PollError::Replica {
                operation: "read",
                source,
            })?;
        let conn = self.conn.clone();
        let task_label = label.clone();
        let out = tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| apply_error(&task_label, anyhow::anyhow!("connection poisoned")))?;
            f(&mut conn, &bytes, &task_label)
        })
        .await
        .map_err(|e| apply_error(&label, anyhow::anyhow!("{step} task failed: {e}")))??;
        Ok((label, out))
    }

    /// Records the divergence for good; the error to return.
    fn diverge(&self, file: &LtxFileInfo, reason: String) -> PollError {
        let file = format!("{}/{}", file.level, file.name);
        tracing::error!(file = %file, reason = %reason, "the replica holds another lineage; the follower stops applying");
        *self.diverged.lock() = Some((file.clone(), reason.clone()));
        PollError::Diverged { file, reason }
    }

    /// Records what the listing shows beyond the applied TXID (lag in TXIDs and time).
    fn note_pending(&self, pending: &[LtxFileInfo], applied: TxId) {
        let mut s = self.handle.state.lock();
        s.replica_txid = pending
            .iter()
            .map(|f| f.name.max)
            .max()
            .unwrap_or(applied)
            .max(applied);
        s.oldest_unapplied = pending
            .iter()
            .map(|f| f.created_at)
            .min()
            .map(SystemTime::from);
    }

    /// Looks at every level: refuses a replica that is gone, went backwards, or holds a
    /// level-0 file of another lineage at the applied TXID; finds the anchor when it is not
    /// known; returns the file of a compaction level (1..=8) that continues `applied` when
    /// the next level-0 files are gone (the one reaching furthest).
    async fn survey(
        &self,
        applied: TxId,
        anchor: Option<&LtxFileInfo>,
    ) -> Result<Option<LtxFileInfo>, PollError> {
        let levels = self
            .client
            .levels()
            .await
            .map_err(|source| PollError::Replica {
                operation: "list",
                source,
            })?;
        let mut best: Option<LtxFileInfo> = None;
        let mut highest: Option<TxId> = None;
        let mut ends_at_applied: Option<LtxFileInfo> = None;
        for level in levels {
            let files = self
                .client
                .list(level, ListOptions::default())
                .await
                .map_err(|source| PollError::Replica {
                    operation: "list",
                    source,
                })?;
            for f in files {
                highest = highest.max(Some(f.name.max));
                if level == Level::L0 {
                    if f.name.min <= applied && f.name.max > applied {
                        return Err(self.diverge(
                            &f,
                            format!(
                                "covers TXIDs {}..{} across the applied TXID {applied}, which no level-0 file of the follower's lineage does",
                                f.name.min, f.name.max
                            ),
                        ));
                    }
                    if f.name.max == applied {
                        ends_at_applied = Some(f);
                    }
                    continue;
                }
                if !level.is_snapshot()
                    && f.name.min.get() <= applied.get().saturating_add(1)
                    && f.name.max > applied
                    && best.as_ref().is_none_or(|b| f.name.max > b.name.max)
                {
                    best = Some(f);
                }
            }
        }
        if applied.get() > 0 {
            match highest {
                None => return Err(PollError::Gone { applied }),
                Some(h) if h < applied => {
                    return Err(PollError::Backwards {
                        applied,
                        replica: h,
                    });
                }
                Some(_) => {}
            }
        }
        match (anchor, ends_at_applied) {
            // The level-0 file at the applied TXID is not the one applied: the same file
            // only if its pages are the database's.
            (Some(a), Some(f)) if a.level == Level::L0 && a.name != f.name => {
                self.same_pages(&f).await?;
                *self.anchor.lock() = Some(f);
            }
            (Some(a), Some(_)) if a.level == Level::L0 => {}
            // No level-0 anchor yet (a resumed or restored database, a bridged gap): the
            // level-0 file at the applied TXID becomes it once its pages are the database's.
            (_, Some(f)) => {
                self.same_pages(&f).await?;
                *self.anchor.lock() = Some(f);
            }
            // Retention removed the level-0 file at the applied TXID: the lineage is checked
            // again from the next file applied.
            (_, None) => *self.anchor.lock() = None,
        }
        Ok(best)
    }

    /// Downloads, verifies and applies one file in one transaction.
    async fn apply(&self, file: LtxFileInfo, at: TxId) -> Result<(), PollError> {
        let (label, outcome) = self
            .on_file(&file, "apply", move |conn, bytes, label| {
                apply_file(conn, bytes, at, label)
            })
            .await?;
        let _ = self.applied.send(outcome);
        if let Err(e) = record_txid(&self.db, outcome) {
            tracing::warn!(error = %e, "cannot record the follower's TXID");
        }
        self.metrics.applied_txid.set(outcome.get() as i64);
        self.metrics.files_applied.inc();
        self.handle.state.lock().last_file = Some(label.clone());
        *self.anchor.lock() = Some(file);
        tracing::debug!(file = %label, txid = %outcome, "follower applied a file");
        Ok(())
    }
}

fn apply_error(file: &str, source: anyhow::Error) -> PollError {
    PollError::Apply {
        file: file.to_string(),
        source,
    }
}

fn rejected(file: &str, reason: impl Into<String>) -> PollError {
    PollError::Rejected {
        file: file.to_string(),
        reason: reason.into(),
    }
}

/// Decodes the whole file (rejecting it on any format or checksum error), then writes its
/// pages in one transaction; the TXID the database is at afterwards.
fn apply_file(
    conn: &mut Connection,
    bytes: &[u8],
    at: TxId,
    file: &str,
) -> Result<TxId, PollError> {
    // The whole file is decoded (file checksum, page index) before anything is checked or
    // written: a damaged file is rejected for what it is.
    let mut dec = Decoder::new(bytes).map_err(|e| rejected(file, e.to_string()))?;
    let header = *dec.header();
    let mut pages: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut buf = vec![0u8; header.page_size as usize];
    while let Some(pgno) = dec
        .next_page(&mut buf)
        .map_err(|e| rejected(file, e.to_string()))?
    {
        pages.push((pgno, buf.clone()));
    }
    let decoded = dec.finish().map_err(|e| rejected(file, e.to_string()))?;
    if header.min_txid.get() > at.get().saturating_add(1) || header.max_txid <= at {
        return Err(rejected(
            file,
            format!(
                "covers TXIDs {}..{} but the database is at {at}",
                header.min_txid, header.max_txid
            ),
        ));
    }
    let page_size: u32 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(|e| apply_error(file, e.into()))?;
    if header.page_size != page_size {
        return Err(rejected(
            file,
            format!(
                "page size {} differs from the database's {page_size}",
                header.page_size
            ),
        ));
    }

    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| apply_error(file, e.into()))?;
    let checksums = !header.no_checksum();
    if checksums && !header.is_snapshot() {
        let before = db_checksum(&tx, page_size, None).map_err(|e| apply_error(file, e))?;
        if before != header.pre_apply_checksum {
            return Err(rejected(
                file,
                format!(
                    "its pre-apply checksum {} is not the database's {before}",
                    header.pre_apply_checksum
                ),
            ));
        }
    }
    {
        let mut insert = tx
            .prepare_cached("INSERT INTO sqlite_dbpage(pgno, data) VALUES (?1, ?2)")
            .map_err(|e| apply_error(file, e.into()))?;
        for (pgno, data) in &pages {
            if *pgno > header.commit {
                continue;
            }
            insert
                .execute(params![pgno, data])
                .map_err(|e| apply_error(file, e.into()))?;
        }
        let count: u32 = tx
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(|e| apply_error(file, e.into()))?;
        if header.commit < count {
            // The database shrank: sqlite_dbpage truncates at COMMIT (must be the last write).
            insert
                .execute(params![header.commit + 1, Option::<Vec<u8>>::None])
                .map_err(|e| apply_error(file, e.into()))?;
        }
    }
    if checksums {
        let after =
            db_checksum(&tx, page_size, Some(header.commit)).map_err(|e| apply_error(file, e))?;
        if after != decoded.trailer.post_apply_checksum {
            // Dropping the transaction rolls it back: the previous state stays.
            return Err(rejected(
                file,
                format!(
                    "the database would be at checksum {after}, not the file's post-apply {}",
                    decoded.trailer.post_apply_checksum
                ),
            ));
        }
    }
    tx.commit().map_err(|e| apply_error(file, e.into()))?;
    Ok(header.max_txid)
}

/// Decodes `bytes` (an LTX file) and compares its pages with the database's: None when the
/// database is in the state the file leaves it in (same page count, every page equal),
/// else which page differs.
fn first_differing_page(
    conn: &Connection,
    bytes: &[u8],
    file: &str,
) -> Result<Option<String>, PollError> {
    let mut dec = Decoder::new(bytes).map_err(|e| rejected(file, e.to_string()))?;
    let header = *dec.header();
    let count: u32 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(|e| apply_error(file, e.into()))?;
    if count != header.commit {
        return Ok(Some(format!(
            "it leaves {} pages, the database has {count}",
            header.commit
        )));
    }
    let mut page = conn
        .prepare("SELECT data FROM sqlite_dbpage WHERE pgno = ?1")
        .map_err(|e| apply_error(file, e.into()))?;
    let mut buf = vec![0u8; header.page_size as usize];
    while let Some(pgno) = dec
        .next_page(&mut buf)
        .map_err(|e| rejected(file, e.to_string()))?
    {
        if pgno > header.commit {
            continue;
        }
        let ours: Option<Vec<u8>> = page
            .query_row([pgno], |r| r.get(0))
            .map_err(|e| apply_error(file, e.into()))?;
        if ours.as_deref() != Some(buf.as_slice()) {
            return Ok(Some(format!("page {pgno} differs from the database's")));
        }
    }
    dec.finish().map_err(|e| rejected(file, e.to_string()))?;
    Ok(None)
}

/// The LTX checksum of the database as this transaction sees it (pages up to `up_to`).
fn db_checksum(conn: &Connection, page_size: u32, up_to: Option<u32>) -> anyhow::Result<Checksum> {
    let mut sum = DbChecksum::new(page_size);
    let mut stmt = conn.prepare("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let pgno: u32 = row.get(0)?;
        if up_to.is_some_and(|n| pgno > n) {
            break;
        }
        let data: Option<Vec<u8>> = row.get(1)?;
        if let Some(data) = data {
            sum.add_page(pgno, &data);
        }
    }
    Ok(sum.value())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polled_at(now: SystemTime) -> State {
        State {
            last_ok_poll: Some(now),
            consecutive_errors: 0,
            failing: None,
            rejected: None,
            replica_txid: TxId(5),
            oldest_unapplied: None,
            replica_problem: None,
            last_file: None,
        }
    }

    /// `/ready` follows the lag: unready once the oldest file not applied yet is older than
    /// the threshold although polls succeed, ready again when caught up; an idle follower
    /// whose last (successful) poll is long ago because of the back-off stays ready; failing
    /// polls past the threshold make it unready.
    #[test]
    fn ready_follows_the_lag_threshold() {
        let now = SystemTime::now();
        let max_lag = Duration::from_secs(2);
        let mut s = polled_at(now);
        s.oldest_unapplied = Some(now - Duration::from_secs(5));
        let h = health_of(&s, TxId(3), max_lag, now);
        assert_eq!(h["ready"], false, "{h}");
        assert_eq!(h["lag_ms"], 5000, "{h}");
        assert_eq!(h["lag_txids"], 2, "{h}");
        assert!(
            h["why"]
                .as_str()
                .is_some_and(|w| w.contains("oldest replica file not applied yet")),
            "{h}"
        );
        s.oldest_unapplied = Some(now - Duration::from_secs(1));
        assert_eq!(health_of(&s, TxId(3), max_lag, now)["ready"], true);
        s.oldest_unapplied = None;
        let h = health_of(&s, TxId(5), max_lag, now);
        assert_eq!(h["ready"], true, "{h}");
        assert_eq!(h["lag_ms"], 0, "{h}");
        assert!(h.get("why").is_none(), "{h}");

        s.last_ok_poll = Some(now - Duration::from_secs(60));
        assert_eq!(health_of(&s, TxId(5), max_lag, now)["ready"], true);
        s.consecutive_errors = 3;
        let h = health_of(&s, TxId(5), max_lag, now);
        assert_eq!(h["ready"], false, "{h}");
        assert!(
            h["why"]
                .as_str()
                .is_some_and(|w| w.contains("3 consecutive failed polls")),
            "{h}"
        );
    }

    #[test]
    fn idle_back_off_is_capped() {
        assert_eq!(
            idle_interval_cap(Duration::from_millis(200)),
            Duration::from_millis(1600)
        );
        assert_eq!(
            idle_interval_cap(Duration::from_secs(10)),
            Duration::from_secs(30)
        );
        assert_eq!(
            idle_interval_cap(Duration::from_secs(60)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn recorded_txid_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        assert_eq!(read_recorded_txid(&db), None);
        record_txid(&db, TxId(0x2a)).unwrap();
        assert_eq!(read_recorded_txid(&db), Some(TxId(0x2a)));
    }

    /// A WAL database of `rows` rows of 500 bytes, checkpointed into its file.
    fn make_db(path: &Path, rows: i64) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
        )
        .unwrap();
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < ?1)
             INSERT INTO t SELECT i, printf('%.500c', 'x') FROM n",
            [rows],
        )
        .unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        conn
    }

    /// Every page of `conn`'s database as one LTX file for TXIDs `min..=max`; with
    /// `checksums`, a file carrying database checksums (`pre` before it).
    fn ltx_of(conn: &Connection, min: u64, max: u64, checksums: Option<Checksum>) -> Vec<u8> {
        let page_size: u32 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        let count: u32 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        let mut header = ltx::Header::new(page_size, count, TxId(min), TxId(max), 0);
        if let Some(pre) = checksums {
            header.flags = 0;
            header.pre_apply_checksum = pre;
        }
        let mut enc = ltx::Encoder::new(Vec::new(), header).unwrap();
        let mut post = DbChecksum::new(page_size);
        let mut stmt = conn
            .prepare("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")
            .unwrap();
        let pages: Vec<(u32, Vec<u8>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (pgno, data) in &pages {
            if *pgno == ltx::lock_page(page_size) {
                continue;
            }
            enc.write_page(*pgno, data).unwrap();
            post.add_page(*pgno, data);
        }
        if checksums.is_some() {
            enc.set_post_apply_checksum(post.value());
        }
        enc.finish().unwrap().writer
    }

    fn rows(conn: &Connection) -> (i64, u32) {
        let n = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        let pages = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        (n, pages)
    }

    /// The primary's database after a shrink (rows deleted, VACUUM), applied to a follower's
    /// copy of the bigger state: same rows, same page count, a sound database; a reader that
    /// began before keeps its snapshot.
    #[test]
    fn applies_a_file_in_one_transaction_and_shrinks_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let (primary, follower) = (dir.path().join("p.db"), dir.path().join("f.db"));
        let p = make_db(&primary, 400);
        std::fs::copy(&primary, &follower).unwrap();
        let mut apply = open_apply_connection(&follower).unwrap();
        let reader = Connection::open(&follower).unwrap();
        let before = rows(&p);
        p.execute_batch("DELETE FROM t WHERE id > 10; VACUUM; PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        let after = rows(&p);
        assert!(
            after.1 < before.1,
            "the primary shrank: {before:?} -> {after:?}"
        );
        reader.execute_batch("BEGIN").unwrap();
        assert_eq!(rows(&reader).0, before.0);

        let file = ltx_of(&p, 2, 2, None);
        let txid = apply_file(&mut apply, &file, TxId(1), "0/x.ltx").unwrap();
        assert_eq!(txid, TxId(2));
        // The open read transaction still sees its snapshot; the next one sees the file.
        assert_eq!(rows(&reader).0, before.0);
        reader.execute_batch("COMMIT").unwrap();
        assert_eq!(rows(&reader), after);
        let check: String = reader
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    /// A damaged file, or one whose pre-apply checksum is not the database's, is rejected
    /// and the database keeps its state; the right checksum applies.
    #[test]
    fn rejects_a_damaged_file_or_a_wrong_checksum_and_keeps_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let (primary, follower) = (dir.path().join("p.db"), dir.path().join("f.db"));
        let p = make_db(&primary, 50);
        std::fs::copy(&primary, &follower).unwrap();
        let mut apply = open_apply_connection(&follower).unwrap();
        let current = db_checksum(&apply, 4096, None).unwrap();
        p.execute_batch("INSERT INTO t(v) VALUES ('new'); PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();

        let mut damaged = ltx_of(&p, 2, 2, None);
        let mid = damaged.len() / 2;
        damaged[mid] ^= 0xff;
        let e = apply_file(&mut apply, &damaged, TxId(1), "0/x.ltx").unwrap_err();
        assert!(matches!(e, PollError::Rejected { .. }), "{e}");
        assert_eq!(rows(&Connection::open(&follower).unwrap()).0, 50);

        let wrong = ltx_of(&p, 2, 2, Some(Checksum(Checksum::FLAG.0 | 7)));
        let e = apply_file(&mut apply, &wrong, TxId(1), "0/x.ltx").unwrap_err();
        assert!(
            matches!(&e, PollError::Rejected { reason, .. } if reason.contains("pre-apply")),
            "{e}"
        );
        assert_eq!(rows(&Connection::open(&follower).unwrap()).0, 50);

        let right = ltx_of(&p, 2, 2, Some(current));
        assert_eq!(
            apply_file(&mut apply, &right, TxId(1), "0/x.ltx").unwrap(),
            TxId(2)
        );
        assert_eq!(rows(&Connection::open(&follower).unwrap()).0, 51);
    }
}
