//! The webhook dispatcher: sends queued deliveries through the SSRF guard, signed as SPEC
//! §14.3 says, one at a time per endpoint, and retries with back-off.
//!
//! Deliveries wait in PostgreSQL (`webhook_deliveries`), so they survive restarts. A round
//! leases endpoints that have a due delivery (`busy_until`, so one sender per endpoint across
//! control planes), sends each endpoint's due deliveries in order, and records every try. A
//! try that times out (10 s) or answers anything but 2xx is tried again: the first retry
//! within 10 s, then exponentially with jitter — [`MAX_ATTEMPTS`] tries over about six hours
//! ([`retry_delay`]). After `outbound.webhook_disable_after` failed tries in a row an endpoint
//! is turned off and its owner gets a `webhook_disabled` alert. On shutdown no new send
//! starts, sends in flight get [`DRAIN`] to finish, and leases are given back.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wisehosting_crypto::Sealer;

use super::notify::Channels;
use crate::domain::AlertKind;
use crate::outbound::Guard;
use crate::store::alerts::NewAlert;
use crate::store::webhooks::{self, Attempt, DueDelivery, LeasedEndpoint};

/// Tries of one delivery at most.
pub const MAX_ATTEMPTS: i32 = 8;
/// How long one try may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long sends in flight may run on after shutdown begins.
pub const DRAIN: Duration = Duration::from_secs(12);
/// How long an endpoint is leased for one round of sends.
const LEASE: Duration = Duration::from_secs(60);
/// Deliveries one endpoint's round sends at most.
const PER_ROUND: i64 = 50;
/// A round starts no send after this much of its lease is gone (a send may take
/// [`SEND_TIMEOUT`]), so a lease is never outlived.
const SEND_UNTIL: Duration = Duration::from_secs(45);
/// Endpoints leased per poll.
const ENDPOINTS_PER_POLL: i64 = 64;

/// The wait before try `attempts + 1` after `attempts` failed tries (1 ≤ attempts < 8): 5–10 s,
/// then 30 s, 2 min, 10 min, 30 min, 1 h, 4 h, each ±20 % — about 6 h in all.
pub fn retry_delay(attempts: i32, rng: &mut impl Rng) -> Duration {
    const BASE: [u64; 7] = [10, 30, 120, 600, 1800, 3600, 14_400];
    let i = usize::try_from(attempts.clamp(1, 7) - 1).unwrap_or(0);
    if i == 0 {
        return Duration::from_millis(rng.gen_range(5_000..=10_000));
    }
    let base = BASE[i] as f64;
    Duration::from_secs_f64(base * rng.gen_range(0.8..=1.2))
}

/// `X-WH-Signature`'s value: `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length.
        Err(_) => return String::new(),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The body of a delivery: `{"id", "type", "created_at", "data"}`.
pub fn body(d: &DueDelivery) -> String {
    serde_json::json!({
        "id": d.id,
        "type": d.event,
        "created_at": d.created_at,
        "data": d.data,
    })
    .to_string()
}

