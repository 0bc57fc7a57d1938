//! `/rpc/{function}`: calls to the functions of `--rpc-dir` (see `crate::rpc_functions` and
//! the dialect's `rpc/`).
//!
//! `GET`/`HEAD` take the arguments from the query string (a key naming a parameter; the other
//! keys filter, select, order and page the result), `POST` from a JSON object body. A
//! read-only function runs on the read pool like a table read (same deadline, streaming of
//! large bodies, `Prefer: min-txid`, `Sqlite-Rest-Txid`); a writing function runs only on
//! `POST` (`GET` of one is 405 `25006`, as PostgreSQL refuses a write in PostgREST's
//! read-only GET transaction) as a job of the single writer, so its commit is replicated and
//! answered like any other write (`Prefer: durability`, `Sqlite-Rest-Txid`). `OPTIONS`
//! answers PostgREST's `Allow`; other methods are 405 PGRST101.

use std::time::Instant;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use dialect::{
    ApiError, AppliedPreference, ErrorCode, MediaType, QueryParams, ReadOutcome, RequestHeaders,
    RpcArgs, RpcCall, RpcRead, RpcReturns, check_profile, execute_rpc, parse_range,
    split_rpc_query,
};
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode, header};

use super::durability::TXID_HEADER;
use super::respond::JSON;
use super::{AppState, header_str, preferences};
use crate::auth::Principal;
use crate::database::read_pool::BUFFER_BYTES;
use crate::database::stream::ReadReply;
use crate::permissions::run_as;

pub async fn handle(
    state: &AppState,
    principal: &Principal,
    name: String,
    parts: &Parts,
    body: Bytes,
    deadline: Instant,
) -> Result<Response, ApiError> {
    let method = &parts.method;
    let functions = state.rpc.current();
    match *method {
        Method::GET | Method::HEAD | Method::POST => {}
        Method::OPTIONS => {
            let f = match functions.get(&name) {
                Some(f) => f,
                None => functions.resolve(&name, &[])?,
            };
            let mut resp = Response::new(Body::empty());
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(f.allow_header()));
            return Ok(resp);
        }
        _ => {
            return Err(ApiError::new(
                405,
                ErrorCode::RpcMethod,
                format!("Cannot use the {method} method on RPC"),
            ));
        }
    }
    let post = method == Method::POST;
    let head = method == Method::HEAD;
    let raw_query = parts.uri.query().unwrap_or("");
    let (args, rest) = if post {
        (RpcArgs::from_body(&body)?, raw_query.to_string())
    } else {
        split_rpc_query(raw_query, functions.get(&name).map(|f| f.as_ref()))?
    };
    let call = RpcCall::new(&functions, &name, &args)?;
    let f = call.function.clone();
    // A role runs a function only if its grants cover everything the statement touches.
    let role = state.role(principal)?;
    if let Some(role) = &role {
        let schema = state.db.schema.current();
        if let Err(e) = state.rpc.touches(&f).allowed(&role.access(), &schema) {
            return Err(role.for_client(e, &schema, &name, None));
        }
    }
    let query = QueryParams::parse(&rest)?;
    let range = match (method, header_str(parts, header::RANGE)) {
        (&Method::GET, Some(r)) => parse_range(r)?,
        _ => None,
    };
    let profile = if post {
        "content-profile"
    } else {
        "accept-profile"
    };
    let headers = RequestHeaders {
        media: MediaType::negotiate(header_str(parts, header::ACCEPT))?,
        prefer: preferences(parts)?,
        range,
        profile_sent: check_profile(header_str(parts, profile))?,
    };
    let media = headers.media;
    let profile_sent = headers.profile_sent;
    let min_txid = headers.prefer.min_txid;
    let how = RpcRead {
        query,
        headers,
        limits: state.plan_limits,
        max_bytes: state.write_options.max_representation_bytes,
    };
    let schema = state.db.schema.current();
    let (reply, txid) = if f.writes {
        if !post {
            return Err(ApiError::new(
                405,
                ErrorCode::ReadOnlyTransaction,
                format!("cannot execute {} in a read-only transaction", verb(&f)),
            )
            .with_hint(format!("The function {} writes: call it with POST", f.name)));
        }
        // Before anything runs: a guarantee the server cannot give is refused, never weakened.
        let durability = state.durability.mode(&how.headers.prefer)?;
        let (out, commit) = state
            .writer
            .run_committed(body.len(), deadline, move |ctx| {
                let out = run_as(role.as_deref(), ctx.cache, |_, _| {
                    execute_rpc(ctx.conn, &call, &how, false, usize::MAX, None)
                });
                match out? {
                    ReadOutcome::Whole(out) => Ok((out, true)),
                    _ => Err(ApiError::internal("a writing function's result streamed")),
                }
            })
            .await
            .map_err(|e| e.for_client(&schema, &name, None))?;
        let txid = state
            .durability
            .settle_write(durability, commit, deadline)
            .await?;
        (ReadReply::Whole(out), txid)
    } else {
        // Taken before the read's snapshot begins: a lower bound of what the read reflects.
        let txid = state.durability.read_position(min_txid, deadline).await?;
        let reply = state
            .db
            .reads
            .read(deadline, move |conn, cache, stream| {
                run_as(role.as_deref(), cache, |_, _| {
                    execute_rpc(conn, &call, &how, head, BUFFER_BYTES, stream)
                })
            })
            .await
            .map_err(|e| e.for_client(&schema, &name, None))?;
        (reply, txid)
    };
    let (status, content_range, mut applied, body) = match reply {
        ReadReply::Whole(out) => (
            out.status,
            out.content_range,
            out.preference_applied,
            if head {
                Body::empty()
            } else {
                Body::from(out.body)
            },
        ),
        ReadReply::Streamed(h, body) => (
            h.status,
            h.content_range,
            h.preference_applied,
            Body::new(body),
        ),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let h = resp.headers_mut();
    if status != 204 {
        let content_type = match (f.returns, media) {
            (RpcReturns::Set, m) | (_, m @ MediaType::Csv) => m.content_type(),
            _ => JSON,
        };
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    if f.returns == RpcReturns::Set
        && let Ok(v) = HeaderValue::from_str(&content_range)
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    if let Some(m) = min_txid.filter(|_| !f.writes) {
        applied.push(AppliedPreference::MinTxid(m));
    }
    if let Some(v) = applied.header_value()
        && let Ok(v) = HeaderValue::try_from(v)
    {
        h.insert("preference-applied", v);
    }
    if let Some(t) = txid
        && let Ok(v) = HeaderValue::try_from(t.to_string())
    {
        h.insert(TXID_HEADER, v);
    }
    if profile_sent {
        h.insert("content-profile", HeaderValue::from_static("public"));
    }
    Ok(resp)
}

/// What the statement does (`INSERT`, `UPDATE`, …), for PostgreSQL's read-only error.
fn verb(f: &dialect::RpcFunction) -> String {
    let words = f.statement().split(|c: char| !c.is_ascii_alphabetic());
    let mut first = None;
    for w in words.filter(|w| !w.is_empty()) {
        let up = w.to_ascii_uppercase();
        if matches!(up.as_str(), "INSERT" | "UPDATE" | "DELETE" | "REPLACE") {
            return up;
        }
        first.get_or_insert(up);
    }
    first.unwrap_or_default()
}
