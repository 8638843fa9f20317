//! The usage recorder: every `usage.sample_interval_secs`, each app placed on a worker with
//! live figures adds to its hour and its day: container time (its running containers ×
//! the interval), memory GB-hours (memory in use × the interval), and what its cumulative
//! counters grew by since they were last seen — CPU seconds and network bytes per container,
//! requests per worker counter epoch.
//!
//! The last counters seen are kept in PostgreSQL (`usage_counters`), so neither a worker's
//! reconnect (same container, same epoch: only the growth counts) nor a control-plane restart
//! counts anything twice; a container seen for the first time, or a worker epoch (the agent
//! restarted, its request counts start at zero), counts from zero. A counter that went down
//! is a reset and counts from zero too. A control plane samples the workers whose figures it
//! has (those connected to it), and each interval of a worker is sampled once, whichever
//! control plane takes its slot (`usage_slots`): a pair of control planes, a worker moving
//! between them, or a restart mid-interval counts no interval twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::stats::{Latest, StatsBook};
use crate::store::usage::{self, Counter, Figures};

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What grew from `old` to `new`; all of `new` when there is no `old` or it went down.
fn growth(old: Option<i64>, new: i64) -> i64 {
    match old {
        Some(old) if new >= old => new - old,
        _ => new,
    }
}

/// One app's figures for one sample, and its counters as they are now.
pub fn figures_of(
    app_id: i64,
    worker_id: i64,
    latest: &Latest,
    old: &HashMap<(i64, String), Counter>,
    interval: Duration,
) -> (Figures, Vec<Counter>) {
    let secs = interval.as_secs_f64();
    let stat = &latest.stat;
    let mut figures = Figures {
        container_seconds: stat.containers.len() as f64 * secs,
        mem_gb_hours: stat.memory_bytes as f64 / 1e9 * secs / 3600.0,
        ..Figures::default()
    };
    let mut counters = Vec::with_capacity(stat.containers.len() + 1);
    for c in &stat.containers {
        let source = format!("c:{}", c.id);
        let before = old.get(&(app_id, source.clone()));
        let now = Counter {
            app_id,
            source,
            cpu_nanos: i64_of(c.cpu_nanos),
            rx_bytes: i64_of(c.net_rx_bytes),
            tx_bytes: i64_of(c.net_tx_bytes),
            requests: 0,
        };
        figures.cpu_seconds += growth(before.map(|b| b.cpu_nanos), now.cpu_nanos) as f64 / 1e9;
        figures.net_rx_bytes += growth(before.map(|b| b.rx_bytes), now.rx_bytes);
        figures.net_tx_bytes += growth(before.map(|b| b.tx_bytes), now.tx_bytes);
        counters.push(now);
    }
    let source = format!("r:{worker_id}:{}", latest.epoch);
    let before = old.get(&(app_id, source.clone()));
    let requests = i64_of(stat.requests);
    figures.requests = growth(before.map(|b| b.requests), requests);
    counters.push(Counter { app_id, source, requests, ..Counter::default() });
    (figures, counters)
}

#[derive(Clone)]
pub struct Recorder {
    pub db: PgPool,
    pub stats: Arc<StatsBook>,
    pub interval: Duration,
}

impl Recorder {
    /// The sample of the interval `now` falls in; how many apps it counted (0 when that
    /// interval's sample was taken already, here or by another control plane).
    pub async fn sample(&self, now: DateTime<Utc>) -> Result<usize, sqlx::Error> {
        let step = i64::try_from(self.interval.as_millis()).unwrap_or(i64::MAX).max(1);
        self.sample_slot(now, now.timestamp_millis().div_euclid(step)).await
    }

