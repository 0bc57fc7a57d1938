//! A read's body streamed from the blocking thread that runs it to the HTTP response.
//!
//! The read runs on a blocking-pool connection and hands its output to a [`ChannelStream`]:
//! the response's head (or the whole answer, or an error) goes once through a oneshot
//! channel, then the body's chunks through a small bounded channel, so the read never runs
//! more than a few chunks ahead of the client. Every send waits at most until the request's
//! deadline; a client that reads too slowly, or is gone, stops the read. The response body
//! ([`ChunkBody`]) ends cleanly only after the read said so: a read cut short (deadline,
//! error) ends the body with an error, so hyper closes the connection without the final
//! chunk and the client sees a truncated response rather than a short one that looks whole.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use dialect::{ApiError, BodyStream, ErrorCode, ReadHead, ReadOutcome, ReadOutput};
use hyper::body::{Body, Frame, SizeHint};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

/// Chunks in flight between the read and the response.
const IN_FLIGHT: usize = 4;

/// How a read answers.
pub enum ReadReply {
    /// The body fit in memory.
    Whole(ReadOutput),
    /// The body streams.
    Streamed(ReadHead, ChunkBody),
}

enum Msg {
    Data(Bytes),
    End,
}

/// The blocking side: what the read writes to.
pub struct ChannelStream {
    first: Option<oneshot::Sender<Result<ReadReply, ApiError>>>,
    tx: mpsc::Sender<Msg>,
    rx: Option<mpsc::Receiver<Msg>>,
    started: bool,
    deadline: Instant,
    handle: Handle,
}

/// A stream for a read that must be done by `deadline`, and where its first answer arrives.
/// `handle` is the runtime the response is served on.
pub fn channel(
    deadline: Instant,
    handle: Handle,
) -> (
    ChannelStream,
    oneshot::Receiver<Result<ReadReply, ApiError>>,
) {
    let (first_tx, first_rx) = oneshot::channel();
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    (
        ChannelStream {
            first: Some(first_tx),
            tx,
            rx: Some(rx),
            started: false,
            deadline,
            handle,
        },
        first_rx,
    )
}

fn client_gone() -> ApiError {
    // Nobody will see it; it only stops the read.
    ApiError::new(499, ErrorCode::ClientGone, "The client is gone")
}

impl ChannelStream {
    fn send(&self, msg: Msg) -> Result<(), ApiError> {
        let msg = match self.tx.try_send(msg) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(client_gone()),
            Err(mpsc::error::TrySendError::Full(msg)) => msg,
        };
        let at = tokio::time::Instant::from_std(self.deadline);
        match self
            .handle
            .block_on(tokio::time::timeout_at(at, self.tx.send(msg)))
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(client_gone()),
            Err(_) => Err(ApiError::new(
                504,
                ErrorCode::QueryCanceled,
                "canceling statement due to statement timeout",
            )),
        }
    }

    /// Ends the read with its result: the whole answer or the error when nothing was streamed
    /// yet; else the end of the body, or (on an error) a cut.
    pub fn finish(mut self, result: Result<ReadOutcome, ApiError>) {
        if !self.started {
            let reply = match result {
                Ok(ReadOutcome::Whole(out)) => Ok(ReadReply::Whole(out)),
                Ok(_) => Err(ApiError::internal("a read stopped without an answer")),
                Err(e) => Err(e),
            };
            if let Some(first) = self.first.take() {
                let _ = first.send(reply);
            }
            return;
        }
        match result {
            Ok(ReadOutcome::Streamed) => {
                let _ = self.send(Msg::End);
            }
            Ok(_) => tracing::error!("a streamed read ended without its body"),
            Err(e) if e.code == ErrorCode::ClientGone => {}
            Err(e) => tracing::warn!(
                status = e.status,
                code = %e.code,
                message = %e.message,
                "a streamed read failed after its response began; the response is cut"
            ),
        }
    }
}

impl BodyStream for ChannelStream {
    fn start(&mut self, head: ReadHead, first: Vec<u8>) -> Result<(), ApiError> {
        let (Some(reply), Some(rx)) = (self.first.take(), self.rx.take()) else {
            return Err(ApiError::internal("a read started its stream twice"));
        };
        let body = ChunkBody { rx, done: false };
        reply
            .send(Ok(ReadReply::Streamed(head, body)))
            .map_err(|_| client_gone())?;
        self.started = true;
        self.send(Msg::Data(Bytes::from(first)))
    }

    fn chunk(&mut self, bytes: Vec<u8>) -> Result<(), ApiError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.send(Msg::Data(Bytes::from(bytes)))
    }
}

/// The response side: the body of a streamed read.
pub struct ChunkBody {
    rx: mpsc::Receiver<Msg>,
    done: bool,
}

impl Body for ChunkBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Msg::Data(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Msg::End)) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(Some(Err(std::io::Error::other(
                    "the read was cut short; the response is incomplete",
                ))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
