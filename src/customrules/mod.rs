//! Per-site custom rules (Azure Application Gateway style), evaluated before
//! the managed WAF rules.
//!
//! # Configuration
//!
//! ```toml
//! [[sites.custom_rules]]
//! name = "block-bad-bots"      # unique within the site
//! priority = 10                # unique within the site; lower runs first
//! action = "block"             # allow | block | log
//! conditions = [               # all must hold (at least one condition)
//!   { match = "request_header:User-Agent", operator = "contains", values = ["sqlmap", "nikto"], transforms = ["lowercase"] },
//!   { match = "client_ip", operator = "ip_match", values = ["203.0.113.0/24", "2001:db8::/32"], negate = true },
//! ]
//! ```
//!
//! ## Actions
//! * `allow`: stop evaluating custom rules and skip the managed WAF rules.
//! * `block`: stop and answer 403.
//! * `log`: record the rule name and continue with the next rule.
//!
//! The first matching `allow`/`block` rule (in priority order) decides;
//! matching `log` rules met before it are reported too.
//!
//! ## Match variables (`match`)
//! | variable | value |
//! |---|---|
//! | `client_ip` | client address; IPv4-mapped IPv6 is treated as IPv4 |
//! | `client_country` | ISO 3166-1 alpha-2 code supplied by the proxy (absent when unknown) |
//! | `request_method` | e.g. `GET` |
//! | `request_uri` | request target as received (path + `?` + query), not decoded |
//! | `uri_path` | path, not decoded |
//! | `query_string` | query without `?`, not decoded (absent when there is no `?`) |
//! | `query_arg:NAME` | every value of query argument NAME (name and value form-decoded once: `+` is space, `%XX` decoded) |
//! | `request_header:NAME` | first value of header NAME (case-insensitive) |
//! | `cookie:NAME` | value of cookie NAME from the `Cookie` header, not decoded |
//! | `request_body` | buffered body as text (invalid UTF-8 replaced), as much as the proxy buffered |
//! | `post_arg:NAME` | every value of NAME in an `application/x-www-form-urlencoded` body (form-decoded once) |
//!
//! A variable the request does not have (missing header, cookie, argument,
//! unknown country, no query) makes the condition false, and therefore true
//! when `negate = true`. For variables with several values (repeated
//! arguments) the condition holds when any value matches (before negation).
//!
//! ## Operators (`operator`)
//! Several `values` are alternatives (OR).
//! * `ip_match`: values are IPs or CIDRs (v4 or v6; `::ffff:a.b.c.d/n` with
//!   n >= 96 is read as IPv4). On other variables than `client_ip` the
//!   (transformed) value is parsed as an IP; unparsable means no match.
//! * `geo_match`: two-letter country codes, case-insensitive; only with
//!   `client_ip` or `client_country` (both use the country the proxy looked up).
//! * `equals`, `contains`, `begins_with`, `ends_with`: case-sensitive
//!   comparison of the transformed value with each value as written; use
//!   `transforms = ["lowercase"]` with lowercase values for case-insensitive
//!   matching (a value that cannot match after the case transform is a
//!   configuration error).
//! * `regex`: Rust `regex` syntax (no look-around/backreferences), unanchored;
//!   write `(?i)` for case-insensitive.
//! * `any`: holds when the variable is present; takes no values.
//! * `lt`, `gt`, `le`, `ge`: the transformed value is parsed as a decimal
//!   number (surrounding whitespace ignored) and compared; non-numeric input
//!   does not match. Values must be numbers (strings or TOML numbers).
//!
//! `negate = true` inverts the condition's result.
//!
//! ## Transforms (`transforms`), applied in order before the operator
//! `lowercase`, `uppercase`, `trim`, `url_decode` (`%XX` only, repeated until
//! stable, at most 3 passes), `remove_nulls`, `html_entity_decode`
//! (`&lt; &gt; &amp; &quot; &apos; &nbsp;` and `&#DDD;` / `&#xHH;`).
//! Transforms do not apply to `geo_match` nor to `ip_match` on `client_ip`.

mod condition;
mod facts;
mod transform;

#[cfg(test)]
mod tests;

use std::collections::HashSet;

use serde::Deserialize;

pub use condition::{
    all_match, canonical_ip, compile_conditions, Condition, ConditionConfig, MatchContext,
    MatchVariable, Operator,
};
pub use facts::{HttpRequestFacts, OwnedRequestFacts, RequestFacts};
pub use transform::Transform;

