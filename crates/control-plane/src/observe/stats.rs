//! [`StatsBook`]: each app's latest figures as its worker reported them, the rates worked
//! out from two reports in a row, and an hour of history at 10 s resolution, in memory only.
//!
//! Figures are kept under the worker that reported them: a worker's figures for an app placed
//! elsewhere are never read (readers ask for the app's own worker) and cannot overwrite that
//! worker's. Counters are cumulative on the wire; a rate counts only what grew between two
//! reports of one container (a container seen for the first time, or a counter that went
//! down, adds nothing to a rate), and requests only within one counter epoch.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;
use utoipa::ToSchema;
use wisehosting_proto::messages::{AppStat, AppStats};

/// Figures older than this are not live.
pub const LIVE_FOR: Duration = Duration::from_secs(45);
/// One history point per this span at most.
pub const HISTORY_STEP: Duration = Duration::from_secs(10);
/// How far back the history goes.
pub const HISTORY_SPAN: Duration = Duration::from_secs(3600);
/// Apps tracked at most; past it, tracks not live are dropped, and new ones refused while all
/// are live (a worker sending made-up app ids cannot grow the map without bound).
pub const MAX_TRACKED: usize = 50_000;
/// Apps read from one report at most.
const MAX_PER_REPORT: usize = 1000;

/// One point of an app's history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Point {
    pub at: DateTime<Utc>,
    pub cpu_pct: f64,
    pub mem_bytes: u64,
    pub net_rx_bps: f64,
    pub net_tx_bps: f64,
    pub requests_per_s: f64,
    pub restarts: u32,
}

/// An app's latest report and what was worked out from it.
#[derive(Debug, Clone)]
pub struct Latest {
    pub stat: AppStat,
    pub epoch: u64,
    pub at: Instant,
    pub sampled_at: DateTime<Utc>,
    pub net_rx_bps: f64,
    pub net_tx_bps: f64,
    pub requests_per_s: f64,
}

impl Latest {
    pub fn is_live(&self) -> bool {
        self.at.elapsed() <= LIVE_FOR
    }

    /// Memory in use as a percentage of the limit; `None` without a limit.
    pub fn mem_pct(&self) -> Option<f64> {
        (self.stat.mem_limit_bytes > 0)
            .then(|| self.stat.memory_bytes as f64 * 100.0 / self.stat.mem_limit_bytes as f64)
    }
}

#[derive(Debug)]
struct Track {
    latest: Latest,
    /// When the last history point was taken.
    point_at: Option<Instant>,
    history: VecDeque<(Instant, Point)>,
}

#[derive(Debug, Default)]
pub struct StatsBook {
    tracks: Mutex<HashMap<(i64, i64), Track>>,
}

/// What grew from `before` to `now`; a counter that went down (reset) adds nothing.
fn grown(before: u64, now: u64) -> u64 {
    now.saturating_sub(before)
}

