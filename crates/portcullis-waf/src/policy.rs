//! Per-site policy: mode, paranoia level, threshold, rule enable/disable/overrides and exclusions.

use std::collections::{HashMap, HashSet};

use regex::Regex;
use serde::Deserialize;

use super::target::{Coll, NameMatch};

/// What the engine does with a request whose score reaches the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Mode {
    /// Block requests whose score reaches the threshold.
    #[default]
    Prevention,
    /// Evaluate and report, never block.
    Detection,
    /// Do not evaluate at all.
    Off,
}

/// A rule id or an inclusive id range written as `"942100-942199"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RuleIdSpec {
    /// One rule: `942100`.
    Id(u32),
    /// A range, `"942100-942199"`, or one id written as a string.
    Range(String),
}

impl RuleIdSpec {
    fn to_range(&self) -> Result<(u32, u32), String> {
        match self {
            RuleIdSpec::Id(i) => Ok((*i, *i)),
            RuleIdSpec::Range(s) => {
                let s = s.trim();
                if let Some((a, b)) = s.split_once('-') {
                    let a: u32 = a
                        .trim()
                        .parse()
                        .map_err(|_| format!("bad rule id range {:?}", s))?;
                    let b: u32 = b
                        .trim()
                        .parse()
                        .map_err(|_| format!("bad rule id range {:?}", s))?;
                    if a > b {
                        return Err(format!("bad rule id range {:?}", s));
                    }
                    Ok((a, b))
                } else {
                    let a: u32 = s.parse().map_err(|_| format!("bad rule id {:?}", s))?;
                    Ok((a, a))
                }
            }
        }
    }
}

/// Severity given by name or as a number of anomaly points.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum SeveritySpec {
    /// Anomaly points: `5`.
    Points(u32),
    /// `critical` (5), `error` (4), `warning` (3), `notice` (2) or `info` (0).
    Name(String),
}

impl SeveritySpec {
    /// The points this severity stands for; an error for an unknown name.
    pub fn points(&self) -> Result<u32, String> {
        match self {
            SeveritySpec::Points(p) => Ok(*p),
            SeveritySpec::Name(n) => {
                severity_points(n).ok_or_else(|| format!("unknown severity {:?}", n))
            }
        }
    }
}

/// The points of a severity name (`critical` 5 ... `info` 0); None for an unknown name.
pub(crate) fn severity_points(name: &str) -> Option<u32> {
    Some(match name.to_ascii_lowercase().as_str() {
        "critical" => 5,
        "error" => 4,
        "warning" => 3,
        "notice" => 2,
        "info" => 0,
        _ => return None,
    })
}

/// A change to one rule for this policy: its severity, its paranoia level, or enabling it
/// whatever the policy's level.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RuleOverrideConfig {
    /// The rule.
    pub id: u32,
    /// Its severity instead of the rule file's.
    #[serde(default)]
    pub severity: Option<SeveritySpec>,
    /// Its paranoia level instead of the rule file's.
    #[serde(default)]
    pub paranoia: Option<u8>,
    /// Force-enable a rule regardless of paranoia level.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// An exclusion. With no `target` the matched rules are disabled entirely (optionally only for
/// `host` / `path_prefix`); with a `target` ("args", "headers", "cookies", "args_names", ...) only
/// variables of that collection whose name matches the `name_*` condition are skipped.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ExclusionConfig {
    /// Rule ids or ranges; empty means all rules.
    #[serde(default)]
    pub rules: Vec<RuleIdSpec>,
    /// Only variables of this collection (`args`, `headers`, `cookies`, `args_names`, ...);
    /// none: the rules are off for the whole request.
    #[serde(default)]
    pub target: Option<String>,
    /// Only the target variables with exactly this name.
    #[serde(default)]
    pub name_equals: Option<String>,
    /// Only those whose name starts with this.
    #[serde(default)]
    pub name_starts_with: Option<String>,
    /// Only those whose name ends with this.
    #[serde(default)]
    pub name_ends_with: Option<String>,
    /// Only those whose name contains this.
    #[serde(default)]
    pub name_contains: Option<String>,
    /// Only those whose name matches this regex.
    #[serde(default)]
    pub name_regex: Option<String>,
    /// Exact host (port ignored) or `*.suffix`.
    #[serde(default)]
    pub host: Option<String>,
    /// Only requests whose path starts with this.
    #[serde(default)]
    pub path_prefix: Option<String>,
}

