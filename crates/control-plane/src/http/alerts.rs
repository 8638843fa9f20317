//! Alert rules of an app and the user's alerts (SPEC §14.3).
//!
//! A rule per (app, kind): posting a kind the app has a rule of replaces that rule (its
//! evaluation starts over). Metric kinds need a threshold in their unit; event kinds take
//! none. A user acknowledges an alert (it stays open, so the rule does not fire again) and
//! may resolve it; the platform resolves it when its condition clears.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiError;
use super::apps::AppId;
use super::extract::{CurrentUser, OwnedApp, audit_user};
use super::{ApiJson, ApiPath, ApiQuery};
use crate::domain::{AlertKind, AlertStatus};
use crate::state::AppState;
use crate::store::alerts::{self, Alert, Move, Rule};
use crate::store::audit::AuditAction;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_rules, add_rule))
        .routes(routes!(delete_rule))
        .routes(routes!(list_alerts))
        .routes(routes!(acknowledge))
        .routes(routes!(resolve))
}

#[derive(Debug, Deserialize, ToSchema)]
struct RuleRequest {
    /// `cpu`, `memory`, `network`, `restarts` (metrics) or `offline`, `crashloop`,
    /// `deployment_failed` (events).
    kind: String,
    /// cpu: % of one core (1–6400); memory: % of the limit (1–100); network: bytes/s in and
    /// out (at least 1); restarts: per hour (1–1000). Null for event kinds.
    #[serde(default)]
    threshold: Option<f64>,
    /// How long a metric must stay over (then under) the threshold before the alert fires
    /// (resolves): 0–1440, default 5. Event kinds fire at once.
    #[serde(default)]
    sustain_minutes: Option<i64>,
}

/// A rule's kind and threshold checked, with a message that names the fix.
fn parse_rule(req: &RuleRequest) -> Result<(AlertKind, Option<f64>, i32), ApiError> {
    let kinds = "cpu, memory, network, restarts, offline, crashloop, deployment_failed, certificate_failing";
    let kind = AlertKind::parse(&req.kind).filter(|k| *k != AlertKind::WebhookDisabled).ok_or_else(|| {
        ApiError::invalid("kind", format!("{:?} is not a rule kind; use one of {kinds}", req.kind))
    })?;
    let sustain = req.sustain_minutes.unwrap_or(if kind.is_metric() { 5 } else { 0 });
    if !(0..=1440).contains(&sustain) {
        return Err(ApiError::invalid("sustain_minutes", "must be between 0 and 1440 (a day)"));
    }
    let sustain = i32::try_from(sustain).unwrap_or(0);
    if !kind.is_metric() {
        if req.threshold.is_some() {
            return Err(ApiError::invalid(
                "threshold",
                format!("a {kind} rule fires when the event happens; leave threshold null"),
            ));
        }
        return Ok((kind, None, sustain));
    }
    let (low, high, unit) = match kind {
        AlertKind::Cpu => (1.0, 6400.0, "% of one core"),
        AlertKind::Memory => (1.0, 100.0, "% of the memory limit"),
        AlertKind::Network => (1.0, 1e12, "bytes per second"),
        _ => (1.0, 1000.0, "restarts per hour"),
    };
    let threshold = req.threshold.ok_or_else(|| {
        ApiError::invalid(
            "threshold",
            format!("a {kind} rule needs a threshold in {unit}, between {low} and {high}"),
        )
    })?;
    if !threshold.is_finite() || threshold < low || threshold > high {
        return Err(ApiError::invalid(
            "threshold",
            format!("{threshold} is out of range for {kind}: give {unit} between {low} and {high}"),
        ));
    }
    Ok((kind, Some(threshold), sustain))
}

#[utoipa::path(get, path = "/api/apps/{id}/alert-rules", tag = "alerts", params(AppId),
    responses((status = 200, description = "The app's alert rules", body = [Rule])))]
async fn list_rules(
    State(state): State<AppState>,
    OwnedApp { app, .. }: OwnedApp,
) -> Result<Json<Vec<Rule>>, ApiError> {
    Ok(Json(alerts::rules_for_app(&state.db, app.id).await?))
}

/// Adds a rule, or replaces the app's rule of that kind.
#[utoipa::path(post, path = "/api/apps/{id}/alert-rules", tag = "alerts", params(AppId), request_body = RuleRequest,
    responses((status = 201, description = "The rule", body = Rule)))]
