//! Network rules: NSG-style allow/deny decisions taken when a TCP connection
//! is accepted, before any TLS or HTTP work.
//!
//! ```toml
//! [network_rules]
//! default_action = "allow"
//!
//! [network_rules.address_sets]
//! office = ["203.0.113.0/24", "2001:db8:42::/48"]
//! blocklist = ["file:blocklists/drop.txt"]   # one CIDR per line, '#' comments
//!
//! [[network_rules.rules]]
//! priority = 100
//! name = "admin-from-office"
//! action = "allow"
//! sources = ["$office"]
//! ports = [8443]
//!
//! [[network_rules.rules]]
//! priority = 110
//! name = "admin-others"
//! action = "deny"
//! sources = ["*"]
//! ports = [8443]
//!
//! [[network_rules.rules]]
//! priority = 200
//! name = "drop-list"
//! action = "deny"
//! sources = ["$blocklist", "192.0.2.66"]
//! ```
//!
//! Rules are evaluated in ascending priority (lowest number first); the first
//! rule whose sources contain the peer and whose ports contain the local port
//! decides. Otherwise `default_action` applies. Also here: [`PrefixSet`]
//! (longest-prefix match), [`TrustedProxies`] (X-Forwarded-For) and the
//! PROXY protocol parser.

mod prefix;
mod proxy_protocol;
mod trusted;

pub use prefix::{parse_cidr, parse_cidr_lines, PrefixSet};
pub use proxy_protocol::{
    encode_v2, parse_proxy_header, ProxyError, ProxyHeader, V1_MAX_LEN, V2_SIGNATURE,
};
pub use trusted::TrustedProxies;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// The config key under which [`NetworkRulesConfig`] lives; used in error messages.
pub const CONFIG_KEY: &str = "network_rules";

/// Source lists up to this many literal prefixes are scanned linearly; longer
/// ones go into a [`PrefixSet`].
const LINEAR_MAX: usize = 8;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    #[default]
    Allow,
    Deny,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        })
    }
}

/// Transport protocol a rule applies to. Connections are TCP, so both match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    #[serde(rename = "*", alias = "any")]
    Any,
}

/// A local port or an inclusive range: `443` or `"8000-8100"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortSpec {
    pub first: u16,
    pub last: u16,
}

impl PortSpec {
    fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl std::str::FromStr for PortSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid port or port range {s:?}");
        let num = |t: &str| -> Result<u16, String> {
            let t = t.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            match t.parse::<u16>() {
                Ok(p) if p > 0 => Ok(p),
                _ => Err(bad()),
            }
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let p = num(s)?;
                (p, p)
            }
        };
        if first > last {
            return Err(bad());
        }
        Ok(PortSpec { first, last })
    }
}

impl Serialize for PortSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            s.serialize_u16(self.first)
        } else {
            s.serialize_str(&self.to_string())
        }
    }
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PortSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number (1-65535) or a range string like \"8000-8100\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PortSpec, E> {
                match u16::try_from(v) {
                    Ok(p) if p > 0 => Ok(PortSpec { first: p, last: p }),
                    _ => Err(E::custom(format!("invalid port {v}"))),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PortSpec, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::custom(format!("invalid port {v}"))),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PortSpec, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// One rule as written in the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Lower numbers are evaluated first; unique across rules.
    pub priority: u32,
    /// Unique name, reported in decisions and logs.
    pub name: String,
    pub action: Action,
    /// CIDRs, bare addresses, `$set` references or `*` (any address).
    pub sources: Vec<String>,
    /// Local (listener) ports; absent = all ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortSpec>>,
    /// `tcp` or `*`; absent = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

/// The `[network_rules]` config section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkRulesConfig {
    /// What happens when no rule matches. Default: allow.
    #[serde(default)]
    pub default_action: Action,
    /// Named address lists usable as `$name` in rule sources. Each entry is a
    /// CIDR, a bare address, or `file:PATH` (one CIDR per line, `#` comments;
    /// relative paths are resolved against the config file's directory).
    #[serde(default)]
    pub address_sets: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// The outcome of [`NetworkRules::evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    pub action: Action,
    /// The deciding rule; `None` when the default action applied.
    pub rule_name: Option<&'a str>,
    /// The deciding rule's priority; `None` for the default action.
    pub priority: Option<u32>,
}

