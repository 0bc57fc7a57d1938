//! Compaction, snapshots and retention on Litestream's schedules, in one task so no two of
//! them race over the same files.
//!
//! - Level n (1..=8) compacts the files of level n-1 newer than its own newest file into one
//!   file `<min>-<max>` (newest page wins, WAL fields zero, timestamp of the last input),
//!   reading L0 inputs from the local metadata directory when they are there. It runs at
//!   start-up and then at wall-clock multiples of its interval (UTC, as Go's
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

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use ltx::{Compactor, Decoder, FileName, Header, TxId};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::shared::Shared;
use crate::client::{ClientError, ListOptions};
use crate::health::Component;
use crate::level::{Level, LtxFileInfo, timestamp_from_millis};
use crate::replica_readers::{FetchOptions, FetchProgress, Input, open_inputs};
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
            })
        })
        .collect();
    jobs.push(Job {
        kind: JobKind::Snapshot,
        interval: config.snapshot.interval,
        aligned: true,
        next: now,
    });
    if config.l0_retention.is_some() {
        jobs.push(Job {
            kind: JobKind::L0Retention,
            interval: config.l0_retention_check_interval,
            aligned: false,
            next: now + config.l0_retention_check_interval,
        });
    }
    if let Some(interval) = config.validation_interval {
        jobs.push(Job {
            kind: JobKind::Validate,
            interval,
            aligned: false,
            next: now + interval,
        });
    }
    let m = Maintenance { shared };
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
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = m.run_job(job) => r,
        };
        let component = job.kind.component();
        jobs[i].next = match result {
            Ok(()) => {
                m.shared.health.ok(component);
                if job.aligned {
                    truncate(started, job.interval) + job.interval
                } else {
                    started + job.interval
                }
            }
            Err(e) => SystemTime::now() + m.shared.health.error_stalled(component, &e, e.stalled()),
        };
    }
}

struct Maintenance {
    shared: Arc<Shared>,
}

impl Maintenance {
    async fn run_job(&self, job: Job) -> Result<(), MaintenanceError> {
        match job.kind {
            JobKind::Compact(level) => {
                let prev = truncate(SystemTime::now(), job.interval);
                if let Some(info) = self.compact(level, prev).await? {
                    tracing::info!(
                        db = %self.shared.db_path.display(),
                        level = level.get(),
                        min = %info.name.min,
                        max = %info.name.max,
                        size = info.size,
                        "compaction complete"
                    );
                    if level.get() == 1 {
                        self.l0_retention().await?;
                    }
                }
                Ok(())
            }
            JobKind::Snapshot => {
                let prev = truncate(SystemTime::now(), job.interval);
                if let Some(info) = self.snapshot(prev).await? {
                    tracing::info!(
                        db = %self.shared.db_path.display(),
                        txid = %info.name.max,
                        size = info.size,
                        "snapshot complete"
                    );
                }
                self.snapshot_retention().await
            }
            JobKind::L0Retention => self.l0_retention().await,
            JobKind::Validate => {
                for level in Level::all().skip(1) {
                    if let Some(problem) = self.check_level(level).await? {
                        tracing::warn!(db = %self.shared.db_path.display(), level = level.get(), problem, "validation: level is not contiguous");
                    }
                }
                Ok(())
            }
        }
    }

    async fn list(&self, level: Level) -> Result<Vec<LtxFileInfo>, ClientError> {
        self.shared.client.list(level, ListOptions::default()).await
    }

    /// Compacts into `dst` unless it is too early or there is nothing new.
    pub(crate) async fn compact(
        &self,
        dst: Level,
        prev_boundary: SystemTime,
    ) -> Result<Option<LtxFileInfo>, MaintenanceError> {
        let Some(src) = Level::new(dst.get().saturating_sub(1)) else {
            return Ok(None);
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
            return Ok(None);
        }
        let seek = dst_max.map_or(TxId(1), |d| TxId(d.name.max.get() + 1));
        let inputs = self
            .shared
            .client
            .list(
                src,
                ListOptions {
                    seek: Some(seek),
                    precise_timestamps: false,
                },
            )
            .await?;
        if inputs.is_empty() {
            return Ok(None);
        }
        let info = self.compact_files(dst, &inputs).await?;
        if dst.get() == 1 {
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
        Ok(Some(info))
    }

    /// Merges `files` (one level, TXID order) into one file of `dst`.
    async fn compact_files(
        &self,
        dst: Level,
        files: &[LtxFileInfo],
    ) -> Result<LtxFileInfo, MaintenanceError> {
        let inputs: Vec<Input> = files.iter().flat_map(|f| self.local_inputs(f)).collect();
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
            let compactor = Compactor::new(decoders)?;
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
        match task.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(compact_err(e)),
            Err(e) => return Err(MaintenanceError::Task(e.to_string())),
        }
        Ok(written?)
    }

