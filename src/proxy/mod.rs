//! The request path, as pingora's `ProxyHttp` phases:
//! `request_filter` (protocol checks, routing; later geo, rules and WAF) ->
//! `upstream_peer` (backend selection) -> `upstream_request_filter`
//! (forwarding headers) -> `response_filter` -> `logging`.
//!
//! Each request takes one snapshot of the runtime plan when it starts and uses
//! it to the end, so a reload never changes the rules under a request.

pub mod body;
pub mod forwarding;
pub mod harden;
pub mod identity;
pub mod loops;
pub mod protocol;
pub mod respond;
pub mod rewrites;

use crate::logging::AccessRecord;
use crate::plan::RuntimePlan;
use crate::routing::{find_site, normalize_host};
use crate::state::EdgeState;
use crate::tls::mtls::ClientCertFacts;

/// Envoy's header for the client certificate: set by the edge, never by a client.
const XFCC: &str = "x-forwarded-client-cert";
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
    state: Arc<EdgeState>,
    listener: usize,
    tls: bool,
}

impl Edge {
    pub fn new(state: Arc<EdgeState>, listener: usize, tls: bool) -> Self {
        Edge {
            state,
            listener,
            tls,
        }
    }

    /// Reads the request body (up to the inspection limit) before any backend
    /// is involved. `Ok(false)` when a response was already sent.
    async fn read_body(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if !body::can_read_ahead(session.req_header()) {
            return Ok(true);
        }
        let limit = ctx.plan.limits.inspect_body_bytes;
        let buffered = match body::read_up_to(session, limit).await {
            Ok(b) => b,
            Err(e) => {
                ctx.block_reason = Some("protocol");
                let status = if matches!(e.etype(), ErrorType::ReadTimedout) {
                    408
                } else {
                    400
                };
                tracing::info!(request_id = %ctx.request_id, "request body refused: {e}");
                respond::text(
                    session,
                    status,
                    &ctx.request_id,
                    &format!("{}: malformed or incomplete body", respond::reason(status)),
                )
                .await?;
                return Ok(false);
            }
        };
        ctx.body_bytes = buffered.data.len() as u64;
        if ctx.body_bytes > ctx.plan.limits.max_body_bytes {
            ctx.block_reason = Some("size");
            respond::text(session, 413, &ctx.request_id, respond::reason(413)).await?;
            return Ok(false);
        }
        ctx.body = Some(buffered);
        Ok(true)
    }

    /// The server variables rewrite rules read.
    fn request_vars<'a>(
        &self,
        session: &'a Session,
        ctx: &'a RequestCtx,
    ) -> rewrites::RequestVars<'a> {
        rewrites::RequestVars {
            req: session.req_header(),
            host: &ctx.host,
            client: &ctx.client,
            client_port: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.port()),
            server_port: session
                .server_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.port()),
            tls: session.digest().and_then(|d| d.ssl_digest.as_deref()),
            cert: ctx.client_cert.as_ref(),
        }
    }

    /// Passive detection: counts a failure against the backend of the current try.
    fn record_backend_failure(&self, ctx: &RequestCtx) {
        let (Some(pool), Some(&idx)) = (ctx.pool(), ctx.tried.last()) else {
            return;
        };
        let Some(backend) = pool.backends.get(idx) else {
            return;
        };
        let transition = backend.health.record_failure(
            pool.passive.threshold,
            pool.passive.cooldown,
            pool.probe.is_some(),
        );
        if transition == crate::upstream::health::Transition::Ejected {
            tracing::warn!(pool = %pool.name, backend = %backend.addr, cooldown_s = pool.passive.cooldown.as_secs(), "backend ejected after consecutive failures");
        }
    }
}

/// The consistent-hash key of a request.
fn hash_key(session: &Session, key: &crate::upstream::HashKey) -> Vec<u8> {
    match key {
        crate::upstream::HashKey::ClientIp => session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string().into_bytes())
            .unwrap_or_default(),
        crate::upstream::HashKey::Header(name) => session
            .req_header()
            .headers
            .get(name.as_str())
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default(),
    }
}

