//! `sqlite-rest replica ls` and `sqlite-rest replica status`: what an operator asks of a
//! replica, through the `replication` crate's replica clients (file, S3, Azure).
//!
//! Both find the replica as `restore` does ([`find_replica`], shared with it): a database of
//! the Litestream config that `serve --replication-config` takes (by path; the only one when
//! the config lists one), or a replica URL.
//!
//! - `ls` lists the LTX files per level (`--level N|all`, default all): level, min and max
//!   TXID, size and creation time, the columns of `litestream ltx`; `--json` prints the array
//!   `litestream ltx -json` prints (same fields, same formats).
//! - `status` says where replication stands: the local TXID (the newest L0 file in the
//!   database's metadata directory) against the replica's (the highest TXID of any file), how
//!   far behind and for how long, the last snapshot and a summary per level. With
//!   `--admin-addr` the positions, lag and health come from the running server's `/health`
//!   (its `replication` component), which knows commits not yet synced to a file; the files
//!   then add the snapshot and the levels when a replica is given too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http_body_util::{BodyExt, Empty, Limited};
use ltx::TxId;
use replication::{ClientOptions, NetworkOptions, ReplicaClient, ReplicaMetrics, open_client};
use replication::{Config, DbConfig, LoadOptions};
use replication::{Level, ListOptions, LtxFileInfo, MetaDir, ReplicaTarget};
use replication::{is_url, parse_replica_url};
use serde::Serialize;

use crate::cli::{ReplicaArgs, ReplicaCommand, ReplicaLsArgs, ReplicaSource, ReplicaStatusArgs};

/// How long `status` waits for the server's admin port.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The most `/health` bytes `status` reads.
const ADMIN_BODY_LIMIT: usize = 1 << 20;

/// A replica found from the command line.
pub(crate) struct FoundReplica {
    pub(crate) target: ReplicaTarget,
    /// The config's entry when the replica was found through the config.
    pub(crate) db: Option<DbConfig>,
}

impl FoundReplica {
    /// The database's local metadata directory (config form only).
    fn meta(&self) -> Option<MetaDir> {
        self.db
            .as_ref()
            .and_then(|db| db.meta_path())
            .map(MetaDir::new)
    }
}

/// The environment variable that names the Litestream config when the command line does
/// not (`serve --replication-config` reads it too).
pub(crate) const CONFIG_ENV: &str = "SQLITEREST_REPLICATION_CONFIG";

