//! The worker API (SPEC §4.1, §13): `POST /v1/workers/register`, `POST
//! /v1/workers/refresh-token`, `GET /v1/workers/ws`.
//!
//! Registration checks the fleet's join secret (`workers.join_secret`, never the master
//! secret) and the raw API key, both in constant time (the key by its sha256 look-up), and
//! answers the same 401 for either; it is rate-limited per IP and
//! audited. The WebSocket's JWT is checked before the 101: a refused upgrade answers 401 with
//! `Connection: close`, so the TCP connection ends with it.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use wisehosting_crypto::jwt::{sign_worker_token, verify_worker_token};
use wisehosting_crypto::wireguard::WgPublicKey;
use wisehosting_crypto::{Purpose, constant_time_eq};
use wisehosting_proto::{CONNECTION_HEADER, MAX_FRAME_BYTES};

use super::{ApiError, ApiJson};
use crate::hub::{ConnectionParams, serve_connection};
use crate::state::AppState;
use crate::store::audit::{self, AuditAction, AuditEvent};
use crate::store::workers::{self, Registration, WorkerAuth};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/workers/register", post(register))
        .route("/v1/workers/refresh-token", post(refresh))
        .route("/v1/workers/ws", get(connect))
}

#[derive(Debug, Deserialize)]
pub struct RegisterRequest {
    secret: String,
    api_key: String,
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    #[allow(dead_code)]
    zone: Option<String>,
    #[serde(default)]
    capacity: Capacity,
    #[serde(default)]
    wg_public_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Capacity {
    #[serde(default)]
    cpus: i32,
    #[serde(default)]
    memory_mb: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TokenResponse {
    pub worker_id: i64,
    pub token: String,
    pub token_expires_at: String,
    /// The worker's mesh address (`workers.wg_ip`), once it has one.
    pub wg_ip: Option<String>,
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

fn issue_token(state: &AppState, worker_id: i64, wg_ip: Option<String>) -> TokenResponse {
    let now = now_secs();
    let ttl = state.config.worker_token_ttl_secs as i64;
    let token = sign_worker_token(state.keys.key(Purpose::WorkerJwt), worker_id, now, ttl);
    let expires = Utc.timestamp_opt(now + ttl, 0).single().unwrap_or_else(Utc::now);
    TokenResponse {
        worker_id,
        token,
        token_expires_at: expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        wg_ip,
    }
}

/// Counts a refusal, audits it, and gives the one answer for every wrong credential.
async fn refuse(state: &AppState, ip: SocketAddr, action: AuditAction, reason: &str) -> ApiError {
    state.metrics.record_register_refusal();
    tracing::warn!(ip = %ip.ip(), %action, reason, "refused a worker credential");
    let actor = format!("ip:{}", ip.ip());
    let event = AuditEvent {
        user_id: None,
        actor: &actor,
        action,
        target_type: Some("worker"),
        target_id: None,
        ip: Some(ip.ip().to_string()),
        detail: json!({ "reason": reason }),
    };
    if let Err(e) = audit::record(&state.db, event).await {
        tracing::warn!(error = %e, "cannot audit a refused worker credential");
    }
    ApiError::Unauthorized
}

async fn register(
    State(state): State<AppState>,
    ConnectInfo(ip): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    state.worker_auth_limiter.check(crate::ratelimit::client_key(ip.ip()))?;
    // The join secret, not the master: a worker runs strangers' builds and must hold nothing
    // that opens sealed data or signs a JWT. An empty join secret admits no one.
    let join = &state.config.workers.join_secret;
    let secret_ok = !join.is_empty() && constant_time_eq(req.secret.as_bytes(), join.expose().as_bytes());
    // Look the key up even when the secret is wrong, so both failures take the same path.
    let worker = workers::find_by_key(&state.db, &req.api_key).await?;
    let worker = match (secret_ok, worker) {
        (true, Some(w)) if !w.is_disabled() => w,
        (false, _) => {
            return Err(refuse(&state, ip, AuditAction::WorkerRegisterRefused, "wrong shared secret").await);
        }
        (true, _) => {
            return Err(
                refuse(&state, ip, AuditAction::WorkerRegisterRefused, "unknown or disabled key").await
            );
        }
    };
    if req.name != worker.name {
        refuse(&state, ip, AuditAction::WorkerRegisterRefused, "name does not match the key").await;
        return Err(ApiError::Forbidden(format!(
            "this API key belongs to the worker named {}; register with that name",
            worker.name
        )));
    }
    let wg_public_key = req
        .wg_public_key
        .as_deref()
        .map(WgPublicKey::parse)
        .transpose()
        .map_err(|e| ApiError::invalid("wg_public_key", e.to_string()))?
        .map(|key| key.to_string());
    let reg = Registration {
        version: &req.version,
        cpus: req.capacity.cpus,
        memory_mb: req.capacity.memory_mb,
        wg_public_key: wg_public_key.as_deref(),
        single_machine: state.config.single_machine,
    };
    let mut tx = state.db.begin().await?;
    let wg_ip = workers::record_registration(&mut tx, worker.id, &reg).await?;
    if wg_ip.is_none() && wg_public_key.is_some() {
        tracing::warn!(worker = %worker.name, "the mesh 10.50.0.0/24 has no free address; delete workers that are gone");
    }
    let actor = format!("worker:{}", worker.name);
    audit::record(
        &mut *tx,
        AuditEvent {
            user_id: None,
            actor: &actor,
            action: AuditAction::WorkerRegistered,
            target_type: Some("worker"),
            target_id: Some(worker.id.to_string()),
            ip: Some(ip.ip().to_string()),
            detail: json!({ "version": req.version, "wg_ip": wg_ip }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(issue_token(&state, worker.id, wg_ip)))
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

async fn refresh(
    State(state): State<AppState>,
    ConnectInfo(ip): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<TokenResponse>, ApiError> {
    state.worker_auth_limiter.check(crate::ratelimit::client_key(ip.ip()))?;
    let Some(key) = bearer(&headers) else {
        return Err(refuse(&state, ip, AuditAction::WorkerRefreshRefused, "no bearer key").await);
    };
    match workers::find_by_key(&state.db, key).await? {
        Some(w) if !w.is_disabled() => Ok(Json(issue_token(&state, w.id, w.wg_ip))),
        _ => Err(refuse(&state, ip, AuditAction::WorkerRefreshRefused, "unknown or disabled key").await),
    }
}

/// A refused upgrade: 401 JSON and `Connection: close`.
fn refuse_upgrade(state: &AppState, reason: &str) -> Response {
    state.metrics.record_upgrade_refusal();
    tracing::warn!(reason, "refused a worker WebSocket upgrade");
    let mut response = ApiError::Unauthorized.into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

pub(super) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(WorkerAuth, i64), &'static str> {
    let token = bearer(headers).ok_or("no bearer token")?;
    let claims = verify_worker_token(state.keys.key(Purpose::WorkerJwt), token, now_secs())
        .map_err(|_| "invalid token")?;
    let worker_id = claims.worker_id().map_err(|_| "invalid subject")?;
    let worker = workers::find(&state.db, worker_id)
        .await
        .map_err(|_| "database unavailable")?
        .ok_or("unknown worker")?;
    if worker.is_disabled() {
        return Err("disabled worker");
    }
    Ok((worker, claims.exp))
}

async fn connect(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let (worker, token_exp) = match authenticate(&state, &headers).await {
        Ok(found) => found,
        Err(reason) => return refuse_upgrade(&state, reason),
    };
    let Ok(upgrade) = upgrade else {
        return ApiError::BadRequest("this endpoint only accepts a WebSocket upgrade".into()).into_response();
    };
    let mac_key = match worker.mac_key(&state.sealer) {
        Ok(key) => key,
        Err(e) => {
            return ApiError::Internal(format!("cannot open the MAC key of worker {}: {e}", worker.id))
                .into_response();
        }
    };
    let connection_id = hex::encode(wisehosting_crypto::random_bytes::<16>());
    let params = ConnectionParams {
        worker_id: worker.id,
        connection_id: connection_id.clone(),
        mac_key,
        token_exp,
        jwt_key: state.keys.key(Purpose::WorkerJwt).clone(),
    };
    let hub = state.hub.clone();
    let mut response = upgrade
        // Small buffers keep ten thousand idle connections cheap; the frame cap is the spec's
        // 2 MiB plus room for the envelope, so the receive check can name an oversize frame.
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_FRAME_BYTES * 2)
        .max_message_size(MAX_FRAME_BYTES + 64 * 1024)
        .max_frame_size(MAX_FRAME_BYTES + 64 * 1024)
        .on_upgrade(move |socket| {
            let tracked = hub.clone();
            tracked.track(serve_connection(hub, socket, params))
        });
    if let Ok(value) = HeaderValue::from_str(&connection_id) {
        response.headers_mut().insert(CONNECTION_HEADER, value);
    }
    response
}
