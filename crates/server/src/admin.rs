//! The admin server on `--metrics-addr`: `/metrics` (Prometheus text), `/live`, `/ready` and
//! `/health`.
//!
//! `/health` answers a JSON object of component states: `{"status":"ok","database":…}` plus
//! what other long-running parts (replication: lag, positions, failures) report through
//! [`HealthReport`]. A component with `"ok": false` makes it answer 503 with
//! `"status":"degraded"`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use parking_lot::RwLock;

use crate::database::Database;
use crate::metrics_registry::Metrics;

/// Named component states merged into `/health` (e.g. `"replication": {"lag_ms": 120}`).
#[derive(Default)]
pub struct HealthReport {
    components: RwLock<serde_json::Map<String, serde_json::Value>>,
}

impl HealthReport {
    pub fn set(&self, component: &str, state: serde_json::Value) {
        self.components.write().insert(component.to_string(), state);
    }

    fn snapshot(&self) -> serde_json::Map<String, serde_json::Value> {
        self.components.read().clone()
    }

    /// Whether no component says `"ready": false`, read in place (no copy of the map).
    fn all_ready(&self) -> bool {
        self.components
            .read()
            .values()
            .all(|v| v.get("ready").and_then(|r| r.as_bool()) != Some(false))
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    db: Arc<Database>,
    health: Arc<HealthReport>,
}

pub fn router(metrics: Arc<Metrics>, db: Arc<Database>, health: Arc<HealthReport>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/live", get(|| async { StatusCode::OK }))
        .route("/ready", get(ready))
        .route("/health", get(health_handler))
        .with_state(AdminState {
            metrics,
            db,
            health,
        })
}

async fn metrics_handler(State(s): State<AdminState>) -> Response {
    match s.db.size_bytes().await {
        Ok(size) => s.metrics.database_size.set(size as f64),
        Err(e) => tracing::error!(error = %e, "failed to get database size"),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// Ready once the schema is loaded, unless a component says `"ready": false` (a follower
/// too far behind its replica).
async fn ready(State(s): State<AdminState>) -> StatusCode {
    if s.db.schema.is_loaded() && s.health.all_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn health_handler(State(s): State<AdminState>) -> Response {
    let mut body = serde_json::Map::new();
    let db_ok = s.db.size_bytes().await.is_ok();
    body.insert(
        "status".into(),
        if db_ok { "ok" } else { "degraded" }.into(),
    );
    body.insert(
        "database".into(),
        serde_json::json!({"ok": db_ok, "schema_version": s.db.schema.current().version}),
    );
    let components = s.health.snapshot();
    // A component reporting `"ok": false` (e.g. replication failing) makes the server unhealthy.
    let components_ok = components
        .values()
        .all(|v| v.get("ok").and_then(|ok| ok.as_bool()) != Some(false));
    body.extend(components);
    let healthy = db_ok && components_ok;
    if !healthy {
        body.insert("status".into(), "degraded".into());
    }
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(serde_json::Value::Object(body))).into_response()
}
