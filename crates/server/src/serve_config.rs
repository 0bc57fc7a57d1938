//! The resolved server configuration, built from `serve` flags (or by `demo`), validated once.

use std::collections::HashSet;
use std::time::Duration;

use dialect::Exposure;

use crate::auth::{AuthConfig, ClaimPath, KeySource};
use crate::cli::ServeArgs;
use crate::database::Synchronous;
use crate::embedded_replication::ReplicationSettings;
use crate::follower::FollowSettings;
use crate::http::{ConnLimits, HttpLimits};

/// How writes are made durable, batched and guarded.
#[derive(Debug, Clone)]
pub struct WriteConfig {
    /// `PRAGMA synchronous` of the writer connection.
    pub(crate) synchronous: Synchronous,
    /// Refuse PATCH/DELETE without filters.
    pub(crate) safe_update: bool,
    /// Most jobs per group commit.
    pub(crate) batch_max: usize,
    /// How long the writer waits for another process's lock (then 503).
    pub(crate) busy_timeout: Duration,
    /// `--write-durability`: when a write is answered unless its request says otherwise.
    pub(crate) durability: dialect::Durability,
    /// `--write-durability-timeout-ms`: the longest wait of a synchronous write for the
    /// replica (and of a `min-txid` read).
    pub(crate) durability_timeout: Duration,
    /// `--write-positions`: local-mode writes wait for their local LTX file (their TXID).
    pub(crate) local_positions: bool,
}

