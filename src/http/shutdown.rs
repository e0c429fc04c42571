//! The shutdown signal shared by the server and long-lived responses.
//!
//! Graceful shutdown waits for every response to finish, and the console's live stream never
//! finishes by itself: handlers that stream hold a `Shutdown` and end their stream when it fires,
//! so SIGTERM is not held up by an open browser tab (DESIGN.md "Flow and guarantees" 4).

use std::sync::Arc;

use tokio::sync::watch;

/// Fired once, when the process starts to shut down; cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Default for Shutdown {
    fn default() -> Self {
        Self(Arc::new(watch::channel(false).0))
    }
}

impl Shutdown {
    /// Fires the signal (idempotent).
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the signal has fired (at once if it already has).
    pub async fn triggered(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|fired| *fired).await;
    }
}
