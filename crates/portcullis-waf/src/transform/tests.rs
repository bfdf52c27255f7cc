//! Transformation tests: each decoder and normaliser, chains, and the `may_change` sets.

use super::decode::{fold_lookalike, hexval};
use super::from_base64::is_text;
use super::*;

fn t(tr: &str, s: &str) -> String {
    let t = Transform::parse(tr).unwrap();
    t.apply(s).unwrap_or_else(|| s.to_string())
}

#[test]
fn url_decoding() {
    assert_eq!(t("url_decode", "a%20b+c"), "a b c");
    assert_eq!(t("url_decode", "..%252f..%252fetc"), "../../etc");
    assert_eq!(t("url_decode", "%u003cscript"), "<script");
    assert_eq!(t("url_decode", "%uff1cx"), "<x");
    assert_eq!(t("url_decode", "%c0%afetc"), "/etc");
    assert_eq!(t("url_decode", "100%"), "100%");
    assert_eq!(t("url_decode", "%zz%4"), "%zz%4");
    assert_eq!(t("utf8_overlong", "..%c0%af..%e0%80%afx"), "../../x");
}

#[test]
fn entity_and_js() {
    assert_eq!(
        t("html_entity_decode", "&lt;a&#x3e;&#60&colon;&amp"),
        "<a><:&"
    );
    assert_eq!(t("html_entity_decode", "AT&T &unknown;"), "AT&T &unknown;");
    assert_eq!(t("js_decode", r"\x61\u0062\143\n\'"), "abc\n'");
    assert_eq!(t("css_decode", r"\6a \61 vascript"), "javascript");
}

#[test]
fn whitespace_nulls_trim_length() {
    assert_eq!(t("compress_whitespace", "a  \t\n b"), "a b");
    assert_eq!(t("remove_whitespace", "a b\tc"), "abc");
    assert_eq!(t("remove_nulls", "a\0b"), "ab");
    assert_eq!(t("trim", "  x "), "x");
    assert_eq!(t("length", "abcd"), "4");
    assert_eq!(t("lowercase", "SeLeCT"), "select");
}

#[test]
fn paths() {
    assert_eq!(t("normalize_path", "/a/./b//c/../d"), "/a/b/d");
    assert_eq!(
        t("normalize_path", "..\\..\\windows\\win.ini"),
        "../../windows/win.ini"
    );
    assert_eq!(t("normalize_path", "/a/../../etc/passwd"), "/../etc/passwd");
}

#[test]
fn cmd_and_comments_and_b64() {
    assert_eq!(t("cmdline", "c^a\"t /e't'c/pa\\sswd"), "cat/etc/passwd");
    assert_eq!(t("cmdline", "W'h'O\"am\"I"), "whoami");
    assert_eq!(t("cmdline", "a;  b,c"), "a; b c");
    // Overlong forms up to six bytes, and the slash and dot look-alikes of %u escapes.
    assert_eq!(t("url_decode", "%f8%80%80%80%ae%fc%80%80%80%80%af"), "./");
    assert_eq!(
        t("url_decode", "..%u2215..%uEFC8x%u2216y%uF025%uff0e"),
        "../../x\\y\\."
    );
    assert_eq!(t("utf8_overlong", "%f8%80%80%80%ae%e0%80%ae%c0%af"), "../");
    assert_eq!(fix_overlong(b"\xc0\xae\xc0"), b".\xc0");
    assert_eq!(
        t("remove_comments", "un/**/ion sel/*x*/ect -- c"),
        "union select "
    );
    assert_eq!(t("replace_comments", "union/**/select"), "union select");
    assert_eq!(t("base64_decode", "PHNjcmlwdD4="), "<script>");
    assert_eq!(t("base64_decode", "not base64!"), "not base64!");
    assert_eq!(t("hex_decode", "0x414243"), "ABC");
    assert_eq!(
        t(
            "base64_decode_embedded",
            r#"{"id":"MSBhbmQgMT0yIHNlbGVjdCB2ZXJzaW9uKCkgLS0="}"#
        ),
        r#"{"id":"1 and 1=2 select version() --"}"#
    );
    assert_eq!(
        t("base64_decode_embedded", "abcdefghijklmnop"),
        "abcdefghijklmnop"
    );
}

