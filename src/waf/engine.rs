//! Compiled rule plan and request evaluation.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use aho_corasick::{packed, AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use super::body::{
    body_text, parse_body, parse_urlencoded_into, request_text, Arg, ParsedBody, MAX_BODY_ARGS,
    MAX_JSON_LEAVES,
};
use super::clean_cache;
use super::encoding;
use super::policy::{Exclusion, Mode, Policy};
use super::prefilter::{first_bytes, required_literals};
use super::request::HttpRequest;
use super::rules::{
    line_of, parse_phrase_file, parse_rule_file, resolve_data, OperatorDef, RuleLoadError,
};
use super::target::{
    is_meta, parse_selector, validate_meta, Coll, NameMatch, Selector, N_FIXED_COLLS,
};
use super::transform::{
    apply_chain, base64_text, byte_set, chain_set, scan_value, url_decode_once, Transform,
    TransformSet, N_TRANSFORMS,
};

/// Maximum bytes of matched data kept in a [`RuleMatch`].
const DATA_MAX: usize = 100;
/// Maximum number of variables extracted from one request.
/// Most variables built from one request: every argument (name and value) of the largest query,
/// form and JSON document the body parsers return, with room for headers, cookies and the rest.
const MAX_VARS: usize = 2 * (MAX_JSON_LEAVES + 2 * MAX_BODY_ARGS) + 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumCmp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
}

#[derive(Debug)]
enum Op {
    /// The regex and its first-byte table (see [`first_bytes`]).
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

fn truncate(s: &str) -> String {
    if s.len() <= DATA_MAX {
        return s.to_string();
    }
    let mut end = DATA_MAX;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

fn sqli_candidate(v: &str) -> bool {
    v.bytes()
        .any(|b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b >= 0x80))
}

impl Op {
    /// Some(matched data) when the operator matches.
    fn run(&self, v: &str) -> Option<String> {
        match self {
            Op::Rx(r, fb) => {
                if let Some(fb) = fb {
                    // No byte a match could start with: the regex cannot match.
                    if !v.bytes().any(|b| fb[b as usize]) {
                        return None;
                    }
                }
                r.find(v.as_bytes())
                    .map(|m| truncate(&String::from_utf8_lossy(m.as_bytes())))
            }
            Op::Pm(ac, phrases) => ac.find(v).map(|m| {
                truncate(
                    phrases
                        .get(m.pattern().as_usize())
                        .map(|s| s.as_str())
                        .unwrap_or(""),
                )
            }),
            Op::Contains(s) => v.contains(s.as_str()).then(|| truncate(s)),
            Op::BeginsWith(s) => v.starts_with(s.as_str()).then(|| truncate(s)),
            Op::EndsWith(s) => v.ends_with(s.as_str()).then(|| truncate(s)),
            Op::Eq(s) => (v == s).then(|| truncate(v)),
            Op::Num(cmp, n) => {
                let x: i64 = v.trim().parse().ok()?;
                let ok = match cmp {
                    NumCmp::Gt => x > *n,
                    NumCmp::Ge => x >= *n,
                    NumCmp::Lt => x < *n,
                    NumCmp::Le => x <= *n,
                    NumCmp::Eq => x == *n,
                };
                ok.then(|| v.to_string())
            }
            Op::DetectSqli => {
                if !sqli_candidate(v) {
                    return None;
                }
                super::detect::detect_sqli(v)
                    .map(|fp| format!("fingerprint {} in {}", fp, truncate(v)))
            }
            Op::DetectXss => {
                if !sqli_candidate(v) {
                    return None;
                }
                super::detect::detect_xss(v).then(|| truncate(v))
            }
            Op::Present => Some(truncate(v)),
        }
    }

    fn literals(&self) -> Option<Vec<String>> {
        match self {
            Op::Rx(r, _) => required_literals(r.as_str()),
            Op::Pm(_, p) => {
                if p.iter().all(|s| !s.is_empty()) {
                    Some(p.iter().map(|s| s.to_lowercase()).collect())
                } else {
                    None
                }
            }
            Op::Contains(s) | Op::BeginsWith(s) | Op::EndsWith(s) | Op::Eq(s) if !s.is_empty() => {
                Some(vec![s.to_lowercase()])
            }
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Condition {
    include: Vec<Selector>,
    exclude: Vec<Selector>,
    chain: usize,
    op: Op,
    negate: bool,
}

impl Condition {
    #[inline]
    fn selects(&self, coll: Coll, name: &str) -> bool {
        self.include
            .iter()
            .any(|s| s.coll == coll && s.name.matches(name))
            && !self
                .exclude
                .iter()
                .any(|s| s.coll == coll && s.name.matches(name))
    }

    #[inline]
    fn eval(&self, v: &str) -> Option<String> {
        match (self.op.run(v), self.negate) {
            (Some(d), false) => Some(d),
            (None, true) => Some(truncate(v)),
            _ => None,
        }
    }
}

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

#[derive(Debug)]
struct ChainInfo {
    parent: usize,
    last: Option<Transform>,
    full: Vec<Transform>,
    /// The chain's transformations: a value that none of them may change comes through the
    /// whole chain unchanged ([`may_change_set`](super::transform::may_change_set)).
    set: TransformSet,
}

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

/// Summary information about one rule (for `check` and documentation tools).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleInfo {
    pub id: u32,
    pub category: String,
    pub paranoia: u8,
    pub severity: u32,
    pub message: String,
    pub tags: Vec<String>,
}

/// What trying one rule on one variable decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tried {
    /// The rule cannot match this variable (name, policy or operator said no).
    NoMatch,
    Matched,
    /// The answer depended on more than the variable itself (the rule had already matched in
    /// this request, a chained condition or an exclusion decided): not a fact about the value.
    Contextual,
}

/// Source of [`WafPlan`] ids: each compiled plan gets its own, so per-thread memories keyed by
/// plan (see [`clean_cache`]) never mix a reloaded rule set with an older one.
static NEXT_PLAN_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

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

/// One rule that matched.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleMatch {
    pub rule_id: u32,
    pub category: String,
    pub message: String,
    pub severity: u32,
    pub paranoia: u8,
    /// Where it matched, e.g. `ARGS:id` or `REQUEST_HEADERS:User-Agent`.
    pub target: String,
    /// Matched fragment, truncated to about 100 bytes.
    pub data: String,
}

/// Outcome of evaluating one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    pub score: u32,
    /// True when the policy is in prevention mode and the score reached the threshold.
    pub blocked: bool,
    /// True when the score reached the threshold (whatever the mode).
    pub over_threshold: bool,
    pub matches: Vec<RuleMatch>,
    /// The body was sent in a content coding and decoded past the inspection limit: only its
    /// first `body_limit` bytes were inspected (see [`super::encoding`]).
    pub decoded_body_over_limit: bool,
}

/// A variable extracted from the request.
#[derive(Debug, Clone)]
struct Var<'a> {
    coll: Coll,
    name: Cow<'a, str>,
    value: Cow<'a, str>,
}

/// Per-variable transformed value of one chain.
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

impl MetaKind {
    fn parse(m: &str) -> MetaKind {
        let parts: Vec<&str> = m.splitn(3, ':').collect();
        match (
            parts.first().copied().unwrap_or(""),
            parts.get(1).copied().unwrap_or(""),
            parts.get(2),
        ) {
            ("count", "args", None) => MetaKind::CountArgs,
            ("count", "headers", None) => MetaKind::CountHeaders,
            ("count", "cookies", None) => MetaKind::CountCookies,
            ("count", "files", None) => MetaKind::CountFiles,
            ("count", "headers", Some(n)) => MetaKind::CountHeader(n.to_string()),
            ("count", "args", Some(n)) => MetaKind::CountArg(n.to_string()),
            ("count", "cookies", Some(n)) => MetaKind::CountCookie(n.to_string()),
            ("length", "uri", _) => MetaKind::LengthUri,
            ("length", "path", _) => MetaKind::LengthPath,
            ("length", "query", _) => MetaKind::LengthQuery,
            ("length", "body", _) => MetaKind::LengthBody,
            ("length", "headers", _) => MetaKind::LengthHeaders,
            ("length", "args", _) => MetaKind::LengthArgs,
            _ => MetaKind::Unknown,
        }
    }
}

#[derive(Clone)]
enum Slot {
    /// Same as the raw value.
    Raw,
    /// A value this chain produced.
    Owned(String),
    /// Same value as the (Owned) slot of another chain.
    Ref(usize),
}

