//! The `firepit` command: build the guest image, run a demo, serve the pool over HTTP, benchmark.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::run(args)
}
