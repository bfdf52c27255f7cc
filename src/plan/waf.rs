//! Compiling the WAF: the rule sets (from a directory, or those built into the
//! binary) and each site's policy.

use crate::config::{Config, Diagnostics, KeyPath};
use crate::waf::{Policy, PolicyConfig, WafPlan};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The largest body a site may ask the WAF to inspect.
const MAX_BODY_LIMIT: usize = 2 * 1024 * 1024;

pub fn compile_rulesets(
    cfg: &Config,
    resolve: &dyn Fn(&Path) -> PathBuf,
    d: &mut Diagnostics,
) -> Option<Arc<WafPlan>> {
    let loaded = match &cfg.waf.rulesets {
        Some(dir) => WafPlan::load_dir(resolve(dir)).map(Arc::new),
        None => embedded_plan(),
    };
    match loaded {
        Ok(plan) => Some(plan),
        Err(errors) => {
            let path = KeyPath::root().key("waf").key("rulesets");
            for e in errors {
                d.error(&path, e.to_string());
            }
            None
        }
    }
}

/// The built-in rule sets never change while the process runs: compile them
/// once, so reloads that keep them cost nothing here.
fn embedded_plan() -> Result<Arc<WafPlan>, Vec<crate::waf::RuleLoadError>> {
    static EMBEDDED: once_cell::sync::OnceCell<Arc<WafPlan>> = once_cell::sync::OnceCell::new();
    EMBEDDED
        .get_or_try_init(|| crate::waf::default_plan().map(Arc::new))
        .cloned()
}

/// A policy from config; `path` names where it was written.
pub fn compile_policy(c: &PolicyConfig, path: &KeyPath, d: &mut Diagnostics) -> Arc<Policy> {
    if c.body_limit > MAX_BODY_LIMIT {
        d.error(
            &path.key("body_limit"),
            format!("{} is above the 2 MiB the edge can inspect", c.body_limit),
        );
    }
    match Policy::from_config(c) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            d.error(path, e);
            Arc::default()
        }
    }
}
