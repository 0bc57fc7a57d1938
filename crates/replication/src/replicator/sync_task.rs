//! The sync task: runs each [`crate::sync::Syncer::sync`] on a blocking thread, and closes
//! the database at the end.
//!
//! While a caller waits for a commit to be synced or replicated
//! ([`crate::ReplicationHandle::wait_commit_synced`], `wait_commit_replicated`: a write
//! answered with its position, a synchronous write), a sync starts as soon as a commit is
//! notified and no sync is running: commits that land during a sync go into the next one
//! (group commit), and a local sync costs no network round trip (uploads run on their own,
//! see the upload task). While nobody waits, syncs are paced ([`super::pacing`]): the first
//! commit after a quiet spell is synced at once, a burst is batched into one file, so the
//! replicator's CPU stays a small share of a loaded server's. Without notices (writes by other processes) the task polls every
//! `monitor-interval`; after a failed sync it backs off ([`crate::health`]) and ignores
//! notices until the backoff ends. Checkpoints happen inside the syncs; the commits a sync
//! has in L0 files before its checkpoint are published before it only while a caller waits
//! for a commit (see [`run_sync`]), so that otherwise the whole sync goes up as one object.
//!
//! When replication fails for good on the replica's side (uploads, probes), this task goes
//! on until shutdown: the local disk still works, so the commits the server makes while it
//! stops still land in local L0 files and get their TXIDs (a synchronous write answered
//! `SR001` names its transaction), and the next start has them ready to upload. It stops with
//! everything else when syncing itself failed for good.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::health::{Component, FatalError};
use crate::progress::Positions;
use crate::sync::Syncer;

use super::pacing::{MIN_SYNC_GAP, WalRate, sync_gap};
use super::shared::Shared;

pub(super) enum SyncCommand {
    /// Sync now; reply with the positions after it.
    Sync(oneshot::Sender<Result<Positions, String>>),
    /// Final sync, then close the database.
    Final(Duration, oneshot::Sender<Result<(), String>>),
}

/// The sync task. See the module docs.
pub(super) async fn sync_loop(
    shared: Arc<Shared>,
    syncer: Syncer,
    mut ctl: mpsc::Receiver<SyncCommand>,
    stop: CancellationToken,
) {
    // However the task ends (even by a panic), waiters for a local sync stop waiting.
    let _stopped = shared.sync_stopped.clone().drop_guard();
    let monitor = shared.db.monitor_interval;
    let mut syncer = Some(syncer);
    let mut last_sync = Instant::now();
    let mut backoff: Option<Duration> = None;
    let mut gap = MIN_SYNC_GAP;
    let mut wal_rate = WalRate::new(last_sync);
    loop {
        let deadline = last_sync + backoff.unwrap_or(monitor);
        let mut reply = None;
        let mut final_sync = None;
        let mut woken = false;
        // A notice that arrives while a sync runs stays stored in `wake` (a `Notify` keeps
        // one permit), so the next sync starts as soon as this one ends: group commit.
        tokio::select! {
            _ = stop.cancelled() => break,
            cmd = ctl.recv() => match cmd {
                Some(SyncCommand::Sync(tx)) => reply = Some(tx),
                Some(SyncCommand::Final(timeout, tx)) => final_sync = Some((timeout, tx)),
                None => break,
            },
            _ = shared.wake.notified(), if backoff.is_none() => woken = true,
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
        if let Some((timeout, tx)) = final_sync {
            let result = final_sync_run(&shared, &mut syncer, timeout, &stop).await;
            let _ = tx.send(result);
            break;
        }
        // A wake-up stored while the last sync ran, for notices that sync already covered:
        // nothing to do. (Skipping it also keeps a sync from starting in the gap between a
        // writer's COMMIT and its notice, where the sync would read the commit but count it
        // for the next one: see `wait_commit_synced`.)
        if woken && !shared.poked.swap(false, Ordering::AcqRel) && !shared.progress.unsynced() {
            continue;
        }
        // Nobody waits for this sync: let a burst of commits become one file, the next sync
        // starting `gap` after the last one (`sync_gap`: longer under a heavier write load);
        // a caller that starts waiting cuts the pause short.
        if reply.is_none() && backoff.is_none() && shared.waiters.load(Ordering::Acquire) == 0 {
            let next = last_sync + gap;
            if next > Instant::now() {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep_until(next.into()) => {}
                    _ = shared.hurry.notified() => {}
                }
            }
        }
        let started = Instant::now();
        let Some(result) = run_sync(&shared, &mut syncer).await else {
            break;
        };
        last_sync = Instant::now();
        match result {
            Ok((p, wal_bytes)) => {
                gap = sync_gap(wal_rate.add(last_sync, wal_bytes), last_sync - started);
                backoff = None;
                if let Some(tx) = reply {
                    let _ = tx.send(Ok(p));
                }
            }
            Err(e) => {
                backoff = Some(shared.health.error(Component::Sync, &e));
                if let Some(tx) = reply {
                    let _ = tx.send(Err(e));
                }
            }
        }
    }
    close(&shared, syncer).await;
}

