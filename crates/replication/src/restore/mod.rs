//! Restoring a database from a replica (`docs/ltx-and-replica-format.md#applying-a-restore`):
//! plan, fetch, merge, verify, rename. The plan itself (which files) is `plan.rs`
//! ([`plan_restore`]).
//!
//! 1. [`plan()`] lists every level (with exact CreatedAt for timestamp restores) and runs
//!    Litestream's plan ([`plan::plan_restore`]); URL-form timestamp restores first
//!    check the replica's time bounds. Files under 100 bytes fail before any download.
//! 2. [`restore`] fetches the planned files in parallel (`crate::replica_readers`) and streams them
//!    through the ltx compactor straight into `<output>.tmp` (created anew with `O_EXCL | O_NOFOLLOW`,
//!    never through a planted link; newest page wins, pages past
//!    the final commit dropped, zeros at the lock page), fsyncs it, optionally runs
//!    `PRAGMA quick_check` / `integrity_check` on it, renames it to `<output>` and fsyncs the
//!    directory. Any failure removes the temp file and leaves `<output>` untouched.
//! 3. [`prepare_output`] applies `litestream restore`'s rules for an existing output
//!    (`-force` removes it and its `-wal`, `-shm`, `-journal`).
//!
//! Progress (files and bytes) is reported through a callback about once a second.

mod plan;

pub(crate) use plan::chain;
pub use plan::{
    MIN_LTX_FILE_SIZE, PlanError, RestorePlan, RestoreTarget, check_timestamp_in_bounds,
    plan_restore, time_bounds,
};

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ltx::{Compactor, Decoder, TxId};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;

use crate::client::{ClientError, ListOptions, ReplicaClient};
use crate::db_attachment::{wal_path, with_suffix};
use crate::level::{LtxFileInfo, format_rfc3339_nano};
use crate::meta::{fsync_parent, remove_if_exists};
pub use crate::replica_readers::FetchOptions;
use crate::replica_readers::{FetchProgress, Input, open_inputs};
use crate::v03::{V03Plan, V03Target};

/// The post-restore check (`--integrity-check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntegrityCheck {
    #[default]
    None,
    /// `PRAGMA quick_check`.
    Quick,
    /// `PRAGMA integrity_check`.
    Full,
}

impl std::str::FromStr for IntegrityCheck {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(IntegrityCheck::None),
            "quick" => Ok(IntegrityCheck::Quick),
            "full" => Ok(IntegrityCheck::Full),
            other => Err(format!(
                "invalid integrity check {other:?}: expected none, quick or full"
            )),
        }
    }
}

impl IntegrityCheck {
    /// The PRAGMA that runs the check (none for [`IntegrityCheck::None`]).
    pub fn pragma(self) -> Option<&'static str> {
        match self {
            IntegrityCheck::None => None,
            IntegrityCheck::Quick => Some("quick_check"),
            IntegrityCheck::Full => Some("integrity_check"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IntegrityCheck::None => "none",
            IntegrityCheck::Quick => "quick",
            IntegrityCheck::Full => "full",
        }
    }
}

/// Progress of a running restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreProgress {
    pub files_done: u64,
    pub files_total: u64,
    pub bytes: u64,
    pub bytes_total: u64,
    pub elapsed: Duration,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(RestoreProgress) + Send + Sync>;

/// How to restore.
#[derive(Clone)]
pub struct RestoreOptions {
    pub output: PathBuf,
    pub integrity_check: IntegrityCheck,
    pub fetch: FetchOptions,
    /// Called about once a second while the restore runs (not for restores under a second).
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for RestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOptions")
            .field("output", &self.output)
            .field("integrity_check", &self.integrity_check)
            .field("fetch", &self.fetch)
            .finish_non_exhaustive()
    }
}

impl RestoreOptions {
    pub fn new(output: impl Into<PathBuf>) -> RestoreOptions {
        RestoreOptions {
            output: output.into(),
            integrity_check: IntegrityCheck::None,
            fetch: FetchOptions::default(),
            progress: None,
        }
    }
}

/// A finished restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub output: PathBuf,
    /// The TXID the database is at.
    pub txid: TxId,
    pub page_size: u32,
    /// Pages in the database.
    pub commit: u32,
    /// Bytes of LTX files read.
    pub bytes_read: u64,
    pub duration: Duration,
}

