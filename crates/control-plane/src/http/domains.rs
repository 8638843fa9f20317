//! Custom domains of an app (issue 5): add, list, verify, delete.
//!
//! A hostname is parsed strictly ([`Hostname`]) and may not be one of the platform's own names
//! (`subdomain_base`, worker zones, `localhost`). It is routed only once verified: the user
//! publishes a TXT record `_wisehosting-challenge.<hostname>` holding the token the API shows
//! (one per claim), then asks for verification, which reads it through the configured
//! resolver. An unverified claim blocks no one: several apps may claim a hostname, the first
//! to verify wins and the other claims are dropped, and a claim unverified for 7 days lapses.
//! With Cloudflare for SaaS configured, a hostname is registered as a custom hostname of the
//! zone once verified (so a claim nobody proved costs nothing there), outside any database
//! transaction; a failed registration is retried by the next verify call. It is removed with
//! the domain. Every change is audited.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiError;
use super::extract::{CurrentUser, OwnedApp, audit_user};
use super::{ApiJson, ApiPath};
use crate::domain::Hostname;
use crate::state::AppState;
use crate::store::apps::App;
use crate::store::audit::AuditAction;
use crate::store::domains::{self, Domain, DomainRow, Holder};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, add)).routes(routes!(show, remove)).routes(routes!(verify))
}

#[derive(Debug, Deserialize, ToSchema)]
struct AddRequest {
    /// The name to serve the app at, such as `www.example.com`.
    hostname: String,
}

/// A fresh verification token: what the TXT record must hold.
fn verification_token() -> String {
    format!("wisehosting-verify={}", hex::encode(rand::random::<[u8; 16]>()))
}

/// At most `domains.changes_per_minute` adds and verifications per user: each may ask DNS or
/// Cloudflare.
fn limit(state: &AppState, user: &CurrentUser) -> Result<(), ApiError> {
    Ok(state.domain_limiter.check(user.id)?)
}

/// Pushes the app's worker its routes again.
fn routes_changed(state: &AppState, app: &App) {
    if let Some(worker) = app.worker_id {
        state.hub.routes_changed(worker);
    }
}

#[utoipa::path(post, path = "/api/apps/{id}/domains", tag = "domains", params(super::apps::AppId),
    request_body = AddRequest,
    responses((status = 201, description = "The claim, with the TXT record to publish", body = Domain)))]
async fn add(
    State(state): State<AppState>,
    OwnedApp { user, app }: OwnedApp,
    ApiJson(req): ApiJson<AddRequest>,
) -> Result<(StatusCode, Json<Domain>), ApiError> {
    limit(&state, &user)?;
    let hostname = Hostname::parse(&req.hostname, state.config.domains.allow_wildcards)?;
    let platform_names = [state.config.subdomain_base.as_str(), "localhost"];
    if platform_names.iter().any(|base| hostname.is_within(base))
        || domains::under_a_zone(&state.db, hostname.as_str()).await?
    {
        return Err(ApiError::invalid(
            "hostname",
            format!("{hostname} is one of the platform's own app hostnames; use a domain you own"),
        ));
    }
    match domains::holder(&state.db, app.id, hostname.as_str()).await? {
        Holder::ThisApp => {
            return Err(ApiError::Conflict(format!("{hostname} is already a domain of this app")));
        }
        Holder::OtherApp => {
            return Err(ApiError::Conflict(format!(
                "{hostname} is already in use by another app on this platform, which verified it; remove it there first (if it is yours, contact support)"
            )));
        }
        Holder::Free => {}
    }
    let mut tx = state.db.begin().await?;
    let Some(row) = domains::insert(&mut tx, app.id, hostname.as_str(), &verification_token()).await? else {
        return Err(ApiError::Conflict(format!("{hostname} is already a domain of this app")));
    };
    // Counted with the new row: over the plan's limit, the transaction rolls back.
    let plan = state.plans.get(&user.plan);
    if domains::count_for_app(&mut *tx, app.id).await? > i64::from(plan.custom_domains) {
        return Err(ApiError::PlanLimit(format!(
            "the {} plan allows {} custom domain(s) per app (limit `custom_domains`); remove one first",
            plan.name, plan.custom_domains
        )));
    }
    audit_user(&mut *tx, &user, AuditAction::DomainAdd, "app", app.id, json!({ "hostname": row.hostname }))
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(row.view())))
}

/// With Cloudflare for SaaS: registers a verified domain's custom hostname, or refreshes its
/// status. A Cloudflare failure is logged and leaves the row as it was (the next verify call
/// tries again); no database transaction is open meanwhile.
async fn sync_cloudflare(state: &AppState, row: DomainRow) -> Result<DomainRow, ApiError> {
    let Some(cloudflare) = &state.cloudflare else { return Ok(row) };
    let answer = match &row.cloudflare_id {
        Some(cf_id) => cloudflare.get(cf_id).await,
        None => cloudflare.create(&row.hostname).await,
    };
    match answer {
        Ok(custom) => Ok(domains::set_cloudflare(&state.db, row.id, &custom).await?),
        Err(e) => {
            tracing::warn!(error = %e, hostname = %row.hostname, "cannot register or refresh the Cloudflare custom hostname");
            Ok(row)
        }
    }
}

#[utoipa::path(get, path = "/api/apps/{id}/domains", tag = "domains", params(super::apps::AppId),
    responses((status = 200, description = "The app's custom domains", body = [Domain])))]
