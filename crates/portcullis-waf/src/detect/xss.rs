//! HTML-aware XSS detector.
//!
//! The value is scanned once, left to right, on bytes.  Three families of
//! checks are made:
//!
//! 1. **Markup**: every `<` that starts a real tag (a letter right after `<`,
//!    or `</`, `<!`, `<?`) is tokenized into a tag name and attributes.  A tag
//!    is dangerous when its name is script-capable (`script`, `iframe`,
//!    `object`, `embed`, `base`, `style`, `meta` with `http-equiv`, ...), when
//!    it carries an `on*` event handler, when a URL-bearing attribute holds a
//!    `javascript:` / `vbscript:` / `data:text/html` URL (control characters,
//!    whitespace and character references inside the scheme are ignored the
//!    way browsers ignore them), or when a style carries `expression(` or a
//!    script URL.  Plain formatting tags (`<b>`, `<p>`, `<a href=https:...>`)
//!    are not reported.
//! 2. **Attribute injection**: a quote or whitespace followed by an
//!    `on<event>=` whose value looks like code (`" onmouseover="alert(1)`).
//! 3. **Script context**: a bare script URL at the start of the value, a
//!    JavaScript sink call (`alert(`, `eval(`, `document.cookie`, ...)
//!    directly after a string/statement break (`';alert(1)//`,
//!    `"-alert(1)-"`), and `</script>`.
//!
//! The scan is linear, bounded and allocation-free (except for stripping NUL
//! bytes, which only happens when the value contains one).

/// Maximum number of tags parsed per value.
const MAX_TAGS: usize = 512;
/// Bytes of input examined for one tag.
const TAG_WINDOW: usize = 2048;
/// Maximum length of a quoted attribute value that is examined.
const MAX_VALUE: usize = 4096;
/// Maximum number of attributes examined per tag.
const MAX_ATTRS: usize = 64;

#[inline]
fn lower(b: u8) -> u8 {
    b.to_ascii_lowercase()
}

#[inline]
fn is_html_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0c | 0x0b)
}

/// Case-insensitive prefix test.
fn starts_with_ci(b: &[u8], at: usize, pat: &[u8]) -> bool {
    b.len() >= at + pat.len()
        && b[at..at + pat.len()]
            .iter()
            .zip(pat)
            .all(|(x, y)| lower(*x) == *y)
}

/// Case-insensitive substring search (bounded, naive: patterns are tiny).
fn contains_ci(b: &[u8], pat: &[u8]) -> bool {
    if pat.is_empty() || b.len() < pat.len() {
        return pat.is_empty();
    }
    let first = pat[0];
    (0..=b.len() - pat.len()).any(|i| lower(b[i]) == first && starts_with_ci(b, i, pat))
}

/// Decode one "obfuscated" character at `i`: skips nothing, but decodes
/// numeric / a few named character references.  Returns (byte, next index).
fn decode_char(b: &[u8], i: usize) -> (u8, usize) {
    if b[i] == b'&' && i + 1 < b.len() {
        if b[i + 1] == b'#' {
            let mut j = i + 2;
            let hex = j < b.len() && (b[j] | 0x20) == b'x';
            if hex {
                j += 1;
            }
            let mut v: u32 = 0;
            let s = j;
            while j < b.len() && j - s < 10 {
                let d = if hex {
                    (b[j] as char).to_digit(16)
                } else {
                    (b[j] as char).to_digit(10)
                };
                match d {
                    Some(d) => {
                        v = v
                            .saturating_mul(if hex { 16 } else { 10 })
                            .saturating_add(d)
                    }
                    None => break,
                }
                j += 1;
            }
            if j > s {
                if j < b.len() && b[j] == b';' {
                    j += 1;
                }
                let c = if v < 128 { v as u8 } else { b'?' };
                return (c, j);
            }
        } else {
            for (name, c) in [
                (&b"tab;"[..], b'\t'),
                (b"newline;", b'\n'),
                (b"colon;", b':'),
                (b"lpar;", b'('),
                (b"rpar;", b')'),
                (b"quot;", b'"'),
                (b"apos;", b'\''),
                (b"sol;", b'/'),
                (b"lt;", b'<'),
                (b"gt;", b'>'),
                (b"amp;", b'&'),
            ] {
                if starts_with_ci(b, i + 1, name) {
                    return (c, i + 1 + name.len());
                }
            }
        }
    }
    (b[i], i + 1)
}

