//! Client certificates (mTLS) on a listener, and their facts passed to the
//! backend. The edge terminates TLS, so an internal gateway that authorises by
//! client certificate would lose it; instead the edge verifies the certificate
//! and forwards what it learned in `X-Forwarded-Client-Cert` (Envoy's format).

use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use std::any::Any;
use std::path::Path;
use std::sync::Arc;
use x509_parser::prelude::*;

/// What the edge learned from a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertFacts {
    /// SHA-256 of the DER certificate, lowercase hex.
    pub fingerprint_sha256: String,
    /// The subject distinguished name, e.g. `CN=client-1, O=Example`.
    pub subject: String,
    pub uri_sans: Vec<String>,
    /// The certificate as PEM.
    pub pem: String,
}

impl ClientCertFacts {
    /// Parses a DER certificate; `None` when it is not valid X.509.
    pub fn from_der(der: &[u8]) -> Option<ClientCertFacts> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let fingerprint_sha256 = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let uri_sans = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::URI(u) => Some(u.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let pem = pem_encode(der);
        Some(ClientCertFacts {
            fingerprint_sha256,
            subject: cert.subject().to_string(),
            uri_sans,
            pem,
        })
    }

    /// The `X-Forwarded-Client-Cert` value: `Hash=..;Subject="..";URI=..[;Cert="<url-encoded PEM>"]`.
    pub fn xfcc(&self, with_pem: bool) -> String {
        let mut v = format!(
            "Hash={};Subject=\"{}\"",
            self.fingerprint_sha256,
            self.subject.replace('"', "\\\"")
        );
        for uri in &self.uri_sans {
            v.push_str(";URI=");
            v.push_str(uri);
        }
        if with_pem {
            let encoded = percent_encoding::utf8_percent_encode(&self.pem, URL_ENCODE);
            v.push_str(&format!(";Cert=\"{encoded}\""));
        }
        v
    }
}

/// Everything but RFC 3986 unreserved characters is percent-encoded.
const URL_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn pem_encode(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A verifier for client certificates signed by the CAs in `ca`; with
/// `require = false` clients without a certificate are let through (and sites
/// may still require one).
pub fn client_verifier(ca: &Path, require: bool) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let chain = super::read_cert_chain(ca)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in chain {
        roots
            .add(cert)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = if require {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder
        .build()
        .map_err(|e| format!("{}: {e}", ca.display()))
}

/// Runs after each completed handshake: counts it, and stores the verified client certificate's
/// facts on the connection.
pub struct HandshakeComplete {
    pub metrics: Arc<crate::metrics::Metrics>,
}

#[async_trait]
impl TlsAccept for HandshakeComplete {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        self.metrics
            .tls_handshakes
            .with_label_values(&["completed"])
            .inc();
        let der = tls.peer_certificate_der()?;
        ClientCertFacts::from_der(der).map(|f| Arc::new(f) as Arc<dyn Any + Send + Sync>)
    }
}
