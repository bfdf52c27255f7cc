//! Connects the WAF engine ([`crate::waf`]) to the request path: the request
//! as the engine sees it, the block page, and the WAF log lines.

use crate::waf::{HttpRequest, Mode, Policy, Verdict, WafPlan};
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::Result;
use serde::Serialize;

/// Evaluates a request head and (a prefix of) its body. `typed_args`: query parameters the API
/// contract proved inert (`contract::ContractState::typed_args`).
pub fn evaluate(
    plan: &WafPlan,
    policy: &Policy,
    req: &RequestHeader,
    (body, truncated): (&[u8], bool),
    typed_args: &[&str],
) -> Verdict {
    if policy.mode == Mode::Off {
        return Verdict::default();
    }
    let headers: Vec<(&str, &[u8])> = req
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    let uri = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let version = match req.version {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let request = HttpRequest::new(req.method.as_str(), uri, version, &headers)
        .with_body(body, truncated)
        .with_typed_args(typed_args);
    plan.evaluate(&request, policy)
}

/// The query parameters the request's API contract proved inert, for the WAF to skip.
fn typed_args(ctx: &super::RequestCtx) -> Vec<&str> {
    ctx.contract
        .as_ref()
        .map(|c| c.typed_args.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

/// The action a verdict stands for, as logged and counted.
pub fn action(policy: &Policy, verdict: &Verdict) -> &'static str {
    match policy.mode {
        Mode::Off => "off",
        _ if verdict.blocked => "blocked",
        _ if verdict.over_threshold => "detected",
        _ => "allowed",
    }
}

/// The 403 page for a blocked request: JSON for API clients (by Accept), short HTML otherwise.
pub async fn block_page(
    session: &mut Session,
    request_id: &str,
    trace: Option<&str>,
) -> Result<()> {
    let wants_json = session
        .req_header()
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("json") && !a.contains("text/html"));
    let (ctype, body) = if wants_json {
        let mut doc = serde_json::json!({"error": "forbidden", "message": "The request was blocked by the web application firewall.", "request_id": request_id});
        if let Some(t) = trace.and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()) {
            doc["trace"] = t;
        }
        ("application/json", doc.to_string())
    } else {
        let id = html_escape(request_id);
        (
            "text/html; charset=utf-8",
            format!("<!doctype html><html><head><title>403 Forbidden</title></head><body><h1>403 Forbidden</h1><p>The request was blocked by the web application firewall.</p><p>Request id: <code>{id}</code></p></body></html>\n"),
        )
    };
    let mut resp = ResponseHeader::build(403, Some(5))?;
    resp.insert_header("content-type", ctype)?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("x-request-id", request_id)?;
    resp.insert_header("cache-control", "no-store")?;
    if let Some(t) = trace {
        resp.insert_header(super::trace::HEADER, t)?;
    }
    super::respond::send(session, resp, Bytes::from(body)).await
}

fn html_escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// One line of the WAF log, with the fields operators know from Application
/// Gateway's firewall log.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WafRecord<'a> {
    pub timestamp: &'a str,
    pub instance_id: &'a str,
    pub client_ip: &'a str,
    pub client_port: u16,
    pub request_uri: &'a str,
    pub rule_set_type: &'static str,
    pub rule_set_version: &'static str,
    pub rule_id: String,
    pub rule_group: &'a str,
    pub message: &'a str,
    /// `Matched` for each rule, then one `Blocked` or `Detected` line for the request.
    pub action: &'static str,
    pub site: &'a str,
    pub details: WafDetails<'a>,
    pub hostname: &'a str,
    pub transaction_id: &'a str,
    pub policy_scope: &'a str,
    pub anomaly_score: u32,
}

#[derive(Debug, Serialize)]
pub struct WafDetails<'a> {
    pub message: String,
    pub data: &'a str,
    pub target: &'a str,
}

/// Why a body whose content coding expands past the inspection limit is refused (413) where
/// oversized bodies are (`waf_oversized_body = "reject"`): its end could not be inspected.
const DECODED_OVER_LIMIT: &str = "payload too large: decoded body over the WAF inspection limit";

