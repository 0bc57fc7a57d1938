//! sqlite-rest: a PostgREST-compatible REST API over a SQLite database, kept durable by
//! streaming Litestream-compatible replicas. The PostgREST dialect itself (URL → SQL → JSON)
//! lives in the `dialect` crate, replication in the `replication` crate; this crate is the
//! binary around them: command line, HTTP, authentication, connections and the writer, and
//! the wiring of replication into start-up and shutdown.
//!
//! # Layout
//!
//! The binary (`main.rs`) parses the command line ([`cli`]) and runs it with [`entry`], which
//! programs that run the server as a library share (the torture harness installs
//! [`entry::ServeHooks`]); every other module is private.
//!
//! - `entry.rs`: one command run on its own runtime, with a bounded shutdown.
//! - `cli.rs`: the flags, compatible with the Go sqlite-rest; `serve_config.rs`:
//!   `ServeConfig`, the flags resolved and validated once.
//! - `serve.rs`: the serve sequence (replication, database, writer, servers) and
//!   its shutdown; `shutdown.rs`: the one shutdown signal every long-running part holds.
//! - `database/`: opening hardened connections (`open.rs`, `authorizer.rs`, `deadline.rs`),
//!   the read pool (`read_pool.rs`) and streamed bodies (`stream.rs`), the schema holder
//!   (`schema_holder.rs`) and the single writer (`writer.rs`).
//! - `http/`: the REST API — connections (`conn.rs`), limits (`limits.rs`), the handler
//!   (`api.rs`), CORS (`cors.rs`), reads (`read.rs`), writes (`write.rs`), when writes are
//!   answered and which replication position responses carry (`durability.rs`) and error
//!   responses (`respond.rs`).
//! - `rpc_functions.rs`: the functions of `--rpc-dir` (loaded, checked, reloaded on SIGUSR1
//!   and when the directory changes); `http/rpc.rs` calls them.
//! - `auth.rs`: JWT bearer tokens against a key file.
//! - `config_file.rs`: reading a file loaded and reloaded while serving (regular files only,
//!   bounded).
//! - `permissions.rs`: the permissions file of `--permissions` (roles' grants, API keys;
//!   loaded, checked, reloaded) and each role's view of the schema; `watch.rs`: the polling
//!   loop that reloads it and the RPC functions when their files change.
//! - `metrics_registry.rs`: the Prometheus registry with the Go version's metric names;
//!   `admin.rs`: the `/metrics` and health server; `pprof.rs`: the CPU profile server;
//!   `logging.rs`: structured logs.
//! - `embedded_replication.rs`: the `replication` crate wired into `serve` (start before the
//!   database opens, commit notices, health, stop).
//! - The other commands: `restore_command.rs`, `replica_command.rs` (`replica ls`,
//!   `replica status`), `migrate.rs`, `demo.rs`.

// `ApiError` travels only on the cold error path; boxing it would buy nothing measurable.
#![allow(clippy::result_large_err)]

pub mod cli;
pub mod entry;

mod admin;
mod auth;
mod config_file;
mod database;
mod demo;
mod embedded_replication;
mod follower;
mod http;
mod logging;
mod metrics_registry;
mod migrate;
mod permissions;
mod pprof;
mod replica_command;
mod restore_command;
mod rpc_functions;
mod serve;
mod serve_config;
mod shutdown;
mod watch;
