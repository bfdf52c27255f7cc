//! Cap on concurrent connections per client address (`[limits] max_connections_per_client`).
//!
//! One address holding hundreds of idle or slow connections (slowloris) must not take the edge's
//! sockets and memory from everyone else. Counting is done where a connection's whole life is
//! visible: [`CappedApp`] wraps a listener's application and holds a [`ConnectionSlot`] while the
//! connection is served, so the count falls exactly when the connection ends, however it ends.
//! The listener's connection filter also consults the count ([`ClientConnections::is_full`]) so
//! that the excess connections of an address already at its cap are dropped before any TLS work.
//!
//! Addresses in `client_ip.trusted_proxies` are exempt: a load balancer in front of the edge
//! carries many clients on its connections. The cap reads the live plan, so a reload changes it
//! for new connections at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

use crate::head_deadline::HeadDeadline;
use crate::plan::RuntimePlan;
use crate::state::EdgeState;

/// Live connection counts per client address.
#[derive(Debug, Default)]
pub struct ClientConnections {
    counts: Mutex<HashMap<IpAddr, u32>>,
}

/// One counted connection; the count drops when this is dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    owner: Arc<ClientConnections>,
    ip: IpAddr,
}

impl ClientConnections {
    /// Counts a new connection from `ip`, or None when `ip` already has `limit` connections.
    /// A `limit` of 0 means no cap (the connection is still counted).
    pub fn try_enter(self: &Arc<Self>, ip: IpAddr, limit: u32) -> Option<ConnectionSlot> {
        let mut counts = self.lock();
        let n = counts.entry(ip).or_insert(0);
        if limit != 0 && *n >= limit {
            if *n == 0 {
                counts.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            owner: self.clone(),
            ip,
        })
    }

    /// True when `ip` is at its cap: a new connection from it would be refused.
    pub fn is_full(&self, ip: IpAddr, limit: u32) -> bool {
        limit != 0 && self.lock().get(&ip).is_some_and(|&n| n >= limit)
    }

    /// Connections currently open from `ip`.
    pub fn count(&self, ip: IpAddr) -> u32 {
        self.lock().get(&ip).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u32>> {
        // A panic while holding this lock cannot leave the map inconsistent (each update is one
        // statement), so a poisoned lock is still usable.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.owner.lock();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// The cap that applies to `ip` under `plan`: None when the address is exempt.
pub fn limit_for(plan: &RuntimePlan, ip: IpAddr) -> Option<u32> {
    if plan.network.trusted_proxies.is_trusted(ip) {
        return None;
    }
    Some(plan.limits.max_connections_per_client)
}

/// A listener application that serves each connection only while its client address is under
/// the cap, holding the address's slot for the connection's whole life (every keep-alive request),
/// gives the first request head a deadline and counts the bytes read ([`HeadDeadline`]).
pub struct CappedApp<A> {
    pub inner: Arc<A>,
    pub state: Arc<EdgeState>,
    /// The counts, shared by every listener's app and connection filter.
    pub connections: Arc<ClientConnections>,
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for CappedApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer = session
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        // Read the plan once; the guard is not held while the connection is served.
        let (cap, head_limit) = {
            let plan = self.state.plan.load();
            let cap = peer.and_then(|ip| limit_for(&plan, ip).map(|limit| (ip, limit)));
            (cap, plan.limits.header_read_timeout_ms)
        };
        let _slot = match cap {
            Some((ip, limit)) => match self.connections.try_enter(ip, limit) {
                Some(slot) => Some(slot),
                None => {
                    refused(&self.state, ip);
                    return None;
                }
            },
            None => None,
        };
        // Always wrapped: besides the deadline, the wrapper counts the bytes read for
        // `pipelining::arrived_pipelined`.
        let deadline = (head_limit > 0).then(|| Duration::from_millis(head_limit));
        let session: Stream = Box::new(HeadDeadline::new(session, deadline));
        // Serve every request of the connection here, so the slot is held until it closes.
        let mut next = self.inner.process_new(session, shutdown).await;
        while let Some(stream) = next {
            next = self.inner.process_new(stream, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// Counts and logs a connection refused because its address is at the cap.
pub fn refused(state: &EdgeState, ip: IpAddr) {
    state
        .metrics
        .blocks
        .with_label_values(&["connection_cap"])
        .inc();
    tracing::debug!(client = %ip, "connection refused: per-client connection cap");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_to_the_cap_and_down_on_drop() {
        let c = Arc::new(ClientConnections::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = c.try_enter(a, 2).unwrap();
        let s2 = c.try_enter(a, 2).unwrap();
        assert!(c.is_full(a, 2));
        assert!(
            c.try_enter(a, 2).is_none(),
            "third connection over a cap of 2"
        );
        assert!(
            c.try_enter(b, 2).is_some(),
            "another address is not affected"
        );
        drop(s1);
        assert_eq!(c.count(a), 1);
        assert!(!c.is_full(a, 2));
        let _s3 = c.try_enter(a, 2).unwrap();
        drop(s2);
        assert_eq!(c.count(a), 1);
    }

    #[test]
    fn zero_means_no_cap_and_empty_entries_are_removed() {
        let c = Arc::new(ClientConnections::default());
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let slots: Vec<_> = (0..1000).map(|_| c.try_enter(a, 0).unwrap()).collect();
        assert!(!c.is_full(a, 0));
        drop(slots);
        assert_eq!(c.count(a), 0);
        assert!(c.lock().is_empty());
    }
}
