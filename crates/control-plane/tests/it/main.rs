//! Integration tests of the control plane: a real PostgreSQL (see `scripts/test.sh`), real
//! sockets, the real binary where the command line is under test.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod account;
mod acme;
mod agent;
mod alerts;
mod audit;
mod cli;
mod dashboard;
mod deploy;
mod deploy_guards;
mod dev;
mod domains;
mod edge_tls;
mod faults;
mod fleet;
mod gitlink;
mod health;
mod http;
mod internal;
mod keys;
mod mesh;
mod migrations;
mod observe;
mod openapi;
mod presets;
mod procfile;
mod push;
mod queue;
mod rollback;
mod routing;
mod signin;
mod tls;
mod webhooks;
mod worker_link;

use std::process::{Command, Output};

/// Runs the `wisehosting` binary with `args` and extra env, no inherited config.
pub fn wisehosting(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wisehosting"));
    cmd.args(args).env_remove("CONFIG_PATH").env_remove("CREDENTIALS_DIRECTORY").env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run wisehosting")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
