//! The admin subsystem's own binary, `wisehosting-admin` (SPEC §10, §14.4): a different
//! identity surface from the user API (its own accounts, roles and audit trail in tables of
//! their own), a different network exposure (the console listens on loopback; live state
//! comes only through the control plane's loopback internal API), a different audit trail.
//!
//! - [`cli`]: `create-account`, `grant`, `revoke`, `serve`.
//! - [`password`]: the password rule and bcrypt.
//! - [`serve`]: the console — its server, sign-in, role check, pages and their data.

pub mod cli;
pub mod password;
pub mod serve;
