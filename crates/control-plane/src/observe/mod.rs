//! What users see of their running apps.
//!
//! - [`stats`]: live figures and an hour of history per app, from the workers' reports.

pub mod stats;
