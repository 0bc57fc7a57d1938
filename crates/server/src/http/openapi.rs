//! `GET /` and `HEAD /`: the OpenAPI 3.1 document of the API (see `dialect::openapi_document`).
//!
//! `Accept` must allow `application/openapi+json` (`application/json` and wildcards do);
//! anything else is 406 PGRST107. The rendered document is kept until the schema cache is
//! replaced (a schema change seen by a read connection, or SIGUSR1) or the functions under
//! `/rpc/` change, so a request in between costs one comparison. Authentication is that of
//! every other route: the document describes the schema, so it is not public when tokens are
//! required.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use dialect::{ApiError, DocOptions, Exposed, FunctionDoc, SchemaCache};
use http::{HeaderValue, StatusCode, header};
use parking_lot::Mutex;

use super::{AppState, header_str};
use crate::auth::Principal;
use crate::permissions::RoleView;

/// The last rendered document of each role (`""` without a permissions file) and what it
/// was rendered from.
#[derive(Default)]
pub struct DocCache {
    slots: Mutex<HashMap<String, Rendered>>,
}

struct Rendered {
    /// Kept alive so its address cannot be reused by a later cache.
    schema: Arc<SchemaCache>,
    functions: Vec<FunctionDoc>,
    bearer_auth: bool,
    body: Bytes,
}

impl DocCache {
    /// The document for `schema` (as `role` sees it) and `functions`, rendered again only
    /// when either changed.
    pub fn get(
        &self,
        schema: &Arc<SchemaCache>,
        functions: Vec<FunctionDoc>,
        bearer_auth: bool,
        role: Option<&RoleView>,
    ) -> Bytes {
        let (schema, access) = match role {
            Some(r) => (r.cache(schema), Some(r.access())),
            None => (schema.clone(), None),
        };
        let schema = &schema;
        let key = role.map(|r| r.role.as_str()).unwrap_or_default();
        let mut slots = self.slots.lock();
        if let Some(r) = slots.get(key)
            && Arc::ptr_eq(&r.schema, schema)
            && r.functions == functions
            && r.bearer_auth == bearer_auth
        {
            return r.body.clone();
        }
        let doc = dialect::openapi_document(
            schema,
            &DocOptions {
                title: "sqlite-rest",
                version: env!("CARGO_PKG_VERSION"),
                bearer_auth,
                functions: &functions,
                visibility: match &access {
                    Some(a) => a,
                    None => &Exposed,
                },
            },
        );
        let body = Bytes::from(doc.to_string());
        slots.insert(
            key.to_string(),
            Rendered {
                schema: schema.clone(),
                functions,
                bearer_auth,
                body: body.clone(),
            },
        );
        body
    }
}

/// The functions served under `/rpc/` (`--rpc-dir`) that `role` may call, for the document:
/// one it may not call is not shown, nor its parameters and result columns (PostgREST shows
/// a role only the functions it may execute).
fn functions(state: &AppState, role: Option<&RoleView>, schema: &SchemaCache) -> Vec<FunctionDoc> {
    state
        .rpc
        .current()
        .iter()
        .filter(|f| role.is_none_or(|r| state.rpc.touches(f).allowed(&r.access(), schema).is_ok()))
        .map(|f| f.doc())
        .collect()
}

pub async fn handle(
    state: &AppState,
    principal: &Principal,
    parts: &http::request::Parts,
    head: bool,
    deadline: Instant,
) -> Result<Response, ApiError> {
    dialect::negotiate_openapi(header_str(parts, header::ACCEPT))?;
    // A read connection compares the schema cache with the database first, as reads do.
    state.db.reads.run_within(deadline, |_, _| Ok(())).await?;
    let schema = state.db.schema.current();
    let role = state.role(principal)?;
    let body = state.openapi.get(
        &schema,
        functions(state, role.as_deref(), &schema),
        state.auth.required(),
        role.as_deref(),
    );
    let len = body.len();
    let mut resp = Response::new(if head {
        Body::empty()
    } else {
        Body::from(body)
    });
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(dialect::OPENAPI_CONTENT_TYPE),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    Ok(resp)
}
