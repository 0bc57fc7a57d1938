//! GET and HEAD on `/{table_or_view}`: parse, plan against the cache, run, shape, answer.
//!
//! The query string and headers are parsed on the async thread; planning and execution run
//! together in the read pool (inline when short), so a request that names something the cache
//! does not know yet is planned again after a schema check (see `db::read_pool`), within the
//! request's time budget (from its arrival: a body that took long leaves less). The response
//! carries PostgREST's headers: `Content-Range`, `Content-Location`, `Vary`,
//! `Preference-Applied`, `Content-Profile`, and with replication `Sqlite-Rest-Txid`: the
//! local replication position taken before the read's snapshot begins (after waiting for
//! `Prefer: min-txid`, see [`super::durability`]). A body larger than the read pool's buffer
//! streams (chunked, without `Content-Length`; see `db::stream`).

use std::time::Instant;

use axum::body::Body;
use axum::response::Response;
use dialect::canonical_query;
use dialect::execute_read_streaming;
use dialect::{ApiError, MediaType, QueryParams, RequestHeaders, plan_read};
use dialect::{AppliedPreference, check_profile, parse_range};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};

use super::durability::TXID_HEADER;
use super::{AppState, header_str, preferences};
use crate::database::read_pool::BUFFER_BYTES;
use crate::database::stream::ReadReply;

pub async fn handle(
    state: &AppState,
    relation: String,
    raw_segment: &str,
    parts: &Parts,
    head: bool,
    deadline: Instant,
) -> Result<Response, ApiError> {
    let raw_query = parts.uri.query().unwrap_or("");
    let params = QueryParams::parse(raw_query)?;
    let range = match (head, header_str(parts, header::RANGE)) {
        (false, Some(r)) => parse_range(r)?,
        _ => None,
    };
    let headers = RequestHeaders {
        media: MediaType::negotiate(header_str(parts, header::ACCEPT))?,
        prefer: preferences(parts)?,
        range,
        profile_sent: check_profile(header_str(parts, "accept-profile"))?,
    };
    let media = headers.media;
    let profile_sent = headers.profile_sent;
    let min_txid = headers.prefer.min_txid;
    // Taken before the read's snapshot begins: a lower bound of what the read reflects.
    let txid = state.durability.read_position(min_txid, deadline).await?;
    let limits = state.plan_limits;
    let target = relation.clone();
    let reply = state
        .db
        .reads
        .read(deadline, move |conn, cache, stream| {
            let plan = plan_read(cache, &target, &params, &headers, limits)?;
            execute_read_streaming(conn, &plan, head, BUFFER_BYTES, stream)
        })
        .await
        .map_err(|e| e.for_client(&state.db.schema.current(), &relation, None))?;
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
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&content_range) {
        h.insert(header::CONTENT_RANGE, v);
    }
    let mut location = String::with_capacity(2 + raw_segment.len() + raw_query.len());
    location.push('/');
    location.push_str(raw_segment);
    if !raw_query.is_empty() {
        location.push('?');
        location.push_str(&canonical_query(raw_query));
    }
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::CONTENT_LOCATION, v);
    }
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Prefer, Range"),
    );
    if let Some(m) = min_txid {
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
