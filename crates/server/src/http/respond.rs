//! Rendering responses: the dialect's [`dialect::Response`] as an HTTP response
//! ([`dialect()`]), and every [`ApiError`] as PostgREST's JSON error with its status,
//! `Proxy-Status` and extra headers (`WWW-Authenticate` on 401, `Retry-After`, …).

use axum::body::Body;
use axum::response::Response;
use dialect::ApiError;
use http::{HeaderValue, StatusCode, header};

pub const JSON: &str = "application/json; charset=utf-8";

/// The HTTP response of the dialect's `resp`; `stream` is the body of a streamed read
/// ([`dialect::Body::Streamed`]).
pub fn dialect(resp: dialect::Response, stream: Option<Body>) -> Response {
    let dialect::Response {
        status,
        headers,
        body,
    } = resp;
    let (body, empty) = match body {
        dialect::Body::None => (Body::empty(), false),
        dialect::Body::Bytes(b) => {
            let empty = b.is_empty();
            (Body::from(b), empty)
        }
        dialect::Body::Streamed => (stream.unwrap_or_else(Body::empty), false),
    };
    let mut out = Response::new(body);
    *out.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let h = out.headers_mut();
    if let Some(ct) = headers.content_type {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    if empty {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    let mut set = |name: header::HeaderName, value: Option<String>| {
        if let Some(v) = value.and_then(|v| HeaderValue::try_from(v).ok()) {
            h.insert(name, v);
        }
    };
    set(header::CONTENT_RANGE, headers.content_range);
    set(header::CONTENT_LOCATION, headers.content_location);
    set(header::LOCATION, headers.location);
    set(
        header::HeaderName::from_static("preference-applied"),
        headers.preference_applied.header_value(),
    );
    if let Some(v) = headers.vary {
        h.insert(header::VARY, HeaderValue::from_static(v));
    }
    if let Some(p) = headers.content_profile {
        h.insert("content-profile", HeaderValue::from_static(p));
    }
    out
}

pub fn error(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::error!(status = e.status, code = %e.code, message = %e.message, "request failed");
    } else {
        tracing::debug!(status = e.status, code = %e.code, message = %e.message, "request refused");
    }
    let mut resp = Response::new(Body::from(e.body()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    if let Ok(v) = HeaderValue::from_str(&format!("sqlite-rest; error={}", e.code)) {
        h.insert("proxy-status", v);
    }
    for (name, value) in &e.headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(*name, v);
        }
    }
    if e.status == 401 && !h.contains_key(header::WWW_AUTHENTICATE) {
        h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}
