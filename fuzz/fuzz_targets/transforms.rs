//! Every transformation, one at a time and as a chain picked by the first input bytes, and the
//! base64 view of a value (`base64_text`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfuzz::waf::transform::{self, Transform, N_TRANSFORMS};

fuzz_target!(|data: &[u8]| {
    // Byte-level helpers.
    let _ = transform::fix_overlong(data);
    let s = transform::bytes_to_string(data);

    // Each transformation alone; `None` must mean "unchanged".
    for name in Transform::NAMES {
        let t = Transform::parse(name).expect("every listed name parses");
        let _ = t.apply(&s);
    }
    let _ = transform::url_decode_once(&s, true);
    let _ = transform::url_decode_once(&s, false);
    // The base64 view of a value: printable text or nothing.
    if let Some(text) = transform::base64_text(&s) {
        assert!(!text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n')));
    }

    // A chain: the first byte gives its length, the next bytes pick the transformations.
    if let Some((&n, rest)) = data.split_first() {
        let n = usize::from(n % 8).min(rest.len());
        let chain: Vec<Transform> = rest[..n]
            .iter()
            .map(|b| Transform::parse(Transform::NAMES[usize::from(*b) % N_TRANSFORMS]).unwrap())
            .collect();
        let input = transform::bytes_to_string(&rest[n..]);
        let _ = transform::apply_chain(&chain, &input);
    }
});