/// Errors from planning or running a restore.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("restoring {output}: {}{source}", file.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Ltx {
        output: String,
        /// The input file the error is about (`<level>/<name>`), if it is about one.
        file: Option<String>,
        source: ltx::Error,
    },
    #[error("restoring {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("restored database {output} failed {check}: {result}")]
    Integrity {
        output: String,
        check: &'static str,
        result: String,
    },
    #[error(
        "cannot restore, output path already exists and is not empty: {0}. Use --force to overwrite"
    )]
    OutputExists(String),
    #[error("cannot restore, SQLite sidecar path already exists: {0}. Use --force to overwrite")]
    SidecarExists(String),
    #[error("cannot restore, output path is a directory: {0}")]
    OutputIsDir(String),
    #[error("restore task failed: {0}")]
    Task(String),
    #[error("restoring {output} from a Litestream 0.3 backup: {source}")]
    V03 {
        output: String,
        source: crate::v03::V03Error,
    },
    /// A Litestream 0.3 backup that cannot be restored (no snapshot, missing WAL).
    #[error(transparent)]
    V03Plan(crate::v03::V03Error),
    #[error(transparent)]
    Foreign(#[from] crate::layout::ForeignContent),
}

impl From<crate::layout::InspectError> for RestoreError {
    fn from(e: crate::layout::InspectError) -> RestoreError {
        match e {
            crate::layout::InspectError::Client(e) => RestoreError::Client(e),
            crate::layout::InspectError::Foreign(e) => RestoreError::Foreign(e),
        }
    }
}

impl RestoreError {
    /// Litestream's `ErrTxNotAvailable` (`no matching backup files available`), which
    /// `--if-replica-exists` turns into success.
    pub fn is_not_available(&self) -> bool {
        matches!(
            self,
            RestoreError::Plan(PlanError::NotAvailable | PlanError::NoBackups)
        )
    }
}

/// Every LTX file of the replica. With `precise`, S3 CreatedAt comes from the
/// `litestream-timestamp` metadata (timestamp restores need it).
pub async fn list_files(
    client: &dyn ReplicaClient,
    precise: bool,
) -> Result<Vec<LtxFileInfo>, ClientError> {
    client
        .list_all(ListOptions {
            seek: None,
            precise_timestamps: precise,
        })
        .await
}

/// Lists the replica and plans a restore to `target`. `url_form` applies Litestream's
/// URL-form check that a timestamp lies within the replica's time bounds.
pub async fn plan(
    client: &dyn ReplicaClient,
    target: RestoreTarget,
    url_form: bool,
) -> Result<RestorePlan, RestoreError> {
    let timestamp = match target {
        RestoreTarget::Timestamp(ts) => Some(ts),
        _ => None,
    };
    if let (Some(ts), true) = (timestamp, url_form) {
        let plain = list_files(client, false).await?;
        check_timestamp_in_bounds(&plain, ts)?;
    }
    let files = list_files(client, timestamp.is_some()).await?;
    let plan = plan_restore(&files, target)?;
    plan.check_sizes()?;
    Ok(plan)
}

/// A restore plan over either backup format a replica path may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyPlan {
    /// LTX files (Litestream 0.5, sqlite-rest).
    Ltx(RestorePlan),
    /// A Litestream 0.3 backup.
    V03(V03Plan),
}

/// Inspects the replica path (refusing foreign content, `crate::layout`) and plans a
/// restore to `target` from the backup Litestream 0.5 would pick
/// (`crate::layout::ReplicaContents::format_for`). `url_form` applies Litestream's
/// URL-form check that a timestamp lies within the time bounds of both formats.
pub async fn plan_any(
    client: &dyn ReplicaClient,
    target: RestoreTarget,
    url_form: bool,
) -> Result<AnyPlan, RestoreError> {
    let timestamp = match target {
        RestoreTarget::Timestamp(ts) => Some(ts),
        _ => None,
    };
    let contents = crate::layout::inspect(client, timestamp.is_some()).await?;
    if let (Some(ts), true) = (timestamp, url_form) {
        let plain = list_files(client, false).await?;
        let bounds = crate::layout::ReplicaContents {
            ltx: plain,
            v03: contents.v03.clone(),
        }
        .time_bounds();
        let (earliest, latest) = bounds.ok_or(PlanError::NoBackups)?;
        if ts < earliest || ts > latest {
            return Err(PlanError::TimestampNotInRange.into());
        }
    }
    match contents.format_for(target) {
        crate::layout::Format::Ltx => {
            let plan = plan_restore(&contents.ltx, target)?;
            plan.check_sizes()?;
            Ok(AnyPlan::Ltx(plan))
        }
        crate::layout::Format::V03 => {
            let v03_target = match timestamp {
                Some(ts) => V03Target::Timestamp(ts),
                None => V03Target::Latest,
            };
            crate::v03::plan(&contents.v03, v03_target)
                .map(AnyPlan::V03)
                .map_err(RestoreError::V03Plan)
        }
    }
}

/// `litestream restore -dry-run -json` output.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DryRun {
    pub source: String,
    pub target_path: String,
    pub replica: String,
    pub min_txid: String,
    pub max_txid: String,
    pub files: Vec<DryRunFile>,
}

