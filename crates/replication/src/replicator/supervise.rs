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

/// Checks the retry window. On a fatal error stops the replica's side (`stop_replica`:
/// uploads, maintenance, probes), or every task (`stop_all`) when syncing itself failed: the
/// local disk still works when only the replica does not, and the sync task goes on giving
/// the server's last commits their TXIDs until shutdown.
pub(super) async fn watchdog(
    shared: Arc<Shared>,
    stop_all: CancellationToken,
    stop_replica: CancellationToken,
) {
    let tick =
        (shared.health.window() / 20).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop_replica.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        if let Some(f) = shared.health.check() {
            match f.component {
                Component::Sync => stop_all.cancel(),
                _ => stop_replica.cancel(),
            }
            return;
        }
    }
}
