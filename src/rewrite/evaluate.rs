//! Running a compiled [`RewritePlan`] against a request (before proxying) or a response: the
//! edits to apply, in order, which rules matched and which actions were skipped (and why).

use std::borrow::Cow;

use http::{HeaderName, HeaderValue};

use super::checks::{check_header_value, check_location, check_path, check_query, normalize_query};
use super::template::Lookup;
use super::{
    variable, Action, ActionKind, Cond, EditOp, HeaderEdit, Matcher, RequestOutcome, RequestView,
    ResponseOutcome, ResponseView, RewritePlan, Rule, Subject, ValueSource, Variable,
};

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
