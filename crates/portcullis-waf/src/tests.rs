//! Engine-level unit tests: loader errors, exclusions, paranoia filtering, scoring.

use super::*;

fn plan(src: &str) -> Result<WafPlan, Vec<RuleLoadError>> {
    WafPlan::from_sources(&[("test.toml".to_string(), src.to_string())])
}

fn eval(p: &WafPlan, policy: &Policy, raw: &str) -> Verdict {
    let r = parse_raw_request(raw.as_bytes()).expect("request parses");
    r.with_request(|req| p.evaluate(req, policy))
}

const RULES: &str = r#"
[defaults]
category = "test"
targets = ["args"]
transforms = ["url_decode", "lowercase"]

[[rule]]
id = 1
message = "union select"
rx = '''union\s+select'''

[[rule]]
id = 2
message = "pl2 rule"
paranoia = 2
severity = "warning"
contains = "select"

[[rule]]
id = 3
message = "scanner"
severity = "notice"
targets = ["headers:User-Agent"]
pm = ["sqlmap", "nikto"]

[[rule]]
id = 4
message = "chained"
targets = ["args:a"]
eq = "x"
chain = [{ targets = ["args:b"], eq = "y" }]
"#;

#[test]
fn loader_reports_bad_regex_with_line_and_id() {
    let src = "[[rule]]\nid = 7\nmessage = \"m\"\ncategory = \"c\"\ntargets = [\"args\"]\nrx = '''(unclosed'''\n";
    let errs = plan(src).unwrap_err();
    assert_eq!(errs.len(), 1);
    let e = &errs[0];
    assert_eq!(e.rule_id, Some(7));
    assert_eq!(e.line, Some(6));
    let s = e.to_string();
    assert!(s.starts_with("test.toml:6: rule 7 (rx)"), "{}", s);
}

#[test]
fn loader_rejects_unknown_key_duplicate_id_and_bad_targets() {
    let errs = plan("[[rule]]\nid = 1\nmessage = \"m\"\ncategory = \"c\"\ntargets = [\"args\"]\nrx = 'a'\nbogus = 1\n").unwrap_err();
    assert!(
        errs[0].message.contains("unknown key `bogus`"),
        "{:?}",
        errs
    );
    assert_eq!(errs[0].line, Some(7));
    let dup = "[[rule]]\nid = 1\nmessage = \"m\"\ncategory = \"c\"\ntargets = [\"args\"]\nrx = 'a'\n[[rule]]\nid = 1\nmessage = \"m\"\ncategory = \"c\"\ntargets = [\"args\"]\nrx = 'b'\n";
    let errs = plan(dup).unwrap_err();
    assert!(errs[0].message.contains("duplicate rule id"), "{:?}", errs);
    assert_eq!(errs[0].line, Some(8));
    let errs = plan(
        "[[rule]]\nid = 1\nmessage = \"m\"\ncategory = \"c\"\ntargets = [\"nope\"]\nrx = 'a'\n",
    )
    .unwrap_err();
    assert!(errs[0].message.contains("unknown target"));
    let errs = plan("[[rule]]\nid = 1\nmessage = \"m\"\ncategory = \"c\"\ntargets = [\"args\"]\n")
        .unwrap_err();
    assert!(errs[0].message.contains("no operator"));
    let errs = plan("[[rule]]\nid = 1\nmessage = \"m\"\ncategory = \"c\"\ntargets = [\"args\"]\npm_file = \"missing.txt\"\n").unwrap_err();
    assert!(errs[0].message.contains("not found"));
    let errs = plan("[[rule]]\nid = 1\nmessage = \"m\"\ncategory = \"c\"\ntargets = [\"args\"]\ntransforms = [\"rot13\"]\nrx = 'a'\n").unwrap_err();
    assert!(errs[0].message.contains("unknown transformation"));
    let errs = plan("not toml = = =").unwrap_err();
    assert!(errs[0].line.is_some());
}

