//! Running plans: conditions, every action, captures and interpolation, and what is skipped.

use super::*;

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
