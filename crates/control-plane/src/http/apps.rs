//! Apps and deployments (issue 4's REST API). Every route takes the signed-in user and only
//! ever finds that user's rows: another user's id answers 404 (T08). Changes that start work
//! enqueue a job in the same transaction, with an audit row.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiError;
use super::extract::{CurrentUser, OwnedApp, audit_user};
use super::{ApiJson, ApiPath, ApiQuery};
use crate::domain::{
    AppSlug, Branch, CommitSha, DeploymentStatus, DockerfilePath, EnvKey, Framework, GitToken, RepoUrl,
    parse_port,
};
use crate::hub::Outgoing;
use crate::jobs::spec::{self as job_spec, AppJob, RepoCredential};
use crate::plans;
use crate::state::AppState;
use crate::store::apps::{self, App, NewApp};
use crate::store::audit::AuditAction;
use crate::store::deployments::{self, Deployment, Ending};
use crate::store::jobs;
use crate::store::users;
use wisehosting_proto::job::{GitProvider, HealthCheck, HealthPath};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(deploy))
        .routes(routes!(list_plans))
        .routes(routes!(list_apps))
        .routes(routes!(get_app, delete_app))
        .routes(routes!(list_deployments, redeploy))
        .routes(routes!(restart))
        .routes(routes!(stop))
        .routes(routes!(start))
        .routes(routes!(get_env, put_env))
        .routes(routes!(put_git_token))
        .routes(routes!(tail_logs))
        .routes(routes!(stream_logs))
        .routes(routes!(get_deployment))
        .routes(routes!(deployment_log))
        .routes(routes!(cancel_deployment))
        .routes(routes!(rollback))
        .routes(routes!(put_health_check))
        .routes(routes!(put_https))
}

/// A new app and its first deployment.
#[derive(Debug, Deserialize, ToSchema)]
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
    #[schema(value_type = Option<String>)]
    git_token: Option<wisehosting_crypto::Secret>,
    /// Clone with the linked account of this provider (`github`, `gitlab`, `bitbucket`,
    /// `codeberg`) instead of a `git_token`; the token is refreshed as needed.
    #[serde(default)]
    git_provider: Option<String>,
    /// With `git_provider`: register the app's push webhook on the repository (default true).
    #[serde(default)]
    register_webhook: Option<bool>,
    /// The path a new version must answer before traffic moves to it (default `/`: anything
    /// below 500; another path: 2xx or 3xx).
    #[serde(default)]
    health_check_path: Option<String>,
    /// Seconds a new version has to answer (1 to 600; default the worker's, 60).
    #[serde(default)]
    health_check_timeout_secs: Option<i64>,
}

/// A health check from the request's fields, checked.
fn parse_health(
    path: Option<&str>,
    timeout_secs: Option<i64>,
) -> Result<(HealthPath, Option<u32>), ApiError> {
    let path = path.map(HealthPath::parse).transpose()?.unwrap_or_else(HealthPath::root);
    let max = i64::from(HealthCheck::MAX_TIMEOUT_SECS);
    let timeout = timeout_secs
        .map(|t| {
            u32::try_from(t).ok().filter(|t| (1..=HealthCheck::MAX_TIMEOUT_SECS).contains(t)).ok_or_else(
                || {
                    ApiError::invalid(
                        "health_check_timeout_secs",
                        format!("give 1 to {max} seconds, or leave it out for 60"),
                    )
                },
            )
        })
        .transpose()?;
    Ok((path, timeout))
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

#[utoipa::path(post, path = "/api/deploy", tag = "apps", request_body = DeployRequest,
    responses((status = 201, description = "The app is created and its first deployment queued", body = Deployed)))]
