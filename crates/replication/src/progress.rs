//! Where replication stands, for waiting and for the lag metric: the newest local TXID, the
//! newest replicated TXID, and which writer commits they hold.
//!
//! The server's writer numbers its commits (`seq`) and calls
//! [`crate::ReplicationHandle::notify_commit`] after each one. A sync reads the newest notified
//! `seq` *before* it reads the WAL ([`Progress::begin_sync`]), so every commit up to that
//! `seq` is in the L0 files the sync leaves behind; once those files are uploaded, those
//! commits are on the replica. [`Positions`] publishes both watermarks (TXIDs and commit
//! sequence numbers) on a `watch` channel, which the server's write path waits on
//! ([`crate::ReplicationHandle::wait_commit_synced`], `wait_commit_replicated`).
//!
//! Each sync that covers new commits also leaves a record (highest `seq` it covered, newest
//! local TXID after it) in a bounded list ([`SYNC_RECORDS`] entries), so
//! [`crate::ReplicationHandle::wait_commit_synced`] can answer a commit with the TXID of the
//! sync that *first* covered it, even when the waiter looks only after later syncs. A waiter
//! older than the whole list gets the TXID of the newest record that fell off it: a later
//! sync's TXID, never an earlier one, so it still names a real L0 file that holds the commit
//! (a read at that TXID reflects the write); with [`SYNC_RECORDS`] syncs that takes a waiter
//! that slept through thousands of syncs.
//!
//! "First covered" is by notices: a commit that lands while a sync is starting, after that
//! sync took the newest notice but before it read the WAL's end, is in that sync's file but
//! is counted by the next sync, and gets the next sync's TXID (later than its file, never
//! earlier: still a file that holds it). A notice carries no WAL position, so that window
//! (between a COMMIT and its notice) cannot be closed here; it needs a sync to start in it.
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

/// How many syncs [`Progress::synced_txid`] remembers (see the module docs).
pub(crate) const SYNC_RECORDS: usize = 8192;

/// One sync that covered new commits: every commit `seq` with
/// `previous.seq < seq <= this.seq` is first in the L0 files ending at `txid`.
#[derive(Debug, Clone, Copy)]
struct SyncRecord {
    seq: u64,
    txid: TxId,
}

#[derive(Debug, Default)]
struct Inner {
    pending: VecDeque<Pending>,
    /// The newest syncs that covered new commits, oldest first (at most [`SYNC_RECORDS`]).
    synced: VecDeque<SyncRecord>,
    /// The newest record that fell off `synced` (the fallback for older waiters).
    forgotten: Option<SyncRecord>,
    /// The oldest notified commit not yet in an L0 file.
    unsynced_since: Option<Instant>,
    /// The running sync's files hold every commit its ticket covers, up to this TXID, but
    /// the sync goes on (its checkpoint) and nobody asked for them yet ([`Progress::hold`]).
    held: Option<(SyncTicket, TxId)>,
}

/// What a sync took at its start ([`Progress::begin_sync`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SyncTicket {
    seq: u64,
    oldest: Option<Instant>,
    started: Instant,
}

impl SyncTicket {
    /// When the sync started.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// How long the oldest commit it covers waited for the sync to start (None: no notified
    /// commit was waiting).
    pub(crate) fn waited(&self) -> Option<Duration> {
        self.oldest
            .map(|o| self.started.saturating_duration_since(o))
    }
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

