//! Restoring a planned Litestream 0.3 backup ([`super::V03Plan`]) into a database file.
//!
//! The snapshot is streamed from the replica through an LZ4 frame decoder into
//! `<output>.tmp`. Then, one WAL index at a time, its segments are decompressed one after
//! the other into `<output>.tmp-wal` (each must start where the previous one ended), the
//! result is read as a WAL (header, salts, checksum chain) and its committed pages are
//! written into the database file, which is cut to the last commit's size — what a
//! checkpoint does, without a SQLite connection. A WAL index whose bytes are not all
//! committed frames of one WAL is a corrupt backup and an error, not a shorter restore.
//! Finally the file is fsynced, checked (`--integrity-check`), renamed to `<output>` and the
//! directory fsynced. Any failure removes the temporary files and leaves `<output>` alone.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lz4_flex::frame::FrameDecoder;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{Generation, V03Error, V03Plan, V03Segment};
use crate::client::ReplicaClient;
use crate::db_attachment::{wal_path, with_suffix};
use crate::meta::{fsync_parent, remove_if_exists};
use crate::restore::{RestoreError, RestoreOptions, RestoreProgress, integrity_check, sidecars};
use crate::wal::{WalReader, read_page};

/// A finished restore of a Litestream 0.3 backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredV03 {
    pub output: PathBuf,
    pub generation: Generation,
    /// The snapshot's WAL index.
    pub snapshot_index: u32,
    /// The last WAL index applied.
    pub index: u32,
    pub page_size: u32,
    /// Pages in the database.
    pub pages: u32,
    /// Compressed bytes read from the replica.
    pub bytes_read: u64,
    pub duration: Duration,
}

