//! Typed configuration: what an operator writes in `portcullis.toml`.
//!
//! These types mirror the file one to one and carry no behaviour. They are
//! checked by [`load`] (syntax, unknown keys, semantic validation) and then
//! compiled once into the immutable runtime plan ([`crate::plan::RuntimePlan`])
//! that the request path reads.

pub mod diagnostics;
mod load;

pub use diagnostics::{Diagnostic, Diagnostics, KeyPath, Severity};
pub use load::{load_file, load_str, Loaded};

use serde::Deserialize;
use std::path::PathBuf;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    pub admin: Option<AdminConfig>,
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default)]
    pub sites: Vec<SiteConfig>,
    #[serde(default)]
    pub pools: Vec<PoolConfig>,
}

/// Process-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Worker threads per listener service.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Name of this edge instance: used in `Via` and in logs.
    #[serde(default = "default_node_id")]
    pub node_id: String,
    /// Grace period, in seconds, for in-flight requests on shutdown.
    #[serde(default = "default_grace")]
    pub graceful_shutdown_seconds: u64,
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
fn default_node_id() -> String {
    "portcullis".to_string()
}
fn default_grace() -> u64 {
    5
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            threads: default_threads(),
            node_id: default_node_id(),
            graceful_shutdown_seconds: default_grace(),
        }
    }
}

/// The admin listener (health endpoints, status; metrics later).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub bind: String,
}

/// What a listener does with the connections it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    /// Plain HTTP, proxied.
    Http,
    /// TLS-terminated HTTPS (HTTP/1.1 and, by ALPN, HTTP/2), proxied.
    Https,
    /// Plain HTTP that answers every request with a redirect to HTTPS.
    Redirect,
}

/// One listening socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub name: String,
    /// `IP:port`, e.g. `0.0.0.0:443` or `[::]:443`.
    pub bind: String,
    pub protocol: ListenerProtocol,
    /// Offer HTTP/2 by ALPN (HTTPS listeners only).
    #[serde(default = "default_true")]
    pub http2: bool,
    /// Certificates served on an HTTPS listener, chosen by SNI.
    #[serde(default)]
    pub certificates: Vec<CertificateConfig>,
    /// Redirect listeners: the port of the HTTPS URL (omitted from the URL when 443).
    #[serde(default = "default_https_port")]
    pub redirect_port: u16,
    /// Redirect listeners: the status code (301, 302, 307 or 308).
    #[serde(default = "default_redirect_status")]
    pub redirect_status: u16,
}

fn default_true() -> bool {
    true
}
fn default_https_port() -> u16 {
    443
}
fn default_redirect_status() -> u16 {
    308
}

/// A certificate chain and key, and the SNI names it serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM file with the leaf certificate first, then intermediates.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Host names this certificate is chosen for; `*.example.com` matches one label.
    #[serde(default)]
    pub server_names: Vec<String>,
    /// Served when the client sends no SNI or an unknown name.
    #[serde(default)]
    pub default: bool,
}

/// A site: the host names it answers and how paths map to pools.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub name: String,
    /// Host names (without port). `*` matches any host; `*.example.com` one label.
    pub hosts: Vec<String>,
    /// Listener names this site is served on; empty means all proxying listeners.
    #[serde(default)]
    pub listeners: Vec<String>,
    /// Routes, longest matching prefix wins.
    pub routes: Vec<RouteConfig>,
}

/// A path prefix and the pool it goes to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    #[serde(default = "default_prefix")]
    pub path_prefix: String,
    pub pool: String,
}

fn default_prefix() -> String {
    "/".to_string()
}

/// How a pool picks a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancing {
    #[default]
    RoundRobin,
}

/// A pool of backends (the internal API-gateway instances).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub name: String,
    #[serde(default)]
    pub load_balancing: LoadBalancing,
    pub backends: Vec<BackendConfig>,
    /// TLS to the backends; plain HTTP when absent.
    pub tls: Option<UpstreamTlsConfig>,
    /// Connect timeout in milliseconds.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Time to wait for the backend's response headers, in milliseconds.
    #[serde(default = "default_read_timeout")]
    pub read_timeout_ms: u64,
    /// How many backends to try for one request when connecting fails.
    #[serde(default = "default_tries")]
    pub max_tries: usize,
}

fn default_connect_timeout() -> u64 {
    2_000
}
fn default_read_timeout() -> u64 {
    30_000
}
fn default_tries() -> usize {
    2
}

/// One backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// `IP:port`.
    pub address: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// TLS from the edge to a pool's backends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// SNI and the name the backend certificate is verified against.
    pub sni: String,
    /// PEM bundle of CAs trusted for backend certificates; system roots when absent.
    pub ca: Option<PathBuf>,
    /// Skip certificate verification (a warning is printed): for lab use only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Speak HTTP/2 to the backend when it offers it by ALPN.
    #[serde(default)]
    pub http2: bool,
}
