//! What users see of their running apps.
//!
//! - [`stats`]: live figures and an hour of history per app, from the workers' reports.
//! - [`alerts`]: the alert manager (metric rules in rounds, event kinds where they happen).
//! - [`notify`]: what an alert or a finished deployment queues for the user.
//! - [`webhooks`]: the dispatcher of queued webhook deliveries; [`mail`]: the e-mail sender.
//! - [`usage`]: the usage recorder (hourly rows, daily rollups).

pub mod alerts;
pub mod mail;
pub mod notify;
pub mod stats;
pub mod usage;
pub mod webhooks;

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Runs `work` every `every` until shutdown, the first time after one interval; a run that
/// takes longer than the interval delays the next (none is made up). `work` logs its own
/// failures: the next run tries again.
pub(crate) fn every<F, Fut>(every: Duration, shutdown: CancellationToken, mut work: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            work().await;
        }
    });
}
