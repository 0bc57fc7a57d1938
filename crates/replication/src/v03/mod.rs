//! Litestream 0.3 backups ("generations"), read so that a replica written by Litestream 0.3
//! (the Go sqlite-rest's sidecar) restores instead of passing for an empty replica.
//!
//! Layout, under the replica root (file path, or S3 key prefix):
//! `generations/<generation: 16 hex>/snapshots/<index: 8 hex>.snapshot.lz4` (the database
//! file) and `generations/<generation>/wal/<index: 8 hex>_<offset: 8–16 hex>.wal.lz4` (the
//! bytes of WAL file number `index` from `offset` on, the WAL header included at offset 0).
//! Every file is one LZ4 frame. CreatedAt is the file's mtime / LastModified.
//!
//! This module owns the names ([`Generation`], [`parse_snapshot_name`],
//! [`parse_segment_name`]), the listing ([`list`]), the plan ([`plan`]: as Litestream 0.5
//! restores such a backup, the newest snapshot across all generations — the newest at or
//! before a timestamp — and the WAL segments of its generation from the snapshot's index on,
//! which must start at offset 0 of each index and follow each other without a gap), and
//! `apply` the restore itself. sqlite-rest never writes this layout: after a restore it
//! replicates in LTX under the same path, as Litestream 0.5 does.

mod apply;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::client::{ClientError, DirEntry, EntryKind, ReplicaClient};

pub use apply::{RestoredV03, restore};

/// The top-level directory of a Litestream 0.3 backup.
pub const GENERATIONS_DIR: &str = "generations";

/// A Litestream 0.3 generation: 16 lower-case hex digits, the name of its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(pub u64);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for Generation {
    type Err = ();
    /// Exactly 16 lower-case hex digits, as Litestream matches them.
    fn from_str(s: &str) -> Result<Generation, ()> {
        parse_hex(s, 16, 16).map(Generation).ok_or(())
    }
}

/// `n` hex digits (`min..=max` of them, lower case only) as a number.
fn parse_hex(s: &str, min: usize, max: usize) -> Option<u64> {
    let ok = (min..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// The index of a snapshot file name, `<index %08x>.snapshot.lz4`.
pub fn parse_snapshot_name(name: &str) -> Option<u32> {
    let index = name.strip_suffix(".snapshot.lz4")?;
    parse_hex(index, 8, 8).and_then(|i| u32::try_from(i).ok())
}

/// The index and offset of a WAL segment file name, `<index %08x>_<offset %08x>.wal.lz4`
/// (the offset has more digits past 4 GiB). Indexes above `0x7fffffff` are refused, as
/// Litestream refuses them.
pub fn parse_segment_name(name: &str) -> Option<(u32, u64)> {
    let stem = name.strip_suffix(".wal.lz4")?;
    let (index, offset) = stem.split_once('_')?;
    let index = parse_hex(index, 8, 8)?;
    let offset = parse_hex(offset, 8, 16)?;
    if index > i32::MAX as u64 || offset > i64::MAX as u64 {
        return None;
    }
    Some((index as u32, offset))
}

/// The name of a snapshot file.
pub fn snapshot_name(index: u32) -> String {
    format!("{index:08x}.snapshot.lz4")
}

/// The name of a WAL segment file.
pub fn segment_name(index: u32, offset: u64) -> String {
    format!("{index:08x}_{offset:08x}.wal.lz4")
}

/// One snapshot of a Litestream 0.3 backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V03Snapshot {
    pub generation: Generation,
    pub index: u32,
    /// Compressed bytes.
    pub size: u64,
    pub created_at: DateTime<Utc>,
}

impl V03Snapshot {
    /// The path relative to the replica root.
    pub fn path(&self) -> String {
        format!(
            "{GENERATIONS_DIR}/{}/snapshots/{}",
            self.generation,
            snapshot_name(self.index)
        )
    }
}

/// One WAL segment of a Litestream 0.3 backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V03Segment {
    pub generation: Generation,
    pub index: u32,
    /// Byte offset of the segment in its WAL file.
    pub offset: u64,
    /// Compressed bytes.
    pub size: u64,
    pub created_at: DateTime<Utc>,
}

impl V03Segment {
    /// The path relative to the replica root (the offset in 8 hex digits, more past 4 GiB,
    /// as Litestream names and opens segments).
    pub fn path(&self) -> String {
        format!(
            "{GENERATIONS_DIR}/{}/wal/{}",
            self.generation,
            segment_name(self.index, self.offset)
        )
    }
}

/// Everything a Litestream 0.3 backup holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V03Listing {
    /// Generation directories, ascending.
    pub generations: Vec<Generation>,
    /// Snapshots of every generation, by (generation, index).
    pub snapshots: Vec<V03Snapshot>,
    /// WAL segments of every generation, by (generation, index, offset).
    pub segments: Vec<V03Segment>,
}

impl V03Listing {
    /// True when there is no generation directory at all.
    pub fn is_empty(&self) -> bool {
        self.generations.is_empty()
    }

    /// The oldest and newest CreatedAt of any snapshot or segment.
    pub fn time_bounds(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let times = self
            .snapshots
            .iter()
            .map(|s| s.created_at)
            .chain(self.segments.iter().map(|s| s.created_at));
        times.fold(None, |acc, t| match acc {
            None => Some((t, t)),
            Some((lo, hi)) => Some((lo.min(t), hi.max(t))),
        })
    }

