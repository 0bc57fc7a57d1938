//! Litestream's defaults (`docs/replication.md#configuration`; the maintenance ones also in
//! `#compaction`, `#snapshots` and `#retention`).

use std::time::Duration;

/// L1, L2, L3 compaction intervals.
pub(crate) const LEVELS: [Duration; 3] = [
    Duration::from_secs(30),
    Duration::from_secs(5 * 60),
    Duration::from_secs(60 * 60),
];
pub(crate) const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
pub(crate) const SNAPSHOT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
pub(crate) const L0_RETENTION: Duration = Duration::from_secs(5 * 60);
pub(crate) const L0_RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(15);
pub(crate) const SHUTDOWN_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const SHUTDOWN_SYNC_INTERVAL: Duration = Duration::from_millis(500);
pub(crate) const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5 * 60);
pub(crate) const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
pub(crate) const MONITOR_INTERVAL: Duration = Duration::from_secs(1);
pub(crate) const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(1);
pub(crate) const MIN_CHECKPOINT_PAGE_COUNT: u32 = 1000;
pub(crate) const TRUNCATE_PAGE_N: u32 = 121_359;
pub(crate) const MAX_SYNC_WAL_BYTES: u64 = 64 << 20;
pub(crate) const SYNC_INTERVAL: Duration = Duration::from_secs(1);
pub(crate) const MAX_SYNC_LTX_FILES: usize = 256;
/// Highest compaction level a `levels:` list may reach (level 9 is the snapshot level).
pub(crate) const MAX_COMPACTION_LEVEL: usize = 8;
