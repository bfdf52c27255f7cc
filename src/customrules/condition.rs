//! Match conditions shared by custom rules and rate-limit `when` clauses.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};
use regex::RegexSet;
use serde::{Deserialize, Deserializer};

use super::facts::RequestFacts;
use super::transform::{apply_all, form_decode, Transform};

/// One condition as written in the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    /// Match variable, e.g. `request_header:User-Agent`.
    #[serde(rename = "match")]
    pub variable: String,
    pub operator: Operator,
    /// Alternatives (OR). Strings or numbers. Must be empty for `any`.
    #[serde(default, deserialize_with = "de_values")]
    pub values: Vec<String>,
    #[serde(default)]
    pub transforms: Vec<Transform>,
    #[serde(default)]
    pub negate: bool,
}

/// Condition operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    IpMatch,
    GeoMatch,
    Equals,
    Contains,
    BeginsWith,
    EndsWith,
    Regex,
    Any,
    Lt,
    Gt,
    Le,
    Ge,
}

fn de_values<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Str(String),
        Int(i64),
        Float(f64),
    }
    let raw: Vec<Scalar> = Vec::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|s| match s {
            Scalar::Str(s) => s,
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
        })
        .collect())
}

/// What part of the request a condition inspects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchVariable {
    ClientIp,
    ClientCountry,
    RequestMethod,
    RequestUri,
    UriPath,
    QueryString,
    /// Form-decoded argument name; the value is form-decoded once.
    QueryArg(String),
    /// Lowercased header name.
    RequestHeader(String),
    Cookie(String),
    RequestBody,
    /// Argument of an `application/x-www-form-urlencoded` body.
    PostArg(String),
}

impl MatchVariable {
    /// Parse `client_ip`, `request_header:NAME`, ...
    pub fn parse(s: &str) -> Result<MatchVariable, String> {
        let (head, arg) = match s.split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (s, None),
        };
        let need_arg = |what: &str| -> Result<String, String> {
            match arg {
                Some(a) if !a.is_empty() => Ok(a.to_string()),
                _ => Err(format!("`{head}` needs a {what}, e.g. `{head}:NAME`")),
            }
        };
        let no_arg = |v: MatchVariable| -> Result<MatchVariable, String> {
            match arg {
                None => Ok(v),
                Some(_) => Err(format!("`{head}` takes no `:NAME` selector")),
            }
        };
        match head {
            "client_ip" => no_arg(MatchVariable::ClientIp),
            "client_country" => no_arg(MatchVariable::ClientCountry),
            "request_method" => no_arg(MatchVariable::RequestMethod),
            "request_uri" => no_arg(MatchVariable::RequestUri),
            "uri_path" => no_arg(MatchVariable::UriPath),
            "query_string" => no_arg(MatchVariable::QueryString),
            "request_body" => no_arg(MatchVariable::RequestBody),
            "query_arg" => Ok(MatchVariable::QueryArg(need_arg("argument name")?)),
            "post_arg" => Ok(MatchVariable::PostArg(need_arg("argument name")?)),
            "cookie" => Ok(MatchVariable::Cookie(need_arg("cookie name")?)),
            "request_header" => {
                let name = need_arg("header name")?;
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(format!("invalid header name `{name}`"));
                }
                Ok(MatchVariable::RequestHeader(name.to_ascii_lowercase()))
            }
            other => Err(format!(
                "unknown match variable `{other}` (expected one of client_ip, client_country, \
                 request_method, request_uri, uri_path, query_string, query_arg:NAME, \
                 request_header:NAME, cookie:NAME, request_body, post_arg:NAME)"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum NumOp {
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Debug)]
enum Matcher {
    Ip(Vec<IpNet>),
    Geo(Vec<String>),
    Equals(Vec<String>),
    Contains(Vec<String>),
    BeginsWith(Vec<String>),
    EndsWith(Vec<String>),
    Regex(RegexSet),
    Any,
    Num(NumOp, Vec<f64>),
}

/// A compiled condition.
#[derive(Debug)]
pub struct Condition {
    variable: MatchVariable,
    transforms: Vec<Transform>,
    negate: bool,
    matcher: Matcher,
}

/// Normalise IPv4-mapped IPv6 addresses to IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    let net = if s.contains('/') {
        s.parse::<IpNet>()
            .map_err(|e| format!("invalid CIDR `{s}`: {e}"))?
    } else {
        IpNet::from(
            s.parse::<IpAddr>()
                .map_err(|e| format!("invalid IP `{s}`: {e}"))?,
        )
    };
    // ::ffff:a.b.c.d/n (n >= 96) is an IPv4 network in disguise.
    if let IpNet::V6(n6) = net {
        if let Some(v4) = n6.addr().to_ipv4_mapped() {
            if n6.prefix_len() >= 96 {
                let v4net = Ipv4Net::new(v4, n6.prefix_len() - 96).map_err(|e| e.to_string())?;
                return Ok(IpNet::V4(v4net.trunc()));
            }
        }
    }
    Ok(net.trunc())
}

