use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Site {
    custom_rules: Vec<CustomRuleConfig>,
}

fn parse(toml_src: &str) -> Vec<CustomRuleConfig> {
    toml::from_str::<Site>(toml_src).expect("toml").custom_rules
}

fn rules(toml_src: &str) -> CustomRules {
    compile(&parse(toml_src), "sites[0].custom_rules").expect("compiles")
}

fn errors(toml_src: &str) -> Vec<String> {
    compile(&parse(toml_src), "sites[0].custom_rules").expect_err("must fail")
}

/// One rule with one condition; returns whether it matches `req`.
fn cond(c: &str, req: &OwnedRequestFacts) -> bool {
    let r = rules(&format!(
        "[[custom_rules]]\nname = \"r\"\npriority = 1\naction = \"block\"\nconditions = [ {c} ]\n"
    ));
    r.evaluate(req).is_block()
}

#[test]
fn documented_example() {
    let r = rules(
        r#"
[[custom_rules]]
name = "block-bad-bots"
priority = 10
action = "block"
conditions = [
  { match = "request_header:User-Agent", operator = "contains", values = ["sqlmap", "nikto"], transforms = ["lowercase"] },
  { match = "client_ip", operator = "ip_match", values = ["203.0.113.0/24", "2001:db8::/32"], negate = true },
]
"#,
    );
    let bad = OwnedRequestFacts::get("/")
        .with_header("user-agent", "SQLMap/1.7")
        .with_ip("198.51.100.7");
    let ev = r.evaluate(&bad);
    assert_eq!(
        ev.decision,
        Some(CustomDecision {
            rule: "block-bad-bots",
            action: CustomAction::Block
        })
    );
    // trusted network (v4, v6 and v4-mapped) is exempt
    for ip in ["203.0.113.9", "2001:db8::1", "::ffff:203.0.113.9"] {
        let req = OwnedRequestFacts::get("/")
            .with_header("User-Agent", "sqlmap")
            .with_ip(ip);
        assert!(!r.evaluate(&req).is_block(), "{ip}");
    }
    let good = OwnedRequestFacts::get("/")
        .with_header("User-Agent", "curl")
        .with_ip("198.51.100.7");
    assert_eq!(r.evaluate(&good), Evaluation::default());
}

#[test]
fn priority_order_allow_block_log() {
    let r = rules(
        r#"
[[custom_rules]]
name = "block-admin"
priority = 20
action = "block"
conditions = [{ match = "uri_path", operator = "begins_with", values = ["/admin"] }]

[[custom_rules]]
name = "allow-office"
priority = 10
action = "allow"
conditions = [{ match = "client_ip", operator = "ip_match", values = ["10.0.0.0/8"] }]

[[custom_rules]]
name = "log-admin"
priority = 5
action = "log"
conditions = [{ match = "uri_path", operator = "begins_with", values = ["/admin"] }]

[[custom_rules]]
name = "log-late"
priority = 30
action = "log"
conditions = [{ match = "uri_path", operator = "any" }]
"#,
    );
    assert_eq!(
        r.rules().iter().map(|r| r.priority).collect::<Vec<_>>(),
        vec![5, 10, 20, 30]
    );
    let office = OwnedRequestFacts::get("/admin/x").with_ip("10.1.2.3");
    let ev = r.evaluate(&office);
    assert!(ev.is_allow());
    assert_eq!(ev.decision.unwrap().rule, "allow-office");
    assert_eq!(ev.logged, vec!["log-admin"]);

    let outsider = OwnedRequestFacts::get("/admin/x").with_ip("192.0.2.1");
    let ev = r.evaluate(&outsider);
    assert!(ev.is_block());
    assert_eq!(ev.decision.unwrap().rule, "block-admin");
    assert_eq!(ev.logged, vec!["log-admin"]);

    let ev = r.evaluate(&OwnedRequestFacts::get("/home").with_ip("192.0.2.1"));
    assert_eq!(ev.decision, None);
    assert_eq!(ev.logged, vec!["log-late"]);
}

