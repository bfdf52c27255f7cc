//! Offline replay of labelled requests through the WAF engine: `portcullis replay`.
//!
//! Input formats (files or directories, directories are walked recursively):
//! * **JSONL** (`.jsonl`): one object per line with `id`, `label` (`attack`|`benign`), `category`
//!   and either `raw` (base64 of the raw HTTP/1.1 request) or `raw_text` (the raw request as text).
//! * **go-ftw YAML** (`.yaml`, `.yml`): `tests[].stages[].input` (`method`, `uri`, `version`,
//!   `headers`, `data`, or `encoded_request` in base64). A test whose `output.log.expect_ids` is
//!   non-empty is an attack, otherwise benign. The category is the number in the folder name
//!   (`REQUEST-942-APPLICATION-ATTACK-SQLI` -> `942`). A `paranoia-levels.json` (rule id -> PL) in
//!   the input directory or one of its parents gives each test's rule PL (see `--max-rule-pl`).
//! * **Payload lists**: `sqli-*.txt`, `xss-*.txt` (attacks, category `sqli`/`xss`) and
//!   `false_positives.txt` (benign): one payload per line (blank lines and lines starting with `#`
//!   are skipped), sent as `GET /?q=<payload>`.
//! * **Evasion payload lists** (`.tsv`, see [`crate::evasion`]): every payload re-emitted through
//!   each encoding and placement; the category is `encoding/placement/class`.
//! * **Raw HTTP** (`.http`, `.txt`, `.white`, `.black`, `.req`): the label comes from the file name
//!   (`*.white*` benign, `*.black*` attack), else from a first-line comment
//!   `# label: attack category: xss` (removed before parsing), else from the parent directory name
//!   (`benign`/`white`/`good` or `attack`/`black`/`bad`). The category is the comment's `category`
//!   or the parent directory name.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use base64::Engine;

use crate::waf::{default_plan, parse_raw_request, OwnedRequest, Policy, WafPlan};

// The scoring itself (cases, labels, rates, timing) is the WAF crate's replay core; this module
// reads corpora into cases and prints what the core reports.
pub use crate::waf::replay::{
    replay_cases, time_cases, Case, CaseResult, FamilyBlocks, Label, Report, Stats, Timing,
    TimingStats,
};

/// Command-line arguments of `portcullis replay`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReplayArgs {
    /// Rule directory (default: the embedded rule set).
    #[arg(long)]
    pub rulesets: Option<PathBuf>,
    /// Paranoia level 1-4 (default from the policy, else 1).
    #[arg(long)]
    pub paranoia: Option<u8>,
    /// Anomaly threshold (default from the policy, else 5).
    #[arg(long)]
    pub threshold: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// List the rules each request matched.
    #[arg(long)]
    pub explain: bool,
    /// List false negatives and false positives.
    #[arg(long)]
    pub misses: bool,
    /// Only keep go-ftw tests whose rule has at most this paranoia level.
    #[arg(long)]
    pub max_rule_pl: Option<u8>,
    /// Also measure the engine's time per request: the fastest of N passes (default 3) over the
    /// cases in order, each pass starting with nothing remembered, on one thread (`--timing=5`
    /// for five passes).
    #[arg(
        long,
        value_name = "PASSES",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "3"
    )]
    pub timing: Option<usize>,
    /// Only keep cases whose category starts with one of these (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub categories: Vec<String>,
    /// Input files or directories.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

