//! Certificates for verified custom domains from an ACME CA (SPEC §7, §14.7), through
//! `instant-acme`: one account per installation and directory (its credentials sealed in
//! `acme_accounts`); every `acme.check_interval_secs` the domains that are due — verified
//! with no certificate, failed and due again, or at their renewal time ([`renew_at`]:
//! `acme.renew_before_days` before expiry, or a third of a short certificate's life) — are
//! ordered one after another, by one control plane of a pair at a time (a session advisory
//! lock held for the round). Each HTTP-01 challenge is recorded for the worker serving the app
//! (`acme_challenges`) and pushed to its edge router by the control plane holding its link
//! (`NOTIFY wh_challenges`; again at each hello), which answers it on `edge.listen`; the
//! answers are dropped when the order is done. A certificate's key is made here (rcgen), stored
//! sealed with its chain; a failure keeps the CA's reason and is tried again after a wait
//! that doubles with each failure (from `acme.retry_base_secs`, at most a day), so the CA's
//! rate limits are not run into. A certificate in place keeps being served while its renewal
//! fails.
//!
//! The platform's own certificate (`platform_certificate`) is imported from files at start, or
//! — with `platform_certificate.dns01` — ordered for `*.<subdomain_base>` the same way, its
//! DNS-01 answer published as a TXT record through Cloudflare's DNS API and deleted after.
//! Issued certificates reach the workers through the route pusher (`edge_certificates`).

use std::sync::Arc;
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

use crate::cloudflare::Cloudflare;
use crate::config::acme::{AcmeConfig, PlatformCertificateConfig};
use crate::hub::Hub;
use crate::observe::notify::Channels;
use crate::store::certificates::{self, Due};

/// Orders one round takes on; the rest wait for the next round.
const PER_ROUND: i64 = 10;
/// The longest wait between tries of a failing domain.
const MAX_RETRY_SECS: u64 = 86_400;
/// Failed orders in a row for a domain that raise its app's `certificate_failing` alert.
pub const ALERT_AFTER_FAILURES: i32 = 3;

pub struct Issuer {
    db: PgPool,
    sealer: Arc<Sealer>,
    hub: Hub,
    config: AcmeConfig,
    account: tokio::sync::Mutex<Option<Account>>,
    /// `*.<subdomain_base>` and the DNS it is answered in, when ordered by DNS-01.
    wildcard: Option<(String, Cloudflare)>,
    /// How alerts go out.
    channels: Channels,
}

/// How an order's challenges are answered.
enum Solver<'a> {
    /// By the edge router of this worker, on `edge.listen`.
    Http01 { worker: i64 },
    /// By a TXT record in the zone.
    Dns01 { cloudflare: &'a Cloudflare },
}

/// Where the issuer gets the platform's wildcard from, when it does.
#[derive(Debug)]
pub struct Wildcard<'a> {
    pub config: &'a PlatformCertificateConfig,
    pub subdomain_base: &'a str,
    pub cloudflare: Option<&'a Cloudflare>,
}

/// What else the issuer works with: the platform's wildcard, and how alerts go out.
#[derive(Debug)]
pub struct Setting<'a> {
    pub wildcard: Wildcard<'a>,
    pub channels: Channels,
}

