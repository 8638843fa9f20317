//! Sign-in and sign-out (SPEC §14.1): `GET /api/auth/google/login` and `/callback` (OpenID
//! Connect), `POST /api/auth/totp` (the second step), `POST /api/auth/dev-login`
//! (single-machine mode only; 404 otherwise), `POST /api/auth/logout`, and `GET /api/me`.
//!
//! Every sign-in failure ends at `/login?error=<code>` with no session and an
//! `auth.login_failed` audit row. Cookies have `__Host-` semantics: no `Domain`, `Path=/`,
//! `HttpOnly`, `SameSite=Lax`, and `Secure` when `public_url` is https. A session token is
//! always new at sign-in (never one the browser brought).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{CurrentUser, SESSION_COOKIE, audit_user, cookie};
use super::{ApiError, ApiJson, ApiQuery};
use crate::config::Config;
use crate::identity::oidc::OidcError;
use crate::ratelimit::client_key;
use crate::state::AppState;
use crate::store::audit::{self, AuditAction, AuditEvent};
use crate::store::totp as totp_store;
use crate::store::users::{IdentityError, SignedIn};
use crate::store::{apps, signin, users};

/// Binds a sign-in's `state` to the browser that began it.
pub const OIDC_COOKIE: &str = "wh_oidc";
/// Holds a sign-in waiting for its second factor.
pub const TWO_FACTOR_COOKIE: &str = "wh_2fa";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(google_login))
        .routes(routes!(google_callback))
        .routes(routes!(second_factor))
        .routes(routes!(dev_login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(platform))
}

/// What this installation is, how people sign in here, and whether this browser is signed
/// in; public (the landing and sign-in pages read it), never a 401.
#[utoipa::path(get, path = "/api/platform", tag = "sign-in", security(()),
    responses((status = 200, description = "The platform's version, mode and sign-in methods", body = Platform)))]
async fn platform(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Platform>, ApiError> {
    let signed_in = match cookie(&headers, SESSION_COOKIE) {
        Some(token) => users::session_user(&state.db, token).await?.is_some(),
        None => false,
    };
    Ok(Json(platform_of(&state, signed_in)))
}

fn platform_of(state: &AppState, signed_in: bool) -> Platform {
    let config = &state.config;
    let mode = if config.single_machine { "single_machine" } else { "multi_host" };
    Platform {
        version: env!("CARGO_PKG_VERSION").into(),
        mode: mode.into(),
        sign_in: SignInMethods { oidc: state.oidc.is_some(), dev_login: config.single_machine },
        signed_in,
        git_providers: linkable(state),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
struct DevLogin {
    email: String,
}

fn valid_email(email: &str) -> bool {
    let email = email.trim();
    (3..=254).contains(&email.len())
        && !email.chars().any(|c| c.is_control() || c.is_whitespace())
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !domain.contains('@'))
}

/// A cookie of ours: `Path=/`, no `Domain`, HttpOnly, SameSite=Lax, `Secure` whenever users
/// reach the platform over HTTPS (T01). `max_age_secs` 0 deletes it.
fn cookie_header(
    config: &Config,
    name: &str,
    value: &str,
    max_age_secs: i64,
) -> Result<HeaderValue, ApiError> {
    let https = config.api_server.public_url.as_deref().is_some_and(|u| u.starts_with("https://"));
    let secure = if https { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    ))
    .map_err(|_| ApiError::Internal(format!("cannot build the {name} cookie")))
}

fn session_cookie(config: &Config, token: &str) -> Result<HeaderValue, ApiError> {
    cookie_header(config, SESSION_COOKIE, token, i64::from(users::SESSION_DAYS) * 86_400)
}

fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok())
}

/// A 302 to `location` setting `cookies`.
pub(super) fn redirect(location: &str, cookies: Vec<HeaderValue>) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

fn oidc_off() -> ApiError {
    ApiError::NotFound(
        "sign-in with an OpenID provider is not configured on this installation; an operator sets oidc.client_id and the credential google_oauth_client_secret".into(),
    )
}

