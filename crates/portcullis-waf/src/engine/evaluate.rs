//! Evaluating a request against the plan: [`WafPlan::evaluate`] decodes the body's content coding,
//! builds the request's variables (see `variables`) and runs each variable through the groups of
//! its collection: the transformation chains a group needs (each computed once per variable and
//! shared between groups), the prefilter that picks the candidate rules, then the rules themselves
//! (operator, exclusions, chained conditions). A rule that matches adds its severity to the
//! anomaly score once per request. The working memory is kept per thread between requests, with
//! the values found clean (see [`clean_cache`]), so a value seen clean before is not inspected
//! again.

use super::variables::{parse_inputs, Ctx, Var};
use super::{Condition, Group, NumCmp, Op, RuleMatch, Verdict, WafPlan, QUICK_SEARCH_MIN_LEN};
use crate::clean_cache;
use crate::encoding;
use crate::policy::{Exclusion, Mode, Policy};
use crate::request::HttpRequest;
use crate::target::Coll;
use crate::transform::{apply_chain, byte_set, scan_value, TransformSet, N_TRANSFORMS};

/// Maximum bytes of matched data kept in a [`RuleMatch`].
const DATA_MAX: usize = 100;

impl WafPlan {
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

/// Per-variable transformed value of one chain.
#[derive(Clone)]
enum Slot {
    /// Same as the raw value.
    Raw,
    /// A value this chain produced.
    Owned(String),
    /// Same value as the (Owned) slot of another chain.
    Ref(usize),
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
                crate::detect::detect_sqli(v)
                    .map(|fp| format!("fingerprint {} in {}", fp, truncate(v)))
            }
            Op::DetectXss => {
                if !sqli_candidate(v) {
                    return None;
                }
                crate::detect::detect_xss(v).then(|| truncate(v))
            }
            Op::Present => Some(truncate(v)),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::VarWork;

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
}
