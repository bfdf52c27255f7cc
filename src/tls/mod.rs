//! TLS termination: certificates loaded from PEM files and chosen by SNI.
//!
//! Certificates are loaded and checked (chain parses, key parses, key matches
//! the leaf) when the config is compiled, so a bad file is a config error and
//! never a failed handshake at run time.

pub mod hello;
pub mod mtls;
pub mod policy;

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Why a certificate and key could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertError {
    /// The certificate file is missing, unreadable or holds no certificate.
    Cert(String),
    /// The key file is missing, unreadable, holds no key or an unsupported one.
    Key(String),
    /// Both parse, but the key is not the certificate's.
    Mismatch(String),
}

impl CertError {
    /// The config key the error belongs to.
    pub fn key(&self) -> &'static str {
        match self {
            CertError::Cert(_) => "cert",
            CertError::Key(_) | CertError::Mismatch(_) => "key",
        }
    }
}

impl std::fmt::Display for CertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertError::Cert(m) | CertError::Key(m) | CertError::Mismatch(m) => f.write_str(m),
        }
    }
}

/// Reads a PEM certificate chain and private key and checks that they belong together.
pub fn load_certified_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, CertError> {
    let chain = read_cert_chain(cert_path).map_err(CertError::Cert)?;
    let key = read_private_key(key_path).map_err(CertError::Key)?;
    let signing_key = any_supported_type(&key).map_err(|e| {
        CertError::Key(format!(
            "{}: unsupported private key: {e}",
            key_path.display()
        ))
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|e| {
        CertError::Mismatch(format!(
            "the key in {} does not match the certificate in {}: {e}",
            key_path.display(),
            cert_path.display()
        ))
    })?;
    Ok(certified)
}

/// Reads every certificate in a PEM file; fails when there is none.
pub fn read_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let chain: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: bad PEM: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(chain)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("{}: bad PEM: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no private key found", path.display()))
}

/// The certificates of one listener, indexed for SNI lookup.
#[derive(Debug, Default)]
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the parent domain of `*.parent`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// Registers `key` for `names` (lowercase; `*.example.com` for one label).
    pub fn add(&mut self, names: &[String], key: Arc<CertifiedKey>, is_default: bool) {
        for name in names {
            let name = name.to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(parent) => self.wildcard.insert(parent.to_string(), key.clone()),
                None => self.exact.insert(name, key.clone()),
            };
        }
        if is_default || self.default.is_none() {
            self.default = Some(key);
        }
    }

    /// The certificate for a server name: exact, then wildcard, then the default.
    pub fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = sni else {
            return self.default.clone();
        };
        let name = name.to_ascii_lowercase();
        if let Some(k) = self.exact.get(&name) {
            return Some(k.clone());
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(k) = self.wildcard.get(parent) {
                return Some(k.clone());
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.lookup(hello.server_name())
    }
}

/// A listener's certificates behind an atomic pointer, so a reload can swap
/// them without touching the listening socket. Handshakes in progress keep the
/// set they started with.
#[derive(Debug)]
pub struct SwappableResolver(arc_swap::ArcSwap<SniResolver>);

impl SwappableResolver {
    pub fn new(initial: Arc<SniResolver>) -> Self {
        SwappableResolver(arc_swap::ArcSwap::new(initial))
    }

    pub fn swap(&self, next: Arc<SniResolver>) {
        self.0.store(next);
    }
}

impl ResolvesServerCert for SwappableResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load().lookup(hello.server_name())
    }
}
