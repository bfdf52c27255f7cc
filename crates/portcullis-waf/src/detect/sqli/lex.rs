//! The SQL lexer: bytes to classed tokens ([`Tok`]), with the keyword and function tables that
//! class words and the scanners for strings, numbers and comments.

use super::WL;

pub(super) const F_OPEN: u32 = 1; // unterminated string
pub(super) const F_LONG: u32 = 2; // word longer than WL
pub(super) const F_UNARY: u32 = 4; // operator that may be unary (- + ~ !)
pub(super) const F_STAR: u32 = 8; // the `*` operator
pub(super) const F_PAREN: u32 = 16; // word directly followed by `(`
pub(super) const F_WORDISH: u32 = 32; // string whose trimmed content is one short word
pub(super) const F_NUM: u32 = 64; // a real numeric literal
pub(super) const F_KNOWN: u32 = 128; // a known SQL function
pub(super) const F_CWEAK: u32 = 256; // comment that is only weakly a truncation
pub(super) const F_CALNUM: u32 = 512; // `#` directly followed by an alphanumeric
pub(super) const F_FOLDED: u32 = 1024; // token absorbed an arithmetic fold
pub(super) const F_SYM: u32 = 2048; // symbolic (non-word) comparison operator
pub(super) const F_HASH: u32 = 4096; // `#` comment
pub(super) const F_FOLDN: u32 = 8192; // an arithmetic fold involved a bareword
pub(super) const F_NONASCII: u32 = 32768; // word with non-ASCII bytes
pub(super) const F_TIGHT: u32 = 16384; // string content non-empty, alphanumeric at both ends
/// A comment written straight after the token before it, no space after its dashes (`1---`).
pub(super) const F_GLUED: u32 = 65536;

#[derive(Clone, Copy)]
pub(super) struct Tok {
    pub(super) c: u8,
    pub(super) flags: u32,
    wl: u8,
    w: [u8; WL],
}

pub(super) const EMPTY: Tok = Tok {
    c: 0,
    flags: 0,
    wl: 0,
    w: [0; WL],
};

impl Tok {
    fn new(c: u8) -> Tok {
        Tok { c, ..EMPTY }
    }
    pub(super) fn word(&self) -> &[u8] {
        if self.flags & F_LONG != 0 {
            &[]
        } else {
            &self.w[..self.wl as usize]
        }
    }
    pub(super) fn is(&self, w: &[u8]) -> bool {
        self.word() == w
    }
}

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0xa0)
}

#[inline]
fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'$' || b >= 0x80
}

#[inline]
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'.' || b >= 0x80
}

/// Scan a string body starting at `i` (just after the opening quote `q`).
/// Returns the index just after the closing quote and whether the string was
/// left unterminated.
pub(super) fn scan_string(b: &[u8], mut i: usize, q: u8) -> (usize, bool) {
    while i < b.len() {
        let ch = b[i];
        if ch == b'\\' {
            i += 2;
            continue;
        }
        if ch == q {
            if i + 1 < b.len() && b[i + 1] == q {
                i += 2;
                continue;
            }
            return (i + 1, false);
        }
        i += 1;
    }
    (b.len(), true)
}

/// Classification of a lower-cased word that is not followed by `(`.
fn classify_word(w: &[u8]) -> u8 {
    match w {
        b"union" | b"intersect" | b"except" => b'U',
        b"select" | b"insert" | b"update" | b"delete" | b"drop" | b"create" | b"alter"
        | b"truncate" | b"rename" | b"replace" | b"grant" | b"revoke" => b'E',
        b"exec" | b"execute" | b"declare" | b"waitfor" | b"shutdown" => b'T',
        b"and" | b"or" | b"xor" => b'&',
        b"not" => b'N',
        b"like" | b"rlike" | b"regexp" | b"glob" => b'o',
        b"div" | b"mod" => b'a',
        b"having" | b"limit" | b"procedure" => b'B',
        b"null" | b"true" | b"false" => b'1',
        b"current_user" | b"current_date" | b"current_time" | b"current_timestamp"
        | b"utc_date" | b"utc_time" | b"utc_timestamp" | b"session_user" | b"system_user"
        | b"localtime" | b"localtimestamp" => b'v',
        b"from" | b"where" | b"into" | b"values" | b"table" | b"as" | b"by" | b"case" | b"when"
        | b"then" | b"else" | b"end" | b"distinct" | b"all" | b"top" | b"set" | b"join" | b"on"
        | b"outfile" | b"dumpfile" | b"collate" | b"escape" | b"offset" | b"delay" | b"in"
        | b"is" | b"between" | b"exists" | b"asc" | b"desc" | b"using" | b"begin" | b"binary" => {
            b'k'
        }
        _ => b'n',
    }
}

