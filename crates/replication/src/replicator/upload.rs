//! The upload task: local L0 files to the replica, one upload in flight at a time.
//!
//! Syncs never wait for uploads. When an upload returns, every local L0 file not yet on the
//! replica goes up as ONE object: consecutive files merged into one L0 file `<min>-<max>`
//! ([`merge_l0`]), so object-store PUTs per second are bounded by the upload round trip,
//! not by the commit rate. A batch is bounded ([`MAX_MERGE_BYTES`] of input, at most
//! `max-sync-ltx-files` or [`MAX_MERGE_FILES`] files; the first batch after start-up always
//! [`MAX_MERGE_FILES`], see `upload_loop`); the rest goes in the next object at once. A
//! failed upload is retried with the same object (it may have landed all the same), so
//! objects on the replica never overlap. When the configuration sets the replica's
//! `sync-interval` explicitly, it is the shortest time between the starts of two uploads (a
//! cost cap); by default there is none.
//!
//! Once the replica holds a batch and compaction into L1 has read it, its local files are
//! deleted ([`prune_local_l0`]), except the newest local L0 file, which is the sync
//! position.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use ltx::{Compactor, Decoder, Encoder, FileName, HEADER_FLAG_NO_CHECKSUM, Header, TxId};
use tokio_util::sync::CancellationToken;

use crate::client::ClientError;
use crate::health::Component;
use crate::level::{Level, timestamp_from_millis};
use crate::meta::MetaDir;

use super::own_files::another_writer;
use super::shared::Shared;

/// Input bytes above which a batch is split into several objects (the merged object is
/// built in memory; it is never larger than its inputs).
pub(crate) const MAX_MERGE_BYTES: u64 = 32 << 20;
/// Most local L0 files merged into one object (each is open while the merge runs).
pub(crate) const MAX_MERGE_FILES: usize = 512;

