//! The runtime plan: the configuration compiled once into the immutable form
//! the request path reads. Compiling is also where every semantic check
//! happens, so `check`, `run` and (later) reload report the same errors.

mod limits;
mod network;
mod pools;
mod tls;
mod waf;

pub use self::tls::ClientAuthPlan;

pub use network::NetworkPlan;

use crate::config::{
    Config, Diagnostic, Diagnostics, HealthCheckConfig, HostHeader, KeyPath, ListenerConfig,
    ListenerProtocol, Loaded, PoolConfig, SiteConfig, UpstreamTlsConfig,
};
use crate::routing::{HostPattern, Route, Site};
use crate::tls::{load_certified_key, SniResolver};
use crate::upstream::probe::{self, ProbeSpec};
use crate::upstream::{self, Backend, HashKey, Pool, PoolParts};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

/// A compiled listener.
pub struct ListenerPlan {
    pub name: String,
    pub bind: SocketAddr,
    pub protocol: ListenerProtocol,
    pub http2: bool,
    /// Certificates by SNI (HTTPS listeners).
    pub certificates: Option<Arc<SniResolver>>,
    pub redirect_port: u16,
    pub redirect_status: u16,
    /// Client certificate verification (HTTPS listeners).
    pub client_auth: Option<ClientAuthPlan>,
    /// Connections start with a PROXY protocol header (any listener protocol; `proxy_header.rs`).
    pub proxy_protocol: bool,
    /// Versions and suites a client must offer (HTTPS listeners).
    pub ssl_policy: Option<crate::tls::policy::SslPolicy>,
    /// Bytes of each client connection's read buffer.
    pub read_buffer_bytes: usize,
}

/// Bounds of `read_buffer_bytes`: below 1 KiB a request head takes several reads, and above
/// 1 MiB the buffer only holds memory.
const READ_BUFFER_BYTES: std::ops::RangeInclusive<usize> = 1024..=1024 * 1024;

/// Everything the running edge needs, compiled and checked.
pub struct RuntimePlan {
    pub node_id: String,
    /// `1.1 <node_id>`, the `Via` entry this edge appends (built once).
    pub via: http::HeaderValue,
    pub max_hops: usize,
    pub trace_secret: Option<String>,
    pub upgrade_sock: String,
    pub pid_file: String,
    pub access_log: crate::logging::Destination,
    pub waf_log: crate::logging::Destination,
    pub threads: usize,
    pub work_stealing: bool,
    pub graceful_shutdown_seconds: u64,
    pub admin: Option<SocketAddr>,
    pub listeners: Vec<ListenerPlan>,
    pub sites: Vec<Site>,
    pub pools: Vec<Arc<Pool>>,
    pub network: NetworkPlan,
    pub limits: crate::config::Limits,
    pub waf: Arc<crate::waf::WafPlan>,
}

/// The result of compiling: the plan plus warnings, or every error found.
pub type Compiled = Result<(RuntimePlan, Vec<Diagnostic>), Vec<Diagnostic>>;

/// The `Via` entry for a node id, or `None` when the id is not one token
/// (loop detection splits `Via` on commas and spaces).
fn via_entry(node_id: &str) -> Option<http::HeaderValue> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':');
    if node_id.is_empty() || node_id.len() > 64 || !node_id.bytes().all(plain) {
        return None;
    }
    http::HeaderValue::from_str(&format!("1.1 {node_id}")).ok()
}

