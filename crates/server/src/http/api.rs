//! The request handler: limits, routing, CORS preflight, authentication, dispatch, metrics.
//!
//! Paths are `/{table_or_view}` (percent-decoded), `/rpc/{function}` ([`super::rpc`]) and `/`,
//! the OpenAPI document ([`super::openapi`]; GET, HEAD and OPTIONS only); deeper paths get
//! PostgREST's 404.
//! GET/HEAD read ([`super::read`]), POST/PATCH/PUT/DELETE write ([`super::write`]), OPTIONS
//! answers `Allow` per relation, anything else is 405 PGRST117. Everything decided from the
//! request line and headers (limits, path, preflight, method, authentication) comes before the
//! body is read; see [`super::limits`] for how bodies are read and drained.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use dialect::resolve_relation;
use dialect::{ApiError, ErrorCode, Privilege};
use http::{HeaderValue, Method, StatusCode, header};

use super::{AppState, HttpLimits, openapi, read, respond, rpc, write};
use crate::auth::Principal;
use crate::metrics_registry::operation;
use crate::permissions::run_as;

pub async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let origin = req.headers().get(header::ORIGIN).cloned();
    // The access log is at debug level; the URI is only kept when it will be written.
    let uri = tracing::enabled!(tracing::Level::DEBUG).then(|| req.uri().clone());
    // The request's time budget starts now: its body, the write queue and its statements.
    let deadline = start + state.limits.request_budget;
    let (target, mut resp) = match dispatch(&state, req, deadline).await {
        Ok((target, resp)) => (target, resp),
        Err((target, e)) => (target, respond::error(&e)),
    };
    if let Some(origin) = &origin {
        state.cors.decorate(resp.headers_mut(), origin);
    }
    let status = resp.status().as_u16();
    // Only a relation the schema cache knows becomes a label value: anything else a client
    // can choose (a preflight's path, a name an early 4xx answered) would grow the label set
    // without limit.
    let schema = state.db.schema.current();
    let target = if status != 404 && schema.relation(&target).is_some() {
        target.as_str()
    } else {
        ""
    };
    let elapsed = start.elapsed();
    state
        .metrics
        .observe(target, operation(&method), status, elapsed);
    if let Some(uri) = uri {
        tracing::debug!(
            method = %method,
            uri = %uri,
            status,
            elapsed_us = elapsed.as_micros() as u64,
            "request"
        );
    }
    resp
}

type Outcome = Result<(String, Response), (String, ApiError)>;

