//! Why the replicator could not start ([`StartError`]) or could not finish its shutdown
//! sync ([`ShutdownError`]).

use std::time::Duration;

use ltx::TxId;

use crate::client::ClientError;
use crate::db_attachment::DbError;
use crate::health::FatalError;
use crate::lineage::StartupError;
use crate::litestream_config::ConfigError;
use crate::sync::SyncError;

/// Why replication could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("replica {replica} is not reachable: {source}")]
    Unreachable {
        replica: String,
        source: ClientError,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Startup(Box<StartupError>),
    #[error("attaching to the database: {0}")]
    Db(#[from] DbError),
    #[error("first sync of the database: {0}")]
    Sync(#[from] SyncError),
    #[error("adopting the replica's position: {0}")]
    Adopt(String),
    #[error("registering replication metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{0}")]
    Other(String),
}

impl From<StartupError> for StartError {
    fn from(e: StartupError) -> Self {
        StartError::Startup(Box::new(e))
    }
}

/// Why the shutdown sync could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    #[error(transparent)]
    Fatal(#[from] FatalError),
    #[error(
        "shutdown sync timed out after {timeout:?}: the replica is at TXID {replicated}, the local database at TXID {local}"
    )]
    Timeout {
        timeout: Duration,
        local: TxId,
        replicated: TxId,
    },
    #[error("final sync failed: {0}")]
    FinalSync(String),
}
