//! `wisehosting`: the control plane binary. Everything lives in the library.

use std::process::ExitCode;

use clap::Parser;
use wisehosting_control_plane::cli::{self, Cli};

fn main() -> ExitCode {
    wisehosting_worker::service::take_from_env();
    cli::block_on_main(cli::run(Cli::parse()))
}
