//! Files the server reloads while it runs (`--rpc-dir`, `--permissions`, the JWT key files):
//! one polling loop for each, off the request path. A poll compares what a loader last saw (names, sizes, modification
//! times: robust on every file system, where change notifications are not) and reloads on a
//! change, on a blocking thread; SIGUSR1 reloads them too (`serve.rs`).

use std::sync::Arc;
use std::time::Duration;

use crate::shutdown::Shutdown;

/// How often watched files are looked at for changes.
pub const POLL: Duration = Duration::from_millis(500);

/// Something loaded from files that can tell whether they changed since it last looked.
pub trait Watched: Send + Sync + 'static {
    /// What it is, for logs.
    fn what(&self) -> &'static str;
    /// Reloads (logging the outcome) if its files changed since the last load; blocking.
    fn reload_if_changed(&self);
}

/// Polls `watched` every [`POLL`] until `shutdown`.
pub async fn watch<W: Watched>(watched: Arc<W>, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shutdown.triggered() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        let this = watched.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || this.reload_if_changed()).await {
            tracing::error!(error = %e, what = watched.what(), "watching for changes failed");
        }
    }
}
