//! Header and URL rewrite rules (Azure Application Gateway style), one rule set per site.
//!
//! Pure library: config types, a compiler that validates everything up front, and an
//! evaluator that works on borrowed views of the request/response and returns the edits
//! for the proxy to apply.
//!
//! # Configuration
//!
//! ```toml
//! [[sites.rewrites]]
//! name = "tenant-from-path"          # required, unique within the site
//! phase = "request"                  # "request" (default) or "response"
//! # all conditions must hold; none = always
//! conditions = [
//!   { variable = "uri_path", pattern = '^/t/([a-z0-9-]+)/(.*)$' },
//!   { header = "X-Debug", equals = "1", negate = true },
//!   { variable = "client_country", equals = "nl", ignore_case = true },
//! ]
//! actions = [
//!   { set_request_header = "X-Tenant", value = "{cond.1.1}" },
//!   { rewrite_path = "/{cond.1.2}", query = "{var.query_string}&tenant={cond.1.1}" },
//!   { delete_request_header = "X-Internal" },
//!   { append_request_header = "X-Trace", value = "edge={var.client_ip}" },
//!   { set_response_header = "X-Frame-Options", value = "DENY" },
//!   { delete_response_header = "X-Debug-Info" },
//!   { redirect = "https://{var.host}/new{var.request_uri}", status = 301 },
//! ]
//!
//! [[sites.rewrites]]
//! name = "hide-5xx-detail"
//! phase = "response"
//! conditions = [ { response_header = "X-Powered-By", pattern = '.' }, { variable = "status", pattern = '^5' } ]
//! actions = [ { delete_response_header = "X-Powered-By" } ]
//! ```
//!
//! ## Conditions
//!
//! Each condition names exactly one subject and exactly one matcher:
//!
//! | key | meaning |
//! |-----|---------|
//! | `variable = "NAME"` | a server variable (list below) |
//! | `header = "Name"` | a request header (the first value, when sent several times) |
//! | `response_header = "Name"` | an upstream response header; response-phase rules only |
//! | `pattern = 'RE'` | regex (Rust `regex` syntax), unanchored unless written with `^`/`$` |
//! | `equals = "text"` | exact equality |
//! | `ignore_case = true` | case-insensitive regex / equality (Unicode simple case folding) |
//! | `negate = true` | the condition holds when the matcher does *not* match |
//!
//! A variable with no value (e.g. `client_country` without GeoIP data, `tls_version` on
//! plain HTTP) or an absent header never matches, so with `negate = true` it holds:
//! `{ header = "X-Debug", pattern = '' }` tests presence, add `negate = true` for absence.
//!
//! ## Actions
//!
//! | action | arguments | phases |
//! |--------|-----------|--------|
//! | `set_request_header = "Name"` | `value` | request |
//! | `append_request_header = "Name"` | `value` (adds another field line) | request |
//! | `delete_request_header = "Name"` | | request |
//! | `set_response_header = "Name"` | `value` | both |
//! | `append_response_header = "Name"` | `value` | both |
//! | `delete_response_header = "Name"` | | both |
//! | `rewrite_path = "/new"` | optional `query` (without `?`; omitted keeps the query, `""` drops it) | request |
//! | `redirect = "URL"` | optional `status`: 301, 302 (default), 307, 308 | request |
//!
//! In a request-phase rule, response-header actions are recorded and applied to the
//! response the client gets (from upstream, or the redirect). Hop-by-hop and framing
//! headers (`Connection`, `Content-Length`, `Transfer-Encoding`, `Keep-Alive`,
//! `Proxy-Connection`, `TE`, `Trailer`, `Upgrade`) cannot be touched.
//!
//! ## Templates
//!
//! `value`, `rewrite_path`, `query` and `redirect` are templates:
//!
//! * `{var.NAME}`: a server variable (empty when it has no value);
//! * `{http_req.Header-Name}`: a request header (empty when absent);
//! * `{http_resp.Header-Name}`: an upstream response header, response phase only;
//! * `{cond.N.M}`: capture group `M` (a number, or the name of a named group) of condition
//!   `N` (1-based position in `conditions`); `M = 0` is the whole match. Conditions with
//!   `equals` or `negate = true` only have `{cond.N.0}`, the whole tested value;
//! * `{{` and `}}`: literal braces.
//!
//! Variables: `client_ip`, `client_port`, `client_country`, `host`, `http_method`,
//! `uri_path`, `query_string`, `request_uri` (`path?query`), `server_port`, `tls_version`,
//! `tls_cipher`, `client_cert_subject`, `client_cert_fingerprint`, `scheme`, and `status`
//! (response phase only).
//!
//! ## Evaluation
//!
//! * Rules run in order; every rule whose conditions all hold applies its actions in order.
//! * Conditions and templates always see the request **as the client sent it** (and, in the
//!   response phase, the response as upstream sent it): earlier rules' edits are not visible
//!   to later rules. A later edit of the same header or path wins when the proxy applies the
//!   edits in order.
//! * A `redirect` ends processing: later actions and rules do not run. Edits already
//!   produced remain in the outcome (response-header edits apply to the redirect response).
//! * `query` is trimmed of a leading `?` and of leading/trailing `&`, so
//!   `"{var.query_string}&x=1"` is right whether or not there was a query.
//! * Safety: an interpolated header value or redirect location containing CR, LF or NUL (or
//!   otherwise invalid) is never emitted; a rewritten path must start with `/` and contain
//!   no `?` or `#`. Such actions are skipped and listed in the outcome's `skipped`, and the
//!   rest of the rule goes on. Values are limited to 8 KiB.

