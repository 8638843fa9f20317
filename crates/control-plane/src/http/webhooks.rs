//! Outbound webhook endpoints of the signed-in user and their delivery log (SPEC §14.3).
//!
//! A URL is checked by the SSRF guard at creation (422 `url_not_allowed`) and again at every
//! send. The signing secret is shown once, in the creation answer; it is kept sealed.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiError;
use super::extract::{CurrentUser, audit_user};
use super::{ApiJson, ApiPath, ApiQuery};
use crate::observe::notify::EventType;
use crate::observe::webhooks::new_secret;
use crate::state::AppState;
use crate::store::audit::AuditAction;
use crate::store::webhooks::{self, Delivery, Endpoint};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(delete_webhook))
        .routes(routes!(enable_webhook))
        .routes(routes!(list_deliveries))
        .routes(routes!(redeliver_delivery))
}

/// Another user's endpoint or none: the same 404.
fn no_endpoint() -> ApiError {
    ApiError::NotFound("no such webhook endpoint".into())
}

#[derive(Debug, Deserialize, ToSchema)]
struct CreateRequest {
    /// Where deliveries are POSTed: `https://` (or `http://`) to a public address.
    url: String,
    /// Any of `alert.fired`, `alert.resolved`, `deployment.succeeded`, `deployment.failed`.
    events: Vec<String>,
}

/// The new endpoint, with its signing secret: shown this once, never again.
#[derive(Debug, Serialize, ToSchema)]
struct Created {
    id: i64,
    secret: String,
    url: String,
    events: Vec<String>,
}

#[utoipa::path(post, path = "/api/webhooks", tag = "webhooks", request_body = CreateRequest,
    responses((status = 201, description = "The endpoint and its secret (shown once)", body = Created)))]
async fn create_webhook(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(req): ApiJson<CreateRequest>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let all = || EventType::ALL.map(EventType::as_str).join(", ");
    if req.events.is_empty() {
        return Err(ApiError::invalid("events", format!("name at least one event: {}", all())));
    }
    let mut events: Vec<String> = Vec::new();
    for e in &req.events {
        let parsed = EventType::parse(e).ok_or_else(|| {
            ApiError::invalid("events", format!("{e:?} is not an event; use any of {}", all()))
        })?;
        if !events.iter().any(|x| x == parsed.as_str()) {
            events.push(parsed.as_str().to_string());
        }
    }
    let url = state.outbound.check(&req.url).await.map_err(|e| {
        if e.is_not_allowed() {
            ApiError::UrlNotAllowed(format!("{e}; webhooks go to public addresses only"))
        } else {
            ApiError::invalid("url", e.to_string())
        }
    })?;
    let secret = new_secret();
    let mut tx = state.db.begin().await?;
    let max = i64::from(state.config.outbound.max_endpoints_per_user);
    if webhooks::count_for_user(&mut *tx, user.id).await? >= max {
        return Err(ApiError::Conflict(format!(
            "you have {max} webhook endpoints, the most allowed; delete one first"
        )));
    }
    let endpoint =
        webhooks::create_endpoint(&mut tx, &state.sealer, user.id, url.as_str(), &events, &secret).await?;
    let details = json!({ "url": endpoint.url, "events": endpoint.events });
    audit_user(&mut *tx, &user, AuditAction::WebhookCreate, "webhook", endpoint.id, details).await?;
    tx.commit().await?;
    let created = Created { id: endpoint.id, secret, url: endpoint.url, events: endpoint.events };
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/api/webhooks", tag = "webhooks",
    responses((status = 200, description = "The user's endpoints (never their secrets)", body = [Endpoint])))]
async fn list_webhooks(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<Endpoint>>, ApiError> {
    Ok(Json(webhooks::list_endpoints(&state.db, user.id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct EndpointPath {
    /// The endpoint's id.
    id: i64,
}

#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "webhooks", params(EndpointPath),
    responses((status = 204, description = "The endpoint and its deliveries are gone")))]
async fn delete_webhook(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(path): ApiPath<EndpointPath>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin().await?;
    if !webhooks::delete_endpoint(&mut *tx, user.id, path.id).await? {
        return Err(no_endpoint());
    }
    audit_user(&mut *tx, &user, AuditAction::WebhookDelete, "webhook", path.id, json!({})).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Turns an endpoint back on after the platform turned it off; its queued deliveries go out.
#[utoipa::path(post, path = "/api/webhooks/{id}/enable", tag = "webhooks", params(EndpointPath),
    responses((status = 200, description = "The endpoint", body = Endpoint)))]
async fn enable_webhook(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(path): ApiPath<EndpointPath>,
) -> Result<Json<Endpoint>, ApiError> {
    let mut tx = state.db.begin().await?;
    let endpoint = webhooks::enable_endpoint(&mut *tx, user.id, path.id).await?.ok_or_else(no_endpoint)?;
    audit_user(&mut *tx, &user, AuditAction::WebhookEnable, "webhook", path.id, json!({})).await?;
    tx.commit().await?;
    Ok(Json(endpoint))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveryQuery {
    /// Only deliveries older than this id (the next page).
    before: Option<i64>,
    /// How many (default 50, at most 200).
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "webhooks", params(EndpointPath, DeliveryQuery),
    responses((status = 200, description = "The endpoint's deliveries, newest first", body = [Delivery])))]
async fn list_deliveries(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(path): ApiPath<EndpointPath>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    webhooks::get_endpoint(&state.db, user.id, path.id).await?.ok_or_else(no_endpoint)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    Ok(Json(webhooks::list_deliveries(&state.db, path.id, q.before, limit).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct DeliveryPath {
    /// The endpoint's id.
    id: i64,
    /// The delivery's id.
    did: i64,
}

/// Sends a delivery again (same id and body, a fresh signature), whatever became of it.
#[utoipa::path(post, path = "/api/webhooks/{id}/deliveries/{did}/redeliver", tag = "webhooks", params(DeliveryPath),
    responses((status = 202, description = "Queued again", body = Delivery)))]
async fn redeliver_delivery(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(path): ApiPath<DeliveryPath>,
) -> Result<(StatusCode, Json<Delivery>), ApiError> {
    let mut tx = state.db.begin().await?;
    webhooks::get_endpoint(&mut *tx, user.id, path.id).await?.ok_or_else(no_endpoint)?;
    let delivery = webhooks::redeliver(&mut *tx, path.id, path.did)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such delivery of this endpoint".into()))?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(delivery)))
}
