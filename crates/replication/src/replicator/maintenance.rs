//! Compaction, snapshots and retention on Litestream's schedules, in one task so no two of
//! them race over the same files.
//!
//! - Level n (1..=8) compacts the files of level n-1 newer than its own newest file into one
//!   file `<min>-<max>` (newest page wins, WAL fields zero, timestamp of the last input),
//!   reading L0 inputs from the local metadata directory when they are there (level 0 as
//!   one chain: overlapping files of one history are passed over, see `level0_chain`). It
//!   runs at start-up and then at wall-clock multiples of its interval (UTC, as Go's
//!   `time.Truncate`), and is skipped when its newest file was created after the previous
//!   boundary or when there is nothing new.
//! - The snapshot level (9) streams the database at the replication position
//!   ([`crate::snapshot`]) when the position is newer than the newest snapshot; then snapshot
//!   retention deletes snapshots older than `snapshot.retention` (never the newest) and, in
//!   levels 1..=n, files below the TXID floor of the prior snapshot (never a level's newest).
//! - L0 retention (every `l0-retention-check-interval` and after each L1 compaction) deletes
//!   L0 files already compacted into L1 and older than `l0-retention`, stopping at the first
//!   newer file and never deleting the newest L0 file; local copies go too.
//! - `retention.enabled: false` keeps every remote file (local cleanup continues);
//!   `verify-compaction` and `validation.interval` check that levels are contiguous.
//!
//! A failing job is retried with backoff and counts towards the retry window
//! ([`crate::health`]).
//!
//! # Idle costs nothing
//! Every job lists the replica, and an object store bills each request, so a job whose
//! inputs have not changed since its last success is skipped without a request: each job
//! remembers what it depended on when it last succeeded ([`Seen`]: the replicated TXID for
//! L0, the local position for snapshots, and a counter per level 1..=9 that every write or
//! delete of maintenance bumps, [`LevelVersions`]) and runs again only when that changed, or
//! when its last run left work that only time makes due (a compaction that was too early:
//! at the next boundary; L0 files or snapshots not yet old enough to delete: once the first
//! of them is). An idle database therefore costs no request once its last changes are
//! compacted, snapshotted and retained.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use ltx::{Compactor, Decoder, FileName, Header, TxId};
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::own_files::{Predecessor, another_writer};
use super::shared::Shared;
use super::upload::{UploadError, merge_l0, send_batch};
use crate::client::{ClientError, ListOptions};
use crate::health::Component;
use crate::level::{Level, LtxFileInfo, timestamp_from_millis};
use crate::replica_readers::{FetchOptions, FetchProgress, Input, open_inputs};
use crate::restore::chain;
use crate::snapshot::{SnapshotError, write_snapshot};
use crate::upload_pipe::pipe;

/// Errors of one maintenance job.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("compacting into level {level}: {source}")]
    Compact { level: Level, source: ltx::Error },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("another writer's level-0 file {0} is on the replica")]
    AnotherWriter(FileName),
    /// A level-0 file we did not write that may be our predecessor's last upload, while our
    /// own upload of its TXIDs is not listed yet: retried (see `settle_predecessors`).
    #[error(
        "the level-0 file {0}, which this server did not write, may be the last upload of its \
         previous run: it is compared once this server's own upload of its TXIDs is listed"
    )]
    UploadInFlight(FileName),
    #[error("{0}")]
    Task(String),
    #[error("local L0 file: {0}")]
    Local(std::io::Error),
}