mod config;
mod template;
mod variable;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use regex::{Regex, RegexBuilder};

pub use crate::rewrite::config::{ActionConfig, ConditionConfig, Phase, RewriteRuleConfig};
pub use crate::rewrite::variable::Variable;

use crate::rewrite::template::{CondInfo, Lookup, Scope, Template};

/// Longest interpolated value, path or location emitted.
pub const MAX_VALUE_LEN: usize = 8192;

/// Headers no rule may set, append or delete (hop-by-hop and message framing).
const PROTECTED_HEADERS: [&str; 8] = [
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The request, as the proxy sees it before any rewrite.
pub trait RequestView {
    /// A server variable; `None` when it has no value. `Variable::Status` is never asked.
    fn var(&self, v: Variable) -> Option<Cow<'_, str>>;
    /// The (first) value of a request header; `None` when absent or not UTF-8.
    fn request_header(&self, name: &HeaderName) -> Option<&str>;
}

/// The upstream response, plus the request it answers.
pub trait ResponseView: RequestView {
    /// The (first) value of a response header; `None` when absent or not UTF-8.
    fn response_header(&self, name: &HeaderName) -> Option<&str>;
    fn status(&self) -> u16;
}

/// A header edit, to apply in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Replace every value with this one.
    Set(HeaderName, HeaderValue),
    /// Add one more value.
    Append(HeaderName, HeaderValue),
    /// Remove every value.
    Delete(HeaderName),
}

/// What the request-phase rules decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestOutcome {
    /// Edits of the request sent upstream, in order.
    pub request_headers: Vec<HeaderEdit>,
    /// Edits of the response sent to the client (upstream's or the redirect), in order.
    pub response_headers: Vec<HeaderEdit>,
    /// New `path?query` for the upstream request, when a rule rewrote it.
    pub path_and_query: Option<String>,
    /// Answer with this status and `Location` instead of proxying.
    pub redirect: Option<(u16, String)>,
    /// Names of the rules whose conditions held, in order.
    pub matched: Vec<Arc<str>>,
    /// Actions not applied, each with the rule, the action and the reason.
    pub skipped: Vec<String>,
}

impl RequestOutcome {
    /// Whether there is nothing to do.
    pub fn is_noop(&self) -> bool {
        self.request_headers.is_empty()
            && self.response_headers.is_empty()
            && self.path_and_query.is_none()
            && self.redirect.is_none()
    }
}

/// What the response-phase rules decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseOutcome {
    pub response_headers: Vec<HeaderEdit>,
    pub matched: Vec<Arc<str>>,
    pub skipped: Vec<String>,
}

/// A site's compiled rules.
#[derive(Debug, Clone, Default)]
pub struct RewritePlan {
    request: Vec<Rule>,
    response: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    name: Arc<str>,
    conds: Vec<Cond>,
    actions: Vec<Action>,
    /// Whether some action refers to `{cond.N.M}`.
    needs_captures: bool,
}