/// Does a dangerous URL scheme start at `i` (ignoring leading whitespace,
/// control characters and character references inside the scheme)?
fn script_scheme_at(b: &[u8], mut i: usize) -> bool {
    // leading junk the URL parser strips
    while i < b.len() && (b[i] <= 0x20) {
        i += 1;
    }
    let mut buf = [0u8; 24];
    let mut n = 0;
    let mut steps = 0;
    // Character references or control characters inside the scheme: nobody
    // writes a link that way but to slip it past a filter.
    let mut disguised = false;
    while i < b.len() && n < buf.len() && steps < 200 {
        steps += 1;
        let (c, next) = decode_char(b, i);
        disguised |= next > i + 1 && n > 0;
        i = next;
        if c <= 0x20 || c == 0x7f {
            // tabs/newlines/control chars inside the scheme are ignored
            disguised |= n > 0;
            continue;
        }
        buf[n] = lower(c);
        n += 1;
        if c == b':' {
            break;
        }
    }
    let s = &buf[..n];
    if s.starts_with(b"javascript:") || s.starts_with(b"vbscript:") || s.starts_with(b"livescript:")
    {
        return disguised || !inert_script_body(&b[i..]);
    }
    if s.starts_with(b"data:") {
        // data: URLs: need the media type
        let mut rest = [0u8; 16];
        let mut m = 0;
        while i < b.len() && m < rest.len() && steps < 300 {
            steps += 1;
            let (c, next) = decode_char(b, i);
            i = next;
            if c <= 0x20 {
                continue;
            }
            rest[m] = lower(c);
            m += 1;
        }
        let r = &rest[..m];
        return r.starts_with(b"text/html")
            || r.starts_with(b"image/svg")
            || r.starts_with(b"text/xml")
            || r.starts_with(b"application/x")
            || r.starts_with(b"text/javascript")
            || r.starts_with(b"application/javascript");
    }
    false
}

/// `javascript:void(0)`, `javascript:;` and friends: placeholders used by
/// countless sites that cannot run anything. So is a body that neither calls,
/// assigns, indexes nor builds a template (`javascript:2.8.18`, an SDK name in
/// telemetry): it evaluates an expression and throws it away.
fn inert_script_body(rest: &[u8]) -> bool {
    let body = &rest[..rest
        .iter()
        .position(|c| matches!(c, b'"' | b'\'' | b'>'))
        .unwrap_or(rest.len())];
    if !body
        .iter()
        .any(|c| matches!(c, b'(' | b'`' | b'=' | b'[' | b'{' | b'&' | b'%' | b'\\'))
    {
        return true;
    }
    let mut buf = [0u8; 16];
    let mut n = 0;
    for &c in rest {
        if matches!(c, b'"' | b'\'' | b'>' | b'}' | b',') {
            break;
        }
        if c <= 0x20 {
            continue;
        }
        if n == buf.len() {
            return false;
        }
        buf[n] = lower(c);
        n += 1;
    }
    let mut s = &buf[..n];
    while let [rest @ .., b';'] = s {
        s = rest;
    }
    matches!(
        s,
        b"" | b"void(0)"
            | b"void0"
            | b"void(null)"
            | b"void(false)"
            | b"//"
            | b"false"
            | b"true"
            | b"null"
    )
}

/// Dangerous content inside a style attribute / element.
fn bad_style(v: &[u8]) -> bool {
    contains_ci(v, b"expression")
        || contains_ci(v, b"javascript:")
        || contains_ci(v, b"vbscript:")
        || contains_ci(v, b"-moz-binding")
        || contains_ci(v, b"behavior")
        || contains_ci(v, b"@import")
}

/// Tags that are dangerous by themselves.
fn dangerous_tag(name: &[u8]) -> bool {
    matches!(
        name,
        b"script"
            | b"iframe"
            | b"frame"
            | b"frameset"
            | b"object"
            | b"embed"
            | b"applet"
            | b"base"
            | b"style"
            | b"xml"
            | b"import"
            | b"vmlframe"
            | b"xss"
            | b"isindex"
            | b"bgsound"
            | b"layer"
            | b"ilayer"
            | b"handler"
            | b"listener"
            | b"portal"
            | b"noscript"
            | b"svg:script"
            | b"html:script"
            | b"xmp"
            | b"plaintext"
    )
}

