//! ClientHello reader used before the handshake.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfuzz::tls_hello::{parse, Parsed};

fuzz_target!(|data: &[u8]| {
    // Every prefix of a complete hello must be Incomplete or a verdict, never a panic; check a
    // few prefixes to exercise the record reassembly.
    let full = parse(data);
    if let Parsed::Hello(_) = full {
        for cut in [1usize, 5, data.len() / 2, data.len().saturating_sub(1)] {
            let _ = parse(&data[..cut.min(data.len())]);
        }
    }
});
