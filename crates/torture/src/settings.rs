//! What the seed decides for each epoch (lineage) of a run: the replica kind, the checkpoint and sync thresholds of
//! the generated Litestream config (small, so checkpoints and WAL restarts are frequent),
//! the retry window and operation deadline of the child, and the shape of the write load.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use rand::RngExt;
use rand::rngs::StdRng;

/// Where the replica lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaChoice {
    File,
    S3,
}

impl fmt::Display for ReplicaChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplicaChoice::File => "file",
            ReplicaChoice::S3 => "s3",
        })
    }
}

/// The settings of one epoch.
#[derive(Debug, Clone)]
pub struct Settings {
    pub replica: ReplicaChoice,
    pub monitor_interval: Duration,
    pub checkpoint_interval: Duration,
    pub min_checkpoint_page_count: u32,
    pub truncate_page_n: u32,
    pub sync_interval: Duration,
    pub l1_interval: Duration,
    pub l2_interval: Duration,
    pub snapshot_interval: Duration,
    /// The child's retry window and replica operation deadline. Faults end when their cycle
    /// stops (at most 9 s in), and the longest retry backoff is 5 s: a window of 20 s or more
    /// must never run out during a cycle, except in an outage the harness causes on purpose.
    pub retry_window: Duration,
    pub operation_timeout: Duration,
    /// HTTP writer tasks.
    pub http_writers: usize,
    /// Largest `pad` text of a row (bytes); bigger rows mean more pages per commit.
    pub max_pad: usize,
    /// Most rows of one bulk insert.
    pub max_bulk: usize,
}

impl Settings {
    /// Draws the settings; `replica` forces the replica kind.
    pub fn random(rng: &mut StdRng, replica: Option<ReplicaChoice>) -> Settings {
        let ms =
            |rng: &mut StdRng, lo: u64, hi: u64| Duration::from_millis(rng.random_range(lo..=hi));
        let s3 = rng.random_bool(0.5);
        let replica = replica.unwrap_or(if s3 {
            ReplicaChoice::S3
        } else {
            ReplicaChoice::File
        });
        let min_checkpoint_page_count = rng.random_range(4..=48);
        let truncate_page_n = rng.random_range(min_checkpoint_page_count * 4..=4000);
        let retry_window = ms(rng, 20_000, 30_000);
        Settings {
            replica,
            monitor_interval: ms(rng, 30, 250),
            checkpoint_interval: ms(rng, 100, 3000),
            min_checkpoint_page_count,
            truncate_page_n,
            sync_interval: ms(rng, 50, 1000),
            l1_interval: Duration::from_secs(rng.random_range(1..=4)),
            l2_interval: Duration::from_secs(rng.random_range(5..=15)),
            snapshot_interval: Duration::from_secs(rng.random_range(4..=30)),
            retry_window,
            operation_timeout: ms(rng, 500, 2000),
            http_writers: rng.random_range(2..=4),
            max_pad: rng.random_range(0..=3000),
            max_bulk: rng.random_range(2..=60),
        }
    }

    /// The Litestream config of `db` replicated to `replica_url` (the child's view).
    pub fn yaml(&self, db: &Path, replica_url: &str) -> String {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        format!(
            "levels:\n  - interval: {l1}\n  - interval: {l2}\n\
             snapshot:\n  interval: {snap}\n  retention: 1h\n\
             l0-retention: 10m\n\
             shutdown-sync-timeout: 20s\n\
             dbs:\n  - path: {db}\n\
             \x20   monitor-interval: {monitor}\n\
             \x20   checkpoint-interval: {ckpt}\n\
             \x20   min-checkpoint-page-count: {min}\n\
             \x20   truncate-page-n: {trunc}\n\
             \x20   replica:\n\
             \x20     url: {url}\n\
             \x20     sync-interval: {sync}\n",
            l1 = ms(self.l1_interval),
            l2 = ms(self.l2_interval),
            snap = ms(self.snapshot_interval),
            db = db.display(),
            monitor = ms(self.monitor_interval),
            ckpt = ms(self.checkpoint_interval),
            min = self.min_checkpoint_page_count,
            trunc = self.truncate_page_n,
            url = replica_url,
            sync = ms(self.sync_interval),
        )
    }
}
