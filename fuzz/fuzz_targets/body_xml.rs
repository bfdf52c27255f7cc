//! Tolerant XML tokenizer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfuzz::waf::body::{parse_body, parse_xml_into};
use pfuzz::waf::transform::bytes_to_string;

fuzz_target!(|data: &[u8]| {
    let s = bytes_to_string(data);
    let mut args = Vec::new();
    let _ = parse_xml_into(&s, &mut args, false);
    args.clear();
    let _ = parse_xml_into(&s, &mut args, true);
    let _ = parse_body(Some("text/xml"), data, false);
});
