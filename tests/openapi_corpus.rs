//! The API contract and the WAF together, on the project's attack payloads and their benign
//! look-alikes (tests/corpora/evasion/payloads.tsv), each placed in every field of the
//! API Management-style test document (tests/openapi/orders-apim.yaml):
//!
//! * in a field of a closed or constrained type (an enum, an integer, a UUID path segment, an
//!   e-mail, a SKU pattern) every attack is refused by the contract itself, before any signature
//!   runs;
//! * in a free-text field the contract accepts it and the WAF must catch it;
//! * the benign look-alikes in the free-text field pass both.

use portcullis::openapi::compile::compile;
use portcullis::openapi::validate::Head;
use portcullis::openapi::{Contract, OpenApiConfig};
use portcullis::waf::{default_plan, OwnedRequest, Policy, WafPlan};
use std::path::Path;

fn payloads() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpora/evasion/payloads.tsv");
    std::fs::read_to_string(path)
        .expect("payloads")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut cols = l.splitn(3, '\t');
            let label = cols.next()?.to_string();
            let _class = cols.next()?;
            let payload = cols
                .next()?
                .replace("\\r", "\r")
                .replace("\\n", "\n")
                .replace("\\t", "\t");
            Some((label, payload))
        })
        .collect()
}

fn contract() -> Contract {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi");
    let cfg: OpenApiConfig = toml::from_str(&format!(
        "document = \"{}\"",
        dir.join("orders-apim.yaml").display()
    ))
    .expect("config");
    compile(&cfg, &dir).expect("contract")
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Whether the contract refuses a request (head, then a JSON body when given).
fn refused(c: &Contract, method: &str, target: &str, body: Option<&str>) -> bool {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = vec![("content-type", "application/json")];
    let outcome = c.check_head(&Head {
        method,
        path,
        query: (!query.is_empty()).then_some(query),
        headers,
    });
    if outcome.status(c).is_some() {
        return true;
    }
    let found = match (outcome.operation, body) {
        (Some(op), Some(b)) => c.check_body(op, Some("application/json"), b.as_bytes()),
        _ => Vec::new(),
    };
    found.iter().any(|v| v.blocks)
}

fn order(email: &str, sku: &str, note: &str) -> String {
    serde_json::json!({
        "customer": { "email": email, "name": "Ada" },
        "items": [{ "sku": sku, "qty": 1 }],
        "note": note,
    })
    .to_string()
}

/// A payload in each field of a closed or constrained type: the `status` enum, the `limit`
/// integer, the `orderId` UUID and `line` integer path segments, the customer's e-mail and a
/// line's SKU pattern.
fn typed_places(p: &str) -> Vec<(&'static str, String, Option<String>)> {
    let e = pct(p);
    let uuid = "3f2c7e1a-1b2c-4d5e-8f90-123456789abc";
    let post = "/orders-api/orders".to_string();
    vec![
        ("GET", format!("/orders-api/orders?status={e}"), None),
        ("GET", format!("/orders-api/orders?limit={e}"), None),
        ("GET", format!("/orders-api/orders/{e}"), None),
        ("GET", format!("/orders-api/orders/{uuid}/items/{e}"), None),
        ("POST", post.clone(), Some(order(p, "AB-12", ""))),
        ("POST", post, Some(order("a@example.com", p, ""))),
    ]
}

fn waf_blocks(plan: &WafPlan, body: &str) -> bool {
    OwnedRequest::new("POST", "/orders-api/orders", "HTTP/1.1")
        .with_header("Host", "api.example.test")
        .with_header("Content-Type", "application/json")
        .with_body(body.as_bytes())
        .with_request(|r| plan.evaluate(r, &Policy::default()).blocked)
}

#[test]
fn attacks_in_typed_fields_never_pass_the_contract_and_free_text_is_left_to_the_waf() {
    let c = contract();
    let plan = default_plan().expect("rules");
    let (mut attacks, mut caught_in_free_text, mut benign, mut benign_passed) = (0, 0, 0, 0);
    for (label, p) in payloads() {
        if label == "attack" {
            attacks += 1;
            for (method, target, body) in typed_places(&p) {
                assert!(
                    refused(&c, method, &target, body.as_deref()),
                    "the contract let {p:?} through at {method} {target} {body:?}"
                );
            }
            // Free text (`note`, up to 500 characters): the contract passes it to the WAF.
            let body = order("a@example.com", "AB-12", &p);
            if refused(&c, "POST", "/orders-api/orders", Some(&body)) || waf_blocks(&plan, &body) {
                caught_in_free_text += 1;
            } else {
                eprintln!("free text passed: {p:?}");
            }
        } else {
            benign += 1;
            let body = order("a@example.com", "AB-12", &p);
            if !refused(&c, "POST", "/orders-api/orders", Some(&body)) && !waf_blocks(&plan, &body)
            {
                benign_passed += 1;
            } else {
                eprintln!("benign look-alike refused: {p:?}");
            }
        }
    }
    let caught = f64::from(caught_in_free_text) / f64::from(attacks);
    let passed = f64::from(benign_passed) / f64::from(benign);
    eprintln!(
        "{attacks} attacks: all refused by the contract in typed fields; {caught_in_free_text} \
         ({:.1}%) caught in free text. {benign} look-alikes: {benign_passed} ({:.1}%) passed.",
        caught * 100.0,
        passed * 100.0
    );
    assert!(
        attacks >= 80 && benign >= 20,
        "{attacks} attacks, {benign} benign"
    );
    // Floors at the measured values (94 of 95; 42 of 42).
    assert!(caught >= 0.98, "free-text attacks caught {caught:.3}");
    assert_eq!(
        benign_passed, benign,
        "benign look-alikes passed {passed:.3}"
    );
}

/// The same in typed fields with attack collections the project did not write (the libinjection
/// SQLi and XSS payload lists in ../shared/corpora, where present): refused by the contract alone
/// unless the payload happens to be a value of the field's type.
#[test]
fn held_out_attacks_in_typed_fields_never_pass_the_contract() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora/libinjection/data");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("skipped: {} is absent", dir.display());
        return;
    };
    let c = contract();
    let (mut payloads, mut refusals, mut placements) = (0usize, 0usize, 0usize);
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("sqli-") || name.starts_with("xss-")) {
            continue;
        }
        let text = std::fs::read(entry.path()).expect("read");
        for line in String::from_utf8_lossy(&text).lines() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            payloads += 1;
            for (method, target, body) in typed_places(line) {
                placements += 1;
                if refused(&c, method, &target, body.as_deref()) {
                    refusals += 1;
                } else {
                    eprintln!("passed: {method} {target} {body:?}");
                }
            }
        }
    }
    let rate = refusals as f64 / placements.max(1) as f64;
    eprintln!(
        "{payloads} held-out payloads, {placements} placements: {refusals} refused ({:.3}%)",
        rate * 100.0
    );
    assert!(payloads > 1000, "{payloads} payloads read");
    // Measured: 112,761 of 112,764. The three that pass are values of the field's own type: `1--`
    // and `417652--` fit the SKU pattern, `1%0Aand+current_user=@version` is a well-formed
    // address; the WAF still sees them.
    assert!(rate >= 0.9999, "refused {rate:.5}");
}
