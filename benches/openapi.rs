//! The API contract's cost: routing plus validation of a typical request with a ~1 KiB JSON body
//! (tests/openapi/orders-apim.yaml, and the same request against a generated 500-operation
//! document, where the router has 250 templates to choose from), and compiling that 500-operation
//! document (time, and resident memory added, printed once).
//!
//! `cargo bench --bench openapi`

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::openapi::compile::compile;
use portcullis::openapi::validate::Head;
use portcullis::openapi::{Contract, OpenApiConfig};
use std::hint::black_box;
use std::path::Path;

/// A ~1 KiB order for `createOrder`.
fn order_body() -> String {
    let items: Vec<String> = (1..=24)
        .map(|i| format!(r#"{{"sku":"AB-{:02}","qty":{}}}"#, i, i % 5 + 1))
        .collect();
    format!(
        r#"{{"customer":{{"email":"ada@example.test","name":"Ada Lovelace"}},"items":[{}],"note":"{}"}}"#,
        items.join(","),
        "Please leave the parcel with the neighbour if nobody is home. ".repeat(6)
    )
}

/// An OpenAPI 3.0 document with `paths` templates, each with a GET (path, query parameters) and
/// a POST (a JSON body through `$ref`s into components): 2 x `paths` operations.
fn generated_document(paths: usize) -> String {
    let mut doc = String::from(
        "openapi: 3.0.1\ninfo: {title: big, version: '1'}\nservers: [{url: 'https://gw/big'}]\npaths:\n",
    );
    for i in 0..paths {
        doc.push_str(&format!(
            "  /resource{i}/{{id}}/items:\n    get:\n      operationId: list{i}\n      parameters:\n\
             \x20       - {{name: id, in: path, required: true, schema: {{type: string, format: uuid}}}}\n\
             \x20       - {{name: limit, in: query, schema: {{type: integer, minimum: 1, maximum: 100}}}}\n\
             \x20       - {{name: q, in: query, schema: {{type: string, maxLength: 64}}}}\n\
             \x20     responses: {{'200': {{description: OK}}}}\n\
             \x20   post:\n      operationId: create{i}\n      parameters:\n\
             \x20       - {{name: id, in: path, required: true, schema: {{type: string, format: uuid}}}}\n\
             \x20     requestBody:\n        required: true\n        content:\n\
             \x20         application/json:\n            schema: {{$ref: '#/components/schemas/Item{i}'}}\n\
             \x20     responses: {{'201': {{description: Created}}}}\n"
        ));
    }
    doc.push_str("components:\n  schemas:\n");
    for i in 0..paths {
        doc.push_str(&format!(
            "    Item{i}:\n      type: object\n      required: [name]\n      properties:\n\
             \x20       name: {{type: string, maxLength: 100}}\n\
             \x20       price: {{type: number, minimum: 0}}\n\
             \x20       tags: {{type: array, maxItems: 10, items: {{type: string}}}}\n"
        ));
    }
    doc
}

fn config(document: &Path) -> OpenApiConfig {
    toml::from_str(&format!("document = \"{}\"", document.display())).expect("config")
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

/// Routes and validates a POST with a JSON body; the number of blocking violations.
fn validate(contract: &Contract, path: &str, body: &[u8]) -> usize {
    let headers = vec![
        ("content-type", "application/json"),
        ("host", "api.example.test"),
    ];
    let outcome = contract.check_head(&Head {
        method: "POST",
        path,
        query: None,
        headers,
    });
    let op = outcome.operation.expect("operation");
    outcome.violations.len()
        + contract
            .check_body(op, Some("application/json"), body)
            .len()
}

fn bench(c: &mut Criterion) {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi");
    let orders = compile(&config(&tests.join("orders-apim.yaml")), &tests).expect("orders");
    let body = order_body();
    assert_eq!(validate(&orders, "/orders-api/orders", body.as_bytes()), 0);
    eprintln!("order body: {} bytes", body.len());
    c.bench_function("contract: route + validate a 1 KiB JSON order", |b| {
        b.iter(|| {
            validate(
                &orders,
                black_box("/orders-api/orders"),
                black_box(body.as_bytes()),
            )
        })
    });

    let dir = tempfile::tempdir().expect("dir");
    let big_path = dir.path().join("big.yaml");
    std::fs::write(&big_path, generated_document(250)).expect("write");
    let before = resident_kib();
    let started = std::time::Instant::now();
    let big = compile(&config(&big_path), dir.path()).expect("big");
    eprintln!(
        "500-operation document: compiled in {:.0} ms, resident memory +{} KiB ({} operations)",
        started.elapsed().as_secs_f64() * 1e3,
        resident_kib().saturating_sub(before),
        big.operations.len()
    );
    let item = br#"{"name":"spade","price":12.5,"tags":["garden","tools"]}"#;
    let last = "/big/resource249/3f2c7e1a-1b2c-4d5e-8f90-123456789abc/items";
    assert_eq!(validate(&big, last, item), 0);
    c.bench_function("contract: route + validate among 500 operations", |b| {
        b.iter(|| validate(&big, black_box(last), black_box(item)))
    });
    let mut group = c.benchmark_group("contract compile");
    group.sample_size(10);
    group.bench_function("500-operation document", |b| {
        b.iter(|| compile(&config(&big_path), dir.path()).expect("big"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
