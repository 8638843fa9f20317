//! Push to deploy (SPEC §14.6): each app's push webhook — one URL per provider with an
//! unguessable id, one secret (sealed, rotatable), an auto-deploy switch — and the public
//! receiver `POST /v1/webhooks/:provider/:uuid`, which checks the provider's signature on the
//! raw body (constant time), refuses a delivery id seen before, and deploys exactly the pushed
//! commit when it is on the tracked branch. Every delivery lands in the app's delivery log
//! with what came of it: what users look at when a push seems to do nothing.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{OwnedApp, audit_user};
use super::{ApiError, ApiJson, ApiPath};
use crate::gitpush::{self, Provider, Said};
use crate::jobs::spec as job_spec;
use crate::ratelimit::client_key;
use crate::state::AppState;
use crate::store::audit::{self, AuditAction, AuditEvent};
use crate::store::{apps, deployments, jobs, push, users};

/// The app's push-webhook routes, under `/api` (documented).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_push_webhook, put_push_webhook))
        .routes(routes!(rotate_push_webhook))
        .routes(routes!(list_push_deliveries))
}

/// The public receiver (providers call it; it is not part of the user API's document).
pub fn receiver() -> axum::Router<AppState> {
    axum::Router::new().route("/v1/webhooks/{provider}/{uuid}", post(receive))
}

/// Where each provider sends pushes, and the secret they sign with.
#[derive(Debug, Serialize, ToSchema)]
struct WebhookUrls {
    github: String,
    gitlab: String,
    bitbucket: String,
    codeberg: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct Webhook {
    urls: WebhookUrls,
    /// GitHub, Codeberg/Gitea and Bitbucket sign with it (HMAC-SHA256); GitLab sends it as its
    /// token.
    secret: String,
    /// Whether a push to the app's branch deploys it.
    auto_deploy: bool,
}

/// The webhook as shown: URLs on `api_server.public_url`, or else on the address the user
/// reached this control plane at (single-machine mode, a test).
fn shown(state: &AppState, headers: &HeaderMap, hook: push::Hook) -> Webhook {
    let base = state.config.api_server.public_url.clone().unwrap_or_else(|| {
        let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok());
        let fallback = format!("{}:{}", state.config.api_server.host, state.config.api_server.port);
        format!("http://{}", host.unwrap_or(&fallback))
    });
    let base = base.trim_end_matches('/');
    let url = |p: Provider| format!("{base}/v1/webhooks/{}/{}", p.as_str(), hook.uuid);
    Webhook {
        urls: WebhookUrls {
            github: url(Provider::Github),
            gitlab: url(Provider::Gitlab),
            bitbucket: url(Provider::Bitbucket),
            codeberg: url(Provider::Codeberg),
        },
        secret: hook.secret,
        auto_deploy: hook.auto_deploy,
    }
}

fn no_webhook() -> ApiError {
    ApiError::NotFound(
        "this app has no push webhook yet (it predates them): POST /api/apps/{id}/webhook/rotate makes one"
            .into(),
    )
}

#[utoipa::path(get, path = "/api/apps/{id}/webhook", tag = "push", params(super::apps::AppId),
    responses((status = 200, description = "The app's push-webhook URLs and secret", body = Webhook)))]
async fn get_push_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedApp { app, .. }: OwnedApp,
) -> Result<Json<Webhook>, ApiError> {
    let hook = push::for_app(&state.db, &state.sealer, app.id).await?.ok_or_else(no_webhook)?;
    Ok(Json(shown(&state, &headers, hook)))
}

#[derive(Debug, Deserialize, ToSchema)]
struct WebhookSettings {
    auto_deploy: bool,
}

#[utoipa::path(put, path = "/api/apps/{id}/webhook", tag = "push", params(super::apps::AppId),
    request_body = WebhookSettings,
    responses((status = 200, description = "The push webhook, changed", body = Webhook)))]
async fn put_push_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedApp { user, app }: OwnedApp,
    ApiJson(settings): ApiJson<WebhookSettings>,
) -> Result<Json<Webhook>, ApiError> {
    let mut tx = state.db.begin().await?;
    if !push::set_auto_deploy(&mut *tx, app.id, settings.auto_deploy).await? {
        return Err(no_webhook());
    }
    let detail = json!({ "auto_deploy": settings.auto_deploy });
    audit_user(&mut *tx, &user, AuditAction::PushWebhookSet, "app", app.id, detail).await?;
    tx.commit().await?;
    let hook = push::for_app(&state.db, &state.sealer, app.id).await?.ok_or_else(no_webhook)?;
    Ok(Json(shown(&state, &headers, hook)))
}

#[utoipa::path(post, path = "/api/apps/{id}/webhook/rotate", tag = "push", params(super::apps::AppId),
    responses((status = 200, description = "A new secret (the URLs stay); the old one signs nothing from now on", body = Webhook)))]
async fn rotate_push_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedApp { user, app }: OwnedApp,
) -> Result<Json<Webhook>, ApiError> {
    let mut tx = state.db.begin().await?;
    push::create_or_rotate(&mut *tx, &state.sealer, app.id).await?;
    audit_user(&mut *tx, &user, AuditAction::PushWebhookRotate, "app", app.id, json!({})).await?;
    tx.commit().await?;
    let hook = push::for_app(&state.db, &state.sealer, app.id).await?.ok_or_else(no_webhook)?;
    Ok(Json(shown(&state, &headers, hook)))
}

