//! What can go wrong reading a config ([`ConfigError`]).

use std::path::PathBuf;

/// Errors from reading, parsing or validating a config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("replication config file not found: {}", .0.display())]
    NotFound(PathBuf),
    #[error("reading replication config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("replication config is not valid YAML: {0}")]
    Syntax(String),
    #[error("unknown key `{path}` in replication config{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    UnknownKey { path: String, hint: Option<String> },
    #[error("replication config `{path}`: {message}")]
    Invalid { path: String, message: String },
    #[error("replication config `{path}`: {message}; sqlite-rest does not support this")]
    Unsupported { path: String, message: String },
    #[error(
        "database {} is not in the replication config{}; add a `dbs:` entry with `path: {}` (configured: {})",
        path.display(),
        config.as_ref().map(|c| format!(" {}", c.display())).unwrap_or_default(),
        path.display(),
        if configured.is_empty() { "none".to_string() } else {
            configured.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        }
    )]
    DatabaseNotInConfig {
        path: PathBuf,
        config: Option<PathBuf>,
        configured: Vec<PathBuf>,
    },
}

pub(super) fn invalid(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}
