//! Rescheduling (SPEC §14.5): an app whose worker has been offline `reschedule_after_secs` (or
//! was disabled by an operator) is deployed again — its running version's commit, with its env —
//! on another online worker of its zone, which placement picks. When the old worker comes back
//! its `desired_state` no longer lists the app and it removes its copy; while it stays connected
//! (a drain) it is told once the new copy runs. Never two copies serving: routes follow
//! `apps.worker_id`, which moves only when the new worker takes the job.
//!
//! One pass every few seconds, under a transaction-scoped advisory lock so that of a pair of
//! control planes only one reschedules at a time.

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;
use crate::store;
use crate::store::audit::{AuditAction, AuditEvent};

/// Apps moved per pass at most.
const BATCH: i64 = 50;

/// Runs a pass every second until shutdown (a pass with nothing to do is one query over the
/// workers that are away), so an app moves within a second of its limit.
pub fn spawn(state: AppState, after: Duration, shutdown: CancellationToken) {
    let every = Duration::from_secs(1);
    let hub = state.hub.clone();
    tokio::spawn(hub.track(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match pass(&state, after.as_secs()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(apps = n, "rescheduled apps of workers that are gone"),
                Err(e) => tracing::warn!(error = %e, "cannot reschedule apps; trying again"),
            }
        }
    }));
}

/// One pass: queues a deploy of every app due to move; how many.
pub async fn pass(state: &AppState, after_secs: u64) -> Result<usize, RescheduleError> {
    let mut tx = state.db.begin().await?;
    if !store::take_turn(&mut tx, store::Periodic::Reschedule).await? {
        return Ok(0);
    }
    let apps = store::apps::lock_to_reschedule(&mut tx, after_secs, BATCH).await?;
    let mut queued = 0;
    for app in &apps {
        let Some(current) = app.current_deployment_id else { continue };
        let Some(running) = store::deployments::get(&mut *tx, current).await? else { continue };
        let credential = match crate::http::apps::repo_credential(state, app).await {
            Ok(c) => c,
            Err(e) => {
                // The new worker may hold the image; without it the build says what is missing.
                tracing::warn!(app_id = app.id, error = %e, "rescheduling without the app's git credential");
                None
            }
        };
        let plan = state.plans.get(&store::users::plan_of(&mut *tx, app.user_id).await?).clone();
        let deployment = store::deployments::insert_rollback(&mut *tx, &running).await?;
        let env = store::apps::load_env(&mut *tx, &state.sealer, app.id).await?;
        let spec = match running.image_id.as_deref() {
            Some(image) => {
                crate::jobs::spec::rollback(app, &deployment, image, &env, credential.as_ref(), &plan)
            }
            None => crate::jobs::spec::deploy(app, &deployment, &env, credential.as_ref(), &plan),
        };
        let spec = match spec {
            Ok(spec) => spec,
            Err(e) => {
                // The new deployment shows why; no job is sent with made-up values.
                let reason = format!("the app could not be moved off its worker: {e}");
                tracing::error!(app_id = app.id, %reason, "cannot reschedule an app");
                store::deployments::end(&mut tx, deployment.id, store::deployments::Ending::Failed, &reason)
                    .await?;
                continue;
            }
        };
        store::jobs::enqueue(&mut tx, &state.sealer, app.id, Some(deployment.id), &spec).await?;
        let detail =
            json!({ "deployment": deployment.id, "from_worker": app.worker_id, "version_of": running.id });
        store::audit::record(
            &mut *tx,
            AuditEvent {
                user_id: Some(app.user_id),
                actor: "system",
                action: AuditAction::AppRescheduled,
                target_type: Some("app"),
                target_id: Some(app.id.to_string()),
                ip: None,
                detail,
            },
        )
        .await?;
        queued += 1;
    }
    tx.commit().await?;
    Ok(queued)
}

#[derive(Debug, thiserror::Error)]
pub enum RescheduleError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}