/// The byte-at-a-time decoder `url_decode_once` must agree with.
fn url_decode_reference(s: &str, plus: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = |k: usize| b.get(k).copied().and_then(hexval);
        if b[i] == b'%' && i + 5 < b.len() && matches!(b[i + 1], b'u' | b'U') {
            if let (Some(a), Some(c), Some(d), Some(e)) =
                (hex(i + 2), hex(i + 3), hex(i + 4), hex(i + 5))
            {
                let cp = (a as u32) << 12 | (c as u32) << 8 | (d as u32) << 4 | e as u32;
                let cp = fold_lookalike(cp);
                let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                out.extend_from_slice(ch.to_string().as_bytes());
                i += 6;
                continue;
            }
        }
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(if plus && b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    (out != b).then(|| bytes_to_string(&out))
}

#[test]
fn byte_sets_of_long_texts_agree_with_the_bit_per_byte_loop() {
    let all: Vec<u8> = (0..=255).collect();
    let mut texts = vec![all.repeat(2), b"ab".repeat(LONG_BYTE_SET)];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for len in [LONG_BYTE_SET - 1, LONG_BYTE_SET, 1000] {
        texts.push(
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % 97) as u8 + 100
                })
                .collect(),
        );
    }
    for t in &texts {
        let mut want = [0u64; 4];
        for &b in t {
            want[(b >> 6) as usize] |= 1u64 << (b & 63);
        }
        assert_eq!(byte_set(t), want, "length {}", t.len());
    }
}

#[test]
fn url_decode_agrees_with_the_byte_at_a_time_decoder() {
    let mut samples: Vec<String> = [
        "",
        "plain",
        "a+b",
        "%41%42",
        "%4",
        "%",
        "%%41",
        "100%",
        "%zz%41+",
        "%u0041%uFF0E%u002",
        "%U00e9x",
        "%c0%af",
        "%ff%fe",
        "a%2",
        "+%2b+",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    samples.extend(random_strings(
        0x2545_f491_4f6c_dd1d,
        b"%+uU0aF9gz. ",
        1..24,
        60,
    ));
    for s in &samples {
        for plus in [false, true] {
            assert_eq!(
                url_decode_once(s, plus),
                url_decode_reference(s, plus),
                "{s:?} plus={plus}"
            );
        }
    }
}

#[test]
fn lowercase_by_char_agrees_with_unicode_lowercase() {
    // Every character alone, then texts that mix Latin-1 with characters beyond it.
    for c in (0u32..0x3_0000)
        .filter_map(char::from_u32)
        .filter(|&c| c != '\u{3a3}')
    {
        let one = c.to_string();
        assert_eq!(lowercase_by_char(&one), Some(one.to_lowercase()), "{c:?}");
    }
    let latin1: String = (0u32..0x100).filter_map(char::from_u32).collect();
    for text in [
        latin1.as_str(),
        "\u{c3}\u{83}\u{c2}\u{a9} CAF\u{c9} \u{d7}\u{de}\u{df}",
        "\u{c3}\u{a9}\u{2028}\u{130}X\u{1e9e}\u{c9}\u{10400}",
        // A titlecase letter is not uppercase, yet lowercases.
        "\u{1c5}a \u{4e2d}\u{1c5}",
    ] {
        assert_eq!(lowercase_by_char(text), Some(text.to_lowercase()));
        assert_eq!(t("lowercase", text), text.to_lowercase());
    }
    // A capital sigma lowercases by its neighbours: the general path decides.
    assert_eq!(lowercase_by_char("\u{c9}\u{3a3}"), None);
    for text in ["O\u{3a3} \u{3a3}A", "\u{c9}O\u{3a3}"] {
        assert_eq!(t("lowercase", text), text.to_lowercase());
    }
    assert_eq!(t("lowercase", "\u{100}\u{c9}"), "\u{101}\u{e9}");
    assert_eq!(t("lowercase", "d\u{e9}j\u{e0} vu"), "d\u{e9}j\u{e0} vu");
}

/// `per_length` strings over `alphabet` for each length in `lengths`, from a xorshift generator
/// seeded with `seed`: the differential tests below see the same strings on every run.
fn random_strings(
    seed: u64,
    alphabet: &[u8],
    lengths: std::ops::Range<usize>,
    per_length: usize,
) -> Vec<String> {
    let mut x = seed;
    let mut out = Vec::new();
    for len in lengths {
        for _ in 0..per_length {
            let v: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize] as char
                })
                .collect();
            out.push(v);
        }
    }
    out
}

