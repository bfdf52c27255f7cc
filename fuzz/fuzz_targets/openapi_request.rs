//! The API contract's validator on hostile requests: the project's API Management-style test
//! document (tests/openapi/orders-apim.yaml) compiled once, then arbitrary method, path, query,
//! headers, media type and body checked against it (`Contract::check_head`, `check_body`) and
//! the problem document written. Nothing may panic; every violation's pointer stays bounded; the
//! problem document is valid JSON that never holds the request's bytes beyond its pointers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use once_cell::sync::Lazy;
use portcullis::openapi::validate::Head;
use portcullis::openapi::{compile::compile, problem::problem_json, Contract, OpenApiConfig};
use std::path::Path;

static CONTRACT: Lazy<Contract> = Lazy::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/openapi");
    let cfg: OpenApiConfig = toml::from_str(&format!(
        "document = \"{}\"\nexpose_violations = true",
        dir.join("orders-apim.yaml").display()
    ))
    .expect("config");
    compile(&cfg, &dir).expect("the test document compiles")
});

const METHODS: [&str; 6] = ["GET", "POST", "DELETE", "PATCH", "PUT", "get"];
const MEDIA: [&str; 5] = [
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=b",
    "application/merge-patch+json",
    "text/plain",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    // Sections separated by 0xff: target, one header line per section, then the body.
    let mut parts = rest.split(|&b| b == 0xff);
    let target = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let target = format!("/orders-api{target}");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.clone(), None),
    };
    let mut header_text = Vec::new();
    let mut body: &[u8] = &[];
    for part in parts {
        match std::str::from_utf8(part).ok().and_then(|l| l.split_once(':')) {
            Some((n, v)) if header_text.len() < 8 => header_text.push((n.to_string(), v.to_string())),
            _ => body = part,
        }
    }
    let headers: Vec<(&str, &str)> = header_text.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let method = METHODS[usize::from(selector) % METHODS.len()];
    let media = MEDIA[usize::from(selector >> 4) % MEDIA.len()];
    let contract = &*CONTRACT;
    let outcome = contract.check_head(&Head { method, path: &path, query: query.as_deref(), headers });
    let mut violations = outcome.violations.clone();
    if let Some(op) = outcome.operation {
        violations.extend(contract.check_body(op, Some(media), body));
    }
    for v in &violations {
        assert!(v.pointer.len() <= 256, "pointer bounded: {}", v.pointer.len());
    }
    let _ = outcome.status(contract);
    let doc = problem_json(400, "req-1", Some("op"), &violations, true);
    let parsed: serde_json::Value = serde_json::from_str(&doc).expect("problem is JSON");
    assert!(parsed["violations"].as_array().map_or(0, Vec::len) <= 5);
});