/// Compile the conditions at `path[0..]` (errors read `path[i].field: msg`).
pub fn compile_conditions(
    configs: &[ConditionConfig],
    path: &str,
) -> Result<Vec<Condition>, Vec<String>> {
    let mut out = Vec::with_capacity(configs.len());
    let mut errors = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        match Condition::compile(c, &format!("{path}[{i}]")) {
            Ok(cond) => out.push(cond),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// True when every condition holds (an empty list holds).
pub fn all_match(conditions: &[Condition], ctx: &MatchContext<'_>) -> bool {
    conditions.iter().all(|c| c.matches(ctx))
}

impl Condition {
    /// Compile one condition; `path` names it in error messages.
    pub fn compile(cfg: &ConditionConfig, path: &str) -> Result<Condition, Vec<String>> {
        let mut errors = Vec::new();
        let variable = match MatchVariable::parse(&cfg.variable) {
            Ok(v) => Some(v),
            Err(e) => {
                errors.push(format!("{path}.match: {e}"));
                None
            }
        };
        if cfg.operator == Operator::Any {
            if !cfg.values.is_empty() {
                errors.push(format!("{path}.values: operator `any` takes no values"));
            }
        } else if cfg.values.is_empty() {
            errors.push(format!("{path}.values: at least one value is required"));
        }
        // A value that differs from its own case-transformed form can never
        // match after a lowercase/uppercase transform: flag it.
        let last_case = cfg
            .transforms
            .iter()
            .rev()
            .find(|t| matches!(t, Transform::Lowercase | Transform::Uppercase))
            .copied();
        let string_op = matches!(
            cfg.operator,
            Operator::Equals | Operator::Contains | Operator::BeginsWith | Operator::EndsWith
        );
        if string_op {
            for (i, v) in cfg.values.iter().enumerate() {
                let bad = match last_case {
                    Some(Transform::Lowercase) => v.chars().any(|c| c.is_uppercase()),
                    Some(Transform::Uppercase) => v.chars().any(|c| c.is_lowercase()),
                    _ => false,
                };
                if bad {
                    errors.push(format!(
                        "{path}.values[{i}]: `{v}` can never match after the {:?} transform; write it in that case",
                        last_case.unwrap()
                    ));
                }
            }
        }
        let values = &cfg.values;
        let matcher = match cfg.operator {
            Operator::IpMatch => {
                let mut nets = Vec::new();
                for (i, v) in values.iter().enumerate() {
                    match parse_net(v) {
                        Ok(n) => nets.push(n),
                        Err(e) => errors.push(format!("{path}.values[{i}]: {e}")),
                    }
                }
                Matcher::Ip(nets)
            }
            Operator::GeoMatch => {
                if let Some(v) = &variable {
                    if !matches!(v, MatchVariable::ClientIp | MatchVariable::ClientCountry) {
                        errors.push(format!(
                            "{path}.operator: geo_match only applies to client_ip or client_country"
                        ));
                    }
                }
                let mut codes = Vec::new();
                for (i, v) in values.iter().enumerate() {
                    let v = v.trim();
                    if v.len() == 2 && v.chars().all(|c| c.is_ascii_alphabetic()) {
                        codes.push(v.to_ascii_uppercase());
                    } else {
                        errors.push(format!(
                            "{path}.values[{i}]: `{v}` is not a two-letter country code"
                        ));
                    }
                }
                Matcher::Geo(codes)
            }
            Operator::Equals => Matcher::Equals(values.clone()),
            Operator::Contains => Matcher::Contains(values.clone()),
            Operator::BeginsWith => Matcher::BeginsWith(values.clone()),
            Operator::EndsWith => Matcher::EndsWith(values.clone()),
            Operator::Regex => {
                for (i, v) in values.iter().enumerate() {
                    if let Err(e) = regex::Regex::new(v) {
                        errors.push(format!("{path}.values[{i}]: invalid regex: {e}"));
                    }
                }
                match RegexSet::new(values) {
                    Ok(set) => Matcher::Regex(set),
                    Err(e) => {
                        if errors.is_empty() {
                            errors.push(format!("{path}.values: {e}"));
                        }
                        Matcher::Any
                    }
                }
            }
            Operator::Any => Matcher::Any,
            Operator::Lt | Operator::Gt | Operator::Le | Operator::Ge => {
                let op = match cfg.operator {
                    Operator::Lt => NumOp::Lt,
                    Operator::Gt => NumOp::Gt,
                    Operator::Le => NumOp::Le,
                    _ => NumOp::Ge,
                };
                let mut nums = Vec::new();
                for (i, v) in values.iter().enumerate() {
                    match v.trim().parse::<f64>() {
                        Ok(n) if n.is_finite() => nums.push(n),
                        _ => errors.push(format!("{path}.values[{i}]: `{v}` is not a number")),
                    }
                }
                Matcher::Num(op, nums)
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Condition {
            variable: variable.expect("checked above"),
            transforms: cfg.transforms.clone(),
            negate: cfg.negate,
            matcher,
        })
    }

    /// The inspected variable.
    pub fn variable(&self) -> &MatchVariable {
        &self.variable
    }

    /// Evaluate against a request (negation included).
    pub fn matches(&self, ctx: &MatchContext<'_>) -> bool {
        self.raw_match(ctx).unwrap_or(false) != self.negate
    }

    /// `None` when the variable is absent from the request.
    fn raw_match(&self, ctx: &MatchContext<'_>) -> Option<bool> {
        let facts = ctx.facts;
        match (&self.matcher, &self.variable) {
            (Matcher::Geo(codes), _) => {
                let c = facts.country()?;
                Some(codes.iter().any(|code| code.eq_ignore_ascii_case(c.trim())))
            }
            (Matcher::Ip(nets), MatchVariable::ClientIp) => {
                let ip = canonical_ip(facts.client_ip()?);
                Some(nets.iter().any(|n| n.contains(&ip)))
            }
            (Matcher::Any, _) => ctx.with_values(&self.variable, |_| true),
            _ => ctx.with_values(&self.variable, |v| {
                let v = apply_all(&self.transforms, v);
                self.test_value(&v)
            }),
        }
    }

    fn test_value(&self, v: &str) -> bool {
        match &self.matcher {
            Matcher::Ip(nets) => match v.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    let ip = canonical_ip(ip);
                    nets.iter().any(|n| n.contains(&ip))
                }
                Err(_) => false,
            },
            Matcher::Geo(_) | Matcher::Any => true,
            Matcher::Equals(vals) => vals.iter().any(|x| x == v),
            Matcher::Contains(vals) => vals.iter().any(|x| v.contains(x.as_str())),
            Matcher::BeginsWith(vals) => vals.iter().any(|x| v.starts_with(x.as_str())),
            Matcher::EndsWith(vals) => vals.iter().any(|x| v.ends_with(x.as_str())),
            Matcher::Regex(set) => set.is_match(v),
            Matcher::Num(op, nums) => match v.trim().parse::<f64>() {
                Ok(x) if !x.is_nan() => nums.iter().any(|&n| match op {
                    NumOp::Lt => x < n,
                    NumOp::Gt => x > n,
                    NumOp::Le => x <= n,
                    NumOp::Ge => x >= n,
                }),
                _ => false,
            },
        }
    }
}

/// Per-request evaluation context: lazily parses query arguments, cookies and
/// form bodies at most once, however many conditions need them. Not `Send`;
/// create it, evaluate, drop it (never hold it across an `.await`).
pub struct MatchContext<'a> {
    facts: &'a dyn RequestFacts,
    query_args: OnceCell<Vec<(Cow<'a, str>, Cow<'a, str>)>>,
    cookies: OnceCell<Vec<(&'a str, &'a str)>>,
    body_text: OnceCell<Cow<'a, str>>,
    post_args: OnceCell<Vec<(String, String)>>,
}

