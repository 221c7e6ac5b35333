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

/// Triggers shutdown on SIGTERM or SIGINT.
pub fn spawn_signal_handler(shared: std::sync::Arc<crate::server::Shared>) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            crate::log("# Could not install signal handlers");
            return;
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        crate::log(&format!("Received {name} scheduling shutdown..."));
        shared.shutdown.trigger();
    });
}

/// After the listeners stopped: lets connections finish their in-flight command, makes
/// everything durable, closes the engine. Returns the process exit code.
pub async fn finish(
    shared: std::sync::Arc<crate::server::Shared>,
    mut tasks: tokio::task::JoinSet<()>,
) -> i32 {
    crate::log("User requested shutdown...");
    let drained = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        crate::log("# Some clients did not finish within 10s; closing them");
        tasks.abort_all();
    }
    let closed = tokio::task::spawn_blocking(move || {
        let mut guard = crate::server::lock(&shared.engine);
        match guard.take() {
            Some(mut engine) => {
                engine.sync_all()?;
                engine.close()
            }
            None => Ok(()),
        }
    })
    .await;
    match closed {
        Ok(Ok(())) => {
            crate::log("Sluice is now ready to exit, bye bye...");
            0
        }
        Ok(Err(e)) => {
            crate::log(&format!("# Error making data durable at shutdown: {e}"));
            1
        }
        Err(e) => {
            crate::log(&format!("# Shutdown task failed: {e}"));
            1
        }
    }
}
