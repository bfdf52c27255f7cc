//! Tokenizer-based SQL injection detector.
//!
//! The input is lexed as SQL three times: as-is (numeric / bare context),
//! as if it started inside a single-quoted string and as if it started inside
//! a double-quoted string (the quote contexts are only tried when the input
//! actually contains that quote character).  Each lexed token gets a one-byte
//! class, the token stream is folded (comments in the middle, unary operators
//! and arithmetic chains disappear, adjacent strings merge) and a small
//! hand-written grammar decides whether the folded stream has the shape of an
//! injection: a break-out followed by a logic operator and a predicate, a
//! comment truncation, `UNION SELECT`, a stacked statement, a sub-select,
//! a time/error based function call, and so on.
//!
//! Token classes (also used for the returned fingerprint):
//!
//! | class | meaning                                              |
//! |-------|------------------------------------------------------|
//! | `s`   | string literal                                       |
//! | `1`   | number / literal (`null`, `true`, `0x41`)             |
//! | `n`   | bareword (identifier)                                |
//! | `v`   | variable (`@x`, `@@version`, `current_user`)         |
//! | `k`   | other SQL keyword                                    |
//! | `U`   | `union` / `intersect` / `except`                     |
//! | `E`   | statement keyword (`select`, `drop`, `insert`, ...)  |
//! | `T`   | command keyword (`exec`, `declare`, `waitfor`, ...)  |
//! | `B`   | clause keyword (`order by`, `group by`, `having`...) |
//! | `&`   | logic operator (`and`, `or`, `xor`, `&&`, `\|\|`)    |
//! | `o`   | comparison operator (`=`, `<>`, `like`, ...)         |
//! | `a`   | arithmetic / bitwise operator                        |
//! | `f`   | function name (followed by `(`)                      |
//! | `(` `)` `,` `;` | punctuation                                 |
//! | `c`   | trailing comment                                     |
//! | `?`   | anything else                                        |
//!
//! Everything works on bytes, uses fixed-size stack buffers and examines a
//! bounded number of tokens, so a call is linear in the input (and in practice
//! bounded by `MAX_RAW`, 256, tokens per context) and never allocates unless it returns a
//! fingerprint.
//!
//! The detector is three files, one per step: `lex.rs` turns bytes into classed tokens (the
//! keyword and function tables, strings, numbers, comments, operators); `fold.rs` lexes one
//! context and folds its token stream; `grammar.rs` holds the injection shapes the folded stream
//! is matched against. This file runs the three over each quoting context.

mod fold;
mod grammar;
mod lex;

use fold::lex_and_fold;
use grammar::{anywhere_rules, breakout_rules, quote_chain};
use lex::memchr_from;

/// Maximum number of raw tokens lexed per context.
const MAX_RAW: usize = 256;
/// Maximum number of folded tokens kept per context.
const MAX_FOLDED: usize = 48;
/// Number of raw tokens remembered for the quote-chain rule.
const RAW_KEEP: usize = 16;
/// Number of bytes of a word that are kept (lower-cased) for keyword lookup.
const WL: usize = 28;
/// Length of the returned fingerprint.
const FP_LEN: usize = 8;

fn analyse(b: &[u8], quote: u8) -> Option<String> {
    let f = lex_and_fold(b, quote);
    if f.n == 0 {
        return None;
    }
    if breakout_rules(&f) || anywhere_rules(&f) || (f.quote_ctx && quote_chain(&f)) {
        Some(f.fingerprint())
    } else {
        None
    }
}

/// Cheap pre-filter: values made only of characters that cannot form any of
/// the recognised shapes are skipped without lexing.
fn trivially_benign(b: &[u8]) -> bool {
    // alphanumerics only (plus a few separators) cannot contain an operator,
    // quote, comment or parenthesis, and need at least a space to hold two
    // keywords.
    b.iter()
        .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b':' | b'/'))
        && memchr_from(b, 0, b'-').is_none_or(|i| b.get(i + 1) != Some(&b'-'))
}

