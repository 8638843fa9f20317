//! `wisehosting-admin serve`: the operators' console (SPEC §10, §14.4) — its own HTTP server
//! (plain HTTP on loopback by default, HTTPS with rustls when `admin.tls_cert`/`tls_key` are
//! set), its own sign-in ([`auth`]), one role check ([`roles`]), pages ([`pages`]) and their
//! data ([`routes`]), live state only through the internal API ([`internal`]).

pub mod auth;
mod internal;
pub mod pages;
pub mod roles;
mod routes;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::connect_info::Connected;
use axum::middleware;
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use sqlx::PgPool;
use tokio::net::TcpListener;
use wisehosting_control_plane::config::Config;
use wisehosting_control_plane::http::ApiError;
use wisehosting_control_plane::http::extract::csrf_guard;

pub use internal::InternalApi;

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct Console {
    pub db: PgPool,
    internal: InternalApi,
    /// The cookie carries `Secure` (the console speaks HTTPS).
    secure_cookie: bool,
    sign_ins: Arc<auth::SignIns>,
    /// A bcrypt hash of a random password at the real cost, verified for unknown usernames so
    /// they take as long as a wrong password.
    dummy_hash: Arc<str>,
    /// Opens second factors; `None` without `api_server.secret` (then accounts with one
    /// cannot sign in, and are told why).
    sealer: Option<Arc<wisehosting_crypto::Sealer>>,
}

/// The peer of a connection, for plain and TLS listeners alike.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, tls::TlsListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, tls::TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} (admin.listen): {source}; pick a free port")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(
        "internal_api.token is empty, so the console cannot read live state; set the same token as the control plane's (credential internal_api_token)"
    )]
    NoToken,
    #[error("cannot build the internal API client: {0}")]
    Client(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("the console's server failed: {0}")]
    Io(#[from] std::io::Error),
}

const BODY_LIMIT: usize = 64 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn router(console: Console) -> Router {
    let api = Router::new()
        .route("/admin/api/login", post(auth::login))
        .route("/admin/api/logout", post(auth::logout))
        .route("/admin/api/me", get(auth::me))
        .route("/admin/api/overview", get(routes::overview))
        .route("/admin/api/workers", get(routes::workers))
        .route("/admin/api/workers/{id}/podman/{cmd}", get(routes::podman))
        .route("/admin/api/apps", get(routes::apps))
        .route("/admin/api/apps/{id}/live-stats", get(routes::app_live_stats))
        .route("/admin/api/apps/{id}/logs", get(routes::app_logs))
        .route("/admin/api/apps/{id}/{action}", post(routes::app_action))
        .route("/admin/api/users", get(routes::users))
        .route("/admin/api/plans", get(routes::plans))
        .route("/admin/api/users/{id}/plan", post(routes::set_plan))
        .route("/admin/api/admins", get(routes::admins))
        .route("/admin/api/grants", post(routes::grant))
        .route("/admin/api/grants/revoke", post(routes::revoke))
        .route("/admin/api/audit", get(routes::audit))
        .route("/admin/api/{*rest}", axum::routing::any(api_not_found))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(csrf_guard))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    Router::new()
        .merge(api)
        .merge(pages::routes())
        .layer(middleware::from_fn(|req, next: middleware::Next| async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
                Ok(response) => response,
                Err(_) => axum::response::IntoResponse::into_response(ApiError::Timeout),
            }
        }))
        .layer(middleware::from_fn(pages::security_headers))
        .with_state(console)
}

async fn api_not_found() -> ApiError {
    ApiError::NotFound("no such console endpoint".into())
}

enum Bound {
    Plain(TcpListener),
    Tls(tls::TlsListener),
}

/// A console bound to its address, ready to serve.
pub struct Server {
    bound: Bound,
    console: Console,
    addr: SocketAddr,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `admin.listen` (with TLS when configured) over `db`.
    pub async fn bind(config: &Config, db: PgPool) -> Result<Server, ServeError> {
        if config.internal_api.token.is_empty() {
            return Err(ServeError::NoToken);
        }
        let internal = InternalApi::new(&config.admin.internal_api_url, config.internal_api.token.clone())
            .map_err(|e| ServeError::Client(e.to_string()))?;
        let addr = config.admin.listen;
        let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
        let addr = listener.local_addr()?;
        let tls = match (&config.admin.tls_cert, &config.admin.tls_key) {
            (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
            _ => None,
        };
        let dummy = crate::password::generate();
        let dummy_hash = tokio::task::spawn_blocking(move || bcrypt::hash(dummy, crate::password::COST))
            .await
            .map_err(|e| ServeError::Client(e.to_string()))?
            .map_err(|e| ServeError::Client(e.to_string()))?;
        let sealer = if config.api_server.secret.is_empty() {
            None
        } else {
            let (_, sealer) = wisehosting_control_plane::startup::keys(config)
                .map_err(|e| ServeError::Client(e.to_string()))?;
            Some(Arc::new(sealer))
        };
        let console = Console {
            sealer,
            db,
            internal,
            secure_cookie: tls.is_some(),
            sign_ins: Arc::default(),
            dummy_hash: dummy_hash.into(),
        };
        let bound = match tls {
            Some(tls) => Bound::Tls(tls::TlsListener::new(listener, tls)),
            None => Bound::Plain(listener),
        };
        Ok(Server { bound, console, addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://…/admin/` or `http://…/admin/`.
    pub fn url(&self) -> String {
        let scheme = if matches!(self.bound, Bound::Tls(_)) { "https" } else { "http" };
        format!("{scheme}://{}/admin/", self.addr)
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
        let app = router(self.console);
        match self.bound {
            Bound::Plain(l) => {
                axum::serve(l, app.into_make_service_with_connect_info::<ClientAddr>())
                    .with_graceful_shutdown(shutdown)
                    .await?
            }
            Bound::Tls(l) => {
                axum::serve(l, app.into_make_service_with_connect_info::<ClientAddr>())
                    .with_graceful_shutdown(shutdown)
                    .await?
            }
        }
        Ok(())
    }
}
