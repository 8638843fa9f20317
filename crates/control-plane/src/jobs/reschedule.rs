//! Rescheduling (SPEC §14.5): an app whose worker has been offline `reschedule_after_secs` (or
//! was disabled by an operator) is deployed again — its running version's commit, with its env —
//! on another online worker of its zone, which placement picks. When the old worker comes back
//! its `desired_state` no longer lists the app and it removes its copy; while it stays connected
//! (a drain) it is told once the new copy runs. Never two copies serving: routes follow
//! `apps.worker_id`, which moves only when the new copy takes over.
//!
//! The copy of a gone worker's app is a **standby**: its deploy starts a third of the limit
//! before it (so the app serves again at the limit, not a deploy's time after it), and the app
//! switches to it only at the limit (`deployments.switch_at`, counted from the worker's last
//! frame). Should the worker come back first, the standby is dropped and the app stays where it
//! was — the limit keeps its meaning: a worker that only rebooted keeps its apps.
//!
//! One pass at least every second, and at the exact time a standby is due, under a
//! transaction-scoped advisory lock so that of a pair of control planes only one reschedules at
//! a time.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::state::AppState;
use crate::store;
use crate::store::audit::{AuditAction, AuditEvent};
use crate::store::deployments::{self, Ending, Standby};

/// Apps moved per pass at most.
const BATCH: i64 = 50;
/// The longest wait between two passes.
const EVERY: Duration = Duration::from_secs(1);

/// How long before its time a standby is switched to: a switch is a commit and a route pushed
/// to the new worker's edge (about 25 ms in the tests' debug build), so the app serves again
/// at the limit, not just after it.
pub const SWITCH_AHEAD: Duration = Duration::from_millis(100);

/// How long before the limit a standby's deploy starts: a third of the limit (10 s of the
/// default 30; a start whose image the new worker has takes about one).
fn lead(after: Duration) -> Duration {
    after / 3
}

/// Runs passes until shutdown (a pass with nothing to do is a few queries over the workers that
/// are away and the standbys that wait): an app's standby starts within a second of its time,
/// and is switched to at the moment it is due.
pub fn spawn(state: AppState, after: Duration, shutdown: CancellationToken) {
    let hub = state.hub.clone();
    tokio::spawn(hub.track(async move {
        let mut wait = EVERY;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = match pass(&state, after).await {
                Ok(passed) => {
                    if passed.queued > 0 {
                        tracing::info!(apps = passed.queued, "rescheduled apps of workers that are gone");
                    }
                    passed.next_standby_in.map_or(EVERY, |next| next.min(EVERY))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reschedule apps; trying again");
                    EVERY
                }
            };
        }
    }));
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct Passed {
    /// Deploys queued (standbys, or moves off a disabled worker).
    pub queued: usize,
    /// When the next standby is due, if one waits.
    pub next_standby_in: Option<Duration>,
}

/// What a deploy's success (a standby's, at its time) changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The app runs on `to` now; the worker it left, to be told to drop its copy.
    Switched { to: i64, left: Option<i64> },
    /// The app's worker came back (or a newer version ran): the standby's worker drops it.
    Dropped { worker_id: i64 },
    /// A standby not yet due.
    Held,
}

/// Switches the app to its standby if due, drops the standby if the app's worker is back or a
/// newer version ran, or leaves it waiting.
pub async fn settle(tx: &mut sqlx::PgConnection, standby: &Standby) -> Result<Settled, sqlx::Error> {
    if standby.app_worker_back || standby.outdated {
        let reason = if standby.outdated {
            "a newer version of the app ran before this standby was due"
        } else {
            "the app's worker came back before scheduler.reschedule_after_secs: the app stays there"
        };
        deployments::end(tx, standby.id, Ending::Cancelled, reason).await?;
        return Ok(Settled::Dropped { worker_id: standby.worker_id });
    }
    if !standby.due {
        return Ok(Settled::Held);
    }
    deployments::switch_to(tx, standby.app_id, standby.id, standby.switched()).await?;
    let left = store::jobs::place_on(tx, standby.app_id, standby.worker_id).await?;
    Ok(Settled::Switched { to: standby.worker_id, left })
}

