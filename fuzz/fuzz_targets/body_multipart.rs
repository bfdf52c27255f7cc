//! multipart/form-data parser. The input's first line is the Content-Type header value (so the
//! fuzzer controls the boundary parameter), the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfuzz::waf::body::{boundary_of, parse_body};

fuzz_target!(|data: &[u8]| {
    let (ct, body) = match data.iter().position(|&b| b == b'\n') {
        Some(p) => (&data[..p], &data[p + 1..]),
        None => (&b"multipart/form-data; boundary=X"[..], data),
    };
    let ct = String::from_utf8_lossy(ct);
    let _ = boundary_of(&ct);
    let _ = parse_body(Some(&ct), body, false);
    let _ = parse_body(Some(&ct), body, true);
    // A fixed, valid header too, so the body half is fuzzed even when the first line is junk.
    let _ = parse_body(Some("multipart/form-data; boundary=\"b\""), data, false);
});
