//! The request path, as pingora's `ProxyHttp` phases:
//! `request_filter` (the stages in `stages.rs`: protocol checks, client
//! identity and routing, body read-ahead, client certificate, custom rules,
//! rate limits and the WAF, rewrites) -> `request_body_filter` (limits, the
//! WAF on streamed bodies) -> `upstream_peer` (backend selection) ->
//! `upstream_request_filter` (forwarding headers) -> `upstream_response_filter`
//! (passive health, retries) -> `response_filter` (rewrites, hardening) ->
//! `logging` (access and WAF logs, metrics).
//!
//! Each hook runs its body (the `impl Edge` blocks) under [`panics::contain`]: a panic in it is
//! answered 500 with a request id, counted and logged, and never takes the connection's task
//! down silently.
//!
//! Each request takes one snapshot of the runtime plan when it starts and uses
//! it to the end, so a reload never changes the rules under a request.

pub mod addr_text;
pub mod body;
mod contract;
pub mod forwarding;
pub mod harden;
pub mod identity;
pub mod loops;
pub mod panics;
pub mod protocol;
pub mod respond;
pub mod rewrites;
mod stages;
pub mod trace;
pub mod waf;

use crate::logging::AccessRecord;
use crate::plan::RuntimePlan;
use crate::routing::normalize_host;
use crate::state::EdgeState;
use crate::tls::mtls::ClientCertFacts;
use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::ErrorType;
use std::sync::Arc;
use std::time::Instant;

/// Envoy's header for the client certificate: set by the edge, never by a client.
static XFCC: http::HeaderName = http::HeaderName::from_static("x-forwarded-client-cert");

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

    /// A hook's outcome, with a panic caught in it ([`panics::contain`]) turned into the internal
    /// error that `fail_to_proxy` answers with a 500 (see [`Edge::panicked`]).
    fn settle<T>(
        &self,
        outcome: std::result::Result<Result<T>, panics::Panic>,
        hook: &'static str,
        ctx: &mut RequestCtx,
    ) -> Result<T> {
        outcome.unwrap_or_else(|panic| {
            self.panicked(panic, hook, ctx);
            Error::e_explain(ErrorType::InternalError, format!("panic in {hook}"))
        })
    }

    /// Counts and logs a contained panic, once, with the request id (given one here when the
    /// panic came before it was read: it is the id the 500 will carry).
    fn panicked(&self, panic: panics::Panic, hook: &'static str, ctx: &mut RequestCtx) {
        if ctx.request_id.is_empty() {
            let id = forwarding::request_id(None);
            (ctx.request_id, ctx.request_id_header) = (id.text, id.header);
        }
        ctx.panicked = true;
        self.state.metrics.panics.with_label_values(&[hook]).inc();
        tracing::error!(
            request_id = %ctx.request_id,
            hook,
            location = panic.location.as_deref().unwrap_or(""),
            backtrace = panic.backtrace.as_deref(),
            "panic in the request path (contained): {}",
            panic.message
        );
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

/// The consistent-hash key of a request: the real client address (after
/// trusted proxies and PROXY protocol), or a header.
fn hash_key(session: &Session, ctx: &RequestCtx, key: &crate::upstream::HashKey) -> Vec<u8> {
    match key {
        crate::upstream::HashKey::ClientIp => ctx
            .client
            .ip
            .map(|ip| addr_text::ip_text(ip).into_bytes())
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
    /// The same id as a header value, for the backend and the client.
    request_id_header: http::HeaderValue,
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
    /// The WAF waits for a streamed body before deciding.
    waf_deferred: bool,
    /// Body bytes held back while the WAF has not decided.
    held: bytes::BytesMut,
    /// The WAF's decision.
    verdict: Option<crate::waf::Verdict>,
    /// Stage decisions for `X-Portcullis-Trace`, when asked for with the secret.
    trace: Option<trace::Trace>,
    /// What the site's request-phase rewrite rules decided.
    rewrite: Option<crate::rewrite::RequestOutcome>,
    /// The verified client certificate, on mTLS listeners.
    client_cert: Option<ClientCertFacts>,
    /// The body read before proxying.
    body: Option<body::BufferedBody>,
    /// The try for which the buffered body was last sent upstream.
    body_replayed_for_try: usize,
    /// A hook panicked (contained, counted and logged by [`Edge::settle`]).
    panicked: bool,
    /// The API contract that applies to the request, what it found, and whether its body is
    /// still to be checked (streamed bodies: when complete).
    contract: Option<contract::ContractState>,
}

impl RequestCtx {
    fn site(&self) -> Option<&crate::routing::Site> {
        self.site.and_then(|s| self.plan.sites.get(s))
    }

    fn pool(&self) -> Option<&crate::upstream::Pool> {
        self.pool
            .and_then(|p| self.plan.pools.get(p))
            .map(Arc::as_ref)
    }
}

/// The backend closed or reset the connection before its response was complete: for an
/// idempotent request, trying another backend is safe (what nginx's `proxy_next_upstream error`
/// does).
fn backend_broke_connection(e: &Error) -> bool {
    e.esource() == &ErrorSource::Upstream
        && matches!(
            e.etype(),
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
        )
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
            request_id_header: http::HeaderValue::from_static(""),
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
            panicked: false,
            contract: None,
            client_cert: None,
            rewrite: None,
            waf_deferred: false,
            held: bytes::BytesMut::new(),
            verdict: None,
            trace: None,
        }
    }

    /// The request-path stages (`stages.rs`). Like every hook that runs the edge's code, it
    /// contains a panic: the request is answered 500 (`panics.rs`).
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let outcome = panics::contain(self.run_stages(session, ctx)).await;
        self.settle(outcome, "request_filter", ctx)
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let outcome =
            panics::contain(self.filter_request_body(session, body, end_of_stream, ctx)).await;
        self.settle(outcome, "request_body_filter", ctx)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let outcome = panics::contain(self.choose_peer(session, ctx)).await;
        self.settle(outcome, "upstream_peer", ctx)
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
        let paid = ctx.retry_status.is_some() || (is_timeout && pool.retry.on_timeout);
        // Once a response head went to the client, another try would send it a second one.
        let response_started = session.response_written().is_some();
        let retry = if !idempotent || response_started {
            false
        } else if paid {
            more_tries && pool.retry.budget.try_spend()
        } else {
            // A reused keep-alive connection the backend had closed is retried free (pingora's
            // rule); a fresh one the backend broke (it died mid-request) is paid from the budget.
            e.retry.decide_reuse(client_reused);
            more_tries
                && (e.retry() || (backend_broke_connection(&e) && pool.retry.budget.try_spend()))
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
        let outcome = panics::contain(self.filter_upstream_request(upstream_request, ctx)).await;
        self.settle(outcome, "upstream_request_filter", ctx)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let outcome = panics::contain(self.filter_upstream_response(session, resp, ctx)).await;
        self.settle(outcome, "upstream_response_filter", ctx)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let outcome = panics::contain(self.filter_response(session, resp, ctx)).await;
        self.settle(outcome, "response_filter", ctx)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let outcome = panics::contain(self.answer_failure(session, e, ctx)).await;
        outcome.unwrap_or_else(|panic| {
            self.panicked(panic, "fail_to_proxy", ctx);
            FailToProxy {
                error_code: 500,
                can_reuse_downstream: false,
            }
        })
    }

    /// Pingora writes an ERROR line for every request that ends in an error. Two kinds are no
    /// failure of the edge, and the access log (and the WAF log) already records them with their
    /// status: a client that left before its answer, timed out or sent something malformed (nginx
    /// logs a client abort at `info`), and a request the edge refused on purpose (a WAF block of a
    /// streamed body, a body over the limit). Only backend and internal failures reach the edge's
    /// own log. A contained panic was logged already, with its request id (`Edge::panicked`).
    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, e: &Error) -> bool {
        e.esource() == &ErrorSource::Downstream || ctx.block_reason.is_some() || ctx.panicked
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if let Err(panic) = panics::contain(self.log_request(session, e, ctx)).await {
            self.panicked(panic, "logging", ctx);
        }
    }
}

