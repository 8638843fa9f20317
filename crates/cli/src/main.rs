//! `wh`: everything lives in the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    wisehosting_cli::main(wisehosting_cli::Cli::parse())
}
