//! One shutdown signal for every long-running part of the server.
//!
//! [`Shutdown`] wraps a cancellation token: the HTTP, admin and pprof servers (and later the
//! writer and replication) each hold a child token and stop when it is cancelled. SIGINT or
//! SIGTERM cancels it; SIGUSR1 asks for a reload instead (the schema cache and every file
//! the server reloads: key files, RPC functions, permissions).

use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// A token that is cancelled when shutdown starts.
    pub fn token(&self) -> CancellationToken {
        self.token.child_token()
    }

    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Resolves once shutdown has been triggered.
    pub async fn triggered(&self) {
        self.token.cancelled().await;
    }
}

/// Waits for SIGINT or SIGTERM (or Ctrl-C where there are no Unix signals).
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
                    _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
                }
                return;
            }
            _ => tracing::warn!("cannot install signal handlers; falling back to Ctrl-C"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Calls `reload` on every SIGUSR1 until `shutdown` triggers.
pub async fn on_reload_signal(shutdown: Shutdown, reload: impl Fn() + Send + 'static) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.triggered() => return,
                r = usr1.recv() => {
                    if r.is_none() { return; }
                    tracing::info!("SIGUSR1 received; reloading the schema cache and the reloadable files");
                    reload();
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = reload;
        shutdown.triggered().await;
    }
}