impl MaintenanceError {
    /// See [`ClientError::stalled`].
    pub fn stalled(&self) -> Duration {
        match self {
            MaintenanceError::Client(e) => e.stalled(),
            _ => Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobKind {
    Compact(Level),
    Snapshot,
    L0Retention,
    Validate,
}

impl JobKind {
    /// True if nothing this job's work depends on differs between `a` and `b`.
    fn unchanged(self, a: &Seen, b: &Seen) -> bool {
        match self {
            JobKind::Compact(level) => match level.get() {
                0 | 1 => a.replicated == b.replicated,
                n => a.levels[usize::from(n - 1)] == b.levels[usize::from(n - 1)],
            },
            // A new position to snapshot, or snapshots written or deleted (by an on-demand
            // job) that retention has not seen.
            JobKind::Snapshot => {
                a.position == b.position && a.levels[LEVELS - 1] == b.levels[LEVELS - 1]
            }
            // New L0 files, or new L1 files that make older L0 files deletable.
            JobKind::L0Retention => a.replicated == b.replicated && a.levels[1] == b.levels[1],
            JobKind::Validate => a.levels[1..] == b.levels[1..],
        }
    }

    fn component(self) -> Component {
        match self {
            JobKind::Compact(_) | JobKind::Validate => Component::Compaction,
            JobKind::Snapshot => Component::Snapshot,
            JobKind::L0Retention => Component::Retention,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Job {
    kind: JobKind,
    interval: Duration,
    /// Wall-clock aligned (compaction, snapshot) or a plain ticker (retention, validation).
    aligned: bool,
    next: SystemTime,
    /// What the job depended on at its last success, if that run left nothing to do until
    /// it changes or, for work that only time makes due, until the instant given (see the
    /// module docs); `None` after a failure, or when the next boundary may make work due.
    settled: Option<(Seen, Option<SystemTime>)>,
}

impl Job {
    /// When the job runs next after a success (or a skip) that started at `started`.
    fn after(&self, started: SystemTime) -> SystemTime {
        if self.aligned {
            truncate(started, self.interval) + self.interval
        } else {
            started + self.interval
        }
    }
}

/// Number of replica levels (0..=9).
const LEVELS: usize = Level::MAX as usize + 1;

/// A counter per replica level, bumped by every write or delete maintenance (scheduled or
/// on demand) makes in it; level 0 changes through uploads, which the replicated TXID
/// counts instead. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct LevelVersions([AtomicU64; LEVELS]);

impl LevelVersions {
    fn bump(&self, level: Level) {
        self.0[usize::from(level.get())].fetch_add(1, Ordering::AcqRel);
    }

    fn get(&self) -> [u64; LEVELS] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Acquire))
    }
}

/// What maintenance jobs depend on, at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    /// The newest TXID on the replica (level 0).
    replicated: TxId,
    /// The newest local TXID (what a snapshot would hold).
    position: TxId,
    /// [`LevelVersions`].
    levels: [u64; LEVELS],
}

/// What a job left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Nothing to do until its inputs change.
    Settled,
    /// Nothing to do until its inputs change or this instant passes (files that expire).
    Until(SystemTime),
    /// Run again at the next boundary.
    Pending,
}

/// What [`Maintenance::compact`] did.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Compaction {
    Wrote(LtxFileInfo),
    /// The level's newest file is younger than the previous boundary: try again at the next.
    TooEarly,
    /// Nothing newer than the level's newest file.
    NothingNew,
}

/// Seconds from Go's zero time (0001-01-01 UTC) to the Unix epoch: Go's `Truncate` rounds
/// down to multiples of the interval counted from the zero time.
const GO_ZERO_TO_UNIX: u128 = 62_135_596_800;

/// `t` rounded down to a multiple of `d` since Go's zero time (`time.Truncate`).
pub(crate) fn truncate(t: SystemTime, d: Duration) -> SystemTime {
    let d_ns = d.as_nanos();
    if d_ns == 0 {
        return t;
    }
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    let rem = (since + GO_ZERO_TO_UNIX * 1_000_000_000) % d_ns;
    let back = u64::try_from(rem).unwrap_or(u64::MAX);
    t - Duration::from_nanos(back)
}

/// The maintenance task. Returns when `stop` is cancelled.
pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let now = SystemTime::now();
    let config = &shared.config;
    let mut jobs: Vec<Job> = config
        .levels
        .iter()
        .enumerate()
        .filter_map(|(i, interval)| {
            let level = Level::new(u8::try_from(i + 1).ok()?)?;
            Some(Job {
                kind: JobKind::Compact(level),
                interval: *interval,
                aligned: true,
                next: now,
                settled: None,
            })
        })
        .collect();
    jobs.push(Job {
        kind: JobKind::Snapshot,
        interval: config.snapshot.interval,
        aligned: true,
        next: now,
        settled: None,
    });
    if config.l0_retention.is_some() {
        jobs.push(Job {
            kind: JobKind::L0Retention,
            interval: config.l0_retention_check_interval,
            aligned: false,
            next: now + config.l0_retention_check_interval,
            settled: None,
        });
    }
    if let Some(interval) = config.validation_interval {
        jobs.push(Job {
            kind: JobKind::Validate,
            interval,
            aligned: false,
            next: now + interval,
            settled: None,
        });
    }
    let m = Maintenance::new(shared);
    loop {
        let Some((i, next)) = jobs
            .iter()
            .enumerate()
            .min_by_key(|(_, j)| j.next)
            .map(|(i, j)| (i, j.next))
        else {
            return;
        };
        let now = SystemTime::now();
        if let Ok(wait) = next.duration_since(now)
            && !wait.is_zero()
        {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let job = jobs[i];
        let started = SystemTime::now();
        let component = job.kind.component();
        let before = m.seen();
        // Nothing it depends on changed since its last success: no request (see the module
        // docs). A failing component always retries.
        if let Some((settled, until)) = job.settled
            && job.kind.unchanged(&settled, &before)
            && until.is_none_or(|t| started < t)
            && !m
                .shared
                .health
                .failures()
                .iter()
                .any(|f| f.component == component)
        {
            jobs[i].next = job.after(started);
            continue;
        }
        m.own.lock().fill(0);
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = m.run_job(job) => r,
        };
        match result {
            Ok(outcome) => {
                m.shared.health.ok(component);
                jobs[i].next = job.after(started);
                jobs[i].settled = match outcome {
                    Outcome::Settled => Some((m.with_own(before), None)),
                    Outcome::Until(t) => Some((m.with_own(before), Some(t))),
                    Outcome::Pending => None,
                };
            }
            Err(e) => {
                jobs[i].settled = None;
                jobs[i].next =
                    SystemTime::now() + m.shared.health.error_stalled(component, &e, e.stalled());
            }
        }
    }
}

