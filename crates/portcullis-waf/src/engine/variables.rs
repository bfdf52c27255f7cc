//! Turning a request into the variables rules inspect: the pieces of the request line, headers,
//! cookies, query and body arguments (and the base64 views of arguments and cookies), uploaded
//! files, the raw body and the numbers behind the meta targets (`count:*`, `length:*`). Only the
//! collections some rule of the plan selects are built, and variables borrow from the request and
//! its parsed arguments wherever they can.

use std::borrow::Cow;

use super::{MetaKind, WafPlan};
use crate::body::{
    body_text, parse_body, parse_urlencoded_into, request_text, Arg, ParsedBody, MAX_BODY_ARGS,
    MAX_JSON_LEAVES,
};
use crate::request::HttpRequest;
use crate::target::Coll;
use crate::transform::{base64_text, url_decode_once};

/// Maximum number of variables extracted from one request.
/// Most variables built from one request: every argument (name and value) of the largest query,
/// form and JSON document the body parsers return, with room for headers, cookies and the rest.
const MAX_VARS: usize = 2 * (MAX_JSON_LEAVES + 2 * MAX_BODY_ARGS) + 2048;

/// A variable extracted from the request.
#[derive(Debug, Clone)]
pub(super) struct Var<'a> {
    pub(super) coll: Coll,
    pub(super) name: Cow<'a, str>,
    pub(super) value: Cow<'a, str>,
}

/// The arguments of a request, parsed once; [`Ctx`]'s variables borrow them.
pub(super) struct Inputs<'a> {
    target: Target<'a>,
    query: Vec<Arg<'a>>,
    pub(super) body: ParsedBody<'a>,
}

/// A request-target in its pieces: the host of an absolute form (empty for the origin form),
/// the path, and the query after the first `?`.
struct Target<'a> {
    host: &'a str,
    path: &'a str,
    query: Option<&'a str>,
}

impl<'a> Target<'a> {
    fn split(uri: &'a str) -> Target<'a> {
        let (host, path_part) = match uri
            .strip_prefix("http://")
            .or_else(|| uri.strip_prefix("https://"))
        {
            Some(rest) => rest.split_at(rest.find('/').unwrap_or(rest.len())),
            None => ("", uri),
        };
        let (path, query) = match path_part.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_part, None),
        };
        Target { host, path, query }
    }
}

/// An argument, cookie or path segment whose value is base64 as a whole is also inspected as the
/// text it decodes to (see [`base64_text`]), under the same collection and name, so every rule, selector
/// and exclusion that applies to the value applies to what an application decoding it would
/// read: an attack sent in base64 meets the same rules as one sent plain. Of the headers only the
/// `User-Agent`, which the rules read as an input (no browser sends one in base64): SDK headers
/// in base64 decode to binary with line breaks that header-syntax rules take for injections.
fn push_base64_view<'b>(vars: &mut Vec<Var<'b>>, coll: Coll, name: &str, value: &str) {
    if vars.len() >= MAX_VARS {
        return;
    }
    if let Some(text) = base64_text(value) {
        vars.push(Var {
            coll,
            name: Cow::Owned(name.to_string()),
            value: Cow::Owned(text),
        });
    }
}

/// `bytes` without the given (ascending, disjoint) ranges.
fn without_ranges(bytes: &[u8], ranges: &[std::ops::Range<usize>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut from = 0;
    for r in ranges {
        let start = r.start.min(bytes.len());
        out.extend_from_slice(&bytes[from.min(start)..start]);
        from = from.max(r.end.min(bytes.len()));
    }
    out.extend_from_slice(&bytes[from..]);
    out
}

/// Parses the query string and the body. The variables borrow the result, so a JSON body's
/// hundreds of names and values are neither copied nor freed one by one.
pub(super) fn parse_inputs<'a>(req: &HttpRequest<'a>) -> Inputs<'a> {
    let mut query = Vec::new();
    let target = Target::split(req.uri);
    if let Some(q) = target.query {
        parse_urlencoded_into(q.split('#').next().unwrap_or(q), &mut query);
    }
    let content_type = req
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| request_text(v));
    Inputs {
        target,
        query,
        body: parse_body(content_type.as_deref(), req.body, req.body_truncated),
    }
}

/// The variables of one request, and what its exclusions and chained conditions look at.
pub(super) struct Ctx<'a> {
    pub(super) vars: Vec<Var<'a>>,
    pub(super) host: String,
    pub(super) path: String,
    /// The body was urlencoded or JSON and parsed without error: all of it is in the arguments.
    pub(super) body_parsed: bool,
}