async fn deploy(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(req): ApiJson<DeployRequest>,
) -> Result<(StatusCode, Json<Deployed>), ApiError> {
    let slug = AppSlug::from_name(&req.name)?;
    let repo = RepoUrl::parse(&req.repo_url, state.config.single_machine)?;
    let branch = Branch::parse(&req.branch)?;
    let framework = Framework::parse(&req.framework)?;
    let dockerfile = req.dockerfile_path.as_deref().map(DockerfilePath::parse).transpose()?;
    let port = parse_port(req.port)?;
    let env = parse_env(req.env)?;
    let (health_path, health_timeout) =
        parse_health(req.health_check_path.as_deref(), req.health_check_timeout_secs)?;
    let git_token =
        req.git_token.as_ref().filter(|t| !t.is_empty()).map(|t| GitToken::parse(t.expose())).transpose()?;
    let git_provider =
        req.git_provider.as_deref().filter(|p| !p.is_empty()).map(GitProvider::parse).transpose()?;
    let credential = match (git_provider, &git_token) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("git_provider", "give a git_provider or a git_token, not both"));
        }
        (Some(provider), None) => Some(linked_credential(&state, user.id, provider).await.map_err(|e| {
            if e.is_missing_link() { ApiError::invalid("git_provider", e.to_string()) } else { e.into() }
        })?),
        (None, token) => {
            token.as_ref().map(|t| RepoCredential { token: t.expose().to_string(), provider: None })
        }
    };
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
            health_check_path: health_path.as_str(),
            health_check_timeout_secs: health_timeout,
            git_provider: git_provider.map(GitProvider::as_str),
        },
    )
    .await?;
    crate::store::alerts::insert_default_rules(&mut *tx, app.id).await?;
    crate::store::push::create_or_rotate(&mut *tx, &state.sealer, app.id).await?;
    apps::replace_env(&mut tx, &state.sealer, app.id, &env).await?;
    let token = git_token.as_ref().map(GitToken::expose);
    apps::set_git_token(&mut *tx, &state.sealer, app.id, token).await?;
    let app = App { has_git_token: token.is_some(), ..app };
    let deployment = deployments::insert(&mut *tx, app.id, branch.as_str(), None).await?;
    queue_deploy(&mut tx, &state, &user, &app, &deployment, &env, credential.as_ref()).await?;
    tx.commit().await?;
    let webhook = match (&credential, req.register_webhook.unwrap_or(true)) {
        (Some(RepoCredential { token, provider: Some(provider) }), true) => {
            Some(register_webhook(&state, &user, &app, *provider, token).await)
        }
        _ => None,
    };
    Ok((StatusCode::CREATED, Json(Deployed { app, deployment, webhook })))
}

/// Registers the app's push webhook on its repository at `provider`; what came of it, for
/// people (a failure does not undo the app: the webhook can be added by hand).
async fn register_webhook(
    state: &AppState,
    user: &CurrentUser,
    app: &App,
    provider: GitProvider,
    token: &str,
) -> String {
    let outcome = async {
        let client = state.git_links.get(provider).map_err(|e| e.to_string())?;
        // The account's own name for the repository, from its listing (which also shows the
        // account reaches it); else the URL's path.
        let listed = client.repos(token).await.map_err(|e| e.to_string())?;
        let full_name = listed
            .into_iter()
            .find(|r| r.clone_url.trim_end_matches(".git") == app.repo_url.trim_end_matches(".git"))
            .map(|r| r.full_name)
            .or_else(|| repo_full_name(&app.repo_url))
            .ok_or_else(|| {
                "the repository is not among the account's, and its URL names no owner/name".to_string()
            })?;
        let hook = crate::store::push::for_app(&state.db, &state.sealer, app.id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "the app has no push webhook".to_string())?;
        let base = state.config.api_server.public_url.as_deref().unwrap_or_default().trim_end_matches('/');
        let url = format!("{base}/v1/webhooks/{provider}/{}", hook.uuid);
        client.register_hook(token, &full_name, &url, &hook.secret).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(full_name)
    }
    .await;
    match outcome {
        Ok(full_name) => {
            let detail = json!({ "provider": provider.as_str(), "repository": full_name });
            if let Err(e) =
                audit_user(&state.db, user, AuditAction::GitHookRegistered, "app", app.id, detail).await
            {
                tracing::warn!(app_id = app.id, error = %e, "cannot audit a webhook registration");
            }
            format!("registered on {provider} for {full_name}")
        }
        Err(why) => format!("not registered on {provider}: {why}; add it by hand from the app's settings"),
    }
}

/// `owner/name` (GitLab: `group/…/name`) of an `https://host/owner/name(.git)` URL, each
/// segment as providers allow.
fn repo_full_name(url: &str) -> Option<String> {
    let path = url.strip_prefix("https://")?.split_once('/')?.1;
    let path = path.trim_end_matches('/').trim_end_matches(".git");
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() < 2 || segments.iter().any(|s| super::git::repo_segment(s).is_err()) {
        return None;
    }
    Some(segments.join("/"))
}