async fn add_rule(
    State(state): State<AppState>,
    OwnedApp { user, app }: OwnedApp,
    ApiJson(req): ApiJson<RuleRequest>,
) -> Result<(StatusCode, Json<Rule>), ApiError> {
    let (kind, threshold, sustain) = parse_rule(&req)?;
    let mut tx = state.db.begin().await?;
    let rule = alerts::upsert_rule(&mut *tx, app.id, kind, threshold, sustain).await?;
    let details =
        json!({ "app_id": app.id, "kind": kind, "threshold": threshold, "sustain_minutes": sustain });
    audit_user(&mut *tx, &user, AuditAction::AlertRuleSet, "alert_rule", rule.id, details).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct RulePath {
    /// The app's id.
    id: i64,
    /// The rule's id.
    rid: i64,
}

#[utoipa::path(delete, path = "/api/apps/{id}/alert-rules/{rid}", tag = "alerts", params(RulePath),
    responses((status = 204, description = "The rule is gone")))]
async fn delete_rule(
    State(state): State<AppState>,
    OwnedApp { user, app }: OwnedApp,
    ApiPath(path): ApiPath<RulePath>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin().await?;
    if !alerts::delete_rule(&mut *tx, app.id, path.rid).await? {
        return Err(ApiError::NotFound("no such alert rule on this app".into()));
    }
    audit_user(
        &mut *tx,
        &user,
        AuditAction::AlertRuleDelete,
        "alert_rule",
        path.rid,
        json!({ "app_id": app.id }),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AlertQuery {
    /// `firing`, `acknowledged` or `resolved`; all when absent.
    status: Option<String>,
    /// How many of the newest (default 100, at most 500).
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/alerts", tag = "alerts", params(AlertQuery),
    responses((status = 200, description = "The user's alerts, newest first", body = [Alert])))]
async fn list_alerts(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<AlertQuery>,
) -> Result<Json<Vec<Alert>>, ApiError> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(AlertStatus::parse(s).ok_or_else(|| {
            ApiError::invalid(
                "status",
                format!("{s:?} is not a status; use firing, acknowledged or resolved"),
            )
        })?),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    Ok(Json(alerts::list_for_user(&state.db, user.id, status, limit).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct AlertPath {
    /// The alert's id.
    id: i64,
}

async fn move_alert(
    state: &AppState,
    user: &CurrentUser,
    id: i64,
    to: AlertStatus,
) -> Result<Json<Alert>, ApiError> {
    let mut tx = state.db.begin().await?;
    let moved = alerts::set_status(&mut tx, user.id, id, to).await?;
    tx.commit().await?;
    match moved {
        Move::Done(alert) => Ok(Json(alert)),
        Move::NotFound => Err(ApiError::NotFound("no such alert".into())),
        Move::From(current) => {
            Err(ApiError::Conflict(format!("the alert is {current}; it cannot be {to} now")))
        }
    }
}

/// Acknowledges a firing alert: it stays open (so its rule does not fire again) until its
/// condition clears or a user resolves it.
#[utoipa::path(post, path = "/api/alerts/{id}/acknowledge", tag = "alerts", params(AlertPath),
    responses((status = 200, description = "The alert", body = Alert)))]
async fn acknowledge(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(path): ApiPath<AlertPath>,
) -> Result<Json<Alert>, ApiError> {
    move_alert(&state, &user, path.id, AlertStatus::Acknowledged).await
}

/// Resolves an alert by hand.
#[utoipa::path(post, path = "/api/alerts/{id}/resolve", tag = "alerts", params(AlertPath),
    responses((status = 200, description = "The alert", body = Alert)))]
async fn resolve(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(path): ApiPath<AlertPath>,
) -> Result<Json<Alert>, ApiError> {
    move_alert(&state, &user, path.id, AlertStatus::Resolved).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(kind: &str, threshold: Option<f64>, sustain: Option<i64>) -> RuleRequest {
        RuleRequest { kind: kind.into(), threshold, sustain_minutes: sustain }
    }

    #[test]
    fn rules_are_checked_with_errors_that_name_the_field_and_the_range() {
        let bad = |r: RuleRequest| match parse_rule(&r) {
            Err(ApiError::Invalid { field, message }) => format!("{field}: {message}"),
            other => panic!("{other:?}"),
        };
        assert!(bad(req("disk", None, None)).starts_with("kind: \"disk\" is not a rule kind"));
        assert!(bad(req("webhook_disabled", None, None)).starts_with("kind:"));
        assert!(bad(req("cpu", None, None)).contains("needs a threshold in % of one core"));
        assert!(bad(req("memory", Some(150.0), None)).contains("between 1 and 100"));
        assert!(bad(req("network", Some(-5.0), None)).starts_with("threshold:"));
        assert!(bad(req("crashloop", Some(3.0), None)).contains("leave threshold null"));
        assert!(bad(req("cpu", Some(90.0), Some(2000))).starts_with("sustain_minutes:"));
        assert_eq!(parse_rule(&req("cpu", Some(90.0), None)).ok(), Some((AlertKind::Cpu, Some(90.0), 5)));
        assert_eq!(parse_rule(&req("offline", None, None)).ok(), Some((AlertKind::Offline, None, 0)));
    }
}
