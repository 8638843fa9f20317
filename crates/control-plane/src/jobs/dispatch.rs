//! The dispatcher: wakes on `NOTIFY wh_jobs`, on a worker coming online, and every few seconds
//! as a fallback; leases each ready job to a worker and pushes it through the hub. Also fails
//! jobs stuck past the rescue horizon.
//!
//! With control planes in pairs, each leases only to the workers connected to it: a job whose
//! app is on a worker the other one holds is left to that one; a job that needs placing may be
//! placed on any online worker (the choice is made from the database), and if that worker is
//! held elsewhere the app is placed there and the other control plane is woken to lease it.
//! `NOTIFY wh_desired` names a worker whose desired state changed; its holder sends it.
//! `NOTIFY wh_challenges` names one whose pending ACME HTTP-01 answers changed; its holder
//! pushes them; `NOTIFY wh_routes`, one whose routes or certificates changed elsewhere.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use wisehosting_crypto::Sealer;
use wisehosting_proto::JobSpec;
use wisehosting_proto::messages::Job;

use crate::hub::{Hub, Outgoing};
use crate::jobs::placement::{self, Candidate, Placement};
use crate::plans::Registry;
use crate::store;
use crate::store::jobs::{self, Goes};

const POLL: Duration = Duration::from_secs(3);

pub struct Dispatcher {
    pub db: PgPool,
    pub hub: Hub,
    pub sealer: Arc<Sealer>,
    /// What each app's plan reserves on its worker.
    pub plans: Arc<Registry>,
}