/// Per-request state shared across phases.
pub struct RequestCtx {
    plan: Arc<RuntimePlan>,
    started: Instant,
    request_id: String,
    /// The host the client asked for: normalized (no port, lowercase) for routing.
    host: String,
    /// The Host value exactly as the client sent it (port included), for `preserve`.
    client_host: String,
    site: Option<usize>,
    pool: Option<usize>,
    /// Backends tried for this request, in order.
    tried: Vec<usize>,
    /// Counts the current try as in flight to its backend.
    in_flight: Option<crate::upstream::health::InFlight>,
    /// Set when a response filter asked for a retry (a retryable status).
    retry_status: Option<u16>,
    /// When the first backend was chosen.
    upstream_started: Option<Instant>,
    /// Status of the last backend response.
    upstream_status: u16,
    /// `allowed`, `blocked`, `detected` or `off`.
    waf_action: &'static str,
    /// Why the edge refused the request itself, for metrics and logs.
    block_reason: Option<&'static str>,
    client: identity::ClientIdentity,
    /// Request body bytes seen so far.
    body_bytes: u64,
    /// What the site's request-phase rewrite rules decided.
    rewrite: Option<crate::rewrite::RequestOutcome>,
    /// The verified client certificate, on mTLS listeners.
    client_cert: Option<ClientCertFacts>,
    /// The body read before proxying.
    body: Option<body::BufferedBody>,
    /// The try for which the buffered body was last sent upstream.
    body_replayed_for_try: usize,
}

impl RequestCtx {
    fn pool(&self) -> Option<&crate::upstream::Pool> {
        self.pool
            .and_then(|p| self.plan.pools.get(p))
            .map(Arc::as_ref)
    }
}

/// The Host a request is for, as sent and normalized: the Host header, else
/// the URI authority (HTTP/2).
fn request_host(req: &RequestHeader) -> Option<(String, String)> {
    let raw = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))?;
    let host = normalize_host(raw);
    (!host.is_empty()).then(|| (raw.to_string(), host))
}

