//! The API contract stage: after routing, before custom rules and the WAF, a request to a path
//! under one of the site's OpenAPI documents is checked against it (`crate::openapi`). In
//! prevention a violation is answered with an RFC 9457 problem document and never reaches the
//! backend; in detection it is logged and counted only. A body read ahead is checked here; a
//! streamed one when it is complete (`waf::inspect_streamed_body`).

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;
use std::sync::Arc;

use super::{Edge, RequestCtx};
use crate::openapi::compile::Credential;
use crate::openapi::validate::Head;
use crate::openapi::{problem, Contract, ContractMode, Violation};

/// What the contract found for one request.
pub struct ContractState {
    pub contract: Arc<Contract>,
    /// `operationId`, empty when the path or method is not in the contract.
    pub operation: String,
    operation_idx: Option<usize>,
    pub violations: Vec<Violation>,
    /// The body is streamed: checked when complete.
    pub body_pending: bool,
    /// Query parameters whose values the contract proved inert: the WAF does not scan them
    /// (`HttpRequest::typed_args`). Empty unless the head passed without any violation.
    pub typed_args: Vec<String>,
}

impl ContractState {
    /// The violations as the access log lists them: `kind pointer keyword` (`(logged)` after
    /// the ones the contract only logs).
    pub fn log_lines(&self) -> Vec<String> {
        self.violations
            .iter()
            .map(|v| {
                let logged = if v.blocks { "" } else { " (logged)" };
                format!("{} {} {}{logged}", v.kind, v.pointer, v.keyword)
            })
            .collect()
    }

    /// The `Authorization` scheme the operation's credentials name, if any (`Bearer`).
    fn authorization_scheme(&self) -> Option<&str> {
        let op = self.contract.operations.get(self.operation_idx?)?;
        op.security.iter().flatten().find_map(|c| match c {
            Credential::Authorization(scheme) => Some(scheme.as_str()),
            _ => None,
        })
    }

    fn blocks(&self) -> bool {
        self.contract.mode == ContractMode::Prevention && self.violations.iter().any(|v| v.blocks)
    }
}

impl Edge {
    /// Checks the request's head (and a body read ahead) against the site's contract for its
    /// path; false when it was refused.
    pub(super) async fn enforce_contract(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let plan = ctx.plan.clone();
        let Some(site) = ctx.site.and_then(|s| plan.sites.get(s)) else {
            return Ok(true);
        };
        let req = session.req_header();
        let path = req.uri.path();
        let Some(contract) = site
            .contracts
            .iter()
            .find(|c| c.mode != ContractMode::Off && c.covers(path))
        else {
            return Ok(true);
        };
        let headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
            .collect();
        let outcome = contract.check_head(&Head {
            method: req.method.as_str(),
            path,
            query: req.uri.query(),
            headers,
        });
        let mut state = ContractState {
            contract: contract.clone(),
            operation: outcome
                .operation
                .map(|i| contract.operations[i].id.clone())
                .unwrap_or_default(),
            operation_idx: outcome.operation,
            typed_args: Vec::new(),
            violations: outcome.violations,
            body_pending: false,
        };
        if let (Some(op), true) = (state.operation_idx, contract.waf_skips_typed_values) {
            if state.violations.is_empty() {
                state.typed_args = contract
                    .closed_query_params(op)
                    .map(str::to_string)
                    .collect();
            }
        }
        let has_body = ctx.body.is_some() || !session.as_downstream_mut().is_body_empty();
        if let Some(op) = state.operation_idx.filter(|_| !state.blocks()) {
            match &ctx.body {
                Some(b) => {
                    let ct = content_type(session);
                    state
                        .violations
                        .extend(contract.check_body(op, ct.as_deref(), &b.data));
                }
                None if has_body => state.body_pending = true,
                None => {
                    let ct = content_type(session);
                    state
                        .violations
                        .extend(contract.check_body(op, ct.as_deref(), &[]));
                }
            }
        }
        self.count_violations(&site.name, &state);
        let status = if state.blocks() {
            let head_outcome = crate::openapi::Outcome {
                operation: state.operation_idx,
                violations: state.violations.clone(),
                allow: outcome.allow,
            };
            head_outcome
                .status(contract)
                .map(|s| (s, head_outcome.allow))
        } else {
            None
        };
        ctx.contract = Some(state);
        let Some((status, allow)) = status else {
            return Ok(true);
        };
        ctx.block_reason = Some("contract");
        write_problem(session, ctx, status, &allow).await?;
        Ok(false)
    }

    /// Checks a streamed body once it is complete; the status to refuse it with, if any.
    pub(super) fn contract_streamed_body(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        body: &[u8],
    ) -> Option<u16> {
        let site = ctx.site().map(|s| s.name.clone()).unwrap_or_default();
        let ct = content_type(session);
        let state = ctx.contract.as_mut().filter(|s| s.body_pending)?;
        state.body_pending = false;
        let op = state.operation_idx?;
        let found = state.contract.check_body(op, ct.as_deref(), body);
        state.violations.extend(found.iter().cloned());
        let counted = ContractState {
            contract: state.contract.clone(),
            operation: state.operation.clone(),
            operation_idx: state.operation_idx,
            violations: found,
            body_pending: false,
            typed_args: Vec::new(),
        };
        self.count_violations(&site, &counted);
        let state = ctx.contract.as_ref()?;
        if !state.blocks() {
            return None;
        }
        ctx.block_reason = Some("contract");
        let outcome = crate::openapi::Outcome {
            operation: state.operation_idx,
            violations: state.violations.clone(),
            allow: Vec::new(),
        };
        outcome.status(&state.contract)
    }

    fn count_violations(&self, site: &str, state: &ContractState) {
        for v in &state.violations {
            self.state
                .metrics
                .contract_violations
                .with_label_values(&[site, state.operation.as_str(), v.kind])
                .inc();
        }
        if !state.violations.is_empty() {
            tracing::info!(
                site,
                operation = %state.operation,
                violations = ?state.log_lines(),
                "API contract violated"
            );
        }
    }
}

/// The request's Content-Type, as text.
fn content_type(session: &Session) -> Option<String> {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Writes the problem document for a refused request (`Allow` on a 405).
pub(super) async fn write_problem(
    session: &mut Session,
    ctx: &RequestCtx,
    status: u16,
    allow: &[String],
) -> Result<()> {
    let Some(state) = &ctx.contract else {
        return Ok(());
    };
    let operation = (!state.operation.is_empty()).then_some(state.operation.as_str());
    let body = problem::problem_json(
        status,
        &ctx.request_id,
        operation,
        &state.violations,
        state.contract.expose_violations,
    );
    let mut resp = ResponseHeader::build(status, Some(5))?;
    resp.insert_header("content-type", "application/problem+json")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("x-request-id", ctx.request_id.as_str())?;
    resp.insert_header("cache-control", "no-store")?;
    if status == 405 && !allow.is_empty() {
        resp.insert_header("allow", allow.join(", "))?;
    }
    if status == 401 {
        // RFC 9110 asks a 401 to name a scheme: the operation's `Authorization` one, if any
        // (an API key in a header has no registered scheme to name).
        if let Some(scheme) = state.authorization_scheme() {
            resp.insert_header("www-authenticate", scheme)?;
        }
    }
    super::respond::send(session, resp, Bytes::from(body)).await
}