/// One sync on a blocking thread: the positions after it and the WAL bytes it read; `None`
/// if the syncer was lost (a panic: fatal).
pub(super) async fn run_sync(
    shared: &Arc<Shared>,
    syncer: &mut Option<Syncer>,
) -> Option<Result<(Positions, u64), String>> {
    let mut s = syncer.take()?;
    let ticket = shared.progress.begin_sync();
    // Once local L0 files hold the commits the ticket covers, a caller waiting for them (a
    // synchronous write, a position) need not wait for the checkpoint the sync goes on to
    // run: they are published at once while someone waits, or as soon as someone starts to
    // (`Waiting`). Otherwise they are published when the sync ends, so that the upload
    // task sends the whole sync's files as one object: published early, a checkpointing
    // sync was two PUTs (its files before the checkpoint, then the checkpoint's), and under
    // a heavy load every sync checkpoints.
    let held = Arc::new(AtomicBool::new(false));
    let publish = {
        let (shared, held) = (shared.clone(), held.clone());
        move |txid| {
            held.store(true, Ordering::Release);
            shared.progress.hold(ticket, txid);
            // After `hold`: a caller counted after this load publishes it itself.
            if shared.waiters.load(Ordering::Acquire) > 0 {
                shared.progress.publish_held();
            }
        }
    };
    let joined = tokio::task::spawn_blocking(move || {
        let r = s.sync_publishing(publish);
        (s, r)
    })
    .await;
    let (s, result) = match joined {
        Ok(v) => v,
        Err(e) => {
            shared.health.set_fatal(FatalError {
                component: Component::Sync,
                failing_for: Duration::ZERO,
                window: shared.health.window(),
                last_error: format!("sync task panicked: {e}"),
            });
            return None;
        }
    };
    let position = s.position();
    *syncer = Some(s);
    Some(match result {
        Ok(report) => {
            shared
                .progress
                .end_sync(ticket, position.txid, report.wal_bytes);
            shared.health.ok(Component::Sync);
            let t = report.timings;
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            tracing::debug!(
                db = %shared.db_path.display(),
                txid = %position.txid,
                files = report.files.len(),
                wal_bytes = report.wal_bytes,
                waited_ms = ticket.waited().map(ms),
                took_ms = ms(ticket.started().elapsed()),
                encode_ms = ms(t.encode),
                fsync_ms = ms(t.fsync),
                published_ms = t.published.map(ms),
                checkpoint_ms = ms(t.checkpoint),
                checkpoints = report.checkpoints.len(),
                "sync done"
            );
            for f in &report.files {
                if let Some(reason) = f.full {
                    tracing::info!(db = %shared.db_path.display(), txid = %f.txid(), size = f.size, reason, "full L0 file written");
                }
            }
            Ok((shared.progress.positions(), report.wal_bytes))
        }
        Err(e) => {
            // (Commits already held are in L0 files: they are synced, not unsynced.)
            if held.load(Ordering::Acquire) {
                shared.progress.publish_held();
            } else {
                shared.progress.sync_failed(ticket);
            }
            Err(e.to_string())
        }
    })
}

/// The final sync at shutdown: retried every `shutdown-sync-interval` within `timeout`.
pub(super) async fn final_sync_run(
    shared: &Arc<Shared>,
    syncer: &mut Option<Syncer>,
    timeout: Duration,
    stop: &CancellationToken,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let interval = shared.config.shutdown_sync_interval;
    loop {
        match run_sync(shared, syncer).await {
            None => return Err("sync task lost its database".into()),
            Some(Ok(_)) => return Ok(()),
            Some(Err(e)) => {
                shared.health.error(Component::Sync, &e);
                if Instant::now() + interval > deadline || stop.is_cancelled() {
                    return Err(e);
                }
                tokio::time::sleep(interval).await;
            }
        }
    }
}

/// Releases the read transaction and closes the connections.
pub(super) async fn close(shared: &Arc<Shared>, syncer: Option<Syncer>) {
    let Some(s) = syncer else { return };
    let db_path = shared.db_path.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = s.into_database().close() {
            tracing::warn!(db = %db_path.display(), error = %e, "closing the replication connections");
        }
    })
    .await;
}