#[derive(Debug, Clone)]
struct Cond {
    subject: Subject,
    matcher: Matcher,
    negate: bool,
}

#[derive(Debug, Clone)]
enum Subject {
    Var(Variable),
    ReqHeader(HeaderName),
    RespHeader(HeaderName),
}

#[derive(Debug, Clone)]
enum Matcher {
    Regex(Regex),
    Equals { value: String, ignore_case: bool },
}

#[derive(Debug, Clone)]
struct Action {
    /// `actions[j] (verb name)`, for `skipped`.
    label: String,
    kind: ActionKind,
}

#[derive(Debug, Clone, Copy)]
enum EditOp {
    Set,
    Append,
}

#[derive(Debug, Clone)]
enum ValueSource {
    Static(HeaderValue),
    Template(Template),
}

#[derive(Debug, Clone)]
enum ActionKind {
    RequestHeader(EditOp, HeaderName, ValueSource),
    DeleteRequestHeader(HeaderName),
    ResponseHeader(EditOp, HeaderName, ValueSource),
    DeleteResponseHeader(HeaderName),
    RewritePath {
        path: Template,
        query: Option<Template>,
    },
    Redirect {
        status: u16,
        location: Template,
    },
}

/// Compiles a site's rules; every problem found is reported as `"{key path}: message"`,
/// with key paths under `key_prefix` (e.g. `sites[0].rewrites`).
pub fn compile(rules: &[RewriteRuleConfig], key_prefix: &str) -> Result<RewritePlan, Vec<String>> {
    let mut errors = Vec::new();
    let mut plan = RewritePlan::default();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, rc) in rules.iter().enumerate() {
        let key = format!("{key_prefix}[{i}]");
        if rc.name.trim().is_empty() {
            errors.push(format!("{key}.name: must not be empty"));
        } else if let Some(first) = seen.insert(rc.name.as_str(), i) {
            errors.push(format!(
                "{key}.name: duplicate rule name \"{}\" (also {key_prefix}[{first}])",
                rc.name
            ));
        }
        if let Some(rule) = compile_rule(rc, &key, &mut errors) {
            match rc.phase {
                Phase::Request => plan.request.push(rule),
                Phase::Response => plan.response.push(rule),
            }
        }
    }
    if errors.is_empty() {
        Ok(plan)
    } else {
        Err(errors)
    }
}

fn compile_rule(rc: &RewriteRuleConfig, key: &str, errors: &mut Vec<String>) -> Option<Rule> {
    let before = errors.len();
    let response_phase = rc.phase == Phase::Response;
    let mut conds = Vec::with_capacity(rc.conditions.len());
    let mut infos = Vec::with_capacity(rc.conditions.len());
    for (k, cc) in rc.conditions.iter().enumerate() {
        let ckey = format!("{key}.conditions[{k}]");
        match compile_cond(cc, &ckey, response_phase, errors) {
            Some((cond, info)) => {
                conds.push(cond);
                infos.push(info);
            }
            None => infos.push(CondInfo {
                // Unknown shape: accept any group so that templates report their own errors only.
                groups: usize::MAX,
                names: Vec::new(),
                only_whole: None,
            }),
        }
    }
    if rc.actions.is_empty() {
        errors.push(format!("{key}.actions: a rule needs at least one action"));
    }
    let scope = Scope {
        response_phase,
        conds: &infos,
    };
    let mut actions = Vec::with_capacity(rc.actions.len());
    for (j, ac) in rc.actions.iter().enumerate() {
        let akey = format!("{key}.actions[{j}]");
        if let Some(a) = compile_action(ac, j, &akey, &scope, errors) {
            actions.push(a);
        }
    }
    if errors.len() != before {
        return None;
    }
    let needs_captures = actions.iter().any(|a| match &a.kind {
        ActionKind::RequestHeader(_, _, ValueSource::Template(t))
        | ActionKind::ResponseHeader(_, _, ValueSource::Template(t)) => t.uses_conds(),
        ActionKind::RewritePath { path, query } => {
            path.uses_conds() || query.as_ref().is_some_and(Template::uses_conds)
        }
        ActionKind::Redirect { location, .. } => location.uses_conds(),
        _ => false,
    });
    Some(Rule {
        name: Arc::from(rc.name.as_str()),
        conds,
        actions,
        needs_captures,
    })
}

