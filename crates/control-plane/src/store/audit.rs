//! The `audit_events` table: one row per privileged action, written in the action's own
//! transaction where there is one.

use serde_json::Value;
use sqlx::PgExecutor;

/// One audit row. `actor` names who acted (`user:7`, `worker:edge-1`, `ip:1.2.3.4`).
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    pub user_id: Option<i64>,
    pub actor: &'a str,
    pub action: AuditAction,
    pub target_type: Option<&'a str>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub detail: Value,
}

/// Every action the audit trail records; stored and shown as its dotted name in the past tense
/// (SPEC §14.1: `auth.login`, `app.deployed`, `env.revealed`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    AuthLogin,
    AuthLoginFailed,
    AuthLogout,
    TotpEnabled,
    TotpDisabled,
    TokenCreated,
    TokenRevoked,
    SessionRevoked,
    WorkerRegistered,
    WorkerRegisterRefused,
    WorkerRefreshRefused,
    AppDeploy,
    AppRollback,
    AppRescheduled,
    WorkerDisabled,
    WorkerEnabled,
    WorkerDeleted,
    AppHealthCheckSet,
    AppHttpsSet,
    PushWebhookSet,
    PushWebhookRotate,
    AppRestart,
    AppStop,
    AppStart,
    AppDelete,
    AppGitTokenSet,
    AppGitTokenRemove,
    GitLinked,
    GitLinkFailed,
    GitUnlinked,
    GitHookRegistered,
    DeploymentCancel,
    EnvReveal,
    EnvWrite,
    DomainAdd,
    DomainVerify,
    DomainDelete,
    AlertRuleSet,
    AlertRuleDelete,
    WebhookCreate,
    WebhookDelete,
    WebhookEnable,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::AuthLogin => "auth.login",
            AuditAction::AuthLoginFailed => "auth.login_failed",
            AuditAction::AuthLogout => "auth.logout",
            AuditAction::TotpEnabled => "totp.enabled",
            AuditAction::TotpDisabled => "totp.disabled",
            AuditAction::TokenCreated => "token.created",
            AuditAction::TokenRevoked => "token.revoked",
            AuditAction::SessionRevoked => "session.revoked",
            AuditAction::WorkerRegistered => "worker.registered",
            AuditAction::WorkerRegisterRefused => "worker.register_refused",
            AuditAction::WorkerRefreshRefused => "worker.refresh_refused",
            AuditAction::AppDeploy => "app.deployed",
            AuditAction::AppRollback => "app.rolled_back",
            AuditAction::AppRescheduled => "app.rescheduled",
            AuditAction::WorkerDisabled => "worker.disabled",
            AuditAction::WorkerEnabled => "worker.enabled",
            AuditAction::WorkerDeleted => "worker.deleted",
            AuditAction::AppHealthCheckSet => "app.health_check_set",
            AuditAction::AppHttpsSet => "app.https_set",
            AuditAction::PushWebhookSet => "push_webhook.set",
            AuditAction::PushWebhookRotate => "push_webhook.rotated",
            AuditAction::AppRestart => "app.restarted",
            AuditAction::AppStop => "app.stopped",
            AuditAction::AppStart => "app.started",
            AuditAction::AppDelete => "app.deleted",
            AuditAction::AppGitTokenSet => "app.git_token_set",
            AuditAction::AppGitTokenRemove => "app.git_token_removed",
            AuditAction::GitLinked => "git.linked",
            AuditAction::GitLinkFailed => "git.link_failed",
            AuditAction::GitUnlinked => "git.unlinked",
            AuditAction::GitHookRegistered => "git.webhook_registered",
            AuditAction::DeploymentCancel => "deployment.cancelled",
            AuditAction::EnvReveal => "env.revealed",
            AuditAction::EnvWrite => "env.written",
            AuditAction::DomainAdd => "domain.added",
            AuditAction::DomainVerify => "domain.verified",
            AuditAction::DomainDelete => "domain.deleted",
            AuditAction::AlertRuleSet => "alert_rule.set",
            AuditAction::AlertRuleDelete => "alert_rule.deleted",
            AuditAction::WebhookCreate => "webhook.created",
            AuditAction::WebhookDelete => "webhook.deleted",
            AuditAction::WebhookEnable => "webhook.enabled",
        }
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of a user's audit trail, as `GET /api/account/audit` shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Shown {
    pub id: i64,
    pub action: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub ip: Option<String>,
    pub details: Value,
}

/// The user's newest `limit` events before `before` (an event id), newest first.
pub async fn page_for_user(
    db: &sqlx::PgPool,
    user_id: i64,
    limit: i64,
    before: Option<i64>,
) -> Result<Vec<Shown>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, action, created_at AS at, ip, detail AS details FROM audit_events
         WHERE user_id = $1 AND ($3::bigint IS NULL OR id < $3) ORDER BY id DESC LIMIT $2",
    )
    .bind(user_id)
    .bind(limit)
    .bind(before)
    .fetch_all(db)
    .await
}

/// `value` with every string safe for `jsonb`: PostgreSQL refuses the NUL character there, so
/// it becomes U+FFFD; other control characters are kept (JSON escapes them on the way out).
fn storable(value: Value) -> Value {
    match value {
        Value::String(text) if text.contains('\0') => Value::String(text.replace('\0', "\u{FFFD}")),
        Value::Array(items) => Value::Array(items.into_iter().map(storable).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k.replace('\0', "\u{FFFD}"), storable(v))).collect())
        }
        other => other,
    }
}

/// Appends one row; in the caller's transaction when it is given one, so the action and its
/// row commit together or not at all (T26).
pub async fn record(db: impl PgExecutor<'_>, event: AuditEvent<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_events (user_id, actor, action, target_type, target_id, ip, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(event.user_id)
    .bind(event.actor)
    .bind(event.action.as_str())
    .bind(event.target_type)
    .bind(event.target_id)
    .bind(event.ip)
    .bind(storable(event.detail))
    .execute(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_become_replacement_characters_and_other_controls_stay() {
        let stored = storable(serde_json::json!({ "a\0": ["x\0y", {"k": "\u{1b}[31m\0"}], "n": 1 }));
        assert_eq!(
            stored,
            serde_json::json!({ "a\u{FFFD}": ["x\u{FFFD}y", {"k": "\u{1b}[31m\u{FFFD}"}], "n": 1 })
        );
    }
}
