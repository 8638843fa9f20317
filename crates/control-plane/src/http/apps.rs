//! Apps and deployments (issue 4's REST API). Every route takes the signed-in user and only
//! ever finds that user's rows: another user's id answers 404 (T08). Changes that start work
//! enqueue a job in the same transaction, with an audit row.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::ApiJson;
use super::extract::{CurrentUser, OwnedApp, audit_user};
use crate::domain::{
    AppSlug, Branch, CommitSha, DockerfilePath, EnvKey, Framework, GitToken, RepoUrl, parse_port,
};
use crate::hub::Outgoing;
use crate::jobs::spec::{self as job_spec, AppJob};
use crate::plans;
use crate::state::AppState;
use crate::store::apps::{self, App, NewApp};
use crate::store::audit::AuditAction;
use crate::store::deployments::{self, Deployment, Ending};
use crate::store::jobs;
use crate::store::users;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/deploy", post(deploy))
        .route("/api/plans", get(list_plans))
        .route("/api/apps", get(list_apps))
        .route("/api/apps/{id}", get(get_app).delete(delete_app))
        .route("/api/apps/{id}/deployments", get(list_deployments).post(redeploy))
        .route("/api/apps/{id}/restart", post(|s, a| lifecycle(s, a, Lifecycle::Restart)))
        .route("/api/apps/{id}/stop", post(|s, a| lifecycle(s, a, Lifecycle::Stop)))
        .route("/api/apps/{id}/start", post(|s, a| lifecycle(s, a, Lifecycle::Start)))
        .route("/api/apps/{id}/env", get(get_env).put(put_env))
        .route("/api/apps/{id}/git-token", put(put_git_token))
        .route("/api/apps/{id}/logs", get(tail_logs))
        .route("/api/apps/{id}/logs/stream", get(stream_logs))
        .route("/api/deployments/{id}", get(get_deployment))
        .route("/api/deployments/{id}/log", get(deployment_log))
        .route("/api/deployments/{id}/cancel", post(cancel_deployment))
}

#[derive(Debug, Deserialize)]
struct DeployRequest {
    name: String,
    repo_url: String,
    #[serde(default = "default_branch")]
    branch: String,
    #[serde(default = "default_framework")]
    framework: String,
    #[serde(default)]
    dockerfile_path: Option<String>,
    #[serde(default = "default_port")]
    port: i64,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// A token for a private repository; write-only (sealed at rest, never shown again).
    #[serde(default)]
    git_token: Option<wisehosting_crypto::Secret>,
}

fn default_branch() -> String {
    "main".into()
}
fn default_framework() -> String {
    "dockerfile".into()
}
fn default_port() -> i64 {
    8080
}

/// The largest env value accepted.
const MAX_ENV_VALUE: usize = 32 * 1024;
const MAX_ENV_VARS: usize = 200;

fn parse_env(env: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ApiError> {
    if env.len() > MAX_ENV_VARS {
        return Err(ApiError::invalid("env", format!("at most {MAX_ENV_VARS} variables")));
    }
    for (key, value) in &env {
        EnvKey::parse(key)?;
        if value.len() > MAX_ENV_VALUE || value.contains('\0') || value.contains('\n') {
            return Err(ApiError::invalid(
                "env",
                format!("the value of {key} must be one line of at most 32 KiB"),
            ));
        }
    }
    Ok(env)
}

async fn deploy(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(req): ApiJson<DeployRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let slug = AppSlug::from_name(&req.name)?;
    let repo = RepoUrl::parse(&req.repo_url, state.config.single_machine)?;
    let branch = Branch::parse(&req.branch)?;
    let framework = Framework::parse(&req.framework)?;
    let dockerfile = req.dockerfile_path.as_deref().map(DockerfilePath::parse).transpose()?;
    let port = parse_port(req.port)?;
    let env = parse_env(req.env)?;
    let git_token =
        req.git_token.as_ref().filter(|t| !t.is_empty()).map(|t| GitToken::parse(t.expose())).transpose()?;
    let plan = state.plans.get(&user.plan);
    let mut tx = state.db.begin().await?;
    if apps::count_for_user_locked(&mut tx, user.id).await? >= plan.max_apps {
        return Err(ApiError::PlanLimit(format!(
            "the {} plan allows {} apps (limit `apps`); delete one first",
            plan.name, plan.max_apps
        )));
    }
    check_deploys_per_day(&mut tx, user.id, plan).await?;
    let app = apps::insert(
        &mut *tx,
        &NewApp {
            user_id: user.id,
            slug: slug.as_str(),
            name: req.name.trim(),
            repo_url: repo.as_str(),
            branch: branch.as_str(),
            framework: framework.as_str(),
            dockerfile_path: dockerfile.as_ref().map(DockerfilePath::as_str),
            port,
        },
    )
    .await?;
    apps::replace_env(&mut tx, &state.sealer, app.id, &env).await?;
    let token = git_token.as_ref().map(GitToken::expose);
    apps::set_git_token(&mut *tx, &state.sealer, app.id, token).await?;
    let app = App { has_git_token: token.is_some(), ..app };
    let deployment = deployments::insert(&mut *tx, app.id, branch.as_str(), None).await?;
    queue_deploy(&mut tx, &state, &user, &app, &deployment, &env, token).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(json!({ "app": app, "deployment": deployment }))))
}