impl WafPlan {
    pub(super) fn build_ctx<'b, 'a: 'b>(
        &self,
        req: &HttpRequest<'a>,
        inputs: &'b Inputs<'a>,
    ) -> Ctx<'b> {
        let arg_count = inputs.query.len() + inputs.body.arg_count();
        let mut vars: Vec<Var<'b>> = Vec::with_capacity(64 + 2 * arg_count.min(MAX_VARS));
        let used = |c: Coll| self.used.get(c.slot(0)).copied().unwrap_or(false);
        let push =
            |vars: &mut Vec<Var<'b>>, coll: Coll, name: Cow<'b, str>, value: Cow<'b, str>| {
                if vars.len() < MAX_VARS {
                    vars.push(Var { coll, name, value });
                }
            };
        // Request line pieces.
        let uri: &'a str = req.uri;
        let target = &inputs.target;
        let query = target.query;
        let raw_path = target.path.split('#').next().unwrap_or(target.path);
        let path: Cow<'a, str> = match url_decode_once(raw_path, false) {
            Some(p) => Cow::Owned(p),
            None => Cow::Borrowed(raw_path),
        };
        let empty = || Cow::Borrowed("");
        if used(Coll::Method) {
            push(&mut vars, Coll::Method, empty(), Cow::Borrowed(req.method));
        }
        if used(Coll::Protocol) {
            push(
                &mut vars,
                Coll::Protocol,
                empty(),
                Cow::Borrowed(req.version),
            );
        }
        if used(Coll::RequestLine) {
            push(
                &mut vars,
                Coll::RequestLine,
                empty(),
                Cow::Owned(format!("{} {} {}", req.method, req.uri, req.version)),
            );
        }
        if used(Coll::RequestUriRaw) {
            push(&mut vars, Coll::RequestUriRaw, empty(), Cow::Borrowed(uri));
        }
        if used(Coll::Basename) {
            let base = path.rsplit('/').next().unwrap_or("").to_string();
            push(&mut vars, Coll::Basename, empty(), Cow::Owned(base));
        }
        if used(Coll::Path) {
            push(&mut vars, Coll::Path, empty(), path.clone());
            // A path segment that is base64 as a whole is read decoded too, as arguments are.
            for segment in path.split('/') {
                push_base64_view(&mut vars, Coll::Path, "", segment);
            }
        }
        if let Some(q) = query {
            if used(Coll::QueryString) && !q.is_empty() {
                push(&mut vars, Coll::QueryString, empty(), Cow::Borrowed(q));
            }
        }
        let mut host = target.host.to_string();
        let mut cookie_count = 0usize;
        let mut header_bytes = 0usize;
        for (n, v) in req.headers.iter() {
            let n: &'a str = n;
            header_bytes += n.len() + v.len();
            let value: Cow<'a, str> = request_text(v);
            if host.is_empty() && n.eq_ignore_ascii_case("host") {
                host = value.split(':').next().unwrap_or("").to_ascii_lowercase();
            }
            let is_cookie = n.eq_ignore_ascii_case("cookie");
            if is_cookie {
                let mut add = |cn: Cow<'a, str>, cv: Cow<'a, str>| {
                    cookie_count += 1;
                    if used(Coll::CookieNames) {
                        push(&mut vars, Coll::CookieNames, cn.clone(), cn.clone());
                    }
                    if used(Coll::Cookies) {
                        push_base64_view(&mut vars, Coll::Cookies, &cn, &cv);
                        push(&mut vars, Coll::Cookies, cn, cv);
                    }
                };
                match &value {
                    Cow::Borrowed(s) => {
                        let s: &'a str = s;
                        for c in s.split(';') {
                            let c = c.trim();
                            if c.is_empty() {
                                continue;
                            }
                            match c.find('=') {
                                Some(p) => add(Cow::Borrowed(&c[..p]), Cow::Borrowed(&c[p + 1..])),
                                None => add(Cow::Borrowed(""), Cow::Borrowed(c)),
                            }
                        }
                    }
                    Cow::Owned(s) => {
                        for c in s.split(';') {
                            let c = c.trim();
                            if c.is_empty() {
                                continue;
                            }
                            match c.find('=') {
                                Some(p) => add(
                                    Cow::Owned(c[..p].to_string()),
                                    Cow::Owned(c[p + 1..].to_string()),
                                ),
                                None => add(Cow::Borrowed(""), Cow::Owned(c.to_string())),
                            }
                        }
                    }
                }
            }
            if used(Coll::HeaderNames) {
                push(
                    &mut vars,
                    Coll::HeaderNames,
                    Cow::Borrowed(n),
                    Cow::Borrowed(n),
                );
            }
            // The Cookie header is inspected through the cookies collection; it only appears in
            // `headers` when a rule names it explicitly (e.g. `headers:Cookie`).
            if used(Coll::Headers) && (self.cookie_header_named || !is_cookie) {
                if n.eq_ignore_ascii_case("user-agent") {
                    push_base64_view(&mut vars, Coll::Headers, n, &value);
                }
                push(&mut vars, Coll::Headers, Cow::Borrowed(n), value);
            }
        }
        let parsed = &inputs.body;
        // Only urlencoded and JSON bodies become arguments whole: multipart file contents and XML
        // markup (a DOCTYPE's entities) exist only in the raw body.
        let body_parsed = matches!(parsed.kind, "urlencoded" | "json") && parsed.error.is_none();
        let args = || {
            inputs
                .query
                .iter()
                .map(|(n, v)| (&**n, &**v))
                .chain(parsed.arg_pairs())
        };
        // Numbers for meta targets.
        let mut meta_vals: Vec<usize> = Vec::with_capacity(self.metas.len());
        for m in &self.meta_kinds {
            meta_vals.push(match m {
                // Query and form arguments: what a framework turns into variables (PHP's
                // max_input_vars). The leaves of one JSON document are not counted here.
                MetaKind::CountArgs => inputs.query.len() + parsed.args.len(),
                MetaKind::CountHeaders => req.headers.len(),
                MetaKind::CountCookies => cookie_count,
                MetaKind::CountFiles => parsed.files.len(),
                MetaKind::CountHeader(n) => req
                    .headers
                    .iter()
                    .filter(|(h, _)| h.eq_ignore_ascii_case(n))
                    .count(),
                MetaKind::CountArg(n) => args().filter(|(a, _)| a.eq_ignore_ascii_case(n)).count(),
                MetaKind::CountCookie(n) => vars
                    .iter()
                    .filter(|v| v.coll == Coll::Cookies && v.name.eq_ignore_ascii_case(n))
                    .count(),
                MetaKind::LengthUri => uri.len(),
                MetaKind::LengthPath => raw_path.len(),
                MetaKind::LengthQuery => query.map(|q| q.len()).unwrap_or(0),
                MetaKind::LengthBody => req.body.len(),
                MetaKind::LengthHeaders => header_bytes,
                MetaKind::LengthArgs => args().map(|(a, b)| a.len() + b.len()).sum(),
                MetaKind::Unknown => 0,
            });
        }
        let (want_names, want_args) = (used(Coll::ArgsNames), used(Coll::Args));
        let query_len = inputs.query.len();
        for (i, (n, v)) in args().enumerate() {
            if want_names && !n.is_empty() {
                push(
                    &mut vars,
                    Coll::ArgsNames,
                    Cow::Borrowed(n),
                    Cow::Borrowed(n),
                );
            }
            // A query value the caller validated against a closed type (`typed_args`); the
            // body's arguments of the same name are scanned still.
            let typed = i < query_len && req.is_typed_arg(n);
            if want_args && !typed {
                push(&mut vars, Coll::Args, Cow::Borrowed(n), Cow::Borrowed(v));
                push_base64_view(&mut vars, Coll::Args, n, v);
            }
        }
        if used(Coll::Files) {
            for (n, f) in &parsed.files {
                push(&mut vars, Coll::Files, Cow::Borrowed(n), Cow::Borrowed(f));
            }
        }
        if let Some(e) = &parsed.error {
            push(&mut vars, Coll::ReqBodyError, empty(), Cow::Borrowed(e));
        }
        if used(Coll::Body) && !req.body.is_empty() {
            let text = if parsed.structured.is_empty() {
                body_text(req.body)
            } else {
                Cow::Owned(body_text(&without_ranges(req.body, &parsed.structured)).into_owned())
            };
            push(&mut vars, Coll::Body, empty(), text);
        }
        for (i, v) in meta_vals.into_iter().enumerate() {
            vars.push(Var {
                coll: Coll::Meta(i as u16),
                name: empty(),
                value: number_text(v),
            });
        }
        Ctx {
            vars,
            host,
            path: path.into_owned(),
            body_parsed,
        }
    }
}

/// A count or length as text for the meta targets. Values below 1024 (almost
/// every count and most lengths) come from a table built once, so a request
/// does not allocate a string per meta target.
fn number_text(n: usize) -> Cow<'static, str> {
    static SMALL: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| (0..1024).map(|n: usize| n.to_string()).collect());
    match SMALL.get(n) {
        Some(s) => Cow::Borrowed(s.as_str()),
        None => Cow::Owned(n.to_string()),
    }
}
