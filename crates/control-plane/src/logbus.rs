//! The log bus: a ring buffer of recent lines per app and a broadcast for live streams.
//! Lines are cleaned on the way in: ANSI escapes and NULs stripped, each cut at 8 KiB.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;

/// Lines kept per app.
pub const RING: usize = 1000;
/// The longest line kept, in bytes.
pub const MAX_LINE: usize = wisehosting_proto::MAX_LOG_LINE_BYTES;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogLine {
    pub app_id: i64,
    pub deployment_id: Option<i64>,
    /// `build` or `runtime`.
    pub stream: &'static str,
    pub line: String,
    pub at_ms: i64,
}

#[derive(Debug)]
pub struct LogBus {
    rings: Mutex<HashMap<i64, VecDeque<LogLine>>>,
    live: broadcast::Sender<LogLine>,
}

impl Default for LogBus {
    fn default() -> Self {
        Self { rings: Mutex::new(HashMap::new()), live: broadcast::channel(4096).0 }
    }
}

/// Strips ANSI escape sequences and NULs and cuts the line at [`MAX_LINE`] bytes.
pub fn clean_line(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(MAX_LINE));
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte; other escapes: ESC + one char.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
            continue;
        }
        if c == '\0' || c == '\r' {
            continue;
        }
        if out.len() + c.len_utf8() > MAX_LINE {
            break;
        }
        out.push(c);
    }
    out
}

impl LogBus {
    pub fn push(&self, app_id: i64, deployment_id: Option<i64>, stream: &'static str, lines: &[String]) {
        let at_ms = chrono::Utc::now().timestamp_millis();
        let cleaned: Vec<LogLine> = lines
            .iter()
            .map(|l| LogLine { app_id, deployment_id, stream, line: clean_line(l), at_ms })
            .collect();
        if let Ok(mut rings) = self.rings.lock() {
            let ring = rings.entry(app_id).or_default();
            for line in &cleaned {
                if ring.len() == RING {
                    ring.pop_front();
                }
                ring.push_back(line.clone());
            }
        }
        for line in cleaned {
            let _ = self.live.send(line);
        }
    }

    /// The last `n` lines of an app.
    pub fn tail(&self, app_id: i64, n: usize) -> Vec<LogLine> {
        self.rings
            .lock()
            .map(|rings| {
                rings.get(&app_id).map_or_else(Vec::new, |ring| {
                    ring.iter().skip(ring.len().saturating_sub(n)).cloned().collect()
                })
            })
            .unwrap_or_default()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.live.subscribe()
    }

    pub fn forget(&self, app_id: i64) {
        if let Ok(mut rings) = self.rings.lock() {
            rings.remove(&app_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_nul_and_overlong_lines_are_cleaned() {
        assert_eq!(clean_line("\u{1b}[31mred\u{1b}[0m ok\0"), "red ok");
        assert_eq!(clean_line(&"x".repeat(10_000)).len(), MAX_LINE);
    }

    #[test]
    fn the_ring_keeps_the_last_lines_per_app() {
        let bus = LogBus::default();
        let lines: Vec<String> = (0..1_500).map(|i| i.to_string()).collect();
        bus.push(1, None, "runtime", &lines);
        bus.push(2, None, "runtime", &["other".into()]);
        let tail = bus.tail(1, 3);
        assert_eq!(tail.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(), ["1497", "1498", "1499"]);
        assert_eq!(bus.tail(1, 5_000).len(), RING);
        assert_eq!(bus.tail(2, 10).len(), 1);
    }
}
