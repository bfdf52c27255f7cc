// The proxy shared by the `minimal_proxy` examples: a pingora proxy with no
// logic at all (one upstream, no routing, no checks, no logging).

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::upstreams::peer::HttpPeer;

struct Minimal {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Minimal {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }
}

/// Runs the proxy: arguments LISTEN UPSTREAM THREADS [RUNTIME], RUNTIME being `steal` (pingora's
/// default: one work-stealing runtime) or `nosteal` (one single-threaded runtime per thread, as
/// portcullis's `[server] work_stealing = false`), so the ceiling is measured in the edge's mode.
pub fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listen = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:19003".into());
    let upstream = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:18081".into());
    let threads = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(2);
    let work_stealing = args.get(4).map(String::as_str) != Some("nosteal");
    let conf = ServerConf {
        threads,
        work_stealing,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc = http_proxy_service(&server.configuration, Minimal { upstream });
    svc.add_tcp(&listen);
    server.add_service(svc);
    server.run_forever();
}
