//! Replica levels and the listing entry of one LTX file in a level.
//!
//! Level 0 holds the raw per-sync files, levels 1..=8 compaction outputs, level 9 snapshots
//! (`docs/ltx-and-replica-format.md#levels`). A listing entry carries what the replicator, retention and the restore plan
//! need: level, name (min/max TXID), size and CreatedAt
//! (`docs/ltx-and-replica-format.md#file-timestamps`).

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use ltx::{FileName, TxId};

/// A replica level, 0..=9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Level(u8);

impl Level {
    /// Raw per-sync files.
    pub const L0: Level = Level(0);
    /// The snapshot level (`SnapshotLevel`).
    pub const SNAPSHOT: Level = Level(9);
    /// Highest level number.
    pub const MAX: u8 = 9;

    /// `None` for numbers above 9.
    pub const fn new(n: u8) -> Option<Level> {
        if n <= Self::MAX { Some(Level(n)) } else { None }
    }

    pub const fn get(self) -> u8 {
        self.0
    }

    /// Levels 0..=9 in order.
    pub fn all() -> impl DoubleEndedIterator<Item = Level> {
        (0..=Self::MAX).map(Level)
    }

    pub fn is_snapshot(self) -> bool {
        self == Self::SNAPSHOT
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One LTX file in a replica level, as a listing reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LtxFileInfo {
    pub level: Level,
    pub name: FileName,
    /// Bytes.
    pub size: u64,
    /// When the file was created (the LTX header timestamp, as the backend keeps it: file
    /// mtime; S3 LastModified, or the `litestream-timestamp` metadata when asked for precise
    /// timestamps).
    pub created_at: DateTime<Utc>,
}

impl LtxFileInfo {
    pub fn min_txid(&self) -> TxId {
        self.name.min
    }

    pub fn max_txid(&self) -> TxId {
        self.name.max
    }
}

/// Go's `time.RFC3339Nano` in UTC: fraction with trailing zeros trimmed, none if zero
/// (`2026-11-26T02:25:36.935Z`, `2026-11-26T02:25:36.93Z`, `2026-11-26T02:25:36Z`). This is
/// the format of the `litestream-timestamp` object metadata.
pub(crate) fn format_rfc3339_nano(t: DateTime<Utc>) -> String {
    let base = t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let nanos = t.timestamp_subsec_nanos();
    if nanos == 0 {
        return base;
    }
    let frac = format!("{nanos:09}");
    let frac = frac.trim_end_matches('0');
    match base.strip_suffix('Z') {
        Some(b) => format!("{b}.{frac}Z"),
        None => base,
    }
}

/// A timestamp from milliseconds since the Unix epoch (the LTX header's Timestamp field).
pub(crate) fn timestamp_from_millis(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_nano_trims_the_fraction() {
        let t = |ms| format_rfc3339_nano(timestamp_from_millis(ms).unwrap());
        assert_eq!(t(1_795_659_804_713), "2026-11-26T02:23:24.713Z");
        assert_eq!(t(1_795_659_804_710), "2026-11-26T02:23:24.71Z");
        assert_eq!(t(1_795_659_804_000), "2026-11-26T02:23:24Z");
        assert_eq!(Level::new(10), None);
        assert_eq!(Level::all().count(), 10);
    }
}
