//! Unix signals beyond pingora's own (SIGTERM/SIGINT/SIGQUIT):
//! SIGHUP reloads the configuration, SIGUSR1 reopens log files.

use crate::state::EdgeState;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

pub struct SignalService {
    pub state: Arc<EdgeState>,
}

#[async_trait]
impl BackgroundService for SignalService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (Ok(mut hup), Ok(mut usr1)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::user_defined1()),
        ) else {
            tracing::error!(
                "cannot install SIGHUP/SIGUSR1 handlers; reload with `portcullis reload` instead"
            );
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    let state = self.state.clone();
                    // Compiling rule sets is CPU work: keep it off the async workers.
                    let _ = tokio::task::spawn_blocking(move || state.reloader.reload()).await;
                }
                _ = usr1.recv() => self.state.reopen_logs(),
                _ = shutdown.changed() => return,
            }
        }
    }
}
