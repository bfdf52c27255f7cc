//! Upstream pools: the internal API-gateway instances behind the edge.
//!
//! A [`Pool`] is built once per plan, from [`PoolSettings`] and the [`PoolParts`] compiling
//! checked; this module never reads the configuration itself (docs/architecture.md). Backends are grouped into priority
//! tiers (same region as the edge first, then the others); within the first
//! tier that has an available backend, the pool's algorithm picks one.
//! Health (probes, passive ejection, requests in flight) lives in atomics
//! shared with the probe task, so selection never takes a lock.

pub mod health;
pub mod probe;
pub mod retry;
mod schedule;
mod select;
mod settings;

use health::{now_ms, BackendHealth};
use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{parse_x509, WrappedX509};
use select::{Candidate, Tier};
pub use settings::{AllDown, HostHeader, LoadBalancing, PoolSettings};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// One backend of a pool.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    pub weight: u32,
    pub region: Option<String>,
    pub host: Option<String>,
    pub health: Arc<BackendHealth>,
}

/// TLS settings towards a pool's backends, with the CA bundle already parsed.
pub struct UpstreamTls {
    pub sni: Option<String>,
    pub verify: bool,
    pub http2: bool,
    pub ca: Option<Arc<[WrappedX509]>>,
    /// The same trust for health probes, which connect with tokio-rustls.
    pub probe_client: Arc<rustls::ClientConfig>,
}

/// Passive detection settings.
pub struct Passive {
    pub threshold: u32,
    pub cooldown: Duration,
    pub failure_status: Vec<u16>,
}

/// Retry settings.
pub struct RetryPolicy {
    pub max_tries: usize,
    pub on_timeout: bool,
    pub on_status: Vec<u16>,
    pub budget: retry::RetryBudget,
}

/// How the consistent-hash key is taken from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    Header(String),
}

/// A compiled pool.
pub struct Pool {
    pub name: String,
    pub backends: Vec<Backend>,
    pub algorithm: LoadBalancing,
    pub hash_key: HashKey,
    tiers: Vec<Tier>,
    /// Each backend's weight, by index (kept so selection does not rebuild it).
    weights: Vec<u32>,
    pub tls: Option<UpstreamTls>,
    pub host_header: HostHeader,
    pub host_name: Option<String>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    pub total_timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub passive: Passive,
    pub probe: Option<probe::ProbeSpec>,
    pub when_all_down: AllDown,
}

/// Parts of a pool that compiling has already checked.
pub struct PoolParts {
    pub backends: Vec<Backend>,
    pub tls: Option<UpstreamTls>,
    pub probe: Option<probe::ProbeSpec>,
    pub hash_key: HashKey,
}

impl Pool {
    /// Builds a pool; `edge_region` decides which backends form the first tier.
    pub fn new(settings: PoolSettings, parts: PoolParts, edge_region: Option<&str>) -> Pool {
        let weights: Vec<u32> = parts.backends.iter().map(|b| b.weight).collect();
        let addrs: Vec<SocketAddr> = parts.backends.iter().map(|b| b.addr).collect();
        let candidate = Candidate {
            weights: &weights,
            addrs: &addrs,
        };
        let is_local = |b: &Backend| match (&b.region, edge_region) {
            (None, _) | (_, None) => true,
            (Some(r), Some(e)) => r == e,
        };
        let (local, remote): (Vec<usize>, Vec<usize>) =
            (0..parts.backends.len()).partition(|&i| is_local(&parts.backends[i]));
        let tiers = [local, remote]
            .into_iter()
            .filter(|m| !m.is_empty())
            .map(|m| Tier::new(m, &candidate, settings.algorithm))
            .collect();
        Pool {
            name: settings.name,
            backends: parts.backends,
            algorithm: settings.algorithm,
            hash_key: parts.hash_key,
            tiers,
            weights,
            tls: parts.tls,
            host_header: settings.host_header,
            host_name: settings.host_name,
            connect_timeout: settings.connect_timeout,
            read_timeout: settings.read_timeout,
            idle_timeout: settings.idle_timeout,
            total_timeout: settings.total_timeout,
            retry: settings.retry,
            passive: settings.passive,
            probe: parts.probe,
            when_all_down: settings.when_all_down,
        }
    }

