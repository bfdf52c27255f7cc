//! Config types of `[[sites.rewrites]]` (see the module docs for the shape).

use serde::Deserialize;

/// When a rule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the request goes upstream (default).
    #[default]
    Request,
    /// When the upstream response headers arrive.
    Response,
}

/// One rewrite rule: `[[sites.rewrites]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteRuleConfig {
    /// Unique (within the site) name, reported in logs and outcomes.
    pub name: String,
    #[serde(default)]
    pub phase: Phase,
    /// All must hold for the actions to run; none means always.
    #[serde(default)]
    pub conditions: Vec<ConditionConfig>,
    /// Applied in order.
    pub actions: Vec<ActionConfig>,
}

/// A condition: exactly one subject (`variable`, `header`, `response_header`)
/// and exactly one matcher (`pattern`, `equals`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    /// A server variable name, e.g. `uri_path`.
    pub variable: Option<String>,
    /// A request header name.
    pub header: Option<String>,
    /// A response header name (response phase only).
    pub response_header: Option<String>,
    /// A regular expression (`regex` crate syntax), searched anywhere in the value unless anchored.
    pub pattern: Option<String>,
    /// Exact value.
    pub equals: Option<String>,
    #[serde(default)]
    pub ignore_case: bool,
    #[serde(default)]
    pub negate: bool,
}

/// An action: exactly one of the verbs, with its arguments
/// (`value` for set/append, `query` for `rewrite_path`, `status` for `redirect`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    pub set_request_header: Option<String>,
    pub append_request_header: Option<String>,
    pub delete_request_header: Option<String>,
    pub set_response_header: Option<String>,
    pub append_response_header: Option<String>,
    pub delete_response_header: Option<String>,
    /// New path template; must render to something starting with `/`.
    pub rewrite_path: Option<String>,
    /// New query template (without `?`), only with `rewrite_path`; omitted keeps the query.
    pub query: Option<String>,
    /// Location template.
    pub redirect: Option<String>,
    /// Redirect status: 301, 302 (default), 307 or 308.
    pub status: Option<u16>,
    /// Header value template, for the set/append verbs.
    pub value: Option<String>,
}
