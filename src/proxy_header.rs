//! Taking the PROXY protocol header (v1 or v2) an L4 load balancer sends at the start of each
//! connection, on listeners with `proxy_protocol = true`.
//!
//! The header is taken off the connection before anything else reads it: on HTTPS listeners by
//! the ClientHello gate (`tls_gate.rs`), before the handshake; on plain-HTTP and redirect
//! listeners by [`ProxiedApp`], before HTTP. Both do it with [`take`], so the rules are the same:
//! the header's source becomes the connection's peer address, which is what everything after it
//! reads (the per-client connection cap, client identity and geo, `X-Forwarded-For`, rate limits,
//! logs); the network rules are applied to that source at once, before a byte of TLS or HTTP is
//! read; and a connection without a valid header is refused, since the address it would be served
//! under is then the load balancer's (or whatever a client that bypassed it chose to send).

use crate::netrules::parse_proxy_header;
use crate::state::EdgeState;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora::server::ShutdownWatch;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// How long a connection may take to send its PROXY header (the same as a ClientHello).
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The longest header [`take`] waits for: a v2 header with the most TLVs it can carry.
const MAX_HEADER: usize = 16 + 65535;

/// Why [`take`] refused a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No valid header arrived within [`DEADLINE`]: missing, malformed, or the connection closed.
    Invalid(String),
    /// The header's source is denied by the network rules (counted in
    /// `portcullis_blocks_total{reason="network"}`).
    Denied,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Invalid(why) => write!(f, "no valid PROXY header: {why}"),
            Refusal::Denied => f.write_str("the PROXY source is denied by the network rules"),
        }
    }
}

/// Reads the PROXY header off `stream` (what follows it is put back for TLS or HTTP), records its
/// source as the connection's peer and checks the network rules of listener port `port` against
/// that source. A header without a source (v1 `UNKNOWN`, v2 `LOCAL`: the load balancer's own
/// health check) leaves the socket's peer in place.
pub async fn take(state: &EdgeState, port: u16, stream: &mut L4Stream) -> Result<(), Refusal> {
    let mut buf = Vec::with_capacity(256);
    let (header, used) = tokio::time::timeout(DEADLINE, read_header(stream, &mut buf))
        .await
        .map_err(|_| Refusal::Invalid("timed out".to_string()))??;
    stream.rewind(&buf[used..]);
    let Some(source) = header.source() else {
        return Ok(());
    };
    let plan = state.plan.load();
    if !plan.network.rules.evaluate(source.ip(), port).is_allowed() {
        state.metrics.blocks.with_label_values(&["network"]).inc();
        return Err(Refusal::Denied);
    }
    let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
    let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(source)));
    stream.set_socket_digest(digest);
    Ok(())
}

/// Reads until `buf` starts with a complete header; returns it and its length in bytes.
async fn read_header(
    stream: &mut L4Stream,
    buf: &mut Vec<u8>,
) -> Result<(crate::netrules::ProxyHeader, usize), Refusal> {
    let mut chunk = [0u8; 512];
    loop {
        match parse_proxy_header(buf) {
            Ok(Some(done)) => return Ok(done),
            Ok(None) if buf.len() < MAX_HEADER => {}
            Ok(None) => return Err(Refusal::Invalid("header too long".to_string())),
            Err(e) => return Err(Refusal::Invalid(e.to_string())),
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                return Err(Refusal::Invalid(
                    "connection closed before the header".to_string(),
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A plain-HTTP or redirect listener's application behind a PROXY-protocol load balancer: takes
/// the header off each new connection (when the listener's live plan asks for one, so a reload
/// that turns `proxy_protocol` on or off applies to new connections), then serves every request
/// of the connection with `inner`. HTTPS listeners take theirs in the ClientHello gate instead,
/// before the handshake; this passes their connections through.
pub struct ProxiedApp<A> {
    pub inner: Arc<A>,
    pub state: Arc<EdgeState>,
    /// The listener's index in the plan.
    pub listener: usize,
}

impl<A> ProxiedApp<A> {
    /// The listener's port, when its connections start with a PROXY header read here.
    fn wants_header(&self) -> Option<u16> {
        let plan = self.state.plan.load();
        plan.listeners
            .get(self.listener)
            .filter(|l| l.proxy_protocol && l.protocol != crate::config::ListenerProtocol::Https)
            .map(|l| l.bind.port())
    }

    /// The connection with its header taken off, or None (counted and logged) when refused.
    async fn take_header(&self, session: Stream, port: u16) -> Option<Stream> {
        let peer = session
            .get_socket_digest()
            .and_then(|d| d.peer_addr().map(|a| a.to_string()))
            .unwrap_or_default();
        // A plain listener hands its application the accepted TCP stream itself: only that type
        // can put back the bytes read past the header.
        let Ok(mut tcp) = session.into_any().downcast::<L4Stream>() else {
            tracing::error!(
                listener = self.listener,
                "PROXY header: not a TCP connection"
            );
            return None;
        };
        match take(&self.state, port, &mut tcp).await {
            Ok(()) => Some(tcp as Stream),
            Err(refusal) => {
                if let Refusal::Invalid(_) = refusal {
                    self.state
                        .metrics
                        .blocks
                        .with_label_values(&["proxy_protocol"])
                        .inc();
                }
                // DEBUG, like the ClientHello gate's refusals: the metric counts them, and a load
                // balancer's TCP health check (connect, close) would log one every few seconds.
                tracing::debug!(%peer, "connection refused: {refusal}");
                None
            }
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ProxiedApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let session = match self.wants_header() {
            Some(port) => self.take_header(session, port).await?,
            None => session,
        };
        // Every request of the connection is served here: a connection handed back for reuse
        // must not be read for a PROXY header again.
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
