//! The console's only way to live state: the control plane's internal API on loopback, with
//! the bearer token from `internal_api.token` (credential `internal_api_token`). Answers pass
//! through as they come — status and JSON body — so a 503 `worker_offline` or a 400
//! `unknown_command` reaches the console unchanged.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use wisehosting_control_plane::http::ApiError;
use wisehosting_crypto::Secret;

/// Longer than the control plane's own deadline for a podman query (15 s).
const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone)]
pub struct InternalApi {
    base: String,
    token: Secret,
    client: reqwest::Client,
}

impl std::fmt::Debug for InternalApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalApi").field("base", &self.base).finish_non_exhaustive()
    }
}

/// An answer of the internal API.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl InternalApi {
    pub fn new(base: &str, token: Secret) -> Result<Self, reqwest::Error> {
        // Loopback only (the config checks the URL), so no proxy and no redirect.
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .build()?;
        Ok(Self { base: base.trim_end_matches('/').to_string(), token, client })
    }

    /// `GET <base><path>`; `path` starts with `/internal-api/` and holds only validated parts.
    pub async fn get(&self, path: &str) -> Result<Answer, ApiError> {
        self.send(self.client.get(format!("{}{path}", self.base))).await
    }

    /// `POST <base><path>` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Answer, ApiError> {
        self.send(self.client.post(format!("{}{path}", self.base)).json(body)).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, ApiError> {
        let unreachable = |e: reqwest::Error| {
            tracing::warn!(error = %e, "internal API request failed");
            ApiError::Upstream(format!(
                "the control plane's internal API at {} did not answer; check that `wisehosting serve` runs with internal_api.token set and that admin.internal_api_url points at it",
                self.base
            ))
        };
        let response = request.bearer_auth(self.token.expose()).send().await.map_err(unreachable)?;
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        if status == StatusCode::UNAUTHORIZED {
            return Err(ApiError::Upstream(
                "the internal API refused the console's token; give wisehosting-admin the same internal_api.token (credential internal_api_token) as the control plane".into(),
            ));
        }
        let body = response.json().await.map_err(unreachable)?;
        Ok(Answer { status, body })
    }
}