/// The bodies of the hooks above, each run under [`panics::contain`] by its hook.
impl Edge {
    /// `request_body_filter`: the body limit, and the WAF on a streamed body.
    async fn filter_request_body(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
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
        if ctx.waf_deferred {
            self.inspect_streamed_body(session, body, end_of_stream, ctx)?;
        }
        Ok(())
    }

    /// `upstream_peer`: the backend for this try.
    async fn choose_peer(
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
        // Only consistent hashing reads the key: the others need no formatting.
        let key = if pool.algorithm == crate::config::LoadBalancing::ConsistentHash {
            hash_key(session, ctx, &pool.hash_key)
        } else {
            Vec::new()
        };
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

    /// `upstream_request_filter`: forwarding headers, rewrites, Host and `Via`.
    async fn filter_upstream_request(
        &self,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let facts = forwarding::ForwardedFacts {
            client_ip: ctx.client.ip,
            proto: if self.tls { "https" } else { "http" },
            host: &ctx.host,
            request_id: &ctx.request_id_header,
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
        upstream_request.remove_header(&XFCC);
        if let Some(cert) = &ctx.client_cert {
            let with_pem = ctx
                .plan
                .listeners
                .get(self.listener)
                .and_then(|l| l.client_auth.as_ref())
                .is_some_and(|c| c.forward_pem);
            upstream_request.insert_header("x-forwarded-client-cert", cert.xfcc(with_pem))?;
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
            let host = pool.upstream_host(idx, &ctx.client_host);
            // Most requests keep the client's Host: then there is nothing to
            // write (pingora refuses a request with two Host headers).
            let current = upstream_request.headers.get(http::header::HOST);
            if current.is_none_or(|h| h.as_bytes() != host.as_bytes()) {
                upstream_request.insert_header(http::header::HOST, host.to_string())?;
            }
        }
        loops::append_via(upstream_request, &ctx.plan.via)
    }

    /// `upstream_response_filter`: passive health, and retries on a status.
    async fn filter_upstream_response(
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

    /// `response_filter`: the request id, the trace, response rewrites and hardening.
    async fn filter_response(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        panics::debug_trigger(session.req_header(), "response_filter");
        resp.insert_header("x-request-id", ctx.request_id_header.clone())?;
        if let Some(t) = ctx.trace.as_ref() {
            resp.insert_header(trace::HEADER, t.render())?;
        }
        let plan = ctx.plan.clone();
        let Some(site) = ctx.site.and_then(|s| plan.sites.get(s)) else {
            return Ok(());
        };
        // Response rules test the response as the backend sent it, but their edits come after
        // the hardening: an operator's explicit header (a `Server` of their own, a deleted HSTS)
        // wins over the default.
        let rule_edits = if site.rewrites.has_response_rules() {
            site.rewrites.apply_response(&rewrites::ResponseVars {
                request: self.request_vars(session, ctx),
                resp,
            })
        } else {
            Vec::new()
        };
        if site.harden_responses {
            harden::harden(resp, site.hsts.as_ref().filter(|_| self.tls))?;
        }
        rewrites::edit_response(resp, &rule_edits)?;
        if let Some(outcome) = &ctx.rewrite {
            rewrites::edit_response(resp, &outcome.response_headers)?;
        }
        Ok(())
    }

    /// `fail_to_proxy`: the error's status, answered with the request id.
    async fn answer_failure(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        // The connection is not reused after a failed request (`can_reuse_downstream` below):
        // say so in the answer, so that a client that pipelined requests behind this one sends
        // them again.
        session.set_keepalive(None);
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
                    ErrorType::ReadTimedout => 408,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code > 0 {
            if ctx.request_id.is_empty() {
                let id = forwarding::request_id(None);
                (ctx.request_id, ctx.request_id_header) = (id.text, id.header);
            }
            let sent = if code == 403 && ctx.block_reason == Some("waf") {
                let trace = ctx.trace.as_ref().map(trace::Trace::render);
                waf::block_page(session, &ctx.request_id, trace.as_deref()).await
            } else if ctx.block_reason == Some("contract") {
                contract::write_problem(session, ctx, code, &[]).await
            } else {
                respond::text(session, code, &ctx.request_id, respond::reason(code)).await
            };
            if let Err(err) = sent {
                tracing::debug!("could not send error response: {err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// `logging`: metrics, the WAF log and the access log.
    async fn log_request(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        ctx.in_flight = None;
        crate::pipelining::request_ended(session.as_downstream());
        panics::debug_trigger(session.req_header(), "logging");
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
        self.log_verdict(session, ctx, site);
        if !self.state.access_log.enabled() {
            return;
        }
        let req = session.req_header();
        let client = session.client_addr().and_then(|a| a.as_inet()).copied();
        let ssl = session.digest().and_then(|d| d.ssl_digest.clone());
        let record = AccessRecord {
            timestamp: crate::logging::timestamp(),
            request_id: &ctx.request_id,
            client_ip: client
                .map(|a| addr_text::ip_text(a.ip()))
                .unwrap_or_default(),
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
            // The request-target as sent: borrowed in origin form, the usual case.
            uri: match (req.uri.authority(), req.uri.path_and_query()) {
                (None, Some(pq)) => std::borrow::Cow::Borrowed(pq.as_str()),
                _ => std::borrow::Cow::Owned(req.uri.to_string()),
            },
            status,
            bytes_in: session.body_bytes_read(),
            bytes_out: session.body_bytes_sent(),
            upstream_addr: ctx
                .tried
                .last()
                .and_then(|&i| ctx.pool().and_then(|p| p.backends.get(i)))
                .map(|b| addr_text::socket_addr_text(b.addr))
                .unwrap_or_default(),
            upstream_status: ctx.upstream_status,
            tries: ctx.tried.len(),
            latency_ms: elapsed * 1000.0,
            upstream_latency_ms: upstream_elapsed * 1000.0,
            tls_version: ssl.as_ref().map_or("", |d| &d.version),
            tls_cipher: ssl.as_ref().map_or("", |d| &d.cipher),
            waf_action: ctx.waf_action,
            waf_score: ctx.verdict.as_ref().map_or(0, |v| v.score),
            rule_ids: ctx
                .verdict
                .as_ref()
                .map(|v| v.matches.iter().map(|m| m.rule_id).collect())
                .unwrap_or_default(),
            block_reason: ctx.block_reason.unwrap_or(""),
            contract_operation: ctx.contract.as_ref().map_or("", |c| c.operation.as_str()),
            contract_violations: ctx
                .contract
                .as_ref()
                .map(contract::ContractState::log_lines)
                .unwrap_or_default(),
            error: e.map(|e| e.to_string()).unwrap_or_default(),
        };
        self.state.access_log.write_with(|out| {
            record.write_json_line(out);
            true
        });
    }
}