/// Checks and compiles a loaded configuration. All errors are collected, not just the first.
pub fn compile(loaded: Loaded) -> Compiled {
    let Loaded {
        config,
        base_dir,
        mut diagnostics,
    } = loaded;
    let resolve = |p: &std::path::Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base_dir.join(p)
        }
    };
    let cfg: &Config = &config;
    let root = KeyPath::root();

    let admin = cfg
        .admin
        .as_ref()
        .and_then(|a| parse_addr(&mut diagnostics, &root.key("admin").key("bind"), &a.bind));
    let listeners = compile_listeners(cfg, &resolve, &mut diagnostics);
    let pools = compile_pools(cfg, &resolve, &mut diagnostics);
    let network = network::compile_network(cfg, &base_dir, &resolve, &mut diagnostics);
    let has_geo = cfg.geoip.is_some();
    let mut sites = compile_sites(cfg, &pools, has_geo, &mut diagnostics);
    compile_contracts(cfg, &base_dir, &mut sites, &mut diagnostics);
    warn_unused_pools(cfg, &mut diagnostics);
    if cfg.server.threads == 0 {
        diagnostics.error(&root.key("server").key("threads"), "must be at least 1");
    }
    let via = via_entry(&cfg.server.node_id).unwrap_or_else(|| {
        diagnostics.error(
            &root.key("server").key("node_id"),
            "must be 1-64 characters of letters, digits, '-', '_', '.' or ':' (it is sent in Via)",
        );
        http::HeaderValue::from_static("1.1 portcullis")
    });

    let rulesets = waf::compile_rulesets(cfg, &resolve, &mut diagnostics);
    limits::check_store(cfg, &mut diagnostics);
    let (Some(network), Some(rulesets)) = (network, rulesets) else {
        return Err(diagnostics.into_items());
    };
    if diagnostics.has_errors() {
        return Err(diagnostics.into_items());
    }
    let plan = RuntimePlan {
        node_id: cfg.server.node_id.clone(),
        via,
        max_hops: cfg.server.max_hops,
        trace_secret: cfg.server.trace_secret.clone().filter(|s| !s.is_empty()),
        upgrade_sock: cfg.server.upgrade_sock.clone(),
        pid_file: cfg.server.pid_file.clone(),
        access_log: crate::logging::Destination::parse(&cfg.logging.access_log),
        waf_log: crate::logging::Destination::parse(&cfg.logging.waf_log),
        threads: cfg.server.threads,
        work_stealing: cfg.server.work_stealing,
        graceful_shutdown_seconds: cfg.server.graceful_shutdown_seconds,
        admin,
        listeners: listeners.into_iter().flatten().collect(),
        sites,
        pools: pools.into_iter().map(|(_, p)| Arc::new(p)).collect(),
        network,
        limits: cfg.limits.clone(),
        waf: rulesets,
    };
    Ok((plan, diagnostics.into_items()))
}

fn parse_addr(d: &mut Diagnostics, path: &KeyPath, s: &str) -> Option<SocketAddr> {
    match s.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            d.error(
                path,
                format!("invalid address {s:?}: expected IP:port, e.g. 0.0.0.0:443 or [::]:443"),
            );
            None
        }
    }
}

fn check_unique_names<'a>(
    d: &mut Diagnostics,
    section: &str,
    names: impl Iterator<Item = &'a str>,
) {
    let mut seen = HashSet::new();
    for (i, name) in names.enumerate() {
        let path = KeyPath::root().key(section).index(i).key("name");
        if name.is_empty() {
            d.error(&path, "must not be empty");
        } else if !seen.insert(name) {
            d.error(&path, format!("duplicate name {name:?}"));
        }
    }
}

