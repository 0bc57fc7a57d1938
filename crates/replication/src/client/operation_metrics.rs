//! Litestream's replica operation metrics (`docs/replication.md#metrics-and-health`), with Litestream's names, labels and
//! histogram buckets, so dashboards built for Litestream work unchanged:
//! `litestream_replica_operation_total{replica_type,operation}`, `_bytes`,
//! `_duration_seconds` and `_errors_total{replica_type,operation,code}`.
//!
//! Registration: the server creates one [`ReplicaMetrics`] in the `prometheus::Registry` it
//! serves on `/metrics` ([`ReplicaMetrics::register`]) and hands clones to every client (a
//! second registration in the same registry fails with `AlreadyReg`). Tools that expose no
//! metrics (e.g. `sqlite-rest restore`) use [`ReplicaMetrics::unregistered`].
//!
//! Unlike Litestream, the file backend is counted too (`replica_type="file"`); operations are
//! `GET`, `PUT`, `DELETE`, `LIST` as in Litestream, plus `HEAD` for metadata reads.

use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Histogram buckets of `litestream_replica_operation_duration_seconds`.
pub(crate) const DURATION_BUCKETS: [f64; 9] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0];

/// The replica operation metric vectors (cheap to clone; clones share the series).
#[derive(Debug, Clone)]
pub struct ReplicaMetrics {
    total: IntCounterVec,
    bytes: IntCounterVec,
    duration: HistogramVec,
    errors: IntCounterVec,
}

impl ReplicaMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<ReplicaMetrics, prometheus::Error> {
        let m = ReplicaMetrics::build()?;
        registry.register(Box::new(m.total.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        Ok(m)
    }

    /// Metrics that are recorded but exposed nowhere (tools without a metrics endpoint).
    pub fn unregistered() -> Result<ReplicaMetrics, prometheus::Error> {
        ReplicaMetrics::build()
    }

    fn build() -> Result<ReplicaMetrics, prometheus::Error> {
        let labels = &["replica_type", "operation"];
        Ok(ReplicaMetrics {
            total: IntCounterVec::new(
                Opts::new(
                    "litestream_replica_operation_total",
                    "The number of replica operations performed",
                ),
                labels,
            )?,
            bytes: IntCounterVec::new(
                Opts::new(
                    "litestream_replica_operation_bytes",
                    "The number of bytes used by replica operations",
                ),
                labels,
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "litestream_replica_operation_duration_seconds",
                    "Duration of replica operations by type and operation",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                labels,
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "litestream_replica_operation_errors_total",
                    "Number of replica operation errors by type, operation, and error code",
                ),
                &["replica_type", "operation", "code"],
            )?,
        })
    }

    /// `litestream_replica_operation_total` for one (type, operation).
    pub fn total(&self, replica_type: &str, operation: &str) -> u64 {
        self.total
            .with_label_values(&[replica_type, operation])
            .get()
    }

    /// `litestream_replica_operation_bytes` for one (type, operation).
    pub fn bytes(&self, replica_type: &str, operation: &str) -> u64 {
        self.bytes
            .with_label_values(&[replica_type, operation])
            .get()
    }

    /// Adds to `litestream_replica_operation_bytes` (bytes of a body counted as it streams).
    pub(crate) fn add_bytes(&self, replica_type: &str, operation: &str, bytes: u64) {
        self.bytes
            .with_label_values(&[replica_type, operation])
            .inc_by(bytes);
    }

    /// `litestream_replica_operation_errors_total` for one (type, operation, code).
    pub fn errors(&self, replica_type: &str, operation: &str, code: &str) -> u64 {
        self.errors
            .with_label_values(&[replica_type, operation, code])
            .get()
    }
}

/// Starts timing one operation (nothing is recorded without metrics); finish it with
/// [`Op::ok`] or [`Op::err`].
pub(crate) fn start<'a>(
    metrics: Option<&'a ReplicaMetrics>,
    replica_type: &'static str,
    operation: &'static str,
) -> Op<'a> {
    Op {
        metrics,
        replica_type,
        operation,
        started: Instant::now(),
    }
}

/// One operation being timed.
pub(crate) struct Op<'a> {
    metrics: Option<&'a ReplicaMetrics>,
    replica_type: &'static str,
    operation: &'static str,
    started: Instant,
}

impl Op<'_> {
    /// Records a success: count `n` operations moving `bytes` bytes.
    pub(crate) fn ok(self, n: u64, bytes: u64) {
        let Some(metrics) = self.metrics else { return };
        let labels = [self.replica_type, self.operation];
        metrics.total.with_label_values(&labels).inc_by(n);
        if bytes > 0 {
            metrics.bytes.with_label_values(&labels).inc_by(bytes);
        }
        metrics
            .duration
            .with_label_values(&labels)
            .observe(self.started.elapsed().as_secs_f64());
    }

    /// Records a failure with an error code label.
    pub(crate) fn err(self, code: &str) {
        let Some(metrics) = self.metrics else { return };
        let labels = [self.replica_type, self.operation];
        metrics
            .duration
            .with_label_values(&labels)
            .observe(self.started.elapsed().as_secs_f64());
        metrics
            .errors
            .with_label_values(&[self.replica_type, self.operation, code])
            .inc();
    }
}
