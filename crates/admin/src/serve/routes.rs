//! The console's data, under `/admin/api/`. Every handler states what it needs with
//! [`Allowed`]; live state comes through the internal API, admin identity from the admin
//! tables. Every change is audited in its own transaction; so is every podman query.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use wisehosting_control_plane::domain::AdminRole;
use wisehosting_control_plane::http::{ApiError, ApiJson, ApiPath, ApiQuery};
use wisehosting_control_plane::store::admin;
use wisehosting_proto::AdminCommand;

use super::Console;
use super::auth::Admin;
use super::internal::Answer;
use super::roles::{Admins, Allowed, Audit, Dashboards, Operate, Plans, Users};

/// `GET /admin/api/overview`: the figures with their 24-hour deltas, the extras and the
/// deployments series, in one answer.
pub async fn overview(State(c): State<Console>, _: Allowed<Dashboards>) -> Result<Json<Value>, ApiError> {
    let (stats, extras, series) = tokio::try_join!(
        c.internal.get("/internal-api/dashboard-stats"),
        c.internal.get("/internal-api/dashboard-extras"),
        c.internal.get("/internal-api/dashboard-deployments-timeseries"),
    )?;
    for answer in [&stats, &extras, &series] {
        if !answer.ok() {
            return Err(ApiError::Upstream(format!(
                "the internal API answered {}: {}",
                answer.status, answer.body
            )));
        }
    }
    Ok(Json(json!({ "stats": stats.body, "extras": extras.body, "series": series.body })))
}

/// `GET /admin/api/workers`: the live worker map.
pub async fn workers(State(c): State<Console>, _: Allowed<Dashboards>) -> Result<Answer, ApiError> {
    c.internal.get("/internal-api/workers/live").await
}

#[derive(Debug, Deserialize)]
pub struct PodmanPath {
    id: i64,
    cmd: String,
}

