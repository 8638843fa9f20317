//! [`AppState`]: the handles every handler and task shares, passed with `.with_state`.

use std::sync::Arc;

use sqlx::PgPool;
use wisehosting_crypto::{Keyring, Sealer};

use crate::config::Config;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub config: Arc<Config>,
    pub keys: Arc<Keyring>,
    pub sealer: Arc<Sealer>,
    pub metrics: Arc<Metrics>,
}
