//! The grammar: the shapes of an injection, matched against a folded token stream ([`Folded`]).

use super::fold::Folded;
use super::lex::{
    is_dangerous_function, Tok, F_CALNUM, F_CWEAK, F_FOLDED, F_FOLDN, F_GLUED, F_HASH, F_KNOWN,
    F_NONASCII, F_NUM, F_OPEN, F_STAR, F_SYM, F_TIGHT, F_UNARY, F_WORDISH,
};
use super::RAW_KEEP;

/// Operand summary flags.
const O_LIT: u8 = 1; // contains a literal (number, string, variable)
const O_FN: u8 = 2; // is / contains a function call
const O_KNOWN: u8 = 4; // contains a known SQL function call
const O_SEL: u8 = 8; // contains a sub-select
const O_CMP: u8 = 16; // contains a comparison or logic operator

/// `i` is at `(`: index just after the matching `)` (or the end of the
/// stream when unbalanced) and the flags of the enclosed tokens.
fn skip_group(f: &Folded, i: usize) -> (usize, u8) {
    let mut depth = 0usize;
    let mut fl = 0u8;
    let mut j = i;
    while j < f.n {
        let t = &f.t[j];
        match t.c {
            b'(' => depth += 1,
            b')' => {
                if depth <= 1 {
                    return (j + 1, fl);
                }
                depth -= 1;
            }
            b'1' | b's' | b'v' => fl |= O_LIT,
            b'f' => {
                fl |= O_FN;
                if t.flags & F_KNOWN != 0 {
                    fl |= O_KNOWN;
                }
            }
            b'E' if t.is(b"select") => fl |= O_SEL,
            b'o' | b'&' => fl |= O_CMP,
            _ => {}
        }
        j += 1;
    }
    (f.n, fl)
}

/// An operand (literal, name, group, function call), optionally chained
/// with arithmetic operators.  Returns the end index and summary flags.
fn operand_end(f: &Folded, i: usize) -> Option<(usize, u8)> {
    let mut j = i;
    let mut fl = 0u8;
    loop {
        match f.c(j) {
            b'1' | b's' | b'v' => {
                fl |= O_LIT;
                j += 1;
            }
            b'n' => j += 1,
            b'f' if f.c(j + 1) == b'(' => {
                fl |= O_FN;
                if f.t[j].flags & F_KNOWN != 0 {
                    fl |= O_KNOWN;
                }
                let (e, g) = skip_group(f, j + 1);
                fl |= g & (O_LIT | O_KNOWN | O_SEL);
                j = e;
            }
            b'(' => {
                let (e, g) = skip_group(f, j);
                fl |= g;
                j = e;
            }
            _ => return None,
        }
        if f.c(j) == b'a' {
            j += 1;
            continue;
        }
        return Some((j, fl));
    }
}

#[inline]
fn is_cmp(t: &Tok) -> bool {
    t.c == b'o' || (t.c == b'k' && (t.is(b"is") || t.is(b"in") || t.is(b"between")))
}

/// Is a comment a convincing truncation (given the break-out string)?
fn strong_comment(c: &Tok, s0_wordish: bool) -> bool {
    if c.flags & F_CALNUM != 0 {
        return false;
    }
    (c.flags & F_CWEAK == 0 && c.flags & F_HASH == 0) || s0_wordish
}