/// Known SQL functions; a known function followed by `(` (possibly after
/// whitespace or comments) is classed `f`.  Unknown words are `f` only when
/// the `(` follows immediately.
fn is_known_function(w: &[u8]) -> bool {
    matches!(
        w,
        b"sleep"
            | b"benchmark"
            | b"pg_sleep"
            | b"ascii"
            | b"substring"
            | b"substr"
            | b"mid"
            | b"char"
            | b"chr"
            | b"nchar"
            | b"concat"
            | b"concat_ws"
            | b"group_concat"
            | b"version"
            | b"database"
            | b"user"
            | b"schema"
            | b"count"
            | b"length"
            | b"len"
            | b"cast"
            | b"convert"
            | b"if"
            | b"ifnull"
            | b"isnull"
            | b"nullif"
            | b"coalesce"
            | b"hex"
            | b"unhex"
            | b"ord"
            | b"md5"
            | b"sha1"
            | b"bin"
            | b"lower"
            | b"upper"
            | b"left"
            | b"right"
            | b"load_file"
            | b"extractvalue"
            | b"updatexml"
            | b"floor"
            | b"rand"
            | b"exp"
            | b"elt"
            | b"make_set"
            | b"now"
            | b"sysdate"
            | b"iif"
            | b"instr"
            | b"locate"
            | b"position"
            | b"reverse"
            | b"trim"
            | b"repeat"
            | b"name_const"
            | b"row"
            | b"exists"
            | b"db_name"
            | b"user_name"
            | b"host_name"
            | b"is_srvrolemember"
            | b"object_name"
            | b"suser_name"
            | b"pg_read_file"
            | b"current_setting"
            | b"to_char"
            | b"randomblob"
            | b"sqlite_version"
            | b"char_length"
            | b"aes_encrypt"
            | b"aes_decrypt"
            | b"json_keys"
            | b"ascii_str"
            | b"xp_cmdshell"
            | b"dbms_pipe.receive_message"
            | b"dbms_lock.sleep"
            | b"utl_inaddr.get_host_address"
            | b"utl_http.request"
            | b"unicode"
            | b"str"
            | b"sys_eval"
            | b"sys_exec"
            | b"lo_import"
            | b"geometrycollection"
            | b"multipoint"
            | b"polygon"
            | b"linestring"
            | b"xmltype"
            | b"waitfor"
            | b"cos"
            | b"sin"
            | b"pi"
            | b"conv"
            | b"compress"
            | b"uncompress"
            | b"min"
            | b"max"
            | b"sum"
            | b"avg"
            | b"sqrt"
            | b"round"
            | b"dcount"
            | b"filetoclob"
            | b"filetoblob"
            | b"in"
            | b"values"
            | b"select"
    )
}

/// Functions that are essentially never benign in a parameter value.
pub(super) fn is_dangerous_function(w: &[u8]) -> bool {
    matches!(
        w,
        b"sleep"
            | b"benchmark"
            | b"pg_sleep"
            | b"load_file"
            | b"extractvalue"
            | b"updatexml"
            | b"dbms_pipe.receive_message"
            | b"dbms_lock.sleep"
            | b"randomblob"
            | b"xp_cmdshell"
            | b"utl_inaddr.get_host_address"
            | b"utl_http.request"
            | b"pg_read_file"
            | b"sys_eval"
            | b"sys_exec"
            | b"lo_import"
            | b"name_const"
            | b"geometrycollection"
            | b"multipoint"
            | b"polygon"
            | b"linestring"
    )
}

pub(super) struct Lexer<'a> {
    pub(super) b: &'a [u8],
    pub(super) p: usize,
    /// Inside a MySQL `/*! ... */` executable comment.
    pub(super) bang: bool,
    /// A `/*!` executable comment was seen.
    pub(super) saw_bang: bool,
}

impl<'a> Lexer<'a> {
    fn skip_ws(&mut self) {
        while self.p < self.b.len() && is_ws(self.b[self.p]) {
            self.p += 1;
        }
    }

    /// Does the next significant byte after `i` open a parenthesis?
    fn paren_follows(&self, mut i: usize) -> bool {
        let b = self.b;
        loop {
            while i < b.len() && is_ws(b[i]) {
                i += 1;
            }
            if i + 2 < b.len() && b[i] == b'/' && b[i + 1] == b'*' && b[i + 2] != b'!' {
                match find2(b, i + 2, b'*', b'/') {
                    Some(e) => i = e + 2,
                    None => return false,
                }
                continue;
            }
            return i < b.len() && b[i] == b'(';
        }
    }

