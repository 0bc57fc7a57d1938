//! The probe task: an active check of the replica, so a dead endpoint is noticed without
//! waiting for a write.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::health::Component;

use super::shared::Shared;

/// How often the replica is probed while everything works.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(15);
/// How often while something fails.
pub(crate) const PROBE_INTERVAL_FAILING: Duration = Duration::from_secs(1);

/// The probe task. See the module docs.
pub(super) async fn probe_loop(shared: Arc<Shared>, interval: Duration, stop: CancellationToken) {
    loop {
        let wait = if shared.health.any_failing() {
            PROBE_INTERVAL_FAILING
        } else {
            interval
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = shared.client.probe() => r,
        };
        match result {
            Ok(()) => shared.health.ok(Component::Probe),
            Err(e) => {
                shared
                    .health
                    .error_stalled(Component::Probe, &e, e.stalled());
            }
        }
    }
}