/// Attributes whose value is a URL (or code) that could run script.
fn url_attr(name: &[u8]) -> bool {
    matches!(
        name,
        b"href"
            | b"src"
            | b"action"
            | b"formaction"
            | b"data"
            | b"background"
            | b"dynsrc"
            | b"lowsrc"
            | b"xlink:href"
            | b"poster"
            | b"codebase"
            | b"code"
            | b"from"
            | b"to"
            | b"values"
            | b"by"
            | b"content"
            | b"value"
            | b"srcset"
            | b"ping"
            | b"cite"
            | b"longdesc"
            | b"usemap"
            | b"profile"
            | b"datasrc"
            | b"folder"
            | b"xmlns"
            | b"location"
            | b"url"
            | b"xml:base"
            | b"icon"
            | b"manifest"
            | b"archive"
            | b"classid"
            | b"param"
            | b"attributename"
    )
}

/// `on` + letters: an event handler attribute name.
fn is_event_name(name: &[u8]) -> bool {
    name.len() >= 5
        && name.len() <= 40
        && name.starts_with(b"on")
        && name[2..].iter().all(|c| c.is_ascii_alphabetic())
}

/// Result of parsing a tag.
#[allow(dead_code)] // `end` documents where the tag stopped; kept for diagnostics
struct TagScan {
    end: usize,
    bad: bool,
}

/// Parse a start tag whose name begins at `i` (just after `<`).
fn scan_tag(b: &[u8], i: usize) -> TagScan {
    let mut j = i;
    let mut name = [0u8; 16];
    let mut nl = 0;
    while j < b.len()
        && (b[j].is_ascii_alphanumeric() || b[j] == b':' || b[j] == b'-' || b[j] == b'_')
    {
        if nl < name.len() {
            name[nl] = lower(b[j]);
        }
        nl += 1;
        j += 1;
    }
    let name = if nl <= 16 { &name[..nl] } else { &b""[..] };
    // A tag name must be followed by a separator, `>`, `/` or the end.
    if j < b.len() && !(is_html_ws(b[j]) || b[j] == b'>' || b[j] == b'/' || b[j] <= 0x20) {
        return TagScan { end: j, bad: false };
    }
    if dangerous_tag(name) {
        return TagScan { end: j, bad: true };
    }
    let mut attrs = 0;
    let mut saw_http_equiv = false;
    let mut saw_anim_href = false;
    let mut saw_rel_import = false;
    loop {
        // skip separators
        while j < b.len()
            && (is_html_ws(b[j]) || b[j] == b'/' || b[j] < 0x20 || b[j] == b'"' || b[j] == b'\'')
        {
            j += 1;
        }
        if j >= b.len() {
            break;
        }
        if b[j] == b'>' {
            j += 1;
            break;
        }
        if b[j] == b'<' {
            // unclosed tag: let the caller look at the next one
            break;
        }
        attrs += 1;
        if attrs > MAX_ATTRS {
            break;
        }
        // attribute name
        let ns = j;
        while j < b.len()
            && !(is_html_ws(b[j]) || matches!(b[j], b'=' | b'>' | b'/' | b'<') || b[j] < 0x20)
        {
            j += 1;
        }
        let an = &b[ns..j];
        let mut lname = [0u8; 16];
        let ll = an.len().min(16);
        for (d, s) in lname.iter_mut().zip(an) {
            *d = lower(*s);
        }
        let lname = &lname[..ll];
        let long_name = an.len() > 16;
        // ` = value`
        let mut k = j;
        while k < b.len() && (is_html_ws(b[k]) || b[k] < 0x20) {
            k += 1;
        }
        let mut value: &[u8] = &[];
        if k < b.len() && b[k] == b'=' {
            k += 1;
            while k < b.len() && (is_html_ws(b[k]) || b[k] < 0x20) {
                k += 1;
            }
            if k < b.len() && matches!(b[k], b'"' | b'\'' | b'`') {
                let q = b[k];
                let vs = k + 1;
                let lim = b.len().min(vs + MAX_VALUE);
                let ve = b[vs..lim]
                    .iter()
                    .position(|&c| c == q)
                    .map_or(lim, |p| vs + p);
                value = &b[vs..ve];
                k = (ve + 1).min(b.len());
            } else {
                let vs = k;
                while k < b.len() && !(is_html_ws(b[k]) || b[k] == b'>') {
                    k += 1;
                }
                value = &b[vs..k];
            }
            j = k;
        }
        if long_name {
            // `on` + long event names (onwebkitanimationstart...)
            if an.len() <= 40
                && an.len() >= 5
                && (an[0] | 0x20) == b'o'
                && (an[1] | 0x20) == b'n'
                && an[2..].iter().all(|c| c.is_ascii_alphabetic())
            {
                return TagScan { end: j, bad: true };
            }
            continue;
        }
        if is_event_name(lname) {
            return TagScan { end: j, bad: true };
        }
        if lname == b"style" && bad_style(value) {
            return TagScan { end: j, bad: true };
        }
        if lname == b"srcdoc" {
            return TagScan { end: j, bad: true };
        }
        if lname == b"http-equiv" {
            saw_http_equiv = true;
        }
        if lname == b"attributename" && (contains_ci(value, b"href") || contains_ci(value, b"on")) {
            saw_anim_href = true;
        }
        if lname == b"rel" && contains_ci(value, b"import") {
            saw_rel_import = true;
        }
        if (url_attr(lname) || saw_anim_href) && !value.is_empty() {
            if script_scheme_at(value, 0) {
                return TagScan { end: j, bad: true };
            }
            // meta refresh: content="0;url=javascript:..."
            if lname == b"content" {
                if let Some(p) = find_ci(value, b"url=") {
                    if script_scheme_at(value, p + 4) {
                        return TagScan { end: j, bad: true };
                    }
                }
            }
        }
    }
    let bad = (name == b"meta" && saw_http_equiv) || (name == b"link" && saw_rel_import);
    TagScan { end: j, bad }
}

