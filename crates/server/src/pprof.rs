//! The pprof server on `--pprof-addr` (off by default): real CPU profiles in pprof's protobuf
//! format at `/debug/pprof/profile?seconds=N` (as Go's net/http/pprof serves them), readable
//! by `go tool pprof` and other pprof viewers.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pprof::protos::Message;

const MAX_SECONDS: u64 = 120;
const FREQUENCY_HZ: i32 = 99;

pub fn router() -> Router {
    Router::new()
        .route("/debug/pprof/", get(index))
        .route("/debug/pprof/profile", get(profile))
}

async fn index() -> &'static str {
    "sqlite-rest pprof\n\n/debug/pprof/profile?seconds=N  CPU profile (protobuf), N defaults to 30\n"
}

async fn profile(Query(q): Query<HashMap<String, String>>) -> Response {
    let seconds = q
        .get("seconds")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(30)
        .clamp(1, MAX_SECONDS);
    let guard = match pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY_HZ)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
    {
        Ok(g) => g,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let encoded = guard
        .report()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|r| r.pprof().map_err(|e| e.to_string()))
        .map(|p| p.encode_to_vec());
    match encoded {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"profile\"",
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}