/// The arguments of a request, parsed once; [`Ctx`]'s variables borrow them.
struct Inputs<'a> {
    target: Target<'a>,
    query: Vec<Arg<'a>>,
    body: ParsedBody<'a>,
}

/// A request-target in its pieces: the host of an absolute form (empty for the origin form),
/// the path, and the query after the first `?`.
struct Target<'a> {
    host: &'a str,
    path: &'a str,
    query: Option<&'a str>,
}

impl<'a> Target<'a> {
    fn split(uri: &'a str) -> Target<'a> {
        let (host, path_part) = match uri
            .strip_prefix("http://")
            .or_else(|| uri.strip_prefix("https://"))
        {
            Some(rest) => rest.split_at(rest.find('/').unwrap_or(rest.len())),
            None => ("", uri),
        };
        let (path, query) = match path_part.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_part, None),
        };
        Target { host, path, query }
    }
}

/// Parses the query string and the body. The variables borrow the result, so a JSON body's
/// hundreds of names and values are neither copied nor freed one by one.
/// An argument or cookie whose value is base64 as a whole is also inspected as the text it
/// decodes to (see [`base64_text`]), under the same collection and name, so every rule, selector
/// and exclusion that applies to the value applies to what an application decoding it would
/// read: an attack sent in base64 meets the same rules as one sent plain. Not header values: no
/// application decodes its `User-Agent`, and SDK headers in base64 decode to binary with line
/// breaks that header-syntax rules would take for injections.
fn push_base64_view<'b>(vars: &mut Vec<Var<'b>>, coll: Coll, name: &str, value: &str) {
    if vars.len() >= MAX_VARS {
        return;
    }
    if let Some(text) = base64_text(value) {
        vars.push(Var {
            coll,
            name: Cow::Owned(name.to_string()),
            value: Cow::Owned(text),
        });
    }
}

/// `bytes` without the given (ascending, disjoint) ranges.
fn without_ranges(bytes: &[u8], ranges: &[std::ops::Range<usize>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut from = 0;
    for r in ranges {
        let start = r.start.min(bytes.len());
        out.extend_from_slice(&bytes[from.min(start)..start]);
        from = from.max(r.end.min(bytes.len()));
    }
    out.extend_from_slice(&bytes[from..]);
    out
}

fn parse_inputs<'a>(req: &HttpRequest<'a>) -> Inputs<'a> {
    let mut query = Vec::new();
    let target = Target::split(req.uri);
    if let Some(q) = target.query {
        parse_urlencoded_into(q.split('#').next().unwrap_or(q), &mut query);
    }
    let content_type = req
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| request_text(v));
    Inputs {
        target,
        query,
        body: parse_body(content_type.as_deref(), req.body, req.body_truncated),
    }
}

struct Ctx<'a> {
    vars: Vec<Var<'a>>,
    host: String,
    path: String,
    /// The body was urlencoded or JSON and parsed without error: all of it is in the arguments.
    body_parsed: bool,
}

fn err(
    file: &str,
    id: Option<u32>,
    key: &str,
    line: Option<usize>,
    msg: impl Into<String>,
) -> RuleLoadError {
    RuleLoadError {
        file: file.to_string(),
        rule_id: id,
        key: Some(key.to_string()),
        line,
        message: msg.into(),
    }
}

struct Builder {
    chains: Vec<ChainInfo>,
    chain_ids: HashMap<Vec<Transform>, usize>,
    metas: Vec<String>,
}

impl Builder {
    fn chain_id(&mut self, full: &[Transform]) -> usize {
        if let Some(&id) = self.chain_ids.get(full) {
            return id;
        }
        let parent = if full.is_empty() {
            0
        } else {
            self.chain_id(&full[..full.len() - 1])
        };
        let id = self.chains.len();
        self.chains.push(ChainInfo {
            parent,
            last: full.last().copied(),
            full: full.to_vec(),
            set: chain_set(full),
        });
        self.chain_ids.insert(full.to_vec(), id);
        id
    }

    fn meta_id(&mut self, m: String) -> u16 {
        if let Some(p) = self.metas.iter().position(|x| *x == m) {
            return p as u16;
        }
        self.metas.push(m);
        (self.metas.len() - 1) as u16
    }

    #[allow(clippy::too_many_arguments)]
    fn condition(
        &mut self,
        file: &str,
        id: u32,
        line: Option<usize>,
        key: &str,
        targets: &[String],
        transforms: &[String],
        op_def: &OperatorDef,
        data: &HashMap<String, Vec<String>>,
        text: &str,
    ) -> Result<Condition, RuleLoadError> {
        let mut include = Vec::new();
        let mut exclude = Vec::new();
        if targets.is_empty() {
            return Err(err(
                file,
                Some(id),
                &format!("{}targets", key),
                line,
                "no targets",
            ));
        }
        for t in targets {
            if is_meta(t) {
                let m = validate_meta(t)
                    .map_err(|e| err(file, Some(id), &format!("{}targets", key), line, e))?;
                let mi = self.meta_id(m);
                include.push(Selector {
                    coll: Coll::Meta(mi),
                    name: NameMatch::Any,
                    exclude: false,
                });
                continue;
            }
            let s = parse_selector(t)
                .map_err(|e| err(file, Some(id), &format!("{}targets", key), line, e))?;
            if s.exclude {
                exclude.push(s);
            } else {
                include.push(s);
            }
        }
        if include.is_empty() {
            return Err(err(
                file,
                Some(id),
                &format!("{}targets", key),
                line,
                "only exclusions in targets",
            ));
        }
        let mut chain = Vec::new();
        for t in transforms {
            if t == "none" {
                continue;
            }
            let tr = Transform::parse(t).ok_or_else(|| {
                err(
                    file,
                    Some(id),
                    &format!("{}transforms", key),
                    line,
                    format!("unknown transformation `{}`", t),
                )
            })?;
            chain.push(tr);
        }
        let chain = self.chain_id(&chain);
        let op = op_def;
        let mut ops: Vec<Op> = Vec::new();
        let okey = |k: &str| format!("{}{}", key, k);
        if let Some(rx) = &op.rx {
            let rx_line = find_line_after(text, line, "rx").or(line);
            let r = compile_rule_regex(rx).map_err(|e| {
                err(
                    file,
                    Some(id),
                    &okey("rx"),
                    rx_line,
                    format!("bad regex: {}", e),
                )
            })?;
            let fb = first_bytes(r.as_str());
            ops.push(Op::Rx(r, fb));
        }
        let mut pm_list: Option<Vec<String>> = None;
        if let Some(p) = &op.pm {
            pm_list = Some(p.clone());
        }
        if let Some(f) = &op.pm_file {
            if pm_list.is_some() {
                return Err(err(
                    file,
                    Some(id),
                    &okey("pm_file"),
                    line,
                    "both pm and pm_file",
                ));
            }
            let list = resolve_data(data, f).ok_or_else(|| {
                err(
                    file,
                    Some(id),
                    &okey("pm_file"),
                    line,
                    format!("data file `{}` not found", f),
                )
            })?;
            pm_list = Some(list.clone());
        }
        if let Some(list) = pm_list {
            if list.is_empty() || list.iter().any(|s| s.is_empty()) {
                return Err(err(
                    file,
                    Some(id),
                    &okey("pm"),
                    line,
                    "empty phrase list or empty phrase",
                ));
            }
            let ac = AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostFirst)
                .build(&list)
                .map_err(|e| err(file, Some(id), &okey("pm"), line, e.to_string()))?;
            ops.push(Op::Pm(ac, list));
        }
        if let Some(s) = &op.contains {
            ops.push(Op::Contains(s.clone()));
        }
        if let Some(s) = &op.begins_with {
            ops.push(Op::BeginsWith(s.clone()));
        }
        if let Some(s) = &op.ends_with {
            ops.push(Op::EndsWith(s.clone()));
        }
        if let Some(s) = &op.eq {
            ops.push(Op::Eq(s.clone()));
        }
        for (v, c) in [
            (op.gt, NumCmp::Gt),
            (op.ge, NumCmp::Ge),
            (op.lt, NumCmp::Lt),
            (op.le, NumCmp::Le),
            (op.num_eq, NumCmp::Eq),
        ] {
            if let Some(n) = v {
                ops.push(Op::Num(c, n));
            }
        }
        if op.detect_sqli == Some(true) {
            ops.push(Op::DetectSqli);
        }
        if op.detect_xss == Some(true) {
            ops.push(Op::DetectXss);
        }
        if op.present == Some(true) {
            ops.push(Op::Present);
        }
        if ops.len() != 1 {
            return Err(err(
                file,
                Some(id),
                &okey("operator"),
                line,
                if ops.is_empty() {
                    "no operator (rx, pm, pm_file, contains, ...)".to_string()
                } else {
                    "more than one operator".to_string()
                },
            ));
        }
        let op = ops
            .pop()
            .ok_or_else(|| err(file, Some(id), key, line, "no operator"))?;
        Ok(Condition {
            include,
            exclude,
            chain,
            op,
            negate: op_def.negate,
        })
    }
}