/// Load every case from the given files/directories.
pub fn load_inputs(paths: &[PathBuf]) -> Result<Vec<Case>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files = Vec::new();
            walk(p, &mut files, 0);
            files.sort();
            for f in files {
                // Inside a directory, unreadable or unlabelled files are skipped with a warning.
                if let Err(e) = load_file(&f, &mut out) {
                    eprintln!("warning: skipping {}: {:#}", f.display(), e);
                }
            }
        } else {
            load_file(p, &mut out).with_context(|| format!("reading {}", p.display()))?;
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > 16 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out, depth + 1);
        } else {
            out.push(p);
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn load_file(p: &Path, out: &mut Vec<Case>) -> Result<()> {
    let name = file_name(p);
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".jsonl") {
        return load_jsonl(p, out);
    }
    if lower.ends_with(".tsv") {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let payloads = crate::evasion::parse_payloads(&text)
            .with_context(|| format!("{}: evasion payload list", p.display()))?;
        out.extend(crate::evasion::generate(&payloads));
        return Ok(());
    }
    if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        return load_ftw(p, out);
    }
    if lower.ends_with(".txt")
        && (lower.starts_with("sqli-")
            || lower.starts_with("xss-")
            || lower == "false_positives.txt")
    {
        return load_payload_list(p, out);
    }
    let is_http = [".http", ".txt", ".white", ".black", ".req"]
        .iter()
        .any(|e| lower.ends_with(e))
        || lower.contains(".white.")
        || lower.contains(".black.");
    if is_http {
        return load_http(p, out);
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct JsonCase {
    #[serde(default)]
    id: Option<String>,
    label: String,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    raw: Option<String>,
    #[serde(default)]
    raw_text: Option<String>,
}

fn parse_label(s: &str) -> Option<Label> {
    match s.trim().to_ascii_lowercase().as_str() {
        "attack" | "black" | "malicious" | "bad" | "true_positive" => Some(Label::Attack),
        "benign" | "white" | "good" | "clean" | "false_positive" => Some(Label::Benign),
        _ => None,
    }
}

fn load_jsonl(p: &Path, out: &mut Vec<Case>) -> Result<()> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let jc: JsonCase = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: bad JSON", p.display(), n + 1))?;
        let label = parse_label(&jc.label)
            .ok_or_else(|| anyhow!("{}:{}: unknown label {:?}", p.display(), n + 1, jc.label))?;
        let raw: Vec<u8> = match (jc.raw, jc.raw_text) {
            (Some(b), _) => base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .with_context(|| format!("{}:{}: bad base64", p.display(), n + 1))?,
            (None, Some(t)) => t.into_bytes(),
            (None, None) => return Err(anyhow!("{}:{}: need raw or raw_text", p.display(), n + 1)),
        };
        let request =
            parse_raw_request(&raw).map_err(|e| anyhow!("{}:{}: {}", p.display(), n + 1, e))?;
        out.push(Case {
            id: jc
                .id
                .unwrap_or_else(|| format!("{}:{}", file_name(p), n + 1)),
            label,
            category: jc.category.unwrap_or_else(|| "uncategorized".to_string()),
            request,
            rule_pl: None,
        });
    }
    Ok(())
}

fn find_pl_map(p: &Path) -> HashMap<u32, u8> {
    let mut dir = p.parent();
    for _ in 0..4 {
        let Some(d) = dir else { break };
        let f = d.join("paranoia-levels.json");
        if let Ok(t) = std::fs::read_to_string(&f) {
            if let Ok(m) = serde_json::from_str::<HashMap<String, u8>>(&t) {
                return m
                    .into_iter()
                    .filter_map(|(k, v)| k.parse().ok().map(|k| (k, v)))
                    .collect();
            }
        }
        dir = d.parent();
    }
    HashMap::new()
}

fn category_from_path(p: &Path) -> String {
    for comp in p.ancestors().skip(1) {
        let n = file_name(comp);
        if let Some(rest) = n
            .strip_prefix("REQUEST-")
            .or_else(|| n.strip_prefix("RESPONSE-"))
        {
            let num: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            if !num.is_empty() {
                return num;
            }
        }
    }
    p.parent()
        .map(file_name)
        .unwrap_or_else(|| "uncategorized".to_string())
}

