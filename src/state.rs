//! What the running edge shares across listeners, the admin listener and
//! signal handlers: the current plan, metrics, log sinks and the reloader.
//! (The per-client connection counts are handed to the listeners that keep
//! them, `conncap`, which reads this state: it is not part of it.)

use crate::logging::LogSink;
use crate::metrics::Metrics;
use crate::plan::RuntimePlan;
use crate::reload::Reloader;
use arc_swap::ArcSwap;
use std::sync::Arc;

pub struct EdgeState {
    pub plan: Arc<ArcSwap<RuntimePlan>>,
    pub metrics: Arc<Metrics>,
    pub access_log: LogSink,
    pub waf_log: LogSink,
    pub reloader: Reloader,
}

impl EdgeState {
    /// Reopens file logs (SIGUSR1, after logrotate).
    pub fn reopen_logs(&self) {
        for sink in [&self.access_log, &self.waf_log] {
            if let Err(e) = sink.reopen() {
                tracing::error!("cannot reopen log {:?}: {e}", sink.destination());
            }
        }
    }
}
