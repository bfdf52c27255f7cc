//! The ceiling for this design in benchmarks: a pingora proxy with no logic
//! at all (one upstream, no routing, no checks, no logging), with the system
//! allocator, as the performance issue defines it.
//!
//! `cargo run --release --example minimal_proxy -- LISTEN UPSTREAM THREADS`

mod proxy;

fn main() {
    proxy::main()
}
