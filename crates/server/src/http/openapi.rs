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
use crate::permissions::{Permissions, RoleView};
use crate::rpc_functions::RpcSnapshot;

/// The last rendered document of each role (`""` without a permissions file) and what it
/// was rendered from. A request is answered from it before anything is filtered or
/// rendered; a render drops every document of an older schema, function set or permissions
/// file, so roles a reload removed leave nothing behind.
#[derive(Default)]
pub struct DocCache {
    slots: Mutex<HashMap<String, Rendered>>,
}

/// What a document was rendered from. The `Arc`s are kept alive so their addresses cannot be
/// reused by later loads.
struct Source {
    /// The schema cache.
    schema: Arc<SchemaCache>,
    /// The role's view of it: one per role, permissions load and schema version.
    role_schema: Option<Arc<SchemaCache>>,
    /// The permissions load the role comes from.
    permissions: Option<Arc<Permissions>>,
    rpc: RpcSnapshot,
    bearer_auth: bool,
}

impl Source {
    fn same(&self, other: &Source) -> bool {
        Arc::ptr_eq(&self.schema, &other.schema)
            && same_arc(&self.role_schema, &other.role_schema)
            && self.rpc.same(&other.rpc)
            && self.bearer_auth == other.bearer_auth
    }

    /// Whether a document of `self` may still be asked for once `now` is in force: the
    /// same schema, functions and permissions load (any role of it).
    fn current(&self, now: &Source) -> bool {
        Arc::ptr_eq(&self.schema, &now.schema)
            && same_arc(&self.permissions, &now.permissions)
            && self.rpc.same(&now.rpc)
    }
}

fn same_arc<T>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

struct Rendered {
    source: Source,
    body: Bytes,
}

impl DocCache {
    /// The document for `schema` (as `role` sees it) and the functions of `rpc` that `role`
    /// may call, rendered again only when one of them changed.
    pub fn get(
        &self,
        schema: &Arc<SchemaCache>,
        rpc: RpcSnapshot,
        bearer_auth: bool,
        role: Option<&RoleView>,
    ) -> Bytes {
        let source = Source {
            schema: schema.clone(),
            role_schema: role.map(|r| r.cache(schema)),
            permissions: role.map(|r| r.permissions().clone()),
            rpc,
            bearer_auth,
        };
        let key = role.map(|r| r.role.as_str()).unwrap_or_default();
        if let Some(r) = self.slots.lock().get(key)
            && r.source.same(&source)
        {
            return r.body.clone();
        }
        let access = role.map(RoleView::access);
        let functions = functions(&source.rpc, access.as_ref(), schema);
        let doc = dialect::openapi_document(
            source.role_schema.as_ref().unwrap_or(schema),
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
        let mut slots = self.slots.lock();
        slots.retain(|_, r| r.source.current(&source));
        slots.insert(
            key.to_string(),
            Rendered {
                source,
                body: body.clone(),
            },
        );
        body
    }
}

/// The functions of `rpc` that `access`'s role may call (every one without a role), for the
/// document: one it may not call is not shown, nor its parameters and result columns
/// (PostgREST shows a role only the functions it may execute).
fn functions(
    rpc: &RpcSnapshot,
    access: Option<&dialect::Access<'_>>,
    schema: &SchemaCache,
) -> Vec<FunctionDoc> {
    rpc.functions
        .iter()
        .filter(|f| access.is_none_or(|a| rpc.touches(f).allowed(a, schema).is_ok()))
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
        state.rpc.snapshot(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Principal;
    use crate::permissions::PermissionsRegistry;

    fn principal(role: &str) -> Principal {
        Principal {
            role: Some(role.to_string()),
            claims: serde_json::json!({"role": role}),
            anonymous: false,
        }
    }

    /// A reload that removes a role drops its rendered document: the cache holds only the
    /// documents of the permissions, functions and schema now in force.
    #[test]
    fn a_reload_prunes_the_documents_of_removed_roles() {
        let dir = tempfile::tempdir().unwrap();
        let dsn = dir.path().join("db.sqlite").display().to_string();
        let conn = rusqlite::Connection::open(&dsn).unwrap();
        conn.execute_batch("CREATE TABLE docs (id INTEGER PRIMARY KEY, title TEXT)")
            .unwrap();
        let schema = Arc::new(SchemaCache::load(&conn, &dialect::Exposure::All).unwrap());
        let file = dir.path().join("permissions.yaml");
        let both =
            "roles:\n  a:\n    docs: { read: {} }\n  b:\n    docs: { read: {}, insert: {} }\n";
        std::fs::write(&file, both).unwrap();
        let permissions = PermissionsRegistry::open(file.clone(), &dsn).unwrap();
        let rpc = crate::rpc_functions::RpcRegistry::open(None, &dsn).unwrap();
        let docs = DocCache::default();
        let render = |role: &str| {
            let view = permissions.role_view(&principal(role)).unwrap();
            docs.get(&schema, rpc.snapshot(), true, Some(&view))
        };
        let a = render("a");
        assert!(!render("b").is_empty());
        assert_eq!(docs.slots.lock().len(), 2);
        // A hit answers the very bytes rendered before.
        assert_eq!(render("a").as_ptr(), a.as_ptr());
        std::fs::write(&file, "roles:\n  a:\n    docs: { read: {} }\n").unwrap();
        permissions.reload().unwrap();
        assert!(permissions.role_view(&principal("b")).is_err());
        render("a");
        assert_eq!(
            docs.slots.lock().len(),
            1,
            "the removed role's document is kept"
        );
    }
}
