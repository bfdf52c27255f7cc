//! The pre-handshake gate of an HTTPS listener: it reads the ClientHello
//! (with a deadline, so a client that never finishes it is dropped), applies
//! the listener's SSL policy on the versions and suites offered, and puts the
//! bytes back for rustls. A refused client never gets a certificate.

use super::hello::{self, Parsed};
use crate::state::EdgeState;
use async_trait::async_trait;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::{Error, ErrorType, Result};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// How long a client may take to send its ClientHello.
const HELLO_DEADLINE: Duration = Duration::from_secs(10);

pub struct HelloGate {
    pub state: Arc<EdgeState>,
    pub listener: usize,
}

impl HelloGate {
    fn refuse(&self, reason: &'static str) -> Result<()> {
        self.state
            .metrics
            .tls_handshake_failures
            .with_label_values(&[reason])
            .inc();
        Error::e_explain(
            ErrorType::HandshakeError,
            format!("TLS handshake refused: {reason}"),
        )
    }
}

#[async_trait]
impl PreTlsProcess for HelloGate {
    async fn process(&self, stream: &mut L4Stream) -> Result<()> {
        let mut buf = Vec::with_capacity(2048);
        let parsed = tokio::time::timeout(HELLO_DEADLINE, read_hello(stream, &mut buf)).await;
        stream.rewind(&buf);
        let info = match parsed {
            Err(_) => return self.refuse("client_hello_timeout"),
            Ok(Parsed::Incomplete) => return self.refuse("client_hello_incomplete"),
            Ok(Parsed::NotTls) => return self.refuse("not_tls"),
            Ok(Parsed::Hello(info)) => info,
        };
        let plan = self.state.plan.load();
        let Some(policy) = plan
            .listeners
            .get(self.listener)
            .and_then(|l| l.ssl_policy.as_ref())
        else {
            return Ok(());
        };
        if policy.admits(&info.versions, &info.cipher_suites) {
            Ok(())
        } else {
            self.refuse("ssl_policy")
        }
    }
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