/// Groups with at most this many literals get a quick searcher (see [`Group::quick`]).
const SMALL_GROUP_LITERALS: usize = 64;

/// The prefilter automaton for a group of `literals` literals. A DFA executes far fewer
/// instructions per scanned byte than a contiguous NFA, and its table grows with the literals:
/// some 40 KB for twenty, 3 MB for a thousand (against 0.3 MB as an NFA). Groups of up to
/// [`DFA_MAX_LITERALS`] get one. With the headers' groups (140-480 literals) as DFAs, the
/// automata's share of an ordinary benign request (the middle tenth of the corpus) fell from
/// 15.3k to 7.4k instructions, and by the clock the corpus ran 1-6% faster at the median and 5%
/// at p99, for 8 MB more memory. The argument groups get a DFA whatever their size too: request
/// bodies arrive there as arguments, so theirs are the long values (up to the body limit), each
/// scanned once per distinct transformed value. That cost 2.5 MB and took the slowest benign
/// request of the corpus (a 160 KiB JSON body) from 54 to 41 ms and the benign p99 down 5%. The
/// cookie and file groups (900-1,100 literals, values bounded by the head size) stay NFAs
/// (BENCHMARKS.md, engine log).
fn automaton_kind(literals: usize, slot: usize) -> AhoCorasickKind {
    if literals <= DFA_MAX_LITERALS || slot == Coll::Args.slot(0) {
        AhoCorasickKind::DFA
    } else {
        AhoCorasickKind::ContiguousNFA
    }
}

/// The largest group that gets a DFA (see [`automaton_kind`]).
const DFA_MAX_LITERALS: usize = 480;

/// Values at least this long are first searched with a group's quick searcher: below it, making
/// the lowercase copy costs about what the automaton saves.
pub(super) const QUICK_SEARCH_MIN_LEN: usize = 64;

/// The quick searcher of a small group (see [`Group::quick`]), over the literals in ASCII
/// lowercase, or None when the group is large or the CPU has no vector search.
fn quick_search(literals: &[String]) -> Option<packed::Searcher> {
    if literals.len() > SMALL_GROUP_LITERALS {
        return None;
    }
    packed::Config::new()
        .builder()
        .extend(literals.iter().map(|l| l.to_ascii_lowercase()))
        .build()
}

/// Where the group's automaton has to start in `value` to find every literal in it, or None
/// when the quick search shows that no literal occurs. `lower` is scratch space.
fn literal_scan_start(group: &Group, value: &[u8], lower: &mut Vec<u8>) -> Option<usize> {
    let Some(quick) = group
        .quick
        .as_ref()
        .filter(|_| value.len() >= QUICK_SEARCH_MIN_LEN)
    else {
        return Some(0);
    };
    lower.clear();
    lower.extend(value.iter().map(u8::to_ascii_lowercase));
    // The leftmost literal starts where the leftmost of all occurrences starts.
    quick.find(&lower[..]).map(|m| m.start())
}

/// Calls `f` with the rules of each of a group's byte literals that occurs in a value whose
/// byte-presence set is `present`: only the shared bytes are looked up, instead of testing every
/// byte literal of the group.
#[inline]
fn for_byte_rules_present(group: &Group, present: &[u64; 4], mut f: impl FnMut(&[u32])) {
    for (w, (&p, &m)) in present.iter().zip(&group.byte_mask).enumerate() {
        let mut bits = p & m;
        while bits != 0 {
            let b = (w * 64) as u32 + bits.trailing_zeros();
            bits &= bits - 1;
            if let Ok(i) = group
                .byte_rules
                .binary_search_by_key(&(b as u8), |(x, _)| *x)
            {
                f(&group.byte_rules[i].1);
            }
        }
    }
}

/// Folds named groups of one slot whose rules, chains and literals are identical into one group
/// with several names: rules that list several spellings of a header would otherwise build the
/// same automaton once per spelling.
fn merge_identical_named_groups(
    groups: &mut Vec<Group>,
    lits_per_group: &mut Vec<Vec<(String, u32)>>,
    by_slot: &mut [Vec<usize>],
) {
    /// What makes two groups the same: slot, body flag, chains, literals with their rules, and
    /// the rules that always run.
    type Signature = (usize, bool, Vec<usize>, Vec<(String, u32)>, Vec<u32>);
    let mut first_with: HashMap<Signature, usize> = HashMap::new();
    // Where each group ends up: itself, or the earlier identical group it merges into.
    let mut target: Vec<usize> = (0..groups.len()).collect();
    for (gi, group) in groups.iter().enumerate() {
        if group.names.is_none() {
            continue;
        }
        let (mut chains, mut lits, mut always) = (
            group.chains.clone(),
            lits_per_group[gi].clone(),
            group.always.clone(),
        );
        chains.sort_unstable();
        lits.sort_unstable();
        always.sort_unstable();
        let signature = (group.slot, group.skip_parsed_body, chains, lits, always);
        target[gi] = *first_with.entry(signature).or_insert(gi);
    }
    for gi in 0..groups.len() {
        if target[gi] != gi {
            let names = groups[gi].names.take().unwrap_or_default();
            if let Some(kept) = groups[target[gi]].names.as_mut() {
                kept.extend(names);
            }
        }
    }
    let kept_groups: Vec<bool> = (0..groups.len()).map(|gi| target[gi] == gi).collect();
    // Renumber the groups that remain, keeping their order.
    let mut new_index = vec![usize::MAX; groups.len()];
    let kept = kept_groups.iter().enumerate().filter(|(_, &k)| k);
    for (next, (gi, _)) in kept.enumerate() {
        new_index[gi] = next;
    }
    keep_marked(groups, &kept_groups);
    keep_marked(lits_per_group, &kept_groups);
    for members in by_slot.iter_mut() {
        members.retain(|&g| target[g] == g);
        members.iter_mut().for_each(|g| *g = new_index[*g]);
    }
}

/// Keeps the items of `v` whose flag in `keep` is set, in order.
fn keep_marked<T>(v: &mut Vec<T>, keep: &[bool]) {
    *v = std::mem::take(v)
        .into_iter()
        .zip(keep)
        .filter_map(|(item, &kept)| kept.then_some(item))
        .collect();
}

/// Rule regexes run over bytes with Unicode off: `\w`, `\s`, `\d`, `\b` and
/// `(?i)` are ASCII, `.` and negated classes match single bytes. Attack syntax
/// is ASCII, and Unicode classes inside counted repetitions (`[^}]{0,200}`)
/// compile into automata many times larger: the default rule sets took 22 MB
/// of regex memory with Unicode and take 8 MB without, and the lazy DFAs
/// stay small and warm. Non-ASCII literals still match their UTF-8 bytes; a
/// pattern that needs Unicode (a `\p{..}` class) keeps it.
fn compile_rule_regex(rx: &str) -> Result<regex::bytes::Regex, regex::Error> {
    let pattern = ascii_word_boundaries(rx);
    let build = |unicode: bool| {
        regex::bytes::RegexBuilder::new(&pattern)
            .unicode(unicode)
            .size_limit(8 << 20)
            .build()
    };
    build(false).or_else(|_| build(true))
}