fn yaml_str(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn load_ftw(p: &Path, out: &mut Vec<Case>) -> Result<()> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    let doc: serde_yaml::Value = match serde_yaml::from_str(&text) {
        Ok(d) => d,
        Err(e) => return Err(anyhow!("{}: bad YAML: {}", p.display(), e)),
    };
    let Some(tests) = doc.get("tests").and_then(|t| t.as_sequence()) else {
        return Ok(());
    };
    let category = category_from_path(p);
    let pl_map = find_pl_map(p);
    let file_rule: Option<u32> = doc
        .get("rule_id")
        .and_then(|v| v.as_u64())
        .map(|v| v as u32);
    for (ti, t) in tests.iter().enumerate() {
        let test_id = t
            .get("test_id")
            .and_then(yaml_str)
            .unwrap_or_else(|| (ti + 1).to_string());
        let Some(stages) = t.get("stages").and_then(|s| s.as_sequence()) else {
            continue;
        };
        for (si, st) in stages.iter().enumerate() {
            let st = st.get("stage").unwrap_or(st);
            let Some(input) = st.get("input") else {
                continue;
            };
            let expect = st
                .get("output")
                .and_then(|o| o.get("log").or(Some(o)))
                .and_then(|l| l.get("expect_ids"))
                .and_then(|e| e.as_sequence())
                .map(|s| !s.is_empty())
                .unwrap_or(false);
            let req = match ftw_request(input) {
                Ok(r) => r,
                Err(_) => continue,
            };
            let rule_id = file_rule.or_else(|| file_name(p).trim_end_matches(".yaml").parse().ok());
            let rule_pl = rule_id.and_then(|r| pl_map.get(&r).copied());
            out.push(Case {
                id: format!(
                    "{}#{}{}",
                    file_name(p).trim_end_matches(".yaml"),
                    test_id,
                    if stages.len() > 1 {
                        format!(".{}", si + 1)
                    } else {
                        String::new()
                    }
                ),
                label: if expect { Label::Attack } else { Label::Benign },
                category: category.clone(),
                request: req,
                rule_pl,
            });
        }
    }
    Ok(())
}

fn ftw_request(input: &serde_yaml::Value) -> Result<OwnedRequest> {
    if let Some(enc) = input.get("encoded_request").and_then(yaml_str) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(enc.trim().replace(['\n', ' '], ""))
            .map_err(|e| anyhow!("bad encoded_request: {}", e))?;
        return parse_raw_request(&raw).map_err(|e| anyhow!(e));
    }
    let method = input
        .get("method")
        .and_then(yaml_str)
        .unwrap_or_else(|| "GET".to_string());
    let uri = input
        .get("uri")
        .and_then(yaml_str)
        .unwrap_or_else(|| "/".to_string());
    let version = input
        .get("version")
        .and_then(yaml_str)
        .unwrap_or_else(|| "HTTP/1.1".to_string());
    let mut req = OwnedRequest::new(&method, &uri, &version);
    if let Some(h) = input.get("headers") {
        if let Some(m) = h.as_mapping() {
            for (k, v) in m {
                if let (Some(k), Some(v)) = (yaml_str(k), yaml_str(v)) {
                    req.headers.push((k, v.into_bytes()));
                }
            }
        } else if let Some(seq) = h.as_sequence() {
            for e in seq {
                if let (Some(k), Some(v)) = (
                    e.get("name").and_then(yaml_str),
                    e.get("value").and_then(yaml_str),
                ) {
                    req.headers.push((k, v.into_bytes()));
                }
            }
        }
    }
    if let Some(d) = input.get("data").and_then(yaml_str) {
        req.body = d.into_bytes();
    }
    Ok(req)
}