/// The SQLite database header's magic string.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Restores `plan` into `options.output` (which [`crate::restore::prepare_output`] should
/// have cleared). See the module docs.
pub async fn restore(
    client: &Arc<dyn ReplicaClient>,
    plan: &V03Plan,
    options: &RestoreOptions,
) -> Result<RestoredV03, RestoreError> {
    let started = Instant::now();
    let output = options.output.clone();
    let tmp = with_suffix(&output, ".tmp");
    for p in sidecars(&tmp) {
        let _ = std::fs::remove_file(p);
    }
    let mut progress = Progress::new(plan, options, started);
    let result = run(client, plan, options, &tmp, &mut progress).await;
    for p in &sidecars(&tmp)[1..] {
        let _ = std::fs::remove_file(p);
    }
    match result {
        Ok((page_size, pages)) => Ok(RestoredV03 {
            output,
            generation: plan.snapshot.generation,
            snapshot_index: plan.snapshot.index,
            index: plan.last_index(),
            page_size,
            pages,
            bytes_read: progress.bytes.load(Ordering::Relaxed),
            duration: started.elapsed(),
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

async fn run(
    client: &Arc<dyn ReplicaClient>,
    plan: &V03Plan,
    options: &RestoreOptions,
    tmp: &Path,
    progress: &mut Progress,
) -> Result<(u32, u32), RestoreError> {
    let out = options.output.display().to_string();
    let v03 = |source| RestoreError::V03 {
        output: out.clone(),
        source,
    };
    let io_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| RestoreError::Io {
            path: path.clone(),
            source,
        }
    };

    let snapshot_path = plan.snapshot.path();
    let file = File::create(tmp).map_err(io_err(tmp))?;
    let (file, _) = decompress_into(client, &snapshot_path, file, &progress.bytes, &out).await?;
    progress.file_done();
    file.sync_all().map_err(io_err(tmp))?;
    drop(file);
    let page_size = database_page_size(tmp)
        .map_err(io_err(tmp))?
        .ok_or_else(|| {
            v03(V03Error::Corrupt {
                file: snapshot_path.clone(),
                message: "the snapshot is not a SQLite database".to_string(),
            })
        })?;
    let mut pages = page_count(tmp, page_size).map_err(io_err(tmp))?;

    let tmp_wal = wal_path(tmp);
    for group in plan.segments.chunk_by(|a, b| a.index == b.index) {
        let mut wal = File::create(&tmp_wal).map_err(io_err(&tmp_wal))?;
        let mut len = 0u64;
        for segment in group {
            if segment.offset != len {
                return Err(v03(V03Error::MissingSegment {
                    generation: segment.generation,
                    index: segment.index,
                    expected: len,
                    found: segment.offset,
                }));
            }
            let (back, n) =
                decompress_into(client, &segment.path(), wal, &progress.bytes, &out).await?;
            wal = back;
            len += n;
            progress.file_done();
        }
        drop(wal);
        let first: V03Segment = group[0];
        let label = format!(
            "generation {} WAL index {:08x}",
            first.generation, first.index
        );
        let (db, w) = (tmp.to_path_buf(), tmp_wal.clone());
        let applied = tokio::task::spawn_blocking(move || apply_wal(&db, &w, page_size))
            .await
            .map_err(|e| RestoreError::Task(e.to_string()))?;
        match applied {
            Ok(Some(n)) => pages = n,
            Ok(None) => {}
            Err(Applied::Io(e)) => return Err(io_err(tmp)(e)),
            Err(Applied::Corrupt(message)) => {
                return Err(v03(V03Error::Corrupt {
                    file: label,
                    message,
                }));
            }
        }
    }
    remove_if_exists(&tmp_wal).map_err(io_err(&tmp_wal))?;
    OpenOptions::new()
        .write(true)
        .open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_err(tmp))?;

    let check = options.integrity_check;
    let (db, output) = (tmp.to_path_buf(), options.output.clone());
    let checked = tokio::task::spawn_blocking(move || integrity_check(&db, check))
        .await
        .map_err(|e| RestoreError::Task(e.to_string()))?;
    checked.map_err(|result| RestoreError::Integrity {
        output: out.clone(),
        check: check.pragma().unwrap_or("integrity_check"),
        result,
    })?;
    std::fs::rename(tmp, &output).map_err(io_err(&output))?;
    fsync_parent(&output).map_err(io_err(&output))?;
    Ok((page_size, pages))
}

/// Streams `rel` from the replica through an LZ4 frame decoder to the end of `out`; returns
/// `out` and the decompressed bytes written.
async fn decompress_into(
    client: &Arc<dyn ReplicaClient>,
    rel: &str,
    out: File,
    counter: &Arc<AtomicU64>,
    output: &str,
) -> Result<(File, u64), RestoreError> {
    let stream = client.open_path(rel).await?;
    let counter = counter.clone();
    let stream = stream.map(move |chunk| {
        chunk
            .inspect(|b| {
                counter.fetch_add(b.len() as u64, Ordering::Relaxed);
            })
            .map_err(io::Error::other)
    });
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    let file = rel.to_string();
    tokio::task::spawn_blocking(move || decompress(reader, out))
        .await
        .map_err(|e| RestoreError::Task(e.to_string()))?
        .map_err(|e| RestoreError::V03 {
            output: output.to_string(),
            source: V03Error::Corrupt {
                file,
                message: describe_read_error(&e),
            },
        })
}

/// Decompresses one LZ4 frame (or several, back to back) from `src` onto the end of `out`.
pub(super) fn decompress(src: impl Read, out: File) -> io::Result<(File, u64)> {
    let mut decoder = FrameDecoder::new(src);
    let mut writer = BufWriter::with_capacity(1 << 20, out);
    let n = io::copy(&mut decoder, &mut writer)?;
    let out = writer.into_inner().map_err(|e| e.into_error())?;
    Ok((out, n))
}

/// What went wrong reading a compressed file, in words.
pub(super) fn describe_read_error(e: &io::Error) -> String {
    if let Some(lz4) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<lz4_flex::frame::Error>())
    {
        return format!("not a valid LZ4 frame ({lz4})");
    }
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return "the LZ4 frame is cut short".to_string();
    }
    e.to_string()
}

