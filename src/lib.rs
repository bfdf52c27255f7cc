//! Portcullis: a WAF and TLS-terminating edge proxy built on Pingora.
//!
//! Modules follow the request path: [`tls`] (termination) -> [`proxy`]
//! (pingora phases: routing, forwarding) -> [`routing`] -> [`upstream`]
//! (pools and backend selection). [`config`] is what operators write;
//! [`plan`] compiles it once into the immutable form the request path reads.
//!
//! They are layered (docs/architecture.md): mechanisms (the WAF crate, rules,
//! limits, TLS, pools, metrics) know nothing of the configuration, the
//! configuration nothing of the plan, the plan nothing of the request path, and
//! the request path nothing of the process that assembles it. `tests/layers.rs`
//! fails when a module imports one above it.

pub mod admin;
pub mod cli;
pub mod config;
pub mod conncap;
pub mod customrules;
pub mod demo;
pub mod evasion;
pub mod geo;
pub mod head_deadline;
pub mod host;
pub mod logging;
pub mod metrics;
pub mod netfilter;
pub mod netrules;
pub mod openapi;
pub mod pipelining;
pub mod plan;
pub mod proxy;
pub mod proxy_header;
pub mod ratelimit;
pub mod redirect;
pub mod reload;
pub mod replay;
pub mod rewrite;
pub mod routing;
pub mod server;
pub mod signals;
pub mod state;
pub mod tls;
pub mod tls_gate;
pub mod upstream;

/// The WAF engine: the `portcullis-waf` crate (crates/portcullis-waf), under the path the edge
/// has always used for it.
pub use portcullis_waf as waf;
