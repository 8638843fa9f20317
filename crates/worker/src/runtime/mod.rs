//! Podman, driven with argv arrays only (never a shell).

pub mod firewall;
pub mod monitor;
pub mod podman;

pub use podman::{AdminOutcome, Podman, admin_argv};