/// The WAF stage of the request path.
impl super::Edge {
    /// Inspects a request whose body (if any) was read ahead; defers to the
    /// body filter when the body streams. `Ok(false)` when a response was sent.
    pub(super) async fn inspect_head(
        &self,
        session: &mut Session,
        ctx: &mut super::RequestCtx,
        site: &crate::routing::Site,
    ) -> Result<bool> {
        let policy = &site.waf_policy;
        if trace::requested(
            ctx.plan.trace_secret.as_deref(),
            session
                .req_header()
                .headers
                .get(trace::HEADER)
                .map(|v| v.as_bytes()),
        ) {
            let mut t = trace::Trace::default();
            t.stage("client", serde_json::json!({"ip": ctx.client.ip, "country": ctx.client.country.map(|c| c.as_str().to_string())}));
            t.stage(
                "route",
                serde_json::json!({"site": site.name, "pool": ctx.pool().map(|p| p.name.clone())}),
            );
            ctx.trace = Some(t);
        }
        if policy.mode == Mode::Off {
            ctx.waf_action = "off";
            // A streamed body the API contract has still to check is held back all the same.
            ctx.waf_deferred = ctx.contract.as_ref().is_some_and(|c| c.body_pending);
            return Ok(true);
        }
        let streamed = ctx.body.is_none() && !session.as_downstream_mut().is_body_empty();
        if streamed {
            // Held back and decided when complete or at the inspection limit; a body declared
            // larger than the limit is read up to it too, so that an attack at its start gets
            // the 403 that names its rule rather than a 413 (`inspect_streamed_body`).
            ctx.waf_deferred = true;
            return Ok(true);
        }
        let body = ctx.body.as_ref().map_or(&[][..], |b| &b.data[..]);
        let typed = typed_args(ctx);
        let verdict = evaluate(
            &ctx.plan.waf,
            policy,
            session.req_header(),
            (body, false),
            &typed,
        );
        let decoded_over_limit = verdict.decoded_body_over_limit;
        if self.record_verdict(ctx, policy, verdict) {
            let trace = ctx.trace.as_ref().map(trace::Trace::render);
            block_page(session, &ctx.request_id, trace.as_deref()).await?;
            return Ok(false);
        }
        if decoded_over_limit && self.rejects_oversized(site) {
            ctx.block_reason = Some("size");
            super::respond::text(session, 413, &ctx.request_id, DECODED_OVER_LIMIT).await?;
            return Ok(false);
        }
        Ok(true)
    }

    fn rejects_oversized(&self, site: &crate::routing::Site) -> bool {
        site.waf_policy.mode == Mode::Prevention
            && site.waf_oversized_body == crate::config::OversizedBody::Reject
    }

    /// Holds a streamed body back until it is complete (or reaches the
    /// inspection limit), then decides; a block ends the request with 403
    /// before any body byte reached the backend.
    pub(super) fn inspect_streamed_body(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut super::RequestCtx,
    ) -> Result<()> {
        let plan = ctx.plan.clone();
        let Some(site) = ctx.site.and_then(|s| plan.sites.get(s)) else {
            return Ok(());
        };
        let policy = &site.waf_policy;
        if let Some(chunk) = body.take() {
            ctx.held.extend_from_slice(&chunk);
        }
        let over = ctx.held.len() > policy.body_limit;
        if !end_of_stream && !over {
            // An empty chunk sends nothing on (`None` would end the upstream body).
            *body = Some(Bytes::new());
            return Ok(());
        }
        ctx.waf_deferred = false;
        // The API contract's check of the body comes first, as it does for a body read ahead.
        if ctx.contract.as_ref().is_some_and(|c| c.body_pending) {
            let held = ctx.held.clone().freeze();
            if let Some(status) = self.contract_streamed_body(session, ctx, &held) {
                return pingora::Error::e_explain(
                    pingora::ErrorType::HTTPStatus(status),
                    "the body breaks the API contract",
                );
            }
        }
        let inspected = &ctx.held[..ctx.held.len().min(policy.body_limit)];
        let typed = typed_args(ctx);
        let verdict = evaluate(
            &plan.waf,
            policy,
            session.req_header(),
            (inspected, over),
            &typed,
        );
        let decoded_over_limit = verdict.decoded_body_over_limit;
        // The prefix is judged first: an attack in it is a 403 naming its rule, whatever the
        // size; only a clean prefix of an oversized body gets the 413.
        if self.record_verdict(ctx, policy, verdict) {
            return pingora::Error::e_explain(
                pingora::ErrorType::HTTPStatus(403),
                "blocked by the WAF",
            );
        }
        if over && self.rejects_oversized(site) {
            ctx.block_reason = Some("size");
            return pingora::Error::e_explain(
                pingora::ErrorType::HTTPStatus(413),
                "body over the WAF inspection limit",
            );
        }
        if decoded_over_limit && self.rejects_oversized(site) {
            ctx.block_reason = Some("size");
            return pingora::Error::e_explain(
                pingora::ErrorType::HTTPStatus(413),
                DECODED_OVER_LIMIT,
            );
        }
        *body = Some(ctx.held.split().freeze());
        Ok(())
    }