impl Dispatcher {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut listener = match PgListener::connect_with(&self.db).await {
            Ok(mut l) => match l
                .listen_all([
                    jobs::CHANNEL,
                    jobs::DESIRED_CHANNEL,
                    crate::store::certificates::CHALLENGES_CHANNEL,
                    crate::store::routes::ROUTES_CHANNEL,
                ])
                .await
            {
                Ok(()) => Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot LISTEN for jobs; polling only");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for jobs; polling only");
                None
            }
        };
        let mut events = self.hub.subscribe();
        loop {
            self.dispatch_ready().await;
            if let Err(e) = jobs::fail_stuck(&self.db).await {
                tracing::warn!(error = %e, "cannot fail stuck jobs");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
                _ = events.recv() => {}
                notified = async {
                    match listener.as_mut() {
                        Some(l) => l.recv().await,
                        None => std::future::pending().await,
                    }
                } => match notified {
                    Ok(n) => self.on_worker_notice(n.channel(), n.payload()).await,
                    Err(e) => {
                        tracing::debug!(error = %e, "job listener interrupted; it reconnects");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    }

    /// A notice naming a worker (`wh_jobs` only wakes the loop): acted on only by the control
    /// plane holding the worker's link, and never passed on (no ping-pong between a pair).
    async fn on_worker_notice(&self, channel: &str, payload: &str) {
        if channel == jobs::CHANNEL {
            return;
        }
        let Ok(worker_id) = payload.parse::<i64>() else { return };
        if !self.hub.is_connected(worker_id) {
            return;
        }
        match channel {
            // Another control plane moved one of its apps away.
            jobs::DESIRED_CHANNEL => {
                if let Err(e) = crate::jobs::events::send_desired(&self.db, &self.hub, worker_id).await {
                    tracing::warn!(worker_id, error = %e, "cannot send a worker its desired state");
                }
            }
            // Its routes or certificates changed on another control plane.
            crate::store::routes::ROUTES_CHANNEL => self.hub.routes_changed(worker_id),
            // Its HTTP-01 answers changed, maybe by the other control plane's order.
            crate::store::certificates::CHALLENGES_CHANNEL => {
                crate::acme::push_challenges(&self.db, &self.hub, worker_id, true).await;
            }
            _ => {}
        }
    }

    /// Leases every ready job that has a worker to go to.
    pub async fn dispatch_ready(&self) {
        if let Err(e) = self.dispatch_batch().await {
            tracing::warn!(error = %e, "dispatch failed; retrying on the next wake-up");
        }
    }

    async fn dispatch_batch(&self) -> Result<(), sqlx::Error> {
        let local = self.hub.connected_ids();
        let mut tx = self.db.begin().await?;
        let ready = jobs::lock_ready(&mut tx, 20, &local).await?;
        if ready.is_empty() {
            return Ok(());
        }
        // One look at the online workers serves the whole batch, read only if a job needs it.
        let mut candidates: Option<Vec<Candidate>> = None;
        // Each job's worker, then one lease per worker for all of its jobs.
        let mut chosen: BTreeMap<i64, Vec<&jobs::Ready>> = BTreeMap::new();
        let mut elsewhere: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for job in &ready {
            let worker_id = match &job.goes {
                Goes::ToAppWorker(current) => *current,
                Goes::Placed(placing) => {
                    let candidates = match &mut candidates {
                        Some(c) => c,
                        None => {
                            let rows = store::workers::candidates(&mut *tx).await?;
                            candidates
                                .insert(rows.iter().map(|r| Candidate::from_row(r, &self.plans)).collect())
                        }
                    };
                    let plan = self.plans.get(&placing.owner_plan);
                    match placement::place(placing.zone.as_deref(), plan, candidates) {
                        Placement::On(id) => {
                            placement::reserve(candidates, id, plan);
                            id
                        }
                        Placement::NoWorkerOnline => continue,
                        Placement::NoRoom(reason) => {
                            tracing::warn!(job_id = job.id, app_id = job.app_id, %reason, "job not placed");
                            jobs::fail_queued(&mut tx, job.id, &reason).await?;
                            continue;
                        }
                    }
                }
            };
            if local.contains(&worker_id) {
                chosen.entry(worker_id).or_default().push(job);
            } else {
                // A standby's app stays where it is: its holder is only woken (it places the
                // job the same way, on a worker it holds, and leases it).
                let apps = elsewhere.entry(worker_id).or_default();
                if !job.is_standby() {
                    apps.push(job.app_id);
                }
            }
        }
        for (worker_id, apps) in &elsewhere {
            jobs::place(&mut tx, *worker_id, apps).await?;
        }
        let mut leased = Vec::new();
        for (worker_id, batch) in &chosen {
            jobs::lease(&mut tx, *worker_id, batch).await?;
            leased
                .extend(batch.iter().map(|job| ((*job).clone(), *worker_id, job.fence(*worker_id).attempt)));
        }
        tx.commit().await?;
        for (job, worker_id, attempt) in leased {
            let spec = jobs::open_spec(&self.sealer, &job);
            if let JobSpec::Invalid { error, .. } = &spec {
                // Never sent with made-up values: the job fails here, and the user sees why.
                let reason = format!("the job could not be sent: {error}; deploy again");
                tracing::error!(job_id = job.id, %reason, "job not sendable");
                // A failure here leaves the lease to the stuck-job rescue; the rest of the batch
                // is still sent.
                if let Err(e) = jobs::fail_unsendable(&self.db, job.id, attempt, &reason).await {
                    tracing::warn!(job_id = job.id, error = %e, "cannot fail an unsendable job");
                }
                continue;
            }
            let frame = Outgoing::of(&Job {
                job_id: job.id,
                attempt,
                app_id: job.app_id,
                deployment_id: job.deployment_id,
                spec,
            });
            if self.hub.send(worker_id, frame).is_err() {
                tracing::info!(
                    job_id = job.id,
                    worker_id,
                    "the worker left before the job was sent; requeued"
                );
                if let Err(e) = jobs::unlease(&self.db, job.id, attempt).await {
                    tracing::warn!(job_id = job.id, error = %e, "cannot requeue a job; the stuck-job rescue will");
                }
            } else {
                tracing::info!(job_id = job.id, worker_id, attempt, kind = %job.kind, "job dispatched");
            }
        }
        Ok(())
    }
}

/// Runs until shutdown; events of the hub are one of the wake-ups.
pub fn spawn(dispatcher: Dispatcher, shutdown: CancellationToken) {
    let hub = dispatcher.hub.clone();
    tokio::spawn(hub.track(dispatcher.run(shutdown)));
}
