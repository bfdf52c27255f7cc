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

// Two jobs, one file each, sharing only the compiled rule types defined here: `compile` checks
// a site's rule configurations and builds its [`RewritePlan`]; `evaluate` runs a plan against a
// request or a response. `checks` holds the safety checks both apply to what a rule emits (static
// values when compiling, interpolated ones when evaluating).
mod checks;
mod compile;
mod config;
mod evaluate;
mod template;
mod variable;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use regex::Regex;

pub use crate::rewrite::compile::compile;
pub use crate::rewrite::config::{ActionConfig, ConditionConfig, Phase, RewriteRuleConfig};
pub use crate::rewrite::variable::Variable;

use crate::rewrite::template::Template;

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
