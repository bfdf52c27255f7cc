//! Compile errors: each names its key path, and they accumulate across rules and fields.

use super::*;

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
