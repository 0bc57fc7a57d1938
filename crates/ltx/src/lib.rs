//! Litestream's LTX file format, byte-compatible with Litestream v0.5.
//!
//! This crate owns the bytes of an LTX file and nothing else: it knows no SQLite connection,
//! no file system policy and no object store, so it can be fuzzed and reused. The spec is
//! `../shared/litestream-compat.md` §2 and §10.

mod name;

pub use name::{FileName, ParseNameError, TxId};
