//! The request-path stages of [`Edge`], in the order `request_filter` runs
//! them: protocol checks, client identity and routing, reading the body, the
//! client certificate, inspection (WAF), rewrites. Each returns `Ok(false)`
//! when it answered the request itself.

use super::{body, forwarding, identity, loops, protocol, request_host, respond, Edge, RequestCtx};
use crate::customrules::HttpRequestFacts;
use crate::ratelimit::{PendingCheck, RateLimiter};
use crate::routing::find_site;
use crate::tls::mtls::ClientCertFacts;
use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::ErrorType;

impl Edge {
    /// The stages, in order (`request_filter`). Each answers the request itself (returning
    /// `false`) or lets it go on; `Ok(true)` when the request was answered here.
    pub(super) async fn run_stages(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        super::panics::debug_trigger(session.req_header(), "request_filter");
        let passed = self.check_protocol(session, ctx).await?
            && self.identify_and_route(session, ctx).await?
            && self.read_body(session, ctx).await?
            && self.check_client_cert(session, ctx).await?
            && self.enforce_contract(session, ctx).await?
            && self.inspect(session, ctx).await?
            && self.rewrite_request(session, ctx).await?;
        if passed {
            if let Some(pool) = ctx.pool() {
                pool.retry.budget.deposit();
            }
        }
        Ok(!passed)
    }

    /// Framing and size checks on the head, and loop protection.
    pub(super) async fn check_protocol(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let req = session.req_header();
        let id = forwarding::request_id(req.headers.get(&forwarding::X_REQUEST_ID));
        (ctx.request_id, ctx.request_id_header) = (id.text, id.header);
        let raw_head = match session.as_downstream() {
            pingora::protocols::http::ServerSession::H1(h1) => Some(h1.get_headers_raw_bytes()),
            _ => None,
        };
        if raw_head.is_some() && crate::pipelining::arrived_pipelined(session.as_downstream()) {
            let plan = &ctx.plan;
            let listener = plan
                .listeners
                .get(self.listener)
                .map_or("", |l| l.name.as_str());
            self.state
                .metrics
                .pipelined_requests
                .with_label_values(&[listener])
                .inc();
        }
        if let Err(v) = protocol::check_head(req, raw_head.as_deref(), &ctx.plan.limits) {
            ctx.block_reason = Some(if v.status == 400 { "protocol" } else { "size" });
            tracing::info!(request_id = %ctx.request_id, reason = v.reason, "request refused by protocol checks");
            let msg = format!("{}: {}", respond::reason(v.status), v.reason);
            respond::text(session, v.status, &ctx.request_id, &msg).await?;
            return Ok(false);
        }
        let limits = &ctx.plan.limits;
        let (body_timeout, keepalive) = (
            limits.body_read_timeout_ms,
            limits.keepalive_timeout_seconds,
        );
        if loops::hops_through(req, &ctx.plan.node_id) >= ctx.plan.max_hops {
            ctx.block_reason = Some("loop");
            respond::text(session, 508, &ctx.request_id, respond::reason(508)).await?;
            return Ok(false);
        }
        // Slow clients: each wait for more body is bounded, and so is an idle keep-alive.
        session.set_read_timeout(Some(std::time::Duration::from_millis(body_timeout)));
        session.set_keepalive(Some(keepalive));
        // Requests pipelined behind this one are answered in order (RFC 9112 section 9.3.2),
        // not dropped with the connection nor taken for bytes sent after the end of the body.
        crate::pipelining::enable(session.as_downstream_mut());
        Ok(true)
    }

