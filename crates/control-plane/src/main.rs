//! `wisehosting`: the control plane binary. Everything lives in the library.

use std::process::ExitCode;

use clap::Parser;
use wisehosting_control_plane::cli::{self, Cli};

fn main() -> ExitCode {
    cli::block_on_main(cli::run(Cli::parse()))
}