/// Rewrite `\b` / `\B` into their ASCII forms so the lazy DFA never has to fall back to the
/// slower engines on non-ASCII input (Unicode word boundaries are not supported by the DFA).
fn ascii_word_boundaries(rx: &str) -> String {
    let mut out = String::with_capacity(rx.len() + 16);
    let mut chars = rx.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('b') => out.push_str("(?-u:\\b)"),
                Some('B') => out.push_str("(?-u:\\B)"),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn find_line_after(text: &str, from: Option<usize>, key: &str) -> Option<usize> {
    let start = from.unwrap_or(1).saturating_sub(1);
    for (n, l) in text.lines().enumerate().skip(start) {
        let t = l.trim_start();
        if t.starts_with(key) && t[key.len()..].trim_start().starts_with('=') {
            return Some(n + 1);
        }
        if n > start && t.starts_with("[[rule]]") {
            break;
        }
    }
    None
}

impl WafPlan {
    /// Load every `*.toml` under `dir` (recursively) plus data files (`*.txt`, `*.data`).
    pub fn load_dir(dir: &Path) -> Result<WafPlan, Vec<RuleLoadError>> {
        let mut files = Vec::new();
        let mut errs = Vec::new();
        collect_files(dir, dir, &mut files, &mut errs, 0);
        if !errs.is_empty() {
            return Err(errs);
        }
        files.sort();
        WafPlan::from_sources(&files)
    }

    /// Build from (name, text) pairs: names ending in `.toml` are rule files; others are phrase
    /// data files referenced by `pm_file` (by relative path or base name).
    pub fn from_sources(files: &[(String, String)]) -> Result<WafPlan, Vec<RuleLoadError>> {
        let mut errs: Vec<RuleLoadError> = Vec::new();
        let mut data: HashMap<String, Vec<String>> = HashMap::new();
        for (name, text) in files {
            if !name.ends_with(".toml") {
                let list = parse_phrase_file(text);
                let base = name.rsplit('/').next().unwrap_or(name).to_string();
                data.insert(name.clone(), list.clone());
                data.insert(base, list);
            }
        }
        let mut b = Builder {
            chains: Vec::new(),
            chain_ids: HashMap::new(),
            metas: Vec::new(),
        };
        b.chain_id(&[]);
        let mut rules: Vec<Rule> = Vec::new();
        let mut seen: HashMap<u32, (String, usize)> = HashMap::new();
        for (name, text) in files.iter().filter(|(n, _)| n.ends_with(".toml")) {
            let rf = match parse_rule_file(name, text) {
                Ok(r) => r,
                Err(mut e) => {
                    errs.append(&mut e);
                    continue;
                }
            };
            let d = &rf.defaults;
            for r in &rf.rule {
                let id = *r.id.get_ref();
                let line_no = line_of(text, r.id.span().start);
                let line = Some(line_no);
                if let Some((f, l)) = seen.get(&id) {
                    errs.push(err(
                        name,
                        Some(id),
                        "id",
                        line,
                        format!("duplicate rule id (first defined at {}:{})", f, l),
                    ));
                    continue;
                }
                seen.insert(id, (name.clone(), line_no));
                let category = match r.category.clone().or_else(|| d.category.clone()) {
                    Some(c) if !c.is_empty() => c,
                    _ => {
                        errs.push(err(name, Some(id), "category", line, "missing category"));
                        continue;
                    }
                };
                let pl = r.paranoia.or(d.paranoia).unwrap_or(1);
                if !(1..=4).contains(&pl) {
                    errs.push(err(
                        name,
                        Some(id),
                        "paranoia",
                        line,
                        "paranoia must be 1..=4",
                    ));
                    continue;
                }
                let severity = match r.severity.as_ref().or(d.severity.as_ref()) {
                    Some(s) => match s.points() {
                        Ok(p) => p,
                        Err(e) => {
                            errs.push(err(name, Some(id), "severity", line, e));
                            continue;
                        }
                    },
                    None => 5,
                };
                let targets = r
                    .targets
                    .clone()
                    .or_else(|| d.targets.clone())
                    .unwrap_or_default();
                let transforms = r
                    .transforms
                    .clone()
                    .or_else(|| d.transforms.clone())
                    .unwrap_or_default();
                let main = match b.condition(
                    name,
                    id,
                    line,
                    "",
                    &targets,
                    &transforms,
                    &r.op(),
                    &data,
                    text,
                ) {
                    Ok(c) => c,
                    Err(e) => {
                        errs.push(e);
                        continue;
                    }
                };
                let mut chain = Vec::new();
                let mut bad = false;
                for (i, c) in r.chain.iter().enumerate() {
                    let tr = c.transforms.clone().unwrap_or_else(|| transforms.clone());
                    match b.condition(
                        name,
                        id,
                        line,
                        &format!("chain[{}].", i),
                        &c.targets,
                        &tr,
                        &c.op(),
                        &data,
                        text,
                    ) {
                        Ok(c) => chain.push(c),
                        Err(e) => {
                            errs.push(e);
                            bad = true;
                        }
                    }
                }
                if bad {
                    continue;
                }
                let mut tags = d.tags.clone().unwrap_or_default();
                tags.extend(r.tags.clone().unwrap_or_default());
                let mut rule = Rule {
                    id,
                    message: r.message.clone(),
                    category,
                    pl,
                    severity,
                    tags,
                    main,
                    chain,
                    require_change: r.require_change,
                };
                if let Some(pf) = &r.prefilter {
                    // Author-provided literals replace extraction; stash them as a Pm-like marker.
                    rule.tags.push(format!(
                        "__prefilter:{}",
                        pf.iter()
                            .map(|s| s.to_lowercase())
                            .collect::<Vec<_>>()
                            .join("\u{1}")
                    ));
                }
                rules.push(rule);
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        rules.sort_by_key(|r| r.id);
        Ok(WafPlan::assemble(rules, b))
    }

    fn assemble(mut rules: Vec<Rule>, b: Builder) -> WafPlan {
        let n_slots = N_FIXED_COLLS + b.metas.len();
        let mut group_idx: HashMap<(usize, String, bool), usize> = HashMap::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut by_slot: Vec<Vec<usize>> = vec![Vec::new(); n_slots];
        let mut lits_per_group: Vec<Vec<(String, u32)>> = Vec::new();
        let mut used = vec![false; n_slots];
        for (ri, rule) in rules.iter_mut().enumerate() {
            // Explicit prefilter from the rule file.
            let mut explicit: Option<Vec<String>> = None;
            if let Some(pos) = rule.tags.iter().position(|t| t.starts_with("__prefilter:")) {
                let t = rule.tags.remove(pos);
                let list: Vec<String> = t["__prefilter:".len()..]
                    .split('\u{1}')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.to_string())
                    .collect();
                explicit = Some(list);
            }
            let lits = if rule.main.negate {
                None
            } else {
                match explicit {
                    Some(l) if l.is_empty() => None,
                    Some(l) => Some(l),
                    None => rule.main.op.literals(),
                }
            };
            let mut colls: Vec<Coll> = rule.main.include.iter().map(|s| s.coll).collect();
            colls.sort();
            colls.dedup();
            for c in rule
                .chain
                .iter()
                .flat_map(|c| c.include.iter().map(|s| s.coll))
            {
                used[c.slot(0)] = true;
            }
            for coll in colls {
                let slot = coll.slot(0);
                used[slot] = true;
                // Rules that only select variables by exact name go to per-name groups.
                let sels: Vec<&Selector> = rule
                    .main
                    .include
                    .iter()
                    .filter(|s| s.coll == coll)
                    .collect();
                let names: Vec<String> =
                    if sels.iter().all(|s| matches!(s.name, NameMatch::Exact(_))) {
                        sels.iter()
                            .filter_map(|s| match &s.name {
                                NameMatch::Exact(n) => Some(n.to_ascii_lowercase()),
                                _ => None,
                            })
                            .collect()
                    } else {
                        vec![String::new()]
                    };
                let skip_parsed_body =
                    coll == Coll::Body && rule.main.include.iter().any(|s| s.coll == Coll::Args);
                for name in names {
                    let key = (slot, name.clone(), skip_parsed_body);
                    let gi = *group_idx.entry(key).or_insert_with(|| {
                        groups.push(Group {
                            names: (!name.is_empty()).then(|| vec![name.clone()]),
                            slot,
                            skip_parsed_body,
                            chains: Vec::new(),
                            need_chains: Vec::new(),
                            need_set: 0,
                            byte_rules: Vec::new(),
                            byte_mask: [0; 4],
                            ac: None,
                            quick: None,
                            pat_rules: Vec::new(),
                            always: Vec::new(),
                            members: Vec::new(),
                        });
                        lits_per_group.push(Vec::new());
                        by_slot[slot].push(groups.len() - 1);
                        groups.len() - 1
                    });
                    if !groups[gi].chains.contains(&rule.main.chain) {
                        groups[gi].chains.push(rule.main.chain);
                    }
                    match &lits {
                        Some(l) => {
                            for s in l {
                                lits_per_group[gi].push((s.clone(), ri as u32));
                            }
                        }
                        None => groups[gi].always.push(ri as u32),
                    }
                }
            }
        }
        merge_identical_named_groups(&mut groups, &mut lits_per_group, &mut by_slot);
        for (gi, lits) in lits_per_group.into_iter().enumerate() {
            if lits.is_empty() {
                continue;
            }
            let mut pats: Vec<String> = Vec::new();
            let mut pat_rules: Vec<Vec<u32>> = Vec::new();
            let mut idx: HashMap<String, usize> = HashMap::new();
            let mut bytes: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
            for (s, r) in lits {
                if s.len() == 1 {
                    let b = s.as_bytes()[0];
                    for bb in [b.to_ascii_lowercase(), b.to_ascii_uppercase()] {
                        let e = bytes.entry(bb).or_default();
                        if !e.contains(&r) {
                            e.push(r);
                        }
                    }
                    continue;
                }
                let i = *idx.entry(s.clone()).or_insert_with(|| {
                    pats.push(s.clone());
                    pat_rules.push(Vec::new());
                    pats.len() - 1
                });
                if !pat_rules[i].contains(&r) {
                    pat_rules[i].push(r);
                }
            }
            groups[gi].byte_mask = byte_set(&bytes.keys().copied().collect::<Vec<u8>>());
            groups[gi].byte_rules = bytes.into_iter().collect();
            if pats.is_empty() {
                continue;
            }
            match AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .kind(Some(automaton_kind(pats.len(), groups[gi].slot)))
                .build(&pats)
            {
                Ok(ac) => {
                    groups[gi].ac = Some(ac);
                    groups[gi].quick = quick_search(&pats);
                    groups[gi].pat_rules = pat_rules;
                }
                Err(_) => {
                    let mut all: Vec<u32> = pat_rules.into_iter().flatten().collect();
                    all.sort();
                    all.dedup();
                    groups[gi].always.extend(all);
                }
            }
        }
        for g in groups.iter_mut() {
            let mut m: Vec<u32> = g.always.clone();
            m.extend(g.pat_rules.iter().flatten().copied());
            m.extend(g.byte_rules.iter().flat_map(|(_, rs)| rs.iter().copied()));
            m.sort_unstable();
            m.dedup();
            m.sort_by_key(|&r| rules.get(r as usize).map(|x| x.pl).unwrap_or(0));
            g.members = m;
        }
        // Chains each group needs (with prefixes), in creation order so parents come first.
        for g in groups.iter_mut() {
            let mut need: Vec<usize> = Vec::new();
            for &c0 in &g.chains {
                let mut c = c0;
                while c != 0 {
                    need.push(c);
                    c = b.chains[c].parent;
                }
            }
            need.sort();
            need.dedup();
            g.need_set = need.iter().fold(0, |set, &c| set | b.chains[c].set);
            g.need_chains = need;
        }
        let cookie_header_named = rules.iter().any(|r| {
            r.main
                .include
                .iter()
                .chain(r.chain.iter().flat_map(|c| c.include.iter()))
                .any(|s| {
                    s.coll == Coll::Headers
                        && !matches!(s.name, NameMatch::Any)
                        && s.name.matches("cookie")
                })
        });
        WafPlan {
            id: NEXT_PLAN_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            rules,
            chains: b.chains,
            groups,
            by_slot,
            meta_kinds: b.metas.iter().map(|m| MetaKind::parse(m)).collect(),
            metas: b.metas,
            used,
            cookie_header_named,
        }
    }

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

    fn build_ctx<'b, 'a: 'b>(&self, req: &HttpRequest<'a>, inputs: &'b Inputs<'a>) -> Ctx<'b> {
        let arg_count = inputs.query.len() + inputs.body.arg_count();
        let mut vars: Vec<Var<'b>> = Vec::with_capacity(64 + 2 * arg_count.min(MAX_VARS));
        let used = |c: Coll| self.used.get(c.slot(0)).copied().unwrap_or(false);
        let push =
            |vars: &mut Vec<Var<'b>>, coll: Coll, name: Cow<'b, str>, value: Cow<'b, str>| {
                if vars.len() < MAX_VARS {
                    vars.push(Var { coll, name, value });
                }
            };
        // Request line pieces.
        let uri: &'a str = req.uri;
        let target = &inputs.target;
        let query = target.query;
        let raw_path = target.path.split('#').next().unwrap_or(target.path);
        let path: Cow<'a, str> = match url_decode_once(raw_path, false) {
            Some(p) => Cow::Owned(p),
            None => Cow::Borrowed(raw_path),
        };
        let empty = || Cow::Borrowed("");
        if used(Coll::Method) {
            push(&mut vars, Coll::Method, empty(), Cow::Borrowed(req.method));
        }
        if used(Coll::Protocol) {
            push(
                &mut vars,
                Coll::Protocol,
                empty(),
                Cow::Borrowed(req.version),
            );
        }
        if used(Coll::RequestLine) {
            push(
                &mut vars,
                Coll::RequestLine,
                empty(),
                Cow::Owned(format!("{} {} {}", req.method, req.uri, req.version)),
            );
        }
        if used(Coll::RequestUriRaw) {
            push(&mut vars, Coll::RequestUriRaw, empty(), Cow::Borrowed(uri));
        }
        if used(Coll::Basename) {
            let base = path.rsplit('/').next().unwrap_or("").to_string();
            push(&mut vars, Coll::Basename, empty(), Cow::Owned(base));
        }
        if used(Coll::Path) {
            push(&mut vars, Coll::Path, empty(), path.clone());
        }
        if let Some(q) = query {
            if used(Coll::QueryString) && !q.is_empty() {
                push(&mut vars, Coll::QueryString, empty(), Cow::Borrowed(q));
            }
        }
        let mut host = target.host.to_string();
        let mut cookie_count = 0usize;
        let mut header_bytes = 0usize;
        for (n, v) in req.headers.iter() {
            let n: &'a str = n;
            header_bytes += n.len() + v.len();
            let value: Cow<'a, str> = request_text(v);
            if host.is_empty() && n.eq_ignore_ascii_case("host") {
                host = value.split(':').next().unwrap_or("").to_ascii_lowercase();
            }
            let is_cookie = n.eq_ignore_ascii_case("cookie");
            if is_cookie {
                let mut add = |cn: Cow<'a, str>, cv: Cow<'a, str>| {
                    cookie_count += 1;
                    if used(Coll::CookieNames) {
                        push(&mut vars, Coll::CookieNames, cn.clone(), cn.clone());
                    }
                    if used(Coll::Cookies) {
                        push_base64_view(&mut vars, Coll::Cookies, &cn, &cv);
                        push(&mut vars, Coll::Cookies, cn, cv);
                    }
                };
                match &value {
                    Cow::Borrowed(s) => {
                        let s: &'a str = s;
                        for c in s.split(';') {
                            let c = c.trim();
                            if c.is_empty() {
                                continue;
                            }
                            match c.find('=') {
                                Some(p) => add(Cow::Borrowed(&c[..p]), Cow::Borrowed(&c[p + 1..])),
                                None => add(Cow::Borrowed(""), Cow::Borrowed(c)),
                            }
                        }
                    }
                    Cow::Owned(s) => {
                        for c in s.split(';') {
                            let c = c.trim();
                            if c.is_empty() {
                                continue;
                            }
                            match c.find('=') {
                                Some(p) => add(
                                    Cow::Owned(c[..p].to_string()),
                                    Cow::Owned(c[p + 1..].to_string()),
                                ),
                                None => add(Cow::Borrowed(""), Cow::Owned(c.to_string())),
                            }
                        }
                    }
                }
            }
            if used(Coll::HeaderNames) {
                push(
                    &mut vars,
                    Coll::HeaderNames,
                    Cow::Borrowed(n),
                    Cow::Borrowed(n),
                );
            }
            // The Cookie header is inspected through the cookies collection; it only appears in
            // `headers` when a rule names it explicitly (e.g. `headers:Cookie`).
            if used(Coll::Headers) && (self.cookie_header_named || !is_cookie) {
                push(&mut vars, Coll::Headers, Cow::Borrowed(n), value);
            }
        }
        let parsed = &inputs.body;
        // Only urlencoded and JSON bodies become arguments whole: multipart file contents and XML
        // markup (a DOCTYPE's entities) exist only in the raw body.
        let body_parsed = matches!(parsed.kind, "urlencoded" | "json") && parsed.error.is_none();
        let args = || {
            inputs
                .query
                .iter()
                .map(|(n, v)| (&**n, &**v))
                .chain(parsed.arg_pairs())
        };
        // Numbers for meta targets.
        let mut meta_vals: Vec<usize> = Vec::with_capacity(self.metas.len());
        for m in &self.meta_kinds {
            meta_vals.push(match m {
                // Query and form arguments: what a framework turns into variables (PHP's
                // max_input_vars). The leaves of one JSON document are not counted here.
                MetaKind::CountArgs => inputs.query.len() + parsed.args.len(),
                MetaKind::CountHeaders => req.headers.len(),
                MetaKind::CountCookies => cookie_count,
                MetaKind::CountFiles => parsed.files.len(),
                MetaKind::CountHeader(n) => req
                    .headers
                    .iter()
                    .filter(|(h, _)| h.eq_ignore_ascii_case(n))
                    .count(),
                MetaKind::CountArg(n) => args().filter(|(a, _)| a.eq_ignore_ascii_case(n)).count(),
                MetaKind::CountCookie(n) => vars
                    .iter()
                    .filter(|v| v.coll == Coll::Cookies && v.name.eq_ignore_ascii_case(n))
                    .count(),
                MetaKind::LengthUri => uri.len(),
                MetaKind::LengthPath => raw_path.len(),
                MetaKind::LengthQuery => query.map(|q| q.len()).unwrap_or(0),
                MetaKind::LengthBody => req.body.len(),
                MetaKind::LengthHeaders => header_bytes,
                MetaKind::LengthArgs => args().map(|(a, b)| a.len() + b.len()).sum(),
                MetaKind::Unknown => 0,
            });
        }
        let (want_names, want_args) = (used(Coll::ArgsNames), used(Coll::Args));
        for (n, v) in args() {
            if want_names && !n.is_empty() {
                push(
                    &mut vars,
                    Coll::ArgsNames,
                    Cow::Borrowed(n),
                    Cow::Borrowed(n),
                );
            }
            if want_args {
                push(&mut vars, Coll::Args, Cow::Borrowed(n), Cow::Borrowed(v));
                push_base64_view(&mut vars, Coll::Args, n, v);
            }
        }
        if used(Coll::Files) {
            for (n, f) in &parsed.files {
                push(&mut vars, Coll::Files, Cow::Borrowed(n), Cow::Borrowed(f));
            }
        }
        if let Some(e) = &parsed.error {
            push(&mut vars, Coll::ReqBodyError, empty(), Cow::Borrowed(e));
        }
        if used(Coll::Body) && !req.body.is_empty() {
            let text = if parsed.structured.is_empty() {
                body_text(req.body)
            } else {
                Cow::Owned(body_text(&without_ranges(req.body, &parsed.structured)).into_owned())
            };
            push(&mut vars, Coll::Body, empty(), text);
        }
        for (i, v) in meta_vals.into_iter().enumerate() {
            vars.push(Var {
                coll: Coll::Meta(i as u16),
                name: empty(),
                value: number_text(v),
            });
        }
        Ctx {
            vars,
            host,
            path: path.into_owned(),
            body_parsed,
        }
    }

    /// Evaluate a request under a policy.
    pub fn evaluate(&self, req: &HttpRequest<'_>, policy: &Policy) -> Verdict {
        if policy.mode == Mode::Off {
            return Verdict::default();
        }
        let content_encodings: Vec<&[u8]> = req.header_values("content-encoding").collect();
        let decoded = encoding::decode(
            &content_encodings,
            req.body,
            req.body_truncated,
            policy.body_limit,
        );
        let req = &HttpRequest {
            body: &decoded.bytes,
            body_truncated: decoded.truncated,
            ..*req
        };
        let mut inputs = parse_inputs(req);
        if let Some(e) = decoded.error {
            inputs.body.error = Some(e);
        }
        let ctx = self.build_ctx(req, &inputs);
        let scope = Scope {
            ctx: &ctx,
            policy,
            excl: policy
                .exclusions
                .iter()
                .filter(|e| e.applies_to_request(&ctx.host, &ctx.path))
                .collect(),
        };
        // Values found clean before are skipped (see `clean_cache` for why this is sound); not
        // when an exclusion applies, since exclusions depend on the request's host and path.
        let remember = policy.remember_clean_values && scope.excl.is_empty();
        let tag = self.id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ policy.selection_key();
        let mut memo = MEMO.with(|m| std::mem::take(&mut *m.borrow_mut()));
        memo.work.prepare(self);
        memo.group_active.clear();
        memo.group_active
            .resize(self.groups.len(), GroupActive::Unknown);
        let mut found = Findings {
            matched: std::mem::take(&mut memo.matched),
            matches: Vec::new(),
            score: 0,
        };
        found.matched.clear();
        found.matched.resize(self.rules.len(), false);
        for var in ctx.vars.iter() {
            let slot = var.coll.slot(0);
            let Some(groups) = self.by_slot.get(slot).filter(|gs| !gs.is_empty()) else {
                continue;
            };
            let cache_slot = slot as u16;
            let cache_key = if remember {
                clean_cache::key(cache_slot, &var.name, &var.value)
            } else {
                None
            };
            if let Some(k) = cache_key {
                if memo
                    .clean
                    .is_clean(k, tag, cache_slot, &var.name, &var.value)
                {
                    continue;
                }
            }
            let (raw_present, may_change) = scan_value(var.value.as_bytes());
            let visit = VarVisit {
                var,
                groups,
                raw_present,
                may_change,
            };
            let clean = self.inspect_var(
                &visit,
                &scope,
                &mut memo.work,
                &mut memo.group_active,
                &mut found,
            );
            if let (true, Some(k)) = (clean, cache_key) {
                memo.clean
                    .remember_clean(k, tag, cache_slot, &var.name, &var.value);
            }
        }
        memo.matched = found.matched;
        MEMO.with(|m| *m.borrow_mut() = memo);
        let mut matches = found.matches;
        matches.sort_by_key(|m| m.rule_id);
        let over = found.score >= policy.anomaly_threshold;
        Verdict {
            score: found.score,
            blocked: over && policy.mode == Mode::Prevention,
            over_threshold: over,
            matches,
            decoded_body_over_limit: decoded.over_limit,
        }
    }

    /// Runs the groups of the variable's collection on one variable: true when no rule matched
    /// and the outcome depended on nothing but the value (so it may be remembered as clean).
    fn inspect_var(
        &self,
        visit: &VarVisit,
        scope: &Scope,
        work: &mut VarWork,
        group_active: &mut [GroupActive],
        found: &mut Findings,
    ) -> bool {
        let var = visit.var;
        work.next_variable();
        let mut clean = true;
        for &g in visit.groups {
            let group = &self.groups[g];
            if group.skip_parsed_body && scope.ctx.body_parsed {
                // Clean so far only because of how the body parsed: not a fact about the value.
                clean = false;
                continue;
            }
            if !group_selects(group, &var.name)
                || !self.group_enabled(g, scope.policy, group_active)
            {
                continue;
            }
            let changed = self.transform_for_group(group, visit, work);
            if group.ac.is_some() || !group.byte_rules.is_empty() {
                self.collect_candidates(group, visit, changed, work);
                clean &= self.try_rules(&work.cands, var, &work.slots, &mut work.det, scope, found);
            }
            clean &= self.try_rules(&group.always, var, &work.slots, &mut work.det, scope, found);
        }
        clean
    }

    /// Whether some rule of group `g` is enabled under the policy (decided once per request and
    /// group: a group with none is skipped entirely).
    #[inline]
    fn group_enabled(&self, g: usize, policy: &Policy, active: &mut [GroupActive]) -> bool {
        if active[g] == GroupActive::Unknown {
            let on = self.groups[g].members.iter().any(|&r| {
                let rule = &self.rules[r as usize];
                policy.effective(rule.id, rule.severity, rule.pl).is_some()
            });
            active[g] = if on {
                GroupActive::Yes
            } else {
                GroupActive::No
            };
        }
        active[g] == GroupActive::Yes
    }

    /// Computes the variable's value under each transformation chain the group needs, into
    /// `work.slots`. Chains are shared between groups and steps between chains, so each
    /// (source value, transformation) is computed once per variable (`work.table`), and a chain
    /// none of whose steps acts on a byte of the value is not run at all.
    ///
    /// Returns false when no chain of the group may change the value (most values of most
    /// groups): every slot the group needs then holds [`Slot::Raw`].
    #[inline]
    fn transform_for_group(&self, group: &Group, visit: &VarVisit, work: &mut VarWork) -> bool {
        if group.need_set & visit.may_change == 0 {
            for &c in &group.need_chains {
                work.slots[c] = Slot::Raw;
            }
            return false;
        }
        let raw = &*visit.var.value;
        for &c in &group.need_chains {
            let info = &self.chains[c];
            let Some(t) = info.last else {
                work.slots[c] = Slot::Raw;
                continue;
            };
            if info.set & visit.may_change == 0 {
                // No step of the chain may change this value.
                work.slots[c] = Slot::Raw;
                continue;
            }
            // Source of the parent's value: usize::MAX for the raw value, else an Owned slot.
            let src = if info.parent == 0 {
                usize::MAX
            } else {
                match &work.slots[info.parent] {
                    Slot::Raw => usize::MAX,
                    Slot::Owned(_) => info.parent,
                    Slot::Ref(k) => *k,
                }
            };
            let mi = (if src == usize::MAX { 0 } else { src + 1 }) * N_TRANSFORMS + t as usize;
            if work.table[mi].0 == work.stamp {
                // Already computed for this variable (possibly by this very chain in an earlier
                // group, in which case the slot holds the value itself).
                let k = work.table[mi].1;
                if k == u32::MAX {
                    work.slots[c] = Slot::Raw;
                } else if k as usize != c {
                    work.slots[c] = Slot::Ref(k as usize);
                }
                continue;
            }
            let out = if src == usize::MAX {
                if t.bit() & visit.may_change != 0 {
                    t.apply(raw)
                } else {
                    None
                }
            } else {
                match &work.slots[src] {
                    Slot::Owned(v) => t.apply(v),
                    _ => t.apply(raw),
                }
            };
            let result = match out {
                Some(v) => Slot::Owned(v),
                None if src == usize::MAX => Slot::Raw,
                None => Slot::Ref(src),
            };
            let as_ref = match &result {
                Slot::Owned(_) => c as u32,
                Slot::Ref(k) => *k as u32,
                Slot::Raw => u32::MAX,
            };
            work.slots[c] = result;
            work.table[mi] = (work.stamp, as_ref);
        }
        true
    }

    /// Fills `work.cands` (sorted) with the group's rules whose prefilter literals occur in one
    /// of the variable's distinct transformed values: each distinct value is scanned once by the
    /// group's automaton and checked against its byte literals. `changed`: whether some chain
    /// changed the value (else the raw value is the only distinct one).
    ///
    /// Only the values of the rules' own chains are scanned, not those of their prefixes: a rule
    /// can match only where one of its literals occurs in its own chain's value, so a prefix's
    /// value (an intermediate step) would add nothing but needless candidates. For a long value
    /// that most steps change, that halves the scans.
    #[inline]
    fn collect_candidates(
        &self,
        group: &Group,
        visit: &VarVisit,
        changed: bool,
        work: &mut VarWork,
    ) {
        let raw = &*visit.var.value;
        // Chains whose values are distinct (chain 0 is the raw value), on the stack and spilling
        // to a Vec only past 32 values. Most chains leave typical values unchanged.
        let mut dstack = [0u32; 32];
        let mut dn = 1usize;
        let mut dspill: Vec<u32> = Vec::new();
        let chains: &[usize] = if changed { &group.chains } else { &[] };
        for &c in chains {
            // The slot that holds the chain's value, when the chain changed it.
            let owner = match work.slots[c] {
                Slot::Raw => continue,
                Slot::Owned(_) => c,
                Slot::Ref(k) => k,
            };
            if let Slot::Owned(v) = &work.slots[owner] {
                // The prefilter automaton is ASCII case-insensitive, so values that differ only
                // in ASCII case need a single pass.
                let dup = dstack[..dn].iter().chain(dspill.iter()).any(|&d| {
                    let d = resolve(&work.slots, d as usize, raw);
                    d.len() == v.len() && d.eq_ignore_ascii_case(v)
                });
                if !dup {
                    if dn < dstack.len() {
                        dstack[dn] = owner as u32;
                        dn += 1;
                    } else {
                        dspill.push(owner as u32);
                    }
                }
            }
        }
        let stamp = work.next_candidates();
        let (rule_stamp, cands) = (&mut work.rule_stamp, &mut work.cands);
        let mut add = |rs: &[u32]| {
            for &r in rs {
                if rule_stamp[r as usize] != stamp {
                    rule_stamp[r as usize] = stamp;
                    cands.push(r);
                }
            }
        };
        let distinct = dstack[..dn].iter().chain(dspill.iter());
        for (di, &c) in distinct.enumerate() {
            let d = resolve(&work.slots, c as usize, raw);
            if !group.byte_rules.is_empty() {
                let present = if di == 0 {
                    visit.raw_present
                } else {
                    byte_set(d.as_bytes())
                };
                for_byte_rules_present(group, &present, &mut add);
            }
            let Some(ac) = &group.ac else { continue };
            let Some(from) = literal_scan_start(group, d.as_bytes(), &mut work.lower) else {
                continue;
            };
            for m in ac.find_overlapping_iter(&d.as_bytes()[from..]) {
                if let Some(rs) = group.pat_rules.get(m.pattern().as_usize()) {
                    add(rs);
                }
            }
        }
        work.cands.sort_unstable();
    }

    /// Tries `rules` on the variable, each on its own chain's value: true when none matched and
    /// nothing but the value decided.
    #[inline]
    fn try_rules(
        &self,
        rules: &[u32],
        var: &Var,
        slots: &[Slot],
        det: &mut DetMemo,
        scope: &Scope,
        found: &mut Findings,
    ) -> bool {
        let mut clean = true;
        for &r in rules {
            let r = r as usize;
            let val = resolve(slots, self.rules[r].main.chain, &var.value);
            if self.rules[r].require_change && self.unchanged(slots, r, val, &var.value) {
                continue;
            }
            clean &= self.try_rule(r, var, val, scope, found, det) == Tried::NoMatch;
        }
        clean
    }

    #[inline]
    fn try_rule(
        &self,
        r: usize,
        var: &Var,
        val: &str,
        scope: &Scope,
        found: &mut Findings,
        det: &mut DetMemo,
    ) -> Tried {
        if found.matched[r] {
            return Tried::Contextual;
        }
        let rule = &self.rules[r];
        if !rule.main.selects(var.coll, &var.name) {
            return Tried::NoMatch;
        }
        let Some(sev) = scope.policy.effective(rule.id, rule.severity, rule.pl) else {
            return Tried::NoMatch;
        };
        let data = match (det.run(&rule.main.op, val), rule.main.negate) {
            (Some(d), false) => d,
            (None, true) => truncate(val),
            _ => return Tried::NoMatch,
        };
        for e in &scope.excl {
            if !e.covers_rule(rule.id) {
                continue;
            }
            match &e.target {
                None => return Tried::Contextual,
                Some((c, nm)) => {
                    if c.family() == var.coll.family() && nm.matches(&var.name) {
                        return Tried::Contextual;
                    }
                }
            }
        }
        for cond in &rule.chain {
            if !self.cond_any(cond, scope.ctx) {
                return Tried::Contextual;
            }
        }
        found.matched[r] = true;
        found.score = found.score.saturating_add(sev);
        let target = match var.coll {
            Coll::Meta(i) => self
                .metas
                .get(i as usize)
                .cloned()
                .unwrap_or_default()
                .to_uppercase(),
            c if c.named() => format!("{}:{}", c.label(), var.name),
            c => c.label().to_string(),
        };
        found.matches.push(RuleMatch {
            rule_id: rule.id,
            category: rule.category.clone(),
            message: rule.message.clone(),
            severity: sev,
            paranoia: rule.pl,
            target,
            data,
        });
        Tried::Matched
    }

    /// True when the last transformation of rule `r`'s chain left the value unchanged.
    fn unchanged(&self, cache: &[Slot], r: usize, val: &str, raw: &str) -> bool {
        let c = self.rules[r].main.chain;
        let parent = self.chains.get(c).map(|i| i.parent).unwrap_or(0);
        let pv = resolve(cache, parent, raw);
        std::ptr::eq(pv.as_ptr(), val.as_ptr()) && pv.len() == val.len()
    }

    fn cond_any(&self, cond: &Condition, ctx: &Ctx) -> bool {
        let chain = &self.chains[cond.chain].full;
        ctx.vars.iter().any(|v| {
            cond.selects(v.coll, &v.name) && cond.eval(&apply_chain(chain, &v.value)).is_some()
        })
    }
}

