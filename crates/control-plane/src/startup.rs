//! [`App`]: builds the control plane from a [`Config`] and runs it until shutdown.
//!
//! The binary and the tests call the same [`App::build`]. Start-up order (SPEC §1): config →
//! database + migrations → the hub (sweeper, heartbeat flusher) → the dispatcher, the applier
//! of worker reports and the route pusher → public server → internal API (only with a token).
//! Shutdown: the [`CancellationToken`] stops accepting, in-flight requests finish, the pool is
//! closed, [`App::run`] returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wisehosting_crypto::{Keyring, Purpose, Sealer};

use crate::cloudflare::Cloudflare;
use crate::config::{Config, ConfigError};
use crate::db::{self, DbError};
use crate::dns::TxtResolver;
use crate::http;
use crate::hub::Hub;
use crate::jobs::dispatch::{self, Dispatcher};
use crate::logbus::LogBus;
use crate::metrics::Metrics;
use crate::observe::alerts::Evaluator;
use crate::observe::notify::Channels;
use crate::ratelimit::RateLimiter;
use crate::state::AppState;
use crate::store;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(
        "cannot listen on {addr}: {source}; is another process using the port? choose another with api_server.port"
    )]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot set up encryption keys: {0}")]
    Keys(String),
    #[error("cannot set up the Cloudflare client: {0}")]
    Cloudflare(String),
    #[error("cannot set up sign-in with the OpenID provider: {0}")]
    Oidc(String),
    #[error("cannot set up linking of git provider accounts: {0}")]
    GitLinks(String),
    #[error(transparent)]
    Tls(crate::tls::TlsError),
    #[error("{0}")]
    PlatformCertificate(String),
    #[error("cannot set up DNS lookups for custom domains: {0}")]
    Dns(String),
    #[error("cannot set up e-mail: {0}")]
    Smtp(String),
    #[error("cannot set up the outbound client: {0}")]
    Outbound(String),
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

pub struct App {
    state: AppState,
    /// Webhook sends in flight, drained at shutdown.
    webhook_sends: TaskTracker,
    public: TcpListener,
    internal: Option<TcpListener>,
    /// The public listener's TLS, when `api_server.tls_cert` is set.
    tls: Option<Arc<crate::tls::Reloadable>>,
    shutdown: CancellationToken,
}

