//! The control plane <-> worker wire protocol (SPEC §4).
//!
//! This crate is the contract that outlives a deploy: old workers talk to new control planes.
//! It depends on serde (and, with the worker-link issue, hmac/sha2) only: no tokio, axum or
//! sqlx. The envelope, its signing and replay window, and the message types arrive with the
//! worker-link issue; for now it holds the pieces both sides already share.

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
