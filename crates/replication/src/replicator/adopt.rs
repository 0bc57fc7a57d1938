//! The replicator's half of adopting the replica's position at start-up: download the
//! replica's newest L0 file and re-head it for the attached database. Whether the adoption
//! still stands is decided in [`crate::adoption`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ltx::{Decoder, Encoder, FileName, Header};

use crate::client::{ReadRange, ReplicaClient};
use crate::level::{Level, LtxFileInfo};
use crate::meta::MetaDir;
use crate::sync::{Position, Syncer};

use super::error::StartError;

/// Downloads `info` into `<meta>/ltx/0/<name>.adopt.tmp` (a leftover is removed at the next
/// start, like every `*.tmp` file there).
pub(super) async fn download_for_adoption(
    client: &Arc<dyn ReplicaClient>,
    meta: &MetaDir,
    info: LtxFileInfo,
) -> Result<PathBuf, StartError> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let dir = meta.level_dir(Level::L0);
    let path = dir.join(format!("{}.adopt.tmp", info.name));
    let io = |e: std::io::Error| StartError::Adopt(format!("{}: {e}", path.display()));
    tokio::fs::create_dir_all(&dir).await.map_err(io)?;
    let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
    let mut stream = client.open(Level::L0, info.name, ReadRange::Full).await?;
    while let Some(chunk) = stream.next().await {
        file.write_all(&chunk?).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    Ok(path)
}

/// Re-heads the replica's newest L0 file (downloaded to `path`) for the freshly attached
/// database: same pages, commit and timestamp (so compactions that read it produce the same
/// bytes), but a WAL range of (32, 0) with the current WAL's salts, so the next sync continues
/// from the start of this WAL. Streams page by page.
pub(super) fn adopt(
    syncer: &Syncer,
    info: LtxFileInfo,
    path: &Path,
) -> Result<Position, StartError> {
    let err = |e: &dyn std::fmt::Display| StartError::Adopt(format!("{}: {e}", info.name));
    let salt = syncer
        .database()
        .wal_header()?
        .map(|h| h.salt)
        .unwrap_or_default();
    let file = std::fs::File::open(path).map_err(|e| err(&e))?;
    let mut dec =
        Decoder::new(std::io::BufReader::with_capacity(1 << 20, file)).map_err(|e| err(&e))?;
    let mut header: Header = *dec.header();
    header.wal_offset = crate::wal::WAL_HEADER_SIZE as i64;
    header.wal_size = 0;
    header.wal_salt1 = salt.salt1;
    header.wal_salt2 = salt.salt2;
    let name = FileName::new(header.min_txid, header.max_txid);
    syncer
        .meta()
        .write_with(Level::L0, name, |w| -> Result<(), ltx::Error> {
            let mut enc = Encoder::new(w, header)?;
            let mut page = vec![0u8; header.page_size as usize];
            while let Some(pgno) = dec.next_page(&mut page)? {
                enc.write_page(pgno, &page)?;
            }
            enc.finish()?;
            Ok(())
        })
        .map_err(|e| err(&e))?;
    dec.finish().map_err(|e| err(&e))?;
    tracing::info!(txid = %header.max_txid, "adopted the replica's newest L0 file as the local position");
    Ok(Position {
        txid: header.max_txid,
        header: Some(header),
    })
}
