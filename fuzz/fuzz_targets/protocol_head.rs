//! The raw-head protocol checks (`proxy::protocol::check_head`): request-smuggling vectors and
//! size limits, on the exact bytes of an HTTP/1 head and on the head pingora builds from them,
//! at the default limits and at small ones. Every refusal is a 4xx the edge sends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::config::Limits;
use portcullis::proxy::protocol::check_head;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = parsed.parse(data) else {
        return;
    };
    let (Some(method), Some(path)) = (parsed.method, parsed.path) else {
        return;
    };
    let Ok(mut head) =
        pingora_http::RequestHeader::build(method, path.as_bytes(), Some(parsed.headers.len()))
    else {
        return;
    };
    for h in parsed.headers.iter() {
        if head.append_header(h.name.to_string(), h.value).is_err() {
            return;
        }
    }
    let small = Limits {
        max_uri_bytes: 64,
        max_header_count: 4,
        max_header_bytes: 256,
        max_args: 3,
        ..Limits::default()
    };
    for limits in [&Limits::default(), &small] {
        for raw in [Some(&data[..len]), None] {
            if let Err(v) = check_head(&head, raw, limits) {
                assert!((400..500).contains(&v.status), "{} {}", v.status, v.reason);
            }
        }
    }
});