    /// The client's address and country, the site (and its country policy) and the route.
    pub(super) async fn identify_and_route(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let req = session.req_header();
        let Some((client_host, host)) = request_host(req) else {
            respond::text(session, 400, &ctx.request_id, "bad request: missing Host").await?;
            return Ok(false);
        };
        ctx.host = host;
        ctx.client_host = client_host;
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        ctx.client = identity::identify(&ctx.plan.network, peer, req);
        let plan = ctx.plan.clone();
        let Some((site_idx, site)) = find_site(&plan.sites, self.listener, &ctx.host) else {
            respond::text(session, 404, &ctx.request_id, respond::reason(404)).await?;
            return Ok(false);
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
                return Ok(false);
            }
        }
        let Some(route) = site.route(session.req_header().uri.path()) else {
            respond::text(session, 404, &ctx.request_id, respond::reason(404)).await?;
            return Ok(false);
        };
        ctx.pool = Some(route.pool);
        Ok(true)
    }

    /// Reads the request body (up to the inspection limit) before any backend
    /// is involved. `Ok(false)` when a response was already sent.
    pub(super) async fn read_body(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        if !body::can_read_ahead(session.req_header()) {
            return Ok(true);
        }
        let limit = body::READ_AHEAD_MAX as usize;
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

    /// The verified client certificate, and sites that require one.
    pub(super) async fn check_client_cert(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        ctx.client_cert = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .and_then(|s| s.extension.get::<ClientCertFacts>())
            .cloned();
        let required = ctx.site().is_some_and(|s| s.require_client_cert);
        if required && ctx.client_cert.is_none() {
            ctx.block_reason = Some("client_cert");
            respond::text(
                session,
                403,
                &ctx.request_id,
                "forbidden: this site requires a client certificate",
            )
            .await?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Custom rules, then rate limits, then the WAF. A custom `allow` rule
    /// skips the WAF (but not the rate limits).
    pub(super) async fn inspect(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let plan = ctx.plan.clone();
        let Some(site) = ctx.site.and_then(|s| plan.sites.get(s)) else {
            return Ok(true);
        };
        let country = ctx.client.country;
        let body = ctx.body.as_ref().map_or(&[][..], |b| &b.data[..]);
        let facts = HttpRequestFacts {
            parts: session.req_header(),
            client_ip: ctx.client.ip,
            country: country.as_ref().map(|c| c.as_str()),
            body,
        };
        let evaluation = site.custom_rules.evaluate(&facts);
        for rule in &evaluation.logged {
            tracing::info!(request_id = %ctx.request_id, site = %site.name, rule, "custom rule matched (log)");
        }
        let (blocked_by, skip_waf) = match evaluation.decision {
            Some(d) if evaluation.is_block() => (Some(d.rule.to_string()), false),
            Some(_) => (None, evaluation.is_allow()),
            None => (None, false),
        };
        // Planned here, before any await: the facts borrow the session.
        let pending = site.rate_limiter.as_ref().map(|l| l.plan(&facts));
        if let Some(rule) = blocked_by {
            ctx.block_reason = Some("custom_rule");
            tracing::info!(request_id = %ctx.request_id, site = %site.name, rule, "blocked by custom rule");
            respond::text(
                session,
                403,
                &ctx.request_id,
                "forbidden: blocked by a custom rule",
            )
            .await?;
            return Ok(false);
        }
        if let (Some(limiter), Some(pending)) = (&site.rate_limiter, pending) {
            if !self
                .enforce_rate_limits(session, ctx, limiter, pending)
                .await?
            {
                return Ok(false);
            }
        }
        if skip_waf {
            ctx.waf_action = "skipped";
            return Ok(true);
        }
        self.inspect_head(session, ctx, site).await
    }

    /// Counts the request against the site's rate limits; 429 with Retry-After when over.
    async fn enforce_rate_limits(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        limiter: &RateLimiter,
        pending: Vec<PendingCheck>,
    ) -> Result<bool> {
        let outcome = limiter.run(pending).await;
        for logged in &outcome.logged {
            tracing::info!(request_id = %ctx.request_id, rule = logged.rule, count = logged.check.count, store_error = logged.check.store_error, "rate limit exceeded (log)");
        }
        let Some(blocked) = outcome.blocked else {
            return Ok(true);
        };
        ctx.block_reason = Some("rate_limit");
        let status = if blocked.check.store_error { 503 } else { 429 };
        let msg = format!(
            "too many requests (limit {}: {})",
            blocked.rule, blocked.check.limit
        );
        let retry_after = blocked.check.retry_after_secs.max(1).to_string();
        respond::text_with_headers(
            session,
            status,
            &ctx.request_id,
            &msg,
            &[("retry-after", retry_after)],
        )
        .await?;
        Ok(false)
    }

    /// Request-phase rewrites; a rewrite redirect answers here.
    pub(super) async fn rewrite_request(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let plan = ctx.plan.clone();
        let Some(site) = ctx
            .site
            .and_then(|s| plan.sites.get(s))
            .filter(|s| !s.rewrites.is_empty())
        else {
            return Ok(true);
        };
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
            return Ok(false);
        }
        ctx.rewrite = Some(outcome);
        Ok(true)
    }
}
