//! Embedded, Litestream-compatible replication of one SQLite database.
//!
//! Owns everything between a database file and its replica: the Litestream YAML config,
//! the WAL reader, replica clients (file, S3) behind one trait, the replicator (WAL → L0 LTX
//! files → upload), compaction and retention, and restore. Spec: `../shared/litestream-compat.md`.

pub mod client;
pub mod config;
pub mod level;
pub mod plan;
pub mod target;
pub mod url;
pub mod wal;
