//! The `audit_events` table: one row per privileged action, written in the action's own
//! transaction where there is one.

use serde_json::Value;
use sqlx::PgExecutor;

/// One audit row. `actor` names who acted (`user:7`, `worker:edge-1`, `ip:1.2.3.4`).
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    pub user_id: Option<i64>,
    pub actor: &'a str,
    pub action: &'a str,
    pub target_type: Option<&'a str>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub detail: Value,
}

pub async fn record(db: impl PgExecutor<'_>, event: AuditEvent<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_events (user_id, actor, action, target_type, target_id, ip, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(event.user_id)
    .bind(event.actor)
    .bind(event.action)
    .bind(event.target_type)
    .bind(event.target_id)
    .bind(event.ip)
    .bind(event.detail)
    .execute(db)
    .await?;
    Ok(())
}