/// Listeners, in config order; `None` for one that failed (errors recorded).
fn compile_listeners(
    cfg: &Config,
    resolve: &dyn Fn(&std::path::Path) -> std::path::PathBuf,
    d: &mut Diagnostics,
) -> Vec<Option<ListenerPlan>> {
    check_unique_names(
        d,
        "listeners",
        cfg.listeners.iter().map(|l| l.name.as_str()),
    );
    if cfg.listeners.is_empty() {
        d.error(
            &KeyPath::root().key("listeners"),
            "at least one listener is required",
        );
    }
    let mut binds = HashMap::new();
    let mut out = Vec::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        let path = KeyPath::root().key("listeners").index(i);
        let bind = parse_addr(d, &path.key("bind"), &l.bind);
        if let Some(b) = bind {
            if let Some(other) = binds.insert(b, l.name.clone()) {
                d.error(
                    &path.key("bind"),
                    format!("{b} is already used by listener {other:?}"),
                );
            }
        }
        let certificates = compile_certificates(l, &path, resolve, d);
        let client_auth = self::tls::compile_client_auth(l, &path, resolve, d);
        let ssl_policy = (l.protocol == ListenerProtocol::Https)
            .then(|| self::tls::compile_ssl_policy(l, &path, d))
            .flatten();
        if client_auth.is_some() && l.protocol != ListenerProtocol::Https {
            d.error(
                &path.key("client_auth"),
                "client certificates need an https listener",
            );
        }
        if !READ_BUFFER_BYTES.contains(&l.read_buffer_bytes) {
            d.error(
                &path.key("read_buffer_bytes"),
                format!(
                    "{} is out of range ({} to {} bytes)",
                    l.read_buffer_bytes,
                    READ_BUFFER_BYTES.start(),
                    READ_BUFFER_BYTES.end()
                ),
            );
        }
        if !matches!(l.redirect_status, 301 | 302 | 307 | 308) {
            d.error(
                &path.key("redirect_status"),
                format!(
                    "{} is not a redirect status (301, 302, 307 or 308)",
                    l.redirect_status
                ),
            );
        }
        out.push(bind.map(|bind| ListenerPlan {
            name: l.name.clone(),
            bind,
            protocol: l.protocol,
            http2: l.http2,
            certificates,
            redirect_port: l.redirect_port,
            redirect_status: l.redirect_status,
            client_auth,
            ssl_policy,
            proxy_protocol: l.proxy_protocol,
            read_buffer_bytes: l.read_buffer_bytes,
        }));
    }
    out
}

fn compile_certificates(
    l: &ListenerConfig,
    path: &KeyPath,
    resolve: &dyn Fn(&std::path::Path) -> std::path::PathBuf,
    d: &mut Diagnostics,
) -> Option<Arc<SniResolver>> {
    let cert_path = path.key("certificates");
    if l.protocol != ListenerProtocol::Https {
        if !l.certificates.is_empty() {
            d.warning(&cert_path, "certificates are only used on https listeners");
        }
        return None;
    }
    if l.certificates.is_empty() {
        d.error(
            &cert_path,
            "an https listener needs at least one certificate",
        );
        return None;
    }
    let defaults = l.certificates.iter().filter(|c| c.default).count();
    if defaults > 1 {
        d.error(&cert_path, "only one certificate may be the default");
    }
    if defaults == 0 && l.certificates.len() > 1 {
        d.error(
            &cert_path,
            "several certificates: mark one with default = true (served for unknown SNI)",
        );
    }
    let mut resolver = SniResolver::default();
    let mut ok = true;
    for (i, c) in l.certificates.iter().enumerate() {
        let p = cert_path.index(i);
        if c.server_names.is_empty() && !c.default && l.certificates.len() > 1 {
            d.warning(
                &p.key("server_names"),
                "no server names and not the default: this certificate is never served",
            );
        }
        match load_certified_key(&resolve(&c.cert), &resolve(&c.key)) {
            Ok(key) => resolver.add(&c.server_names, Arc::new(key), c.default),
            Err(err) => {
                d.error(&p.key(err.key()), err.to_string());
                ok = false;
            }
        }
    }
    ok.then(|| Arc::new(resolver))
}

fn compile_pools(
    cfg: &Config,
    resolve: &dyn Fn(&std::path::Path) -> std::path::PathBuf,
    d: &mut Diagnostics,
) -> Vec<(String, Pool)> {
    check_unique_names(d, "pools", cfg.pools.iter().map(|p| p.name.as_str()));
    let mut out = Vec::new();
    for (i, p) in cfg.pools.iter().enumerate() {
        let path = KeyPath::root().key("pools").index(i);
        if let Some(parts) = compile_pool_parts(p, &path, resolve, d) {
            out.push((
                p.name.clone(),
                Pool::new(pools::settings(p), parts, cfg.server.region.as_deref()),
            ));
        }
    }
    out
}

