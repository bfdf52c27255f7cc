//! Content-coded request bodies: arbitrary bytes decoded as gzip, deflate, brotli and layered
//! codings (the first byte picks the `Content-Encoding`), then parsed as JSON. The decoded length
//! never passes the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfuzz::waf::body::parse_body;
use pfuzz::waf::encoding::decode;

const CODINGS: [&[u8]; 6] = [b"gzip", b"deflate", b"br", b"gzip, br", b"x-gzip,deflate", b"zstd"];
const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let coding = CODINGS[usize::from(pick) % CODINGS.len()];
    for truncated in [false, true] {
        let decoded = decode(&[coding], body, truncated, LIMIT);
        assert!(decoded.bytes.len() <= LIMIT);
        let _ = parse_body(Some("application/json"), &decoded.bytes, decoded.truncated);
    }
});
