//! One writer per replica path: the level-0 files this replicator wrote since it started
//! ([`OwnFiles`]), and the fatal error when another writer's file shows up
//! ([`another_writer`]). See `docs/replication.md#two-primaries-on-one-replica-path`.
//!
//! Two primaries replicating to one path (an old primary still running after a follower was
//! promoted, or a second server started by mistake) both write level-0 files after the same
//! TXID. Nothing on the replica says which files belong together, so a follower or a restore
//! could apply a mix of both. Two checks, neither costing a request of its own:
//! - every level-0 upload is a conditional create: a name the other writer took first is
//!   refused by the store; unless the file there has our bytes (an earlier attempt of the same
//!   upload landed and its answer was lost), it is the other writer's;
//! - compaction into level 1 lists level 0 after level 1's end anyway: a listed file ending
//!   after the TXID the replica was at when we started must be one we wrote.
//!
//! Either way replication stops with a fatal error that names both ways out; the server then
//! stops.
//!
//! One foreign file is no second writer: the last upload of this server's predecessor (the
//! same database, restarted), sent before it died but committed by the store only after this
//! replicator listed the replica at start-up. It starts right after the replica's TXID at
//! start-up and ends at or before the newest local L0 file then (the predecessor can only have
//! sent TXIDs it had synced), and our own first uploads cover the same TXIDs, batched
//! differently. [`OwnFiles::may_be_predecessors`] says when a file fits that (or may, once
//! our upload still in flight is listed: [`Predecessor::InFlight`], retried); compaction then
//! compares it with the merge of the local L0 files of its TXIDs (the very files the
//! predecessor merged) and, when they are the same, keeps it and replaces our overlapping
//! uploads with one file of the TXIDs after it, instead of stopping.
//!
//! The first check fires at the first upload whose name the other writer took; the second at
//! the next compaction into level 1 (its `interval`, 30 s by default), so a second writer
//! goes unnoticed for at most about one level-1 interval after its first upload.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ltx::{FileName, TxId};
use parking_lot::Mutex;

use crate::health::{Component, FatalError};
use crate::level::LtxFileInfo;

use super::shared::Shared;

/// The level-0 files this replicator uploaded (or is uploading) since it started.
#[derive(Debug)]
pub(crate) struct OwnFiles {
    /// The replica's TXID at start-up: files ending at or before it were there before us.
    start: TxId,
    /// The newest local L0 file at start-up: what a predecessor may have synced, and so sent.
    local_start: TxId,
    /// Whether compaction into level 1 runs (a `levels:` list that is not empty): only it
    /// lists level 0 and asks [`OwnFiles::foreign`], and only it forgets names, so without
    /// it nothing is recorded (one name per upload would otherwise be kept for good).
    tracked: bool,
    /// Names of our uploads that compaction into level 1 may still list.
    names: Mutex<BTreeSet<FileName>>,
    /// When the replica first acknowledged an upload of this replicator (the grace below
    /// counts from it, not from the start: a slow start-up, or a large or retried first
    /// upload, must not use it up).
    first_upload: OnceLock<Instant>,
}

/// How long after its first upload landed, following a start-up that found local L0 files
/// beyond the replica (the only start a predecessor's late upload can race) the scheduled compaction
/// into level 1 leaves this run's uploads alone (it still compacts what was on the replica before): a late file that
/// lands meanwhile is listed beside our first upload and settled, instead of landing below
/// level 1's end, where nothing settles it and followers wait for `l0-retention`
/// (docs/replication.md, "A restart racing its predecessor's last upload").
pub(crate) const PREDECESSOR_GRACE: Duration = Duration::from_secs(10);

impl OwnFiles {
    pub(crate) fn new(start: TxId, local_start: TxId, tracked: bool) -> OwnFiles {
        OwnFiles {
            start,
            local_start,
            tracked,
            names: Mutex::new(BTreeSet::new()),
            first_upload: OnceLock::new(),
        }
    }

    /// The replica's TXID at start-up.
    pub(crate) fn start(&self) -> TxId {
        self.start
    }

    /// Whether the scheduled compaction into level 1 should still wait for a predecessor's
    /// late upload ([`PREDECESSOR_GRACE`]): only after a start that found local L0 files
    /// beyond the replica, only while uploads are recorded, and from then until the grace
    /// after the first upload landed has passed.
    pub(crate) fn awaiting_predecessor(&self) -> bool {
        self.tracked
            && self.local_start > self.start
            && self
                .first_upload
                .get()
                .is_none_or(|t| t.elapsed() < PREDECESSOR_GRACE)
    }

