//! Serving connections: the accept loop of every listener (API, admin, pprof) and the limits
//! that hold per connection, whatever a client does with its socket.
//!
//! - **Connection cap** ([`ConnLimits::max_connections`]): a flood of sockets can never take
//!   the process's file descriptors. A connection arriving at the cap makes room: the open
//!   connection that has waited longest without a request in progress (idle keep-alive, a
//!   request head still arriving, an answer the client does not read; in that order) is
//!   closed. Holding every place thus takes a request in progress on each, never merely open
//!   sockets; only when every connection has one does the new one wait (accepted, unread)
//!   until a place frees.
//! - **Header read timeout**: a request head (request line and headers) must be complete within
//!   [`ConnLimits::header_read_timeout`] of its first byte (of the accept, for the first
//!   request); otherwise the connection is closed. Half a request line never holds a socket
//!   for long (slowloris).
//! - **Idle timeout**: a connection with no request being handled that moves no byte in
//!   either direction for [`ConnLimits::idle_timeout`] is closed: an idle keep-alive
//!   connection, or a client that stopped reading its response.
//!
//! While a request is being handled, the connection has no timeout of its own: the request's
//! time budget bounds the handler (its body arrives within it, 408; its statements run within
//! it, 504). A client that hangs up while its request is handled is noticed by hyper, which
//! drops the handler (a queued write is then dropped before it runs, see `db::writer`).
//! Connections speak HTTP/1.1 (as the Go version did; no h2c). On shutdown the listener
//! closes, idle connections close at once and busy ones after their response.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, TryAcquireError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Limits every connection of one listener lives by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Longest time from the first byte of a request head (or the accept) to its end.
    pub header_read_timeout: Duration,
    /// Longest time a connection without a request in progress may move no byte.
    pub idle_timeout: Duration,
    /// Most connections open at once on the listener.
    pub max_connections: usize,
}

/// The admin (metrics, health) and pprof listeners: a monitoring system needs a handful of
/// connections; their cap keeps a flood on them from taking descriptors the API needs.
pub const MONITORING_MAX_CONNECTIONS: usize = 64;

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
        }
    }
}

impl ConnLimits {
    /// The same timeouts with the monitoring listeners' cap.
    pub fn monitoring(self) -> ConnLimits {
        ConnLimits {
            max_connections: self.max_connections.min(MONITORING_MAX_CONNECTIONS),
            ..self
        }
    }
}

/// What a listener hands each request to: a function from the request to its response.
pub type HandlerFn = Arc<
    dyn Fn(http::Request<Body>) -> Pin<Box<dyn Future<Output = http::Response<Body>> + Send>>
        + Send
        + Sync,
>;

/// `router` as a listener's [`HandlerFn`].
pub fn from_router(router: Router) -> HandlerFn {
    Arc::new(move |req| {
        let router = router.clone();
        Box::pin(async move {
            match router.oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        })
    })
}

