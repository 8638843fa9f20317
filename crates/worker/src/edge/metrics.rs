//! Per-app request figures of the edge router, as Prometheus text: a request count by status
//! class and a latency histogram, labelled with the route's name (`app-<id>`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 11] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Default)]
struct AppFigures {
    /// By status class: 1xx … 5xx.
    by_class: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

#[derive(Debug, Default)]
pub struct Registry {
    apps: Mutex<BTreeMap<String, Arc<AppFigures>>>,
}

impl Registry {
    pub fn record(&self, route: &str, status: u16, elapsed: Duration) {
        let figures = {
            let Ok(mut apps) = self.apps.lock() else { return };
            match apps.get(route) {
                Some(figures) => figures.clone(),
                None => apps.entry(route.to_string()).or_default().clone(),
            }
        };
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        figures.by_class[class].fetch_add(1, Ordering::Relaxed);
        // One bucket per observation; `render` adds them up into Prometheus' cumulative form.
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|bound| secs <= *bound) {
            figures.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        figures.count.fetch_add(1, Ordering::Relaxed);
        figures
            .sum_micros
            .fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Requests answered so far, by route name.
    pub fn totals(&self) -> Vec<(String, u64)> {
        match self.apps.lock() {
            Ok(a) => a.iter().map(|(k, v)| (k.clone(), v.count.load(Ordering::Relaxed))).collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn render(&self) -> String {
        let apps: Vec<(String, Arc<AppFigures>)> = match self.apps.lock() {
            Ok(a) => a.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => Vec::new(),
        };
        let mut out = String::new();
        out.push_str("# HELP wisehosting_edge_requests_total Requests the edge router answered, by app and status class.\n");
        out.push_str("# TYPE wisehosting_edge_requests_total counter\n");
        for (app, f) in &apps {
            for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
                let n = f.by_class[i].load(Ordering::Relaxed);
                let _ =
                    writeln!(out, "wisehosting_edge_requests_total{{app=\"{app}\",class=\"{class}\"}} {n}");
            }
        }
        out.push_str("# HELP wisehosting_edge_request_duration_seconds Time to the response head, by app.\n");
        out.push_str("# TYPE wisehosting_edge_request_duration_seconds histogram\n");
        for (app, f) in &apps {
            let mut n = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                n += f.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "wisehosting_edge_request_duration_seconds_bucket{{app=\"{app}\",le=\"{bound}\"}} {n}"
                );
            }
            let count = f.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "wisehosting_edge_request_duration_seconds_bucket{{app=\"{app}\",le=\"+Inf\"}} {count}"
            );
            let sum = f.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "wisehosting_edge_request_duration_seconds_sum{{app=\"{app}\"}} {sum}");
            let _ = writeln!(out, "wisehosting_edge_request_duration_seconds_count{{app=\"{app}\"}} {count}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_buckets_are_cumulative_per_app() {
        let r = Registry::default();
        r.record("app-1", 200, Duration::from_millis(3));
        r.record("app-1", 503, Duration::from_millis(300));
        r.record("app-2", 404, Duration::from_micros(500));
        let text = r.render();
        assert!(text.contains("wisehosting_edge_requests_total{app=\"app-1\",class=\"2xx\"} 1"), "{text}");
        assert!(text.contains("wisehosting_edge_requests_total{app=\"app-1\",class=\"5xx\"} 1"), "{text}");
        assert!(text.contains("wisehosting_edge_requests_total{app=\"app-2\",class=\"4xx\"} 1"), "{text}");
        assert!(
            text.contains("wisehosting_edge_request_duration_seconds_bucket{app=\"app-1\",le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("wisehosting_edge_request_duration_seconds_bucket{app=\"app-1\",le=\"0.5\"} 2"),
            "{text}"
        );
        assert!(text.contains("wisehosting_edge_request_duration_seconds_count{app=\"app-1\"} 2"), "{text}");
    }
}