    /// Picks a backend for a request, skipping those already tried. Same-region
    /// backends first; other regions only when none is available there. When no
    /// backend is available at all, `when_all_down` decides.
    pub fn select(&self, key: &[u8], tried: &[usize]) -> Option<usize> {
        let now = now_ms();
        let weights = &self.weights;
        let outstanding = |i: usize| self.backends[i].health.outstanding();
        let available = |i: usize| !tried.contains(&i) && self.backends[i].health.available(now);
        let found = self
            .tiers
            .iter()
            .find_map(|t| t.pick(self.algorithm, key, weights, &outstanding, &available));
        if found.is_some() || self.when_all_down == AllDown::FailClosed {
            return found;
        }
        let untried = |i: usize| !tried.contains(&i);
        self.tiers
            .iter()
            .find_map(|t| t.pick(self.algorithm, key, weights, &outstanding, &untried))
    }

    /// Whether any backend may get traffic now (for readiness and status).
    pub fn any_available(&self) -> bool {
        let now = now_ms();
        self.backends.iter().any(|b| b.health.available(now))
    }

    /// The Host header value to send to backend `idx`, given the client's host.
    pub fn upstream_host<'a>(&'a self, idx: usize, client_host: &'a str) -> &'a str {
        match self.host_header {
            HostHeader::Preserve => client_host,
            HostHeader::Override => self.host_name.as_deref().unwrap_or(client_host),
            HostHeader::Backend => self
                .backends
                .get(idx)
                .and_then(|b| b.host.as_deref())
                .unwrap_or(client_host),
        }
    }

