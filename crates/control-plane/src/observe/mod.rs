//! What users see of their running apps.
//!
//! - [`stats`]: live figures and an hour of history per app, from the workers' reports.
//! - [`alerts`]: the alert manager (metric rules in rounds, event kinds where they happen).
//! - [`notify`]: what an alert or a finished deployment queues for the user.
//! - [`webhooks`]: the dispatcher of queued webhook deliveries; [`mail`]: the e-mail sender.
//! - [`usage`]: the usage recorder (hourly rows, daily rollups).

pub mod alerts;
pub mod mail;
pub mod notify;
pub mod stats;
pub mod usage;
pub mod webhooks;
