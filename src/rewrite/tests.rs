use std::borrow::Cow;
use std::collections::HashMap;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;

use crate::rewrite::{
    compile, HeaderEdit, RequestView, ResponseView, RewritePlan, RewriteRuleConfig, Variable,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapper {
    #[serde(default)]
    rewrites: Vec<RewriteRuleConfig>,
}

fn parse(src: &str) -> Vec<RewriteRuleConfig> {
    toml::from_str::<Wrapper>(src).expect("toml").rewrites
}

fn plan(src: &str) -> RewritePlan {
    match compile(&parse(src), "sites[0].rewrites") {
        Ok(p) => p,
        Err(e) => panic!("compile errors: {e:#?}"),
    }
}

fn errors(src: &str) -> Vec<String> {
    match compile(&parse(src), "sites[0].rewrites") {
        Ok(_) => panic!("expected compile errors"),
        Err(e) => e,
    }
}

fn assert_error(src: &str, expected: &str) {
    let errs = errors(src);
    assert!(
        errs.iter().any(|e| e.contains(expected)),
        "no error containing {expected:?} in {errs:#?}"
    );
}

#[derive(Default)]
struct Mock {
    vars: HashMap<Variable, String>,
    req: Vec<(HeaderName, String)>,
    resp: Vec<(HeaderName, String)>,
    status: u16,
}

impl Mock {
    fn new(path: &str, query: &str) -> Mock {
        let mut m = Mock::default();
        m.vars.insert(Variable::UriPath, path.to_string());
        m.vars.insert(Variable::QueryString, query.to_string());
        let uri = if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{query}")
        };
        m.vars.insert(Variable::RequestUri, uri);
        m.vars.insert(Variable::Host, "example.com".into());
        m.vars.insert(Variable::ClientIp, "192.0.2.7".into());
        m.vars.insert(Variable::HttpMethod, "GET".into());
        m.vars.insert(Variable::Scheme, "https".into());
        m.status = 200;
        m
    }
    fn var(mut self, v: Variable, s: &str) -> Mock {
        self.vars.insert(v, s.to_string());
        self
    }
    fn header(mut self, n: &str, v: &str) -> Mock {
        self.req
            .push((HeaderName::from_bytes(n.as_bytes()).unwrap(), v.to_string()));
        self
    }
    fn resp_header(mut self, n: &str, v: &str) -> Mock {
        self.resp
            .push((HeaderName::from_bytes(n.as_bytes()).unwrap(), v.to_string()));
        self
    }
    fn status(mut self, s: u16) -> Mock {
        self.status = s;
        self
    }
}