/// A custom rule as written in the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRuleConfig {
    pub name: String,
    pub priority: u32,
    pub action: CustomAction,
    pub conditions: Vec<ConditionConfig>,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomAction {
    /// Stop custom rules, skip the managed WAF rules, proxy the request.
    Allow,
    /// Stop and answer 403.
    Block,
    /// Record and continue.
    Log,
}

/// A compiled rule.
#[derive(Debug)]
pub struct CustomRule {
    pub name: String,
    pub priority: u32,
    pub action: CustomAction,
    conditions: Vec<Condition>,
}

impl CustomRule {
    /// True when all conditions hold for this request.
    pub fn matches(&self, ctx: &MatchContext<'_>) -> bool {
        all_match(&self.conditions, ctx)
    }
}

/// The compiled, priority-ordered rules of one site.
#[derive(Debug, Default)]
pub struct CustomRules {
    rules: Vec<CustomRule>,
}

/// The deciding rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomDecision<'a> {
    pub rule: &'a str,
    /// `Allow` or `Block` (never `Log`).
    pub action: CustomAction,
}

/// Result of evaluating a site's custom rules against one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation<'a> {
    /// The first matching allow/block rule, if any.
    pub decision: Option<CustomDecision<'a>>,
    /// Names of matching `log` rules (in priority order) evaluated before
    /// the decision (or all of them when nothing decided).
    pub logged: Vec<&'a str>,
}

impl Evaluation<'_> {
    /// True when the request must be refused with 403.
    pub fn is_block(&self) -> bool {
        matches!(self.decision, Some(d) if d.action == CustomAction::Block)
    }
    /// True when the managed WAF rules must be skipped.
    pub fn is_allow(&self) -> bool {
        matches!(self.decision, Some(d) if d.action == CustomAction::Allow)
    }
}

/// Compile a site's rules. `key_prefix` names the list in error messages,
/// e.g. `sites[0].custom_rules`; errors read `sites[0].custom_rules[2].priority: ...`.
pub fn compile(configs: &[CustomRuleConfig], key_prefix: &str) -> Result<CustomRules, Vec<String>> {
    let mut errors = Vec::new();
    let mut rules = Vec::with_capacity(configs.len());
    let mut priorities: HashSet<u32> = HashSet::new();
    let mut names: HashSet<&str> = HashSet::new();
    for (i, cfg) in configs.iter().enumerate() {
        let path = format!("{key_prefix}[{i}]");
        if cfg.name.trim().is_empty() {
            errors.push(format!("{path}.name: must not be empty"));
        } else if !names.insert(cfg.name.as_str()) {
            errors.push(format!("{path}.name: duplicate rule name `{}`", cfg.name));
        }
        if !priorities.insert(cfg.priority) {
            errors.push(format!(
                "{path}.priority: priority {} is already used by another rule",
                cfg.priority
            ));
        }
        if cfg.conditions.is_empty() {
            errors.push(format!(
                "{path}.conditions: at least one condition is required"
            ));
            continue;
        }
        match compile_conditions(&cfg.conditions, &format!("{path}.conditions")) {
            Ok(conditions) => rules.push(CustomRule {
                name: cfg.name.clone(),
                priority: cfg.priority,
                action: cfg.action,
                conditions,
            }),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    rules.sort_by_key(|r| r.priority);
    Ok(CustomRules { rules })
}

impl CustomRules {
    /// No rules at all (evaluation can be skipped).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Rules in evaluation order.
    pub fn rules(&self) -> &[CustomRule] {
        &self.rules
    }

    /// True when some rule inspects the body (the proxy may then buffer it).
    pub fn needs_body(&self) -> bool {
        self.rules.iter().any(|r| {
            r.conditions.iter().any(|c| {
                matches!(
                    c.variable(),
                    MatchVariable::RequestBody | MatchVariable::PostArg(_)
                )
            })
        })
    }

    /// Evaluate all rules in priority order.
    pub fn evaluate<'r>(&'r self, facts: &dyn RequestFacts) -> Evaluation<'r> {
        let ctx = MatchContext::new(facts);
        self.evaluate_in(&ctx)
    }

    /// Same as [`evaluate`](Self::evaluate) with a caller-provided context
    /// (lets rate-limit `when` clauses share the parsed request).
    pub fn evaluate_in<'r>(&'r self, ctx: &MatchContext<'_>) -> Evaluation<'r> {
        let mut ev = Evaluation::default();
        for rule in &self.rules {
            if !rule.matches(ctx) {
                continue;
            }
            match rule.action {
                CustomAction::Log => ev.logged.push(rule.name.as_str()),
                action => {
                    ev.decision = Some(CustomDecision {
                        rule: rule.name.as_str(),
                        action,
                    });
                    break;
                }
            }
        }
        ev
    }
}
