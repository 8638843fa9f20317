//! The WiseHosting worker agent as a library; `main.rs` is a thin shell.
//!
//! - [`config`]: the worker's YAML config and systemd credentials.
//! - [`agent`]: the agent that assembles the parts and acts on what the control plane sends;
//!   reconnects with capped exponential backoff and full jitter.
//! - [`link`]: the connection to the control plane, transport only: register, the signed
//!   WebSocket session, token refresh.
//! - [`deploy`]: the jobs: clone, build, run, health check, switch, retire; stop, start,
//!   restart, remove; errors that say whose fault they were.
//! - [`edge`]: the edge router: apps' HTTP traffic by hostname, its table pushed by the
//!   control plane, zero-downtime drains.
//! - [`runtime`]: Podman by argv, the confined networks' firewall, build cgroups, the
//!   monitor and the supervisor of app containers, hostile output cut to size.
//! - [`stats`]: host figures for heartbeats, read from `/proc` and `statvfs`.
//! - [`mesh`]: the worker's WireGuard key pair and the mesh address the control plane gave it.
//!
//! The worker never talks to PostgreSQL: everything goes through the control plane.

/// An error that is one sentence saying what went wrong and what to do, made from a `String`
/// or a `&str` (so `?` lifts a message into it); one type per flow, so signatures say which.
macro_rules! message_error {
    ($(#[$meta:meta])* $vis:vis $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        #[error("{0}")]
        $vis struct $name(pub String);

        impl From<String> for $name {
            fn from(message: String) -> $name {
                $name(message)
            }
        }

        impl From<&str> for $name {
            fn from(message: &str) -> $name {
                $name(message.to_string())
            }
        }
    };
}

pub mod agent;
pub mod config;
pub mod deploy;
pub mod edge;
pub mod link;
pub mod mesh;
pub mod runtime;
pub mod service;
pub mod stats;

pub use agent::{Agent, AgentStatus};
pub use config::WorkerConfig;
