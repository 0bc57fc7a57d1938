//! Deadlines for replica operations: [`Deadline`] wraps any [`ReplicaClient`] so that an
//! operation that hangs (a file replica on a dead NFS mount, an S3 endpoint that accepts
//! connections and never answers) fails with [`ClientError::Timeout`] instead of waiting
//! forever, and so counts towards the retry window like any other error
//! ([`crate::health`]).
//!
//! The deadline bounds how long an operation may go *without progress*, not its total
//! length, so large files stream at any speed:
//! - `levels`, `list`, `list_dir`, `delete`, `probe` and opening a file: the whole call;
//! - reading an opened file: every wait for the next chunk (time the consumer spends on a
//!   chunk does not count);
//! - `write`: the time since the client last took a chunk of the body or the body last had
//!   one ready, not counting the time the client waits for the body itself (a snapshot being
//!   read from the database). A file sent as one chunk (every L0 file up to 16 MB) must be
//!   written within the deadline.
//!
//! The deadline is [`NetworkOptions::operation_timeout`](super::NetworkOptions): default
//! [`DEFAULT_OPERATION_TIMEOUT`], or [`OPERATION_TIMEOUT_ENV`]. A hung operation is
//! abandoned: its future is dropped (a blocking thread stuck in a system call stays stuck,
//! which is why the server shuts its runtime down with a timeout). Local paths are hidden,
//! so restores and compactions read a file replica through `open` (and its deadline) too.

use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use ltx::FileName;
use tokio::time::{Instant, Sleep};

use super::{ByteStream, ClientError, DirEntry, ListOptions, ReadRange, ReplicaClient};
use crate::level::{Level, LtxFileInfo};
use crate::target::ReplicaKind;

/// How long a replica operation may make no progress before it fails.
pub(crate) const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Environment variable overriding [`DEFAULT_OPERATION_TIMEOUT`] (Go duration syntax).
pub(crate) const OPERATION_TIMEOUT_ENV: &str = "SQLITEREST_REPLICATION_OPERATION_TIMEOUT";

/// The operation timeout from [`OPERATION_TIMEOUT_ENV`], or the default.
pub(crate) fn operation_timeout_from_env() -> Result<Duration, String> {
    crate::health::positive_duration_env(OPERATION_TIMEOUT_ENV, DEFAULT_OPERATION_TIMEOUT)
}

/// A replica client whose every operation has a deadline (see the module docs).
#[derive(Debug)]
pub(crate) struct Deadline {
    inner: Arc<dyn ReplicaClient>,
    timeout: Duration,
}

impl Deadline {
    /// Wraps `inner`; `timeout` is clamped to at least 1 ms.
    pub(crate) fn wrap(inner: Arc<dyn ReplicaClient>, timeout: Duration) -> Arc<dyn ReplicaClient> {
        Arc::new(Deadline {
            inner,
            timeout: timeout.max(Duration::from_millis(1)),
        })
    }

    fn timeout_error(&self, operation: &'static str) -> ClientError {
        ClientError::Timeout {
            replica: self.inner.describe(),
            operation,
            timeout: self.timeout,
        }
    }

    /// `stream` with every wait for a chunk bounded.
    fn stall_limited(&self, stream: ByteStream) -> ByteStream {
        StallLimited {
            inner: stream,
            timeout: self.timeout,
            sleep: None,
            error: Some(self.timeout_error("read")),
        }
        .boxed()
    }

    /// `fut` within the deadline.
    async fn bounded<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(self.timeout_error(operation)),
        }
    }
}

