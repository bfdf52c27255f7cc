//! Hot reload: the configuration, certificates and everything compiled from
//! them are loaded and checked as a whole, then swapped in atomically. Requests
//! in flight finish on the plan they started with; an invalid configuration
//! changes nothing and is reported with the same errors as `check`.

use crate::config::{self, Diagnostic, KeyPath, Severity};
use crate::metrics::Metrics;
use crate::plan::{self, RuntimePlan};
use crate::tls::SwappableResolver;
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a successful reload reports.
#[derive(Debug)]
pub struct ReloadOutcome {
    pub warnings: Vec<Diagnostic>,
    pub took: Duration,
}

/// Owns everything a reload swaps.
pub struct Reloader {
    config_path: Option<PathBuf>,
    plan: Arc<ArcSwap<RuntimePlan>>,
    /// HTTPS listeners' certificate sets, by listener index.
    resolvers: Vec<Option<Arc<SwappableResolver>>>,
    metrics: Arc<Metrics>,
    /// One reload at a time.
    busy: Mutex<()>,
}

impl Reloader {
    pub fn new(
        config_path: Option<PathBuf>,
        plan: Arc<ArcSwap<RuntimePlan>>,
        resolvers: Vec<Option<Arc<SwappableResolver>>>,
        metrics: Arc<Metrics>,
    ) -> Reloader {
        Reloader {
            config_path,
            plan,
            resolvers,
            metrics,
            busy: Mutex::new(()),
        }
    }

    /// Loads, checks and swaps in the configuration file again.
    pub fn reload(&self) -> Result<ReloadOutcome, Vec<Diagnostic>> {
        let _one_at_a_time = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let result = self.load_and_swap();
        let label = if result.is_ok() { "ok" } else { "error" };
        self.metrics.reloads.with_label_values(&[label]).inc();
        match &result {
            Ok(_) => tracing::info!(
                took_ms = started.elapsed().as_secs_f64() * 1000.0,
                "configuration reloaded"
            ),
            Err(errors) => {
                for e in errors {
                    tracing::error!("reload refused: {e}");
                }
            }
        }
        result.map(|warnings| ReloadOutcome {
            warnings,
            took: started.elapsed(),
        })
    }

    fn load_and_swap(&self) -> Result<Vec<Diagnostic>, Vec<Diagnostic>> {
        let Some(path) = &self.config_path else {
            return Err(vec![diag(
                "",
                "this edge runs an embedded configuration; there is no file to reload",
            )]);
        };
        let (mut next, warnings) = config::read_file(path).and_then(plan::compile)?;
        let current = self.plan.load_full();
        check_listeners_unchanged(&current, &next, &path.display().to_string())?;
        inherit_backend_health(&current, &mut next);
        for (resolver, listener) in self.resolvers.iter().zip(&next.listeners) {
            if let (Some(r), Some(certs)) = (resolver, &listener.certificates) {
                r.swap(certs.clone());
            }
        }
        self.plan.store(Arc::new(next));
        Ok(warnings)
    }
}

fn diag(file: &str, message: &str) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: file.to_string(),
        key_path: KeyPath::root().key("listeners").to_string(),
        line: None,
        message: message.to_string(),
    }
}

/// Sockets are bound at start: listeners may not be added, removed or moved by a reload.
fn check_listeners_unchanged(
    current: &RuntimePlan,
    next: &RuntimePlan,
    file: &str,
) -> Result<(), Vec<Diagnostic>> {
    let shape = |p: &RuntimePlan| {
        p.listeners
            .iter()
            .map(|l| {
                (
                    l.name.clone(),
                    l.bind,
                    l.protocol,
                    l.http2,
                    l.client_auth.as_ref().map(|c| c.require),
                    l.read_buffer_bytes,
                )
            })
            .collect::<Vec<_>>()
    };
    if shape(current) == shape(next) {
        Ok(())
    } else {
        Err(vec![diag(file, "listeners (names, binds, protocols) cannot change on reload; restart the edge for that")])
    }
}

/// Backends that stay (same pool name and address) keep their health, ejections and in-flight counts.
fn inherit_backend_health(current: &RuntimePlan, next: &mut RuntimePlan) {
    for pool in &mut next.pools {
        let Some(old) = current.pools.iter().find(|p| p.name == pool.name) else {
            continue;
        };
        let Some(pool) = Arc::get_mut(pool) else {
            continue;
        };
        for backend in &mut pool.backends {
            if let Some(prev) = old.backends.iter().find(|b| b.addr == backend.addr) {
                backend.health = prev.health.clone();
            }
        }
    }
}