    /// True if a notified commit is not known to be in a local L0 file yet.
    pub(crate) fn unsynced(&self) -> bool {
        self.notified_seq.load(Ordering::Acquire) > self.tx.borrow().synced_seq
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

    /// A sync's files hold its commits; `new_local` is the newest local TXID after it and
    /// `wal_bytes` how much WAL it read (0: nothing new was committed). Called when the
    /// sync finished; before that, what it held was maybe published already
    /// ([`Progress::publish_held`]): repeated calls with one ticket only move `local_txid`
    /// on.
    pub(crate) fn end_sync(&self, ticket: SyncTicket, new_local: TxId, wal_bytes: u64) {
        let mut inner = self.inner.lock();
        inner.held = None;
        self.end_sync_locked(&mut inner, ticket, new_local, wal_bytes);
    }

    /// The running sync's files hold every commit `ticket` covers, up to `txid`, before the
    /// sync ends (it goes on to checkpoint): kept, not published, so the upload task still
    /// finds the whole sync's files at its end and sends them as one object (one PUT per
    /// sync, not one before its checkpoint and one after). A caller that waits for them
    /// ([`Progress::publish_held`]) has them published at once instead.
    pub(crate) fn hold(&self, ticket: SyncTicket, txid: TxId) {
        self.inner.lock().held = Some((ticket, txid));
    }

    /// Publishes what the running sync holds ([`Progress::hold`]), if anything: a caller
    /// waits for a commit, and need not wait for the sync's checkpoint too.
    pub(crate) fn publish_held(&self) {
        let mut inner = self.inner.lock();
        if let Some((ticket, txid)) = inner.held.take() {
            self.end_sync_locked(&mut inner, ticket, txid, 1);
        }
    }

    fn end_sync_locked(
        &self,
        inner: &mut Inner,
        ticket: SyncTicket,
        new_local: TxId,
        wal_bytes: u64,
    ) {
        let oldest = if wal_bytes > 0 {
            // Commits we were not told about (other processes) date from the sync's start.
            Some(ticket.oldest.unwrap_or(ticket.started))
        } else {
            ticket.oldest
        };
        self.tx.send_modify(|p| {
            let grew = new_local > p.local_txid;
            p.local_txid = p.local_txid.max(new_local);
            if ticket.seq > p.synced_seq {
                inner.synced.push_back(SyncRecord {
                    seq: ticket.seq,
                    txid: p.local_txid,
                });
                if inner.synced.len() > SYNC_RECORDS {
                    inner.forgotten = inner.synced.pop_front();
                }
            }
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

    /// The TXID of the sync that first covered commit `seq` (`None` while it is not synced):
    /// the newest local TXID right after that sync. See the module docs for waiters older
    /// than the record.
    pub(crate) fn synced_txid(&self, seq: u64) -> Option<TxId> {
        let inner = self.inner.lock();
        if seq > self.tx.borrow().synced_seq {
            return None;
        }
        let first = inner.synced.partition_point(|r| r.seq < seq);
        match inner.synced.get(first) {
            Some(r) if inner.forgotten.is_none_or(|f| f.seq < seq) => Some(r.txid),
            // Older than every record we kept (or synced before any record: seq 0).
            _ => Some(
                inner
                    .forgotten
                    .map_or(self.tx.borrow().local_txid, |f| f.txid),
            ),
        }
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

    /// One sync covering commits up to `seq`, leaving the local position at `txid`.
    fn sync(p: &Progress, seq: u64, txid: u64) {
        p.notify(CommitNotice { seq });
        let t = p.begin_sync();
        p.end_sync(t, TxId(txid), 4096);
    }

    #[test]
    fn a_commit_maps_to_the_sync_that_first_covered_it() {
        let p = Progress::new(TxId(4), TxId(4));
        assert_eq!(p.synced_txid(1), None);
        p.notify(CommitNotice { seq: 1 });
        p.notify(CommitNotice { seq: 2 });
        let t = p.begin_sync();
        // Commit 3 lands during the sync: it goes into the next one.
        p.notify(CommitNotice { seq: 3 });
        assert_eq!(p.synced_txid(3), None);
        p.end_sync(t, TxId(5), 4096);
        assert_eq!(p.synced_txid(1), Some(TxId(5)));
        assert_eq!(p.synced_txid(2), Some(TxId(5)));
        assert_eq!(p.synced_txid(3), None);
        // A sync that found nothing new (commit 3's WAL was read by the sync before its
        // notice) still covers it, at the file that holds it.
        let t = p.begin_sync();
        p.end_sync(t, TxId(5), 0);
        assert_eq!(p.synced_txid(3), Some(TxId(5)));
        // Waiters that look only after several more syncs get their own sync's TXID, not
        // the newest one.
        sync(&p, 4, 6);
        sync(&p, 7, 9);
        sync(&p, 8, 10);
        assert_eq!(p.positions().local_txid, TxId(10));
        assert_eq!(p.synced_txid(1), Some(TxId(5)));
        assert_eq!(p.synced_txid(3), Some(TxId(5)));
        assert_eq!(p.synced_txid(4), Some(TxId(6)));
        assert_eq!(p.synced_txid(5), Some(TxId(9)));
        assert_eq!(p.synced_txid(7), Some(TxId(9)));
        assert_eq!(p.synced_txid(8), Some(TxId(10)));
        assert_eq!(p.synced_txid(9), None);
        // Syncs that cover no new commit (other processes' writes) leave no record.
        let t = p.begin_sync();
        p.end_sync(t, TxId(11), 4096);
        assert_eq!(p.synced_txid(8), Some(TxId(10)));
    }

    #[test]
    fn a_waiter_older_than_the_record_gets_a_later_real_txid() {
        let p = Progress::new(TxId(0), TxId(0));
        let n = SYNC_RECORDS as u64 + 10;
        for seq in 1..=n {
            sync(&p, seq, seq);
        }
        // Still remembered: exact.
        assert_eq!(p.synced_txid(n), Some(TxId(n)));
        assert_eq!(p.synced_txid(11), Some(TxId(11)));
        // Forgotten: the newest forgotten sync's TXID, later than the exact one but a real
        // file that holds the commit, never an earlier one.
        assert_eq!(p.synced_txid(10), Some(TxId(10)));
        assert_eq!(p.synced_txid(1), Some(TxId(10)));
    }
}
