//! The restore plan (`docs/ltx-and-replica-format.md#restore-plan`): which LTX files, from which levels, rebuild the database
//! at the latest state, at a TXID, or as of a time. A pure function over listings, with
//! Litestream's rules so our plan equals `litestream restore -dry-run`:
//!
//! 1. The snapshot is the last level-9 file with MaxTXID ≤ target TXID and CreatedAt strictly
//!    before the timestamp (when those are given); there may be none.
//! 2. From there, levels 8..0 are walked as ordered cursors; each round takes the best file
//!    that continues the chain (MinTXID ≤ current+1 < MaxTXID, within the target): larger
//!    MaxTXID, then smaller MinTXID, then higher level, then earlier CreatedAt.
//! 3. Latest restores fail with [`PlanError::NonContiguous`] when some level still has a file
//!    starting beyond the chain; an empty plan or one that stops short of the target TXID is
//!    [`PlanError::NotAvailable`] (`no matching backup files available`).
//!
//! Timestamp plans need each file's exact CreatedAt (list with
//! `ListOptions::precise_timestamps`). URL-form restores first check the timestamp against
//! the replica's time bounds ([`check_timestamp_in_bounds`]), which Litestream computes from
//! plain listings.

use chrono::{DateTime, Utc};
use ltx::TxId;

use crate::level::{Level, LtxFileInfo};

/// Smallest valid LTX file (its header).
pub const MIN_LTX_FILE_SIZE: u64 = 100;

/// What to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreTarget {
    /// The newest state the replica holds.
    Latest,
    /// Exactly this TXID (must be a file boundary).
    TxId(TxId),
    /// The newest state from files created strictly before this time.
    Timestamp(DateTime<Utc>),
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Litestream's `ErrTxNotAvailable`.
    #[error("no matching backup files available")]
    NotAvailable,
    #[error("non-contiguous ltx files: have up to {have} but next file starts at {next}")]
    NonContiguous { have: TxId, next: TxId },
    #[error("timestamp does not exist")]
    TimestampNotInRange,
    #[error("no backups found")]
    NoBackups,
    #[error("ltx file {level}/{name} is too small ({size} bytes; a valid file has at least 100)")]
    FileTooSmall {
        level: Level,
        name: ltx::FileName,
        size: u64,
    },
}

/// The files to apply, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePlan {
    pub files: Vec<LtxFileInfo>,
}

impl RestorePlan {
    /// MinTXID of the first file (1 for any complete plan).
    pub fn min_txid(&self) -> TxId {
        self.files.first().map_or(TxId::ZERO, |f| f.name.min)
    }

    /// The TXID the restored database will be at.
    pub fn max_txid(&self) -> TxId {
        self.files.last().map_or(TxId::ZERO, |f| f.name.max)
    }

    /// Litestream rejects files shorter than an LTX header before downloading anything.
    pub fn check_sizes(&self) -> Result<(), PlanError> {
        match self.files.iter().find(|f| f.size < MIN_LTX_FILE_SIZE) {
            Some(f) => Err(PlanError::FileTooSmall {
                level: f.level,
                name: f.name,
                size: f.size,
            }),
            None => Ok(()),
        }
    }
}

/// Plans a restore from the files of every level (any order; grouped and sorted here).
pub fn plan_restore(
    files: &[LtxFileInfo],
    target: RestoreTarget,
) -> Result<RestorePlan, PlanError> {
    let (txid, timestamp) = match target {
        RestoreTarget::Latest => (None, None),
        RestoreTarget::TxId(t) if t == TxId::ZERO => (None, None),
        RestoreTarget::TxId(t) => (Some(t), None),
        RestoreTarget::Timestamp(ts) => (None, Some(ts)),
    };
    let eligible = |f: &LtxFileInfo| {
        txid.is_none_or(|t| f.name.max <= t) && timestamp.is_none_or(|ts| f.created_at < ts)
    };
    let mut by_level: Vec<Vec<LtxFileInfo>> = vec![Vec::new(); usize::from(Level::MAX) + 1];
    for f in files {
        by_level[usize::from(f.level.get())].push(*f);
    }
    for level in &mut by_level {
        level.sort_by_key(|f| f.name);
    }

    let mut plan: Vec<LtxFileInfo> = Vec::new();
    if let Some(snapshot) = by_level[usize::from(Level::SNAPSHOT.get())]
        .iter()
        .rfind(|f| eligible(f))
    {
        plan.push(*snapshot);
    }
    let mut current = plan.last().map_or(TxId::ZERO, |f| f.name.max);
    if txid.is_some_and(|t| current >= t) {
        return Ok(RestorePlan { files: plan });
    }

    // One cursor per compaction level, highest first (as Litestream orders them).
    let mut cursors: Vec<Cursor> = (0..Level::SNAPSHOT.get())
        .rev()
        .map(|l| Cursor::new(&by_level[usize::from(l)]))
        .collect();
    loop {
        let mut best: Option<(usize, LtxFileInfo)> = None;
        for (i, cursor) in cursors.iter_mut().enumerate() {
            cursor.refresh(current, &eligible);
            let Some(candidate) = cursor.candidate else {
                continue;
            };
            if best.is_none_or(|(_, prev)| candidate_better(&prev, &candidate)) {
                best = Some((i, candidate));
            }
        }
        let Some((i, chosen)) = best else { break };
        cursors[i].candidate = None;
        if chosen.name.max <= current {
            continue;
        }
        plan.push(chosen);
        current = chosen.name.max;
        if txid.is_some_and(|t| current >= t) {
            break;
        }
    }

    if !plan.is_empty() && target == RestoreTarget::Latest {
        for cursor in &cursors {
            if let Some(next) = cursor.current()
                && next.name.min.get() > current.get().saturating_add(1)
            {
                return Err(PlanError::NonContiguous {
                    have: current,
                    next: next.name.min,
                });
            }
        }
    }
    if plan.is_empty() || txid.is_some_and(|t| current < t) {
        return Err(PlanError::NotAvailable);
    }
    Ok(RestorePlan { files: plan })
}

