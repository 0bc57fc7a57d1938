//! Embedded, Litestream-compatible replication of one SQLite database.
//!
//! Owns everything between a database file and its replica: the Litestream YAML config,
//! the WAL reader, replica clients (file, S3) behind one trait, the replicator (WAL → L0 LTX
//! files → upload), compaction and retention, and restore.
//!
//! # Modules (the foundation the replicator and restore build on)
//! - [`litestream_config`]: Litestream's YAML config with its defaults and validation; finding the
//!   served database's entry ([`litestream_config::Config::find_db`]).
//! - [`url`]: replica URLs (`file:///…`, `s3://bucket/prefix?endpoint=…`).
//! - [`target`]: [`ReplicaTarget`], the one resolved form of a replica that both the config
//!   and a URL produce.
//! - [`wal`]: reading committed transactions out of a WAL file (no SQLite connection).
//! - [`client`]: the [`ReplicaClient`] trait and its file and S3 backends, with Litestream's
//!   operation metrics; every operation has a deadline ([`client::deadline`]: 30 s without
//!   progress, `SQLITEREST_REPLICATION_OPERATION_TIMEOUT`), so a hung replica fails like one
//!   that answers with errors.
//! - [`level`]: replica levels and listing entries ([`LtxFileInfo`]).
//! - [`restore::plan`](mod@restore::plan): the restore plan over listings.
//! - [`layout`]: what a replica path holds (LTX files, a Litestream 0.3 backup, Litestream's
//!   and our incidental files); anything else is refused by name.
//! - [`v03`]: Litestream 0.3 backups (`generations/`): listing, plan and restore, so users
//!   of the Go sqlite-rest's Litestream 0.3 sidecar upgrade without losing their backup.
//!
//! # Modules (the engine)
//! - [`replicator`]: [`Replicator`] (start-up, the sync / upload / maintenance / probe /
//!   watchdog tasks, shutdown) and the owner's [`ReplicationHandle`].
//! - [`lineage`]: restore before serving, the lineage check, [`Divergence`].
//! - [`checkpoint`]: who checkpoints the database (the replicator, or SQLite's automatic
//!   checkpoint without replication), when, and in which mode.
//! - [`db_attachment`]: the replicator's connections to the database (read lock, pin, barrier,
//!   checkpoints).
//! - [`meta`]: the local metadata directory (`.<db>-litestream/ltx/0`).
//! - [`sync`]: WAL → L0 files with Litestream's verify table, and checkpointing.
//! - [`snapshot`]: database images and level-9 snapshots.
//! - [`replicator::maintenance`]: compaction, snapshots and retention on Litestream's schedules.
//! - [`restore`]: planned, parallel, streaming restores (also `sqlite-rest restore`).
//! - [`replica_readers`] / [`upload_pipe`]: many replica files as blocking readers; a blocking writer as an
//!   upload stream.
//! - [`progress`]: positions, commit → TXID, lag; [`health`]: retries, the retry window, fatal
//!   errors; [`db_metrics`]: the `litestream_*` and `sqlite_rest_replication_*` families.
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
//! // A synchronous-acknowledgement mode would wait before answering:
//! handle.wait_commit_replicated(1).await?;
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
//! - replicas: `type: file` (`path:` or `url: file:///abs/path`) and `type: s3` (`bucket`,
//!   `path`, `region`, `endpoint`, `force-path-style`, `skip-verify`, `access-key-id`,
//!   `secret-access-key`, `sign-payload`, `storage-class`, `part-size`, `concurrency`,
//!   `sse-customer-*`, `sse-kms-key-id`, or `url: s3://…`), `sync-interval`,
//!   `max-sync-ltx-files`, `auto-recover`.
//!
//! `$VAR`, `${VAR}` and `$PID` are expanded in the whole file as Go's `os.Expand` does
//! (unset → empty; `$` has no escape: disable expansion with
//! [`litestream_config::LoadOptions::expand_env`] for secrets containing `$`).
//!
//! Stricter than Litestream: an unknown key is an error naming its path
//! (`dbs[0].replica.retention-interval`, with a hint or a "did you mean"), a replica URL with
//! an unknown query parameter is an error, and features sqlite-rest does not implement
//! (gs/abs/sftp/webdav/nats/oss replicas, `exec`, `socket`, `mcp-addr`, `heartbeat-url`,
//! `dir:` databases, age encryption) are rejected by name rather than ignored. An S3 replica
//! needs a non-empty key prefix. Credentials come from the config keys, else the `AWS_*`
//! variables (then `LITESTREAM_ACCESS_KEY_ID`/`LITESTREAM_SECRET_ACCESS_KEY`, then web
//! identity/ECS/IMDS); shared-profile files (`~/.aws/credentials`) are not read.
//!
//! Replica URLs (for `sqlite-rest restore` and `url:` keys): `file:///abs/path`;
//! `s3://bucket/prefix?endpoint=host:port&region=R&forcePathStyle=…&skipVerify=…` plus
//! `signPayload`, `requireContentMD5`, `storageClass`, `partSize`, `concurrency`,
//! `sseCustomerAlgorithm`, `sseCustomerKey`, `sseKmsKeyId` (camelCase or hyphenated). An
//! endpoint without a scheme gets `http://` for localhost and private addresses, `https://`
//! otherwise, and turns on path-style addressing. Hosts such as
//! `bucket.s3.<region>.amazonaws.com`, `bucket.host:port` (MinIO), DigitalOcean, Backblaze,
//! Filebase and Scaleway are recognised.

pub mod adoption;
pub mod checkpoint;
pub mod client;
pub mod db_attachment;
pub mod db_metrics;
pub mod health;
pub mod layout;
pub mod level;
pub mod lineage;
pub mod litestream_config;
pub mod meta;
pub mod progress;
pub mod replica_readers;
pub mod replicator;
pub mod restore;
pub mod snapshot;
pub mod sync;
pub mod target;
pub mod upload_pipe;
pub mod url;
pub mod v03;
pub mod wal;

pub use client::{ReplicaClient, ReplicaMetrics, open_client};
pub use health::{Component, FatalError};
pub use level::{Level, LtxFileInfo};
pub use lineage::{Divergence, StartAction};
pub use litestream_config::Config;
pub use progress::{CommitNotice, Positions};
pub use replicator::{
    ReplicationHandle, Replicator, ReplicatorOptions, ShutdownError, ShutdownReport, StartError,
    Status,
};
pub use target::ReplicaTarget;