impl StatsBook {
    /// Takes in one report of `worker_id`.
    pub fn record(&self, worker_id: i64, report: AppStats) {
        let now = Instant::now();
        let wall = Utc::now();
        let Ok(mut tracks) = self.tracks.lock() else { return };
        if tracks.len() >= MAX_TRACKED {
            tracks.retain(|_, t| t.latest.is_live());
        }
        for stat in report.apps.into_iter().take(MAX_PER_REPORT) {
            let key = (worker_id, stat.app_id);
            let previous = tracks.get(&key);
            if previous.is_none() && tracks.len() >= MAX_TRACKED * 2 {
                break;
            }
            let (mut rx, mut tx, mut requests, mut secs) = (0, 0, 0, 0.0);
            if let Some(before) = previous.map(|t| &t.latest) {
                secs = now.duration_since(before.at).as_secs_f64();
                for c in &stat.containers {
                    if let Some(b) = before.stat.containers.iter().find(|b| b.id == c.id) {
                        rx += grown(b.net_rx_bytes, c.net_rx_bytes);
                        tx += grown(b.net_tx_bytes, c.net_tx_bytes);
                    }
                }
                if before.epoch == report.epoch {
                    requests = grown(before.stat.requests, stat.requests);
                }
            }
            let rate = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
            let latest = Latest {
                net_rx_bps: rate(rx),
                net_tx_bps: rate(tx),
                requests_per_s: rate(requests),
                stat,
                epoch: report.epoch,
                at: now,
                sampled_at: wall,
            };
            let point = Point {
                at: wall,
                cpu_pct: latest.stat.cpu_pct,
                mem_bytes: latest.stat.memory_bytes,
                net_rx_bps: latest.net_rx_bps,
                net_tx_bps: latest.net_tx_bps,
                requests_per_s: latest.requests_per_s,
                restarts: latest.stat.restarts,
            };
            let track = tracks.entry(key).or_insert_with(|| Track {
                latest: latest.clone(),
                point_at: None,
                history: VecDeque::new(),
            });
            track.latest = latest;
            if track.point_at.is_none_or(|at| now.duration_since(at) >= HISTORY_STEP) {
                track.point_at = Some(now);
                track.history.push_back((now, point));
            }
            while track.history.front().is_some_and(|(at, _)| now.duration_since(*at) > HISTORY_SPAN) {
                track.history.pop_front();
            }
        }
    }

    /// The latest figures of an app as reported by `worker_id` (where the app is placed),
    /// live or not.
    pub fn latest(&self, app_id: i64, worker_id: i64) -> Option<Latest> {
        let tracks = self.tracks.lock().ok()?;
        tracks.get(&(worker_id, app_id)).map(|t| t.latest.clone())
    }

    /// The last hour of an app's figures, oldest first.
    pub fn history(&self, app_id: i64, worker_id: i64) -> Vec<Point> {
        let Ok(tracks) = self.tracks.lock() else { return Vec::new() };
        tracks
            .get(&(worker_id, app_id))
            .map(|t| {
                t.history.iter().filter(|(at, _)| at.elapsed() <= HISTORY_SPAN).map(|(_, p)| *p).collect()
            })
            .unwrap_or_default()
    }

    /// Restarts since `since`: what the restart count grew by from point to point (a new
    /// deployment's containers count from zero again). The alert evaluator asks for the hour
    /// before its own `now`.
    pub fn restarts_since(&self, app_id: i64, worker_id: i64, since: DateTime<Utc>) -> u32 {
        let Ok(tracks) = self.tracks.lock() else { return 0 };
        let Some(track) = tracks.get(&(worker_id, app_id)) else { return 0 };
        let latest = (track.latest.sampled_at, track.latest.stat.restarts);
        let counts = track.history.iter().map(|(_, p)| (p.at, p.restarts)).chain(std::iter::once(latest));
        let mut total = 0u32;
        let mut before: Option<u32> = None;
        for (_, restarts) in counts.filter(|(at, _)| *at >= since) {
            if let Some(b) = before {
                total = total.saturating_add(restarts.saturating_sub(b));
            }
            before = Some(restarts);
        }
        total
    }

