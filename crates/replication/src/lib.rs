//! Embedded, Litestream-compatible replication of one SQLite database.
//!
//! Owns everything between a database file and its replica: the Litestream YAML config,
//! the WAL reader, replica clients (file, S3, Azure Blob Storage) behind one trait, the
//! replicator (WAL → L0 LTX files → upload, checkpoints, compaction, snapshots, retention),
//! start-up (restore or lineage check) and restore. The design is in `docs/replication.md`;
//! the bytes it writes in `docs/ltx-and-replica-format.md`.
//!
//! # API
//! Everything a server or a tool needs is re-exported here: the replicator
//! ([`Replicator`], [`ReplicatorOptions`], [`ReplicationHandle`], [`CommitNotice`]), the
//! config ([`Config`]), who checkpoints ([`Checkpointer`]), replica addresses
//! ([`ReplicaTarget`], [`parse_replica_url`]) and clients ([`ReplicaClient`],
//! [`open_client`]); [`restore`] (also `sqlite-rest restore`), [`v03`] (Litestream 0.3
//! backups) and [`wal`] (a WAL reader needing no SQLite connection) are public modules.
//! Every other module is private.
//!
//! # Layout
//! The foundation:
//! - `litestream_config/`: Litestream's YAML config, its defaults and validation, finding the
//!   served database's entry; `url.rs`: replica URLs; `target.rs`: [`ReplicaTarget`], the one
//!   resolved form of a replica that both produce.
//! - `wal.rs`: committed transactions out of a WAL file.
//! - `client/`: the [`ReplicaClient`] trait (`mod.rs`) and its backends (`file.rs`,
//!   `object.rs` for S3, `abs.rs` for Azure); the wrappers every opened client goes through:
//!   `deadline.rs` (every operation has a deadline: 30 s without progress,
//!   `SQLITEREST_REPLICATION_OPERATION_TIMEOUT`, so a hung replica fails like one that
//!   answers with errors) and `metered.rs` (Litestream's operation metrics, defined in
//!   `operation_metrics.rs`).
//! - `level.rs`: replica levels and listing entries ([`LtxFileInfo`]); `layout.rs`: what a
//!   replica path holds (LTX files, a Litestream 0.3 backup, known incidental files), anything
//!   else refused by name.
//! - `restore/`: planned (`plan.rs`: Litestream's restore plan over listings), parallel,
//!   streaming restores; `replica_readers.rs`: many replica files as blocking readers;
//!   `upload_pipe.rs`: a blocking writer as an upload stream; `v03/`: Litestream 0.3 backups.
//!
//! The engine:
//! - `replicator/`: [`Replicator`] (start-up, the sync / upload / maintenance / probe /
//!   watchdog tasks, shutdown) and the owner's [`ReplicationHandle`]; its `mod.rs` lists its
//!   files.
//! - `lineage.rs`: before serving, restore a missing database or check that the local one
//!   shares the replica's history ([`Divergence`] otherwise); `adoption.rs`: adopting the
//!   replica's position safely against other writers.
//! - `checkpoint.rs`: who checkpoints the database, when, and in which mode.
//! - `db_attachment.rs`: the replicator's connections to the database (read lock, pin,
//!   barrier, checkpoints); `meta.rs`: the local metadata directory
//!   (`.<db>-litestream/ltx/0`).
//! - `sync.rs`: WAL → L0 files with Litestream's verify table, and checkpointing;
//!   `snapshot.rs`: database images and level-9 snapshots.
//! - `progress.rs`: positions, commit → TXID, lag; `health.rs`: retries, the retry window,
//!   fatal errors; `db_metrics.rs`: the `litestream_*` and `sqlite_rest_replication_*`
//!   families.
//!
//! # Using it from a server
//! ```no_run
//! # async fn f(config: replication::Config, registry: prometheus::Registry) -> Result<(), Box<dyn std::error::Error>> {
//! use replication::{CommitNotice, Replicator, ReplicatorOptions};
//! let mut options = ReplicatorOptions::new(config, "/data/app.db")?;
//! options.registry = Some(registry);
//! // Before the server opens the database: restore / lineage check, attach, first sync.
//! let replicator = Replicator::start(options).await?;
//! let handle = replicator.handle();
//! // After every commit of the server's writer (cheap, never blocks):
//! handle.notify_commit(CommitNotice { seq: 1 });
//! // On SIGTERM, after the writer has drained and the server's connections are closed:
//! replicator.shutdown().await?;
//! # Ok(()) }
//! ```
//! Meanwhile `replicator.failed()` resolves if replication fails for good (the server then
//! stops and exits non-zero), and `handle.status()` feeds `/health`.
//!
//! # Configuration and replica URLs
//! `sqlite-rest serve --replication-enabled --replication-config litestream.yml` reads
//! Litestream 0.5's own config file. Supported, with Litestream's defaults:
//! - top level: `levels`, `snapshot.interval/retention`, `l0-retention` (0 = off),
//!   `l0-retention-check-interval`, `retention.enabled`, `validation.interval`,
//!   `verify-compaction`, `shutdown-sync-timeout/interval`, and any replica setting as a
//!   default for every replica; `addr` and `logging` are accepted and have no effect
//!   (sqlite-rest serves its own metrics and logs);
//! - `dbs[]` with `path:` (`~/` and `sqlite://` accepted): `meta-path`, `monitor-interval`,
//!   `checkpoint-interval`, `busy-timeout`, `min-checkpoint-page-count`, `truncate-page-n`,
//!   `max-sync-wal-bytes`, `restore-if-db-not-exists`, `snapshot`, and exactly one `replica:`
//!   (or the deprecated one-element `replicas:`);
//! - replicas: `type: file` (`path:` or `url: file:///abs/path`), `type: s3` (`bucket`,
//!   `path`, `region`, `endpoint`, `force-path-style`, `skip-verify`, `access-key-id`,
//!   `secret-access-key`, `sign-payload`, `storage-class`, `part-size`, `concurrency`,
//!   `sse-customer-*`, `sse-kms-key-id`, or `url: s3://…`) and `type: abs` (Azure Blob
//!   Storage: `account-name`, `account-key`, `bucket` (the container), `path`, `endpoint`, or
//!   `url: abs://[account@]container/path`); and `sync-interval`, `max-sync-ltx-files`,
//!   `auto-recover`.
//!
//! `$VAR`, `${VAR}` and `$PID` are expanded in the whole file as Go's `os.Expand` does
//! (unset → empty; `$` has no escape: disable expansion with
//! [`LoadOptions::expand_env`] for secrets containing `$`).
//!
//! Stricter than Litestream: an unknown key is an error naming its path
//! (`dbs[0].replica.retention-interval`, with a hint or a "did you mean"), a replica URL with
//! an unknown query parameter is an error, and features sqlite-rest does not implement
//! (gs/sftp/webdav/nats/oss replicas, `exec`, `socket`, `mcp-addr`, `heartbeat-url`,
//! `dir:` databases, age encryption) are rejected by name rather than ignored. An S3 replica
//! needs a non-empty key prefix; an Azure `path:` must not start with `/`. Credentials come
//! from the config keys, else the `AWS_*` variables (then `LITESTREAM_ACCESS_KEY_ID`/`LITESTREAM_SECRET_ACCESS_KEY`, then web
//! identity/ECS/IMDS); shared-profile files (`~/.aws/credentials`) are not read.
//!
//! Replica URLs (for `sqlite-rest restore` and `url:` keys): `file:///abs/path`,
//! `abs://[account@]container/path`, and
//! `s3://bucket/prefix?endpoint=host:port&region=R&forcePathStyle=…&skipVerify=…` plus
//! `signPayload`, `requireContentMD5`, `storageClass`, `partSize`, `concurrency`,
//! `sseCustomerAlgorithm`, `sseCustomerKey`, `sseKmsKeyId` (camelCase or hyphenated). An
//! endpoint without a scheme gets `http://` for localhost and private addresses, `https://`
//! otherwise, and turns on path-style addressing. Hosts such as
//! `bucket.s3.<region>.amazonaws.com`, `bucket.host:port` (MinIO), DigitalOcean, Backblaze,
//! Filebase and Scaleway are recognised.
#![warn(unreachable_pub)]

