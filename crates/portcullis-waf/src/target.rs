//! Target collections and selectors (`args`, `args:id`, `headers:/^x-/`, `!cookies:session`).

use regex::Regex;

/// A request collection a rule can inspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Coll {
    Method,
    /// Raw request-target as sent.
    RequestUriRaw,
    /// Percent-decoded path (no query).
    Path,
    /// Last path segment, decoded.
    Basename,
    /// Raw query string.
    QueryString,
    Protocol,
    RequestLine,
    /// Argument values from query string and parsed body.
    Args,
    ArgsNames,
    Cookies,
    CookieNames,
    Headers,
    HeaderNames,
    /// Raw body (up to the inspection limit).
    Body,
    /// Multipart upload filenames.
    Files,
    /// Set when the body of a declared type failed to parse.
    ReqBodyError,
    /// Computed numbers (`count:*`, `length:*`), index into the plan's meta table.
    Meta(u16),
}

pub const N_FIXED_COLLS: usize = 16;

impl Coll {
    /// Parse a collection name (not meta). Accepts a few aliases.
    pub fn parse(s: &str) -> Option<Coll> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "method" | "request_method" => Coll::Method,
            "request_uri_raw" | "uri_raw" | "uri" => Coll::RequestUriRaw,
            "path" | "request_filename" => Coll::Path,
            "basename" | "request_basename" => Coll::Basename,
            "query_string" | "query" => Coll::QueryString,
            "protocol" | "request_protocol" => Coll::Protocol,
            "request_line" => Coll::RequestLine,
            "args" => Coll::Args,
            "args_names" => Coll::ArgsNames,
            "cookies" | "request_cookies" => Coll::Cookies,
            "cookie_names" | "cookies_names" => Coll::CookieNames,
            "headers" | "request_headers" => Coll::Headers,
            "header_names" | "headers_names" => Coll::HeaderNames,
            "body" | "request_body" => Coll::Body,
            "files" => Coll::Files,
            "reqbody_error" => Coll::ReqBodyError,
            _ => return None,
        })
    }

    /// Index for per-collection tables (meta collections share the last slot + index).
    pub fn slot(self, n_meta: usize) -> usize {
        let _ = n_meta;
        match self {
            Coll::Method => 0,
            Coll::RequestUriRaw => 1,
            Coll::Path => 2,
            Coll::Basename => 3,
            Coll::QueryString => 4,
            Coll::Protocol => 5,
            Coll::RequestLine => 6,
            Coll::Args => 7,
            Coll::ArgsNames => 8,
            Coll::Cookies => 9,
            Coll::CookieNames => 10,
            Coll::Headers => 11,
            Coll::HeaderNames => 12,
            Coll::Body => 13,
            Coll::Files => 14,
            Coll::ReqBodyError => 15,
            Coll::Meta(i) => N_FIXED_COLLS + i as usize,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Coll::Method => "REQUEST_METHOD",
            Coll::RequestUriRaw => "REQUEST_URI_RAW",
            Coll::Path => "REQUEST_PATH",
            Coll::Basename => "REQUEST_BASENAME",
            Coll::QueryString => "QUERY_STRING",
            Coll::Protocol => "REQUEST_PROTOCOL",
            Coll::RequestLine => "REQUEST_LINE",
            Coll::Args => "ARGS",
            Coll::ArgsNames => "ARGS_NAMES",
            Coll::Cookies => "REQUEST_COOKIES",
            Coll::CookieNames => "REQUEST_COOKIES_NAMES",
            Coll::Headers => "REQUEST_HEADERS",
            Coll::HeaderNames => "REQUEST_HEADERS_NAMES",
            Coll::Body => "REQUEST_BODY",
            Coll::Files => "FILES",
            Coll::ReqBodyError => "REQBODY_ERROR",
            Coll::Meta(_) => "META",
        }
    }

    /// Collections whose variables carry a name that selectors can filter on.
    pub fn named(self) -> bool {
        matches!(
            self,
            Coll::Args
                | Coll::ArgsNames
                | Coll::Cookies
                | Coll::CookieNames
                | Coll::Headers
                | Coll::HeaderNames
                | Coll::Files
        )
    }

    /// `args` exclusions also cover `args_names` etc.
    pub fn family(self) -> Coll {
        match self {
            Coll::ArgsNames => Coll::Args,
            Coll::CookieNames => Coll::Cookies,
            Coll::HeaderNames => Coll::Headers,
            other => other,
        }
    }
}

