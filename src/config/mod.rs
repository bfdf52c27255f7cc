//! Typed configuration: what an operator writes in `portcullis.toml`.
//!
//! These types mirror the file one to one and carry no behaviour. They are
//! checked by [`load`] (syntax, unknown keys, semantic validation) and then
//! compiled once into the immutable runtime plan ([`crate::plan::RuntimePlan`])
//! that the request path reads.

pub mod diagnostics;
mod limits;
mod load;

pub use diagnostics::{Diagnostic, Diagnostics, KeyPath, Severity};
pub use limits::Limits;
pub use load::{load_file, load_str, read_file, read_str, Loaded};

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
    #[serde(default)]
    pub logging: LoggingConfig,
    /// Country database for geo rules and the `client_country` variable.
    pub geoip: Option<GeoIpConfig>,
    /// Who may open a connection at all, checked before any TLS work.
    #[serde(default)]
    pub network_rules: crate::netrules::NetworkRulesConfig,
    #[serde(default)]
    pub client_ip: ClientIpConfig,
    /// Request size limits.
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub waf: WafConfig,
    /// Where rate-limit counters live (in memory by default, or Redis for a fleet).
    pub rate_limit_store: Option<crate::ratelimit::RateLimitStoreConfig>,
}

/// The WAF: which rule sets, and the default policy for every site.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WafConfig {
    /// A directory of rule files (see rulesets/README.md); the rule sets built
    /// into the binary when absent.
    pub rulesets: Option<PathBuf>,
    /// Mode, paranoia level, threshold, rule overrides and exclusions.
    #[serde(default)]
    pub policy: crate::waf::PolicyConfig,
}

/// What happens to a body larger than the WAF inspects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OversizedBody {
    /// 413 in prevention mode.
    #[default]
    Reject,
    /// Inspect the first `body_limit` bytes and pass the rest.
    InspectPrefix,
}

/// A MaxMind-format country database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoIpConfig {
    pub database: PathBuf,
    /// `country_iso_code` (GeoIP2/GeoLite2), `registered_country`, or `country_code` (DB-IP flat layout).
    #[serde(default)]
    pub field: crate::geo::GeoField,
    /// The code for addresses the database does not know.
    #[serde(default = "default_unknown_country")]
    pub unknown: String,
}

fn default_unknown_country() -> String {
    "ZZ".to_string()
}

/// How the real client address is found.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ClientIpConfig {
    /// Peers (CIDRs) whose X-Forwarded-For is believed: the client is the
    /// right-most address in it that is not itself a trusted proxy.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

/// A site's country allow-list or deny-list (use one of the two).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoPolicyConfig {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

/// Where the access and WAF logs go: `"stdout"`, `"off"` or a file path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    #[serde(default = "default_stdout")]
    pub access_log: String,
    #[serde(default = "default_stdout")]
    pub waf_log: String,
}

fn default_stdout() -> String {
    "stdout".to_string()
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            access_log: default_stdout(),
            waf_log: default_stdout(),
        }
    }
}

/// Process-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Worker threads per listener service.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// One work-stealing runtime for all worker threads (true, pingora's default), or one
    /// single-threaded runtime per thread with each HTTP/1 connection kept on the thread that
    /// accepted it (false): less CPU per HTTP/1 request (no cross-thread wake-ups or frees), but
    /// slower HTTP/2 and a less even load. BENCHMARKS.md (session 10) has the measurements.
    #[serde(default = "default_work_stealing")]
    pub work_stealing: bool,
    /// Name of this edge instance: used in `Via` and in logs.
    #[serde(default = "default_node_id")]
    pub node_id: String,
    /// Grace period, in seconds, for in-flight requests on shutdown.
    #[serde(default = "default_grace")]
    pub graceful_shutdown_seconds: u64,
    /// The region this edge runs in: pool backends in the same region are preferred.
    #[serde(default)]
    pub region: Option<String>,
    /// A request that already passed through this node this many times (counted
    /// in `Via`) is answered 508 Loop Detected.
    #[serde(default = "default_max_hops")]
    pub max_hops: usize,
    /// Unix socket through which a new binary takes over the listening sockets.
    #[serde(default = "default_upgrade_sock")]
    pub upgrade_sock: String,
    /// Where the process id is written.
    #[serde(default = "default_pid_file")]
    pub pid_file: String,
    /// A request carrying `X-Portcullis-Trace: <this secret>` gets a response
    /// header listing each stage's decision. Unset: tracing is off.
    #[serde(default)]
    pub trace_secret: Option<String>,
}