/// Begins a sign-in: 302 to the provider with `state`, `nonce` and a PKCE challenge, and a
/// 10-minute `wh_oidc` cookie binding the state to this browser.
#[utoipa::path(get, path = "/api/auth/google/login", tag = "sign-in", security(()),
    responses((status = 302, description = "To the provider's authorization endpoint, with a short-lived `wh_oidc` cookie")))]
async fn google_login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    state.sign_in_limiter.check(client_key(peer.ip()))?;
    let oidc = state.oidc.as_ref().ok_or_else(oidc_off)?;
    let started = match oidc.start().await {
        Ok(started) => started,
        Err(e) => return Ok(failed_sign_in(&state, peer, None, &SignInFailure::Oidc(e)).await),
    };
    let browser = wisehosting_crypto::random_token("");
    signin::begin_oidc(&state.db, &started.state, &browser, &started.nonce, &started.pkce_verifier).await?;
    let max_age = i64::from(signin::OIDC_LOGIN_MINUTES) * 60;
    let cookie = cookie_header(&state.config, OIDC_COOKIE, &browser, max_age)?;
    Ok(redirect(&started.authorize_url, vec![cookie]))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CallbackQuery {
    /// The authorization code.
    code: Option<String>,
    /// The `state` the sign-in began with.
    state: Option<String>,
    /// The provider's refusal (`access_denied` when the person said no).
    error: Option<String>,
}

/// Why a sign-in ended without a session.
#[derive(Debug, thiserror::Error)]
enum SignInFailure {
    #[error("the provider answered with an error: {0}")]
    Provider(String),
    #[error("the callback lacks its code or state")]
    Incomplete,
    #[error("the sign-in's state is unknown, used, expired, or was begun in another browser")]
    BadState,
    #[error(transparent)]
    Oidc(#[from] OidcError),
    #[error("another account uses this email address")]
    EmailTaken,
    #[error("this account is disabled")]
    Disabled,
    #[error("a wrong or used second-factor code")]
    SecondFactor,
    #[error("internal error: {0}")]
    Internal(String),
}

impl SignInFailure {
    fn code(&self) -> &'static str {
        match self {
            SignInFailure::Provider(_) => "provider_error",
            SignInFailure::Incomplete => "bad_request",
            SignInFailure::BadState => "bad_state",
            SignInFailure::Oidc(e) => e.code(),
            SignInFailure::EmailTaken => "email_taken",
            SignInFailure::Disabled => "account_disabled",
            SignInFailure::SecondFactor => "invalid_totp",
            SignInFailure::Internal(_) => "server_error",
        }
    }
}

impl From<sqlx::Error> for SignInFailure {
    fn from(e: sqlx::Error) -> Self {
        SignInFailure::Internal(e.to_string())
    }
}

/// What a successful first step leads to.
enum SignInStep {
    /// A session: the raw `wh_session` token.
    Session(String),
    /// A second factor is due: the raw `wh_2fa` token.
    SecondFactor(String),
}

/// Ends a sign-in: a session (302 to `/`), a second step (302 to `/login/2fa`), or a failure
/// (302 to `/login?error=<code>`, audited). The `wh_oidc` cookie is cleared in every case.
#[utoipa::path(get, path = "/api/auth/google/callback", tag = "sign-in", security(()), params(CallbackQuery),
    responses((status = 302, description = "To `/` with `wh_session`, to `/login/2fa` with `wh_2fa`, or to `/login?error=<code>`")))]
