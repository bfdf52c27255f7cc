//! JSON body parser, directly and through `parse_body` (declared and sniffed content types; a
//! refused document is read again as relaxed or base64 JSON), and the text runs of a binary body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfuzz::waf::body::{body_text, is_binary, parse_body, parse_json_into, JsonArgs};

fuzz_target!(|data: &[u8]| {
    let mut args = JsonArgs::default();
    let _ = parse_json_into(data, &mut args);
    // Every recorded leaf reads back (its ranges lie inside the text).
    assert_eq!(args.iter().count(), args.len());
    let _ = parse_body(Some("application/json"), data, false);
    let _ = parse_body(Some("application/vnd.api+json"), data, true);
    let _ = parse_body(None, data, false);
    // The view the raw-body rules get of a binary body.
    let text = body_text(data);
    assert!(!is_binary(data) || !text.contains('\0'), "a text run holds a NUL");
});
