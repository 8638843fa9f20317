//! The log bus: a ring buffer of recent lines per app and, per app, a broadcast for its live
//! streams (a subscriber is handed its own app's channel, never a platform-wide one it would
//! filter). Lines are cleaned on the way in: ANSI escapes and NULs stripped, each cut at 8 KiB.
//! It also counts each user's open live streams, so one user cannot open them without end.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

/// Lines kept per app.
pub const RING: usize = 1000;
/// The longest line kept, in bytes.
pub const MAX_LINE: usize = wisehosting_proto::MAX_LOG_LINE_BYTES;
/// Lines one app's live channel holds for a slow subscriber before it skips ahead.
const LIVE_BACKLOG: usize = 1024;

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct LogLine {
    pub app_id: i64,
    pub deployment_id: Option<i64>,
    /// `build` or `runtime`.
    pub stream: &'static str,
    pub line: String,
    pub at_ms: i64,
}

#[derive(Debug, Default)]
struct AppLog {
    ring: VecDeque<LogLine>,
    /// Present while someone may be listening; dropped when the last listener left.
    live: Option<broadcast::Sender<LogLine>>,
}

#[derive(Debug, Default)]
pub struct LogBus {
    apps: Mutex<HashMap<i64, AppLog>>,
    /// Open live streams per user.
    streams: Arc<Mutex<HashMap<i64, usize>>>,
}

/// One open live stream of a user, counted until it is dropped.
#[derive(Debug)]
pub struct StreamSlot {
    user_id: i64,
    streams: Arc<Mutex<HashMap<i64, usize>>>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Ok(mut streams) = self.streams.lock()
            && let Some(n) = streams.get_mut(&self.user_id)
        {
            *n -= 1;
            if *n == 0 {
                streams.remove(&self.user_id);
            }
        }
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
        let Ok(mut apps) = self.apps.lock() else { return };
        let app = apps.entry(app_id).or_default();
        if app.live.as_ref().is_some_and(|tx| tx.receiver_count() == 0) {
            app.live = None;
        }
        for raw in lines {
            let line = LogLine { app_id, deployment_id, stream, line: clean_line(raw), at_ms };
            if let Some(live) = &app.live {
                let _ = live.send(line.clone());
            }
            if app.ring.len() == RING {
                app.ring.pop_front();
            }
            app.ring.push_back(line);
        }
    }

    /// The last `n` lines of an app.
    pub fn tail(&self, app_id: i64, n: usize) -> Vec<LogLine> {
        self.apps
            .lock()
            .map(|apps| {
                apps.get(&app_id).map_or_else(Vec::new, |app| {
                    app.ring.iter().skip(app.ring.len().saturating_sub(n)).cloned().collect()
                })
            })
            .unwrap_or_default()
    }

    /// The newest `n` lines across apps, oldest first.
    pub fn recent(&self, n: usize) -> Vec<LogLine> {
        let mut lines: Vec<LogLine> = self
            .apps
            .lock()
            .map(|apps| {
                apps.values()
                    .flat_map(|app| app.ring.iter().skip(app.ring.len().saturating_sub(n)).cloned())
                    .collect()
            })
            .unwrap_or_default();
        lines.sort_by_key(|l| l.at_ms);
        let skip = lines.len().saturating_sub(n);
        lines.split_off(skip)
    }

    /// The live lines of one app from now on; the channel closes when the app is forgotten.
    pub fn subscribe(&self, app_id: i64) -> broadcast::Receiver<LogLine> {
        let mut apps = self.apps.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let app = apps.entry(app_id).or_default();
        app.live.get_or_insert_with(|| broadcast::channel(LIVE_BACKLOG).0).subscribe()
    }

    /// A slot for one more live stream of `user_id`, or `None` when the user has `limit` open.
    pub fn open_stream(&self, user_id: i64, limit: usize) -> Option<StreamSlot> {
        let mut streams = self.streams.lock().ok()?;
        let open = streams.entry(user_id).or_default();
        if *open >= limit {
            return None;
        }
        *open += 1;
        Some(StreamSlot { user_id, streams: self.streams.clone() })
    }

    /// Drops an app's lines and ends its live streams.
    pub fn forget(&self, app_id: i64) {
        if let Ok(mut apps) = self.apps.lock() {
            apps.remove(&app_id);
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

    #[tokio::test]
    async fn a_subscriber_gets_its_own_apps_lines_only_and_an_end_when_the_app_goes() {
        let bus = LogBus::default();
        let mut one = bus.subscribe(1);
        bus.push(2, None, "runtime", &["secret of app 2".into()]);
        bus.push(1, None, "runtime", &["mine".into()]);
        assert_eq!(one.recv().await.expect("line").line, "mine");
        assert!(one.try_recv().is_err(), "nothing else was sent to app 1's channel");
        bus.forget(1);
        assert!(matches!(one.recv().await, Err(broadcast::error::RecvError::Closed)));
    }

    #[test]
    fn a_user_holds_at_most_the_limit_of_live_streams_and_a_closed_one_frees_its_slot() {
        let bus = LogBus::default();
        let slots: Vec<_> = (0..3).map(|_| bus.open_stream(7, 3).expect("slot")).collect();
        assert!(bus.open_stream(7, 3).is_none());
        assert!(bus.open_stream(8, 3).is_some(), "another user's streams are counted apart");
        drop(slots);
        assert!(bus.open_stream(7, 3).is_some());
    }
}