async fn google_callback(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<CallbackQuery>,
) -> Result<Response, ApiError> {
    state.sign_in_limiter.check(client_key(peer.ip()))?;
    let oidc = state.oidc.clone().ok_or_else(oidc_off)?;
    let clear = cookie_header(&state.config, OIDC_COOKIE, "", 0)?;
    let browser = cookie(&headers, OIDC_COOKIE).map(str::to_string);
    let result = async {
        if let Some(error) = q.error {
            return Err(SignInFailure::Provider(error.chars().take(100).collect()));
        }
        let (Some(code), Some(state_param)) = (q.code, q.state) else {
            return Err(SignInFailure::Incomplete);
        };
        let browser = browser.ok_or(SignInFailure::BadState)?;
        let (nonce, verifier) =
            signin::take_oidc(&state.db, &state_param, &browser).await?.ok_or(SignInFailure::BadState)?;
        let identity = oidc.finish(&code, &verifier, &nonce).await?;
        let mut tx = state.db.begin().await?;
        let signed_in = users::sign_in_identity(
            &mut *tx,
            &identity.issuer,
            &identity.subject,
            &identity.email,
            &identity.name,
        )
        .await
        .map_err(|e| match e {
            IdentityError::EmailTaken => SignInFailure::EmailTaken,
            IdentityError::Db(e) => SignInFailure::from(e),
        })?;
        let SignedIn { user_id, totp_enabled, disabled } = signed_in;
        if disabled {
            return Err(SignInFailure::Disabled);
        }
        let ip = peer.ip().to_string();
        let step = if totp_enabled {
            SignInStep::SecondFactor(
                signin::open_challenge(&mut *tx, user_id, Some(&ip), user_agent(&headers)).await?,
            )
        } else {
            let token = users::create_session(&mut *tx, user_id, Some(&ip), user_agent(&headers)).await?;
            record_login(&mut *tx, user_id, &ip, "oidc").await?;
            SignInStep::Session(token)
        };
        tx.commit().await?;
        Ok(step)
    }
    .await;
    Ok(match result {
        Ok(SignInStep::Session(token)) => redirect("/", vec![clear, session_cookie(&state.config, &token)?]),
        Ok(SignInStep::SecondFactor(token)) => {
            let max_age = i64::from(signin::CHALLENGE_MINUTES) * 60;
            redirect(
                "/login/2fa",
                vec![clear, cookie_header(&state.config, TWO_FACTOR_COOKIE, &token, max_age)?],
            )
        }
        Err(failure) => {
            let mut response = failed_sign_in(&state, peer, None, &failure).await;
            response.headers_mut().append(header::SET_COOKIE, clear);
            response
        }
    })
}

/// The audit row of a sign-in that failed, and the redirect to `/login?error=<code>`.
async fn failed_sign_in(
    state: &AppState,
    peer: SocketAddr,
    user_id: Option<i64>,
    failure: &SignInFailure,
) -> Response {
    audit_failure(state, peer, user_id, failure).await;
    redirect(&format!("/login?error={}", failure.code()), Vec::new())
}

/// The `auth.login_failed` row of a sign-in that failed (logged when even that fails).
async fn audit_failure(state: &AppState, peer: SocketAddr, user_id: Option<i64>, failure: &SignInFailure) {
    let code = failure.code();
    match failure {
        SignInFailure::Internal(_) | SignInFailure::Oidc(OidcError::Provider(_)) => {
            tracing::warn!(error = %failure, code, "sign-in failed")
        }
        _ => tracing::info!(error = %failure, code, "sign-in refused"),
    }
    let actor = format!("ip:{}", peer.ip());
    let detail: String = failure.to_string().chars().take(500).collect();
    let event = AuditEvent {
        user_id,
        actor: &actor,
        action: AuditAction::AuthLoginFailed,
        target_type: Some("session"),
        target_id: None,
        ip: Some(peer.ip().to_string()),
        detail: json!({ "reason": code, "detail": detail }),
    };
    if let Err(e) = audit::record(&state.db, event).await {
        tracing::error!(error = %e, "cannot record a failed sign-in in the audit trail");
    }
}

async fn record_login(
    db: impl sqlx::PgExecutor<'_>,
    user_id: i64,
    ip: &str,
    method: &str,
) -> Result<(), sqlx::Error> {
    let actor = format!("user:{user_id}");
    audit::record(
        db,
        AuditEvent {
            user_id: Some(user_id),
            actor: &actor,
            action: AuditAction::AuthLogin,
            target_type: Some("session"),
            target_id: None,
            ip: Some(ip.to_string()),
            detail: json!({ "method": method }),
        },
    )
    .await
}

