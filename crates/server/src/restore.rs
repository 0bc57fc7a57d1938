//! `sqlite-rest restore`: `litestream restore` in this CLI's style, on the `replication`
//! crate's restore (parallel downloads, streaming decode).
//!
//! `restore [--config FILE] DB_PATH` finds the database's replica in the config (output:
//! the database path unless `-o`); `restore -o OUT REPLICA_URL` reads a replica URL.
//! `--txid` (hex16) and `--timestamp` (RFC 3339) pick a point in time; `--if-db-not-exists`,
//! `--if-replica-exists`, `--force`, `--dry-run` (with `--json`, Litestream's plan JSON) and
//! `--integrity-check none|quick|full` behave as in Litestream. Progress goes to stderr about
//! once a second on long restores; `--json` prints the result on stdout.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use replication::client::{
    ClientOptions, NetworkOptions, ReplicaClient, ReplicaMetrics, open_client,
};
use replication::config::{Config, LoadOptions};
use replication::plan::RestoreTarget;
use replication::restore::{
    self, DryRun, IntegrityCheck, RestoreOptions, prepare_output, write_progress,
};
use replication::url::{is_url, parse_replica_url};

use crate::cli::RestoreArgs;

/// What the command did (exit code 0 in every case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Restored,
    /// `--if-db-not-exists` and the output exists.
    SkippedDbExists,
    /// `--if-replica-exists` and no backup matched.
    SkippedNoBackup,
    DryRun,
}

/// Runs the command.
pub async fn run(args: &RestoreArgs) -> anyhow::Result<Outcome> {
    let target = match (&args.txid, &args.timestamp) {
        (Some(_), Some(_)) => bail!("cannot specify both --txid and --timestamp"),
        (Some(t), None) => RestoreTarget::TxId(t.parse().map_err(|_| {
            anyhow::anyhow!("invalid --txid {t:?}: expected 16 hex digits, e.g. 000000000000002a")
        })?),
        (None, Some(ts)) => RestoreTarget::Timestamp(
            chrono::DateTime::parse_from_rfc3339(ts)
                .map_err(|_| {
                    anyhow::anyhow!(
                        "invalid --timestamp {ts:?}: expected RFC 3339, e.g. 2026-01-02T15:04:05Z"
                    )
                })?
                .with_timezone(&chrono::Utc),
        ),
        (None, None) => RestoreTarget::Latest,
    };
    let check: IntegrityCheck = args.integrity_check.parse().map_err(anyhow::Error::msg)?;
    let url_form = is_url(&args.source);
    let (replica, output) = if url_form {
        if args.config.is_some() {
            bail!("cannot specify a replica URL and --config");
        }
        let Some(out) = &args.output else {
            bail!(
                "--output is required when restoring from a replica URL (e.g. sqlite-rest restore -o /path/to/db {})",
                args.source
            );
        };
        let target = parse_replica_url(&args.source)
            .with_context(|| format!("replica URL {}", args.source))?;
        (target, out.clone())
    } else {
        let Some(config_path) = &args.config else {
            bail!(
                "restoring database {} needs --config (the Litestream YAML that names its replica), or pass a replica URL",
                args.source
            );
        };
        let config = Config::load(
            config_path,
            LoadOptions {
                expand_env: !args.no_expand_env,
            },
        )
        .with_context(|| format!("--config {}", config_path.display()))?;
        let db = config.find_db(&PathBuf::from(&args.source))?;
        let out = args
            .output
            .clone()
            .or_else(|| db.path().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(&args.source));
        (db.replica.target.clone(), out)
    };
    if args.if_db_not_exists && output.exists() {
        eprintln!(
            "sqlite-rest: database already exists, skipping: {}",
            output.display()
        );
        return Ok(Outcome::SkippedDbExists);
    }
    let client: Arc<dyn ReplicaClient> = open_client(
        &replica,
        &ClientOptions {
            metrics: Some(ReplicaMetrics::unregistered()?),
            network: NetworkOptions::from_env().map_err(anyhow::Error::msg)?,
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("replica {}", replica.describe()))?;

    let plan = match restore::plan(client.as_ref(), target, url_form).await {
        Ok(p) => p,
        Err(e) if e.is_not_available() && args.if_replica_exists => {
            eprintln!("sqlite-rest: no matching backups found, skipping");
            return Ok(Outcome::SkippedNoBackup);
        }
        Err(e) => return Err(e.into()),
    };
    if args.dry_run {
        let dry = DryRun::new(&args.source, &output, client.kind().as_str(), &plan);
        let mut out = std::io::stdout().lock();
        if args.json {
            writeln!(out, "{}", serde_json::to_string_pretty(&dry)?)?;
        } else {
            writeln!(
                out,
                "Restore plan:\n  source: {}\n  target: {}\n  replica: {}\n  txid range: {} - {}\n\nFiles to fetch:\nlevel  file                                   min_txid          max_txid          size      timestamp",
                dry.source, dry.target_path, dry.replica, dry.min_txid, dry.max_txid
            )?;
            for f in &dry.files {
                writeln!(
                    out,
                    "{:<6} {:<38} {} {} {:<9} {}",
                    f.level, f.name, f.min_txid, f.max_txid, f.size, f.timestamp
                )?;
            }
        }
        return Ok(Outcome::DryRun);
    }

    prepare_output(&output, args.force)?;
    let mut options = RestoreOptions::new(&output);
    options.integrity_check = check;
    options.fetch.parallelism = args.parallelism.max(1);
    options.progress = Some(Arc::new(|p| {
        let _ = write_progress(&mut std::io::stderr().lock(), &p);
    }));
    eprintln!(
        "sqlite-rest: restoring {} from {} at TXID {} ({} files, {:.1} MB)",
        output.display(),
        client.describe(),
        plan.max_txid(),
        plan.files.len(),
        plan.files.iter().map(|f| f.size).sum::<u64>() as f64 / 1e6
    );
    let restored = restore::restore(&client, &plan, &options).await?;
    eprintln!(
        "sqlite-rest: restored {} ({} pages of {} bytes) at TXID {} in {:.2}s",
        output.display(),
        restored.commit,
        restored.page_size,
        restored.txid,
        restored.duration.as_secs_f64()
    );
    if args.json {
        let v = serde_json::json!({
            "db_path": output.display().to_string(),
            "replica": client.kind().as_str(),
            "txid": restored.txid.to_string(),
            "duration_ms": restored.duration.as_millis() as u64,
            "integrity_check": check.as_str(),
        });
        writeln!(
            std::io::stdout().lock(),
            "{}",
            serde_json::to_string_pretty(&v)?
        )?;
    }
    Ok(Outcome::Restored)
}