impl Default for WriteConfig {
    fn default() -> Self {
        WriteConfig {
            synchronous: Synchronous::Full,
            safe_update: true,
            batch_max: 256,
            busy_timeout: Duration::from_secs(5),
            durability: dialect::Durability::Local,
            durability_timeout: Duration::from_secs(10),
            local_positions: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub(crate) dsn: String,
    /// `--db-dsn` must name an existing database (or one the replica restores).
    pub(crate) db_must_exist: bool,
    pub(crate) http_addr: String,
    pub(crate) auth: AuthConfig,
    pub(crate) allow_tables: Vec<String>,
    pub(crate) metrics_addr: Option<String>,
    pub(crate) pprof_addr: Option<String>,
    pub(crate) cors_allowed_origins: Vec<String>,
    pub(crate) max_rows: Option<i64>,
    /// Aggregates in `select` (`--aggregates-enabled`).
    pub(crate) aggregates: bool,
    pub(crate) request_timeout: Duration,
    pub(crate) http_limits: HttpLimits,
    /// Connection-level limits of every listener (the cap is the API's; see
    /// [`ConnLimits::monitoring`]).
    pub(crate) conn_limits: ConnLimits,
    /// Embedded replication (`--replication-enabled`).
    pub(crate) replication: Option<ReplicationSettings>,
    /// A read replica following the replica (`--replication-follow`).
    pub(crate) follow: Option<FollowSettings>,
    pub(crate) writes: WriteConfig,
    /// `--rpc-dir`: the functions `/rpc/{name}` calls.
    pub(crate) rpc_dir: Option<std::path::PathBuf>,
    /// `--permissions`: the roles' grants (exclusive with `allow_tables`).
    pub(crate) permissions: Option<std::path::PathBuf>,
}

/// The longest any time setting may be: deadlines are computed as now + setting, which must
/// not overflow the clock however large a number the flag was given.
const MAX_SETTING: Duration = Duration::from_secs(365 * 24 * 3600);

/// A time setting in milliseconds, at least 1 ms and at most [`MAX_SETTING`].
fn millis_setting(ms: u64) -> Duration {
    Duration::from_millis(ms.max(1)).min(MAX_SETTING)
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// The authentication the flags ask for: the key files (or none, with
/// `--insecure-disable-auth` only), the role claim path, the anonymous role, the audience,
/// and whether roles are in force (`--permissions`).
fn auth_config(a: &ServeArgs) -> anyhow::Result<AuthConfig> {
    if a.auth_token_file.is_some() && a.auth_rsa_public_key.is_some() {
        anyhow::bail!(
            "cannot specify --auth-rsa-public-key and --auth-token-file at the same time"
        );
    }
    let keys: Vec<KeySource> = [
        a.auth_token_file.clone().map(KeySource::HmacSecretFile),
        a.auth_rsa_public_key
            .clone()
            .map(KeySource::RsaPublicKeyFile),
        a.auth_jwks_file.clone().map(KeySource::Jwks),
    ]
    .into_iter()
    .flatten()
    .collect();
    match (keys.is_empty(), a.insecure_disable_auth) {
        (true, false) => anyhow::bail!(
            "specify --auth-token-file, --auth-rsa-public-key or --auth-jwks-file (or --insecure-disable-auth for local development)"
        ),
        (false, true) => {
            anyhow::bail!("--insecure-disable-auth cannot be combined with an auth key")
        }
        _ => {}
    }
    let role_claim_key = a
        .auth_role_claim_key
        .parse::<ClaimPath>()
        .map_err(|e| anyhow::anyhow!("--auth-role-claim-key: {e}"))?;
    let anon_role = match a.auth_anon_role.as_deref().map(str::trim) {
        Some("") => anyhow::bail!("--auth-anon-role is empty"),
        other => other.map(str::to_string),
    };
    let audience = match a.auth_jwt_aud.as_deref() {
        Some("") => anyhow::bail!("--auth-jwt-aud is empty"),
        other => other.map(str::to_string),
    };
    let roles_required = a.permissions.is_some();
    if roles_required && keys.is_empty() && anon_role.is_none() {
        anyhow::bail!(
            "--permissions with --insecure-disable-auth needs --auth-anon-role: the role every request runs as"
        );
    }
    Ok(AuthConfig {
        keys,
        role_claim_key,
        anon_role,
        audience,
        roles_required,
    })
}

impl ServeConfig {
    pub fn from_args(a: &ServeArgs) -> anyhow::Result<Self> {
        if a.permissions.is_some() && a.security_allow_table.iter().any(|t| !t.is_empty()) {
            anyhow::bail!(
                "--permissions and --security-allow-table do not combine: list the tables in the permissions file (a role with read, insert, update and delete on a table is what --security-allow-table gives every caller)"
            );
        }
        let auth = auth_config(a)?;
        if a.db_dsn.trim().is_empty() {
            anyhow::bail!("--db-dsn is required");
        }
        let replication = match (a.replication_enabled, &a.replication_config) {
            (true, Some(path)) => Some(ReplicationSettings {
                config_path: path.clone(),
            }),
            (true, None) => anyhow::bail!(
                "--replication-enabled needs --replication-config (a Litestream YAML file naming the replica of {})",
                a.db_dsn
            ),
            (false, Some(path)) if !a.replication_follow => {
                tracing::warn!(config = %path.display(), "--replication-config is set but replication is off; add --replication-enabled to replicate");
                None
            }
            (false, _) => None,
        };
        let follow = match (a.replication_follow, &a.replication_config) {
            (true, _) if a.replication_enabled => anyhow::bail!(
                "--replication-follow and --replication-enabled do not combine: a follower only reads the replica, the primary writes it"
            ),
            (true, _) if a.write_durability == "replicated" => anyhow::bail!(
                "--write-durability replicated needs --replication-enabled: a follower (--replication-follow) takes no writes"
            ),
            (true, Some(path)) => Some(FollowSettings {
                config_path: path.clone(),
                primary_url: a.replication_primary_url.as_deref().and_then(non_empty),
                wait: millis_setting(a.replication_follow_wait_ms),
                max_lag: millis_setting(a.replication_follow_max_lag_ms),
            }),
            (true, None) => anyhow::bail!(
                "--replication-follow needs --replication-config (a Litestream YAML file naming the replica of {})",
                a.db_dsn
            ),
            (false, _) => None,
        };
        let replication = if follow.is_some() { None } else { replication };
        let durability = match a.write_durability.as_str() {
            "local" => dialect::Durability::Local,
            "replicated" if replication.is_some() => dialect::Durability::Replicated,
            "replicated" => anyhow::bail!(
                "--write-durability replicated needs --replication-enabled: without a replica no write can be confirmed on one"
            ),
            other => anyhow::bail!("--write-durability {other:?}: expected local or replicated"),
        };
        let request_timeout = millis_setting(a.request_timeout_ms);
        let synchronous = match &a.db_synchronous {
            Some(s) => s
                .parse::<Synchronous>()
                .map_err(|e| anyhow::anyhow!("--db-synchronous: {e}"))?,
            None => Synchronous::from_dsn(&a.db_dsn).unwrap_or(Synchronous::Full),
        };
        Ok(ServeConfig {
            dsn: a.db_dsn.clone(),
            db_must_exist: a.db_must_exist,
            http_addr: a.http_addr.clone(),
            auth,
            allow_tables: a
                .security_allow_table
                .iter()
                .filter_map(|t| non_empty(t))
                .collect(),
            metrics_addr: non_empty(&a.metrics_addr),
            pprof_addr: non_empty(&a.pprof_addr),
            cors_allowed_origins: a
                .cors_allowed_origins
                .iter()
                .filter_map(|o| non_empty(o))
                .collect(),
            max_rows: (a.max_rows > 0).then_some(a.max_rows),
            aggregates: a.aggregates_enabled,
            request_timeout,
            http_limits: HttpLimits {
                max_body_bytes: a.max_body_bytes,
                request_budget: request_timeout,
                ..HttpLimits::default()
            },
            conn_limits: ConnLimits {
                header_read_timeout: millis_setting(a.header_read_timeout_ms),
                idle_timeout: millis_setting(a.idle_timeout_ms),
                max_connections: a.max_connections.max(1),
            },
            replication,
            follow,
            writes: WriteConfig {
                synchronous,
                safe_update: a.safe_update,
                batch_max: a.write_batch_max.max(1),
                busy_timeout: Duration::from_millis(a.db_busy_timeout_ms).min(MAX_SETTING),
                durability,
                durability_timeout: millis_setting(a.write_durability_timeout_ms),
                local_positions: a.write_positions,
            },
            rpc_dir: a.rpc_dir.clone(),
            permissions: a.permissions.clone(),
        })
    }

    /// What the schema cache holds: the allow-list, or with a permissions file every
    /// relation (each role's cache keeps only what it has a grant on).
    pub fn exposure(&self) -> Exposure {
        if self.permissions.is_some() {
            return Exposure::All;
        }
        Exposure::Only(self.allow_tables.iter().cloned().collect::<HashSet<_>>())
    }
}