#[utoipa::path(get, path = "/api/apps/{id}/webhook/deliveries", tag = "push", params(super::apps::AppId),
    responses((status = 200, description = "The newest 100 deliveries, verified or not, and what came of each", body = [push::PushDelivery])))]
async fn list_push_deliveries(
    State(state): State<AppState>,
    OwnedApp { app, .. }: OwnedApp,
) -> Result<Json<Vec<push::PushDelivery>>, ApiError> {
    Ok(Json(push::deliveries(&state.db, app.id, 100).await?))
}

#[derive(Debug, Deserialize)]
struct ReceiverPath {
    provider: String,
    uuid: String,
}

/// `POST /v1/webhooks/:provider/:uuid`.
async fn receive(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    ApiPath(p): ApiPath<ReceiverPath>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    state.push_limiter.check(client_key(peer.ip()))?;
    let unknown =
        || ApiError::NotFound("no such push webhook; copy the URL from the app's webhook settings".into());
    let provider = Provider::parse(&p.provider).map_err(|_| unknown())?;
    if p.uuid.len() != 32 || !p.uuid.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return Err(unknown());
    }
    let hook = push::by_uuid(&state.db, &state.sealer, &p.uuid).await?.ok_or_else(unknown)?;
    let event = gitpush::event(provider, &headers);
    let delivery_id = gitpush::delivery_id(provider, &headers);
    let mut delivery = push::NewDelivery {
        app_id: hook.app_id,
        provider: provider.as_str(),
        delivery_id: delivery_id.as_deref(),
        event: &event,
        verified: true,
        outcome: "",
    };
    let mut tx = state.db.begin().await?;
    if let Err(why) = gitpush::verify(provider, &headers, &body, &hook.secret) {
        let outcome = format!("refused: {why}");
        delivery.verified = false;
        delivery.outcome = &outcome;
        push::record(&mut tx, &delivery).await?;
        tx.commit().await?;
        return Err(ApiError::BadSignature(format!(
            "{why}; sign with the secret from the app's webhook settings (rotating it changes it)"
        )));
    }
    let Some(row) = push::record(&mut tx, &delivery).await? else {
        tx.commit().await?;
        return Ok(Json(json!({ "ignored": "duplicate" })).into_response());
    };
    let answer = act(&state, &mut tx, &hook, provider, gitpush::read(provider, &event, &body)).await?;
    let (outcome, deployment) = match &answer {
        Acted::Deployed(id) => ("deployed".to_string(), Some(*id)),
        Acted::Ignored(why) => (format!("ignored: {why}"), None),
    };
    push::set_outcome(&mut *tx, row, &outcome, deployment).await?;
    tx.commit().await?;
    Ok(match answer {
        Acted::Deployed(id) => (StatusCode::ACCEPTED, Json(json!({ "deployment_id": id }))).into_response(),
        Acted::Ignored(why) => Json(json!({ "ignored": why })).into_response(),
    })
}

enum Acted {
    Deployed(i64),
    Ignored(String),
}

/// What a verified delivery does: a deploy of the pushed commit when it is a push to the
/// tracked branch, auto-deploy is on, and the app may deploy; otherwise the reason.
async fn act(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    hook: &push::Hook,
    provider: Provider,
    said: Said,
) -> Result<Acted, ApiError> {
    let (branch, commit) = match said {
        Said::Ignored(why) => return Ok(Acted::Ignored(why)),
        Said::Push { branch, commit } => (branch, commit),
    };
    let app = apps::get_locked(&mut *tx, hook.app_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such app".into()))?;
    if branch.as_str() != app.branch {
        return Ok(Acted::Ignored(format!("a push to {branch}, not to the app's branch {}", app.branch)));
    }
    if !hook.auto_deploy {
        return Ok(Acted::Ignored("auto-deploy is off for this app".into()));
    }
    let plan = state.plans.get(&users::plan_of(&mut *tx, app.user_id).await?);
    // The checks every deploy of an app passes; a refusal is the delivery's outcome here.
    match super::apps::may_deploy(tx, app.user_id, plan, app.id).await {
        Err(ApiError::Conflict(why) | ApiError::PlanLimit(why)) => return Ok(Acted::Ignored(why)),
        other => other?,
    }
    // A linked account whose token the provider refuses: the push is recorded as not deployed.
    let credential = match super::apps::repo_credential(state, &app).await {
        Err(ApiError::GitLinkRejected(why) | ApiError::Conflict(why) | ApiError::Upstream(why)) => {
            return Ok(Acted::Ignored(why));
        }
        other => other?,
    };
    let deployment = deployments::insert(&mut *tx, app.id, branch.as_str(), Some(commit.as_str())).await?;
    let env = apps::load_env(&mut *tx, &state.sealer, app.id).await?;
    let spec = job_spec::deploy(&app, &deployment, &env, credential.as_ref(), plan)?;
    jobs::enqueue(tx, &state.sealer, app.id, Some(deployment.id), &spec).await?;
    apps::mark_deploying_if_never_ran(&mut *tx, app.id).await?;
    let actor = format!("push:{}", provider.as_str());
    audit::record(
        &mut *tx,
        AuditEvent {
            user_id: Some(app.user_id),
            actor: &actor,
            action: AuditAction::AppDeploy,
            target_type: Some("app"),
            target_id: Some(app.id.to_string()),
            ip: None,
            detail: json!({ "deployment": deployment.id, "commit": commit.as_str(), "via": provider.as_str() }),
        },
    )
    .await?;
    Ok(Acted::Deployed(deployment.id))
}
