//! POST, PATCH, PUT and DELETE on `/{table_or_view}`: the transport around
//! [`dialect::WriteCall`].
//!
//! Everything that needs no schema happens on the request's own task: the dialect parses the
//! query string, `Accept` and `Prefer` ([`dialect::WriteCall::prepare`]); the durability the
//! preferences ask for is checked here before anything else; then `Content-Profile`,
//! `Content-Type` and the body (already read by [`super::api`] within `--max-body-bytes`;
//! large bodies are parsed on the blocking pool, CSV names checked against the schema first).
//! The write itself is a job for [`crate::database::Writer`]: planned against the writer's
//! schema cache and run inside its savepoint, so a request is answered only once its
//! transaction committed. The job carries the request's deadline (its arrival plus the time
//! budget), so the wait in the write queue counts against the budget. Errors name only what
//! the caller can see ([`dialect::ApiError::for_client`]). With replication, the answer waits
//! for the write's replication position and carries it (`Sqlite-Rest-Txid`; `Prefer:
//! durability`, see [`super::durability`]).

use std::time::Instant;

use axum::response::Response;
use bytes::Bytes;
use dialect::{ApiError, BodyFormat, Request, WriteCall, check_names};
use http::HeaderValue;

use super::durability::TXID_HEADER;
use super::{AppState, respond};
use crate::auth::Principal;
use crate::permissions::run_as;

/// Bodies larger than this are parsed on the blocking pool.
const INLINE_PARSE_BYTES: usize = 256 * 1024;

pub async fn handle(
    state: &AppState,
    principal: &Principal,
    req: &Request<'_>,
    bytes: Bytes,
    deadline: Instant,
) -> Result<Response, ApiError> {
    let role = state.role(principal)?;
    let mut call = WriteCall::prepare(req)?;
    let mutation = call.mutation();
    // Before anything runs: a guarantee the server cannot give is refused, never weakened.
    let durability = state.durability.mode(call.preferences())?;
    let (format, answer) = call.payload_format(req)?;
    if let Some(format) = format {
        if format.format == BodyFormat::Csv {
            // The names first: a CSV body to an unknown table, or naming an unknown column, is
            // refused before any of its rows is built.
            let names = call.csv_names(format, &bytes)?;
            let relation = req.relation.to_string();
            let as_role = role.clone();
            state
                .db
                .reads
                .run(move |_, cache| {
                    run_as(as_role.as_deref(), cache, |cache, _| {
                        check_names(cache, &relation, &names)
                    })
                })
                .await?;
        }
        let payload = if bytes.len() > INLINE_PARSE_BYTES {
            tokio::task::spawn_blocking(move || format.parse(&bytes))
                .await
                .map_err(|e| ApiError::internal(format!("parsing the body failed: {e}")))??
        } else {
            format.parse(&bytes)?
        };
        call.set_payload(payload);
    }
    let size = call.payload_bytes();
    let options = state.write_options;
    let as_role = role.clone();
    let (out, commit) = state
        .writer
        .run_committed(size, deadline, move |ctx| {
            let out = run_as(as_role.as_deref(), ctx.cache, |cache, access| {
                call.run(ctx.conn, cache, &options, ctx.inserts, access)
            })?;
            let keep = out.commit;
            Ok((out, keep))
        })
        .await
        .map_err(|e| state.for_client(role.as_deref(), e, req.relation, Some(mutation)))?;
    let txid = state
        .durability
        .settle_write(durability, commit, deadline)
        .await?;
    let mut resp = respond::dialect(answer.respond(out), None);
    if let Some(t) = txid
        && let Ok(v) = HeaderValue::try_from(t.to_string())
    {
        resp.headers_mut().insert(TXID_HEADER, v);
    }
    Ok(resp)
}
