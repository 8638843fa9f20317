//! The HTTP edge: the public router, its middleware, and the internal API router.
//!
//! Middleware, outermost first: panic catcher (JSON 500), request context (request id, tracing
//! span, metrics, security headers), timeout (JSON 503), body limit. Every error body is an
//! [`ApiError`].

mod account;
mod alerts;
pub(crate) mod apps;
mod auth;
mod dashboard;
mod domains;
pub mod error;
pub mod extract;
mod git;
mod internal;
mod ops;
mod push;
pub mod serve;
mod stats;
mod traefik;
pub(crate) mod usage;
mod webhooks;
pub mod workers;

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

pub use error::{ApiError, ApiJson, ApiPath, ApiQuery, BodyLimit};
pub use internal::internal_router;

/// Push-webhook deliveries one client address may send per minute (SPEC §14.6).
pub const PUSH_DELIVERIES_PER_MINUTE: u32 = 60;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// The OpenAPI document's frame; the paths and schemas come from the handlers' annotations
/// (`utoipa` through `utoipa-axum`, so a route cannot be served without being documented).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "WiseHosting API",
        description = "The user API of WiseHosting. Authenticate with the `wh_session` cookie (a browser; state changes must come from this site) or `Authorization: Bearer wht_…` (an API token with scopes `read`, `deploy` or `write`). Every error is `{\"code\", \"message\"}` with a stable code."
    ),
    components(schemas(error::ErrorBody)),
    security(("session" = []), ("token" = [])),
    tags(
        (name = "sign-in", description = "Signing in and out"),
        (name = "account", description = "The signed-in user: profile, plans, sessions, 2FA, tokens, audit trail"),
        (name = "apps", description = "Apps and what they run"),
        (name = "deployments", description = "Deployments of an app"),
        (name = "logs", description = "Build and runtime logs"),
        (name = "domains", description = "Custom domains"),
        (name = "stats", description = "Live figures of running apps"),
        (name = "alerts", description = "Alert rules of apps, and alerts"),
        (name = "webhooks", description = "Outbound webhooks: endpoints and their deliveries"),
        (name = "usage", description = "Usage of apps per day"),
        (name = "push", description = "Push to deploy: an app's webhook for git providers, and its deliveries"),
    )
)]
struct ApiDoc;

/// What every operation shares: the security schemes, and a `default` response for errors
/// (`ErrorBody`, whatever the status: 400, 401, 403, 404, 409, 413, 415, 422, 429, 503, …).
struct Conventions;

impl utoipa::Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(extract::SESSION_COOKIE))),
        );
        components.add_security_scheme(
            "two_factor",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(auth::TWO_FACTOR_COOKIE))),
        );
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("wht_…").build(),
            ),
        );
        let error = ResponseBuilder::new()
            .description("An error: a stable `code` and a `message` that names the problem and the fix")
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
            )
            .build();
        for item in doc.paths.paths.values_mut() {
            for operation in
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten()
            {
                operation.responses.responses.entry("default".into()).or_insert_with(|| error.clone().into());
            }
        }
    }
}

/// The user API (`/api`) with its OpenAPI document.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::routes())
        .merge(account::routes())
        .merge(apps::routes())
        .merge(domains::routes())
        .merge(stats::routes())
        .merge(alerts::routes())
        .merge(webhooks::routes())
        .merge(push::routes())
        .merge(git::routes())
        .merge(usage::routes())
}

/// The user API's routes and its finished OpenAPI document (with [`Conventions`]).
fn api_parts() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, mut doc) = api_routes().split_for_parts();
    utoipa::Modify::modify(&Conventions, &mut doc);
    (routes, doc)
}

/// The OpenAPI 3.1 document of the user API, as served at `/api/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_parts().1
}