/// One file of a [`DryRun`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DryRunFile {
    pub level: u8,
    pub name: String,
    pub min_txid: String,
    pub max_txid: String,
    pub size: u64,
    /// RFC 3339, second precision (as Litestream prints it).
    pub timestamp: String,
}

impl DryRun {
    pub fn new(source: &str, target: &Path, replica: &str, plan: &RestorePlan) -> DryRun {
        DryRun {
            source: source.to_string(),
            target_path: target.display().to_string(),
            replica: replica.to_string(),
            min_txid: plan.min_txid().to_string(),
            max_txid: plan.max_txid().to_string(),
            files: plan
                .files
                .iter()
                .map(|f| DryRunFile {
                    level: f.level.get(),
                    name: f.name.to_string(),
                    min_txid: f.name.min.to_string(),
                    max_txid: f.name.max.to_string(),
                    size: f.size,
                    timestamp: f
                        .created_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                })
                .collect(),
        }
    }
}

/// Applies `litestream restore`'s rules for an existing output: a missing or empty output
/// is fine; a non-empty one (or a `-wal`/`-shm`/`-journal` beside it) needs `force`, which
/// removes all four. Its directory is made if missing.
pub fn prepare_output(path: &Path, force: bool) -> Result<(), RestoreError> {
    let io = |source| RestoreError::Io {
        path: path.display().to_string(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    if let Some(m) = &meta {
        if m.is_dir() {
            return Err(RestoreError::OutputIsDir(path.display().to_string()));
        }
        if m.len() > 0 && !force {
            return Err(RestoreError::OutputExists(path.display().to_string()));
        }
    }
    let sidecars = sidecars(path);
    if !force {
        for s in &sidecars[1..] {
            if s.exists() {
                return Err(RestoreError::SidecarExists(s.display().to_string()));
            }
        }
    }
    for p in &sidecars {
        remove_if_exists(p).map_err(io)?;
    }
    // A directory that does not exist yet is made, as Litestream makes it.
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    Ok(())
}

/// `path`, `path-wal`, `path-shm`, `path-journal`.
pub fn sidecars(path: &Path) -> [PathBuf; 4] {
    [
        path.to_path_buf(),
        wal_path(path),
        with_suffix(path, "-shm"),
        with_suffix(path, "-journal"),
    ]
}

/// Runs a planned restore into `options.output` (which [`prepare_output`] should have
/// cleared). See the module docs.
pub async fn restore(
    client: &Arc<dyn ReplicaClient>,
    plan: &RestorePlan,
    options: &RestoreOptions,
) -> Result<Restored, RestoreError> {
    plan.check_sizes()?;
    let inputs = Input::remote(&plan.files);
    restore_inputs(client, &inputs, options).await
}

/// Opens `files` as blocking readers, in order, for a caller that merges them itself (the
/// follower applies a plan into its live database through [`ltx::Compactor`], the merge
/// [`restore`] uses): fetched as [`restore`] fetches (ranged GETs in parallel, a local
/// replica's files read directly), memory bounded per file by `options`, never the whole
/// file. Call it inside a tokio runtime and read the readers on a blocking thread.
pub fn open_files(
    client: &Arc<dyn ReplicaClient>,
    files: &[LtxFileInfo],
    options: FetchOptions,
) -> Vec<Box<dyn std::io::Read + Send>> {
    open_inputs(
        client,
        &Input::remote(files),
        options,
        Arc::new(FetchProgress::default()),
    )
}

/// Like [`restore`], with inputs that may be local copies.
pub async fn restore_inputs(
    client: &Arc<dyn ReplicaClient>,
    inputs: &[Input],
    options: &RestoreOptions,
) -> Result<Restored, RestoreError> {
    let started = Instant::now();
    let output = options.output.clone();
    let tmp = with_suffix(&output, ".tmp");
    let progress = Arc::new(FetchProgress::default());
    let readers = open_inputs(client, inputs, options.fetch, progress.clone());
    let files_total = inputs.len() as u64;
    let bytes_total: u64 = inputs.iter().map(|i| i.info.size).sum();

    let reporter = options.progress.clone().map(|report| {
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                report(RestoreProgress {
                    files_done: progress.files_done.load(Ordering::Relaxed),
                    files_total,
                    bytes: progress.bytes.load(Ordering::Relaxed),
                    bytes_total,
                    elapsed: started.elapsed(),
                });
            }
        })
    });

    let check = options.integrity_check;
    let task_tmp = tmp.clone();
    let task_output = output.clone();
    let result = tokio::task::spawn_blocking(move || {
        write_database(readers, &task_tmp, &task_output, check)
    })
    .await;
    let names: Vec<String> = inputs
        .iter()
        .map(|i| format!("{}/{}", i.info.level, i.info.name))
        .collect();
    let result = result.map(|r| {
        r.map_err(|e| match e {
            RestoreError::Ltx {
                output,
                file: None,
                source,
            } => {
                let file = match &source {
                    ltx::Error::Input { index, .. } => names.get(*index).cloned(),
                    _ => None,
                };
                let source = match source {
                    ltx::Error::Input { source, .. } => *source,
                    other => other,
                };
                RestoreError::Ltx {
                    output,
                    file,
                    source,
                }
            }
            other => other,
        })
    });
    if let Some(r) = reporter {
        r.abort();
    }
    let result = match result {
        Ok(r) => r,
        Err(e) => Err(RestoreError::Task(e.to_string())),
    };
    match result {
        Ok((txid, page_size, commit)) => Ok(Restored {
            output,
            txid,
            page_size,
            commit,
            bytes_read: progress.bytes.load(Ordering::Relaxed),
            duration: started.elapsed(),
        }),
        Err(e) => {
            for p in sidecars(&tmp) {
                let _ = std::fs::remove_file(p);
            }
            Err(e)
        }
    }
}