fn compile_cond(
    cc: &ConditionConfig,
    key: &str,
    response_phase: bool,
    errors: &mut Vec<String>,
) -> Option<(Cond, CondInfo)> {
    let before = errors.len();
    let subjects = [
        ("variable", cc.variable.as_deref()),
        ("header", cc.header.as_deref()),
        ("response_header", cc.response_header.as_deref()),
    ];
    let given: Vec<_> = subjects.iter().filter(|(_, v)| v.is_some()).collect();
    let subject = match given.as_slice() {
        [] => {
            errors.push(format!(
                "{key}: needs one of `variable`, `header` or `response_header`"
            ));
            None
        }
        [(field, Some(v))] => compile_subject(field, v, key, response_phase, errors),
        _ => {
            let names: Vec<_> = given.iter().map(|(f, _)| *f).collect();
            errors.push(format!(
                "{key}: `{}` are exclusive, give exactly one",
                names.join("`, `")
            ));
            None
        }
    };
    let matcher = match (&cc.pattern, &cc.equals) {
        (Some(_), Some(_)) => {
            errors.push(format!("{key}: `pattern` and `equals` are exclusive"));
            None
        }
        (None, None) => {
            errors.push(format!("{key}: needs `pattern` or `equals`"));
            None
        }
        (Some(p), None) => match RegexBuilder::new(p)
            .case_insensitive(cc.ignore_case)
            .build()
        {
            Ok(re) => Some(Matcher::Regex(re)),
            Err(e) => {
                errors.push(format!("{key}.pattern: invalid regex: {e}"));
                None
            }
        },
        (None, Some(v)) => Some(Matcher::Equals {
            value: v.clone(),
            ignore_case: cc.ignore_case,
        }),
    };
    if errors.len() != before {
        return None;
    }
    let (subject, matcher) = (subject?, matcher?);
    let info = match (&matcher, cc.negate) {
        (_, true) => CondInfo {
            groups: 1,
            names: Vec::new(),
            only_whole: Some("is negated"),
        },
        (Matcher::Equals { .. }, false) => CondInfo {
            groups: 1,
            names: Vec::new(),
            only_whole: Some("uses `equals`"),
        },
        (Matcher::Regex(re), false) => CondInfo {
            groups: re.captures_len(),
            names: re
                .capture_names()
                .enumerate()
                .filter_map(|(i, n)| n.map(|n| (n.to_string(), i)))
                .collect(),
            only_whole: None,
        },
    };
    Some((
        Cond {
            subject,
            matcher,
            negate: cc.negate,
        },
        info,
    ))
}

fn compile_subject(
    field: &str,
    v: &str,
    key: &str,
    response_phase: bool,
    errors: &mut Vec<String>,
) -> Option<Subject> {
    match field {
        "variable" => match Variable::from_name(v) {
            None => {
                errors.push(format!("{key}.variable: unknown variable \"{v}\""));
                None
            }
            Some(var) if var.response_only() && !response_phase => {
                errors.push(format!(
                    "{key}.variable: \"{v}\" is only available in response-phase rules (phase = \"response\")"
                ));
                None
            }
            Some(var) => Some(Subject::Var(var)),
        },
        _ => {
            let name = match HeaderName::from_bytes(v.as_bytes()) {
                Ok(n) => n,
                Err(_) => {
                    errors.push(format!("{key}.{field}: invalid header name \"{v}\""));
                    return None;
                }
            };
            if field == "header" {
                Some(Subject::ReqHeader(name))
            } else if response_phase {
                Some(Subject::RespHeader(name))
            } else {
                errors.push(format!(
                    "{key}.response_header: only available in response-phase rules (phase = \"response\")"
                ));
                None
            }
        }
    }
}

