//! Compiling a listener's TLS settings beyond certificates: the SSL policy
//! and client certificate verification.

use crate::config::{Diagnostics, KeyPath, ListenerConfig};
use crate::tls::{mtls, policy};
use rustls::server::danger::ClientCertVerifier;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Client certificate verification on a listener.
#[derive(Clone)]
pub struct ClientAuthPlan {
    pub verifier: Arc<dyn ClientCertVerifier>,
    pub require: bool,
    pub forward_pem: bool,
}

impl std::fmt::Debug for ClientAuthPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuthPlan")
            .field("require", &self.require)
            .field("forward_pem", &self.forward_pem)
            .finish()
    }
}

pub fn compile_ssl_policy(
    l: &ListenerConfig,
    path: &KeyPath,
    d: &mut Diagnostics,
) -> Option<policy::SslPolicy> {
    if l.ssl_policy == "custom" {
        match policy::custom(&l.min_version, &l.cipher_suites) {
            Ok(p) => Some(p),
            Err(errors) => {
                for e in errors {
                    let key = if e.starts_with("min_version") {
                        "min_version"
                    } else {
                        "cipher_suites"
                    };
                    d.error(&path.key(key), e);
                }
                None
            }
        }
    } else {
        if !l.cipher_suites.is_empty() {
            d.warning(
                &path.key("cipher_suites"),
                "only used with ssl_policy = \"custom\"",
            );
        }
        policy::named(&l.ssl_policy)
            .map_err(|e| d.error(&path.key("ssl_policy"), e))
            .ok()
    }
}

pub fn compile_client_auth(
    l: &ListenerConfig,
    path: &KeyPath,
    resolve: &dyn Fn(&Path) -> PathBuf,
    d: &mut Diagnostics,
) -> Option<ClientAuthPlan> {
    let c = l.client_auth.as_ref()?;
    let path = path.key("client_auth");
    let require = match c.mode.as_str() {
        "require" => true,
        "request" => false,
        other => {
            d.error(
                &path.key("mode"),
                format!("{other:?}: expected \"require\" or \"request\""),
            );
            return None;
        }
    };
    match mtls::client_verifier(&resolve(&c.ca), require) {
        Ok(verifier) => Some(ClientAuthPlan {
            verifier,
            require,
            forward_pem: c.forward_pem,
        }),
        Err(e) => {
            d.error(&path.key("ca"), e);
            None
        }
    }
}
