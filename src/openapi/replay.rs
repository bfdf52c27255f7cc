//! API contracts in `portcullis replay`: a labelled request is checked against the contract
//! that covers its path before the WAF sees it, as the edge does, so a corpus can be replayed
//! against a contract-guarded API (`portcullis replay -c CONFIG`).

use super::validate::Head;
use super::{Contract, ContractMode};
use crate::waf::replay::Gate;
use crate::waf::HttpRequest;
use std::sync::Arc;

/// The contracts' decision on one request: refused (in prevention), or passed on with the query
/// parameters the contract proved inert.
pub fn gate(contracts: &[Arc<Contract>], req: &HttpRequest<'_>) -> Gate {
    let (path, query) = req.uri.split_once('?').unwrap_or((req.uri, ""));
    let Some(contract) = contracts
        .iter()
        .find(|c| c.mode != ContractMode::Off && c.covers(path))
    else {
        return Gate::Pass(Vec::new());
    };
    let headers: Vec<(&str, &str)> = req
        .headers
        .iter()
        .filter_map(|(n, v)| Some((*n, std::str::from_utf8(v).ok()?)))
        .collect();
    let content_type = req
        .header("content-type")
        .and_then(|v| std::str::from_utf8(v).ok());
    let outcome = contract.check_head(&Head {
        method: req.method,
        path,
        query: (!query.is_empty()).then_some(query),
        headers,
    });
    let mut violations = outcome.violations;
    if let Some(op) = outcome.operation {
        if !violations.iter().any(|v| v.blocks) {
            violations.extend(contract.check_body(op, content_type, req.body));
        }
    }
    let blocking: Vec<String> = violations
        .iter()
        .filter(|v| v.blocks)
        .map(|v| format!("{} {} {}", v.kind, v.pointer, v.keyword))
        .collect();
    if contract.mode == ContractMode::Prevention && !blocking.is_empty() {
        return Gate::Refused(format!("API contract: {}", blocking.join(", ")));
    }
    match (outcome.operation, violations.is_empty()) {
        (Some(op), true) if contract.waf_skips_typed_values => Gate::Pass(
            contract
                .closed_query_params(op)
                .map(str::to_string)
                .collect(),
        ),
        _ => Gate::Pass(Vec::new()),
    }
}
