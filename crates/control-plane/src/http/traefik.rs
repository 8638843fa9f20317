//! Traefik dynamic configuration (SPEC §7): `GET /v1/traefik/config?worker_id=N` for a
//! worker's edge router (worker JWT; a worker reads only its own) and
//! `GET /v1/traefik/proxy-config` for a central proxy (`Bearer <proxy.token>`, compared in
//! constant time; an empty token disables it). Both answer with an `ETag` and `304` to a
//! matching `If-None-Match`, so an unchanged table costs one query and no body.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use wisehosting_crypto::{constant_time_eq, sha256_hex};

use super::error::ApiError;
use super::workers::{authenticate, bearer};
use crate::state::AppState;
use crate::store::routes::{self, RouteRow};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/traefik/config", get(worker_config))
        .route("/v1/traefik/proxy-config", get(proxy_config))
}

#[derive(Debug, Deserialize)]
struct WorkerQuery {
    worker_id: i64,
}

async fn worker_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<WorkerQuery>,
) -> Result<Response, ApiError> {
    let (worker, _) = authenticate(&state, &headers).await.map_err(|_| ApiError::Unauthorized)?;
    if worker.id != query.worker_id {
        return Err(ApiError::Forbidden("a worker may read only its own routes".into()));
    }
    let rows = routes::list(&state.db, Some(worker.id)).await?;
    // The edge router runs beside the app: the published port on the worker's loopback.
    let upstream = |r: &RouteRow| Some(format!("http://127.0.0.1:{}", r.host_port.unwrap_or_default()));
    Ok(render(&state, &headers, &rows, "", upstream))
}

async fn proxy_config(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let expected = state.config.proxy.token.expose().as_bytes();
    let presented = bearer(&headers).map(str::as_bytes).unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(presented, expected) {
        return Err(ApiError::Unauthorized);
    }
    let rows = routes::list(&state.db, None).await?;
    // Only apps whose worker has a mesh address can be reached from the proxy.
    let upstream = |r: &RouteRow| {
        let ip = r.wg_ip.as_deref()?;
        Some(format!("http://{ip}:{}", r.host_port.unwrap_or_default()))
    };
    Ok(render(&state, &headers, &rows, &state.config.proxy.cert_resolver, upstream))
}

fn render(
    state: &AppState,
    headers: &HeaderMap,
    rows: &[RouteRow],
    cert_resolver: &str,
    upstream: impl Fn(&RouteRow) -> Option<String>,
) -> Response {
    let body = crate::routing::traefik_config(rows, &state.config.subdomain_base, cert_resolver, upstream)
        .to_string();
    let etag = format!("\"{}\"", &sha256_hex(body.as_bytes())[..32]);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == etag || t.trim() == "*"));
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}