/// Serves `handler` on `listener` under `limits` until `stop` is cancelled, then waits for the
/// open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    handler: HandlerFn,
    limits: ConnLimits,
    stop: CancellationToken,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let open = Arc::new(OpenConns::default());
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The watchdog below owns the header timeout (hyper's would also cut idle connections).
    builder.header_read_timeout(None);
    let mut accept_errors = AcceptErrors::default();
    loop {
        let stream = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_errors.wait(&e).await;
                    continue;
                }
            },
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => match room(&permits, &open, &stop).await {
                Some(p) => p,
                None => break,
            },
        };
        let conn = Connection::new(stream, handler.clone(), &builder);
        let id = open.add(conn.state.clone());
        let watched = graceful.watch(conn.hyper);
        let open = open.clone();
        tokio::spawn(async move {
            conn.state.watch(watched, limits).await;
            open.remove(id);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// How often a connection waiting at the cap looks again for one to close, when every
/// connection had a request in progress.
const ROOM_RETRY: Duration = Duration::from_millis(250);

/// A place for a connection that arrived at the cap: an open connection without a request in
/// progress is closed to make it, or the place of the next one to end (`None`: stopping).
async fn room(
    permits: &Arc<Semaphore>,
    open: &OpenConns,
    stop: &CancellationToken,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    loop {
        open.close_one();
        tokio::select! {
            biased;
            _ = stop.cancelled() => return None,
            p = permits.clone().acquire_owned() => return p.ok(),
            _ = tokio::time::sleep(ROOM_RETRY) => {}
        }
    }
}

/// The open connections of one listener, to pick one to close at the cap.
#[derive(Default)]
struct OpenConns {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
}

impl OpenConns {
    fn add(&self, state: Arc<ConnState>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.conns.lock().insert(id, state);
        id
    }

    fn remove(&self, id: u64) {
        self.conns.lock().remove(&id);
    }

    /// Asks the connection that has waited longest without a request in progress to close
    /// (one whose client takes its answer first), unless one asked before is still closing.
    fn close_one(&self) {
        let conns = self.conns.lock();
        if conns.values().any(|c| c.closing.load(Ordering::Relaxed)) {
            return;
        }
        if let Some((_, _, c)) = conns
            .values()
            .filter_map(|c| c.waiting_since())
            .min_by_key(|(blocked, since, _)| (*blocked, *since))
        {
            c.close();
        }
    }
}

/// What a failed `accept` means: out of descriptors or memory (wait a little, so a busy loop
/// does not spin; logged at most once a second), or one connection that failed before it was
/// accepted (go on at once).
#[derive(Default)]
struct AcceptErrors {
    logged: Option<std::time::Instant>,
}

impl AcceptErrors {
    async fn wait(&mut self, e: &io::Error) {
        let exhausted = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        if self
            .logged
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.logged = Some(std::time::Instant::now());
            tracing::warn!(error = %e, "accepting a connection failed");
        }
        if exhausted {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

type HyperConn = hyper::server::conn::http1::Connection<TokioIo<Tracked>, Handler>;

/// One accepted connection: hyper's connection over the tracked socket, and its activity.
struct Connection {
    hyper: HyperConn,
    state: Arc<ConnState>,
}

impl Connection {
    fn new(
        stream: TcpStream,
        handler: HandlerFn,
        builder: &hyper::server::conn::http1::Builder,
    ) -> Connection {
        let state = Arc::new(ConnState::new());
        let io = TokioIo::new(Tracked {
            stream,
            state: state.clone(),
        });
        let handler = Handler {
            handler,
            state: state.clone(),
        };
        Connection {
            hyper: builder.serve_connection(io, handler),
            state,
        }
    }
}

/// The handler as hyper's service, marking the connection busy while it runs.
struct Handler {
    handler: HandlerFn,
    state: Arc<ConnState>,
}

impl hyper::service::Service<http::Request<Incoming>> for Handler {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let busy = Busy::start(self.state.clone());
        let resp = (self.handler)(req.map(Body::new));
        Box::pin(async move {
            let resp = resp.await;
            drop(busy);
            Ok(resp)
        })
    }
}

/// Milliseconds since the connection was accepted (0 is the accept itself).
fn millis(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What the watchdog knows about a connection. Times are milliseconds since the accept, plus
/// one (0: not set).
struct ConnState {
    base: Instant,
    /// Requests whose handler is running.
    busy: AtomicU32,
    /// When the current request head began (its first byte; the accept for the first one).
    head_started: AtomicU64,
    /// When a byte last moved either way, or a handler finished.
    last_activity: AtomicU64,
    /// The last write to the socket could not complete: the client does not take its answer.
    write_blocked: AtomicBool,
    /// Asked to close to make room at the cap ([`OpenConns::close_one`]).
    closing: AtomicBool,
    close: Notify,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            base: Instant::now(),
            busy: AtomicU32::new(0),
            head_started: AtomicU64::new(1),
            last_activity: AtomicU64::new(1),
            write_blocked: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        }
    }

    /// For a connection without a request in progress: whether its client does not take its
    /// answer (closed last), since when it has waited (a request head's first byte, else its
    /// last activity), and itself. `None` while a handler runs.
    fn waiting_since(&self) -> Option<(bool, Instant, &ConnState)> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let head = self.head_started.load(Ordering::Relaxed);
        let since = if head != 0 {
            head
        } else {
            self.last_activity.load(Ordering::Relaxed)
        };
        let at = self.base + Duration::from_millis(since.saturating_sub(1));
        Some((self.write_blocked.load(Ordering::Relaxed), at, self))
    }

    /// Asks the watchdog to close the connection (unless a request is in progress by then).
    fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        self.close.notify_one();
    }

    fn now(&self) -> u64 {
        millis(self.base).saturating_add(1)
    }

    /// Bytes moved (`read`: they came from the client).
    fn moved(&self, read: bool) {
        let now = self.now();
        self.last_activity.store(now, Ordering::Relaxed);
        if read && self.busy.load(Ordering::Relaxed) == 0 {
            // The first byte of the next request head starts its clock.
            let _ =
                self.head_started
                    .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// The outcome of a write to the socket.
    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        self.write_blocked.store(r.is_pending(), Ordering::Relaxed);
        if matches!(r, Poll::Ready(Ok(n)) if *n > 0) {
            self.moved(false);
        }
    }

    /// When the connection must be closed if nothing changes (`None`: a handler is running).
    fn deadline(&self, limits: &ConnLimits) -> Option<u64> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let head = self.head_started.load(Ordering::Relaxed);
        let idle = self
            .last_activity
            .load(Ordering::Relaxed)
            .saturating_add(duration_millis(limits.idle_timeout));
        if head != 0 {
            Some(
                head.saturating_add(duration_millis(limits.header_read_timeout))
                    .min(idle),
            )
        } else {
            Some(idle)
        }
    }

    /// Drives the connection until it ends or breaks a limit (then it is dropped: closed).
    async fn watch<F: Future>(&self, conn: F, limits: ConnLimits) {
        tokio::pin!(conn);
        loop {
            let wake = match self.deadline(&limits) {
                Some(at) if at <= self.now() => {
                    tracing::debug!("closing a connection: header read or idle timeout");
                    return;
                }
                Some(at) => self.base + Duration::from_millis(at - 1),
                // A handler is running: look again later (its budget bounds it).
                None => Instant::now() + limits.idle_timeout.min(limits.header_read_timeout),
            };
            tokio::select! {
                _ = &mut conn => return,
                _ = tokio::time::sleep_until(wake) => {}
                _ = self.close.notified() => {
                    if self.busy.load(Ordering::Relaxed) == 0 {
                        tracing::debug!("closing a connection without a request in progress to make room at the cap");
                        return;
                    }
                    // A request began meanwhile: it stays; the listener asks another.
                    self.closing.store(false, Ordering::Relaxed);
                }
            }
        }
    }
}