/// The directory for the upgrade socket and pid file: the runtime directory systemd made for
/// the service (`RuntimeDirectory=`, announced as `$RUNTIME_DIRECTORY`; under the unit's
/// `ProtectSystem=strict`, /tmp is read-only), else /tmp.
fn runtime_dir() -> String {
    std::env::var("RUNTIME_DIRECTORY")
        .ok()
        .and_then(|dirs| dirs.split(':').next().map(str::to_string))
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/tmp".to_string())
}
fn default_upgrade_sock() -> String {
    format!("{}/portcullis_upgrade.sock", runtime_dir())
}
fn default_pid_file() -> String {
    format!("{}/portcullis.pid", runtime_dir())
}

fn default_max_hops() -> usize {
    3
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
fn default_work_stealing() -> bool {
    true
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
            work_stealing: default_work_stealing(),
            node_id: default_node_id(),
            graceful_shutdown_seconds: default_grace(),
            region: None,
            max_hops: default_max_hops(),
            trace_secret: None,
            upgrade_sock: default_upgrade_sock(),
            pid_file: default_pid_file(),
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
    /// HTTPS listeners: `modern` (TLS 1.3 only), `recommended` (TLS 1.2+, ECDHE
    /// AEAD), Application Gateway names, or `custom` with `min_version` and `cipher_suites`.
    #[serde(default = "default_ssl_policy")]
    pub ssl_policy: String,
    /// For `ssl_policy = "custom"`: "1.2" or "1.3".
    #[serde(default = "default_min_version")]
    pub min_version: String,
    /// For `ssl_policy = "custom"`: IANA names, e.g. `TLS_AES_128_GCM_SHA256`.
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// Listeners (of any protocol) behind an L4 load balancer: every connection
    /// starts with a PROXY protocol (v1 or v2) header whose source is the client address.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Client certificates (mTLS) on an HTTPS listener.
    pub client_auth: Option<ClientAuthConfig>,
    /// Redirect listeners: the port of the HTTPS URL (omitted from the URL when 443).
    #[serde(default = "default_https_port")]
    pub redirect_port: u16,
    /// Redirect listeners: the status code (301, 302, 307 or 308).
    #[serde(default = "default_redirect_status")]
    pub redirect_status: u16,
    /// Bytes of the read buffer each client connection gets (pingora's default, 64 KiB). A
    /// smaller buffer holds less memory per idle keep-alive connection and reads large bodies in
    /// more system calls.
    #[serde(default = "default_read_buffer_bytes")]
    pub read_buffer_bytes: usize,
}

/// The read buffer of a client connection, as pingora sizes it by default (64 KiB).
fn default_read_buffer_bytes() -> usize {
    pingora::listeners::DEFAULT_L4_READ_BUFFER_SIZE
}

fn default_true() -> bool {
    true
}
fn default_ssl_policy() -> String {
    "recommended".to_string()
}
fn default_min_version() -> String {
    "1.2".to_string()
}

/// Client certificate verification on a listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// `require`: no handshake without a valid certificate; `request`: verify one
    /// when sent (sites may then require it).
    pub mode: String,
    /// PEM bundle of CAs that sign client certificates.
    pub ca: PathBuf,
    /// Also pass the URL-encoded PEM in X-Forwarded-Client-Cert.
    #[serde(default)]
    pub forward_pem: bool,
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
    /// Countries allowed or denied (needs `[geoip]`).
    pub geo: Option<GeoPolicyConfig>,
    /// Request header that carries the client's country to the backend, e.g. `X-Client-Country`.
    pub country_header: Option<String>,
    /// Priority-ordered custom rules, evaluated before the WAF.
    #[serde(default)]
    pub custom_rules: Vec<crate::customrules::CustomRuleConfig>,
    /// Rate-limit rules.
    #[serde(default)]
    pub rate_limits: Vec<crate::ratelimit::RateLimitConfig>,
    /// This site's WAF policy, replacing `[waf.policy]`.
    pub waf: Option<crate::waf::PolicyConfig>,
    #[serde(default)]
    pub waf_oversized_body: OversizedBody,
    /// Ordered header and URL rewrite rules (see docs/config.md).
    #[serde(default)]
    pub rewrites: Vec<crate::rewrite::RewriteRuleConfig>,
    /// API contracts enforced before the WAF (OpenAPI 3.0/3.1 documents, `src/openapi/`).
    #[serde(default)]
    pub openapi: Vec<crate::openapi::OpenApiConfig>,
    /// Answer 403 unless the client presented a verified certificate (the
    /// listener's `client_auth` must be `request` or `require`).
    #[serde(default)]
    pub require_client_cert: bool,
    /// Response hardening: drop Server, X-Powered-By, X-AspNet-Version(s) and
    /// add Strict-Transport-Security on TLS listeners.
    #[serde(default = "default_true")]
    pub harden_responses: bool,
    /// The Strict-Transport-Security value added on TLS listeners.
    #[serde(default = "default_hsts")]
    pub hsts: String,
}