impl RequestView for Mock {
    fn var(&self, v: Variable) -> Option<Cow<'_, str>> {
        assert_ne!(v, Variable::Status, "status is never asked of the view");
        self.vars.get(&v).map(|s| Cow::Borrowed(s.as_str()))
    }
    fn request_header(&self, name: &HeaderName) -> Option<&str> {
        self.req
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl ResponseView for Mock {
    fn response_header(&self, name: &HeaderName) -> Option<&str> {
        self.resp
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn status(&self) -> u16 {
        self.status
    }
}

fn set(n: &str, v: &str) -> HeaderEdit {
    HeaderEdit::Set(
        HeaderName::from_bytes(n.as_bytes()).unwrap(),
        HeaderValue::from_str(v).unwrap(),
    )
}
fn append(n: &str, v: &str) -> HeaderEdit {
    HeaderEdit::Append(
        HeaderName::from_bytes(n.as_bytes()).unwrap(),
        HeaderValue::from_str(v).unwrap(),
    )
}
fn delete(n: &str) -> HeaderEdit {
    HeaderEdit::Delete(HeaderName::from_bytes(n.as_bytes()).unwrap())
}

/// One rule with a single condition and a marker action; whether it fires.
fn fires(cond: &str, phase: &str, m: &Mock) -> bool {
    let p = plan(&format!(
        "[[rewrites]]\nname = \"r\"\nphase = \"{phase}\"\nconditions = [ {cond} ]\nactions = [ {{ set_response_header = \"X-Hit\", value = \"1\" }} ]\n"
    ));
    if phase == "response" {
        !p.apply_response(m).is_empty()
    } else {
        let out = p.apply_request(m);
        assert_eq!(out.matched.is_empty(), out.response_headers.is_empty());
        !out.matched.is_empty()
    }
}

#[test]
fn brief_example_parses_and_runs() {
    #[derive(Deserialize)]
    struct Site {
        rewrites: Vec<RewriteRuleConfig>,
    }
    #[derive(Deserialize)]
    struct Root {
        sites: Vec<Site>,
    }
    let src = r#"
[[sites]]
[[sites.rewrites]]
name = "tenant-from-path"
# all conditions must hold
conditions = [
  { variable = "uri_path", pattern = '^/t/([a-z0-9-]+)/(.*)$' },
  { header = "X-Debug", equals = "1", negate = true },
  { variable = "client_country", equals = "nl", ignore_case = true },
]
actions = [
  { set_request_header = "X-Tenant", value = "{cond.1.1}" },
  { rewrite_path = "/{cond.1.2}", query = "{var.query_string}&tenant={cond.1.1}" },
  { delete_request_header = "X-Internal" },
  { append_request_header = "X-Trace", value = "edge={var.client_ip}" },
  { set_response_header = "X-Frame-Options", value = "DENY" },
  { delete_response_header = "X-Debug-Info" },
  { redirect = "https://{var.host}/new{var.request_uri}", status = 301 },
]
[[sites.rewrites]]
name = "hide-5xx-detail"
phase = "response"
conditions = [ { response_header = "X-Powered-By", pattern = '.' }, { variable = "status", pattern = '^5' } ]
actions = [ { delete_response_header = "X-Powered-By" } ]
"#;
    let root: Root = toml::from_str(src).unwrap();
    let p = compile(&root.sites[0].rewrites, "sites[0].rewrites").unwrap();
    assert!(!p.is_empty());
    assert!(p.has_response_rules());

    let m = Mock::new("/t/acme/api/v1", "a=1").var(Variable::ClientCountry, "NL");
    let out = p.apply_request(&m);
    assert_eq!(out.matched.len(), 1);
    assert_eq!(&*out.matched[0], "tenant-from-path");
    assert_eq!(
        out.request_headers,
        vec![
            set("x-tenant", "acme"),
            delete("x-internal"),
            append("x-trace", "edge=192.0.2.7")
        ]
    );
    assert_eq!(
        out.response_headers,
        vec![set("x-frame-options", "DENY"), delete("x-debug-info")]
    );
    assert_eq!(
        out.path_and_query.as_deref(),
        Some("/api/v1?a=1&tenant=acme")
    );
    assert_eq!(
        out.redirect,
        Some((301, "https://example.com/new/t/acme/api/v1?a=1".to_string()))
    );
    assert!(out.skipped.is_empty());

    // X-Debug: 1 makes the negated condition fail.
    let m = Mock::new("/t/acme/x", "")
        .var(Variable::ClientCountry, "nl")
        .header("x-debug", "1");
    assert!(p.apply_request(&m).is_noop());

    let r = Mock::new("/", "")
        .resp_header("X-Powered-By", "PHP")
        .status(502);
    assert_eq!(p.apply_response(&r), vec![delete("x-powered-by")]);
    let r = Mock::new("/", "")
        .resp_header("X-Powered-By", "PHP")
        .status(200);
    assert!(p.apply_response(&r).is_empty());
}

#[test]
fn condition_matrix() {
    let m = Mock::new("/Shop/Cart", "q=1")
        .header("X-Debug", "1")
        .var(Variable::ClientCountry, "NL");
    // variable regex
    assert!(fires(
        r#"{ variable = "uri_path", pattern = '^/Shop/' }"#,
        "request",
        &m
    ));
    assert!(!fires(
        r#"{ variable = "uri_path", pattern = '^/shop/' }"#,
        "request",
        &m
    ));
    // regex is unanchored unless anchored
    assert!(fires(
        r#"{ variable = "uri_path", pattern = 'Cart' }"#,
        "request",
        &m
    ));
    // ignore_case regex
    assert!(fires(
        r#"{ variable = "uri_path", pattern = '^/shop/', ignore_case = true }"#,
        "request",
        &m
    ));
    // equals, case-sensitive by default
    assert!(fires(
        r#"{ variable = "client_country", equals = "NL" }"#,
        "request",
        &m
    ));
    assert!(!fires(
        r#"{ variable = "client_country", equals = "nl" }"#,
        "request",
        &m
    ));
    assert!(!fires(
        r#"{ variable = "client_country", equals = "N" }"#,
        "request",
        &m
    ));
    assert!(fires(
        r#"{ variable = "client_country", equals = "nl", ignore_case = true }"#,
        "request",
        &m
    ));
    // negate
    assert!(!fires(
        r#"{ variable = "client_country", equals = "NL", negate = true }"#,
        "request",
        &m
    ));
    assert!(fires(
        r#"{ variable = "client_country", equals = "DE", negate = true }"#,
        "request",
        &m
    ));
    // a variable with no value never matches; negated it holds
    assert!(!fires(
        r#"{ variable = "tls_version", pattern = '' }"#,
        "request",
        &m
    ));
    assert!(fires(
        r#"{ variable = "tls_version", pattern = '', negate = true }"#,
        "request",
        &m
    ));
    // request header present / absent (names are case-insensitive)
    assert!(fires(
        r#"{ header = "x-debug", pattern = '' }"#,
        "request",
        &m
    ));
    assert!(!fires(
        r#"{ header = "X-Other", pattern = '' }"#,
        "request",
        &m
    ));
    assert!(fires(
        r#"{ header = "X-Other", pattern = '', negate = true }"#,
        "request",
        &m
    ));
    assert!(!fires(
        r#"{ header = "X-Debug", pattern = '', negate = true }"#,
        "request",
        &m
    ));
    assert!(fires(
        r#"{ header = "X-Debug", equals = "1" }"#,
        "request",
        &m
    ));
    // response header and status, response phase
    let r = Mock::new("/", "")
        .resp_header("Server", "nginx/1.2")
        .status(503);
    assert!(fires(
        r#"{ response_header = "server", pattern = '^nginx' }"#,
        "response",
        &r
    ));
    assert!(!fires(
        r#"{ response_header = "X-Nope", pattern = '' }"#,
        "response",
        &r
    ));
    assert!(fires(
        r#"{ response_header = "X-Nope", pattern = '', negate = true }"#,
        "response",
        &r
    ));
    assert!(fires(
        r#"{ variable = "status", equals = "503" }"#,
        "response",
        &r
    ));
    assert!(fires(
        r#"{ variable = "status", pattern = '^5\d\d$' }"#,
        "response",
        &r
    ));
    assert!(!fires(
        r#"{ variable = "status", pattern = '^4' }"#,
        "response",
        &r
    ));
    // request data is visible in the response phase
    assert!(fires(
        r#"{ variable = "uri_path", equals = "/" }"#,
        "response",
        &r
    ));
    let r = r.header("Accept", "text/html");
    assert!(fires(
        r#"{ header = "accept", pattern = 'html' }"#,
        "response",
        &r
    ));
}

#[test]
fn equals_ignore_case_is_unicode_aware() {
    let m = Mock::new("/", "").header("X-Name", "Ärger");
    assert!(fires(
        r#"{ header = "X-Name", equals = "äRGER", ignore_case = true }"#,
        "request",
        &m
    ));
    assert!(!fires(
        r#"{ header = "X-Name", equals = "äRGER" }"#,
        "request",
        &m
    ));
}

#[test]
fn no_conditions_means_always_and_no_match_is_empty() {
    let p = plan(
        r#"
[[rewrites]]
name = "always"
actions = [ { set_request_header = "X-Edge", value = "1" } ]
[[rewrites]]
name = "never"
conditions = [ { variable = "uri_path", equals = "/nope" } ]
actions = [ { set_request_header = "X-Never", value = "1" } ]
"#,
    );
    let out = p.apply_request(&Mock::new("/", ""));
    assert_eq!(out.request_headers, vec![set("x-edge", "1")]);
    assert_eq!(out.matched.len(), 1);

    let p = plan(
        r#"
[[rewrites]]
name = "never"
conditions = [ { variable = "uri_path", equals = "/nope" } ]
actions = [ { set_request_header = "X-Never", value = "1" } ]
"#,
    );
    let out = p.apply_request(&Mock::new("/", ""));
    assert!(out.is_noop());
    assert!(out.matched.is_empty() && out.skipped.is_empty());
    assert!(!p.has_response_rules());
    assert!(p.apply_response(&Mock::new("/", "")).is_empty());
    assert!(compile(&[], "x").unwrap().is_empty());
}

#[test]
fn every_action_type() {
    let p = plan(
        r#"
[[rewrites]]
name = "all"
actions = [
  { set_request_header = "X-Set", value = "a" },
  { append_request_header = "X-App", value = "b" },
  { delete_request_header = "X-Del" },
  { set_response_header = "X-RSet", value = "c" },
  { append_response_header = "X-RApp", value = "d" },
  { delete_response_header = "X-RDel" },
  { rewrite_path = "/new" },
]
[[rewrites]]
name = "resp"
phase = "response"
actions = [
  { set_response_header = "X-RSet", value = "e" },
  { append_response_header = "X-RApp", value = "f" },
  { delete_response_header = "Server" },
]
"#,
    );
    let out = p.apply_request(&Mock::new("/old", "keep=1"));
    assert_eq!(
        out.request_headers,
        vec![set("x-set", "a"), append("x-app", "b"), delete("x-del")]
    );
    assert_eq!(
        out.response_headers,
        vec![set("x-rset", "c"), append("x-rapp", "d"), delete("x-rdel")]
    );
    // query omitted: kept
    assert_eq!(out.path_and_query.as_deref(), Some("/new?keep=1"));
    assert_eq!(out.redirect, None);
    let edits = p.apply_response(&Mock::new("/old", ""));
    assert_eq!(
        edits,
        vec![set("x-rset", "e"), append("x-rapp", "f"), delete("server")]
    );
}

#[test]
fn rewrite_query_forms() {
    let run = |action: &str, path: &str, query: &str| {
        plan(&format!(
            "[[rewrites]]\nname = \"q\"\nactions = [ {action} ]\n"
        ))
        .apply_request(&Mock::new(path, query))
        .path_and_query
    };
    // empty query drops it
    assert_eq!(
        run(r#"{ rewrite_path = "/x", query = "" }"#, "/a", "b=1").as_deref(),
        Some("/x")
    );
    // "&" trimmed when the original had no query
    assert_eq!(
        run(
            r#"{ rewrite_path = "/x", query = "{var.query_string}&t=1" }"#,
            "/a",
            ""
        )
        .as_deref(),
        Some("/x?t=1")
    );
    assert_eq!(
        run(r#"{ rewrite_path = "/x", query = "?z=2" }"#, "/a", "").as_deref(),
        Some("/x?z=2")
    );
    // keeping path, changing only the query
    assert_eq!(
        run(
            r#"{ rewrite_path = "{var.uri_path}", query = "v=2" }"#,
            "/a/b",
            "v=1"
        )
        .as_deref(),
        Some("/a/b?v=2")
    );
    // no query and none kept
    assert_eq!(
        run(r#"{ rewrite_path = "/x" }"#, "/a", "").as_deref(),
        Some("/x")
    );
}

#[test]
fn redirect_default_status_and_stops_processing() {
    let p = plan(
        r#"
[[rewrites]]
name = "first"
actions = [ { set_response_header = "X-Before", value = "1" } ]
[[rewrites]]
name = "go"
conditions = [ { variable = "uri_path", pattern = '^/old(/.*)?$' } ]
actions = [
  { redirect = "/new{cond.1.1}" },
  { set_response_header = "X-After-In-Rule", value = "1" },
]
[[rewrites]]
name = "later"
actions = [ { set_request_header = "X-Later", value = "1" } ]
"#,
    );
    let out = p.apply_request(&Mock::new("/old/page", ""));
    assert_eq!(out.redirect, Some((302, "/new/page".to_string())));
    assert_eq!(out.response_headers, vec![set("x-before", "1")]);
    assert!(out.request_headers.is_empty());
    let names: Vec<&str> = out.matched.iter().map(|n| &**n).collect();
    assert_eq!(names, ["first", "go"]);

    // not matching: later rule runs
    let out = p.apply_request(&Mock::new("/other", ""));
    assert_eq!(out.redirect, None);
    assert_eq!(out.request_headers, vec![set("x-later", "1")]);
}

#[test]
fn rules_run_in_order_against_the_original_request() {
    let p = plan(
        r#"
[[rewrites]]
name = "one"
actions = [ { set_request_header = "X-A", value = "1" }, { rewrite_path = "/one" } ]
[[rewrites]]
name = "two"
conditions = [ { header = "X-A", pattern = '', negate = true }, { variable = "uri_path", equals = "/orig" } ]
actions = [ { set_request_header = "X-A", value = "2" }, { rewrite_path = "/two{var.uri_path}" } ]
"#,
    );
    let out = p.apply_request(&Mock::new("/orig", ""));
    // rule two still sees no X-A and the original path
    assert_eq!(out.request_headers, vec![set("x-a", "1"), set("x-a", "2")]);
    assert_eq!(out.path_and_query.as_deref(), Some("/two/orig"));
    let names: Vec<&str> = out.matched.iter().map(|n| &**n).collect();
    assert_eq!(names, ["one", "two"]);
}

#[test]
fn captures_and_interpolation() {
    let p = plan(
        r#"
[[rewrites]]
name = "caps"
conditions = [
  { variable = "uri_path", pattern = '^/u/(?P<user>[a-z]+)/(\d+)?' },
  { header = "X-Mode", equals = "Fast", ignore_case = true },
  { header = "X-Absent", pattern = 'x', negate = true },
]
actions = [
  { set_request_header = "X-User", value = "{cond.1.user}:{cond.1.1}:{cond.1.2}" },
  { set_request_header = "X-Whole", value = "[{cond.1.0}] [{cond.2.0}] [{cond.3.0}]" },
  { set_request_header = "X-Vars", value = "{var.http_method} {var.scheme}://{var.host} {var.client_country}." },
  { set_request_header = "X-Req", value = "ua={http_req.User-Agent};none={http_req.X-None}" },
]
[[rewrites]]
name = "resp"
phase = "response"
conditions = [ { response_header = "Server", pattern = '^(\w+)/([\d.]+)' } ]
actions = [ { set_response_header = "X-Server", value = "{cond.1.1} v{cond.1.2} {var.status} {http_resp.Content-Type} {http_req.User-Agent}" } ]
"#,
    );
    let m = Mock::new("/u/alice/42/more", "")
        .header("X-Mode", "FAST")
        .header("User-Agent", "curl/8");
    let out = p.apply_request(&m);
    assert_eq!(
        out.request_headers,
        vec![
            set("x-user", "alice:alice:42"),
            set("x-whole", "[/u/alice/42] [FAST] []"),
            set("x-vars", "GET https://example.com ."),
            set("x-req", "ua=curl/8;none="),
        ]
    );
    // optional group that did not participate renders empty
    let m = Mock::new("/u/bob/", "").header("X-Mode", "fast");
    assert_eq!(
        p.apply_request(&m).request_headers[0],
        set("x-user", "bob:bob:")
    );

    let r = Mock::new("/", "")
        .header("User-Agent", "curl/8")
        .resp_header("Server", "nginx/1.25.3")
        .resp_header("Content-Type", "text/html")
        .status(404);
    assert_eq!(
        p.apply_response(&r),
        vec![set("x-server", "nginx v1.25.3 404 text/html curl/8")]
    );
}

#[test]
fn literal_braces() {
    let p = plan(
        r#"
[[rewrites]]
name = "braces"
conditions = [ { variable = "uri_path", pattern = '^/(\w+)$' } ]
actions = [
  { set_request_header = "X-Lit", value = "{{json}}" },
  { set_request_header = "X-Mix", value = "{{{cond.1.1}}}" },
  { set_request_header = "X-Re", value = "a{{1,2}}" },
]
"#,
    );
    let out = p.apply_request(&Mock::new("/abc", ""));
    assert_eq!(
        out.request_headers,
        vec![
            set("x-lit", "{json}"),
            set("x-mix", "{abc}"),
            set("x-re", "a{1,2}")
        ]
    );
}

#[test]
fn injection_through_captures_is_skipped() {
    let p = plan(
        r#"
[[rewrites]]
name = "inject"
conditions = [ { header = "X-In", pattern = '(?s)^(.*)$' } ]
actions = [
  { set_request_header = "X-Out", value = "v={cond.1.1}" },
  { set_response_header = "X-Echo", value = "{http_req.X-In}" },
  { rewrite_path = "{cond.1.1}" },
  { redirect = "https://example.com/{cond.1.1}" },
  { set_request_header = "X-Still", value = "runs" },
]
"#,
    );
    let m = Mock::new("/", "").header("X-In", "a\r\nSet-Cookie: evil=1");
    let out = p.apply_request(&m);
    assert_eq!(out.request_headers, vec![set("x-still", "runs")]);
    assert!(out.response_headers.is_empty());
    assert_eq!(out.path_and_query, None);
    assert_eq!(out.redirect, None);
    assert_eq!(out.skipped.len(), 4, "{:#?}", out.skipped);
    assert!(out.skipped[0].starts_with("rule \"inject\" actions[0] (set_request_header x-out): "));
    assert!(out.skipped[0].contains("CR, LF or NUL"));
    assert!(out.skipped[2].contains("actions[2] (rewrite_path)"));
    assert!(out.skipped[3].contains("actions[3] (redirect)"));

    // NUL too
    let out = p.apply_request(&Mock::new("/", "").header("X-In", "a\0b"));
    assert!(out.skipped[0].contains("CR, LF or NUL"));

    // path not starting with '/' after interpolation; path smuggling a query
    let out = p.apply_request(&Mock::new("/", "").header("X-In", "relative"));
    assert_eq!(out.path_and_query, None);
    assert!(
        out.skipped
            .iter()
            .any(|s| s.contains("must start with '/'")),
        "{:#?}",
        out.skipped
    );
    // the redirect then succeeds and stops the rule
    assert_eq!(
        out.redirect,
        Some((302, "https://example.com/relative".into()))
    );
    assert!(!out.request_headers.contains(&set("x-still", "runs")));

    let out = p.apply_request(&Mock::new("/", "").header("X-In", "/a?admin=1"));
    assert_eq!(out.path_and_query, None);
    assert!(out.skipped.iter().any(|s| s.contains("'?'")));

    // response phase: skipped silently in apply_response, reported in detail
    let p = plan(
        r#"
[[rewrites]]
name = "r"
phase = "response"
conditions = [ { response_header = "X-Up", pattern = '(?s)(.*)' } ]
actions = [ { set_response_header = "X-Copy", value = "{cond.1.1}" } ]
"#,
    );
    let r = Mock::new("/", "").resp_header("X-Up", "x\ny");
    assert!(p.apply_response(&r).is_empty());
    let d = p.apply_response_detailed(&r);
    assert_eq!(d.skipped.len(), 1);
    assert_eq!(d.matched.len(), 1);
}

fn rule(conds: &str, actions: &str) -> String {
    format!("[[rewrites]]\nname = \"r\"\nconditions = [ {conds} ]\nactions = [ {actions} ]\n")
}

fn resp_rule(conds: &str, actions: &str) -> String {
    format!("[[rewrites]]\nname = \"r\"\nphase = \"response\"\nconditions = [ {conds} ]\nactions = [ {actions} ]\n")
}

const OK_ACTION: &str = r#"{ set_request_header = "X-Ok", value = "1" }"#;
const OK_COND: &str = r#"{ variable = "uri_path", pattern = '^/(a)' }"#;

#[test]
fn compile_error_unknown_variable() {
    let errs = errors(&rule(
        OK_COND,
        r#"{ set_request_header = "X-A", value = "x{var.foo}" }"#,
    ));
    assert_eq!(
        errs,
        vec![r#"sites[0].rewrites[0].actions[0].value: unknown variable "foo""#]
    );
    assert_eq!(
        errors(&rule(r#"{ variable = "nope", pattern = 'x' }"#, OK_ACTION)),
        vec![r#"sites[0].rewrites[0].conditions[0].variable: unknown variable "nope""#]
    );
    assert_error(
        &rule(OK_COND, r#"{ rewrite_path = "/{var.bad}" }"#),
        r#"sites[0].rewrites[0].actions[0].rewrite_path: unknown variable "bad""#,
    );
    assert_error(
        &rule(OK_COND, r#"{ redirect = "/{var.bad}" }"#),
        r#"sites[0].rewrites[0].actions[0].redirect: unknown variable "bad""#,
    );
    assert_error(
        &rule(OK_COND, r#"{ rewrite_path = "/", query = "{var.bad}" }"#),
        r#"sites[0].rewrites[0].actions[0].query: unknown variable "bad""#,
    );
    // status only in the response phase
    assert_error(
        &rule(r#"{ variable = "status", pattern = '5' }"#, OK_ACTION),
        "sites[0].rewrites[0].conditions[0].variable: \"status\" is only available in response-phase rules",
    );
    assert_error(
        &rule(OK_COND, r#"{ set_response_header = "X-S", value = "{var.status}" }"#),
        "sites[0].rewrites[0].actions[0].value: variable \"status\" is only available in response-phase rules",
    );
}

#[test]
fn compile_error_bad_regex_names_key_path() {
    let errs = errors(&format!(
        "{}{}",
        rule(OK_COND, OK_ACTION).replace("name = \"r\"", "name = \"ok\""),
        rule(
            r#"{ variable = "uri_path", pattern = 'x' }, { header = "X", pattern = '(unclosed' }"#,
            OK_ACTION
        )
    ));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("sites[0].rewrites[1].conditions[1].pattern: invalid regex: "),
        "{errs:#?}"
    );
}

#[test]
fn compile_error_bad_header_names() {
    assert_error(
        &rule(OK_COND, r#"{ set_request_header = "X Bad", value = "1" }"#),
        r#"sites[0].rewrites[0].actions[0].set_request_header: invalid header name "X Bad""#,
    );
    assert_error(
        &rule(OK_COND, r#"{ delete_response_header = "X:Bad" }"#),
        r#"sites[0].rewrites[0].actions[0].delete_response_header: invalid header name "X:Bad""#,
    );
    assert_error(
        &rule(r#"{ header = "Bad Header", pattern = 'x' }"#, OK_ACTION),
        r#"sites[0].rewrites[0].conditions[0].header: invalid header name "Bad Header""#,
    );
    assert_error(
        &rule(
            OK_COND,
            r#"{ set_request_header = "X-A", value = "{http_req.bad name}" }"#,
        ),
        "sites[0].rewrites[0].actions[0].value: invalid header name \"bad name\"",
    );
    // framing / hop-by-hop headers
    for h in [
        "Content-Length",
        "transfer-encoding",
        "Connection",
        "Upgrade",
    ] {
        assert_error(
            &rule(
                OK_COND,
                &format!(r#"{{ set_request_header = "{h}", value = "1" }}"#),
            ),
            "hop-by-hop or framing header",
        );
    }
    assert_error(
        &rule(
            OK_COND,
            r#"{ delete_response_header = "Transfer-Encoding" }"#,
        ),
        "framing",
    );
    // literal value with control characters
    assert_error(
        &rule(OK_COND, r#"{ set_request_header = "X-A", value = "a\nb" }"#),
        "sites[0].rewrites[0].actions[0].value: not a valid header value",
    );
}

#[test]
fn compile_error_bad_status() {
    for s in [200, 300, 303, 304, 400, 999] {
        assert_error(
            &rule(OK_COND, &format!(r#"{{ redirect = "/x", status = {s} }}"#)),
            "sites[0].rewrites[0].actions[0].status: redirect status must be 301, 302, 307 or 308",
        );
    }
    for s in [301, 302, 307, 308] {
        plan(&rule(
            OK_COND,
            &format!(r#"{{ redirect = "/x", status = {s} }}"#),
        ));
    }
    assert_error(
        &rule(
            OK_COND,
            r#"{ set_request_header = "X-A", value = "1", status = 301 }"#,
        ),
        "sites[0].rewrites[0].actions[0].status: only used with `redirect`",
    );
    assert_error(
        &rule(OK_COND, r#"{ redirect = "bad uri with spaces" }"#),
        "actions[0].redirect: location is not a valid URI",
    );
}

#[test]
fn compile_error_response_phase_misuse() {
    for a in [
        r#"{ set_request_header = "X-A", value = "1" }"#,
        r#"{ append_request_header = "X-A", value = "1" }"#,
        r#"{ delete_request_header = "X-A" }"#,
        r#"{ rewrite_path = "/x" }"#,
        r#"{ redirect = "/x" }"#,
    ] {
        assert_error(&resp_rule("", a), "sites[0].rewrites[0].actions[0]: `");
        assert_error(&resp_rule("", a), "is not allowed in a response-phase rule");
    }
    assert_error(
        &rule(r#"{ response_header = "Server", pattern = 'x' }"#, OK_ACTION),
        "sites[0].rewrites[0].conditions[0].response_header: only available in response-phase rules",
    );
    assert_error(
        &rule(
            OK_COND,
            r#"{ set_response_header = "X-A", value = "{http_resp.Server}" }"#,
        ),
        "sites[0].rewrites[0].actions[0].value: \"{http_resp.Server}\" refers to a response header",
    );
}

#[test]
fn compile_error_cond_references() {
    assert_error(
        &rule(OK_COND, r#"{ set_request_header = "X-A", value = "{cond.2.1}" }"#),
        "sites[0].rewrites[0].actions[0].value: \"{cond.2.1}\": condition 2 does not exist (the rule has 1 condition, numbered from 1)",
    );
    assert_error(
        &rule(
            OK_COND,
            r#"{ set_request_header = "X-A", value = "{cond.0.0}" }"#,
        ),
        "condition 0 does not exist",
    );
    assert_error(
        &rule(
            "",
            r#"{ set_request_header = "X-A", value = "{cond.1.0}" }"#,
        ),
        "condition 1 does not exist (the rule has 0 conditions",
    );
    assert_error(
        &rule(
            OK_COND,
            r#"{ set_request_header = "X-A", value = "{cond.1.2}" }"#,
        ),
        "\"{cond.1.2}\": condition 1 has 1 capture group",
    );
    assert_error(
        &rule(
            OK_COND,
            r#"{ set_request_header = "X-A", value = "{cond.1.nope}" }"#,
        ),
        "condition 1 has no capture group named \"nope\"",
    );
    assert_error(
        &rule(
            r#"{ header = "X", equals = "y" }"#,
            r#"{ set_request_header = "X-A", value = "{cond.1.1}" }"#,
        ),
        "condition 1 uses `equals`, so only {cond.1.0} exists",
    );
    assert_error(
        &rule(
            r#"{ header = "X", pattern = '(y)', negate = true }"#,
            r#"{ set_request_header = "X-A", value = "{cond.1.1}" }"#,
        ),
        "condition 1 is negated, so only {cond.1.0} exists",
    );
    assert_error(
        &rule(
            OK_COND,
            r#"{ set_request_header = "X-A", value = "{cond.x.1}" }"#,
        ),
        "is not a number",
    );
    assert_error(
        &rule(
            OK_COND,
            r#"{ set_request_header = "X-A", value = "{cond.1}" }"#,
        ),
        "must be {cond.N.M}",
    );
}

#[test]
fn compile_error_template_syntax() {
    assert_error(
        &rule(OK_COND, r#"{ set_request_header = "X-A", value = "a}b" }"#),
        "unmatched '}'",
    );
    assert_error(
        &rule(OK_COND, r#"{ set_request_header = "X-A", value = "a{b" }"#),
        "unterminated '{'",
    );
    assert_error(
        &rule(
            OK_COND,
            r#"{ set_request_header = "X-A", value = "{a{var.host}" }"#,
        ),
        "unterminated '{'",
    );
    assert_error(
        &rule(
            OK_COND,
            r#"{ set_request_header = "X-A", value = "{foo}" }"#,
        ),
        "unknown reference \"{foo}\"",
    );
    assert_error(
        &rule(
            OK_COND,
            r#"{ set_request_header = "X-A", value = "{env.HOME}" }"#,
        ),
        "unknown reference \"{env.HOME}\"",
    );
}

#[test]
fn compile_error_shapes() {
    assert_error(
        &rule(OK_COND, r#"{ set_request_header = "X-A" }"#),
        "actions[0]: `set_request_header` needs `value`",
    );
    assert_error(
        &rule(OK_COND, r#"{ delete_request_header = "X-A", value = "1" }"#),
        "actions[0].value: not used by `delete_request_header`",
    );
    assert_error(
        &rule(
            OK_COND,
            r#"{ set_request_header = "X-A", value = "1", rewrite_path = "/" }"#,
        ),
        "are exclusive, one action per entry",
    );
    assert_error(
        &rule(OK_COND, r#"{ value = "1" }"#),
        "actions[0]: needs one of",
    );
    assert_error(
        &rule(
            OK_COND,
            r#"{ set_request_header = "X-A", value = "1", query = "a" }"#,
        ),
        "actions[0].query: only used with `rewrite_path`",
    );
    assert_error(
        &rule(OK_COND, r#"{ rewrite_path = "relative" }"#),
        "actions[0].rewrite_path: path must start with '/'",
    );
    assert_error(
        &rule(r#"{ pattern = 'x' }"#, OK_ACTION),
        "conditions[0]: needs one of `variable`, `header` or `response_header`",
    );
    assert_error(
        &rule(
            r#"{ variable = "host", header = "X", pattern = 'x' }"#,
            OK_ACTION,
        ),
        "conditions[0]: `variable`, `header` are exclusive",
    );
    assert_error(
        &rule(r#"{ variable = "host" }"#, OK_ACTION),
        "conditions[0]: needs `pattern` or `equals`",
    );
    assert_error(
        &rule(
            r#"{ variable = "host", pattern = 'x', equals = "x" }"#,
            OK_ACTION,
        ),
        "`pattern` and `equals` are exclusive",
    );
    assert_error(
        &rule(OK_COND, ""),
        "sites[0].rewrites[0].actions: a rule needs at least one action",
    );
    let two = format!("{}{}", rule(OK_COND, OK_ACTION), rule(OK_COND, OK_ACTION));
    assert_eq!(
        errors(&two),
        vec!["sites[0].rewrites[1].name: duplicate rule name \"r\" (also sites[0].rewrites[0])"]
    );
    assert_error(
        &rule(OK_COND, OK_ACTION).replace("name = \"r\"", "name = \" \""),
        "rewrites[0].name: must not be empty",
    );
    // unknown fields are rejected by serde
    assert!(
        toml::from_str::<Wrapper>("[[rewrites]]\nname = \"x\"\nactions = []\nbogus = 1\n").is_err()
    );
    assert!(toml::from_str::<Wrapper>(
        "[[rewrites]]\nname = \"x\"\nactions = [ { set_request_header = \"a\", valeu = \"1\" } ]\n"
    )
    .is_err());
    assert!(toml::from_str::<Wrapper>(
        "[[rewrites]]\nname = \"x\"\nphase = \"both\"\nactions = []\n"
    )
    .is_err());
}

#[test]
fn errors_accumulate_across_rules_and_fields() {
    let src = format!(
        "{}{}",
        rule(
            r#"{ variable = "nope", pattern = '(' }"#,
            r#"{ set_request_header = "X Y", value = "{var.zz}" }"#
        ),
        rule(OK_COND, r#"{ redirect = "/", status = 200 }"#)
            .replace("name = \"r\"", "name = \"r2\""),
    );
    let errs = errors(&src);
    assert!(errs
        .iter()
        .any(|e| e.starts_with("sites[0].rewrites[0].conditions[0].variable:")));
    assert!(errs
        .iter()
        .any(|e| e.starts_with("sites[0].rewrites[0].conditions[0].pattern:")));
    assert!(errs
        .iter()
        .any(|e| e.starts_with("sites[0].rewrites[0].actions[0].set_request_header:")));
    assert!(errs
        .iter()
        .any(|e| e.starts_with("sites[0].rewrites[0].actions[0].value:")));
    assert!(errs
        .iter()
        .any(|e| e.starts_with("sites[0].rewrites[1].actions[0].status:")));
}
