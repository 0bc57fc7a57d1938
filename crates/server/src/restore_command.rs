//! `sqlite-rest restore`: `litestream restore` in this CLI's style, on the `replication`
//! crate's restore (parallel downloads, streaming decode).
//!
//! `restore [--config FILE] DB_PATH` finds the database's replica in the config (output:
//! the database path unless `-o`); `restore -o OUT REPLICA_URL` reads a replica URL.
//! `--txid` (hex16) and `--timestamp` (RFC 3339) pick a point in time; `--if-db-not-exists`,
//! `--if-replica-exists`, `--force`, `--dry-run` (with `--json`, Litestream's plan JSON) and
//! `--integrity-check none|quick|full` behave as in Litestream. Progress goes to stderr about
//! once a second on long restores; `--json` prints the result on stdout.
//!
//! Unlike Litestream, restoring onto a database also resets its local replication metadata
//! (`.<db>-litestream/`, or the config's `meta-path`): the position recorded there belongs to
//! the replaced database, and a server started on the restored one would take the two for
//! diverged histories. With the metadata gone it compares the database with the replica and
//! adopts the replica's position.
//!
//! A replica path holding a Litestream 0.3 backup (`generations/`) restores from it when it
//! is newer than any LTX file there (as Litestream 0.5 chooses): latest or `--timestamp`
//! (`--txid` reads LTX files only); `--dry-run` then lists the 0.3 files. Content that is
//! no Litestream replica is refused by name.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use replication::restore::RestoreTarget;
use replication::restore::{
    self, AnyPlan, DryRun, IntegrityCheck, RestoreOptions, prepare_output, write_progress,
};
use replication::v03::V03Plan;
use replication::{MetaDir, ReplicaClient, default_meta_path, is_url};

