//! The replay core: labelled requests scored through the engine, and the rates a rule change is
//! judged by.
//!
//! A [`Case`] is a request with a [`Label`] (attack or benign) and a category; [`replay_cases`]
//! evaluates a corpus of them under one [`Policy`] and counts, overall and per category, how many
//! attacks were caught and how many benign requests passed ([`Report`]); [`time_cases`] measures
//! the engine's time per request. This is what `portcullis replay` and the edge's corpus tests and
//! benchmarks run; reading corpus files (JSONL, go-ftw YAML, payload lists, raw HTTP) and printing
//! the report stay with the `portcullis` command line, which needs file formats this crate has no
//! business knowing.
//!
//! ```
//! use portcullis_waf::replay::{replay_cases, Case, Label};
//! use portcullis_waf::{default_plan, parse_raw_request, Policy};
//!
//! let plan = default_plan().expect("the embedded rule set compiles");
//! let case = |id: &str, label, raw: &str| Case {
//!     id: id.to_string(),
//!     label,
//!     category: "demo".to_string(),
//!     request: parse_raw_request(raw.as_bytes()).expect("a request"),
//!     rule_pl: None,
//! };
//! let cases = [
//!     case("sqli", Label::Attack, "GET /?id=1%27%20OR%20%271%27%3D%271 HTTP/1.1\r\nHost: a\r\n\r\n"),
//!     case("page", Label::Benign, "GET /products?page=2 HTTP/1.1\r\nHost: a\r\n\r\n"),
//! ];
//! let report = replay_cases(&plan, &Policy::default(), &cases, false);
//! assert_eq!((report.overall.caught, report.overall.allowed), (1, 1));
//! ```

use std::collections::BTreeMap;

use crate::{OwnedRequest, Policy, Verdict, WafPlan};

/// What a labelled request is: an attack the engine should block, or benign traffic it should pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    /// Should be blocked (over the anomaly threshold).
    Attack,
    /// Should pass.
    Benign,
}

/// One labelled request.
#[derive(Debug, Clone)]
pub struct Case {
    /// The case's id in its corpus (reported with misses and `--explain`).
    pub id: String,
    /// Attack or benign.
    pub label: Label,
    /// What the rates are broken down by (`sqli`, `942`, `base64/cookie/sqli`, ...).
    pub category: String,
    /// The request itself.
    pub request: OwnedRequest,
    /// Paranoia level of the rule a go-ftw test belongs to, when known.
    pub rule_pl: Option<u8>,
}

/// Counts for one category (or overall).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Attack cases replayed.
    pub attacks: usize,
    /// Attack cases blocked.
    pub caught: usize,
    /// Benign cases replayed.
    pub benign: usize,
    /// Benign cases passed.
    pub allowed: usize,
    /// `caught / attacks` (true-positive rate); None without attacks.
    pub tpr: Option<f64>,
    /// `allowed / benign` (true-negative rate); None without benign cases.
    pub tnr: Option<f64>,
    /// The mean of the two rates (the one there is when only one is).
    pub balanced_accuracy: Option<f64>,
}

impl Stats {
    fn add(&mut self, label: Label, blocked: bool) {
        match label {
            Label::Attack => {
                self.attacks += 1;
                if blocked {
                    self.caught += 1;
                }
            }
            Label::Benign => {
                self.benign += 1;
                if !blocked {
                    self.allowed += 1;
                }
            }
        }
    }

    fn finish(&mut self) {
        self.tpr = (self.attacks > 0).then(|| self.caught as f64 / self.attacks as f64);
        self.tnr = (self.benign > 0).then(|| self.allowed as f64 / self.benign as f64);
        self.balanced_accuracy = match (self.tpr, self.tnr) {
            (Some(a), Some(b)) => Some((a + b) / 2.0),
            (Some(a), None) => Some(a),
            (None, Some(b)) => Some(b),
            _ => None,
        };
    }
}

