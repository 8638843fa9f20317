//! The WiseHosting worker agent as a library; `main.rs` is a thin shell.
//!
//! - [`config`]: the worker's YAML config and systemd credentials.
//! - [`link`]: the connection to the control plane: register, signed WebSocket session,
//!   token refresh, reconnect with capped exponential backoff and full jitter.
//! - [`edge`]: the edge router: apps' HTTP traffic by hostname, its table from the control
//!   plane's Traefik JSON, zero-downtime drains.
//! - [`runtime`]: Podman, argv only (the admin query runner for now).
//! - [`stats`]: host figures for heartbeats, read from `/proc` and `statvfs`.
//!
//! The worker never talks to PostgreSQL: everything goes through the control plane.

pub mod config;
pub mod deploy;
pub mod edge;
pub mod link;
pub mod runtime;
pub mod stats;

pub use config::WorkerConfig;
pub use link::{Agent, AgentStatus};