/// The config the environment names ([`CONFIG_ENV`]; empty is unset).
fn config_from_env() -> Option<PathBuf> {
    std::env::var_os(CONFIG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The replica `source` names: a replica URL (then `config`, the command line's `--config`,
/// must be unset; the environment's config is a default that the URL overrides), or a
/// database path of the Litestream config (`config`, else the environment's; the path may
/// be left out when the config lists exactly one database).
pub(crate) fn find_replica(
    source: Option<&str>,
    config: Option<&Path>,
    expand_env: bool,
) -> anyhow::Result<FoundReplica> {
    if let Some(url) = source.filter(|s| is_url(s)) {
        if config.is_some() {
            bail!("cannot specify a replica URL and --config");
        }
        let target = parse_replica_url(url).with_context(|| format!("replica URL {url}"))?;
        return Ok(FoundReplica { target, db: None });
    }
    let from_env = config_from_env();
    let Some(config_path) = config.or(from_env.as_deref()) else {
        bail!(
            "{} needs --config (the Litestream YAML that names its replica), or pass a replica URL",
            source.map_or("finding the replica".to_string(), |s| format!(
                "database {s}"
            ))
        );
    };
    let config = Config::load(config_path, LoadOptions { expand_env }).with_context(|| {
        let from = if config.is_some() {
            "--config"
        } else {
            CONFIG_ENV
        };
        format!("{from} {}", config_path.display())
    })?;
    let db = match source {
        Some(path) => config.find_db(&PathBuf::from(path))?.clone(),
        None => match config.dbs.as_slice() {
            [only] => only.clone(),
            dbs => bail!(
                "{} lists {} databases: name one of them ({})",
                config_path.display(),
                dbs.len(),
                dbs.iter()
                    .filter_map(|d| d.path().map(|p| p.display().to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    };
    Ok(FoundReplica {
        target: db.replica.target.clone(),
        db: Some(db),
    })
}

/// The client of a replica a command reads (operation metrics recorded nowhere; the
/// operation deadline from the environment, as the server's).
pub(crate) async fn open_replica(target: &ReplicaTarget) -> anyhow::Result<Arc<dyn ReplicaClient>> {
    open_client(
        target,
        &ClientOptions {
            metrics: Some(ReplicaMetrics::unregistered()?),
            network: NetworkOptions::from_env().map_err(anyhow::Error::msg)?,
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("replica {}", target.describe()))
}

/// Runs `replica ls` or `replica status`.
pub async fn run(args: &ReplicaArgs) -> anyhow::Result<()> {
    match &args.command {
        ReplicaCommand::Ls(a) => ls(a).await,
        ReplicaCommand::Status(a) => status(a).await,
    }
}

fn find(source: &ReplicaSource) -> anyhow::Result<FoundReplica> {
    find_replica(
        source.source.as_deref(),
        source.replication_config.as_deref(),
        !source.no_expand_env,
    )
}

/// A time as `litestream ltx` prints it: RFC 3339 in UTC, whole seconds.
fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One file of `replica ls`: the fields and formats of `litestream ltx -json`.
#[derive(Debug, Serialize)]
struct LsRow {
    level: u8,
    min_txid: String,
    max_txid: String,
    size: u64,
    timestamp: String,
}

impl From<&LtxFileInfo> for LsRow {
    fn from(f: &LtxFileInfo) -> Self {
        LsRow {
            level: f.level.get(),
            min_txid: f.min_txid().to_string(),
            max_txid: f.max_txid().to_string(),
            size: f.size,
            timestamp: rfc3339(f.created_at),
        }
    }
}

/// `--level`: `all` (None) or 0..=9.
fn parse_level(s: &str) -> anyhow::Result<Option<Level>> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    s.parse::<u8>()
        .ok()
        .and_then(Level::new)
        .map(Some)
        .ok_or_else(|| anyhow::anyhow!("invalid --level {s:?}: expected 0-9 or all"))
}

async fn ls(args: &ReplicaLsArgs) -> anyhow::Result<()> {
    let level = parse_level(&args.level)?;
    let found = find(&args.replica)?;
    let client = open_replica(&found.target).await?;
    let files = match level {
        None => client.list_all(ListOptions::default()).await?,
        Some(level) => client.list(level, ListOptions::default()).await?,
    };
    let rows: Vec<LsRow> = files.iter().map(LsRow::from).collect();
    if args.json {
        return print_json(&rows);
    }
    let table: Vec<[String; 5]> = rows
        .into_iter()
        .map(|r| {
            [
                r.level.to_string(),
                r.min_txid,
                r.max_txid,
                r.size.to_string(),
                r.timestamp,
            ]
        })
        .collect();
    print_table(["level", "min_txid", "max_txid", "size", "created"], &table)
}

/// Prints rows in columns two spaces apart, as Go's tabwriter does for `litestream ltx`.
fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> anyhow::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = std::io::stdout().lock();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| -> std::io::Result<()> {
        let mut text = String::new();
        for (i, (cell, w)) in cells.zip(widths).enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}", width = w + 2));
            }
        }
        writeln!(out, "{text}")
    };
    line(&mut header.iter().copied())?;
    for row in rows {
        line(&mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

/// What `replica status` reports (`--json` prints it as is).
#[derive(Debug, Serialize)]
struct StatusReport {
    /// The database, when known (config form, or as the server names its replica).
    database: Option<String>,
    /// The replica, as a URL without secrets.
    replica: Option<String>,
    /// Where the positions come from: `server` (`--admin-addr`) or `files`.
    positions_from: &'static str,
    /// Newest TXID in a local L0 file.
    local_txid: Option<String>,
    /// Newest TXID on the replica.
    replica_txid: Option<String>,
    /// Transactions the replica is behind the local files.
    txids_behind: Option<u64>,
    /// Server: age of the oldest commit not yet on the replica. Files: age of the oldest
    /// local L0 file the replica does not hold yet (0 when it holds them all).
    lag_ms: Option<u64>,
    /// Server only: false while a replica operation fails (retrying) or has failed for good.
    healthy: Option<bool>,
    /// Server only: when the last upload finished.
    last_upload: Option<String>,
    /// Server only: the replica operations failing now.
    failing: Option<serde_json::Value>,
    /// The newest snapshot (level 9) on the replica.
    last_snapshot: Option<LsRow>,
    /// Per level: how many files, bytes, the TXID range and the newest file's time.
    levels: Vec<LevelSummary>,
}

#[derive(Debug, Serialize)]
struct LevelSummary {
    level: u8,
    files: usize,
    bytes: u64,
    min_txid: String,
    max_txid: String,
    newest: String,
}

fn summarize(files: &[LtxFileInfo]) -> Vec<LevelSummary> {
    let mut out: Vec<LevelSummary> = Vec::new();
    for level in Level::all() {
        let of_level: Vec<&LtxFileInfo> = files.iter().filter(|f| f.level == level).collect();
        let (Some(min), Some(max), Some(newest)) = (
            of_level.iter().map(|f| f.min_txid()).min(),
            of_level.iter().map(|f| f.max_txid()).max(),
            of_level.iter().map(|f| f.created_at).max(),
        ) else {
            continue;
        };
        out.push(LevelSummary {
            level: level.get(),
            files: of_level.len(),
            bytes: of_level.iter().map(|f| f.size).sum(),
            min_txid: min.to_string(),
            max_txid: max.to_string(),
            newest: rfc3339(newest),
        });
    }
    out
}

async fn status(args: &ReplicaStatusArgs) -> anyhow::Result<()> {
    let source = &args.replica;
    let found = if source.source.is_some()
        || source.replication_config.is_some()
        || config_from_env().is_some()
    {
        Some(find(source)?)
    } else {
        None
    };
    if found.is_none() && args.admin_addr.is_none() {
        bail!(
            "replica status needs a replica (a database of --config, or a replica URL) or --admin-addr (the running server's admin port)"
        );
    }
    let server = match &args.admin_addr {
        Some(addr) => Some(server_replication(addr).await?),
        None => None,
    };
    let files = match &found {
        Some(f) => Some(
            open_replica(&f.target)
                .await?
                .list_all(ListOptions::default())
                .await?,
        ),
        None => None,
    };
    let mut report = StatusReport {
        database: found
            .as_ref()
            .and_then(|f| f.db.as_ref())
            .and_then(|db| db.path())
            .map(|p| p.display().to_string()),
        replica: found.as_ref().map(|f| f.target.describe()),
        positions_from: if server.is_some() { "server" } else { "files" },
        local_txid: None,
        replica_txid: None,
        txids_behind: None,
        lag_ms: None,
        healthy: None,
        last_upload: None,
        failing: None,
        last_snapshot: files.as_deref().and_then(|files| {
            files
                .iter()
                .filter(|f| f.level.is_snapshot())
                .max_by_key(|f| f.max_txid())
                .map(LsRow::from)
        }),
        levels: files.as_deref().map(summarize).unwrap_or_default(),
    };
    let (local, replica) = match &server {
        Some(s) => {
            report.lag_ms = s["lag_ms"].as_u64();
            report.healthy = s["ok"].as_bool();
            report.last_upload = s["last_upload"].as_str().map(str::to_string);
            report.failing = Some(s["failing"].clone());
            if report.replica.is_none() {
                report.replica = s["replica"].as_str().map(str::to_string);
            }
            (
                txid_field(s, "local_txid")?,
                txid_field(s, "replicated_txid")?,
            )
        }
        None => {
            let files = files.as_deref().unwrap_or_default();
            let replica = files.iter().map(|f| f.max_txid()).max();
            let meta = found.as_ref().and_then(FoundReplica::meta);
            let (local, lag) = match meta {
                Some(meta) => local_position(&meta, replica.unwrap_or(TxId::ZERO))?,
                None => (None, None),
            };
            report.lag_ms = lag.map(|d| d.as_millis() as u64);
            (local, replica)
        }
    };
    report.local_txid = local.map(|t| t.to_string());
    report.replica_txid = replica.map(|t| t.to_string());
    if let (Some(l), Some(r)) = (local, replica) {
        report.txids_behind = Some(l.get().saturating_sub(r.get()));
    }
    if args.json {
        return print_json(&report);
    }
    print_status(&report, args.admin_addr.as_deref())
}

/// A TXID of the server's `/health` (16 hex digits).
fn txid_field(v: &serde_json::Value, key: &str) -> anyhow::Result<Option<TxId>> {
    match v[key].as_str() {
        None => Ok(None),
        Some(s) => Ok(Some(s.parse().map_err(|_| {
            anyhow::anyhow!("the server's /health has an invalid {key}: {s:?}")
        })?)),
    }
}

/// The local position from the metadata directory: the newest L0 file's TXID, and the age of
/// the oldest local L0 file the replica does not hold yet (`replica` is its newest TXID).
fn local_position(
    meta: &MetaDir,
    replica: TxId,
) -> anyhow::Result<(Option<TxId>, Option<Duration>)> {
    let names = match meta.list(Level::L0) {
        Ok(names) => names,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, None)),
        Err(e) => {
            return Err(e).with_context(|| format!("reading {}", meta.root().display()));
        }
    };
    let local = names.iter().map(|n| n.max).max();
    let now = SystemTime::now();
    let mut lag = Duration::ZERO;
    for name in names.iter().filter(|n| n.max > replica) {
        let path = meta.path(Level::L0, *name);
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .with_context(|| format!("reading {}", path.display()))?;
        lag = lag.max(now.duration_since(modified).unwrap_or_default());
    }
    Ok((local, Some(lag)))
}

/// The `replication` component of the server's `/health` at `addr` (its admin address).
async fn server_replication(addr: &str) -> anyhow::Result<serde_json::Value> {
    let authority = admin_authority(addr);
    let health = tokio::time::timeout(ADMIN_TIMEOUT, get_json(&authority, "/health"))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the server's admin port {authority} did not answer within {ADMIN_TIMEOUT:?}"
            )
        })?
        .with_context(|| format!("GET http://{authority}/health"))?;
    match health.get("replication") {
        Some(r) => Ok(r.clone()),
        None => bail!(
            "the server at {authority} does not replicate (its /health has no replication component)"
        ),
    }
}

/// `host:port` of an admin address given as `:8081`, `host:8081` or `http://host:8081/`.
fn admin_authority(addr: &str) -> String {
    let a = addr.trim();
    let a = a.strip_prefix("http://").unwrap_or(a);
    let a = a.trim_end_matches('/');
    match a.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => a.to_string(),
    }
}