/// Results of the (costly) tokenizer detectors for the current variable: several rules run the same
/// detector on values that often end up identical after their transformations.
#[derive(Default)]
struct DetMemo {
    /// (0 = sqli / 1 = xss, value, operator result).
    entries: Vec<(u8, String, Option<String>)>,
}

impl DetMemo {
    #[inline]
    fn run(&mut self, op: &Op, v: &str) -> Option<String> {
        let kind = match op {
            Op::DetectSqli => 0u8,
            Op::DetectXss => 1u8,
            _ => return op.run(v),
        };
        if !sqli_candidate(v) {
            return None;
        }
        if let Some((_, _, r)) = self
            .entries
            .iter()
            .find(|(k, val, _)| *k == kind && val.as_str() == v)
        {
            return r.clone();
        }
        let r = op.run(v);
        if self.entries.len() < 16 {
            self.entries.push((kind, v.to_string(), r.clone()));
        }
        r
    }
}

/// Per-thread working memory of `evaluate`, kept between requests so that a
/// request neither allocates nor frees its per-rule and per-chain tables.
#[derive(Default)]
struct Memo {
    work: VarWork,
    /// Per rule: matched in this request (lent to [`Findings`] during a request).
    matched: Vec<bool>,
    /// Per group: whether the policy enables any of its rules (reset per request).
    group_active: Vec<GroupActive>,
    /// Values this thread found clean (see `clean_cache`).
    clean: clean_cache::Table,
}

