//! The probe task: an active check of the replica, so a dead endpoint is noticed without
//! waiting for the next upload to fail, but only after something changed.
//!
//! Idle costs nothing: the probe runs every [`PROBE_INTERVAL`] only while the positions
//! (local and replicated TXIDs) moved since its last success (start-up's probe counts as
//! one), and every [`PROBE_INTERVAL_FAILING`] while anything fails. An endpoint that dies
//! while the database is idle is therefore noticed at the next write (its upload fails,
//! and from then on the probe runs every second), not while idle: an object store bills
//! every request, and an idle server should cost nothing.

use std::sync::Arc;
use std::time::Duration;

use ltx::TxId;
use tokio_util::sync::CancellationToken;

use crate::health::Component;

use super::shared::Shared;

/// How often the replica is probed while everything works and something changed.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(15);
/// How often while something fails.
pub(crate) const PROBE_INTERVAL_FAILING: Duration = Duration::from_secs(1);

/// The positions a probe is taken at: the local and replicated TXIDs.
fn moment(shared: &Shared) -> (TxId, TxId) {
    let p = shared.progress.positions();
    (p.local_txid, p.replicated_txid)
}

/// The probe task. See the module docs.
pub(super) async fn probe_loop(shared: Arc<Shared>, interval: Duration, stop: CancellationToken) {
    // Start-up probed the replica right before the tasks started.
    let mut last_success = Some(moment(&shared));
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
        let now = moment(&shared);
        if last_success == Some(now) && !shared.health.any_failing() {
            continue;
        }
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = shared.client.probe() => r,
        };
        match result {
            Ok(()) => {
                last_success = Some(now);
                shared.health.ok(Component::Probe);
            }
            Err(e) => {
                last_success = None;
                shared
                    .health
                    .error_stalled(Component::Probe, &e, e.stalled());
            }
        }
    }
}