fn load_payload_list(p: &Path, out: &mut Vec<Case>) -> Result<()> {
    let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let name = file_name(p).to_ascii_lowercase();
    let (label, category) = if name.starts_with("sqli-") {
        (Label::Attack, "sqli")
    } else if name.starts_with("xss-") {
        (Label::Attack, "xss")
    } else {
        (Label::Benign, "false_positives")
    };
    for (n, line) in text.lines().enumerate() {
        // Blank lines and `#` comment lines are not payloads.
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let enc: String =
            percent_encoding::utf8_percent_encode(line, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        let req = OwnedRequest::new("GET", &format!("/?q={}", enc), "HTTP/1.1")
            .with_header("Host", "localhost")
            .with_header("User-Agent", "Mozilla/5.0 (replay)")
            .with_header("Accept", "*/*");
        out.push(Case {
            id: format!("{}:{}", file_name(p), n + 1),
            label,
            category: category.to_string(),
            request: req,
            rule_pl: None,
        });
    }
    Ok(())
}

fn load_http(p: &Path, out: &mut Vec<Case>) -> Result<()> {
    let mut raw = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    let name = file_name(p).to_ascii_lowercase();
    let parent = p.parent().map(file_name).unwrap_or_default();
    let mut label = if name.ends_with(".white") || name.contains(".white.") {
        Some(Label::Benign)
    } else if name.ends_with(".black") || name.contains(".black.") {
        Some(Label::Attack)
    } else {
        None
    };
    let mut category: Option<String> = None;
    if raw.starts_with(b"#") {
        let end = raw.iter().position(|&b| b == b'\n').unwrap_or(raw.len());
        let line = String::from_utf8_lossy(&raw[1..end]).to_string();
        let words: Vec<&str> = line.split_whitespace().collect();
        for w in words.windows(2) {
            match w[0].trim_end_matches(':') {
                "label" => label = label.or_else(|| parse_label(w[1])),
                "category" => category = Some(w[1].to_string()),
                _ => {}
            }
        }
        raw.drain(..(end + 1).min(raw.len()));
    }
    let label = label
        .or_else(|| {
            let d = parent.to_ascii_lowercase();
            if d.contains("benign") || d.contains("white") || d.contains("good") {
                Some(Label::Benign)
            } else if d.contains("attack") || d.contains("black") || d.contains("bad") {
                Some(Label::Attack)
            } else {
                None
            }
        })
        .ok_or_else(|| anyhow!("{}: no label (use .white/.black, a '# label: ...' line or a benign/attack directory)", p.display()))?;
    let request = parse_raw_request(&raw).map_err(|e| anyhow!("{}: {}", p.display(), e))?;
    out.push(Case {
        id: file_name(p),
        label,
        category: category.unwrap_or(parent),
        request,
        rule_pl: None,
    });
    Ok(())
}

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{:.2}%", v * 100.0))
        .unwrap_or_else(|| "-".to_string())
}

/// Print a human-readable report.
pub fn print_report(r: &Report, explain: bool, misses: bool) {
    println!(
        "{:<28} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9}",
        "category", "attacks", "caught", "TPR", "benign", "allowed", "TNR", "bal.acc"
    );
    let line = |name: &str, s: &Stats| {
        println!(
            "{:<28} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9}",
            name,
            s.attacks,
            s.caught,
            pct(s.tpr),
            s.benign,
            s.allowed,
            pct(s.tnr),
            pct(s.balanced_accuracy)
        );
    };
    for (c, s) in &r.categories {
        line(c, s);
    }
    line("OVERALL", &r.overall);
    if explain {
        println!("\n# matches per request");
        for c in &r.results {
            println!(
                "{} [{:?} {}] score={} blocked={}",
                c.id, c.label, c.category, c.score, c.blocked
            );
            for m in &c.matched {
                println!("    {}", m);
            }
        }
    }
    if !r.benign_blocked_by_family.is_empty() {
        print_benign_blocks(&r.benign_blocked_by_family);
    }
    if let Some(t) = &r.timing {
        print_timing(t);
    }
    if misses {
        println!("\n# misses (false negatives and false positives)");
        for c in &r.misses {
            let kind = if c.label == Label::Attack { "FN" } else { "FP" };
            println!("{} {} [{}] score={}", kind, c.id, c.category, c.score);
            for m in &c.matched {
                println!("    {}", m);
            }
        }
    }
}

