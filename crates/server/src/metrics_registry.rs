//! Prometheus metrics, with the Go version's names and labels.
//!
//! `sqlite_rest_http_requests_total` and `sqlite_rest_http_request_duration_milliseconds`
//! (buckets 1, 10, 100, 500, 1000 ms) carry `target` (the table or view, only when it resolved
//! in the schema cache; empty otherwise, so names a client makes up cannot grow the label set),
//! `operation` (queryTableOrView, insertTable, updateTable, updateSingleEntity, deleteTable,
//! options: a fixed set whatever the method) and `http_code` (the statuses the server itself
//! answers with). Also `sqlite_rest_auth_failed_requests_total`,
//! `sqlite_rest_access_check_failed_requests_total`, `sqlite_rest_database_size_bytes`, the
//! writer's `sqlite_rest_write_commits_total`, `_write_batch_size`, `_write_reruns_total` and
//! `_write_dropped_total`, and the process collector (CPU, memory, file descriptors).
//! With replication, each write's wait for its replication position:
//! `sqlite_rest_write_durability_wait_seconds{mode}` and
//! `sqlite_rest_write_durability_total{mode,outcome}` (`mode` local or replicated; `outcome`
//! synced, replicated, no_commit, timeout, shutdown or failed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::database::writer::WriterEvent;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts,
    Registry, TextEncoder,
};

/// The request series of one label set, resolved (see [`Metrics::observe`]).
struct Handles {
    /// The [`Metrics`] they belong to.
    metrics: u64,
    target: String,
    operation: &'static str,
    status: u16,
    requests: IntCounter,
    latency: Histogram,
}

/// Label sets a thread keeps resolved; past this the list starts again (a linear search
/// stays cheap, and targets are relations the schema knows, statuses a small set).
const HANDLES_PER_THREAD: usize = 32;

thread_local! {
    static HANDLES: std::cell::RefCell<Vec<Handles>> = const { std::cell::RefCell::new(Vec::new()) };
}

pub struct Metrics {
    /// Tells apart the registries of one process (tests start several servers).
    id: u64,
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pub auth_failed: IntCounter,
    pub access_check_failed: IntCounter,
    pub database_size: Gauge,
    pub write_commits: IntCounter,
    pub write_batch_size: Histogram,
    pub write_reruns: IntCounter,
    pub write_dropped: IntCounter,
    durability_wait: HistogramVec,
    durability_total: IntCounterVec,
}

const NS: &str = "sqlite_rest";
const LABELS: [&str; 3] = ["target", "operation", "http_code"];