    /// Keeps the verdict for logs, metrics and the trace; true when the request is blocked.
    fn record_verdict(
        &self,
        ctx: &mut super::RequestCtx,
        policy: &Policy,
        verdict: Verdict,
    ) -> bool {
        ctx.waf_action = action(policy, &verdict);
        if let Some(t) = ctx.trace.as_mut() {
            let matches: Vec<_> = verdict
                .matches
                .iter()
                .map(|m| serde_json::json!({"rule": m.rule_id, "score": m.severity, "category": m.category, "target": m.target}))
                .collect();
            t.stage("waf", serde_json::json!({"action": ctx.waf_action, "score": verdict.score, "threshold": policy.anomaly_threshold, "matches": matches}));
        }
        let blocked = verdict.blocked;
        if blocked {
            ctx.block_reason = Some("waf");
        }
        ctx.verdict = Some(verdict);
        blocked
    }
}

use super::trace;

impl super::Edge {
    /// WAF log lines (one per matched rule, then the request's outcome) and rule metrics.
    pub(super) fn log_verdict(&self, session: &Session, ctx: &super::RequestCtx, site: &str) {
        let Some(verdict) = ctx.verdict.as_ref().filter(|v| !v.matches.is_empty()) else {
            return;
        };
        for m in &verdict.matches {
            self.state
                .metrics
                .rule_matches
                .with_label_values(&[&m.rule_id.to_string(), &m.category])
                .inc();
        }
        if !self.state.waf_log.enabled() {
            return;
        }
        let timestamp = crate::logging::timestamp();
        let client = session.client_addr().and_then(|a| a.as_inet()).copied();
        let client_ip = ctx
            .client
            .ip
            .map(super::addr_text::ip_text)
            .unwrap_or_default();
        let uri = session.req_header().uri.to_string();
        let outcome = match ctx.waf_action {
            "blocked" => Some("Blocked"),
            "detected" => Some("Detected"),
            _ => None,
        };
        let lines = verdict
            .matches
            .iter()
            .map(|m| (m, "Matched"))
            .chain(outcome.and_then(|o| verdict.matches.last().map(|m| (m, o))));
        for (m, action) in lines {
            let summary = action != "Matched";
            let record = WafRecord {
                timestamp: &timestamp,
                instance_id: &ctx.plan.node_id,
                client_ip: &client_ip,
                client_port: client.map_or(0, |a| a.port()),
                request_uri: &uri,
                rule_set_type: "Portcullis",
                rule_set_version: env!("CARGO_PKG_VERSION"),
                rule_id: if summary {
                    "anomaly-score".to_string()
                } else {
                    m.rule_id.to_string()
                },
                rule_group: if summary {
                    "BLOCKING-EVALUATION"
                } else {
                    &m.category
                },
                message: if summary {
                    "Anomaly score reached the threshold"
                } else {
                    &m.message
                },
                action,
                site,
                details: WafDetails {
                    message: if summary {
                        format!("score {}", verdict.score)
                    } else {
                        format!("{} (severity {})", m.message, m.severity)
                    },
                    data: if summary { "" } else { &m.data },
                    target: if summary { "" } else { &m.target },
                },
                hostname: &ctx.host,
                transaction_id: &ctx.request_id,
                policy_scope: site,
                anomaly_score: verdict.score,
            };
            self.state.waf_log.write(&record);
        }
    }
}
