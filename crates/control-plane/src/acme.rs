//! Certificates for verified custom domains from an ACME CA (SPEC §7, §14.7), through
//! `instant-acme`: one account per installation and directory (its credentials sealed in
//! `acme_accounts`); every `acme.check_interval_secs` the domains that are due — verified
//! with no certificate, failed and due again, or at their renewal time ([`renew_at`]:
//! `acme.renew_before_days` before expiry, or a third of a short certificate's life) — are
//! ordered one after another. Each HTTP-01 challenge is pushed to the edge router of the
//! worker serving the app (`acme_challenges`), which answers it on `edge.listen`; the pushed
//! set is cleared when the order is done. A certificate's key is made here (rcgen), stored
//! sealed with its chain; a failure keeps the CA's reason and is tried again after a wait
//! that doubles with each failure (from `acme.retry_base_secs`, at most a day), so the CA's
//! rate limits are not run into. A certificate in place keeps being served while its renewal
//! fails.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder,
    OrderStatus, RetryPolicy,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use wisehosting_crypto::Sealer;
use wisehosting_proto::messages::{AcmeChallenge, AcmeChallenges, Outgoing};

use crate::config::acme::AcmeConfig;
use crate::hub::Hub;
use crate::store::certificates::{self, Due};

/// Orders one round takes on; the rest wait for the next round.
const PER_ROUND: i64 = 10;
/// The longest wait between tries of a failing domain.
const MAX_RETRY_SECS: u64 = 86_400;

pub struct Issuer {
    db: PgPool,
    sealer: Arc<Sealer>,
    hub: Hub,
    config: AcmeConfig,
    account: tokio::sync::Mutex<Option<Account>>,
    /// The challenges pushed to each worker, by worker id.
    pushed: Mutex<HashMap<i64, Vec<AcmeChallenge>>>,
}

/// Starts the issuer when ACME is configured.
pub fn spawn(db: PgPool, sealer: Arc<Sealer>, hub: Hub, config: &AcmeConfig, shutdown: CancellationToken) {
    if !config.enabled() {
        return;
    }
    let issuer = Arc::new(Issuer {
        db,
        sealer,
        hub: hub.clone(),
        config: config.clone(),
        account: tokio::sync::Mutex::new(None),
        pushed: Mutex::new(HashMap::new()),
    });
    let every = Duration::from_secs(issuer.config.check_interval_secs);
    tokio::spawn(hub.track(async move {
        loop {
            issuer.round().await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }));
}

impl Issuer {
    async fn round(&self) {
        let due = match certificates::due(&self.db, PER_ROUND).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the certificates due");
                return;
            }
        };
        for domain in due {
            self.attempt(domain).await;
        }
    }

    async fn attempt(&self, domain: Due) {
        if let Err(e) = certificates::begin(&self.db, domain.domain_id).await {
            tracing::warn!(error = %e, "cannot record an order");
            return;
        }
        let outcome = self.issue(&domain).await;
        let stored = match outcome {
            Ok((chain, key, not_after)) => {
                let renew_at = renew_at(Utc::now(), not_after, self.config.renew_before_days);
                tracing::info!(hostname = %domain.hostname, %not_after, %renew_at, "certificate issued");
                let stored = certificates::issued(
                    &self.db,
                    &self.sealer,
                    domain.domain_id,
                    &chain,
                    &key,
                    not_after,
                    renew_at,
                )
                .await;
                // The worker serving the app gets it with its next push.
                if let (Ok(()), Some(worker)) = (&stored, domain.worker_id) {
                    self.hub.routes_changed(worker);
                }
                stored
            }
            Err(reason) => {
                let failures = u32::try_from(domain.failures.unwrap_or(0)).unwrap_or(0).min(20);
                let wait = self.config.retry_base_secs.saturating_mul(1 << failures).min(MAX_RETRY_SECS);
                tracing::warn!(hostname = %domain.hostname, %reason, retry_in_secs = wait, "certificate order failed");
                certificates::failed(&self.db, domain.domain_id, &reason, wait as i64).await
            }
        };
        if let Err(e) = stored {
            tracing::warn!(error = %e, "cannot record a certificate order's outcome");
        }
    }

    /// The installation's account: loaded, or created and stored sealed.
    async fn account(&self) -> Result<Account, String> {
        let mut held = self.account.lock().await;
        if let Some(account) = held.as_ref() {
            return Ok(account.clone());
        }
        let builder = || match &self.config.ca_file {
            Some(root) => Account::builder_with_root(root),
            None => Account::builder(),
        };
        let url = self.config.directory_url.trim();
        let stored = certificates::account(&self.db, &self.sealer, url).await.map_err(|e| e.to_string())?;
        let account = match stored {
            Some(json) => {
                let credentials: AccountCredentials = serde_json::from_str(&json)
                    .map_err(|e| format!("the stored ACME account does not read: {e}"))?;
                builder().map_err(problem)?.from_credentials(credentials).await.map_err(problem)?
            }
            None => {
                let contact = format!("mailto:{}", self.config.email.trim());
                let contacts: Vec<&str> =
                    if self.config.email.trim().is_empty() { Vec::new() } else { vec![contact.as_str()] };
                let new = NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                };
                let (account, credentials) =
                    builder().map_err(problem)?.create(&new, url.to_string(), None).await.map_err(problem)?;
                let json = serde_json::to_string(&credentials).map_err(|e| e.to_string())?;
                certificates::save_account(&self.db, &self.sealer, url, &json)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(directory = url, "created the ACME account");
                account
            }
        };
        *held = Some(account.clone());
        Ok(account)
    }

    /// One order for `domain`: its chain, key (PEM) and expiry, or the CA's reason.
    async fn issue(&self, domain: &Due) -> Result<(String, String, DateTime<Utc>), String> {
        let worker = domain.worker_id.ok_or(
            "the app runs on no worker yet, whose edge router would answer the challenge; deploy it first",
        )?;
        let account = self.account().await?;
        let identifiers = [Identifier::Dns(domain.hostname.clone())];
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await.map_err(problem)?;
        let mut tokens = Vec::new();
        let set_up = async {
            let mut authorizations = order.authorizations();
            while let Some(authorization) = authorizations.next().await {
                let mut authorization = authorization.map_err(problem)?;
                match authorization.status {
                    AuthorizationStatus::Valid => continue,
                    AuthorizationStatus::Pending => {}
                    other => return Err(format!("the CA's authorization is {other:?}")),
                }
                let mut challenge = authorization
                    .challenge(ChallengeType::Http01)
                    .ok_or("the CA offers no http-01 challenge for this name")?;
                let answer = AcmeChallenge {
                    token: challenge.token.clone(),
                    key_authorization: challenge.key_authorization().as_str().to_string(),
                };
                tokens.push(answer.token.clone());
                self.push(worker, Some(answer), &[]);
                challenge.set_ready().await.map_err(problem)?;
            }
            Ok::<_, String>(())
        }
        .await;
        let ready = match set_up {
            Ok(()) => {
                let retries = RetryPolicy::new()
                    .initial_delay(Duration::from_millis(250))
                    .timeout(Duration::from_secs(90));
                order.poll_ready(&retries).await.map_err(problem)
            }
            Err(e) => Err(e),
        };
        self.push(worker, None, &tokens);
        let status = ready?;
        if status != OrderStatus::Ready {
            return Err(challenge_error(&mut order).await);
        }
        let key = order.finalize().await.map_err(problem)?;
        let retries = RetryPolicy::new().timeout(Duration::from_secs(60));
        let chain = order.poll_certificate(&retries).await.map_err(problem)?;
        let not_after = not_after(&chain)?;
        Ok((chain, key, not_after))
    }

    /// Adds `add` to the worker's pushed set, drops `remove`, and pushes the set whole.
    fn push(&self, worker: i64, add: Option<AcmeChallenge>, remove: &[String]) {
        let set = {
            let Ok(mut pushed) = self.pushed.lock() else { return };
            let set = pushed.entry(worker).or_default();
            set.retain(|c| !remove.contains(&c.token));
            set.extend(add);
            set.clone()
        };
        if self.hub.send(worker, Outgoing::of(&AcmeChallenges { challenges: set })).is_err() {
            tracing::warn!(worker, "cannot push ACME challenges: the worker is offline");
        }
    }
}

