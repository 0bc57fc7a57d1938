//! Request size limits: URL length, total header size and declared body size.
//!
//! Checked before anything else; an oversize request is answered 414/431/413 with a JSON error
//! and never reaches the database. The body limit is checked here against `Content-Length`
//! and again on the bytes actually read ([`HttpLimits::read_body`]), so a body sent without a
//! length (or with a false one) cannot get past it.

use axum::body::Body;
use axum::extract::Request;
use bytes::Bytes;
use dialect::ApiError;
use http_body_util::{BodyExt, LengthLimitError, Limited};

#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_uri_bytes: usize,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_uri_bytes: 16 * 1024,
            max_header_bytes: 32 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
        }
    }
}

impl HttpLimits {
    pub fn check(&self, req: &Request) -> Result<(), ApiError> {
        let uri = req.uri();
        let uri_len = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
        if uri_len > self.max_uri_bytes {
            return Err(
                ApiError::new(414, "SQLREST414", "URI too long").with_details(format!(
                    "The request URI has {uri_len} bytes; the limit is {}",
                    self.max_uri_bytes
                )),
            );
        }
        let header_len: usize = req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if header_len > self.max_header_bytes {
            return Err(
                ApiError::new(431, "SQLREST431", "Request header fields too large").with_details(
                    format!(
                        "The request headers have {header_len} bytes; the limit is {}",
                        self.max_header_bytes
                    ),
                ),
            );
        }
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(n) = declared
            && n > self.max_body_bytes
        {
            return Err(payload_too_large(format!("{n} bytes"), self.max_body_bytes));
        }
        Ok(())
    }

    /// Reads the whole body, refusing more than `max_body_bytes` as the bytes arrive (413).
    pub async fn read_body(&self, body: Body) -> Result<Bytes, ApiError> {
        let limit = self.max_body_bytes;
        let max = usize::try_from(limit).unwrap_or(usize::MAX);
        match Limited::new(body, max).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                Err(payload_too_large(format!("more than {limit} bytes"), limit))
            }
            Err(e) => Err(
                ApiError::new(400, "PGRST102", "Could not read the request body")
                    .with_details(e.to_string()),
            ),
        }
    }
}

/// 413 for a body over `limit`: `size` says by how much (declared or read so far).
pub fn payload_too_large(size: String, limit: u64) -> ApiError {
    ApiError::new(413, "SQLREST413", "Payload too large")
        .with_details(format!("The request body has {size}; the limit is {limit}"))
}
