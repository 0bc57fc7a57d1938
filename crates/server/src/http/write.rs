//! POST, PATCH, PUT and DELETE on `/{table_or_view}`: parse, read the body, hand the write to
//! the single writer, answer with PostgREST's status and headers.
//!
//! Everything that needs no schema happens here, on the request's own task: the query string,
//! `Accept`, `Prefer`, `Content-Profile`, and the body (already read by [`super::api`] within
//! `--max-body-bytes`), checked for its `Content-Type` and parsed (large bodies on the
//! blocking pool). The write itself is a job for
//! [`crate::database::Writer`]: planned against the writer's schema cache and run inside its
//! savepoint, so a request is answered only once its transaction committed. The job carries
//! the request's deadline (its arrival plus the time budget), so the wait in the write queue
//! counts against the budget. DELETE bodies are ignored (postgrest-py sends `{}`). Errors name
//! only what the caller can see ([`dialect::ApiError::for_client`]). With replication, the
//! answer waits for the write's replication position and carries it (`Sqlite-Rest-Txid`;
//! `Prefer: durability`, see [`super::durability`]).

use std::time::Instant;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use dialect::check_names;
use dialect::check_profile;
use dialect::csv_header;
use dialect::{
    ApiError, BodyFormat, MediaType, Mutation, QueryParams, WriteOutput, WriteRequest,
    execute_write, parse_payload, plan_write,
};
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode, header};

use super::durability::TXID_HEADER;
use super::{AppState, header_str, preferences};

/// Bodies larger than this are parsed on the blocking pool.
const INLINE_PARSE_BYTES: usize = 256 * 1024;

fn mutation(method: &Method) -> Mutation {
    match *method {
        Method::POST => Mutation::Insert,
        Method::PATCH => Mutation::Update,
        Method::PUT => Mutation::Upsert,
        _ => Mutation::Delete,
    }
}

pub async fn handle(
    state: &AppState,
    relation: String,
    method: &Method,
    parts: &Parts,
    bytes: Bytes,
    deadline: Instant,
) -> Result<Response, ApiError> {
    let mutation = mutation(method);
    let query = QueryParams::parse(parts.uri.query().unwrap_or(""))?;
    let media = MediaType::negotiate(header_str(parts, header::ACCEPT))?;
    let prefer = preferences(parts)?;
    // Before anything runs: a guarantee the server cannot give is refused, never weakened.
    let durability = state.durability.mode(&prefer)?;
    let profile_sent = check_profile(header_str(parts, "content-profile"))?;

    let payload = if mutation == Mutation::Delete {
        None
    } else {
        let format = BodyFormat::from_content_type(header_str(parts, header::CONTENT_TYPE))?;
        let columns_given = query.columns.is_some() && mutation != Mutation::Upsert;
        if format == BodyFormat::Csv {
            // The names first: a CSV body to an unknown table, or naming an unknown column, is
            // refused before any of its rows is built.
            let names = match &query.columns {
                Some(columns) if columns_given => columns.clone(),
                _ => csv_header(&bytes)?,
            };
            let relation = relation.clone();
            state
                .db
                .reads
                .run(move |_, cache| check_names(cache, &relation, &names))
                .await?;
        }
        let payload = if bytes.len() > INLINE_PARSE_BYTES {
            tokio::task::spawn_blocking(move || parse_payload(&bytes, format, columns_given))
                .await
                .map_err(|e| ApiError::internal(format!("parsing the body failed: {e}")))??
        } else {
            parse_payload(&bytes, format, columns_given)?
        };
        Some(payload)
    };
    let size = payload.as_ref().map_or(0, |p| p.json.len());
    let req = WriteRequest {
        mutation,
        relation: relation.clone(),
        query,
        media,
        prefer,
        payload,
    };
    let options = state.write_options;
    let (out, commit) = state
        .writer
        .run_committed(size, deadline, move |ctx| {
            let plan = plan_write(ctx.cache, &req, &options)?;
            let body = req.payload.as_ref().map_or("[]", |p| p.json.as_str());
            let out = execute_write(ctx.conn, &plan, body, ctx.inserts)?;
            let keep = out.commit;
            Ok((out, keep))
        })
        .await
        .map_err(|e| e.for_client(&state.db.schema.current(), &relation, Some(mutation)))?;
    let txid = state
        .durability
        .settle_write(durability, commit, deadline)
        .await?;
    Ok(respond(
        out,
        media,
        profile_sent,
        txid.map(|t| t.to_string()),
    ))
}

fn respond(
    out: WriteOutput,
    media: MediaType,
    profile_sent: bool,
    txid: Option<String>,
) -> Response {
    let has_body = out.body.is_some();
    let mut resp = Response::new(out.body.map_or_else(Body::empty, Body::from));
    *resp.status_mut() = StatusCode::from_u16(out.status).unwrap_or(StatusCode::OK);
    let h = resp.headers_mut();
    if has_body {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(media.content_type()),
        );
    } else if out.status != 204 {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    let mut set = |name: header::HeaderName, value: Option<String>| {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            h.insert(name, v);
        }
    };
    set(header::CONTENT_RANGE, out.content_range);
    set(header::LOCATION, out.location);
    set(header::HeaderName::from_static(TXID_HEADER), txid);
    set(
        header::HeaderName::from_static("preference-applied"),
        out.preference_applied.header_value(),
    );
    if profile_sent {
        h.insert("content-profile", HeaderValue::from_static("public"));
    }
    resp
}