/// Detect SQL injection in a (URL-decoded) value.
///
/// Returns the token-class fingerprint of the matching interpretation, or
/// `None` when the value does not look like an injection.
pub fn detect_sqli(input: &str) -> Option<String> {
    let b = input.as_bytes();
    if b.is_empty() || trivially_benign(b) {
        return None;
    }
    if let Some(fp) = analyse(b, 0) {
        return Some(fp);
    }
    if memchr_from(b, 0, b'\'').is_some() {
        if let Some(fp) = analyse(b, b'\'') {
            return Some(fp);
        }
    }
    if memchr_from(b, 0, b'"').is_some() {
        if let Some(fp) = analyse(b, b'"') {
            return Some(fp);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(s: &str) -> bool {
        detect_sqli(s).is_some()
    }

    #[test]
    fn attacks() {
        for s in [
            "' or 1=1",
            "' or 1=1--",
            "1 or 1=1--",
            "' or 'a'='a",
            "1' and '1' like '1",
            "admin'--",
            "admin'#",
            "-1 union select 1,2,3--",
            "1 UNION ALL SELECT NULL,NULL",
            "1/**/uNiOn/**/sElEcT/**/1,2",
            "1; drop table users",
            "'; DROP TABLE users; --",
            "1 and sleep(5)",
            "1' and benchmark(1000000,md5(1))#",
            "1; waitfor delay '0:0:5'--",
            "'||pg_sleep(10)--",
            "1 and 1=2",
            "1 AND 2259=2259",
            "1' order by 3--",
            "1 order by 5--",
            "1 --",
            "1 /* x */",
            "1*1--",
            "@@version--",
            "1-- foo sp_password",
            "'+(select user())+'",
            "1 and ascii(substring(user(),1,1))>64",
            "-1' /*!UNION*/ /*!SELECT*/ 1,2",
            "') or ('a'='a",
            "\" or \"\"=\"",
            "A' AND 'B",
            "username'exec master..xp_cmdshell'ping 127.0.0.1' --",
            "(select id from users limit 1,1)",
            "1 and (select count(*) from users)>0",
        ] {
            assert!(hit(s), "missed: {s}");
        }
    }

    #[test]
    fn benign() {
        for s in [
            "john",
            "12345",
            "en-US,en;q=0.9",
            "O'Reilly",
            "select your plan",
            "1-2",
            "rock and roll",
            "i'm not sure or maybe",
            "2023-01-01",
            "Drop me a line; thanks",
            "john.doe@example.com",
            "550e8400-e29b-41d4-a716-446655440000",
            "https://example.com/a/b?c=d&e=f",
            "{\"a\":1,\"b\":\"x or y\",\"c\":[1,2]}",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.abc-def_ghi",
            "1.35.26",
            "zh-CN,zh;q=0.9",
            "Tom & Jerry",
            "2 OR 4 METAL BUTTONS",
            "\"SWEATER DRESS\" AND \"CHRISTMAS\"",
            "Y'ALL COME BACK NOW",
            "1950's dresses",
            "DRESS WITH HAT 18';",
            "TRUE#LAST",
            "1,1--",
            "1---",
            "1---gdpr=1",
            "1YN-",
            "1#",
            "42--",
            "1 or 2",
            "中文测试 and 内容",
            "don't or won't",
        ] {
            assert!(!hit(s), "false positive: {s} -> {:?}", detect_sqli(s));
        }
    }

    #[test]
    fn no_panic_on_odd_input() {
        let mut s = String::new();
        for i in 0..2000u32 {
            s.push(char::from_u32(i % 200 + 1).unwrap_or('x'));
        }
        let _ = detect_sqli(&s);
        for s in [
            "'", "\"", "/*!", "/*", "--", "@", "@@", "0x", "0b", "1e", ".", "`", "(", "'''", "\\",
        ] {
            let _ = detect_sqli(s);
        }
        let big = "a' ".repeat(50_000);
        let _ = detect_sqli(&big);
    }
}
