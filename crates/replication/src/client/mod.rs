//! Replica clients: one async trait ([`ReplicaClient`]) over the places a replica can live.
//!
//! A client knows a backend's object naming (`docs/ltx-and-replica-format.md#replica-layout`: `<root>/ltx/<level>/<name>` for
//! file and Azure, `<prefix>/<%04x level>/<name>` for S3) and how it keeps each file's CreatedAt
//! (`docs/ltx-and-replica-format.md#file-timestamps`), and nothing about LTX contents: it moves named byte streams. The replicator,
//! compaction, retention and restore all go through it.
//!
//! Backends: [`file::FileClient`] (a local directory, written atomically with fsyncs and the
//! mtime set to the LTX header timestamp) and [`object::ObjectClient`] (S3 and
//! S3-compatible services, and Azure Blob Storage ([`abs`]), through the `object_store`
//! crate, with the `litestream-timestamp` / `litestreamtimestamp` metadata). [`open_client`] builds the right one from a [`ReplicaTarget`]. Every operation
//! is counted in Litestream's `litestream_replica_operation_*` metrics ([`ReplicaMetrics`]) by one
//! wrapper around whichever backend (`metered.rs`).
//!
//! The trait is object-safe (`Arc<dyn ReplicaClient>`), so a test can wrap a real client to
//! inject faults.

pub(crate) mod abs;
pub(crate) mod deadline;
pub(crate) mod file;
mod metered;
pub(crate) mod object;
pub(crate) mod operation_metrics;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use ltx::{FileName, TxId};

use crate::level::{Level, LtxFileInfo};
use crate::target::{ReplicaKind, ReplicaTarget, UnsupportedBackend};
pub use operation_metrics::ReplicaMetrics;

/// A stream of file bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes, ClientError>>;

/// Errors from a replica client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The file does not exist (reading or opening).
    #[error("{replica}: {what} not found")]
    NotFound { replica: String, what: String },
    /// The replica cannot be reached or refused the request (network, credentials,
    /// permissions, missing bucket); the message says which.
    #[error("{replica}: {operation} failed: {message}")]
    Backend {
        replica: String,
        operation: &'static str,
        /// The `code` label of the operation metrics: the store's error kind (`NotFound`,
        /// `AccessDenied`, `Unauthenticated`, …, `Unknown`), as Litestream reports it.
        code: &'static str,
        message: String,
    },
    #[error("{replica}: {operation} {path}: {source}")]
    Io {
        replica: String,
        operation: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{replica}: probe did not finish within {timeout:?} (replica unreachable?)")]
    ProbeTimeout { replica: String, timeout: Duration },
    /// An operation made no progress for the operation timeout (`deadline`).
    #[error("{replica}: {operation} made no progress for {timeout:?} (replica hung?)")]
    Timeout {
        replica: String,
        operation: &'static str,
        timeout: Duration,
    },
    #[error("invalid replica configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Unsupported(#[from] UnsupportedBackend),
    /// A conditional create ([`ReplicaClient::create_bytes`]) found a file of that name.
    #[error("{replica}: {what} already exists")]
    AlreadyExists { replica: String, what: String },
    #[error("{replica}: invalid byte range {range:?} for {name}")]
    BadRange {
        replica: String,
        name: String,
        range: ReadRange,
    },
}

impl ClientError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::NotFound { .. })
    }

    /// How long the failed operation had already been stuck when it failed: its timeout for
    /// a hang, zero for an error the replica answered. The retry window counts a hang from
    /// its start (`crate::health::Health::error_stalled`).
    pub fn stalled(&self) -> Duration {
        match self {
            ClientError::Timeout { timeout, .. } | ClientError::ProbeTimeout { timeout, .. } => {
                *timeout
            }
            _ => Duration::ZERO,
        }
    }
}

/// Which bytes of a file to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadRange {
    /// The whole file.
    Full,
    /// From an offset to the end (resuming a read).
    From(u64),
    /// `start..end` (end exclusive).
    Bounded { start: u64, end: u64 },
    /// The last `n` bytes (the page index and trailer of an LTX file).
    Suffix(u64),
}

/// What a listing should return.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only files whose MinTXID is at least this.
    pub seek: Option<TxId>,
    /// Read each file's exact creation time where the backend keeps it apart from the
    /// listing (S3: one HEAD per file for `litestream-timestamp`, bounded in parallel).
    /// Only timestamp restores need this; plain listings use the cheap listing time.
    pub precise_timestamps: bool,
}

/// What a [`ReplicaClient::list_dir`] entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    /// A directory (file replicas) or a common key prefix (object stores).
    Dir,
}