struct Maintenance {
    shared: Arc<Shared>,
    /// This instance's own bumps of [`LevelVersions`] during the current job, so that a
    /// job's own writes do not make it due again (only others' do).
    own: Mutex<[u64; LEVELS]>,
}

impl Maintenance {
    fn new(shared: Arc<Shared>) -> Maintenance {
        Maintenance {
            shared,
            own: Mutex::new([0; LEVELS]),
        }
    }

    fn seen(&self) -> Seen {
        let p = self.shared.progress.positions();
        Seen {
            replicated: p.replicated_txid,
            position: self.shared.position().txid,
            levels: self.shared.level_versions.get(),
        }
    }

    /// `before` (taken when the job started) plus the job's own changes: what the job has
    /// seen of the replica when it ends.
    fn with_own(&self, mut before: Seen) -> Seen {
        let own = self.own.lock();
        for (v, o) in before.levels.iter_mut().zip(own.iter()) {
            *v = v.wrapping_add(*o);
        }
        before
    }

    /// Records a change this instance made in `level`.
    fn changed(&self, level: Level) {
        self.shared.level_versions.bump(level);
        self.own.lock()[usize::from(level.get())] += 1;
    }

    async fn run_job(&self, job: Job) -> Result<Outcome, MaintenanceError> {
        match job.kind {
            JobKind::Compact(level) => {
                // A predecessor's last upload may still land: compacting our uploads now
                // would leave it below level 1, unsettled (see `own_files`). What was on the
                // replica before we started is compacted (a crash loop still compacts), the
                // rest at a boundary after the grace.
                let hold_back = level.get() == 1 && self.shared.own_files.awaiting_predecessor();
                let prev = truncate(SystemTime::now(), job.interval);
                let info = match self.compact(level, prev, hold_back).await? {
                    Compaction::Wrote(info) => info,
                    Compaction::TooEarly => return Ok(Outcome::Pending),
                    Compaction::NothingNew => return Ok(Outcome::Settled),
                };
                {
                    tracing::info!(
                        db = %self.shared.db_path.display(),
                        level = level.get(),
                        min = %info.name.min,
                        max = %info.name.max,
                        size = info.size,
                        "compaction complete"
                    );
                    if level.get() == 1 {
                        // Its own schedule retries what is still too recent.
                        self.l0_retention().await?;
                    }
                }
                Ok(if hold_back {
                    Outcome::Pending
                } else {
                    Outcome::Settled
                })
            }
            JobKind::Snapshot => {
                let prev = truncate(SystemTime::now(), job.interval);
                let snapshot = self.snapshot(prev).await?;
                if let Compaction::Wrote(info) = snapshot {
                    tracing::info!(
                        db = %self.shared.db_path.display(),
                        txid = %info.name.max,
                        size = info.size,
                        "snapshot complete"
                    );
                }
                let retention = self.snapshot_retention().await?;
                Ok(match snapshot {
                    Compaction::TooEarly => Outcome::Pending,
                    _ => retention,
                })
            }
            JobKind::L0Retention => self.l0_retention().await,
            JobKind::Validate => {
                for level in Level::all().skip(1) {
                    if let Some(problem) = self.check_level(level).await? {
                        tracing::warn!(db = %self.shared.db_path.display(), level = level.get(), problem, "validation: level is not contiguous");
                    }
                }
                Ok(Outcome::Settled)
            }
        }
    }

    async fn list(&self, level: Level) -> Result<Vec<LtxFileInfo>, ClientError> {
        self.shared.client.list(level, ListOptions::default()).await
    }