/// Refuses a deploy over the plan's deploys in the last 24 hours. The caller holds the user's
/// row lock, so parallel deploys cannot pass the limit together.
async fn check_deploys_per_day(
    tx: &mut sqlx::PgConnection,
    user_id: i64,
    plan: &plans::Plan,
) -> Result<(), ApiError> {
    if deployments::count_for_user_last_day(tx, user_id).await? >= plan.deploys_per_day {
        return Err(ApiError::PlanLimit(format!(
            "the {} plan allows {} deploys a day (limit `deploys_per_day`); try again later",
            plan.name, plan.deploys_per_day
        )));
    }
    Ok(())
}

/// Queues the deploy job of `deployment`, with its audit row, in the caller's transaction.
async fn queue_deploy(
    tx: &mut sqlx::PgConnection,
    state: &AppState,
    user: &CurrentUser,
    app: &App,
    deployment: &Deployment,
    env: &BTreeMap<String, String>,
    git_token: Option<&str>,
) -> Result<(), ApiError> {
    let spec = job_spec::deploy(app, deployment, env, git_token, state.plans.get(&user.plan))?;
    jobs::enqueue(tx, &state.sealer, app.id, Some(deployment.id), &spec).await?;
    let detail = json!({ "deployment": deployment.id });
    audit_user(&mut *tx, user, AuditAction::AppDeploy, "app", app.id, detail).await?;
    Ok(())
}

/// Every plan and its limits; public (the plans page reads it signed out).
async fn list_plans(State(state): State<AppState>) -> Json<Vec<plans::PlanView>> {
    Json(state.plans.all().iter().map(plans::Plan::view).collect())
}

async fn list_apps(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Vec<App>>, ApiError> {
    Ok(Json(apps::list_for_user(&state.db, user.id).await?))
}

async fn get_app(OwnedApp { app, .. }: OwnedApp) -> Result<Json<App>, ApiError> {
    Ok(Json(app))
}

#[derive(Debug, Default, Deserialize)]
struct RedeployRequest {
    branch: Option<String>,
    commit: Option<String>,
}

async fn redeploy(
    State(state): State<AppState>,
    OwnedApp { user, app }: OwnedApp,
    ApiJson(req): ApiJson<RedeployRequest>,
) -> Result<(StatusCode, Json<Deployment>), ApiError> {
    let branch = Branch::parse(req.branch.as_deref().unwrap_or(&app.branch))?;
    let commit = req.commit.as_deref().map(CommitSha::parse).transpose()?;
    let mut tx = state.db.begin().await?;
    users::lock(&mut tx, user.id).await?;
    check_deploys_per_day(&mut tx, user.id, state.plans.get(&user.plan)).await?;
    let deployment =
        deployments::insert(&mut *tx, app.id, branch.as_str(), commit.as_ref().map(CommitSha::as_str))
            .await?;
    let env = apps::load_env(&mut *tx, &state.sealer, app.id).await?;
    let token = apps::load_git_token(&mut *tx, &state.sealer, app.id).await?;
    queue_deploy(&mut tx, &state, &user, &app, &deployment, &env, token.as_deref()).await?;
    apps::mark_deploying_if_never_ran(&mut *tx, app.id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(deployment)))
}

#[derive(Debug, Deserialize)]
struct GitTokenRequest {
    /// The new token, or null to remove it.
    token: Option<wisehosting_crypto::Secret>,
}

