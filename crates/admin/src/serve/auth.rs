//! Signing in to the console: its own accounts (never users'), bcrypt passwords, sessions in
//! `admin_sessions` behind the `wh_admin` cookie (HttpOnly, SameSite=Strict, `Path=/admin`,
//! Secure over HTTPS; 60 minutes idle, 8 hours at most).
//!
//! Guessing is slowed twice: per username — known or not, so the answer never tells which
//! exist — after [`FREE_TRIES`] failures in a row each try waits twice as long as the last
//! (1 s, 2 s, 4 s … up to [`MAX_WAIT`]) and is refused unchecked before then; and per client
//! address by a rate limit. An unknown username costs the same bcrypt verification as a
//! wrong password (against a hash made at start-up), and both get the same 401.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;
use wisehosting_control_plane::domain::AdminRole;
use wisehosting_control_plane::http::extract::cookie;
use wisehosting_control_plane::http::{ApiError, ApiJson};
use wisehosting_control_plane::identity::totp;
use wisehosting_control_plane::ratelimit::{RateLimiter, client_key};
use wisehosting_control_plane::store::admin;
use wisehosting_crypto::{random_token, sha256_hex};

use super::{ClientAddr, Console};

pub const COOKIE: &str = "wh_admin";
/// A session ends after this long without a request…
pub const IDLE: Duration = Duration::from_secs(60 * 60);
/// …and this long after sign-in whatever happens.
pub const ABSOLUTE: Duration = Duration::from_secs(8 * 60 * 60);
/// Failures in a row a username may have before each try must wait.
pub const FREE_TRIES: u32 = 3;
/// The longest wait between tries.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Sign-in attempts one client address may make per minute.
const PER_IP_PER_MINUTE: u32 = 20;
/// Usernames tracked for back-off before old entries are dropped.
const TRACKED: usize = 10_000;

/// The signed-in admin of a request and their roles at this instant.
#[derive(Debug, Clone)]
pub struct Admin {
    pub session_id: i64,
    pub id: i64,
    pub username: String,
    pub roles: Vec<AdminRole>,
    pub ip: Option<String>,
}

impl Admin {
    /// How the audit trail names them.
    pub fn actor(&self) -> String {
        format!("admin:{}", self.username)
    }
}

fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts.extensions.get::<axum::extract::ConnectInfo<ClientAddr>>().map(|c| c.0.0.ip().to_canonical())
}

impl FromRequestParts<Console> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, ApiError> {
        let token = cookie(&parts.headers, COOKIE).ok_or(ApiError::Unauthorized)?;
        let session = admin::touch_session(&console.db, &sha256_hex(token.as_bytes()), IDLE.as_secs() as i64)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        let roles = admin::roles_at(&console.db, session.admin_id, Utc::now()).await?;
        Ok(Admin {
            session_id: session.session_id,
            id: session.admin_id,
            username: session.username,
            roles,
            ip: client_ip(parts).map(|ip| ip.to_string()),
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Back-off per username and a rate limit per address.
pub struct SignIns {
    failures: Mutex<HashMap<String, Failures>>,
    per_ip: RateLimiter,
}

impl std::fmt::Debug for SignIns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIns").finish_non_exhaustive()
    }
}

impl Default for SignIns {
    fn default() -> Self {
        Self {
            failures: Mutex::default(),
            per_ip: RateLimiter::new(PER_IP_PER_MINUTE, Duration::from_secs(60)),
        }
    }
}

/// The wait after `count` failures in a row: none for the first [`FREE_TRIES`], then 1 s
/// doubling to [`MAX_WAIT`].
pub fn wait_after(count: u32) -> Duration {
    match count.checked_sub(FREE_TRIES) {
        None => Duration::ZERO,
        Some(extra) => Duration::from_secs(1u64 << extra.min(20)).min(MAX_WAIT),
    }
}

impl SignIns {
    /// How long `username` must still wait before a try is checked.
    fn must_wait(&self, username: &str) -> Option<Duration> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let f = map.get(username)?;
        wait_after(f.count).checked_sub(f.last.elapsed()).filter(|d| !d.is_zero())
    }

    fn failed(&self, username: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= TRACKED && !map.contains_key(username) {
            map.retain(|_, f| f.last.elapsed() < MAX_WAIT);
            if map.len() >= TRACKED {
                map.clear();
            }
        }
        let entry = map.entry(username.to_string()).or_insert(Failures { count: 0, last: Instant::now() });
        entry.count = entry.count.saturating_add(1);
        entry.last = Instant::now();
    }

    fn succeeded(&self, username: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(username);
    }
}

#[derive(Debug, Deserialize)]
pub struct Login {
    username: String,
    password: String,
    #[serde(default)]
    totp_code: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Me {
    username: String,
    roles: Vec<AdminRole>,
}

fn session_cookie(console: &Console, value: &str, max_age: Duration) -> Result<HeaderValue, ApiError> {
    let secure = if console.secure_cookie { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        max_age.as_secs()
    ))
    .map_err(|e| ApiError::Internal(format!("cookie header: {e}")))
}

