//! The WAF engine (`portcullis-waf`) embedded in a plain Pingora proxy: one upstream, no TLS, no
//! routing; every request is scored by the engine's embedded rule set before it is proxied, and a
//! request over the threshold is answered 403.
//!
//! ```sh
//! cargo run --release --example waf_proxy -- 127.0.0.1:6188 127.0.0.1:8000
//! curl -si "http://127.0.0.1:6188/?q=1%27%20OR%20%271%27%3D%271"   # 403
//! curl -si  http://127.0.0.1:6188/                                  # proxied
//! ```
//!
//! The head (method, URL and query, headers, cookies) is inspected in `request_filter`, before a
//! backend is chosen, so a blocked request never reaches one. A body is held back in
//! `request_body_filter` until it is complete (or reaches the policy's inspection limit) and then
//! inspected with the head; a blocked body is refused with 403 and its connection to the backend
//! closed before any of the body was sent. (The Portcullis edge reads small bodies ahead instead,
//! before choosing a backend: `src/proxy/body.rs`.)

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::http::RequestHeader;
use pingora::prelude::*;
use portcullis_waf::{default_plan, HttpRequest, Mode, Policy, Verdict, WafPlan};

struct WafProxy {
    /// Compiled once; shared by every request (evaluation takes `&self`).
    plan: Arc<WafPlan>,
    policy: Policy,
    upstream: String,
}

/// Per request: the body held back while it is inspected.
#[derive(Default)]
struct Held {
    body: BytesMut,
    /// The body went past the inspection limit: its prefix was inspected, the rest streams.
    inspected: bool,
}

impl WafProxy {
    /// Scores the request head and (a prefix of) its body.
    fn inspect(&self, req: &RequestHeader, body: &[u8], truncated: bool) -> Verdict {
        let headers: Vec<(&str, &[u8])> = req
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        let uri = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let version = if req.version == http::Version::HTTP_2 {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        };
        let request = HttpRequest::new(req.method.as_str(), uri, version, &headers)
            .with_body(body, truncated);
        self.plan.evaluate(&request, &self.policy)
    }

    /// Logs a blocked request's matches and returns the 403 that pingora sends for it.
    fn refuse(verdict: &Verdict) -> Result<()> {
        for m in &verdict.matches {
            eprintln!(
                "waf: rule {} ({}) {} @ {}",
                m.rule_id, m.category, m.message, m.target
            );
        }
        Error::e_explain(HTTPStatus(403), "blocked by the WAF")
    }
}

#[async_trait]
impl ProxyHttp for WafProxy {
    type CTX = Held;

    fn new_ctx(&self) -> Held {
        Held::default()
    }

    async fn request_filter(&self, session: &mut Session, _ctx: &mut Held) -> Result<bool> {
        let verdict = self.inspect(session.req_header(), &[], false);
        if verdict.blocked {
            Self::refuse(&verdict)?;
        }
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        held: &mut Held,
    ) -> Result<()> {
        if held.inspected {
            return Ok(());
        }
        if let Some(chunk) = body.take() {
            held.body.extend_from_slice(&chunk);
        }
        let over = held.body.len() > self.policy.body_limit;
        if !end_of_stream && !over {
            return Ok(()); // hold it until the body is complete or too long to hold
        }
        let inspected = &held.body[..held.body.len().min(self.policy.body_limit)];
        let verdict = self.inspect(session.req_header(), inspected, over);
        if verdict.blocked {
            return Self::refuse(&verdict);
        }
        held.inspected = true;
        *body = Some(std::mem::take(&mut held.body).freeze());
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Held,
    ) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }
}

/// Arguments: LISTEN UPSTREAM (defaults 127.0.0.1:6188 and 127.0.0.1:8000).
fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:6188".into());
    let upstream = args.next().unwrap_or_else(|| "127.0.0.1:8000".into());
    // The rule set embedded in the crate; `WafPlan::load_dir("rulesets")` reads one from disk.
    let plan = default_plan().unwrap_or_else(|errors| {
        for e in errors {
            eprintln!("{e}");
        }
        std::process::exit(1)
    });
    let proxy = WafProxy {
        plan: Arc::new(plan),
        policy: Policy::new(Mode::Prevention, 1, 5),
        upstream,
    };
    let mut server = Server::new(None).expect("pingora server");
    server.bootstrap();
    let mut service = http_proxy_service(&server.configuration, proxy);
    service.add_tcp(&listen);
    server.add_service(service);
    server.run_forever();
}
