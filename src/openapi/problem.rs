//! The answer to a request that breaks its API's contract: an RFC 9457 problem document
//! (`application/problem+json`) with the request id, and, where the contract allows it
//! (`expose_violations`), the first violations: where, which keyword, why. The reasons are
//! written by the validator from the schema's side; nothing the client sent is echoed, and the
//! document is JSON-encoded.

use super::validate::Violation;

/// Violations listed in one answer at most.
const LISTED: usize = 5;

/// The problem document for a refused request.
pub fn problem_json(
    status: u16,
    request_id: &str,
    operation: Option<&str>,
    violations: &[Violation],
    expose: bool,
) -> String {
    let title = match status {
        404 => "No such API path",
        403 => "Not allowed by the API contract",
        405 => "Method not allowed on this API path",
        415 => "Media type not accepted by this operation",
        _ => "Request does not match the API contract",
    };
    let mut doc = serde_json::json!({
        "type": "https://portcullis.dev/problems/api-contract",
        "title": title,
        "status": status,
        "request_id": request_id,
    });
    if let Some(op) = operation {
        doc["operation"] = op.into();
    }
    if expose {
        let listed: Vec<serde_json::Value> = violations
            .iter()
            .filter(|v| v.blocks)
            .take(LISTED)
            .map(|v| serde_json::json!({"pointer": v.pointer, "keyword": v.keyword, "reason": v.reason}))
            .collect();
        doc["violations"] = listed.into();
    }
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_violations_only_when_exposed() {
        let v = vec![Violation {
            kind: "parameter",
            pointer: "/query/limit".into(),
            keyword: "maximum".into(),
            reason: "is above the maximum of 100".into(),
            blocks: true,
        }];
        let doc: serde_json::Value =
            serde_json::from_str(&problem_json(400, "rid-1", Some("listOrders"), &v, true))
                .unwrap();
        assert_eq!(doc["status"], 400);
        assert_eq!(doc["request_id"], "rid-1");
        assert_eq!(doc["violations"][0]["pointer"], "/query/limit");
        let hidden: serde_json::Value =
            serde_json::from_str(&problem_json(400, "rid-1", None, &v, false)).unwrap();
        assert!(hidden.get("violations").is_none());
    }
}
