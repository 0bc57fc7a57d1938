//! A fault-injecting TCP proxy, put between a program and a real server (the local S3
//! server) to make the network misbehave on demand: answer nothing, slow down, reset
//! connections, cut a request in the middle, refuse connections, hold requests and deliver
//! them late.
//!
//! Plain threads and blocking sockets (two pump threads per connection); the fault in force
//! is read before every chunk, so a change applies at once to open connections too.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetFault {
    /// Forward everything.
    #[default]
    Pass,
    /// Accept connections and read requests, never forward them nor answer: a server that
    /// hangs.
    Silent,
    /// Forward every chunk after this pause.
    Delay(Duration),
    /// Close every connection, open or new, abruptly.
    Reset,
    /// Forward at most this many request bytes per connection, then close it (an upload cut
    /// in the middle).
    CutAfter(u64),
    /// Close new connections at once (the server refuses).
    Refuse,
    /// Forward requests, swallow the answers: an upload that lands while its client never
    /// hears so (a lost response).
    DropResponses,
    /// Read requests and keep them, forwarding nothing until the fault changes; then send
    /// what was kept, even for a client that has gone meanwhile (a request that was on the
    /// wire when its sender died, delivered late).
    Hold,
}

struct Shared {
    upstream: SocketAddr,
    fault: Mutex<NetFault>,
    /// Bumped by every fault change: connections opened under an older fault re-check.
    epoch: AtomicU64,
    stop: AtomicBool,
    /// Open connections (client side, server side), to close them on a reset.
    conns: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
    /// Connections accepted (for reports).
    accepted: AtomicU64,
}

impl Shared {
    fn fault(&self) -> NetFault {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running proxy; dropping it stops it (open connections are closed).
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("fault", &self.shared.fault())
            .finish()
    }
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 (a free port) in front of `upstream` (`host:port`).
    pub fn start(upstream: &str) -> std::io::Result<FaultProxy> {
        let upstream = std::net::ToSocketAddrs::to_socket_addrs(upstream)?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("{upstream}: no address")))?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            fault: Mutex::new(NetFault::Pass),
            epoch: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            accepted: AtomicU64::new(0),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || accept_loop(listener, s))?;
        Ok(FaultProxy { addr, shared })
    }

    /// `127.0.0.1:port` of the proxy.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port` of the proxy, as an S3 `endpoint=` takes it.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// The fault in force.
    pub fn fault(&self) -> NetFault {
        self.shared.fault()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Connections open now (a direction still being copied).
    pub fn open_connections(&self) -> usize {
        self.shared
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Puts `fault` in force, for open connections too.
    pub fn set(&self, fault: NetFault) {
        *self.shared.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
        self.shared.epoch.fetch_add(1, Ordering::Relaxed);
        if fault == NetFault::Reset {
            self.close_all();
        }
    }

    /// Closes every open connection.
    pub fn close_all(&self) {
        let conns = self.shared.conns.lock().unwrap_or_else(|e| e.into_inner());
        for (a, b) in conns.values() {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.close_all();
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(client) = client else { continue };
        let id = shared.accepted.fetch_add(1, Ordering::Relaxed);
        match shared.fault() {
            NetFault::Refuse | NetFault::Reset => {
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
            _ => {}
        }
        let s = shared.clone();
        let _ = std::thread::Builder::new()
            .name("fault-proxy-conn".into())
            .spawn(move || connection(id, client, s));
    }
}

fn connection(id: u64, client: TcpStream, shared: Arc<Shared>) {
    let _ = client.set_nodelay(true);
    let upstream = match TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5)) {
        Ok(u) => u,
        Err(_) => {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    if let (Ok(a), Ok(b)) = (client.try_clone(), upstream.try_clone()) {
        let mut conns = shared.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.insert(id, (a, b));
    }
    let s = shared.clone();
    let up = std::thread::Builder::new()
        .name("fault-proxy-up".into())
        .spawn(move || pump(c2, u2, &s, true));
    pump(upstream, client, &shared, false);
    if let Ok(h) = up {
        let _ = h.join();
    }
    shared
        .conns
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
}

/// Copies `from` → `to` under the fault in force; `request` is the client → server side.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared, request: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent: u64 = 0;
    let mut cut_epoch = None;
    let mut held: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            // Holding (a read timeout is set): a live client may wait for its answer, so
            // what was kept goes out as soon as the hold ends, without more to read.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if shared.fault() != NetFault::Hold {
                    if to.write_all(&std::mem::take(&mut held)).is_err() {
                        break;
                    }
                    let _ = from.set_read_timeout(None);
                }
                continue;
            }
            Err(_) => break,
        };
        if request && shared.fault() == NetFault::Hold {
            held.extend_from_slice(&buf[..n]);
            let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
            continue;
        }
        if !held.is_empty() && to.write_all(&std::mem::take(&mut held)).is_err() {
            break;
        }
        let mut chunk = &buf[..n];
        match shared.fault() {
            NetFault::Pass | NetFault::Refuse => {}
            NetFault::Silent => continue,
            NetFault::Delay(d) => std::thread::sleep(d),
            NetFault::Reset => break,
            NetFault::CutAfter(limit) if request => {
                let epoch = shared.epoch.load(Ordering::Relaxed);
                if cut_epoch != Some(epoch) {
                    cut_epoch = Some(epoch);
                    sent = 0;
                }
                let room = limit.saturating_sub(sent);
                if room < chunk.len() as u64 {
                    let _ = to.write_all(&chunk[..room as usize]);
                    break;
                }
            }
            NetFault::CutAfter(_) => {}
            NetFault::DropResponses if !request => continue,
            NetFault::DropResponses | NetFault::Hold => {}
        }
        sent += chunk.len() as u64;
        while !chunk.is_empty() {
            match to.write(chunk) {
                Ok(0) | Err(_) => {
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
                Ok(w) => chunk = &chunk[w..],
            }
        }
    }
    // Requests kept while the client went away go out once the hold ends.
    if !held.is_empty() {
        while shared.fault() == NetFault::Hold && !shared.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = to.write_all(&held);
        // Leave the server time to answer before the connection goes.
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