fn d_pl() -> u8 {
    1
}
fn d_threshold() -> u32 {
    5
}
fn d_body_limit() -> usize {
    128 * 1024
}

fn d_true() -> bool {
    true
}

/// Serde form of a policy, e.g. a `[waf]` table in the proxy config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// Prevention (the default), detection or off.
    #[serde(default)]
    pub mode: Mode,
    /// Rules of this paranoia level and below run (1-4; default 1).
    #[serde(default = "d_pl")]
    pub paranoia_level: u8,
    /// The score at which a request is over the threshold (default 5: one critical match).
    #[serde(default = "d_threshold")]
    pub anomaly_threshold: u32,
    /// Rules switched off (ids or ranges).
    #[serde(default)]
    pub disabled_rules: Vec<RuleIdSpec>,
    /// Per-rule changes.
    #[serde(default)]
    pub overrides: Vec<RuleOverrideConfig>,
    /// Rules switched off for some requests or some of their variables.
    #[serde(default)]
    pub exclusions: Vec<ExclusionConfig>,
    /// Bytes of body inspected (the caller buffers up to this much).
    #[serde(default = "d_body_limit")]
    pub body_limit: usize,
    /// Remember values that matched no rule and skip them when they come again (see
    /// the engine's clean-value memory). Only benchmarks of the uncached engine turn it off.
    #[serde(default = "d_true")]
    pub remember_clean_values: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            mode: Mode::Prevention,
            paranoia_level: 1,
            anomaly_threshold: 5,
            disabled_rules: Vec::new(),
            overrides: Vec::new(),
            exclusions: Vec::new(),
            body_limit: d_body_limit(),
            remember_clean_values: true,
        }
    }
}

/// An exclusion, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Exclusion {
    pub rules: Vec<(u32, u32)>,
    /// None = whole rule.
    pub target: Option<(Coll, NameMatch)>,
    pub host: Option<String>,
    pub path_prefix: Option<String>,
}

impl Exclusion {
    pub fn covers_rule(&self, id: u32) -> bool {
        self.rules.is_empty() || self.rules.iter().any(|(a, b)| id >= *a && id <= *b)
    }

    pub fn applies_to_request(&self, host: &str, path: &str) -> bool {
        if let Some(h) = &self.host {
            let ok = if let Some(suffix) = h.strip_prefix("*.") {
                host.len() > suffix.len()
                    && host.ends_with(suffix)
                    && host[..host.len() - suffix.len()].ends_with('.')
            } else {
                host.eq_ignore_ascii_case(h)
            };
            if !ok {
                return false;
            }
        }
        if let Some(p) = &self.path_prefix {
            if !path.starts_with(p.as_str()) {
                return false;
            }
        }
        true
    }
}

/// An override, compiled.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RuleOverride {
    pub severity: Option<u32>,
    pub paranoia: Option<u8>,
    pub enabled: Option<bool>,
}

/// Compiled policy, cheap to consult per request.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Prevention, detection or off.
    pub mode: Mode,
    /// Rules of this paranoia level and below run.
    pub paranoia_level: u8,
    /// The score at which a request is over the threshold.
    pub anomaly_threshold: u32,
    pub(crate) disabled_rules: Vec<(u32, u32)>,
    pub(crate) overrides: HashMap<u32, RuleOverride>,
    pub(crate) exclusions: Vec<Exclusion>,
    /// Bytes of body inspected: the caller buffers up to this much and passes the rest on
    /// uninspected, or refuses it ([`HttpRequest::body_truncated`](crate::HttpRequest)).
    pub body_limit: usize,
    /// Remember values that matched no rule and skip them when they come again (on unless a
    /// benchmark measures the engine without it).
    pub remember_clean_values: bool,
    disabled_set: HashSet<u32>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::from_config(&PolicyConfig::default()).unwrap_or_else(|_| Policy {
            mode: Mode::Prevention,
            paranoia_level: 1,
            anomaly_threshold: 5,
            disabled_rules: Vec::new(),
            overrides: HashMap::new(),
            exclusions: Vec::new(),
            body_limit: d_body_limit(),
            remember_clean_values: true,
            disabled_set: HashSet::new(),
        })
    }
}