/// The owner's linked account at `provider` as a deploy's credential (its token fresh).
async fn linked_credential(
    state: &AppState,
    user_id: i64,
    provider: GitProvider,
) -> Result<RepoCredential, crate::gitlink::LinkError> {
    let token = state.git_links.token(&state.db, &state.sealer, user_id, provider).await?;
    Ok(RepoCredential { token, provider: Some(provider) })
}

/// The token the app's deploys clone with: its own, or its owner's linked account's (fresh).
pub(crate) async fn repo_credential(state: &AppState, app: &App) -> Result<Option<RepoCredential>, ApiError> {
    if let Some(name) = app.git_provider.as_deref() {
        let provider = GitProvider::parse(name).map_err(|_| {
            ApiError::Internal(format!("app {} has an unknown git_provider {name:?}", app.id))
        })?;
        // The app clones with a link its owner removed: theirs to fix, not a missing thing.
        return linked_credential(state, app.user_id, provider).await.map(Some).map_err(|e| {
            if e.is_missing_link() {
                ApiError::Conflict(format!(
                    "{e}; the app clones with it (or give the app a token of its own with PUT /api/apps/{}/git-token)",
                    app.id
                ))
            } else {
                e.into()
            }
        });
    }
    let token = apps::load_git_token(&state.db, &state.sealer, app.id).await?;
    Ok(token.map(|token| RepoCredential { token, provider: None }))
}

/// An app created and its first deployment queued.
#[derive(Debug, Serialize, ToSchema)]
struct Deployed {
    app: App,
    deployment: Deployment,
    /// With `git_provider`: whether the push webhook was registered on the repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook: Option<String>,
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
    credential: Option<&RepoCredential>,
) -> Result<(), ApiError> {
    let spec = job_spec::deploy(app, deployment, env, credential, state.plans.get(&user.plan))?;
    jobs::enqueue(tx, &state.sealer, app.id, Some(deployment.id), &spec).await?;
    let detail = json!({ "deployment": deployment.id });
    audit_user(&mut *tx, user, AuditAction::AppDeploy, "app", app.id, detail).await?;
    Ok(())
}

/// Every plan and its limits; public (the plans page reads it signed out).
#[utoipa::path(get, path = "/api/plans", tag = "account", security(()),
    responses((status = 200, description = "Every plan and its limits", body = [plans::PlanView])))]
async fn list_plans(State(state): State<AppState>) -> Json<Vec<plans::PlanView>> {
    Json(state.plans.all().iter().map(plans::Plan::view).collect())
}

#[utoipa::path(get, path = "/api/apps", tag = "apps",
    responses((status = 200, description = "The user's apps", body = [App])))]
async fn list_apps(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Vec<App>>, ApiError> {
    Ok(Json(apps::list_for_user(&state.db, user.id).await?))
}

#[utoipa::path(get, path = "/api/apps/{id}", tag = "apps", params(AppId),
    responses((status = 200, description = "The app", body = App)))]
async fn get_app(OwnedApp { app, .. }: OwnedApp) -> Result<Json<App>, ApiError> {
    Ok(Json(app))
}

/// What to deploy again: the app's branch unless another is named, its head unless a commit is.
#[derive(Debug, Default, Deserialize, ToSchema)]
struct RedeployRequest {
    branch: Option<String>,
    commit: Option<String>,
}

#[utoipa::path(post, path = "/api/apps/{id}/deployments", tag = "deployments", params(AppId),
    request_body = RedeployRequest,
    responses((status = 201, description = "A deployment is queued", body = Deployment)))]
async fn redeploy(
    State(state): State<AppState>,
    OwnedApp { user, app }: OwnedApp,
    ApiJson(req): ApiJson<RedeployRequest>,
) -> Result<(StatusCode, Json<Deployment>), ApiError> {
    let branch = Branch::parse(req.branch.as_deref().unwrap_or(&app.branch))?;
    let commit = req.commit.as_deref().map(CommitSha::parse).transpose()?;
    let credential = repo_credential(&state, &app).await?;
    let mut tx = state.db.begin().await?;
    may_deploy(&mut tx, user.id, state.plans.get(&user.plan), app.id).await?;
    let deployment =
        deployments::insert(&mut *tx, app.id, branch.as_str(), commit.as_ref().map(CommitSha::as_str))
            .await?;
    let env = apps::load_env(&mut *tx, &state.sealer, app.id).await?;
    queue_deploy(&mut tx, &state, &user, &app, &deployment, &env, credential.as_ref()).await?;
    apps::mark_deploying_if_never_ran(&mut *tx, app.id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(deployment)))
}