impl Metrics {
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "Total number of HTTP requests").namespace(NS),
            &LABELS,
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_milliseconds", "HTTP request latency")
                .namespace(NS)
                .buckets(vec![1.0, 10.0, 100.0, 500.0, 1000.0]),
            &LABELS,
        )?;
        let auth_failed = IntCounter::with_opts(
            Opts::new(
                "auth_failed_requests_total",
                "Total number of failed authentication requests",
            )
            .namespace(NS),
        )?;
        let access_check_failed = IntCounter::with_opts(
            Opts::new(
                "access_check_failed_requests_total",
                "Total number of failed access check requests",
            )
            .namespace(NS),
        )?;
        let database_size = Gauge::with_opts(
            Opts::new("database_size_bytes", "Size of the database file").namespace(NS),
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(auth_failed.clone()))?;
        registry.register(Box::new(access_check_failed.clone()))?;
        registry.register(Box::new(database_size.clone()))?;
        let write_commits = IntCounter::with_opts(
            Opts::new(
                "write_commits_total",
                "Write transactions committed (each may hold several requests)",
            )
            .namespace(NS),
        )?;
        let write_batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "write_batch_size",
                "Write requests committed per transaction",
            )
            .namespace(NS)
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )?;
        let write_reruns = IntCounter::with_opts(
            Opts::new(
                "write_reruns_total",
                "Write requests run again because another request's statement ended their shared transaction",
            )
            .namespace(NS),
        )?;
        let write_dropped = IntCounter::with_opts(
            Opts::new(
                "write_dropped_total",
                "Write requests dropped before they ran: the client left, or the time budget ran out in the queue",
            )
            .namespace(NS),
        )?;
        registry.register(Box::new(write_commits.clone()))?;
        registry.register(Box::new(write_batch_size.clone()))?;
        registry.register(Box::new(write_reruns.clone()))?;
        registry.register(Box::new(write_dropped.clone()))?;
        let durability_wait = HistogramVec::new(
            HistogramOpts::new(
                "write_durability_wait_seconds",
                "How long a write waited, after its commit, for its replication position: a local LTX file (mode local) or the replica (mode replicated)",
            )
            .namespace(NS)
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["mode"],
        )?;
        let durability_total = IntCounterVec::new(
            Opts::new(
                "write_durability_total",
                "Writes by durability mode and how their wait ended (synced, replicated, no_commit, timeout, shutdown, failed)",
            )
            .namespace(NS),
            &["mode", "outcome"],
        )?;
        registry.register(Box::new(durability_wait.clone()))?;
        registry.register(Box::new(durability_total.clone()))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Ok(Metrics {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            registry,
            requests,
            latency,
            auth_failed,
            access_check_failed,
            database_size,
            write_commits,
            write_batch_size,
            write_reruns,
            write_dropped,
            durability_wait,
            durability_total,
        })
    }

    /// Records what the writer reports.
    pub fn write_event(&self, event: WriterEvent) {
        match event {
            WriterEvent::Committed { jobs } => {
                self.write_commits.inc();
                self.write_batch_size.observe(jobs as f64);
            }
            WriterEvent::Rerun { jobs } => self.write_reruns.inc_by(jobs as u64),
            WriterEvent::Dropped => self.write_dropped.inc(),
        }
    }

    /// Records how a write's wait for its replication position ended (`mode` and `outcome`
    /// come from fixed sets).
    pub fn durability_wait(&self, mode: &str, outcome: &str, waited: Duration) {
        self.durability_wait
            .with_label_values(&[mode])
            .observe(waited.as_secs_f64());
        self.durability_total
            .with_label_values(&[mode, outcome])
            .inc();
    }

    /// Records one finished request.
    ///
    /// The two series a label set names are looked up once per thread and kept
    /// ([`HANDLES`]): a lookup by labels hashes them and takes the families' lock, which a
    /// request need not pay again for the same target, operation and status.
    pub fn observe(&self, target: &str, operation: &'static str, status: u16, elapsed: Duration) {
        let millis = elapsed.as_secs_f64() * 1000.0;
        HANDLES.with(|cell| {
            let mut handles = cell.borrow_mut();
            let found = handles.iter().find(|h| {
                h.metrics == self.id
                    && h.status == status
                    && h.operation == operation
                    && h.target == target
            });
            if let Some(h) = found {
                h.requests.inc();
                h.latency.observe(millis);
                return;
            }
            let mut buf = itoa::Buffer::new();
            let labels = [target, operation, buf.format(status)];
            let h = Handles {
                metrics: self.id,
                target: target.to_string(),
                operation,
                status,
                requests: self.requests.with_label_values(&labels),
                latency: self.latency.with_label_values(&labels),
            };
            h.requests.inc();
            h.latency.observe(millis);
            if handles.len() >= HANDLES_PER_THREAD {
                handles.clear();
            }
            handles.push(h);
        });
    }

    /// The registry behind `/metrics` (replication registers its families here).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// The Go version's operation label for a request method.
pub fn operation(method: &http::Method) -> &'static str {
    match *method {
        http::Method::POST => "insertTable",
        http::Method::PATCH => "updateTable",
        http::Method::PUT => "updateSingleEntity",
        http::Method::DELETE => "deleteTable",
        http::Method::OPTIONS => "options",
        _ => "queryTableOrView",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_registry_counts_its_own_requests() {
        // Two registries on one thread (as two servers in one test process): the label
        // sets each thread keeps resolved belong to one registry.
        let a = Metrics::new().unwrap();
        let b = Metrics::new().unwrap();
        for _ in 0..3 {
            a.observe("books", "queryTableOrView", 200, Duration::from_millis(3));
        }
        b.observe("books", "queryTableOrView", 200, Duration::from_millis(3));
        a.observe("books", "queryTableOrView", 404, Duration::from_millis(3));
        a.observe("authors", "queryTableOrView", 200, Duration::from_millis(3));
        let series = |m: &Metrics, code: &str, target: &str| {
            let text = String::from_utf8(m.render()).unwrap();
            let prefix = format!(
                "sqlite_rest_http_requests_total{{http_code=\"{code}\",operation=\"queryTableOrView\",target=\"{target}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        };
        assert_eq!(series(&a, "200", "books").as_deref(), Some("3"));
        assert_eq!(series(&a, "404", "books").as_deref(), Some("1"));
        assert_eq!(series(&a, "200", "authors").as_deref(), Some("1"));
        assert_eq!(series(&b, "200", "books").as_deref(), Some("1"));
        assert_eq!(series(&b, "404", "books"), None);
    }

    #[test]
    fn renders_go_names() {
        let m = Metrics::new().unwrap();
        m.observe("books", "queryTableOrView", 200, Duration::from_millis(3));
        m.auth_failed.inc();
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains(
            "sqlite_rest_http_requests_total{http_code=\"200\",operation=\"queryTableOrView\",target=\"books\"} 1"
        ));
        assert!(text.contains("sqlite_rest_http_request_duration_milliseconds_bucket{http_code=\"200\",operation=\"queryTableOrView\",target=\"books\",le=\"10\"} 1"));
        assert!(text.contains("sqlite_rest_auth_failed_requests_total 1"));
        assert!(text.contains("sqlite_rest_database_size_bytes"));
        assert!(text.contains("process_cpu_seconds_total"));
    }
}
