//! The libinjection-style SQLi and XSS detectors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfuzz::waf::detect::{detect_sqli, detect_xss};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let _ = detect_sqli(&s);
    let _ = detect_xss(&s);
});