/// Checks a pool's settings and builds its parts; `None` when any is wrong.
fn compile_pool_parts(
    p: &PoolConfig,
    path: &KeyPath,
    resolve: &dyn Fn(&std::path::Path) -> std::path::PathBuf,
    d: &mut Diagnostics,
) -> Option<PoolParts> {
    let errors_before = d.items().len();
    let backends = compile_backends(p, path, d);
    if p.host_header == HostHeader::Override && p.host_name.as_deref().is_none_or(str::is_empty) {
        d.error(
            &path.key("host_name"),
            "host_header = \"override\" needs host_name",
        );
    }
    if p.host_header == HostHeader::Backend {
        for (j, b) in p.backends.iter().enumerate() {
            if b.host.is_none() {
                d.error(
                    &path.key("backends").index(j).key("host"),
                    "host_header = \"backend\" needs each backend's host",
                );
            }
        }
    }
    let hash_key = compile_hash_key(&p.hash_key, &path.key("hash_key"), d);
    let tls = p
        .tls
        .as_ref()
        .and_then(|t| compile_upstream_tls(t, &path.key("tls"), resolve, d));
    let probe = p
        .health_check
        .as_ref()
        .and_then(|h| compile_probe(h, &path.key("health_check"), d));
    if p.retry.max_tries == 0 {
        d.error(&path.key("retry").key("max_tries"), "must be at least 1");
    }
    let new_errors = d.items()[errors_before..]
        .iter()
        .any(|x| x.severity == crate::config::Severity::Error);
    (!new_errors).then_some(PoolParts {
        backends,
        tls,
        probe,
        hash_key: hash_key?,
    })
}

fn compile_backends(p: &PoolConfig, path: &KeyPath, d: &mut Diagnostics) -> Vec<Backend> {
    if p.backends.is_empty() {
        d.error(&path.key("backends"), "a pool needs at least one backend");
    }
    let mut seen = HashSet::new();
    let mut backends = Vec::new();
    for (j, b) in p.backends.iter().enumerate() {
        let bp = path.key("backends").index(j);
        if b.weight == 0 || b.weight > 1000 {
            d.error(
                &bp.key("weight"),
                format!("weight {} is out of range 1..=1000", b.weight),
            );
        }
        let Some(addr) = parse_addr(d, &bp.key("address"), &b.address) else {
            continue;
        };
        if !seen.insert(addr) {
            d.error(
                &bp.key("address"),
                format!("{addr} is listed twice in this pool"),
            );
        }
        backends.push(Backend {
            addr,
            weight: b.weight.clamp(1, 1000),
            region: b.region.clone(),
            host: b.host.clone(),
            health: Arc::default(),
        });
    }
    backends
}

fn compile_hash_key(s: &str, path: &KeyPath, d: &mut Diagnostics) -> Option<HashKey> {
    if s == "client_ip" {
        return Some(HashKey::ClientIp);
    }
    match s.strip_prefix("header:") {
        Some(name) if http::HeaderName::from_bytes(name.as_bytes()).is_ok() => {
            Some(HashKey::Header(name.to_ascii_lowercase()))
        }
        _ => {
            d.error(
                path,
                format!("{s:?}: expected \"client_ip\" or \"header:NAME\""),
            );
            None
        }
    }
}

fn compile_upstream_tls(
    t: &UpstreamTlsConfig,
    tp: &KeyPath,
    resolve: &dyn Fn(&std::path::Path) -> std::path::PathBuf,
    d: &mut Diagnostics,
) -> Option<upstream::UpstreamTls> {
    if t.sni.as_deref().is_some_and(str::is_empty) {
        d.error(
            &tp.key("sni"),
            "must not be empty (leave it out to send the Host)",
        );
    }
    if t.insecure_skip_verify {
        d.warning(
            &tp.key("insecure_skip_verify"),
            "backend certificates are not verified",
        );
    }
    let ca = match &t.ca {
        Some(ca) => match upstream::load_ca_bundle(&resolve(ca)) {
            Ok(bundle) => Some(bundle),
            Err(msg) => {
                d.error(&tp.key("ca"), msg);
                return None;
            }
        },
        None => None,
    };
    match upstream::upstream_tls(t.sni.clone(), !t.insecure_skip_verify, t.http2, ca) {
        Ok(tls) => Some(tls),
        Err(msg) => {
            d.error(tp, msg);
            None
        }
    }
}

