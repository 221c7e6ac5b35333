//! Graceful shutdown: SIGTERM, SIGINT and SHUTDOWN stop accepting, let in-flight commands
//! finish, make everything durable and exit 0.

use tokio::sync::watch;

/// A shutdown signal every task can wait on.
#[derive(Debug)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            tx: watch::channel(false).0,
        }
    }
}

impl Shutdown {
    /// Starts shutting down.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once shutdown has started.
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        // Err means the sender is gone, which only happens when the server is dropped.
        let _ = rx.wait_for(|v| *v).await;
    }
}
