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

/// Every action the audit trail records; stored as its dotted name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    AuthLogin,
    AuthLogout,
    WorkerRegistered,
    WorkerRegisterRefused,
    WorkerRefreshRefused,
    AppDeploy,
    AppRestart,
    AppStop,
    AppStart,
    AppDelete,
    AppGitTokenSet,
    AppGitTokenRemove,
    DeploymentCancel,
    EnvReveal,
    EnvWrite,
    DomainAdd,
    DomainVerify,
    DomainDelete,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::AuthLogin => "auth.login",
            AuditAction::AuthLogout => "auth.logout",
            AuditAction::WorkerRegistered => "worker.registered",
            AuditAction::WorkerRegisterRefused => "worker.register_refused",
            AuditAction::WorkerRefreshRefused => "worker.refresh_refused",
            AuditAction::AppDeploy => "app.deploy",
            AuditAction::AppRestart => "app.restart",
            AuditAction::AppStop => "app.stop",
            AuditAction::AppStart => "app.start",
            AuditAction::AppDelete => "app.delete",
            AuditAction::AppGitTokenSet => "app.git_token.set",
            AuditAction::AppGitTokenRemove => "app.git_token.remove",
            AuditAction::DeploymentCancel => "deployment.cancel",
            AuditAction::EnvReveal => "env.reveal",
            AuditAction::EnvWrite => "env.write",
            AuditAction::DomainAdd => "domain.add",
            AuditAction::DomainVerify => "domain.verify",
            AuditAction::DomainDelete => "domain.delete",
        }
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    .bind(event.detail)
    .execute(db)
    .await?;
    Ok(())
}