/// The files of ONE level (sorted by name) that continue `after` as one chain, with the
/// plan's rule (rule 2 above, one cursor): each step takes, among the files starting at or
/// before the chain's end + 1, the one reaching furthest; files ending at or before the
/// chain's end are passed over. Consecutive files of the chain may overlap (each reaches
/// beyond the one before), which the ltx compactor accepts. The chain stops at the first gap.
pub(crate) fn chain(files: &[LtxFileInfo], after: TxId) -> Vec<LtxFileInfo> {
    let mut cursor = Cursor::new(files);
    let mut current = after;
    let mut out = Vec::new();
    loop {
        cursor.refresh(current, &|_| true);
        let Some(next) = cursor.candidate.take() else {
            return out;
        };
        current = next.name.max;
        out.push(next);
    }
}

/// Litestream's `restoreCandidateBetter`: is `next` better than `curr`?
fn candidate_better(curr: &LtxFileInfo, next: &LtxFileInfo) -> bool {
    if next.name.max != curr.name.max {
        return next.name.max > curr.name.max;
    }
    if next.name.min != curr.name.min {
        return next.name.min < curr.name.min;
    }
    if next.level != curr.level {
        return next.level > curr.level;
    }
    next.created_at < curr.created_at
}

/// A forward-only walk over one level's files (sorted by name), keeping the best file that
/// can continue the chain.
struct Cursor<'a> {
    files: &'a [LtxFileInfo],
    /// Index of the next file not yet evaluated.
    pos: usize,
    candidate: Option<LtxFileInfo>,
}

impl<'a> Cursor<'a> {
    fn new(files: &'a [LtxFileInfo]) -> Cursor<'a> {
        Cursor {
            files,
            pos: 0,
            candidate: None,
        }
    }

    fn current(&self) -> Option<&LtxFileInfo> {
        self.files.get(self.pos)
    }

    fn refresh(&mut self, current: TxId, eligible: &impl Fn(&LtxFileInfo) -> bool) {
        if self.candidate.is_some_and(|c| c.name.max <= current) {
            self.candidate = None;
        }
        while let Some(info) = self.files.get(self.pos).copied() {
            if info.name.min.get() > current.get().saturating_add(1) {
                return;
            }
            self.pos += 1;
            if info.name.max <= current || !eligible(&info) {
                continue;
            }
            if self.candidate.is_none_or(|c| candidate_better(&c, &info)) {
                self.candidate = Some(info);
            }
        }
    }
}

/// The earliest and latest CreatedAt over all files, if any.
pub fn time_bounds(files: &[LtxFileInfo]) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let min = files.iter().map(|f| f.created_at).min()?;
    let max = files.iter().map(|f| f.created_at).max()?;
    Some((min, max))
}

/// URL-form restores: the timestamp must lie within the replica's time bounds (computed, as
/// in Litestream, from plain listings of every level).
pub fn check_timestamp_in_bounds(
    files: &[LtxFileInfo],
    timestamp: DateTime<Utc>,
) -> Result<(), PlanError> {
    let (earliest, latest) = time_bounds(files).ok_or(PlanError::NoBackups)?;
    if timestamp < earliest || timestamp > latest {
        return Err(PlanError::TimestampNotInRange);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l0(min: u64, max: u64) -> LtxFileInfo {
        LtxFileInfo {
            level: Level::L0,
            name: ltx::FileName::new(TxId(min), TxId(max)),
            size: MIN_LTX_FILE_SIZE,
            created_at: Utc::now(),
        }
    }

    fn ranges(files: &[LtxFileInfo]) -> Vec<(u64, u64)> {
        files
            .iter()
            .map(|f| (f.name.min.get(), f.name.max.get()))
            .collect()
    }

    #[test]
    fn a_chain_takes_the_file_reaching_furthest_and_stops_at_a_gap() {
        // A restart race left 5-7 (the predecessor's), 5-8 (ours) and 8-8 (the replacement).
        let files = [l0(1, 4), l0(5, 7), l0(5, 8), l0(8, 8), l0(9, 9), l0(11, 12)];
        assert_eq!(ranges(&chain(&files, TxId(0))), [(1, 4), (5, 8), (9, 9)]);
        assert_eq!(ranges(&chain(&files, TxId(6))), [(5, 8), (9, 9)]);
        // Overlapping files that each reach further are chained as they are.
        let split = [l0(5, 6), l0(5, 7), l0(7, 8)];
        assert_eq!(ranges(&chain(&split, TxId(4))), [(5, 7), (7, 8)]);
        assert!(chain(&split, TxId(2)).is_empty());
    }
}