/// Sets or removes the app's repository token; takes effect on the next deploy. Audited
/// without the value.
async fn put_git_token(
    State(state): State<AppState>,
    OwnedApp { user, app }: OwnedApp,
    ApiJson(req): ApiJson<GitTokenRequest>,
) -> Result<Json<Value>, ApiError> {
    let token =
        req.token.as_ref().filter(|t| !t.is_empty()).map(|t| GitToken::parse(t.expose())).transpose()?;
    let mut tx = state.db.begin().await?;
    apps::set_git_token(&mut *tx, &state.sealer, app.id, token.as_ref().map(GitToken::expose)).await?;
    let action = if token.is_some() { AuditAction::AppGitTokenSet } else { AuditAction::AppGitTokenRemove };
    audit_user(&mut *tx, &user, action, "app", app.id, json!({})).await?;
    tx.commit().await?;
    Ok(Json(json!({ "has_git_token": token.is_some() })))
}

async fn list_deployments(
    State(state): State<AppState>,
    OwnedApp { app, .. }: OwnedApp,
) -> Result<Json<Vec<Deployment>>, ApiError> {
    Ok(Json(deployments::for_app(&state.db, app.id).await?))
}

async fn own_deployment(state: &AppState, user: &CurrentUser, id: i64) -> Result<Deployment, ApiError> {
    deployments::for_user(&state.db, user.id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such deployment".into()))
}

async fn get_deployment(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Json<Deployment>, ApiError> {
    Ok(Json(own_deployment(&state, &user, id).await?))
}

async fn deployment_log(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let deployment = own_deployment(&state, &user, id).await?;
    let log = deployments::build_log(&state.db, deployment.id).await?;
    Ok(Json(json!({ "deployment_id": deployment.id, "log": log })))
}

async fn cancel_deployment(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Json<Deployment>, ApiError> {
    let deployment = own_deployment(&state, &user, id).await?;
    if deployment.status.is_final() {
        return Err(ApiError::Conflict(format!(
            "the deployment is already {}; nothing to cancel",
            deployment.status
        )));
    }
    let mut tx = state.db.begin().await?;
    let lease = jobs::cancel_for_deployment(&mut tx, deployment.id).await?;
    deployments::end(&mut tx, deployment.id, Ending::Cancelled, "cancelled by the user").await?;
    audit_user(&mut *tx, &user, AuditAction::DeploymentCancel, "deployment", deployment.id, json!({}))
        .await?;
    tx.commit().await?;
    if let Some(jobs::CancelledLease { job_id, attempt, worker_id }) = lease {
        let _ = state
            .hub
            .send(worker_id, Outgoing::of(&wisehosting_proto::messages::JobCancel { job_id, attempt }));
    }
    Ok(Json(own_deployment(&state, &user, id).await?))
}

/// What a running app can be asked to do.
#[derive(Debug, Clone, Copy)]
enum Lifecycle {
    Restart,
    Stop,
    Start,
}

async fn lifecycle(
    State(state): State<AppState>,
    OwnedApp { user, app }: OwnedApp,
    kind: Lifecycle,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Some(current) = app.current_deployment_id else {
        return Err(ApiError::Conflict("the app has no running version yet; deploy it first".into()));
    };
    let mut tx = state.db.begin().await?;
    let (spec, action) = match kind {
        Lifecycle::Restart => {
            let env = apps::load_env(&mut *tx, &state.sealer, app.id).await?;
            (job_spec::restart(&app, current, &env, state.plans.get(&user.plan))?, AuditAction::AppRestart)
        }
        Lifecycle::Stop => (job_spec::for_app(AppJob::Stop, &app)?, AuditAction::AppStop),
        Lifecycle::Start => (job_spec::for_app(AppJob::Start, &app)?, AuditAction::AppStart),
    };
    let job = jobs::enqueue(&mut tx, &state.sealer, app.id, Some(current), &spec).await?;
    audit_user(&mut *tx, &user, action, "app", app.id, json!({ "job": job })).await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "job_id": job }))))
}

