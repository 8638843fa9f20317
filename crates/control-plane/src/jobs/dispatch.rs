//! The dispatcher: wakes on `NOTIFY wh_jobs`, on a worker coming online, and every few seconds
//! as a fallback; leases each ready job to a worker and pushes it through the hub. Also fails
//! jobs stuck past the rescue horizon.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use wisehosting_crypto::Sealer;
use wisehosting_proto::messages::Job;
use wisehosting_proto::{JobKind, JobSpec};

use crate::hub::{Hub, Outgoing};
use crate::store;
use crate::store::jobs::{self, Ready};

const POLL: Duration = Duration::from_secs(3);

pub struct Dispatcher {
    pub db: PgPool,
    pub hub: Hub,
    pub sealer: Arc<Sealer>,
}

impl Dispatcher {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut listener = match PgListener::connect_with(&self.db).await {
            Ok(mut l) => match l.listen(jobs::CHANNEL).await {
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
                        Some(l) => l.recv().await.map(|_| ()),
                        None => std::future::pending().await,
                    }
                } => {
                    if let Err(e) = notified {
                        tracing::debug!(error = %e, "job listener interrupted; it reconnects");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    }

    /// Leases every ready job that has a worker to go to.
    pub async fn dispatch_ready(&self) {
        if let Err(e) = self.dispatch_batch().await {
            tracing::warn!(error = %e, "dispatch failed; retrying on the next wake-up");
        }
    }

    async fn dispatch_batch(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let ready = jobs::lock_ready(&mut tx, 20).await?;
        if ready.is_empty() {
            return Ok(());
        }
        // One look at the online workers serves the whole batch.
        let online = store::workers::online_ids(&mut *tx).await?;
        // Each job's worker, then one lease per worker for all of its jobs.
        let mut chosen: std::collections::BTreeMap<i64, Vec<&jobs::Ready>> =
            std::collections::BTreeMap::new();
        for job in &ready {
            if let Some(worker_id) = self.choose_worker(job, &online) {
                chosen.entry(worker_id).or_default().push(job);
            }
        }
        let mut leased = Vec::new();
        for (worker_id, batch) in &chosen {
            for (job_id, attempt) in jobs::lease(&mut tx, *worker_id, batch).await? {
                if let Some(job) = batch.iter().find(|j| j.id == job_id) {
                    leased.push(((*job).clone(), *worker_id, attempt));
                }
            }
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

    /// The app's worker while it is connected (an app stays on its worker); a new app goes to
    /// the least loaded connected worker. Jobs other than deploys wait for the app's worker.
    fn choose_worker(&self, job: &Ready, online: &[i64]) -> Option<i64> {
        if let Some(current) = job.app_worker_id
            && (self.hub.is_connected(current) || job.kind != JobKind::Deploy)
        {
            return self.hub.is_connected(current).then_some(current);
        }
        let load = |id: i64| {
            self.hub.snapshot(id).map_or(1.0, |hb| {
                let mem = if hb.mem_total_bytes > 0 {
                    hb.mem_used_bytes as f64 / hb.mem_total_bytes as f64
                } else {
                    1.0
                };
                hb.cpu_pct / 100.0 + mem
            })
        };
        online
            .iter()
            .copied()
            .filter(|id| self.hub.is_connected(*id))
            .min_by(|a, b| load(*a).total_cmp(&load(*b)))
    }
}

/// Runs until shutdown; events of the hub are one of the wake-ups.
pub fn spawn(dispatcher: Dispatcher, shutdown: CancellationToken) {
    let hub = dispatcher.hub.clone();
    tokio::spawn(hub.track(dispatcher.run(shutdown)));
}
