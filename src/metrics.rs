//! Prometheus metrics, served by the admin listener at `/metrics`.
//!
//! Counters and histograms are registered once at start; backend health and
//! dropped log lines are read at scrape time, so they are never stale. This
//! module imports nothing of the edge: whoever owns the pools and the logs
//! hands their readings to [`Metrics::render`] ([`BackendReading`]), so that
//! everything may count here without a circle (docs/architecture.md).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Every metric the edge exports.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub rule_matches: IntCounterVec,
    pub blocks: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub reloads: IntCounterVec,
    pub tls_handshake_failures: IntCounterVec,
    pub tls_handshakes: IntCounterVec,
    pub pipelined_requests: IntCounterVec,
    pub panics: IntCounterVec,
    pub contract_violations: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("static metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric name");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
            .expect("static metric definition");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric name");
            h
        };
        Metrics {
            requests: counter(
                "portcullis_requests_total",
                "Requests by site, status class and WAF action.",
                &["site", "status_class", "waf_action"],
            ),
            rule_matches: counter(
                "portcullis_waf_rule_matches_total",
                "WAF rule matches by rule id and category.",
                &["rule_id", "category"],
            ),
            blocks: counter(
                "portcullis_blocks_total",
                "Requests and connections refused by the edge, by reason (waf, geo, network, connection_cap, proxy_protocol, rate_limit, size, protocol, loop).",
                &["reason"],
            ),
            request_duration: histogram(
                "portcullis_request_duration_seconds",
                "Time from request start to the end of logging, by site.",
                &["site"],
            ),
            upstream_duration: histogram(
                "portcullis_upstream_duration_seconds",
                "Time from choosing a backend to the end of the request, by pool.",
                &["pool"],
            ),
            reloads: counter(
                "portcullis_config_reloads_total",
                "Configuration reloads by result (ok, error).",
                &["result"],
            ),
            tls_handshake_failures: counter(
                "portcullis_tls_handshake_failures_total",
                "TLS handshakes the ClientHello gate refused, by reason.",
                &["reason"],
            ),
            tls_handshakes: counter(
                "portcullis_tls_handshakes_total",
                "TLS handshakes by stage: admitted (past the ClientHello gate, handed to rustls) and completed. Admitted minus completed: the handshakes that failed inside rustls (or are under way).",
                &["stage"],
            ),
            pipelined_requests: counter(
                "portcullis_pipelined_requests_total",
                "HTTP/1.1 requests whose head had (at least in part) arrived with the request before them on the connection (pipelining), by listener. They are answered in order.",
                &["listener"],
            ),
            panics: counter(
                "portcullis_panics_total",
                "Panics in the edge's request path, by pingora hook. Each was contained to its request (answered 500 when no response had begun) and logged at ERROR with the request id. Any is a bug.",
                &["hook"],
            ),
            contract_violations: counter(
                "portcullis_contract_violations_total",
                "Requests that broke their API contract (OpenAPI document), by site, operation (`operationId`; empty for an unknown path) and kind of violation, whether they were refused or only logged.",
                &["site", "operation", "kind"],
            ),
            registry,
        }
    }

    /// The Prometheus text exposition, with the backends' health and the
    /// dropped-line counts of the named logs (`(log, dropped)`) as read now.
    pub fn render(&self, backends: &[BackendReading], logs: &[(&str, u64)]) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        let mut text = String::from_utf8(out).unwrap_or_default();
        text.push_str(&backend_lines(backends));
        text.push_str(&log_lines(logs));
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// One backend's health at scrape time, in pool order.
#[derive(Debug, Clone, Copy)]
pub struct BackendReading<'a> {
    pub pool: &'a str,
    pub backend: std::net::SocketAddr,
    /// May get traffic: probe healthy and not ejected.
    pub up: bool,
    /// Passive ejections so far.
    pub ejections: u64,
    /// Requests in flight to it.
    pub in_flight: u64,
}

/// How one backend metric family reads its value.
type BackendValue<'a> = &'a dyn Fn(&BackendReading) -> u64;

/// Backend gauges and ejection counters.
fn backend_lines(backends: &[BackendReading]) -> String {
    let mut s = String::new();
    let families: [(&str, &str, &str, BackendValue); 3] = [
        (
            "portcullis_backend_up",
            "gauge",
            "Whether a backend may get traffic (probe healthy and not ejected).",
            &|b| u64::from(b.up),
        ),
        (
            "portcullis_backend_ejections_total",
            "counter",
            "Passive ejections of a backend.",
            &|b| b.ejections,
        ),
        (
            "portcullis_backend_in_flight",
            "gauge",
            "Requests in flight to a backend.",
            &|b| b.in_flight,
        ),
    ];
    for (name, kind, help, value) in families {
        s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for b in backends {
            s.push_str(&format!(
                "{name}{{pool=\"{}\",backend=\"{}\"}} {}\n",
                b.pool,
                b.backend,
                value(b)
            ));
        }
    }
    s
}

/// Lines each log dropped because its writer fell behind (read from the sinks
/// at scrape time, like backend health).
fn log_lines(logs: &[(&str, u64)]) -> String {
    let name = "portcullis_log_lines_dropped_total";
    let mut s = format!(
        "# HELP {name} Log lines dropped because the log's writer fell behind the requests.\n# TYPE {name} counter\n"
    );
    for (log, dropped) in logs {
        s.push_str(&format!("{name}{{log=\"{log}\"}} {dropped}\n"));
    }
    s
}

/// `2xx`, `4xx`, ... for a status; `0xx` when no response was sent.
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "none",
    }
}