mod adoption;
mod checkpoint;
mod client;
mod db_attachment;
mod db_metrics;
mod health;
mod layout;
mod level;
mod lineage;
mod litestream_config;
mod meta;
mod progress;
mod replica_readers;
mod replicator;
pub mod restore;
mod snapshot;
mod sync;
mod target;
mod upload_pipe;
mod url;
pub mod v03;
pub mod wal;

pub use checkpoint::Checkpointer;
pub use client::{
    ByteStream, ClientError, ClientOptions, DirEntry, EntryKind, ListOptions, NetworkOptions,
    ReadRange, ReplicaClient, ReplicaMetrics, open_client,
};
pub use health::{Component, Failure, FatalError};
pub use level::{Level, LtxFileInfo};
pub use lineage::{Divergence, DivergenceKind, StartAction, StartupError};
pub use litestream_config::{
    Config, ConfigError, DbConfig, DbSource, LoadOptions, LoggingConfig, ReplicaConfig,
    SnapshotConfig, default_meta_path,
};
pub use meta::MetaDir;
pub use progress::{CommitNotice, Positions};
pub use replicator::{
    ReplicationHandle, Replicator, ReplicatorOptions, ShutdownError, ShutdownReport, StartError,
    Status, WrapClient,
};
pub use target::{AbsTarget, FileTarget, ReplicaKind, ReplicaTarget, S3Target, Secret};
pub use url::{UrlError, is_url, parse_replica_url};

/// Not API: the engine's parts that this crate's integration tests and benchmarks drive
/// directly (the syncer, the attachment, the start-up decision, config units, the file
/// client). Anything else should use the re-exports above.
#[doc(hidden)]
pub mod internals {
    pub use crate::checkpoint::Policy;
    pub use crate::client::file::FileClient;
    pub use crate::db_attachment::{CheckpointMode, Database};
    pub use crate::layout::{InspectError, inspect};
    pub use crate::lineage::{PrepareOptions, prepare};
    pub use crate::litestream_config::expand::expand_with;
    pub use crate::litestream_config::units::{ByteSize, GoDuration};
    pub use crate::sync::{SyncHook, SyncPoint, SyncSettings, Syncer, read_position};
    pub use crate::url::{ensure_endpoint_scheme, is_local_endpoint};
}
