//! Portcullis WAF engine: a pure library (no proxy dependencies).
//!
//! * Rules are TOML files (see `rulesets/README.md`), compiled once into an immutable [`WafPlan`].
//! * [`WafPlan::evaluate`] scores one [`HttpRequest`] under a [`Policy`] and returns a [`Verdict`].
//! * [`default_plan`] builds the rule set embedded in the binary.

pub mod body;
pub mod clean_cache;
pub mod detect;
pub mod encoding;
pub mod engine;
pub mod policy;
pub mod prefilter;
pub mod request;
pub mod rules;
pub mod target;
pub mod transform;

pub use engine::{forget_remembered_values, RuleInfo, RuleMatch, Verdict, WafPlan};
pub use policy::{ExclusionConfig, Mode, Policy, PolicyConfig, RuleIdSpec, RuleOverrideConfig};
pub use request::{parse_raw_request, HttpRequest, OwnedRequest, RequestView};
pub use rules::RuleLoadError;

macro_rules! embedded {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../rulesets/", $name)))),*]
    };
}

/// The rule files and data files of `rulesets/`, embedded at build time.
pub const DEFAULT_RULESET: &[(&str, &str)] = embedded![
    "core/913-scanner.toml",
    "core/920-protocol-enforcement.toml",
    "core/921-protocol-attack.toml",
    "core/930-lfi.toml",
    "core/931-rfi.toml",
    "core/932-rce.toml",
    "core/933-php.toml",
    "core/934-generic.toml",
    "core/935-injection-misc.toml",
    "core/941-xss.toml",
    "core/942-sqli.toml",
    "core/943-session-fixation.toml",
    "core/944-java.toml",
    "data/scanner-user-agents.txt",
    "data/scanner-paths.txt",
    "data/lfi-files.txt",
];

/// Compile the embedded default rule set.
pub fn default_plan() -> Result<WafPlan, Vec<RuleLoadError>> {
    let files: Vec<(String, String)> = DEFAULT_RULESET
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    WafPlan::from_sources(&files)
}

#[cfg(test)]
mod tests;
