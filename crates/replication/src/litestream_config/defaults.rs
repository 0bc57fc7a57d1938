//! Litestream's defaults (`docs/replication.md#configuration`; the maintenance ones also in
//! `#compaction`, `#snapshots` and `#retention`).

use std::time::Duration;

/// L1, L2, L3 compaction intervals.
pub const LEVELS: [Duration; 3] = [
    Duration::from_secs(30),
    Duration::from_secs(5 * 60),
    Duration::from_secs(60 * 60),
];
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
pub const SNAPSHOT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
pub const L0_RETENTION: Duration = Duration::from_secs(5 * 60);
pub const L0_RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(15);
pub const SHUTDOWN_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
pub const SHUTDOWN_SYNC_INTERVAL: Duration = Duration::from_millis(500);
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5 * 60);
pub const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
pub const MONITOR_INTERVAL: Duration = Duration::from_secs(1);
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(1);
pub const MIN_CHECKPOINT_PAGE_COUNT: u32 = 1000;
pub const TRUNCATE_PAGE_N: u32 = 121_359;
pub const MAX_SYNC_WAL_BYTES: u64 = 64 << 20;
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);
pub const MAX_SYNC_LTX_FILES: usize = 256;
/// Highest compaction level a `levels:` list may reach (level 9 is the snapshot level).
pub const MAX_COMPACTION_LEVEL: usize = 8;
