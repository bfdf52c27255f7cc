//! urlencoded body / query-string parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfuzz::waf::body::{parse_body, parse_urlencoded_into};
use pfuzz::waf::transform::bytes_to_string;

fuzz_target!(|data: &[u8]| {
    let mut args = Vec::new();
    parse_urlencoded_into(&bytes_to_string(data), &mut args);
    let _ = parse_body(Some("application/x-www-form-urlencoded"), data, false);
    let _ = parse_body(Some("application/x-www-form-urlencoded; charset=utf-8"), data, true);
});