/// The public router: operations endpoints, the user API (`/api`, its OpenAPI document at
/// `/api/openapi.json` and a reference page at `/api/docs`), the worker API and the Traefik
/// configuration (`/v1`).
pub fn router(state: AppState) -> Router {
    let (api, doc) = api_parts();
    let api = api
        .merge(utoipa_swagger_ui::SwaggerUi::new("/api/docs").url("/api/openapi.json", doc))
        .layer(middleware::from_fn(extract::csrf_guard))
        .layer(middleware::from_fn_with_state(state.clone(), per_address_limit));
    let mut routes = Router::new()
        .merge(ops::routes())
        .merge(workers::routes())
        .merge(traefik::routes())
        .merge(push::receiver())
        .merge(api)
        .fallback(dashboard::serve);
    if state.config.single_machine {
        routes = routes.layer(middleware::from_fn(loopback_names_only));
    }
    with_edge(routes, state)
}

/// Every `/api` request counts against its client address (`ip_requests_per_minute`), signed
/// in or not; over it, 429 with `Retry-After`.
async fn per_address_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
    if let Some(peer) = peer
        && let Err(wait) = state.ip_limiter.check(crate::ratelimit::client_key(peer.ip()))
    {
        return ApiError::from(wait).into_response();
    }
    next.run(req).await
}

/// Single-machine mode (T38): a page on a foreign site can make the browser send requests to
/// 127.0.0.1 under the site's own name (DNS rebinding), and the password-less dev login would
/// answer them. So every request must name this machine by a loopback name or address, in
/// `Host` and, when present, in `Origin`.
async fn loopback_names_only(req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = req.headers().get(header::ORIGIN).map(|v| v.to_str().unwrap_or("null"));
    let origin_ok =
        origin.is_none_or(|o| o.split_once("://").is_some_and(|(_, rest)| is_loopback_name(rest)));
    if host.is_some_and(is_loopback_name) && origin_ok {
        return next.run(req).await;
    }
    ApiError::Forbidden(
        "single-machine mode answers only requests to this machine by a loopback name (localhost, *.localhost, 127.0.0.1, [::1]); open the address `wisehosting dev` printed".into(),
    )
    .into_response()
}

/// `localhost`, `*.localhost` or a loopback address, with or without a port.
fn is_loopback_name(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(h, _)| h),
        None => authority.rsplit_once(':').map_or(authority, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) { h } else { authority }
        }),
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// Wraps a router in the shared middleware and the JSON fallback for wrong methods; the
/// caller sets the fallback for unknown paths ([`not_found`], or the dashboard).
pub fn with_edge(routes: Router<AppState>, state: AppState) -> Router {
    let limit = state.config.api_server.body_limit_bytes;
    let timeout = Duration::from_secs(state.config.api_server.request_timeout_secs);
    routes
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(move |req, next| with_timeout(timeout, req, next)))
        .layer(middleware::from_fn_with_state(state.clone(), request_context))
        .layer(middleware::from_fn(move |mut req: Request, next: Next| {
            req.extensions_mut().insert(BodyLimit(limit));
            next.run(req)
        }))
        .layer(CatchPanicLayer::custom(|_| ApiError::Internal("a handler panicked".into()).into_response()))
        .with_state(state)
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; see the API documentation for the paths".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn with_timeout(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request id from the client if it is short and plain, else a fresh random one.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .filter(|v| v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .map(str::to_string)
        .unwrap_or_else(|| hex::encode(wisehosting_crypto::random_bytes::<8>()))
}

async fn request_context(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&req);
    let span = tracing::info_span!(
        "http",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %id,
    );
    let mut response = next.run(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state.metrics.record_http(status, elapsed);
    span.in_scope(|| tracing::debug!(status, elapsed_ms = elapsed.as_millis() as u64, "answered"));
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, value);
    }
    for (name, value) in SECURITY_HEADERS {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    }
    response
}

