//! Compiling a site's rewrite rules: every condition, template and action is checked up front
//! and every problem is reported with its key path, so evaluation never meets a bad rule.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use regex::RegexBuilder;

use super::checks::{check_location, check_path};
use super::template::{CondInfo, Scope, Template};
use super::{
    Action, ActionConfig, ActionKind, Cond, ConditionConfig, EditOp, Matcher, Phase, RewritePlan,
    RewriteRuleConfig, Rule, Subject, ValueSource, Variable, MAX_VALUE_LEN, PROTECTED_HEADERS,
};

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