#[test]
fn variables() {
    let req = OwnedRequestFacts::get("/p/a%20b?x=1&name=J%C3%B6rg+Z&name=second&flag")
        .with_method("POST")
        .with_ip("192.0.2.10")
        .with_country("de")
        .with_header("Cookie", "a=1; session=abc123 ; theme=dark")
        .with_header(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .with_body(b"user=admin&pass=%27+or+1%3D1--");
    let t = |c: &str| cond(c, &req);
    assert!(t(
        r#"{ match = "request_method", operator = "equals", values = ["POST"] }"#
    ));
    assert!(t(
        r#"{ match = "request_uri", operator = "equals", values = ["/p/a%20b?x=1&name=J%C3%B6rg+Z&name=second&flag"] }"#
    ));
    assert!(t(
        r#"{ match = "uri_path", operator = "equals", values = ["/p/a%20b"] }"#
    ));
    assert!(t(
        r#"{ match = "uri_path", operator = "equals", values = ["/p/a b"], transforms = ["url_decode"] }"#
    ));
    assert!(t(
        r#"{ match = "query_string", operator = "begins_with", values = ["x=1&"] }"#
    ));
    assert!(t(
        r#"{ match = "query_arg:name", operator = "equals", values = ["Jörg Z"] }"#
    ));
    assert!(t(
        r#"{ match = "query_arg:name", operator = "equals", values = ["second"] }"#
    ));
    assert!(t(r#"{ match = "query_arg:flag", operator = "any" }"#));
    assert!(t(
        r#"{ match = "query_arg:x", operator = "equals", values = [1] }"#
    ));
    assert!(!t(r#"{ match = "query_arg:missing", operator = "any" }"#));
    assert!(t(
        r#"{ match = "query_arg:missing", operator = "any", negate = true }"#
    ));
    assert!(t(
        r#"{ match = "cookie:session", operator = "equals", values = ["abc123"] }"#
    ));
    assert!(t(
        r#"{ match = "cookie:theme", operator = "ends_with", values = ["ark"] }"#
    ));
    assert!(!t(r#"{ match = "cookie:sess", operator = "any" }"#));
    assert!(t(
        r#"{ match = "request_header:content-type", operator = "contains", values = ["urlencoded"] }"#
    ));
    assert!(t(
        r#"{ match = "request_body", operator = "contains", values = ["user=admin"] }"#
    ));
    assert!(t(
        r#"{ match = "post_arg:pass", operator = "contains", values = ["' or 1=1"] }"#
    ));
    assert!(t(
        r#"{ match = "post_arg:user", operator = "equals", values = ["admin"] }"#
    ));
    assert!(t(
        r#"{ match = "client_country", operator = "geo_match", values = ["DE", "FR"] }"#
    ));
    assert!(t(
        r#"{ match = "client_ip", operator = "geo_match", values = ["de"] }"#
    ));
    assert!(!t(
        r#"{ match = "client_ip", operator = "geo_match", values = ["US"] }"#
    ));
    assert!(t(
        r#"{ match = "client_ip", operator = "equals", values = ["192.0.2.10"] }"#
    ));
    assert!(t(
        r#"{ match = "client_ip", operator = "ip_match", values = ["192.0.2.10"] }"#
    ));

    // post args need the urlencoded content type
    let json = OwnedRequestFacts::get("/")
        .with_header("content-type", "application/json")
        .with_body(b"user=admin");
    assert!(!cond(
        r#"{ match = "post_arg:user", operator = "any" }"#,
        &json
    ));
    assert!(cond(
        r#"{ match = "request_body", operator = "contains", values = ["admin"] }"#,
        &json
    ));

    // unknown country: no match, negated -> match
    let nowhere = OwnedRequestFacts::get("/");
    assert!(!cond(
        r#"{ match = "client_country", operator = "geo_match", values = ["DE"] }"#,
        &nowhere
    ));
    assert!(cond(
        r#"{ match = "client_country", operator = "geo_match", values = ["DE"], negate = true }"#,
        &nowhere
    ));
    assert!(!cond(
        r#"{ match = "query_string", operator = "any" }"#,
        &nowhere
    ));
}

#[test]
fn ip_match_v4_v6_mapped() {
    let c = r#"{ match = "client_ip", operator = "ip_match", values = ["198.51.100.0/24", "2001:db8:1::/48", "::ffff:192.0.2.0/120"] }"#;
    for (ip, expect) in [
        ("198.51.100.255", true),
        ("198.51.101.0", false),
        ("::ffff:198.51.100.1", true),
        ("2001:db8:1:ffff::1", true),
        ("2001:db8:2::1", false),
        ("192.0.2.77", true),
        ("::ffff:192.0.2.77", true),
        ("192.0.3.1", false),
    ] {
        let req = OwnedRequestFacts::get("/").with_ip(ip);
        assert_eq!(cond(c, &req), expect, "{ip}");
    }
    // no client IP known
    assert!(!cond(c, &OwnedRequestFacts::get("/")));
    // ip_match on a header value
    let xff = r#"{ match = "request_header:X-Real-IP", operator = "ip_match", values = ["10.0.0.0/8"], transforms = ["trim"] }"#;
    assert!(cond(
        xff,
        &OwnedRequestFacts::get("/").with_header("x-real-ip", " 10.9.8.7 ")
    ));
    assert!(!cond(
        xff,
        &OwnedRequestFacts::get("/").with_header("x-real-ip", "garbage")
    ));
}

#[test]
fn string_regex_and_numeric_operators() {
    let req = OwnedRequestFacts::get("/x?page=42&size=abc&neg=-1.5")
        .with_header("User-Agent", "Mozilla/5.0 (X11) EvilBot/2.1");
    let t = |c: &str| cond(c, &req);
    assert!(t(
        r#"{ match = "request_header:user-agent", operator = "regex", values = ["^curl", "(?i)evilbot/\\d"] }"#
    ));
    assert!(!t(
        r#"{ match = "request_header:user-agent", operator = "regex", values = ["^EvilBot"] }"#
    ));
    assert!(t(
        r#"{ match = "request_header:user-agent", operator = "begins_with", values = ["mozilla"], transforms = ["lowercase"] }"#
    ));
    assert!(t(
        r#"{ match = "request_header:user-agent", operator = "ends_with", values = ["2.1"] }"#
    ));
    assert!(!t(
        r#"{ match = "request_header:user-agent", operator = "equals", values = ["mozilla"] }"#
    ));
    assert!(t(
        r#"{ match = "request_header:user-agent", operator = "contains", values = ["EVILBOT"], transforms = ["uppercase"] }"#
    ));
    assert!(t(
        r#"{ match = "query_arg:page", operator = "gt", values = [41] }"#
    ));
    assert!(t(
        r#"{ match = "query_arg:page", operator = "ge", values = ["42"] }"#
    ));
    assert!(!t(
        r#"{ match = "query_arg:page", operator = "lt", values = [42] }"#
    ));
    assert!(t(
        r#"{ match = "query_arg:page", operator = "le", values = [42.0] }"#
    ));
    assert!(t(
        r#"{ match = "query_arg:page", operator = "lt", values = [10, 100] }"#
    ));
    assert!(t(
        r#"{ match = "query_arg:neg", operator = "lt", values = [-1] }"#
    ));
    // non-numeric input never matches (and negation inverts that)
    assert!(!t(
        r#"{ match = "query_arg:size", operator = "gt", values = [0] }"#
    ));
    assert!(!t(
        r#"{ match = "query_arg:size", operator = "lt", values = [0] }"#
    ));
    assert!(t(
        r#"{ match = "query_arg:size", operator = "lt", values = [0], negate = true }"#
    ));
}

#[test]
fn transforms_in_conditions() {
    let req = OwnedRequestFacts::get("/search?q=%253Cscript%253E&h=%26lt%3Bimg%26gt%3B&n=a%00b");
    let t = |c: &str| cond(c, &req);
    // query_arg is form-decoded once (-> %3Cscript%3E); url_decode finishes it
    assert!(!t(
        r#"{ match = "query_arg:q", operator = "contains", values = ["<script"] }"#
    ));
    assert!(t(
        r#"{ match = "query_arg:q", operator = "contains", values = ["<script"], transforms = ["url_decode"] }"#
    ));
    assert!(t(
        r#"{ match = "query_string", operator = "contains", values = ["<script>"], transforms = ["url_decode"] }"#
    ));
    assert!(t(
        r#"{ match = "query_arg:h", operator = "equals", values = ["<img>"], transforms = ["html_entity_decode"] }"#
    ));
    assert!(t(
        r#"{ match = "query_arg:n", operator = "equals", values = ["ab"], transforms = ["remove_nulls"] }"#
    ));
}

#[test]
fn compile_errors_have_paths() {
    let errs = errors(
        r#"
[[custom_rules]]
name = "a"
priority = 1
action = "block"
conditions = [
  { match = "client_ip", operator = "ip_match", values = ["10.0.0.0/33", "nope"] },
  { match = "bogus_var", operator = "equals", values = ["x"] },
  { match = "uri_path", operator = "regex", values = ["(unclosed"] },
  { match = "request_header:User-Agent", operator = "contains", values = ["SQLMap"], transforms = ["lowercase"] },
  { match = "query_arg:n", operator = "gt", values = ["ten"] },
  { match = "uri_path", operator = "any", values = ["x"] },
  { match = "uri_path", operator = "equals", values = [] },
  { match = "uri_path", operator = "geo_match", values = ["DE"] },
  { match = "client_country", operator = "geo_match", values = ["Germany"] },
  { match = "query_arg", operator = "any" },
  { match = "request_header:bad header", operator = "any" },
]

[[custom_rules]]
name = "a"
priority = 1
action = "log"
conditions = []
"#,
    );
    let expect_prefixes = [
        "sites[0].custom_rules[0].conditions[0].values[0]: invalid CIDR",
        "sites[0].custom_rules[0].conditions[0].values[1]: invalid IP",
        "sites[0].custom_rules[0].conditions[1].match: unknown match variable `bogus_var`",
        "sites[0].custom_rules[0].conditions[2].values[0]: invalid regex",
        "sites[0].custom_rules[0].conditions[3].values[0]: `SQLMap` can never match",
        "sites[0].custom_rules[0].conditions[4].values[0]: `ten` is not a number",
        "sites[0].custom_rules[0].conditions[5].values: operator `any` takes no values",
        "sites[0].custom_rules[0].conditions[6].values: at least one value is required",
        "sites[0].custom_rules[0].conditions[7].operator: geo_match only applies",
        "sites[0].custom_rules[0].conditions[8].values[0]: `Germany` is not a two-letter",
        "sites[0].custom_rules[0].conditions[9].match: `query_arg` needs",
        "sites[0].custom_rules[0].conditions[10].match: invalid header name",
        "sites[0].custom_rules[1].name: duplicate rule name `a`",
        "sites[0].custom_rules[1].priority: priority 1 is already used",
        "sites[0].custom_rules[1].conditions: at least one condition is required",
    ];
    for p in expect_prefixes {
        assert!(
            errs.iter().any(|e| e.starts_with(p)),
            "missing `{p}` in {errs:#?}"
        );
    }
    assert_eq!(errs.len(), expect_prefixes.len(), "{errs:#?}");
}

#[test]
fn serde_rejects_unknown_fields_and_operators() {
    let bad_field = r#"
[[custom_rules]]
name = "a"
priority = 1
action = "block"
conditoins = []
"#;
    assert!(toml::from_str::<Site>(bad_field).is_err());
    let bad_op = r#"
[[custom_rules]]
name = "a"
priority = 1
action = "block"
conditions = [{ match = "uri_path", operator = "like", values = ["x"] }]
"#;
    let e = toml::from_str::<Site>(bad_op).unwrap_err().to_string();
    assert!(e.contains("unknown variant `like`"), "{e}");
    let bad_action =
        "[[custom_rules]]\nname = \"a\"\npriority = 1\naction = \"deny\"\nconditions = []\n";
    assert!(toml::from_str::<Site>(bad_action).is_err());
}

#[test]
fn http_parts_adapter() {
    let req = http::Request::builder()
        .method("PUT")
        .uri("https://example.com/a/b?c=d")
        .header("X-Test", "yes")
        .body(())
        .unwrap();
    let (parts, _) = req.into_parts();
    let mut f = HttpRequestFacts::new(&parts);
    f.client_ip = Some("::ffff:10.0.0.1".parse().unwrap());
    f.country = Some("NL");
    assert_eq!(f.raw_uri(), "/a/b?c=d");
    assert_eq!(f.path(), "/a/b");
    assert_eq!(f.query(), Some("c=d"));
    assert_eq!(f.method(), "PUT");
    assert_eq!(f.header("x-test"), Some("yes"));
    let r = rules(
        r#"
[[custom_rules]]
name = "r"
priority = 1
action = "allow"
conditions = [
  { match = "client_ip", operator = "ip_match", values = ["10.0.0.0/8"] },
  { match = "query_arg:c", operator = "equals", values = ["d"] },
  { match = "client_country", operator = "geo_match", values = ["NL"] },
]
"#,
    );
    assert!(r.evaluate(&f).is_allow());
    assert!(!r.needs_body());
}

/// Rough per-request cost (run with --release --nocapture).
#[test]
fn evaluate_cost() {
    let r = rules(
        r#"
[[custom_rules]]
name = "block-bad-bots"
priority = 10
action = "block"
conditions = [
  { match = "request_header:User-Agent", operator = "contains", values = ["sqlmap", "nikto"], transforms = ["lowercase"] },
  { match = "client_ip", operator = "ip_match", values = ["203.0.113.0/24", "2001:db8::/32"], negate = true },
]

[[custom_rules]]
name = "geo"
priority = 20
action = "block"
conditions = [{ match = "client_country", operator = "geo_match", values = ["KP", "IR"] }]

[[custom_rules]]
name = "admin-args"
priority = 30
action = "log"
conditions = [
  { match = "query_arg:id", operator = "regex", values = ["(?i)union\\s+select", "'\\s*or\\s"], transforms = ["url_decode"] },
]
"#,
    );
    let req = OwnedRequestFacts::get("/products/list?id=42&sort=price&page=3")
        .with_ip("198.51.100.7")
        .with_country("DE")
        .with_header(
            "User-Agent",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120",
        )
        .with_header("Cookie", "session=abc; theme=dark");
    let n = 100_000u32;
    let start = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(r.evaluate(std::hint::black_box(&req)));
    }
    eprintln!(
        "custom rules (3 rules, 4 conditions): {:?} per request",
        start.elapsed() / n
    );
}