/// One entry directly under a directory of the replica, whatever its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The last path segment (lossily decoded when it is not UTF-8).
    pub name: String,
    pub kind: EntryKind,
    /// Bytes (0 for directories).
    pub size: u64,
    /// mtime or LastModified (`None` for object-store prefixes, which have none).
    pub created_at: Option<DateTime<Utc>>,
}

/// The replica operations the replicator, retention and restore need.
#[async_trait]
pub trait ReplicaClient: Send + Sync + fmt::Debug {
    /// The backend (`replica_type` metric label).
    fn kind(&self) -> ReplicaKind;

    /// Where the replica is, for logs and errors (no secrets).
    fn describe(&self) -> String;

    /// Where the file is on the local file system, when the replica is a local directory
    /// (restore and compaction then read it directly instead of through [`ReplicaClient::open`]).
    fn local_path(&self, _level: Level, _name: FileName) -> Option<PathBuf> {
        None
    }

    /// The levels that hold at least one entry (ascending).
    async fn levels(&self) -> Result<Vec<Level>, ClientError>;

    /// The LTX files of one level, sorted by (MinTXID, MaxTXID). Names that are not exactly
    /// `<hex16>-<hex16>.ltx` (temp files, other objects) are skipped.
    async fn list(
        &self,
        level: Level,
        options: ListOptions,
    ) -> Result<Vec<LtxFileInfo>, ClientError>;

    /// Streams (part of) one file.
    async fn open(
        &self,
        level: Level,
        name: FileName,
        range: ReadRange,
    ) -> Result<ByteStream, ClientError>;

    /// Writes one file atomically (readers see all of it or nothing) and records `created_at`
    /// (the LTX header timestamp) the way the backend keeps CreatedAt.
    async fn write(
        &self,
        level: Level,
        name: FileName,
        body: ByteStream,
        created_at: DateTime<Utc>,
    ) -> Result<LtxFileInfo, ClientError>;

    /// Deletes files of one level; files already gone are not an error.
    async fn delete(&self, level: Level, names: &[FileName]) -> Result<(), ClientError>;

    /// Actively checks that the replica is reachable and writable: writes, lists and deletes
    /// a small object outside the level directories. Fails fast (within the client's probe
    /// timeout) with a message naming the cause.
    async fn probe(&self) -> Result<(), ClientError>;

    /// Every entry directly under `dir`, a `/`-separated path relative to the replica root
    /// (`""` is the root itself), sorted by name; none when `dir` does not exist. This is how
    /// start-up and restore see what is not an LTX file: Litestream 0.3 backups
    /// (`generations/…`) and foreign content.
    async fn list_dir(&self, dir: &str) -> Result<Vec<DirEntry>, ClientError>;

    /// Streams a whole file given by its `/`-separated path relative to the replica root (a
    /// Litestream 0.3 snapshot or WAL segment).
    async fn open_path(&self, path: &str) -> Result<ByteStream, ClientError>;

    /// Reads (part of) one file into memory.
    async fn read(
        &self,
        level: Level,
        name: FileName,
        range: ReadRange,
    ) -> Result<Bytes, ClientError> {
        let mut stream = self.open(level, name, range).await?;
        let mut buf = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk?);
        }
        Ok(buf.freeze())
    }

    /// Writes a file held in memory.
    async fn write_bytes(
        &self,
        level: Level,
        name: FileName,
        data: Bytes,
        created_at: DateTime<Utc>,
    ) -> Result<LtxFileInfo, ClientError> {
        let body = futures::stream::once(async move { Ok(data) }).boxed();
        self.write(level, name, body, created_at).await
    }

    /// Writes a file held in memory only if no file of that name exists, as one conditional
    /// request ([`ClientError::AlreadyExists`] when one does): S3 and Azure send
    /// `If-None-Match: *`, a file replica links the finished file into place (a link never
    /// replaces a file). This is what keeps a second writer of the same replica path from
    /// replacing a level-0 file another one wrote (`docs/replication.md#two-primaries-on-one-replica-path`).
    /// The default, for wrappers that do not forward it, is an ordinary write.
    async fn create_bytes(
        &self,
        level: Level,
        name: FileName,
        data: Bytes,
        created_at: DateTime<Utc>,
    ) -> Result<LtxFileInfo, ClientError> {
        self.write_bytes(level, name, data, created_at).await
    }

    /// Every LTX file of every level (levels ascending, files as [`ReplicaClient::list`]).
    async fn list_all(&self, options: ListOptions) -> Result<Vec<LtxFileInfo>, ClientError> {
        let mut out = Vec::new();
        for level in self.levels().await? {
            out.extend(self.list(level, options).await?);
        }
        Ok(out)
    }
}