/// How one case fared.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseResult {
    /// The case's id.
    pub id: String,
    /// Its label.
    pub label: Label,
    /// Its category.
    pub category: String,
    /// Whether the verdict was over the threshold.
    pub blocked: bool,
    /// The anomaly score.
    pub score: u32,
    /// One line per rule that matched: `id [category +severity] message @ target: data`.
    pub matched: Vec<String>,
}

/// The result of [`replay_cases`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// Counts over every case.
    pub overall: Stats,
    /// Counts per category.
    pub categories: BTreeMap<String, Stats>,
    /// False negatives and false positives.
    pub misses: Vec<CaseResult>,
    /// Every case (only filled when asked for, e.g. `--explain`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<CaseResult>,
    /// Engine time per request (only with `--timing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
    /// Blocked benign requests by the family (category) of the rules that matched them, so a
    /// false-positive regression names its rules.
    pub benign_blocked_by_family: BTreeMap<String, FamilyBlocks>,
}

/// Benign requests blocked with rules of one family among their matches.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct FamilyBlocks {
    /// Blocked benign requests that a rule of this family matched.
    pub blocked: usize,
    /// `blocked` as a share of all benign requests replayed.
    pub share: f64,
    /// The same count for each rule of the family.
    pub rules: BTreeMap<u32, usize>,
}

/// Engine time per request over a replay (`--timing`), per label.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Timing {
    /// Passes over the cases; each request's time is its fastest pass.
    pub passes: usize,
    /// Benign requests' times (None when there were none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub benign: Option<TimingStats>,
    /// Attacks' times (None when there were none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attack: Option<TimingStats>,
}

/// Distribution of per-request engine times, in microseconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TimingStats {
    /// Requests timed.
    pub requests: usize,
    /// The median.
    pub median_us: f64,
    /// The 90th percentile.
    pub p90_us: f64,
    /// The 99th percentile.
    pub p99_us: f64,
    /// The slowest.
    pub max_us: f64,
    /// The slowest requests, slowest first: (id, microseconds).
    pub slowest: Vec<(String, f64)>,
}

/// How many of the slowest requests a timing report names.
const SLOWEST_LISTED: usize = 5;

/// Times `plan.evaluate` on every case, `passes` times in corpus order, and keeps each request's
/// fastest time. Every pass starts with no value remembered, so a pass sees the clean-value memory
/// warm up as it does under live traffic; the fastest pass filters out what other processes on the
/// machine cost a request. The regexes' lazy caches stay warm from the pass before, as they are in a
/// running edge.
pub fn time_cases(plan: &WafPlan, policy: &Policy, cases: &[Case], passes: usize) -> Timing {
    let passes = passes.max(1);
    let mut fastest = vec![std::time::Duration::MAX; cases.len()];
    for _ in 0..passes {
        crate::forget_remembered_values();
        for (case, best) in cases.iter().zip(fastest.iter_mut()) {
            let start = std::time::Instant::now();
            let verdict = case.request.with_request(|req| plan.evaluate(req, policy));
            let took = start.elapsed();
            std::hint::black_box(verdict);
            *best = (*best).min(took);
        }
    }
    let stats_of = |label: Label| {
        let mut times: Vec<(f64, &str)> = cases
            .iter()
            .zip(&fastest)
            .filter(|(c, _)| c.label == label)
            .map(|(c, t)| (t.as_secs_f64() * 1e6, c.id.as_str()))
            .collect();
        timing_stats(&mut times)
    };
    Timing {
        passes,
        benign: stats_of(Label::Benign),
        attack: stats_of(Label::Attack),
    }
}

/// Percentiles of `(microseconds, id)` pairs (sorted here); None when there are none.
fn timing_stats(times: &mut [(f64, &str)]) -> Option<TimingStats> {
    if times.is_empty() {
        return None;
    }
    times.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = times.len();
    let at = |q: f64| times[((n as f64 * q) as usize).min(n - 1)].0;
    Some(TimingStats {
        requests: n,
        median_us: at(0.5),
        p90_us: at(0.9),
        p99_us: at(0.99),
        max_us: times[n - 1].0,
        slowest: times
            .iter()
            .rev()
            .take(SLOWEST_LISTED)
            .map(|(t, id)| (id.to_string(), *t))
            .collect(),
    })
}

