//! Podman, driven with argv arrays only (never a shell).

pub mod podman;

pub use podman::{AdminOutcome, Podman, admin_argv};