impl Policy {
    /// The default policy with this mode, paranoia level and threshold.
    pub fn new(mode: Mode, paranoia_level: u8, anomaly_threshold: u32) -> Policy {
        Policy {
            mode,
            paranoia_level,
            anomaly_threshold,
            ..Policy::default()
        }
    }

    /// Compiles a policy from its configuration: rule ranges, override severities and exclusion
    /// patterns are checked here, so evaluation never meets a bad one.
    pub fn from_config(c: &PolicyConfig) -> Result<Policy, String> {
        if !(1..=4).contains(&c.paranoia_level) {
            return Err(format!(
                "paranoia_level must be 1..=4, got {}",
                c.paranoia_level
            ));
        }
        if c.anomaly_threshold == 0 {
            return Err("anomaly_threshold must be at least 1".to_string());
        }
        let mut disabled_rules = Vec::new();
        let mut disabled_set = HashSet::new();
        for d in &c.disabled_rules {
            let (a, b) = d.to_range()?;
            if a == b {
                disabled_set.insert(a);
            } else {
                disabled_rules.push((a, b));
            }
        }
        let mut overrides = HashMap::new();
        for o in &c.overrides {
            let severity = match &o.severity {
                Some(s) => Some(
                    s.points()
                        .map_err(|e| format!("override for rule {}: {}", o.id, e))?,
                ),
                None => None,
            };
            if let Some(p) = o.paranoia {
                if !(1..=4).contains(&p) {
                    return Err(format!(
                        "override for rule {}: paranoia must be 1..=4",
                        o.id
                    ));
                }
            }
            overrides.insert(
                o.id,
                RuleOverride {
                    severity,
                    paranoia: o.paranoia,
                    enabled: o.enabled,
                },
            );
        }
        let mut exclusions = Vec::new();
        for (i, e) in c.exclusions.iter().enumerate() {
            let rules = e
                .rules
                .iter()
                .map(|r| r.to_range())
                .collect::<Result<Vec<_>, _>>()?;
            let name = if let Some(s) = &e.name_equals {
                NameMatch::Exact(s.to_ascii_lowercase())
            } else if let Some(s) = &e.name_starts_with {
                NameMatch::StartsWith(s.to_ascii_lowercase())
            } else if let Some(s) = &e.name_ends_with {
                NameMatch::EndsWith(s.to_ascii_lowercase())
            } else if let Some(s) = &e.name_contains {
                NameMatch::Contains(s.to_ascii_lowercase())
            } else if let Some(s) = &e.name_regex {
                NameMatch::Regex(
                    Regex::new(&format!("(?i){}", s))
                        .map_err(|err| format!("exclusion #{}: bad name_regex: {}", i + 1, err))?,
                )
            } else {
                NameMatch::Any
            };
            let target = match &e.target {
                Some(t) => {
                    let coll = Coll::parse(t)
                        .ok_or_else(|| format!("exclusion #{}: unknown target {:?}", i + 1, t))?;
                    Some((coll, name))
                }
                None => {
                    if !matches!(name, NameMatch::Any) {
                        return Err(format!("exclusion #{}: name_* needs a target", i + 1));
                    }
                    None
                }
            };
            exclusions.push(Exclusion {
                rules,
                target,
                host: e.host.clone(),
                path_prefix: e.path_prefix.clone(),
            });
        }
        Ok(Policy {
            mode: c.mode,
            paranoia_level: c.paranoia_level,
            anomaly_threshold: c.anomaly_threshold,
            disabled_rules,
            overrides,
            exclusions,
            body_limit: c.body_limit,
            remember_clean_values: c.remember_clean_values,
            disabled_set,
        })
    }

