//! Active health probes: a background task that checks every backend of every
//! pool that has a `health_check`, on the pool's interval, with HTTP or TCP.
//! It asks its [`PoolSource`] for the pools on every round, so reloads are picked up.

use super::health::Transition;
use super::Pool;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How a pool's backends are probed.
pub struct ProbeSpec {
    pub http: bool,
    pub method: String,
    pub path: String,
    pub host: Option<String>,
    /// Inclusive status ranges counted healthy.
    pub expected: Vec<(u16, u16)>,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// When the next round is due (on the health clock).
    pub next_due_ms: AtomicU64,
}

/// Parses `"200"` or `"200-399"`.
pub fn parse_status_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    ((100..=599).contains(&a) && (a..=599).contains(&b)).then_some((a, b))
}

/// A rustls client config for probes: the pool's CA (or the system roots), or no verification.
pub fn client_config(
    ca: Option<&[rustls::pki_types::CertificateDer<'static>]>,
    verify: bool,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client setup: {e}"))?;
    let config = if verify {
        let mut roots = rustls::RootCertStore::empty();
        let certs = match ca {
            Some(ca) => ca.to_vec(),
            None => pingora::tls::load_native_certs().unwrap_or_default(),
        };
        roots.add_parsable_certificates(certs);
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// Accepts any server certificate (signatures are still checked): only for
/// pools with `insecure_skip_verify`, and for tests that inspect what a server sent.
#[derive(Debug)]
pub struct NoVerify(pub Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Where the probe service finds the pools to probe. The edge hands it the live plan's pools
/// (`server.rs`); probes receive what they probe and know nothing of the plan.
pub trait PoolSource: Send + Sync + 'static {
    /// Calls `f` with each pool to probe now (asked on every tick, so a reload's pools are
    /// probed from then on).
    fn for_each_pool(&self, f: &mut dyn FnMut(&Arc<Pool>));
}

/// The background service that runs probes for the pools its source names.
pub struct ProbeService<S> {
    pub pools: S,
}

/// How often the service looks for due probes.
const TICK: Duration = Duration::from_millis(50);

#[async_trait]
impl<S: PoolSource> BackgroundService for ProbeService<S> {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            self.pools
                .for_each_pool(&mut |pool| start_round_if_due(pool));
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

fn start_round_if_due(pool: &Arc<Pool>) {
    let Some(spec) = &pool.probe else { return };
    let now = super::health::now_ms();
    if spec.next_due_ms.load(Ordering::Relaxed) > now {
        return;
    }
    spec.next_due_ms
        .store(now + spec.interval.as_millis() as u64, Ordering::Relaxed);
    for idx in 0..pool.backends.len() {
        let pool = pool.clone();
        tokio::spawn(async move { probe_backend(&pool, idx).await });
    }
}

async fn probe_backend(pool: &Pool, idx: usize) {
    let (Some(spec), Some(backend)) = (&pool.probe, pool.backends.get(idx)) else {
        return;
    };
    let ok = matches!(
        tokio::time::timeout(spec.timeout, probe_once(pool, spec, idx)).await,
        Ok(Ok(true))
    );
    match backend
        .health
        .record_probe(ok, spec.healthy_threshold, spec.unhealthy_threshold)
    {
        Transition::BecameHealthy => {
            tracing::info!(pool = %pool.name, backend = %backend.addr, "backend healthy: probe passed")
        }
        Transition::BecameUnhealthy => {
            tracing::warn!(pool = %pool.name, backend = %backend.addr, "backend unhealthy: probe failed")
        }
        _ => {}
    }
}

/// One probe: `Ok(true)` when the backend answered as expected.
async fn probe_once(pool: &Pool, spec: &ProbeSpec, idx: usize) -> std::io::Result<bool> {
    let addr: SocketAddr = pool.backends[idx].addr;
    let tcp = TcpStream::connect(addr).await?;
    if !spec.http {
        return Ok(true);
    }
    let host = spec
        .host
        .clone()
        .unwrap_or_else(|| pool.upstream_host(idx, &addr.ip().to_string()).to_string());
    match &pool.tls {
        None => http_probe(tcp, spec, &host).await,
        Some(tls) => {
            let sni = tls.sni.clone().unwrap_or_else(|| host.clone());
            let name =
                rustls::pki_types::ServerName::try_from(sni).map_err(std::io::Error::other)?;
            let stream = tokio_rustls::TlsConnector::from(tls.probe_client.clone())
                .connect(name, tcp)
                .await?;
            http_probe(stream, spec, &host).await
        }
    }
}

async fn http_probe<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    spec: &ProbeSpec,
    host: &str,
) -> std::io::Result<bool> {
    let req = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portcullis-health-probe\r\nConnection: close\r\n\r\n",
        spec.method, spec.path
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        let n = s.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
    }
    // "HTTP/1.1 200 ..."
    let status = std::str::from_utf8(&buf[..len])
        .ok()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok());
    Ok(status.is_some_and(|st| spec.expected.iter().any(|&(a, b)| (a..=b).contains(&st))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges() {
        assert_eq!(parse_status_range("200-399"), Some((200, 399)));
        assert_eq!(parse_status_range("204"), Some((204, 204)));
        assert_eq!(parse_status_range("399-200"), None);
        assert_eq!(parse_status_range("abc"), None);
        assert_eq!(parse_status_range("700"), None);
    }
}