/// Scratch space for one variable at a time. The tables are never cleared between variables or
/// requests: generation stamps tell the current variable's entries from older ones.
#[derive(Default)]
struct VarWork {
    /// (source value, transform) -> result for the current variable, valid where the stamp is
    /// `stamp`.
    table: Vec<(u32, u32)>,
    stamp: u32,
    /// Per chain: the transformed value of the current variable. Every slot a variable reads
    /// was written for that variable first (a chain's parents come before it in
    /// `need_chains`), so old contents are never seen.
    slots: Vec<Slot>,
    /// Per rule: the candidate stamp under which it was last added to `cands`.
    rule_stamp: Vec<u32>,
    cand_stamp: u32,
    /// Candidate rules of the current group visit.
    cands: Vec<u32>,
    /// A long value in ASCII lowercase, for the quick literal search (it grows to the longest
    /// value inspected, at most a body of the inspection limit).
    lower: Vec<u8>,
    det: DetMemo,
}

impl VarWork {
    /// Sizes the tables for `plan` (a reload may change the number of chains or rules).
    fn prepare(&mut self, plan: &WafPlan) {
        let table_len = (plan.chains.len() + 1) * N_TRANSFORMS;
        if self.table.len() != table_len {
            self.table = vec![(0, u32::MAX); table_len];
            self.stamp = 0;
        }
        if self.slots.len() != plan.chains.len() {
            self.slots = vec![Slot::Raw; plan.chains.len()];
        }
        if self.rule_stamp.len() != plan.rules.len() {
            self.rule_stamp = vec![0; plan.rules.len()];
            self.cand_stamp = 0;
        }
    }

