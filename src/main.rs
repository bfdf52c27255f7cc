use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    portcullis::cli::main(portcullis::cli::Cli::parse())
}