/// The upload task. See the module docs.
pub(super) async fn upload_loop(shared: Arc<Shared>, mut remote: TxId, stop: CancellationToken) {
    let mut rx = shared.progress.subscribe();
    let max_files = shared
        .db
        .replica
        .max_sync_ltx_files
        .unwrap_or(MAX_MERGE_FILES)
        .clamp(1, MAX_MERGE_FILES);
    let floor = shared.db.replica.upload_interval;
    let mut last_start: Option<Instant> = None;
    let mut retry: Option<TxId> = None;
    let first = remote;
    loop {
        let local = tokio::select! {
            _ = stop.cancelled() => return,
            p = rx.wait_for(|p| p.local_txid > remote) => match p {
                Ok(p) => p.local_txid,
                Err(_) => return,
            },
        };
        if let (Some(floor), Some(last)) = (floor, last_start) {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until((last + floor).into()) => {}
            }
        }
        // Whatever was synced meanwhile goes into this upload too, except when retrying: a
        // failed upload may have landed all the same (the response was lost), so the retry
        // sends the same object again (same name, same bytes), never a larger one that would
        // overlap it on the replica.
        let retrying = retry.take();
        let upto = retrying.unwrap_or_else(|| local.max(shared.progress.positions().local_txid));
        let started = Instant::now();
        last_start = Some(started);
        // The first object after the start holds at least the TXIDs of the predecessor's last
        // upload, whatever `max-sync-ltx-files` says now (it may have been lowered across the
        // restart): that upload may land late, and our first one must then reach beyond it,
        // never end inside it (see `own_files`). Retries plan the same object.
        let limit = if remote == first {
            MAX_MERGE_FILES
        } else {
            max_files
        };
        let uploaded = tokio::select! {
            _ = stop.cancelled() => return,
            r = upload_batch(&shared, remote, upto, limit) => r,
        };
        match uploaded {
            Ok(Sent {
                name,
                size,
                files,
                put,
            }) => {
                remote = name.max;
                shared.own_files.landed();
                shared.progress.uploaded(remote);
                *shared.last_upload.lock() = Some(SystemTime::now());
                shared.health.ok(Component::Upload);
                if let Some(m) = &shared.metrics {
                    m.add_bytes_replicated(size);
                    m.set_replicated_txid(remote);
                }
                tracing::debug!(db = %shared.db_path.display(), file = %name, size, files, took_ms = started.elapsed().as_secs_f64() * 1e3, put_ms = put.as_secs_f64() * 1e3, "ltx file uploaded");
                prune(&shared, remote).await;
            }
            Err((_, UploadError::AnotherWriter(_))) => return,
            Err((planned, e)) => {
                // A failure before the batch was planned keeps the object being retried.
                retry = planned.or(retrying);
                let wait = shared
                    .health
                    .error_stalled(Component::Upload, &e, e.stalled());
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// One object uploaded.
pub(super) struct Sent {
    name: FileName,
    size: u64,
    /// Local L0 files it holds.
    files: usize,
    /// The object store's request alone (no planning, reading or merging).
    put: Duration,
}

/// Uploads the local L0 files after `remote` (up to `local`, within the batch bounds) as one
/// object; returns what it sent, or the error and the last TXID of the batch it tried (if it
/// got that far).
async fn upload_batch(
    shared: &Shared,
    remote: TxId,
    local: TxId,
    max_files: usize,
) -> Result<Sent, (Option<TxId>, UploadError)> {
    // Planned and read (or merged) in one blocking call: each hop to a blocking thread
    // waits for a core, and on a loaded machine the hops of a small upload took as long as
    // its PUT, on the path of every synchronous write.
    let meta = shared.meta.clone();
    let (last, ready) = tokio::task::spawn_blocking(move || {
        let batch = plan_batch(&meta, remote, local, max_files)?;
        let last = batch.last().copied();
        Ok::<_, UploadError>((last, ready_object(&meta, &batch)))
    })
    .await
    .map_err(|e| (None, UploadError::Task(e.to_string())))?
    .map_err(|e| (None, e))?;
    let ready = ready.map_err(|e| (last, e))?;
    send_ready(shared, ready).await.map_err(|e| (last, e))
}

/// Uploads the local L0 files of `batch` (consecutive TXIDs) as one object.
pub(super) async fn send_batch(shared: &Shared, batch: Vec<TxId>) -> Result<Sent, UploadError> {
    let meta = shared.meta.clone();
    let ready = tokio::task::spawn_blocking(move || ready_object(&meta, &batch))
        .await
        .map_err(|e| UploadError::Task(e.to_string()))??;
    send_ready(shared, ready).await
}

/// The object of a batch, ready to send: in memory (one small file, or several merged), or a
/// large single file to stream from disk.
enum Ready {
    Bytes {
        name: FileName,
        bytes: Vec<u8>,
        created_at: chrono::DateTime<chrono::Utc>,
        files: usize,
    },
    Stream(TxId),
}

/// Reads the local L0 files of `batch` (consecutive TXIDs, at least one) into the object
/// that holds them (blocking).
fn ready_object(meta: &MetaDir, batch: &[TxId]) -> Result<Ready, UploadError> {
    let created_at =
        |h: &Header| timestamp_from_millis(h.timestamp).unwrap_or_else(chrono::Utc::now);
    if let [txid] = batch {
        let path = meta.l0_path(*txid);
        let local = |source| UploadError::Local {
            path: path.display().to_string(),
            source,
        };
        let size = std::fs::metadata(&path).map_err(local)?.len();
        if size > STREAM_UPLOAD_ABOVE {
            return Ok(Ready::Stream(*txid));
        }
        let bytes = std::fs::read(&path).map_err(local)?;
        let bad = |message: String| UploadError::BadLocal {
            path: path.display().to_string(),
            message,
        };
        let head: &[u8; ltx::HEADER_SIZE] = bytes
            .first_chunk()
            .ok_or_else(|| bad(format!("{} bytes: shorter than a header", bytes.len())))?;
        let header = Header::from_bytes(head).map_err(|e| bad(e.to_string()))?;
        return Ok(Ready::Bytes {
            name: FileName::new(*txid, *txid),
            bytes,
            created_at: created_at(&header),
            files: 1,
        });
    }
    let merged = merge_l0(meta, batch)?;
    Ok(Ready::Bytes {
        name: merged.name,
        created_at: created_at(&merged.header),
        bytes: merged.bytes,
        files: batch.len(),
    })
}

/// Sends a [`Ready`] object (conditional create, see [`create_l0`]).
async fn send_ready(shared: &Shared, ready: Ready) -> Result<Sent, UploadError> {
    match ready {
        Ready::Stream(txid) => {
            let (size, put) = stream_one(shared, txid).await?;
            Ok(Sent {
                name: FileName::new(txid, txid),
                size,
                files: 1,
                put,
            })
        }
        Ready::Bytes {
            name,
            bytes,
            created_at,
            files,
        } => {
            let size = bytes.len() as u64;
            let put = Instant::now();
            create_l0(shared, name, bytes.into(), created_at).await?;
            Ok(Sent {
                name,
                size,
                files,
                put: put.elapsed(),
            })
        }
    }
}

/// The TXIDs of the next object: `remote + 1` on, up to `local`, while the inputs stay
/// within [`MAX_MERGE_BYTES`] and `max_files` (always at least one file).
fn plan_batch(
    meta: &MetaDir,
    remote: TxId,
    local: TxId,
    max_files: usize,
) -> Result<Vec<TxId>, UploadError> {
    let mut batch = Vec::new();
    let mut bytes = 0u64;
    for t in remote.get() + 1..=local.get() {
        let txid = TxId(t);
        let path = meta.l0_path(txid);
        let size = std::fs::metadata(&path)
            .map_err(|source| UploadError::Local {
                path: path.display().to_string(),
                source,
            })?
            .len();
        if !batch.is_empty() && (bytes + size > MAX_MERGE_BYTES || batch.len() >= max_files) {
            break;
        }
        bytes += size;
        batch.push(txid);
    }
    Ok(batch)
}

/// Consecutive L0 files merged into one.
pub(crate) struct MergedL0 {
    pub name: FileName,
    pub header: Header,
    pub bytes: Vec<u8>,
}

/// Merges the local L0 files of `txids` (consecutive, oldest first) into one L0 file
/// `<first>-<last>` with the ltx crate's compactor: the newest image of each page and the
/// commit and timestamp of the last file (as a compaction), plus what only an L0 file has:
/// the checksum flags and pre-apply checksum of the first file, the post-apply checksum of
/// the last, and the WAL fields (offset, size, salts) of the last, so that a restart that
/// finds this file at the replica's tip can check it against the local WAL like the last
/// file itself.
pub(crate) fn merge_l0(meta: &MetaDir, txids: &[TxId]) -> Result<MergedL0, UploadError> {
    let open = |txid: TxId| -> Result<Decoder<std::io::BufReader<std::fs::File>>, UploadError> {
        let path = meta.l0_path(txid);
        let display = path.display().to_string();
        let file = std::fs::File::open(&path).map_err(|source| UploadError::Local {
            path: display.clone(),
            source,
        })?;
        Decoder::new(std::io::BufReader::with_capacity(64 << 10, file)).map_err(|e| {
            UploadError::BadLocal {
                path: display,
                message: e.to_string(),
            }
        })
    };
    let decoders = txids
        .iter()
        .map(|&t| open(t))
        .collect::<Result<Vec<_>, _>>()?;
    let bad = |e: ltx::Error| UploadError::BadLocal {
        path: meta.level_dir(Level::L0).display().to_string(),
        message: format!("merging L0 files {txids:?}: {e}"),
    };
    let compactor = Compactor::new(decoders).map_err(bad)?;
    let (Some(first), Some(last)) = (
        compactor.input_headers().next().copied(),
        compactor.input_headers().last().copied(),
    ) else {
        return Err(bad(ltx::Error::NoInputs));
    };
    let header = Header {
        flags: first.flags,
        pre_apply_checksum: first.pre_apply_checksum,
        wal_offset: last.wal_offset,
        wal_size: last.wal_size,
        wal_salt1: last.wal_salt1,
        wal_salt2: last.wal_salt2,
        ..*compactor.output_header()
    };
    let mut enc = Encoder::new(Vec::new(), header).map_err(bad)?;
    let inputs = compactor.merge(&mut enc).map_err(bad)?;
    if header.flags & HEADER_FLAG_NO_CHECKSUM == 0
        && let Some(last) = inputs.last()
    {
        enc.set_post_apply_checksum(last.trailer.post_apply_checksum);
    }
    let encoded = enc.finish().map_err(bad)?;
    Ok(MergedL0 {
        name: FileName::new(header.min_txid, header.max_txid),
        header,
        bytes: encoded.writer,
    })
}

/// Prunes local L0 files (see [`prune_local_l0`]) once the replica holds every TXID up to
/// `replicated`; called after each upload and after each compaction into L1.
pub(crate) async fn prune(shared: &Arc<Shared>, replicated: TxId) {
    let s = shared.clone();
    let newest = shared.position().txid;
    let l1 =
        (!shared.config.levels.is_empty()).then(|| TxId(shared.l1_txid.load(Ordering::Acquire)));
    let result = tokio::task::spawn_blocking(move || {
        let mut pruned = s.pruned.lock();
        prune_local_l0(&s.meta, &mut pruned, replicated, newest, l1)
    })
    .await;
    let error = match result {
        Ok(Ok(_)) => return,
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::warn!(db = %shared.db_path.display(), error, "deleting local L0 files");
}

/// Where pruning of local L0 files stands (see [`prune_local_l0`]).
#[derive(Debug, Default)]
pub(crate) struct Pruned {
    /// Every local L0 file with a max TXID up to this is gone (`None`: not known yet; the
    /// first pruning lists the directory, later ones delete by name).
    upto: Option<TxId>,
}

/// Deletes the local L0 files that nothing needs any more: those the replica holds
/// (`max <= replicated`) and, when compaction into L1 is configured, that are compacted into
/// L1 (`max <= l1`, see below), but never the newest local L0 file (`max < newest`: it is
/// the sync position; the next sync continues from its WAL range, and start-up compares it
/// with the replica). This is safe because nothing else reads them:
/// - the files after the replica's end (which uploads and start-up's lineage check need)
///   are never deleted here;
/// - compaction into L1 reads the L0 files newer than L1, from these local files when they
///   are all here (no download) and from the replica otherwise; only files it has already
///   compacted are deleted, so no deletion races with a compaction reading them;
/// - a restart reads only the newest file; restores read the replica.
///
/// Without this, a sync per commit would pile up thousands of files a minute. Returns how
/// many files went.
pub(crate) fn prune_local_l0(
    meta: &MetaDir,
    pruned: &mut Pruned,
    replicated: TxId,
    newest: TxId,
    l1: Option<TxId>,
) -> std::io::Result<usize> {
    let limit = replicated
        .min(TxId(newest.get().saturating_sub(1)))
        .min(l1.unwrap_or(replicated));
    let names: Vec<FileName> = match pruned.upto {
        Some(upto) if upto >= limit => return Ok(0),
        Some(upto) => (upto.get() + 1..=limit.get())
            .map(|t| FileName::new(TxId(t), TxId(t)))
            .collect(),
        None => meta
            .list(Level::L0)?
            .into_iter()
            .filter(|n| n.max <= limit)
            .collect(),
    };
    meta.remove(Level::L0, &names)?;
    pruned.upto = Some(limit);
    Ok(names.len())
}

/// Errors of one upload.
#[derive(Debug, thiserror::Error)]
pub(super) enum UploadError {
    #[error("local L0 file {path}: {source}")]
    Local {
        path: String,
        source: std::io::Error,
    },
    #[error("local L0 file {path}: {message}")]
    BadLocal { path: String, message: String },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("upload task: {0}")]
    Task(String),
    #[error("another writer's level-0 file {0} is on the replica")]
    AnotherWriter(FileName),
}

/// L0 files larger than this are streamed from disk rather than read into memory.
pub(super) const STREAM_UPLOAD_ABOVE: u64 = 16 << 20;

/// Streams the local L0 file of `txid` (larger than [`STREAM_UPLOAD_ABOVE`]) from disk with
/// an ordinary PUT (no conditional create over a multipart upload); returns its size and
/// how long the object store's request took.
async fn stream_one(shared: &Shared, txid: TxId) -> Result<(u64, Duration), UploadError> {
    use futures::StreamExt;
    use tokio::io::AsyncReadExt;
    let path = shared.meta.l0_path(txid);
    let display = path.display().to_string();
    let local = |source| UploadError::Local {
        path: display.clone(),
        source,
    };
    let mut file = tokio::fs::File::open(&path).await.map_err(local)?;
    let size = file.metadata().await.map_err(local)?.len();
    let mut hb = [0u8; ltx::HEADER_SIZE];
    file.read_exact(&mut hb).await.map_err(local)?;
    let header = Header::from_bytes(&hb).map_err(|e| UploadError::BadLocal {
        path: display.clone(),
        message: e.to_string(),
    })?;
    let created_at = timestamp_from_millis(header.timestamp).unwrap_or_else(chrono::Utc::now);
    let name = FileName::new(txid, txid);
    let file = tokio::fs::File::open(&path).await.map_err(local)?;
    let replica = shared.client.describe();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20)
        .map(move |r| {
            r.map_err(|source| ClientError::Io {
                replica: replica.clone(),
                operation: "read local L0",
                path: PathBuf::new(),
                source,
            })
        })
        .boxed();
    shared.own_files.record(name);
    let put = Instant::now();
    shared
        .client
        .write(Level::L0, name, stream, created_at)
        .await?;
    Ok((size, put.elapsed()))
}

/// Uploads one level-0 object unless the name is taken (`crate::replicator::own_files`): a
/// file already there with other bytes is another writer's, and replication fails for good.
/// The same bytes are an earlier attempt of this upload that landed.
async fn create_l0(
    shared: &Shared,
    name: FileName,
    bytes: bytes::Bytes,
    created_at: chrono::DateTime<chrono::Utc>,
) -> Result<(), UploadError> {
    shared.own_files.record(name);
    let sent = bytes.clone();
    match shared
        .client
        .create_bytes(Level::L0, name, bytes, created_at)
        .await
    {
        Ok(_) => Ok(()),
        Err(ClientError::AlreadyExists { .. }) => {
            let there = shared
                .client
                .read(Level::L0, name, crate::client::ReadRange::Full)
                .await?;
            if there == sent {
                return Ok(());
            }
            another_writer(
                shared,
                Component::Upload,
                name,
                "was already there, with other contents, when this server uploaded its own",
            );
            Err(UploadError::AnotherWriter(name))
        }
        Err(e) => Err(e.into()),
    }
}

impl UploadError {
    /// See [`ClientError::stalled`].
    fn stalled(&self) -> Duration {
        match self {
            UploadError::Client(e) => e.stalled(),
            _ => Duration::ZERO,
        }
    }
}
