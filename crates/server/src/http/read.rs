//! GET and HEAD on `/{table_or_view}`: the transport around [`dialect::ReadCall`].
//!
//! The dialect parses the request on the async thread ([`dialect::ReadCall::prepare_cached`]:
//! a request of a shape whose plan is kept skips most of it, see `dialect::PlanCache`); this
//! handler waits for `Prefer: min-txid` and takes the local replication position before the
//! read's snapshot begins (see [`super::durability`]), runs the call in the read pool (inline
//! when short; planned again after a schema check when it names something the cache does not
//! know yet, see `db::read_pool`) within the request's time budget (from its arrival: a body
//! that took long leaves less), and renders the dialect's response with `Sqlite-Rest-Txid`
//! added. A body larger than the read pool's buffer streams (chunked, without
//! `Content-Length`; see `db::stream`).

use std::time::Instant;

use axum::body::Body;
use axum::response::Response;
use dialect::{ApiError, ReadCall, Request};
use http::HeaderValue;

use super::durability::TXID_HEADER;
use super::{AppState, respond};
use crate::auth::Principal;
use crate::database::read_pool::BUFFER_BYTES;
use crate::database::stream::ReadReply;
use crate::permissions::run_as;

pub async fn handle(
    state: &AppState,
    principal: &Principal,
    req: &Request<'_>,
    deadline: Instant,
) -> Result<Response, ApiError> {
    let head = req.method == dialect::Method::Head;
    // The role's name keeps roles' plans apart; without a permissions file it changes nothing.
    let role_name = state.permissions.as_ref().and(principal.role.as_deref());
    let (call, answer) = ReadCall::prepare_cached(req, &state.plans, role_name)?;
    // Taken before the read's snapshot begins: a lower bound of what the read reflects.
    let txid = state
        .durability
        .read_position(answer.min_txid(), deadline)
        .await?;
    let limits = state.plan_limits;
    let role = state.role(principal)?;
    let as_role = role.clone();
    let reply = state
        .db
        .reads
        .read(deadline, move |conn, cache, stream| {
            run_as(as_role.as_deref(), cache, |cache, access| {
                call.run(conn, cache, limits, BUFFER_BYTES, stream, access)
            })
        })
        .await
        .map_err(|e| state.for_client(role.as_deref(), e, req.relation, None))?;
    let mut resp = match reply {
        ReadReply::Whole(out) => respond::dialect(answer.whole(out, head), None),
        ReadReply::Streamed(h, body) => respond::dialect(answer.streamed(h), Some(Body::new(body))),
    };
    if let Some(t) = txid
        && let Ok(v) = HeaderValue::try_from(t.to_string())
    {
        resp.headers_mut().insert(TXID_HEADER, v);
    }
    Ok(resp)
}