    /// Compacts into `dst` unless it is too early or there is nothing new.
    /// With `hold_back`, only the level-0 files that were on the replica when this replicator
    /// started are compacted ([`OwnFiles::awaiting_predecessor`]); too early when there are
    /// none.
    pub(crate) async fn compact(
        &self,
        dst: Level,
        prev_boundary: SystemTime,
        hold_back: bool,
    ) -> Result<Compaction, MaintenanceError> {
        let Some(src) = Level::new(dst.get().saturating_sub(1)) else {
            return Ok(Compaction::NothingNew);
        };
        let dst_files = self.list(dst).await?;
        let dst_max = dst_files.iter().max_by_key(|f| f.name.max).copied();
        if dst.get() == 1
            && let Some(d) = dst_max
        {
            self.shared
                .l1_txid
                .fetch_max(d.name.max.get(), Ordering::AcqRel);
        }
        if let Some(d) = dst_max
            && SystemTime::from(d.created_at) > prev_boundary
        {
            return Ok(Compaction::TooEarly);
        }
        let seek = dst_max.map_or(TxId(1), |d| TxId(d.name.max.get() + 1));
        let list = || {
            self.shared.client.list(
                src,
                ListOptions {
                    seek: Some(seek),
                    precise_timestamps: false,
                },
            )
        };
        let mut inputs = list().await?;
        // A file of a compaction level that straddles `dst`'s end: a compaction into `src`
        // redone with another range (its first upload failed on our side but landed), the
        // first file already compacted into `dst` when the redone one landed. Listed from
        // `dst`'s end on, its TXIDs after that end would be left out and the output would
        // start after a gap: the chain continuing `dst`'s end takes it, and the output is
        // named from `dst`'s end + 1 (`start_at`).
        let mut start_at = None;
        if src != Level::L0
            && let Some(d) = dst_max
            && inputs.first().is_none_or(|f| f.name.min > seek)
        {
            let all = self.shared.client.list(src, ListOptions::default()).await?;
            let chained = chain(&all, d.name.max);
            if chained.first().is_some_and(|f| f.name.min < seek) {
                inputs = chained;
                start_at = Some(seek);
            }
        }
        if inputs.is_empty() {
            return Ok(Compaction::NothingNew);
        }
        if hold_back && src == Level::L0 {
            let start = self.shared.own_files.start();
            inputs.retain(|f| f.name.max <= start);
            if inputs.is_empty() {
                return Ok(Compaction::TooEarly);
            }
        }
        while src == Level::L0
            && let Some(other) = self.shared.own_files.foreign(&inputs).copied()
        {
            if !self.settle_predecessors(&other, &inputs).await? {
                another_writer(
                    &self.shared,
                    Component::Compaction,
                    other.name,
                    "is on it, and this server did not write it",
                );
                return Err(MaintenanceError::AnotherWriter(other.name));
            }
            inputs = list().await?;
        }
        if src == Level::L0 {
            inputs = level0_chain(inputs);
        }
        let info = self.compact_files(dst, &inputs, start_at).await?;
        if dst.get() == 1 {
            self.shared.own_files.forget_upto(info.name.max);
            self.shared
                .l1_txid
                .fetch_max(info.name.max.get(), Ordering::AcqRel);
            // Local L0 files compacted into L1 are no longer needed.
            let replicated = self.shared.progress.positions().replicated_txid;
            super::upload::prune(&self.shared, replicated).await;
        }
        if self.shared.config.verify_compaction
            && let Some(problem) = self.check_level(dst).await?
        {
            tracing::warn!(db = %self.shared.db_path.display(), level = dst.get(), problem, "post-compaction verification failed");
            if let Some(m) = &self.shared.metrics {
                m.compaction_verify_error();
            }
        }
        Ok(Compaction::Wrote(info))
    }

