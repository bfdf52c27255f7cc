//! Whole-request evaluation: raw HTTP/1.x bytes -> `parse_raw_request` -> the embedded rule set
//! at the default policy and at paranoia level 4 (every rule enabled).
#![no_main]

use libfuzzer_sys::fuzz_target;
use once_cell::sync::Lazy;
use pfuzz::waf::{default_plan, parse_raw_request, Mode, Policy, WafPlan};

static PLAN: Lazy<WafPlan> = Lazy::new(|| default_plan().expect("embedded rule set compiles"));
static PL1: Lazy<Policy> = Lazy::new(Policy::default);
static PL4: Lazy<Policy> = Lazy::new(|| Policy::new(Mode::Prevention, 4, 5));

fuzz_target!(|data: &[u8]| {
    let Ok(req) = parse_raw_request(data) else {
        return;
    };
    req.with_request(|r| {
        let _ = PLAN.evaluate(r, &PL1);
        let _ = PLAN.evaluate(r, &PL4);
    });
});