fn compile_action(
    ac: &ActionConfig,
    j: usize,
    key: &str,
    scope: &Scope<'_>,
    errors: &mut Vec<String>,
) -> Option<Action> {
    let verbs = [
        ("set_request_header", ac.set_request_header.as_deref()),
        ("append_request_header", ac.append_request_header.as_deref()),
        ("delete_request_header", ac.delete_request_header.as_deref()),
        ("set_response_header", ac.set_response_header.as_deref()),
        (
            "append_response_header",
            ac.append_response_header.as_deref(),
        ),
        (
            "delete_response_header",
            ac.delete_response_header.as_deref(),
        ),
        ("rewrite_path", ac.rewrite_path.as_deref()),
        ("redirect", ac.redirect.as_deref()),
    ];
    let given: Vec<_> = verbs.iter().filter(|(_, v)| v.is_some()).collect();
    let (verb, arg) = match given.as_slice() {
        [(verb, Some(arg))] => (*verb, *arg),
        [] => {
            errors.push(format!(
                "{key}: needs one of `{}`",
                verbs
                    .iter()
                    .map(|(v, _)| *v)
                    .collect::<Vec<_>>()
                    .join("`, `")
            ));
            return None;
        }
        _ => {
            errors.push(format!(
                "{key}: `{}` are exclusive, one action per entry",
                given
                    .iter()
                    .map(|(v, _)| *v)
                    .collect::<Vec<_>>()
                    .join("`, `")
            ));
            return None;
        }
    };
    let before = errors.len();
    let takes_value = verb.starts_with("set_") || verb.starts_with("append_");
    if takes_value && ac.value.is_none() {
        errors.push(format!("{key}: `{verb}` needs `value`"));
    }
    if !takes_value && ac.value.is_some() {
        errors.push(format!("{key}.value: not used by `{verb}`"));
    }
    if verb != "rewrite_path" && ac.query.is_some() {
        errors.push(format!("{key}.query: only used with `rewrite_path`"));
    }
    if verb != "redirect" && ac.status.is_some() {
        errors.push(format!("{key}.status: only used with `redirect`"));
    }
    let request_only =
        verb.ends_with("_request_header") || verb == "rewrite_path" || verb == "redirect";
    if request_only && scope.response_phase {
        errors.push(format!(
            "{key}: `{verb}` is not allowed in a response-phase rule (only set/append/delete_response_header are)"
        ));
    }
    if errors.len() != before {
        return None;
    }

    let template = |field: &str, src: &str, errors: &mut Vec<String>| -> Option<Template> {
        match Template::parse(src, scope) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.push(format!("{key}.{field}: {e}"));
                None
            }
        }
    };
    let header_name = |errors: &mut Vec<String>| -> Option<HeaderName> {
        let name = match HeaderName::from_bytes(arg.as_bytes()) {
            Ok(n) => n,
            Err(_) => {
                errors.push(format!("{key}.{verb}: invalid header name \"{arg}\""));
                return None;
            }
        };
        if PROTECTED_HEADERS.contains(&name.as_str()) {
            errors.push(format!(
                "{key}.{verb}: \"{arg}\" is a hop-by-hop or framing header and cannot be rewritten"
            ));
            return None;
        }
        Some(name)
    };
    let value_source = |errors: &mut Vec<String>| -> Option<ValueSource> {
        let src = ac.value.as_deref().unwrap_or("");
        let t = template("value", src, errors)?;
        match t.literal() {
            Some(lit) => match HeaderValue::from_str(lit) {
                Ok(v) if lit.len() <= MAX_VALUE_LEN => Some(ValueSource::Static(v)),
                Ok(_) => {
                    errors.push(format!("{key}.value: longer than {MAX_VALUE_LEN} bytes"));
                    None
                }
                Err(_) => {
                    errors.push(format!(
                        "{key}.value: not a valid header value (control characters or non-ASCII)"
                    ));
                    None
                }
            },
            None => Some(ValueSource::Template(t)),
        }
    };

    let kind = match verb {
        "set_request_header"
        | "append_request_header"
        | "set_response_header"
        | "append_response_header" => {
            let name = header_name(errors);
            let value = value_source(errors);
            let op = if verb.starts_with("set_") {
                EditOp::Set
            } else {
                EditOp::Append
            };
            let (name, value) = (name?, value?);
            if verb.ends_with("_request_header") {
                ActionKind::RequestHeader(op, name, value)
            } else {
                ActionKind::ResponseHeader(op, name, value)
            }
        }
        "delete_request_header" => ActionKind::DeleteRequestHeader(header_name(errors)?),
        "delete_response_header" => ActionKind::DeleteResponseHeader(header_name(errors)?),
        "rewrite_path" => {
            let path = template("rewrite_path", arg, errors);
            let query = match ac.query.as_deref() {
                Some(q) => Some(template("query", q, errors)?),
                None => None,
            };
            let path = path?;
            if let Some(lit) = path.literal() {
                if let Err(e) = check_path(lit) {
                    errors.push(format!("{key}.rewrite_path: {e}"));
                    return None;
                }
            }
            ActionKind::RewritePath { path, query }
        }
        "redirect" => {
            let status = ac.status.unwrap_or(302);
            if !matches!(status, 301 | 302 | 307 | 308) {
                errors.push(format!(
                    "{key}.status: redirect status must be 301, 302, 307 or 308, not {status}"
                ));
            }
            let location = template("redirect", arg, errors)?;
            if let Some(lit) = location.literal() {
                if let Err(e) = check_location(lit) {
                    errors.push(format!("{key}.redirect: {e}"));
                }
            }
            if errors.len() != before {
                return None;
            }
            ActionKind::Redirect { status, location }
        }
        _ => unreachable!("verb list and match arms agree"),
    };
    let label = match &kind {
        ActionKind::RequestHeader(_, n, _)
        | ActionKind::DeleteRequestHeader(n)
        | ActionKind::ResponseHeader(_, n, _)
        | ActionKind::DeleteResponseHeader(n) => format!("actions[{j}] ({verb} {n})"),
        _ => format!("actions[{j}] ({verb})"),
    };
    Some(Action { label, kind })
}

