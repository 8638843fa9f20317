//! The WiseHosting control plane as a library; `main.rs` is a thin shell over [`cli::run`].
//!
//! - [`config`]: typed config (YAML, env, systemd credentials), secrets that never print.
//! - [`db`]: the pool and the embedded reversible migrations.
//! - [`startup`]: [`startup::App`], built from config by the binary and the tests alike.
//! - [`http`]: routers, middleware, [`http::ApiError`].
//! - [`hub`]: the WebSocket hub of worker connections; it hands reports and route changes on
//!   by channel and knows nothing of jobs.
//! - [`jobs`]: job specs, the dispatcher, and applying what workers report.
//! - [`identity`]: sign-in with an OpenID provider, TOTP second factors, API token scopes.
//! - [`routing`]: the route table, pushed to workers and rendered for Traefik.
//! - [`domain`]: parsed newtypes and the state enums. [`store`]: every SQL statement, per table.
//! - [`state`]: the shared [`state::AppState`]. [`plans`]: the plan registry.
//!   [`ratelimit`]: GCRA limits per key (`governor`), pruned as they grow.
//! - [`observe`]: what users see of their running apps: live stats, alerts, usage, webhooks.
//! - [`logbus`]: live log lines per app. [`metrics`]: Prometheus text. [`telemetry`]: tracing.
//! - [`dev`]: single-machine mode with a private PostgreSQL.
//! - [`outbound`]: the SSRF-guarded client for URLs users give (webhooks).
//! - [`dns`]: TXT lookups for custom-domain verification. [`cloudflare`]: Cloudflare for SaaS.
//! - [`acme`]: certificates for verified custom domains from an ACME CA.
//! - [`gitpush`]: git providers' push webhooks: signatures, delivery ids, what a push says.
//! - [`gitlink`]: linked git provider accounts: OAuth, token refresh and revocation, repositories.
//! - [`tls`]: server TLS (TLS 1.3, reloadable) for the public listener and the admin console.
//! - [`cli`]: the `wisehosting` command; [`say`]: what it prints for people.

pub mod acme;
pub mod cli;
pub mod cloudflare;
pub mod config;
pub mod db;
pub mod dev;
pub mod dns;
pub mod domain;
pub mod gitlink;
pub mod gitpush;
pub mod http;
pub mod hub;
pub mod identity;
pub mod jobs;
pub mod logbus;
pub mod mesh;
pub mod metrics;
pub mod observe;
pub mod outbound;
pub mod plans;
pub mod ratelimit;
pub mod routing;
pub mod say;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;

pub use config::Config;
pub use startup::App;
