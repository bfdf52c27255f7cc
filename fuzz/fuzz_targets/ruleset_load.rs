//! Rule-set loader: arbitrary text as one rule file, compiled together with the embedded data
//! files (so `pm_file` references can resolve) and, on success, evaluated against one request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use once_cell::sync::Lazy;
use pfuzz::waf::{OwnedRequest, Policy, WafPlan, DEFAULT_RULESET};

static DATA_FILES: Lazy<Vec<(String, String)>> = Lazy::new(|| {
    DEFAULT_RULESET
        .iter()
        .filter(|(n, _)| !n.ends_with(".toml"))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
});

static PROBE: Lazy<OwnedRequest> = Lazy::new(|| {
    OwnedRequest::new("POST", "/a/b.php?id=1%27%20or%201=1--&x=<script>", "HTTP/1.1")
        .with_header("Host", "example.com")
        .with_header("User-Agent", "sqlmap/1.0")
        .with_header("Content-Type", "application/x-www-form-urlencoded")
        .with_header("Cookie", "s=../../etc/passwd")
        .with_body(b"q=union+select+1&cmd=;cat+/etc/passwd")
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut files = DATA_FILES.clone();
    files.push(("custom/900-fuzz.toml".to_string(), text.to_string()));
    if let Ok(plan) = WafPlan::from_sources(&files) {
        let _ = plan.rules();
        let policy = Policy::new(pfuzz::waf::Mode::Prevention, 4, 5);
        PROBE.with_request(|r| {
            let _ = plan.evaluate(r, &policy);
        });
    }
});