async fn delete_app(
    State(state): State<AppState>,
    OwnedApp { user, app }: OwnedApp,
) -> Result<StatusCode, ApiError> {
    super::domains::forget_cloudflare_hostnames(&state, app.id).await;
    let mut tx = state.db.begin().await?;
    audit_user(&mut *tx, &user, AuditAction::AppDelete, "app", app.id, json!({ "slug": app.slug })).await?;
    if app.worker_id.is_none() {
        // Never placed: nothing runs anywhere.
        apps::delete(&mut *tx, app.id).await?;
    } else {
        jobs::cancel_queued_for_app(&mut tx, app.id, "the app was deleted").await?;
        apps::mark_deleting(&mut *tx, app.id).await?;
        let spec = job_spec::for_app(AppJob::Remove, &app)?;
        jobs::enqueue(&mut tx, &state.sealer, app.id, None, &spec).await?;
    }
    tx.commit().await?;
    state.logbus.forget(app.id);
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Default, Deserialize)]
struct EnvQuery {
    #[serde(default)]
    reveal: bool,
}

async fn get_env(
    State(state): State<AppState>,
    OwnedApp { user, app }: OwnedApp,
    Query(q): Query<EnvQuery>,
) -> Result<Json<Value>, ApiError> {
    let env = apps::load_env(&state.db, &state.sealer, app.id).await?;
    if q.reveal {
        audit_user(&state.db, &user, AuditAction::EnvReveal, "app", app.id, json!({})).await?;
        return Ok(Json(json!({ "env": env })));
    }
    let masked: BTreeMap<&String, &str> = env.keys().map(|k| (k, "********")).collect();
    Ok(Json(json!({ "env": masked })))
}

async fn put_env(
    State(state): State<AppState>,
    OwnedApp { user, app }: OwnedApp,
    ApiJson(body): ApiJson<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let env = parse_env(body)?;
    let mut tx = state.db.begin().await?;
    apps::replace_env(&mut tx, &state.sealer, app.id, &env).await?;
    let names: Vec<&String> = env.keys().collect();
    audit_user(&mut *tx, &user, AuditAction::EnvWrite, "app", app.id, json!({ "names": names })).await?;
    tx.commit().await?;
    Ok(Json(json!({ "names": names, "applies": "on the next deploy or restart" })))
}

#[derive(Debug, Deserialize)]
struct TailQuery {
    tail: Option<usize>,
}

async fn tail_logs(
    State(state): State<AppState>,
    OwnedApp { app, .. }: OwnedApp,
    Query(q): Query<TailQuery>,
) -> Result<Json<Value>, ApiError> {
    let lines = state.logbus.tail(app.id, q.tail.unwrap_or(100).min(crate::logbus::RING));
    Ok(Json(json!({ "lines": lines })))
}

async fn stream_logs(
    State(state): State<AppState>,
    OwnedApp { user, app }: OwnedApp,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    use tokio::sync::broadcast::error::RecvError;
    let slot = state
        .logbus
        .open_stream(user.id, MAX_LOG_STREAMS_PER_USER)
        .ok_or(ApiError::TooManyStreams { limit: MAX_LOG_STREAMS_PER_USER })?;
    let mut recheck = tokio::time::interval(LOG_STREAM_RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let live = LiveLog {
        rx: state.logbus.subscribe(app.id),
        recheck,
        db: state.db.clone(),
        credential: user.credential,
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(live, |mut live| async move {
        loop {
            tokio::select! {
                _ = live.recheck.tick() => {
                    // Logged out, revoked, expired or disabled (or the database away): end.
                    if !super::extract::still_live(&live.db, &live.credential).await.unwrap_or(false) {
                        return None;
                    }
                }
                line = live.rx.recv() => match line {
                    Ok(line) => {
                        let event = Event::default().event(line.stream).json_data(&line).unwrap_or_default();
                        return Some((Ok(event), live));
                    }
                    // This client fell behind: skip ahead.
                    Err(RecvError::Lagged(_)) => continue,
                    // The app was deleted.
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Live log streams one user may hold open at once.
pub const MAX_LOG_STREAMS_PER_USER: usize = 10;
/// How often a live log stream checks that its session or token still holds.
const LOG_STREAM_RECHECK: Duration = Duration::from_secs(2);

/// One live log stream: its app's channel, the session it re-checks, its slot in the
/// user's count (freed when the stream is dropped).
struct LiveLog {
    rx: tokio::sync::broadcast::Receiver<crate::logbus::LogLine>,
    recheck: tokio::time::Interval,
    db: sqlx::PgPool,
    credential: super::extract::Credential,
    _slot: crate::logbus::StreamSlot,
}
