//! A recording HTTP proxy in front of the local S3 server, for the lag phases: it forwards
//! every request unchanged and notes the moment the server answered each level-0 file's PUT
//! with success — when the replica holds that file, exactly, for our replicator and for
//! Litestream alike, without adding a single request to the server.
//!
//! It replaces a poller that listed the replica every 5 ms. moto answers a LIST by sorting
//! every key of the bucket, so 200 LISTs a second over a replica growing by ~100 files a
//! second loaded the server whose PUTs were being timed: with that poller beside the
//! recorder the lag's p50 rose from 13 to 20 ms (`docs/benchmarks.md`). The proxy
//! adds a hop (a loopback connection and a copy of each body) to every request of both
//! replicators: if anything, it makes their lags longer.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A running proxy; it serves until the process ends (the bench's tasks are not joined).
pub struct PutRecorder {
    /// `http://127.0.0.1:<port>`: give it to the replicators as the S3 endpoint.
    pub endpoint: String,
    landed: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl PutRecorder {
    /// Starts a proxy forwarding to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> PutRecorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let landed = Arc::new(Mutex::new(Vec::new()));
        let upstream: Arc<str> = upstream.trim_end_matches('/').into();
        let client = reqwest::Client::new();
        let record = landed.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (upstream, client, record) = (upstream.clone(), client.clone(), record.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        forward(req, upstream.clone(), client.clone(), record.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        PutRecorder { endpoint, landed }
    }

    /// The level-0 files whose PUT succeeded so far: when, and the file name (the key's last
    /// segment, `<min>-<max>.ltx`), in the order they landed.
    pub fn landed(&self) -> Vec<(Instant, String)> {
        self.landed.lock().unwrap().clone()
    }
}

/// Headers that belong to one connection, not to the request or response. `Host` is passed
/// on: a server that checks signatures (s3s-fs) recomputes them over the Host the client
/// signed, the proxy's address.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "transfer-encoding" | "content-length" | "upgrade"
    )
}

async fn forward(
    req: Request<Incoming>,
    upstream: Arc<str>,
    client: reqwest::Client,
    record: Arc<Mutex<Vec<(Instant, String)>>>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let is_head = parts.method == hyper::Method::HEAD;
    // Level 0 is the `0000` directory of the replica's path on S3 (`<path>/0000/<name>`).
    let is_l0_put = parts.method == hyper::Method::PUT && parts.uri.path().contains("/0000/");
    let mut out = client.request(parts.method, format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if !hop_by_hop(name.as_str()) {
            out = out.header(name, value);
        }
    }
    let answer = out.body(body).send().await.map_err(std::io::Error::other)?;
    let status = answer.status();
    if is_l0_put && status.is_success() {
        let name = parts.uri.path().rsplit('/').next().unwrap_or_default();
        record
            .lock()
            .unwrap()
            .push((Instant::now(), name.to_string()));
    }
    // A HEAD answer's Content-Length is the object's size, not its (empty) body's.
    let mut response = Response::builder().status(status);
    for (name, value) in answer.headers() {
        if !hop_by_hop(name.as_str()) || (is_head && name == hyper::header::CONTENT_LENGTH) {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.map_err(std::io::Error::other)?;
    Ok(response.body(Full::new(bytes)).unwrap())
}