fn has_crlf_nul(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

fn check_header_value(s: &str) -> Result<HeaderValue, &'static str> {
    if has_crlf_nul(s) {
        return Err("interpolated value contains CR, LF or NUL");
    }
    if s.len() > MAX_VALUE_LEN {
        return Err("interpolated value is longer than 8 KiB");
    }
    HeaderValue::from_bytes(s.as_bytes())
        .map_err(|_| "interpolated value is not a valid header value")
}

fn check_path(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("path must start with '/'");
    }
    if has_crlf_nul(p) {
        return Err("path contains CR, LF or NUL");
    }
    if p.contains(['?', '#']) {
        return Err("path must not contain '?' or '#' (use `query`)");
    }
    if p.len() > MAX_VALUE_LEN {
        return Err("path is longer than 8 KiB");
    }
    http::uri::PathAndQuery::try_from(p)
        .map(|_| ())
        .map_err(|_| "path has characters not allowed in a URI")
}

fn normalize_query(q: &str) -> &str {
    q.strip_prefix('?').unwrap_or(q).trim_matches('&')
}

fn check_query(q: &str) -> Result<(), &'static str> {
    if has_crlf_nul(q) {
        return Err("query contains CR, LF or NUL");
    }
    if q.contains('#') {
        return Err("query must not contain '#'");
    }
    if q.len() > MAX_VALUE_LEN {
        return Err("query is longer than 8 KiB");
    }
    if q.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err("query has characters not allowed in a URI");
    }
    Ok(())
}

fn check_location(l: &str) -> Result<HeaderValue, &'static str> {
    if has_crlf_nul(l) {
        return Err("location contains CR, LF or NUL");
    }
    if l.is_empty() {
        return Err("location is empty");
    }
    if l.len() > MAX_VALUE_LEN {
        return Err("location is longer than 8 KiB");
    }
    if l.parse::<http::Uri>().is_err() {
        return Err("location is not a valid URI");
    }
    HeaderValue::from_str(l).map_err(|_| "location is not a valid header value")
}

/// The view a rule reads from.
#[derive(Clone, Copy)]
enum View<'a> {
    Req(&'a dyn RequestView),
    Resp(&'a dyn ResponseView, &'a str),
}

