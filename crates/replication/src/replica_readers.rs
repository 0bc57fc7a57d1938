//! Reading many LTX files from a replica at once, for restore and compaction: every input
//! becomes a blocking [`Read`] that the ltx decoders consume on a blocking thread, fed by
//! async downloads.
//!
//! Files on a local file system (a file replica, or a local copy in the metadata directory)
//! are read directly. Remote files are fetched as ranged GETs of [`FetchOptions::chunk_size`]
//! bytes: up to [`FetchOptions::chunks_per_file`] chunks of one file in flight (delivered in
//! order), at most [`FetchOptions::parallelism`] requests in flight overall, each chunk retried
//! a few times. A slow consumer holds no request slot (a slot is released when its chunk has
//! arrived), so inputs consumed in any interleaving cannot starve each other; memory is
//! bounded by `chunks_per_file + 2` chunks per file.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{Semaphore, mpsc};

use crate::client::{ClientError, ReadRange, ReplicaClient};
use crate::level::LtxFileInfo;

/// How to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchOptions {
    /// Requests in flight overall (default 16).
    pub parallelism: usize,
    /// Bytes per ranged GET (default 4 MiB).
    pub chunk_size: u64,
    /// Chunks of one file in flight (default 4).
    pub chunks_per_file: usize,
    /// Attempts per chunk (default 4).
    pub attempts: usize,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            parallelism: 16,
            chunk_size: 4 << 20,
            chunks_per_file: 4,
            attempts: 4,
        }
    }
}

impl FetchOptions {
    /// The same, with at most 1 MiB per GET and two GETs of a file in flight: for reads that
    /// compare pages as they arrive (start-up checks), where prefetching whole chunks ahead
    /// would only hold memory (a file then costs at most about 4 MiB in flight, its chunks and
    /// the reader's queue together).
    pub fn for_comparison(self) -> FetchOptions {
        FetchOptions {
            chunk_size: self.chunk_size.min(1 << 20),
            chunks_per_file: self.chunks_per_file.min(2),
            ..self
        }
    }
}

/// Bytes and files fetched so far (shared with a progress reporter).
#[derive(Debug, Default)]
pub(crate) struct FetchProgress {
    pub bytes: AtomicU64,
    pub files_done: AtomicU64,
}

/// One input of a merge: the replica's file, or a local copy of it.
#[derive(Debug, Clone)]
pub struct Input {
    pub info: LtxFileInfo,
    /// Read this local file instead of the replica's (same bytes).
    pub local: Option<PathBuf>,
}

impl Input {
    /// The replica's files, read from the replica.
    pub fn remote(files: &[LtxFileInfo]) -> Vec<Input> {
        files
            .iter()
            .map(|f| Input {
                info: *f,
                local: None,
            })
            .collect()
    }
}

/// Opens every input as a blocking reader (in the given order). Must be called inside a
/// tokio runtime; the readers must be read from a blocking thread.
pub(crate) fn open_inputs(
    client: &Arc<dyn ReplicaClient>,
    inputs: &[Input],
    options: FetchOptions,
    progress: Arc<FetchProgress>,
) -> Vec<Box<dyn Read + Send>> {
    let slots = Arc::new(Semaphore::new(options.parallelism.max(1)));
    inputs
        .iter()
        .map(|input| {
            let local = input
                .local
                .clone()
                .or_else(|| client.local_path(input.info.level, input.info.name));
            if let Some(path) = local {
                return Box::new(LocalReader {
                    path,
                    file: None,
                    progress: progress.clone(),
                    size: input.info.size,
                    read: 0,
                }) as Box<dyn Read + Send>;
            }
            let (tx, rx) = mpsc::channel(2);
            tokio::spawn(produce(
                client.clone(),
                input.info,
                options,
                slots.clone(),
                tx,
            ));
            Box::new(ChannelReader {
                rx,
                current: Bytes::new(),
                progress: progress.clone(),
                size: input.info.size,
                read: 0,
            })
        })
        .collect()
}

/// Downloads one file chunk by chunk into `tx`.
async fn produce(
    client: Arc<dyn ReplicaClient>,
    info: LtxFileInfo,
    options: FetchOptions,
    slots: Arc<Semaphore>,
    tx: mpsc::Sender<io::Result<Bytes>>,
) {
    let chunk = options.chunk_size.max(64 * 1024);
    let ranges: Vec<(u64, u64)> = (0..info.size.div_ceil(chunk))
        .map(|i| (i * chunk, ((i + 1) * chunk).min(info.size)))
        .collect();
    let mut chunks = futures::stream::iter(ranges)
        .map(|(start, end)| {
            let client = client.clone();
            let slots = slots.clone();
            async move {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let result = {
                        let _slot = slots.acquire().await;
                        let range = if start == 0 && end == info.size {
                            ReadRange::Full
                        } else {
                            ReadRange::Bounded { start, end }
                        };
                        client.read(info.level, info.name, range).await
                    };
                    match result {
                        Ok(b) if b.len() as u64 == end - start => return Ok(b),
                        Ok(b) => {
                            if attempt >= options.attempts {
                                return Err(io::Error::new(
                                    io::ErrorKind::UnexpectedEof,
                                    format!(
                                        "{}/{}: expected {} bytes at offset {start}, got {}",
                                        info.level,
                                        info.name,
                                        end - start,
                                        b.len()
                                    ),
                                ));
                            }
                        }
                        Err(e) if attempt >= options.attempts || e.is_not_found() => {
                            return Err(to_io(e));
                        }
                        Err(e) => {
                            tracing::debug!(level = %info.level, name = %info.name, error = %e, attempt, "retrying download");
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
                }
            }
        })
        .buffered(options.chunks_per_file.max(1));
    while let Some(result) = chunks.next().await {
        let failed = result.is_err();
        if tx.send(result).await.is_err() || failed {
            return;
        }
    }
}

fn to_io(e: ClientError) -> io::Error {
    let kind = if e.is_not_found() {
        io::ErrorKind::NotFound
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, e.to_string())
}

/// A reader over chunks arriving on a channel.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    progress: Arc<FetchProgress>,
    size: u64,
    read: u64,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        count(&self.progress, &mut self.read, self.size, n);
        Ok(n)
    }
}

/// A local file, opened on first read (on the blocking thread).
struct LocalReader {
    path: PathBuf,
    file: Option<io::BufReader<std::fs::File>>,
    progress: Arc<FetchProgress>,
    size: u64,
    read: u64,
}

impl Read for LocalReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.file.is_none() {
            let f = std::fs::File::open(&self.path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))?;
            self.file = Some(io::BufReader::with_capacity(1 << 20, f));
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(0);
        };
        let n = file.read(buf)?;
        count(&self.progress, &mut self.read, self.size, n);
        Ok(n)
    }
}

fn count(progress: &FetchProgress, read: &mut u64, size: u64, n: usize) {
    progress.bytes.fetch_add(n as u64, Ordering::Relaxed);
    let before = *read;
    *read += n as u64;
    if before < size && *read >= size {
        progress.files_done.fetch_add(1, Ordering::Relaxed);
    }
}
