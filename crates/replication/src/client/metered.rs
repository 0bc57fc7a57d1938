//! Litestream's replica operation metrics around any client: [`Metered`] wraps a
//! [`ReplicaClient`] and records every operation in [`ReplicaMetrics`], so the backends
//! themselves hold no metrics code (names, labels and buckets: [`super::operation_metrics`]).
//!
//! Operations and their labels, as Litestream counts them: `levels`, `list` and `list_dir`
//! are one `LIST` each; `open` and `open_path` one `GET`, whose bytes are counted as the body
//! streams; `write` one `PUT` of the body's bytes; `delete` one `DELETE` per name (an empty
//! delete is no operation). `probe` is not counted here: an object store counts the requests
//! of its probe itself, as it counts the `HEAD`s of a precise listing. A failure is counted
//! under the `code` its backend's Litestream counterpart reports ([`error_code`]).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use ltx::FileName;

use super::ReplicaMetrics;
use super::operation_metrics::{Op, start};
use super::{ByteStream, ClientError, DirEntry, ListOptions, ReadRange, ReplicaClient};
use crate::level::{Level, LtxFileInfo};
use crate::target::ReplicaKind;

/// A replica client whose every operation is counted (see the module docs).
#[derive(Debug)]
pub(crate) struct Metered {
    inner: Arc<dyn ReplicaClient>,
    metrics: ReplicaMetrics,
}

/// The operation labels.
const LIST: &str = "LIST";
const GET: &str = "GET";
const PUT: &str = "PUT";
const DELETE: &str = "DELETE";

impl Metered {
    /// Wraps `inner`; its operations are recorded in `metrics`.
    pub(crate) fn wrap(
        inner: Arc<dyn ReplicaClient>,
        metrics: ReplicaMetrics,
    ) -> Arc<dyn ReplicaClient> {
        Arc::new(Metered { inner, metrics })
    }

    fn start(&self, operation: &'static str) -> Op<'_> {
        start(Some(&self.metrics), self.inner.kind().as_str(), operation)
    }

    /// Ends `op` with `result`: `n` operations and `bytes` bytes on success.
    fn finish<T>(
        &self,
        op: Op<'_>,
        operation: &'static str,
        result: Result<T, ClientError>,
        n_bytes: impl FnOnce(&T) -> (u64, u64),
    ) -> Result<T, ClientError> {
        match &result {
            Ok(v) => {
                let (n, bytes) = n_bytes(v);
                op.ok(n, bytes);
            }
            Err(e) => op.err(error_code(self.inner.kind(), operation, e)),
        }
        result
    }

    /// Counts the bytes of an opened body as they stream.
    fn counted(&self, stream: ByteStream) -> ByteStream {
        let metrics = self.metrics.clone();
        let replica_type = self.inner.kind().as_str();
        stream
            .inspect_ok(move |chunk| metrics.add_bytes(replica_type, GET, chunk.len() as u64))
            .boxed()
    }
}

/// The `code` label of a failed operation: what Litestream's client for the same backend
/// reports. The file backend knows `NotFound` (reads) and `IO`; object stores report the
/// store's error kind, `InvalidRange`, and `PutFailed` for every failed write.
fn error_code(kind: ReplicaKind, operation: &'static str, e: &ClientError) -> &'static str {
    if kind == ReplicaKind::File {
        return if operation == GET && e.is_not_found() {
            "NotFound"
        } else {
            "IO"
        };
    }
    match e {
        _ if operation == PUT => "PutFailed",
        ClientError::NotFound { .. } => "NotFound",
        ClientError::BadRange { .. } => "InvalidRange",
        ClientError::Backend { code, .. } => code,
        _ => "Unknown",
    }
}

#[async_trait]
impl ReplicaClient for Metered {
    fn kind(&self) -> ReplicaKind {
        self.inner.kind()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn local_path(&self, level: Level, name: FileName) -> Option<PathBuf> {
        self.inner.local_path(level, name)
    }

    async fn levels(&self) -> Result<Vec<Level>, ClientError> {
        let op = self.start(LIST);
        let result = self.inner.levels().await;
        self.finish(op, LIST, result, |_| (1, 0))
    }

    async fn list(
        &self,
        level: Level,
        options: ListOptions,
    ) -> Result<Vec<LtxFileInfo>, ClientError> {
        let op = self.start(LIST);
        let result = self.inner.list(level, options).await;
        self.finish(op, LIST, result, |_| (1, 0))
    }

    async fn open(
        &self,
        level: Level,
        name: FileName,
        range: ReadRange,
    ) -> Result<ByteStream, ClientError> {
        let op = self.start(GET);
        let result = self.inner.open(level, name, range).await;
        let stream = self.finish(op, GET, result, |_| (1, 0))?;
        Ok(self.counted(stream))
    }

    async fn write(
        &self,
        level: Level,
        name: FileName,
        body: ByteStream,
        created_at: DateTime<Utc>,
    ) -> Result<LtxFileInfo, ClientError> {
        let op = self.start(PUT);
        let result = self.inner.write(level, name, body, created_at).await;
        self.finish(op, PUT, result, |info| (1, info.size))
    }

    async fn create_bytes(
        &self,
        level: Level,
        name: FileName,
        data: Bytes,
        created_at: DateTime<Utc>,
    ) -> Result<LtxFileInfo, ClientError> {
        let op = self.start(PUT);
        let result = self.inner.create_bytes(level, name, data, created_at).await;
        self.finish(op, PUT, result, |info| (1, info.size))
    }

    async fn delete(&self, level: Level, names: &[FileName]) -> Result<(), ClientError> {
        if names.is_empty() {
            return Ok(());
        }
        let op = self.start(DELETE);
        let result = self.inner.delete(level, names).await;
        self.finish(op, DELETE, result, |_| (names.len() as u64, 0))
    }

    async fn probe(&self) -> Result<(), ClientError> {
        self.inner.probe().await
    }

    async fn list_dir(&self, dir: &str) -> Result<Vec<DirEntry>, ClientError> {
        let op = self.start(LIST);
        let result = self.inner.list_dir(dir).await;
        self.finish(op, LIST, result, |_| (1, 0))
    }

    async fn open_path(&self, path: &str) -> Result<ByteStream, ClientError> {
        let op = self.start(GET);
        let result = self.inner.open_path(path).await;
        let stream = self.finish(op, GET, result, |_| (1, 0))?;
        Ok(self.counted(stream))
    }
}