fn compile_probe(h: &HealthCheckConfig, hp: &KeyPath, d: &mut Diagnostics) -> Option<ProbeSpec> {
    let http = match h.kind.as_str() {
        "http" => true,
        "tcp" => false,
        other => {
            d.error(
                &hp.key("kind"),
                format!("{other:?}: expected \"http\" or \"tcp\""),
            );
            return None;
        }
    };
    if http::Method::from_bytes(h.method.as_bytes()).is_err() {
        d.error(
            &hp.key("method"),
            format!("{:?} is not an HTTP method", h.method),
        );
    }
    if !h.path.starts_with('/') || h.path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        d.error(
            &hp.key("path"),
            format!("{:?} must start with '/' and contain no spaces", h.path),
        );
    }
    let mut expected = Vec::new();
    for (k, r) in h.expected_status.iter().enumerate() {
        match probe::parse_status_range(r) {
            Some(range) => expected.push(range),
            None => d.error(
                &hp.key("expected_status").index(k),
                format!("{r:?}: expected a status or a range like \"200-399\""),
            ),
        }
    }
    if h.interval_ms == 0 || h.timeout_ms == 0 {
        d.error(hp, "interval_ms and timeout_ms must be above 0");
    }
    Some(ProbeSpec {
        http,
        method: h.method.clone(),
        path: h.path.clone(),
        host: h.host.clone(),
        expected,
        interval: std::time::Duration::from_millis(h.interval_ms.max(1)),
        timeout: std::time::Duration::from_millis(h.timeout_ms.max(1)),
        healthy_threshold: h.healthy_threshold.max(1),
        unhealthy_threshold: h.unhealthy_threshold.max(1),
        next_due_ms: std::sync::atomic::AtomicU64::new(0),
    })
}

/// Reads and compiles every site's OpenAPI documents (`[[sites.openapi]]`); their errors name the
/// document's file, line and JSON pointer under the config key.
fn compile_contracts(
    cfg: &Config,
    base_dir: &std::path::Path,
    sites: &mut [Site],
    d: &mut Diagnostics,
) {
    for (i, (sc, site)) in cfg.sites.iter().zip(sites.iter_mut()).enumerate() {
        for (j, oc) in sc.openapi.iter().enumerate() {
            let key = KeyPath::root()
                .key("sites")
                .index(i)
                .key("openapi")
                .index(j)
                .key("document");
            match crate::openapi::compile::compile(oc, base_dir) {
                Ok(contract) => {
                    for note in &contract.notes {
                        d.warning(&key, format!("not enforced: {note}"));
                    }
                    site.contracts.push(Arc::new(contract))
                }
                Err(errors) => {
                    for e in errors {
                        d.error(&key, e.to_string());
                    }
                }
            }
        }
    }
}

fn compile_sites(
    cfg: &Config,
    pools: &[(String, Pool)],
    has_geo: bool,
    d: &mut Diagnostics,
) -> Vec<Site> {
    check_unique_names(d, "sites", cfg.sites.iter().map(|s| s.name.as_str()));
    let configured_pools: HashSet<&str> = cfg.pools.iter().map(|p| p.name.as_str()).collect();
    cfg.sites
        .iter()
        .enumerate()
        .map(|(i, s)| {
            compile_site(
                s,
                &KeyPath::root().key("sites").index(i),
                cfg,
                pools,
                &configured_pools,
                has_geo,
                d,
            )
        })
        .collect()
}

