//! [`Replicator::shutdown`]: stop the background tasks, a final sync, and uploads until the
//! replica holds everything or `shutdown-sync-timeout` passes.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::health::Component;
use crate::progress::Positions;

use super::error::ShutdownError;
use super::running::Replicator;
use super::sync_task::SyncCommand;

/// What [`Replicator::shutdown`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    pub positions: Positions,
    pub took: Duration,
}

impl Replicator {
    /// Stops replicating: background jobs stop, a final sync picks up the last commits, and
    /// uploads continue until the replica holds everything or `shutdown-sync-timeout`
    /// passes. Call it after the server has stopped writing (and ideally closed its own
    /// connections, so the replicator's connection — which keeps the WAL — closes last).
    pub async fn shutdown(self) -> Result<ShutdownReport, ShutdownError> {
        let started = Instant::now();
        self.stop_background.cancel();
        let timeout = self.shared.config.shutdown_sync_timeout;
        let result = self.final_sync(timeout).await;
        self.stop_all.cancel();
        // Every task stops at its next await once cancelled; one stuck in a replica operation
        // is abandoned at its deadline at the latest (a thread stuck in a system call on a
        // dead mount never returns, so the wait is bounded).
        let grace = self.shared.operation_timeout + Duration::from_secs(1);
        for mut t in self.tasks {
            if tokio::time::timeout(grace, &mut t).await.is_err() {
                t.abort();
                tracing::warn!(db = %self.shared.db_path.display(), "a replication task did not stop in time; abandoned");
            }
        }
        let positions = self.shared.progress.positions();
        if let Some(f) = self.shared.health.fatal() {
            return Err(f.into());
        }
        result?;
        tracing::info!(
            db = %self.shared.db_path.display(),
            txid = %positions.local_txid,
            replica_txid = %positions.replicated_txid,
            took_ms = started.elapsed().as_millis() as u64,
            "replication stopped"
        );
        Ok(ShutdownReport {
            positions,
            took: started.elapsed(),
        })
    }

    async fn final_sync(&self, timeout: Duration) -> Result<(), ShutdownError> {
        if let Some(f) = self.shared.health.fatal() {
            // The replica is out of reach for good, but the local disk may still work: the
            // last commits go into local L0 files (the next start uploads them), unless
            // syncing itself is what failed.
            if f.component != Component::Sync
                && let Err(e) = self.local_sync(timeout).await
            {
                tracing::warn!(db = %self.shared.db_path.display(), error = %e, "the final local sync after replication failed did not complete");
            }
            return Err(f.into());
        }
        let deadline = Instant::now() + timeout;
        self.local_sync(timeout).await?;
        let local = self.shared.progress.positions().local_txid;
        let handle = self.handle();
        match tokio::time::timeout_at(deadline.into(), handle.wait_replicated(local)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(f)) => Err(f.into()),
            Err(_) => {
                let p = self.shared.progress.positions();
                Err(ShutdownError::Timeout {
                    timeout,
                    local: p.local_txid,
                    replicated: p.replicated_txid,
                })
            }
        }
    }

    /// The sync task's last sync (retried within `timeout`); it closes the database after.
    async fn local_sync(&self, timeout: Duration) -> Result<(), ShutdownError> {
        let (tx, rx) = oneshot::channel();
        if self
            .sync_ctl
            .send(SyncCommand::Final(timeout, tx))
            .await
            .is_err()
        {
            return Err(ShutdownError::FinalSync(
                "replication already stopped".into(),
            ));
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ShutdownError::FinalSync(e)),
            Err(_) => Err(self
                .shared
                .health
                .fatal()
                .map(ShutdownError::from)
                .unwrap_or_else(|| ShutdownError::FinalSync("sync task stopped".into()))),
        }
    }
}