impl Decision<'_> {
    pub fn is_allowed(&self) -> bool {
        self.action == Action::Allow
    }

    /// The rule name, or `"default"`.
    pub fn rule_label(&self) -> &str {
        self.rule_name.unwrap_or("default")
    }
}

#[derive(Debug, Clone)]
enum Sources {
    Any,
    /// Literal prefixes scanned linearly (short lists) plus shared sets.
    List {
        small: Vec<IpNet>,
        sets: Vec<Arc<PrefixSet<()>>>,
    },
}

impl Sources {
    #[inline]
    fn contains(&self, ip: IpAddr) -> bool {
        match self {
            Sources::Any => true,
            Sources::List { small, sets } => {
                small.iter().any(|n| n.contains(&ip)) || sets.iter().any(|s| s.contains(ip))
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    priority: u32,
    name: String,
    action: Action,
    sources: Sources,
    ports: Option<Vec<PortSpec>>,
}

/// Compiled, immutable network rules. Cheap to share behind an `Arc`.
#[derive(Debug, Clone, Default)]
pub struct NetworkRules {
    default_action: Action,
    rules: Vec<Rule>,
}

impl NetworkRulesConfig {
    /// Compiles the config. `base_dir` resolves relative `file:` paths in
    /// address sets (pass the config file's directory). Every problem is
    /// reported, each message naming its key path.
    pub fn compile(&self, base_dir: Option<&Path>) -> Result<NetworkRules, Vec<String>> {
        NetworkRules::compile(self, base_dir)
    }
}

impl NetworkRules {
    /// See [`NetworkRulesConfig::compile`].
    pub fn compile(
        cfg: &NetworkRulesConfig,
        base_dir: Option<&Path>,
    ) -> Result<NetworkRules, Vec<String>> {
        let mut errors = Vec::new();

        // Address sets.
        let mut sets: HashMap<&str, Arc<PrefixSet<()>>> = HashMap::new();
        for (name, entries) in &cfg.address_sets {
            let key = format!("{CONFIG_KEY}.address_sets.{name}");
            if !valid_set_name(name) {
                errors.push(format!(
                    "{key}: invalid set name {name:?} (use letters, digits, '_' and '-')"
                ));
            }
            let mut nets = Vec::new();
            for (i, entry) in entries.iter().enumerate() {
                let entry_key = format!("{key}[{i}]");
                if let Some(path) = entry.trim().strip_prefix("file:") {
                    let path = path.trim();
                    let full = match base_dir {
                        Some(b) if Path::new(path).is_relative() => b.join(path),
                        _ => Path::new(path).to_path_buf(),
                    };
                    match std::fs::read_to_string(&full) {
                        Ok(text) => match parse_cidr_lines(&text) {
                            Ok(v) => nets.extend(v),
                            Err(e) => {
                                errors.push(format!("{entry_key}: file {}: {e}", full.display()))
                            }
                        },
                        Err(e) => errors.push(format!(
                            "{entry_key}: cannot read file {}: {e}",
                            full.display()
                        )),
                    }
                } else {
                    match parse_cidr(entry) {
                        Ok(n) => nets.push(n),
                        Err(e) => errors.push(format!("{entry_key}: {e}")),
                    }
                }
            }
            sets.insert(
                name.as_str(),
                Arc::new(PrefixSet::new(nets.into_iter().map(|n| (n, ())))),
            );
        }

        // Rules.
        let mut seen_priority: HashMap<u32, usize> = HashMap::new();
        let mut seen_name: HashSet<&str> = HashSet::new();
        let mut rules = Vec::with_capacity(cfg.rules.len());
        for (ri, r) in cfg.rules.iter().enumerate() {
            let key = format!("{CONFIG_KEY}.rules[{ri}]");
            if let Some(prev) = seen_priority.insert(r.priority, ri) {
                errors.push(format!(
                    "{key}.priority: duplicate priority {} (also used by {CONFIG_KEY}.rules[{prev}])",
                    r.priority
                ));
            }
            if r.name.trim().is_empty() {
                errors.push(format!("{key}.name: must not be empty"));
            } else if !seen_name.insert(r.name.as_str()) {
                errors.push(format!("{key}.name: duplicate rule name {:?}", r.name));
            }
            if r.sources.is_empty() {
                errors.push(format!(
                    "{key}.sources: must not be empty (use \"*\" for any address)"
                ));
            }
            let mut any = false;
            let mut literal = Vec::new();
            let mut rule_sets = Vec::new();
            for (si, s) in r.sources.iter().enumerate() {
                let s_trim = s.trim();
                if s_trim == "*" {
                    any = true;
                } else if let Some(set_name) = s_trim.strip_prefix('$') {
                    match sets.get(set_name) {
                        Some(set) => rule_sets.push(set.clone()),
                        None => errors.push(format!(
                            "{key}.sources[{si}]: unknown address set {s_trim:?} (define it under {CONFIG_KEY}.address_sets)"
                        )),
                    }
                } else {
                    match parse_cidr(s_trim) {
                        Ok(n) => literal.push(n),
                        Err(e) => errors.push(format!("{key}.sources[{si}]: {e}")),
                    }
                }
            }
            if let Some(ports) = &r.ports {
                if ports.is_empty() {
                    errors.push(format!(
                        "{key}.ports: must not be empty (omit it for all ports)"
                    ));
                }
            }
            let sources = if any {
                Sources::Any
            } else {
                // Canonicalise mapped literals so linear matching agrees with lookups.
                let literal: Vec<IpNet> = literal.into_iter().map(canonical_net).collect();
                if literal.len() > LINEAR_MAX {
                    rule_sets.push(Arc::new(PrefixSet::new(
                        literal.into_iter().map(|n| (n, ())),
                    )));
                    Sources::List {
                        small: Vec::new(),
                        sets: rule_sets,
                    }
                } else {
                    Sources::List {
                        small: literal,
                        sets: rule_sets,
                    }
                }
            };
            rules.push(Rule {
                priority: r.priority,
                name: r.name.clone(),
                action: r.action,
                sources,
                ports: r.ports.clone(),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        rules.sort_by_key(|r| r.priority);
        Ok(NetworkRules {
            default_action: cfg.default_action,
            rules,
        })
    }

    /// Rules that allow everything (no rules, default allow).
    pub fn allow_all() -> Self {
        NetworkRules::default()
    }

    /// Whether there are no rules (every connection gets the default action).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn default_action(&self) -> Action {
        self.default_action
    }

    /// Number of compiled rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Decides a connection from `peer` to local port `local_port`.
    /// IPv4-mapped peers (`::ffff:a.b.c.d`) are matched as IPv4.
    pub fn evaluate(&self, peer: IpAddr, local_port: u16) -> Decision<'_> {
        let peer = peer.to_canonical();
        for r in &self.rules {
            if let Some(ports) = &r.ports {
                if !ports.iter().any(|p| p.contains(local_port)) {
                    continue;
                }
            }
            if r.sources.contains(peer) {
                return Decision {
                    action: r.action,
                    rule_name: Some(&r.name),
                    priority: Some(r.priority),
                };
            }
        }
        Decision {
            action: self.default_action,
            rule_name: None,
            priority: None,
        }
    }

    /// One line per rule, in evaluation order (for `portcullis check`).
    pub fn summary(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .rules
            .iter()
            .map(|r| {
                let src = match &r.sources {
                    Sources::Any => "*".to_string(),
                    Sources::List { small, sets } => {
                        let n: usize = small.len() + sets.iter().map(|s| s.len()).sum::<usize>();
                        format!("{n} prefixes")
                    }
                };
                let ports = match &r.ports {
                    None => "*".to_string(),
                    Some(p) => p
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                };
                format!(
                    "{:>6} {:<5} {} sources={} ports={}",
                    r.priority, r.action, r.name, src, ports
                )
            })
            .collect();
        out.push(format!("     - {:<5} default", self.default_action));
        out
    }
}

fn canonical_net(n: IpNet) -> IpNet {
    PrefixSet::new([(n, ())]).entries()[0].0
}

fn valid_set_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml_like: serde_json::Value) -> NetworkRulesConfig {
        serde_json::from_value(toml_like).unwrap()
    }

    #[test]
    fn priority_order_and_default() {
        let c = cfg(serde_json::json!({
            "default_action": "deny",
            "address_sets": {"office": ["203.0.113.0/24"]},
            "rules": [
                {"priority": 200, "name": "all-web", "action": "allow", "sources": ["*"], "ports": [443, "8000-8001"]},
                {"priority": 100, "name": "bad", "action": "deny", "sources": ["203.0.113.66"]},
                {"priority": 150, "name": "office", "action": "allow", "sources": ["$office"], "protocol": "tcp"},
            ]
        }));
        let r = c.compile(None).unwrap();
        let d = r.evaluate("203.0.113.66".parse().unwrap(), 443);
        assert_eq!((d.action, d.rule_name), (Action::Deny, Some("bad")));
        let d = r.evaluate("203.0.113.5".parse().unwrap(), 22);
        assert_eq!((d.action, d.rule_name), (Action::Allow, Some("office")));
        let d = r.evaluate("::ffff:198.51.100.1".parse().unwrap(), 8001);
        assert_eq!((d.action, d.rule_name), (Action::Allow, Some("all-web")));
        let d = r.evaluate("198.51.100.1".parse().unwrap(), 22);
        assert_eq!(
            (d.action, d.rule_name, d.rule_label()),
            (Action::Deny, None, "default")
        );
        assert_eq!(r.summary().len(), 4);
    }

    #[test]
    fn errors_name_key_paths() {
        let c = cfg(serde_json::json!({
            "address_sets": {"x": ["10.0.0.0/8", "file:/nonexistent/portcullis-test.txt"]},
            "rules": [
                {"priority": 1, "name": "a", "action": "deny", "sources": ["10.0.0.0/33"]},
                {"priority": 1, "name": "a", "action": "deny", "sources": ["$nope"], "ports": []},
                {"priority": 2, "name": "c", "action": "deny", "sources": []},
            ]
        }));
        let e = c.compile(None).unwrap_err();
        let has = |s: &str| e.iter().any(|m| m.contains(s));
        assert!(
            has("network_rules.rules[0].sources[0]: invalid CIDR \"10.0.0.0/33\""),
            "{e:?}"
        );
        assert!(
            has("network_rules.rules[1].priority: duplicate priority 1"),
            "{e:?}"
        );
        assert!(
            has("network_rules.rules[1].name: duplicate rule name"),
            "{e:?}"
        );
        assert!(
            has("network_rules.rules[1].sources[0]: unknown address set \"$nope\""),
            "{e:?}"
        );
        assert!(
            has("network_rules.rules[1].ports: must not be empty"),
            "{e:?}"
        );
        assert!(
            has("network_rules.rules[2].sources: must not be empty"),
            "{e:?}"
        );
        assert!(
            has("network_rules.address_sets.x[1]: cannot read file"),
            "{e:?}"
        );
        assert_eq!(e.len(), 7, "{e:?}");
    }

    #[test]
    fn unknown_fields_and_bad_ports_rejected() {
        let bad = serde_json::json!({"rules": [{"priority": 1, "name": "a", "action": "deny", "sources": ["*"], "port": [1]}]});
        assert!(serde_json::from_value::<NetworkRulesConfig>(bad).is_err());
        let bad = serde_json::json!({"rules": [{"priority": 1, "name": "a", "action": "deny", "sources": ["*"], "ports": [70000]}]});
        assert!(serde_json::from_value::<NetworkRulesConfig>(bad).is_err());
        let bad = serde_json::json!({"rules": [{"priority": 1, "name": "a", "action": "deny", "sources": ["*"], "ports": ["9-8"]}]});
        assert!(serde_json::from_value::<NetworkRulesConfig>(bad).is_err());
    }
}
