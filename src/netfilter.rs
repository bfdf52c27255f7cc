//! The listener's connection filter: network rules evaluated the moment a TCP
//! connection is accepted, before any TLS work, so a denied source costs
//! almost nothing. It reads the current plan, so reloads apply to new
//! connections at once.

use crate::conncap::ClientConnections;
use crate::state::EdgeState;
use async_trait::async_trait;
use pingora::listeners::ConnectionFilter;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct NetworkFilter {
    pub state: Arc<EdgeState>,
    /// Open connections per client address, kept by `conncap::CappedApp`.
    pub connections: Arc<ClientConnections>,
    /// The listener's local port, which rules may match on.
    pub port: u16,
}

impl std::fmt::Debug for NetworkFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkFilter")
            .field("port", &self.port)
            .finish()
    }
}

#[async_trait]
impl ConnectionFilter for NetworkFilter {
    async fn should_accept(&self, addr: Option<&SocketAddr>) -> bool {
        let Some(addr) = addr else { return true };
        let plan = self.state.plan.load();
        // An address already at its connection cap is dropped here, before any TLS work (the
        // count itself is kept by `conncap::CappedApp` for the connection's whole life).
        if let Some(limit) = crate::conncap::limit_for(&plan, addr.ip()) {
            if self.connections.is_full(addr.ip(), limit) {
                crate::conncap::refused(&self.state, addr.ip());
                return false;
            }
        }
        let decision = plan.network.rules.evaluate(addr.ip(), self.port);
        if !decision.is_allowed() {
            self.state
                .metrics
                .blocks
                .with_label_values(&["network"])
                .inc();
            tracing::debug!(client = %addr, rule = decision.rule_label(), "connection refused by network rule");
        }
        decision.is_allowed()
    }
}
