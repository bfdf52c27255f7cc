//! Upstream pools: the internal API-gateway instances behind the edge.
//!
//! A [`Pool`] is compiled from config once. Selection is lock-free: weighted
//! round robin walks a precomputed smooth schedule with one atomic counter.

mod schedule;

use crate::config::{PoolConfig, UpstreamTlsConfig};
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{parse_x509, WrappedX509};
use pingora::protocols::ALPN;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One backend of a pool.
#[derive(Debug, Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    pub weight: u32,
}

/// TLS settings towards a pool's backends, with the CA bundle already parsed.
pub struct UpstreamTls {
    pub sni: String,
    pub verify: bool,
    pub http2: bool,
    pub ca: Option<Arc<Box<[WrappedX509]>>>,
}

/// A compiled pool.
pub struct Pool {
    pub name: String,
    pub backends: Vec<Backend>,
    schedule: Vec<usize>,
    cursor: AtomicUsize,
    pub tls: Option<UpstreamTls>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub max_tries: usize,
}

impl Pool {
    /// Builds a pool from checked parts (addresses already parsed).
    pub fn new(cfg: &PoolConfig, backends: Vec<Backend>, tls: Option<UpstreamTls>) -> Pool {
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        Pool {
            name: cfg.name.clone(),
            schedule: schedule::smooth_weighted(&weights),
            backends,
            cursor: AtomicUsize::new(0),
            tls,
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
            read_timeout: Duration::from_millis(cfg.read_timeout_ms),
            max_tries: cfg.max_tries.max(1),
        }
    }

    /// Picks the next backend by weighted round robin, skipping those already tried
    /// for this request. `None` when every backend has been tried.
    pub fn select(&self, tried: &[usize]) -> Option<usize> {
        if self.schedule.is_empty() {
            return None;
        }
        for _ in 0..self.schedule.len() {
            let n = self.cursor.fetch_add(1, Ordering::Relaxed);
            let idx = self.schedule[n % self.schedule.len()];
            if !tried.contains(&idx) {
                return Some(idx);
            }
        }
        None
    }

    /// The pingora peer for backend `idx`, with this pool's timeouts and TLS.
    pub fn peer(&self, idx: usize) -> Option<HttpPeer> {
        let backend = self.backends.get(idx)?;
        let (tls, sni) = match &self.tls {
            Some(t) => (true, t.sni.clone()),
            None => (false, String::new()),
        };
        let mut peer = HttpPeer::new(backend.addr, tls, sni);
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        if let Some(t) = &self.tls {
            peer.options.verify_cert = t.verify;
            peer.options.verify_hostname = t.verify;
            peer.options.ca = t.ca.as_ref().map(|ca| Arc::from(ca.as_ref().iter().map(clone_x509).collect::<Vec<_>>().into_boxed_slice()));
            if t.http2 {
                peer.options.alpn = ALPN::H2H1;
            }
        }
        Some(peer)
    }
}

fn clone_x509(c: &WrappedX509) -> WrappedX509 {
    WrappedX509::new(c.borrow_raw_cert().clone(), parse_x509)
}

/// Parses a CA bundle into pingora's form. Each certificate is checked with
/// `x509-parser` first, because pingora's own parser panics on bad DER.
pub fn load_ca_bundle(path: &std::path::Path) -> Result<Box<[WrappedX509]>, String> {
    let chain = crate::tls::read_cert_chain(path)?;
    let mut out = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        if x509_parser::parse_x509_certificate(der.as_ref()).is_err() {
            return Err(format!("{}: certificate #{} is not valid X.509", path.display(), i + 1));
        }
        out.push(WrappedX509::new(der.as_ref().to_vec(), parse_x509));
    }
    Ok(out.into_boxed_slice())
}

/// Compiles the TLS part of a pool config.
pub fn upstream_tls(cfg: &UpstreamTlsConfig, ca: Option<Box<[WrappedX509]>>) -> UpstreamTls {
    UpstreamTls {
        sni: cfg.sni.clone(),
        verify: !cfg.insecure_skip_verify,
        http2: cfg.http2,
        ca: ca.map(Arc::new),
    }
}
