//! What a pool is built from ([`PoolSettings`]), in the upstream mechanism's own terms.
//!
//! The three enums are also the words of the `[[pools]]` keys (`load_balancing`, `host_header`,
//! `when_all_down`): the configuration re-exports them, as it takes a site's WAF policy from the
//! WAF, so that this module never reads the configuration (docs/architecture.md). The plan turns a
//! pool's configuration into these settings (`plan::pools`).

use serde::Deserialize;
use std::time::Duration;

use super::{Passive, RetryPolicy};

/// How a pool picks a backend among the available ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancing {
    /// Smooth weighted round robin.
    #[default]
    RoundRobin,
    /// Power of two random choices, the one with fewer requests in flight.
    LeastOutstanding,
    /// Consistent hashing (ketama) on `hash_key`: a client stays on one backend.
    ConsistentHash,
    /// Weighted random.
    Random,
}

/// What the Host header (and, for TLS pools without `tls.sni`, the SNI) sent to the backend is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HostHeader {
    /// The Host the client sent.
    #[default]
    Preserve,
    /// The pool's `host_name`: for gateways that route by their own name.
    Override,
    /// Each backend's own `host`.
    Backend,
}

/// What happens when no backend of a pool is available (all unhealthy or ejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AllDown {
    /// Answer 503 at once.
    #[default]
    FailClosed,
    /// Try the backends anyway, ignoring health.
    TryAnyway,
}

/// A pool's settings, checked: everything [`Pool::new`](super::Pool::new) needs besides the parts
/// compiling built ([`PoolParts`](super::PoolParts)).
pub struct PoolSettings {
    pub name: String,
    pub algorithm: LoadBalancing,
    pub host_header: HostHeader,
    /// For [`HostHeader::Override`].
    pub host_name: Option<String>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    /// None: no limit on the whole request.
    pub total_timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub passive: Passive,
    pub when_all_down: AllDown,
}