#[async_trait]
impl ReplicaClient for Deadline {
    fn kind(&self) -> ReplicaKind {
        self.inner.kind()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn local_path(&self, _level: Level, _name: FileName) -> Option<PathBuf> {
        // Direct reads would have no deadline.
        None
    }

    async fn levels(&self) -> Result<Vec<Level>, ClientError> {
        self.bounded("list levels", self.inner.levels()).await
    }

    async fn list(
        &self,
        level: Level,
        options: ListOptions,
    ) -> Result<Vec<LtxFileInfo>, ClientError> {
        self.bounded("list", self.inner.list(level, options)).await
    }

    async fn open(
        &self,
        level: Level,
        name: FileName,
        range: ReadRange,
    ) -> Result<ByteStream, ClientError> {
        let stream = self
            .bounded("open", self.inner.open(level, name, range))
            .await?;
        Ok(self.stall_limited(stream))
    }

    async fn write(
        &self,
        level: Level,
        name: FileName,
        body: ByteStream,
        created_at: DateTime<Utc>,
    ) -> Result<LtxFileInfo, ClientError> {
        let progress = Arc::new(Progress::new());
        let body = Watched {
            inner: body,
            progress: progress.clone(),
        }
        .boxed();
        let write = self.inner.write(level, name, body, created_at);
        tokio::pin!(write);
        loop {
            let due = progress.last() + self.timeout;
            tokio::select! {
                r = &mut write => return r,
                _ = tokio::time::sleep_until(due) => {
                    if progress.waiting_on_body() {
                        // The client waits for our body (e.g. a snapshot still being read):
                        // not the replica's time.
                        progress.touch();
                    } else if progress.last() + self.timeout <= Instant::now() {
                        return Err(self.timeout_error("write"));
                    }
                }
            }
        }
    }

    async fn create_bytes(
        &self,
        level: Level,
        name: FileName,
        data: Bytes,
        created_at: DateTime<Utc>,
    ) -> Result<LtxFileInfo, ClientError> {
        // One request whose body is not watched: the deadline grows by a second per MiB, so
        // a merged upload of tens of MiB on a slow link is not cut while it moves.
        let limit = self.timeout + Duration::from_secs((data.len() as u64) >> 20);
        match tokio::time::timeout(
            limit,
            self.inner.create_bytes(level, name, data, created_at),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(self.timeout_error("write")),
        }
    }

    async fn delete(&self, level: Level, names: &[FileName]) -> Result<(), ClientError> {
        self.bounded("delete", self.inner.delete(level, names))
            .await
    }

    async fn probe(&self) -> Result<(), ClientError> {
        self.bounded("probe", self.inner.probe()).await
    }

    async fn list_dir(&self, dir: &str) -> Result<Vec<DirEntry>, ClientError> {
        self.bounded("list", self.inner.list_dir(dir)).await
    }

    async fn open_path(&self, path: &str) -> Result<ByteStream, ClientError> {
        let stream = self.bounded("open", self.inner.open_path(path)).await?;
        Ok(self.stall_limited(stream))
    }
}

/// When a write last made progress, and whether its client is waiting for the body.
struct Progress {
    base: Instant,
    /// Nanoseconds since `base`.
    last: AtomicU64,
    waiting_on_body: AtomicBool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            base: Instant::now(),
            last: AtomicU64::new(0),
            waiting_on_body: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.fetch_max(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }

    fn waiting_on_body(&self) -> bool {
        self.waiting_on_body.load(Ordering::Relaxed)
    }
}

/// A write's body, reporting to [`Progress`] whenever the client takes a chunk.
struct Watched {
    inner: ByteStream,
    progress: Arc<Progress>,
}

impl Stream for Watched {
    type Item = Result<bytes::Bytes, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.poll_next_unpin(cx);
        let pending = polled.is_pending();
        self.progress
            .waiting_on_body
            .store(pending, Ordering::Relaxed);
        self.progress.touch();
        polled
    }
}

/// A read stream whose every wait for the next chunk is bounded by `timeout`.
struct StallLimited {
    inner: ByteStream,
    timeout: Duration,
    /// Armed while the consumer waits for a chunk.
    sleep: Option<Pin<Box<Sleep>>>,
    /// The error to yield once (then the stream ends).
    error: Option<ClientError>,
}

impl Stream for StallLimited {
    type Item = Result<bytes::Bytes, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.error.is_none() {
            // The deadline has already passed once.
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = this.inner.poll_next_unpin(cx) {
            this.sleep = None;
            return Poll::Ready(item);
        }
        let timeout = this.timeout;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(this.error.take().map(Err)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl fmt::Debug for StallLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StallLimited")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
