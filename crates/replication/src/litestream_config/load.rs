//! Loading: reading and parsing the file, finding the served database's entry, rejecting
//! unsupported features; and turning serde's errors into errors that name the key's path.

use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use super::error::{ConfigError, invalid};
use super::expand;
use super::key_errors::{from_mapping, unknown_key};
use super::model::{Config, DbConfig, DbSource, LoadOptions, LoggingConfig};
use super::raw::{RawReplicaSettings, RawTop, split_mapping, struct_fields};
use super::resolve::resolve;

impl Config {
    /// Reads a config file for sqlite-rest: parses it ([`Config::parse`]) and rejects
    /// features sqlite-rest does not implement ([`Config::ensure_supported`]).
    pub fn load(path: &Path, options: LoadOptions) -> Result<Config, ConfigError> {
        let file = expand::expand_path(&path.to_string_lossy())
            .map_err(|message| invalid("--replication-config", message))?;
        let text = std::fs::read_to_string(&file).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ConfigError::NotFound(file.clone())
            } else {
                ConfigError::Read {
                    path: file.clone(),
                    source: e,
                }
            }
        })?;
        let mut config = Config::parse(&text, options)?;
        config.source = Some(file);
        config.ensure_supported()?;
        Ok(config)
    }

    /// Parses config text with Litestream's schema, defaults and validation.
    pub fn parse(text: &str, options: LoadOptions) -> Result<Config, ConfigError> {
        let text = if options.expand_env {
            expand::expand_env(text)
        } else {
            text.to_string()
        };
        let value: Value =
            serde_yaml_ng::from_str(&text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let top = match value {
            Value::Null => Mapping::new(),
            Value::Mapping(m) => m,
            _ => {
                return Err(ConfigError::Syntax(
                    "the top level must be a mapping".into(),
                ));
            }
        };
        let settings_keys = struct_fields::<RawReplicaSettings>();
        let top_keys = struct_fields::<RawTop>();
        let (own, shared) = split_mapping(&top, top_keys, settings_keys)
            .map_err(|key| unknown_key("", &key, &[top_keys, settings_keys].concat()))?;
        let raw: RawTop = from_mapping(own, "")?;
        let global: RawReplicaSettings = from_mapping(shared, "")?;
        resolve(raw, global)
    }

    /// The entry for the database at `db_path` (compared after resolving symlinks and
    /// relative parts), or [`ConfigError::DatabaseNotInConfig`].
    pub fn find_db(&self, db_path: &Path) -> Result<&DbConfig, ConfigError> {
        let want = expand::canonical(
            &expand::expand_path(&db_path.to_string_lossy())
                .map_err(|message| invalid("--db-dsn", message))?,
        );
        self.dbs
            .iter()
            .find(|db| db.path().is_some_and(|p| expand::canonical(p) == want))
            .ok_or_else(|| ConfigError::DatabaseNotInConfig {
                path: want,
                config: self.source.clone(),
                configured: self
                    .dbs
                    .iter()
                    .map(|db| match &db.source {
                        DbSource::Path(p) => p.clone(),
                        DbSource::Dir { dir, .. } => dir.clone(),
                    })
                    .collect(),
            })
    }

    /// Rejects, by key, settings of features sqlite-rest does not implement, so that none
    /// is silently ignored: replica backends other than file, s3 and abs, `exec`, the control
    /// `socket`, `mcp-addr`, `heartbeat-url` and `dir:` databases. (`addr` and `logging` are
    /// accepted: sqlite-rest serves the metrics and logs itself; see
    /// [`Config::ignored_settings`].)
    pub fn ensure_supported(&self) -> Result<(), ConfigError> {
        let unsupported = |path: &str, message: &str| {
            Err(ConfigError::Unsupported {
                path: path.to_string(),
                message: message.to_string(),
            })
        };
        if self.exec.is_some() {
            return unsupported("exec", "running a subprocess");
        }
        if self.socket_enabled {
            return unsupported("socket.enabled", "Litestream's control socket");
        }
        if self.mcp_addr.is_some() {
            return unsupported("mcp-addr", "Litestream's MCP server");
        }
        if self.heartbeat_url.is_some() {
            return unsupported("heartbeat-url", "heartbeat pings");
        }
        for db in &self.dbs {
            if let DbSource::Dir { .. } = db.source {
                return unsupported(
                    &format!("dbs[{}].dir", db.index),
                    "replicating a directory of databases (use `path:` for the served database)",
                );
            }
            if let Err(e) = db.replica.target.ensure_supported() {
                return unsupported(&format!("dbs[{}].replica", db.index), &e.to_string());
            }
        }
        Ok(())
    }

    /// Settings that are valid but have no effect in sqlite-rest, with the reason, for the
    /// server to log as warnings.
    pub fn ignored_settings(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        if self.addr.is_some() {
            out.push((
                "addr",
                "sqlite-rest serves the litestream_* metrics on its own /metrics endpoint",
            ));
        }
        if self.logging != LoggingConfig::default() {
            out.push(("logging", "sqlite-rest logs through its own logger"));
        }
        out
    }
}
