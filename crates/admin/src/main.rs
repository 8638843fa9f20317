//! `wisehosting-admin`: the operators' console. Everything lives in the library.

use std::process::ExitCode;

use clap::Parser;
use wisehosting_admin::cli::{self, Cli};

fn main() -> ExitCode {
    wisehosting_worker::service::take_from_env();
    wisehosting_control_plane::cli::block_on_main(cli::run(Cli::parse()))
}
