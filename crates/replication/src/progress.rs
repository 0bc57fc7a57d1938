//! Where replication stands, for waiting and for the lag metric: the newest local TXID, the
//! newest replicated TXID, and which writer commits they hold.
//!
//! The server's writer numbers its commits (`seq`) and calls
//! [`crate::ReplicationHandle::notify_commit`] after each one. A sync reads the newest notified
//! `seq` *before* it reads the WAL ([`Progress::begin_sync`]), so every commit up to that
//! `seq` is in the L0 files the sync leaves behind; once those files are uploaded, those
//! commits are on the replica. [`Positions`] publishes both watermarks (TXIDs and commit
//! sequence numbers) on a `watch` channel, which is what a synchronous-acknowledgement mode
//! waits on ([`crate::ReplicationHandle::wait_commit_replicated`]).
//!
//! Lag = age of the oldest commit not yet on the replica: commits notified but not yet synced
//! (from their notification time), and synced files not yet uploaded (from the oldest commit
//! they hold). Writes by other processes are dated when a sync finds them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ltx::TxId;
use parking_lot::Mutex;
use tokio::sync::watch;

/// A commit by the server's writer, published after every COMMIT that wrote something.
///
/// Only the server's own writes are reported; writes by other processes never are (a sync
/// finds them by polling the WAL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitNotice {
    /// 1 for the first commit since start-up, then 2, 3, … (0: nothing committed yet).
    /// Strictly increasing; a consumer that sees a jump missed notices (a watch channel keeps
    /// only the latest), not commits.
    pub seq: u64,
}

/// The replication watermarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Positions {
    /// Newest TXID in a local L0 file.
    pub local_txid: TxId,
    /// Newest TXID on the replica.
    pub replicated_txid: TxId,
    /// Every notified commit with `seq <= synced_seq` is in a local L0 file.
    pub synced_seq: u64,
    /// Every notified commit with `seq <= replicated_seq` is on the replica.
    pub replicated_seq: u64,
}

/// Synced locally, not yet uploaded.
#[derive(Debug, Clone, Copy)]
struct Pending {
    txid: TxId,
    seq: u64,
    /// When the oldest commit in it happened (None: only bookkeeping writes).
    oldest: Option<Instant>,
}

#[derive(Debug, Default)]
struct Inner {
    pending: VecDeque<Pending>,
    /// The oldest notified commit not yet in an L0 file.
    unsynced_since: Option<Instant>,
}

/// What a sync took at its start ([`Progress::begin_sync`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SyncTicket {
    seq: u64,
    oldest: Option<Instant>,
    started: Instant,
}

/// Shared replication progress. See the module docs.
#[derive(Debug)]
pub(crate) struct Progress {
    notified_seq: AtomicU64,
    inner: Mutex<Inner>,
    tx: watch::Sender<Positions>,
}

impl Progress {
    /// Progress starting at the given local and replicated TXIDs.
    pub(crate) fn new(local: TxId, replicated: TxId) -> Progress {
        let (tx, _) = watch::channel(Positions {
            local_txid: local,
            replicated_txid: replicated,
            synced_seq: 0,
            replicated_seq: 0,
        });
        Progress {
            notified_seq: AtomicU64::new(0),
            inner: Mutex::new(Inner::default()),
            tx,
        }
    }