/// A deploy of `deployment` succeeded: if it is a standby it is held, and settled at once
/// (switched to if due, dropped if the app's worker is back); `None` if it is no standby.
pub async fn standby_ran(
    tx: &mut sqlx::PgConnection,
    deployment: i64,
    switched: deployments::Switched<'_>,
) -> Result<Option<Settled>, sqlx::Error> {
    if !deployments::hold_if_standby(tx, deployment, switched).await? {
        return Ok(None);
    }
    let settled = match deployments::standbys(tx, Some(deployment), SWITCH_AHEAD.as_secs_f64()).await?.first()
    {
        Some(standby) => settle(tx, standby).await?,
        // Being settled by a rescheduler pass right now.
        None => Settled::Held,
    };
    Ok(Some(settled))
}

/// Tells the workers what a switch or a dropped standby changes (after the commit): the new one
/// routes the app, the one it left gets its desired state (without the app); a dropped
/// standby's worker gets its own.
pub async fn announce(db: &PgPool, hub: &Hub, settled: Settled) -> Result<(), sqlx::Error> {
    match settled {
        Settled::Switched { to, left } => {
            hub.routes_changed(to);
            if let Some(old) = left.filter(|old| *old != to) {
                hub.routes_changed(old);
                crate::jobs::events::tell_desired(db, hub, old).await?;
            }
        }
        Settled::Dropped { worker_id } => crate::jobs::events::tell_desired(db, hub, worker_id).await?,
        Settled::Held => {}
    }
    Ok(())
}

/// One pass: queues a deploy of every app due to move; how many.
pub async fn pass(state: &AppState, after: Duration) -> Result<Passed, RescheduleError> {
    let mut passed = Passed::default();
    let mut tx = state.db.begin().await?;
    if !store::take_turn(&mut tx, store::Periodic::Reschedule).await? {
        return Ok(passed);
    }
    let mut settled = Vec::new();
    for standby in deployments::standbys(&mut tx, None, SWITCH_AHEAD.as_secs_f64()).await? {
        let outcome = settle(&mut tx, &standby).await?;
        if outcome != Settled::Held {
            tracing::info!(app_id = standby.app_id, deployment = standby.id, ?outcome, "standby settled");
            settled.push(outcome);
        }
    }
    let to_move =
        store::apps::lock_to_reschedule(&mut tx, after.as_secs_f64(), lead(after).as_secs_f64(), BATCH)
            .await?;
    for store::apps::ToMove { app, switch_at } in &to_move {
        let Some(current) = app.current_deployment_id else { continue };
        let Some(running) = deployments::get(&mut *tx, current).await? else { continue };
        let credential = match crate::http::apps::repo_credential(state, app).await {
            Ok(c) => c,
            Err(e) => {
                // The new worker may hold the image; without it the build says what is missing.
                tracing::warn!(app_id = app.id, error = %e, "rescheduling without the app's git credential");
                None
            }
        };
        let plan = state.plans.get(&store::users::plan_of(&mut *tx, app.user_id).await?).clone();
        let deployment = deployments::insert_rollback(&mut *tx, &running).await?;
        if let Some(at) = switch_at {
            deployments::hold_until(&mut tx, deployment.id, *at).await?;
        }
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
                deployments::end(&mut tx, deployment.id, deployments::Ending::Failed, &reason).await?;
                continue;
            }
        };
        store::jobs::enqueue(&mut tx, &state.sealer, app.id, Some(deployment.id), &spec).await?;
        let detail = json!({ "deployment": deployment.id, "from_worker": app.worker_id, "version_of": running.id, "switch_at": switch_at });
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
        passed.queued += 1;
    }
    passed.next_standby_in = deployments::next_standby_in(&mut *tx, SWITCH_AHEAD.as_secs_f64())
        .await?
        .map(|secs| Duration::from_secs_f64(secs.max(0.0)));
    tx.commit().await?;
    for outcome in settled {
        announce(&state.db, &state.hub, outcome).await?;
    }
    Ok(passed)
}

#[derive(Debug, thiserror::Error)]
pub enum RescheduleError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}