fn compile_site(
    s: &SiteConfig,
    path: &KeyPath,
    cfg: &Config,
    pools: &[(String, Pool)],
    configured_pools: &HashSet<&str>,
    has_geo: bool,
    d: &mut Diagnostics,
) -> Site {
    let cert_capable = cfg
        .listeners
        .iter()
        .filter(|l| s.listeners.is_empty() || s.listeners.contains(&l.name))
        .any(|l| l.client_auth.is_some());
    if s.require_client_cert && !cert_capable {
        d.error(
            &path.key("require_client_cert"),
            "none of this site's listeners has client_auth",
        );
    }
    let geo = s
        .geo
        .as_ref()
        .and_then(|g| network::compile_geo_policy(g, &path.key("geo"), has_geo, d));
    let country_header =
        s.country_header
            .as_ref()
            .and_then(|h| match http::HeaderName::from_bytes(h.as_bytes()) {
                Ok(name) => Some(name),
                Err(_) => {
                    d.error(
                        &path.key("country_header"),
                        format!("{h:?} is not a valid header name"),
                    );
                    None
                }
            });
    if s.hosts.is_empty() {
        d.error(&path.key("hosts"), "list at least one host name, or \"*\"");
    }
    if s.routes.is_empty() {
        d.error(&path.key("routes"), "a site needs at least one route");
    }
    let listener_ids = (!s.listeners.is_empty()).then(|| {
        s.listeners
            .iter()
            .enumerate()
            .filter_map(|(j, name)| {
                let found = cfg.listeners.iter().position(|l| &l.name == name);
                if found.is_none() {
                    d.error(
                        &path.key("listeners").index(j),
                        format!("no listener named {name:?}"),
                    );
                }
                found
            })
            .collect()
    });
    let mut routes = Vec::new();
    for (j, r) in s.routes.iter().enumerate() {
        let rp = path.key("routes").index(j);
        if !r.path_prefix.starts_with('/') {
            d.error(
                &rp.key("path_prefix"),
                format!("{:?} must start with '/'", r.path_prefix),
            );
        }
        match pools.iter().position(|(name, _)| name == &r.pool) {
            Some(pool) => routes.push(Route {
                path_prefix: r.path_prefix.clone(),
                pool,
            }),
            None if configured_pools.contains(r.pool.as_str()) => {} // the pool's own errors are reported
            None => d.error(&rp.key("pool"), format!("no pool named {:?}", r.pool)),
        }
    }
    routes.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));
    Site {
        name: s.name.clone(),
        hosts: s.hosts.iter().map(|h| HostPattern::parse(h)).collect(),
        listeners: listener_ids,
        routes,
        geo,
        country_header,
        require_client_cert: s.require_client_cert,
        waf_policy: match &s.waf {
            Some(p) => waf::compile_policy(p, &path.key("waf"), d),
            None => waf::compile_policy(
                &cfg.waf.policy,
                &KeyPath::root().key("waf").key("policy"),
                d,
            ),
        },
        waf_oversized_body: s.waf_oversized_body,
        contracts: Vec::new(),
        custom_rules: limits::compile_custom_rules(s, path, d),
        rate_limiter: limits::compile_rate_limits(cfg, s, path, d),
        rewrites: match crate::rewrite::compile(&s.rewrites, &path.key("rewrites").to_string()) {
            Ok(plan) => plan,
            Err(errors) => {
                errors.iter().for_each(|e| d.error_text(e));
                crate::rewrite::RewritePlan::default()
            }
        },
        harden_responses: s.harden_responses,
        hsts: match http::HeaderValue::from_str(&s.hsts) {
            Ok(v) if !s.hsts.is_empty() => Some(v),
            Ok(_) => None,
            Err(_) => {
                d.error(&path.key("hsts"), "not a valid header value");
                None
            }
        },
    }
}

fn warn_unused_pools(cfg: &Config, d: &mut Diagnostics) {
    let used: HashSet<&str> = cfg
        .sites
        .iter()
        .flat_map(|s| s.routes.iter().map(|r| r.pool.as_str()))
        .collect();
    for (i, p) in cfg.pools.iter().enumerate() {
        if !used.contains(p.name.as_str()) {
            d.warning(
                &KeyPath::root().key("pools").index(i).key("name"),
                format!("pool {:?} is not used by any site", p.name),
            );
        }
    }
}