/// Starts the issuer when ACME is configured.
pub fn spawn(
    db: PgPool,
    sealer: Arc<Sealer>,
    hub: Hub,
    config: &AcmeConfig,
    setting: Setting<'_>,
    shutdown: CancellationToken,
) {
    let wildcard = setting.wildcard;
    if !config.enabled() {
        return;
    }
    let wildcard = match (wildcard.config.dns01, wildcard.cloudflare) {
        (true, Some(cloudflare)) => {
            Some((format!("*.{}", wildcard.subdomain_base.trim_matches('.')), cloudflare.clone()))
        }
        _ => None,
    };
    let issuer = Arc::new(Issuer {
        db,
        sealer,
        hub: hub.clone(),
        config: config.clone(),
        account: tokio::sync::Mutex::new(None),
        wildcard,
        channels: setting.channels,
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
    /// One round, by one control plane of a pair at a time (the other skips its turn): the
    /// account is made once and a domain is ordered once.
    async fn round(&self) {
        let mut conn = match self.db.acquire().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the database for an ACME round");
                return;
            }
        };
        match crate::store::take_session_turn(&mut conn, crate::store::Periodic::Acme).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the ACME round's turn");
                return;
            }
        }
        self.round_held().await;
        if let Err(e) = crate::store::end_session_turn(&mut conn, crate::store::Periodic::Acme).await {
            // The lock ends with the session: close it rather than return it to the pool.
            tracing::warn!(error = %e, "cannot end the ACME round's turn; closing its connection");
            let _ = sqlx::Connection::close(conn.detach()).await;
        }
    }

    async fn round_held(&self) {
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
        if let Some((name, cloudflare)) = &self.wildcard {
            self.attempt_wildcard(name, cloudflare).await;
        }
    }

    /// Orders the platform's wildcard when it is due; on success every connected worker gets it.
    async fn attempt_wildcard(&self, name: &str, cloudflare: &Cloudflare) {
        let failures = match certificates::platform_due(&self.db).await {
            Ok(Some(failures)) => failures,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the platform certificate's state");
                return;
            }
        };
        let identifiers = [Identifier::Dns(name.to_string())];
        let stored = match self.order(&identifiers, Solver::Dns01 { cloudflare }).await {
            Ok((chain, key, not_after)) => {
                let renew_at = renew_at(Utc::now(), not_after, self.config.renew_before_days);
                tracing::info!(%name, %not_after, %renew_at, "platform certificate issued");
                let names = [name.to_string()];
                let issued = certificates::PlatformIssued {
                    source: "acme",
                    names: &names,
                    chain_pem: &chain,
                    key_pem: &key,
                    not_after,
                    renew_at,
                };
                let stored = certificates::platform_issued(&self.db, &self.sealer, &issued).await;
                if stored.is_ok() {
                    for link in self.hub.link_statuses().into_iter().filter(|l| l.connected) {
                        self.hub.routes_changed(link.worker_id);
                    }
                }
                stored
            }
            Err(reason) => {
                let wait = self.retry_wait(failures);
                tracing::warn!(%name, %reason, retry_in_secs = wait, "platform certificate order failed");
                certificates::platform_failed(&self.db, &reason, wait as i64).await
            }
        };
        if let Err(e) = stored {
            tracing::warn!(error = %e, "cannot record the platform certificate order's outcome");
        }
    }

    /// Raises the app's `certificate_failing` alert with `message`, or clears it (`None`: a
    /// certificate was issued). Another domain of the app may still be failing; its next
    /// failure raises the alert again.
    async fn alert(&self, app_id: i64, message: Option<&str>) {
        let done = async {
            let mut tx = self.db.begin().await?;
            let kind = crate::domain::AlertKind::CertificateFailing;
            match message {
                Some(message) => {
                    crate::observe::alerts::raise(&mut tx, self.channels, app_id, kind, message, Utc::now())
                        .await?;
                }
                None => {
                    crate::observe::alerts::clear(&mut tx, self.channels, app_id, kind, Utc::now()).await?;
                }
            }
            tx.commit().await
        };
        if let Err(e) = done.await {
            tracing::warn!(app_id, error = %e, "cannot raise or clear a certificate alert");
        }
    }

    /// The wait after `failures` failed orders in a row: doubling, at most a day.
    fn retry_wait(&self, failures: i32) -> u64 {
        let failures = u32::try_from(failures).unwrap_or(0).min(20);
        self.config.retry_base_secs.saturating_mul(1 << failures).min(MAX_RETRY_SECS)
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
                if stored.is_ok() {
                    self.alert(domain.app_id, None).await;
                }
                stored
            }
            Err(reason) => {
                let wait = self.retry_wait(domain.failures.unwrap_or(0));
                tracing::warn!(hostname = %domain.hostname, %reason, retry_in_secs = wait, "certificate order failed");
                let stored = certificates::failed(&self.db, domain.domain_id, &reason, wait as i64).await;
                let failures = domain.failures.unwrap_or(0) + 1;
                if stored.is_ok() && failures >= ALERT_AFTER_FAILURES {
                    let message = format!(
                        "the certificate for {} failed {failures} times in a row: {reason}",
                        domain.hostname
                    );
                    self.alert(domain.app_id, Some(&message)).await;
                }
                stored
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
        self.order(&[Identifier::Dns(domain.hostname.clone())], Solver::Http01 { worker }).await
    }

    /// One order for `identifiers`, its challenges answered by `solver`: the chain, key (PEM)
    /// and expiry, or the CA's reason.
    async fn order(
        &self,
        identifiers: &[Identifier],
        solver: Solver<'_>,
    ) -> Result<(String, String, DateTime<Utc>), String> {
        let account = self.account().await?;
        let mut order = account.new_order(&NewOrder::new(identifiers)).await.map_err(problem)?;
        // HTTP-01 tokens pushed, DNS-01 records published: taken back when the order is done.
        let mut tokens = Vec::new();
        let mut records = Vec::new();
        let set_up = async {
            let mut authorizations = order.authorizations();
            while let Some(authorization) = authorizations.next().await {
                let mut authorization = authorization.map_err(problem)?;
                match authorization.status {
                    AuthorizationStatus::Valid => continue,
                    AuthorizationStatus::Pending => {}
                    other => return Err(format!("the CA's authorization is {other:?}")),
                }
                match solver {
                    Solver::Http01 { worker } => {
                        let mut challenge = authorization
                            .challenge(ChallengeType::Http01)
                            .ok_or("the CA offers no http-01 challenge for this name")?;
                        let answer = AcmeChallenge {
                            token: challenge.token.clone(),
                            key_authorization: challenge.key_authorization().as_str().to_string(),
                        };
                        tokens.push(answer.token.clone());
                        if !self.push(worker, Some(answer), &[]).await {
                            // The control plane holding the worker pushes it on NOTIFY: a
                            // moment before the CA is told to look.
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        challenge.set_ready().await.map_err(problem)?;
                    }
                    Solver::Dns01 { cloudflare } => {
                        let mut challenge = authorization
                            .challenge(ChallengeType::Dns01)
                            .ok_or("the CA offers no dns-01 challenge for this name")?;
                        let Identifier::Dns(name) = challenge.identifier().identifier.clone() else {
                            return Err("the CA's authorization is not for a DNS name".into());
                        };
                        let value = challenge.key_authorization().dns_value();
                        let record = cloudflare
                            .create_txt(&format!("_acme-challenge.{name}"), &value)
                            .await
                            .map_err(|e| format!("cannot publish the DNS-01 answer: {e}"))?;
                        records.push(record);
                        challenge.set_ready().await.map_err(problem)?;
                    }
                }
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
        match solver {
            Solver::Http01 { worker } => {
                self.push(worker, None, &tokens).await;
            }
            Solver::Dns01 { cloudflare } => {
                for record in &records {
                    if let Err(e) = cloudflare.delete_dns_record(record).await {
                        tracing::warn!(error = %e, "cannot delete a DNS-01 answer's TXT record");
                    }
                }
            }
        }
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

    /// Adds `add` to the worker's pending answers and drops `remove` (in the database, which
    /// the control plane holding the worker pushes from); true when this one holds it and
    /// pushed the set already.
    async fn push(&self, worker: i64, add: Option<AcmeChallenge>, remove: &[String]) -> bool {
        let add = add.as_ref().map(|c| (c.token.as_str(), c.key_authorization.as_str()));
        if let Err(e) = certificates::set_challenges(&self.db, worker, add, remove).await {
            tracing::warn!(worker, error = %e, "cannot record ACME challenges");
            return false;
        }
        self.hub.is_connected(worker) && push_challenges(&self.db, &self.hub, worker, true).await
    }
}

/// Sends a worker held here its pending HTTP-01 answers, the set whole: on a change (which
/// may come from the other control plane of a pair; an empty set too, `even_empty`) and at
/// each hello (only when some are pending: a worker that just started holds none). True when
/// sent.
pub async fn push_challenges(db: &PgPool, hub: &Hub, worker: i64, even_empty: bool) -> bool {
    let challenges: Vec<AcmeChallenge> = match certificates::challenges_for(db, worker).await {
        Ok(rows) => rows
            .into_iter()
            .map(|(token, key_authorization)| AcmeChallenge { token, key_authorization })
            .collect(),
        Err(e) => {
            tracing::warn!(worker, error = %e, "cannot read a worker's ACME challenges");
            return false;
        }
    };
    if challenges.is_empty() && !even_empty {
        return false;
    }
    if hub.send(worker, Outgoing::of(&AcmeChallenges { challenges })).is_err() {
        tracing::warn!(worker, "cannot push ACME challenges: the worker is offline");
        return false;
    }
    true
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

/// Imports the platform's certificate from `platform_certificate.cert_file`/`key_file` (it must
/// load: a chain, its key, DNS names), or — with neither files nor DNS-01 configured — stops
/// serving one stored before.
pub async fn import_platform_certificate(
    db: &PgPool,
    sealer: &Sealer,
    config: &PlatformCertificateConfig,
) -> Result<(), String> {
    let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) else {
        if !config.dns01 {
            certificates::platform_clear(db).await.map_err(|e| e.to_string())?;
        }
        return Ok(());
    };
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map_err(|e| format!("platform_certificate: cannot read {}: {e}", path.display()))
    };
    let (chain, key_pem) = (read(cert)?, read(key)?);
    let names = checked_pair(&chain, &key_pem)
        .map_err(|e| format!("platform_certificate: {} and {}: {e}", cert.display(), key.display()))?;
    let not_after = not_after(&chain)?;
    let issued = certificates::PlatformIssued {
        source: "file",
        names: &names,
        chain_pem: &chain,
        key_pem: &key_pem,
        not_after,
        renew_at: not_after,
    };
    certificates::platform_issued(db, sealer, &issued).await.map_err(|e| e.to_string())?;
    tracing::info!(?names, %not_after, "platform certificate loaded from files");
    Ok(())
}

/// The DNS names of a chain whose leaf goes with `key_pem`; why not otherwise.
fn checked_pair(chain_pem: &str, key_pem: &str) -> Result<Vec<String>, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate file is not PEM certificates ({e})"))?;
    let leaf = chain.first().ok_or("the certificate file holds no certificate")?.clone();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| "the key file is not a PEM private key".to_string())?;
    rustls::sign::CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
        .map_err(|e| format!("the key does not go with the certificate ({e})"))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|e| format!("the certificate does not read ({e})"))?;
    let names: Vec<String> = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        return Err("the certificate names no DNS name (subjectAltName)".into());
    }
    Ok(names)
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