/// The page size from a database file's header; `None` when the file is not a SQLite
/// database.
fn database_page_size(path: &Path) -> io::Result<Option<u32>> {
    let mut header = [0u8; 100];
    let file = File::open(path)?;
    let mut read = 0;
    while read < header.len() {
        match file.read_at(&mut header[read..], read as u64)? {
            0 => return Ok(None),
            n => read += n,
        }
    }
    if &header[..16] != SQLITE_MAGIC {
        return Ok(None);
    }
    let raw = u32::from(u16::from_be_bytes([header[16], header[17]]));
    let size = if raw == 1 { 65536 } else { raw };
    Ok(ltx::is_valid_page_size(size).then_some(size))
}

fn page_count(path: &Path, page_size: u32) -> io::Result<u32> {
    let len = std::fs::metadata(path)?.len();
    Ok(u32::try_from(len / u64::from(page_size)).unwrap_or(u32::MAX))
}

enum Applied {
    Io(io::Error),
    Corrupt(String),
}

/// Writes the committed pages of the WAL file `wal` into the database `db` and cuts it to
/// the last commit's size; returns that size in pages (`None`: no commit in the WAL).
fn apply_wal(db: &Path, wal: &Path, page_size: u32) -> Result<Option<u32>, Applied> {
    let file = File::open(wal).map_err(Applied::Io)?;
    let len = file.metadata().map_err(Applied::Io)?.len();
    let mut reader = WalReader::open(&file).map_err(|e| Applied::Corrupt(e.to_string()))?;
    let header = *reader.header();
    if header.page_size != page_size {
        return Err(Applied::Corrupt(format!(
            "the WAL has pages of {} bytes, the database of {page_size}",
            header.page_size
        )));
    }
    let scan = reader
        .read_committed(None)
        .map_err(|e| Applied::Corrupt(e.to_string()))?;
    if scan.end_offset != len {
        return Err(Applied::Corrupt(format!(
            "only the first {} of its {len} bytes are committed frames of one WAL \
             (stopped: {:?}); the backup is damaged",
            scan.end_offset, scan.stop
        )));
    }
    let Some(commit) = scan.commit else {
        return Ok(None);
    };
    let out = OpenOptions::new()
        .write(true)
        .open(db)
        .map_err(Applied::Io)?;
    let mut page = vec![0u8; page_size as usize];
    for (&pgno, &offset) in &scan.pages {
        read_page(&file, &header, offset, &mut page)
            .map_err(|e| Applied::Corrupt(e.to_string()))?;
        out.write_all_at(&page, u64::from(pgno - 1) * u64::from(page_size))
            .map_err(Applied::Io)?;
    }
    out.set_len(u64::from(commit) * u64::from(page_size))
        .map_err(Applied::Io)?;
    Ok(Some(commit))
}

/// Files and bytes done, reported through the restore's progress callback at most once a
/// second.
struct Progress {
    bytes: Arc<AtomicU64>,
    files_done: u64,
    files_total: u64,
    bytes_total: u64,
    started: Instant,
    last: Instant,
    report: Option<crate::restore::ProgressFn>,
}

impl Progress {
    fn new(plan: &V03Plan, options: &RestoreOptions, started: Instant) -> Progress {
        Progress {
            bytes: Arc::new(AtomicU64::new(0)),
            files_done: 0,
            files_total: plan.files() as u64,
            bytes_total: plan.bytes(),
            started,
            last: started,
            report: options.progress.clone(),
        }
    }

    fn file_done(&mut self) {
        self.files_done += 1;
        let Some(report) = &self.report else {
            return;
        };
        if self.last.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last = Instant::now();
        report(RestoreProgress {
            files_done: self.files_done,
            files_total: self.files_total,
            bytes: self.bytes.load(Ordering::Relaxed),
            bytes_total: self.bytes_total,
            elapsed: self.started.elapsed(),
        });
    }
}
