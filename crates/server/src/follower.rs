//! Read replicas (`serve --replication-follow`): a server that follows the object-store
//! replica another server (or `litestream replicate`) writes, and serves reads from it.
//!
//! - [`start`] runs before the database is opened: it reads `--replication-config`, opens the
//!   replica, and either resumes the local database at the TXID recorded beside it
//!   (`<db>-follow-txid`, settling an apply a crash interrupted: see [`Recorded`]) or
//!   restores the latest state (the restore code of `restore`). Then it applies every file
//!   the replica already holds after that TXID, before anything is served; a resumed
//!   database whose replica cannot be read, is gone or went backwards is served unready.
//! - [`Follower::run`] polls the replica: one LIST of level 0 starting after the applied
//!   TXID per poll (the replica's `sync-interval`, default 1 s); when the next level-0 file
//!   is gone (compaction, retention) a file of a higher level that covers the gap bridges it
//!   (looked for at once when level 0 skips TXIDs, and every 30 polls when it holds nothing
//!   newer). When no level bridges it and the lineage checks pass, the follower goes to the
//!   replica's latest state: the restore plan applied in one transaction.
//!   Files are read as they arrive, never whole (memory is a constant per file, whatever
//!   its size), and every check passes before the COMMIT: the LTX decoder checks each
//!   file's checksum and page index at its end; a file that carries database checksums must
//!   start from the state before it and end at its post-apply checksum, else it is rejected
//!   and the previous state kept.
//! - A file (or the files of a restore plan, merged by page number with the restore's
//!   merge) is applied in ONE write transaction through SQLite's `sqlite_dbpage` virtual
//!   table (each page's newest image written once, then a truncation to the last file's
//!   page count when the database shrank, which `sqlite_dbpage` applies at COMMIT). The database is in WAL mode:
//!   the read pool's transactions keep their snapshot and see the whole file at their next
//!   transaction, never half of it. The applying connection itself never reads a table: its
//!   b-tree layer keeps what it parsed of a page, which a page image written underneath it
//!   does not reset. The outcome is recorded as pending before the COMMIT and as the new
//!   TXID after it, which is published only once recorded.
//! - Before applying anything, each poll checks that the replica still continues what the
//!   follower applied (its lineage): the file applied last (the anchor) must still be listed
//!   as it was, and no other level-0 file may cover the applied TXID. Two listed level-0
//!   files that overlap (or one overlapping the listed anchor) are applied by no one: the
//!   follower waits, unready, until only one history is listed (a restarted primary settles
//!   its predecessor's late upload at its next compaction; two primaries never settle). A
//!   listing that lost the anchor is followed by a look at every level: a replica with no
//!   file at all was deleted (unready until it comes back), one whose highest TXID is below
//!   the applied one went backwards (unready, nothing applied), and a level-0 file across
//!   the applied TXID, or one at it whose pages are not the database's, is another lineage
//!   (the follower stops applying for good).
//! - Idle polls back off: the interval doubles while nothing is new, up to 8 times the
//!   configured one (at most 30 s, never below the configured one), and resets on a new file.
//! - [`FollowHandle`] is what the API and the admin server see: the applied TXID (every read's
//!   `Sqlite-Rest-Txid`, `Prefer: min-txid` waits on it), and the state behind `/health`'s
//!   `follower` component and `/ready`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use ltx::{Checksum, Compactor, DbChecksum, Decoder, FileName, TxId};
use parking_lot::Mutex;
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use replication::restore::{self, RestoreOptions, RestoreTarget};
use replication::{
    ClientOptions, Config, Level, ListOptions, LoadOptions, LtxFileInfo, NetworkOptions,
    ReplicaClient, ReplicaMetrics, open_client,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
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
        let applied = self.applied();
        health_of(&self.state.lock(), applied, self.max_lag, SystemTime::now())
    }
}

/// The `follower` health component of `s` at `now` (see [`FollowHandle::health_json`]).
fn health_of(s: &State, applied: TxId, max_lag: Duration, now: SystemTime) -> serde_json::Value {
    let since_ok = s
        .last_ok_poll
        .and_then(|t| now.duration_since(t).ok())
        .unwrap_or(Duration::MAX);
    let Lag {
        txids: lag_txids,
        time: lag,
    } = s.lag(applied, now);
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

/// How far behind the replica the follower is.
struct Lag {
    /// TXIDs the last listing showed beyond the applied one.
    txids: u64,
    /// The age of the oldest file listed and not applied yet (zero when caught up).
    time: Duration,
}

impl State {
    /// The lag at `now` of a follower at `applied`: the one computation behind `/health`,
    /// `/ready` and the lag metrics.
    fn lag(&self, applied: TxId, now: SystemTime) -> Lag {
        Lag {
            txids: self.replica_txid.get().saturating_sub(applied.get()),
            time: self
                .oldest_unapplied
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or(Duration::ZERO),
        }
    }
}

/// The follower's metrics (`sqlite_rest_follower_*`); the replica's requests are counted in
/// `litestream_replica_operation_total` like the primary's.
struct FollowMetrics {
    applied_txid: IntGauge,
    lag_txids: IntGauge,
    lag_seconds: Gauge,
    files_applied: IntCounter,
    restores: IntCounter,
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
            restores: IntCounter::new(
                "sqlite_rest_follower_restores_total",
                "Times the follower brought itself to the replica's latest state across a gap no level bridged",
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "sqlite_rest_follower_errors_total",
                    "Failed follower operations (list, read, apply, record, rejected, gap, gone, backwards, diverged)",
                ),
                &["operation"],
            )?,
        };
        registry.register(Box::new(m.applied_txid.clone()))?;
        registry.register(Box::new(m.lag_txids.clone()))?;
        registry.register(Box::new(m.lag_seconds.clone()))?;
        registry.register(Box::new(m.files_applied.clone()))?;
        registry.register(Box::new(m.restores.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        Ok(m)
    }
}

/// A started follower: the replica, the applying connection, the positions.
pub struct Follower {
    client: Arc<dyn ReplicaClient>,
    db: PathBuf,
    conn: Arc<std::sync::Mutex<Connection>>,
    /// The read transaction held between applies (see [`ReadPin`]).
    pin: Arc<std::sync::Mutex<ReadPin>>,
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
    /// An apply whose pending record was written but whose outcome is not recorded (its
    /// COMMIT or the record after it failed), with the last file it applied: settled at
    /// the next poll before anything else.
    unsettled: Mutex<Option<(Pending, LtxFileInfo)>>,
    /// A restart race's pair of overlapping level-0 files that a compacted file holds, once
    /// the follower is beyond them (see [`Follower::cross_overlap`]): history the primary's
    /// compaction settled. While it is listed, level 0 is listed from its first TXID on, so
    /// that any other file overlapping it, or crossing the TXIDs applied since, shows.
    passed_overlap: Mutex<Option<[FileName; 2]>>,
    /// The overlap the follower last waited on, and how many polls since it last looked at
    /// the levels for it: they are listed again only every [`LEVEL_CHECK_EVERY`] polls.
    waited_overlap: Mutex<Option<((TxId, TxId), u64)>>,
    #[cfg(test)]
    crash: Mutex<Option<tests::CrashPoint>>,
}

/// What a look at every level found (see [`Follower::survey`]).
struct Survey {
    /// The file of a compaction level that continues the applied TXID, reaching furthest.
    bridge: Option<LtxFileInfo>,
    /// The highest TXID of any file (0 for an empty replica).
    highest: TxId,
}

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error("{operation}: {source}")]
    Replica {
        operation: &'static str,
        source: replication::ClientError,
    },
    #[error("reading {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {reason}")]
    Rejected { file: String, reason: String },
    #[error("applying {file}: {source}")]
    Apply { file: String, source: anyhow::Error },
    #[error("recording the applied TXID in {path}: {source}")]
    Record {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the replica has no file continuing TXID {applied}, and bringing the follower to its latest state failed: {source}"
    )]
    Restore {
        applied: TxId,
        source: anyhow::Error,
    },
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
    #[error(
        "overlapping level-0 files at the replica's path: {file} {reason}; the follower applies neither and waits until one history is left (a restarted primary settles its predecessor's last upload, committed late by the store, at its next compaction into level 1, or the follower crosses that pair once a compacted file holds it; if this lasts, two primaries write to the replica path: stop one)"
    )]
    Overlap {
        file: String,
        reason: String,
        /// The lowest and the highest TXID of the overlapping files.
        start: TxId,
        end: TxId,
        /// The shape of a restarted primary racing its predecessor's last upload: two files,
        /// the same first TXID, different last ones (and nothing else overlapping them).
        pair: Option<[FileName; 2]>,
    },
}

/// Level-0 files that overlap (`file` and what `reason` names): nothing is applied until
/// they no longer do (see [`PollError::Overlap`]).
fn overlap(file: &LtxFileInfo, reason: String, cluster: &[LtxFileInfo]) -> PollError {
    let start = cluster
        .iter()
        .map(|f| f.name.min)
        .min()
        .unwrap_or(file.name.min);
    let end = cluster
        .iter()
        .map(|f| f.name.max)
        .max()
        .unwrap_or(file.name.max);
    PollError::Overlap {
        file: format!("{}/{}", file.level, file.name),
        reason,
        start,
        end,
        pair: restart_race(cluster),
    }
}

/// The two files of `cluster` (level-0 files overlapping one another) when it has the shape
/// of a restart race: exactly two files with the same first TXID and different last ones
/// (the predecessor's last upload and the restarted primary's first, which reaches further).
fn restart_race(cluster: &[LtxFileInfo]) -> Option<[FileName; 2]> {
    match cluster {
        [a, b] if a.name.min == b.name.min && a.name.max != b.name.max => Some([a.name, b.name]),
        _ => None,
    }
}

/// The groups of level-0 files of `listed` (sorted by name) that overlap one another
/// (each file of a group overlaps one before it; groups of one file left out).
fn overlap_groups(listed: &[LtxFileInfo]) -> Vec<Vec<LtxFileInfo>> {
    let mut groups: Vec<Vec<LtxFileInfo>> = Vec::new();
    let mut current: Vec<LtxFileInfo> = Vec::new();
    let mut reach = TxId::ZERO;
    for f in listed {
        if !current.is_empty() && f.name.min > reach {
            if current.len() > 1 {
                groups.push(std::mem::take(&mut current));
            }
            current.clear();
        }
        reach = if current.is_empty() {
            f.name.max
        } else {
            reach.max(f.name.max)
        };
        current.push(*f);
    }
    if current.len() > 1 {
        groups.push(current);
    }
    groups
}

/// The group of [`overlap_groups`] that holds `file`, or `file` alone.
fn overlap_group(listed: &[LtxFileInfo], file: &LtxFileInfo) -> Vec<LtxFileInfo> {
    overlap_groups(listed)
        .into_iter()
        .find(|g| g.iter().any(|f| f.name == file.name))
        .unwrap_or_else(|| vec![*file])
}

/// Whether `f`, a file of a compaction level (1..=8), continues `applied` (starts at or
/// before the next TXID, ends after it) and reaches further than `best`.
fn continues_further(f: &LtxFileInfo, applied: TxId, best: Option<&LtxFileInfo>) -> bool {
    f.level != Level::L0
        && !f.level.is_snapshot()
        && f.name.min.get() <= applied.get().saturating_add(1)
        && f.name.max > applied
        && best.is_none_or(|b| f.name.max > b.name.max)
}