    /// How many apps are tracked (for tests and metrics).
    pub fn len(&self) -> usize {
        self.tracks.lock().map(|t| t.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wisehosting_proto::messages::ContainerCounters;

    fn stat(app_id: i64, cpu: f64, rx: u64, requests: u64) -> AppStat {
        AppStat {
            app_id,
            cpu_pct: cpu,
            requests,
            containers: vec![ContainerCounters { id: "c1".into(), net_rx_bytes: rx, ..Default::default() }],
            ..AppStat::default()
        }
    }

    fn report(epoch: u64, apps: Vec<AppStat>) -> AppStats {
        AppStats { apps, epoch }
    }

    #[tokio::test]
    async fn figures_count_only_from_the_worker_the_app_is_placed_on() {
        let book = StatsBook::default();
        book.record(1, report(1, vec![stat(42, 10.0, 0, 0)]));
        // Another worker claims the same app: its figures neither show nor replace worker 1's.
        book.record(2, report(1, vec![stat(42, 99.0, 0, 0)]));
        assert_eq!(book.latest(42, 1).map(|s| s.stat.cpu_pct), Some(10.0));
        assert!(book.latest(42, 3).is_none());
        // A flood of made-up app ids is bounded.
        for batch in 0..200 {
            book.record(2, report(1, (0..1000).map(|i| stat(batch * 1000 + i, 0.0, 0, 0)).collect()));
        }
        assert!(book.len() <= MAX_TRACKED * 2, "{}", book.len());
        assert_eq!(book.latest(42, 1).map(|s| s.stat.cpu_pct), Some(10.0), "worker 1's figures survive");
    }

    #[tokio::test(start_paused = true)]
    async fn figures_are_live_for_45_seconds_and_then_not() {
        let book = StatsBook::default();
        book.record(7, report(1, vec![stat(1, 3.0, 0, 0)]));
        tokio::time::advance(Duration::from_secs(44)).await;
        assert!(book.latest(1, 7).is_some_and(|l| l.is_live()));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(book.latest(1, 7).is_some_and(|l| !l.is_live()), "stale figures are not live");
    }

    #[tokio::test(start_paused = true)]
    async fn rates_come_from_what_grew_between_two_reports_and_ignore_resets() {
        let book = StatsBook::default();
        book.record(1, report(9, vec![stat(1, 0.0, 1000, 50)]));
        tokio::time::advance(Duration::from_secs(5)).await;
        book.record(1, report(9, vec![stat(1, 0.0, 6000, 150)]));
        let l = book.latest(1, 1).expect("tracked");
        assert_eq!((l.net_rx_bps, l.requests_per_s), (1000.0, 20.0));
        // The worker restarted (new epoch, counters from zero) and a new container replaced c1.
        tokio::time::advance(Duration::from_secs(5)).await;
        let mut s = stat(1, 0.0, 10, 3);
        s.containers[0].id = "c2".into();
        book.record(1, report(10, vec![s]));
        let l = book.latest(1, 1).expect("tracked");
        assert_eq!((l.net_rx_bps, l.requests_per_s), (0.0, 0.0), "no negative or made-up rate");
    }

    #[tokio::test(start_paused = true)]
    async fn history_keeps_one_point_per_ten_seconds_for_an_hour() {
        let book = StatsBook::default();
        // Reports every 5 s for 2 hours.
        for i in 0..1440u32 {
            let mut s = stat(1, f64::from(i), 0, 0);
            s.restarts = i / 100;
            book.record(1, report(1, vec![s]));
            tokio::time::advance(Duration::from_secs(5)).await;
        }
        let history = book.history(1, 1);
        assert!((359..=361).contains(&history.len()), "{}", history.len());
        assert!(
            history.windows(2).all(|w| w[0].cpu_pct + 2.0 == w[1].cpu_pct),
            "every other report, oldest first"
        );
        assert_eq!(history.last().map(|p| p.cpu_pct), Some(1438.0));
        assert!(book.history(1, 2).is_empty());
    }

    #[tokio::test]
    async fn restarts_count_what_the_restart_count_grew_by_since_a_time() {
        let book = StatsBook::default();
        let start = Utc::now();
        for restarts in [0, 2, 2, 5, 0, 1] {
            let mut s = stat(1, 0.0, 0, 0);
            s.restarts = restarts;
            book.record(1, report(1, vec![s]));
        }
        // Only the latest report is kept besides the first history point: 0 → 1.
        assert_eq!(book.restarts_since(1, 1, start), 1);
        assert_eq!(
            book.restarts_since(1, 1, Utc::now() + chrono::Duration::hours(2)),
            0,
            "nothing that recent"
        );
    }
}
