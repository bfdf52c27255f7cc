//! Config loader: `config::load_str` on arbitrary text, then `plan::compile` on whatever loads.
//! File paths in a loaded config are neutralised first (made relative to a directory that does
//! not exist) so the fuzzer cannot make `compile` read `/dev/zero` or walk `/` for rule files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::config::{load_str, Config};
use std::path::{Component, Path, PathBuf};

const BASE: &str = "/nonexistent-portcullis-fuzz";

fn neutralise(p: &mut PathBuf) {
    if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        *p = PathBuf::from("missing-file");
    }
}

fn neutralise_config(c: &mut Config) {
    if let Some(r) = c.waf.rulesets.as_mut() {
        neutralise(r);
    }
    if let Some(g) = c.geoip.as_mut() {
        neutralise(&mut g.database);
    }
    for l in &mut c.listeners {
        for cert in &mut l.certificates {
            neutralise(&mut cert.cert);
            neutralise(&mut cert.key);
        }
        if let Some(ca) = l.client_auth.as_mut() {
            neutralise(&mut ca.ca);
        }
    }
    for s in &mut c.sites {
        for api in &mut s.openapi {
            neutralise(&mut api.document);
        }
    }
    for p in &mut c.pools {
        if let Some(t) = p.tls.as_mut() {
            if let Some(ca) = t.ca.as_mut() {
                neutralise(ca);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match load_str("fuzz.toml", text, Path::new(BASE).to_path_buf()) {
        Ok(mut loaded) => {
            neutralise_config(&mut loaded.config);
            let _ = portcullis::plan::compile(loaded);
        }
        Err(diags) => {
            // Rendering diagnostics exercises line/column computation on odd input.
            for d in &diags {
                let _ = format!("{d:?}");
            }
        }
    }
});
