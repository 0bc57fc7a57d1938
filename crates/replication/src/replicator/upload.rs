//! The upload task: local L0 files to the replica, in TXID order.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ltx::{FileName, Header, TxId};
use tokio_util::sync::CancellationToken;

use crate::client::ClientError;
use crate::health::Component;
use crate::level::{Level, timestamp_from_millis};

use super::shared::Shared;

/// The upload task. See the module docs.
pub(super) async fn upload_loop(shared: Arc<Shared>, mut remote: TxId, stop: CancellationToken) {
    let mut rx = shared.progress.subscribe();
    let max = shared.db.replica.max_sync_ltx_files;
    loop {
        let local = tokio::select! {
            _ = stop.cancelled() => return,
            p = rx.wait_for(|p| p.local_txid > remote) => match p {
                Ok(p) => p.local_txid,
                Err(_) => return,
            },
        };
        let mut uploaded = 0usize;
        while remote < local {
            if stop.is_cancelled() {
                return;
            }
            let txid = TxId(remote.get() + 1);
            let started = Instant::now();
            let uploaded_one = tokio::select! {
                _ = stop.cancelled() => return,
                r = upload_one(&shared, txid) => r,
            };
            match uploaded_one {
                Ok(size) => {
                    remote = txid;
                    shared.progress.uploaded(txid);
                    *shared.last_upload.lock() = Some(SystemTime::now());
                    shared.health.ok(Component::Upload);
                    if let Some(m) = &shared.metrics {
                        m.add_bytes_replicated(size);
                        m.set_replicated_txid(txid);
                    }
                    tracing::debug!(db = %shared.db_path.display(), txid = %txid, size, took_ms = started.elapsed().as_millis() as u64, "ltx file uploaded");
                }
                Err(e) => {
                    let wait = shared
                        .health
                        .error_stalled(Component::Upload, &e, e.stalled());
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            }
            uploaded += 1;
            if max.is_some_and(|m| uploaded >= m) {
                tokio::task::yield_now().await;
                uploaded = 0;
            }
        }
    }
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
}

/// L0 files larger than this are streamed from disk rather than read into memory.
pub(super) const STREAM_UPLOAD_ABOVE: u64 = 16 << 20;

/// Uploads the local L0 file of `txid`; returns its size.
pub(super) async fn upload_one(shared: &Shared, txid: TxId) -> Result<u64, UploadError> {
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
    if size > STREAM_UPLOAD_ABOVE {
        use futures::StreamExt;
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
        shared
            .client
            .write(Level::L0, name, stream, created_at)
            .await?;
    } else {
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        bytes.extend_from_slice(&hb);
        file.read_to_end(&mut bytes).await.map_err(local)?;
        shared
            .client
            .write_bytes(Level::L0, name, bytes::Bytes::from(bytes), created_at)
            .await?;
    }
    Ok(size)
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