#[async_trait]
impl ProxyHttp for Edge {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            plan: self.state.plan.load_full(),
            started: Instant::now(),
            request_id: String::new(),
            host: String::new(),
            client_host: String::new(),
            site: None,
            pool: None,
            tried: Vec::new(),
            in_flight: None,
            retry_status: None,
            upstream_started: None,
            upstream_status: 0,
            waf_action: "off",
            block_reason: None,
            client: identity::ClientIdentity {
                ip: None,
                country: None,
            },
            body_bytes: 0,
            body: None,
            body_replayed_for_try: 0,
            client_cert: None,
            rewrite: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        ctx.request_id =
            forwarding::request_id(req.headers.get("x-request-id").map(|v| v.as_bytes()));
        let raw_head = match session.as_downstream() {
            pingora::protocols::http::ServerSession::H1(h1) => Some(h1.get_headers_raw_bytes()),
            _ => None,
        };
        if let Err(v) = protocol::check_head(req, raw_head.as_deref(), &ctx.plan.limits) {
            ctx.block_reason = Some(if v.status == 400 { "protocol" } else { "size" });
            tracing::info!(request_id = %ctx.request_id, reason = v.reason, "request refused by protocol checks");
            respond::text(
                session,
                v.status,
                &ctx.request_id,
                &format!("{}: {}", respond::reason(v.status), v.reason),
            )
            .await?;
            return Ok(true);
        }
        if loops::hops_through(req, &ctx.plan.node_id) >= ctx.plan.max_hops {
            ctx.block_reason = Some("loop");
            respond::text(session, 508, &ctx.request_id, respond::reason(508)).await?;
            return Ok(true);
        }
        let Some((client_host, host)) = request_host(req) else {
            respond::text(session, 400, &ctx.request_id, "bad request: missing Host").await?;
            return Ok(true);
        };
        ctx.host = host;
        ctx.client_host = client_host;
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        ctx.client = identity::identify(&ctx.plan.network, peer, req);
        let path = req.uri.path().to_string();
        let plan = ctx.plan.clone();
        let Some((site_idx, site)) = find_site(&plan.sites, self.listener, &ctx.host) else {
            respond::text(session, 404, &ctx.request_id, respond::reason(404)).await?;
            return Ok(true);
        };
        ctx.site = Some(site_idx);
        if let (Some(policy), Some(country)) = (&site.geo, ctx.client.country) {
            if !policy.permits(country) {
                ctx.block_reason = Some("geo");
                let msg = format!(
                    "forbidden: requests from {} are not allowed here",
                    country.as_str()
                );
                respond::text(session, 403, &ctx.request_id, &msg).await?;
                return Ok(true);
            }
        }
        let Some(route) = site.route(&path) else {
            respond::text(session, 404, &ctx.request_id, respond::reason(404)).await?;
            return Ok(true);
        };
        ctx.pool = Some(route.pool);
        ctx.client_cert = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .and_then(|s| s.extension.get::<ClientCertFacts>())
            .cloned();
        if site.require_client_cert && ctx.client_cert.is_none() {
            ctx.block_reason = Some("client_cert");
            respond::text(
                session,
                403,
                &ctx.request_id,
                "forbidden: this site requires a client certificate",
            )
            .await?;
            return Ok(true);
        }
        if !site.rewrites.is_empty() {
            let outcome = site
                .rewrites
                .apply_request(&self.request_vars(session, ctx));
            for skipped in &outcome.skipped {
                tracing::warn!(request_id = %ctx.request_id, "rewrite skipped: {skipped}");
            }
            if let Some((status, location)) = &outcome.redirect {
                respond::redirect(
                    session,
                    *status,
                    location,
                    &ctx.request_id,
                    &outcome.response_headers,
                )
                .await?;
                return Ok(true);
            }
            ctx.rewrite = Some(outcome);
        }
        if !self.read_body(session, ctx).await? {
            return Ok(true);
        }
        if let Some(pool) = ctx.pool() {
            pool.retry.budget.deposit();
        }
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(buffered) = ctx
            .body
            .as_ref()
            .filter(|_| ctx.body_replayed_for_try < ctx.tried.len())
        {
            // Pingora replays what request_filter read from its retry buffer:
            // send our copy, once per try.
            ctx.body_replayed_for_try = ctx.tried.len();
            *body = (!buffered.data.is_empty()).then(|| buffered.data.clone());
            return Ok(());
        }
        ctx.body_bytes += body.as_ref().map_or(0, |b| b.len() as u64);
        if ctx.body_bytes > ctx.plan.limits.max_body_bytes {
            ctx.block_reason = Some("size");
            return Error::e_explain(ErrorType::HTTPStatus(413), "request body over the limit");
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let plan = ctx.plan.clone();
        let pool = ctx
            .pool
            .and_then(|p| plan.pools.get(p))
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(502), "no pool chosen"))?;
        if !ctx.tried.is_empty()
            && pool
                .total_timeout
                .is_some_and(|t| ctx.started.elapsed() >= t)
        {
            return Error::e_explain(
                ErrorType::HTTPStatus(504),
                "total timeout reached before a retry",
            );
        }
        let key = hash_key(session, &pool.hash_key);
        let Some(idx) = pool.select(&key, &ctx.tried) else {
            return Error::e_explain(
                ErrorType::HTTPStatus(503),
                format!("pool {}: no backend available", pool.name),
            );
        };
        let upstream_host = pool.upstream_host(idx, &ctx.client_host);
        let mut peer = pool.peer(idx, upstream_host).ok_or_else(|| {
            Error::explain(ErrorType::HTTPStatus(502), "backend index out of range")
        })?;
        if let Some(total) = pool.total_timeout {
            let left = total.saturating_sub(ctx.started.elapsed());
            peer.options.read_timeout = peer.options.read_timeout.map(|t| t.min(left));
        }
        ctx.tried.push(idx);
        ctx.upstream_started.get_or_insert_with(Instant::now);
        ctx.in_flight = Some(pool.backends[idx].health.track());
        ctx.retry_status = None;
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // A connect failure never reached the backend, so trying another one is
        // safe for any method, and needs no budget.
        self.record_backend_failure(ctx);
        let retry = ctx
            .pool()
            .is_some_and(|p| ctx.tried.len() < p.retry.max_tries.min(p.backends.len()));
        tracing::warn!(request_id = %ctx.request_id, backend = %peer, retry, "connect to backend failed: {e}");
        e.set_retry(retry);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let idempotent = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated();
        let is_timeout = matches!(
            e.etype(),
            ErrorType::ReadTimedout | ErrorType::WriteTimedout
        );
        if ctx.retry_status.is_none() && e.esource() == &ErrorSource::Upstream {
            self.record_backend_failure(ctx);
        }
        let Some(pool) = ctx.pool() else { return e };
        let more_tries = ctx.tried.len() < pool.retry.max_tries.min(pool.backends.len());
        let wanted = ctx.retry_status.is_some() || (is_timeout && pool.retry.on_timeout);
        let retry = if !idempotent {
            false
        } else if wanted {
            more_tries && pool.retry.budget.try_spend()
        } else {
            // A reused keep-alive connection the backend had closed: pingora's rule.
            e.retry.decide_reuse(client_reused);
            e.retry() && more_tries
        };
        e.set_retry(retry);
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let facts = forwarding::ForwardedFacts {
            client_ip: ctx.client.ip,
            proto: if self.tls { "https" } else { "http" },
            host: &ctx.host,
            request_id: &ctx.request_id,
        };
        forwarding::apply(upstream_request, &facts)?;
        if let Some(outcome) = &ctx.rewrite {
            rewrites::edit_request(upstream_request, &outcome.request_headers)?;
            if let Some(pq) = &outcome.path_and_query {
                let uri = http::Uri::try_from(pq.as_str()).map_err(|e| {
                    Error::explain(
                        ErrorType::InternalError,
                        format!("rewritten URI {pq:?}: {e}"),
                    )
                })?;
                upstream_request.set_uri(uri);
            }
        }
        upstream_request.remove_header(XFCC);
        if let Some(cert) = &ctx.client_cert {
            let with_pem = ctx
                .plan
                .listeners
                .get(self.listener)
                .and_then(|l| l.client_auth.as_ref())
                .is_some_and(|c| c.forward_pem);
            upstream_request.insert_header(XFCC, cert.xfcc(with_pem))?;
        }
        protocol::normalize_content_length(upstream_request)?;
        if let Some(name) = ctx
            .site
            .and_then(|s| ctx.plan.sites.get(s))
            .and_then(|s| s.country_header.as_ref())
        {
            match ctx.client.country {
                Some(c) => upstream_request.insert_header(name.clone(), c.as_str())?,
                None => {
                    upstream_request.remove_header(name);
                }
            }
        }
        if let (Some(pool), Some(&idx)) = (ctx.pool(), ctx.tried.last()) {
            let host = pool.upstream_host(idx, &ctx.client_host).to_string();
            upstream_request.insert_header(http::header::HOST, host)?;
        }
        loops::append_via(upstream_request, &ctx.plan.node_id)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = resp.status.as_u16();
        ctx.upstream_status = status;
        let Some(pool) = ctx.pool() else {
            return Ok(());
        };
        let failed = pool.passive.failure_status.contains(&status);
        let retryable = pool.retry.on_status.contains(&status)
            && session.req_header().method.is_idempotent()
            && ctx.tried.len() < pool.retry.max_tries.min(pool.backends.len());
        if failed {
            self.record_backend_failure(ctx);
        } else if let Some(b) = ctx.tried.last().and_then(|&i| pool.backends.get(i)) {
            b.health.record_success();
        }
        if retryable {
            ctx.retry_status = Some(status);
            return Error::e_explain(
                ErrorType::HTTPStatus(status),
                "retryable status from backend",
            );
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        resp.insert_header("x-request-id", &ctx.request_id)?;
        let plan = ctx.plan.clone();
        let Some(site) = ctx.site.and_then(|s| plan.sites.get(s)) else {
            return Ok(());
        };
        if site.rewrites.has_response_rules() {
            let edits = site.rewrites.apply_response(&rewrites::ResponseVars {
                request: self.request_vars(session, ctx),
                resp,
            });
            rewrites::edit_response(resp, &edits)?;
        }
        if let Some(outcome) = &ctx.rewrite {
            rewrites::edit_response(resp, &outcome.response_headers)?;
        }
        if site.harden_responses {
            harden::harden(resp, site.hsts.as_ref().filter(|_| self.tls))?;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
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
            if let Err(err) =
                respond::text(session, code, &ctx.request_id, respond::reason(code)).await
            {
                tracing::debug!("could not send error response: {err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        ctx.in_flight = None;
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let site = ctx
            .site
            .and_then(|s| ctx.plan.sites.get(s))
            .map_or("", |s| s.name.as_str());
        let elapsed = ctx.started.elapsed().as_secs_f64();
        let upstream_elapsed = ctx
            .upstream_started
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        let metrics = &self.state.metrics;
        metrics
            .requests
            .with_label_values(&[site, crate::metrics::status_class(status), ctx.waf_action])
            .inc();
        metrics
            .request_duration
            .with_label_values(&[site])
            .observe(elapsed);
        if let Some(pool) = ctx.pool() {
            if ctx.upstream_started.is_some() {
                metrics
                    .upstream_duration
                    .with_label_values(&[&pool.name])
                    .observe(upstream_elapsed);
            }
        }
        if let Some(reason) = ctx.block_reason {
            metrics.blocks.with_label_values(&[reason]).inc();
        }
        if !self.state.access_log.enabled() {
            return;
        }
        let req = session.req_header();
        let client = session.client_addr().and_then(|a| a.as_inet()).copied();
        let ssl = session.digest().and_then(|d| d.ssl_digest.clone());
        let record = AccessRecord {
            timestamp: crate::logging::timestamp(),
            request_id: &ctx.request_id,
            client_ip: client.map(|a| a.ip().to_string()).unwrap_or_default(),
            client_port: client.map_or(0, |a| a.port()),
            country: ctx.client.country.as_ref().map_or("", |c| c.as_str()),
            listener: ctx
                .plan
                .listeners
                .get(self.listener)
                .map_or("", |l| l.name.as_str()),
            site,
            method: req.method.as_str(),
            host: &ctx.host,
            uri: req.uri.to_string(),
            status,
            bytes_in: session.body_bytes_read(),
            bytes_out: session.body_bytes_sent(),
            upstream_addr: ctx
                .tried
                .last()
                .and_then(|&i| ctx.pool().and_then(|p| p.backends.get(i)))
                .map(|b| b.addr.to_string())
                .unwrap_or_default(),
            upstream_status: ctx.upstream_status,
            tries: ctx.tried.len(),
            latency_ms: elapsed * 1000.0,
            upstream_latency_ms: upstream_elapsed * 1000.0,
            tls_version: ssl.as_ref().map_or("", |d| &d.version),
            tls_cipher: ssl.as_ref().map_or("", |d| &d.cipher),
            waf_action: ctx.waf_action,
            waf_score: 0,
            rule_ids: Vec::new(),
            block_reason: ctx.block_reason.unwrap_or(""),
            error: e.map(|e| e.to_string()).unwrap_or_default(),
        };
        self.state.access_log.write(&record);
    }
}