/// An app's health check.
#[derive(Debug, Deserialize, ToSchema)]
struct HealthCheckRequest {
    /// `/` (anything below 500 counts) or a path that answers 2xx or 3xx when the app is ready.
    path: String,
    /// 1 to 600 seconds; null for the worker's default (60).
    timeout_secs: Option<i64>,
}

#[utoipa::path(put, path = "/api/apps/{id}/health-check", tag = "apps", params(AppId),
    request_body = HealthCheckRequest,
    responses((status = 200, description = "The app with its new health check; it applies from the next deploy, restart or rollback", body = App)))]
async fn put_health_check(
    State(state): State<AppState>,
    OwnedApp { user, app }: OwnedApp,
    ApiJson(req): ApiJson<HealthCheckRequest>,
) -> Result<Json<App>, ApiError> {
    let (path, timeout) = parse_health(Some(&req.path), req.timeout_secs)?;
    let mut tx = state.db.begin().await?;
    apps::set_health_check(&mut *tx, app.id, path.as_str(), timeout).await?;
    let detail = json!({ "path": path.as_str(), "timeout_secs": timeout });
    audit_user(&mut *tx, &user, AuditAction::AppHealthCheckSet, "app", app.id, detail).await?;
    tx.commit().await?;
    let app = apps::get_for_user(&state.db, user.id, app.id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such app".into()))?;
    Ok(Json(app))
}

/// How an app is served over HTTPS once its hosts have certificates.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct HttpsRequest {
    /// Redirect plain-HTTP requests to HTTPS (308) for hosts with a certificate.
    redirect: bool,
    /// Send `Strict-Transport-Security: max-age=31536000` over HTTPS: browsers then refuse
    /// plain HTTP to the app's hosts for a year, so turn it on once HTTPS works.
    hsts: bool,
}

#[utoipa::path(put, path = "/api/apps/{id}/https", tag = "apps", params(AppId),
    request_body = HttpsRequest,
    responses((status = 200, description = "The app with its HTTPS settings; the edge router applies them at once", body = App)))]
async fn put_https(
    State(state): State<AppState>,
    OwnedApp { user, app }: OwnedApp,
    ApiJson(req): ApiJson<HttpsRequest>,
) -> Result<Json<App>, ApiError> {
    let mut tx = state.db.begin().await?;
    apps::set_https(&mut *tx, app.id, req.redirect, req.hsts).await?;
    let detail = json!({ "redirect": req.redirect, "hsts": req.hsts });
    audit_user(&mut *tx, &user, AuditAction::AppHttpsSet, "app", app.id, detail).await?;
    tx.commit().await?;
    if let Some(worker) = app.worker_id {
        state.hub.routes_changed(worker);
    }
    let app = apps::get_for_user(&state.db, user.id, app.id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such app".into()))?;
    Ok(Json(app))
}

/// Which earlier deployment to roll back to.
#[derive(Debug, Deserialize, ToSchema)]
struct RollbackRequest {
    deployment_id: i64,
}

/// A new deployment running an earlier successful one's image — no build while the worker
/// still has it (it keeps the newest `deploy.keep_images`), else that commit built again —
/// through the same health check and switch as a deploy. The app's env is its current one.
#[utoipa::path(post, path = "/api/apps/{id}/rollback", tag = "deployments", params(AppId),
    request_body = RollbackRequest,
    responses((status = 202, description = "The rollback's deployment, queued", body = Deployment)))]
