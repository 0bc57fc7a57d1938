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

#[cfg(test)]
mod tests {
    use super::*;
    use dialect::{AppliedPreference, Body as DBody, CountMethod, ResponseHeaders};

    fn render(status: u16, headers: ResponseHeaders, body: DBody) -> Response {
        dialect(
            dialect::Response {
                status,
                headers,
                body,
            },
            None,
        )
    }

    #[tokio::test]
    async fn the_dialects_response_becomes_http_as_it_says() {
        let mut applied = dialect::PreferenceApplied::default();
        applied.push(AppliedPreference::Count(CountMethod::Exact));
        let resp = render(
            206,
            ResponseHeaders {
                content_type: Some(JSON),
                content_range: Some("0-0/2".into()),
                content_location: Some("/t?id=eq.1".into()),
                location: None,
                vary: Some("Accept, Prefer, Range"),
                preference_applied: applied,
                content_profile: Some("public"),
            },
            DBody::Bytes(b"[1]".to_vec()),
        );
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
        let h = resp.headers();
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
        assert_eq!(get("content-type"), Some(JSON));
        assert_eq!(get("content-range"), Some("0-0/2"));
        assert_eq!(get("content-location"), Some("/t?id=eq.1"));
        assert_eq!(get("vary"), Some("Accept, Prefer, Range"));
        assert_eq!(get("preference-applied"), Some("count=exact"));
        assert_eq!(get("content-profile"), Some("public"));
        assert_eq!(get("location"), None);
        assert_eq!(get("content-length"), None);
        let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"[1]");

        // An empty answer other than 204 says so; 204 and HEAD carry no length.
        let empty = render(201, ResponseHeaders::default(), DBody::Bytes(Vec::new()));
        assert_eq!(
            empty.headers().get("content-length").map(|v| v.as_bytes()),
            Some(&b"0"[..])
        );
        assert_eq!(empty.headers().get("content-type"), None);
        let none = render(204, ResponseHeaders::default(), DBody::None);
        assert!(none.headers().is_empty(), "{:?}", none.headers());
    }
}