/// A second-factor code (the sign-in's second step, turning 2FA on or off).
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct CodeBody {
    /// Six digits from the authenticator app, or (where accepted) an unused recovery code.
    pub(super) code: String,
}

/// Which second factor a code was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    Totp,
    RecoveryCode,
}

/// Checks a second-factor code of a user with 2FA on: a TOTP code of a step not used before
/// (the step is recorded, so of parallel requests with one code one wins), or an unused
/// recovery code (used up). After 5 wrong codes in a minute every try is 429 until the minute
/// ends (SPEC §14.1: the limit counts wrong codes per user).
pub async fn check_second_factor(state: &AppState, user_id: i64, code: &str) -> Result<Factor, ApiError> {
    refuse_after_wrong_codes(state, user_id).await?;
    let result = verify_second_factor(state, user_id, code).await;
    if matches!(result, Err(ApiError::InvalidTotp)) {
        totp_store::count_wrong_code(&state.db, user_id).await?;
    }
    result
}

/// 429 once the user has had 5 wrong codes this minute.
pub async fn refuse_after_wrong_codes(state: &AppState, user_id: i64) -> Result<(), ApiError> {
    let limit = crate::identity::totp::TRIES_PER_MINUTE;
    match totp_store::wrong_code_wait(&state.db, user_id, limit).await? {
        Some(retry_after_secs) => Err(ApiError::RateLimited { retry_after_secs }),
        None => Ok(()),
    }
}

async fn verify_second_factor(state: &AppState, user_id: i64, code: &str) -> Result<Factor, ApiError> {
    let secret =
        totp_store::enabled_secret(&state.db, &state.sealer, user_id).await?.ok_or(ApiError::InvalidTotp)?;
    let now = crate::identity::totp::now_unix();
    if let Some(step) = crate::identity::totp::matching_step(&secret, code, now) {
        return if totp_store::use_step(&state.db, user_id, step).await? {
            Ok(Factor::Totp)
        } else {
            Err(ApiError::InvalidTotp)
        };
    }
    if let Some(recovery) = crate::identity::totp::normalize_recovery_code(code)
        && totp_store::use_recovery_code(&state.db, user_id, &recovery).await?
    {
        return Ok(Factor::RecoveryCode);
    }
    Err(ApiError::InvalidTotp)
}

/// The second step: `{"code"}` with the `wh_2fa` cookie → 200 `{"user"}` and a new
/// `wh_session`; a wrong or used code → 401 `invalid_totp`; past 5 tries a minute → 429.
#[utoipa::path(post, path = "/api/auth/totp", tag = "sign-in", security(("two_factor" = [])), request_body = CodeBody,
    responses((status = 200, description = "Signed in; `wh_session` is set", body = SignedInUser)))]
async fn second_factor(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CodeBody>,
) -> Result<Response, ApiError> {
    let token = cookie(&headers, TWO_FACTOR_COOKIE).ok_or(ApiError::Unauthorized)?;
    let challenge = signin::challenge(&state.db, token).await?.ok_or(ApiError::Unauthorized)?;
    let factor = match check_second_factor(&state, challenge.user_id, &body.code).await {
        Ok(factor) => factor,
        Err(ApiError::InvalidTotp) => {
            audit_failure(&state, peer, Some(challenge.user_id), &SignInFailure::SecondFactor).await;
            return Err(ApiError::InvalidTotp);
        }
        Err(e) => return Err(e),
    };
    let ip = peer.ip().to_string();
    let mut tx = state.db.begin().await?;
    if !signin::close_challenge(&mut *tx, challenge.id).await? {
        return Err(ApiError::Unauthorized);
    }
    let session = users::create_session(&mut *tx, challenge.user_id, Some(&ip), user_agent(&headers)).await?;
    let method = match factor {
        Factor::Totp => "oidc+totp",
        Factor::RecoveryCode => "oidc+recovery_code",
    };
    record_login(&mut *tx, challenge.user_id, &ip, method).await?;
    tx.commit().await?;
    let profile = users::profile(&state.db, challenge.user_id).await?.ok_or(ApiError::Unauthorized)?;
    let mut response = (StatusCode::OK, Json(SignedInUser { user: profile })).into_response();
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, session_cookie(&state.config, &session)?);
    headers.append(header::SET_COOKIE, cookie_header(&state.config, TWO_FACTOR_COOKIE, "", 0)?);
    Ok(response)
}