/// One line per match of a verdict, as [`CaseResult::matched`] lists them.
fn describe(v: &Verdict) -> Vec<String> {
    v.matches
        .iter()
        .map(|m| {
            format!(
                "{} [{} +{}] {} @ {}: {}",
                m.rule_id, m.category, m.severity, m.message, m.target, m.data
            )
        })
        .collect()
}

/// What a check that runs before the WAF (an API contract) decided about a request.
pub enum Gate {
    /// Refused before the WAF ran, for this reason.
    Refused(String),
    /// Passed on to the WAF, with the query arguments the check proved inert
    /// ([`HttpRequest::with_typed_args`](crate::HttpRequest::with_typed_args)).
    Pass(Vec<String>),
}

/// Evaluates every case under `policy` and counts the outcomes by label and category;
/// `keep_all` also keeps each case's result (for `--explain`).
pub fn replay_cases(plan: &WafPlan, policy: &Policy, cases: &[Case], keep_all: bool) -> Report {
    replay_cases_gated(plan, policy, cases, keep_all, &|_| Gate::Pass(Vec::new()))
}

/// [`replay_cases`] with a check before the WAF: a case the gate refuses counts as blocked
/// (its benign refusals under the family `gate`), the others are evaluated as the gate says.
pub fn replay_cases_gated(
    plan: &WafPlan,
    policy: &Policy,
    cases: &[Case],
    keep_all: bool,
    gate: &dyn Fn(&crate::HttpRequest<'_>) -> Gate,
) -> Report {
    let mut r = Report::default();
    for c in cases {
        let (refused, v) = c.request.with_request(|req| match gate(req) {
            Gate::Refused(reason) => (Some(reason), Verdict::default()),
            Gate::Pass(typed) => {
                let names: Vec<&str> = typed.iter().map(String::as_str).collect();
                (None, plan.evaluate(&req.with_typed_args(&names), policy))
            }
        });
        let blocked = refused.is_some() || v.over_threshold;
        r.overall.add(c.label, blocked);
        r.categories
            .entry(c.category.clone())
            .or_default()
            .add(c.label, blocked);
        if c.label == Label::Benign && blocked {
            match &refused {
                Some(_) => {
                    r.benign_blocked_by_family
                        .entry("gate".into())
                        .or_default()
                        .blocked += 1
                }
                None => count_benign_block(&mut r.benign_blocked_by_family, &v),
            }
        }
        let miss = (c.label == Label::Attack) != blocked;
        if miss || keep_all {
            let matched = match refused {
                Some(reason) => vec![format!("refused before the WAF: {reason}")],
                None => describe(&v),
            };
            let cr = CaseResult {
                id: c.id.clone(),
                label: c.label,
                category: c.category.clone(),
                blocked,
                score: v.score,
                matched,
            };
            if miss {
                r.misses.push(cr.clone());
            }
            if keep_all {
                r.results.push(cr);
            }
        }
    }
    r.overall.finish();
    for s in r.categories.values_mut() {
        s.finish();
    }
    let benign = r.overall.benign.max(1) as f64;
    for f in r.benign_blocked_by_family.values_mut() {
        f.share = f.blocked as f64 / benign;
    }
    r
}

/// Counts one blocked benign request against each family and rule that matched it (once each).
fn count_benign_block(by_family: &mut BTreeMap<String, FamilyBlocks>, v: &Verdict) {
    let mut families: Vec<&str> = Vec::new();
    for m in &v.matches {
        let family = by_family.entry(m.category.clone()).or_default();
        *family.rules.entry(m.rule_id).or_default() += 1;
        if !families.contains(&m.category.as_str()) {
            families.push(&m.category);
            family.blocked += 1;
        }
    }
}