async fn rollback(
    State(state): State<AppState>,
    OwnedApp { user, app }: OwnedApp,
    ApiJson(req): ApiJson<RollbackRequest>,
) -> Result<(StatusCode, Json<Deployment>), ApiError> {
    let target = deployments::for_user(&state.db, user.id, req.deployment_id)
        .await?
        .filter(|d| d.app_id == app.id)
        .ok_or_else(|| ApiError::invalid("deployment_id", "no deployment of this app has that id"))?;
    let ran = matches!(target.status, DeploymentStatus::Running | DeploymentStatus::Superseded);
    let (Some(image), Some(_), true) = (target.image_id.as_deref(), target.commit_sha.as_deref(), ran) else {
        return Err(ApiError::Conflict(format!(
            "deployment #{} is {} and never ran; roll back to one that ran (running or superseded)",
            target.id, target.status
        )));
    };
    if app.current_deployment_id == Some(target.id) {
        return Err(ApiError::Conflict(format!("deployment #{} is the running version already", target.id)));
    }
    let credential = repo_credential(&state, &app).await?;
    let mut tx = state.db.begin().await?;
    may_deploy(&mut tx, user.id, state.plans.get(&user.plan), app.id).await?;
    let deployment = deployments::insert_rollback(&mut *tx, &target).await?;
    let env = apps::load_env(&mut *tx, &state.sealer, app.id).await?;
    let spec =
        job_spec::rollback(&app, &deployment, image, &env, credential.as_ref(), state.plans.get(&user.plan))?;
    jobs::enqueue(&mut tx, &state.sealer, app.id, Some(deployment.id), &spec).await?;
    let detail = json!({ "deployment": deployment.id, "rollback_of": target.id });
    audit_user(&mut *tx, &user, AuditAction::AppRollback, "app", app.id, detail).await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(deployment)))
}

#[derive(Debug, Deserialize, ToSchema)]
struct GitTokenRequest {
    /// The new token, or null to remove it.
    #[schema(value_type = Option<String>)]
    token: Option<wisehosting_crypto::Secret>,
}

/// Whether the app holds a repository token (never its value).
#[derive(Debug, Serialize, ToSchema)]
struct GitTokenState {
    has_git_token: bool,
}

/// Sets or removes the app's repository token; takes effect on the next deploy (a token set
/// replaces a linked account the app cloned with). Audited without the value.
#[utoipa::path(put, path = "/api/apps/{id}/git-token", tag = "apps", params(AppId),
    request_body = GitTokenRequest,
    responses((status = 200, description = "The token is set (or removed)", body = GitTokenState)))]
async fn put_git_token(
    State(state): State<AppState>,
    OwnedApp { user, app }: OwnedApp,
    ApiJson(req): ApiJson<GitTokenRequest>,
) -> Result<Json<GitTokenState>, ApiError> {
    let token =
        req.token.as_ref().filter(|t| !t.is_empty()).map(|t| GitToken::parse(t.expose())).transpose()?;
    let mut tx = state.db.begin().await?;
    apps::set_git_token(&mut *tx, &state.sealer, app.id, token.as_ref().map(GitToken::expose)).await?;
    if token.is_some() {
        // A token of the app's own replaces a linked account's.
        apps::clear_git_provider(&mut *tx, app.id).await?;
    }
    let action = if token.is_some() { AuditAction::AppGitTokenSet } else { AuditAction::AppGitTokenRemove };
    audit_user(&mut *tx, &user, action, "app", app.id, json!({})).await?;
    tx.commit().await?;
    Ok(Json(GitTokenState { has_git_token: token.is_some() }))
}

#[utoipa::path(get, path = "/api/apps/{id}/deployments", tag = "deployments", params(AppId),
    responses((status = 200, description = "The app's deployments, newest first", body = [Deployment])))]
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

#[utoipa::path(get, path = "/api/deployments/{id}", tag = "deployments", params(DeploymentId),
    responses((status = 200, description = "The deployment", body = Deployment)))]
async fn get_deployment(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Deployment>, ApiError> {
    Ok(Json(own_deployment(&state, &user, id).await?))
}

#[utoipa::path(get, path = "/api/deployments/{id}/log", tag = "deployments", params(DeploymentId),
    responses((status = 200, description = "The build log", body = BuildLog)))]
async fn deployment_log(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<BuildLog>, ApiError> {
    let deployment = own_deployment(&state, &user, id).await?;
    let log = deployments::build_log(&state.db, deployment.id).await?;
    Ok(Json(BuildLog { deployment_id: deployment.id, log }))
}

/// A deployment's build log (the last 512 KiB).
#[derive(Debug, Serialize, ToSchema)]
struct BuildLog {
    deployment_id: i64,
    log: String,
}

#[utoipa::path(post, path = "/api/deployments/{id}/cancel", tag = "deployments", params(DeploymentId),
    responses((status = 200, description = "The deployment, cancelled", body = Deployment)))]