impl App {
    /// Connects, migrates and binds. Nothing is served until [`App::run`].
    pub async fn build(config: Config) -> Result<App, StartupError> {
        config.require_for_serve()?;
        let pool = db::connect(&config.database).await?;
        db::check_clean(&pool).await?;
        let applied = db::migrate_up(&pool).await?;
        if applied > 0 {
            tracing::info!(applied, "applied database migrations");
        }
        let shutdown = CancellationToken::new();
        let state = build_state(config, pool, shutdown.clone())?;
        let version = state.sealer.active_version();
        let persisted = store::key_usage::load(&state.db, version).await.map_err(DbError::from)?;
        state.sealer.resume_seal_count(version, persisted);
        tokio::spawn(flush_seal_counts(state.db.clone(), state.sealer.clone(), shutdown.clone()));
        tokio::spawn(prune_lapsed(state.db.clone(), state.config.usage.clone(), shutdown.clone()));
        state.hub.start().await.map_err(DbError::from)?;
        let dispatcher = Dispatcher {
            db: state.db.clone(),
            hub: state.hub.clone(),
            sealer: state.sealer.clone(),
            plans: state.plans.clone(),
        };
        dispatch::spawn(dispatcher, shutdown.clone());
        crate::jobs::reschedule::spawn(
            state.clone(),
            Duration::from_secs(state.config.scheduler.reschedule_after_secs),
            shutdown.clone(),
        );
        let channels = Channels { email: state.config.smtp.enabled() };
        crate::jobs::events::spawn(
            state.db.clone(),
            state.hub.clone(),
            state.logbus.clone(),
            channels,
            shutdown.clone(),
        );
        let webhook_sends = start_observers(&state, channels, &shutdown)?;
        let base = state.config.subdomain_base.clone();
        crate::routing::spawn_pusher(
            state.db.clone(),
            state.sealer.clone(),
            state.hub.clone(),
            base,
            shutdown.clone(),
        );
        crate::acme::import_platform_certificate(
            &state.db,
            &state.sealer,
            &state.config.platform_certificate,
        )
        .await
        .map_err(StartupError::PlatformCertificate)?;
        let wildcard = crate::acme::Wildcard {
            config: &state.config.platform_certificate,
            subdomain_base: &state.config.subdomain_base,
            cloudflare: state.cloudflare.as_ref(),
        };
        crate::acme::spawn(
            state.db.clone(),
            state.sealer.clone(),
            state.hub.clone(),
            &state.config.acme,
            crate::acme::Setting { wildcard, channels },
            shutdown.clone(),
        );
        let api = &state.config.api_server;
        let tls = match (&api.tls_cert, &api.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(
                crate::tls::Reloadable::load(cert, key, crate::tls::API_KEYS).map_err(StartupError::Tls)?,
            )),
            _ => None,
        };
        let addr = SocketAddr::new(api.host, api.port);
        let public = TcpListener::bind(addr).await.map_err(|source| StartupError::Bind { addr, source })?;
        let internal = if state.config.internal_api.token.is_empty() {
            tracing::info!(
                "internal API disabled: set internal_api.token (systemd credential internal_api_token) to enable it for the admin console"
            );
            None
        } else {
            let addr = state.config.internal_api.bind;
            Some(TcpListener::bind(addr).await.map_err(|source| StartupError::Bind { addr, source })?)
        };
        Ok(App { state, webhook_sends, public, internal, tls, shutdown })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, std::io::Error> {
        self.public.local_addr()
    }

    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.internal.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Cancelling this token shuts the app down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn db(&self) -> PgPool {
        self.state.db.clone()
    }

    pub fn hub(&self) -> Hub {
        self.state.hub.clone()
    }

    pub fn config(&self) -> &Config {
        &self.state.config
    }

    pub fn sealer(&self) -> Arc<Sealer> {
        self.state.sealer.clone()
    }

    /// Serves until the shutdown token is cancelled, then drains and closes the pool.
    pub async fn run(self) -> Result<(), StartupError> {
        let App { state, webhook_sends, public, internal, tls, shutdown } = self;
        if let Some(tls) = &tls {
            crate::tls::reload_on_sighup(tls.clone(), shutdown.clone());
        }
        let header_timeout = Duration::from_secs(state.config.api_server.header_read_timeout_secs);
        let internal_task = internal.map(|listener| {
            let router = http::internal_router(state.clone());
            tokio::spawn(http::serve::serve(listener, router, header_timeout, None, shutdown.clone()))
        });
        let router = http::router(state.clone());
        let served = http::serve::serve(public, router, header_timeout, tls, shutdown.clone()).await;
        // If the public server stopped on its own, stop the rest too; the hub closes its
        // connections cleanly and flushes heartbeat times.
        shutdown.cancel();
        crate::observe::webhooks::drain(webhook_sends).await;
        state.hub.drained().await;
        if let Some(task) = internal_task
            && let Ok(Err(e)) = task.await
        {
            tracing::warn!(error = %e, "internal API server ended with an error");
        }
        save_seal_count(&state.db, &state.sealer).await;
        state.db.close().await;
        tracing::info!("control plane stopped");
        served.map_err(StartupError::Serve)
    }
}