/// The file beside the database recording the TXID it is at.
fn txid_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-follow-txid");
    PathBuf::from(s)
}

/// What `<db>-follow-txid` holds: the TXID the database is at and, while an apply is about
/// to commit, what the database looks like once it has (written before the COMMIT and
/// settled after it). A crash between the COMMIT and recording the new TXID leaves the
/// pending record behind; the next start (or the next poll, after a failed record) looks at
/// the database to tell whether the COMMIT happened.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Recorded {
    txid: TxId,
    pending: Option<Pending>,
}

/// The outcome of an apply that was about to commit: the TXID it brings the database to,
/// the page count then, the pages it writes (inclusive runs) and the checksum of those pages
/// as written. The database holds the apply exactly when its page count and those pages
/// match: the pages are read back, so no full scan of the database is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    txid: TxId,
    commit: u32,
    digest: Checksum,
    runs: Vec<(u32, u32)>,
}

impl Pending {
    /// The pending record of `pages` (final images, ascending, at most `commit`).
    #[cfg(test)]
    fn of<'a>(
        txid: TxId,
        commit: u32,
        page_size: u32,
        pages: impl Iterator<Item = (u32, &'a [u8])>,
    ) -> Pending {
        let mut b = PendingPages::new(page_size);
        for (pgno, data) in pages {
            b.add(pgno, data);
        }
        b.finish(txid, commit)
    }

    fn to_line(&self) -> String {
        let runs: Vec<String> = self
            .runs
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        let runs = if runs.is_empty() {
            "-".to_string()
        } else {
            runs.join(",")
        };
        format!(
            "pending {} {} {} {runs}",
            self.txid, self.commit, self.digest
        )
    }

    fn parse(line: &str) -> Option<Pending> {
        let mut words = line.split_ascii_whitespace();
        if words.next()? != "pending" {
            return None;
        }
        let txid = words.next()?.parse::<TxId>().ok()?;
        let commit = words.next()?.parse::<u32>().ok()?;
        let digest = Checksum(u64::from_str_radix(words.next()?, 16).ok()?);
        let runs_word = words.next()?;
        if words.next().is_some() {
            return None;
        }
        let mut runs = Vec::new();
        if runs_word != "-" {
            for run in runs_word.split(',') {
                let (a, b) = run.split_once('-').unwrap_or((run, run));
                runs.push((a.parse().ok()?, b.parse().ok()?));
            }
        }
        Some(Pending {
            txid,
            commit,
            digest,
            runs,
        })
    }

    /// Whether the database (as `conn` sees it) is in the state this apply leaves it in.
    fn held_by(&self, conn: &Connection) -> anyhow::Result<bool> {
        let count: u32 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        if count != self.commit {
            return Ok(false);
        }
        let page_size: u32 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let mut sum = DbChecksum::new(page_size);
        let mut stmt = conn.prepare_cached("SELECT data FROM sqlite_dbpage WHERE pgno = ?1")?;
        for &(a, b) in &self.runs {
            for pgno in a..=b {
                let data: Option<Vec<u8>> =
                    stmt.query_row([pgno], |r| r.get(0)).optional()?.flatten();
                match data {
                    Some(d) => sum.add_page(pgno, &comparable(pgno, &d)),
                    None => return Ok(false),
                }
            }
        }
        Ok(sum.value() == self.digest)
    }
}

/// A [`Pending`] record built while an apply writes its pages: each page's final image is
/// added once, in ascending page order, as it is written (the digest is an XOR of page
/// checksums, so nothing of a page is kept after it), and the page numbers are kept as
/// runs (one pair per run of consecutive pages: two for a whole database).
struct PendingPages {
    digest: DbChecksum,
    runs: Vec<(u32, u32)>,
}

impl PendingPages {
    fn new(page_size: u32) -> PendingPages {
        PendingPages {
            digest: DbChecksum::new(page_size),
            runs: Vec::new(),
        }
    }

    /// Adds the final image of `pgno`, above every page added before.
    fn add(&mut self, pgno: u32, data: &[u8]) {
        self.digest.add_page(pgno, &comparable(pgno, data));
        match self.runs.last_mut() {
            Some((_, end)) if end.checked_add(1) == Some(pgno) => *end = pgno,
            _ => self.runs.push((pgno, pgno)),
        }
    }

    fn finish(self, txid: TxId, commit: u32) -> Pending {
        Pending {
            txid,
            commit,
            digest: self.digest.value(),
            runs: self.runs,
        }
    }
}

/// A page as compared with a file's image of it: SQLite rewrites page 1's change counter
/// (bytes 24..28), version-valid-for number and library version (92..100) at every commit
/// that writes page 1, so the follower's page 1 carries its own counter (one commit per
/// file, where the primary made one per transaction) and library version. Those bytes say
/// nothing about the content and are left out of every comparison.
fn comparable(pgno: u32, data: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if pgno != 1 || data.len() < 100 {
        return std::borrow::Cow::Borrowed(data);
    }
    let mut page = data.to_vec();
    page[24..28].fill(0);
    page[92..100].fill(0);
    std::borrow::Cow::Owned(page)
}

/// Reads `<db>-follow-txid`: None when there is none (or its TXID does not parse: the
/// database is then restored afresh); an error when its pending line is damaged.
fn read_recorded(db: &Path) -> anyhow::Result<Option<Recorded>> {
    let Ok(text) = std::fs::read_to_string(txid_path(db)) else {
        return Ok(None);
    };
    let mut lines = text.lines();
    let Some(txid) = lines.next().and_then(|l| l.trim().parse::<TxId>().ok()) else {
        return Ok(None);
    };
    let pending = match lines.next().map(str::trim).filter(|l| !l.is_empty()) {
        None => None,
        Some(line) => Some(Pending::parse(line).with_context(|| {
            format!(
                "{}: cannot read the pending apply {line:?}",
                txid_path(db).display()
            )
        })?),
    };
    Ok(Some(Recorded { txid, pending }))
}

/// Writes `<db>-follow-txid` durably: a temp file synced, renamed over it, the directory
/// synced (a power loss leaves the old record or the new one, never none or half of one).
fn write_record(db: &Path, record: &Recorded) -> std::io::Result<()> {
    write_record_with(db, record, true)
}

/// Writes `<db>-follow-txid` as [`write_record`] does; without `sync_dir` the rename may be
/// lost in a power loss (the record before it is found then), never the record's content.
fn write_record_with(db: &Path, record: &Recorded, sync_dir: bool) -> std::io::Result<()> {
    use std::io::Write;
    let path = txid_path(db);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut text = format!("{}\n", record.txid);
    if let Some(p) = &record.pending {
        text.push_str(&p.to_line());
        text.push('\n');
    }
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    if let Some(dir) = path
        .parent()
        .filter(|d| sync_dir && !d.as_os_str().is_empty())
    {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Records the TXID an apply's COMMIT reached, replacing its pending record. The directory
/// is not synced: the pending record before it is durable, so a power loss that undoes
/// the rename leaves that record, and settling it finds the committed pages and records
/// the same TXID (as after a kill between the COMMIT and this record). The next apply's
/// pending record syncs the directory before its COMMIT. One fsync less per apply.
fn record_applied(db: &Path, txid: TxId) -> std::io::Result<()> {
    write_record_with(
        db,
        &Recorded {
            txid,
            pending: None,
        },
        false,
    )
}

/// Records the applied TXID, with nothing pending.
fn record_txid(db: &Path, txid: TxId) -> std::io::Result<()> {
    write_record(
        db,
        &Recorded {
            txid,
            pending: None,
        },
    )
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

    let resumed = match read_recorded(&db)? {
        Some(recorded) if db.exists() => Some(recorded),
        _ => None,
    };
    let pending = resumed.as_ref().and_then(|r| r.pending.clone());
    let txid = match resumed {
        Some(Recorded { txid, .. }) => {
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
    let (conn, pin, txid) = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<(Connection, ReadPin, TxId)> {
            let conn = open_apply_connection(&db)?;
            let txid = match pending {
                // An apply was interrupted around its COMMIT: the database says whether
                // it happened.
                Some(p) => settle(&conn, &db, txid, &p)?,
                None => txid,
            };
            let mut pin = ReadPin::open(&db)?;
            pin.hold();
            Ok((conn, pin, txid))
        })
        .await??
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
        pin: Arc::new(std::sync::Mutex::new(pin)),
        interval,
        applied,
        handle,
        metrics,
        polls: std::sync::atomic::AtomicU64::new(0),
        anchor: Mutex::new(None),
        diverged: Mutex::new(None),
        unsettled: Mutex::new(None),
        passed_overlap: Mutex::new(None),
        waited_overlap: Mutex::new(None),
        #[cfg(test)]
        crash: Mutex::new(None),
    };
    // Catch up before serving: a resumed database may be far behind. A replica that cannot
    // be read, is gone or went backwards leaves the database as it is: it is served
    // unready, `/health` saying why (as when that happens while running). Another lineage
    // refuses to start: the database no longer follows that replica.
    match follower.poll().await {
        Ok(_) => {}
        Err(e @ PollError::Diverged { .. }) => {
            return Err(e).context("catching up with the replica before serving");
        }
        Err(e) => tracing::warn!(
            db = %follower.db.display(),
            txid = %follower.handle.applied(),
            error = %e,
            "the follower cannot catch up with the replica: it serves its database unready until it can"
        ),
    }
    Ok(follower)
}

/// Settles an apply interrupted around its COMMIT: records the TXID the database holds
/// (`pending`'s when its pages are there, else `recorded`), with nothing pending.
fn settle(conn: &Connection, db: &Path, recorded: TxId, pending: &Pending) -> anyhow::Result<TxId> {
    let txid = if pending.held_by(conn)? {
        pending.txid
    } else {
        recorded
    };
    record_txid(db, txid).with_context(|| format!("writing {}", txid_path(db).display()))?;
    tracing::info!(
        db = %db.display(),
        txid = %txid,
        pending = %pending.txid,
        "follower settled an apply interrupted around its commit"
    );
    Ok(txid)
}

/// A read transaction the follower holds on a connection of its own while it applies
/// nothing, released for each apply (which may checkpoint) and taken again after it.
///
/// SQLite takes a WAL read slot of the `-shm` file with an `fcntl` lock only when no other
/// connection of the process holds that slot (and drops it when the last one lets go). The
/// primary's replicator always holds one; without this pin a follower's reads would take
/// and drop the lock in the kernel twice per request. It never holds back a checkpoint or
/// a WAL restart: it is released around every write the follower makes. A failure to hold
/// it costs only that speed, so it is logged, never fatal.
struct ReadPin {
    /// Held while its read transaction is open (`!is_autocommit()`).
    conn: Connection,
}

impl ReadPin {
    fn open(db: &Path) -> anyhow::Result<ReadPin> {
        let conn = Connection::open_with_flags(
            db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening {} to pin a read slot", db.display()))?;
        Ok(ReadPin { conn })
    }

    /// Begins the read transaction (a no-op while held): reading the schema takes the slot.
    fn hold(&mut self) {
        if !self.conn.is_autocommit() {
            return;
        }
        let begun = self.conn.execute_batch("BEGIN").and_then(|()| {
            self.conn
                .query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                    r.get::<_, i64>(0)
                })
        });
        match begun {
            Ok(_) => {}
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                tracing::warn!(error = %e, "the follower could not hold its read slot: reads take a lock each");
            }
        }
    }

    /// Ends the read transaction (a no-op when not held).
    fn release(&mut self) {
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("COMMIT")
        {
            tracing::warn!(error = %e, "the follower could not release its read slot");
        }
    }
}