/// Signed in: the user, with the session in `wh_session`.
#[derive(Debug, Serialize, ToSchema)]
struct SignedInUser {
    user: users::Profile,
}

#[utoipa::path(post, path = "/api/auth/dev-login", tag = "sign-in", security(()), request_body = DevLogin,
    responses((status = 200, description = "Signed in (single-machine mode only; 404 otherwise)", body = DevUser)))]
async fn dev_login(
    State(state): State<AppState>,
    ConnectInfo(ip): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<DevLogin>,
) -> Result<Response, ApiError> {
    if !state.config.single_machine {
        return Err(ApiError::NotFound("no such endpoint; see the API documentation for the paths".into()));
    }
    if !valid_email(&body.email) {
        return Err(ApiError::invalid("email", "give an email address like you@example.com"));
    }
    let user_id = users::upsert_by_email(&state.db, body.email.trim()).await?;
    let mut tx = state.db.begin().await?;
    let ip = ip.ip().to_string();
    let token = users::create_session(&mut *tx, user_id, Some(&ip), user_agent(&headers)).await?;
    record_login(&mut *tx, user_id, &ip, "dev-login").await?;
    tx.commit().await?;
    let user = DevUserView { id: user_id, email: body.email.trim().to_string() };
    let mut response = (StatusCode::OK, Json(DevUser { user })).into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&state.config, &token)?);
    Ok(response)
}

/// Signed in by the dev login.
#[derive(Debug, Serialize, ToSchema)]
struct DevUser {
    user: DevUserView,
}

#[derive(Debug, Serialize, ToSchema)]
struct DevUserView {
    id: i64,
    email: String,
}

#[utoipa::path(post, path = "/api/auth/logout", tag = "sign-in",
    responses((status = 204, description = "Signed out: the session is revoked")))]
async fn logout(State(state): State<AppState>, user: CurrentUser) -> Result<Response, ApiError> {
    let session_id = user.session_id()?;
    let mut tx = state.db.begin().await?;
    users::revoke_session(&mut *tx, session_id).await?;
    audit_user(&mut *tx, &user, AuditAction::AuthLogout, "session", session_id, json!({})).await?;
    tx.commit().await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie_header(&state.config, SESSION_COOKIE, "", 0)?);
    Ok(response)
}

/// The dashboard's global state (SPEC §14.1): the user, their plan and its limits, their apps
/// with status and URL, linked git provider accounts and the platform.
#[utoipa::path(get, path = "/api/me", tag = "account",
    responses((status = 200, description = "The user, their plan, apps, linked providers and the platform", body = Me)))]
