//! A pool's configuration in the upstream mechanism's terms ([`PoolSettings`]): the plan reads
//! the configuration so that `upstream` never has to.

use std::time::Duration;

use crate::config::PoolConfig;
use crate::upstream::{retry::RetryBudget, Passive, PoolSettings, RetryPolicy};

/// The settings of a pool whose configuration compiling has checked.
pub(super) fn settings(cfg: &PoolConfig) -> PoolSettings {
    PoolSettings {
        name: cfg.name.clone(),
        algorithm: cfg.load_balancing,
        host_header: cfg.host_header,
        host_name: cfg.host_name.clone(),
        connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
        read_timeout: Duration::from_millis(cfg.read_timeout_ms),
        idle_timeout: Duration::from_millis(cfg.idle_timeout_ms),
        total_timeout: (cfg.total_timeout_ms > 0)
            .then(|| Duration::from_millis(cfg.total_timeout_ms)),
        retry: RetryPolicy {
            max_tries: cfg.retry.max_tries.max(1),
            on_timeout: cfg.retry.on_timeout,
            on_status: cfg.retry.on_status.clone(),
            budget: RetryBudget::new(cfg.retry.budget_percent),
        },
        passive: Passive {
            threshold: cfg.passive.consecutive_failures,
            cooldown: Duration::from_secs(cfg.passive.ejection_seconds),
            failure_status: cfg.passive.failure_status.clone(),
        },
        when_all_down: cfg.when_all_down,
    }
}