async fn list(
    State(state): State<AppState>,
    OwnedApp { app, .. }: OwnedApp,
) -> Result<Json<Vec<Domain>>, ApiError> {
    Ok(Json(domains::list_for_app(&state.db, app.id).await?.iter().map(DomainRow::view).collect()))
}

/// The app's domain named in the path; 404 when it has none of that name.
async fn own_domain(state: &AppState, app: &App, hostname: &str) -> Result<DomainRow, ApiError> {
    let not_found = || ApiError::NotFound(format!("{hostname:?} is not a domain of this app"));
    let name = Hostname::parse(hostname, true).map_err(|_| not_found())?;
    domains::get(&state.db, app.id, name.as_str()).await?.ok_or_else(not_found)
}

#[utoipa::path(get, path = "/api/apps/{id}/domains/{hostname}", tag = "domains", params(("id" = i64, Path, description = "The app's id"), ("hostname" = String, Path, description = "The custom domain")),
    responses((status = 200, description = "The domain", body = Domain)))]
async fn show(
    State(state): State<AppState>,
    OwnedApp { app, .. }: OwnedApp,
    ApiPath(path): ApiPath<(i64, String)>,
) -> Result<Json<Domain>, ApiError> {
    let hostname = path.1;
    let row = own_domain(&state, &app, &hostname).await?;
    Ok(Json(row.view()))
}

#[utoipa::path(post, path = "/api/apps/{id}/domains/{hostname}/verify", tag = "domains", params(("id" = i64, Path, description = "The app's id"), ("hostname" = String, Path, description = "The custom domain")),
    responses((status = 200, description = "Verified: the app is served at the domain", body = Domain)))]
async fn verify(
    State(state): State<AppState>,
    OwnedApp { user, app }: OwnedApp,
    ApiPath(path): ApiPath<(i64, String)>,
) -> Result<Json<Domain>, ApiError> {
    let hostname = path.1;
    let row = own_domain(&state, &app, &hostname).await?;
    limit(&state, &user)?;
    if row.verified_at.is_some() {
        return Ok(Json(sync_cloudflare(&state, row).await?.view()));
    }
    let name = row.challenge_name();
    let found = state.dns.txt(&name).await.map_err(|e| {
        ApiError::Upstream(format!("cannot read the TXT records of {name}: {e}; try again in a minute"))
    })?;
    if !found.iter().any(|value| value.trim() == row.verification_token) {
        let seen = if found.is_empty() {
            "no TXT record is published there yet".to_string()
        } else {
            format!("the TXT records there are {found:?}")
        };
        return Err(ApiError::VerificationFailed(format!(
            "{} is not verified: {seen}. Add a TXT record named {name} with the value {} at your DNS provider, wait until it is published (often a few minutes), then verify again",
            row.hostname, row.verification_token
        )));
    }
    let mut tx = state.db.begin().await?;
    let Some((row, dropped)) = domains::mark_verified(&mut tx, row.id).await? else {
        return Err(ApiError::Conflict(format!(
            "{} was verified by another app first; remove it from this app",
            row.hostname
        )));
    };
    let detail = json!({ "hostname": row.hostname, "dropped_claims_of_apps": dropped });
    audit_user(&mut *tx, &user, AuditAction::DomainVerify, "app", app.id, detail).await?;
    // With ACME on, its certificate is pending from now (the issuer's next round orders it).
    let row = if state.config.acme.enabled() {
        crate::store::certificates::begin(&mut *tx, row.id).await?;
        domains::get(&mut *tx, app.id, &row.hostname).await?.unwrap_or(row)
    } else {
        row
    };
    tx.commit().await?;
    routes_changed(&state, &app);
    Ok(Json(sync_cloudflare(&state, row).await?.view()))
}

#[utoipa::path(delete, path = "/api/apps/{id}/domains/{hostname}", tag = "domains", params(("id" = i64, Path, description = "The app's id"), ("hostname" = String, Path, description = "The custom domain")),
    responses((status = 204, description = "The domain is removed and no longer routed")))]
async fn remove(
    State(state): State<AppState>,
    OwnedApp { user, app }: OwnedApp,
    ApiPath(path): ApiPath<(i64, String)>,
) -> Result<StatusCode, ApiError> {
    let hostname = path.1;
    let row = own_domain(&state, &app, &hostname).await?;
    if let (Some(cloudflare), Some(cf_id)) = (&state.cloudflare, &row.cloudflare_id) {
        cloudflare.delete(cf_id).await?;
    }
    let mut tx = state.db.begin().await?;
    domains::delete(&mut *tx, row.id).await?;
    audit_user(
        &mut *tx,
        &user,
        AuditAction::DomainDelete,
        "app",
        app.id,
        json!({ "hostname": row.hostname }),
    )
    .await?;
    tx.commit().await?;
    if row.verified_at.is_some() {
        routes_changed(&state, &app);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Removes the Cloudflare custom hostnames of an app about to be deleted (best effort: a
/// failure is logged, and the app is deleted all the same).
pub async fn forget_cloudflare_hostnames(state: &AppState, app_id: i64) {
    let Some(cloudflare) = &state.cloudflare else { return };
    let rows = match domains::list_for_app(&state.db, app_id).await {
        Ok(rows) => rows,
        Err(e) => return tracing::warn!(error = %e, app_id, "cannot list the app's domains"),
    };
    for row in rows {
        if let Some(cf_id) = &row.cloudflare_id
            && let Err(e) = cloudflare.delete(cf_id).await
        {
            tracing::warn!(error = %e, hostname = %row.hostname, "cannot remove the Cloudflare custom hostname");
        }
    }
}