impl<'a> View<'a> {
    fn var(&self, v: Variable) -> Option<Cow<'a, str>> {
        match *self {
            View::Req(r) => {
                if v == Variable::Status {
                    None
                } else {
                    r.var(v)
                }
            }
            View::Resp(r, status) => {
                if v == Variable::Status {
                    Some(Cow::Borrowed(status))
                } else {
                    r.var(v)
                }
            }
        }
    }

    fn req_header(&self, name: &HeaderName) -> Option<&'a str> {
        match *self {
            View::Req(r) => r.request_header(name),
            View::Resp(r, _) => r.request_header(name),
        }
    }

    fn resp_header(&self, name: &HeaderName) -> Option<&'a str> {
        match *self {
            View::Req(_) => None,
            View::Resp(r, _) => r.response_header(name),
        }
    }

    fn subject(&self, s: &Subject) -> Option<Cow<'a, str>> {
        match s {
            Subject::Var(v) => self.var(*v),
            Subject::ReqHeader(h) => self.req_header(h).map(Cow::Borrowed),
            Subject::RespHeader(h) => self.resp_header(h).map(Cow::Borrowed),
        }
    }
}

fn eq_ignore_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.chars()
            .flat_map(char::to_lowercase)
            .eq(b.chars().flat_map(char::to_lowercase))
    }
}

impl Cond {
    fn holds(&self, value: Option<&str>) -> bool {
        let matched = match value {
            None => false,
            Some(v) => match &self.matcher {
                Matcher::Regex(re) => re.is_match(v),
                Matcher::Equals {
                    value,
                    ignore_case: true,
                } => eq_ignore_case(v, value),
                Matcher::Equals {
                    value,
                    ignore_case: false,
                } => v == value,
            },
        };
        matched != self.negate
    }
}

/// The text a condition tested and the ranges of its groups.
struct Captured<'a> {
    text: Cow<'a, str>,
    groups: Vec<Option<(usize, usize)>>,
}

struct Ctx<'a, 'c> {
    view: View<'a>,
    caps: &'c [Captured<'a>],
}

impl Lookup for Ctx<'_, '_> {
    fn var(&self, v: Variable) -> Option<Cow<'_, str>> {
        self.view.var(v)
    }
    fn req_header(&self, name: &HeaderName) -> Option<&str> {
        self.view.req_header(name)
    }
    fn resp_header(&self, name: &HeaderName) -> Option<&str> {
        self.view.resp_header(name)
    }
    fn cond(&self, cond: usize, group: usize) -> Option<&str> {
        let c = self.caps.get(cond)?;
        let (s, e) = (*c.groups.get(group)?)?;
        c.text.get(s..e)
    }
}

impl Rule {
    /// Whether all conditions hold; allocates nothing itself.
    fn matches(&self, view: View<'_>) -> bool {
        self.conds
            .iter()
            .all(|c| c.holds(view.subject(&c.subject).as_deref()))
    }

    fn captures<'a>(&self, view: View<'a>) -> Vec<Captured<'a>> {
        if !self.needs_captures {
            return Vec::new();
        }
        self.conds
            .iter()
            .map(|c| {
                let text = view.subject(&c.subject).unwrap_or(Cow::Borrowed(""));
                let groups = match (&c.matcher, c.negate) {
                    (Matcher::Regex(re), false) => match re.captures(&text) {
                        Some(caps) => caps
                            .iter()
                            .map(|m| m.map(|m| (m.start(), m.end())))
                            .collect(),
                        None => Vec::new(),
                    },
                    _ => vec![Some((0, text.len()))],
                };
                Captured { text, groups }
            })
            .collect()
    }

    fn skip(&self, action: &Action, why: &str) -> String {
        format!("rule \"{}\" {}: {why}", self.name, action.label)
    }
}

impl ValueSource {
    fn value(&self, ctx: &Ctx<'_, '_>) -> Result<HeaderValue, &'static str> {
        match self {
            ValueSource::Static(v) => Ok(v.clone()),
            ValueSource::Template(t) => check_header_value(&t.render(ctx)),
        }
    }
}

fn edit(op: EditOp, name: &HeaderName, value: HeaderValue) -> HeaderEdit {
    match op {
        EditOp::Set => HeaderEdit::Set(name.clone(), value),
        EditOp::Append => HeaderEdit::Append(name.clone(), value),
    }
}

