//! E-mail, the second channel for alerts: queued in `notification_emails` with the change
//! that caused it, sent by [`Mailer`] over SMTP (`lettre`), retried with back-off.

use std::time::Duration;

use chrono::Utc;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::{SmtpConfig, SmtpTls};
use crate::store::webhooks as store;

/// Tries of one e-mail at most.
const MAX_ATTEMPTS: i32 = 6;

pub struct Mailer {
    db: PgPool,
    from: Mailbox,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Mailer {
    pub fn new(db: PgPool, config: &SmtpConfig) -> Result<Mailer, String> {
        let from: Mailbox = config.from.parse().map_err(|e| format!("smtp.from: {e}"))?;
        let builder = match config.tls {
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host),
            SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)),
        }
        .map_err(|e| format!("cannot set up SMTP to {}: {e}", config.host))?;
        let mut builder = builder.port(config.port).timeout(Some(Duration::from_secs(20)));
        if !config.username.is_empty() {
            builder = builder
                .credentials(Credentials::new(config.username.clone(), config.password.expose().to_string()));
        }
        Ok(Mailer { db, from, transport: builder.build() })
    }

    /// Sends due e-mails every `every` until shutdown.
    pub fn spawn(self, every: Duration, shutdown: CancellationToken) {
        let this = std::sync::Arc::new(self);
        super::every(every, shutdown, move || {
            let this = this.clone();
            async move {
                if let Err(e) = this.round().await {
                    tracing::warn!(error = %e, "cannot send notification e-mails; trying again");
                }
            }
        });
    }

    /// Sends what is due; how many were sent.
    pub async fn round(&self) -> Result<usize, sqlx::Error> {
        let due = store::lease_emails(&self.db, 20, 120.0).await?;
        let mut sent = 0;
        for mail in due {
            let result = match mail.to.parse::<Mailbox>() {
                Ok(to) => {
                    let message = Message::builder()
                        .from(self.from.clone())
                        .to(to)
                        .subject(mail.subject.clone())
                        .header(lettre::message::header::ContentType::TEXT_PLAIN)
                        .body(mail.body.clone())
                        .map_err(|e| e.to_string());
                    match message {
                        Ok(m) => self.transport.send(m).await.map(drop).map_err(|e| e.to_string()),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(format!("the user's address does not read: {e}")),
            };
            let tries = mail.attempts + 1;
            match result {
                Ok(()) => {
                    sent += 1;
                    store::record_email(&self.db, mail.id, true, None, None).await?;
                }
                Err(error) => {
                    tracing::warn!(email_id = mail.id, tries, error = %error, "cannot send an e-mail");
                    let retry = (tries < MAX_ATTEMPTS)
                        .then(|| Utc::now() + chrono::Duration::seconds(30 * i64::from(1 << tries.min(10))));
                    store::record_email(&self.db, mail.id, false, Some(&error), retry).await?;
                }
            }
        }
        Ok(sent)
    }
}