    /// Starts a variable: the transformation table and the detector memo forget the last one.
    #[inline]
    fn next_variable(&mut self) {
        self.det.entries.clear();
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.table.iter_mut().for_each(|e| *e = (0, u32::MAX));
            self.stamp = 1;
        }
    }

    /// Starts a candidate list: returns the stamp that marks a rule as already added.
    #[inline]
    fn next_candidates(&mut self) -> u32 {
        self.cands.clear();
        self.cand_stamp = self.cand_stamp.wrapping_add(1);
        if self.cand_stamp == 0 {
            self.rule_stamp.iter_mut().for_each(|s| *s = 0);
            self.cand_stamp = 1;
        }
        self.cand_stamp
    }
}

/// Whether a group has a rule the policy enables, decided on the group's first visit in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum GroupActive {
    #[default]
    Unknown,
    Yes,
    No,
}

/// What one request has decided so far.
struct Findings {
    /// Per rule: matched in this request (a rule counts once per request).
    matched: Vec<bool>,
    matches: Vec<RuleMatch>,
    score: u32,
}

/// What a rule may look at besides its variable: the request's other variables (for chained
/// conditions), the policy and the exclusions that apply to this request.
struct Scope<'r> {
    ctx: &'r Ctx<'r>,
    policy: &'r Policy,
    excl: Vec<&'r Exclusion>,
}