#[test]
fn scoring_threshold_and_modes() {
    let p = plan(RULES).unwrap();
    let mut pol = Policy::default();
    let v = eval(
        &p,
        &pol,
        "GET /?q=1%20UNION%20SELECT%202 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(v.score, 5);
    assert!(v.blocked);
    assert_eq!(v.matches[0].rule_id, 1);
    assert_eq!(v.matches[0].target, "ARGS:q");
    // notice (2) alone does not block
    let v = eval(
        &p,
        &pol,
        "GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: Nikto\r\n\r\n",
    );
    assert_eq!((v.score, v.blocked), (2, false));
    pol.mode = Mode::Detection;
    let v = eval(&p, &pol, "GET /?q=union%20select HTTP/1.1\r\n\r\n");
    assert!(!v.blocked && v.over_threshold);
    pol.mode = Mode::Off;
    let v = eval(&p, &pol, "GET /?q=union%20select HTTP/1.1\r\n\r\n");
    assert_eq!(v.score, 0);
}

#[test]
fn paranoia_filtering_and_overrides() {
    let p = plan(RULES).unwrap();
    let mut pol = Policy::default();
    let v = eval(&p, &pol, "GET /?q=select HTTP/1.1\r\n\r\n");
    assert!(v.matches.is_empty(), "PL2 rule must not run at PL1");
    pol.paranoia_level = 2;
    let v = eval(&p, &pol, "GET /?q=select HTTP/1.1\r\n\r\n");
    assert_eq!(v.score, 3);
    let pol = Policy::from_toml(
        "disabled_rules = [1]\n[[overrides]]\nid = 2\nparanoia = 1\nseverity = \"critical\"\n",
    )
    .unwrap();
    let v = eval(&p, &pol, "GET /?q=union%20select HTTP/1.1\r\n\r\n");
    assert_eq!(
        v.matches.iter().map(|m| m.rule_id).collect::<Vec<_>>(),
        vec![2]
    );
    assert_eq!(v.score, 5);
}

#[test]
fn exclusions_by_target_host_and_path() {
    let p = plan(RULES).unwrap();
    let req = "GET /api/x?q=union%20select&utm_a=union%20select HTTP/1.1\r\nHost: shop.example.com\r\n\r\n";
    let pol =
        Policy::from_toml("[[exclusions]]\nrules = [1]\ntarget = \"args\"\nname_equals = \"q\"\n")
            .unwrap();
    let v = eval(&p, &pol, req);
    assert_eq!(v.matches.len(), 1);
    assert_eq!(v.matches[0].target, "ARGS:utm_a");
    let pol = Policy::from_toml(
        "[[exclusions]]\nrules = [\"1-1\"]\ntarget = \"args\"\nname_regex = \"^(q|utm_)\"\n",
    )
    .unwrap();
    assert!(eval(&p, &pol, req).matches.is_empty());
    let pol =
        Policy::from_toml("[[exclusions]]\nhost = \"*.example.com\"\npath_prefix = \"/api\"\n")
            .unwrap();
    assert!(eval(&p, &pol, req).matches.is_empty());
    let pol = Policy::from_toml("[[exclusions]]\nhost = \"other.com\"\n").unwrap();
    assert_eq!(eval(&p, &pol, req).matches.len(), 1);
}

#[test]
fn chains_require_all_conditions() {
    let p = plan(RULES).unwrap();
    let pol = Policy::default();
    assert_eq!(
        eval(&p, &pol, "GET /?a=x&b=y HTTP/1.1\r\n\r\n")
            .matches
            .len(),
        1
    );
    assert!(eval(&p, &pol, "GET /?a=x&b=z HTTP/1.1\r\n\r\n")
        .matches
        .is_empty());
}

#[test]
fn default_plan_compiles_and_handles_hostile_input() {
    let p = default_plan()
        .unwrap_or_else(|e| panic!("{:?}", e.iter().map(|x| x.to_string()).collect::<Vec<_>>()));
    assert!(p.rule_count() > 100);
    let pol = Policy::default();
    let deep = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n{}",
        "[".repeat(50_000)
    );
    let v = eval(&p, &pol, &deep);
    assert!(v.matches.iter().any(|m| m.rule_id == 920120));
    let junk: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 256) as u8).collect();
    let mut raw = b"POST /%ff%c0%af?%u12 HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=a\r\n\r\n".to_vec();
    raw.extend_from_slice(&junk);
    let r = parse_raw_request(&raw).unwrap();
    let _ = r.with_request(|req| p.evaluate(req, &pol));
}

#[test]
fn plan_and_policy_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<WafPlan>();
    assert_send_sync::<Policy>();
}

