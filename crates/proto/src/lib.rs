//! The control plane <-> worker wire protocol (SPEC §4).
//!
//! This crate is the contract that outlives a deploy: old workers talk to new control planes,
//! and a worker written in another language must be able to talk to ours from the spec alone.
//! It depends on serde, hmac, hkdf and sha2 only: no tokio, axum or sqlx, no IO, no clock, no
//! randomness (callers pass the time and the message ids in).
//!
//! - [`keys`]: the envelope MAC key (HKDF of the raw API key) and the per-connection,
//!   per-direction keys.
//! - [`envelope`]: sealing frames and the receive checks in the spec's order.
//! - [`window`]: the replay window.
//! - [`messages`]: every message type, append-only.
//! - [`job`]: what a job asks for ([`JobSpec`]) and the validating newtypes its fields are
//!   made of; job kinds, deploy phases and admin commands as enums.

pub mod envelope;
pub mod job;
pub mod keys;
pub mod messages;
pub mod window;

pub use envelope::{Frame, MAX_FRAME_BYTES, MAX_SKEW_MS, Receiver, RejectCode, Rejection, Sender};
pub use job::{AdminCommand, InvalidField, JobKind, JobSpec, Phase};
pub use keys::{DirectionKey, LinkKeys, mac_key_from_api_key};
pub use messages::{MessageType, ServerMessage, WorkerMessage};
pub use window::ReplayWindow;

use serde::{Deserialize, Serialize};

/// The body of every JSON error of the HTTP APIs: a stable snake_case code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// Container label naming the app a container belongs to (SPEC §13).
pub const LABEL_APP: &str = "wisehosting.app";
/// Container label naming the deployment a container runs (SPEC §13).
pub const LABEL_DEPLOYMENT: &str = "wisehosting.deployment";
/// Container label naming the worker (its id) that made a container (SPEC §14.5).
pub const LABEL_WORKER: &str = "wisehosting.worker";
/// The response header carrying the connection id at upgrade.
pub const CONNECTION_HEADER: &str = "x-wh-connection";
/// The longest log line, in bytes (SPEC §6): the worker cuts lines at it while reading, the
/// control plane again when it stores them.
pub const MAX_LOG_LINE_BYTES: usize = 8 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_body_has_exactly_the_spec_fields() {
        let body = ErrorBody { code: "unauthorized".into(), message: "sign in".into() };
        let json = serde_json::to_value(&body).unwrap_or_default();
        assert_eq!(json, serde_json::json!({"code": "unauthorized", "message": "sign in"}));
    }
}