async fn dispatch(state: &AppState, req: Request, deadline: Instant) -> Outcome {
    let (parts, body) = req.into_parts();
    // Answered without the body (a preflight, or an error from routing or authentication):
    // a small body is drained so the keep-alive connection stays usable (postgrest-py sends
    // `{}` with every DELETE). A large or slow one is left to hyper, which then closes the
    // connection: a request that did not pass routing and authentication never makes the
    // server buffer or wait for its body.
    let target = match route(state, &parts) {
        Ok(Route::Relation(target)) => target,
        Ok(Route::Root(principal)) => {
            HttpLimits::discard_small(&parts, body).await;
            let method = &parts.method;
            let result = if method == Method::OPTIONS {
                Ok(allow("OPTIONS,GET,HEAD"))
            } else {
                Box::pin(openapi::handle(
                    state,
                    &principal,
                    &parts,
                    method == Method::HEAD,
                    deadline,
                ))
                .await
            };
            return result
                .map(|resp| (String::new(), resp))
                .map_err(|e| (String::new(), e));
        }
        Ok(Route::Answered(relation, resp)) => {
            HttpLimits::discard_small(&parts, body).await;
            return Ok((relation, resp));
        }
        Err(e) => {
            HttpLimits::discard_small(&parts, body).await;
            return Err((String::new(), e));
        }
    };
    // Every routed request has its body read before it is answered, whatever the answer:
    // hyper cannot reuse a connection whose request body is still arriving when the response
    // goes out, and a client that already sent its next request on it sees a hang-up.
    let body = match state.limits.read_body(body, deadline).await {
        Ok(body) => body,
        Err(e) => return Err((String::new(), e)),
    };
    let Target {
        relation,
        raw_segment,
        rpc,
        principal,
    } = target;
    if rpc {
        // A function's name is no relation: no metric label, no hidden-relation count.
        return Box::pin(rpc::handle(
            state, &principal, relation, &parts, body, deadline,
        ))
        .await
        .map(|resp| (String::new(), resp))
        .map_err(|e| (String::new(), e));
    }
    let method = match parts.method {
        Method::GET => Some(dialect::Method::Get),
        Method::HEAD => Some(dialect::Method::Head),
        Method::POST => Some(dialect::Method::Post),
        Method::PATCH => Some(dialect::Method::Patch),
        Method::PUT => Some(dialect::Method::Put),
        Method::DELETE => Some(dialect::Method::Delete),
        // OPTIONS: routing lets no other method through.
        _ => None,
    };
    // The paths a point read does not take are boxed: the future of this function is as large
    // as its largest awaited future, and it is moved (copied) as a whole on the way to hyper.
    let result = match method {
        Some(method) => {
            let request = dialect_request(&parts, method, &relation, &raw_segment);
            match method {
                dialect::Method::Get | dialect::Method::Head => {
                    read::handle(state, &principal, &request, deadline).await
                }
                _ => Box::pin(write::handle(state, &principal, &request, body, deadline)).await,
            }
        }
        None => Box::pin(options(state, &principal, relation.clone(), deadline)).await,
    };
    match result {
        Ok(resp) => Ok((relation, resp)),
        Err(e) => {
            if e.code == ErrorCode::UnknownRelation
                && state.db.schema.current().is_hidden(&relation)
            {
                state.metrics.access_check_failed.inc();
            }
            Err((relation, e))
        }
    }
}

const ACCEPT_PROFILE: header::HeaderName = header::HeaderName::from_static("accept-profile");
const CONTENT_PROFILE: header::HeaderName = header::HeaderName::from_static("content-profile");
const PREFER: header::HeaderName = header::HeaderName::from_static("prefer");

/// The request as the dialect reads it: a read's headers for a read (`Range`,
/// `Accept-Profile`), a write's for a write (`Content-Type`, `Content-Profile`).
fn dialect_request<'a>(
    parts: &'a http::request::Parts,
    method: dialect::Method,
    relation: &'a str,
    raw_segment: &'a str,
) -> dialect::Request<'a> {
    let text = |name: header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let read = matches!(method, dialect::Method::Get | dialect::Method::Head);
    dialect::Request {
        method,
        relation,
        raw_segment,
        query: parts.uri.query().unwrap_or(""),
        headers: dialect::RequestHeaderValues {
            accept: text(header::ACCEPT),
            prefer: parts
                .headers
                .get_all(PREFER)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect(),
            range: read.then(|| text(header::RANGE)).flatten(),
            content_type: (!read).then(|| text(header::CONTENT_TYPE)).flatten(),
            accept_profile: read.then(|| text(ACCEPT_PROFILE)).flatten(),
            content_profile: (!read).then(|| text(CONTENT_PROFILE)).flatten(),
        },
    }
}

/// The relation a request is for: its decoded name and its path segment as sent.
struct Target {
    relation: String,
    raw_segment: String,
    /// `/rpc/{function}`: `relation` is the function's name.
    rpc: bool,
    /// Who is asking.
    principal: Arc<Principal>,
}

/// What routing decided before the body is looked at.
enum Route {
    /// A routed, authenticated request for a relation.
    Relation(Target),
    /// An authenticated GET, HEAD or OPTIONS on `/`, and who is asking.
    Root(Arc<Principal>),
    /// Already answered (a CORS preflight).
    Answered(String, Response),
}