async fn cancel_deployment(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Deployment>, ApiError> {
    let deployment = own_deployment(&state, &user, id).await?;
    if deployment.status.is_final() {
        return Err(ApiError::Conflict(format!(
            "the deployment is already {}; nothing to cancel",
            deployment.status
        )));
    }
    let mut tx = state.db.begin().await?;
    let lease = cancel(&mut tx, deployment.id, "cancelled by the user").await?;
    audit_user(&mut *tx, &user, AuditAction::DeploymentCancel, "deployment", deployment.id, json!({}))
        .await?;
    tx.commit().await?;
    tell_cancelled(&state, lease);
    Ok(Json(own_deployment(&state, &user, id).await?))
}

/// Cancels an unfinished deployment and its job, saying `why`; the lease to tell the worker
/// about (with [`tell_cancelled`], once committed) when its job was running.
pub(crate) async fn cancel(
    tx: &mut sqlx::PgConnection,
    deployment_id: i64,
    why: &str,
) -> Result<Option<jobs::CancelledLease>, sqlx::Error> {
    let lease = jobs::cancel_for_deployment(tx, deployment_id, why).await?;
    deployments::end(tx, deployment_id, Ending::Cancelled, why).await?;
    Ok(lease)
}

/// Tells the worker that held a cancelled job to stop it (best effort: the job is cancelled
/// in the database whatever happens, and the worker's result for it will be refused).
pub(crate) fn tell_cancelled(state: &AppState, lease: Option<jobs::CancelledLease>) {
    if let Some(jobs::CancelledLease { job_id, attempt, worker_id }) = lease {
        let _ = state
            .hub
            .send(worker_id, Outgoing::of(&wisehosting_proto::messages::JobCancel { job_id, attempt }));
    }
}

/// What every new deployment of an existing app passes first, in its transaction (a redeploy,
/// a rollback, a push): the owner's row locked, so two at once cannot both pass the daily
/// limit; the app not paused by the operators; the plan's deploys a day not used up.
pub(crate) async fn may_deploy(
    tx: &mut sqlx::PgConnection,
    owner: i64,
    plan: &plans::Plan,
    app_id: i64,
) -> Result<(), ApiError> {
    users::lock(tx, owner).await?;
    refuse_if_paused(&mut *tx, app_id).await?;
    check_deploys_per_day(tx, owner, plan).await
}

/// Refuses what would run an app the operators paused, with their reason.
pub(crate) async fn refuse_if_paused(db: impl sqlx::PgExecutor<'_>, app_id: i64) -> Result<(), ApiError> {
    match apps::paused_reason(db, app_id).await? {
        None => Ok(()),
        Some(reason) => Err(ApiError::Conflict(format!(
            "the platform's operators paused this app{}; ask them to unpause it",
            if reason.is_empty() { String::new() } else { format!(" ({reason})") }
        ))),
    }
}

/// What a running app can be asked to do.
#[derive(Debug, Clone, Copy)]
enum Lifecycle {
    Restart,
    Stop,
    Start,
}

/// A lifecycle job queued.
#[derive(Debug, Serialize, ToSchema)]
struct JobQueued {
    job_id: i64,
}

#[utoipa::path(post, path = "/api/apps/{id}/restart", tag = "apps", params(AppId),
    responses((status = 202, description = "A restart of the running version is queued", body = JobQueued)))]
async fn restart(state: State<AppState>, owned: OwnedApp) -> Result<(StatusCode, Json<JobQueued>), ApiError> {
    lifecycle(state, owned, Lifecycle::Restart).await
}

#[utoipa::path(post, path = "/api/apps/{id}/stop", tag = "apps", params(AppId),
    responses((status = 202, description = "Stopping the app is queued", body = JobQueued)))]
async fn stop(state: State<AppState>, owned: OwnedApp) -> Result<(StatusCode, Json<JobQueued>), ApiError> {
    lifecycle(state, owned, Lifecycle::Stop).await
}

#[utoipa::path(post, path = "/api/apps/{id}/start", tag = "apps", params(AppId),
    responses((status = 202, description = "Starting the stopped app is queued", body = JobQueued)))]
async fn start(state: State<AppState>, owned: OwnedApp) -> Result<(StatusCode, Json<JobQueued>), ApiError> {
    lifecycle(state, owned, Lifecycle::Start).await
}