    /// The inputs that stand for the replica's file `f`: for an L0 file whose local copy is
    /// here, or whose TXIDs are all here as local single-TXID files (an upload merged them
    /// into `f`; merging them again gives the same pages and header), the local files, so
    /// compaction costs no download; else `f` itself. Local L0 files newer than L1 are kept
    /// for this (see the upload task's pruning).
    fn local_inputs(&self, f: &LtxFileInfo) -> Vec<Input> {
        let meta = &self.shared.meta;
        let remote = || {
            vec![Input {
                info: *f,
                local: None,
            }]
        };
        if f.level != Level::L0 {
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
        (f.name.min.get()..=f.name.max.get())
            .map(|t| local(FileName::new(TxId(t), TxId(t))))
            .collect::<Option<Vec<_>>>()
            .unwrap_or_else(remote)
    }

    /// Writes a snapshot unless it is too early or the newest snapshot is current.
    pub(crate) async fn snapshot(
        &self,
        prev_boundary: SystemTime,
    ) -> Result<Option<LtxFileInfo>, MaintenanceError> {
        let snapshots = self.list(Level::SNAPSHOT).await?;
        let newest = snapshots.iter().max_by_key(|f| f.name.max).copied();
        if let Some(n) = newest {
            if let Some(m) = &self.shared.metrics {
                m.set_last_snapshot(n.created_at);
            }
            if SystemTime::from(n.created_at) > prev_boundary {
                return Ok(None);
            }
        }
        let pos = self.shared.position();
        if pos.txid == TxId::ZERO || newest.is_some_and(|n| n.name.max >= pos.txid) {
            return Ok(None);
        }
        self.write_snapshot().await.map(Some)
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

    /// Snapshot retention, then TXID-floor retention of levels 1..=n.
    pub(crate) async fn snapshot_retention(&self) -> Result<(), MaintenanceError> {
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
        Ok(())
    }

    /// L0 retention (see the module docs).
    pub(crate) async fn l0_retention(&self) -> Result<(), MaintenanceError> {
        let Some(retention) = self.shared.config.l0_retention else {
            return Ok(());
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
            return Ok(());
        }
        let threshold = Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default();
        let mut files = self.list(Level::L0).await?;
        files.sort_by_key(|f| f.name);
        let mut deleted = Vec::new();
        let mut not_compacted = 0;
        let mut too_recent = 0;
        let mut processed_all = true;
        for (i, f) in files.iter().enumerate() {
            if f.created_at > threshold {
                processed_all = false;
                too_recent = files.len() - i;
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
            return Ok(());
        }
        self.delete(Level::L0, &deleted).await?;
        let names: Vec<FileName> = deleted.iter().map(|f| f.name).collect();
        self.shared
            .meta
            .remove(Level::L0, &names)
            .map_err(MaintenanceError::Local)?;
        tracing::debug!(db = %self.shared.db_path.display(), deleted = names.len(), max_l1 = %max_l1, "l0 retention enforced");
        Ok(())
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
        self.shared.client.delete(level, &names).await
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
        Maintenance {
            shared: self.0.clone(),
        }
        .compact(
            level,
            SystemTime::now() + Duration::from_secs(3600 * 24 * 365),
        )
        .await
    }

    pub(crate) async fn snapshot_now(&self) -> Result<LtxFileInfo, MaintenanceError> {
        Maintenance {
            shared: self.0.clone(),
        }
        .write_snapshot()
        .await
    }

    pub(crate) async fn retention_now(&self) -> Result<(), MaintenanceError> {
        let m = Maintenance {
            shared: self.0.clone(),
        };
        m.snapshot_retention().await?;
        m.l0_retention().await
    }
}