/// The reason an order went invalid: the first challenge error its authorizations hold.
async fn challenge_error(order: &mut instant_acme::Order) -> String {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let state = match authorization.refresh().await {
            Ok(state) => state,
            Err(e) => return problem(e),
        };
        for challenge in &state.challenges {
            if let Some(error) = &challenge.error {
                return error.detail.clone().unwrap_or_else(|| error.to_string());
            }
        }
    }
    "the CA marked the order invalid without a reason".into()
}

fn problem(e: instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(p) => p.detail.clone().unwrap_or_else(|| p.to_string()),
        other => other.to_string(),
    }
}

/// When a certificate issued at `now` and valid until `not_after` is renewed:
/// `renew_before_days` before it expires, or — for a certificate that short-lived — once a
/// third of its life is left, so a CA's short certificates are not renewed in a loop.
pub fn renew_at(now: DateTime<Utc>, not_after: DateTime<Utc>, renew_before_days: u32) -> DateTime<Utc> {
    let before = chrono::Duration::days(i64::from(renew_before_days));
    let third = (not_after - now) / 3;
    not_after - before.min(third).max(chrono::Duration::zero())
}

/// The expiry of a chain's first (leaf) certificate.
pub fn not_after(chain_pem: &str) -> Result<DateTime<Utc>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or("the CA sent no certificate")?
        .map_err(|e| format!("the CA's certificate does not read: {e}"))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|e| format!("the CA's certificate does not read: {e}"))?;
    DateTime::from_timestamp(parsed.validity().not_after.timestamp(), 0)
        .ok_or_else(|| "the certificate's expiry is out of range".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_30_days_before_expiry_or_at_a_third_of_a_short_life() {
        let now = Utc::now();
        let ninety = now + chrono::Duration::days(90);
        assert_eq!(renew_at(now, ninety, 30), ninety - chrono::Duration::days(30));
        let six = now + chrono::Duration::days(6);
        assert_eq!(renew_at(now, six, 30), six - chrono::Duration::days(2));
        let expired = now - chrono::Duration::days(1);
        assert_eq!(renew_at(now, expired, 30), expired, "an expired one is due at once");
    }
}