/// Is token `i` a plausible start of a complete SQL statement?
fn statement_at(f: &Folded, i: usize, strict: bool) -> bool {
    if i >= f.n {
        return false;
    }
    let t = &f.t[i];
    let nx = f.c(i + 1);
    match t.c {
        b'E' => match t.word() {
            b"select" => {
                let ok = match nx {
                    b'1' | b'v' | b's' | b'(' => true,
                    b'f' => f.t[i + 1].flags & F_KNOWN != 0 || !strict,
                    b'a' => f.t[i + 1].flags & F_STAR != 0,
                    b'k' => {
                        let x = &f.t[i + 1];
                        x.is(b"distinct") || x.is(b"all") || x.is(b"top") || x.is(b"case")
                    }
                    b'n' => {
                        f.c(i + 2) == b','
                            || (!strict && f.c(i + 2) == b'k' && f.t[i + 2].is(b"from"))
                    }
                    _ => false,
                };
                if !ok {
                    return false;
                }
                if !strict || nx == b'f' {
                    return true;
                }
                // at the very start of a value, want more evidence
                (i + 1..f.n).any(|j| {
                    let x = &f.t[j];
                    (x.c == b'k' && (x.is(b"from") || x.is(b"into")))
                        || matches!(x.c, b'U' | b'c' | b'B')
                }) || (nx == b'1' && f.n == i + 2)
            }
            b"insert" | b"replace" => nx == b'k' && f.t[i + 1].is(b"into"),
            b"delete" => {
                (nx == b'k' && f.t[i + 1].is(b"from"))
                    || (nx == b'n' && f.c(i + 2) == b'k' && f.t[i + 2].is(b"from"))
            }
            b"update" => {
                nx == b'n'
                    && f.c(i + 2) == b'k'
                    && f.t[i + 2].is(b"set")
                    && matches!(f.c(i + 3), b'n' | b'v')
            }
            b"drop" | b"create" | b"alter" | b"truncate" | b"rename" => {
                nx != 0 && {
                    let x = f.t[i + 1].word();
                    matches!(
                        x,
                        b"table"
                            | b"database"
                            | b"schema"
                            | b"procedure"
                            | b"function"
                            | b"view"
                            | b"index"
                            | b"user"
                            | b"trigger"
                            | b"column"
                            | b"login"
                            | b"members"
                    )
                }
            }
            _ => false,
        },
        b'T' => match t.word() {
            b"exec" | b"execute" => {
                matches!(nx, b'f' | b'v' | b's' | b'(')
                    || (nx == b'n' && {
                        let x = f.t[i + 1].word();
                        x.starts_with(b"xp_") || x.starts_with(b"sp_") || x.starts_with(b"master.")
                    })
            }
            b"declare" => nx == b'v',
            b"waitfor" => matches!(nx, b's' | b'1'),
            b"shutdown" => matches!(nx, 0 | b'c' | b';') || (nx == b'n' && f.t[i + 1].is(b"with")),
            _ => false,
        },
        _ => false,
    }
}

/// Does a predicate (the right side of an injected AND/OR) start at `i`?
/// `xlit`: the break-out operand before the logic operator was a literal.
fn predicate_at(f: &Folded, i: usize, xlit: bool, depth: u8) -> bool {
    let q = f.quote_ctx;
    let mut j = i;
    while f.c(j) == b'(' {
        j += 1;
    }
    match f.c(j) {
        b'E' => return f.t[j].is(b"select") && statement_at(f, j, false),
        b'T' => return statement_at(f, j, false),
        b'k' if f.t[j].is(b"exists") => return f.c(j + 1) == b'(',
        _ => {}
    }
    let first = f.c(j);
    let (e, fl) = match operand_end(f, j) {
        Some(x) => x,
        None => return false,
    };
    if fl & O_SEL != 0 {
        return true;
    }
    if first == b'f' && (fl & O_KNOWN != 0 || xlit) {
        return true;
    }
    let mut k = e;
    while f.c(k) == b')' {
        k += 1;
    }
    let lit = fl & (O_LIT | O_FN) != 0;
    if k >= f.n {
        // `' or 'x` (closed by the original quote), `' or 1`
        let s0 = &f.t[0];
        return lit && q && e == k && s0.flags & F_WORDISH != 0 && s0.flags & F_FOLDED == 0;
    }
    let t = &f.t[k];
    if is_cmp(t) {
        let mut r = k + 1;
        while f.c(r) == b'(' {
            r += 1;
        }
        return match operand_end(f, r) {
            Some((_, rf)) => lit || rf & (O_LIT | O_FN) != 0,
            None => false,
        };
    }
    match t.c {
        b'c' => lit && strong_comment(t, f.t[0].flags & F_WORDISH != 0 || !q),
        b';' => lit && (q || f.c(k + 1) == b'c'),
        b'&' => lit && (q || (depth < 4 && predicate_at(f, k + 1, xlit, depth + 1))),
        b'B' => lit,
        _ => false,
    }
}

