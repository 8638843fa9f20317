//! [`ApiError`]: every error the HTTP APIs answer, with its status and stable machine code in
//! one table ([`ApiError::parts`]). Bodies are `{"code": …, "message": …}`. Internal details are
//! logged with the request's span, never returned.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body is not valid JSON: {0}")]
    BadJson(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("send the body as JSON with `Content-Type: application/json`")]
    UnsupportedMediaType,
    #[error("sign in first: this needs a valid session or token")]
    Unauthorized,
    /// A push-webhook delivery whose signature (or token) does not match the app's secret.
    #[error("{0}")]
    BadSignature(String),
    /// A sign-in with an unknown username or a wrong password: one answer for both.
    #[error("that username and password do not match an account; check both and try again")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(String),
    /// An API token whose scopes do not cover the route; the message names the scope needed.
    #[error("{0}")]
    InsufficientScope(String),
    /// A second-factor code that is wrong, used already, or from too far from now.
    #[error(
        "that code is not valid: type the current code from your authenticator app, or an unused recovery code"
    )]
    InvalidTotp,
    /// Over a limit of the user's plan; the message names the limit (`apps`, `custom_domains`,
    /// `deploys_per_day`, …) and what to do.
    #[error("{0}")]
    PlanLimit(String),
    #[error("{0}")]
    Conflict(String),
    /// A URL the SSRF guard refuses (SPEC §14.3); the message says why.
    #[error("{0}")]
    UrlNotAllowed(String),
    /// A custom domain whose verification record is not (yet) in DNS.
    #[error("{0}")]
    VerificationFailed(String),
    /// A linked git account's token the provider no longer accepts; the message says to link
    /// the account again.
    #[error("{0}")]
    GitLinkRejected(String),
    /// A service we depend on (DNS, Cloudflare) failed; the message says which and what to do.
    #[error("{0}")]
    Upstream(String),
    #[error("too many requests; wait {retry_after_secs} s and try again")]
    RateLimited { retry_after_secs: u64 },
    #[error(
        "you have {limit} live log streams open, the most allowed; close one (another tab or client) first"
    )]
    TooManyStreams { limit: usize },
    #[error("the request took too long and was stopped; try again")]
    Timeout,
    #[error("the database is unavailable right now; try again in a few seconds")]
    DatabaseUnavailable,
    #[error("{0}")]
    NotReady(String),
    /// The detail is logged, never sent.
    #[error("something went wrong on our side; it has been logged")]
    Internal(String),
}

impl ApiError {
    /// The one table of statuses and stable codes.
    pub fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::BadJson(_) => (StatusCode::BAD_REQUEST, "bad_json"),
            ApiError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
            ApiError::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::InsufficientScope(_) => (StatusCode::FORBIDDEN, "insufficient_scope"),
            ApiError::InvalidTotp => (StatusCode::UNAUTHORIZED, "invalid_totp"),
            ApiError::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            ApiError::BadSignature(_) => (StatusCode::UNAUTHORIZED, "bad_signature"),
            ApiError::PlanLimit(_) => (StatusCode::PAYMENT_REQUIRED, "plan_limit"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::UrlNotAllowed(_) => (StatusCode::UNPROCESSABLE_ENTITY, "url_not_allowed"),
            ApiError::VerificationFailed(_) => (StatusCode::UNPROCESSABLE_ENTITY, "verification_failed"),
            ApiError::GitLinkRejected(_) => (StatusCode::CONFLICT, "git_link_rejected"),
            ApiError::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream_error"),
            ApiError::RateLimited { .. } | ApiError::TooManyStreams { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
            }
            ApiError::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            ApiError::DatabaseUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid { field: field.into(), message: message.into() }
    }
}

impl From<crate::gitlink::LinkError> for ApiError {
    fn from(e: crate::gitlink::LinkError) -> Self {
        use crate::gitlink::LinkError;
        match e {
            LinkError::NotConfigured(_) | LinkError::NotLinked(_) => ApiError::NotFound(e.to_string()),
            LinkError::Rejected(_) => ApiError::GitLinkRejected(e.to_string()),
            LinkError::Refused { .. } | LinkError::Unavailable { .. } => ApiError::Upstream(e.to_string()),
            LinkError::Store(e) => e.into(),
        }
    }
}

/// Every error answer: a stable machine `code` and a `message` for people that names the
/// problem and the fix.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    pub code: &'a str,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let mut response = (status, Json(ErrorBody { code, message: self.to_string() })).into_response();
        if let ApiError::RateLimited { retry_after_secs } = &self
            && let Ok(value) = retry_after_secs.to_string().parse()
        {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
        }
        response
    }
}

impl From<crate::ratelimit::RetryAfter> for ApiError {
    fn from(wait: crate::ratelimit::RetryAfter) -> Self {
        ApiError::RateLimited { retry_after_secs: wait.0 }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Protocol(_) => {
                tracing::warn!(error = %err, "database unavailable");
                ApiError::DatabaseUnavailable
            }
            // A backend terminated, a server shutting down or starting up (SQLSTATE class 57),
            // a broken connection (class 08): the database is away, not the request wrong.
            sqlx::Error::Database(ref db)
                if db.code().is_some_and(|c| c.starts_with("57") || c.starts_with("08")) =>
            {
                tracing::warn!(error = %err, "database unavailable");
                ApiError::DatabaseUnavailable
            }
            sqlx::Error::RowNotFound => ApiError::NotFound("not found".into()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::domain::InvalidInput> for ApiError {
    fn from(e: crate::domain::InvalidInput) -> Self {
        ApiError::Invalid { field: e.field.into(), message: e.message }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Db(e) => ApiError::from(e),
            StoreError::Seal(e) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<crate::cloudflare::CloudflareError> for ApiError {
    fn from(e: crate::cloudflare::CloudflareError) -> Self {
        ApiError::Upstream(format!("{e}; the domain was left as it was"))
    }
}

/// A stored app that no longer reads as a job is ours to fix, not the caller's.
impl From<crate::jobs::spec::StoredAppUnreadable> for ApiError {
    fn from(e: crate::jobs::spec::StoredAppUnreadable) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// `Json<T>` whose rejections are [`ApiError`]s, so a bad body gets our error shape too.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().map_or(0, |l| l.0);
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(match rejection {
                JsonRejection::JsonDataError(e) => ApiError::Invalid {
                    field: "body".into(),
                    message: e
                        .body_text()
                        .trim_start_matches("Failed to deserialize the JSON body into the target type: ")
                        .to_string(),
                },
                JsonRejection::JsonSyntaxError(e) => ApiError::BadJson(e.body_text()),
                JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
                JsonRejection::BytesRejection(_) => ApiError::PayloadTooLarge { limit },
                other => ApiError::BadRequest(other.body_text()),
            }),
        }
    }
}

/// `Path<T>` whose rejection is a 404: a path whose id is not a number names nothing here,
/// just as another user's id does not (T08).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(_) => Err(ApiError::NotFound(
                "nothing here: the path names none of your resources (ids are whole numbers)".into(),
            )),
        }
    }
}

/// `Query<T>` whose rejection is a JSON 400 naming the parameter that does not read.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::BadRequest(format!(
                "{}; see the API documentation (/api/docs) for this route's parameters",
                rejection.body_text()
            ))),
        }
    }
}

/// The configured body limit, put in request extensions so rejections can name it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);