    /// A fingerprint of which rules this policy runs (paranoia level, disabled rules, overrides):
    /// two policies with the same key enable exactly the same rules, so a value found clean under
    /// one is clean under the other. Mode and threshold do not change whether a rule matches.
    /// Computed per request (the fields are public), with a fast fixed-seed hash: the key only
    /// needs to tell policies apart within one process, and this runs on every request.
    pub fn selection_key(&self) -> u64 {
        use std::hash::{BuildHasher, Hash, Hasher};
        const SEED: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x5eed);
        // Order-independent combination for the hash sets and maps.
        fn one<T: Hash>(x: T) -> u64 {
            SEED.hash_one(x)
        }
        let mut h = SEED.build_hasher();
        self.paranoia_level.hash(&mut h);
        self.disabled_rules.hash(&mut h);
        let set = self
            .disabled_set
            .iter()
            .fold(0u64, |acc, id| acc.wrapping_add(one(id)));
        set.hash(&mut h);
        let overrides = self.overrides.iter().fold(0u64, |acc, (id, o)| {
            acc.wrapping_add(one((id, o.severity, o.paranoia, o.enabled)))
        });
        overrides.hash(&mut h);
        h.finish()
    }

    /// Parse a TOML policy document (the fields of [`PolicyConfig`] at top level).
    pub fn from_toml(text: &str) -> Result<Policy, String> {
        let c: PolicyConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        Policy::from_config(&c)
    }

    /// Whether the policy switches this rule off (`disabled_rules`, or an override that
    /// disables it).
    pub fn is_disabled(&self, id: u32) -> bool {
        (!self.disabled_set.is_empty() && self.disabled_set.contains(&id))
            || self
                .disabled_rules
                .iter()
                .any(|(a, b)| id >= *a && id <= *b)
    }

    /// Effective (enabled, severity, paranoia) of a rule under this policy.
    #[inline]
    pub fn effective(&self, id: u32, severity: u32, pl: u8) -> Option<u32> {
        if self.is_disabled(id) {
            return None;
        }
        let (mut sev, mut p, mut forced) = (severity, pl, false);
        if !self.overrides.is_empty() {
            if let Some(o) = self.overrides.get(&id) {
                if let Some(s) = o.severity {
                    sev = s;
                }
                if let Some(x) = o.paranoia {
                    p = x;
                }
                match o.enabled {
                    Some(false) => return None,
                    Some(true) => forced = true,
                    None => {}
                }
            }
        }
        if !forced && p > self.paranoia_level {
            return None;
        }
        Some(sev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_policy() {
        let p = Policy::from_toml(
            r#"
mode = "detection"
paranoia_level = 2
anomaly_threshold = 10
disabled_rules = [942100, "941000-941999"]
[[overrides]]
id = 920350
severity = "notice"
paranoia = 3
[[exclusions]]
rules = [942100]
target = "args"
name_starts_with = "utm_"
[[exclusions]]
host = "*.example.com"
path_prefix = "/admin"
"#,
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Detection);
        assert!(p.is_disabled(942100));
        assert!(p.is_disabled(941500));
        assert!(!p.is_disabled(942101));
        assert_eq!(p.effective(920350, 5, 1), None); // moved to PL3 > PL2
        assert_eq!(p.effective(920351, 5, 2), Some(5));
        assert!(p.exclusions[1].applies_to_request("a.example.com", "/admin/x"));
        assert!(!p.exclusions[1].applies_to_request("example.com", "/admin/x"));
        assert!(!p.exclusions[1].applies_to_request("a.example.com", "/public"));
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        assert!(Policy::from_toml("modes = \"off\"").is_err());
        assert!(Policy::from_toml("paranoia_level = 7").is_err());
        assert!(Policy::from_toml("[[exclusions]]\nname_equals = \"x\"").is_err());
        let d = Policy::default();
        assert_eq!(
            (d.mode, d.paranoia_level, d.anomaly_threshold),
            (Mode::Prevention, 1, 5)
        );
    }
}