    /// Records an upload before it is sent (a listing may show it before it is answered).
    pub(crate) fn record(&self, name: FileName) {
        if self.tracked {
            self.names.lock().insert(name);
        }
    }

    /// The replica acknowledged an upload (the first one starts [`PREDECESSOR_GRACE`]).
    pub(crate) fn landed(&self) {
        if self.tracked {
            self.first_upload.get_or_init(Instant::now);
        }
    }

    /// How many uploads are remembered (tests: the set stays bounded).
    pub(crate) fn len(&self) -> usize {
        self.names.lock().len()
    }

    /// The first level-0 file of `listed` that ends after the start and is not ours (none
    /// when uploads are not recorded: a compaction run on demand without `levels:` knows
    /// nothing to compare with).
    pub(crate) fn foreign<'a>(&self, listed: &'a [LtxFileInfo]) -> Option<&'a LtxFileInfo> {
        if !self.tracked {
            return None;
        }
        let names = self.names.lock();
        listed
            .iter()
            .find(|f| f.name.max > self.start && !names.contains(&f.name))
    }

    /// Whether `file` (which we did not write) can be our predecessor's last upload, committed
    /// by the store after we listed the replica: it starts right after the replica's TXID at
    /// start-up, ends at or before our newest local L0 file then, and our uploads listed in
    /// `listed` already cover its TXIDs (so it is redundant if it holds the same history).
    /// [`Predecessor::InFlight`] when it fits but for that last count: our uploads that cover
    /// it are recorded and not all listed yet (the first one is still on its way; a compaction
    /// starts with replication).
    pub(crate) fn may_be_predecessors(
        &self,
        file: &LtxFileInfo,
        listed: &[LtxFileInfo],
    ) -> Predecessor {
        if file.name.min.get() != self.start.get() + 1 || file.name.max > self.local_start {
            return Predecessor::No;
        }
        let names = self.names.lock();
        // How far our uploads among `names` cover the TXIDs after the start, one after another.
        let covered = |names: &mut dyn Iterator<Item = FileName>| {
            names.fold(self.start, |covered, n| {
                if n.min.get() == covered.get() + 1 {
                    n.max
                } else {
                    covered
                }
            })
        };
        let mut listed_ours = listed.iter().map(|f| f.name).filter(|n| names.contains(n));
        if covered(&mut listed_ours) >= file.name.max {
            Predecessor::Covered
        } else if covered(&mut names.iter().copied()) >= file.name.max {
            Predecessor::InFlight
        } else {
            Predecessor::No
        }
    }

    /// The names of our uploads in `listed` that overlap `file`.
    pub(crate) fn overlapping(&self, file: &LtxFileInfo, listed: &[LtxFileInfo]) -> Vec<FileName> {
        let names = self.names.lock();
        listed
            .iter()
            .map(|f| f.name)
            .filter(|n| names.contains(n) && n.min <= file.name.max && n.max >= file.name.min)
            .collect()
    }

    /// Forgets uploads that were deleted (replaced by one file after the predecessor's).
    pub(crate) fn forget(&self, deleted: &[FileName]) {
        let mut names = self.names.lock();
        for n in deleted {
            names.remove(n);
        }
    }

    /// Forgets the uploads that level 1 covers (`max <= upto`): the level-0 listings of later
    /// compactions start after it.
    pub(crate) fn forget_upto(&self, upto: TxId) {
        self.names.lock().retain(|n| n.max > upto);
    }
}

/// What [`OwnFiles::may_be_predecessors`] makes of a level-0 file we did not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Predecessor {
    /// It cannot be our predecessor's: another writer's.
    No,
    /// It may be, and our listed uploads cover its TXIDs: compare it.
    Covered,
    /// It may be, but our uploads that cover its TXIDs are not all listed yet: look again
    /// once they are (no proof of another writer either way).
    InFlight,
}