/// Limits, path, CORS preflight, method and authentication: everything decided from the
/// request line and headers alone.
fn route(state: &AppState, parts: &http::request::Parts) -> Result<Route, ApiError> {
    state.limits.check(parts)?;
    let path = parts.uri.path();
    let segment = path.strip_prefix('/').unwrap_or(path);
    let function = segment
        .strip_prefix("rpc/")
        .filter(|f| !f.is_empty() && !f.contains('/'));
    if function.is_none() && segment.contains('/') {
        return Err(ApiError::new(
            404,
            ErrorCode::InvalidPath,
            "Invalid path specified in request URL",
        ));
    }
    let relation = dialect::decode_component(function.unwrap_or(segment))?.into_owned();
    let method = &parts.method;
    if method == Method::OPTIONS
        && let Some(origin) = parts.headers.get(header::ORIGIN)
        && parts
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let resp = state.cors.preflight(
            origin,
            parts.headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS),
        );
        return Ok(Route::Answered(relation, resp));
    }
    let root = segment.is_empty();
    if root && !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || !matches!(
            *method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::POST
                | Method::PATCH
                | Method::PUT
                | Method::DELETE
        )
    {
        return Err(ApiError::new(
            405,
            ErrorCode::UnsupportedMethod,
            format!("Unsupported HTTP method: {method}"),
        ));
    }
    let principal = match api_key_principal(state, parts) {
        Some(p) => p,
        None => match state.auth.check(
            parts
                .headers
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
        ) {
            Ok(principal) => principal,
            Err(e) => {
                state.metrics.auth_failed.inc();
                return Err(e);
            }
        },
    };
    if root {
        return Ok(Route::Root(principal));
    }
    Ok(Route::Relation(Target {
        relation,
        raw_segment: segment.to_string(),
        rpc: function.is_some(),
        principal,
    }))
}

/// The caller an `apikey` header stands for (supabase-js sends its project key there), when
/// the permissions file maps the key to a role and no other bearer token comes with it: a
/// user's token in `Authorization` wins, as behind Supabase's gateway, and supabase-js
/// without a session repeats the key as `Authorization: Bearer <key>`, which is the key
/// again, not a JWT. An unknown key is ignored (the token decides).
fn api_key_principal(state: &AppState, parts: &http::request::Parts) -> Option<Arc<Principal>> {
    let permissions = state.permissions.as_ref()?.current();
    if !permissions.has_api_keys() {
        return None;
    }
    let key = parts.headers.get("apikey")?.as_bytes();
    if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
        let auth = auth.as_bytes();
        let bearer = auth
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case(b"bearer "))
            .map(|_| auth[7..].trim_ascii());
        if bearer != Some(key) {
            return None;
        }
    }
    let role = permissions.api_key_role(key)?;
    Some(Arc::new(Principal {
        role: Some(role.to_string()),
        claims: serde_json::Value::Null,
        anonymous: state.auth.is_anon_role(Some(role)),
    }))
}

async fn options(
    state: &AppState,
    principal: &Principal,
    relation: String,
    deadline: Instant,
) -> Result<Response, ApiError> {
    let role = state.role(principal)?;
    let methods = state
        .db
        .reads
        .run_within(deadline, move |_, cache| {
            run_as(role.as_deref(), cache, |cache, access| {
                let rel = resolve_relation(cache, &relation)?;
                Ok(match access {
                    None => rel.allow_header(),
                    Some(a) => allowed_methods(rel, a),
                })
            })
        })
        .await?;
    Ok(allow(&methods))
}

/// `Allow` for a role: the methods the relation takes that the role's grants allow.
fn allowed_methods(rel: &dialect::Relation, access: &dialect::Access<'_>) -> String {
    let all = rel.allow_header();
    let may = |p| access.get(&rel.name, p).is_some();
    all.split(',')
        .filter(|m| match *m {
            "GET" | "HEAD" => may(Privilege::Read),
            "POST" => may(Privilege::Insert),
            "PUT" => may(Privilege::Insert) && may(Privilege::Update),
            "PATCH" => may(Privilege::Update),
            "DELETE" => may(Privilege::Delete),
            _ => true,
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// An empty 200 with `Allow: methods`.
fn allow(methods: &str) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::OK;
    if let Ok(v) = HeaderValue::from_str(methods) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}