/// A new endpoint secret: `whsec_` and 32 random bytes, base64url.
pub fn new_secret() -> String {
    use base64::Engine as _;
    let bytes = wisehosting_crypto::random_bytes::<32>();
    format!("whsec_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[derive(Clone)]
pub struct Dispatcher {
    pub db: PgPool,
    pub sealer: Arc<Sealer>,
    pub guard: Guard,
    pub channels: Channels,
    pub disable_after: i32,
    /// Multiplies retry delays (`outbound.webhook_retry_scale`).
    pub retry_scale: f64,
    /// How often the queue is looked at when idle.
    pub poll: Duration,
}

impl Dispatcher {
    /// Runs until shutdown, then drains (see the module's doc).
    pub fn spawn(self, shutdown: CancellationToken) -> TaskTracker {
        let tracker = TaskTracker::new();
        let sends = tracker.clone();
        tracker.spawn(async move {
            loop {
                if shutdown.is_cancelled() {
                    break;
                }
                let leased = match webhooks::lease_endpoints(
                    &self.db,
                    ENDPOINTS_PER_POLL,
                    LEASE.as_secs_f64(),
                )
                .await
                {
                    Ok(leased) => leased,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot lease webhook endpoints; trying again");
                        Vec::new()
                    }
                };
                let busy = !leased.is_empty();
                for endpoint in leased {
                    let this = self.clone();
                    let stop = shutdown.clone();
                    sends.spawn(async move { this.serve_endpoint(endpoint, stop).await });
                }
                if !busy {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(self.poll) => {}
                    }
                } else {
                    // Give the leased endpoints' sends a moment before leasing more.
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    }
                }
            }
        });
        tracker.close();
        tracker
    }

    /// Sends one leased endpoint's due deliveries in order, then gives the lease back.
    async fn serve_endpoint(&self, endpoint: LeasedEndpoint, stop: CancellationToken) {
        let secret = webhooks::open_secret(&self.sealer, &endpoint);
        let started = tokio::time::Instant::now();
        let due = webhooks::due_deliveries(&self.db, endpoint.id, PER_ROUND).await.unwrap_or_default();
        for delivery in due {
            if stop.is_cancelled() || started.elapsed() > SEND_UNTIL {
                break;
            }
            let outcome = match &secret {
                Ok(secret) => self.send(&endpoint, secret, &delivery).await,
                Err(e) => Err((None, e.clone())),
            };
            let disabled = match self.record(&endpoint, &delivery, outcome).await {
                Ok(disabled) => disabled,
                Err(e) => {
                    tracing::warn!(endpoint_id = endpoint.id, delivery_id = delivery.id, error = %e, "cannot record a webhook try");
                    false
                }
            };
            if disabled {
                self.endpoint_disabled(&endpoint).await;
                break;
            }
        }
        if let Err(e) = webhooks::release_endpoint(&self.db, endpoint.id).await {
            tracing::warn!(endpoint_id = endpoint.id, error = %e, "cannot release a webhook endpoint; its lease lapses");
        }
    }

    /// One try: `Ok(status)` for a 2xx, else the status (if any) and why.
    async fn send(
        &self,
        endpoint: &LeasedEndpoint,
        secret: &str,
        delivery: &DueDelivery,
    ) -> Result<u16, (Option<u16>, String)> {
        let body = body(delivery);
        let t = Utc::now().timestamp();
        let headers = [
            ("x-wh-event", delivery.event.clone()),
            ("x-wh-delivery", delivery.id.to_string()),
            ("x-wh-signature", signature(secret, t, &body)),
        ];
        match self.guard.post(&endpoint.url, &headers, body).await {
            Ok(answer) if (200..300).contains(&answer.status) => Ok(answer.status),
            Ok(answer) => Err((Some(answer.status), format!("the endpoint answered {}", answer.status))),
            Err(e) => Err((None, e.to_string())),
        }
    }

    async fn record(
        &self,
        endpoint: &LeasedEndpoint,
        delivery: &DueDelivery,
        outcome: Result<u16, (Option<u16>, String)>,
    ) -> Result<bool, sqlx::Error> {
        let tries = delivery.attempts + 1;
        let attempt = match &outcome {
            Ok(status) => {
                Attempt { delivered: true, response_status: Some(*status), error: None, retry_at: None }
            }
            Err((status, error)) => Attempt {
                delivered: false,
                response_status: *status,
                error: Some(error.as_str()),
                retry_at: (tries < MAX_ATTEMPTS).then(|| next_try(Utc::now(), tries, self.retry_scale)),
            },
        };
        match &outcome {
            Ok(_) => {
                tracing::debug!(endpoint_id = endpoint.id, delivery_id = delivery.id, "webhook delivered")
            }
            Err((_, error)) => tracing::info!(
                endpoint_id = endpoint.id,
                delivery_id = delivery.id,
                tries,
                error = %error,
                "webhook try failed"
            ),
        }
        webhooks::record_attempt(&self.db, endpoint.id, delivery.id, &attempt, self.disable_after).await
    }

    async fn endpoint_disabled(&self, endpoint: &LeasedEndpoint) {
        tracing::warn!(
            endpoint_id = endpoint.id,
            "webhook endpoint turned off after failing again and again"
        );
        let message = format!(
            "webhook endpoint #{} was turned off after {} failed tries in a row; fix it and turn it on again",
            endpoint.id, self.disable_after
        );
        let result = async {
            let mut tx = self.db.begin().await?;
            let new = NewAlert {
                user_id: endpoint.user_id,
                app_id: None,
                kind: AlertKind::WebhookDisabled,
                message: &message,
                at: Utc::now(),
            };
            super::alerts::raise_for(&mut tx, self.channels, &new).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(endpoint_id = endpoint.id, error = %e, "cannot raise the webhook_disabled alert");
        }
    }
}

fn next_try(now: DateTime<Utc>, tries: i32, scale: f64) -> DateTime<Utc> {
    let delay = retry_delay(tries, &mut rand::thread_rng()).mul_f64(scale);
    now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(4))
}

/// Waits for sends in flight, at most [`DRAIN`].
pub async fn drain(tracker: TaskTracker) {
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        tracing::warn!(
            "webhook sends still in flight after the drain bound; their leases lapse and they are tried again"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_t_dot_body_in_lowercase_hex() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            signature("whsec_test", 1_700_000_000, r#"{"a":1}"#),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }

    #[test]
    fn retries_start_within_ten_seconds_and_spread_over_about_six_hours() {
        let mut rng = rand::thread_rng();
        for _ in 0..200 {
            let first = retry_delay(1, &mut rng);
            assert!(first >= Duration::from_secs(5) && first <= Duration::from_secs(10), "{first:?}");
            let total: Duration = (1..MAX_ATTEMPTS).map(|a| retry_delay(a, &mut rng)).sum();
            assert!(
                total >= Duration::from_secs(4 * 3600) && total <= Duration::from_secs(8 * 3600),
                "{total:?}"
            );
            // Each step grows (jitter never reorders them).
            let steps: Vec<Duration> = (1..MAX_ATTEMPTS).map(|a| retry_delay(a, &mut rng)).collect();
            assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
        }
    }

    #[test]
    fn secrets_are_long_and_distinct() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with("whsec_") && a.len() >= 48, "{a}");
        assert_ne!(a, b);
    }
}
