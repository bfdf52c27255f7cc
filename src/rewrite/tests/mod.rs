//! Rewrite tests: the helpers here (rule text in, a plan or its errors out; a mock request and
//! response), evaluation in `evaluation`, compile errors in `compile_errors`.

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

pub(super) fn parse(src: &str) -> Vec<RewriteRuleConfig> {
    toml::from_str::<Wrapper>(src).expect("toml").rewrites
}

pub(super) fn plan(src: &str) -> RewritePlan {
    match compile(&parse(src), "sites[0].rewrites") {
        Ok(p) => p,
        Err(e) => panic!("compile errors: {e:#?}"),
    }
}

pub(super) fn errors(src: &str) -> Vec<String> {
    match compile(&parse(src), "sites[0].rewrites") {
        Ok(_) => panic!("expected compile errors"),
        Err(e) => e,
    }
}

pub(super) fn assert_error(src: &str, expected: &str) {
    let errs = errors(src);
    assert!(
        errs.iter().any(|e| e.contains(expected)),
        "no error containing {expected:?} in {errs:#?}"
    );
}

#[derive(Default)]
pub(super) struct Mock {
    vars: HashMap<Variable, String>,
    req: Vec<(HeaderName, String)>,
    resp: Vec<(HeaderName, String)>,
    status: u16,
}

impl Mock {
    pub(super) fn new(path: &str, query: &str) -> Mock {
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
    pub(super) fn var(mut self, v: Variable, s: &str) -> Mock {
        self.vars.insert(v, s.to_string());
        self
    }
    pub(super) fn header(mut self, n: &str, v: &str) -> Mock {
        self.req
            .push((HeaderName::from_bytes(n.as_bytes()).unwrap(), v.to_string()));
        self
    }
    pub(super) fn resp_header(mut self, n: &str, v: &str) -> Mock {
        self.resp
            .push((HeaderName::from_bytes(n.as_bytes()).unwrap(), v.to_string()));
        self
    }
    pub(super) fn status(mut self, s: u16) -> Mock {
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

pub(super) fn set(n: &str, v: &str) -> HeaderEdit {
    HeaderEdit::Set(
        HeaderName::from_bytes(n.as_bytes()).unwrap(),
        HeaderValue::from_str(v).unwrap(),
    )
}
pub(super) fn append(n: &str, v: &str) -> HeaderEdit {
    HeaderEdit::Append(
        HeaderName::from_bytes(n.as_bytes()).unwrap(),
        HeaderValue::from_str(v).unwrap(),
    )
}
pub(super) fn delete(n: &str) -> HeaderEdit {
    HeaderEdit::Delete(HeaderName::from_bytes(n.as_bytes()).unwrap())
}

/// One rule with a single condition and a marker action; whether it fires.
pub(super) fn fires(cond: &str, phase: &str, m: &Mock) -> bool {
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

mod compile_errors;
mod evaluation;
