//! Replays the project's own labelled corpus (tests/corpora) through the public API and asserts
//! every case individually.

use std::path::PathBuf;

use portcullis::replay::{load_inputs, Label};
use portcullis::waf::{default_plan, Policy};

#[test]
fn project_corpus_every_case() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpora");
    let cases = load_inputs(&[dir]).expect("corpus loads");
    assert!(cases.len() >= 40, "corpus too small: {}", cases.len());
    let plan = default_plan().unwrap_or_else(|e| panic!("default rules: {:?}", e));
    let policy = Policy::default();
    let mut failures = Vec::new();
    for c in &cases {
        let v = c.request.with_request(|r| plan.evaluate(r, &policy));
        let ok = match c.label {
            Label::Attack => v.blocked,
            Label::Benign => !v.blocked,
        };
        if !ok {
            let rules: Vec<String> = v
                .matches
                .iter()
                .map(|m| format!("{}@{}", m.rule_id, m.target))
                .collect();
            failures.push(format!(
                "{} ({:?}, {}): score={} rules={:?}",
                c.id, c.label, c.category, v.score, rules
            ));
        }
    }
    for f in &failures {
        eprintln!("FAIL {}", f);
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases failed",
        failures.len(),
        cases.len()
    );
}

#[test]
fn default_plan_has_every_category() {
    let plan = default_plan().unwrap_or_else(|e| panic!("{:?}", e));
    let by = plan.rule_count_by_category_and_pl();
    for cat in [
        "sqli",
        "xss",
        "lfi",
        "rfi",
        "rce",
        "php",
        "nodejs",
        "ssti",
        "nosql",
        "ldap",
        "ssi",
        "xxe",
        "ssrf",
        "session-fixation",
        "java",
        "shellshock",
        "protocol-enforcement",
        "protocol-attack",
        "scanner",
    ] {
        assert!(by.contains_key(cat), "no rules for category {}", cat);
    }
}
