//! The Portcullis WAF engine: rule sets, transformations, SQLi/XSS detectors, body parsing and
//! anomaly scoring, as a library with no proxy, no async runtime and no HTTP types in it.
//!
//! * Rules are TOML files (`rulesets/README.md` in the repository), compiled once into an
//!   immutable [`WafPlan`] ([`WafPlan::load_dir`], [`WafPlan::from_sources`], or
//!   [`default_plan`] for the rule set embedded in this crate).
//! * [`WafPlan::evaluate`] scores one [`HttpRequest`] (borrowed strings and bytes: whatever the
//!   proxy holds, without copying) under a [`Policy`] (mode, paranoia level, anomaly threshold,
//!   rule overrides and exclusions) and returns a [`Verdict`]: the score, whether to block, and
//!   the rules that matched.
//! * The building blocks are public too: the [`transform`]ations rules apply, the [`detect`]ors
//!   (tokenizer-based SQL injection, HTML-aware XSS), the request [`body`] parsers and the
//!   content-coding [`encoding`] decoder; [`replay`] scores labelled corpora.
//!
//! ```
//! use portcullis_waf::{default_plan, HttpRequest, Mode, Policy};
//!
//! let plan = default_plan().expect("the embedded rule set compiles");
//! let policy = Policy::new(Mode::Prevention, 1, 5);
//! let headers: &[(&str, &[u8])] = &[("Host", b"shop.example"), ("User-Agent", b"curl/8.5")];
//! let request = HttpRequest::new("GET", "/search?q=1%27%20OR%20%271%27%3D%271", "HTTP/1.1", headers);
//! let verdict = plan.evaluate(&request, &policy);
//! assert!(verdict.blocked);
//! assert!(verdict.matches.iter().any(|m| m.category == "sqli"));
//! ```
//!
//! A plan is `Send + Sync` and meant to be shared (behind an `Arc`) by every request; evaluating
//! takes `&self` and allocates only per request. Embedding it in a Pingora proxy:
//! `examples/waf_proxy.rs` in the repository, and this crate's README.
#![deny(missing_docs)]

pub mod body;
mod clean_cache;
pub mod detect;
pub mod encoding;
mod engine;
mod policy;
mod prefilter;
pub mod replay;
mod request;
mod rules;
mod target;
pub mod transform;

pub use engine::{forget_remembered_values, RuleInfo, RuleMatch, Verdict, WafPlan};
pub use policy::{
    ExclusionConfig, Mode, Policy, PolicyConfig, RuleIdSpec, RuleOverrideConfig, SeveritySpec,
};
pub use request::{parse_raw_request, HttpRequest, OwnedRequest, RequestView};
pub use rules::RuleLoadError;

macro_rules! embedded {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../rulesets/", $name)))),*]
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