fn print_benign_blocks(by_family: &BTreeMap<String, FamilyBlocks>) {
    println!("\n# benign requests blocked, by rule family (share of all benign) and rule");
    let mut families: Vec<(&String, &FamilyBlocks)> = by_family.iter().collect();
    families.sort_by(|a, b| b.1.blocked.cmp(&a.1.blocked).then(a.0.cmp(b.0)));
    for (name, f) in families {
        let mut rules: Vec<(&u32, &usize)> = f.rules.iter().collect();
        rules.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let rules: Vec<String> = rules.iter().map(|(id, n)| format!("{id}: {n}")).collect();
        println!(
            "{:<24} {:>6} {:>8}   {}",
            name,
            f.blocked,
            format!("{:.3}%", f.share * 100.0),
            rules.join(", ")
        );
    }
}

fn print_timing(t: &Timing) {
    println!(
        "\n# engine time per request, microseconds (fastest of {} passes, one thread)",
        t.passes
    );
    println!(
        "{:<8} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "label", "requests", "median", "p90", "p99", "max"
    );
    for (label, stats) in [("benign", &t.benign), ("attack", &t.attack)] {
        let Some(s) = stats else { continue };
        println!(
            "{:<8} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            label, s.requests, s.median_us, s.p90_us, s.p99_us, s.max_us
        );
    }
    for (label, stats) in [("benign", &t.benign), ("attack", &t.attack)] {
        let Some(s) = stats else { continue };
        let list: Vec<String> = s
            .slowest
            .iter()
            .map(|(id, us)| format!("{id} ({us:.0})"))
            .collect();
        println!("slowest {label}: {}", list.join(", "));
    }
}

/// Run `portcullis replay`. `policy` comes from `-c CONFIG` when the CLI has one; flags override it.
pub fn run_with_policy(args: ReplayArgs, policy: Option<Policy>) -> Result<i32> {
    run_with_contracts(args, policy, &[])
}

/// [`run_with_policy`] with API contracts checked before the WAF (`portcullis replay -c` with a
/// configuration whose sites name OpenAPI documents).
pub fn run_with_contracts(
    args: ReplayArgs,
    policy: Option<Policy>,
    contracts: &[std::sync::Arc<crate::openapi::Contract>],
) -> Result<i32> {
    let plan = match &args.rulesets {
        Some(d) => WafPlan::load_dir(d),
        None => default_plan(),
    }
    .map_err(|errs| {
        anyhow!(
            "rule load errors:\n{}",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    let mut policy = policy.unwrap_or_default();
    if let Some(p) = args.paranoia {
        if !(1..=4).contains(&p) {
            return Err(anyhow!("--paranoia must be 1..=4"));
        }
        policy.paranoia_level = p;
    }
    if let Some(t) = args.threshold {
        policy.anomaly_threshold = t.max(1);
    }
    let mut cases = load_inputs(&args.inputs)?;
    if let Some(m) = args.max_rule_pl {
        cases.retain(|c| c.label == Label::Benign || c.rule_pl.map(|p| p <= m).unwrap_or(true));
    }
    if !args.categories.is_empty() {
        cases.retain(|c| {
            args.categories
                .iter()
                .any(|p| c.category.starts_with(p.as_str()))
        });
    }
    let mut report = if contracts.is_empty() {
        replay_cases(&plan, &policy, &cases, args.explain)
    } else {
        let gate = |req: &crate::waf::HttpRequest<'_>| crate::openapi::replay::gate(contracts, req);
        crate::waf::replay::replay_cases_gated(&plan, &policy, &cases, args.explain, &gate)
    };
    if let Some(passes) = args.timing {
        report.timing = Some(time_cases(&plan, &policy, &cases, passes));
    }
    if args.json {
        let mut r = report;
        if !args.misses {
            r.misses.clear();
        }
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_report(&report, args.explain, args.misses);
    }
    Ok(0)
}

pub fn run(args: ReplayArgs) -> Result<i32> {
    run_with_policy(args, None)
}