/// Creates `path` as a new file, never through whatever is already there: a leftover file or
/// link (a crashed restore's, or one planted to make the restore write elsewhere) is removed
/// (a link itself, never its target), then the file is created with `O_EXCL | O_NOFOLLOW`, so
/// a link planted again in between makes the restore fail instead of following it.
fn create_private_new(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    remove_if_exists(path)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// The blocking half: merge into `<output>.tmp`, fsync, check, rename, fsync dir.
fn write_database(
    readers: Vec<Box<dyn std::io::Read + Send>>,
    tmp: &Path,
    output: &Path,
    check: IntegrityCheck,
) -> Result<(TxId, u32, u32), RestoreError> {
    let out_display = output.display().to_string();
    let ltx_err = |source| RestoreError::Ltx {
        output: out_display.clone(),
        file: None,
        source,
    };
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| RestoreError::Io {
            path: path.clone(),
            source,
        }
    };
    let decoders = readers
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            Decoder::new(r).map_err(|e| ltx::Error::Input {
                index: i,
                source: Box::new(e),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(ltx_err)?;
    let compactor = Compactor::new(decoders).map_err(ltx_err)?;
    let file = create_private_new(tmp).map_err(io(tmp))?;
    let restored = compactor
        .restore(BufWriter::with_capacity(4 << 20, file))
        .map_err(ltx_err)?;
    let file = restored
        .writer
        .into_inner()
        .map_err(|e| io(tmp)(e.into_error()))?;
    file.sync_all().map_err(io(tmp))?;
    drop(file);
    integrity_check(tmp, check).map_err(|result| RestoreError::Integrity {
        output: out_display.clone(),
        check: check.pragma().unwrap_or("integrity_check"),
        result,
    })?;
    std::fs::rename(tmp, output).map_err(io(output))?;
    fsync_parent(output).map_err(io(output))?;
    Ok((restored.txid, restored.page_size, restored.commit))
}

const URI_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Opens `path` read-only and immutable (no `-wal`/`-shm` created) for SQL checks.
pub fn open_immutable(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let uri = format!(
        "file:{}?immutable=1",
        utf8_percent_encode(&path.to_string_lossy(), URI_PATH)
    );
    rusqlite::Connection::open_with_flags(
        uri,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
}

/// Runs the check on a closed database file; `Err` holds SQLite's complaint.
pub fn integrity_check(path: &Path, check: IntegrityCheck) -> Result<(), String> {
    let Some(pragma) = check.pragma() else {
        return Ok(());
    };
    let conn = open_immutable(path).map_err(|e| e.to_string())?;
    let mut stmt = conn
        .prepare(&format!("PRAGMA {pragma}"))
        .map_err(|e| e.to_string())?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| e.to_string())?;
    if rows.len() == 1 && rows[0] == "ok" {
        Ok(())
    } else {
        Err(rows.join("; "))
    }
}

/// A timestamp for messages (`2026-11-26T02:25:36.935Z`).
pub fn describe_time(t: DateTime<Utc>) -> String {
    format_rfc3339_nano(t)
}

/// Writes the restore progress line the CLI prints (to any writer, e.g. stderr).
pub fn write_progress(w: &mut dyn Write, p: &RestoreProgress) -> std::io::Result<()> {
    let mb = |b: u64| b as f64 / 1e6;
    writeln!(
        w,
        "restore: {}/{} files, {:.1}/{:.1} MB, {:.1}s",
        p.files_done,
        p.files_total,
        mb(p.bytes),
        mb(p.bytes_total),
        p.elapsed.as_secs_f64()
    )
}
