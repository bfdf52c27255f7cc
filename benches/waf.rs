//! Engine cost per benign request. Uses the blazehttp benign mix from ../shared/corpora when
//! present, otherwise the project's own corpus (tests/corpora).

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::replay::{load_inputs, Label};
use portcullis::waf::{default_plan, Policy};

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
}

criterion_group!(benches, bench);
criterion_main!(benches);
