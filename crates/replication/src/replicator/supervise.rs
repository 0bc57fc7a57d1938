//! Turning failures into fatal errors: a task that panics ([`supervised`]) and a failure
//! that outlasts the retry window (the watchdog task) stop replication for good.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::health::{Component, FatalError};

use super::shared::Shared;

/// Spawns one of the replicator's tasks so that a panic in it is fatal (and stops the
/// others) instead of silently ending, say, every upload while the server keeps
/// acknowledging writes.
pub(super) fn supervised(
    shared: &Arc<Shared>,
    stop: &CancellationToken,
    component: Component,
    task: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    use futures::FutureExt;
    let (shared, stop) = (shared.clone(), stop.clone());
    tokio::spawn(async move {
        if let Err(panic) = std::panic::AssertUnwindSafe(task).catch_unwind().await {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown cause".into());
            shared.health.set_fatal(FatalError {
                component,
                failing_for: Duration::ZERO,
                window: shared.health.window(),
                last_error: format!("the {component} task panicked: {what}"),
            });
            stop.cancel();
        }
    })
}

/// Checks the retry window; on a fatal error stops every task.
pub(super) async fn watchdog(shared: Arc<Shared>, stop: CancellationToken) {
    let tick =
        (shared.health.window() / 20).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        if shared.health.check().is_some() {
            stop.cancel();
            return;
        }
    }
}
