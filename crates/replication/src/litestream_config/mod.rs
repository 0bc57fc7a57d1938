//! The Litestream YAML config (`docs/replication.md#configuration`): parsing, Litestream's defaults, validation, and
//! finding the entry for one database.
//!
//! sqlite-rest reads Litestream's own config file (`--replication-config litestream.yml`);
//! every replication knob comes from it, with Litestream 0.5's defaults. Differences from
//! Litestream, all in the direction of failing loudly:
//! - an unknown key is an error naming it with its path (`dbs[0].replica.retention-interval`);
//!   Litestream drops such keys silently;
//! - a replica URL with unknown query parameters is an error;
//! - settings of features sqlite-rest does not implement (other backends, `exec`, the control
//!   socket, MCP, heartbeats, `dir:` databases, age encryption) parse, and
//!   [`Config::ensure_supported`] (called by [`Config::load`]) rejects them by name.
//!
//! Env expansion ([`expand`]) runs over the whole text before parsing unless disabled.
//!
//! # Files
//! - `model.rs`: the resolved config ([`Config`], [`DbConfig`], [`ReplicaConfig`], …);
//!   `defaults.rs`: Litestream's defaults; `error.rs`: [`ConfigError`];
//! - `load.rs`: [`Config::load`], [`Config::parse`], [`Config::find_db`],
//!   [`Config::ensure_supported`];
//! - `expand.rs`: `$VAR` expansion and paths; `raw.rs`: the YAML schema as serde structs;
//!   `units.rs`: Go durations, byte sizes and booleans;
//! - `resolve.rs` (top level) → `resolve_db.rs` (one `dbs:` entry) → `resolve_replica.rs`
//!   (its replica): defaults and validation, with `values.rs` (single-value checks) and
//!   `key_errors.rs` (errors naming the key's path, "did you mean" hints).

pub(crate) mod defaults;
mod error;
pub(crate) mod expand;
mod key_errors;
mod load;
mod model;
mod raw;
mod resolve;
mod resolve_db;
mod resolve_replica;
pub(crate) mod units;
mod values;

pub use error::ConfigError;
pub use model::{
    Config, DbConfig, DbSource, LoadOptions, LoggingConfig, ReplicaConfig, SnapshotConfig,
    default_meta_path,
};