async fn lifecycle(
    State(state): State<AppState>,
    OwnedApp { user, app }: OwnedApp,
    kind: Lifecycle,
) -> Result<(StatusCode, Json<JobQueued>), ApiError> {
    let Some(current) = app.current_deployment_id else {
        return Err(ApiError::Conflict("the app has no running version yet; deploy it first".into()));
    };
    let mut tx = state.db.begin().await?;
    if !matches!(kind, Lifecycle::Stop) {
        refuse_if_paused(&mut *tx, app.id).await?;
    }
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
    Ok((StatusCode::ACCEPTED, Json(JobQueued { job_id: job })))
}

#[utoipa::path(delete, path = "/api/apps/{id}", tag = "apps", params(AppId),
    responses((status = 202, description = "The app is being removed from its worker")))]
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

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EnvQuery {
    /// Show the values (audited as `env.revealed`); masked otherwise.
    #[serde(default)]
    reveal: bool,
}

#[utoipa::path(get, path = "/api/apps/{id}/env", tag = "apps", params(AppId, EnvQuery),
    responses((status = 200, description = "The app's environment", body = EnvView)))]
async fn get_env(
    State(state): State<AppState>,
    OwnedApp { user, app }: OwnedApp,
    ApiQuery(q): ApiQuery<EnvQuery>,
) -> Result<Json<EnvView>, ApiError> {
    let env = apps::load_env(&state.db, &state.sealer, app.id).await?;
    if q.reveal {
        audit_user(&state.db, &user, AuditAction::EnvReveal, "app", app.id, json!({})).await?;
        return Ok(Json(EnvView { env }));
    }
    let masked = env.into_keys().map(|k| (k, "********".to_string())).collect();
    Ok(Json(EnvView { env: masked }))
}

/// An app's environment: names and values (or `********` unless revealed).
#[derive(Debug, Serialize, ToSchema)]
struct EnvView {
    env: BTreeMap<String, String>,
}

/// The names written; they apply on the next deploy or restart.
#[derive(Debug, Serialize, ToSchema)]
struct EnvWritten {
    names: Vec<String>,
    applies: String,
}

#[utoipa::path(put, path = "/api/apps/{id}/env", tag = "apps", params(AppId),
    request_body(content = BTreeMap<String, String>, description = "Every variable, replacing the old set: names match `^[A-Z][A-Z0-9_]{0,63}$`"),
    responses((status = 200, description = "The environment is replaced", body = EnvWritten)))]
async fn put_env(
    State(state): State<AppState>,
    OwnedApp { user, app }: OwnedApp,
    ApiJson(body): ApiJson<BTreeMap<String, String>>,
) -> Result<Json<EnvWritten>, ApiError> {
    let env = parse_env(body)?;
    let mut tx = state.db.begin().await?;
    apps::replace_env(&mut tx, &state.sealer, app.id, &env).await?;
    let names: Vec<&String> = env.keys().collect();
    audit_user(&mut *tx, &user, AuditAction::EnvWrite, "app", app.id, json!({ "names": names })).await?;
    tx.commit().await?;
    let names = names.into_iter().cloned().collect();
    Ok(Json(EnvWritten { names, applies: "on the next deploy or restart".into() }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TailQuery {
    /// How many of the newest lines (default 100, at most the 1,000 kept).
    tail: Option<usize>,
}

#[utoipa::path(get, path = "/api/apps/{id}/logs", tag = "logs", params(AppId, TailQuery),
    responses((status = 200, description = "The newest lines", body = LogTail)))]
async fn tail_logs(
    State(state): State<AppState>,
    OwnedApp { app, .. }: OwnedApp,
    ApiQuery(q): ApiQuery<TailQuery>,
) -> Result<Json<LogTail>, ApiError> {
    let lines = state.logbus.tail(app.id, q.tail.unwrap_or(100).min(crate::logbus::RING));
    Ok(Json(LogTail { lines }))
}

/// The newest log lines of an app, oldest first.
#[derive(Debug, Serialize, ToSchema)]
struct LogTail {
    lines: Vec<crate::logbus::LogLine>,
}

#[utoipa::path(get, path = "/api/apps/{id}/logs/stream", tag = "logs", params(AppId),
    responses((status = 200, description = "Server-sent events, one per log line (event `build` or `runtime`, data a LogLine)", content_type = "text/event-stream", body = String)))]
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

/// The `{id}` of an app route.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct AppId {
    /// The app's id.
    id: i64,
}

/// The `{id}` of a deployment route.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct DeploymentId {
    /// The deployment's id.
    id: i64,
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
