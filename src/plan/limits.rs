//! Compiling custom rules and rate limits, and the rate-limit counter store.

use crate::config::{Config, Diagnostics, KeyPath, SiteConfig};
use crate::customrules::CustomRules;
use crate::ratelimit::{RateLimitStore, RateLimitStoreConfig, RateLimiter};
use std::sync::{Arc, Mutex};

/// The counter store outlives reloads, so counts (and the Redis connection)
/// survive as long as its configuration stays the same.
fn shared_store(
    cfg: Option<&RateLimitStoreConfig>,
    d: &mut Diagnostics,
) -> Option<Arc<RateLimitStore>> {
    type Cached = Option<(Option<RateLimitStoreConfig>, Arc<RateLimitStore>)>;
    static STORE: Mutex<Cached> = Mutex::new(None);
    let mut cached = STORE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((c, store)) = cached.as_ref() {
        if c.as_ref() == cfg {
            return Some(store.clone());
        }
    }
    let store = match cfg {
        None => RateLimitStore::memory(),
        Some(c) => match RateLimitStore::from_config(c, "rate_limit_store") {
            Ok(s) => s,
            Err(errors) => {
                errors.iter().for_each(|e| d.error_text(e));
                return None;
            }
        },
    };
    let store = Arc::new(store);
    *cached = Some((cfg.cloned(), store.clone()));
    Some(store)
}

/// Validates the store settings without creating one (for `check`).
pub fn check_store(cfg: &Config, d: &mut Diagnostics) {
    if let Some(c) = &cfg.rate_limit_store {
        RateLimitStore::validate(c, "rate_limit_store")
            .iter()
            .for_each(|e| d.error_text(e));
    }
}

pub fn compile_custom_rules(s: &SiteConfig, path: &KeyPath, d: &mut Diagnostics) -> CustomRules {
    crate::customrules::compile(&s.custom_rules, &path.key("custom_rules").to_string())
        .unwrap_or_else(|errors| {
            errors.iter().for_each(|e| d.error_text(e));
            CustomRules::default()
        })
}

pub fn compile_rate_limits(
    cfg: &Config,
    s: &SiteConfig,
    path: &KeyPath,
    d: &mut Diagnostics,
) -> Option<Arc<RateLimiter>> {
    if s.rate_limits.is_empty() {
        return None;
    }
    let rules = crate::ratelimit::compile(&s.rate_limits, &path.key("rate_limits").to_string())
        .map_err(|errors| errors.iter().for_each(|e| d.error_text(e)))
        .ok()?;
    let store = shared_store(cfg.rate_limit_store.as_ref(), d)?;
    Some(Arc::new(RateLimiter::new(&s.name, rules, store)))
}
