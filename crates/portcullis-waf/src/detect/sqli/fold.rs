//! One context lexed and folded: comments in the middle, unary operators and arithmetic chains
//! disappear, adjacent strings merge, so the grammar sees the shape of the input.

use super::lex::{scan_string, string_tok, Lexer, Tok, EMPTY, F_FOLDED, F_FOLDN, F_OPEN, F_UNARY};
use super::{FP_LEN, MAX_FOLDED, MAX_RAW, RAW_KEEP};

#[inline]
fn is_operand(c: u8) -> bool {
    matches!(c, b'1' | b's' | b'n' | b'v')
}

#[inline]
fn ends_operand(c: u8) -> bool {
    matches!(c, b'1' | b's' | b'n' | b'v' | b')')
}

/// Folded token stream of one context.
pub(super) struct Folded {
    pub(super) t: [Tok; MAX_FOLDED],
    pub(super) n: usize,
    /// First raw (unfolded, comments included) tokens.
    pub(super) raw: [Tok; RAW_KEEP],
    pub(super) nraw: usize,
    /// Byte length of the break-out string content (quote contexts).
    pub(super) s0_len: usize,
    pub(super) saw_bang: bool,
    pub(super) quote_ctx: bool,
}

impl Folded {
    #[inline]
    pub(super) fn c(&self, i: usize) -> u8 {
        if i < self.n {
            self.t[i].c
        } else {
            0
        }
    }
    pub(super) fn fingerprint(&self) -> String {
        self.t[..self.n.min(FP_LEN)]
            .iter()
            .map(|t| t.c as char)
            .collect()
    }
}

pub(super) fn lex_and_fold(b: &[u8], quote: u8) -> Folded {
    let mut f = Folded {
        t: [EMPTY; MAX_FOLDED],
        n: 0,
        raw: [EMPTY; RAW_KEEP],
        nraw: 0,
        s0_len: 0,
        saw_bang: false,
        quote_ctx: quote != 0,
    };
    let mut lx = Lexer {
        b,
        p: 0,
        bang: false,
        saw_bang: false,
    };
    let mut pending_comment: Option<Tok> = None;
    if quote != 0 {
        let (end, open) = scan_string(b, 0, quote);
        lx.p = end;
        let t = string_tok(b, 0, end, open);
        f.s0_len = if open { end } else { end - 1 };
        f.t[0] = t;
        f.n = 1;
        f.raw[0] = t;
        f.nraw = 1;
    }
    let mut raw = 0;
    while raw < MAX_RAW {
        let tok = match lx.next() {
            Some(t) => t,
            None => break,
        };
        raw += 1;
        if f.nraw < RAW_KEEP {
            f.raw[f.nraw] = tok;
            f.nraw += 1;
        }
        if tok.c == b'c' {
            pending_comment = Some(tok);
            continue;
        }
        pending_comment = None;
        if f.n >= MAX_FOLDED {
            break;
        }
        let n = f.n;
        let last = if n > 0 { f.t[n - 1].c } else { 0 };
        match tok.c {
            b'N' => continue,
            b'a' if tok.flags & F_UNARY != 0 && !ends_operand(last) => continue,
            b'k' if last == b'U' && (tok.is(b"all") || tok.is(b"distinct")) => continue,
            b'k' if tok.is(b"by")
                && last == b'n'
                && (f.t[n - 1].is(b"order") || f.t[n - 1].is(b"group")) =>
            {
                f.t[n - 1].c = b'B';
                continue;
            }
            b'k' if last == b'T'
                && f.t[n - 1].is(b"waitfor")
                && (tok.is(b"delay") || tok.is(b"time")) =>
            {
                continue
            }
            b's' if last == b's' => {
                f.t[n - 1].flags |= (tok.flags & F_OPEN) | F_FOLDED;
                continue;
            }
            c if is_operand(c) && n >= 2 && last == b'a' && ends_operand(f.t[n - 2].c) => {
                // fold `x op y` into `x`
                f.n -= 1;
                let k = f.n - 1;
                f.t[k].flags |= F_FOLDED;
                if tok.c == b'n' || f.t[k].c == b'n' {
                    f.t[k].flags |= F_FOLDN;
                }
                if tok.c == b's' {
                    f.t[k].flags |= tok.flags & F_OPEN;
                }
                continue;
            }
            _ => {}
        }
        f.t[f.n] = tok;
        f.n += 1;
    }
    if let Some(c) = pending_comment {
        if f.n < MAX_FOLDED {
            f.t[f.n] = c;
            f.n += 1;
        }
    }
    f.saw_bang = lx.saw_bang;
    f
}
