//! The owner's side: [`ReplicationHandle`] (notify commits, positions, lag, wait for the
//! replica) and the [`Status`] it reports.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use ltx::TxId;
use tokio::sync::watch;

use crate::health::{Component, Failure, FatalError};
use crate::lineage::StartAction;
use crate::progress::{CommitNotice, Positions};

use super::shared::Shared;

/// A snapshot of the replicator's state, for health endpoints and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// False when something is failing (retrying) or replication has failed for good.
    pub healthy: bool,
    pub replica: String,
    pub positions: Positions,
    /// Age of the oldest commit not yet on the replica.
    pub lag: Duration,
    pub failures: Vec<Failure>,
    pub fatal: Option<FatalError>,
    pub last_upload: Option<SystemTime>,
    pub retry_window: Duration,
}

/// The owner's handle (cheap to clone).
#[derive(Clone)]
pub struct ReplicationHandle {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for ReplicationHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationHandle")
            .field("db", &self.shared.db_path)
            .finish_non_exhaustive()
    }
}

impl ReplicationHandle {
    /// Tells the replicator that the writer committed (non-blocking, cheap: an atomic max and
    /// a wake-up). The commit's `seq` must increase with every commit.
    pub fn notify_commit(&self, notice: CommitNotice) {
        self.shared.progress.notify(notice);
        self.shared.wake.notify_one();
    }

    /// Wakes the sync task (something was written, commit unknown).
    pub fn wake(&self) {
        self.shared.poked.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }

    pub fn positions(&self) -> Positions {
        self.shared.progress.positions()
    }

    /// Watches the positions.
    pub fn subscribe(&self) -> watch::Receiver<Positions> {
        self.shared.progress.subscribe()
    }

    /// Age of the oldest commit not yet on the replica.
    pub fn lag(&self) -> Duration {
        self.shared.progress.lag()
    }

    pub fn replica(&self) -> String {
        self.shared.client.describe()
    }

    pub fn db_path(&self) -> &Path {
        &self.shared.db_path
    }

    /// What start-up did (restored, continued, …).
    pub fn start_action(&self) -> StartAction {
        self.shared.start_action
    }

    /// Waits until the replica holds `txid` (or replication fails).
    pub async fn wait_replicated(&self, txid: TxId) -> Result<Positions, FatalError> {
        self.wait(|p| p.replicated_txid >= txid).await
    }

    /// Waits until the commit numbered `seq` (see [`CommitNotice`]) is in a local L0 file, and
    /// returns the TXID of the sync that first covered it: the newest TXID of the L0 files
    /// that sync wrote, so a read at that TXID (or later) reflects the commit. Exact even when
    /// called long after later syncs (the record is bounded: a waiter older than thousands of
    /// syncs gets a later sync's TXID, which still names a real L0 file holding the commit).
    /// Never waits on the network: syncs are local. It fails only once the sync task has
    /// ended (syncing failed for good, or replication stopped): replication failing for good
    /// on the replica's side does not end the wait, the sync task goes on until shutdown (see
    /// `sync_task`), so the commit still gets its TXID. The commit must have been notified
    /// first.
    pub async fn wait_commit_synced(&self, seq: u64) -> Result<TxId, FatalError> {
        let mut rx = self.shared.progress.subscribe();
        let sync_ended = self.shared.sync_stopped.cancelled();
        tokio::pin!(sync_ended);
        let _waiting = Waiting::new(&self.shared);
        loop {
            if rx.borrow_and_update().synced_seq >= seq {
                break;
            }
            if self.shared.sync_stopped.is_cancelled() {
                return Err(self.shared.health.fatal().unwrap_or_else(stopped));
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Err(self.shared.health.fatal().unwrap_or_else(stopped));
                    }
                }
                _ = &mut sync_ended => {}
            }
        }
        match self.shared.progress.synced_txid(seq) {
            Some(txid) => Ok(txid),
            // Unreachable: synced positions never go back.
            None => Err(self.shared.health.fatal().unwrap_or_else(stopped)),
        }
    }

    /// Waits until the commit numbered `seq` (see [`CommitNotice`]) is on the replica, and
    /// returns the positions then (`replicated_txid` holds the commit). The commit must have
    /// been notified first.
    pub async fn wait_commit_replicated(&self, seq: u64) -> Result<Positions, FatalError> {
        self.wait(|p| p.replicated_seq >= seq).await
    }

    async fn wait(&self, done: impl Fn(&Positions) -> bool) -> Result<Positions, FatalError> {
        let mut rx = self.shared.progress.subscribe();
        let fatal = self.shared.health.wait_fatal();
        tokio::pin!(fatal);
        // Someone waits: the sync task stops pacing until nobody does.
        let _waiting = Waiting::new(&self.shared);
        loop {
            {
                let p = *rx.borrow_and_update();
                if done(&p) {
                    return Ok(p);
                }
            }
            if let Some(f) = self.shared.health.fatal() {
                return Err(f);
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Err(self.shared.health.fatal().unwrap_or_else(stopped));
                    }
                }
                f = &mut fatal => return Err(f),
            }
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        let s = &self.shared;
        let failures = s.health.failures();
        let fatal = s.health.fatal();
        Status {
            healthy: failures.is_empty() && fatal.is_none(),
            replica: s.client.describe(),
            positions: s.progress.positions(),
            lag: s.progress.lag(),
            failures,
            fatal,
            last_upload: *s.last_upload.lock(),
            retry_window: s.health.window(),
        }
    }

    /// Resolves when replication has failed for good.
    pub async fn failed(&self) -> FatalError {
        self.shared.health.wait_fatal().await
    }
}

/// Counts a caller in [`Shared::waiters`] for as long as it lives.
struct Waiting<'a>(&'a Shared);

impl<'a> Waiting<'a> {
    fn new(shared: &'a Shared) -> Waiting<'a> {
        shared.waiters.fetch_add(1, Ordering::AcqRel);
        // Commits a running sync holds in L0 files while it checkpoints are published now
        // (the sync task publishes them early only while someone waits).
        shared.progress.publish_held();
        shared.hurry.notify_one();
        Waiting(shared)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(super) fn stopped() -> FatalError {
    FatalError {
        component: Component::Sync,
        failing_for: Duration::ZERO,
        window: Duration::ZERO,
        last_error: "replication stopped".into(),
    }
}