/// Quote context: `s0 op x op ... 'y` where the last string is left open
/// (it is closed by the quote of the original query).
pub(super) fn quote_chain(f: &Folded) -> bool {
    let r = &f.raw[..f.nraw];
    if r.len() < 3 || r.len() >= RAW_KEEP || r[0].flags & F_WORDISH == 0 {
        return false;
    }
    let last = &r[r.len() - 1];
    if last.c != b's' || last.flags & F_OPEN == 0 || last.flags & F_WORDISH == 0 {
        return false;
    }
    let mut want_op = true;
    let mut ops = 0;
    let mut single_op_arith = false;
    let mut has_logic_op = false;
    for t in &r[1..] {
        match t.c {
            b'(' | b')' => continue,
            b'a' | b'o' | b'&' | b'N' if want_op || t.flags & F_UNARY != 0 || t.c == b'N' => {
                if want_op {
                    ops += 1;
                    if t.c == b'a' || (t.c == b'o' && t.flags & F_SYM == 0) {
                        single_op_arith = true;
                    } else {
                        has_logic_op = true;
                    }
                }
                want_op = false;
            }
            b'k' if want_op && (t.is(b"is") || t.is(b"in")) => {
                single_op_arith = true;
                ops += 1;
                want_op = false;
            }
            b'n' if want_op && t.is(b"sounds") => single_op_arith = true,
            b'1' | b's' | b'v' | b'n' if !want_op => want_op = true,
            _ => return false,
        }
    }
    if ops == 0 || !want_op {
        return false;
    }
    // `"LIKE" stamp`: a single word operator glued to an empty string is
    // far more often a quoted search term.
    // `A' AND 'B`, `A' = 'B`; a single arithmetic or word-comparison
    // operator between quotes (`"&"`, `"*"`, `"LIKE" stamp`) is far more
    // often a quoted search term.
    // `A' - 'B` (both sides glued to the quotes) is still accepted.
    (ops >= 2 && has_logic_op)
        || !single_op_arith
        || (r[0].flags & last.flags & F_TIGHT != 0 && r.len() == 3)
}

/// Rules anchored at the break-out point (start of the value).
pub(super) fn breakout_rules(f: &Folded) -> bool {
    let q = f.quote_ctx;
    let (mut j, mut xfl, x_single) = if q {
        (1, O_LIT, true)
    } else {
        match f.c(0) {
            b'&' => return f.c(1) != b'n' && predicate_at(f, 1, true, 0),
            b'E' | b'T' => return statement_at(f, 0, true),
            b')' => (0, O_LIT, false),
            _ => match operand_end(f, 0) {
                Some((e, fl)) => (e, fl, e == 1),
                None => return false,
            },
        }
    };
    // a leading call of a known function wrapping another SQL function
    if !q && f.c(0) == b'f' && f.t[0].flags & F_KNOWN != 0 && f.c(1) == b'(' {
        let (_, g) = skip_group(f, 1);
        if g & (O_KNOWN | O_SEL) != 0 {
            return true;
        }
    }
    if q && f.c(1) == b'a' {
        if let Some((e, fl)) = operand_end(f, 2) {
            if fl & (O_KNOWN | O_SEL) != 0 {
                return true;
            }
            j = e;
        }
    } else if !q && f.c(j) == b'o' {
        if let Some((e, fl)) = operand_end(f, j + 1) {
            j = e;
            xfl |= fl;
        }
    }
    let xlit = xfl & (O_LIT | O_FN) != 0;
    let mut closers = 0;
    while f.c(j) == b')' {
        j += 1;
        closers += 1;
    }
    if j >= f.n {
        return false;
    }
    let t = &f.t[j];
    let s0_wordish = q && f.t[0].flags & F_WORDISH != 0 && f.t[0].flags & F_FOLDED == 0;
    match t.c {
        b'&' => predicate_at(f, j + 1, xlit || q, 0),
        b'c' if j + 1 == f.n => {
            if q {
                strong_comment(t, s0_wordish) && (closers > 0 || f.t[0].flags & F_FOLDED == 0)
            } else {
                // A lone number truncated by a comment (`id=1 --`) needs the comment typed as
                // one: after a space, or with text in it, and not a `#`. `1---` is the IAB
                // US-privacy string and `1#` a counter with a fragment, both in real cookies and
                // beacons; `1*1--` (folded) and `@@version--` still count.
                xlit && t.flags & F_CWEAK == 0
                    && f.t[0].flags & F_FOLDN == 0
                    && (x_single
                        && matches!(f.c(0), b'1' | b'v')
                        && (f.t[0].flags & F_NUM != 0 || f.c(0) == b'v')
                        && (f.c(0) == b'v'
                            || f.t[0].flags & F_FOLDED != 0
                            || t.flags & (F_GLUED | F_HASH) == 0)
                        || f.c(0) == b'(')
            }
        }
        b';' => (q && f.c(j + 1) == b'c') || statement_at(f, j + 1, false),
        b'B' => {
            let nx = f.c(j + 1);
            if q {
                matches!(nx, b'1' | b'n' | b'v' | b'f' | b'(')
            } else {
                (xlit || closers > 0)
                    && ((nx == b'1' && matches!(f.c(j + 2), 0 | b'c' | b',' | b';' | b'&' | b'B'))
                        || (matches!(nx, b'(' | b'n' | b'f') && {
                            // `group by x having 1=1`, `having (1 or 1)`
                            let mut k = j + 1;
                            while k < f.n && k < j + 12 && f.c(k) != b'B' && f.c(k) != b'&' {
                                k += 1;
                            }
                            (f.c(k) == b'B' && predicate_at(f, k + 1, true, 0))
                                || (f.c(k) == b'&' && predicate_at(f, k + 1, true, 0))
                                || (nx == b'(' && predicate_at(f, j + 1, true, 0))
                        }))
            }
        }
        b'T' => statement_at(f, j, !(xlit || closers > 0 || q)),
        b'a' | b'o' if q => {
            // `x' - (...) --`, `'='`, `x' like 0 --`
            let last = &f.t[f.n - 1];
            if last.c == b'c' && strong_comment(last, s0_wordish) {
                return true;
            }
            let mut r = j + 1;
            while f.c(r) == b'(' {
                r += 1;
            }
            match f.c(r) {
                b'E' => f.t[r].is(b"select"),
                b'f' => f.c(r + 1) == b'(',
                _ => false,
            }
        }
        b'a' | b'o' if xlit => {
            let mut r = j + 1;
            while f.c(r) == b'(' {
                r += 1;
            }
            match operand_end(f, r) {
                Some((_, fl)) => fl & (O_SEL | O_KNOWN) != 0,
                None => false,
            }
        }
        b'k' if t.is(b"into") => {
            f.c(j + 1) == b'k' && (f.t[j + 1].is(b"outfile") || f.t[j + 1].is(b"dumpfile"))
        }
        _ => false,
    }
}