    /// Settles a level-0 file `other` that we did not write when it is our predecessor's last
    /// upload (see `own_files`): it may be one ([`OwnFiles::may_be_predecessors`] against the
    /// listing `listed`) and holds the same history as the local L0 files of its TXIDs (the
    /// files the predecessor merged into it: the same header, WAL range and salts included,
    /// and the same pages). False when it is another writer's (or cannot be proved not to
    /// be: its local files are gone).
    ///
    /// Then level 0 is made one chain again, keeping the predecessor's file: a follower may
    /// have applied it already (it usually lands first), and one that did continues with the
    /// next file. Our uploads that overlap it are replaced by one file of the TXIDs after it
    /// (uploaded first, a conditional create like every level-0 upload), then deleted; a
    /// follower that applied one of ours finds the new file ending at its TXID and checks it
    /// against its database. Meanwhile the overlap is of one history, which a restore may
    /// cross.
    ///
    /// While our upload of its TXIDs is still in flight (a compaction listing level 0 right
    /// after start-up), nothing can be compared yet and nothing proves another writer: an
    /// error, retried like any failed compaction.
    ///
    /// [`OwnFiles::may_be_predecessors`]: super::own_files::OwnFiles::may_be_predecessors
    async fn settle_predecessors(
        &self,
        other: &LtxFileInfo,
        listed: &[LtxFileInfo],
    ) -> Result<bool, MaintenanceError> {
        let own = &self.shared.own_files;
        match own.may_be_predecessors(other, listed) {
            Predecessor::Covered => {}
            Predecessor::InFlight => return Err(MaintenanceError::UploadInFlight(other.name)),
            Predecessor::No => return Ok(false),
        }
        let meta = self.shared.meta.clone();
        let txids: Vec<TxId> = (other.name.min.get()..=other.name.max.get())
            .map(TxId)
            .collect();
        let Some(theirs) = open_inputs(
            &self.shared.client,
            &Input::remote(std::slice::from_ref(other)),
            FetchOptions::default().for_comparison(),
            Arc::new(FetchProgress::default()),
        )
        .pop() else {
            return Ok(false);
        };
        let name = other.name;
        // Ok(false): not provably the same (local files gone, a file that is no LTX file, other
        // contents); an error (a read that failed) is retried like any failed compaction.
        let same = tokio::task::spawn_blocking(move || -> Result<bool, MaintenanceError> {
            let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
            let ours: Box<dyn std::io::Read> = if txids.len() == 1 {
                match std::fs::File::open(meta.l0_path(txids[0])) {
                    Ok(f) => Box::new(f),
                    Err(e) if gone(&e) => return Ok(false),
                    Err(e) => return Err(MaintenanceError::Local(e)),
                }
            } else {
                match merge_l0(&meta, &txids) {
                    Ok(merged) => Box::new(std::io::Cursor::new(merged.bytes)),
                    Err(UploadError::Local { source, .. }) if !gone(&source) => {
                        return Err(MaintenanceError::Local(source));
                    }
                    Err(_) => return Ok(false),
                }
            };
            match crate::lineage::same_ltx(ours, theirs) {
                Ok(same) => Ok(same),
                Err(e @ ltx::Error::Io { .. }) => Err(MaintenanceError::Task(format!(
                    "comparing the level-0 file {name} with the local L0 files: {e}"
                ))),
                Err(_) => Ok(false),
            }
        })
        .await
        .map_err(|e| MaintenanceError::Task(e.to_string()))??;
        if !same {
            return Ok(false);
        }
        let replaced = own.overlapping(other, listed);
        let end = replaced.iter().map(|f| f.max).max().unwrap_or(name.max);
        tracing::warn!(db = %self.shared.db_path.display(), file = %name, replaced = ?replaced, "a level-0 file this server did not write holds the same transactions as its own first uploads: the last upload of the server's previous run, committed by the replica after this one started; keeping it and replacing this server's overlapping uploads");
        if end > name.max {
            let tail = (name.max.get() + 1..=end.get()).map(TxId).collect();
            send_batch(&self.shared, tail).await.map_err(|e| match e {
                UploadError::Client(e) => MaintenanceError::Client(e),
                UploadError::AnotherWriter(n) => MaintenanceError::AnotherWriter(n),
                e => MaintenanceError::Task(e.to_string()),
            })?;
        }
        // With retention disabled no remote file is deleted, these neither (the replica may
        // not even allow deletes): they stay, one history, until the store's own rules or the
        // operator remove them (followers that list them wait until then), and they stay
        // recorded as ours.
        let gone: Vec<LtxFileInfo> = listed
            .iter()
            .filter(|f| replaced.contains(&f.name))
            .copied()
            .collect();
        self.delete(Level::L0, &gone).await?;
        if self.shared.config.retention_enabled {
            own.forget(&replaced);
        }
        // Only now: until our overlapping uploads are gone, the next compaction settles again
        // (the same replacement is a retry of the same upload).
        own.record(name);
        Ok(true)
    }

