//! SIGINT and SIGTERM, for the long-running commands (`dev`, `scheduler`, `agent`).

use anyhow::Context;

/// SIGINT (Ctrl-C) and SIGTERM, registered when this is made: make it before saying
/// "running", so a signal that comes right after is never lost to the default handler.
pub(crate) struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub(crate) fn register() -> anyhow::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())
                .context("cannot install the SIGINT handler")?,
            terminate: signal(SignalKind::terminate())
                .context("cannot install the SIGTERM handler")?,
        })
    }

    pub(crate) async fn wait(&mut self) {
        // Both are cancel-safe: whichever comes first ends the wait.
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }

    /// Runs `work` unless a stop signal comes first (e.g. Ctrl-C while waiting for peers).
    pub(crate) async fn unless_stopped<T>(
        &mut self,
        what: &str,
        work: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::select! {
            result = work => result,
            () = self.wait() => anyhow::bail!("interrupted while {what}"),
        }
    }
}