/// What the WAL file is truncated to once checkpointed (bytes): about four times the WAL
/// SQLite's automatic checkpoint lets grow at the default page size.
const WAL_SIZE_LIMIT: i64 = 16 << 20;

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
    // An apply writes all its pages into the WAL before its COMMIT (a restore across a gap
    // writes the whole database there), and SQLite keeps a WAL file at its largest size for
    // good: the next write after a complete checkpoint truncates it to this bound instead.
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
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
        // The next poll is due `wait` after the previous one STARTED: the time a poll takes
        // (LIST, downloads, apply) does not stretch the period and so the lag, and polls
        // are never closer together than the configured interval either.
        let mut started = tokio::time::Instant::now();
        loop {
            // `/health` is refreshed every configured interval while a backed-off wait
            // runs, so the lag it reports (and `/ready`) stays current.
            let until = started + wait;
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
            started = tokio::time::Instant::now();
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
                    PollError::Read { .. } => "read",
                    PollError::Rejected { file, reason } => {
                        s.rejected = Some(Rejected {
                            file: file.clone(),
                            reason: reason.clone(),
                        });
                        "rejected"
                    }
                    PollError::Apply { .. } => "apply",
                    PollError::Record { .. } => "record",
                    PollError::Restore { .. } => "gap",
                    PollError::Gap { .. } => "gap",
                    PollError::Gone { .. } => "gone",
                    PollError::Backwards { .. } => "backwards",
                    PollError::Diverged { .. } => "diverged",
                    PollError::Overlap { .. } => "overlap",
                };
                if matches!(
                    e,
                    PollError::Gone { .. }
                        | PollError::Backwards { .. }
                        | PollError::Diverged { .. }
                        | PollError::Overlap { .. }
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
        let unsettled = self.unsettled.lock().clone();
        if let Some((pending, file)) = unsettled {
            self.settle_unsettled(pending, file).await?;
        }
        let applied = *self.applied.borrow();
        let anchor = *self.anchor.lock();
        // The listing starts at the anchor when it is a level-0 file, so it shows the anchor
        // itself (and anything of another lineage that overlaps it) besides the new files.
        let seek = match &anchor {
            Some(a) if a.level == Level::L0 => a.name.min,
            _ => TxId(applied.get().saturating_add(1)),
        };
        let passed = *self.passed_overlap.lock();
        let from = passed.map_or(seek, |[a, _]| seek.min(a.min));
        let all = self
            .client
            .list(
                Level::L0,
                ListOptions {
                    seek: Some(from),
                    precise_timestamps: false,
                },
            )
            .await
            .map_err(|source| PollError::Replica {
                operation: "list",
                source,
            })?;
        // One lineage's level-0 files never overlap for long: two listed files that do are
        // two writers' (two primaries on one replica path), or a restarted primary's and its
        // predecessor's last upload until the primary settles them. Neither is applied, and
        // the follower waits: nothing it applied is in question.
        // A compaction level whose file continues the applied TXID past the overlap is
        // crossed through instead (`cross_overlap`).
        // A passed pair is history; once retention removed it, the listing starts at the
        // anchor again.
        let is_passed = |f: &LtxFileInfo| passed.is_some_and(|p| p.contains(&f.name));
        if passed.is_some() && !all.iter().any(is_passed) {
            *self.passed_overlap.lock() = None;
        }
        for group in overlap_groups(&all) {
            if group.len() == 2 && group.iter().all(is_passed) {
                continue;
            }
            let (first, last) = (group[0], group[group.len() - 1]);
            let waiting = overlap(
                &last,
                format!("overlaps the level-0 file {}", first.name),
                &group,
            );
            return self.cross_overlap(applied, waiting).await;
        }
        let anchor_name = anchor.map(|a| a.name);
        let listed: Vec<LtxFileInfo> = all
            .into_iter()
            .filter(|f| f.name.min >= seek && (!is_passed(f) || Some(f.name) == anchor_name))
            .collect();
        let anchor_missing = match &anchor {
            Some(a) if a.level == Level::L0 => match self.check_anchor(a, &listed, applied).await {
                Ok(listed) => !listed,
                Err(e @ PollError::Overlap { .. }) => return self.cross_overlap(applied, e).await,
                Err(e) => return Err(e),
            },
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
            let survey = match self.survey(applied, anchor.as_ref()).await {
                Ok(survey) => survey,
                Err(e @ PollError::Overlap { .. }) => return self.cross_overlap(applied, e).await,
                Err(e) => return Err(e),
            };
            match survey.bridge {
                Some(b) => pending.insert(0, b),
                // Nothing continues the applied TXID although the replica is ahead (the
                // lineage checks passed): the follower goes to the replica's latest state.
                None if gap.is_some() || (pending.is_empty() && survey.highest > applied) => {
                    return self
                        .restore_across_gap(
                            applied,
                            "the replica has no file continuing the follower's TXID (compaction or retention removed them)",
                        )
                        .await;
                }
                None => {}
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
            self.apply(vec![file], at).await?;
            count += 1;
        }
        self.note_done();
        Ok(count)
    }

    /// After files were applied: the lag metrics, and no oldest unapplied file once caught up.
    fn note_done(&self) {
        let done = *self.applied.borrow();
        let mut s = self.handle.state.lock();
        if s.replica_txid <= done {
            s.oldest_unapplied = None;
        }
        let lag = s.lag(done, SystemTime::now());
        self.metrics.lag_txids.set(lag.txids as i64);
        self.metrics.lag_seconds.set(lag.time.as_secs_f64());
    }

    /// Settles an apply whose outcome was not recorded (see [`Follower::unsettled`]).
    async fn settle_unsettled(&self, pending: Pending, file: LtxFileInfo) -> Result<(), PollError> {
        let conn = self.conn.clone();
        let db = self.db.clone();
        let recorded = *self.applied.borrow();
        let txid = tokio::task::spawn_blocking(move || {
            let conn = conn
                .lock()
                .map_err(|_| anyhow::anyhow!("connection poisoned"))?;
            settle(&conn, &db, recorded, &pending)
        })
        .await
        .map_err(|e| anyhow::anyhow!("settle task failed: {e}"))
        .and_then(|r| r)
        .map_err(|source| PollError::Record {
            path: txid_path(&self.db).display().to_string(),
            source: std::io::Error::other(format!("{source:#}")),
        })?;
        *self.unsettled.lock() = None;
        if txid > recorded {
            self.published(txid, vec![file]);
        }
        Ok(())
    }

    /// Brings the database to the replica's latest state when nothing continues `applied`:
    /// the restore plan (a snapshot, or the files from TXID 1, then what follows) applied
    /// in ONE transaction, so readers go from the old state to the latest one and never see
    /// anything in between. The number of files applied.
    async fn restore_across_gap(&self, applied: TxId, why: &str) -> Result<usize, PollError> {
        let plan = restore::plan(self.client.as_ref(), RestoreTarget::Latest, false)
            .await
            .map_err(|e| PollError::Restore {
                applied,
                source: e.into(),
            })?;
        if plan.min_txid() != TxId(1) || plan.max_txid() <= applied {
            return Err(PollError::Restore {
                applied,
                source: anyhow::anyhow!(
                    "the replica's latest state is TXIDs {}..{}",
                    plan.min_txid(),
                    plan.max_txid()
                ),
            });
        }
        tracing::warn!(
            applied = %applied,
            latest = %plan.max_txid(),
            files = plan.files.len(),
            why,
            "the follower goes to the replica's latest state"
        );
        let count = plan.files.len();
        self.apply(plan.files, applied).await?;
        self.metrics.restores.inc();
        self.note_done();
        Ok(count)
    }

    /// Level-0 files overlap (TXIDs `start..=end` of `waiting`, see [`PollError::Overlap`]).
    /// When they have the shape of a restart race (two files, the same first TXID) and a
    /// file of a compaction level (1..=8) reaches past them, the primary compacted past the
    /// overlap: a restarted primary whose compaction into level 1 passed its predecessor's
    /// late upload before that landed, which nothing settles until `l0-retention` removes
    /// it. The follower crosses it then instead of waiting:
    /// - it applied neither file (`applied < start`): it applies the compacted file
    ///   continuing `applied` furthest, as it bridges a gap;
    /// - it applied the shorter one: which history that was, the predecessor's or another
    ///   writer's, cannot be told from the files (ours and Litestream's carry no database
    ///   checksums), so the follower does not build on it: it goes to the replica's latest
    ///   state as across a gap (every page rewritten, one transaction; readers see the old
    ///   state or the new one);
    /// - it is at or past the end of both (it applied the longer one, or a restart found it
    ///   there): nothing to apply, the pair is history.
    ///
    /// Then the pair is left out of later listings (`passed_overlap`). Any other overlap
    /// (more files, as two primaries writing make) is waited out, and so is this one while no
    /// compacted file reaches past it; the levels are looked at again only every
    /// [`LEVEL_CHECK_EVERY`] polls while the overlap stays the same.
    async fn cross_overlap(&self, applied: TxId, waiting: PollError) -> Result<usize, PollError> {
        let PollError::Overlap {
            start, end, pair, ..
        } = waiting
        else {
            return Err(waiting);
        };
        if pair.is_none() {
            return Err(waiting);
        }
        {
            let mut last = self.waited_overlap.lock();
            if let Some((range, skipped)) = last.as_mut()
                && *range == (start, end)
                && *skipped < LEVEL_CHECK_EVERY
            {
                *skipped += 1;
                return Err(waiting);
            }
            *last = Some(((start, end), 0));
        }
        // One listing of the compaction levels serves both questions below.
        let files = self.compacted_files().await?;
        let Some(compacted) = files
            .iter()
            .filter(|f| f.name.min <= start && f.name.max >= end)
            .max_by_key(|f| f.name.max)
            .copied()
        else {
            return Err(waiting);
        };
        let crossed = if applied >= end {
            Ok(0)
        } else if applied < start {
            let mut best: Option<LtxFileInfo> = None;
            for f in &files {
                if continues_further(f, applied, best.as_ref()) {
                    best = Some(*f);
                }
            }
            match best {
                Some(bridge) if bridge.name.max >= end => {
                    self.apply(vec![bridge], applied).await.map(|()| {
                        self.note_done();
                        1
                    })
                }
                _ => return Err(waiting),
            }
        } else {
            self.restore_across_gap(
                applied,
                "the follower applied one of two overlapping level-0 files, which a compacted file reaches past",
            )
            .await
        };
        match crossed {
            Ok(count) => {
                *self.passed_overlap.lock() = pair;
                *self.waited_overlap.lock() = None;
                tracing::warn!(
                    applied = %applied,
                    overlap = %format!("{start}..{end}"),
                    compacted = %label_of(&compacted),
                    now = %*self.applied.borrow(),
                    "overlapping level-0 files of a restart race passed: a compacted file reaches past them"
                );
                Ok(count)
            }
            Err(e @ (PollError::Rejected { .. } | PollError::Restore { .. })) => {
                Err(match waiting {
                    PollError::Overlap {
                        file,
                        reason,
                        start,
                        end,
                        pair,
                    } => PollError::Overlap {
                        file,
                        reason: format!(
                            "{reason}; {} reaches past it but crossing failed: {e}",
                            label_of(&compacted)
                        ),
                        start,
                        end,
                        pair,
                    },
                    other => other,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Every file of the compaction levels (1..=8).
    async fn compacted_files(&self) -> Result<Vec<LtxFileInfo>, PollError> {
        let list_error = |source| PollError::Replica {
            operation: "list",
            source,
        };
        let mut files = Vec::new();
        for level in self.client.levels().await.map_err(list_error)? {
            if level == Level::L0 || level.is_snapshot() {
                continue;
            }
            files.extend(
                self.client
                    .list(level, ListOptions::default())
                    .await
                    .map_err(list_error)?,
            );
        }
        Ok(files)
    }

    /// Checks the level-0 listing (from the anchor on) against the anchor: false when the
    /// anchor is not listed; an error when the listing shows another lineage.
    async fn check_anchor(
        &self,
        anchor: &LtxFileInfo,
        listed: &[LtxFileInfo],
        applied: TxId,
    ) -> Result<bool, PollError> {
        // Another file starting at or before the applied TXID: while the anchor is listed,
        // an overlap to wait out (see `poll_inner`). Once the anchor is gone (retention, or
        // a restarted primary replaced its overlapping uploads with one file of the TXIDs
        // after its predecessor's last upload), a file reaching beyond the applied TXID is
        // of another lineage (one lineage has a file ending there); files ending at or
        // before it are left to the survey, which checks the one ending at it against the
        // database.
        let anchor_listed = listed.iter().any(|f| f.name == anchor.name);
        let reason = |other: &LtxFileInfo| {
            format!(
                "covers TXIDs {}..{}, which overlap the file {}/{} the follower applied",
                other.name.min, other.name.max, anchor.level, anchor.name
            )
        };
        for other in listed
            .iter()
            .filter(|f| f.name != anchor.name && f.name.min <= applied)
        {
            if anchor_listed {
                return Err(overlap(other, reason(other), &overlap_group(listed, other)));
            }
            if other.name.max > applied {
                return Err(self.diverge(other, reason(other)));
            }
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
            .on_file(file, "compare", |conn, source, label| {
                first_differing_page(conn, source.reader, label)
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

    /// Reads `file` from the replica as it arrives (never whole) and runs `f` on it with the
    /// applying connection, off the async workers; `f`'s errors and the answer name the file
    /// (`<level>/<name>`), `step` names what `f` does if its task fails.
    async fn on_file<T: Send + 'static>(
        &self,
        file: &LtxFileInfo,
        step: &'static str,
        f: impl FnOnce(&mut Connection, Source, &str) -> Result<T, PollError> + Send + 'static,
    ) -> Result<(String, T), PollError> {
        let Some(source) = self.open(std::slice::from_ref(file)).pop() else {
            return Err(apply_error(
                &label_of(file),
                anyhow::anyhow!("no reader opened"),
            ));
        };
        let label = source.label.clone();
        let task_label = label.clone();
        let conn = self.conn.clone();
        let out = tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| apply_error(&task_label, anyhow::anyhow!("connection poisoned")))?;
            f(&mut conn, source, &task_label)
        })
        .await
        .map_err(|e| apply_error(&label, anyhow::anyhow!("{step} task failed: {e}")))??;
        Ok((label, out))
    }

    /// Opens `files` of the replica as blocking readers, in order, each labelled
    /// `<level>/<name>`: fetched as `sqlite-rest restore` fetches them (a local replica's
    /// files read directly, a remote one's by ranged GETs of 1 MiB, two of a file in flight),
    /// so a file costs a few MiB of buffers whatever its size. Read them on a blocking thread.
    fn open(&self, files: &[LtxFileInfo]) -> Vec<Source> {
        let readers = restore::open_files(
            &self.client,
            files,
            restore::FetchOptions::default().for_comparison(),
        );
        files
            .iter()
            .zip(readers)
            .map(|(f, reader)| Source {
                label: label_of(f),
                reader,
            })
            .collect()
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
    /// level-0 file of another lineage at the applied TXID (one crossing it that overlaps no
    /// other level-0 file; overlapping files are waited out, [`PollError::Overlap`]); finds
    /// the anchor when it is not known; returns the file of a compaction level (1..=8) that
    /// continues `applied` when the next level-0 files are gone (the one reaching furthest).
    async fn survey(
        &self,
        applied: TxId,
        anchor: Option<&LtxFileInfo>,
    ) -> Result<Survey, PollError> {
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
            for f in &files {
                let f = *f;
                highest = highest.max(Some(f.name.max));
                if level == Level::L0 {
                    if f.name.min <= applied && f.name.max > applied {
                        // Not alone: an overlap to wait out, as while polling (a restarted
                        // primary's first upload and its predecessor's last one, batched
                        // differently, until the primary settles them).
                        if let Some(other) = files.iter().find(|o| {
                            o.name != f.name && o.name.min <= f.name.max && o.name.max >= f.name.min
                        }) {
                            return Err(overlap(
                                &f,
                                format!("overlaps the level-0 file {}", other.name),
                                &overlap_group(&files, &f),
                            ));
                        }
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
                if continues_further(&f, applied, best.as_ref()) {
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
        Ok(Survey {
            bridge: best,
            highest: highest.unwrap_or(TxId::ZERO),
        })
    }

    /// Reads `files` (each continuing the one before, the first continuing `at`) as they
    /// arrive, verifies them and applies them in ONE transaction (see [`apply_files`]): the
    /// pending record is written before the COMMIT, the new TXID recorded after it, and only
    /// then published. A failed record fails the poll; what the database holds is settled at
    /// the next one.
    async fn apply(&self, files: Vec<LtxFileInfo>, at: TxId) -> Result<(), PollError> {
        let Some(last) = files.last().copied() else {
            return Ok(());
        };
        let sources = self.open(&files);
        let conn = self.conn.clone();
        let pin = self.pin.clone();
        let db = self.db.clone();
        let label = label_of(&last);
        let last_label = label.clone();
        #[cfg(test)]
        let crash = *self.crash.lock();
        let (result, written) = tokio::task::spawn_blocking(move || {
            let mut written = None;
            let result = (|| {
                let mut conn = conn.lock().map_err(|_| {
                    apply_error(&last_label, anyhow::anyhow!("connection poisoned"))
                })?;
                let mut pin = pin
                    .lock()
                    .map_err(|_| apply_error(&last_label, anyhow::anyhow!("read pin poisoned")))?;
                // Released for the write and its checkpoint, held again whatever happened.
                pin.release();
                let applied = apply_files(&mut conn, sources, at, |pending| {
                    write_record(
                        &db,
                        &Recorded {
                            txid: at,
                            pending: Some(pending.clone()),
                        },
                    )
                    .map_err(|source| PollError::Record {
                        path: txid_path(&db).display().to_string(),
                        source,
                    })?;
                    written = Some(pending.clone());
                    #[cfg(test)]
                    if crash == Some(tests::CrashPoint::BeforeCommit) {
                        return Err(apply_error(
                            &last_label,
                            anyhow::anyhow!("crash before the commit"),
                        ));
                    }
                    Ok(())
                });
                pin.hold();
                applied
            })();
            (result, written)
        })
        .await
        .map_err(|e| apply_error(&label, anyhow::anyhow!("apply task failed: {e}")))?;
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => {
                // The COMMIT may or may not have happened after the pending record.
                if let Some(pending) = written {
                    *self.unsettled.lock() = Some((pending, last));
                }
                return Err(e);
            }
        };
        let pending =
            written.ok_or_else(|| apply_error(&label, anyhow::anyhow!("no pending record")))?;
        #[cfg(test)]
        if crash == Some(tests::CrashPoint::AfterCommit) {
            *self.unsettled.lock() = Some((pending, last));
            return Err(apply_error(
                &label,
                anyhow::anyhow!("crash after the commit"),
            ));
        }
        if let Err(source) = record_applied(&self.db, outcome) {
            *self.unsettled.lock() = Some((pending, last));
            return Err(PollError::Record {
                path: txid_path(&self.db).display().to_string(),
                source,
            });
        }
        self.published(outcome, files);
        Ok(())
    }

    /// Publishes `txid`, which `files` (the last one now the anchor) brought the database
    /// to and which is recorded.
    fn published(&self, txid: TxId, files: Vec<LtxFileInfo>) {
        let _ = self.applied.send(txid);
        self.metrics.applied_txid.set(txid.get() as i64);
        self.metrics.files_applied.inc_by(files.len() as u64);
        if let Some(last) = files.last() {
            let label = label_of(last);
            tracing::debug!(file = %label, txid = %txid, "follower applied a file");
            self.handle.state.lock().last_file = Some(label);
            *self.anchor.lock() = Some(*last);
        }
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

/// One LTX file of the replica as it is read: its label (`<level>/<name>`) and a reader of
/// its bytes.
struct Source<R = Box<dyn Read + Send>> {
    label: String,
    reader: R,
}

/// `<level>/<name>`, how errors and `/health` name a replica file.
fn label_of(file: &LtxFileInfo) -> String {
    format!("{}/{}", file.level, file.name)
}

/// An LTX error about the file `label`: its reader failing (the replica could not be read)
/// is a failed read, anything else (format, file checksum, page index) rejects the file.
fn file_error(label: &str, e: ltx::Error) -> PollError {
    match e {
        ltx::Error::Input { source, .. } => file_error(label, *source),
        ltx::Error::Io { source, .. } => PollError::Read {
            file: label.to_string(),
            source,
        },
        other => rejected(label, other.to_string()),
    }
}

/// Why a streamed apply stopped: an error of the merge (about one of its inputs) or ours.
enum ApplyStop {
    Ltx(ltx::Error),
    Poll(PollError),
}

impl From<ltx::Error> for ApplyStop {
    fn from(e: ltx::Error) -> ApplyStop {
        ApplyStop::Ltx(e)
    }
}

impl From<PollError> for ApplyStop {
    fn from(e: PollError) -> ApplyStop {
        ApplyStop::Poll(e)
    }
}

/// Writes `files` (read as they arrive; each continuing the TXID before it, the first
/// continuing `at`) in ONE write transaction, checking the database checksums of the files
/// that carry them; `before_commit` gets the pending record (see [`Pending`]) once
/// everything is written and checked, and an error from it rolls everything back. The TXID
/// the database is at afterwards.
///
/// The files are merged by page number with the merge `sqlite-rest restore` uses
/// ([`ltx::Compactor`]): each page's newest image is written once, in ascending order,
/// straight from the decoders' page buffers, and added to the pending record's digest as it
/// is written. Memory is a page buffer per file, what the readers buffer and the decoders'
/// page index (24 bytes a page), never the files or the database: SQLite spills the
/// transaction's pages beyond its page cache to the WAL, where readers do not see them
/// before the COMMIT. Each file's checksum and page index are verified when its end is
/// read, before the COMMIT; a file that fails rolls the whole transaction back, like any
/// failed check, so the database never holds part of an apply.
///
/// Database checksums: the state after each file is never materialized, so its checksum is
/// accumulated page by page from every file's image of the page (the merge hands them all
/// over): the checksum of the database before the apply (one pass over it, only when a
/// file carries checksums and the first file is not a snapshot, which holds every page),
/// with each page a file touches taken out and its image after that file put in (the
/// checksum is an XOR of page checksums). A file's pre-apply checksum is the state after
/// the file before it (or the database's), checked when the file starts right after that
/// state's TXID (a bridging file may start earlier); both are compared once every file is
/// read, before the COMMIT.
fn apply_files<R: Read>(
    conn: &mut Connection,
    sources: Vec<Source<R>>,
    at: TxId,
    before_commit: impl FnOnce(&Pending) -> Result<(), PollError>,
) -> Result<TxId, PollError> {
    let Some(last) = sources.last().map(|s| s.label.clone()) else {
        return Ok(at);
    };
    let mut labels = Vec::with_capacity(sources.len());
    let mut decoders = Vec::with_capacity(sources.len());
    for s in sources {
        decoders.push(Decoder::new(s.reader).map_err(|e| file_error(&s.label, e))?);
        labels.push(s.label);
    }
    let headers: Vec<ltx::Header> = decoders.iter().map(|d| *d.header()).collect();
    let page_size: u32 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(|e| apply_error(&last, e.into()))?;
    let mut to = at;
    for (k, (h, label)) in headers.iter().zip(&labels).enumerate() {
        // A snapshot first (a restore plan) holds every page: it need not continue `at`.
        if k == 0 && h.is_snapshot() {
            to = TxId::ZERO;
        }
        if h.page_size != page_size {
            return Err(rejected(
                label,
                format!(
                    "page size {} differs from the database's {page_size}",
                    h.page_size
                ),
            ));
        }
        if h.min_txid.get() > to.get().saturating_add(1) || h.max_txid <= to {
            return Err(rejected(
                label,
                format!(
                    "covers TXIDs {}..{} but the database is at {to}",
                    h.min_txid, h.max_txid
                ),
            ));
        }
        to = h.max_txid;
    }
    if to <= at {
        return Err(rejected(
            &last,
            format!("leads to TXID {to}, not beyond the database's {at}"),
        ));
    }
    let commit = headers.last().map_or(0, |h| h.commit);
    let carries: Vec<bool> = headers.iter().map(|h| !h.no_checksum()).collect();
    let pre_checked: Vec<bool> = (0..headers.len())
        .map(|k| {
            let before = k.checked_sub(1).map_or(at, |j| headers[j].max_txid);
            carries[k]
                && !headers[k].is_snapshot()
                && headers[k].min_txid.get() == before.get().saturating_add(1)
        })
        .collect();
    // The states (after file k) whose checksum a check needs.
    let tracked: Vec<bool> = (0..headers.len())
        .map(|k| carries[k] || pre_checked.get(k + 1).copied().unwrap_or(false))
        .collect();
    let any_tracked = tracked.iter().any(|&t| t) || pre_checked.first().copied().unwrap_or(false);
    // A snapshot (from TXID 1) holds every page: the database before it does not count.
    let from_base = any_tracked && !headers.first().is_some_and(|h| h.is_snapshot());

    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| apply_error(&last, e.into()))?;
    let base_count: u32 = tx
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(|e| apply_error(&last, e.into()))?;
    let mut sums = vec![DbChecksum::new(page_size); headers.len()];
    if from_base {
        // The database's checksum up to each tracked state's page count, and whole.
        let mut limits: Vec<u32> = headers.iter().map(|h| h.commit.min(base_count)).collect();
        limits.push(base_count);
        let mut prefixes =
            db_checksums(&tx, page_size, &limits).map_err(|e| apply_error(&last, e))?;
        let before = prefixes.pop().unwrap_or(DbChecksum::new(page_size));
        sums = prefixes;
        if pre_checked.first().copied().unwrap_or(false)
            && before.value() != headers[0].pre_apply_checksum
        {
            return Err(rejected(
                &labels[0],
                format!(
                    "its pre-apply checksum {} is not the database's {}",
                    headers[0].pre_apply_checksum,
                    before.value()
                ),
            ));
        }
    }

    let lock = ltx::lock_page(page_size);
    let mut written = PendingPages::new(page_size);
    // A snapshot first replaces the database: it must hold every page up to its commit (the
    // encoders write them all; the decoder does not check).
    let snapshot_commit = headers
        .first()
        .filter(|h| h.is_snapshot())
        .map(|h| h.commit);
    let mut snapshot_pages = 0u32;
    let merged = {
        let mut insert = tx
            .prepare_cached("INSERT INTO sqlite_dbpage(pgno, data) VALUES (?1, ?2)")
            .map_err(|e| apply_error(&last, e.into()))?;
        let mut read = tx
            .prepare_cached("SELECT data FROM sqlite_dbpage WHERE pgno = ?1")
            .map_err(|e| apply_error(&last, e.into()))?;
        let compactor = Compactor::new(decoders).map_err(|e| file_error(&last, e))?;
        compactor.merge_versions(|pgno, versions| -> Result<(), ApplyStop> {
            if snapshot_commit.is_some_and(|c| pgno <= c)
                && pgno != lock
                && versions.iter().any(|(i, _)| i == 0)
            {
                snapshot_pages += 1;
            }
            // A file's image of a page beyond its own commit is no part of its state.
            let mut newest: Option<&[u8]> = None;
            if any_tracked {
                // The page as the database held it, taken out of the states that count it.
                let base: Option<Vec<u8>> = if from_base && pgno <= base_count {
                    read.query_row([pgno], |r| r.get::<_, Option<Vec<u8>>>(0))
                        .optional()
                        .map(Option::flatten)
                        .map_err(|e| apply_error(&last, e.into()))?
                } else {
                    None
                };
                let mut image = base.as_deref();
                let mut held = versions.iter().peekable();
                for (k, h) in headers.iter().enumerate() {
                    if let Some((_, data)) = held.next_if(|&(i, _)| i == k)
                        && pgno <= h.commit
                    {
                        image = Some(data);
                        newest = Some(data);
                    }
                    if tracked[k] && pgno <= h.commit {
                        if let Some(b) = &base {
                            sums[k].add_page(pgno, b);
                        }
                        if let Some(data) = image {
                            sums[k].add_page(pgno, data);
                        }
                    }
                }
            } else {
                newest = versions
                    .iter()
                    .filter(|&(i, _)| pgno <= headers[i].commit)
                    .last()
                    .map(|(_, data)| data);
            }
            if let Some(data) = newest
                && pgno <= commit
                && pgno != lock
            {
                insert
                    .execute(params![pgno, data])
                    .map_err(|e| apply_error(&last, e.into()))?;
                written.add(pgno, data);
            }
            Ok(())
        })
    };
    let decoded = match merged {
        Ok(decoded) => decoded,
        Err(ApplyStop::Poll(e)) => return Err(e),
        Err(ApplyStop::Ltx(ltx::Error::Input { index, source })) => {
            return Err(file_error(labels.get(index).unwrap_or(&last), *source));
        }
        Err(ApplyStop::Ltx(e)) => return Err(file_error(&last, e)),
    };
    // Dropping the transaction on any error below rolls it back: the previous state stays.
    if let Some(commit) = snapshot_commit {
        let expected = commit - u32::from(lock <= commit);
        if snapshot_pages != expected {
            return Err(rejected(
                &labels[0],
                format!(
                    "a snapshot (from TXID 1) with {snapshot_pages} of the {expected} pages up to its commit"
                ),
            ));
        }
    }
    for (k, (h, d)) in headers.iter().zip(&decoded).enumerate() {
        if let Some(before) = k.checked_sub(1).map(|j| sums[j].value())
            && pre_checked[k]
            && before != h.pre_apply_checksum
        {
            return Err(rejected(
                &labels[k],
                format!(
                    "its pre-apply checksum {} is not the database's {before}",
                    h.pre_apply_checksum
                ),
            ));
        }
        if carries[k] && sums[k].value() != d.trailer.post_apply_checksum {
            return Err(rejected(
                &labels[k],
                format!(
                    "the database would be at checksum {}, not the file's post-apply {}",
                    sums[k].value(),
                    d.trailer.post_apply_checksum
                ),
            ));
        }
    }
    let actual: u32 = tx
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(|e| apply_error(&last, e.into()))?;
    if commit < actual {
        // The database shrank: sqlite_dbpage truncates at COMMIT (must be the last write).
        tx.execute(
            "INSERT INTO sqlite_dbpage(pgno, data) VALUES (?1, ?2)",
            params![commit + 1, Option::<Vec<u8>>::None],
        )
        .map_err(|e| apply_error(&last, e.into()))?;
    }
    before_commit(&written.finish(to, commit))?;
    tx.commit().map_err(|e| apply_error(&last, e.into()))?;
    Ok(to)
}

/// Reads an LTX file as it arrives and compares its pages with the database's: None when the
/// database is in the state the file leaves it in (same page count, every page equal),
/// else which page differs.
fn first_differing_page(
    conn: &Connection,
    reader: impl Read,
    file: &str,
) -> Result<Option<String>, PollError> {
    let mut dec = Decoder::new(reader).map_err(|e| file_error(file, e))?;
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
    while let Some(pgno) = dec.next_page(&mut buf).map_err(|e| file_error(file, e))? {
        if pgno > header.commit {
            continue;
        }
        let ours: Option<Vec<u8>> = page
            .query_row([pgno], |r| r.get(0))
            .map_err(|e| apply_error(file, e.into()))?;
        if ours.as_deref().map(|p| comparable(pgno, p)) != Some(comparable(pgno, &buf)) {
            return Ok(Some(format!("page {pgno} differs from the database's")));
        }
    }
    dec.finish().map_err(|e| file_error(file, e))?;
    Ok(None)
}

/// The LTX checksums of the database as this transaction sees it, of pages `1..=limit` for
/// each of `limits`, in one pass.
fn db_checksums(
    conn: &Connection,
    page_size: u32,
    limits: &[u32],
) -> anyhow::Result<Vec<DbChecksum>> {
    let mut order: Vec<usize> = (0..limits.len()).collect();
    order.sort_by_key(|&i| limits[i]);
    let mut out = vec![DbChecksum::new(page_size); limits.len()];
    let mut sum = DbChecksum::new(page_size);
    let mut next = 0;
    let mut stmt = conn.prepare("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")?;
    let mut rows = stmt.query([])?;
    while next < order.len()
        && let Some(row) = rows.next()?
    {
        let pgno: u32 = row.get(0)?;
        while let Some(&i) = order.get(next)
            && limits[i] < pgno
        {
            out[i] = sum;
            next += 1;
        }
        let data: Option<Vec<u8>> = row.get(1)?;
        if let Some(data) = data {
            sum.add_page(pgno, &data);
        }
    }
    for &i in &order[next..] {
        out[i] = sum;
    }
    Ok(out)
}

/// The LTX checksum of the database as this transaction sees it (pages up to `up_to`).
#[cfg(test)]
fn db_checksum(
    conn: &Connection,
    page_size: u32,
    up_to: Option<u32>,
) -> anyhow::Result<DbChecksum> {
    let sums = db_checksums(conn, page_size, &[up_to.unwrap_or(u32::MAX)])?;
    Ok(sums
        .into_iter()
        .next()
        .unwrap_or(DbChecksum::new(page_size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a simulated crash stops an apply (the process dies there: nothing after it runs).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum CrashPoint {
        /// After the file's pages are written and checked, before the COMMIT.
        BeforeCommit,
        /// After the COMMIT, before the TXID is recorded and published.
        AfterCommit,
    }

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

    /// The TXID `<db>-follow-txid` records.
    fn recorded_txid(db: &Path) -> Option<TxId> {
        read_recorded(db).unwrap().map(|r| r.txid)
    }

    /// A file's bytes as a poll reads them.
    fn source<'a>(label: &str, bytes: &'a [u8]) -> Source<&'a [u8]> {
        Source {
            label: label.to_string(),
            reader: bytes,
        }
    }

    /// Applies one file in its own transaction, as a poll does.
    fn apply_one(
        conn: &mut Connection,
        bytes: &[u8],
        at: TxId,
        label: &str,
    ) -> Result<TxId, PollError> {
        apply_files(conn, vec![source(label, bytes)], at, |_| Ok(()))
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
        assert_eq!(recorded_txid(&db), None);
        record_txid(&db, TxId(0x2a)).unwrap();
        assert_eq!(recorded_txid(&db), Some(TxId(0x2a)));
        let page = vec![7u8; 4096];
        let pages = [1u32, 2, 3, 7, 9, 10];
        let pending = Pending::of(
            TxId(0x2b),
            10,
            4096,
            pages.iter().map(|&p| (p, page.as_slice())),
        );
        assert_eq!(pending.runs, vec![(1, 3), (7, 7), (9, 10)]);
        let recorded = Recorded {
            txid: TxId(0x2a),
            pending: Some(pending),
        };
        write_record(&db, &recorded).unwrap();
        assert_eq!(read_recorded(&db).unwrap(), Some(recorded));
        // A damaged pending line is an error, not a silent resume.
        std::fs::write(txid_path(&db), "000000000000002a\npending x\n").unwrap();
        assert!(read_recorded(&db).is_err());
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
        ltx_of_pages(conn, min, max, checksums, None)
    }

    /// As [`ltx_of`], with only the pages in `only` when given.
    fn ltx_of_pages(
        conn: &Connection,
        min: u64,
        max: u64,
        checksums: Option<Checksum>,
        only: Option<&[u32]>,
    ) -> Vec<u8> {
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
            if *pgno == ltx::lock_page(page_size) || only.is_some_and(|o| !o.contains(pgno)) {
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

    /// The primary loses all but 10 rows and shrinks (VACUUM), checkpointed into its file.
    fn shrink(p: &Connection) {
        p.execute_batch("DELETE FROM t WHERE id > 10; VACUUM; PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
    }

    /// The primary gains 50 rows of 500 bytes (it grows), checkpointed into its file.
    fn grow(p: &Connection) {
        p.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 50)
             INSERT INTO t(v) SELECT printf('%.500c', 'y') FROM n;
             PRAGMA wal_checkpoint(TRUNCATE)",
        )
        .unwrap();
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

    /// A primary database of `rows` rows, a follower's copy of it (its path) and the
    /// applying connection of the copy.
    fn primary_and_copy(rows: i64) -> (tempfile::TempDir, Connection, PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let (primary, follower) = (dir.path().join("p.db"), dir.path().join("f.db"));
        let p = make_db(&primary, rows);
        std::fs::copy(&primary, &follower).unwrap();
        let apply = open_apply_connection(&follower).unwrap();
        (dir, p, follower, apply)
    }

    /// The primary's database after a shrink (rows deleted, VACUUM), applied to a follower's
    /// copy of the bigger state: same rows, same page count, a sound database; a reader that
    /// began before keeps its snapshot.
    #[test]
    fn applies_a_file_in_one_transaction_and_shrinks_the_database() {
        let (_dir, p, follower, mut apply) = primary_and_copy(400);
        let reader = Connection::open(&follower).unwrap();
        let before = rows(&p);
        shrink(&p);
        let after = rows(&p);
        assert!(
            after.1 < before.1,
            "the primary shrank: {before:?} -> {after:?}"
        );
        reader.execute_batch("BEGIN").unwrap();
        assert_eq!(rows(&reader).0, before.0);

        let file = ltx_of(&p, 2, 2, None);
        let txid = apply_one(&mut apply, &file, TxId(1), "0/x.ltx").unwrap();
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
        let (_dir, p, follower, mut apply) = primary_and_copy(50);
        let current = db_checksum(&apply, 4096, None).unwrap().value();
        p.execute_batch("INSERT INTO t(v) VALUES ('new'); PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();

        let mut damaged = ltx_of(&p, 2, 2, None);
        let mid = damaged.len() / 2;
        damaged[mid] ^= 0xff;
        let e = apply_one(&mut apply, &damaged, TxId(1), "0/x.ltx").unwrap_err();
        assert!(matches!(e, PollError::Rejected { .. }), "{e}");
        assert_eq!(rows(&Connection::open(&follower).unwrap()).0, 50);

        let wrong = ltx_of(&p, 2, 2, Some(Checksum(Checksum::FLAG.0 | 7)));
        let e = apply_one(&mut apply, &wrong, TxId(1), "0/x.ltx").unwrap_err();
        assert!(
            matches!(&e, PollError::Rejected { reason, .. } if reason.contains("pre-apply")),
            "{e}"
        );
        assert_eq!(rows(&Connection::open(&follower).unwrap()).0, 50);

        let right = ltx_of(&p, 2, 2, Some(current));
        assert_eq!(
            apply_one(&mut apply, &right, TxId(1), "0/x.ltx").unwrap(),
            TxId(2)
        );
        assert_eq!(rows(&Connection::open(&follower).unwrap()).0, 51);
    }

    /// A follower's directory: its database, a file replica and the config naming both.
    struct Site {
        dir: tempfile::TempDir,
        primary: Connection,
    }

    impl Site {
        fn new() -> Site {
            let dir = tempfile::tempdir().unwrap();
            let primary = make_db(&dir.path().join("p.db"), 50);
            std::fs::write(
                dir.path().join("litestream.yml"),
                format!(
                    "dbs:\n  - path: {}\n    replica:\n      url: file://{}\n",
                    dir.path().join("f.db").display(),
                    dir.path().join("replica").display()
                ),
            )
            .unwrap();
            let site = Site { dir, primary };
            site.ship(0, 1, 1);
            site
        }

        fn db(&self) -> PathBuf {
            self.dir.path().join("f.db")
        }

        /// Writes an LTX file into the replica.
        fn put(&self, level: u8, min: u64, max: u64, bytes: &[u8]) {
            let dir = self.dir.path().join(format!("replica/ltx/{level}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{min:016x}-{max:016x}.ltx")), bytes).unwrap();
        }

        /// One more row on the primary, shipped as the level-0 file `txid` (every page).
        fn write(&self, txid: u64) {
            self.more();
            self.put(0, txid, txid, &ltx_of(&self.primary, txid, txid, None));
        }

        /// TXIDs 5..=8 on the primary (at 4), as a restart race ships them: the
        /// predecessor's last upload `5-7` and the restarted primary's first, `5-8`.
        fn race_pair(&self) -> (Vec<u8>, Vec<u8>) {
            for _ in 5..=7 {
                self.more();
            }
            let late = ltx_of(&self.primary, 5, 7, None);
            self.more();
            (late, ltx_of(&self.primary, 5, 8, None))
        }

        /// The primary as it is now, as the file `min-max` (every page) of `level`.
        fn ship(&self, level: u8, min: u64, max: u64) {
            self.put(level, min, max, &ltx_of(&self.primary, min, max, None));
        }

        /// One more row on the primary, not shipped (the test builds the files).
        fn more(&self) {
            self.primary
                .execute_batch("INSERT INTO t(v) VALUES ('more'); PRAGMA wal_checkpoint(TRUNCATE)")
                .unwrap();
        }

        async fn follower(&self) -> anyhow::Result<Follower> {
            let settings = FollowSettings {
                config_path: self.dir.path().join("litestream.yml"),
                primary_url: None,
                wait: Duration::from_secs(1),
                max_lag: Duration::from_secs(30),
            };
            start(
                &settings,
                &self.db().display().to_string(),
                &Registry::new(),
            )
            .await
        }

        /// The follower's rows equal the primary's.
        fn assert_same_rows(&self) {
            let f = Connection::open(self.db()).unwrap();
            assert_eq!(rows(&f), rows(&self.primary));
        }

        /// The follower's rows differ from the primary's (it is behind).
        fn assert_rows_differ(&self) {
            let f = Connection::open(self.db()).unwrap();
            assert_ne!(rows(&f), rows(&self.primary));
        }
    }

    /// A crash between an apply's COMMIT and its recorded TXID: the restarted follower
    /// settles the file (the database already holds it) and goes on with the next one,
    /// without a false "another lineage", without applying the file again and without a
    /// restore. A crash before the COMMIT leaves the file to apply again.
    #[tokio::test]
    async fn a_crash_around_the_commit_resumes_where_the_database_is() {
        for (point, applied_after_restart) in
            [(CrashPoint::AfterCommit, 1), (CrashPoint::BeforeCommit, 2)]
        {
            let site = Site::new();
            let a = site.follower().await.unwrap();
            assert_eq!(a.handle().applied(), TxId(1));
            site.write(2);
            *a.crash.lock() = Some(point);
            a.poll().await.unwrap_err();
            drop(a);
            site.write(3);

            let b = site
                .follower()
                .await
                .unwrap_or_else(|e| panic!("{point:?}: restart failed: {e:#}"));
            assert_eq!(
                b.handle().applied(),
                TxId(3),
                "{point:?}: {}",
                b.handle().health_json()
            );
            assert_eq!(
                b.metrics.files_applied.get(),
                applied_after_restart,
                "{point:?}"
            );
            assert_eq!(recorded_txid(&site.db()), Some(TxId(3)), "{point:?}");
            site.assert_same_rows();
        }
    }

    /// A TXID that cannot be recorded fails the poll, leaves the follower's position where
    /// the record is, and is retried: the next poll applies the file (no file lost, none
    /// applied twice). An apply whose record failed after its COMMIT is settled by the next
    /// poll without applying the file again.
    #[tokio::test]
    async fn a_failed_record_is_a_failed_poll_retried() {
        let site = Site::new();
        let a = site.follower().await.unwrap();
        site.write(2);
        // A directory where the temp file of the record goes: writing it fails.
        let mut tmp = txid_path(&site.db()).into_os_string();
        tmp.push(".tmp");
        std::fs::create_dir(&tmp).unwrap();
        let e = a.poll().await.unwrap_err();
        assert!(matches!(e, PollError::Record { .. }), "{e}");
        assert_eq!(a.handle().applied(), TxId(1));
        assert_eq!(recorded_txid(&site.db()), Some(TxId(1)));
        assert_eq!(a.handle().health_json()["failing"], "record");
        std::fs::remove_dir(&tmp).unwrap();
        a.poll().await.unwrap();
        assert_eq!(a.handle().applied(), TxId(2));
        assert_eq!(recorded_txid(&site.db()), Some(TxId(2)));
        site.assert_same_rows();

        // The record after the COMMIT fails (as a crash there would leave it).
        site.write(3);
        *a.crash.lock() = Some(CrashPoint::AfterCommit);
        a.poll().await.unwrap_err();
        assert_eq!(a.handle().applied(), TxId(2));
        *a.crash.lock() = None;
        site.write(4);
        a.poll().await.unwrap();
        assert_eq!(a.handle().applied(), TxId(4));
        assert_eq!(a.metrics.files_applied.get(), 3);
        assert_eq!(recorded_txid(&site.db()), Some(TxId(4)));
        site.assert_same_rows();
    }

    /// Level-0 files the follower needs are gone and no level bridges them: the follower
    /// goes to the replica's latest state (the snapshot and the files after it, in one
    /// transaction), also when it is restarted; a replica behind the follower is refused.
    #[tokio::test]
    async fn a_gap_no_level_bridges_goes_to_the_latest_state() {
        let site = Site::new();
        let a = site.follower().await.unwrap();
        for txid in 2..=4 {
            site.write(txid);
        }
        // Retention: a snapshot at 4, level 0 keeps only its newest file... and one more.
        site.ship(9, 1, 4);
        site.write(5);
        for txid in 2..=4 {
            std::fs::remove_file(
                site.dir
                    .path()
                    .join(format!("replica/ltx/0/{txid:016x}-{txid:016x}.ltx")),
            )
            .unwrap();
        }
        let reader = Connection::open(site.db()).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let before = rows(&reader);
        a.poll()
            .await
            .unwrap_or_else(|e| panic!("the gap was not crossed: {e}"));
        assert_eq!(a.handle().applied(), TxId(5));
        assert_eq!(a.metrics.restores.get(), 1);
        // An open read transaction keeps its snapshot; the next one sees the latest state.
        assert_eq!(rows(&reader), before);
        reader.execute_batch("COMMIT").unwrap();
        site.assert_same_rows();
        drop(a);

        // Restarted across the same kind of gap.
        site.write(6);
        site.write(7);
        site.ship(9, 1, 7);
        for txid in [6, 7] {
            std::fs::remove_file(
                site.dir
                    .path()
                    .join(format!("replica/ltx/0/{txid:016x}-{txid:016x}.ltx")),
            )
            .unwrap();
        }
        let b = site.follower().await.unwrap();
        assert_eq!(
            b.handle().applied(),
            TxId(7),
            "{}",
            b.handle().health_json()
        );
        site.assert_same_rows();
    }

    /// A crash around the COMMIT of a restore across a gap (a plan merged and written as it
    /// streams): the pending record built while the pages were written lets the restarted
    /// follower tell whether the COMMIT happened: after it, the latest state is recorded
    /// without applying anything again; before it, the restore runs again.
    #[tokio::test]
    async fn a_crash_around_the_commit_of_a_restore_resumes_where_the_database_is() {
        for (point, restores_after_restart) in
            [(CrashPoint::AfterCommit, 0), (CrashPoint::BeforeCommit, 1)]
        {
            let site = Site::new();
            let a = site.follower().await.unwrap();
            for txid in 2..=4 {
                site.write(txid);
            }
            site.ship(9, 1, 4);
            site.write(5);
            for txid in 2..=4 {
                std::fs::remove_file(
                    site.dir
                        .path()
                        .join(format!("replica/ltx/0/{txid:016x}-{txid:016x}.ltx")),
                )
                .unwrap();
            }
            *a.crash.lock() = Some(point);
            a.poll().await.unwrap_err();
            assert_eq!(a.handle().applied(), TxId(1), "{point:?}");
            drop(a);

            let b = site
                .follower()
                .await
                .unwrap_or_else(|e| panic!("{point:?}: restart failed: {e:#}"));
            assert_eq!(
                b.handle().applied(),
                TxId(5),
                "{point:?}: {}",
                b.handle().health_json()
            );
            assert_eq!(
                b.metrics.restores.get(),
                restores_after_restart,
                "{point:?}"
            );
            assert_eq!(recorded_txid(&site.db()), Some(TxId(5)), "{point:?}");
            site.assert_same_rows();
        }
    }

    /// A restarted primary racing its predecessor's last upload: the predecessor's file
    /// `5-7` and the new process's `5-8` (the same TXIDs batched differently, one history) are
    /// both listed until the primary's next compaction keeps `5-7` and replaces `5-8` with
    /// `8-8`. A follower that meets the overlap applies neither and waits, unready (not
    /// stopped for good), whether it had applied `5-7`, `5-8` or neither; once settled it
    /// goes on, and its rows are the primary's.
    #[tokio::test]
    async fn a_follower_waits_out_the_overlap_of_a_restart_racing_its_predecessor() {
        let name = |min: u64, max: u64| format!("{min:016x}-{max:016x}.ltx");
        for applied_first in ["5-7", "5-8", "neither"] {
            let site = Site::new();
            for txid in 2..=4 {
                site.write(txid);
            }
            let f = site.follower().await.unwrap();
            assert_eq!(f.handle().applied(), TxId(4));
            let (late, ours) = site.race_pair();
            match applied_first {
                "5-7" => site.put(0, 5, 7, &late),
                "5-8" => site.put(0, 5, 8, &ours),
                _ => {}
            }
            f.poll().await.unwrap();
            site.put(0, 5, 7, &late);
            site.put(0, 5, 8, &ours);
            let before = f.handle().applied();
            for _ in 0..2 {
                let e = f.poll().await.unwrap_err();
                assert!(
                    e.to_string().contains("overlapping level-0 files"),
                    "{applied_first}: {e}"
                );
            }
            assert_eq!(f.handle().applied(), before, "{applied_first}");
            let h = f.handle().health_json();
            assert_eq!(h["ready"], false, "{applied_first}: {h}");
            assert!(
                h["why"]
                    .as_str()
                    .is_some_and(|w| w.contains("overlapping level-0 files")),
                "{applied_first}: {h}"
            );
            // The primary settles: 8-8 goes up, then 5-8 goes.
            site.ship(0, 8, 8);
            std::fs::remove_file(site.dir.path().join("replica/ltx/0").join(name(5, 8))).unwrap();
            f.poll()
                .await
                .unwrap_or_else(|e| panic!("{applied_first}: after settling: {e}"));
            assert_eq!(f.handle().applied(), TxId(8), "{applied_first}");
            site.write(9);
            f.poll().await.unwrap();
            assert_eq!(f.handle().applied(), TxId(9), "{applied_first}");
            assert_eq!(f.handle().health_json()["ready"], true, "{applied_first}");
            site.assert_same_rows();
        }
    }

    /// The restart race when the primary's compaction into level 1 passed the overlap before
    /// the predecessor's late file landed: nothing settles `5-7` beside `5-8` until
    /// `l0-retention`, but level 1 (`5-10`, the primary's chain compacted) reaches past
    /// both. A follower that applied neither applies `5-10` over what it has; one that
    /// applied `5-7` cannot tell which history that was, so it goes to the latest state with
    /// a restore (every page); one that applied `5-8` is past the pair already. Either way
    /// it is ready again and goes on with level 0 after it, and the pair stays out of its
    /// way (a level check that adopts `5-8` as its anchor again does not bring the wait
    /// back). Not while level 1 stops inside the overlap, nor through a level-1 file whose
    /// checksum is not what applying it leads to: then it waits. While the overlap stays the
    /// same, the levels are looked at every `LEVEL_CHECK_EVERY` polls, not at each.
    #[tokio::test]
    async fn a_follower_crosses_an_overlap_below_level_1s_end_through_level_1() {
        for applied_first in ["5-7", "5-8", "neither"] {
            let site = Site::new();
            for txid in 2..=4 {
                site.write(txid);
            }
            let f = site.follower().await.unwrap();
            assert_eq!(f.handle().applied(), TxId(4));
            let pre5 = db_checksum(&site.primary, 4096, None).unwrap().value();
            let more = || site.more();
            let (late, ours) = site.race_pair();
            match applied_first {
                "5-7" => site.put(0, 5, 7, &late),
                "5-8" => site.put(0, 5, 8, &ours),
                _ => {}
            }
            f.poll().await.unwrap();
            site.put(0, 5, 7, &late);
            site.put(0, 5, 8, &ours);
            let before = f.handle().applied();
            // Level 1 up to 7 only: still inside the overlap.
            site.put(1, 5, 7, &ltx_of(&site.primary, 5, 7, Some(pre5)));
            let waits = |e: PollError, what: &str| {
                assert!(
                    e.to_string().contains("overlapping level-0 files"),
                    "{applied_first}: {what}: {e}"
                );
                assert_eq!(f.handle().applied(), before, "{applied_first}: {what}");
                assert_eq!(
                    f.handle().health_json()["ready"],
                    false,
                    "{applied_first}: {what}"
                );
            };
            waits(f.poll().await.unwrap_err(), "level 1 ends inside");
            for _ in 9..=10 {
                more();
            }
            site.ship(0, 9, 10);
            let name = format!("{:016x}-{:016x}.ltx", 5, 10);
            let l1 = site.dir.path().join("replica/ltx/1").join(&name);
            // Polls until the overlap is looked at again (or it is passed).
            let next_look = async || {
                let mut waited = 0;
                loop {
                    match f.poll().await {
                        Err(e) if e.to_string().contains("reaches past it") => return Err(e),
                        Err(e) => {
                            waits(e, "between two looks at the levels");
                            waited += 1;
                            assert!(waited <= LEVEL_CHECK_EVERY, "{applied_first}");
                        }
                        Ok(n) => return Ok(n),
                    }
                }
            };
            if applied_first != "5-8" {
                let what = "a checksum applying it does not lead to";
                std::fs::write(
                    &l1,
                    ltx_of_pages(&site.primary, 5, 10, Some(pre5), Some(&[1, 2])),
                )
                .unwrap();
                let e = next_look().await.unwrap_err();
                assert!(
                    e.to_string()
                        .contains(&format!("1/{name} reaches past it but crossing failed")),
                    "{applied_first}: {what}: {e}"
                );
                waits(e, what);
                site.assert_rows_differ();
            }
            std::fs::write(&l1, ltx_of(&site.primary, 5, 10, Some(pre5))).unwrap();
            next_look()
                .await
                .unwrap_or_else(|e| panic!("{applied_first}: {e}"));
            if applied_first == "5-8" {
                // Past the pair already: level 0 goes on.
                f.poll().await.unwrap();
            }
            assert_eq!(f.handle().applied(), TxId(10), "{applied_first}");
            let restores = u64::from(applied_first == "5-7");
            assert_eq!(f.metrics.restores.get(), restores, "{applied_first}");
            assert_eq!(f.handle().health_json()["ready"], true, "{applied_first}");
            site.assert_same_rows();
            // Level 0 goes on after it; the overlapping files stay behind, also once a
            // level check takes `5-8` as its anchor again (as after a restart at TXID 8).
            site.write(11);
            f.poll().await.unwrap();
            assert_eq!(f.handle().applied(), TxId(11), "{applied_first}");
            *f.anchor.lock() = None;
            for txid in 12..=13 {
                site.write(txid);
                f.poll()
                    .await
                    .unwrap_or_else(|e| panic!("{applied_first}: {e}"));
            }
            assert_eq!(f.handle().applied(), TxId(13), "{applied_first}");
            site.assert_same_rows();
        }
    }

    /// Overlapping level-0 files of any other shape than a restart race's pair (here four
    /// files, as two primaries starting from one TXID write them) are waited out even when
    /// one primary's level 1 reaches past them: the follower cannot tell whose history
    /// continues after it.
    #[tokio::test]
    async fn a_follower_waits_out_other_overlaps_whatever_level_1_holds() {
        let site = Site::new();
        for txid in 2..=4 {
            site.write(txid);
        }
        let f = site.follower().await.unwrap();
        let more = || site.more();
        for _ in 5..=7 {
            more();
        }
        let a1 = ltx_of(&site.primary, 5, 7, None);
        for _ in 8..=12 {
            more();
        }
        site.put(0, 5, 7, &a1);
        site.ship(0, 8, 12);
        site.ship(1, 5, 12);
        // The other writer's files, batched otherwise.
        site.ship(0, 5, 8);
        site.ship(0, 9, 12);
        for _ in 0..=LEVEL_CHECK_EVERY {
            let e = f.poll().await.unwrap_err();
            assert!(e.to_string().contains("overlapping level-0 files"), "{e}");
        }
        assert_eq!(f.handle().applied(), TxId(4));
    }

    /// After crossing a restart race's pair, level 0 is listed from the pair on: another
    /// writer's file that starts inside the TXIDs crossed (here `8-12`, below the applied
    /// TXID 10 where the listing would otherwise start) shows, overlaps, and is waited out
    /// instead of being hidden while that writer's next files are applied (review: two
    /// primaries, one's level 1 crossed, the other's later files).
    #[tokio::test]
    async fn after_a_crossing_files_inside_the_crossed_txids_still_show() {
        let site = Site::new();
        for txid in 2..=4 {
            site.write(txid);
        }
        let f = site.follower().await.unwrap();
        let more = || site.more();
        for _ in 5..=7 {
            more();
        }
        let a = ltx_of(&site.primary, 5, 7, None);
        more();
        site.ship(0, 5, 8);
        for _ in 9..=10 {
            more();
        }
        site.ship(0, 9, 10);
        site.ship(1, 5, 10);
        site.put(0, 5, 7, &a);
        f.poll().await.unwrap();
        assert_eq!(f.handle().applied(), TxId(10));
        for _ in 11..=12 {
            more();
        }
        site.ship(0, 8, 12);
        site.ship(0, 11, 12);
        let e = f.poll().await.unwrap_err();
        assert!(e.to_string().contains("overlapping level-0 files"), "{e}");
        assert_eq!(f.handle().applied(), TxId(10));
    }

    /// A large apply (here a whole database of ~24 MB) goes through the WAL, and the WAL file
    /// does not stay that large: the next apply after the checkpoint truncates it to
    /// `WAL_SIZE_LIMIT`.
    #[tokio::test]
    async fn the_wal_shrinks_back_after_a_large_apply() {
        let site = Site::new();
        let f = site.follower().await.unwrap();
        site.primary
            .execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 48000)
                 INSERT INTO t(v) SELECT printf('%.500c', 'y') FROM n",
                [],
            )
            .unwrap();
        site.write(2);
        f.poll().await.unwrap();
        assert_eq!(f.handle().applied(), TxId(2));
        let wal = || {
            std::fs::metadata(site.dir.path().join("f.db-wal"))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        let large = wal();
        assert!(
            large > WAL_SIZE_LIMIT as u64,
            "the apply of the whole database left a WAL of {large} bytes"
        );
        // TXID 3 rewrites page 1 only (the primary did not change).
        site.put(
            0,
            3,
            3,
            &ltx_of_pages(&site.primary, 3, 3, None, Some(&[1])),
        );
        f.poll().await.unwrap();
        assert_eq!(f.handle().applied(), TxId(3));
        assert!(
            wal() <= WAL_SIZE_LIMIT as u64,
            "the WAL is still {} bytes after the next apply (was {large})",
            wal()
        );
        site.assert_same_rows();
    }

    /// The restart race again: a follower applied the predecessor's `5-7` (it usually lands
    /// first) and is restarted while the new process's `5-8` overlaps it, before the primary
    /// settled them. Running, it would wait; restarted, it must not refuse to start on
    /// "another lineage" (`5-8` crosses its TXID 7 only because the history is batched
    /// differently), and once settled (`8-8` up, `5-8` gone) it goes on.
    #[tokio::test]
    async fn a_follower_restarted_during_the_overlap_of_a_restart_race_still_starts() {
        let name = |min: u64, max: u64| format!("{min:016x}-{max:016x}.ltx");
        let site = Site::new();
        for txid in 2..=4 {
            site.write(txid);
        }
        let (late, ours) = site.race_pair();
        site.put(0, 5, 7, &late);
        let f = site.follower().await.unwrap();
        assert_eq!(f.handle().applied(), TxId(7));
        drop(f);
        site.put(0, 5, 8, &ours);
        let f = site
            .follower()
            .await
            .unwrap_or_else(|e| panic!("a restarted follower refuses to start: {e:#}"));
        assert_eq!(f.handle().applied(), TxId(7));
        site.ship(0, 8, 8);
        std::fs::remove_file(site.dir.path().join("replica/ltx/0").join(name(5, 8))).unwrap();
        f.poll()
            .await
            .unwrap_or_else(|e| panic!("after settling: {e}"));
        assert_eq!(f.handle().applied(), TxId(8));
        site.assert_same_rows();
    }

    /// A follower whose replica is empty when it starts serves its database unready, saying
    /// why; a fresh follower (no database) of an empty replica refuses to start.
    #[tokio::test]
    async fn a_replica_gone_at_start_serves_the_resumed_state_unready() {
        let site = Site::new();
        drop(site.follower().await.unwrap());
        let replica = site.dir.path().join("replica");
        let away = site.dir.path().join("replica.away");
        std::fs::rename(&replica, &away).unwrap();
        let a = site
            .follower()
            .await
            .unwrap_or_else(|e| panic!("refused to start: {e:#}"));
        assert_eq!(a.handle().applied(), TxId(1));
        let h = a.handle().health_json();
        assert_eq!(h["ready"], false, "{h}");
        assert!(
            h["why"]
                .as_str()
                .is_some_and(|w| w.contains("the replica is gone")),
            "{h}"
        );
        drop(a);

        std::fs::remove_file(site.db()).unwrap();
        let e = site
            .follower()
            .await
            .err()
            .expect("a fresh follower of nothing started");
        assert!(format!("{e:#}").contains("restoring"), "{e:#}");
    }

    /// A restore plan whose files carry database checksums (a snapshot, a file that shrinks
    /// the database, one that grows it), merged in one transaction: each file's pre- and
    /// post-apply checksums are checked against the state after the file before it, which
    /// the merge never writes out, and the database before the snapshot does not count; a
    /// wrong pre-apply checksum rolls everything back, the right ones reach the primary's
    /// state (every post-apply checksum matching the state accumulated page by page).
    #[test]
    fn checksums_are_checked_across_a_merged_plan() {
        let (_dir, p, follower, mut apply) = primary_and_copy(400);
        // The follower's database differs from the snapshot's state (fewer rows).
        Connection::open(&follower)
            .unwrap()
            .execute_batch("DELETE FROM t WHERE id > 300; PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        let snap = ltx_of(&p, 1, 2, Some(Checksum::ZERO));
        let pre3 = db_checksum(&p, 4096, None).unwrap().value();
        shrink(&p);
        let f3 = ltx_of(&p, 3, 3, Some(pre3));
        let pre4 = db_checksum(&p, 4096, None).unwrap().value();
        grow(&p);
        let f4 = ltx_of(&p, 4, 4, Some(pre4));
        let apply_all = |conn: &mut Connection, files: [&[u8]; 3]| {
            let sources = files.iter().map(|b| source("9/x.ltx", b)).collect();
            apply_files(conn, sources, TxId(1), |_| Ok(()))
        };
        for wrong in [
            [
                &snap[..],
                &ltx_of(&p, 3, 3, Some(Checksum(pre3.0 ^ 1)))[..],
                &f4[..],
            ],
            [
                &snap[..],
                &f3[..],
                &ltx_of(&p, 4, 4, Some(Checksum(pre4.0 ^ 1)))[..],
            ],
        ] {
            let e = apply_all(&mut apply, wrong).unwrap_err();
            assert!(
                matches!(&e, PollError::Rejected { reason, .. } if reason.contains("pre-apply")),
                "{e}"
            );
            assert_eq!(rows(&Connection::open(&follower).unwrap()).0, 300);
        }
        assert_eq!(apply_all(&mut apply, [&snap, &f3, &f4]).unwrap(), TxId(4));
        assert_eq!(rows(&Connection::open(&follower).unwrap()), rows(&p));
    }

    /// Files with database checksums applied together (one transaction): the checksum kept
    /// current page by page checks the second file's pre-apply checksum against the state
    /// the first one left (a shrink included) and each post-apply checksum; a wrong one
    /// rolls the whole transaction back.
    #[test]
    fn checksums_are_checked_across_files_of_one_transaction() {
        let (_dir, p, follower, mut apply) = primary_and_copy(400);
        let pre2 = db_checksum(&p, 4096, None).unwrap().value();
        shrink(&p);
        let f2 = ltx_of(&p, 2, 2, Some(pre2));
        let pre3 = db_checksum(&p, 4096, None).unwrap().value();
        grow(&p);
        let f3 = ltx_of(&p, 3, 3, Some(pre3));
        let mut wrong = ltx_of(&p, 3, 3, Some(Checksum(pre3.0 ^ 1)));

        let files = |third: &[u8]| -> Vec<Vec<u8>> { vec![f2.clone(), third.to_vec()] };
        let apply_all = |conn: &mut Connection, bytes: &[Vec<u8>]| {
            let sources = bytes.iter().map(|b| source("0/x.ltx", b)).collect();
            apply_files(conn, sources, TxId(1), |_| Ok(()))
        };
        let e = apply_all(&mut apply, &files(&wrong)).unwrap_err();
        assert!(
            matches!(&e, PollError::Rejected { reason, .. } if reason.contains("pre-apply")),
            "{e}"
        );
        assert_eq!(rows(&Connection::open(&follower).unwrap()).0, 400);
        wrong = f3.clone();
        assert_eq!(apply_all(&mut apply, &files(&wrong)).unwrap(), TxId(3));
        assert_eq!(rows(&Connection::open(&follower).unwrap()), rows(&p));
    }
}
