//! Rendering responses: every [`ApiError`] becomes PostgREST's JSON error with its status,
//! `Proxy-Status` and extra headers (`WWW-Authenticate` on 401, `Retry-After`, …).

use axum::body::Body;
use axum::response::Response;
use dialect::ApiError;
use http::{HeaderValue, StatusCode, header};

pub const JSON: &str = "application/json; charset=utf-8";

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