/// Rules that may match anywhere in the folded stream.
pub(super) fn anywhere_rules(f: &Folded) -> bool {
    let n = f.n;
    let mut strong_tokens = false;
    for i in 0..n {
        let t = &f.t[i];
        match t.c {
            b'U' => {
                let mut j = i + 1;
                while f.c(j) == b'(' {
                    j += 1;
                }
                if f.c(j) == b'E' && f.t[j].is(b"select") {
                    // `union select <prose>` in a search box is not an attack
                    let nx = f.c(j + 1);
                    if !(nx == b'n' && f.t[j + 1].flags & F_NONASCII != 0) && nx != b'?' {
                        return true;
                    }
                }
            }
            b';' if statement_at(f, i + 1, false) => return true,
            b'(' if f.c(i + 1) == b'E' && statement_at(f, i + 1, false) => return true,
            b'f' if is_dangerous_function(t.word()) && f.c(i + 1) == b'(' => {
                let prev = if i > 0 { f.c(i - 1) } else { 0 };
                if prev != b'n' && prev != b'1' {
                    return true;
                }
            }
            b'T' if (t.is(b"waitfor") && f.c(i + 1) == b's')
                || (t.is(b"declare") && f.c(i + 1) == b'v') =>
            {
                return true
            }
            b'T' if (t.is(b"exec") || t.is(b"execute")) && f.c(i + 1) == b'n' => {
                let x = f.t[i + 1].word();
                if x.starts_with(b"xp_") || x.starts_with(b"sp_") || x.starts_with(b"master.") {
                    return true;
                }
            }
            b'k' if t.is(b"into")
                && f.c(i + 1) == b'k'
                && (f.t[i + 1].is(b"outfile") || f.t[i + 1].is(b"dumpfile")) =>
            {
                return true
            }
            b'k' if t.is(b"case") && f.c(i + 1) == b'k' && f.t[i + 1].is(b"when") => {
                // CASE WHEN <cmp> THEN
                let mut saw_cmp = false;
                for j in i + 2..n.min(i + 16) {
                    if f.c(j) == b'o' {
                        saw_cmp = true;
                    }
                    if f.c(j) == b'k' && f.t[j].is(b"then") {
                        if saw_cmp {
                            return true;
                        }
                        break;
                    }
                }
            }
            _ => {}
        }
        if matches!(t.c, b'U' | b'E' | b'&' | b'f' | b'B' | b'T') {
            strong_tokens = true;
        }
    }
    f.saw_bang && strong_tokens
}
