//! The replicator: one database replicated to one replica, for as long as the server runs.
//!
//! [`Replicator::start`] runs before the server opens the database: it connects to the
//! replica and probes it, restores or lineage-checks the database ([`crate::lineage`]),
//! attaches to it ([`crate::db_attachment`]) and writes the first L0 file. Then these tasks run beside
//! the server:
//!
//! - **sync** (blocking work on a blocking thread): WAL → L0 files ([`crate::sync`]), woken
//!   at once by [`ReplicationHandle::notify_commit`] from the server's writer and every
//!   `monitor-interval` for writes by other processes. Commits that land during a sync go
//!   into the next one (group commit); syncs never wait for uploads;
//! - **upload**: one upload in flight; each sends every local L0 file not yet on the
//!   replica as one object (consecutive files merged into one `<min>-<max>` L0 file), at
//!   most every `sync-interval` when the configuration sets one;
//! - **maintenance**: compaction, snapshots and retention ([`maintenance`]);
//! - **probe**: an active check of the replica every [`PROBE_INTERVAL`] while the positions
//!   moved since its last success (every second while anything fails), none while idle
//!   (`probe.rs`);
//! - **watchdog**: turns a failure that outlasts the retry window into a fatal error
//!   ([`crate::health`]), which [`Replicator::failed`] reports to the owner.
//!
//! [`Replicator::shutdown`] runs after the server has stopped writing: a final sync, then
//! uploads until the replica holds everything, bounded by `shutdown-sync-timeout`.
//!
//! The owner's handle ([`ReplicationHandle`]) is cheap to clone; it notifies commits, reports
//! positions and lag, and waits for a commit to reach a local L0 file or the replica (every
//! write of the API waits for the first, synchronous writes for the second).
//!
//! # Files
//! - `options.rs`: [`ReplicatorOptions`]; `error.rs`: [`StartError`], [`ShutdownError`];
//! - `start.rs`: [`Replicator::start`]; `adopt.rs`: downloading and re-heading the replica's
//!   newest L0 file when start-up adopts its position;
//! - `running.rs`: [`Replicator`] itself; `shutdown.rs`: [`Replicator::shutdown`];
//! - `shared.rs`: the state every task and handle shares; `handle.rs`: [`ReplicationHandle`]
//!   and [`Status`];
//! - one file per task: `sync_task.rs`, `upload.rs`,
//!   `maintenance.rs`, `probe.rs`, and `supervise.rs` (panicking tasks and the watchdog);
//! - `own_files.rs`: the level-0 files we wrote, and the fatal error when another writer's
//!   show up (two primaries on one replica path).

mod adopt;
mod error;
mod handle;
pub(crate) mod maintenance;
mod options;
mod own_files;
mod pacing;
mod probe;
mod running;
mod shared;
mod shutdown;
mod start;
mod supervise;
mod sync_task;
mod upload;

pub use error::{ShutdownError, StartError};
pub use handle::{ReplicationHandle, Status};
pub use options::{ReplicatorOptions, WrapClient};
pub use running::Replicator;
pub use shutdown::ShutdownReport;