    /// The snapshot Litestream 0.5 restores from: the newest by CreatedAt (at or before
    /// `before`, if given) across all generations; between equal times the later
    /// (generation, index).
    pub fn best_snapshot(&self, before: Option<DateTime<Utc>>) -> Option<V03Snapshot> {
        self.snapshots
            .iter()
            .filter(|s| before.is_none_or(|t| s.created_at <= t))
            .max_by_key(|s| (s.created_at, s.generation, s.index))
            .copied()
    }
}

/// Lists a replica's Litestream 0.3 backup (empty when there is no `generations/`).
/// Directories that are not 16-hex generations and files that are not snapshots or WAL
/// segments are skipped, as Litestream skips them.
pub async fn list(client: &dyn ReplicaClient) -> Result<V03Listing, ClientError> {
    let mut listing = V03Listing::default();
    for entry in client.list_dir(GENERATIONS_DIR).await? {
        if entry.kind != EntryKind::Dir {
            continue;
        }
        let Ok(generation) = entry.name.parse::<Generation>() else {
            continue;
        };
        listing.generations.push(generation);
        let dir = format!("{GENERATIONS_DIR}/{generation}");
        for f in files(client, &format!("{dir}/snapshots")).await? {
            if let Some(index) = parse_snapshot_name(&f.name) {
                listing.snapshots.push(V03Snapshot {
                    generation,
                    index,
                    size: f.size,
                    created_at: created_at(&f),
                });
            }
        }
        for f in files(client, &format!("{dir}/wal")).await? {
            if let Some((index, offset)) = parse_segment_name(&f.name) {
                listing.segments.push(V03Segment {
                    generation,
                    index,
                    offset,
                    size: f.size,
                    created_at: created_at(&f),
                });
            }
        }
    }
    listing.generations.sort();
    listing
        .snapshots
        .sort_by_key(|s| (s.generation, s.index, s.created_at));
    listing
        .segments
        .sort_by_key(|s| (s.generation, s.index, s.offset));
    Ok(listing)
}

async fn files(client: &dyn ReplicaClient, dir: &str) -> Result<Vec<DirEntry>, ClientError> {
    Ok(client
        .list_dir(dir)
        .await?
        .into_iter()
        .filter(|e| e.kind == EntryKind::File)
        .collect())
}

fn created_at(entry: &DirEntry) -> DateTime<Utc> {
    entry.created_at.unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// What to restore a Litestream 0.3 backup to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V03Target {
    /// The newest state.
    Latest,
    /// The newest state from files created at or before this time.
    Timestamp(DateTime<Utc>),
}

/// A snapshot and the WAL segments to apply on it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V03Plan {
    pub snapshot: V03Snapshot,
    pub segments: Vec<V03Segment>,
}

impl V03Plan {
    /// Compressed bytes to download.
    pub fn bytes(&self) -> u64 {
        self.snapshot.size + self.segments.iter().map(|s| s.size).sum::<u64>()
    }

    /// Files to download.
    pub fn files(&self) -> usize {
        1 + self.segments.len()
    }

    /// The last WAL index applied (the snapshot's, when there are no segments).
    pub fn last_index(&self) -> u32 {
        self.segments
            .last()
            .map_or(self.snapshot.index, |s| s.index)
    }
}

/// Errors of a Litestream 0.3 restore.
#[derive(Debug, thiserror::Error)]
pub enum V03Error {
    #[error(
        "the Litestream 0.3 backup has no snapshot{} (generations: {generations}); it cannot be restored",
        if before.is_some() { " at or before the requested time" } else { "" }
    )]
    NoSnapshot {
        generations: String,
        before: Option<DateTime<Utc>>,
    },
    #[error(
        "the Litestream 0.3 backup is incomplete: generation {generation} misses WAL index {expected:08x} (the next segment is {found})"
    )]
    MissingIndex {
        generation: Generation,
        expected: u32,
        found: String,
    },
    #[error(
        "the Litestream 0.3 backup is incomplete: generation {generation}, WAL index {index:08x} continues at offset {found} but its segments so far end at offset {expected}"
    )]
    MissingSegment {
        generation: Generation,
        index: u32,
        expected: u64,
        found: u64,
    },
    #[error("{file}: {message}")]
    Corrupt { file: String, message: String },
}

/// Plans the restore of a Litestream 0.3 backup (see the module docs). Fails, naming what
/// is missing, when there is no snapshot or the WAL segments after it have a gap between
/// indexes or do not start an index at offset 0; gaps inside an index show when the
/// segments are read (their offsets are positions in the uncompressed WAL).
pub fn plan(listing: &V03Listing, target: V03Target) -> Result<V03Plan, V03Error> {
    let before = match target {
        V03Target::Latest => None,
        V03Target::Timestamp(t) => Some(t),
    };
    let snapshot = listing
        .best_snapshot(before)
        .ok_or_else(|| V03Error::NoSnapshot {
            generations: if listing.generations.is_empty() {
                "none".to_string()
            } else {
                listing
                    .generations
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            before,
        })?;
    let segments: Vec<V03Segment> = listing
        .segments
        .iter()
        .filter(|s| s.generation == snapshot.generation && s.index >= snapshot.index)
        .filter(|s| before.is_none_or(|t| s.created_at <= t))
        .copied()
        .collect();
    let mut expected = snapshot.index;
    let mut current: Option<u32> = None;
    for s in &segments {
        if current == Some(s.index) {
            continue;
        }
        if s.index != expected || s.offset != 0 {
            return Err(V03Error::MissingIndex {
                generation: snapshot.generation,
                expected,
                found: segment_name(s.index, s.offset),
            });
        }
        current = Some(s.index);
        expected = s.index.saturating_add(1);
    }
    Ok(V03Plan { snapshot, segments })
}

#[cfg(test)]
mod tests;