/// GETs `path` from `authority` over HTTP/1.1 and parses the body (at most
/// [`ADMIN_BODY_LIMIT`] bytes) as JSON, whatever the status (`/health` answers 503 with its
/// report when degraded).
async fn get_json(authority: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    let stream = tokio::net::TcpStream::connect(authority).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let request = http::Request::get(path)
        .header(http::header::HOST, authority)
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = Limited::new(response.into_body(), ADMIN_BODY_LIMIT)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
        .to_bytes();
    conn.abort();
    serde_json::from_slice(&body).with_context(|| {
        format!(
            "status {status}, not JSON: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })
}

fn print_status(r: &StatusReport, admin: Option<&str>) -> anyhow::Result<()> {
    let mut rows: Vec<(String, String)> = Vec::new();
    let none = || "-".to_string();
    let mut row = |k: &str, v: String| rows.push((k.to_string(), v));
    if let Some(db) = &r.database {
        row("database", db.clone());
    }
    row("replica", r.replica.clone().unwrap_or_else(none));
    row(
        "positions from",
        match admin {
            Some(a) => format!("the server ({})", admin_authority(a)),
            None => "the files".to_string(),
        },
    );
    row("local txid", r.local_txid.clone().unwrap_or_else(none));
    row(
        "replica txid",
        match (&r.replica_txid, r.txids_behind) {
            (Some(t), Some(n)) => format!("{t} ({n} transactions behind)"),
            (Some(t), None) => t.clone(),
            (None, _) => none(),
        },
    );
    row("lag", r.lag_ms.map_or_else(none, |ms| format!("{ms} ms")));
    if let Some(h) = r.healthy {
        row(
            "healthy",
            if h { "yes" } else { "no (see /health)" }.to_string(),
        );
    }
    if let Some(t) = &r.last_upload {
        row("last upload", t.clone());
    }
    row(
        "last snapshot",
        r.last_snapshot.as_ref().map_or_else(none, |s| {
            format!("txid {} at {} ({} bytes)", s.max_txid, s.timestamp, s.size)
        }),
    );
    for l in &r.levels {
        row(
            &format!("level {}", l.level),
            format!(
                "{} files, {} bytes, txid {}-{}, newest {}",
                l.files, l.bytes, l.min_txid, l.max_txid, l.newest
            ),
        );
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    let mut out = std::io::stdout().lock();
    for (k, v) in rows {
        writeln!(out, "{k:<width$}{v}")?;
    }
    Ok(())
}

/// Prints `v` as pretty JSON on stdout.
pub(crate) fn print_json(v: &impl Serialize) -> anyhow::Result<()> {
    writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string_pretty(v)?
    )?;
    Ok(())
}