/// The plain algorithm `base64_decode_embedded` must agree with: every run of 12 or more
/// characters of either alphabet, decoded with the standard alphabet or else the URL-safe
/// one, replaced when the result is text.
fn embedded_reference(s: &str) -> Option<String> {
    use base64::Engine;
    let is_b64 = |c: u8| c.is_ascii_alphanumeric() || b"+/-_".contains(&c);
    let b = s.as_bytes();
    let (mut out, mut last, mut i) = (String::new(), 0, 0);
    while i < b.len() {
        if !is_b64(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_b64(b[i]) {
            i += 1;
        }
        let mut end = i;
        while end < b.len() && b[end] == b'=' && end - i < 2 {
            end += 1;
        }
        let run = &s[start..i];
        let std = base64::engine::general_purpose::STANDARD_NO_PAD;
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        if run.len() >= 12 {
            if let Ok(dec) = std.decode(run).or_else(|_| url.decode(run)) {
                if let Some(text) = is_text(&dec) {
                    out.push_str(&s[last..start]);
                    out.push_str(text);
                    last = end;
                }
            }
        }
        i = end.max(i);
    }
    (last != 0).then(|| out + &s[last..])
}

#[test]
fn embedded_base64_agrees_with_the_plain_algorithm() {
    use base64::Engine;
    let std = base64::engine::general_purpose::STANDARD;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let texts = [
        "1 union select password from users",
        "<script>alert(1)</script>",
        "caf\u{e9} cr\u{e8}me br\u{fb}l\u{e9}e ?>",
        "tab\tand\nnewline",
        "bell\u{7} inside",
        "\u{1F600} smile ~~~ ???",
    ];
    let mut samples: Vec<String> = Vec::new();
    for t in texts {
        for enc in [std.encode(t), url.encode(t)] {
            samples.push(enc.clone());
            samples.push(format!("{{\"v\":\"{enc}\",\"n\":1}}"));
            samples.push(format!("a={enc}&b=__preventCache1688382990852"));
        }
    }
    // Identifiers, numbers and mixed alphabets that look like base64 runs.
    samples.extend(random_strings(
        0x9e37_79b9_7f4a_7c15,
        b"abcXYZ019+/-_=.&",
        8..48,
        20,
    ));
    // Runs of every length around the shortest decoded one, between separators at every
    // offset (the run search probes every twelfth byte).
    samples.extend(random_strings(
        0x2545_f491_4f6c_dd1d,
        b"QUJDaaaa b=",
        1..64,
        40,
    ));
    for len in 10..=14 {
        for pad in 0..3 {
            let run = &std.encode("xyz".repeat(8))[..len];
            samples.push(format!("{}{run}{}", " ".repeat(pad), "=".repeat(pad)));
            samples.push(format!("{run}.{run}"));
        }
    }
    let decoded = samples.iter().filter(|s| embedded_reference(s).is_some());
    assert!(decoded.count() >= 24, "the samples must exercise decoding");
    for s in &samples {
        assert_eq!(
            base64_decode_embedded(s),
            embedded_reference(s),
            "value {s:?}"
        );
    }
}

/// Values with and without the bytes that the transforms act on, for the tests that check
/// which transforms and chains may leave a value unchanged.
const UNCHANGED_SAMPLES: &[&str] = &[
    "plain",
    "Mixed Case",
    "a%20b",
    "x+y",
    "&lt;",
    "\\x41",
    "a\0b",
    "/a/./b",
    "..\\x",
    "A;b,c",
    "un/**/ion",
    "a--b",
    "#x",
    "  trim ",
    "caf\u{e9}",
    "\u{c9}T\u{c9}",
    "a\tb",
    "%c0%af",
    "zz",
    "abc/def",
    "x.y",
    "q'r\"s^t",
    "SGVsbG8gV29ybGQ=",
    "0x4142",
    "aGVsbG8gd29ybGQgdGhpcw",
    "U0VMRUNU IDEg",
    "YWJj\tZGVm\n",
    "a-b_c+d/e==",
    "Mixed",
    "a b",
    "\u{c9}T",
    "q'r",
    "id_42",
    "2023-07-03",
];

#[test]
fn may_change_is_conservative() {
    for &s in UNCHANGED_SAMPLES {
        let set = byte_set(s.as_bytes());
        for (i, name) in Transform::NAMES.iter().enumerate() {
            let t = Transform::parse(name).unwrap();
            assert_eq!(t as usize, i);
            if !t.may_change(&set) {
                assert!(t.apply(s).is_none(), "{} changed {:?}", name, s);
            }
        }
    }
}

#[test]
fn one_pass_scan_agrees_with_the_byte_set_and_each_transformation() {
    let mut texts: Vec<Vec<u8>> = UNCHANGED_SAMPLES
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    texts.extend((0..=255u8).map(|b| vec![b]));
    texts.extend([
        b"SGVsbG8=".to_vec(),
        b"a b".repeat(LONG_BYTE_SET),
        Vec::new(),
    ]);
    for t in &texts {
        let present = byte_set(t);
        let (scanned, set) = scan_value(t);
        assert_eq!(scanned, present, "{t:?}");
        for tr in ALL_TRANSFORMS {
            assert_eq!(set & tr.bit() != 0, tr.may_change(&present), "{tr:?} {t:?}");
        }
    }
}

#[test]
fn all_transforms_are_listed_in_order() {
    for (i, t) in ALL_TRANSFORMS.iter().enumerate() {
        assert_eq!(*t as usize, i);
        assert_eq!(Transform::parse(Transform::NAMES[i]), Some(*t));
    }
}

#[test]
fn a_chain_leaves_values_it_may_not_change_unchanged() {
    let chains: Vec<Vec<Transform>> = [
        &["url_decode", "lowercase"][..],
        &[
            "url_decode",
            "utf8_overlong",
            "html_entity_decode",
            "js_decode",
            "remove_nulls",
            "lowercase",
        ],
        &["cmdline", "compress_whitespace"],
        &["normalize_path", "remove_comments", "trim"],
        &["url_decode", "base64_decode_embedded"],
        &["url_decode", "base64_decode"],
    ]
    .iter()
    .map(|names| names.iter().map(|n| Transform::parse(n).unwrap()).collect())
    .collect();
    let mut unchanged_by_set = 0;
    for chain in &chains {
        for &s in UNCHANGED_SAMPLES {
            if may_change_set(&byte_set(s.as_bytes())) & chain_set(chain) == 0 {
                unchanged_by_set += 1;
                assert!(
                    matches!(apply_chain(chain, s), Cow::Borrowed(_)),
                    "{chain:?} {s:?}"
                );
            }
        }
    }
    assert!(
        unchanged_by_set >= 10,
        "the samples must exercise the shortcut"
    );
    // A transformation with no trigger bytes is in every value's set.
    assert_ne!(
        may_change_set(&byte_set(b"plain")) & Transform::Length.bit(),
        0
    );
}

#[test]
fn chain() {
    let c = [Transform::UrlDecode, Transform::Lowercase];
    assert_eq!(apply_chain(&c, "%53ELECT"), "select");
    assert!(matches!(apply_chain(&c, "plain"), Cow::Borrowed(_)));
}
