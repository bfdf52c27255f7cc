//! The compiled rule plan ([`WafPlan`]) and what evaluating a request against it returns
//! ([`Verdict`], [`RuleMatch`]).
//!
//! The engine has two halves that share nothing but the plan's types, defined here, the way the
//! `regex` crate keeps parsing apart from matching:
//!
//! * compiling, once per rule set: [`WafPlan::from_sources`] and [`WafPlan::load_dir`]. `compile`
//!   reads the rule files and validates every rule (targets, transformations, operator, chained
//!   conditions); `assemble` lays the rules out for evaluation (groups per collection and name,
//!   their prefilter automata, the transformation chains each group needs).
//! * evaluating, once per request: [`WafPlan::evaluate`]. `variables` turns the request into the
//!   variables rules inspect; `evaluate` runs each variable through its collection's groups and
//!   rules, scores the matches and remembers the values it found clean.
//!
//! The plan's structures stay private to this module: only those submodules read them.

use std::collections::BTreeMap;

use aho_corasick::{packed, AhoCorasick};

use super::target::Selector;
use super::transform::{Transform, TransformSet};

mod assemble;
mod compile;
mod evaluate;
mod variables;

pub use evaluate::forget_remembered_values;

/// Immutable compiled rule set. Build once, share via `Arc`, evaluate from any thread.
#[derive(Debug)]
pub struct WafPlan {
    id: u64,
    rules: Vec<Rule>,
    chains: Vec<ChainInfo>,
    groups: Vec<Group>,
    by_slot: Vec<Vec<usize>>,
    metas: Vec<String>,
    meta_kinds: Vec<MetaKind>,
    used: Vec<bool>,
    cookie_header_named: bool,
}

/// Outcome of evaluating one request.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Verdict {
    /// The anomaly score: the severities of the matched rules, added up.
    pub score: u32,
    /// True when the policy is in prevention mode and the score reached the threshold.
    pub blocked: bool,
    /// True when the score reached the threshold (whatever the mode).
    pub over_threshold: bool,
    /// Every rule that matched, in evaluation order.
    pub matches: Vec<RuleMatch>,
    /// The body was sent in a content coding and decoded past the inspection limit: only its
    /// first `body_limit` bytes were inspected (see [`super::encoding`]).
    pub decoded_body_over_limit: bool,
}

/// One rule that matched.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RuleMatch {
    /// The rule's id (CRS numbering: `942100` is an SQL injection rule).
    pub rule_id: u32,
    /// The rule's family: `sqli`, `xss`, `rce`, `lfi`, `protocol`, ...
    pub category: String,
    /// What the rule detects, for people.
    pub message: String,
    /// The points it added to the score (after the policy's overrides).
    pub severity: u32,
    /// The paranoia level the rule belongs to (1-4).
    pub paranoia: u8,
    /// Where it matched, e.g. `ARGS:id` or `REQUEST_HEADERS:User-Agent`.
    pub target: String,
    /// Matched fragment, truncated to about 100 bytes.
    pub data: String,
}

/// Summary information about one rule (for `check` and documentation tools).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RuleInfo {
    /// The rule's id.
    pub id: u32,
    /// Its family (`sqli`, `xss`, ...).
    pub category: String,
    /// Its paranoia level (1-4).
    pub paranoia: u8,
    /// The points a match adds (before a policy's overrides).
    pub severity: u32,
    /// What it detects.
    pub message: String,
    /// Its tags from the rule file.
    pub tags: Vec<String>,
}

impl WafPlan {
    /// Diagnostic summary of the prefilter layout: (slot, chain, patterns, always-run rule ids).
    pub fn prefilter_stats(&self) -> Vec<(usize, usize, usize, Vec<u32>)> {
        let mut out = Vec::new();
        for (slot, gs) in self.by_slot.iter().enumerate() {
            for &g in gs {
                let gr = &self.groups[g];
                let ids = gr
                    .always
                    .iter()
                    .map(|&r| self.rules[r as usize].id)
                    .collect();
                out.push((slot, gr.chains.len(), gr.pat_rules.len(), ids));
            }
        }
        out
    }

    /// How many rules the plan holds.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Rule counts per category, indexed by paranoia level 1..=4 (`[pl1, pl2, pl3, pl4]`).
    pub fn rule_count_by_category_and_pl(&self) -> BTreeMap<String, [usize; 4]> {
        let mut m: BTreeMap<String, [usize; 4]> = BTreeMap::new();
        for r in &self.rules {
            m.entry(r.category.clone()).or_default()[(r.pl.clamp(1, 4) - 1) as usize] += 1;
        }
        m
    }

