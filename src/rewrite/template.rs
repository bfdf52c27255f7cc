//! Value templates: literal text with `{var.NAME}`, `{http_req.Name}`,
//! `{http_resp.Name}` and `{cond.N.M}` references, parsed once at compile time.

use std::borrow::Cow;

use http::HeaderName;

use crate::rewrite::variable::Variable;

/// What a template may refer to, known at compile time.
pub(crate) struct Scope<'a> {
    /// Whether the rule runs in the response phase (`{http_resp.*}` and `{var.status}` allowed).
    pub response_phase: bool,
    /// The rule's conditions, in order.
    pub conds: &'a [CondInfo],
}

/// What a condition offers to templates.
pub(crate) struct CondInfo {
    /// Number of groups that can be referenced, counting group 0 (the whole match).
    pub groups: usize,
    /// Named capture groups and their indexes.
    pub names: Vec<(String, usize)>,
    /// Why only group 0 exists, for error messages (`None` for a plain regex).
    pub only_whole: Option<&'static str>,
}

/// One piece of a parsed template.
#[derive(Debug, Clone)]
pub(crate) enum Segment {
    Lit(String),
    Var(Variable),
    ReqHeader(HeaderName),
    RespHeader(HeaderName),
    /// Condition index (0-based) and capture group.
    Cond(usize, usize),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    segs: Vec<Segment>,
}

/// Where rendering gets values from.
pub(crate) trait Lookup {
    fn var(&self, v: Variable) -> Option<Cow<'_, str>>;
    fn req_header(&self, name: &HeaderName) -> Option<&str>;
    fn resp_header(&self, name: &HeaderName) -> Option<&str>;
    fn cond(&self, cond: usize, group: usize) -> Option<&str>;
}

impl Template {
    /// Parses `src`; the error is the message without a key path.
    pub fn parse(src: &str, scope: &Scope<'_>) -> Result<Template, String> {
        let mut segs = Vec::new();
        let mut lit = String::new();
        let mut rest = src;
        while let Some(pos) = rest.find(['{', '}']) {
            lit.push_str(&rest[..pos]);
            let tail = &rest[pos..];
            if let Some(after) = tail.strip_prefix("{{") {
                lit.push('{');
                rest = after;
            } else if let Some(after) = tail.strip_prefix("}}") {
                lit.push('}');
                rest = after;
            } else if tail.starts_with('}') {
                return Err("unmatched '}' (write '}}' for a literal brace)".to_string());
            } else {
                let end = match tail.find('}') {
                    Some(e) => e,
                    None => {
                        return Err("unterminated '{' (write '{{' for a literal brace)".to_string())
                    }
                };
                let reference = &tail[1..end];
                if reference.contains('{') {
                    return Err(format!(
                        "unterminated '{{' before \"{}\" (write '{{{{' for a literal brace)",
                        &tail[..end + 1]
                    ));
                }
                let seg = parse_reference(reference, scope)?;
                if !lit.is_empty() {
                    segs.push(Segment::Lit(std::mem::take(&mut lit)));
                }
                segs.push(seg);
                rest = &tail[end + 1..];
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() || segs.is_empty() {
            segs.push(Segment::Lit(lit));
        }
        Ok(Template { segs })
    }

    /// The text when the template has no references.
    pub fn literal(&self) -> Option<&str> {
        match self.segs.as_slice() {
            [Segment::Lit(s)] => Some(s),
            _ => None,
        }
    }

    /// Whether the template refers to condition captures.
    pub fn uses_conds(&self) -> bool {
        self.segs.iter().any(|s| matches!(s, Segment::Cond(..)))
    }

    /// Renders into a new string; missing values render as empty.
    pub fn render(&self, ctx: &dyn Lookup) -> String {
        let mut out = String::new();
        for seg in &self.segs {
            match seg {
                Segment::Lit(s) => out.push_str(s),
                Segment::Var(v) => {
                    if let Some(val) = ctx.var(*v) {
                        out.push_str(&val);
                    }
                }
                Segment::ReqHeader(h) => out.push_str(ctx.req_header(h).unwrap_or("")),
                Segment::RespHeader(h) => out.push_str(ctx.resp_header(h).unwrap_or("")),
                Segment::Cond(c, g) => out.push_str(ctx.cond(*c, *g).unwrap_or("")),
            }
        }
        out
    }
}

fn parse_reference(reference: &str, scope: &Scope<'_>) -> Result<Segment, String> {
    let (kind, arg) = match reference.split_once('.') {
        Some(parts) => parts,
        None => {
            return Err(format!(
                "unknown reference \"{{{reference}}}\" (expected {{var.NAME}}, {{http_req.Header}}, {{http_resp.Header}} or {{cond.N.M}})"
            ))
        }
    };
    match kind {
        "var" => {
            let v = Variable::from_name(arg).ok_or_else(|| format!("unknown variable \"{arg}\""))?;
            if v.response_only() && !scope.response_phase {
                return Err(format!(
                    "variable \"{arg}\" is only available in response-phase rules"
                ));
            }
            Ok(Segment::Var(v))
        }
        "http_req" | "http_resp" => {
            let name = HeaderName::from_bytes(arg.as_bytes())
                .map_err(|_| format!("invalid header name \"{arg}\" in \"{{{reference}}}\""))?;
            if kind == "http_req" {
                Ok(Segment::ReqHeader(name))
            } else if scope.response_phase {
                Ok(Segment::RespHeader(name))
            } else {
                Err(format!(
                    "\"{{{reference}}}\" refers to a response header, only available in response-phase rules"
                ))
            }
        }
        "cond" => parse_cond(arg, reference, scope),
        _ => Err(format!(
            "unknown reference \"{{{reference}}}\" (expected {{var.NAME}}, {{http_req.Header}}, {{http_resp.Header}} or {{cond.N.M}})"
        )),
    }
}

fn parse_cond(arg: &str, reference: &str, scope: &Scope<'_>) -> Result<Segment, String> {
    let (n, m) = arg.split_once('.').ok_or_else(|| {
        format!("\"{{{reference}}}\" must be {{cond.N.M}} (condition N, capture group M)")
    })?;
    let n: usize = n
        .parse()
        .map_err(|_| format!("\"{{{reference}}}\": condition number \"{n}\" is not a number"))?;
    let count = scope.conds.len();
    if n == 0 || n > count {
        return Err(format!(
            "\"{{{reference}}}\": condition {n} does not exist (the rule has {count} condition{}, numbered from 1)",
            if count == 1 { "" } else { "s" }
        ));
    }
    let info = &scope.conds[n - 1];
    let group = if !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()) {
        m.parse::<usize>().unwrap_or(usize::MAX)
    } else {
        match info.names.iter().find(|(name, _)| name == m) {
            Some((_, idx)) => *idx,
            None => {
                return Err(format!(
                    "\"{{{reference}}}\": condition {n} has no capture group named \"{m}\""
                ))
            }
        }
    };
    if group >= info.groups {
        return Err(match info.only_whole {
            Some(why) => {
                format!("\"{{{reference}}}\": condition {n} {why}, so only {{cond.{n}.0}} exists")
            }
            None => format!(
                "\"{{{reference}}}\": condition {n} has {} capture group{}",
                info.groups - 1,
                if info.groups == 2 { "" } else { "s" }
            ),
        });
    }
    Ok(Segment::Cond(n - 1, group))
}