/// `POST /admin/api/login`.
pub async fn login(
    State(console): State<Console>,
    axum::extract::ConnectInfo(ClientAddr(peer)): axum::extract::ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Login>,
) -> Result<Response, ApiError> {
    let ip = peer.ip().to_canonical();
    console.sign_ins.per_ip.check(client_key(ip))?;
    // Long or odd names are looked up all the same (and found nowhere), so they cost the same.
    let username: String = body.username.chars().take(64).collect();
    if let Some(wait) = console.sign_ins.must_wait(&username) {
        return Err(ApiError::RateLimited { retry_after_secs: wait.as_secs().max(1) });
    }
    let account = admin::login_account(&console.db, &username).await?;
    let hash = account.as_ref().map_or_else(|| console.dummy_hash.to_string(), |a| a.password_hash.clone());
    let password = body.password;
    let matches = tokio::task::spawn_blocking(move || {
        password.len() <= crate::password::MAX_BYTES && bcrypt::verify(&password, &hash).unwrap_or(false)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("password check: {e}")))?;
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect::<String>());
    let ip_text = ip.to_string();
    let account = match account {
        Some(a) if matches && a.active => a,
        other => {
            let why = match &other {
                None => "unknown username",
                Some(a) if !a.active => "inactive account",
                Some(_) => "wrong password",
            };
            refuse(&console, &username, other.as_ref().map(|a| a.id), &ip_text, why).await?;
            return Err(ApiError::InvalidCredentials);
        }
    };
    if let Some(sealed) = &account.totp_sealed {
        let sealer = console.sealer.as_ref().ok_or_else(|| {
            ApiError::NotReady(
                "this account has a second factor and the console cannot check it: give wisehosting-admin the control plane's api_server.secret (credential api_server_secret)".into(),
            )
        })?;
        let secret = admin::open_totp(sealer, account.id, sealed)
            .map_err(|e| ApiError::Internal(format!("second factor: {e}")))?;
        let step =
            body.totp_code.as_deref().and_then(|code| totp::matching_step(&secret, code, totp::now_unix()));
        let fresh = match step {
            Some(step) => admin::use_totp_step(&console.db, account.id, step).await?,
            None => false,
        };
        if !fresh {
            let why = match body.totp_code {
                None => "no second-factor code",
                Some(_) => "wrong or used second-factor code",
            };
            refuse(&console, &username, Some(account.id), &ip_text, why).await?;
            return Err(ApiError::InvalidTotp);
        }
    }
    console.sign_ins.succeeded(&username);
    let token = random_token("wha_");
    let expires_at = Utc::now() + ABSOLUTE;
    let mut tx = console.db.begin().await?;
    admin::create_session(
        &mut *tx,
        account.id,
        &sha256_hex(token.as_bytes()),
        (Some(&ip_text), user_agent.as_deref()),
        expires_at,
    )
    .await?;
    admin::record_login(&mut *tx, account.id, true).await?;
    admin::audit(
        &mut *tx,
        Some(account.id),
        &format!("admin:{username}"),
        "admin.login",
        ("admin", &username),
        json!({}),
        Some(&ip_text),
    )
    .await?;
    tx.commit().await?;
    let roles = admin::roles_at(&console.db, account.id, Utc::now()).await?;
    let mut response = Json(Me { username, roles }).into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&console, &token, ABSOLUTE)?);
    Ok(response)
}

/// A refused sign-in: counted for the back-off and on the account, and audited with `why`.
async fn refuse(
    console: &Console,
    username: &str,
    account: Option<i64>,
    ip: &str,
    why: &str,
) -> Result<(), ApiError> {
    console.sign_ins.failed(username);
    let mut tx = console.db.begin().await?;
    if let Some(id) = account {
        admin::record_login(&mut *tx, id, false).await?;
    }
    let detail = json!({ "reason": why });
    let actor = format!("ip:{ip}");
    admin::audit(&mut *tx, account, &actor, "admin.login_failed", ("admin", username), detail, Some(ip))
        .await?;
    tx.commit().await?;
    Ok(())
}

/// `GET /admin/api/me`.
pub async fn me(admin: Admin) -> Json<Me> {
    Json(Me { username: admin.username, roles: admin.roles })
}

/// `POST /admin/api/logout`: the session ends and the cookie is cleared.
pub async fn logout(State(console): State<Console>, admin: Admin) -> Result<Response, ApiError> {
    let mut tx = console.db.begin().await?;
    admin::revoke_session(&mut *tx, admin.session_id).await?;
    admin::audit(
        &mut *tx,
        Some(admin.id),
        &admin.actor(),
        "admin.logout",
        ("admin", &admin.username),
        json!({}),
        admin.ip.as_deref(),
    )
    .await?;
    tx.commit().await?;
    let mut response = Json(json!({ "signed_out": true })).into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&console, "", Duration::ZERO)?);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_after_the_free_tries_up_to_the_cap() {
        assert_eq!(wait_after(0), Duration::ZERO);
        assert_eq!(wait_after(FREE_TRIES - 1), Duration::ZERO);
        assert_eq!(wait_after(FREE_TRIES), Duration::from_secs(1));
        assert_eq!(wait_after(FREE_TRIES + 3), Duration::from_secs(8));
        assert_eq!(wait_after(FREE_TRIES + 60), MAX_WAIT);
    }

    #[test]
    fn a_username_waits_after_repeated_failures_and_a_success_clears_it() {
        let s = SignIns::default();
        for _ in 0..FREE_TRIES - 1 {
            s.failed("ghost");
        }
        assert_eq!(s.must_wait("ghost"), None, "still within the free tries");
        s.failed("ghost");
        assert!(s.must_wait("ghost").is_some_and(|w| w <= Duration::from_secs(1)));
        assert_eq!(s.must_wait("other"), None, "other usernames are not affected");
        s.succeeded("ghost");
        assert_eq!(s.must_wait("ghost"), None);
    }
}
