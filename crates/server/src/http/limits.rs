//! Request size limits: URL length, total header size, body size and the time a body may take.
//!
//! Checked before anything else; an oversize request is answered 414/431/413 with a JSON error
//! and never reaches the database. The body limit is checked here against `Content-Length`
//! and again on the bytes actually read ([`HttpLimits::read_body`]), so a body sent without a
//! length (or with a false one) cannot get past it. A body is read only for a request that was
//! routed and authenticated, within what is left of the request's time budget (408 beyond;
//! the budget starts when the request arrives); a request answered
//! before that (401, 404, 405, a CORS preflight) only has a small body drained
//! ([`HttpLimits::discard_small`]), so its keep-alive connection stays usable without letting
//! a client without a token make the server buffer or wait for megabytes.

use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use bytes::Bytes;
use dialect::{ApiError, ErrorCode};
use http::request::Parts;
use http_body_util::{BodyExt, LengthLimitError, Limited};

#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_uri_bytes: usize,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    /// The request's time budget, from its arrival: its body must arrive within it (408),
    /// and its statements (and, for a write, its wait in the write queue) fit in it (504).
    pub request_budget: Duration,
}

/// The largest body drained from a request answered before its body was needed.
pub const DISCARD_MAX_BYTES: u64 = 64 * 1024;
/// How long such a body may take.
pub const DISCARD_TIMEOUT: Duration = Duration::from_secs(1);

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_uri_bytes: 16 * 1024,
            max_header_bytes: 32 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            request_budget: Duration::from_secs(10),
        }
    }
}

impl HttpLimits {
    pub fn check(&self, req: &Parts) -> Result<(), ApiError> {
        let uri = &req.uri;
        let uri_len = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
        if uri_len > self.max_uri_bytes {
            return Err(
                ApiError::new(414, ErrorCode::UriTooLong, "URI too long").with_details(format!(
                    "The request URI has {uri_len} bytes; the limit is {}",
                    self.max_uri_bytes
                )),
            );
        }
        let header_len: usize = req
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if header_len > self.max_header_bytes {
            return Err(ApiError::new(
                431,
                ErrorCode::HeadersTooLarge,
                "Request header fields too large",
            )
            .with_details(format!(
                "The request headers have {header_len} bytes; the limit is {}",
                self.max_header_bytes
            )));
        }
        if let Some(n) = declared_length(req)
            && n > self.max_body_bytes
        {
            return Err(payload_too_large(format!("{n} bytes"), self.max_body_bytes));
        }
        Ok(())
    }

    /// Reads the whole body, refusing more than `max_body_bytes` as the bytes arrive (413) and
    /// a body still arriving at `deadline`, the end of the request's budget (408).
    pub async fn read_body(&self, body: Body, deadline: Instant) -> Result<Bytes, ApiError> {
        let limit = self.max_body_bytes;
        let max = usize::try_from(limit).unwrap_or(usize::MAX);
        let within = deadline.saturating_duration_since(Instant::now());
        match collect_within(body, max, within).await {
            Some(Ok(bytes)) => Ok(bytes),
            Some(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                Err(payload_too_large(format!("more than {limit} bytes"), limit))
            }
            Some(Err(e)) => Err(ApiError::new(
                400,
                ErrorCode::InvalidBody,
                "Could not read the request body",
            )
            .with_details(e.to_string())),
            None => Err(
                ApiError::new(408, ErrorCode::BodyTimeout, "Request body timeout")
                    .with_details(format!(
                        "The request body did not arrive within the request's time budget ({} ms)",
                        self.request_budget.as_millis()
                    ))
                    .with_header("Connection", "close"),
            ),
        }
    }

    /// Drains the body of a request answered without it, when it is declared small
    /// ([`DISCARD_MAX_BYTES`]) and arrives quickly ([`DISCARD_TIMEOUT`]); otherwise leaves it,
    /// and hyper closes the connection after the answer.
    pub async fn discard_small(parts: &Parts, body: Body) {
        if declared_length(parts).is_some_and(|n| n > 0 && n <= DISCARD_MAX_BYTES) {
            let _ = collect_within(body, DISCARD_MAX_BYTES as usize, DISCARD_TIMEOUT).await;
        }
    }
}

/// The whole body, refused past `max` bytes, if it arrives `within` (`None` past that). A body
/// that is known to be empty (every GET) is answered at once, without arming a timer.
async fn collect_within(
    body: Body,
    max: usize,
    within: Duration,
) -> Option<Result<Bytes, axum::BoxError>> {
    if body.is_end_stream() {
        return Some(Ok(Bytes::new()));
    }
    tokio::time::timeout(within, Limited::new(body, max).collect())
        .await
        .ok()
        .map(|r| r.map(|c| c.to_bytes()))
}

/// The request's `Content-Length`, if it has a valid one.
fn declared_length(req: &Parts) -> Option<u64> {
    req.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// 413 for a body over `limit`: `size` says by how much (declared or read so far).
pub fn payload_too_large(size: String, limit: u64) -> ApiError {
    ApiError::new(413, ErrorCode::PayloadTooLarge, "Payload too large")
        .with_details(format!("The request body has {size}; the limit is {limit}"))
}
