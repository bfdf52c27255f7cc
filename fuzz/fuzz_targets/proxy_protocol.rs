//! PROXY protocol v1/v2 header parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfuzz::proxy_protocol::parse_proxy_header;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((h, used))) = parse_proxy_header(data) {
        assert!(used <= data.len(), "consumed more bytes than given");
        let _ = h.source();
        let _ = h.destination();
    }
});
