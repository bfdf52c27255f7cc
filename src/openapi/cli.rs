//! `portcullis openapi check` and `portcullis openapi learn`.

use super::compile::{compile, Contract, Credential};
use super::learn::{Learner, Observed};
use super::OpenApiConfig;
use anyhow::{anyhow, Context};
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// `portcullis openapi check FILE [--base-path P]`: reads and compiles the document as the edge
/// would, lists its operations and what of it the edge does not enforce; every error with file,
/// line and JSON pointer.
pub fn check_cmd(document: &Path, base_path: Option<String>) -> anyhow::Result<String> {
    let cfg = OpenApiConfig {
        document: document.to_path_buf(),
        base_path,
        mode: Default::default(),
        undeclared: Default::default(),
        not_found_status: 404,
        expose_violations: false,
        waf_skips_typed_values: None,
    };
    let here = std::env::current_dir().unwrap_or_default();
    let contract = compile(&cfg, &here).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("error: {e}")).collect();
        anyhow!("{}", lines.join("\n"))
    })?;
    Ok(describe(document, &contract))
}

fn describe(document: &Path, contract: &Contract) -> String {
    let mut out = String::new();
    let base = if contract.base_path.is_empty() {
        "/"
    } else {
        contract.base_path.as_str()
    };
    let _ = writeln!(
        out,
        "{}: OK, {} operation(s) under {base}",
        document.display(),
        contract.operations.len()
    );
    for op in &contract.operations {
        let params = op.params.len();
        let body = op.body.as_ref().map_or(String::new(), |b| {
            let media: Vec<&str> = b.media.iter().map(|m| m.range.as_str()).collect();
            let required = if b.required { "required " } else { "" };
            format!(", {required}body {}", media.join(" | "))
        });
        let security = if op.security.is_empty() {
            String::new()
        } else {
            let alternatives: Vec<String> = op
                .security
                .iter()
                .map(|checks| {
                    checks
                        .iter()
                        .map(credential_text)
                        .collect::<Vec<_>>()
                        .join(" + ")
                })
                .collect();
            format!(", credentials {}", alternatives.join(" or "))
        };
        let _ = writeln!(
            out,
            "  {:7} {}{}  {}: {params} parameter(s){body}{security}",
            op.method, contract.base_path, op.template.text, op.id
        );
    }
    for note in &contract.notes {
        let _ = writeln!(out, "not enforced: {note}");
    }
    out
}

fn credential_text(c: &Credential) -> String {
    match c {
        Credential::Header(n) => format!("header {n}"),
        Credential::Query(n) => format!("query {n}"),
        Credential::Cookie(n) => format!("cookie {n}"),
        Credential::Authorization(s) => format!("Authorization: {s}"),
    }
}

/// `portcullis openapi learn --from LOG... [-o OUT] [--host H]`: drafts a document from access
/// logs (the edge's JSON lines; `-` is standard input). Lines that are not access-log JSON are
/// counted and skipped.
pub fn learn_cmd(
    logs: &[PathBuf],
    host: Option<&str>,
    out: Option<&Path>,
) -> anyhow::Result<String> {
    let mut learner = Learner::default();
    let mut skipped = 0usize;
    for log in logs {
        let reader: Box<dyn BufRead> = if log.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            let file = std::fs::File::open(log)
                .with_context(|| format!("cannot read {}", log.display()))?;
            Box::new(std::io::BufReader::new(file))
        };
        for line in reader.split(b'\n') {
            let line = line.with_context(|| format!("reading {}", log.display()))?;
            if !learn_line(&mut learner, &line, host) {
                skipped += 1;
            }
        }
    }
    let title = host.unwrap_or("learned API");
    let doc = learner.document(title);
    let yaml = serde_yaml::to_string(&doc).context("writing the document")?;
    let summary = format!(
        "{} request(s) read, {} learned from, {} line(s) skipped; {} path(s)",
        learner.read,
        learner.learned,
        skipped,
        doc["paths"].as_object().map_or(0, |p| p.len())
    );
    match out {
        Some(path) => {
            std::fs::write(path, yaml)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(format!("{summary}; wrote {}", path.display()))
        }
        None => {
            print!("{yaml}");
            eprintln!("{summary}");
            Ok(String::new())
        }
    }
}

/// Feeds one access-log line to the learner; false when it is not one.
fn learn_line(learner: &mut Learner, line: &[u8], host: Option<&str>) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
        return line.iter().all(u8::is_ascii_whitespace);
    };
    let (Some(method), Some(uri), Some(status)) = (
        v["method"].as_str(),
        v["uri"].as_str(),
        v["status"].as_u64(),
    ) else {
        return false;
    };
    if host.is_some_and(|h| {
        !v["host"]
            .as_str()
            .is_some_and(|x| x.eq_ignore_ascii_case(h))
    }) {
        return true;
    }
    learner.observe(&Observed {
        method,
        uri,
        status: u16::try_from(status).unwrap_or(0),
    });
    true
}
