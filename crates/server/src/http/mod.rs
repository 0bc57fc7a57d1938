//! The REST API over HTTP: shared state, the API's handler and the serving loop.
//!
//! The API's listener hands every request to one function ([`api::handle`], through [`api()`]),
//! so the hot path is a single call rather than a router and a middleware stack: limits,
//! routing, CORS, auth, dispatch to the
//! read handler ([`read`]), the write handler ([`write`]), the RPC handler ([`rpc`]) or the
//! OpenAPI document ([`openapi`]), metrics. [`durability`] decides
//! when a write is answered and which replication position (`Sqlite-Rest-Txid`) a response
//! carries. Every listener serves
//! its connections through [`conn`] (connection cap, header read and idle timeouts). Servers
//! stop together when the shutdown token is cancelled.

pub mod api;
pub mod conn;
pub mod cors;
pub mod durability;
pub mod limits;
pub mod openapi;
pub mod read;
pub mod respond;
pub mod rpc;
pub mod write;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, HttpBody};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::database::{Database, Writer};
use crate::metrics_registry::Metrics;

pub use conn::{ConnLimits, HandlerFn};
pub use cors::Cors;
pub use limits::HttpLimits;

/// A request header as text (absent or not visible ASCII: `None`).
pub(crate) fn header_str(
    parts: &http::request::Parts,
    name: impl http::header::AsHeaderName,
) -> Option<&str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Every `Prefer` header of the request, parsed together.
pub(crate) fn preferences(
    parts: &http::request::Parts,
) -> Result<dialect::Preferences, dialect::ApiError> {
    dialect::Preferences::parse(
        parts
            .headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// Everything a request handler needs.
pub struct AppState {
    pub db: Arc<Database>,
    pub auth: Arc<Auth>,
    pub cors: Cors,
    pub metrics: Arc<Metrics>,
    pub limits: HttpLimits,
    pub plan_limits: dialect::Limits,
    /// The single writer every POST/PATCH/PUT/DELETE goes through.
    pub writer: Arc<Writer>,
    pub write_options: dialect::WriteOptions,
    /// When writes are answered; replication positions of responses.
    pub durability: durability::Durability,
    /// The functions `/rpc/{name}` calls (`--rpc-dir`).
    pub rpc: Arc<crate::rpc_functions::RpcRegistry>,
    /// The roles' grants (`--permissions`); `None`: every caller may do everything.
    pub permissions: Option<Arc<crate::permissions::PermissionsRegistry>>,
    /// The OpenAPI document of `GET /`, rendered once per schema cache.
    pub openapi: openapi::DocCache,
    /// Read plans kept by the request's shape (`dialect::ReadCall::prepare_cached`).
    pub plans: Arc<dialect::PlanCache>,
}

impl AppState {
    /// The role a request runs as (`None` without a permissions file: unrestricted); 401 for
    /// a role the file does not name.
    pub fn role(
        &self,
        principal: &crate::auth::Principal,
    ) -> Result<Option<Arc<crate::permissions::RoleView>>, dialect::ApiError> {
        self.permissions
            .as_ref()
            .map(|p| p.role_view(principal).map(Arc::new))
            .transpose()
    }

    /// `e` as the request's role may see it (see `RoleView::for_client`).
    pub fn for_client(
        &self,
        role: Option<&crate::permissions::RoleView>,
        e: dialect::ApiError,
        relation: &str,
        mutation: Option<dialect::Mutation>,
    ) -> dialect::ApiError {
        let cache = self.db.schema.current();
        match role {
            Some(r) => r.for_client(e, &cache, relation, mutation),
            None => e.for_client(&cache, relation, mutation),
        }
    }
}

/// The API as its listener's handler: every request goes straight to [`api::handle`], with no
/// router in between (no path matching, no request extensions; the API has one handler). A
/// body of known size gets its `Content-Length`. The answer to a HEAD request loses its body
/// and has no `Content-Length`, as PostgREST's: the handlers build no body for HEAD, and the
/// empty body's 0 is not the length a GET would have sent, the only value RFC 9110 allows
/// there.
pub fn api(state: Arc<AppState>) -> HandlerFn {
    Arc::new(move |req| {
        let state = state.clone();
        Box::pin(async move {
            let head = req.method() == http::Method::HEAD;
            let mut resp = api::handle(axum::extract::State(state), req).await;
            if head {
                resp.headers_mut().remove(http::header::CONTENT_LENGTH);
                *resp.body_mut() = Body::empty();
            } else if !resp.headers().contains_key(http::header::CONTENT_LENGTH)
                && let Some(size) = HttpBody::size_hint(resp.body()).exact()
                && let Ok(v) = http::HeaderValue::try_from(itoa::Buffer::new().format(size))
            {
                resp.headers_mut().insert(http::header::CONTENT_LENGTH, v);
            }
            resp
        })
    })
}

/// A router as its listener's handler (the admin and pprof listeners).
pub fn router_handler(router: Router) -> HandlerFn {
    conn::from_router(router)
}

/// Serves `handler` on `listener` under `limits` until `stop` is cancelled, then drains open
/// requests (see [`conn`]).
pub async fn serve(
    listener: TcpListener,
    handler: HandlerFn,
    limits: ConnLimits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    conn::serve(listener, handler, limits, stop).await
}

/// Connections a listener lets wait for `accept` (the kernel caps it at `somaxconn`): room for
/// clients that arrive while the listener is at its connection cap.
pub const ACCEPT_BACKLOG: u32 = 1024;

/// Binds a Go-style address: `:8080` means every interface.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let addr = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    };
    let mut last = None;
    for a in tokio::net::lookup_host(&addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(ACCEPT_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("{addr} resolves to no address"),
        )
    }))
}