fn find_ci(b: &[u8], pat: &[u8]) -> Option<usize> {
    if b.len() < pat.len() {
        return None;
    }
    (0..=b.len() - pat.len()).find(|&i| starts_with_ci(b, i, pat))
}

/// JavaScript sinks commonly used to prove / exploit XSS.
const SINKS: &[&[u8]] = &[
    b"alert",
    b"prompt",
    b"confirm",
    b"eval",
    b"settimeout",
    b"setinterval",
    b"execscript",
    b"fromcharcode",
    b"atob",
    b"constructor",
    b"write",
    b"writeln",
];

/// A sink call at `i` (`alert(`, ``alert` ``, `alert (`).
fn sink_call_at(b: &[u8], i: usize) -> bool {
    for s in SINKS {
        if starts_with_ci(b, i, s) {
            let mut j = i + s.len();
            if j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                continue;
            }
            while j < b.len() && is_html_ws(b[j]) {
                j += 1;
            }
            if j < b.len() && (b[j] == b'(' || b[j] == b'`') {
                return true;
            }
        }
    }
    // property sinks
    starts_with_ci(b, i, b"document.cookie")
        || starts_with_ci(b, i, b"document.domain")
        || starts_with_ci(b, i, b"document.write")
        || starts_with_ci(b, i, b"document.location")
        || starts_with_ci(b, i, b"window.location")
        || starts_with_ci(b, i, b"location.href")
        || starts_with_ci(b, i, b"top.location")
        || starts_with_ci(b, i, b"window[")
        || starts_with_ci(b, i, b"top[")
}

/// Characters after which a sink means the value broke out of a JS
/// string / statement.
#[inline]
fn js_break_char(c: u8) -> bool {
    matches!(
        c,
        b'\''
            | b'"'
            | b';'
            | b'-'
            | b'+'
            | b'*'
            | b'|'
            | b'&'
            | b'`'
            | b'{'
            | b'}'
            | b'\\'
            | b'>'
            | b'('
            | b'='
            | b','
            | b'!'
            | b'~'
            | b'^'
            | b'%'
            | b'/'
    )
}

