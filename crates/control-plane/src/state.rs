//! [`AppState`]: the handles every handler and task shares, passed with `.with_state`.

use std::sync::Arc;

use sqlx::PgPool;
use wisehosting_crypto::{Keyring, Sealer};

use crate::cloudflare::Cloudflare;
use crate::config::Config;
use crate::dns::TxtResolver;
use crate::hub::Hub;
use crate::logbus::LogBus;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub config: Arc<Config>,
    pub keys: Arc<Keyring>,
    pub sealer: Arc<Sealer>,
    pub metrics: Arc<Metrics>,
    pub hub: Hub,
    pub logbus: Arc<LogBus>,
    /// Worker registration and token refresh, per client IP.
    pub worker_auth_limiter: Arc<RateLimiter>,
    /// Custom-domain adds and verifications (DNS lookups, Cloudflare calls), per user.
    pub domain_limiter: Arc<RateLimiter<i64>>,
    /// Every signed-in request, per user (`user_requests_per_minute`).
    pub user_limiter: Arc<RateLimiter<i64>>,
    /// Every API request, per client address (`ip_requests_per_minute`).
    pub ip_limiter: Arc<RateLimiter>,
    /// Sign-in starts and callbacks, per client address (`sign_in_per_minute`).
    pub sign_in_limiter: Arc<RateLimiter>,
    /// Push-webhook deliveries, per client address.
    pub push_limiter: Arc<RateLimiter>,
    /// Sign-in with the OpenID provider, when configured.
    pub oidc: Option<Arc<crate::identity::oidc::Oidc>>,
    /// The git providers users can link accounts of.
    pub git_links: crate::gitlink::GitLinks,
    /// Reads custom-domain verification records.
    pub dns: TxtResolver,
    /// Cloudflare for SaaS, when configured.
    pub cloudflare: Option<Cloudflare>,
    /// The plans this control plane offers (`free` and the config's).
    pub plans: Arc<crate::plans::Registry>,
    /// The SSRF-guarded client for URLs users give.
    pub outbound: crate::outbound::Guard,
}
