//! Replays the project's own labelled corpus (tests/corpora) through the public API and asserts
//! every case individually.

use std::path::PathBuf;

use portcullis::replay::{load_inputs, Label};
use portcullis::waf::{default_plan, Policy};

#[test]
fn project_corpus_every_case() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpora/project-corpus.jsonl");
    let cases = load_inputs(&[file]).expect("corpus loads");
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

/// `portcullis replay --timing` reports, per label, the engine time of every request (its
/// fastest pass) and names the slowest ones; the numbers themselves depend on the machine and
/// are not asserted, their consistency is.
#[test]
fn replay_timing_reports_every_request_per_label() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpora/project-corpus.jsonl");
    let cases = load_inputs(std::slice::from_ref(&dir)).expect("corpus loads");
    let report = replay_json(&["--timing=2"], &dir);
    let timing = &report["timing"];
    assert_eq!(timing["passes"], 2);
    for (label, want) in [("benign", Label::Benign), ("attack", Label::Attack)] {
        let stats = &timing[label];
        let ids: Vec<&str> = cases
            .iter()
            .filter(|c| c.label == want)
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(stats["requests"], ids.len(), "{label}");
        let us = |k: &str| stats[k].as_f64().unwrap_or_else(|| panic!("{label}.{k}"));
        let (median, p90, p99, max) = (us("median_us"), us("p90_us"), us("p99_us"), us("max_us"));
        assert!(
            0.0 < median && median <= p90 && p90 <= p99 && p99 <= max,
            "{stats}"
        );
        let slowest = stats["slowest"].as_array().expect("slowest list");
        assert_eq!(slowest.len(), ids.len().min(5), "{label}");
        assert_eq!(slowest[0][1].as_f64(), Some(max), "slowest first");
        for entry in slowest {
            let id = entry[0].as_str().unwrap_or_default();
            assert!(ids.contains(&id), "{id} is not a {label} case");
        }
    }
    let report = replay_json(&[], &dir);
    assert!(report.get("timing").is_none(), "no timing unless asked for");
}

/// `portcullis replay --json ARGS DIR`, which must succeed; its report.
fn replay_json(args: &[&str], dir: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["replay", "--json"])
        .args(args)
        .arg(dir)
        .output()
        .expect("portcullis runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

/// The evasion corpus (every payload of tests/corpora/evasion/payloads.tsv through every encoding
/// and placement, `portcullis::evasion`): a deterministic sample of it, one case in four, keeps
/// at least the detection and the benign pass rate measured on the whole set when these floors
/// were last raised. CI replays the whole set with floors per encoding and placement
/// (.ci/replay-evasion.sh).
#[test]
fn evasion_corpus_sample_keeps_its_floors() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpora/evasion/payloads.tsv");
    let cases = load_inputs(&[file]).expect("payload list loads");
    assert!(
        cases.len() > 5000,
        "evasion corpus too small: {}",
        cases.len()
    );
    let sample: Vec<_> = cases.into_iter().step_by(4).collect();
    let plan = default_plan().unwrap_or_else(|e| panic!("default rules: {:?}", e));
    let report = portcullis::replay::replay_cases(&plan, &Policy::default(), &sample, false);
    let (tpr, tnr) = (report.overall.tpr.unwrap(), report.overall.tnr.unwrap());
    assert!(
        tpr >= 0.95,
        "evasion sample: {:.2}% of attacks caught",
        tpr * 100.0
    );
    assert!(
        tnr >= 0.995,
        "evasion sample: {:.2}% of look-alikes passed",
        tnr * 100.0
    );
}

/// tests/corpora/paranoia2.jsonl: what PL2 adds (GraphQL introspection, batching and nesting)
/// is caught at PL2 and not at PL1, and its benign look-alikes pass at both.
#[test]
fn paranoia2_corpus_is_caught_at_pl2_only() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpora/paranoia2.jsonl");
    let cases = load_inputs(&[file]).expect("corpus loads");
    let plan = default_plan().unwrap_or_else(|e| panic!("default rules: {:?}", e));
    for (level, attacks_blocked) in [(1u8, false), (2, true)] {
        let policy = Policy::new(portcullis::waf::Mode::Prevention, level, 5);
        for c in &cases {
            let blocked = c
                .request
                .with_request(|r| plan.evaluate(r, &policy))
                .blocked;
            let want = c.label == Label::Attack && attacks_blocked;
            assert_eq!(blocked, want, "{} at PL{level}", c.id);
        }
    }
}