/// A path prefix and the pool it goes to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    #[serde(default = "default_prefix")]
    pub path_prefix: String,
    pub pool: String,
}

fn default_hsts() -> String {
    "max-age=31536000".to_string()
}

fn default_prefix() -> String {
    "/".to_string()
}

// A pool's algorithm, Host header and all-down behaviour are the upstream mechanism's own words,
// as a site's WAF policy is the WAF's (docs/architecture.md); the file's keys name them here.
pub use crate::upstream::{AllDown, HostHeader, LoadBalancing};

/// A pool of backends (the internal API-gateway instances).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub name: String,
    #[serde(default)]
    pub load_balancing: LoadBalancing,
    /// For `consistent_hash`: `client_ip` or `header:NAME`.
    #[serde(default = "default_hash_key")]
    pub hash_key: String,
    pub backends: Vec<BackendConfig>,
    /// TLS to the backends; plain HTTP when absent.
    pub tls: Option<UpstreamTlsConfig>,
    #[serde(default)]
    pub host_header: HostHeader,
    /// The Host sent when `host_header = "override"`.
    pub host_name: Option<String>,
    /// Connect timeout in milliseconds (TCP and TLS).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Time to wait for each read from the backend (first byte included), in milliseconds.
    #[serde(default = "default_read_timeout")]
    pub read_timeout_ms: u64,
    /// Idle keep-alive connections to backends are closed after this long.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_ms: u64,
    /// Total time for a request including retries, in milliseconds; 0 = no limit.
    #[serde(default)]
    pub total_timeout_ms: u64,
    #[serde(default)]
    pub retry: RetryConfig,
    pub health_check: Option<HealthCheckConfig>,
    #[serde(default)]
    pub passive: PassiveConfig,
    #[serde(default)]
    pub when_all_down: AllDown,
}

fn default_hash_key() -> String {
    "client_ip".to_string()
}
fn default_connect_timeout() -> u64 {
    2_000
}
fn default_read_timeout() -> u64 {
    30_000
}
fn default_idle_timeout() -> u64 {
    60_000
}