/// Starts what watches running apps and tells their users: the alert evaluator, the
/// offline watch, the announcer of finished deployments, the webhook dispatcher and, with
/// SMTP configured, the mailer.
fn start_observers(
    state: &AppState,
    channels: Channels,
    shutdown: &CancellationToken,
) -> Result<TaskTracker, StartupError> {
    let config = &state.config;
    let evaluator = Evaluator { db: state.db.clone(), stats: state.hub.stats().clone(), channels };
    evaluator.spawn(Duration::from_secs(config.alerts.evaluate_every_secs), shutdown.clone());
    crate::observe::alerts::spawn_offline_watch(state.db.clone(), channels, &state.hub, shutdown.clone());
    crate::observe::notify::spawn_announcer(
        state.db.clone(),
        channels,
        Duration::from_secs(1),
        shutdown.clone(),
    );
    let dispatcher = crate::observe::webhooks::Dispatcher {
        db: state.db.clone(),
        sealer: state.sealer.clone(),
        guard: state.outbound.clone(),
        channels,
        disable_after: i32::try_from(config.outbound.webhook_disable_after).unwrap_or(i32::MAX),
        retry_scale: config.outbound.webhook_retry_scale,
        poll: Duration::from_millis(500),
    };
    let sends = dispatcher.spawn(shutdown.clone());
    let recorder = crate::observe::usage::Recorder {
        db: state.db.clone(),
        stats: state.hub.stats().clone(),
        interval: Duration::from_secs(config.usage.sample_interval_secs),
    };
    recorder.spawn(shutdown.clone());
    if config.smtp.enabled() {
        let mailer =
            crate::observe::mail::Mailer::new(state.db.clone(), &config.smtp).map_err(StartupError::Smtp)?;
        mailer.spawn(Duration::from_secs(2), shutdown.clone());
    }
    Ok(sends)
}

/// Persists the active key's seal count.
async fn save_seal_count(db: &PgPool, sealer: &Sealer) {
    let version = sealer.active_version();
    if let Err(e) = store::key_usage::save(db, version, sealer.seal_count(version)).await {
        tracing::warn!(error = %e, "cannot persist the key's seal count; it is tried again");
    }
}

/// Persists the seal count every 30 s until shutdown (`App::run` saves it a last time).
async fn flush_seal_counts(db: PgPool, sealer: Arc<Sealer>, shutdown: CancellationToken) {
    let mut last = sealer.seal_count(sealer.active_version());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        let now = sealer.seal_count(sealer.active_version());
        if now != last {
            save_seal_count(&db, &sealer).await;
            last = now;
        }
    }
}

/// At start and hourly, deletes what the API already ignores, to keep the tables small:
/// custom-domain claims unverified for 7 days, sessions and API tokens revoked or expired for
/// 30 days, expired sign-ins and 2FA challenges, 2FA enrolments left pending, and usage
/// rows past `usage.*_retention_days`.
async fn prune_lapsed(db: PgPool, usage: crate::config::UsageConfig, shutdown: CancellationToken) {
    fn report(what: &str, result: Result<u64, sqlx::Error>) {
        match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "{what} deleted"),
            Err(e) => tracing::warn!(error = %e, "cannot delete {what}"),
        }
    }
    loop {
        report("lapsed custom-domain claims", store::domains::prune_expired(&db).await);
        report("revoked and expired sessions", store::users::prune_sessions(&db).await);
        report("revoked and expired API tokens", store::tokens::prune(&db).await);
        report("expired sign-ins and 2FA challenges", store::signin::prune(&db).await);
        report("2FA enrolments left pending", store::totp::prune_pending(&db).await);
        report(
            "usage rows past their retention",
            store::usage::prune(&db, usage.hourly_retention_days, usage.daily_retention_days).await,
        );
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}

/// The purpose keys and the column sealer derived from the configured master secret.
pub fn keys(config: &Config) -> Result<(Keyring, Sealer), StartupError> {
    let keys = Keyring::from_master(&config.api_server.secret);
    let sealer = Sealer::new(1, [(1, keys.key(Purpose::ColumnEncryption).clone())])
        .map_err(|e| StartupError::Keys(e.to_string()))?;
    Ok((keys, sealer))
}