/// Network and retry settings for object-store clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkOptions {
    /// TCP/TLS connect timeout (default 5 s).
    pub connect_timeout: Duration,
    /// Longest pause while reading a response body (default 30 s). Whole requests have no
    /// overall timeout, so large snapshots can stream.
    pub read_timeout: Duration,
    /// Retries of one request inside the client (default 3; the replicator retries
    /// operations on top with its own backoff).
    pub max_retries: usize,
    /// Longest time one request is retried for (default 30 s).
    pub retry_timeout: Duration,
    /// Upper bound for [`ReplicaClient::probe`] (default 10 s).
    pub probe_timeout: Duration,
    /// Longest time any replica operation may make no progress (`deadline`; default
    /// `deadline::DEFAULT_OPERATION_TIMEOUT`).
    pub operation_timeout: Duration,
    /// Parallel HEAD requests for precise timestamps (default 50, as Litestream).
    pub metadata_concurrency: usize,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(10),
            operation_timeout: deadline::DEFAULT_OPERATION_TIMEOUT,
            metadata_concurrency: 50,
        }
    }
}

impl NetworkOptions {
    /// The defaults, with the operation timeout from
    /// `deadline::OPERATION_TIMEOUT_ENV` when it is set.
    pub fn from_env() -> Result<NetworkOptions, String> {
        Ok(NetworkOptions {
            operation_timeout: deadline::operation_timeout_from_env()?,
            ..NetworkOptions::default()
        })
    }
}

/// How to build a client.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Where operation metrics go; `None` records nothing.
    pub metrics: Option<ReplicaMetrics>,
    /// The database file, whose directory and file modes (and owner) new replica
    /// directories and files copy (file replicas).
    pub db_path: Option<PathBuf>,
    pub network: NetworkOptions,
}

/// Builds the client for a replica target, every operation bounded by
/// `options.network.operation_timeout` (`deadline::Deadline`). For S3 without a region or
/// endpoint this looks up the bucket's region (one request), as Litestream does.
pub async fn open_client(
    target: &ReplicaTarget,
    options: &ClientOptions,
) -> Result<Arc<dyn ReplicaClient>, ClientError> {
    let client = open_backend(target, options).await?;
    Ok(deadline::Deadline::wrap(
        client,
        options.network.operation_timeout,
    ))
}

/// [`open_client`] without the deadlines: the backend's own client (to be wrapped, then
/// bounded with [`deadline::Deadline::wrap`]).
pub(crate) async fn open_backend(
    target: &ReplicaTarget,
    options: &ClientOptions,
) -> Result<Arc<dyn ReplicaClient>, ClientError> {
    let metrics = options.metrics.clone();
    let client: Arc<dyn ReplicaClient> = match target {
        ReplicaTarget::File(f) => {
            let mut client = file::FileClient::new(&f.path);
            if let Some(db) = &options.db_path {
                client = client.with_modes_from(db);
            }
            Arc::new(client)
        }
        ReplicaTarget::S3(s3) => {
            Arc::new(object::ObjectClient::s3(s3, &options.network, metrics.clone()).await?)
        }
        ReplicaTarget::Abs(abs) => Arc::new(object::ObjectClient::abs(
            abs,
            &options.network,
            metrics.clone(),
        )?),
        ReplicaTarget::Unsupported { kind, location } => {
            return Err(UnsupportedBackend {
                kind: *kind,
                location: location.clone(),
            }
            .into());
        }
    };
    Ok(match metrics {
        Some(m) => metered::Metered::wrap(client, m),
        None => client,
    })
}

/// The segments of a `/`-separated path relative to a replica root; `..`, `.` and
/// backslashes are refused (callers build these paths from names they parsed).
pub(crate) fn relative_parts(rel: &str) -> Result<Vec<&str>, ClientError> {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    if parts
        .iter()
        .any(|p| *p == "." || *p == ".." || p.contains('\\'))
    {
        return Err(ClientError::Config(format!(
            "invalid path inside a replica: {rel:?}"
        )));
    }
    Ok(parts)
}

/// Keeps only files with MinTXID ≥ seek, sorted by name.
pub(crate) fn finish_listing(mut files: Vec<LtxFileInfo>, seek: Option<TxId>) -> Vec<LtxFileInfo> {
    if let Some(seek) = seek {
        files.retain(|f| f.name.min >= seek);
    }
    files.sort_by_key(|f| f.name);
    files
}

/// A write's body, counting the bytes taken from it.
pub(crate) struct WriteBody {
    body: ByteStream,
    taken: u64,
}

impl WriteBody {
    pub(crate) fn new(body: ByteStream) -> WriteBody {
        WriteBody { body, taken: 0 }
    }

    /// The next chunk, `None` at the end.
    pub(crate) async fn chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        let chunk = self.body.next().await.transpose()?;
        if let Some(c) = &chunk {
            self.taken += c.len() as u64;
        }
        Ok(chunk)
    }

    /// The bytes taken so far.
    pub(crate) fn taken(&self) -> u64 {
        self.taken
    }
}
