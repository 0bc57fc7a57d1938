//! A pipe from a blocking writer to an async byte stream: snapshots and compactions encode
//! LTX files on a blocking thread while the replica client uploads them, without holding the
//! whole file in memory.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::client::{ByteStream, ClientError};

/// Chunk size handed to the uploader.
const CHUNK: usize = 1 << 20;

/// The blocking end. Call [`PipeWriter::finish`] when done; dropping it without finishing
/// (or [`PipeWriter::fail`]) makes the stream end with an error, so a half-written file is
/// never stored.
#[derive(Debug)]
pub(crate) struct PipeWriter {
    tx: Option<mpsc::Sender<Result<Bytes, ClientError>>>,
    /// Set by [`PipeWriter::finish`]; a stream that ends without it ends with an error.
    complete: Arc<AtomicBool>,
    buf: BytesMut,
    written: u64,
}

/// Creates a pipe; `depth` chunks may wait in it.
pub(crate) fn pipe(depth: usize) -> (PipeWriter, ByteStream) {
    let (tx, rx) = mpsc::channel(depth.max(1));
    let complete = Arc::new(AtomicBool::new(false));
    let stream = tokio_stream_from(rx, complete.clone());
    (
        PipeWriter {
            tx: Some(tx),
            complete,
            buf: BytesMut::with_capacity(CHUNK),
            written: 0,
        },
        stream,
    )
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Bytes, ClientError>>,
    complete: Arc<AtomicBool>,
) -> ByteStream {
    let mut ended = false;
    futures::stream::poll_fn(move |cx| {
        if ended {
            return std::task::Poll::Ready(None);
        }
        match rx.poll_recv(cx) {
            std::task::Poll::Ready(None) => {
                ended = true;
                if complete.load(Ordering::Acquire) {
                    std::task::Poll::Ready(None)
                } else {
                    std::task::Poll::Ready(Some(Err(ClientError::Config(
                        "LTX stream ended before the file was complete".into(),
                    ))))
                }
            }
            other => other,
        }
    })
    .boxed()
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "upload stopped")
}

impl PipeWriter {
    fn send(&mut self, chunk: Bytes) -> io::Result<()> {
        let tx = self.tx.as_ref().ok_or_else(closed)?;
        tx.blocking_send(Ok(chunk)).map_err(|_| closed())
    }

    /// Flushes and ends the stream successfully.
    pub(crate) fn finish(mut self) -> io::Result<u64> {
        self.flush()?;
        self.complete.store(true, Ordering::Release);
        self.tx = None;
        Ok(self.written)
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        self.written += data.len() as u64;
        if self.buf.len() >= CHUNK {
            let chunk = self.buf.split().freeze();
            self.send(chunk)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            self.send(chunk)?;
        }
        Ok(())
    }
}
