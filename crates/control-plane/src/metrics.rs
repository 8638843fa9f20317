//! Prometheus metrics of the control plane, rendered in the text exposition format.
//!
//! A handful of atomics, no registry crate: HTTP requests by status class and a latency
//! histogram, process start time, and the database pool's gauges read at scrape time.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const BUCKETS_SECS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug)]
pub struct Metrics {
    start_unix_secs: f64,
    http_by_class: [AtomicU64; 5],
    latency_buckets: [AtomicU64; BUCKETS_SECS.len()],
    latency_sum_micros: AtomicU64,
    latency_count: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Self {
            start_unix_secs: start.as_secs_f64(),
            http_by_class: Default::default(),
            latency_buckets: Default::default(),
            latency_sum_micros: AtomicU64::new(0),
            latency_count: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn record_http(&self, status: u16, elapsed: Duration) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.http_by_class[class].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        for (bucket, bound) in self.latency_buckets.iter().zip(BUCKETS_SECS) {
            if secs <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition, with the pool's current size and idle count.
    pub fn render(&self, pool_size: u32, pool_idle: usize) -> String {
        let mut out = String::with_capacity(2048);
        let _ = writeln!(
            out,
            "# HELP process_start_time_seconds Start time of the process since the Unix epoch."
        );
        let _ = writeln!(out, "# TYPE process_start_time_seconds gauge");
        let _ = writeln!(out, "process_start_time_seconds {}", self.start_unix_secs);
        let _ =
            writeln!(out, "# HELP wisehosting_http_requests_total HTTP requests answered, by status class.");
        let _ = writeln!(out, "# TYPE wisehosting_http_requests_total counter");
        for (i, counter) in self.http_by_class.iter().enumerate() {
            let _ = writeln!(
                out,
                "wisehosting_http_requests_total{{class=\"{}xx\"}} {}",
                i + 1,
                counter.load(Ordering::Relaxed)
            );
        }
        let _ =
            writeln!(out, "# HELP wisehosting_http_request_duration_seconds Time to answer HTTP requests.");
        let _ = writeln!(out, "# TYPE wisehosting_http_request_duration_seconds histogram");
        for (bucket, bound) in self.latency_buckets.iter().zip(BUCKETS_SECS) {
            let _ = writeln!(
                out,
                "wisehosting_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "wisehosting_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "wisehosting_http_request_duration_seconds_sum {sum}");
        let _ = writeln!(out, "wisehosting_http_request_duration_seconds_count {count}");
        let _ = writeln!(out, "# HELP wisehosting_db_pool_connections Open database connections.");
        let _ = writeln!(out, "# TYPE wisehosting_db_pool_connections gauge");
        let _ = writeln!(out, "wisehosting_db_pool_connections {pool_size}");
        let _ = writeln!(out, "# HELP wisehosting_db_pool_idle_connections Idle database connections.");
        let _ = writeln!(out, "# TYPE wisehosting_db_pool_idle_connections gauge");
        let _ = writeln!(out, "wisehosting_db_pool_idle_connections {pool_idle}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_class_and_bucketed_by_latency() {
        let m = Metrics::default();
        m.record_http(200, Duration::from_millis(3));
        m.record_http(404, Duration::from_millis(30));
        m.record_http(503, Duration::from_secs(20));
        let text = m.render(3, 1);
        assert!(text.contains("wisehosting_http_requests_total{class=\"2xx\"} 1"), "{text}");
        assert!(text.contains("wisehosting_http_requests_total{class=\"4xx\"} 1"), "{text}");
        assert!(text.contains("wisehosting_http_requests_total{class=\"5xx\"} 1"), "{text}");
        assert!(text.contains("_bucket{le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("_bucket{le=\"0.05\"} 2"), "{text}");
        assert!(text.contains("_bucket{le=\"+Inf\"} 3"), "{text}");
        assert!(text.contains("wisehosting_db_pool_connections 3"), "{text}");
    }
}
