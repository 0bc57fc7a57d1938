//! The replicator's Prometheus metrics: Litestream's per-database families
//! (`docs/replication.md#metrics-and-health`), with
//! Litestream's names, types and labels so existing Litestream dashboards work, and
//! sqlite-rest's own `sqlite_rest_replication_*` families.
//!
//! Litestream's (label `db` = the database's full path, except
//! `litestream_l0_retention_files_total` whose `db` is the file's base name, as Litestream):
//! `litestream_db_size`, `litestream_wal_size`, `litestream_total_wal_bytes`,
//! `litestream_txid`, `litestream_sync_count`, `litestream_sync_error_count`,
//! `litestream_sync_seconds`, `litestream_disk_full`, `litestream_checkpoint_count`,
//! `litestream_checkpoint_error_count`, `litestream_checkpoint_seconds` (+ `mode`),
//! `litestream_compaction_verify_error_count`, `litestream_l0_retention_files_total`
//! (+ `status`). The replica operation families live in [`crate::client::operation_metrics`].
//!
//! sqlite-rest's: `sqlite_rest_replication_last_snapshot_timestamp` (Unix seconds of the
//! newest snapshot on the replica), `sqlite_rest_replication_bytes_replicated_total` (bytes of
//! L0 files uploaded), `sqlite_rest_replication_errors_total{operation}` (sync, upload,
//! checkpoint, compaction, snapshot, retention, probe), `sqlite_rest_replication_lag_seconds`
//! (age of the oldest committed transaction not yet on the replica, computed at scrape time),
//! `sqlite_rest_replication_local_txid` and `sqlite_rest_replication_replicated_txid`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ltx::TxId;
use prometheus::{
    Counter, CounterVec, Gauge, GaugeVec, IntCounter, IntCounterVec, Opts, PullingGauge, Registry,
};

use crate::db_attachment::CheckpointMode;

/// Every per-database metric (cheap to clone; clones share the series).
#[derive(Clone)]
pub struct DbMetrics {
    db_size: Gauge,
    wal_size: Gauge,
    total_wal_bytes: Counter,
    txid: Gauge,
    sync_count: Counter,
    sync_errors: Counter,
    sync_seconds: Counter,
    disk_full: Gauge,
    checkpoint_count: CounterVec,
    checkpoint_errors: CounterVec,
    checkpoint_seconds: CounterVec,
    compaction_verify_errors: Counter,
    l0_retention: GaugeVec,
    db_label: String,
    base_name: String,
    last_snapshot: Gauge,
    bytes_replicated: IntCounter,
    errors: IntCounterVec,
    local_txid: Gauge,
    replicated_txid: Gauge,
    /// The families to register (vectors whose children are above).
    families: Arc<Families>,
}

struct Families {
    gauges: Vec<GaugeVec>,
    counters: Vec<CounterVec>,
}

impl std::fmt::Debug for DbMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbMetrics")
            .field("db", &self.db_label)
            .finish_non_exhaustive()
    }
}

