//! CORS as PostgREST answers it, for browser clients such as postgrest-js.
//!
//! By default every origin is allowed (`Access-Control-Allow-Origin: *`, as the Go version).
//! With `--cors-allowed-origins` only listed origins are echoed back, with
//! `Access-Control-Allow-Credentials: true`; others get no CORS headers. A preflight
//! (`OPTIONS` with `Access-Control-Request-Method`) is answered 200 without authentication.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, header};

/// PostgREST's list, plus `Sqlite-Rest-Txid` (the replication position of a response, which
/// a browser client sends back as `Prefer: min-txid`).
const EXPOSE: &str = "Content-Encoding, Content-Location, Content-Range, Content-Type, Date, Location, Server, Transfer-Encoding, Range-Unit, Sqlite-Rest-Txid";
const METHODS: &str = "GET, POST, PATCH, PUT, DELETE, OPTIONS, HEAD";

#[derive(Debug, Clone, Default)]
pub struct Cors {
    /// `None`: every origin.
    allowed: Option<Vec<String>>,
}

impl Cors {
    pub fn new(allowed: Vec<String>) -> Self {
        Cors {
            allowed: if allowed.is_empty() {
                None
            } else {
                Some(allowed)
            },
        }
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed.
    fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        match &self.allowed {
            None => Some(HeaderValue::from_static("*")),
            Some(list) => {
                let o = origin.to_str().ok()?;
                list.iter().any(|a| a == o).then(|| origin.clone())
            }
        }
    }

    /// Adds CORS headers to a response for a request that carried `Origin`.
    pub fn decorate(&self, h: &mut HeaderMap, origin: &HeaderValue) {
        let Some(allow) = self.allow_origin(origin) else {
            return;
        };
        if self.allowed.is_some() {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE),
        );
    }

    /// The answer to a preflight request.
    pub fn preflight(
        &self,
        origin: &HeaderValue,
        requested_headers: Option<&HeaderValue>,
    ) -> Response {
        let mut resp = Response::new(Body::empty());
        let Some(allow) = self.allow_origin(origin) else {
            return resp;
        };
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        if self.allowed.is_some() {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(METHODS),
        );
        let mut allow_headers = String::from("Authorization");
        if let Some(req) = requested_headers.and_then(|v| v.to_str().ok()) {
            for name in req.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                allow_headers.push_str(", ");
                allow_headers.push_str(name);
            }
        }
        allow_headers.push_str(", Accept, Accept-Language, Content-Language");
        if let Ok(v) = HeaderValue::from_str(&allow_headers) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        resp
    }
}
