//! The minimal proxy with mimalloc, the allocator portcullis itself uses:
//! run beside the stock one, it shows how much of a ratio is the allocator
//! rather than the edge's logic.
//!
//! `cargo run --release --example minimal_proxy_mimalloc -- LISTEN UPSTREAM THREADS`

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "minimal_proxy/proxy.rs"]
mod proxy;

fn main() {
    proxy::main()
}