    /// Merges `files` (one level, TXID order) into one file of `dst`.
    async fn compact_files(
        &self,
        dst: Level,
        files: &[LtxFileInfo],
        start_at: Option<TxId>,
    ) -> Result<LtxFileInfo, MaintenanceError> {
        let mut inputs: Vec<Input> = Vec::new();
        let mut covered: Option<TxId> = None;
        for f in files {
            // A file overlapping the one before it (see `level0_chain`) is needed only for
            // the TXIDs after that one.
            let from = covered.map_or(f.name.min, |c| f.name.min.max(TxId(c.get() + 1)));
            inputs.extend(self.local_inputs(f, from));
            covered = Some(f.name.max);
        }
        let readers = open_inputs(
            &self.shared.client,
            &inputs,
            FetchOptions::default(),
            Arc::new(FetchProgress::default()),
        );
        let (writer, stream) = pipe(4);
        let (header_tx, header_rx) = oneshot::channel::<Header>();
        let task = tokio::task::spawn_blocking(move || -> Result<Header, ltx::Error> {
            let decoders = readers
                .into_iter()
                .map(Decoder::new)
                .collect::<Result<Vec<_>, _>>()?;
            let mut compactor = Compactor::new(decoders)?;
            if let Some(min) = start_at {
                compactor.start_output_at(min)?;
            }
            let _ = header_tx.send(*compactor.output_header());
            let encoded = compactor.compact(writer)?;
            encoded.writer.finish().map_err(|e| ltx::Error::Io {
                section: ltx::Section::Trailer,
                source: e,
            })?;
            Ok(encoded.header)
        });
        let compact_err = |source| MaintenanceError::Compact { level: dst, source };
        let Ok(header) = header_rx.await else {
            return match task.await {
                Ok(Err(e)) => Err(compact_err(e)),
                Ok(Ok(_)) => Err(MaintenanceError::Task("compaction ended early".into())),
                Err(e) => Err(MaintenanceError::Task(e.to_string())),
            };
        };
        let name = FileName::new(header.min_txid, header.max_txid);
        let written = self
            .shared
            .client
            .write(dst, name, stream, created_at(header.timestamp))
            .await;
        // Even a failed write may have landed.
        self.changed(dst);
        match task.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(compact_err(e)),
            Err(e) => return Err(MaintenanceError::Task(e.to_string())),
        }
        Ok(written?)
    }

    /// The inputs that stand for the replica's file `f` from TXID `from` on (the TXIDs before
    /// it, when `f` overlaps the file before it, come from that file): for an L0 file whose
    /// local copy is here, that copy; for one whose TXIDs from `from` on are all here as
    /// local single-TXID files (an upload merged them into `f`; merging them again gives the
    /// same pages and header), those files; so compaction costs no download; else `f`
    /// itself. Local L0 files newer than L1 are kept for this (see the upload task's pruning)
    /// only when compaction into L1 is configured: without `levels:`, the upload task deletes
    /// them once uploaded, so a compaction run on demand reads the replica (a local file it
    /// saw could be gone when it opens it).
    fn local_inputs(&self, f: &LtxFileInfo, from: TxId) -> Vec<Input> {
        let meta = &self.shared.meta;
        let remote = || {
            vec![Input {
                info: *f,
                local: None,
            }]
        };
        if f.level != Level::L0 || self.shared.config.levels.is_empty() || from > f.name.max {
            return remote();
        }
        let local = |name: FileName| {
            std::fs::metadata(meta.path(Level::L0, name))
                .ok()
                .map(|m| Input {
                    info: LtxFileInfo {
                        level: Level::L0,
                        name,
                        size: m.len(),
                        created_at: f.created_at,
                    },
                    local: Some(meta.path(Level::L0, name)),
                })
        };
        if let Some(copy) = local(f.name) {
            return vec![copy];
        }
        (from.get()..=f.name.max.get())
            .map(|t| local(FileName::new(TxId(t), TxId(t))))
            .collect::<Option<Vec<_>>>()
            .unwrap_or_else(remote)
    }

    /// Writes a snapshot unless it is too early or the newest snapshot is current.
    pub(crate) async fn snapshot(
        &self,
        prev_boundary: SystemTime,
    ) -> Result<Compaction, MaintenanceError> {
        let snapshots = self.list(Level::SNAPSHOT).await?;
        let newest = snapshots.iter().max_by_key(|f| f.name.max).copied();
        let pos = self.shared.position();
        if pos.txid == TxId::ZERO || newest.is_some_and(|n| n.name.max >= pos.txid) {
            if let Some(m) = &self.shared.metrics
                && let Some(n) = newest
            {
                m.set_last_snapshot(n.created_at);
            }
            return Ok(Compaction::NothingNew);
        }
        if let Some(n) = newest {
            if let Some(m) = &self.shared.metrics {
                m.set_last_snapshot(n.created_at);
            }
            if SystemTime::from(n.created_at) > prev_boundary {
                return Ok(Compaction::TooEarly);
            }
        }
        self.write_snapshot().await.map(Compaction::Wrote)
    }

    /// Streams a snapshot at the current position to level 9 (always writes).
    pub(crate) async fn write_snapshot(&self) -> Result<LtxFileInfo, MaintenanceError> {
        let shared = self.shared.clone();
        let (writer, stream) = pipe(4);
        let (start_tx, start_rx) = oneshot::channel::<(TxId, i64)>();
        let task = tokio::task::spawn_blocking(move || -> Result<Header, SnapshotError> {
            // Under the read half no checkpoint of ours runs, and the published position
            // describes the database file overlaid with the WAL up to it.
            let lock = shared.checkpoint_lock.clone();
            let _no_checkpoints = lock.hold();
            let published = lock.published();
            if published.file_ahead {
                return Err(SnapshotError::FileAhead);
            }
            let pos = published.position;
            let timestamp = crate::sync::now_millis();
            let _ = start_tx.send((pos.txid, timestamp));
            let mut writer = writer;
            let header = write_snapshot(
                &shared.db_path,
                shared.page_size,
                pos,
                timestamp,
                &mut writer,
            )?;
            writer.finish().map_err(|source| SnapshotError::Io {
                path: "snapshot upload".into(),
                source,
            })?;
            Ok(header)
        });
        let Ok((txid, timestamp)) = start_rx.await else {
            return match task.await {
                Ok(Err(e)) => Err(e.into()),
                Ok(Ok(_)) => Err(MaintenanceError::Task("snapshot ended early".into())),
                Err(e) => Err(MaintenanceError::Task(e.to_string())),
            };
        };
        let written = self
            .shared
            .client
            .write(
                Level::SNAPSHOT,
                FileName::new(TxId(1), txid),
                stream,
                created_at(timestamp),
            )
            .await;
        self.changed(Level::SNAPSHOT);
        match task.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => return Err(MaintenanceError::Task(e.to_string())),
        }
        let info = written?;
        if let Some(m) = &self.shared.metrics {
            m.set_last_snapshot(info.created_at);
        }
        Ok(info)
    }

    /// Snapshot retention, then TXID-floor retention of levels 1..=n. Due again when the
    /// oldest remaining snapshot but the newest expires.
    pub(crate) async fn snapshot_retention(&self) -> Result<Outcome, MaintenanceError> {
        let retention = self.shared.config.snapshot.retention;
        let cutoff = Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default();
        let mut snapshots = self.list(Level::SNAPSHOT).await?;
        snapshots.sort_by_key(|f| f.name);
        let mut deleted: Vec<LtxFileInfo> = snapshots
            .iter()
            .filter(|f| f.created_at < cutoff)
            .copied()
            .collect();
        if deleted.last() == snapshots.last() {
            deleted.pop();
        }
        // Floor: MaxTXID of the snapshot before the first retained one (files an in-flight
        // restore plan may still need stay).
        let mut floor = TxId::ZERO;
        for (i, s) in snapshots.iter().enumerate() {
            if deleted.contains(s) {
                continue;
            }
            if i > 0 {
                floor = snapshots[i - 1].name.max;
            }
            break;
        }
        self.delete(Level::SNAPSHOT, &deleted).await?;
        for n in 1..=self.shared.config.levels.len() {
            let Some(level) = u8::try_from(n).ok().and_then(Level::new) else {
                continue;
            };
            let mut files = self.list(level).await?;
            files.sort_by_key(|f| f.name);
            let mut gone: Vec<LtxFileInfo> = files
                .iter()
                .filter(|f| f.name.max < floor)
                .copied()
                .collect();
            if gone.last() == files.last() {
                gone.pop();
            }
            self.delete(level, &gone).await?;
        }
        // The newest is never deleted; the oldest of the others expires first.
        let expires = snapshots
            .iter()
            .rev()
            .skip(1)
            .filter(|f| !deleted.contains(f))
            .map(|f| SystemTime::from(f.created_at) + retention)
            .min();
        Ok(match expires {
            Some(t) if self.shared.config.retention_enabled => Outcome::Until(t),
            _ => Outcome::Settled,
        })
    }

    /// L0 retention (see the module docs). Due again when the first file too recent to delete
    /// is old enough.
    pub(crate) async fn l0_retention(&self) -> Result<Outcome, MaintenanceError> {
        let Some(retention) = self.shared.config.l0_retention else {
            return Ok(Outcome::Settled);
        };
        let max_l1 = self
            .list(Level::new(1).unwrap_or(Level::L0))
            .await?
            .iter()
            .map(|f| f.name.max)
            .max()
            .unwrap_or(TxId::ZERO);
        if max_l1 == TxId::ZERO {
            if let Some(m) = &self.shared.metrics {
                m.set_l0_retention(0, 0, 0);
            }
            return Ok(Outcome::Settled);
        }
        let threshold = Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default();
        let mut files = self.list(Level::L0).await?;
        files.sort_by_key(|f| f.name);
        let mut deleted = Vec::new();
        let mut not_compacted = 0;
        let mut too_recent = 0;
        let mut processed_all = true;
        let mut outcome = Outcome::Settled;
        for (i, f) in files.iter().enumerate() {
            if f.created_at > threshold {
                processed_all = false;
                too_recent = files.len() - i;
                // Files not yet compacted become deletable through an L1 compaction (a
                // change this job sees); files too recent only through time.
                outcome = Outcome::Until(SystemTime::from(f.created_at) + retention);
                break;
            }
            if f.name.max <= max_l1 {
                deleted.push(*f);
            } else {
                not_compacted += 1;
            }
        }
        if processed_all && deleted.last() == files.last() {
            deleted.pop();
        }
        if let Some(m) = &self.shared.metrics {
            m.set_l0_retention(deleted.len(), not_compacted, too_recent);
        }
        if deleted.is_empty() {
            return Ok(outcome);
        }
        self.delete(Level::L0, &deleted).await?;
        let names: Vec<FileName> = deleted.iter().map(|f| f.name).collect();
        self.shared
            .meta
            .remove(Level::L0, &names)
            .map_err(MaintenanceError::Local)?;
        tracing::debug!(db = %self.shared.db_path.display(), deleted = names.len(), max_l1 = %max_l1, "l0 retention enforced");
        Ok(outcome)
    }

    async fn delete(&self, level: Level, files: &[LtxFileInfo]) -> Result<(), ClientError> {
        if files.is_empty() {
            return Ok(());
        }
        if !self.shared.config.retention_enabled {
            tracing::debug!(
                level = level.get(),
                count = files.len(),
                "skipping remote deletion (retention disabled)"
            );
            return Ok(());
        }
        let names: Vec<FileName> = files.iter().map(|f| f.name).collect();
        let deleted = self.shared.client.delete(level, &names).await;
        if level != Level::L0 {
            self.changed(level);
        }
        deleted
    }

    /// `None` if consecutive files of the level satisfy prev.max + 1 == next.min.
    async fn check_level(&self, level: Level) -> Result<Option<String>, ClientError> {
        let mut files = self.list(level).await?;
        if level.is_snapshot() {
            return Ok(None);
        }
        files.sort_by_key(|f| f.name);
        for pair in files.windows(2) {
            let expected = pair[0].name.max.get() + 1;
            let next = pair[1].name.min.get();
            if next != expected {
                let kind = if next > expected { "gap" } else { "overlap" };
                return Ok(Some(format!(
                    "TXID {kind}: {} is followed by {}",
                    pair[0].name, pair[1].name
                )));
            }
        }
        Ok(None)
    }
}

