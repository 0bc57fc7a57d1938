//! The sync task: wakes on commits and every `monitor-interval`, paces syncs, runs each
//! [`crate::sync::Syncer::sync`] on a blocking thread, and closes the database at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::health::{Component, FatalError};
use crate::progress::Positions;
use crate::sync::Syncer;

use super::pacing::{MIN_SYNC_GAP, sync_gap};
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
    let monitor = shared.db.monitor_interval;
    let mut syncer = Some(syncer);
    let mut last_sync = Instant::now();
    let mut gap = MIN_SYNC_GAP;
    let mut backoff: Option<Duration> = None;
    let mut positions = shared.progress.subscribe();
    loop {
        let deadline = last_sync + backoff.unwrap_or(monitor);
        let mut reply = None;
        let mut final_sync = None;
        tokio::select! {
            _ = stop.cancelled() => break,
            cmd = ctl.recv() => match cmd {
                Some(SyncCommand::Sync(tx)) => reply = Some(tx),
                Some(SyncCommand::Final(timeout, tx)) => final_sync = Some((timeout, tx)),
                None => break,
            },
            _ = shared.wake.notified(), if backoff.is_none() => {}
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
        if let Some((timeout, tx)) = final_sync {
            let result = final_sync_run(&shared, &mut syncer, timeout, &stop).await;
            let _ = tx.send(result);
            break;
        }
        // A burst of commits becomes one file: the next sync starts `gap` after the last one
        // (`sync_gap`: longer under a heavier write load, or when syncs get slow), so syncs,
        // checkpoints and uploads stay a small share of the time.
        if reply.is_none() && backoff.is_none() {
            let next = last_sync + gap;
            if next > Instant::now() {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep_until(next.into()) => {}
                }
            }
        }
        // While earlier files are being uploaded, let commits accumulate into one file.
        if reply.is_none() && backoff.is_none() {
            let p = *positions.borrow_and_update();
            if p.local_txid > p.replicated_txid && !shared.health.is_failing(Component::Upload) {
                let wait_until = last_sync + monitor;
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = positions.wait_for(|p| p.replicated_txid >= p.local_txid) => {}
                    _ = tokio::time::sleep_until(wait_until.into()) => {}
                }
            }
        }
        let started = Instant::now();
        let Some(result) = run_sync(&shared, &mut syncer).await else {
            break;
        };
        let previous = std::mem::replace(&mut last_sync, Instant::now());
        match result {
            Ok((p, wal_bytes)) => {
                let since = (last_sync - previous).as_secs_f64().max(1e-3);
                gap = sync_gap(wal_bytes as f64 / since, last_sync - started);
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
    let joined = tokio::task::spawn_blocking(move || {
        let r = s.sync();
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
            for f in &report.files {
                if let Some(reason) = f.full {
                    tracing::info!(db = %shared.db_path.display(), txid = %f.txid(), size = f.size, reason, "full L0 file written");
                }
            }
            Ok((shared.progress.positions(), report.wal_bytes))
        }
        Err(e) => {
            shared.progress.sync_failed(ticket);
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