/// Is the `;` at `i` the end of a character reference (`&gt;`, `&#39;`)?
fn ends_entity(b: &[u8], i: usize) -> bool {
    let lo = i.saturating_sub(12);
    let mut j = i;
    while j > lo {
        j -= 1;
        match b[j] {
            b'&' => return j + 1 < i,
            c if c.is_ascii_alphanumeric() || c == b'#' => continue,
            _ => return false,
        }
    }
    false
}

fn detect_bytes(b: &[u8]) -> bool {
    let n = b.len();
    let mut tags = 0;
    let mut i = 0;
    // a value that *is* a script URL (for href/src injection)
    if script_scheme_at(b, 0) {
        return true;
    }
    let mut prev_sig: u8 = 0; // previous non-whitespace byte
    while i < n {
        let c = b[i];
        match c {
            b'<' if i + 1 < n => {
                let d = b[i + 1];
                if d.is_ascii_alphabetic() {
                    tags += 1;
                    if tags > MAX_TAGS {
                        return false;
                    }
                    // Each tag is examined within a bounded window; scanning
                    // then resumes right after this `<`, so markup hidden in
                    // an attribute value (`<x a="<img onerror=...>">`) is
                    // still seen.  Work is bounded by MAX_TAGS * TAG_WINDOW.
                    let lim = n.min(i + TAG_WINDOW);
                    let t = scan_tag(&b[..lim], i + 1);
                    if t.bad {
                        return true;
                    }
                    i += 1;
                    prev_sig = b'<';
                    continue;
                }
                if d == b'/'
                    && (starts_with_ci(b, i + 2, b"script") || starts_with_ci(b, i + 2, b"style"))
                {
                    return true;
                }
                if d == b'!'
                    && (starts_with_ci(b, i + 2, b"--")
                        || starts_with_ci(b, i + 2, b"[cdata[")
                        || starts_with_ci(b, i + 2, b"entity"))
                {
                    return true;
                }
                if d == b'?'
                    && (starts_with_ci(b, i + 2, b"import")
                        || starts_with_ci(b, i + 2, b"xml-stylesheet"))
                {
                    return true;
                }
                if d == b'%' {
                    // `<%` ... legacy ASP-style tags used in IE filters bypasses
                    if b[i + 2..].iter().take(64).any(|&x| x == b'(' || x == b'=')
                        && contains_ci(&b[i..n.min(i + 256)], b"%>")
                    {
                        return true;
                    }
                }
            }
            b'o' | b'O' if i + 2 < n && (b[i + 1] | 0x20) == b'n' => {
                // attribute injection: `" onerror=alert(1)`, `x onload=...`
                let before = if i > 0 { b[i - 1] } else { 0 };
                if matches!(before, b'"' | b'\'' | b'`' | b'/')
                    || is_html_ws(before)
                    || (before < 0x20 && before != 0)
                {
                    let mut j = i + 2;
                    while j < n && b[j].is_ascii_alphabetic() && j - i < 40 {
                        j += 1;
                    }
                    if j - i >= 5 {
                        let mut k = j;
                        while k < n && (is_html_ws(b[k]) || b[k] < 0x20) {
                            k += 1;
                        }
                        if k < n && b[k] == b'=' {
                            // value must look like code
                            let v = &b[k + 1..n.min(k + 200)];
                            let mut vs = 0;
                            while vs < v.len()
                                && (is_html_ws(v[vs]) || matches!(v[vs], b'"' | b'\'' | b'`'))
                            {
                                vs += 1;
                            }
                            let v = &v[vs..];
                            let code = v
                                .iter()
                                .take_while(|&&x| {
                                    !is_html_ws(x) && x != b'"' && x != b'\'' && x != b'>'
                                })
                                .any(|&x| matches!(x, b'(' | b'`' | b'=' | b'.' | b'[' | b';'))
                                || (0..v.len().min(40)).any(|p| sink_call_at(v, p));
                            if code {
                                return true;
                            }
                        }
                    }
                }
            }
            // script URL after an attribute-ish boundary: `x" href="javascript:...`
            b'j' | b'J' | b'v' | b'V' | b'd' | b'D' | b'&'
                if matches!(prev_sig, b'=' | b'"' | b'\'' | b'(' | b'`')
                    && script_scheme_at(b, i) =>
            {
                return true;
            }
            _ => {}
        }
        // JS context: sink right after a break character
        if js_break_char(prev_sig) && c.is_ascii_alphabetic() && sink_call_at(b, i) {
            // `'-alert(1)-'`, `";alert(1)//`, but not prose like "use alert()"
            return true;
        }
        if !is_html_ws(c) {
            prev_sig = if c == b';' && ends_entity(b, i) {
                b'x'
            } else {
                c
            };
        }
        i += 1;
    }
    false
}