use crate::cli::RestoreArgs;
use crate::replica_command::{find_replica, open_replica, print_json};

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
    let found = find_replica(
        Some(&args.source),
        args.config.as_deref(),
        !args.no_expand_env,
    )?;
    if url_form && args.output.is_none() {
        bail!(
            "--output is required when restoring from a replica URL (e.g. sqlite-rest restore -o /path/to/db {})",
            args.source
        );
    }
    let output = args
        .output
        .clone()
        .or_else(|| {
            found
                .db
                .as_ref()
                .and_then(|db| db.path())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(&args.source));
    // Restored onto the configured database: its configured metadata directory.
    let meta = found
        .db
        .as_ref()
        .filter(|db| db.path() == Some(output.as_path()))
        .and_then(|db| db.meta_path());
    let meta = MetaDir::new(meta.unwrap_or_else(|| default_meta_path(&output)));
    if args.if_db_not_exists && output.exists() {
        eprintln!(
            "sqlite-rest: database already exists, skipping: {}",
            output.display()
        );
        return Ok(Outcome::SkippedDbExists);
    }
    let client = open_replica(&found.target).await?;

    let plan = match restore::plan_any(client.as_ref(), target, url_form).await {
        Ok(p) => p,
        Err(e) if e.is_not_available() && args.if_replica_exists => {
            eprintln!("sqlite-rest: no matching backups found, skipping");
            return Ok(Outcome::SkippedNoBackup);
        }
        Err(e) => return Err(e.into()),
    };
    let plan = match plan {
        AnyPlan::Ltx(plan) => plan,
        AnyPlan::V03(plan) => {
            return restore_v03(args, &client, &plan, &output, &meta, check).await;
        }
    };
    if args.dry_run {
        let dry = DryRun::new(&args.source, &output, client.kind().as_str(), &plan);
        let mut out = std::io::stdout().lock();
        if args.json {
            print_json(&dry)?;
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

    prepare_output_and_meta(&output, &meta, args.force)?;
    let options = restore_options(args, &output, check);
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
        print_json(&v)?;
    }
    Ok(Outcome::Restored)
}

/// Makes `output` ready to be replaced and resets its replication metadata: the position
/// recorded there describes the database being replaced, not the restored one, so a server
/// started on the result must take the replica's position.
fn prepare_output_and_meta(
    output: &std::path::Path,
    meta: &MetaDir,
    force: bool,
) -> anyhow::Result<()> {
    prepare_output(output, force)?;
    if meta.root().join("ltx").exists() {
        eprintln!(
            "sqlite-rest: resetting the replication metadata of {} ({})",
            output.display(),
            meta.root().display()
        );
        meta.reset()
            .with_context(|| format!("resetting {}", meta.root().display()))?;
    }
    Ok(())
}

/// Restores (or, with `--dry-run`, shows) a Litestream 0.3 backup, the newest state or the
/// newest at or before `--timestamp`.
async fn restore_v03(
    args: &RestoreArgs,
    client: &Arc<dyn ReplicaClient>,
    plan: &V03Plan,
    output: &std::path::Path,
    meta: &MetaDir,
    check: IntegrityCheck,
) -> anyhow::Result<Outcome> {
    let files = std::iter::once((
        plan.snapshot.path(),
        plan.snapshot.size,
        plan.snapshot.created_at,
    ))
    .chain(
        plan.segments
            .iter()
            .map(|s| (s.path(), s.size, s.created_at)),
    );
    if args.dry_run {
        let mut out = std::io::stdout().lock();
        if args.json {
            let v = serde_json::json!({
                "source": args.source,
                "target_path": output.display().to_string(),
                "replica": client.kind().as_str(),
                "format": "litestream-0.3",
                "generation": plan.snapshot.generation.to_string(),
                "snapshot_index": format!("{:08x}", plan.snapshot.index),
                "last_index": format!("{:08x}", plan.last_index()),
                "files": files.map(|(path, size, at)| serde_json::json!({
                    "path": path,
                    "size": size,
                    "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                })).collect::<Vec<_>>(),
            });
            print_json(&v)?;
        } else {
            writeln!(
                out,
                "Restore plan (Litestream 0.3 backup):\n  source: {}\n  target: {}\n  replica: {}\n  generation: {}\n  WAL indexes: {:08x} - {:08x}\n\nFiles to fetch:\nfile                                                              size      timestamp",
                args.source,
                output.display(),
                client.kind().as_str(),
                plan.snapshot.generation,
                plan.snapshot.index,
                plan.last_index()
            )?;
            for (path, size, at) in files {
                writeln!(
                    out,
                    "{path:<65} {size:<9} {}",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )?;
            }
        }
        return Ok(Outcome::DryRun);
    }
    prepare_output_and_meta(output, meta, args.force)?;
    let options = restore_options(args, output, check);
    eprintln!(
        "sqlite-rest: restoring {} from the Litestream 0.3 backup at {} (generation {}, WAL indexes {:08x}-{:08x}; {} files, {:.1} MB)",
        output.display(),
        client.describe(),
        plan.snapshot.generation,
        plan.snapshot.index,
        plan.last_index(),
        plan.files(),
        plan.bytes() as f64 / 1e6
    );
    let restored = replication::v03::restore(client, plan, &options).await?;
    eprintln!(
        "sqlite-rest: restored {} ({} pages of {} bytes) from generation {} at WAL index {:08x} in {:.2}s",
        output.display(),
        restored.pages,
        restored.page_size,
        restored.generation,
        restored.index,
        restored.duration.as_secs_f64()
    );
    if args.json {
        let v = serde_json::json!({
            "db_path": output.display().to_string(),
            "replica": client.kind().as_str(),
            "format": "litestream-0.3",
            "generation": restored.generation.to_string(),
            "index": format!("{:08x}", restored.index),
            "duration_ms": restored.duration.as_millis() as u64,
            "integrity_check": check.as_str(),
        });
        print_json(&v)?;
    }
    Ok(Outcome::Restored)
}

/// The options both formats restore with: the check, parallel downloads, progress on stderr.
fn restore_options(
    args: &RestoreArgs,
    output: &std::path::Path,
    check: IntegrityCheck,
) -> RestoreOptions {
    let mut options = RestoreOptions::new(output);
    options.integrity_check = check;
    options.fetch.parallelism = args.parallelism.max(1);
    options.progress = Some(Arc::new(|p| {
        let _ = write_progress(&mut std::io::stderr().lock(), &p);
    }));
    options
}
