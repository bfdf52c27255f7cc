//! Engine cost per benign request. Uses the blazehttp benign mix from ../shared/corpora when
//! present, otherwise the project's own corpus (tests/corpora). Also the two request bodies of
//! `bench/run.sh` (the 4 KiB JSON and the 64 KiB form POST), each evaluated again and again as the
//! edge sees them under that load.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::replay::{load_inputs, Label};
use portcullis::waf::{default_plan, OwnedRequest, Policy};

/// The body of `bench/post_json.lua`.
fn json_order() -> String {
    let items: Vec<String> = (1..=60)
        .map(|i| {
            format!(
                r#"{{"sku":"SKU-{i:05}","qty":{},"note":"gift wrap, deliver after 5pm"}}"#,
                i % 7 + 1
            )
        })
        .collect();
    format!(
        r#"{{"customer":{{"name":"Ada Lovelace","email":"ada@example.test"}},"items":[{}]}}"#,
        items.join(",")
    )
}

/// The body of `bench/post_form.lua`.
fn form_fields() -> String {
    (1..=640)
        .map(|i| format!("field{i:04}={}", "lorem+ipsum+".repeat(7)))
        .collect::<Vec<_>>()
        .join("&")
}

fn post(path: &str, content_type: &str, body: &str) -> OwnedRequest {
    OwnedRequest::new("POST", path, "HTTP/1.1")
        .with_header("Host", "api.example.test")
        .with_header("Content-Type", content_type)
        .with_header("Content-Length", &body.len().to_string())
        .with_body(body.as_bytes())
}

fn bench(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared/corpora/blazehttp-half.jsonl");
    let input = if shared.exists() {
        shared
    } else {
        root.join("tests/corpora")
    };
    let mut cases = load_inputs(&[input]).expect("bench corpus");
    cases.retain(|c| c.label == Label::Benign);
    cases.truncate(2000);
    let plan = default_plan().expect("default rules");
    // As deployed: values that passed every rule before are remembered (per thread) and skipped.
    let policy = Policy::default();
    let mut i = 0usize;
    c.bench_function("waf_evaluate_benign", |b| {
        b.iter(|| {
            let case = &cases[i % cases.len()];
            i += 1;
            case.request.with_request(|r| plan.evaluate(r, &policy))
        })
    });
    // The engine's full cost on every value: nothing remembered.
    let mut uncached = Policy::default();
    uncached.remember_clean_values = false;
    c.bench_function("waf_evaluate_benign_uncached", |b| {
        b.iter(|| {
            let case = &cases[i % cases.len()];
            i += 1;
            case.request.with_request(|r| plan.evaluate(r, &uncached))
        })
    });
    let bodies = [
        (
            "waf_evaluate_json_post_4k",
            post("/api/v1/orders", "application/json", &json_order()),
        ),
        (
            "waf_evaluate_form_post_64k",
            post(
                "/forms/submit",
                "application/x-www-form-urlencoded",
                &form_fields(),
            ),
        ),
    ];
    for (name, request) in &bodies {
        c.bench_function(name, |b| {
            b.iter(|| request.with_request(|r| plan.evaluate(r, &policy)))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