/// Makes replication fail now: another writer's level-0 file `file` is on the replica.
pub(crate) fn another_writer(shared: &Shared, component: Component, file: FileName, how: &str) {
    let replica = shared.client.describe();
    let db = shared.db_path.display();
    shared.health.set_fatal(FatalError {
        component,
        failing_for: Duration::ZERO,
        window: shared.health.window(),
        last_error: format!(
            "diverged: another primary is writing to the replica {replica}: the level-0 file \
             {file} {how}. Two servers replicate to one replica path, and this one stops \
             replicating so that no reader is given a mix of both histories. Stop one of \
             them: if this server ({db}) is the old primary of a promoted follower, leave it \
             stopped (its writes since the promotion are not on the replica); if it is the \
             one to keep, stop the other server, then restart this one: it checks the replica \
             against its database at start-up and refuses it if they diverged (then run \
             `sqlite-rest restore --force` to take the replica's side, or point this server \
             at a new, empty replica path to keep its own)"
        ),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::level::Level;

    fn info(min: u64, max: u64) -> LtxFileInfo {
        LtxFileInfo {
            level: Level::L0,
            name: FileName::new(TxId(min), TxId(max)),
            size: 1,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn compaction_waits_for_a_predecessor_only_after_a_start_with_local_files_ahead() {
        // Local L0 files beyond the replica at start-up: a predecessor's upload may land.
        assert!(OwnFiles::new(TxId(5), TxId(8), true).awaiting_predecessor());
        // Nothing local ahead (a clean stop), or no compaction into level 1: nothing to wait for.
        assert!(!OwnFiles::new(TxId(5), TxId(5), true).awaiting_predecessor());
        assert!(!OwnFiles::new(TxId(5), TxId(8), false).awaiting_predecessor());
        // And only until the grace after the first upload has passed.
        let own = OwnFiles::new(TxId(5), TxId(8), true);
        own.record(FileName::new(TxId(6), TxId(9)));
        assert!(own.awaiting_predecessor());
        own.landed();
        assert!(own.awaiting_predecessor());
        let own = OwnFiles {
            first_upload: OnceLock::from(Instant::now() - PREDECESSOR_GRACE),
            ..own
        };
        assert!(!own.awaiting_predecessor());
    }

    #[test]
    fn only_files_after_the_start_that_we_did_not_write_are_foreign() {
        let own = OwnFiles::new(TxId(5), TxId(5), true);
        own.record(FileName::new(TxId(6), TxId(8)));
        // Before the start: someone's (the previous primary's), not a second writer.
        assert!(own.foreign(&[info(4, 5), info(6, 8)]).is_none());
        // Overlapping the start, or after ours, and not ours.
        assert_eq!(
            own.foreign(&[info(5, 6)]).map(|f| f.name.max),
            Some(TxId(6))
        );
        assert_eq!(
            own.foreign(&[info(6, 8), info(6, 6)]).map(|f| f.name),
            Some(FileName::new(TxId(6), TxId(6)))
        );
        own.forget_upto(TxId(8));
        assert!(own.foreign(&[info(6, 8)]).is_some());
    }

    #[test]
    fn only_a_file_our_first_uploads_cover_from_the_start_may_be_a_predecessors() {
        // The replica was at 5 and the newest local L0 file at 8 when we started.
        let own = OwnFiles::new(TxId(5), TxId(8), true);
        own.record(FileName::new(TxId(6), TxId(7)));
        own.record(FileName::new(TxId(8), TxId(9)));
        let listed = [info(6, 7), info(6, 8), info(8, 9)];
        let judge = |file, listed: &[LtxFileInfo]| own.may_be_predecessors(&file, listed);
        assert_eq!(judge(info(6, 8), &listed), Predecessor::Covered);
        assert_eq!(judge(info(6, 6), &listed), Predecessor::Covered);
        // Not right after the start, or beyond what was local at the start.
        assert_eq!(judge(info(7, 8), &listed), Predecessor::No);
        assert_eq!(judge(info(6, 9), &listed), Predecessor::No);
        // Our uploads covering it are recorded but not all listed (yet).
        assert_eq!(
            judge(info(6, 8), &[info(6, 7), info(6, 8)]),
            Predecessor::InFlight
        );
        assert_eq!(judge(info(6, 8), &[info(6, 8)]), Predecessor::InFlight);
        // Nothing of ours covers it, listed or not.
        let fresh = OwnFiles::new(TxId(5), TxId(8), true);
        fresh.record(FileName::new(TxId(6), TxId(6)));
        assert_eq!(
            fresh.may_be_predecessors(&info(6, 8), &[info(6, 6), info(6, 8)]),
            Predecessor::No
        );
        assert_eq!(
            own.overlapping(&info(6, 8), &listed),
            [
                FileName::new(TxId(6), TxId(7)),
                FileName::new(TxId(8), TxId(9))
            ]
        );
    }
}