fn build_state(config: Config, pool: PgPool, shutdown: CancellationToken) -> Result<AppState, StartupError> {
    let (keys, sealer) = keys(&config)?;
    let metrics = Arc::new(Metrics::default());
    let heartbeat = Duration::from_secs(config.heartbeat_interval_secs);
    let logbus = Arc::new(LogBus::default());
    let hub = Hub::new(pool.clone(), heartbeat, metrics.clone(), shutdown);
    let worker_auth_limiter =
        Arc::new(RateLimiter::new(config.worker_auth_per_minute, Duration::from_secs(60)));
    let timeout = Duration::from_millis(config.domains.dns_timeout_ms);
    let dns = TxtResolver::new(config.domains.resolver_addr()?, timeout).map_err(StartupError::Dns)?;
    let cloudflare =
        Cloudflare::from_config(&config.cloudflare).map_err(|e| StartupError::Cloudflare(e.to_string()))?;
    let domain_limiter =
        Arc::new(RateLimiter::new(config.domains.changes_per_minute, Duration::from_secs(60)));
    let minute = Duration::from_secs(60);
    let user_limiter = Arc::new(RateLimiter::new(config.user_requests_per_minute, minute));
    let ip_limiter = Arc::new(RateLimiter::new(config.ip_requests_per_minute, minute));
    let sign_in_limiter = Arc::new(RateLimiter::new(config.sign_in_per_minute, minute));
    let push_limiter = Arc::new(RateLimiter::new(crate::http::PUSH_DELIVERIES_PER_MINUTE, minute));
    let oidc = crate::identity::oidc::Oidc::from_config(&config).map_err(StartupError::Oidc)?.map(Arc::new);
    let git_links = crate::gitlink::GitLinks::from_config(&config).map_err(StartupError::GitLinks)?;
    // A config built in code (tests, `dev`) was never loaded and checked: refuse it here too.
    let plans = crate::plans::Registry::from_config(&config.plans).map_err(ConfigError::Invalid)?;
    let outbound = crate::outbound::Guard::with_denied(
        config.outbound.resolver_addr()?,
        config.outbound.allow_private_networks,
        platform_addresses(&config),
        crate::observe::webhooks::SEND_TIMEOUT,
    )
    .map_err(StartupError::Outbound)?;
    Ok(AppState {
        outbound,
        plans: Arc::new(plans),
        domain_limiter,
        user_limiter,
        ip_limiter,
        sign_in_limiter,
        push_limiter,
        oidc,
        git_links,
        dns,
        cloudflare,
        db: pool,
        keys: Arc::new(keys),
        sealer: Arc::new(sealer),
        metrics,
        hub,
        logbus,
        config: Arc::new(config),
        worker_auth_limiter,
    })
}

/// The platform's own addresses user URLs may not reach: `outbound.deny_addresses`, and the
/// API's listening address and `public_url`'s host (if an IP) when they are public — private
/// ones are refused anyway, unless a lab allows private networks on purpose.
fn platform_addresses(config: &Config) -> Vec<std::net::IpAddr> {
    let mut out = config.outbound.deny_addresses.clone();
    let public = config.api_server.public_url.as_deref().and_then(|u| url::Url::parse(u).ok());
    let from_url = match public.as_ref().and_then(url::Url::host) {
        Some(url::Host::Ipv4(ip)) => Some(ip.into()),
        Some(url::Host::Ipv6(ip)) => Some(ip.into()),
        _ => None,
    };
    out.extend(
        [Some(config.api_server.host), from_url]
            .into_iter()
            .flatten()
            .filter(|ip| crate::outbound::is_public_ip(*ip)),
    );
    out
}

/// State over a lazy pool that never connects, for router unit tests.
#[cfg(test)]
pub(crate) fn test_state(mut config: Config) -> AppState {
    config.api_server.secret = wisehosting_crypto::Secret::new("x".repeat(32));
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .unwrap_or_else(|e| unreachable!("a static URL parses: {e}"));
    match build_state(config, pool, CancellationToken::new()) {
        Ok(state) => state,
        Err(e) => unreachable!("test state: {e}"),
    }
}