impl DbMetrics {
    /// Creates the metrics of the database at `db_path` (not yet registered).
    pub fn new(db_path: &Path) -> Result<DbMetrics, prometheus::Error> {
        let db = db_path.display().to_string();
        let base_name = db_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| db.clone());
        let gauge = |name: &str, help: &str| GaugeVec::new(Opts::new(name, help), &["db"]);
        let counter = |name: &str, help: &str| CounterVec::new(Opts::new(name, help), &["db"]);
        let db_size = gauge("litestream_db_size", "The current size of the real DB")?;
        let wal_size = gauge("litestream_wal_size", "The current size of the real WAL")?;
        let txid = gauge("litestream_txid", "Current transaction ID")?;
        let disk_full = gauge(
            "litestream_disk_full",
            "Whether the last sync failed because the disk is full (1) or not (0)",
        )?;
        let total_wal = counter(
            "litestream_total_wal_bytes",
            "Total number of bytes written to shadow WAL",
        )?;
        let sync_count = counter(
            "litestream_sync_count",
            "Number of sync operations performed",
        )?;
        let sync_errors = counter(
            "litestream_sync_error_count",
            "Number of sync errors that have occurred",
        )?;
        let sync_seconds = counter(
            "litestream_sync_seconds",
            "Time spent syncing shadow WAL, in seconds",
        )?;
        let verify = counter(
            "litestream_compaction_verify_error_count",
            "Number of post-compaction verification failures",
        )?;
        let cp = |name: &str, help: &str| CounterVec::new(Opts::new(name, help), &["db", "mode"]);
        let checkpoint_count = cp(
            "litestream_checkpoint_count",
            "Number of checkpoint operations",
        )?;
        let checkpoint_errors = cp(
            "litestream_checkpoint_error_count",
            "Number of checkpoint errors",
        )?;
        let checkpoint_seconds = cp(
            "litestream_checkpoint_seconds",
            "Time spent checkpointing WAL, in seconds",
        )?;
        let l0_retention = GaugeVec::new(
            Opts::new(
                "litestream_l0_retention_files_total",
                "Number of L0 files by retention status",
            ),
            &["db", "status"],
        )?;
        let label = [db.as_str()];
        Ok(DbMetrics {
            db_size: db_size.with_label_values(&label),
            wal_size: wal_size.with_label_values(&label),
            total_wal_bytes: total_wal.with_label_values(&label),
            txid: txid.with_label_values(&label),
            sync_count: sync_count.with_label_values(&label),
            sync_errors: sync_errors.with_label_values(&label),
            sync_seconds: sync_seconds.with_label_values(&label),
            disk_full: disk_full.with_label_values(&label),
            compaction_verify_errors: verify.with_label_values(&label),
            checkpoint_count: checkpoint_count.clone(),
            checkpoint_errors: checkpoint_errors.clone(),
            checkpoint_seconds: checkpoint_seconds.clone(),
            l0_retention: l0_retention.clone(),
            db_label: db.clone(),
            base_name,
            last_snapshot: Gauge::new(
                "sqlite_rest_replication_last_snapshot_timestamp",
                "Unix time (seconds) of the newest snapshot (level 9 file) on the replica; 0 if none",
            )?,
            bytes_replicated: IntCounter::new(
                "sqlite_rest_replication_bytes_replicated_total",
                "Bytes of L0 files uploaded to the replica",
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "sqlite_rest_replication_errors_total",
                    "Replication errors by operation (each failed attempt counts)",
                ),
                &["operation"],
            )?,
            local_txid: Gauge::new(
                "sqlite_rest_replication_local_txid",
                "Newest TXID written to a local L0 file",
            )?,
            replicated_txid: Gauge::new(
                "sqlite_rest_replication_replicated_txid",
                "Newest TXID on the replica",
            )?,
            families: Arc::new(Families {
                gauges: vec![db_size, wal_size, txid, disk_full, l0_retention],
                counters: vec![
                    total_wal,
                    sync_count,
                    sync_errors,
                    sync_seconds,
                    verify,
                    checkpoint_count,
                    checkpoint_errors,
                    checkpoint_seconds,
                ],
            }),
        })
    }

    /// Registers every family in `registry`, plus the lag gauge computed by `lag` (seconds)
    /// at each scrape.
    pub fn register(
        &self,
        registry: &Registry,
        lag: Arc<dyn Fn() -> f64 + Send + Sync>,
    ) -> Result<(), prometheus::Error> {
        for g in &self.families.gauges {
            registry.register(Box::new(g.clone()))?;
        }
        for c in &self.families.counters {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(self.last_snapshot.clone()))?;
        registry.register(Box::new(self.bytes_replicated.clone()))?;
        registry.register(Box::new(self.errors.clone()))?;
        registry.register(Box::new(self.local_txid.clone()))?;
        registry.register(Box::new(self.replicated_txid.clone()))?;
        let gauge = PullingGauge::new(
            "sqlite_rest_replication_lag_seconds",
            "Age in seconds of the oldest committed transaction not yet on the replica (0 when all are)",
            Box::new(move || lag()),
        )?;
        registry.register(Box::new(gauge))
    }

    pub fn set_db_size(&self, bytes: u64) {
        self.db_size.set(bytes as f64);
    }

    pub fn set_wal_size(&self, bytes: u64) {
        self.wal_size.set(bytes as f64);
    }

    pub fn add_wal_bytes(&self, bytes: u64) {
        self.total_wal_bytes.inc_by(bytes as f64);
    }

    pub fn set_txid(&self, txid: TxId) {
        self.txid.set(txid.0 as f64);
        self.local_txid.set(txid.0 as f64);
    }

    pub fn set_replicated_txid(&self, txid: TxId) {
        self.replicated_txid.set(txid.0 as f64);
    }

    pub fn record_sync(&self, took: Duration, failed: bool) {
        self.sync_count.inc();
        if failed {
            self.sync_errors.inc();
            self.error("sync");
        }
        self.sync_seconds.inc_by(took.as_secs_f64());
    }

    pub fn set_disk_full(&self, full: bool) {
        self.disk_full.set(if full { 1.0 } else { 0.0 });
    }

    pub fn record_checkpoint(&self, mode: CheckpointMode, took: Duration, failed: bool) {
        let labels = [self.db_label.as_str(), mode.as_str()];
        self.checkpoint_count.with_label_values(&labels).inc();
        if failed {
            self.checkpoint_errors.with_label_values(&labels).inc();
            self.error("checkpoint");
        }
        self.checkpoint_seconds
            .with_label_values(&labels)
            .inc_by(took.as_secs_f64());
    }

    pub fn compaction_verify_error(&self) {
        self.compaction_verify_errors.inc();
    }

    /// `litestream_l0_retention_files_total` after an L0 retention pass.
    pub fn set_l0_retention(&self, eligible: usize, not_compacted: usize, too_recent: usize) {
        for (status, n) in [
            ("eligible", eligible),
            ("not_compacted", not_compacted),
            ("too_recent", too_recent),
        ] {
            self.l0_retention
                .with_label_values(&[self.base_name.as_str(), status])
                .set(n as f64);
        }
    }

    /// The newest snapshot's CreatedAt (as Unix seconds).
    pub fn set_last_snapshot(&self, created_at: DateTime<Utc>) {
        self.last_snapshot
            .set(created_at.timestamp_millis() as f64 / 1000.0);
    }

    pub fn add_bytes_replicated(&self, bytes: u64) {
        self.bytes_replicated.inc_by(bytes);
    }

    /// Counts one error of `operation`.
    pub fn error(&self, operation: &str) {
        self.errors.with_label_values(&[operation]).inc();
    }

    /// `sqlite_rest_replication_errors_total{operation}` (for tests and health).
    pub fn errors(&self, operation: &str) -> u64 {
        self.errors.with_label_values(&[operation]).get()
    }
}
