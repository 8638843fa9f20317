//! Prometheus metrics of the control plane, rendered in the text exposition format.
//!
//! A handful of atomics, no registry crate: HTTP requests by status class and a latency
//! histogram, process start time, and the database pool's gauges read at scrape time.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wisehosting_proto::RejectCode;

const BUCKETS_SECS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug)]
pub struct Metrics {
    start_unix_secs: f64,
    http_by_class: [AtomicU64; 5],
    latency_buckets: [AtomicU64; BUCKETS_SECS.len()],
    latency_sum_micros: AtomicU64,
    latency_count: AtomicU64,
    envelope_rejections: [AtomicU64; RejectCode::ALL.len()],
    unknown_messages: AtomicU64,
    before_hello: AtomicU64,
    upgrade_refusals: AtomicU64,
    register_refusals: AtomicU64,
}

/// Values read at scrape time from their owners.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub pool_size: u32,
    pub pool_idle: usize,
    pub hub_connections: usize,
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
            envelope_rejections: Default::default(),
            unknown_messages: AtomicU64::new(0),
            before_hello: AtomicU64::new(0),
            upgrade_refusals: AtomicU64::new(0),
            register_refusals: AtomicU64::new(0),
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

    pub fn record_rejection(&self, code: RejectCode) {
        if let Some(i) = RejectCode::ALL.iter().position(|c| *c == code) {
            self.envelope_rejections[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record_unknown_message(&self) {
        self.unknown_messages.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_before_hello(&self) {
        self.before_hello.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_upgrade_refusal(&self) {
        self.upgrade_refusals.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_register_refusal(&self) {
        self.register_refusals.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejections(&self, code: RejectCode) -> u64 {
        RejectCode::ALL
            .iter()
            .position(|c| *c == code)
            .map_or(0, |i| self.envelope_rejections[i].load(Ordering::Relaxed))
    }

    /// The text exposition, with gauges read from their owners.
    pub fn render(&self, gauges: Gauges) -> String {
        let Gauges { pool_size, pool_idle, hub_connections } = gauges;
        let mut out = String::with_capacity(2048);
        let start_help = "Start time of the process since the Unix epoch.";
        single(&mut out, "process_start_time_seconds", GAUGE, start_help, self.start_unix_secs);
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
        let gauges = [
            ("wisehosting_db_pool_connections", "Open database connections.", pool_size as usize),
            ("wisehosting_db_pool_idle_connections", "Idle database connections.", pool_idle),
            ("wisehosting_hub_connections", "Worker WebSocket connections open.", hub_connections),
        ];
        for (name, help, value) in gauges {
            single(&mut out, name, GAUGE, help, value);
        }
        let _ = writeln!(out, "# HELP wisehosting_envelope_rejections_total Worker frames refused, by code.");
        let _ = writeln!(out, "# TYPE wisehosting_envelope_rejections_total counter");
        for (code, counter) in RejectCode::ALL.iter().zip(&self.envelope_rejections) {
            let _ = writeln!(
                out,
                "wisehosting_envelope_rejections_total{{code=\"{}\"}} {}",
                code.as_str(),
                counter.load(Ordering::Relaxed)
            );
        }
        let counters = [
            (
                "wisehosting_hub_unknown_messages_total",
                "Worker frames of an unknown type, ignored.",
                &self.unknown_messages,
            ),
            (
                "wisehosting_hub_frames_before_hello_total",
                "Worker frames sent before a signed hello, ignored.",
                &self.before_hello,
            ),
            (
                "wisehosting_hub_upgrade_refusals_total",
                "WebSocket upgrades refused before the 101.",
                &self.upgrade_refusals,
            ),
            (
                "wisehosting_worker_register_refusals_total",
                "Worker registrations refused.",
                &self.register_refusals,
            ),
        ];
        for (name, help, counter) in counters {
            single(&mut out, name, COUNTER, help, counter.load(Ordering::Relaxed));
        }
        out
    }
}

const GAUGE: &str = "gauge";
const COUNTER: &str = "counter";

/// A series of one value: its `HELP`, `TYPE` and value lines.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
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
        m.record_rejection(RejectCode::BadMac);
        let text = m.render(Gauges { pool_size: 3, pool_idle: 1, hub_connections: 2 });
        assert!(text.contains("wisehosting_envelope_rejections_total{code=\"bad_mac\"} 1"), "{text}");
        assert!(text.contains("wisehosting_hub_connections 2"), "{text}");
        assert!(text.contains("wisehosting_http_requests_total{class=\"2xx\"} 1"), "{text}");
        assert!(text.contains("wisehosting_http_requests_total{class=\"4xx\"} 1"), "{text}");
        assert!(text.contains("wisehosting_http_requests_total{class=\"5xx\"} 1"), "{text}");
        assert!(text.contains("_bucket{le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("_bucket{le=\"0.05\"} 2"), "{text}");
        assert!(text.contains("_bucket{le=\"+Inf\"} 3"), "{text}");
        assert!(text.contains("wisehosting_db_pool_connections 3"), "{text}");
    }
}