/// `GET /admin/api/workers/:id/podman/:cmd`: one of the five read-only queries. Anything
/// else is refused here, and again by the control plane and by the worker.
pub async fn podman(
    State(c): State<Console>,
    Allowed { admin, .. }: Allowed<Operate>,
    ApiPath(p): ApiPath<PodmanPath>,
) -> Result<Response, ApiError> {
    let Some(cmd) = AdminCommand::parse(&p.cmd) else {
        return Ok((
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({
                "code": "unknown_command",
                "message": format!("that is not one of the podman queries; use one of {}", AdminCommand::list()),
            })),
        )
            .into_response());
    };
    admin::audit(
        &c.db,
        Some(admin.id),
        &admin.actor(),
        "admin.podman_query",
        ("worker", &p.id.to_string()),
        json!({ "command": cmd.as_str() }),
        admin.ip.as_deref(),
    )
    .await?;
    Ok(c.internal
        .get(&format!("/internal-api/workers/{}/podman/{}", p.id, cmd.as_str()))
        .await?
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct Search {
    #[serde(default)]
    q: String,
}

fn search_path(base: &str, q: &str) -> String {
    format!("{base}?q={}", url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>())
}

/// `GET /admin/api/apps?q=`: apps across tenants.
pub async fn apps(
    State(c): State<Console>,
    _: Allowed<Operate>,
    ApiQuery(s): ApiQuery<Search>,
) -> Result<Answer, ApiError> {
    c.internal.get(&search_path("/internal-api/apps", &s.q)).await
}

#[derive(Debug, Deserialize)]
pub struct IdPath {
    id: i64,
}

/// `GET /admin/api/apps/:id/live-stats`.
pub async fn app_live_stats(
    State(c): State<Console>,
    _: Allowed<Operate>,
    ApiPath(p): ApiPath<IdPath>,
) -> Result<Answer, ApiError> {
    c.internal.get(&format!("/internal-api/apps/{}/live-stats", p.id)).await
}

/// `GET /admin/api/apps/:id/logs`: the newest lines.
pub async fn app_logs(
    State(c): State<Console>,
    _: Allowed<Operate>,
    ApiPath(p): ApiPath<IdPath>,
) -> Result<Answer, ApiError> {
    c.internal.get(&format!("/internal-api/apps/{}/logs/tail?tail=200", p.id)).await
}

#[derive(Debug, Deserialize)]
pub struct Why {
    #[serde(default)]
    reason: String,
}

/// Who acts, as the internal API writes it into the admin audit trail with the change.
fn operator(admin: &Admin, reason: &str) -> Value {
    json!({ "admin_id": admin.id, "actor": admin.actor(), "ip": admin.ip, "reason": reason })
}

#[derive(Debug, Deserialize)]
pub struct AppAction {
    id: i64,
    action: String,
}

/// `POST /admin/api/apps/:id/{pause,unpause,unlock}` (support, super_admin): pausing stops
/// the app and keeps its owner from starting it; unlocking cancels a stuck deploy. Audited by
/// the control plane in the change's transaction.
pub async fn app_action(
    State(c): State<Console>,
    Allowed { admin, .. }: Allowed<Operate>,
    ApiPath(p): ApiPath<AppAction>,
    ApiJson(why): ApiJson<Why>,
) -> Result<Answer, ApiError> {
    if !["pause", "unpause", "unlock"].contains(&p.action.as_str()) {
        return Err(ApiError::NotFound("no such app action; use pause, unpause or unlock".into()));
    }
    c.internal
        .post(&format!("/internal-api/apps/{}/{}", p.id, p.action), &operator(&admin, &why.reason))
        .await
}

/// `GET /admin/api/plans`: the plans' names.
pub async fn plans(State(c): State<Console>, _: Allowed<Users>) -> Result<Answer, ApiError> {
    c.internal.get("/internal-api/plans").await
}

#[derive(Debug, Deserialize)]
pub struct PlanBody {
    plan: String,
    #[serde(default)]
    reason: String,
}

/// `POST /admin/api/users/:id/plan` (billing, super_admin).
pub async fn set_plan(
    State(c): State<Console>,
    Allowed { admin, .. }: Allowed<Plans>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(body): ApiJson<PlanBody>,
) -> Result<Answer, ApiError> {
    let mut change = operator(&admin, &body.reason);
    change["plan"] = json!(body.plan);
    c.internal.post(&format!("/internal-api/users/{}/plan", p.id), &change).await
}

/// `GET /admin/api/users?q=`: tenant data for super_admin, support and billing.
pub async fn users(
    State(c): State<Console>,
    _: Allowed<Users>,
    ApiQuery(s): ApiQuery<Search>,
) -> Result<Answer, ApiError> {
    c.internal.get(&search_path("/internal-api/users", &s.q)).await
}

/// `GET /admin/api/admins`: accounts and their live grants.
pub async fn admins(
    State(c): State<Console>,
    _: Allowed<Admins>,
) -> Result<Json<Vec<admin::Account>>, ApiError> {
    Ok(Json(admin::accounts(&c.db).await?))
}

#[derive(Debug, Deserialize)]
pub struct GrantBody {
    username: String,
    role: String,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    reason: String,
}

fn parse_role(text: &str) -> Result<AdminRole, ApiError> {
    AdminRole::parse(text)
        .ok_or_else(|| ApiError::invalid("role", "use super_admin, support, billing or read_only"))
}

async fn account_of(c: &Console, username: &str) -> Result<i64, ApiError> {
    admin::account_id(&c.db, username)
        .await?
        .ok_or_else(|| ApiError::invalid("username", "no admin account has that name"))
}

/// `POST /admin/api/grants` (super_admin only: nobody grants a role above their own).
pub async fn grant(
    State(c): State<Console>,
    Allowed { admin: by, .. }: Allowed<Admins>,
    ApiJson(body): ApiJson<GrantBody>,
) -> Result<Json<Value>, ApiError> {
    let role = parse_role(&body.role)?;
    if body.expires_at.is_some_and(|t| t <= Utc::now()) {
        return Err(ApiError::invalid(
            "expires_at",
            "that instant has passed; give one in the future, or none",
        ));
    }
    let reason: String = body.reason.chars().take(500).collect();
    let id = account_of(&c, &body.username).await?;
    let mut tx = c.db.begin().await?;
    admin::grant(&mut tx, id, role, &by.actor(), &reason, body.expires_at).await?;
    admin::audit(
        &mut *tx,
        Some(by.id),
        &by.actor(),
        "admin.role_granted",
        ("admin", &body.username),
        json!({ "role": role, "expires_at": body.expires_at, "reason": reason }),
        by.ip.as_deref(),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!({ "username": body.username, "role": role, "expires_at": body.expires_at })))
}

#[derive(Debug, Deserialize)]
pub struct RevokeBody {
    username: String,
    role: String,
}

/// `POST /admin/api/grants/revoke` (super_admin only). The last live `super_admin` grant
/// stays: without it nobody could grant anything again but through the command line.
pub async fn revoke(
    State(c): State<Console>,
    Allowed { admin: by, .. }: Allowed<Admins>,
    ApiJson(body): ApiJson<RevokeBody>,
) -> Result<Json<Value>, ApiError> {
    let role = parse_role(&body.role)?;
    let id = account_of(&c, &body.username).await?;
    let mut tx = c.db.begin().await?;
    if role == AdminRole::SuperAdmin && admin::live_holders_locked(&mut tx, role).await? <= 1 {
        return Err(ApiError::Conflict(
            "that is the last live super_admin grant; grant super_admin to another account first".into(),
        ));
    }
    if !admin::revoke(&mut *tx, id, role).await? {
        return Err(ApiError::NotFound(format!("{} does not hold {role}", body.username)));
    }
    admin::audit(
        &mut *tx,
        Some(by.id),
        &by.actor(),
        "admin.role_revoked",
        ("admin", &body.username),
        json!({ "role": role }),
        by.ip.as_deref(),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!({ "username": body.username, "role": role, "revoked": true })))
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    /// Rows older than this id.
    before: Option<i64>,
}

/// `GET /admin/api/audit` (super_admin only): the newest 100 rows.
pub async fn audit(
    State(c): State<Console>,
    _: Allowed<Audit>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<admin::AuditRow>>, ApiError> {
    Ok(Json(admin::audit_page(&c.db, q.before, 100).await?))
}
