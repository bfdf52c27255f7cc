//! The request path, as pingora's `ProxyHttp` phases:
//! `request_filter` (protocol checks, routing; later geo, rules and WAF) ->
//! `upstream_peer` (backend selection) -> `upstream_request_filter`
//! (forwarding headers) -> `response_filter` -> `logging`.
//!
//! Each request takes one snapshot of the runtime plan when it starts and uses
//! it to the end, so a reload never changes the rules under a request.

pub mod forwarding;
pub mod respond;

use crate::plan::RuntimePlan;
use crate::routing::{find_site, normalize_host};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::ErrorType;
use std::sync::Arc;
use std::time::Instant;

/// The proxy for one listener.
pub struct Edge {
    plan: Arc<ArcSwap<RuntimePlan>>,
    listener: usize,
    tls: bool,
}

impl Edge {
    pub fn new(plan: Arc<ArcSwap<RuntimePlan>>, listener: usize, tls: bool) -> Self {
        Edge { plan, listener, tls }
    }
}

/// Per-request state shared across phases.
pub struct RequestCtx {
    plan: Arc<RuntimePlan>,
    started: Instant,
    request_id: String,
    host: String,
    site: Option<usize>,
    pool: Option<usize>,
    /// Backends tried for this request, in order.
    tried: Vec<usize>,
}

impl RequestCtx {
    fn pool(&self) -> Option<&crate::upstream::Pool> {
        self.pool.and_then(|p| self.plan.pools.get(p)).map(Arc::as_ref)
    }
}

/// The Host a request is for: the Host header, else the URI authority (HTTP/2).
fn request_host(req: &RequestHeader) -> Option<String> {
    let raw = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))?;
    let host = normalize_host(raw);
    (!host.is_empty()).then_some(host)
}

#[async_trait]
impl ProxyHttp for Edge {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            plan: self.plan.load_full(),
            started: Instant::now(),
            request_id: String::new(),
            host: String::new(),
            site: None,
            pool: None,
            tried: Vec::new(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        ctx.request_id = forwarding::request_id(req.headers.get("x-request-id").map(|v| v.as_bytes()));
        let Some(host) = request_host(req) else {
            respond::text(session, 400, &ctx.request_id, "bad request: missing Host").await?;
            return Ok(true);
        };
        ctx.host = host;
        let path = req.uri.path().to_string();
        let plan = ctx.plan.clone();
        let Some((site_idx, site)) = find_site(&plan.sites, self.listener, &ctx.host) else {
            respond::text(session, 404, &ctx.request_id, respond::reason(404)).await?;
            return Ok(true);
        };
        ctx.site = Some(site_idx);
        let Some(route) = site.route(&path) else {
            respond::text(session, 404, &ctx.request_id, respond::reason(404)).await?;
            return Ok(true);
        };
        ctx.pool = Some(route.pool);
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let pool = ctx.pool().ok_or_else(|| Error::explain(ErrorType::HTTPStatus(502), "no pool chosen"))?;
        let Some(idx) = pool.select(&ctx.tried) else {
            return Error::e_explain(ErrorType::HTTPStatus(503), format!("pool {}: no backend left to try", pool.name));
        };
        let peer = pool
            .peer(idx)
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(502), "backend index out of range"))?;
        ctx.tried.push(idx);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(&self, _session: &mut Session, peer: &HttpPeer, ctx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
        // A connect failure never reached the backend, so trying another one is
        // safe for any method.
        let retry = ctx.pool().is_some_and(|p| ctx.tried.len() < p.max_tries.min(p.backends.len()));
        tracing::warn!(request_id = %ctx.request_id, backend = %peer, retry, "connect to backend failed: {e}");
        e.set_retry(retry);
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let client_ip = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        let facts = forwarding::ForwardedFacts {
            client_ip,
            proto: if self.tls { "https" } else { "http" },
            host: &ctx.host,
            request_id: &ctx.request_id,
        };
        forwarding::apply(upstream_request, &facts)
    }

    async fn response_filter(&self, _session: &mut Session, resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
        resp.insert_header("x-request-id", &ctx.request_id)?;
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
                if e.esource() == &ErrorSource::Upstream =>
            {
                504
            }
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code > 0 {
            if ctx.request_id.is_empty() {
                ctx.request_id = forwarding::request_id(None);
            }
            if let Err(err) = respond::text(session, code, &ctx.request_id, respond::reason(code)).await {
                tracing::debug!("could not send error response: {err}");
            }
        }
        FailToProxy { error_code: code, can_reuse_downstream: false }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let req = session.req_header();
        let site = ctx.site.and_then(|s| ctx.plan.sites.get(s)).map_or("", |s| s.name.as_str());
        let upstream = ctx.tried.last().and_then(|&i| ctx.pool().and_then(|p| p.backends.get(i))).map(|b| b.addr.to_string());
        tracing::info!(
            target: "access",
            request_id = %ctx.request_id,
            client = %session.client_addr().map(|a| a.to_string()).unwrap_or_default(),
            listener = %ctx.plan.listeners.get(self.listener).map_or("", |l| l.name.as_str()),
            site,
            method = %req.method,
            host = %ctx.host,
            uri = %req.uri,
            status,
            upstream = upstream.as_deref().unwrap_or(""),
            tries = ctx.tried.len(),
            latency_ms = ctx.started.elapsed().as_secs_f64() * 1000.0,
            error = e.map(|e| e.to_string()).unwrap_or_default(),
        );
    }
}
