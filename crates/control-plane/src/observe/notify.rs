//! Telling users: what an alert or a finished deployment queues — webhook deliveries to the
//! user's endpoints that asked for the event, and an e-mail when SMTP is configured — always
//! in the transaction that made the change, so nothing is announced that did not happen and
//! nothing that happened goes unannounced. Finished deployments are announced from the
//! `deployments.announced` column by [`spawn_announcer`], whichever path ended them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::alerts;
use crate::domain::{AlertKind, AlertStatus};
use crate::store::alerts::Alert;
use crate::store::deployments::{self, Ended};
use crate::store::webhooks;

/// The events a webhook endpoint can ask for (SPEC §14.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    #[serde(rename = "alert.fired")]
    AlertFired,
    #[serde(rename = "alert.resolved")]
    AlertResolved,
    #[serde(rename = "deployment.succeeded")]
    DeploymentSucceeded,
    #[serde(rename = "deployment.failed")]
    DeploymentFailed,
}

impl EventType {
    pub const ALL: [EventType; 4] = [
        EventType::AlertFired,
        EventType::AlertResolved,
        EventType::DeploymentSucceeded,
        EventType::DeploymentFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::AlertFired => "alert.fired",
            EventType::AlertResolved => "alert.resolved",
            EventType::DeploymentSucceeded => "deployment.succeeded",
            EventType::DeploymentFailed => "deployment.failed",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// The channels besides webhooks this control plane has.
#[derive(Debug, Clone, Copy, Default)]
pub struct Channels {
    /// SMTP is configured: alerts are also e-mailed.
    pub email: bool,
}

/// The `data` of an alert event.
fn alert_data(alert: &Alert) -> serde_json::Value {
    json!({ "alert": {
        "id": alert.id,
        "app_id": alert.app_id,
        "kind": alert.kind,
        "status": alert.status,
        "message": alert.message,
        "fired_at": alert.fired_at,
        "resolved_at": alert.resolved_at,
    }})
}

/// Queues what an alert that fired or resolved tells its user.
pub async fn alert(tx: &mut PgConnection, channels: Channels, alert: &Alert) -> Result<(), sqlx::Error> {
    let event =
        if alert.status == AlertStatus::Resolved { EventType::AlertResolved } else { EventType::AlertFired };
    webhooks::enqueue(&mut *tx, alert.user_id, event.as_str(), &alert_data(alert)).await?;
    if channels.email {
        let (subject, body) = match event {
            EventType::AlertResolved => (
                format!("Resolved: {}", alert.message),
                format!(
                    "This alert is resolved:\n\n  {}\n\nIt fired at {}.\n",
                    alert.message, alert.fired_at
                ),
            ),
            _ => (
                format!("Alert: {}", alert.message),
                format!(
                    "An alert fired at {}:\n\n  {}\n\nAcknowledge or resolve it in the dashboard's Alerts page.\n",
                    alert.fired_at, alert.message
                ),
            ),
        };
        webhooks::enqueue_email(&mut *tx, alert.user_id, &subject, &body).await?;
    }
    Ok(())
}

/// Announces one finished deployment: `deployment.succeeded` (and the app's
/// `deployment_failed` alert resolved) or `deployment.failed` (and the alert raised).
pub async fn deployment_ended(
    tx: &mut PgConnection,
    channels: Channels,
    ended: &Ended,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    use crate::domain::DeploymentStatus as S;
    let event = match ended.status {
        S::Failed => EventType::DeploymentFailed,
        S::Running | S::Superseded if ended.image_id.is_some() => EventType::DeploymentSucceeded,
        // Cancelled, or replaced by a newer deploy before it ran: nothing to say.
        _ => return Ok(()),
    };
    let data = json!({ "deployment": {
        "id": ended.id,
        "app_id": ended.app_id,
        "app_name": ended.app_name,
        "status": if event == EventType::DeploymentFailed { "failed" } else { "succeeded" },
        "commit_sha": ended.commit_sha,
        "error": ended.error,
        "finished_at": ended.finished_at,
    }});
    webhooks::enqueue(&mut *tx, ended.user_id, event.as_str(), &data).await?;
    if event == EventType::DeploymentFailed {
        let reason = ended.error.as_deref().unwrap_or("no reason given");
        let reason: String = reason.chars().take(300).collect();
        let message = format!("deployment #{} failed: {reason}", ended.id);
        alerts::raise(tx, channels, ended.app_id, AlertKind::DeploymentFailed, &message, at).await?;
    } else {
        alerts::clear(tx, channels, ended.app_id, AlertKind::DeploymentFailed, at).await?;
    }
    Ok(())
}

/// Announces finished deployments, oldest first, in batches; how many.
pub async fn announce_round(db: &PgPool, channels: Channels) -> Result<usize, sqlx::Error> {
    let mut tx = db.begin().await?;
    let ended = deployments::take_unannounced(&mut tx, 200).await?;
    let now = Utc::now();
    for e in &ended {
        deployment_ended(&mut tx, channels, e, now).await?;
    }
    tx.commit().await?;
    Ok(ended.len())
}

/// Announces finished deployments every `every` until shutdown.
pub fn spawn_announcer(db: PgPool, channels: Channels, every: Duration, shutdown: CancellationToken) {
    super::every(every, shutdown, move || {
        let db = db.clone();
        async move {
            loop {
                match announce_round(&db, channels).await {
                    Ok(200..) => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot announce finished deployments; trying again");
                        break;
                    }
                }
            }
        }
    });
}