fn duration_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A running handler: the connection's timeouts pause until it is dropped.
struct Busy(Arc<ConnState>);

impl Busy {
    fn start(state: Arc<ConnState>) -> Busy {
        state.busy.fetch_add(1, Ordering::Relaxed);
        state.head_started.store(0, Ordering::Relaxed);
        Busy(state)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let now = self.0.now();
        self.0.last_activity.store(now, Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The socket, noting every byte that moves.
struct Tracked {
    stream: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.moved(true);
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.state.wrote(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.state.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_follow_the_connection_state() {
        let limits = ConnLimits {
            header_read_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(1000),
            max_connections: 1,
        };
        let s = ConnState::new();
        // A fresh connection: the first request head is due within the header timeout.
        assert_eq!(s.deadline(&limits), Some(101));
        let busy = Busy::start(Arc::new(ConnState::new()));
        assert_eq!(busy.0.deadline(&limits), None);
        drop(busy);
        // After a handler: idle until the next head's first byte.
        let s = Arc::new(ConnState::new());
        let busy = Busy::start(s.clone());
        drop(busy);
        let idle = s.deadline(&limits).unwrap();
        assert!(idle >= 1001, "{idle}");
        s.moved(true);
        let head = s.deadline(&limits).unwrap();
        assert!(head < idle + 1000 && head >= 101, "{head}");
    }
}