    pub(super) fn next(&mut self) -> Option<Tok> {
        loop {
            self.skip_ws();
            let b = self.b;
            let p = self.p;
            if p >= b.len() {
                return None;
            }
            let ch = b[p];
            let nx = if p + 1 < b.len() { b[p + 1] } else { 0 };
            match ch {
                b'\'' | b'"' => {
                    let (end, open) = scan_string(b, p + 1, ch);
                    self.p = end;
                    return Some(string_tok(b, p + 1, end, open));
                }
                b'`' => {
                    let end = memchr_from(b, p + 1, b'`').map_or(b.len(), |e| e + 1);
                    self.p = end;
                    return Some(Tok::new(b'n'));
                }
                b'#' => {
                    self.p = memchr_from(b, p, b'\n').unwrap_or(b.len());
                    let mut t = Tok::new(b'c');
                    t.flags |= F_HASH | glued_empty(b, p, self.p);
                    if nx.is_ascii_alphanumeric() {
                        t.flags |= F_CALNUM | F_CWEAK;
                    } else if b[p + 1..self.p].iter().any(|&c| !is_ws(c)) {
                        t.flags |= F_CWEAK;
                    }
                    return Some(t);
                }
                b'-' if nx == b'-' => {
                    self.p = memchr_from(b, p, b'\n').unwrap_or(b.len());
                    let mut t = Tok::new(b'c');
                    t.flags |= glued_empty(b, p, self.p);
                    if p + 2 < b.len() && b[p + 2].is_ascii_alphanumeric() {
                        t.flags |= F_CWEAK;
                    }
                    return Some(t);
                }
                b'/' if nx == b'*' => {
                    if p + 2 < b.len() && b[p + 2] == b'!' {
                        let mut i = p + 3;
                        while i < b.len() && b[i].is_ascii_digit() {
                            i += 1;
                        }
                        self.p = i;
                        self.bang = true;
                        self.saw_bang = true;
                        continue;
                    }
                    self.p = find2(b, p + 2, b'*', b'/').map_or(b.len(), |e| e + 2);
                    return Some(Tok::new(b'c'));
                }
                b'*' if nx == b'/' && self.bang => {
                    self.bang = false;
                    self.p = p + 2;
                    continue;
                }
                b'0'..=b'9' => {
                    self.p = scan_number(b, p);
                    let mut t = Tok::new(b'1');
                    t.flags |= F_NUM;
                    return Some(t);
                }
                b'.' if nx.is_ascii_digit() => {
                    self.p = scan_number(b, p);
                    let mut t = Tok::new(b'1');
                    t.flags |= F_NUM;
                    return Some(t);
                }
                b'@' => {
                    let mut i = p + 1;
                    if i < b.len() && b[i] == b'@' {
                        i += 1;
                    }
                    let s = i;
                    while i < b.len() && is_word(b[i]) {
                        i += 1;
                    }
                    self.p = i;
                    return Some(Tok::new(if i > s { b'v' } else { b'?' }));
                }
                _ if is_word_start(ch) => {
                    let mut i = p;
                    while i < b.len() && is_word(b[i]) {
                        i += 1;
                    }
                    self.p = i;
                    let mut t = Tok::new(b'n');
                    let len = i - p;
                    if len > WL {
                        t.flags |= F_LONG;
                    } else {
                        for (d, s) in t.w.iter_mut().zip(&b[p..i]) {
                            *d = s.to_ascii_lowercase();
                        }
                        t.wl = len as u8;
                    }
                    if b[p..i].iter().any(|&c| c >= 0x80) {
                        t.flags |= F_NONASCII;
                    }
                    let direct_paren = i < b.len() && b[i] == b'(';
                    let wcopy = t.w;
                    let w: &[u8] = if t.flags & F_LONG != 0 {
                        &[]
                    } else {
                        &wcopy[..t.wl as usize]
                    };
                    if direct_paren
                        || (!w.is_empty() && is_known_function(w) && self.paren_follows(i))
                    {
                        // Any word glued to `(` is a function call; a known
                        // function may have whitespace/comments before `(`.
                        // SQL keywords that take parentheses keep their class.
                        let kc = classify_word(w);
                        t.c = if matches!(kc, b'n' | b'B') || is_known_function(w) {
                            match w {
                                b"in" | b"values" | b"exists" => b'k',
                                b"select" => b'E',
                                _ => b'f',
                            }
                        } else {
                            kc
                        };
                        if t.c == b'f' {
                            t.flags |= F_PAREN;
                            if is_known_function(w) {
                                t.flags |= F_KNOWN;
                            }
                        }
                    } else if !w.is_empty() {
                        t.c = classify_word(w);
                    }
                    return Some(t);
                }
                _ => {}
            }
            // operators and punctuation
            let (c, len, flags) = match (ch, nx) {
                (b'=', b'=') => (b'o', 2, F_SYM),
                (b'=', _) => (b'o', 1, F_SYM),
                (b'<', b'=') => {
                    if p + 2 < b.len() && b[p + 2] == b'>' {
                        (b'o', 3, 0)
                    } else {
                        (b'o', 2, 0)
                    }
                }
                (b'<', b'>') => (b'o', 2, 0),
                (b'<', b'<') => (b'a', 2, 0),
                (b'<', _) => (b'o', 1, 0),
                (b'>', b'=') => (b'o', 2, 0),
                (b'>', b'>') => (b'a', 2, 0),
                (b'>', _) => (b'o', 1, 0),
                (b'!', b'=') | (b'!', b'<') | (b'!', b'>') => (b'o', 2, 0),
                (b'!', _) => (b'a', 1, F_UNARY),
                (b':', b'=') => (b'o', 2, 0),
                (b':', b':') => (b'a', 2, 0),
                (b'|', b'|') => (b'&', 2, 0),
                (b'&', b'&') => (b'&', 2, 0),
                (b'-', _) | (b'+', _) | (b'~', _) => (b'a', 1, F_UNARY),
                (b'*', _) => (b'a', 1, F_STAR),
                (b'/', _) | (b'%', _) | (b'^', _) | (b'|', _) | (b'&', _) => (b'a', 1, 0),
                (b',', _) => (b',', 1, 0),
                (b';', _) => (b';', 1, 0),
                (b'(', _) => (b'(', 1, 0),
                (b')', _) => (b')', 1, 0),
                _ => (b'?', 1, 0),
            };
            self.p = p + len;
            let mut t = Tok::new(c);
            t.flags = flags;
            return Some(t);
        }
    }
}

