//! JSON body parser, directly and through `parse_body` (declared and sniffed content types).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfuzz::waf::body::{parse_body, parse_json_into};

fuzz_target!(|data: &[u8]| {
    let mut args = Vec::new();
    let _ = parse_json_into(data, &mut args);
    let _ = parse_body(Some("application/json"), data, false);
    let _ = parse_body(Some("application/vnd.api+json"), data, true);
    let _ = parse_body(None, data, false);
});