/// One variable on its way through its collection's groups.
struct VarVisit<'v> {
    var: &'v Var<'v>,
    /// The groups of the variable's collection.
    groups: &'v [usize],
    /// Bytes present in the raw value.
    raw_present: [u64; 4],
    /// The transformations that may change the raw value (by its bytes): the others are skipped.
    may_change: TransformSet,
}

/// Whether a group's rules select a variable of this name (a group of named rules only sees
/// the variables it names).
#[inline]
fn group_selects(group: &Group, name: &str) -> bool {
    group
        .names
        .as_ref()
        .is_none_or(|names| names.iter().any(|n| name.eq_ignore_ascii_case(n)))
}

thread_local! {
    static MEMO: std::cell::RefCell<Memo> = std::cell::RefCell::new(Memo::default());
}

/// Forgets the values this thread remembered as clean: the next requests are inspected in full,
/// as after a start (the timing passes of `portcullis replay --timing` begin here).
pub fn forget_remembered_values() {
    MEMO.with(|m| m.borrow_mut().clean.clear());
}

/// A count or length as text for the meta targets. Values below 1024 (almost
/// every count and most lengths) come from a table built once, so a request
/// does not allocate a string per meta target.
fn number_text(n: usize) -> Cow<'static, str> {
    static SMALL: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| (0..1024).map(|n: usize| n.to_string()).collect());
    match SMALL.get(n) {
        Some(s) => Cow::Borrowed(s.as_str()),
        None => Cow::Owned(n.to_string()),
    }
}

/// The value of chain `c` for the current variable (`raw` for chain 0 or an unchanged value).
#[inline]
fn resolve<'a>(cache: &'a [Slot], c: usize, raw: &'a str) -> &'a str {
    if c == 0 {
        return raw;
    }
    match cache.get(c) {
        Some(Slot::Owned(s)) => s,
        Some(Slot::Ref(k)) => match cache.get(*k) {
            Some(Slot::Owned(s)) => s,
            _ => raw,
        },
        _ => raw,
    }
}

fn collect_files(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, String)>,
    errs: &mut Vec<RuleLoadError>,
    depth: usize,
) {
    if depth > 8 {
        return;
    }
    let rd = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) => {
            errs.push(RuleLoadError {
                file: dir.display().to_string(),
                rule_id: None,
                key: None,
                line: None,
                message: e.to_string(),
            });
            return;
        }
    };
    let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_files(root, &p, out, errs, depth + 1);
            continue;
        }
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "toml" | "txt" | "data") {
            continue;
        }
        let rel = p
            .strip_prefix(root)
            .unwrap_or(&p)
            .to_string_lossy()
            .replace('\\', "/");
        match std::fs::read_to_string(&p) {
            Ok(t) => out.push((rel, t)),
            Err(e) => errs.push(RuleLoadError {
                file: rel,
                rule_id: None,
                key: None,
                line: None,
                message: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{compile_rule_regex, VarWork};

    /// The stamps are kept across requests, so after four billion uses one wraps: the tables
    /// must then be cleared, or entries written under the old stamp 1 would pass for current.
    #[test]
    fn wrapped_stamps_clear_their_tables() {
        let mut work = VarWork {
            rule_stamp: vec![1, 7, u32::MAX],
            cand_stamp: u32::MAX,
            table: vec![(1, 3), (5, 4)],
            stamp: u32::MAX,
            ..VarWork::default()
        };
        assert_eq!(work.next_candidates(), 1);
        assert_eq!(work.rule_stamp, [0, 0, 0]);
        work.next_variable();
        assert_eq!(work.stamp, 1);
        assert_eq!(work.table, [(0, u32::MAX), (0, u32::MAX)]);
        assert_eq!(work.next_candidates(), 2);
    }

    #[test]
    fn rule_regexes_are_ascii_unless_they_need_unicode() {
        let word = compile_rule_regex(r"^\w+$").expect("compiles");
        assert!(word.is_match(b"select_1"));
        assert!(!word.is_match("sélect".as_bytes()), "\\w is ASCII");
        let ci = compile_rule_regex(r"(?i)union\s+select").expect("compiles");
        assert!(ci.is_match(b"UNION\tSELECT"));
        // Negated classes count bytes, and match inside non-UTF-8 text.
        let near = compile_rule_regex(r"\{\{[^}]{0,4}x").expect("compiles");
        assert!(near.is_match(b"{{ab x"));
        assert!(near.is_match(b"{{\xff\xfex"));
        // A non-ASCII literal still matches its UTF-8 bytes.
        assert!(compile_rule_regex("é")
            .expect("compiles")
            .is_match("café".as_bytes()));
        // A Unicode class keeps Unicode mode instead of failing.
        let greek = compile_rule_regex(r"\p{Greek}{2}").expect("falls back to Unicode");
        assert!(greek.is_match("αβ".as_bytes()));
        assert!(compile_rule_regex(r"(unclosed").is_err());
    }
}