/// The per-thread memory of clean values (`clean_cache`) must never hide a match: a value found
/// clean under one policy, plan or request context is evaluated again under another.
#[test]
fn remembered_clean_values_never_hide_a_match() {
    let p = plan(RULES).unwrap();
    let get = "GET /?q=select HTTP/1.1\r\n\r\n";
    assert!(eval(&p, &Policy::default(), get).matches.is_empty());
    assert!(eval(&p, &Policy::default(), get).matches.is_empty());
    // Another rule selection (rule 2 forced on) sees the same value afresh.
    let forced = Policy::from_toml("[[overrides]]\nid = 2\nenabled = true\n").unwrap();
    assert_eq!(eval(&p, &forced, get).score, 3);
    // Another plan (a reload) with a PL1 rule for it does too.
    let p2 = plan(&RULES.replace("paranoia = 2\n", "")).unwrap();
    assert_eq!(eval(&p2, &Policy::default(), get).score, 3);
    // A chained condition depends on the rest of the request, so its value is never remembered.
    let chained = plan(
        r#"
[[rule]]
id = 10
message = "select with a debug header"
category = "test"
targets = ["args"]
contains = "select"
chain = [ { targets = ["headers:X-Debug"], contains = "1" } ]
"#,
    )
    .unwrap();
    assert!(eval(&chained, &Policy::default(), get).matches.is_empty());
    let with_header = "GET /?q=select HTTP/1.1\r\nX-Debug: 1\r\n\r\n";
    assert_eq!(eval(&chained, &Policy::default(), with_header).score, 5);
}