async fn me(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Me>, ApiError> {
    let profile = users::profile(&state.db, user.id).await?.ok_or(ApiError::Unauthorized)?;
    let config = &state.config;
    let apps = apps::summaries_for_user(&state.db, user.id)
        .await?
        .into_iter()
        .map(|a| {
            let host = crate::routing::platform_hostname(&a.slug, a.zone.as_deref(), &config.subdomain_base);
            let port = config.apps_port.map(|p| format!(":{p}")).unwrap_or_default();
            let url = format!("http://{host}{port}/");
            let last_deployment = match (a.last_deployment_id, a.last_deployment_status, a.last_deployment_at)
            {
                (Some(id), Some(status), Some(created_at)) => Some(LastDeployment { id, status, created_at }),
                _ => None,
            };
            AppSummary { id: a.id, name: a.name, slug: a.slug, status: a.status, url, last_deployment }
        })
        .collect::<Vec<AppSummary>>();
    let usage = super::usage::summary(&state, &user, i64::try_from(apps.len()).unwrap_or(i64::MAX)).await?;
    Ok(Json(Me {
        user: profile,
        plan: state.plans.get(&user.plan).view(),
        usage,
        apps,
        git_providers: crate::store::gitlinks::list(&state.db, user.id).await?,
        platform: platform_of(&state, true),
    }))
}

/// The dashboard's global state.
#[derive(Debug, Serialize, ToSchema)]
struct Me {
    user: users::Profile,
    plan: crate::plans::PlanView,
    /// Apps and deploys against the plan's limits, and this month's usage.
    usage: super::usage::UsageSummary,
    apps: Vec<AppSummary>,
    /// Linked git provider accounts.
    git_providers: Vec<crate::store::gitlinks::LinkView>,
    platform: Platform,
}

#[derive(Debug, Serialize, ToSchema)]
struct AppSummary {
    id: i64,
    name: String,
    slug: String,
    status: crate::domain::AppStatus,
    /// Where the app answers.
    url: String,
    /// The app's newest deployment, if any.
    last_deployment: Option<LastDeployment>,
}

#[derive(Debug, Serialize, ToSchema)]
struct LastDeployment {
    id: i64,
    status: crate::domain::DeploymentStatus,
    created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Platform {
    version: String,
    /// `single_machine` or `multi_host`.
    mode: String,
    sign_in: SignInMethods,
    /// Whether the request came with a live session (always true inside `/api/me`).
    signed_in: bool,
    /// Git providers whose accounts can be linked here (`github`, `gitlab`, `bitbucket`,
    /// `codeberg`); never a way to sign in.
    git_providers: Vec<String>,
}

/// How people can sign in here.
#[derive(Debug, Serialize, ToSchema)]
struct SignInMethods {
    oidc: bool,
    dev_login: bool,
}

/// Git providers whose accounts can be linked here (configured by the operators).
fn linkable(state: &AppState) -> Vec<String> {
    state.git_links.configured().into_iter().map(|p| p.as_str().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_need_one_at_and_no_spaces() {
        assert!(valid_email("a@b"));
        assert!(valid_email("dev@example.com"));
        for bad in ["", "ab", "a@", "@b", "a b@c", "a@b@c", "a\n@b"] {
            assert!(!valid_email(bad), "{bad:?}");
        }
    }

    #[test]
    fn cookies_are_host_only_for_the_whole_site_and_secure_whenever_the_public_url_is_https() {
        let mut config = Config::default();
        let plain = cookie_header(&config, SESSION_COOKIE, "t", 60).expect("cookie");
        let text = plain.to_str().unwrap_or_default();
        assert!(!text.contains("Secure") && !text.contains("Domain"), "{text}");
        assert!(text.contains("; Path=/;") && text.contains("HttpOnly; SameSite=Lax"), "{text}");
        config.api_server.public_url = Some("https://paas.example.com".into());
        for name in [SESSION_COOKIE, TWO_FACTOR_COOKIE, OIDC_COOKIE] {
            let secure = cookie_header(&config, name, "t", 60).expect("cookie");
            let text = secure.to_str().unwrap_or_default();
            assert!(text.ends_with("; Secure") && text.contains("HttpOnly; SameSite=Lax"), "{text}");
            assert!(!text.contains("Domain"), "{text}");
        }
    }

    #[test]
    fn every_sign_in_failure_has_its_own_code() {
        let failures = [
            SignInFailure::Provider("access_denied".into()),
            SignInFailure::Incomplete,
            SignInFailure::BadState,
            SignInFailure::Oidc(OidcError::Provider("down".into())),
            SignInFailure::Oidc(OidcError::CodeRejected("used".into())),
            SignInFailure::Oidc(OidcError::InvalidToken("bad".into())),
            SignInFailure::Oidc(OidcError::EmailUnverified),
            SignInFailure::EmailTaken,
            SignInFailure::Disabled,
            SignInFailure::SecondFactor,
            SignInFailure::Internal("db".into()),
        ];
        let codes: std::collections::HashSet<_> = failures.iter().map(SignInFailure::code).collect();
        assert_eq!(codes.len(), failures.len());
        assert!(codes.iter().all(|c| c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    }
}