impl RewritePlan {
    /// Whether the plan has no rules at all.
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }

    /// Whether there are response-phase rules (the proxy can skip `apply_response` otherwise).
    pub fn has_response_rules(&self) -> bool {
        !self.response.is_empty()
    }

    /// Runs the request-phase rules against the request as the client sent it.
    pub fn apply_request(&self, req: &dyn RequestView) -> RequestOutcome {
        let view = View::Req(req);
        let mut out = RequestOutcome::default();
        let mut new_path: Option<String> = None;
        let mut new_query: Option<String> = None;
        'rules: for rule in &self.request {
            if !rule.matches(view) {
                continue;
            }
            out.matched.push(rule.name.clone());
            let caps = rule.captures(view);
            let ctx = Ctx { view, caps: &caps };
            for action in &rule.actions {
                match &action.kind {
                    ActionKind::RequestHeader(op, name, src) => match src.value(&ctx) {
                        Ok(v) => out.request_headers.push(edit(*op, name, v)),
                        Err(why) => out.skipped.push(rule.skip(action, why)),
                    },
                    ActionKind::ResponseHeader(op, name, src) => match src.value(&ctx) {
                        Ok(v) => out.response_headers.push(edit(*op, name, v)),
                        Err(why) => out.skipped.push(rule.skip(action, why)),
                    },
                    ActionKind::DeleteRequestHeader(name) => {
                        out.request_headers.push(HeaderEdit::Delete(name.clone()))
                    }
                    ActionKind::DeleteResponseHeader(name) => {
                        out.response_headers.push(HeaderEdit::Delete(name.clone()))
                    }
                    ActionKind::RewritePath { path, query } => {
                        let p = path.render(&ctx);
                        if let Err(why) = check_path(&p) {
                            out.skipped.push(rule.skip(action, why));
                            continue;
                        }
                        let q = match query {
                            Some(t) => {
                                let q = t.render(&ctx);
                                let nq = normalize_query(&q);
                                if let Err(why) = check_query(nq) {
                                    out.skipped.push(rule.skip(action, why));
                                    continue;
                                }
                                Some(nq.to_string())
                            }
                            None => None,
                        };
                        new_path = Some(p);
                        if q.is_some() {
                            new_query = q;
                        }
                    }
                    ActionKind::Redirect { status, location } => {
                        let l = location.render(&ctx);
                        match check_location(&l) {
                            Ok(_) => {
                                out.redirect = Some((*status, l));
                                break 'rules;
                            }
                            Err(why) => out.skipped.push(rule.skip(action, why)),
                        }
                    }
                }
            }
        }
        if new_path.is_some() || new_query.is_some() {
            let path = match new_path {
                Some(p) => Cow::Owned(p),
                None => req.var(Variable::UriPath).unwrap_or(Cow::Borrowed("/")),
            };
            let query = match new_query {
                Some(q) => Cow::Owned(q),
                None => req.var(Variable::QueryString).unwrap_or(Cow::Borrowed("")),
            };
            let mut pq = String::with_capacity(path.len() + query.len() + 1);
            pq.push_str(&path);
            if !query.is_empty() {
                pq.push('?');
                pq.push_str(&query);
            }
            out.path_and_query = Some(pq);
        }
        out
    }

    /// Runs the response-phase rules; the edits to apply to the response, in order.
    pub fn apply_response(&self, resp: &dyn ResponseView) -> Vec<HeaderEdit> {
        self.apply_response_detailed(resp).response_headers
    }

    /// [`Self::apply_response`], also telling which rules matched and which actions were skipped.
    pub fn apply_response_detailed(&self, resp: &dyn ResponseView) -> ResponseOutcome {
        let mut out = ResponseOutcome::default();
        if self.response.is_empty() {
            return out;
        }
        let mut buf = [0u8; 5];
        let status = variable::u16_str(&mut buf, resp.status());
        let view = View::Resp(resp, status);
        for rule in &self.response {
            if !rule.matches(view) {
                continue;
            }
            out.matched.push(rule.name.clone());
            let caps = rule.captures(view);
            let ctx = Ctx { view, caps: &caps };
            for action in &rule.actions {
                match &action.kind {
                    ActionKind::ResponseHeader(op, name, src) => match src.value(&ctx) {
                        Ok(v) => out.response_headers.push(edit(*op, name, v)),
                        Err(why) => out.skipped.push(rule.skip(action, why)),
                    },
                    ActionKind::DeleteResponseHeader(name) => {
                        out.response_headers.push(HeaderEdit::Delete(name.clone()))
                    }
                    // Rejected at compile time for response-phase rules.
                    _ => out
                        .skipped
                        .push(rule.skip(action, "not allowed in the response phase")),
                }
            }
        }
        out
    }
}