/// Headers on every answer. Static dashboard assets may relax `Cache-Control` themselves.
const SECURITY_HEADERS: [(HeaderName, &str); 7] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
    ),
    (header::STRICT_TRANSPORT_SECURITY, "max-age=63072000; includeSubDomains"),
    (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
    (HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::CACHE_CONTROL, "no-store"),
];

#[cfg(test)]
mod host_tests {
    use super::is_loopback_name;

    #[test]
    fn only_loopback_names_and_addresses_count_as_this_machine() {
        for ok in [
            "localhost",
            "localhost:8081",
            "app.localhost:8080",
            "127.0.0.1:8081",
            "127.9.9.9",
            "[::1]:8081",
            "[::ffff:127.0.0.1]",
            "LOCALHOST.",
        ] {
            assert!(is_loopback_name(ok), "{ok}");
        }
        for bad in [
            "attacker.example",
            "attacker.example:8081",
            "localhost.attacker.example",
            "10.0.0.1:8081",
            "[fd00::2]:8081",
            "",
            "evil.com:localhost",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_loopback_name(bad), "{bad}");
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Method, StatusCode};
    use axum::routing::post;
    use tower::ServiceExt;

    use super::*;

    /// A router with the real middleware and a JSON echo handler, on a lazy (never-used) pool.
    fn echo_app(body_limit: usize, timeout_secs: u64) -> Router {
        let mut config = crate::config::Config::default();
        config.api_server.body_limit_bytes = body_limit;
        config.api_server.request_timeout_secs = timeout_secs;
        let state = crate::startup::test_state(config);
        let routes = Router::new()
            .route("/echo", post(|ApiJson(v): ApiJson<serde_json::Value>| async move { axum::Json(v) }))
            .route(
                "/slow",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            );
        with_edge(routes.fallback(not_found), state)
    }

    async fn call(
        app: Router,
        method: Method,
        uri: &str,
        ctype: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(ctype) = ctype {
            req = req.header(header::CONTENT_TYPE, ctype);
        }
        let response = app.oneshot(req.body(Body::from(body)).expect("request")).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, headers, json)
    }

    #[tokio::test]
    async fn a_body_over_the_limit_gets_413_payload_too_large_as_json() {
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(2048));
        let (status, _, body) =
            call(echo_app(1024, 30), Method::POST, "/echo", Some("application/json"), big.into_bytes()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["code"], "payload_too_large");
        assert!(body["message"].as_str().unwrap_or_default().contains("1024"));
    }

    #[tokio::test]
    async fn malformed_json_wrong_content_type_and_unknown_paths_get_json_errors() {
        let (status, _, body) =
            call(echo_app(1024, 30), Method::POST, "/echo", Some("application/json"), b"{nope".to_vec())
                .await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_json")));
        let (status, _, body) =
            call(echo_app(1024, 30), Method::POST, "/echo", Some("text/plain"), b"{}".to_vec()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("unsupported_media_type"))
        );
        let (status, _, body) = call(echo_app(1024, 30), Method::GET, "/nowhere", None, vec![]).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
        let (status, _, body) = call(echo_app(1024, 30), Method::GET, "/echo", None, vec![]).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_timeout_gets_503_timeout() {
        let (status, _, body) = call(echo_app(1024, 1), Method::POST, "/slow", None, vec![]).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("timeout")));
    }

    #[tokio::test]
    async fn every_answer_carries_security_headers_and_a_request_id() {
        let (_, headers, _) = call(echo_app(1024, 30), Method::GET, "/nowhere", None, vec![]).await;
        let csp =
            headers.get(header::CONTENT_SECURITY_POLICY).and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
        assert!(headers.contains_key(header::STRICT_TRANSPORT_SECURITY));
        assert_eq!(headers.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()), Some("no-store"));
        assert_eq!(
            headers.get("cross-origin-opener-policy").and_then(|v| v.to_str().ok()),
            Some("same-origin")
        );
        assert_eq!(headers.get(REQUEST_ID).map(|v| v.len()), Some(16));
    }
}