/// A urlencoded or JSON body that parsed cleanly is inspected through its arguments by the rules
/// that target both `args` and `body`; rules on `body` alone, multipart file contents and XML
/// markup still see the raw body, and a value skipped this way is never remembered as clean.
#[test]
fn parsed_bodies_skip_the_raw_pass_only_where_arguments_cover_it() {
    let p = plan(
        r#"
[defaults]
category = "test"

[[rule]]
id = 20
message = "php open tag"
targets = ["args", "body"]
rx = '''<\?php'''

[[rule]]
id = 21
message = "raw framing marker"
targets = ["body"]
contains = "a=1&b"
"#,
    )
    .unwrap();
    let post = |ctype: &str, body: &str| {
        format!(
            "POST / HTTP/1.1\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let ids = |v: Verdict| v.matches.iter().map(|m| m.rule_id).collect::<Vec<_>>();
    let policy = Policy::default();
    let form = post("application/x-www-form-urlencoded", "a=1&b=%3C%3Fphp");
    let v = eval(&p, &policy, &form);
    assert_eq!(
        ids(v.clone()),
        vec![20, 21],
        "args catch the tag, the body-only rule runs raw"
    );
    assert!(v
        .matches
        .iter()
        .any(|m| m.rule_id == 20 && m.target.starts_with("ARGS")));
    // The same raw body as text/plain (not parsed) is inspected raw, even right after the form.
    let plain = post("text/plain", "x=<?php");
    let form_same = post("application/x-www-form-urlencoded", "x=<?php");
    assert_eq!(ids(eval(&p, &policy, &form_same)), vec![20]);
    assert_eq!(ids(eval(&p, &policy, &plain)), vec![20]);
    assert_eq!(ids(eval(&p, &policy, &plain)), vec![20]);
    // Multipart file contents exist only in the raw body.
    let multipart = "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"s.php\"\r\n\r\n<?php system($_GET[1]);\r\n--b--\r\n";
    let upload = post("multipart/form-data; boundary=b", multipart);
    assert_eq!(ids(eval(&p, &policy, &upload)), vec![20]);
}

/// Rules naming several spellings of a header share one group (and automaton); each spelling
/// must still reach them, and a rule on only one spelling must stay its own.
#[test]
fn header_spellings_that_share_rules_all_reach_them() {
    let src = r#"
[defaults]
category = "test"
transforms = ["lowercase"]

[[rule]]
id = 10
message = "upload traversal"
targets = ["headers:X-Filename", "headers:X-File-Name", "headers:X-Upload-Name"]
contains = "../"

[[rule]]
id = 11
message = "only one spelling"
targets = ["headers:X-File-Name"]
contains = "passwd"
"#;
    let p = plan(src).unwrap_or_else(|e| panic!("{e:?}"));
    let policy = Policy::default();
    let ids = |v: &Verdict| v.matches.iter().map(|m| m.rule_id).collect::<Vec<_>>();
    // X-Filename and X-Upload-Name have the same rules: one group with both names.
    for header in ["X-Filename", "X-File-Name", "X-Upload-Name"] {
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{header}: ../a\r\n\r\n");
        assert_eq!(ids(&eval(&p, &policy, &raw)), vec![10], "{header}");
    }
    let raw = "GET / HTTP/1.1\r\nHost: a\r\nX-Filename: passwd\r\nX-File-Name: passwd\r\n\r\n";
    let v = eval(&p, &policy, raw);
    assert_eq!(ids(&v), vec![11]);
    assert_eq!(v.matches[0].target, "REQUEST_HEADERS:X-File-Name");
}

/// Long values are first searched for any literal of their group with a vector search over a
/// lowercase copy; the automaton then starts at the leftmost literal. Every literal, at any
/// offset and in any case, before or after another one, must still reach its rule.
#[test]
fn long_values_find_every_literal_past_the_quick_search() {
    let p = plan(
        r#"
[defaults]
category = "test"
targets = ["body"]
transforms = ["lowercase"]

[[rule]]
id = 30
message = "entity"
contains = "<!entity"

[[rule]]
id = 31
message = "encoded dot"
rx = '''%2e%2e'''
"#,
    )
    .unwrap();
    let policy = Policy::default();
    let ids = |body: &str| {
        let raw = format!(
            "POST / HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut ids: Vec<u32> = eval(&p, &policy, &raw)
            .matches
            .iter()
            .map(|m| m.rule_id)
            .collect();
        ids.sort_unstable();
        ids
    };
    let pad = "lorem ipsum dolor ".repeat(20);
    assert!(pad.len() > 2 * engine::QUICK_SEARCH_MIN_LEN);
    assert_eq!(ids(&pad), Vec::<u32>::new());
    for (a, b) in [("<!ENTITY", "%2E%2e"), ("%2e%2E", "<!eNtItY")] {
        for at in [0, 1, pad.len() / 2, pad.len()] {
            let (head, tail) = pad.split_at(at);
            // The first literal alone, then followed by the second one far behind it.
            assert_eq!(ids(&format!("{head}{a}{tail}")).len(), 1, "{a} at {at}");
            assert_eq!(
                ids(&format!("{head}{a}{tail}{b}")),
                [30, 31],
                "{a} at {at}, {b} at the end"
            );
        }
    }
    // Short values go straight to the automaton.
    assert_eq!(ids("x %2E%2E <!Entity"), [30, 31]);
}

/// The requests of a batch body (`multipart/mixed` of `application/http` parts) are inspected as
/// requests: their query and body arguments are arguments, and their request lines and part
/// headers are no smuggling or response splitting.
#[test]
fn batch_parts_are_inspected_as_the_requests_they_carry() {
    let p = default_plan().unwrap();
    let policy = Policy::default();
    let batch = |inner_query: &str, inner_body: &str| {
        let body = format!(
            "--b1\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\n\
             GET /drive/v2/files?{inner_query} HTTP/1.1\r\n\r\n\r\n\
             --b1\r\nContent-Type: application/http\r\n\r\n\
             PATCH /v2/people/7 HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{inner_body}\r\n\
             --b1--\r\n"
        );
        format!(
            "POST /batch HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/mixed; boundary=b1\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let benign = eval(
        &p,
        &policy,
        &batch("fields=kind%2Cparents(id)&q=x", r#"{"name":"Ann"}"#),
    );
    assert!(benign.matches.is_empty(), "{:?}", benign.matches);
    let in_query = eval(&p, &policy, &batch("q=1%27%20or%20%271%27%3D%271", "{}"));
    assert!(in_query.over_threshold, "{:?}", in_query.matches);
    let in_body = eval(
        &p,
        &policy,
        &batch("q=x", r#"{"name":"<script>alert(1)</script>"}"#),
    );
    assert!(in_body.over_threshold, "{:?}", in_body.matches);
    // The same body as text/plain (the type given in the query string) is read the same way.
    let plain = batch("q=x", "{}").replace("multipart/mixed; boundary=b1", "text/plain");
    assert!(eval(&p, &policy, &plain).matches.is_empty());
}

#[test]
fn typed_query_arguments_are_not_scanned_but_body_arguments_of_that_name_are() {
    let p = default_plan().expect("default plan");
    let policy = Policy::default();
    let headers: [(&str, &[u8]); 2] = [
        ("Host", b"x"),
        ("Content-Type", b"application/x-www-form-urlencoded"),
    ];
    let uri = "/api?sort=%3Cscript%3Ealert(1)%3C%2Fscript%3E&q=x";
    let untyped = HttpRequest::new("GET", uri, "HTTP/1.1", &headers[..1]);
    assert!(p.evaluate(&untyped, &policy).blocked);
    let typed_names = ["sort"];
    let typed = untyped.with_typed_args(&typed_names);
    let verdict = p.evaluate(&typed, &policy);
    assert!(!verdict.blocked, "{:?}", verdict.matches);
    // The same name in a body is not vouched for.
    let body = b"sort=%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    let posted = HttpRequest::new("POST", "/api?sort=name", "HTTP/1.1", &headers)
        .with_body(body, false)
        .with_typed_args(&typed_names);
    assert!(p.evaluate(&posted, &policy).blocked);
    // Another argument is scanned still.
    let other = HttpRequest::new(
        "GET",
        "/api?sort=name&q=%3Cscript%3E",
        "HTTP/1.1",
        &headers[..1],
    )
    .with_typed_args(&typed_names);
    assert!(p.evaluate(&other, &policy).blocked);
}