/// Retries. A connect failure never reached a backend, so it is always retried
/// on another backend (up to `max_tries`); timeouts and the listed statuses only
/// for idempotent methods, and only within the budget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Backends tried for one request, the first included.
    #[serde(default = "default_tries")]
    pub max_tries: usize,
    /// Retry idempotent requests whose backend timed out.
    #[serde(default = "default_true")]
    pub on_timeout: bool,
    /// Retry idempotent requests answered with these statuses.
    #[serde(default = "default_retry_statuses")]
    pub on_status: Vec<u16>,
    /// Retries (beyond connect failures) may add at most this share of extra load, in percent.
    #[serde(default = "default_budget")]
    pub budget_percent: u32,
}

fn default_tries() -> usize {
    3
}
fn default_retry_statuses() -> Vec<u16> {
    vec![502, 503, 504]
}
fn default_budget() -> u32 {
    20
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_tries: default_tries(),
            on_timeout: true,
            on_status: default_retry_statuses(),
            budget_percent: default_budget(),
        }
    }
}

/// Active health probes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// `http` (a request, status checked) or `tcp` (connect only).
    #[serde(default = "default_probe_kind")]
    pub kind: String,
    #[serde(default = "default_probe_method")]
    pub method: String,
    #[serde(default = "default_probe_path")]
    pub path: String,
    /// Host header of the probe; the pool's Host policy when absent.
    pub host: Option<String>,
    /// Status ranges counted healthy, e.g. `["200-399"]`.
    #[serde(default = "default_probe_statuses")]
    pub expected_status: Vec<String>,
    #[serde(default = "default_probe_interval")]
    pub interval_ms: u64,
    #[serde(default = "default_probe_timeout")]
    pub timeout_ms: u64,
    /// Consecutive successes that make an unhealthy backend healthy.
    #[serde(default = "default_threshold")]
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy backend unhealthy.
    #[serde(default = "default_threshold")]
    pub unhealthy_threshold: u32,
}

fn default_probe_kind() -> String {
    "http".into()
}
fn default_probe_method() -> String {
    "GET".into()
}
fn default_probe_path() -> String {
    "/".into()
}
fn default_probe_statuses() -> Vec<String> {
    vec!["200-399".into()]
}
fn default_probe_interval() -> u64 {
    2_000
}
fn default_probe_timeout() -> u64 {
    1_000
}
fn default_threshold() -> u32 {
    2
}

/// Passive failure detection from real traffic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveConfig {
    /// Consecutive failures (connect error, timeout, listed status) that eject a backend; 0 = off.
    #[serde(default = "default_consecutive")]
    pub consecutive_failures: u32,
    /// How long an ejected backend gets no traffic, in seconds.
    #[serde(default = "default_ejection")]
    pub ejection_seconds: u64,
    /// Backend statuses counted as failures.
    #[serde(default = "default_retry_statuses")]
    pub failure_status: Vec<u16>,
}

fn default_consecutive() -> u32 {
    3
}
fn default_ejection() -> u64 {
    10
}

impl Default for PassiveConfig {
    fn default() -> Self {
        PassiveConfig {
            consecutive_failures: default_consecutive(),
            ejection_seconds: default_ejection(),
            failure_status: default_retry_statuses(),
        }
    }
}

/// One backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// `IP:port`.
    pub address: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Region of the backend; same as the edge's when absent.
    pub region: Option<String>,
    /// The backend's own host name (for `host_header = "backend"`).
    pub host: Option<String>,
}

fn default_weight() -> u32 {
    1
}

/// TLS from the edge to a pool's backends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// SNI and the name the backend certificate is verified against; the Host sent when absent.
    pub sni: Option<String>,
    /// PEM bundle of CAs trusted for backend certificates; system roots when absent.
    pub ca: Option<PathBuf>,
    /// Skip certificate verification (a warning is printed): for lab use only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Speak HTTP/2 to the backend when it offers it by ALPN.
    #[serde(default)]
    pub http2: bool,
}