    pub(crate) fn positions(&self) -> Positions {
        *self.tx.borrow()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Positions> {
        self.tx.subscribe()
    }

    /// Records a commit notice (cheap; called on the writer's path).
    pub(crate) fn notify(&self, notice: CommitNotice) {
        self.notified_seq.fetch_max(notice.seq, Ordering::AcqRel);
        let mut inner = self.inner.lock();
        if inner.unsynced_since.is_none() {
            inner.unsynced_since = Some(Instant::now());
        }
    }

    /// Called right before a sync reads the WAL.
    pub(crate) fn begin_sync(&self) -> SyncTicket {
        let seq = self.notified_seq.load(Ordering::Acquire);
        let oldest = self.inner.lock().unsynced_since.take();
        SyncTicket {
            seq,
            oldest,
            started: Instant::now(),
        }
    }

    /// A sync failed: its commits are still unsynced.
    pub(crate) fn sync_failed(&self, ticket: SyncTicket) {
        let mut inner = self.inner.lock();
        inner.unsynced_since = min_instant(inner.unsynced_since, ticket.oldest);
    }

    /// A sync finished; `new_local` is the newest local TXID after it and `wal_bytes` how
    /// much WAL it read (0: nothing new was committed).
    pub(crate) fn end_sync(&self, ticket: SyncTicket, new_local: TxId, wal_bytes: u64) {
        let mut inner = self.inner.lock();
        let oldest = if wal_bytes > 0 {
            // Commits we were not told about (other processes) date from the sync's start.
            Some(ticket.oldest.unwrap_or(ticket.started))
        } else {
            ticket.oldest
        };
        self.tx.send_modify(|p| {
            let grew = new_local > p.local_txid;
            p.local_txid = p.local_txid.max(new_local);
            p.synced_seq = p.synced_seq.max(ticket.seq);
            if p.local_txid <= p.replicated_txid {
                // Everything is already on the replica.
                p.replicated_seq = p.replicated_seq.max(ticket.seq);
                return;
            }
            match inner.pending.back_mut() {
                Some(last) if !grew && last.txid == p.local_txid => {
                    last.seq = last.seq.max(ticket.seq);
                    last.oldest = min_instant(last.oldest, oldest);
                }
                _ => inner.pending.push_back(Pending {
                    txid: p.local_txid,
                    seq: ticket.seq,
                    oldest,
                }),
            }
        });
    }

    /// The replica now holds every TXID up to `txid`.
    pub(crate) fn uploaded(&self, txid: TxId) {
        let mut inner = self.inner.lock();
        self.tx.send_modify(|p| {
            p.replicated_txid = p.replicated_txid.max(txid);
            while let Some(front) = inner.pending.front() {
                if front.txid > txid {
                    break;
                }
                p.replicated_seq = p.replicated_seq.max(front.seq);
                inner.pending.pop_front();
            }
        });
    }

    /// Age of the oldest commit not yet on the replica (zero when all are).
    pub(crate) fn lag(&self) -> Duration {
        let inner = self.inner.lock();
        let pending = inner.pending.iter().filter_map(|p| p.oldest).min();
        match min_instant(inner.unsynced_since, pending) {
            Some(t) => t.elapsed(),
            None => Duration::ZERO,
        }
    }
}

fn min_instant(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_map_to_the_txids_that_hold_them() {
        let p = Progress::new(TxId(4), TxId(4));
        p.notify(CommitNotice { seq: 1 });
        // A commit not yet on the replica ages: the lag counts from its notice.
        std::thread::sleep(Duration::from_millis(5));
        assert!(p.lag() >= Duration::from_millis(5), "{:?}", p.lag());
        let t = p.begin_sync();
        p.notify(CommitNotice { seq: 2 });
        p.end_sync(t, TxId(5), 4096);
        assert_eq!(p.positions().synced_seq, 1);
        assert_eq!(p.positions().replicated_seq, 0);
        let t = p.begin_sync();
        p.end_sync(t, TxId(6), 4096);
        assert_eq!(p.positions().synced_seq, 2);
        p.uploaded(TxId(5));
        assert_eq!(p.positions().replicated_seq, 1);
        assert!(p.lag() > Duration::ZERO);
        p.uploaded(TxId(6));
        assert_eq!(p.positions().replicated_seq, 2);
        assert_eq!(p.lag(), Duration::ZERO);
        // A sync that finds nothing new after everything is uploaded confirms the commits.
        p.notify(CommitNotice { seq: 3 });
        let t = p.begin_sync();
        p.end_sync(t, TxId(6), 0);
        assert_eq!(p.positions().replicated_seq, 3);
        assert_eq!(p.lag(), Duration::ZERO);
    }
}