    /// A summary of every rule, in plan order.
    pub fn rules(&self) -> Vec<RuleInfo> {
        self.rules
            .iter()
            .map(|r| RuleInfo {
                id: r.id,
                category: r.category.clone(),
                paranoia: r.pl,
                severity: r.severity,
                message: r.message.clone(),
                tags: r.tags.clone(),
            })
            .collect()
    }
}

/// One compiled rule: its metadata, its main condition and the chained conditions that must
/// also hold somewhere in the request.
#[derive(Debug)]
struct Rule {
    id: u32,
    message: String,
    category: String,
    pl: u8,
    severity: u32,
    tags: Vec<String>,
    main: Condition,
    chain: Vec<Condition>,
    require_change: bool,
}

/// What a condition inspects (selectors), through which transformation chain (an index into
/// [`WafPlan`]'s chains) and with which operator.
#[derive(Debug)]
struct Condition {
    include: Vec<Selector>,
    exclude: Vec<Selector>,
    chain: usize,
    op: Op,
    negate: bool,
}

/// A condition's operator, compiled.
#[derive(Debug)]
enum Op {
    /// The regex and its first-byte table (see [`first_bytes`](super::prefilter::first_bytes)).
    Rx(regex::bytes::Regex, Option<Box<[bool; 256]>>),
    Pm(AhoCorasick, Vec<String>),
    Contains(String),
    BeginsWith(String),
    EndsWith(String),
    Eq(String),
    Num(NumCmp, i64),
    DetectSqli,
    DetectXss,
    Present,
}

/// The comparison of a numeric operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumCmp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
}

/// One transformation chain; chains are shared by the rules that use the same transformations,
/// and each is its parent chain (one step shorter) plus its last step.
#[derive(Debug)]
struct ChainInfo {
    parent: usize,
    last: Option<Transform>,
    full: Vec<Transform>,
    /// The chain's transformations: a value that none of them may change comes through the
    /// whole chain unchanged ([`may_change_set`](super::transform::may_change_set)).
    set: TransformSet,
}

/// Rules that inspect the same variables, with the prefilter that picks the candidates among them
/// for a value.
#[derive(Debug)]
struct Group {
    /// Only variables with one of these (lowercase) names visit the group; None = every variable
    /// of the slot. Several names share a group when their rules are the same (such as the
    /// spellings of one upload header), so they share one automaton too.
    names: Option<Vec<String>>,
    /// The collection slot whose variables visit the group.
    slot: usize,
    /// Rules on the raw body that also inspect the arguments: they skip a body that parsed cleanly
    /// into arguments, since they already saw its content decoded, field by field.
    skip_parsed_body: bool,
    /// Transform chains used by the rules of this group.
    chains: Vec<usize>,
    /// `chains` plus their prefixes, parents first.
    need_chains: Vec<usize>,
    /// The transformations of all `need_chains`: a value that none of them may change is its
    /// own value under every chain of the group.
    need_set: TransformSet,
    /// Single-byte prefilter literals: (byte, rules) — checked with a byte-presence set instead of
    /// the automaton, since they would otherwise produce a match on every occurrence.
    byte_rules: Vec<(u8, Vec<u32>)>,
    /// The bytes of `byte_rules` as a byte-presence set: a value meets only the byte rules of
    /// the bytes it shares with this set, so the rest are never looked at.
    byte_mask: [u64; 4],
    ac: Option<AhoCorasick>,
    /// For long values: a vectorised search for any of the group's literals, run over the value
    /// in ASCII lowercase. Most long values (whole bodies) contain none, and this rules them out
    /// several times faster than the automaton walks them; where it finds one, the automaton
    /// starts there. Only small groups have one (the packed searcher takes few literals).
    quick: Option<packed::Searcher>,
    pat_rules: Vec<Vec<u32>>,
    always: Vec<u32>,
    /// Every rule of the group, lowest paranoia level first (to decide quickly whether a policy
    /// enables any of them; a group with no enabled rule is skipped entirely).
    members: Vec<u32>,
}

/// Values at least this long are first searched with a group's quick searcher: below it, making
/// the lowercase copy costs about what the automaton saves.
pub(super) const QUICK_SEARCH_MIN_LEN: usize = 64;

/// Pre-parsed meta target (`count:*`, `length:*`).
#[derive(Debug, Clone)]
enum MetaKind {
    CountArgs,
    CountHeaders,
    CountCookies,
    CountFiles,
    CountHeader(String),
    CountArg(String),
    CountCookie(String),
    LengthUri,
    LengthPath,
    LengthQuery,
    LengthBody,
    LengthHeaders,
    LengthArgs,
    Unknown,
}
