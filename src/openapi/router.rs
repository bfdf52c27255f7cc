//! Path templates (`/orders/{id}/items/{item}`) and the router that finds the template a request
//! path matches. A literal segment wins over a template segment at the same place, as OpenAPI
//! says (`/orders/mine` before `/orders/{id}`).

/// One segment of a template.
#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    /// A whole segment that is one parameter (`{id}`).
    Param(String),
    /// A segment mixing literal text and parameters (`{name}.{ext}`, `v{version}`): matched by a
    /// regex built once.
    Mixed(regex::Regex, Vec<String>),
}

/// A compiled path template.
#[derive(Debug, Clone)]
pub struct PathTemplate {
    pub text: String,
    segments: Vec<Segment>,
}

impl PathTemplate {
    pub fn parse(text: &str) -> Result<PathTemplate, String> {
        if !text.starts_with('/') {
            return Err(format!("path {text:?} does not start with /"));
        }
        let mut segments = Vec::new();
        for raw in text.split('/').skip(1) {
            segments.push(parse_segment(raw)?);
        }
        Ok(PathTemplate {
            text: text.to_string(),
            segments,
        })
    }

    /// The parameters a path (already split into percent-decoded segments) binds, or None when
    /// it does not match. The score orders matches: more literal segments first.
    fn matches(&self, path: &[String]) -> Option<(Vec<(String, String)>, usize)> {
        if path.len() != self.segments.len() {
            return None;
        }
        let mut params = Vec::new();
        let mut literals = 0;
        for (seg, value) in self.segments.iter().zip(path) {
            match seg {
                Segment::Literal(l) if l == value => literals += 1,
                Segment::Literal(_) => return None,
                Segment::Param(name) if !value.is_empty() => {
                    params.push((name.clone(), value.clone()))
                }
                Segment::Param(_) => return None,
                Segment::Mixed(re, names) => {
                    let caps = re.captures(value)?;
                    for (i, name) in names.iter().enumerate() {
                        params.push((name.clone(), caps.get(i + 1)?.as_str().to_string()));
                    }
                }
            }
        }
        Some((params, literals))
    }
}

fn parse_segment(raw: &str) -> Result<Segment, String> {
    if !raw.contains('{') {
        return Ok(Segment::Literal(raw.to_string()));
    }
    if raw.starts_with('{')
        && raw.ends_with('}')
        && raw[1..raw.len() - 1].chars().all(|c| c != '{' && c != '}')
    {
        return Ok(Segment::Param(raw[1..raw.len() - 1].to_string()));
    }
    let mut pattern = String::from("^");
    let mut names = Vec::new();
    let mut rest = raw;
    while let Some(open) = rest.find('{') {
        pattern.push_str(&regex::escape(&rest[..open]));
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed {{ in path segment {raw:?}"))?;
        names.push(rest[open + 1..open + close].to_string());
        pattern.push_str("([^/]+?)");
        rest = &rest[open + close + 1..];
    }
    pattern.push_str(&regex::escape(rest));
    pattern.push('$');
    let re = regex::Regex::new(&pattern).map_err(|e| e.to_string())?;
    Ok(Segment::Mixed(re, names))
}

/// Splits a request path (below the base path) into percent-decoded segments.
pub fn split_path(path: &str) -> Vec<String> {
    path.split('/')
        .skip(1)
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

/// Path parameters bound by a template match: (name, percent-decoded value), in template order.
pub type BoundParams = Vec<(String, String)>;

/// The best-matching template among `templates` for `path`: its index and the parameters bound.
/// The most literal segments win (`/orders/mine` over `/orders/{id}`), as OpenAPI asks.
pub fn route<'t>(
    templates: impl Iterator<Item = (usize, &'t PathTemplate)>,
    path: &[String],
) -> Option<(usize, BoundParams)> {
    let mut best: Option<(usize, BoundParams)> = None;
    let mut best_score = 0;
    for (i, t) in templates {
        if let Some((params, score)) = t.matches(path) {
            if best.is_none() || score > best_score {
                best = Some((i, params));
                best_score = score;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_segments_win_and_parameters_bind() {
        let ts = [
            PathTemplate::parse("/orders/{id}").unwrap(),
            PathTemplate::parse("/orders/mine").unwrap(),
            PathTemplate::parse("/files/{name}.{ext}").unwrap(),
        ];
        let r = |p: &str| route(ts.iter().enumerate(), &split_path(p));
        assert_eq!(r("/orders/mine").map(|x| x.0), Some(1));
        assert_eq!(r("/orders/42"), Some((0, vec![("id".into(), "42".into())])));
        assert_eq!(r("/orders/a%2Fb").unwrap().1[0].1, "a/b");
        assert_eq!(
            r("/files/report.pdf").unwrap().1,
            vec![
                ("name".into(), "report".into()),
                ("ext".into(), "pdf".into())
            ]
        );
        assert!(r("/orders").is_none() && r("/orders/").is_none() && r("/orders/1/x").is_none());
        assert!(PathTemplate::parse("orders").is_err() && PathTemplate::parse("/a/{b").is_err());
    }
}
