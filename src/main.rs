use clap::Parser;
use std::process::ExitCode;

/// mimalloc instead of the system allocator: a request allocates and frees
/// many small buffers (headers, body chunks, WAF target values) across two
/// or more worker threads, which is where glibc's malloc spends most time.
/// BENCHMARKS.md shows what this bought. Version 2 of mimalloc without
/// transparent huge pages: v3 and huge pages each added several MiB of idle
/// RSS for no throughput.
/// The `system-allocator` feature keeps the system's: less memory per idle
/// connection, less throughput.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    portcullis::cli::main(portcullis::cli::Cli::parse())
}
