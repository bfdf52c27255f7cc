//! `[limits]`: request sizes, body and keep-alive timeouts, connections per client.
//!
//! A configuration type like the others in this module: the request path reads it (the protocol
//! checks in `proxy::protocol`, the body and keep-alive timeouts in `proxy`, the per-client
//! connection cap and first-head deadline in `conncap`), and the configuration does not depend on
//! the request path (docs/architecture.md).

/// Size limits, each with the status a client gets when it is exceeded.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Longest request-target (414).
    #[serde(default = "default_max_uri")]
    pub max_uri_bytes: usize,
    /// Most header fields (431).
    #[serde(default = "default_max_headers")]
    pub max_header_count: usize,
    /// Largest request head: request line plus all header lines (431).
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Largest request body (413).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Most query-string arguments (400).
    #[serde(default = "default_max_args")]
    pub max_args: usize,
    /// Longest wait for the next piece of a request body (408): bounds slow POSTs.
    #[serde(default = "default_body_read_timeout")]
    pub body_read_timeout_ms: u64,
    /// A keep-alive connection with no new request is closed after this long.
    #[serde(default = "default_idle_timeout")]
    pub keepalive_timeout_seconds: u64,
    /// Most connections open at once from one client address (0: no cap). Trusted proxies are
    /// exempt. Further connections from that address are closed at once.
    #[serde(default = "default_max_connections_per_client")]
    pub max_connections_per_client: u32,
    /// The head of a connection's first request must arrive within this long (slowloris);
    /// 0 leaves only pingora's per-read timeout (60 s).
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_ms: u64,
}

fn default_header_read_timeout() -> u64 {
    15_000
}

fn default_max_connections_per_client() -> u32 {
    512
}

fn default_body_read_timeout() -> u64 {
    10_000
}
fn default_idle_timeout() -> u64 {
    60
}

/// Real pages send 10-12 KB request targets (search and travel sites with their state in the
/// query); Azure Application Gateway v2 takes 32 KB.
fn default_max_uri() -> usize {
    32 * 1024
}
fn default_max_headers() -> usize {
    100
}
/// Room for a request target at `max_uri_bytes` and a browser's headers and cookies.
fn default_max_header_bytes() -> usize {
    64 * 1024
}
fn default_max_body() -> u64 {
    100 * 1024 * 1024
}
fn default_max_args() -> usize {
    512
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_uri_bytes: default_max_uri(),
            max_header_count: default_max_headers(),
            max_header_bytes: default_max_header_bytes(),
            max_body_bytes: default_max_body(),
            max_args: default_max_args(),
            body_read_timeout_ms: default_body_read_timeout(),
            keepalive_timeout_seconds: default_idle_timeout(),
            max_connections_per_client: default_max_connections_per_client(),
            header_read_timeout_ms: default_header_read_timeout(),
        }
    }
}
