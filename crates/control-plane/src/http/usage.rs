//! Usage per app and day (SPEC §14.3), and the summary `/api/me` shows against the plan.

use axum::Json;
use axum::extract::State;
use chrono::{Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiError;
use super::ApiQuery;
use super::extract::CurrentUser;
use crate::state::AppState;
use crate::store::usage::{self, Day, Totals};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_usage))
}

/// The longest range one request may ask for.
const MAX_DAYS: i64 = 400;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct UsageQuery {
    /// The first UTC day, `YYYY-MM-DD` (default: 29 days before `to`).
    from: Option<String>,
    /// The last UTC day, `YYYY-MM-DD` (default: today; today's figures are partial).
    to: Option<String>,
}

/// One app's days; days without usage are left out.
#[derive(Debug, Serialize, ToSchema)]
struct AppUsage {
    app_id: i64,
    name: String,
    days: Vec<Day>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Usage {
    apps: Vec<AppUsage>,
}

fn date(field: &str, text: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        ApiError::invalid(field, format!("{text:?} is not a date; give one like 2026-11-28 (UTC)"))
    })
}

#[utoipa::path(get, path = "/api/usage", tag = "usage", params(UsageQuery),
    responses((status = 200, description = "Usage of the user's apps per UTC day; unrounded", body = Usage)))]
async fn get_usage(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<Usage>, ApiError> {
    let to = match q.to.as_deref() {
        Some(t) => date("to", t)?,
        None => Utc::now().date_naive(),
    };
    let from = match q.from.as_deref() {
        Some(f) => date("from", f)?,
        None => to - chrono::Duration::days(29),
    };
    if from > to {
        return Err(ApiError::invalid("from", format!("{from} is after to ({to}); swap them")));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(ApiError::invalid("from", format!("ask for at most {MAX_DAYS} days at a time")));
    }
    let mut apps: Vec<AppUsage> = usage::apps_of(&state.db, user.id)
        .await?
        .into_iter()
        .map(|(app_id, name)| AppUsage { app_id, name, days: Vec::new() })
        .collect();
    for (app_id, _, day) in usage::days_for_user(&state.db, user.id, from, to).await? {
        if let Some(app) = apps.iter_mut().find(|a| a.app_id == app_id) {
            app.days.push(day);
        }
    }
    Ok(Json(Usage { apps }))
}

/// A figure and the plan's limit on it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Counted {
    pub used: i64,
    pub limit: i64,
}

/// What `/api/me` shows of the user's usage, against their plan.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageSummary {
    pub apps: Counted,
    /// Deploys in the last 24 hours.
    pub deploys_last_24h: Counted,
    /// This UTC month so far, over all apps.
    pub month: MonthTotals,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MonthTotals {
    pub from: NaiveDate,
    #[serde(flatten)]
    pub totals: Totals,
}

pub async fn summary(state: &AppState, user: &CurrentUser, apps: i64) -> Result<UsageSummary, ApiError> {
    let plan = state.plans.get(&user.plan);
    let mut conn = state.db.acquire().await?;
    let deploys = crate::store::deployments::count_for_user_last_day(&mut conn, user.id).await?;
    let today = Utc::now().date_naive();
    let from = today.with_day(1).unwrap_or(today);
    let mut month = MonthTotals { from, totals: Totals::default() };
    for (_, _, day) in usage::days_for_user(&state.db, user.id, from, today).await? {
        month.totals.add(&day.totals);
    }
    Ok(UsageSummary {
        apps: Counted { used: apps, limit: plan.max_apps },
        deploys_last_24h: Counted { used: deploys, limit: plan.deploys_per_day },
        month,
    })
}