/// Detect cross-site scripting payloads in a decoded value.
pub fn detect_xss(input: &str) -> bool {
    let b = input.as_bytes();
    if b.len() < 4 {
        return false;
    }
    // fast path: without any of these bytes none of the shapes can occur
    if !b
        .iter()
        .any(|&c| matches!(c, b'<' | b'(' | b'`' | b'=' | b':' | b'[' | b'.'))
    {
        return false;
    }
    if b.contains(&0) {
        // browsers (historically) drop NULs inside markup: `<scr\0ipt>`
        let cleaned: Vec<u8> = b.iter().copied().filter(|&c| c != 0).collect();
        return detect_bytes(&cleaned);
    }
    detect_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attacks() {
        for s in [
            "<script>alert(1)</script>",
            "<ScRiPt src=//evil.example/x.js>",
            "<img src=x onerror=alert(1)>",
            "<svg/onload=alert(1)>",
            "<body onload=alert(1)>",
            "<iframe src=\"javascript:alert(1)\">",
            "<a href=\"jav&#x09;ascript:alert(1)\">x</a>",
            "<a href=\"java\tscript:alert(1)\">x</a>",
            "<object data=\"data:text/html;base64,PHNjcmlwdD4=\">",
            "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">",
            "<base href=\"//evil.example/\">",
            "<form action=javascript:alert(1)><input type=submit>",
            "<div style=\"width: expression(alert(1))\">",
            "\" onmouseover=\"alert(1)",
            "' onfocus='alert(1)' autofocus='",
            "x\" onerror=alert(1) \"",
            "';alert(1)//",
            "\"-alert(1)-\"",
            "</script><script>alert(1)</script>",
            "javascript:alert(document.cookie)",
            "javascript:alert`1`",
            "javascript:location=name",
            "<!--<img src=\"--><img src=x onerror=alert(1)//\">",
            "<scr\0ipt>alert(1)</scr\0ipt>",
            "<link rel=import href=\"//evil.example/x\">",
            "<input autofocus onfocus=alert`1`>",
        ] {
            assert!(detect_xss(s), "missed: {s:?}");
        }
    }

    #[test]
    fn benign() {
        for s in [
            "a < b and c > d",
            "<3",
            "x<y",
            "I love <3 cats",
            "Tom & Jerry",
            "onion=1",
            "javascript:2.8.18",
            "javascript:3",
            "use ONCLICK in docs",
            "2<5>1",
            "{\"a\":1,\"b\":[1,2],\"c\":\"d\"}",
            "&lt;script&gt;alert(1)&lt;/script&gt;",
            "<a href=\"https://example.com\">link</a>",
            "<b>bold</b>",
            "<p>para</p><br/><i>x</i>",
            "john",
            "en-US,en;q=0.9",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
            "https://example.com/path?q=1&on=2",
            "the function alert() shows a dialog",
            "data: 1, 2, 3",
            "中文测试",
        ] {
            assert!(!detect_xss(s), "false positive: {s:?}");
        }
    }

    #[test]
    fn no_panic() {
        for s in [
            "<",
            "<a",
            "<a ",
            "<a b=",
            "<a b='",
            "&#",
            "&#x",
            "&#99999999999999",
            "on",
            " on",
            " onx",
            " onxxx=",
            "java",
            "<!",
            "<?",
            "<%",
            "</",
        ] {
            let _ = detect_xss(s);
        }
        let big = "<a b=".repeat(30_000);
        let _ = detect_xss(&big);
        let big2 = " onxxxxx=".repeat(30_000);
        let _ = detect_xss(&big2);
    }
}