    /// The sample of interval `slot`, at `now`.
    pub async fn sample_slot(&self, now: DateTime<Utc>, slot: i64) -> Result<usize, sqlx::Error> {
        let placed = usage::placed_apps(&self.db).await?;
        let live: Vec<(i64, i64, Latest)> = placed
            .into_iter()
            .filter_map(|(app, worker)| {
                Some((app, worker, self.stats.latest(app, worker).filter(Latest::is_live)?))
            })
            .collect();
        if live.is_empty() {
            return Ok(0);
        }
        let mut tx = self.db.begin().await?;
        let mut workers: Vec<i64> = live.iter().map(|(_, w, _)| *w).collect();
        workers.sort_unstable();
        workers.dedup();
        let taken = usage::take_slots(&mut tx, slot, &workers).await?;
        let live: Vec<(i64, i64, Latest)> = live.into_iter().filter(|(_, w, _)| taken.contains(w)).collect();
        if live.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = live.iter().map(|(a, _, _)| *a).collect();
        let old: HashMap<(i64, String), Counter> = usage::counters(&mut tx, &ids)
            .await?
            .into_iter()
            .map(|c| ((c.app_id, c.source.clone()), c))
            .collect();
        let mut figures = Vec::with_capacity(live.len());
        let mut counters = Vec::with_capacity(live.len() * 2);
        for (app, worker, latest) in &live {
            let (f, c) = figures_of(*app, *worker, latest, &old, self.interval);
            figures.push((*app, f));
            counters.extend(c);
        }
        usage::save_counters(&mut tx, &counters).await?;
        usage::add(&mut tx, now, &figures).await?;
        tx.commit().await?;
        Ok(live.len())
    }

    /// Samples every interval until shutdown (the first after one interval: the workers'
    /// first reports are not in at once).
    pub fn spawn(self, shutdown: CancellationToken) {
        let interval = self.interval;
        super::every(interval, shutdown, move || {
            let this = self.clone();
            async move {
                if let Err(e) = this.sample(Utc::now()).await {
                    tracing::warn!(error = %e, "cannot record usage; the next sample tries again");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wisehosting_proto::messages::{AppStat, AppStats, ContainerCounters};

    fn latest(epoch: u64, containers: &[(&str, u64, u64)], requests: u64) -> Latest {
        let book = StatsBook::default();
        let stat = AppStat {
            app_id: 1,
            memory_bytes: 500_000_000,
            requests,
            containers: containers
                .iter()
                .map(|(id, cpu, rx)| ContainerCounters {
                    id: (*id).into(),
                    cpu_nanos: *cpu,
                    net_rx_bytes: *rx,
                    net_tx_bytes: 0,
                })
                .collect(),
            ..AppStat::default()
        };
        book.record(9, AppStats { apps: vec![stat], epoch });
        book.latest(1, 9).expect("recorded")
    }

    fn remember(counters: Vec<Counter>) -> HashMap<(i64, String), Counter> {
        counters.into_iter().map(|c| ((c.app_id, c.source.clone()), c)).collect()
    }

    #[tokio::test]
    async fn only_what_counters_grew_by_counts_and_new_sources_count_from_zero() {
        let minute = Duration::from_secs(60);
        let (first, seen) =
            figures_of(1, 9, &latest(7, &[("a", 2_000_000_000, 100)], 40), &HashMap::new(), minute);
        assert_eq!(
            (first.cpu_seconds, first.net_rx_bytes, first.requests),
            (2.0, 100, 40),
            "first seen: all of it"
        );
        assert_eq!(first.container_seconds, 60.0);
        assert!((first.mem_gb_hours - 0.5 / 60.0).abs() < 1e-12);
        // The same container and epoch a minute later (a reconnect in between changes nothing).
        let (next, seen) =
            figures_of(1, 9, &latest(7, &[("a", 3_000_000_000, 150)], 45), &remember(seen), minute);
        assert_eq!((next.cpu_seconds, next.net_rx_bytes, next.requests), (1.0, 50, 5));
        // A redeploy (new container, the old one gone) and an agent restart (new epoch).
        let (after, _) = figures_of(1, 9, &latest(8, &[("b", 500_000_000, 10)], 3), &remember(seen), minute);
        assert_eq!((after.cpu_seconds, after.net_rx_bytes, after.requests), (0.5, 10, 3));
        // Two containers (a deploy's overlap) are two containers' time.
        let (two, _) = figures_of(1, 9, &latest(8, &[("b", 0, 0), ("c", 0, 0)], 3), &HashMap::new(), minute);
        assert_eq!(two.container_seconds, 120.0);
    }
}