    /// The pingora peer for backend `idx`, with this pool's timeouts and TLS.
    pub fn peer(&self, idx: usize, upstream_host: &str) -> Option<HttpPeer> {
        let backend = self.backends.get(idx)?;
        let sni = self
            .tls
            .as_ref()
            .map(|t| {
                t.sni
                    .clone()
                    .unwrap_or_else(|| crate::host::normalize_host(upstream_host))
            })
            .unwrap_or_default();
        let mut peer = HttpPeer::new(backend.addr, self.tls.is_some(), sni);
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.total_connection_timeout = Some(self.connect_timeout);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.idle_timeout = Some(self.idle_timeout);
        if let Some(t) = &self.tls {
            peer.options.verify_cert = t.verify;
            peer.options.verify_hostname = t.verify;
            peer.options.ca =
                t.ca.as_ref()
                    .map(|ca| ca.iter().map(clone_x509).collect::<Vec<_>>().into());
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

/// Parses a CA bundle. Each certificate is checked with `x509-parser` first,
/// because pingora's own parser panics on bad DER.
pub fn load_ca_bundle(
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    let chain = crate::tls::read_cert_chain(path)?;
    for (i, der) in chain.iter().enumerate() {
        if x509_parser::parse_x509_certificate(der.as_ref()).is_err() {
            return Err(format!(
                "{}: certificate #{} is not valid X.509",
                path.display(),
                i + 1
            ));
        }
    }
    Ok(chain)
}

/// The TLS settings towards a pool's backends: the SNI to send (None: the Host sent), whether
/// to verify their certificates, whether to offer HTTP/2, and the already checked CA bundle
/// (None: the system roots).
pub fn upstream_tls(
    sni: Option<String>,
    verify: bool,
    http2: bool,
    ca: Option<Vec<rustls::pki_types::CertificateDer<'static>>>,
) -> Result<UpstreamTls, String> {
    let probe_client = probe::client_config(ca.as_deref(), verify)?;
    Ok(UpstreamTls {
        sni,
        verify,
        http2,
        ca: ca.map(|c| {
            c.iter()
                .map(|d| WrappedX509::new(d.as_ref().to_vec(), parse_x509))
                .collect::<Vec<_>>()
                .into()
        }),
        probe_client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool with the configuration's default timeouts, retries and passive health.
    fn pool(algorithm: &str, backends: &[(&str, u32, Option<&str>)], region: Option<&str>) -> Pool {
        let algorithm: LoadBalancing = toml::Value::String(algorithm.to_string())
            .try_into()
            .expect("algorithm");
        let settings = PoolSettings {
            name: "p".to_string(),
            algorithm,
            host_header: HostHeader::Preserve,
            host_name: None,
            connect_timeout: Duration::from_millis(2_000),
            read_timeout: Duration::from_millis(30_000),
            idle_timeout: Duration::from_millis(60_000),
            total_timeout: None,
            retry: RetryPolicy {
                max_tries: 3,
                on_timeout: true,
                on_status: vec![502, 503, 504],
                budget: retry::RetryBudget::new(20),
            },
            passive: Passive {
                threshold: 3,
                cooldown: Duration::from_secs(10),
                failure_status: vec![502, 503, 504],
            },
            when_all_down: AllDown::FailClosed,
        };
        let parts = PoolParts {
            backends: backends
                .iter()
                .map(|(a, w, r)| Backend {
                    addr: a.parse().expect("addr"),
                    weight: *w,
                    region: r.map(str::to_string),
                    host: None,
                    health: Arc::default(),
                })
                .collect(),
            tls: None,
            probe: None,
            hash_key: HashKey::ClientIp,
        };
        Pool::new(settings, parts, region)
    }

    #[test]
    fn consistent_hash_is_sticky_and_moves_about_one_nth() {
        let addrs: Vec<String> = (0..5).map(|i| format!("10.0.0.{}:80", i + 1)).collect();
        let all: Vec<(&str, u32, Option<&str>)> =
            addrs.iter().map(|a| (a.as_str(), 1, None)).collect();
        let p5 = pool("consistent_hash", &all, None);
        let p4 = pool("consistent_hash", &all[..4], None);
        let keys: Vec<String> = (0..10_000)
            .map(|i| format!("198.51.100.{}-{i}", i % 250))
            .collect();
        let mut moved = 0;
        for k in &keys {
            let a = p5.select(k.as_bytes(), &[]).expect("pick");
            assert_eq!(p5.select(k.as_bytes(), &[]), Some(a), "sticky");
            let b = p4.select(k.as_bytes(), &[]).expect("pick");
            if p5.backends[a].addr != p4.backends[b].addr {
                moved += 1;
            }
        }
        let share = moved as f64 / keys.len() as f64;
        assert!(
            (0.12..=0.28).contains(&share),
            "about 1/5 of keys move, got {share}"
        );
    }

    #[test]
    fn same_region_first_then_failover() {
        let p = pool(
            "round_robin",
            &[
                ("10.0.0.1:80", 1, Some("west")),
                ("10.0.0.2:80", 1, Some("east")),
            ],
            Some("west"),
        );
        for _ in 0..10 {
            assert_eq!(p.select(b"", &[]), Some(0));
        }
        p.backends[0]
            .health
            .record_failure(1, Duration::from_secs(60), false);
        assert_eq!(
            p.select(b"", &[]),
            Some(1),
            "fails over to the other region"
        );
    }

    #[test]
    fn all_down_fails_closed_by_default() {
        let p = pool("round_robin", &[("10.0.0.1:80", 1, None)], None);
        p.backends[0]
            .health
            .record_failure(1, Duration::from_secs(60), false);
        assert_eq!(p.select(b"", &[]), None);
    }

    #[test]
    fn least_outstanding_prefers_the_idle_backend() {
        let p = pool(
            "least_outstanding",
            &[("10.0.0.1:80", 1, None), ("10.0.0.2:80", 1, None)],
            None,
        );
        let _busy: Vec<_> = (0..5).map(|_| p.backends[0].health.track()).collect();
        for _ in 0..20 {
            assert_eq!(p.select(b"", &[]), Some(1));
        }
    }

    #[test]
    fn weighted_random_respects_weights() {
        let p = pool(
            "random",
            &[("10.0.0.1:80", 3, None), ("10.0.0.2:80", 1, None)],
            None,
        );
        let first = (0..4000).filter(|_| p.select(b"", &[]) == Some(0)).count();
        assert!((2700..=3300).contains(&first), "{first} of 4000");
    }
}