/// [`F_GLUED`] when the comment `b[p..end]` follows the previous byte without a space and its
/// run of marker characters (`---`, `#`) is not followed by a space: `1---` and `1---gdpr=1` are
/// text with dashes in it, where a typed truncation reads `1 --` or `1-- x`.
fn glued_empty(b: &[u8], p: usize, end: usize) -> u32 {
    let after_marks = b[p..end]
        .iter()
        .position(|&c| !matches!(c, b'-' | b'#'))
        .map(|i| b[p + i]);
    let spaced = after_marks.is_some_and(is_ws);
    if p > 0 && !is_ws(b[p - 1]) && !spaced {
        F_GLUED
    } else {
        0
    }
}

pub(super) fn string_tok(b: &[u8], start: usize, end: usize, open: bool) -> Tok {
    let mut t = Tok::new(b's');
    let stop = if open { end } else { end.saturating_sub(1) };
    let content = b.get(start..stop.max(start)).unwrap_or(&[]);
    if open {
        t.flags |= F_OPEN;
    }
    if let (Some(a), Some(z)) = (content.first(), content.last()) {
        if a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric() {
            t.flags |= F_TIGHT;
        }
    }
    if content.len() <= 40 {
        let mut a = 0;
        let mut z = content.len();
        while a < z && is_ws(content[a]) {
            a += 1;
        }
        while z > a && is_ws(content[z - 1]) {
            z -= 1;
        }
        if !content[a..z].iter().any(|&c| is_ws(c)) {
            t.flags |= F_WORDISH;
        }
    }
    t
}

pub(super) fn memchr_from(b: &[u8], from: usize, x: u8) -> Option<usize> {
    b.get(from..)?
        .iter()
        .position(|&c| c == x)
        .map(|i| i + from)
}

fn find2(b: &[u8], from: usize, x: u8, y: u8) -> Option<usize> {
    let mut i = from;
    while i + 1 < b.len() {
        if b[i] == x && b[i + 1] == y {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn scan_number(b: &[u8], p: usize) -> usize {
    let mut i = p;
    if b[i] == b'0' && i + 1 < b.len() && (b[i + 1] | 0x20) == b'x' {
        let mut j = i + 2;
        while j < b.len() && b[j].is_ascii_hexdigit() {
            j += 1;
        }
        if j > i + 2 {
            return j;
        }
    }
    if b[i] == b'0' && i + 1 < b.len() && (b[i + 1] | 0x20) == b'b' {
        let mut j = i + 2;
        while j < b.len() && (b[j] == b'0' || b[j] == b'1') {
            j += 1;
        }
        if j > i + 2 && !(j < b.len() && is_word(b[j])) {
            return j;
        }
    }
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < b.len() && (b[i] | 0x20) == b'e' {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    i
}
