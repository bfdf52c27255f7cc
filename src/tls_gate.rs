//! The pre-handshake gate of an HTTPS listener. With `proxy_protocol`, it
//! first reads the PROXY protocol header an L4 load balancer sends, makes its
//! source the connection's client address and applies the network rules to
//! it. Then it reads the ClientHello (with a deadline, so a client that never
//! finishes it is dropped), applies the listener's SSL policy on the versions
//! and suites offered, and puts the bytes back for rustls. A refused client
//! never gets a certificate.
//!
//! It is the listener's use of the TLS mechanisms (`tls::hello`, `tls::policy`) with the live
//! plan and the edge's state, so it sits with the other accept-time modules (`netfilter.rs`,
//! `proxy_header.rs`), above `tls/` (docs/architecture.md).

use crate::proxy_header::{self, Refusal};
use crate::state::EdgeState;
use crate::tls::hello::{self, Parsed};
use async_trait::async_trait;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::{Error, ErrorType, Result};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a client may take to send its ClientHello (as long as for a PROXY header).
const HELLO_DEADLINE: Duration = proxy_header::DEADLINE;

pub struct HelloGate {
    pub state: Arc<EdgeState>,
    pub listener: usize,
}

/// How every refusal's error begins. Pingora logs each failed handshake at ERROR; the edge's log
/// bridge (`DEMOTED_PINGORA_ERRORS` in `cli.rs`) passes these on at DEBUG, since the metric counts
/// them by reason and a load balancer's TCP health checks would otherwise log an error every few
/// seconds.
pub const REFUSED: &str = "TLS handshake refused";

impl HelloGate {
    fn refuse(&self, reason: &'static str) -> Result<()> {
        self.state
            .metrics
            .tls_handshake_failures
            .with_label_values(&[reason])
            .inc();
        Error::e_explain(ErrorType::HandshakeError, format!("{REFUSED}: {reason}"))
    }
}

#[async_trait]
impl PreTlsProcess for HelloGate {
    async fn process(&self, stream: &mut L4Stream) -> Result<()> {
        let proxy_protocol = self
            .state
            .plan
            .load()
            .listeners
            .get(self.listener)
            .is_some_and(|l| l.proxy_protocol);
        if proxy_protocol {
            self.take_proxy_header(stream).await?;
        }
        let mut buf = Vec::with_capacity(2048);
        let parsed = tokio::time::timeout(HELLO_DEADLINE, read_hello(stream, &mut buf)).await;
        stream.rewind(&buf);
        let info = match parsed {
            Err(_) => return self.refuse("client_hello_timeout"),
            Ok(Parsed::Incomplete) => return self.refuse("client_hello_incomplete"),
            Ok(Parsed::NotTls) if hello::looks_like_http(&buf) => {
                answer_plain_http(stream).await;
                return self.refuse("plain_http");
            }
            Ok(Parsed::NotTls) => return self.refuse("not_tls"),
            Ok(Parsed::Hello(info)) => info,
        };
        let plan = self.state.plan.load();
        let policy = plan
            .listeners
            .get(self.listener)
            .and_then(|l| l.ssl_policy.as_ref());
        if policy.is_some_and(|p| !p.admits(&info.versions, &info.cipher_suites)) {
            return self.refuse("ssl_policy");
        }
        self.state
            .metrics
            .tls_handshakes
            .with_label_values(&["admitted"])
            .inc();
        Ok(())
    }
}

impl HelloGate {
    /// Takes the PROXY protocol header off the connection ([`crate::proxy_header::take`]: its
    /// source becomes the peer, and the network rules are checked against it).
    async fn take_proxy_header(&self, stream: &mut L4Stream) -> Result<()> {
        let port = self
            .state
            .plan
            .load()
            .listeners
            .get(self.listener)
            .map_or(0, |l| l.bind.port());
        match proxy_header::take(&self.state, port, stream).await {
            Ok(()) => Ok(()),
            Err(Refusal::Invalid(_)) => self.refuse("proxy_protocol"),
            // Counted as a block, not as a handshake failure; logged like the gate's refusals.
            Err(denied @ Refusal::Denied) => {
                Error::e_explain(ErrorType::HandshakeError, format!("{REFUSED}: {denied}"))
            }
        }
    }
}

/// What a client that spoke plain HTTP to an HTTPS listener reads (nginx answers the same
/// mistake with a 400 too): a clear answer instead of a silently closed connection.
const PLAIN_HTTP_BODY: &str = "This port speaks HTTPS: use an https:// URL.\n";

/// Writes a 400 with [`PLAIN_HTTP_BODY`], giving up after a second (the client may not read).
async fn answer_plain_http(stream: &mut L4Stream) {
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{PLAIN_HTTP_BODY}",
        PLAIN_HTTP_BODY.len()
    );
    let write = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.flush().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// Reads until a complete ClientHello is buffered (or the peer stops).
async fn read_hello(stream: &mut L4Stream, buf: &mut Vec<u8>) -> Parsed {
    let mut chunk = [0u8; 4096];
    loop {
        match hello::parse(buf) {
            Parsed::Incomplete if buf.len() <= hello::MAX_HELLO => {}
            other => return other,
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Parsed::Incomplete,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