/// How a selector or exclusion matches a variable name (ASCII case-insensitive).
#[derive(Debug, Clone)]
pub enum NameMatch {
    Any,
    Exact(String),
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    Regex(Regex),
}

impl NameMatch {
    #[inline]
    pub fn matches(&self, name: &str) -> bool {
        match self {
            NameMatch::Any => true,
            NameMatch::Exact(s) => name.eq_ignore_ascii_case(s),
            NameMatch::StartsWith(s) => {
                name.len() >= s.len()
                    && name.as_bytes()[..s.len()].eq_ignore_ascii_case(s.as_bytes())
            }
            NameMatch::EndsWith(s) => {
                name.len() >= s.len()
                    && name.as_bytes()[name.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
            NameMatch::Contains(s) => name.to_ascii_lowercase().contains(s.as_str()),
            NameMatch::Regex(r) => r.is_match(name),
        }
    }
}

/// One parsed target selector.
#[derive(Debug, Clone)]
pub struct Selector {
    pub coll: Coll,
    pub name: NameMatch,
    pub exclude: bool,
}

/// Meta targets: `count:args`, `count:headers`, `count:cookies`, `count:files`, `count:headers:<name>`,
/// `count:args:<name>`, `length:uri`, `length:path`, `length:query`, `length:body`, `length:headers`, `length:args`.
pub fn is_meta(s: &str) -> bool {
    let l = s.trim().to_ascii_lowercase();
    l.starts_with("count:") || l.starts_with("length:")
}

pub fn validate_meta(s: &str) -> Result<String, String> {
    let l = s.trim().to_ascii_lowercase();
    let parts: Vec<&str> = l.splitn(3, ':').collect();
    let ok = match (parts.first().copied(), parts.get(1).copied(), parts.get(2)) {
        (Some("count"), Some("args" | "headers" | "cookies" | "files"), None) => true,
        (Some("count"), Some("args" | "headers" | "cookies"), Some(n)) => !n.is_empty(),
        (Some("length"), Some("uri" | "path" | "query" | "body" | "headers" | "args"), None) => {
            true
        }
        _ => false,
    };
    if ok {
        Ok(l)
    } else {
        Err(format!("unknown meta target {:?}", s))
    }
}

/// Parse a selector string (not meta): `[!]coll[:name|:/regex/]`.
pub fn parse_selector(s: &str) -> Result<Selector, String> {
    let s = s.trim();
    let (exclude, s) = match s.strip_prefix('!') {
        Some(r) => (true, r.trim()),
        None => (false, s),
    };
    let (c, name) = match s.split_once(':') {
        Some((c, n)) => (c, Some(n)),
        None => (s, None),
    };
    let coll = Coll::parse(c).ok_or_else(|| format!("unknown target {:?}", c))?;
    let name = match name {
        None => NameMatch::Any,
        Some(n) if n.len() >= 2 && n.starts_with('/') && n.ends_with('/') => {
            let re = &n[1..n.len() - 1];
            NameMatch::Regex(
                Regex::new(&format!("(?i){}", re))
                    .map_err(|e| format!("bad target regex {:?}: {}", n, e))?,
            )
        }
        Some(n) => {
            if !coll.named() {
                return Err(format!("target {:?} does not take a name", c));
            }
            NameMatch::Exact(n.to_ascii_lowercase())
        }
    };
    if exclude && matches!(name, NameMatch::Any) {
        return Err(format!("exclusion {:?} must name a variable", s));
    }
    Ok(Selector {
        coll,
        name,
        exclude,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let s = parse_selector("headers:User-Agent").unwrap();
        assert_eq!(s.coll, Coll::Headers);
        assert!(s.name.matches("user-agent"));
        let s = parse_selector("!args:/^utm_/").unwrap();
        assert!(s.exclude && s.name.matches("UTM_source") && !s.name.matches("x"));
        assert!(parse_selector("bogus").is_err());
        assert!(parse_selector("method:x").is_err());
        assert!(parse_selector("!args").is_err());
        assert!(validate_meta("count:headers:Host").is_ok());
        assert!(validate_meta("count:nothing").is_err());
    }
}