/// The level-0 files (`listed`, from level 1's end on) a compaction merges: one chain from
/// the first of them, taking among overlapping files the one reaching furthest (the restore
/// plan's rule), then any file beyond a gap (which the compactor refuses). Level 0 holds
/// overlapping files only after a restart raced the predecessor's last upload: our first
/// upload and the predecessor's file, one history batched differently (compared when this
/// run found the predecessor's file after its start; else both were on the replica before
/// this run started, whose start-up check compared the replica's newest file with the
/// database), and an upload replaced by one file after the predecessor's that is not
/// deleted yet (a restart came first, or retention is disabled). A file passed over is only
/// left out of the merge (its TXIDs come from the file chosen); L0 retention removes it once
/// level 1 covers it. Merging them all would break the compactor's rule that each input
/// reaches beyond the one before.
fn level0_chain(mut listed: Vec<LtxFileInfo>) -> Vec<LtxFileInfo> {
    listed.sort_by_key(|f| f.name);
    let Some(first) = listed.first() else {
        return listed;
    };
    let mut files = chain(&listed, TxId(first.name.min.get().saturating_sub(1)));
    let end = files.last().map_or(TxId::ZERO, |f| f.name.max);
    files.extend(listed.iter().filter(|f| f.name.max > end).copied());
    files
}

fn created_at(timestamp_ms: i64) -> DateTime<Utc> {
    timestamp_from_millis(timestamp_ms).unwrap_or_else(Utc::now)
}

/// One-off jobs for the owner (tests, `force-snapshot`): compaction into `level` now, and a
/// snapshot now.
pub(crate) struct Jobs(pub Arc<Shared>);

impl Jobs {
    pub(crate) async fn compact_now(
        &self,
        level: Level,
    ) -> Result<Option<LtxFileInfo>, MaintenanceError> {
        let done = Maintenance::new(self.0.clone())
            .compact(
                level,
                SystemTime::now() + Duration::from_secs(3600 * 24 * 365),
                false,
            )
            .await?;
        Ok(match done {
            Compaction::Wrote(info) => Some(info),
            Compaction::TooEarly | Compaction::NothingNew => None,
        })
    }

    pub(crate) async fn snapshot_now(&self) -> Result<LtxFileInfo, MaintenanceError> {
        Maintenance::new(self.0.clone()).write_snapshot().await
    }

    pub(crate) async fn retention_now(&self) -> Result<(), MaintenanceError> {
        let m = Maintenance::new(self.0.clone());
        m.snapshot_retention().await?;
        m.l0_retention().await.map(|_| ())
    }
}