impl<'a> MatchContext<'a> {
    pub fn new(facts: &'a dyn RequestFacts) -> Self {
        MatchContext {
            facts,
            query_args: OnceCell::new(),
            cookies: OnceCell::new(),
            body_text: OnceCell::new(),
            post_args: OnceCell::new(),
        }
    }

    pub fn facts(&self) -> &'a dyn RequestFacts {
        self.facts
    }

    fn query_args(&self) -> &[(Cow<'a, str>, Cow<'a, str>)] {
        self.query_args.get_or_init(|| {
            let q: &'a str = self.facts.query().unwrap_or("");
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (n, v) = p.split_once('=').unwrap_or((p, ""));
                    (form_decode(n), form_decode(v))
                })
                .collect()
        })
    }

    fn cookies(&self) -> &[(&'a str, &'a str)] {
        self.cookies.get_or_init(|| {
            let h: &'a str = self.facts.header("cookie").unwrap_or("");
            h.split(';')
                .filter_map(|p| {
                    let p = p.trim();
                    if p.is_empty() {
                        return None;
                    }
                    let (n, v) = p.split_once('=').unwrap_or((p, ""));
                    Some((n.trim(), v.trim()))
                })
                .collect()
        })
    }

    fn body_text(&self) -> &str {
        self.body_text
            .get_or_init(|| String::from_utf8_lossy(self.facts.body()))
    }

    fn post_args(&self) -> &[(String, String)] {
        self.post_args.get_or_init(|| {
            let is_form = self
                .facts
                .content_type()
                .map(|ct| {
                    ct.trim_start().get(..33).is_some_and(|p| {
                        p.eq_ignore_ascii_case("application/x-www-form-urlencoded")
                    })
                })
                .unwrap_or(false);
            if !is_form {
                return Vec::new();
            }
            self.body_text()
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (n, v) = p.split_once('=').unwrap_or((p, ""));
                    (form_decode(n).into_owned(), form_decode(v).into_owned())
                })
                .collect()
        })
    }

    /// Call `f` on every value of `var`; true when any call returns true.
    /// `None` when the variable has no value in this request.
    fn with_values(&self, var: &MatchVariable, mut f: impl FnMut(&str) -> bool) -> Option<bool> {
        let facts = self.facts;
        match var {
            MatchVariable::ClientIp => {
                let ip = canonical_ip(facts.client_ip()?);
                Some(f(&ip.to_string()))
            }
            MatchVariable::ClientCountry => facts.country().map(f),
            MatchVariable::RequestMethod => Some(f(facts.method())),
            MatchVariable::RequestUri => Some(f(facts.raw_uri())),
            MatchVariable::UriPath => Some(f(facts.path())),
            MatchVariable::QueryString => facts.query().map(f),
            MatchVariable::RequestHeader(name) => facts.header(name).map(f),
            MatchVariable::RequestBody => Some(f(self.body_text())),
            MatchVariable::QueryArg(name) => {
                let mut found = false;
                for (n, v) in self.query_args() {
                    if n == name {
                        found = true;
                        if f(v) {
                            return Some(true);
                        }
                    }
                }
                found.then_some(false)
            }
            MatchVariable::PostArg(name) => {
                let mut found = false;
                for (n, v) in self.post_args() {
                    if n == name {
                        found = true;
                        if f(v) {
                            return Some(true);
                        }
                    }
                }
                found.then_some(false)
            }
            MatchVariable::Cookie(name) => {
                let mut found = false;
                for (n, v) in self.cookies() {
                    if n == name {
                        found = true;
                        if f(v) {
                            return Some(true);
                        }
                    }
                }
                found.then_some(false)
            }
        }
    }

    /// First value of a variable after form decoding (used for rate-limit keys).
    pub fn first_value(&self, var: &MatchVariable) -> Option<String> {
        let mut out = None;
        self.with_values(var, |v| {
            out = Some(v.to_string());
            true
        });
        out
    }
}
