//! The code under test, for the fuzz targets.
//!
//! The WAF is the `portcullis-waf` crate in both modes (the edge re-exports the same crate as
//! `portcullis::waf`). With the `full` feature the rest comes from the real `portcullis` crate.
//! Without it, the other self-contained modules (they use nothing else from the crate) are
//! compiled here straight from the main crate's source files, so the fuzzed code is the same
//! code without building pingora and the rest of the proxy.
#![allow(dead_code, unused_imports, clippy::all)]

pub use portcullis_waf as waf;

#[cfg(feature = "full")]
pub use portcullis::tls::hello as tls_hello;

#[cfg(feature = "full")]
pub use portcullis::netrules as proxy_protocol;

#[cfg(not(feature = "full"))]
#[path = "../../src/tls/hello.rs"]
pub mod tls_hello;

#[cfg(not(feature = "full"))]
#[path = "../../src/netrules/proxy_protocol.rs"]
pub mod proxy_protocol;
